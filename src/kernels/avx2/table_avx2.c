/* table_avx2.c — the avx2 dispatch table. Names only the ops with an AVX2 kernel; the rest fall
 * back to ref. */
#include "kernels/attn_kernels.h"
#include "kernels/avx2/kernels_avx2.h"
#include "kernels/dispatch.h"
#include "kernels/gemm.h"
#include "kernels/gemm_bf16.h"
#include "kernels/gemm_i8.h"

const qkv_kernels qkv__kernels_avx2 = {
    .convert_f16_f32 = qkv__convert_f16_f32_avx2,
    .convert_f32_f16 = qkv__convert_f32_f16_avx2,
    .convert_bf16_f32 = qkv__convert_bf16_f32_avx2,
    .convert_f32_bf16 = qkv__convert_f32_bf16_avx2,
    .gemm_f32_config = qkv__gemm_config_avx2,
    .fma_peak_loop = qkv__fma_peak_loop_avx2,
    .attn_f32_config = qkv__attn_config_avx2,
    .exp_f32 = qkv__exp_f32_avx2,
    .act_f32 = qkv__act_f32_avx2,
    .epilogue_row_f32 = qkv__epilogue_row_f32_avx2,
    .act_bwd_f32 = qkv__act_bwd_f32_avx2,
    .softmax_f32 = qkv__softmax_f32_avx2,
    .softmax_bwd_f32 = qkv__softmax_bwd_f32_avx2,
    .log_softmax_f32 = qkv__log_softmax_f32_avx2,
    .log_softmax_bwd_f32 = qkv__log_softmax_bwd_f32_avx2,
    .layernorm_f32 = qkv__layernorm_f32_avx2,
    .layernorm_bwd_f32 = qkv__layernorm_bwd_f32_avx2,
    .rmsnorm_f32 = qkv__rmsnorm_f32_avx2,
    .rmsnorm_bwd_f32 = qkv__rmsnorm_bwd_f32_avx2,
    .gemm_bf16_config = qkv__gemm_bf16_config_avx2,
    .gemm_f16_config = qkv__gemm_f16_config_avx2,
    .gemm_i8_config = qkv__gemm_i8_config_avx2,
    .attn_decode_f32 = qkv__attn_decode_f32_avx2,
    .log_softmax_stats_f32 = qkv__log_softmax_stats_f32_avx2,
    .log_softmax_topk_f32 = qkv__log_softmax_topk_f32_avx2,
};
