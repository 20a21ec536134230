/* embedding.c — token, token-type and absolute-position embeddings.
 *
 * Forwards copy (or add) table rows, split over rows. Backwards scatter-add gradient rows into
 * the table: each thread owns a range of columns and walks every row in order of n, so a table
 * row used many times sums its gradients in a fixed order for any thread count, with no atomics
 * and no scratch. Position gradients are split over positions t (each summed over b in order). */
#include "nn/nn.h"
#include "nn/nn_internal.h"

#include <string.h>

typedef struct {
    const int32_t *ids;
    const float *table, *x;
    float *out, *dtable;
    int64_t N, C, B, T, pos0;
    int add;
} emb_ctx;

static void emb_fwd_rows(void *p, int64_t n0, int64_t n1, int tid) {
    const emb_ctx *c = p;
    (void)tid;
    for (int64_t n = n0; n < n1; n++) {
        const float *e = c->table + (int64_t)c->ids[n] * c->C; /* (C) */
        float *y = c->out + n * c->C;
        if (c->add)
            for (int64_t j = 0; j < c->C; j++) y[j] += e[j];
        else
            memcpy(y, e, (size_t)c->C * sizeof(float));
    }
}

static void emb_bwd_cols(void *p, int64_t j0, int64_t j1, int tid) {
    const emb_ctx *c = p;
    (void)tid;
    for (int64_t n = 0; n < c->N; n++) {
        const float *d = c->x + n * c->C;
        float *e = c->dtable + (int64_t)c->ids[n] * c->C;
        for (int64_t j = j0; j < j1; j++) e[j] += d[j];
    }
}

static qkv_status check(const char *fn, const int32_t *ids, const float *table, int64_t N,
                        int64_t V, int64_t C) {
    int64_t n;
    NN_NONNULL(fn, ids);
    NN_NONNULL(fn, table);
    NN_POSITIVE(fn, N);
    NN_POSITIVE(fn, V);
    NN_POSITIVE(fn, C);
    NN_NUMEL2(fn, "N*C", N, C, n);
    NN_NUMEL2(fn, "V*C", V, C, n);
    for (n = 0; n < N; n++)
        NN_REQUIRE(ids[n] >= 0 && ids[n] < V, "%s: ids[%lld] = %d is outside [0, %lld)", fn,
                   (long long)n, ids[n], (long long)V);
    return QKV_OK;
}

static qkv_status emb_forward(const char *fn, qkv_runtime *rt, float *out, const int32_t *ids,
                              const float *table, int64_t N, int64_t V, int64_t C, int add) {
    NN_NONNULL(fn, out);
    QKV_TRY(check(fn, ids, table, N, V, C));
    emb_ctx c = {.ids = ids, .table = table, .out = out, .N = N, .C = C, .add = add};
    qkv_parallel_for(rt, N, nn_grain(C), emb_fwd_rows, &c);
    return QKV_OK;
}

qkv_status qkv_nn_embedding_forward(qkv_runtime *rt, float *out, const int32_t *ids,
                                    const float *table, int64_t N, int64_t V, int64_t C) {
    return emb_forward("qkv_nn_embedding_forward", rt, out, ids, table, N, V, C, 0);
}

qkv_status qkv_nn_embedding_add_forward(qkv_runtime *rt, float *out, const int32_t *ids,
                                        const float *table, int64_t N, int64_t V, int64_t C) {
    return emb_forward("qkv_nn_embedding_add_forward", rt, out, ids, table, N, V, C, 1);
}

qkv_status qkv_nn_embedding_backward(qkv_runtime *rt, float *dtable, const float *dout,
                                     const int32_t *ids, int64_t N, int64_t V, int64_t C) {
    static const char fn[] = "qkv_nn_embedding_backward";
    NN_NONNULL(fn, dout);
    if (!dtable) return QKV_OK; /* a NULL gradient is skipped */
    QKV_TRY(check(fn, ids, dtable, N, V, C));
    emb_ctx c = {.ids = ids, .x = dout, .dtable = dtable, .N = N, .C = C};
    qkv_parallel_for(rt, C, C > 64 ? 32 : C, emb_bwd_cols, &c);
    return QKV_OK;
}

static void pos_fwd_rows(void *p, int64_t n0, int64_t n1, int tid) {
    const emb_ctx *c = p;
    (void)tid;
    for (int64_t n = n0; n < n1; n++) {
        const float *pe = c->table + (c->pos0 + n % c->T) * c->C, *x = c->x + n * c->C;
        float *y = c->out + n * c->C;
        for (int64_t j = 0; j < c->C; j++) y[j] = x[j] + pe[j];
    }
}

static void pos_bwd_rows(void *p, int64_t t0, int64_t t1, int tid) {
    const emb_ctx *c = p;
    (void)tid;
    for (int64_t t = t0; t < t1; t++) {
        float *dpe = c->dtable + (c->pos0 + t) * c->C;
        for (int64_t b = 0; b < c->B; b++) {
            const float *d = c->x + (b * c->T + t) * c->C;
            for (int64_t j = 0; j < c->C; j++) dpe[j] += d[j];
        }
    }
}

static qkv_status pos_check(const char *fn, int64_t B, int64_t T, int64_t C, int64_t P,
                            int64_t pos0) {
    int64_t n;
    NN_POSITIVE(fn, B);
    NN_POSITIVE(fn, T);
    NN_POSITIVE(fn, C);
    NN_POSITIVE(fn, P);
    NN_NUMEL2(fn, "B*T", B, T, n);
    NN_NUMEL2(fn, "B*T*C", n, C, n);
    NN_NUMEL2(fn, "P*C", P, C, n);
    NN_REQUIRE(pos0 >= 0 && pos0 <= P - T,
               "%s: positions pos0 = %lld .. pos0 + T = %lld pass the table's P = %lld", fn,
               (long long)pos0, (long long)(pos0 + T), (long long)P);
    return QKV_OK;
}

qkv_status qkv_nn_position_add_forward(qkv_runtime *rt, float *out, const float *inp,
                                       const float *pe, int64_t B, int64_t T, int64_t C, int64_t P,
                                       int64_t pos0) {
    static const char fn[] = "qkv_nn_position_add_forward";
    NN_NONNULL(fn, out);
    NN_NONNULL(fn, inp);
    NN_NONNULL(fn, pe);
    QKV_TRY(pos_check(fn, B, T, C, P, pos0));
    emb_ctx c = {
        .table = pe, .x = inp, .out = out, .N = B * T, .C = C, .B = B, .T = T, .pos0 = pos0};
    qkv_parallel_for(rt, B * T, nn_grain(C), pos_fwd_rows, &c);
    return QKV_OK;
}

qkv_status qkv_nn_position_add_backward(qkv_runtime *rt, float *dinp, float *dpe, const float *dout,
                                        int64_t B, int64_t T, int64_t C, int64_t P, int64_t pos0) {
    static const char fn[] = "qkv_nn_position_add_backward";
    NN_NONNULL(fn, dout);
    QKV_TRY(pos_check(fn, B, T, C, P, pos0));
    if (dinp) QKV_TRY(qkv_nn_residual_backward(rt, dinp, NULL, dout, B * T * C));
    if (dpe) {
        emb_ctx c = {.x = dout, .dtable = dpe, .N = B * T, .C = C, .B = B, .T = T, .pos0 = pos0};
        qkv_parallel_for(rt, T, nn_grain(B * C), pos_bwd_rows, &c);
    }
    return QKV_OK;
}
