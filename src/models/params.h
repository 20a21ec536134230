/* params.h — the parameter table of each architecture: the one place in the tree that names a
 * model's tensors.
 *
 * A row gives the Hugging Face tensor name (after the model prefix, "%d" standing for the layer
 * index), its shape in terms of the config's sizes, its dtype as stored by qkv (F32), whether
 * AdamW's weight decay applies, whether it is trained, and how a fresh model initializes it. The
 * inference loaders (gpt.c), the trainer (src/train), its checkpoints and the Hugging Face
 * import/export all walk these rows, so a name or shape is written once. Rows are in the order of
 * the architecture's named_parameters(): the `pre` rows, then the `layer` rows for layer 0, 1, ...,
 * then `post`, then the `head` rows. */
#ifndef QKV_MODELS_PARAMS_H
#define QKV_MODELS_PARAMS_H

#include "qkv.h"

#include <stddef.h>
#include <stdint.h>

typedef enum qkv__dim {
    QKV__DIM_NONE = 0, /* no second dimension: a vector */
    QKV__DIM_V,        /* vocabulary */
    QKV__DIM_P,        /* positions */
    QKV__DIM_C,        /* hidden size */
    QKV__DIM_3C,       /* GPT-2's fused q | k | v */
    QKV__DIM_F,        /* MLP width */
    QKV__DIM_Q,        /* query heads · head dim */
    QKV__DIM_K,        /* key/value heads · head dim */
    QKV__DIM_TV,       /* token types (BERT) */
    QKV__DIM_NL,       /* labels of a classification head */
    QKV__DIM_VD,       /* the decoder's vocabulary (encoder-decoders) */
    QKV__DIM_F2,       /* the decoder's MLP width (encoder-decoders) */
    QKV__DIM_NB,       /* relative position buckets (T5) */
    QKV__DIM_H,        /* attention heads (T5's relative bias table) */
} qkv__dim;

/* The sizes a table's dims stand for. */
typedef struct qkv__dims {
    int64_t V, P, C, F, Q, K, TV, NL;
    int64_t Vd, F2; /* encoder-decoders: the decoder's vocabulary and MLP width */
    int64_t NB, H;  /* T5: relative position buckets, heads */
} qkv__dims;

/* A fresh tensor, as transformers initializes it. */
typedef enum qkv__init {
    QKV__INIT_NORMAL = 0,  /* N(0, initializer_range) */
    QKV__INIT_NORMAL_PROJ, /* N(0, initializer_range / sqrt(2 L)): GPT-2's c_proj matrices */
    QKV__INIT_ONE,         /* norm weights */
    QKV__INIT_ZERO,        /* biases */
} qkv__init;

typedef struct qkv__param_spec {
    const char *name; /* after the prefix; "%d" = the layer index */
    qkv__dim d0, d1;  /* shape (d0) or (d0, d1) */
    int decay;        /* weight decay applies: the matrices and embeddings */
    int trainable;    /* updated by the optimizer (frozen parameters keep their values) */
    int untied_only;  /* head rows: present only when the LM head is not the token embedding */
    qkv__init init;   /* how a fresh model starts */
    qkv_dtype dtype;  /* as qkv keeps, checkpoints and exports it (F32; the compute dtype) */
    int embed;        /* encoder-decoders: QKV__EMB_SHARED: present only with one embedding
                         table for encoder and decoder; QKV__EMB_SEPARATE: only without */
    int ff;           /* T5: QKV__FF_PLAIN: present only with a plain FF (wi); QKV__FF_GATED:
                         only with a gated one (wi_0, wi_1) */
} qkv__param_spec;

enum { QKV__EMB_ALWAYS = 0, QKV__EMB_SHARED = 1, QKV__EMB_SEPARATE = 2 };
enum { QKV__FF_ANY = 0, QKV__FF_PLAIN = 1, QKV__FF_GATED = 2 };

typedef struct qkv__param_table {
    const char *arch;   /* "gpt2", "llama" */
    const char *prefix; /* of the *LMHeadModel / *ForCausalLM checkpoints: "transformer.", ... */
    const qkv__param_spec *pre, *layer, *post;
    /* the task head's rows, named without the prefix (lm_head.weight, cls.predictions.*) */
    const qkv__param_spec *head;
    /* tensors a checkpoint may carry that the trainer does not train (BERT's pooler) */
    const qkv__param_spec *opt;
    /* encoder-decoders: the decoder's layer rows, after the encoder's (`layer`) */
    const qkv__param_spec *layer2;
    int n_pre, n_layer, n_post, n_head, n_opt, n_layer2;
} qkv__param_table;

/* GPT-2 (GPT2LMHeadModel; lm_head tied to wte). Layer rows in the order of trainer.h's TP_*. */
extern const qkv__param_table qkv__params_gpt2;
/* Llama-style decoders (LlamaForCausalLM; lm_head.weight only when untied). Layer rows in the
 * order of trainer.h's LP_*. */
extern const qkv__param_table qkv__params_llama;
/* BERT encoders with the masked-LM head (BertForMaskedLM: the decoder is the word embedding
 * matrix plus cls.predictions.bias). Layer rows in the order of trainer.h's BP_*. */
extern const qkv__param_table qkv__params_bert;
/* BERT encoders with a sequence-classification head (BertForSequenceClassification): the
 * encoder rows of qkv__params_bert, the pooler as post rows (bert.pooler.dense.*), the
 * classifier (NL, C) as head rows. */
extern const qkv__param_table qkv__params_bert_cls;

/* MarianMT (MarianMTModel): pre rows the embeddings (model.shared.weight, or the encoder's and
 * the decoder's own), layer rows the encoder's (trainer.h's MP_*), layer2 rows the decoder's
 * (MD_*), head rows final_logits_bias (1, Vd), a buffer that is not trained, and lm_head.weight
 * when untied. The sinusoidal position tables are not parameters (computed). */
extern const qkv__param_table qkv__params_marian;

/* T5 and T5 v1.1 (T5ForConditionalGeneration): pre rows shared.weight and the two relative
 * position bias tables (NB, H) of block 0 of the encoder and the decoder (each shared by its
 * stack's layers); layer rows the encoder's blocks (models/t5.c's ENC_* order), layer2 rows the
 * decoder's (DEC_*), the FF rows marked plain (wi) or gated (wi_0, wi_1); post rows the two
 * final norms; head row lm_head.weight (v1.1: untied). Not trained by qkv. */
extern const qkv__param_table qkv__params_t5;

/* The size a dim stands for (1 for QKV__DIM_NONE). */
int64_t qkv__param_dim(qkv__dim d, const qkv__dims *s);
/* prefix + the row's name with "%d" replaced by layer; INVALID_ARG if it does not fit. */
qkv_status qkv__param_name(char *buf, size_t cap, const char *prefix, const qkv__param_spec *p,
                           int64_t layer);

#endif
