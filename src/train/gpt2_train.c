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

#include "core/error.h"
#include "nn/nn.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---------------------------------------------------------------- layers */

/* The dense layers of block l: c_attn's q, k or v column slice (i = 0, 1, 2) and the others
 * (GPT-2's Conv1D weights are [in, out]). */
static qkv_nn_linear attn_slice(const qkv_trainer *t, int64_t l, int i) {
    const int64_t C = t->cfg.C;
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
    return (qkv_nn_linear){qkv__tpre(t, t->w, 0), NULL, t->cfg.C, t->cfg.V, 0, 0, NULL};
}

static void zero(float *p, int64_t n) { memset(p, 0, (size_t)n * sizeof(float)); }

/* ---------------------------------------------------------------- forward */

static void attn_desc(const qkv_trainer *t, int64_t B, int64_t T, qkv_attention_desc *d) {
    memset(d, 0, sizeof *d);
    d->batch = B;
    d->q_len = d->kv_len = T;
    d->n_heads = d->n_kv_heads = t->cfg.H;
    d->head_dim = t->cfg.C / t->cfg.H;
    d->causal = 1;
    d->window_left = d->window_right = -1;
}

/* Block l on x (N, C) -> y (N, C), saving into a. */
static qkv_status block_forward(qkv_runtime *rt, qkv_trainer *t, int64_t l, const qkv__tacts *a,
                                const float *x, float *y, int64_t B, int64_t T) {
    const int64_t N = B * T, C = t->cfg.C, F = 4 * C;
    float *W = t->w;
    QKV_TRY(qkv_nn_layernorm_forward(rt, a->ln1, a->mean1, a->rstd1, x, qkv__tw(t, W, l, TP_LN1_W),
                                     qkv__tw(t, W, l, TP_LN1_B), N, C, t->cfg.eps));
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
                                     t->cfg.eps));
    qkv_nn_linear fc = dense(t, l, TP_FC_W, TP_FC_B, C, F);
    QKV_TRY(qkv_nn_linear_forward(rt, &fc, a->h, a->ln2, N, QKV_ACT_NONE, NULL));
    QKV_TRY(qkv_nn_act_forward(rt, t->cfg.act, a->a, a->h, N * F));
    qkv_nn_linear mlp = dense(t, l, TP_MLP_W, TP_MLP_B, F, C);
    return qkv_nn_linear_forward(rt, &mlp, y, a->a, N, QKV_ACT_NONE, a->res2);
}

qkv_status qkv__gpt2_forward(qkv_runtime *rt, qkv_trainer *t, const qkv__tbatch *b, int backward,
                             float scale, float *loss) {
    const int64_t B = b->B, T = b->T, N = B * T, C = t->cfg.C, V = t->cfg.V, L = t->cfg.L;
    const int32_t *ids = b->ids;
    t->logits_valid = 0;
    const float *wte = qkv__tpre(t, t->w, 0), *wpe = qkv__tpre(t, t->w, 1);
    QKV_TRY(qkv_nn_embedding_forward(rt, t->resid, ids, wte, N, V, C));
    QKV_TRY(qkv_nn_position_add_forward(rt, t->resid, t->resid, wpe, B, T, C, t->cfg.P, 0));
    for (int64_t l = 0; l < L; l++)
        QKV_TRY(block_forward(rt, t, l, qkv__tacts_of(t, l), t->resid + l * N * C,
                              t->resid + (l + 1) * N * C, B, T));
    QKV_TRY(qkv_nn_layernorm_forward(rt, t->lnf, t->meanf, t->rstdf, t->resid + L * N * C,
                                     qkv__tpost(t, t->w, 0), qkv__tpost(t, t->w, 1), N, C,
                                     t->cfg.eps));
    qkv_nn_linear head = lm_head(t);
    QKV_TRY(qkv_nn_linear_forward(rt, &head, t->logits, t->lnf, N, QKV_ACT_NONE, NULL));
    return qkv__trainer_loss(rt, t, N, backward, scale, loss);
}

/* ---------------------------------------------------------------- backward */

/* dresid holds dL/d(block output); on return dL/d(block input). a must hold block l's saved
 * activations for input x. */
static qkv_status block_backward(qkv_runtime *rt, qkv_trainer *t, int64_t l, const qkv__tacts *a,
                                 const float *x, int64_t B, int64_t T) {
    const int64_t N = B * T, C = t->cfg.C, F = 4 * C;
    float *W = t->w;
    float *G = t->g, *dr = t->dresid;
    /* MLP: y = res2 + act(LN2(res2) · Wfc + bfc) · Wmlp + bmlp */
    qkv_nn_linear mlp = dense(t, l, TP_MLP_W, TP_MLP_B, F, C);
    zero(t->da, N * F);
    QKV_TRY(qkv_nn_linear_backward(rt, &mlp, t->da, qkv__tw(t, G, l, TP_MLP_W),
                                   qkv__tw(t, G, l, TP_MLP_B), dr, a->a, N));
    zero(t->dh, N * F);
    QKV_TRY(qkv_nn_act_backward(rt, t->cfg.act, t->dh, t->da, a->h, N * F));
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

qkv_status qkv__gpt2_backward(qkv_runtime *rt, qkv_trainer *t, const qkv__tbatch *b) {
    const int64_t B = b->B, T = b->T, N = B * T, C = t->cfg.C, V = t->cfg.V, L = t->cfg.L;
    const int32_t *ids = b->ids;
    float *dwte = qkv__tpre(t, t->g, 0), *dwpe = qkv__tpre(t, t->g, 1);
    /* LM head: logits = lnf · wteᵀ; t->logits holds dlogits */
    qkv_nn_linear head = lm_head(t);
    zero(t->dln, N * C);
    QKV_TRY(qkv_nn_linear_backward(rt, &head, t->dln, dwte, NULL, t->logits, t->lnf, N));
    zero(t->dresid, N * C);
    QKV_TRY(qkv_nn_layernorm_backward(rt, t->dresid, qkv__tpost(t, t->g, 0), qkv__tpost(t, t->g, 1),
                                      t->dln, t->resid + L * N * C, qkv__tpost(t, t->w, 0),
                                      t->meanf, t->rstdf, N, C));
    for (int64_t l = L - 1; l >= 0; l--) {
        const float *x = t->resid + l * N * C;
        if (t->policy == QKV_RECOMPUTE_LAYERS)
            QKV_TRY(block_forward(rt, t, l, &t->layer[0], x, t->resid + (l + 1) * N * C, B, T));
        QKV_TRY(block_backward(rt, t, l, qkv__tacts_of(t, l), x, B, T));
    }
    QKV_TRY(qkv_nn_embedding_backward(rt, dwte, t->dresid, ids, N, V, C));
    return qkv_nn_position_add_backward(rt, NULL, dwpe, t->dresid, B, T, C, t->cfg.P, 0);
}
