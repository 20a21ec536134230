/* norm.c — LayerNorm and RMSNorm on the row kernels of the active ISA (kernels/dispatch.h).
 *
 * Rows are split over threads (each row is one kernel call's work, so the split does not
 * change results). The weight gradients sum over rows: each thread computes the partial sums of
 * fixed blocks of NORM_RB rows into a scratch buffer, then columns are reduced over the blocks
 * in order — the same sums for every thread count. */
#include "core/alloc.h"
#include "kernels/dispatch.h"
#include "nn/nn.h"
#include "nn/nn_internal.h"

#include <math.h>
#include <string.h>

#define NORM_RB 32 /* rows per weight-gradient partial (fixed: results never depend on threads) */

typedef struct {
    const float *x, *w, *b, *dy, *mean, *rstd;
    float *y, *dx, *smean, *srstd, *part;
    int64_t N, C;
    int nparts; /* 2: LayerNorm (dw, db), 1: RMSNorm (dw) */
    int rms;
    int set; /* backward: dx = (each block zeroed before its kernel adds) */
    float eps;
} norm_ctx;

static void fwd_rows(void *p, int64_t r0, int64_t r1, int tid) {
    const norm_ctx *c = p;
    (void)tid;
    const qkv_kernels *k = qkv__kernels();
    if (c->rms)
        k->rmsnorm_f32(c->x + r0 * c->C, c->w, c->y + r0 * c->C, c->srstd ? c->srstd + r0 : NULL,
                       (size_t)(r1 - r0), (size_t)c->C, c->eps);
    else
        k->layernorm_f32(c->x + r0 * c->C, c->w, c->b, c->y + r0 * c->C,
                         c->smean ? c->smean + r0 : NULL, c->srstd ? c->srstd + r0 : NULL,
                         (size_t)(r1 - r0), (size_t)c->C, c->eps);
}

/* Block i of NORM_RB rows: dx rows += ...; part[i] = the block's (dw[, db]). */
static void bwd_blocks(void *p, int64_t i0, int64_t i1, int tid) {
    const norm_ctx *c = p;
    (void)tid;
    const qkv_kernels *k = qkv__kernels();
    for (int64_t i = i0; i < i1; i++) {
        int64_t r0 = i * NORM_RB, r1 = r0 + NORM_RB < c->N ? r0 + NORM_RB : c->N;
        float *dw = c->part ? c->part + i * c->nparts * c->C : NULL;
        float *db = dw && c->nparts == 2 ? dw + c->C : NULL;
        if (dw) memset(dw, 0, (size_t)(c->nparts * c->C) * sizeof(float));
        float *dx = c->dx ? c->dx + r0 * c->C : NULL;
        if (dx && c->set) memset(dx, 0, (size_t)((r1 - r0) * c->C) * sizeof(float));
        if (c->rms)
            k->rmsnorm_bwd_f32(c->dy + r0 * c->C, c->x + r0 * c->C, c->w, c->rstd + r0, dx, dw,
                               (size_t)(r1 - r0), (size_t)c->C);
        else
            k->layernorm_bwd_f32(c->dy + r0 * c->C, c->x + r0 * c->C, c->w, c->mean + r0,
                                 c->rstd + r0, dx, dw, db, (size_t)(r1 - r0), (size_t)c->C);
    }
}

typedef struct {
    const float *part;
    float *dw, *db;
    int64_t nblk, C;
    int nparts;
} reduce_ctx;

static void reduce_cols(void *p, int64_t j0, int64_t j1, int tid) {
    const reduce_ctx *c = p;
    (void)tid;
    const int64_t stride = c->nparts * c->C;
    for (int64_t j = j0; j < j1; j++) {
        float sw = 0, sb = 0;
        for (int64_t i = 0; i < c->nblk; i++) {
            sw += c->part[i * stride + j];
            if (c->nparts == 2) sb += c->part[i * stride + c->C + j];
        }
        if (c->dw) c->dw[j] += sw;
        if (c->db) c->db[j] += sb;
    }
}

static qkv_status check_sizes(const char *fn, int64_t N, int64_t C) {
    int64_t n;
    NN_POSITIVE(fn, N);
    NN_POSITIVE(fn, C);
    NN_NUMEL2(fn, "N*C", N, C, n);
    (void)n;
    return QKV_OK;
}

qkv_status qkv_nn_layernorm_forward(qkv_runtime *rt, float *out, float *mean, float *rstd,
                                    const float *inp, const float *weight, const float *bias,
                                    int64_t N, int64_t C, float eps) {
    static const char fn[] = "qkv_nn_layernorm_forward";
    NN_NONNULL(fn, out);
    NN_NONNULL(fn, inp);
    QKV_TRY(check_sizes(fn, N, C));
    NN_REQUIRE(isfinite(eps) && eps >= 0, "%s: eps must be finite and >= 0", fn);
    norm_ctx c = {.x = inp,
                  .w = weight,
                  .b = bias,
                  .y = out,
                  .smean = mean,
                  .srstd = rstd,
                  .N = N,
                  .C = C,
                  .eps = eps};
    qkv_parallel_for(rt, N, nn_grain(8 * C), fwd_rows, &c);
    return QKV_OK;
}

qkv_status qkv_nn_rmsnorm_forward(qkv_runtime *rt, float *out, float *rrms, const float *inp,
                                  const float *weight, int64_t N, int64_t C, float eps) {
    static const char fn[] = "qkv_nn_rmsnorm_forward";
    NN_NONNULL(fn, out);
    NN_NONNULL(fn, inp);
    QKV_TRY(check_sizes(fn, N, C));
    NN_REQUIRE(isfinite(eps) && eps >= 0, "%s: eps must be finite and >= 0", fn);
    norm_ctx c = {
        .x = inp, .w = weight, .y = out, .srstd = rrms, .N = N, .C = C, .rms = 1, .eps = eps};
    qkv_parallel_for(rt, N, nn_grain(6 * C), fwd_rows, &c);
    return QKV_OK;
}

static qkv_status norm_backward(const char *fn, qkv_runtime *rt, norm_ctx *c, float *dw,
                                float *db) {
    const int64_t nblk = (c->N + NORM_RB - 1) / NORM_RB;
    if (dw || db) {
        size_t bytes = (size_t)nblk * (size_t)(c->nparts * c->C) * sizeof(float);
        c->part = qkv__alloc(bytes);
        if (!c->part)
            return qkv__fail(QKV_ERR_NOMEM, "%s: cannot allocate %zu bytes of scratch", fn, bytes);
    }
    qkv_parallel_for(rt, nblk, 1, bwd_blocks, c);
    if (c->part) {
        reduce_ctx r = {c->part, dw, db, nblk, c->C, c->nparts};
        qkv_parallel_for(rt, c->C, 64, reduce_cols, &r);
        qkv__free(c->part);
    }
    return QKV_OK;
}

static qkv_status layernorm_backward(const char *fn, int set, qkv_runtime *rt, float *dinp,
                                     float *dweight, float *dbias, const float *dout,
                                     const float *inp, const float *weight, const float *mean,
                                     const float *rstd, int64_t N, int64_t C) {
    NN_NONNULL(fn, dout);
    NN_NONNULL(fn, inp);
    NN_NONNULL(fn, mean);
    NN_NONNULL(fn, rstd);
    QKV_TRY(check_sizes(fn, N, C));
    norm_ctx c = {.x = inp,
                  .w = weight,
                  .dy = dout,
                  .mean = mean,
                  .rstd = rstd,
                  .dx = dinp,
                  .N = N,
                  .C = C,
                  .nparts = 2,
                  .set = set};
    return norm_backward(fn, rt, &c, dweight, dbias);
}

qkv_status qkv_nn_layernorm_backward(qkv_runtime *rt, float *dinp, float *dweight, float *dbias,
                                     const float *dout, const float *inp, const float *weight,
                                     const float *mean, const float *rstd, int64_t N, int64_t C) {
    return layernorm_backward("qkv_nn_layernorm_backward", 0, rt, dinp, dweight, dbias, dout, inp,
                              weight, mean, rstd, N, C);
}

qkv_status qkv_nn_layernorm_backward_set(qkv_runtime *rt, float *dinp, float *dweight, float *dbias,
                                         const float *dout, const float *inp, const float *weight,
                                         const float *mean, const float *rstd, int64_t N,
                                         int64_t C) {
    static const char fn[] = "qkv_nn_layernorm_backward_set";
    NN_NONNULL(fn, dinp);
    return layernorm_backward(fn, 1, rt, dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C);
}

qkv_status qkv_nn_rmsnorm_backward(qkv_runtime *rt, float *dinp, float *dweight, const float *dout,
                                   const float *inp, const float *weight, const float *rrms,
                                   int64_t N, int64_t C) {
    static const char fn[] = "qkv_nn_rmsnorm_backward";
    NN_NONNULL(fn, dout);
    NN_NONNULL(fn, inp);
    NN_NONNULL(fn, rrms);
    QKV_TRY(check_sizes(fn, N, C));
    norm_ctx c = {.x = inp,
                  .w = weight,
                  .dy = dout,
                  .rstd = rrms,
                  .dx = dinp,
                  .N = N,
                  .C = C,
                  .nparts = 1,
                  .rms = 1};
    return norm_backward(fn, rt, &c, dweight, NULL);
}
