/* kernels_avx2.h — the avx2 kernels that make up the avx2 dispatch table (table_avx2.c). */
#ifndef QKV_KERNELS_AVX2_H
#define QKV_KERNELS_AVX2_H

#include "kernels/gemm.h" /* qkv_act */

#include <stddef.h>
#include <stdint.h>

void qkv__convert_f16_f32_avx2(const uint16_t *src, float *dst, size_t n);
void qkv__convert_f32_f16_avx2(const float *src, uint16_t *dst, size_t n);
void qkv__convert_bf16_f32_avx2(const uint16_t *src, float *dst, size_t n);
void qkv__convert_f32_bf16_avx2(const float *src, uint16_t *dst, size_t n);

/* Row kernels (rowops_avx2.c); contracts in kernels/dispatch.h and docs/KERNELS.md. */
void qkv__exp_f32_avx2(const float *x, float *y, size_t n);
void qkv__act_f32_avx2(qkv_act act, const float *x, float *y, size_t n);
void qkv__epilogue_row_f32_avx2(float *y, const float *bias, qkv_act act, const float *res,
                                size_t n);
void qkv__act_bwd_f32_avx2(qkv_act act, const float *x, const float *dy, float *dx, size_t n);
void qkv__softmax_f32_avx2(const float *x, float *y, size_t rows, size_t n);
void qkv__softmax_bwd_f32_avx2(const float *y, const float *dy, float *dx, size_t rows, size_t n);
void qkv__log_softmax_f32_avx2(const float *x, float *y, size_t rows, size_t n);
void qkv__log_softmax_bwd_f32_avx2(const float *y, const float *dy, float *dx, size_t rows,
                                   size_t n);
void qkv__layernorm_f32_avx2(const float *x, const float *w, const float *b, float *y, float *mean,
                             float *rstd, size_t rows, size_t n, float eps);
void qkv__layernorm_bwd_f32_avx2(const float *dy, const float *x, const float *w, const float *mean,
                                 const float *rstd, float *dx, float *dw, float *db, size_t rows,
                                 size_t n);
void qkv__rmsnorm_f32_avx2(const float *x, const float *w, float *y, float *rrms, size_t rows,
                           size_t n, float eps);
void qkv__rmsnorm_bwd_f32_avx2(const float *dy, const float *x, const float *w, const float *rrms,
                               float *dx, float *dw, size_t rows, size_t n);

/* Decoding kernels (rowops_avx2.c, from rowops_simd.h). */
void qkv__attn_decode_f32_avx2(size_t H, size_t D, size_t n, const float *q, const float *k,
                               size_t ldk, const float *v, size_t ldv, const int64_t *rows,
                               float scale, float *out, float *scratch);
void qkv__log_softmax_stats_f32_avx2(const float *x, size_t n, float *m, double *ls);
void qkv__log_softmax_topk_f32_avx2(const float *x, size_t n, float m, double ls, float add,
                                    size_t k, float *val, int64_t *idx);

#endif
