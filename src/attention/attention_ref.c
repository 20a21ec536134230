/* attention_ref.c — the reference scaled dot-product attention: forward, backward, probs.
 *
 * This is the oracle every fast attention kernel is tested against, so it is written for
 * clarity and exactness, not speed:
 *   - every dot product, softmax sum and gradient sum is accumulated in double and rounded to
 *     float once, when stored;
 *   - every output element is produced by exactly one task in a fixed order, so results do not
 *     depend on the thread count at all (not even in the last bit);
 *   - masks, ALiBi distances and dropout indices come from the shared rules in attention.h.
 *
 * Memory: no Tq x Tk buffer (except the output of probs). The forward and probs keep one row of
 * Tk scores per thread; the backward recomputes each score from q, k and the forward's lse,
 * as FlashAttention does, and keeps O(D + Dv + group * Tq) doubles per thread.
 *
 * Parallelism: forward, probs and the dq pass run one task per (b, query head); the dk/dv pass
 * runs one task per (b, kv head), which owns its dk/dv rows outright (under GQA several query
 * heads write the same kv head, so a per-query-head split would race).
 *
 * The math, with the reasons for each formula, is in docs/ATTENTION.md. */
#include "attention/attention.h"
#include "core/alloc.h"
#include "core/error.h"
#include "core/rng.h"

#include <math.h>
#include <string.h>

/* Everything a task needs; shared read-only by all threads except the output rows each task
 * owns and its thread's workspace ws + tid * ws_stride. */
typedef struct ref_ctx {
    const qkv__attn_problem *pb;
    const float *q;    /* [B, Tq, Hq, D] */
    const float *k;    /* [B, Tk, Hk, D] */
    const float *v;    /* [B, Tk, Hk, Dv] */
    const float *out;  /* [B, Tq, Hq, Dv] forward output (backward input) */
    const float *lse;  /* [B, Hq, Tq] forward output (backward input) */
    const float *dout; /* [B, Tq, Hq, Dv] */
    float *o_out;      /* [B, Tq, Hq, Dv] forward result */
    float *o_lse;      /* [B, Hq, Tq] forward result, or NULL */
    float *dq;         /* [B, Tq, Hq, D] */
    float *dk;         /* [B, Tk, Hk, D] */
    float *dv;         /* [B, Tk, Hk, Dv] */
    float *p;          /* [B, Hq, Tq, Tk] probs result */
    double *ws;        /* [n_threads, ws_stride] */
    int64_t ws_stride;
} ref_ctx;

/* ---------------------------------------------------------------- row addressing */

static const float *q_row(const ref_ctx *c, int64_t b, int64_t i, int64_t h) {
    const qkv__attn_problem *pb = c->pb;
    return c->q + ((b * pb->Tq + i) * pb->Hq + h) * pb->D;
}
static const float *k_row(const ref_ctx *c, int64_t b, int64_t j, int64_t hk) {
    const qkv__attn_problem *pb = c->pb;
    return c->k + ((b * pb->Tk + j) * pb->Hk + hk) * pb->D;
}
static const float *v_row(const ref_ctx *c, int64_t b, int64_t j, int64_t hk) {
    const qkv__attn_problem *pb = c->pb;
    return c->v + ((b * pb->Tk + j) * pb->Hk + hk) * pb->Dv;
}
/* Offset of row (b, i, h) in out / dout [B, Tq, Hq, Dv]. */
static int64_t o_off(const qkv__attn_problem *pb, int64_t b, int64_t i, int64_t h) {
    return ((b * pb->Tq + i) * pb->Hq + h) * pb->Dv;
}
/* Offset of (b, h, i) in lse [B, Hq, Tq]. */
static int64_t lse_off(const qkv__attn_problem *pb, int64_t b, int64_t h, int64_t i) {
    return (b * pb->Hq + h) * pb->Tq + i;
}

/* ---------------------------------------------------------------- scores */

static double dot(const float *a, const float *b, int64_t n) {
    double s = 0.0;
    for (int64_t x = 0; x < n; x++) s += (double)a[x] * (double)b[x];
    return s;
}

/* score(b,h,i,j) = scale * q·k + bias(b,h,i,j) - slope[h] * |i + (Tk - Tq) - j|, for a key j
 * the masks leave visible (the caller checks). */
static double score(const ref_ctx *c, int64_t b, int64_t h, int64_t i, int64_t j) {
    const qkv__attn_problem *pb = c->pb;
    const qkv_attention_desc *d = pb->d;
    double s = pb->scale * dot(q_row(c, b, i, h), k_row(c, b, j, h / pb->group), pb->D);
    if (d->bias)
        s +=
            (double)d->bias[b * d->bias_stride_b + h * d->bias_stride_h + i * d->bias_stride_q + j];
    if (d->alibi_slopes)
        s -= (double)d->alibi_slopes[h] * (double)qkv__attn_alibi_distance(pb, i, j);
    return s;
}

/* The dropout factor of score (b,h,i,j): 1/(1-p) if kept, 0 if dropped, 1 without dropout. */
static double drop_factor(const ref_ctx *c, int64_t b, int64_t h, int64_t i, int64_t j) {
    const qkv__attn_problem *pb = c->pb;
    float p = pb->d->dropout_p;
    if (p == 0.0f) return 1.0;
    float u = qkv__rng_uniform(pb->d->dropout_seed, QKV_ATTN_DROPOUT_STREAM,
                               qkv__attn_dropout_index(pb, b, h, i, j));
    return u >= p ? pb->keep_scale : 0.0;
}

/* The softmax of row (b,h,i): fills s[lo..hi) with the scores of the visible keys and returns
 * the row max *m and *sum = Σ exp(s - m). Returns 0 for a row with nothing to attend to: no
 * visible key, or only scores of -inf (a bias can mask too). */
static int row_softmax(const ref_ctx *c, int64_t b, int64_t h, int64_t i, double *s, int64_t *lo,
                       int64_t *hi, double *m, double *sum) {
    qkv__attn_key_range(c->pb, b, i, lo, hi);
    double mx = -INFINITY;
    for (int64_t j = *lo; j < *hi; j++) {
        s[j] = score(c, b, h, i, j);
        if (s[j] > mx) mx = s[j];
    }
    if (mx == -INFINITY) return 0;
    double acc = 0.0;
    for (int64_t j = *lo; j < *hi; j++) acc += exp(s[j] - mx);
    *m = mx;
    *sum = acc;
    return 1;
}

/* P(b,h,i,j) recomputed from the forward's log-sum-exp L (row not empty, so L is finite).
 * Mathematically s <= L; the clamp keeps rounding of a float L from producing P > 1. */
static double prob_from_lse(double s, double L) { return exp(fmin(s - L, 0.0)); }

/* ---------------------------------------------------------------- forward */

/* Tasks t = b*Hq + h. Workspace per thread: s [Tk], acc [Dv]. */
static void forward_task(void *ctx, int64_t begin, int64_t end, int tid) {
    const ref_ctx *c = ctx;
    const qkv__attn_problem *pb = c->pb;
    double *s = c->ws + tid * c->ws_stride; /* [Tk] scores of one row */
    double *acc = s + pb->Tk;               /* [Dv] output row accumulator */
    for (int64_t t = begin; t < end; t++) {
        int64_t b = t / pb->Hq, h = t % pb->Hq, hk = h / pb->group;
        for (int64_t i = 0; i < pb->Tq; i++) {
            float *o = c->o_out + o_off(pb, b, i, h); /* [Dv] */
            int64_t lo, hi;
            double m, sum;
            if (!row_softmax(c, b, h, i, s, &lo, &hi, &m, &sum)) {
                memset(o, 0, (size_t)pb->Dv * sizeof *o);
                if (c->o_lse) c->o_lse[lse_off(pb, b, h, i)] = -INFINITY;
                continue;
            }
            memset(acc, 0, (size_t)pb->Dv * sizeof *acc);
            for (int64_t j = lo; j < hi; j++) {
                double pj = exp(s[j] - m) / sum * drop_factor(c, b, h, i, j);
                if (pj == 0.0) continue;
                const float *vj = v_row(c, b, j, hk); /* [Dv] */
                for (int64_t x = 0; x < pb->Dv; x++) acc[x] += pj * (double)vj[x];
            }
            for (int64_t x = 0; x < pb->Dv; x++) o[x] = (float)acc[x];
            if (c->o_lse) c->o_lse[lse_off(pb, b, h, i)] = (float)(m + log(sum));
        }
    }
}

/* ---------------------------------------------------------------- probs */

/* Tasks t = b*Hq + h. Workspace per thread: s [Tk]. */
static void probs_task(void *ctx, int64_t begin, int64_t end, int tid) {
    const ref_ctx *c = ctx;
    const qkv__attn_problem *pb = c->pb;
    double *s = c->ws + tid * c->ws_stride; /* [Tk] */
    for (int64_t t = begin; t < end; t++) {
        int64_t b = t / pb->Hq, h = t % pb->Hq;
        for (int64_t i = 0; i < pb->Tq; i++) {
            float *prow = c->p + (t * pb->Tq + i) * pb->Tk; /* [Tk] */
            int64_t lo, hi;
            double m, sum;
            memset(prow, 0, (size_t)pb->Tk * sizeof *prow);
            if (!row_softmax(c, b, h, i, s, &lo, &hi, &m, &sum)) continue;
            for (int64_t j = lo; j < hi; j++) prow[j] = (float)(exp(s[j] - m) / sum);
        }
    }
}

/* ---------------------------------------------------------------- backward
 *
 * With P the softmax, Z the dropout factor (0 or 1/(1-p)), O = (P∘Z) V:
 *   dV_j  = Σ_i P_ij Z_ij dO_i
 *   dP̃_ij = Z_ij (dO_i · V_j)                 gradient w.r.t. the undropped P
 *   dS_ij = P_ij (dP̃_ij - Drow_i),  Drow_i = dO_i · O_i   (= Σ_j P_ij dP̃_ij)
 *   dQ_i  = scale Σ_j dS_ij K_j,    dK_j = scale Σ_i dS_ij Q_i
 * P_ij is recomputed as exp(s_ij - lse_i). A row with lse = -inf contributes nothing. */

/* dq. Tasks t = b*Hq + h. Workspace per thread: acc [D]. */
static void backward_dq_task(void *ctx, int64_t begin, int64_t end, int tid) {
    const ref_ctx *c = ctx;
    const qkv__attn_problem *pb = c->pb;
    double *acc = c->ws + tid * c->ws_stride; /* [D] */
    for (int64_t t = begin; t < end; t++) {
        int64_t b = t / pb->Hq, h = t % pb->Hq, hk = h / pb->group;
        for (int64_t i = 0; i < pb->Tq; i++) {
            float *dqi = c->dq + ((b * pb->Tq + i) * pb->Hq + h) * pb->D; /* [D] */
            const float *doi = c->dout + o_off(pb, b, i, h);              /* [Dv] */
            double L = (double)c->lse[lse_off(pb, b, h, i)];
            int64_t lo, hi;
            qkv__attn_key_range(pb, b, i, &lo, &hi);
            memset(acc, 0, (size_t)pb->D * sizeof *acc);
            if (L == -INFINITY) hi = lo; /* a row with no visible key: dq = 0 */
            double drow = hi > lo ? dot(doi, c->out + o_off(pb, b, i, h), pb->Dv) : 0.0;
            for (int64_t j = lo; j < hi; j++) {
                double P = prob_from_lse(score(c, b, h, i, j), L);
                if (P == 0.0) continue;
                double dp = drop_factor(c, b, h, i, j) * dot(doi, v_row(c, b, j, hk), pb->Dv);
                double ds = P * (dp - drow);
                const float *kj = k_row(c, b, j, hk); /* [D] */
                for (int64_t x = 0; x < pb->D; x++) acc[x] += ds * (double)kj[x];
            }
            for (int64_t x = 0; x < pb->D; x++) dqi[x] = (float)(pb->scale * acc[x]);
        }
    }
}

/* dk and dv. Tasks t = b*Hk + hk, each owning dk/dv rows (b, :, hk). Workspace per thread:
 * drow [group, Tq], acck [D], accv [Dv]. */
static void backward_dkv_task(void *ctx, int64_t begin, int64_t end, int tid) {
    const ref_ctx *c = ctx;
    const qkv__attn_problem *pb = c->pb;
    const int64_t G = pb->group;
    double *drow = c->ws + tid * c->ws_stride; /* [G, Tq] Drow of the group's query heads */
    double *acck = drow + G * pb->Tq;          /* [D] */
    double *accv = acck + pb->D;               /* [Dv] */
    for (int64_t t = begin; t < end; t++) {
        int64_t b = t / pb->Hk, hk = t % pb->Hk;
        for (int64_t g = 0; g < G; g++) {
            for (int64_t i = 0; i < pb->Tq; i++) {
                int64_t off = o_off(pb, b, i, hk * G + g);
                drow[g * pb->Tq + i] = dot(c->dout + off, c->out + off, pb->Dv);
            }
        }
        for (int64_t j = 0; j < pb->Tk; j++) {
            const float *vj = v_row(c, b, j, hk); /* [Dv] */
            memset(acck, 0, (size_t)pb->D * sizeof *acck);
            memset(accv, 0, (size_t)pb->Dv * sizeof *accv);
            int64_t ilo, ihi; /* the queries that see key j */
            qkv__attn_query_range(pb, b, j, &ilo, &ihi);
            for (int64_t g = 0; g < G; g++) {
                int64_t h = hk * G + g;
                for (int64_t i = ilo; i < ihi; i++) {
                    double L = (double)c->lse[lse_off(pb, b, h, i)];
                    if (L == -INFINITY) continue;
                    double P = prob_from_lse(score(c, b, h, i, j), L);
                    if (P == 0.0) continue;
                    const float *doi = c->dout + o_off(pb, b, i, h); /* [Dv] */
                    const float *qi = q_row(c, b, i, h);             /* [D] */
                    double z = drop_factor(c, b, h, i, j);
                    if (z != 0.0)
                        for (int64_t x = 0; x < pb->Dv; x++) accv[x] += P * z * (double)doi[x];
                    double dp = z != 0.0 ? z * dot(doi, vj, pb->Dv) : 0.0;
                    double ds = P * (dp - drow[g * pb->Tq + i]);
                    for (int64_t x = 0; x < pb->D; x++) acck[x] += ds * (double)qi[x];
                }
            }
            float *dkj = c->dk + ((b * pb->Tk + j) * pb->Hk + hk) * pb->D;  /* [D] */
            float *dvj = c->dv + ((b * pb->Tk + j) * pb->Hk + hk) * pb->Dv; /* [Dv] */
            for (int64_t x = 0; x < pb->D; x++) dkj[x] = (float)(pb->scale * acck[x]);
            for (int64_t x = 0; x < pb->Dv; x++) dvj[x] = (float)accv[x];
        }
    }
}

/* ---------------------------------------------------------------- driver */

/* Allocates ws_stride doubles per thread of rt into c->ws. */
static qkv_status alloc_ws(const char *fn, qkv_runtime *rt, int64_t ws_stride, ref_ctx *c) {
    size_t bytes;
    int n_threads = qkv_runtime_n_threads(rt);
    if (qkv__mul_overflow((size_t)ws_stride, sizeof(double), &bytes) ||
        qkv__mul_overflow(bytes, (size_t)n_threads, &bytes) || !(c->ws = qkv__alloc(bytes)))
        return qkv__fail(QKV_ERR_NOMEM, "%s: cannot allocate %d x %lld doubles of workspace", fn,
                         n_threads, (long long)ws_stride);
    c->ws_stride = ws_stride;
    return QKV_OK;
}

/* Grain for n tasks of `work` multiply-adds in all: small problems stay on the calling thread. */
static int64_t grain_for(int64_t n, double work) { return work < 65536.0 ? n : 1; }

/* Multiply-adds of one pass over the score grid (double: the grid may not fit int64). */
static double grid_work(const qkv__attn_problem *pb) {
    return (double)pb->B * (double)pb->Hq * (double)pb->Tq * (double)pb->Tk *
           (double)(pb->D + pb->Dv);
}

qkv_status qkv__attention_forward_ref(qkv_runtime *rt, const qkv__attn_problem *pb, const float *q,
                                      const float *k, const float *v, float *out, float *lse) {
    ref_ctx c = {.pb = pb, .q = q, .k = k, .v = v, .o_out = out, .o_lse = lse};
    QKV_TRY(alloc_ws("qkv_attention_forward", rt, pb->Tk + pb->Dv, &c));
    int64_t n = pb->B * pb->Hq;
    qkv_parallel_for(rt, n, grain_for(n, grid_work(pb)), forward_task, &c);
    qkv__free(c.ws);
    return QKV_OK;
}

qkv_status qkv__attention_probs_ref(qkv_runtime *rt, const qkv__attn_problem *pb, const float *q,
                                    const float *k, float *p) {
    ref_ctx c = {.pb = pb, .q = q, .k = k, .p = p};
    QKV_TRY(alloc_ws("qkv_attention_probs", rt, pb->Tk, &c));
    int64_t n = pb->B * pb->Hq;
    qkv_parallel_for(rt, n, grain_for(n, grid_work(pb)), probs_task, &c);
    qkv__free(c.ws);
    return QKV_OK;
}

qkv_status qkv__attention_backward_ref(qkv_runtime *rt, const qkv__attn_problem *pb, const float *q,
                                       const float *k, const float *v, const float *out,
                                       const float *lse, const float *dout, float *dq, float *dk,
                                       float *dv) {
    ref_ctx c = {.pb = pb,
                 .q = q,
                 .k = k,
                 .v = v,
                 .out = out,
                 .lse = lse,
                 .dout = dout,
                 .dq = dq,
                 .dk = dk,
                 .dv = dv};
    /* One workspace sized for both passes: dq needs D, dk/dv needs G*Tq + D + Dv. */
    QKV_TRY(alloc_ws("qkv_attention_backward", rt, pb->group * pb->Tq + pb->D + pb->Dv, &c));
    double work = grid_work(pb) + (double)pb->B * (double)pb->Hq * (double)pb->Tq * (double)pb->D;
    int64_t nq = pb->B * pb->Hq, nk = pb->B * pb->Hk;
    qkv_parallel_for(rt, nq, grain_for(nq, work), backward_dq_task, &c);
    qkv_parallel_for(rt, nk, grain_for(nk, work), backward_dkv_task, &c);
    qkv__free(c.ws);
    return QKV_OK;
}
