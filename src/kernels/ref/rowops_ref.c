/* rowops_ref.c — the reference row kernels: exp, activations, softmax, log-softmax, LayerNorm,
 * RMSNorm, forward and backward (contracts in kernels/dispatch.h and docs/KERNELS.md, "Row
 * kernels").
 *
 * Plain loops in double, the same math as the reference layers of src/nn (pointwise.c,
 * softmax.c, norm.c): each value is computed in double and rounded once, sums are in double,
 * LayerNorm's variance takes two passes. They are the scalar ISA's kernels and the oracle the
 * vectorized ones are tested against (next to the nn layers themselves). */
#include "kernels/ref/kernels_ref.h"
#include "kernels/topk.h"

#include <math.h>
#include <string.h>

#define SQRT_HALF 0.70710678118654752440      /* 1/√2 */
#define INV_SQRT_2PI 0.39894228040143267794   /* 1/√(2π) */
#define SQRT_2_OVER_PI 0.79788456080286535588 /* √(2/π) */
#define GELU_TANH_K 0.044715

/* σ(x) without overflow for either sign. */
static double sigmoid(double x) {
    if (x >= 0) return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

static double act_value(qkv_act act, double x) {
    switch (act) {
    case QKV_ACT_NONE: return x;
    case QKV_ACT_GELU_ERF: return 0.5 * x * (1.0 + erf(x * SQRT_HALF));
    case QKV_ACT_GELU_TANH:
        return 0.5 * x * (1.0 + tanh(SQRT_2_OVER_PI * (x + GELU_TANH_K * x * x * x)));
    case QKV_ACT_RELU: return x > 0 ? x : 0.0;
    case QKV_ACT_SILU: return x * sigmoid(x);
    case QKV_ACT_TANH: return tanh(x);
    }
    return x;
}

static double act_grad(qkv_act act, double x) {
    switch (act) {
    case QKV_ACT_NONE: return 1.0;
    case QKV_ACT_GELU_ERF:
        return 0.5 * (1.0 + erf(x * SQRT_HALF)) + x * INV_SQRT_2PI * exp(-0.5 * x * x);
    case QKV_ACT_GELU_TANH: {
        double t = tanh(SQRT_2_OVER_PI * (x + GELU_TANH_K * x * x * x));
        double du = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_TANH_K * x * x);
        return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du;
    }
    case QKV_ACT_RELU: return x > 0 ? 1.0 : 0.0;
    case QKV_ACT_SILU: {
        double s = sigmoid(x);
        return s * (1.0 + x * (1.0 - s));
    }
    case QKV_ACT_TANH: {
        double t = tanh(x);
        return 1.0 - t * t;
    }
    }
    return 1.0;
}

void qkv__exp_f32_ref(const float *x, float *y, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = (float)exp((double)x[i]);
}

void qkv__act_f32_ref(qkv_act act, const float *x, float *y, size_t n) {
    if (act == QKV_ACT_NONE) {
        if (y != x) memmove(y, x, n * sizeof *x);
        return;
    }
    for (size_t i = 0; i < n; i++) y[i] = (float)act_value(act, x[i]);
}

void qkv__epilogue_row_f32_ref(float *y, const float *bias, qkv_act act, const float *res,
                               size_t n) {
    if (bias)
        for (size_t i = 0; i < n; i++) y[i] += bias[i];
    qkv__act_f32_ref(act, y, y, n);
    if (res)
        for (size_t i = 0; i < n; i++) y[i] += res[i];
}

void qkv__act_bwd_f32_ref(qkv_act act, const float *x, const float *dy, float *dx, size_t n) {
    for (size_t i = 0; i < n; i++)
        dx[i] = (float)((double)dx[i] + (double)dy[i] * act_grad(act, x[i]));
}

static void softmax_rows(const float *x, float *y, size_t rows, size_t n, int is_log) {
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * n; /* (n) */
        float *yr = y + r * n;       /* (n) */
        float m = -INFINITY;
        for (size_t i = 0; i < n; i++) m = xr[i] > m ? xr[i] : m;
        if (m == -INFINITY) { /* all -inf: a fully masked row (NaN rows fall through to NaN) */
            int all = 1;
            for (size_t i = 0; i < n; i++) all &= xr[i] == -INFINITY;
            if (all) {
                for (size_t i = 0; i < n; i++) yr[i] = is_log ? -INFINITY : 0.0f;
                continue;
            }
        }
        double s = 0.0;
        for (size_t i = 0; i < n; i++) s += exp((double)xr[i] - (double)m);
        if (is_log) {
            const double ls = log(s);
            for (size_t i = 0; i < n; i++) yr[i] = (float)(((double)xr[i] - (double)m) - ls);
        } else {
            for (size_t i = 0; i < n; i++) yr[i] = (float)(exp((double)xr[i] - (double)m) / s);
        }
    }
}

void qkv__softmax_f32_ref(const float *x, float *y, size_t rows, size_t n) {
    softmax_rows(x, y, rows, n, 0);
}
void qkv__log_softmax_f32_ref(const float *x, float *y, size_t rows, size_t n) {
    softmax_rows(x, y, rows, n, 1);
}

void qkv__softmax_bwd_f32_ref(const float *y, const float *dy, float *dx, size_t rows, size_t n) {
    for (size_t r = 0; r < rows; r++) {
        const float *yr = y + r * n, *dyr = dy + r * n; /* (n) */
        float *dxr = dx + r * n;                        /* (n) */
        double s = 0.0;
        for (size_t i = 0; i < n; i++) s += (double)dyr[i] * (double)yr[i];
        for (size_t i = 0; i < n; i++)
            dxr[i] = (float)((double)dxr[i] + (double)yr[i] * ((double)dyr[i] - s));
    }
}

void qkv__log_softmax_bwd_f32_ref(const float *y, const float *dy, float *dx, size_t rows,
                                  size_t n) {
    for (size_t r = 0; r < rows; r++) {
        const float *yr = y + r * n, *dyr = dy + r * n; /* (n) */
        float *dxr = dx + r * n;                        /* (n) */
        int masked = 1;
        for (size_t i = 0; i < n && masked; i++) masked = yr[i] == -INFINITY;
        if (masked) continue;
        double s = 0.0;
        for (size_t i = 0; i < n; i++) s += dyr[i];
        for (size_t i = 0; i < n; i++)
            dxr[i] = (float)((double)dxr[i] + (double)dyr[i] - exp((double)yr[i]) * s);
    }
}

/* One row of LayerNorm (rms = 0) or RMSNorm (rms = 1): y = (x − m)·r·w + b. */
static void norm_row(const float *x, const float *w, const float *b, float *y, size_t n, double eps,
                     int rms, float *mean, float *rstd) {
    double m = 0.0, v = 0.0;
    if (rms) {
        for (size_t i = 0; i < n; i++) v += (double)x[i] * (double)x[i];
    } else {
        for (size_t i = 0; i < n; i++) m += x[i];
        m /= (double)n;
        for (size_t i = 0; i < n; i++) v += ((double)x[i] - m) * ((double)x[i] - m);
    }
    const double r = 1.0 / sqrt(v / (double)n + eps);
    for (size_t i = 0; i < n; i++) {
        double yi = ((double)x[i] - m) * r;
        if (w) yi *= w[i];
        if (b) yi += b[i];
        y[i] = (float)yi;
    }
    if (mean) *mean = (float)m;
    if (rstd) *rstd = (float)r;
}

void qkv__layernorm_f32_ref(const float *x, const float *w, const float *b, float *y, float *mean,
                            float *rstd, size_t rows, size_t n, float eps) {
    for (size_t r = 0; r < rows; r++)
        norm_row(x + r * n, w, b, y + r * n, n, eps, 0, mean ? mean + r : NULL,
                 rstd ? rstd + r : NULL);
}

void qkv__rmsnorm_f32_ref(const float *x, const float *w, float *y, float *rrms, size_t rows,
                          size_t n, float eps) {
    for (size_t r = 0; r < rows; r++)
        norm_row(x + r * n, w, NULL, y + r * n, n, eps, 1, NULL, rrms ? rrms + r : NULL);
}

/* dx += r·(dx̂ − mean(dx̂) − x̂·mean(dx̂ x̂)) (LayerNorm; RMSNorm drops mean(dx̂)),
 * dw += dy·x̂, db += dy. */
static void norm_bwd_row(const float *dy, const float *x, const float *w, double m, double r,
                         float *dx, float *dw, float *db, size_t n, int rms) {
    double s1 = 0.0, s2 = 0.0;
    for (size_t i = 0; i < n; i++) {
        double xh = ((double)x[i] - m) * r;
        double dxh = w ? (double)dy[i] * w[i] : (double)dy[i];
        s1 += dxh;
        s2 += dxh * xh;
        if (dw) dw[i] = (float)((double)dw[i] + (double)dy[i] * xh);
        if (db) db[i] = (float)((double)db[i] + (double)dy[i]);
    }
    s1 = rms ? 0.0 : s1 / (double)n;
    s2 /= (double)n;
    if (!dx) return;
    for (size_t i = 0; i < n; i++) {
        double xh = ((double)x[i] - m) * r;
        double dxh = w ? (double)dy[i] * w[i] : (double)dy[i];
        dx[i] = (float)((double)dx[i] + r * (dxh - s1 - xh * s2));
    }
}

void qkv__layernorm_bwd_f32_ref(const float *dy, const float *x, const float *w, const float *mean,
                                const float *rstd, float *dx, float *dw, float *db, size_t rows,
                                size_t n) {
    for (size_t r = 0; r < rows; r++)
        norm_bwd_row(dy + r * n, x + r * n, w, mean[r], rstd[r], dx ? dx + r * n : NULL, dw, db, n,
                     0);
}

void qkv__rmsnorm_bwd_f32_ref(const float *dy, const float *x, const float *w, const float *rrms,
                              float *dx, float *dw, size_t rows, size_t n) {
    for (size_t r = 0; r < rows; r++)
        norm_bwd_row(dy + r * n, x + r * n, w, 0.0, rrms[r], dx ? dx + r * n : NULL, dw, NULL, n,
                     1);
}

/* ---------------------------------------------------------------- decoding */

void qkv__attn_decode_f32_ref(size_t H, size_t D, size_t n, const float *q, const float *k,
                              size_t ldk, const float *v, size_t ldv, const int64_t *rows,
                              float scale, float *out, float *scratch) {
    for (size_t h = 0; h < H; h++) {
        const float *qh = q + h * D; /* (D) */
        double m = -INFINITY, l = 0.0;
        for (size_t j = 0; j < n; j++) { /* the scores, in double, rounded once into scratch */
            double s = 0.0;
            for (size_t d = 0; d < D; d++)
                s += (double)qh[d] * (double)k[(rows ? (size_t)rows[j] : j) * ldk + h * D + d];
            scratch[j] = (float)(s * scale);
            m = scratch[j] > m ? scratch[j] : m;
        }
        for (size_t j = 0; j < n; j++) {
            const double p = exp((double)scratch[j] - m);
            l += p;
            scratch[j] = (float)p;
        }
        for (size_t d = 0; d < D; d++) {
            double o = 0.0;
            for (size_t j = 0; j < n; j++)
                o += (double)scratch[j] * (double)v[(rows ? (size_t)rows[j] : j) * ldv + h * D + d];
            out[h * D + d] = (float)(o / l);
        }
    }
}

void qkv__log_softmax_stats_f32_ref(const float *x, size_t n, float *m, double *ls) {
    float mx = -INFINITY; /* as softmax_rows above */
    for (size_t i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += exp((double)x[i] - (double)mx);
    *m = mx;
    *ls = log(s);
}

void qkv__log_softmax_topk_f32_ref(const float *x, size_t n, float m, double ls, float add,
                                   size_t k, float *val, int64_t *idx) {
    size_t have = 0;
    for (size_t i = 0; i < n; i++) {
        float y = (float)(((double)x[i] - (double)m) - ls); /* log_softmax_f32's value */
        y += add;
        qkv__topk_offer(y, (int64_t)i, k, &have, val, idx);
    }
}
