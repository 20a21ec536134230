/* bert_train.c — training a BERT encoder (see trainer.h) with the masked-LM head
 * (BertForMaskedLM) or the sequence-classification head (BertForSequenceClassification): the
 * blocks' forward is the models' own (models/block.h, qkv__enc_block_forward, the one inference
 * runs too); the rest is a list of calls into the layer library (src/nn). As transformers
 * computes it, drop() being dropout while training (classifiers only; p = 0 otherwise):
 *
 *   emb = drop(LN_e(word[ids] + pos[t] + type[types]))                resid[0]
 * block l (post-LN), on x = resid[l] (N = B·T rows, C channels):
 *   q, k, v = x Wᵀ + b;  att = attention(q, k, v), keys past kv_lens[b] masked (padding),
 *                        dropout on the probabilities
 *   res1 = x + drop(att Woᵀ + bo);      ln1 = LN1(res1)
 *   h = ln1 W1ᵀ + b1;  a = act(h);      res2 = ln1 + drop(a W2ᵀ + b2)
 *   resid[l+1] = LN2(res2)
 * MLM head: head = resid[L] Wtᵀ + bt;  lnf = LN_t(act(head));  logits = lnf · wordᵀ + cls.bias,
 *   then the mean cross-entropy over the labelled rows (targets -1 / -100 elsewhere).
 * Classification head, on the first token ([CLS]) of each sequence:
 *   pooled = tanh(resid[L][CLS] Wpᵀ + bp);  logits = drop(pooled) Wcᵀ + bc   (B, NL)
 *   then cross-entropy (single label), binary cross-entropy with logits (multi-label) or the
 *   mean squared error (regression).
 *
 * The backward calls the same layers' backwards in reverse. With post-LN the running gradient
 * t->dresid is dL/d(block output) on entry and dL/d(block input) on exit: LayerNorm backwards
 * start fresh sums, the skip connections add the running gradient into them. Dropout masks are
 * pure functions of (seed, stream, index), so the backward (and a recomputed forward) regenerate
 * them. */
#include "train/trainer.h"

#include "core/error.h"
#include "models/block.h"
#include "models/lora.h"
#include "nn/nn.h"

#include <string.h>

/* Dense layer of block l with weight row `w` and bias row `w + 1` (BP_*): w (out, in). */
static qkv_nn_linear dense(const qkv_trainer *t, int64_t l, int w, int64_t in, int64_t out) {
    return qkv_nn_linear_dense(qkv__tw(t, t->w, l, w), qkv__tw(t, t->w, l, w + 1), in, out);
}

/* Dropout rates of this forward: the config's while training, 0 otherwise. */
static float p_hidden(const qkv_trainer *t, const qkv__tbatch *b) {
    return b->train ? t->cfg.p_hidden : 0.0f;
}

/* The seeds of the attention-probability masks (one per layer) and the classifier's stream. */
static uint64_t attn_seed(const qkv__tbatch *b, int64_t l) {
    return b->seed * 0x9E3779B97F4A7C15ull + 0xA77Eull + (uint64_t)l;
}
#define CLS_DROP_STREAM ((uint64_t)1 << 40)

static void attn_desc(const qkv_trainer *t, const qkv__tbatch *b, int64_t l,
                      qkv_attention_desc *d) {
    memset(d, 0, sizeof *d);
    d->batch = b->B;
    d->q_len = d->kv_len = b->T;
    d->n_heads = d->n_kv_heads = t->cfg.H;
    d->head_dim = t->cfg.D;
    d->window_left = d->window_right = -1;
    d->kv_lens = b->kv_lens;
    if (b->train && t->cfg.p_attn > 0.0f) {
        d->dropout_p = t->cfg.p_attn;
        d->dropout_seed = attn_seed(b, l);
    }
}

/* Block l's layers over t->w (the models' encoder block, models/block.h), with its adapters. */
static qkv__enc_layer enc_layer(const qkv_trainer *t, int64_t l) {
    const int64_t C = t->cfg.C, F = t->cfg.F;
    float *W = t->w;
    qkv__enc_layer e = {dense(t, l, BP_Q_W, C, C),  dense(t, l, BP_K_W, C, C),
                        dense(t, l, BP_V_W, C, C),  dense(t, l, BP_O_W, C, C),
                        dense(t, l, BP_FC_W, C, F), dense(t, l, BP_OUT_W, F, C),
                        qkv__tw(t, W, l, BP_LN1_W), qkv__tw(t, W, l, BP_LN1_B),
                        qkv__tw(t, W, l, BP_LN2_W), qkv__tw(t, W, l, BP_LN2_B)};
    qkv_nn_lora *s = qkv__tlora_slots(t);
    if (s) qkv__lora_attach_enc(&e, s + qkv__lora_slot(l, 0));
    return e;
}

/* A head layer with the adapter of head slot k (models/lora.h), if any. */
static qkv_nn_linear with_head_lora(const qkv_trainer *t, qkv_nn_linear x, int k) {
    qkv_nn_lora *s = qkv__tlora_slots(t);
    if (s && s[qkv__lora_head_slot(t->cfg.L, k)].r > 0)
        x.lora = &s[qkv__lora_head_slot(t->cfg.L, k)];
    return x;
}

typedef struct {
    const qkv_trainer *t;
    const qkv__tbatch *b;
} batch_ctx;

/* The attention of a training batch (block.h's qkv__attend_fn): each sequence over its real
 * tokens (keys past kv_lens[b] masked), lse kept for the backward. */
static qkv_status attend_batch(void *ctx, qkv_runtime *rt, int64_t l, const qkv__block_acts *a) {
    const batch_ctx *bc = ctx;
    qkv_attention_desc d;
    attn_desc(bc->t, bc->b, l, &d);
    return qkv_attention_forward(rt, &d, a->q, a->k, a->v, a->att, a->lse);
}

/* The encoder block's config for this forward. */
static qkv__enc_cfg enc_cfg(const qkv_trainer *t, const qkv__tbatch *b) {
    return (qkv__enc_cfg){t->cfg.C,
                          t->cfg.F,
                          t->cfg.eps,
                          t->cfg.act,
                          p_hidden(t, b),
                          b->seed,
                          b->train ? t->cfg.p_act : 0.0f};
}

qkv_status qkv__bert_block_forward(qkv_runtime *rt, qkv_trainer *t, int64_t l, const qkv__tacts *a,
                                   const float *x, float *y, const qkv__tbatch *b) {
    const qkv__enc_cfg ec = enc_cfg(t, b);
    const qkv__enc_layer w = enc_layer(t, l);
    batch_ctx bc = {t, b};
    return qkv__enc_block_forward(rt, &ec, &w, l, a, x, y, b->B * b->T, attend_batch, &bc);
}

/* The MLM decoder: logits = lnf · wordᵀ + cls.predictions.bias. */
static qkv_nn_linear decoder(const qkv_trainer *t) {
    return (qkv_nn_linear){
        .w = qkv__tpre(t, t->w, 0), .b = qkv__thead(t, t->w, 0), .C = t->cfg.C, .OC = t->cfg.V};
}

static qkv_nn_linear transform(const qkv_trainer *t) {
    return with_head_lora(
        t, qkv_nn_linear_dense(qkv__thead(t, t->w, 1), qkv__thead(t, t->w, 2), t->cfg.C, t->cfg.C),
        QKV__LS_TRANSFORM);
}

static int cls_rows_only(const qkv_trainer *t, const qkv__tbatch *b);
static qkv_status cls_block_forward(qkv_runtime *rt, qkv_trainer *t, int64_t l, const qkv__tacts *a,
                                    const float *x, const qkv__tbatch *b);
static qkv_status cls_block_backward(qkv_runtime *rt, qkv_trainer *t, int64_t l,
                                     const qkv__tacts *a, const float *x, const qkv__tbatch *b);

/* Embeddings and blocks: resid[0..L] from the batch; with cls (cls_rows_only), resid[0..L-1]
 * and the last block's output at the [CLS] rows into t->cls_x. */
static qkv_status encoder_forward(qkv_runtime *rt, qkv_trainer *t, const qkv__tbatch *b, int cls) {
    const qkv__tconfig *c = &t->cfg;
    const int64_t B = b->B, T = b->T, N = B * T, C = c->C, L = c->L;
    float *W = t->w;
    if (b->word_emb) /* attribution: given word embeddings (attribute.c) */
        memcpy(t->emb, b->word_emb, (size_t)(N * C) * sizeof(float));
    else
        QKV_TRY(qkv_nn_embedding_forward(rt, t->emb, b->ids, qkv__tpre(t, W, 0), N, c->V, C));
    QKV_TRY(qkv_nn_position_add_forward(rt, t->emb, t->emb, qkv__tpre(t, W, 1), B, T, C, c->P, 0));
    if (b->types)
        QKV_TRY(
            qkv_nn_embedding_add_forward(rt, t->emb, b->types, qkv__tpre(t, W, 2), N, c->TV, C));
    else /* every token of type 0: row 0 of the table added to all N rows */
        QKV_TRY(
            qkv_nn_position_add_forward(rt, t->emb, t->emb, qkv__tpre(t, W, 2), N, 1, C, c->TV, 0));
    QKV_TRY(qkv_nn_layernorm_forward(rt, t->resid, t->emb_mean, t->emb_rstd, t->emb,
                                     qkv__tpre(t, W, 3), qkv__tpre(t, W, 4), N, C, c->eps));
    if (p_hidden(t, b) > 0.0f)
        QKV_TRY(qkv_nn_dropout_forward(rt, t->resid, t->resid, N * C, p_hidden(t, b), b->seed, 0));
    for (int64_t l = 0; l < L; l++) {
        if (cls && l == L - 1)
            return cls_block_forward(rt, t, l, qkv__tacts_of(t, l), t->resid + l * N * C, b);
        QKV_TRY(qkv__bert_block_forward(rt, t, l, qkv__tacts_of(t, l), t->resid + l * N * C,
                                        t->resid + (l + 1) * N * C, b));
    }
    return QKV_OK;
}

qkv_status qkv__bert_encode_forward(qkv_runtime *rt, qkv_trainer *t, const qkv__tbatch *b) {
    return encoder_forward(rt, t, b, 0);
}

qkv_status qkv__bert_mlm_forward(qkv_runtime *rt, qkv_trainer *t, const qkv__tbatch *b,
                                 int backward, float scale, float *loss) {
    const qkv__tconfig *c = &t->cfg;
    const int64_t N = b->B * b->T, C = c->C, L = c->L;
    float *W = t->w;
    QKV_TRY(encoder_forward(rt, t, b, 0));
    qkv_nn_linear tr = transform(t), dec = decoder(t);
    QKV_TRY(qkv_nn_linear_forward(rt, &tr, t->head, t->resid + L * N * C, N, QKV_ACT_NONE, NULL));
    QKV_TRY(qkv_nn_act_forward(rt, c->act, t->head_act, t->head, N * C));
    QKV_TRY(qkv_nn_layernorm_forward(rt, t->lnf, t->meanf, t->rstdf, t->head_act,
                                     qkv__thead(t, W, 3), qkv__thead(t, W, 4), N, C, c->eps));
    QKV_TRY(qkv_nn_linear_forward(rt, &dec, t->logits, t->lnf, N, QKV_ACT_NONE, NULL));
    return qkv__trainer_loss(rt, t, N, c->V, backward, scale, loss);
}

/* The block's backward past its attention, on N rows: from dy = dL/d(block output), dres1 =
 * dL/dres1 (which the skip passes to the block input; may be dy's buffer) and t->datt =
 * dL/d(attention output), with the gradients of O, the MLP and both LayerNorms. */
static qkv_status block_tail_backward(qkv_runtime *rt, qkv_trainer *t, int64_t l,
                                      const qkv__enc_layer *w, const qkv__tacts *a,
                                      const qkv__tbatch *b, int64_t N, const float *dy,
                                      float *dres1) {
    const qkv__tconfig *c = &t->cfg;
    const int64_t C = c->C, F = c->F;
    float *dx1 = t->dx1;
    /* y = LN2(res2), res2 = ln1 + act(ln1 W1ᵀ + b1) W2ᵀ + b2 */
    QKV_TRY(qkv_nn_layernorm_backward_set(rt, dx1, qkv__twg(t, l, BP_LN2_W),
                                          qkv__twg(t, l, BP_LN2_B), dy, a->res2, w->ln2_w, a->mean2,
                                          a->rstd2, N, C));
    const float p = p_hidden(t, b);
    const float *dmlp = dx1; /* dL/d(a W2ᵀ + b2): through the dropout when there is one */
    if (p > 0.0f) {
        QKV_TRY(qkv_nn_dropout_backward_set(rt, t->dln, dx1, N * C, p, b->seed,
                                            qkv__enc_drop_stream(l, 1)));
        dmlp = t->dln;
    }
    const float pa = b->train ? c->p_act : 0.0f; /* Marian's activation_dropout */
    if (pa == 0.0f && !w->out.lora) /* dh = act'(h) ⊙ (dmlp · W2), in the GEMM's epilogue */
        QKV_TRY(qkv_nn_linear_backward_act_set(rt, &w->out, t->dh, qkv__twg(t, l, BP_OUT_W),
                                               qkv__twg(t, l, BP_OUT_B), dmlp, a->a, N, c->act,
                                               a->h));
    else
        QKV_TRY(qkv_nn_linear_backward_set(rt, &w->out, t->da, qkv__twg(t, l, BP_OUT_W),
                                           qkv__twg(t, l, BP_OUT_B), dmlp, a->a, N));
    if (pa > 0.0f) {
        QKV_TRY(qkv_nn_dropout_backward_set(
            rt, t->dh, t->da, N * F, pa, b->seed ^ QKV__ACT_DROP_SEED, qkv__enc_drop_stream(l, 0)));
        memcpy(t->da, t->dh, (size_t)(N * F) * sizeof(float));
    }
    if (pa > 0.0f || w->out.lora)
        QKV_TRY(qkv_nn_act_backward_set(rt, c->act, t->dh, t->da, a->h, N * F));
    QKV_TRY(qkv_nn_linear_backward(rt, &w->fc, dx1, qkv__twg(t, l, BP_FC_W),
                                   qkv__twg(t, l, BP_FC_B), t->dh, a->ln1, N));
    /* ln1 = LN1(res1), res1 = x + att Woᵀ + bo */
    QKV_TRY(qkv_nn_layernorm_backward_set(rt, dres1, qkv__twg(t, l, BP_LN1_W),
                                          qkv__twg(t, l, BP_LN1_B), dx1, a->res1, w->ln1_w,
                                          a->mean1, a->rstd1, N, C));
    const float *datt_out = dres1; /* dL/d(att Woᵀ + bo) */
    if (p > 0.0f) {
        QKV_TRY(qkv_nn_dropout_backward_set(rt, t->dln, dres1, N * C, p, b->seed,
                                            qkv__enc_drop_stream(l, 0)));
        datt_out = t->dln;
    }
    QKV_TRY(qkv_nn_linear_backward_set(rt, &w->o, t->datt, qkv__twg(t, l, BP_O_W),
                                       qkv__twg(t, l, BP_O_B), datt_out, a->att, N));
    return QKV_OK;
}

/* dresid holds dL/d(block output); on return dL/d(block input). Each gradient buffer's first
 * term overwrites it (the layers' _set forms, nn.h) instead of zeroing it and adding. */
qkv_status qkv__bert_block_backward(qkv_runtime *rt, qkv_trainer *t, int64_t l, const qkv__tacts *a,
                                    const float *x, const qkv__tbatch *b) {
    const int64_t N = b->B * b->T;
    float *dr = t->dresid;
    const qkv__enc_layer w = enc_layer(t, l);
    QKV_TRY(block_tail_backward(rt, t, l, &w, a, b, N, dr, dr));
    qkv_attention_desc d;
    attn_desc(t, b, l, &d);
    QKV_TRY(qkv_attention_backward(rt, &d, a->q, a->k, a->v, a->att, a->lse, t->datt, t->dq, t->dk,
                                   t->dv));
    const int ws[3] = {BP_Q_W, BP_K_W, BP_V_W};
    const qkv_nn_linear *lin[3] = {&w.q, &w.k, &w.v};
    const float *dqkv[3] = {t->dq, t->dk, t->dv};
    for (int i = 0; i < 3; i++)
        QKV_TRY(qkv_nn_linear_backward(rt, lin[i], dr, qkv__twg(t, l, ws[i]),
                                       qkv__twg(t, l, ws[i] + 1), dqkv[i], x, N));
    return QKV_OK;
}

/* From t->dresid = dL/d(resid[L]) (with cls: from t->dcls = dL/d(cls_x), the last block
 * being encoder_forward's [CLS]-rows one): the blocks' and the embeddings' gradients. */
static qkv_status encoder_backward(qkv_runtime *rt, qkv_trainer *t, const qkv__tbatch *b, int cls) {
    const qkv__tconfig *c = &t->cfg;
    const int64_t B = b->B, T = b->T, N = B * T, C = c->C, L = c->L;
    float *W = t->w;
    for (int64_t l = L - 1; l >= 0; l--) {
        const float *x = t->resid + l * N * C;
        const int rows = cls && l == L - 1;
        if (t->policy == QKV_RECOMPUTE_LAYERS)
            QKV_TRY(rows ? cls_block_forward(rt, t, l, &t->layer[0], x, b)
                         : qkv__bert_block_forward(rt, t, l, &t->layer[0], x,
                                                   t->resid + (l + 1) * N * C, b));
        if (rows)
            QKV_TRY(cls_block_backward(rt, t, l, qkv__tacts_of(t, l), x, b));
        else
            QKV_TRY(qkv__bert_block_backward(rt, t, l, qkv__tacts_of(t, l), x, b));
        if (t->layer_hook) t->layer_hook(t->layer_hook_user, l);
    }
    /* embeddings: resid[0] = drop(LN_e(emb)); nothing to do when all are frozen (LoRA), unless
     * an attribution asks for dL/d(emb) */
    int any = b->word_emb != NULL;
    for (int i = 0; i < 5; i++) any |= qkv__tpreg(t, i) != NULL;
    if (!any) return QKV_OK;
    const float *demb = t->dresid;
    if (p_hidden(t, b) > 0.0f) {
        QKV_TRY(
            qkv_nn_dropout_backward_set(rt, t->dln, t->dresid, N * C, p_hidden(t, b), b->seed, 0));
        demb = t->dln;
    }
    QKV_TRY(qkv_nn_layernorm_backward_set(rt, t->dx1, qkv__tpreg(t, 3), qkv__tpreg(t, 4), demb,
                                          t->emb, qkv__tpre(t, W, 3), t->emb_mean, t->emb_rstd, N,
                                          C));
    QKV_TRY(qkv_nn_embedding_backward(rt, qkv__tpreg(t, 0), t->dx1, b->ids, N, c->V, C));
    QKV_TRY(qkv_nn_position_add_backward(rt, NULL, qkv__tpreg(t, 1), t->dx1, B, T, C, c->P, 0));
    if (b->types)
        return qkv_nn_embedding_backward(rt, qkv__tpreg(t, 2), t->dx1, b->types, N, c->TV, C);
    return qkv_nn_position_add_backward(rt, NULL, qkv__tpreg(t, 2), t->dx1, N, 1, C, c->TV, 0);
}

qkv_status qkv__bert_encode_backward(qkv_runtime *rt, qkv_trainer *t, const qkv__tbatch *b) {
    return encoder_backward(rt, t, b, 0);
}

qkv_status qkv__bert_mlm_backward(qkv_runtime *rt, qkv_trainer *t, const qkv__tbatch *b) {
    const qkv__tconfig *c = &t->cfg;
    const int64_t N = b->B * b->T, C = c->C, L = c->L;
    float *W = t->w;
    /* head: t->logits holds dlogits */
    qkv_nn_linear tr = transform(t), dec = decoder(t);
    qkv__tzero(t->dln, N * C);
    QKV_TRY(qkv_nn_linear_backward(rt, &dec, t->dln, qkv__tpreg(t, 0), qkv__theadg(t, 0), t->logits,
                                   t->lnf, N));
    qkv__tzero(t->dx1, N * C);
    QKV_TRY(qkv_nn_layernorm_backward(rt, t->dx1, qkv__theadg(t, 3), qkv__theadg(t, 4), t->dln,
                                      t->head_act, qkv__thead(t, W, 3), t->meanf, t->rstdf, N, C));
    qkv__tzero(t->dln, N * C);
    QKV_TRY(qkv_nn_act_backward(rt, c->act, t->dln, t->dx1, t->head, N * C));
    qkv__tzero(t->dresid, N * C);
    QKV_TRY(qkv_nn_linear_backward(rt, &tr, t->dresid, qkv__theadg(t, 1), qkv__theadg(t, 2), t->dln,
                                   t->resid + L * N * C, N));
    return encoder_backward(rt, t, b, 0);
}

/* ---------------------------------------------------------------- classification head */

/* The pooler (post rows) and the classifier (head rows). */
static qkv_nn_linear pooler(const qkv_trainer *t) {
    return with_head_lora(
        t, qkv_nn_linear_dense(qkv__tpost(t, t->w, 0), qkv__tpost(t, t->w, 1), t->cfg.C, t->cfg.C),
        QKV__LS_POOLER);
}
static qkv_nn_linear classifier(const qkv_trainer *t) {
    return (qkv_nn_linear){
        .w = qkv__thead(t, t->w, 0), .b = qkv__thead(t, t->w, 1), .C = t->cfg.C, .OC = t->cfg.NL};
}

qkv_status qkv__bert_cls_forward(qkv_runtime *rt, qkv_trainer *t, const qkv__tbatch *b,
                                 int backward, float scale, float *loss) {
    const qkv__tconfig *c = &t->cfg;
    const int64_t B = b->B, T = b->T, N = B * T, C = c->C, L = c->L, NL = c->NL;
    const int rows = cls_rows_only(t, b);
    QKV_TRY(encoder_forward(rt, t, b, rows));
    const float *h = t->resid + L * N * C;
    for (int64_t i = 0; !rows && i < B; i++) /* the [CLS] row of each sequence */
        memcpy(t->cls_x + i * C, h + i * T * C, (size_t)C * sizeof(float));
    qkv_nn_linear pool = pooler(t), cl = classifier(t);
    QKV_TRY(qkv_nn_linear_forward(rt, &pool, t->pool_h, t->cls_x, B, QKV_ACT_NONE, NULL));
    QKV_TRY(qkv_nn_act_forward(rt, QKV_ACT_TANH, t->pool_a, t->pool_h, B * C));
    const float p = b->train ? c->p_cls : 0.0f;
    QKV_TRY(qkv_nn_dropout_forward(rt, t->pool_d, t->pool_a, B * C, p, b->seed, CLS_DROP_STREAM));
    QKV_TRY(qkv_nn_linear_forward(rt, &cl, t->logits, t->pool_d, B, QKV_ACT_NONE, NULL));
    if (c->problem == QKV_PROBLEM_SINGLE_LABEL)
        return qkv__trainer_loss(rt, t, B, NL, backward, scale, loss);
    /* multi-label / regression: the loss over all B·NL logits; with backward the logits
     * become their gradient (t->row_loss, (B, NL) floats, holds them meanwhile) */
    if (c->problem == QKV_PROBLEM_MULTI_LABEL)
        QKV_TRY(qkv_nn_bce_logits_forward(loss, t->logits, b->values, B * NL));
    else
        QKV_TRY(qkv_nn_mse_forward(loss, t->logits, b->values, B * NL));
    t->logits_valid = !backward;
    if (!backward) return QKV_OK;
    float *d = t->dpool; /* (B, C) >= (B, NL) floats of scratch */
    qkv__tzero(d, B * NL);
    if (c->problem == QKV_PROBLEM_MULTI_LABEL)
        QKV_TRY(qkv_nn_bce_logits_backward(d, scale, t->logits, b->values, B * NL));
    else
        QKV_TRY(qkv_nn_mse_backward(d, scale, t->logits, b->values, B * NL));
    memcpy(t->logits, d, (size_t)(B * NL) * sizeof(float));
    return QKV_OK;
}

qkv_status qkv__bert_cls_backward(qkv_runtime *rt, qkv_trainer *t, const qkv__tbatch *b) {
    const qkv__tconfig *c = &t->cfg;
    const int64_t B = b->B, T = b->T, N = B * T, C = c->C;
    qkv_nn_linear pool = pooler(t), cl = classifier(t);
    /* t->logits holds dlogits */
    qkv__tzero(t->dpool, B * C);
    QKV_TRY(qkv_nn_linear_backward(rt, &cl, t->dpool, qkv__theadg(t, 0), qkv__theadg(t, 1),
                                   t->logits, t->pool_d, B));
    qkv__tzero(t->dcls, B * C);
    QKV_TRY(qkv_nn_dropout_backward(rt, t->dcls, t->dpool, B * C, b->train ? c->p_cls : 0.0f,
                                    b->seed, CLS_DROP_STREAM));
    qkv__tzero(t->dpool, B * C);
    QKV_TRY(qkv_nn_act_backward(rt, QKV_ACT_TANH, t->dpool, t->dcls, t->pool_h, B * C));
    qkv__tzero(t->dcls, B * C);
    QKV_TRY(qkv_nn_linear_backward(rt, &pool, t->dcls, qkv__tpostg(t, 0), qkv__tpostg(t, 1),
                                   t->dpool, t->cls_x, B));
    if (cls_rows_only(t, b)) return encoder_backward(rt, t, b, 1);
    qkv__tzero(t->dresid, N * C);
    for (int64_t i = 0; i < B; i++)
        memcpy(t->dresid + i * T * C, t->dcls + i * C, (size_t)C * sizeof(float));
    return encoder_backward(rt, t, b, 0);
}

/* ---------------------------------------------------------------- the last block on [CLS] rows
 *
 * The classifier reads the last block's output only at the first token of each sequence, and
 * past its attention a block works row by row: the keys and values need all N rows of x, but
 * the queries, the attention output and everything after them only the B [CLS] rows. So the
 * last block runs on those rows alone (transformers runs all N; the other rows' output has
 * gradient 0 and adds nothing, so the loss and every gradient are the full block's, up to the
 * order of float sums). Its dropout masks are drawn over the compacted (B, ·) tensors, a
 * different draw than over (N, ·) ones, the same in forward, recomputed forward and backward.
 * The compacted tensors live in the first B rows of the layer's (N, ·) buffers; T >= 2 leaves
 * room for x's [CLS] rows after q's. Encoders with activation dropout (Marian) don't come here. */

static int cls_rows_only(const qkv_trainer *t, const qkv__tbatch *b) {
    return b->T >= 2 && !(b->train && t->cfg.p_act > 0.0f);
}

/* x's [CLS] rows, kept beside the compacted queries. */
static float *cls_x_rows(const qkv__tacts *a, int64_t B, int64_t C) { return a->q + B * C; }

static void cls_attn_desc(const qkv_trainer *t, const qkv__tbatch *b, int64_t l,
                          qkv_attention_desc *d) {
    attn_desc(t, b, l, d);
    d->q_len = 1; /* the [CLS] query of each sequence against all its keys */
}

/* Writes the block's output at the [CLS] rows to t->cls_x (B, C). */
static qkv_status cls_block_forward(qkv_runtime *rt, qkv_trainer *t, int64_t l, const qkv__tacts *a,
                                    const float *x, const qkv__tbatch *b) {
    const qkv__tconfig *c = &t->cfg;
    const int64_t B = b->B, T = b->T, N = B * T, C = c->C;
    const qkv__enc_layer w = enc_layer(t, l);
    float *xc = cls_x_rows(a, B, C);
    for (int64_t i = 0; i < B; i++) memcpy(xc + i * C, x + i * T * C, (size_t)C * sizeof(float));
    QKV_TRY(qkv_nn_linear_forward(rt, &w.q, a->q, xc, B, QKV_ACT_NONE, NULL));
    QKV_TRY(qkv_nn_linear_forward(rt, &w.k, a->k, x, N, QKV_ACT_NONE, NULL));
    QKV_TRY(qkv_nn_linear_forward(rt, &w.v, a->v, x, N, QKV_ACT_NONE, NULL));
    qkv_attention_desc d;
    cls_attn_desc(t, b, l, &d);
    QKV_TRY(qkv_attention_forward(rt, &d, a->q, a->k, a->v, a->att, a->lse));
    const qkv__enc_cfg ec = enc_cfg(t, b);
    return qkv__enc_block_tail_forward(rt, &ec, &w, l, a, xc, t->cls_x, B);
}

/* From t->dcls = dL/d(cls_x): the block's gradients, and t->dresid = dL/dx for all N rows. */
static qkv_status cls_block_backward(qkv_runtime *rt, qkv_trainer *t, int64_t l,
                                     const qkv__tacts *a, const float *x, const qkv__tbatch *b) {
    const qkv__tconfig *c = &t->cfg;
    const int64_t B = b->B, T = b->T, N = B * T, C = c->C;
    const qkv__enc_layer w = enc_layer(t, l);
    float *dr = t->dresid, *dres1 = t->dx1 + B * C; /* (B, C) past t->dx1's (B, C) */
    QKV_TRY(block_tail_backward(rt, t, l, &w, a, b, B, t->dcls, dres1));
    qkv_attention_desc d;
    cls_attn_desc(t, b, l, &d);
    QKV_TRY(qkv_attention_backward(rt, &d, a->q, a->k, a->v, a->att, a->lse, t->datt, t->dq, t->dk,
                                   t->dv));
    /* dx = dk·Wk + dv·Wv over all rows; at the [CLS] rows also dq·Wq and the skip's dres1 */
    QKV_TRY(qkv_nn_linear_backward_set(rt, &w.k, dr, qkv__twg(t, l, BP_K_W), qkv__twg(t, l, BP_K_B),
                                       t->dk, x, N));
    QKV_TRY(qkv_nn_linear_backward(rt, &w.v, dr, qkv__twg(t, l, BP_V_W), qkv__twg(t, l, BP_V_B),
                                   t->dv, x, N));
    float *dxq = t->datt; /* (B, C); datt was consumed by the attention's backward */
    QKV_TRY(qkv_nn_linear_backward_set(rt, &w.q, dxq, qkv__twg(t, l, BP_Q_W),
                                       qkv__twg(t, l, BP_Q_B), t->dq, cls_x_rows(a, B, C), B));
    for (int64_t i = 0; i < B; i++) {
        float *row = dr + i * T * C;
        for (int64_t j = 0; j < C; j++) row[j] += dxq[i * C + j] + dres1[i * C + j];
    }
    return QKV_OK;
}
