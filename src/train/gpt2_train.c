/* gpt2_train.c — forward and backward of a whole GPT-2 for training (see trainer.h), as a list
 * of calls into the layer library (src/nn): every layer's math lives there.
 *
 * The forward of block l, on the residual stream x = resid[l] (N = B·T rows, C channels):
 *   ln1 = LN1(x);  q, k, v = ln1 · c_attn[:, 0:C | C:2C | 2C:3C] + b  (three column slices)
 *   att = causal flash attention(q, k, v)  (lse saved)
 *   res2 = x + att · Wproj + bproj          (residual fused in the GEMM epilogue)
 *   ln2 = LN2(res2);  h = ln2 · Wfc + bfc;  a = act(h)
 *   resid[l+1] = res2 + a · Wmlp + bmlp
 * then lnf = LN_f(resid[L]), logits = lnf · wteᵀ and the mean cross-entropy.
 *
 * The backward walks the same calls in reverse with one running gradient of the residual
 * stream, dresid: each skip connection passes it through unchanged and each LayerNorm
 * backward ADDS its input gradient to it (the layers' += contract). The cross-entropy is fused:
 * the logits are overwritten with dlogits (softmax − onehot, scaled) in place.
 *
 * Determinism: every layer gives bit-identical results for any thread count (src/nn/nn.h). */
#include "train/trainer.h"

#include "core/alloc.h"
#include "core/error.h"
#include "core/rng.h"
#include "models/params.h"
#include "nn/nn.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

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
    const size_t n_rows = (size_t)(qkv__params_gpt2.n_pre + qkv__params_gpt2.n_post) +
                          (size_t)L * (size_t)qkv__params_gpt2.n_layer;
    t->params = qkv__calloc(n_rows, sizeof *t->params);
    if (!t->params) {
        qkv__free(t);
        return qkv__fail(QKV_ERR_NOMEM, "trainer: out of memory");
    }
    /* the rows of models/params.h, in named_parameters() order */
    const qkv__param_table *tab = &qkv__params_gpt2;
    const qkv__dims dims = {V, P, C, F, C, C};
    char name[sizeof t->params->name];
    for (int64_t l = -1; l <= L; l++) {
        const qkv__param_spec *rows = l < 0 ? tab->pre : l == L ? tab->post : tab->layer;
        int n = l < 0 ? tab->n_pre : l == L ? tab->n_post : tab->n_layer;
        for (int i = 0; i < n; i++) {
            if (qkv__param_name(name, sizeof name, tab->prefix, &rows[i], l) != QKV_OK) {
                qkv_trainer_free(t);
                return QKV_ERR_INVALID_ARG;
            }
            add_param(t, name, qkv__param_dim(rows[i].d0, &dims),
                      rows[i].d1 == QKV__DIM_NONE ? 0 : qkv__param_dim(rows[i].d1, &dims),
                      rows[i].decay);
        }
    }
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

/* ---------------------------------------------------------------- layers */

/* The dense layers of block l: c_attn's q, k or v column slice (i = 0, 1, 2) and the others
 * (GPT-2's Conv1D weights are [in, out]). */
static qkv_nn_linear attn_slice(const qkv_trainer *t, int64_t l, int i) {
    const int64_t C = t->shape.n_embd;
    return (qkv_nn_linear){qkv__tw(t, t->w, l, TP_ATTN_W) + i * C,
                           qkv__tw(t, t->w, l, TP_ATTN_B) + i * C,
                           C,
                           C,
                           3 * C,
                           1,
                           NULL};
}

static qkv_nn_linear dense(const qkv_trainer *t, int64_t l, int w, int b, int64_t in, int64_t out) {
    return (qkv_nn_linear){qkv__tw(t, t->w, l, w), qkv__tw(t, t->w, l, b), in, out, 0, 1, NULL};
}

/* The LM head: logits = lnf · wteᵀ (wte (V, C) is [out, in]). */
static qkv_nn_linear lm_head(const qkv_trainer *t) {
    return (qkv_nn_linear){
        t->w + t->params[0].offset, NULL, t->shape.n_embd, t->shape.vocab_size, 0, 0, NULL};
}

static void zero(float *p, int64_t n) { memset(p, 0, (size_t)n * sizeof(float)); }

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
    QKV_TRY(qkv_nn_layernorm_forward(rt, a->ln1, a->mean1, a->rstd1, x, qkv__tw(t, W, l, TP_LN1_W),
                                     qkv__tw(t, W, l, TP_LN1_B), N, C, t->eps));
    float *qkv[3] = {a->q, a->k, a->v};
    for (int i = 0; i < 3; i++) {
        qkv_nn_linear L = attn_slice(t, l, i);
        QKV_TRY(qkv_nn_linear_forward(rt, &L, qkv[i], a->ln1, N, QKV_ACT_NONE, NULL));
    }
    qkv_attention_desc d;
    attn_desc(t, B, T, &d);
    QKV_TRY(qkv_attention_forward(rt, &d, a->q, a->k, a->v, a->att, a->lse));
    qkv_nn_linear proj = dense(t, l, TP_PROJ_W, TP_PROJ_B, C, C);
    QKV_TRY(qkv_nn_linear_forward(rt, &proj, a->res2, a->att, N, QKV_ACT_NONE, x));
    QKV_TRY(qkv_nn_layernorm_forward(rt, a->ln2, a->mean2, a->rstd2, a->res2,
                                     qkv__tw(t, W, l, TP_LN2_W), qkv__tw(t, W, l, TP_LN2_B), N, C,
                                     t->eps));
    qkv_nn_linear fc = dense(t, l, TP_FC_W, TP_FC_B, C, F);
    QKV_TRY(qkv_nn_linear_forward(rt, &fc, a->h, a->ln2, N, QKV_ACT_NONE, NULL));
    QKV_TRY(qkv_nn_act_forward(rt, t->act, a->a, a->h, N * F));
    qkv_nn_linear mlp = dense(t, l, TP_MLP_W, TP_MLP_B, F, C);
    return qkv_nn_linear_forward(rt, &mlp, y, a->a, N, QKV_ACT_NONE, a->res2);
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
    const float *wte = t->w + t->params[0].offset, *wpe = t->w + t->params[1].offset;
    QKV_TRY(qkv_nn_embedding_forward(rt, t->resid, ids, wte, N, V, C));
    QKV_TRY(
        qkv_nn_position_add_forward(rt, t->resid, t->resid, wpe, B, T, C, t->shape.n_positions, 0));
    for (int64_t l = 0; l < L; l++)
        QKV_TRY(block_forward(rt, t, l, acts_of(t, l), t->resid + l * N * C,
                              t->resid + (l + 1) * N * C, B, T));
    const qkv__tparam *lnw = &t->params[t->n_params - 2], *lnb = &t->params[t->n_params - 1];
    QKV_TRY(qkv_nn_layernorm_forward(rt, t->lnf, t->meanf, t->rstdf, t->resid + L * N * C,
                                     t->w + lnw->offset, t->w + lnb->offset, N, C, t->eps));
    qkv_nn_linear head = lm_head(t);
    QKV_TRY(qkv_nn_linear_forward(rt, &head, t->logits, t->lnf, N, QKV_ACT_NONE, NULL));
    if (backward)
        QKV_TRY(qkv_nn_cross_entropy_fused(rt, loss, t->row_loss, t->logits, targets, N, V, -1,
                                           0.0f, scale));
    else
        QKV_TRY(qkv_nn_cross_entropy_forward(rt, loss, t->row_loss, t->logits, targets, N, V, -1,
                                             0.0f));
    t->logits_valid = !backward;
    return QKV_OK;
}

/* ---------------------------------------------------------------- backward */

/* dresid holds dL/d(block output); on return dL/d(block input). a must hold block l's saved
 * activations for input x. */
static qkv_status block_backward(qkv_runtime *rt, qkv_trainer *t, int64_t l, const qkv__tacts *a,
                                 const float *x, int64_t B, int64_t T) {
    const int64_t N = B * T, C = t->shape.n_embd, F = 4 * C;
    float *W = t->w;
    float *G = t->g, *dr = t->dresid;
    /* MLP: y = res2 + act(LN2(res2) · Wfc + bfc) · Wmlp + bmlp */
    qkv_nn_linear mlp = dense(t, l, TP_MLP_W, TP_MLP_B, F, C);
    zero(t->da, N * F);
    QKV_TRY(qkv_nn_linear_backward(rt, &mlp, t->da, qkv__tw(t, G, l, TP_MLP_W),
                                   qkv__tw(t, G, l, TP_MLP_B), dr, a->a, N));
    zero(t->dh, N * F);
    QKV_TRY(qkv_nn_act_backward(rt, t->act, t->dh, t->da, a->h, N * F));
    qkv_nn_linear fc = dense(t, l, TP_FC_W, TP_FC_B, C, F);
    zero(t->dln, N * C);
    QKV_TRY(qkv_nn_linear_backward(rt, &fc, t->dln, qkv__tw(t, G, l, TP_FC_W),
                                   qkv__tw(t, G, l, TP_FC_B), t->dh, a->ln2, N));
    QKV_TRY(qkv_nn_layernorm_backward(rt, dr, qkv__tw(t, G, l, TP_LN2_W),
                                      qkv__tw(t, G, l, TP_LN2_B), t->dln, a->res2,
                                      qkv__tw(t, W, l, TP_LN2_W), a->mean2, a->rstd2, N, C));
    /* attention: res2 = x + att · Wproj + bproj, att = attention(LN1(x) · c_attn + b) */
    qkv_nn_linear proj = dense(t, l, TP_PROJ_W, TP_PROJ_B, C, C);
    zero(t->datt, N * C);
    QKV_TRY(qkv_nn_linear_backward(rt, &proj, t->datt, qkv__tw(t, G, l, TP_PROJ_W),
                                   qkv__tw(t, G, l, TP_PROJ_B), dr, a->att, N));
    qkv_attention_desc d;
    attn_desc(t, B, T, &d);
    QKV_TRY(qkv_attention_backward(rt, &d, a->q, a->k, a->v, a->att, a->lse, t->datt, t->dq, t->dk,
                                   t->dv));
    const float *dqkv[3] = {t->dq, t->dk, t->dv};
    zero(t->dln, N * C);
    for (int i = 0; i < 3; i++) {
        qkv_nn_linear L = attn_slice(t, l, i);
        QKV_TRY(qkv_nn_linear_backward(rt, &L, t->dln, qkv__tw(t, G, l, TP_ATTN_W) + i * C,
                                       qkv__tw(t, G, l, TP_ATTN_B) + i * C, dqkv[i], a->ln1, N));
    }
    return qkv_nn_layernorm_backward(rt, dr, qkv__tw(t, G, l, TP_LN1_W), qkv__tw(t, G, l, TP_LN1_B),
                                     t->dln, x, qkv__tw(t, W, l, TP_LN1_W), a->mean1, a->rstd1, N,
                                     C);
}

static qkv_status backward(qkv_runtime *rt, qkv_trainer *t, const int32_t *ids, int64_t B,
                           int64_t T) {
    const int64_t N = B * T, C = t->shape.n_embd, V = t->shape.vocab_size, L = t->shape.n_layer;
    float *dwte = t->g + t->params[0].offset, *dwpe = t->g + t->params[1].offset;
    const qkv__tparam *lnw = &t->params[t->n_params - 2], *lnb = &t->params[t->n_params - 1];
    /* LM head: logits = lnf · wteᵀ; t->logits holds dlogits */
    qkv_nn_linear head = lm_head(t);
    zero(t->dln, N * C);
    QKV_TRY(qkv_nn_linear_backward(rt, &head, t->dln, dwte, NULL, t->logits, t->lnf, N));
    zero(t->dresid, N * C);
    QKV_TRY(qkv_nn_layernorm_backward(rt, t->dresid, t->g + lnw->offset, t->g + lnb->offset, t->dln,
                                      t->resid + L * N * C, t->w + lnw->offset, t->meanf, t->rstdf,
                                      N, C));
    for (int64_t l = L - 1; l >= 0; l--) {
        const float *x = t->resid + l * N * C;
        if (t->policy == QKV_RECOMPUTE_LAYERS)
            QKV_TRY(block_forward(rt, t, l, &t->layer[0], x, t->resid + (l + 1) * N * C, B, T));
        QKV_TRY(block_backward(rt, t, l, acts_of(t, l), x, B, T));
    }
    QKV_TRY(qkv_nn_embedding_backward(rt, dwte, t->dresid, ids, N, V, C));
    return qkv_nn_position_add_backward(rt, NULL, dwpe, t->dresid, B, T, C, t->shape.n_positions,
                                        0);
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
