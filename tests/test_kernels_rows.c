/* test_kernels_rows.c — the row kernels of the active ISA (run once per QKV_ARCH: the scalar run
 * checks the ref kernels) against the reference layers of src/nn, which compute in double:
 * exp (dense sweep of the float range, random bit patterns, specials), GELU erf/tanh, ReLU,
 * SiLU, softmax, log-softmax, LayerNorm, RMSNorm, forward and backward, on every row length
 * 1..70, long rows (4096, 50257), huge and non-finite values, fully masked rows, NaN; plus
 * finite-difference spot checks of the backwards through the kernels themselves.
 *
 * Tolerances (documented in docs/KERNELS.md, "Row kernels"), as |got − want| <= tol · scale:
 *   exp          rel 2.5e-7 for normal results, 1 subnormal ulp (2^-149) below FLT_MIN
 *   activations  rel 1e-6 (GELU tanh: 1e-6 + 2.5e-7·|2u|, the conditioning of e^{-2u}),
 *                plus 1e-37 absolute (flushed subnormal tails)
 *   softmax      rel 1e-6·(1 + |x − max|/4) per probability, plus 1e-37
 *   log-softmax  2.5e-7·(|x − max| + |log s|) + 1e-6 absolute
 *   norms        2e-6·(|w·x̂| + |b|) + 1e-6 (forward), 4e-6 of the terms' magnitude (backward)
 * NaN must come out where the reference gives NaN, and infinities must match exactly. */
#include "kernels/dispatch.h"
#include "nn/nn_ref.h"
#include "qkv.h"
#include "test.h"
#include "test_arch.h"

#include <float.h>
#include <stdint.h>

static uint64_t seed = 0x9e3779b97f4a7c15ull;
static uint64_t next_u64(void) {
    seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
    return seed;
}
static float urand(float lo, float hi) {
    return lo + (hi - lo) * (float)((next_u64() >> 40) & 0xffffff) / (float)(1 << 24);
}

static float *fbuf(size_t n) { return malloc((n ? n : 1) * sizeof(float)); }

/* Compares got to want element by element: both NaN, or equal (infinities included), or
 * |got − want| <= tol[i]. Returns the worst error relative to its tolerance. */
static double compare(const char *what, size_t n_arg, const float *got, const float *want,
                      const double *tol, size_t n) {
    double worst = 0.0;
    int reported = 0;
    for (size_t i = 0; i < n; i++) {
        double g = got[i], w = want[i];
        int ok;
        double e = 0.0;
        if (isnan(w) || isnan(g))
            ok = isnan(w) && isnan(g);
        else if (isinf(w) || isinf(g))
            ok = g == w;
        else {
            e = fabs(g - w) / tol[i];
            ok = e <= 1.0;
        }
        if (!ok) e = INFINITY;
        if (e > worst) worst = e;
        if (!ok && reported++ < 3)
            fprintf(stderr, "%s n=%zu: [%zu] got %.9g want %.9g tol %.3g\n", what, n_arg, i, g, w,
                    tol[i]);
    }
    CHECK_MSG(worst <= 1.0, "%s n=%zu: worst error %.3g x tolerance", what, n_arg, worst);
    return worst;
}

/* ---------------------------------------------------------------- exp */

static double exp_err(float x, float y, double *rel_worst) {
    double w = exp((double)x);
    if (isnan(x)) return isnan(y) ? 0.0 : INFINITY;
    if (w > FLT_MAX) { /* overflows in float unless rounding down below FLT_MAX */
        if (isinf(y)) return 0.0;
        return fabs(y - w) / w <= 2.5e-7 ? 0.0 : INFINITY;
    }
    if (isinf(y)) return w >= FLT_MAX * (1.0 - 2.5e-7) ? 0.0 : INFINITY;
    if (w >= FLT_MIN) {
        double r = fabs(y - w) / w;
        if (r > *rel_worst) *rel_worst = r;
        return r / 2.5e-7;
    }
    return fabs(y - w) / 0x1p-149; /* subnormal or 0: one subnormal ulp */
}

static void test_exp(const qkv_kernels *k) {
    const size_t n = (size_t)((89.0 + 104.0) * 64) + 1;
    float *x = fbuf(n), *y = fbuf(n);
    for (size_t i = 0; i < n; i++) x[i] = (float)(-104.0 + (double)i / 64.0);
    k->exp_f32(x, y, n);
    double worst = 0.0, rel = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = exp_err(x[i], y[i], &rel);
        if (e > worst) worst = e;
    }
    CHECK_MSG(worst <= 1.0, "exp sweep: worst %.3g x tolerance", worst);
    /* random bit patterns (every exponent, NaN and inf included) and random values in range */
    const size_t nr = 1u << 20;
    float *xr = fbuf(nr), *yr = fbuf(nr);
    for (size_t i = 0; i < nr; i++) {
        if (i % 2) {
            uint32_t b = (uint32_t)(next_u64() >> 32);
            memcpy(&xr[i], &b, 4);
        } else
            xr[i] = urand(-104.0f, 89.0f);
    }
    k->exp_f32(xr, yr, nr);
    double worst_r = 0.0;
    for (size_t i = 0; i < nr; i++) {
        double e = exp_err(xr[i], yr[i], &rel);
        if (e > worst_r) {
            worst_r = e;
            if (e > 1.0) fprintf(stderr, "exp(%.9g) = %.9g\n", (double)xr[i], (double)yr[i]);
        }
    }
    CHECK_MSG(worst_r <= 1.0, "exp random: worst %.3g x tolerance", worst_r);
    printf("exp: max relative error %.3g (normal results)\n", rel);
    /* specials */
    const float sx[] = {-INFINITY, INFINITY, NAN,     0.0f,   -0.0f,  88.7228f,
                        88.72284f, 89.0f,    100.0f,  1e30f,  -87.3f, -100.0f,
                        -103.9f,   -104.0f,  -110.0f, -1e30f, FLT_MIN};
    float sy[sizeof sx / sizeof *sx];
    k->exp_f32(sx, sy, sizeof sx / sizeof *sx);
    CHECK(sy[0] == 0.0f);
    CHECK(sy[1] == INFINITY);
    CHECK(isnan(sy[2]));
    CHECK(sy[3] == 1.0f && sy[4] == 1.0f);
    CHECK(isfinite(sy[5]) && sy[6] == INFINITY && sy[7] == INFINITY && sy[8] == INFINITY);
    CHECK(sy[9] == INFINITY);
    CHECK(sy[10] > 0.0f && sy[11] > 0.0f && sy[11] < FLT_MIN && sy[12] >= 0.0f);
    CHECK(sy[13] == 0.0f && sy[14] == 0.0f && sy[15] == 0.0f && sy[16] == 1.0f);
    /* every tail length, in place */
    for (size_t m = 0; m <= 70; m++) {
        float a[70], b[70];
        for (size_t i = 0; i < m; i++) a[i] = b[i] = urand(-20.0f, 20.0f);
        k->exp_f32(a, a, m);
        for (size_t i = 0; i < m; i++) {
            double dummy = 0.0;
            CHECK(exp_err(b[i], a[i], &dummy) <= 1.0);
        }
    }
    free(x), free(y), free(xr), free(yr);
}

/* ---------------------------------------------------------------- activations */

static const qkv_act acts[] = {QKV_ACT_GELU_ERF, QKV_ACT_GELU_TANH, QKV_ACT_RELU, QKV_ACT_SILU,
                               QKV_ACT_TANH};
static const qkv_act nn_acts[] = {QKV_ACT_GELU_ERF, QKV_ACT_GELU_TANH, QKV_ACT_RELU, QKV_ACT_SILU,
                                  QKV_ACT_TANH};
static const char *act_names[] = {"gelu_erf", "gelu_tanh", "relu", "silu", "tanh"};
#define N_ACTS ((int)(sizeof acts / sizeof *acts))

/* Relative tolerance of act(x) and act'(x). GELU tanh adds the conditioning of e^{-2u} on the
 * float rounding of 2u. */
static double act_rtol(int a, float x) {
    double rtol = 1e-6;
    if (acts[a] == QKV_ACT_GELU_TANH) {
        double u2 = 1.5957691216057308 * ((double)x + 0.044715 * (double)x * x * x);
        rtol += 2.5e-7 * fmin(fabs(u2), 200.0);
    }
    return rtol;
}

/* Absolute floor: the double reference itself rounds 1 + erf(x/√2) and 1 + tanh(u) to 0 for
 * x below about -8.3 (true values < 1e-15), where the kernels keep the tail. */
#define ACT_ATOL 1e-15

static double act_tol(int a, float x, double w) { return act_rtol(a, x) * fabs(w) + ACT_ATOL; }

/* The magnitude act'(x) is made of (its parts can cancel, e.g. GELU's minimum near -0.75). */
static double act_grad_mag(int a, double x) {
    switch (acts[a]) {
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
    case QKV_ACT_TANH: {
        double t = tanh(x);
        return 1.0 - t * t;
    }
    default: return 1.0;
    }
}

static const float act_edges[] = {0.0f,  -0.0f,  1e-30f, -1e-30f, 1e-6f,   -1e-6f,  0.5f,  -0.5f,
                                  1.0f,  -1.0f,  3.0f,   -3.0f,   5.0f,    -5.0f,   9.0f,  -9.0f,
                                  13.0f, -13.0f, 13.5f,  -13.5f,  15.0f,   -15.0f,  20.0f, -20.0f,
                                  50.0f, -50.0f, 87.0f,  -87.0f,  90.0f,   -90.0f,  1e4f,  -1e4f,
                                  1e30f, -1e30f, 1e-40f, -1e-40f, FLT_MAX, -FLT_MAX};

static void fill_act_input(float *x, size_t n) {
    const size_t ne = sizeof act_edges / sizeof *act_edges;
    for (size_t i = 0; i < n; i++) x[i] = i % 5 == 4 ? act_edges[(i / 5) % ne] : urand(-8.0f, 8.0f);
}

static void test_act_case(const qkv_kernels *k, int a, size_t n, int nonfinite) {
    float *x = fbuf(n), *y = fbuf(n), *want = fbuf(n);
    float *dy = fbuf(n), *dx = fbuf(n), *dxw = fbuf(n);
    double *tol = malloc((n ? n : 1) * sizeof(double));
    fill_act_input(x, n);
    if (nonfinite && n >= 3) x[0] = INFINITY, x[1] = -INFINITY, x[2] = NAN;
    CHECK_OK(qkv_nn_act_forward_ref(NULL, nn_acts[a], want, x, (int64_t)n));
    k->act_f32(acts[a], x, y, n);
    for (size_t i = 0; i < n; i++) tol[i] = act_tol(a, x[i], want[i]);
    char what[64];
    snprintf(what, sizeof what, "%s forward", act_names[a]);
    compare(what, n, y, want, tol, n);
    /* in place */
    memcpy(y, x, n * sizeof *x);
    k->act_f32(acts[a], y, y, n);
    snprintf(what, sizeof what, "%s forward in place", act_names[a]);
    compare(what, n, y, want, tol, n);
    /* backward: dx += dy·act'(x); the kernels give NaN at ±inf and NaN, as the reference */
    for (size_t i = 0; i < n; i++) dy[i] = urand(-1.0f, 1.0f), dx[i] = dxw[i] = urand(-1.0f, 1.0f);
    CHECK_OK(qkv_nn_act_backward_ref(NULL, nn_acts[a], dxw, dy, x, (int64_t)n));
    for (size_t i = 0; i < n; i++) {
        double mag = fabs((double)dy[i]) * act_grad_mag(a, x[i]);
        tol[i] = 2.5e-7 * fabs((double)dxw[i]) + act_rtol(a, x[i]) * mag + ACT_ATOL;
    }
    k->act_bwd_f32(acts[a], x, dy, dx, n);
    snprintf(what, sizeof what, "%s backward", act_names[a]);
    compare(what, n, dx, dxw, tol, n);
    free(x), free(y), free(want), free(dy), free(dx), free(dxw), free(tol);
}

static void test_acts(const qkv_kernels *k) {
    for (int a = 0; a < N_ACTS; a++) {
        for (size_t n = 1; n <= 70; n++) test_act_case(k, a, n, n % 7 == 3);
        test_act_case(k, a, 4096, 1);
        test_act_case(k, a, 50257, 0);
    }
    /* a dense sweep of the GELU/SiLU range, where the polynomials change regime */
    const size_t n = 40001;
    float *x = fbuf(n), *y = fbuf(n), *w = fbuf(n);
    double *tol = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) x[i] = (float)(-20.0 + 40.0 * (double)i / (double)(n - 1));
    for (int a = 0; a < N_ACTS; a++) {
        CHECK_OK(qkv_nn_act_forward_ref(NULL, nn_acts[a], w, x, (int64_t)n));
        k->act_f32(acts[a], x, y, n);
        double worst = 0.0;
        for (size_t i = 0; i < n; i++) {
            tol[i] = act_tol(a, x[i], w[i]);
            /* the vectorized kernels against tail-accurate double formulas (erfc, logistic);
             * the nn reference (and the ref kernels, its twins) lose the tail below x ≈ -8 */
            const double xd = x[i];
            double acc = w[i];
            if (acts[a] == QKV_ACT_GELU_ERF) acc = 0.5 * xd * erfc(-xd * 0.70710678118654752);
            if (acts[a] == QKV_ACT_GELU_TANH)
                acc = xd / (1.0 + exp(-1.5957691216057308 * (xd + 0.044715 * xd * xd * xd)));
            if (fabs(acc) >= FLT_MIN && qkv_arch_active() != QKV_ARCH_SCALAR) {
                double e = fabs((double)y[i] - acc) / fabs(acc);
                worst = fmax(worst, e);
                CHECK_MSG(e <= act_rtol(a, x[i]), "%s(%.9g) = %.9g, want %.9g", act_names[a], xd,
                          (double)y[i], acc);
            }
        }
        char what[64];
        snprintf(what, sizeof what, "%s sweep [-20, 20]", act_names[a]);
        compare(what, n, y, w, tol, n);
        if (qkv_arch_active() != QKV_ARCH_SCALAR)
            printf("%s: max relative error %.3g on [-20, 20] (results >= FLT_MIN)\n", act_names[a],
                   worst);
    }
    /* QKV_ACT_NONE copies / accumulates dy */
    float a4[5] = {1, -2, NAN, INFINITY, 5}, b4[5];
    k->act_f32(QKV_ACT_NONE, a4, b4, 5);
    CHECK(b4[0] == 1 && b4[1] == -2 && isnan(b4[2]) && b4[3] == INFINITY && b4[4] == 5);
    free(x), free(y), free(w), free(tol);
}

/* The GEMM epilogue row kernel == adding bias, act_f32, adding the residual, bit for bit, for
 * every activation (and none), with and without bias / residual, at every tail length, with
 * edge inputs (±0, tiny, huge, ±inf, NaN). */
static void test_epilogue_rows(const qkv_kernels *k) {
    static const qkv_act all[] = {QKV_ACT_NONE, QKV_ACT_GELU_ERF, QKV_ACT_GELU_TANH,
                                  QKV_ACT_RELU, QKV_ACT_SILU,     QKV_ACT_TANH};
    const size_t ns[] = {0, 1, 2, 15, 16, 17, 31, 32, 33, 47, 64, 100, 384, 1537};
    int bad = 0, cases = 0;
    for (size_t a = 0; a < sizeof all / sizeof *all; a++)
        for (size_t s = 0; s < sizeof ns / sizeof *ns; s++)
            for (int form = 0; form < 4; form++) {
                const size_t n = ns[s];
                float *y = fbuf(n), *want = fbuf(n), *bias = fbuf(n), *res = fbuf(n);
                fill_act_input(y, n);
                if (n >= 3 && s % 2) y[0] = INFINITY, y[1] = -INFINITY, y[2] = NAN;
                for (size_t i = 0; i < n; i++) bias[i] = urand(-2, 2), res[i] = urand(-4, 4);
                if (n >= 2) bias[n - 1] = -INFINITY, res[0] = NAN;
                const float *b = form & 1 ? bias : NULL, *r = form & 2 ? res : NULL;
                memcpy(want, y, n * sizeof *y);
                if (b)
                    for (size_t i = 0; i < n; i++) want[i] += b[i];
                k->act_f32(all[a], want, want, n);
                if (r)
                    for (size_t i = 0; i < n; i++) want[i] += r[i];
                k->epilogue_row_f32(y, b, all[a], r, n);
                if (n && memcmp(y, want, n * sizeof *y) != 0 && bad++ < 3)
                    fprintf(stderr, "epilogue_row act %d n %zu form %d: not the composition\n",
                            (int)all[a], n, form);
                cases++;
                free(y), free(want), free(bias), free(res);
            }
    CHECK_MSG(bad == 0, "epilogue_row_f32: %d of %d cases differ from bias + act + residual", bad,
              cases);
}

/* ---------------------------------------------------------------- softmax */

/* Row patterns: 0 random, 1 with -inf entries, 2 all -inf, 3 ±1e4, 4 ±1e30, 5 a +inf entry
 * (NaN row), 6 a NaN entry, 7 large spread (logits up to ±80). */
static void fill_logits(float *x, size_t n, int pattern) {
    for (size_t i = 0; i < n; i++) {
        float v = urand(-4.0f, 4.0f);
        switch (pattern) {
        case 1: v = i % 3 == 1 ? -INFINITY : v; break;
        case 2: v = -INFINITY; break;
        case 3: v = i % 2 ? 1e4f + v : -1e4f + v; break;
        case 4: v = i % 4 == 0 ? 1e30f : (i % 4 == 1 ? -1e30f : v); break;
        case 7: v *= 20.0f; break;
        default: break;
        }
        x[i] = v;
    }
    if (pattern == 5) x[n / 2] = INFINITY;
    if (pattern == 6) x[n / 2] = NAN;
}

static void test_softmax_case(const qkv_kernels *k, size_t rows, size_t n, int pattern) {
    const size_t t = rows * n;
    float *x = fbuf(t), *y = fbuf(t), *want = fbuf(t), *ly = fbuf(t), *lwant = fbuf(t);
    float *dy = fbuf(t), *dx = fbuf(t), *dxw = fbuf(t);
    double *tol = malloc(t * sizeof(double));
    for (size_t r = 0; r < rows; r++) fill_logits(x + r * n, n, (int)((pattern + r) % 8));
    CHECK_OK(qkv_nn_softmax_forward_ref(NULL, want, x, (int64_t)rows, (int64_t)n));
    CHECK_OK(qkv_nn_log_softmax_forward_ref(NULL, lwant, x, (int64_t)rows, (int64_t)n));
    k->softmax_f32(x, y, rows, n);
    k->log_softmax_f32(x, ly, rows, n);
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * n;
        float m = -INFINITY;
        for (size_t i = 0; i < n; i++) m = xr[i] > m ? xr[i] : m;
        double s = 0.0;
        for (size_t i = 0; i < n; i++) s += exp((double)xr[i] - m);
        for (size_t i = 0; i < n; i++) {
            double d = isfinite(m) ? fabs((double)xr[i] - m) : 0.0;
            if (!isfinite(d)) d = 0.0;
            tol[r * n + i] = 1e-6 * (1.0 + d / 4.0) * want[r * n + i] + 1e-37;
        }
    }
    compare("softmax forward", n, y, want, tol, t);
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * n;
        float m = -INFINITY;
        for (size_t i = 0; i < n; i++) m = xr[i] > m ? xr[i] : m;
        double s = 0.0;
        for (size_t i = 0; i < n; i++) s += exp((double)xr[i] - m);
        double ls = isfinite(s) && s > 0 ? log(s) : 0.0;
        for (size_t i = 0; i < n; i++) {
            double d = isfinite(m) ? fabs((double)xr[i] - m) : 0.0;
            if (!isfinite(d)) d = 0.0;
            tol[r * n + i] = 2.5e-7 * (d + ls) + 1e-6;
        }
    }
    compare("log_softmax forward", n, ly, lwant, tol, t);
    /* backward of both, from the reference outputs */
    for (size_t i = 0; i < t; i++) dy[i] = urand(-1.0f, 1.0f), dx[i] = dxw[i] = urand(-1.0f, 1.0f);
    CHECK_OK(qkv_nn_softmax_backward_ref(NULL, dxw, dy, want, (int64_t)rows, (int64_t)n));
    k->softmax_bwd_f32(want, dy, dx, rows, n);
    for (size_t r = 0; r < rows; r++) {
        double s = 0.0;
        for (size_t i = 0; i < n; i++) s += (double)dy[r * n + i] * want[r * n + i];
        for (size_t i = 0; i < n; i++) {
            size_t j = r * n + i;
            double mag = fabs((double)want[j]) * (fabs((double)dy[j]) + fabs(s));
            tol[j] = 4e-7 * fabs((double)dxw[j]) + 2e-6 * mag + 1e-37;
        }
    }
    compare("softmax backward", n, dx, dxw, tol, t);
    for (size_t i = 0; i < t; i++) dx[i] = dxw[i] = urand(-1.0f, 1.0f);
    CHECK_OK(qkv_nn_log_softmax_backward_ref(NULL, dxw, dy, lwant, (int64_t)rows, (int64_t)n));
    k->log_softmax_bwd_f32(lwant, dy, dx, rows, n);
    for (size_t r = 0; r < rows; r++) {
        double s = 0.0;
        for (size_t i = 0; i < n; i++) s += fabs((double)dy[r * n + i]);
        for (size_t i = 0; i < n; i++) {
            size_t j = r * n + i;
            tol[j] = 4e-7 * (fabs((double)dxw[j]) + fabs((double)dy[j])) +
                     2e-6 * exp((double)lwant[j]) * s + 1e-37;
        }
    }
    compare("log_softmax backward", n, dx, dxw, tol, t);
    free(x), free(y), free(want), free(ly), free(lwant), free(dy), free(dx), free(dxw), free(tol);
}

static void test_softmax(const qkv_kernels *k) {
    for (size_t n = 1; n <= 70; n++) test_softmax_case(k, 8, n, (int)n);
    test_softmax_case(k, 8, 4096, 0);
    test_softmax_case(k, 8, 50257, 3);
    /* the all -inf row, exactly */
    float x[19], y[19], dx[19], dy[19];
    for (int i = 0; i < 19; i++) x[i] = -INFINITY, dx[i] = 1.0f, dy[i] = 2.0f;
    k->softmax_f32(x, y, 1, 19);
    for (int i = 0; i < 19; i++) CHECK(y[i] == 0.0f);
    k->softmax_bwd_f32(y, dy, dx, 1, 19);
    for (int i = 0; i < 19; i++) CHECK(dx[i] == 1.0f);
    k->log_softmax_f32(x, y, 1, 19);
    for (int i = 0; i < 19; i++) CHECK(y[i] == -INFINITY);
    k->log_softmax_bwd_f32(y, dy, dx, 1, 19);
    for (int i = 0; i < 19; i++) CHECK(dx[i] == 1.0f);
    /* ties at ±1e30 split evenly */
    float h[3] = {1e30f, 1e30f, -1e30f}, hy[3];
    k->softmax_f32(h, hy, 1, 3);
    CHECK(hy[0] == 0.5f && hy[1] == 0.5f && hy[2] == 0.0f);
}

/* ---------------------------------------------------------------- LayerNorm, RMSNorm */

static void test_norm_case(const qkv_kernels *k, size_t rows, size_t n, int rms, int with_wb,
                           float offset, float scale) {
    const size_t t = rows * n;
    float *x = fbuf(t), *y = fbuf(t), *want = fbuf(t), *w = fbuf(n), *b = fbuf(n);
    float *mean = fbuf(rows), *rstd = fbuf(rows), *wmean = fbuf(rows), *wrstd = fbuf(rows);
    float *dy = fbuf(t), *dx = fbuf(t), *dxw = fbuf(t);
    float *dw = fbuf(n), *dww = fbuf(n), *db = fbuf(n), *dbw = fbuf(n);
    double *tol = malloc((t > n ? t : n) * sizeof(double));
    for (size_t i = 0; i < t; i++) x[i] = offset + scale * urand(-1.0f, 1.0f);
    for (size_t i = 0; i < n; i++) w[i] = urand(0.5f, 1.5f), b[i] = urand(-1.0f, 1.0f);
    const float *wp = with_wb ? w : NULL, *bp = with_wb && !rms ? b : NULL;
    const float eps = 1e-5f;
    const char *name = rms ? "rmsnorm" : "layernorm";
    char what[64];
    if (rms) {
        CHECK_OK(
            qkv_nn_rmsnorm_forward_ref(NULL, want, wrstd, x, wp, (int64_t)rows, (int64_t)n, eps));
        k->rmsnorm_f32(x, wp, y, rstd, rows, n, eps);
    } else {
        CHECK_OK(qkv_nn_layernorm_forward_ref(NULL, want, wmean, wrstd, x, wp, bp, (int64_t)rows,
                                              (int64_t)n, eps));
        k->layernorm_f32(x, wp, bp, y, mean, rstd, rows, n, eps);
    }
    for (size_t i = 0; i < t; i++) {
        double wb = bp ? fabs((double)bp[i % n]) : 0.0;
        tol[i] = 2e-6 * (fabs((double)want[i]) + 2.0 * wb) + 1e-6;
    }
    snprintf(what, sizeof what, "%s forward", name);
    compare(what, n, y, want, tol, t);
    for (size_t r = 0; r < rows; r++) tol[r] = 1e-6 * fabs((double)wrstd[r]);
    snprintf(what, sizeof what, "%s rstd", name);
    compare(what, n, rstd, wrstd, tol, rows);
    if (!rms) {
        for (size_t r = 0; r < rows; r++) tol[r] = 3e-7 * (fabs((double)wmean[r]) + scale);
        compare("layernorm mean", n, mean, wmean, tol, rows);
    }
    /* backward from the reference's saved statistics */
    for (size_t i = 0; i < t; i++) dy[i] = urand(-1.0f, 1.0f), dx[i] = dxw[i] = urand(-1.0f, 1.0f);
    for (size_t i = 0; i < n; i++) dw[i] = dww[i] = urand(-1.0f, 1.0f), db[i] = dbw[i] = 0.25f;
    if (rms) {
        CHECK_OK(qkv_nn_rmsnorm_backward_ref(NULL, dxw, with_wb ? dww : NULL, dy, x, wp, wrstd,
                                             (int64_t)rows, (int64_t)n));
        k->rmsnorm_bwd_f32(dy, x, wp, wrstd, dx, with_wb ? dw : NULL, rows, n);
    } else {
        CHECK_OK(qkv_nn_layernorm_backward_ref(NULL, dxw, with_wb ? dww : NULL,
                                               with_wb ? dbw : NULL, dy, x, wp, wmean, wrstd,
                                               (int64_t)rows, (int64_t)n));
        k->layernorm_bwd_f32(dy, x, wp, wmean, wrstd, dx, with_wb ? dw : NULL, with_wb ? db : NULL,
                             rows, n);
    }
    for (size_t r = 0; r < rows; r++) {
        const double m = rms ? 0.0 : wmean[r], rs = wrstd[r];
        double a1 = 0.0, a2 = 0.0; /* Σ|dx̂|/n, Σ|dx̂ x̂|/n */
        for (size_t i = 0; i < n; i++) {
            double xh = ((double)x[r * n + i] - m) * rs;
            double dxh = dy[r * n + i] * (wp ? wp[i] : 1.0f);
            a1 += fabs(dxh), a2 += fabs(dxh * xh);
        }
        a1 /= (double)n, a2 /= (double)n;
        for (size_t i = 0; i < n; i++) {
            double xh = ((double)x[r * n + i] - m) * rs;
            double dxh = dy[r * n + i] * (wp ? wp[i] : 1.0f);
            double mag = rs * (fabs(dxh) + a1 + fabs(xh) * a2);
            tol[r * n + i] = 4e-7 * fabs((double)dxw[r * n + i]) + 4e-6 * mag + 1e-30;
        }
    }
    snprintf(what, sizeof what, "%s backward dx", name);
    compare(what, n, dx, dxw, tol, t);
    if (with_wb) {
        for (size_t i = 0; i < n; i++) {
            double a = 0.0;
            for (size_t r = 0; r < rows; r++) {
                double m = rms ? 0.0 : wmean[r];
                a += fabs(dy[r * n + i] * ((double)x[r * n + i] - m) * wrstd[r]);
            }
            tol[i] = 4e-7 * fabs((double)dww[i]) + 4e-6 * a + 1e-30;
        }
        snprintf(what, sizeof what, "%s backward dw", name);
        compare(what, n, dw, dww, tol, n);
        if (!rms) {
            for (size_t i = 0; i < n; i++) tol[i] = 4e-6 * ((double)rows + 1.0);
            compare("layernorm backward db", n, db, dbw, tol, n);
        }
    }
    free(x), free(y), free(want), free(w), free(b), free(mean), free(rstd), free(wmean);
    free(wrstd), free(dy), free(dx), free(dxw), free(dw), free(dww), free(db), free(dbw), free(tol);
}

static void test_norms(const qkv_kernels *k) {
    for (int rms = 0; rms <= 1; rms++) {
        for (size_t n = 1; n <= 70; n++)
            test_norm_case(k, 5, n, rms, (int)(n % 3 != 0), 0.0f, 1.0f);
        test_norm_case(k, 4, 768, rms, 1, 0.0f, 1.0f);
        test_norm_case(k, 3, 4096, rms, 1, 0.5f, 3.0f);
        test_norm_case(k, 2, 50257, rms, 1, 0.0f, 1.0f);
        test_norm_case(k, 3, 777, rms, 1, 1e4f, 1.0f);  /* large common offset */
        test_norm_case(k, 3, 99, rms, 1, -1e4f, 1e4f);  /* ±1e4 */
        test_norm_case(k, 3, 99, rms, 0, 0.0f, 1e15f);  /* large magnitudes */
        test_norm_case(k, 3, 99, rms, 1, 0.0f, 1e-20f); /* tiny: eps dominates */
    }
    /* NaN in a row makes that row NaN (and only that row) */
    float x[2 * 20], y[2 * 20];
    for (int i = 0; i < 40; i++) x[i] = urand(-1.0f, 1.0f);
    x[5] = NAN;
    k->layernorm_f32(x, NULL, NULL, y, NULL, NULL, 2, 20, 1e-5f);
    CHECK(isnan(y[0]) && isnan(y[19]) && isfinite(y[20]) && isfinite(y[39]));
    k->rmsnorm_f32(x, NULL, y, NULL, 2, 20, 1e-5f);
    CHECK(isnan(y[0]) && isnan(y[19]) && isfinite(y[20]) && isfinite(y[39]));
}

/* ---------------------------------------------------------------- finite differences */

/* L(x) = Σ g·f(x) through the forward kernel; dL/dx_j by central differences (in float
 * inputs, double sums) against the backward kernel, at a few j. */
enum {
    FD_SOFTMAX,
    FD_LOGSOFTMAX,
    FD_LAYERNORM,
    FD_RMSNORM,
    FD_GELU,
    FD_GELU_TANH,
    FD_SILU,
    FD_TANH
};

static double fd_loss(const qkv_kernels *k, int op, const float *x, const float *g, const float *w,
                      const float *b, float *tmp, size_t n) {
    switch (op) {
    case FD_SOFTMAX: k->softmax_f32(x, tmp, 1, n); break;
    case FD_LOGSOFTMAX: k->log_softmax_f32(x, tmp, 1, n); break;
    case FD_LAYERNORM: k->layernorm_f32(x, w, b, tmp, NULL, NULL, 1, n, 1e-5f); break;
    case FD_RMSNORM: k->rmsnorm_f32(x, w, tmp, NULL, 1, n, 1e-5f); break;
    case FD_GELU: k->act_f32(QKV_ACT_GELU_ERF, x, tmp, n); break;
    case FD_GELU_TANH: k->act_f32(QKV_ACT_GELU_TANH, x, tmp, n); break;
    case FD_SILU: k->act_f32(QKV_ACT_SILU, x, tmp, n); break;
    case FD_TANH: k->act_f32(QKV_ACT_TANH, x, tmp, n); break;
    }
    double l = 0.0;
    for (size_t i = 0; i < n; i++) l += (double)g[i] * tmp[i];
    return l;
}

static void test_finite_differences(const qkv_kernels *k) {
    enum { N = 37 };
    static const char *names[] = {"softmax",  "log_softmax", "layernorm", "rmsnorm",
                                  "gelu_erf", "gelu_tanh",   "silu",      "tanh"};
    for (int op = FD_SOFTMAX; op <= FD_TANH; op++) {
        float x[N], g[N], w[N], b[N], y[N], tmp[N], dx[N], mean[1], rstd[1];
        for (int i = 0; i < N; i++) {
            x[i] = urand(-2.0f, 2.0f), g[i] = urand(-1.0f, 1.0f);
            w[i] = urand(0.5f, 1.5f), b[i] = urand(-1.0f, 1.0f), dx[i] = 0.0f;
        }
        switch (op) {
        case FD_SOFTMAX:
            k->softmax_f32(x, y, 1, N);
            k->softmax_bwd_f32(y, g, dx, 1, N);
            break;
        case FD_LOGSOFTMAX:
            k->log_softmax_f32(x, y, 1, N);
            k->log_softmax_bwd_f32(y, g, dx, 1, N);
            break;
        case FD_LAYERNORM:
            k->layernorm_f32(x, w, b, y, mean, rstd, 1, N, 1e-5f);
            k->layernorm_bwd_f32(g, x, w, mean, rstd, dx, NULL, NULL, 1, N);
            break;
        case FD_RMSNORM:
            k->rmsnorm_f32(x, w, y, rstd, 1, N, 1e-5f);
            k->rmsnorm_bwd_f32(g, x, w, rstd, dx, NULL, 1, N);
            break;
        default: {
            qkv_act a = op == FD_GELU        ? QKV_ACT_GELU_ERF
                        : op == FD_GELU_TANH ? QKV_ACT_GELU_TANH
                        : op == FD_SILU      ? QKV_ACT_SILU
                                             : QKV_ACT_TANH;
            k->act_bwd_f32(a, x, g, dx, N);
        }
        }
        double worst = 0.0;
        for (int j = 0; j < N; j += 6) {
            const float h = 1e-2f;
            float xp[N], xm[N];
            memcpy(xp, x, sizeof x), memcpy(xm, x, sizeof x);
            xp[j] += h, xm[j] -= h;
            double num =
                (fd_loss(k, op, xp, g, w, b, tmp, N) - fd_loss(k, op, xm, g, w, b, tmp, N)) /
                ((double)xp[j] - (double)xm[j]);
            double e = fabs(num - dx[j]) / (1e-2 + fabs(num));
            if (e > worst) worst = e;
        }
        CHECK_MSG(worst < 2e-3, "%s: finite differences disagree (%.3g)", names[op], worst);
    }
}

int main(void) {
    test_use_arch_from_env();
    const qkv_kernels *k = qkv__kernels();
    test_print_kernel_isa("softmax_f32");
    test_exp(k);
    test_acts(k);
    test_epilogue_rows(k);
    test_softmax(k);
    test_norms(k);
    test_finite_differences(k);
    return test_finish("kernels_rows");
}
