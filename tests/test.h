/* test.h — the tiny harness every test program uses.
 *
 * Each test is its own process (registered with CTest). CHECK records a failure and goes on,
 * so one run reports every broken check; main returns 1 if any check failed. A test that needs
 * something absent (an instruction set, Python) calls TEST_SKIP, which exits 77: CTest reports
 * it as skipped. */
#ifndef QKV_TEST_H
#define QKV_TEST_H

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static _Atomic int test_failures_; /* atomic: CHECK may run on pool threads */
static _Atomic int test_checks_;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        test_checks_++;                                                                            \
        if (!(cond)) {                                                                             \
            test_failures_++;                                                                      \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
        }                                                                                          \
    } while (0)

#define CHECK_MSG(cond, ...)                                                                       \
    do {                                                                                           \
        test_checks_++;                                                                            \
        if (!(cond)) {                                                                             \
            test_failures_++;                                                                      \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                         \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        test_checks_++;                                                                            \
        if (a_ != b_) {                                                                            \
            test_failures_++;                                                                      \
            fprintf(stderr, "%s:%d: CHECK_EQ_INT failed: %s == %lld, %s == %lld\n", __FILE__,      \
                    __LINE__, #a, a_, #b, b_);                                                     \
        }                                                                                          \
    } while (0)

/* A status check that prints qkv_last_error() on mismatch. */
#define CHECK_STATUS(expr, expected)                                                               \
    do {                                                                                           \
        qkv_status s_ = (expr);                                                                    \
        test_checks_++;                                                                            \
        if (s_ != (expected)) {                                                                    \
            test_failures_++;                                                                      \
            fprintf(stderr, "%s:%d: %s returned %d (%s), expected %d; last error: %s\n", __FILE__, \
                    __LINE__, #expr, (int)s_, qkv_strerror(s_), (int)(expected),                   \
                    qkv_last_error());                                                             \
        }                                                                                          \
    } while (0)

#define CHECK_OK(expr) CHECK_STATUS(expr, QKV_OK)

/* |a - b| <= atol + rtol * |b| */
#define CHECK_NEAR(a, b, atol, rtol)                                                               \
    do {                                                                                           \
        double a_ = (double)(a), b_ = (double)(b);                                                 \
        test_checks_++;                                                                            \
        if (!(fabs(a_ - b_) <= (atol) + (rtol)*fabs(b_))) {                                        \
            test_failures_++;                                                                      \
            fprintf(stderr, "%s:%d: CHECK_NEAR failed: %s = %.9g, %s = %.9g\n", __FILE__,          \
                    __LINE__, #a, a_, #b, b_);                                                     \
        }                                                                                          \
    } while (0)

#define TEST_SKIP(...)                                                                             \
    do {                                                                                           \
        printf("SKIP: ");                                                                          \
        printf(__VA_ARGS__);                                                                       \
        printf("\n");                                                                              \
        exit(77);                                                                                  \
    } while (0)

/* Call at the end of main: prints a summary and gives the exit code. */
static inline int test_finish(const char *name) {
    printf("%s: %d checks, %d failed\n", name, (int)test_checks_, (int)test_failures_);
    return test_failures_ ? 1 : 0;
}

/* The whole file at path, NUL-terminated (malloc'd; *len its size), or NULL. */
static inline char *test_read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)(n > 0 ? n : 0) + 1);
    if (n < 0 || fread(b, 1, (size_t)n, f) != (size_t)n) n = 0;
    fclose(f);
    b[n] = '\0';
    *len = (size_t)n;
    return b;
}

/* Copies the file from to the file to (a test's scratch copy). */
static inline void test_copy_file(const char *from, const char *to) {
    size_t n;
    char *b = test_read_all(from, &n);
    FILE *f = fopen(to, "wb");
    if (b && f) fwrite(b, 1, n, f);
    if (f) fclose(f);
    free(b);
}

/* Removes dir and everything below it (a test's scratch directory). */
static inline void test_rm_rf(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[4096];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        int n = snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (n < 0 || (size_t)n >= sizeof p) continue; /* cannot name it: leave it */
        struct stat sb;
        if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode))
            test_rm_rf(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

/* Source directory (for fixtures), passed by CMake. */
#ifndef QKV_SOURCE_DIR
#define QKV_SOURCE_DIR "."
#endif

#endif
