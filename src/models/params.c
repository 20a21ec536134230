/* params.c — the parameter tables (see params.h). */
#include "models/params.h"

#include "core/error.h"

#include <stdio.h>
#include <string.h>

#define ROW(name, d0, d1, decay)                                                                   \
    { name, QKV__DIM_##d0, QKV__DIM_##d1, decay, 1 }

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
    ROW("layers.%d.input_layernorm.weight", C, NONE, 0),
    ROW("layers.%d.self_attn.q_proj.weight", Q, C, 1),
    ROW("layers.%d.self_attn.k_proj.weight", K, C, 1),
    ROW("layers.%d.self_attn.v_proj.weight", K, C, 1),
    ROW("layers.%d.self_attn.o_proj.weight", C, Q, 1),
    ROW("layers.%d.post_attention_layernorm.weight", C, NONE, 0),
    ROW("layers.%d.mlp.gate_proj.weight", F, C, 1),
    ROW("layers.%d.mlp.up_proj.weight", F, C, 1),
    ROW("layers.%d.mlp.down_proj.weight", C, F, 1),
};
static const qkv__param_spec llama_post[] = {
    ROW("norm.weight", C, NONE, 0),
};

#define TABLE(arch, prefix, p)                                                                     \
    {                                                                                              \
        arch, prefix, p##_pre, p##_layer, p##_post, (int)(sizeof p##_pre / sizeof *p##_pre),       \
            (int)(sizeof p##_layer / sizeof *p##_layer), (int)(sizeof p##_post / sizeof *p##_post) \
    }

const qkv__param_table qkv__params_gpt2 = TABLE("gpt2", "transformer.", gpt2);
const qkv__param_table qkv__params_llama = TABLE("llama", "model.", llama);

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
