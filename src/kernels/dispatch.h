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

#include <stddef.h>
#include <stdint.h>

struct qkv_gemm_config;

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

#endif
