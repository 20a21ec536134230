/* marian_train.c — training a MarianMT encoder–decoder (MarianMTModel) with teacher forcing
 * (see trainer.h). The encoder blocks are BERT's training blocks (bert_train.c over the
 * source), the decoder blocks the models' own qkv__s2s_dec_block_forward (models/block.h, the
 * one inference runs too); the rest is a list of calls into the layer library (src/nn). As
 * transformers computes it, drop() being dropout while training:
 *
 *   encoder: x = drop(E_enc[src] · s + PE[t]); L post-LN blocks; keys past src_lens masked
 *   decoder: y = drop(E_dec[dec_ids] · s + PE[t]), dec_ids the labels shifted right after
 *            decoder_start_token_id; L2 post-LN blocks:
 *              h1 = LN1(y + drop(O(causal self-attention)))
 *              h2 = LN2(h1 + drop(CO(attention of CQ h1 to CK enc, CV enc; source keys past
 *                   src_lens masked)))
 *              y' = LN3(h2 + drop(W2 drop_act(act(W1 h2))))
 *   logits = y · headᵀ + final_logits_bias (the head: the decoder's embedding when tied);
 *   loss = the mean cross-entropy over the labelled positions, with label smoothing ε as
 *   torch's CrossEntropyLoss(label_smoothing=ε).
 * The backward calls the same layers' backwards in reverse; the cross-attention's dk, dv go
 * through CK, CV into dL/d(encoder output) (t->denc), summed over the decoder's layers, which
 * then starts the encoder's backward. */
#include "train/trainer.h"

#include "core/alloc.h"
#include "core/error.h"
#include "io/json.h"
#include "models/block.h"
#include "models/marian.h"
#include "nn/nn.h"

#include <jansson.h>
#include <math.h>
#include <string.h>

/* ---------------------------------------------------------------- config */

/* A dropout rate of config.json in [0, 1) (absent: def). */
static qkv_status rate(const char *path, json_t *o, const char *key, double def, float *out) {
    json_t *v = json_object_get(o, key);
    double x = def;
    if (v && !json_is_null(v)) {
        if (!json_is_number(v) || !(json_number_value(v) >= 0.0) || !(json_number_value(v) < 1.0))
            return qkv__fail(QKV_ERR_FORMAT, "%s: field '%s' must be a number in [0, 1)", path,
                             key);
        x = json_number_value(v);
    }
    *out = (float)x;
    return QKV_OK;
}

qkv_status qkv__tconfig_load_marian(const char *dir, qkv__tconfig *c) {
    qkv_marian_config mc;
    memset(&mc, 0, sizeof mc);
    QKV_TRY(qkv__marian_config_load(dir, &mc));
    qkv__marian_config_release(&mc);
    memset(c, 0, sizeof *c);
    c->arch = QKV__TARCH_MARIAN;
    c->V = mc.V, c->Vd = mc.Vd, c->P = mc.P, c->C = mc.C;
    c->L = mc.Le, c->H = c->Hk = mc.He, c->D = mc.C / mc.He, c->F = mc.Fe;
    c->L2 = mc.Ld, c->H2 = mc.Hd, c->F2 = mc.Fd;
    c->eps = 1e-5f; /* nn.LayerNorm's default */
    c->act = mc.act, c->tied = mc.tied, c->shared = mc.shared, c->embed_scale = mc.embed_scale;
    c->pad_id = mc.gen.pad, c->eos_id = mc.gen.eos, c->bos_id = -1, c->start_id = mc.gen.start;
    c->init_std = 0.02;
    char path[4096];
    QKV_TRY(qkv__json_config_path(dir, path, sizeof path));
    qkv__json_begin();
    json_t *root = NULL;
    qkv_status st = qkv__json_load_file(path, 0, &root);
    if (st == QKV_OK) st = rate(path, root, "dropout", 0.1, &c->p_hidden);
    if (st == QKV_OK) st = rate(path, root, "attention_dropout", 0.0, &c->p_attn);
    if (st == QKV_OK) st = rate(path, root, "activation_dropout", 0.0, &c->p_act);
    json_t *sd = root ? json_object_get(root, "init_std") : NULL;
    if (st == QKV_OK && sd && !json_is_null(sd)) {
        if (!json_is_number(sd) || !(json_number_value(sd) >= 0.0) ||
            !(json_number_value(sd) < 1e3))
            st = qkv__fail(QKV_ERR_FORMAT, "%s: init_std must be a number in [0, 1000)", path);
        else
            c->init_std = json_number_value(sd);
    }
    json_decref(root);
    qkv__json_end();
    return st;
}

/* ---------------------------------------------------------------- layers */

static qkv_nn_linear lin(float *w, float *b, int64_t in, int64_t out) {
    return qkv_nn_linear_dense(w, b, in, out);
}

/* Decoder block l's layers over t->w. */
static qkv__s2s_dec_layer dec_layer(const qkv_trainer *t, int64_t l) {
    const int64_t C = t->cfg.C, F = t->cfg.F2;
    qkv__s2s_dec_layer d;
#define D_(k, in, out) lin(qkv__tw2(t, t->w, l, k), qkv__tw2(t, t->w, l, k + 1), in, out)
    d.q = D_(MD_Q_W, C, C), d.k = D_(MD_K_W, C, C), d.v = D_(MD_V_W, C, C);
    d.o = D_(MD_O_W, C, C);
    d.cq = D_(MD_CQ_W, C, C), d.ck = D_(MD_CK_W, C, C), d.cv = D_(MD_CV_W, C, C);
    d.co = D_(MD_CO_W, C, C);
    d.fc = D_(MD_FC_W, C, F), d.out = D_(MD_OUT_W, F, C);
#undef D_
    d.ln1_w = qkv__tw2(t, t->w, l, MD_LN1_W), d.ln1_b = qkv__tw2(t, t->w, l, MD_LN1_B);
    d.ln2_w = qkv__tw2(t, t->w, l, MD_LN2_W), d.ln2_b = qkv__tw2(t, t->w, l, MD_LN2_B);
    d.ln3_w = qkv__tw2(t, t->w, l, MD_LN3_W), d.ln3_b = qkv__tw2(t, t->w, l, MD_LN3_B);
    return d;
}

/* The embedding tables' parameter indices: the encoder's, the decoder's (the same when
 * shared), and the head's weight (the decoder's table when tied). */
static size_t enc_table(const qkv_trainer *t) {
    (void)t;
    return 0;
}
static size_t dec_table(const qkv_trainer *t) { return t->cfg.shared ? 0 : 1; }
static float *head_w(const qkv_trainer *t) {
    return t->cfg.tied ? qkv__tpre(t, t->w, (int)dec_table(t)) : qkv__thead(t, t->w, 1);
}
static float *head_g(const qkv_trainer *t) {
    return t->cfg.tied ? qkv__tpreg(t, (int)dec_table(t)) : qkv__theadg(t, 1);
}
static qkv_nn_linear head(const qkv_trainer *t) {
    return lin(head_w(t), qkv__thead(t, t->w, 0), t->cfg.C, t->cfg.Vd);
}

/* The decoder's dropout seed, and the attention-probability seeds of each attention. */
static uint64_t dec_seed(const qkv__tbatch *b) { return b->seed ^ 0xDEC0DE5EEDull; }
static uint64_t attn_seed(const qkv__tbatch *b, int64_t l, int cross) {
    return dec_seed(b) * 0x9E3779B97F4A7C15ull + 0xA77Eull + 2 * (uint64_t)l + (uint64_t)cross;
}

static void desc_of(const qkv_trainer *t, const qkv__tbatch *b, int64_t l, int cross,
                    qkv_attention_desc *d) {
    memset(d, 0, sizeof *d);
    d->batch = b->B;
    d->q_len = b->T;
    d->kv_len = cross ? b->S : b->T;
    d->n_heads = d->n_kv_heads = t->cfg.H2;
    d->head_dim = t->cfg.C / t->cfg.H2;
    d->window_left = d->window_right = -1;
    d->causal = !cross;
    d->kv_lens = cross ? b->kv_lens : NULL;
    if (b->train && t->cfg.p_attn > 0.0f) {
        d->dropout_p = t->cfg.p_attn;
        d->dropout_seed = attn_seed(b, l, cross);
    }
}

typedef struct {
    const qkv_trainer *t;
    const qkv__tbatch *b;
} dec_ctx;

static float *cross_k(const qkv_trainer *t, const qkv__tbatch *b, int64_t l) {
    return t->xkv + l * 2 * b->B * b->S * t->cfg.C;
}

static qkv_status attend_self(void *ctx, qkv_runtime *rt, int64_t l, const qkv__block_acts *a) {
    const dec_ctx *c = ctx;
    qkv_attention_desc d;
    desc_of(c->t, c->b, l, 0, &d);
    return qkv_attention_forward(rt, &d, a->q, a->k, a->v, a->att, a->lse);
}

static qkv_status attend_cross(void *ctx, qkv_runtime *rt, int64_t l, const qkv__block_acts *a) {
    const dec_ctx *c = ctx;
    qkv_attention_desc d;
    desc_of(c->t, c->b, l, 1, &d);
    const float *k = cross_k(c->t, c->b, l);
    return qkv_attention_forward(rt, &d, a->cq, k, k + c->b->B * c->b->S * c->t->cfg.C, a->catt,
                                 a->clse);
}

/* The encoder's view of the batch: the source as BERT's blocks read a batch. */
static qkv__tbatch enc_batch(const qkv__tbatch *b) {
    qkv__tbatch e = *b;
    e.ids = b->src;
    e.T = b->S;
    return e;
}

/* x (N, C) = drop(table[ids] · scale + PE[t]) over a (B, T) batch. */
static qkv_status embed(qkv_runtime *rt, qkv_trainer *t, float *x, const int32_t *ids,
                        const float *table, int64_t V, int64_t B, int64_t T, float p,
                        uint64_t seed) {
    const int64_t N = B * T, C = t->cfg.C;
    QKV_TRY(qkv_nn_embedding_forward(rt, x, ids, table, N, V, C));
    if (t->cfg.embed_scale != 1.0f)
        for (int64_t i = 0; i < N * C; i++) x[i] *= t->cfg.embed_scale;
    QKV_TRY(qkv_nn_position_add_forward(rt, x, x, t->pe, B, T, C, t->cfg.P, 0));
    return p > 0.0f ? qkv_nn_dropout_forward(rt, x, x, N * C, p, seed, 0) : QKV_OK;
}

/* dtable += the lookup's gradient from dx = dL/d(the embedding's output), none for the pad
 * token's row; dx is clobbered. */
static qkv_status embed_backward(qkv_runtime *rt, qkv_trainer *t, float *dtable, float *dx,
                                 const int32_t *ids, int64_t V, int64_t N, float p, uint64_t seed) {
    const int64_t C = t->cfg.C;
    if (!dtable) return QKV_OK;
    if (p > 0.0f) {
        qkv__tzero(t->dln, N * C);
        QKV_TRY(qkv_nn_dropout_backward(rt, t->dln, dx, N * C, p, seed, 0));
        memcpy(dx, t->dln, (size_t)(N * C) * sizeof(float));
    }
    if (t->cfg.embed_scale != 1.0f)
        for (int64_t i = 0; i < N * C; i++) dx[i] *= t->cfg.embed_scale;
    /* nn.Embedding(padding_idx=pad): the pad row gets no gradient from the lookup */
    for (int64_t i = 0; i < N; i++)
        if (ids[i] == t->cfg.pad_id) memset(dx + i * C, 0, (size_t)C * sizeof(float));
    return qkv_nn_embedding_backward(rt, dtable, dx, ids, N, V, C);
}

/* ---------------------------------------------------------------- forward */

qkv_status qkv__marian_forward(qkv_runtime *rt, qkv_trainer *t, const qkv__tbatch *b, int backward,
                               float scale, float *loss) {
    const qkv__tconfig *c = &t->cfg;
    const int64_t B = b->B, S = b->S, T = b->T, Ns = B * S, Nt = B * T, C = c->C;
    const float p = b->train ? c->p_hidden : 0.0f;
    if (!t->pe) QKV_TRY(qkv__marian_positions(c->P, C, &t->pe));
    /* encoder */
    const qkv__tbatch eb = enc_batch(b);
    QKV_TRY(embed(rt, t, t->resid, b->src, qkv__tpre(t, t->w, (int)enc_table(t)), c->V, B, S, p,
                  b->seed));
    for (int64_t l = 0; l < c->L; l++)
        QKV_TRY(qkv__bert_block_forward(rt, t, l, &t->layer[l], t->resid + l * Ns * C,
                                        t->resid + (l + 1) * Ns * C, &eb));
    const float *enc = t->resid + c->L * Ns * C;
    /* every decoder layer's cross keys and values of the encoder output */
    for (int64_t l = 0; l < c->L2; l++) {
        const qkv__s2s_dec_layer w = dec_layer(t, l);
        float *k = cross_k(t, b, l);
        QKV_TRY(qkv_nn_linear_forward(rt, &w.ck, k, enc, Ns, QKV_ACT_NONE, NULL));
        QKV_TRY(qkv_nn_linear_forward(rt, &w.cv, k + Ns * C, enc, Ns, QKV_ACT_NONE, NULL));
    }
    /* decoder */
    QKV_TRY(embed(rt, t, t->resid2, b->ids, qkv__tpre(t, t->w, (int)dec_table(t)), c->Vd, B, T, p,
                  dec_seed(b)));
    const qkv__enc_cfg ec = {C, c->F2, c->eps, c->act, p, dec_seed(b), b->train ? c->p_act : 0.0f};
    dec_ctx dc = {t, b};
    for (int64_t l = 0; l < c->L2; l++) {
        const qkv__s2s_dec_layer w = dec_layer(t, l);
        QKV_TRY(qkv__s2s_dec_block_forward(rt, &ec, &w, l, &t->layer2[l], t->resid2 + l * Nt * C,
                                           t->resid2 + (l + 1) * Nt * C, Nt, attend_self,
                                           attend_cross, &dc));
    }
    const qkv_nn_linear hd = head(t);
    QKV_TRY(qkv_nn_linear_forward(rt, &hd, t->logits, t->resid2 + c->L2 * Nt * C, Nt, QKV_ACT_NONE,
                                  NULL));
    return qkv__trainer_loss(rt, t, Nt, c->Vd, backward, scale, loss);
}

/* ---------------------------------------------------------------- backward */

/* dL/d(drop(x)) -> dL/dx in t->dln (or d itself when p is 0). */
static const float *drop_back(qkv_runtime *rt, qkv_trainer *t, const float *d, int64_t n, float p,
                              uint64_t seed, uint64_t stream, qkv_status *st) {
    if (p <= 0.0f) return d;
    qkv__tzero(t->dln, n);
    *st = qkv_nn_dropout_backward(rt, t->dln, d, n, p, seed, stream);
    return t->dln;
}

/* The backward of one post-LN sublayer end, out = LN(res), res = skip + drop(o(in)): dres (N, C)
 * = dL/dres from dy = dL/dout (the skip's gradient, which the caller passes on), dst (N, o->C)
 * = dL/d(in); the norm's rows ln, ln + 1 and o's rows w, w + 1 of decoder block l get their
 * gradients. */
typedef struct {
    int ln, w;                      /* MD_* rows: the norm's weight, o's weight */
    const float *res, *mean, *rstd; /* the norm's input and statistics */
    const float *ln_w;              /* its weight */
    const qkv_nn_linear *o;         /* the sublayer's last linear */
    const float *in;                /* its input */
    uint64_t seed, stream;          /* the dropout before the residual add */
} sublayer;

static qkv_status sublayer_back(qkv_runtime *rt, qkv_trainer *t, int64_t l, const sublayer *u,
                                float *dres, const float *dy, float *dst, float p, int64_t N) {
    const int64_t C = t->cfg.C;
    qkv_status st = QKV_OK;
    qkv__tzero(dres, N * C);
    QKV_TRY(qkv_nn_layernorm_backward(rt, dres, qkv__twg2(t, l, u->ln), qkv__twg2(t, l, u->ln + 1),
                                      dy, u->res, u->ln_w, u->mean, u->rstd, N, C));
    const float *d = drop_back(rt, t, dres, N * C, p, u->seed, u->stream, &st);
    QKV_TRY(st);
    qkv__tzero(dst, N * u->o->C);
    return qkv_nn_linear_backward(rt, u->o, dst, qkv__twg2(t, l, u->w), qkv__twg2(t, l, u->w + 1),
                                  d, u->in, N);
}

/* t->dresid holds dL/d(block l's output); on return dL/d(its input). Adds the cross keys' and
 * values' gradient to t->denc. */
static qkv_status dec_block_backward(qkv_runtime *rt, qkv_trainer *t, int64_t l,
                                     const qkv__tbatch *b) {
    const qkv__tconfig *c = &t->cfg;
    const int64_t Nt = b->B * b->T, Ns = b->B * b->S, C = c->C, F = c->F2;
    const qkv__tacts *a = &t->layer2[l];
    const qkv__s2s_dec_layer w = dec_layer(t, l);
    const float p = b->train ? c->p_hidden : 0.0f, pa = b->train ? c->p_act : 0.0f;
    const uint64_t seed = dec_seed(b);
    float *dr = t->dresid, *dx1 = t->dx1;
    const float *x = t->resid2 + l * Nt * C;
#define G_(k) qkv__twg2(t, l, k)
    /* y = LN3(res3), res3 = ln2 + drop(drop_act(act(ln2 W1ᵀ + b1)) W2ᵀ + b2) */
    const sublayer mlp = {MD_LN3_W, MD_OUT_W, a->res3, a->mean3, a->rstd3,
                          w.ln3_w,  &w.out,   a->a,    seed + 1, qkv__enc_drop_stream(l, 0)};
    QKV_TRY(sublayer_back(rt, t, l, &mlp, dx1, dr, t->da, p, Nt));
    if (pa > 0.0f) {
        qkv__tzero(t->dh, Nt * F);
        QKV_TRY(qkv_nn_dropout_backward(rt, t->dh, t->da, Nt * F, pa, seed ^ QKV__ACT_DROP_SEED,
                                        qkv__enc_drop_stream(l, 1)));
        memcpy(t->da, t->dh, (size_t)(Nt * F) * sizeof(float));
    }
    qkv__tzero(t->dh, Nt * F);
    QKV_TRY(qkv_nn_act_backward(rt, c->act, t->dh, t->da, a->h, Nt * F));
    QKV_TRY(qkv_nn_linear_backward(rt, &w.fc, dx1, G_(MD_FC_W), G_(MD_FC_B), t->dh, a->ln2, Nt));
    /* ln2 = LN2(res2), res2 = ln1 + drop(cross(CQ ln1, CK enc, CV enc) COᵀ + bco) */
    const sublayer cross = {MD_LN2_W, MD_CO_W, a->res2, a->mean2, a->rstd2,
                            w.ln2_w,  &w.co,   a->catt, seed,     qkv__enc_drop_stream(l, 1)};
    QKV_TRY(sublayer_back(rt, t, l, &cross, dr, dx1, t->datt, p, Nt));
    qkv_attention_desc ad;
    desc_of(t, b, l, 1, &ad);
    const float *ck = cross_k(t, b, l), *cv = ck + Ns * C;
    QKV_TRY(qkv_attention_backward(rt, &ad, a->cq, ck, cv, a->catt, a->clse, t->datt, t->dq, t->dk,
                                   t->dv));
    QKV_TRY(qkv_nn_linear_backward(rt, &w.cq, dr, G_(MD_CQ_W), G_(MD_CQ_B), t->dq, a->ln1, Nt));
    const float *enc = t->resid + c->L * Ns * C;
    QKV_TRY(qkv_nn_linear_backward(rt, &w.ck, t->denc, G_(MD_CK_W), G_(MD_CK_B), t->dk, enc, Ns));
    QKV_TRY(qkv_nn_linear_backward(rt, &w.cv, t->denc, G_(MD_CV_W), G_(MD_CV_B), t->dv, enc, Ns));
    /* ln1 = LN1(res1), res1 = x + drop(self(Q x, K x, V x) Woᵀ + bo) */
    const sublayer self = {MD_LN1_W, MD_O_W, a->res1, a->mean1, a->rstd1,
                           w.ln1_w,  &w.o,   a->att,  seed,     qkv__enc_drop_stream(l, 0)};
    QKV_TRY(sublayer_back(rt, t, l, &self, dx1, dr, t->datt, p, Nt));
    desc_of(t, b, l, 0, &ad);
    QKV_TRY(qkv_attention_backward(rt, &ad, a->q, a->k, a->v, a->att, a->lse, t->datt, t->dq, t->dk,
                                   t->dv));
    const int ws[3] = {MD_Q_W, MD_K_W, MD_V_W};
    const qkv_nn_linear *ls[3] = {&w.q, &w.k, &w.v};
    const float *dqkv[3] = {t->dq, t->dk, t->dv};
    for (int i = 0; i < 3; i++)
        QKV_TRY(qkv_nn_linear_backward(rt, ls[i], dx1, G_(ws[i]), G_(ws[i] + 1), dqkv[i], x, Nt));
#undef G_
    memcpy(dr, dx1, (size_t)(Nt * C) * sizeof(float));
    return QKV_OK;
}

qkv_status qkv__marian_backward(qkv_runtime *rt, qkv_trainer *t, const qkv__tbatch *b) {
    const qkv__tconfig *c = &t->cfg;
    const int64_t B = b->B, Ns = B * b->S, Nt = B * b->T, C = c->C;
    const float p = b->train ? c->p_hidden : 0.0f;
    /* head: t->logits holds dlogits */
    const qkv_nn_linear hd = head(t);
    qkv__tzero(t->dresid, Nt * C);
    QKV_TRY(qkv_nn_linear_backward(rt, &hd, t->dresid, head_g(t), qkv__theadg(t, 0), t->logits,
                                   t->resid2 + c->L2 * Nt * C, Nt));
    qkv__tzero(t->denc, Ns * C);
    for (int64_t l = c->L2 - 1; l >= 0; l--) QKV_TRY(dec_block_backward(rt, t, l, b));
    QKV_TRY(embed_backward(rt, t, qkv__tpreg(t, (int)dec_table(t)), t->dresid, b->ids, c->Vd, Nt, p,
                           dec_seed(b)));
    /* encoder, from dL/d(its output) */
    const qkv__tbatch eb = enc_batch(b);
    memcpy(t->dresid, t->denc, (size_t)(Ns * C) * sizeof(float));
    for (int64_t l = c->L - 1; l >= 0; l--)
        QKV_TRY(qkv__bert_block_backward(rt, t, l, &t->layer[l], t->resid + l * Ns * C, &eb));
    return embed_backward(rt, t, qkv__tpreg(t, (int)enc_table(t)), t->dresid, b->src, c->V, Ns, p,
                          b->seed);
}
