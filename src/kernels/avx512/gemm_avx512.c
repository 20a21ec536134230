/* gemm_avx512.c — AVX-512 GEMM micro-kernel: a 14 x 32 block of C in 28 zmm registers.
 *
 * Per k: two 16-float loads of the packed B row, 14 broadcasts of packed A (folded into the
 * FMAs as embedded broadcasts), 28 FMAs. 28 accumulators + 2 B vectors + 1 broadcast fit the 32
 * zmm registers. Edge tiles (mr < 14 or nr < 32) run the same loop and store through masks /
 * a row limit; packed panels are zero-padded so the extra lanes are harmless. */
#include "kernels/gemm.h"

#include <immintrin.h>

enum { MR = 14, NR = 32 };

static inline void store_row(float *c, __m512 lo, __m512 hi, __mmask16 mlo, __mmask16 mhi,
                             __m512 valpha, __m512 vbeta, int beta_zero) {
    lo = _mm512_mul_ps(lo, valpha);
    hi = _mm512_mul_ps(hi, valpha);
    if (!beta_zero) {
        lo = _mm512_fmadd_ps(vbeta, _mm512_maskz_loadu_ps(mlo, c), lo);
        hi = _mm512_fmadd_ps(vbeta, _mm512_maskz_loadu_ps(mhi, c + 16), hi);
    }
    _mm512_mask_storeu_ps(c, mlo, lo);
    _mm512_mask_storeu_ps(c + 16, mhi, hi);
}

static void gemm_ukr_avx512(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc,
                            int mr, int nr, float alpha, float beta) {
    __m512 c0a = _mm512_setzero_ps(), c0b = _mm512_setzero_ps();
    __m512 c1a = _mm512_setzero_ps(), c1b = _mm512_setzero_ps();
    __m512 c2a = _mm512_setzero_ps(), c2b = _mm512_setzero_ps();
    __m512 c3a = _mm512_setzero_ps(), c3b = _mm512_setzero_ps();
    __m512 c4a = _mm512_setzero_ps(), c4b = _mm512_setzero_ps();
    __m512 c5a = _mm512_setzero_ps(), c5b = _mm512_setzero_ps();
    __m512 c6a = _mm512_setzero_ps(), c6b = _mm512_setzero_ps();
    __m512 c7a = _mm512_setzero_ps(), c7b = _mm512_setzero_ps();
    __m512 c8a = _mm512_setzero_ps(), c8b = _mm512_setzero_ps();
    __m512 c9a = _mm512_setzero_ps(), c9b = _mm512_setzero_ps();
    __m512 c10a = _mm512_setzero_ps(), c10b = _mm512_setzero_ps();
    __m512 c11a = _mm512_setzero_ps(), c11b = _mm512_setzero_ps();
    __m512 c12a = _mm512_setzero_ps(), c12b = _mm512_setzero_ps();
    __m512 c13a = _mm512_setzero_ps(), c13b = _mm512_setzero_ps();
#define QKV_ROW(r)                                                                                 \
    do {                                                                                           \
        __m512 a_ = _mm512_set1_ps(ap[r]);                                                         \
        c##r##a = _mm512_fmadd_ps(a_, b0, c##r##a);                                                \
        c##r##b = _mm512_fmadd_ps(a_, b1, c##r##b);                                                \
    } while (0)
    for (int64_t p = 0; p < kc; p++) {
        __m512 b0 = _mm512_loadu_ps(bp), b1 = _mm512_loadu_ps(bp + 16);
        QKV_ROW(0);
        QKV_ROW(1);
        QKV_ROW(2);
        QKV_ROW(3);
        QKV_ROW(4);
        QKV_ROW(5);
        QKV_ROW(6);
        QKV_ROW(7);
        QKV_ROW(8);
        QKV_ROW(9);
        QKV_ROW(10);
        QKV_ROW(11);
        QKV_ROW(12);
        QKV_ROW(13);
        ap += MR;
        bp += NR;
    }
#undef QKV_ROW
    /* nr in [1, 32]: low mask covers columns 0..15, high mask 16..31 */
    uint32_t bits = nr >= 32 ? 0xffffffffu : (1u << nr) - 1u;
    __mmask16 mlo = (__mmask16)(bits & 0xffffu), mhi = (__mmask16)(bits >> 16);
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    int bz = beta == 0.0f;
    /* Rows past mr are simply not stored (a switch keeps the accumulators in registers). */
    switch (mr) {
    default:
    case 14: store_row(c + 13 * ldc, c13a, c13b, mlo, mhi, va, vb, bz); /* fall through */
    case 13: store_row(c + 12 * ldc, c12a, c12b, mlo, mhi, va, vb, bz); /* fall through */
    case 12: store_row(c + 11 * ldc, c11a, c11b, mlo, mhi, va, vb, bz); /* fall through */
    case 11: store_row(c + 10 * ldc, c10a, c10b, mlo, mhi, va, vb, bz); /* fall through */
    case 10: store_row(c + 9 * ldc, c9a, c9b, mlo, mhi, va, vb, bz);    /* fall through */
    case 9: store_row(c + 8 * ldc, c8a, c8b, mlo, mhi, va, vb, bz);     /* fall through */
    case 8: store_row(c + 7 * ldc, c7a, c7b, mlo, mhi, va, vb, bz);     /* fall through */
    case 7: store_row(c + 6 * ldc, c6a, c6b, mlo, mhi, va, vb, bz);     /* fall through */
    case 6: store_row(c + 5 * ldc, c5a, c5b, mlo, mhi, va, vb, bz);     /* fall through */
    case 5: store_row(c + 4 * ldc, c4a, c4b, mlo, mhi, va, vb, bz);     /* fall through */
    case 4: store_row(c + 3 * ldc, c3a, c3b, mlo, mhi, va, vb, bz);     /* fall through */
    case 3: store_row(c + 2 * ldc, c2a, c2b, mlo, mhi, va, vb, bz);     /* fall through */
    case 2: store_row(c + 1 * ldc, c1a, c1b, mlo, mhi, va, vb, bz);     /* fall through */
    case 1: store_row(c, c0a, c0b, mlo, mhi, va, vb, bz);               /* fall through */
    case 0: break;
    }
}

void qkv__gemm_config_avx512(qkv_gemm_config *cfg) {
    cfg->name = "gemm_f32_avx512";
    cfg->mr = MR;
    cfg->nr = NR;
    cfg->kc = 256;  /* B micro-panel 256 x 32 floats = 32 KiB */
    cfg->mc = 140;  /* A block 140 x 256 floats = 140 KiB, in L2 */
    cfg->nc = 4096; /* B panel 256 x 4096 floats = 4 MiB, in L3 */
    cfg->ukr = gemm_ukr_avx512;
}

/* Peak-measurement loop (kernels/peak.c): 12 independent zmm FMA chains. */
float qkv__fma_peak_loop_avx512(int64_t iters, double *flops) {
    __m512 a0 = _mm512_set1_ps(0), a1 = _mm512_set1_ps(1), a2 = _mm512_set1_ps(2);
    __m512 a3 = _mm512_set1_ps(3), a4 = _mm512_set1_ps(4), a5 = _mm512_set1_ps(5);
    __m512 a6 = _mm512_set1_ps(6), a7 = _mm512_set1_ps(7), a8 = _mm512_set1_ps(8);
    __m512 a9 = _mm512_set1_ps(9), a10 = _mm512_set1_ps(10), a11 = _mm512_set1_ps(11);
    const __m512 b = _mm512_set1_ps(1.0000001f), c = _mm512_set1_ps(1e-7f);
    for (int64_t it = 0; it < iters; it++) {
        a0 = _mm512_fmadd_ps(a0, b, c), a1 = _mm512_fmadd_ps(a1, b, c);
        a2 = _mm512_fmadd_ps(a2, b, c), a3 = _mm512_fmadd_ps(a3, b, c);
        a4 = _mm512_fmadd_ps(a4, b, c), a5 = _mm512_fmadd_ps(a5, b, c);
        a6 = _mm512_fmadd_ps(a6, b, c), a7 = _mm512_fmadd_ps(a7, b, c);
        a8 = _mm512_fmadd_ps(a8, b, c), a9 = _mm512_fmadd_ps(a9, b, c);
        a10 = _mm512_fmadd_ps(a10, b, c), a11 = _mm512_fmadd_ps(a11, b, c);
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                             _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)));
    *flops = 2.0 * 16.0 * 12.0 * (double)iters;
    return _mm512_reduce_add_ps(s);
}
