/* gemm_avx2.c — AVX2 + FMA GEMM micro-kernel: a 6 x 16 block of C in 12 ymm registers
 * (12 accumulators + 2 B vectors + 1 broadcast of the 16 registers). Edge tiles compute the
 * full block and store through a row limit and, for nr < 16, a small stack buffer. */
#include "kernels/gemm.h"

#include "kernels/avx2/pack_avx2.h"
#include "kernels/gemm_bf16.h"

#include <immintrin.h>

enum { MR = 6, NR = 16 };

static inline void store_row(float *row, __m256 lo, __m256 hi, int nr, __m256 va, float beta) {
    lo = _mm256_mul_ps(lo, va);
    hi = _mm256_mul_ps(hi, va);
    if (nr == NR) {
        if (beta != 0.0f) {
            __m256 vb = _mm256_set1_ps(beta);
            lo = _mm256_fmadd_ps(vb, _mm256_loadu_ps(row), lo);
            hi = _mm256_fmadd_ps(vb, _mm256_loadu_ps(row + 8), hi);
        }
        _mm256_storeu_ps(row, lo);
        _mm256_storeu_ps(row + 8, hi);
    } else {
        float tmp[NR];
        _mm256_storeu_ps(tmp, lo);
        _mm256_storeu_ps(tmp + 8, hi);
        for (int j = 0; j < nr; j++) row[j] = beta == 0.0f ? tmp[j] : tmp[j] + beta * row[j];
    }
}

static void gemm_ukr_avx2(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc,
                          int mr, int nr, float alpha, float beta) {
    /* Named accumulators (not an array) so the compiler keeps all 12 in registers. */
    __m256 c0a = _mm256_setzero_ps(), c0b = _mm256_setzero_ps();
    __m256 c1a = _mm256_setzero_ps(), c1b = _mm256_setzero_ps();
    __m256 c2a = _mm256_setzero_ps(), c2b = _mm256_setzero_ps();
    __m256 c3a = _mm256_setzero_ps(), c3b = _mm256_setzero_ps();
    __m256 c4a = _mm256_setzero_ps(), c4b = _mm256_setzero_ps();
    __m256 c5a = _mm256_setzero_ps(), c5b = _mm256_setzero_ps();
#define QKV_ROW(r)                                                                                 \
    do {                                                                                           \
        __m256 a_ = _mm256_broadcast_ss(ap + r);                                                   \
        c##r##a = _mm256_fmadd_ps(a_, b0, c##r##a);                                                \
        c##r##b = _mm256_fmadd_ps(a_, b1, c##r##b);                                                \
    } while (0)
    for (int64_t p = 0; p < kc; p++) {
        __m256 b0 = _mm256_loadu_ps(bp), b1 = _mm256_loadu_ps(bp + 8);
        QKV_ROW(0);
        QKV_ROW(1);
        QKV_ROW(2);
        QKV_ROW(3);
        QKV_ROW(4);
        QKV_ROW(5);
        ap += MR;
        bp += NR;
    }
#undef QKV_ROW
    __m256 va = _mm256_set1_ps(alpha);
    switch (mr) {
    default:
    case 6: store_row(c + 5 * ldc, c5a, c5b, nr, va, beta); /* fall through */
    case 5: store_row(c + 4 * ldc, c4a, c4b, nr, va, beta); /* fall through */
    case 4: store_row(c + 3 * ldc, c3a, c3b, nr, va, beta); /* fall through */
    case 3: store_row(c + 2 * ldc, c2a, c2b, nr, va, beta); /* fall through */
    case 2: store_row(c + 1 * ldc, c1a, c1b, nr, va, beta); /* fall through */
    case 1: store_row(c, c0a, c0b, nr, va, beta);           /* fall through */
    case 0: break;
    }
}

/* 16 bf16 -> two 8-float vectors, exactly (bf16 is the top half of an FP32). */
static inline void widen_bf16x16(const uint16_t *bp, __m256 *lo, __m256 *hi) {
    __m256i h = _mm256_loadu_si256((const __m256i *)bp);
    *lo = _mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_castsi256_si128(h)), 16));
    *hi = _mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_extracti128_si256(h, 1)), 16));
}

/* 16 f16 -> two 8-float vectors, exactly (vcvtph2ps, F16C). */
static inline void widen_f16x16(const uint16_t *bp, __m256 *lo, __m256 *hi) {
    *lo = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)bp));
    *hi = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(bp + 8)));
}

/* The small-M twin of gemm_ukr_avx2 (gemm.h, ukr_rows): the same broadcast + 2 FMAs per row
 * and k in the same order, A read in place (row r at a + r*lda), only the R live rows.
 * BF16 (a constant): B holds bf16 (gemm_bf16.h, plain), widened exactly before the same FMAs,
 * so the bf16 kernel equals this one on the widened weights bit for bit. */
static inline __attribute__((always_inline)) void
ukr_rows_n(const int R, const int BF16, int64_t kc, const float *a, int64_t lda, const void *bv,
           float *c, int64_t ldc, int nr, float alpha, float beta) {
    __m256 c0a = _mm256_setzero_ps(), c0b = _mm256_setzero_ps();
    __m256 c1a = _mm256_setzero_ps(), c1b = _mm256_setzero_ps();
    __m256 c2a = _mm256_setzero_ps(), c2b = _mm256_setzero_ps();
    __m256 c3a = _mm256_setzero_ps(), c3b = _mm256_setzero_ps();
    __m256 c4a = _mm256_setzero_ps(), c4b = _mm256_setzero_ps();
    __m256 c5a = _mm256_setzero_ps(), c5b = _mm256_setzero_ps();
    /* rows past R are never read; point them at row 0 rather than past the caller's A */
    const float *a0 = a, *a1 = R > 1 ? a + lda : a, *a2 = R > 2 ? a + 2 * lda : a;
    const float *a3 = R > 3 ? a + 3 * lda : a, *a4 = R > 4 ? a + 4 * lda : a;
    const float *a5 = R > 5 ? a + 5 * lda : a;
#define QKV_ROW(r)                                                                                 \
    do {                                                                                           \
        if (R > r) {                                                                               \
            __m256 a_ = _mm256_broadcast_ss(a##r + p);                                             \
            c##r##a = _mm256_fmadd_ps(a_, b0, c##r##a);                                            \
            c##r##b = _mm256_fmadd_ps(a_, b1, c##r##b);                                            \
        }                                                                                          \
    } while (0)
    const float *bp = bv;
    const uint16_t *bh = bv;
    for (int64_t p = 0; p < kc; p++) {
        __m256 b0, b1;
        if (BF16 == 2) { /* f16 (gemm_bf16.h, config.f16): widened exactly too */
            widen_f16x16(bh, &b0, &b1);
            bh += NR;
        } else if (BF16) {
            widen_bf16x16(bh, &b0, &b1);
            bh += NR;
        } else {
            b0 = _mm256_loadu_ps(bp), b1 = _mm256_loadu_ps(bp + 8);
            bp += NR;
        }
        QKV_ROW(0);
        QKV_ROW(1);
        QKV_ROW(2);
        QKV_ROW(3);
        QKV_ROW(4);
        QKV_ROW(5);
    }
#undef QKV_ROW
    __m256 va = _mm256_set1_ps(alpha);
    if (R > 5) store_row(c + 5 * ldc, c5a, c5b, nr, va, beta);
    if (R > 4) store_row(c + 4 * ldc, c4a, c4b, nr, va, beta);
    if (R > 3) store_row(c + 3 * ldc, c3a, c3b, nr, va, beta);
    if (R > 2) store_row(c + 2 * ldc, c2a, c2b, nr, va, beta);
    if (R > 1) store_row(c + 1 * ldc, c1a, c1b, nr, va, beta);
    store_row(c, c0a, c0b, nr, va, beta);
}

static void gemm_ukr_rows_avx2(int64_t kc, const float *a, int64_t lda, const float *bp, float *c,
                               int64_t ldc, int mr, int nr, float alpha, float beta) {
    switch (mr) {
    case 1: ukr_rows_n(1, 0, kc, a, lda, bp, c, ldc, nr, alpha, beta); break;
    case 2: ukr_rows_n(2, 0, kc, a, lda, bp, c, ldc, nr, alpha, beta); break;
    case 3: ukr_rows_n(3, 0, kc, a, lda, bp, c, ldc, nr, alpha, beta); break;
    case 4: ukr_rows_n(4, 0, kc, a, lda, bp, c, ldc, nr, alpha, beta); break;
    case 5: ukr_rows_n(5, 0, kc, a, lda, bp, c, ldc, nr, alpha, beta); break;
    case 6: ukr_rows_n(6, 0, kc, a, lda, bp, c, ldc, nr, alpha, beta); break;
    default: break;
    }
}

/* The 16-bit-weight kernels (gemm_bf16.h, plain): ukr_rows_n on bf16 (H = 1) or f16 (H = 2)
 * rows of B, widened. */
static inline __attribute__((always_inline)) void h16_ukr(const int H, int64_t kc, const void *a,
                                                          int64_t lda, const uint16_t *bp, float *c,
                                                          int64_t ldc, int mr, int nr, float beta) {
    switch (mr) {
    case 1: ukr_rows_n(1, H, kc, a, lda, bp, c, ldc, nr, 1.0f, beta); break;
    case 2: ukr_rows_n(2, H, kc, a, lda, bp, c, ldc, nr, 1.0f, beta); break;
    case 3: ukr_rows_n(3, H, kc, a, lda, bp, c, ldc, nr, 1.0f, beta); break;
    case 4: ukr_rows_n(4, H, kc, a, lda, bp, c, ldc, nr, 1.0f, beta); break;
    case 5: ukr_rows_n(5, H, kc, a, lda, bp, c, ldc, nr, 1.0f, beta); break;
    case 6: ukr_rows_n(6, H, kc, a, lda, bp, c, ldc, nr, 1.0f, beta); break;
    default: break;
    }
}

static void gemm_bf16_ukr_avx2(int64_t kc, const void *a, int64_t lda, const uint16_t *bp, float *c,
                               int64_t ldc, int mr, int nr, float beta) {
    h16_ukr(1, kc, a, lda, bp, c, ldc, mr, nr, beta);
}
static void gemm_f16_ukr_avx2(int64_t kc, const void *a, int64_t lda, const uint16_t *bp, float *c,
                              int64_t ldc, int mr, int nr, float beta) {
    h16_ukr(2, kc, a, lda, bp, c, ldc, mr, nr, beta);
}

void qkv__gemm_f16_config_avx2(qkv_gemm_bf16_config *cfg) {
    qkv__gemm_bf16_config_plain(cfg, "gemm_f16_avx2", qkv__gemm_config_avx2, gemm_f16_ukr_avx2,
                                qkv__fma_peak_loop_avx2);
    cfg->f16 = 1;
}

void qkv__gemm_bf16_config_avx2(qkv_gemm_bf16_config *cfg) {
    qkv__gemm_bf16_config_plain(cfg, "gemm_bf16_avx2", qkv__gemm_config_avx2, gemm_bf16_ukr_avx2,
                                qkv__fma_peak_loop_avx2);
}

static void pack_bt_avx2(const float *B, int64_t ldb, int64_t kc, int nr, float *dst) {
    qkv__pack_bt_avx2(B, ldb, kc, nr, NR, dst);
}

/* The copy packings (gemm.h): 6 floats of a dout row per k (Aᵀ), 16 of a B row per k. */
static void pack_at_avx2(const float *A, int64_t lda, int64_t kc, float *dst) {
    for (int64_t p = 0; p < kc; p++) {
        const float *s = A + p * lda;
        float *d = dst + p * MR;
        _mm_storeu_ps(d, _mm_loadu_ps(s));
        _mm_storel_pi((__m64 *)(d + 4), _mm_loadl_pi(_mm_setzero_ps(), (const __m64 *)(s + 4)));
    }
}

static void pack_bn_avx2(const float *B, int64_t ldb, int64_t kc, float *dst) {
    for (int64_t p = 0; p < kc; p++) {
        const float *s = B + p * ldb;
        _mm256_storeu_ps(dst + p * NR, _mm256_loadu_ps(s));
        _mm256_storeu_ps(dst + p * NR + 8, _mm256_loadu_ps(s + 8));
    }
}

void qkv__gemm_config_avx2(qkv_gemm_config *cfg) {
    cfg->name = "gemm_f32_avx2";
    cfg->mr = MR;
    cfg->nr = NR;
    cfg->kc = 256; /* B micro-panel 256 x 16 floats = 16 KiB */
    cfg->mc = 144;
    cfg->nc = 4096;
    cfg->ukr = gemm_ukr_avx2;
    cfg->pack_bt = pack_bt_avx2;
    cfg->pack_a = NULL; /* MR = 6: the portable packing */
    cfg->ukr_rows = gemm_ukr_rows_avx2;
    cfg->rows_max = 64;
    cfg->pack_at = pack_at_avx2;
    cfg->pack_bn = pack_bn_avx2;
}

/* Peak-measurement loop (kernels/peak.c): 12 independent ymm FMA chains. */
float qkv__fma_peak_loop_avx2(int64_t iters, double *flops) {
    __m256 a0 = _mm256_set1_ps(0), a1 = _mm256_set1_ps(1), a2 = _mm256_set1_ps(2);
    __m256 a3 = _mm256_set1_ps(3), a4 = _mm256_set1_ps(4), a5 = _mm256_set1_ps(5);
    __m256 a6 = _mm256_set1_ps(6), a7 = _mm256_set1_ps(7), a8 = _mm256_set1_ps(8);
    __m256 a9 = _mm256_set1_ps(9), a10 = _mm256_set1_ps(10), a11 = _mm256_set1_ps(11);
    const __m256 b = _mm256_set1_ps(1.0000001f), c = _mm256_set1_ps(1e-7f);
    for (int64_t it = 0; it < iters; it++) {
        a0 = _mm256_fmadd_ps(a0, b, c), a1 = _mm256_fmadd_ps(a1, b, c);
        a2 = _mm256_fmadd_ps(a2, b, c), a3 = _mm256_fmadd_ps(a3, b, c);
        a4 = _mm256_fmadd_ps(a4, b, c), a5 = _mm256_fmadd_ps(a5, b, c);
        a6 = _mm256_fmadd_ps(a6, b, c), a7 = _mm256_fmadd_ps(a7, b, c);
        a8 = _mm256_fmadd_ps(a8, b, c), a9 = _mm256_fmadd_ps(a9, b, c);
        a10 = _mm256_fmadd_ps(a10, b, c), a11 = _mm256_fmadd_ps(a11, b, c);
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                             _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
    float out[8];
    _mm256_storeu_ps(out, s);
    *flops = 2.0 * 8.0 * 12.0 * (double)iters;
    return out[0] + out[7];
}
