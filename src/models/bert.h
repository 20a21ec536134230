/* bert.h — the BERT encoder (Hugging Face BertModel semantics), internal API.
 *
 * A model directory in the Hugging Face layout: config.json + model.safetensors. Weights stay in
 * the mmapped file when stored as F32 (zero copy); F16/BF16 tensors are converted to F32 once at
 * load. Names may carry the "bert." prefix of task checkpoints (BertForSequenceClassification).
 * A directory whose config.json architectures names BertForSequenceClassification, or whose
 * safetensors has classifier.weight, is a classifier: the pooler is then required, the
 * classifier (NL, C) is loaded by the rows of qkv__params_bert_cls, NL and the label names come
 * from config.json (models/labels.h). Another *ForSequenceClassification is refused.
 * The linear layers' matrices are then packed once for the GEMM (qkv__gemm_pack_b, with the
 * ISA active at load): small batches need it, packing per call cost as much as the product.
 * Loaded as bf16 (qkv__bert_load_as), the encoder's matrices are packed for the bf16-weight
 * GEMM instead, each straight from the file.
 * The mapped pages of the packed originals are dropped, so they are held once in memory.
 *
 * Forward works on PACKED sequences: the tokens of all sequences of a batch are stored one after
 * another ([N, C] with N = Σ lens), so linear layers, norms and activations spend nothing on
 * padding; only attention looks at sequence boundaries (one attention call per sequence). */
#ifndef QKV_MODELS_BERT_H
#define QKV_MODELS_BERT_H

#include "kernels/gemm.h"
#include "kernels/gemm_bf16.h"
#include "kernels/gemm_i8.h"
#include "models/block.h"
#include "models/labels.h"
#include "models/weights.h"
#include "qkv.h"

#include <stdint.h>

typedef struct qkv_bert_config {
    int64_t vocab_size, hidden_size, num_layers, num_heads, intermediate_size;
    int64_t max_position, type_vocab_size;
    float layer_norm_eps;
    qkv_act act; /* hidden_act: gelu (erf), gelu_new / gelu_pytorch_tanh (tanh), relu, silu */
    int32_t pad_token_id;
    /* training only (inference ignores them): hidden_dropout_prob, attention_probs_dropout_prob
     * and the classification head's classifier_dropout (hidden_dropout_prob when null) */
    float hidden_dropout, attn_dropout, classifier_dropout;
} qkv_bert_config;

typedef struct qkv_bert_layer {
    const float *wq, *bq, *wk, *bk, *wv, *bv; /* (C, C), (C) */
    const float *wo, *bo, *ln1_w, *ln1_b; /* attention.output.dense, attention.output.LayerNorm */
    const float *w1, *b1;                 /* intermediate.dense (F, C), (F) */
    const float *w2, *b2, *ln2_w, *ln2_b; /* output.dense (C, F), output.LayerNorm */
    /* wq, wk, wv, wo, w1, w2 as op(W) = Wᵀ packed once at load for the GEMM; forward uses
     * only these (the mapped pages of the originals are given back after packing) */
    qkv_gemm_packed *pq, *pk, *pv, *po, *p1, *p2;
    /* the same six as 16-bit weights instead (a model loaded with dtype BF16 or F16; the p* are
     * NULL then, and so are wq..w2: packed straight from the file, no F32 copy kept) */
    qkv_gemm_bf16_packed *hq, *hk, *hv, *ho, *h1, *h2;
    /* the same six as int8 weights instead (dtype I8; kernels/gemm_i8.h) */
    qkv_gemm_i8_packed *iq, *ik, *iv, *io, *i1, *i2;
    qkv__enc_layer blk; /* the block's layers over the packed weights (models/block.h) */
} qkv_bert_layer;

typedef struct qkv_bert {
    qkv_bert_config cfg;
    qkv_dtype dtype; /* of the encoder's linear layers: QKV_DTYPE_F32, _BF16, _F16 or _I8 */
    qkv_safetensors *st;
    const float *word_emb, *pos_emb, *type_emb, *emb_ln_w, *emb_ln_b; /* (V,C) (P,C) (TV,C) (C) */
    qkv_bert_layer *layers;                                           /* [num_layers] */
    const float *pool_w, *pool_b;  /* pooler.dense, or NULL when the checkpoint has none */
    const float *cls_w, *cls_b;    /* classifier (NL, C), (NL), or NULL: no classification head */
    qkv__labels labels;            /* the head's labels (n = NL); n = 0 without a head */
    qkv_owned_weights owned;       /* converted (F16/BF16 -> F32) tensors we allocated */
    struct qkv__lora_file *lora;   /* a LoRA adapter (lora_apply.c), or NULL */
    struct qkv_nn_lora *lora_slot; /* its slots (models/lora.h), attached to the layers */
} qkv_bert;

/* Parses config.json of dir (a BERT-family config). Unsupported values are refused by field
 * name (QKV_ERR_UNSUPPORTED); missing required fields are QKV_ERR_FORMAT. */
qkv_status qkv__bert_config_load(const char *dir, qkv_bert_config *cfg);
/* Loads config.json + model.safetensors from dir. Missing or misshaped tensors are refused
 * with their name and expected shape (QKV_ERR_FORMAT). */
qkv_status qkv__bert_load(const char *dir, qkv_bert **out);
/* The same with the encoder's six linear layers per block in `dtype`: QKV_DTYPE_F32 (as
 * qkv__bert_load), QKV_DTYPE_BF16 or QKV_DTYPE_F16 (kernels/gemm_bf16.h: tensors of that dtype
 * packed as stored, F32 rounded to nearest even, the other 16-bit dtype through F32, one
 * tensor at a time) or QKV_DTYPE_I8 (kernels/gemm_i8.h: quantized from an F32 view of the
 * tensor, a temporary F32 copy for F16/BF16 ones). Embeddings, LayerNorms,
 * biases, the pooler and the classifier stay F32. Another dtype: INVALID_ARG. */
qkv_status qkv__bert_load_as(const char *dir, qkv_dtype dtype, qkv_bert **out);
void qkv__bert_free(qkv_bert *m);

/* Last hidden states of n_seq packed sequences.
 *   ids, type_ids (may be NULL = all 0): [N] with N = Σ lens; lens [n_seq], each in
 *   [1, max_position]; hidden out: [N, C].
 * Positions restart at 0 for every sequence. */
qkv_status qkv__bert_forward(qkv_runtime *rt, const qkv_bert *m, const int32_t *ids,
                             const int32_t *type_ids, const int64_t *lens, int64_t n_seq,
                             float *hidden);
/* The same forward, also writing every layer's attention probabilities (probs NULL: none):
 * sequence after sequence, each [L, H, T, T] (T its length), from each layer's own q and k
 * through qkv_attention_probs with the descriptor its attention ran with. The caller sizes
 * probs (Σ L·H·T² floats) and checks that sum for overflow. */
qkv_status qkv__bert_forward_probs(qkv_runtime *rt, const qkv_bert *m, const int32_t *ids,
                                   const int32_t *type_ids, const int64_t *lens, int64_t n_seq,
                                   float *hidden, float *probs);

/* The classification head over the last hidden states of n_seq packed sequences (hidden [N, C],
 * lens [n_seq] as given to qkv__bert_forward): each sequence's first token ([CLS]), the pooler
 * (dense + tanh), the classifier; logits [n_seq, NL]. INVALID_ARG without a head. */
qkv_status qkv__bert_classify_head(qkv_runtime *rt, const qkv_bert *m, const float *hidden,
                                   const int64_t *lens, int64_t n_seq, float *logits);

#endif
