/* model.h — the internals of qkv_model (public API in qkv.h). */
#ifndef QKV_MODELS_MODEL_H
#define QKV_MODELS_MODEL_H

#include "models/bert.h"
#include "nn/pooling.h"
#include "qkv.h"

struct qkv_model {
    qkv_bert *bert;
    qkv_pool_mode pool;
    int normalize;
    int64_t max_seq_len; /* sentence-transformers max_seq_length, else max_position */
    qkv_tokenizer *tok;  /* the directory's tokenizer, or NULL if it has none */
};

/* The weight dtype of load options (NULL: the defaults, F32): F32, BF16 or F16; I8
 * UNSUPPORTED, others INVALID_ARG, each message naming fn. Every loader taking
 * qkv_model_options checks them here. */
qkv_status qkv__model_options_dtype(const char *fn, const qkv_model_options *opts, qkv_dtype *out);

#endif
