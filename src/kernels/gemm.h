/* gemm.h — single-precision matrix multiply with fused epilogues (internal API).
 *
 *   C[M,N] = epilogue(alpha * op(A)[M,K] · op(B)[K,N] + beta * C)
 *   epilogue(t)[i,j] = act(t[i,j] + bias[j]) + residual[i*ldr + j]   (each part optional)
 *
 * Row-major with leading dimensions (lda, ldb, ldc, ldr in elements). op(A) = A (A is [M,K],
 * element (i,k) at A[i*lda+k]) or Aᵀ (A is [K,M], element (i,k) at A[k*lda+i]); likewise B.
 * beta == 0 overwrites C without reading it (NaN in C does not propagate). K == 0 gives
 * C = epilogue(beta * C). The residual may alias C only if ldr == ldc (read before write per
 * element). Every C element is summed in the same order whatever the thread count (K is
 * blocked identically), so results are bit-identical across thread counts for one ISA.
 *
 * The method is BLIS's: pack a KC x NC panel of op(B) and an MC x KC block of op(A) into
 * contiguous micro-panels, then a register-blocked micro-kernel (MR x NR of C in registers)
 * per instruction set. Threads split C into a grid of blocks; each packs what it needs. */
#ifndef QKV_KERNELS_GEMM_H
#define QKV_KERNELS_GEMM_H

#include "qkv.h"

#include <stdint.h>

typedef enum qkv_act {
    QKV_ACT_NONE = 0,
    QKV_ACT_GELU_ERF = 1,  /* x/2 (1 + erf(x/√2)) */
    QKV_ACT_GELU_TANH = 2, /* x/2 (1 + tanh(√(2/π)(x + 0.044715x³))) */
    QKV_ACT_RELU = 3,
    QKV_ACT_SILU = 4,
} qkv_act;

typedef struct qkv_gemm_epilogue {
    const float *bias;     /* [N] or NULL */
    qkv_act act;           /* applied after the bias */
    const float *residual; /* [M, ldr] or NULL, added last */
    int64_t ldr;
} qkv_gemm_epilogue;

/* Micro-kernel contract (per instruction set): with ap the packed A micro-panel
 * (ap[p*MR + r], r < MR, zero-padded past mr) and bp the packed B micro-panel
 * (bp[p*NR + j], j < NR, zero-padded past nr), p < kc:
 *   acc[r][j] = Σ_p ap[p*MR + r] * bp[p*NR + j]
 *   c[r*ldc + j] = alpha*acc[r][j] + beta*c[r*ldc + j]   for r < mr, j < nr
 * with beta == 0 meaning overwrite (c not read). Nothing outside mr x nr is touched. */
typedef void (*qkv_gemm_ukr_fn)(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc,
                                int mr, int nr, float alpha, float beta);

/* Optional ISA packing of a transposed B micro-panel (the x·Wᵀ case of every linear layer):
 * dst[p*NR + j] = B[j*ldb + p] for p < kc, j < nr, zeros for nr <= j < NR. */
typedef void (*qkv_gemm_pack_bt_fn)(const float *B, int64_t ldb, int64_t kc, int nr, float *dst);

typedef struct qkv_gemm_config {
    const char *name;   /* kernel name, e.g. gemm_f32_avx512 */
    int mr, nr;         /* register block */
    int64_t kc, mc, nc; /* cache blocks: kc*nr floats in L1, mc*kc in L2, kc*nc in L3 */
    qkv_gemm_ukr_fn ukr;
    qkv_gemm_pack_bt_fn pack_bt; /* NULL: the portable packing in gemm.c */
} qkv_gemm_config;

/* The config of each ISA (ref is portable C). */
void qkv__gemm_config_ref(qkv_gemm_config *cfg);
void qkv__gemm_config_avx2(qkv_gemm_config *cfg);
void qkv__gemm_config_avx512(qkv_gemm_config *cfg);

/* FMA peak loops (kernels/peak.c), one per ISA. */
float qkv__fma_peak_loop_ref(int64_t iters, double *flops);
float qkv__fma_peak_loop_avx2(int64_t iters, double *flops);
float qkv__fma_peak_loop_avx512(int64_t iters, double *flops);

/* The blocked GEMM for the active instruction set. INVALID_ARG on negative sizes, leading
 * dimensions too small or NULL pointers (A/B may be NULL only when K == 0 or M*N == 0);
 * NOMEM if the packing buffers cannot be allocated. */
qkv_status qkv__gemm_f32(qkv_runtime *rt, int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                         float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                         float beta, float *C, int64_t ldc, const qkv_gemm_epilogue *epi);

/* The same with an explicit config (tests run every ISA's kernel; benchmarks tune blocks). */
qkv_status qkv__gemm_f32_with(const qkv_gemm_config *cfg, qkv_runtime *rt, int trans_a, int trans_b,
                              int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                              int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                              int64_t ldc, const qkv_gemm_epilogue *epi);

/* The plain triple loop (double accumulation): the oracle for every fast path. */
void qkv__gemm_f32_naive(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                         const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                         float *C, int64_t ldc, const qkv_gemm_epilogue *epi);

/* Scalar activation (the naive reference; the epilogue runs the act_f32 row kernel). */
float qkv__act_f32(qkv_act act, float x);

#endif
