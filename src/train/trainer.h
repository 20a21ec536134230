/* trainer.h — the GPT-2 trainer's internals (the API is qkv.h's "training" section).
 *
 * Parameters live in one flat F32 buffer w, in the order and with the names of Hugging Face's
 * GPT2LMHeadModel.named_parameters(); the gradients g and AdamW's moments m, v use the same
 * layout, so clipping, the optimizer and checkpoints are loops over flat arrays.
 *
 * Per block the tensors are, in this order (Conv1D matrices are [in, out] as in the checkpoint):
 *   ln_1.weight (C), ln_1.bias (C), attn.c_attn.weight (C, 3C), attn.c_attn.bias (3C),
 *   attn.c_proj.weight (C, C), attn.c_proj.bias (C), ln_2.weight (C), ln_2.bias (C),
 *   mlp.c_fc.weight (C, F), mlp.c_fc.bias (F), mlp.c_proj.weight (F, C), mlp.c_proj.bias (C)
 * after wte (V, C) and wpe (P, C), and before ln_f.weight, ln_f.bias (C). F = 4C. */
#ifndef QKV_TRAIN_TRAINER_H
#define QKV_TRAIN_TRAINER_H

#include "kernels/gemm.h"
#include "qkv.h"

#include <stddef.h>
#include <stdint.h>

enum {
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

typedef struct qkv__tparam {
    char name[96];
    int ndim;
    int64_t shape[2];
    int64_t numel;
    int64_t offset; /* in floats, into w / g / m / v */
    int decay;
} qkv__tparam;

/* Activations of one block for a micro-batch of N = B·T rows. */
typedef struct qkv__tacts {
    float *ln1, *mean1, *rstd1; /* (N, C), (N), (N) */
    float *q, *k, *v, *att;     /* (N, C) each: [B, T, H, D] */
    float *lse;                 /* (B, H, T) */
    float *res2;                /* (N, C) the stream after attention */
    float *ln2, *mean2, *rstd2; /* (N, C), (N), (N) */
    float *h, *a;               /* (N, F) before and after the activation */
} qkv__tacts;

/* A piece of at most QKV__SEG_FLOATS floats of one tensor: the optimizer's unit of work, so
 * threads get equal shares although tensor sizes differ 1000-fold. */
#define QKV__SEG_FLOATS ((int64_t)1 << 18)
typedef struct qkv__tseg {
    int64_t param;      /* index into params */
    int64_t begin, end; /* flat float range */
} qkv__tseg;

struct qkv_trainer {
    qkv_gpt2_shape shape;
    float eps;   /* LayerNorm epsilon */
    qkv_act act; /* MLP activation (GPT-2: tanh GELU) */
    size_t n_params;
    qkv__tparam *params;
    int64_t n_floats;
    float *w, *g, *m, *v; /* (n_floats) each */
    int64_t steps;        /* AdamW steps taken */
    qkv__tseg *segs;      /* every tensor cut into pieces, in order */
    int64_t n_segs;

    /* Activations, sized by qkv_trainer_reserve for up to cap_N = cap_B·cap_T rows. */
    int64_t cap_B, cap_T;
    qkv_recompute policy;
    float *arena; /* one allocation for everything below */
    size_t arena_bytes;
    float *resid;               /* (L + 1, N, C): the input of every block, then the final stream */
    qkv__tacts *layer;          /* [L] (NONE) or [1] (LAYERS: recomputed in the backward) */
    float *lnf, *meanf, *rstdf; /* (N, C), (N), (N) */
    float *logits;              /* (N, V); the backward turns it into dlogits */
    float *row_loss;            /* (N) */
    float *dresid, *dln, *datt, *dq, *dk, *dv; /* (N, C) each */
    float *da, *dh;                            /* (N, F) each */
    int logits_valid;
};

/* The parameter table and zeroed buffers (weights not initialized); gpt2_train.c. */
qkv_status qkv__trainer_alloc(const qkv_gpt2_shape *shape, qkv_trainer **out);

/* Parameter i of block l (TP_*) or the embeddings / final norm. */
static inline float *qkv__tw(const struct qkv_trainer *t, float *base, int64_t l, int which) {
    return base + t->params[2 + (size_t)l * TP_PER_LAYER + (size_t)which].offset;
}

#endif
