/* pack_avx2.h — packing a transposed B micro-panel with 8 x 8 in-register transposes
 * (AVX; included by the AVX2 and AVX-512 GEMM files, which are both compiled with -mavx2).
 *   dst[p*NR + j] = B[j*ldb + p]   p < kc, j < nr;   0 for nr <= j < NR
 * Each 8 x 8 block is 8 row loads of 32 bytes, 24 shuffles and 8 row stores, instead of 64
 * scattered scalar moves. */
#ifndef QKV_KERNELS_PACK_AVX2_H
#define QKV_KERNELS_PACK_AVX2_H

#include <immintrin.h>
#include <stdint.h>

static inline void qkv__transpose8x8_store(const float *src, int64_t ld, float *dst,
                                           int64_t dst_ld) {
    __m256 r0 = _mm256_loadu_ps(src), r1 = _mm256_loadu_ps(src + ld);
    __m256 r2 = _mm256_loadu_ps(src + 2 * ld), r3 = _mm256_loadu_ps(src + 3 * ld);
    __m256 r4 = _mm256_loadu_ps(src + 4 * ld), r5 = _mm256_loadu_ps(src + 5 * ld);
    __m256 r6 = _mm256_loadu_ps(src + 6 * ld), r7 = _mm256_loadu_ps(src + 7 * ld);
    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
    __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xee);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xee);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xee);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xee);
    _mm256_storeu_ps(dst + 0 * dst_ld, _mm256_permute2f128_ps(u0, u4, 0x20));
    _mm256_storeu_ps(dst + 1 * dst_ld, _mm256_permute2f128_ps(u1, u5, 0x20));
    _mm256_storeu_ps(dst + 2 * dst_ld, _mm256_permute2f128_ps(u2, u6, 0x20));
    _mm256_storeu_ps(dst + 3 * dst_ld, _mm256_permute2f128_ps(u3, u7, 0x20));
    _mm256_storeu_ps(dst + 4 * dst_ld, _mm256_permute2f128_ps(u0, u4, 0x31));
    _mm256_storeu_ps(dst + 5 * dst_ld, _mm256_permute2f128_ps(u1, u5, 0x31));
    _mm256_storeu_ps(dst + 6 * dst_ld, _mm256_permute2f128_ps(u2, u6, 0x31));
    _mm256_storeu_ps(dst + 7 * dst_ld, _mm256_permute2f128_ps(u3, u7, 0x31));
}

/* The packing contract above for a micro-panel width NR (a multiple of 8). */
static inline void qkv__pack_bt_avx2(const float *B, int64_t ldb, int64_t kc, int nr, int NR,
                                     float *dst) {
    int full = nr & ~7; /* rows handled by whole 8 x 8 blocks */
    int64_t p = 0;
    for (; p + 8 <= kc; p += 8) {
        for (int j = 0; j < full; j += 8)
            qkv__transpose8x8_store(B + j * ldb + p, ldb, dst + p * NR + j, NR);
        for (int q = 0; q < 8; q++) {
            float *d = dst + (p + q) * NR;
            for (int j = full; j < nr; j++) d[j] = B[j * ldb + p + q];
            for (int j = nr; j < NR; j++) d[j] = 0.0f;
        }
    }
    for (; p < kc; p++) {
        float *d = dst + p * NR;
        for (int j = 0; j < nr; j++) d[j] = B[j * ldb + p];
        for (int j = nr; j < NR; j++) d[j] = 0.0f;
    }
}

/* Packing an A micro-panel of MR = 8 rows (row-major A, the x in x·Wᵀ):
 *   dst[p*8 + r] = A[r*lda + p]   p < kc, r < mr;   0 for mr <= r < 8 */
static inline void qkv__pack_a8_avx2(const float *A, int64_t lda, int64_t kc, int mr, float *dst) {
    int64_t p = 0;
    if (mr == 8)
        for (; p + 8 <= kc; p += 8) qkv__transpose8x8_store(A + p, lda, dst + p * 8, 8);
    for (; p < kc; p++) {
        float *d = dst + p * 8;
        for (int r = 0; r < mr; r++) d[r] = A[r * lda + p];
        for (int r = mr; r < 8; r++) d[r] = 0.0f;
    }
}

#endif
