/* rng.h — counter-based random numbers (Philox4x32-10, Salmon et al., SC'11).
 *
 * A counter-based generator has no state to share between threads: the value for element i of
 * a stream is a pure function of (seed, stream, i), so any thread can produce any element, and
 * backward passes can regenerate exactly the dropout mask the forward pass used. */
#ifndef QKV_CORE_RNG_H
#define QKV_CORE_RNG_H

#include <stdint.h>

/* The Philox4x32-10 constants (multipliers and Weyl key increments), shared with the
 * vectorized copies in the attention dropout kernels (src/kernels/avx2, avx512: attn_avx2.c,
 * attn_avx512.c). */
#define QKV_PHILOX_M0 0xD2511F53u
#define QKV_PHILOX_M1 0xCD9E8D57u
#define QKV_PHILOX_W0 0x9E3779B9u /* golden ratio */
#define QKV_PHILOX_W1 0xBB67AE85u /* sqrt(3) - 1 */

/* One Philox4x32-10 block: key (2 x 32 bits) and counter (4 x 32 bits) -> 4 x 32 random bits. */
void qkv__philox4x32_10(const uint32_t key[2], const uint32_t ctr[4], uint32_t out[4]);

/* 32 random bits for element `index` of stream `stream` under `seed`. */
uint32_t qkv__rng_u32(uint64_t seed, uint64_t stream, uint64_t index);
/* Uniform float in [0, 1) (24 random bits) for element `index` of stream `stream`. */
float qkv__rng_uniform(uint64_t seed, uint64_t stream, uint64_t index);
/* Fill out[0..n) with uniform floats for indices first..first+n-1 (4 per Philox block). */
void qkv__rng_uniform_n(uint64_t seed, uint64_t stream, uint64_t first, float *out, int64_t n);
/* Standard normal (Box-Muller over two uniforms of the same block) for element `index`. */
float qkv__rng_normal(uint64_t seed, uint64_t stream, uint64_t index);

#endif
