/* kernels_avx2.h — the avx2 kernels that make up the avx2 dispatch table (table_avx2.c). */
#ifndef QKV_KERNELS_AVX2_H
#define QKV_KERNELS_AVX2_H

#include <stddef.h>
#include <stdint.h>

void qkv__convert_f16_f32_avx2(const uint16_t *src, float *dst, size_t n);
void qkv__convert_f32_f16_avx2(const float *src, uint16_t *dst, size_t n);
void qkv__convert_bf16_f32_avx2(const uint16_t *src, float *dst, size_t n);
void qkv__convert_f32_bf16_avx2(const float *src, uint16_t *dst, size_t n);

#endif
