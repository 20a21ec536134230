/* llama_train.c — forward and backward of a Llama-style decoder for training (see trainer.h), as
 * a list of calls into the layer library (src/nn). LlamaForCausalLM as transformers computes it:
 *
 * The forward of block l, on the residual stream x = resid[l] (N = B·T rows, C channels):
 *   ln1 = RMSNorm1(x);  q = ln1 Wqᵀ, k = ln1 Wkᵀ, v = ln1 Wvᵀ     (Hq·D, Hk·D, Hk·D columns)
 *   q, k = RoPE(q, k)  (rotate_half, positions 0..T-1)
 *   att = causal flash attention(q, k, v) with Hq/Hk query heads per KV head (lse saved)
 *   res2 = x + att Woᵀ
 *   ln2 = RMSNorm2(res2);  h = ln2 Wgateᵀ, u = ln2 Wupᵀ;  a = silu(h) ∘ u
 *   resid[l+1] = res2 + a Wdownᵀ
 * then lnf = RMSNorm_f(resid[L]), logits = lnf · headᵀ (lm_head, or embed_tokens when tied) and
 * the mean cross-entropy. No biases. The backward calls the same layers' backwards in reverse,
 * one running gradient of the residual stream (dresid) passing through every skip connection. */
#include "train/trainer.h"

#include "core/error.h"
#include "nn/nn.h"

#include <string.h>

static void zero(float *p, int64_t n) { memset(p, 0, (size_t)n * sizeof(float)); }

/* Dense layer `which` (LP_*) of block l: w (out, in), no bias. */
static qkv_nn_linear dense(const qkv_trainer *t, int64_t l, int which, int64_t in, int64_t out) {
    return (qkv_nn_linear){qkv__tw(t, t->w, l, which), NULL, in, out, 0, 0, NULL};
}

static qkv_nn_linear lm_head(const qkv_trainer *t) {
    const float *w = t->cfg.tied ? qkv__tpre(t, t->w, 0) : qkv__thead(t, t->w, 0);
    return (qkv_nn_linear){w, NULL, t->cfg.C, t->cfg.V, 0, 0, NULL};
}

static void attn_desc(const qkv_trainer *t, int64_t B, int64_t T, qkv_attention_desc *d) {
    memset(d, 0, sizeof *d);
    d->batch = B;
    d->q_len = d->kv_len = T;
    d->n_heads = t->cfg.H;
    d->n_kv_heads = t->cfg.Hk;
    d->head_dim = t->cfg.D;
    d->causal = 1;
    d->window_left = d->window_right = -1;
}

static qkv_nn_rope rope_of(const qkv_trainer *t) {
    return (qkv_nn_rope){QKV_NN_ROPE_HALF, t->cfg.rope_theta, 0};
}

/* Block l on x (N, C) -> y (N, C), saving into a. */
static qkv_status block_forward(qkv_runtime *rt, qkv_trainer *t, int64_t l, const qkv__tacts *a,
                                const float *x, float *y, int64_t B, int64_t T) {
    const qkv__tconfig *c = &t->cfg;
    const int64_t N = B * T, C = c->C, F = c->F, Q = c->H * c->D, K = c->Hk * c->D;
    float *W = t->w;
    const qkv_nn_rope rope = rope_of(t);
    QKV_TRY(
        qkv_nn_rmsnorm_forward(rt, a->ln1, a->rstd1, x, qkv__tw(t, W, l, LP_LN1), N, C, c->eps));
    qkv_nn_linear wq = dense(t, l, LP_Q, C, Q), wk = dense(t, l, LP_K, C, K),
                  wv = dense(t, l, LP_V, C, K);
    QKV_TRY(qkv_nn_linear_forward(rt, &wq, a->q, a->ln1, N, QKV_ACT_NONE, NULL));
    QKV_TRY(qkv_nn_linear_forward(rt, &wk, a->k, a->ln1, N, QKV_ACT_NONE, NULL));
    QKV_TRY(qkv_nn_linear_forward(rt, &wv, a->v, a->ln1, N, QKV_ACT_NONE, NULL));
    QKV_TRY(qkv_nn_rope_forward(rt, a->q, a->q, &rope, B, T, c->H, c->D, 0));
    QKV_TRY(qkv_nn_rope_forward(rt, a->k, a->k, &rope, B, T, c->Hk, c->D, 0));
    qkv_attention_desc d;
    attn_desc(t, B, T, &d);
    QKV_TRY(qkv_attention_forward(rt, &d, a->q, a->k, a->v, a->att, a->lse));
    qkv_nn_linear wo = dense(t, l, LP_O, Q, C);
    QKV_TRY(qkv_nn_linear_forward(rt, &wo, a->res2, a->att, N, QKV_ACT_NONE, x));
    QKV_TRY(qkv_nn_rmsnorm_forward(rt, a->ln2, a->rstd2, a->res2, qkv__tw(t, W, l, LP_LN2), N, C,
                                   c->eps));
    qkv_nn_linear wg = dense(t, l, LP_GATE, C, F), wu = dense(t, l, LP_UP, C, F);
    QKV_TRY(qkv_nn_linear_forward(rt, &wg, a->h, a->ln2, N, QKV_ACT_NONE, NULL));
    QKV_TRY(qkv_nn_linear_forward(rt, &wu, a->u, a->ln2, N, QKV_ACT_NONE, NULL));
    QKV_TRY(qkv_nn_swiglu_forward(rt, a->a, a->h, a->u, N * F));
    qkv_nn_linear wd = dense(t, l, LP_DOWN, F, C);
    return qkv_nn_linear_forward(rt, &wd, y, a->a, N, QKV_ACT_NONE, a->res2);
}

qkv_status qkv__llama_forward(qkv_runtime *rt, qkv_trainer *t, const qkv__tbatch *b, int backward,
                              float scale, float *loss) {
    const int64_t B = b->B, T = b->T, N = B * T, C = t->cfg.C, V = t->cfg.V, L = t->cfg.L;
    QKV_TRY(qkv_nn_embedding_forward(rt, t->resid, b->ids, qkv__tpre(t, t->w, 0), N, V, C));
    for (int64_t l = 0; l < L; l++)
        QKV_TRY(block_forward(rt, t, l, qkv__tacts_of(t, l), t->resid + l * N * C,
                              t->resid + (l + 1) * N * C, B, T));
    QKV_TRY(qkv_nn_rmsnorm_forward(rt, t->lnf, t->rstdf, t->resid + L * N * C,
                                   qkv__tpost(t, t->w, 0), N, C, t->cfg.eps));
    qkv_nn_linear head = lm_head(t);
    QKV_TRY(qkv_nn_linear_forward(rt, &head, t->logits, t->lnf, N, QKV_ACT_NONE, NULL));
    return qkv__trainer_loss(rt, t, N, backward, scale, loss);
}

/* dresid holds dL/d(block output); on return dL/d(block input). */
static qkv_status block_backward(qkv_runtime *rt, qkv_trainer *t, int64_t l, const qkv__tacts *a,
                                 const float *x, int64_t B, int64_t T) {
    const qkv__tconfig *c = &t->cfg;
    const int64_t N = B * T, C = c->C, F = c->F, Q = c->H * c->D, K = c->Hk * c->D;
    float *W = t->w, *G = t->g, *dr = t->dresid;
    const qkv_nn_rope rope = rope_of(t);
    /* MLP: y = res2 + (silu(ln2 Wgᵀ) ∘ ln2 Wuᵀ) Wdᵀ */
    qkv_nn_linear wd = dense(t, l, LP_DOWN, F, C);
    zero(t->da, N * F);
    QKV_TRY(qkv_nn_linear_backward(rt, &wd, t->da, qkv__tw(t, G, l, LP_DOWN), NULL, dr, a->a, N));
    zero(t->dh, N * F);
    zero(t->du, N * F);
    QKV_TRY(qkv_nn_swiglu_backward(rt, t->dh, t->du, t->da, a->h, a->u, N * F));
    qkv_nn_linear wg = dense(t, l, LP_GATE, C, F), wu = dense(t, l, LP_UP, C, F);
    zero(t->dln, N * C);
    QKV_TRY(
        qkv_nn_linear_backward(rt, &wg, t->dln, qkv__tw(t, G, l, LP_GATE), NULL, t->dh, a->ln2, N));
    QKV_TRY(
        qkv_nn_linear_backward(rt, &wu, t->dln, qkv__tw(t, G, l, LP_UP), NULL, t->du, a->ln2, N));
    QKV_TRY(qkv_nn_rmsnorm_backward(rt, dr, qkv__tw(t, G, l, LP_LN2), t->dln, a->res2,
                                    qkv__tw(t, W, l, LP_LN2), a->rstd2, N, C));
    /* attention: res2 = x + att Woᵀ */
    qkv_nn_linear wo = dense(t, l, LP_O, Q, C);
    zero(t->datt, N * Q);
    QKV_TRY(qkv_nn_linear_backward(rt, &wo, t->datt, qkv__tw(t, G, l, LP_O), NULL, dr, a->att, N));
    qkv_attention_desc d;
    attn_desc(t, B, T, &d);
    QKV_TRY(qkv_attention_backward(rt, &d, a->q, a->k, a->v, a->att, a->lse, t->datt, t->dq, t->dk,
                                   t->dv));
    zero(t->dqr, N * Q);
    zero(t->dkr, N * K);
    QKV_TRY(qkv_nn_rope_backward(rt, t->dqr, t->dq, &rope, B, T, c->H, c->D, 0));
    QKV_TRY(qkv_nn_rope_backward(rt, t->dkr, t->dk, &rope, B, T, c->Hk, c->D, 0));
    qkv_nn_linear wq = dense(t, l, LP_Q, C, Q), wk = dense(t, l, LP_K, C, K),
                  wv = dense(t, l, LP_V, C, K);
    zero(t->dln, N * C);
    QKV_TRY(
        qkv_nn_linear_backward(rt, &wq, t->dln, qkv__tw(t, G, l, LP_Q), NULL, t->dqr, a->ln1, N));
    QKV_TRY(
        qkv_nn_linear_backward(rt, &wk, t->dln, qkv__tw(t, G, l, LP_K), NULL, t->dkr, a->ln1, N));
    QKV_TRY(
        qkv_nn_linear_backward(rt, &wv, t->dln, qkv__tw(t, G, l, LP_V), NULL, t->dv, a->ln1, N));
    return qkv_nn_rmsnorm_backward(rt, dr, qkv__tw(t, G, l, LP_LN1), t->dln, x,
                                   qkv__tw(t, W, l, LP_LN1), a->rstd1, N, C);
}

qkv_status qkv__llama_backward(qkv_runtime *rt, qkv_trainer *t, const qkv__tbatch *b) {
    const int64_t B = b->B, T = b->T, N = B * T, C = t->cfg.C, V = t->cfg.V, L = t->cfg.L;
    float *dhead = t->cfg.tied ? qkv__tpre(t, t->g, 0) : qkv__thead(t, t->g, 0);
    /* LM head: logits = lnf · headᵀ; t->logits holds dlogits */
    qkv_nn_linear head = lm_head(t);
    zero(t->dln, N * C);
    QKV_TRY(qkv_nn_linear_backward(rt, &head, t->dln, dhead, NULL, t->logits, t->lnf, N));
    zero(t->dresid, N * C);
    QKV_TRY(qkv_nn_rmsnorm_backward(rt, t->dresid, qkv__tpost(t, t->g, 0), t->dln,
                                    t->resid + L * N * C, qkv__tpost(t, t->w, 0), t->rstdf, N, C));
    for (int64_t l = L - 1; l >= 0; l--) {
        const float *x = t->resid + l * N * C;
        if (t->policy == QKV_RECOMPUTE_LAYERS)
            QKV_TRY(block_forward(rt, t, l, &t->layer[0], x, t->resid + (l + 1) * N * C, B, T));
        QKV_TRY(block_backward(rt, t, l, qkv__tacts_of(t, l), x, B, T));
    }
    return qkv_nn_embedding_backward(rt, qkv__tpre(t, t->g, 0), t->dresid, b->ids, N, V, C);
}
