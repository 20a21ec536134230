/* test_cls_metrics.c — qkv_cls_metrics_* and the reports against scikit-learn.
 *
 * Every case of tests/fixtures/cls_report (tools/gen_cls_report_fixtures.py) is recomputed:
 * the report text must equal classification_report's byte for byte; precision, recall, F1,
 * the micro / macro / weighted (/ samples) averages and the accuracy must be within 1e-12 of
 * sklearn's (the largest difference and the number of bit-exact values are printed); supports
 * and confusion matrices must be equal. The JSON form must read back to the struct's exact
 * numbers; the text confusion matrix must be aligned and hold the counts. Then numpy's pairwise
 * summation order, bad arguments (ids out of range, non-0/1 indicators, n_labels 0, NULLs,
 * invalid UTF-8 names, digits out of range), and allocation failure (every allocation failed
 * in turn: NOMEM, nothing leaked). */
#include "qkv.h"
#include "test.h"
#include "train/metrics.h"

#include <jansson.h>

#define FIXDIR QKV_SOURCE_DIR "/tests/fixtures/cls_report"

static double max_diff;
static long n_values, n_exact;

static void check_value(const char *cs, const char *what, int64_t i, double got, double want) {
    double d = fabs(got - want);
    max_diff = d > max_diff ? d : max_diff;
    n_values++;
    n_exact += got == want;
    CHECK_MSG(d <= 1e-12, "%s: %s[%lld] = %.17g, sklearn %.17g", cs, what, (long long)i, got, want);
}

static json_t *need(const char *cs, json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    if (!v) {
        fprintf(stderr, "%s: fixture lacks %s\n", cs, key);
        exit(1);
    }
    return v;
}

/* Where the two texts first differ, for the failure message. */
static void show_diff(const char *cs, const char *got, const char *want) {
    size_t i = 0;
    while (got[i] && got[i] == want[i]) i++;
    size_t from = i > 40 ? i - 40 : 0;
    fprintf(stderr,
            "%s: report differs at byte %zu\n--- qkv (from %zu):\n%.120s\n--- sklearn:\n%.120s\n",
            cs, i, from, got + from, want + from);
}

/* Each line of the confusion table has the same width in code points, and the numbers of row
 * i read back to the confusion counts. */
static void check_confusion_text(const char *cs, const qkv_cls_metrics *m, const char *text) {
    int64_t cols = m->multilabel ? 4 : m->n_labels, lines = 0, width = -1;
    char *copy = strdup(text), *save = NULL;
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        int64_t w = qkv__utf8_codepoints(line);
        if (width < 0) width = w;
        CHECK_MSG(w == width, "%s: confusion line %lld is %lld wide, not %lld", cs,
                  (long long)lines, (long long)w, (long long)width);
        if (lines > 0 && lines <= m->n_labels) {
            /* the last `cols` fields are the counts */
            int64_t i = lines - 1, j = cols - 1;
            char *end = line + strlen(line);
            while (j >= 0 && end > line) {
                char *p = end;
                while (p > line && p[-1] != ' ') p--;
                long long v = strtoll(p, NULL, 10);
                CHECK_MSG(v == m->confusion[i * cols + j], "%s: confusion text [%lld][%lld]", cs,
                          (long long)i, (long long)j);
                while (p > line && p[-1] == ' ') p--;
                end = p;
                j--;
            }
        }
        lines++;
    }
    CHECK_EQ_INT(lines, m->n_labels + 1);
    free(copy);
}

/* The JSON form reads back to the exact numbers of the struct. */
static void check_json(const char *cs, const qkv_cls_metrics *m, const char *const *names,
                       const char *text) {
    json_error_t err;
    json_t *j = json_loads(text, 0, &err);
    CHECK_MSG(j != NULL, "%s: JSON does not parse: %s", cs, err.text);
    if (!j) return;
    CHECK(json_integer_value(json_object_get(j, "n_labels")) == m->n_labels);
    CHECK(json_integer_value(json_object_get(j, "n_samples")) == m->n_samples);
    CHECK(json_real_value(json_object_get(j, "accuracy")) == m->accuracy);
    json_t *classes = json_object_get(j, "classes");
    CHECK((int64_t)json_array_size(classes) == m->n_labels);
    for (int64_t i = 0; i < m->n_labels && i < (int64_t)json_array_size(classes); i++) {
        json_t *c = json_array_get(classes, (size_t)i);
        char num[24];
        snprintf(num, sizeof num, "%lld", (long long)i);
        const char *name = json_string_value(json_object_get(c, "name"));
        CHECK_MSG(name && strcmp(name, names ? names[i] : num) == 0, "%s: JSON name %lld", cs,
                  (long long)i);
        CHECK(json_real_value(json_object_get(c, "precision")) == m->precision[i]);
        CHECK(json_real_value(json_object_get(c, "recall")) == m->recall[i]);
        CHECK(json_real_value(json_object_get(c, "f1-score")) == m->f1[i]);
        CHECK(json_integer_value(json_object_get(c, "support")) == m->support[i]);
    }
    const char *keys[4] = {"micro avg", "macro avg", "weighted avg", "samples avg"};
    const qkv_cls_average *avgs[4] = {&m->micro, &m->macro, &m->weighted, &m->samples};
    for (int k = 0; k < 4; k++) {
        json_t *a = json_object_get(j, keys[k]);
        if (k == 3 && !m->multilabel) {
            CHECK(a == NULL);
            continue;
        }
        CHECK_MSG(a && json_real_value(json_object_get(a, "precision")) == avgs[k]->precision &&
                      json_real_value(json_object_get(a, "recall")) == avgs[k]->recall &&
                      json_real_value(json_object_get(a, "f1-score")) == avgs[k]->f1 &&
                      json_integer_value(json_object_get(a, "support")) == m->support_total,
                  "%s: JSON %s", cs, keys[k]);
    }
    json_t *cm =
        json_object_get(j, m->multilabel ? "multilabel_confusion_matrix" : "confusion_matrix");
    int64_t c = m->n_labels, bad = 0;
    CHECK((int64_t)json_array_size(cm) == c);
    for (int64_t i = 0; i < c && i < (int64_t)json_array_size(cm); i++)
        for (int64_t k = 0; k < (m->multilabel ? 4 : c); k++) {
            json_t *row = json_array_get(cm, (size_t)i);
            json_t *v = m->multilabel
                            ? json_array_get(json_array_get(row, (size_t)(k / 2)), (size_t)(k % 2))
                            : json_array_get(row, (size_t)k);
            bad += !json_is_integer(v) ||
                   json_integer_value(v) != m->confusion[i * (m->multilabel ? 4 : c) + k];
        }
    CHECK_MSG(bad == 0, "%s: JSON confusion matrix: %lld cells differ", cs, (long long)bad);
    json_decref(j);
}

static void run_case(const char *file) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", FIXDIR, file);
    json_error_t err;
    json_t *fx = json_load_file(path, 0, &err);
    if (!fx) {
        fprintf(stderr, "cannot read %s: %s\n", path, err.text);
        exit(1);
    }
    const char *cs = file;
    int multi = strcmp(json_string_value(need(cs, fx, "kind")), "multi") == 0;
    int64_t c = json_integer_value(need(cs, fx, "n_labels"));
    int digits = (int)json_integer_value(need(cs, fx, "digits"));
    json_t *yt = need(cs, fx, "y_true"), *yp = need(cs, fx, "y_pred"), *jn = need(cs, fx, "names");
    int64_t n = (int64_t)json_array_size(yt);
    const char **names = NULL;
    if (json_is_array(jn)) {
        names = calloc((size_t)c, sizeof *names);
        for (int64_t i = 0; i < c; i++) names[i] = json_string_value(json_array_get(jn, (size_t)i));
    }
    qkv_cls_metrics *m = NULL;
    if (multi) {
        uint8_t *t = malloc((size_t)(n * c)), *p = malloc((size_t)(n * c));
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < c; j++) {
                t[i * c + j] = (uint8_t)json_integer_value(
                    json_array_get(json_array_get(yt, (size_t)i), (size_t)j));
                p[i * c + j] = (uint8_t)json_integer_value(
                    json_array_get(json_array_get(yp, (size_t)i), (size_t)j));
            }
        CHECK_OK(qkv_cls_metrics_compute_multilabel(t, p, n, c, &m));
        free(t);
        free(p);
    } else {
        int32_t *t = malloc((size_t)n * 4), *p = malloc((size_t)n * 4);
        for (int64_t i = 0; i < n; i++) {
            t[i] = (int32_t)json_integer_value(json_array_get(yt, (size_t)i));
            p[i] = (int32_t)json_integer_value(json_array_get(yp, (size_t)i));
        }
        CHECK_OK(qkv_cls_metrics_compute(t, p, n, c, &m));
        free(t);
        free(p);
    }
    if (!m) {
        json_decref(fx);
        free(names);
        return;
    }
    CHECK(m->n_labels == c && m->n_samples == n && m->multilabel == multi);
    const char *per[3] = {"precision", "recall", "f1"};
    const double *got[3] = {m->precision, m->recall, m->f1};
    for (int k = 0; k < 3; k++)
        for (int64_t i = 0; i < c; i++)
            check_value(cs, per[k], i, got[k][i],
                        json_real_value(json_array_get(need(cs, fx, per[k]), (size_t)i)));
    int64_t total = 0;
    for (int64_t i = 0; i < c; i++) {
        int64_t s = json_integer_value(json_array_get(need(cs, fx, "support"), (size_t)i));
        CHECK_MSG(m->support[i] == s, "%s: support[%lld]", cs, (long long)i);
        total += s;
    }
    CHECK(m->support_total == total);
    check_value(cs, "accuracy", 0, m->accuracy, json_real_value(need(cs, fx, "accuracy")));
    json_t *avgs = need(cs, fx, "averages");
    const char *avg_names[4] = {"micro", "macro", "weighted", "samples"};
    const qkv_cls_average *mine[4] = {&m->micro, &m->macro, &m->weighted, &m->samples};
    for (int k = 0; k < (multi ? 4 : 3); k++) {
        json_t *a = need(cs, avgs, avg_names[k]);
        check_value(cs, avg_names[k], 0, mine[k]->precision, json_real_value(json_array_get(a, 0)));
        check_value(cs, avg_names[k], 1, mine[k]->recall, json_real_value(json_array_get(a, 1)));
        check_value(cs, avg_names[k], 2, mine[k]->f1, json_real_value(json_array_get(a, 2)));
    }
    /* confusion: [C][C] or [C][2][2] */
    json_t *cm = need(cs, fx, "confusion");
    int64_t bad = 0;
    for (int64_t i = 0; i < c; i++)
        for (int64_t k = 0; k < (multi ? 4 : c); k++) {
            json_t *row = json_array_get(cm, (size_t)i);
            json_t *v = multi
                            ? json_array_get(json_array_get(row, (size_t)(k / 2)), (size_t)(k % 2))
                            : json_array_get(row, (size_t)k);
            bad += json_integer_value(v) != m->confusion[i * (multi ? 4 : c) + k];
        }
    CHECK_MSG(bad == 0, "%s: %lld confusion cells differ from sklearn's", cs, (long long)bad);

    char *text = NULL;
    CHECK_OK(qkv_cls_report(m, names, digits, &text));
    const char *want = json_string_value(need(cs, fx, "report"));
    int same = text && strcmp(text, want) == 0;
    CHECK_MSG(same, "%s: report text differs from sklearn's", cs);
    if (text && !same) show_diff(cs, text, want);
    qkv_free(text);

    char *js = NULL;
    CHECK_OK(qkv_cls_report_json(m, names, &js));
    if (js) check_json(cs, m, names, js);
    qkv_free(js);

    char *ct = NULL;
    CHECK_OK(qkv_cls_confusion_text(m, names, &ct));
    if (ct) check_confusion_text(cs, m, ct);
    qkv_free(ct);

    qkv_cls_metrics_free(m);
    free(names);
    json_decref(fx);
}

/* numpy's pairwise order: numpy_sum.json holds arrays of mixed magnitudes (where the order
 * of the additions shows) and np.sum of each; the sums must be bit-identical. */
static void test_np_sum(void) {
    json_error_t err;
    json_t *fx = json_load_file(FIXDIR "/numpy_sum.json", 0, &err);
    if (!fx) {
        fprintf(stderr, "cannot read numpy_sum.json: %s\n", err.text);
        exit(1);
    }
    json_t *arrays = json_object_get(fx, "arrays"), *sums = json_object_get(fx, "sums");
    size_t n_arrays = json_array_size(arrays), differ_seq = 0;
    CHECK(n_arrays > 20 && json_array_size(sums) == n_arrays);
    for (size_t k = 0; k < n_arrays; k++) {
        json_t *a = json_array_get(arrays, k);
        int64_t n = (int64_t)json_array_size(a);
        double *v = malloc((size_t)(n + 1) * sizeof *v), seq = 0;
        for (int64_t i = 0; i < n; i++) {
            v[i] = json_real_value(json_array_get(a, (size_t)i));
            seq += v[i];
        }
        double want = json_real_value(json_array_get(sums, k)), got = qkv__np_sum(v, n);
        CHECK_MSG(got == want, "np.sum of %lld values: %.17g, numpy %.17g", (long long)n, got,
                  want);
        differ_seq += seq != want;
        free(v);
    }
    CHECK(differ_seq > 0); /* the data tells the orders apart */
    printf("np.sum: %zu arrays bit-identical (a left-to-right sum differs on %zu)\n", n_arrays,
           differ_seq);
    json_decref(fx);
    CHECK_EQ_INT(qkv__utf8_codepoints("a\xc3\xa9\xe6\x97\xa5\xf0\x9f\x99\x82"), 4);
}

static void test_bad_args(void) {
    qkv_cls_metrics *m = (qkv_cls_metrics *)1;
    int32_t t[4] = {0, 1, 2, 1}, p[4] = {0, 2, 2, 1};
    CHECK_STATUS(qkv_cls_metrics_compute(t, p, 4, 2, &m), QKV_ERR_INVALID_ARG);
    CHECK(m == NULL && strstr(qkv_last_error(), "y_pred[1] = 2 is not in [0, 2)"));
    CHECK_STATUS(qkv_cls_metrics_compute(p, t, 4, 2, &m), QKV_ERR_INVALID_ARG);
    CHECK(strstr(qkv_last_error(), "y_true[1] = 2") != NULL);
    int32_t neg[4] = {0, -1, 0, 0};
    CHECK_STATUS(qkv_cls_metrics_compute(t, neg, 4, 3, &m), QKV_ERR_INVALID_ARG);
    CHECK(strstr(qkv_last_error(), "y_pred[1] = -1") != NULL);
    CHECK_STATUS(qkv_cls_metrics_compute(t, p, 4, 0, &m), QKV_ERR_INVALID_ARG);
    CHECK(strstr(qkv_last_error(), "n_labels = 0") != NULL);
    CHECK_STATUS(qkv_cls_metrics_compute(t, p, 4, ((int64_t)1 << 20) + 1, &m), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_cls_metrics_compute(t, p, 0, 3, &m), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_cls_metrics_compute(NULL, p, 4, 3, &m), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_cls_metrics_compute(t, NULL, 4, 3, &m), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_cls_metrics_compute(t, p, 4, 3, NULL), QKV_ERR_INVALID_ARG);
    uint8_t mt[6] = {0, 1, 1, 0, 1, 1}, mp[6] = {0, 1, 2, 0, 0, 1};
    CHECK_STATUS(qkv_cls_metrics_compute_multilabel(mt, mp, 2, 3, &m), QKV_ERR_INVALID_ARG);
    CHECK(strstr(qkv_last_error(), "y_pred[0][2] = 2") != NULL);
    CHECK_STATUS(qkv_cls_metrics_compute_multilabel(mt, NULL, 2, 3, &m), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_cls_metrics_compute_multilabel(mt, mt, 2, 0, &m), QKV_ERR_INVALID_ARG);

    CHECK_OK(qkv_cls_metrics_compute(t, p, 4, 3, &m));
    char *s = (char *)1;
    const char *bad_utf8[3] = {"a", "b\xff", "c"}, *null_name[3] = {"a", NULL, "c"};
    CHECK_STATUS(qkv_cls_report(m, bad_utf8, 2, &s), QKV_ERR_INVALID_ARG);
    CHECK(s == NULL && strstr(qkv_last_error(), "names[1] is not valid UTF-8"));
    CHECK_STATUS(qkv_cls_report_json(m, null_name, &s), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_cls_confusion_text(m, bad_utf8, &s), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_cls_report(m, NULL, -1, &s), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_cls_report(m, NULL, 61, &s), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_cls_report(NULL, NULL, 2, &s), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_cls_report(m, NULL, 2, NULL), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_cls_report_json(NULL, NULL, &s), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_cls_confusion_text(m, NULL, NULL), QKV_ERR_INVALID_ARG);
    CHECK_OK(qkv_cls_report(m, NULL, 60, &s)); /* the widest digits allowed */
    qkv_free(s);
    qkv_cls_metrics_free(m);
    qkv_cls_metrics_free(NULL);
}

/* ---------------------------------------------------------------- allocation failure */

static long fail_at, n_allocs, n_live;
static void *counting_alloc(size_t size, size_t align, void *user) {
    (void)user;
    if (n_allocs++ == fail_at) return NULL;
    n_live++;
    return aligned_alloc(align, (size + align - 1) / align * align);
}
static void counting_free(void *p, void *user) {
    (void)user;
    n_live--;
    free(p);
}

/* Fails allocation 0, 1, 2, ... of the whole pipeline until it succeeds: each failure is
 * NOMEM and leaves nothing allocated. */
static void test_nomem(void) {
    enum { N = 300, C = 5 };
    int32_t t[N], p[N];
    uint8_t mt[N * C], mp[N * C];
    for (int i = 0; i < N; i++) {
        t[i] = (i * 7) % C;
        p[i] = (i * 11) % C;
    }
    for (int i = 0; i < N * C; i++) {
        mt[i] = (uint8_t)((i * 13) % 3 == 0);
        mp[i] = (uint8_t)((i * 5) % 4 == 0);
    }
    const char *names[C] = {"a", "bb", "<c>", "d\xc3\xa9", "e"};
    qkv_allocator a = {counting_alloc, counting_free, NULL};
    for (int multi = 0; multi < 2; multi++) {
        int done = 0;
        for (fail_at = 0; !done && fail_at < 10000; fail_at++) {
            n_allocs = n_live = 0;
            qkv_set_allocator(&a);
            qkv_cls_metrics *m = NULL;
            char *r = NULL, *j = NULL, *ct = NULL;
            qkv_status s = multi ? qkv_cls_metrics_compute_multilabel(mt, mp, N, C, &m)
                                 : qkv_cls_metrics_compute(t, p, N, C, &m);
            if (s == QKV_OK) s = qkv_cls_report(m, names, 2, &r);
            if (s == QKV_OK) s = qkv_cls_report_json(m, names, &j);
            if (s == QKV_OK) s = qkv_cls_confusion_text(m, names, &ct);
            done = s == QKV_OK;
            CHECK_MSG(done || s == QKV_ERR_NOMEM, "allocation %ld failed: status %d (%s)", fail_at,
                      (int)s, qkv_last_error());
            qkv_free(r);
            qkv_free(j);
            qkv_free(ct);
            qkv_cls_metrics_free(m);
            qkv_set_allocator(NULL);
            CHECK_MSG(n_live == 0, "allocation %ld failed: %ld blocks leaked", fail_at, n_live);
        }
        CHECK_MSG(done, "never succeeded");
        printf("%s: every one of %ld allocations failed in turn\n",
               multi ? "multi-label" : "single-label", fail_at - 1);
    }
}

int main(void) {
    DIR *d = opendir(FIXDIR);
    if (!d) {
        fprintf(stderr, "cannot open %s\n", FIXDIR);
        return 1;
    }
    struct dirent *e;
    int cases = 0;
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l < 6 || strcmp(e->d_name + l - 5, ".json") != 0) continue;
        if (strcmp(e->d_name, "numpy_sum.json") == 0) continue; /* test_np_sum's */
        run_case(e->d_name);
        cases++;
    }
    closedir(d);
    CHECK_MSG(cases >= 15, "only %d fixture cases", cases);
    printf("%d sklearn cases: %ld values, %ld bit-exact, largest difference %.3g\n", cases,
           n_values, n_exact, max_diff);
    test_np_sum();
    test_bad_args();
    test_nomem();
    return test_finish("cls_metrics");
}
