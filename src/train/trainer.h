/* trainer.h — the trainer's internals (the API is qkv.h's "training" section).
 *
 * One trainer serves every architecture: GPT-2 (GPT2LMHeadModel), Llama-style decoders
 * (LlamaForCausalLM: RMSNorm, RoPE, SwiGLU, GQA, tied or untied head) and BERT encoders trained
 * as BertForMaskedLM. Its parameters are the rows of the architecture's table
 * (models/params.h), in that order, in one flat F32 buffer w; the gradients g and AdamW's
 * moments m, v use the same layout, so clipping, the optimizer and checkpoints are loops over
 * flat arrays, and a parameter's name is its Hugging Face name.
 *
 * trainer.c owns what is common (parameters, activations, batches, the loss); each
 * architecture's forward is the models' own block (models/block.h, also run by inference)
 * and its backward a list of layer calls (src/nn) in decoder_train.c (GPT-2, Llama) and
 * bert_train.c. */
#ifndef QKV_TRAIN_TRAINER_H
#define QKV_TRAIN_TRAINER_H

#include "kernels/gemm.h"
#include "models/block.h"
#include "models/labels.h"
#include "models/params.h"
#include "qkv.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef enum qkv__tarch {
    QKV__TARCH_GPT2 = 0,
    QKV__TARCH_LLAMA = 1,
    QKV__TARCH_BERT = 2,     /* masked LM */
    QKV__TARCH_BERT_CLS = 3, /* sequence classification (BertForSequenceClassification) */
    QKV__TARCH_MARIAN = 4,   /* encoder-decoder (MarianMTModel), teacher forcing */
} qkv__tarch;

/* The tensors of a block, in the order of the table's layer rows (models/params.c). */
enum { /* GPT-2 (Conv1D matrices are [in, out]) */
       TP_LN1_W = 0,
       TP_LN1_B,
       TP_ATTN_W,
       TP_ATTN_B,
       TP_PROJ_W,
       TP_PROJ_B,
       TP_LN2_W,
       TP_LN2_B,
       TP_FC_W,
       TP_FC_B,
       TP_MLP_W,
       TP_MLP_B,
       TP_PER_LAYER
};
enum { /* Llama (nn.Linear [out, in], no biases) */
       LP_Q = 0,
       LP_K,
       LP_V,
       LP_O,
       LP_GATE,
       LP_UP,
       LP_DOWN,
       LP_LN1,
       LP_LN2,
       LP_PER_LAYER
};
enum { /* BERT (nn.Linear [out, in]) */
       BP_Q_W = 0,
       BP_Q_B,
       BP_K_W,
       BP_K_B,
       BP_V_W,
       BP_V_B,
       BP_O_W,
       BP_O_B,
       BP_LN1_W,
       BP_LN1_B,
       BP_FC_W,
       BP_FC_B,
       BP_OUT_W,
       BP_OUT_B,
       BP_LN2_W,
       BP_LN2_B,
       BP_PER_LAYER
};

/* Marian: the encoder's layer rows are in BP_* order (BERT's); the decoder's (layer2 rows): */
enum {
    MD_Q_W = 0,
    MD_Q_B,
    MD_K_W,
    MD_K_B,
    MD_V_W,
    MD_V_B,
    MD_O_W,
    MD_O_B,
    MD_LN1_W,
    MD_LN1_B,
    MD_CQ_W,
    MD_CQ_B,
    MD_CK_W,
    MD_CK_B,
    MD_CV_W,
    MD_CV_B,
    MD_CO_W,
    MD_CO_B,
    MD_LN2_W,
    MD_LN2_B,
    MD_FC_W,
    MD_FC_B,
    MD_OUT_W,
    MD_OUT_B,
    MD_LN3_W,
    MD_LN3_B,
    MD_PER_LAYER
};

/* What the architecture is, with its sizes (from qkv_gpt2_shape or a Hugging Face config). */
typedef struct qkv__tconfig {
    qkv__tarch arch;
    int64_t V, P, C, L, H, Hk, D, F, TV; /* vocab, positions, hidden, layers, heads, KV heads,
                                            head dim, MLP width, token types (BERT) */
    int64_t NL;                          /* labels of a classification head (BERT_CLS) */
    qkv_problem_type problem;            /* what the head predicts (BERT_CLS) */
    float p_hidden, p_attn, p_cls;       /* dropout while training: hidden states, attention
                                            probabilities, the classifier's input (BERT_CLS) */
    float eps;                           /* LayerNorm / RMSNorm epsilon */
    qkv_act act;                         /* MLP activation (Llama: the SiLU of SwiGLU) */
    double rope_theta;                   /* Llama */
    int tied;                            /* LM head = token embedding */
    double init_std;                     /* initializer_range of fresh weights */
    int32_t bos_id, eos_id, pad_id;      /* exported in config.json; -1 when absent */
    /* encoder-decoders (MARIAN): L, H, F, V are the encoder's; the decoder's here */
    int64_t L2, H2, F2, Vd; /* decoder layers, heads, MLP width, vocabulary */
    int shared;             /* one embedding table for encoder, decoder (and the tied head) */
    float p_act;            /* activation_dropout */
    float embed_scale;      /* √C with scale_embedding, else 1 */
    int32_t start_id;       /* decoder_start_token_id */
    float smoothing;        /* label smoothing of the loss (torch's CrossEntropyLoss) */
} qkv__tconfig;

typedef struct qkv__tparam {
    char name[96];
    int ndim;
    int64_t shape[2];
    int64_t numel;
    int64_t offset; /* in floats, into w / g / m / v */
    int decay;
    int trainable;   /* 0: frozen (the optimizer and the gradient norm skip it) */
    qkv__init init;  /* the table row's: how a fresh model starts */
    qkv_dtype dtype; /* the table row's: as checkpoints and exports store it (F32) */
} qkv__tparam;

/* Activations of one block for a micro-batch of N = B·T rows: the models' block struct
 * (models/block.h), every buffer of its own. */
typedef qkv__block_acts qkv__tacts;

/* A piece of at most QKV__SEG_FLOATS floats of one tensor: the optimizer's unit of work, so
 * threads get equal shares although tensor sizes differ 1000-fold. */
#define QKV__SEG_FLOATS ((int64_t)1 << 18)
typedef struct qkv__tseg {
    int64_t param;      /* index into params */
    int64_t begin, end; /* flat float range */
} qkv__tseg;

/* The batch of one forward, checked (targets: ignored rows are -1). */
typedef struct qkv__tbatch {
    const int32_t *ids;     /* (B, T) */
    const int32_t *tgt;     /* (B, T) */
    const int32_t *types;   /* (B, T) BERT token types, or NULL (all 0) */
    const int32_t *kv_lens; /* (B) keys at or past kv_lens[b] are padding, or NULL */
    int64_t B, T;
    const float *values; /* classifiers: (B, NL) multi-label targets / regression values */
    const int32_t *src;  /* encoder-decoders: the source (B, S); kv_lens its lengths */
    int64_t S;
    int train;             /* a training forward: dropout applies (cfg p_*) */
    uint64_t seed;         /* the dropout masks' seed */
    const float *word_emb; /* (B, T, C) word embeddings used instead of word[ids], or NULL (always
                              NULL in training; attribute.c interpolates them for integrated
                              gradients); the encoder backward then always reaches t->dx1 */
} qkv__tbatch;

struct qkv_trainer {
    qkv__tconfig cfg;
    qkv_gpt2_shape shape; /* vocab, positions, hidden, layers, heads: qkv_trainer_get_shape */
    const qkv__param_table *tab;
    size_t n_params;
    size_t n_pre; /* the table's pre rows present (Marian: one or two embedding tables) */
    qkv__tparam *params;
    int64_t n_floats;
    float *w, *g; /* (n_floats) each */
    float *m, *v; /* (mv_end - mv_begin) each: the moments of the floats [mv_begin,
                     mv_end), all of them unless ZeRO-1 sharded them (zero.c) */
    int64_t mv_begin, mv_end;
    int64_t steps;   /* AdamW steps taken */
    qkv__tseg *segs; /* every tensor cut into pieces, in order */
    int64_t n_segs;

    /* Activations, sized by qkv_trainer_reserve for up to cap_B·cap_T rows. */
    int64_t cap_B, cap_T;
    qkv_recompute policy;
    float *arena; /* one allocation for everything below */
    size_t arena_bytes;
    float *resid;      /* (L + 1, N, C): the input of every block, then the final stream */
    qkv__tacts *layer; /* [L] (NONE) or [1] (LAYERS: recomputed in the backward) */
    float *emb, *emb_mean, *emb_rstd; /* BERT: the summed embeddings (N, C) and their LN stats */
    float *head;                      /* BERT: the MLM transform dense output (N, C) */
    float *head_act;                  /* BERT: its activation (N, C) */
    float *lnf, *meanf, *rstdf; /* (N, C), (N), (N): the final norm (BERT: the transform LN) */
    float *logits;              /* (N, V); the backward turns it into dlogits */
    float *row_loss;            /* (N) */
    int32_t *tgt;               /* (N) targets with every ignored one as -1 */
    float *dresid, *dln, *dx1;  /* (N, C) each */
    float *datt, *dq, *dqr;     /* (N, Q) each: attention output, q, q before RoPE */
    float *dk, *dv, *dkr;       /* (N, K) each */
    float *da, *dh, *du;        /* (N, F) each */
    float *cls_x, *pool_h, *pool_a, *pool_d; /* BERT_CLS (B, C): [CLS] rows, the pooler's
                                                dense output, tanh, dropout */
    float *dcls, *dpool;                     /* BERT_CLS (B, C) gradients */
    int logits_valid;
    qkv__labels labels;      /* BERT_CLS: the head's label names and problem type */
    size_t n_fresh;          /* parameters initialized fresh by the last load */
    struct qkv__tlora *lora; /* LoRA adapters (lora_train.c), NULL: none */
    /* called after block l's backward (its parameters' gradients are final for this
     * micro-batch): the data-parallel loop starts their all-reduce there (loop.c); NULL: none */
    void (*layer_hook)(void *user, int64_t l);
    void *layer_hook_user;
    /* encoder-decoders (marian_train.c); resid and layer are the encoder's */
    float *resid2;      /* (L2 + 1, N, C): the decoder's block inputs, then its output */
    qkv__tacts *layer2; /* [L2] */
    float *xkv;         /* (L2, 2, N, C): every decoder layer's cross keys, then values */
    float *denc;        /* (N, C): dL/d(encoder output), summed over the decoder layers */
    int32_t *dec_ids;   /* (N): the decoder's inputs (labels shifted right) */
    float *pe;          /* (P, C): the sinusoidal positions (made on first use) */
};

/* The parameter table and zeroed buffers (weights not initialized); trainer.c. */
qkv_status qkv__trainer_alloc(const qkv__tconfig *cfg, qkv_trainer **out);
/* Before allocating a trainer for cfg read from a file: refuses (QKV_ERR_FORMAT, path named) a
 * config whose parameters cannot be in st's tensors: a checkpoint (checkpoint != 0) must hold
 * 12 bytes per parameter (F32 weights and both moments), a Hugging Face model 2 per required
 * parameter. So a few bytes of metadata cannot claim gigabytes. */
qkv_status qkv__tconfig_check_file(const qkv__tconfig *cfg, const qkv_safetensors *st,
                                   const char *path, int checkpoint);
/* Sets parameter i to its fresh initialization (trainer.c: as transformers does). */
void qkv__trainer_init_param(struct qkv_trainer *t, size_t i, uint64_t seed);
/* The trainer config of a Hugging Face directory's config.json (gpt2, llama/mistral, bert). */
qkv_status qkv__tconfig_load(const char *dir, qkv__tconfig *cfg);
/* The same for a BERT with a classification head: labels and problem type from spec, else
 * from config.json (labels.h); the dropout rates from config.json. */
qkv_status qkv__tconfig_load_cls(const char *dir, const qkv_classifier_spec *spec,
                                 qkv__tconfig *cfg, qkv__labels *labels);
/* The architecture's name ("gpt2", "llama", "bert") and back. */
const char *qkv__tarch_name(qkv__tarch a);
int qkv__tarch_parse(const char *s, qkv__tarch *a);

/* ---------------------------------------------------------------- LoRA (lora_train.c) */
struct qkv__tlora;
/* The index of the first adapter parameter (they follow the table's rows). */
size_t qkv__tlora_first(const struct qkv_trainer *t);
/* Binds the adapters to this forward's weights, gradients and dropout (b->train, b->seed);
 * called before every forward. */
void qkv__tlora_begin(struct qkv_trainer *t, const struct qkv__tbatch *b);
/* The adapter slots (models/lora.h: qkv__lora_slot), NULL without adapters. */
qkv_nn_lora *qkv__tlora_slots(const struct qkv_trainer *t);
void qkv__tlora_free(struct qkv__tlora *lo);
/* The checkpoint metadata of the adapters (a JSON object; qkv__free it), NULL on NOMEM. */
char *qkv__tlora_meta(const struct qkv_trainer *t);
/* Adds the adapters a checkpoint's metadata describes (their values come from its tensors). */
qkv_status qkv__tlora_restore(struct qkv_trainer *t, const char *path, const char *meta);
/* A copy of t->w with every adapter merged (W += s·B·A); *out: qkv__free. */
qkv_status qkv__tlora_merged(const struct qkv_trainer *t, float **out);
/* Every tensor cut into segments again (after parameters were added). */
qkv_status qkv__trainer_build_segs(struct qkv_trainer *t);
/* Writes text to path atomically (temporary file, fsync, rename); checkpoint.c. */
qkv_status qkv__write_text_atomic(const char *path, const char *text);

/* The number of the table's parameters (the adapters' follow them). */
static inline size_t qkv__tn_base(const struct qkv_trainer *t) {
    return t->lora ? qkv__tlora_first(t) : t->n_params;
}

/* The index of the first post row (after every layer row of both stacks). */
static inline size_t qkv__tbody(const struct qkv_trainer *t) {
    return t->n_pre + (size_t)t->cfg.L * (size_t)t->tab->n_layer +
           (size_t)t->cfg.L2 * (size_t)t->tab->n_layer2;
}

/* Parameter `which` of block l, and row i of the table's pre / post / head rows; base is w or g.
 * A head row that is absent (Llama's lm_head when tied) gives NULL. */
static inline float *qkv__tw(const struct qkv_trainer *t, float *base, int64_t l, int which) {
    return base + t->params[t->n_pre + (size_t)l * (size_t)t->tab->n_layer + (size_t)which].offset;
}
static inline float *qkv__tpre(const struct qkv_trainer *t, float *base, int i) {
    return base + t->params[i].offset;
}
/* Parameter `which` of decoder block l (encoder-decoders: the layer2 rows). */
static inline size_t qkv__tw2_index(const struct qkv_trainer *t, int64_t l, int which) {
    return t->n_pre + (size_t)t->cfg.L * (size_t)t->tab->n_layer +
           (size_t)l * (size_t)t->tab->n_layer2 + (size_t)which;
}
static inline float *qkv__tw2(const struct qkv_trainer *t, float *base, int64_t l, int which) {
    return base + t->params[qkv__tw2_index(t, l, which)].offset;
}
static inline float *qkv__tpost(const struct qkv_trainer *t, float *base, int i) {
    return base + t->params[qkv__tbody(t) + (size_t)i].offset;
}
static inline float *qkv__thead(const struct qkv_trainer *t, float *base, int i) {
    size_t k = qkv__tbody(t) + (size_t)t->tab->n_post + (size_t)i;
    return k < qkv__tn_base(t) ? base + t->params[k].offset : NULL;
}

/* The gradient of parameter i, or NULL when it is frozen: the backward then skips it. */
static inline float *qkv__tgrad(const struct qkv_trainer *t, size_t i) {
    return t->params[i].trainable ? t->g + t->params[i].offset : NULL;
}
static inline float *qkv__twg(const struct qkv_trainer *t, int64_t l, int which) {
    return qkv__tgrad(t, t->n_pre + (size_t)l * (size_t)t->tab->n_layer + (size_t)which);
}
static inline float *qkv__tpreg(const struct qkv_trainer *t, int i) {
    return qkv__tgrad(t, (size_t)i);
}
static inline float *qkv__twg2(const struct qkv_trainer *t, int64_t l, int which) {
    return qkv__tgrad(t, qkv__tw2_index(t, l, which));
}
static inline float *qkv__tpostg(const struct qkv_trainer *t, int i) {
    return qkv__tgrad(t, qkv__tbody(t) + (size_t)i);
}
static inline float *qkv__theadg(const struct qkv_trainer *t, int i) {
    size_t k = qkv__tbody(t) + (size_t)t->tab->n_post + (size_t)i;
    return k < qkv__tn_base(t) ? qkv__tgrad(t, k) : NULL;
}

/* 1 when the trainer holds the moments of a slice only (ZeRO-1): what needs them all refuses. */
static inline int qkv__tsharded(const struct qkv_trainer *t) {
    return t->mv_begin != 0 || t->mv_end != t->n_floats;
}
/* optim.c's pieces, for the sharded step (zero.c): Σ g² of segments [s0, s1) into
 * partial[s0 .. s1); the norm and clipping coefficient of a total Σ g²; AdamW over segments
 * [s0, s1) (their moments must be held) with the gradients scaled by coef, counting a step. */
void qkv__trainer_sumsq(qkv_runtime *rt, struct qkv_trainer *t, int64_t s0, int64_t s1,
                        double *partial);
void qkv__clip_coef(double sumsq, float max_norm, float *norm, float *coef);
qkv_status qkv__trainer_adamw_segs(qkv_runtime *rt, struct qkv_trainer *t, const qkv_adamw *hp,
                                   float lr, float coef, int64_t s0, int64_t s1);

/* Gradient buffers are zeroed before a backward accumulates (+=) into them. */
static inline void qkv__tzero(float *p, int64_t n) { memset(p, 0, (size_t)n * sizeof(float)); }

/* The saved activations of block l (one shared set under QKV_RECOMPUTE_LAYERS). */
static inline qkv__tacts *qkv__tacts_of(struct qkv_trainer *t, int64_t l) {
    return t->policy == QKV_RECOMPUTE_LAYERS ? &t->layer[0] : &t->layer[l];
}

/* From t->logits (N, V) (V: the vocabulary, or a classifier's labels): the mean cross-entropy over
 * t->tgt into *loss (row losses kept); with backward, the logits become the gradient of scale times
 * that mean. */
qkv_status qkv__trainer_loss(qkv_runtime *rt, qkv_trainer *t, int64_t N, int64_t V, int backward,
                             float scale, float *loss);
/* The config of a Hugging Face MarianMT directory (marian_train.c). */
qkv_status qkv__tconfig_load_marian(const char *dir, qkv__tconfig *cfg);

/* Each architecture: the forward to the loss (backward != 0: logits become dlogits scaled by
 * scale / count) and the backward that ADDS to t->g. */
qkv_status qkv__decoder_forward(qkv_runtime *rt, qkv_trainer *t, const qkv__tbatch *b, int backward,
                                float scale, float *loss); /* GPT-2, Llama */
qkv_status qkv__decoder_backward(qkv_runtime *rt, qkv_trainer *t, const qkv__tbatch *b);
qkv_status qkv__bert_mlm_forward(qkv_runtime *rt, qkv_trainer *t, const qkv__tbatch *b,
                                 int backward, float scale, float *loss);
qkv_status qkv__bert_mlm_backward(qkv_runtime *rt, qkv_trainer *t, const qkv__tbatch *b);
qkv_status qkv__bert_cls_forward(qkv_runtime *rt, qkv_trainer *t, const qkv__tbatch *b,
                                 int backward, float scale, float *loss);
qkv_status qkv__bert_cls_backward(qkv_runtime *rt, qkv_trainer *t, const qkv__tbatch *b);
qkv_status qkv__marian_forward(qkv_runtime *rt, qkv_trainer *t, const qkv__tbatch *b, int backward,
                               float scale, float *loss);
qkv_status qkv__marian_backward(qkv_runtime *rt, qkv_trainer *t, const qkv__tbatch *b);
/* BERT's encoder block (bert_train.c) over the batch's B·T rows, for Marian's encoder too: the
 * forward, and the backward from t->dresid = dL/d(block output) to dL/d(block input). */
qkv_status qkv__bert_block_forward(qkv_runtime *rt, qkv_trainer *t, int64_t l, const qkv__tacts *a,
                                   const float *x, float *y, const qkv__tbatch *b);
qkv_status qkv__bert_block_backward(qkv_runtime *rt, qkv_trainer *t, int64_t l, const qkv__tacts *a,
                                    const float *x, const qkv__tbatch *b);
/* BERT's embeddings and blocks only: resid[0..L] from the batch; and the backward from
 * t->dresid = dL/d(resid[L]) down to the embeddings (t->dx1 = dL/d(summed embeddings) when an
 * embedding trains or b->word_emb is set). */
qkv_status qkv__bert_encode_forward(qkv_runtime *rt, qkv_trainer *t, const qkv__tbatch *b);
qkv_status qkv__bert_encode_backward(qkv_runtime *rt, qkv_trainer *t, const qkv__tbatch *b);

/* Checks a public batch (fn names the caller in messages), reserves activations and fills
 * t->tgt; out->train is 0 (trainer.c). */
qkv_status qkv__trainer_check_batch(qkv_trainer *t, const char *fn, const qkv_train_batch *b,
                                    qkv__tbatch *out);

#endif
