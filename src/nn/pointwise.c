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
    int set; /* backward: dx = (act: each PW_BLOCK zeroed before the kernel adds) */
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
    if (!c->set) {
        qkv__kernels()->act_bwd_f32(c->act, c->x + i0, c->dy + i0, c->dx + i0, (size_t)(i1 - i0));
        return;
    }
    for (int64_t b = i0; b < i1; b += PW_BLOCK) {
        int64_t nb = i1 - b < PW_BLOCK ? i1 - b : PW_BLOCK;
        memset(c->dx + b, 0, (size_t)nb * sizeof(float));
        qkv__kernels()->act_bwd_f32(c->act, c->x + b, c->dy + b, c->dx + b, (size_t)nb);
    }
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

static qkv_status act_backward(const char *fn, int set, qkv_runtime *rt, qkv_act act, float *dinp,
                               const float *dout, const float *inp, int64_t n) {
    NN_NONNULL(fn, dout);
    NN_NONNULL(fn, inp);
    QKV_TRY(check_n(fn, n));
    QKV_TRY(check_act(fn, act));
    if (!dinp) return QKV_OK; /* a NULL gradient is skipped */
    pw_ctx c = {.act = act, .x = inp, .dy = dout, .dx = dinp, .set = set};
    qkv_parallel_for(rt, n, PW_GRAIN, act_bwd, &c);
    return QKV_OK;
}

qkv_status qkv_nn_act_backward(qkv_runtime *rt, qkv_act act, float *dinp, const float *dout,
                               const float *inp, int64_t n) {
    return act_backward("qkv_nn_act_backward", 0, rt, act, dinp, dout, inp, n);
}

qkv_status qkv_nn_act_backward_set(qkv_runtime *rt, qkv_act act, float *dinp, const float *dout,
                                   const float *inp, int64_t n) {
    static const char fn[] = "qkv_nn_act_backward_set";
    NN_NONNULL(fn, dinp);
    return act_backward(fn, 1, rt, act, dinp, dout, inp, n);
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

/* Four floats at a time in GCC's generic vectors (the baseline ISA's SSE registers),
 * loaded and stored through memcpy: the loops below then neither reload the context's pointers
 * after every store (which may alias it) nor need the vectorizer's overlap checks, which fail
 * for the in-place calls (out == a) and would leave them scalar. Each lane computes exactly
 * the scalar expression. */
typedef float pw_v4 __attribute__((vector_size(16)));
typedef int32_t pw_m4 __attribute__((vector_size(16)));

static inline pw_v4 v4_load(const float *p) {
    pw_v4 v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline void v4_store(float *p, pw_v4 v) { memcpy(p, &v, sizeof v); }
/* m ? a : b lane by lane (m: all ones or zero). */
static inline pw_v4 v4_select(pw_m4 m, pw_v4 a, pw_v4 b) {
    return (pw_v4)(((pw_m4)a & m) | ((pw_m4)b & ~m));
}

/* out[i] = a[i] + b[i]; out may be a or b. */
static void add_rows(float *out, const float *a, const float *b, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) v4_store(out + i, v4_load(a + i) + v4_load(b + i));
    for (; i < n; i++) out[i] = a[i] + b[i];
}

static void residual_fwd(void *p, int64_t i0, int64_t i1, int tid) {
    const pw_ctx *c = p;
    (void)tid;
    add_rows(c->out + i0, c->x + i0, c->y + i0, i1 - i0);
}

static void residual_bwd(void *p, int64_t i0, int64_t i1, int tid) {
    const pw_ctx *c = p;
    (void)tid;
    if (c->dx) add_rows(c->dx + i0, c->dx + i0, c->dy + i0, i1 - i0);
    if (c->dx2) add_rows(c->dx2 + i0, c->dx2 + i0, c->dy + i0, i1 - i0);
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
        const pw_v4 zero = {0};
        int64_t i = 0;
        if (c->out) { /* out = z != 0 ? x · z : 0 */
            float *o = c->out + b;
            const float *x = c->x + b;
            for (; i + 4 <= nb; i += 4) {
                const pw_v4 zv = v4_load(z + i);
                v4_store(o + i, v4_select(zv != zero, v4_load(x + i) * zv, zero));
            }
            for (; i < nb; i++) o[i] = z[i] != 0.0f ? x[i] * z[i] : 0.0f;
        } else if (c->set) { /* 0 + ...: the bits of adding into a zeroed dx (-0 becomes +0) */
            float *dx = c->dx + b;
            const float *dy = c->dy + b;
            for (; i + 4 <= nb; i += 4) {
                const pw_v4 zv = v4_load(z + i);
                v4_store(dx + i, v4_select(zv != zero, zero + v4_load(dy + i) * zv, zero));
            }
            for (; i < nb; i++) dx[i] = z[i] != 0.0f ? 0.0f + dy[i] * z[i] : 0.0f;
        } else { /* dx += dy · z where kept; dropped elements untouched */
            float *dx = c->dx + b;
            const float *dy = c->dy + b;
            for (; i + 4 <= nb; i += 4) {
                const pw_v4 zv = v4_load(z + i), d = v4_load(dx + i);
                v4_store(dx + i, v4_select(zv != zero, d + v4_load(dy + i) * zv, d));
            }
            for (; i < nb; i++)
                if (z[i] != 0.0f) dx[i] += dy[i] * z[i];
        }
    }
}

/* out[i] = 0 + x[i]: a gradient passed through as adding it into a zeroed buffer would. */
static void copy_plus_zero(void *p, int64_t i0, int64_t i1, int tid) {
    const pw_ctx *c = p;
    (void)tid;
    const pw_v4 zero = {0};
    float *o = c->out;
    const float *x = c->x;
    int64_t i = i0;
    for (; i + 4 <= i1; i += 4) v4_store(o + i, zero + v4_load(x + i));
    for (; i < i1; i++) o[i] = 0.0f + x[i];
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

static qkv_status dropout_backward(const char *fn, int set, qkv_runtime *rt, float *dinp,
                                   const float *dout, int64_t n, float p, uint64_t seed,
                                   uint64_t stream) {
    NN_NONNULL(fn, dout);
    QKV_TRY(check_n(fn, n));
    QKV_TRY(check_p(fn, p));
    if (!dinp) return QKV_OK; /* a NULL gradient is skipped */
    if (p == 0.0f && set) {
        pw_ctx c = {.x = dout, .out = dinp};
        qkv_parallel_for(rt, n, PW_GRAIN, copy_plus_zero, &c);
        return QKV_OK;
    }
    if (p == 0.0f) return qkv_nn_residual_backward(rt, dinp, NULL, dout, n);
    pw_ctx c = {.dy = dout,
                .dx = dinp,
                .p = p,
                .keep_scale = (float)(1.0 / (1.0 - (double)p)),
                .seed = seed,
                .stream = stream,
                .set = set};
    dropout_setup(&c);
    qkv_parallel_for(rt, n, PW_GRAIN, dropout_range, &c);
    return QKV_OK;
}

qkv_status qkv_nn_dropout_backward(qkv_runtime *rt, float *dinp, const float *dout, int64_t n,
                                   float p, uint64_t seed, uint64_t stream) {
    return dropout_backward("qkv_nn_dropout_backward", 0, rt, dinp, dout, n, p, seed, stream);
}

qkv_status qkv_nn_dropout_backward_set(qkv_runtime *rt, float *dinp, const float *dout, int64_t n,
                                       float p, uint64_t seed, uint64_t stream) {
    static const char fn[] = "qkv_nn_dropout_backward_set";
    NN_NONNULL(fn, dinp);
    return dropout_backward(fn, 1, rt, dinp, dout, n, p, seed, stream);
}
