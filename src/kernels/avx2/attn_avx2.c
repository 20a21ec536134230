/* attn_avx2.c — AVX2 + FMA micro-kernels of fused attention (contracts: kernels/attn_kernels.h).
 *
 * 16 ymm registers bound the blocks: dot keeps 6 rows x 16 columns of S (12 accumulators, 2
 * Bt vectors, 1 broadcast); acc keeps 6 rows x 16 columns of C the same way, the last vector
 * masked (vmaskmovps, which never faults on masked lanes) for a tail of n. Blocks are
 * always-inline functions over a compile-time row count, instantiated by a switch.
 * exp: see attn_kernels.h; 2^n is built in the exponent field as 2 * 2^(n-1) (so n = 128 still
 * works) and results below 2^-125 (x < -86.64) are flushed to 0.
 * dropout: Philox4x32-10 of 8 consecutive blocks at once, one per 64-bit lane (the rounds are
 * shared with avx512: kernels/attn_dropout_simd.h), then the 4 words of each block put in
 * element order. */
#include "core/rng.h"
#include "kernels/attn_kernels.h"

#include <immintrin.h>
#include <math.h>

#define INLINE static inline __attribute__((always_inline))

/* ---------------------------------------------------------------- exp */

INLINE __m256 exp8(__m256 x) {
    const __m256 log2e = _mm256_set1_ps(1.44269504088896341f);
    const __m256 ln2_hi = _mm256_set1_ps(0.693359375f), ln2_lo = _mm256_set1_ps(-2.12194440e-4f);
    __m256 tiny = _mm256_cmp_ps(x, _mm256_set1_ps(-86.6433563f), _CMP_LT_OQ); /* or -inf */
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
    x = _mm256_min_ps(x, _mm256_set1_ps(88.8f)); /* n <= 128: overflows to inf below */
    __m256 n =
        _mm256_round_ps(_mm256_mul_ps(x, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, ln2_hi, x);
    r = _mm256_fnmadd_ps(n, ln2_lo, r);
    __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    /* 2^(n-1) with n - 1 in [-127, 127]: biased exponent n + 126 in [0, 254] */
    __m256i e =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(126)), 23);
    __m256 y = _mm256_mul_ps(_mm256_add_ps(p, p), _mm256_castsi256_ps(e));
    return _mm256_andnot_ps(tiny, y);
}

/* Lane mask for the first n (0..8) lanes of a ymm vector. */
static __m256i tail_mask(int64_t n) {
    if (n > 8) n = 8;
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), idx);
}

static void exp_f32_avx2(const float *x, float *y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, exp8(_mm256_loadu_ps(x + i)));
    if (i < n) {
        __m256i m = tail_mask(n - i);
        _mm256_maskstore_ps(y + i, m, exp8(_mm256_maskload_ps(x + i, m)));
    }
}

/* ---------------------------------------------------------------- dot */

INLINE void dot_block(const int R, int64_t kd, const float *a, int64_t lda, const float *bt,
                      int64_t ldb, float *s, int64_t lds) {
    __m256 acc[6][2];
#pragma GCC unroll 6
    for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    for (int64_t d = 0; d < kd; d++) {
        __m256 b0 = _mm256_loadu_ps(bt + d * ldb), b1 = _mm256_loadu_ps(bt + d * ldb + 8);
#pragma GCC unroll 6
        for (int r = 0; r < R; r++) {
            __m256 av = _mm256_broadcast_ss(a + r * lda + d);
            acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < R; r++) {
        _mm256_storeu_ps(s + r * lds, acc[r][0]);
        _mm256_storeu_ps(s + r * lds + 8, acc[r][1]);
    }
}

static void dot_f32_avx2(int64_t rows, int64_t cols, int64_t kd, const float *a, int64_t lda,
                         const float *bt, int64_t ldb, float *s, int64_t lds) {
    int64_t cpad = (cols + 15) / 16 * 16;
    for (int64_t r0 = 0; r0 < rows; r0 += 6) {
        int64_t R = rows - r0 < 6 ? rows - r0 : 6;
        for (int64_t c0 = 0; c0 < cpad; c0 += 16) {
            const float *ar = a + r0 * lda, *b = bt + c0;
            float *sr = s + r0 * lds + c0;
            switch (R) {
            case 1: dot_block(1, kd, ar, lda, b, ldb, sr, lds); break;
            case 2: dot_block(2, kd, ar, lda, b, ldb, sr, lds); break;
            case 3: dot_block(3, kd, ar, lda, b, ldb, sr, lds); break;
            case 4: dot_block(4, kd, ar, lda, b, ldb, sr, lds); break;
            case 5: dot_block(5, kd, ar, lda, b, ldb, sr, lds); break;
            default: dot_block(6, kd, ar, lda, b, ldb, sr, lds); break;
            }
        }
    }
}

/* ---------------------------------------------------------------- acc */

/* NV vectors of 8 columns; m0 / m1 are the lane masks of vector 0 / 1. */
INLINE void acc_block(const int R, const int NV, __m256i m0, __m256i m1, int64_t kd, const float *p,
                      int64_t prs, int64_t pks, const float *bm, int64_t ldb, float *c, int64_t ldc,
                      const float *row_scale) {
    __m256 acc[6][2];
#pragma GCC unroll 6
    for (int r = 0; r < R; r++) {
        __m256 sc = _mm256_set1_ps(row_scale ? row_scale[r] : 1.0f);
        acc[r][0] = _mm256_mul_ps(sc, _mm256_maskload_ps(c + r * ldc, m0));
        if (NV > 1) acc[r][1] = _mm256_mul_ps(sc, _mm256_maskload_ps(c + r * ldc + 8, m1));
    }
    for (int64_t k = 0; k < kd; k++) {
        __m256 b0 = _mm256_maskload_ps(bm + k * ldb, m0), b1 = b0;
        if (NV > 1) b1 = _mm256_maskload_ps(bm + k * ldb + 8, m1);
#pragma GCC unroll 6
        for (int r = 0; r < R; r++) {
            __m256 pv = _mm256_broadcast_ss(p + r * prs + k * pks);
            acc[r][0] = _mm256_fmadd_ps(pv, b0, acc[r][0]);
            if (NV > 1) acc[r][1] = _mm256_fmadd_ps(pv, b1, acc[r][1]);
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < R; r++) {
        _mm256_maskstore_ps(c + r * ldc, m0, acc[r][0]);
        if (NV > 1) _mm256_maskstore_ps(c + r * ldc + 8, m1, acc[r][1]);
    }
}

/* The full-width 16-column case without masks (the hot one). */
INLINE void acc_block16(const int R, int64_t kd, const float *p, int64_t prs, int64_t pks,
                        const float *bm, int64_t ldb, float *c, int64_t ldc,
                        const float *row_scale) {
    __m256 acc[6][2];
#pragma GCC unroll 6
    for (int r = 0; r < R; r++) {
        __m256 sc = _mm256_set1_ps(row_scale ? row_scale[r] : 1.0f);
        acc[r][0] = _mm256_mul_ps(sc, _mm256_loadu_ps(c + r * ldc));
        acc[r][1] = _mm256_mul_ps(sc, _mm256_loadu_ps(c + r * ldc + 8));
    }
    for (int64_t k = 0; k < kd; k++) {
        __m256 b0 = _mm256_loadu_ps(bm + k * ldb), b1 = _mm256_loadu_ps(bm + k * ldb + 8);
#pragma GCC unroll 6
        for (int r = 0; r < R; r++) {
            __m256 pv = _mm256_broadcast_ss(p + r * prs + k * pks);
            acc[r][0] = _mm256_fmadd_ps(pv, b0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(pv, b1, acc[r][1]);
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < R; r++) {
        _mm256_storeu_ps(c + r * ldc, acc[r][0]);
        _mm256_storeu_ps(c + r * ldc + 8, acc[r][1]);
    }
}

#define ACC_CASE(R)                                                                                \
    case R:                                                                                        \
        if (w == 16)                                                                               \
            acc_block16(R, kd, pr, prs, pks, b, ldb, cr, ldc, rs);                                 \
        else if (w > 8)                                                                            \
            acc_block(R, 2, m0, m1, kd, pr, prs, pks, b, ldb, cr, ldc, rs);                        \
        else                                                                                       \
            acc_block(R, 1, m0, m1, kd, pr, prs, pks, b, ldb, cr, ldc, rs);                        \
        break;

static void acc_f32_avx2(int64_t rows, int64_t n, int64_t kd, const float *p, int64_t prs,
                         int64_t pks, const float *bm, int64_t ldb, float *c, int64_t ldc,
                         const float *row_scale) {
    for (int64_t r0 = 0; r0 < rows; r0 += 6) {
        int64_t R = rows - r0 < 6 ? rows - r0 : 6;
        const float *rs = row_scale ? row_scale + r0 : NULL, *pr = p + r0 * prs;
        for (int64_t x0 = 0; x0 < n; x0 += 16) {
            int64_t w = n - x0 < 16 ? n - x0 : 16;
            __m256i m0 = tail_mask(w), m1 = tail_mask(w - 8);
            const float *b = bm + x0;
            float *cr = c + r0 * ldc + x0;
            switch (R) {
                ACC_CASE(1)
                ACC_CASE(2)
                ACC_CASE(3)
                ACC_CASE(4)
                ACC_CASE(5)
            default: ACC_CASE(6)
            }
        }
    }
}
#undef ACC_CASE

/* ---------------------------------------------------------------- softmax, bwd_ds */

static void softmax_f32_avx2(int64_t rows, int64_t cols, float *s, int64_t lds, float *m, float *l,
                             float *alpha, const float *z) {
    const __m256 ninf = _mm256_set1_ps(-INFINITY), zero = _mm256_setzero_ps();
    for (int64_t r0 = 0; r0 < rows; r0 += 8) { /* 8 query rows per vector, padded */
        __m256 mo = _mm256_loadu_ps(m + r0), mx0 = ninf, mx1 = ninf;
        int64_t c = 0;
        for (; c + 2 <= cols; c += 2) {
            mx0 = _mm256_max_ps(mx0, _mm256_loadu_ps(s + c * lds + r0));
            mx1 = _mm256_max_ps(mx1, _mm256_loadu_ps(s + (c + 1) * lds + r0));
        }
        if (c < cols) mx0 = _mm256_max_ps(mx0, _mm256_loadu_ps(s + c * lds + r0));
        __m256 mn = _mm256_max_ps(mo, _mm256_max_ps(mx0, mx1));
        __m256 mu = _mm256_blendv_ps(mn, zero, _mm256_cmp_ps(mn, ninf, _CMP_EQ_OQ));
        __m256 al = exp8(_mm256_sub_ps(mo, mu)), sum0 = zero, sum1 = zero;
        for (c = 0; c + 2 <= cols; c += 2) {
            float *s0 = s + c * lds + r0, *s1 = s0 + lds;
            __m256 e0 = exp8(_mm256_sub_ps(_mm256_loadu_ps(s0), mu));
            __m256 e1 = exp8(_mm256_sub_ps(_mm256_loadu_ps(s1), mu));
            sum0 = _mm256_add_ps(sum0, e0);
            sum1 = _mm256_add_ps(sum1, e1);
            if (z) { /* dropped after the sum: l is the undropped normalizer */
                e0 = _mm256_mul_ps(e0, _mm256_loadu_ps(z + c * lds + r0));
                e1 = _mm256_mul_ps(e1, _mm256_loadu_ps(z + (c + 1) * lds + r0));
            }
            _mm256_storeu_ps(s0, e0);
            _mm256_storeu_ps(s1, e1);
        }
        if (c < cols) {
            float *s0 = s + c * lds + r0;
            __m256 e0 = exp8(_mm256_sub_ps(_mm256_loadu_ps(s0), mu));
            sum0 = _mm256_add_ps(sum0, e0);
            if (z) e0 = _mm256_mul_ps(e0, _mm256_loadu_ps(z + c * lds + r0));
            _mm256_storeu_ps(s0, e0);
        }
        __m256 lv = _mm256_fmadd_ps(_mm256_loadu_ps(l + r0), al, _mm256_add_ps(sum0, sum1));
        _mm256_storeu_ps(l + r0, lv);
        _mm256_storeu_ps(m + r0, mn);
        _mm256_storeu_ps(alpha + r0, al);
    }
}

static void bwd_ds_f32_avx2(int64_t rows, int64_t cols, float *s, float *dp, int64_t ld,
                            const float *lse, const float *drow, const float *z) {
    for (int64_t r = 0; r < rows; r++) {
        float *sr = s + r * ld, *dr = dp + r * ld;
        int dead = lse[r] == -INFINITY;
        __m256 L = _mm256_set1_ps(dead ? 0.0f : lse[r]), D = _mm256_set1_ps(drow[r]);
        for (int64_t c = 0; c < cols; c += 8) {
            __m256i k = tail_mask(cols - c);
            __m256 x =
                _mm256_min_ps(_mm256_sub_ps(_mm256_maskload_ps(sr + c, k), L), _mm256_setzero_ps());
            __m256 pr = dead ? _mm256_setzero_ps() : exp8(x), dpv = _mm256_maskload_ps(dr + c, k);
            __m256 pz = pr;
            if (z) { /* dS = P (Z dP - Drow); dV takes P Z */
                __m256 zv = _mm256_maskload_ps(z + r * ld + c, k);
                dpv = _mm256_mul_ps(dpv, zv);
                pz = _mm256_mul_ps(pr, zv);
            }
            __m256 ds = _mm256_mul_ps(pr, _mm256_sub_ps(dpv, D));
            if (dead) ds = _mm256_setzero_ps();
            _mm256_maskstore_ps(sr + c, k, pz);
            _mm256_maskstore_ps(dr + c, k, ds);
        }
    }
}

/* ---------------------------------------------------------------- dropout */

#define VI __m256i
#define VI_SET1(x) _mm256_set1_epi32((int)(x))
#define VI_MUL _mm256_mul_epu32
#define VI_SRLI64 _mm256_srli_epi64
#define VI_XOR3(a, b, c) _mm256_xor_si256(_mm256_xor_si256(a, b), c)
#define QKV_DROPOUT_ROUNDS
#include "kernels/attn_dropout_simd.h"

/* Keep factors (dr->keep or 0) of elements 4 blk .. 4 blk + 31 of the stream, in order:
 * Philox blocks blk .. blk + 7 (core/rng.c's mapping), one per 64-bit lane. */
INLINE void keep32(uint64_t blk, const qkv_attn_dropout *dr, __m256 out[4]) {
    __m256i c[2][4], w[4];
    for (int s = 0; s < 2; s++) { /* counter {block lo, block hi, stream lo, stream hi} */
        __m256i b = _mm256_add_epi64(_mm256_set1_epi64x((long long)blk),
                                     _mm256_setr_epi64x(4 * s, 4 * s + 1, 4 * s + 2, 4 * s + 3));
        c[s][0] = b;
        c[s][1] = _mm256_srli_epi64(b, 32);
        c[s][2] = VI_SET1(dr->stream[0]);
        c[s][3] = VI_SET1(dr->stream[1]);
    }
    philox_rounds(c, dr);
    for (int s = 0; s < 2; s++) { /* words 0..3 of each block to element order */
        __m256i t01 = _mm256_blend_epi32(c[s][0], _mm256_slli_epi64(c[s][1], 32), 0xAA);
        __m256i t23 = _mm256_blend_epi32(c[s][2], _mm256_slli_epi64(c[s][3], 32), 0xAA);
        __m256i lo = _mm256_unpacklo_epi64(t01, t23), hi = _mm256_unpackhi_epi64(t01, t23);
        w[2 * s] = _mm256_permute2x128_si256(lo, hi, 0x20);
        w[2 * s + 1] = _mm256_permute2x128_si256(lo, hi, 0x31);
    }
    const __m256 p = _mm256_set1_ps(dr->p), keep = _mm256_set1_ps(dr->keep);
    for (int v = 0; v < 4; v++) { /* u = top 24 bits * 2^-24, exact; kept iff u >= p */
        __m256 u =
            _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(w[v], 8)), _mm256_set1_ps(0x1p-24f));
        out[v] = _mm256_and_ps(_mm256_cmp_ps(u, p, _CMP_GE_OQ), keep);
    }
}

static void dropout_row(uint64_t first, int64_t n, const qkv_attn_dropout *dr, float *z) {
    uint64_t blk = first / 4;
    for (int64_t e0 = -(int64_t)(first % 4); e0 < n; e0 += 32, blk += 8) { /* z[e0 ..] */
        __m256 v[4];
        keep32(blk, dr, v);
        if (e0 >= 0 && e0 + 32 <= n) {
            for (int k = 0; k < 4; k++) _mm256_storeu_ps(z + e0 + 8 * k, v[k]);
        } else { /* the row's first or last 32 */
            float t[32];
            for (int k = 0; k < 4; k++) _mm256_storeu_ps(t + 8 * k, v[k]);
            for (int64_t x = e0 < 0 ? 0 : e0; x < n && x < e0 + 32; x++) z[x] = t[x - e0];
        }
    }
}

#include "kernels/attn_dropout_simd.h"

void qkv__attn_config_avx2(qkv_attn_kernels *k) {
    k->name = "attn_f32_avx2";
    k->dot = dot_f32_avx2;
    k->acc = acc_f32_avx2;
    k->softmax = softmax_f32_avx2;
    k->bwd_ds = bwd_ds_f32_avx2;
    k->dropout = dropout_f32_simd;
    k->exp = exp_f32_avx2;
}
