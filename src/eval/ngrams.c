/* ngrams.c — counts of n-grams keyed by (tag, a run of uint32 in the caller's arena) (eval.h).
 * Open addressing over a power-of-two slot array holding indexes into the dense entries, so
 * entries iterate in insertion order and clearing touches only the used slots. */
#include "eval/eval.h"

#include "core/alloc.h"
#include "core/error.h"

#include <string.h>

static uint64_t hash(uint32_t tag, const uint32_t *v, uint32_t len) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ ((uint64_t)tag << 32 | len);
    for (uint32_t i = 0; i < len; i++) {
        h ^= v[i];
        h *= 0x100000001B3ull;
        h ^= h >> 29;
    }
    return h ^ (h >> 31);
}

void qkv__sb_ng_free(sb_ngrams *t) {
    qkv__free(t->e);
    qkv__free(t->slot);
    memset(t, 0, sizeof *t);
}

void qkv__sb_ng_clear(sb_ngrams *t) {
    for (size_t i = 0; i < t->n; i++) {
        size_t s = (size_t)t->e[i].hash & (t->nslot - 1);
        while (t->slot[s] != -1) {
            t->slot[s] = -1;
            s = (s + 1) & (t->nslot - 1);
        }
    }
    t->n = 0;
}

static int same(const sb_entry *e, const sb_buf *arena, uint64_t h, uint32_t tag, size_t off,
                uint32_t len) {
    return e->hash == h && e->tag == tag && e->len == len &&
           memcmp(arena->v + e->off, arena->v + off, len * sizeof(uint32_t)) == 0;
}

int64_t qkv__sb_ng_find(const sb_ngrams *t, const sb_buf *arena, uint32_t tag, size_t off,
                        uint32_t len) {
    if (!t->nslot) return -1;
    uint64_t h = hash(tag, arena->v + off, len);
    for (size_t s = (size_t)h & (t->nslot - 1);; s = (s + 1) & (t->nslot - 1)) {
        int64_t k = t->slot[s];
        if (k < 0) return -1;
        if (same(&t->e[k], arena, h, tag, off, len)) return k;
    }
}

static qkv_status grow(sb_ngrams *t) {
    size_t nslot = t->nslot ? t->nslot * 2 : 64;
    if (nslot > SIZE_MAX / 2 / sizeof(sb_entry))
        return qkv__fail(QKV_ERR_OVERFLOW, "too many n-grams");
    int64_t *slot = qkv__alloc(nslot * sizeof *slot);
    sb_entry *e = qkv__alloc(nslot / 2 * sizeof *e);
    if (!slot || !e) {
        qkv__free(slot);
        qkv__free(e);
        return qkv__fail(QKV_ERR_NOMEM, "out of memory for %zu n-grams", nslot / 2);
    }
    memset(slot, 0xFF, nslot * sizeof *slot);
    if (t->n) memcpy(e, t->e, t->n * sizeof *e);
    for (size_t i = 0; i < t->n; i++) {
        size_t s = (size_t)e[i].hash & (nslot - 1);
        while (slot[s] != -1) s = (s + 1) & (nslot - 1);
        slot[s] = (int64_t)i;
    }
    qkv__free(t->slot);
    qkv__free(t->e);
    t->slot = slot;
    t->e = e;
    t->nslot = nslot;
    t->cap = nslot / 2;
    return QKV_OK;
}

qkv_status qkv__sb_ng_add(sb_ngrams *t, const sb_buf *arena, uint32_t tag, size_t off, uint32_t len,
                          size_t *index) {
    if (t->n == t->cap) QKV_TRY(grow(t));
    uint64_t h = hash(tag, arena->v + off, len);
    size_t s = (size_t)h & (t->nslot - 1);
    for (;; s = (s + 1) & (t->nslot - 1)) {
        int64_t k = t->slot[s];
        if (k < 0) break;
        if (same(&t->e[k], arena, h, tag, off, len)) {
            *index = (size_t)k;
            return QKV_OK;
        }
    }
    sb_entry *e = &t->e[t->n];
    e->hash = h;
    e->tag = tag;
    e->len = len;
    e->off = off;
    e->count = 0;
    t->slot[s] = (int64_t)t->n;
    *index = t->n++;
    return QKV_OK;
}

qkv_status qkv__sb_intern(sb_ngrams *vocab, sb_buf *arena, const uint32_t *w, size_t len,
                          uint32_t *id) {
    size_t at = arena->n, idx;
    if (len > UINT32_MAX) return qkv__fail(QKV_ERR_OVERFLOW, "a word of 2^32 code points");
    QKV_TRY(qkv__sb_append(arena, w, len));
    QKV_TRY(qkv__sb_ng_add(vocab, arena, 0, at, (uint32_t)len, &idx));
    if (vocab->e[idx].off != at) arena->n = at; /* known: drop the copy */
    *id = (uint32_t)idx;
    return QKV_OK;
}
