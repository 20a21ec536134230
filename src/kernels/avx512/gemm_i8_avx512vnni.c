/* gemm_i8_avx512vnni.c — the AVX512_VNNI int8 GEMM micro-kernel (vpdpbusd; contract in
 * kernels/gemm_i8.h): an 8 x 48 block of int32 sums in 24 zmm accumulators. Per quad of k:
 * three 64-byte loads of the packed weights (48 columns x 4 s8), per row one broadcast of its
 * 4 activation bytes (u8) and 3 vpdpbusd (each 16 columns x 4 products added into int32,
 * without saturation; the sums cannot overflow: K is bounded at pack time). A 1-row call (a
 * decode step) does 3 vpdpbusd per 192 weight bytes.
 *
 * This file alone is compiled with -mavx512vnni; it runs only when CPUID reports AVX512_VNNI
 * (qkv__gemm_i8_config_avx512 checks). */
#include "kernels/avx512/quant_i8_avx512.h"
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

/* never inlined: inside tile_n's loop over groups GCC kept the accumulators in registers no
 * longer (each vpdpbusd's result copied and stored to the stack: a third of the speed) */
__attribute__((noinline)) static void gemm_i8_ukr_avx512vnni(int64_t kq, const uint8_t *a,
                                                             int64_t lda, const int8_t *bp,
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

/* The fused tile (qkv_gemm_i8_tile_fn): per group the exact sums of the micro-kernel, then
 * the format's float step on them (acc - 128·cs, converted, times t·s, added to the row's sum,
 * the sums of the tile kept in sbuf: L1), then beta and a masked store. The same operations in
 * the same order as QKV_GEMM_I8_GROUP_STEP and i8_finish, so the same bits. */
static inline __attribute__((always_inline)) void
tile_n(const int R, int64_t K, const uint8_t *a, int64_t lda, const int8_t *bp, const int32_t *cs,
       const float *s, int64_t sst, const float *t, int64_t ts, float beta, float *C, int64_t ldc,
       int nr) {
    enum { G = QKV_GEMM_I8_GROUP };
    float sb[MR * NR]; /* the tile's float sums, row r at sb + r*NR */
    for (int i = 0; i < R * NR; i++) sb[i] = 0.0f;
    for (int64_t k0 = 0, g = 0; k0 < K; k0 += G, g++) {
        const int64_t kq = ((K - k0 < G ? K - k0 : G) + 3) / 4;
        int32_t acc[MR * NR];
        gemm_i8_ukr_avx512vnni(kq, a + k0, lda, bp + k0 * NR, acc, R);
        /* the float step: sum + (float)(acc - 128·cs) · (t·s) */
        const __m512i n0 = _mm512_slli_epi32(_mm512_loadu_si512(cs + g * sst), 7);
        const __m512i n1 = _mm512_slli_epi32(_mm512_loadu_si512(cs + g * sst + 16), 7);
        const __m512i n2 = _mm512_slli_epi32(_mm512_loadu_si512(cs + g * sst + 32), 7);
        const __m512 s0 = _mm512_loadu_ps(s + g * sst), s1 = _mm512_loadu_ps(s + g * sst + 16);
        const __m512 s2 = _mm512_loadu_ps(s + g * sst + 32);
#define QKV_STEP(r)                                                                                \
    do {                                                                                           \
        if (R > r) {                                                                               \
            const __m512 tr = _mm512_set1_ps(t[r * ts + g]);                                       \
            float *sr = sb + r * NR;                                                               \
            _mm512_storeu_ps(                                                                      \
                sr, _mm512_add_ps(_mm512_loadu_ps(sr),                                             \
                                  _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(               \
                                                    _mm512_loadu_si512(acc + r * NR + 0), n0)),    \
                                                _mm512_mul_ps(tr, s0))));                          \
            _mm512_storeu_ps(                                                                      \
                sr + 16,                                                                           \
                _mm512_add_ps(_mm512_loadu_ps(sr + 16),                                            \
                              _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(                   \
                                                _mm512_loadu_si512(acc + r * NR + 16), n1)),       \
                                            _mm512_mul_ps(tr, s1))));                              \
            _mm512_storeu_ps(                                                                      \
                sr + 32,                                                                           \
                _mm512_add_ps(_mm512_loadu_ps(sr + 32),                                            \
                              _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(                   \
                                                _mm512_loadu_si512(acc + r * NR + 32), n2)),       \
                                            _mm512_mul_ps(tr, s2))));                              \
        }                                                                                          \
    } while (0)
        QKV_STEP(0);
        QKV_STEP(1);
        QKV_STEP(2);
        QKV_STEP(3);
        QKV_STEP(4);
        QKV_STEP(5);
        QKV_STEP(6);
        QKV_STEP(7);
#undef QKV_STEP
    }
    const __m512 vb = _mm512_set1_ps(beta);
    for (int c = 0; c < 3; c++) {
        const int left = nr - 16 * c;
        if (left <= 0) break;
        const __mmask16 m = (__mmask16)(left >= 16 ? 0xFFFFu : (1u << left) - 1u);
        for (int r = 0; r < R; r++) {
            float *cr = C + r * ldc + 16 * c;
            __m512 v = _mm512_loadu_ps(sb + r * NR + 16 * c);
            if (beta != 0.0f) v = _mm512_add_ps(v, _mm512_mul_ps(vb, _mm512_maskz_loadu_ps(m, cr)));
            _mm512_mask_storeu_ps(cr, m, v);
        }
    }
}

static void gemm_i8_tile_avx512vnni(int64_t K, const uint8_t *a, int64_t lda, const int8_t *bp,
                                    const int32_t *cs, const float *s, int64_t sst, const float *t,
                                    int64_t ts, float beta, float *C, int64_t ldc, int mr, int nr) {
    switch (mr) {
    case 1: tile_n(1, K, a, lda, bp, cs, s, sst, t, ts, beta, C, ldc, nr); break;
    case 2: tile_n(2, K, a, lda, bp, cs, s, sst, t, ts, beta, C, ldc, nr); break;
    case 3: tile_n(3, K, a, lda, bp, cs, s, sst, t, ts, beta, C, ldc, nr); break;
    case 4: tile_n(4, K, a, lda, bp, cs, s, sst, t, ts, beta, C, ldc, nr); break;
    case 5: tile_n(5, K, a, lda, bp, cs, s, sst, t, ts, beta, C, ldc, nr); break;
    case 6: tile_n(6, K, a, lda, bp, cs, s, sst, t, ts, beta, C, ldc, nr); break;
    case 7: tile_n(7, K, a, lda, bp, cs, s, sst, t, ts, beta, C, ldc, nr); break;
    case 8: tile_n(8, K, a, lda, bp, cs, s, sst, t, ts, beta, C, ldc, nr); break;
    default: break;
    }
}

/* The activations' quantization (qkv_gemm_i8_quant_fn): a + 128 as u8 (quant_i8_avx512.h). */
static void gemm_i8_quant_avx512vnni(const float *x, int64_t K, int64_t kp, uint8_t *u, float *t) {
    qkv__i8_quant_avx512(x, K, kp, u, t, 0);
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
    cfg->peak_loop = qkv__dpbusd_peak_loop_avx512vnni;
    cfg->tile = gemm_i8_tile_avx512vnni;
    cfg->quant = gemm_i8_quant_avx512vnni;
    cfg->kalign = 4;
    cfg->pad_rows = 0;
    cfg->a_signed = 0;
}

/* Peak loop (kernels/peak.c): 12 independent vpdpbusd chains (latency x throughput), each
 * instruction 16 lanes x 4 u8·s8 multiply-adds. */
float qkv__dpbusd_peak_loop_avx512vnni(int64_t iters, double *flops) {
    enum { CHAINS = 12 };
    __m512i acc[CHAINS];
    const __m512i x = _mm512_set1_epi32(0x01010101), y = _mm512_set1_epi32(0x01ff01ff);
#pragma GCC unroll 12
    for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_set1_epi32(i);
    for (int64_t it = 0; it < iters; it++) {
#pragma GCC unroll 12
        for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_dpbusd_epi32(acc[i], x, y);
    }
#pragma GCC unroll 12
    for (int i = 1; i < CHAINS; i++) acc[0] = _mm512_add_epi32(acc[0], acc[i]);
    *flops = 2.0 * 64.0 * CHAINS * (double)iters; /* 4 products + 4 adds per lane */
    return (float)_mm512_reduce_add_epi32(acc[0]);
}
