/* store_avx512.h — the store of one 48-wide row of an AVX-512 GEMM tile, shared by the FP32
 * micro-kernel (gemm_avx512.c) and the bf16 one (gemm_bf16_avx512bf16.c) so both end with the
 * same operations: c = alpha*x + beta*c (beta == 0: c not read), masked to the live columns. */
#ifndef QKV_KERNELS_STORE_AVX512_H
#define QKV_KERNELS_STORE_AVX512_H

#include <immintrin.h>

/* Stores one row of the tile: three 16-float segments with masks for the tail. */
static inline void store_row(float *c, __m512 x0, __m512 x1, __m512 x2, const __mmask16 m[3],
                             __m512 valpha, __m512 vbeta, int beta_zero) {
    x0 = _mm512_mul_ps(x0, valpha);
    x1 = _mm512_mul_ps(x1, valpha);
    x2 = _mm512_mul_ps(x2, valpha);
    if (!beta_zero) {
        x0 = _mm512_fmadd_ps(vbeta, _mm512_maskz_loadu_ps(m[0], c), x0);
        x1 = _mm512_fmadd_ps(vbeta, _mm512_maskz_loadu_ps(m[1], c + 16), x1);
        x2 = _mm512_fmadd_ps(vbeta, _mm512_maskz_loadu_ps(m[2], c + 32), x2);
    }
    _mm512_mask_storeu_ps(c, m[0], x0);
    _mm512_mask_storeu_ps(c + 16, m[1], x1);
    _mm512_mask_storeu_ps(c + 32, m[2], x2);
}

/* Masks of the three 16-float segments for a row of nr in [1, 48] live columns. */
static inline void tail_masks48(int nr, __mmask16 m[3]) {
    for (int s = 0; s < 3; s++) {
        int left = nr - 16 * s;
        m[s] = left >= 16 ? (__mmask16)0xffff : left <= 0 ? 0 : (__mmask16)((1u << left) - 1u);
    }
}

#endif
