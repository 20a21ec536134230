/* attn_kernels.h — the micro-kernels of fused (flash) attention, one set per instruction set.
 *
 * The flash driver (src/attention/flash_fwd.c, flash_bwd.c) owns tiling, masking, threading
 * and the online-softmax bookkeeping in portable C; everything that touches a whole tile of
 * scores is one of the micro-kernels below, chosen per ISA through the kernel table
 * (qkv_kernels.attn_f32_config, kernels/dispatch.h). Two GEMM-like shapes cover the forward
 * and the backward:
 *
 *   dot: S = A · Bt    A [rows, kd] (any row stride), Bt [kd, ldb] packed, zero-padded
 *   acc: C += P · Bm   P [rows, kd] with two strides (so P or Pᵀ of a tile), Bm [kd, n] rows
 *
 * plus the per-tile softmax steps and a vectorized exp. Contracts (every ISA, the _ref twin
 * in kernels/ref/attn_ref.c included) are in docs/KERNELS.md, "attention micro-kernels".
 *
 * The vectorized exp (avx2, avx512) is our own: n = round(x·log2 e), r = x − n·ln 2 (two-step
 * Cody–Waite with FMA), a degree-7 Taylor polynomial of e^r on |r| <= ln2/2, times 2^n.
 * Error bound (tests/test_attention_flash.c sweeps it densely, including the underflow range
 * and -inf): relative error <= QKV_ATTN_EXP_MAX_REL_ERR where exp(x) >= 2^-125; below that the
 * result is 0 or a subnormal with absolute error <= 2^-125 (AVX2 flushes to 0, AVX-512 rounds
 * through vscalefps); exp(-inf) = 0 exactly; exp(x) = +inf for x > 88.7228. */
#ifndef QKV_KERNELS_ATTN_KERNELS_H
#define QKV_KERNELS_ATTN_KERNELS_H

#include <stdint.h>

/* Columns a dot micro-kernel writes per call are rounded up to this; packed Bt panels and S
 * tiles are at least that wide (zero padding makes the extra columns 0). */
#define QKV_ATTN_COL_ALIGN 16

/* Documented (and tested) bound of the avx2/avx512 exp, relative, for results >= 2^-125. */
#define QKV_ATTN_EXP_MAX_REL_ERR 1.2e-7 /* 2 ulp; measured 7.6e-8 */

typedef struct qkv_attn_kernels {
    const char *name; /* e.g. "attn_f32_avx512" */

    /* S[r*lds + c] = Σ_d a[r*lda + d] * bt[d*ldb + c]   for r < rows, c < round_up(cols, 16).
     * bt is zero-padded past cols up to round_up(cols, 16) <= ldb; kd >= 1. Overwrites S. */
    void (*dot)(int64_t rows, int64_t cols, int64_t kd, const float *a, int64_t lda,
                const float *bt, int64_t ldb, float *s, int64_t lds);

    /* C[r*ldc + x] = C[r*ldc + x] * (row_scale ? row_scale[r] : 1)
     *               + Σ_k p[r*prs + k*pks] * bm[k*ldb + x]       for r < rows, x < n, k < kd.
     * Reads and writes nothing past column n of bm or C (tails are masked). kd may be 0. */
    void (*acc)(int64_t rows, int64_t n, int64_t kd, const float *p, int64_t prs, int64_t pks,
                const float *bm, int64_t ldb, float *c, int64_t ldc, const float *row_scale);

    /* One online-softmax step over a key-major tile of scores: s[c * lds + r] is the score of
     * query row r < rows and key c < cols (-inf marks a masked score). Per row r, with
     * mn = max(m[r], max_c s[c][r]) and mu = mn, or 0 when mn is -inf (nothing visible yet, so
     * no inf - inf is ever formed):
     *   alpha[r] = exp(m[r] - mu);  s[c][r] = exp(s[c][r] - mu);
     *   l[r] = l[r] * alpha[r] + Σ_c s[c][r];  m[r] = mn.
     * m, l, alpha and every s row are padded to round_up(rows, 16): the padding lanes are
     * computed too (on finite garbage) and must be ignored by the caller. */
    void (*softmax)(int64_t rows, int64_t cols, float *s, int64_t lds, float *m, float *l,
                    float *alpha);

    /* Backward tile step, per row r and column c < cols (rows with lse[r] == -inf give 0):
     *   P = exp(min(s - lse[r], 0)) into s;  dS = P * (dp - drow[r]) into dp.             */
    void (*bwd_ds)(int64_t rows, int64_t cols, float *s, float *dp, int64_t ld, const float *lse,
                   const float *drow);

    /* y[i] = exp(x[i]) for i < n (y may equal x). */
    void (*exp)(const float *x, float *y, int64_t n);
} qkv_attn_kernels;

void qkv__attn_config_ref(qkv_attn_kernels *k);
void qkv__attn_config_avx2(qkv_attn_kernels *k);
void qkv__attn_config_avx512(qkv_attn_kernels *k);

#endif
