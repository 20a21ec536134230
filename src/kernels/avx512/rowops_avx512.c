/* rowops_avx512.c — the row kernels (exp, activations, softmax, LayerNorm, RMSNorm, forward and
 * backward) with AVX-512 F/DQ, 16 floats per vector.
 *
 * This file only supplies the vector interface that kernels/rowops_simd.h is written against
 * (see there for the math and docs/KERNELS.md, "Row kernels", for the contracts). Tails use
 * masked loads and stores, which never touch memory outside the mask; 2^n goes through
 * vscalefps, which rounds once, so subnormal results are correctly rounded. */
#include "kernels/avx512/kernels_avx512.h"
#include "kernels/topk.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

typedef __m512 vf;
#define VW 16
#define RK(name) qkv__##name##_avx512

static inline __mmask16 first_lanes(size_t k) { return (__mmask16)((1u << k) - 1u); }

static inline vf vf_set1(float a) { return _mm512_set1_ps(a); }
static inline vf vf_zero(void) { return _mm512_setzero_ps(); }
static inline vf vf_load(const float *p) { return _mm512_loadu_ps(p); }
static inline void vf_store(float *p, vf v) { _mm512_storeu_ps(p, v); }
static inline vf vf_add(vf a, vf b) { return _mm512_add_ps(a, b); }
static inline vf vf_sub(vf a, vf b) { return _mm512_sub_ps(a, b); }
static inline vf vf_mul(vf a, vf b) { return _mm512_mul_ps(a, b); }
static inline vf vf_div(vf a, vf b) { return _mm512_div_ps(a, b); }
static inline vf vf_fma(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }
static inline vf vf_min(vf a, vf b) { return _mm512_min_ps(a, b); }
static inline vf vf_max(vf a, vf b) { return _mm512_max_ps(a, b); }
static inline vf vf_abs(vf a) { return _mm512_abs_ps(a); }
static inline vf vf_round(vf a) {
    return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
static inline vf vf_ldexp(vf p, vf n) { return _mm512_scalef_ps(p, n); }
static inline vf vf_lt(vf a, vf b, vf x, vf y) {
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, b, _CMP_LT_OQ), y, x);
}
static inline vf vf_gt0(vf a) {
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(a, _mm512_setzero_ps(), _CMP_GT_OQ),
                               _mm512_set1_ps(1.0f));
}
static inline vf vf_load_tail(const float *p, size_t k, float fill) {
    return _mm512_mask_loadu_ps(_mm512_set1_ps(fill), first_lanes(k), p);
}
static inline void vf_store_tail(float *p, size_t k, vf v) {
    _mm512_mask_storeu_ps(p, first_lanes(k), v);
}
static inline vf vf_keep(vf v, size_t k) { return _mm512_maskz_mov_ps(first_lanes(k), v); }
static inline float vf_hsum(vf v) { return _mm512_reduce_add_ps(v); }
static inline float vf_hmax(vf v) { return _mm512_reduce_max_ps(v); }

#include "kernels/rowops_simd.h"
