/* convert_ref.c — reference (portable C) 16-bit float conversions: plain loops over the scalar
 * definitions in core/half.h. The oracle every ISA's convert kernels are tested against. */
#include "core/half.h"
#include "kernels/ref/kernels_ref.h"

void qkv__convert_f16_f32_ref(const uint16_t *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = qkv__f16_to_f32(src[i]);
}

void qkv__convert_f32_f16_ref(const float *src, uint16_t *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = qkv__f32_to_f16(src[i]);
}

void qkv__convert_bf16_f32_ref(const uint16_t *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = qkv__bf16_to_f32(src[i]);
}

void qkv__convert_f32_bf16_ref(const float *src, uint16_t *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = qkv__f32_to_bf16(src[i]);
}
