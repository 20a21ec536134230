/* bpe_train.c — learns a byte-level BPE (qkv_bpe_train) and writes it as a Hugging Face
 * tokenizer.json (the GPT-2 layout tokenizers' own BpeTrainer + ByteLevel produce).
 *
 * Words come from the GPT-2 pre-tokenizer over each line of the input files and are counted
 * once (word -> count). Ids: the special tokens first, then the 256 byte-level chars in code
 * point order, then one id per merge. Each step merges the most frequent adjacent pair (ties:
 * the smaller left id, then the smaller right id, so training is deterministic). Pair counts
 * live in a hash table; a max-heap with lazy entries finds the best pair (a popped entry
 * whose count is stale is pushed back with the current count); each pair keeps the list of
 * words it occurs in, so a merge only rewrites those words. */
#include "tokenizer/tokenizer_internal.h"
#include "tokenizer/unicode.h"

#include "core/alloc.h"
#include "core/error.h"
#include "io/json.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct ivec {
    int32_t *v;
    size_t n, cap;
} ivec;

typedef struct trainer {
    qkv__strmap words; /* word bytes -> word index (counting phase) */
    int64_t *wcount;   /* [n_words] */
    size_t n_words, wcap;
    int32_t *sym; /* all words' symbols, word w at sym[woff[w] .. woff[w] + wlen[w]) */
    size_t *woff;
    uint32_t *wlen;
    qkv__u64map pairs; /* (a << 32 | b) -> pair index */
    int64_t *pcount;   /* [n_pairs] */
    uint64_t *pkey;    /* [n_pairs] */
    ivec *pwhere;      /* [n_pairs] words the pair was seen in (may repeat, may be stale) */
    size_t n_pairs, pcap;
    struct hnode {
        int64_t count;
        uint64_t key;
        uint32_t p;
    } * heap;
    size_t nh, hcap;
    char **tok; /* [n_ids] token strings */
    size_t *toklen;
    size_t n_ids, tcap;
    int32_t (*merges)[2];
    size_t n_merges, mcap;
    uint32_t *stamp; /* [n_words] last merge that visited the word */
} trainer;

static qkv_status ivec_push(ivec *v, int32_t x) {
    if (v->n == v->cap) QKV_TRY(qkv__tok_reserve((void **)&v->v, &v->cap, v->n + 1, sizeof *v->v));
    v->v[v->n++] = x;
    return QKV_OK;
}

static int hbetter(const struct hnode *a, const struct hnode *b) {
    if (a->count != b->count) return a->count > b->count;
    return a->key < b->key; /* smaller (left, right) ids first */
}

static qkv_status heap_push(trainer *t, uint32_t p) {
    QKV_TRY(qkv__tok_reserve((void **)&t->heap, &t->hcap, t->nh + 1, sizeof *t->heap));
    struct hnode x = {t->pcount[p], t->pkey[p], p};
    size_t i = t->nh++;
    while (i > 0) {
        size_t q = (i - 1) / 2;
        if (!hbetter(&x, &t->heap[q])) break;
        t->heap[i] = t->heap[q];
        i = q;
    }
    t->heap[i] = x;
    return QKV_OK;
}

static struct hnode heap_pop(trainer *t) {
    struct hnode top = t->heap[0], x = t->heap[--t->nh];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const struct hnode *best = &x;
        if (l < t->nh && hbetter(&t->heap[l], best)) {
            m = l;
            best = &t->heap[l];
        }
        if (r < t->nh && hbetter(&t->heap[r], best)) m = r;
        if (m == i) break;
        t->heap[i] = t->heap[m];
        i = m;
    }
    if (t->nh) t->heap[i] = x;
    return top;
}

/* count[pair] += d; with track, remember word w and put the pair on the heap */
static qkv_status pair_add(trainer *t, int32_t a, int32_t b, int64_t d, int32_t w, int track) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b, v;
    uint32_t p;
    if (qkv__u64map_get(&t->pairs, key, &v)) {
        p = (uint32_t)v;
    } else {
        if (d <= 0) return QKV_OK; /* (cannot happen: subtracted pairs exist) */
        p = (uint32_t)t->n_pairs;
        size_t need = t->n_pairs + 1, c0 = t->pcap, c1 = t->pcap, c2 = t->pcap;
        QKV_TRY(qkv__tok_reserve((void **)&t->pcount, &c0, need, sizeof *t->pcount));
        QKV_TRY(qkv__tok_reserve((void **)&t->pkey, &c1, need, sizeof *t->pkey));
        QKV_TRY(qkv__tok_reserve((void **)&t->pwhere, &c2, need, sizeof *t->pwhere));
        if (c2 > t->pcap) memset(t->pwhere + t->pcap, 0, (c2 - t->pcap) * sizeof *t->pwhere);
        t->pcap = c2;
        t->pcount[p] = 0;
        t->pkey[p] = key;
        t->n_pairs++;
        QKV_TRY(qkv__u64map_put(&t->pairs, key, p));
    }
    t->pcount[p] += d;
    if (track) {
        QKV_TRY(ivec_push(&t->pwhere[p], w));
        QKV_TRY(heap_push(t, p));
    }
    return QKV_OK;
}

static qkv_status add_token(trainer *t, const char *s, size_t n) {
    size_t c0 = t->tcap, c1 = t->tcap;
    QKV_TRY(qkv__tok_reserve((void **)&t->tok, &c0, t->n_ids + 1, sizeof *t->tok));
    QKV_TRY(qkv__tok_reserve((void **)&t->toklen, &c1, t->n_ids + 1, sizeof *t->toklen));
    t->tcap = c0;
    char *c = qkv__alloc(n + 1);
    if (!c) return qkv__fail(QKV_ERR_NOMEM, "tokenizer train: token");
    memcpy(c, s, n);
    c[n] = 0;
    t->tok[t->n_ids] = c;
    t->toklen[t->n_ids++] = n;
    return QKV_OK;
}

static qkv_status count_text(trainer *t, const uint8_t *s, size_t n, tok_nbuf *nb, tok_words *ws) {
    size_t i = 0;
    while (i < n) { /* line by line */
        const uint8_t *nl = memchr(s + i, '\n', n - i);
        size_t e = nl ? (size_t)(nl - s) : n;
        nb->n = 0;
        ws->n = 0;
        QKV_TRY(qkv__tok_reserve((void **)&nb->c, &nb->cap, e - i + 1, sizeof *nb->c));
        for (size_t k = i; k < e;) {
            size_t l;
            uint32_t cp = qkv__utf8_next(s + k, e - k, &l);
            nb->c[nb->n].cp = cp;
            nb->c[nb->n].start = (uint32_t)(k - i);
            nb->c[nb->n].end = (uint32_t)(k - i + l);
            nb->n++;
            k += l;
        }
        QKV_TRY(qkv__tok_pre_gpt2(nb, 0, ws));
        for (size_t w = 0; w < ws->n; w++) {
            const tok_nchar *a = &nb->c[ws->w[2 * w]], *b = &nb->c[ws->w[2 * w + 1] - 1];
            const uint8_t *ws0 = s + i + a->start;
            size_t wl = b->end - a->start;
            int32_t idx;
            if (qkv__strmap_get(&t->words, ws0, wl, &idx)) {
                t->wcount[idx]++;
                continue;
            }
            QKV_TRY(
                qkv__tok_reserve((void **)&t->wcount, &t->wcap, t->n_words + 1, sizeof *t->wcount));
            if (t->n_words >= INT32_MAX) return qkv__fail(QKV_ERR_OVERFLOW, "too many words");
            QKV_TRY(qkv__strmap_put(&t->words, ws0, wl, (int32_t)t->n_words));
            t->wcount[t->n_words++] = 1;
        }
        i = e + 1;
    }
    return QKV_OK;
}

static void trainer_free(trainer *t) {
    qkv__strmap_free(&t->words);
    qkv__free(t->wcount);
    qkv__free(t->sym);
    qkv__free(t->woff);
    qkv__free(t->wlen);
    qkv__u64map_free(&t->pairs);
    qkv__free(t->pcount);
    qkv__free(t->pkey);
    for (size_t i = 0; i < t->n_pairs; i++) qkv__free(t->pwhere[i].v);
    qkv__free(t->pwhere);
    qkv__free(t->heap);
    for (size_t i = 0; i < t->n_ids; i++) qkv__free(t->tok[i]);
    qkv__free(t->tok);
    qkv__free(t->toklen);
    qkv__free(t->merges);
    qkv__free(t->stamp);
}

/* rewrites word w, merging every (a, b) left to right into m. Pair counts: the old pairs are
 * all subtracted, the new ones all added; only pairs with m are new to the word (a merge
 * creates no other pair), so only they go on the heap and into the word lists. */
static qkv_status merge_word(trainer *t, int32_t w, int32_t a, int32_t b, int32_t m) {
    int32_t *s = t->sym + t->woff[w];
    uint32_t n = t->wlen[w], o = 0;
    int64_t c = t->wcount[w];
    for (uint32_t i = 0; i + 1 < n; i++) QKV_TRY(pair_add(t, s[i], s[i + 1], -c, w, 0));
    for (uint32_t i = 0; i < n; i++) {
        if (i + 1 < n && s[i] == a && s[i + 1] == b) {
            s[o++] = m;
            i++;
        } else {
            s[o++] = s[i];
        }
    }
    t->wlen[w] = o;
    for (uint32_t i = 0; i + 1 < o; i++)
        QKV_TRY(pair_add(t, s[i], s[i + 1], c, w, s[i] == m || s[i + 1] == m));
    return QKV_OK;
}

static qkv_status write_json(const trainer *t, size_t n_special, const char *dir) {
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return qkv__fail(QKV_ERR_IO, "%s: cannot create directory: %s", dir, strerror(errno));
    char path[4096], tmp[4200];
    if (snprintf(path, sizeof path, "%s/tokenizer.json", dir) >= (int)sizeof path)
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: path too long", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    qkv_status st = QKV_OK;
    qkv__json_begin();
    json_t *root = json_object(), *added = json_array(), *vocab = json_object(),
           *merges = json_array(), *model = json_object();
    json_t *bl = json_pack("{s:s,s:b,s:b,s:b}", "type", "ByteLevel", "add_prefix_space", 0,
                           "trim_offsets", 1, "use_regex", 1);
    json_t *bl2 = json_pack("{s:s,s:b,s:b,s:b}", "type", "ByteLevel", "add_prefix_space", 1,
                            "trim_offsets", 1, "use_regex", 1);
    json_t *bl3 = json_deep_copy(bl2);
    int bad = !root || !added || !vocab || !merges || !model || !bl || !bl2 || !bl3;
    for (size_t i = 0; !bad && i < n_special; i++)
        bad |= json_array_append_new(added,
                                     json_pack("{s:I,s:s,s:b,s:b,s:b,s:b,s:b}", "id", (json_int_t)i,
                                               "content", t->tok[i], "single_word", 0, "lstrip", 0,
                                               "rstrip", 0, "normalized", 0, "special", 1));
    for (size_t i = 0; !bad && i < t->n_ids; i++)
        bad |= json_object_set_new(vocab, t->tok[i], json_integer((json_int_t)i));
    for (size_t i = 0; !bad && i < t->n_merges; i++)
        bad |= json_array_append_new(
            merges, json_pack("[s,s]", t->tok[t->merges[i][0]], t->tok[t->merges[i][1]]));
    if (!bad) {
        bad |= json_object_set_new(model, "type", json_string("BPE"));
        bad |= json_object_set_new(model, "dropout", json_null());
        bad |= json_object_set_new(model, "unk_token", json_null());
        bad |= json_object_set_new(model, "continuing_subword_prefix", json_null());
        bad |= json_object_set_new(model, "end_of_word_suffix", json_null());
        bad |= json_object_set_new(model, "fuse_unk", json_false());
        bad |= json_object_set_new(model, "byte_fallback", json_false());
        bad |= json_object_set_new(model, "ignore_merges", json_false());
        bad |= json_object_set(model, "vocab", vocab);
        bad |= json_object_set(model, "merges", merges);
        bad |= json_object_set_new(root, "version", json_string("1.0"));
        bad |= json_object_set_new(root, "truncation", json_null());
        bad |= json_object_set_new(root, "padding", json_null());
        bad |= json_object_set(root, "added_tokens", added);
        bad |= json_object_set_new(root, "normalizer", json_null());
        bad |= json_object_set(root, "pre_tokenizer", bl);
        bad |= json_object_set(root, "post_processor", bl2);
        bad |= json_object_set(root, "decoder", bl3);
        bad |= json_object_set(root, "model", model);
    }
    if (bad || qkv__json_alloc_failed()) {
        st = qkv__fail(QKV_ERR_NOMEM, "tokenizer train: building tokenizer.json");
    } else if (json_dump_file(root, tmp, JSON_PRESERVE_ORDER | JSON_INDENT(1)) != 0) {
        st = qkv__fail(QKV_ERR_IO, "%s: cannot write", tmp);
    }
    json_decref(root);
    json_decref(added);
    json_decref(vocab);
    json_decref(merges);
    json_decref(model);
    json_decref(bl);
    json_decref(bl2);
    json_decref(bl3);
    qkv__json_end();
    if (st == QKV_OK && rename(tmp, path) != 0)
        st = qkv__fail(QKV_ERR_IO, "%s: cannot rename: %s", path, strerror(errno));
    if (st != QKV_OK) unlink(tmp);
    return st;
}

qkv_status qkv_bpe_train(const char *const *files, size_t n_files, size_t vocab_size,
                         const char *const *special, size_t n_special, int64_t min_frequency,
                         const char *out_dir, qkv_progress_fn progress, void *progress_ctx) {
    if (!files || !n_files || !out_dir || (n_special && !special))
        return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_bpe_train: files, out_dir are required");
    if (vocab_size < 256 + n_special || vocab_size > (size_t)INT32_MAX / 2)
        return qkv__fail(QKV_ERR_INVALID_ARG,
                         "qkv_bpe_train: vocab_size %zu must be at least "
                         "256 + %zu special tokens",
                         vocab_size, n_special);
    if (min_frequency <= 0) min_frequency = 2;
    trainer t;
    memset(&t, 0, sizeof t);
    qkv__strmap_init(&t.words);
    qkv__u64map_init(&t.pairs);
    qkv_status st = QKV_OK;
    tok_nbuf nb = {0};
    tok_words ws = {0};
    for (size_t f = 0; st == QKV_OK && f < n_files; f++) {
        char *buf;
        size_t len;
        st = qkv__read_file(files[f], &buf, &len);
        if (st != QKV_OK) break;
        st = count_text(&t, (const uint8_t *)buf, len, &nb, &ws);
        qkv__free(buf);
        if (progress) progress(progress_ctx, 0.2 * (double)(f + 1) / (double)n_files);
    }
    qkv__free(nb.c);
    qkv__free(ws.w);
    /* ids: specials, then the byte-level alphabet in code point order */
    int32_t byte_id[256];
    for (size_t i = 0; st == QKV_OK && i < n_special; i++) {
        if (!special[i] || !*special[i])
            st = qkv__fail(QKV_ERR_INVALID_ARG, "qkv_bpe_train: empty special token");
        else
            st = add_token(&t, special[i], strlen(special[i]));
    }
    for (uint32_t cp = 0; st == QKV_OK && cp < 324; cp++) {
        int b = qkv__bytelevel_byte(cp);
        if (b < 0) continue;
        uint8_t u[4];
        int k = qkv__utf8_put(cp, u);
        byte_id[b] = (int32_t)t.n_ids;
        st = add_token(&t, (const char *)u, (size_t)k);
    }
    /* words as symbol arrays */
    size_t total = 0;
    if (st == QKV_OK) {
        t.woff = qkv__calloc(t.n_words + 1, sizeof *t.woff);
        t.wlen = qkv__calloc(t.n_words + 1, sizeof *t.wlen);
        t.stamp = qkv__calloc(t.n_words + 1, sizeof *t.stamp);
        if (!t.woff || !t.wlen || !t.stamp) st = qkv__fail(QKV_ERR_NOMEM, "tokenizer train");
    }
    for (size_t i = 0; st == QKV_OK && i < t.words.cap; i++) {
        size_t len;
        int32_t w;
        if (!qkv__strmap_key_at(&t.words, i, &len, &w)) continue;
        t.wlen[w] = (uint32_t)len;
        total += len;
    }
    if (st == QKV_OK) {
        t.sym = qkv__alloc((total ? total : 1) * sizeof *t.sym);
        if (!t.sym) st = qkv__fail(QKV_ERR_NOMEM, "tokenizer train: %zu symbols", total);
    }
    for (size_t w = 0, off = 0; st == QKV_OK && w < t.n_words; w++) {
        t.woff[w] = off;
        off += t.wlen[w];
    }
    for (size_t i = 0; st == QKV_OK && i < t.words.cap; i++) {
        size_t len;
        int32_t w;
        const char *k = qkv__strmap_key_at(&t.words, i, &len, &w);
        if (!k) continue;
        for (size_t j = 0; j < len; j++) t.sym[t.woff[w] + j] = byte_id[(uint8_t)k[j]];
    }
    for (size_t w = 0; st == QKV_OK && w < t.n_words; w++)
        for (uint32_t j = 0; st == QKV_OK && j + 1 < t.wlen[w]; j++)
            st = pair_add(&t, t.sym[t.woff[w] + j], t.sym[t.woff[w] + j + 1], t.wcount[w],
                          (int32_t)w, 1);
    /* merges */
    size_t want = vocab_size - t.n_ids;
    while (st == QKV_OK && t.n_ids < vocab_size && t.nh) {
        struct hnode h = heap_pop(&t);
        int64_t cur = t.pcount[h.p];
        if (cur != h.count) {
            if (cur > 0) st = heap_push(&t, h.p);
            continue;
        }
        if (cur < min_frequency) break;
        int32_t a = (int32_t)(h.key >> 32), b = (int32_t)(uint32_t)h.key;
        int32_t m = (int32_t)t.n_ids;
        size_t la = t.toklen[a], lb = t.toklen[b];
        char stackbuf[512];
        char *s = la + lb <= sizeof stackbuf ? stackbuf : qkv__alloc(la + lb);
        if (!s) {
            st = qkv__fail(QKV_ERR_NOMEM, "tokenizer train");
            break;
        }
        memcpy(s, t.tok[a], la);
        memcpy(s + la, t.tok[b], lb);
        st = add_token(&t, s, la + lb);
        if (s != stackbuf) qkv__free(s);
        if (st == QKV_OK)
            st = qkv__tok_reserve((void **)&t.merges, &t.mcap, t.n_merges + 1, sizeof *t.merges);
        if (st != QKV_OK) break;
        t.merges[t.n_merges][0] = a;
        t.merges[t.n_merges][1] = b;
        t.n_merges++;
        /* the words of this pair (a copy: merge_word appends to where lists) */
        ivec wl = {0};
        for (size_t i = 0; st == QKV_OK && i < t.pwhere[h.p].n; i++)
            st = ivec_push(&wl, t.pwhere[h.p].v[i]);
        for (size_t i = 0; st == QKV_OK && i < wl.n; i++) {
            int32_t w = wl.v[i];
            if (t.stamp[w] == (uint32_t)t.n_merges) continue;
            t.stamp[w] = (uint32_t)t.n_merges;
            st = merge_word(&t, w, a, b, m);
        }
        qkv__free(wl.v);
        t.pwhere[h.p].n = 0;
        if (progress && (t.n_merges % 256 == 0))
            progress(progress_ctx, 0.2 + 0.75 * (double)t.n_merges / (double)(want ? want : 1));
    }
    if (st == QKV_OK) st = write_json(&t, n_special, out_dir);
    if (st == QKV_OK && progress) progress(progress_ctx, 1.0);
    trainer_free(&t);
    return st;
}
