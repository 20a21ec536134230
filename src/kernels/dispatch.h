/* dispatch.h — the kernel table: one function pointer per op, one table per instruction set.
 *
 * Each ISA's kernels live in their own file compiled with that ISA's flags and export one
 * qkv_kernels table naming only the ops they implement (the others stay NULL). dispatch.c
 * merges the tables once: the table of ISA X is ref, overlaid with every ISA up to X, so an op
 * without an AVX-512 kernel runs its AVX2 one, or else the reference. qkv__kernels() returns
 * the merged table of qkv_arch_active(), looked up per call (one atomic load), so it follows
 * qkv_arch_set at once.
 *
 * Adding an op: a member here (with its contract), its name in ops[] in dispatch.c (a static
 * assertion fails until it is there), the _ref kernel in kernels/ref, and one line in each ISA
 * table that has a fast version. docs/KERNELS.md has the details and every kernel's contract.
 */
#ifndef QKV_KERNELS_DISPATCH_H
#define QKV_KERNELS_DISPATCH_H

#include "core/cpu.h"
#include "kernels/gemm.h" /* qkv_act */

#include <stddef.h>
#include <stdint.h>

struct qkv_gemm_config;
struct qkv_attn_kernels;
struct qkv_gemm_bf16_config;
struct qkv_gemm_i8_config;

/* Only function pointers: dispatch.c walks the struct as an array of them. */
typedef struct qkv_kernels {
    /* dst[i] = convert(src[i]) for i in [0, n), exactly as core/half.h defines it (bit for
     * bit); n may be 0; any alignment; src and dst must not overlap. */
    void (*convert_f16_f32)(const uint16_t *src, float *dst, size_t n);  /* (n) -> (n) */
    void (*convert_f32_f16)(const float *src, uint16_t *dst, size_t n);  /* (n) -> (n) */
    void (*convert_bf16_f32)(const uint16_t *src, float *dst, size_t n); /* (n) -> (n) */
    void (*convert_f32_bf16)(const float *src, uint16_t *dst, size_t n); /* (n) -> (n) */
    /* Fills the GEMM micro-kernel and its register/cache blocks (kernels/gemm.h). */
    void (*gemm_f32_config)(struct qkv_gemm_config *cfg);
    /* Runs iters rounds of independent FMA chains of the ISA's widest vectors; *flops gets
     * the FLOPs done; returns a value to keep the work alive (kernels/peak.c). */
    float (*fma_peak_loop)(int64_t iters, double *flops);
    /* Fills the fused-attention micro-kernels (kernels/attn_kernels.h). */
    void (*attn_f32_config)(struct qkv_attn_kernels *k);

    /* Row kernels (kernels/ref/rowops_ref.c, kernels/<isa>/rowops_<isa>.c). Shared rules:
     * rows are contiguous (row r starts at r*n); rows, n >= 1 (n >= 0 for exp/act); any
     * alignment; nothing outside the buffers is read or written; no allocation; single thread
     * (callers split rows). Backwards ACCUMULATE (+=) into dx/dw/db like the src/nn layers,
     * and compute the same math as those layers (the oracle). Error bounds per kernel and
     * non-finite inputs: docs/KERNELS.md, "Row kernels". */
    /* y[i] = e^x[i]; y may be x. avx2/avx512: rel. error <= 2.5e-7 for normal results. */
    void (*exp_f32)(const float *x, float *y, size_t n); /* (n) -> (n) */
    /* y = act(x) (QKV_ACT_NONE copies); y may be x. The GEMM epilogue's activation. */
    void (*act_f32)(qkv_act act, const float *x, float *y, size_t n); /* (n) -> (n) */
    /* dx += dy * act'(x) */
    void (*act_bwd_f32)(qkv_act act, const float *x, const float *dy, float *dx, size_t n);
    /* y = softmax(x) per row; an all -inf row gives 0s, +inf/NaN in a row give NaN. */
    void (*softmax_f32)(const float *x, float *y, size_t rows, size_t n); /* (rows, n) */
    /* dx += y * (dy - Σ dy*y) per row, y the forward's output. */
    void (*softmax_bwd_f32)(const float *y, const float *dy, float *dx, size_t rows, size_t n);
    /* y = (x - max) - log Σ e^(x - max) per row; an all -inf row gives -inf. */
    void (*log_softmax_f32)(const float *x, float *y, size_t rows, size_t n);
    /* dx += dy - e^y * Σ dy per row; rows whose y are all -inf get nothing. */
    void (*log_softmax_bwd_f32)(const float *y, const float *dy, float *dx, size_t rows, size_t n);
    /* y (rows, n) = (x - mean)·rstd·w + b, rstd = 1/√(biased var + eps); w, b (n) or NULL
     * (1, 0); mean, rstd (rows) saved unless NULL. */
    void (*layernorm_f32)(const float *x, const float *w, const float *b, float *y, float *mean,
                          float *rstd, size_t rows, size_t n, float eps);
    /* dx (rows, n) += rstd·(dx̂ - mean(dx̂) - x̂·mean(dx̂·x̂)), dx̂ = dy·w, x̂ = (x - mean)·rstd;
     * dw (n) += Σ_rows dy·x̂; db (n) += Σ_rows dy. dx, dw, db may each be NULL. */
    void (*layernorm_bwd_f32)(const float *dy, const float *x, const float *w, const float *mean,
                              const float *rstd, float *dx, float *dw, float *db, size_t rows,
                              size_t n);
    /* y = x·rrms·w, rrms = 1/√(mean(x²) + eps); w (n) or NULL; rrms (rows) saved unless NULL. */
    void (*rmsnorm_f32)(const float *x, const float *w, float *y, float *rrms, size_t rows,
                        size_t n, float eps);
    /* dx += rrms·(dx̂ - x̂·mean(dx̂·x̂)), x̂ = x·rrms; dw += Σ_rows dy·x̂; dx, dw may be NULL. */
    void (*rmsnorm_bwd_f32)(const float *dy, const float *x, const float *w, const float *rrms,
                            float *dx, float *dw, size_t rows, size_t n);
    /* Fills the bf16-weight GEMM micro-kernel and blocks (kernels/gemm_bf16.h). avx512: the
     * vdpbf16ps kernel when CPUID reports AVX512_BF16, else the avx2 one. */
    void (*gemm_bf16_config)(struct qkv_gemm_bf16_config *cfg);
    /* The same for f16 weights (config.f16 = 1): the plain kernel widening them (F16C). */
    void (*gemm_f16_config)(struct qkv_gemm_bf16_config *cfg);

    /* Decoding kernels (rowops; docs/KERNELS.md, "Decoding kernels"). */
    /* Attention of one query row (a decoder step) over n >= 1 keys, per head h < H, key j
     * being row r_j = rows ? rows[j] : j of k and v:
     *   out[h*D + d] = Σ_j p_j · v[r_j*ldv + h*D + d],
     *   p = softmax_j(scale · Σ_d q[h*D + d] · k[r_j*ldk + h*D + d]);
     * q, out [H, D]; scratch holds n floats; out overlaps nothing. ref: double. */
    void (*attn_decode_f32)(size_t H, size_t D, size_t n, const float *q, const float *k,
                            size_t ldk, const float *v, size_t ldv, const int64_t *rows,
                            float scale, float *out, float *scratch);
    /* The pieces of log_softmax_f32 of one row x (n >= 1): *m = its max, *ls = log Σ e^(x-m),
     * computed exactly as log_softmax_f32 computes them (same bits). */
    void (*log_softmax_stats_f32)(const float *x, size_t n, float *m, double *ls);
    /* With (m, ls) from log_softmax_stats_f32 of a row (both finite) and y_i = that row's
     * log_softmax_f32 value at i computed from x[i] (x[i] may since have been set to -inf),
     * plus add (a float addition): val, idx (k <= n) = the k largest y, descending, ties to the
     * lower index; a NaN y is never preferred. The same bits and order as log_softmax_f32 then
     * y += add then a selection over y. */
    void (*log_softmax_topk_f32)(const float *x, size_t n, float m, double ls, float add, size_t k,
                                 float *val, int64_t *idx);
    /* Fills the int8 GEMM micro-kernel (kernels/gemm_i8.h): every ISA gives the same bits.
     * avx512: the vpdpbusd kernel when CPUID reports AVX512_VNNI, else the avx2 one. */
    void (*gemm_i8_config)(struct qkv_gemm_i8_config *cfg);
    /* Row kernel: the GEMM epilogue on one row (kernels/gemm.c): y[i] = act(y[i] + bias[i]) +
     * res[i] (bias, res NULL: not added); y must not overlap bias or res. The same float operations
     * as adding bias, act_f32, adding res, so the same bits. */
    void (*epilogue_row_f32)(float *y, const float *bias, qkv_act act, const float *res,
                             size_t n); /* (n) -> (n) */
} qkv_kernels;

/* Per-ISA tables. The ref table is complete; the others name only what they specialize. */
extern const qkv_kernels qkv__kernels_ref;
#if QKV_HAVE_AVX2
extern const qkv_kernels qkv__kernels_avx2;
#endif
#if QKV_HAVE_AVX512
extern const qkv_kernels qkv__kernels_avx512;
#endif

/* The merged table of the active instruction set; never NULL, every entry non-NULL. */
const qkv_kernels *qkv__kernels(void);

/* A kernel choice (which of an op's kernels a config takes, e.g. QKV_BF16_KERNEL): the
 * environment variable env, read at the first lookup, names it (names[v] -> v for v < n;
 * unset or any other value: dflt); qkv__choice_set overrides it (v outside [0, n): back to what
 * the environment says). Thread-safe; value is -2 until decided. */
typedef struct qkv__kernel_choice {
    int value;
    const char *env;
    const char *const *names;
    int n, dflt;
} qkv__kernel_choice;
int qkv__choice_get(qkv__kernel_choice *c);
void qkv__choice_set(qkv__kernel_choice *c, int v);

#endif
