/* weights.h — loading one model tensor from safetensors as F32 with an exact shape: shared by
 * every model of src/models, so every model refuses a missing or misshaped tensor the same way
 * (its name, expected and found shapes) and converts F16/BF16 the same way. */
#ifndef QKV_MODELS_WEIGHTS_H
#define QKV_MODELS_WEIGHTS_H

#include "nn/nn.h"
#include "qkv.h"

#include <stddef.h>
#include <stdint.h>

/* Converted tensors a model owns (F16/BF16 -> F32 copies); F32 tensors stay in the mapping. */
typedef struct qkv_owned_weights {
    void **ptr;
    size_t n;
} qkv_owned_weights;

/* *out = tensor `name` of st as F32 with shape [d0] (d1 == 0) or [d0, d1]. F32 is zero-copy;
 * F16/BF16 are converted into a buffer recorded in owned. Errors: FORMAT (missing, misshaped;
 * the message names path, the tensor and both shapes), UNSUPPORTED (other dtypes), NOMEM. */
qkv_status qkv__weight_f32(qkv_safetensors *st, const char *path, const char *name, int64_t d0,
                           int64_t d1, qkv_owned_weights *owned, const float **out);
void qkv__owned_weights_free(qkv_owned_weights *owned);
/* f [numel] = the F16 or BF16 tensor t widened to F32 (exact), whatever t's alignment. */
void qkv__weight_widen(const qkv_st_tensor *t, float *f);
/* *out = tensor `name` of st, checked as qkv__weight_f32 checks it (present, shape [d0] or
 * [d0, d1]), in whatever dtype it is stored: for loaders that convert it themselves. */
qkv_status qkv__weight_find(qkv_safetensors *st, const char *path, const char *name, int64_t d0,
                            int64_t d1, const qkv_st_tensor **out);

/* The packed linear weights a model owns, all in one dtype: QKV_DTYPE_F32 (qkv__gemm_pack_b),
 * QKV_DTYPE_BF16 or QKV_DTYPE_F16 (qkv__gemm_bf16_pack_f32 / qkv__gemm_f16_pack_f32: each weight
 * rounded to nearest even, half the bytes; the plain 16-bit kernels give the FP32 GEMM's bits
 * on the rounded weights), or QKV_DTYPE_I8 (qkv__gemm_i8_pack_f32: per-channel int8 weights,
 * dynamic int8 activations, kernels/gemm_i8.h). */
typedef struct qkv_packed_set {
    qkv_dtype dtype;
    void **w; /* qkv_gemm_packed *, qkv_gemm_bf16_packed * or qkv_gemm_i8_packed * */
    int64_t n, cap;
} qkv_packed_set;

/* Room for cap matrices in dtype (F32, BF16, F16 or I8, else INVALID_ARG naming `who`); NOMEM. */
qkv_status qkv__packed_set_init(qkv_packed_set *s, qkv_dtype dtype, int64_t cap, const char *who);
/* *y = the inference layer over op(W) [K, N] packed into s (trans 1: W [N, K] as nn.Linear
 * stores it; 0: W [K, ldw] from column 0, as GPT-2's Conv1D), bias b (NULL: none). W is not
 * referenced after. INTERNAL past cap; the packing's errors. */
qkv_status qkv__packed_linear(qkv_packed_set *s, int trans, int64_t K, int64_t N, const float *w,
                              int64_t ldw, const float *b, qkv_nn_linear *y);
void qkv__packed_set_free(qkv_packed_set *s);

#endif
