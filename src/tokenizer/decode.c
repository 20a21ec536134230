/* decode.c — ids back to text, as tokenizers' Tokenizer::decode: ids to tokens (unknown ids
 * dropped, special added tokens skipped on request), then the decoder. WordPiece and
 * ByteLevel are single decoders; the others (Replace, ByteFallback, Fuse, Strip, Metaspace,
 * and a Sequence of them) map the list of token strings as decode_chain does, and the result
 * is their concatenation. Marian directories decode as MarianTokenizer.convert_tokens_to_string
 * (SentencePiece's DecodePieces between special tokens). Without a decoder, tokens are joined
 * by spaces. */
#include "tokenizer/tokenizer_internal.h"
#include "tokenizer/unicode.h"

#include "core/alloc.h"
#include "core/error.h"
#include "io/json.h"

#include <string.h>

/* ---------------------------------------------------------------- decode */

typedef struct sbuf {
    char *p;
    size_t n, cap;
} sbuf;

static qkv_status sb_add(sbuf *b, const void *s, size_t n) {
    QKV_TRY(qkv__tok_reserve((void **)&b->p, &b->cap, b->n + n + 1, 1));
    memcpy(b->p + b->n, s, n);
    b->n += n;
    return QKV_OK;
}

static int is_special_id(const qkv_tokenizer *t, int32_t id) {
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].id == id) return t->added[i].special;
    return 0;
}

/* tokenizers' WordPiece cleanup(), applied to one token */
static qkv_status wp_cleanup_add(sbuf *b, const char *s, size_t n) {
    static const char *const from[] = {" .",  " ?",      " !",  " ,",   " ' ", " n't",
                                       " 'm", " do not", " 's", " 've", " 're"};
    static const char *const to[] = {".",  "?",      "!",  ",",   "'",  "n't",
                                     "'m", " don't", "'s", "'ve", "'re"};
    /* sequential replace-all passes, as the Rust code chains str::replace */
    sbuf cur = {0}, nxt = {0};
    qkv_status st = sb_add(&cur, s, n);
    for (size_t r = 0; st == QKV_OK && r < sizeof from / sizeof from[0]; r++) {
        size_t fl = strlen(from[r]), tl = strlen(to[r]);
        nxt.n = 0;
        size_t i = 0;
        while (st == QKV_OK && i < cur.n) {
            if (cur.n - i >= fl && memcmp(cur.p + i, from[r], fl) == 0) {
                st = sb_add(&nxt, to[r], tl);
                i += fl;
            } else {
                st = sb_add(&nxt, cur.p + i, 1);
                i++;
            }
        }
        sbuf tmp = cur;
        cur = nxt;
        nxt = tmp;
    }
    if (st == QKV_OK) st = sb_add(b, cur.p ? cur.p : "", cur.n);
    qkv__free(cur.p);
    qkv__free(nxt.p);
    return st;
}

/* ---- a list of token strings, mapped by decoder steps */
typedef struct slist {
    sbuf *s;
    size_t n, cap;
} slist;

static void sl_free(slist *l) {
    for (size_t i = 0; i < l->cap; i++) qkv__free(l->s[i].p);
    qkv__free(l->s);
    memset(l, 0, sizeof *l);
}

/* a new empty string at the end */
static qkv_status sl_push(slist *l, const void *p, size_t n) {
    if (l->n == l->cap) {
        size_t old = l->cap;
        QKV_TRY(qkv__tok_reserve((void **)&l->s, &l->cap, l->n + 1, sizeof *l->s));
        memset(l->s + old, 0, (l->cap - old) * sizeof *l->s);
    }
    l->s[l->n].n = 0;
    QKV_TRY(sb_add(&l->s[l->n], p, n));
    l->n++;
    return QKV_OK;
}

static int hexval(char c) {
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* "<0xHH>" -> its byte (Rust's u8::from_str_radix of HH, which also takes "+H") */
static int byte_token(const sbuf *t) {
    if (t->n != 6 || memcmp(t->p, "<0x", 3) != 0 || t->p[5] != '>') return -1;
    int a = hexval(t->p[3]), b = hexval(t->p[4]);
    if (t->p[3] == '+' && b >= 0) return b;
    return a >= 0 && b >= 0 ? a * 16 + b : -1;
}

/* ByteFallback's flush: the bytes as one string if UTF-8, else one U+FFFD per byte */
static qkv_status flush_bytes(slist *o, sbuf *bytes) {
    if (!bytes->n) return QKV_OK;
    if (qkv__utf8_valid((const uint8_t *)bytes->p, bytes->n, NULL)) {
        QKV_TRY(sl_push(o, bytes->p, bytes->n));
    } else {
        for (size_t i = 0; i < bytes->n; i++) QKV_TRY(sl_push(o, "\xEF\xBF\xBD", 3));
    }
    bytes->n = 0;
    return QKV_OK;
}

static qkv_status dstep(const tok_dstep *d, slist *in, slist *o) {
    o->n = 0;
    qkv_status st = QKV_OK;
    if (d->kind == TOK_DS_FUSE) {
        QKV_TRY(sl_push(o, "", 0));
        for (size_t i = 0; i < in->n && st == QKV_OK; i++)
            st = sb_add(&o->s[0], in->s[i].p, in->s[i].n);
        return st;
    }
    if (d->kind == TOK_DS_BYTEFALLBACK) {
        sbuf bytes = {0};
        for (size_t i = 0; i < in->n && st == QKV_OK; i++) {
            int b = byte_token(&in->s[i]);
            if (b >= 0) {
                uint8_t by = (uint8_t)b;
                st = sb_add(&bytes, &by, 1);
                continue;
            }
            st = flush_bytes(o, &bytes);
            if (st == QKV_OK) st = sl_push(o, in->s[i].p, in->s[i].n);
        }
        if (st == QKV_OK) st = flush_bytes(o, &bytes);
        qkv__free(bytes.p);
        return st;
    }
    for (size_t i = 0; i < in->n; i++) {
        const char *p = in->s[i].p;
        size_t n = in->s[i].n;
        QKV_TRY(sl_push(o, "", 0));
        sbuf *w = &o->s[o->n - 1];
        if (d->kind == TOK_DS_REPLACE) {
            size_t fl = strlen(d->from), tl = strlen(d->to), j = 0;
            while (j < n) {
                if (n - j >= fl && memcmp(p + j, d->from, fl) == 0) {
                    QKV_TRY(sb_add(w, d->to, tl));
                    j += fl;
                } else {
                    QKV_TRY(sb_add(w, p + j, 1));
                    j++;
                }
            }
            continue;
        }
        /* Strip and Metaspace work on chars: the token's chars with their byte positions */
        size_t nc = 0, k, j = 0;
        while (j < n) qkv__utf8_next((const uint8_t *)p + j, n - j, &k), j += k, nc++;
        if (d->kind == TOK_DS_STRIP) {
            size_t a = 0, b = n, ci = 0;
            for (j = 0; j < n && ci < d->start; ci++) { /* leading */
                uint32_t cp = qkv__utf8_next((const uint8_t *)p + j, n - j, &k);
                if (cp != d->ch) break;
                j += k;
                a = j;
            }
            for (ci = 0; ci < d->stop && ci < nc && b > a; ci++) { /* trailing */
                size_t q = b - 1;
                while (q > 0 && ((uint8_t)p[q] & 0xC0) == 0x80) q--;
                if (qkv__utf8_next((const uint8_t *)p + q, b - q, &k) != d->ch) break;
                b = q;
            }
            QKV_TRY(sb_add(w, p + a, b > a ? b - a : 0));
            continue;
        }
        /* Metaspace: the replacement char becomes ' ', dropped in the first token unless
         * prepend_scheme is never */
        for (j = 0; j < n; j += k) {
            uint32_t cp = qkv__utf8_next((const uint8_t *)p + j, n - j, &k);
            if (cp != d->ch)
                QKV_TRY(sb_add(w, p + j, k));
            else if (!(i == 0 && d->prepend != TOK_PREPEND_NEVER))
                QKV_TRY(sb_add(w, " ", 1));
        }
    }
    return QKV_OK;
}

/* the pending byte pieces: their text if UTF-8, else U+FFFD per byte (as SentencePiece) */
static qkv_status add_bytes(sbuf *out, sbuf *bytes) {
    qkv_status st = QKV_OK;
    if (qkv__utf8_valid((const uint8_t *)bytes->p, bytes->n, NULL))
        st = sb_add(out, bytes->p ? bytes->p : "", bytes->n);
    else
        for (size_t q = 0; q < bytes->n && st == QKV_OK; q++) st = sb_add(out, "\xEF\xBF\xBD", 3);
    bytes->n = 0;
    return st;
}

/* SentencePiece's DecodePieces of Marian pieces: control pieces vanish, <0xNN> pieces become
 * bytes (U+FFFD per byte of a malformed run), "▁" becomes ' ' and the very first one is
 * dropped (add_dummy_prefix) */
static qkv_status spm_decode_pieces(const qkv_tokenizer *t, char **tok, size_t n, sbuf *out) {
    size_t base = out->n;
    sbuf bytes = {0};
    qkv_status st = QKV_OK;
    for (size_t i = 0; i < n && st == QKV_OK; i++) {
        size_t tl = strlen(tok[i]);
        sbuf one = {tok[i], tl, tl};
        int b = t->uni.types ? byte_token(&one) : -1;
        int32_t id;
        int known = qkv__strmap_get(&t->uni.pieces, tok[i], tl, &id);
        if (b >= 0 && known && t->uni.types[id] == TOK_PIECE_BYTE) {
            uint8_t by = (uint8_t)b;
            st = sb_add(&bytes, &by, 1);
            continue;
        }
        st = add_bytes(out, &bytes);
        if (st != QKV_OK) break;
        if (known && t->uni.types && t->uni.types[id] == TOK_PIECE_CONTROL) continue;
        if (known && t->uni.types && t->uni.types[id] == TOK_PIECE_UNKNOWN) {
            st = sb_add(out, " \xE2\x81\x87 ", 5);
            continue;
        }
        const char *p = tok[i];
        if (out->n == base && t->norm.spm.add_dummy_prefix && strncmp(p, "\xE2\x96\x81", 3) == 0)
            p += 3;
        for (size_t j = 0; p[j] && st == QKV_OK;) {
            if (strncmp(p + j, "\xE2\x96\x81", 3) == 0) {
                st = sb_add(out, " ", 1);
                j += 3;
            } else {
                st = sb_add(out, p + j, 1);
                j++;
            }
        }
    }
    if (st == QKV_OK) st = add_bytes(out, &bytes);
    qkv__free(bytes.p);
    return st;
}

static int py_space(uint32_t cp) {
    return qkv__uni_is_whitespace(cp) || (cp >= 0x1C && cp <= 0x1F);
}

/* MarianTokenizer.convert_tokens_to_string: pieces between special tokens through
 * DecodePieces, each special token followed by a space; then "▁" -> ' ' and Python's strip() */
static qkv_status marian_decode(const qkv_tokenizer *t, const int32_t *ids, size_t n, int skip,
                                sbuf *b) {
    char **cur = qkv__alloc((n ? n : 1) * sizeof *cur);
    if (!cur) return qkv__fail(QKV_ERR_NOMEM, "tokenizer: decode");
    size_t nc = 0;
    qkv_status st = QKV_OK;
    for (size_t i = 0; i < n && st == QKV_OK; i++) {
        const char *tok = qkv_tokenizer_id_to_token(t, ids[i]);
        if (!tok) continue;
        int sp = is_special_id(t, ids[i]);
        if (sp && skip) continue;
        if (!sp) {
            cur[nc++] = (char *)tok;
            continue;
        }
        st = spm_decode_pieces(t, cur, nc, b);
        nc = 0;
        if (st == QKV_OK) st = sb_add(b, tok, strlen(tok));
        if (st == QKV_OK) st = sb_add(b, " ", 1);
    }
    if (st == QKV_OK) st = spm_decode_pieces(t, cur, nc, b);
    qkv__free(cur);
    if (st != QKV_OK) return st;
    /* "▁" -> ' ' (in place: shorter), then strip */
    size_t w = 0;
    for (size_t r = 0; r < b->n;) {
        if (b->n - r >= 3 && memcmp(b->p + r, "\xE2\x96\x81", 3) == 0) {
            b->p[w++] = ' ';
            r += 3;
        } else {
            b->p[w++] = b->p[r++];
        }
    }
    b->n = w;
    size_t a = 0, k;
    while (a < b->n) {
        uint32_t cp = qkv__utf8_next((const uint8_t *)b->p + a, b->n - a, &k);
        if (!py_space(cp)) break;
        a += k;
    }
    size_t e = b->n;
    while (e > a) {
        size_t q = e - 1;
        while (q > a && ((uint8_t)b->p[q] & 0xC0) == 0x80) q--;
        if (!py_space(qkv__utf8_next((const uint8_t *)b->p + q, e - q, &k))) break;
        e = q;
    }
    memmove(b->p, b->p + a, e - a);
    b->n = e - a;
    return QKV_OK;
}

/* a bare SentencePiece model: SentencePieceProcessor.decode of all the ids; a T5 spiece.model
 * directory has special added tokens, skipped on request as transformers does */
static qkv_status spm_decode(const qkv_tokenizer *t, const int32_t *ids, size_t n, int skip,
                             sbuf *b) {
    char **tok = qkv__alloc((n ? n : 1) * sizeof *tok);
    if (!tok) return qkv__fail(QKV_ERR_NOMEM, "tokenizer: decode");
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const char *s = qkv_tokenizer_id_to_token(t, ids[i]);
        if (s && !(skip && is_special_id(t, ids[i]))) tok[k++] = (char *)s;
    }
    qkv_status st = spm_decode_pieces(t, tok, k, b);
    qkv__free(tok);
    return st;
}

static qkv_status steps_decode(const qkv_tokenizer *t, const int32_t *ids, size_t n, int skip,
                               sbuf *b) {
    slist l[2] = {{0}, {0}};
    int cur = 0;
    qkv_status st = QKV_OK;
    for (size_t i = 0; i < n && st == QKV_OK; i++) {
        const char *tok = qkv_tokenizer_id_to_token(t, ids[i]);
        if (!tok || (skip && is_special_id(t, ids[i]))) continue;
        st = sl_push(&l[0], tok, strlen(tok));
    }
    for (size_t k = 0; k < t->dec.n_steps && st == QKV_OK; k++) {
        st = dstep(&t->dec.steps[k], &l[cur], &l[1 - cur]);
        cur = 1 - cur;
    }
    for (size_t i = 0; i < l[cur].n && st == QKV_OK; i++)
        st = sb_add(b, l[cur].s[i].p ? l[cur].s[i].p : "", l[cur].s[i].n);
    sl_free(&l[0]);
    sl_free(&l[1]);
    return st;
}

qkv_status qkv_tokenizer_decode(const qkv_tokenizer *t, const int32_t *ids, size_t n,
                                int skip_special_tokens, char **out, size_t *out_len) {
    if (!out) return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_tokenizer_decode: out is NULL");
    *out = NULL;
    if (!t || (!ids && n)) return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_tokenizer_decode: NULL");
    sbuf b = {0};
    qkv_status st = sb_add(&b, "", 0);
    if (st == QKV_OK && t->dec.kind == TOK_DEC_STEPS)
        st = steps_decode(t, ids, n, skip_special_tokens, &b);
    else if (st == QKV_OK && t->dec.kind == TOK_DEC_MARIAN)
        st = marian_decode(t, ids, n, skip_special_tokens, &b);
    else if (st == QKV_OK && t->dec.kind == TOK_DEC_SPM)
        st = spm_decode(t, ids, n, skip_special_tokens, &b);
    size_t k = 0; /* tokens kept so far */
    int single =
        t->dec.kind != TOK_DEC_STEPS && t->dec.kind != TOK_DEC_MARIAN && t->dec.kind != TOK_DEC_SPM;
    for (size_t i = 0; single && st == QKV_OK && i < n; i++) {
        const char *tok = qkv_tokenizer_id_to_token(t, ids[i]);
        if (!tok) continue; /* tokenizers drops unknown ids */
        if (skip_special_tokens && is_special_id(t, ids[i])) continue;
        size_t tl = strlen(tok);
        switch (t->dec.kind) {
        case TOK_DEC_WORDPIECE: {
            const char *pf = t->dec.prefix;
            size_t pl = strlen(pf);
            sbuf one = {0};
            if (k > 0 && tl >= pl && memcmp(tok, pf, pl) == 0)
                st = sb_add(&one, tok + pl, tl - pl);
            else if (k > 0) {
                st = sb_add(&one, " ", 1);
                if (st == QKV_OK) st = sb_add(&one, tok, tl);
            } else
                st = sb_add(&one, tok, tl);
            if (st == QKV_OK) {
                if (t->dec.cleanup)
                    st = wp_cleanup_add(&b, one.p, one.n);
                else
                    st = sb_add(&b, one.p, one.n);
            }
            qkv__free(one.p);
            break;
        }
        case TOK_DEC_BYTELEVEL: {
            /* every char back to its byte; a token with a char outside the table is copied */
            size_t start = b.n, j = 0;
            int ok = 1;
            while (st == QKV_OK && j < tl) {
                size_t l;
                uint32_t cp = qkv__utf8_next((const uint8_t *)tok + j, tl - j, &l);
                int byte = qkv__bytelevel_byte(cp);
                if (byte < 0) {
                    ok = 0;
                    break;
                }
                uint8_t by = (uint8_t)byte;
                st = sb_add(&b, &by, 1);
                j += l;
            }
            if (st == QKV_OK && !ok) {
                b.n = start;
                st = sb_add(&b, tok, tl);
            }
            break;
        }
        default:
            if (k > 0) st = sb_add(&b, " ", 1);
            if (st == QKV_OK) st = sb_add(&b, tok, tl);
        }
        k++;
    }
    if (st != QKV_OK) {
        qkv__free(b.p);
        return st;
    }
    b.p[b.n] = 0;
    *out = b.p;
    if (out_len) *out_len = b.n;
    return QKV_OK;
}
