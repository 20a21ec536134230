/* chrf.c — corpus chrF and chrF++ as sacreBLEU computes them (qkv.h, "translation metrics").
 *
 * Per segment: character n-grams of the text without whitespace (Python's), orders 1..C,
 * tagged 0..C-1; with word_order W, word n-grams (tags C..C+W-1) of the words of str.split()
 * after sacreBLEU's _remove_punctuation (one ASCII punctuation mark split off the end, else
 * off the start, of every word longer than one code point), words interned to ids. For each
 * reference the [hyp, ref, match] counts per order give a sentence F-score; the first
 * reference with the best one gives the segment's counts. An order the reference has no
 * n-gram of counts no hypothesis n-grams. The counts sum over the corpus; the F-score is
 * _compute_f_score's, in double, in its order of operations. */
#include "core/abi.h"
#include "core/alloc.h"
#include "core/error.h"
#include "eval/eval.h"

#include <stdio.h>
#include <string.h>

#define MAX_ORDER 32

typedef struct ctx {
    sb_buf text, tmp, words, pieces, arena;
    sb_ngrams vocab, hyp, ref;
} ctx;

static void ctx_free(ctx *c) {
    qkv__sb_buf_free(&c->text);
    qkv__sb_buf_free(&c->tmp);
    qkv__sb_buf_free(&c->words);
    qkv__sb_buf_free(&c->pieces);
    qkv__sb_buf_free(&c->arena);
    qkv__sb_ng_free(&c->vocab);
    qkv__sb_ng_free(&c->hyp);
    qkv__sb_ng_free(&c->ref);
}

static const qkv_chrf_options chrf_defaults = {
    .struct_size = sizeof(qkv_chrf_options), .char_order = 6, .beta = 2};

static qkv_status check_options(const qkv_chrf_options *in, qkv_chrf_options *o) {
    QKV_TRY(QKV__STRUCT_IN(qkv_chrf_options, o, in, &chrf_defaults, "qkv_chrf_options"));
    if (o->char_order == 0) o->char_order = 6;
    if (o->beta == 0) o->beta = 2;
    if (o->char_order < 1 || o->char_order > MAX_ORDER || o->word_order < 0 ||
        o->word_order > MAX_ORDER || o->beta < 1 || o->beta > 100)
        return qkv__fail(QKV_ERR_INVALID_ARG,
                         "chrF: char_order %d (1..%d), word_order %d (0..%d) or beta %d (1..100) "
                         "out of range",
                         o->char_order, MAX_ORDER, o->word_order, MAX_ORDER, o->beta);
    return QKV_OK;
}

static int ascii_punct(uint32_t c) {
    return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) ||
           (c >= 0x7B && c <= 0x7E);
}

/* The n-grams of one text into t; per-order totals into tot[C + W]. */
static qkv_status extract(ctx *c, const qkv_chrf_options *o, const char *s, const char *what,
                          sb_ngrams *t, int64_t *tot) {
    const int C = o->char_order, W = o->word_order;
    QKV_TRY(qkv__sb_decode(s, &c->text, what));
    if (o->lowercase) {
        QKV_TRY(qkv__sb_lower(c->text.v, c->text.n, &c->tmp));
        sb_buf x = c->text;
        c->text = c->tmp;
        c->tmp = x;
    }
    /* characters (without whitespace unless asked) into the arena */
    size_t coff = c->arena.n;
    QKV_TRY(qkv__sb_reserve(&c->arena, c->text.n));
    for (size_t i = 0; i < c->text.n; i++)
        if (o->whitespace || !qkv__sb_space(c->text.v[i])) c->arena.v[c->arena.n++] = c->text.v[i];
    size_t nc = c->arena.n - coff;
    /* words: split, punctuation off, interned */
    size_t woff = 0, nw = 0;
    if (W > 0) {
        QKV_TRY(qkv__sb_split(c->text.v, c->text.n, &c->words));
        c->pieces.n = 0;
        for (size_t k = 0; k < c->words.n; k += 2) {
            uint32_t a = c->words.v[k], b = c->words.v[k + 1];
            uint32_t cut = b - a == 1                      ? b
                           : ascii_punct(c->text.v[b - 1]) ? b - 1
                           : ascii_punct(c->text.v[a])     ? a + 1
                                                           : b;
            uint32_t p[4] = {a, cut, cut, b};
            QKV_TRY(qkv__sb_append(&c->pieces, p, cut == b ? 2 : 4));
        }
        c->tmp.n = 0;
        for (size_t k = 0; k < c->pieces.n; k += 2) {
            uint32_t id;
            QKV_TRY(qkv__sb_intern(&c->vocab, &c->arena, c->text.v + c->pieces.v[k],
                                   c->pieces.v[k + 1] - c->pieces.v[k], &id));
            QKV_TRY(qkv__sb_append(&c->tmp, &id, 1));
        }
        woff = c->arena.n;
        nw = c->tmp.n;
        QKV_TRY(qkv__sb_append(&c->arena, c->tmp.v, c->tmp.n));
    }
    qkv__sb_ng_clear(t);
    for (int n = 1; n <= C + W; n++) {
        int word = n > C;
        size_t len = word ? nw : nc, off = word ? woff : coff, g = (size_t)(word ? n - C : n);
        tot[n - 1] = 0;
        for (size_t i = 0; i + g <= len; i++) {
            size_t idx;
            QKV_TRY(qkv__sb_ng_add(t, &c->arena, (uint32_t)(n - 1), off + i, (uint32_t)g, &idx));
            t->e[idx].count++;
            tot[n - 1]++;
        }
    }
    return QKV_OK;
}

/* CHRF._compute_f_score over stats[3 * order] = (hyp, ref, match) per order. */
static double f_score(const qkv_chrf_options *o, const int64_t *stats) {
    const int order = o->char_order + o->word_order, factor = o->beta * o->beta;
    const double eps = 1e-16;
    double score = 0.0, avg_prec = 0.0, avg_rec = 0.0;
    int eff = 0;
    for (int i = 0; i < order; i++) {
        int64_t n_hyp = stats[3 * i], n_ref = stats[3 * i + 1], n_match = stats[3 * i + 2];
        double prec = n_hyp > 0 ? (double)n_match / (double)n_hyp : eps;
        double rec = n_ref > 0 ? (double)n_match / (double)n_ref : eps;
        double denom = factor * prec + rec;
        score += denom > 0 ? (1 + factor) * prec * rec / denom : eps;
        if (n_hyp > 0 && n_ref > 0) {
            avg_prec += prec;
            avg_rec += rec;
            eff++;
        }
    }
    if (o->eps_smoothing) return 100 * score / order;
    if (eff == 0)
        avg_prec = avg_rec = 0.0;
    else {
        avg_prec /= eff;
        avg_rec /= eff;
    }
    if (avg_prec + avg_rec != 0) {
        score = (1 + factor) * avg_prec * avg_rec;
        score /= factor * avg_prec + avg_rec;
        return 100 * score;
    }
    return 0.0;
}

qkv_status qkv_chrf(const char *const *hyps, int64_t n, const char *const *refs, int64_t n_refs,
                    const qkv_chrf_options *opts, qkv_chrf_score *out) {
    qkv_chrf_options o;
    if (!hyps || !refs || !out) return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_chrf: NULL argument");
    if (n < 1 || n_refs < 1)
        return qkv__fail(QKV_ERR_INVALID_ARG,
                         "qkv_chrf: %lld segments and %lld references; needs >= 1", (long long)n,
                         (long long)n_refs);
    if ((uint64_t)n > (uint64_t)INT64_MAX / (uint64_t)n_refs)
        return qkv__fail(QKV_ERR_OVERFLOW, "qkv_chrf: too many references");
    QKV_TRY(check_options(opts, &o));
    const int order = o.char_order + o.word_order;
    int64_t sum[3 * 2 * MAX_ORDER] = {0}, stats[3 * 2 * MAX_ORDER], best[3 * 2 * MAX_ORDER];
    int64_t htot[2 * MAX_ORDER], rtot[2 * MAX_ORDER];
    ctx c;
    memset(&c, 0, sizeof c);
    qkv_status st = QKV_OK;
    char what[64];
    for (int64_t i = 0; i < n && st == QKV_OK; i++) {
        c.arena.n = 0;
        qkv__sb_ng_clear(&c.vocab);
        snprintf(what, sizeof what, "hypothesis, line %lld", (long long)i + 1);
        st = hyps[i] ? extract(&c, &o, hyps[i], what, &c.hyp, htot)
                     : qkv__fail(QKV_ERR_INVALID_ARG, "chrF: %s is NULL", what);
        double best_f = -1.0;
        for (int64_t r = 0; r < n_refs && st == QKV_OK; r++) {
            const char *s = refs[r * n + i];
            snprintf(what, sizeof what, "reference %lld, line %lld", (long long)r + 1,
                     (long long)i + 1);
            st = s ? extract(&c, &o, s, what, &c.ref, rtot)
                   : qkv__fail(QKV_ERR_INVALID_ARG, "chrF: %s is NULL", what);
            if (st != QKV_OK) break;
            for (int k = 0; k < order; k++) {
                stats[3 * k] = rtot[k] > 0 ? htot[k] : 0;
                stats[3 * k + 1] = rtot[k];
                stats[3 * k + 2] = 0;
            }
            for (size_t k = 0; k < c.hyp.n; k++) {
                const sb_entry *e = &c.hyp.e[k];
                int64_t m = qkv__sb_ng_find(&c.ref, &c.arena, e->tag, e->off, e->len);
                if (m >= 0)
                    stats[3 * e->tag + 2] +=
                        e->count < c.ref.e[m].count ? e->count : c.ref.e[m].count;
            }
            double f = f_score(&o, stats);
            if (f > best_f) {
                best_f = f;
                memcpy(best, stats, (size_t)(3 * order) * sizeof *stats);
            }
        }
        if (st == QKV_OK)
            for (int k = 0; k < 3 * order; k++) sum[k] += best[k];
    }
    ctx_free(&c);
    if (st != QKV_OK) return st;
    qkv_chrf_score s = {.struct_size = sizeof s,
                        .score = f_score(&o, sum),
                        .char_order = o.char_order,
                        .word_order = o.word_order,
                        .beta = o.beta};
    QKV__STRUCT_OUT(qkv_chrf_score, out, &s);
    return QKV_OK;
}

qkv_status qkv_chrf_signature(const qkv_chrf_options *opts, int64_t n_refs, char **text) {
    qkv_chrf_options o;
    if (!text) return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_chrf_signature: text is NULL");
    QKV_TRY(check_options(opts, &o));
    return qkv__sb_printf(text, "nrefs:%lld|case:%s|eff:%s|nc:%d|nw:%d|space:%s|version:%s",
                          (long long)n_refs, o.lowercase ? "lc" : "mixed",
                          o.eps_smoothing ? "no" : "yes", o.char_order, o.word_order,
                          o.whitespace ? "yes" : "no", QKV_SACREBLEU_VERSION);
}

qkv_status qkv_chrf_format(const qkv_chrf_score *in, const char *signature, int width,
                           char **text) {
    qkv_chrf_score s;
    if (!in || !text) return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_chrf_format: NULL argument");
    if (width < 0 || width > 17)
        return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_chrf_format: width %d is not in 0..17", width);
    QKV_TRY(QKV__STRUCT_IN(qkv_chrf_score, &s, in, NULL, "qkv_chrf_score"));
    if (s.word_order < 0 || s.word_order > MAX_ORDER)
        return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_chrf_format: word_order %d", s.word_order);
    char plus[MAX_ORDER + 1];
    memset(plus, '+', (size_t)s.word_order);
    plus[s.word_order] = 0;
    int sig = signature && *signature;
    return qkv__sb_printf(text, "chrF%d%s%s%s = %.*f", s.beta, plus, sig ? "|" : "",
                          sig ? signature : "", width, s.score);
}
