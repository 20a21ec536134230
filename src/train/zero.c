/* zero.c — ZeRO-1 for the data-parallel loop (loop.c, options.zero): AdamW's moments sharded
 * across the ranks.
 *
 * Rank r owns a contiguous slice of the flat parameter buffer, cut at segment boundaries
 * (trainer.h: the optimizer's pieces of at most 256 Ki floats) into nearly equal float counts.
 * It keeps the moments of its slice only (8 bytes per parameter become 8/N), receives only its
 * slice of the summed gradient (reduce-scatter, loop.c), steps it, and the weights are
 * all-gathered afterwards, so every rank again holds all of them.
 *
 * Why segment boundaries: one process computes the gradient norm as Σ over segments, in
 * order, of each segment's Σ g² (optim.c). Here each rank computes the sums of its own
 * segments, an all-reduce of that table (one nonzero term per entry: exact) gives every rank
 * the same table, and they add it in the same order — the single process's double, to the
 * bit, whatever the number of ranks. AdamW is elementwise, so the slices' updates are the
 * single process's too.
 *
 * Checkpoints keep their format: rank 0 gathers the moments (the first into the gradient
 * buffer, which is free between steps, the second into a temporary one) and writes the usual
 * file, so a run resumes with or without ZeRO-1 and on any number of ranks; a resumed rank
 * reads the whole checkpoint and keeps its slice. */
#include "train/dist.h"
#include "train/trainer.h"

#include "core/alloc.h"
#include "core/error.h"

#include <math.h>
#include <string.h>

/* Floats per collective: 4 MiB messages, as loop.c's. */
#define ZBUCKET ((int64_t)1 << 20)

qkv_status qkv__zero_begin(qkv__zero *z, qkv_trainer *t, qkv_dist *d) {
    memset(z, 0, sizeof *z);
    z->d = d, z->rank = qkv_dist_rank(d), z->size = qkv_dist_size(d);
    const int N = z->size;
    const int64_t n = t->n_floats, S = t->n_segs;
    z->bound = qkv__alloc(2 * (size_t)(N + 1) * sizeof *z->bound);
    z->partial = qkv__calloc((size_t)(S ? S : 1), sizeof *z->partial);
    if (!z->bound || !z->partial) {
        qkv__zero_end(z);
        return qkv__fail(QKV_ERR_NOMEM, "ZeRO-1: out of memory");
    }
    z->seg = z->bound + N + 1;
    /* rank r starts at the first segment that begins at or past r·n / N */
    z->seg[0] = 0, z->bound[0] = 0;
    for (int r = 1; r < N; r++) {
        const int64_t want = (int64_t)((double)n * r / N);
        int64_t s = z->seg[r - 1];
        while (s < S && t->segs[s].begin < want) s++;
        z->seg[r] = s;
        z->bound[r] = s < S ? t->segs[s].begin : n;
    }
    z->seg[N] = S, z->bound[N] = n;
    const int64_t b = z->bound[z->rank], e = z->bound[z->rank + 1];
    if (t->mv_begin == b && t->mv_end == e) return QKV_OK; /* sharded so already */
    if (qkv__tsharded(t)) {
        qkv__zero_end(z);
        return qkv__fail(QKV_ERR_INVALID_ARG,
                         "ZeRO-1: the trainer's optimizer state is sharded for another number "
                         "of ranks (resume from a checkpoint instead)");
    }
    if (b == 0 && e == n) return QKV_OK; /* one rank: the slice is everything */
    /* Each moment's slice passes through the gradient buffer (free before a step), so that its
     * full buffer is gone before the slice is allocated: the start never holds more than the
     * trainer already did. Until both are in, the trainer holds no moments (an empty range). */
    const int64_t k = e - b;
    float **mv[2] = {&t->m, &t->v}, *slice[2] = {NULL, NULL};
    for (int i = 0; i < 2; i++) {
        memcpy(t->g, *mv[i] + b, (size_t)k * sizeof(float));
        qkv__free(*mv[i]);
        *mv[i] = NULL;
        t->mv_begin = t->mv_end = b;
        slice[i] = qkv__alloc((size_t)k * sizeof(float));
        if (!slice[i]) {
            qkv__free(slice[0]), qkv__free(t->m), qkv__free(t->v);
            t->m = t->v = NULL;
            qkv__zero_end(z);
            return qkv__fail(QKV_ERR_NOMEM, "ZeRO-1: out of memory (the trainer's optimizer state "
                                            "is lost: resume from a checkpoint)");
        }
        memcpy(slice[i], t->g, (size_t)k * sizeof(float));
    }
    t->m = slice[0], t->v = slice[1], t->mv_begin = b, t->mv_end = e;
    return QKV_OK;
}

void qkv__zero_end(qkv__zero *z) {
    qkv__free(z->bound);
    qkv__free(z->partial);
    z->bound = z->seg = NULL, z->partial = NULL;
}

qkv_status qkv__zero_step(qkv__zero *z, qkv_runtime *rt, qkv_trainer *t, const qkv_adamw *hp,
                          float lr, float max_norm, float *norm) {
    if (!(max_norm >= 0) || isinf(max_norm))
        return qkv__fail(QKV_ERR_INVALID_ARG, "clip_grad_norm: max_norm %g (need >= 0, finite)",
                         (double)max_norm);
    const int64_t S = t->n_segs, s0 = z->seg[z->rank], s1 = z->seg[z->rank + 1];
    memset(z->partial, 0, (size_t)S * sizeof *z->partial);
    qkv__trainer_sumsq(rt, t, s0, s1, z->partial);
    if (z->size > 1) QKV_TRY(qkv__dist_sum_f64(z->d, z->partial, S, "summing the gradient norm"));
    double sumsq = 0;
    for (int64_t i = 0; i < S; i++) sumsq += z->partial[i]; /* optim.c's order */
    float coef;
    qkv__clip_coef(sumsq, max_norm, norm, &coef);
    if (!isfinite(*norm)) return QKV_OK; /* every rank sees it: nothing updated anywhere */
    QKV_TRY(qkv__trainer_adamw_segs(rt, t, hp, lr, coef, s0, s1));
    if (z->size == 1) return QKV_OK;
    return qkv__dist_allgather_f32(z->d, t->w, t->n_floats, z->bound, ZBUCKET,
                                   "sharing the updated weights");
}

qkv_status qkv__zero_save(qkv__zero *z, qkv_trainer *t, const char *path, const char *user_json) {
    if (z->size == 1) return qkv_trainer_save(t, path, user_json);
    const int64_t n = t->n_floats, b = t->mv_begin, e = t->mv_end;
    /* rank 0: the first moments into the gradient buffer (free between steps), the second into
     * a temporary one; each with its own slice in place first */
    float *fm = NULL, *fv = NULL;
    qkv_status s = QKV_OK;
    if (z->rank == 0) {
        fm = t->g;
        fv = qkv__calloc((size_t)n, sizeof *fv);
        if (!fv) s = qkv__fail(QKV_ERR_NOMEM, "saving the checkpoint: out of memory (ZeRO-1)");
        if (fv) {
            memset(fm, 0, (size_t)n * sizeof *fm);
            memcpy(fm + b, t->m, (size_t)(e - b) * sizeof *fm);
            memcpy(fv + b, t->v, (size_t)(e - b) * sizeof *fv);
        }
    }
    /* the other ranks take part even if rank 0 failed: it then stops, and they with it */
    const char *what = "gathering the optimizer state";
    qkv_status g1 = qkv__dist_gather_slices_f32(z->d, t->m, fm, n, z->bound, ZBUCKET, what);
    if (s == QKV_OK) s = g1;
    if (s == QKV_OK) s = qkv__dist_gather_slices_f32(z->d, t->v, fv, n, z->bound, ZBUCKET, what);
    if (s == QKV_OK && z->rank == 0) {
        float *m = t->m, *v = t->v; /* the trainer whole for the save, then its slice again */
        t->m = fm, t->v = fv, t->mv_begin = 0, t->mv_end = n;
        s = qkv_trainer_save(t, path, user_json);
        t->m = m, t->v = v, t->mv_begin = b, t->mv_end = e;
    }
    qkv__free(fv);
    return s;
}
