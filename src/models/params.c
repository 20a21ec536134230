/* params.c — the parameter tables (see params.h). */
#include "models/params.h"

#include "core/error.h"

#include <stdio.h>
#include <string.h>

#define ROW(name, d0, d1, decay)                                                                   \
    { name, QKV__DIM_##d0, QKV__DIM_##d1, decay, 1, 0 }

static const qkv__param_spec gpt2_pre[] = {
    ROW("wte.weight", V, C, 1),
    ROW("wpe.weight", P, C, 1),
};
static const qkv__param_spec gpt2_layer[] = {
    ROW("h.%d.ln_1.weight", C, NONE, 0),      ROW("h.%d.ln_1.bias", C, NONE, 0),
    ROW("h.%d.attn.c_attn.weight", C, 3C, 1), ROW("h.%d.attn.c_attn.bias", 3C, NONE, 0),
    ROW("h.%d.attn.c_proj.weight", C, C, 1),  ROW("h.%d.attn.c_proj.bias", C, NONE, 0),
    ROW("h.%d.ln_2.weight", C, NONE, 0),      ROW("h.%d.ln_2.bias", C, NONE, 0),
    ROW("h.%d.mlp.c_fc.weight", C, F, 1),     ROW("h.%d.mlp.c_fc.bias", F, NONE, 0),
    ROW("h.%d.mlp.c_proj.weight", F, C, 1),   ROW("h.%d.mlp.c_proj.bias", C, NONE, 0),
};
static const qkv__param_spec gpt2_post[] = {
    ROW("ln_f.weight", C, NONE, 0),
    ROW("ln_f.bias", C, NONE, 0),
};

static const qkv__param_spec llama_pre[] = {
    ROW("embed_tokens.weight", V, C, 1),
};
static const qkv__param_spec llama_layer[] = {
    ROW("layers.%d.self_attn.q_proj.weight", Q, C, 1),
    ROW("layers.%d.self_attn.k_proj.weight", K, C, 1),
    ROW("layers.%d.self_attn.v_proj.weight", K, C, 1),
    ROW("layers.%d.self_attn.o_proj.weight", C, Q, 1),
    ROW("layers.%d.mlp.gate_proj.weight", F, C, 1),
    ROW("layers.%d.mlp.up_proj.weight", F, C, 1),
    ROW("layers.%d.mlp.down_proj.weight", C, F, 1),
    ROW("layers.%d.input_layernorm.weight", C, NONE, 0),
    ROW("layers.%d.post_attention_layernorm.weight", C, NONE, 0),
};
static const qkv__param_spec llama_post[] = {
    ROW("norm.weight", C, NONE, 0),
};
static const qkv__param_spec llama_head[] = {
    {"lm_head.weight", QKV__DIM_V, QKV__DIM_C, 1, 1, 1},
};

static const qkv__param_spec bert_pre[] = {
    ROW("embeddings.word_embeddings.weight", V, C, 1),
    ROW("embeddings.position_embeddings.weight", P, C, 1),
    ROW("embeddings.token_type_embeddings.weight", TV, C, 1),
    ROW("embeddings.LayerNorm.weight", C, NONE, 0),
    ROW("embeddings.LayerNorm.bias", C, NONE, 0),
};
static const qkv__param_spec bert_layer[] = {
    ROW("encoder.layer.%d.attention.self.query.weight", C, C, 1),
    ROW("encoder.layer.%d.attention.self.query.bias", C, NONE, 0),
    ROW("encoder.layer.%d.attention.self.key.weight", C, C, 1),
    ROW("encoder.layer.%d.attention.self.key.bias", C, NONE, 0),
    ROW("encoder.layer.%d.attention.self.value.weight", C, C, 1),
    ROW("encoder.layer.%d.attention.self.value.bias", C, NONE, 0),
    ROW("encoder.layer.%d.attention.output.dense.weight", C, C, 1),
    ROW("encoder.layer.%d.attention.output.dense.bias", C, NONE, 0),
    ROW("encoder.layer.%d.attention.output.LayerNorm.weight", C, NONE, 0),
    ROW("encoder.layer.%d.attention.output.LayerNorm.bias", C, NONE, 0),
    ROW("encoder.layer.%d.intermediate.dense.weight", F, C, 1),
    ROW("encoder.layer.%d.intermediate.dense.bias", F, NONE, 0),
    ROW("encoder.layer.%d.output.dense.weight", C, F, 1),
    ROW("encoder.layer.%d.output.dense.bias", C, NONE, 0),
    ROW("encoder.layer.%d.output.LayerNorm.weight", C, NONE, 0),
    ROW("encoder.layer.%d.output.LayerNorm.bias", C, NONE, 0),
};
static const qkv__param_spec bert_head[] = {
    ROW("cls.predictions.bias", V, NONE, 0),
    ROW("cls.predictions.transform.dense.weight", C, C, 1),
    ROW("cls.predictions.transform.dense.bias", C, NONE, 0),
    ROW("cls.predictions.transform.LayerNorm.weight", C, NONE, 0),
    ROW("cls.predictions.transform.LayerNorm.bias", C, NONE, 0),
};

#define N_(a) (int)(sizeof a / sizeof *a)
const qkv__param_table qkv__params_gpt2 = {
    "gpt2", "transformer.", gpt2_pre,       gpt2_layer,    gpt2_post,
    NULL,   N_(gpt2_pre),   N_(gpt2_layer), N_(gpt2_post), 0};
const qkv__param_table qkv__params_llama = {
    "llama",    "model.",      llama_pre,       llama_layer,    llama_post,
    llama_head, N_(llama_pre), N_(llama_layer), N_(llama_post), N_(llama_head)};
const qkv__param_table qkv__params_bert = {"bert", "bert.",      bert_pre,     bert_layer,
                                           NULL,   bert_head,    N_(bert_pre), N_(bert_layer),
                                           0,      N_(bert_head)};

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
