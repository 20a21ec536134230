/* load_json.c — Hugging Face tokenizer.json into a qkv_tokenizer.
 *
 * Every component is matched by its "type" against the list of docs/TOKENIZERS.md; anything
 * else (or an option we do not implement, such as BPE dropout) is refused with
 * QKV_ERR_UNSUPPORTED naming it, never ignored, since silently different ids are the worst
 * failure a tokenizer can have. Malformed files give QKV_ERR_FORMAT with the JSON path. */
#include "tokenizer/tokenizer_internal.h"

#include "core/alloc.h"
#include "core/error.h"
#include "io/json.h"
#include "tokenizer/unicode.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

typedef struct jctx {
    const char *path;
    qkv_tokenizer *t;
} jctx;

#define FMT(c, ...) qkv__fail(QKV_ERR_FORMAT, __VA_ARGS__)

static const char *type_of(json_t *o) {
    json_t *ty = json_object_get(o, "type");
    return json_is_string(ty) ? json_string_value(ty) : NULL;
}

/* optional boolean: absent or null gives def; anything else but a bool is an error */
static int get_bool(const jctx *c, json_t *o, const char *key, int def, qkv_status *st) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return def;
    if (!json_is_boolean(v)) {
        *st = FMT(c, "%s: \"%s\" must be true or false", c->path, key);
        return def;
    }
    return json_is_true(v);
}

static int64_t get_int(const jctx *c, json_t *o, const char *key, int64_t def, qkv_status *st) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return def;
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        *st = FMT(c, "%s: \"%s\" must be a non-negative integer", c->path, key);
        return def;
    }
    return json_integer_value(v);
}

static const char *get_str(const jctx *c, json_t *o, const char *key, const char *def,
                           qkv_status *st) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return def;
    if (!json_is_string(v)) {
        *st = FMT(c, "%s: \"%s\" must be a string", c->path, key);
        return def;
    }
    return json_string_value(v);
}

static qkv_status unsupported(const jctx *c, const char *what, const char *name) {
    return qkv__fail(QKV_ERR_UNSUPPORTED, "%s: %s \"%s\" is not supported (see docs/TOKENIZERS.md)",
                     c->path, what, name ? name : "(no type)");
}

/* strict standard base64 (with padding), as tokenizers' serde reads precompiled_charsmap */
static qkv_status base64_decode(const jctx *c, const char *in, size_t n, uint8_t **out,
                                size_t *out_n) {
    if (n % 4 != 0) return FMT(c, "%s: precompiled_charsmap is not base64", c->path);
    uint8_t *o = qkv__alloc(n / 4 * 3 + 1);
    if (!o) return qkv__fail(QKV_ERR_NOMEM, "%s: precompiled_charsmap", c->path);
    size_t k = 0;
    for (size_t i = 0; i < n; i += 4) {
        uint32_t v = 0;
        int pad = 0;
        for (int j = 0; j < 4; j++) {
            char ch = in[i + (size_t)j];
            int d;
            if (ch >= 'A' && ch <= 'Z')
                d = ch - 'A';
            else if (ch >= 'a' && ch <= 'z')
                d = ch - 'a' + 26;
            else if (ch >= '0' && ch <= '9')
                d = ch - '0' + 52;
            else if (ch == '+')
                d = 62;
            else if (ch == '/')
                d = 63;
            else if (ch == '=' && i + 4 == n && j >= 2 && (j == 3 || in[i + 3] == '='))
                d = 0, pad++;
            else
                d = -1;
            if (d < 0 || (pad && ch != '=')) {
                qkv__free(o);
                return FMT(c, "%s: precompiled_charsmap is not base64 (at char %zu)", c->path,
                           i + (size_t)j);
            }
            v = v << 6 | (uint32_t)d;
        }
        o[k++] = (uint8_t)(v >> 16);
        if (pad < 2) o[k++] = (uint8_t)(v >> 8);
        if (pad < 1) o[k++] = (uint8_t)v;
    }
    *out = o;
    *out_n = k;
    return QKV_OK;
}

/* a JSON string as code points (for Replace / Prepend / Metaspace) */
static qkv_status utf32_of(const jctx *c, const char *s, uint32_t **out, size_t *n) {
    size_t len = strlen(s), i = 0, k;
    *out = qkv__alloc((len + 1) * sizeof **out);
    if (!*out) return qkv__fail(QKV_ERR_NOMEM, "%s: normalizer", c->path);
    *n = 0;
    while (i < len) {
        (*out)[(*n)++] = qkv__utf8_next((const uint8_t *)s + i, len - i, &k);
        i += k;
    }
    return QKV_OK;
}

/* tokenizers' Replace pattern {"String": s} or {"Regex": r}; of regexes only a literal or one
 * char repeated (c+, c{n,}) is supported. */
static qkv_status replace_pattern(const jctx *c, json_t *n, tok_nstep *z) {
    json_t *pat = json_object_get(n, "pattern");
    json_t *str = json_object_get(pat, "String"), *re = json_object_get(pat, "Regex");
    json_t *content = json_object_get(n, "content");
    if (!json_is_string(content) || !(json_is_string(str) || json_is_string(re)))
        return FMT(c, "%s: Replace needs pattern {\"String\"|\"Regex\": ...} and content", c->path);
    QKV_TRY(utf32_of(c, json_string_value(content), &z->with, &z->with_n));
    const char *p = json_string_value(str ? str : re);
    QKV_TRY(utf32_of(c, p, &z->pat, &z->pat_n));
    if (str) return QKV_OK;
    /* regex: a literal without metacharacters, or X+ / X{n,} with X one literal char */
    static const char meta[] = "\\^$.|?*+()[]{}";
    size_t plen = strlen(p), lit = 0;
    while (lit < plen && !strchr(meta, p[lit])) lit++;
    if (lit == plen) return QKV_OK;
    size_t k, min = 0;
    uint32_t ch = plen ? qkv__utf8_next((const uint8_t *)p, plen, &k) : 0;
    const char *q = plen ? p + k : p;
    unsigned long v;
    char tail;
    if (plen && !strchr(meta, p[0]) && strcmp(q, "+") == 0)
        min = 1;
    else if (plen && !strchr(meta, p[0]) && sscanf(q, "{%lu,}%c", &v, &tail) == 1 && v > 0 &&
             v < 1000000 && q[strlen(q) - 1] == '}' && strchr(q, ','))
        min = v;
    if (!min) return unsupported(c, "Replace regex", p);
    z->pat[0] = ch;
    z->pat_n = 1;
    z->pat_min = min;
    return QKV_OK;
}

static qkv_status load_nstep(jctx *c, json_t *n, tok_nstep *z) {
    const char *ty = type_of(n);
    qkv_status st = QKV_OK;
    static const struct {
        const char *name;
        int kind;
    } simple[] = {{"NFC", TOK_NS_NFC},
                  {"NFD", TOK_NS_NFD},
                  {"NFKC", TOK_NS_NFKC},
                  {"NFKD", TOK_NS_NFKD},
                  {"Lowercase", TOK_NS_LOWERCASE}};
    for (size_t i = 0; ty && i < sizeof simple / sizeof simple[0]; i++)
        if (strcmp(ty, simple[i].name) == 0) {
            z->kind = simple[i].kind;
            return QKV_OK;
        }
    if (ty && strcmp(ty, "Strip") == 0) {
        z->kind = TOK_NS_STRIP;
        z->left = get_bool(c, n, "strip_left", 0, &st);
        z->right = get_bool(c, n, "strip_right", 0, &st);
        return st;
    }
    if (ty && strcmp(ty, "Replace") == 0) {
        z->kind = TOK_NS_REPLACE;
        return replace_pattern(c, n, z);
    }
    if (ty && strcmp(ty, "Prepend") == 0) {
        z->kind = TOK_NS_PREPEND;
        const char *pre = get_str(c, n, "prepend", NULL, &st);
        QKV_TRY(st);
        if (!pre) return FMT(c, "%s: Prepend needs \"prepend\"", c->path);
        return utf32_of(c, pre, &z->with, &z->with_n);
    }
    if (ty && strcmp(ty, "Precompiled") == 0) {
        z->kind = TOK_NS_PRECOMPILED;
        json_t *b = json_object_get(n, "precompiled_charsmap");
        if (!json_is_string(b))
            return FMT(c, "%s: Precompiled needs \"precompiled_charsmap\"", c->path);
        uint8_t *blob = NULL;
        size_t bn = 0;
        QKV_TRY(base64_decode(c, json_string_value(b), json_string_length(b), &blob, &bn));
        st = qkv__charsmap_parse(blob, bn, c->path, &z->charsmap);
        qkv__free(blob);
        return st;
    }
    return unsupported(c, "normalizer", ty);
}

static qkv_status load_normalizer(jctx *c, json_t *n) {
    if (!n || json_is_null(n)) return QKV_OK;
    const char *ty = type_of(n);
    qkv_status st = QKV_OK;
    tok_normalizer *z = &c->t->norm;
    if (ty && strcmp(ty, "BertNormalizer") == 0) {
        z->kind = TOK_NORM_BERT;
        z->clean_text = get_bool(c, n, "clean_text", 1, &st);
        z->handle_chinese = get_bool(c, n, "handle_chinese_chars", 1, &st);
        z->lowercase = get_bool(c, n, "lowercase", 1, &st);
        z->strip_accents = get_bool(c, n, "strip_accents", z->lowercase, &st);
        return st;
    }
    json_t *list = NULL;
    size_t cnt = 1;
    if (ty && strcmp(ty, "Sequence") == 0) {
        list = json_object_get(n, "normalizers");
        if (!json_is_array(list))
            return FMT(c, "%s: normalizer Sequence needs \"normalizers\"", c->path);
        cnt = json_array_size(list);
        if (cnt == 0) return QKV_OK;
    }
    z->steps = qkv__calloc(cnt, sizeof *z->steps);
    if (!z->steps) return qkv__fail(QKV_ERR_NOMEM, "%s: normalizer", c->path);
    z->kind = TOK_NORM_STEPS;
    for (size_t i = 0; i < cnt; i++) {
        z->n_steps = i + 1; /* counted before loading: a partial step is freed */
        json_t *x = list ? json_array_get(list, i) : n;
        if (!json_is_object(x)) return FMT(c, "%s: normalizers[%zu] must be an object", c->path, i);
        QKV_TRY(load_nstep(c, x, &z->steps[i]));
    }
    return QKV_OK;
}

static qkv_status load_meta(jctx *c, json_t *p, uint32_t *ch, int *prepend, int *split) {
    qkv_status st = QKV_OK;
    const char *rep = get_str(c, p, "replacement", "\xE2\x96\x81", &st);
    const char *scheme = get_str(c, p, "prepend_scheme", NULL, &st);
    int add = get_bool(c, p, "add_prefix_space", -1, &st);
    if (split) *split = get_bool(c, p, "split", 1, &st);
    QKV_TRY(st);
    size_t k, rl = strlen(rep);
    if (rl == 0 || (*ch = qkv__utf8_next((const uint8_t *)rep, rl, &k), k != rl))
        return FMT(c, "%s: Metaspace replacement must be one char", c->path);
    if (!scheme || strcmp(scheme, "always") == 0)
        *prepend = TOK_PREPEND_ALWAYS;
    else if (strcmp(scheme, "first") == 0)
        *prepend = TOK_PREPEND_FIRST;
    else if (strcmp(scheme, "never") == 0)
        *prepend = TOK_PREPEND_NEVER;
    else
        return FMT(c, "%s: Metaspace prepend_scheme \"%s\"", c->path, scheme);
    if (add == 0) { /* the old field; tokenizers insists they agree */
        if (scheme && *prepend != TOK_PREPEND_NEVER)
            return FMT(c, "%s: Metaspace add_prefix_space does not match prepend_scheme", c->path);
        *prepend = TOK_PREPEND_NEVER;
    }
    return QKV_OK;
}

static qkv_status load_pre(jctx *c, json_t *p) {
    if (!p || json_is_null(p)) return QKV_OK;
    const char *ty = type_of(p);
    qkv_status st = QKV_OK;
    if (ty && strcmp(ty, "BertPreTokenizer") == 0) {
        c->t->pre.kind = TOK_PRE_BERT;
    } else if (ty && strcmp(ty, "ByteLevel") == 0) {
        c->t->pre.kind = TOK_PRE_BYTELEVEL;
        c->t->pre.add_prefix_space = get_bool(c, p, "add_prefix_space", 1, &st);
        c->t->pre.use_regex = get_bool(c, p, "use_regex", 1, &st);
    } else if (ty && (strcmp(ty, "Metaspace") == 0 || strcmp(ty, "Sequence") == 0)) {
        json_t *m = p;
        if (ty[0] == 'S') { /* only [WhitespaceSplit, Metaspace] (T5) */
            json_t *l = json_object_get(p, "pretokenizers");
            const char *t0 = json_array_size(l) == 2 ? type_of(json_array_get(l, 0)) : NULL;
            const char *t1 = json_array_size(l) == 2 ? type_of(json_array_get(l, 1)) : NULL;
            if (!t0 || !t1 || strcmp(t0, "WhitespaceSplit") != 0 || strcmp(t1, "Metaspace") != 0)
                return unsupported(c, "pre_tokenizer Sequence (only [WhitespaceSplit, Metaspace])",
                                   t0);
            m = json_array_get(l, 1);
            c->t->pre.ws_split = 1;
        }
        c->t->pre.kind = TOK_PRE_META;
        return load_meta(c, m, &c->t->pre.meta_char, &c->t->pre.prepend, &c->t->pre.split);
    } else {
        return unsupported(c, "pre_tokenizer", ty);
    }
    return st;
}

static qkv_status load_vocab(jctx *c, json_t *vocab) {
    if (!json_is_object(vocab)) return FMT(c, "%s: model.vocab must be an object", c->path);
    const char *k;
    json_t *v;
    json_object_foreach(vocab, k, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= INT32_MAX)
            return FMT(c, "%s: model.vocab[\"%s\"] must be an id in [0, 2^31)", c->path, k);
        QKV_TRY(qkv__tok_add_vocab(c->t, k, strlen(k), json_integer_value(v)));
    }
    return QKV_OK;
}

static int32_t vocab_id(const qkv_tokenizer *t, const char *s, size_t n) {
    int32_t id;
    return qkv__strmap_get(&t->vocab, s, n, &id) ? id : -1;
}

static qkv_status add_merge(jctx *c, size_t rank, const char *a, size_t al, const char *b,
                            size_t bl) {
    qkv_tokenizer *t = c->t;
    int32_t ia = vocab_id(t, a, al), ib = vocab_id(t, b, bl);
    char stackbuf[256];
    char *ab = al + bl <= sizeof stackbuf ? stackbuf : qkv__alloc(al + bl);
    if (!ab) return qkv__fail(QKV_ERR_NOMEM, "%s: merge", c->path);
    memcpy(ab, a, al);
    memcpy(ab + al, b, bl);
    int32_t im = vocab_id(t, ab, al + bl);
    if (ab != stackbuf) qkv__free(ab);
    if (ia < 0 || ib < 0 || im < 0)
        return FMT(c, "%s: merge %zu (\"%.*s\" \"%.*s\") uses a token missing from the vocabulary",
                   c->path, rank, (int)(al < 64 ? al : 64), a, (int)(bl < 64 ? bl : 64), b);
    if (rank >= UINT32_MAX) return FMT(c, "%s: too many merges", c->path);
    uint64_t key = ((uint64_t)(uint32_t)ia << 32) | (uint32_t)ib;
    uint64_t old;
    if (qkv__u64map_get(&t->bpe.merges, key, &old)) return QKV_OK; /* the first rank wins */
    return qkv__u64map_put(&t->bpe.merges, key, ((uint64_t)rank << 32) | (uint32_t)im);
}

qkv_status qkv__tok_merge_line(qkv_tokenizer *t, const char *path, size_t rank, const char *line,
                               size_t len) {
    jctx c = {path, t};
    const char *sp = memchr(line, ' ', len);
    if (!sp || memchr(sp + 1, ' ', len - (size_t)(sp + 1 - line)))
        return FMT(&c, "%s: merge %zu must be two tokens separated by one space", path, rank);
    return add_merge(&c, rank, line, (size_t)(sp - line), sp + 1, len - (size_t)(sp + 1 - line));
}

/* Unigram: "vocab": [[piece, score], ...] (ids are positions), "unk_id", "byte_fallback" */
static qkv_status load_unigram(jctx *c, json_t *m) {
    qkv_tokenizer *t = c->t;
    tok_unigram *u = &t->uni;
    qkv_status st = QKV_OK;
    t->model = TOK_MODEL_UNIGRAM;
    u->byte_fallback = get_bool(c, m, "byte_fallback", 0, &st);
    json_t *uid = json_object_get(m, "unk_id");
    QKV_TRY(st);
    json_t *vocab = json_object_get(m, "vocab");
    if (!json_is_array(vocab) || json_array_size(vocab) == 0)
        return FMT(c, "%s: Unigram model.vocab must be a non-empty array", c->path);
    size_t n = json_array_size(vocab);
    if (n >= INT32_MAX) return FMT(c, "%s: Unigram vocabulary too large", c->path);
    u->scores = qkv__alloc(n * sizeof *u->scores);
    if (!u->scores) return qkv__fail(QKV_ERR_NOMEM, "%s: Unigram vocabulary", c->path);
    u->n_pieces = n;
    for (size_t i = 0; i < n; i++) {
        json_t *x = json_array_get(vocab, i);
        json_t *p = json_array_get(x, 0), *sc = json_array_get(x, 1);
        if (!json_is_array(x) || json_array_size(x) != 2 || !json_is_string(p) ||
            !json_is_number(sc))
            return FMT(c, "%s: model.vocab[%zu] must be [piece, score]", c->path, i);
        u->scores[i] = json_number_value(sc);
        /* a repeated piece: the last id wins, as tokenizers' token_to_ids */
        QKV_TRY(
            qkv__strmap_put(&u->pieces, json_string_value(p), json_string_length(p), (int32_t)i));
        QKV_TRY(qkv__tok_add_vocab(t, json_string_value(p), json_string_length(p), (int64_t)i));
    }
    u->unk = -1;
    if (uid && !json_is_null(uid)) {
        if (!json_is_integer(uid) || json_integer_value(uid) < 0 ||
            (size_t)json_integer_value(uid) >= n)
            return FMT(c, "%s: Unigram unk_id must be an index into vocab", c->path);
        u->unk = (int32_t)json_integer_value(uid);
    }
    u->unk_out = u->unk;
    return QKV_OK;
}

static qkv_status load_model(jctx *c, json_t *m) {
    qkv_tokenizer *t = c->t;
    if (!json_is_object(m)) return FMT(c, "%s: \"model\" must be an object", c->path);
    const char *ty = type_of(m);
    if (!ty) ty = json_object_get(m, "merges") ? "BPE" : "WordPiece";
    qkv_status st = QKV_OK;
    if (strcmp(ty, "WordPiece") == 0) {
        t->model = TOK_MODEL_WORDPIECE;
        QKV_TRY(load_vocab(c, json_object_get(m, "vocab")));
        const char *unk = get_str(c, m, "unk_token", "[UNK]", &st);
        const char *pf = get_str(c, m, "continuing_subword_prefix", "##", &st);
        t->wp.max_chars = (size_t)get_int(c, m, "max_input_chars_per_word", 100, &st);
        QKV_TRY(st);
        t->wp.unk_id = vocab_id(t, unk, strlen(unk));
        t->wp.prefix = qkv__strdup(pf);
        if (!t->wp.prefix) return qkv__fail(QKV_ERR_NOMEM, "%s", c->path);
        t->wp.prefix_len = strlen(pf);
        return QKV_OK;
    }
    if (strcmp(ty, "Unigram") == 0) return load_unigram(c, m);
    if (strcmp(ty, "BPE") != 0) return unsupported(c, "model", ty);
    t->model = TOK_MODEL_BPE;
    json_t *d = json_object_get(m, "dropout");
    if (d && !json_is_null(d)) return unsupported(c, "model option", "BPE dropout");
    t->bpe.byte_fallback = get_bool(c, m, "byte_fallback", 0, &st);
    const char *csp = get_str(c, m, "continuing_subword_prefix", NULL, &st);
    const char *eow = get_str(c, m, "end_of_word_suffix", NULL, &st);
    if ((csp && *csp) || (eow && *eow))
        return unsupported(c, "model option",
                           csp && *csp ? "BPE continuing_subword_prefix"
                                       : "BPE end_of_word_suffix");
    t->bpe.fuse_unk = get_bool(c, m, "fuse_unk", 0, &st);
    t->bpe.ignore_merges = get_bool(c, m, "ignore_merges", 0, &st);
    const char *unk = get_str(c, m, "unk_token", NULL, &st);
    QKV_TRY(st);
    QKV_TRY(load_vocab(c, json_object_get(m, "vocab")));
    if (unk) t->bpe.unk_id = vocab_id(t, unk, strlen(unk));
    t->bpe.unk_missing = unk && t->bpe.unk_id < 0;
    json_t *merges = json_object_get(m, "merges");
    if (!json_is_array(merges)) return FMT(c, "%s: model.merges must be an array", c->path);
    size_t i;
    json_t *x;
    json_array_foreach(merges, i, x) {
        if (json_is_string(x)) {
            QKV_TRY(
                qkv__tok_merge_line(t, c->path, i, json_string_value(x), json_string_length(x)));
        } else if (json_is_array(x) && json_array_size(x) == 2 &&
                   json_is_string(json_array_get(x, 0)) && json_is_string(json_array_get(x, 1))) {
            json_t *a = json_array_get(x, 0), *b = json_array_get(x, 1);
            QKV_TRY(add_merge(c, i, json_string_value(a), json_string_length(a),
                              json_string_value(b), json_string_length(b)));
        } else {
            return FMT(c, "%s: model.merges[%zu] must be \"a b\" or [\"a\", \"b\"]", c->path, i);
        }
    }
    return QKV_OK;
}

static qkv_status load_added(jctx *c, json_t *arr) {
    if (!arr || json_is_null(arr)) return QKV_OK;
    if (!json_is_array(arr)) return FMT(c, "%s: \"added_tokens\" must be an array", c->path);
    size_t i;
    json_t *x;
    json_array_foreach(arr, i, x) {
        qkv_status st = QKV_OK;
        json_t *content = json_object_get(x, "content");
        if (!json_is_object(x) || !json_is_string(content) || json_string_length(content) == 0)
            return FMT(c, "%s: added_tokens[%zu] needs a non-empty \"content\"", c->path, i);
        int64_t id = get_int(c, x, "id", -1, &st);
        int special = get_bool(c, x, "special", 0, &st);
        int single = get_bool(c, x, "single_word", 0, &st);
        int lstrip = get_bool(c, x, "lstrip", 0, &st);
        int rstrip = get_bool(c, x, "rstrip", 0, &st);
        int normalized = get_bool(c, x, "normalized", !special, &st);
        QKV_TRY(st);
        if (id < 0) return FMT(c, "%s: added_tokens[%zu] needs an \"id\"", c->path, i);
        if (single) return unsupported(c, "added token option", "single_word");
        if (normalized && c->t->norm.kind != TOK_NORM_NONE)
            return unsupported(c, "added token option", "normalized (with a normalizer)");
        QKV_TRY(qkv__tok_add_added(c->t, json_string_value(content), json_string_length(content),
                                   id, special, lstrip, rstrip, normalized));
    }
    return QKV_OK;
}

/* a special token given as ["[CLS]", 101] (BertProcessing / RobertaProcessing) */
static qkv_status special_pair(jctx *c, json_t *p, const char *key, int32_t *id) {
    json_t *v = json_object_get(p, key);
    if (!json_is_array(v) || json_array_size(v) != 2 || !json_is_integer(json_array_get(v, 1)) ||
        json_integer_value(json_array_get(v, 1)) < 0 ||
        json_integer_value(json_array_get(v, 1)) >= INT32_MAX)
        return FMT(c, "%s: post_processor.%s must be [token, id]", c->path, key);
    *id = (int32_t)json_integer_value(json_array_get(v, 1));
    return QKV_OK;
}

static qkv_status make_piece(tok_piece *p, int is_seq, int seq, int32_t type_id, const int32_t *ids,
                             size_t n) {
    memset(p, 0, sizeof *p);
    p->is_seq = is_seq;
    p->seq = seq;
    p->type_id = type_id;
    if (n) {
        p->ids = qkv__alloc(n * sizeof *ids);
        if (!p->ids) return qkv__fail(QKV_ERR_NOMEM, "tokenizer: template");
        memcpy(p->ids, ids, n * sizeof *ids);
        p->n_ids = n;
    }
    return QKV_OK;
}

/* [cls] A [sep] / [cls] A [sep] B [sep] (Bert: B's part has type 1; Roberta: <s> A </s></s> B
 * </s> all type 0) */
static qkv_status template_bert(qkv_tokenizer *t, int32_t cls, int32_t sep, int roberta) {
    tok_post *p = &t->post;
    p->kind = TOK_POST_TEMPLATE;
    p->single = qkv__calloc(3, sizeof *p->single);
    p->pair = qkv__calloc(6, sizeof *p->pair);
    if (!p->single || !p->pair) return qkv__fail(QKV_ERR_NOMEM, "tokenizer: template");
    p->n_single = 3;
    p->n_pair = roberta ? 6 : 5; /* zeroed pieces: freeing a partial template is safe */
    QKV_TRY(make_piece(&p->single[0], 0, 0, 0, &cls, 1));
    QKV_TRY(make_piece(&p->single[1], 1, 0, 0, NULL, 0));
    QKV_TRY(make_piece(&p->single[2], 0, 0, 0, &sep, 1));
    int32_t tb = roberta ? 0 : 1;
    size_t k = 0;
    QKV_TRY(make_piece(&p->pair[k++], 0, 0, 0, &cls, 1));
    QKV_TRY(make_piece(&p->pair[k++], 1, 0, 0, NULL, 0));
    QKV_TRY(make_piece(&p->pair[k++], 0, 0, 0, &sep, 1));
    if (roberta) QKV_TRY(make_piece(&p->pair[k++], 0, 0, 0, &sep, 1));
    QKV_TRY(make_piece(&p->pair[k++], 1, 1, tb, NULL, 0));
    QKV_TRY(make_piece(&p->pair[k++], 0, 0, tb, &sep, 1));
    return QKV_OK;
}

qkv_status qkv__tok_template_bert(qkv_tokenizer *t, const char *cls, const char *sep, int roberta) {
    int32_t ic = qkv_tokenizer_token_to_id(t, cls, strlen(cls));
    int32_t is = qkv_tokenizer_token_to_id(t, sep, strlen(sep));
    if (ic < 0 || is < 0)
        return qkv__fail(QKV_ERR_FORMAT, "tokenizer: special token %s is not in the vocabulary",
                         ic < 0 ? cls : sep);
    return template_bert(t, ic, is, roberta);
}

/* A </s> / A B </s>, all type 0 (MarianTokenizer.build_inputs_with_special_tokens) */
qkv_status qkv__tok_template_eos(qkv_tokenizer *t, int32_t eos) {
    tok_post *p = &t->post;
    p->kind = TOK_POST_TEMPLATE;
    p->single = qkv__calloc(2, sizeof *p->single);
    p->pair = qkv__calloc(3, sizeof *p->pair);
    if (!p->single || !p->pair) return qkv__fail(QKV_ERR_NOMEM, "tokenizer: template");
    p->n_single = 2;
    p->n_pair = 3;
    QKV_TRY(make_piece(&p->single[0], 1, 0, 0, NULL, 0));
    QKV_TRY(make_piece(&p->single[1], 0, 0, 0, &eos, 1));
    QKV_TRY(make_piece(&p->pair[0], 1, 0, 0, NULL, 0));
    QKV_TRY(make_piece(&p->pair[1], 1, 1, 0, NULL, 0));
    return make_piece(&p->pair[2], 0, 0, 0, &eos, 1);
}

static qkv_status template_list(jctx *c, json_t *special, json_t *arr, const char *name,
                                tok_piece **out, size_t *n) {
    if (!json_is_array(arr) || json_array_size(arr) == 0)
        return FMT(c, "%s: post_processor.%s must be a non-empty array", c->path, name);
    *out = qkv__calloc(json_array_size(arr), sizeof **out);
    if (!*out) return qkv__fail(QKV_ERR_NOMEM, "tokenizer: template");
    size_t i;
    json_t *x;
    json_array_foreach(arr, i, x) {
        json_t *sq = json_object_get(x, "Sequence"), *sp = json_object_get(x, "SpecialToken");
        json_t *o = sq ? sq : sp;
        json_t *idv = json_object_get(o, "id"), *tyv = json_object_get(o, "type_id");
        if (!json_is_object(o) || !json_is_string(idv) || !json_is_integer(tyv) ||
            json_integer_value(tyv) < 0 || json_integer_value(tyv) > INT32_MAX)
            return FMT(c, "%s: post_processor.%s[%zu] must be a Sequence or SpecialToken", c->path,
                       name, i);
        int32_t type_id = (int32_t)json_integer_value(tyv);
        const char *id = json_string_value(idv);
        if (sq) {
            if (strcmp(id, "A") != 0 && strcmp(id, "B") != 0)
                return FMT(c, "%s: post_processor.%s[%zu]: Sequence id must be A or B", c->path,
                           name, i);
            QKV_TRY(make_piece(&(*out)[i], 1, id[0] == 'B', type_id, NULL, 0));
        } else {
            json_t *def = json_object_get(special, id);
            json_t *ids = json_object_get(def, "ids");
            if (!json_is_array(ids))
                return FMT(c, "%s: post_processor.special_tokens lacks \"%s\"", c->path, id);
            size_t m = json_array_size(ids), j;
            int32_t buf[16];
            if (m > 16) return unsupported(c, "template special token with many ids", id);
            json_t *y;
            json_array_foreach(ids, j, y) {
                if (!json_is_integer(y) || json_integer_value(y) < 0 ||
                    json_integer_value(y) >= INT32_MAX)
                    return FMT(c, "%s: post_processor.special_tokens[\"%s\"].ids", c->path, id);
                buf[j] = (int32_t)json_integer_value(y);
            }
            QKV_TRY(make_piece(&(*out)[i], 0, 0, type_id, buf, m));
        }
        (*n)++;
    }
    return QKV_OK;
}

static qkv_status load_post(jctx *c, json_t *p) {
    if (!p || json_is_null(p)) return QKV_OK;
    const char *ty = type_of(p);
    qkv_tokenizer *t = c->t;
    qkv_status st = QKV_OK;
    if (ty && strcmp(ty, "TemplateProcessing") == 0) {
        t->post.kind = TOK_POST_TEMPLATE;
        json_t *sp = json_object_get(p, "special_tokens");
        QKV_TRY(template_list(c, sp, json_object_get(p, "single"), "single", &t->post.single,
                              &t->post.n_single));
        return template_list(c, sp, json_object_get(p, "pair"), "pair", &t->post.pair,
                             &t->post.n_pair);
    }
    if (ty && (strcmp(ty, "BertProcessing") == 0 || strcmp(ty, "RobertaProcessing") == 0)) {
        int roberta = ty[0] == 'R';
        int32_t cls, sep;
        QKV_TRY(special_pair(c, p, "cls", &cls));
        QKV_TRY(special_pair(c, p, "sep", &sep));
        QKV_TRY(template_bert(t, cls, sep, roberta));
        if (roberta) {
            t->post.trim_offsets = get_bool(c, p, "trim_offsets", 1, &st);
            t->post.trim_add_prefix_space = get_bool(c, p, "add_prefix_space", 1, &st);
        }
        return st;
    }
    if (ty && strcmp(ty, "ByteLevel") == 0) {
        t->post.kind = TOK_POST_BYTELEVEL;
        t->post.trim_offsets = get_bool(c, p, "trim_offsets", 1, &st);
        t->post.trim_add_prefix_space = get_bool(c, p, "add_prefix_space", 1, &st);
        return st;
    }
    return unsupported(c, "post_processor", ty);
}

/* one char of a JSON string field ("content" of Strip) */
static qkv_status one_char(const jctx *c, json_t *o, const char *key, uint32_t *ch) {
    json_t *v = json_object_get(o, key);
    size_t k, n = json_is_string(v) ? json_string_length(v) : 0;
    if (n == 0 || (*ch = qkv__utf8_next((const uint8_t *)json_string_value(v), n, &k), k != n))
        return FMT(c, "%s: decoder \"%s\" must be one char", c->path, key);
    return QKV_OK;
}

static qkv_status load_dstep(jctx *c, json_t *d, tok_dstep *z) {
    const char *ty = type_of(d);
    qkv_status st = QKV_OK;
    if (ty && strcmp(ty, "ByteFallback") == 0) {
        z->kind = TOK_DS_BYTEFALLBACK;
        return QKV_OK;
    }
    if (ty && strcmp(ty, "Fuse") == 0) {
        z->kind = TOK_DS_FUSE;
        return QKV_OK;
    }
    if (ty && strcmp(ty, "Strip") == 0) {
        z->kind = TOK_DS_STRIP;
        QKV_TRY(one_char(c, d, "content", &z->ch));
        z->start = (size_t)get_int(c, d, "start", 0, &st);
        z->stop = (size_t)get_int(c, d, "stop", 0, &st);
        return st;
    }
    if (ty && strcmp(ty, "Metaspace") == 0) {
        z->kind = TOK_DS_META;
        return load_meta(c, d, &z->ch, &z->prepend, NULL);
    }
    if (ty && strcmp(ty, "Replace") == 0) {
        z->kind = TOK_DS_REPLACE;
        json_t *str = json_object_get(json_object_get(d, "pattern"), "String");
        json_t *content = json_object_get(d, "content");
        if (!json_is_string(str) || !json_is_string(content))
            return unsupported(c, "decoder Replace (only a String pattern)", NULL);
        if (json_string_length(str) == 0)
            return FMT(c, "%s: decoder Replace: empty pattern", c->path);
        z->from = qkv__strdup(json_string_value(str));
        z->to = qkv__strdup(json_string_value(content));
        return z->from && z->to ? QKV_OK : qkv__fail(QKV_ERR_NOMEM, "%s: decoder", c->path);
    }
    return unsupported(c, "decoder", ty);
}

static qkv_status load_decoder(jctx *c, json_t *d) {
    if (!d || json_is_null(d)) return QKV_OK;
    const char *ty = type_of(d);
    qkv_status st = QKV_OK;
    if (ty && strcmp(ty, "WordPiece") == 0) {
        c->t->dec.kind = TOK_DEC_WORDPIECE;
        const char *pf = get_str(c, d, "prefix", "##", &st);
        c->t->dec.cleanup = get_bool(c, d, "cleanup", 1, &st);
        QKV_TRY(st);
        c->t->dec.prefix = qkv__strdup(pf);
        return c->t->dec.prefix ? QKV_OK : qkv__fail(QKV_ERR_NOMEM, "tokenizer: decoder");
    }
    if (ty && strcmp(ty, "ByteLevel") == 0) {
        c->t->dec.kind = TOK_DEC_BYTELEVEL;
        return QKV_OK;
    }
    tok_decoder *z = &c->t->dec;
    json_t *list = NULL;
    size_t cnt = 1;
    if (ty && strcmp(ty, "Sequence") == 0) {
        list = json_object_get(d, "decoders");
        if (!json_is_array(list)) return FMT(c, "%s: decoder Sequence needs \"decoders\"", c->path);
        cnt = json_array_size(list);
    }
    z->steps = qkv__calloc(cnt ? cnt : 1, sizeof *z->steps);
    if (!z->steps) return qkv__fail(QKV_ERR_NOMEM, "%s: decoder", c->path);
    z->kind = TOK_DEC_STEPS;
    for (size_t i = 0; i < cnt; i++) {
        z->n_steps = i + 1;
        QKV_TRY(load_dstep(c, list ? json_array_get(list, i) : d, &z->steps[i]));
    }
    return QKV_OK;
}

static qkv_status load_options(jctx *c, json_t *tr, json_t *pad) {
    qkv_encode_options *o = &c->t->defaults;
    qkv_status st = QKV_OK;
    if (tr && !json_is_null(tr)) {
        if (!json_is_object(tr)) return FMT(c, "%s: \"truncation\" must be an object", c->path);
        o->max_length = get_int(c, tr, "max_length", 512, &st);
        const char *s = get_str(c, tr, "strategy", "LongestFirst", &st);
        const char *dir = get_str(c, tr, "direction", "Right", &st);
        QKV_TRY(st);
        if (strcmp(s, "LongestFirst") == 0)
            o->truncation = QKV_TRUNCATE_LONGEST_FIRST;
        else if (strcmp(s, "OnlyFirst") == 0)
            o->truncation = QKV_TRUNCATE_ONLY_FIRST;
        else if (strcmp(s, "OnlySecond") == 0)
            o->truncation = QKV_TRUNCATE_ONLY_SECOND;
        else
            return unsupported(c, "truncation strategy", s);
        o->truncate_left = strcmp(dir, "Left") == 0;
        if (o->max_length == 0) o->max_length = 0; /* HF: truncate everything; rare */
    }
    if (pad && !json_is_null(pad)) {
        if (!json_is_object(pad)) return FMT(c, "%s: \"padding\" must be an object", c->path);
        json_t *s = json_object_get(pad, "strategy");
        json_t *fixed = json_is_object(s) ? json_object_get(s, "Fixed") : NULL;
        if (fixed) {
            if (!json_is_integer(fixed) || json_integer_value(fixed) < 0)
                return FMT(c, "%s: padding.strategy.Fixed must be a length", c->path);
            o->pad_to = json_integer_value(fixed);
        } else if (!(json_is_string(s) && strcmp(json_string_value(s), "BatchLongest") == 0)) {
            return FMT(c, "%s: padding.strategy must be \"BatchLongest\" or {\"Fixed\": n}",
                       c->path);
        }
        o->pad_to_multiple_of = get_int(c, pad, "pad_to_multiple_of", 0, &st);
        int64_t pid = get_int(c, pad, "pad_id", 0, &st),
                ptid = get_int(c, pad, "pad_type_id", 0, &st);
        const char *dir = get_str(c, pad, "direction", "Right", &st);
        QKV_TRY(st);
        if (pid >= INT32_MAX || ptid >= INT32_MAX) return FMT(c, "%s: padding ids", c->path);
        o->pad_id = (int32_t)pid;
        o->pad_type_id = (int32_t)ptid;
        o->pad_left = strcmp(dir, "Left") == 0;
        c->t->special_ids[QKV_SPECIAL_PAD] = (int32_t)pid;
    }
    return QKV_OK;
}

qkv_status qkv__tok_load_json(qkv_tokenizer *t, const char *path) {
    char *buf;
    size_t len;
    QKV_TRY(qkv__read_file(path, &buf, &len));
    jctx c = {path, t};
    qkv__json_begin();
    json_error_t err;
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &err);
    qkv_status st = QKV_OK;
    if (qkv__json_alloc_failed()) { /* jansson went on after a failed allocation (io/json.h) */
        st = qkv__fail(QKV_ERR_NOMEM, "%s: out of memory parsing JSON", path);
    } else if (!root) {
        st = FMT(&c, "%s: invalid JSON at line %d column %d: %s", path, err.line, err.column,
                 err.text);
    } else if (!json_is_object(root)) {
        st = FMT(&c, "%s: the top level must be an object", path);
    } else {
        st = load_normalizer(&c, json_object_get(root, "normalizer"));
        if (st == QKV_OK) st = load_pre(&c, json_object_get(root, "pre_tokenizer"));
        if (st == QKV_OK) st = load_model(&c, json_object_get(root, "model"));
        if (st == QKV_OK && t->model == TOK_MODEL_BPE) {
            if (t->pre.kind == TOK_PRE_BERT)
                st = unsupported(&c, "pre_tokenizer for BPE (ByteLevel, Metaspace or none)",
                                 "BertPreTokenizer");
            t->bpe.byte_level = t->pre.kind == TOK_PRE_BYTELEVEL;
            if (st == QKV_OK && t->bpe.ignore_merges && !t->bpe.byte_level)
                st = unsupported(&c, "model option", "BPE ignore_merges without ByteLevel");
        }
        if (st == QKV_OK) st = load_added(&c, json_object_get(root, "added_tokens"));
        if (st == QKV_OK) st = load_post(&c, json_object_get(root, "post_processor"));
        if (st == QKV_OK) st = load_decoder(&c, json_object_get(root, "decoder"));
        if (st == QKV_OK)
            st = load_options(&c, json_object_get(root, "truncation"),
                              json_object_get(root, "padding"));
        if (st == QKV_OK && t->n_ids == 0) st = FMT(&c, "%s: empty vocabulary", path);
    }
    json_decref(root);
    qkv__json_end();
    qkv__free(buf);
    return st;
}
