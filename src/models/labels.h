/* labels.h — the classification fields of a Hugging Face config.json: id2label / label2id
 * (the label names, in id order), num_labels and problem_type, as transformers'
 * PretrainedConfig reads and writes them. Used by the classifier loader (models), the trainer
 * (train) and its export, so a head's labels are read and written in one place. */
#ifndef QKV_MODELS_LABELS_H
#define QKV_MODELS_LABELS_H

#include "qkv.h"

#include <stdint.h>

struct json_t;

typedef struct qkv__labels {
    int64_t n;                /* num_labels (>= 1) */
    char **names;             /* [n] owned, NUL-terminated: id2label in id order */
    qkv_problem_type problem; /* as config.json says, or the default for n (below) */
    int problem_given;        /* config.json named problem_type */
} qkv__labels;

/* The most labels a head may have (a size read from a file is bounded before allocation). */
#define QKV__MAX_LABELS ((int64_t)1 << 20)

/* Reads id2label (an object "0": name, ... with every id in [0, n) present once) or, without
 * it, num_labels (names LABEL_0 ...), or the transformers default of 2 labels; problem_type
 * ("single_label_classification", "multi_label_classification", "regression", or null: single
 * label, regression when n == 1). FORMAT names the field of a malformed value; path is for
 * messages. Between qkv__json_begin/end. */
qkv_status qkv__labels_parse(const char *path, struct json_t *root, qkv__labels *out);
/* n labels named names[i] (NULL: LABEL_i) with problem p; a name must be non-empty UTF-8 and
 * unique. */
qkv_status qkv__labels_make(int64_t n, const char *const *names, qkv_problem_type p,
                            qkv__labels *out);
qkv_status qkv__labels_copy(const qkv__labels *src, qkv__labels *out);
/* Sets id2label, label2id and problem_type of root (between qkv__json_begin/end). */
qkv_status qkv__labels_write(const qkv__labels *l, struct json_t *root);
void qkv__labels_free(qkv__labels *l);
/* "single_label_classification", ... */
const char *qkv__problem_name(qkv_problem_type p);

#endif
