/* kv_cache.c — allocation of a sequence's key/value cache (see kv_cache.h). */
#include "models/kv_cache.h"

#include "core/alloc.h"
#include "core/error.h"

#include <string.h>

qkv_status qkv__kv_cache_init(qkv_kv_cache *c, int64_t n_layers, int64_t cap, int64_t n_kv_heads,
                              int64_t head_dim) {
    memset(c, 0, sizeof *c);
    if (n_layers <= 0 || cap <= 0 || n_kv_heads <= 0 || head_dim <= 0)
        return qkv__fail(QKV_ERR_INVALID_ARG, "kv cache: sizes must be positive");
    size_t n, bytes;
    if (qkv__mul_overflow((size_t)n_layers, (size_t)cap, &n) ||
        qkv__mul_overflow(n, (size_t)n_kv_heads, &n) ||
        qkv__mul_overflow(n, (size_t)head_dim, &n) ||
        qkv__mul_overflow(n, 2 * sizeof(float), &bytes))
        return qkv__fail(QKV_ERR_OVERFLOW, "kv cache: %lld tokens x %lld layers overflow",
                         (long long)cap, (long long)n_layers);
    float *mem = qkv__alloc(bytes); /* k then v, [L, cap, Hk, D] each */
    if (!mem)
        return qkv__fail(QKV_ERR_NOMEM, "kv cache: cannot allocate %zu bytes for %lld tokens",
                         bytes, (long long)cap);
    c->n_layers = n_layers;
    c->cap = cap;
    c->n_kv_heads = n_kv_heads;
    c->head_dim = head_dim;
    c->k = mem;
    c->v = mem + n;
    return QKV_OK;
}

void qkv__kv_cache_release(qkv_kv_cache *c) {
    if (!c) return;
    qkv__free(c->k);
    memset(c, 0, sizeof *c);
}

qkv_status qkv__kv_cache_reserve(qkv_kv_cache *c, int64_t cap) {
    if (cap <= c->cap) return QKV_OK;
    qkv_kv_cache n;
    QKV_TRY(qkv__kv_cache_init(&n, c->n_layers, cap, c->n_kv_heads, c->head_dim));
    const size_t row = (size_t)(c->n_kv_heads * c->head_dim), bytes = sizeof(float) * row;
    for (int64_t l = 0; l < c->n_layers; l++) {
        memcpy(qkv__kv_cache_k(&n, l), qkv__kv_cache_k(c, l), bytes * (size_t)c->len);
        memcpy(qkv__kv_cache_v(&n, l), qkv__kv_cache_v(c, l), bytes * (size_t)c->len);
    }
    n.len = c->len;
    qkv__kv_cache_release(c);
    *c = n;
    return QKV_OK;
}

void qkv__kv_cache_copy(qkv_kv_cache *dst, const qkv_kv_cache *src) {
    const size_t bytes = sizeof(float) * (size_t)(src->n_kv_heads * src->head_dim * src->len);
    for (int64_t l = 0; l < src->n_layers; l++) {
        memcpy(qkv__kv_cache_k(dst, l), qkv__kv_cache_k(src, l), bytes);
        memcpy(qkv__kv_cache_v(dst, l), qkv__kv_cache_v(src, l), bytes);
    }
    dst->len = src->len;
}
