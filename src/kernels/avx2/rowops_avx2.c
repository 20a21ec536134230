/* rowops_avx2.c — the row kernels (exp, activations, softmax, LayerNorm, RMSNorm, forward and
 * backward) with AVX2 + FMA, 8 floats per vector.
 *
 * This file only supplies the vector interface that kernels/rowops_simd.h is written against
 * (see there for the math and docs/KERNELS.md, "Row kernels", for the contracts). Tails use
 * vmaskmovps, which never faults on masked-out lanes. 2^n is applied in two exact halves,
 * p·2^⌊n/2⌋·2^(n−⌊n/2⌋), so the only rounding is the last product: subnormal results are
 * correctly rounded and 2^128·p overflows to +inf exactly when it should, as with vscalefps. */
#include "kernels/avx2/kernels_avx2.h"
#include "kernels/topk.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

typedef __m256 vf;
#define VW 8
#define RK(name) qkv__##name##_avx2

/* Lanes [0, k) set: tail_bits + 8 - k, 8 words. */
static const int32_t tail_bits[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
static inline __m256i first_lanes(size_t k) {
    return _mm256_loadu_si256((const __m256i *)(tail_bits + 8 - k));
}

static inline vf vf_set1(float a) { return _mm256_set1_ps(a); }
static inline vf vf_zero(void) { return _mm256_setzero_ps(); }
static inline vf vf_load(const float *p) { return _mm256_loadu_ps(p); }
static inline void vf_store(float *p, vf v) { _mm256_storeu_ps(p, v); }
static inline vf vf_add(vf a, vf b) { return _mm256_add_ps(a, b); }
static inline vf vf_sub(vf a, vf b) { return _mm256_sub_ps(a, b); }
static inline vf vf_mul(vf a, vf b) { return _mm256_mul_ps(a, b); }
static inline vf vf_div(vf a, vf b) { return _mm256_div_ps(a, b); }
static inline vf vf_fma(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
static inline vf vf_min(vf a, vf b) { return _mm256_min_ps(a, b); }
static inline vf vf_max(vf a, vf b) { return _mm256_max_ps(a, b); }
static inline vf vf_abs(vf a) {
    return _mm256_and_ps(a, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)));
}
static inline vf vf_round(vf a) {
    return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
/* n integral in [-150, 128] (NaN n only comes with a NaN p, which stays NaN). */
static inline vf vf_ldexp(vf p, vf n) {
    __m256i ni = _mm256_cvtps_epi32(n);
    __m256i n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
    __m256i bias = _mm256_set1_epi32(127);
    vf s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    vf s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}
static inline vf vf_lt(vf a, vf b, vf x, vf y) {
    return _mm256_blendv_ps(y, x, _mm256_cmp_ps(a, b, _CMP_LT_OQ));
}
static inline vf vf_gt0(vf a) {
    return _mm256_and_ps(_mm256_cmp_ps(a, _mm256_setzero_ps(), _CMP_GT_OQ), _mm256_set1_ps(1.0f));
}
static inline vf vf_load_tail(const float *p, size_t k, float fill) {
    __m256i m = first_lanes(k);
    return _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m));
}
static inline void vf_store_tail(float *p, size_t k, vf v) {
    _mm256_maskstore_ps(p, first_lanes(k), v);
}
static inline vf vf_keep(vf v, size_t k) {
    return _mm256_and_ps(v, _mm256_castsi256_ps(first_lanes(k)));
}
static inline float vf_hsum(vf v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
static inline float vf_hmax(vf v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

#include "kernels/rowops_simd.h"
