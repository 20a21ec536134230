/* quant_i8_avx512.h — the int8 GEMM's activation quantization (kernels/gemm_i8.h's format) in
 * AVX-512F, shared by the vpdpbusd kernel (gemm_i8_avx512vnni.c, bytes a + 128) and the AMX one
 * (gemm_i8_amx.c, bytes a as s8): the same values, 16 lanes at a time. Per group of G: amax by
 * vmaxps of |x| (exact in any order), t = amax / 127, rint(x / t) by vdivps and vrndscaleps
 * (nearest even: the portable rint's value), clamped to ±127, narrowed to bytes (vpmovdb keeps
 * the low byte); a group with a NaN or ±Inf gets t = NaN, and a zero (or NaN) t gives the zero
 * byte, as the portable code. A short last group is the portable code's
 * (qkv__i8_quantize_u8). Included only by files compiled with AVX-512 flags. */
#ifndef QKV_KERNELS_QUANT_I8_AVX512_H
#define QKV_KERNELS_QUANT_I8_AVX512_H

#include "kernels/gemm_i8.h"

#include <float.h>
#include <immintrin.h>
#include <math.h>
#include <string.h>

/* x [K] -> bytes u [kp] and scales t [ceil(K / G)] (qkv_gemm_i8_quant_fn), s8 (a constant
 * once inlined) choosing the bytes: 0, a + 128 (128 for a zero, and in the padding K..kp);
 * 1, a itself as s8 (0 there). */
static inline __attribute__((always_inline)) void
qkv__i8_quant_avx512(const float *x, int64_t K, int64_t kp, uint8_t *u, float *t, const int s8) {
    enum { G = QKV_GEMM_I8_GROUP };
    const uint8_t zero = s8 ? 0 : 128;
    const __m512 fmax = _mm512_set1_ps(FLT_MAX), lo = _mm512_set1_ps(-127.0f),
                 hi = _mm512_set1_ps(127.0f);
    const __m512i off = _mm512_set1_epi32(zero);
    int64_t k0 = 0, g = 0;
    for (; k0 + G <= K; k0 += G, g++) {
        __m512 v[G / 16], amax = _mm512_setzero_ps();
        __mmask16 bad = 0;
#pragma GCC unroll 4
        for (int i = 0; i < G / 16; i++) {
            v[i] = _mm512_loadu_ps(x + k0 + 16 * i);
            const __m512 ab = _mm512_abs_ps(v[i]);
            bad |= _mm512_cmp_ps_mask(ab, fmax, _CMP_NLE_UQ); /* NaN or > FLT_MAX */
            amax = _mm512_max_ps(amax, ab);
        }
        const float tg = bad ? NAN : _mm512_reduce_max_ps(amax) / 127.0f;
        t[g] = tg;
        if (!(tg > 0.0f)) {
            memset(u + k0, zero, G);
            continue;
        }
        const __m512 vt = _mm512_set1_ps(tg);
#pragma GCC unroll 4
        for (int i = 0; i < G / 16; i++) {
            __m512 r = _mm512_roundscale_ps(_mm512_div_ps(v[i], vt),
                                            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            r = _mm512_min_ps(_mm512_max_ps(r, lo), hi);
            const __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(r), off);
            _mm_storeu_si128((__m128i *)(u + k0 + 16 * i), _mm512_cvtepi32_epi8(q));
        }
    }
    if (k0 < K) {
        t[g] = qkv__i8_quantize_u8(x + k0, K - k0, u + k0);
        if (s8)
            for (int64_t k = k0; k < K; k++) u[k] ^= 0x80; /* a + 128 -> a */
    }
    if (kp > K) memset(u + K, zero, (size_t)(kp - K));
}

#endif
