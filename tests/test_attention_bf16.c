/* test_attention_bf16.c — qkv_attention_forward_bf16 (bf16 q, k, v; float softmax,
 * accumulation and output), per QKV_ARCH.
 *
 * Two checks on every case:
 *
 *  1. Exactness. The bf16 forward is defined as the float forward on q, k, v widened to float
 *     (qkv.h), so out and lse must be bit-identical (memcmp) to qkv_attention_forward on the
 *     inputs widened by qkv_bf16_to_f32_n, under the same ISA (avx2 / avx512: the fused
 *     kernels; scalar: the reference). The fused driver with the portable micro-kernels
 *     (qkv__attn_config_ref, which the public entry never picks) is held to the same equality
 *     directly, so the ref, avx2 and avx512 micro-kernel sets are all covered.
 *
 *  2. Accuracy against the FP32 problem. out and lse are compared with the library's reference
 *     (attention_ref.c, double inside) on the unrounded float inputs, with a bound derived from
 *     the formats below; nothing in it is tuned.
 *
 * The bound. u = 2^-8 (bf16 keeps 8 significant bits; round to nearest: |x̂ - x| <= u|x|),
 * e = 2^-24 (float), γ_n = n e / (1 - n e), η = QKV_ATTN_EXP_MAX_REL_ERR (the SIMD exp; libm's
 * expf is within it too). For one query row: s_j = scale q·k_j + bias_j - alibi_j the exact score
 * of visible key j, p_j = exp(s_j) / Σ exp(s), o = Σ p_j v_j, A = |scale| max_j Σ_d |q_d k_jd|,
 * Bm >= |bias_j| + |alibi_j|, nt = ceil(Tk / 64) key tiles.
 *   (a) rounding the inputs: |scale (q̂·k̂_j - q·k_j)| <= scale Σ |q_d k_jd| |(1+δ)(1+ε) - 1|
 *       <= (2u + u²) A.
 *   (b) the float score of the rounded inputs: q̂ times the float scale (1 rounding, plus the
 *       float scale's own e), a D-term FMA chain, + bias, - slope·dist (2): at most γ_{D+5}
 *       times the magnitudes, <= (1+u)² (A + Bm); the shift ŝ_j - m (m an exact max of computed
 *       scores, |ŝ_j - m| <= 2 max|ŝ|) adds 2e·max|ŝ|, the alpha shifts likewise: all within
 *       γ_{D+9} (1+u)² (A + Bm). So every exponent is off by at most
 *           E = (2u + u²) A + γ_{D+9} (1+u)² (A + Bm).
 *   (c) each exp has relative error <= η, each online rescale by alpha (<= nt + 1 of them, and
 *       the decode split's merge weight) one more exp and one product: every term p̂_j as summed
 *       carries a factor within (1 ± ρ), ρ = ((1 + η)(1 + e))^{nt+4} - 1, times e^{±E}.
 *   (d) l = Σ p̂_j and O_x = Σ p̂_j v̂_jx are float sums of <= Tk terms plus <= 2 nt + 2 rescale
 *       and merge steps: relative (to Σ|terms|) error <= g = γ_{Tk+2nt+4}.
 *   (e) out = O · (1/l): 2 roundings; the reference's float result: 1 more.
 * Hence w_j = p̂_j / l lies within p_j (1 ± F), F = e^{2E} (1+ρ)/(1-ρ) / (1-g) - 1, and with
 * S_x = Σ p_j |v_jx| (the reference run on |v|; |o_x| <= S_x):
 *     |ô_x - o_x| <= Σ |w_j v̂_jx - p_j v_jx| + g Σ w_j |v̂_jx| + 3e |ô_x|
 *                 <= S_x ((1 + F)(1 + u)(1 + g)(1 + 8e) - 1) + Tk 2^-124
 * (the last term: exps below 2^-125 flushed to 0 by avx2). For lse = log Σ exp(s_j): the
 * computed m + log l is log of Σ exp(s_j) times factors within e^{±E} (1 ± ρ)(1 ± g), then
 * logf (<= 1 ulp), the add and the reference's rounding (e each, on magnitudes <= |lse| +
 * 2 (A + Bm) + log Tk + 1):
 *     |lse^ - lse| <= E - log(1 - ρ) - log(1 - g) + 4e (|lse| + 2 (A + Bm) + log Tk + 1).
 * A fully masked row must give exactly lse = -inf and out = 0, as the float forward does.
 * The test prints the worst error as a fraction of its bound. */
#include "attention/attention.h"
#include "attention/flash.h"
#include "attention_oracle.h"
#include "kernels/attn_kernels.h"
#include "kernels/dispatch.h"
#include "qkv.h"
#include "test.h"
#include "test_arch.h"

#include <float.h>
#include <stdint.h>

static double g_worst_out, g_worst_lse;
static int64_t g_cases;

typedef struct spec {
    const char *name;
    int64_t B, Tq, Tk, Hq, Hk, D, Dv;
    int causal;
    int64_t wl, wr;
    int bias, alibi, lens;
    float amp, dropout;
} spec;

static void ref_widen(const uint16_t *src, float *dst, size_t n) {
    for (size_t t = 0; t < n; t++) dst[t] = qkv_bf16_to_f32(src[t]);
}

static uint16_t *to_bf16(const float *x, int64_t n) {
    uint16_t *h = malloc((size_t)(n > 0 ? n : 1) * sizeof *h);
    qkv_f32_to_bf16_n(x, h, (size_t)n);
    return h;
}

static float *widened(const uint16_t *h, int64_t n) {
    float *f = malloc((size_t)(n > 0 ? n : 1) * sizeof *f);
    qkv_bf16_to_f32_n(h, f, (size_t)n);
    return f;
}

static int same_bits(const float *a, const float *b, int64_t n) {
    return memcmp(a, b, (size_t)n * sizeof *a) == 0;
}

static double gamma_n(double n) {
    const double e = 0x1p-24;
    return n * e / (1.0 - n * e);
}

/* Check 2: out and lse of the bf16 forward against the reference on the float inputs. */
static void check_bound(const spec *s, const oracle_case *c, const qkv__attn_problem *pb,
                        qkv_runtime *rt, const float *out, const float *lse) {
    const int64_t B = pb->B, Tq = pb->Tq, Tk = pb->Tk, Hq = pb->Hq, Hk = pb->Hk, D = pb->D,
                  Dv = pb->Dv, G = pb->group;
    float *rout = malloc((size_t)c->no * 4), *rlse = malloc((size_t)c->nlse * 4);
    float *sabs = malloc((size_t)c->no * 4), *vabs = malloc((size_t)c->nv * 4);
    for (int64_t t = 0; t < c->nv; t++) vabs[t] = fabsf(c->v[t]);
    CHECK_OK(qkv__attention_forward_ref(rt, pb, c->q, c->k, c->v, rout, rlse));
    CHECK_OK(qkv__attention_forward_ref(rt, pb, c->q, c->k, vabs, sabs, NULL));
    const double u = 0x1p-8, e = 0x1p-24, eta = QKV_ATTN_EXP_MAX_REL_ERR;
    double bm = 0;
    if (c->bias) {
        int64_t nb = (B - 1) * c->d.bias_stride_b + (Hq - 1) * c->d.bias_stride_h +
                     (Tq - 1) * c->d.bias_stride_q + Tk;
        for (int64_t t = 0; t < nb; t++) bm = fmax(bm, fabs((double)c->bias[t]));
    }
    if (c->slopes) { /* |slope · dist| with dist <= Tq + Tk */
        double ms = 0;
        for (int64_t h = 0; h < Hq; h++) ms = fmax(ms, fabs((double)c->slopes[h]));
        bm += ms * (double)(Tq + Tk);
    }
    double nt = (double)((Tk + FLASH_BC - 1) / FLASH_BC);
    double rho = pow((1 + eta) * (1 + e), nt + 4) - 1, g = gamma_n((double)Tk + 2 * nt + 4);
    double worst_out = 0, worst_lse = 0;
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < Tq; i++)
            for (int64_t h = 0; h < Hq; h++) {
                const float *q = c->q + ((b * Tq + i) * Hq + h) * D;
                double A = 0;
                for (int64_t j = 0; j < Tk; j++) {
                    const float *k = c->k + ((b * Tk + j) * Hk + h / G) * D;
                    double a = 0;
                    for (int64_t x = 0; x < D; x++) a += fabs((double)q[x] * (double)k[x]);
                    A = fmax(A, a);
                }
                A *= pb->scale;
                double E =
                    (2 * u + u * u) * A + gamma_n((double)D + 9) * (1 + u) * (1 + u) * (A + bm);
                double F = exp(2 * E) * (1 + rho) / (1 - rho) / (1 - g) - 1;
                int64_t ro = ((b * Tq + i) * Hq + h) * Dv, rl = (b * Hq + h) * Tq + i;
                if (rlse[rl] == -INFINITY) { /* nothing visible: exactly the float behaviour */
                    CHECK_MSG(lse[rl] == -INFINITY, "%s: lse of an empty row %g", s->name,
                              (double)lse[rl]);
                    for (int64_t x = 0; x < Dv; x++) CHECK(out[ro + x] == 0.0f);
                    continue;
                }
                for (int64_t x = 0; x < Dv; x++) {
                    double bound =
                        (double)sabs[ro + x] * ((1 + F) * (1 + u) * (1 + g) * (1 + 8 * e) - 1) +
                        (double)Tk * 0x1p-124;
                    double err = fabs((double)out[ro + x] - (double)rout[ro + x]);
                    double r = err / bound;
                    if (!(r <= worst_out)) worst_out = r;
                }
                double lb = E - log(1 - rho) - log(1 - g) +
                            4 * e * (fabs((double)rlse[rl]) + 2 * (A + bm) + log((double)Tk) + 1);
                double r = fabs((double)lse[rl] - (double)rlse[rl]) / lb;
                if (!(r <= worst_lse)) worst_lse = r;
            }
    CHECK_MSG(worst_out <= 1.0, "%s: out error %.3g of the derived bound", s->name, worst_out);
    CHECK_MSG(worst_lse <= 1.0, "%s: lse error %.3g of the derived bound", s->name, worst_lse);
    g_worst_out = fmax(g_worst_out, worst_out);
    g_worst_lse = fmax(g_worst_lse, worst_lse);
    free(rout), free(rlse), free(sabs), free(vabs);
}

static void run_spec(const spec *s, qkv_runtime *rt) {
    qkv_attention_desc d = QKV_ATTENTION_DESC_INIT;
    d.batch = s->B, d.q_len = s->Tq, d.kv_len = s->Tk, d.n_heads = s->Hq, d.n_kv_heads = s->Hk;
    d.head_dim = s->D, d.v_head_dim = s->Dv, d.causal = s->causal;
    d.window_left = s->wl, d.window_right = s->wr, d.dropout_p = s->dropout;
    d.dropout_seed = (uint64_t)(s->B * 7919 + s->Tq * 31 + s->Tk);
    int32_t lens[16];
    for (int64_t b = 0; b < s->B && b < 16; b++) /* a full row, an empty one, then others */
        lens[b] = (int32_t)(b == 0 ? s->Tk : b == 1 ? 0 : (s->Tk * (b + 3) * 7 / 11) % (s->Tk + 1));
    oracle_case c;
    oracle_case_init(&c, &d, s->bias, s->alibi, s->lens ? lens : NULL, s->amp);
    qkv__attn_problem pb;
    CHECK_OK(qkv__attn_validate("test", &c.d, 0, &pb));
    uint16_t *qh = to_bf16(c.q, c.nq), *kh = to_bf16(c.k, c.nk), *vh = to_bf16(c.v, c.nv);
    float *qw = widened(qh, c.nq), *kw = widened(kh, c.nk), *vw = widened(vh, c.nv);
    float *out = malloc((size_t)c.no * 4), *lse = malloc((size_t)c.nlse * 4);
    float *fout = malloc((size_t)c.no * 4), *flse = malloc((size_t)c.nlse * 4);

    /* 1. the public entry points, bf16 against float on the widened inputs */
    CHECK_OK(qkv_attention_forward_bf16(rt, &c.d, qh, kh, vh, out, lse));
    CHECK_OK(qkv_attention_forward(rt, &c.d, qw, kw, vw, fout, flse));
    CHECK_MSG(same_bits(out, fout, c.no), "%s: out differs from the float forward", s->name);
    CHECK_MSG(same_bits(lse, flse, c.nlse), "%s: lse differs from the float forward", s->name);
    /* lse is optional */
    float *out2 = malloc((size_t)c.no * 4);
    CHECK_OK(qkv_attention_forward_bf16(rt, &c.d, qh, kh, vh, out2, NULL));
    CHECK(same_bits(out2, out, c.no));
    free(out2);

    /* 1'. the fused driver with the portable micro-kernels, the same equality */
    qkv_attn_kernels kr;
    qkv__attn_config_ref(&kr);
    float *rout = malloc((size_t)c.no * 4), *rlse = malloc((size_t)c.nlse * 4);
    CHECK_OK(qkv__attention_forward_flash_bf16(rt, &pb, &kr, ref_widen, qh, kh, vh, rout, rlse));
    CHECK_OK(qkv__attention_forward_flash(rt, &pb, &kr, qw, kw, vw, fout, flse));
    CHECK_MSG(same_bits(rout, fout, c.no), "%s: ref kernels: out differs", s->name);
    CHECK_MSG(same_bits(rlse, flse, c.nlse), "%s: ref kernels: lse differs", s->name);
    free(rout), free(rlse);

    /* 2. the derived bound against the reference on the unrounded inputs (no dropout: its mask
     * is the same either way, but the bound above is for the plain softmax) */
    if (s->dropout == 0.0f) check_bound(s, &c, &pb, rt, out, lse);
    CHECK_EQ_INT(oracle_count_nonfinite(out, c.no), 0);
    g_cases++;
    free(qh), free(kh), free(vh), free(qw), free(kw), free(vw);
    free(out), free(lse), free(fout), free(flse);
    oracle_case_free(&c);
}

/* Uniform in [0, n). */
static int64_t pick(int64_t n) {
    return (int64_t)((oracle_uniform() + 1.0f) * 0.5f * (float)n) % n;
}

static void test_shapes(qkv_runtime *rt) {
    static const int64_t dims[] = {1, 17, 32, 64, 80, 96, 128};
    for (size_t t = 0; t < sizeof dims / sizeof dims[0]; t++) {
        int64_t D = dims[t];
        spec a = {"dims", 2, 67, 67, 2, 2, D, 0, 0, -1, -1, BIAS_NONE, 0, 0, 1.0f, 0};
        run_spec(&a, rt);
        spec b = {"dims causal GQA Tq<Tk",
                  1,
                  33,
                  130,
                  6,
                  2,
                  D,
                  D / 2 + 3,
                  1,
                  -1,
                  -1,
                  BIAS_NONE,
                  0,
                  0,
                  1.0f,
                  0};
        run_spec(&b, rt);
        spec e = {
            "dims causal Tq>Tk padded", 3, 90, 40, 2, 1, D, 0, 1, -1, -1, BIAS_NONE, 0, 1, 1.0f, 0};
        run_spec(&e, rt);
        spec f = {"dims decode", 2, 1, 200, 8, 2, D, 0, 1, -1, -1, BIAS_NONE, 0, 1, 1.0f, 0};
        run_spec(&f, rt);
    }
    /* T = 1; one query tile and several; K/V repacked once (Hk > 1, several query tiles) */
    spec t1 = {"T=1", 1, 1, 1, 1, 1, 64, 0, 0, -1, -1, BIAS_NONE, 0, 0, 1.0f, 0};
    run_spec(&t1, rt);
    spec t1c = {"T=1 causal MQA", 4, 1, 1, 8, 1, 32, 0, 1, -1, -1, BIAS_NONE, 0, 0, 1.0f, 0};
    run_spec(&t1c, rt);
    spec lg = {"long causal", 1, 300, 300, 2, 1, 64, 0, 1, -1, -1, BIAS_NONE, 0, 0, 1.0f, 0};
    run_spec(&lg, rt);
    spec pk = {"kv repack", 2, 200, 200, 4, 2, 64, 0, 1, -1, -1, BIAS_NONE, 0, 1, 1.0f, 0};
    run_spec(&pk, rt);
    spec win = {"window bias alibi", 2, 129, 161,  4, 2, 80, 0, 1, 40, 3,
                BIAS_BCAST_H,        1, 1,   1.0f, 0};
    run_spec(&win, rt);
    spec big = {"amplitude 4", 1, 70, 70, 2, 2, 128, 0, 0, -1, -1, BIAS_FULL, 0, 0, 4.0f, 0};
    run_spec(&big, rt);
    spec dr = {"dropout", 2, 70, 90, 4, 2, 64, 0, 1, -1, -1, BIAS_NONE, 0, 1, 1.0f, 0.25f};
    run_spec(&dr, rt);
    /* random shapes and masks, each field drawn on its own */
    oracle_seed(1616);
    for (int t = 0; t < 30; t++) {
        int64_t Hk = 1 + pick(3), G = 1 + pick(3);
        spec s = {.name = "random",
                  .B = 1 + pick(3),
                  .Tq = 1 + pick(100),
                  .Tk = 1 + pick(150),
                  .Hq = Hk * G,
                  .Hk = Hk,
                  .D = 1 + pick(130),
                  .Dv = pick(2) ? 0 : 1 + pick(40),
                  .causal = (int)pick(2),
                  .wl = pick(3) ? -1 : pick(30),
                  .wr = pick(4) ? -1 : pick(10),
                  .bias = (int)pick(5),
                  .alibi = (int)pick(2),
                  .lens = (int)pick(2),
                  .amp = 1.0f};
        run_spec(&s, rt);
    }
}

/* Rows with nothing to attend to, and rows hidden by a -inf bias: lse -inf, out 0. */
static void test_empty_rows(qkv_runtime *rt) {
    spec a = {"empty rows", 3, 50, 20, 2, 1, 8, 0, 1, -1, -1, BIAS_NONE, 0, 1, 1.0f, 0};
    run_spec(&a, rt);
    qkv_attention_desc d = QKV_ATTENTION_DESC_INIT;
    d.batch = 1, d.q_len = 5, d.kv_len = 70, d.n_heads = 2, d.n_kv_heads = 2, d.head_dim = 4;
    oracle_case c;
    oracle_case_init(&c, &d, BIAS_FULL, 0, NULL, 1.0f);
    for (int64_t j = 0; j < 70; j++) c.bias[1 * 70 + j] = -INFINITY; /* h 0, row 1 */
    uint16_t *qh = to_bf16(c.q, c.nq), *kh = to_bf16(c.k, c.nk), *vh = to_bf16(c.v, c.nv);
    float out[5 * 2 * 4], lse[10];
    CHECK_OK(qkv_attention_forward_bf16(rt, &c.d, qh, kh, vh, out, lse));
    CHECK(lse[1] == -INFINITY);
    for (int x = 0; x < 4; x++) CHECK(out[(1 * 2 + 0) * 4 + x] == 0.0f);
    CHECK_EQ_INT(oracle_count_nonfinite(out, 40), 0);
    free(qh), free(kh), free(vh);
    oracle_case_free(&c);
}

static void expect_invalid(qkv_status st, const char *field) {
    CHECK_STATUS(st, QKV_ERR_INVALID_ARG);
    CHECK(strstr(qkv_last_error(), "qkv_attention_forward_bf16") != NULL);
    CHECK_MSG(strstr(qkv_last_error(), field) != NULL, "message '%s' lacks '%s'", qkv_last_error(),
              field);
}

static void test_bad_args(void) {
    qkv_attention_desc d = QKV_ATTENTION_DESC_INIT;
    d.batch = 1, d.q_len = 2, d.kv_len = 3, d.n_heads = 2, d.n_kv_heads = 1, d.head_dim = 4;
    uint16_t q[16] = {0}, k[12] = {0}, v[12] = {0};
    float out[16];
    CHECK_OK(qkv_attention_forward_bf16(NULL, &d, q, k, v, out, NULL));
    expect_invalid(qkv_attention_forward_bf16(NULL, NULL, q, k, v, out, NULL), "desc");
    expect_invalid(qkv_attention_forward_bf16(NULL, &d, NULL, k, v, out, NULL), "q");
    expect_invalid(qkv_attention_forward_bf16(NULL, &d, q, NULL, v, out, NULL), "k");
    expect_invalid(qkv_attention_forward_bf16(NULL, &d, q, k, NULL, out, NULL), "v");
    expect_invalid(qkv_attention_forward_bf16(NULL, &d, q, k, v, NULL, NULL), "out");
    qkv_attention_desc b = d;
    b.batch = 0;
    expect_invalid(qkv_attention_forward_bf16(NULL, &b, q, k, v, out, NULL), "batch");
    b = d, b.head_dim = -4;
    expect_invalid(qkv_attention_forward_bf16(NULL, &b, q, k, v, out, NULL), "head_dim");
    b = d, b.n_kv_heads = 3;
    expect_invalid(qkv_attention_forward_bf16(NULL, &b, q, k, v, out, NULL), "n_kv_heads");
    b = d, b.dropout_p = 1.0f;
    expect_invalid(qkv_attention_forward_bf16(NULL, &b, q, k, v, out, NULL), "dropout_p");
    b = d, b.q_len = INT64_MAX / 2;
    expect_invalid(qkv_attention_forward_bf16(NULL, &b, q, k, v, out, NULL), "overflows");
    int32_t lens[1] = {4};
    b = d, b.kv_lens = lens;
    expect_invalid(qkv_attention_forward_bf16(NULL, &b, q, k, v, out, NULL), "kv_lens");
}

int main(void) {
    test_use_arch_from_env();
    test_bad_args();
    qkv_runtime *rt = NULL;
    CHECK_OK(qkv_runtime_create(2, &rt));
    test_shapes(rt);
    test_empty_rows(NULL);
    qkv_runtime_free(rt);
    printf("%lld cases bit-identical to the float forward; worst error / derived bound: out "
           "%.3g, lse %.3g\n",
           (long long)g_cases, g_worst_out, g_worst_lse);
    return test_finish("attention_bf16");
}
