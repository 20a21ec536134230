/* test_core_alloc.c — the allocation hook: alignment, routing, restore, fault injection. */
#include "core/alloc.h"
#include "qkv.h"
#include "test.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

static int n_alloc, n_free, fail_at = -1;

static void *counting_alloc(size_t size, size_t align, void *user) {
    CHECK(user == (void *)&n_alloc);
    CHECK(align == 64);
    if (n_alloc++ == fail_at) return NULL;
    return aligned_alloc(align, (size + align - 1) / align * align);
}
static void counting_free(void *p, void *user) {
    (void)user;
    n_free++;
    free(p);
}

/* Resident pages of this process (/proc/self/statm), -1 if unknown. */
static long resident_pages(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long size = -1, res = -1;
    if (f && fscanf(f, "%ld %ld", &size, &res) != 2) res = -1;
    if (f) fclose(f);
    return res;
}

/* Large qkv__calloc blocks of the default allocator: zeros on every byte, also where the same
 * memory held data before (a block freed and taken again), and not resident until written. */
static void lazy_zeros(void) {
    const size_t n = (64u << 20) + 12345; /* odd: partial pages at the end */
    for (int round = 0; round < 2; round++) {
        long before = resident_pages();
        unsigned char *p = qkv__calloc(n, 1);
        CHECK(p != NULL);
        if (!p) return;
        long after = resident_pages();
        size_t nonzero = 0;
        for (size_t i = 0; i < n; i += 61) nonzero += p[i] != 0;
        nonzero += p[0] != 0, nonzero += p[n - 1] != 0;
        CHECK(nonzero == 0);
        /* 64 MiB of zeros cost no memory before they are written (the bound allows 1/4; the
         * count may also fall: a kept block, dirty, gave its pages back) */
        if (before >= 0 && after >= 0) CHECK((after - before) * 4096L < (long)(n / 4));
        memset(p, 0x5a, n); /* dirty it: the second round may get the same memory back */
        qkv__free(p);
    }
    /* small blocks: cleared by memset */
    for (int round = 0; round < 3; round++) {
        unsigned char *q = qkv__calloc(1000, 3);
        CHECK(q != NULL);
        for (size_t i = 0; q && i < 3000; i++)
            if (q[i]) {
                CHECK(q[i] == 0);
                break;
            }
        if (q) memset(q, 0x77, 3000);
        qkv__free(q);
    }
}

/* Large blocks of the default allocator are kept after free and handed out again (glibc, not
 * under the sanitizers): the same block for the same size and for a little less, not for a
 * request under half its size, nor twice; a kept block's contents are whatever was left. */
static void kept_blocks(void) {
#if defined(__GLIBC__) && !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
    const size_t big = (size_t)24 << 20;
    unsigned char *p = qkv_malloc(big);
    CHECK(p != NULL && ((uintptr_t)p & 63) == 0);
    memset(p, 0x5a, big);
    qkv_free(p);
    unsigned char *q = qkv_malloc(big - 4096); /* the kept block */
    CHECK(q == p);
    unsigned char *r = qkv_malloc(big); /* none kept now: a new one */
    CHECK(r != NULL && r != p);
    qkv_free(q);
    unsigned char *small = qkv_malloc(big / 3); /* under half the kept block: not it */
    CHECK(small != NULL && small != p);
    unsigned char *z = qkv__calloc(big, 1); /* calloc of a kept block still reads zeros */
    CHECK(z == p);
    int nonzero = 0;
    for (size_t i = 0; i < big; i += 4093) nonzero += z[i] != 0;
    CHECK_EQ_INT(nonzero, 0);
    qkv_free(z), qkv_free(r), qkv_free(small);
    printf("kept blocks: reused\n");
#else
    printf("kept blocks: not with this libc or under a sanitizer\n");
#endif
}

int main(void) {
    for (size_t sz = 0; sz < 300; sz += 7) {
        void *p = qkv_malloc(sz);
        CHECK(p != NULL);
        CHECK(((uintptr_t)p & 63) == 0);
        memset(p, 0xab, sz);
        qkv_free(p);
    }
    qkv_free(NULL); /* NULL is fine */

    qkv_allocator a = {counting_alloc, counting_free, &n_alloc};
    qkv_set_allocator(&a);
    void *p = qkv_malloc(100);
    char *s = qkv__strdup("hello");
    CHECK(strcmp(s, "hello") == 0);
    int *z = qkv__calloc(10, sizeof(int));
    for (int i = 0; i < 10; i++) CHECK(z[i] == 0);
    CHECK(qkv__calloc(SIZE_MAX / 2, 4) == NULL); /* overflow: no call to the hook */
    CHECK_EQ_INT(n_alloc, 3);
    qkv_free(p);
    qkv__free(s);
    qkv__free(z);
    CHECK_EQ_INT(n_free, 3);
    fail_at = 3;
    CHECK(qkv_malloc(8) == NULL);
    CHECK_EQ_INT(n_free, 3);

    qkv_set_allocator(NULL); /* default again: the counter no longer moves */
    int before = n_alloc;
    qkv_free(qkv_malloc(16));
    CHECK_EQ_INT(n_alloc, before);

    lazy_zeros();
    kept_blocks();

    size_t out;
    CHECK(qkv__mul_overflow(SIZE_MAX, 2, &out));
    CHECK(!qkv__mul_overflow(1u << 20, 1u << 10, &out) && out == (1u << 30));
    CHECK(qkv__add_overflow(SIZE_MAX, 1, &out));
    return test_finish("core_alloc");
}
