/* table_ref.c — the ref dispatch table. Complete: every op has a reference kernel. */
#include "kernels/attn_kernels.h"
#include "kernels/dispatch.h"
#include "kernels/gemm.h"
#include "kernels/gemm_bf16.h"
#include "kernels/gemm_i8.h"
#include "kernels/ref/kernels_ref.h"

const qkv_kernels qkv__kernels_ref = {
    .convert_f16_f32 = qkv__convert_f16_f32_ref,
    .convert_f32_f16 = qkv__convert_f32_f16_ref,
    .convert_bf16_f32 = qkv__convert_bf16_f32_ref,
    .convert_f32_bf16 = qkv__convert_f32_bf16_ref,
    .gemm_f32_config = qkv__gemm_config_ref,
    .fma_peak_loop = qkv__fma_peak_loop_ref,
    .attn_f32_config = qkv__attn_config_ref,
    .exp_f32 = qkv__exp_f32_ref,
    .act_f32 = qkv__act_f32_ref,
    .epilogue_row_f32 = qkv__epilogue_row_f32_ref,
    .act_bwd_f32 = qkv__act_bwd_f32_ref,
    .softmax_f32 = qkv__softmax_f32_ref,
    .softmax_bwd_f32 = qkv__softmax_bwd_f32_ref,
    .log_softmax_f32 = qkv__log_softmax_f32_ref,
    .log_softmax_bwd_f32 = qkv__log_softmax_bwd_f32_ref,
    .layernorm_f32 = qkv__layernorm_f32_ref,
    .layernorm_bwd_f32 = qkv__layernorm_bwd_f32_ref,
    .rmsnorm_f32 = qkv__rmsnorm_f32_ref,
    .rmsnorm_bwd_f32 = qkv__rmsnorm_bwd_f32_ref,
    .gemm_bf16_config = qkv__gemm_bf16_config_ref,
    .gemm_f16_config = qkv__gemm_f16_config_ref,
    .gemm_i8_config = qkv__gemm_i8_config_ref,
    .attn_decode_f32 = qkv__attn_decode_f32_ref,
    .log_softmax_stats_f32 = qkv__log_softmax_stats_f32_ref,
    .log_softmax_topk_f32 = qkv__log_softmax_topk_f32_ref,
};
