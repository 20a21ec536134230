/* alloc.c — the single allocation hook (qkv_set_allocator) and helpers over it. */
#include "core/alloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

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

/* From this size on, qkv__calloc lets the kernel supply the zeros (see there). */
#define LAZY_ZEROS_FROM ((size_t)1 << 20)

void *qkv__calloc(size_t n, size_t size) {
    size_t total;
    if (qkv__mul_overflow(n, size, &total)) return NULL;
    void *p = qkv__alloc(total);
    if (!p) return NULL;
    /* A large block of the default allocator is private anonymous memory: the pages wholly
     * inside it are handed back with MADV_DONTNEED, after which they read as zeros and take
     * memory only once written (memset would make every page resident at once: e.g. a
     * trainer's AdamW moments before its first step, or those ZeRO-1 then shards away). The
     * partial pages at both ends are cleared. A caller's allocator may hand out any memory:
     * cleared by memset. */
    const long page = sysconf(_SC_PAGESIZE);
    if (current.alloc == default_alloc && total >= LAZY_ZEROS_FROM && page > 0) {
        const uintptr_t a = (uintptr_t)p, pg = (uintptr_t)page;
        const uintptr_t b = (a + pg - 1) & ~(pg - 1), e = (a + total) & ~(pg - 1);
        if (b < e && madvise((void *)b, e - b, MADV_DONTNEED) == 0) {
            memset(p, 0, b - a);
            memset((void *)e, 0, a + total - e);
            return p;
        }
    }
    memset(p, 0, total);
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
