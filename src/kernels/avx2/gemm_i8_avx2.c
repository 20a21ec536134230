/* gemm_i8_avx2.c — the AVX2 int8 GEMM micro-kernel (contract in kernels/gemm_i8.h): a 4 x 8
 * block. Per quad of k, the 32 weight bytes of 8 columns are widened to s16 (vpmovsxbw) and
 * each row's 4 activation bytes to s16 (vpmovzxbw) broadcast; vpmaddwd then adds pairs of
 * products into int32 lanes, two lanes per column, added at the end. Exact: a product is at
 * most 255·127 and a pair 64770, far from vpmaddwd's only saturating case (-32768·-32768·2);
 * vpmaddubsw (which saturates to s16) is not used. */
#include "kernels/gemm_i8.h"

#include <immintrin.h>
#include <string.h>

enum { MR = 4, NR = 8 };

/* 4 activation bytes as s16, repeated over the 16 lanes. */
static inline __m256i bcast_a(const uint8_t *p) {
    int v;
    memcpy(&v, p, sizeof v);
    return _mm256_broadcastq_epi64(_mm_cvtepu8_epi16(_mm_cvtsi32_si128(v)));
}

/* (lanes 2c, 2c+1 of lo: column c < 4; of hi: column 4 + c) -> the 8 column sums in order. */
static inline void store_sums(int32_t *dst, __m256i lo, __m256i hi) {
    __m256i h = _mm256_hadd_epi32(lo, hi); /* c0 c1 c4 c5 | c2 c3 c6 c7 */
    _mm256_storeu_si256((__m256i *)dst, _mm256_permute4x64_epi64(h, 0xD8));
}

static inline __attribute__((always_inline)) void
ukr_n(const int R, int64_t kq, const uint8_t *a, int64_t lda, const int8_t *bp, int32_t *acc) {
    __m256i l0 = _mm256_setzero_si256(), h0 = _mm256_setzero_si256();
    __m256i l1 = _mm256_setzero_si256(), h1 = _mm256_setzero_si256();
    __m256i l2 = _mm256_setzero_si256(), h2 = _mm256_setzero_si256();
    __m256i l3 = _mm256_setzero_si256(), h3 = _mm256_setzero_si256();
    /* rows past R are never read */
    const uint8_t *a0 = a, *a1 = R > 1 ? a + lda : a, *a2 = R > 2 ? a + 2 * lda : a;
    const uint8_t *a3 = R > 3 ? a + 3 * lda : a;
    for (int64_t q = 0; q < kq; q++) {
        __m256i b = _mm256_loadu_si256((const __m256i *)(bp + q * 4 * NR));
        __m256i blo = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(b));
        __m256i bhi = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(b, 1));
        __m256i x = bcast_a(a0 + 4 * q);
        l0 = _mm256_add_epi32(l0, _mm256_madd_epi16(x, blo));
        h0 = _mm256_add_epi32(h0, _mm256_madd_epi16(x, bhi));
        if (R > 1) {
            x = bcast_a(a1 + 4 * q);
            l1 = _mm256_add_epi32(l1, _mm256_madd_epi16(x, blo));
            h1 = _mm256_add_epi32(h1, _mm256_madd_epi16(x, bhi));
        }
        if (R > 2) {
            x = bcast_a(a2 + 4 * q);
            l2 = _mm256_add_epi32(l2, _mm256_madd_epi16(x, blo));
            h2 = _mm256_add_epi32(h2, _mm256_madd_epi16(x, bhi));
        }
        if (R > 3) {
            x = bcast_a(a3 + 4 * q);
            l3 = _mm256_add_epi32(l3, _mm256_madd_epi16(x, blo));
            h3 = _mm256_add_epi32(h3, _mm256_madd_epi16(x, bhi));
        }
    }
    store_sums(acc, l0, h0);
    if (R > 1) store_sums(acc + NR, l1, h1);
    if (R > 2) store_sums(acc + 2 * NR, l2, h2);
    if (R > 3) store_sums(acc + 3 * NR, l3, h3);
}

static void gemm_i8_ukr_avx2(int64_t kq, const uint8_t *a, int64_t lda, const int8_t *bp,
                             int32_t *acc, int mr) {
    switch (mr) {
    case 1: ukr_n(1, kq, a, lda, bp, acc); break;
    case 2: ukr_n(2, kq, a, lda, bp, acc); break;
    case 3: ukr_n(3, kq, a, lda, bp, acc); break;
    case 4: ukr_n(4, kq, a, lda, bp, acc); break;
    default: break;
    }
}

static void gemm_i8_group_avx2(int first, int mr, const int32_t *acc, const int32_t *cs,
                               const float *s, const float *t, int64_t ts, float *sum) {
    QKV_GEMM_I8_GROUP_STEP(NR)
}

void qkv__gemm_i8_config_avx2(qkv_gemm_i8_config *cfg) {
    cfg->name = "gemm_i8_avx2";
    cfg->mr = MR;
    cfg->nr = NR;
    cfg->ukr = gemm_i8_ukr_avx2;
    cfg->group = gemm_i8_group_avx2;
    cfg->peak_loop = NULL;
    cfg->tile = NULL;
    cfg->quant = NULL;
    cfg->kalign = 4;
    cfg->pad_rows = 0;
    cfg->a_signed = 0;
}
