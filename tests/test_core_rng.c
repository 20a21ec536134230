/* test_core_rng.c — Philox4x32-10 against Random123's published known-answer vectors
 * (tests/kat_vectors), the stream mapping, determinism, uniform_n == the per-element
 * function, and the moments of uniform and normal samples (tolerances from standard errors). */
#include "core/rng.h"
#include "qkv.h"
#include "test.h"

#include <stdint.h>

static void test_kat(void) {
    static const struct {
        uint32_t ctr[4], key[2], out[4];
    } kat[] = {
        {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
        {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
         {0xffffffff, 0xffffffff},
         {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
        {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
         {0xa4093822, 0x299f31d0},
         {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
    };
    for (size_t t = 0; t < sizeof kat / sizeof kat[0]; t++) {
        uint32_t out[4];
        qkv__philox4x32_10(kat[t].key, kat[t].ctr, out);
        for (int w = 0; w < 4; w++)
            CHECK_MSG(out[w] == kat[t].out[w], "vector %zu word %d: %08x, want %08x", t, w, out[w],
                      kat[t].out[w]);
    }
}

/* The documented mapping: key = seed, counter = {index / 4, stream}, word index % 4. */
static void test_mapping(void) {
    const uint64_t seed = 0x0123456789abcdefull, stream = 0xfedcba9876543210ull;
    const uint64_t index = (0x1122334455ull << 2) | 3;
    const uint32_t key[2] = {0x89abcdef, 0x01234567};
    const uint32_t ctr[4] = {0x22334455, 0x11, 0x76543210, 0xfedcba98};
    uint32_t out[4];
    qkv__philox4x32_10(key, ctr, out);
    CHECK_EQ_INT(qkv__rng_u32(seed, stream, index), out[3]);
    CHECK_EQ_INT(qkv__rng_u32(seed, stream, index - 3), out[0]);
    CHECK(qkv__rng_uniform(seed, stream, index) == (float)(out[3] >> 8) * 0x1p-24f);
    /* zero inputs give the first KAT vector */
    CHECK_EQ_INT(qkv__rng_u32(0, 0, 0), 0x6627e8d5u);
    CHECK_EQ_INT(qkv__rng_u32(0, 0, 3), 0x9b00dbd8u);
}

static void test_determinism(void) {
    int same = 0, diff_seed = 0, diff_stream = 0;
    for (uint64_t i = 0; i < 1000; i++) {
        same += qkv__rng_u32(7, 1, i) == qkv__rng_u32(7, 1, i);
        diff_seed += qkv__rng_u32(7, 1, i) != qkv__rng_u32(8, 1, i);
        diff_stream += qkv__rng_u32(7, 1, i) != qkv__rng_u32(7, 2, i);
        CHECK(qkv__rng_normal(7, 1, i) == qkv__rng_normal(7, 1, i));
    }
    CHECK_EQ_INT(same, 1000);
    CHECK(diff_seed >= 998); /* independent 32-bit words collide with probability 2^-32 */
    CHECK(diff_stream >= 998);
}

static void test_uniform_n(void) {
    float buf[64 + 2];
    const uint64_t firsts[] = {0, 1, 2, 3, 5, 1000001, UINT64_MAX - 70};
    for (size_t f = 0; f < sizeof firsts / sizeof firsts[0]; f++)
        for (int64_t n = 0; n <= 64; n++) {
            buf[n] = -1.0f; /* guard */
            qkv__rng_uniform_n(99, 5, firsts[f], buf, n);
            int bad = 0;
            for (int64_t i = 0; i < n; i++)
                bad += buf[i] != qkv__rng_uniform(99, 5, firsts[f] + (uint64_t)i);
            CHECK_EQ_INT(bad, 0);
            CHECK(buf[n] == -1.0f);
        }
}

/* Mean and variance of 1e6 samples within 5 standard errors of the exact values. */
static void test_moments(void) {
    enum { N = 1000000 };
    float *u = malloc(N * sizeof *u);
    qkv__rng_uniform_n(2024, 3, 0, u, N);
    double sum = 0, sum2 = 0, lo = 1, hi = 0;
    long bins[16] = {0};
    for (int i = 0; i < N; i++) {
        double x = u[i];
        sum += x;
        sum2 += x * x;
        lo = x < lo ? x : lo;
        hi = x > hi ? x : hi;
        bins[(int)(x * 16)]++;
    }
    double mean = sum / N, var = sum2 / N - mean * mean;
    /* uniform: var = 1/12; the sample variance has variance (mu4 - sigma^4) / N with
     * mu4 = 1/80 */
    double se_mean = sqrt(1.0 / 12 / N), se_var = sqrt((1.0 / 80 - 1.0 / 144) / N);
    printf("uniform: mean %.6f (se %.2g), var %.6f (se %.2g), min %.9g, max %.9g\n", mean, se_mean,
           var, se_var, lo, hi);
    CHECK(fabs(mean - 0.5) < 5 * se_mean);
    CHECK(fabs(var - 1.0 / 12) < 5 * se_var);
    CHECK(lo >= 0.0 && hi < 1.0);
    /* chi-square over 16 equal bins, 15 degrees of freedom: P(chi2 > 45) ~ 7e-5 */
    double chi2 = 0, e = N / 16.0;
    for (int b = 0; b < 16; b++) chi2 += (bins[b] - e) * (bins[b] - e) / e;
    printf("uniform: chi2 over 16 bins %.2f\n", chi2);
    CHECK(chi2 < 45);

    /* normal: mean 0 (se 1/sqrt(N)), variance 1 (se sqrt(2/N)) */
    sum = sum2 = 0;
    double sum4 = 0;
    for (int i = 0; i < N; i++) {
        double z = qkv__rng_normal(2024, 4, (uint64_t)i);
        sum += z;
        sum2 += z * z;
        sum4 += z * z * z * z;
    }
    mean = sum / N;
    var = sum2 / N - mean * mean;
    double kurt = sum4 / N; /* E[z^4] = 3, se sqrt(96 / N) */
    printf("normal: mean %.6f, var %.6f, E[z^4] %.4f\n", mean, var, kurt);
    CHECK(fabs(mean) < 5 / sqrt(N));
    CHECK(fabs(var - 1) < 5 * sqrt(2.0 / N));
    CHECK(fabs(kurt - 3) < 5 * sqrt(96.0 / N));
    free(u);
}

int main(void) {
    test_kat();
    test_mapping();
    test_determinism();
    test_uniform_n();
    test_moments();
    return test_finish("core_rng");
}
