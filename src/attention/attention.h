/* attention.h — internal interface of src/attention: the validated problem, the masking rules
 * and the dropout convention shared by every attention implementation (the reference in
 * attention_ref.c and, later, the fast kernels).
 *
 * Why one header for the rules: the reference is the oracle the fast kernels are tested
 * against, so "which key does query i see", "what is the ALiBi distance" and "which dropout
 * random number belongs to score (b, h, i, j)" must be written exactly once.
 *
 * Invariants of a qkv__attn_problem (established by qkv__attn_validate in attention.c):
 *   B, Tq, Tk, Hq, Hk, D, Dv > 0; Hq % Hk == 0; group == Hq / Hk;
 *   every element count of q, k, v, out, lse (and of the B*Hq*Tq*Tk score grid when it is
 *   indexed: probs, dropout) fits in int64 and in size_t bytes;
 *   window_left/right >= -1; kv_lens[b] in [0, Tk]; dropout_p in [0, 1); scale finite;
 *   bias strides >= 0 and the largest bias index fits in int64.
 * See docs/ATTENTION.md for the math. */
#ifndef QKV_ATTENTION_ATTENTION_H
#define QKV_ATTENTION_ATTENTION_H

#include "qkv.h"

#include <stdint.h>

/* The descriptor with its defaults resolved. d points to the descriptor (the entry point's
 * copy of the caller's, in this version's layout) for the optional arrays kv_lens, bias,
 * alibi_slopes and the mask fields. */
typedef struct qkv__attn_problem {
    const qkv_attention_desc *d;
    int64_t B, Tq, Tk; /* batch, query tokens, key tokens */
    int64_t Hq, Hk;    /* query heads, key/value heads */
    int64_t group;     /* Hq / Hk: query head h reads kv head h / group */
    int64_t D, Dv;     /* head dim of q/k, head dim of v/out (v_head_dim 0 resolved) */
    double scale;      /* d->scale, or 1/sqrt(D) when d->scale == 0 */
    double keep_scale; /* 1 / (1 - dropout_p) */
} qkv__attn_problem;

/* Checks d and the pointers of one entry point (`fn` names it in messages); fills *pb.
 * Returns QKV_ERR_INVALID_ARG with a message naming the offending field. `need_grid` asks
 * for the B*Hq*Tq*Tk check (probs; dropout adds it by itself). */
qkv_status qkv__attn_validate(const char *fn, const qkv_attention_desc *d, int need_grid,
                              qkv__attn_problem *pb);

/* Reference implementations (attention_ref.c). Arguments are validated; they fail only with
 * QKV_ERR_NOMEM. Shapes as in qkv.h. */
qkv_status qkv__attention_forward_ref(qkv_runtime *rt, const qkv__attn_problem *pb, const float *q,
                                      const float *k, const float *v, float *out, float *lse);
qkv_status qkv__attention_backward_ref(qkv_runtime *rt, const qkv__attn_problem *pb, const float *q,
                                       const float *k, const float *v, const float *out,
                                       const float *lse, const float *dout, float *dq, float *dk,
                                       float *dv);
qkv_status qkv__attention_probs_ref(qkv_runtime *rt, const qkv__attn_problem *pb, const float *q,
                                    const float *k, float *p);

/* ---------------------------------------------------------------- masking rules */

/* The keys visible to query i of batch b form one interval [*lo, *hi) (empty when *lo == *hi),
 * because every mask is a bound on j. With diag = i + (Tk - Tq) (bottom-right alignment):
 *   0 <= j < Tk                         always
 *   j < kv_lens[b]                      kv_lens != NULL (padding)
 *   j <= diag                           causal
 *   j >= diag - window_left             window_left >= 0
 *   j <= diag + window_right            window_right >= 0
 * Written so that no intermediate overflows for any window value up to INT64_MAX. A bias of
 * -inf can still hide keys inside the interval; implementations treat a row whose scores are
 * all -inf like an empty row. */
static inline void qkv__attn_key_range(const qkv__attn_problem *pb, int64_t b, int64_t i,
                                       int64_t *lo, int64_t *hi) {
    const qkv_attention_desc *d = pb->d;
    int64_t diag = (pb->Tk - pb->Tq) + i; /* in (-Tq, Tk): no overflow */
    int64_t l = 0, h = pb->Tk;
    if (d->kv_lens && d->kv_lens[b] < h) h = d->kv_lens[b];
    if (d->causal && diag + 1 < h) h = diag + 1;
    if (d->window_right >= 0 && d->window_right < h - diag) h = diag + d->window_right + 1;
    if (d->window_left >= 0 && diag > d->window_left) l = diag - d->window_left;
    if (h < l) h = l;
    *lo = l;
    *hi = h;
}

/* The queries that see key j of batch b: also one interval [*lo, *hi), since every bound above
 * is monotone in i. Solving the same inequalities for i (diag = i + off, off = Tk - Tq):
 *   j < kv_lens[b]                      else empty
 *   causal:          i >= j - off
 *   window_right:    i >= j - off - window_right
 *   window_left:     i <= j - off + window_left
 * Exactly the transpose of qkv__attn_key_range (tests/test_attention_edge.c checks this). */
static inline void qkv__attn_query_range(const qkv__attn_problem *pb, int64_t b, int64_t j,
                                         int64_t *lo, int64_t *hi) {
    const qkv_attention_desc *d = pb->d;
    int64_t jo = j - (pb->Tk - pb->Tq); /* j - off = j - Tk + Tq, in (-Tk, Tq) */
    int64_t l = 0, h = pb->Tq;
    if (d->kv_lens && j >= d->kv_lens[b]) h = 0;
    if (d->causal && jo > l) l = jo;
    if (d->window_right >= 0 && jo - l > d->window_right) l = jo - d->window_right;
    if (d->window_left >= 0 && d->window_left < h - jo) h = jo + d->window_left + 1;
    if (h < l) h = l;
    *lo = l;
    *hi = h;
}

/* 1 if key j is visible to query i of batch b (the same rule as qkv__attn_key_range). */
static inline int qkv__attn_key_visible(const qkv__attn_problem *pb, int64_t b, int64_t i,
                                        int64_t j) {
    int64_t lo, hi;
    qkv__attn_key_range(pb, b, i, &lo, &hi);
    return j >= lo && j < hi;
}

/* ALiBi distance |i + (Tk - Tq) - j|: the bias is -slope[h] * distance. */
static inline int64_t qkv__attn_alibi_distance(const qkv__attn_problem *pb, int64_t i, int64_t j) {
    int64_t r = (pb->Tk - pb->Tq) + i - j; /* |r| < Tq + Tk */
    return r < 0 ? -r : r;
}

/* ---------------------------------------------------------------- dropout */

/* The RNG stream of attention-probability dropout (src/core/rng.h): the uniform number of
 * score (b, h, i, j) is qkv__rng_uniform(dropout_seed, QKV_ATTN_DROPOUT_STREAM,
 * qkv__attn_dropout_index(...)); the probability is kept iff that number is >= dropout_p. */
#define QKV_ATTN_DROPOUT_STREAM UINT64_C(0x6174746e64726f70) /* "attndrop" */

/* ((b*Hq + h)*Tq + i)*Tk + j: unique per score; fits in int64 (validated). Consecutive keys
 * of a row have consecutive indices (the fused kernels generate a row's mask from the index
 * of its key 0 plus j, 4 per Philox block). */
static inline uint64_t qkv__attn_dropout_index(const qkv__attn_problem *pb, int64_t b, int64_t h,
                                               int64_t i, int64_t j) {
    return (uint64_t)(((b * pb->Hq + h) * pb->Tq + i) * pb->Tk + j);
}

#endif
