/* gemm_avx512.c — AVX-512 GEMM micro-kernel: an 8 x 48 block of C in 24 zmm registers.
 *
 * Per k: three 16-float loads of the packed B row, 8 broadcasts of packed A, 24 FMAs (11 loads
 * per 24 FMAs). 24 accumulators + 3 B vectors + 1 broadcast fit the 32 zmm registers. 8 x 48
 * rather than the classic 14 x 32: Transformer sizes are multiples of 8 and of 48 (384, 768,
 * 1536, 3072), so edge tiles are rare; measured faster on Zen 4 (docs/PERFORMANCE.md). Edge
 * tiles (mr < 8 or nr < 48) run the same loop and store through a row limit and masks; packed
 * panels are zero-padded so the extra lanes are harmless. */
#include "kernels/gemm.h"

#include "core/cpu.h"
#include "kernels/avx2/pack_avx2.h"
#include "kernels/avx512/store_avx512.h"
#include "kernels/gemm_bf16.h"

#include <immintrin.h>

enum { MR = 8, NR = 48 };

static void gemm_ukr_avx512(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc,
                            int mr, int nr, float alpha, float beta) {
    /* Named accumulators (not an array) so the compiler keeps all 24 in registers. */
    __m512 c00 = _mm512_setzero_ps(), c01 = _mm512_setzero_ps(), c02 = _mm512_setzero_ps();
    __m512 c10 = _mm512_setzero_ps(), c11 = _mm512_setzero_ps(), c12 = _mm512_setzero_ps();
    __m512 c20 = _mm512_setzero_ps(), c21 = _mm512_setzero_ps(), c22 = _mm512_setzero_ps();
    __m512 c30 = _mm512_setzero_ps(), c31 = _mm512_setzero_ps(), c32 = _mm512_setzero_ps();
    __m512 c40 = _mm512_setzero_ps(), c41 = _mm512_setzero_ps(), c42 = _mm512_setzero_ps();
    __m512 c50 = _mm512_setzero_ps(), c51 = _mm512_setzero_ps(), c52 = _mm512_setzero_ps();
    __m512 c60 = _mm512_setzero_ps(), c61 = _mm512_setzero_ps(), c62 = _mm512_setzero_ps();
    __m512 c70 = _mm512_setzero_ps(), c71 = _mm512_setzero_ps(), c72 = _mm512_setzero_ps();
#define QKV_ROW(r)                                                                                 \
    do {                                                                                           \
        __m512 a_ = _mm512_set1_ps(ap[r]);                                                         \
        c##r##0 = _mm512_fmadd_ps(a_, b0, c##r##0);                                                \
        c##r##1 = _mm512_fmadd_ps(a_, b1, c##r##1);                                                \
        c##r##2 = _mm512_fmadd_ps(a_, b2, c##r##2);                                                \
    } while (0)
    for (int64_t p = 0; p < kc; p++) {
        __m512 b0 = _mm512_loadu_ps(bp), b1 = _mm512_loadu_ps(bp + 16);
        __m512 b2 = _mm512_loadu_ps(bp + 32);
        QKV_ROW(0);
        QKV_ROW(1);
        QKV_ROW(2);
        QKV_ROW(3);
        QKV_ROW(4);
        QKV_ROW(5);
        QKV_ROW(6);
        QKV_ROW(7);
        ap += MR;
        bp += NR;
    }
#undef QKV_ROW
    /* nr in [1, 48]: one 16-bit mask per segment */
    __mmask16 m[3];
    for (int s = 0; s < 3; s++) {
        int left = nr - 16 * s;
        m[s] = left >= 16 ? (__mmask16)0xffff : left <= 0 ? 0 : (__mmask16)((1u << left) - 1u);
    }
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    int bz = beta == 0.0f;
    /* Rows past mr are simply not stored (a switch keeps the accumulators in registers). */
    switch (mr) {
    default:
    case 8: store_row(c + 7 * ldc, c70, c71, c72, m, va, vb, bz); /* fall through */
    case 7: store_row(c + 6 * ldc, c60, c61, c62, m, va, vb, bz); /* fall through */
    case 6: store_row(c + 5 * ldc, c50, c51, c52, m, va, vb, bz); /* fall through */
    case 5: store_row(c + 4 * ldc, c40, c41, c42, m, va, vb, bz); /* fall through */
    case 4: store_row(c + 3 * ldc, c30, c31, c32, m, va, vb, bz); /* fall through */
    case 3: store_row(c + 2 * ldc, c20, c21, c22, m, va, vb, bz); /* fall through */
    case 2: store_row(c + 1 * ldc, c10, c11, c12, m, va, vb, bz); /* fall through */
    case 1: store_row(c, c00, c01, c02, m, va, vb, bz);           /* fall through */
    case 0: break;
    }
}

/* The small-M twin of gemm_ukr_avx512 (gemm.h, ukr_rows): the same broadcast + 3 FMAs per row
 * and k, in the same order, with A read in place (row r at a + r*lda) instead of from a packed
 * panel, and only the R live rows computed (R a constant once inlined: no wasted FMAs for a
 * 1-row decode). Same store_row, so every C element gets exactly the ukr's operations.
 * BF16 (a constant): B holds bf16 (gemm_bf16.h, plain), widened exactly before the same FMAs,
 * so the bf16 kernel equals this one on the widened weights bit for bit. */
static inline __m512 widen_bf16x16(const uint16_t *p) {
    __m256i h = _mm256_loadu_si256((const __m256i *)p);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

static inline __m512 widen_f16x16(const uint16_t *p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}

static inline __attribute__((always_inline)) void
ukr_rows_n(const int R, const int BF16, int64_t kc, const float *a, int64_t lda, const void *bv,
           float *c, int64_t ldc, int nr, float alpha, float beta) {
    __m512 c00 = _mm512_setzero_ps(), c01 = _mm512_setzero_ps(), c02 = _mm512_setzero_ps();
    __m512 c10 = _mm512_setzero_ps(), c11 = _mm512_setzero_ps(), c12 = _mm512_setzero_ps();
    __m512 c20 = _mm512_setzero_ps(), c21 = _mm512_setzero_ps(), c22 = _mm512_setzero_ps();
    __m512 c30 = _mm512_setzero_ps(), c31 = _mm512_setzero_ps(), c32 = _mm512_setzero_ps();
    __m512 c40 = _mm512_setzero_ps(), c41 = _mm512_setzero_ps(), c42 = _mm512_setzero_ps();
    __m512 c50 = _mm512_setzero_ps(), c51 = _mm512_setzero_ps(), c52 = _mm512_setzero_ps();
    __m512 c60 = _mm512_setzero_ps(), c61 = _mm512_setzero_ps(), c62 = _mm512_setzero_ps();
    __m512 c70 = _mm512_setzero_ps(), c71 = _mm512_setzero_ps(), c72 = _mm512_setzero_ps();
    /* rows past R are never read; point them at row 0 rather than past the caller's A */
    const float *a0 = a, *a1 = R > 1 ? a + lda : a, *a2 = R > 2 ? a + 2 * lda : a;
    const float *a3 = R > 3 ? a + 3 * lda : a, *a4 = R > 4 ? a + 4 * lda : a;
    const float *a5 = R > 5 ? a + 5 * lda : a, *a6 = R > 6 ? a + 6 * lda : a;
    const float *a7 = R > 7 ? a + 7 * lda : a;
#define QKV_ROW(r)                                                                                 \
    do {                                                                                           \
        if (R > r) {                                                                               \
            __m512 a_ = _mm512_set1_ps(a##r[p]);                                                   \
            c##r##0 = _mm512_fmadd_ps(a_, b0, c##r##0);                                            \
            c##r##1 = _mm512_fmadd_ps(a_, b1, c##r##1);                                            \
            c##r##2 = _mm512_fmadd_ps(a_, b2, c##r##2);                                            \
        }                                                                                          \
    } while (0)
    const float *bp = bv;
    const uint16_t *bh = bv;
    for (int64_t p = 0; p < kc; p++) {
        __m512 b0, b1, b2;
        if (BF16 == 2) { /* f16 (gemm_bf16.h, config.f16): widened exactly too */
            b0 = widen_f16x16(bh), b1 = widen_f16x16(bh + 16), b2 = widen_f16x16(bh + 32);
            bh += NR;
        } else if (BF16) {
            b0 = widen_bf16x16(bh), b1 = widen_bf16x16(bh + 16), b2 = widen_bf16x16(bh + 32);
            bh += NR;
        } else {
            b0 = _mm512_loadu_ps(bp), b1 = _mm512_loadu_ps(bp + 16), b2 = _mm512_loadu_ps(bp + 32);
            bp += NR;
        }
        QKV_ROW(0);
        QKV_ROW(1);
        QKV_ROW(2);
        QKV_ROW(3);
        QKV_ROW(4);
        QKV_ROW(5);
        QKV_ROW(6);
        QKV_ROW(7);
    }
#undef QKV_ROW
    __mmask16 m[3];
    for (int s = 0; s < 3; s++) {
        int left = nr - 16 * s;
        m[s] = left >= 16 ? (__mmask16)0xffff : left <= 0 ? 0 : (__mmask16)((1u << left) - 1u);
    }
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
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

static void gemm_ukr_rows_avx512(int64_t kc, const float *a, int64_t lda, const float *bp, float *c,
                                 int64_t ldc, int mr, int nr, float alpha, float beta) {
    switch (mr) {
    case 1: ukr_rows_n(1, 0, kc, a, lda, bp, c, ldc, nr, alpha, beta); break;
    case 2: ukr_rows_n(2, 0, kc, a, lda, bp, c, ldc, nr, alpha, beta); break;
    case 3: ukr_rows_n(3, 0, kc, a, lda, bp, c, ldc, nr, alpha, beta); break;
    case 4: ukr_rows_n(4, 0, kc, a, lda, bp, c, ldc, nr, alpha, beta); break;
    case 5: ukr_rows_n(5, 0, kc, a, lda, bp, c, ldc, nr, alpha, beta); break;
    case 6: ukr_rows_n(6, 0, kc, a, lda, bp, c, ldc, nr, alpha, beta); break;
    case 7: ukr_rows_n(7, 0, kc, a, lda, bp, c, ldc, nr, alpha, beta); break;
    case 8: ukr_rows_n(8, 0, kc, a, lda, bp, c, ldc, nr, alpha, beta); break;
    default: break;
    }
}

static void pack_bt_avx512(const float *B, int64_t ldb, int64_t kc, int nr, float *dst) {
    qkv__pack_bt_avx2(B, ldb, kc, nr, NR, dst);
}

static void pack_a_avx512(const float *A, int64_t lda, int64_t kc, int mr, float *dst) {
    qkv__pack_a8_avx2(A, lda, kc, mr, dst);
}

/* The copy packings (gemm.h): 8 floats of a dout row per k (Aᵀ), 48 of a B row per k. */
static void pack_at_avx512(const float *A, int64_t lda, int64_t kc, float *dst) {
    for (int64_t p = 0; p < kc; p++) _mm256_storeu_ps(dst + p * MR, _mm256_loadu_ps(A + p * lda));
}

static void pack_bn_avx512(const float *B, int64_t ldb, int64_t kc, float *dst) {
    for (int64_t p = 0; p < kc; p++) {
        const float *s = B + p * ldb;
        float *d = dst + p * NR;
        __m512 x0 = _mm512_loadu_ps(s), x1 = _mm512_loadu_ps(s + 16), x2 = _mm512_loadu_ps(s + 32);
        _mm512_storeu_ps(d, x0);
        _mm512_storeu_ps(d + 16, x1);
        _mm512_storeu_ps(d + 32, x2);
    }
}

void qkv__gemm_config_avx512(qkv_gemm_config *cfg) {
    cfg->name = "gemm_f32_avx512";
    cfg->mr = MR;
    cfg->nr = NR;
    cfg->kc = 384;  /* at most; K is cut into equal blocks (gemm.c) */
    cfg->mc = 144;  /* A block 144 x 384 floats = 216 KiB, in L2 */
    cfg->nc = 4080; /* B panel 384 x 4080 floats = 6 MiB, in L3 */
    cfg->ukr = gemm_ukr_avx512;
    cfg->pack_bt = pack_bt_avx512;
    cfg->pack_a = pack_a_avx512; /* MR == 8: whole 8 x 8 transposes */
    cfg->ukr_rows = gemm_ukr_rows_avx512;
    cfg->rows_max = 64; /* measured (docs/PERFORMANCE.md, GEMM) */
    cfg->pack_at = pack_at_avx512;
    cfg->pack_bn = pack_bn_avx512;
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
    case 7: ukr_rows_n(7, H, kc, a, lda, bp, c, ldc, nr, 1.0f, beta); break;
    case 8: ukr_rows_n(8, H, kc, a, lda, bp, c, ldc, nr, 1.0f, beta); break;
    default: break;
    }
}

static void gemm_bf16_ukr_avx512(int64_t kc, const void *a, int64_t lda, const uint16_t *bp,
                                 float *c, int64_t ldc, int mr, int nr, float beta) {
    h16_ukr(1, kc, a, lda, bp, c, ldc, mr, nr, beta);
}
static void gemm_f16_ukr_avx512(int64_t kc, const void *a, int64_t lda, const uint16_t *bp,
                                float *c, int64_t ldc, int mr, int nr, float beta) {
    h16_ukr(2, kc, a, lda, bp, c, ldc, mr, nr, beta);
}

/* The f16-weight GEMM: the FP32 zmm kernel on f16 weights widened in registers (vcvtph2ps). */
void qkv__gemm_f16_config_avx512(qkv_gemm_bf16_config *cfg) {
    qkv__gemm_bf16_config_plain(cfg, "gemm_f16_avx512", qkv__gemm_config_avx512,
                                gemm_f16_ukr_avx512, qkv__fma_peak_loop_avx512);
    cfg->f16 = 1;
}

/* The bf16-weight GEMM: the kernel qkv__gemm_bf16_selected() names (AMX by default) where the
 * CPU and the build have it (its own file and flags), else the FP32 zmm kernel on bf16 weights
 * widened in registers (FP32 activations, the FP32 kernel's bits). */
void qkv__gemm_bf16_config_avx512(qkv_gemm_bf16_config *cfg) {
    const int want = qkv__gemm_bf16_selected();
    (void)want;
#if QKV_HAVE_AMX
    if (want == QKV_BF16_AMX && (qkv_cpu_features() & QKV_CPU_AMX_BF16)) {
        qkv__gemm_bf16_config_amx(cfg);
        return;
    }
#endif
#if QKV_HAVE_AVX512BF16
    if (want == QKV_BF16_DPBF16 && (qkv_cpu_features() & QKV_CPU_AVX512BF16)) {
        qkv__gemm_bf16_config_avx512bf16(cfg);
        return;
    }
#endif
    qkv__gemm_bf16_config_plain(cfg, "gemm_bf16_avx512", qkv__gemm_config_avx512,
                                gemm_bf16_ukr_avx512, qkv__fma_peak_loop_avx512);
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
