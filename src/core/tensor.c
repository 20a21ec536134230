/* tensor.c — qkv_tensor: a non-owning, strided view (strides in elements).
 *
 * Invariant of a view built by qkv_tensor_init: its byte size, computed with every zero dim
 * counted as 1, fits in int64_t and ptrdiff_t. Counting zero dims as 1 keeps every stride
 * representable even for empty tensors, so code walking strides never needs its own checks. */
#include "core/error.h"
#include "qkv.h"

#include <stdint.h>

static int mul_i64(int64_t a, int64_t b, int64_t *out) { return __builtin_mul_overflow(a, b, out); }

qkv_status qkv_tensor_init(qkv_tensor *t, qkv_dtype dtype, int ndim, const int64_t *shape,
                           void *data) {
    if (!t) return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_tensor_init: t is NULL");
    size_t esize = qkv_dtype_size(dtype);
    if (esize == 0)
        return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_tensor_init: invalid dtype %d", (int)dtype);
    if (ndim < 0 || ndim > QKV_MAX_DIMS)
        return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_tensor_init: ndim %d is outside [0, %d]", ndim,
                         QKV_MAX_DIMS);
    if (ndim > 0 && !shape) return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_tensor_init: shape is NULL");

    qkv_tensor v = {.dtype = dtype, .ndim = ndim, .data = data};
    int64_t stride = 1; /* product of the (zero-as-one) dims right of d; bounds the numel */
    for (int d = ndim - 1; d >= 0; d--) {
        if (shape[d] < 0)
            return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_tensor_init: dim %d is negative (%lld)", d,
                             (long long)shape[d]);
        v.shape[d] = shape[d];
        v.strides[d] = stride;
        if (mul_i64(stride, shape[d] ? shape[d] : 1, &stride))
            return qkv__fail(QKV_ERR_OVERFLOW, "qkv_tensor_init: element count overflows");
    }
    int64_t bytes;
    if (mul_i64(stride, (int64_t)esize, &bytes) || (uint64_t)bytes > (uint64_t)PTRDIFF_MAX)
        return qkv__fail(QKV_ERR_OVERFLOW, "qkv_tensor_init: byte size overflows");
    *t = v;
    return QKV_OK;
}

/* Number of elements; -1 on overflow or an invalid view (NULL, bad ndim, negative dim). */
int64_t qkv_tensor_numel(const qkv_tensor *t) {
    if (!t || t->ndim < 0 || t->ndim > QKV_MAX_DIMS) return -1;
    int empty = 0;
    for (int d = 0; d < t->ndim; d++) {
        if (t->shape[d] < 0) return -1;
        if (t->shape[d] == 0) empty = 1;
    }
    if (empty) return 0; /* 0 x huge is 0, not an overflow */
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++)
        if (mul_i64(n, t->shape[d], &n)) return -1;
    return n;
}

/* Row-major contiguous: each dim of size > 1 has stride = product of the dims after it. Dims of
 * size 1 may have any stride, and an empty tensor is contiguous (PyTorch's rule). 0 for an
 * invalid view. */
int qkv_tensor_is_contiguous(const qkv_tensor *t) {
    int64_t n = qkv_tensor_numel(t);
    if (n < 0) return 0;
    if (n == 0) return 1;
    int64_t expected = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        if (t->shape[d] != 1 && t->strides[d] != expected) return 0;
        expected *= t->shape[d]; /* cannot overflow: the product of all dims is n */
    }
    return 1;
}
