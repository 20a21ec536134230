/* hashmap.c — see hashmap.h. */
#include "tokenizer/hashmap.h"

#include "core/alloc.h"
#include "core/error.h"

#include <string.h>

void qkv__strmap_init(qkv__strmap *m) { memset(m, 0, sizeof *m); }

void qkv__strmap_free(qkv__strmap *m) {
    if (!m) return;
    qkv__free(m->slots);
    qkv__free(m->pool);
    memset(m, 0, sizeof *m);
}

void qkv__strmap_clear(qkv__strmap *m) {
    if (m->slots) memset(m->slots, 0, m->cap * sizeof *m->slots);
    m->count = 0;
    m->pool_len = 0;
}

static qkv_status strmap_grow(qkv__strmap *m) {
    size_t ncap = m->cap ? m->cap * 2 : 64;
    qkv__strmap_slot *ns = qkv__calloc(ncap, sizeof *ns);
    if (!ns) return qkv__fail(QKV_ERR_NOMEM, "tokenizer: hash table of %zu slots", ncap);
    for (size_t i = 0; i < m->cap; i++) {
        qkv__strmap_slot *s = &m->slots[i];
        if (!s->hash) continue;
        size_t j = s->hash & (ncap - 1);
        while (ns[j].hash) j = (j + 1) & (ncap - 1);
        ns[j] = *s;
    }
    qkv__free(m->slots);
    m->slots = ns;
    m->cap = ncap;
    return QKV_OK;
}

qkv_status qkv__strmap_put(qkv__strmap *m, const void *key, size_t len, int32_t value) {
    uint64_t h = qkv__strmap_hash(key, len);
    if (!h) h = 1;
    if ((m->count + 1) * 2 > m->cap) QKV_TRY(strmap_grow(m));
    size_t j = h & (m->cap - 1);
    for (;; j = (j + 1) & (m->cap - 1)) {
        qkv__strmap_slot *s = &m->slots[j];
        if (!s->hash) break;
        if (s->hash == h && s->len == len && memcmp(m->pool + s->off, key, len) == 0) {
            s->value = value;
            return QKV_OK;
        }
    }
    if (len > UINT32_MAX - 1 || m->pool_len + len + 1 > UINT32_MAX)
        return qkv__fail(QKV_ERR_OVERFLOW, "tokenizer: vocabulary strings exceed 4 GiB");
    if (m->pool_len + len + 1 > m->pool_cap) {
        size_t ncap = m->pool_cap ? m->pool_cap : 4096;
        while (ncap < m->pool_len + len + 1) ncap *= 2;
        char *np = qkv__alloc(ncap);
        if (!np) return qkv__fail(QKV_ERR_NOMEM, "tokenizer: %zu bytes of vocabulary", ncap);
        if (m->pool_len) memcpy(np, m->pool, m->pool_len);
        qkv__free(m->pool);
        m->pool = np;
        m->pool_cap = ncap;
    }
    qkv__strmap_slot *s = &m->slots[j];
    s->hash = h;
    s->off = (uint32_t)m->pool_len;
    s->len = (uint32_t)len;
    s->value = value;
    if (len) memcpy(m->pool + m->pool_len, key, len);
    m->pool[m->pool_len + len] = 0;
    m->pool_len += len + 1;
    m->count++;
    return QKV_OK;
}

int qkv__strmap_get_h(const qkv__strmap *m, const void *key, size_t len, uint64_t h,
                      int32_t *value) {
    if (!m->cap) return 0;
    if (!h) h = 1;
    for (size_t j = h & (m->cap - 1);; j = (j + 1) & (m->cap - 1)) {
        const qkv__strmap_slot *s = &m->slots[j];
        if (!s->hash) return 0;
        if (s->hash == h && s->len == len && memcmp(m->pool + s->off, key, len) == 0) {
            if (value) *value = s->value;
            return 1;
        }
    }
}

const char *qkv__strmap_key_at(const qkv__strmap *m, size_t i, size_t *len, int32_t *value) {
    if (i >= m->cap || !m->slots[i].hash) return NULL;
    if (len) *len = m->slots[i].len;
    if (value) *value = m->slots[i].value;
    return m->pool + m->slots[i].off;
}

void qkv__u64map_init(qkv__u64map *m) { memset(m, 0, sizeof *m); }

void qkv__u64map_free(qkv__u64map *m) {
    if (!m) return;
    qkv__free(m->keys);
    qkv__free(m->vals);
    memset(m, 0, sizeof *m);
}

static inline size_t u64_slot(uint64_t k, size_t cap) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return (size_t)k & (cap - 1);
}

qkv_status qkv__u64map_put(qkv__u64map *m, uint64_t key, uint64_t value) {
    if ((m->count + 1) * 2 > m->cap) {
        size_t ncap = m->cap ? m->cap * 2 : 64;
        uint64_t *nk = qkv__alloc(ncap * sizeof *nk), *nv = qkv__alloc(ncap * sizeof *nv);
        if (!nk || !nv) {
            qkv__free(nk);
            qkv__free(nv);
            return qkv__fail(QKV_ERR_NOMEM, "tokenizer: hash table of %zu slots", ncap);
        }
        memset(nk, 0xFF, ncap * sizeof *nk);
        for (size_t i = 0; i < m->cap; i++) {
            if (m->keys[i] == UINT64_MAX) continue;
            size_t j = u64_slot(m->keys[i], ncap);
            while (nk[j] != UINT64_MAX) j = (j + 1) & (ncap - 1);
            nk[j] = m->keys[i];
            nv[j] = m->vals[i];
        }
        qkv__free(m->keys);
        qkv__free(m->vals);
        m->keys = nk;
        m->vals = nv;
        m->cap = ncap;
    }
    size_t j = u64_slot(key, m->cap);
    while (m->keys[j] != UINT64_MAX && m->keys[j] != key) j = (j + 1) & (m->cap - 1);
    if (m->keys[j] == UINT64_MAX) m->count++;
    m->keys[j] = key;
    m->vals[j] = value;
    return QKV_OK;
}

int qkv__u64map_get(const qkv__u64map *m, uint64_t key, uint64_t *value) {
    if (!m->cap) return 0;
    for (size_t j = u64_slot(key, m->cap);; j = (j + 1) & (m->cap - 1)) {
        if (m->keys[j] == key) {
            *value = m->vals[j];
            return 1;
        }
        if (m->keys[j] == UINT64_MAX) return 0;
    }
}
