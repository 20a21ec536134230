/* decoder_train.c — training GPT-2 and Llama-style decoders (see trainer.h): the forward is the
 * models' own block (models/block.h, qkv__dec_block_forward, the one inference runs too) over
 * the trainer's weights; the backward calls the same layers' backwards in reverse.
 *
 * Block l on the residual stream x = resid[l] (N = B·T rows, C channels):
 *   ln1 = Norm1(x)  (GPT-2 LayerNorm, Llama RMSNorm)
 *   q, k, v = ln1·Wq, ln1·Wk, ln1·Wv (+ b)   GPT-2: the column slices of c_attn ([in, out])
 *   q, k = RoPE(q, k) (Llama);  att = causal flash attention (Hq/Hk query heads per KV head)
 *   res2 = x + att·Wo (+ bo)
 *   ln2 = Norm2(res2);  GPT-2: a = act(ln2·Wfc + bfc);  Llama: a = silu(ln2·Wgateᵀ) ∘ ln2·Wupᵀ
 *   resid[l+1] = res2 + a·Wproj (+ bproj)
 * then lnf = Norm_f(resid[L]), logits = lnf · headᵀ (wte / embed_tokens when tied, else
 * lm_head) and the mean cross-entropy. The backward keeps one running gradient of the residual
 * stream, dresid: each skip connection passes it through unchanged and each norm backward ADDS
 * its input gradient to it (the layers' += contract). The cross-entropy is fused: the logits are
 * overwritten with dlogits in place. Every layer is bit-identical for any thread count. */
#include "train/trainer.h"

#include "core/error.h"
#include "models/block.h"
#include "models/lora.h"
#include "nn/nn.h"

#include <string.h>

static qkv__dec_cfg dec_cfg(const qkv_trainer *t) {
    const qkv__tconfig *c = &t->cfg;
    return (qkv__dec_cfg){
        c->arch == QKV__TARCH_LLAMA, c->C, c->F, c->H * c->D, c->Hk * c->D, c->eps, c->act};
}

/* Block l's adapters (lora_train.c), if any, on its layers. */
static void attach_lora(const qkv_trainer *t, int64_t l, qkv__dec_layer *w) {
    qkv_nn_lora *s = qkv__tlora_slots(t);
    if (s) qkv__lora_attach_dec(w, s + qkv__lora_slot(l, 0));
}

/* Block l's layers over base (t->w) and, when g is not NULL, their gradients in t->g. */
static void dec_layer(const qkv_trainer *t, int64_t l, qkv__dec_layer *w, qkv__dec_grads *g) {
    const qkv__tconfig *c = &t->cfg;
    const int64_t C = c->C, F = c->F, Q = c->H * c->D, K = c->Hk * c->D;
    float *W = t->w;
    if (c->arch == QKV__TARCH_GPT2) { /* Conv1D [in, out]; q | k | v are c_attn's columns */
        float *wa = qkv__tw(t, W, l, TP_ATTN_W), *ba = qkv__tw(t, W, l, TP_ATTN_B);
        *w = (qkv__dec_layer){
            qkv__tw(t, W, l, TP_LN1_W),
            qkv__tw(t, W, l, TP_LN1_B),
            qkv__tw(t, W, l, TP_LN2_W),
            qkv__tw(t, W, l, TP_LN2_B),
            qkv_nn_linear_in_out(wa, ba, C, C, 3 * C),
            qkv_nn_linear_in_out(wa + C, ba + C, C, C, 3 * C),
            qkv_nn_linear_in_out(wa + 2 * C, ba + 2 * C, C, C, 3 * C),
            qkv_nn_linear_in_out(qkv__tw(t, W, l, TP_PROJ_W), qkv__tw(t, W, l, TP_PROJ_B), C, C, 0),
            qkv_nn_linear_in_out(qkv__tw(t, W, l, TP_FC_W), qkv__tw(t, W, l, TP_FC_B), C, F, 0),
            qkv_nn_linear_in_out(qkv__tw(t, W, l, TP_MLP_W), qkv__tw(t, W, l, TP_MLP_B), F, C, 0),
            {0},
            {0}, /* training: no fused products (block.h) */
            {0}};
        if (g) { /* frozen parameters: NULL, no gradient computed */
            float *gw = qkv__twg(t, l, TP_ATTN_W), *gb = qkv__twg(t, l, TP_ATTN_B);
            *g = (qkv__dec_grads){qkv__twg(t, l, TP_LN1_W),
                                  qkv__twg(t, l, TP_LN1_B),
                                  qkv__twg(t, l, TP_LN2_W),
                                  qkv__twg(t, l, TP_LN2_B),
                                  gw,
                                  gb,
                                  gw ? gw + C : NULL,
                                  gb ? gb + C : NULL,
                                  gw ? gw + 2 * C : NULL,
                                  gb ? gb + 2 * C : NULL,
                                  qkv__twg(t, l, TP_PROJ_W),
                                  qkv__twg(t, l, TP_PROJ_B),
                                  qkv__twg(t, l, TP_FC_W),
                                  qkv__twg(t, l, TP_FC_B),
                                  qkv__twg(t, l, TP_MLP_W),
                                  qkv__twg(t, l, TP_MLP_B),
                                  NULL};
        }
        attach_lora(t, l, w);
        return;
    }
    /* Llama: nn.Linear [out, in], no biases */
    *w = (qkv__dec_layer){qkv__tw(t, W, l, LP_LN1),
                          NULL,
                          qkv__tw(t, W, l, LP_LN2),
                          NULL,
                          qkv_nn_linear_dense(qkv__tw(t, W, l, LP_Q), NULL, C, Q),
                          qkv_nn_linear_dense(qkv__tw(t, W, l, LP_K), NULL, C, K),
                          qkv_nn_linear_dense(qkv__tw(t, W, l, LP_V), NULL, C, K),
                          qkv_nn_linear_dense(qkv__tw(t, W, l, LP_O), NULL, Q, C),
                          qkv_nn_linear_dense(qkv__tw(t, W, l, LP_UP), NULL, C, F),
                          qkv_nn_linear_dense(qkv__tw(t, W, l, LP_DOWN), NULL, F, C),
                          qkv_nn_linear_dense(qkv__tw(t, W, l, LP_GATE), NULL, C, F),
                          {0},
                          {0}}; /* training: no fused products (block.h) */
    if (g)
        *g = (qkv__dec_grads){.ln1_w = qkv__twg(t, l, LP_LN1),
                              .ln2_w = qkv__twg(t, l, LP_LN2),
                              .q_w = qkv__twg(t, l, LP_Q),
                              .k_w = qkv__twg(t, l, LP_K),
                              .v_w = qkv__twg(t, l, LP_V),
                              .o_w = qkv__twg(t, l, LP_O),
                              .fc_w = qkv__twg(t, l, LP_UP),
                              .proj_w = qkv__twg(t, l, LP_DOWN),
                              .gate_w = qkv__twg(t, l, LP_GATE)};
    attach_lora(t, l, w);
}

static qkv_nn_linear lm_head(const qkv_trainer *t, float *base) {
    const float *w = t->cfg.tied ? qkv__tpre(t, base, 0) : qkv__thead(t, base, 0);
    return qkv_nn_linear_dense(w, NULL, t->cfg.C, t->cfg.V);
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

typedef struct {
    const qkv_trainer *t;
    int64_t B, T;
} batch_ctx;

/* The attention of a training batch (block.h's qkv__attend_fn): RoPE at positions 0..T-1
 * (Llama), then causal attention over each sequence, lse kept for the backward. */
static qkv_status attend_batch(void *ctx, qkv_runtime *rt, int64_t l, const qkv__block_acts *a) {
    const batch_ctx *b = ctx;
    const qkv__tconfig *c = &b->t->cfg;
    (void)l;
    if (c->arch == QKV__TARCH_LLAMA) {
        const qkv_nn_rope rope = rope_of(b->t);
        QKV_TRY(qkv_nn_rope_forward(rt, a->q, a->q, &rope, b->B, b->T, c->H, c->D, 0));
        QKV_TRY(qkv_nn_rope_forward(rt, a->k, a->k, &rope, b->B, b->T, c->Hk, c->D, 0));
    }
    qkv_attention_desc d;
    attn_desc(b->t, b->B, b->T, &d);
    return qkv_attention_forward(rt, &d, a->q, a->k, a->v, a->att, a->lse);
}

static qkv_status block_forward(qkv_runtime *rt, qkv_trainer *t, int64_t l, const float *x,
                                float *y, int64_t B, int64_t T) {
    const qkv__dec_cfg dc = dec_cfg(t);
    qkv__dec_layer w;
    dec_layer(t, l, &w, NULL);
    batch_ctx bc = {t, B, T};
    return qkv__dec_block_forward(rt, &dc, &w, l, qkv__tacts_of(t, l), x, y, B * T, attend_batch,
                                  &bc);
}

static qkv_status final_norm(qkv_runtime *rt, qkv_trainer *t, const float *x, int64_t N) {
    const qkv__tconfig *c = &t->cfg;
    if (c->arch == QKV__TARCH_LLAMA)
        return qkv_nn_rmsnorm_forward(rt, t->lnf, t->rstdf, x, qkv__tpost(t, t->w, 0), N, c->C,
                                      c->eps);
    return qkv_nn_layernorm_forward(rt, t->lnf, t->meanf, t->rstdf, x, qkv__tpost(t, t->w, 0),
                                    qkv__tpost(t, t->w, 1), N, c->C, c->eps);
}

qkv_status qkv__decoder_forward(qkv_runtime *rt, qkv_trainer *t, const qkv__tbatch *b, int backward,
                                float scale, float *loss) {
    const qkv__tconfig *c = &t->cfg;
    const int64_t B = b->B, T = b->T, N = B * T, C = c->C, L = c->L;
    if (b->word_emb) /* attribution: given word embeddings (attribute.c) */
        memcpy(t->resid, b->word_emb, (size_t)(N * C) * sizeof(float));
    else
        QKV_TRY(qkv_nn_embedding_forward(rt, t->resid, b->ids, qkv__tpre(t, t->w, 0), N, c->V, C));
    if (c->arch == QKV__TARCH_GPT2)
        QKV_TRY(qkv_nn_position_add_forward(rt, t->resid, t->resid, qkv__tpre(t, t->w, 1), B, T, C,
                                            c->P, 0));
    for (int64_t l = 0; l < L; l++)
        QKV_TRY(block_forward(rt, t, l, t->resid + l * N * C, t->resid + (l + 1) * N * C, B, T));
    QKV_TRY(final_norm(rt, t, t->resid + L * N * C, N));
    qkv_nn_linear head = lm_head(t, t->w);
    QKV_TRY(qkv_nn_linear_forward(rt, &head, t->logits, t->lnf, N, QKV_ACT_NONE, NULL));
    return qkv__trainer_loss(rt, t, N, t->cfg.V, backward, scale, loss);
}

/* dresid holds dL/d(block output); on return dL/d(block input). a holds block l's activations
 * for input x. */
static qkv_status block_backward(qkv_runtime *rt, qkv_trainer *t, int64_t l,
                                 const qkv__block_acts *a, const float *x, int64_t B, int64_t T) {
    const qkv__tconfig *c = &t->cfg;
    const int llama = c->arch == QKV__TARCH_LLAMA;
    const int64_t N = B * T, C = c->C, F = c->F, Q = c->H * c->D, K = c->Hk * c->D;
    float *dr = t->dresid;
    qkv__dec_layer w;
    qkv__dec_grads g;
    dec_layer(t, l, &w, &g);
    /* MLP: y = res2 + a·Wproj (+ b), a = act(ln2·Wfc + b) or silu(ln2·Wgate) ∘ ln2·Wup */
    qkv__tzero(t->da, N * F);
    QKV_TRY(qkv_nn_linear_backward(rt, &w.proj, t->da, g.proj_w, g.proj_b, dr, a->a, N));
    qkv__tzero(t->dh, N * F);
    qkv__tzero(t->dln, N * C);
    if (llama) {
        qkv__tzero(t->du, N * F);
        QKV_TRY(qkv_nn_swiglu_backward(rt, t->dh, t->du, t->da, a->h, a->u, N * F));
        QKV_TRY(qkv_nn_linear_backward(rt, &w.gate, t->dln, g.gate_w, NULL, t->dh, a->ln2, N));
        QKV_TRY(qkv_nn_linear_backward(rt, &w.fc, t->dln, g.fc_w, NULL, t->du, a->ln2, N));
        QKV_TRY(qkv_nn_rmsnorm_backward(rt, dr, g.ln2_w, t->dln, a->res2, w.ln2_w, a->rstd2, N, C));
    } else {
        QKV_TRY(qkv_nn_act_backward(rt, c->act, t->dh, t->da, a->h, N * F));
        QKV_TRY(qkv_nn_linear_backward(rt, &w.fc, t->dln, g.fc_w, g.fc_b, t->dh, a->ln2, N));
        QKV_TRY(qkv_nn_layernorm_backward(rt, dr, g.ln2_w, g.ln2_b, t->dln, a->res2, w.ln2_w,
                                          a->mean2, a->rstd2, N, C));
    }
    /* attention: res2 = x + att·Wo (+ b), att = attention(RoPE(ln1·Wq), RoPE(ln1·Wk), ln1·Wv) */
    qkv__tzero(t->datt, N * Q);
    QKV_TRY(qkv_nn_linear_backward(rt, &w.o, t->datt, g.o_w, g.o_b, dr, a->att, N));
    qkv_attention_desc d;
    attn_desc(t, B, T, &d);
    QKV_TRY(qkv_attention_backward(rt, &d, a->q, a->k, a->v, a->att, a->lse, t->datt, t->dq, t->dk,
                                   t->dv));
    const float *dq = t->dq, *dk = t->dk;
    if (llama) { /* back through the rotation */
        const qkv_nn_rope rope = rope_of(t);
        qkv__tzero(t->dqr, N * Q);
        qkv__tzero(t->dkr, N * K);
        QKV_TRY(qkv_nn_rope_backward(rt, t->dqr, t->dq, &rope, B, T, c->H, c->D, 0));
        QKV_TRY(qkv_nn_rope_backward(rt, t->dkr, t->dk, &rope, B, T, c->Hk, c->D, 0));
        dq = t->dqr, dk = t->dkr;
    }
    qkv__tzero(t->dln, N * C);
    QKV_TRY(qkv_nn_linear_backward(rt, &w.q, t->dln, g.q_w, g.q_b, dq, a->ln1, N));
    QKV_TRY(qkv_nn_linear_backward(rt, &w.k, t->dln, g.k_w, g.k_b, dk, a->ln1, N));
    QKV_TRY(qkv_nn_linear_backward(rt, &w.v, t->dln, g.v_w, g.v_b, t->dv, a->ln1, N));
    if (llama) return qkv_nn_rmsnorm_backward(rt, dr, g.ln1_w, t->dln, x, w.ln1_w, a->rstd1, N, C);
    return qkv_nn_layernorm_backward(rt, dr, g.ln1_w, g.ln1_b, t->dln, x, w.ln1_w, a->mean1,
                                     a->rstd1, N, C);
}

qkv_status qkv__decoder_backward(qkv_runtime *rt, qkv_trainer *t, const qkv__tbatch *b) {
    const qkv__tconfig *c = &t->cfg;
    const int64_t B = b->B, T = b->T, N = B * T, C = c->C, L = c->L;
    const float *xl = t->resid + L * N * C;
    /* LM head: logits = lnf · headᵀ; t->logits holds dlogits */
    qkv_nn_linear head = lm_head(t, t->w);
    float *dhead = c->tied ? qkv__tpreg(t, 0) : qkv__theadg(t, 0);
    qkv__tzero(t->dln, N * C);
    QKV_TRY(qkv_nn_linear_backward(rt, &head, t->dln, dhead, NULL, t->logits, t->lnf, N));
    qkv__tzero(t->dresid, N * C);
    if (c->arch == QKV__TARCH_LLAMA)
        QKV_TRY(qkv_nn_rmsnorm_backward(rt, t->dresid, qkv__tpostg(t, 0), t->dln, xl,
                                        qkv__tpost(t, t->w, 0), t->rstdf, N, C));
    else
        QKV_TRY(qkv_nn_layernorm_backward(rt, t->dresid, qkv__tpostg(t, 0), qkv__tpostg(t, 1),
                                          t->dln, xl, qkv__tpost(t, t->w, 0), t->meanf, t->rstdf, N,
                                          C));
    for (int64_t l = L - 1; l >= 0; l--) {
        const float *x = t->resid + l * N * C;
        if (t->policy == QKV_RECOMPUTE_LAYERS)
            QKV_TRY(block_forward(rt, t, l, x, t->resid + (l + 1) * N * C, B, T));
        QKV_TRY(block_backward(rt, t, l, qkv__tacts_of(t, l), x, B, T));
        if (t->layer_hook) t->layer_hook(t->layer_hook_user, l);
    }
    QKV_TRY(qkv_nn_embedding_backward(rt, qkv__tpreg(t, 0), t->dresid, b->ids, N, c->V, C));
    if (c->arch == QKV__TARCH_GPT2)
        return qkv_nn_position_add_backward(rt, NULL, qkv__tpreg(t, 1), t->dresid, B, T, C, c->P,
                                            0);
    return QKV_OK;
}
