/* flash_fwd.c — the fused attention forward (FlashAttention-2 style) and its decode split.
 *
 * One task is a query tile (batch b, kv head hk, queries [i0, i1), all G heads of the group;
 * flash.h). It packs its queries transposed and pre-scaled once, Qᵀ [D, rows_pad], then walks
 * the key tiles that the masks leave visible:
 *   Sᵀ = K_tile · Qᵀ                     dot micro-kernel, K read in place   [BC, rows_pad]
 *   bias, ALiBi, masks on partial tiles  qkv__flash_fixup
 *   online softmax: m, l, alpha; Sᵀ → Pᵀ softmax micro-kernel (with dropout: Pᵀ∘Zᵀ, Zᵀ from
 *                                        the dropout micro-kernel; l sums the undropped P)
 *   O = alpha ∘ O + P · V_tile           acc micro-kernel, V read in place   [rows, Dv]
 * and at the end writes out = O / l and lse = m + log l (or 0 and -inf for an empty row). O is
 * divided once; it is only rescaled by alpha (fused into the acc kernel's load of O).
 *
 * Decode split: when there are fewer than FLASH_MIN_ITEMS tasks (Tq = 1 or small with few
 * heads), each task's key tiles are split into n_split ranges run as separate work items that
 * leave (O, m, l) partials; a second pass merges them by log-sum-exp:
 *   M = max_s m_s,  w_s = exp(m_s - M),  l = Σ_s w_s l_s,  out = Σ_s w_s O_s / l.
 *
 * bf16 inputs (qkv__attention_forward_flash_bf16): q, k, v are widened exactly to float where
 * the float forward already copies them (the Qᵀ pack, the per-thread head K/V pack, which bf16
 * always takes when it fits, else the K/V tile copy), into the same buffers; the micro-kernels and
 * every other step are shared, so the results are bit-identical to the float forward on the widened
 * tensors. Widening a tile costs 1/rows of the FMAs that use it (rows = 128 in a full tile),
 * where widening inside the micro-kernels would add a shift per broadcast of K in dot.
 *
 * Determinism: the work items, their key ranges and every summation order depend only on the
 * problem, never on the thread count, so results are bit-identical for any thread count, and
 * inside a team (core/runtime.h: every thread of the team makes the call, the loops split over
 * the team, the workspace and partials are the team's shared block) as outside one.
 * Work items are head-major: the query tiles of one (b, kv head) are consecutive, so a
 * thread's contiguous chunk (qkv_parallel_for) reuses that head's K and V (its per-thread
 * head pack, and L2); within a head the query tiles run in zigzag order (0, n-1, 1, n-2, ...),
 * so any run of consecutive tasks, and so each chunk, gets balanced causal work. */
#include "attention/flash.h"
#include "core/alloc.h"
#include "core/error.h"

#include <string.h>

typedef struct fwd_ctx {
    const qkv__attn_problem *pb;
    const qkv_attn_kernels *kr;
    const float *q; /* [B, Tq, Hq, D] */
    const float *k; /* [B, Tk, Hk, D] */
    const float *v; /* [B, Tk, Hk, Dv] */
    /* bf16 inputs (qkv_attention_forward_bf16): q, k, v above are NULL and these hold the same
     * tensors as bf16 bits, widened to float (exactly) by `widen` as tiles are packed */
    const uint16_t *qh, *kh, *vh;
    void (*widen)(const uint16_t *src, float *dst, size_t n);
    float *out;             /* [B, Tq, Hq, Dv] */
    float *lse;             /* [B, Hq, Tq] or NULL */
    int64_t bq, n_qt, n_bh; /* queries per tile, query tiles per (b, hk), B * Hk */
    int64_t rows_pad;       /* round_up(bq * G, 16) */
    int64_t n_split;        /* key ranges per task (1: no split) */
    float *ws;              /* [n_threads, ws_stride] */
    int64_t ws_stride;
    float *part; /* [n_tasks, n_split, part_stride] partials (O, m, l) when n_split > 1 */
    int64_t part_stride;
    /* 1: each thread packs the K and V rows of its current (b, hk) contiguously (bf16:
     * widened) into its workspace once, for all the query tiles of that head it runs (see
     * forward()); 0: per-tile copies (or, float with Hk == 1, in place) */
    int head_pack;
    int drop;            /* dropout_p > 0 */
    qkv_attn_dropout dr; /* its parameters (when drop) */
} fwd_ctx;

/* Task t (of n_bh * n_qt) -> (b, hk, query tile): head-major (the query tiles of one head are
 * consecutive, so a thread's chunk reuses the head's K and V from its cache / its head pack),
 * the query tile index zigzagged within the head. */
static void task_coords(const fwd_ctx *c, int64_t t, int64_t *b, int64_t *hk, int64_t *qt) {
    int64_t bh = t / c->n_qt, u = t % c->n_qt;
    *b = bh / c->pb->Hk;
    *hk = bh % c->pb->Hk;
    *qt = (u & 1) ? c->n_qt - 1 - u / 2 : u / 2;
}

/* Key tiles [*kt0, *kt1) that queries [i0, i1) of batch b may see. */
static void key_tiles(const qkv__attn_problem *pb, int64_t b, int64_t i0, int64_t i1, int64_t *kt0,
                      int64_t *kt1) {
    int64_t lo, hi, lo1, hi1;
    qkv__attn_key_range(pb, b, i0, &lo, &hi);
    qkv__attn_key_range(pb, b, i1 - 1, &lo1, &hi1);
    *kt0 = lo / FLASH_BC;
    *kt1 = hi1 > lo ? (hi1 + FLASH_BC - 1) / FLASH_BC : *kt0;
}

/* Narrows a partial tile, keys [*j0, *j0 + *cols) against queries [i0, i1) of batch b, to
 * what is visible: queries [*ia, i1) are the first that see any of its keys (the bounds of
 * attention.h are monotone in i, so the queries that see the tile form an interval, and only
 * its start is used), and the keys are cut to those that any of them sees. Returns 0 when no query
 * sees any key of the tile. Rows left out are exact: a row that sees no key of a tile keeps its m,
 * l and O unchanged (alpha would be exp(0) = 1, P = 0). */
static int trim_partial(const qkv__attn_problem *pb, int64_t b, int64_t i0, int64_t i1, int64_t *j0,
                        int64_t *cols, int64_t *ia) {
    int64_t lo = 0, hi = 0, lo1, hi1, j1 = *j0 + *cols, i = i0;
    for (; i < i1; i++) {
        qkv__attn_key_range(pb, b, i, &lo, &hi);
        if (hi > *j0 && lo < j1 && lo < hi) break;
    }
    if (i == i1) return 0;
    qkv__attn_key_range(pb, b, i1 - 1, &lo1, &hi1);
    *ia = i;
    int64_t a = lo > *j0 ? lo : *j0, e = hi1 < j1 ? hi1 : j1;
    if (e <= a) return 0;
    *j0 = a;
    *cols = e - a;
    return 1;
}

/* Queries ahead whose rows the Q pack and finish_rows prefetch: the rows of one (b, hk) are
 * Hq·D floats apart (several KiB), past the hardware prefetchers' reach, so without it every
 * row was a cache miss waited for (perf: ~5% of the forward in the Q pack's loads). */
#define FWD_PREFETCH_AHEAD 8

/* Prefetches the cache lines of bytes [p, p + n) (for writing if write). */
static void prefetch_span(const void *p, size_t n, int write) {
    const char *a = p;
    for (size_t o = 0; o < n; o += 64) {
        if (write)
            __builtin_prefetch(a + o, 1);
        else
            __builtin_prefetch(a + o, 0);
    }
}

/* Bytes of the next head's K and V that a task prefetches (to L2) at most: more would push
 * the current head's pack out of L2 (2 MiB per core on the machines measured). */
#define FWD_PREFETCH_KV_BYTES ((size_t)512 << 10)

/* Prefetches (to L2) part `part` of `parts` of n rows of `bytes` bytes, `stride` bytes apart. */
static void prefetch_rows(const char *p, int64_t n, int64_t stride, int64_t bytes, int64_t part,
                          int64_t parts) {
    for (int64_t r = n * part / parts; r < n * (part + 1) / parts; r++)
        for (int64_t o = 0; o < bytes; o += 64) __builtin_prefetch(p + r * stride + o, 0, 2);
}

/* Part `part` of `parts` of the prefetch of task tn's inputs: its q rows and, when it starts a
 * new head (cur_bh is the current task's) whose K and V fwd_task packs, that head's K and V
 * rows. The rows of one (b, hk) are Hq·D (Hk·D) elements apart, beyond the hardware
 * prefetchers, and read once: without this the Q pack and the head pack waited for memory on
 * every row (perf). Spread over the current task's key tiles, so the loads overlap its FMAs. */
static void prefetch_task(const fwd_ctx *c, int64_t tn, int64_t cur_bh, int64_t part,
                          int64_t parts) {
    const qkv__attn_problem *pb = c->pb;
    const int64_t G = pb->group, D = pb->D, Dv = pb->Dv, Hk = pb->Hk;
    const int64_t es = c->qh ? (int64_t)sizeof *c->qh : (int64_t)sizeof *c->q;
    const char *q = c->qh ? (const char *)c->qh : (const char *)c->q;
    const char *k = c->kh ? (const char *)c->kh : (const char *)c->k;
    const char *v = c->vh ? (const char *)c->vh : (const char *)c->v;
    int64_t b, hk, qt;
    task_coords(c, tn, &b, &hk, &qt);
    int64_t i0 = qt * c->bq, i1 = i0 + c->bq < pb->Tq ? i0 + c->bq : pb->Tq;
    prefetch_rows(q + ((b * pb->Tq + i0) * pb->Hq + hk * G) * D * es, i1 - i0, pb->Hq * D * es,
                  G * D * es, part, parts);
    if (!c->head_pack || b * Hk + hk == cur_bh ||
        (size_t)(pb->Tk * (D + Dv) * es) > FWD_PREFETCH_KV_BYTES)
        return;
    int64_t kt0, kt1;
    key_tiles(pb, b, i0, i1, &kt0, &kt1);
    int64_t j1 = kt1 * FLASH_BC < pb->Tk ? kt1 * FLASH_BC : pb->Tk; /* fwd_task packs [0, j1) */
    prefetch_rows(k + (b * pb->Tk * Hk + hk) * D * es, j1, Hk * D * es, D * es, part, parts);
    prefetch_rows(v + (b * pb->Tk * Hk + hk) * Dv * es, j1, Hk * Dv * es, Dv * es, part, parts);
}

/* Floats of run_tiles' workspace: Qᵀ, Sᵀ, alpha, K and V tiles, the dropout tile Zᵀ and the
 * rows' dropout indices (uint64). */
static int64_t run_tiles_floats(const qkv__attn_problem *pb, int64_t rp) {
    return qkv__flash_pad(pb->D * rp) + 2 * qkv__flash_pad(FLASH_BC * rp) + qkv__flash_pad(rp) +
           qkv__flash_pad(FLASH_BC * pb->D) + qkv__flash_pad(FLASH_BC * pb->Dv) +
           qkv__flash_pad(2 * rp);
}

/* Runs key tiles [kt0, kt1) against queries [i0, i1) of (b, hk). ws holds the workspace of
 * this thread; on return O [rows, Dv] is the unnormalized output, m and l [rows_pad] the
 * running max and sum. hkp, hvp: the head's K [Tk, D] and V [Tk, Dv] rows packed contiguously
 * (covering the tiles [kt0, kt1)), or NULL. t_next: the task whose inputs to prefetch, or -1. */
static void run_tiles(const fwd_ctx *c, float *ws, int64_t b, int64_t hk, int64_t i0, int64_t i1,
                      int64_t kt0, int64_t kt1, float *O, float *m, float *l, const float *hkp,
                      const float *hvp, int64_t t_next) {
    const qkv__attn_problem *pb = c->pb;
    const int64_t G = pb->group, D = pb->D, Dv = pb->Dv, Hq = pb->Hq, Hk = pb->Hk;
    const int64_t nq = i1 - i0, rows = nq * G, rp = c->rows_pad;
    float *qt = ws;                                    /* [D, rp] Qᵀ, scaled */
    float *st = qt + qkv__flash_pad(D * rp);           /* [BC, rp] Sᵀ, then Pᵀ */
    float *alpha = st + qkv__flash_pad(FLASH_BC * rp); /* [rp] */
    float *kb = alpha + qkv__flash_pad(rp);            /* [BC, D] K tile */
    float *vb = kb + qkv__flash_pad(FLASH_BC * D);     /* [BC, Dv] V tile */
    float *zt = vb + qkv__flash_pad(FLASH_BC * Dv);    /* [BC, rp] Zᵀ dropout */
    uint64_t *first = (uint64_t *)(zt + qkv__flash_pad(FLASH_BC * rp)); /* [rp] row indices */
    const int64_t qofs = ((b * pb->Tq + i0) * Hq + hk * G) * D;         /* row r at qofs + r * D */
    /* rows (i, g) of q are contiguous for one i (heads adjacent), so the tile is one strided
     * copy with row stride D within a query and Hq * D between queries */
    float scale = (float)pb->scale;
    for (int64_t ii = 0; ii < nq; ii++) {
        if (ii + FWD_PREFETCH_AHEAD < nq) {
            int64_t ofs = qofs + (ii + FWD_PREFETCH_AHEAD) * Hq * D;
            if (c->qh)
                prefetch_span(c->qh + ofs, (size_t)(G * D) * sizeof *c->qh, 0);
            else
                prefetch_span(c->q + ofs, (size_t)(G * D) * sizeof *c->q, 0);
        }
        for (int64_t g = 0; g < G; g++) {
            const float *row = kb; /* [D]: bf16 rows widened into the (still free) K tile */
            if (c->qh)
                c->widen(c->qh + qofs + (ii * Hq + g) * D, kb, (size_t)D);
            else
                row = c->q + qofs + (ii * Hq + g) * D;
            int64_t r = ii * G + g;
            for (int64_t x = 0; x < D; x++) qt[x * rp + r] = row[x] * scale;
        }
    }
    for (int64_t x = 0; x < D; x++)
        for (int64_t r = rows; r < rp; r++) qt[x * rp + r] = 0.0f;
    for (int64_t r = 0; r < rp; r++) {
        m[r] = -INFINITY;
        l[r] = 0.0f;
    }
    memset(O, 0, (size_t)(rows * Dv) * sizeof *O);
    if (c->drop) { /* the padding lanes [rows, rp) of Zᵀ are read by softmax: keep them 0 */
        qkv__flash_dropout_rows(pb, b, hk, i0, nq, first);
        for (int64_t j = 0; j < FLASH_BC; j++)
            for (int64_t r = rows; r < rp; r++) zt[j * rp + r] = 0.0f;
    }

    for (int64_t kt = kt0; kt < kt1; kt++) {
        if (t_next >= 0) prefetch_task(c, t_next, b * Hk + hk, kt - kt0, kt1 - kt0);
        int64_t j0 = kt * FLASH_BC, cols = pb->Tk - j0 < FLASH_BC ? pb->Tk - j0 : FLASH_BC;
        int cls = qkv__flash_classify(pb, b, i0, i1, j0, j0 + cols);
        if (cls == FLASH_SKIP) continue;
        const int64_t kofs = ((b * pb->Tk + j0) * Hk + hk) * D;  /* [cols] rows, ld Hk*D */
        const int64_t vofs = ((b * pb->Tk + j0) * Hk + hk) * Dv; /* [cols] rows, ld Hk*Dv */
        const float *kp = kb, *vp = vb;
        int64_t ldk = D, ldv = Dv;
        if (hkp) { /* contiguous rows of this head, packed once for its query tiles */
            kp = hkp + j0 * D;
            vp = hvp + j0 * Dv;
        } else if (c->kh) { /* bf16: the tile's rows widened to float, contiguous */
            for (int64_t j = 0; j < cols; j++) {
                c->widen(c->kh + kofs + j * Hk * D, kb + j * D, (size_t)D);
                c->widen(c->vh + vofs + j * Hk * Dv, vb + j * Dv, (size_t)Dv);
            }
        } else if (Hk > 1) {
            /* Rows Hk*D floats apart (often a multiple of 4 KiB) alias in the L1 sets and
             * thrash it inside the micro-kernels: copy the tile's rows contiguously first. */
            for (int64_t j = 0; j < cols; j++) {
                memcpy(kb + j * D, c->k + kofs + j * Hk * D, (size_t)D * sizeof(float));
                memcpy(vb + j * Dv, c->v + vofs + j * Hk * Dv, (size_t)Dv * sizeof(float));
            }
        } else { /* one kv head: its rows are contiguous in place */
            kp = c->k + kofs, vp = c->v + vofs;
        }
        int64_t ra = 0; /* rows [0, ra) see no key of this tile: left out */
        if (cls == FLASH_PARTIAL) {
            int64_t ka, jt = j0; /* jt: the tile's first key before trimming */
            if (!trim_partial(pb, b, i0, i1, &j0, &cols, &ka)) continue;
            kp += (j0 - jt) * ldk;
            vp += (j0 - jt) * ldv;
            ra = (ka - i0) * G / 16 * 16;
        }
        int64_t fq = ra / G; /* first query of row ra; the fix-up starts there */
        c->kr->dot(cols, rows - ra, D, kp, ldk, qt + ra, rp, st + ra, rp);
        qkv__flash_fixup(pb, b, hk, i0 + fq, nq - fq, j0, cols, cls == FLASH_FULL, st + fq * G, 1,
                         rp);
        if (c->drop) /* P∘Z: the mask of rows [ra, rows) x keys [j0, j0 + cols) */
            c->kr->dropout(rows - ra, cols, first + ra, (uint64_t)j0, &c->dr, zt + ra, 1, rp);
        c->kr->softmax(rows - ra, cols, st + ra, rp, m + ra, l + ra, alpha + ra,
                       c->drop ? zt + ra : NULL);
        c->kr->acc(rows - ra, Dv, cols, st + ra, 1, rp, vp, ldv, O + ra * Dv, Dv, alpha + ra);
    }
}

/* Writes out and lse of rows (i, g) of a query tile from O, m, l. */
static void finish_rows(const fwd_ctx *c, int64_t b, int64_t hk, int64_t i0, int64_t nq,
                        const float *O, const float *m, const float *l) {
    const qkv__attn_problem *pb = c->pb;
    const int64_t G = pb->group, Dv = pb->Dv;
    for (int64_t ii = 0; ii < nq; ii++) {
        if (ii + FWD_PREFETCH_AHEAD < nq) /* heads hk*G .. of the query, contiguous */
            prefetch_span(c->out +
                              ((b * pb->Tq + i0 + ii + FWD_PREFETCH_AHEAD) * pb->Hq + hk * G) * Dv,
                          (size_t)(G * Dv) * sizeof *c->out, 1);
        for (int64_t g = 0; g < G; g++) {
            int64_t r = ii * G + g, i = i0 + ii, h = hk * G + g;
            float *o = c->out + ((b * pb->Tq + i) * pb->Hq + h) * Dv; /* [Dv] */
            const float *src = O + r * Dv;                            /* [Dv] */
            if (l[r] > 0.0f) {
                float inv = 1.0f / l[r];
                for (int64_t x = 0; x < Dv; x++) o[x] = src[x] * inv;
            } else {
                memset(o, 0, (size_t)Dv * sizeof *o);
            }
            if (c->lse)
                c->lse[(b * pb->Hq + h) * pb->Tq + i] = l[r] > 0.0f ? m[r] + logf(l[r]) : -INFINITY;
        }
    }
}

/* Copies key rows [j0, j1) of kv head hk of batch b contiguously into hkp [Tk, D] and
 * hvp [Tk, Dv] (bf16: widened, exactly). */
static void pack_head_rows(const fwd_ctx *c, int64_t b, int64_t hk, int64_t j0, int64_t j1,
                           float *hkp, float *hvp) {
    const qkv__attn_problem *pb = c->pb;
    const int64_t Hk = pb->Hk, D = pb->D, Dv = pb->Dv;
    for (int64_t j = j0; j < j1; j++) {
        int64_t row = (b * pb->Tk + j) * Hk + hk; /* row of k and v */
        if (c->kh) {
            c->widen(c->kh + row * D, hkp + j * D, (size_t)D);
            c->widen(c->vh + row * Dv, hvp + j * Dv, (size_t)Dv);
        } else {
            memcpy(hkp + j * D, c->k + row * D, (size_t)D * sizeof(float));
            memcpy(hvp + j * Dv, c->v + row * Dv, (size_t)Dv * sizeof(float));
        }
    }
}

/* Floats of fwd_task's head pack (0 without it). */
static int64_t head_pack_floats(const fwd_ctx *c) {
    return c->head_pack
               ? qkv__flash_pad(c->pb->Tk * c->pb->D) + qkv__flash_pad(c->pb->Tk * c->pb->Dv)
               : 0;
}

/* Per-thread workspace after the run_tiles region: O [rows_pad, Dv], m, l [rows_pad], then the
 * head pack (when c->head_pack): K [Tk, D] and V [Tk, Dv] of the head last packed, whose key
 * rows [0, packed) are valid (a thread's tasks of one head are consecutive: task_coords). */
static void fwd_task(void *ctx, int64_t begin, int64_t end, int tid) {
    const fwd_ctx *c = ctx;
    const qkv__attn_problem *pb = c->pb;
    float *ws = c->ws + tid * c->ws_stride;
    float *O = ws + run_tiles_floats(pb, c->rows_pad);   /* [rows_pad, Dv] */
    float *m = O + qkv__flash_pad(c->rows_pad * pb->Dv); /* [rows_pad] */
    float *l = m + qkv__flash_pad(c->rows_pad);          /* [rows_pad] */
    float *hkp = NULL, *hvp = NULL;
    if (c->head_pack) {
        hkp = l + qkv__flash_pad(c->rows_pad);      /* [Tk, D] */
        hvp = hkp + qkv__flash_pad(pb->Tk * pb->D); /* [Tk, Dv] */
    }
    int64_t packed_bh = -1, packed = 0;
    for (int64_t t = begin; t < end; t++) {
        int64_t b, hk, qt, kt0, kt1;
        task_coords(c, t, &b, &hk, &qt);
        int64_t i0 = qt * c->bq, i1 = i0 + c->bq < pb->Tq ? i0 + c->bq : pb->Tq;
        key_tiles(pb, b, i0, i1, &kt0, &kt1);
        if (hkp) { /* extend the pack to the keys this tile reads */
            int64_t bh = b * pb->Hk + hk, j1 = kt1 * FLASH_BC < pb->Tk ? kt1 * FLASH_BC : pb->Tk;
            if (bh != packed_bh) packed_bh = bh, packed = 0;
            if (packed < j1) pack_head_rows(c, b, hk, packed, j1, hkp, hvp), packed = j1;
        }
        run_tiles(c, ws, b, hk, i0, i1, kt0, kt1, O, m, l, hkp, hvp, t + 1 < end ? t + 1 : -1);
        finish_rows(c, b, hk, i0, i1 - i0, O, m, l);
    }
}

/* Split work item t = task * n_split + s: key range s of the task; partials to c->part. */
static void fwd_split_task(void *ctx, int64_t begin, int64_t end, int tid) {
    const fwd_ctx *c = ctx;
    const qkv__attn_problem *pb = c->pb;
    float *ws = c->ws + tid * c->ws_stride;
    for (int64_t t = begin; t < end; t++) {
        int64_t task = t / c->n_split, s = t % c->n_split, b, hk, qt, kt0, kt1;
        task_coords(c, task, &b, &hk, &qt);
        int64_t i0 = qt * c->bq, i1 = i0 + c->bq < pb->Tq ? i0 + c->bq : pb->Tq;
        key_tiles(pb, b, i0, i1, &kt0, &kt1);
        int64_t n = kt1 - kt0, a = kt0 + n * s / c->n_split, e = kt0 + n * (s + 1) / c->n_split;
        float *O = c->part + t * c->part_stride;             /* [rows_pad, Dv] */
        float *m = O + qkv__flash_pad(c->rows_pad * pb->Dv); /* [rows_pad] */
        float *l = m + qkv__flash_pad(c->rows_pad);          /* [rows_pad] */
        run_tiles(c, ws, b, hk, i0, i1, a, e, O, m, l, NULL, NULL, -1);
    }
}

/* Merges the n_split partials of each task (in split order) and writes out and lse. */
static void fwd_merge_task(void *ctx, int64_t begin, int64_t end, int tid) {
    const fwd_ctx *c = ctx;
    const qkv__attn_problem *pb = c->pb;
    const int64_t Dv = pb->Dv, rp = c->rows_pad, ns = c->n_split;
    float *ws = c->ws + tid * c->ws_stride;
    float *O = ws;                          /* [rows_pad, Dv] merged output */
    float *m = O + qkv__flash_pad(rp * Dv); /* [rows_pad] */
    float *l = m + qkv__flash_pad(rp);      /* [rows_pad] */
    for (int64_t task = begin; task < end; task++) {
        int64_t b, hk, qt;
        task_coords(c, task, &b, &hk, &qt);
        int64_t i0 = qt * c->bq, i1 = i0 + c->bq < pb->Tq ? i0 + c->bq : pb->Tq;
        int64_t rows = (i1 - i0) * pb->group;
        const float *part = c->part + task * ns * c->part_stride;
        for (int64_t r = 0; r < rows; r++) {
            float M = -INFINITY, L = 0.0f;
            for (int64_t s = 0; s < ns; s++) {
                float ms = part[s * c->part_stride + qkv__flash_pad(rp * Dv) + r];
                M = ms > M ? ms : M;
            }
            float *o = O + r * Dv; /* [Dv] */
            memset(o, 0, (size_t)Dv * sizeof *o);
            for (int64_t s = 0; s < ns && M > -INFINITY; s++) {
                const float *ps = part + s * c->part_stride;
                float ms = ps[qkv__flash_pad(rp * Dv) + r];
                float ls = ps[qkv__flash_pad(rp * Dv) + qkv__flash_pad(rp) + r];
                if (ls == 0.0f) continue;
                float w = expf(ms - M);
                L += w * ls;
                for (int64_t x = 0; x < Dv; x++) o[x] += w * ps[r * Dv + x];
            }
            m[r] = M;
            l[r] = L;
        }
        finish_rows(c, b, hk, i0, i1 - i0, O, m, l);
    }
}

/* The forward of c's inputs (float or bf16) into c->out, c->lse. */
static qkv_status forward(qkv_runtime *rt, fwd_ctx c) {
    const qkv__attn_problem *pb = c.pb;
    c.drop = qkv__flash_dropout(pb, &c.dr);
    c.bq = qkv__flash_bq(pb, FLASH_ROWS);
    c.n_qt = (pb->Tq + c.bq - 1) / c.bq;
    c.n_bh = pb->B * pb->Hk;
    c.rows_pad = qkv__flash_pad(c.bq * pb->group);
    int64_t n_tasks = c.n_bh * c.n_qt, n_kt = (pb->Tk + FLASH_BC - 1) / FLASH_BC;
    c.n_split = 1;
    if (n_tasks < FLASH_MIN_ITEMS) {
        c.n_split = (FLASH_MIN_ITEMS + n_tasks - 1) / n_tasks;
        if (c.n_split > n_kt) c.n_split = n_kt;
    }
    const int64_t rp = c.rows_pad, D = pb->D, Dv = pb->Dv;
    /* With Hk > 1 the rows of one head are Hk·D floats apart, which alias in the L1 sets and
     * thrash it inside the micro-kernels, so key tiles are read from contiguous copies (bf16:
     * widened copies). Each thread copies its current head's K and V once, for all the query
     * tiles of that head it runs (they are consecutive: task_coords), when that takes at most
     * FLASH_FWD_PACK_BYTES per thread; else (or in the decode split) per tile. Head-major tasks
     * also keep the head's K and V in L2 across its query tiles (measured: query-tile-major
     * order re-read them from memory for every query tile). */
    c.head_pack = c.n_split == 1 && (pb->Hk > 1 || c.kh) &&
                  (size_t)pb->Tk * (size_t)(D + Dv) * sizeof(float) <= FLASH_FWD_PACK_BYTES;
    c.part_stride = qkv__flash_pad(rp * Dv) + 2 * qkv__flash_pad(rp);
    int n_threads = qkv_runtime_n_threads(rt);
    size_t part_bytes =
        c.n_split > 1 ? (size_t)(n_tasks * c.n_split * c.part_stride) * sizeof(float) : 0;
    float *ws_block = NULL;
    int ws_own = 0;
    size_t ws_bytes;
    /* Inside a team (core/runtime.h) every thread of the team runs this call and the loops below
     * split over the team: the workspace rows and the partials, which the merge reads across
     * threads, are the team's one shared block. */
    const int team = qkv__team_active();
    for (;;) { /* without memory for the head pack, retry with per-tile copies */
        /* run_tiles region + O + m + l (also covers the merge's O, m, l) + head pack */
        c.ws_stride = run_tiles_floats(pb, rp) + qkv__flash_pad(rp * Dv) + 2 * qkv__flash_pad(rp) +
                      head_pack_floats(&c);
        ws_bytes = (size_t)c.ws_stride * (size_t)n_threads * sizeof(float);
        if (team) {
            c.ws = qkv__team_shared(ws_bytes + part_bytes); /* ws_bytes: a multiple of 64 */
            c.part = c.ws && part_bytes ? c.ws + ws_bytes / sizeof(float) : NULL;
        } else {
            c.ws = qkv__flash_scratch(rt, ws_bytes, &ws_block, &ws_own);
        }
        if (c.ws || !c.head_pack) break;
        c.head_pack = 0;
    }
    if (!team) c.part = part_bytes ? qkv__alloc(part_bytes) : NULL;
    if (!c.ws || (part_bytes && !c.part)) {
        qkv__flash_scratch_done(rt, ws_block, ws_own);
        if (!team) qkv__free(c.part);
        return qkv__fail(QKV_ERR_NOMEM,
                         "qkv_attention_forward: cannot allocate %zu bytes of "
                         "flash workspace",
                         ws_bytes + part_bytes);
    }
    /* small problems stay on the calling thread */
    double work =
        (double)pb->B * (double)pb->Hq * (double)pb->Tq * (double)pb->Tk * (double)(D + Dv);
    if (c.n_split == 1) {
        qkv_parallel_for(rt, n_tasks, work < 65536.0 ? n_tasks : 1, fwd_task, &c);
    } else {
        int64_t n_items = n_tasks * c.n_split;
        qkv_parallel_for(rt, n_items, work < 65536.0 ? n_items : 1, fwd_split_task, &c);
        qkv_parallel_for(rt, n_tasks, work < 65536.0 ? n_tasks : 1, fwd_merge_task, &c);
    }
    qkv__flash_scratch_done(rt, ws_block, ws_own);
    if (!team) qkv__free(c.part);
    return QKV_OK;
}

qkv_status qkv__attention_forward_flash(qkv_runtime *rt, const qkv__attn_problem *pb,
                                        const qkv_attn_kernels *kr, const float *q, const float *k,
                                        const float *v, float *out, float *lse) {
    fwd_ctx c = {.pb = pb, .kr = kr, .q = q, .k = k, .v = v, .out = out, .lse = lse};
    return forward(rt, c);
}

qkv_status qkv__attention_forward_flash_bf16(qkv_runtime *rt, const qkv__attn_problem *pb,
                                             const qkv_attn_kernels *kr,
                                             void (*widen)(const uint16_t *, float *, size_t),
                                             const uint16_t *q, const uint16_t *k,
                                             const uint16_t *v, float *out, float *lse) {
    fwd_ctx c = {
        .pb = pb, .kr = kr, .qh = q, .kh = k, .vh = v, .widen = widen, .out = out, .lse = lse};
    return forward(rt, c);
}
