/* gemm_i8_avx512vnni.c — the AVX512_VNNI int8 GEMM micro-kernel (vpdpbusd; contract in
 * kernels/gemm_i8.h): an 8 x 48 block of int32 sums in 24 zmm accumulators. Per quad of k:
 * three 64-byte loads of the packed weights (48 columns x 4 s8), per row one broadcast of its
 * 4 activation bytes (u8) and 3 vpdpbusd (each 16 columns x 4 products added into int32,
 * without saturation; the sums cannot overflow: K is bounded at pack time). A 1-row call (a
 * decode step) does 3 vpdpbusd per 192 weight bytes.
 *
 * This file alone is compiled with -mavx512vnni; it runs only when CPUID reports AVX512_VNNI
 * (qkv__gemm_i8_config_avx512 checks). */
#include "kernels/gemm_i8.h"

#include <immintrin.h>
#include <string.h>

enum { MR = 8, NR = 48 };

static inline __m512i bcast_a(const uint8_t *p) {
    int v;
    memcpy(&v, p, sizeof v);
    return _mm512_set1_epi32(v);
}

static inline __attribute__((always_inline)) void
ukr_n(const int R, int64_t kq, const uint8_t *a, int64_t lda, const int8_t *bp, int32_t *acc) {
    __m512i c00 = _mm512_setzero_si512(), c01 = _mm512_setzero_si512(),
            c02 = _mm512_setzero_si512();
    __m512i c10 = _mm512_setzero_si512(), c11 = _mm512_setzero_si512(),
            c12 = _mm512_setzero_si512();
    __m512i c20 = _mm512_setzero_si512(), c21 = _mm512_setzero_si512(),
            c22 = _mm512_setzero_si512();
    __m512i c30 = _mm512_setzero_si512(), c31 = _mm512_setzero_si512(),
            c32 = _mm512_setzero_si512();
    __m512i c40 = _mm512_setzero_si512(), c41 = _mm512_setzero_si512(),
            c42 = _mm512_setzero_si512();
    __m512i c50 = _mm512_setzero_si512(), c51 = _mm512_setzero_si512(),
            c52 = _mm512_setzero_si512();
    __m512i c60 = _mm512_setzero_si512(), c61 = _mm512_setzero_si512(),
            c62 = _mm512_setzero_si512();
    __m512i c70 = _mm512_setzero_si512(), c71 = _mm512_setzero_si512(),
            c72 = _mm512_setzero_si512();
    /* rows past R are never read; point them at row 0 rather than past the caller's A */
    const uint8_t *a0 = a, *a1 = R > 1 ? a + lda : a, *a2 = R > 2 ? a + 2 * lda : a;
    const uint8_t *a3 = R > 3 ? a + 3 * lda : a, *a4 = R > 4 ? a + 4 * lda : a;
    const uint8_t *a5 = R > 5 ? a + 5 * lda : a, *a6 = R > 6 ? a + 6 * lda : a;
    const uint8_t *a7 = R > 7 ? a + 7 * lda : a;
#define QKV_ROW(r)                                                                                 \
    do {                                                                                           \
        if (R > r) {                                                                               \
            __m512i a_ = bcast_a(a##r + 4 * q);                                                    \
            c##r##0 = _mm512_dpbusd_epi32(c##r##0, a_, b0);                                        \
            c##r##1 = _mm512_dpbusd_epi32(c##r##1, a_, b1);                                        \
            c##r##2 = _mm512_dpbusd_epi32(c##r##2, a_, b2);                                        \
        }                                                                                          \
    } while (0)
    for (int64_t q = 0; q < kq; q++) {
        __m512i b0 = _mm512_loadu_si512(bp), b1 = _mm512_loadu_si512(bp + 64);
        __m512i b2 = _mm512_loadu_si512(bp + 128);
        QKV_ROW(0);
        QKV_ROW(1);
        QKV_ROW(2);
        QKV_ROW(3);
        QKV_ROW(4);
        QKV_ROW(5);
        QKV_ROW(6);
        QKV_ROW(7);
        bp += 4 * NR;
    }
#undef QKV_ROW
#define QKV_STORE(r)                                                                               \
    do {                                                                                           \
        if (R > r) {                                                                               \
            _mm512_storeu_si512(acc + r * NR, c##r##0);                                            \
            _mm512_storeu_si512(acc + r * NR + 16, c##r##1);                                       \
            _mm512_storeu_si512(acc + r * NR + 32, c##r##2);                                       \
        }                                                                                          \
    } while (0)
    QKV_STORE(0);
    QKV_STORE(1);
    QKV_STORE(2);
    QKV_STORE(3);
    QKV_STORE(4);
    QKV_STORE(5);
    QKV_STORE(6);
    QKV_STORE(7);
#undef QKV_STORE
}

static void gemm_i8_ukr_avx512vnni(int64_t kq, const uint8_t *a, int64_t lda, const int8_t *bp,
                                   int32_t *acc, int mr) {
    switch (mr) {
    case 1: ukr_n(1, kq, a, lda, bp, acc); break;
    case 2: ukr_n(2, kq, a, lda, bp, acc); break;
    case 3: ukr_n(3, kq, a, lda, bp, acc); break;
    case 4: ukr_n(4, kq, a, lda, bp, acc); break;
    case 5: ukr_n(5, kq, a, lda, bp, acc); break;
    case 6: ukr_n(6, kq, a, lda, bp, acc); break;
    case 7: ukr_n(7, kq, a, lda, bp, acc); break;
    case 8: ukr_n(8, kq, a, lda, bp, acc); break;
    default: break;
    }
}

static void gemm_i8_group_avx512vnni(int first, int mr, const int32_t *acc, const int32_t *cs,
                                     const float *s, const float *t, int64_t ts, float *sum) {
    QKV_GEMM_I8_GROUP_STEP(NR)
}

void qkv__gemm_i8_config_avx512vnni(qkv_gemm_i8_config *cfg) {
    cfg->name = "gemm_i8_avx512vnni";
    cfg->mr = MR;
    cfg->nr = NR;
    cfg->ukr = gemm_i8_ukr_avx512vnni;
    cfg->group = gemm_i8_group_avx512vnni;
}
