/* cls_data.h — labelled examples tokenized for a classifier trainer (qkv_cls_data, qkv.h), and
 * the batches the training loop makes of them. */
#ifndef QKV_TRAIN_CLS_DATA_H
#define QKV_TRAIN_CLS_DATA_H

#include "qkv.h"

#include <stdint.h>

struct qkv_cls_data {
    int64_t n;  /* examples */
    int64_t nl; /* labels (1 for regression) */
    qkv_problem_type problem;
    int64_t *off;         /* [n + 1] offsets into ids / types */
    int32_t *ids, *types; /* [off[n]] */
    int32_t *labels;      /* [n] single-label ids, else NULL */
    float *values;        /* [n, nl] multi-label 0/1 or regression values, else NULL */
    int32_t pad_id;
    int64_t max_len;   /* the longest example */
    int64_t truncated; /* examples cut to max_length */
};

/* The order of the examples in epoch `epoch`: a permutation of [0, n) that is a pure function of
 * (seed, epoch). With batch > 0 the permutation is grouped by length as transformers'
 * LengthGroupedSampler: megabatches of 50·batch examples, each sorted by decreasing length, so
 * the sequences of a batch have similar lengths (less padding). */
void qkv__cls_epoch_order(const qkv_cls_data *d, uint64_t seed, int64_t epoch, int64_t batch,
                          int64_t *order);

/* The batch of examples idx[0..B), written into the buffers: ids / types [B, T] padded with
 * pad_id to T = the longest of them, lens [B], labels [B] or values [B, nl] (whichever d has;
 * the batch points at that one). dropout_seed 0. */
qkv_train_batch qkv__cls_batch(const qkv_cls_data *d, const int64_t *idx, int64_t B, int32_t *ids,
                               int32_t *types, int32_t *lens, int32_t *labels, float *values);

#endif
