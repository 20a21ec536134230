/* alloc.c — the single allocation hook (qkv_set_allocator) and helpers over it. */
#include "core/alloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Large blocks are kept after qkv__free and handed out again. A model's per-call workspace
 * (BERT's is ~57 MB for 32 x 128 tokens) is above the size glibc serves from its heap, so each
 * call would map it afresh and take a page fault and a page clear per 4 KiB written (~6% of a
 * bf16 MiniLM batch in a profile). At most KEEP_SLOTS blocks of KEEP_FROM bytes or more, KEEP_MAX
 * bytes in all, stay mapped; a request takes the smallest kept block that holds it if that
 * block is at most twice its size. Only the default allocator keeps blocks (a caller's
 * allocator sees every alloc and free). */
#if defined(__GLIBC__) && !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
/* (not under the sanitizers: a kept block would hide a use after free from them) */
#include <malloc.h>
#include <pthread.h>
#define KEEP_FROM ((size_t)4 << 20)
#define KEEP_MAX ((size_t)512 << 20)
#define KEEP_SLOTS 4
static struct {
    void *p;
    size_t cap, align;
} kept[KEEP_SLOTS];
static size_t kept_bytes;
static pthread_mutex_t kept_lock = PTHREAD_MUTEX_INITIALIZER;

static void *take_kept(size_t size, size_t align) {
    void *p = NULL;
    pthread_mutex_lock(&kept_lock);
    int best = -1;
    for (int i = 0; i < KEEP_SLOTS; i++)
        if (kept[i].p && kept[i].cap >= size && kept[i].cap / 2 <= size && kept[i].align >= align &&
            (best < 0 || kept[i].cap < kept[best].cap))
            best = i;
    if (best >= 0) {
        p = kept[best].p;
        kept_bytes -= kept[best].cap;
        kept[best].p = NULL;
    }
    pthread_mutex_unlock(&kept_lock);
    return p;
}

/* 1 if p was kept (the caller must not free it). */
static int keep(void *p) {
    const size_t cap = malloc_usable_size(p);
    if (cap < KEEP_FROM) return 0;
    int done = 0;
    pthread_mutex_lock(&kept_lock);
    for (int i = 0; i < KEEP_SLOTS && !done; i++)
        if (!kept[i].p && kept_bytes + cap <= KEEP_MAX) {
            /* the alignment it has: the largest power of two, up to 4096, dividing it */
            size_t align = 4096;
            while (align > 1 && ((uintptr_t)p & (align - 1))) align /= 2;
            kept[i].p = p, kept[i].cap = cap, kept[i].align = align;
            kept_bytes += cap;
            done = 1;
        }
    pthread_mutex_unlock(&kept_lock);
    return done;
}
#else
static void *take_kept(size_t size, size_t align) {
    (void)size, (void)align;
    return NULL;
}
static int keep(void *p) {
    (void)p;
    return 0;
}
#endif

static void *default_alloc(size_t size, size_t align, void *user) {
    (void)user;
    /* aligned_alloc wants a size that is a multiple of the alignment. */
    size_t rounded = (size + align - 1) & ~(align - 1);
    if (rounded < size) return NULL;
    void *p = take_kept(rounded, align);
    return p ? p : aligned_alloc(align, rounded ? rounded : align);
}

static void default_free(void *p, void *user) {
    (void)user;
    if (!keep(p)) free(p);
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
