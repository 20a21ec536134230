/* positional_ref.h — positional encodings: sinusoidal (Vaswani et al. 2017), learned absolute
 * (GPT-2, BERT), rotary (RoPE, Su et al.) in both conventions, and ALiBi slopes (Press et al.).
 * Conventions as in nn.h (forwards overwrite, backwards accumulate, INVALID_ARG naming the
 * argument). docs/NN.md has the formulas. */
#ifndef QKV_NN_POSITIONAL_REF_H
#define QKV_NN_POSITIONAL_REF_H

#include "qkv.h"

#include <stdint.h>

/* ---------------------------------------------------------------- absolute */

/* The original Transformer's table for positions pos0 .. pos0 + T - 1: pe (T, C) with
 *   pe[t, 2i] = sin(p / 10000^(2i/C)),  pe[t, 2i+1] = cos(p / 10000^(2i/C)),  p = pos0 + t.
 * Odd C is allowed (the last channel is a sine). */
qkv_status qkv_nn_sinusoidal(float *pe, int64_t T, int64_t C, int64_t pos0);

/* out (B, T, C) = inp (B, T, C) + pe[pos0 + t] with pe (P, C) a learned (GPT-2 wpe, BERT
 * position_embeddings) or sinusoidal table; pos0 + T <= P. out == inp is allowed. */
qkv_status qkv_nn_position_add_forward_ref(qkv_runtime *rt, float *out, const float *inp,
                                           const float *pe, int64_t B, int64_t T, int64_t C,
                                           int64_t P, int64_t pos0);
/* dinp (B, T, C) += dout; dpe[pos0 + t] (P, C) += Σ_b dout[b, t]. */
qkv_status qkv_nn_position_add_backward_ref(qkv_runtime *rt, float *dinp, float *dpe,
                                            const float *dout, int64_t B, int64_t T, int64_t C,
                                            int64_t P, int64_t pos0);

/* ---------------------------------------------------------------- rotary (RoPE) */

typedef enum qkv_nn_rope_style {
    /* pairs (2i, 2i+1): GPT-J, the original RoFormer, Meta's Llama reference code (complex
     * view of adjacent pairs), llama.cpp's "normal" mode */
    QKV_NN_ROPE_INTERLEAVED = 0,
    /* pairs (i, i + R/2) ("rotate_half"): GPT-NeoX, Hugging Face Llama / Mistral / Qwen,
     * llama.cpp's "neox" mode */
    QKV_NN_ROPE_HALF = 1,
} qkv_nn_rope_style;

typedef struct qkv_nn_rope {
    qkv_nn_rope_style style;
    double theta; /* base: 10000 (GPT-J, NeoX, Llama 2), 500000 (Llama 3); > 0 */
    int64_t dims; /* R rotated dims of each head (partial rotary: GPT-J rotary_dim, NeoX
                     rotary_pct); even, <= D; 0 means D. Dims R.. D-1 pass through. */
} qkv_nn_rope;

/* Rotates each head of x (B, T, H, D) by position p = pos0 + t: pair k (k < R/2) is rotated by
 * the angle p · theta^(-2k/R):
 *   (x_a, x_b) -> (x_a cos - x_b sin, x_a sin + x_b cos)
 * with (a, b) = (2k, 2k+1) (interleaved) or (k, k + R/2) (half). pos0 is the number of tokens
 * already in the KV cache when decoding. out == inp is allowed. Saves nothing. */
qkv_status qkv_nn_rope_forward_ref(qkv_runtime *rt, float *out, const float *inp,
                                   const qkv_nn_rope *rope, int64_t B, int64_t T, int64_t H,
                                   int64_t D, int64_t pos0);
/* dinp += the inverse rotation of dout (rotation matrices are orthogonal: Rᵀ = R(-angle)). */
qkv_status qkv_nn_rope_backward_ref(qkv_runtime *rt, float *dinp, const float *dout,
                                    const qkv_nn_rope *rope, int64_t B, int64_t T, int64_t H,
                                    int64_t D, int64_t pos0);

/* ---------------------------------------------------------------- ALiBi */

/* The slopes of ALiBi (Press et al. 2022, the authors' code and Hugging Face BLOOM's
 * build_alibi_tensor): with n the largest power of two <= H,
 *   slopes[h] = 2^(-8 (h+1) / n)                    for h < n
 *   slopes[n + j] = 2^(-8 (2j+1) / (2n))            for j < H - n
 * (the odd-indexed slopes of the 2n-head sequence, which fall between the first n). slopes (H).
 * Pass them as qkv_attention_desc.alibi_slopes. */
qkv_status qkv_nn_alibi_slopes(float *slopes, int64_t H);

#endif
