/* attention_oracle.h — an independent, materializing, double-precision attention forward for
 * the attention tests, plus the small helpers they share (random inputs, case setup).
 *
 * Why a second implementation: the library's reference (src/attention/attention_ref.c) is the
 * oracle of the fast kernels, so it needs its own oracle. This one is written from the formulas
 * in docs/ATTENTION.md without looking at the library's masking helpers: visibility is tested
 * key by key, the whole score row is materialized, everything is double. It shares only the
 * dropout convention (stream and index), which is part of the contract, and the RNG. */
#ifndef QKV_TEST_ATTENTION_ORACLE_H
#define QKV_TEST_ATTENTION_ORACLE_H

#include "attention/attention.h" /* QKV_ATTN_DROPOUT_STREAM */
#include "core/rng.h"
#include "qkv.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- random inputs */

static uint64_t oracle_rng_state_ = 0x9E3779B97F4A7C15ull;

static inline void oracle_seed(uint64_t s) { oracle_rng_state_ = s * 0x9E3779B97F4A7C15ull + 1; }

/* Uniform in [-1, 1) (xorshift64*; 24 bits, so every value is exact in float). */
static inline float oracle_uniform(void) {
    uint64_t x = oracle_rng_state_;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    oracle_rng_state_ = x;
    uint32_t r = (uint32_t)((x * 0x2545F4914F6CDD1Dull) >> 40); /* 24 bits */
    return (float)r / 8388608.0f - 1.0f;
}

static inline void oracle_fill(float *x, int64_t n, float amp) {
    for (int64_t t = 0; t < n; t++) x[t] = amp * oracle_uniform();
}

static inline double *oracle_to_double(const float *x, int64_t n) {
    double *y = malloc((size_t)(n > 0 ? n : 1) * sizeof *y);
    for (int64_t t = 0; t < n; t++) y[t] = (double)x[t];
    return y;
}

/* ---------------------------------------------------------------- the oracle */

static inline int64_t oracle_dv(const qkv_attention_desc *d) {
    return d->v_head_dim ? d->v_head_dim : d->head_dim;
}

/* Key j visible to query i of batch b, straight from the definitions in qkv.h. */
static inline int oracle_visible(const qkv_attention_desc *d, int64_t b, int64_t i, int64_t j) {
    int64_t diag = i + d->kv_len - d->q_len; /* bottom-right alignment */
    if (d->kv_lens && j >= d->kv_lens[b]) return 0;
    if (d->causal && j > diag) return 0;
    /* j < diag - wl and j > diag + wr, written without overflow for windows up to INT64_MAX */
    if (d->window_left >= 0 && diag - j > d->window_left) return 0;
    if (d->window_right >= 0 && j - diag > d->window_right) return 0;
    return 1;
}

/* The dropout multiplier of score (b,h,i,j): 0 or 1/(1-p) (1 without dropout). */
static inline double oracle_drop(const qkv_attention_desc *d, int64_t b, int64_t h, int64_t i,
                                 int64_t j) {
    if (d->dropout_p == 0.0f) return 1.0;
    uint64_t idx = (uint64_t)(((b * d->n_heads + h) * d->q_len + i) * d->kv_len + j);
    float u = qkv__rng_uniform(d->dropout_seed, QKV_ATTN_DROPOUT_STREAM, idx);
    return u >= d->dropout_p ? 1.0 / (1.0 - (double)d->dropout_p) : 0.0;
}

/* out [B, Tq, Hq, Dv], lse [B, Hq, Tq] (may be NULL), probs [B, Hq, Tq, Tk] (undropped, may be
 * NULL) from q [B, Tq, Hq, D], k [B, Tk, Hk, D], v [B, Tk, Hk, Dv], all double. */
static inline void oracle_forward(const qkv_attention_desc *d, const double *q, const double *k,
                                  const double *v, double *out, double *lse, double *probs) {
    int64_t B = d->batch, Tq = d->q_len, Tk = d->kv_len, Hq = d->n_heads, Hk = d->n_kv_heads;
    int64_t D = d->head_dim, Dv = oracle_dv(d);
    double scale = d->scale != 0.0f ? (double)d->scale : 1.0 / sqrt((double)D);
    double *s = malloc((size_t)Tk * sizeof *s); /* [Tk] one row of scores, -inf = masked */
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < Hq; h++) {
            int64_t hk = h / (Hq / Hk);
            for (int64_t i = 0; i < Tq; i++) {
                double m = -INFINITY;
                for (int64_t j = 0; j < Tk; j++) {
                    s[j] = -INFINITY;
                    if (!oracle_visible(d, b, i, j)) continue;
                    double dotv = 0;
                    for (int64_t x = 0; x < D; x++)
                        dotv += q[((b * Tq + i) * Hq + h) * D + x] *
                                k[((b * Tk + j) * Hk + hk) * D + x];
                    s[j] = scale * dotv;
                    if (d->bias)
                        s[j] += d->bias[b * d->bias_stride_b + h * d->bias_stride_h +
                                        i * d->bias_stride_q + j];
                    if (d->alibi_slopes)
                        s[j] -= (double)d->alibi_slopes[h] * fabs((double)(i + Tk - Tq - j));
                    if (s[j] > m) m = s[j];
                }
                double *o = out + ((b * Tq + i) * Hq + h) * Dv;
                double *pr = probs ? probs + ((b * Hq + h) * Tq + i) * Tk : NULL;
                for (int64_t x = 0; x < Dv; x++) o[x] = 0;
                if (pr)
                    for (int64_t j = 0; j < Tk; j++) pr[j] = 0;
                if (m == -INFINITY) { /* nothing visible */
                    if (lse) lse[(b * Hq + h) * Tq + i] = -INFINITY;
                    continue;
                }
                double sum = 0;
                for (int64_t j = 0; j < Tk; j++) sum += exp(s[j] - m);
                for (int64_t j = 0; j < Tk; j++) {
                    double p = exp(s[j] - m) / sum;
                    if (pr) pr[j] = p;
                    p *= oracle_drop(d, b, h, i, j);
                    for (int64_t x = 0; x < Dv; x++)
                        o[x] += p * v[((b * Tk + j) * Hk + hk) * Dv + x];
                }
                if (lse) lse[(b * Hq + h) * Tq + i] = m + log(sum);
            }
        }
    free(s);
}

/* ---------------------------------------------------------------- a test case */

enum { BIAS_NONE, BIAS_FULL, BIAS_BCAST_B, BIAS_BCAST_H, BIAS_BCAST_Q };

/* Inputs of one attention problem (all float, as the library sees them). */
typedef struct oracle_case {
    qkv_attention_desc d;
    float *q, *k, *v, *dout; /* [B,Tq,Hq,D] [B,Tk,Hk,D] [B,Tk,Hk,Dv] [B,Tq,Hq,Dv] */
    float *bias;             /* compact bias (broadcast dims stored once), or NULL */
    float *slopes;           /* [Hq] or NULL */
    int32_t *lens;           /* [B] or NULL */
    int64_t nq, nk, nv, no, nlse;
} oracle_case;

/* Random inputs for d (pointers in d are replaced). bias_kind: BIAS_*; lens: [B] or NULL. */
static inline void oracle_case_init(oracle_case *c, const qkv_attention_desc *d, int bias_kind,
                                    int alibi, const int32_t *lens, float amp) {
    memset(c, 0, sizeof *c);
    c->d = *d;
    int64_t B = d->batch, Tq = d->q_len, Tk = d->kv_len, Hq = d->n_heads, Hk = d->n_kv_heads;
    int64_t D = d->head_dim, Dv = oracle_dv(d);
    c->nq = B * Tq * Hq * D;
    c->nk = B * Tk * Hk * D;
    c->nv = B * Tk * Hk * Dv;
    c->no = B * Tq * Hq * Dv;
    c->nlse = B * Hq * Tq;
    c->q = malloc((size_t)c->nq * sizeof(float));
    c->k = malloc((size_t)c->nk * sizeof(float));
    c->v = malloc((size_t)c->nv * sizeof(float));
    c->dout = malloc((size_t)c->no * sizeof(float));
    oracle_fill(c->q, c->nq, amp);
    oracle_fill(c->k, c->nk, amp);
    oracle_fill(c->v, c->nv, 1.0f);
    oracle_fill(c->dout, c->no, 1.0f);
    c->d.bias = NULL;
    c->d.bias_stride_b = c->d.bias_stride_h = c->d.bias_stride_q = 0;
    if (bias_kind != BIAS_NONE) {
        int64_t nb = bias_kind == BIAS_BCAST_B ? 1 : B;
        int64_t nh = bias_kind == BIAS_BCAST_H ? 1 : Hq;
        int64_t ni = bias_kind == BIAS_BCAST_Q ? 1 : Tq;
        c->bias = malloc((size_t)(nb * nh * ni * Tk) * sizeof(float));
        oracle_fill(c->bias, nb * nh * ni * Tk, 1.0f);
        c->d.bias = c->bias;
        c->d.bias_stride_q = ni == 1 ? 0 : Tk;
        c->d.bias_stride_h = nh == 1 ? 0 : ni * Tk;
        c->d.bias_stride_b = nb == 1 ? 0 : nh * ni * Tk;
    }
    c->d.alibi_slopes = NULL;
    if (alibi) {
        c->slopes = malloc((size_t)Hq * sizeof(float));
        for (int64_t h = 0; h < Hq; h++) c->slopes[h] = exp2f(-8.0f * (float)(h + 1) / (float)Hq);
        c->d.alibi_slopes = c->slopes;
    }
    c->d.kv_lens = NULL;
    if (lens) {
        c->lens = malloc((size_t)B * sizeof(int32_t));
        memcpy(c->lens, lens, (size_t)B * sizeof(int32_t));
        c->d.kv_lens = c->lens;
    }
}

static inline void oracle_case_free(oracle_case *c) {
    free(c->q);
    free(c->k);
    free(c->v);
    free(c->dout);
    free(c->bias);
    free(c->slopes);
    free(c->lens);
}

/* The number of NaN or infinite values in x[0..n). */
static inline int64_t oracle_count_nonfinite(const float *x, int64_t n) {
    int64_t bad = 0;
    for (int64_t t = 0; t < n; t++) bad += !isfinite(x[t]);
    return bad;
}

#endif
