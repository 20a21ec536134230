/* s2s_batch.h — the training loop's batches of sentence pairs (s2s_batch.c): what loop.c calls
 * when an encoder-decoder (marian) trains on a parallel dataset. */
#ifndef QKV_TRAIN_S2S_BATCH_H
#define QKV_TRAIN_S2S_BATCH_H

#include "qkv.h"

typedef struct qkv__s2s qkv__s2s;

/* 1 if the run is an encoder-decoder's on sentence pairs (a marian trainer or a parallel
 * train split): then the options go to qkv__s2s_check and the batches come from here. */
int qkv__s2s_wanted(const qkv_trainer *t, const qkv_train_options *o);
/* INVALID_ARG (qkv_train_run's "BAD" messages) unless trainer, datasets and caps fit. */
qkv_status qkv__s2s_check(const qkv_trainer *t, const qkv_train_options *o);
qkv_status qkv__s2s_begin(const qkv_trainer *t, const qkv_train_options *o, qkv__s2s **out);
void qkv__s2s_free(qkv__s2s *b);
/* Micro-batch m of the run: forward and backward (gradients added, times scale); *tokens gets
 * the labelled target tokens. With length_grouped, epochs of length-grouped batches
 * (qkv__epoch_order over source + target tokens; micro-batch m % M of epoch m / M, M =
 * ceil(pairs / batch), the last of an epoch smaller); else `batch` pairs drawn uniformly as a
 * pure function of (seed, m). */
qkv_status qkv__s2s_micro(qkv_runtime *rt, qkv_trainer *t, qkv__s2s *b, const qkv_train_options *o,
                          int64_t m, float scale, float *loss, int64_t *tokens);
/* The validation loss (per labelled target token) over the first eval_batches batches of the
 * val split in order, batch i on rank i mod size; *any 0 when the split holds no pair. */
qkv_status qkv__s2s_evaluate(qkv_runtime *rt, qkv_trainer *t, qkv__s2s *b,
                             const qkv_train_options *o, int rank, int size, double *loss,
                             int *any);

#endif
