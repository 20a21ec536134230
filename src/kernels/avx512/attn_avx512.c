/* attn_avx512.c — AVX-512 micro-kernels of fused attention (contracts: kernels/attn_kernels.h).
 *
 * dot: a block of up to 12 rows x 32 columns of S in 24 zmm accumulators; per step of the
 *      reduction: 2 loads of the packed Bt row, 12 broadcasts of A (embedded in the FMAs).
 * acc: a block of up to 6 rows x 64 columns of C in 24 zmm accumulators; per step: 4 loads of
 *      the Bm row (the last one masked for a tail), 6 broadcasts of P, 24 FMAs.
 * Both are written once as always-inline block functions over compile-time (R, NV); a switch
 * instantiates every edge size, so the accumulators stay in registers for every shape.
 * exp: see attn_kernels.h; 2^n is applied with vscalefps (inf at the top); results below e^-87
 * are flushed to 0 (no subnormals: they cost microcode assists).
 * dropout: Philox4x32-10 of 16 consecutive blocks at once, one per 64-bit lane, as in
 * attn_avx2.c (kernels/attn_dropout_simd.h). */
#include "core/rng.h"
#include "kernels/attn_kernels.h"

#include <immintrin.h>
#include <math.h>

#define INLINE static inline __attribute__((always_inline))

/* ---------------------------------------------------------------- exp */

INLINE __m512 exp16(__m512 x) {
    const __m512 log2e = _mm512_set1_ps(1.44269504088896341f);
    const __m512 ln2_hi = _mm512_set1_ps(0.693359375f), ln2_lo = _mm512_set1_ps(-2.12194440e-4f);
    /* Results below e^-87 (< 2^-125, within the documented bound) are flushed to 0 by the mask
     * of the final scalef, and x is clamped to -87 so that no lane forms a subnormal: subnormal
     * results and operands take microcode assists (measured: the causal forward, whose masked
     * -inf scores all went through e^-104, ran 1.6x slower than with FTZ/DAZ). e^89 is inf
     * through scalef. -inf (and NaN) give 0. */
    __mmask16 keep = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.0f), _CMP_GE_OQ);
    x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
    x = _mm512_min_ps(x, _mm512_set1_ps(89.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, log2e), _MM_FROUND_TO_NEAREST_INT);
    __m512 r = _mm512_fnmadd_ps(n, ln2_hi, x);
    r = _mm512_fnmadd_ps(n, ln2_lo, r);
    __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_maskz_scalef_ps(keep, p, n);
}

static __mmask16 tail_mask(int64_t n) {
    return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1u);
}

static void exp_f32_avx512(const float *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(y + i, m, exp16(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

/* ---------------------------------------------------------------- dot */

INLINE void dot_block(const int R, const int NV, int64_t kd, const float *a, int64_t lda,
                      const float *bt, int64_t ldb, float *s, int64_t lds) {
    __m512 acc[12][2];
#pragma GCC unroll 12
    for (int r = 0; r < R; r++)
#pragma GCC unroll 2
        for (int v = 0; v < NV; v++) acc[r][v] = _mm512_setzero_ps();
    for (int64_t d = 0; d < kd; d++) {
        __m512 b0 = _mm512_loadu_ps(bt + d * ldb), b1 = b0;
        if (NV > 1) b1 = _mm512_loadu_ps(bt + d * ldb + 16);
#pragma GCC unroll 12
        for (int r = 0; r < R; r++) {
            __m512 av = _mm512_set1_ps(a[r * lda + d]);
            acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
            if (NV > 1) acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
        }
    }
#pragma GCC unroll 12
    for (int r = 0; r < R; r++)
#pragma GCC unroll 2
        for (int v = 0; v < NV; v++) _mm512_storeu_ps(s + r * lds + 16 * v, acc[r][v]);
}

#define DOT_CASE(R)                                                                                \
    case R:                                                                                        \
        if (nv == 2)                                                                               \
            dot_block(R, 2, kd, a, lda, bt, ldb, s, lds);                                          \
        else                                                                                       \
            dot_block(R, 1, kd, a, lda, bt, ldb, s, lds);                                          \
        break;

static void dot_rows(int R, int nv, int64_t kd, const float *a, int64_t lda, const float *bt,
                     int64_t ldb, float *s, int64_t lds) {
    switch (R) {
        DOT_CASE(1)
        DOT_CASE(2)
        DOT_CASE(3)
        DOT_CASE(4)
        DOT_CASE(5)
        DOT_CASE(6)
        DOT_CASE(7)
        DOT_CASE(8)
        DOT_CASE(9)
        DOT_CASE(10)
        DOT_CASE(11)
    default:
        if (nv == 2)
            dot_block(12, 2, kd, a, lda, bt, ldb, s, lds);
        else
            dot_block(12, 1, kd, a, lda, bt, ldb, s, lds);
        break;
    }
}
#undef DOT_CASE

static void dot_f32_avx512(int64_t rows, int64_t cols, int64_t kd, const float *a, int64_t lda,
                           const float *bt, int64_t ldb, float *s, int64_t lds) {
    int64_t cpad = (cols + 15) / 16 * 16;
    for (int64_t r0 = 0; r0 < rows; r0 += 12) {
        int R = rows - r0 < 12 ? (int)(rows - r0) : 12;
        for (int64_t c0 = 0; c0 < cpad; c0 += 32) {
            int nv = cpad - c0 >= 32 ? 2 : 1;
            dot_rows(R, nv, kd, a + r0 * lda, lda, bt + c0, ldb, s + r0 * lds + c0, lds);
        }
    }
}

/* ---------------------------------------------------------------- acc */

INLINE void acc_block(const int R, const int NV, __mmask16 last, int64_t kd, const float *p,
                      int64_t prs, int64_t pks, const float *bm, int64_t ldb, float *c, int64_t ldc,
                      const float *row_scale) {
    __m512 acc[6][4];
#pragma GCC unroll 6
    for (int r = 0; r < R; r++) {
        __m512 sc = _mm512_set1_ps(row_scale ? row_scale[r] : 1.0f);
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) {
            __mmask16 m = v == NV - 1 ? last : (__mmask16)0xffff;
            acc[r][v] = _mm512_mul_ps(sc, _mm512_maskz_loadu_ps(m, c + r * ldc + 16 * v));
        }
    }
    for (int64_t k = 0; k < kd; k++) {
        __m512 b[4];
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) {
            __mmask16 m = v == NV - 1 ? last : (__mmask16)0xffff;
            b[v] = _mm512_maskz_loadu_ps(m, bm + k * ldb + 16 * v);
        }
#pragma GCC unroll 6
        for (int r = 0; r < R; r++) {
            __m512 pv = _mm512_set1_ps(p[r * prs + k * pks]);
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) acc[r][v] = _mm512_fmadd_ps(pv, b[v], acc[r][v]);
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) {
            __mmask16 m = v == NV - 1 ? last : (__mmask16)0xffff;
            _mm512_mask_storeu_ps(c + r * ldc + 16 * v, m, acc[r][v]);
        }
}

#define ACC_NV(R)                                                                                  \
    switch (nv) {                                                                                  \
    case 1: acc_block(R, 1, last, kd, p, prs, pks, bm, ldb, c, ldc, rs); break;                    \
    case 2: acc_block(R, 2, last, kd, p, prs, pks, bm, ldb, c, ldc, rs); break;                    \
    case 3: acc_block(R, 3, last, kd, p, prs, pks, bm, ldb, c, ldc, rs); break;                    \
    default: acc_block(R, 4, last, kd, p, prs, pks, bm, ldb, c, ldc, rs); break;                   \
    }

static void acc_rows(int R, int nv, __mmask16 last, int64_t kd, const float *p, int64_t prs,
                     int64_t pks, const float *bm, int64_t ldb, float *c, int64_t ldc,
                     const float *rs) {
    switch (R) {
    case 1: ACC_NV(1) break;
    case 2: ACC_NV(2) break;
    case 3: ACC_NV(3) break;
    case 4: ACC_NV(4) break;
    case 5: ACC_NV(5) break;
    default: ACC_NV(6) break;
    }
}
#undef ACC_NV

static void acc_f32_avx512(int64_t rows, int64_t n, int64_t kd, const float *p, int64_t prs,
                           int64_t pks, const float *bm, int64_t ldb, float *c, int64_t ldc,
                           const float *row_scale) {
    for (int64_t r0 = 0; r0 < rows; r0 += 6) {
        int R = rows - r0 < 6 ? (int)(rows - r0) : 6;
        const float *rs = row_scale ? row_scale + r0 : NULL;
        for (int64_t x0 = 0; x0 < n; x0 += 64) {
            int64_t w = n - x0 < 64 ? n - x0 : 64;
            int nv = (int)((w + 15) / 16);
            __mmask16 last = tail_mask(w - 16 * (nv - 1));
            acc_rows(R, nv, last, kd, p + r0 * prs, prs, pks, bm + x0, ldb, c + r0 * ldc + x0, ldc,
                     rs);
        }
    }
}

/* ---------------------------------------------------------------- softmax, bwd_ds */

static void softmax_f32_avx512(int64_t rows, int64_t cols, float *s, int64_t lds, float *m,
                               float *l, float *alpha, const float *z) {
    const __m512 ninf = _mm512_set1_ps(-INFINITY), zero = _mm512_setzero_ps();
    for (int64_t r0 = 0; r0 < rows; r0 += 16) { /* 16 query rows per vector, padded */
        __m512 mo = _mm512_loadu_ps(m + r0), mx0 = ninf, mx1 = ninf;
        int64_t c = 0;
        for (; c + 2 <= cols; c += 2) {
            mx0 = _mm512_max_ps(mx0, _mm512_loadu_ps(s + c * lds + r0));
            mx1 = _mm512_max_ps(mx1, _mm512_loadu_ps(s + (c + 1) * lds + r0));
        }
        if (c < cols) mx0 = _mm512_max_ps(mx0, _mm512_loadu_ps(s + c * lds + r0));
        __m512 mn = _mm512_max_ps(mo, _mm512_max_ps(mx0, mx1));
        __m512 mu = _mm512_mask_mov_ps(mn, _mm512_cmp_ps_mask(mn, ninf, _CMP_EQ_OQ), zero);
        __m512 al = exp16(_mm512_sub_ps(mo, mu)), sum0 = zero, sum1 = zero;
        for (c = 0; c + 2 <= cols; c += 2) {
            float *s0 = s + c * lds + r0, *s1 = s0 + lds;
            __m512 e0 = exp16(_mm512_sub_ps(_mm512_loadu_ps(s0), mu));
            __m512 e1 = exp16(_mm512_sub_ps(_mm512_loadu_ps(s1), mu));
            sum0 = _mm512_add_ps(sum0, e0);
            sum1 = _mm512_add_ps(sum1, e1);
            if (z) { /* dropped after the sum: l is the undropped normalizer */
                e0 = _mm512_mul_ps(e0, _mm512_loadu_ps(z + c * lds + r0));
                e1 = _mm512_mul_ps(e1, _mm512_loadu_ps(z + (c + 1) * lds + r0));
            }
            _mm512_storeu_ps(s0, e0);
            _mm512_storeu_ps(s1, e1);
        }
        if (c < cols) {
            float *s0 = s + c * lds + r0;
            __m512 e0 = exp16(_mm512_sub_ps(_mm512_loadu_ps(s0), mu));
            sum0 = _mm512_add_ps(sum0, e0);
            if (z) e0 = _mm512_mul_ps(e0, _mm512_loadu_ps(z + c * lds + r0));
            _mm512_storeu_ps(s0, e0);
        }
        __m512 lv = _mm512_fmadd_ps(_mm512_loadu_ps(l + r0), al, _mm512_add_ps(sum0, sum1));
        _mm512_storeu_ps(l + r0, lv);
        _mm512_storeu_ps(m + r0, mn);
        _mm512_storeu_ps(alpha + r0, al);
    }
}

static void bwd_ds_f32_avx512(int64_t rows, int64_t cols, float *s, float *dp, int64_t ld,
                              const float *lse, const float *drow, const float *z) {
    for (int64_t r = 0; r < rows; r++) {
        float *sr = s + r * ld, *dr = dp + r * ld;
        if (lse[r] == -INFINITY) {
            for (int64_t c = 0; c < cols; c += 16) {
                __mmask16 k = tail_mask(cols - c);
                _mm512_mask_storeu_ps(sr + c, k, _mm512_setzero_ps());
                _mm512_mask_storeu_ps(dr + c, k, _mm512_setzero_ps());
            }
            continue;
        }
        __m512 L = _mm512_set1_ps(lse[r]), D = _mm512_set1_ps(drow[r]);
        for (int64_t c = 0; c < cols; c += 16) {
            __mmask16 k = tail_mask(cols - c);
            __m512 x = _mm512_min_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, sr + c), L),
                                     _mm512_setzero_ps());
            __m512 pr = exp16(x), pz = pr, dpv = _mm512_maskz_loadu_ps(k, dr + c);
            if (z) { /* dS = P (Z dP - Drow); dV takes P Z */
                __m512 zv = _mm512_maskz_loadu_ps(k, z + r * ld + c);
                dpv = _mm512_mul_ps(dpv, zv);
                pz = _mm512_mul_ps(pr, zv);
            }
            __m512 ds = _mm512_mul_ps(pr, _mm512_sub_ps(dpv, D));
            _mm512_mask_storeu_ps(sr + c, k, pz);
            _mm512_mask_storeu_ps(dr + c, k, ds);
        }
    }
}

/* ---------------------------------------------------------------- dropout */

#define VI __m512i
#define VI_SET1(x) _mm512_set1_epi32((int)(x))
#define VI_MUL _mm512_mul_epu32
#define VI_SRLI64 _mm512_srli_epi64
#define VI_XOR3(a, b, c) _mm512_ternarylogic_epi32(a, b, c, 0x96)
#define QKV_DROPOUT_ROUNDS
#include "kernels/attn_dropout_simd.h"

/* Keep factors (dr->keep or 0) of elements 4 blk .. 4 blk + 63 of the stream, in order:
 * Philox blocks blk .. blk + 15 (core/rng.c's mapping), one per 64-bit lane. */
INLINE void keep64(uint64_t blk, const qkv_attn_dropout *dr, __m512 out[4]) {
    __m512i c[2][4], w[4];
    for (int s = 0; s < 2; s++) { /* counter {block lo, block hi, stream lo, stream hi} */
        __m512i b = _mm512_add_epi64(_mm512_set1_epi64((long long)blk),
                                     _mm512_setr_epi64(8 * s, 8 * s + 1, 8 * s + 2, 8 * s + 3,
                                                       8 * s + 4, 8 * s + 5, 8 * s + 6, 8 * s + 7));
        c[s][0] = b;
        c[s][1] = _mm512_srli_epi64(b, 32);
        c[s][2] = VI_SET1(dr->stream[0]);
        c[s][3] = VI_SET1(dr->stream[1]);
    }
    philox_rounds(c, dr);
    const __m512i i0 = _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11);
    const __m512i i1 = _mm512_setr_epi64(4, 5, 12, 13, 6, 7, 14, 15);
    for (int s = 0; s < 2; s++) { /* words 0..3 of each block to element order */
        __m512i t01 = _mm512_mask_blend_epi32(0xAAAA, c[s][0], _mm512_slli_epi64(c[s][1], 32));
        __m512i t23 = _mm512_mask_blend_epi32(0xAAAA, c[s][2], _mm512_slli_epi64(c[s][3], 32));
        __m512i lo = _mm512_unpacklo_epi64(t01, t23); /* blocks 0 | 2 | 4 | 6 (of the 8) */
        __m512i hi = _mm512_unpackhi_epi64(t01, t23); /* 1 | 3 | 5 | 7 */
        w[2 * s] = _mm512_permutex2var_epi64(lo, i0, hi);
        w[2 * s + 1] = _mm512_permutex2var_epi64(lo, i1, hi);
    }
    const __m512 p = _mm512_set1_ps(dr->p), keep = _mm512_set1_ps(dr->keep);
    for (int v = 0; v < 4; v++) { /* u = top 24 bits * 2^-24, exact; kept iff u >= p */
        __m512 u =
            _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(w[v], 8)), _mm512_set1_ps(0x1p-24f));
        out[v] = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(u, p, _CMP_GE_OQ), keep);
    }
}

static void dropout_row(uint64_t first, int64_t n, const qkv_attn_dropout *dr, float *z) {
    uint64_t blk = first / 4;
    for (int64_t e0 = -(int64_t)(first % 4); e0 < n; e0 += 64, blk += 16) { /* z[e0 ..] */
        __m512 v[4];
        keep64(blk, dr, v);
        for (int k = 0; k < 4; k++) { /* the lanes of z[e0 + 16 k ..] inside [0, n) */
            int64_t at = e0 + 16 * k, a = at < 0 ? -at : 0, e = n - at < 16 ? n - at : 16;
            if (e <= a) continue;
            if (a == 0) {
                _mm512_mask_storeu_ps(z + at, tail_mask(e), v[k]);
                continue;
            }
            /* the row's first block: lane a of v[k] to z[0] (lane L gets lane L + a) */
            const __m512i idx = _mm512_add_epi32(
                _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                _mm512_set1_epi32((int)a));
            _mm512_mask_storeu_ps(z + at + a, tail_mask(e - a), _mm512_permutexvar_ps(idx, v[k]));
        }
    }
}

#include "kernels/attn_dropout_simd.h"

void qkv__attn_config_avx512(qkv_attn_kernels *k) {
    k->name = "attn_f32_avx512";
    k->dot = dot_f32_avx512;
    k->acc = acc_f32_avx512;
    k->softmax = softmax_f32_avx512;
    k->bwd_ds = bwd_ds_f32_avx512;
    k->dropout = dropout_f32_simd;
    k->exp = exp_f32_avx512;
}
