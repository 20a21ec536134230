/* tokenizer.c — the qkv_tokenizer object: lifecycle, lookups, the encode pipeline (added
 * tokens split, normalize, pre-tokenize, model) and decode. Loading is in load_json.c and
 * load_vocab.c, post-processing in postprocess.c.
 *
 * Invariants: vocab holds the model vocabulary only (as tokenizers' model does); added tokens
 * live in `added` and win in lookups, as in tokenizers' AddedVocabulary. id_to_token covers
 * both. Nothing here writes to the tokenizer after load except the BPE cache (bpe.c). */
#include "tokenizer/tokenizer_internal.h"
#include "tokenizer/unicode.h"

#include "core/abi.h"
#include "core/alloc.h"
#include "core/error.h"
#include "io/file.h"
#include "io/json.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static void ctx_free(tok_ctx *c);

qkv_status qkv__tok_reserve(void **buf, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return QKV_OK;
    size_t ncap = *cap ? *cap : 16, bytes;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2) return qkv__fail(QKV_ERR_OVERFLOW, "tokenizer: buffer size");
        ncap *= 2;
    }
    if (qkv__mul_overflow(ncap, elem, &bytes))
        return qkv__fail(QKV_ERR_OVERFLOW, "tokenizer: buffer of %zu x %zu bytes", ncap, elem);
    void *nb = qkv__alloc(bytes);
    if (!nb) return qkv__fail(QKV_ERR_NOMEM, "tokenizer: buffer of %zu bytes", bytes);
    if (*buf && *cap) memcpy(nb, *buf, *cap * elem);
    qkv__free(*buf);
    *buf = nb;
    *cap = ncap;
    return QKV_OK;
}

qkv_status qkv__tok_seq_push(tok_seq *s, int32_t id, uint32_t start, uint32_t end, int special) {
    if (s->n == s->cap) {
        size_t ncap = s->cap ? 2 * s->cap : 64;
        int32_t *ids = qkv__alloc(ncap * sizeof *ids);
        uint32_t *st = qkv__alloc(ncap * sizeof *st), *en = qkv__alloc(ncap * sizeof *en);
        uint8_t *sp = qkv__alloc(ncap);
        if (!ids || !st || !en || !sp) {
            qkv__free(ids);
            qkv__free(st);
            qkv__free(en);
            qkv__free(sp);
            return qkv__fail(QKV_ERR_NOMEM, "tokenizer: %zu tokens", ncap);
        }
        if (s->n) {
            memcpy(ids, s->ids, s->n * sizeof *ids);
            memcpy(st, s->start, s->n * sizeof *st);
            memcpy(en, s->end, s->n * sizeof *en);
            memcpy(sp, s->special, s->n);
        }
        qkv__tok_seq_free(s);
        s->ids = ids;
        s->start = st;
        s->end = en;
        s->special = sp;
        s->cap = ncap;
    }
    s->ids[s->n] = id;
    s->start[s->n] = start;
    s->end[s->n] = end;
    s->special[s->n] = (uint8_t)special;
    s->n++;
    return QKV_OK;
}

void qkv__tok_seq_free(tok_seq *s) {
    qkv__free(s->ids);
    qkv__free(s->start);
    qkv__free(s->end);
    qkv__free(s->special);
    s->ids = NULL;
    s->start = s->end = NULL;
    s->special = NULL;
    s->cap = 0;
}

qkv_status qkv__read_file(const char *path, char **buf, size_t *len) {
    return qkv__read_regular(path, QKV__MAX_TOKENIZER_FILE, buf, len);
}

/* ---------------------------------------------------------------- building (loaders) */

qkv_status qkv__tok_add_vocab(qkv_tokenizer *t, const char *tok, size_t len, int64_t id) {
    if (id < 0 || id >= INT32_MAX)
        return qkv__fail(QKV_ERR_FORMAT, "tokenizer: token id %lld out of range", (long long)id);
    QKV_TRY(qkv__strmap_put(&t->vocab, tok, len, (int32_t)id));
    if ((size_t)id + 1 > t->n_ids) t->n_ids = (size_t)id + 1;
    t->model_vocab++;
    return QKV_OK;
}

qkv_status qkv__tok_add_added(qkv_tokenizer *t, const char *content, size_t len, int64_t id,
                              int special, int lstrip, int rstrip, int normalized) {
    if (id < 0 || id >= INT32_MAX)
        return qkv__fail(QKV_ERR_FORMAT, "tokenizer: added token id %lld out of range",
                         (long long)id);
    if (len == 0) return qkv__fail(QKV_ERR_FORMAT, "tokenizer: empty added token");
    QKV_TRY(qkv__tok_reserve((void **)&t->added, &(size_t){t->n_added}, t->n_added + 1,
                             sizeof *t->added));
    /* (the reserve above sized by count: grow one at a time; added tokens are few) */
    tok_added *a = &t->added[t->n_added];
    memset(a, 0, sizeof *a);
    a->content = qkv__alloc(len + 1);
    if (!a->content) return qkv__fail(QKV_ERR_NOMEM, "tokenizer: added token");
    memcpy(a->content, content, len);
    a->content[len] = 0;
    a->len = len;
    a->id = (int32_t)id;
    a->special = special;
    a->lstrip = lstrip;
    a->rstrip = rstrip;
    a->normalized = normalized;
    t->n_added++;
    t->added_first[(uint8_t)content[0]] = 1;
    if ((size_t)id + 1 > t->n_ids) t->n_ids = (size_t)id + 1;
    return QKV_OK;
}

static int32_t find_id(const qkv_tokenizer *t, const char *s) {
    return qkv_tokenizer_token_to_id(t, s, strlen(s));
}

qkv_status qkv__tok_finish(qkv_tokenizer *t, const char *path) {
    /* The id table has one slot per id up to the largest: a file must not claim more ids than
     * it holds tokens (one id near 2^31 would cost 16 GB). tokenizers allows holes in the ids,
     * so some are tolerated: the largest id may be at most twice the number of tokens present
     * plus QKV__TOK_ID_SLACK (memory stays proportional to the file). */
    size_t present = t->model_vocab + t->n_added;
    if (t->n_ids > 2 * present + QKV__TOK_ID_SLACK || t->n_ids > (size_t)INT32_MAX)
        return qkv__fail(QKV_ERR_FORMAT,
                         "%s: token id %zu, but the file holds only %zu tokens (ids must be "
                         "below 2 x tokens + %d)",
                         path, t->n_ids - 1, present, QKV__TOK_ID_SLACK);
    t->id_to_token = qkv__calloc(t->n_ids ? t->n_ids : 1, sizeof *t->id_to_token);
    if (!t->id_to_token) return qkv__fail(QKV_ERR_NOMEM, "tokenizer: id table");
    size_t maxlen = 0;
    for (size_t i = 0; i < t->vocab.cap; i++) {
        size_t len;
        int32_t id;
        const char *k = qkv__strmap_key_at(&t->vocab, i, &len, &id);
        if (!k) continue;
        t->id_to_token[id] = (char *)k;
        if (len > maxlen) maxlen = len;
    }
    for (size_t i = 0; i < t->n_added; i++) t->id_to_token[t->added[i].id] = t->added[i].content;
    if (t->model == TOK_MODEL_WORDPIECE) {
        t->wp.max_token_len = maxlen;
        t->wp.prefix_hash = qkv__strmap_hash(t->wp.prefix, t->wp.prefix_len);
    } else if (t->model == TOK_MODEL_BPE) {
        QKV_TRY(qkv__bpe_init(t));
    } else if (t->model == TOK_MODEL_UNIGRAM) {
        QKV_TRY(qkv__unigram_finish(t));
    }
    static const char *const names[QKV_SPECIAL_COUNT_][3] = {
        {"[UNK]", "<unk>", NULL},           {"[CLS]", "<s>", "<|startoftext|>"},
        {"[SEP]", "</s>", "<|endoftext|>"}, {"[PAD]", "<pad>", NULL},
        {"[MASK]", "<mask>", NULL},
    };
    for (int k = 0; k < QKV_SPECIAL_COUNT_; k++) {
        if (t->special_ids[k] >= 0) continue;
        for (int j = 0; j < 3 && names[k][j] && t->special_ids[k] < 0; j++)
            t->special_ids[k] = find_id(t, names[k][j]);
    }
    if (t->model == TOK_MODEL_WORDPIECE && t->special_ids[QKV_SPECIAL_UNK] < 0)
        t->special_ids[QKV_SPECIAL_UNK] = t->wp.unk_id;
    if (t->model == TOK_MODEL_UNIGRAM && t->special_ids[QKV_SPECIAL_UNK] < 0)
        t->special_ids[QKV_SPECIAL_UNK] = t->uni.unk_out;
    return QKV_OK;
}

/* ---------------------------------------------------------------- public: lifecycle */

static qkv_tokenizer *tok_new(void) {
    qkv_tokenizer *t = qkv__calloc(1, sizeof *t);
    if (!t) return NULL;
    t->pool = qkv__calloc(1, sizeof *t->pool);
    if (!t->pool) {
        qkv__free(t);
        return NULL;
    }
    pthread_mutex_init(&t->pool->lock, NULL);
    qkv__strmap_init(&t->vocab);
    qkv__u64map_init(&t->bpe.merges);
    qkv__strmap_init(&t->uni.pieces);
    t->uni.unk = t->uni.unk_out = -1;
    t->wp.unk_id = -1;
    t->wp.max_chars = 100;
    t->bpe.unk_id = -1;
    for (int k = 0; k < QKV_SPECIAL_COUNT_; k++) t->special_ids[k] = -1;
    t->defaults.add_special_tokens = 1;
    return t;
}

void qkv_tokenizer_free(qkv_tokenizer *t) {
    if (!t) return;
    pthread_mutex_destroy(&t->pool->lock);
    ctx_free(t->pool->spare);
    qkv__free(t->pool);
    qkv__strmap_free(&t->vocab);
    qkv__free(t->id_to_token);
    qkv__free(t->wp.prefix);
    qkv__bpe_free(&t->bpe);
    tok_piece *lists[2] = {t->post.single, t->post.pair};
    size_t counts[2] = {t->post.n_single, t->post.n_pair};
    for (int l = 0; l < 2; l++) {
        for (size_t i = 0; i < counts[l]; i++) qkv__free(lists[l][i].ids);
        qkv__free(lists[l]);
    }
    qkv__free(t->dec.prefix);
    for (size_t i = 0; i < t->dec.n_steps; i++) {
        qkv__free(t->dec.steps[i].from);
        qkv__free(t->dec.steps[i].to);
    }
    qkv__free(t->dec.steps);
    qkv__tok_normalizer_free(&t->norm);
    qkv__unigram_free(&t->uni);
    for (size_t i = 0; i < t->n_added; i++) qkv__free(t->added[i].content);
    qkv__free(t->added);
    qkv__free(t);
}

/* The file is there (of any kind: the loader then refuses a FIFO or a directory by name,
 * rather than this search passing over it and reporting no tokenizer at all). */
static int is_file(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* dir + "/" + name into buf; 0 if it does not fit */
static int join(char *buf, size_t cap, const char *dir, const char *name) {
    int n = snprintf(buf, cap, "%s/%s", dir, name);
    return n > 0 && (size_t)n < cap;
}

/* MarianTokenizer's separate_vocabs: tokenizer_config.json's "separate_vocabs" (false when the
 * file or the key is absent, as transformers reads it); *sep 0 / 1. */
static qkv_status marian_separate(const char *dir, int *sep) {
    char c[4096];
    *sep = 0;
    if (!join(c, sizeof c, dir, "tokenizer_config.json") || !is_file(c)) return QKV_OK;
    qkv__json_begin();
    json_t *cfg = NULL;
    qkv_status st = qkv__json_load_file(c, 0, &cfg);
    if (st == QKV_OK && !json_is_object(cfg))
        st = qkv__fail(QKV_ERR_FORMAT, "%s: not a JSON object", c);
    if (st == QKV_OK) st = qkv__json_bool(c, cfg, "separate_vocabs", 0, sep);
    json_decref(cfg);
    qkv__json_end();
    return st;
}

/* A Marian directory's SentencePiece model spm (source.spm, or target.spm when target) with
 * its vocabulary: vocab.json for both sides, or with separate_vocabs target_vocab.json for the
 * target's (MarianTokenizer's text_target, and its decode). */
static qkv_status load_marian(qkv_tokenizer *t, const char *dir, const char *spm, int target) {
    char b[4096];
    int sep = 0;
    QKV_TRY(marian_separate(dir, &sep));
    const char *name = sep && target ? "target_vocab.json" : "vocab.json";
    if (!join(b, sizeof b, dir, name))
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: the path is too long", dir);
    if (!is_file(b)) {
        if (sep && target) /* the decoder's ids would be read in the source's vocabulary */
            return qkv__fail(QKV_ERR_NOT_FOUND,
                             "%s: tokenizer_config.json says separate_vocabs but there is no "
                             "target_vocab.json",
                             dir);
        return qkv__tok_load_spm(t, spm, NULL);
    }
    return qkv__tok_load_spm(t, spm, b);
}

qkv_status qkv_tokenizer_load_target(const char *dir, qkv_tokenizer **out) {
    char a[4096];
    if (!dir || !out || !join(a, sizeof a, dir, "target.spm") || !is_file(a))
        return qkv_tokenizer_load(dir, out);
    *out = NULL;
    qkv_tokenizer *t = tok_new();
    if (!t) return qkv__fail(QKV_ERR_NOMEM, "qkv_tokenizer_load_target");
    qkv_status st = load_marian(t, dir, a, 1);
    if (st == QKV_OK) st = qkv__tok_finish(t, a);
    if (st != QKV_OK) {
        qkv_tokenizer_free(t);
        return st;
    }
    *out = t;
    return QKV_OK;
}

qkv_status qkv_tokenizer_load(const char *path, qkv_tokenizer **out) {
    if (!out) return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_tokenizer_load: out is NULL");
    *out = NULL;
    if (!path) return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_tokenizer_load: path is NULL");
    struct stat sb;
    if (stat(path, &sb) != 0)
        return qkv__fail(QKV_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    char a[4096], b[4096];
    qkv_tokenizer *t = tok_new();
    if (!t) return qkv__fail(QKV_ERR_NOMEM, "qkv_tokenizer_load");
    qkv_status st;
    if (S_ISDIR(sb.st_mode)) {
        if (join(a, sizeof a, path, "tokenizer.json") && is_file(a)) {
            st = qkv__tok_load_json(t, a);
        } else if (join(a, sizeof a, path, "vocab.txt") && is_file(a)) {
            int cfg = join(b, sizeof b, path, "tokenizer_config.json") && is_file(b);
            st = qkv__tok_load_vocab_txt(t, a, cfg ? b : NULL);
        } else if (join(a, sizeof a, path, "source.spm") && is_file(a)) {
            st = load_marian(t, path, a, 0);
        } else if (join(a, sizeof a, path, "spiece.model") && is_file(a)) {
            st = qkv__tok_load_spm_t5(t, a, 100); /* T5Tokenizer's default extra_ids */
        } else if (join(a, sizeof a, path, "vocab.json") && is_file(a) &&
                   join(b, sizeof b, path, "merges.txt") && is_file(b)) {
            st = qkv__tok_load_vocab_merges(t, a, b);
        } else {
            st = qkv__fail(
                QKV_ERR_NOT_FOUND,
                "%s: no tokenizer.json, vocab.txt, source.spm, spiece.model or vocab.json "
                "+ merges.txt in this directory",
                path);
        }
    } else if (ends_with(path, ".spm") || ends_with(path, ".model")) {
        st = qkv__tok_load_spm(t, path, NULL);
    } else if (ends_with(path, ".txt") && !ends_with(path, "merges.txt")) {
        const char *slash = strrchr(path, '/');
        size_t dl = slash ? (size_t)(slash - path) : 1;
        int cfg = dl < sizeof b - 32;
        if (cfg) {
            if (slash)
                memcpy(b, path, dl);
            else
                b[0] = '.';
            b[dl] = 0;
            cfg = join(a, sizeof a, b, "tokenizer_config.json") && is_file(a);
        }
        char vocab[4096];
        snprintf(vocab, sizeof vocab, "%s", path);
        st = qkv__tok_load_vocab_txt(t, vocab, cfg ? a : NULL);
    } else if (ends_with(path, "vocab.json")) {
        size_t pl = strlen(path);
        if (pl + 8 > sizeof a) {
            st = qkv__fail(QKV_ERR_INVALID_ARG, "%s: path too long", path);
        } else {
            memcpy(a, path, pl - strlen("vocab.json"));
            strcpy(a + pl - strlen("vocab.json"), "merges.txt");
            st = qkv__tok_load_vocab_merges(t, path, a);
        }
    } else {
        st = qkv__tok_load_json(t, path);
    }
    if (st == QKV_OK) st = qkv__tok_finish(t, path);
    if (st != QKV_OK) {
        qkv_tokenizer_free(t);
        return st;
    }
    *out = t;
    return QKV_OK;
}

/* ---------------------------------------------------------------- public: lookups */

size_t qkv_tokenizer_vocab_size(const qkv_tokenizer *t) { return t ? t->n_ids : 0; }

const char *qkv_tokenizer_id_to_token(const qkv_tokenizer *t, int32_t id) {
    if (!t || id < 0 || (size_t)id >= t->n_ids) return NULL;
    return t->id_to_token[id];
}

int32_t qkv_tokenizer_token_to_id(const qkv_tokenizer *t, const char *s, size_t len) {
    if (!t || !s) return -1;
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].len == len && memcmp(t->added[i].content, s, len) == 0)
            return t->added[i].id;
    int32_t id;
    return qkv__strmap_get(&t->vocab, s, len, &id) ? id : -1;
}

int32_t qkv_tokenizer_special_id(const qkv_tokenizer *t, qkv_special_token which) {
    if (!t || (int)which < 0 || which >= QKV_SPECIAL_COUNT_) return -1;
    return t->special_ids[which];
}

void qkv_tokenizer_default_options_sized(const qkv_tokenizer *t, qkv_encode_options *o,
                                         size_t struct_size) {
    if (!o) return;
    qkv_encode_options d;
    if (t) {
        d = t->defaults;
    } else {
        memset(&d, 0, sizeof d);
        d.add_special_tokens = 1;
    }
    QKV__STRUCT_FILL(qkv_encode_options, o, struct_size, &d);
}

/* ---------------------------------------------------------------- encode */

typedef tok_ctx enc_ctx;

static void ctx_free(tok_ctx *c) {
    if (!c) return;
    qkv__free(c->nb.c);
    qkv__free(c->nb2.c);
    qkv__free(c->words.w);
    qkv__free(c->scratch);
    qkv__free(c->wbytes);
    qkv__free(c->wspan);
    qkv__tok_seq_free(&c->a);
    qkv__tok_seq_free(&c->b);
    for (int k = 0; k < 2; k++) {
        qkv__free(c->b2c[k]);
        qkv__free(c->c2b[k]);
    }
    qkv__free(c);
}

static size_t ctx_bytes(const enc_ctx *c) {
    return (c->nb.cap + c->nb2.cap) * sizeof *c->nb.c + c->words.cap * sizeof *c->words.w +
           c->scratch_cap + c->wbytes_cap + c->wspan_cap * sizeof *c->wspan +
           (c->a.cap + c->b.cap) * 13 +
           4 * (c->b2c_cap[0] + c->b2c_cap[1] + c->c2b_cap[0] + c->c2b_cap[1]);
}

/* the tokenizer's spare context, or a new one */
static enc_ctx *ctx_take(const qkv_tokenizer *t) {
    enc_ctx *c = NULL;
    if (pthread_mutex_trylock(&t->pool->lock) == 0) {
        c = t->pool->spare;
        t->pool->spare = NULL;
        pthread_mutex_unlock(&t->pool->lock);
    }
    if (!c) c = qkv__calloc(1, sizeof *c);
    if (c) {
        c->a.n = c->b.n = 0;
        c->nb.n = c->words.n = 0;
    }
    return c;
}

static void ctx_give(const qkv_tokenizer *t, enc_ctx *c) {
    if (ctx_bytes(c) <= QKV_TOK_CTX_KEEP && pthread_mutex_trylock(&t->pool->lock) == 0) {
        if (!t->pool->spare) {
            t->pool->spare = c;
            c = NULL;
        }
        pthread_mutex_unlock(&t->pool->lock);
    }
    ctx_free(c);
}

/* Leftmost-longest match of an added token at or after position i: returns its index or -1
 * and the match start in *at. */
static int added_find(const qkv_tokenizer *t, const uint8_t *s, size_t i, size_t n, size_t *at) {
    for (; i < n; i++) {
        if (!t->added_first[s[i]]) continue;
        int best = -1;
        for (size_t k = 0; k < t->n_added; k++) {
            const tok_added *a = &t->added[k];
            if (a->len <= n - i && memcmp(s + i, a->content, a->len) == 0 &&
                (best < 0 || a->len > t->added[best].len))
                best = (int)k;
        }
        if (best >= 0) {
            *at = i;
            return best;
        }
    }
    return -1;
}

/* Model tokens for one word of normalized chars nb[a..b). */
static qkv_status encode_word(const qkv_tokenizer *t, const uint8_t *text, enc_ctx *c, size_t a,
                              size_t b, tok_seq *out) {
    const tok_nchar *ch = c->nb.c + a;
    size_t n = b - a;
    if (t->model == TOK_MODEL_WORDPIECE)
        return qkv__wordpiece_word(t, ch, n, out, &c->scratch, &c->scratch_cap);
    /* BPE / Unigram: the word's bytes (byte-level BPE: the input's own bytes for an invalid
     * sequence read as U+FFFD, so it round-trips any input) and the input span of each byte */
    int raw = t->model == TOK_MODEL_BPE && t->bpe.byte_level;
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += ch[i].cp == QKV_UNI_REPLACEMENT ? ch[i].end - ch[i].start + 3 : 4;
    QKV_TRY(qkv__tok_reserve((void **)&c->wbytes, &c->wbytes_cap, len, 1));
    QKV_TRY(qkv__tok_reserve((void **)&c->wspan, &c->wspan_cap, len, sizeof *c->wspan));
    size_t p = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = ch[i].cp;
        int k;
        if (cp < 0x80) {
            c->wbytes[p] = (uint8_t)cp;
            k = 1;
        } else if (raw && cp == QKV_UNI_REPLACEMENT &&
                   !(ch[i].end - ch[i].start == 3 &&
                     memcmp(text + ch[i].start, "\xEF\xBF\xBD", 3) == 0)) {
            k = (int)(ch[i].end - ch[i].start);
            memcpy(c->wbytes + p, text + ch[i].start, (size_t)k);
        } else {
            k = qkv__utf8_put(cp, c->wbytes + p);
        }
        for (int j = 0; j < k; j++) {
            c->wspan[p + (size_t)j][0] = ch[i].start;
            c->wspan[p + (size_t)j][1] = ch[i].end;
        }
        p += (size_t)k;
    }
    if (t->model == TOK_MODEL_UNIGRAM)
        return qkv__unigram_word(t, c->wbytes, p, (const uint32_t(*)[2])c->wspan, out, &c->scratch,
                                 &c->scratch_cap);
    return qkv__bpe_word(t, c->wbytes, p, (const uint32_t(*)[2])c->wspan, out);
}

static qkv_status encode_segment(const qkv_tokenizer *t, const uint8_t *text, size_t a, size_t b,
                                 enc_ctx *c, tok_seq *out) {
    c->nb.n = 0;
    c->words.n = 0;
    QKV_TRY(qkv__tok_normalize(t, text, a, b, &c->nb, &c->nb2));
    if (c->nb.n == 0) return QKV_OK;
    switch (t->pre.kind) {
    case TOK_PRE_META: {
        QKV_TRY(qkv__tok_pre_meta(&t->pre, &c->nb, &c->nb2, &c->words));
        tok_nbuf x = c->nb;
        c->nb = c->nb2;
        c->nb2 = x;
        break;
    }
    case TOK_PRE_BERT: QKV_TRY(qkv__tok_pre_bert(&c->nb, &c->words)); break;
    case TOK_PRE_BYTELEVEL: {
        size_t first = 0;
        if (t->pre.add_prefix_space && c->nb.c[0].cp != ' ') {
            /* a space in front, aligned with the first char (tokenizers' prepend) */
            QKV_TRY(qkv__tok_reserve((void **)&c->nb.c, &c->nb.cap, c->nb.n + 1, sizeof *c->nb.c));
            memmove(c->nb.c + 1, c->nb.c, c->nb.n * sizeof *c->nb.c);
            c->nb.c[0].cp = ' ';
            c->nb.n++;
        }
        if (t->pre.use_regex)
            QKV_TRY(qkv__tok_pre_gpt2(&c->nb, first, &c->words));
        else {
            c->words.n = 0;
            QKV_TRY(qkv__tok_reserve((void **)&c->words.w, &c->words.cap, 2, sizeof *c->words.w));
            c->words.w[0] = 0;
            c->words.w[1] = c->nb.n;
            c->words.n = 1;
        }
        break;
    }
    default:
        QKV_TRY(qkv__tok_reserve((void **)&c->words.w, &c->words.cap, 2, sizeof *c->words.w));
        c->words.w[0] = 0;
        c->words.w[1] = c->nb.n;
        c->words.n = 1;
    }
    for (size_t w = 0; w < c->words.n; w++)
        QKV_TRY(encode_word(t, text, c, c->words.w[2 * w], c->words.w[2 * w + 1], out));
    return QKV_OK;
}

/* Marian: a segment starting with ">>xx<<" gives that code as one token first
 * (MarianTokenizer.remove_language_code); returns the bytes consumed */
static qkv_status marian_code(const qkv_tokenizer *t, const uint8_t *s, size_t a, size_t b,
                              tok_seq *out, size_t *used) {
    *used = 0;
    if (b - a < 2 || s[a] != '>' || s[a + 1] != '>') return QKV_OK;
    for (size_t i = a + 2; i + 1 < b; i++)
        if (s[i] == '<' && s[i + 1] == '<') {
            int32_t id = qkv_tokenizer_token_to_id(t, (const char *)s + a, i + 2 - a);
            if (id < 0) id = t->uni.unk_out;
            if (id < 0) return qkv__fail(QKV_ERR_FORMAT, "tokenizer: no <unk> for a language code");
            *used = i + 2 - a;
            return qkv__tok_seq_push(out, id, (uint32_t)a, (uint32_t)(i + 2), 0);
        }
    return QKV_OK;
}

static qkv_status encode_text(const qkv_tokenizer *t, const uint8_t *text, size_t a, size_t b,
                              enc_ctx *c, tok_seq *out) {
    if (t->uni.marian_codes) {
        size_t used;
        QKV_TRY(marian_code(t, text, a, b, out, &used));
        a += used;
        if (a == b) return QKV_OK;
    }
    return encode_segment(t, text, a, b, c, out);
}

static int is_space_byte_at(const uint8_t *s, size_t n, size_t i, size_t *len, int back) {
    /* a white space char ending at i (back) or starting at i */
    if (!back) {
        if (i >= n) return 0;
        uint32_t cp = qkv__utf8_next(s + i, n - i, len);
        return qkv__uni_is_whitespace(cp);
    }
    if (i == 0) return 0;
    size_t k = i - 1, m = 0;
    while (k > 0 && m < 3 && (s[k] & 0xC0) == 0x80) k--, m++;
    uint32_t cp = qkv__utf8_next(s + k, n - k, len);
    return k + *len == i && qkv__uni_is_whitespace(cp);
}

static qkv_status encode_seq(const qkv_tokenizer *t, const uint8_t *s, size_t n, enc_ctx *c,
                             tok_seq *out) {
    size_t pos = 0;
    while (pos < n) {
        size_t at = n;
        int k = t->n_added ? added_find(t, s, pos, n, &at) : -1;
        if (k < 0) {
            QKV_TRY(encode_text(t, s, pos, n, c, out));
            break;
        }
        const tok_added *a = &t->added[k];
        size_t ms = at, me = at + a->len, l;
        if (a->lstrip)
            while (ms > pos && is_space_byte_at(s, n, ms, &l, 1)) ms -= l;
        if (a->rstrip)
            while (is_space_byte_at(s, n, me, &l, 0)) me += l;
        if (ms > pos) QKV_TRY(encode_text(t, s, pos, ms, c, out));
        QKV_TRY(qkv__tok_seq_push(out, a->id, (uint32_t)ms, (uint32_t)me, a->special));
        pos = me;
    }
    return QKV_OK;
}

/* ---------------------------------------------------------------- long texts, truncated */

size_t qkv__tok_prefix_min = (size_t)64 << 10;
size_t qkv__tok_prefix_used;

/* A truncated text needs only the tokens truncation keeps, and with a pre-tokenizer that cuts
 * words at white space, the tokens of the words before a white space are those of the whole
 * text. So a long text (one 50 MB line) is encoded by prefixes, cut where a white space follows
 * a visible ASCII char, growing x4 until the tokens ending at least PREFIX_MARGIN bytes before
 * the cut are max_length or more; the result is the whole text's (test_tokenizer_api checks it)
 * and memory stays bounded by the prefix. Everything whose reach is not local is left whole:
 * a pair, truncation from the left, and models that see the text as one word (no
 * pre-tokenizer, ByteLevel without its regex, Metaspace without splitting). The margin covers
 * what normalizers and pre-tokenizers look at around a char (white space runs, NFC, a
 * charsmap's match, an added token that strips the spaces around it). */
#define PREFIX_MARGIN 256

static int prefix_applies(const qkv_tokenizer *t, const qkv_encode_options *o, const char *pair) {
    if (qkv__tok_prefix_min == SIZE_MAX || pair || o->max_length <= 0 || o->truncate_left) return 0;
    switch (t->pre.kind) {
    case TOK_PRE_BERT: return 1;
    case TOK_PRE_BYTELEVEL: return t->pre.use_regex;
    case TOK_PRE_META: return t->pre.split || t->pre.ws_split;
    default: return 0;
    }
}

static int ascii_space(uint8_t b) { return b == ' ' || b == '\t' || b == '\n' || b == '\r'; }

/* Encodes a prefix of s[0..*len) into c->a holding at least max_length tokens that the whole
 * text also has, first; *len becomes the prefix's length. Short texts: the whole. */
static qkv_status encode_prefix(const qkv_tokenizer *t, const uint8_t *s, size_t *len,
                                const qkv_encode_options *o, enc_ctx *c) {
    const size_t n = *len, want = (size_t)o->max_length;
    size_t margin = PREFIX_MARGIN;
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].len + PREFIX_MARGIN > margin) margin = t->added[i].len + PREFIX_MARGIN;
    size_t p = want * 4 > qkv__tok_prefix_min ? want * 4 : qkv__tok_prefix_min;
    while (p < n - (n < margin ? n : margin)) {
        size_t cut = p + margin; /* a white space after a visible ASCII char */
        while (cut < n && !(ascii_space(s[cut]) && s[cut - 1] > 0x20 && s[cut - 1] < 0x7F)) cut++;
        if (cut >= n) break;
        c->a.n = 0;
        QKV_TRY(encode_seq(t, s, cut, c, &c->a));
        size_t keep = 0; /* tokens ending before the margin (spans are in text order) */
        while (keep < c->a.n && c->a.end[keep] + margin <= cut) keep++;
        if (keep >= want) {
            c->a.n = keep;
            *len = cut;
            __atomic_fetch_add(&qkv__tok_prefix_used, 1, __ATOMIC_RELAXED);
            return QKV_OK;
        }
        if (p > n / 4) break; /* the next prefix would be most of the text */
        p *= 4;
    }
    c->a.n = 0;
    return encode_seq(t, s, n, c, &c->a);
}

qkv_status qkv_tokenizer_encode(const qkv_tokenizer *t, const char *text, size_t len,
                                const char *pair, size_t pair_len, const qkv_encode_options *opts,
                                qkv_encoding **out) {
    if (!out) return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_tokenizer_encode: out is NULL");
    *out = NULL;
    if (!t || (!text && len))
        return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_tokenizer_encode: NULL tokenizer or text");
    if (!pair && pair_len)
        return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_tokenizer_encode: NULL pair with a length");
    if (len >= UINT32_MAX || pair_len >= UINT32_MAX)
        return qkv__fail(QKV_ERR_INVALID_ARG,
                         "qkv_tokenizer_encode: a text of %zu bytes is "
                         "over the 4 GiB limit; split it",
                         len > pair_len ? len : pair_len);
    qkv_encode_options o; /* in this version's layout (core/abi.h); NULL: the defaults */
    QKV_TRY(
        QKV__STRUCT_IN(qkv_encode_options, &o, opts, &t->defaults, "qkv_tokenizer_encode: opts"));
    enc_ctx *c = ctx_take(t);
    if (!c) return qkv__fail(QKV_ERR_NOMEM, "qkv_tokenizer_encode: context");
    const uint8_t *s = text ? (const uint8_t *)text : (const uint8_t *)"";
    qkv_status st = prefix_applies(t, &o, pair) ? encode_prefix(t, s, &len, &o, c)
                                                : encode_seq(t, s, len, c, &c->a);
    if (st == QKV_OK && pair) st = encode_seq(t, (const uint8_t *)pair, pair_len, c, &c->b);
    if (st == QKV_OK)
        st = qkv__tok_postprocess(t, c, &c->a, pair ? &c->b : NULL, &o, s, len,
                                  (const uint8_t *)pair, pair_len, out);
    ctx_give(t, c);
    return st;
}
