/* attn_dropout_simd.h — the dropout micro-kernel of fused attention (contract:
 * kernels/attn_kernels.h), written once for avx2 and avx512.
 *
 * Included twice by kernels/avx2/attn_avx2.c and kernels/avx512/attn_avx512.c: first with
 * QKV_DROPOUT_ROUNDS defined, after the file defines its integer vector VI and VI_SET1 (a
 * 32-bit word in every lane), VI_MUL (vpmuludq), VI_SRLI64, VI_XOR3, for philox_rounds; then
 * without, after it defines
 *   static void dropout_row(uint64_t first, int64_t n, const qkv_attn_dropout *dr, float *z);
 * (z[c] = dr->keep or 0 for elements first .. first + n - 1), for the kernel itself. A row of
 * a query-major tile is one dropout_row call. The forward wants its tile key-major
 * (z[c * cs + r]): 8 rows are generated into a buffer and written out through 8 x 8 transposes
 * (AVX2 instructions, which the avx512 build has too). */
#ifdef QKV_DROPOUT_ROUNDS
#undef QKV_DROPOUT_ROUNDS
#include "core/rng.h"

/* The ten rounds of Philox4x32-10 (core/rng.c) on two independent sets of blocks, one block
 * per 64-bit lane: word w in the low 32 bits of c[s][w], the high 32 bits don't-care.
 * vpmuludq reads only the low words and returns the whole 64-bit product, whose high word is
 * Philox's hi and whose low word is its lo: no blends, no shuffles inside the rounds. */
static inline __attribute__((always_inline)) void philox_rounds(VI c[2][4],
                                                                const qkv_attn_dropout *dr) {
    const VI m0 = VI_SET1(QKV_PHILOX_M0), m1 = VI_SET1(QKV_PHILOX_M1);
    uint32_t k0 = dr->key[0], k1 = dr->key[1];
#pragma GCC unroll 10
    for (int r = 0; r < 10; r++) {
        VI key0 = VI_SET1(k0), key1 = VI_SET1(k1);
#pragma GCC unroll 2
        for (int s = 0; s < 2; s++) {
            VI p0 = VI_MUL(c[s][0], m0), p1 = VI_MUL(c[s][2], m1);
            c[s][0] = VI_XOR3(VI_SRLI64(p1, 32), c[s][1], key0);
            c[s][2] = VI_XOR3(VI_SRLI64(p0, 32), c[s][3], key1);
            c[s][1] = p1;
            c[s][3] = p0;
        }
        k0 += QKV_PHILOX_W0;
        k1 += QKV_PHILOX_W1;
    }
}

#elif !defined(QKV_KERNELS_ATTN_DROPOUT_SIMD_H)
#define QKV_KERNELS_ATTN_DROPOUT_SIMD_H

#include <immintrin.h>
#include <stdint.h>

/* r[k] = column k of the 8 x 8 matrix whose rows were r[0..8). */
static inline __attribute__((always_inline)) void transpose8x8(__m256 r[8]) {
    __m256 t[8], s[8];
    for (int a = 0; a < 4; a++) {
        t[2 * a] = _mm256_unpacklo_ps(r[2 * a], r[2 * a + 1]);
        t[2 * a + 1] = _mm256_unpackhi_ps(r[2 * a], r[2 * a + 1]);
    }
    for (int a = 0; a < 2; a++) { /* rows 4a .. 4a + 3 */
        s[4 * a + 0] = _mm256_shuffle_ps(t[4 * a], t[4 * a + 2], 0x44);
        s[4 * a + 1] = _mm256_shuffle_ps(t[4 * a], t[4 * a + 2], 0xEE);
        s[4 * a + 2] = _mm256_shuffle_ps(t[4 * a + 1], t[4 * a + 3], 0x44);
        s[4 * a + 3] = _mm256_shuffle_ps(t[4 * a + 1], t[4 * a + 3], 0xEE);
    }
    for (int a = 0; a < 4; a++) {
        r[a] = _mm256_permute2f128_ps(s[a], s[a + 4], 0x20);
        r[a + 4] = _mm256_permute2f128_ps(s[a], s[a + 4], 0x31);
    }
}

static void dropout_f32_simd(int64_t rows, int64_t cols, const uint64_t *first, uint64_t col0,
                             const qkv_attn_dropout *dr, float *z, int64_t rs, int64_t cs) {
    if (cs == 1) { /* query-major: one row at a time */
        for (int64_t r = 0; r < rows; r++) dropout_row(first[r] + col0, cols, dr, z + r * rs);
        return;
    }
    enum { W = 64 };            /* columns per pass */
    float buf[8][W] = {{0.0f}}; /* 8 rows of the pass; unused rows stay 0 */
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int64_t c0 = 0; c0 < cols; c0 += W) {
        int64_t cw = cols - c0 < W ? cols - c0 : W;
        for (int64_t r0 = 0; r0 < rows; r0 += 8) {
            int64_t nr = rows - r0 < 8 ? rows - r0 : 8;
            for (int64_t rr = 0; rr < nr; rr++)
                dropout_row(first[r0 + rr] + col0 + (uint64_t)c0, cw, dr, buf[rr]);
            __m256i rmask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)nr), lane);
            for (int64_t cc = 0; cc < cw; cc += 8) {
                __m256 v[8];
                for (int k = 0; k < 8; k++) v[k] = _mm256_loadu_ps(buf[k] + cc);
                transpose8x8(v);
                for (int64_t j = 0; j < 8 && cc + j < cw; j++) {
                    float *dst = z + (c0 + cc + j) * cs + r0; /* rows r0 .. r0 + nr - 1 */
                    if (nr == 8)
                        _mm256_storeu_ps(dst, v[j]);
                    else
                        _mm256_maskstore_ps(dst, rmask, v[j]);
                }
            }
        }
    }
}

#endif
