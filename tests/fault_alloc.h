/* fault_alloc.h — fault injection for the tests: an allocator hook (qkv_set_allocator) that
 * fails allocation attempt number fail_at (counting from 0) and counts the allocations and
 * frees of the others, so a test can fail every allocation of a call in turn and check that
 * each failure comes back as QKV_ERR_NOMEM with nothing leaked (n_alloc == n_free). */
#ifndef QKV_TEST_FAULT_ALLOC_H
#define QKV_TEST_FAULT_ALLOC_H

#include "qkv.h"

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

#endif
