/* block_ref.h — (reference compositions over nn_ref.h) multi-head attention, the MLP, and the
 * Transformer block (post-LN and pre-LN).
 *
 * Conventions as in nn.h: forwards overwrite, backwards accumulate (+=) into dx and into every
 * non-NULL pointer of a grads struct (zero them before the backward pass), sizes > 0, invalid
 * arguments give QKV_ERR_INVALID_ARG naming the argument. The backwards allocate their
 * temporaries (gradients of intermediate tensors) through the qkv allocator and can return
 * QKV_ERR_NOMEM; the forwards allocate nothing themselves (a status of the attention call
 * inside, NOMEM included, is passed on).
 *
 * Saved activations live in caller-provided structs of pointers. Each module has a *_acts_size
 * (number of floats) and a *_acts_bind that lays the struct out in one buffer of that many
 * floats, so a caller can allocate once per layer (or from an arena) and keep it between the
 * forward and the backward. The comment on each field says who reads it. */
#ifndef QKV_NN_BLOCK_REF_H
#define QKV_NN_BLOCK_REF_H

#include "nn/nn_ref.h"
#include "nn/positional_ref.h"
#include "qkv.h"

#include <stdint.h>

/* ---------------------------------------------------------------- multi-head attention */

typedef struct qkv_nn_mha_config {
    int64_t C;    /* channels of the query input x and of the output */
    int64_t C_kv; /* channels of the key/value source of cross-attention; 0 means C */
    int64_t H;    /* query heads */
    int64_t H_kv; /* key/value heads (GQA, MQA); 0 means H */
    int64_t D;    /* head dim; 0 means C / H (H must divide C) */
    float scale;  /* score scale; 0 means 1/sqrt(D) */
    /* The projection parameters are one fused tensor w_qkv ((H + 2 H_kv) D, C) with rows q | k | v
     * (torch.nn.MultiheadAttention in_proj_weight, GPT-2 c_attn transposed) instead of w_q,
     * w_k, w_v. Every output element of a linear is its own dot product, so the reference
     * computes the fused projection as its three row blocks; results equal one fused GEMM.
     * Cross-attention with fused weights (torch's in_proj_weight when kdim == embed_dim)
     * needs C_kv == C. */
    int fused_qkv;
    /* Optional rotary embedding of q and k (positions 0.., the module has no KV cache). */
    const qkv_nn_rope *rope;
} qkv_nn_mha_config;

/* What the attention masks (passed through to qkv_attention_desc; NULL pointer: no mask). */
typedef struct qkv_nn_attn_mask {
    int causal;                /* key j visible to query i iff j <= i + (Tk - Tq) */
    const int32_t *kv_lens;    /* (B) keys j >= kv_lens[b] are padding, or NULL */
    const float *alibi_slopes; /* (H) or NULL: see qkv_nn_alibi_slopes */
    float dropout_p;           /* dropout on the attention probabilities; 0 for none */
    uint64_t dropout_seed;
    /* Sliding window (Mistral, Longformer-style local attention) when `window` is set: keys j
     * with i + (Tk - Tq) - window_left <= j <= i + (Tk - Tq) + window_right only, -1 = no bound
     * on that side (qkv_attention_desc's window_left / window_right). */
    int window;
    int64_t window_left, window_right;
} qkv_nn_attn_mask;

/* Shapes with Q = H·D, K = H_kv·D. Biases may be NULL (no bias). */
typedef struct qkv_nn_mha_params {
    const float *w_q, *b_q;     /* (Q, C), (Q) */
    const float *w_k, *b_k;     /* (K, C_kv), (K) */
    const float *w_v, *b_v;     /* (K, C_kv), (K) */
    const float *w_qkv, *b_qkv; /* fused_qkv: (Q + 2K, C), (Q + 2K); then w_q..b_v are unused */
    const float *w_o, *b_o;     /* (C, Q), (C) */
} qkv_nn_mha_params;

/* Gradients, same shapes; accumulated; NULL entries are skipped. */
typedef struct qkv_nn_mha_grads {
    float *w_q, *b_q, *w_k, *b_k, *w_v, *b_v, *w_qkv, *b_qkv, *w_o, *b_o;
} qkv_nn_mha_grads;

/* Saved by the forward, read by the backward. */
typedef struct qkv_nn_mha_acts {
    float *q;   /* (B, Tq, H, D) projected queries after RoPE: attention backward */
    float *k;   /* (B, Tk, H_kv, D) projected keys after RoPE: attention backward */
    float *v;   /* (B, Tk, H_kv, D) projected values: attention backward */
    float *att; /* (B, Tq, H, D) attention output: attention backward, w_o gradient */
    float *lse; /* (B, H, Tq) log-sum-exp of the scores: attention backward */
} qkv_nn_mha_acts;

qkv_status qkv_nn_mha_acts_size(const qkv_nn_mha_config *cfg, int64_t B, int64_t Tq, int64_t Tk,
                                int64_t *n_floats);
qkv_status qkv_nn_mha_acts_bind(qkv_nn_mha_acts *acts, const qkv_nn_mha_config *cfg, int64_t B,
                                int64_t Tq, int64_t Tk, float *mem);

/* out (B, Tq, C) = O(attention(Q(x), K(src), V(src))), src = mem (B, Tk, C_kv) for
 * cross-attention, or x itself when mem is NULL (self-attention: Tk must equal Tq).
 * mask may be NULL. */
qkv_status qkv_nn_mha_forward_ref(qkv_runtime *rt, float *out, qkv_nn_mha_acts *acts,
                                  const float *x, const float *mem, const qkv_nn_mha_params *params,
                                  const qkv_nn_mha_config *cfg, const qkv_nn_attn_mask *mask,
                                  int64_t B, int64_t Tq, int64_t Tk);
/* dx (B, Tq, C) += ...; dmem (B, Tk, C_kv) += ... (cross-attention; must be NULL for self-
 * attention, where the K/V contributions go to dx); grads += .... Same x, mem, params, cfg,
 * mask and sizes as the forward. */
qkv_status qkv_nn_mha_backward_ref(qkv_runtime *rt, float *dx, float *dmem,
                                   const qkv_nn_mha_grads *grads, const float *dout, const float *x,
                                   const float *mem, const qkv_nn_mha_acts *acts,
                                   const qkv_nn_mha_params *params, const qkv_nn_mha_config *cfg,
                                   const qkv_nn_attn_mask *mask, int64_t B, int64_t Tq, int64_t Tk);

/* ---------------------------------------------------------------- MLP */

/* out = fc2(act(fc1(x))): the position-wise feed-forward block (dense -> GELU -> dense). */
typedef struct qkv_nn_mlp_params {
    const float *w_fc1, *b_fc1; /* (F, C), (F) */
    const float *w_fc2, *b_fc2; /* (C, F), (C) */
} qkv_nn_mlp_params;

typedef struct qkv_nn_mlp_grads {
    float *w_fc1, *b_fc1, *w_fc2, *b_fc2;
} qkv_nn_mlp_grads;

typedef struct qkv_nn_mlp_acts {
    float *h; /* (N, F) fc1 output, before the activation: activation backward */
    float *a; /* (N, F) act(h): w_fc2 gradient */
} qkv_nn_mlp_acts;

qkv_status qkv_nn_mlp_acts_size(int64_t N, int64_t F, int64_t *n_floats);
qkv_status qkv_nn_mlp_acts_bind(qkv_nn_mlp_acts *acts, int64_t N, int64_t F, float *mem);

/* x, out (N, C). */
qkv_status qkv_nn_mlp_forward_ref(qkv_runtime *rt, float *out, qkv_nn_mlp_acts *acts,
                                  const float *x, const qkv_nn_mlp_params *params, qkv_act act,
                                  int64_t N, int64_t C, int64_t F);
qkv_status qkv_nn_mlp_backward_ref(qkv_runtime *rt, float *dx, const qkv_nn_mlp_grads *grads,
                                   const float *dout, const float *x, const qkv_nn_mlp_acts *acts,
                                   const qkv_nn_mlp_params *params, qkv_act act, int64_t N,
                                   int64_t C, int64_t F);

/* ---------------------------------------------------------------- Transformer block */

typedef enum qkv_nn_norm_order {
    /* BERT, the original Transformer (torch TransformerEncoderLayer norm_first=False):
     *   x1 = LN1(x + Attn(x));  y = LN2(x1 + MLP(x1)) */
    QKV_NN_POST_LN = 0,
    /* GPT-2 (norm_first=True):  x1 = x + Attn(LN1(x));  y = x1 + MLP(LN2(x1)) */
    QKV_NN_PRE_LN = 1,
} qkv_nn_norm_order;

typedef struct qkv_nn_block_config {
    qkv_nn_mha_config attn; /* self-attention: C_kv must be 0 or C */
    int64_t F;              /* MLP hidden width (4C in BERT and GPT-2) */
    float eps;              /* LayerNorm epsilon (1e-12 BERT, 1e-5 GPT-2 and torch) */
    qkv_nn_norm_order order;
    qkv_act act;
} qkv_nn_block_config;

typedef struct qkv_nn_block_params {
    const float *ln1_w, *ln1_b; /* (C), (C); NULL: 1 and 0 */
    qkv_nn_mha_params attn;
    const float *ln2_w, *ln2_b; /* (C), (C) */
    qkv_nn_mlp_params mlp;
} qkv_nn_block_params;

typedef struct qkv_nn_block_grads {
    float *ln1_w, *ln1_b;
    qkv_nn_mha_grads attn;
    float *ln2_w, *ln2_b;
    qkv_nn_mlp_grads mlp;
} qkv_nn_block_grads;

/* Saved by the forward (N = B·T). Fields marked "unused" are NULL after bind. */
typedef struct qkv_nn_block_acts {
    /* (N, C) pre-LN: LN1(x), the attention input; post-LN: x1 = LN1(res1), the MLP input and
     * the second residual */
    float *ln1;
    float *ln1_mean, *ln1_rstd; /* (N): LN1 backward */
    qkv_nn_mha_acts attn;
    /* (N, C) x + Attn(.): pre-LN: x1, LN2's input; post-LN: LN1's input */
    float *res1;
    float *ln2;                 /* (N, C) pre-LN: LN2(x1), the MLP input; post-LN: unused */
    float *ln2_mean, *ln2_rstd; /* (N): LN2 backward */
    qkv_nn_mlp_acts mlp;
    float *res2; /* (N, C) post-LN: x1 + MLP(x1), LN2's input; pre-LN: unused (it is y) */
} qkv_nn_block_acts;

qkv_status qkv_nn_block_acts_size(const qkv_nn_block_config *cfg, int64_t B, int64_t T,
                                  int64_t *n_floats);
qkv_status qkv_nn_block_acts_bind(qkv_nn_block_acts *acts, const qkv_nn_block_config *cfg,
                                  int64_t B, int64_t T, float *mem);

/* out (B, T, C) = block(x (B, T, C)); out must not alias x. mask may be NULL. */
qkv_status qkv_nn_block_forward_ref(qkv_runtime *rt, float *out, qkv_nn_block_acts *acts,
                                    const float *x, const qkv_nn_block_params *params,
                                    const qkv_nn_block_config *cfg, const qkv_nn_attn_mask *mask,
                                    int64_t B, int64_t T);
qkv_status qkv_nn_block_backward_ref(qkv_runtime *rt, float *dx, const qkv_nn_block_grads *grads,
                                     const float *dout, const float *x,
                                     const qkv_nn_block_acts *acts,
                                     const qkv_nn_block_params *params,
                                     const qkv_nn_block_config *cfg, const qkv_nn_attn_mask *mask,
                                     int64_t B, int64_t T);

#endif
