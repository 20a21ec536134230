/* nn.h — the layer library: every layer of the models as a forward/backward pair on the fast
 * kernels (packed GEMM with fused epilogues, fused attention, vectorized row kernels of the
 * active ISA). Models (src/models) and trainers (src/train) are lists of calls to these.
 *
 * Each layer has a plain twin in nn_ref.h (`<name>_ref`, double accumulation, written for
 * clarity): the oracle that tests/test_nn_fast.c holds every function here to, on every ISA.
 *
 * Shapes are row-major and contiguous, with the letters of nn_ref.h: B batch, T tokens,
 * C channels, OC output channels, N = B*T rows, V vocabulary (or softmax row length), H heads,
 * D head dim, F MLP hidden width.
 *
 * Conventions (as nn_ref.h):
 *   - A forward OVERWRITES its outputs (the documented `_add` / residual forms add).
 *     Pointwise forwards accept out == inp.
 *   - A backward ACCUMULATES (+=) into every gradient it produces; NULL gradients are skipped.
 *     The caller zeroes gradient buffers once before the backward pass.
 *   - Results never depend on the thread count: every output element (and every reduction:
 *     bias, norm-weight and embedding gradients, the loss) is summed by one thread in a fixed
 *     order. They can differ from the _ref twin in the last bits (float accumulation, the
 *     kernels' exp/erf); tests/test_nn_fast.c bounds that difference.
 *   - Invalid arguments give QKV_ERR_INVALID_ARG naming the function and argument, and
 *     nothing is written. Functions that allocate scratch say so (QKV_ERR_NOMEM).
 *   - rt is the thread pool (NULL: the default runtime). */
#ifndef QKV_NN_H
#define QKV_NN_H

#include "kernels/gemm.h"
#include "kernels/gemm_bf16.h"
#include "kernels/gemm_i8.h"
#include "nn/block_ref.h"
#include "nn/nn_ref.h"
#include "nn/positional_ref.h"
#include "qkv.h"

#include <stdint.h>

/* ---------------------------------------------------------------- linear */

/* A dense layer y = x · op(w) + b over C input and OC output features. The weight is used
 * where it lies: the torch.nn.Linear layout w (OC, C) [out, in] (BERT, Llama), or the GPT-2
 * Conv1D layout w (C, OC) [in, out] (in_out = 1). ldw is the row stride of w (0: dense), so a
 * column or row block of a fused tensor (GPT-2 c_attn's q | k | v) is a layer of its own.
 * packed, when set, is op(w) prepacked for the GEMM (kernels/gemm.h: K = C, N = OC); the
 * forward then reads only packed, so w may be NULL for inference. packed_bf16 instead (at most
 * one of the two) is op(w) rounded to bf16 and packed for the bf16-weight GEMM
 * (kernels/gemm_bf16.h: FP32 activations and accumulation, the same epilogue); the forward
 * then reads only it, and the backward still needs w. packed_i8 likewise holds op(w) in int8
 * (kernels/gemm_i8.h: per-channel weights, activations quantized per row). lora, when set, adds a
 * low-rank adapter (qkv_nn_lora, nn_ref.h; PEFT's LoraLayer) before the activation:
 *     y = act(x · op(w) + b + scale · (drop(x) · aᵀ) · bᵀ) + residual
 * a (r, C) and b (OC, r) are in the nn.Linear layout whatever in_out says. */
typedef struct qkv_nn_linear {
    const float *w; /* (OC, C), or (C, OC) when in_out */
    const float *b; /* (OC) or NULL */
    int64_t C, OC;
    int64_t ldw; /* 0: C (or OC when in_out) */
    int in_out;
    const qkv_gemm_packed *packed;
    const qkv_nn_lora *lora;                 /* NULL: a plain layer */
    const qkv_gemm_bf16_packed *packed_bf16; /* NULL, or the bf16 weights (packed NULL then) */
    /* NULL, or the int8 weights (kernels/gemm_i8.h: per-channel weights, activations
     * quantized per row and call; inference only; packed and packed_bf16 NULL then) */
    const qkv_gemm_i8_packed *packed_i8;
} qkv_nn_linear;

/* A plain FP32 layer: w (OC, C) as nn.Linear stores it, b (OC) or NULL. */
static inline qkv_nn_linear qkv_nn_linear_dense(const float *w, const float *b, int64_t C,
                                                int64_t OC) {
    return (qkv_nn_linear){.w = w, .b = b, .C = C, .OC = OC};
}
/* The same with w stored (C, OC) (GPT-2's Conv1D), rows ldw floats apart (0: OC). */
static inline qkv_nn_linear qkv_nn_linear_in_out(const float *w, const float *b, int64_t C,
                                                 int64_t OC, int64_t ldw) {
    return (qkv_nn_linear){.w = w, .b = b, .C = C, .OC = OC, .ldw = ldw, .in_out = 1};
}

/* The inference form of a layer: op(w) prepacked (K = C, N = OC), the original not kept. */
static inline qkv_nn_linear qkv_nn_linear_packed(const qkv_gemm_packed *p, const float *b) {
    return (qkv_nn_linear){
        .b = b, .C = qkv__gemm_packed_k(p), .OC = qkv__gemm_packed_n(p), .packed = p};
}
/* The same with bf16 weights (qkv__gemm_bf16_pack / _pack_f32; K = C, N = OC). */
static inline qkv_nn_linear qkv_nn_linear_packed_bf16(const qkv_gemm_bf16_packed *p,
                                                      const float *b) {
    return (qkv_nn_linear){.b = b,
                           .C = qkv__gemm_bf16_packed_k(p),
                           .OC = qkv__gemm_bf16_packed_n(p),
                           .packed_bf16 = p};
}
/* The same with int8 weights (qkv__gemm_i8_pack_f32; K = C, N = OC). */
static inline qkv_nn_linear qkv_nn_linear_packed_i8(const qkv_gemm_i8_packed *p, const float *b) {
    return (qkv_nn_linear){
        .b = b, .C = qkv__gemm_i8_packed_k(p), .OC = qkv__gemm_i8_packed_n(p), .packed_i8 = p};
}

/* out (N, OC) = act(inp (N, C) · op(w) + b [+ the adapter's term]) + residual (N, OC), residual
 * may be NULL. With residual == out the product is accumulated into out (act must be
 * QKV_ACT_NONE): the residual stream updated in place. Otherwise out must not overlap inp (nor,
 * with an adapter, the residual). An adapter allocates O(N · r) floats of scratch, and
 * O(N · C) more when its dropout is on (QKV_ERR_NOMEM). */
qkv_status qkv_nn_linear_forward(qkv_runtime *rt, const qkv_nn_linear *L, float *out,
                                 const float *inp, int64_t N, qkv_act act, const float *residual);
/* out = act(inp · op(w)ᵀ + b) with act not NONE, and pre = inp · op(w)ᵀ + b (the activation's
 * input, which its backward reads), both from the GEMM's epilogue: the bits of this layer with
 * QKV_ACT_NONE into pre then qkv_nn_act_forward(act, out, pre), without reading pre back. An
 * adapter's term is in pre as in the plain form; pre must not overlap out or inp. */
qkv_status qkv_nn_linear_forward_pre(qkv_runtime *rt, const qkv_nn_linear *L, float *out,
                                     float *pre, const float *inp, int64_t N, qkv_act act);
/* dinp (N, C) += dout (N, OC) · op(w)ᵀ; dw += the gradient of w in w's own layout and stride;
 * db (OC) += Σ_n dout[n]. Needs L->w for dinp. dout is the gradient of the layer's output
 * before any activation. NULL gradients are skipped (dw NULL: no weight-gradient GEMM, the
 * frozen base of LoRA training). With L->lora, as qkv_nn_linear_lora_backward_ref:
 *     dinp += scale · drop'((dout · b) · a)         (drop': the forward's mask and 1/(1-p))
 *     lora->ga (r, C) += scale · (dout · b)ᵀ · drop(inp)
 *     lora->gb (OC, r) += scale · doutᵀ · (drop(inp) · aᵀ)
 * recomputing drop(inp) · aᵀ (needs inp for ga, gb); allocates O(N · r) floats, and O(N · C)
 * more when the dropout is on (QKV_ERR_NOMEM). */
qkv_status qkv_nn_linear_backward(qkv_runtime *rt, const qkv_nn_linear *L, float *dinp, float *dw,
                                  float *db, const float *dout, const float *inp, int64_t N);

/* Merges an adapter into its base weight, or takes it back out: w += sign · scale · (b · a),
 * written in w's own layout (in_out, row stride ldw, 0: dense) as qkv_nn_linear holds it. sign
 * 1 merges (the merged layer without adapter then computes what the layer with it did, up to
 * float rounding), -1 unmerges. PEFT's merge_and_unload / unmerge. Uses the default runtime. */
qkv_status qkv_nn_lora_merge(float *w, int in_out, int64_t ldw, int64_t C, int64_t OC,
                             const qkv_nn_lora *lora, float sign);

/* ---------------------------------------------------------------- embeddings */

/* out (N, C) = table (V, C)[ids (N)]; every id in [0, V). */
qkv_status qkv_nn_embedding_forward(qkv_runtime *rt, float *out, const int32_t *ids,
                                    const float *table, int64_t N, int64_t V, int64_t C);
/* out (N, C) += table[ids] (a second embedding summed in, e.g. BERT's token types). */
qkv_status qkv_nn_embedding_add_forward(qkv_runtime *rt, float *out, const int32_t *ids,
                                        const float *table, int64_t N, int64_t V, int64_t C);
/* dtable (V, C) += scatter-add of dout (N, C) over ids (either forward). */
qkv_status qkv_nn_embedding_backward(qkv_runtime *rt, float *dtable, const float *dout,
                                     const int32_t *ids, int64_t N, int64_t V, int64_t C);

/* Learned or sinusoidal absolute positions: out (B, T, C) = inp + pe[pos0 + t], pe (P, C),
 * pos0 + T <= P; out == inp allowed. */
qkv_status qkv_nn_position_add_forward(qkv_runtime *rt, float *out, const float *inp,
                                       const float *pe, int64_t B, int64_t T, int64_t C, int64_t P,
                                       int64_t pos0);
/* dinp += dout; dpe[pos0 + t] += Σ_b dout[b, t]. Either may be NULL. */
qkv_status qkv_nn_position_add_backward(qkv_runtime *rt, float *dinp, float *dpe, const float *dout,
                                        int64_t B, int64_t T, int64_t C, int64_t P, int64_t pos0);

/* ---------------------------------------------------------------- normalization */

/* LayerNorm over C; saves mean, rstd (N) unless NULL. out == inp allowed. */
qkv_status qkv_nn_layernorm_forward(qkv_runtime *rt, float *out, float *mean, float *rstd,
                                    const float *inp, const float *weight, const float *bias,
                                    int64_t N, int64_t C, float eps);
/* dinp, dweight, dbias += ... (reads inp and the saved mean, rstd). Allocates O(N/32 · C)
 * scratch for the weight gradients. */
qkv_status qkv_nn_layernorm_backward(qkv_runtime *rt, float *dinp, float *dweight, float *dbias,
                                     const float *dout, const float *inp, const float *weight,
                                     const float *mean, const float *rstd, int64_t N, int64_t C);
/* RMSNorm over C; saves rrms (N) unless NULL. out == inp allowed. */
qkv_status qkv_nn_rmsnorm_forward(qkv_runtime *rt, float *out, float *rrms, const float *inp,
                                  const float *weight, int64_t N, int64_t C, float eps);
/* Allocates O(N/32 · C) scratch for the weight gradient. */
qkv_status qkv_nn_rmsnorm_backward(qkv_runtime *rt, float *dinp, float *dweight, const float *dout,
                                   const float *inp, const float *weight, const float *rrms,
                                   int64_t N, int64_t C);

/* ---------------------------------------------------------------- pointwise */

/* out (n) = act(inp); act is a qkv_act other than NONE. */
qkv_status qkv_nn_act_forward(qkv_runtime *rt, qkv_act act, float *out, const float *inp,
                              int64_t n);
/* dinp += dout · act'(inp). */
qkv_status qkv_nn_act_backward(qkv_runtime *rt, qkv_act act, float *dinp, const float *dout,
                               const float *inp, int64_t n);
/* SwiGLU (Llama's MLP gate): out (n) = silu(gate) ∘ up; out may be gate or up. */
qkv_status qkv_nn_swiglu_forward(qkv_runtime *rt, float *out, const float *gate, const float *up,
                                 int64_t n);
/* dgate += dout ∘ up ∘ silu'(gate); dup += dout ∘ silu(gate). */
qkv_status qkv_nn_swiglu_backward(qkv_runtime *rt, float *dgate, float *dup, const float *dout,
                                  const float *gate, const float *up, int64_t n);
/* out = a + b; da += dout, db += dout. */
qkv_status qkv_nn_residual_forward(qkv_runtime *rt, float *out, const float *a, const float *b,
                                   int64_t n);
qkv_status qkv_nn_residual_backward(qkv_runtime *rt, float *da, float *db, const float *dout,
                                    int64_t n);
/* Inverted dropout with exactly the mask of qkv_nn_dropout_forward_ref (a pure function of
 * seed, stream and the element index); p == 0 copies. */
qkv_status qkv_nn_dropout_forward(qkv_runtime *rt, float *out, const float *inp, int64_t n, float p,
                                  uint64_t seed, uint64_t stream);
qkv_status qkv_nn_dropout_backward(qkv_runtime *rt, float *dinp, const float *dout, int64_t n,
                                   float p, uint64_t seed, uint64_t stream);

/* Overwriting twins of the accumulating backwards above, for a dinp that has no other term yet
 * (training code that zeroed it first): dinp = ... instead of dinp += ..., bit for bit what
 * zeroing dinp and calling the accumulating form gives (0 + x), without the separate pass over
 * dinp (LayerNorm, activation: each block zeroed just before its kernel, while in cache;
 * dropout: 0 + x written, not added; linear: its GEMM with beta 0, the same values except that
 * an exact -0 stays -0 instead of becoming +0). dinp must not be NULL; the weight and
 * bias gradients still accumulate. */
qkv_status qkv_nn_linear_backward_set(qkv_runtime *rt, const qkv_nn_linear *L, float *dinp,
                                      float *dw, float *db, const float *dout, const float *inp,
                                      int64_t N);
/* The set form fused with the activation before this layer (an MLP's hidden layer): dinp =
 * act'(pre) ⊙ (dout · op(w)ᵀ), pre (N, C) the activation's input, the bits of
 * qkv_nn_linear_backward_set into a scratch then qkv_nn_act_backward_set(act, dinp, scratch,
 * pre), in the GEMM's epilogue (no scratch, no second pass). Not with an adapter (L->lora);
 * pre must not overlap dinp. */
qkv_status qkv_nn_linear_backward_act_set(qkv_runtime *rt, const qkv_nn_linear *L, float *dinp,
                                          float *dw, float *db, const float *dout, const float *inp,
                                          int64_t N, qkv_act act, const float *pre);
qkv_status qkv_nn_layernorm_backward_set(qkv_runtime *rt, float *dinp, float *dweight, float *dbias,
                                         const float *dout, const float *inp, const float *weight,
                                         const float *mean, const float *rstd, int64_t N,
                                         int64_t C);
qkv_status qkv_nn_act_backward_set(qkv_runtime *rt, qkv_act act, float *dinp, const float *dout,
                                   const float *inp, int64_t n);
qkv_status qkv_nn_dropout_backward_set(qkv_runtime *rt, float *dinp, const float *dout, int64_t n,
                                       float p, uint64_t seed, uint64_t stream);

/* ---------------------------------------------------------------- softmax */

/* Over the last axis of (N, V); semantics of the _ref twins (fully masked rows, NaN). */
qkv_status qkv_nn_softmax_forward(qkv_runtime *rt, float *out, const float *inp, int64_t N,
                                  int64_t V);
qkv_status qkv_nn_softmax_backward(qkv_runtime *rt, float *dinp, const float *dout,
                                   const float *out, int64_t N, int64_t V);
qkv_status qkv_nn_log_softmax_forward(qkv_runtime *rt, float *out, const float *inp, int64_t N,
                                      int64_t V);
qkv_status qkv_nn_log_softmax_backward(qkv_runtime *rt, float *dinp, const float *dout,
                                       const float *out, int64_t N, int64_t V);

/* ---------------------------------------------------------------- cross-entropy */

/* torch's cross_entropy(logits, targets, ignore_index, label_smoothing, reduction='mean'), as
 * qkv_nn_cross_entropy_forward_ref: *loss = mean of the row losses over the non-ignored rows
 * (0 when every row is ignored). losses (N) receives each row's loss if not NULL (else O(N)
 * scratch is allocated). */
qkv_status qkv_nn_cross_entropy_forward(qkv_runtime *rt, float *loss, float *losses,
                                        const float *logits, const int32_t *targets, int64_t N,
                                        int64_t V, int32_t ignore_index, float label_smoothing);
/* dlogits += dloss / count · (softmax - (1 - ε) onehot - ε / V) on the non-ignored rows. */
qkv_status qkv_nn_cross_entropy_backward(qkv_runtime *rt, float *dlogits, float dloss,
                                         const float *logits, const int32_t *targets, int64_t N,
                                         int64_t V, int32_t ignore_index, float label_smoothing);
/* Forward and backward in one pass for the LM heads, where logits are the largest tensor:
 * computes *loss (and losses) as the forward, then OVERWRITES logits with their gradient
 * dloss / count · (softmax - ...), zero on ignored rows. */
qkv_status qkv_nn_cross_entropy_fused(qkv_runtime *rt, float *loss, float *losses, float *logits,
                                      const int32_t *targets, int64_t N, int64_t V,
                                      int32_t ignore_index, float label_smoothing, float dloss);

/* Multi-label heads: torch's binary_cross_entropy_with_logits(logits, targets,
 * reduction='mean') over n elements (targets in [0, 1]); the backward adds
 * dloss / n · (σ(x) − y). Regression heads: mse_loss(pred, targets), mean over n; the backward
 * adds dloss · 2 (p − y) / n. One row per sequence, so computed in double on the calling
 * thread (loss.c). */
qkv_status qkv_nn_bce_logits_forward(float *loss, const float *logits, const float *targets,
                                     int64_t n);
qkv_status qkv_nn_bce_logits_backward(float *dlogits, float dloss, const float *logits,
                                      const float *targets, int64_t n);
qkv_status qkv_nn_mse_forward(float *loss, const float *pred, const float *targets, int64_t n);
qkv_status qkv_nn_mse_backward(float *dpred, float dloss, const float *pred, const float *targets,
                               int64_t n);

/* ---------------------------------------------------------------- rotary positions */

/* RoPE as qkv_nn_rope_forward_ref (positional_ref.h), in float with the angles in double;
 * out == inp allowed. */
qkv_status qkv_nn_rope_forward(qkv_runtime *rt, float *out, const float *inp,
                               const qkv_nn_rope *rope, int64_t B, int64_t T, int64_t H, int64_t D,
                               int64_t pos0);
/* dinp += the inverse rotation of dout; dinp must not alias dout. */
qkv_status qkv_nn_rope_backward(qkv_runtime *rt, float *dinp, const float *dout,
                                const qkv_nn_rope *rope, int64_t B, int64_t T, int64_t H, int64_t D,
                                int64_t pos0);

/* ---------------------------------------------------------------- modules */

/* Multi-head attention (self or cross, GQA, RoPE, masks), the MLP and the pre/post-LN block
 * with the types and exact semantics of their reference twins in block_ref.h, composed of the
 * fast layers above and the fused attention (mha.c and block.c write each composition once,
 * over either set of layers). */
qkv_status qkv_nn_mha_forward(qkv_runtime *rt, float *out, qkv_nn_mha_acts *acts, const float *x,
                              const float *mem, const qkv_nn_mha_params *params,
                              const qkv_nn_mha_config *cfg, const qkv_nn_attn_mask *mask, int64_t B,
                              int64_t Tq, int64_t Tk);
qkv_status qkv_nn_mha_backward(qkv_runtime *rt, float *dx, float *dmem,
                               const qkv_nn_mha_grads *grads, const float *dout, const float *x,
                               const float *mem, const qkv_nn_mha_acts *acts,
                               const qkv_nn_mha_params *params, const qkv_nn_mha_config *cfg,
                               const qkv_nn_attn_mask *mask, int64_t B, int64_t Tq, int64_t Tk);
/* Cross-attention with the source's keys and values computed once per source sequence (an
 * encoder output that every decoding step attends to): qkv_nn_mha_kv_forward fills acts->k,
 * acts->v (B, Tk, H_kv, D) from mem (B, Tk, C_kv), RoPE applied; qkv_nn_mha_forward_kv then
 * runs qkv_nn_mha_forward's query side against them, for any number of query batches. The
 * result equals qkv_nn_mha_forward with that mem; its backward is qkv_nn_mha_backward. */
qkv_status qkv_nn_mha_kv_forward(qkv_runtime *rt, qkv_nn_mha_acts *acts, const float *mem,
                                 const qkv_nn_mha_params *params, const qkv_nn_mha_config *cfg,
                                 int64_t B, int64_t Tk);
qkv_status qkv_nn_mha_forward_kv(qkv_runtime *rt, float *out, qkv_nn_mha_acts *acts, const float *x,
                                 const qkv_nn_mha_params *params, const qkv_nn_mha_config *cfg,
                                 const qkv_nn_attn_mask *mask, int64_t B, int64_t Tq, int64_t Tk);
qkv_status qkv_nn_mlp_forward(qkv_runtime *rt, float *out, qkv_nn_mlp_acts *acts, const float *x,
                              const qkv_nn_mlp_params *params, qkv_act act, int64_t N, int64_t C,
                              int64_t F);
qkv_status qkv_nn_mlp_backward(qkv_runtime *rt, float *dx, const qkv_nn_mlp_grads *grads,
                               const float *dout, const float *x, const qkv_nn_mlp_acts *acts,
                               const qkv_nn_mlp_params *params, qkv_act act, int64_t N, int64_t C,
                               int64_t F);
qkv_status qkv_nn_block_forward(qkv_runtime *rt, float *out, qkv_nn_block_acts *acts,
                                const float *x, const qkv_nn_block_params *params,
                                const qkv_nn_block_config *cfg, const qkv_nn_attn_mask *mask,
                                int64_t B, int64_t T);
qkv_status qkv_nn_block_backward(qkv_runtime *rt, float *dx, const qkv_nn_block_grads *grads,
                                 const float *dout, const float *x, const qkv_nn_block_acts *acts,
                                 const qkv_nn_block_params *params, const qkv_nn_block_config *cfg,
                                 const qkv_nn_attn_mask *mask, int64_t B, int64_t T);

/* Attention itself is the fused kernel of src/attention (qkv_attention_forward / _backward /
 * qkv_attention_probs in qkv.h). */

#endif
