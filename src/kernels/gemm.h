/* gemm.h — single-precision matrix multiply with fused epilogues (internal API).
 *
 *   C[M,N] = epilogue(alpha * op(A)[M,K] · op(B)[K,N] + beta * C)
 *   epilogue(t)[i,j] = act(t[i,j] + bias[j]) + residual[i*ldr + j]   (each part optional)
 *
 * Row-major with leading dimensions (lda, ldb, ldc, ldr in elements). op(A) = A (A is [M,K],
 * element (i,k) at A[i*lda+k]) or Aᵀ (A is [K,M], element (i,k) at A[k*lda+i]); likewise B.
 * beta == 0 overwrites C without reading it (NaN in C does not propagate). K == 0 gives
 * C = epilogue(beta * C). The residual may overlap C in any way (residual == C included, any
 * beta): C is written by the first K block long before the epilogue reads the residual, so an
 * overlapping residual is first copied aside (an M x N buffer; NOMEM if that fails). Callers
 * that just accumulate into C should prefer beta = 1 (no copy; note the summation order then
 * differs: alpha·AB + C vs (alpha·AB + bias) + residual). Every C element is summed in the same
 * order whatever the thread count, M, or packed/unpacked B (K is blocked identically, the
 * micro-kernel's per-element FMA sequence is fixed), so results are bit-identical across
 * thread counts, batch sizes and both entry points for one ISA (config).
 *
 * The method is BLIS's: pack a KC x NC panel of op(B) and an MC x KC block of op(A) into
 * contiguous micro-panels, then a register-blocked micro-kernel (MR x NR of C in registers)
 * per instruction set. Threads split C into a grid of blocks; each packs what it needs.
 * Inference multiplies by the same weights again and again, often with few rows (a 16-token
 * sentence, one decode row per sequence), where packing B costs as much as the product:
 * qkv__gemm_pack_b packs op(B) once (qkv_gemm_packed) and qkv__gemm_f32_packed reuses it, and
 * for small M reads A in place (ukr_rows) instead of packing it. */
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
    QKV_ACT_TANH = 5, /* tanh(x): BERT's pooler */
} qkv_act;

typedef struct qkv_gemm_epilogue {
    const float *bias;     /* [N] or NULL */
    qkv_act act;           /* applied after the bias */
    const float *residual; /* [M, ldr] or NULL, added last */
    int64_t ldr;
    /* The backward form instead (bias and residual NULL, act not NONE): c = c · act'(x) with x
     * = act_grad[i*ldg + j], by the active ISA's act_bwd_f32 into zeros, so the bits of the
     * unfused product then act_bwd_f32 into a zeroed gradient (the gradient of an activation's
     * input, the hidden layer's in an MLP backward, without its own pass). Not in _naive. */
    const float *act_grad;
    int64_t ldg;
    /* Forward form, with an activation: the biased value before it also goes to pre[i*ldp + j]
     * (what an activation's backward reads), so it is not re-read from memory to apply the
     * activation in a second pass. Not in _naive. */
    float *pre;
    int64_t ldp;
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

/* Optional ISA packing of an A micro-panel of row-major A (op(A) = A):
 * dst[p*MR + r] = A[r*lda + p] for p < kc, r < mr, zeros for mr <= r < MR. */
typedef void (*qkv_gemm_pack_a_fn)(const float *A, int64_t lda, int64_t kc, int mr, float *dst);

/* Optional ISA packing of the two copy cases (whole micro-panels only: mr == MR, nr == NR;
 * gemm.c handles edge panels itself). Transposed A (op(A) = Aᵀ, the doutᵀ of a weight
 * gradient): dst[p*MR + r] = A[p*lda + r]; row-major B (op(B) = B): dst[p*NR + j] =
 * B[p*ldb + j]. Plain copies, so any ISA gives the bits of the portable loops. */
typedef void (*qkv_gemm_pack_copy_fn)(const float *src, int64_t ld, int64_t kc, float *dst);

/* Optional micro-kernel on unpacked rows of A (the small-M path): the ukr contract with
 * ap[p*MR + r] replaced by a[r*lda + p] (row-major op(A) = A, r < mr, p < kc). It must do
 * exactly the ukr's operations on every stored C element (same FMA per p in the same order,
 * same alpha/beta store), so either may compute any tile bit for bit. */
typedef void (*qkv_gemm_ukr_rows_fn)(int64_t kc, const float *a, int64_t lda, const float *bp,
                                     float *c, int64_t ldc, int mr, int nr, float alpha,
                                     float beta);

typedef struct qkv_gemm_config {
    const char *name;   /* kernel name, e.g. gemm_f32_avx512 */
    int mr, nr;         /* register block */
    int64_t kc, mc, nc; /* cache blocks: kc*nr floats in L1, mc*kc in L2, kc*nc in L3 */
    qkv_gemm_ukr_fn ukr;
    qkv_gemm_pack_bt_fn pack_bt;   /* NULL: the portable packing in gemm.c */
    qkv_gemm_pack_a_fn pack_a;     /* NULL: the portable packing in gemm.c */
    qkv_gemm_ukr_rows_fn ukr_rows; /* NULL: A is always packed */
    int64_t rows_max; /* with prepacked B and op(A) = A, M <= rows_max reads A in place */
    qkv_gemm_pack_copy_fn pack_at; /* NULL: the portable loop (whole Aᵀ micro-panels) */
    qkv_gemm_pack_copy_fn pack_bn; /* NULL: the portable loop (whole B micro-panels) */
} qkv_gemm_config;

/* The config of each ISA (ref is portable C). */
void qkv__gemm_config_ref(qkv_gemm_config *cfg);
void qkv__gemm_config_avx2(qkv_gemm_config *cfg);
void qkv__gemm_config_avx512(qkv_gemm_config *cfg);

/* FMA peak loops (kernels/peak.c), one per ISA. */
float qkv__fma_peak_loop_ref(int64_t iters, double *flops);
float qkv__fma_peak_loop_avx2(int64_t iters, double *flops);
float qkv__fma_peak_loop_avx512(int64_t iters, double *flops);

/* The in-process peak of one such loop (GFLOP/s over the runtime's threads, best of three
 * repeats of ~seconds/4); qkv_fma_peak_gflops is this with the active ISA's FMA loop. */
double qkv__peak_gflops_with(qkv_runtime *rt, double seconds,
                             float (*loop)(int64_t iters, double *flops));

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

/* op(B) [K, N] packed once into the micro-panels qkv__gemm_f32 would build with the same
 * config: K cut into the same blocks (equal, at most cfg->kc), each block a row of
 * ceil(N/NR) zero-padded NR-wide micro-panels. The handle keeps a copy of its config, so it
 * stays usable (and keeps using that ISA's kernels) if the active ISA changes later. */
typedef struct qkv_gemm_packed qkv_gemm_packed;

/* Packs op(B) (B is [K, N] with trans_b = 0, [N, K] with trans_b = 1; leading dimension ldb).
 * cfg NULL: the active ISA's config. K == 0 or N == 0 give an empty (valid) handle.
 * INVALID_ARG on NULL out, negative sizes, ldb too small, or B NULL with K*N > 0; OVERFLOW if
 * the size overflows; NOMEM. On failure *out is NULL. B is not referenced afterwards. */
qkv_status qkv__gemm_pack_b(const qkv_gemm_config *cfg, int trans_b, int64_t K, int64_t N,
                            const float *B, int64_t ldb, qkv_gemm_packed **out);
void qkv__gemm_packed_free(qkv_gemm_packed *p); /* NULL is a no-op */
int64_t qkv__gemm_packed_k(const qkv_gemm_packed *p);
int64_t qkv__gemm_packed_n(const qkv_gemm_packed *p);
size_t qkv__gemm_packed_bytes(const qkv_gemm_packed *p); /* the panels' size */

/* C [M, N] = epilogue(alpha * op(A) · op(B) + beta * C) with op(B) [K, N] prepacked: the
 * result is bit-identical to qkv__gemm_f32_with(B's config, ...) on the original B, for any M
 * and thread count. For M <= cfg->rows_max (and trans_a = 0) A is read in place instead of
 * packed, and with packed B nothing is allocated unless A must be packed or the residual
 * overlaps C. Errors as qkv__gemm_f32 (INVALID_ARG also for B NULL). */
qkv_status qkv__gemm_f32_packed(qkv_runtime *rt, int trans_a, int64_t M, const float *A,
                                int64_t lda, const qkv_gemm_packed *B, float alpha, float beta,
                                float *C, int64_t ldc, const qkv_gemm_epilogue *epi);

/* The K block for K and a config's kc: K cut into equal blocks of at most kc_max, rounded up to
 * a multiple of 4 (capped at kc_max); 1 for K <= 0. The bf16 GEMM blocks K the same way. */
int64_t qkv__gemm_k_block(int64_t kc_max, int64_t K);

/* The epilogue's parts, shared with the bf16-weight GEMM (kernels/gemm_bf16.c) so both run the
 * same code. _check: INVALID_ARG for an epilogue over N columns that is malformed (ldr, ldg or
 * ldp below N, unknown act, pre or act_grad without an activation, act_grad with bias or
 * residual). _prepare (M, N > 0): INVALID_ARG when pre or act_grad overlaps C; a residual that
 * overlaps C is copied aside (*buf, freed by the caller after the product; NOMEM) and *use
 * points at copy, else *use = epi. _tile: the epilogue of the finished C tile at (i0, j0). */
qkv_status qkv__gemm_epilogue_check(const qkv_gemm_epilogue *epi, int64_t N);
qkv_status qkv__gemm_epilogue_prepare(const qkv_gemm_epilogue *epi, int64_t M, int64_t N,
                                      const float *C, int64_t ldc, qkv_gemm_epilogue *copy,
                                      float **buf, const qkv_gemm_epilogue **use);
void qkv__gemm_epilogue_tile(const qkv_gemm_epilogue *epi, float *c, int64_t ldc, int64_t i0,
                             int64_t j0, int mr, int nr);
/* The common start of the GEMMs on prepacked weights B [K, N] (bf16: gemm_bf16.h, int8:
 * gemm_i8.h): INVALID_ARG on M < 0, NULL C, ldc < N, NULL A or lda < K (K > 0), or a malformed
 * epilogue (messages start with `who`); then _prepare (an epilogue with nothing to do counts as
 * none). *done = 1 when nothing is left to compute: M or N is 0, or K == 0, where C =
 * epilogue(beta·C) is done here. Else the caller runs the product with *use and frees *buf. */
qkv_status qkv__gemm_packed_begin(const char *who, int64_t M, int64_t K, int64_t N, const float *A,
                                  int64_t lda, float beta, float *C, int64_t ldc,
                                  const qkv_gemm_epilogue *epi, qkv_gemm_epilogue *copy,
                                  float **buf, const qkv_gemm_epilogue **use, int *done);

/* The plain triple loop (double accumulation): the oracle for every fast path. */
void qkv__gemm_f32_naive(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                         const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                         float *C, int64_t ldc, const qkv_gemm_epilogue *epi);

/* Scalar activation (the naive reference; the epilogue runs the act_f32 row kernel). */
float qkv__act_f32(qkv_act act, float x);

#endif
