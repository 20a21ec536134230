/* test_nn_lora.c — the linear layer's low-rank adapter (qkv_nn_lora, PEFT's LoraLayer) on the
 * ISA that QKV_ARCH selects (CTest runs it for scalar, avx2 and avx512):
 *   - the fast layer against its double-precision twin (qkv_nn_linear_lora_*_ref) on random and
 *     edge shapes (r = 1, r = 64 > C, N = 1, odd sizes), both weight layouts, strided slices of
 *     a fused weight, prepacked weights without w, every activation with a residual,
 *     residual == out, dropout 0 and 0.3; gradients pre-filled (the += contract), per-element
 *     tolerances from float rounding (Higham's γ bounds, written next to each check);
 *   - gradients of x, w, bias, a and b against central differences of an independent double
 *     forward written here (mask regenerated from core/rng.h), so the forward's and the
 *     backward's dropout masks must be the same one;
 *   - merge: the merged plain layer against the layer with its adapter, merge then unmerge;
 *   - Hugging Face PEFT's LoraLayer on nn.Linear and on GPT-2's Conv1D (fan_in_fan_out, rslora):
 *     forward, every gradient and the merged weight against tools/gen_lora_golden.py's files;
 *   - 1 vs 2 threads bit for bit; dw NULL and NULL adapter gradients; invalid arguments;
 *     allocation failure. */
#include "core/rng.h"
#include "fixture_util.h"
#include "kernels/gemm.h"
#include "nn/nn.h"
#include "nn_testutil.h"
#include "test_arch.h"

#define U 0x1p-24 /* unit roundoff of float */

static double worst_ratio; /* the largest error seen, as a fraction of its tolerance */
static char worst_what[256];

/* |got - want| <= tol[i] for every element (NaN never expected here). */
static void cmp(const char *what, const float *got, const float *want, const double *tol,
                int64_t n) {
    double ratio = 0;
    int reported = 0;
    for (int64_t i = 0; i < n; i++) {
        const double d = fabs((double)got[i] - (double)want[i]);
        const int ok = d <= tol[i];
        if (tol[i] > 0) ratio = fmax(ratio, d / tol[i]);
        if (!ok) {
            ratio = INFINITY;
            if (reported++ < 4)
                fprintf(stderr, "%s: [%lld] fast %.9g ref %.9g |diff| %.3g tol %.3g\n", what,
                        (long long)i, got[i], want[i], d, tol[i]);
        }
    }
    CHECK_MSG(ratio <= 1.0, "%s: worst error %.3g x tolerance", what, ratio);
    if (ratio > worst_ratio) {
        worst_ratio = ratio;
        snprintf(worst_what, sizeof worst_what, "%.250s", what);
    }
}

static char label[512];
#define LABEL(...) (snprintf(label, sizeof label, __VA_ARGS__), label)

static const char *act_name(qkv_act a) {
    static const char *names[] = {"none", "gelu_erf", "gelu_tanh", "relu", "silu"};
    return (unsigned)a < sizeof names / sizeof *names ? names[a] : "?";
}

/* The dropout multiplier of input element k (0 or 1/(1-p)), independent of src/nn: the mask
 * rule of docs/NN.md over core/rng.h. */
static double keep_of(const qkv_nn_lora *A, int64_t k) {
    if (A->dropout == 0.0f) return 1.0;
    return qkv__rng_uniform(A->seed, A->stream, (uint64_t)k) >= A->dropout
               ? 1.0 / (1.0 - (double)A->dropout)
               : 0.0;
}

/* ---------------------------------------------------------------- fast vs reference */

/* A layer (N, C) -> (N, OC) with an adapter of rank r. in_out: w (C, OC); slice: w is the
 * middle third of a 3x wider fused matrix; resid: 0 none, 1 separate, 2 residual == out;
 * packed: the forward also runs on prepacked weights with w NULL (must give the same bits). */
static void test_case(int64_t N, int64_t C, int64_t OC, int64_t r, int in_out, int slice,
                      qkv_act act, int resid, float p) {
    char name[256];
    snprintf(name, sizeof name,
             "N=%lld C=%lld OC=%lld r=%lld in_out=%d slice=%d act=%s resid=%d p=%g", (long long)N,
             (long long)C, (long long)OC, (long long)r, in_out, slice, act_name(act), resid,
             (double)p);
    const int64_t dense = in_out ? OC : C, rows = in_out ? C : OC;
    const int64_t ld = slice ? 3 * dense : dense, off = slice ? dense : 0;
    float *wfull = nt_rand(rows * ld, -1, 1);
    const float *w = wfull + off;
    float *wt = nt_alloc(OC * C); /* (OC, C): the ref's layout */
    for (int64_t o = 0; o < OC; o++)
        for (int64_t i = 0; i < C; i++) wt[o * C + i] = in_out ? w[i * ld + o] : w[o * ld + i];
    float *x = nt_rand(N * C, -1, 1), *bias = nt_rand(OC, -1, 1), *res = nt_rand(N * OC, -2, 2);
    float *a = nt_rand(r * C, -1, 1), *bl = nt_rand(OC * r, -1, 1);
    qkv_nn_lora A = {.a = a,
                     .b = bl,
                     .r = r,
                     .scale = 16.0f / (float)r,
                     .dropout = p,
                     .seed = 1234 + (uint64_t)N,
                     .stream = 7};
    qkv_nn_linear L = {
        .w = w, .b = bias, .C = C, .OC = OC, .ldw = slice ? ld : 0, .in_out = in_out, .lora = &A};

    /* magnitudes: hm[n, k] = Σ_i |drop(x)||a|, hk[n, k] the exact h */
    double *hm = nt_alloc_d(N * r);
    for (int64_t n = 0; n < N; n++)
        for (int64_t k = 0; k < r; k++)
            for (int64_t i = 0; i < C; i++)
                hm[n * r + k] += fabs(x[n * C + i] * keep_of(&A, n * C + i) * a[k * C + i]);

    /* ---- forward */
    float *out = resid == 2 ? nt_copy(res, N * OC) : nt_rand(N * OC, -9, 9);
    const float *rp = resid == 1 ? res : resid == 2 ? out : NULL;
    CHECK_OK(qkv_nn_linear_forward(NULL, &L, out, x, N, act, rp));
    float *z = nt_alloc(N * OC), *want = nt_alloc(N * OC);
    CHECK_OK(qkv_nn_linear_lora_forward_ref(NULL, z, x, wt, bias, &A, N, C, OC));
    float *az = nt_copy(z, N * OC);
    if (act != QKV_ACT_NONE) CHECK_OK(qkv_nn_act_forward_ref(NULL, act, az, z, N * OC));
    double *tol = nt_alloc_d(N * OC);
    for (int64_t n = 0; n < N; n++)
        for (int64_t o = 0; o < OC; o++) {
            const int64_t k = n * OC + o;
            double mb = fabs(bias[o]), ml = 0;
            for (int64_t i = 0; i < C; i++) mb += fabs(x[n * C + i] * wt[o * C + i]);
            for (int64_t j = 0; j < r; j++) ml += hm[n * r + j] * fabs(bl[o * r + j]);
            ml *= fabs(A.scale);
            if (resid == 2) mb += fabs(res[k]); /* the old out is one more summand */
            /* float h errs by (C + 1)·U·hm, h·bᵀ by r more products, the base sum by C + 2
             * terms, the adapter is one summand of it; the dropped input and the alpha store
             * add a few U: (C + r + 8)·U over every magnitude involved bounds the pre-activation */
            double t = (double)(C + r + 8) * U * (mb + ml);
            if (act != QKV_ACT_NONE) /* through act (|act'| <= 1.13) plus the kernel's 1e-6 */
                t = 1.13 * t + 1.5e-6 * fabs(az[k]) + 1e-15;
            const double rr = resid ? res[k] : 0.0;
            want[k] = (float)((double)az[k] + rr);
            if (resid) t += 2 * U * (fabs(az[k]) + fabs(rr));
            tol[k] = t;
        }
    cmp(LABEL("%s forward", name), out, want, tol, N * OC);

    /* ---- prepacked weights, w NULL: the GEMM promises the same bits */
    {
        qkv_gemm_packed *pk = NULL;
        CHECK_OK(qkv__gemm_pack_b(NULL, !in_out, C, OC, w, ld, &pk));
        qkv_nn_linear Lp = L;
        Lp.packed = pk, Lp.w = NULL, Lp.ldw = 0;
        float *out2 = resid == 2 ? nt_copy(res, N * OC) : nt_rand(N * OC, -9, 9);
        const float *rp2 = resid == 1 ? res : resid == 2 ? out2 : NULL;
        if (pk) {
            CHECK_OK(qkv_nn_linear_forward(NULL, &Lp, out2, x, N, act, rp2));
            nt_same_bits(LABEL("%s packed (w NULL) vs unpacked", name), out2, out, N * OC);
        }
        free(out2);
        qkv__gemm_packed_free(pk);
    }

    /* ---- backward: dout is the gradient before the activation, all gradients pre-filled */
    float *dout = nt_rand(N * OC, -1, 1);
    float *dinp = nt_rand(N * C, -1, 1), *pre_dinp = nt_copy(dinp, N * C);
    float *dwfull = nt_rand(rows * ld, -1, 1), *pre_dw = nt_copy(dwfull, rows * ld);
    float *db = nt_rand(OC, -1, 1), *pre_db = nt_copy(db, OC);
    float *ga = nt_rand(r * C, -1, 1), *pre_ga = nt_copy(ga, r * C);
    float *gb = nt_rand(OC * r, -1, 1), *pre_gb = nt_copy(gb, OC * r);
    A.ga = ga, A.gb = gb;
    CHECK_OK(qkv_nn_linear_backward(NULL, &L, dinp, dwfull + off, db, dout, x, N));
    float *rx = nt_alloc(N * C);
    float *rga = nt_alloc(r * C), *rgb = nt_alloc(OC * r); /* the ref's, from zero */
    qkv_nn_lora R = A;
    R.ga = rga, R.gb = rgb;
    CHECK_OK(qkv_nn_linear_lora_backward_ref(NULL, rx, NULL, NULL, dout, x, wt, &R, N, C, OC));

    /* dhm[n, k] = Σ_o |dout||b|: the magnitude of dh = dout · b */
    double *dhm = nt_alloc_d(N * r);
    for (int64_t n = 0; n < N; n++)
        for (int64_t k = 0; k < r; k++)
            for (int64_t o = 0; o < OC; o++)
                dhm[n * r + k] += fabs(dout[n * OC + o] * bl[o * r + k]);
    const double sc = fabs(A.scale);

    /* dinp = pre + dout · op(w)ᵀ + scale · drop'(dh · a) */
    float *wx = nt_alloc(N * C);
    double *tx = nt_alloc_d(N * C);
    for (int64_t n = 0; n < N; n++)
        for (int64_t i = 0; i < C; i++) {
            const int64_t k = n * C + i;
            double m = fabs(pre_dinp[k]), ml = 0;
            for (int64_t o = 0; o < OC; o++) m += fabs(dout[n * OC + o] * wt[o * C + i]);
            for (int64_t j = 0; j < r; j++) ml += dhm[n * r + j] * fabs(a[j * C + i]);
            ml *= sc * keep_of(&A, k);
            wx[k] = (float)((double)pre_dinp[k] + rx[k]);
            tx[k] = (double)(OC + r + 8) * U * (m + ml);
        }
    cmp(LABEL("%s dinp", name), dinp, wx, tx, N * C);
    { /* the overwriting form over junk: the bits of += into zeros (with the adapter's term) */
        float *ds = nt_junk(N * C), *dz = nt_alloc(N * C);
        qkv_nn_lora A2 = A;
        A2.ga = A2.gb = NULL;
        qkv_nn_linear L2 = L;
        L2.lora = &A2;
        CHECK_OK(qkv_nn_linear_backward_set(NULL, &L2, ds, NULL, NULL, dout, x, N));
        CHECK_OK(qkv_nn_linear_backward(NULL, &L2, dz, NULL, NULL, dout, x, N));
        nt_same_bits(LABEL("%s dinp set vs += into zeros", name), ds, dz, N * C);
        CHECK(qkv_nn_linear_backward_act_set(NULL, &L2, ds, NULL, NULL, dout, x, N,
                                             QKV_ACT_GELU_ERF, dz) == QKV_ERR_INVALID_ARG);
        free(ds), free(dz);
    }
    /* dw, db are the plain layer's (test_nn_fast checks those against the ref), bit for bit;
     * outside the slice nothing moved */
    {
        float *dw2 = nt_copy(pre_dw, rows * ld), *db2 = nt_copy(pre_db, OC);
        qkv_nn_linear P = L;
        P.lora = NULL;
        CHECK_OK(qkv_nn_linear_backward(NULL, &P, NULL, dw2 + off, db2, dout, x, N));
        nt_same_bits(LABEL("%s dw vs the plain layer's", name), dwfull, dw2, rows * ld);
        nt_same_bits(LABEL("%s db vs the plain layer's", name), db, db2, OC);
        free(dw2), free(db2);
    }
    /* ga = pre + scale · dhᵀ · drop(x): dh errs by (OC + 1)·U·dhm, then N products */
    float *wga = nt_alloc(r * C);
    double *tga = nt_alloc_d(r * C);
    for (int64_t k = 0; k < r; k++)
        for (int64_t i = 0; i < C; i++) {
            double m = 0;
            for (int64_t n = 0; n < N; n++)
                m += dhm[n * r + k] * fabs(x[n * C + i] * keep_of(&A, n * C + i));
            wga[k * C + i] = (float)((double)pre_ga[k * C + i] + rga[k * C + i]);
            tga[k * C + i] = (double)(OC + N + 8) * U * (sc * m + fabs(pre_ga[k * C + i]));
        }
    cmp(LABEL("%s ga", name), ga, wga, tga, r * C);
    /* gb = pre + scale · doutᵀ · h: h errs by (C + 1)·U·hm, then N products */
    float *wgb = nt_alloc(OC * r);
    double *tgb = nt_alloc_d(OC * r);
    for (int64_t o = 0; o < OC; o++)
        for (int64_t k = 0; k < r; k++) {
            double m = 0;
            for (int64_t n = 0; n < N; n++) m += fabs(dout[n * OC + o]) * hm[n * r + k];
            wgb[o * r + k] = (float)((double)pre_gb[o * r + k] + rgb[o * r + k]);
            tgb[o * r + k] = (double)(C + N + 8) * U * (sc * m + fabs(pre_gb[o * r + k]));
        }
    cmp(LABEL("%s gb", name), gb, wgb, tgb, OC * r);

    /* dw NULL (the frozen base) skips the weight gradient and leaves the others' bits alone;
     * NULL adapter gradients are skipped */
    {
        float *dinp2 = nt_copy(pre_dinp, N * C), *ga2 = nt_copy(pre_ga, r * C);
        float *gb2 = nt_copy(pre_gb, OC * r);
        qkv_nn_lora A2 = A;
        A2.ga = ga2, A2.gb = gb2;
        qkv_nn_linear L2 = L;
        L2.lora = &A2;
        CHECK_OK(qkv_nn_linear_backward(NULL, &L2, dinp2, NULL, NULL, dout, x, N));
        nt_same_bits(LABEL("%s dinp (dw NULL)", name), dinp2, dinp, N * C);
        nt_same_bits(LABEL("%s ga (dw NULL)", name), ga2, ga, r * C);
        nt_same_bits(LABEL("%s gb (dw NULL)", name), gb2, gb, OC * r);
        memcpy(ga2, pre_ga, (size_t)(r * C) * sizeof(float)); /* ga alone (no h needed) */
        A2.gb = NULL;
        CHECK_OK(qkv_nn_linear_backward(NULL, &L2, NULL, NULL, NULL, dout, x, N));
        nt_same_bits(LABEL("%s ga alone", name), ga2, ga, r * C);
        memcpy(gb2, pre_gb, (size_t)(OC * r) * sizeof(float)); /* gb alone (no dh needed) */
        A2.ga = NULL, A2.gb = gb2;
        CHECK_OK(qkv_nn_linear_backward(NULL, &L2, NULL, NULL, NULL, dout, x, N));
        nt_same_bits(LABEL("%s gb alone", name), gb2, gb, OC * r);
        A2.ga = NULL, A2.gb = NULL; /* nor is inp needed then */
        memcpy(dinp2, pre_dinp, (size_t)(N * C) * sizeof(float));
        CHECK_OK(qkv_nn_linear_backward(NULL, &L2, dinp2, NULL, NULL, dout, NULL, N));
        nt_same_bits(LABEL("%s dinp alone", name), dinp2, dinp, N * C);
        free(dinp2), free(ga2), free(gb2);
    }
    free(wfull), free(wt), free(x), free(bias), free(res), free(a), free(bl), free(hm), free(out);
    free(z), free(want), free(az), free(tol), free(dout), free(dinp), free(pre_dinp), free(dwfull);
    free(pre_dw), free(db), free(pre_db), free(ga), free(pre_ga), free(gb), free(pre_gb), free(rx);
    free(rga), free(rgb), free(dhm), free(wx), free(tx), free(wga), free(tga), free(wgb), free(tgb);
}

static void test_fast_vs_ref(void) {
    /* N, C, OC, r: r = 1; r = 64 > C; N = 1; odd sizes; C, OC past the GEMM's blocks */
    static const int64_t shapes[][4] = {{1, 1, 1, 1},      {3, 17, 5, 1}, {17, 63, 65, 4},
                                        {1, 33, 47, 8},    {5, 7, 9, 64}, {65, 130, 33, 16},
                                        {130, 257, 66, 8}, {2, 300, 5, 3}};
    static const float ps[] = {0.0f, 0.3f};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (int in_out = 0; in_out < 2; in_out++)
            for (size_t q = 0; q < 2; q++) {
                const int64_t *sh = shapes[s];
                test_case(sh[0], sh[1], sh[2], sh[3], in_out, (int)(s & 1), QKV_ACT_NONE, 0, ps[q]);
                test_case(sh[0], sh[1], sh[2], sh[3], in_out, !(s & 1), QKV_ACT_NONE, 2, ps[q]);
                test_case(sh[0], sh[1], sh[2], sh[3], in_out, 1, QKV_ACT_GELU_ERF, 1, ps[q]);
            }
    static const qkv_act acts[] = {QKV_ACT_GELU_TANH, QKV_ACT_RELU, QKV_ACT_SILU};
    for (size_t k = 0; k < 3; k++) {
        test_case(17, 63, 65, 4, 1, 1, acts[k], 1, 0.3f);
        test_case(4, 9, 5, 64, 0, 0, acts[k], 0, 0.0f);
    }
}

/* ---------------------------------------------------------------- finite differences */

typedef struct {
    int64_t N, C, OC, r;
    int in_out;
    qkv_act act;
    float *x, *w, *bias, *a, *b, *res; /* float values; w in its layout (dense) */
    float *gx, *gw, *gbias, *ga, *gb;
    qkv_nn_lora A;
    qkv_nn_linear L;
} fd_ctx;

/* y = act(x · op(w) + bias + scale · (drop(x) · aᵀ) · bᵀ) + res, in double from the prob's
 * variables (order: x, w, bias, a, b) */
static void fd_fwd_d(nn_prob *p) {
    const fd_ctx *c = p->ctx;
    const double *x = p->var[0].d, *w = p->var[1].d, *bias = p->var[2].d, *a = p->var[3].d,
                 *b = p->var[4].d;
    const int64_t N = c->N, C = c->C, OC = c->OC, r = c->r;
    double *h = nt_alloc_d(r);
    for (int64_t n = 0; n < N; n++) {
        for (int64_t k = 0; k < r; k++) {
            h[k] = 0;
            for (int64_t i = 0; i < C; i++)
                h[k] += x[n * C + i] * keep_of(&c->A, n * C + i) * a[k * C + i];
        }
        for (int64_t o = 0; o < OC; o++) {
            double s = bias[o], t = 0;
            for (int64_t i = 0; i < C; i++)
                s += x[n * C + i] * (c->in_out ? w[i * OC + o] : w[o * C + i]);
            for (int64_t k = 0; k < r; k++) t += h[k] * b[o * r + k];
            s += (double)c->A.scale * t;
            p->out_d[n * OC + o] = ref_act((int)c->act, s) + c->res[n * OC + o];
        }
    }
    free(h);
}

static qkv_status fd_fwd_f(nn_prob *p) {
    fd_ctx *c = p->ctx;
    return qkv_nn_linear_forward(NULL, &c->L, p->out_f, c->x, c->N, c->act, c->res);
}

/* dz = dout · act'(z) with z the pre-activation (recomputed), then the layer's backward */
static qkv_status fd_bwd_f(nn_prob *p) {
    fd_ctx *c = p->ctx;
    const int64_t n = c->N * c->OC;
    float *z = nt_alloc(n), *dz = nt_alloc(n);
    qkv_status st = qkv_nn_linear_forward(NULL, &c->L, z, c->x, c->N, QKV_ACT_NONE, NULL);
    if (st == QKV_OK) {
        if (c->act != QKV_ACT_NONE)
            st = qkv_nn_act_backward(NULL, c->act, dz, p->dout_f, z, n);
        else
            memcpy(dz, p->dout_f, (size_t)n * sizeof(float));
    }
    if (st == QKV_OK)
        st = qkv_nn_linear_backward(NULL, &c->L, c->gx, c->gw, c->gbias, dz, c->x, c->N);
    free(z), free(dz);
    return st;
}

static void fd_case(int64_t N, int64_t C, int64_t OC, int64_t r, int in_out, qkv_act act, float p,
                    float scale) {
    fd_ctx c = {.N = N, .C = C, .OC = OC, .r = r, .in_out = in_out, .act = act};
    c.x = nt_rand(N * C, -1, 1), c.w = nt_rand(OC * C, -1, 1), c.bias = nt_rand(OC, -1, 1);
    c.a = nt_rand(r * C, -1, 1), c.b = nt_rand(OC * r, -1, 1), c.res = nt_rand(N * OC, -1, 1);
    c.gx = nt_alloc(N * C), c.gw = nt_alloc(OC * C), c.gbias = nt_alloc(OC);
    c.ga = nt_alloc(r * C), c.gb = nt_alloc(OC * r);
    c.A = (qkv_nn_lora){.a = c.a,
                        .b = c.b,
                        .ga = c.ga,
                        .gb = c.gb,
                        .r = r,
                        .scale = scale,
                        .dropout = p,
                        .seed = 99,
                        .stream = 5};
    c.L = (qkv_nn_linear){.w = c.w, .b = c.bias, .C = C, .OC = OC, .in_out = in_out, .lora = &c.A};
    char name[128];
    snprintf(name, sizeof name, "lora N%lld C%lld OC%lld r%lld io%d %s p%g", (long long)N,
             (long long)C, (long long)OC, (long long)r, in_out, act_name(act), (double)p);
    nn_prob pr = {
        .label = name, .ctx = &c, .fwd_d = fd_fwd_d, .fwd_f = fd_fwd_f, .bwd_f = fd_bwd_f};
    nn_prob_var(&pr, "x", c.x, c.gx, N * C);
    nn_prob_var(&pr, "w", c.w, c.gw, OC * C);
    nn_prob_var(&pr, "bias", c.bias, c.gbias, OC);
    nn_prob_var(&pr, "a", c.a, c.ga, r * C);
    nn_prob_var(&pr, "b", c.b, c.gb, OC * r);
    pr.nout = N * OC;
    pr.out_f = nt_alloc(N * OC), pr.dout_f = nt_rand(N * OC, -1, 1), pr.out_d = nt_alloc_d(N * OC);
    nn_prob_run(&pr, 1e-6, 5e-6);
    nn_prob_free(&pr);
    free(pr.out_f), free(pr.dout_f), free(pr.out_d);
    free(c.x), free(c.w), free(c.bias), free(c.a), free(c.b), free(c.res);
    free(c.gx), free(c.gw), free(c.gbias), free(c.ga), free(c.gb);
}

static void test_finite_differences(void) {
    printf("finite differences (errors relative to max |g|):\n");
    fd_case(3, 5, 4, 2, 0, QKV_ACT_NONE, 0.0f, 2.0f);
    fd_case(3, 5, 4, 2, 1, QKV_ACT_NONE, 0.0f, 2.0f);
    fd_case(4, 6, 3, 3, 0, QKV_ACT_GELU_ERF, 0.4f, 0.5f);
    fd_case(4, 6, 3, 3, 1, QKV_ACT_GELU_TANH, 0.4f, 0.5f);
    fd_case(1, 3, 2, 8, 0, QKV_ACT_SILU, 0.2f, 1.0f / 8.0f);
    fd_case(2, 1, 1, 1, 1, QKV_ACT_NONE, 0.5f, -3.0f);
}

/* ---------------------------------------------------------------- merge */

static void test_merge_case(int64_t N, int64_t C, int64_t OC, int64_t r, int in_out, int slice) {
    char name[160];
    snprintf(name, sizeof name, "merge N=%lld C=%lld OC=%lld r=%lld in_out=%d slice=%d",
             (long long)N, (long long)C, (long long)OC, (long long)r, in_out, slice);
    const int64_t dense = in_out ? OC : C, rows = in_out ? C : OC;
    const int64_t ld = slice ? 3 * dense : dense, off = slice ? dense : 0, nw = rows * ld;
    float *wfull = nt_rand(nw, -1, 1), *orig = nt_copy(wfull, nw);
    float *x = nt_rand(N * C, -1, 1), *bias = nt_rand(OC, -1, 1);
    float *a = nt_rand(r * C, -1, 1), *b = nt_rand(OC * r, -1, 1);
    const qkv_nn_lora A = {.a = a, .b = b, .r = r, .scale = 32.0f / (float)r};
    qkv_nn_linear L = {.w = wfull + off,
                       .b = bias,
                       .C = C,
                       .OC = OC,
                       .ldw = slice ? ld : 0,
                       .in_out = in_out,
                       .lora = &A};
    float *y1 = nt_alloc(N * OC), *y2 = nt_alloc(N * OC);
    CHECK_OK(qkv_nn_linear_forward(NULL, &L, y1, x, N, QKV_ACT_NONE, NULL));

    CHECK_OK(qkv_nn_lora_merge(wfull + off, in_out, L.ldw, C, OC, &A, 1.0f));
    /* the merged weight: w + scale · b · a per element (r products), outside the slice as it was */
    float *want = nt_copy(orig, nw);
    double *tol = nt_alloc_d(nw);
    double *em = nt_alloc_d(OC * C); /* |scale|·Σ_k |b||a|: the merge's magnitude */
    for (int64_t o = 0; o < OC; o++)
        for (int64_t i = 0; i < C; i++) {
            const int64_t k = off + (in_out ? i * ld + o : o * ld + i);
            double s = 0, m = 0;
            for (int64_t j = 0; j < r; j++) {
                s += (double)b[o * r + j] * a[j * C + i];
                m += fabs((double)b[o * r + j] * a[j * C + i]);
            }
            em[o * C + i] = fabs(A.scale) * m;
            want[k] = (float)((double)orig[k] + A.scale * s);
            tol[k] = (double)(r + 4) * U * (fabs(orig[k]) + em[o * C + i]);
        }
    cmp(LABEL("%s merged w", name), wfull, want, tol, nw);

    /* the plain merged layer computes what the adapted one did */
    L.lora = NULL;
    CHECK_OK(qkv_nn_linear_forward(NULL, &L, y2, x, N, QKV_ACT_NONE, NULL));
    double *ty = nt_alloc_d(N * OC);
    for (int64_t n = 0; n < N; n++)
        for (int64_t o = 0; o < OC; o++) {
            double m = fabs(bias[o]);
            for (int64_t i = 0; i < C; i++) {
                const int64_t k = off + (in_out ? i * ld + o : o * ld + i);
                m += fabs(x[n * C + i]) * (fabs(orig[k]) + em[o * C + i]);
            }
            /* both are float sums of C (+ r) terms of these magnitudes, the merged weight
             * rounded once more */
            ty[n * OC + o] = 2.0 * (double)(C + r + 8) * U * m;
        }
    cmp(LABEL("%s merged forward", name), y2, y1, ty, N * OC);

    /* unmerge restores w (to the rounding of two merges), and nothing outside the slice moved */
    CHECK_OK(qkv_nn_lora_merge(wfull + off, in_out, L.ldw, C, OC, &A, -1.0f));
    for (int64_t o = 0; o < OC; o++)
        for (int64_t i = 0; i < C; i++) {
            const int64_t k = off + (in_out ? i * ld + o : o * ld + i);
            tol[k] = 2.0 * (double)(r + 4) * U * (fabs(orig[k]) + em[o * C + i]);
        }
    cmp(LABEL("%s unmerged w", name), wfull, orig, tol, nw);
    free(wfull), free(orig), free(x), free(bias), free(a), free(b), free(y1), free(y2);
    free(want), free(tol), free(em), free(ty);
}

static void test_merge(void) {
    static const int64_t shapes[][4] = {
        {1, 1, 1, 1}, {3, 17, 5, 2}, {17, 63, 65, 8}, {5, 7, 9, 64}, {33, 130, 257, 16}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (int in_out = 0; in_out < 2; in_out++)
            for (int slice = 0; slice < 2; slice++)
                test_merge_case(shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3], in_out,
                                slice);
}

/* ---------------------------------------------------------------- PEFT golden files */

/* A float32 copy of fixture tensor `name`, its element count in *n. */
static float *fx_copy(qkv_safetensors *st, const char *name, int64_t *n) {
    const qkv_st_tensor *t = qkv_safetensors_find(st, name);
    CHECK_MSG(t && t->dtype == QKV_DTYPE_F32, "fixture tensor %s", name);
    if (!t || t->dtype != QKV_DTYPE_F32) exit(1);
    *n = (int64_t)(t->nbytes / sizeof(float));
    float *p = nt_alloc(*n);
    memcpy(p, t->data, t->nbytes);
    return p;
}

static double meta(qkv_safetensors *st, const char *key) {
    const char *v = qkv_safetensors_metadata_get(st, key);
    CHECK_MSG(v != NULL, "fixture metadata %s", key);
    return v ? strtod(v, NULL) : NAN;
}

/* max |got - want| / max |want| <= tol (PyTorch's float64 result rounded to float32). */
static void golden_cmp(const char *fname, const char *what, const float *got, const float *want,
                       int64_t n, double tol) {
    const double e = fix_rel_err(got, want, n);
    printf("  %-12s %-9s %.2e\n", fname, what, e);
    CHECK_MSG(e <= tol, "%s %s: error %.3g > %.3g", fname, what, e, tol);
}

static void golden_case(const char *fname) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/fixtures/nn/%s.safetensors", QKV_SOURCE_DIR, fname);
    qkv_safetensors *st = fix_open(path);
    int64_t nx, nw, nbias, na, nb, ny, k;
    float *x = fx_copy(st, "x", &nx), *w = fx_copy(st, "w", &nw),
          *bias = fx_copy(st, "bias", &nbias);
    float *a = fx_copy(st, "lora_A", &na), *b = fx_copy(st, "lora_B", &nb),
          *y = fx_copy(st, "y", &ny);
    float *dy = fx_copy(st, "dy", &k), *dx = fx_copy(st, "dx", &k), *dw = fx_copy(st, "dw", &k);
    float *dbias = fx_copy(st, "dbias", &k), *dA = fx_copy(st, "dA", &k),
          *dB = fx_copy(st, "dB", &k);
    float *wm = fx_copy(st, "w_merged", &k);
    const int64_t r = (int64_t)meta(st, "r"), OC = nbias, C = na / r, N = nx / C;
    const int in_out = (int)meta(st, "fan_in_fan_out");
    const double alpha = meta(st, "lora_alpha"), peft_scale = meta(st, "scaling");
    /* the scale the trainer will pass: lora_alpha / r, or lora_alpha / sqrt(r) with rslora */
    const float scale =
        (float)(meta(st, "use_rslora") != 0 ? alpha / sqrt((double)r) : alpha / (double)r);
    CHECK_MSG(fabs(scale - peft_scale) <= 1e-6 * fabs(peft_scale), "%s: scale %.9g, PEFT's %.9g",
              fname, (double)scale, peft_scale);
    CHECK(nw == C * OC && nb == OC * r && ny == N * OC);
    float *ga = nt_alloc(r * C), *gb = nt_alloc(OC * r);
    const qkv_nn_lora A = {.a = a, .b = b, .ga = ga, .gb = gb, .r = r, .scale = scale};
    const qkv_nn_linear L = {.w = w, .b = bias, .C = C, .OC = OC, .in_out = in_out, .lora = &A};
    float *out = nt_alloc(N * OC), *gx = nt_alloc(N * C), *gw = nt_alloc(nw), *gbias = nt_alloc(OC);
    CHECK_OK(qkv_nn_linear_forward(NULL, &L, out, x, N, QKV_ACT_NONE, NULL));
    golden_cmp(fname, "y", out, y, N * OC, 1e-6);
    CHECK_OK(qkv_nn_linear_backward(NULL, &L, gx, gw, gbias, dy, x, N));
    golden_cmp(fname, "dx", gx, dx, N * C, 1e-6);
    golden_cmp(fname, "dw", gw, dw, nw, 1e-6);
    golden_cmp(fname, "dbias", gbias, dbias, OC, 1e-6);
    golden_cmp(fname, "dA", ga, dA, r * C, 1e-6);
    golden_cmp(fname, "dB", gb, dB, OC * r, 1e-6);
    CHECK_OK(qkv_nn_lora_merge(w, in_out, 0, C, OC, &A, 1.0f));
    golden_cmp(fname, "w_merged", w, wm, nw, 1e-6);
    qkv_safetensors_close(st);
    free(x), free(w), free(bias), free(a), free(b), free(y), free(dy), free(dx), free(dw);
    free(dbias), free(dA), free(dB), free(wm), free(ga), free(gb), free(out), free(gx), free(gw);
    free(gbias);
}

static void test_peft_golden(void) {
    printf("PEFT golden files (error relative to max |ref|):\n");
    golden_case("lora_linear");
    golden_case("lora_conv1d");
}

/* ---------------------------------------------------------------- threads */

static void test_threads(void) {
    qkv_runtime *rt[2] = {NULL, NULL};
    CHECK_OK(qkv_runtime_create(1, &rt[0]));
    CHECK_OK(qkv_runtime_create(2, &rt[1]));
    if (!rt[0] || !rt[1]) return;
    CHECK_EQ_INT(qkv_runtime_n_threads(rt[1]), 2);
    const int64_t N = 300, C = 130, OC = 257, r = 16;
    float *w = nt_rand(OC * C, -1, 1), *bias = nt_rand(OC, -1, 1), *x = nt_rand(N * C, -1, 1);
    float *a = nt_rand(r * C, -1, 1), *b = nt_rand(OC * r, -1, 1), *res = nt_rand(N * OC, -1, 1);
    float *dout = nt_rand(N * OC, -1, 1), *pre_x = nt_rand(N * C, -1, 1);
    float *pre_a = nt_rand(r * C, -1, 1), *pre_b = nt_rand(OC * r, -1, 1);
    for (int q = 0; q < 2; q++) {
        const float p = q ? 0.25f : 0.0f;
        float *y[2], *dx[2], *ga[2], *gb[2];
        for (int i = 0; i < 2; i++) {
            y[i] = nt_alloc(N * OC);
            dx[i] = nt_copy(pre_x, N * C), ga[i] = nt_copy(pre_a, r * C);
            gb[i] = nt_copy(pre_b, OC * r);
            qkv_nn_lora A = {.a = a,
                             .b = b,
                             .ga = ga[i],
                             .gb = gb[i],
                             .r = r,
                             .scale = 2.0f,
                             .dropout = p,
                             .seed = 5,
                             .stream = 11};
            qkv_nn_linear L = {.w = w, .b = bias, .C = C, .OC = OC, .in_out = 1, .lora = &A};
            CHECK_OK(qkv_nn_linear_forward(rt[i], &L, y[i], x, N, QKV_ACT_GELU_TANH, res));
            CHECK_OK(qkv_nn_linear_backward(rt[i], &L, dx[i], NULL, NULL, dout, x, N));
        }
        nt_same_bits(LABEL("threads p=%g: forward", (double)p), y[0], y[1], N * OC);
        nt_same_bits(LABEL("threads p=%g: dinp", (double)p), dx[0], dx[1], N * C);
        nt_same_bits(LABEL("threads p=%g: ga", (double)p), ga[0], ga[1], r * C);
        nt_same_bits(LABEL("threads p=%g: gb", (double)p), gb[0], gb[1], OC * r);
        for (int i = 0; i < 2; i++) free(y[i]), free(dx[i]), free(ga[i]), free(gb[i]);
    }
    free(w), free(bias), free(x), free(a), free(b), free(res), free(dout), free(pre_x);
    free(pre_a), free(pre_b);
    qkv_runtime_free(rt[0]);
    qkv_runtime_free(rt[1]);
}

/* ---------------------------------------------------------------- invalid arguments */

/* INVALID_ARG, a message naming the function and the argument, and nothing written. */
#define CHECK_INVALID(expr, fname, arg, guard, n)                                                  \
    do {                                                                                           \
        for (int64_t i_ = 0; i_ < (n); i_++) (guard)[i_] = 7.0f;                                   \
        CHECK_STATUS(expr, QKV_ERR_INVALID_ARG);                                                   \
        CHECK_MSG(strstr(qkv_last_error(), fname) && strstr(qkv_last_error(), arg),                \
                  "%s: message '%s'", #expr, qkv_last_error());                                    \
        int64_t bad_ = 0;                                                                          \
        for (int64_t i_ = 0; i_ < (n); i_++) bad_ += (guard)[i_] != 7.0f;                          \
        CHECK_MSG(bad_ == 0, "%s wrote %lld values", #expr, (long long)bad_);                      \
    } while (0)

static void test_invalid(void) {
    const int64_t N = 4, C = 6, OC = 5, r = 2;
    float *w = nt_rand(OC * C, -1, 1), *x = nt_rand(N * C, -1, 1), *a = nt_rand(r * C, -1, 1);
    float *b = nt_rand(OC * r, -1, 1), *out = nt_alloc(64), *g = nt_alloc(64);
    float *ga = nt_alloc(64), *res = nt_alloc(64);
    const char *lf = "qkv_nn_linear_forward", *lb = "qkv_nn_linear_backward",
               *mf = "qkv_nn_lora_merge", *rf = "qkv_nn_linear_lora_forward_ref",
               *rb = "qkv_nn_linear_lora_backward_ref";
    const qkv_nn_lora good = {.a = a, .b = b, .ga = ga, .r = r, .scale = 1.0f};
    struct {
        const char *arg;
        qkv_nn_lora A;
    } bad[9];
    int nb = 0;
    bad[nb].arg = "lora->r", bad[nb].A = good, bad[nb++].A.r = 0;
    bad[nb].arg = "lora->r", bad[nb].A = good, bad[nb++].A.r = -3;
    bad[nb].arg = "lora->a", bad[nb].A = good, bad[nb++].A.a = NULL;
    bad[nb].arg = "lora->b", bad[nb].A = good, bad[nb++].A.b = NULL;
    bad[nb].arg = "lora->scale", bad[nb].A = good, bad[nb++].A.scale = NAN;
    bad[nb].arg = "lora->scale", bad[nb].A = good, bad[nb++].A.scale = INFINITY;
    bad[nb].arg = "lora->dropout", bad[nb].A = good, bad[nb++].A.dropout = -0.1f;
    bad[nb].arg = "lora->dropout", bad[nb].A = good, bad[nb++].A.dropout = 1.0f;
    bad[nb].arg = "lora->dropout", bad[nb].A = good, bad[nb++].A.dropout = NAN;
    for (int k = 0; k < nb; k++) {
        qkv_nn_linear L = {.w = w, .C = C, .OC = OC, .lora = &bad[k].A};
        const char *arg = bad[k].arg;
        CHECK_INVALID(qkv_nn_linear_forward(NULL, &L, out, x, N, QKV_ACT_NONE, NULL), lf, arg, out,
                      64);
        CHECK_INVALID(qkv_nn_linear_backward(NULL, &L, g, NULL, NULL, out, x, N), lb, arg, g, 64);
        CHECK_INVALID(qkv_nn_linear_backward(NULL, &L, NULL, NULL, NULL, out, x, N), lb, arg, ga,
                      64);
        CHECK_INVALID(qkv_nn_lora_merge(g, 0, 0, C, OC, &bad[k].A, 1.0f), mf, arg, g, 64);
        CHECK_INVALID(qkv_nn_linear_lora_forward_ref(NULL, out, x, w, NULL, &bad[k].A, N, C, OC),
                      rf, arg, out, 64);
        CHECK_INVALID(
            qkv_nn_linear_lora_backward_ref(NULL, g, NULL, NULL, out, x, w, &bad[k].A, N, C, OC),
            rb, arg, g, 64);
    }
    /* the adapter's size products overflow */
    {
        qkv_nn_lora A = good;
        A.r = INT64_MAX / 4;
        qkv_nn_linear L = {.w = w, .C = C, .OC = OC, .lora = &A};
        CHECK_INVALID(qkv_nn_linear_forward(NULL, &L, out, x, N, QKV_ACT_NONE, NULL), lf, "lora->r",
                      out, 64);
    }
    /* ga / gb need inp; a residual overlapping out (other than == out) */
    {
        qkv_nn_linear L = {.w = w, .C = C, .OC = OC, .lora = &good};
        CHECK_INVALID(qkv_nn_linear_backward(NULL, &L, g, NULL, NULL, out, NULL, N), lb, "inp", g,
                      64);
        CHECK_INVALID(qkv_nn_lora_merge(NULL, 0, 0, C, OC, &good, 1.0f), mf, "w", g, 0);
        CHECK_INVALID(qkv_nn_lora_merge(g, 0, 0, C, OC, NULL, 1.0f), mf, "lora", g, 64);
        CHECK_INVALID(qkv_nn_lora_merge(g, 0, C - 1, C, OC, &good, 1.0f), mf, "ldw", g, 64);
        CHECK_INVALID(qkv_nn_lora_merge(g, 1, OC - 1, C, OC, &good, 1.0f), mf, "ldw", g, 64);
        CHECK_INVALID(qkv_nn_lora_merge(g, 0, 0, 0, OC, &good, 1.0f), mf, "C", g, 64);
        CHECK_INVALID(qkv_nn_lora_merge(g, 0, 0, C, OC, &good, NAN), mf, "sign", g, 64);
        CHECK_INVALID(qkv_nn_linear_lora_forward_ref(NULL, out, x, w, NULL, NULL, N, C, OC), rf,
                      "lora", out, 64);
        float *big = nt_alloc(2 * N * OC);
        for (int64_t i = 0; i < 2 * N * OC; i++) big[i] = 7.0f;
        CHECK_STATUS(qkv_nn_linear_forward(NULL, &L, big, x, N, QKV_ACT_NONE, big + 1),
                     QKV_ERR_INVALID_ARG);
        CHECK(strstr(qkv_last_error(), "residual") != NULL);
        CHECK(big[0] == 7.0f && big[N * OC] == 7.0f);
        free(big);
    }
    free(w), free(x), free(a), free(b), free(out), free(g), free(ga), free(res);
}

/* ---------------------------------------------------------------- allocation failure */

static void test_nomem(void) {
    const int64_t N = 3, C = 4, OC = 5, r = 2;
    float *w = nt_rand(OC * C, -1, 1), *x = nt_rand(N * C, -1, 1), *a = nt_rand(r * C, -1, 1);
    float *b = nt_rand(OC * r, -1, 1), *out = nt_alloc(N * OC), *g = nt_alloc(N * C);
    float *ga = nt_alloc(r * C);
    qkv_nn_lora A = {.a = a, .b = b, .ga = ga, .r = r, .scale = 1.0f, .dropout = 0.1f};
    qkv_nn_linear L = {.w = w, .C = C, .OC = OC, .lora = &A};
    const qkv_allocator fail = {nt_failing_alloc, nt_system_free, NULL};
    qkv_set_allocator(&fail);
    CHECK_STATUS(qkv_nn_linear_forward(NULL, &L, out, x, N, QKV_ACT_NONE, NULL), QKV_ERR_NOMEM);
    CHECK(strstr(qkv_last_error(), "qkv_nn_linear_forward") != NULL);
    CHECK_STATUS(qkv_nn_linear_backward(NULL, &L, g, NULL, NULL, out, x, N), QKV_ERR_NOMEM);
    CHECK_STATUS(qkv_nn_linear_lora_forward_ref(NULL, out, x, w, NULL, &A, N, C, OC),
                 QKV_ERR_NOMEM);
    CHECK_STATUS(qkv_nn_linear_lora_backward_ref(NULL, g, NULL, NULL, out, x, w, &A, N, C, OC),
                 QKV_ERR_NOMEM);
    qkv_set_allocator(NULL);
    CHECK_OK(qkv_nn_linear_forward(NULL, &L, out, x, N, QKV_ACT_NONE, NULL));
    free(w), free(x), free(a), free(b), free(out), free(g), free(ga);
}

int main(void) {
    test_use_arch_from_env();
    nt_seed(42);
    test_fast_vs_ref();
    printf("fast vs ref: worst error %.3f x tolerance (%s)\n", worst_ratio, worst_what);
    test_finite_differences();
    worst_ratio = 0;
    test_merge();
    printf("merge: worst error %.3f x tolerance (%s)\n", worst_ratio, worst_what);
    test_peft_golden();
    test_threads();
    test_invalid();
    test_nomem();
    return test_finish("nn_lora");
}
