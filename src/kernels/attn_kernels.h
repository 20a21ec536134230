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
 * plus the per-tile softmax steps, the dropout mask of a tile and a vectorized exp. Contracts
 * (every ISA, the _ref twin in kernels/ref/attn_ref.c included) are in docs/KERNELS.md, "attention
 * micro-kernels".
 *
 * The vectorized exp (avx2, avx512) is our own: n = round(x·log2 e), r = x − n·ln 2 (two-step
 * Cody–Waite with FMA), a degree-7 Taylor polynomial of e^r on |r| <= ln2/2, times 2^n.
 * Error bound (tests/test_attention_flash.c sweeps it densely, including the underflow range
 * and -inf): relative error <= QKV_ATTN_EXP_MAX_REL_ERR where exp(x) >= 2^-125; below that the
 * result is 0 or a subnormal with absolute error <= 2^-125 (both flush to 0: AVX2 below 2^-125,
 * AVX-512 below e^-87; no subnormal is formed, they cost microcode assists); exp(-inf) = 0 exactly;
 * exp(x) = +inf for x > 88.7228. */
#ifndef QKV_KERNELS_ATTN_KERNELS_H
#define QKV_KERNELS_ATTN_KERNELS_H

#include <stdint.h>

/* Columns a dot micro-kernel writes per call are rounded up to this; packed Bt panels and S
 * tiles are at least that wide (zero padding makes the extra columns 0). */
#define QKV_ATTN_COL_ALIGN 16

/* Documented (and tested) bound of the avx2/avx512 exp, relative, for results >= 2^-125. */
#define QKV_ATTN_EXP_MAX_REL_ERR 1.2e-7 /* 2 ulp; measured 7.6e-8 */

/* Attention-probability dropout, as the dropout kernel sees it: element index x (for score
 * (b, h, i, j): qkv__attn_dropout_index, src/attention/attention.h) is kept iff
 * qkv__rng_uniform(seed, stream, x) >= p (src/core/rng.c: word x % 4 of the Philox4x32-10
 * block x / 4 with key {seed lo, seed hi} and counter {block lo, block hi, stream lo,
 * stream hi}; its top 24 bits times 2^-24). */
typedef struct qkv_attn_dropout {
    uint32_t key[2];    /* the seed, low word first */
    uint32_t stream[2]; /* the stream, low word first */
    float p;            /* drop probability, in (0, 1) */
    float keep;         /* the factor of a kept probability, 1 / (1 - p) */
} qkv_attn_dropout;

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
     * With a dropout tile z (same layout and lds as s; NULL: none), s[c][r] = exp(..) * z[c][r]
     * is stored while l still sums the undropped exp (dropout never changes the normalizer).
     * m, l, alpha, every s row (and z row) are padded to round_up(rows, 16): the padding lanes
     * are computed too (on finite garbage; z there must be finite) and must be ignored by the
     * caller. */
    void (*softmax)(int64_t rows, int64_t cols, float *s, int64_t lds, float *m, float *l,
                    float *alpha, const float *z);

    /* Backward tile step, per row r and column c < cols (rows with lse[r] == -inf give 0):
     *   P = exp(min(s - lse[r], 0));  dS = P * (Z * dp - drow[r]) into dp;  P * Z into s,
     * Z = z[r * ld + c], or 1 when z is NULL (no dropout). */
    void (*bwd_ds)(int64_t rows, int64_t cols, float *s, float *dp, int64_t ld, const float *lse,
                   const float *drow, const float *z);

    /* The dropout tile: z[r * rs + c * cs] = dr->keep if element first[r] + col0 + c is kept,
     * else 0, for r < rows, c < cols (rows >= 0, cols >= 0). Either rs == 1 (key-major, the
     * forward) or cs == 1 (query-major, the backward); nothing else of z is written. The mask
     * is exactly the reference's: every ISA gives the same bits. */
    void (*dropout)(int64_t rows, int64_t cols, const uint64_t *first, uint64_t col0,
                    const qkv_attn_dropout *dr, float *z, int64_t rs, int64_t cs);

    /* y[i] = exp(x[i]) for i < n (y may equal x). */
    void (*exp)(const float *x, float *y, int64_t n);
} qkv_attn_kernels;

void qkv__attn_config_ref(qkv_attn_kernels *k);
void qkv__attn_config_avx2(qkv_attn_kernels *k);
void qkv__attn_config_avx512(qkv_attn_kernels *k);

#endif
