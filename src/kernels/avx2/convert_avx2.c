/* convert_avx2.c — 16-bit float conversions with AVX2 + F16C, 8 elements per step.
 *
 * f16 uses the F16C instructions (vcvtph2ps / vcvtps2ph with an explicit round-to-nearest-even
 * immediate, so MXCSR does not matter); they quiet NaNs and keep payloads the way core/half.h
 * does. bf16 is integer work: a shift to widen; to narrow, add 0x7fff plus the lowest kept bit
 * (ties to even) and shift, with NaNs replaced by their quieted top half. Tails (n % 8) use
 * the scalar definitions, which are bit-identical. Compiled with -mavx2 -mfma -mf16c only. */
#include "core/half.h"
#include "kernels/avx2/kernels_avx2.h"

#include <immintrin.h>

void qkv__convert_f16_f32_avx2(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(src + i));
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
    }
    for (; i < n; i++) dst[i] = qkv__f16_to_f32(src[i]);
}

void qkv__convert_f32_f16_avx2(const float *src, uint16_t *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT);
        _mm_storeu_si128((__m128i *)(dst + i), h);
    }
    for (; i < n; i++) dst[i] = qkv__f32_to_f16(src[i]);
}

/* All-ones in the 32-bit lanes of x that hold a NaN. */
static inline __m256i nan_lanes(__m256i x) {
    __m256i abs = _mm256_and_si256(x, _mm256_set1_epi32(0x7fffffff));
    return _mm256_cmpgt_epi32(abs, _mm256_set1_epi32(0x7f800000));
}

void qkv__convert_bf16_f32_avx2(const uint16_t *src, float *dst, size_t n) {
    const __m256i quiet = _mm256_set1_epi32(0x400000);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(src + i));
        __m256i x = _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16);
        x = _mm256_or_si256(x, _mm256_and_si256(nan_lanes(x), quiet));
        _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(x));
    }
    for (; i < n; i++) dst[i] = qkv__bf16_to_f32(src[i]);
}

void qkv__convert_f32_bf16_avx2(const float *src, uint16_t *dst, size_t n) {
    const __m256i one = _mm256_set1_epi32(1), bias = _mm256_set1_epi32(0x7fff);
    const __m256i quiet = _mm256_set1_epi32(0x40);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i x = _mm256_castps_si256(_mm256_loadu_ps(src + i));
        __m256i hi = _mm256_srli_epi32(x, 16);
        __m256i r = _mm256_add_epi32(_mm256_add_epi32(x, bias), _mm256_and_si256(hi, one));
        r = _mm256_srli_epi32(r, 16);
        r = _mm256_blendv_epi8(r, _mm256_or_si256(hi, quiet), nan_lanes(x));
        /* lanes hold 0..0xffff, so the signed-to-unsigned saturating pack is exact */
        __m128i h = _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
        _mm_storeu_si128((__m128i *)(dst + i), h);
    }
    for (; i < n; i++) dst[i] = qkv__f32_to_bf16(src[i]);
}
