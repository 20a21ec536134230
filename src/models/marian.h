/* marian.h — MarianMT encoder–decoders (Hugging Face MarianMTModel, the OPUS-MT family),
 * internal API; the public face is qkv_seq2seq (seq2seq.c, qkv.h).
 *
 * A model directory in the Hugging Face layout: config.json (model_type "marian"), optionally
 * generation_config.json (when present, the decoding defaults come from it alone, with
 * GenerationConfig's defaults for what it lacks, as transformers reads them; else from
 * config.json), model.safetensors. The architecture, as modeling_marian.py computes it:
 *   encoder: x = E[ids] · embed_scale + PE[t]; L_e post-LN blocks (the BERT block of
 *            models/block.h: LN1(x + SelfAttn(x)), LN2(· + MLP(·))); no final norm.
 *   decoder: y = E_dec[ids] · embed_scale + PE[past + t]; L_d post-LN blocks of three sublayers
 *            (causal self-attention, cross-attention over the encoder output, MLP, each
 *            followed by its residual add and LayerNorm); no final norm;
 *            logits = y · headᵀ + final_logits_bias.
 *   PE is Marian's sinusoidal table: PE[p, i] = sin(p / 10000^(2i/C)) for i < C/2 and
 *   PE[p, C/2 + i] = cos(p / 10000^(2i/C)) (sines first, then cosines; not interleaved),
 *   computed in double and rounded once, as numpy computes it there.
 *   embed_scale is √C with scale_embedding, else 1. The MLP activation is
 *   activation_function (swish/silu, gelu, gelu_new, relu).
 *   Embeddings: share_encoder_decoder_embeddings (default true) gives one table for encoder,
 *   decoder and (tied) head; otherwise the encoder and decoder have their own
 *   (decoder_vocab_size rows) and the head is tied to the decoder's (tie_word_embeddings) or
 *   lm_head.weight.
 * Every linear weight is packed once at load; the encoder runs packed sequences (no padding,
 * so a source's output does not depend on its batch); the decoder runs one new token per row
 * against per-row self-attention caches and the cross-attention keys/values of the row's
 * source, computed once per source (qkv__marian_cross_kv). */
#ifndef QKV_MODELS_MARIAN_H
#define QKV_MODELS_MARIAN_H

#include "kernels/gemm.h"
#include "models/block.h"
#include "models/kv_cache.h"
#include "models/s2s.h"
#include "models/weights.h"
#include "qkv.h"

#include <stdint.h>

typedef struct qkv_marian_config {
    int64_t V, Vd;     /* source (encoder) and target (decoder) vocabulary */
    int64_t C, P;      /* d_model, max_position_embeddings */
    int64_t Le, Ld;    /* encoder_layers, decoder_layers */
    int64_t He, Hd;    /* encoder/decoder_attention_heads */
    int64_t Fe, Fd;    /* encoder/decoder_ffn_dim */
    qkv_act act;       /* activation_function */
    float embed_scale; /* √C or 1 */
    int shared;        /* share_encoder_decoder_embeddings */
    int tied;          /* tie_word_embeddings */
    qkv__s2s_gen gen;  /* special tokens (decoder start: pad) and decoding defaults */
} qkv_marian_config;

typedef struct qkv_marian {
    qkv_marian_config cfg;
    qkv_safetensors *st;
    const float *enc_embed, *dec_embed; /* (V, C), (Vd, C): the same table when shared */
    const float *logits_bias;           /* (Vd) final_logits_bias, or NULL (zeros) */
    float *pe;                          /* (P, C) the sinusoidal table (owned) */
    qkv__enc_layer *enc;                /* [Le] */
    qkv__s2s_dec_layer *dec;            /* [Ld] */
    qkv_packed_set packed;              /* every packed matrix, in the load's dtype (owned) */
    qkv_nn_linear head;                 /* y -> logits: the packed head + final_logits_bias */
    qkv_owned_weights owned;
} qkv_marian;

/* config.json (+ generation_config.json) of dir. FORMAT / UNSUPPORTED name the field. The
 * config owns bad_ids: free with qkv__marian_config_release. */
qkv_status qkv__marian_config_load(const char *dir, qkv_marian_config *cfg);
void qkv__marian_config_release(qkv_marian_config *cfg);
/* Marian's sinusoidal table (P, C) into *out (qkv__free it): sines of p / 10000^(2i/C) in the
 * first half, cosines in the second, in double as numpy computes it, rounded once. */
qkv_status qkv__marian_positions(int64_t P, int64_t C, float **out);
/* Loads dir with its linear layers (and head) packed in dtype (F32 or BF16: weights.h's
 * qkv_packed_set); on failure *out is NULL. */
qkv_status qkv__marian_load(const char *dir, qkv_dtype dtype, qkv_marian **out);
void qkv__marian_free(qkv_marian *m);

/* The encoder over n packed sources: ids [N] (N = Σ lens), each 1 <= lens[s] <= P;
 * out [N, C] the last hidden state of every token. */
qkv_status qkv__marian_encode(qkv_runtime *rt, const qkv_marian *m, const int32_t *ids,
                              const int64_t *lens, int64_t n, float *out);
/* qkv__marian_encode that also writes every layer's self-attention probabilities, computed
 * beside the layer's attention from its own q and k (qkv_attention_probs): probs receives each
 * source's [Le, He, len, len] back to back (NULL: none). */
qkv_status qkv__marian_encode_probs(qkv_runtime *rt, const qkv_marian *m, const int32_t *ids,
                                    const int64_t *lens, int64_t n, float *out, float *probs);
/* The cross-attention keys and values of every decoder layer for the encoder output enc
 * [N, C] (N = Σ lens of the sources): kv [Ld, 2, N, C] (layer l's keys, then its values; a
 * source at token offset o has its [len, Hd, D] block at row o). */
qkv_status qkv__marian_cross_kv(qkv_runtime *rt, const qkv_marian *m, const float *enc, int64_t N,
                                float *kv);

/* One decoder step for R rows: row r feeds token tok[r] at position caches[r]->len (which
 * must be < P and < the cache's capacity), appends its keys/values to caches[r] and attends
 * to its source: the src_len[r] rows of kv (qkv__marian_cross_kv over N source tokens)
 * starting at src_off[r]. logits [R, Vd]. On success every cache's len grows by 1. */
qkv_status qkv__marian_decode_step(qkv_runtime *rt, const qkv_marian *m,
                                   qkv_kv_cache *const *caches, const int32_t *tok, const float *kv,
                                   int64_t N, const int64_t *src_off, const int64_t *src_len,
                                   int64_t R, float *logits);

/* The attention maps a decoder step writes for its one row at position t = cache->len:
 * row t of self [Ld, Hd, T, T] (keys 0..t) and of cross [Ld, Hd, T, S] (S = the row's source
 * length), each computed beside the layer's attention from its own q and k. Keys past t are
 * not written (the caller zeroes them). */
typedef struct qkv__marian_step_maps {
    float *self, *cross;
    int64_t T, S;
} qkv__marian_step_maps;
/* qkv__marian_decode_step with maps (NULL: none; else R must be 1, t < T, src_len[0] == S). */
qkv_status qkv__marian_decode_step_probs(qkv_runtime *rt, const qkv_marian *m,
                                         qkv_kv_cache *const *caches, const int32_t *tok,
                                         const float *kv, int64_t N, const int64_t *src_off,
                                         const int64_t *src_len, int64_t R, float *logits,
                                         const qkv__marian_step_maps *maps);

#endif
