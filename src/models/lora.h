/* lora.h — LoRA adapters on the models' linear layers, as Hugging Face PEFT names and stores
 * them: the layers an adapter can sit on (sites) with their PEFT module names, PEFT's target
 * matching, the slots of the blocks' qkv_nn_linear layers they attach to, and reading a PEFT
 * adapter directory (adapter_config.json + adapter_model.safetensors), all checked.
 *
 * One site is one PEFT LoraLayer: GPT-2's fused c_attn is one site (A (r, C), B (3C, r)) that
 * attaches to three layers of the block (q, k, v: B's row blocks 0, C, 2C, A and its mask
 * shared), every other site to one layer. The trainer (src/train/lora_train.c) and the
 * inference models (bert.c, gpt.c) bind sites to slots the same way (qkv__lora_bind). */
#ifndef QKV_MODELS_LORA_H
#define QKV_MODELS_LORA_H

#include "models/block.h"
#include "nn/nn.h"
#include "qkv.h"

#include <stddef.h>
#include <stdint.h>

#define QKV__LORA_MAX_R 4096

typedef enum qkv__lora_family {
    QKV__LORA_BERT = 0,
    QKV__LORA_GPT2 = 1,
    QKV__LORA_LLAMA = 2,
} qkv__lora_family;

/* The linear layers of a block, in slot order: decoders q, k, v, o, fc (GPT-2 c_fc, Llama
 * up_proj), proj (GPT-2 mlp.c_proj, Llama down_proj), gate (Llama); encoders q, k, v, o, fc
 * (intermediate.dense), proj (output.dense). Then two slots outside the blocks: BERT's pooler
 * and the MLM transform. */
enum {
    QKV__LS_Q = 0,
    QKV__LS_K,
    QKV__LS_V,
    QKV__LS_O,
    QKV__LS_FC,
    QKV__LS_PROJ,
    QKV__LS_GATE,
    QKV__LS_PER_LAYER
};
enum { QKV__LS_POOLER = 0, QKV__LS_TRANSFORM = 1, QKV__LS_HEADS = 2 };
/* Slot index of a layer slot / a head slot among L layers. */
static inline size_t qkv__lora_slot(int64_t l, int s) {
    return (size_t)l * QKV__LS_PER_LAYER + (size_t)s;
}
static inline size_t qkv__lora_head_slot(int64_t L, int s) {
    return (size_t)L * QKV__LS_PER_LAYER + (size_t)s;
}

typedef struct qkv__lora_site {
    char module[112]; /* PEFT module name under the model prefix, e.g.
                         "bert.encoder.layer.0.attention.self.query" */
    int64_t layer;    /* -1 for a head site */
    int kind;         /* the first slot it fills (QKV__LS_*), or QKV__LS_POOLER / _TRANSFORM */
    int n_slots;      /* 3 for GPT-2's c_attn, else 1 */
    int64_t C, OC;    /* in, out features (c_attn: OC = 3C) */
    int in_out;       /* the base weight is Conv1D [in, out] */
} qkv__lora_site;

typedef struct qkv__lora_shape {
    qkv__lora_family family;
    const char *prefix; /* "bert.", "transformer.", "model." */
    int64_t L, C, F, Q, K;
    int pooler, transform; /* BERT: the model has these dense layers */
} qkv__lora_shape;

/* Every site of a model of this shape, in the order of named_modules(); *out: qkv__free. */
qkv_status qkv__lora_sites(const qkv__lora_shape *s, qkv__lora_site **out, size_t *n);
/* PEFT's rule: module == key, or module ends with "." key. */
int qkv__lora_match(const char *module, const char *key);
/* The default targets of a family (PEFT's TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING). */
const char *const *qkv__lora_default_targets(qkv__lora_family f, size_t *n);

/* The qkv_nn_lora of each slot a site fills (lo[0 .. n_slots)) from its A (r, C), B (OC, r) and
 * their gradients (NULL: none). dropout, seed and stream are left 0. */
void qkv__lora_bind(const qkv__lora_site *s, const float *A, const float *B, float *gA, float *gB,
                    int64_t r, float scale, qkv_nn_lora *lo);
/* Sets the lora pointer of every linear of a block whose slot has an adapter (r > 0); slots is
 * the layer's QKV__LS_PER_LAYER entries. */
void qkv__lora_attach_dec(qkv__dec_layer *w, qkv_nn_lora *slots);
void qkv__lora_attach_enc(qkv__enc_layer *w, qkv_nn_lora *slots);
/* s = alpha / r, or alpha / √r with rslora (PEFT's scaling). */
float qkv__lora_scale(float alpha, int64_t r, int rslora);

/* A PEFT adapter directory, read and checked against a model's sites. */
struct qkv__lora_file {
    int64_t r;
    float alpha, scale;
    int rslora, fan_in_fan_out;
    qkv_safetensors *st;
    char path[4200];  /* adapter_model.safetensors */
    const float **a;  /* [n_sites]: the site's A (r, C), NULL: no adapter */
    const float **b;  /* [n_sites]: B (OC, r) */
    size_t n_adapted; /* sites with an adapter */
    void *owned;      /* converted (F16/BF16) tensors (qkv_owned_weights) */
    const char *
        *extra; /* modules_to_save tensors' names (without "base_model.model."), [n_extra] */
    size_t n_extra;
};
typedef struct qkv__lora_file qkv__lora_file;

/* Reads dir/adapter_config.json and dir/adapter_model.safetensors (regular files only), checks
 * every key against the sites (with or without shape->prefix); extra tensors (modules_to_save)
 * are accepted when keep_extra(name) says so. On error nothing is left open. */
qkv_status qkv__lora_file_open(const char *dir, const qkv__lora_shape *shape,
                               const qkv__lora_site *sites, size_t n_sites,
                               int (*keep_extra)(const char *name), qkv__lora_file *f);
void qkv__lora_file_close(qkv__lora_file *f);
/* An extra tensor of the file by its name without "base_model.model." (NULL: absent). */
const qkv_st_tensor *qkv__lora_file_extra(const qkv__lora_file *f, const char *name);

/* Closes and frees an applied adapter and its slots (NULL: nothing); the models' free. */
void qkv__lora_release(qkv__lora_file *f, qkv_nn_lora *slots);

#endif
