/* postprocess.c — from the tokens of one or two sequences to a qkv_encoding, in tokenizers'
 * order (Tokenizer::post_process): truncation (truncate_encodings, after reserving room for
 * the special tokens the template adds), the post-processor (template pieces, or ByteLevel's
 * trimming of spaces from offsets), then padding. Code point offsets are derived here from the
 * byte spans, with ByteLevel trimming done in code points as tokenizers does it. */
#include "tokenizer/tokenizer_internal.h"
#include "tokenizer/unicode.h"

#include "core/alloc.h"
#include "core/error.h"

#include <string.h>

static size_t n_added_specials(const qkv_tokenizer *t, int is_pair) {
    if (t->post.kind != TOK_POST_TEMPLATE) return 0;
    const tok_piece *p = is_pair ? t->post.pair : t->post.single;
    size_t n = is_pair ? t->post.n_pair : t->post.n_single, k = 0;
    for (size_t i = 0; i < n; i++)
        if (!p[i].is_seq) k += p[i].n_ids;
    return k;
}

static void seq_truncate(tok_seq *s, size_t keep, int left) {
    if (s->n <= keep) return;
    if (left) {
        size_t d = s->n - keep;
        memmove(s->ids, s->ids + d, keep * sizeof *s->ids);
        memmove(s->start, s->start + d, keep * sizeof *s->start);
        memmove(s->end, s->end + d, keep * sizeof *s->end);
        memmove(s->special, s->special + d, keep);
    }
    s->n = keep;
}

static qkv_status truncate(tok_seq *a, tok_seq *b, size_t max, const qkv_encode_options *o) {
    int left = o->truncate_left;
    if (max == 0) {
        seq_truncate(a, 0, left);
        if (b) seq_truncate(b, 0, left);
        return QKV_OK;
    }
    size_t total = a->n + (b ? b->n : 0);
    if (total <= max) return QKV_OK;
    size_t to_remove = total - max;
    if (o->truncation == QKV_TRUNCATE_LONGEST_FIRST) {
        if (!b) {
            seq_truncate(a, total - to_remove, left);
            return QKV_OK;
        }
        size_t n1 = a->n, n2 = b->n;
        int swap = n1 > n2;
        if (swap) {
            size_t x = n1;
            n1 = n2;
            n2 = x;
        }
        n2 = n1 > max ? n1 : (n1 > max - n1 ? n1 : max - n1);
        if (n1 + n2 > max) {
            n1 = max / 2;
            n2 = n1 + max % 2;
        }
        if (swap) {
            size_t x = n1;
            n1 = n2;
            n2 = x;
        }
        seq_truncate(a, n1, left);
        seq_truncate(b, n2, left);
        return QKV_OK;
    }
    tok_seq *target = o->truncation == QKV_TRUNCATE_ONLY_FIRST ? a : b;
    if (!target)
        return qkv__fail(QKV_ERR_INVALID_ARG, "tokenizer: truncation only_second needs a pair");
    if (target->n <= to_remove) /* tokenizers refuses this too */
        return qkv__fail(QKV_ERR_INVALID_ARG,
                         "tokenizer: truncating only the %s sequence cannot meet the maximum "
                         "length: it has %zu tokens and %zu would have to go",
                         target == a ? "first" : "second", target->n, to_remove);
    seq_truncate(target, target->n - to_remove, left);
    return QKV_OK;
}

/* Byte -> code point index of a text (invalid subsequences count as one) and back; the
 * arrays belong to the encode context. */
typedef struct cmap {
    uint32_t *b2c; /* [len + 1] */
    uint32_t *c2b; /* [chars + 1] */
} cmap;

static qkv_status cmap_build(tok_ctx *x, int which, const uint8_t *s, size_t len, cmap *m) {
    int w = which;
    QKV_TRY(qkv__tok_reserve((void **)&x->b2c[w], &x->b2c_cap[w], len + 1, sizeof *m->b2c));
    QKV_TRY(qkv__tok_reserve((void **)&x->c2b[w], &x->c2b_cap[w], len + 1, sizeof *m->c2b));
    m->b2c = x->b2c[w];
    m->c2b = x->c2b[w];
    size_t i = 0, c = 0;
    while (i < len) {
        size_t n = 1;
        if (s[i] >= 0x80) qkv__utf8_next(s + i, len - i, &n);
        for (size_t k = 0; k < n; k++) m->b2c[i + k] = (uint32_t)c;
        m->c2b[c] = (uint32_t)i;
        i += n;
        c++;
    }
    m->b2c[len] = (uint32_t)c;
    m->c2b[c] = (uint32_t)len;
    return QKV_OK;
}

/* leading / trailing chars of a token string that are 'Ġ' (U+0120) or white space */
static void token_spaces(const char *tok, size_t *lead, size_t *trail) {
    *lead = *trail = 0;
    if (!tok) return;
    const uint8_t *p = (const uint8_t *)tok;
    size_t n = strlen(tok), i = 0, run = 0;
    int leading = 1;
    while (i < n) {
        size_t l;
        uint32_t cp = qkv__utf8_next(p + i, n - i, &l);
        int sp = cp == 0x120 || qkv__uni_is_whitespace(cp);
        if (sp)
            run++;
        else {
            if (leading) *lead = run;
            leading = 0;
            run = 0;
        }
        i += l;
    }
    if (leading) *lead = run;
    *trail = run;
}

typedef struct builder {
    qkv_encoding *e;
    size_t cap;
} builder;

static void put(qkv_encoding *e, int32_t id, int32_t type, int32_t mask, int32_t special,
                int32_t seq, int64_t bs, int64_t be, int64_t cs, int64_t ce) {
    size_t i = e->n++;
    e->ids[i] = id;
    e->type_ids[i] = type;
    e->attention_mask[i] = mask;
    e->special_tokens_mask[i] = special;
    e->sequence_ids[i] = seq;
    e->offsets[2 * i] = bs;
    e->offsets[2 * i + 1] = be;
    e->char_offsets[2 * i] = cs;
    e->char_offsets[2 * i + 1] = ce;
}

static void put_seq(const qkv_tokenizer *t, qkv_encoding *e, const tok_seq *s, int seq,
                    int32_t type, const cmap *m) {
    for (size_t i = 0; i < s->n; i++) {
        int64_t bs = s->start[i], be = s->end[i];
        int64_t cs = m->b2c[bs], ce = m->b2c[be];
        if (t->post.trim_offsets) { /* tokenizers' process_offsets, in code points */
            size_t lead, trail;
            token_spaces(qkv_tokenizer_id_to_token(t, s->ids[i]), &lead, &trail);
            if (lead > 0 || trail > 0) {
                if (lead > 0) {
                    int is_first = i == 0 || cs == 0;
                    if (is_first && t->post.trim_add_prefix_space && lead == 1) lead = 0;
                    cs = cs + (int64_t)lead < ce ? cs + (int64_t)lead : ce;
                }
                if (trail > 0 && ce >= (int64_t)trail) {
                    int64_t x = ce - (int64_t)trail;
                    ce = x > cs ? x : cs;
                }
                bs = m->c2b[cs];
                be = m->c2b[ce];
            }
        }
        put(e, s->ids[i], type, 1, 0, seq, bs, be, cs, ce);
    }
}

qkv_status qkv__tok_postprocess(const qkv_tokenizer *t, tok_ctx *x, tok_seq *a, tok_seq *b,
                                const qkv_encode_options *o, const uint8_t *text, size_t len,
                                const uint8_t *pair, size_t pair_len, qkv_encoding **out) {
    int add = o->add_special_tokens != 0;
    size_t n_spec = add ? n_added_specials(t, b != NULL) : 0;
    if (o->max_length < 0 || o->pad_to < 0 || o->pad_to_multiple_of < 0)
        return qkv__fail(QKV_ERR_INVALID_ARG, "tokenizer: negative max_length or padding");
    if ((int)o->truncation < 0 || o->truncation > QKV_TRUNCATE_ONLY_SECOND)
        return qkv__fail(QKV_ERR_INVALID_ARG, "tokenizer: unknown truncation strategy %d",
                         (int)o->truncation);
    if (o->max_length > 0) {
        if ((size_t)o->max_length < n_spec)
            return qkv__fail(QKV_ERR_INVALID_ARG,
                             "tokenizer: max_length %lld is smaller than "
                             "the %zu special tokens",
                             (long long)o->max_length, n_spec);
        QKV_TRY(truncate(a, b, (size_t)o->max_length - n_spec, o));
    }
    size_t n = a->n + (b ? b->n : 0) + n_spec;
    size_t target = n;
    if (o->pad_to > 0 || o->pad_to_multiple_of > 0) {
        size_t p = o->pad_to > 0 ? (size_t)o->pad_to : n;
        size_t mul = (size_t)o->pad_to_multiple_of;
        if (mul > 0 && p % mul) p += mul - p % mul;
        if (p > target) target = p;
    }
    if (target > (SIZE_MAX / 64))
        return qkv__fail(QKV_ERR_OVERFLOW, "tokenizer: %zu tokens", target);

    size_t cap = target ? target : 1;
    size_t bytes = sizeof(qkv_encoding) + 64 + cap * (5 * sizeof(int32_t) + 4 * sizeof(int64_t));
    qkv_encoding *e = qkv__alloc(bytes);
    if (!e) return qkv__fail(QKV_ERR_NOMEM, "tokenizer: encoding of %zu tokens", target);
    memset(e, 0, sizeof *e);
    int64_t *p64 = (int64_t *)(((uintptr_t)(e + 1) + 63) & ~(uintptr_t)63);
    e->offsets = p64;
    e->char_offsets = p64 + 2 * cap;
    int32_t *p32 = (int32_t *)(p64 + 4 * cap);
    e->ids = p32;
    e->type_ids = p32 + cap;
    e->attention_mask = p32 + 2 * cap;
    e->special_tokens_mask = p32 + 3 * cap;
    e->sequence_ids = p32 + 4 * cap;

    cmap ma = {0}, mb = {0};
    qkv_status st = cmap_build(x, 0, text, len, &ma);
    if (st == QKV_OK && b) st = cmap_build(x, 1, pair, pair_len, &mb);
    if (st != QKV_OK) {
        qkv__free(e);
        return st;
    }
    size_t pad = target - n;
    if (o->pad_left)
        for (size_t i = 0; i < pad; i++) put(e, o->pad_id, o->pad_type_id, 0, 1, -1, 0, 0, 0, 0);
    if (t->post.kind == TOK_POST_TEMPLATE) {
        const tok_piece *pc = b ? t->post.pair : t->post.single;
        size_t np = b ? t->post.n_pair : t->post.n_single;
        for (size_t i = 0; i < np; i++) {
            if (pc[i].is_seq) {
                const tok_seq *s = pc[i].seq == 0 ? a : b;
                if (s) put_seq(t, e, s, pc[i].seq, pc[i].type_id, pc[i].seq == 0 ? &ma : &mb);
            } else if (add) {
                for (size_t k = 0; k < pc[i].n_ids; k++)
                    put(e, pc[i].ids[k], pc[i].type_id, 1, 1, -1, 0, 0, 0, 0);
            }
        }
    } else {
        put_seq(t, e, a, 0, 0, &ma);
        if (b) put_seq(t, e, b, 1, 1, &mb);
    }
    if (!o->pad_left)
        for (size_t i = 0; i < pad; i++) put(e, o->pad_id, o->pad_type_id, 0, 1, -1, 0, 0, 0, 0);
    *out = e;
    return QKV_OK;
}

void qkv_encoding_free(qkv_encoding *e) { qkv__free(e); }
