/* kernels_avx512.h — the avx512 kernels that make up the avx512 dispatch table (table_avx512.c). */
#ifndef QKV_KERNELS_AVX512_H
#define QKV_KERNELS_AVX512_H

#include <stddef.h>
#include <stdint.h>

void qkv__convert_f16_f32_avx512(const uint16_t *src, float *dst, size_t n);
void qkv__convert_f32_f16_avx512(const float *src, uint16_t *dst, size_t n);
void qkv__convert_bf16_f32_avx512(const uint16_t *src, float *dst, size_t n);
void qkv__convert_f32_bf16_avx512(const float *src, uint16_t *dst, size_t n);

#endif
