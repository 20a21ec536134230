/* flash_bwd.c — the fused attention backward (FlashAttention-2 recomputation).
 *
 * With the forward's lse and Drow_i = dO_i · O_i (docs/ATTENTION.md), every quantity of a
 * (query tile, key tile) pair is recomputed from q, k, v and dout:
 *   S  = Qs · Kᵀ   (Qs = scale · q)       dot, query-major          [rows, BC]
 *   bias, ALiBi, masks                    qkv__flash_fixup
 *   dP = dO · Vᵀ                          dot                        [rows, BC]
 *   P  = exp(min(S - lse, 0)), dS = P ∘ (dP - Drow)   bwd_ds
 *   (with dropout, Z from the dropout micro-kernel: dS = P ∘ (Z ∘ dP - Drow) and P ∘ Z for dV)
 *   dV_tile += Pᵀ · dO,  dK_tile += dSᵀ · Qs,  dQacc += dS · K      acc (strided P)
 * dK = dSᵀ · (scale q) already carries the scale; dQ = scale · dQacc is scaled once at the end.
 *
 * Ownership (no atomics, no races): a work item is (b, kv head hk, key range s). It owns the
 * dk / dv rows of its keys outright and walks, for each key tile of its range, the query tiles
 * that can see it (qkv__attn_query_range gives the interval; kv_lens cuts the keys first). dQ
 * of the G query heads of hk is accumulated by the item: directly in a per-thread buffer when
 * the keys are not split (n_split = 1: the item owns those dq rows), or in a private partial
 * buffer per item when they are (fewer than FLASH_MIN_BWD_ITEMS (b, hk) pairs), summed in split
 * order by a second pass. Both choices depend only on the problem, so results are
 * bit-identical for any thread count.
 *
 * Packing. An item reads the rows of one head, Hq·D (or Hk·D) floats apart: a 4 KiB stride for
 * 16 heads of 64, so every row is a new page (a TLB miss and no hardware prefetch) and the rows
 * of a tile share a few L1 sets. When it costs at most FLASH_BWD_PACK_BYTES, a first parallel
 * pass therefore packs, for all heads at once (reading rows contiguously), Qs, dO, lse, Drow,
 * K and V head-major, and the items read those; otherwise each item packs its own queries and
 * reads K and V in place (perf, 4 x 1024 x 16 x 64, 1 thread: the per-item gathers were ~13%
 * of the backward).
 *
 * Memory per thread: the item's queries packed (Qs, dO: G·Tq·(D + Dv)) unless packed for all,
 * its lse and Drow, the dq accumulator (G·Tq·D), Kᵀ and Vᵀ of one key tile and two score
 * tiles: linear in T. */
#include "attention/flash.h"
#include "core/alloc.h"
#include "core/error.h"

#include <string.h>

typedef struct bwd_ctx {
    const qkv__attn_problem *pb;
    const qkv_attn_kernels *kr;
    const float *q, *k, *v;  /* [B, Tq, Hq, D], [B, Tk, Hk, D], [B, Tk, Hk, Dv] */
    const float *out, *dout; /* [B, Tq, Hq, Dv] each */
    const float *lse;        /* [B, Hq, Tq] */
    float *dq, *dk, *dv;     /* like q, k, v */
    int64_t bq, rows_max;    /* queries per query tile, bq * G */
    int64_t n_bh, n_kt;      /* B * Hk, key tiles */
    int64_t n_split;         /* key ranges per (b, hk) */
    float *ws;               /* [n_threads, ws_stride] */
    int64_t ws_stride;
    float *part; /* [n_split, n_bh, Tq * G * D] partial dq when n_split > 1 */
    /* Packed for all heads by pack_task, or NULL (see Packing above): rows (b, hk, i, g) of
     * qs [.., D], dop [.., Dv], lse and drow; rows (b, hk, j) of k [.., D] and v [.., Dv]. */
    float *pqs, *pdop, *plse, *pdrow, *pk, *pv;
    int drop;            /* dropout_p > 0 */
    qkv_attn_dropout dr; /* its parameters (when drop) */
} bwd_ctx;

/* Workspace offsets (floats) inside one thread's region. */
typedef struct bwd_ws {
    float *qs;    /* [Tq * G, D]  scale * q of (b, hk), rows (i, g) */
    float *dop;   /* [Tq * G, Dv] dout of (b, hk) */
    float *lse;   /* [Tq * G] */
    float *drow;  /* [Tq * G] dO · O */
    float *dqacc; /* [Tq * G, D] (n_split = 1) */
    float *kt;    /* [D, BC] */
    float *vt;    /* [Dv, BC] */
    float *s;     /* [rows_max, BC] S, then P */
    float *dp;    /* [rows_max, BC] dP, then dS */
    float *dka;   /* [BC, D] */
    float *dva;   /* [BC, Dv] */
    float *z;     /* [rows_max, BC] dropout tile Z */
    float *first; /* [rows_max] uint64 dropout index of each row's key 0 */
} bwd_ws;

/* Lays out one thread's workspace at base (or only measures it when base is NULL); with
 * packed set the item's queries come from the packed arrays and get no room here. */
static int64_t ws_layout(const qkv__attn_problem *pb, int64_t rows_max, int packed, float *base,
                         bwd_ws *w) {
    bwd_ws unused;
    if (!w) w = &unused;
    const int64_t TG = pb->Tq * pb->group, D = pb->D, Dv = pb->Dv, TGq = packed ? 0 : TG;
    int64_t sizes[13] = {TGq * D,
                         TGq * Dv,
                         TGq,
                         TGq,
                         TG * D,
                         D * FLASH_BC,
                         Dv * FLASH_BC,
                         rows_max * FLASH_BC,
                         rows_max * FLASH_BC,
                         FLASH_BC * D,
                         FLASH_BC * Dv,
                         rows_max * FLASH_BC,
                         2 * rows_max};
    float **slots[13] = {&w->qs, &w->dop, &w->lse, &w->drow, &w->dqacc, &w->kt,   &w->vt,
                         &w->s,  &w->dp,  &w->dka, &w->dva,  &w->z,     &w->first};
    int64_t off = 0;
    for (int a = 0; a < 13; a++) {
        *slots[a] = base ? base + off : NULL;
        off += qkv__flash_pad(sizes[a]);
    }
    return off;
}

/* Row (i, g) of Qs, dO, lse, Drow of query i, head h, batch b. */
static void pack_query_row(const bwd_ctx *c, int64_t b, int64_t i, int64_t h, float *qs, float *dop,
                           float *lse, float *drow) {
    const qkv__attn_problem *pb = c->pb;
    const int64_t D = pb->D, Dv = pb->Dv, row = (b * pb->Tq + i) * pb->Hq + h;
    const float scale = (float)pb->scale;
    const float *qr = c->q + row * D;                                 /* [D] */
    const float *dor = c->dout + row * Dv, *orow = c->out + row * Dv; /* [Dv] */
    for (int64_t x = 0; x < D; x++) qs[x] = qr[x] * scale;
    double acc = 0.0;
    for (int64_t x = 0; x < Dv; x++) {
        dop[x] = dor[x];
        acc += (double)dor[x] * (double)orow[x];
    }
    *drow = (float)acc;
    *lse = c->lse[(b * pb->Hq + h) * pb->Tq + i];
}

/* Packs the queries of (b, hk): Qs, dO, lse and Drow, rows (i, g). */
static void pack_queries(const bwd_ctx *c, int64_t b, int64_t hk, const bwd_ws *w) {
    const qkv__attn_problem *pb = c->pb;
    const int64_t G = pb->group, D = pb->D, Dv = pb->Dv;
    for (int64_t i = 0; i < pb->Tq; i++)
        for (int64_t g = 0; g < G; g++) {
            int64_t r = i * G + g;
            pack_query_row(c, b, i, hk * G + g, w->qs + r * D, w->dop + r * Dv, w->lse + r,
                           w->drow + r);
        }
}

/* The packing pass: item t < B * Tq packs query row (b, i) of every head, item
 * B * Tq + (b * Tk + j) key row (b, j) of every kv head (rows in memory order). */
static void pack_task(void *ctx, int64_t begin, int64_t end, int tid) {
    const bwd_ctx *c = ctx;
    const qkv__attn_problem *pb = c->pb;
    const int64_t G = pb->group, D = pb->D, Dv = pb->Dv, Hk = pb->Hk, nq = pb->B * pb->Tq;
    (void)tid;
    for (int64_t t = begin; t < end; t++) {
        if (t < nq) {
            int64_t b = t / pb->Tq, i = t % pb->Tq;
            for (int64_t h = 0; h < pb->Hq; h++) {
                int64_t r = ((b * Hk + h / G) * pb->Tq + i) * G + h % G;
                pack_query_row(c, b, i, h, c->pqs + r * D, c->pdop + r * Dv, c->plse + r,
                               c->pdrow + r);
            }
        } else {
            int64_t bj = t - nq;
            qkv__flash_pack_kv_row(pb, c->k, c->v, bj / pb->Tk, bj % pb->Tk, c->pk, c->pv);
        }
    }
}

/* Key tiles [kt0, kt1) of (b, hk): writes their dk / dv rows, accumulates dq into dqacc
 * [Tq * G, D] (rows (i, g), unscaled). */
static void run_key_tiles(const bwd_ctx *c, int64_t b, int64_t hk, int64_t kt0, int64_t kt1,
                          const bwd_ws *w, float *dqacc) {
    const qkv__attn_problem *pb = c->pb;
    const qkv_attn_kernels *kr = c->kr;
    const int64_t G = pb->group, D = pb->D, Dv = pb->Dv, Hk = pb->Hk;
    const int64_t kv_end = pb->d->kv_lens ? pb->d->kv_lens[b] : pb->Tk;
    for (int64_t kt = kt0; kt < kt1; kt++) {
        int64_t j0 = kt * FLASH_BC, cols = pb->Tk - j0 < FLASH_BC ? pb->Tk - j0 : FLASH_BC;
        const float *kp = c->k + ((b * pb->Tk + j0) * Hk + hk) * D;  /* [cols] rows, ld ldk */
        const float *vp = c->v + ((b * pb->Tk + j0) * Hk + hk) * Dv; /* [cols] rows, ld ldv */
        int64_t ldk = Hk * D, ldv = Hk * Dv;
        if (c->pk) {
            kp = c->pk + ((b * Hk + hk) * pb->Tk + j0) * D;
            vp = c->pv + ((b * Hk + hk) * pb->Tk + j0) * Dv;
            ldk = D, ldv = Dv;
        }
        float *dkp = c->dk + ((b * pb->Tk + j0) * Hk + hk) * D;
        float *dvp = c->dv + ((b * pb->Tk + j0) * Hk + hk) * Dv;
        memset(w->dka, 0, (size_t)(cols * D) * sizeof(float));
        memset(w->dva, 0, (size_t)(cols * Dv) * sizeof(float));
        int64_t qa = 0, qb = 0, lo, hi; /* queries [qa, qb) may see some key of the tile */
        if (j0 < kv_end) {
            int64_t jl = (j0 + cols < kv_end ? j0 + cols : kv_end) - 1;
            qkv__attn_query_range(pb, b, j0, &qa, &hi);
            qkv__attn_query_range(pb, b, jl, &lo, &qb);
        }
        if (qb > qa) {
            qkv__flash_pack_t(kp, ldk, D, cols, 1.0f, w->kt, FLASH_BC);
            qkv__flash_pack_t(vp, ldv, Dv, cols, 1.0f, w->vt, FLASH_BC);
        }
        for (int64_t i0 = qa / c->bq * c->bq; i0 < qb; i0 += c->bq) {
            int64_t i1 = i0 + c->bq < pb->Tq ? i0 + c->bq : pb->Tq, rows = (i1 - i0) * G;
            int cls = qkv__flash_classify(pb, b, i0, i1, j0, j0 + cols);
            if (cls == FLASH_SKIP) continue;
            const float *qr = w->qs + i0 * G * D, *dor = w->dop + i0 * G * Dv;
            kr->dot(rows, cols, D, qr, D, w->kt, FLASH_BC, w->s, FLASH_BC);
            qkv__flash_fixup(pb, b, hk, i0, i1 - i0, j0, cols, cls == FLASH_FULL, w->s, FLASH_BC,
                             1);
            kr->dot(rows, cols, Dv, dor, Dv, w->vt, FLASH_BC, w->dp, FLASH_BC);
            const float *z = NULL;
            if (c->drop) { /* Z of rows (i, g) x keys [j0, j0 + cols) */
                uint64_t *first = (uint64_t *)w->first;
                qkv__flash_dropout_rows(pb, b, hk, i0, i1 - i0, first);
                kr->dropout(rows, cols, first, (uint64_t)j0, &c->dr, w->z, FLASH_BC, 1);
                z = w->z;
            }
            kr->bwd_ds(rows, cols, w->s, w->dp, FLASH_BC, w->lse + i0 * G, w->drow + i0 * G, z);
            kr->acc(cols, Dv, rows, w->s, 1, FLASH_BC, dor, Dv, w->dva, Dv, NULL);
            kr->acc(cols, D, rows, w->dp, 1, FLASH_BC, qr, D, w->dka, D, NULL);
            kr->acc(rows, D, cols, w->dp, FLASH_BC, 1, kp, ldk, dqacc + i0 * G * D, D, NULL);
        }
        for (int64_t cc = 0; cc < cols; cc++) {
            memcpy(dkp + cc * Hk * D, w->dka + cc * D, (size_t)D * sizeof(float));
            memcpy(dvp + cc * Hk * Dv, w->dva + cc * Dv, (size_t)Dv * sizeof(float));
        }
    }
}

/* Writes dq rows of (b, hk) = scale * acc (rows (i, g)). */
static void store_dq(const bwd_ctx *c, int64_t b, int64_t hk, const float *acc) {
    const qkv__attn_problem *pb = c->pb;
    const int64_t G = pb->group, D = pb->D;
    const float scale = (float)pb->scale;
    for (int64_t i = 0; i < pb->Tq; i++) {
        float *dst = c->dq + ((b * pb->Tq + i) * pb->Hq + hk * G) * D; /* [G, D] contiguous */
        const float *src = acc + i * G * D;
        for (int64_t x = 0; x < G * D; x++) dst[x] = src[x] * scale;
    }
}

/* Items t: bh = t % n_bh, split s = t / n_bh. */
static void bwd_task(void *ctx, int64_t begin, int64_t end, int tid) {
    const bwd_ctx *c = ctx;
    const qkv__attn_problem *pb = c->pb;
    bwd_ws w;
    ws_layout(pb, c->rows_max, c->pqs != NULL, c->ws + tid * c->ws_stride, &w);
    const int64_t TG = pb->Tq * pb->group, TGD = TG * pb->D;
    for (int64_t t = begin; t < end; t++) {
        int64_t bh = t % c->n_bh, s = t / c->n_bh, b = bh / pb->Hk, hk = bh % pb->Hk;
        int64_t kt0 = c->n_kt * s / c->n_split, kt1 = c->n_kt * (s + 1) / c->n_split;
        float *acc = c->n_split > 1 ? c->part + (s * c->n_bh + bh) * TGD : w.dqacc;
        memset(acc, 0, (size_t)TGD * sizeof *acc);
        if (c->pqs) { /* rows (b, hk, i, g): this item's are contiguous */
            w.qs = c->pqs + bh * TGD;
            w.dop = c->pdop + bh * TG * pb->Dv;
            w.lse = c->plse + bh * TG;
            w.drow = c->pdrow + bh * TG;
        } else {
            pack_queries(c, b, hk, &w);
        }
        run_key_tiles(c, b, hk, kt0, kt1, &w, acc);
        if (c->n_split == 1) store_dq(c, b, hk, acc);
    }
}

/* Sums the n_split partial dq of (b, hk) = t in split order. */
static void bwd_reduce_task(void *ctx, int64_t begin, int64_t end, int tid) {
    const bwd_ctx *c = ctx;
    const qkv__attn_problem *pb = c->pb;
    const int64_t TGD = pb->Tq * pb->group * pb->D;
    (void)tid;
    for (int64_t bh = begin; bh < end; bh++) {
        float *acc = c->part + bh * TGD; /* split 0 accumulates the others */
        for (int64_t s = 1; s < c->n_split; s++) {
            const float *ps = c->part + (s * c->n_bh + bh) * TGD;
            for (int64_t x = 0; x < TGD; x++) acc[x] += ps[x];
        }
        store_dq(c, bh / pb->Hk, bh % pb->Hk, acc);
    }
}

qkv_status qkv__attention_backward_flash(qkv_runtime *rt, const qkv__attn_problem *pb,
                                         const qkv_attn_kernels *kr, const float *q, const float *k,
                                         const float *v, const float *out, const float *lse,
                                         const float *dout, float *dq, float *dk, float *dv) {
    bwd_ctx c = {.pb = pb,
                 .kr = kr,
                 .q = q,
                 .k = k,
                 .v = v,
                 .out = out,
                 .dout = dout,
                 .lse = lse,
                 .dq = dq,
                 .dk = dk,
                 .dv = dv};
    c.drop = qkv__flash_dropout(pb, &c.dr);
    c.bq = qkv__flash_bq(pb, FLASH_ROWS_BWD);
    c.rows_max = c.bq * pb->group;
    c.n_bh = pb->B * pb->Hk;
    c.n_kt = (pb->Tk + FLASH_BC - 1) / FLASH_BC;
    c.n_split = 1;
    if (c.n_bh < FLASH_MIN_BWD_ITEMS) {
        c.n_split = (FLASH_MIN_BWD_ITEMS + c.n_bh - 1) / c.n_bh;
        if (c.n_split > c.n_kt) c.n_split = c.n_kt;
    }
    /* the packing pass's arrays (Packing above), or none when they would exceed the budget */
    const int64_t nqr = pb->B * pb->Tq * pb->Hq, nkr = pb->B * pb->Tk * pb->Hk;
    size_t pack_floats = (size_t)(nqr * (pb->D + pb->Dv + 2) + nkr * (pb->D + pb->Dv));
    float *pack_mem = NULL;
    int pack_own = 0;
    if (pack_floats * sizeof(float) <= FLASH_BWD_PACK_BYTES && (pb->Hq > 1 || pb->Hk > 1)) {
        c.pqs = qkv__flash_scratch(rt, pack_floats * sizeof(float), &pack_mem, &pack_own);
        if (c.pqs) { /* else: no memory for it, each item packs its own */
            c.pdop = c.pqs + nqr * pb->D;
            c.plse = c.pdop + nqr * pb->Dv;
            c.pdrow = c.plse + nqr;
            c.pk = c.pdrow + nqr;
            c.pv = c.pk + nkr * pb->D;
        }
    }
    c.ws_stride = ws_layout(pb, c.rows_max, c.pqs != NULL, NULL, NULL);
    int n_threads = qkv_runtime_n_threads(rt);
    size_t ws_bytes = (size_t)c.ws_stride * (size_t)n_threads * sizeof(float);
    size_t part_bytes = c.n_split > 1 ? (size_t)(c.n_split * c.n_bh) *
                                            (size_t)(pb->Tq * pb->group * pb->D) * sizeof(float)
                                      : 0;
    c.ws = qkv__alloc(ws_bytes);
    c.part = part_bytes ? qkv__alloc(part_bytes) : NULL;
    if (!c.ws || (part_bytes && !c.part)) {
        qkv__free(c.ws);
        qkv__free(c.part);
        qkv__flash_scratch_done(rt, pack_mem, pack_own);
        return qkv__fail(QKV_ERR_NOMEM,
                         "qkv_attention_backward: cannot allocate %zu bytes of "
                         "flash workspace",
                         ws_bytes + part_bytes);
    }
    double work =
        (double)pb->B * (double)pb->Hq * (double)pb->Tq * (double)pb->Tk * (double)(pb->D + pb->Dv);
    if (c.pqs) {
        int64_t n_pack = pb->B * (pb->Tq + pb->Tk);
        qkv_parallel_for(rt, n_pack, work < 65536.0 ? n_pack : 64, pack_task, &c);
    }
    int64_t n_items = c.n_bh * c.n_split;
    qkv_parallel_for(rt, n_items, work < 65536.0 ? n_items : 1, bwd_task, &c);
    if (c.n_split > 1)
        qkv_parallel_for(rt, c.n_bh, work < 65536.0 ? c.n_bh : 1, bwd_reduce_task, &c);
    qkv__free(c.ws);
    qkv__free(c.part);
    qkv__flash_scratch_done(rt, pack_mem, pack_own);
    return QKV_OK;
}
