/* convert.c — the public bulk conversions (qkv_*_n), dispatched to the active ISA's kernels.
 * They live here rather than in core/dtype.c because core sits below kernels. */
#include "kernels/dispatch.h"
#include "qkv.h"

void qkv_f16_to_f32_n(const uint16_t *src, float *dst, size_t n) {
    if (n) qkv__kernels()->convert_f16_f32(src, dst, n);
}

void qkv_f32_to_f16_n(const float *src, uint16_t *dst, size_t n) {
    if (n) qkv__kernels()->convert_f32_f16(src, dst, n);
}

void qkv_bf16_to_f32_n(const uint16_t *src, float *dst, size_t n) {
    if (n) qkv__kernels()->convert_bf16_f32(src, dst, n);
}

void qkv_f32_to_bf16_n(const float *src, uint16_t *dst, size_t n) {
    if (n) qkv__kernels()->convert_f32_bf16(src, dst, n);
}
