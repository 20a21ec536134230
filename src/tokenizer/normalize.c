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

#include "core/alloc.h"
#include "core/error.h"

#include <utf8proc.h>

#include <string.h>

#define nb_push qkv__nb_push

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

static qkv_status run_steps(const tok_normalizer *nz, tok_nbuf *out, size_t n0, tok_nbuf *tmp);

qkv_status qkv__tok_normalize(const qkv_tokenizer *t, const uint8_t *text, size_t a, size_t b,
                              tok_nbuf *out, tok_nbuf *tmp) {
    const tok_normalizer *nz = &t->norm;
    if (nz->kind == TOK_NORM_NONE) return normalize_plain(text, a, b, out);
    if (nz->kind == TOK_NORM_SPM) return qkv__spm_normalize(&nz->spm, text, a, b, out);
    if (nz->kind == TOK_NORM_STEPS) {
        size_t n0 = out->n;
        QKV_TRY(normalize_plain(text, a, b, out));
        return run_steps(nz, out, n0, tmp);
    }

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

/* ---------------------------------------------------------------- tokenizer.json steps */

void qkv__tok_normalizer_free(tok_normalizer *n) {
    for (size_t i = 0; i < n->n_steps; i++) {
        qkv__free(n->steps[i].pat);
        qkv__free(n->steps[i].with);
        qkv__charsmap_free(&n->steps[i].charsmap);
    }
    qkv__free(n->steps);
    qkv__charsmap_free(&n->spm.charsmap);
    for (size_t i = 0; i < n->spm.n_user; i++) qkv__free(n->spm.user[i]);
    qkv__free(n->spm.user);
    memset(n, 0, sizeof *n);
}

/* Unicode normalization form of c[0..n) (utf8proc flags) into out. Output char j gets the span
 * of input char min(j, n - 1), as tokenizers' alignments go: chars replace chars in order,
 * extra ones take the last one's, dropped ones vanish. */
static qkv_status uni_form(const tok_nchar *c, size_t n, int flags, tok_nbuf *out) {
    size_t bytes = 4 * n + 1;
    uint8_t *u8 = qkv__alloc(bytes);
    if (!u8) return qkv__fail(QKV_ERR_NOMEM, "tokenizer: normalizer");
    size_t l = 0;
    for (size_t i = 0; i < n; i++) l += (size_t)qkv__utf8_put(c[i].cp, u8 + l);
    utf8proc_int32_t *buf = NULL;
    utf8proc_ssize_t m = utf8proc_decompose_custom(u8, (utf8proc_ssize_t)l, NULL, 0,
                                                   (utf8proc_option_t)flags, NULL, NULL);
    qkv_status st = QKV_OK;
    if (m < 0 || (size_t)m > SIZE_MAX / 4 / 2) {
        st = qkv__fail(QKV_ERR_INTERNAL, "tokenizer: utf8proc: %s", utf8proc_errmsg(m));
        goto done;
    }
    buf = qkv__alloc(((size_t)m + 1) * sizeof *buf);
    if (!buf) {
        st = qkv__fail(QKV_ERR_NOMEM, "tokenizer: normalizer");
        goto done;
    }
    m = utf8proc_decompose_custom(u8, (utf8proc_ssize_t)l, buf, m, (utf8proc_option_t)flags, NULL,
                                  NULL);
    if (m >= 0 && (flags & UTF8PROC_COMPOSE))
        m = utf8proc_normalize_utf32(buf, m, (utf8proc_option_t)flags);
    if (m < 0) {
        st = qkv__fail(QKV_ERR_INTERNAL, "tokenizer: utf8proc: %s", utf8proc_errmsg(m));
        goto done;
    }
    for (utf8proc_ssize_t k = 0; k < m && st == QKV_OK; k++) {
        const tok_nchar *o = &c[(size_t)k < n ? (size_t)k : n - 1];
        st = nb_push(out, (uint32_t)buf[k], o->start, o->end);
    }
done:
    qkv__free(u8);
    qkv__free(buf);
    return st;
}

/* NFC/NFD/NFKC/NFKD of in -> out. The text is normalized whole (that is the result); the spans
 * come from runs normalized alone (below). ASCII-only text is left as it is. */
static qkv_status uni_normalize(int kind, const tok_nbuf *in, tok_nbuf *out) {
    /* (utf8proc: COMPOSE alone means decompose canonically, then compose) */
    int flags = UTF8PROC_STABLE;
    flags |= kind == TOK_NS_NFC || kind == TOK_NS_NFKC ? UTF8PROC_COMPOSE : UTF8PROC_DECOMPOSE;
    if (kind == TOK_NS_NFKC || kind == TOK_NS_NFKD) flags |= UTF8PROC_COMPAT;
    int ascii = 1;
    for (size_t i = 0; i < in->n && ascii; i++) ascii = in->c[i].cp < 0x80;
    if (ascii || in->n == 0) {
        QKV_TRY(qkv__tok_reserve((void **)&out->c, &out->cap, out->n + in->n, sizeof *out->c));
        memcpy(out->c + out->n, in->c, in->n * sizeof *in->c);
        out->n += in->n;
        return QKV_OK;
    }
    size_t n0 = out->n;
    QKV_TRY(uni_form(in->c, in->n, flags, out));
    size_t whole = out->n - n0, pos = n0, i = 0;
    /* spans: each run (a starter and its marks) normalized alone and matched against the
     * whole result; a run whose result differs (it composes with the next: Hangul jamo,
     * the few starters that compose with a starter) is joined with the next and retried */
    while (i < in->n) {
        size_t j = i + 1;
        while (j < in->n && qkv__uni_ccc(in->c[j].cp) != 0) j++;
        for (int joins = 0;; joins++) {
            size_t mark = out->n;
            QKV_TRY(uni_form(in->c + i, j - i, flags, out));
            size_t m = out->n - mark;
            int ok = pos + m <= n0 + whole;
            for (size_t k = 0; ok && k < m; k++) ok = out->c[pos + k].cp == out->c[mark + k].cp;
            if (ok) memcpy(out->c + pos, out->c + mark, m * sizeof *out->c);
            out->n = mark;
            if (ok || j == in->n || joins == 32) { /* (bounded: linear time on any text) */
                if (!ok) {
                    i = in->n; /* no match: uni_form's spans stay for the rest */
                    j = in->n;
                }
                pos += ok ? m : 0;
                break;
            }
            j++;
            while (j < in->n && qkv__uni_ccc(in->c[j].cp) != 0) j++;
        }
        i = j;
    }
    out->n = n0 + whole;
    return QKV_OK;
}

static qkv_status run_step(const tok_nstep *st, const tok_nbuf *in, tok_nbuf *out) {
    out->n = 0;
    switch (st->kind) {
    case TOK_NS_PRECOMPILED: return qkv__charsmap_normalize(&st->charsmap, in, out);
    case TOK_NS_STRIP: {
        size_t i = 0, j = in->n;
        if (st->left)
            while (i < j && qkv__uni_is_whitespace(in->c[i].cp)) i++;
        if (st->right)
            while (j > i && qkv__uni_is_whitespace(in->c[j - 1].cp)) j--;
        for (size_t k = i; k < j; k++)
            QKV_TRY(nb_push(out, in->c[k].cp, in->c[k].start, in->c[k].end));
        return QKV_OK;
    }
    case TOK_NS_LOWERCASE:
        for (size_t k = 0; k < in->n; k++) {
            uint32_t l[3];
            int m = qkv__uni_lower(in->c[k].cp, l);
            for (int q = 0; q < m; q++) QKV_TRY(nb_push(out, l[q], in->c[k].start, in->c[k].end));
        }
        return QKV_OK;
    case TOK_NS_PREPEND:
        if (in->n)
            for (size_t q = 0; q < st->with_n; q++)
                QKV_TRY(nb_push(out, st->with[q], in->c[0].start, in->c[0].end));
        for (size_t k = 0; k < in->n; k++)
            QKV_TRY(nb_push(out, in->c[k].cp, in->c[k].start, in->c[k].end));
        return QKV_OK;
    case TOK_NS_REPLACE: {
        size_t k = 0;
        while (k < in->n) {
            size_t m = 0; /* chars matched at k */
            if (st->pat_min) {
                while (k + m < in->n && in->c[k + m].cp == st->pat[0]) m++;
                if (m < st->pat_min) m = 0;
            } else if (st->pat_n && k + st->pat_n <= in->n) {
                m = st->pat_n;
                for (size_t q = 0; q < st->pat_n && m; q++)
                    if (in->c[k + q].cp != st->pat[q]) m = 0;
            }
            if (!m) {
                QKV_TRY(nb_push(out, in->c[k].cp, in->c[k].start, in->c[k].end));
                k++;
                continue;
            }
            /* tokenizers inserts the content after removing the match: it takes the span of
             * the match's last char */
            for (size_t q = 0; q < st->with_n; q++)
                QKV_TRY(nb_push(out, st->with[q], in->c[k + m - 1].start, in->c[k + m - 1].end));
            k += m;
        }
        return QKV_OK;
    }
    default: return uni_normalize(st->kind, in, out);
    }
}

/* applies the steps to out->c[n0..) in turn, through tmp */
static qkv_status run_steps(const tok_normalizer *nz, tok_nbuf *out, size_t n0, tok_nbuf *tmp) {
    tok_nbuf seg = {out->c + n0, out->n - n0, out->cap - n0};
    for (size_t i = 0; i < nz->n_steps; i++) {
        QKV_TRY(run_step(&nz->steps[i], &seg, tmp));
        /* tmp -> the segment of out */
        QKV_TRY(qkv__tok_reserve((void **)&out->c, &out->cap, n0 + tmp->n, sizeof *out->c));
        memcpy(out->c + n0, tmp->c, tmp->n * sizeof *tmp->c);
        out->n = n0 + tmp->n;
        seg.c = out->c + n0;
        seg.n = tmp->n;
        seg.cap = out->cap - n0;
    }
    return QKV_OK;
}
