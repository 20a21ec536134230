/* rng.c — Philox4x32-10 (Salmon, Moraes, Dror, Shaw: "Parallel random numbers: as easy as
 * 1, 2, 3", SC'11) and the qkv streams built on it.
 *
 * Mapping (fixed forever: checkpoints and dropout regeneration depend on it):
 *   key     = {seed low 32 bits, seed high 32 bits}
 *   counter = {block low, block high, stream low, stream high}
 *   u32 element i of a stream is word i % 4 of block i / 4.
 *   normal element i uses block i / 2, words 2 (i % 2) and 2 (i % 2) + 1, so a stream that
 *   carries normals should not also carry uniforms. */
#include "core/rng.h"

#include <math.h>

void qkv__philox4x32_10(const uint32_t key[2], const uint32_t ctr[4], uint32_t out[4]) {
    uint32_t k0 = key[0], k1 = key[1];
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    for (int r = 0; r < 10; r++) {
        if (r > 0) { /* key schedule: bump before rounds 2..10 */
            k0 += QKV_PHILOX_W0;
            k1 += QKV_PHILOX_W1;
        }
        uint64_t p0 = (uint64_t)QKV_PHILOX_M0 * c0;
        uint64_t p1 = (uint64_t)QKV_PHILOX_M1 * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        c1 = (uint32_t)p1;
        c3 = (uint32_t)p0;
        c0 = n0;
        c2 = n2;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

static void block(uint64_t seed, uint64_t stream, uint64_t b, uint32_t out[4]) {
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    const uint32_t ctr[4] = {(uint32_t)b, (uint32_t)(b >> 32), (uint32_t)stream,
                             (uint32_t)(stream >> 32)};
    qkv__philox4x32_10(key, ctr, out);
}

/* The top 24 bits as a float in [0, 1): exact, and never rounds up to 1. */
static float to_uniform(uint32_t u) { return (float)(u >> 8) * 0x1p-24f; }

uint32_t qkv__rng_u32(uint64_t seed, uint64_t stream, uint64_t index) {
    uint32_t r[4];
    block(seed, stream, index / 4, r);
    return r[index % 4];
}

float qkv__rng_uniform(uint64_t seed, uint64_t stream, uint64_t index) {
    return to_uniform(qkv__rng_u32(seed, stream, index));
}

void qkv__rng_uniform_n(uint64_t seed, uint64_t stream, uint64_t first, float *out, int64_t n) {
    uint32_t r[4];
    int64_t i = 0;
    while (i < n) {
        uint64_t index = first + (uint64_t)i;
        block(seed, stream, index / 4, r);
        for (unsigned w = (unsigned)(index % 4); w < 4 && i < n; w++) out[i++] = to_uniform(r[w]);
    }
}

float qkv__rng_normal(uint64_t seed, uint64_t stream, uint64_t index) {
    uint32_t r[4];
    block(seed, stream, index / 2, r);
    unsigned w = 2 * (unsigned)(index % 2);
    /* all 32 bits, in double: u1 in (0, 1] so the log is finite (|z| <= 6.66), u2 in [0, 1) */
    double u1 = ((double)r[w] + 1.0) * 0x1p-32;
    double u2 = (double)r[w + 1] * 0x1p-32;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}
