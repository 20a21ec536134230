/* pointwise.c — elementwise layers on the active ISA's kernels: activations (GELU erf/tanh,
 * ReLU, SiLU), SwiGLU, residual add, dropout.
 *
 * Elements are cut into chunks of at least PW_GRAIN for the threads; an element's result never
 * depends on the cut. SwiGLU runs the SiLU kernels on stack blocks of PW_BLOCK elements. Dropout
 * draws the mask of element i from qkv__rng_uniform(seed, stream, i) (core/rng.h), exactly as
 * the reference, so the two agree bit for bit on which elements are kept. */
#include "core/rng.h"
#include "kernels/attn_kernels.h"
#include "kernels/dispatch.h"
#include "nn/nn.h"
#include "nn/nn_internal.h"

#include <math.h>
#include <string.h>

#define PW_GRAIN 4096
#define PW_BLOCK 256

typedef struct {
    qkv_act act;
    const float *x, *y, *dy; /* act: x input, dy; swiglu: x gate, y up; residual: x a, y b */
    float *out, *dx, *dx2;
    float p, keep_scale;
    uint64_t seed, stream;
    qkv_attn_kernels kr; /* dropout: the ISA's mask kernel (the fused attention's) */
    qkv_attn_dropout dr;
} pw_ctx;

static qkv_status check_n(const char *fn, int64_t n) {
    NN_POSITIVE(fn, n);
    NN_REQUIRE(n <= NN_MAX_NUMEL, "%s: n = %lld is too large", fn, (long long)n);
    return QKV_OK;
}

static qkv_status check_act(const char *fn, qkv_act act) {
    NN_REQUIRE(act == QKV_ACT_GELU_ERF || act == QKV_ACT_GELU_TANH || act == QKV_ACT_RELU ||
                   act == QKV_ACT_SILU || act == QKV_ACT_TANH,
               "%s: act = %d is not a qkv_act activation", fn, (int)act);
    return QKV_OK;
}

static void act_fwd(void *p, int64_t i0, int64_t i1, int tid) {
    const pw_ctx *c = p;
    (void)tid;
    qkv__kernels()->act_f32(c->act, c->x + i0, c->out + i0, (size_t)(i1 - i0));
}

static void act_bwd(void *p, int64_t i0, int64_t i1, int tid) {
    const pw_ctx *c = p;
    (void)tid;
    qkv__kernels()->act_bwd_f32(c->act, c->x + i0, c->dy + i0, c->dx + i0, (size_t)(i1 - i0));
}

qkv_status qkv_nn_act_forward(qkv_runtime *rt, qkv_act act, float *out, const float *inp,
                              int64_t n) {
    static const char fn[] = "qkv_nn_act_forward";
    NN_NONNULL(fn, out);
    NN_NONNULL(fn, inp);
    QKV_TRY(check_n(fn, n));
    QKV_TRY(check_act(fn, act));
    pw_ctx c = {.act = act, .x = inp, .out = out};
    qkv_parallel_for(rt, n, PW_GRAIN, act_fwd, &c);
    return QKV_OK;
}

qkv_status qkv_nn_act_backward(qkv_runtime *rt, qkv_act act, float *dinp, const float *dout,
                               const float *inp, int64_t n) {
    static const char fn[] = "qkv_nn_act_backward";
    NN_NONNULL(fn, dout);
    NN_NONNULL(fn, inp);
    QKV_TRY(check_n(fn, n));
    QKV_TRY(check_act(fn, act));
    if (!dinp) return QKV_OK; /* a NULL gradient is skipped */
    pw_ctx c = {.act = act, .x = inp, .dy = dout, .dx = dinp};
    qkv_parallel_for(rt, n, PW_GRAIN, act_bwd, &c);
    return QKV_OK;
}

static void swiglu_fwd(void *p, int64_t i0, int64_t i1, int tid) {
    const pw_ctx *c = p;
    (void)tid;
    float s[PW_BLOCK];
    for (int64_t b = i0; b < i1; b += PW_BLOCK) {
        int64_t nb = i1 - b < PW_BLOCK ? i1 - b : PW_BLOCK;
        qkv__kernels()->act_f32(QKV_ACT_SILU, c->x + b, s, (size_t)nb);
        for (int64_t i = 0; i < nb; i++) c->out[b + i] = s[i] * c->y[b + i];
    }
}

static void swiglu_bwd(void *p, int64_t i0, int64_t i1, int tid) {
    const pw_ctx *c = p;
    (void)tid;
    float s[PW_BLOCK];
    for (int64_t b = i0; b < i1; b += PW_BLOCK) {
        int64_t nb = i1 - b < PW_BLOCK ? i1 - b : PW_BLOCK;
        if (c->dx2) { /* dup += dout · silu(gate) */
            qkv__kernels()->act_f32(QKV_ACT_SILU, c->x + b, s, (size_t)nb);
            for (int64_t i = 0; i < nb; i++) c->dx2[b + i] += c->dy[b + i] * s[i];
        }
        if (c->dx) { /* dgate += (dout · up) · silu'(gate) */
            for (int64_t i = 0; i < nb; i++) s[i] = c->dy[b + i] * c->y[b + i];
            qkv__kernels()->act_bwd_f32(QKV_ACT_SILU, c->x + b, s, c->dx + b, (size_t)nb);
        }
    }
}

qkv_status qkv_nn_swiglu_forward(qkv_runtime *rt, float *out, const float *gate, const float *up,
                                 int64_t n) {
    static const char fn[] = "qkv_nn_swiglu_forward";
    NN_NONNULL(fn, out);
    NN_NONNULL(fn, gate);
    NN_NONNULL(fn, up);
    QKV_TRY(check_n(fn, n));
    pw_ctx c = {.x = gate, .y = up, .out = out};
    qkv_parallel_for(rt, n, PW_GRAIN, swiglu_fwd, &c);
    return QKV_OK;
}

qkv_status qkv_nn_swiglu_backward(qkv_runtime *rt, float *dgate, float *dup, const float *dout,
                                  const float *gate, const float *up, int64_t n) {
    static const char fn[] = "qkv_nn_swiglu_backward";
    NN_NONNULL(fn, dout);
    NN_NONNULL(fn, gate);
    NN_NONNULL(fn, up);
    QKV_TRY(check_n(fn, n));
    pw_ctx c = {.x = gate, .y = up, .dy = dout, .dx = dgate, .dx2 = dup};
    if (dgate || dup) qkv_parallel_for(rt, n, PW_GRAIN, swiglu_bwd, &c);
    return QKV_OK;
}

static void residual_fwd(void *p, int64_t i0, int64_t i1, int tid) {
    const pw_ctx *c = p;
    (void)tid;
    for (int64_t i = i0; i < i1; i++) c->out[i] = c->x[i] + c->y[i];
}

static void residual_bwd(void *p, int64_t i0, int64_t i1, int tid) {
    const pw_ctx *c = p;
    (void)tid;
    if (c->dx)
        for (int64_t i = i0; i < i1; i++) c->dx[i] += c->dy[i];
    if (c->dx2)
        for (int64_t i = i0; i < i1; i++) c->dx2[i] += c->dy[i];
}

qkv_status qkv_nn_residual_forward(qkv_runtime *rt, float *out, const float *a, const float *b,
                                   int64_t n) {
    static const char fn[] = "qkv_nn_residual_forward";
    NN_NONNULL(fn, out);
    NN_NONNULL(fn, a);
    NN_NONNULL(fn, b);
    QKV_TRY(check_n(fn, n));
    pw_ctx c = {.x = a, .y = b, .out = out};
    qkv_parallel_for(rt, n, PW_GRAIN, residual_fwd, &c);
    return QKV_OK;
}

qkv_status qkv_nn_residual_backward(qkv_runtime *rt, float *da, float *db, const float *dout,
                                    int64_t n) {
    static const char fn[] = "qkv_nn_residual_backward";
    NN_NONNULL(fn, dout);
    QKV_TRY(check_n(fn, n));
    NN_REQUIRE(!da || da != db, "%s: da and db are the same buffer", fn);
    pw_ctx c = {.dy = dout, .dx = da, .dx2 = db};
    qkv_parallel_for(rt, n, PW_GRAIN, residual_bwd, &c);
    return QKV_OK;
}

/* out[i] (or dx[i] +=) = keep_i ? in[i] · keep_scale : 0, the mask drawn per block of uniforms */
/* Dropout on blocks of PW_BLOCK elements: the mask z (keep_scale or 0) of a block comes from
 * the active ISA's vectorized Philox (the fused attention's dropout kernel, whose mask is
 * exactly the reference's rule u >= p), then the block is scaled or zeroed. */
static void dropout_range(void *p, int64_t i0, int64_t i1, int tid) {
    const pw_ctx *c = p;
    (void)tid;
    float z[PW_BLOCK];
    for (int64_t b = i0; b < i1; b += PW_BLOCK) {
        int64_t nb = i1 - b < PW_BLOCK ? i1 - b : PW_BLOCK;
        const uint64_t first = (uint64_t)b;
        c->kr.dropout(1, nb, &first, 0, &c->dr, z, 1, 1);
        if (c->out)
            for (int64_t i = 0; i < nb; i++)
                c->out[b + i] = z[i] != 0.0f ? c->x[b + i] * z[i] : 0.0f;
        else
            for (int64_t i = 0; i < nb; i++)
                if (z[i] != 0.0f) c->dx[b + i] += c->dy[b + i] * z[i];
    }
}

/* The mask parameters of pw_ctx c (p > 0). */
static void dropout_setup(pw_ctx *c) {
    qkv__kernels()->attn_f32_config(&c->kr);
    c->dr = (qkv_attn_dropout){{(uint32_t)c->seed, (uint32_t)(c->seed >> 32)},
                               {(uint32_t)c->stream, (uint32_t)(c->stream >> 32)},
                               c->p,
                               c->keep_scale};
}

static qkv_status check_p(const char *fn, float p) {
    NN_REQUIRE(p >= 0.0f && p < 1.0f, "%s: p = %g must be in [0, 1)", fn, (double)p);
    return QKV_OK;
}

qkv_status qkv_nn_dropout_forward(qkv_runtime *rt, float *out, const float *inp, int64_t n, float p,
                                  uint64_t seed, uint64_t stream) {
    static const char fn[] = "qkv_nn_dropout_forward";
    NN_NONNULL(fn, out);
    NN_NONNULL(fn, inp);
    QKV_TRY(check_n(fn, n));
    QKV_TRY(check_p(fn, p));
    if (p == 0.0f) {
        if (out != inp) memcpy(out, inp, (size_t)n * sizeof(float));
        return QKV_OK;
    }
    pw_ctx c = {.x = inp,
                .out = out,
                .p = p,
                .keep_scale = (float)(1.0 / (1.0 - (double)p)),
                .seed = seed,
                .stream = stream};
    dropout_setup(&c);
    qkv_parallel_for(rt, n, PW_GRAIN, dropout_range, &c);
    return QKV_OK;
}

qkv_status qkv_nn_dropout_backward(qkv_runtime *rt, float *dinp, const float *dout, int64_t n,
                                   float p, uint64_t seed, uint64_t stream) {
    static const char fn[] = "qkv_nn_dropout_backward";
    NN_NONNULL(fn, dout);
    QKV_TRY(check_n(fn, n));
    QKV_TRY(check_p(fn, p));
    if (!dinp) return QKV_OK; /* a NULL gradient is skipped */
    if (p == 0.0f) return qkv_nn_residual_backward(rt, dinp, NULL, dout, n);
    pw_ctx c = {.dy = dout,
                .dx = dinp,
                .p = p,
                .keep_scale = (float)(1.0 / (1.0 - (double)p)),
                .seed = seed,
                .stream = stream};
    dropout_setup(&c);
    qkv_parallel_for(rt, n, PW_GRAIN, dropout_range, &c);
    return QKV_OK;
}
