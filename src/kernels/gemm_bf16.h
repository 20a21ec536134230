/* gemm_bf16.h — GEMM with 16-bit weights (bf16, or IEEE f16: config.f16), FP32 activations and
 * FP32 accumulation (internal API). Everything below says bf16; f16 weights (qkv__gemm_f16_*)
 * take the same layout, loop nest and plain kernels, widened by vcvtph2ps / F16C instead (f16 is
 * exact in FP32 too), so the plain results and error bounds are the same; f16 has no pairs
 * kernel.
 *
 *   C[M,N] = A[M,K] · op(B)[K,N] + beta * C        (beta == 0 overwrites C without reading it)
 *
 * A is FP32 row-major (lda); B is bf16, either [N, K] row-major as Linear layers store their
 * weights (trans_b = 1, element (k, n) at B[n*ldb + k]) or [K, N] (trans_b = 0). B is always
 * packed once (qkv__gemm_bf16_pack, or qkv__gemm_bf16_pack_f32 from an FP32 checkpoint, rounded
 * to nearest even) into the layout of one ISA's micro-kernel, then reused for every product.
 *
 * Three kinds of micro-kernel (config.pairs, config.kalign):
 *  - plain (ref, avx2, avx512 without AVX512_BF16): B panels hold bf16 in the FP32
 *    layout bp[p*NR + j]; the kernel widens them exactly (bf16 is the top half of an FP32) and
 *    runs the FP32 FMA sequence of that ISA's FP32 micro-kernel on A read in place. The result
 *    is bit-identical to qkv__gemm_f32 of the same ISA (config.f32_twin) on the widened B.
 *  - pairs (AVX512_BF16, vdpbf16ps): A is rounded to bf16 (RNE, the convert_f32_bf16 kernel)
 *    per call into bf16 rows of even length (odd K padded with a zero), so consecutive k form
 *    the 32-bit pairs the instruction takes; B panels hold the same pairs per column
 *    (bp[q*2*NR + 2*j + h] = b[2q + h][j]). vdpbf16ps
 *    multiplies the pairs exactly and adds them into FP32 accumulators (it flushes bf16
 *    subnormal inputs and FP32 subnormal results to zero, and rounds to nearest even).
 *  - AMX (tdpbf16ps, kernels/avx512/gemm_bf16_amx.c): the pairs layout with NR = 32, whose
 *    halves are the B tiles; A's bf16 rows and B's panels padded with zeros to a multiple of 32
 *    k (kalign = 32) and A to whole 32-row blocks (pad_rows), because a tile load reads whole
 *    16-row x 32-k tiles. The same arithmetic and bound as pairs.
 * Error against the exact product (tests/test_kernels_gemm_bf16.c checks both on every ISA),
 * with S = Σ_k |a_k|·|b_k| + |beta·c| and γ_n = n·2^-24 / (1 - n·2^-24):
 *    plain: |err| <= γ_{K+2}·S                        (+ gradual-underflow terms)
 *    pairs: |err| <= (2^-8 + γ_{K+2}·(1 + 2^-8))·S + 2^-126·(Σ|a_k| + Σ|b_k| + K + 2)
 * (2^-8: the RNE rounding of each activation to bf16's 8-bit significand; 2^-126: the
 * flush-to-zero of subnormal inputs and results.)
 *
 * K is cut into blocks exactly as qkv__gemm_f32 does (qkv__gemm_k_block), each C element is
 * summed by one thread in a fixed order, so results are bit-identical for any thread count and
 * any M (a row computed alone equals the same row in a batch). The epilogue (bias, activation,
 * residual; kernels/gemm.h) is the FP32 GEMM's code, run on each C tile after its last K
 * block, so a plain kernel with an epilogue still gives the FP32 twin's bits. */
#ifndef QKV_KERNELS_GEMM_BF16_H
#define QKV_KERNELS_GEMM_BF16_H

#include "kernels/gemm.h"
#include "qkv.h"

#include <stddef.h>
#include <stdint.h>

/* Micro-kernel: c[r*ldc + j] = acc[r][j] + beta*c[r*ldc + j] for r < mr, j < nr (beta == 0:
 * overwrite), nothing else touched, with acc[r][j] = Σ_{p<kc} a(r, p)·b(p, j), where
 *  - plain: a(r, p) = ((const float *)a)[r*lda + p], b(p, j) = widen(bp[p*NR + j]);
 *  - pairs: a = bf16 rows (const uint16_t *, a(r, p) = a[r*lda + p], lda even, a 4-byte
 *    aligned, zeros from p = kc to the next multiple of kalign), b the pair panel
 *    (bp[q*2*NR + 2*j + h]), q < ceil(kc/kalign)*kalign/2. Rows past mr are never read, except
 *    with pad_rows (AMX), where the A block has mr rounded up to 16 rows, zeros past M. */
typedef void (*qkv_gemm_bf16_ukr_fn)(int64_t kc, const void *a, int64_t lda, const uint16_t *bp,
                                     float *c, int64_t ldc, int mr, int nr, float beta);

/* Optional (pairs kernels): the micro-kernel with the epilogue fused (epi as qkv__gemm_f32's,
 * without pre or act_grad, or NULL; i0, j0: the block's position in C): the bits of ukr, then
 * qkv__gemm_epilogue_tile on the block, in one pass over C. stream: C is large (past the
 * caches): the kernel may write it with non-temporal stores (fenced before it returns). */
typedef void (*qkv_gemm_bf16_ukr_epi_fn)(int64_t kc, const void *a, int64_t lda, const uint16_t *bp,
                                         float *c, int64_t ldc, int mr, int nr, float beta,
                                         const qkv_gemm_epilogue *epi, int64_t i0, int64_t j0,
                                         int stream);

typedef struct qkv_gemm_bf16_config {
    const char *name; /* e.g. gemm_bf16_avx512bf16 */
    int mr, nr;       /* register block */
    int64_t kc, mc;   /* K block (at most; as qkv__gemm_k_block), rows per A block */
    int pairs;        /* 1: vdpbf16ps layout, A rounded to bf16 pairs; 0: plain (see above) */
    int kalign;       /* stored K blocks (B) and A's bf16 rows padded to a multiple of this */
    int pad_rows;     /* 1: A's bf16 copy is padded with zero rows to a multiple of mr (AMX) */
    int f16;          /* 1: the weights are IEEE binary16 (plain kernels only); 0: bf16 */
    qkv_gemm_bf16_ukr_fn ukr;
    qkv_gemm_bf16_ukr_epi_fn ukr_epi; /* NULL: ukr, then the epilogue on the block */
    /* plain kernels: the FP32 config whose results they reproduce bit for bit; else NULL */
    void (*f32_twin)(qkv_gemm_config *cfg);
    /* the peak loop of the instruction the kernel runs (FMA, or vdpbf16ps; kernels/peak.c) */
    float (*peak_loop)(int64_t iters, double *flops);
} qkv_gemm_bf16_config;

/* The config of each ISA. avx512 picks the kernel qkv__gemm_bf16_selected() names when the
 * CPU has it (qkv_cpu_features) and the build has it (QKV_HAVE_AMX, QKV_HAVE_AVX512BF16), else
 * its plain zmm kernel (gemm_bf16_avx512: FP32 activations, the FP32 avx512 kernel's bits). */
void qkv__gemm_bf16_config_ref(qkv_gemm_bf16_config *cfg);
void qkv__gemm_bf16_config_avx2(qkv_gemm_bf16_config *cfg);
void qkv__gemm_bf16_config_avx512(qkv_gemm_bf16_config *cfg);
/* The f16-weight configs (plain, f16 = 1): each ISA's FP32 kernel on widened f16 weights. */
void qkv__gemm_f16_config_ref(qkv_gemm_bf16_config *cfg);
void qkv__gemm_f16_config_avx2(qkv_gemm_bf16_config *cfg);
void qkv__gemm_f16_config_avx512(qkv_gemm_bf16_config *cfg);
/* Fills a plain config: register block and K blocks of the FP32 twin (whose packing layout and
 * FMA sequence the plain kernel reproduces), ukr, and the twin's peak loop. */
void qkv__gemm_bf16_config_plain(qkv_gemm_bf16_config *cfg, const char *name,
                                 void (*twin)(qkv_gemm_config *), qkv_gemm_bf16_ukr_fn ukr,
                                 float (*peak_loop)(int64_t iters, double *flops));
/* Which bf16 kernel the avx512 config takes where the CPU has it:
 *   AMX (the default): tdpbf16ps, on CPUs with AMX_BF16 (Sapphire Rapids and later) that the
 *       OS lets us use; elsewhere the plain kernel. On the CPU measured it is several times the
 *       FP32 peak on batches (docs/PERFORMANCE.md);
 *   DPBF16: vdpbf16ps (AVX512_BF16), which issued at half the FMA rate on the CPUs measured;
 *   PLAIN: bf16 widened to FP32 (FP32 activations, the FP32 kernel's bits).
 * The environment variable QKV_BF16_KERNEL (amx | dpbf16 | plain), read at the first lookup,
 * sets it; qkv__gemm_bf16_select overrides it (DEFAULT: back to the environment's or AMX). A
 * weight packed keeps the kernel it was packed for: select before packing. */
enum { QKV_BF16_DEFAULT = -1, QKV_BF16_PLAIN = 0, QKV_BF16_DPBF16 = 1, QKV_BF16_AMX = 2 };
void qkv__gemm_bf16_select(int kernel);
int qkv__gemm_bf16_selected(void);
/* The vdpbf16ps kernel itself (only with QKV_HAVE_AVX512BF16; caller checks the CPU). */
void qkv__gemm_bf16_config_avx512bf16(qkv_gemm_bf16_config *cfg);
/* Peak loop of independent vdpbf16ps chains (kernels/peak.c contract; 4 FLOPs per lane). */
float qkv__dpbf16_peak_loop_avx512bf16(int64_t iters, double *flops);
/* The AMX kernel (only with QKV_HAVE_AMX; caller checks QKV_CPU_AMX_BF16), and the peak loop
 * of four independent tdpbf16ps (16 x 16 x 32 multiply-adds each). */
void qkv__gemm_bf16_config_amx(qkv_gemm_bf16_config *cfg);
float qkv__amx_bf16_peak_loop(int64_t iters, double *flops);

typedef struct qkv_gemm_bf16_packed qkv_gemm_bf16_packed;

/* Packs op(B) [K, N] (bf16 bits, trans_b as above) for cfg (NULL: the active ISA's). K == 0 or
 * N == 0 give an empty valid handle. INVALID_ARG on NULL out, negative sizes, ldb too small or
 * B NULL with K*N > 0; OVERFLOW; NOMEM. On failure *out is NULL. B is not referenced after. */
qkv_status qkv__gemm_bf16_pack(const qkv_gemm_bf16_config *cfg, int trans_b, int64_t K, int64_t N,
                               const uint16_t *B, int64_t ldb, qkv_gemm_bf16_packed **out);
/* The same from FP32 weights, each rounded to bf16 to nearest even (NaN stays NaN, overflow
 * gives Inf, subnormals kept: core/half.h). Same result as converting first, then packing. */
qkv_status qkv__gemm_bf16_pack_f32(const qkv_gemm_bf16_config *cfg, int trans_b, int64_t K,
                                   int64_t N, const float *B, int64_t ldb,
                                   qkv_gemm_bf16_packed **out);
/* The same for f16 weights: cfg NULL (the active ISA's gemm_f16_config) or one with f16 = 1
 * (the bf16 packers refuse one with f16 = 1, these one with f16 = 0: INVALID_ARG). _pack_f32
 * rounds to nearest even to f16 (overflow gives Inf, NaN stays NaN: core/half.h). */
qkv_status qkv__gemm_f16_pack(const qkv_gemm_bf16_config *cfg, int trans_b, int64_t K, int64_t N,
                              const uint16_t *B, int64_t ldb, qkv_gemm_bf16_packed **out);
qkv_status qkv__gemm_f16_pack_f32(const qkv_gemm_bf16_config *cfg, int trans_b, int64_t K,
                                  int64_t N, const float *B, int64_t ldb,
                                  qkv_gemm_bf16_packed **out);
void qkv__gemm_bf16_packed_free(qkv_gemm_bf16_packed *p); /* NULL is a no-op */
/* 1 when the packed weights are f16, 0 when bf16. */
int qkv__gemm_bf16_packed_is_f16(const qkv_gemm_bf16_packed *p);
int64_t qkv__gemm_bf16_packed_k(const qkv_gemm_bf16_packed *p);
int64_t qkv__gemm_bf16_packed_n(const qkv_gemm_bf16_packed *p);
size_t qkv__gemm_bf16_packed_bytes(const qkv_gemm_bf16_packed *p);
const char *qkv__gemm_bf16_packed_kernel(const qkv_gemm_bf16_packed *p); /* config name */
/* The stored bf16 (or f16) bits of op(B)(k, n) (tests; 0 <= k < K, 0 <= n < N). */
uint16_t qkv__gemm_bf16_packed_get(const qkv_gemm_bf16_packed *p, int64_t k, int64_t n);

/* C [M, N] = epilogue(A [M, K] · op(B) + beta * C) with the packed B's kernel; epi NULL or as
 * qkv__gemm_f32's (the same checks; a residual overlapping C is copied first). INVALID_ARG on
 * NULL B, M < 0, lda < K, ldc < N, NULL A/C where needed, or a malformed epilogue; NOMEM if A's
 * bf16 copy (pairs and AMX kernels only: M x K bf16, padded) or the residual's copy cannot be
 * allocated. */
qkv_status qkv__gemm_bf16(qkv_runtime *rt, int64_t M, const float *A, int64_t lda,
                          const qkv_gemm_bf16_packed *B, float beta, float *C, int64_t ldc,
                          const qkv_gemm_epilogue *epi);

/* The plain reference: Σ_k A(i,k)·widen(B(k,j)) in double, + beta·C, rounded once. */
void qkv__gemm_bf16_naive(int trans_b, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                          const uint16_t *B, int64_t ldb, float beta, float *C, int64_t ldc);
/* The same with f16 weights. */
void qkv__gemm_f16_naive(int trans_b, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                         const uint16_t *B, int64_t ldb, float beta, float *C, int64_t ldc);

#endif
