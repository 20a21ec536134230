/* block.h — the Transformer blocks of the model families, each ONE forward that inference
 * (gpt.c and bert.c: packed sequences, KV caches, prepacked weights) and training (src/train:
 * batches, saved activations) both run, as a list of layer calls (src/nn).
 *
 * What differs between the two uses is passed in, not branched on by model:
 *   - the weights are qkv_nn_linear layers: prepacked (inference) or read where they lie, with
 *     their gradients beside them (training);
 *   - attention is a callback: it receives the projected q, k, v of the block's N rows and
 *     writes att (and lse when asked), applying positions (RoPE) and caches its own way —
 *     per sequence against a KV cache for inference, over a [B, T] batch for training;
 *   - the activation buffers: training gives each block its own (the backward reads them);
 *     inference gives one scratch set, lets the residual stream be updated in place (res2 == x,
 *     y == res2) and leaves the saved statistics NULL, and GPT-2's MLP activation then runs in
 *     the GEMM epilogue (h NULL).
 * The backwards (src/train) call the same layers' backwards in reverse over the same structs. */
#ifndef QKV_MODELS_BLOCK_H
#define QKV_MODELS_BLOCK_H

#include "nn/nn.h"
#include "qkv.h"

#include <stdint.h>

/* Activations of one block over N rows (Q = Hq·D, K = Hk·D). NULL where a use has none. */
typedef struct qkv__block_acts {
    float *ln1, *mean1, *rstd1; /* (N, C), (N), (N): pre-norm: Norm1(x); post-norm: LN1(res1) */
    float *q, *k, *v, *att;     /* (N, Q), (N, K), (N, K), (N, Q): [rows, heads, D] */
    float *lse;                 /* attention's log-sum-exp (training) */
    float *res1;                /* (N, C) post-norm: x + attention */
    float *res2;                /* (N, C) pre-norm: x + attention; post-norm: ln1 + MLP */
    float *ln2, *mean2, *rstd2; /* (N, C), (N), (N): pre-norm: Norm2(res2); post-norm: stats */
    float *h, *u, *a;           /* (N, F): fc / gate, up (Llama), act(h) / silu(gate)·up */
    /* encoder-decoder decoders while training (qkv__s2s_dec_block_forward): */
    float *cq, *catt, *clse;     /* cross-attention query, output (N, C), lse */
    float *res3, *mean3, *rstd3; /* (N, C), (N), (N): the MLP's residual sum and LN3 stats */
    /* decoders' inference with fused products (qkv__dec_layer.qkv / gate_up): (N, max(Q + 2K,
     * 2F)) scratch */
    float *fused;
} qkv__block_acts;

/* Attention of block l over its N rows: a->q, a->k, a->v in (projected, before positions) ->
 * a->att (and a->lse unless NULL). May rotate q and k in place. */
typedef qkv_status (*qkv__attend_fn)(void *ctx, qkv_runtime *rt, int64_t l,
                                     const qkv__block_acts *a);

/* ---------------------------------------------------------------- decoders (pre-norm) */

typedef struct qkv__dec_cfg {
    int llama;          /* 0: GPT-2 (LayerNorm, act MLP, biases); 1: Llama (RMSNorm, SwiGLU) */
    int64_t C, F, Q, K; /* hidden, MLP width, Hq·D, Hk·D */
    float eps;          /* the norms' epsilon */
    qkv_act act;        /* GPT-2's MLP activation */
} qkv__dec_cfg;

typedef struct qkv__dec_layer {
    const float *ln1_w, *ln1_b, *ln2_w, *ln2_b; /* (C); the biases NULL for RMSNorm */
    qkv_nn_linear q, k, v, o;                   /* C -> Q, K, K; Q -> C */
    qkv_nn_linear fc, proj;                     /* GPT-2: C -> F, F -> C; Llama: up, down */
    qkv_nn_linear gate;                         /* Llama: C -> F */
    /* Inference may fuse (C != 0; training leaves them empty): qkv = q | k | v as one product
     * C -> Q + 2K (the separate q, k, v unused then), gate_up = Llama's gate | up, C -> 2F
     * (gate and fc unused). Each output column is summed as in its own product, so fused and
     * separate products give the same bits; they are split into a->q, k, v (a->h, u) by rows. */
    qkv_nn_linear qkv, gate_up;
} qkv__dec_layer;

/* Gradients of a qkv__dec_layer's tensors, in their own layouts (NULL: not needed). */
typedef struct qkv__dec_grads {
    float *ln1_w, *ln1_b, *ln2_w, *ln2_b;
    float *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *o_w, *o_b;
    float *fc_w, *fc_b, *proj_w, *proj_b, *gate_w;
} qkv__dec_grads;

/* y (N, C) = block(x (N, C)): h = Norm1(x); res2 = x + O(attend(Q h, K h, V h));
 * y = res2 + MLP(Norm2(res2)). a->res2 may be x and y may be a->res2 (in place). */
qkv_status qkv__dec_block_forward(qkv_runtime *rt, const qkv__dec_cfg *c, const qkv__dec_layer *w,
                                  int64_t l, const qkv__block_acts *a, const float *x, float *y,
                                  int64_t N, qkv__attend_fn attend, void *ctx);

/* Rows of src (N, w0 + w1 [+ w2]) split into d0 (N, w0), d1 (N, w1) and d2 (N, w2; NULL: none):
 * a fused product's output into its parts. */
void qkv__split_rows(const float *src, int64_t N, int64_t w0, int64_t w1, int64_t w2, float *d0,
                     float *d1, float *d2);

/* ---------------------------------------------------------------- encoders (post-norm, BERT) */

typedef struct qkv__enc_cfg {
    int64_t C, F; /* hidden, MLP width */
    float eps;
    qkv_act act;
    float drop;     /* training: dropout on the attention output and MLP output before their
                       residual adds (BertSelfOutput / BertOutput); 0 for inference */
    uint64_t seed;  /* its masks: streams qkv__enc_drop_stream(l, 0 | 1) of this seed */
    float act_drop; /* training: dropout on the MLP activation (Marian's activation_dropout);
                       stream qkv__enc_drop_stream(l, 0) of seed ^ QKV__ACT_DROP_SEED */
} qkv__enc_cfg;

#define QKV__ACT_DROP_SEED 0xAC7D50F0ull

/* The dropout stream of block l's attention (site 0) or MLP (site 1) output; stream 0 is left
 * for the embeddings. */
static inline uint64_t qkv__enc_drop_stream(int64_t l, int site) {
    return 1 + 2 * (uint64_t)l + (uint64_t)site;
}

typedef struct qkv__enc_layer {
    qkv_nn_linear q, k, v, o, fc, out; /* C -> C (q, k, v, o), C -> F, F -> C; all with biases */
    const float *ln1_w, *ln1_b, *ln2_w, *ln2_b;
} qkv__enc_layer;

/* y (N, C) = LN2(ln1 + MLP(ln1)), ln1 = LN1(x + O(attend(Q x, K x, V x))). Inference may give
 * one scratch for res1 and res2 and y == x. With c->drop > 0 (training): res1 = x +
 * drop(O(...)), res2 = ln1 + drop(MLP(ln1)), a->res1 and a->res2 holding the sums. */
qkv_status qkv__enc_block_forward(qkv_runtime *rt, const qkv__enc_cfg *c, const qkv__enc_layer *w,
                                  int64_t l, const qkv__block_acts *a, const float *x, float *y,
                                  int64_t N, qkv__attend_fn attend, void *ctx);
/* The same block past its attention, on N rows: from x and a->att (N, C), y = LN2(ln1 +
 * MLP(ln1)), ln1 = LN1(x + O(a->att)) (qkv__enc_block_forward is Q, K, V, attend, then this;
 * a classifier's last block runs it on the [CLS] rows alone, train/bert_train.c). */
qkv_status qkv__enc_block_tail_forward(qkv_runtime *rt, const qkv__enc_cfg *c,
                                       const qkv__enc_layer *w, int64_t l, const qkv__block_acts *a,
                                       const float *x, float *y, int64_t N);

/* ---------------------------------------------------------------- encoder-decoder decoders
 * (post-norm, Marian / BART / the original Transformer) */

typedef struct qkv__s2s_dec_layer {
    qkv_nn_linear q, k, v, o;     /* self-attention, C -> C */
    qkv_nn_linear cq, ck, cv, co; /* cross-attention: cq reads the block's stream; ck, cv read
                                     the encoder output (run once per source by the model) */
    qkv_nn_linear fc, out;        /* C -> F -> C */
    const float *ln1_w, *ln1_b;   /* after self-attention (self_attn_layer_norm) */
    const float *ln2_w, *ln2_b;   /* after cross-attention (encoder_attn_layer_norm) */
    const float *ln3_w, *ln3_b;   /* after the MLP (final_layer_norm) */
} qkv__s2s_dec_layer;

/* y (N, C) = LN3(h2 + MLP(h2)), h2 = LN2(h1 + CO(cross(CQ h1))), h1 = LN1(x + O(attend(Q x,
 * K x, V x))). attend is the causal self-attention (a->q, a->k, a->v -> a->att); cross
 * attends a->cq (the projected CQ h1) to the encoder's keys/values -> a->catt. Inference form
 * (a->h NULL): a->res1 holds both residual sums before their norms (a->res2 unused), a->ln1 =
 * h1, a->ln2 = h2, a->res3 the MLP sum, a->a the activation (fused into the fc GEMM), y may be
 * x, no statistics kept. Training form (a->h set): res1, res2, res3 the three residual sums,
 * every norm's statistics saved; with c->drop > 0 dropout on each sublayer's output before its
 * residual add (streams qkv__enc_drop_stream(l, 0 | 1) and, for the MLP, of seed + 1), with
 * c->act_drop > 0 on the activation. */
qkv_status qkv__s2s_dec_block_forward(qkv_runtime *rt, const qkv__enc_cfg *c,
                                      const qkv__s2s_dec_layer *w, int64_t l,
                                      const qkv__block_acts *a, const float *x, float *y, int64_t N,
                                      qkv__attend_fn attend, qkv__attend_fn cross, void *ctx);

#endif
