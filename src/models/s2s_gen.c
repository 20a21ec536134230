/* s2s_gen.c — the special tokens and decoding defaults of an encoder-decoder directory (see
 * s2s.h), shared by Marian and T5. */
#include "models/s2s.h"

#include "core/alloc.h"
#include "core/error.h"
#include "io/json.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* An integer field in [lo, hi]; absent or null: def (required: FORMAT). */
qkv_status qkv__s2s_get_int(const char *path, json_t *o, const char *key, int64_t def, int required,
                            int64_t lo, int64_t hi, int64_t *out) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        if (required)
            return qkv__fail(QKV_ERR_FORMAT, "%s: missing required field '%s'", path, key);
        *out = def;
        return QKV_OK;
    }
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return qkv__fail(QKV_ERR_FORMAT, "%s: field '%s' must be an integer in [%lld, %lld]", path,
                         key, (long long)lo, (long long)hi);
    *out = (int64_t)json_integer_value(v);
    return QKV_OK;
}

qkv_status qkv__s2s_get_bool(const char *path, json_t *o, const char *key, int def, int *out) {
    json_t *v = json_object_get(o, key);
    *out = def;
    if (!v || json_is_null(v)) return QKV_OK;
    if (!json_is_boolean(v))
        return qkv__fail(QKV_ERR_FORMAT, "%s: field '%s' must be true or false", path, key);
    *out = json_is_true(v);
    return QKV_OK;
}

/* transformers' GenerationConfig defaults (decoder_start_token_id falls back to the model's). */
void qkv__s2s_gen_defaults(qkv__s2s_gen *c) {
    c->num_beams = 1;
    c->max_length = 20;
    c->length_penalty = 1.0f;
    c->early_stopping = QKV__ES_FALSE;
    c->no_repeat_ngram = 0;
    c->forced_eos = -1;
    c->renormalize = 0;
    qkv__free(c->bad_ids);
    c->bad_ids = NULL;
    c->n_bad = 0;
}

/* The decoding defaults of one file (config.json, then generation_config.json over it). */
qkv_status qkv__s2s_gen_parse(const char *path, json_t *o, int64_t Vd, qkv__s2s_gen *c) {
    int64_t x = 0;
    QKV_TRY(qkv__s2s_get_int(path, o, "num_beams", c->num_beams, 0, 1, 1024, &c->num_beams));
    QKV_TRY(qkv__s2s_get_int(path, o, "max_length", c->max_length, 0, 1, 1 << 20, &c->max_length));
    QKV_TRY(qkv__s2s_get_int(path, o, "no_repeat_ngram_size", c->no_repeat_ngram, 0, 0, 1 << 20,
                             &c->no_repeat_ngram));
    QKV_TRY(qkv__s2s_get_int(path, o, "decoder_start_token_id", c->start, 0, 0, Vd - 1, &x));
    c->start = (int32_t)x;
    QKV_TRY(qkv__s2s_get_int(path, o, "forced_eos_token_id", c->forced_eos, 0, -1, Vd - 1, &x));
    c->forced_eos = (int32_t)x;
    json_t *v = json_object_get(o, "length_penalty");
    if (v && !json_is_null(v)) {
        if (!json_is_number(v) || !isfinite(json_number_value(v)))
            return qkv__fail(QKV_ERR_FORMAT, "%s: field 'length_penalty' must be a number", path);
        c->length_penalty = (float)json_number_value(v);
    }
    v = json_object_get(o, "early_stopping");
    if (json_is_boolean(v))
        c->early_stopping = json_is_true(v) ? QKV__ES_TRUE : QKV__ES_FALSE;
    else if (json_is_string(v) && strcmp(json_string_value(v), "never") == 0)
        c->early_stopping = QKV__ES_NEVER;
    else if (v && !json_is_null(v))
        return qkv__fail(QKV_ERR_FORMAT, "%s: early_stopping must be true, false or \"never\"",
                         path);
    QKV_TRY(qkv__s2s_get_bool(path, o, "renormalize_logits", c->renormalize, &c->renormalize));
    /* settings that would change the result and are not implemented: refused unless default */
    static const char *const zero_ints[] = {"min_length", "min_new_tokens",
                                            "encoder_no_repeat_ngram_size"};
    for (size_t i = 0; i < sizeof zero_ints / sizeof *zero_ints; i++)
        QKV_TRY(qkv__s2s_get_int(path, o, zero_ints[i], 0, 0, 0, 0, &x));
    QKV_TRY(qkv__s2s_get_int(path, o, "num_beam_groups", 1, 0, 1, 1, &x));
    QKV_TRY(qkv__s2s_get_int(path, o, "num_return_sequences", 1, 0, 1, 1, &x));
    int b = 0;
    QKV_TRY(qkv__s2s_get_bool(path, o, "do_sample", 0, &b));
    if (b) return qkv__fail(QKV_ERR_UNSUPPORTED, "%s: do_sample = true is not supported", path);
    static const char *const null_only[] = {"forced_bos_token_id",
                                            "suppress_tokens",
                                            "begin_suppress_tokens",
                                            "sequence_bias",
                                            "exponential_decay_length_penalty",
                                            "force_words_ids"};
    for (size_t i = 0; i < sizeof null_only / sizeof *null_only; i++) {
        json_t *w = json_object_get(o, null_only[i]);
        if (w && !json_is_null(w))
            return qkv__fail(QKV_ERR_UNSUPPORTED, "%s: %s is not supported", path, null_only[i]);
    }
    json_t *rp = json_object_get(o, "repetition_penalty");
    if (rp && !json_is_null(rp) && !(json_is_number(rp) && json_number_value(rp) == 1.0))
        return qkv__fail(QKV_ERR_UNSUPPORTED,
                         "%s: repetition_penalty other than 1 is not supported", path);
    v = json_object_get(o, "bad_words_ids");
    if (v && !json_is_null(v)) {
        if (!json_is_array(v))
            return qkv__fail(QKV_ERR_FORMAT, "%s: bad_words_ids must be a list of lists", path);
        qkv__free(c->bad_ids);
        c->n_bad = 0;
        c->bad_ids = qkv__calloc(json_array_size(v) + 1, sizeof *c->bad_ids);
        if (!c->bad_ids) return qkv__fail(QKV_ERR_NOMEM, "%s: out of memory", path);
        size_t i;
        json_t *w;
        json_array_foreach(v, i, w) {
            json_t *t = json_array_get(w, 0);
            if (!json_is_array(w) || json_array_size(w) != 1)
                return qkv__fail(QKV_ERR_UNSUPPORTED,
                                 "%s: bad_words_ids[%zu]: only single-token entries are supported",
                                 path, i);
            if (!json_is_integer(t) || json_integer_value(t) < 0 || json_integer_value(t) >= Vd)
                return qkv__fail(QKV_ERR_FORMAT, "%s: bad_words_ids[%zu] is not a token id", path,
                                 i);
            c->bad_ids[c->n_bad++] = (int32_t)json_integer_value(t);
        }
    }
    return QKV_OK;
}

qkv_status qkv__s2s_gen_file(const char *dir, int64_t Vd, qkv__s2s_gen *g) {
    char gpath[4096];
    if (snprintf(gpath, sizeof gpath, "%s/generation_config.json", dir) >= (int)sizeof gpath)
        return qkv__fail(QKV_ERR_INVALID_ARG, "model directory path is too long");
    json_t *gen = NULL;
    qkv_status s = qkv__json_load_file(gpath, 1, &gen);
    if (s == QKV_OK && gen) { /* as transformers: the file alone, not merged with config.json */
        qkv__s2s_gen_defaults(g);
        s = json_is_object(gen) ? qkv__s2s_gen_parse(gpath, gen, Vd, g)
                                : qkv__fail(QKV_ERR_FORMAT, "%s: not a JSON object", gpath);
    }
    json_decref(gen);
    return s;
}

void qkv__s2s_gen_release(qkv__s2s_gen *g) {
    if (!g) return;
    qkv__free(g->bad_ids);
    g->bad_ids = NULL;
    g->n_bad = 0;
}
