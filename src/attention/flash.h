/* flash.h — internal interface of the fused (FlashAttention-2 style) attention: the tile
 * geometry and the tile helpers shared by the forward (flash_fwd.c) and the backward
 * (flash_bwd.c).
 *
 * Tiles. A query tile is bq consecutive queries i0..i1-1 of one (batch b, kv head hk) times
 * the G = Hq / Hk query heads that read hk: rows = (i1 - i0) * G, ordered query-major
 * (row r = (i - i0) * G + g), so the G heads of one query are adjacent as they are in q and
 * out, and one packed K/V tile serves the whole group (GQA / MQA load K and V once per group).
 * A key tile is FLASH_BC consecutive keys, aligned to multiples of FLASH_BC.
 *
 * Orientation. The forward computes a score tile key-major, Sᵀ = K_tile · Qᵀ: the query tile
 * is packed transposed once per task and reused against every key tile, K is read in place
 * (no per-tile transpose), and the online softmax reduces over keys with vertical vector ops
 * (no horizontal reductions). The backward owns a key tile and walks query tiles, so it packs
 * Kᵀ and Vᵀ once per key tile and computes S = Q · Kᵀ query-major.
 *
 * Masks. Every mask bounds j from one side and the bounds are non-decreasing in i
 * (attention.h), so the keys visible to any row of a query tile lie in [lo(i0), hi(i1-1))
 * and the keys visible to every row contain [lo(i1-1), hi(i0)). A key tile outside the first
 * interval is skipped without computing anything; a key tile inside the second needs no
 * per-element mask test; only the tiles in between are masked element by element.
 *
 * Invariants: every implementation sees only validated problems (attention.h); scores of
 * masked keys are -inf in the score tile, never a large negative number; no buffer is
 * Tq x Tk (workspace is O(rows * (D + Dv + FLASH_BC)) per thread, plus, in the backward, one
 * dq accumulator of G * Tq * D floats per thread or per key split). */
#ifndef QKV_ATTENTION_FLASH_H
#define QKV_ATTENTION_FLASH_H

#include "attention/attention.h"
#include "core/alloc.h"
#include "core/runtime.h"
#include "kernels/attn_kernels.h"

#include <math.h>
#include <stdint.h>
#include <string.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

enum {
    FLASH_BC = 64,        /* keys per key tile (a multiple of QKV_ATTN_COL_ALIGN) */
    FLASH_ROWS = 128,     /* forward: target rows (queries x heads of a group) per query tile */
    FLASH_ROWS_BWD = 64,  /* backward: the same (its dq/dk/dv tiles want smaller ones) */
    FLASH_MIN_ITEMS = 16, /* forward: fewer (b, hk, query tile) tasks: split the keys */
    FLASH_FWD_PACK_BYTES =
        16 << 20, /* forward: per-thread budget of the head K/V pack (flash_fwd.c) */
    FLASH_BWD_PACK_BYTES = 256 << 20, /* backward: budget of the packing pass (flash_bwd.c) */
    FLASH_MIN_BWD_ITEMS = 4,          /* backward: fewer (b, hk) pairs: split the keys (each split
                                         costs a private dq buffer of G * Tq * D floats) */
};

/* Classification of a (query tile, key tile) pair. */
enum { FLASH_SKIP = 0, FLASH_PARTIAL = 1, FLASH_FULL = 2 };

/* Queries per query tile for a target of target_rows rows: target_rows / G, at least 1, at
 * most Tq. */
static inline int64_t qkv__flash_bq(const qkv__attn_problem *pb, int64_t target_rows) {
    int64_t bq = target_rows / pb->group;
    if (bq < 1) bq = 1;
    if (bq > pb->Tq) bq = pb->Tq;
    return bq;
}

/* Keys [j0, j1) against queries [i0, i1) of batch b: FLASH_SKIP, _PARTIAL or _FULL. */
static inline int qkv__flash_classify(const qkv__attn_problem *pb, int64_t b, int64_t i0,
                                      int64_t i1, int64_t j0, int64_t j1) {
    int64_t lo0, hi0, lo1, hi1;
    qkv__attn_key_range(pb, b, i0, &lo0, &hi0);
    qkv__attn_key_range(pb, b, i1 - 1, &lo1, &hi1);
    if (j1 <= lo0 || j0 >= hi1) return FLASH_SKIP;
    if (j0 >= lo1 && j1 <= hi0) return FLASH_FULL;
    return FLASH_PARTIAL;
}

/* Adds bias and ALiBi to a score tile of queries [i0, i0 + nq) x the G heads of kv head hk x
 * keys [j0, j0 + cols), then (unless full) sets masked scores to -inf. The score of tile row
 * r = (i - i0) * G + g and key j0 + c is s[r * rs + c * cs]: the forward keeps tiles key-major
 * (rs = 1, cs = ld), the backward query-major (rs = ld, cs = 1); either way the masked scores
 * are written as contiguous runs (per key, or per row). Bias is added before masking so that
 * a +inf bias on a masked key cannot make inf - inf. */
static inline void qkv__flash_fixup(const qkv__attn_problem *pb, int64_t b, int64_t hk, int64_t i0,
                                    int64_t nq, int64_t j0, int64_t cols, int full, float *s,
                                    int64_t rs, int64_t cs) {
    const qkv_attention_desc *d = pb->d;
    const int64_t G = pb->group, off = pb->Tk - pb->Tq, rows = nq * G;
    if (d->bias || d->alibi_slopes)
        for (int64_t ii = 0; ii < nq; ii++)
            for (int64_t g = 0; g < G; g++) {
                int64_t i = i0 + ii, h = hk * G + g;
                float *sr = s + (ii * G + g) * rs; /* element c at sr[c * cs] */
                if (d->bias) {
                    const float *br = d->bias + b * d->bias_stride_b + h * d->bias_stride_h +
                                      i * d->bias_stride_q + j0; /* [cols] */
                    for (int64_t c = 0; c < cols; c++) sr[c * cs] += br[c];
                }
                if (d->alibi_slopes) {
                    float slope = d->alibi_slopes[h];
                    int64_t base = i + off - j0; /* distance of key j0 + c is |base - c| */
                    for (int64_t c = 0; c < cols; c++) {
                        int64_t dist = base - c < 0 ? c - base : base - c;
                        sr[c * cs] -= slope * (float)dist;
                    }
                }
            }
    if (full) return;
    if (rs == 1) { /* key-major: the rows that see key j0 + c are one interval, contiguous */
        for (int64_t c = 0; c < cols; c++) {
            int64_t lo, hi;
            qkv__attn_query_range(pb, b, j0 + c, &lo, &hi);
            int64_t ra = (lo - i0) * G, rb = (hi - i0) * G;
            ra = ra < 0 ? 0 : ra > rows ? rows : ra;
            rb = rb < ra ? ra : rb > rows ? rows : rb;
            float *sc = s + c * cs; /* row r at sc[r] */
            for (int64_t r = 0; r < ra; r++) sc[r] = -INFINITY;
            for (int64_t r = rb; r < rows; r++) sc[r] = -INFINITY;
        }
        return;
    }
    for (int64_t ii = 0; ii < nq; ii++) { /* query-major: the keys of a row are one interval */
        int64_t lo, hi;
        qkv__attn_key_range(pb, b, i0 + ii, &lo, &hi);
        int64_t cl = lo - j0 < 0 ? 0 : lo - j0, ch = hi - j0 > cols ? cols : hi - j0;
        if (cl > cols) cl = cols;
        if (ch < cl) ch = cl;
        for (int64_t g = 0; g < G; g++) {
            float *sr = s + (ii * G + g) * rs; /* element c at sr[c * cs] */
            for (int64_t c = 0; c < cl; c++) sr[c * cs] = -INFINITY;
            for (int64_t c = ch; c < cols; c++) sr[c * cs] = -INFINITY;
        }
    }
}

/* Packs rows [0, cols) of src (row stride ld, width floats each) transposed into
 * kt [width, ldt]: kt[x * ldt + c] = src[c * ld + x] * scale; columns cols..round_up(cols, 16)
 * are zeroed (the dot micro-kernel reads them). */
static inline void qkv__flash_pack_t(const float *src, int64_t ld, int64_t width, int64_t cols,
                                     float scale, float *kt, int64_t ldt) {
    int64_t cpad = (cols + QKV_ATTN_COL_ALIGN - 1) / QKV_ATTN_COL_ALIGN * QKV_ATTN_COL_ALIGN;
    for (int64_t c = 0; c < cols; c++) {
        const float *row = src + c * ld; /* [width] */
        for (int64_t x = 0; x < width; x++) kt[x * ldt + c] = row[x] * scale;
    }
    for (int64_t x = 0; x < width; x++)
        for (int64_t c = cols; c < cpad; c++) kt[x * ldt + c] = 0.0f;
}

#define QKV__FLASH_HUGE_PAGE ((size_t)2 << 20)

/* Room for a repack of bytes: the runtime's scratch block when it is free (kept between calls:
 * core/runtime.h), else a fresh allocation (*own = 1). Returns the first huge-page-aligned
 * address of the block (*block, to give back with qkv__flash_scratch_done), the whole huge
 * pages of its bytes advised to be backed by transparent huge pages (faulting fresh memory in
 * 4 KiB pages cost ~4% of the forward: perf, 4 x 1024 x 16 x 64); NULL when there is no
 * memory. */
static inline float *qkv__flash_scratch(qkv_runtime *rt, size_t bytes, float **block, int *own) {
    const size_t hp = QKV__FLASH_HUGE_PAGE;
    float *mem = qkv__runtime_scratch_acquire(rt, bytes + hp);
    *own = mem == NULL;
    if (!mem) mem = qkv__alloc(bytes + hp);
    *block = mem;
    if (!mem) return NULL;
    uintptr_t p = ((uintptr_t)mem + hp - 1) & ~(uintptr_t)(hp - 1);
#ifdef MADV_HUGEPAGE
    (void)madvise((void *)p, bytes & ~(hp - 1), MADV_HUGEPAGE);
#endif
    return (float *)p;
}

/* Gives back a block of qkv__flash_scratch (NULL is fine). */
static inline void qkv__flash_scratch_done(qkv_runtime *rt, float *block, int own) {
    if (own)
        qkv__free(block);
    else
        qkv__runtime_scratch_release(rt, block);
}

/* Copies k and v row (b, j) of every kv head to the head-major kpack [B, Hk, Tk, D] and
 * vpack [.., Dv] (reading k and v in memory order). */
static inline void qkv__flash_pack_kv_row(const qkv__attn_problem *pb, const float *k,
                                          const float *v, int64_t b, int64_t j, float *kpack,
                                          float *vpack) {
    const int64_t Hk = pb->Hk, D = pb->D, Dv = pb->Dv, bj = b * pb->Tk + j;
    for (int64_t hk = 0; hk < Hk; hk++) {
        int64_t r = (b * Hk + hk) * pb->Tk + j;
        memcpy(kpack + r * D, k + (bj * Hk + hk) * D, (size_t)D * sizeof(float));
        memcpy(vpack + r * Dv, v + (bj * Hk + hk) * Dv, (size_t)Dv * sizeof(float));
    }
}

/* Dropout (dropout_p > 0): the dropout kernel's parameters (kernels/attn_kernels.h) from the
 * problem; returns 0 (and leaves *dr alone) without dropout. */
static inline int qkv__flash_dropout(const qkv__attn_problem *pb, qkv_attn_dropout *dr) {
    const qkv_attention_desc *d = pb->d;
    if (d->dropout_p <= 0.0f) return 0;
    dr->key[0] = (uint32_t)d->dropout_seed;
    dr->key[1] = (uint32_t)(d->dropout_seed >> 32);
    dr->stream[0] = (uint32_t)QKV_ATTN_DROPOUT_STREAM;
    dr->stream[1] = (uint32_t)(QKV_ATTN_DROPOUT_STREAM >> 32);
    dr->p = d->dropout_p;
    dr->keep = (float)pb->keep_scale;
    return 1;
}

/* The dropout index of key 0 of every row r = (i - i0) * G + g of a query tile (b, hk,
 * queries [i0, i0 + nq)): the kernel adds the key (the index is j-contiguous, attention.h). */
static inline void qkv__flash_dropout_rows(const qkv__attn_problem *pb, int64_t b, int64_t hk,
                                           int64_t i0, int64_t nq, uint64_t *first) {
    const int64_t G = pb->group;
    for (int64_t ii = 0; ii < nq; ii++)
        for (int64_t g = 0; g < G; g++)
            first[ii * G + g] = qkv__attn_dropout_index(pb, b, hk * G + g, i0 + ii, 0);
}

/* Floats of one workspace region rounded up to a cache line (16 floats). */
static inline int64_t qkv__flash_pad(int64_t n) { return (n + 15) / 16 * 16; }

qkv_status qkv__attention_forward_flash(qkv_runtime *rt, const qkv__attn_problem *pb,
                                        const qkv_attn_kernels *kr, const float *q, const float *k,
                                        const float *v, float *out, float *lse);
/* The forward on bf16 q, k, v (qkv_attention_forward_bf16): each tile of q, k, v is widened to
 * float by `widen` (exact; the active ISA's convert_bf16_f32) into the same buffers the float
 * forward copies tiles to, and everything else is the float forward's code, so out and lse are
 * bit-identical to qkv__attention_forward_flash on the widened tensors with the same kr. */
qkv_status qkv__attention_forward_flash_bf16(qkv_runtime *rt, const qkv__attn_problem *pb,
                                             const qkv_attn_kernels *kr,
                                             void (*widen)(const uint16_t *, float *, size_t),
                                             const uint16_t *q, const uint16_t *k,
                                             const uint16_t *v, float *out, float *lse);
qkv_status qkv__attention_backward_flash(qkv_runtime *rt, const qkv__attn_problem *pb,
                                         const qkv_attn_kernels *kr, const float *q, const float *k,
                                         const float *v, const float *out, const float *lse,
                                         const float *dout, float *dq, float *dk, float *dv);

#endif
