/* dist.h — the collectives the training loop uses when it runs as one rank of several
 * (qkv_dist, built with -DQKV_WITH_MPI=ON). Every call waits at most the communicator's
 * timeout (qkv_dist_init) and returns QKV_ERR_PEER with a message naming the operation when a
 * rank died (an MPI error: the communicator returns errors instead of aborting) or did not
 * answer in time; the caller then stops (qkv_dist_abort ends the other ranks). Without MPI
 * qkv_dist_init refuses and these are never called. */
#ifndef QKV_TRAIN_DIST_H
#define QKV_TRAIN_DIST_H

#include "qkv.h"

#include <stdint.h>

qkv_status qkv__dist_sum_f64(qkv_dist *d, double *buf, int64_t n, const char *what);
qkv_status qkv__dist_max_int(qkv_dist *d, int *v, const char *what);
/* Rank 0 receives every rank's send[0..n) into recv[rank·n ..] (recv: NULL elsewhere). */
qkv_status qkv__dist_gather_f32(qkv_dist *d, const float *send, float *recv, int64_t n,
                                const char *what);
/* buf[0..n) from rank 0 to every rank, in buckets. */
qkv_status qkv__dist_bcast_f32(qkv_dist *d, float *buf, int64_t n, int64_t bucket,
                               const char *what);
/* Blocking, in buckets, over the slices of a flat buffer of n floats (bound as above): every
 * rank's slice of buf to every rank (all-gather, in place); rank 0's buf to each rank's slice
 * of buf (scatter); each rank's slice, held compactly in `mine`, into rank 0's `full` (gather;
 * full is NULL elsewhere, and rank 0's own slice must already be in place). */
qkv_status qkv__dist_allgather_f32(qkv_dist *d, float *buf, int64_t n, const int64_t *bound,
                                   int64_t bucket, const char *what);
qkv_status qkv__dist_scatter_f32(qkv_dist *d, float *buf, int64_t n, const int64_t *bound,
                                 int64_t bucket, const char *what);
qkv_status qkv__dist_gather_slices_f32(qkv_dist *d, const float *mine, float *full, int64_t n,
                                       const int64_t *bound, int64_t bucket, const char *what);
/* Every rank's h (n words) compared with rank 0's: *first_bad is the lowest rank whose words
 * differ in word *word, or -1 when all agree. */
qkv_status qkv__dist_compare(qkv_dist *d, const uint64_t *h, int n, int *first_bad, int *word);

/* Non-blocking: starts the sum of buf[0..n) over the ranks (in buckets) and returns; the
 * calls must come in the same order on every rank. qkv__dist_progress lets MPI advance them
 * (Open MPI moves non-blocking collectives only inside MPI calls); qkv__dist_wait_all waits
 * for all of them (the watchdog applies). */
qkv_status qkv__dist_isum_f32(qkv_dist *d, float *buf, int64_t n, int64_t bucket, const char *what);
void qkv__dist_progress(qkv_dist *d);
/* ZeRO-1: rank r owns the floats [bound[r], bound[r + 1]) of a flat buffer (bound: size + 1
 * ascending offsets from 0). Non-blocking like qkv__dist_isum_f32: starts the sum over the
 * ranks of buf[begin, end) in buckets, of which this rank receives its own part only (in
 * place: its slice of buf holds the sum after qkv__dist_wait_all; the rest of [begin, end)
 * is left undefined). */
qkv_status qkv__dist_ireduce_scatter_f32(qkv_dist *d, float *buf, int64_t begin, int64_t end,
                                         const int64_t *bound, int64_t bucket, const char *what);
qkv_status qkv__dist_wait_all(qkv_dist *d, const char *what);

/* The trainer's blocks (trainer.c): their number, the float range [begin, end) of block l's
 * parameters (and gradients) in the flat buffers, and the hook called after each block's
 * backward (NULL: none). */
int64_t qkv__trainer_layers(const qkv_trainer *t);
void qkv__trainer_layer_range(const qkv_trainer *t, int64_t l, int64_t *begin, int64_t *end);
void qkv__trainer_set_layer_hook(qkv_trainer *t, void (*fn)(void *, int64_t), void *user);

/* The trainer's flat buffers (trainer.c): 0 weights, 1 gradients, 2 and 3 AdamW's moments;
 * *n floats each (the parameters in order, each padded to 16 floats; the moments: those of
 * their range, qkv__trainer_moments). */
float *qkv__trainer_buffer(qkv_trainer *t, int which, int64_t *n);

/* ---------------------------------------------------------------- ZeRO-1 (zero.c) */

/* The optimizer state sharded across the ranks: rank r keeps AdamW's moments of the segments
 * seg[r] .. seg[r + 1] - 1 only (the floats [bound[r], bound[r + 1]): contiguous, cut at
 * segment boundaries so that the gradient norm sums the same per-segment partial sums as one
 * process), steps them, and the weights are all-gathered after the step. */
typedef struct qkv__zero {
    qkv_dist *d; /* NULL: one process (the shard is everything) */
    int rank, size;
    int64_t *bound;  /* [size + 1] floats */
    int64_t *seg;    /* [size + 1] segments */
    double *partial; /* [segments]: Σ g² of each, this rank's filled in */
} qkv__zero;

/* Cuts the trainer's parameters into the ranks' slices and keeps this rank's moments only (a
 * trainer already sharded so is accepted as it is). */
qkv_status qkv__zero_begin(qkv__zero *z, qkv_trainer *t, qkv_dist *d);
void qkv__zero_end(qkv__zero *z);
/* The step after the gradients of this rank's slice are summed: the global gradient norm
 * (one all-reduce of the per-segment sums), clipping + AdamW on the slice, the weights
 * all-gathered. As qkv_trainer_step: a non-finite norm updates nothing. */
qkv_status qkv__zero_step(qkv__zero *z, qkv_runtime *rt, qkv_trainer *t, const qkv_adamw *hp,
                          float lr, float max_norm, float *norm);
/* Every rank calls it: rank 0 gathers the moments and writes the checkpoint
 * (qkv_trainer_save). */
qkv_status qkv__zero_save(qkv__zero *z, qkv_trainer *t, const char *path, const char *user_json);

#endif
