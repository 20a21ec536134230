/* params.c — the parameter tables (see params.h). */
#include "models/params.h"

#include "core/error.h"

#include <stdio.h>
#include <string.h>

/* Matrices and embeddings (weight decay, N(0, std)); GPT-2's residual projections (N(0,
 * std/sqrt(2L))); norm weights (1) and biases (0), neither decayed. */
#define MAT(name, d0, d1)                                                                          \
    { name, QKV__DIM_##d0, QKV__DIM_##d1, 1, 1, 0, QKV__INIT_NORMAL, QKV_DTYPE_F32, 0, 0 }
#define PROJ(name, d0, d1)                                                                         \
    { name, QKV__DIM_##d0, QKV__DIM_##d1, 1, 1, 0, QKV__INIT_NORMAL_PROJ, QKV_DTYPE_F32, 0, 0 }
#define ONES(name, d0)                                                                             \
    { name, QKV__DIM_##d0, QKV__DIM_NONE, 0, 1, 0, QKV__INIT_ONE, QKV_DTYPE_F32, 0, 0 }
#define ZEROS(name, d0)                                                                            \
    { name, QKV__DIM_##d0, QKV__DIM_NONE, 0, 1, 0, QKV__INIT_ZERO, QKV_DTYPE_F32, 0, 0 }

static const qkv__param_spec gpt2_pre[] = {
    MAT("wte.weight", V, C),
    MAT("wpe.weight", P, C),
};
static const qkv__param_spec gpt2_layer[] = {
    ONES("h.%d.ln_1.weight", C),           ZEROS("h.%d.ln_1.bias", C),
    MAT("h.%d.attn.c_attn.weight", C, 3C), ZEROS("h.%d.attn.c_attn.bias", 3C),
    PROJ("h.%d.attn.c_proj.weight", C, C), ZEROS("h.%d.attn.c_proj.bias", C),
    ONES("h.%d.ln_2.weight", C),           ZEROS("h.%d.ln_2.bias", C),
    MAT("h.%d.mlp.c_fc.weight", C, F),     ZEROS("h.%d.mlp.c_fc.bias", F),
    PROJ("h.%d.mlp.c_proj.weight", F, C),  ZEROS("h.%d.mlp.c_proj.bias", C),
};
static const qkv__param_spec gpt2_post[] = {
    ONES("ln_f.weight", C),
    ZEROS("ln_f.bias", C),
};

static const qkv__param_spec llama_pre[] = {
    MAT("embed_tokens.weight", V, C),
};
static const qkv__param_spec llama_layer[] = {
    MAT("layers.%d.self_attn.q_proj.weight", Q, C),
    MAT("layers.%d.self_attn.k_proj.weight", K, C),
    MAT("layers.%d.self_attn.v_proj.weight", K, C),
    MAT("layers.%d.self_attn.o_proj.weight", C, Q),
    MAT("layers.%d.mlp.gate_proj.weight", F, C),
    MAT("layers.%d.mlp.up_proj.weight", F, C),
    MAT("layers.%d.mlp.down_proj.weight", C, F),
    ONES("layers.%d.input_layernorm.weight", C),
    ONES("layers.%d.post_attention_layernorm.weight", C),
};
static const qkv__param_spec llama_post[] = {
    ONES("norm.weight", C),
};
static const qkv__param_spec llama_head[] = {
    {"lm_head.weight", QKV__DIM_V, QKV__DIM_C, 1, 1, 1, QKV__INIT_NORMAL, QKV_DTYPE_F32, 0, 0},
};

static const qkv__param_spec bert_pre[] = {
    MAT("embeddings.word_embeddings.weight", V, C),
    MAT("embeddings.position_embeddings.weight", P, C),
    MAT("embeddings.token_type_embeddings.weight", TV, C),
    ONES("embeddings.LayerNorm.weight", C),
    ZEROS("embeddings.LayerNorm.bias", C),
};
static const qkv__param_spec bert_layer[] = {
    MAT("encoder.layer.%d.attention.self.query.weight", C, C),
    ZEROS("encoder.layer.%d.attention.self.query.bias", C),
    MAT("encoder.layer.%d.attention.self.key.weight", C, C),
    ZEROS("encoder.layer.%d.attention.self.key.bias", C),
    MAT("encoder.layer.%d.attention.self.value.weight", C, C),
    ZEROS("encoder.layer.%d.attention.self.value.bias", C),
    MAT("encoder.layer.%d.attention.output.dense.weight", C, C),
    ZEROS("encoder.layer.%d.attention.output.dense.bias", C),
    ONES("encoder.layer.%d.attention.output.LayerNorm.weight", C),
    ZEROS("encoder.layer.%d.attention.output.LayerNorm.bias", C),
    MAT("encoder.layer.%d.intermediate.dense.weight", F, C),
    ZEROS("encoder.layer.%d.intermediate.dense.bias", F),
    MAT("encoder.layer.%d.output.dense.weight", C, F),
    ZEROS("encoder.layer.%d.output.dense.bias", C),
    ONES("encoder.layer.%d.output.LayerNorm.weight", C),
    ZEROS("encoder.layer.%d.output.LayerNorm.bias", C),
};
static const qkv__param_spec bert_opt[] = {
    MAT("pooler.dense.weight", C, C),
    ZEROS("pooler.dense.bias", C),
};
static const qkv__param_spec bert_head[] = {
    ZEROS("cls.predictions.bias", V),
    MAT("cls.predictions.transform.dense.weight", C, C),
    ZEROS("cls.predictions.transform.dense.bias", C),
    ONES("cls.predictions.transform.LayerNorm.weight", C),
    ZEROS("cls.predictions.transform.LayerNorm.bias", C),
};

static const qkv__param_spec bert_cls_head[] = {
    MAT("classifier.weight", NL, C),
    ZEROS("classifier.bias", NL),
};

static const qkv__param_spec marian_pre[] = {
    {"shared.weight", QKV__DIM_V, QKV__DIM_C, 1, 1, 0, QKV__INIT_NORMAL, QKV_DTYPE_F32,
     QKV__EMB_SHARED, 0},
    {"encoder.embed_tokens.weight", QKV__DIM_V, QKV__DIM_C, 1, 1, 0, QKV__INIT_NORMAL,
     QKV_DTYPE_F32, QKV__EMB_SEPARATE, 0},
    {"decoder.embed_tokens.weight", QKV__DIM_VD, QKV__DIM_C, 1, 1, 0, QKV__INIT_NORMAL,
     QKV_DTYPE_F32, QKV__EMB_SEPARATE, 0},
};
static const qkv__param_spec marian_enc[] = {
    MAT("encoder.layers.%d.self_attn.q_proj.weight", C, C),
    ZEROS("encoder.layers.%d.self_attn.q_proj.bias", C),
    MAT("encoder.layers.%d.self_attn.k_proj.weight", C, C),
    ZEROS("encoder.layers.%d.self_attn.k_proj.bias", C),
    MAT("encoder.layers.%d.self_attn.v_proj.weight", C, C),
    ZEROS("encoder.layers.%d.self_attn.v_proj.bias", C),
    MAT("encoder.layers.%d.self_attn.out_proj.weight", C, C),
    ZEROS("encoder.layers.%d.self_attn.out_proj.bias", C),
    ONES("encoder.layers.%d.self_attn_layer_norm.weight", C),
    ZEROS("encoder.layers.%d.self_attn_layer_norm.bias", C),
    MAT("encoder.layers.%d.fc1.weight", F, C),
    ZEROS("encoder.layers.%d.fc1.bias", F),
    MAT("encoder.layers.%d.fc2.weight", C, F),
    ZEROS("encoder.layers.%d.fc2.bias", C),
    ONES("encoder.layers.%d.final_layer_norm.weight", C),
    ZEROS("encoder.layers.%d.final_layer_norm.bias", C),
};
static const qkv__param_spec marian_dec[] = {
    MAT("decoder.layers.%d.self_attn.q_proj.weight", C, C),
    ZEROS("decoder.layers.%d.self_attn.q_proj.bias", C),
    MAT("decoder.layers.%d.self_attn.k_proj.weight", C, C),
    ZEROS("decoder.layers.%d.self_attn.k_proj.bias", C),
    MAT("decoder.layers.%d.self_attn.v_proj.weight", C, C),
    ZEROS("decoder.layers.%d.self_attn.v_proj.bias", C),
    MAT("decoder.layers.%d.self_attn.out_proj.weight", C, C),
    ZEROS("decoder.layers.%d.self_attn.out_proj.bias", C),
    ONES("decoder.layers.%d.self_attn_layer_norm.weight", C),
    ZEROS("decoder.layers.%d.self_attn_layer_norm.bias", C),
    MAT("decoder.layers.%d.encoder_attn.q_proj.weight", C, C),
    ZEROS("decoder.layers.%d.encoder_attn.q_proj.bias", C),
    MAT("decoder.layers.%d.encoder_attn.k_proj.weight", C, C),
    ZEROS("decoder.layers.%d.encoder_attn.k_proj.bias", C),
    MAT("decoder.layers.%d.encoder_attn.v_proj.weight", C, C),
    ZEROS("decoder.layers.%d.encoder_attn.v_proj.bias", C),
    MAT("decoder.layers.%d.encoder_attn.out_proj.weight", C, C),
    ZEROS("decoder.layers.%d.encoder_attn.out_proj.bias", C),
    ONES("decoder.layers.%d.encoder_attn_layer_norm.weight", C),
    ZEROS("decoder.layers.%d.encoder_attn_layer_norm.bias", C),
    MAT("decoder.layers.%d.fc1.weight", F2, C),
    ZEROS("decoder.layers.%d.fc1.bias", F2),
    MAT("decoder.layers.%d.fc2.weight", C, F2),
    ZEROS("decoder.layers.%d.fc2.bias", C),
    ONES("decoder.layers.%d.final_layer_norm.weight", C),
    ZEROS("decoder.layers.%d.final_layer_norm.bias", C),
};
static const qkv__param_spec marian_head[] = {
    /* a buffer in transformers: saved and loaded, never trained */
    {"final_logits_bias", QKV__DIM_NONE, QKV__DIM_VD, 0, 0, 0, QKV__INIT_ZERO, QKV_DTYPE_F32, 0, 0},
    {"lm_head.weight", QKV__DIM_VD, QKV__DIM_C, 1, 1, 1, QKV__INIT_NORMAL, QKV_DTYPE_F32, 0, 0},
};

#define T5FF(name, d0, d1, ff)                                                                     \
    { name, QKV__DIM_##d0, QKV__DIM_##d1, 1, 1, 0, QKV__INIT_NORMAL, QKV_DTYPE_F32, 0, ff }
static const qkv__param_spec t5_pre[] = {
    MAT("shared.weight", V, C),
    MAT("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", NB, H),
    MAT("decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", NB, H),
};
static const qkv__param_spec t5_enc[] = {
    MAT("encoder.block.%d.layer.0.SelfAttention.q.weight", Q, C),
    MAT("encoder.block.%d.layer.0.SelfAttention.k.weight", Q, C),
    MAT("encoder.block.%d.layer.0.SelfAttention.v.weight", Q, C),
    MAT("encoder.block.%d.layer.0.SelfAttention.o.weight", C, Q),
    ONES("encoder.block.%d.layer.0.layer_norm.weight", C),
    T5FF("encoder.block.%d.layer.1.DenseReluDense.wi.weight", F, C, QKV__FF_PLAIN),
    T5FF("encoder.block.%d.layer.1.DenseReluDense.wi_0.weight", F, C, QKV__FF_GATED),
    T5FF("encoder.block.%d.layer.1.DenseReluDense.wi_1.weight", F, C, QKV__FF_GATED),
    MAT("encoder.block.%d.layer.1.DenseReluDense.wo.weight", C, F),
    ONES("encoder.block.%d.layer.1.layer_norm.weight", C),
};
static const qkv__param_spec t5_dec[] = {
    MAT("decoder.block.%d.layer.0.SelfAttention.q.weight", Q, C),
    MAT("decoder.block.%d.layer.0.SelfAttention.k.weight", Q, C),
    MAT("decoder.block.%d.layer.0.SelfAttention.v.weight", Q, C),
    MAT("decoder.block.%d.layer.0.SelfAttention.o.weight", C, Q),
    ONES("decoder.block.%d.layer.0.layer_norm.weight", C),
    MAT("decoder.block.%d.layer.1.EncDecAttention.q.weight", Q, C),
    MAT("decoder.block.%d.layer.1.EncDecAttention.k.weight", Q, C),
    MAT("decoder.block.%d.layer.1.EncDecAttention.v.weight", Q, C),
    MAT("decoder.block.%d.layer.1.EncDecAttention.o.weight", C, Q),
    ONES("decoder.block.%d.layer.1.layer_norm.weight", C),
    T5FF("decoder.block.%d.layer.2.DenseReluDense.wi.weight", F, C, QKV__FF_PLAIN),
    T5FF("decoder.block.%d.layer.2.DenseReluDense.wi_0.weight", F, C, QKV__FF_GATED),
    T5FF("decoder.block.%d.layer.2.DenseReluDense.wi_1.weight", F, C, QKV__FF_GATED),
    MAT("decoder.block.%d.layer.2.DenseReluDense.wo.weight", C, F),
    ONES("decoder.block.%d.layer.2.layer_norm.weight", C),
};
static const qkv__param_spec t5_post[] = {
    ONES("encoder.final_layer_norm.weight", C),
    ONES("decoder.final_layer_norm.weight", C),
};
static const qkv__param_spec t5_head[] = {
    {"lm_head.weight", QKV__DIM_V, QKV__DIM_C, 1, 1, 1, QKV__INIT_NORMAL, QKV_DTYPE_F32, 0, 0},
};

#define N_(a) (int)(sizeof a / sizeof *a)
#define ROWS(f, a) .f = a, .n_##f = N_(a)
const qkv__param_table qkv__params_gpt2 = {.arch = "gpt2",
                                           .prefix = "transformer.",
                                           ROWS(pre, gpt2_pre),
                                           ROWS(layer, gpt2_layer),
                                           ROWS(post, gpt2_post)};
const qkv__param_table qkv__params_llama = {.arch = "llama",
                                            .prefix = "model.",
                                            ROWS(pre, llama_pre),
                                            ROWS(layer, llama_layer),
                                            ROWS(post, llama_post),
                                            ROWS(head, llama_head)};
const qkv__param_table qkv__params_bert = {.arch = "bert",
                                           .prefix = "bert.",
                                           ROWS(pre, bert_pre),
                                           ROWS(layer, bert_layer),
                                           ROWS(head, bert_head),
                                           ROWS(opt, bert_opt)};
const qkv__param_table qkv__params_bert_cls = {.arch = "bert_cls",
                                               .prefix = "bert.",
                                               ROWS(pre, bert_pre),
                                               ROWS(layer, bert_layer),
                                               .post = bert_opt,
                                               .n_post = N_(bert_opt),
                                               ROWS(head, bert_cls_head)};

const qkv__param_table qkv__params_marian = {.arch = "marian",
                                             .prefix = "model.",
                                             ROWS(pre, marian_pre),
                                             ROWS(layer, marian_enc),
                                             ROWS(layer2, marian_dec),
                                             ROWS(head, marian_head)};

const qkv__param_table qkv__params_t5 = {.arch = "t5",
                                         .prefix = "",
                                         ROWS(pre, t5_pre),
                                         ROWS(layer, t5_enc),
                                         ROWS(layer2, t5_dec),
                                         ROWS(post, t5_post),
                                         ROWS(head, t5_head)};

int64_t qkv__param_dim(qkv__dim d, const qkv__dims *s) {
    switch (d) {
    case QKV__DIM_NONE: return 1;
    case QKV__DIM_V: return s->V;
    case QKV__DIM_P: return s->P;
    case QKV__DIM_C: return s->C;
    case QKV__DIM_3C: return 3 * s->C;
    case QKV__DIM_F: return s->F;
    case QKV__DIM_Q: return s->Q;
    case QKV__DIM_K: return s->K;
    case QKV__DIM_TV: return s->TV;
    case QKV__DIM_NL: return s->NL;
    case QKV__DIM_VD: return s->Vd;
    case QKV__DIM_F2: return s->F2;
    case QKV__DIM_NB: return s->NB;
    case QKV__DIM_H: return s->H;
    }
    return 0;
}

qkv_status qkv__param_name(char *buf, size_t cap, const char *prefix, const qkv__param_spec *p,
                           int64_t layer) {
    const char *at = strstr(p->name, "%d");
    int n = at ? snprintf(buf, cap, "%s%.*s%lld%s", prefix, (int)(at - p->name), p->name,
                          (long long)layer, at + 2)
               : snprintf(buf, cap, "%s%s", prefix, p->name);
    if (n < 0 || (size_t)n >= cap)
        return qkv__fail(QKV_ERR_INVALID_ARG, "parameter name %s%s is too long", prefix, p->name);
    return QKV_OK;
}
