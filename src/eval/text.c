/* text.c — sacreBLEU's text handling on code points: strict UTF-8, Python's whitespace and
 * str.lower, the '13a' / 'intl' / 'none' tokenizers, str.split (eval.h).
 *
 * Each regular expression of sacreBLEU's tokenizers matches a fixed one or two code points,
 * so re.sub is one left-to-right scan that, where the pattern matches at i, writes the
 * replacement and resumes after the match (non-overlapping, as re.sub), else copies s[i]. */
#include "eval/eval.h"

#include "core/alloc.h"
#include "core/error.h"
#include "eval/sacrebleu_compat.h"
#include "tokenizer/unicode.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <utf8proc.h>

qkv_status qkv__sb_reserve(sb_buf *b, size_t more) {
    if (b->n + more <= b->cap) return QKV_OK;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->n + more) {
        if (cap > SIZE_MAX / 2 / sizeof *b->v) return qkv__fail(QKV_ERR_OVERFLOW, "text too long");
        cap *= 2;
    }
    uint32_t *v = qkv__alloc(cap * sizeof *v);
    if (!v) return qkv__fail(QKV_ERR_NOMEM, "out of memory for %zu code points", cap);
    if (b->n) memcpy(v, b->v, b->n * sizeof *v);
    qkv__free(b->v);
    b->v = v;
    b->cap = cap;
    return QKV_OK;
}

qkv_status qkv__sb_append(sb_buf *b, const uint32_t *v, size_t n) {
    QKV_TRY(qkv__sb_reserve(b, n));
    if (n) memcpy(b->v + b->n, v, n * sizeof *v);
    b->n += n;
    return QKV_OK;
}

void qkv__sb_buf_free(sb_buf *b) {
    qkv__free(b->v);
    memset(b, 0, sizeof *b);
}

static qkv_status put(sb_buf *b, uint32_t c) {
    if (b->n == b->cap) QKV_TRY(qkv__sb_reserve(b, 1));
    b->v[b->n++] = c;
    return QKV_OK;
}

qkv_status qkv__sb_decode(const char *s, sb_buf *out, const char *what) {
    size_t len = strlen(s), i = 0;
    out->n = 0;
    QKV_TRY(qkv__sb_reserve(out, len));
    while (i < len) {
        utf8proc_int32_t c;
        utf8proc_ssize_t k =
            utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(len - i), &c);
        if (k <= 0) return qkv__fail(QKV_ERR_INVALID_ARG, "%s: invalid UTF-8 at byte %zu", what, i);
        out->v[out->n++] = (uint32_t)c;
        i += (size_t)k;
    }
    return QKV_OK;
}

/* ---------------------------------------------------------------- classes */

#define IN(list, c) qkv__uni_in_sorted(list, list##_n, c)

static int cat(uint32_t c) { return (int)utf8proc_category((utf8proc_int32_t)c); }

int qkv__sb_space(uint32_t c) {
    if (c < 0x80) return c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F);
    int b = utf8proc_get_property((utf8proc_int32_t)c)->bidi_class;
    int mine = cat(c) == UTF8PROC_CATEGORY_ZS || b == UTF8PROC_BIDI_CLASS_B ||
               b == UTF8PROC_BIDI_CLASS_S || b == UTF8PROC_BIDI_CLASS_WS;
    return (mine || IN(sb_ws_add, c)) && !IN(sb_ws_del, c);
}

static int is_p(uint32_t c) {
    int k = cat(c);
    return ((k >= UTF8PROC_CATEGORY_PC && k <= UTF8PROC_CATEGORY_PO) || IN(sb_p_add, c)) &&
           !IN(sb_p_del, c);
}

static int is_s(uint32_t c) {
    int k = cat(c);
    return ((k >= UTF8PROC_CATEGORY_SM && k <= UTF8PROC_CATEGORY_SO) || IN(sb_s_add, c)) &&
           !IN(sb_s_del, c);
}

static int is_n(uint32_t c) {
    int k = cat(c);
    return ((k >= UTF8PROC_CATEGORY_ND && k <= UTF8PROC_CATEGORY_NO) || IN(sb_n_add, c)) &&
           !IN(sb_n_del, c);
}

/* Python's Case_Ignorable and Cased, behind str.lower's final sigma. */
static int case_ignorable(uint32_t c) {
    int k = cat(c);
    int mine = k == UTF8PROC_CATEGORY_MN || k == UTF8PROC_CATEGORY_ME ||
               k == UTF8PROC_CATEGORY_CF || k == UTF8PROC_CATEGORY_LM || k == UTF8PROC_CATEGORY_SK;
    return (mine || IN(sb_ignorable_add, c)) && !IN(sb_ignorable_del, c);
}

static int cased(uint32_t c) {
    int k = cat(c);
    utf8proc_int32_t x = (utf8proc_int32_t)c;
    int mine = k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL ||
               k == UTF8PROC_CATEGORY_LT || utf8proc_tolower(x) != x || utf8proc_toupper(x) != x;
    return (mine || IN(sb_cased_add, c)) && !IN(sb_cased_del, c);
}

/* CPython's handle_capital_sigma: final (ς) when a cased letter comes before, skipping
 * case-ignorable ones, and none after. */
static uint32_t sigma(const uint32_t *s, size_t n, size_t i) {
    size_t j = i;
    while (j > 0 && case_ignorable(s[j - 1])) j--;
    if (j == 0 || !cased(s[j - 1])) return 0x3C3;
    for (j = i + 1; j < n && case_ignorable(s[j]); j++) {
    }
    return j == n || !cased(s[j]) ? 0x3C2 : 0x3C3;
}

qkv_status qkv__sb_lower(const uint32_t *in, size_t n, sb_buf *out) {
    out->n = 0;
    QKV_TRY(qkv__sb_reserve(out, n));
    for (size_t i = 0; i < n; i++) {
        uint32_t c = in[i];
        if (c < 0x80) {
            QKV_TRY(put(out, c >= 'A' && c <= 'Z' ? c + 32 : c));
            continue;
        }
        if (c == 0x3A3) {
            QKV_TRY(put(out, sigma(in, n, i)));
            continue;
        }
        int lo = 0, hi = sb_lower_n - 1, found = -1;
        while (lo <= hi) {
            int mid = (lo + hi) / 2;
            if (sb_lower[mid].c == c) {
                found = mid;
                break;
            }
            if (sb_lower[mid].c < c)
                lo = mid + 1;
            else
                hi = mid - 1;
        }
        if (found >= 0)
            QKV_TRY(qkv__sb_append(out, sb_lower[found].to, (size_t)sb_lower[found].n));
        else
            QKV_TRY(put(out, (uint32_t)utf8proc_tolower((utf8proc_int32_t)c)));
    }
    return QKV_OK;
}

/* ---------------------------------------------------------------- tokenizers */

/* str.replace(pat, rep) of ASCII pat / rep, from src to dst. */
static qkv_status replace(const sb_buf *src, sb_buf *dst, const char *pat, const char *rep) {
    size_t m = strlen(pat), r = strlen(rep);
    dst->n = 0;
    QKV_TRY(qkv__sb_reserve(dst, src->n));
    for (size_t i = 0; i < src->n;) {
        size_t k = 0;
        while (k < m && i + k < src->n && src->v[i + k] == (uint32_t)(unsigned char)pat[k]) k++;
        if (k == m) {
            for (size_t j = 0; j < r; j++) QKV_TRY(put(dst, (unsigned char)rep[j]));
            i += m;
        } else
            QKV_TRY(put(dst, src->v[i++]));
    }
    return QKV_OK;
}

static int digit(uint32_t c) { return c >= '0' && c <= '9'; }

/* 13a: [{-~[-` -&(-+:-@/] */
static int sym13a(uint32_t c) {
    return (c >= 0x7B && c <= 0x7E) || (c >= 0x5B && c <= 0x60) || (c >= 0x20 && c <= 0x26) ||
           (c >= 0x28 && c <= 0x2B) || (c >= 0x3A && c <= 0x40) || c == '/';
}

/* The rules of the two tokenizers: kind 1 `(x)` -> ` \1 `; kind 2 `(x)(y)` -> `\1 \2 `; kind
 * 3 `(x)(y)` -> ` \1 \2`. */
typedef struct rule {
    int kind;
    int (*x)(uint32_t), (*y)(uint32_t);
} rule;

static int not_digit(uint32_t c) { return !digit(c); }
static int dot_comma(uint32_t c) { return c == '.' || c == ','; }
static int dash(uint32_t c) { return c == '-'; }
static int not_n(uint32_t c) { return !is_n(c); }

static const rule rules_13a[] = {
    {1, sym13a, NULL}, {2, not_digit, dot_comma}, {3, dot_comma, not_digit}, {2, digit, dash}};
static const rule rules_intl[] = {{2, not_n, is_p}, {3, is_p, not_n}, {1, is_s, NULL}};

static qkv_status apply(const rule *ru, const sb_buf *src, sb_buf *dst) {
    dst->n = 0;
    QKV_TRY(qkv__sb_reserve(dst, src->n + src->n / 2 + 4));
    const uint32_t *s = src->v;
    for (size_t i = 0; i < src->n;) {
        if (ru->kind == 1 && ru->x(s[i])) {
            uint32_t w[3] = {' ', s[i], ' '};
            QKV_TRY(qkv__sb_append(dst, w, 3));
            i++;
        } else if (ru->kind != 1 && i + 1 < src->n && ru->x(s[i]) && ru->y(s[i + 1])) {
            uint32_t w2[4] = {s[i], ' ', s[i + 1], ' '}, w3[4] = {' ', s[i], ' ', s[i + 1]};
            QKV_TRY(qkv__sb_append(dst, ru->kind == 2 ? w2 : w3, 4));
            i += 2;
        } else
            QKV_TRY(put(dst, s[i++]));
    }
    return QKV_OK;
}

static void swap(sb_buf *a, sb_buf *b) {
    sb_buf t = *a;
    *a = *b;
    *b = t;
}

qkv_status qkv__sb_tokenize(int tokenizer, sb_buf *line, sb_buf *tmp) {
    while (line->n && qkv__sb_space(line->v[line->n - 1])) line->n--; /* sent.rstrip() */
    if (tokenizer == SB_TOK_NONE) return QKV_OK;
    const rule *rules = rules_intl;
    size_t nrules = sizeof rules_intl / sizeof *rules_intl;
    if (tokenizer == SB_TOK_13A) {
        static const char *const reps[][2] = {{"<skipped>", ""}, {"-\n", ""}, {"\n", " "}};
        static const char *const ents[][2] = {
            {"&quot;", "\""}, {"&amp;", "&"}, {"&lt;", "<"}, {"&gt;", ">"}};
        for (int k = 0; k < 3; k++) {
            QKV_TRY(replace(line, tmp, reps[k][0], reps[k][1]));
            swap(line, tmp);
        }
        int amp = 0;
        for (size_t i = 0; i < line->n && !amp; i++) amp = line->v[i] == '&';
        for (int k = 0; amp && k < 4; k++) {
            QKV_TRY(replace(line, tmp, ents[k][0], ents[k][1]));
            swap(line, tmp);
        }
        tmp->n = 0; /* f' {line} ' */
        QKV_TRY(put(tmp, ' '));
        QKV_TRY(qkv__sb_append(tmp, line->v, line->n));
        QKV_TRY(put(tmp, ' '));
        swap(line, tmp);
        rules = rules_13a;
        nrules = sizeof rules_13a / sizeof *rules_13a;
    }
    for (size_t k = 0; k < nrules; k++) {
        QKV_TRY(apply(&rules[k], line, tmp));
        swap(line, tmp);
    }
    return QKV_OK;
}

qkv_status qkv__sb_split(const uint32_t *s, size_t n, sb_buf *words) {
    words->n = 0;
    for (size_t i = 0; i < n;) {
        while (i < n && qkv__sb_space(s[i])) i++;
        if (i == n) break;
        size_t start = i;
        while (i < n && !qkv__sb_space(s[i])) i++;
        uint32_t w[2] = {(uint32_t)start, (uint32_t)i};
        if (start > UINT32_MAX || i > UINT32_MAX)
            return qkv__fail(QKV_ERR_OVERFLOW, "a line of more than 2^32 code points");
        QKV_TRY(qkv__sb_append(words, w, 2));
    }
    return QKV_OK;
}

/* ---------------------------------------------------------------- strings */

qkv_status qkv__sb_printf(char **text, const char *fmt, ...) {
    va_list ap, aq;
    va_start(ap, fmt);
    va_copy(aq, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = n >= 0 ? qkv__alloc((size_t)n + 1) : NULL;
    if (s) vsnprintf(s, (size_t)n + 1, fmt, aq);
    va_end(aq);
    if (!s) return qkv__fail(QKV_ERR_NOMEM, "out of memory for a %d-byte string", n);
    *text = s;
    return QKV_OK;
}
