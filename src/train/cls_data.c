/* cls_data.c — tokenizing labelled examples for a classifier (see cls_data.h). */
#include "train/cls_data.h"

#include "core/alloc.h"
#include "core/error.h"
#include "core/rng.h"
#include "train/data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void qkv_cls_data_free(qkv_cls_data *d) {
    if (!d) return;
    qkv__free(d->off);
    qkv__free(d->ids);
    qkv__free(d->types);
    qkv__free(d->labels);
    qkv__free(d->values);
    qkv__free(d);
}

int64_t qkv_cls_data_count(const qkv_cls_data *d) { return d ? d->n : 0; }
int64_t qkv_cls_data_tokens(const qkv_cls_data *d) { return d ? d->off[d->n] : 0; }
int64_t qkv_cls_data_truncated(const qkv_cls_data *d) { return d ? d->truncated : 0; }
int64_t qkv_cls_data_max_len(const qkv_cls_data *d) { return d ? d->max_len : 0; }

/* Each example tokenized on its own (in parallel): the encodings are kept until all are done
 * so the packed arrays are sized exactly. */
typedef struct {
    const qkv_labeled *src;
    const qkv_tokenizer *tok;
    const qkv_encode_options *eo;
    qkv_encoding **enc;
    qkv_status *st;
    char (*msg)[256];
} enc_ctx;

static void encode_range(void *p, int64_t i0, int64_t i1, int tid) {
    enc_ctx *c = p;
    (void)tid;
    for (int64_t i = i0; i < i1; i++) {
        size_t tl = 0, pl = 0;
        const char *text = qkv_labeled_text(c->src, i, &tl);
        const char *pair = qkv_labeled_pair(c->src, i, &pl);
        c->st[i] = qkv_tokenizer_encode(c->tok, text, tl, pair, pl, c->eo, &c->enc[i]);
        if (c->st[i] != QKV_OK) snprintf(c->msg[i], sizeof c->msg[i], "%s", qkv_last_error());
    }
}

qkv_status qkv_cls_data_build(qkv_runtime *rt, const qkv_labeled *src, const qkv_tokenizer *tok,
                              int64_t max_length, qkv_cls_data **out) {
    static const char fn[] = "qkv_cls_data_build";
    if (!out) return qkv__fail(QKV_ERR_INVALID_ARG, "%s: NULL out", fn);
    *out = NULL;
    if (!src || !tok) return qkv__fail(QKV_ERR_INVALID_ARG, "%s: NULL data or tokenizer", fn);
    if (max_length < 3 || max_length > (1 << 20))
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: max_length %lld must be in [3, 2^20]", fn,
                         (long long)max_length);
    const int64_t n = qkv_labeled_count(src);
    if (n < 1) return qkv__fail(QKV_ERR_INVALID_ARG, "%s: no examples", fn);
    const qkv_problem_type pt = qkv_labeled_problem(src);
    const int64_t nl = pt == QKV_PROBLEM_REGRESSION ? 1 : qkv_labeled_num_labels(src);
    if (nl < 1) return qkv__fail(QKV_ERR_INVALID_ARG, "%s: the data has no labels", fn);
    qkv_cls_data *d = qkv__calloc(1, sizeof *d);
    qkv_encoding **enc = qkv__calloc((size_t)n, sizeof *enc);
    qkv_status *st = qkv__calloc((size_t)n, sizeof *st);
    char(*msg)[256] = qkv__calloc((size_t)n, sizeof *msg);
    qkv_status s =
        d && enc && st && msg ? QKV_OK : qkv__fail(QKV_ERR_NOMEM, "%s: out of memory", fn);
    qkv_encode_options eo;
    qkv_tokenizer_default_options(tok, &eo);
    eo.add_special_tokens = 1;
    eo.max_length = max_length;
    eo.truncation = QKV_TRUNCATE_LONGEST_FIRST;
    eo.pad_to = 0, eo.pad_to_multiple_of = 0;
    if (s == QKV_OK) {
        enc_ctx c = {src, tok, &eo, enc, st, msg};
        qkv_parallel_for(rt, n, 16, encode_range, &c);
        for (int64_t i = 0; i < n && s == QKV_OK; i++)
            if (st[i] != QKV_OK) {
                int64_t line = 0;
                const char *file = qkv_labeled_source(src, i, &line);
                s = qkv__fail(st[i], "%s:%lld: %s", file ? file : "?", (long long)line, msg[i]);
            }
    }
    if (s == QKV_OK) {
        d->n = n, d->nl = nl, d->problem = pt;
        d->pad_id = qkv_tokenizer_special_id(tok, QKV_SPECIAL_PAD);
        if (d->pad_id < 0) d->pad_id = 0;
        d->off = qkv__alloc((size_t)(n + 1) * sizeof *d->off);
        if (!d->off) s = qkv__fail(QKV_ERR_NOMEM, "%s: out of memory", fn);
    }
    if (s == QKV_OK) {
        d->off[0] = 0;
        for (int64_t i = 0; i < n; i++) {
            size_t tl = 0, pl = 0;
            qkv_labeled_text(src, i, &tl);
            qkv_labeled_pair(src, i, &pl);
            const int64_t len = (int64_t)enc[i]->n;
            d->off[i + 1] = d->off[i] + len;
            if (len > d->max_len) d->max_len = len;
            if (len == max_length) d->truncated++; /* at the cap: counted as cut */
        }
        d->ids = qkv__alloc((size_t)d->off[n] * sizeof *d->ids);
        d->types = qkv__alloc((size_t)d->off[n] * sizeof *d->types);
        if (pt == QKV_PROBLEM_SINGLE_LABEL)
            d->labels = qkv__alloc((size_t)n * sizeof *d->labels);
        else
            d->values = qkv__alloc((size_t)(n * nl) * sizeof *d->values);
        if (!d->ids || !d->types || (!d->labels && !d->values))
            s = qkv__fail(QKV_ERR_NOMEM, "%s: out of memory for %lld tokens", fn,
                          (long long)d->off[n]);
    }
    for (int64_t i = 0; s == QKV_OK && i < n; i++) {
        memcpy(d->ids + d->off[i], enc[i]->ids, enc[i]->n * sizeof *d->ids);
        memcpy(d->types + d->off[i], enc[i]->type_ids, enc[i]->n * sizeof *d->types);
        if (d->labels)
            d->labels[i] = qkv_labeled_label(src, i);
        else if (pt == QKV_PROBLEM_REGRESSION)
            d->values[i] = qkv_labeled_value(src, i);
        else
            s = qkv_labeled_label_vector(src, i, d->values + i * nl);
    }
    for (int64_t i = 0; enc && i < n; i++) qkv_encoding_free(enc[i]);
    qkv__free(enc);
    qkv__free(st);
    qkv__free(msg);
    if (s != QKV_OK) {
        qkv_cls_data_free(d);
        return s;
    }
    *out = d;
    return QKV_OK;
}

/* ---------------------------------------------------------------- epochs and batches */

static int64_t example_len(const void *ctx, int64_t i) {
    const qkv_cls_data *d = ctx;
    return d->off[i + 1] - d->off[i];
}

void qkv__cls_epoch_order(const qkv_cls_data *d, uint64_t seed, int64_t epoch, int64_t batch,
                          int64_t *order) {
    if (qkv__epoch_order(d->n, example_len, d, seed, epoch, batch, 0, order) == QKV_OK) return;
    /* no memory for the sort: the examples in file order (still deterministic) */
    for (int64_t i = 0; i < d->n; i++) order[i] = i;
}

qkv_train_batch qkv__cls_batch(const qkv_cls_data *d, const int64_t *idx, int64_t B, int32_t *ids,
                               int32_t *types, int32_t *lens, int32_t *labels, float *values) {
    int64_t T = 1;
    for (int64_t b = 0; b < B; b++) {
        int64_t len = d->off[idx[b] + 1] - d->off[idx[b]];
        if (len > T) T = len;
    }
    for (int64_t b = 0; b < B; b++) {
        const int64_t i = idx[b], len = d->off[i + 1] - d->off[i];
        memcpy(ids + b * T, d->ids + d->off[i], (size_t)len * sizeof *ids);
        memcpy(types + b * T, d->types + d->off[i], (size_t)len * sizeof *types);
        for (int64_t t = len; t < T; t++) ids[b * T + t] = d->pad_id, types[b * T + t] = 0;
        lens[b] = (int32_t)len;
        if (d->labels) labels[b] = d->labels[i];
        if (d->values)
            memcpy(values + b * d->nl, d->values + i * d->nl, (size_t)d->nl * sizeof *values);
    }
    qkv_train_batch b = {sizeof b,
                         ids,
                         NULL,
                         types,
                         lens,
                         B,
                         T,
                         d->labels ? labels : NULL,
                         d->values ? values : NULL,
                         0,
                         NULL,
                         NULL,
                         0};
    return b;
}
