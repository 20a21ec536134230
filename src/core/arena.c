/* arena.c — chained-block bump allocator (see arena.h for the contract).
 *
 * Layout of a block: a header padded to QKV_ALIGN bytes, then `cap` usable bytes. Every
 * allocation is rounded up to QKV_ALIGN, so with 64-byte aligned blocks every pointer handed
 * out is 64-byte aligned. Invariant: head->used <= head->cap, both multiples of QKV_ALIGN. */
#include "core/arena.h"
#include "core/alloc.h"

#include <stdint.h>

struct qkv__arena_block {
    qkv__arena_block *next; /* older block */
    size_t cap;             /* usable bytes after the header */
    size_t used;            /* bytes handed out from this block */
};

#define HEADER_SIZE ((sizeof(qkv__arena_block) + QKV_ALIGN - 1) & ~(size_t)(QKV_ALIGN - 1))
#define DEFAULT_SIZE ((size_t)64 << 10)
#define MAX_SIZE (SIZE_MAX / 2 & ~(size_t)(QKV_ALIGN - 1))

static char *block_data(qkv__arena_block *b) { return (char *)b + HEADER_SIZE; }

/* n rounded up to a multiple of QKV_ALIGN, or 0 if that overflows MAX_SIZE. */
static size_t round_up(size_t n) {
    if (n > MAX_SIZE) return 0;
    return (n + QKV_ALIGN - 1) & ~(size_t)(QKV_ALIGN - 1);
}

void qkv__arena_init(qkv__arena *a, size_t capacity_hint) {
    a->head = NULL;
    a->next_size = capacity_hint ? round_up(capacity_hint) : DEFAULT_SIZE;
    if (a->next_size == 0) a->next_size = MAX_SIZE;
}

void *qkv__arena_alloc(qkv__arena *a, size_t bytes) {
    size_t need = round_up(bytes ? bytes : 1);
    if (need == 0) return NULL;
    qkv__arena_block *b = a->head;
    if (b && b->cap - b->used >= need) {
        void *p = block_data(b) + b->used;
        b->used += need;
        return p;
    }
    size_t cap = need > a->next_size ? need : a->next_size;
    b = qkv__alloc(HEADER_SIZE + cap); /* cap <= MAX_SIZE: cannot overflow */
    if (!b) return NULL;
    b->next = a->head;
    b->cap = cap;
    b->used = need;
    a->head = b;
    /* geometric growth keeps the number of blocks logarithmic in the total */
    a->next_size = cap <= MAX_SIZE / 2 ? 2 * cap : MAX_SIZE;
    return block_data(b);
}

qkv__arena_pos qkv__arena_mark(const qkv__arena *a) {
    qkv__arena_pos pos = {a->head, a->head ? a->head->used : 0};
    return pos;
}

void qkv__arena_reset(qkv__arena *a, qkv__arena_pos pos) {
    size_t freed = 0;
    while (a->head && a->head != pos.block) {
        qkv__arena_block *b = a->head;
        /* reset to empty with a single block: keep it, that is the steady state */
        if (!pos.block && !b->next && freed == 0) {
            b->used = 0;
            return;
        }
        a->head = b->next;
        freed = freed <= MAX_SIZE - b->cap ? freed + b->cap : MAX_SIZE;
        qkv__free(b);
    }
    if (a->head) a->head->used = pos.used;
    if (freed > a->next_size) a->next_size = freed;
}

void qkv__arena_free(qkv__arena *a) {
    while (a->head) {
        qkv__arena_block *b = a->head;
        a->head = b->next;
        qkv__free(b);
    }
}

size_t qkv__arena_capacity(const qkv__arena *a) {
    size_t total = 0;
    for (const qkv__arena_block *b = a->head; b; b = b->next) total += b->cap;
    return total;
}
