/* gpt2_train.c — forward and backward of a whole GPT-2 for training (see trainer.h).
 *
 * The forward of block l, on the residual stream x = resid[l] (N = B·T rows, C channels):
 *   ln1 = LN1(x);  q, k, v = ln1 · Wattn[:, 0:C | C:2C | 2C:3C] + b     (three GEMMs)
 *   att = causal flash attention(q, k, v)  (lse saved)
 *   res2 = x + att · Wproj + bproj          (GEMM with bias and residual epilogue)
 *   ln2 = LN2(res2);  h = ln2 · Wfc + bfc;  a = act(h)
 *   resid[l+1] = res2 + a · Wmlp + bmlp
 * then lnf = LN_f(resid[L]), logits = lnf · wteᵀ and the mean cross-entropy.
 *
 * The backward walks the same steps in reverse with one running gradient of the residual
 * stream, dresid: each skip connection passes it through unchanged and each LayerNorm
 * backward ADDS its input gradient to it. The gradient of a weight W of y = x·W is xᵀ·dy (a
 * GEMM with beta = 1, so micro-batches accumulate), of its input dy·Wᵀ. The cross-entropy
 * backward overwrites the logits with dlogits in place (softmax − onehot, scaled).
 *
 * Determinism: the GEMM and attention kernels give bit-identical results for any thread
 * count; the reductions written here (bias gradients, LayerNorm weight gradients, embedding
 * scatter, the loss) split work so every sum runs in one fixed order. */
#include "train/trainer.h"

#include "core/alloc.h"
#include "core/error.h"
#include "core/rng.h"
#include "kernels/dispatch.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define LN_RB                                                                                      \
    32 /* rows per LayerNorm-backward partial (fixed: results never depend on threads)             \
        */

/* ---------------------------------------------------------------- parameters */

static void add_param(qkv_trainer *t, const char *name, int64_t d0, int64_t d1, int decay) {
    qkv__tparam *p = &t->params[t->n_params++];
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ndim = d1 ? 2 : 1;
    p->shape[0] = d0;
    p->shape[1] = d1;
    p->numel = d0 * (d1 ? d1 : 1);
    p->offset = t->n_floats;
    p->decay = decay;
    /* keep every tensor 64-byte aligned in the flat buffers */
    t->n_floats += (p->numel + 15) / 16 * 16;
}

static qkv_status check_shape(const qkv_gpt2_shape *s) {
    if (!s) return qkv__fail(QKV_ERR_INVALID_ARG, "trainer: NULL shape");
    const int64_t lim = (int64_t)1 << 24;
    if (s->vocab_size < 1 || s->vocab_size > (int64_t)INT32_MAX || s->n_positions < 1 ||
        s->n_positions > lim || s->n_embd < 1 || s->n_embd > 65536 || s->n_layer < 1 ||
        s->n_layer > 4096 || s->n_head < 1 || s->n_embd % s->n_head != 0)
        return qkv__fail(QKV_ERR_INVALID_ARG,
                         "trainer: bad shape (vocab %lld, positions %lld, n_embd %lld, n_layer "
                         "%lld, n_head %lld): all >= 1 and n_head must divide n_embd",
                         (long long)s->vocab_size, (long long)s->n_positions, (long long)s->n_embd,
                         (long long)s->n_layer, (long long)s->n_head);
    double total = (double)(s->vocab_size + s->n_positions) * (double)s->n_embd +
                   (double)s->n_layer * 12.0 * (double)s->n_embd * (double)s->n_embd;
    if (total > 4e10) return qkv__fail(QKV_ERR_OVERFLOW, "trainer: model too large");
    return QKV_OK;
}

qkv_status qkv__trainer_alloc(const qkv_gpt2_shape *shape, qkv_trainer **out) {
    *out = NULL;
    QKV_TRY(check_shape(shape));
    qkv_trainer *t = qkv__calloc(1, sizeof *t);
    if (!t) return qkv__fail(QKV_ERR_NOMEM, "trainer: out of memory");
    t->shape = *shape;
    t->eps = 1e-5f;
    t->act = QKV_ACT_GELU_TANH;
    const int64_t V = shape->vocab_size, P = shape->n_positions, C = shape->n_embd,
                  L = shape->n_layer, F = 4 * C;
    t->params = qkv__calloc((size_t)(4 + TP_PER_LAYER * L), sizeof *t->params);
    if (!t->params) {
        qkv__free(t);
        return qkv__fail(QKV_ERR_NOMEM, "trainer: out of memory");
    }
    add_param(t, "transformer.wte.weight", V, C, 1);
    add_param(t, "transformer.wpe.weight", P, C, 1);
    for (int64_t l = 0; l < L; l++) {
        char n[96];
#define P_(suffix, d0, d1, decay)                                                                  \
    do {                                                                                           \
        snprintf(n, sizeof n, "transformer.h.%lld.%s", (long long)l, suffix);                      \
        add_param(t, n, d0, d1, decay);                                                            \
    } while (0)
        P_("ln_1.weight", C, 0, 0);
        P_("ln_1.bias", C, 0, 0);
        P_("attn.c_attn.weight", C, 3 * C, 1);
        P_("attn.c_attn.bias", 3 * C, 0, 0);
        P_("attn.c_proj.weight", C, C, 1);
        P_("attn.c_proj.bias", C, 0, 0);
        P_("ln_2.weight", C, 0, 0);
        P_("ln_2.bias", C, 0, 0);
        P_("mlp.c_fc.weight", C, F, 1);
        P_("mlp.c_fc.bias", F, 0, 0);
        P_("mlp.c_proj.weight", F, C, 1);
        P_("mlp.c_proj.bias", C, 0, 0);
#undef P_
    }
    add_param(t, "transformer.ln_f.weight", C, 0, 0);
    add_param(t, "transformer.ln_f.bias", C, 0, 0);
    for (size_t i = 0; i < t->n_params; i++)
        t->n_segs += (t->params[i].numel + QKV__SEG_FLOATS - 1) / QKV__SEG_FLOATS;
    t->segs = qkv__calloc((size_t)t->n_segs, sizeof *t->segs);
    for (size_t i = 0, k = 0; t->segs && i < t->n_params; i++)
        for (int64_t b = 0; b < t->params[i].numel; b += QKV__SEG_FLOATS) {
            int64_t e =
                b + QKV__SEG_FLOATS < t->params[i].numel ? b + QKV__SEG_FLOATS : t->params[i].numel;
            t->segs[k++] =
                (qkv__tseg){(int64_t)i, t->params[i].offset + b, t->params[i].offset + e};
        }
    size_t bytes = (size_t)t->n_floats * sizeof(float);
    t->w = qkv__calloc(1, bytes);
    t->g = qkv__calloc(1, bytes);
    t->m = qkv__calloc(1, bytes);
    t->v = qkv__calloc(1, bytes);
    if (!t->w || !t->g || !t->m || !t->v || !t->segs) {
        qkv_trainer_free(t);
        return qkv__fail(QKV_ERR_NOMEM, "trainer: cannot allocate %lld parameters (x4 buffers)",
                         (long long)t->n_floats);
    }
    *out = t;
    return QKV_OK;
}

qkv_status qkv_trainer_new(const qkv_gpt2_shape *shape, uint64_t seed, qkv_trainer **out) {
    if (!out) return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_trainer_new: NULL out");
    qkv_trainer *t;
    QKV_TRY(qkv__trainer_alloc(shape, &t));
    const double std = 0.02, proj_std = 0.02 / sqrt(2.0 * (double)shape->n_layer);
    for (size_t i = 0; i < t->n_params; i++) {
        const qkv__tparam *p = &t->params[i];
        float *w = t->w + p->offset;
        const char *dot = strrchr(p->name, '.');
        int is_ln = strstr(p->name, ".ln_") != NULL;
        if (p->ndim == 2) {
            double s = strstr(p->name, "c_proj.weight") ? proj_std : std;
            for (int64_t j = 0; j < p->numel; j++)
                w[j] = (float)(s * (double)qkv__rng_normal(seed, i, (uint64_t)j));
        } else if (is_ln && dot && strcmp(dot, ".weight") == 0) {
            for (int64_t j = 0; j < p->numel; j++) w[j] = 1.0f;
        } /* biases stay 0 */
    }
    *out = t;
    return QKV_OK;
}

void qkv_trainer_free(qkv_trainer *t) {
    if (!t) return;
    qkv__free(t->w);
    qkv__free(t->g);
    qkv__free(t->m);
    qkv__free(t->v);
    qkv__free(t->params);
    qkv__free(t->segs);
    qkv__free(t->arena);
    qkv__free(t->layer);
    qkv__free(t);
}

void qkv_trainer_get_shape(const qkv_trainer *t, qkv_gpt2_shape *shape) {
    if (t && shape) *shape = t->shape;
}

int64_t qkv_trainer_steps(const qkv_trainer *t) { return t ? t->steps : 0; }

size_t qkv_trainer_param_count(const qkv_trainer *t) { return t ? t->n_params : 0; }

int64_t qkv_trainer_numel(const qkv_trainer *t) {
    int64_t numel = 0;
    for (size_t i = 0; t && i < t->n_params; i++) numel += t->params[i].numel;
    return numel;
}

double qkv_trainer_step_flops(const qkv_trainer *t, int64_t B, int64_t T) {
    if (!t) return 0.0;
    double tokens = (double)B * (double)T;
    return 6.0 * (double)qkv_trainer_numel(t) * tokens +
           12.0 * (double)t->shape.n_layer * tokens * (double)T * (double)t->shape.n_embd;
}

qkv_status qkv_trainer_param(qkv_trainer *t, size_t i, qkv_param_info *info) {
    if (!t || !info || i >= t->n_params)
        return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_trainer_param: no parameter %zu", i);
    const qkv__tparam *p = &t->params[i];
    info->name = p->name;
    info->ndim = p->ndim;
    info->shape[0] = p->shape[0];
    info->shape[1] = p->shape[1];
    info->numel = p->numel;
    info->data = t->w + p->offset;
    info->grad = t->g + p->offset;
    info->decay = p->decay;
    return QKV_OK;
}

void qkv_trainer_zero_grad(qkv_trainer *t) {
    if (t) memset(t->g, 0, (size_t)t->n_floats * sizeof(float));
}

const float *qkv_trainer_logits(const qkv_trainer *t) {
    return t && t->logits_valid ? t->logits : NULL;
}

/* ---------------------------------------------------------------- activations */

typedef struct {
    float *base;
    size_t used, cap; /* floats */
} carve;

static float *take(carve *c, int64_t n) {
    size_t k = ((size_t)n + 15) / 16 * 16;
    float *p = c->base ? c->base + c->used : NULL;
    c->used += k;
    return p;
}

static void bind_layer(carve *c, qkv__tacts *a, int64_t N, int64_t C, int64_t F, int64_t H) {
    a->ln1 = take(c, N * C);
    a->mean1 = take(c, N);
    a->rstd1 = take(c, N);
    a->q = take(c, N * C);
    a->k = take(c, N * C);
    a->v = take(c, N * C);
    a->att = take(c, N * C);
    a->lse = take(c, N * H);
    a->res2 = take(c, N * C);
    a->ln2 = take(c, N * C);
    a->mean2 = take(c, N);
    a->rstd2 = take(c, N);
    a->h = take(c, N * F);
    a->a = take(c, N * F);
}

/* Lays everything out (c->base NULL: only counts). */
static void bind_all(qkv_trainer *t, carve *c, int64_t B, int64_t T, qkv_recompute policy) {
    const int64_t N = B * T, C = t->shape.n_embd, V = t->shape.vocab_size, L = t->shape.n_layer,
                  F = 4 * C, H = t->shape.n_head;
    int64_t nl = policy == QKV_RECOMPUTE_LAYERS ? 1 : L;
    t->resid = take(c, (L + 1) * N * C);
    for (int64_t l = 0; l < nl; l++) bind_layer(c, &t->layer[l], N, C, F, H);
    t->lnf = take(c, N * C);
    t->meanf = take(c, N);
    t->rstdf = take(c, N);
    t->logits = take(c, N * V);
    t->row_loss = take(c, N);
    t->dresid = take(c, N * C);
    t->dln = take(c, N * C);
    t->datt = take(c, N * C);
    t->dq = take(c, N * C);
    t->dk = take(c, N * C);
    t->dv = take(c, N * C);
    t->da = take(c, N * F);
    t->dh = take(c, N * F);
    t->ln_part = take(c, (N / LN_RB + 1) * 2 * C);
}

qkv_status qkv_trainer_reserve(qkv_trainer *t, int64_t B, int64_t T, qkv_recompute policy,
                               size_t *bytes) {
    if (!t) return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_trainer_reserve: NULL trainer");
    if (B < 1 || T < 1 || T > t->shape.n_positions || B > ((int64_t)1 << 20))
        return qkv__fail(QKV_ERR_INVALID_ARG,
                         "qkv_trainer_reserve: B = %lld, T = %lld (need B >= 1 and 1 <= T <= "
                         "n_positions = %lld)",
                         (long long)B, (long long)T, (long long)t->shape.n_positions);
    if (policy != QKV_RECOMPUTE_NONE && policy != QKV_RECOMPUTE_LAYERS)
        return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_trainer_reserve: unknown recompute policy %d",
                         (int)policy);
    if (t->arena && B <= t->cap_B && T <= t->cap_T && policy == t->policy) {
        if (bytes) *bytes = t->arena_bytes;
        return QKV_OK;
    }
    if (t->arena) {
        B = B > t->cap_B ? B : t->cap_B;
        T = T > t->cap_T ? T : t->cap_T;
    }
    int64_t nl = policy == QKV_RECOMPUTE_LAYERS ? 1 : t->shape.n_layer;
    qkv__tacts *layer = qkv__calloc((size_t)nl, sizeof *layer);
    if (!layer) return qkv__fail(QKV_ERR_NOMEM, "trainer: out of memory");
    qkv__free(t->arena);
    qkv__free(t->layer);
    t->arena = NULL;
    t->layer = layer;
    t->cap_B = t->cap_T = 0;
    t->logits_valid = 0;
    carve c = {0};
    bind_all(t, &c, B, T, policy);
    double need = (double)c.used * sizeof(float);
    if (need > (double)SIZE_MAX / 2)
        return qkv__fail(QKV_ERR_OVERFLOW, "trainer: activations for B %lld T %lld overflow",
                         (long long)B, (long long)T);
    t->arena = qkv__alloc(c.used * sizeof(float));
    if (!t->arena)
        return qkv__fail(QKV_ERR_NOMEM,
                         "trainer: cannot allocate %.1f MiB of activations for B %lld T %lld "
                         "(try a smaller batch, or recompute = layers)",
                         need / 1048576.0, (long long)B, (long long)T);
    c = (carve){t->arena, 0, 0};
    bind_all(t, &c, B, T, policy);
    t->arena_bytes = c.used * sizeof(float);
    t->cap_B = B;
    t->cap_T = T;
    t->policy = policy;
    if (bytes) *bytes = t->arena_bytes;
    return QKV_OK;
}

/* ---------------------------------------------------------------- threaded helpers */

static qkv_status mm(qkv_runtime *rt, int ta, int tb, int64_t M, int64_t N, int64_t K,
                     const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                     float *Cm, int64_t ldc, const float *bias, const float *residual,
                     int64_t ldr) {
    qkv_gemm_epilogue e = {bias, QKV_ACT_NONE, residual, ldr};
    return qkv__gemm_f32(rt, ta, tb, M, N, K, 1.0f, A, lda, B, ldb, beta, Cm, ldc,
                         bias || residual ? &e : NULL);
}

typedef struct {
    const float *x, *w, *b;
    float *y, *mean, *rstd;
    int64_t n;
    float eps;
} ln_ctx;

static void ln_fwd_rows(void *p, int64_t r0, int64_t r1, int tid) {
    const ln_ctx *c = p;
    (void)tid;
    qkv__kernels()->layernorm_f32(c->x + r0 * c->n, c->w, c->b, c->y + r0 * c->n, c->mean + r0,
                                  c->rstd + r0, (size_t)(r1 - r0), (size_t)c->n, c->eps);
}

static void layernorm(qkv_runtime *rt, const float *x, const float *w, const float *b, float *y,
                      float *mean, float *rstd, int64_t N, int64_t C, float eps) {
    ln_ctx c = {x, w, b, y, mean, rstd, C, eps};
    qkv_parallel_for(rt, N, 16, ln_fwd_rows, &c);
}

typedef struct {
    const float *dy, *x, *w, *mean, *rstd;
    float *dx, *part;
    int64_t N, C;
} lnb_ctx;

/* Block i of LN_RB rows: dx rows += ...; part[i] = (dw, db) of the block. */
static void ln_bwd_blocks(void *p, int64_t i0, int64_t i1, int tid) {
    const lnb_ctx *c = p;
    (void)tid;
    for (int64_t i = i0; i < i1; i++) {
        int64_t r0 = i * LN_RB, r1 = r0 + LN_RB < c->N ? r0 + LN_RB : c->N;
        float *dw = c->part + i * 2 * c->C, *db = dw + c->C;
        memset(dw, 0, (size_t)(2 * c->C) * sizeof(float));
        qkv__kernels()->layernorm_bwd_f32(c->dy + r0 * c->C, c->x + r0 * c->C, c->w, c->mean + r0,
                                          c->rstd + r0, c->dx + r0 * c->C, dw, db,
                                          (size_t)(r1 - r0), (size_t)c->C);
    }
}

typedef struct {
    const float *part;
    float *dw, *db;
    int64_t nblk, C;
} lnr_ctx;

static void ln_reduce_cols(void *p, int64_t j0, int64_t j1, int tid) {
    const lnr_ctx *c = p;
    (void)tid;
    for (int64_t j = j0; j < j1; j++) {
        float sw = 0, sb = 0;
        for (int64_t i = 0; i < c->nblk; i++) {
            sw += c->part[i * 2 * c->C + j];
            sb += c->part[i * 2 * c->C + c->C + j];
        }
        c->dw[j] += sw;
        c->db[j] += sb;
    }
}

/* dx += LN backward; dw, db += (summed over fixed row blocks, then blocks in order). */
static void layernorm_bwd(qkv_runtime *rt, qkv_trainer *t, const float *dy, const float *x,
                          const float *w, const float *mean, const float *rstd, float *dx,
                          float *dw, float *db, int64_t N, int64_t C) {
    int64_t nblk = (N + LN_RB - 1) / LN_RB;
    lnb_ctx c = {dy, x, w, mean, rstd, dx, t->ln_part, N, C};
    qkv_parallel_for(rt, nblk, 1, ln_bwd_blocks, &c);
    lnr_ctx r = {t->ln_part, dw, db, nblk, C};
    qkv_parallel_for(rt, C, 64, ln_reduce_cols, &r);
}

typedef struct {
    const float *dout;
    float *db;
    int64_t N, OC;
} colsum_ctx;

#define COLSUM_W 64
static void colsum_cols(void *p, int64_t b0, int64_t b1, int tid) {
    const colsum_ctx *c = p;
    (void)tid;
    for (int64_t b = b0; b < b1; b++) {
        int64_t j0 = b * COLSUM_W, nj = c->OC - j0 < COLSUM_W ? c->OC - j0 : COLSUM_W;
        float acc[COLSUM_W] = {0};
        for (int64_t n = 0; n < c->N; n++) {
            const float *row = c->dout + n * c->OC + j0;
            for (int64_t j = 0; j < nj; j++) acc[j] += row[j];
        }
        for (int64_t j = 0; j < nj; j++) c->db[j0 + j] += acc[j];
    }
}

/* db (OC) += Σ_n dout[n, :]. */
static void bias_grad(qkv_runtime *rt, float *db, const float *dout, int64_t N, int64_t OC) {
    colsum_ctx c = {dout, db, N, OC};
    qkv_parallel_for(rt, (OC + COLSUM_W - 1) / COLSUM_W, 1, colsum_cols, &c);
}

typedef struct {
    qkv_act act;
    const float *x, *dy;
    float *y, *dx;
} act_ctx;

static void act_fwd_chunk(void *p, int64_t i0, int64_t i1, int tid) {
    const act_ctx *c = p;
    (void)tid;
    qkv__kernels()->act_f32(c->act, c->x + i0, c->y + i0, (size_t)(i1 - i0));
}

static void act_bwd_chunk(void *p, int64_t i0, int64_t i1, int tid) {
    const act_ctx *c = p;
    (void)tid;
    qkv__kernels()->act_bwd_f32(c->act, c->x + i0, c->dy + i0, c->dx + i0, (size_t)(i1 - i0));
}

typedef struct {
    const int32_t *ids;
    const float *wte, *wpe;
    float *x, *dwte, *dwpe;
    const float *dx;
    int64_t N, T, C;
} emb_ctx;

static void emb_fwd_rows(void *p, int64_t n0, int64_t n1, int tid) {
    const emb_ctx *c = p;
    (void)tid;
    for (int64_t n = n0; n < n1; n++) {
        const float *e = c->wte + (int64_t)c->ids[n] * c->C, *q = c->wpe + (n % c->T) * c->C;
        float *x = c->x + n * c->C;
        for (int64_t j = 0; j < c->C; j++) x[j] = e[j] + q[j];
    }
}

/* Each thread owns a column range and scatters every row into it in order of n. */
static void emb_bwd_cols(void *p, int64_t j0, int64_t j1, int tid) {
    const emb_ctx *c = p;
    (void)tid;
    for (int64_t n = 0; n < c->N; n++) {
        const float *d = c->dx + n * c->C;
        float *e = c->dwte + (int64_t)c->ids[n] * c->C, *q = c->dwpe + (n % c->T) * c->C;
        for (int64_t j = j0; j < j1; j++) {
            e[j] += d[j];
            q[j] += d[j];
        }
    }
}

typedef struct {
    float *logits;
    float *row_loss;
    const int32_t *targets;
    int64_t V;
    float gscale; /* scale / count; 0: forward only (logits kept) */
    int backward;
} ce_ctx;

static void ce_rows(void *p, int64_t n0, int64_t n1, int tid) {
    const ce_ctx *c = p;
    (void)tid;
    const int64_t V = c->V;
    for (int64_t n = n0; n < n1; n++) {
        float *x = c->logits + n * V;
        int32_t tg = c->targets[n];
        float mx = -INFINITY;
        for (int64_t j = 0; j < V; j++) mx = x[j] > mx ? x[j] : mx;
        double sum = 0;
        if (c->backward) {
            float xt = tg >= 0 ? x[tg] : 0.0f;
            for (int64_t j = 0; j < V; j++) x[j] -= mx;
            qkv__kernels()->exp_f32(x, x, (size_t)V);
            for (int64_t j = 0; j < V; j++) sum += x[j];
            c->row_loss[n] = tg >= 0 ? (float)(log(sum) - ((double)xt - (double)mx)) : 0.0f;
            if (tg < 0) {
                memset(x, 0, (size_t)V * sizeof(float));
                continue;
            }
            float f = (float)((double)c->gscale / sum);
            for (int64_t j = 0; j < V; j++) x[j] *= f;
            x[tg] -= c->gscale;
        } else { /* keep the logits: exponentiate chunks into a small buffer */
            float buf[256];
            for (int64_t j0 = 0; j0 < V; j0 += 256) {
                int64_t nj = V - j0 < 256 ? V - j0 : 256;
                for (int64_t j = 0; j < nj; j++) buf[j] = x[j0 + j] - mx;
                qkv__kernels()->exp_f32(buf, buf, (size_t)nj);
                for (int64_t j = 0; j < nj; j++) sum += buf[j];
            }
            c->row_loss[n] = tg >= 0 ? (float)(log(sum) - ((double)x[tg] - (double)mx)) : 0.0f;
        }
    }
}

/* ---------------------------------------------------------------- forward */

static void attn_desc(const qkv_trainer *t, int64_t B, int64_t T, qkv_attention_desc *d) {
    memset(d, 0, sizeof *d);
    d->batch = B;
    d->q_len = d->kv_len = T;
    d->n_heads = d->n_kv_heads = t->shape.n_head;
    d->head_dim = t->shape.n_embd / t->shape.n_head;
    d->causal = 1;
    d->window_left = d->window_right = -1;
}

/* Block l on x (N, C) -> y (N, C), saving into a. */
static qkv_status block_forward(qkv_runtime *rt, qkv_trainer *t, int64_t l, const qkv__tacts *a,
                                const float *x, float *y, int64_t B, int64_t T) {
    const int64_t N = B * T, C = t->shape.n_embd, F = 4 * C;
    float *W = t->w;
    layernorm(rt, x, qkv__tw(t, W, l, TP_LN1_W), qkv__tw(t, W, l, TP_LN1_B), a->ln1, a->mean1,
              a->rstd1, N, C, t->eps);
    const float *wa = qkv__tw(t, W, l, TP_ATTN_W), *ba = qkv__tw(t, W, l, TP_ATTN_B);
    float *qkv[3] = {a->q, a->k, a->v};
    for (int i = 0; i < 3; i++)
        QKV_TRY(mm(rt, 0, 0, N, C, C, a->ln1, C, wa + i * C, 3 * C, 0.0f, qkv[i], C, ba + i * C,
                   NULL, 0));
    qkv_attention_desc d;
    attn_desc(t, B, T, &d);
    QKV_TRY(qkv_attention_forward(rt, &d, a->q, a->k, a->v, a->att, a->lse));
    QKV_TRY(mm(rt, 0, 0, N, C, C, a->att, C, qkv__tw(t, W, l, TP_PROJ_W), C, 0.0f, a->res2, C,
               qkv__tw(t, W, l, TP_PROJ_B), x, C));
    layernorm(rt, a->res2, qkv__tw(t, W, l, TP_LN2_W), qkv__tw(t, W, l, TP_LN2_B), a->ln2, a->mean2,
              a->rstd2, N, C, t->eps);
    QKV_TRY(mm(rt, 0, 0, N, F, C, a->ln2, C, qkv__tw(t, W, l, TP_FC_W), F, 0.0f, a->h, F,
               qkv__tw(t, W, l, TP_FC_B), NULL, 0));
    act_ctx ac = {t->act, a->h, NULL, a->a, NULL};
    qkv_parallel_for(rt, N * F, 4096, act_fwd_chunk, &ac);
    QKV_TRY(mm(rt, 0, 0, N, C, F, a->a, F, qkv__tw(t, W, l, TP_MLP_W), C, 0.0f, y, C,
               qkv__tw(t, W, l, TP_MLP_B), a->res2, C));
    return QKV_OK;
}

static qkv_status check_batch(const qkv_trainer *t, const char *fn, const int32_t *ids,
                              const int32_t *targets, int64_t B, int64_t T) {
    if (!ids || !targets) return qkv__fail(QKV_ERR_INVALID_ARG, "%s: NULL ids or targets", fn);
    if (B < 1 || T < 1 || T > t->shape.n_positions)
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: B = %lld, T = %lld (T must be <= %lld)", fn,
                         (long long)B, (long long)T, (long long)t->shape.n_positions);
    const int64_t V = t->shape.vocab_size;
    for (int64_t n = 0; n < B * T; n++) {
        if (ids[n] < 0 || ids[n] >= V)
            return qkv__fail(QKV_ERR_INVALID_ARG, "%s: ids[%lld] = %d is outside [0, %lld)", fn,
                             (long long)n, ids[n], (long long)V);
        if (targets[n] < -1 || targets[n] >= V)
            return qkv__fail(QKV_ERR_INVALID_ARG,
                             "%s: targets[%lld] = %d is outside [0, %lld) (or -1: ignored)", fn,
                             (long long)n, targets[n], (long long)V);
    }
    return QKV_OK;
}

static qkv__tacts *acts_of(qkv_trainer *t, int64_t l) {
    return t->policy == QKV_RECOMPUTE_LAYERS ? &t->layer[0] : &t->layer[l];
}

/* Forward to the per-row losses; backward != 0 turns the logits into dlogits scaled by
 * scale / count. */
static qkv_status forward(qkv_runtime *rt, qkv_trainer *t, const int32_t *ids,
                          const int32_t *targets, int64_t B, int64_t T, int backward, float scale,
                          float *loss) {
    const int64_t N = B * T, C = t->shape.n_embd, V = t->shape.vocab_size, L = t->shape.n_layer;
    t->logits_valid = 0;
    emb_ctx e = {ids,
                 t->w + t->params[0].offset,
                 t->w + t->params[1].offset,
                 t->resid,
                 NULL,
                 NULL,
                 NULL,
                 N,
                 T,
                 C};
    qkv_parallel_for(rt, N, 64, emb_fwd_rows, &e);
    for (int64_t l = 0; l < L; l++)
        QKV_TRY(block_forward(rt, t, l, acts_of(t, l), t->resid + l * N * C,
                              t->resid + (l + 1) * N * C, B, T));
    const qkv__tparam *lnw = &t->params[t->n_params - 2], *lnb = &t->params[t->n_params - 1];
    layernorm(rt, t->resid + L * N * C, t->w + lnw->offset, t->w + lnb->offset, t->lnf, t->meanf,
              t->rstdf, N, C, t->eps);
    QKV_TRY(mm(rt, 0, 1, N, V, C, t->lnf, C, t->w + t->params[0].offset, C, 0.0f, t->logits, V,
               NULL, NULL, 0));
    int64_t count = 0;
    for (int64_t n = 0; n < N; n++) count += targets[n] >= 0;
    ce_ctx c = {t->logits, t->row_loss, targets, V, count ? scale / (float)count : 0.0f, backward};
    qkv_parallel_for(rt, N, 4, ce_rows, &c);
    double s = 0;
    for (int64_t n = 0; n < N; n++) s += t->row_loss[n];
    *loss = count ? (float)(s / (double)count) : 0.0f;
    t->logits_valid = !backward;
    return QKV_OK;
}

/* ---------------------------------------------------------------- backward */

/* dresid holds dL/d(block output); on return dL/d(block input). a must hold block l's saved
 * activations for input x. */
static qkv_status block_backward(qkv_runtime *rt, qkv_trainer *t, int64_t l, const qkv__tacts *a,
                                 const float *x, int64_t B, int64_t T) {
    const int64_t N = B * T, C = t->shape.n_embd, F = 4 * C;
    float *W = t->w, *G = t->g, *dr = t->dresid;
    /* MLP: y = res2 + a·Wmlp + b */
    const float *wm = qkv__tw(t, W, l, TP_MLP_W);
    QKV_TRY(mm(rt, 0, 1, N, F, C, dr, C, wm, C, 0.0f, t->da, F, NULL, NULL, 0));
    QKV_TRY(
        mm(rt, 1, 0, F, C, N, a->a, F, dr, C, 1.0f, qkv__tw(t, G, l, TP_MLP_W), C, NULL, NULL, 0));
    bias_grad(rt, qkv__tw(t, G, l, TP_MLP_B), dr, N, C);
    memset(t->dh, 0, (size_t)(N * F) * sizeof(float));
    act_ctx ac = {t->act, a->h, t->da, NULL, t->dh};
    qkv_parallel_for(rt, N * F, 4096, act_bwd_chunk, &ac);
    const float *wf = qkv__tw(t, W, l, TP_FC_W);
    QKV_TRY(mm(rt, 0, 1, N, C, F, t->dh, F, wf, F, 0.0f, t->dln, C, NULL, NULL, 0));
    QKV_TRY(mm(rt, 1, 0, C, F, N, a->ln2, C, t->dh, F, 1.0f, qkv__tw(t, G, l, TP_FC_W), F, NULL,
               NULL, 0));
    bias_grad(rt, qkv__tw(t, G, l, TP_FC_B), t->dh, N, F);
    layernorm_bwd(rt, t, t->dln, a->res2, qkv__tw(t, W, l, TP_LN2_W), a->mean2, a->rstd2, dr,
                  qkv__tw(t, G, l, TP_LN2_W), qkv__tw(t, G, l, TP_LN2_B), N, C);
    /* attention: res2 = x + att·Wproj + b */
    const float *wp = qkv__tw(t, W, l, TP_PROJ_W);
    QKV_TRY(mm(rt, 0, 1, N, C, C, dr, C, wp, C, 0.0f, t->datt, C, NULL, NULL, 0));
    QKV_TRY(mm(rt, 1, 0, C, C, N, a->att, C, dr, C, 1.0f, qkv__tw(t, G, l, TP_PROJ_W), C, NULL,
               NULL, 0));
    bias_grad(rt, qkv__tw(t, G, l, TP_PROJ_B), dr, N, C);
    qkv_attention_desc d;
    attn_desc(t, B, T, &d);
    QKV_TRY(qkv_attention_backward(rt, &d, a->q, a->k, a->v, a->att, a->lse, t->datt, t->dq, t->dk,
                                   t->dv));
    const float *wa = qkv__tw(t, W, l, TP_ATTN_W);
    float *gwa = qkv__tw(t, G, l, TP_ATTN_W), *gba = qkv__tw(t, G, l, TP_ATTN_B);
    const float *dqkv[3] = {t->dq, t->dk, t->dv};
    for (int i = 0; i < 3; i++) {
        QKV_TRY(mm(rt, 0, 1, N, C, C, dqkv[i], C, wa + i * C, 3 * C, i ? 1.0f : 0.0f, t->dln, C,
                   NULL, NULL, 0));
        QKV_TRY(
            mm(rt, 1, 0, C, C, N, a->ln1, C, dqkv[i], C, 1.0f, gwa + i * C, 3 * C, NULL, NULL, 0));
        bias_grad(rt, gba + i * C, dqkv[i], N, C);
    }
    layernorm_bwd(rt, t, t->dln, x, qkv__tw(t, W, l, TP_LN1_W), a->mean1, a->rstd1, dr,
                  qkv__tw(t, G, l, TP_LN1_W), qkv__tw(t, G, l, TP_LN1_B), N, C);
    return QKV_OK;
}

static qkv_status backward(qkv_runtime *rt, qkv_trainer *t, const int32_t *ids, int64_t B,
                           int64_t T) {
    const int64_t N = B * T, C = t->shape.n_embd, V = t->shape.vocab_size, L = t->shape.n_layer;
    float *dwte = t->g + t->params[0].offset, *dwpe = t->g + t->params[1].offset;
    const qkv__tparam *lnw = &t->params[t->n_params - 2], *lnb = &t->params[t->n_params - 1];
    /* LM head: logits = lnf · wteᵀ */
    QKV_TRY(mm(rt, 0, 0, N, C, V, t->logits, V, t->w + t->params[0].offset, C, 0.0f, t->dln, C,
               NULL, NULL, 0));
    QKV_TRY(mm(rt, 1, 0, V, C, N, t->logits, V, t->lnf, C, 1.0f, dwte, C, NULL, NULL, 0));
    memset(t->dresid, 0, (size_t)(N * C) * sizeof(float));
    layernorm_bwd(rt, t, t->dln, t->resid + L * N * C, t->w + lnw->offset, t->meanf, t->rstdf,
                  t->dresid, t->g + lnw->offset, t->g + lnb->offset, N, C);
    for (int64_t l = L - 1; l >= 0; l--) {
        const float *x = t->resid + l * N * C;
        if (t->policy == QKV_RECOMPUTE_LAYERS)
            QKV_TRY(block_forward(rt, t, l, &t->layer[0], x, t->resid + (l + 1) * N * C, B, T));
        QKV_TRY(block_backward(rt, t, l, acts_of(t, l), x, B, T));
    }
    emb_ctx e = {ids, NULL, NULL, NULL, dwte, dwpe, t->dresid, N, T, C};
    qkv_parallel_for(rt, C, 16, emb_bwd_cols, &e);
    return QKV_OK;
}

qkv_status qkv_trainer_forward_backward(qkv_runtime *rt, qkv_trainer *t, const int32_t *ids,
                                        const int32_t *targets, int64_t B, int64_t T, float scale,
                                        float *loss) {
    static const char fn[] = "qkv_trainer_forward_backward";
    if (!t || !loss) return qkv__fail(QKV_ERR_INVALID_ARG, "%s: NULL argument", fn);
    QKV_TRY(check_batch(t, fn, ids, targets, B, T));
    if (!isfinite(scale)) return qkv__fail(QKV_ERR_INVALID_ARG, "%s: scale is not finite", fn);
    QKV_TRY(qkv_trainer_reserve(t, B, T, t->arena ? t->policy : QKV_RECOMPUTE_NONE, NULL));
    QKV_TRY(forward(rt, t, ids, targets, B, T, 1, scale, loss));
    return backward(rt, t, ids, B, T);
}

qkv_status qkv_trainer_eval(qkv_runtime *rt, qkv_trainer *t, const int32_t *ids,
                            const int32_t *targets, int64_t B, int64_t T, float *loss) {
    static const char fn[] = "qkv_trainer_eval";
    if (!t || !loss) return qkv__fail(QKV_ERR_INVALID_ARG, "%s: NULL argument", fn);
    QKV_TRY(check_batch(t, fn, ids, targets, B, T));
    QKV_TRY(qkv_trainer_reserve(t, B, T, t->arena ? t->policy : QKV_RECOMPUTE_NONE, NULL));
    return forward(rt, t, ids, targets, B, T, 0, 0.0f, loss);
}
