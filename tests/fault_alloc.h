/* fault_alloc.h — fault injection for the tests: an allocator hook (qkv_set_allocator) that
 * fails allocation attempt number fail_at (counting from 0) and counts the allocations and
 * frees of the others, so a test can fail every allocation of a call in turn and check that
 * each failure comes back as QKV_ERR_NOMEM with nothing leaked (n_alloc == n_free). */
#ifndef QKV_TEST_FAULT_ALLOC_H
#define QKV_TEST_FAULT_ALLOC_H

#include "qkv.h"
#include "test.h"

#include <stdlib.h>

static long n_attempt, n_alloc, n_free, fail_at = -1;

static void *failing_alloc(size_t size, size_t align, void *user) {
    (void)user;
    if (n_attempt++ == fail_at) return NULL;
    void *p = aligned_alloc(align, (size + align - 1) / align * align);
    if (p) n_alloc++;
    return p;
}

static void counting_free(void *p, void *user) {
    (void)user;
    n_free++;
    free(p);
}

/* Runs call(rt, ctx) with allocation attempt 0, 1, 2, ... failed in turn, each time with a
 * fresh one-thread runtime made under the hook (so its scratch is counted too), until the call
 * succeeds (or max attempts): every failure must be NOMEM and leave nothing allocated.
 * Returns the number of failures injected. Needs test.h. */
typedef qkv_status (*fault_call_fn)(qkv_runtime *rt, void *ctx);
static inline int fault_each_alloc(fault_call_fn call, void *ctx, long max) {
    int fails = 0;
    qkv_allocator a = {failing_alloc, counting_free, NULL};
    for (fail_at = 0;; fail_at++) {
        n_attempt = n_alloc = n_free = 0;
        qkv_set_allocator(&a);
        qkv_runtime *rt = NULL;
        qkv_status s = qkv_runtime_create(1, &rt);
        if (s == QKV_OK) s = call(rt, ctx);
        qkv_runtime_free(rt);
        qkv_set_allocator(NULL);
        CHECK_MSG(n_alloc == n_free, "fail_at %ld: %ld allocations, %ld frees", fail_at, n_alloc,
                  n_free);
        if (s == QKV_OK) break;
        CHECK_MSG(s == QKV_ERR_NOMEM, "fail_at %ld: status %d", fail_at, (int)s);
        fails++;
        if (fail_at > max) break;
    }
    fail_at = -1;
    printf("allocation failures injected: %d\n", fails);
    return fails;
}

#endif
