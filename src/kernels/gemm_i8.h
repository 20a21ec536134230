/* gemm_i8.h — GEMM with int8 weights and dynamic int8 activations (internal API):
 *
 *   C[M,N] = epilogue(A[M,K] · op(B)[K,N] + beta * C)        (beta == 0: C is not read)
 *
 * A is FP32 row-major (lda), quantized per call; B is FP32 ([N, K] when trans_b = 1, element
 * (k, n) at B[n*ldb + k], as Linear layers store it; [K, N] when trans_b = 0), quantized and
 * packed once (qkv__gemm_i8_pack_f32).
 *
 * The format (every ISA and qkv__gemm_i8_naive compute exactly this; all float operations are
 * IEEE single precision, round to nearest even, never contracted into FMAs): K is cut into
 * groups of G = QKV_GEMM_I8_GROUP consecutive k (the last one shorter), each with its own
 * scales, as llama.cpp's Q8_0 blocks (per-row or per-channel scales over all of K measured
 * MiniLM embeddings at cosine 0.990 against FP32, short of issue 18's 0.999):
 *  - weights, symmetric per output channel n and group g: s[g,n] = max_{k in g} |B(k,n)| / 127;
 *    q[k,n] = rint(B(k,n) / s[g,n]) clamped to [-127, 127] (rint: ties to even). A group of
 *    zeros gets s = 1 and q = 0 (so does one whose scale underflows to 0). Non-finite weights
 *    are refused (INVALID_ARG): int8 cannot hold them.
 *  - activations, symmetric per row m and group g, per call: t[m,g] = max_{k in g} |A(m,k)| /
 *    127; a[m,k] = rint(A(m,k) / t[m,g]) clamped to [-127, 127]; a zero group (or one whose
 *    scale underflows to 0) gets t = 0 and a = 0. A group with a NaN or ±Inf gets t = NaN,
 *    a = 0: its row of the product is NaN (propagated, then beta·C and the epilogue as usual).
 *  - acc[m,n,g] = Σ_{k in g} a[m,k]·q[k,n] in int32, exact (|acc| <= G·255·127). The kernels
 *    store a + 128 as u8 (vpdpbusd multiplies u8 by s8) and subtract 128·colsum[g,n]
 *    (Σ_{k in g} q[k,n], computed at pack time); the AMX kernel stores a as s8 (tdpbssd
 *    multiplies s8 by s8: config.a_signed) and needs no column sums.
 *  - sum = 0; for g in order: sum = sum + (float)acc[m,n,g] * (t[m,g] * s[g,n]);
 *    C = beta == 0 ? sum : sum + beta * C; then the epilogue (bias, activation, residual:
 *    kernels/gemm.h, the FP32 GEMM's code) on each finished tile.
 * The micro-kernels produce the exact integer sums of a group; the float steps are one piece
 * of C (QKV_GEMM_I8_GROUP_STEP, and gemm_i8.c for beta and the reference) that every ISA's file
 * compiles with -ffp-contract=off, in this order, so every ISA, thread count and M (a row
 * alone or in a batch) gives the same bits as qkv__gemm_i8_naive. A config's optional fused
 * tile and vectorized quantization (below) write the same operations with intrinsics (each an
 * IEEE operation, never an FMA) in the same order: the same bits.
 *
 * Error against the exact product Σ_k A·B (|Δb| <= s/2·(1 + 2^-16) per weight, |Δa| <=
 * t/2·(1 + 2^-16) per activation, the slack covering the float division before rint, |x/s| <=
 * 127), with u = 2^-16, n_g groups and γ_j = j·2^-24/(1 - j·2^-24):
 *    |C - Σ A·B - beta·C| <= E_q + γ_{n_g+3}·(Σ_k |A|·|B| + E_q + |beta·C|),
 *    E_q = Σ_k (|A|·s/2·(1+u) + |B|·t/2·(1+u) + s·t/4·(1+u)^2)   (s, t of k's group)
 * for normal (>= FLT_MIN) scales; tests/test_kernels_gemm_i8.c checks it on every ISA.
 *
 * Packed layout (per config): K padded to a multiple of 4 (kq = ceil(K/4) quads; of G = 32 for
 * the AMX kernel, config.kalign, whose tiles read whole groups), N to the config's NR; panel jr
 * (NR columns) holds bp[q*4*NR + 4*j + h] = q[4q + h][jr + j] (zeros in the padding), the
 * layout vpdpbusd reads (a 32-bit quad of k per column) and a tdpbssd B tile too (a group: 8
 * rows of quads, 16 columns x 4 bytes a row, row stride 4·NR); a group is the contiguous run of
 * its G/4 quads. Scales and column sums: [n_g, N rounded up to NR] floats and int32s (2·8/G
 * bytes per weight beside its byte).
 *
 * Kernels (all the same bits): ref (4 x 16, C), avx2 (4 x 8, vpmaddwd on s16), avx512vnni
 * (8 x 48, vpdpbusd, fused tile), amx (16 x 16: a tdpbssd per group, the int32 tile stored to
 * L1 and the float step done on it with AVX-512 into 16 zmm row sums while the next group's
 * tile computes; kernels/avx512/gemm_i8_amx.c). The avx512 level picks AMX where the CPU
 * and OS allow it (qkv__gemm_i8_select, QKV_I8_KERNEL below). */
#ifndef QKV_KERNELS_GEMM_I8_H
#define QKV_KERNELS_GEMM_I8_H

#include "kernels/gemm.h"
#include "qkv.h"

#include <stddef.h>
#include <stdint.h>

/* k per scale group (a multiple of 4). */
#define QKV_GEMM_I8_GROUP 32

/* Micro-kernel (called once per group): acc[r*NR + j] = Σ_{k < 4·kq} a[r*lda + k] ·
 * bp[(k/4)*4*NR + 4*j + k%4] for
 * r < mr (<= MR), every j < NR (padding columns give 0); a is u8 (a + 128; s8 a itself with
 * config.a_signed), lda a multiple of 4, rows past mr never read (with config.pad_rows: read,
 * up to MR, and dropped). */
typedef void (*qkv_gemm_i8_ukr_fn)(int64_t kq, const uint8_t *a, int64_t lda, const int8_t *bp,
                                   int32_t *acc, int mr);

/* The float step of one group on a tile (the format's order; every ISA compiles this same C,
 * with -ffp-contract=off, so its vectorized forms give the same bits): for r < mr, j < NR,
 *   sum[r*NR + j] = (first ? 0 : sum[r*NR + j]) + (float)(acc[r*NR + j] - 128·cs[j]) · (t[r*ts] ·
 * s[j]). */
typedef void (*qkv_gemm_i8_group_fn)(int first, int mr, const int32_t *acc, const int32_t *cs,
                                     const float *s, const float *t, int64_t ts, float *sum);
/* The float step of one group (the format's, in its order), SUMS(j) the exact sums of column j
 * (ar: row r's acc): a + 128 bytes subtract 128·colsum; a_signed ones need nothing. */
#define QKV_GEMM_I8_GROUP_STEP_OF(NR, SUMS)                                                        \
    for (int r = 0; r < mr; r++) {                                                                 \
        const float tr = t[r * ts];                                                                \
        float *sr = sum + r * (NR);                                                                \
        const int32_t *ar = acc + r * (NR);                                                        \
        for (int j = 0; j < (NR); j++)                                                             \
            sr[j] = (first ? 0.0f : sr[j]) + (float)(SUMS) * (tr * s[j]);                          \
    }
#define QKV_GEMM_I8_GROUP_STEP(NR) QKV_GEMM_I8_GROUP_STEP_OF(NR, ar[j] - 128 * cs[j])
/* The same for a config with a_signed (acc is then the exact Σ a·q: no column sums). */
#define QKV_GEMM_I8_GROUP_STEP_S8(NR) QKV_GEMM_I8_GROUP_STEP_OF(NR, ar[j])

/* Optional fused form of the two above (NULL: ukr, then group, per group): one tile's whole K,
 * groups in order, each group's exact integer sums then its float step, then beta and the
 * store: C[r*ldc + j] = (beta == 0 ? sum : sum + beta·C) for r < mr, j < nr (<= NR), the same
 * bits as the unfused path. cs, s: the panel's column sums and scales, group g at g*sst; t:
 * row r's scale of group g at t[r*ts + g]. */
typedef void (*qkv_gemm_i8_tile_fn)(int64_t K, const uint8_t *a, int64_t lda, const int8_t *bp,
                                    const int32_t *cs, const float *s, int64_t sst, const float *t,
                                    int64_t ts, float beta, float *C, int64_t ldc, int mr, int nr);
/* Optional vectorized activation quantization of one row x [K] (NULL: the portable code): the
 * format's bytes u [kp] (a + 128, 128 in the padding K..kp; with config.a_signed a as s8, 0 in
 * the padding) and scales t [ceil(K/G)]. */
typedef void (*qkv_gemm_i8_quant_fn)(const float *x, int64_t K, int64_t kp, uint8_t *u, float *t);

typedef struct qkv_gemm_i8_config {
    const char *name; /* e.g. gemm_i8_avx512vnni */
    int mr, nr;       /* register block (mr <= 16, nr <= 64) */
    qkv_gemm_i8_ukr_fn ukr;
    qkv_gemm_i8_group_fn group; /* QKV_GEMM_I8_GROUP_STEP(nr) compiled for the ISA */
    /* Benchmarks: the peak loop of the kernel's instruction (kernels/peak.c; "flops" counts 2
     * per multiply-add), NULL when it has none of its own (the FMA peak then stands in). */
    float (*peak_loop)(int64_t iters, double *flops);
    qkv_gemm_i8_tile_fn tile;   /* NULL or the fused kernel */
    qkv_gemm_i8_quant_fn quant; /* NULL or the vectorized quantization */
    /* kalign: K of the packed weights and of A's rows padded to a multiple of it (4: whole
     * quads; the AMX kernel's tiles read whole groups, G). The AMX kernel's needs (0 elsewhere):
     * pad_rows, A's quantized copy holds M
     * rounded up to MR rows (the extra ones zero: a tile reads whole rows); a_signed, A's bytes
     * are a as s8 (zero 0) rather than a + 128 as u8 (zero 128), so the sums need no column
     * sums (ukr and group then: acc = Σ a·q, QKV_GEMM_I8_GROUP_STEP_S8). */
    int kalign, pad_rows, a_signed;
} qkv_gemm_i8_config;

/* The config of each ISA: ref (plain C), avx2 (u8/s8 widened to s16, vpmaddwd: exact, no
 * saturation), avx512 (the kernel qkv__gemm_i8_selected() names where the CPU and the build
 * have it: AMX tiles (tdpbssd, QKV_CPU_AMX_INT8, QKV_HAVE_AMX_INT8), vpdpbusd (AVX512_VNNI,
 * QKV_HAVE_AVX512VNNI); else the avx2 kernel). */
void qkv__gemm_i8_config_ref(qkv_gemm_i8_config *cfg);
void qkv__gemm_i8_config_avx2(qkv_gemm_i8_config *cfg);
void qkv__gemm_i8_config_avx512(qkv_gemm_i8_config *cfg);
void qkv__gemm_i8_config_avx512vnni(qkv_gemm_i8_config *cfg); /* caller checks the CPU */
/* 12 independent vpdpbusd zmm chains (64 multiply-adds each). */
float qkv__dpbusd_peak_loop_avx512vnni(int64_t iters, double *flops);
/* The AMX kernel (only with QKV_HAVE_AMX_INT8; caller checks QKV_CPU_AMX_INT8), and the peak
 * loop of four independent tdpbssd on its tiles (16 x 16 outputs x 32 k each). */
void qkv__gemm_i8_config_amx(qkv_gemm_i8_config *cfg);
float qkv__amx_i8_peak_loop(int64_t iters, double *flops);
/* Which int8 kernel the avx512 config takes where the CPU and the build have it:
 *   AMX (the default): tdpbssd on tiles (Sapphire Rapids and later, where the OS allows);
 *   VNNI: vpdpbusd (AVX512_VNNI);
 *   WIDE: the avx2 kernel (vpmaddwd on s16).
 * All give the same bits. The environment variable QKV_I8_KERNEL (amx | vnni | avx2), read at
 * the first lookup, sets it; qkv__gemm_i8_select overrides it (DEFAULT: back to the
 * environment's or AMX). A weight packed keeps the kernel it was packed for: select before
 * packing. */
enum { QKV_I8_DEFAULT = -1, QKV_I8_WIDE = 0, QKV_I8_VNNI = 1, QKV_I8_AMX = 2 };
void qkv__gemm_i8_select(int kernel);
int qkv__gemm_i8_selected(void);

typedef struct qkv_gemm_i8_packed qkv_gemm_i8_packed;

/* Quantizes and packs op(B) [K, N] (FP32, trans_b as above) for cfg (NULL: the active ISA's).
 * K == 0 or N == 0 give an empty valid handle. INVALID_ARG on NULL out, negative sizes, ldb
 * too small, B NULL with K*N > 0, or a non-finite weight (named by k, n); OVERFLOW (sizes);
 * NOMEM. On failure *out is NULL. B is not referenced after. */
qkv_status qkv__gemm_i8_pack_f32(const qkv_gemm_i8_config *cfg, int trans_b, int64_t K, int64_t N,
                                 const float *B, int64_t ldb, qkv_gemm_i8_packed **out);
void qkv__gemm_i8_packed_free(qkv_gemm_i8_packed *p); /* NULL is a no-op */
int64_t qkv__gemm_i8_packed_k(const qkv_gemm_i8_packed *p);
int64_t qkv__gemm_i8_packed_n(const qkv_gemm_i8_packed *p);
size_t qkv__gemm_i8_packed_bytes(const qkv_gemm_i8_packed *p);       /* weights, scales, sums */
const char *qkv__gemm_i8_packed_kernel(const qkv_gemm_i8_packed *p); /* config name */
/* The stored q[k, n] and the scale of k's group s[k/G, n] (tests; 0 <= k < K, 0 <= n < N). */
int8_t qkv__gemm_i8_packed_get(const qkv_gemm_i8_packed *p, int64_t k, int64_t n);
float qkv__gemm_i8_packed_scale(const qkv_gemm_i8_packed *p, int64_t k, int64_t n);

/* C [M, N] = epilogue(A [M, K] · op(B) + beta * C) in the format above; epi NULL or as
 * qkv__gemm_f32's (the same checks; a residual overlapping C is copied first). INVALID_ARG on
 * NULL B, M < 0, lda < K, ldc < N, NULL A/C where needed, or a malformed epilogue; NOMEM if the
 * quantized A (M x K bytes, M scales) or the residual's copy cannot be allocated. */
qkv_status qkv__gemm_i8(qkv_runtime *rt, int64_t M, const float *A, int64_t lda,
                        const qkv_gemm_i8_packed *B, float beta, float *C, int64_t ldc,
                        const qkv_gemm_epilogue *epi);

/* Quantization of one group x [n] (stride apart; the activations' rule above, also the
 * weights' with x a column's group): q [n] and the returned scale (0 or NaN as above). */
float qkv__i8_quantize_row(const float *x, int64_t n, int64_t stride, int8_t *q);
/* The activations' form of it: a contiguous group x [n] as u = q + 128; returns its scale. */
float qkv__i8_quantize_u8(const float *x, int64_t n, uint8_t *u);

/* The reference, straight from the format: quantizes B and A itself, group by group (no
 * packing), sums in int64, then the same float steps. No epilogue. */
void qkv__gemm_i8_naive(int trans_b, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                        const float *B, int64_t ldb, float beta, float *C, int64_t ldc);

#endif
