/* test_sacrebleu.c — qkv_bleu / qkv_chrf against the sacrebleu package.
 *
 * Every case of tests/fixtures/sacrebleu/cases.json (tools/gen_sacrebleu_fixtures.py: corpus-
 * and sentence-level, empty lines, Unicode punctuation and spaces, numbers with commas and
 * dashes, HTML entities, 1-3 references, zero matches, lowercase with final sigma and dotted
 * I, the 13a / intl / none tokenizers, every smoothing, other orders, chrF / chrF++ / chrF
 * with whitespace and eps smoothing) is recomputed: the score within 1e-9 of sacreBLEU's (the
 * number of bit-exact scores and the largest difference are printed); BLEU's counts, totals,
 * lengths exactly, its precisions and BP within 1e-12; the signature and the printed lines at
 * widths 1 and 2 byte for byte. Then bad arguments (invalid UTF-8 naming the line, NULLs,
 * options out of range), struct_size, and every allocation failed in turn. */
#include "fault_alloc.h"
#include "qkv.h"
#include "test.h"

#include <jansson.h>

#define FIXTURE QKV_SOURCE_DIR "/tests/fixtures/sacrebleu/cases.json"

static long n_scores, n_exact;
static double max_diff;

static json_t *need(const char *cs, json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    if (!v) {
        fprintf(stderr, "%s: fixture lacks %s\n", cs, key);
        exit(1);
    }
    return v;
}

static int opt_bool(json_t *opts, const char *k) { return json_is_true(json_object_get(opts, k)); }
static int opt_int(json_t *opts, const char *k, int dflt) {
    json_t *v = json_object_get(opts, k);
    return v ? (int)json_integer_value(v) : dflt;
}

static void bleu_options(json_t *opts, qkv_bleu_options *o) {
    memset(o, 0, sizeof *o);
    o->struct_size = sizeof *o;
    const char *tok = json_string_value(json_object_get(opts, "tokenize"));
    o->tokenize = !tok || !strcmp(tok, "13a") ? QKV_BLEU_TOK_13A
                  : !strcmp(tok, "intl")      ? QKV_BLEU_TOK_INTL
                                              : QKV_BLEU_TOK_NONE;
    const char *sm = json_string_value(json_object_get(opts, "smooth_method"));
    o->smooth = !sm || !strcmp(sm, "exp") ? QKV_BLEU_SMOOTH_EXP
                : !strcmp(sm, "none")     ? QKV_BLEU_SMOOTH_NONE
                : !strcmp(sm, "floor")    ? QKV_BLEU_SMOOTH_FLOOR
                                          : QKV_BLEU_SMOOTH_ADD_K;
    json_t *sv = json_object_get(opts, "smooth_value");
    o->smooth_value = sv ? json_number_value(sv) : 0;
    o->max_ngram_order = opt_int(opts, "max_ngram_order", 4);
    o->effective_order = opt_bool(opts, "effective_order");
    o->lowercase = opt_bool(opts, "lowercase");
}

static void chrf_options(json_t *opts, qkv_chrf_options *o) {
    memset(o, 0, sizeof *o);
    o->struct_size = sizeof *o;
    o->char_order = opt_int(opts, "char_order", 6);
    o->word_order = opt_int(opts, "word_order", 0);
    o->beta = opt_int(opts, "beta", 2);
    o->lowercase = opt_bool(opts, "lowercase");
    o->whitespace = opt_bool(opts, "whitespace");
    o->eps_smoothing = opt_bool(opts, "eps_smoothing");
}

static void check_score(const char *cs, double got, double want) {
    double d = fabs(got - want);
    max_diff = d > max_diff ? d : max_diff;
    n_scores++;
    n_exact += got == want;
    CHECK_MSG(d <= 1e-9, "%s: score %.17g, sacreBLEU %.17g", cs, got, want);
}

static void check_text(const char *cs, const char *what, const char *got, json_t *want) {
    const char *w = json_string_value(want);
    CHECK_MSG(got && w && strcmp(got, w) == 0, "%s: %s\n  qkv:       %s\n  sacreBLEU: %s", cs, what,
              got ? got : "(null)", w ? w : "(null)");
}

static void run_case(json_t *c) {
    const char *cs = json_string_value(need("?", c, "name"));
    json_t *jh = need(cs, c, "hyps"), *jr = need(cs, c, "refs");
    int64_t n = (int64_t)json_array_size(jh), nr = (int64_t)json_array_size(jr);
    const char **hyps = calloc((size_t)n, sizeof *hyps);
    const char **refs = calloc((size_t)(n * nr), sizeof *refs);
    for (int64_t i = 0; i < n; i++) hyps[i] = json_string_value(json_array_get(jh, (size_t)i));
    for (int64_t r = 0; r < nr; r++) {
        json_t *stream = json_array_get(jr, (size_t)r);
        CHECK_EQ_INT((int64_t)json_array_size(stream), n);
        for (int64_t i = 0; i < n; i++)
            refs[r * n + i] = json_string_value(json_array_get(stream, (size_t)i));
    }
    json_t *opts = need(cs, c, "opts");
    char *sig = NULL, *t1 = NULL, *t2 = NULL;
    if (strcmp(json_string_value(need(cs, c, "metric")), "bleu") == 0) {
        qkv_bleu_options o;
        qkv_bleu_score s = {.struct_size = sizeof s};
        bleu_options(opts, &o);
        CHECK_OK(qkv_bleu(hyps, n, refs, nr, &o, &s));
        check_score(cs, s.score, json_number_value(need(cs, c, "score")));
        json_t *counts = need(cs, c, "counts"), *totals = need(cs, c, "totals"),
               *prec = need(cs, c, "precisions");
        CHECK_EQ_INT((int64_t)json_array_size(counts), s.max_ngram_order);
        for (int k = 0; k < s.max_ngram_order; k++) {
            CHECK_MSG(s.counts[k] == json_number_value(json_array_get(counts, (size_t)k)) &&
                          s.totals[k] == json_number_value(json_array_get(totals, (size_t)k)),
                      "%s: order %d counts %g/%g", cs, k + 1, s.counts[k], s.totals[k]);
            CHECK_MSG(fabs(s.precisions[k] - json_number_value(json_array_get(prec, (size_t)k))) <=
                          1e-12,
                      "%s: precision %d", cs, k + 1);
        }
        CHECK_MSG(fabs(s.bp - json_number_value(need(cs, c, "bp"))) <= 1e-12, "%s: bp", cs);
        CHECK_EQ_INT(s.sys_len, json_integer_value(need(cs, c, "sys_len")));
        CHECK_EQ_INT(s.ref_len, json_integer_value(need(cs, c, "ref_len")));
        CHECK_OK(qkv_bleu_signature(&o, nr, &sig));
        if (sig) {
            CHECK_OK(qkv_bleu_format(&s, sig, 1, &t1));
            CHECK_OK(qkv_bleu_format(&s, sig, 2, &t2));
        }
    } else {
        qkv_chrf_options o;
        qkv_chrf_score s = {.struct_size = sizeof s};
        chrf_options(opts, &o);
        CHECK_OK(qkv_chrf(hyps, n, refs, nr, &o, &s));
        check_score(cs, s.score, json_number_value(need(cs, c, "score")));
        CHECK_OK(qkv_chrf_signature(&o, nr, &sig));
        if (sig) {
            CHECK_OK(qkv_chrf_format(&s, sig, 1, &t1));
            CHECK_OK(qkv_chrf_format(&s, sig, 2, &t2));
        }
    }
    check_text(cs, "signature", sig, need(cs, c, "signature"));
    check_text(cs, "text (width 1)", t1, need(cs, c, "text1"));
    check_text(cs, "text (width 2)", t2, need(cs, c, "text2"));
    qkv_free(sig);
    qkv_free(t1);
    qkv_free(t2);
    free(hyps);
    free(refs);
}

static void test_bad_args(void) {
    const char *h[2] = {"a b c", "ok"}, *r[2] = {"a b", "ok\xff"}, *good[2] = {"a", "b"};
    qkv_bleu_score s = {.struct_size = sizeof s};
    qkv_chrf_score cs = {.struct_size = sizeof cs};
    CHECK_STATUS(qkv_bleu(h, 2, r, 1, NULL, &s), QKV_ERR_INVALID_ARG);
    CHECK_MSG(strstr(qkv_last_error(), "reference 1, line 2") &&
                  strstr(qkv_last_error(), "invalid UTF-8 at byte 2"),
              "message: %s", qkv_last_error());
    CHECK_STATUS(qkv_chrf(r, 2, good, 1, NULL, &cs), QKV_ERR_INVALID_ARG);
    CHECK_MSG(strstr(qkv_last_error(), "hypothesis, line 2"), "message: %s", qkv_last_error());
    const char *overlong[1] = {"\xc0\xaf"}, *surrogate[1] = {"\xed\xa0\x80"};
    CHECK_STATUS(qkv_bleu(overlong, 1, good, 1, NULL, &s), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_chrf(surrogate, 1, good, 1, NULL, &cs), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_bleu(NULL, 1, good, 1, NULL, &s), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_bleu(h, 0, good, 1, NULL, &s), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_chrf(h, 1, good, 0, NULL, &cs), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_chrf(h, 1, good, 1, NULL, NULL), QKV_ERR_INVALID_ARG);
    const char *withnull[2] = {"a", NULL};
    CHECK_STATUS(qkv_bleu(h, 2, withnull, 1, NULL, &s), QKV_ERR_INVALID_ARG);
    qkv_bleu_options bo = {.struct_size = sizeof bo, .max_ngram_order = 17};
    CHECK_STATUS(qkv_bleu(h, 1, good, 1, &bo, &s), QKV_ERR_INVALID_ARG);
    bo.max_ngram_order = 4;
    bo.tokenize = (qkv_bleu_tokenize)7;
    CHECK_STATUS(qkv_bleu(h, 1, good, 1, &bo, &s), QKV_ERR_INVALID_ARG);
    bo.tokenize = QKV_BLEU_TOK_13A;
    bo.smooth_value = NAN;
    CHECK_STATUS(qkv_bleu(h, 1, good, 1, &bo, &s), QKV_ERR_INVALID_ARG);
    qkv_chrf_options co = {.struct_size = sizeof co, .word_order = -1};
    CHECK_STATUS(qkv_chrf(h, 1, good, 1, &co, &cs), QKV_ERR_INVALID_ARG);
    co.word_order = 0;
    co.beta = 101;
    CHECK_STATUS(qkv_chrf(h, 1, good, 1, &co, &cs), QKV_ERR_INVALID_ARG);
    char *t = NULL;
    CHECK_STATUS(qkv_bleu_format(&s, "x", 18, &t), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_chrf_signature(NULL, 1, NULL), QKV_ERR_INVALID_ARG);
    /* struct_size 0 and NULL options: the defaults, sacreBLEU's */
    qkv_bleu_options zero = {0};
    qkv_bleu_score a = {.struct_size = sizeof a}, b = {0};
    CHECK_OK(qkv_bleu(h, 2, good, 1, &zero, &a));
    CHECK_OK(qkv_bleu(h, 2, good, 1, NULL, &b));
    CHECK(a.score == b.score && a.max_ngram_order == 4 && b.sys_len == 4);
    CHECK_OK(qkv_bleu_signature(NULL, 3, &t));
    CHECK(
        t &&
        strcmp(t, "nrefs:3|case:mixed|eff:no|tok:13a|smooth:exp|version:" QKV_SACREBLEU_VERSION) ==
            0);
    qkv_free(t);
    /* a longer struct from a newer program: its unknown tail must be zero */
    struct {
        qkv_chrf_options o;
        int future;
    } big = {{.struct_size = sizeof big}, 1};
    CHECK_STATUS(qkv_chrf(h, 1, good, 1, &big.o, &cs), QKV_ERR_INVALID_ARG);
    big.future = 0;
    CHECK_OK(qkv_chrf(h, 1, good, 1, &big.o, &cs));
}

static void test_nomem(json_t *cases) {
    /* the largest two-reference case, through both metrics and the strings */
    json_t *c = NULL;
    for (size_t k = 0; k < json_array_size(cases) && !c; k++)
        if (!strcmp(json_string_value(json_object_get(json_array_get(cases, k), "name")),
                    "bleu/random_words_2ref"))
            c = json_array_get(cases, k);
    CHECK(c != NULL);
    if (!c) return;
    json_t *jh = json_object_get(c, "hyps"), *jr = json_object_get(c, "refs");
    int64_t n = (int64_t)json_array_size(jh);
    const char **hyps = calloc((size_t)n, sizeof *hyps),
               **refs = calloc((size_t)n * 2, sizeof *refs);
    for (int64_t i = 0; i < n; i++) {
        hyps[i] = json_string_value(json_array_get(jh, (size_t)i));
        for (int r = 0; r < 2; r++)
            refs[r * n + i] =
                json_string_value(json_array_get(json_array_get(jr, (size_t)r), (size_t)i));
    }
    qkv_allocator a = {failing_alloc, counting_free, NULL};
    int done = 0;
    for (fail_at = 0; !done && fail_at < 100000; fail_at++) {
        n_attempt = n_alloc = n_free = 0;
        qkv_set_allocator(&a);
        qkv_bleu_score bs = {.struct_size = sizeof bs};
        qkv_chrf_score cs = {.struct_size = sizeof cs};
        qkv_chrf_options co = {.struct_size = sizeof co, .word_order = 2, .lowercase = 1};
        char *sig = NULL, *t = NULL;
        qkv_status s = qkv_bleu(hyps, n, refs, 2, NULL, &bs);
        if (s == QKV_OK) s = qkv_chrf(hyps, n, refs, 2, &co, &cs);
        if (s == QKV_OK) s = qkv_chrf_signature(&co, 2, &sig);
        if (s == QKV_OK) s = qkv_chrf_format(&cs, sig, 1, &t);
        done = s == QKV_OK;
        CHECK_MSG(done || s == QKV_ERR_NOMEM, "allocation %ld failed: status %d (%s)", fail_at,
                  (int)s, qkv_last_error());
        qkv_free(sig);
        qkv_free(t);
        qkv_set_allocator(NULL);
        CHECK_MSG(n_alloc == n_free, "allocation %ld failed: %ld blocks leaked", fail_at,
                  n_alloc - n_free);
    }
    CHECK_MSG(done, "never succeeded");
    printf("every one of %ld allocations failed in turn\n", fail_at - 1);
    free(hyps);
    free(refs);
}

int main(void) {
    json_error_t err;
    json_t *root = json_load_file(FIXTURE, 0, &err);
    if (!root) {
        fprintf(stderr, "cannot read %s: %s (line %d)\n", FIXTURE, err.text, err.line);
        return 1;
    }
    const char *version = json_string_value(json_object_get(root, "sacrebleu"));
    CHECK_MSG(version && strcmp(version, QKV_SACREBLEU_VERSION) == 0,
              "fixtures from sacrebleu %s, qkv matches %s", version ? version : "?",
              QKV_SACREBLEU_VERSION);
    json_t *cases = json_object_get(root, "cases");
    size_t k;
    json_t *c;
    json_array_foreach(cases, k, c) run_case(c);
    CHECK_MSG(json_array_size(cases) >= 100, "only %zu cases", json_array_size(cases));
    printf("%zu sacreBLEU cases: %ld scores, %ld bit-exact, largest difference %.3g\n",
           json_array_size(cases), n_scores, n_exact, max_diff);
    test_bad_args();
    test_nomem(cases);
    json_decref(root);
    return test_finish("sacrebleu");
}
