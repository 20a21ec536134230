/* gpt.h — causal decoders (Hugging Face GPT-2 and Llama-style models), internal API.
 *
 * A model directory in the Hugging Face layout: config.json + model.safetensors. Two families:
 *   GPT-2 (model_type "gpt2"): pre-LN LayerNorm blocks, learned absolute positions, fused
 *     c_attn, tanh GELU, the LM head tied to wte. Its Conv1D weights are stored [in, out]
 *     (transposed vs nn.Linear); the GEMMs read them in place with trans_b = 0.
 *   Llama (model_type "llama", "mistral" without a sliding window): RMSNorm, RoPE (the
 *     half-split "rotate_half" convention) with rope_theta, SwiGLU MLP, grouped-query attention,
 *     tied embeddings or an lm_head, no biases.
 * Weights stay in the mmapped file when stored as F32 (zero copy); F16/BF16 tensors are
 * converted to F32 once at load. Every GEMM weight (the LM head too: Eᵀ once when tied) is then
 * packed for the GEMM with the ISA active at load: decode runs one row per sequence, where
 * packing per call cost more than the product. The mapped originals' pages are given back
 * (embedding rows fault back in on lookup). Names may carry the "transformer." (GPT2LMHeadModel) or
 * "model." (LlamaForCausalLM) prefix, or none (GPT2Model / LlamaModel checkpoints).
 *
 * Forward works on PACKED sequences, as bert.c: the new tokens of all sequences one after
 * another ([N, C], N = Σ lens), each sequence appending to its own KV cache; linear layers run
 * as one GEMM over all N rows, attention runs per sequence against its cache (causal,
 * bottom-right aligned, so a chunk of new tokens sees every cached token and its own past).
 * Each output row depends only on its own sequence: a sequence's logits are bit-identical
 * whether it runs alone or packed with others. */
#ifndef QKV_MODELS_GPT_H
#define QKV_MODELS_GPT_H

#include "kernels/gemm.h"
#include "models/block.h"
#include "models/kv_cache.h"
#include "models/weights.h"
#include "qkv.h"

#include <stdint.h>

typedef enum qkv_gpt_arch {
    QKV_GPT_ARCH_GPT2 = 0,
    QKV_GPT_ARCH_LLAMA = 1,
} qkv_gpt_arch;

#define QKV__MAX_EOS 8

typedef struct qkv_gpt_config {
    qkv_gpt_arch arch;
    int64_t vocab_size;        /* V */
    int64_t hidden_size;       /* C */
    int64_t num_layers;        /* L */
    int64_t num_heads;         /* Hq */
    int64_t num_kv_heads;      /* Hk (GPT-2: Hq) */
    int64_t head_dim;          /* D */
    int64_t intermediate_size; /* F */
    int64_t max_position;      /* GPT-2 n_positions (a hard limit), Llama max_position_embeddings */
    float norm_eps;            /* layer_norm_epsilon / rms_norm_eps */
    double rope_theta;         /* Llama */
    qkv_act act;               /* GPT-2 MLP activation; Llama: SiLU gate */
    int tied;                  /* LM head = token embedding */
    float attn_scale;          /* 0: 1/√D (GPT-2 scale_attn_weights = false gives 1) */
    int scale_by_layer;        /* GPT-2 scale_attn_by_inverse_layer_idx */
    int32_t bos_token_id, eos_token_id; /* -1 when absent; eos: the first of eos_ids */
    int32_t eos_ids[QKV__MAX_EOS];      /* every end-of-sequence id (generation_config.json's
                                           eos_token_id, else config.json's): generation stops
                                           at any of them */
    int n_eos;
} qkv_gpt_config;

/* Weight shapes; GPT-2's Conv1D matrices are [in, out], Llama's nn.Linear ones [out, in]. */
typedef struct qkv_gpt_layer {
    const float *ln1_w, *ln1_b;   /* (C), (C) or NULL (RMSNorm) */
    const float *w_qkv, *b_qkv;   /* GPT-2 c_attn (C, 3C) [in, out], (3C) */
    const float *wq, *wk, *wv;    /* Llama (Hq D, C), (Hk D, C), (Hk D, C) */
    const float *wo, *bo;         /* GPT-2 c_proj (C, C) [in, out]; Llama o_proj (C, Hq D) */
    const float *ln2_w, *ln2_b;   /* (C), (C) or NULL */
    const float *w_fc, *b_fc;     /* GPT-2 c_fc (C, F) [in, out], (F) */
    const float *w_proj, *b_proj; /* GPT-2 mlp.c_proj (F, C) [in, out], (C) */
    const float *w_gate, *w_up;   /* Llama (F, C), (F, C) */
    const float *w_down;          /* Llama (C, F) */
    /* the block's layers over the weights packed at load (models/block.h; GPT-2's q, k, v are
     * the column slices of c_attn; Llama's MLP is gate, fc = up, proj = down) */
    qkv__dec_layer blk;
} qkv_gpt_layer;

typedef struct qkv_gpt {
    qkv_gpt_config cfg;
    qkv_safetensors *st;
    const float *wte;              /* (V, C) token embedding */
    const float *wpe;              /* GPT-2 (P, C) learned positions, else NULL */
    qkv_gpt_layer *layers;         /* [L] */
    const float *lnf_w, *lnf_b;    /* (C), (C) or NULL */
    const float *lm_head;          /* (V, C): wte when tied */
    qkv_nn_linear head;            /* lm_headᵀ packed (K = C, N = V) */
    qkv_packed_set packed;         /* every packed matrix, in the load's dtype */
    qkv_owned_weights owned;       /* converted (F16/BF16 -> F32) tensors we allocated */
    struct qkv__lora_file *lora;   /* a LoRA adapter (lora_apply.c), or NULL */
    struct qkv_nn_lora *lora_slot; /* its slots (models/lora.h), attached to the layers */
} qkv_gpt;

/* Parses config.json of dir. Unsupported values are refused by field name
 * (QKV_ERR_UNSUPPORTED); missing required fields are QKV_ERR_FORMAT; IO if unreadable. */
qkv_status qkv__gpt_config_load(const char *dir, qkv_gpt_config *cfg);
/* Loads config.json + model.safetensors from dir, the linear layers and the head packed in
 * dtype (F32 or BF16: weights.h's qkv_packed_set). Missing or misshaped tensors are refused
 * with their name and expected shape (QKV_ERR_FORMAT). On failure *out is NULL. */
qkv_status qkv__gpt_load(const char *dir, qkv_dtype dtype, qkv_gpt **out);
void qkv__gpt_free(qkv_gpt *m);
/* Packs q, k, v (and Llama's gate, up) as separate products instead of the fused ones the
 * load makes (block.h; the same logits bit for bit), for an adapter attaching to each. */
qkv_status qkv__gpt_unfuse(qkv_gpt *m);
/* Applies a PEFT LoRA adapter directory (qkv_lm_load_lora; lora_apply.c). */
qkv_status qkv__gpt_load_lora(qkv_gpt *m, const char *dir);

/* Appends new tokens to n_seq sequences and computes their logits.
 *   ids [N] packed (N = Σ lens), lens [n_seq] each >= 1; caches[s] holds sequence s's past
 *   (caches[s]->len tokens; positions continue from there) and must have room for lens[s]
 *   more; GPT-2 positions must stay below max_position.
 *   all_logits 1: logits [N, V] for every new token; 0: logits [n_seq, V] for the last new
 *   token of each sequence.
 * On success every cache's len grows by its lens[s]; on failure the caches' lengths are
 * unchanged (their contents past len may have been written). */
qkv_status qkv__gpt_forward(qkv_runtime *rt, const qkv_gpt *m, qkv_kv_cache *const *caches,
                            const int32_t *ids, const int64_t *lens, int64_t n_seq, int all_logits,
                            float *logits);
/* The same forward, also writing every layer's attention probabilities (probs NULL: none):
 * sequence after sequence, each [L, Hq, T, Tk] (T its new tokens, Tk = its cache's length
 * + T), from each layer's own q (after RoPE) and cached k through qkv_attention_probs with the
 * descriptor its attention ran with. The caller sizes probs and checks that size for
 * overflow. */
qkv_status qkv__gpt_forward_probs(qkv_runtime *rt, const qkv_gpt *m, qkv_kv_cache *const *caches,
                                  const int32_t *ids, const int64_t *lens, int64_t n_seq,
                                  int all_logits, float *logits, float *probs);

#endif
