/* s2s.h — what every encoder-decoder of qkv_seq2seq (seq2seq.c) shares: its special tokens and
 * the decoding defaults read as transformers reads them (generation_config.json alone when the
 * directory has one, with GenerationConfig's defaults for what it lacks; else config.json).
 * Settings that would change the result and are not implemented are refused by name. */
#ifndef QKV_MODELS_S2S_H
#define QKV_MODELS_S2S_H

#include "qkv.h"

#include <stdint.h>

struct json_t;

/* early_stopping of transformers' beam search */
enum { QKV__ES_FALSE = 0, QKV__ES_TRUE = 1, QKV__ES_NEVER = 2 };

typedef struct qkv__s2s_gen {
    int32_t pad, eos; /* pad_token_id, eos_token_id (config.json) */
    int32_t start;    /* decoder_start_token_id (Marian and T5: pad) */
    /* decoding defaults (transformers' defaults in comments) */
    int64_t num_beams;       /* 1 */
    int64_t max_length;      /* 20; counts the start token */
    float length_penalty;    /* 1 */
    int early_stopping;      /* QKV__ES_*, false */
    int64_t no_repeat_ngram; /* 0 */
    int32_t forced_eos;      /* -1: none */
    int renormalize;         /* renormalize_logits: log_softmax after the processors */
    int32_t *bad_ids;        /* bad_words_ids (single tokens only), n_bad of them (owned) */
    int64_t n_bad;
} qkv__s2s_gen;

/* GenerationConfig's defaults for the decoding fields (pad, eos, start untouched). */
void qkv__s2s_gen_defaults(qkv__s2s_gen *g);
/* The decoding fields of one JSON object (config.json or generation_config.json) over g; token
 * ids must lie in [0, Vd). FORMAT / UNSUPPORTED name path and the field. */
qkv_status qkv__s2s_gen_parse(const char *path, struct json_t *o, int64_t Vd, qkv__s2s_gen *g);
/* dir/generation_config.json, when present, replaces the decoding fields (defaults + the file).
 * Between qkv__json_begin/end. */
qkv_status qkv__s2s_gen_file(const char *dir, int64_t Vd, qkv__s2s_gen *g);
void qkv__s2s_gen_release(qkv__s2s_gen *g);

/* Config fields with the messages every encoder-decoder gives: an integer in [lo, hi] (absent
 * or null: def; required: FORMAT "missing"), a boolean. Out of range or mistyped: FORMAT. */
qkv_status qkv__s2s_get_int(const char *path, struct json_t *o, const char *key, int64_t def,
                            int required, int64_t lo, int64_t hi, int64_t *out);
qkv_status qkv__s2s_get_bool(const char *path, struct json_t *o, const char *key, int def,
                             int *out);

#endif
