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

/* ---------------------------------------------------------------- beam groups */

qkv_status qkv__kv_group_init(qkv_kv_cache *g, int64_t ways, int64_t n_layers, int64_t cap,
                              int64_t n_kv_heads, int64_t head_dim) {
    if (ways < 1) return qkv__fail(QKV_ERR_INVALID_ARG, "kv cache: a group needs ways >= 1");
    for (int64_t w = 0; w < ways; w++) memset(&g[w], 0, sizeof g[w]);
    size_t rows, slots;
    if (qkv__mul_overflow((size_t)cap, (size_t)ways, &rows) ||
        qkv__mul_overflow(rows, sizeof(int32_t), &slots) || rows > (size_t)INT64_MAX)
        return qkv__fail(QKV_ERR_OVERFLOW, "kv cache: %lld tokens x %lld beams overflow",
                         (long long)cap, (long long)ways);
    /* one block of cap·ways token rows: k, v [L, cap·ways, Hk, D] */
    QKV_TRY(qkv__kv_cache_init(&g[0], n_layers, (int64_t)rows, n_kv_heads, head_dim));
    int32_t *slot = qkv__alloc(slots); /* [ways, cap] */
    if (!slot) {
        qkv__kv_cache_release(&g[0]);
        return qkv__fail(QKV_ERR_NOMEM, "kv cache: out of memory");
    }
    const qkv_kv_cache base = g[0];
    for (int64_t w = 0; w < ways; w++) {
        g[w] = base;
        g[w].cap = cap;
        g[w].ways = ways;
        g[w].way = w;
        g[w].slot = slot + w * cap;
    }
    return QKV_OK;
}

qkv_status qkv__kv_group_reserve(qkv_kv_cache *g, int64_t cap) {
    const int64_t ways = g[0].ways, len = g[0].len;
    if (cap <= g[0].cap) return QKV_OK;
    qkv_kv_cache *n = qkv__calloc((size_t)ways, sizeof *n);
    if (!n) return qkv__fail(QKV_ERR_NOMEM, "kv cache: out of memory");
    qkv_status st = qkv__kv_group_init(n, ways, g[0].n_layers, cap, g[0].n_kv_heads, g[0].head_dim);
    if (st != QKV_OK) {
        qkv__free(n);
        return st;
    }
    const size_t bytes = sizeof(float) * (size_t)(len * ways * g[0].n_kv_heads * g[0].head_dim);
    for (int64_t l = 0; l < g[0].n_layers; l++) { /* positions [0, len) are contiguous */
        memcpy(qkv__kv_cache_k(&n[0], l), qkv__kv_cache_k(&g[0], l), bytes);
        memcpy(qkv__kv_cache_v(&n[0], l), qkv__kv_cache_v(&g[0], l), bytes);
    }
    for (int64_t w = 0; w < ways; w++) {
        memcpy(n[w].slot, g[w].slot, sizeof(int32_t) * (size_t)g[w].len);
        n[w].len = g[w].len;
    }
    qkv__kv_group_release(g);
    memcpy(g, n, sizeof *n * (size_t)ways);
    qkv__free(n);
    return QKV_OK;
}

void qkv__kv_group_release(qkv_kv_cache *g) {
    if (!g || !g[0].slot) return;
    const int64_t ways = g[0].ways;
    qkv__free(g[0].k);
    qkv__free(g[0].slot);
    for (int64_t w = 0; w < ways; w++) memset(&g[w], 0, sizeof g[w]);
}
