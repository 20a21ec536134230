/* gemm_i8_amx.c — the AMX int8 GEMM micro-kernel (tdpbssd; contract in kernels/gemm_i8.h): a
 * 16 x 16 block of C, one group of 32 k at a time. Per group: an A tile (16 rows x 32 s8, read
 * in place from the quantized rows of A) and a B tile (8 quads x 16 columns x 4 s8: the packed
 * panel, NR = 16, 512 contiguous bytes), one tdpbssd = 16 x 16 x 32 multiply-adds, exact in
 * int32 (|Σ| <= 32·127·127). The int32 tile is stored to L1 and the format's float step runs on
 * it with AVX-512 while the tile unit computes the next group (two sets of tiles, alternating):
 * (float)acc · (t·s) added to the row's float sum, groups in order, the same IEEE operations
 * (never an FMA; this file is compiled with -ffp-contract=off) in the same order as
 * QKV_GEMM_I8_GROUP_STEP, so the same bits as every other kernel and as qkv__gemm_i8_naive.
 *
 * The float step is the bottleneck: per 16 outputs and group a conversion, two multiplies and
 * an add, against 16 ticks of the tile unit per tdpbssd. A 16 x 16 block keeps its 16 row sums
 * in zmm registers through all of K; a 32 x 32 block (four C tiles, each A and B tile used
 * twice) had to keep them in L1 and ran 10-15% slower at M = 2048 (a load and a store more per
 * 16 outputs and group; docs/PERFORMANCE.md).
 *
 * The activations are stored as s8 (config.a_signed: a itself, not a + 128): tdpbssd multiplies
 * s8 by s8, so acc is Σ a·q directly and the step needs no column sums (one vector operation
 * less per 16 outputs and group than the vpdpbusd kernel's). A tile reads 16 whole rows of 32 k:
 * A's rows are padded with zero bytes to a multiple of 32 k and of 16 rows, the packed B to a
 * multiple of 32 k (config.kalign, config.pad_rows); rows past mr go through the tiles and are
 * dropped (their float steps skipped).
 *
 * This file alone is compiled with -mamx-tile -mamx-int8; it runs only when qkv_cpu_features()
 * reports QKV_CPU_AMX_INT8 (CPUID, XCR0, and the process's permission, core/cpu.c). Its tile
 * configuration (QKV_AMX_CFG_I8: A tiles of 32 bytes, B tiles of 8 rows) differs from the bf16
 * kernel's; each thread loads the one it needs when it holds the other (kernels/avx512/amx.h). */
#include "kernels/avx512/amx.h"
#include "kernels/avx512/quant_i8_avx512.h"
#include "kernels/gemm_i8.h"

#include <immintrin.h>
#include <string.h>

enum { MR = 16, NR = 16, G = QKV_GEMM_I8_GROUP, QG = QKV_GEMM_I8_GROUP / 4 /* quads a group */ };

/* Group g's exact sums (16 x 16 int32) into tile 0 (g even) or 1 (g odd): zeroed, then A (tile
 * 4 or 5: 16 rows x 32 s8) times B (tile 6 or 7: 8 quads x 16 columns x 4 s8). Two sets, so a
 * group's tile is stored while the next group's tdpbssd runs. */
static inline __attribute__((always_inline)) void group_tile(int64_t g, const uint8_t *a,
                                                             int64_t lda, const int8_t *bp) {
    const int8_t *b = bp + g * QG * 4 * NR;
    if (g & 1) {
        _tile_zero(1);
        _tile_loadd(7, b, 4 * NR);
        _tile_loadd(5, a + g * G, lda);
        _tile_dpbssd(1, 5, 7);
    } else {
        _tile_zero(0);
        _tile_loadd(6, b, 4 * NR);
        _tile_loadd(4, a + g * G, lda);
        _tile_dpbssd(0, 4, 6);
    }
}
static inline __attribute__((always_inline)) void store_tile(int64_t g, int32_t *acc) {
    if (g & 1)
        _tile_stored(1, acc, NR * sizeof(int32_t));
    else
        _tile_stored(0, acc, NR * sizeof(int32_t));
}

/* The fused tile (qkv_gemm_i8_tile_fn): per group the tile's exact sums, stored to acc (L1),
 * then the format's float step on them, sum + (float)acc · (t·s), the block's 16 row sums in
 * 16 zmm registers through all of K (0 + the first product: the format's first step), the
 * next group's tdpbssd running meanwhile; then beta and a masked store, as i8_finish. Rows past
 * mr (A's zero padding) go through the tiles and are dropped. cs unused (a_signed). */
static void gemm_i8_tile_amx(int64_t K, const uint8_t *a, int64_t lda, const int8_t *bp,
                             const int32_t *cs, const float *s, int64_t sst, const float *t,
                             int64_t ts, float beta, float *C, int64_t ldc, int mr, int nr) {
    (void)cs;
    qkv__amx_tiles_ready(QKV_AMX_CFG_I8);
    int32_t acc[MR * NR] __attribute__((aligned(64)));
    __m512 v[MR];
    const float *tp[MR]; /* row r's scales (row mr-1's for the padding rows: never used) */
#pragma GCC unroll 16
    for (int r = 0; r < MR; r++) {
        v[r] = _mm512_setzero_ps();
        tp[r] = t + (r < mr ? r : mr - 1) * ts;
    }
    const int64_t ng = (K + G - 1) / G;
    if (ng > 0) group_tile(0, a, lda, bp);
    for (int64_t g = 0; g < ng; g++) {
        if (g + 1 < ng) group_tile(g + 1, a, lda, bp);
        store_tile(g, acc);
        const __m512 sg = _mm512_loadu_ps(s + g * sst);
#pragma GCC unroll 16
        for (int r = 0; r < MR; r++)
            if (r < mr) /* the padding rows' steps skipped (a row alone: 1 of 16) */
                v[r] = _mm512_add_ps(
                    v[r], _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_load_si512(acc + r * NR)),
                                        _mm512_mul_ps(_mm512_set1_ps(tp[r][g]), sg)));
    }
    const __m512 vb = _mm512_set1_ps(beta);
    const __mmask16 m = (__mmask16)(nr >= 16 ? 0xFFFFu : (1u << nr) - 1u);
#pragma GCC unroll 16
    for (int r = 0; r < MR; r++) {
        if (r >= mr) break;
        float *cr = C + r * ldc;
        __m512 x = v[r];
        if (beta != 0.0f) x = _mm512_add_ps(x, _mm512_mul_ps(vb, _mm512_maskz_loadu_ps(m, cr)));
        _mm512_mask_storeu_ps(cr, m, x);
    }
}

/* The micro-kernel (qkv_gemm_i8_ukr_fn) for the unfused path: one group's exact sums; kq is
 * ignored (a tile reads the group's whole 8 quads: the padding holds zeros). */
static void gemm_i8_ukr_amx(int64_t kq, const uint8_t *a, int64_t lda, const int8_t *bp,
                            int32_t *acc, int mr) {
    (void)kq;
    qkv__amx_tiles_ready(QKV_AMX_CFG_I8);
    int32_t buf[MR * NR] __attribute__((aligned(64)));
    group_tile(0, a, lda, bp);
    store_tile(0, buf);
    memcpy(acc, buf, sizeof(int32_t) * (size_t)(mr * NR));
}

static void gemm_i8_group_amx(int first, int mr, const int32_t *acc, const int32_t *cs,
                              const float *s, const float *t, int64_t ts, float *sum) {
    (void)cs;
    QKV_GEMM_I8_GROUP_STEP_S8(NR)
}

/* The activations' quantization (qkv_gemm_i8_quant_fn): a itself as s8, the vpdpbusd kernel's
 * values without the + 128 (quant_i8_avx512.h). */
static void gemm_i8_quant_amx(const float *x, int64_t K, int64_t kp, uint8_t *u, float *t) {
    qkv__i8_quant_avx512(x, K, kp, u, t, 1);
}

void qkv__gemm_i8_config_amx(qkv_gemm_i8_config *cfg) {
    cfg->name = "gemm_i8_amx";
    cfg->mr = MR;
    cfg->nr = NR;
    cfg->ukr = gemm_i8_ukr_amx;
    cfg->group = gemm_i8_group_amx;
    cfg->peak_loop = qkv__amx_i8_peak_loop;
    cfg->tile = gemm_i8_tile_amx;
    cfg->quant = gemm_i8_quant_amx;
    cfg->kalign = G;
    cfg->pad_rows = 1;
    cfg->a_signed = 1;
}

/* Peak loop (kernels/peak.c): four independent tdpbssd on the kernel's tiles (loaded once),
 * each 16 x 16 outputs x 32 products (the kernel's K per instruction: one group). */
float qkv__amx_i8_peak_loop(int64_t iters, double *flops) {
    int8_t x[16 * 64] __attribute__((aligned(64)));
    memset(x, 1, sizeof x);
    qkv__amx_tiles_ready(QKV_AMX_CFG_I8);
    _tile_loadd(4, x, 32);
    _tile_loadd(5, x, 32);
    _tile_loadd(6, x, 64);
    _tile_loadd(7, x, 64);
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int64_t it = 0; it < iters; it++) {
        _tile_dpbssd(0, 4, 6);
        _tile_dpbssd(1, 4, 7);
        _tile_dpbssd(2, 5, 6);
        _tile_dpbssd(3, 5, 7);
    }
    int32_t c[4 * 16 * 16] __attribute__((aligned(64)));
    qkv__amx_store_c_tiles(c);
    const float sum = (float)c[0] + (float)c[256] + (float)c[512] + (float)c[768];
    *flops = 4.0 * 16 * 16 * G * 2 * (double)iters;
    return sum;
}
