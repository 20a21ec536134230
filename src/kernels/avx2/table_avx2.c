/* table_avx2.c — the avx2 dispatch table. Names only the ops with an AVX2 kernel; the rest fall
 * back to ref. */
#include "kernels/avx2/kernels_avx2.h"
#include "kernels/dispatch.h"
#include "kernels/gemm.h"

const qkv_kernels qkv__kernels_avx2 = {
    .convert_f16_f32 = qkv__convert_f16_f32_avx2,
    .convert_f32_f16 = qkv__convert_f32_f16_avx2,
    .convert_bf16_f32 = qkv__convert_bf16_f32_avx2,
    .convert_f32_bf16 = qkv__convert_f32_bf16_avx2,
    .gemm_f32_config = qkv__gemm_config_avx2,
    .fma_peak_loop = qkv__fma_peak_loop_avx2,
};
