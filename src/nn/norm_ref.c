/* norm_ref.c — (the double-precision reference; the fast layers are in nn.h) LayerNorm and RMSNorm
 * over the last axis, forward and backward.
 *
 * Statistics are computed in double (two passes for the variance: mean first, then the mean of
 * squared deviations, which stays exact for rows with a large common offset). The forward saves
 * mean/rstd (LayerNorm) or rrms (RMSNorm) per row; the backward recomputes x̂ from inp and
 * those, so no normalized copy of the input is kept.
 *
 * Threading: dinp splits over rows; dweight/dbias split over channels (each channel summed
 * over all rows by one thread), so results do not depend on the thread count. */
#include "nn/nn_internal.h"
#include "nn/nn_ref.h"

#include <math.h>

typedef struct {
    float *out, *mean, *rstd;      /* (N, C), (N), (N); rstd is rrms for RMSNorm */
    float *dinp, *dweight, *dbias; /* (N, C), (C), (C) */
    const float *inp, *weight, *bias, *dout;
    const float *smean, *srstd; /* saved statistics read by the backward */
    int64_t N, C;
    double eps;
    int rms;
} norm_ctx;

static void norm_forward_rows(void *p, int64_t n0, int64_t n1, int tid) {
    const norm_ctx *c = p;
    (void)tid;
    const int64_t C = c->C;
    for (int64_t n = n0; n < n1; n++) {
        const float *x = c->inp + n * C; /* (C) */
        float *y = c->out + n * C;       /* (C) */
        double m = 0.0, v = 0.0;
        if (c->rms) {
            for (int64_t i = 0; i < C; i++) v += (double)x[i] * (double)x[i];
        } else {
            for (int64_t i = 0; i < C; i++) m += x[i];
            m /= (double)C;
            for (int64_t i = 0; i < C; i++) v += ((double)x[i] - m) * ((double)x[i] - m);
        }
        v /= (double)C;
        const double r = 1.0 / sqrt(v + c->eps);
        for (int64_t i = 0; i < C; i++) {
            double yi = ((double)x[i] - m) * r;
            if (c->weight) yi *= c->weight[i];
            if (c->bias) yi += c->bias[i];
            y[i] = (float)yi;
        }
        if (c->mean) c->mean[n] = (float)m;
        if (c->rstd) c->rstd[n] = (float)r;
    }
}

/* LayerNorm: dx = rstd (dx̂ - mean(dx̂) - x̂ mean(dx̂ x̂)), dx̂ = dout · weight.
 * RMSNorm:   dx = rrms (dx̂ - x̂ mean(dx̂ x̂)) (no mean was subtracted). */
static void norm_dinp_rows(void *p, int64_t n0, int64_t n1, int tid) {
    const norm_ctx *c = p;
    (void)tid;
    const int64_t C = c->C;
    for (int64_t n = n0; n < n1; n++) {
        const float *x = c->inp + n * C;   /* (C) */
        const float *dy = c->dout + n * C; /* (C) */
        float *dx = c->dinp + n * C;       /* (C) */
        const double m = c->rms ? 0.0 : (double)c->smean[n], r = c->srstd[n];
        double s1 = 0.0, s2 = 0.0; /* Σ dx̂, Σ dx̂ x̂ */
        for (int64_t i = 0; i < C; i++) {
            double xh = ((double)x[i] - m) * r;
            double dxh = c->weight ? (double)dy[i] * c->weight[i] : (double)dy[i];
            s1 += dxh;
            s2 += dxh * xh;
        }
        s1 /= (double)C;
        s2 /= (double)C;
        if (c->rms) s1 = 0.0;
        for (int64_t i = 0; i < C; i++) {
            double xh = ((double)x[i] - m) * r;
            double dxh = c->weight ? (double)dy[i] * c->weight[i] : (double)dy[i];
            dx[i] = (float)((double)dx[i] + r * (dxh - s1 - xh * s2));
        }
    }
}

/* dweight[i] += Σ_n dout[n, i] x̂[n, i]; dbias[i] += Σ_n dout[n, i]; channels in blocks. */
static void norm_dweight_cols(void *p, int64_t b0, int64_t b1, int tid) {
    const norm_ctx *c = p;
    (void)tid;
    const int64_t N = c->N, C = c->C;
    double aw[NN_CBLOCK], ab[NN_CBLOCK];
    for (int64_t blk = b0; blk < b1; blk++) {
        const int64_t i0 = blk * NN_CBLOCK;
        const int64_t ni = C - i0 < NN_CBLOCK ? C - i0 : NN_CBLOCK;
        for (int64_t i = 0; i < ni; i++) aw[i] = ab[i] = 0.0;
        for (int64_t n = 0; n < N; n++) {
            const float *x = c->inp + n * C + i0;
            const float *dy = c->dout + n * C + i0;
            const double m = c->rms ? 0.0 : (double)c->smean[n], r = c->srstd[n];
            for (int64_t i = 0; i < ni; i++) {
                aw[i] += (double)dy[i] * (((double)x[i] - m) * r);
                ab[i] += dy[i];
            }
        }
        for (int64_t i = 0; i < ni; i++) {
            if (c->dweight) c->dweight[i0 + i] = (float)((double)c->dweight[i0 + i] + aw[i]);
            if (c->dbias) c->dbias[i0 + i] = (float)((double)c->dbias[i0 + i] + ab[i]);
        }
    }
}

static qkv_status norm_check_sizes(const char *fn, int64_t N, int64_t C) {
    int64_t nc;
    NN_POSITIVE(fn, N);
    NN_POSITIVE(fn, C);
    NN_NUMEL2(fn, "N*C", N, C, nc);
    (void)nc;
    return QKV_OK;
}

static void norm_backward(qkv_runtime *rt, norm_ctx *c) {
    if (c->dinp) qkv_parallel_for(rt, c->N, nn_grain(4 * c->C), norm_dinp_rows, c);
    if (c->dweight || c->dbias) {
        int64_t nblk = (c->C + NN_CBLOCK - 1) / NN_CBLOCK;
        qkv_parallel_for(rt, nblk, nn_grain(c->N * NN_CBLOCK), norm_dweight_cols, c);
    }
}

qkv_status qkv_nn_layernorm_forward_ref(qkv_runtime *rt, float *out, float *mean, float *rstd,
                                        const float *inp, const float *weight, const float *bias,
                                        int64_t N, int64_t C, float eps) {
    static const char fn[] = "qkv_nn_layernorm_forward_ref";
    NN_NONNULL(fn, out);
    NN_NONNULL(fn, inp);
    QKV_TRY(norm_check_sizes(fn, N, C));
    NN_REQUIRE(eps >= 0.0f && isfinite(eps), "%s: eps must be finite and >= 0 (got %g)", fn,
               (double)eps);
    norm_ctx c = {.out = out,
                  .mean = mean,
                  .rstd = rstd,
                  .inp = inp,
                  .weight = weight,
                  .bias = bias,
                  .N = N,
                  .C = C,
                  .eps = eps,
                  .rms = 0};
    qkv_parallel_for(rt, N, nn_grain(4 * C), norm_forward_rows, &c);
    return QKV_OK;
}

qkv_status qkv_nn_layernorm_backward_ref(qkv_runtime *rt, float *dinp, float *dweight, float *dbias,
                                         const float *dout, const float *inp, const float *weight,
                                         const float *mean, const float *rstd, int64_t N,
                                         int64_t C) {
    static const char fn[] = "qkv_nn_layernorm_backward_ref";
    NN_NONNULL(fn, dout);
    NN_NONNULL(fn, inp);
    NN_NONNULL(fn, mean);
    NN_NONNULL(fn, rstd);
    QKV_TRY(norm_check_sizes(fn, N, C));
    norm_ctx c = {.dinp = dinp,
                  .dweight = dweight,
                  .dbias = dbias,
                  .dout = dout,
                  .inp = inp,
                  .weight = weight,
                  .smean = mean,
                  .srstd = rstd,
                  .N = N,
                  .C = C,
                  .rms = 0};
    norm_backward(rt, &c);
    return QKV_OK;
}

qkv_status qkv_nn_rmsnorm_forward_ref(qkv_runtime *rt, float *out, float *rrms, const float *inp,
                                      const float *weight, int64_t N, int64_t C, float eps) {
    static const char fn[] = "qkv_nn_rmsnorm_forward_ref";
    NN_NONNULL(fn, out);
    NN_NONNULL(fn, inp);
    QKV_TRY(norm_check_sizes(fn, N, C));
    NN_REQUIRE(eps >= 0.0f && isfinite(eps), "%s: eps must be finite and >= 0 (got %g)", fn,
               (double)eps);
    norm_ctx c = {.out = out,
                  .rstd = rrms,
                  .inp = inp,
                  .weight = weight,
                  .N = N,
                  .C = C,
                  .eps = eps,
                  .rms = 1};
    qkv_parallel_for(rt, N, nn_grain(3 * C), norm_forward_rows, &c);
    return QKV_OK;
}

qkv_status qkv_nn_rmsnorm_backward_ref(qkv_runtime *rt, float *dinp, float *dweight,
                                       const float *dout, const float *inp, const float *weight,
                                       const float *rrms, int64_t N, int64_t C) {
    static const char fn[] = "qkv_nn_rmsnorm_backward_ref";
    NN_NONNULL(fn, dout);
    NN_NONNULL(fn, inp);
    NN_NONNULL(fn, rrms);
    QKV_TRY(norm_check_sizes(fn, N, C));
    norm_ctx c = {.dinp = dinp,
                  .dweight = dweight,
                  .dout = dout,
                  .inp = inp,
                  .weight = weight,
                  .srstd = rrms,
                  .N = N,
                  .C = C,
                  .rms = 1};
    norm_backward(rt, &c);
    return QKV_OK;
}
