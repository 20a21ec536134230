/* kv_cache.h — the key/value cache of one decoder sequence (internal API).
 *
 * Per layer, the keys and values of every token seen so far, in the layout the attention API
 * reads directly (k [Tk, Hk, D] of a batch of one): k and v are [L, cap, Hk, D], layer l's
 * block starting at l * cap * Hk * D. Keys are stored after RoPE (positions are baked in), so
 * a cache is only valid for the positions it was filled at; a sliding window therefore
 * re-prefills (models/generate.c), it never shifts entries. One allocation per cache. */
#ifndef QKV_MODELS_KV_CACHE_H
#define QKV_MODELS_KV_CACHE_H

#include "qkv.h"

#include <stdint.h>

typedef struct qkv_kv_cache {
    int64_t n_layers, cap, n_kv_heads, head_dim; /* L, capacity in tokens, Hk, D */
    int64_t len;                                 /* tokens stored, <= cap */
    float *k, *v;                                /* [L, cap, Hk, D] each (a group: below) */
    /* A member of a beam group (qkv__kv_group_init; slot NULL otherwise): the group's `ways`
     * caches share k, v [L, cap, ways, Hk, D]; this one writes its token t at way `way` of
     * position t, and its token j is at way slot[j] (where the beam's ancestor wrote it), so
     * reordering beams copies slot lists, never keys. */
    int64_t ways, way;
    int32_t *slot; /* [cap] */
} qkv_kv_cache;

/* Allocates an empty cache (len 0). OVERFLOW if the size does not fit, NOMEM. On failure the
 * cache is zeroed (releasing it is harmless). */
qkv_status qkv__kv_cache_init(qkv_kv_cache *c, int64_t n_layers, int64_t cap, int64_t n_kv_heads,
                              int64_t head_dim);
/* Frees the storage; c may be zeroed or NULL. */
void qkv__kv_cache_release(qkv_kv_cache *c);

/* Grows c to hold cap tokens, keeping its contents (no-op if it already does). On failure c
 * is unchanged. */
qkv_status qkv__kv_cache_reserve(qkv_kv_cache *c, int64_t cap);
/* dst's first src->len tokens = src's (same shape; dst->cap >= src->len); dst->len = src->len. */
void qkv__kv_cache_copy(qkv_kv_cache *dst, const qkv_kv_cache *src);

/* Layer l's keys / values: [cap, Hk, D] ([cap, ways, Hk, D] in a group). */
static inline float *qkv__kv_cache_k(const qkv_kv_cache *c, int64_t l) {
    return c->k + l * c->cap * (c->slot ? c->ways : 1) * c->n_kv_heads * c->head_dim;
}
static inline float *qkv__kv_cache_v(const qkv_kv_cache *c, int64_t l) {
    return c->v + l * c->cap * (c->slot ? c->ways : 1) * c->n_kv_heads * c->head_dim;
}
/* The row of token j in a layer block of k or v (rows of Hk·D floats). */
static inline int64_t qkv__kv_cache_row(const qkv_kv_cache *c, int64_t j) {
    return c->slot ? j * c->ways + c->slot[j] : j;
}

/* A beam group g[0, ways) (ways >= 1): one allocation for all, empty, way w = cache w. On
 * failure every member is zeroed. */
qkv_status qkv__kv_group_init(qkv_kv_cache *g, int64_t ways, int64_t n_layers, int64_t cap,
                              int64_t n_kv_heads, int64_t head_dim);
/* Grows every member of the group to cap tokens (they hold the same len), keeping contents. On
 * failure the group is unchanged. */
qkv_status qkv__kv_group_reserve(qkv_kv_cache *g, int64_t cap);
/* Frees the group's storage; g may be zeroed. */
void qkv__kv_group_release(qkv_kv_cache *g);

#endif
