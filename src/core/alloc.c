/* alloc.c — the single allocation hook (qkv_set_allocator) and helpers over it. */
#include "core/alloc.h"

#include <stdlib.h>
#include <string.h>

static void *default_alloc(size_t size, size_t align, void *user) {
    (void)user;
    /* aligned_alloc wants a size that is a multiple of the alignment. */
    size_t rounded = (size + align - 1) & ~(align - 1);
    if (rounded < size) return NULL;
    return aligned_alloc(align, rounded ? rounded : align);
}

static void default_free(void *p, void *user) {
    (void)user;
    free(p);
}

static qkv_allocator current = {default_alloc, default_free, NULL};

void qkv_set_allocator(const qkv_allocator *a) {
    if (a && a->alloc && a->free)
        current = *a;
    else
        current = (qkv_allocator){default_alloc, default_free, NULL};
}

void *qkv__alloc(size_t size) { return current.alloc(size ? size : 1, QKV_ALIGN, current.user); }

void *qkv__calloc(size_t n, size_t size) {
    size_t total;
    if (qkv__mul_overflow(n, size, &total)) return NULL;
    void *p = qkv__alloc(total);
    if (p) memset(p, 0, total);
    return p;
}

void qkv__free(void *p) {
    if (p) current.free(p, current.user);
}

char *qkv__strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = qkv__alloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

void *qkv_malloc(size_t size) { return qkv__alloc(size); }
void qkv_free(void *p) { qkv__free(p); }
