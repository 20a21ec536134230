/* softmax_ref.c — (the double-precision reference; the fast layers are in nn.h) softmax and
 * log-softmax over the last axis, forward and backward.
 *
 * The row maximum m is subtracted before exponentiating, the sum of exponentials s is kept in
 * double, and log-softmax is formed as (x - m) - log s, so logits of any finite magnitude
 * (±1e30 included) give finite, correct results: x - m is exact in double for float inputs,
 * while x - (m + log s) would lose log s next to a huge m. A row
 * that is entirely -inf (a fully masked row) has no defined distribution; it gets probability 0
 * everywhere (log-probability -inf) and a zero gradient, never NaN. */
#include "nn/nn_internal.h"
#include "nn/nn_ref.h"

#include <math.h>

typedef struct {
    float *out, *dinp;
    const float *inp, *dout, *sout; /* sout: the forward's saved output */
    int64_t V;
    int log;
} softmax_ctx;

static void softmax_forward_rows(void *p, int64_t n0, int64_t n1, int tid) {
    const softmax_ctx *c = p;
    (void)tid;
    const int64_t V = c->V;
    for (int64_t n = n0; n < n1; n++) {
        const float *x = c->inp + n * V; /* (V) */
        float *y = c->out + n * V;       /* (V) */
        float m = -INFINITY;
        for (int64_t v = 0; v < V; v++) m = x[v] > m ? x[v] : m;
        if (m == -INFINITY) { /* every input -inf (NaN inputs fall through to NaN below) */
            int all_neg_inf = 1;
            for (int64_t v = 0; v < V; v++) all_neg_inf &= x[v] == -INFINITY;
            if (all_neg_inf) {
                for (int64_t v = 0; v < V; v++) y[v] = c->log ? -INFINITY : 0.0f;
                continue;
            }
        }
        double s = 0.0;
        for (int64_t v = 0; v < V; v++) s += exp((double)x[v] - (double)m);
        if (c->log) {
            /* (x - m) - log s, not x - (m + log s): for |m| ~ 1e30 the log s would vanish */
            const double ls = log(s);
            for (int64_t v = 0; v < V; v++) y[v] = (float)(((double)x[v] - (double)m) - ls);
        } else {
            for (int64_t v = 0; v < V; v++) y[v] = (float)(exp((double)x[v] - (double)m) / s);
        }
    }
}

static void softmax_backward_rows(void *p, int64_t n0, int64_t n1, int tid) {
    const softmax_ctx *c = p;
    (void)tid;
    const int64_t V = c->V;
    for (int64_t n = n0; n < n1; n++) {
        const float *y = c->sout + n * V;  /* (V) */
        const float *dy = c->dout + n * V; /* (V) */
        float *dx = c->dinp + n * V;       /* (V) */
        double s = 0.0;
        if (c->log) {
            /* a fully masked row has log-probabilities -inf: no gradient */
            int masked = 1;
            for (int64_t v = 0; v < V && masked; v++) masked = y[v] == -INFINITY;
            if (masked) continue;
            for (int64_t v = 0; v < V; v++) s += dy[v];
            for (int64_t v = 0; v < V; v++)
                dx[v] = (float)((double)dx[v] + (double)dy[v] - exp((double)y[v]) * s);
        } else {
            for (int64_t v = 0; v < V; v++) s += (double)dy[v] * (double)y[v];
            for (int64_t v = 0; v < V; v++)
                dx[v] = (float)((double)dx[v] + (double)y[v] * ((double)dy[v] - s));
        }
    }
}

static qkv_status softmax_check(const char *fn, int64_t N, int64_t V) {
    int64_t nv;
    NN_POSITIVE(fn, N);
    NN_POSITIVE(fn, V);
    NN_NUMEL2(fn, "N*V", N, V, nv);
    (void)nv;
    return QKV_OK;
}

static qkv_status softmax_forward(const char *fn, qkv_runtime *rt, float *out, const float *inp,
                                  int64_t N, int64_t V, int log) {
    NN_NONNULL(fn, out);
    NN_NONNULL(fn, inp);
    QKV_TRY(softmax_check(fn, N, V));
    softmax_ctx c = {.out = out, .inp = inp, .V = V, .log = log};
    qkv_parallel_for(rt, N, nn_grain(8 * V), softmax_forward_rows, &c);
    return QKV_OK;
}

static qkv_status softmax_backward(const char *fn, qkv_runtime *rt, float *dinp, const float *dout,
                                   const float *out, int64_t N, int64_t V, int log) {
    NN_NONNULL(fn, dout);
    NN_NONNULL(fn, out);
    QKV_TRY(softmax_check(fn, N, V));
    if (!dinp) return QKV_OK;
    softmax_ctx c = {.dinp = dinp, .dout = dout, .sout = out, .V = V, .log = log};
    qkv_parallel_for(rt, N, nn_grain(4 * V), softmax_backward_rows, &c);
    return QKV_OK;
}

qkv_status qkv_nn_softmax_forward_ref(qkv_runtime *rt, float *out, const float *inp, int64_t N,
                                      int64_t V) {
    return softmax_forward("qkv_nn_softmax_forward_ref", rt, out, inp, N, V, 0);
}
qkv_status qkv_nn_softmax_backward_ref(qkv_runtime *rt, float *dinp, const float *dout,
                                       const float *out, int64_t N, int64_t V) {
    return softmax_backward("qkv_nn_softmax_backward_ref", rt, dinp, dout, out, N, V, 0);
}
qkv_status qkv_nn_log_softmax_forward_ref(qkv_runtime *rt, float *out, const float *inp, int64_t N,
                                          int64_t V) {
    return softmax_forward("qkv_nn_log_softmax_forward_ref", rt, out, inp, N, V, 1);
}
qkv_status qkv_nn_log_softmax_backward_ref(qkv_runtime *rt, float *dinp, const float *dout,
                                           const float *out, int64_t N, int64_t V) {
    return softmax_backward("qkv_nn_log_softmax_backward_ref", rt, dinp, dout, out, N, V, 1);
}
