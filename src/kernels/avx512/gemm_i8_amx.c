/* gemm_i8_amx.c — the AMX int8 GEMM micro-kernel (tdpbssd; contract in kernels/gemm_i8.h): a
 * 32 x 32 block of C in four 16 x 16 int32 tiles, one group of 32 k at a time. Per group: two
 * A tiles (16 rows x 32 s8 each, read in place from the quantized rows of A) and two B tiles
 * (8 quads x 16 columns x 4 s8, the halves of the packed panel, NR = 32, row stride 128 bytes),
 * four tdpbssd = 32 x 32 x 32 multiply-adds, exact in int32 (|Σ| <= 32·127·127). The tiles are
 * stored to an L1 buffer and the format's float step runs on it with AVX-512 while the tiles
 * compute the next group: (float)acc · (t·s) added to the block's float sums, groups in order,
 * the same IEEE operations (never an FMA; this file is compiled with -ffp-contract=off) in the
 * same order as QKV_GEMM_I8_GROUP_STEP, so the same bits as every other kernel and as
 * qkv__gemm_i8_naive.
 *
 * The activations are stored as s8 (config.a_signed: a itself, not a + 128): tdpbssd multiplies
 * s8 by s8, so acc is Σ a·q directly and the step needs no column sums (one vector operation
 * less per 16 outputs and group than the vpdpbusd kernel's). A tile reads 16 whole rows of 32 k:
 * A's rows are padded with zero bytes to a multiple of 32 k and of 32 rows, the packed B to a
 * multiple of 32 k (config.kalign, config.pad_rows); rows past mr are computed and dropped.
 *
 * The group step is the bottleneck: per 16 outputs and group a conversion, two multiplies and
 * an add (vs 4·16 ticks of the tile unit per four tdpbssd), so the block is 32 x 32: each A and
 * B tile feeds two tdpbssd.
 *
 * This file alone is compiled with -mamx-tile -mamx-int8; it runs only when qkv_cpu_features()
 * reports QKV_CPU_AMX_INT8 (CPUID, XCR0, and the process's permission, core/cpu.c). Its tile
 * configuration (QKV_AMX_CFG_I8: A tiles of 32 bytes, B tiles of 8 rows) differs from the bf16
 * kernel's; each thread loads the one it needs when it holds the other (kernels/avx512/amx.h). */
#include "kernels/avx512/amx.h"
#include "kernels/gemm_i8.h"

#include <float.h>
#include <immintrin.h>
#include <math.h>
#include <string.h>

enum { MR = 32, NR = 32, G = QKV_GEMM_I8_GROUP, QG = QKV_GEMM_I8_GROUP / 4 /* quads a group */ };

/* Group g's exact sums into tiles 0-3 (0, 1: rows 0-15 x columns 0-15 / 16-31; 2, 3: rows
 * 16-31): zeroed, then A (4, 5) times B (6, 7). Only the top row of tiles when !two. */
static inline __attribute__((always_inline)) void
group_tiles(int64_t g, const uint8_t *a, int64_t lda, const int8_t *bp, int two) {
    const int8_t *b = bp + g * QG * 4 * NR;
    _tile_zero(0);
    _tile_zero(1);
    _tile_loadd(6, b, 4 * NR);
    _tile_loadd(7, b + 64, 4 * NR);
    _tile_loadd(4, a + g * G, lda);
    _tile_dpbssd(0, 4, 6);
    _tile_dpbssd(1, 4, 7);
    if (two) {
        _tile_zero(2);
        _tile_zero(3);
        _tile_loadd(5, a + 16 * lda + g * G, lda);
        _tile_dpbssd(2, 5, 6);
        _tile_dpbssd(3, 5, 7);
    }
}

/* Tiles 0-3 to acc (32 x 32 int32, row r at acc + r*NR). */
static inline __attribute__((always_inline)) void store_tiles(int32_t *acc, int two) {
    _tile_stored(0, acc, NR * sizeof(int32_t));
    _tile_stored(1, acc + 16, NR * sizeof(int32_t));
    if (two) {
        _tile_stored(2, acc + 16 * NR, NR * sizeof(int32_t));
        _tile_stored(3, acc + 16 * NR + 16, NR * sizeof(int32_t));
    }
}

/* Blocks of at most 16 rows use the bottom tiles as a second buffer: group g's sums of rows
 * 0-15 in tiles 0, 1 (A in 4) when g is even, in 2, 3 (A in 5) when odd, so a group's tiles
 * are stored while the next group's tdpbssd run. */
static inline __attribute__((always_inline)) void half_tiles(int64_t g, const uint8_t *a,
                                                             const int64_t lda, const int8_t *bp) {
    const int8_t *b = bp + g * QG * 4 * NR;
    if (g & 1) {
        _tile_zero(2);
        _tile_zero(3);
        _tile_loadd(6, b, 4 * NR);
        _tile_loadd(7, b + 64, 4 * NR);
        _tile_loadd(5, a + g * G, lda);
        _tile_dpbssd(2, 5, 6);
        _tile_dpbssd(3, 5, 7);
    } else {
        _tile_zero(0);
        _tile_zero(1);
        _tile_loadd(6, b, 4 * NR);
        _tile_loadd(7, b + 64, 4 * NR);
        _tile_loadd(4, a + g * G, lda);
        _tile_dpbssd(0, 4, 6);
        _tile_dpbssd(1, 4, 7);
    }
}
static inline __attribute__((always_inline)) void half_store(int64_t g, int32_t *acc) {
    if (g & 1) {
        _tile_stored(2, acc, NR * sizeof(int32_t));
        _tile_stored(3, acc + 16, NR * sizeof(int32_t));
    } else {
        _tile_stored(0, acc, NR * sizeof(int32_t));
        _tile_stored(1, acc + 16, NR * sizeof(int32_t));
    }
}

/* The format's float step of group g on the block's sums (sb; g == 0: 0 + the product, the
 * format's first step, without clearing sb first): for r < mr and the column halves (2 when
 * wide), sum + (float)acc · (t·s). */
static inline __attribute__((always_inline)) void group_step(int64_t g, int mr, int wide,
                                                             const int32_t *acc, const float *s,
                                                             int64_t sst, const float *t,
                                                             int64_t ts, float *sb) {
    const __m512 s0 = _mm512_loadu_ps(s + g * sst), s1 = _mm512_loadu_ps(s + g * sst + 16);
    if (wide) {
        for (int r = 0; r < mr; r++) {
            const __m512 tr = _mm512_set1_ps(t[r * ts + g]);
            float *sr = sb + r * NR;
            const int32_t *ar = acc + r * NR;
            _mm512_store_ps(sr,
                            _mm512_add_ps(g ? _mm512_load_ps(sr) : _mm512_setzero_ps(),
                                          _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_load_si512(ar)),
                                                        _mm512_mul_ps(tr, s0))));
            _mm512_store_ps(
                sr + 16, _mm512_add_ps(g ? _mm512_load_ps(sr + 16) : _mm512_setzero_ps(),
                                       _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_load_si512(ar + 16)),
                                                     _mm512_mul_ps(tr, s1))));
        }
    } else {
        for (int r = 0; r < mr; r++) {
            const __m512 tr = _mm512_set1_ps(t[r * ts + g]);
            float *sr = sb + r * NR;
            _mm512_store_ps(
                sr, _mm512_add_ps(g ? _mm512_load_ps(sr) : _mm512_setzero_ps(),
                                  _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_load_si512(acc + r * NR)),
                                                _mm512_mul_ps(tr, s0))));
        }
    }
}

/* The fused tile (qkv_gemm_i8_tile_fn): per group the tiles' exact sums, then the format's
 * float step on them, sum + (float)acc · (t·s) (the sums of the block in sb: L1), the next
 * group's tdpbssd running meanwhile; then beta and a masked store, as i8_finish. cs unused
 * (a_signed). */
static void gemm_i8_tile_amx(int64_t K, const uint8_t *a, int64_t lda, const int8_t *bp,
                             const int32_t *cs, const float *s, int64_t sst, const float *t,
                             int64_t ts, float beta, float *C, int64_t ldc, int mr, int nr) {
    (void)cs;
    qkv__amx_tiles_ready(QKV_AMX_CFG_I8);
    int32_t acc[MR * NR] __attribute__((aligned(64)));
    float sb[MR * NR] __attribute__((aligned(64)));
    const int two = mr > 16, wide = nr > 16;
    const int64_t ng = (K + G - 1) / G;
    if (ng == 0) {
        memset(sb, 0, sizeof sb); /* C = beta·C */
    } else if (two) {
        group_tiles(0, a, lda, bp, 1);
        for (int64_t g = 0; g < ng; g++) {
            store_tiles(acc, 1);
            if (g + 1 < ng) group_tiles(g + 1, a, lda, bp, 1);
            group_step(g, mr, wide, acc, s, sst, t, ts, sb);
        }
    } else {
        half_tiles(0, a, lda, bp);
        for (int64_t g = 0; g < ng; g++) {
            if (g + 1 < ng) half_tiles(g + 1, a, lda, bp);
            half_store(g, acc);
            group_step(g, mr, wide, acc, s, sst, t, ts, sb);
        }
    }
    const __m512 vb = _mm512_set1_ps(beta);
    for (int c = 0; c < 2; c++) {
        const int left = nr - 16 * c;
        if (left <= 0) break;
        const __mmask16 m = (__mmask16)(left >= 16 ? 0xFFFFu : (1u << left) - 1u);
        for (int r = 0; r < mr; r++) {
            float *cr = C + r * ldc + 16 * c;
            __m512 v = _mm512_load_ps(sb + r * NR + 16 * c);
            if (beta != 0.0f) v = _mm512_add_ps(v, _mm512_mul_ps(vb, _mm512_maskz_loadu_ps(m, cr)));
            _mm512_mask_storeu_ps(cr, m, v);
        }
    }
}

/* The micro-kernel (qkv_gemm_i8_ukr_fn) for the unfused path: one group's exact sums; kq is
 * ignored (a tile reads the group's whole 8 quads: the padding holds zeros). */
static void gemm_i8_ukr_amx(int64_t kq, const uint8_t *a, int64_t lda, const int8_t *bp,
                            int32_t *acc, int mr) {
    (void)kq;
    qkv__amx_tiles_ready(QKV_AMX_CFG_I8);
    int32_t buf[MR * NR] __attribute__((aligned(64)));
    const int two = mr > 16;
    group_tiles(0, a, lda, bp, two);
    store_tiles(buf, two);
    memcpy(acc, buf, sizeof(int32_t) * (size_t)(mr * NR));
}

static void gemm_i8_group_amx(int first, int mr, const int32_t *acc, const int32_t *cs,
                              const float *s, const float *t, int64_t ts, float *sum) {
    (void)cs;
    QKV_GEMM_I8_GROUP_STEP_S8(NR)
}

/* The activations' quantization (qkv_gemm_i8_quant_fn) as s8: the vpdpbusd kernel's
 * (gemm_i8_avx512vnni.c) without the + 128: amax by vmaxps of |x|, t = amax / 127, rint(x / t)
 * by vdivps and vrndscaleps (nearest even), clamped, narrowed to bytes (vpmovdb keeps the low
 * byte: two's complement); NaN / ±Inf give t = NaN and zeros, as a zero group. A short last
 * group is the portable code's, its bytes turned to s8. */
static void gemm_i8_quant_amx(const float *x, int64_t K, int64_t kp, uint8_t *u, float *t) {
    const __m512 fmax = _mm512_set1_ps(FLT_MAX), lo = _mm512_set1_ps(-127.0f),
                 hi = _mm512_set1_ps(127.0f);
    int64_t k0 = 0, g = 0;
    for (; k0 + G <= K; k0 += G, g++) {
        __m512 v[G / 16], amax = _mm512_setzero_ps();
        __mmask16 bad = 0;
#pragma GCC unroll 4
        for (int i = 0; i < G / 16; i++) {
            v[i] = _mm512_loadu_ps(x + k0 + 16 * i);
            const __m512 ab = _mm512_abs_ps(v[i]);
            bad |= _mm512_cmp_ps_mask(ab, fmax, _CMP_NLE_UQ); /* NaN or > FLT_MAX */
            amax = _mm512_max_ps(amax, ab);
        }
        const float tg = bad ? NAN : _mm512_reduce_max_ps(amax) / 127.0f;
        t[g] = tg;
        if (!(tg > 0.0f)) {
            memset(u + k0, 0, G);
            continue;
        }
        const __m512 vt = _mm512_set1_ps(tg);
#pragma GCC unroll 4
        for (int i = 0; i < G / 16; i++) {
            __m512 r = _mm512_roundscale_ps(_mm512_div_ps(v[i], vt),
                                            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            r = _mm512_min_ps(_mm512_max_ps(r, lo), hi);
            _mm_storeu_si128((__m128i *)(u + k0 + 16 * i),
                             _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(r)));
        }
    }
    if (k0 < K) {
        t[g] = qkv__i8_quantize_u8(x + k0, K - k0, u + k0);
        for (int64_t k = k0; k < K; k++) u[k] ^= 0x80; /* a + 128 -> a */
    }
    if (kp > K) memset(u + K, 0, (size_t)(kp - K));
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
    int32_t c[16 * 16] __attribute__((aligned(64)));
    float sum = 0;
    for (int i = 0; i < 4; i++) {
        switch (i) { /* the tile operand is an immediate */
        case 0: _tile_stored(0, c, 64); break;
        case 1: _tile_stored(1, c, 64); break;
        case 2: _tile_stored(2, c, 64); break;
        default: _tile_stored(3, c, 64); break;
        }
        sum += (float)c[0];
    }
    *flops = 4.0 * 16 * 16 * G * 2 * (double)iters;
    return sum;
}
