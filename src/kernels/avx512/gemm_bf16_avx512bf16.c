/* gemm_bf16_avx512bf16.c — the AVX512_BF16 GEMM micro-kernel (vdpbf16ps): an 8 x 48 block of C
 * in 24 zmm FP32 accumulators, like the FP32 kernel, but each instruction takes a pair of k:
 * per pair of k, three 64-byte loads of the packed B pair panel (48 columns x 2 bf16), 8
 * broadcasts of a 32-bit A pair, 24 vdpbf16ps = 48 x 8 x 2 multiply-adds (twice the FP32
 * kernel's per instruction). Layouts and error bound: kernels/gemm_bf16.h.
 *
 * This file alone is compiled with -mavx512bf16; it runs only when CPUID reports AVX512_BF16
 * (qkv__gemm_bf16_config_avx512 checks). */
#include "kernels/avx512/store_avx512.h"
#include "kernels/gemm_bf16.h"

#include <immintrin.h>
#include <string.h>

enum { MR = 8, NR = 48 };

static inline __m512bh as_bh(__m512i x) { return (__m512bh)x; }

/* R live rows (a constant once inlined: a 1-row decode does 3 vdpbf16ps per k pair, not 24). */
/* The 32-bit pair of bf16 at p (4-byte aligned: p and the row stride are even). */
static inline int pair_at(const uint16_t *p) {
    int v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline __attribute__((always_inline)) void ukr_n(const int R, int64_t kc, const uint16_t *a,
                                                        int64_t lda, const uint16_t *bp, float *c,
                                                        int64_t ldc, int nr, float beta) {
    __m512 c00 = _mm512_setzero_ps(), c01 = _mm512_setzero_ps(), c02 = _mm512_setzero_ps();
    __m512 c10 = _mm512_setzero_ps(), c11 = _mm512_setzero_ps(), c12 = _mm512_setzero_ps();
    __m512 c20 = _mm512_setzero_ps(), c21 = _mm512_setzero_ps(), c22 = _mm512_setzero_ps();
    __m512 c30 = _mm512_setzero_ps(), c31 = _mm512_setzero_ps(), c32 = _mm512_setzero_ps();
    __m512 c40 = _mm512_setzero_ps(), c41 = _mm512_setzero_ps(), c42 = _mm512_setzero_ps();
    __m512 c50 = _mm512_setzero_ps(), c51 = _mm512_setzero_ps(), c52 = _mm512_setzero_ps();
    __m512 c60 = _mm512_setzero_ps(), c61 = _mm512_setzero_ps(), c62 = _mm512_setzero_ps();
    __m512 c70 = _mm512_setzero_ps(), c71 = _mm512_setzero_ps(), c72 = _mm512_setzero_ps();
    /* rows past R are never read; point them at row 0 rather than past the caller's A */
    const uint16_t *a0 = a, *a1 = R > 1 ? a + lda : a, *a2 = R > 2 ? a + 2 * lda : a;
    const uint16_t *a3 = R > 3 ? a + 3 * lda : a, *a4 = R > 4 ? a + 4 * lda : a;
    const uint16_t *a5 = R > 5 ? a + 5 * lda : a, *a6 = R > 6 ? a + 6 * lda : a;
    const uint16_t *a7 = R > 7 ? a + 7 * lda : a;
#define QKV_ROW(r)                                                                                 \
    do {                                                                                           \
        if (R > r) {                                                                               \
            __m512bh a_ = as_bh(_mm512_set1_epi32(pair_at(a##r + 2 * q)));                         \
            c##r##0 = _mm512_dpbf16_ps(c##r##0, a_, b0);                                           \
            c##r##1 = _mm512_dpbf16_ps(c##r##1, a_, b1);                                           \
            c##r##2 = _mm512_dpbf16_ps(c##r##2, a_, b2);                                           \
        }                                                                                          \
    } while (0)
    for (int64_t q = 0; q < (kc + 1) / 2; q++) {
        __m512bh b0 = as_bh(_mm512_loadu_si512(bp)), b1 = as_bh(_mm512_loadu_si512(bp + 32));
        __m512bh b2 = as_bh(_mm512_loadu_si512(bp + 64));
        QKV_ROW(0);
        QKV_ROW(1);
        QKV_ROW(2);
        QKV_ROW(3);
        QKV_ROW(4);
        QKV_ROW(5);
        QKV_ROW(6);
        QKV_ROW(7);
        bp += 2 * NR;
    }
#undef QKV_ROW
    __mmask16 m[3];
    tail_masks48(nr, m);
    __m512 va = _mm512_set1_ps(1.0f), vb = _mm512_set1_ps(beta);
    int bz = beta == 0.0f;
    if (R > 7) store_row(c + 7 * ldc, c70, c71, c72, m, va, vb, bz);
    if (R > 6) store_row(c + 6 * ldc, c60, c61, c62, m, va, vb, bz);
    if (R > 5) store_row(c + 5 * ldc, c50, c51, c52, m, va, vb, bz);
    if (R > 4) store_row(c + 4 * ldc, c40, c41, c42, m, va, vb, bz);
    if (R > 3) store_row(c + 3 * ldc, c30, c31, c32, m, va, vb, bz);
    if (R > 2) store_row(c + 2 * ldc, c20, c21, c22, m, va, vb, bz);
    if (R > 1) store_row(c + 1 * ldc, c10, c11, c12, m, va, vb, bz);
    store_row(c, c00, c01, c02, m, va, vb, bz);
}

static void gemm_bf16_ukr_avx512bf16(int64_t kc, const void *a, int64_t lda, const uint16_t *bp,
                                     float *c, int64_t ldc, int mr, int nr, float beta) {
    const uint16_t *ah = a;
    switch (mr) {
    case 1: ukr_n(1, kc, ah, lda, bp, c, ldc, nr, beta); break;
    case 2: ukr_n(2, kc, ah, lda, bp, c, ldc, nr, beta); break;
    case 3: ukr_n(3, kc, ah, lda, bp, c, ldc, nr, beta); break;
    case 4: ukr_n(4, kc, ah, lda, bp, c, ldc, nr, beta); break;
    case 5: ukr_n(5, kc, ah, lda, bp, c, ldc, nr, beta); break;
    case 6: ukr_n(6, kc, ah, lda, bp, c, ldc, nr, beta); break;
    case 7: ukr_n(7, kc, ah, lda, bp, c, ldc, nr, beta); break;
    case 8: ukr_n(8, kc, ah, lda, bp, c, ldc, nr, beta); break;
    default: break;
    }
}

void qkv__gemm_bf16_config_avx512bf16(qkv_gemm_bf16_config *cfg) {
    cfg->name = "gemm_bf16_avx512bf16";
    cfg->mr = MR;
    cfg->nr = NR;
    cfg->kc = 512; /* B micro-panel 512 x 48 bf16 = 48 KiB: L1 (Zen 4: 32 KiB) + L2 */
    cfg->mc = 144;
    cfg->pairs = 1;
    cfg->kalign = 2;
    cfg->pad_rows = 0;
    cfg->f16 = 0;
    cfg->ukr = gemm_bf16_ukr_avx512bf16;
    cfg->ukr_epi = NULL;
    cfg->f32_twin = NULL;
    cfg->peak_loop = qkv__dpbf16_peak_loop_avx512bf16;
}

/* Peak loop (kernels/peak.c): 12 independent vdpbf16ps chains (latency x throughput), each
 * instruction 16 lanes x 2 multiply-adds. */
float qkv__dpbf16_peak_loop_avx512bf16(int64_t iters, double *flops) {
    enum { CHAINS = 12 };
    __m512 acc[CHAINS];
    const __m512bh x = as_bh(_mm512_set1_epi32(0x3f803f80)); /* (1, 1) */
    const __m512bh y = as_bh(_mm512_set1_epi32(0x33d633d6)); /* (1e-7, 1e-7) */
#pragma GCC unroll 12
    for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_set1_ps((float)i);
    for (int64_t it = 0; it < iters; it++) {
#pragma GCC unroll 12
        for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_dpbf16_ps(acc[i], x, y);
    }
#pragma GCC unroll 12
    for (int i = 1; i < CHAINS; i++) acc[0] = _mm512_add_ps(acc[0], acc[i]);
    *flops = 4.0 * 16.0 * CHAINS * (double)iters; /* 2 products + 2 adds per lane */
    return _mm512_reduce_add_ps(acc[0]);
}
