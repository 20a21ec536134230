/* gemm_bf16_amx.c — the AMX GEMM micro-kernel for bf16 weights (tdpbf16ps): a 32 x 32 block of
 * C in four 16 x 16 FP32 tiles, accumulated over the whole K in the tiles. Per 32 k (16 pairs):
 * two A tiles (16 rows x 32 bf16 each, read in place from the bf16 rows of A) and two B tiles
 * (16 pairs x 16 columns each, the halves of the pair panel), four tdpbf16ps = 32 x 32 x 32
 * multiply-adds. Layouts and error bound: kernels/gemm_bf16.h (the pairs layout with NR = 32;
 * tdpbf16ps multiplies the bf16 pairs exactly, adds them into FP32 one after the other rounding
 * to nearest even, flushes subnormal inputs and results to zero, as vdpbf16ps does).
 *
 * A tile reads 16 whole rows of 32 k: the A rows are padded with zeros to a multiple of 32 k
 * and of MR rows (config.kalign, config.pad_rows), the B panels to a multiple of 32 k, so no
 * tile reads past its buffer, and the padded k add +0 products. Rows past mr are computed and
 * dropped.
 *
 * This file alone is compiled with -mamx-tile -mamx-bf16; it runs only when qkv_cpu_features()
 * reports QKV_CPU_AMX_BF16 (CPUID, XCR0, and the process's permission, core/cpu.c). Each thread
 * loads the tile configuration when it has another one (kernels/avx512/amx.h). */
#include "kernels/avx512/amx.h"
#include "kernels/dispatch.h"
#include "kernels/gemm_bf16.h"

#include <immintrin.h>
#include <string.h>

enum { MR = 32, NR = 32, KT = 32 /* k per tile row: 16 pairs of bf16 = 64 bytes */ };

/* The block from t (32 x 32) into c: c[r][j] = t[r][j] + beta*c[r][j] for r < mr, j < nr
 * (beta == 0: c not read), then, with epi, the epilogue on each row (in t, in L1) before it is
 * stored: the same operations as storing, then qkv__gemm_epilogue_tile. stream: whole rows
 * 64-byte aligned go out with non-temporal stores. */
static void store_block(float *t, float *c, int64_t ldc, int mr, int nr, float beta,
                        const qkv_gemm_epilogue *epi, int64_t i0, int64_t j0, int stream) {
    const __mmask16 m0 = nr >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << nr) - 1u);
    const __mmask16 m1 = nr >= 32   ? (__mmask16)0xffff
                         : nr <= 16 ? (__mmask16)0
                                    : (__mmask16)((1u << (nr - 16)) - 1u);
    const __m512 vb = _mm512_set1_ps(beta);
    void (*row_epi)(float *, const float *, qkv_act, const float *, size_t) =
        epi ? qkv__kernels()->epilogue_row_f32 : NULL;
    const int nt = stream && nr == NR && ((uintptr_t)c & 63) == 0 && (ldc & 15) == 0;
    for (int r = 0; r < mr; r++) {
        float *tr = t + r * NR, *cr = c + r * ldc;
        if (beta != 0.0f) {
            __m512 x0 = _mm512_load_ps(tr), x1 = _mm512_load_ps(tr + 16);
            x0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, cr), x0);
            x1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, cr + 16), x1);
            _mm512_store_ps(tr, x0);
            _mm512_store_ps(tr + 16, x1);
        }
        if (row_epi)
            row_epi(tr, epi->bias ? epi->bias + j0 : NULL, epi->act,
                    epi->residual ? epi->residual + (i0 + r) * epi->ldr + j0 : NULL, (size_t)nr);
        __m512 x0 = _mm512_load_ps(tr), x1 = _mm512_load_ps(tr + 16);
        if (nt) {
            _mm512_stream_ps(cr, x0);
            _mm512_stream_ps(cr + 16, x1);
        } else {
            _mm512_mask_storeu_ps(cr, m0, x0);
            _mm512_mask_storeu_ps(cr + 16, m1, x1);
        }
    }
    if (nt) _mm_sfence(); /* non-temporal stores are weakly ordered: before anyone reads C */
}

/* Tiles: 0..3 C (rows 0-15 / 16-31 x columns 0-15 / 16-31), 4, 5 A (rows 0-15, 16-31), 6, 7 B
 * (columns 0-15, 16-31). With mr <= 16 only the top row of tiles is computed. */
static void ukr_amx(int64_t kc, const uint16_t *a, int64_t lda, const uint16_t *bp, float *c,
                    int64_t ldc, int mr, int nr, float beta, const qkv_gemm_epilogue *epi,
                    int64_t i0, int64_t j0, int stream) {
    qkv__amx_tiles_ready(QKV_AMX_CFG_BF16);
    const int64_t steps = (kc + KT - 1) / KT, sa = lda * (int64_t)sizeof(uint16_t);
    const int two = mr > 16;
    _tile_zero(0);
    _tile_zero(1);
    if (two) {
        _tile_zero(2);
        _tile_zero(3);
        for (int64_t s = 0; s < steps; s++) {
            const uint16_t *b = bp + s * (KT / 2) * 2 * NR;
            _tile_loadd(6, b, 2 * NR * sizeof(uint16_t));
            _tile_loadd(7, b + NR, 2 * NR * sizeof(uint16_t));
            _tile_loadd(4, a + s * KT, sa);
            _tile_loadd(5, a + 16 * lda + s * KT, sa);
            _tile_dpbf16ps(0, 4, 6);
            _tile_dpbf16ps(1, 4, 7);
            _tile_dpbf16ps(2, 5, 6);
            _tile_dpbf16ps(3, 5, 7);
        }
    } else {
        for (int64_t s = 0; s < steps; s++) {
            const uint16_t *b = bp + s * (KT / 2) * 2 * NR;
            _tile_loadd(6, b, 2 * NR * sizeof(uint16_t));
            _tile_loadd(7, b + NR, 2 * NR * sizeof(uint16_t));
            _tile_loadd(4, a + s * KT, sa);
            _tile_dpbf16ps(0, 4, 6);
            _tile_dpbf16ps(1, 4, 7);
        }
    }
    /* a whole block, nothing to add to it: straight into C; else through t */
    if (!epi && !stream && mr == MR && nr == NR && beta == 0.0f) {
        const int64_t sc = ldc * (int64_t)sizeof(float);
        _tile_stored(0, c, sc);
        _tile_stored(1, c + 16, sc);
        _tile_stored(2, c + 16 * ldc, sc);
        _tile_stored(3, c + 16 * ldc + 16, sc);
        return;
    }
    float t[MR * NR] __attribute__((aligned(64)));
    _tile_stored(0, t, NR * sizeof(float));
    _tile_stored(1, t + 16, NR * sizeof(float));
    if (two) {
        _tile_stored(2, t + 16 * NR, NR * sizeof(float));
        _tile_stored(3, t + 16 * NR + 16, NR * sizeof(float));
    }
    store_block(t, c, ldc, mr, nr, beta, epi, i0, j0, stream);
}

/* The micro-kernel (gemm_bf16.h). */
static void gemm_bf16_ukr_amx(int64_t kc, const void *a, int64_t lda, const uint16_t *bp, float *c,
                              int64_t ldc, int mr, int nr, float beta) {
    ukr_amx(kc, a, lda, bp, c, ldc, mr, nr, beta, NULL, 0, 0, 0);
}

/* The same with the epilogue applied to each row on its way from the tiles to C. */
static void gemm_bf16_ukr_epi_amx(int64_t kc, const void *a, int64_t lda, const uint16_t *bp,
                                  float *c, int64_t ldc, int mr, int nr, float beta,
                                  const qkv_gemm_epilogue *epi, int64_t i0, int64_t j0,
                                  int stream) {
    ukr_amx(kc, a, lda, bp, c, ldc, mr, nr, beta, epi, i0, j0, stream);
}

void qkv__gemm_bf16_config_amx(qkv_gemm_bf16_config *cfg) {
    cfg->name = "gemm_bf16_amx";
    cfg->mr = MR;
    cfg->nr = NR;
    cfg->kc = (int64_t)1 << 40; /* one K block: the tiles accumulate the whole K */
    cfg->mc = 256;              /* 256 bf16 rows of A (K 1536: 768 KiB) stay in L2 */
    cfg->pairs = 1;
    cfg->kalign = KT;
    cfg->pad_rows = 1;
    cfg->f16 = 0;
    cfg->ukr = gemm_bf16_ukr_amx;
    cfg->ukr_epi = gemm_bf16_ukr_epi_amx;
    cfg->f32_twin = NULL;
    cfg->peak_loop = qkv__amx_bf16_peak_loop;
}

/* Peak loop (kernels/peak.c): four independent tdpbf16ps on tiles loaded once, each 16 x 16
 * outputs x 32 products = 16384 FLOPs. */
float qkv__amx_bf16_peak_loop(int64_t iters, double *flops) {
    uint16_t x[16 * 32] __attribute__((aligned(64)));
    for (int i = 0; i < 16 * 32; i++) x[i] = 0x3a83; /* 1e-3 */
    qkv__amx_tiles_ready(QKV_AMX_CFG_BF16);
    _tile_loadd(4, x, 64);
    _tile_loadd(5, x, 64);
    _tile_loadd(6, x, 64);
    _tile_loadd(7, x, 64);
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int64_t it = 0; it < iters; it++) {
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    float t[4 * 16 * 16] __attribute__((aligned(64)));
    qkv__amx_store_c_tiles(t);
    const float s = t[0] + t[256] + t[512] + t[768];
    *flops = 4.0 * 16 * 16 * 32 * 2 * (double)iters;
    return s;
}
