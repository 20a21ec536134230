/* test_nn_fast.c — every function of nn.h (the fast layer library: packed GEMM, the ISA's row
 * kernels) against its double-precision twin of nn_ref.h / positional_ref.h, on random inputs
 * over many shapes (N = 1, C = 1, odd sizes 3, 17, 63, 65, 257, V up to 5000, logits of ±80,
 * fully masked softmax rows), forward outputs and backward gradients, on the ISA that QKV_ARCH
 * selects (CTest runs it for scalar, avx2 and avx512). Also: the backward += contract
 * (gradients are pre-filled with random values), in-place forms, NULL optional pointers, the
 * linear layer's layouts / strided slices / epilogues / prepacked weights, dropout's mask bit
 * for bit, thread-count independence (1- vs 2-thread runtimes, memcmp) and INVALID_ARG.
 *
 * Tolerances are bounds derived from float rounding (u = 2^-24) or the kernels' documented
 * error bounds (docs/KERNELS.md, "Row kernels"), written next to each check; every comparison
 * is |fast - ref| <= tol[i] per element, NaN must match NaN and infinities must match exactly.
 * The summary line per layer gives the worst error relative to the magnitude the tolerance
 * scales with, and the worst fraction of the tolerance used. */
#include "kernels/gemm.h"
#include "nn/nn.h"
#include "nn_testutil.h"
#include "test_arch.h"

#include <float.h>

#define U 0x1p-24 /* unit roundoff of float: every float operation errs by <= U·|result| */

/* ---------------------------------------------------------------- bookkeeping */

enum {
    L_LINEAR,
    L_EMB,
    L_POS,
    L_LN,
    L_RMS,
    L_ACT,
    L_SWIGLU,
    L_RES,
    L_DROP,
    L_SM,
    L_LSM,
    L_CE,
    L_ROPE,
    L_COUNT
};
static const char *layer_names[L_COUNT] = {
    "linear",   "embedding", "position_add", "layernorm",   "rmsnorm",       "act", "swiglu",
    "residual", "dropout",   "softmax",      "log_softmax", "cross_entropy", "rope"};
static double worst_rel[L_COUNT], worst_ratio[L_COUNT];
static long n_checked[L_COUNT];
static char worst_case[L_COUNT][200]; /* the check that came closest to its tolerance */

/* Relative errors are summarized over values of magnitude >= REL_FLOOR; below it (underflowed
 * probabilities, activation tails) the absolute floors of the tolerances govern. */
#define REL_FLOOR 1e-6

/* Compares got to want: both NaN, or both the same infinity, or |got - want| <= tol[i].
 * mag[i] is the magnitude the tolerance scales with (for the relative-error summary). */
static void cmp(int layer, const char *what, const float *got, const float *want, const double *mag,
                const double *tol, int64_t n) {
    double ratio = 0, rel = 0;
    int reported = 0;
    for (int64_t i = 0; i < n; i++) {
        const double g = got[i], w = want[i];
        int ok;
        double d = 0;
        if (isnan(w) || isnan(g))
            ok = isnan(w) && isnan(g);
        else if (isinf(w) || isinf(g))
            ok = g == w;
        else {
            d = fabs(g - w);
            ok = d <= tol[i];
            if (tol[i] > 0) ratio = fmax(ratio, d / tol[i]);
            if (mag[i] >= REL_FLOOR) rel = fmax(rel, d / mag[i]);
        }
        if (!ok) {
            ratio = INFINITY;
            if (reported++ < 4)
                fprintf(stderr, "%s: [%lld] fast %.9g ref %.9g |diff| %.3g tol %.3g\n", what,
                        (long long)i, g, w, d, tol[i]);
        }
    }
    CHECK_MSG(ratio <= 1.0, "%s: worst error %.3g x tolerance", what, ratio);
    if (ratio > worst_ratio[layer])
        snprintf(worst_case[layer], sizeof worst_case[layer], "%.190s", what);
    worst_ratio[layer] = fmax(worst_ratio[layer], ratio);
    worst_rel[layer] = fmax(worst_rel[layer], rel);
    n_checked[layer] += n;
}

static char label[512];
#define LABEL(...) (snprintf(label, sizeof label, __VA_ARGS__), label)

/* ---------------------------------------------------------------- activations (shared) */

static const qkv_act all_acts[] = {QKV_ACT_GELU_ERF, QKV_ACT_GELU_TANH, QKV_ACT_RELU, QKV_ACT_SILU,
                                   QKV_ACT_TANH};
#define N_ACTS (sizeof all_acts / sizeof *all_acts)
static const char *act_name(qkv_act a) {
    switch (a) {
    case QKV_ACT_NONE: return "none";
    case QKV_ACT_GELU_ERF: return "gelu_erf";
    case QKV_ACT_GELU_TANH: return "gelu_tanh";
    case QKV_ACT_RELU: return "relu";
    case QKV_ACT_SILU: return "silu";
    case QKV_ACT_TANH: return "tanh";
    }
    return "?";
}

/* Relative error bound of the act kernels (docs/KERNELS.md): 1e-6; GELU tanh adds the
 * conditioning of e^{-2u} on the float rounding of 2u, 2.5e-7·|2u|. */
static double act_rtol(qkv_act a, double x) {
    double rtol = 1e-6;
    if (a == QKV_ACT_GELU_TANH) {
        double u2 = 1.5957691216057308 * (x + 0.044715 * x * x * x);
        rtol += 2.5e-7 * fmin(fabs(u2), 200.0);
    }
    return rtol;
}
/* The double reference rounds 1 + erf(x/√2) (and 1 + tanh) to 0 below x ≈ -8.3 where the
 * true values are < 1e-15 and the kernels keep the tail: an absolute floor. */
#define ACT_ATOL 1e-15

/* The magnitude of the parts act'(x) is made of (they cancel near GELU's minimum). */
static double act_grad_mag(qkv_act a, double x) {
    switch (a) {
    case QKV_ACT_GELU_ERF:
        return 0.5 * erfc(-x * 0.70710678118654752) +
               fabs(x) * 0.3989422804014327 * exp(-0.5 * x * x);
    case QKV_ACT_GELU_TANH: {
        double v = 1.5957691216057308 * (x + 0.044715 * x * x * x);
        double s = 1.0 / (1.0 + exp(-v));
        return s + fabs(x) * 1.5957691216057308 * (1.0 + 3 * 0.044715 * x * x) * s * (1.0 - s);
    }
    case QKV_ACT_SILU: {
        double s = 1.0 / (1.0 + exp(-x));
        return s * (1.0 + fabs(x) * (1.0 - s));
    }
    case QKV_ACT_TANH: { /* 1 − t² (the kernel forms it without cancellation) */
        double t = tanh(x);
        return 1.0 - t * t;
    }
    default: return 1.0;
    }
}

/* |act'| <= 1.13 for every activation (GELU erf peaks at 1.129, SiLU at 1.100, GELU tanh at
 * 1.13): how far an error in the pre-activation can move the output. */
#define ACT_LIP 1.13

/* ---------------------------------------------------------------- linear */

/* One linear layer: (N, C) -> (N, OC). in_out selects w's layout; slice puts w as the middle
 * third of a 3x wider fused matrix (ldw = 3 · the dense row); resid: 0 none, 1 a separate
 * residual, 2 residual == out (accumulate). */
static void test_linear_case(int64_t N, int64_t C, int64_t OC, int in_out, int slice, int bias,
                             qkv_act act, int resid) {
    const char *what =
        LABEL("linear N=%lld C=%lld OC=%lld in_out=%d slice=%d bias=%d act=%s resid=%d",
              (long long)N, (long long)C, (long long)OC, in_out, slice, bias, act_name(act), resid);
    char name[256];
    snprintf(name, sizeof name, "%.200s", what);
    const int64_t dense = in_out ? OC : C, rows = in_out ? C : OC;
    const int64_t ld = slice ? 3 * dense : dense, off = slice ? dense : 0;
    float *wfull = nt_rand(rows * ld, -1, 1);
    const float *w = wfull + off;
    float *wt = nt_alloc(OC * C); /* (OC, C): the ref's layout */
    for (int64_t o = 0; o < OC; o++)
        for (int64_t i = 0; i < C; i++) wt[o * C + i] = in_out ? w[i * ld + o] : w[o * ld + i];
    float *x = nt_rand(N * C, -1, 1);
    float *b = bias ? nt_rand(OC, -1, 1) : NULL;
    float *r = nt_rand(N * OC, -2, 2);
    qkv_nn_linear L = {.w = w, .b = b, .C = C, .OC = OC, .ldw = slice ? ld : 0, .in_out = in_out};

    /* ---- forward */
    float *out = resid == 2 ? nt_copy(r, N * OC) : nt_rand(N * OC, -9, 9); /* junk: overwritten */
    const float *res = resid == 1 ? r : resid == 2 ? out : NULL;
    CHECK_OK(qkv_nn_linear_forward(NULL, &L, out, x, N, act, res));
    float *z = nt_alloc(N * OC), *a = nt_alloc(N * OC), *want = nt_alloc(N * OC);
    CHECK_OK(qkv_nn_linear_forward_ref(NULL, z, x, wt, b, N, C, OC));
    if (act != QKV_ACT_NONE)
        CHECK_OK(qkv_nn_act_forward_ref(NULL, act, a, z, N * OC));
    else
        memcpy(a, z, (size_t)(N * OC) * sizeof(float));
    double *mag = nt_alloc_d(N * OC), *tol = nt_alloc_d(N * OC);
    for (int64_t n = 0; n < N; n++)
        for (int64_t o = 0; o < OC; o++) {
            const int64_t k = n * OC + o;
            double m = b ? fabs(b[o]) : 0; /* Σ|x||w| + |b| */
            for (int64_t i = 0; i < C; i++) m += fabs(x[n * C + i]) * fabs(wt[o * C + i]);
            const double rr = resid ? r[k] : 0.0;
            if (resid == 2) m += fabs(rr); /* beta = 1: the old out is one more summand */
            /* Higham's γ bound: a float sum of C products plus the bias (and old out), in any
             * order, with or without FMA, errs by <= (C + 2)·U·Σ|terms|; +2 for the ref's own
             * float rounding of z and slack for the alpha/beta store. */
            double tz = (double)(C + 4) * U * m;
            double t = tz;
            if (act != QKV_ACT_NONE) /* the z error through act, plus the act kernel's error */
                t = ACT_LIP * tz + act_rtol(act, z[k]) * fabs(a[k]) + ACT_ATOL;
            want[k] = (float)((double)a[k] + rr);
            if (resid) t += 2 * U * (fabs(a[k]) + fabs(rr)); /* the add and want's rounding */
            mag[k] = m + (resid == 1 ? fabs(rr) : 0);
            tol[k] = t;
        }
    cmp(L_LINEAR, LABEL("%s forward", name), out, want, mag, tol, N * OC);

    /* ---- the pre-activation form: out = act(z) and pre = z, the bits of the plain layer into
     * pre then the activation's forward; its argument checks */
    if (!resid) {
        const qkv_act fa = act != QKV_ACT_NONE ? act : QKV_ACT_GELU_TANH;
        float *o1 = nt_junk(N * OC), *p1 = nt_junk(N * OC), *p2 = nt_junk(N * OC);
        float *o2 = nt_junk(N * OC);
        CHECK_OK(qkv_nn_linear_forward_pre(NULL, &L, o1, p1, x, N, fa));
        CHECK_OK(qkv_nn_linear_forward(NULL, &L, p2, x, N, QKV_ACT_NONE, NULL));
        CHECK_OK(qkv_nn_act_forward(NULL, fa, o2, p2, N * OC));
        nt_same_bits(LABEL("%s forward_pre pre", name), p1, p2, N * OC);
        nt_same_bits(LABEL("%s forward_pre out", name), o1, o2, N * OC);
        CHECK(qkv_nn_linear_forward_pre(NULL, &L, o1, o1, x, N, fa) == QKV_ERR_INVALID_ARG);
        CHECK(qkv_nn_linear_forward_pre(NULL, &L, o1, p1, x, N, QKV_ACT_NONE) ==
              QKV_ERR_INVALID_ARG);
        CHECK(qkv_nn_linear_forward_pre(NULL, &L, o1, NULL, x, N, fa) == QKV_ERR_INVALID_ARG);
        free(o1), free(p1), free(p2), free(o2);
    }

    /* ---- prepacked op(w): the GEMM promises the same bits as the unpacked product; with the
     * packed panels the layer must not need w */
    {
        qkv_gemm_packed *pk = NULL;
        CHECK_OK(qkv__gemm_pack_b(NULL, !in_out, C, OC, w, ld, &pk));
        qkv_nn_linear Lp = L;
        Lp.packed = pk;
        for (int no_w = 0; no_w < 2 && pk; no_w++) {
            if (no_w) Lp.w = NULL;
            float *out2 = resid == 2 ? nt_copy(r, N * OC) : nt_rand(N * OC, -9, 9);
            const float *res2 = resid == 1 ? r : resid == 2 ? out2 : NULL;
            CHECK_OK(qkv_nn_linear_forward(NULL, &Lp, out2, x, N, act, res2));
            nt_same_bits(LABEL("%s packed%s vs unpacked", name, no_w ? " (w NULL)" : ""), out2, out,
                         N * OC);
            free(out2);
        }
        qkv__gemm_packed_free(pk);
    }

    /* ---- backward, into pre-filled gradients (+=); dw in w's own layout and stride */
    float *dout = nt_rand(N * OC, -1, 1);
    float *dinp = nt_rand(N * C, -1, 1), *pre_dinp = nt_copy(dinp, N * C);
    float *dwfull = nt_rand(rows * ld, -1, 1), *pre_dw = nt_copy(dwfull, rows * ld);
    float *db = nt_rand(OC, -1, 1), *pre_db = nt_copy(db, OC);
    CHECK_OK(qkv_nn_linear_backward(NULL, &L, dinp, dwfull + off, db, dout, x, N));
    float *gx = nt_alloc(N * C), *gw = nt_alloc(OC * C), *gb = nt_alloc(OC); /* from zero */
    CHECK_OK(qkv_nn_linear_backward_ref(NULL, gx, gw, gb, dout, x, wt, N, C, OC));
    /* dinp = pre + dout · op(w)ᵀ: γ bound over OC products plus the pre-filled value */
    float *wx = nt_alloc(N * C);
    double *mx = nt_alloc_d(N * C), *tx = nt_alloc_d(N * C);
    for (int64_t n = 0; n < N; n++)
        for (int64_t i = 0; i < C; i++) {
            const int64_t k = n * C + i;
            double m = fabs(pre_dinp[k]);
            for (int64_t o = 0; o < OC; o++) m += fabs(dout[n * OC + o]) * fabs(wt[o * C + i]);
            wx[k] = (float)((double)pre_dinp[k] + gx[k]);
            mx[k] = m;
            tx[k] = (double)(OC + 4) * U * m;
        }
    cmp(L_LINEAR, LABEL("%s dinp", name), dinp, wx, mx, tx, N * C);
    /* dw = pre + doutᵀ · inp over N rows in the slice; everything else untouched (tol 0) */
    float *ww = nt_copy(pre_dw, rows * ld);
    double *mw = nt_alloc_d(rows * ld), *tw = nt_alloc_d(rows * ld);
    for (int64_t o = 0; o < OC; o++)
        for (int64_t i = 0; i < C; i++) {
            const int64_t k = off + (in_out ? i * ld + o : o * ld + i);
            double m = fabs(pre_dw[k]);
            for (int64_t n = 0; n < N; n++) m += fabs(dout[n * OC + o]) * fabs(x[n * C + i]);
            ww[k] = (float)((double)pre_dw[k] + gw[o * C + i]);
            mw[k] = m;
            tw[k] = (double)(N + 4) * U * m;
        }
    cmp(L_LINEAR, LABEL("%s dw", name), dwfull, ww, mw, tw, rows * ld);
    /* db = pre + Σ_n dout: a float column sum, γ bound over N terms */
    float *wb = nt_alloc(OC);
    double *mb = nt_alloc_d(OC), *tb = nt_alloc_d(OC);
    for (int64_t o = 0; o < OC; o++) {
        double m = fabs(pre_db[o]);
        for (int64_t n = 0; n < N; n++) m += fabs(dout[n * OC + o]);
        wb[o] = (float)((double)pre_db[o] + gb[o]);
        mb[o] = m;
        tb[o] = (double)(N + 4) * U * m;
    }
    cmp(L_LINEAR, LABEL("%s db", name), db, wb, mb, tb, OC);

    /* the overwriting form: dinp = dout · op(w)ᵀ over junk, the values of += into zeros (its
     * GEMM runs with beta 0); dw, db still accumulate, bit for bit */
    {
        float *ds = nt_junk(N * C), *dz = nt_alloc(N * C);
        float *dw2 = nt_copy(pre_dw, rows * ld), *db2 = nt_copy(pre_db, OC);
        CHECK_OK(qkv_nn_linear_backward_set(NULL, &L, ds, dw2 + off, db2, dout, x, N));
        CHECK_OK(qkv_nn_linear_backward(NULL, &L, dz, NULL, NULL, dout, x, N));
        nt_same_values(LABEL("%s dinp set vs += into zeros", name), ds, dz, N * C);
        nt_same_bits(LABEL("%s dw with set", name), dw2, dwfull, rows * ld);
        nt_same_bits(LABEL("%s db with set", name), db2, db, OC);
        free(ds), free(dz), free(dw2), free(db2);
    }
    /* fused with the activation before the layer: the bits of set into a scratch, then the
     * activation's set backward (pre: the activation's input, strictly inside [-8, 8]) */
    {
        const qkv_act pa = act != QKV_ACT_NONE ? act : QKV_ACT_GELU_ERF;
        float *pre = nt_rand(N * C, -8, 8), *ds = nt_junk(N * C), *tmp = nt_junk(N * C);
        float *dz = nt_junk(N * C);
        float *dw2 = nt_copy(pre_dw, rows * ld), *db2 = nt_copy(pre_db, OC);
        CHECK_OK(qkv_nn_linear_backward_act_set(NULL, &L, ds, dw2 + off, db2, dout, x, N, pa, pre));
        CHECK_OK(qkv_nn_linear_backward_set(NULL, &L, tmp, NULL, NULL, dout, x, N));
        CHECK_OK(qkv_nn_act_backward_set(NULL, pa, dz, tmp, pre, N * C));
        nt_same_bits(LABEL("%s dinp act_set vs set then act", name), ds, dz, N * C);
        nt_same_bits(LABEL("%s dw with act_set", name), dw2, dwfull, rows * ld);
        nt_same_bits(LABEL("%s db with act_set", name), db2, db, OC);
        CHECK(qkv_nn_linear_backward_act_set(NULL, &L, ds, NULL, NULL, dout, x, N, pa, ds) ==
              QKV_ERR_INVALID_ARG); /* pre overlapping dinp */
        CHECK(qkv_nn_linear_backward_act_set(NULL, &L, ds, NULL, NULL, dout, x, N, QKV_ACT_NONE,
                                             pre) == QKV_ERR_INVALID_ARG);
        free(pre), free(ds), free(tmp), free(dz), free(dw2), free(db2);
    }

    /* NULL gradients are skipped; w is not needed without dinp */
    {
        float *db2 = nt_copy(pre_db, OC);
        qkv_nn_linear L2 = L;
        L2.w = NULL;
        CHECK_OK(qkv_nn_linear_backward(NULL, &L2, NULL, NULL, db2, dout, NULL, N));
        nt_same_bits(LABEL("%s db alone", name), db2, db, OC);
        free(db2);
    }
    free(wfull), free(wt), free(x), free(b), free(r), free(out), free(z), free(a), free(want);
    free(mag), free(tol), free(dout), free(dinp), free(pre_dinp), free(dwfull), free(pre_dw);
    free(db), free(pre_db), free(gx), free(gw), free(gb), free(wx), free(mx), free(tx), free(ww);
    free(mw), free(tw), free(wb), free(mb), free(tb);
}

static void test_linear(void) {
    static const int64_t shapes[][3] = {{1, 1, 1},    {3, 17, 5},   {17, 63, 65}, {65, 257, 3},
                                        {2, 65, 257}, {1, 257, 63}, {63, 3, 17},  {130, 257, 129},
                                        {5, 1, 7},    {7, 9, 1}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (int in_out = 0; in_out < 2; in_out++)
            for (int slice = 0; slice < 2; slice++)
                for (int bias = 0; bias < 2; bias++)
                    test_linear_case(shapes[s][0], shapes[s][1], shapes[s][2], in_out, slice, bias,
                                     QKV_ACT_NONE, 0);
    /* epilogues: every activation, with and without a residual; residual == out */
    static const int64_t eshapes[][3] = {{1, 17, 5}, {17, 63, 65}, {66, 130, 33}};
    for (size_t s = 0; s < sizeof eshapes / sizeof *eshapes; s++)
        for (int in_out = 0; in_out < 2; in_out++) {
            for (size_t a = 0; a < N_ACTS; a++)
                for (int resid = 0; resid < 2; resid++)
                    test_linear_case(eshapes[s][0], eshapes[s][1], eshapes[s][2], in_out, s == 1, 1,
                                     all_acts[a], resid);
            test_linear_case(eshapes[s][0], eshapes[s][1], eshapes[s][2], in_out, 1, 1,
                             QKV_ACT_NONE, 1);
            test_linear_case(eshapes[s][0], eshapes[s][1], eshapes[s][2], in_out, s == 2, 1,
                             QKV_ACT_NONE, 2);
            test_linear_case(eshapes[s][0], eshapes[s][1], eshapes[s][2], in_out, 0, 0,
                             QKV_ACT_NONE, 2);
        }
}

/* ---------------------------------------------------------------- embeddings */

static void test_embedding_case(int64_t N, int64_t V, int64_t C) {
    char name[128];
    snprintf(name, sizeof name, "embedding N=%lld V=%lld C=%lld", (long long)N, (long long)V,
             (long long)C);
    int32_t *ids = malloc((size_t)N * sizeof(int32_t));
    for (int64_t n = 0; n < N; n++) ids[n] = (int32_t)(nt_uniform() * (double)V);
    ids[0] = (int32_t)(V / 2);
    for (int64_t n = 4; n < N; n += 4) ids[n] = ids[0]; /* repeated ids for any V */
    float *table = nt_rand(V * C, -1, 1);
    float *out = nt_rand(N * C, -1, 1), *want = nt_alloc(N * C);
    CHECK_OK(qkv_nn_embedding_forward(NULL, out, ids, table, N, V, C));
    CHECK_OK(qkv_nn_embedding_forward_ref(want, ids, table, N, V, C));
    nt_same_bits(LABEL("%s forward", name), out, want, N * C); /* a copy */
    n_checked[L_EMB] += N * C;
    /* add: one float addition per element in both, correctly rounded: bit-exact */
    float *pre = nt_rand(N * C, -1, 1);
    memcpy(out, pre, (size_t)(N * C) * sizeof(float));
    CHECK_OK(qkv_nn_embedding_add_forward(NULL, out, ids, table, N, V, C));
    for (int64_t k = 0; k < N * C; k++) want[k] = pre[k] + want[k];
    nt_same_bits(LABEL("%s add_forward", name), out, want, N * C);
    n_checked[L_EMB] += N * C;
    /* backward: dtable (pre-filled) += scatter of dout; the fast path sums each row's uses in
     * float: γ bound over (uses + 1) terms */
    float *dout = nt_rand(N * C, -1, 1);
    float *dt = nt_rand(V * C, -1, 1), *dtr = nt_copy(dt, V * C);
    double *mag = nt_alloc_d(V * C), *tol = nt_alloc_d(V * C);
    int64_t *uses = calloc((size_t)V, sizeof(int64_t));
    for (int64_t k = 0; k < V * C; k++) mag[k] = fabs(dt[k]);
    for (int64_t n = 0; n < N; n++) {
        uses[ids[n]]++;
        for (int64_t j = 0; j < C; j++) mag[ids[n] * C + j] += fabs(dout[n * C + j]);
    }
    for (int64_t v = 0; v < V; v++)
        for (int64_t j = 0; j < C; j++) tol[v * C + j] = (double)(uses[v] + 2) * U * mag[v * C + j];
    CHECK_OK(qkv_nn_embedding_backward(NULL, dt, dout, ids, N, V, C));
    CHECK_OK(qkv_nn_embedding_backward_ref(NULL, dtr, dout, ids, N, V, C));
    cmp(L_EMB, LABEL("%s backward", name), dt, dtr, mag, tol, V * C);
    free(ids), free(table), free(out), free(want), free(pre), free(dout), free(dt), free(dtr);
    free(mag), free(tol), free(uses);
}

/* dpe (P, C) += Σ_b dout[b, t] summed in float: γ bound over B + 1 terms (with the
 * pre-filled value pre), +1 for the ref's rounding */
static void pos_tol(double *mag, double *tol, const float *pre, const float *dout, int64_t B,
                    int64_t T, int64_t C, int64_t P, int64_t pos0) {
    for (int64_t k = 0; k < P * C; k++) mag[k] = fabs(pre[k]);
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++)
            for (int64_t j = 0; j < C; j++)
                mag[(pos0 + t) * C + j] += fabs(dout[(b * T + t) * C + j]);
    for (int64_t k = 0; k < P * C; k++) tol[k] = (double)(B + 2) * U * mag[k];
}

static void test_position_case(int64_t B, int64_t T, int64_t C, int64_t P, int64_t pos0) {
    char name[128];
    snprintf(name, sizeof name, "position_add B=%lld T=%lld C=%lld P=%lld pos0=%lld", (long long)B,
             (long long)T, (long long)C, (long long)P, (long long)pos0);
    const int64_t n = B * T * C;
    float *x = nt_rand(n, -1, 1), *pe = nt_rand(P * C, -1, 1);
    float *out = nt_rand(n, -1, 1), *want = nt_alloc(n);
    CHECK_OK(qkv_nn_position_add_forward(NULL, out, x, pe, B, T, C, P, pos0));
    CHECK_OK(qkv_nn_position_add_forward_ref(NULL, want, x, pe, B, T, C, P, pos0));
    nt_same_bits(LABEL("%s forward", name), out, want, n); /* one float add each */
    float *inplace = nt_copy(x, n);
    CHECK_OK(qkv_nn_position_add_forward(NULL, inplace, inplace, pe, B, T, C, P, pos0));
    nt_same_bits(LABEL("%s forward in place", name), inplace, want, n);
    n_checked[L_POS] += 2 * n;
    float *dout = nt_rand(n, -1, 1);
    float *dx = nt_rand(n, -1, 1), *dxr = nt_copy(dx, n);
    float *dpe = nt_rand(P * C, -1, 1), *dper = nt_copy(dpe, P * C);
    double *mag = nt_alloc_d(P * C), *tol = nt_alloc_d(P * C);
    pos_tol(mag, tol, dpe, dout, B, T, C, P, pos0);
    CHECK_OK(qkv_nn_position_add_backward(NULL, dx, dpe, dout, B, T, C, P, pos0));
    CHECK_OK(qkv_nn_position_add_backward_ref(NULL, dxr, dper, dout, B, T, C, P, pos0));
    nt_same_bits(LABEL("%s backward dinp", name), dx, dxr, n);
    n_checked[L_POS] += n;
    cmp(L_POS, LABEL("%s backward dpe", name), dpe, dper, mag, tol, P * C);
    /* either gradient may be NULL */
    float *dpe2 = nt_rand(P * C, -1, 1), *dpe2r = nt_copy(dpe2, P * C);
    pos_tol(mag, tol, dpe2, dout, B, T, C, P, pos0);
    CHECK_OK(qkv_nn_position_add_backward(NULL, NULL, dpe2, dout, B, T, C, P, pos0));
    CHECK_OK(qkv_nn_position_add_backward_ref(NULL, NULL, dpe2r, dout, B, T, C, P, pos0));
    cmp(L_POS, LABEL("%s backward dpe only", name), dpe2, dpe2r, mag, tol, P * C);
    CHECK_OK(qkv_nn_position_add_backward(NULL, dx, NULL, dout, B, T, C, P, pos0));
    CHECK_OK(qkv_nn_position_add_backward_ref(NULL, dxr, NULL, dout, B, T, C, P, pos0));
    nt_same_bits(LABEL("%s backward dinp only", name), dx, dxr, n);
    free(x), free(pe), free(out), free(want), free(inplace), free(dout), free(dx), free(dxr);
    free(dpe), free(dper), free(mag), free(tol), free(dpe2), free(dpe2r);
}

/* ---------------------------------------------------------------- norms */

/* rms: RMSNorm, else LayerNorm; affine: weight (and bias) given, else NULL; offset: a common
 * offset of the rows (LayerNorm's mean must be removed without loss). */
static void test_norm_case(int rms, int64_t N, int64_t C, int affine, double offset) {
    char name[160];
    snprintf(name, sizeof name, "%s N=%lld C=%lld affine=%d offset=%g",
             rms ? "rmsnorm" : "layernorm", (long long)N, (long long)C, affine, offset);
    const int layer = rms ? L_RMS : L_LN;
    const float eps = 1e-5f;
    float *x = nt_rand(N * C, -2, 2);
    for (int64_t k = 0; k < N * C; k++) x[k] += (float)offset;
    float *w = affine ? nt_rand(C, -1.5, 1.5) : NULL;
    float *b = affine && !rms ? nt_rand(C, -1, 1) : NULL;
    float *y = nt_rand(N * C, -9, 9), *yr = nt_alloc(N * C);
    float *mean = nt_alloc(N), *rstd = nt_alloc(N), *meanr = nt_alloc(N), *rstdr = nt_alloc(N);
    if (rms) {
        CHECK_OK(qkv_nn_rmsnorm_forward(NULL, y, rstd, x, w, N, C, eps));
        CHECK_OK(qkv_nn_rmsnorm_forward_ref(NULL, yr, rstdr, x, w, N, C, eps));
    } else {
        CHECK_OK(qkv_nn_layernorm_forward(NULL, y, mean, rstd, x, w, b, N, C, eps));
        CHECK_OK(qkv_nn_layernorm_forward_ref(NULL, yr, meanr, rstdr, x, w, b, N, C, eps));
    }
    /* y = w·x̂ + b with x̂ of unit scale: 1e-5 of the terms' magnitude |y| + |w| + |b|. The
     * kernels' documented bound is 2e-6·(|y| + 2|b|) + 1e-6 (mean and variance sums are
     * blocked into double, so it does not grow with C); 1e-5 keeps a 5x margin over it. */
    double *mag = nt_alloc_d(N * C), *tol = nt_alloc_d(N * C);
    for (int64_t n = 0; n < N; n++)
        for (int64_t j = 0; j < C; j++) {
            const int64_t k = n * C + j;
            mag[k] = fabs(yr[k]) + (w ? fabs(w[j]) : 1.0) + (b ? fabs(b[j]) : 0.0);
            tol[k] = 1e-5 * mag[k];
        }
    cmp(layer, LABEL("%s forward", name), y, yr, mag, tol, N * C);
    /* saved statistics: rstd (rrms) 1e-5 relative (documented 1e-6); the mean 1e-5 of the
     * row's spread |mean| + 1/rstd (documented 3e-7 relative) */
    double *ms = nt_alloc_d(N), *ts = nt_alloc_d(N);
    for (int64_t n = 0; n < N; n++) ms[n] = fabs(rstdr[n]), ts[n] = 1e-5 * ms[n];
    cmp(layer, LABEL("%s saved rstd", name), rstd, rstdr, ms, ts, N);
    if (!rms) {
        for (int64_t n = 0; n < N; n++)
            ms[n] = fabs(meanr[n]) + 1.0 / rstdr[n], ts[n] = 1e-5 * ms[n];
        cmp(layer, LABEL("%s saved mean", name), mean, meanr, ms, ts, N);
    }
    /* NULL saves and in place give the same bits */
    float *y2 = nt_alloc(N * C), *y3 = nt_copy(x, N * C);
    if (rms) {
        CHECK_OK(qkv_nn_rmsnorm_forward(NULL, y2, NULL, x, w, N, C, eps));
        CHECK_OK(qkv_nn_rmsnorm_forward(NULL, y3, NULL, y3, w, N, C, eps));
    } else {
        CHECK_OK(qkv_nn_layernorm_forward(NULL, y2, NULL, NULL, x, w, b, N, C, eps));
        CHECK_OK(qkv_nn_layernorm_forward(NULL, y3, NULL, NULL, y3, w, b, N, C, eps));
    }
    nt_same_bits(LABEL("%s forward, NULL saves", name), y2, y, N * C);
    nt_same_bits(LABEL("%s forward, in place", name), y3, y, N * C);

    /* backward from the ref's saved statistics, into pre-filled gradients */
    float *dy = nt_rand(N * C, -1, 1);
    float *dx = nt_rand(N * C, -1, 1), *dxr = nt_copy(dx, N * C);
    float *dw = nt_rand(C, -1, 1), *dwr = nt_copy(dw, C);
    float *db = nt_rand(C, -1, 1), *dbr = nt_copy(db, C);
    double *mdx = nt_alloc_d(N * C), *tdx = nt_alloc_d(N * C);
    double *mdw = nt_alloc_d(C), *mdb = nt_alloc_d(C), *tdw = nt_alloc_d(C), *tdb = nt_alloc_d(C);
    for (int64_t j = 0; j < C; j++) mdw[j] = fabs(dw[j]), mdb[j] = fabs(db[j]);
    for (int64_t n = 0; n < N; n++) {
        const double m = rms ? 0.0 : meanr[n], r = rstdr[n];
        double s1 = 0, s2 = 0; /* mean|dx̂|, mean|dx̂·x̂| */
        for (int64_t j = 0; j < C; j++) {
            const double xh = ((double)x[n * C + j] - m) * r;
            const double dxh = (double)dy[n * C + j] * (w ? w[j] : 1.0);
            s1 += fabs(dxh) / (double)C;
            s2 += fabs(dxh * xh) / (double)C;
            mdw[j] += fabs((double)dy[n * C + j] * xh);
            mdb[j] += fabs((double)dy[n * C + j]);
        }
        for (int64_t j = 0; j < C; j++) {
            const double xh = ((double)x[n * C + j] - m) * r;
            const double dxh = (double)dy[n * C + j] * (w ? w[j] : 1.0);
            /* the terms' magnitude rstd·(|dx̂| + mean|dx̂| + |x̂|·mean|dx̂x̂|) and the pre-filled
             * value; 1e-5 of it (documented kernel bound 4e-6, plus the rounding of +=) */
            mdx[n * C + j] = r * (fabs(dxh) + s1 + fabs(xh) * s2) + fabs(dx[n * C + j]);
            tdx[n * C + j] = 1e-5 * mdx[n * C + j];
        }
    }
    /* dw, db: float partial sums over N rows (γ bound) of terms carrying x̂'s 1e-5 error */
    for (int64_t j = 0; j < C; j++) {
        tdw[j] = (1e-5 + (double)(N + 4) * U) * mdw[j];
        tdb[j] = (double)(N + 4) * U * mdb[j];
    }
    float *dx2 = nt_copy(dx, N * C), *dw2 = nt_copy(dw, C);
    if (rms) {
        CHECK_OK(qkv_nn_rmsnorm_backward(NULL, dx, dw, dy, x, w, rstdr, N, C));
        CHECK_OK(qkv_nn_rmsnorm_backward_ref(NULL, dxr, dwr, dy, x, w, rstdr, N, C));
    } else {
        CHECK_OK(qkv_nn_layernorm_backward(NULL, dx, dw, db, dy, x, w, meanr, rstdr, N, C));
        CHECK_OK(qkv_nn_layernorm_backward_ref(NULL, dxr, dwr, dbr, dy, x, w, meanr, rstdr, N, C));
    }
    cmp(layer, LABEL("%s dinp", name), dx, dxr, mdx, tdx, N * C);
    cmp(layer, LABEL("%s dweight", name), dw, dwr, mdw, tdw, C);
    if (!rms) cmp(layer, LABEL("%s dbias", name), db, dbr, mdb, tdb, C);
    /* NULL gradients: dinp alone, then dweight alone, from the same pre-filled values */
    float *dw3 = nt_copy(dw2, C);
    if (rms) {
        CHECK_OK(qkv_nn_rmsnorm_backward(NULL, dx2, NULL, dy, x, w, rstdr, N, C));
        CHECK_OK(qkv_nn_rmsnorm_backward(NULL, NULL, dw3, dy, x, w, rstdr, N, C));
    } else {
        CHECK_OK(qkv_nn_layernorm_backward(NULL, dx2, NULL, NULL, dy, x, w, meanr, rstdr, N, C));
        CHECK_OK(qkv_nn_layernorm_backward(NULL, NULL, dw3, NULL, dy, x, w, meanr, rstdr, N, C));
    }
    cmp(layer, LABEL("%s dinp alone", name), dx2, dxr, mdx, tdx, N * C);
    cmp(layer, LABEL("%s dweight alone", name), dw3, dwr, mdw, tdw, C);
    if (!rms) { /* the overwriting form over junk: the bits of += into zeros */
        float *ds = nt_junk(N * C), *dz = nt_alloc(N * C);
        float *dws = nt_copy(dw2, C), *dwz = nt_copy(dw2, C);
        float *dbs = nt_alloc(C), *dbz = nt_alloc(C);
        CHECK_OK(qkv_nn_layernorm_backward_set(NULL, ds, dws, dbs, dy, x, w, meanr, rstdr, N, C));
        CHECK_OK(qkv_nn_layernorm_backward(NULL, dz, dwz, dbz, dy, x, w, meanr, rstdr, N, C));
        nt_same_bits(LABEL("%s dinp set vs += into zeros", name), ds, dz, N * C);
        nt_same_bits(LABEL("%s dweight with set", name), dws, dwz, C);
        nt_same_bits(LABEL("%s dbias with set", name), dbs, dbz, C);
        free(ds), free(dz), free(dws), free(dwz), free(dbs), free(dbz);
    }
    free(x), free(w), free(b), free(y), free(yr), free(mean), free(rstd), free(meanr), free(rstdr);
    free(mag), free(tol), free(ms), free(ts), free(y2), free(y3), free(dy), free(dx), free(dxr);
    free(dw), free(dwr), free(db), free(dbr), free(mdx), free(tdx), free(mdw), free(mdb);
    free(tdw), free(tdb), free(dx2), free(dw2), free(dw3);
}

/* ---------------------------------------------------------------- pointwise */

static const float act_edges[] = {0.0f, -0.0f, 1e-30f, -1e-30f, 0.5f,  -0.5f,  3.0f,  -3.0f,
                                  9.0f, -9.0f, 13.0f,  -13.0f,  20.0f, -20.0f, 50.0f, -50.0f};

static void fill_act_input(float *x, int64_t n) {
    const int64_t ne = sizeof act_edges / sizeof *act_edges;
    for (int64_t i = 0; i < n; i++)
        x[i] = i % 7 == 6 ? act_edges[(i / 7) % ne] : (float)(-8.0 + 16.0 * nt_uniform());
}

static void test_act_case(qkv_act act, int64_t n) {
    char name[96];
    snprintf(name, sizeof name, "act %s n=%lld", act_name(act), (long long)n);
    float *x = nt_alloc(n);
    fill_act_input(x, n);
    float *y = nt_rand(n, -1, 1), *yr = nt_alloc(n);
    CHECK_OK(qkv_nn_act_forward(NULL, act, y, x, n));
    CHECK_OK(qkv_nn_act_forward_ref(NULL, act, yr, x, n));
    double *mag = nt_alloc_d(n), *tol = nt_alloc_d(n);
    for (int64_t i = 0; i < n; i++) { /* the kernels' bound (docs/KERNELS.md) */
        mag[i] = fabs(yr[i]);
        tol[i] = act_rtol(act, x[i]) * fabs(yr[i]) + ACT_ATOL;
    }
    cmp(L_ACT, LABEL("%s forward", name), y, yr, mag, tol, n);
    float *ip = nt_copy(x, n);
    CHECK_OK(qkv_nn_act_forward(NULL, act, ip, ip, n));
    nt_same_bits(LABEL("%s forward in place", name), ip, y, n);
    float *dy = nt_rand(n, -1, 1);
    float *dx = nt_rand(n, -1, 1), *dxr = nt_copy(dx, n);
    CHECK_OK(qkv_nn_act_backward(NULL, act, dx, dy, x, n));
    CHECK_OK(qkv_nn_act_backward_ref(NULL, act, dxr, dy, x, n));
    for (int64_t i = 0; i < n; i++) {
        /* documented: 1e-6·|dy|·(magnitude of act's parts) + 2.5e-7·|dx|; GELU tanh also
         * carries the conditioning of e^{-2u} (as its forward); ACT_ATOL for the tails */
        const double g = fabs(dy[i]) * act_grad_mag(act, x[i]);
        mag[i] = g + fabs(dxr[i]);
        tol[i] = act_rtol(act, x[i]) * g + 2.5e-7 * fabs(dxr[i]) + ACT_ATOL;
    }
    cmp(L_ACT, LABEL("%s backward", name), dx, dxr, mag, tol, n);
    { /* the overwriting form over junk: the bits of += into zeros */
        float *ds = nt_junk(n), *dz = nt_alloc(n);
        CHECK_OK(qkv_nn_act_backward_set(NULL, act, ds, dy, x, n));
        CHECK_OK(qkv_nn_act_backward(NULL, act, dz, dy, x, n));
        nt_same_bits(LABEL("%s backward set vs += into zeros", name), ds, dz, n);
        free(ds), free(dz);
    }
    free(x), free(y), free(yr), free(mag), free(tol), free(ip), free(dy), free(dx), free(dxr);
}

/* SwiGLU has no _ref twin: silu(g)·u and its gradients in double, here. */
static double silu_d(double g) { return g / (1.0 + exp(-g)); }
static double silu_grad_d(double g) {
    const double s = 1.0 / (1.0 + exp(-g));
    return s * (1.0 + g * (1.0 - s));
}

static void test_swiglu_case(int64_t n) {
    char name[64];
    snprintf(name, sizeof name, "swiglu n=%lld", (long long)n);
    float *g = nt_alloc(n), *u = nt_rand(n, -2, 2);
    fill_act_input(g, n);
    float *y = nt_rand(n, -1, 1), *yr = nt_alloc(n);
    double *mag = nt_alloc_d(n), *tol = nt_alloc_d(n);
    CHECK_OK(qkv_nn_swiglu_forward(NULL, y, g, u, n));
    for (int64_t i = 0; i < n; i++) {
        const double want = silu_d(g[i]) * u[i];
        yr[i] = (float)want;
        mag[i] = fabs(want);
        /* the SiLU kernel's 1e-6, the product's and want's roundings */
        tol[i] = (1e-6 + 2 * U) * fabs(want) + 1e-37;
    }
    cmp(L_SWIGLU, LABEL("%s forward", name), y, yr, mag, tol, n);
    float *ig = nt_copy(g, n), *iu = nt_copy(u, n);
    CHECK_OK(qkv_nn_swiglu_forward(NULL, ig, ig, u, n));
    CHECK_OK(qkv_nn_swiglu_forward(NULL, iu, g, iu, n));
    nt_same_bits(LABEL("%s forward out == gate", name), ig, y, n);
    nt_same_bits(LABEL("%s forward out == up", name), iu, y, n);
    float *dy = nt_rand(n, -1, 1);
    float *dg = nt_rand(n, -1, 1), *du = nt_rand(n, -1, 1);
    float *dgr = nt_alloc(n), *dur = nt_alloc(n);
    double *mu = nt_alloc_d(n), *tu = nt_alloc_d(n);
    for (int64_t i = 0; i < n; i++) {
        const double t = (double)dy[i] * u[i];
        const double wg = dg[i] + t * silu_grad_d(g[i]), wu = du[i] + (double)dy[i] * silu_d(g[i]);
        dgr[i] = (float)wg, dur[i] = (float)wu;
        /* dgate: dout·up rounded to float, then the SiLU backward kernel's bound
         * 1e-6·|t|·mag + 2.5e-7·|dx|, then want's rounding */
        mag[i] = fabs(t) * act_grad_mag(QKV_ACT_SILU, g[i]) + fabs(wg);
        tol[i] = (1e-6 + U) * fabs(t) * act_grad_mag(QKV_ACT_SILU, g[i]) + (2.5e-7 + U) * fabs(wg) +
                 1e-37;
        /* dup: the SiLU forward's 1e-6, the product, the += and want's roundings */
        mu[i] = fabs((double)dy[i] * silu_d(g[i])) + fabs(wu);
        tu[i] = (1e-6 + U) * fabs((double)dy[i] * silu_d(g[i])) + 2 * U * fabs(wu) + 1e-37;
    }
    float *dg2 = nt_copy(dg, n), *du2 = nt_copy(du, n);
    CHECK_OK(qkv_nn_swiglu_backward(NULL, dg, du, dy, g, u, n));
    cmp(L_SWIGLU, LABEL("%s dgate", name), dg, dgr, mag, tol, n);
    cmp(L_SWIGLU, LABEL("%s dup", name), du, dur, mu, tu, n);
    CHECK_OK(qkv_nn_swiglu_backward(NULL, dg2, NULL, dy, g, u, n));
    CHECK_OK(qkv_nn_swiglu_backward(NULL, NULL, du2, dy, g, u, n));
    nt_same_bits(LABEL("%s dgate alone", name), dg2, dg, n);
    nt_same_bits(LABEL("%s dup alone", name), du2, du, n);
    free(g), free(u), free(y), free(yr), free(mag), free(tol), free(ig), free(iu), free(dy);
    free(dg), free(du), free(dgr), free(dur), free(mu), free(tu), free(dg2), free(du2);
}

/* Residual: one float addition per element in both: bit-exact. */
static void test_residual_case(int64_t n) {
    char name[64];
    snprintf(name, sizeof name, "residual n=%lld", (long long)n);
    float *a = nt_rand(n, -1, 1), *b = nt_rand(n, -1, 1);
    float *y = nt_alloc(n), *yr = nt_alloc(n);
    CHECK_OK(qkv_nn_residual_forward(NULL, y, a, b, n));
    CHECK_OK(qkv_nn_residual_forward_ref(NULL, yr, a, b, n));
    nt_same_bits(LABEL("%s forward", name), y, yr, n);
    float *ia = nt_copy(a, n), *ib = nt_copy(b, n);
    CHECK_OK(qkv_nn_residual_forward(NULL, ia, ia, b, n));
    CHECK_OK(qkv_nn_residual_forward(NULL, ib, a, ib, n));
    nt_same_bits(LABEL("%s forward out == a", name), ia, yr, n);
    nt_same_bits(LABEL("%s forward out == b", name), ib, yr, n);
    float *dy = nt_rand(n, -1, 1);
    float *da = nt_rand(n, -1, 1), *db = nt_rand(n, -1, 1);
    float *dar = nt_copy(da, n), *dbr = nt_copy(db, n);
    CHECK_OK(qkv_nn_residual_backward(NULL, da, db, dy, n));
    CHECK_OK(qkv_nn_residual_backward_ref(NULL, dar, dbr, dy, n));
    nt_same_bits(LABEL("%s backward da", name), da, dar, n);
    nt_same_bits(LABEL("%s backward db", name), db, dbr, n);
    CHECK_OK(qkv_nn_residual_backward(NULL, NULL, db, dy, n));
    CHECK_OK(qkv_nn_residual_backward_ref(NULL, NULL, dbr, dy, n));
    nt_same_bits(LABEL("%s backward db alone", name), db, dbr, n);
    n_checked[L_RES] += 6 * n;
    free(a), free(b), free(y), free(yr), free(ia), free(ib), free(dy), free(da), free(db);
    free(dar), free(dbr);
}

static void test_dropout_case(int64_t n, float p, uint64_t seed, uint64_t stream) {
    char name[96];
    snprintf(name, sizeof name, "dropout n=%lld p=%g", (long long)n, (double)p);
    float *x = nt_rand(n, 0.5, 1.5); /* nonzero: an output is 0 exactly when dropped */
    for (int64_t i = 0; i < n; i += 2) x[i] = -x[i];
    float *y = nt_rand(n, -1, 1), *yr = nt_alloc(n);
    CHECK_OK(qkv_nn_dropout_forward(NULL, y, x, n, p, seed, stream));
    CHECK_OK(qkv_nn_dropout_forward_ref(NULL, yr, x, n, p, seed, stream));
    int64_t mismatch = 0, kept = 0;
    for (int64_t i = 0; i < n; i++) {
        mismatch += (y[i] == 0.0f) != (yr[i] == 0.0f);
        kept += yr[i] != 0.0f;
    }
    CHECK_MSG(mismatch == 0, "%s: %lld elements kept by one and dropped by the other", name,
              (long long)mismatch);
    if (n >= 5000) /* the mask is not trivial */
        CHECK_MSG(fabs((double)kept / (double)n - (1.0 - p)) < 0.05, "%s: kept %lld", name,
                  (long long)kept);
    /* kept: x · float(1/(1-p)) (two roundings) vs x/(1-p) in double rounded once: 3U */
    double *mag = nt_alloc_d(n), *tol = nt_alloc_d(n);
    for (int64_t i = 0; i < n; i++) mag[i] = fabs(yr[i]), tol[i] = 3 * U * fabs(yr[i]);
    cmp(L_DROP, LABEL("%s forward", name), y, yr, mag, tol, n);
    float *ip = nt_copy(x, n);
    CHECK_OK(qkv_nn_dropout_forward(NULL, ip, ip, n, p, seed, stream));
    nt_same_bits(LABEL("%s forward in place", name), ip, y, n);
    /* backward: the same mask regenerated; += into pre-filled values (a mask mismatch shows
     * as an error of |dout/(1-p)| >= 0.5, far above the tolerance) */
    float *dy = nt_rand(n, 0.5, 1.5);
    float *dx = nt_rand(n, -1, 1), *dxr = nt_copy(dx, n);
    CHECK_OK(qkv_nn_dropout_backward(NULL, dx, dy, n, p, seed, stream));
    CHECK_OK(qkv_nn_dropout_backward_ref(NULL, dxr, dy, n, p, seed, stream));
    for (int64_t i = 0; i < n; i++) { /* the scale, the product, the += and the ref round */
        mag[i] = fabs(dxr[i]) + fabs(dy[i]) / (1.0 - p);
        tol[i] = 4 * U * mag[i];
    }
    cmp(L_DROP, LABEL("%s backward", name), dx, dxr, mag, tol, n);
    { /* the overwriting form over junk: the bits of += into zeros (a -0 gradient too) */
        float *ds = nt_junk(n), *dz = nt_alloc(n);
        dy[0] = -0.0f;
        CHECK_OK(qkv_nn_dropout_backward_set(NULL, ds, dy, n, p, seed, stream));
        CHECK_OK(qkv_nn_dropout_backward(NULL, dz, dy, n, p, seed, stream));
        nt_same_bits(LABEL("%s backward set vs += into zeros", name), ds, dz, n);
        free(ds), free(dz);
    }
    free(x), free(y), free(yr), free(mag), free(tol), free(ip), free(dy), free(dx), free(dxr);
}

/* ---------------------------------------------------------------- softmax */

/* kind 0: uniform [-4, 4]; 1: large magnitude [-80, 80]; 2: [-4, 4] with row 0 fully masked
 * (-inf) and every 3rd element of the other rows masked. */
static void test_softmax_case(int log_, int64_t N, int64_t V, int kind) {
    char name[96];
    snprintf(name, sizeof name, "%s N=%lld V=%lld kind=%d", log_ ? "log_softmax" : "softmax",
             (long long)N, (long long)V, kind);
    const int layer = log_ ? L_LSM : L_SM;
    float *x = nt_rand(N * V, kind == 1 ? -80 : -4, kind == 1 ? 80 : 4);
    if (kind == 2)
        for (int64_t n = 0; n < N; n++)
            for (int64_t v = 0; v < V; v++)
                if (n == 0 || (v % 3 == 1)) x[n * V + v] = -INFINITY;
    float *y = nt_rand(N * V, -1, 1), *yr = nt_alloc(N * V);
    if (log_) {
        CHECK_OK(qkv_nn_log_softmax_forward(NULL, y, x, N, V));
        CHECK_OK(qkv_nn_log_softmax_forward_ref(NULL, yr, x, N, V));
    } else {
        CHECK_OK(qkv_nn_softmax_forward(NULL, y, x, N, V));
        CHECK_OK(qkv_nn_softmax_forward_ref(NULL, yr, x, N, V));
    }
    double *mag = nt_alloc_d(N * V), *tol = nt_alloc_d(N * V);
    for (int64_t n = 0; n < N; n++) {
        const float *r = x + n * V;
        double m = -INFINITY, s = 0;
        for (int64_t v = 0; v < V; v++) m = fmax(m, r[v]);
        if (m > -INFINITY)
            for (int64_t v = 0; v < V; v++) s += exp((double)r[v] - m);
        for (int64_t v = 0; v < V; v++) {
            const int64_t k = n * V + v;
            const double dist = m > -INFINITY && r[v] > -INFINITY ? (double)r[v] - m : 0;
            if (log_) { /* documented: 2.5e-7·(|x - max| + log s) + 1e-6 */
                mag[k] = fabs(dist) + (s > 0 ? log(s) : 0) + 1;
                tol[k] = 2.5e-7 * (mag[k] - 1) + 1e-6;
            } else { /* documented: 1e-6·(1 + |x - max|/4) relative (exp of x - max rounded in
                      * float), and a floor for underflowed probabilities */
                mag[k] = fabs(yr[k]);
                tol[k] = 1e-6 * (1 + fabs(dist) / 4) * fabs(yr[k]) + 1e-37;
            }
        }
    }
    cmp(layer, LABEL("%s forward", name), y, yr, mag, tol, N * V);
    /* backward from the ref's output, into pre-filled gradients */
    float *dy = nt_rand(N * V, -1, 1);
    float *dx = nt_rand(N * V, -1, 1), *dxr = nt_copy(dx, N * V);
    for (int64_t n = 0; n < N; n++) {
        double s = 0; /* Σ dy·y (softmax) or Σ dy (log-softmax) */
        for (int64_t v = 0; v < V; v++)
            s += log_ ? dy[n * V + v] : (double)dy[n * V + v] * yr[n * V + v];
        for (int64_t v = 0; v < V; v++) {
            const int64_t k = n * V + v;
            const double p = log_ ? exp((double)yr[k]) : yr[k];
            const double pre = dx[k];
            /* documented: 2e-6·p·(|dy| + |s|) + 4e-7·|dx|; here |dx| covers |pre| and |dy| too,
             * the values the += and the subtraction round */
            mag[k] = p * (fabs(dy[k]) + fabs(s)) + fabs(pre) + (log_ ? fabs(dy[k]) : 0);
            tol[k] = 2e-6 * p * (fabs(dy[k]) + fabs(s)) +
                     4e-7 * (fabs(pre) + (log_ ? fabs(dy[k]) : 0) + fabs(pre + dy[k]));
        }
    }
    if (log_) {
        CHECK_OK(qkv_nn_log_softmax_backward(NULL, dx, dy, yr, N, V));
        CHECK_OK(qkv_nn_log_softmax_backward_ref(NULL, dxr, dy, yr, N, V));
    } else {
        CHECK_OK(qkv_nn_softmax_backward(NULL, dx, dy, yr, N, V));
        CHECK_OK(qkv_nn_softmax_backward_ref(NULL, dxr, dy, yr, N, V));
    }
    cmp(layer, LABEL("%s backward", name), dx, dxr, mag, tol, N * V);
    free(x), free(y), free(yr), free(mag), free(tol), free(dy), free(dx), free(dxr);
}

/* ---------------------------------------------------------------- cross-entropy */

/* Gradients of tiny probabilities are subnormal, where float keeps an absolute precision of
 * 2^-149 only (the exp kernel's bound is 1 subnormal ulp there, and each product rounds to
 * one): a floor of 4 subnormal ulps. */
#define CE_ATOL 0x1p-147

/* ignore_every: every k-th row gets ignore_index (0: none, 1: all); big: logits in [-80, 80] */
static void test_ce_case(int64_t N, int64_t V, int32_t ignore, float eps, int ignore_every, int big,
                         float dloss) {
    char name[160];
    snprintf(name, sizeof name, "cross_entropy N=%lld V=%lld ignore=%d eps=%g every=%d big=%d",
             (long long)N, (long long)V, ignore, (double)eps, ignore_every, big);
    float *x = nt_rand(N * V, big ? -80 : -4, big ? 80 : 4);
    int32_t *t = malloc((size_t)N * sizeof(int32_t));
    int64_t count = 0;
    for (int64_t n = 0; n < N; n++) {
        t[n] = (int32_t)(nt_uniform() * (double)V);
        if (ignore_every && n % ignore_every == ignore_every - 1) t[n] = ignore;
        if (t[n] != ignore) count++;
    }
    float loss = -1, lossr = -1, loss2 = -1;
    float *ls = nt_rand(N, -1, 1), *lsr = nt_alloc(N);
    CHECK_OK(qkv_nn_cross_entropy_forward(NULL, &loss, ls, x, t, N, V, ignore, eps));
    CHECK_OK(qkv_nn_cross_entropy_forward_ref(NULL, &lossr, lsr, x, t, N, V, ignore, eps));
    CHECK_OK(qkv_nn_cross_entropy_forward(NULL, &loss2, NULL, x, t, N, V, ignore, eps));
    nt_same_bits(LABEL("%s loss with losses NULL", name), &loss2, &loss, 1);
    /* row loss: each exp term errs by 2.5e-7 (kernel) + U·|x - m| (x - m rounded in float), so
     * log s by their softmax-weighted mean; l is then rounded. Bound: 1e-6·(1 + |l| + w),
     * w = Σ p|x - m| (about 4x the sum of those terms). Ignored rows: exactly 0. */
    double *mag = nt_alloc_d(N * V), *tol = nt_alloc_d(N * V);
    double *rowm = nt_alloc_d(N), *roww = nt_alloc_d(N), *rows = nt_alloc_d(N);
    double tl_max = 0;
    for (int64_t n = 0; n < N; n++) {
        const float *r = x + n * V;
        double m = -INFINITY, s = 0, w = 0;
        for (int64_t v = 0; v < V; v++) m = fmax(m, r[v]);
        for (int64_t v = 0; v < V; v++) s += exp((double)r[v] - m);
        for (int64_t v = 0; v < V; v++) w += exp((double)r[v] - m) / s * (m - r[v]);
        rowm[n] = m, rows[n] = s, roww[n] = w;
        mag[n] = 1 + fabs(lsr[n]) + w;
        tol[n] = t[n] == ignore ? 0 : 1e-6 * mag[n];
        if (t[n] != ignore) tl_max = fmax(tl_max, tol[n]);
    }
    cmp(L_CE, LABEL("%s row losses", name), ls, lsr, mag, tol, N);
    /* the mean: within the worst row's bound, plus its own rounding */
    double ml = 1 + fabs(lossr), tlo = tl_max + 2 * U * fabs(lossr);
    if (!count) tlo = 0; /* every row ignored: 0 exactly */
    cmp(L_CE, LABEL("%s loss", name), &loss, &lossr, &ml, &tlo, 1);

    /* backward, += into pre-filled dlogits */
    const double g = count ? (double)dloss / (double)count : 0.0;
    float *dx = nt_rand(N * V, -1, 1), *dxr = nt_copy(dx, N * V);
    for (int64_t n = 0; n < N; n++)
        for (int64_t v = 0; v < V; v++) {
            const int64_t k = n * V + v;
            if (t[n] == ignore) { /* untouched */
                mag[k] = fabs(dx[k]), tol[k] = 0;
                continue;
            }
            const double p = exp((double)x[k] - rowm[n]) / rows[n];
            const double oh = v == t[n] ? 1.0 : 0.0;
            /* p carries the row's relative error 1e-6·(1 + |x - m| + w) as above; the float
             * products and subtractions round at the magnitude p + onehot + ε/V; the += rounds */
            mag[k] = fabs(g) * (p + oh + eps / (double)V) + fabs(dx[k]);
            tol[k] = fabs(g) * (1e-6 * (1 + (rowm[n] - x[k]) + roww[n]) * p +
                                4 * U * (p + oh + eps / (double)V)) +
                     2 * U * fabs(dx[k]) + U * fabs((double)dx[k] + g * (p - oh)) + CE_ATOL;
        }
    CHECK_OK(qkv_nn_cross_entropy_backward(NULL, dx, dloss, x, t, N, V, ignore, eps));
    CHECK_OK(qkv_nn_cross_entropy_backward_ref(NULL, dxr, dloss, x, t, N, V, ignore, eps));
    cmp(L_CE, LABEL("%s backward", name), dx, dxr, mag, tol, N * V);

    /* fused: the same loss bits as the forward (the same operations on each row); the logits
     * overwritten by the gradient from zero, i.e. the backward into a zeroed buffer */
    float *io = nt_copy(x, N * V), *g0 = nt_alloc(N * V), *g0r = nt_alloc(N * V);
    float lossf = -1, *lsf = nt_rand(N, -1, 1);
    CHECK_OK(qkv_nn_cross_entropy_fused(NULL, &lossf, lsf, io, t, N, V, ignore, eps, dloss));
    CHECK_OK(qkv_nn_cross_entropy_backward(NULL, g0, dloss, x, t, N, V, ignore, eps));
    CHECK_OK(qkv_nn_cross_entropy_backward_ref(NULL, g0r, dloss, x, t, N, V, ignore, eps));
    nt_same_bits(LABEL("%s fused loss vs forward", name), &lossf, &loss, 1);
    nt_same_bits(LABEL("%s fused row losses vs forward", name), lsf, ls, N);
    for (int64_t n = 0; n < N; n++)
        for (int64_t v = 0; v < V; v++) {
            const int64_t k = n * V + v;
            if (t[n] == ignore) { /* zero exactly */
                mag[k] = 0, tol[k] = 0;
                continue;
            }
            const double p = exp((double)x[k] - rowm[n]) / rows[n];
            const double oh = v == t[n] ? 1.0 : 0.0;
            mag[k] = fabs(g) * (p + oh + eps / (double)V);
            tol[k] = fabs(g) * (1e-6 * (1 + (rowm[n] - x[k]) + roww[n]) * p +
                                4 * U * (p + oh + eps / (double)V)) +
                     CE_ATOL;
        }
    cmp(L_CE, LABEL("%s fused gradient vs ref", name), io, g0r, mag, tol, N * V);
    /* fused vs the fast backward from zero: the same float operations except the scale
     * g/s vs g/exp(log s) (1 ulp of float apart at most): 4U of the terms */
    for (int64_t k = 0; k < N * V; k++) tol[k] = 4 * U * mag[k] + CE_ATOL;
    cmp(L_CE, LABEL("%s fused gradient vs backward", name), io, g0, mag, tol, N * V);
    free(x), free(t), free(ls), free(lsr), free(mag), free(tol), free(rowm), free(roww);
    free(rows), free(dx), free(dxr), free(io), free(g0), free(g0r), free(lsf);
}

/* ---------------------------------------------------------------- RoPE */

static void test_rope_case(qkv_nn_rope_style style, int64_t B, int64_t T, int64_t H, int64_t D,
                           int64_t dims, double theta, int64_t pos0) {
    char name[160];
    snprintf(name, sizeof name, "rope %s B=%lld T=%lld H=%lld D=%lld dims=%lld pos0=%lld",
             style == QKV_NN_ROPE_HALF ? "half" : "interleaved", (long long)B, (long long)T,
             (long long)H, (long long)D, (long long)dims, (long long)pos0);
    const qkv_nn_rope rope = {style, theta, dims};
    const int64_t n = B * T * H * D, R = dims ? dims : D;
    float *x = nt_rand(n, -2, 2), *y = nt_rand(n, -1, 1), *yr = nt_alloc(n);
    CHECK_OK(qkv_nn_rope_forward(NULL, y, x, &rope, B, T, H, D, pos0));
    CHECK_OK(qkv_nn_rope_forward_ref(NULL, yr, x, &rope, B, T, H, D, pos0));
    /* pairs: cos and sin rounded to float, two products, the sum, the ref's rounding: 5
     * roundings, each <= U·(|xa| + |xb|); 6U. Dims past R pass through: exact. */
    double *mag = nt_alloc_d(n), *tol = nt_alloc_d(n);
    float *dy = nt_rand(n, -2, 2), *dx = nt_rand(n, -1, 1), *dxr = nt_copy(dx, n);
    double *mb = nt_alloc_d(n), *tb = nt_alloc_d(n);
    for (int64_t row = 0; row < B * T * H; row++) {
        const int64_t base = row * D;
        for (int64_t d = R; d < D; d++) {
            mag[base + d] = fabs(x[base + d]), tol[base + d] = 0;
            mb[base + d] = fabs(dxr[base + d]), tb[base + d] = 0; /* one float add in both */
        }
        for (int64_t k = 0; k < R / 2; k++) {
            const int64_t ia = base + (style == QKV_NN_ROPE_HALF ? k : 2 * k);
            const int64_t ib = base + (style == QKV_NN_ROPE_HALF ? k + R / 2 : 2 * k + 1);
            mag[ia] = mag[ib] = fabs(x[ia]) + fabs(x[ib]);
            tol[ia] = tol[ib] = 6 * U * mag[ia];
            /* backward: the same plus the += (rounded at the result, <= pre + terms) */
            const double m = fabs(dy[ia]) + fabs(dy[ib]);
            mb[ia] = m + fabs(dx[ia]), mb[ib] = m + fabs(dx[ib]);
            tb[ia] = 6 * U * m + 2 * U * mb[ia], tb[ib] = 6 * U * m + 2 * U * mb[ib];
        }
    }
    cmp(L_ROPE, LABEL("%s forward", name), y, yr, mag, tol, n);
    float *ip = nt_copy(x, n);
    CHECK_OK(qkv_nn_rope_forward(NULL, ip, ip, &rope, B, T, H, D, pos0));
    nt_same_bits(LABEL("%s forward in place", name), ip, y, n);
    CHECK_OK(qkv_nn_rope_backward(NULL, dx, dy, &rope, B, T, H, D, pos0));
    CHECK_OK(qkv_nn_rope_backward_ref(NULL, dxr, dy, &rope, B, T, H, D, pos0));
    cmp(L_ROPE, LABEL("%s backward", name), dx, dxr, mb, tb, n);
    free(x), free(y), free(yr), free(mag), free(tol), free(dy), free(dx), free(dxr), free(mb);
    free(tb), free(ip);
}

/* ---------------------------------------------------------------- thread-count independence */

static void test_threads(void) {
    qkv_runtime *rt[2] = {NULL, NULL};
    CHECK_OK(qkv_runtime_create(1, &rt[0]));
    CHECK_OK(qkv_runtime_create(2, &rt[1]));
    if (!rt[0] || !rt[1]) return;
    CHECK_EQ_INT(qkv_runtime_n_threads(rt[1]), 2);
    /* linear: forward and every gradient (db is the column reduction) */
    {
        const int64_t N = 300, C = 130, OC = 257;
        float *w = nt_rand(OC * C, -1, 1), *b = nt_rand(OC, -1, 1), *x = nt_rand(N * C, -1, 1);
        float *dout = nt_rand(N * OC, -1, 1), *pre_x = nt_rand(N * C, -1, 1);
        float *pre_w = nt_rand(OC * C, -1, 1), *pre_b = nt_rand(OC, -1, 1);
        qkv_nn_linear L = {.w = w, .b = b, .C = C, .OC = OC};
        float *y[2], *dx[2], *dw[2], *db[2];
        for (int i = 0; i < 2; i++) {
            y[i] = nt_alloc(N * OC);
            dx[i] = nt_copy(pre_x, N * C), dw[i] = nt_copy(pre_w, OC * C);
            db[i] = nt_copy(pre_b, OC);
            CHECK_OK(qkv_nn_linear_forward(rt[i], &L, y[i], x, N, QKV_ACT_GELU_TANH, NULL));
            CHECK_OK(qkv_nn_linear_backward(rt[i], &L, dx[i], dw[i], db[i], dout, x, N));
        }
        nt_same_bits("threads: linear forward", y[0], y[1], N * OC);
        nt_same_bits("threads: linear dinp", dx[0], dx[1], N * C);
        nt_same_bits("threads: linear dw", dw[0], dw[1], OC * C);
        nt_same_bits("threads: linear db", db[0], db[1], OC);
        for (int i = 0; i < 2; i++) free(y[i]), free(dx[i]), free(dw[i]), free(db[i]);
        free(w), free(b), free(x), free(dout), free(pre_x), free(pre_w), free(pre_b);
    }
    /* layernorm and rmsnorm: dweight, dbias are reductions over blocks of rows */
    {
        const int64_t N = 300, C = 130;
        float *x = nt_rand(N * C, -2, 2), *w = nt_rand(C, -1, 1), *b = nt_rand(C, -1, 1);
        float *dy = nt_rand(N * C, -1, 1), *mean = nt_alloc(N), *rstd = nt_alloc(N);
        float *y[2], *dx[2], *dw[2], *db[2];
        for (int rms = 0; rms < 2; rms++) {
            for (int i = 0; i < 2; i++) {
                y[i] = nt_alloc(N * C), dx[i] = nt_alloc(N * C), dw[i] = nt_alloc(C);
                db[i] = nt_alloc(C);
                if (rms) {
                    CHECK_OK(qkv_nn_rmsnorm_forward(rt[i], y[i], rstd, x, w, N, C, 1e-5f));
                    CHECK_OK(qkv_nn_rmsnorm_backward(rt[i], dx[i], dw[i], dy, x, w, rstd, N, C));
                } else {
                    CHECK_OK(
                        qkv_nn_layernorm_forward(rt[i], y[i], mean, rstd, x, w, b, N, C, 1e-5f));
                    CHECK_OK(qkv_nn_layernorm_backward(rt[i], dx[i], dw[i], db[i], dy, x, w, mean,
                                                       rstd, N, C));
                }
            }
            nt_same_bits(rms ? "threads: rmsnorm forward" : "threads: layernorm forward", y[0],
                         y[1], N * C);
            nt_same_bits(rms ? "threads: rmsnorm dinp" : "threads: layernorm dinp", dx[0], dx[1],
                         N * C);
            nt_same_bits(rms ? "threads: rmsnorm dweight" : "threads: layernorm dweight", dw[0],
                         dw[1], C);
            nt_same_bits("threads: layernorm dbias", db[0], db[1], C);
            for (int i = 0; i < 2; i++) free(y[i]), free(dx[i]), free(dw[i]), free(db[i]);
        }
        free(x), free(w), free(b), free(dy), free(mean), free(rstd);
    }
    /* embedding backward: many repeated ids, columns split over threads */
    {
        const int64_t N = 500, V = 50, C = 257;
        int32_t *ids = malloc((size_t)N * sizeof(int32_t));
        for (int64_t n = 0; n < N; n++) ids[n] = (int32_t)(nt_uniform() * (double)V);
        float *dout = nt_rand(N * C, -1, 1), *pre = nt_rand(V * C, -1, 1), *dt[2];
        for (int i = 0; i < 2; i++) {
            dt[i] = nt_copy(pre, V * C);
            CHECK_OK(qkv_nn_embedding_backward(rt[i], dt[i], dout, ids, N, V, C));
        }
        nt_same_bits("threads: embedding backward", dt[0], dt[1], V * C);
        free(ids), free(dout), free(pre), free(dt[0]), free(dt[1]);
    }
    /* cross-entropy: the loss is a mean over rows computed on several threads */
    {
        const int64_t N = 64, V = 5000;
        float *x = nt_rand(N * V, -4, 4);
        int32_t *t = malloc((size_t)N * sizeof(int32_t));
        for (int64_t n = 0; n < N; n++) t[n] = n % 5 == 4 ? -100 : (int32_t)(nt_uniform() * V);
        float loss[2], lossf[2], *ls[2], *dx[2], *io[2];
        for (int i = 0; i < 2; i++) {
            ls[i] = nt_alloc(N), dx[i] = nt_alloc(N * V), io[i] = nt_copy(x, N * V);
            CHECK_OK(qkv_nn_cross_entropy_forward(rt[i], &loss[i], ls[i], x, t, N, V, -100, 0.1f));
            CHECK_OK(qkv_nn_cross_entropy_backward(rt[i], dx[i], 1.0f, x, t, N, V, -100, 0.1f));
            CHECK_OK(qkv_nn_cross_entropy_fused(rt[i], &lossf[i], NULL, io[i], t, N, V, -100, 0.1f,
                                                1.0f));
        }
        nt_same_bits("threads: cross-entropy loss", &loss[0], &loss[1], 1);
        nt_same_bits("threads: cross-entropy row losses", ls[0], ls[1], N);
        nt_same_bits("threads: cross-entropy backward", dx[0], dx[1], N * V);
        nt_same_bits("threads: cross-entropy fused loss", &lossf[0], &lossf[1], 1);
        nt_same_bits("threads: cross-entropy fused gradient", io[0], io[1], N * V);
        for (int i = 0; i < 2; i++) free(ls[i]), free(dx[i]), free(io[i]);
        free(x), free(t);
    }
    /* elementwise and row layers, split over threads */
    {
        const int64_t n = 20000;
        float *x = nt_rand(n, -6, 6), *y[2], *z[2];
        const qkv_nn_rope rope = {QKV_NN_ROPE_HALF, 10000.0, 0};
        for (int i = 0; i < 2; i++) {
            y[i] = nt_alloc(n), z[i] = nt_alloc(n);
            CHECK_OK(qkv_nn_dropout_forward(rt[i], y[i], x, n, 0.3f, 7, 3));
            CHECK_OK(qkv_nn_softmax_forward(rt[i], z[i], x, 20, 1000));
        }
        nt_same_bits("threads: dropout", y[0], y[1], n);
        nt_same_bits("threads: softmax", z[0], z[1], n);
        for (int i = 0; i < 2; i++) {
            CHECK_OK(qkv_nn_rope_forward(rt[i], y[i], x, &rope, 5, 50, 2, 40, 9));
            CHECK_OK(qkv_nn_swiglu_forward(rt[i], z[i], x, x, n));
        }
        nt_same_bits("threads: rope", y[0], y[1], n);
        nt_same_bits("threads: swiglu", z[0], z[1], n);
        for (int i = 0; i < 2; i++) free(y[i]), free(z[i]);
        free(x);
    }
    qkv_runtime_free(rt[0]);
    qkv_runtime_free(rt[1]);
}

/* ---------------------------------------------------------------- invalid arguments */

/* INVALID_ARG, a message naming the function, and nothing written to `guard` (n floats that
 * were filled with 7 before the call). */
#define CHECK_INVALID(expr, fname, guard, n)                                                       \
    do {                                                                                           \
        for (int64_t i_ = 0; i_ < (n); i_++) (guard)[i_] = 7.0f;                                   \
        CHECK_STATUS(expr, QKV_ERR_INVALID_ARG);                                                   \
        CHECK_MSG(strstr(qkv_last_error(), fname) != NULL, "%s: message '%s'", #expr,              \
                  qkv_last_error());                                                               \
        int64_t bad_ = 0;                                                                          \
        for (int64_t i_ = 0; i_ < (n); i_++) bad_ += (guard)[i_] != 7.0f;                          \
        CHECK_MSG(bad_ == 0, "%s wrote %lld values", #expr, (long long)bad_);                      \
    } while (0)

static void test_invalid(void) {
    const int64_t N = 4, C = 6, OC = 5, V = 7;
    float *w = nt_rand(OC * C, -1, 1), *x = nt_rand(N * C + N * V, -1, 1), *out = nt_alloc(64);
    float *g = nt_alloc(64), *st = nt_alloc(8);
    qkv_nn_linear L = {.w = w, .C = C, .OC = OC};
    const char *lf = "qkv_nn_linear_forward", *lb = "qkv_nn_linear_backward";
    CHECK_INVALID(qkv_nn_linear_forward(NULL, NULL, out, x, N, QKV_ACT_NONE, NULL), lf, out, 64);
    CHECK_INVALID(qkv_nn_linear_forward(NULL, &L, NULL, x, N, QKV_ACT_NONE, NULL), lf, out, 64);
    CHECK_INVALID(qkv_nn_linear_forward(NULL, &L, out, NULL, N, QKV_ACT_NONE, NULL), lf, out, 64);
    CHECK_INVALID(qkv_nn_linear_forward(NULL, &L, out, x, 0, QKV_ACT_NONE, NULL), lf, out, 64);
    CHECK_INVALID(qkv_nn_linear_forward(NULL, &L, out, x, N, QKV_ACT_GELU_ERF, out), lf, out, 64);
    {
        qkv_nn_linear B = L;
        B.C = 0;
        CHECK_INVALID(qkv_nn_linear_forward(NULL, &B, out, x, N, QKV_ACT_NONE, NULL), lf, out, 64);
        B = L, B.w = NULL;
        CHECK_INVALID(qkv_nn_linear_forward(NULL, &B, out, x, N, QKV_ACT_NONE, NULL), lf, out, 64);
        CHECK_INVALID(qkv_nn_linear_backward(NULL, &B, g, NULL, NULL, out, x, N), lb, g, 64);
        B = L, B.ldw = C - 1;
        CHECK_INVALID(qkv_nn_linear_forward(NULL, &B, out, x, N, QKV_ACT_NONE, NULL), lf, out, 64);
        B = L, B.in_out = 1, B.ldw = OC - 1;
        CHECK_INVALID(qkv_nn_linear_forward(NULL, &B, out, x, N, QKV_ACT_NONE, NULL), lf, out, 64);
        qkv_gemm_packed *pk = NULL; /* op(w) of a (C, OC + 1) layer */
        CHECK_OK(qkv__gemm_pack_b(NULL, 0, C, OC + 1, x, OC + 1, &pk));
        B = L, B.packed = pk;
        CHECK_INVALID(qkv_nn_linear_forward(NULL, &B, out, x, N, QKV_ACT_NONE, NULL), lf, out, 64);
        qkv__gemm_packed_free(pk);
    }
    CHECK_INVALID(qkv_nn_linear_backward(NULL, &L, g, g, g, NULL, x, N), lb, g, 64);
    CHECK_INVALID(qkv_nn_linear_backward(NULL, &L, NULL, g, NULL, out, NULL, N), lb, g, 64);
    CHECK_INVALID(qkv_nn_linear_backward(NULL, &L, g, NULL, NULL, out, x, -1), lb, g, 64);

    int32_t ids[4] = {0, 6, 3, 1};
    const char *ef = "qkv_nn_embedding_forward", *eb = "qkv_nn_embedding_backward";
    ids[2] = (int32_t)V;
    CHECK_INVALID(qkv_nn_embedding_forward(NULL, out, ids, x, N, V, 1), ef, out, 64);
    ids[2] = -1;
    CHECK_INVALID(qkv_nn_embedding_add_forward(NULL, out, ids, x, N, V, 1),
                  "qkv_nn_embedding_add_forward", out, 64);
    CHECK_INVALID(qkv_nn_embedding_backward(NULL, g, x, ids, N, V, 1), eb, g, 64);
    ids[2] = 3;
    CHECK_INVALID(qkv_nn_embedding_forward(NULL, out, NULL, x, N, V, 1), ef, out, 64);
    CHECK_INVALID(qkv_nn_embedding_forward(NULL, out, ids, x, N, V, 0), ef, out, 64);
    CHECK_INVALID(qkv_nn_embedding_backward(NULL, g, NULL, ids, N, V, 1), eb, g, 64);
    const char *pf = "qkv_nn_position_add_forward";
    CHECK_INVALID(qkv_nn_position_add_forward(NULL, out, x, x, 2, 3, 2, 4, 2), pf, out, 64);
    CHECK_INVALID(qkv_nn_position_add_forward(NULL, out, x, x, 2, 3, 2, 4, -1), pf, out, 64);
    CHECK_INVALID(qkv_nn_position_add_forward(NULL, out, x, NULL, 2, 3, 2, 4, 0), pf, out, 64);
    CHECK_INVALID(qkv_nn_position_add_backward(NULL, g, g + 32, x, 2, 3, 2, 4, 2),
                  "qkv_nn_position_add_backward", g, 64);

    const char *lnf = "qkv_nn_layernorm_forward", *lnb = "qkv_nn_layernorm_backward";
    const char *rnf = "qkv_nn_rmsnorm_forward", *rnb = "qkv_nn_rmsnorm_backward";
    CHECK_INVALID(qkv_nn_layernorm_forward(NULL, out, st, st + 4, NULL, NULL, NULL, N, C, 1e-5f),
                  lnf, out, 64);
    CHECK_INVALID(qkv_nn_layernorm_forward(NULL, out, NULL, NULL, x, NULL, NULL, N, 0, 1e-5f), lnf,
                  out, 64);
    CHECK_INVALID(qkv_nn_layernorm_forward(NULL, out, NULL, NULL, x, NULL, NULL, N, C, -1.0f), lnf,
                  out, 64);
    CHECK_INVALID(qkv_nn_layernorm_backward(NULL, g, NULL, NULL, x, x, NULL, NULL, st, N, C), lnb,
                  g, 64);
    CHECK_INVALID(qkv_nn_rmsnorm_forward(NULL, out, NULL, x, NULL, 0, C, 1e-5f), rnf, out, 64);
    CHECK_INVALID(qkv_nn_rmsnorm_forward(NULL, out, NULL, x, NULL, N, C, NAN), rnf, out, 64);
    CHECK_INVALID(qkv_nn_rmsnorm_backward(NULL, g, NULL, x, x, NULL, NULL, N, C), rnb, g, 64);

    CHECK_INVALID(qkv_nn_act_forward(NULL, QKV_ACT_NONE, out, x, 8), "qkv_nn_act_forward", out, 64);
    CHECK_INVALID(qkv_nn_act_forward(NULL, QKV_ACT_RELU, out, x, 0), "qkv_nn_act_forward", out, 64);
    CHECK_INVALID(qkv_nn_act_backward(NULL, (qkv_act)9, g, x, x, 8), "qkv_nn_act_backward", g, 64);
    CHECK_INVALID(qkv_nn_act_backward(NULL, QKV_ACT_SILU, g, NULL, x, 8), "qkv_nn_act_backward", g,
                  64);
    CHECK_INVALID(qkv_nn_swiglu_forward(NULL, out, NULL, x, 8), "qkv_nn_swiglu_forward", out, 64);
    CHECK_INVALID(qkv_nn_swiglu_backward(NULL, g, g + 8, x, x, x, -3), "qkv_nn_swiglu_backward", g,
                  64);
    CHECK_INVALID(qkv_nn_residual_forward(NULL, out, x, NULL, 8), "qkv_nn_residual_forward", out,
                  64);
    CHECK_INVALID(qkv_nn_residual_backward(NULL, g, g, x, 8), "qkv_nn_residual_backward", g, 64);
    CHECK_INVALID(qkv_nn_dropout_forward(NULL, out, x, 8, 1.0f, 1, 2), "qkv_nn_dropout_forward",
                  out, 64);
    CHECK_INVALID(qkv_nn_dropout_forward(NULL, out, x, 8, -0.1f, 1, 2), "qkv_nn_dropout_forward",
                  out, 64);
    CHECK_INVALID(qkv_nn_dropout_backward(NULL, g, x, 0, 0.1f, 1, 2), "qkv_nn_dropout_backward", g,
                  64);

    CHECK_INVALID(qkv_nn_softmax_forward(NULL, out, x, N, 0), "qkv_nn_softmax_forward", out, 64);
    CHECK_INVALID(qkv_nn_softmax_forward(NULL, NULL, x, N, V), "qkv_nn_softmax_forward", out, 64);
    CHECK_INVALID(qkv_nn_log_softmax_forward(NULL, out, NULL, N, V), "qkv_nn_log_softmax_forward",
                  out, 64);
    CHECK_INVALID(qkv_nn_softmax_backward(NULL, g, x, NULL, N, V), "qkv_nn_softmax_backward", g,
                  64);
    CHECK_INVALID(qkv_nn_log_softmax_backward(NULL, g, x, x, 0, V), "qkv_nn_log_softmax_backward",
                  g, 64);

    int32_t t[4] = {0, 6, -100, 2};
    const char *cf = "qkv_nn_cross_entropy_forward", *cb = "qkv_nn_cross_entropy_backward";
    const char *cu = "qkv_nn_cross_entropy_fused";
    float loss = 7.0f;
    t[3] = (int32_t)V; /* out of range */
    CHECK_INVALID(qkv_nn_cross_entropy_forward(NULL, &loss, st, x, t, N, V, -100, 0.0f), cf, st, 4);
    CHECK(loss == 7.0f);
    CHECK_INVALID(qkv_nn_cross_entropy_backward(NULL, g, 1.0f, x, t, N, V, -100, 0.0f), cb, g,
                  N * V);
    float *io = nt_alloc(N * V);
    CHECK_INVALID(qkv_nn_cross_entropy_fused(NULL, &loss, st, io, t, N, V, -100, 0.0f, 1.0f), cu,
                  io, N * V);
    t[3] = -1; /* negative and not the ignore index */
    CHECK_INVALID(qkv_nn_cross_entropy_forward(NULL, &loss, st, x, t, N, V, -100, 0.0f), cf, st, 4);
    t[3] = 2;
    CHECK_INVALID(qkv_nn_cross_entropy_forward(NULL, &loss, st, x, t, N, V, -100, 1.5f), cf, st, 4);
    CHECK_INVALID(qkv_nn_cross_entropy_forward(NULL, NULL, st, x, t, N, V, -100, 0.0f), cf, st, 4);
    CHECK_INVALID(qkv_nn_cross_entropy_forward(NULL, &loss, st, x, NULL, N, V, -100, 0.0f), cf, st,
                  4);
    CHECK_INVALID(qkv_nn_cross_entropy_forward(NULL, &loss, st, x, t, 0, V, -100, 0.0f), cf, st, 4);
    CHECK_INVALID(qkv_nn_cross_entropy_backward(NULL, g, NAN, x, t, N, V, -100, 0.0f), cb, g,
                  N * V);
    CHECK_INVALID(qkv_nn_cross_entropy_fused(NULL, &loss, st, io, t, N, 0, -100, 0.0f, 1.0f), cu,
                  io, N * V);

    qkv_nn_rope rope = {QKV_NN_ROPE_HALF, 10000.0, 3}; /* odd dims */
    const char *rf = "qkv_nn_rope_forward", *rb = "qkv_nn_rope_backward";
    CHECK_INVALID(qkv_nn_rope_forward(NULL, out, x, &rope, 1, 2, 2, 6, 0), rf, out, 64);
    rope.dims = 8; /* > D */
    CHECK_INVALID(qkv_nn_rope_forward(NULL, out, x, &rope, 1, 2, 2, 6, 0), rf, out, 64);
    rope.dims = 0, rope.theta = 0;
    CHECK_INVALID(qkv_nn_rope_forward(NULL, out, x, &rope, 1, 2, 2, 6, 0), rf, out, 64);
    rope.theta = 10000.0;
    CHECK_INVALID(qkv_nn_rope_forward(NULL, out, x, NULL, 1, 2, 2, 6, 0), rf, out, 64);
    CHECK_INVALID(qkv_nn_rope_forward(NULL, out, x, &rope, 1, 2, 2, 6, -1), rf, out, 64);
    CHECK_INVALID(qkv_nn_rope_backward(NULL, g, g, &rope, 1, 2, 2, 6, 0), rb, g, 64);
    CHECK_INVALID(qkv_nn_rope_backward(NULL, g, x, &rope, 1, 0, 2, 6, 0), rb, g, 64);
    free(w), free(x), free(out), free(g), free(st), free(io);
}

/* ---------------------------------------------------------------- main */

int main(void) {
    test_use_arch_from_env();
    nt_seed(20240611);

    test_linear();

    static const int64_t emb[][3] = {{1, 1, 1},      {17, 5, 3},     {65, 7, 63}, {257, 3, 65},
                                     {63, 5000, 17}, {300, 40, 257}, {3, 1, 17}};
    for (size_t i = 0; i < sizeof emb / sizeof *emb; i++)
        test_embedding_case(emb[i][0], emb[i][1], emb[i][2]);
    static const int64_t pos[][5] = {{1, 1, 1, 1, 0},       {2, 3, 17, 8, 5},
                                     {3, 17, 63, 40, 23},   {2, 5, 65, 5, 0},
                                     {1, 63, 257, 100, 37}, {9, 2, 3, 1025, 1023}};
    for (size_t i = 0; i < sizeof pos / sizeof *pos; i++)
        test_position_case(pos[i][0], pos[i][1], pos[i][2], pos[i][3], pos[i][4]);

    static const int64_t nrm[][2] = {{1, 1},  {3, 3},   {17, 17},  {5, 63},
                                     {7, 65}, {70, 33}, {40, 257}, {3, 1000}};
    for (int rms = 0; rms < 2; rms++)
        for (size_t i = 0; i < sizeof nrm / sizeof *nrm; i++)
            for (int affine = 0; affine < 2; affine++) {
                test_norm_case(rms, nrm[i][0], nrm[i][1], affine, 0.0);
                if (i % 2) test_norm_case(rms, nrm[i][0], nrm[i][1], affine, 3.0);
            }

    static const int64_t pw[] = {1, 3, 17, 63, 65, 257, 300, 5000, 9001};
    for (size_t a = 0; a < N_ACTS; a++)
        for (size_t i = 0; i < sizeof pw / sizeof *pw; i++) test_act_case(all_acts[a], pw[i]);
    for (size_t i = 0; i < sizeof pw / sizeof *pw; i++) {
        test_swiglu_case(pw[i]);
        test_residual_case(pw[i]);
    }
    static const float ps[] = {0.0f, 0.1f, 0.5f};
    for (size_t j = 0; j < 3; j++)
        for (size_t i = 0; i < sizeof pw / sizeof *pw; i++)
            test_dropout_case(pw[i], ps[j], 1234 + i, 7 * j);

    static const int64_t sm[][2] = {{1, 1},  {1, 3},   {3, 3},    {4, 17},  {2, 63},
                                    {5, 65}, {3, 257}, {3, 5000}, {40, 100}};
    for (int log_ = 0; log_ < 2; log_++)
        for (size_t i = 0; i < sizeof sm / sizeof *sm; i++)
            for (int kind = 0; kind < 3; kind++) test_softmax_case(log_, sm[i][0], sm[i][1], kind);

    for (int e = 0; e < 2; e++) {
        const float eps = e ? 0.1f : 0.0f;
        test_ce_case(1, 1, -100, eps, 0, 0, 1.0f);
        test_ce_case(3, 17, -100, eps, 0, 0, 1.0f);
        test_ce_case(7, 63, -100, eps, 3, 0, 2.5f);
        test_ce_case(5, 257, 2, eps, 2, 0, 1.0f); /* an in-range class as the ignore index */
        test_ce_case(4, 5000, -100, eps, 4, 0, 1.0f);
        test_ce_case(65, 65, -100, eps, 5, 0, 0.5f);
        test_ce_case(6, 257, -100, eps, 3, 1, 1.0f); /* logits of ±80 */
        test_ce_case(3, 5000, -100, eps, 0, 1, 1.0f);
        test_ce_case(4, 17, -100, eps, 1, 0, 1.0f); /* every row ignored */
        test_ce_case(1, 5000, 7, eps, 1, 1, 1.0f);
    }

    for (int s = 0; s < 2; s++) {
        const qkv_nn_rope_style st = s ? QKV_NN_ROPE_HALF : QKV_NN_ROPE_INTERLEAVED;
        test_rope_case(st, 1, 1, 1, 2, 0, 10000.0, 0);
        test_rope_case(st, 2, 5, 3, 8, 0, 10000.0, 0);
        test_rope_case(st, 1, 4, 2, 10, 6, 500000.0, 17); /* partial, KV-cache offset */
        test_rope_case(st, 3, 17, 3, 64, 32, 10000.0, 100);
        test_rope_case(st, 1, 3, 1, 6, 2, 10000.0, 5000);
        test_rope_case(st, 2, 63, 2, 66, 0, 1000000.0, 3);
    }

    test_threads();
    test_invalid();

    for (int l = 0; l < L_COUNT; l++)
        printf("%-14s worst relative error %.3g, worst %.3g of tolerance (%s), %ld values\n",
               layer_names[l], worst_rel[l], worst_ratio[l], worst_case[l], n_checked[l]);
    return test_finish("nn_fast");
}
