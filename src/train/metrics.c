/* metrics.c — classification metrics as scikit-learn computes and prints them (qkv.h).
 *
 * Everything is counted in integers first (confusion matrix or per-class tp / fp / fn / tn,
 * per-sample counts for multi-label), then each ratio is one correctly rounded division of
 * two exact integers, as sklearn's _prf_divide does, and each average sums in numpy's order
 * (qkv__np_sum), so every number has sklearn's bits. The report prints with printf's "%.*f",
 * which, like Python's format, rounds the exact binary value half to even. One struct block
 * holds every array, so qkv_cls_metrics_free is one call. */
#include "train/metrics.h"

#include "core/alloc.h"
#include "core/error.h"
#include "io/json.h"
#include "models/labels.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define MAX_DIGITS 60

double qkv__np_sum(const double *a, int64_t n) {
    if (n < 8) {
        double r = 0.;
        for (int64_t i = 0; i < n; i++) r += a[i];
        return r;
    }
    if (n <= 128) {
        double r[8];
        for (int j = 0; j < 8; j++) r[j] = a[j];
        int64_t i = 8;
        for (; i < n - (n % 8); i += 8)
            for (int j = 0; j < 8; j++) r[j] += a[i + j];
        double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++) res += a[i];
        return res;
    }
    int64_t n2 = n / 2;
    n2 -= n2 % 8;
    return qkv__np_sum(a, n2) + qkv__np_sum(a + n2, n - n2);
}

int64_t qkv__utf8_codepoints(const char *s) {
    int64_t n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* ------------------------------------------------------------------ computing */

static double ratio(int64_t num, int64_t den) { return den ? (double)num / (double)den : 0.0; }

/* np.mean: the pairwise sum over n. */
static double np_mean(const double *a, int64_t n) { return qkv__np_sum(a, n) / (double)n; }

/* np.average(a, weights=w): sum(a*w) / sum(w), both pairwise; sklearn falls back to the plain
 * mean when the weights sum to 0. tmp has room for 2n values. */
static double np_weighted(const double *a, const int64_t *w, int64_t n, double *tmp) {
    double *prod = tmp, *wd = tmp + n;
    for (int64_t i = 0; i < n; i++) {
        wd[i] = (double)w[i];
        prod[i] = a[i] * wd[i];
    }
    double scale = qkv__np_sum(wd, n);
    return scale == 0.0 ? np_mean(a, n) : qkv__np_sum(prod, n) / scale;
}

/* The one allocation behind a qkv_cls_metrics: the struct, then the arrays. */
typedef struct metrics_block {
    qkv_cls_metrics m;
    double *p, *r, *f;
    int64_t *tp, *support, *predicted, *confusion;
} metrics_block;

static qkv_status check_args(const char *fn, const void *yt, const void *yp, int64_t n, int64_t c,
                             qkv_cls_metrics **out) {
    if (out) *out = NULL;
    if (!yt || !yp || !out) return qkv__fail(QKV_ERR_INVALID_ARG, "%s: NULL argument", fn);
    if (n < 1) return qkv__fail(QKV_ERR_INVALID_ARG, "%s: n = %lld samples", fn, (long long)n);
    if (c < 1 || c > QKV__MAX_LABELS)
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: n_labels = %lld is not in [1, %lld]", fn,
                         (long long)c, (long long)QKV__MAX_LABELS);
    return QKV_OK;
}

/* Allocates the zeroed block: 5C doubles (p, r, f and 2C of averaging scratch), 3C counts
 * (tp, support, predicted) and n_conf confusion counts. */
static qkv_status block_new(const char *fn, int64_t n, int64_t c, size_t n_conf,
                            metrics_block **out) {
    size_t cc = (size_t)c, bytes = sizeof(metrics_block), arr;
    if (qkv__mul_overflow(cc, 8, &arr) || qkv__add_overflow(arr, n_conf, &arr) ||
        qkv__mul_overflow(arr, 8, &arr) || qkv__add_overflow(bytes, arr, &bytes))
        return qkv__fail(QKV_ERR_OVERFLOW, "%s: %lld labels are too many", fn, (long long)c);
    metrics_block *b = qkv__alloc(bytes);
    if (!b)
        return qkv__fail(QKV_ERR_NOMEM, "%s: %zu bytes for %lld labels", fn, bytes, (long long)c);
    memset(b, 0, bytes);
    unsigned char *base = (unsigned char *)(b + 1); /* 8-byte aligned: sizeof is */
    double *d = (void *)base;
    b->p = d;
    b->r = d + cc;
    b->f = d + 2 * cc;
    int64_t *k = (void *)(base + 5 * cc * sizeof(double));
    b->tp = k;
    b->support = k + cc;
    b->predicted = k + 2 * cc;
    b->confusion = k + 3 * cc;
    b->m.n_labels = c;
    b->m.n_samples = n;
    *out = b;
    return QKV_OK;
}

/* The per-class ratios and the micro / macro / weighted averages from tp, support and
 * predicted; publishes the arrays in b->m. */
static void finish(metrics_block *b) {
    int64_t c = b->m.n_labels;
    int64_t tp = 0, tr = 0, pr = 0;
    for (int64_t i = 0; i < c; i++) {
        b->p[i] = ratio(b->tp[i], b->predicted[i]);
        b->r[i] = ratio(b->tp[i], b->support[i]);
        b->f[i] = ratio(2 * b->tp[i], b->support[i] + b->predicted[i]);
        tp += b->tp[i];
        tr += b->support[i];
        pr += b->predicted[i];
    }
    b->m.micro = (qkv_cls_average){ratio(tp, pr), ratio(tp, tr), ratio(2 * tp, tr + pr)};
    b->m.macro = (qkv_cls_average){np_mean(b->p, c), np_mean(b->r, c), np_mean(b->f, c)};
    double *tmp = b->f + c;
    b->m.weighted = (qkv_cls_average){np_weighted(b->p, b->support, c, tmp),
                                      np_weighted(b->r, b->support, c, tmp),
                                      np_weighted(b->f, b->support, c, tmp)};
    b->m.support_total = tr;
    b->m.precision = b->p;
    b->m.recall = b->r;
    b->m.f1 = b->f;
    b->m.support = b->support;
    b->m.predicted = b->predicted;
    b->m.confusion = b->confusion;
}

qkv_status qkv_cls_metrics_compute(const int32_t *y_true, const int32_t *y_pred, int64_t n,
                                   int64_t n_labels, qkv_cls_metrics **out) {
    static const char fn[] = "qkv_cls_metrics_compute";
    QKV_TRY(check_args(fn, y_true, y_pred, n, n_labels, out));
    for (int64_t i = 0; i < n; i++) {
        if (y_true[i] < 0 || y_true[i] >= n_labels)
            return qkv__fail(QKV_ERR_INVALID_ARG, "%s: y_true[%lld] = %d is not in [0, %lld)", fn,
                             (long long)i, y_true[i], (long long)n_labels);
        if (y_pred[i] < 0 || y_pred[i] >= n_labels)
            return qkv__fail(QKV_ERR_INVALID_ARG, "%s: y_pred[%lld] = %d is not in [0, %lld)", fn,
                             (long long)i, y_pred[i], (long long)n_labels);
    }
    size_t cc;
    if (qkv__mul_overflow((size_t)n_labels, (size_t)n_labels, &cc))
        return qkv__fail(QKV_ERR_OVERFLOW, "%s: %lld labels are too many", fn, (long long)n_labels);
    metrics_block *b = NULL;
    QKV_TRY(block_new(fn, n, n_labels, cc, &b));
    int64_t correct = 0;
    for (int64_t i = 0; i < n; i++) {
        int32_t t = y_true[i], p = y_pred[i];
        b->confusion[(int64_t)t * n_labels + p]++;
        b->support[t]++;
        b->predicted[p]++;
        if (t == p) {
            b->tp[t]++;
            correct++;
        }
    }
    finish(b);
    b->m.accuracy = ratio(correct, n);
    *out = &b->m;
    return QKV_OK;
}

qkv_status qkv_cls_metrics_compute_multilabel(const uint8_t *y_true, const uint8_t *y_pred,
                                              int64_t n, int64_t n_labels, qkv_cls_metrics **out) {
    static const char fn[] = "qkv_cls_metrics_compute_multilabel";
    QKV_TRY(check_args(fn, y_true, y_pred, n, n_labels, out));
    size_t cells, conf;
    if (qkv__mul_overflow((size_t)n, (size_t)n_labels, &cells) ||
        qkv__mul_overflow((size_t)n_labels, 4, &conf))
        return qkv__fail(QKV_ERR_OVERFLOW, "%s: %lld x %lld is too large", fn, (long long)n,
                         (long long)n_labels);
    for (size_t i = 0; i < cells; i++)
        if (y_true[i] > 1 || y_pred[i] > 1)
            return qkv__fail(
                QKV_ERR_INVALID_ARG, "%s: %s[%lld][%lld] = %d is not 0 or 1 (indicator matrix)", fn,
                y_true[i] > 1 ? "y_true" : "y_pred", (long long)(i / (size_t)n_labels),
                (long long)(i % (size_t)n_labels), y_true[i] > 1 ? y_true[i] : y_pred[i]);
    size_t sbytes;
    if (qkv__mul_overflow((size_t)n, 3 * sizeof(double), &sbytes))
        return qkv__fail(QKV_ERR_OVERFLOW, "%s: %lld samples are too many", fn, (long long)n);
    double *sp = qkv__alloc(sbytes); /* per-sample precision, recall, f1 [3, N] */
    if (!sp)
        return qkv__fail(QKV_ERR_NOMEM, "%s: %zu bytes for %lld samples", fn, sbytes, (long long)n);
    metrics_block *b = NULL;
    qkv_status st = block_new(fn, n, n_labels, conf, &b);
    if (st != QKV_OK) {
        qkv__free(sp);
        return st;
    }
    int64_t exact = 0;
    for (int64_t i = 0; i < n; i++) {
        const uint8_t *t = y_true + i * n_labels, *p = y_pred + i * n_labels;
        int64_t tp = 0, tr = 0, pr = 0;
        for (int64_t j = 0; j < n_labels; j++) {
            b->confusion[4 * j + 2 * t[j] + p[j]]++; /* [[tn, fp], [fn, tp]] */
            tp += t[j] & p[j];
            tr += t[j];
            pr += p[j];
        }
        exact += tp == tr && tp == pr;
        sp[i] = ratio(tp, pr);
        sp[n + i] = ratio(tp, tr);
        sp[2 * n + i] = ratio(2 * tp, tr + pr);
    }
    for (int64_t j = 0; j < n_labels; j++) {
        const int64_t *k = b->confusion + 4 * j;
        b->tp[j] = k[3];
        b->support[j] = k[2] + k[3];
        b->predicted[j] = k[1] + k[3];
    }
    finish(b);
    b->m.multilabel = 1;
    b->m.accuracy = ratio(exact, n);
    b->m.samples = (qkv_cls_average){np_mean(sp, n), np_mean(sp + n, n), np_mean(sp + 2 * n, n)};
    qkv__free(sp);
    *out = &b->m;
    return QKV_OK;
}

void qkv_cls_metrics_free(qkv_cls_metrics *m) { qkv__free(m); /* the block starts with m */ }

/* ------------------------------------------------------------------ text */

/* A growing NUL-terminated string; the first failure sticks (NOMEM recorded once). */
typedef struct sbuf {
    char *s;
    size_t len, cap;
    int failed;
} sbuf;

static int sb_reserve(sbuf *b, size_t more) {
    if (b->failed) return 0;
    if (b->len + more + 1 <= b->cap) return 1;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + more + 1) {
        if (cap > SIZE_MAX / 2) {
            b->failed = 1;
            return 0;
        }
        cap *= 2;
    }
    char *s = qkv__alloc(cap);
    if (!s) {
        b->failed = 1;
        return 0;
    }
    if (b->s) memcpy(s, b->s, b->len + 1);
    qkv__free(b->s);
    b->s = s;
    b->cap = cap;
    return 1;
}

static void sb_puts(sbuf *b, const char *s) {
    size_t n = strlen(s);
    if (!sb_reserve(b, n)) return;
    memcpy(b->s + b->len, s, n + 1);
    b->len += n;
}

static void sb_spaces(sbuf *b, int64_t n) {
    if (n <= 0 || !sb_reserve(b, (size_t)n)) return;
    memset(b->s + b->len, ' ', (size_t)n);
    b->len += (size_t)n;
    b->s[b->len] = 0;
}

static void sb_printf(sbuf *b, const char *fmt, ...) QKV_PRINTF(2, 3);
static void sb_printf(sbuf *b, const char *fmt, ...) {
    char small[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = 1;
        return;
    }
    if ((size_t)n < sizeof small) {
        sb_puts(b, small);
        return;
    }
    if (!sb_reserve(b, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* Python's "{:>{width}s}": s right-aligned in width code points. */
static void sb_right(sbuf *b, const char *s, int64_t width) {
    sb_spaces(b, width - qkv__utf8_codepoints(s));
    sb_puts(b, s);
}

static qkv_status sb_finish(sbuf *b, const char *fn, char **out) {
    if (b->failed) {
        qkv__free(b->s);
        return qkv__fail(QKV_ERR_NOMEM, "%s: out of memory for the text", fn);
    }
    *out = b->s;
    return QKV_OK;
}

/* The display name of label i: names[i], or its number when names is NULL (sklearn's
 * "%s" % label). */
typedef struct label_names {
    const char *const *names;
    char num[24];
} label_names;

static const char *label_name(label_names *ln, int64_t i) {
    if (ln->names) return ln->names[i];
    snprintf(ln->num, sizeof ln->num, "%lld", (long long)i);
    return ln->num;
}

static qkv_status check_text_args(const char *fn, const qkv_cls_metrics *m,
                                  const char *const *names, const void *out) {
    if (!m || !out) return qkv__fail(QKV_ERR_INVALID_ARG, "%s: NULL argument", fn);
    if (names)
        for (int64_t i = 0; i < m->n_labels; i++) {
            size_t bad;
            if (!names[i])
                return qkv__fail(QKV_ERR_INVALID_ARG, "%s: names[%lld] is NULL", fn, (long long)i);
            if (!qkv__utf8_valid(names[i], strlen(names[i]), &bad))
                return qkv__fail(QKV_ERR_INVALID_ARG,
                                 "%s: names[%lld] is not valid UTF-8 (byte %zu)", fn, (long long)i,
                                 bad);
        }
    return QKV_OK;
}

/* sklearn's " {:>9}" of a support. When no sample is predicted right, sklearn's
 * multilabel_confusion_matrix counts in float64 (its "pathological case"), so a single-label
 * report then prints supports as Python floats: "13.0" (integers below 1e16 print so). */
static void report_support(sbuf *b, int64_t support, int as_float) {
    char num[32];
    snprintf(num, sizeof num, as_float ? "%lld.0" : "%lld", (long long)support);
    sb_printf(b, " %9s\n", num);
}

/* sklearn's row_fmt: "{:>{width}s} " + " {:>9.{digits}f}" * 3 + " {:>9}\n". */
static void report_row(sbuf *b, const char *name, int64_t width, int digits, double p, double r,
                       double f, int64_t support, int float_support) {
    sb_right(b, name, width);
    sb_printf(b, "  %9.*f %9.*f %9.*f", digits, p, digits, r, digits, f);
    report_support(b, support, float_support);
}

qkv_status qkv_cls_report(const qkv_cls_metrics *m, const char *const *names, int digits,
                          char **text) {
    static const char fn[] = "qkv_cls_report";
    if (text) *text = NULL;
    QKV_TRY(check_text_args(fn, m, names, text));
    if (digits < 0 || digits > MAX_DIGITS)
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: digits = %d is not in [0, %d]", fn, digits,
                         MAX_DIGITS);
    label_names ln = {names, {0}};
    int64_t c = m->n_labels, width = (int64_t)strlen("weighted avg");
    for (int64_t i = 0; i < c; i++) {
        int64_t w = qkv__utf8_codepoints(label_name(&ln, i));
        width = w > width ? w : width;
    }
    width = digits > width ? digits : width;

    int fs = !m->multilabel && m->micro.f1 == 0.0; /* nothing right: float supports */
    sbuf b = {0};
    sb_spaces(&b, width + 1);
    sb_puts(&b, " precision    recall  f1-score   support\n\n");
    for (int64_t i = 0; i < c; i++)
        report_row(&b, label_name(&ln, i), width, digits, m->precision[i], m->recall[i], m->f1[i],
                   m->support[i], fs);
    sb_puts(&b, "\n");
    int64_t s = m->support_total;
    if (m->multilabel) {
        report_row(&b, "micro avg", width, digits, m->micro.precision, m->micro.recall, m->micro.f1,
                   s, fs);
    } else { /* sklearn prints the micro F1 here, which equals the accuracy */
        sb_right(&b, "accuracy", width);
        sb_spaces(&b, 21);
        sb_printf(&b, " %9.*f", digits, m->micro.f1);
        report_support(&b, s, fs);
    }
    report_row(&b, "macro avg", width, digits, m->macro.precision, m->macro.recall, m->macro.f1, s,
               fs);
    report_row(&b, "weighted avg", width, digits, m->weighted.precision, m->weighted.recall,
               m->weighted.f1, s, fs);
    if (m->multilabel)
        report_row(&b, "samples avg", width, digits, m->samples.precision, m->samples.recall,
                   m->samples.f1, s, fs);
    return sb_finish(&b, fn, text);
}

qkv_status qkv_cls_confusion_text(const qkv_cls_metrics *m, const char *const *names, char **text) {
    static const char fn[] = "qkv_cls_confusion_text";
    if (text) *text = NULL;
    QKV_TRY(check_text_args(fn, m, names, text));
    label_names ln = {names, {0}};
    int64_t c = m->n_labels;
    int64_t ncol = m->multilabel ? 4 : c;
    static const char *const ml_cols[4] = {"tn", "fp", "fn", "tp"};
    static const char corner[] = "true \\ pred";
    int64_t w0 = m->multilabel ? (int64_t)strlen("label") : (int64_t)strlen(corner);
    for (int64_t i = 0; i < c; i++) {
        int64_t w = qkv__utf8_codepoints(label_name(&ln, i));
        w0 = w > w0 ? w : w0;
    }
    sbuf b = {0};
    /* column j is as wide as its header or its largest count */
    int64_t *cw = qkv__alloc((size_t)ncol * sizeof *cw);
    if (!cw) return qkv__fail(QKV_ERR_NOMEM, "%s: out of memory", fn);
    for (int64_t j = 0; j < ncol; j++) {
        cw[j] = qkv__utf8_codepoints(m->multilabel ? ml_cols[j] : label_name(&ln, j));
        for (int64_t i = 0; i < c; i++) {
            char num[24];
            int w = snprintf(num, sizeof num, "%lld", (long long)m->confusion[i * ncol + j]);
            cw[j] = w > cw[j] ? w : cw[j];
        }
    }
    /* left-aligned row names, right-aligned columns two spaces apart */
    const char *head = m->multilabel ? "label" : corner;
    sb_puts(&b, head);
    sb_spaces(&b, w0 - qkv__utf8_codepoints(head));
    for (int64_t j = 0; j < ncol; j++) {
        sb_spaces(&b, 2);
        sb_right(&b, m->multilabel ? ml_cols[j] : label_name(&ln, j), cw[j]);
    }
    sb_puts(&b, "\n");
    for (int64_t i = 0; i < c; i++) {
        const char *name = label_name(&ln, i);
        sb_puts(&b, name);
        sb_spaces(&b, w0 - qkv__utf8_codepoints(name));
        for (int64_t j = 0; j < ncol; j++)
            sb_printf(&b, "  %*lld", (int)cw[j], (long long)m->confusion[i * ncol + j]);
        sb_puts(&b, "\n");
    }
    qkv__free(cw);
    return sb_finish(&b, fn, text);
}

/* ------------------------------------------------------------------ JSON */

static json_t *avg_json(qkv_cls_average a, int64_t support) {
    return json_pack("{s:f,s:f,s:f,s:I}", "precision", a.precision, "recall", a.recall, "f1-score",
                     a.f1, "support", (json_int_t)support);
}

/* The report object, or NULL when jansson ran out of memory. Each container is handed to
 * its parent as soon as it is made (the *_new calls take their value even when they fail),
 * so freeing root frees everything. */
static json_t *build_json(const qkv_cls_metrics *m, const char *const *names) {
    label_names ln = {names, {0}};
    int64_t c = m->n_labels, s = m->support_total;
    json_t *root = json_pack("{s:I,s:I,s:b,s:f}", "n_samples", (json_int_t)m->n_samples, "n_labels",
                             (json_int_t)c, "multilabel", m->multilabel, "accuracy", m->accuracy);
    if (!root) return NULL;
    json_t *classes = json_array(), *conf = NULL;
    int bad = json_object_set_new(root, "classes", classes) != 0;
    for (int64_t i = 0; !bad && i < c; i++)
        bad =
            json_array_append_new(
                classes, json_pack("{s:s,s:f,s:f,s:f,s:I}", "name", label_name(&ln, i), "precision",
                                   m->precision[i], "recall", m->recall[i], "f1-score", m->f1[i],
                                   "support", (json_int_t)m->support[i])) != 0;
    bad = bad || json_object_set_new(root, "micro avg", avg_json(m->micro, s)) != 0 ||
          json_object_set_new(root, "macro avg", avg_json(m->macro, s)) != 0 ||
          json_object_set_new(root, "weighted avg", avg_json(m->weighted, s)) != 0 ||
          (m->multilabel && json_object_set_new(root, "samples avg", avg_json(m->samples, s)) != 0);
    bad = bad || json_object_set_new(
                     root, m->multilabel ? "multilabel_confusion_matrix" : "confusion_matrix",
                     conf = json_array()) != 0;
    for (int64_t i = 0; !bad && i < c; i++) {
        const int64_t *k = m->confusion + (m->multilabel ? 4 * i : i * c);
        json_t *row = m->multilabel ? json_pack("[[I,I],[I,I]]", (json_int_t)k[0], (json_int_t)k[1],
                                                (json_int_t)k[2], (json_int_t)k[3])
                                    : json_array();
        bad = json_array_append_new(conf, row) != 0;
        for (int64_t j = 0; !bad && !m->multilabel && j < c; j++)
            bad = json_array_append_new(row, json_integer((json_int_t)k[j])) != 0;
    }
    if (!bad) return root;
    json_decref(root);
    return NULL;
}

qkv_status qkv_cls_report_json(const qkv_cls_metrics *m, const char *const *names, char **json) {
    static const char fn[] = "qkv_cls_report_json";
    if (json) *json = NULL;
    QKV_TRY(check_text_args(fn, m, names, json));
    qkv__json_begin();
    json_t *root = build_json(m, names);
    const size_t flags = JSON_PRESERVE_ORDER | JSON_COMPACT | JSON_REAL_PRECISION(17);
    size_t len = root && !qkv__json_alloc_failed() ? json_dumpb(root, NULL, 0, flags) : 0;
    char *s = len ? qkv__alloc(len + 1) : NULL;
    if (s && json_dumpb(root, s, len, flags) == len)
        s[len] = 0;
    else {
        qkv__free(s);
        s = NULL;
    }
    int failed = qkv__json_alloc_failed();
    json_decref(root);
    qkv__json_end();
    if (!s || failed) {
        qkv__free(s);
        return qkv__fail(QKV_ERR_NOMEM, "%s: out of memory for the JSON", fn);
    }
    *json = s;
    return QKV_OK;
}
