/* softmax.c — softmax and log-softmax over rows on the active ISA's row kernels; rows are split
 * over threads (a row's result does not depend on the split). */
#include "kernels/dispatch.h"
#include "nn/nn.h"
#include "nn/nn_internal.h"

typedef struct {
    const float *x, *y, *dy;
    float *out, *dx;
    int64_t V;
    int log_, bwd;
} sm_ctx;

static void sm_rows(void *p, int64_t r0, int64_t r1, int tid) {
    const sm_ctx *c = p;
    (void)tid;
    const qkv_kernels *k = qkv__kernels();
    const size_t rows = (size_t)(r1 - r0), V = (size_t)c->V;
    const int64_t o = r0 * c->V;
    if (!c->bwd && !c->log_) k->softmax_f32(c->x + o, c->out + o, rows, V);
    if (!c->bwd && c->log_) k->log_softmax_f32(c->x + o, c->out + o, rows, V);
    if (c->bwd && !c->log_) k->softmax_bwd_f32(c->y + o, c->dy + o, c->dx + o, rows, V);
    if (c->bwd && c->log_) k->log_softmax_bwd_f32(c->y + o, c->dy + o, c->dx + o, rows, V);
}

static qkv_status run(const char *fn, qkv_runtime *rt, sm_ctx *c, int64_t N) {
    int64_t n;
    NN_POSITIVE(fn, N);
    NN_POSITIVE(fn, c->V);
    NN_NUMEL2(fn, "N*V", N, c->V, n);
    (void)n;
    qkv_parallel_for(rt, N, nn_grain(8 * c->V), sm_rows, c);
    return QKV_OK;
}

qkv_status qkv_nn_softmax_forward(qkv_runtime *rt, float *out, const float *inp, int64_t N,
                                  int64_t V) {
    static const char fn[] = "qkv_nn_softmax_forward";
    NN_NONNULL(fn, out);
    NN_NONNULL(fn, inp);
    sm_ctx c = {.x = inp, .out = out, .V = V};
    return run(fn, rt, &c, N);
}

qkv_status qkv_nn_log_softmax_forward(qkv_runtime *rt, float *out, const float *inp, int64_t N,
                                      int64_t V) {
    static const char fn[] = "qkv_nn_log_softmax_forward";
    NN_NONNULL(fn, out);
    NN_NONNULL(fn, inp);
    sm_ctx c = {.x = inp, .out = out, .V = V, .log_ = 1};
    return run(fn, rt, &c, N);
}

qkv_status qkv_nn_softmax_backward(qkv_runtime *rt, float *dinp, const float *dout,
                                   const float *out, int64_t N, int64_t V) {
    static const char fn[] = "qkv_nn_softmax_backward";
    NN_NONNULL(fn, dinp);
    NN_NONNULL(fn, dout);
    NN_NONNULL(fn, out);
    sm_ctx c = {.y = out, .dy = dout, .dx = dinp, .V = V, .bwd = 1};
    return run(fn, rt, &c, N);
}

qkv_status qkv_nn_log_softmax_backward(qkv_runtime *rt, float *dinp, const float *dout,
                                       const float *out, int64_t N, int64_t V) {
    static const char fn[] = "qkv_nn_log_softmax_backward";
    NN_NONNULL(fn, dinp);
    NN_NONNULL(fn, dout);
    NN_NONNULL(fn, out);
    sm_ctx c = {.y = out, .dy = dout, .dx = dinp, .V = V, .log_ = 1, .bwd = 1};
    return run(fn, rt, &c, N);
}
