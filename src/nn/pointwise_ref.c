/* pointwise_ref.c — (the double-precision reference; the fast layers are in nn.h) elementwise
 * layers: GELU (exact and tanh), ReLU, SiLU, tanh, residual add, dropout.
 *
 * Each value is computed in double and rounded once, so a float result is within half an ulp
 * of the double formula's (up to libm's erf/tanh/exp accuracy). One range function serves all
 * ops so the parallel split is written once; elementwise results never depend on the split.
 *
 * Dropout draws its mask from the counter-based generator of src/core/rng.h: the mask of
 * element i is a pure function of (seed, stream, i), so the backward regenerates it exactly and
 * any thread can produce any element. */
#include "core/rng.h"
#include "nn/nn_internal.h"
#include "nn/nn_ref.h"

#include <math.h>

#define SQRT_HALF 0.70710678118654752440      /* 1/√2 */
#define INV_SQRT_2PI 0.39894228040143267794   /* 1/√(2π) */
#define SQRT_2_OVER_PI 0.79788456080286535588 /* √(2/π) */
#define GELU_TANH_K 0.044715

typedef enum {
    OP_ACT_FWD,
    OP_ACT_BWD,
    OP_RESIDUAL_FWD,
    OP_RESIDUAL_BWD,
    OP_DROPOUT_FWD,
    OP_DROPOUT_BWD
} pw_op;

typedef struct {
    pw_op op;
    qkv_act act;
    float *out, *dinp, *db; /* (n) outputs; db is the second gradient of the residual */
    const float *inp, *inp2, *dout;
    double p, keep_scale; /* dropout */
    uint64_t seed, stream;
} pw_ctx;

/* Φ(x) and x·Φ(x), exact GELU. */
static double gelu_exact(double x) { return 0.5 * x * (1.0 + erf(x * SQRT_HALF)); }
static double gelu_exact_grad(double x) {
    return 0.5 * (1.0 + erf(x * SQRT_HALF)) + x * INV_SQRT_2PI * exp(-0.5 * x * x);
}
static double gelu_tanh(double x) {
    double u = SQRT_2_OVER_PI * (x + GELU_TANH_K * x * x * x);
    return 0.5 * x * (1.0 + tanh(u));
}
static double gelu_tanh_grad(double x) {
    double u = SQRT_2_OVER_PI * (x + GELU_TANH_K * x * x * x);
    double t = tanh(u);
    double du = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_TANH_K * x * x);
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du;
}
/* σ(x) without overflow for either sign. */
static double sigmoid(double x) {
    if (x >= 0) return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

static double act_value(qkv_act a, double x) {
    switch (a) {
    case QKV_ACT_NONE: return x;
    case QKV_ACT_GELU_ERF: return gelu_exact(x);
    case QKV_ACT_GELU_TANH: return gelu_tanh(x);
    case QKV_ACT_RELU: return x > 0 ? x : 0.0;
    case QKV_ACT_SILU: return x * sigmoid(x);
    case QKV_ACT_TANH: return tanh(x);
    }
    return NAN;
}

static double act_grad(qkv_act a, double x) {
    switch (a) {
    case QKV_ACT_NONE: return 1.0;
    case QKV_ACT_GELU_ERF: return gelu_exact_grad(x);
    case QKV_ACT_GELU_TANH: return gelu_tanh_grad(x);
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
    return NAN;
}

/* Uniforms are drawn in blocks of this many (4 per Philox call). */
#define DROPOUT_BLOCK 256

static void pointwise_range(void *p, int64_t i0, int64_t i1, int tid) {
    const pw_ctx *c = p;
    (void)tid;
    switch (c->op) {
    case OP_ACT_FWD:
        for (int64_t i = i0; i < i1; i++) c->out[i] = (float)act_value(c->act, c->inp[i]);
        break;
    case OP_ACT_BWD:
        for (int64_t i = i0; i < i1; i++)
            c->dinp[i] =
                (float)((double)c->dinp[i] + (double)c->dout[i] * act_grad(c->act, c->inp[i]));
        break;
    case OP_RESIDUAL_FWD:
        for (int64_t i = i0; i < i1; i++) c->out[i] = c->inp[i] + c->inp2[i];
        break;
    case OP_RESIDUAL_BWD:
        for (int64_t i = i0; i < i1; i++) {
            if (c->dinp) c->dinp[i] += c->dout[i];
            if (c->db) c->db[i] += c->dout[i];
        }
        break;
    case OP_DROPOUT_FWD:
    case OP_DROPOUT_BWD: {
        float u[DROPOUT_BLOCK];
        const int fwd = c->op == OP_DROPOUT_FWD;
        for (int64_t b0 = i0; b0 < i1; b0 += DROPOUT_BLOCK) {
            int64_t nb = i1 - b0 < DROPOUT_BLOCK ? i1 - b0 : DROPOUT_BLOCK;
            qkv__rng_uniform_n(c->seed, c->stream, (uint64_t)b0, u, nb);
            for (int64_t k = 0; k < nb; k++) {
                const int64_t i = b0 + k;
                const int keep = (double)u[k] >= c->p;
                if (fwd)
                    c->out[i] = keep ? (float)((double)c->inp[i] * c->keep_scale) : 0.0f;
                else if (keep)
                    c->dinp[i] = (float)((double)c->dinp[i] + (double)c->dout[i] * c->keep_scale);
            }
        }
        break;
    }
    }
}

static void pointwise_run(qkv_runtime *rt, pw_ctx *c, int64_t n, int64_t cost) {
    qkv_parallel_for(rt, n, nn_grain(cost), pointwise_range, c);
}

static qkv_status check_act(const char *fn, qkv_act act) {
    NN_REQUIRE(act == QKV_ACT_GELU_ERF || act == QKV_ACT_GELU_TANH || act == QKV_ACT_RELU ||
                   act == QKV_ACT_SILU || act == QKV_ACT_TANH,
               "%s: act = %d is not a qkv_act", fn, (int)act);
    return QKV_OK;
}

qkv_status qkv_nn_act_forward_ref(qkv_runtime *rt, qkv_act act, float *out, const float *inp,
                                  int64_t n) {
    static const char fn[] = "qkv_nn_act_forward_ref";
    QKV_TRY(check_act(fn, act));
    NN_NONNULL(fn, out);
    NN_NONNULL(fn, inp);
    NN_POSITIVE(fn, n);
    pw_ctx c = {.op = OP_ACT_FWD, .act = act, .out = out, .inp = inp};
    pointwise_run(rt, &c, n, 32);
    return QKV_OK;
}

qkv_status qkv_nn_act_backward_ref(qkv_runtime *rt, qkv_act act, float *dinp, const float *dout,
                                   const float *inp, int64_t n) {
    static const char fn[] = "qkv_nn_act_backward_ref";
    QKV_TRY(check_act(fn, act));
    NN_NONNULL(fn, dout);
    NN_NONNULL(fn, inp);
    NN_POSITIVE(fn, n);
    if (!dinp) return QKV_OK;
    pw_ctx c = {.op = OP_ACT_BWD, .act = act, .dinp = dinp, .dout = dout, .inp = inp};
    pointwise_run(rt, &c, n, 32);
    return QKV_OK;
}

qkv_status qkv_nn_gelu_forward_ref(qkv_runtime *rt, float *out, const float *inp, int64_t n,
                                   int tanh_approx) {
    return qkv_nn_act_forward_ref(rt, tanh_approx ? QKV_ACT_GELU_TANH : QKV_ACT_GELU_ERF, out, inp,
                                  n);
}
qkv_status qkv_nn_gelu_backward_ref(qkv_runtime *rt, float *dinp, const float *dout,
                                    const float *inp, int64_t n, int tanh_approx) {
    return qkv_nn_act_backward_ref(rt, tanh_approx ? QKV_ACT_GELU_TANH : QKV_ACT_GELU_ERF, dinp,
                                   dout, inp, n);
}
qkv_status qkv_nn_relu_forward_ref(qkv_runtime *rt, float *out, const float *inp, int64_t n) {
    return qkv_nn_act_forward_ref(rt, QKV_ACT_RELU, out, inp, n);
}
qkv_status qkv_nn_relu_backward_ref(qkv_runtime *rt, float *dinp, const float *dout,
                                    const float *inp, int64_t n) {
    return qkv_nn_act_backward_ref(rt, QKV_ACT_RELU, dinp, dout, inp, n);
}
qkv_status qkv_nn_silu_forward_ref(qkv_runtime *rt, float *out, const float *inp, int64_t n) {
    return qkv_nn_act_forward_ref(rt, QKV_ACT_SILU, out, inp, n);
}
qkv_status qkv_nn_silu_backward_ref(qkv_runtime *rt, float *dinp, const float *dout,
                                    const float *inp, int64_t n) {
    return qkv_nn_act_backward_ref(rt, QKV_ACT_SILU, dinp, dout, inp, n);
}

qkv_status qkv_nn_residual_forward_ref(qkv_runtime *rt, float *out, const float *a, const float *b,
                                       int64_t n) {
    static const char fn[] = "qkv_nn_residual_forward_ref";
    NN_NONNULL(fn, out);
    NN_NONNULL(fn, a);
    NN_NONNULL(fn, b);
    NN_POSITIVE(fn, n);
    pw_ctx c = {.op = OP_RESIDUAL_FWD, .out = out, .inp = a, .inp2 = b};
    pointwise_run(rt, &c, n, 1);
    return QKV_OK;
}

qkv_status qkv_nn_residual_backward_ref(qkv_runtime *rt, float *da, float *db, const float *dout,
                                        int64_t n) {
    static const char fn[] = "qkv_nn_residual_backward_ref";
    NN_NONNULL(fn, dout);
    NN_POSITIVE(fn, n);
    NN_REQUIRE(!da || da != db, "%s: da and db are the same buffer", fn);
    if (!da && !db) return QKV_OK;
    pw_ctx c = {.op = OP_RESIDUAL_BWD, .dinp = da, .db = db, .dout = dout};
    pointwise_run(rt, &c, n, 1);
    return QKV_OK;
}

static qkv_status check_dropout(const char *fn, int64_t n, float p) {
    NN_POSITIVE(fn, n);
    NN_REQUIRE(p >= 0.0f && p < 1.0f, "%s: p must be in [0, 1) (got %g)", fn, (double)p);
    return QKV_OK;
}

qkv_status qkv_nn_dropout_forward_ref(qkv_runtime *rt, float *out, const float *inp, int64_t n,
                                      float p, uint64_t seed, uint64_t stream) {
    static const char fn[] = "qkv_nn_dropout_forward_ref";
    NN_NONNULL(fn, out);
    NN_NONNULL(fn, inp);
    QKV_TRY(check_dropout(fn, n, p));
    pw_ctx c = {.op = OP_DROPOUT_FWD,
                .out = out,
                .inp = inp,
                .p = p,
                .keep_scale = 1.0 / (1.0 - (double)p),
                .seed = seed,
                .stream = stream};
    pointwise_run(rt, &c, n, 16);
    return QKV_OK;
}

qkv_status qkv_nn_dropout_backward_ref(qkv_runtime *rt, float *dinp, const float *dout, int64_t n,
                                       float p, uint64_t seed, uint64_t stream) {
    static const char fn[] = "qkv_nn_dropout_backward_ref";
    NN_NONNULL(fn, dout);
    QKV_TRY(check_dropout(fn, n, p));
    if (!dinp) return QKV_OK;
    pw_ctx c = {.op = OP_DROPOUT_BWD,
                .dinp = dinp,
                .dout = dout,
                .p = p,
                .keep_scale = 1.0 / (1.0 - (double)p),
                .seed = seed,
                .stream = stream};
    pointwise_run(rt, &c, n, 16);
    return QKV_OK;
}
