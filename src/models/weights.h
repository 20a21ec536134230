/* weights.h — loading one model tensor from safetensors as F32 with an exact shape: shared by
 * every model of src/models, so every model refuses a missing or misshaped tensor the same way
 * (its name, expected and found shapes) and converts F16/BF16 the same way. */
#ifndef QKV_MODELS_WEIGHTS_H
#define QKV_MODELS_WEIGHTS_H

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

#endif
