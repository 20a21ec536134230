/* embedding_ref.c — (the double-precision reference; the fast layers are in nn.h) token embedding
 * lookup and its scatter-add backward.
 *
 * The backward groups the rows by id first (a counting sort of ids), so each table row's
 * gradient is one double-precision sum over its uses in order of n, computed by one thread:
 * frequent ids (padding, common tokens) are summed exactly as well as rare ones, and the result
 * does not depend on the thread count. */
#include "core/alloc.h"
#include "nn/nn_internal.h"
#include "nn/nn_ref.h"

#include <string.h>

/* Fails naming the first id outside [0, V). */
static qkv_status check_ids(const char *fn, const int32_t *ids, int64_t N, int64_t V) {
    for (int64_t n = 0; n < N; n++)
        NN_REQUIRE(ids[n] >= 0 && ids[n] < V, "%s: ids[%lld] = %d is outside [0, V = %lld)", fn,
                   (long long)n, (int)ids[n], (long long)V);
    return QKV_OK;
}

qkv_status qkv_nn_embedding_forward_ref(float *out, const int32_t *ids, const float *table,
                                        int64_t N, int64_t V, int64_t C) {
    static const char fn[] = "qkv_nn_embedding_forward_ref";
    int64_t nc, vc;
    NN_NONNULL(fn, out);
    NN_NONNULL(fn, ids);
    NN_NONNULL(fn, table);
    NN_POSITIVE(fn, N);
    NN_POSITIVE(fn, V);
    NN_POSITIVE(fn, C);
    NN_NUMEL2(fn, "N*C", N, C, nc);
    NN_NUMEL2(fn, "V*C", V, C, vc);
    (void)nc, (void)vc;
    QKV_TRY(check_ids(fn, ids, N, V));
    for (int64_t n = 0; n < N; n++)
        memcpy(out + n * C, table + (int64_t)ids[n] * C, (size_t)C * sizeof(float)); /* (C) */
    return QKV_OK;
}

typedef struct {
    float *dtable;        /* (V, C) */
    const float *dout;    /* (N, C) */
    const int64_t *start; /* (V + 1): rows of id v are order[start[v] .. start[v + 1]) */
    const int64_t *order; /* (N): row indices sorted by id, stable */
    int64_t C;
} embed_bwd_ctx;

static void embedding_backward_ids(void *p, int64_t v0, int64_t v1, int tid) {
    const embed_bwd_ctx *c = p;
    (void)tid;
    const int64_t C = c->C;
    double acc[NN_CBLOCK];
    for (int64_t v = v0; v < v1; v++) {
        if (c->start[v] == c->start[v + 1]) continue;
        float *dt = c->dtable + v * C; /* (C) */
        for (int64_t i0 = 0; i0 < C; i0 += NN_CBLOCK) {
            int64_t ni = C - i0 < NN_CBLOCK ? C - i0 : NN_CBLOCK;
            for (int64_t i = 0; i < ni; i++) acc[i] = 0.0;
            for (int64_t r = c->start[v]; r < c->start[v + 1]; r++) {
                const float *dy = c->dout + c->order[r] * C + i0;
                for (int64_t i = 0; i < ni; i++) acc[i] += dy[i];
            }
            for (int64_t i = 0; i < ni; i++) dt[i0 + i] = (float)((double)dt[i0 + i] + acc[i]);
        }
    }
}

qkv_status qkv_nn_embedding_backward_ref(qkv_runtime *rt, float *dtable, const float *dout,
                                         const int32_t *ids, int64_t N, int64_t V, int64_t C) {
    static const char fn[] = "qkv_nn_embedding_backward_ref";
    int64_t nc, vc;
    NN_NONNULL(fn, dout);
    NN_NONNULL(fn, ids);
    NN_POSITIVE(fn, N);
    NN_POSITIVE(fn, V);
    NN_POSITIVE(fn, C);
    NN_NUMEL2(fn, "N*C", N, C, nc);
    NN_NUMEL2(fn, "V*C", V, C, vc);
    (void)nc, (void)vc;
    QKV_TRY(check_ids(fn, ids, N, V));
    if (!dtable) return QKV_OK;

    /* counting sort of the rows by id: start (V + 1), order (N) */
    int64_t *start = qkv__calloc((size_t)V + 1 + (size_t)N, sizeof(int64_t));
    if (!start)
        return qkv__fail(QKV_ERR_NOMEM, "%s: out of memory (N = %lld, V = %lld)", fn, (long long)N,
                         (long long)V);
    int64_t *order = start + V + 1;
    for (int64_t n = 0; n < N; n++) start[ids[n] + 1]++;
    for (int64_t v = 0; v < V; v++) start[v + 1] += start[v];
    /* fill using start[v] as a cursor, then shift the cursors back */
    for (int64_t n = 0; n < N; n++) order[start[ids[n]]++] = n;
    for (int64_t v = V; v > 0; v--) start[v] = start[v - 1];
    start[0] = 0;

    embed_bwd_ctx c = {.dtable = dtable, .dout = dout, .start = start, .order = order, .C = C};
    qkv_parallel_for(rt, V, nn_grain(C * (N / V + 1)), embedding_backward_ids, &c);
    qkv__free(start);
    return QKV_OK;
}
