/* nn_internal.h — argument checks and threading helpers shared by the files of src/nn.
 *
 * Every public nn function validates before it writes anything, so a failing call leaves the
 * caller's buffers untouched. The checks return QKV_ERR_INVALID_ARG through qkv__fail with a
 * message of the form "<function>: <argument> ...", which the tests match on. */
#ifndef QKV_NN_INTERNAL_H
#define QKV_NN_INTERNAL_H

#include "core/error.h"
#include "qkv.h"

#include <stdint.h>

/* Fail with INVALID_ARG unless cond holds. */
#define NN_REQUIRE(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond)) return qkv__fail(QKV_ERR_INVALID_ARG, __VA_ARGS__);                           \
    } while (0)

#define NN_NONNULL(fn, p) NN_REQUIRE((p) != NULL, "%s: %s is NULL", fn, #p)

#define NN_POSITIVE(fn, n)                                                                         \
    NN_REQUIRE((n) > 0, "%s: %s must be positive (got %lld)", fn, #n, (long long)(n))

/* The largest element count any nn buffer may have: its size in bytes as double scratch
 * (8 bytes per element) still fits in int64 and size_t. */
#define NN_MAX_NUMEL (INT64_MAX / 8)

/* a * b when both are positive and the product is at most NN_MAX_NUMEL; else -1. */
static inline int64_t nn_mul(int64_t a, int64_t b) {
    int64_t r;
    if (a <= 0 || b <= 0 || __builtin_mul_overflow(a, b, &r) || r > NN_MAX_NUMEL) return -1;
    return r;
}

/* Fail unless a * b fits; `what` spells the product in the message ("N*C"). */
#define NN_NUMEL2(fn, what, a, b, out)                                                             \
    do {                                                                                           \
        (out) = nn_mul((a), (b));                                                                  \
        NN_REQUIRE((out) > 0, "%s: %s = %lld * %lld overflows", fn, what, (long long)(a),          \
                   (long long)(b));                                                                \
    } while (0)

/* Rows handed to one thread at least: enough that a chunk does ~32k multiply-adds, so small
 * problems stay on the calling thread. */
static inline int64_t nn_grain(int64_t work_per_row) {
    const int64_t target = 32768;
    if (work_per_row <= 0) return target;
    int64_t g = target / work_per_row;
    return g < 1 ? 1 : g;
}

/* Channel block of the column-wise reductions (dweight, dbias, dgamma): one stack array of
 * doubles, so the reduction over rows reads contiguous row segments. */
#define NN_CBLOCK 64

/* Lays saved-activation buffers out in one caller buffer: each piece starts on a 64-byte
 * boundary (16 floats). With base NULL it only counts; overflow is sticky. */
typedef struct nn_layout {
    float *base;  /* NULL: measure only */
    int64_t used; /* floats handed out so far */
    int overflow; /* a size was invalid or the total would pass NN_MAX_NUMEL */
} nn_layout;

static inline float *nn_take(nn_layout *l, int64_t n) {
    if (n < 0 || n > NN_MAX_NUMEL - 15 || (n + 15) / 16 * 16 > NN_MAX_NUMEL - l->used) {
        l->overflow = 1;
        return NULL;
    }
    float *p = l->base ? l->base + l->used : NULL;
    l->used += (n + 15) / 16 * 16;
    return p;
}

/* The layers the module compositions (mha.c, block.c) are written over: the reference twins
 * (qkv__nn_ops_ref) or the fast layers (qkv__nn_ops_fast), so each composition is written once
 * and exists in both forms. Signatures are the reference ones (nn_ref.h). */
#include "kernels/gemm.h" /* qkv_act */
struct qkv_nn_rope;
typedef struct qkv__nn_ops {
    const char *suffix; /* "_ref" or "": completes the function names in messages */
    qkv_status (*linear_fwd)(qkv_runtime *rt, float *out, const float *inp, const float *weight,
                             const float *bias, int64_t N, int64_t C, int64_t OC);
    qkv_status (*linear_bwd)(qkv_runtime *rt, float *dinp, float *dweight, float *dbias,
                             const float *dout, const float *inp, const float *weight, int64_t N,
                             int64_t C, int64_t OC);
    qkv_status (*rope_fwd)(qkv_runtime *rt, float *out, const float *inp,
                           const struct qkv_nn_rope *rope, int64_t B, int64_t T, int64_t H,
                           int64_t D, int64_t pos0);
    qkv_status (*rope_bwd)(qkv_runtime *rt, float *dinp, const float *dout,
                           const struct qkv_nn_rope *rope, int64_t B, int64_t T, int64_t H,
                           int64_t D, int64_t pos0);
    qkv_status (*act_fwd)(qkv_runtime *rt, qkv_act act, float *out, const float *inp, int64_t n);
    qkv_status (*act_bwd)(qkv_runtime *rt, qkv_act act, float *dinp, const float *dout,
                          const float *inp, int64_t n);
    qkv_status (*ln_fwd)(qkv_runtime *rt, float *out, float *mean, float *rstd, const float *inp,
                         const float *weight, const float *bias, int64_t N, int64_t C, float eps);
    qkv_status (*ln_bwd)(qkv_runtime *rt, float *dinp, float *dweight, float *dbias,
                         const float *dout, const float *inp, const float *weight,
                         const float *mean, const float *rstd, int64_t N, int64_t C);
    qkv_status (*res_fwd)(qkv_runtime *rt, float *out, const float *a, const float *b, int64_t n);
    qkv_status (*res_bwd)(qkv_runtime *rt, float *da, float *db, const float *dout, int64_t n);
} qkv__nn_ops;
extern const qkv__nn_ops qkv__nn_ops_ref, qkv__nn_ops_fast;

/* The multi-head attention module over either set of layers (mha.c; block.c composes it). */
struct qkv_nn_mha_acts;
struct qkv_nn_mha_params;
struct qkv_nn_mha_config;
struct qkv_nn_mha_grads;
struct qkv_nn_attn_mask;
qkv_status qkv__nn_mha_forward(const qkv__nn_ops *ops, qkv_runtime *rt, float *out,
                               struct qkv_nn_mha_acts *acts, const float *x, const float *mem,
                               const struct qkv_nn_mha_params *params,
                               const struct qkv_nn_mha_config *cfg,
                               const struct qkv_nn_attn_mask *mask, int64_t B, int64_t Tq,
                               int64_t Tk);
qkv_status
qkv__nn_mha_backward(const qkv__nn_ops *ops, qkv_runtime *rt, float *dx, float *dmem,
                     const struct qkv_nn_mha_grads *grads, const float *dout, const float *x,
                     const float *mem, const struct qkv_nn_mha_acts *acts,
                     const struct qkv_nn_mha_params *params, const struct qkv_nn_mha_config *cfg,
                     const struct qkv_nn_attn_mask *mask, int64_t B, int64_t Tq, int64_t Tk);

/* Validates cfg (and the sizes) and lays out a qkv_nn_mha_acts (block.c reuses it). */
struct qkv_nn_mha_config;
struct qkv_nn_mha_acts;
qkv_status qkv__nn_mha_acts_layout(const char *fn, nn_layout *l, struct qkv_nn_mha_acts *acts,
                                   const struct qkv_nn_mha_config *cfg, int64_t B, int64_t Tq,
                                   int64_t Tk);

/* Validates an adapter of a (C -> OC) layer over N rows (linear_ref.c): a, b non-NULL, r >= 1,
 * scale finite, dropout in [0, 1), and the products N*r, r*C, OC*r fit. */
struct qkv_nn_lora;
qkv_status qkv__nn_lora_check(const char *fn, const struct qkv_nn_lora *lora, int64_t N, int64_t C,
                              int64_t OC);

/* Validates a RoPE call (positional_ref.c) and gives the rotated dims R (rope->dims or D). */
struct qkv_nn_rope;
qkv_status qkv__nn_rope_check(const char *fn, const struct qkv_nn_rope *rope, int64_t B, int64_t T,
                              int64_t H, int64_t D, int64_t pos0, int64_t *R);

#endif
