/* kernels_ref.h — the ref kernels that make up the ref dispatch table (table_ref.c). */
#ifndef QKV_KERNELS_REF_H
#define QKV_KERNELS_REF_H

#include <stddef.h>
#include <stdint.h>

void qkv__convert_f16_f32_ref(const uint16_t *src, float *dst, size_t n);
void qkv__convert_f32_f16_ref(const float *src, uint16_t *dst, size_t n);
void qkv__convert_bf16_f32_ref(const uint16_t *src, float *dst, size_t n);
void qkv__convert_f32_bf16_ref(const float *src, uint16_t *dst, size_t n);

#endif
