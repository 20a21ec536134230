/* linear.c — the dense layer on the packed GEMM (kernels/gemm.h).
 *
 * Forward: one GEMM, with bias, activation and residual fused in its epilogue; prepacked
 * weights (inference) or the weight read where it lies (training, where it changes every step).
 * Backward: dinp += dout · op(w)ᵀ and dw += the weight's gradient are GEMMs with beta = 1 (so
 * they accumulate, as every backward here); db is a column sum over fixed blocks of 64 columns,
 * each summed by one thread over the rows in order (thread-count independent). */
#include "nn/nn.h"
#include "nn/nn_internal.h"

static qkv_status check(const char *fn, const qkv_nn_linear *L, int64_t N) {
    NN_NONNULL(fn, L);
    NN_POSITIVE(fn, L->C);
    NN_POSITIVE(fn, L->OC);
    NN_POSITIVE(fn, N);
    int64_t n;
    NN_NUMEL2(fn, "N*C", N, L->C, n);
    NN_NUMEL2(fn, "N*OC", N, L->OC, n);
    NN_NUMEL2(fn, "C*OC", L->C, L->OC, n);
    (void)n;
    const int64_t dense = L->in_out ? L->OC : L->C;
    NN_REQUIRE(L->ldw == 0 || L->ldw >= dense, "%s: L->ldw = %lld is below the row length %lld", fn,
               (long long)L->ldw, (long long)dense);
    if (L->packed)
        NN_REQUIRE(qkv__gemm_packed_k(L->packed) == L->C && qkv__gemm_packed_n(L->packed) == L->OC,
                   "%s: L->packed is (%lld, %lld), the layer (C %lld, OC %lld)", fn,
                   (long long)qkv__gemm_packed_k(L->packed),
                   (long long)qkv__gemm_packed_n(L->packed), (long long)L->C, (long long)L->OC);
    return QKV_OK;
}

static int64_t ldw_of(const qkv_nn_linear *L) {
    return L->ldw ? L->ldw : (L->in_out ? L->OC : L->C);
}

qkv_status qkv_nn_linear_forward(qkv_runtime *rt, const qkv_nn_linear *L, float *out,
                                 const float *inp, int64_t N, qkv_act act, const float *residual) {
    static const char fn[] = "qkv_nn_linear_forward";
    QKV_TRY(check(fn, L, N));
    NN_NONNULL(fn, out);
    NN_NONNULL(fn, inp);
    NN_REQUIRE(L->packed || L->w, "%s: L->w and L->packed are both NULL", fn);
    float beta = 0.0f;
    if (residual == out) {
        NN_REQUIRE(act == QKV_ACT_NONE, "%s: residual == out needs act QKV_ACT_NONE", fn);
        residual = NULL;
        beta = 1.0f;
    }
    qkv_gemm_epilogue e = {L->b, act, residual, L->OC};
    const qkv_gemm_epilogue *ep = L->b || act != QKV_ACT_NONE || residual ? &e : NULL;
    if (L->packed)
        return qkv__gemm_f32_packed(rt, 0, N, inp, L->C, L->packed, 1.0f, beta, out, L->OC, ep);
    return qkv__gemm_f32(rt, 0, !L->in_out, N, L->OC, L->C, 1.0f, inp, L->C, L->w, ldw_of(L), beta,
                         out, L->OC, ep);
}

typedef struct {
    const float *dout;
    float *db;
    int64_t N, OC;
} colsum_ctx;

#define COLSUM_W 64
static void colsum_cols(void *p, int64_t b0, int64_t b1, int tid) {
    const colsum_ctx *c = p;
    (void)tid;
    for (int64_t b = b0; b < b1; b++) {
        int64_t j0 = b * COLSUM_W, nj = c->OC - j0 < COLSUM_W ? c->OC - j0 : COLSUM_W;
        float acc[COLSUM_W] = {0};
        for (int64_t n = 0; n < c->N; n++) {
            const float *row = c->dout + n * c->OC + j0;
            for (int64_t j = 0; j < nj; j++) acc[j] += row[j];
        }
        for (int64_t j = 0; j < nj; j++) c->db[j0 + j] += acc[j];
    }
}

qkv_status qkv_nn_linear_backward(qkv_runtime *rt, const qkv_nn_linear *L, float *dinp, float *dw,
                                  float *db, const float *dout, const float *inp, int64_t N) {
    static const char fn[] = "qkv_nn_linear_backward";
    QKV_TRY(check(fn, L, N));
    NN_NONNULL(fn, dout);
    NN_REQUIRE(!dinp || L->w, "%s: L->w is NULL (needed for dinp)", fn);
    NN_REQUIRE(!dw || inp, "%s: inp is NULL (needed for dw)", fn);
    const int64_t C = L->C, OC = L->OC, ld = ldw_of(L);
    if (dinp) {
        if (L->in_out) /* w (C, OC): dinp = dout · wᵀ */
            QKV_TRY(
                qkv__gemm_f32(rt, 0, 1, N, C, OC, 1.0f, dout, OC, L->w, ld, 1.0f, dinp, C, NULL));
        else /* w (OC, C): dinp = dout · w */
            QKV_TRY(
                qkv__gemm_f32(rt, 0, 0, N, C, OC, 1.0f, dout, OC, L->w, ld, 1.0f, dinp, C, NULL));
    }
    if (dw) {
        if (L->in_out) /* dw (C, OC) += inpᵀ · dout */
            QKV_TRY(qkv__gemm_f32(rt, 1, 0, C, OC, N, 1.0f, inp, C, dout, OC, 1.0f, dw, ld, NULL));
        else /* dw (OC, C) += doutᵀ · inp */
            QKV_TRY(qkv__gemm_f32(rt, 1, 0, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f, dw, ld, NULL));
    }
    if (db) {
        colsum_ctx c = {dout, db, N, OC};
        qkv_parallel_for(rt, (OC + COLSUM_W - 1) / COLSUM_W, 1, colsum_cols, &c);
    }
    return QKV_OK;
}
