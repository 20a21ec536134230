/* charsmap.c — SentencePiece's precompiled_charsmap: the normalization rules (nmt_nfkc and
 * others) compiled into a Darts-clone double-array trie from UTF-8 byte strings to offsets of
 * NUL-terminated replacements. Two users, two algorithms, as their authors wrote them:
 *
 *  - tokenizers' Precompiled normalizer (spm_precompiled): per extended grapheme cluster, the
 *    whole cluster (if under 6 bytes) by its *shortest* prefix match, else char by char;
 *  - SentencePiece's own Normalizer (for .model / .spm files): the *longest* prefix match at
 *    each position, then white space folding (leading, trailing and repeated spaces removed),
 *    the dummy "▁" prefix and ' ' -> "▁".
 *
 * The blob comes from a file, so every trie position is bounds-checked at use (an
 * out-of-range position ends the search like a label mismatch) and every value must point at
 * the start of a char inside the strings (else QKV_ERR_FORMAT). */
#include "tokenizer/tokenizer_internal.h"
#include "tokenizer/unicode.h"

#include "core/alloc.h"
#include "core/error.h"
#include "io/json.h"

#include <string.h>
#include <utf8proc.h>

qkv_status qkv__nb_push(tok_nbuf *nb, uint32_t cp, uint32_t s, uint32_t e) {
    if (nb->n == nb->cap)
        QKV_TRY(qkv__tok_reserve((void **)&nb->c, &nb->cap, nb->n + 1, sizeof *nb->c));
    nb->c[nb->n].cp = cp;
    nb->c[nb->n].start = s;
    nb->c[nb->n].end = e;
    nb->n++;
    return QKV_OK;
}

qkv_status qkv__charsmap_parse(const uint8_t *blob, size_t n, const char *what, tok_charsmap *out) {
    memset(out, 0, sizeof *out);
    if (n < 4) return qkv__fail(QKV_ERR_FORMAT, "%s: precompiled_charsmap of %zu bytes", what, n);
    uint32_t trie = (uint32_t)blob[0] | (uint32_t)blob[1] << 8 | (uint32_t)blob[2] << 16 |
                    (uint32_t)blob[3] << 24;
    if (trie < 4 || trie % 4 != 0 || trie > n - 4)
        return qkv__fail(QKV_ERR_FORMAT,
                         "%s: precompiled_charsmap: trie of %u bytes in a blob of %zu bytes", what,
                         trie, n);
    size_t nu = trie / 4, ns = n - 4 - trie;
    if (!qkv__utf8_valid(blob + 4 + trie, ns, NULL))
        return qkv__fail(QKV_ERR_FORMAT, "%s: precompiled_charsmap: strings are not UTF-8", what);
    out->units = qkv__alloc(nu * sizeof *out->units);
    out->norm = qkv__alloc(ns + 1);
    if (!out->units || !out->norm) {
        qkv__charsmap_free(out);
        return qkv__fail(QKV_ERR_NOMEM, "%s: precompiled_charsmap", what);
    }
    for (size_t i = 0; i < nu; i++) {
        const uint8_t *u = blob + 4 + 4 * i;
        out->units[i] =
            (uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 | (uint32_t)u[3] << 24;
    }
    memcpy(out->norm, blob + 4 + trie, ns);
    out->norm[ns] = 0;
    out->n_units = nu;
    out->norm_len = ns;
    return QKV_OK;
}

void qkv__charsmap_free(tok_charsmap *m) {
    qkv__free(m->units);
    qkv__free(m->norm);
    memset(m, 0, sizeof *m);
}

/* Darts-clone unit fields */
static inline int u_leaf(uint32_t u) { return (u >> 8) & 1; }
static inline uint32_t u_value(uint32_t u) { return u & 0x7FFFFFFFu; }
static inline uint32_t u_label(uint32_t u) { return u & (0x80000000u | 0xFFu); }
static inline size_t u_offset(uint32_t u) { return (size_t)(u >> 10) << ((u & (1u << 9)) >> 6); }

int qkv__charsmap_match(const tok_charsmap *m, const uint8_t *s, size_t n, int longest, size_t *len,
                        const char **rep, size_t *rep_len) {
    if (m->n_units == 0) return 0;
    size_t pos = u_offset(m->units[0]), best_len = 0;
    uint32_t best_val = 0;
    int found = 0;
    for (size_t i = 0; i < n; i++) {
        if (!longest && s[i] == 0) break;
        pos ^= s[i];
        if (pos >= m->n_units) break;
        uint32_t u = m->units[pos];
        if (u_label(u) != s[i]) break;
        pos ^= u_offset(u);
        if (u_leaf(u)) {
            if (pos >= m->n_units) break;
            best_val = u_value(m->units[pos]);
            best_len = i + 1;
            found = 1;
            if (!longest) break;
        }
    }
    if (!found) return 0;
    if (best_val >= m->norm_len || (((uint8_t)m->norm[best_val]) & 0xC0) == 0x80)
        return -(int)qkv__fail(QKV_ERR_FORMAT,
                               "precompiled_charsmap: a rule points at byte %u of %zu bytes of "
                               "replacement strings",
                               best_val, m->norm_len);
    *len = best_len;
    *rep = m->norm + best_val;
    *rep_len = strlen(*rep);
    return 1;
}

/* appends the chars of UTF-8 r[0..n) (valid) with span [s, e) */
static qkv_status push_utf8(tok_nbuf *out, const char *r, size_t n, uint32_t s, uint32_t e) {
    size_t i = 0, k;
    while (i < n) {
        uint32_t cp = qkv__utf8_next((const uint8_t *)r + i, n - i, &k);
        QKV_TRY(qkv__nb_push(out, cp, s, e));
        i += k;
    }
    return QKV_OK;
}

qkv_status qkv__charsmap_normalize(const tok_charsmap *m, const tok_nbuf *in, tok_nbuf *out) {
    size_t i = 0;
    while (i < in->n) {
        /* the grapheme in[i..j) */
        size_t j = i + 1;
        utf8proc_int32_t state = 0;
        while (j < in->n &&
               !utf8proc_grapheme_break_stateful((utf8proc_int32_t)in->c[j - 1].cp,
                                                 (utf8proc_int32_t)in->c[j].cp, &state))
            j++;
        uint8_t buf[64];
        size_t bl = 0, ml, rl;
        const char *rep;
        int whole = 1;
        for (size_t k = i; k < j && whole; k++) {
            if (bl + 4 > sizeof buf)
                whole = 0;
            else
                bl += (size_t)qkv__utf8_put(in->c[k].cp, buf + bl);
        }
        if (whole && bl < 6) {
            size_t k0 = 0;
            int r = qkv__charsmap_match(m, buf, bl, 0, &ml, &rep, &rl);
            if (r < 0) return (qkv_status)-r;
            if (r > 0) { /* char q of the replacement: the span of grapheme char min(q, k-1) */
                size_t q = 0, k;
                while (k0 < rl) {
                    size_t at = i + (q < j - i ? q : j - i - 1);
                    uint32_t cp = qkv__utf8_next((const uint8_t *)rep + k0, rl - k0, &k);
                    QKV_TRY(qkv__nb_push(out, cp, in->c[at].start, in->c[at].end));
                    k0 += k;
                    q++;
                }
                i = j;
                continue;
            }
        }
        for (size_t k = i; k < j; k++) {
            uint8_t cb[4];
            int cl = qkv__utf8_put(in->c[k].cp, cb);
            int r = qkv__charsmap_match(m, cb, (size_t)cl, 0, &ml, &rep, &rl);
            if (r < 0) return (qkv_status)-r;
            if (r > 0)
                QKV_TRY(push_utf8(out, rep, rl, in->c[k].start, in->c[k].end));
            else
                QKV_TRY(qkv__nb_push(out, in->c[k].cp, in->c[k].start, in->c[k].end));
        }
        i = j;
    }
    return QKV_OK;
}

/* SentencePiece's NormalizePrefix: the normalized text of the longest rule (or user-defined
 * piece) at the start of s[0..n), and how many input bytes it consumed. */
static qkv_status spm_prefix(const tok_spm_norm *z, const uint8_t *s, size_t n, const char **rep,
                             size_t *rep_len, size_t *consumed) {
    size_t best = 0;
    for (size_t u = 0; u < z->n_user; u++) {
        size_t l = strlen(z->user[u]);
        if (l > best && l <= n && memcmp(s, z->user[u], l) == 0) best = l;
    }
    if (best) {
        *rep = (const char *)s;
        *rep_len = *consumed = best;
        return QKV_OK;
    }
    int r = qkv__charsmap_match(&z->charsmap, s, n, 1, consumed, rep, rep_len);
    if (r < 0) return (qkv_status)-r;
    if (r > 0) return QKV_OK;
    size_t k;
    uint32_t cp = qkv__utf8_next(s, n, &k);
    if (cp == QKV_UNI_REPLACEMENT && !(k == 3 && memcmp(s, "\xEF\xBF\xBD", 3) == 0)) {
        *rep = "\xEF\xBF\xBD"; /* one byte of malformed UTF-8 becomes U+FFFD */
        *rep_len = 3;
        *consumed = 1;
        return QKV_OK;
    }
    *rep = (const char *)s;
    *rep_len = *consumed = k;
    return QKV_OK;
}

#define SPM_SPACE 0x2581u

qkv_status qkv__spm_normalize(const tok_spm_norm *z, const uint8_t *text, size_t a, size_t b,
                              tok_nbuf *out) {
    const char *rep;
    size_t rl, used, pos = a;
    size_t n0 = out->n;
    if (z->remove_extra_whitespaces) {
        while (pos < b) {
            QKV_TRY(spm_prefix(z, text + pos, b - pos, &rep, &rl, &used));
            if (!(rl == 1 && rep[0] == ' ')) break;
            pos += used;
        }
    }
    if (pos >= b) return QKV_OK;
    uint32_t space = z->escape_whitespaces ? SPM_SPACE : ' ';
    if (z->add_dummy_prefix) QKV_TRY(qkv__nb_push(out, space, (uint32_t)pos, (uint32_t)pos));
    int prev_space = z->remove_extra_whitespaces;
    while (pos < b) {
        QKV_TRY(spm_prefix(z, text + pos, b - pos, &rep, &rl, &used));
        while (prev_space && rl > 0 && rep[0] == ' ') rep++, rl--;
        if (rl > 0) {
            size_t i = 0, k;
            while (i < rl) {
                uint32_t cp = qkv__utf8_next((const uint8_t *)rep + i, rl - i, &k);
                QKV_TRY(qkv__nb_push(out, cp == ' ' ? space : cp, (uint32_t)pos,
                                     (uint32_t)(pos + used)));
                i += k;
            }
            prev_space = rep[rl - 1] == ' ';
        }
        pos += used;
        if (!z->remove_extra_whitespaces) prev_space = 0;
    }
    if (z->remove_extra_whitespaces)
        while (out->n > n0 && out->c[out->n - 1].cp == space) out->n--;
    return QKV_OK;
}
