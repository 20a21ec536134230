/* weights.c — one model tensor as F32 with an exact shape (see weights.h). */
#include "models/weights.h"

#include "core/alloc.h"
#include "core/error.h"
#include "kernels/gemm_bf16.h"
#include "kernels/gemm_i8.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

qkv_status qkv__weight_find(qkv_safetensors *st, const char *path, const char *name, int64_t d0,
                            int64_t d1, const qkv_st_tensor **out) {
    const qkv_st_tensor *t = qkv_safetensors_find(st, name);
    int ndim = d1 ? 2 : 1;
    if (!t)
        return qkv__fail(QKV_ERR_FORMAT, "%s: missing tensor '%s' (expected shape [%lld%s%lld])",
                         path, name, (long long)d0, d1 ? ", " : "", d1 ? (long long)d1 : 0LL);
    if (t->ndim != ndim || t->shape[0] != d0 || (d1 && t->shape[1] != d1)) {
        char got[128] = "";
        size_t o = 0;
        for (int i = 0; i < t->ndim && o < sizeof got - 24; i++)
            o += (size_t)snprintf(got + o, sizeof got - o, "%s%lld", i ? ", " : "",
                                  (long long)t->shape[i]);
        return qkv__fail(QKV_ERR_FORMAT, "%s: tensor '%s' has shape [%s], expected [%lld%s%lld]",
                         path, name, got, (long long)d0, d1 ? ", " : "", d1 ? (long long)d1 : 0LL);
    }
    *out = t;
    return QKV_OK;
}

qkv_status qkv__weight_f32(qkv_safetensors *st, const char *path, const char *name, int64_t d0,
                           int64_t d1, qkv_owned_weights *owned, const float **out) {
    const qkv_st_tensor *t;
    QKV_TRY(qkv__weight_find(st, path, name, d0, d1, &t));
    size_t n = (size_t)d0 * (size_t)(d1 ? d1 : 1);
    if (t->dtype == QKV_DTYPE_F32) {
        *out = t->data;
        return QKV_OK;
    }
    if (t->dtype != QKV_DTYPE_F16 && t->dtype != QKV_DTYPE_BF16)
        return qkv__fail(QKV_ERR_UNSUPPORTED, "%s: tensor '%s' has dtype %s (F32, F16, BF16 only)",
                         path, name, qkv_dtype_name(t->dtype));
    float *f = qkv__alloc(n * sizeof(float));
    void **grown = f ? qkv__alloc((owned->n + 1) * sizeof *grown) : NULL;
    if (!f || !grown) {
        qkv__free(f);
        return qkv__fail(QKV_ERR_NOMEM, "%s: cannot convert tensor '%s'", path, name);
    }
    if (owned->n) memcpy(grown, owned->ptr, owned->n * sizeof *grown);
    qkv__free(owned->ptr);
    owned->ptr = grown;
    owned->ptr[owned->n++] = f;
    qkv__weight_widen(t, f);
    *out = f;
    return QKV_OK;
}

void qkv__weight_widen(const qkv_st_tensor *t, float *f) {
    const size_t n = t->nbytes / sizeof(uint16_t);
    if ((uintptr_t)t->data & 1u) { /* the format does not align: 16-bit values at an odd
                                      address, read byte-wise (rare; load time only) */
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, (const char *)t->data + 2 * i, sizeof h);
            f[i] = t->dtype == QKV_DTYPE_F16 ? qkv_f16_to_f32(h) : qkv_bf16_to_f32(h);
        }
    } else if (t->dtype == QKV_DTYPE_F16) {
        qkv_f16_to_f32_n(t->data, f, n);
    } else {
        qkv_bf16_to_f32_n(t->data, f, n);
    }
}

void qkv__owned_weights_free(qkv_owned_weights *owned) {
    for (size_t i = 0; i < owned->n; i++) qkv__free(owned->ptr[i]);
    qkv__free(owned->ptr);
    owned->ptr = NULL;
    owned->n = 0;
}

qkv_status qkv__packed_set_init(qkv_packed_set *s, qkv_dtype dtype, int64_t cap, const char *who) {
    *s = (qkv_packed_set){dtype, NULL, 0, 0};
    if (dtype != QKV_DTYPE_F32 && dtype != QKV_DTYPE_BF16 && dtype != QKV_DTYPE_F16 &&
        dtype != QKV_DTYPE_I8)
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: dtype %s for the weights (F32, BF16, F16, I8)",
                         who, qkv_dtype_name(dtype));
    if (cap < 0 || !(s->w = qkv__calloc(cap > 0 ? (size_t)cap : 1, sizeof *s->w)))
        return qkv__fail(QKV_ERR_NOMEM, "%s: out of memory", who);
    s->cap = cap;
    return QKV_OK;
}

qkv_status qkv__packed_linear(qkv_packed_set *s, int trans, int64_t K, int64_t N, const float *w,
                              int64_t ldw, const float *b, qkv_nn_linear *y) {
    if (s->n >= s->cap)
        return qkv__fail(QKV_ERR_INTERNAL, "packed weights: more than the %lld counted",
                         (long long)s->cap);
    if (s->dtype == QKV_DTYPE_I8) {
        qkv_gemm_i8_packed *q;
        QKV_TRY(qkv__gemm_i8_pack_f32(NULL, trans, K, N, w, ldw, &q));
        s->w[s->n++] = q;
        *y = qkv_nn_linear_packed_i8(q, b);
    } else if (s->dtype != QKV_DTYPE_F32) { /* bf16 or f16: the 16-bit GEMM */
        qkv_gemm_bf16_packed *h;
        if (s->dtype == QKV_DTYPE_F16)
            QKV_TRY(qkv__gemm_f16_pack_f32(NULL, trans, K, N, w, ldw, &h));
        else
            QKV_TRY(qkv__gemm_bf16_pack_f32(NULL, trans, K, N, w, ldw, &h));
        s->w[s->n++] = h;
        *y = qkv_nn_linear_packed_bf16(h, b);
    } else {
        qkv_gemm_packed *p;
        QKV_TRY(qkv__gemm_pack_b(NULL, trans, K, N, w, ldw, &p));
        s->w[s->n++] = p;
        *y = qkv_nn_linear_packed(p, b);
    }
    return QKV_OK;
}

void qkv__packed_set_free(qkv_packed_set *s) {
    for (int64_t i = 0; s->w && i < s->n; i++) {
        if (s->dtype == QKV_DTYPE_I8)
            qkv__gemm_i8_packed_free(s->w[i]);
        else if (s->dtype != QKV_DTYPE_F32)
            qkv__gemm_bf16_packed_free(s->w[i]);
        else
            qkv__gemm_packed_free(s->w[i]);
    }
    qkv__free(s->w);
    *s = (qkv_packed_set){0};
}
