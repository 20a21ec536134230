/* table_ref.c — the ref dispatch table. Complete: every op has a reference kernel. */
#include "kernels/dispatch.h"
#include "kernels/gemm.h"
#include "kernels/ref/kernels_ref.h"

const qkv_kernels qkv__kernels_ref = {
    .convert_f16_f32 = qkv__convert_f16_f32_ref,
    .convert_f32_f16 = qkv__convert_f32_f16_ref,
    .convert_bf16_f32 = qkv__convert_bf16_f32_ref,
    .convert_f32_bf16 = qkv__convert_f32_bf16_ref,
    .gemm_f32_config = qkv__gemm_config_ref,
    .fma_peak_loop = qkv__fma_peak_loop_ref,
};
