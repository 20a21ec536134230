/* lm.h — the internals of qkv_lm (public API in qkv.h): a loaded causal decoder. */
#ifndef QKV_MODELS_LM_H
#define QKV_MODELS_LM_H

#include "models/gpt.h"
#include "qkv.h"

struct qkv_lm {
    qkv_gpt *gpt;
};

#endif
