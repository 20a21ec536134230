/* normalize.c — BertNormalizer over a span of the input, keeping for every output code point
 * the input byte span it came from (what tokenizers calls alignments).
 *
 * tokenizers applies, in order: clean_text (drop NUL, U+FFFD and control/format chars; any
 * white space becomes ' '), handle_chinese_chars (' ', c, ' ' around CJK ideographs),
 * strip_accents (NFD of the whole string, then drop Mn), lowercase (per char, full mapping).
 * Pass 1 does the per-char steps and the decomposition; pass 2 puts combining marks in
 * canonical order (the reordering half of NFD); pass 3 drops Mn and lowercases. Pass 2 and 3
 * only run if a non-ASCII char was seen: ASCII is finished in pass 1. Every char produced from
 * an input char keeps that char's span, as tokenizers' transforms do. */
#include "tokenizer/tokenizer_internal.h"
#include "tokenizer/unicode.h"

#include "core/error.h"

#include <string.h>

static inline qkv_status nb_push(tok_nbuf *nb, uint32_t cp, uint32_t s, uint32_t e) {
    if (nb->n == nb->cap)
        QKV_TRY(qkv__tok_reserve((void **)&nb->c, &nb->cap, nb->n + 1, sizeof *nb->c));
    nb->c[nb->n].cp = cp;
    nb->c[nb->n].start = s;
    nb->c[nb->n].end = e;
    nb->n++;
    return QKV_OK;
}

static qkv_status normalize_plain(const uint8_t *text, size_t a, size_t b, tok_nbuf *out) {
    QKV_TRY(qkv__tok_reserve((void **)&out->c, &out->cap, out->n + (b - a), sizeof *out->c));
    size_t i = a;
    while (i < b) {
        size_t n;
        uint32_t cp = text[i] < 0x80 ? (n = 1, text[i]) : qkv__utf8_next(text + i, b - i, &n);
        tok_nchar *c = &out->c[out->n++];
        c->cp = cp;
        c->start = (uint32_t)i;
        c->end = (uint32_t)(i + n);
        i += n;
    }
    return QKV_OK;
}

qkv_status qkv__tok_normalize(const qkv_tokenizer *t, const uint8_t *text, size_t a, size_t b,
                              tok_nbuf *out) {
    const tok_normalizer *nz = &t->norm;
    if (nz->kind == TOK_NORM_NONE) return normalize_plain(text, a, b, out);

    size_t n0 = out->n;
    int strip = nz->strip_accents, lower = nz->lowercase;
    int slow = 0; /* a non-ASCII char needs passes 2 and 3 */
    QKV_TRY(qkv__tok_reserve((void **)&out->c, &out->cap, out->n + (b - a), sizeof *out->c));
    size_t i = a;
    while (i < b) {
        uint8_t byte = text[i];
        if (byte < 0x80) { /* ASCII: all four steps at once */
            uint32_t cp = byte;
            i++;
            if (nz->clean_text) {
                if (cp == '\t' || cp == '\n' || cp == '\r')
                    cp = ' ';
                else if (cp < 0x20 || cp == 0x7F)
                    continue;
                else if (cp == ' ')
                    cp = ' ';
            }
            if (lower && cp >= 'A' && cp <= 'Z') cp += 32;
            if (out->n == out->cap)
                QKV_TRY(nb_push(out, cp, (uint32_t)(i - 1), (uint32_t)i));
            else {
                tok_nchar *c = &out->c[out->n++];
                c->cp = cp;
                c->start = (uint32_t)(i - 1);
                c->end = (uint32_t)i;
            }
            continue;
        }
        size_t n;
        uint32_t cp = qkv__utf8_next(text + i, b - i, &n);
        uint32_t s = (uint32_t)i, e = (uint32_t)(i + n);
        i += n;
        if (nz->clean_text) {
            if (cp == 0 || cp == QKV_UNI_REPLACEMENT || qkv__uni_is_other(cp)) continue;
            if (qkv__uni_is_whitespace(cp)) cp = ' ';
        }
        int cjk = nz->handle_chinese && qkv__uni_is_cjk(cp);
        if (cjk) QKV_TRY(nb_push(out, ' ', s, e));
        if (strip) {
            uint32_t d[QKV_UNI_MAX_DECOMP];
            int k = qkv__uni_decompose(cp, d);
            for (int j = 0; j < k; j++) QKV_TRY(nb_push(out, d[j], s, e));
            slow = 1;
        } else if (lower) {
            uint32_t l[3];
            int k = qkv__uni_lower(cp, l);
            for (int j = 0; j < k; j++) QKV_TRY(nb_push(out, l[j], s, e));
        } else {
            QKV_TRY(nb_push(out, cp, s, e));
        }
        if (cjk) QKV_TRY(nb_push(out, ' ', s, e));
    }
    if (!slow) return QKV_OK;

    /* pass 2: canonical ordering — a stable sort by combining class of each run of marks */
    tok_nchar *c = out->c;
    for (size_t k = n0 + 1; k < out->n; k++) {
        int cc = qkv__uni_ccc(c[k].cp);
        if (!cc) continue;
        size_t j = k;
        tok_nchar x = c[k];
        while (j > n0) {
            int pc = qkv__uni_ccc(c[j - 1].cp);
            if (pc <= cc) break; /* also stops at starters (class 0) */
            c[j] = c[j - 1];
            j--;
        }
        c[j] = x;
    }
    /* pass 3: drop Mn, then lowercase; lowercase may lengthen (U+0130 -> i U+0307), so the
     * rare expansion goes through a temporary copy of the tail */
    size_t w = n0;
    for (size_t k = n0; k < out->n; k++) {
        tok_nchar x = out->c[k];
        if (x.cp >= 0x80 && qkv__uni_is_mn(x.cp)) continue;
        if (!lower) {
            out->c[w++] = x;
            continue;
        }
        uint32_t l[3];
        int m = qkv__uni_lower(x.cp, l);
        if (m == 1 || w + (size_t)m <= k + 1) {
            for (int j = 0; j < m; j++) {
                out->c[w] = x;
                out->c[w++].cp = l[j];
            }
            continue;
        }
        /* expansion overtakes the read position: move the unread tail to the right */
        size_t tail = out->n - (k + 1), grow = (size_t)m;
        QKV_TRY(qkv__tok_reserve((void **)&out->c, &out->cap, out->n + grow, sizeof *out->c));
        memmove(out->c + k + 1 + grow, out->c + k + 1, tail * sizeof *out->c);
        out->n += grow;
        for (int j = 0; j < m; j++) {
            out->c[w] = x;
            out->c[w++].cp = l[j];
        }
        k += grow;
    }
    out->n = w;
    return QKV_OK;
}
