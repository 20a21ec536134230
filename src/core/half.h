/* half.h — scalar IEEE binary16 (f16) and bfloat16 (bf16) conversions, inline.
 *
 * These are the definition of every 16-bit conversion in qkv: the public qkv_f16_to_f32 & co.
 * wrap them, the reference kernels loop over them, and the SIMD kernels use them for tails.
 * All of them work on bit patterns with integer arithmetic only, so the result never depends
 * on the FPU mode (rounding, FTZ/DAZ) or the compiler.
 *
 * Contract (the vector kernels are bit-identical to it; F16C/AVX-512 hardware does the same):
 *   to f32:   exact. A NaN comes out quiet: sign and payload kept, quiet bit set.
 *   from f32: round to nearest, ties to even; overflow gives Inf of the same sign; results in
 *             the f16 subnormal range are rounded exactly once; f32 subnormals give (signed) 0
 *             in f16 and are kept in bf16. A NaN comes out a quiet NaN with the same sign and
 *             the top payload bits that fit (never Inf). */
#ifndef QKV_CORE_HALF_H
#define QKV_CORE_HALF_H

#include <stdint.h>
#include <string.h>

static inline uint32_t qkv__f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float qkv__f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline float qkv__f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    if (exp == 0x1f) /* Inf, or NaN made quiet */
        return qkv__f32_from_bits(sign | 0x7f800000u | (man ? 0x400000u | (man << 13) : 0));
    if (exp == 0) {
        if (man == 0) return qkv__f32_from_bits(sign);
        /* subnormal: man * 2^-24 with the leading one at bit p gives f32 exponent p - 24 */
        int p = 31 - __builtin_clz(man);
        uint32_t e32 = (uint32_t)(p - 24 + 127);
        return qkv__f32_from_bits(sign | (e32 << 23) | ((man << (23 - p)) & 0x7fffffu));
    }
    return qkv__f32_from_bits(sign | ((exp + 112) << 23) | (man << 13));
}

static inline uint16_t qkv__f32_to_f16(float f) {
    uint32_t x = qkv__f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu)); /* NaN */
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520 (tie above 65504): Inf */
    if (ax >= 0x38800000u) { /* normal in f16: rebias the exponent, round 13 dropped bits */
        uint32_t h = ((ax >> 13) - (112u << 10));
        uint32_t rest = ax & 0x1fffu;
        if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h++; /* a carry may bump exp */
        return (uint16_t)(sign | h);
    }
    if (ax <= 0x33000000u) return sign; /* <= 2^-25: half the smallest subnormal ties to 0 */
    /* subnormal in f16: the value in units of 2^-24 is m >> s, with s in [14, 24] */
    uint32_t m = (ax & 0x7fffffu) | 0x800000u;
    uint32_t s = 126u - (ax >> 23);
    uint32_t h = m >> s;
    uint32_t rest = m & ((1u << s) - 1u), half = 1u << (s - 1u);
    if (rest > half || (rest == half && (h & 1u))) h++; /* 0x3ff + 1 is the smallest normal */
    return (uint16_t)(sign | h);
}

static inline float qkv__bf16_to_f32(uint16_t h) {
    uint32_t x = (uint32_t)h << 16;
    if ((x & 0x7fffffffu) > 0x7f800000u) x |= 0x400000u; /* NaN made quiet */
    return qkv__f32_from_bits(x);
}

static inline uint16_t qkv__f32_to_bf16(float f) {
    uint32_t x = qkv__f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u); /* quiet NaN */
    /* RNE on the low 16 bits; the carry walks into the exponent, up to Inf when it must */
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

#endif
