/* bench_util.h — shared pieces of the benchmark programs: a monotonic clock, medians, and
 * the FMA peak measured on the spot (qkv_fma_peak_gflops). Benchmarks print one JSON object
 * per line; they are never tests and assert nothing about time. */
#ifndef QKV_BENCH_UTIL_H
#define QKV_BENCH_UTIL_H

#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of v[0..n) (sorts v). */
static inline double bench_median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Deterministic uniform values in [-1, 1). */
static inline void bench_fill(float *x, size_t n, unsigned long long seed) {
    for (size_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((seed >> 40) & 0xffffff) / (float)(1 << 24) * 2.0f - 1.0f;
    }
}

/* 1 if argv has flag. */
static inline int bench_has_flag(int argc, char **argv, const char *flag) {
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], flag) == 0) return 1;
    return 0;
}

/* Value of "--name N", or def. */
static inline long bench_int_opt(int argc, char **argv, const char *name, long def) {
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0) return strtol(argv[i + 1], NULL, 10);
    return def;
}

#endif
