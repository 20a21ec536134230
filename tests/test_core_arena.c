/* test_core_arena.c — the scratch arena: alignment, no overlap, mark/reset, growth into new
 * blocks, and failure of every allocation in turn (through qkv_set_allocator) without leaks. */
#include "core/arena.h"
#include "qkv.h"
#include "test.h"

#include <stdint.h>

/* A counting allocator that fails the Nth call (0 = never). */
static long n_calls, n_live, fail_at;

static void *counting_alloc(size_t size, size_t align, void *user) {
    (void)user;
    if (fail_at && ++n_calls == fail_at) return NULL;
    size_t rounded = (size + align - 1) / align * align;
    void *p = aligned_alloc(align, rounded);
    if (p) n_live++;
    return p;
}

static void counting_free(void *p, void *user) {
    (void)user;
    n_live--;
    free(p);
}

static const qkv_allocator counting = {counting_alloc, counting_free, NULL};

static int aligned64(const void *p) { return ((uintptr_t)p & 63) == 0; }

static void test_basic(void) {
    qkv__arena a;
    qkv__arena_init(&a, 1000);
    CHECK_EQ_INT(qkv__arena_capacity(&a), 0); /* init allocates nothing */
    char *p = qkv__arena_alloc(&a, 10), *q = qkv__arena_alloc(&a, 1), *z = qkv__arena_alloc(&a, 0);
    CHECK(p && q && z);
    CHECK(aligned64(p) && aligned64(q) && aligned64(z));
    CHECK(q >= p + 10 && z > q);                 /* distinct, in order within a block */
    CHECK_EQ_INT(qkv__arena_capacity(&a), 1024); /* the hint rounded up to 64 */
    memset(p, 1, 10);
    *q = 2;

    qkv__arena_pos m = qkv__arena_mark(&a);
    char *r = qkv__arena_alloc(&a, 100);
    CHECK(r != NULL);
    qkv__arena_reset(&a, m);
    CHECK(qkv__arena_alloc(&a, 100) == r); /* the same memory again */
    CHECK(p[9] == 1 && *q == 2);           /* what came before the mark is kept */

    /* overflowing the block chains a new one; older pointers stay valid */
    char *big = qkv__arena_alloc(&a, 5000);
    CHECK(big != NULL && aligned64(big));
    CHECK(qkv__arena_capacity(&a) >= 1024 + 5000);
    memset(big, 3, 5000);
    CHECK(p[0] == 1);
    qkv__arena_reset(&a, m); /* frees the new block, back into the first */
    CHECK_EQ_INT(qkv__arena_capacity(&a), 1024);
    CHECK(qkv__arena_alloc(&a, 100) == r);

    /* sizes that cannot be represented fail cleanly */
    CHECK(qkv__arena_alloc(&a, SIZE_MAX) == NULL);
    CHECK(qkv__arena_alloc(&a, SIZE_MAX / 2 + 1) == NULL);
    CHECK(qkv__arena_alloc(&a, 8) != NULL); /* still usable */
    qkv__arena_free(&a);
    CHECK_EQ_INT(qkv__arena_capacity(&a), 0);
    CHECK(qkv__arena_alloc(&a, 8) != NULL); /* reusable after free */
    qkv__arena_free(&a);
}

/* Random allocations, each filled with its own byte: no two overlap, everything aligned; reset
 * to nested marks restores exactly. Also: a repeated pattern settles into one block. */
static void test_random(void) {
    enum { N = 2000 };
    static unsigned char *ptr[N];
    static size_t len[N];
    uint64_t s = 42;
    qkv__arena a;
    qkv__arena_init(&a, 256);
    for (int round = 0; round < 3; round++) {
        qkv__arena_pos start = qkv__arena_mark(&a), half = start;
        for (int i = 0; i < N; i++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            len[i] = (size_t)(s >> 33) % 3000;
            if (i == N / 2) half = qkv__arena_mark(&a);
            ptr[i] = qkv__arena_alloc(&a, len[i]);
            CHECK(ptr[i] && aligned64(ptr[i]));
            memset(ptr[i], i & 0xff, len[i]);
        }
        int bad = 0;
        for (int i = 0; i < N; i++)
            for (size_t j = 0; j < len[i]; j++) bad += ptr[i][j] != (unsigned char)(i & 0xff);
        CHECK_EQ_INT(bad, 0);
        qkv__arena_reset(&a, half);
        unsigned char *again = qkv__arena_alloc(&a, len[N / 2]);
        CHECK(again == ptr[N / 2]);
        bad = 0;
        for (int i = 0; i < N / 2; i++)
            for (size_t j = 0; j < len[i]; j++) bad += ptr[i][j] != (unsigned char)(i & 0xff);
        CHECK_EQ_INT(bad, 0);
        qkv__arena_reset(&a, start);
        if (round > 0) CHECK_EQ_INT(qkv__arena_capacity(&a) > 0, 1);
    }
    /* after the first round, the whole pattern fits the first block: nothing more is chained */
    size_t cap = qkv__arena_capacity(&a);
    qkv__arena_pos m = qkv__arena_mark(&a);
    for (int i = 0; i < N; i++) CHECK(qkv__arena_alloc(&a, len[i]) != NULL);
    CHECK_EQ_INT(qkv__arena_capacity(&a), cap);
    qkv__arena_reset(&a, m);
    qkv__arena_free(&a);
}

/* Fail the 1st, 2nd, ... allocation of a workload: each failure is a NULL from
 * qkv__arena_alloc, the arena stays usable, and freeing it leaves no live allocation. */
static void test_fault_injection(void) {
    qkv_set_allocator(&counting);
    int failures_seen = 0;
    for (long k = 1; k <= 40; k++) {
        n_calls = 0, n_live = 0, fail_at = k;
        qkv__arena a;
        qkv__arena_init(&a, 128);
        int nulls = 0;
        for (int i = 0; i < 30; i++) {
            size_t bytes = (size_t)(i * 97 % 700) + 1;
            unsigned char *p = qkv__arena_alloc(&a, bytes);
            if (!p) {
                nulls++;
                continue;
            }
            memset(p, 0xcd, bytes);
            if (i == 15) { /* a reset in the middle */
                qkv__arena_pos m = qkv__arena_mark(&a);
                CHECK(qkv__arena_alloc(&a, 5000) != NULL || n_calls == fail_at);
                qkv__arena_reset(&a, m);
            }
        }
        if (n_calls >= k) {
            failures_seen++;
            CHECK(nulls <= 1);
        }
        qkv__arena_free(&a);
        CHECK_MSG(n_live == 0, "failing allocation %ld: %ld blocks leaked", k, n_live);
    }
    CHECK(failures_seen > 3); /* the workload did reach several allocations */
    qkv_set_allocator(NULL);
}

int main(void) {
    test_basic();
    test_random();
    test_fault_injection();
    return test_finish("core_arena");
}
