/* labels.c — id2label / label2id / problem_type of config.json (see labels.h). */
#include "models/labels.h"

#include "core/alloc.h"
#include "core/error.h"
#include "io/json.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const problem_names[] = {"single_label_classification",
                                            "multi_label_classification", "regression"};

const char *qkv__problem_name(qkv_problem_type p) {
    return (unsigned)p < 3 ? problem_names[p] : "?";
}

void qkv__labels_free(qkv__labels *l) {
    if (!l) return;
    for (int64_t i = 0; l->names && i < l->n; i++) qkv__free(l->names[i]);
    qkv__free(l->names);
    memset(l, 0, sizeof *l);
}

static char *dup_str(const char *s) {
    size_t n = strlen(s);
    char *d = qkv__alloc(n + 1);
    if (d) memcpy(d, s, n + 1);
    return d;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

qkv_status qkv__labels_make(int64_t n, const char *const *names, qkv_problem_type p,
                            qkv__labels *out) {
    memset(out, 0, sizeof *out);
    if (n < 1 || n > QKV__MAX_LABELS)
        return qkv__fail(QKV_ERR_INVALID_ARG, "labels: %lld labels (need 1 to %lld)", (long long)n,
                         (long long)QKV__MAX_LABELS);
    if ((unsigned)p > QKV_PROBLEM_REGRESSION)
        return qkv__fail(QKV_ERR_INVALID_ARG, "labels: unknown problem type %d", (int)p);
    out->names = qkv__calloc((size_t)n, sizeof *out->names);
    if (!out->names) return qkv__fail(QKV_ERR_NOMEM, "labels: out of memory");
    out->n = n;
    out->problem = p;
    for (int64_t i = 0; i < n; i++) {
        char buf[32];
        snprintf(buf, sizeof buf, "LABEL_%lld", (long long)i);
        const char *s = names && names[i] ? names[i] : buf;
        if (!*s || !qkv__utf8_valid(s, strlen(s), NULL)) {
            qkv__labels_free(out);
            return qkv__fail(QKV_ERR_INVALID_ARG, "labels: label %lld is %s", (long long)i,
                             *s ? "not valid UTF-8" : "empty");
        }
        if (!(out->names[i] = dup_str(s))) {
            qkv__labels_free(out);
            return qkv__fail(QKV_ERR_NOMEM, "labels: out of memory");
        }
    }
    /* unique names: sort a copy of the pointers */
    if (n > 1) {
        char **sorted = qkv__alloc((size_t)n * sizeof *sorted);
        if (!sorted) {
            qkv__labels_free(out);
            return qkv__fail(QKV_ERR_NOMEM, "labels: out of memory");
        }
        memcpy(sorted, out->names, (size_t)n * sizeof *sorted);
        qsort(sorted, (size_t)n, sizeof *sorted, cmp_str);
        for (int64_t i = 1; i < n; i++)
            if (strcmp(sorted[i - 1], sorted[i]) == 0) {
                qkv_status s =
                    qkv__fail(QKV_ERR_INVALID_ARG, "labels: label '%s' appears twice", sorted[i]);
                qkv__free(sorted);
                qkv__labels_free(out);
                return s;
            }
        qkv__free(sorted);
    }
    return QKV_OK;
}

qkv_status qkv__labels_copy(const qkv__labels *src, qkv__labels *out) {
    QKV_TRY(qkv__labels_make(src->n, (const char *const *)src->names, src->problem, out));
    out->problem_given = src->problem_given;
    return QKV_OK;
}

qkv_status qkv__labels_parse(const char *path, json_t *root, qkv__labels *out) {
    memset(out, 0, sizeof *out);
    if (!json_is_object(root)) return qkv__fail(QKV_ERR_FORMAT, "%s: not a JSON object", path);
    qkv_problem_type p = QKV_PROBLEM_SINGLE_LABEL;
    int given = 0;
    json_t *pt = json_object_get(root, "problem_type");
    if (pt && !json_is_null(pt)) {
        const char *s = json_is_string(pt) ? json_string_value(pt) : NULL;
        int k = -1;
        for (int i = 0; s && i < 3; i++)
            if (strcmp(s, problem_names[i]) == 0) k = i;
        if (k < 0)
            return qkv__fail(QKV_ERR_FORMAT,
                             "%s: problem_type must be null, \"single_label_classification\", "
                             "\"multi_label_classification\" or \"regression\"",
                             path);
        p = (qkv_problem_type)k;
        given = 1;
    }
    json_t *id2 = json_object_get(root, "id2label");
    json_t *nl = json_object_get(root, "num_labels");
    int64_t n = 2; /* PretrainedConfig's default */
    char **names = NULL;
    qkv_status st = QKV_OK;
    if (id2 && !json_is_null(id2)) {
        if (!json_is_object(id2) || json_object_size(id2) < 1 ||
            (int64_t)json_object_size(id2) > QKV__MAX_LABELS)
            return qkv__fail(QKV_ERR_FORMAT,
                             "%s: id2label must be an object of 1 to %lld \"id\": \"name\" "
                             "entries",
                             path, (long long)QKV__MAX_LABELS);
        n = (int64_t)json_object_size(id2);
        names = qkv__calloc((size_t)n, sizeof *names);
        if (!names) return qkv__fail(QKV_ERR_NOMEM, "%s: out of memory", path);
        const char *key;
        json_t *v;
        json_object_foreach(id2, key, v) {
            char *end = NULL;
            long long id = strtoll(key, &end, 10);
            if (!*key || *end || id < 0 || id >= n || (key[0] == '0' && key[1])) {
                st = qkv__fail(QKV_ERR_FORMAT, "%s: id2label key \"%s\" is not an id in [0, %lld)",
                               path, key, (long long)n);
                break;
            }
            if (!json_is_string(v)) {
                st = qkv__fail(QKV_ERR_FORMAT, "%s: id2label[\"%s\"] must be a string", path, key);
                break;
            }
            if (names[id]) {
                st = qkv__fail(QKV_ERR_FORMAT, "%s: id2label has id %lld twice", path, id);
                break;
            }
            names[id] = (char *)json_string_value(v);
        }
    } else if (nl && !json_is_null(nl)) {
        if (!json_is_integer(nl) || json_integer_value(nl) < 1 ||
            json_integer_value(nl) > QKV__MAX_LABELS)
            return qkv__fail(QKV_ERR_FORMAT, "%s: num_labels must be an integer in [1, %lld]", path,
                             (long long)QKV__MAX_LABELS);
        n = (int64_t)json_integer_value(nl);
    }
    if (st == QKV_OK && nl && !json_is_null(nl) && names &&
        (!json_is_integer(nl) || json_integer_value(nl) != n))
        st = qkv__fail(QKV_ERR_FORMAT, "%s: num_labels disagrees with id2label's %lld entries",
                       path, (long long)n);
    if (st == QKV_OK && !given && n == 1) p = QKV_PROBLEM_REGRESSION;
    if (st == QKV_OK) {
        st = qkv__labels_make(n, (const char *const *)names, p, out);
        if (st != QKV_OK) { /* qkv__fail writes the buffer it would read: copy the reason */
            char why[256];
            snprintf(why, sizeof why, "%s", qkv_last_error());
            st =
                qkv__fail(st == QKV_ERR_NOMEM ? st : QKV_ERR_FORMAT, "%s: id2label: %s", path, why);
        }
    }
    qkv__free(names);
    if (st == QKV_OK) out->problem_given = given;
    return st;
}

qkv_status qkv__labels_write(const qkv__labels *l, json_t *root) {
    json_t *id2 = json_object(), *l2i = json_object();
    int bad = !id2 || !l2i;
    for (int64_t i = 0; !bad && i < l->n; i++) {
        char key[32];
        snprintf(key, sizeof key, "%lld", (long long)i);
        bad |= json_object_set_new(id2, key, json_string(l->names[i])) != 0;
        bad |= json_object_set_new(l2i, l->names[i], json_integer((json_int_t)i)) != 0;
    }
    if (!bad) {
        bad |= json_object_set_new(root, "id2label", id2) != 0;
        id2 = NULL;
        bad |= json_object_set_new(root, "label2id", l2i) != 0;
        l2i = NULL;
        bad |= json_object_set_new(root, "problem_type",
                                   json_string(qkv__problem_name(l->problem))) != 0;
    }
    json_decref(id2);
    json_decref(l2i);
    return bad ? qkv__fail(QKV_ERR_NOMEM, "labels: out of memory writing config.json") : QKV_OK;
}
