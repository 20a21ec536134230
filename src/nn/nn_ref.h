/* nn_ref.h — the plain reference layers of src/nn (`<name>_ref`, the twins of nn.h's fast
 * layers): each a forward/backward pair in the style of
 * llm.c's train_gpt2.c, written for clarity and exactness (the oracle of every fast path).
 *
 * Shapes are row-major and contiguous, written with fixed letters:
 *   B batch, T tokens, C channels, OC output channels, N = B*T rows, V vocabulary (or the
 *   length of a softmax row), H heads, D head dim, F MLP hidden width.
 *
 * Conventions (every function of src/nn follows them):
 *   - A forward OVERWRITES its outputs. Pointwise forwards (activations, dropout, residual,
 *     RoPE) accept out == inp; otherwise outputs must not alias inputs.
 *   - A backward ACCUMULATES (+=) into every gradient it produces (dinp, dweight, dbias, ...):
 *     the caller zeroes gradient buffers once before the backward pass. This is what makes a
 *     tensor read by several consumers (the residual stream, the self-attention input feeding
 *     Q, K and V, tied embeddings) get the sum of its gradient contributions with no extra
 *     buffer or copy. Any gradient pointer may be NULL: that gradient is not computed.
 *     Gradient buffers must not alias the forward tensors or dout.
 *   - Activations needed by a backward are saved by the forward into caller-provided buffers
 *     (mean/rstd of the norms, the probabilities of softmax, the acts structs of block.h); each
 *     function says what it saves and what its backward reads.
 *   - Reductions (dot products, means, sums over rows) accumulate in double. Each output
 *     element is reduced by a single thread in a fixed order, so results are bit-identical for
 *     every thread count, not only reproducible for one.
 *   - Invalid arguments (NULL required pointers, sizes <= 0, sizes whose products overflow,
 *     out-of-range ids or targets, bad hyperparameters) return QKV_ERR_INVALID_ARG with a
 *     message naming the function and the argument; nothing is written in that case. Only the
 *     functions documented to allocate scratch can return QKV_ERR_NOMEM.
 *   - rt is the thread pool for the row loops (NULL: the default runtime).
 *
 * Positional encodings are in positional.h; multi-head attention, the MLP and the Transformer
 * block in block.h. docs/NN.md has the math of every backward as implemented. */
#ifndef QKV_NN_REF_H
#define QKV_NN_REF_H

#include "kernels/gemm.h" /* qkv_act */
#include "qkv.h"

#include <stdint.h>

/* ---------------------------------------------------------------- linear */

/* out (N, OC) = inp (N, C) · weightᵀ + bias, weight (OC, C) in the Hugging Face / torch.nn.Linear
 * layout [out, in], bias (OC) or NULL. Saves nothing (backward reads inp and weight). */
qkv_status qkv_nn_linear_forward_ref(qkv_runtime *rt, float *out, const float *inp,
                                     const float *weight, const float *bias, int64_t N, int64_t C,
                                     int64_t OC);
/* dinp (N, C) += dout · weight; dweight (OC, C) += doutᵀ · inp; dbias (OC) += Σ_n dout. */
qkv_status qkv_nn_linear_backward_ref(qkv_runtime *rt, float *dinp, float *dweight, float *dbias,
                                      const float *dout, const float *inp, const float *weight,
                                      int64_t N, int64_t C, int64_t OC);

/* A low-rank adapter on a linear layer (LoRA, Hu et al. 2021; Hugging Face PEFT's LoraLayer on
 * nn.Linear and GPT-2's Conv1D): the layer computes
 *     y = x · op(w) + bias + scale · (drop(x) · aᵀ) · bᵀ
 * with drop the inverted dropout of qkv_nn_dropout_forward_ref on the (N, C) input (element
 * index n*C + i of (seed, stream)), so forward and backward regenerate the same mask. PEFT
 * names: a = lora_A.weight, b = lora_B.weight, scale = lora_alpha / r (rslora: lora_alpha /
 * sqrt(r)), dropout = lora_dropout (0 at inference). a and b are always in the nn.Linear
 * layout, whatever the base weight's layout (PEFT's fan_in_fan_out only transposes the base). */
typedef struct qkv_nn_lora {
    const float *a;  /* (r, C)  PEFT lora_A.weight */
    const float *b;  /* (OC, r) PEFT lora_B.weight */
    float *ga, *gb;  /* gradients of a, b, ACCUMULATED (+=) by the backward; NULL: not computed */
    int64_t r;       /* rank, >= 1 */
    float scale;     /* finite */
    float dropout;   /* p in [0, 1) of the dropout on the adapter's input; 0 at inference */
    uint64_t seed;   /* the dropout mask: (seed, stream) as qkv_nn_dropout_forward_ref; use a */
    uint64_t stream; /* different pair per layer and step (masks of equal pairs coincide) */
} qkv_nn_lora;

/* The reference of a linear layer with an adapter (lora NULL: qkv_nn_linear_forward_ref):
 * out (N, OC) = inp · weightᵀ + bias + scale · (drop(inp) · aᵀ) · bᵀ, each element one double
 * sum rounded once. Allocates O(N · r) doubles of scratch (QKV_ERR_NOMEM). */
qkv_status qkv_nn_linear_lora_forward_ref(qkv_runtime *rt, float *out, const float *inp,
                                          const float *weight, const float *bias,
                                          const qkv_nn_lora *lora, int64_t N, int64_t C,
                                          int64_t OC);
/* dinp += dout · weight + scale · drop'((dout · b) · a); dweight, dbias as
 * qkv_nn_linear_backward_ref; lora->ga (r, C) += scale · (dout · b)ᵀ · drop(inp);
 * lora->gb (OC, r) += scale · doutᵀ · (drop(inp) · aᵀ). drop' keeps the forward's elements
 * and scales them by 1 / (1 - p). Allocates O(N · (C + r)) doubles (QKV_ERR_NOMEM). */
qkv_status qkv_nn_linear_lora_backward_ref(qkv_runtime *rt, float *dinp, float *dweight,
                                           float *dbias, const float *dout, const float *inp,
                                           const float *weight, const qkv_nn_lora *lora, int64_t N,
                                           int64_t C, int64_t OC);

/* ---------------------------------------------------------------- embedding */

/* out (N, C) = table (V, C)[ids (N)]. Every id must be in [0, V). */
qkv_status qkv_nn_embedding_forward_ref(float *out, const int32_t *ids, const float *table,
                                        int64_t N, int64_t V, int64_t C);
/* dtable (V, C) += scatter-add of dout (N, C) over ids (N); a row used k times gets the sum of
 * its k gradient rows (summed in double, in order of n). Allocates O(N + V) scratch. */
qkv_status qkv_nn_embedding_backward_ref(qkv_runtime *rt, float *dtable, const float *dout,
                                         const int32_t *ids, int64_t N, int64_t V, int64_t C);

/* ---------------------------------------------------------------- normalization */

/* LayerNorm over the last axis (torch.nn.LayerNorm): out = (inp - mean) · rstd · weight + bias
 * with the biased variance and rstd = 1/sqrt(var + eps). inp, out (N, C); weight, bias (C) or
 * NULL (1 and 0). Saves mean, rstd (N) (may be NULL for inference). eps >= 0, finite. */
qkv_status qkv_nn_layernorm_forward_ref(qkv_runtime *rt, float *out, float *mean, float *rstd,
                                        const float *inp, const float *weight, const float *bias,
                                        int64_t N, int64_t C, float eps);
/* dinp (N, C), dweight (C), dbias (C) += ...; reads inp and the saved mean, rstd. */
qkv_status qkv_nn_layernorm_backward_ref(qkv_runtime *rt, float *dinp, float *dweight, float *dbias,
                                         const float *dout, const float *inp, const float *weight,
                                         const float *mean, const float *rstd, int64_t N,
                                         int64_t C);

/* RMSNorm (torch.nn.RMSNorm, Llama): out = inp · rrms · weight, rrms = 1/sqrt(mean(inp²) + eps).
 * weight (C) or NULL. Saves rrms (N) (may be NULL for inference). */
qkv_status qkv_nn_rmsnorm_forward_ref(qkv_runtime *rt, float *out, float *rrms, const float *inp,
                                      const float *weight, int64_t N, int64_t C, float eps);
qkv_status qkv_nn_rmsnorm_backward_ref(qkv_runtime *rt, float *dinp, float *dweight,
                                       const float *dout, const float *inp, const float *weight,
                                       const float *rrms, int64_t N, int64_t C);

/* ---------------------------------------------------------------- pointwise */

/* Activations are kernels/gemm.h's qkv_act (QKV_ACT_GELU_ERF, _GELU_TANH, _RELU, _SILU, _TANH; the
 * reference layers refuse QKV_ACT_NONE). */

/* out (n) = act(inp (n)); out == inp is allowed. Saves nothing (backward reads inp). */
qkv_status qkv_nn_act_forward_ref(qkv_runtime *rt, qkv_act act, float *out, const float *inp,
                                  int64_t n);
/* dinp (n) += dout · act'(inp). */
qkv_status qkv_nn_act_backward_ref(qkv_runtime *rt, qkv_act act, float *dinp, const float *dout,
                                   const float *inp, int64_t n);

/* The same, one name per activation. */
qkv_status qkv_nn_gelu_forward_ref(qkv_runtime *rt, float *out, const float *inp, int64_t n,
                                   int tanh_approx);
qkv_status qkv_nn_gelu_backward_ref(qkv_runtime *rt, float *dinp, const float *dout,
                                    const float *inp, int64_t n, int tanh_approx);
qkv_status qkv_nn_relu_forward_ref(qkv_runtime *rt, float *out, const float *inp, int64_t n);
qkv_status qkv_nn_relu_backward_ref(qkv_runtime *rt, float *dinp, const float *dout,
                                    const float *inp, int64_t n);
qkv_status qkv_nn_silu_forward_ref(qkv_runtime *rt, float *out, const float *inp, int64_t n);
qkv_status qkv_nn_silu_backward_ref(qkv_runtime *rt, float *dinp, const float *dout,
                                    const float *inp, int64_t n);

/* Residual add: out (n) = a + b (out may be a or b). Backward: da += dout, db += dout. */
qkv_status qkv_nn_residual_forward_ref(qkv_runtime *rt, float *out, const float *a, const float *b,
                                       int64_t n);
qkv_status qkv_nn_residual_backward_ref(qkv_runtime *rt, float *da, float *db, const float *dout,
                                        int64_t n);

/* Inverted dropout: out[i] = keep_i ? inp[i] / (1 - p) : 0, keep_i iff
 * qkv__rng_uniform(seed, stream, i) >= p (src/core/rng.h), i the flat element index. The mask
 * is a pure function of (seed, stream, i): the backward regenerates it, nothing is saved. Use
 * a different stream (or seed) per dropout site. p in [0, 1); p == 0 is the identity. */
qkv_status qkv_nn_dropout_forward_ref(qkv_runtime *rt, float *out, const float *inp, int64_t n,
                                      float p, uint64_t seed, uint64_t stream);
/* dinp (n) += keep_i ? dout[i] / (1 - p) : 0, with the forward's (p, seed, stream). */
qkv_status qkv_nn_dropout_backward_ref(qkv_runtime *rt, float *dinp, const float *dout, int64_t n,
                                       float p, uint64_t seed, uint64_t stream);

/* ---------------------------------------------------------------- softmax */

/* Over the last axis: inp, out (N, V). A row whose inputs are all -inf (fully masked) gives
 * probabilities 0 (softmax) and -inf (log-softmax) and a zero gradient, never NaN; +inf or NaN
 * inputs give NaN, as in torch. Saves out (the backward reads it). */
qkv_status qkv_nn_softmax_forward_ref(qkv_runtime *rt, float *out, const float *inp, int64_t N,
                                      int64_t V);
/* dinp += out ∘ (dout - rowsum(dout ∘ out)). */
qkv_status qkv_nn_softmax_backward_ref(qkv_runtime *rt, float *dinp, const float *dout,
                                       const float *out, int64_t N, int64_t V);
qkv_status qkv_nn_log_softmax_forward_ref(qkv_runtime *rt, float *out, const float *inp, int64_t N,
                                          int64_t V);
/* dinp += dout - exp(out) · rowsum(dout). */
qkv_status qkv_nn_log_softmax_backward_ref(qkv_runtime *rt, float *dinp, const float *dout,
                                           const float *out, int64_t N, int64_t V);

/* ---------------------------------------------------------------- cross-entropy */

/* torch.nn.functional.cross_entropy(logits, targets, ignore_index, label_smoothing ε,
 * reduction='mean'):
 *   row loss  l_n = (1 - ε) · (lse_n - x[n, t_n]) + ε · (lse_n - mean_v x[n, v])
 *   loss      = Σ_{n : t_n != ignore_index} l_n / count,   count = #non-ignored rows
 * logits (N, V); targets (N), each ignore_index or in [0, V); ε in [0, 1]. losses (N) may be
 * NULL: if given it receives l_n (0 for ignored rows). When every row is ignored the loss is
 * 0 with zero gradients (torch returns NaN there). Saves nothing: the backward recomputes the
 * softmax from the logits. Allocates O(N) scratch. */
qkv_status qkv_nn_cross_entropy_forward_ref(qkv_runtime *rt, float *loss, float *losses,
                                            const float *logits, const int32_t *targets, int64_t N,
                                            int64_t V, int32_t ignore_index, float label_smoothing);
/* dlogits (N, V) += dloss / count · (softmax(x_n) - (1 - ε) onehot(t_n) - ε / V) for the
 * non-ignored rows; ignored rows get nothing. */
qkv_status qkv_nn_cross_entropy_backward_ref(qkv_runtime *rt, float *dlogits, float dloss,
                                             const float *logits, const int32_t *targets, int64_t N,
                                             int64_t V, int32_t ignore_index,
                                             float label_smoothing);

#endif
