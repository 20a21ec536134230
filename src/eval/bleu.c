/* bleu.c — corpus BLEU as sacreBLEU computes it (qkv.h, "translation metrics").
 *
 * Per segment: each text is lowercased (optionally), right-stripped and tokenized (text.c),
 * split into words, and its words interned to ids within the segment, so an n-gram is a run
 * of ids in one arena. The references' n-gram counts merge by maximum; the hypothesis' counts
 * clip against them; the reference length is the closest to the hypothesis' (the shorter on
 * a tie). The integer statistics sum over the corpus, then compute_bleu runs in double with
 * sacreBLEU's operations in sacreBLEU's order (including my_log(0) = -9999999999), so the
 * score has its bits. */
#include "core/abi.h"
#include "core/alloc.h"
#include "core/error.h"
#include "eval/eval.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct ctx {
    sb_buf text, tmp, words, ids, arena;
    sb_ngrams vocab, ref, merged, hyp;
} ctx;

static void ctx_free(ctx *c) {
    qkv__sb_buf_free(&c->text);
    qkv__sb_buf_free(&c->tmp);
    qkv__sb_buf_free(&c->words);
    qkv__sb_buf_free(&c->ids);
    qkv__sb_buf_free(&c->arena);
    qkv__sb_ng_free(&c->vocab);
    qkv__sb_ng_free(&c->ref);
    qkv__sb_ng_free(&c->merged);
    qkv__sb_ng_free(&c->hyp);
}

static const qkv_bleu_options bleu_defaults = {.struct_size = sizeof(qkv_bleu_options),
                                               .max_ngram_order = 4};

static qkv_status check_options(const qkv_bleu_options *in, qkv_bleu_options *o) {
    QKV_TRY(QKV__STRUCT_IN(qkv_bleu_options, o, in, &bleu_defaults, "qkv_bleu_options"));
    if (o->max_ngram_order == 0) o->max_ngram_order = 4;
    if (o->max_ngram_order < 1 || o->max_ngram_order > QKV_BLEU_MAX_ORDER)
        return qkv__fail(QKV_ERR_INVALID_ARG, "BLEU: max_ngram_order %d is not in 1..%d",
                         o->max_ngram_order, QKV_BLEU_MAX_ORDER);
    if ((unsigned)o->tokenize > QKV_BLEU_TOK_NONE)
        return qkv__fail(QKV_ERR_INVALID_ARG, "BLEU: unknown tokenizer %d", (int)o->tokenize);
    if ((unsigned)o->smooth > QKV_BLEU_SMOOTH_ADD_K)
        return qkv__fail(QKV_ERR_INVALID_ARG, "BLEU: unknown smoothing %d", (int)o->smooth);
    if (!isfinite(o->smooth_value) || o->smooth_value < 0)
        return qkv__fail(QKV_ERR_INVALID_ARG, "BLEU: smooth_value %g is not a finite value >= 0",
                         o->smooth_value);
    if (o->smooth_value == 0)
        o->smooth_value = o->smooth == QKV_BLEU_SMOOTH_FLOOR   ? 0.1
                          : o->smooth == QKV_BLEU_SMOOTH_ADD_K ? 1.0
                                                               : 0.0;
    return QKV_OK;
}

/* One text into word ids at arena[*off, *off + *ntok). */
static qkv_status prepare(ctx *c, const qkv_bleu_options *o, const char *s, const char *what,
                          size_t *off, size_t *ntok) {
    QKV_TRY(qkv__sb_decode(s, &c->text, what));
    if (o->lowercase) {
        QKV_TRY(qkv__sb_lower(c->text.v, c->text.n, &c->tmp));
        sb_buf t = c->text;
        c->text = c->tmp;
        c->tmp = t;
    }
    QKV_TRY(qkv__sb_tokenize((int)o->tokenize, &c->text, &c->tmp));
    QKV_TRY(qkv__sb_split(c->text.v, c->text.n, &c->words));
    c->ids.n = 0;
    for (size_t w = 0; w < c->words.n; w += 2) {
        uint32_t id;
        QKV_TRY(qkv__sb_intern(&c->vocab, &c->arena, c->text.v + c->words.v[w],
                               c->words.v[w + 1] - c->words.v[w], &id));
        QKV_TRY(qkv__sb_append(&c->ids, &id, 1));
    }
    *off = c->arena.n;
    *ntok = c->ids.n;
    return qkv__sb_append(&c->arena, c->ids.v, c->ids.n);
}

static qkv_status count(sb_ngrams *t, const sb_buf *arena, size_t off, size_t ntok, int N) {
    qkv__sb_ng_clear(t);
    for (int n = 1; n <= N; n++)
        for (size_t i = 0; i + (size_t)n <= ntok; i++) {
            size_t idx;
            QKV_TRY(qkv__sb_ng_add(t, arena, (uint32_t)(n - 1), off + i, (uint32_t)n, &idx));
            t->e[idx].count++;
        }
    return QKV_OK;
}

/* The statistics of segment i added to len[2] (hyp, ref), correct[N], total[N]; ref_lens
 * [n_refs] is scratch. */
static qkv_status segment(ctx *c, const qkv_bleu_options *o, const char *const *hyps, int64_t n,
                          const char *const *refs, int64_t n_refs, int64_t i, int64_t *ref_lens,
                          int64_t len[2], int64_t *correct, int64_t *total) {
    const int N = o->max_ngram_order;
    char what[64];
    size_t off, ntok;
    c->arena.n = 0;
    qkv__sb_ng_clear(&c->vocab);
    qkv__sb_ng_clear(&c->merged);
    for (int64_t r = 0; r < n_refs; r++) {
        const char *s = refs[r * n + i];
        snprintf(what, sizeof what, "reference %lld, line %lld", (long long)r + 1,
                 (long long)i + 1);
        if (!s) return qkv__fail(QKV_ERR_INVALID_ARG, "BLEU: %s is NULL", what);
        QKV_TRY(prepare(c, o, s, what, &off, &ntok));
        ref_lens[r] = (int64_t)ntok;
        QKV_TRY(count(&c->ref, &c->arena, off, ntok, N));
        for (size_t k = 0; k < c->ref.n; k++) {
            const sb_entry *e = &c->ref.e[k];
            size_t m;
            QKV_TRY(qkv__sb_ng_add(&c->merged, &c->arena, e->tag, e->off, e->len, &m));
            if (c->merged.e[m].count < e->count) c->merged.e[m].count = e->count;
        }
    }
    snprintf(what, sizeof what, "hypothesis, line %lld", (long long)i + 1);
    if (!hyps[i]) return qkv__fail(QKV_ERR_INVALID_ARG, "BLEU: %s is NULL", what);
    QKV_TRY(prepare(c, o, hyps[i], what, &off, &ntok));
    QKV_TRY(count(&c->hyp, &c->arena, off, ntok, N));
    for (size_t k = 0; k < c->hyp.n; k++) {
        const sb_entry *e = &c->hyp.e[k];
        total[e->tag] += e->count;
        int64_t m = qkv__sb_ng_find(&c->merged, &c->arena, e->tag, e->off, e->len);
        if (m >= 0)
            correct[e->tag] += e->count < c->merged.e[m].count ? e->count : c->merged.e[m].count;
    }
    /* the closest reference length, the shorter on a tie */
    int64_t hyp_len = (int64_t)ntok, best = -1, best_diff = -1;
    for (int64_t r = 0; r < n_refs; r++) {
        int64_t d = llabs(hyp_len - ref_lens[r]);
        if (best_diff == -1 || d < best_diff || (d == best_diff && ref_lens[r] < best)) {
            best_diff = d;
            best = ref_lens[r];
        }
    }
    len[0] += hyp_len;
    len[1] += best;
    return QKV_OK;
}

static double my_log(double x) { return x == 0.0 ? -9999999999.0 : log(x); }

/* sacreBLEU's BLEU.compute_bleu. */
static void compute(const qkv_bleu_options *o, const int64_t *correct, const int64_t *total,
                    int64_t sys_len, int64_t ref_len, qkv_bleu_score *s) {
    const int N = o->max_ngram_order;
    memset(s, 0, sizeof *s);
    s->struct_size = sizeof *s;
    s->max_ngram_order = N;
    s->sys_len = sys_len;
    s->ref_len = ref_len;
    s->ratio = ref_len ? (double)sys_len / (double)ref_len : 0.0;
    s->bp = 1.0;
    if (sys_len < ref_len) s->bp = sys_len > 0 ? exp(1.0 - (double)ref_len / (double)sys_len) : 0.0;
    int any = 0;
    for (int k = 0; k < N; k++) {
        s->counts[k] = (double)correct[k];
        s->totals[k] = (double)total[k];
        any |= correct[k] != 0;
    }
    if (!any) return; /* score 0, precisions 0 */
    double smooth_mteval = 1.0;
    int eff = N;
    for (int n = 1; n <= N; n++) {
        if (o->smooth == QKV_BLEU_SMOOTH_ADD_K && n > 1) {
            s->counts[n - 1] += o->smooth_value;
            s->totals[n - 1] += o->smooth_value;
        }
        if (s->totals[n - 1] == 0) break;
        if (o->effective_order) eff = n;
        if (s->counts[n - 1] == 0) {
            if (o->smooth == QKV_BLEU_SMOOTH_EXP) {
                smooth_mteval *= 2;
                s->precisions[n - 1] = 100. / (smooth_mteval * s->totals[n - 1]);
            } else if (o->smooth == QKV_BLEU_SMOOTH_FLOOR)
                s->precisions[n - 1] = 100. * o->smooth_value / s->totals[n - 1];
        } else
            s->precisions[n - 1] = 100. * s->counts[n - 1] / s->totals[n - 1];
    }
    double sum = 0;
    for (int k = 0; k < eff; k++) sum += my_log(s->precisions[k]);
    s->score = s->bp * exp(sum / eff);
}

static qkv_status check_texts(const char *fn, const char *const *hyps, int64_t n,
                              const char *const *refs, int64_t n_refs, const void *out) {
    if (!hyps || !refs || !out) return qkv__fail(QKV_ERR_INVALID_ARG, "%s: NULL argument", fn);
    if (n < 1 || n_refs < 1)
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: %lld segments and %lld references; needs >= 1",
                         fn, (long long)n, (long long)n_refs);
    size_t cells;
    if (qkv__mul_overflow((size_t)n, (size_t)n_refs, &cells))
        return qkv__fail(QKV_ERR_OVERFLOW, "%s: too many references", fn);
    return QKV_OK;
}

qkv_status qkv_bleu(const char *const *hyps, int64_t n, const char *const *refs, int64_t n_refs,
                    const qkv_bleu_options *opts, qkv_bleu_score *out) {
    qkv_bleu_options o;
    QKV_TRY(check_texts("qkv_bleu", hyps, n, refs, n_refs, out));
    QKV_TRY(check_options(opts, &o));
    int64_t *ref_lens = qkv__calloc((size_t)n_refs, sizeof *ref_lens);
    if (!ref_lens) return qkv__fail(QKV_ERR_NOMEM, "qkv_bleu: out of memory");
    int64_t len[2] = {0, 0}, correct[QKV_BLEU_MAX_ORDER] = {0}, total[QKV_BLEU_MAX_ORDER] = {0};
    ctx c;
    memset(&c, 0, sizeof c);
    qkv_status st = QKV_OK;
    for (int64_t i = 0; i < n && st == QKV_OK; i++)
        st = segment(&c, &o, hyps, n, refs, n_refs, i, ref_lens, len, correct, total);
    ctx_free(&c);
    qkv__free(ref_lens);
    if (st != QKV_OK) return st;
    qkv_bleu_score s;
    compute(&o, correct, total, len[0], len[1], &s);
    QKV__STRUCT_OUT(qkv_bleu_score, out, &s);
    return QKV_OK;
}

/* ---------------------------------------------------------------- signature and text */

qkv_status qkv_bleu_signature(const qkv_bleu_options *opts, int64_t n_refs, char **text) {
    qkv_bleu_options o;
    if (!text) return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_bleu_signature: text is NULL");
    QKV_TRY(check_options(opts, &o));
    static const char *const tok[] = {"13a", "intl", "none"};
    static const char *const smooth[] = {"exp", "none", "floor", "add-k"};
    char sm[64];
    if (o.smooth == QKV_BLEU_SMOOTH_FLOOR || o.smooth == QKV_BLEU_SMOOTH_ADD_K)
        snprintf(sm, sizeof sm, "%s[%.2f]", smooth[o.smooth], o.smooth_value);
    else
        snprintf(sm, sizeof sm, "%s", smooth[o.smooth]);
    return qkv__sb_printf(text, "nrefs:%lld|case:%s|eff:%s|tok:%s|smooth:%s|version:%s",
                          (long long)n_refs, o.lowercase ? "lc" : "mixed",
                          o.effective_order ? "yes" : "no", tok[o.tokenize], sm,
                          QKV_SACREBLEU_VERSION);
}

qkv_status qkv_bleu_format(const qkv_bleu_score *in, const char *signature, int width,
                           char **text) {
    qkv_bleu_score s;
    if (!in || !text) return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_bleu_format: NULL argument");
    if (width < 0 || width > 17)
        return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_bleu_format: width %d is not in 0..17", width);
    QKV_TRY(QKV__STRUCT_IN(qkv_bleu_score, &s, in, NULL, "qkv_bleu_score"));
    if (s.max_ngram_order < 1 || s.max_ngram_order > QKV_BLEU_MAX_ORDER)
        return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_bleu_format: max_ngram_order %d",
                         s.max_ngram_order);
    char prec[QKV_BLEU_MAX_ORDER * 32];
    size_t k = 0;
    for (int i = 0; i < s.max_ngram_order; i++)
        k += (size_t)snprintf(prec + k, sizeof prec - k, "%s%.1f", i ? "/" : "", s.precisions[i]);
    int sig = signature && *signature;
    return qkv__sb_printf(
        text, "BLEU%s%s = %.*f %s (BP = %.3f ratio = %.3f hyp_len = %lld ref_len = %lld)",
        sig ? "|" : "", sig ? signature : "", width, s.score, prec, s.bp, s.ratio,
        (long long)s.sys_len, (long long)s.ref_len);
}
