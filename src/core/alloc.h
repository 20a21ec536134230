/* alloc.h — internal allocation helpers over the qkv_set_allocator hook.
 *
 * Every allocation in libqkv goes through qkv__alloc/qkv__free so tests can fail the Nth
 * allocation. Allocations are 64-byte aligned (one cache line, one AVX-512 vector). */
#ifndef QKV_CORE_ALLOC_H
#define QKV_CORE_ALLOC_H

#include "qkv.h"

#include <stddef.h>

#define QKV_ALIGN 64

/* NULL on failure without recording a message; callers report NOMEM with context. */
void *qkv__alloc(size_t size);
/* n * size bytes, zeroed; NULL on overflow or failure. */
void *qkv__calloc(size_t n, size_t size);
void qkv__free(void *p);
/* strdup through the hook. */
char *qkv__strdup(const char *s);

/* a * b with overflow detection: returns 0 and sets *out, or returns 1 on overflow. */
static inline int qkv__mul_overflow(size_t a, size_t b, size_t *out) {
    return __builtin_mul_overflow(a, b, out);
}
static inline int qkv__add_overflow(size_t a, size_t b, size_t *out) {
    return __builtin_add_overflow(a, b, out);
}

#endif
