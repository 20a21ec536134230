/* test_nn_modules.c — the fast modules of src/nn (multi-head attention, MLP, pre/post-LN block)
 * against their reference twins on every ISA, and cross-attention with the source's K/V
 * computed once (qkv_nn_mha_kv_forward + qkv_nn_mha_forward_kv) against the full forward.
 *
 * The two forms run the same composition over different layers (fast: float accumulation, the
 * ISA's kernels; reference: double), so they agree to float rounding: every output and
 * gradient within 2e-5 of the largest magnitude of its tensor (a few ulps of sums of up to ~100
 * terms). The K/V-once path runs exactly the fast forward's operations, so it must be equal
 * bit for bit. */
#include "nn/nn.h"
#include "qkv.h"
#include "test.h"
#include "test_arch.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float urand(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0) * 2.0f - 1.0f;
}
static float *rnd(int64_t n, float scale) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof *p);
    for (int64_t i = 0; i < n; i++) p[i] = scale * urand();
    return p;
}
static float *zeros(int64_t n) { return calloc((size_t)(n > 0 ? n : 1), sizeof(float)); }

static double worst = 0;
static void cmp(const char *what, const float *got, const float *want, int64_t n) {
    double mag = 0, err = 0;
    for (int64_t i = 0; i < n; i++) mag = fmax(mag, fabs((double)want[i]));
    for (int64_t i = 0; i < n; i++) err = fmax(err, fabs((double)got[i] - (double)want[i]));
    double rel = err / (mag > 1e-30 ? mag : 1e-30);
    worst = fmax(worst, rel);
    CHECK_MSG(rel <= 2e-5 && isfinite(err), "%s: rel err %.3g (max |ref| %.3g)", what, rel, mag);
}

typedef struct {
    const char *name;
    int64_t B, Tq, Tk, C, Ckv, H, Hk;
    int fused, cross, causal, padding, rope, window;
} mha_case;

static void test_mha(const mha_case *mc) {
    const int64_t B = mc->B, Tq = mc->Tq, Tk = mc->cross ? mc->Tk : mc->Tq, C = mc->C,
                  Ckv = mc->cross && mc->Ckv ? mc->Ckv : C, H = mc->H, Hk = mc->Hk, D = C / H;
    const int64_t Q = H * D, K = Hk * D;
    qkv_nn_rope rope = {QKV_NN_ROPE_HALF, 10000.0, 0};
    qkv_nn_mha_config cfg = {C,         mc->cross ? Ckv : 0,    H, Hk, 0, 0.0f,
                             mc->fused, mc->rope ? &rope : NULL};
    int32_t lens[4] = {(int32_t)Tk, (int32_t)(Tk > 2 ? Tk - 2 : Tk), (int32_t)Tk, 1};
    qkv_nn_attn_mask mask = {mc->causal, mc->padding ? lens : NULL, NULL, 0.0f, 0, mc->window,
                             2,          mc->causal ? -1 : 1};
    qkv_nn_mha_params p = {0};
    float *wq = rnd(Q * C, 0.3f), *bq = rnd(Q, 0.1f), *wk = rnd(K * Ckv, 0.3f), *bk = rnd(K, 0.1f);
    float *wv = rnd(K * Ckv, 0.3f), *bv = rnd(K, 0.1f), *wo = rnd(C * Q, 0.3f), *bo = rnd(C, 0.1f);
    float *wqkv = rnd((Q + 2 * K) * C, 0.3f), *bqkv = rnd(Q + 2 * K, 0.1f);
    if (mc->fused)
        p.w_qkv = wqkv, p.b_qkv = bqkv;
    else
        p.w_q = wq, p.b_q = bq, p.w_k = wk, p.b_k = bk, p.w_v = wv, p.b_v = bv;
    p.w_o = wo, p.b_o = bo;
    float *x = rnd(B * Tq * C, 1.0f), *mem = mc->cross ? rnd(B * Tk * Ckv, 1.0f) : NULL;
    int64_t na;
    CHECK_OK(qkv_nn_mha_acts_size(&cfg, B, Tq, Tk, &na));
    float *am = zeros(na), *ar = zeros(na);
    qkv_nn_mha_acts af, aref;
    CHECK_OK(qkv_nn_mha_acts_bind(&af, &cfg, B, Tq, Tk, am));
    CHECK_OK(qkv_nn_mha_acts_bind(&aref, &cfg, B, Tq, Tk, ar));
    float *out = zeros(B * Tq * C), *oref = zeros(B * Tq * C);
    CHECK_OK(qkv_nn_mha_forward(NULL, out, &af, x, mem, &p, &cfg, &mask, B, Tq, Tk));
    CHECK_OK(qkv_nn_mha_forward_ref(NULL, oref, &aref, x, mem, &p, &cfg, &mask, B, Tq, Tk));
    char w[160];
    snprintf(w, sizeof w, "%s forward", mc->name);
    cmp(w, out, oref, B * Tq * C);
    if (mc->window) { /* the window is applied: the same call without it differs */
        qkv_nn_attn_mask open = mask;
        open.window = 0;
        float *o2 = zeros(B * Tq * C);
        CHECK_OK(qkv_nn_mha_forward(NULL, o2, &af, x, mem, &p, &cfg, &open, B, Tq, Tk));
        CHECK_MSG(memcmp(o2, out, (size_t)(B * Tq * C) * sizeof *out) != 0,
                  "%s: the window changes nothing", mc->name);
        CHECK_OK(qkv_nn_mha_forward(NULL, out, &af, x, mem, &p, &cfg, &mask, B, Tq, Tk));
        free(o2);
    }
    /* backward: every gradient, pre-filled (+=) */
    float *dout = rnd(B * Tq * C, 1.0f);
    float *g[2][12];
    const int64_t gn[12] = {Q * C,   Q, K * Ckv,         K,
                            K * Ckv, K, (Q + 2 * K) * C, Q + 2 * K,
                            C * Q,   C, B * Tq * C,      mc->cross ? B * Tk * Ckv : 1};
    for (int v = 0; v < 2; v++) {
        rng = 12345;
        for (int i = 0; i < 12; i++) g[v][i] = rnd(gn[i], 0.5f);
    }
    for (int v = 0; v < 2; v++) {
        qkv_nn_mha_grads gr = {g[v][0], g[v][1], g[v][2], g[v][3], g[v][4],
                               g[v][5], g[v][6], g[v][7], g[v][8], g[v][9]};
        float *dx = g[v][10], *dmem = mc->cross ? g[v][11] : NULL;
        if (v == 0)
            CHECK_OK(qkv_nn_mha_backward(NULL, dx, dmem, &gr, dout, x, mem, &af, &p, &cfg, &mask, B,
                                         Tq, Tk));
        else
            CHECK_OK(qkv_nn_mha_backward_ref(NULL, dx, dmem, &gr, dout, x, mem, &aref, &p, &cfg,
                                             &mask, B, Tq, Tk));
    }
    static const char *gname[12] = {"dw_q",   "db_q",   "dw_k", "db_k", "dw_v", "db_v",
                                    "dw_qkv", "db_qkv", "dw_o", "db_o", "dx",   "dmem"};
    for (int i = 0; i < 12; i++) {
        snprintf(w, sizeof w, "%s %s", mc->name, gname[i]);
        cmp(w, g[0][i], g[1][i], gn[i]);
    }
    /* cross-attention: K/V once, then the query side, equals the full forward bit for bit */
    if (mc->cross) {
        float *am2 = zeros(na), *out2 = zeros(B * Tq * C);
        qkv_nn_mha_acts a2;
        CHECK_OK(qkv_nn_mha_acts_bind(&a2, &cfg, B, Tq, Tk, am2));
        CHECK_OK(qkv_nn_mha_kv_forward(NULL, &a2, mem, &p, &cfg, B, Tk));
        for (int rep = 0; rep < 2; rep++) { /* the cached K/V serve any number of queries */
            memset(out2, 0, (size_t)(B * Tq * C) * sizeof *out2);
            CHECK_OK(qkv_nn_mha_forward_kv(NULL, out2, &a2, x, &p, &cfg, &mask, B, Tq, Tk));
            CHECK_MSG(memcmp(out2, out, (size_t)(B * Tq * C) * sizeof *out) == 0,
                      "%s: K/V once differs from the full forward (round %d)", mc->name, rep);
        }
        CHECK_STATUS(qkv_nn_mha_kv_forward(NULL, &a2, NULL, &p, &cfg, B, Tk), QKV_ERR_INVALID_ARG);
        free(am2), free(out2);
    }
    for (int v = 0; v < 2; v++)
        for (int i = 0; i < 12; i++) free(g[v][i]);
    free(wq), free(bq), free(wk), free(bk), free(wv), free(bv), free(wo), free(bo), free(wqkv);
    free(bqkv), free(x), free(mem), free(am), free(ar), free(out), free(oref), free(dout);
}

static void test_block(qkv_nn_norm_order order, qkv_act act, int causal) {
    const int64_t B = 2, T = 7, C = 24, H = 3, F = 40;
    qkv_nn_block_config cfg = {{C, 0, H, 0, 0, 0.0f, 0, NULL}, F, 1e-5f, order, act};
    qkv_nn_attn_mask mask = {.causal = causal};
    qkv_nn_block_params p = {0};
    float *ln = rnd(4 * C, 0.2f);
    for (int64_t i = 0; i < C; i++) ln[i] += 1.0f, ln[2 * C + i] += 1.0f;
    p.ln1_w = ln, p.ln1_b = ln + C, p.ln2_w = ln + 2 * C, p.ln2_b = ln + 3 * C;
    float *w = rnd(4 * C * C + 2 * C * F + 4 * C + F + C, 0.2f), *q = w;
    p.attn.w_q = q, q += C * C, p.attn.w_k = q, q += C * C, p.attn.w_v = q, q += C * C;
    p.attn.w_o = q, q += C * C, p.mlp.w_fc1 = q, q += F * C, p.mlp.w_fc2 = q, q += C * F;
    p.attn.b_q = q, q += C, p.attn.b_o = q, q += C, p.attn.b_v = q, q += C;
    p.attn.b_k = q, q += C, p.mlp.b_fc1 = q, q += F, p.mlp.b_fc2 = q;
    float *x = rnd(B * T * C, 1.0f), *dout = rnd(B * T * C, 1.0f);
    int64_t na;
    CHECK_OK(qkv_nn_block_acts_size(&cfg, B, T, &na));
    float *m0 = zeros(na), *m1 = zeros(na), *y0 = zeros(B * T * C), *y1 = zeros(B * T * C);
    qkv_nn_block_acts a0, a1;
    CHECK_OK(qkv_nn_block_acts_bind(&a0, &cfg, B, T, m0));
    CHECK_OK(qkv_nn_block_acts_bind(&a1, &cfg, B, T, m1));
    CHECK_OK(qkv_nn_block_forward(NULL, y0, &a0, x, &p, &cfg, &mask, B, T));
    CHECK_OK(qkv_nn_block_forward_ref(NULL, y1, &a1, x, &p, &cfg, &mask, B, T));
    const char *name = order == QKV_NN_PRE_LN ? "pre-LN block" : "post-LN block";
    char what[96];
    snprintf(what, sizeof what, "%s forward", name);
    cmp(what, y0, y1, B * T * C);
    const int64_t nw = 4 * C * C + 2 * C * F + 4 * C + F + C;
    float *gw[2], *gl[2], *dx[2];
    for (int v = 0; v < 2; v++) gw[v] = zeros(nw), gl[v] = zeros(4 * C), dx[v] = zeros(B * T * C);
    for (int v = 0; v < 2; v++) {
        float *r = gw[v], *l = gl[v];
        qkv_nn_block_grads g = {0};
        g.ln1_w = l, g.ln1_b = l + C, g.ln2_w = l + 2 * C, g.ln2_b = l + 3 * C;
        g.attn.w_q = r, r += C * C, g.attn.w_k = r, r += C * C, g.attn.w_v = r, r += C * C;
        g.attn.w_o = r, r += C * C, g.mlp.w_fc1 = r, r += F * C, g.mlp.w_fc2 = r, r += C * F;
        g.attn.b_q = r, r += C, g.attn.b_o = r, r += C, g.attn.b_v = r, r += C;
        g.attn.b_k = r, r += C, g.mlp.b_fc1 = r, r += F, g.mlp.b_fc2 = r;
        if (v == 0)
            CHECK_OK(qkv_nn_block_backward(NULL, dx[0], &g, dout, x, &a0, &p, &cfg, &mask, B, T));
        else
            CHECK_OK(
                qkv_nn_block_backward_ref(NULL, dx[1], &g, dout, x, &a1, &p, &cfg, &mask, B, T));
    }
    snprintf(what, sizeof what, "%s dx", name);
    cmp(what, dx[0], dx[1], B * T * C);
    snprintf(what, sizeof what, "%s weight grads", name);
    cmp(what, gw[0], gw[1], nw);
    snprintf(what, sizeof what, "%s norm grads", name);
    cmp(what, gl[0], gl[1], 4 * C);
    for (int v = 0; v < 2; v++) free(gw[v]), free(gl[v]), free(dx[v]);
    free(ln), free(w), free(x), free(dout), free(m0), free(m1), free(y0), free(y1);
}

int main(void) {
    test_use_arch_from_env();
    const mha_case cases[] = {
        {"self", 2, 9, 0, 32, 0, 4, 4, 0, 0, 0, 0, 0, 0},
        {"self causal fused", 2, 9, 0, 32, 0, 4, 4, 1, 0, 1, 0, 0, 0},
        {"self GQA RoPE padding", 3, 11, 0, 32, 0, 4, 2, 0, 0, 0, 1, 1, 0},
        {"self MQA causal RoPE", 1, 17, 0, 48, 0, 6, 1, 0, 0, 1, 0, 1, 0},
        {"cross", 2, 5, 13, 32, 24, 4, 4, 0, 1, 0, 0, 0, 0},
        {"cross GQA padding", 3, 7, 9, 32, 20, 4, 2, 0, 1, 0, 1, 0, 0},
        {"cross fused", 2, 3, 6, 16, 0, 2, 2, 1, 1, 0, 0, 0, 0},
        {"one token", 1, 1, 0, 8, 0, 1, 1, 0, 0, 1, 0, 0, 0},
        {"self window", 2, 12, 0, 32, 0, 4, 2, 0, 0, 0, 0, 1, 1},
        {"self causal window padding", 3, 10, 0, 32, 0, 4, 4, 0, 0, 1, 1, 0, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) test_mha(&cases[i]);
    test_block(QKV_NN_PRE_LN, QKV_ACT_GELU_TANH, 1);
    test_block(QKV_NN_POST_LN, QKV_ACT_GELU_ERF, 0);
    test_block(QKV_NN_POST_LN, QKV_ACT_RELU, 1);
    printf("fast modules vs reference: worst relative error %.3g\n", worst);
    return test_finish("nn_modules");
}
