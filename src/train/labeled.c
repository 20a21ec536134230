/* labeled.c — the qkv_labeled object (qkv.h, "labelled text for classification"): examples,
 * label names and their order, mapping to a given list of names, the stratified split, and
 * the accessors. The file formats are read by labeled_read.c through qkv__lab_add/_label/_value.
 *
 * Labels are interned while loading (a hash map from name to an id in order of first
 * appearance) and renumbered once at the end into the documented order, so loading is linear
 * in the input whatever the number of classes. */
#include "train/labeled.h"

#include "core/alloc.h"
#include "core/error.h"
#include "core/rng.h"
#include "io/json.h"
#include "models/labels.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The split's draw: this stream under the caller's seed (fixed: splits depend on it). */
#define SPLIT_STREAM 0x6c61626cu

#define EX(d) ((qkv__lab_example *)(void *)(d)->ex.p)
#define LABS(d) ((int32_t *)(void *)(d)->labs.p)
#define NAME_OFF(d) ((const size_t *)(const void *)(d)->name_off.p)

/* ---------------------------------------------------------------- buffers */

qkv_status qkv__buf_reserve(qkv__buf *b, size_t extra) {
    size_t need;
    if (qkv__add_overflow(b->len, extra, &need))
        return qkv__fail(QKV_ERR_OVERFLOW, "labeled data: a buffer past SIZE_MAX bytes");
    if (need <= b->cap) return QKV_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *p = qkv__alloc(cap);
    if (!p) return qkv__fail(QKV_ERR_NOMEM, "labeled data: a buffer of %zu bytes", cap);
    if (b->len) memcpy(p, b->p, b->len);
    qkv__free(b->p);
    b->p = p;
    b->cap = cap;
    return QKV_OK;
}

qkv_status qkv__buf_put(qkv__buf *b, const void *src, size_t n) {
    QKV_TRY(qkv__buf_reserve(b, n));
    if (n) memcpy(b->p + b->len, src, n);
    b->len += n;
    return QKV_OK;
}

void qkv__buf_free(qkv__buf *b) {
    qkv__free(b->p);
    memset(b, 0, sizeof *b);
}

/* bytes followed by a NUL; *off gets where they start */
static qkv_status put_str(qkv__buf *b, const char *s, size_t n, size_t *off) {
    QKV_TRY(qkv__buf_reserve(b, n + 1));
    *off = b->len;
    if (n) memcpy(b->p + b->len, s, n);
    b->p[b->len + n] = '\0';
    b->len += n + 1;
    return QKV_OK;
}

/* ---------------------------------------------------------------- loading */

qkv_status qkv__lab_new(qkv_problem_type problem, qkv_labeled **out) {
    *out = NULL;
    qkv_labeled *d = qkv__calloc(1, sizeof *d);
    if (!d) return qkv__fail(QKV_ERR_NOMEM, "labeled data: the handle");
    d->problem = problem;
    qkv__strmap_init(&d->intern);
    *out = d;
    return QKV_OK;
}

void qkv_labeled_free(qkv_labeled *d) {
    if (!d) return;
    qkv__buf_free(&d->ex);
    qkv__buf_free(&d->text);
    qkv__buf_free(&d->paths);
    qkv__buf_free(&d->labs);
    qkv__buf_free(&d->names);
    qkv__buf_free(&d->name_off);
    qkv__buf_free(&d->seen);
    qkv__strmap_free(&d->intern);
    qkv__free(d);
}

qkv_status qkv__lab_source(qkv_labeled *d, const char *path) {
    return put_str(&d->paths, path, strlen(path), &d->cur_src);
}

static qkv_status vfail_at(const char *src, int64_t line, const char *fmt, va_list ap) {
    char msg[768];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (line > 0) return qkv__fail(QKV_ERR_FORMAT, "%s:%lld: %s", src, (long long)line, msg);
    return qkv__fail(QKV_ERR_FORMAT, "%s: %s", src, msg);
}

static qkv_status fail_at(const char *src, int64_t line, const char *fmt, ...) QKV_PRINTF(3, 4);
static qkv_status fail_at(const char *src, int64_t line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    qkv_status s = vfail_at(src, line, fmt, ap);
    va_end(ap);
    return s;
}

qkv_status qkv__lab_fail(const qkv_labeled *d, int64_t line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    qkv_status s = vfail_at(d->paths.p ? d->paths.p + d->cur_src : "?", line, fmt, ap);
    va_end(ap);
    return s;
}

/* Non-empty (if required) UTF-8 without NUL bytes; `what` names the field in messages. */
static qkv_status check_utf8(const qkv_labeled *d, int64_t line, const char *what, const char *s,
                             size_t n) {
    if (n == 0) return qkv__lab_fail(d, line, "empty %s", what);
    const char *z = memchr(s, '\0', n);
    if (z) return qkv__lab_fail(d, line, "bad encoding: a NUL byte in the %s", what);
    size_t bad;
    if (!qkv__utf8_valid(s, n, &bad))
        return qkv__lab_fail(d, line, "bad encoding: invalid UTF-8 at byte %zu of the %s", bad,
                             what);
    return QKV_OK;
}

qkv_status qkv__lab_add(qkv_labeled *d, int64_t line, const char *text, size_t text_len,
                        const char *pair, size_t pair_len) {
    QKV_TRY(check_utf8(d, line, "text", text, text_len));
    if (pair) QKV_TRY(check_utf8(d, line, "text_pair", pair, pair_len));
    qkv__lab_example e;
    memset(&e, 0, sizeof e);
    QKV_TRY(qkv__buf_reserve(&d->ex, sizeof e));
    QKV_TRY(put_str(&d->text, text, text_len, &e.text));
    e.text_len = text_len;
    e.pair = QKV__LAB_NO_PAIR;
    if (pair) QKV_TRY(put_str(&d->text, pair, pair_len, &e.pair));
    e.pair_len = pair ? pair_len : 0;
    e.src = d->cur_src;
    e.line = line;
    e.lab = d->labs.len / sizeof(int32_t);
    e.label = d->problem == QKV_PROBLEM_MULTI_LABEL ? 0 : -1;
    e.value = NAN;
    memcpy(d->ex.p + d->ex.len, &e, sizeof e);
    d->ex.len += sizeof e;
    d->n++;
    if (pair) d->n_pairs++;
    return QKV_OK;
}

/* The id of name, a new one if it was not seen before. */
static qkv_status intern(qkv_labeled *d, int64_t line, const char *name, size_t len, int32_t *id) {
    if (qkv__strmap_get(&d->intern, name, len, id)) return QKV_OK;
    if (d->n_labels >= QKV__MAX_LABELS)
        return qkv__lab_fail(d, line, "more than %lld distinct labels", (long long)QKV__MAX_LABELS);
    QKV_TRY(qkv__buf_reserve(&d->name_off, sizeof(size_t)));
    QKV_TRY(qkv__buf_reserve(&d->seen, sizeof(int64_t)));
    size_t off;
    QKV_TRY(put_str(&d->names, name, len, &off));
    *id = (int32_t)d->n_labels;
    QKV_TRY(qkv__strmap_put(&d->intern, name, len, *id));
    memcpy(d->name_off.p + d->name_off.len, &off, sizeof off);
    d->name_off.len += sizeof off;
    int64_t never = -1;
    memcpy(d->seen.p + d->seen.len, &never, sizeof never);
    d->seen.len += sizeof never;
    d->n_labels++;
    return QKV_OK;
}

qkv_status qkv__lab_label(qkv_labeled *d, const char *name, size_t len) {
    qkv__lab_example *e = &EX(d)[d->n - 1];
    QKV_TRY(check_utf8(d, e->line, "label", name, len));
    int32_t id;
    QKV_TRY(intern(d, e->line, name, len, &id));
    if (d->problem != QKV_PROBLEM_MULTI_LABEL) {
        e->label = id;
        return QKV_OK;
    }
    /* a name given twice for one example counts once: seen[id] is the last example with it */
    int64_t *seen = (int64_t *)(void *)d->seen.p;
    if (seen[id] == d->n - 1) return QKV_OK;
    seen[id] = d->n - 1;
    QKV_TRY(qkv__buf_put(&d->labs, &id, sizeof id));
    e->label++;
    return QKV_OK;
}

qkv_status qkv__lab_value(qkv_labeled *d, double v, const char *as_text) {
    qkv__lab_example *e = &EX(d)[d->n - 1];
    if (!isfinite(v) || fabs(v) > FLT_MAX)
        return qkv__lab_fail(d, e->line, "regression label '%.64s' is not a finite number",
                             as_text);
    e->value = (float)v;
    return QKV_OK;
}

/* 1 and *v if s is an integer that fits a long long: -?[0-9]+ */
static int integer_name(const char *s, long long *v) {
    const char *p = s + (*s == '-');
    if (!*p) return 0;
    for (const char *q = p; *q; q++)
        if (*q < '0' || *q > '9') return 0;
    errno = 0;
    char *end;
    *v = strtoll(s, &end, 10);
    return errno == 0 && *end == '\0';
}

typedef struct name_key {
    const char *s;
    long long v;
    int numeric; /* every name of the set is an integer: order by value first */
    int32_t id;
} name_key;

static int cmp_names(const void *a, const void *b) {
    const name_key *x = a, *y = b;
    if (x->numeric && x->v != y->v) return x->v < y->v ? -1 : 1;
    return strcmp(x->s, y->s);
}

/* Replaces d's label names by list[0..n) and every label id k of the examples by perm[k]. */
static qkv_status relabel(qkv_labeled *d, const char *const *list, int64_t n, const int32_t *perm) {
    qkv__buf names = {0}, offs = {0};
    qkv_status s = qkv__buf_reserve(&offs, (size_t)n * sizeof(size_t));
    for (int64_t k = 0; k < n && s == QKV_OK; k++) {
        size_t off;
        s = put_str(&names, list[k], strlen(list[k]), &off);
        if (s == QKV_OK) memcpy(offs.p + (size_t)k * sizeof off, &off, sizeof off);
    }
    if (s != QKV_OK) {
        qkv__buf_free(&names);
        qkv__buf_free(&offs);
        return s;
    }
    offs.len = (size_t)n * sizeof(size_t);
    qkv__lab_example *ex = EX(d);
    if (d->problem == QKV_PROBLEM_SINGLE_LABEL)
        for (int64_t i = 0; i < d->n; i++) ex[i].label = perm[ex[i].label];
    else
        for (size_t j = 0; j < d->labs.len / sizeof(int32_t); j++) LABS(d)[j] = perm[LABS(d)[j]];
    qkv__buf_free(&d->names);
    qkv__buf_free(&d->name_off);
    d->names = names;
    d->name_off = offs;
    d->n_labels = n;
    return QKV_OK;
}

/* The documented order: by value when every name is an integer, else by bytes. */
static qkv_status sort_labels(qkv_labeled *d) {
    int64_t n = d->n_labels;
    if (n == 0) return QKV_OK;
    name_key *keys = qkv__calloc((size_t)n, sizeof *keys);
    int32_t *perm = qkv__calloc((size_t)n, sizeof *perm);
    const char **list = qkv__calloc((size_t)n, sizeof *list);
    qkv_status s = QKV_OK;
    if (!keys || !perm || !list) {
        s = qkv__fail(QKV_ERR_NOMEM, "labeled data: sorting %lld label names", (long long)n);
    } else {
        int numeric = 1;
        for (int64_t k = 0; k < n; k++) {
            keys[k].s = d->names.p + NAME_OFF(d)[k];
            keys[k].id = (int32_t)k;
            numeric &= integer_name(keys[k].s, &keys[k].v);
        }
        for (int64_t k = 0; k < n; k++) keys[k].numeric = numeric;
        qsort(keys, (size_t)n, sizeof *keys, cmp_names);
        for (int64_t k = 0; k < n; k++) {
            perm[keys[k].id] = (int32_t)k;
            list[k] = keys[k].s;
        }
        s = relabel(d, list, n, perm);
    }
    qkv__free(keys);
    qkv__free(perm);
    qkv__free(list);
    return s;
}

qkv_status qkv__lab_finish(qkv_labeled *d, const char *what) {
    if (d->n == 0) return qkv__fail(QKV_ERR_FORMAT, "%s: no examples", what);
    if (d->problem == QKV_PROBLEM_SINGLE_LABEL)
        for (int64_t i = 0; i < d->n; i++)
            if (EX(d)[i].label < 0)
                return qkv__fail(QKV_ERR_INTERNAL, "labeled data: example %lld has no label",
                                 (long long)i);
    qkv__strmap_free(&d->intern);
    qkv__buf_free(&d->seen);
    return sort_labels(d);
}

/* ---------------------------------------------------------------- mapping to given names */

/* 1 if example e has a label k with perm[k] < 0 (unknown); *k gets the first. */
static int unknown_label(const qkv_labeled *d, const qkv__lab_example *e, const int32_t *perm,
                         int32_t *k) {
    if (d->problem == QKV_PROBLEM_SINGLE_LABEL) {
        *k = e->label;
        return perm[e->label] < 0;
    }
    for (int32_t j = 0; j < e->label; j++) {
        *k = LABS(d)[e->lab + (size_t)j];
        if (perm[*k] < 0) return 1;
    }
    return 0;
}

qkv_status qkv_labeled_map_labels(qkv_labeled *d, const char *const *names, int64_t n) {
    if (!d || !names || n < 1 || n > QKV__MAX_LABELS)
        return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_labeled_map_labels: %lld names (1 to %lld)",
                         (long long)n, (long long)QKV__MAX_LABELS);
    if (d->problem == QKV_PROBLEM_REGRESSION)
        return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_labeled_map_labels: regression data has no "
                                              "label names");
    qkv__strmap given;
    qkv__strmap_init(&given);
    int32_t *perm = NULL;
    qkv_status s = QKV_OK;
    for (int64_t k = 0; k < n && s == QKV_OK; k++) {
        size_t len = names[k] ? strlen(names[k]) : 0;
        int32_t other;
        if (len == 0 || !qkv__utf8_valid(names[k], len, NULL))
            s = qkv__fail(QKV_ERR_INVALID_ARG,
                          "qkv_labeled_map_labels: name %lld is %s, not non-empty UTF-8",
                          (long long)k, names[k] ? "invalid" : "NULL");
        else if (qkv__strmap_get(&given, names[k], len, &other))
            s = qkv__fail(QKV_ERR_INVALID_ARG,
                          "qkv_labeled_map_labels: names %d and %lld are both '%.64s'", other,
                          (long long)k, names[k]);
        else
            s = qkv__strmap_put(&given, names[k], len, (int32_t)k);
    }
    if (s == QKV_OK && d->n_labels > 0) {
        perm = qkv__calloc((size_t)d->n_labels, sizeof *perm);
        if (!perm)
            s = qkv__fail(QKV_ERR_NOMEM, "qkv_labeled_map_labels: %lld labels",
                          (long long)d->n_labels);
    }
    for (int64_t k = 0; s == QKV_OK && k < d->n_labels; k++) {
        const char *name = d->names.p + NAME_OFF(d)[k];
        if (!qkv__strmap_get(&given, name, strlen(name), &perm[k])) perm[k] = -1;
    }
    for (int64_t i = 0; s == QKV_OK && i < d->n; i++) {
        const qkv__lab_example *e = &EX(d)[i];
        int32_t k;
        if (unknown_label(d, e, perm, &k))
            s = fail_at(d->paths.p + e->src, e->line,
                        "unknown label '%.64s' (not among the %lld given names)",
                        d->names.p + NAME_OFF(d)[k], (long long)n);
    }
    if (s == QKV_OK) s = relabel(d, names, n, perm);
    qkv__free(perm);
    qkv__strmap_free(&given);
    return s;
}

/* ---------------------------------------------------------------- split */

typedef struct split_key {
    int32_t cls;
    uint32_t key;
    int64_t i;
} split_key;

static int cmp_split(const void *a, const void *b) {
    const split_key *x = a, *y = b;
    if (x->cls != y->cls) return x->cls < y->cls ? -1 : 1;
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

/* The examples i of d with in_val[i] == want, in order, as a new handle with d's names. */
static qkv_status subset(const qkv_labeled *d, const uint8_t *in_val, uint8_t want,
                         qkv_labeled **out) {
    qkv_labeled *s = NULL;
    QKV_TRY(qkv__lab_new(d->problem, &s));
    qkv_status st = qkv__buf_put(&s->paths, d->paths.p, d->paths.len);
    if (st == QKV_OK) st = qkv__buf_put(&s->names, d->names.p, d->names.len);
    if (st == QKV_OK) st = qkv__buf_put(&s->name_off, d->name_off.p, d->name_off.len);
    s->n_labels = d->n_labels;
    for (int64_t i = 0; i < d->n && st == QKV_OK; i++) {
        if (in_val[i] != want) continue;
        qkv__lab_example e = EX(d)[i];
        st = qkv__buf_reserve(&s->ex, sizeof e);
        if (st == QKV_OK) st = put_str(&s->text, d->text.p + e.text, e.text_len, &e.text);
        if (st == QKV_OK && e.pair != QKV__LAB_NO_PAIR)
            st = put_str(&s->text, d->text.p + e.pair, e.pair_len, &e.pair);
        size_t from = e.lab;
        e.lab = s->labs.len / sizeof(int32_t);
        if (st == QKV_OK && d->problem == QKV_PROBLEM_MULTI_LABEL && e.label > 0)
            st = qkv__buf_put(&s->labs, LABS(d) + from, (size_t)e.label * sizeof(int32_t));
        if (st != QKV_OK) break;
        memcpy(s->ex.p + s->ex.len, &e, sizeof e);
        s->ex.len += sizeof e;
        s->n++;
        s->n_pairs += e.pair != QKV__LAB_NO_PAIR;
    }
    if (st != QKV_OK) {
        qkv_labeled_free(s);
        return st;
    }
    *out = s;
    return QKV_OK;
}

qkv_status qkv_labeled_split(const qkv_labeled *d, double val_fraction, uint64_t seed,
                             qkv_labeled **train, qkv_labeled **val) {
    if (train) *train = NULL;
    if (val) *val = NULL;
    if (!d || !train || !val)
        return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_labeled_split: NULL argument");
    if (!(val_fraction > 0 && val_fraction < 1))
        return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_labeled_split: val_fraction %g is not in (0, 1)",
                         val_fraction);
    if (d->n < 2)
        return qkv__fail(QKV_ERR_INVALID_ARG,
                         "qkv_labeled_split: %lld example(s); a split needs 2 or more",
                         (long long)d->n);
    size_t n = (size_t)d->n;
    split_key *order = qkv__calloc(n, sizeof *order);
    uint8_t *in_val = qkv__calloc(n, 1);
    if (!order || !in_val) {
        qkv__free(order);
        qkv__free(in_val);
        return qkv__fail(QKV_ERR_NOMEM, "qkv_labeled_split: %zu examples", n);
    }
    int stratified = d->problem == QKV_PROBLEM_SINGLE_LABEL;
    for (size_t i = 0; i < n; i++) {
        order[i].cls = stratified ? EX(d)[i].label : 0;
        order[i].key = qkv__rng_u32(seed, SPLIT_STREAM, i);
        order[i].i = (int64_t)i;
    }
    /* each class's examples in a random order; the first k of each go to val */
    qsort(order, n, sizeof *order, cmp_split);
    for (size_t a = 0, b; a < n; a = b) {
        for (b = a; b < n && order[b].cls == order[a].cls; b++) {
        }
        double m = (double)(b - a);
        double k = m >= 2 ? fmin(fmax(round(val_fraction * m), 1), m - 1) : 0;
        for (size_t j = 0; j < (size_t)k; j++) in_val[order[a + j].i] = 1;
    }
    qkv__free(order);
    qkv_status s = subset(d, in_val, 0, train);
    if (s == QKV_OK) s = subset(d, in_val, 1, val);
    qkv__free(in_val);
    if (s != QKV_OK) {
        qkv_labeled_free(*train);
        *train = NULL;
    }
    return s;
}

/* ---------------------------------------------------------------- accessors */

static const qkv__lab_example *ex_at(const qkv_labeled *d, int64_t i) {
    return d && i >= 0 && i < d->n ? &EX(d)[i] : NULL;
}

int64_t qkv_labeled_count(const qkv_labeled *d) { return d ? d->n : 0; }

qkv_problem_type qkv_labeled_problem(const qkv_labeled *d) {
    return d ? d->problem : QKV_PROBLEM_SINGLE_LABEL;
}

int qkv_labeled_has_pairs(const qkv_labeled *d) { return d && d->n_pairs > 0; }

const char *qkv_labeled_text(const qkv_labeled *d, int64_t i, size_t *len) {
    const qkv__lab_example *e = ex_at(d, i);
    if (len) *len = e ? e->text_len : 0;
    return e ? d->text.p + e->text : NULL;
}

const char *qkv_labeled_pair(const qkv_labeled *d, int64_t i, size_t *len) {
    const qkv__lab_example *e = ex_at(d, i);
    int has = e && e->pair != QKV__LAB_NO_PAIR;
    if (len) *len = has ? e->pair_len : 0;
    return has ? d->text.p + e->pair : NULL;
}

int64_t qkv_labeled_num_labels(const qkv_labeled *d) { return d ? d->n_labels : 0; }

const char *qkv_labeled_label_name(const qkv_labeled *d, int64_t k) {
    return d && k >= 0 && k < d->n_labels ? d->names.p + NAME_OFF(d)[k] : NULL;
}

int32_t qkv_labeled_label(const qkv_labeled *d, int64_t i) {
    const qkv__lab_example *e = ex_at(d, i);
    return e && d->problem == QKV_PROBLEM_SINGLE_LABEL ? e->label : -1;
}

qkv_status qkv_labeled_label_vector(const qkv_labeled *d, int64_t i, float *out) {
    const qkv__lab_example *e = ex_at(d, i);
    if (!e || !out || d->problem == QKV_PROBLEM_REGRESSION)
        return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_labeled_label_vector: example %lld of %lld (%s)",
                         (long long)i, (long long)qkv_labeled_count(d),
                         e && out ? "regression data has no label vector" : "NULL or range");
    for (int64_t k = 0; k < d->n_labels; k++) out[k] = 0.0f;
    if (d->problem == QKV_PROBLEM_SINGLE_LABEL)
        out[e->label] = 1.0f;
    else
        for (int32_t j = 0; j < e->label; j++) out[LABS(d)[e->lab + (size_t)j]] = 1.0f;
    return QKV_OK;
}

float qkv_labeled_value(const qkv_labeled *d, int64_t i) {
    const qkv__lab_example *e = ex_at(d, i);
    return e && d->problem == QKV_PROBLEM_REGRESSION ? e->value : NAN;
}

const char *qkv_labeled_source(const qkv_labeled *d, int64_t i, int64_t *line) {
    const qkv__lab_example *e = ex_at(d, i);
    if (line) *line = e ? e->line : 0;
    return e ? d->paths.p + e->src : NULL;
}

int64_t qkv_labeled_multiline(const qkv_labeled *d, int64_t *first_line) {
    if (first_line) *first_line = d ? d->multiline_line : 0;
    return d ? d->multiline : 0;
}
