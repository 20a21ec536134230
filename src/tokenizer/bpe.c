/* bpe.c — the BPE model of tokenizers (BPE::merge_word + Word::merge_all) and GPT-2's
 * byte-to-unicode table.
 *
 * A word starts as one symbol per byte (byte-level) or per char; merges are applied by rank
 * with a binary min-heap of (rank, position) over a doubly linked list of symbols: each merge
 * is O(log n) and stale heap entries are skipped when popped, exactly as tokenizers does, so
 * ties (equal ranks) resolve leftmost-first identically. Merges are looked up in a hash table
 * keyed by the id pair. Results are cached per word (bytes -> token ids and byte lengths);
 * the cache is cleared whole when full and guarded by a lock taken with trylock, so a busy
 * cache is skipped rather than waited for. */
#include "tokenizer/tokenizer_internal.h"
#include "tokenizer/unicode.h"

#include "core/alloc.h"
#include "core/error.h"

#include <stdio.h>
#include <string.h>

#define BPE_CACHE_MAX_WORDS 65536
#define BPE_CACHE_MAX_LEN 256 /* longer words are not cached */

typedef struct tok_bpe_cache {
    pthread_mutex_t lock;
    qkv__strmap map; /* word bytes -> offset into toks */
    int32_t *toks;   /* per entry: count, then (id, byte length) pairs */
    size_t n, cap;
} tok_bpe_cache;

/* ---- GPT-2 byte <-> unicode */
uint32_t qkv__bytelevel_char(uint8_t b) {
    if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE) return b;
    /* the other bytes get 256, 257, ... in byte order */
    uint32_t n = 0;
    for (uint32_t x = 0; x < b; x++)
        if (!((x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || x >= 0xAE)) n++;
    return 256 + n;
}

int qkv__bytelevel_byte(uint32_t cp) {
    static int16_t table[324];
    static int ready; /* benign race: every thread computes the same values */
    if (!ready) {
        for (int i = 0; i < 324; i++) table[i] = -1;
        for (int b = 0; b < 256; b++) table[qkv__bytelevel_char((uint8_t)b)] = (int16_t)b;
        __atomic_store_n(&ready, 1, __ATOMIC_RELEASE);
    }
    return cp < 324 ? table[cp] : -1;
}

qkv_status qkv__bpe_init(qkv_tokenizer *t) {
    tok_bpe *b = &t->bpe;
    for (int i = 0; i < 256; i++) {
        uint8_t u[4];
        int k = qkv__utf8_put(qkv__bytelevel_char((uint8_t)i), u);
        int32_t id;
        b->byte_id[i] = qkv__strmap_get(&t->vocab, u, (size_t)k, &id) ? id : -1;
    }
    for (int i = 0; i < 256; i++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", i);
        int32_t id;
        b->byte_tok[i] = qkv__strmap_get(&t->vocab, name, 6, &id) ? id : -1;
    }
    b->cache = qkv__calloc(1, sizeof *b->cache);
    if (!b->cache) return qkv__fail(QKV_ERR_NOMEM, "tokenizer: BPE cache");
    pthread_mutex_init(&b->cache->lock, NULL);
    qkv__strmap_init(&b->cache->map);
    return QKV_OK;
}

void qkv__bpe_free(tok_bpe *b) {
    qkv__u64map_free(&b->merges);
    if (b->cache) {
        pthread_mutex_destroy(&b->cache->lock);
        qkv__strmap_free(&b->cache->map);
        qkv__free(b->cache->toks);
        qkv__free(b->cache);
    }
}

typedef struct sym {
    int32_t id;
    int32_t prev, next; /* -1 at the ends */
    uint32_t len;       /* bytes of the word covered; 0 once merged away */
} sym;

typedef struct hent {
    uint32_t rank, pos;
    int32_t new_id;
} hent;

static inline int hless(const hent *a, const hent *b) {
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void hpush(hent *h, size_t *n, hent x) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!hless(&x, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = x;
}

static hent hpop(hent *h, size_t *n) {
    hent top = h[0], x = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const hent *best = &x;
        if (l < *n && hless(&h[l], best)) {
            m = l;
            best = &h[l];
        }
        if (r < *n && hless(&h[r], best)) m = r;
        if (m == i) break;
        h[i] = h[m];
        i = m;
    }
    if (*n) h[i] = x;
    return top;
}

static inline int merge_of(const tok_bpe *b, int32_t l, int32_t r, uint32_t *rank, int32_t *id) {
    uint64_t v;
    if (l < 0 || r < 0) return 0;
    if (!qkv__u64map_get(&b->merges, ((uint64_t)(uint32_t)l << 32) | (uint32_t)r, &v)) return 0;
    *rank = (uint32_t)(v >> 32);
    *id = (int32_t)(uint32_t)v;
    return 1;
}

/* Emits pieces (id, byte length) of the word into out as tokens with spans. */
static qkv_status emit(tok_seq *out, const int32_t *pieces, size_t np, const uint32_t (*span)[2]) {
    size_t p = 0;
    for (size_t i = 0; i < np; i++) {
        size_t l = (size_t)pieces[2 * i + 1];
        QKV_TRY(qkv__tok_seq_push(out, pieces[2 * i], span[p][0], span[p + l - 1][1], 0));
        p += l;
    }
    return QKV_OK;
}

static int cache_get(tok_bpe_cache *c, const uint8_t *w, size_t n, uint64_t h, tok_seq *out,
                     const uint32_t (*span)[2], qkv_status *st) {
    if (pthread_mutex_trylock(&c->lock) != 0) return 0;
    int32_t off;
    int hit = qkv__strmap_get_h(&c->map, w, n, h, &off);
    if (hit) *st = emit(out, c->toks + off + 1, (size_t)c->toks[off], span);
    pthread_mutex_unlock(&c->lock);
    return hit;
}

static void cache_put(tok_bpe_cache *c, const uint8_t *w, size_t n, const int32_t *pieces,
                      size_t np) {
    if (pthread_mutex_trylock(&c->lock) != 0) return;
    if (c->map.count >= BPE_CACHE_MAX_WORDS) {
        qkv__strmap_clear(&c->map);
        c->n = 0;
    }
    size_t need = c->n + 1 + 2 * np;
    /* a failed allocation only means this word is not cached */
    if (qkv__tok_reserve((void **)&c->toks, &c->cap, need, sizeof *c->toks) == QKV_OK) {
        int32_t off = (int32_t)c->n;
        c->toks[c->n] = (int32_t)np;
        memcpy(c->toks + c->n + 1, pieces, 2 * np * sizeof *pieces);
        if (qkv__strmap_put(&c->map, w, n, off) == QKV_OK) c->n = need;
    }
    qkv_clear_error();
    pthread_mutex_unlock(&c->lock);
}

qkv_status qkv__bpe_word(const qkv_tokenizer *t, const uint8_t *w, size_t n,
                         const uint32_t (*span)[2], tok_seq *out) {
    const tok_bpe *b = &t->bpe;
    if (n == 0) return QKV_OK;
    uint64_t h = 0;
    int cacheable = n <= BPE_CACHE_MAX_LEN && b->cache;
    if (cacheable) {
        qkv_status st = QKV_OK;
        h = qkv__strmap_hash(w, n);
        if (cache_get(b->cache, w, n, h, out, span, &st)) return st;
    }
    int32_t stack_pieces[2 * 64];
    sym stack_syms[64];
    hent stack_heap[128];
    sym *s = stack_syms;
    hent *heap = stack_heap;
    int32_t *pieces = stack_pieces;
    size_t heap_cap = 128;
    qkv_status st = QKV_OK;
    if (n > 64) {
        s = qkv__alloc(n * sizeof *s);
        heap = qkv__alloc(2 * n * sizeof *heap);
        pieces = qkv__alloc(2 * n * sizeof *pieces);
        heap_cap = 2 * n;
        if (!s || !heap || !pieces) {
            st = qkv__fail(QKV_ERR_NOMEM, "tokenizer: BPE word of %zu bytes", n);
            goto done;
        }
    }
    (void)heap_cap;

    /* initial symbols */
    size_t ns = 0;
    if (b->ignore_merges) { /* the whole word as one token if the vocabulary has it */
        uint8_t tmp[4 * BPE_CACHE_MAX_LEN];
        size_t tl = 0;
        int fits = n <= BPE_CACHE_MAX_LEN;
        for (size_t i = 0; fits && i < n; i++)
            tl += (size_t)qkv__utf8_put(b->byte_level ? qkv__bytelevel_char(w[i]) : w[i], tmp + tl);
        int32_t id;
        if (fits && b->byte_level && qkv__strmap_get(&t->vocab, tmp, tl, &id)) {
            pieces[0] = id;
            pieces[1] = (int32_t)n;
            ns = 1;
            goto emit_pieces;
        }
    }
    for (size_t i = 0; i < n;) {
        int32_t id;
        size_t l = 1;
        if (b->byte_level) {
            id = b->byte_id[w[i]];
        } else {
            qkv__utf8_next(w + i, n - i, &l);
            if (!qkv__strmap_get(&t->vocab, w + i, l, &id)) id = -1;
        }
        if (id < 0 && b->byte_fallback) { /* the char's <0xNN> tokens, if all exist */
            int all = 1;
            for (size_t k = 0; k < l && all; k++) all = b->byte_tok[w[i + k]] >= 0;
            if (all) {
                for (size_t k = 0; k < l; k++) {
                    s[ns] = (sym){b->byte_tok[w[i + k]], (int32_t)ns - 1, (int32_t)ns + 1, 1};
                    ns++;
                }
                i += l;
                continue;
            }
        }
        if (id < 0) {
            if (b->unk_id < 0 && b->unk_missing) {
                st = qkv__fail(QKV_ERR_FORMAT,
                               "tokenizer: BPE: unk_token is not in the vocabulary (needed for "
                               "byte 0x%02x)",
                               w[i]);
                goto done;
            }
            if (b->unk_id < 0) {
                /* no unk_token: tokenizers leaves the char out of the word, so its neighbours
                 * may merge, and (as its offsets are cumulative lengths) counts no bytes for
                 * it: the spans of what follows shift left, as tokenizers' do */
                i += l;
                continue;
            }
            id = b->unk_id;
            if (b->fuse_unk && ns > 0 && s[ns - 1].id == b->unk_id) {
                s[ns - 1].len += (uint32_t)l;
                i += l;
                continue;
            }
        }
        s[ns].id = id;
        s[ns].len = (uint32_t)l;
        s[ns].prev = (int32_t)ns - 1;
        s[ns].next = (int32_t)ns + 1;
        ns++;
        i += l;
    }
    if (ns == 0) goto emit_pieces; /* every char dropped */
    s[ns - 1].next = -1;

    size_t nh = 0;
    for (size_t i = 0; i + 1 < ns; i++) {
        uint32_t rank;
        int32_t nid;
        if (merge_of(b, s[i].id, s[i + 1].id, &rank, &nid))
            hpush(heap, &nh, (hent){rank, (uint32_t)i, nid});
    }
    while (nh) {
        hent top = hpop(heap, &nh);
        sym *cur = &s[top.pos];
        if (cur->len == 0 || cur->next < 0) continue;
        sym *right = &s[cur->next];
        uint32_t rank;
        int32_t nid;
        if (!merge_of(b, cur->id, right->id, &rank, &nid) || nid != top.new_id) continue;
        cur->id = top.new_id;
        cur->len += right->len;
        right->len = 0;
        cur->next = right->next;
        if (cur->next >= 0) s[cur->next].prev = (int32_t)top.pos;
        /* the heap holds at most one live entry per adjacent pair plus stale ones: each merge
         * pushes at most 2 and removes 1 symbol, so 2n entries always suffice */
        if (cur->prev >= 0 && merge_of(b, s[cur->prev].id, cur->id, &rank, &nid))
            hpush(heap, &nh, (hent){rank, (uint32_t)cur->prev, nid});
        if (cur->next >= 0 && merge_of(b, cur->id, s[cur->next].id, &rank, &nid))
            hpush(heap, &nh, (hent){rank, top.pos, nid});
    }
    size_t np = 0;
    for (int32_t i = 0; i >= 0; i = s[i].next) {
        pieces[2 * np] = s[i].id;
        pieces[2 * np + 1] = (int32_t)s[i].len;
        np++;
    }
    ns = np;
emit_pieces:
    st = emit(out, pieces, ns, span);
    if (st == QKV_OK && cacheable) cache_put(b->cache, w, n, pieces, ns);
done:
    if (s != stack_syms) {
        qkv__free(s);
        qkv__free(heap);
        qkv__free(pieces);
    }
    return st;
}
