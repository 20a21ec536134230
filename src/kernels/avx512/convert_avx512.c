/* convert_avx512.c — 16-bit float conversions with AVX-512 F/BW/VL, 16 elements per step.
 *
 * Same method as the AVX2 file (F16C-style instructions for f16, integer shifts with ties to
 * even for bf16), but tails use masked loads and stores, which never touch memory outside the
 * mask, so there is no scalar loop. bf16 deliberately avoids AVX512_BF16 (vcvtneps2bf16): it
 * is not part of the QKV_ARCH_AVX512 baseline and would need its own detection. */
#include "kernels/avx512/kernels_avx512.h"

#include <immintrin.h>

/* Mask of the first k (< 16) lanes. */
static inline __mmask16 first_lanes(size_t k) { return (__mmask16)((1u << k) - 1u); }

void qkv__convert_f16_f32_avx512(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i h = _mm256_loadu_si256((const __m256i *)(src + i));
        _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(h));
    }
    if (i < n) {
        __mmask16 m = first_lanes(n - i);
        __m256i h = _mm256_maskz_loadu_epi16(m, src + i);
        _mm512_mask_storeu_ps(dst + i, m, _mm512_cvtph_ps(h));
    }
}

void qkv__convert_f32_f16_avx512(const float *src, uint16_t *dst, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i h = _mm512_cvtps_ph(_mm512_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT);
        _mm256_storeu_si256((__m256i *)(dst + i), h);
    }
    if (i < n) {
        __mmask16 m = first_lanes(n - i);
        __m256i h = _mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, src + i), _MM_FROUND_TO_NEAREST_INT);
        _mm256_mask_storeu_epi16(dst + i, m, h);
    }
}

static inline __mmask16 nan_lanes(__m512i x) {
    __m512i abs = _mm512_and_si512(x, _mm512_set1_epi32(0x7fffffff));
    return _mm512_cmpgt_epi32_mask(abs, _mm512_set1_epi32(0x7f800000));
}

/* 16 bf16 -> 16 f32 bit patterns, NaNs quieted. */
static inline __m512i widen_bf16(__m256i h) {
    __m512i x = _mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16);
    return _mm512_mask_or_epi32(x, nan_lanes(x), x, _mm512_set1_epi32(0x400000));
}

void qkv__convert_bf16_f32_avx512(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i x = widen_bf16(_mm256_loadu_si256((const __m256i *)(src + i)));
        _mm512_storeu_ps(dst + i, _mm512_castsi512_ps(x));
    }
    if (i < n) {
        __mmask16 m = first_lanes(n - i);
        __m512i x = widen_bf16(_mm256_maskz_loadu_epi16(m, src + i));
        _mm512_mask_storeu_ps(dst + i, m, _mm512_castsi512_ps(x));
    }
}

/* 16 f32 -> 16 bf16, round to nearest even, NaNs quieted. */
static inline __m256i narrow_bf16(__m512 v) {
    __m512i x = _mm512_castps_si512(v);
    __m512i hi = _mm512_srli_epi32(x, 16);
    __m512i lsb = _mm512_and_si512(hi, _mm512_set1_epi32(1));
    __m512i r = _mm512_add_epi32(_mm512_add_epi32(x, _mm512_set1_epi32(0x7fff)), lsb);
    r = _mm512_srli_epi32(r, 16);
    r = _mm512_mask_or_epi32(r, nan_lanes(x), hi, _mm512_set1_epi32(0x40));
    return _mm512_cvtepi32_epi16(r); /* lanes hold 0..0xffff: truncation is exact */
}

void qkv__convert_f32_bf16_avx512(const float *src, uint16_t *dst, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(dst + i), narrow_bf16(_mm512_loadu_ps(src + i)));
    if (i < n) {
        __mmask16 m = first_lanes(n - i);
        _mm256_mask_storeu_epi16(dst + i, m, narrow_bf16(_mm512_maskz_loadu_ps(m, src + i)));
    }
}
