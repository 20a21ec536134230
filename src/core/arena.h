/* arena.h — bump allocator for scratch memory (activations, packed panels, temporaries).
 *
 * An arena hands out 64-byte aligned pieces of big blocks and frees them all at once: code that
 * needs temporaries takes a mark, allocates, and resets to the mark when done, so steady-state
 * use costs no malloc at all. Blocks come from qkv__alloc (the qkv_set_allocator hook) and are
 * chained, newest first; a full block is never moved, so pointers stay valid until a reset
 * below them. Not thread-safe: use one arena per thread.
 *
 * Usage:
 *     qkv__arena a;
 *     qkv__arena_init(&a, 1 << 20);
 *     qkv__arena_pos m = qkv__arena_mark(&a);
 *     float *tmp = qkv__arena_alloc(&a, n * sizeof(float));   // (n) floats
 *     if (!tmp) return qkv__fail(QKV_ERR_NOMEM, "...");
 *     ...
 *     qkv__arena_reset(&a, m);
 *     qkv__arena_free(&a);
 */
#ifndef QKV_CORE_ARENA_H
#define QKV_CORE_ARENA_H

#include <stddef.h>

typedef struct qkv__arena_block qkv__arena_block;

typedef struct qkv__arena {
    qkv__arena_block *head; /* newest block (allocations bump inside it), or NULL */
    size_t next_size;       /* usable bytes of the next block to allocate */
} qkv__arena;

/* A position in an arena, from qkv__arena_mark. */
typedef struct qkv__arena_pos {
    qkv__arena_block *block;
    size_t used;
} qkv__arena_pos;

/* An empty arena whose first block will hold capacity_hint bytes (0: 64 KiB). Allocates
 * nothing, so it cannot fail. */
void qkv__arena_init(qkv__arena *a, size_t capacity_hint);
/* `bytes` bytes aligned to 64 (QKV_ALIGN), uninitialized; 0 bytes gives a valid pointer. NULL
 * when the size overflows or a new block cannot be allocated; the arena is then unchanged and
 * still usable. */
void *qkv__arena_alloc(qkv__arena *a, size_t bytes);
/* The current position, to reset to later. */
qkv__arena_pos qkv__arena_mark(const qkv__arena *a);
/* Release everything allocated since `pos` was taken; blocks allocated since then are freed.
 * Marks taken after `pos` become invalid. When the whole arena is released and it spilled into
 * several blocks, the next block is made big enough for all of it, so a repeated pattern of use
 * settles into a single block. */
void qkv__arena_reset(qkv__arena *a, qkv__arena_pos pos);
/* Free every block; the arena is empty again and may be reused. */
void qkv__arena_free(qkv__arena *a);
/* Usable bytes held in blocks (for tests and statistics). */
size_t qkv__arena_capacity(const qkv__arena *a);

#endif
