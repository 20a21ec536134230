/* s2s_batch.c — batches of sentence pairs for training an encoder-decoder (arch marian) with
 * qkv_train_run on a parallel dataset (qkv_data_prepare_parallel).
 *
 * Micro-batch m holds the pairs drawn uniformly (with replacement) from the train split as a
 * pure function of (seed, m, row) — the draw of qkv_dataset_sample — so a resumed run and
 * every MPI rank (which computes the micro-batches r, r + N, ... of a step) see the batches of
 * one uninterrupted single-process run. A batch is padded to its longest source and target
 * (no bucketing by length: the draws are independent): sources cut at src_seq tokens and
 * targets at seq, keeping the end-of-sentence id last as transformers' truncation does;
 * padded source positions hold pad_token_id and are masked by src_lens; padded labels are
 * -100 (ignored). The decoder's inputs are the labels shifted right after
 * decoder_start_token_id (the trainer does it, as transformers' shift_tokens_right).
 * Validation takes the val split's pairs in order, `batch` at a time (the last batch may be
 * smaller); its loss is per labelled token over all of them. */
#include "train/s2s_batch.h"

#include "core/alloc.h"
#include "core/error.h"
#include "train/data.h"
#include "train/dist.h"
#include "train/trainer.h"

#include <inttypes.h>
#include <string.h>

#define BAD(...) qkv__fail(QKV_ERR_INVALID_ARG, "qkv_train_run: " __VA_ARGS__)

struct qkv__s2s {
    int64_t B, S, T;           /* pairs per micro-batch; source and target caps */
    int32_t *src, *tgt, *lens; /* [B, S], [B, T], [B] */
    int64_t *idx;              /* [B] the pairs of the batch */
    int32_t pad;               /* the source's padding id (masked) */
    const qkv_dataset *train;  /* (for pair_len) */
    int64_t *order;            /* length-grouped runs: the order of epoch order_epoch, or NULL */
    int64_t order_epoch;
};

static int64_t src_cap(const qkv_train_options *o) { return o->src_seq > 0 ? o->src_seq : o->seq; }

int qkv__s2s_wanted(const qkv_trainer *t, const qkv_train_options *o) {
    return t->cfg.arch == QKV__TARCH_MARIAN || (o->train && qkv_dataset_is_parallel(o->train));
}

qkv_status qkv__s2s_check(const qkv_trainer *t, const qkv_train_options *o) {
    const qkv__tconfig *c = &t->cfg;
    if (c->arch != QKV__TARCH_MARIAN)
        return BAD("a parallel dataset trains an encoder-decoder (marian), not a %s trainer",
                   qkv_trainer_arch(t));
    const qkv_dataset *ds[2] = {o->train, o->val};
    for (int i = 0; i < 2; i++) {
        if (!ds[i]) continue;
        const char *what = i ? "validation" : "train";
        if (!qkv_dataset_is_parallel(ds[i]))
            return BAD("an encoder-decoder trains on sentence pairs: the %s dataset is not a "
                       "parallel one (qkv data prepare --source --target)",
                       what);
        if (qkv_dataset_vocab_size(ds[i]) > c->V || qkv_dataset_target_vocab_size(ds[i]) > c->Vd)
            return BAD("the %s dataset's vocabularies (source %" PRId64 ", target %" PRId64
                       ") are larger than the model's (%" PRId64 ", %" PRId64 ")",
                       what, qkv_dataset_vocab_size(ds[i]), qkv_dataset_target_vocab_size(ds[i]),
                       c->V, c->Vd);
    }
    if (qkv_dataset_pairs(o->train) < 1) return BAD("the train split holds no sentence pair");
    if (o->src_seq < 0 || src_cap(o) > c->P)
        return BAD("src_seq %" PRId64 " must be in [0, the model's n_positions %" PRId64 "]",
                   o->src_seq, c->P);
    if (o->batch * (o->seq > src_cap(o) ? o->seq : src_cap(o)) > ((int64_t)1 << 40))
        return BAD("batch x seq is too large");
    return QKV_OK;
}

void qkv__s2s_free(qkv__s2s *b) {
    if (!b) return;
    qkv__free(b->src);
    qkv__free(b->tgt);
    qkv__free(b->lens);
    qkv__free(b->idx);
    qkv__free(b->order);
    qkv__free(b);
}

qkv_status qkv__s2s_begin(const qkv_trainer *t, const qkv_train_options *o, qkv__s2s **out) {
    qkv__s2s *b = qkv__calloc(1, sizeof *b);
    if (!b) return qkv__fail(QKV_ERR_NOMEM, "qkv_train_run: out of memory");
    b->B = o->batch, b->S = src_cap(o), b->T = o->seq;
    b->pad = t->cfg.pad_id >= 0 && t->cfg.pad_id < t->cfg.V ? t->cfg.pad_id : 0;
    b->src = qkv__alloc((size_t)(b->B * b->S) * sizeof *b->src);
    b->tgt = qkv__alloc((size_t)(b->B * b->T) * sizeof *b->tgt);
    b->lens = qkv__alloc((size_t)b->B * sizeof *b->lens);
    b->idx = qkv__alloc((size_t)b->B * sizeof *b->idx);
    b->train = o->train, b->order_epoch = -1;
    if (o->length_grouped)
        b->order = qkv__alloc((size_t)qkv_dataset_pairs(o->train) * sizeof *b->order);
    if (!b->src || !b->tgt || !b->lens || !b->idx || (o->length_grouped && !b->order)) {
        qkv__s2s_free(b);
        return qkv__fail(QKV_ERR_NOMEM, "qkv_train_run: out of memory (sentence-pair batches)");
    }
    *out = b;
    return QKV_OK;
}

static int64_t min64(int64_t a, int64_t x) { return a < x ? a : x; }

/* The batch of pairs b->idx[0..n) of ds: (n, S') sources padded with pad, (n, T') labels
 * padded with -100, S' and T' the longest of the batch after truncation. */
static qkv_status fill(qkv__s2s *b, const qkv_dataset *ds, int64_t n, qkv_train_batch *out,
                       int64_t *tokens) {
    int64_t S = 1, T = 1;
    for (int64_t j = 0; j < n; j++) {
        const int64_t ls = min64(qkv_dataset_sentence_len(ds, 0, b->idx[j]), b->S),
                      lt = min64(qkv_dataset_sentence_len(ds, 1, b->idx[j]), b->T);
        if (ls > S) S = ls;
        if (lt > T) T = lt;
    }
    *tokens = 0;
    for (int64_t j = 0; j < n; j++) {
        int64_t ls, lt;
        QKV_TRY(qkv_dataset_sentence(ds, 0, b->idx[j], S, b->src + j * S, &ls));
        QKV_TRY(qkv_dataset_sentence(ds, 1, b->idx[j], T, b->tgt + j * T, &lt));
        for (int64_t k = ls; k < S; k++) b->src[j * S + k] = b->pad;
        for (int64_t k = lt; k < T; k++) b->tgt[j * T + k] = -100;
        b->lens[j] = (int32_t)ls;
        *tokens += lt;
    }
    memset(out, 0, sizeof *out);
    out->struct_size = sizeof *out;
    out->targets = b->tgt;
    out->B = n, out->T = T, out->S = S;
    out->src_ids = b->src;
    out->src_lens = b->lens;
    return QKV_OK;
}

/* A pair's cost in the length grouping: its source and target tokens after truncation. */
static int64_t pair_len(const void *ctx, int64_t i) {
    const qkv__s2s *b = ctx;
    return min64(qkv_dataset_sentence_len(b->train, 0, i), b->S) +
           min64(qkv_dataset_sentence_len(b->train, 1, i), b->T);
}

qkv_status qkv__s2s_micro(qkv_runtime *rt, qkv_trainer *t, qkv__s2s *b, const qkv_train_options *o,
                          int64_t m, float scale, float *loss, int64_t *tokens) {
    const int64_t pairs = qkv_dataset_pairs(o->train);
    int64_t n = b->B;
    if (b->order) { /* epochs of length-grouped batches: micro-batch m % M of epoch m / M */
        const int64_t M = (pairs + b->B - 1) / b->B, epoch = m / M, first = (m % M) * b->B;
        if (b->order_epoch != epoch) {
            if (qkv__epoch_order(pairs, pair_len, b, o->seed, epoch, b->B, 1, b->order) != QKV_OK)
                return qkv__fail(QKV_ERR_NOMEM, "qkv_train_run: out of memory (epoch order)");
            b->order_epoch = epoch;
        }
        n = min64(b->B, pairs - first);
        memcpy(b->idx, b->order + first, (size_t)n * sizeof *b->idx);
    } else {
        for (int64_t j = 0; j < n; j++)
            b->idx[j] = (int64_t)qkv__data_uniform_below(o->seed, (uint64_t)m, (uint64_t)j,
                                                         (uint64_t)pairs);
    }
    qkv_train_batch batch;
    QKV_TRY(fill(b, o->train, n, &batch, tokens));
    batch.dropout_seed = o->seed * 0x9E3779B97F4A7C15ull + (uint64_t)m + 1;
    return qkv_trainer_forward_backward_batch(rt, t, &batch, scale, loss);
}

qkv_status qkv__s2s_evaluate(qkv_runtime *rt, qkv_trainer *t, qkv__s2s *b,
                             const qkv_train_options *o, int rank, int size, double *loss,
                             int *any) {
    const int64_t n = qkv_dataset_pairs(o->val);
    int64_t nb = (n + b->B - 1) / b->B;
    if (nb > o->eval_batches) nb = o->eval_batches;
    *any = nb > 0;
    *loss = 0;
    if (nb <= 0) return QKV_OK;
    double *part = qkv__calloc((size_t)(2 * nb), sizeof *part); /* loss x tokens, tokens */
    if (!part) return qkv__fail(QKV_ERR_NOMEM, "validation: out of memory");
    qkv_status s = QKV_OK;
    for (int64_t i = rank; i < nb && s == QKV_OK; i += size) {
        const int64_t first = i * b->B, k = min64(b->B, n - first);
        for (int64_t j = 0; j < k; j++) b->idx[j] = first + j;
        qkv_train_batch batch;
        int64_t tok = 0;
        float l = 0;
        s = fill(b, o->val, k, &batch, &tok);
        if (s == QKV_OK) s = qkv_trainer_eval_batch(rt, t, &batch, &l);
        part[i] = (double)l * (double)tok, part[nb + i] = (double)tok;
    }
    if (s == QKV_OK && size > 1) s = qkv__dist_sum_f64(o->dist, part, 2 * nb, "validation");
    double sum = 0, count = 0;
    for (int64_t i = 0; i < nb; i++) sum += part[i], count += part[nb + i];
    qkv__free(part);
    QKV_TRY(s);
    *loss = count > 0 ? sum / count : 0;
    *any = count > 0;
    return QKV_OK;
}
