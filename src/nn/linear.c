/* linear.c — the dense layer on the packed GEMM (kernels/gemm.h).
 *
 * Forward: one GEMM, with bias, activation and residual fused in its epilogue; prepacked
 * weights (inference: FP32, bf16 through kernels/gemm_bf16.h, int8 through kernels/gemm_i8.h) or
 * the weight read where it lies (training, where it changes every step). Backward: dinp += dout ·
 * op(w)ᵀ and dw += the weight's gradient are GEMMs with beta = 1 (so they accumulate, as every
 * backward here); db is a column sum over fixed blocks of 256 rows, each block's partial row summed
 * by one thread reading its rows in order, the partials then added in block order (thread-count
 * independent).
 *
 * A LoRA adapter is four more small GEMMs: h = drop(x) · aᵀ (N, r) into scratch, then its
 * term scale · h · bᵀ written into out with beta = 0 BEFORE the base GEMM, which adds x · op(w)
 * with beta = 1 and runs the epilogue (bias, activation, residual) over the sum, so the fused
 * epilogue sees the adapter's term as PEFT places it (before the activation). With
 * residual == out (no activation) both simply accumulate. The backward recomputes h instead of
 * saving it (r is small); the dropout mask is qkv_nn_dropout_forward's, regenerated. */
#include "core/alloc.h"
#include "nn/nn.h"
#include "nn/nn_internal.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

static qkv_status check(const char *fn, const qkv_nn_linear *L, int64_t N) {
    NN_NONNULL(fn, L);
    NN_POSITIVE(fn, L->C);
    NN_POSITIVE(fn, L->OC);
    NN_POSITIVE(fn, N);
    int64_t n;
    NN_NUMEL2(fn, "N*C", N, L->C, n);
    NN_NUMEL2(fn, "N*OC", N, L->OC, n);
    NN_NUMEL2(fn, "C*OC", L->C, L->OC, n);
    (void)n;
    const int64_t dense = L->in_out ? L->OC : L->C;
    NN_REQUIRE(L->ldw == 0 || L->ldw >= dense, "%s: L->ldw = %lld is below the row length %lld", fn,
               (long long)L->ldw, (long long)dense);
    if (L->packed)
        NN_REQUIRE(qkv__gemm_packed_k(L->packed) == L->C && qkv__gemm_packed_n(L->packed) == L->OC,
                   "%s: L->packed is (%lld, %lld), the layer (C %lld, OC %lld)", fn,
                   (long long)qkv__gemm_packed_k(L->packed),
                   (long long)qkv__gemm_packed_n(L->packed), (long long)L->C, (long long)L->OC);
    if (L->packed_bf16) {
        NN_REQUIRE(!L->packed, "%s: L->packed and L->packed_bf16 are both set", fn);
        NN_REQUIRE(qkv__gemm_bf16_packed_k(L->packed_bf16) == L->C &&
                       qkv__gemm_bf16_packed_n(L->packed_bf16) == L->OC,
                   "%s: L->packed_bf16 is (%lld, %lld), the layer (C %lld, OC %lld)", fn,
                   (long long)qkv__gemm_bf16_packed_k(L->packed_bf16),
                   (long long)qkv__gemm_bf16_packed_n(L->packed_bf16), (long long)L->C,
                   (long long)L->OC);
    }
    if (L->packed_i8) {
        NN_REQUIRE(!L->packed && !L->packed_bf16, "%s: L->packed_i8 is set with another packing",
                   fn);
        NN_REQUIRE(qkv__gemm_i8_packed_k(L->packed_i8) == L->C &&
                       qkv__gemm_i8_packed_n(L->packed_i8) == L->OC,
                   "%s: L->packed_i8 is (%lld, %lld), the layer (C %lld, OC %lld)", fn,
                   (long long)qkv__gemm_i8_packed_k(L->packed_i8),
                   (long long)qkv__gemm_i8_packed_n(L->packed_i8), (long long)L->C,
                   (long long)L->OC);
    }
    if (L->lora) QKV_TRY(qkv__nn_lora_check(fn, L->lora, N, L->C, L->OC));
    return QKV_OK;
}

static int64_t ldw_of(const qkv_nn_linear *L) {
    return L->ldw ? L->ldw : (L->in_out ? L->OC : L->C);
}

/* The adapter's scratch, one allocation: xd (N, C) the dropped input (or, in the backward,
 * the dropped input's gradient), h and dh (N, r). */
typedef struct {
    float *buf, *xd, *h, *dh;
} lora_scratch;

static qkv_status scratch_alloc(const char *fn, lora_scratch *s, int64_t N, int64_t C, int64_t r,
                                int xd, int h, int dh) {
    /* each count is <= NN_MAX_NUMEL (checked), so the float total fits in size_t */
    const size_t nc = xd ? (size_t)(N * C) : 0, nr = (size_t)(N * r);
    const size_t total = nc + (h ? nr : 0) + (dh ? nr : 0);
    *s = (lora_scratch){0};
    if (!total) return QKV_OK;
    s->buf = qkv__alloc(total * sizeof(float));
    if (!s->buf)
        return qkv__fail(QKV_ERR_NOMEM, "%s: out of memory (LoRA scratch of %zu floats)", fn,
                         total);
    float *p = s->buf;
    if (xd) s->xd = p, p += nc;
    if (h) s->h = p, p += nr;
    if (dh) s->dh = p;
    return QKV_OK;
}

/* h (N, r) = drop(inp) · aᵀ; the dropped input goes to xd (when the dropout is on), else inp
 * is read as it is. *dropped is what was multiplied. */
static qkv_status lora_h(qkv_runtime *rt, const qkv_nn_lora *A, const float *inp, int64_t N,
                         int64_t C, float *xd, float *h, const float **dropped) {
    *dropped = inp;
    if (A->dropout > 0.0f) {
        QKV_TRY(qkv_nn_dropout_forward(rt, xd, inp, N * C, A->dropout, A->seed, A->stream));
        *dropped = xd;
    }
    if (!h) return QKV_OK;
    return qkv__gemm_f32(rt, 0, 1, N, A->r, C, 1.0f, *dropped, C, A->a, C, 0.0f, h, A->r, NULL);
}

/* [p, p + n) and [q, q + n) (floats) share memory. */
static int overlaps(const float *p, const float *q, int64_t n) {
    const uintptr_t a = (uintptr_t)p, b = (uintptr_t)q, len = (uintptr_t)n * sizeof(float);
    return a < b + len && b < a + len;
}

static qkv_status linear_forward(const char *fn, qkv_runtime *rt, const qkv_nn_linear *L,
                                 float *out, float *pre, const float *inp, int64_t N, qkv_act act,
                                 const float *residual) {
    QKV_TRY(check(fn, L, N));
    NN_NONNULL(fn, out);
    NN_NONNULL(fn, inp);
    NN_REQUIRE(L->packed || L->packed_bf16 || L->packed_i8 || L->w,
               "%s: L->w and every L->packed* are NULL", fn);
    float beta = 0.0f;
    if (residual == out) {
        NN_REQUIRE(act == QKV_ACT_NONE, "%s: residual == out needs act QKV_ACT_NONE", fn);
        residual = NULL;
        beta = 1.0f;
    }
    const qkv_nn_lora *A = L->lora;
    /* the adapter's term is written into out before the base GEMM reads the residual */
    NN_REQUIRE(!A || !residual || !overlaps(out, residual, N * L->OC),
               "%s: residual overlaps out (allowed with L->lora only as residual == out)", fn);
    lora_scratch s = {0};
    if (A) {
        QKV_TRY(scratch_alloc(fn, &s, N, L->C, A->r, A->dropout > 0.0f, 1, 0));
        const float *xd;
        qkv_status st = lora_h(rt, A, inp, N, L->C, s.xd, s.h, &xd);
        /* out = scale · h · bᵀ (beta 0), or out += it (residual == out) */
        if (st == QKV_OK)
            st = qkv__gemm_f32(rt, 0, 1, N, L->OC, A->r, A->scale, s.h, A->r, A->b, A->r, beta, out,
                               L->OC, NULL);
        qkv__free(s.buf);
        QKV_TRY(st);
        beta = 1.0f; /* the base product adds to it */
    }
    qkv_gemm_epilogue e = {L->b, act, residual, L->OC, NULL, 0, pre, L->OC};
    const qkv_gemm_epilogue *ep = L->b || act != QKV_ACT_NONE || residual ? &e : NULL;
    if (L->packed)
        return qkv__gemm_f32_packed(rt, 0, N, inp, L->C, L->packed, 1.0f, beta, out, L->OC, ep);
    if (L->packed_bf16)
        return qkv__gemm_bf16(rt, N, inp, L->C, L->packed_bf16, beta, out, L->OC, ep);
    if (L->packed_i8) return qkv__gemm_i8(rt, N, inp, L->C, L->packed_i8, beta, out, L->OC, ep);
    return qkv__gemm_f32(rt, 0, !L->in_out, N, L->OC, L->C, 1.0f, inp, L->C, L->w, ldw_of(L), beta,
                         out, L->OC, ep);
}

qkv_status qkv_nn_linear_forward(qkv_runtime *rt, const qkv_nn_linear *L, float *out,
                                 const float *inp, int64_t N, qkv_act act, const float *residual) {
    return linear_forward("qkv_nn_linear_forward", rt, L, out, NULL, inp, N, act, residual);
}

qkv_status qkv_nn_linear_forward_pre(qkv_runtime *rt, const qkv_nn_linear *L, float *out,
                                     float *pre, const float *inp, int64_t N, qkv_act act) {
    static const char fn[] = "qkv_nn_linear_forward_pre";
    NN_NONNULL(fn, pre);
    NN_REQUIRE(act == QKV_ACT_GELU_ERF || act == QKV_ACT_GELU_TANH || act == QKV_ACT_RELU ||
                   act == QKV_ACT_SILU || act == QKV_ACT_TANH,
               "%s: act = %d is not a qkv_act activation", fn, (int)act);
    QKV_TRY(check(fn, L, N));
    NN_NONNULL(fn, inp);
    const uintptr_t p0 = (uintptr_t)pre, p1 = (uintptr_t)(pre + N * L->OC);
    const uintptr_t i0 = (uintptr_t)inp, i1 = (uintptr_t)(inp + N * L->C);
    NN_REQUIRE(!(p0 < i1 && i0 < p1) && (!out || !overlaps(pre, out, N * L->OC)),
               "%s: pre overlaps out or inp", fn);
    return linear_forward(fn, rt, L, out, pre, inp, N, act, NULL);
}

typedef struct {
    const float *dout;
    float *db, *part;
    int64_t N, OC, nblk;
} colsum_ctx;

#define COLSUM_RB 256 /* rows per block: the partial sums of a block are one (OC) row */

/* part[blk] = Σ over the block's rows of dout, rows in order, read as they lie in memory
 * (a stream per block, instead of one strided pass over all N rows per column strip). */
static void colsum_blocks(void *p, int64_t b0, int64_t b1, int tid) {
    const colsum_ctx *c = p;
    (void)tid;
    const int64_t OC = c->OC;
    for (int64_t b = b0; b < b1; b++) {
        const int64_t r0 = b * COLSUM_RB, r1 = r0 + COLSUM_RB < c->N ? r0 + COLSUM_RB : c->N;
        float *acc = c->part + b * OC;
        memcpy(acc, c->dout + r0 * OC, (size_t)OC * sizeof(float));
        for (int64_t n = r0 + 1; n < r1; n++) {
            const float *row = c->dout + n * OC;
            for (int64_t j = 0; j < OC; j++) acc[j] += row[j];
        }
    }
}

/* db[j] += Σ_blk part[blk][j], blocks in order. */
static void colsum_reduce(void *p, int64_t j0, int64_t j1, int tid) {
    const colsum_ctx *c = p;
    (void)tid;
    for (int64_t j = j0; j < j1; j++) {
        float s = c->part[j];
        for (int64_t b = 1; b < c->nblk; b++) s += c->part[b * c->OC + j];
        c->db[j] += s;
    }
}

/* db (OC) += Σ_n dout[n] over fixed blocks of COLSUM_RB rows (any thread count gives the same
 * bits); one block (N <= COLSUM_RB) is summed straight into a scratch row. */
static qkv_status colsum(qkv_runtime *rt, const char *fn, float *db, const float *dout, int64_t N,
                         int64_t OC) {
    colsum_ctx c = {dout, db, NULL, N, OC, (N + COLSUM_RB - 1) / COLSUM_RB};
    c.part = qkv__alloc((size_t)(c.nblk * OC) * sizeof(float));
    if (!c.part)
        return qkv__fail(QKV_ERR_NOMEM, "%s: out of memory (bias-gradient scratch of %lld floats)",
                         fn, (long long)(c.nblk * OC));
    qkv_parallel_for(rt, c.nblk, 1, colsum_blocks, &c);
    qkv_parallel_for(rt, OC, 64, colsum_reduce, &c);
    qkv__free(c.part);
    return QKV_OK;
}

/* The adapter's gradients (qkv_nn_linear_backward's formulas): gb from h = drop(x) · aᵀ, ga
 * and dinp from dh = dout · b. */
static qkv_status lora_backward(qkv_runtime *rt, const char *fn, const qkv_nn_linear *L,
                                float *dinp, const float *dout, const float *inp, int64_t N) {
    const qkv_nn_lora *A = L->lora;
    const int64_t C = L->C, OC = L->OC, r = A->r;
    const int drop = A->dropout > 0.0f;
    lora_scratch s;
    QKV_TRY(scratch_alloc(fn, &s, N, C, r, drop, A->gb != NULL, A->ga || dinp));
    const float *xd = inp;
    qkv_status st = QKV_OK;
    if (A->ga || A->gb) st = lora_h(rt, A, inp, N, C, s.xd, s.h, &xd);
    if (st == QKV_OK && A->gb) /* gb (OC, r) += scale · doutᵀ · h */
        st = qkv__gemm_f32(rt, 1, 0, OC, r, N, A->scale, dout, OC, s.h, r, 1.0f, A->gb, r, NULL);
    if (st == QKV_OK && s.dh) /* dh (N, r) = dout · b */
        st = qkv__gemm_f32(rt, 0, 0, N, r, OC, 1.0f, dout, OC, A->b, r, 0.0f, s.dh, r, NULL);
    if (st == QKV_OK && A->ga) /* ga (r, C) += scale · dhᵀ · drop(x) */
        st = qkv__gemm_f32(rt, 1, 0, r, C, N, A->scale, s.dh, r, xd, C, 1.0f, A->ga, C, NULL);
    if (st == QKV_OK && dinp) {
        if (!drop) /* dinp += scale · dh · a */
            st = qkv__gemm_f32(rt, 0, 0, N, C, r, A->scale, s.dh, r, A->a, C, 1.0f, dinp, C, NULL);
        else { /* dxd (N, C) = scale · dh · a over xd's scratch; dinp += drop'(dxd) */
            st = qkv__gemm_f32(rt, 0, 0, N, C, r, A->scale, s.dh, r, A->a, C, 0.0f, s.xd, C, NULL);
            if (st == QKV_OK)
                st = qkv_nn_dropout_backward(rt, dinp, s.xd, N * C, A->dropout, A->seed, A->stream);
        }
    }
    qkv__free(s.buf);
    return st;
}

/* set: dinp = (GEMM beta 0) instead of +=; with an adapter, which adds its term into dinp
 * first, dinp is zeroed and accumulated as by the caller. */
static qkv_status linear_backward(const char *fn, int set, qkv_runtime *rt, const qkv_nn_linear *L,
                                  float *dinp, float *dw, float *db, const float *dout,
                                  const float *inp, int64_t N, const qkv_gemm_epilogue *dep) {
    QKV_TRY(check(fn, L, N));
    NN_NONNULL(fn, dout);
    NN_REQUIRE(!dinp || L->w, "%s: L->w is NULL (needed for dinp)", fn);
    NN_REQUIRE(!dw || inp, "%s: inp is NULL (needed for dw)", fn);
    const qkv_nn_lora *A = L->lora;
    NN_REQUIRE(!A || !(A->ga || A->gb) || inp, "%s: inp is NULL (needed for L->lora->ga, gb)", fn);
    const int64_t C = L->C, OC = L->OC, ld = ldw_of(L);
    if (db) QKV_TRY(colsum(rt, fn, db, dout, N, OC)); /* first: its NOMEM leaves all untouched */
    float beta = 1.0f;
    if (set && A && dinp)
        memset(dinp, 0, (size_t)(N * C) * sizeof(float));
    else if (set)
        beta = 0.0f;
    if (A && (dinp || A->ga || A->gb)) QKV_TRY(lora_backward(rt, fn, L, dinp, dout, inp, N));
    if (dinp) {
        if (L->in_out) /* w (C, OC): dinp = dout · wᵀ */
            QKV_TRY(
                qkv__gemm_f32(rt, 0, 1, N, C, OC, 1.0f, dout, OC, L->w, ld, beta, dinp, C, dep));
        else /* w (OC, C): dinp = dout · w */
            QKV_TRY(
                qkv__gemm_f32(rt, 0, 0, N, C, OC, 1.0f, dout, OC, L->w, ld, beta, dinp, C, dep));
    }
    if (dw) {
        if (L->in_out) /* dw (C, OC) += inpᵀ · dout */
            QKV_TRY(qkv__gemm_f32(rt, 1, 0, C, OC, N, 1.0f, inp, C, dout, OC, 1.0f, dw, ld, NULL));
        else /* dw (OC, C) += doutᵀ · inp */
            QKV_TRY(qkv__gemm_f32(rt, 1, 0, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f, dw, ld, NULL));
    }
    return QKV_OK;
}

qkv_status qkv_nn_linear_backward(qkv_runtime *rt, const qkv_nn_linear *L, float *dinp, float *dw,
                                  float *db, const float *dout, const float *inp, int64_t N) {
    return linear_backward("qkv_nn_linear_backward", 0, rt, L, dinp, dw, db, dout, inp, N, NULL);
}

qkv_status qkv_nn_linear_backward_set(qkv_runtime *rt, const qkv_nn_linear *L, float *dinp,
                                      float *dw, float *db, const float *dout, const float *inp,
                                      int64_t N) {
    static const char fn[] = "qkv_nn_linear_backward_set";
    NN_NONNULL(fn, dinp);
    return linear_backward(fn, 1, rt, L, dinp, dw, db, dout, inp, N, NULL);
}

qkv_status qkv_nn_linear_backward_act_set(qkv_runtime *rt, const qkv_nn_linear *L, float *dinp,
                                          float *dw, float *db, const float *dout, const float *inp,
                                          int64_t N, qkv_act act, const float *pre) {
    static const char fn[] = "qkv_nn_linear_backward_act_set";
    NN_NONNULL(fn, L);
    NN_NONNULL(fn, dinp);
    NN_NONNULL(fn, pre);
    NN_REQUIRE(!L->lora, "%s: L->lora is set (the adapter's term is added before the product)", fn);
    NN_REQUIRE(act == QKV_ACT_GELU_ERF || act == QKV_ACT_GELU_TANH || act == QKV_ACT_RELU ||
                   act == QKV_ACT_SILU || act == QKV_ACT_TANH,
               "%s: act = %d is not a qkv_act activation", fn, (int)act);
    QKV_TRY(check(fn, L, N));
    NN_REQUIRE(!overlaps(dinp, pre, N * L->C), "%s: pre overlaps dinp", fn);
    const qkv_gemm_epilogue e = {.act = act, .act_grad = pre, .ldg = L->C};
    return linear_backward(fn, 1, rt, L, dinp, dw, db, dout, inp, N, &e);
}

qkv_status qkv_nn_lora_merge(float *w, int in_out, int64_t ldw, int64_t C, int64_t OC,
                             const qkv_nn_lora *lora, float sign) {
    static const char fn[] = "qkv_nn_lora_merge";
    NN_NONNULL(fn, w);
    NN_NONNULL(fn, lora);
    const qkv_nn_linear L = {w, NULL, C, OC, ldw, in_out, NULL, lora, NULL, NULL};
    QKV_TRY(check(fn, &L, 1));
    const float alpha = sign * lora->scale;
    NN_REQUIRE(isfinite(sign) && isfinite(alpha), "%s: sign = %g gives a non-finite sign * scale",
               fn, (double)sign);
    const int64_t r = lora->r, ld = ldw_of(&L);
    if (in_out) /* w (C, OC) += alpha · aᵀ · bᵀ */
        return qkv__gemm_f32(NULL, 1, 1, C, OC, r, alpha, lora->a, C, lora->b, r, 1.0f, w, ld,
                             NULL);
    /* w (OC, C) += alpha · b · a */
    return qkv__gemm_f32(NULL, 0, 0, OC, C, r, alpha, lora->b, r, lora->a, C, 1.0f, w, ld, NULL);
}
