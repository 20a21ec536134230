/* t5.h — T5 and T5 v1.1 encoder-decoders (Hugging Face T5ForConditionalGeneration), internal
 * API; the public face is qkv_seq2seq (seq2seq.c, qkv.h).
 *
 * A model directory: config.json (model_type "t5"), optionally generation_config.json (read as
 * for Marian, models/s2s.h), model.safetensors with the tensors of qkv__params_t5 (params.h).
 * The architecture, as modeling_t5.py computes it (no biases anywhere):
 *   encoder: x = E[ids]; per layer x += O(attn(Q h, K h, V h) + bias_enc), h = RMS0(x);
 *            x += FF(RMS1(x)); out = RMS_final(x).
 *   decoder: y = E[ids]; per layer y += O(attn(...) + bias_dec) (causal, against the cache),
 *            y += CO(attn(CQ RMS1(y), enc K, enc V)), y += FF(RMS2(y)); y = RMS_final(y);
 *            logits = (y · d_model^-0.5 when the outputs are scaled) · headᵀ.
 *   RMS is T5LayerNorm: x / sqrt(mean(x²) + eps) · w, no mean, no bias. Attention scores are
 *   q·k without the 1/sqrt(d) (T5 folds it into its initialization); heads have d_kv, so the
 *   inner width H·d_kv need not be d_model. FF is wo(act(wi x)) or, gated (v1.1
 *   "gated-gelu"), wo(act(wi_0 x) ∘ wi_1 x); act from feed_forward_proj (gelu = erf,
 *   gelu_new = tanh: "gated-gelu" means gelu_new, as transformers maps it).
 *   bias_enc / bias_dec: the relative position bias, a (num_buckets, H) table in the first
 *   layer of each stack shared by all its layers, indexed by T5's bucket of key − query
 *   (bidirectional in the encoder, causal in the decoder); cross-attention has none.
 *   The head is shared.weight unless the file holds lm_head.weight (v1.1); the decoder output
 *   is scaled by d_model^-0.5 when scale_decoder_outputs (transformers 5) is true, or, without
 *   that field, unless tie_word_embeddings is false — as transformers 5 decides it.
 *   decoder_start_token_id defaults to pad.
 * Positions are not bounded by T5 itself; qkv takes sources and outputs up to n_positions
 * (config.json, default 512) tokens, the size of its precomputed bias rows. */
#ifndef QKV_MODELS_T5_H
#define QKV_MODELS_T5_H

#include "kernels/gemm.h"
#include "models/kv_cache.h"
#include "models/s2s.h"
#include "models/weights.h"
#include "nn/nn.h"
#include "qkv.h"

#include <stdint.h>

typedef struct qkv_t5_config {
    int64_t V, C;     /* vocab_size, d_model */
    int64_t H, D, Q;  /* num_heads, d_kv, H·d_kv */
    int64_t F;        /* d_ff */
    int64_t Le, Ld;   /* num_layers, num_decoder_layers */
    int64_t NB, MD;   /* relative_attention_num_buckets, relative_attention_max_distance */
    int64_t P;        /* n_positions: qkv's cap on source and target tokens */
    float eps;        /* layer_norm_epsilon */
    qkv_act act;      /* of feed_forward_proj */
    int gated;        /* "gated-..." */
    int tied;         /* tie_word_embeddings as the file says (default true) */
    int scale_out;    /* the decoder output times d_model^-0.5 before the head */
    char *prefix;     /* the source prefix of the first translation_* task_specific_params
                         entry ("" if none; owned) */
    qkv__s2s_gen gen; /* special tokens and decoding defaults */
} qkv_t5_config;

/* One block's weights, packed (the encoder leaves the cross-attention empty). */
typedef struct qkv_t5_layer {
    const float *ln_sa, *ln_ca, *ln_ff; /* (C): before self-attn, cross-attn, FF */
    qkv_nn_linear q, k, v, o;           /* C -> Q (q, k, v), Q -> C */
    qkv_nn_linear cq, ck, cv, co;       /* decoder: cross-attention */
    qkv_nn_linear wi, wi1, wo;          /* C -> F (wi, or wi_0 when gated; wi_1), F -> C */
} qkv_t5_layer;

typedef struct qkv_t5 {
    qkv_t5_config cfg;
    qkv_safetensors *st;
    const float *embed;                 /* (V, C) shared.weight */
    const float *enc_rel, *dec_rel;     /* (NB, H) relative_attention_bias of each stack */
    const float *enc_final, *dec_final; /* (C) final_layer_norm */
    float *enc_bias;                    /* (H, 2P - 1): bias of key − query = k - (P - 1) */
    float *dec_bias;                    /* (H, P + 1): bias of query − key = P - k */
    qkv_t5_layer *enc, *dec;            /* [Le], [Ld] */
    qkv_packed_set packed;              /* every packed matrix, in the load's dtype (owned) */
    qkv_nn_linear head;
    qkv_owned_weights owned;
} qkv_t5;

/* T5's bucket of a relative position (key − query), as transformers'
 * _relative_position_bucket computes it (float32 log, truncation toward zero). */
int32_t qkv__t5_bucket(int64_t rel, int bidirectional, int64_t num_buckets, int64_t max_distance);

/* config.json (+ generation_config.json) of dir; release with qkv__t5_config_release. */
qkv_status qkv__t5_config_load(const char *dir, qkv_t5_config *cfg);
void qkv__t5_config_release(qkv_t5_config *cfg);
/* Loads dir with its linear layers (and head) packed in dtype (F32 or BF16: weights.h's
 * qkv_packed_set); on failure *out is NULL. */
qkv_status qkv__t5_load(const char *dir, qkv_dtype dtype, qkv_t5 **out);
void qkv__t5_free(qkv_t5 *m);

/* The encoder over n packed sources (ids [N], N = Σ lens, 1 <= lens[s] <= P): out [N, C]. */
qkv_status qkv__t5_encode(qkv_runtime *rt, const qkv_t5 *m, const int32_t *ids, const int64_t *lens,
                          int64_t n, float *out);
/* Cross-attention keys and values of every decoder layer: kv [Ld, 2, N, Q]. */
qkv_status qkv__t5_cross_kv(qkv_runtime *rt, const qkv_t5 *m, const float *enc, int64_t N,
                            float *kv);
/* One decoder step for R rows, as qkv__marian_decode_step (caches [Ld, cap, H, D]). */
qkv_status qkv__t5_decode_step(qkv_runtime *rt, const qkv_t5 *m, qkv_kv_cache *const *caches,
                               const int32_t *tok, const float *kv, int64_t N,
                               const int64_t *src_off, const int64_t *src_len, int64_t R,
                               float *logits);

#endif
