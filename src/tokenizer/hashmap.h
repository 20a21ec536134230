/* hashmap.h — the two hash tables the tokenizers need: byte string -> int32 (vocabularies,
 * caches) and uint64 -> uint64 (BPE merges keyed by the id pair).
 *
 * Open addressing with linear probing, power-of-two capacity, load <= 1/2. Keys of a strmap
 * are copied into one growing byte pool owned by the map, so a map is three allocations. The
 * string hash is FNV-1a, which can be extended one byte at a time: WordPiece hashes every
 * prefix of a word in one pass (qkv__strmap_hash_step). Maps never shrink; no deletion (the
 * BPE cache is cleared whole instead). */
#ifndef QKV_TOKENIZER_HASHMAP_H
#define QKV_TOKENIZER_HASHMAP_H

#include "qkv.h"

#include <stddef.h>
#include <stdint.h>

#define QKV_FNV_OFFSET 0xcbf29ce484222325ull
#define QKV_FNV_PRIME 0x100000001b3ull

static inline uint64_t qkv__strmap_hash_step(uint64_t h, uint8_t b) {
    return (h ^ b) * QKV_FNV_PRIME;
}
static inline uint64_t qkv__strmap_hash(const void *key, size_t len) {
    const uint8_t *p = key;
    uint64_t h = QKV_FNV_OFFSET;
    for (size_t i = 0; i < len; i++) h = qkv__strmap_hash_step(h, p[i]);
    return h;
}

typedef struct qkv__strmap_slot {
    uint64_t hash; /* 0 = empty (a real hash of 0 is stored as 1) */
    uint32_t off;  /* key offset in the pool */
    uint32_t len;  /* key length */
    int32_t value;
    int32_t pad_;
} qkv__strmap_slot;

typedef struct qkv__strmap {
    qkv__strmap_slot *slots;
    size_t cap, count;
    char *pool; /* keys, each followed by a NUL so they can be used as C strings */
    size_t pool_len, pool_cap;
} qkv__strmap;

void qkv__strmap_init(qkv__strmap *m);
void qkv__strmap_free(qkv__strmap *m);
void qkv__strmap_clear(qkv__strmap *m); /* forget all keys, keep the memory */
/* Inserts or overwrites. NOMEM / OVERFLOW (keys past 4 GiB in total) with a message. */
qkv_status qkv__strmap_put(qkv__strmap *m, const void *key, size_t len, int32_t value);
/* 1 and *value if present, else 0. hash must be qkv__strmap_hash(key, len). */
int qkv__strmap_get_h(const qkv__strmap *m, const void *key, size_t len, uint64_t hash,
                      int32_t *value);
static inline int qkv__strmap_get(const qkv__strmap *m, const void *key, size_t len,
                                  int32_t *value) {
    return qkv__strmap_get_h(m, key, len, qkv__strmap_hash(key, len), value);
}
/* The stored copy of a key (NUL-terminated) for slot i, or NULL if the slot is empty. */
const char *qkv__strmap_key_at(const qkv__strmap *m, size_t i, size_t *len, int32_t *value);

typedef struct qkv__u64map {
    uint64_t *keys; /* UINT64_MAX = empty */
    uint64_t *vals;
    size_t cap, count;
} qkv__u64map;

void qkv__u64map_init(qkv__u64map *m);
void qkv__u64map_free(qkv__u64map *m);
qkv_status qkv__u64map_put(qkv__u64map *m, uint64_t key, uint64_t value);
int qkv__u64map_get(const qkv__u64map *m, uint64_t key, uint64_t *value);

#endif
