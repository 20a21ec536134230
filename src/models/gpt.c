/* gpt.c — loading a Hugging Face causal decoder (GPT-2, Llama) and running it over KV caches
 * (see gpt.h).
 *
 * The block is models/block.h's qkv__dec_block_forward, the one training runs too, over the
 * weights packed at load, with attend_caches as its attention: RoPE at each sequence's
 * positions (Llama), the new keys and values appended to each sequence's cache, each sequence's
 * queries against its cache (causal, bottom-right aligned). The residual stream is updated in
 * place and GPT-2's MLP activation runs in the GEMM epilogue. Then logits = NormF(x) Wteᵀ (or
 * lm_headᵀ) for the rows asked for. Every matrix product is one GEMM over the N new tokens of
 * the whole batch. */
#include "models/gpt.h"
#include "models/params.h"
#include "models/weights.h"

#include "core/alloc.h"
#include "core/error.h"
#include "core/runtime.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "models/lora.h"
#include "nn/nn.h"

#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---------------------------------------------------------------- config */

/* A non-negative number stored as a float (an epsilon): more than FLT_MAX would overflow. */
static qkv_status cfg_float(const char *path, json_t *root, const char *key, double def,
                            float *out) {
    double x;
    QKV_TRY(qkv__json_num(path, root, key, def, 0, FLT_MAX, &x));
    *out = (float)x;
    return QKV_OK;
}

/* A boolean field that must have the value `want` (absent = default `def`). */
static qkv_status cfg_bool_is(const char *path, json_t *root, const char *key, int def, int want) {
    int got;
    QKV_TRY(qkv__json_bool(path, root, key, def, &got));
    if (got != want)
        return qkv__fail(QKV_ERR_UNSUPPORTED, "%s: %s = %s is not supported", path, key,
                         got ? "true" : "false");
    return QKV_OK;
}

/* bos/eos ids: an integer or a list of them (absent or null: none). Up to cap ids into ids;
 * the count into *n. A value of another type, or an id outside the vocabulary, is refused. */
static qkv_status cfg_tokens(const char *path, json_t *root, const char *key, int64_t vocab,
                             int32_t *ids, int cap, int *n) {
    json_t *v = json_object_get(root, key);
    *n = 0;
    if (!v || json_is_null(v)) return QKV_OK;
    size_t len = json_is_array(v) ? json_array_size(v) : 1;
    for (size_t i = 0; i < len; i++) {
        json_t *x = json_is_array(v) ? json_array_get(v, i) : v;
        if (!json_is_integer(x))
            return qkv__fail(QKV_ERR_FORMAT, "%s: field '%s' must be a token id or a list of them",
                             path, key);
        json_int_t id = json_integer_value(x);
        if (id < 0 || id >= vocab)
            return qkv__fail(QKV_ERR_FORMAT,
                             "%s: field '%s' = %lld is not a token id of the vocabulary [0, %lld)",
                             path, key, (long long)id, (long long)vocab);
        if (*n < cap) ids[(*n)++] = (int32_t)id;
    }
    return QKV_OK;
}

static qkv_status parse_gpt2(const char *path, json_t *root, qkv_gpt_config *c) {
    c->arch = QKV_GPT_ARCH_GPT2;
    QKV_TRY(qkv__json_int(path, root, "vocab_size", 1, 0, 1, INT32_MAX, &c->vocab_size));
    QKV_TRY(qkv__json_int(path, root, "n_embd", 1, 0, 1, 65536, &c->hidden_size));
    QKV_TRY(qkv__json_int(path, root, "n_layer", 1, 0, 1, 1024, &c->num_layers));
    QKV_TRY(qkv__json_int(path, root, "n_head", 1, 0, 1, 4096, &c->num_heads));
    QKV_TRY(qkv__json_int(path, root, "n_positions", 0, 1024, 1, 1 << 24, &c->max_position));
    QKV_TRY(qkv__json_int(path, root, "n_inner", 0, 4 * c->hidden_size, 1, 1 << 20,
                          &c->intermediate_size));
    if (c->hidden_size % c->num_heads != 0)
        return qkv__fail(QKV_ERR_FORMAT, "%s: n_embd %lld is not a multiple of n_head %lld", path,
                         (long long)c->hidden_size, (long long)c->num_heads);
    c->num_kv_heads = c->num_heads;
    c->head_dim = c->hidden_size / c->num_heads;
    QKV_TRY(cfg_float(path, root, "layer_norm_epsilon", 1e-5, &c->norm_eps));
    const char *a;
    QKV_TRY(qkv__json_str(path, root, "activation_function", "gelu_new", &a));
    if (strcmp(a, "gelu_new") == 0 || strcmp(a, "gelu_pytorch_tanh") == 0)
        c->act = QKV_ACT_GELU_TANH;
    else if (strcmp(a, "gelu") == 0)
        c->act = QKV_ACT_GELU_ERF;
    else if (strcmp(a, "relu") == 0)
        c->act = QKV_ACT_RELU;
    else if (strcmp(a, "silu") == 0 || strcmp(a, "swish") == 0)
        c->act = QKV_ACT_SILU;
    else
        return qkv__fail(QKV_ERR_UNSUPPORTED,
                         "%s: activation_function '%s' is not supported (gelu_new, "
                         "gelu_pytorch_tanh, gelu, relu, silu)",
                         path, a);
    QKV_TRY(cfg_bool_is(path, root, "add_cross_attention", 0, 0));
    int scale;
    QKV_TRY(qkv__json_bool(path, root, "scale_attn_weights", 1, &scale));
    c->attn_scale = scale ? 0.0f : 1.0f;
    QKV_TRY(qkv__json_bool(path, root, "scale_attn_by_inverse_layer_idx", 0, &c->scale_by_layer));
    QKV_TRY(qkv__json_bool(path, root, "tie_word_embeddings", 1, &c->tied));
    return QKV_OK;
}

static qkv_status parse_llama(const char *path, json_t *root, const char *type, qkv_gpt_config *c) {
    c->arch = QKV_GPT_ARCH_LLAMA;
    QKV_TRY(qkv__json_int(path, root, "vocab_size", 1, 0, 1, INT32_MAX, &c->vocab_size));
    QKV_TRY(qkv__json_int(path, root, "hidden_size", 1, 0, 1, 65536, &c->hidden_size));
    QKV_TRY(qkv__json_int(path, root, "num_hidden_layers", 1, 0, 1, 1024, &c->num_layers));
    QKV_TRY(qkv__json_int(path, root, "num_attention_heads", 1, 0, 1, 4096, &c->num_heads));
    QKV_TRY(qkv__json_int(path, root, "num_key_value_heads", 0, c->num_heads, 1, 4096,
                          &c->num_kv_heads));
    QKV_TRY(
        qkv__json_int(path, root, "intermediate_size", 1, 0, 1, 1 << 20, &c->intermediate_size));
    QKV_TRY(qkv__json_int(path, root, "max_position_embeddings", 0, 2048, 1, 1 << 24,
                          &c->max_position));
    if (c->num_heads % c->num_kv_heads != 0)
        return qkv__fail(QKV_ERR_FORMAT,
                         "%s: num_attention_heads %lld is not a multiple of num_key_value_heads "
                         "%lld",
                         path, (long long)c->num_heads, (long long)c->num_kv_heads);
    int64_t hd_def = c->hidden_size % c->num_heads == 0 ? c->hidden_size / c->num_heads : 0;
    QKV_TRY(qkv__json_int(path, root, "head_dim", hd_def == 0, hd_def, 2, 1024, &c->head_dim));
    if (c->head_dim % 2 != 0)
        return qkv__fail(QKV_ERR_UNSUPPORTED, "%s: head_dim %lld is odd (RoPE needs pairs)", path,
                         (long long)c->head_dim);
    QKV_TRY(cfg_float(path, root, "rms_norm_eps", 1e-6, &c->norm_eps));
    const char *act;
    QKV_TRY(qkv__json_str(path, root, "hidden_act", "silu", &act));
    if (strcmp(act, "silu") != 0)
        return qkv__fail(QKV_ERR_UNSUPPORTED, "%s: hidden_act '%s' is not supported (silu)", path,
                         act);
    c->act = QKV_ACT_SILU;
    QKV_TRY(cfg_bool_is(path, root, "attention_bias", 0, 0));
    QKV_TRY(cfg_bool_is(path, root, "mlp_bias", 0, 0));
    int64_t tp;
    QKV_TRY(qkv__json_int(path, root, "pretraining_tp", 0, 1, 1, 1, &tp));
    double prf;
    QKV_TRY(qkv__json_num(path, root, "partial_rotary_factor", 1.0, 0, 1, &prf));
    if (prf != 1.0)
        return qkv__fail(QKV_ERR_UNSUPPORTED, "%s: partial_rotary_factor %g is not supported (1)",
                         path, prf);
    if (strcmp(type, "mistral") == 0) {
        json_t *sw = json_object_get(root, "sliding_window");
        if (sw && !json_is_null(sw))
            return qkv__fail(QKV_ERR_UNSUPPORTED, "%s: sliding_window is not supported (only null)",
                             path);
    }
    /* RoPE: rope_theta at the top (transformers 4) or in rope_parameters (transformers 5);
     * only the plain ("default") rotation: rope_scaling must be null. */
    json_t *rs = json_object_get(root, "rope_scaling");
    if (rs && !json_is_null(rs)) {
        json_t *rt = json_object_get(rs, "rope_type");
        if (!rt) rt = json_object_get(rs, "type");
        if (!json_is_string(rt) || strcmp(json_string_value(rt), "default") != 0)
            return qkv__fail(QKV_ERR_UNSUPPORTED,
                             "%s: rope_scaling is not supported (only null or \"default\")", path);
    }
    QKV_TRY(qkv__json_num(path, root, "rope_theta", 10000.0, 0, 1e30, &c->rope_theta));
    json_t *rp = json_object_get(root, "rope_parameters");
    if (rp && !json_is_null(rp)) {
        json_t *rt = json_object_get(rp, "rope_type");
        if (rt && (!json_is_string(rt) || strcmp(json_string_value(rt), "default") != 0))
            return qkv__fail(QKV_ERR_UNSUPPORTED,
                             "%s: rope_parameters.rope_type '%s' is not supported (default)", path,
                             json_is_string(rt) ? json_string_value(rt) : "?");
        QKV_TRY(qkv__json_num(path, rp, "rope_theta", c->rope_theta, 0, 1e30, &c->rope_theta));
        QKV_TRY(qkv__json_num(path, rp, "partial_rotary_factor", 1.0, 0, 1, &prf));
        if (prf != 1.0)
            return qkv__fail(QKV_ERR_UNSUPPORTED,
                             "%s: rope_parameters.partial_rotary_factor %g is not supported (1)",
                             path, prf);
    }
    if (!(c->rope_theta > 0))
        return qkv__fail(QKV_ERR_FORMAT, "%s: rope_theta must be positive", path);
    QKV_TRY(qkv__json_bool(path, root, "tie_word_embeddings", 0, &c->tied));
    return QKV_OK;
}

static qkv_status parse_config(const char *path, json_t *root, qkv_gpt_config *c) {
    if (!json_is_object(root)) return qkv__fail(QKV_ERR_FORMAT, "%s: not a JSON object", path);
    const char *type;
    QKV_TRY(qkv__json_str(path, root, "model_type", NULL, &type));
    if (!type) return qkv__fail(QKV_ERR_FORMAT, "%s: missing required field 'model_type'", path);
    qkv_status s;
    if (strcmp(type, "gpt2") == 0)
        s = parse_gpt2(path, root, c);
    else if (strcmp(type, "llama") == 0 || strcmp(type, "mistral") == 0)
        s = parse_llama(path, root, type, c);
    else
        return qkv__fail(QKV_ERR_UNSUPPORTED,
                         "%s: model_type '%s' is not a supported decoder (gpt2, llama, mistral)",
                         path, type);
    if (s != QKV_OK) return s;
    int n;
    int32_t bos;
    QKV_TRY(cfg_tokens(path, root, "bos_token_id", c->vocab_size, &bos, 1, &n));
    c->bos_token_id = n ? bos : -1;
    QKV_TRY(
        cfg_tokens(path, root, "eos_token_id", c->vocab_size, c->eos_ids, QKV__MAX_EOS, &c->n_eos));
    c->eos_token_id = c->n_eos ? c->eos_ids[0] : -1;
    return QKV_OK;
}

qkv_status qkv__gpt_config_load(const char *dir, qkv_gpt_config *cfg) {
    char path[4096];
    if (!dir || !cfg) return qkv__fail(QKV_ERR_INVALID_ARG, "gpt config: NULL argument");
    QKV_TRY(qkv__json_config_path(dir, path, sizeof path));
    memset(cfg, 0, sizeof *cfg);
    qkv__json_begin();
    json_t *root;
    qkv_status s = qkv__json_load_file(path, 0, &root);
    if (s == QKV_OK) s = parse_config(path, root, cfg);
    json_decref(root);
    root = NULL;
    /* generation_config.json beside it (a directory only) wins for the stop ids, as in
     * transformers' generate */
    struct stat sb;
    if (s == QKV_OK && stat(dir, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        if (snprintf(path, sizeof path, "%s/generation_config.json", dir) >= (int)sizeof path)
            s = qkv__fail(QKV_ERR_INVALID_ARG, "model directory path is too long");
        else
            s = qkv__json_load_file(path, 1, &root);
        json_t *e = root ? json_object_get(root, "eos_token_id") : NULL;
        if (s == QKV_OK && root && !json_is_object(root))
            s = qkv__fail(QKV_ERR_FORMAT, "%s: not a JSON object", path);
        else if (s == QKV_OK && e && !json_is_null(e)) {
            s = cfg_tokens(path, root, "eos_token_id", cfg->vocab_size, cfg->eos_ids, QKV__MAX_EOS,
                           &cfg->n_eos);
            cfg->eos_token_id = cfg->n_eos ? cfg->eos_ids[0] : -1;
        }
        json_decref(root);
    }
    qkv__json_end();
    return s;
}

/* ---------------------------------------------------------------- weights */

typedef struct {
    qkv_gpt *m;
    const char *path;
    const char *prefix; /* "", "transformer." or "model." */
} loader;

/* The tensor prefix+name as F32 with exactly the given shape (d1 == 0: 1-D). */
static qkv_status get(loader *L, const char *prefix, const char *name, int64_t d0, int64_t d1,
                      const float **out) {
    char full[256];
    snprintf(full, sizeof full, "%s%s", prefix, name);
    return qkv__weight_f32(L->m->st, L->path, full, d0, d1, &L->m->owned, out);
}

/* Every tensor of the architecture's parameter table (models/params.h) into its field: the
 * table's rows and `fields` list the same tensors in the same order. */
static qkv_status load_table(loader *L, const qkv__param_table *tab) {
    qkv_gpt *m = L->m;
    const qkv_gpt_config *c = &m->cfg;
    const qkv__dims dims = {.V = c->vocab_size,
                            .P = c->max_position,
                            .C = c->hidden_size,
                            .F = c->intermediate_size,
                            .Q = c->num_heads * c->head_dim,
                            .K = c->num_kv_heads * c->head_dim};
    const int gpt2 = tab == &qkv__params_gpt2; /* else Llama */
    const float **pre[2] = {&m->wte, &m->wpe}, **post[2] = {&m->lnf_w, &m->lnf_b};
    char name[256];
    for (int64_t l = -1; l <= c->num_layers; l++) {
        const qkv__param_spec *rows = l < 0                ? tab->pre
                                      : l == c->num_layers ? tab->post
                                                           : tab->layer;
        int n = l < 0 ? tab->n_pre : l == c->num_layers ? tab->n_post : tab->n_layer;
        const float **fields[12];
        if (n > 12) return qkv__fail(QKV_ERR_INTERNAL, "gpt: parameter table of %s", tab->arch);
        if (l >= 0 && l < c->num_layers) {
            qkv_gpt_layer *y = &m->layers[l];
            const float **g2[12] = {&y->ln1_w, &y->ln1_b, &y->w_qkv,  &y->b_qkv,
                                    &y->wo,    &y->bo,    &y->ln2_w,  &y->ln2_b,
                                    &y->w_fc,  &y->b_fc,  &y->w_proj, &y->b_proj};
            const float **ll[9] = {&y->wq,   &y->wk,     &y->wv,    &y->wo,   &y->w_gate,
                                   &y->w_up, &y->w_down, &y->ln1_w, &y->ln2_w};
            memcpy(fields, gpt2 ? g2 : ll, (size_t)n * sizeof *fields);
        } else {
            memcpy(fields, l < 0 ? pre : post, (size_t)n * sizeof *fields);
        }
        for (int i = 0; i < n; i++) {
            const qkv__param_spec *r = &rows[i];
            QKV_TRY(qkv__param_name(name, sizeof name, L->prefix, &r[0], l));
            int64_t d1 = r->d1 == QKV__DIM_NONE ? 0 : qkv__param_dim(r->d1, &dims);
            QKV_TRY(qkv__weight_f32(m->st, L->path, name, qkv__param_dim(r->d0, &dims), d1,
                                    &m->owned, fields[i]));
        }
    }
    return QKV_OK;
}

static qkv_status load_weights(loader *L) {
    qkv_gpt *m = L->m;
    const qkv_gpt_config *c = &m->cfg;
    const qkv__param_table *tab =
        c->arch == QKV_GPT_ARCH_GPT2 ? &qkv__params_gpt2 : &qkv__params_llama;
    char probe[128]; /* the token embedding's full name tells whether the prefix is there */
    snprintf(probe, sizeof probe, "%s%s", tab->prefix, tab->pre[0].name);
    L->prefix = qkv_safetensors_find(m->st, probe) ? tab->prefix : "";
    m->layers = qkv__calloc((size_t)c->num_layers, sizeof *m->layers);
    if (!m->layers) return qkv__fail(QKV_ERR_NOMEM, "gpt: out of memory");
    QKV_TRY(load_table(L, tab));
    if (c->tied)
        m->lm_head = m->wte;
    else
        QKV_TRY(get(L, "", tab->head[0].name, c->vocab_size, c->hidden_size, &m->lm_head));
    return QKV_OK;
}

/* Gives back the mapped pages of a packed [d0, d1] original (no-op for converted copies). */
static void drop(const qkv_gpt *m, const float *w, int64_t d0, int64_t d1) {
    qkv__safetensors_drop_pages(m->st, w, (size_t)d0 * (size_t)d1 * sizeof(float));
}

/* The separate q, k, v (and Llama's gate, up) of every layer, packed from the originals (still
 * mapped, or converted copies), and the fused products dropped: what a LoRA adapter, which
 * attaches to each projection, needs (qkv__gpt_load_lora). */
qkv_status qkv__gpt_unfuse(qkv_gpt *m) {
    const qkv_gpt_config *c = &m->cfg;
    const int64_t C = c->hidden_size, F = c->intermediate_size;
    const int64_t Q = c->num_heads * c->head_dim, K = c->num_kv_heads * c->head_dim;
    qkv_packed_set *ps = &m->packed;
    for (int64_t l = 0; l < c->num_layers; l++) {
        qkv_gpt_layer *y = &m->layers[l];
        qkv__dec_layer *b = &y->blk;
        if (!b->qkv.C) continue;
        if (c->arch == QKV_GPT_ARCH_GPT2) { /* Conv1D [in, out]: column slices of c_attn */
            for (int i = 0; i < 3; i++)
                QKV_TRY(qkv__packed_linear(ps, 0, C, C, y->w_qkv + i * C, 3 * C, y->b_qkv + i * C,
                                           i == 0   ? &b->q
                                           : i == 1 ? &b->k
                                                    : &b->v));
            drop(m, y->w_qkv, C, 3 * C);
        } else {
            QKV_TRY(qkv__packed_linear(ps, 1, C, Q, y->wq, C, NULL, &b->q));
            QKV_TRY(qkv__packed_linear(ps, 1, C, K, y->wk, C, NULL, &b->k));
            QKV_TRY(qkv__packed_linear(ps, 1, C, K, y->wv, C, NULL, &b->v));
            QKV_TRY(qkv__packed_linear(ps, 1, C, F, y->w_gate, C, NULL, &b->gate));
            QKV_TRY(qkv__packed_linear(ps, 1, C, F, y->w_up, C, NULL, &b->fc));
            drop(m, y->wq, Q, C);
            drop(m, y->wk, K, C);
            drop(m, y->wv, K, C);
            drop(m, y->w_gate, F, C);
            drop(m, y->w_up, F, C);
            b->gate_up = (qkv_nn_linear){0};
        }
        b->qkv = (qkv_nn_linear){0};
    }
    return QKV_OK;
}

/* rows [n0, n0 + n) of *dst (ld C) = src [n, C] */
static void put_rows(float *dst, int64_t n0, const float *src, int64_t n, int64_t C) {
    memcpy(dst + n0 * C, src, sizeof(float) * (size_t)(n * C));
}

/* Every matrix packed once in the model's dtype (the forward uses only these; the mapped
 * originals' pages are given back): op(W) [K, N], trans 1 for nn.Linear's W [N, K] (Llama,
 * the head), 0 for GPT-2's Conv1D W [K, ldw]. q, k, v are one product (GPT-2's c_attn as it is
 * stored; Llama's three matrices stacked in a temporary copy), and so are Llama's gate and up
 * (block.h: the same bits as separate products, one pass over the input and one parallel region
 * instead of three or two); qkv__gpt_unfuse undoes it for LoRA. */
static qkv_status pack_weights(qkv_gpt *m, qkv_dtype dtype) {
    const qkv_gpt_config *c = &m->cfg;
    const int64_t C = c->hidden_size, F = c->intermediate_size;
    const int64_t Q = c->num_heads * c->head_dim, K = c->num_kv_heads * c->head_dim;
    qkv_packed_set *ps = &m->packed;
    /* fused: 4 a layer; qkv__gpt_unfuse adds up to 5 */
    QKV_TRY(qkv__packed_set_init(ps, dtype, 9 * c->num_layers + 1, "gpt"));
    float *stack = NULL; /* Llama: [Q + 2K, C] or [2F, C] */
    if (c->arch == QKV_GPT_ARCH_LLAMA) {
        const int64_t rows = Q + 2 * K > 2 * F ? Q + 2 * K : 2 * F;
        if (!(stack = qkv__alloc(sizeof(float) * (size_t)(rows * C))))
            return qkv__fail(QKV_ERR_NOMEM, "gpt: out of memory stacking q, k, v");
    }
    qkv_status s = QKV_OK;
    for (int64_t l = 0; s == QKV_OK && l < c->num_layers; l++) {
        qkv_gpt_layer *y = &m->layers[l];
        qkv__dec_layer *b = &y->blk;
        *b = (qkv__dec_layer){
            .ln1_w = y->ln1_w, .ln1_b = y->ln1_b, .ln2_w = y->ln2_w, .ln2_b = y->ln2_b};
        if (c->arch == QKV_GPT_ARCH_GPT2) { /* Conv1D [in, out] */
            s = qkv__packed_linear(ps, 0, C, 3 * C, y->w_qkv, 3 * C, y->b_qkv, &b->qkv);
            if (s == QKV_OK) s = qkv__packed_linear(ps, 0, C, C, y->wo, C, y->bo, &b->o);
            if (s == QKV_OK) s = qkv__packed_linear(ps, 0, C, F, y->w_fc, F, y->b_fc, &b->fc);
            if (s == QKV_OK) s = qkv__packed_linear(ps, 0, F, C, y->w_proj, C, y->b_proj, &b->proj);
            drop(m, y->w_qkv, C, 3 * C);
            drop(m, y->wo, C, C);
            drop(m, y->w_fc, C, F);
            drop(m, y->w_proj, F, C);
        } else { /* nn.Linear [out, in] */
            put_rows(stack, 0, y->wq, Q, C);
            put_rows(stack, Q, y->wk, K, C);
            put_rows(stack, Q + K, y->wv, K, C);
            s = qkv__packed_linear(ps, 1, C, Q + 2 * K, stack, C, NULL, &b->qkv);
            put_rows(stack, 0, y->w_gate, F, C);
            put_rows(stack, F, y->w_up, F, C);
            if (s == QKV_OK) s = qkv__packed_linear(ps, 1, C, 2 * F, stack, C, NULL, &b->gate_up);
            if (s == QKV_OK) s = qkv__packed_linear(ps, 1, Q, C, y->wo, Q, NULL, &b->o);
            if (s == QKV_OK) s = qkv__packed_linear(ps, 1, F, C, y->w_down, F, NULL, &b->proj);
            drop(m, y->wq, Q, C);
            drop(m, y->wk, K, C);
            drop(m, y->wv, K, C);
            drop(m, y->wo, C, Q);
            drop(m, y->w_gate, F, C);
            drop(m, y->w_up, F, C);
            drop(m, y->w_down, C, F);
        }
    }
    qkv__free(stack);
    QKV_TRY(s);
    QKV_TRY(qkv__packed_linear(ps, 1, C, c->vocab_size, m->lm_head, C, NULL, &m->head));
    /* tied: the embedding lookups fault back in only the rows they read */
    drop(m, m->lm_head, c->vocab_size, C);
    return QKV_OK;
}

qkv_status qkv__gpt_load(const char *dir, qkv_dtype dtype, qkv_gpt **out) {
    if (!dir || !out) return qkv__fail(QKV_ERR_INVALID_ARG, "qkv__gpt_load: NULL argument");
    *out = NULL;
    qkv_gpt *m = qkv__calloc(1, sizeof *m);
    if (!m) return qkv__fail(QKV_ERR_NOMEM, "gpt: out of memory");
    qkv_status s = qkv__gpt_config_load(dir, &m->cfg);
    char path[4096];
    if (s == QKV_OK && snprintf(path, sizeof path, "%s/model.safetensors", dir) >= (int)sizeof path)
        s = qkv__fail(QKV_ERR_INVALID_ARG, "model directory path is too long");
    if (s == QKV_OK) s = qkv_safetensors_open(path, &m->st);
    if (s == QKV_OK) {
        loader L = {m, path, ""};
        s = load_weights(&L);
    }
    if (s == QKV_OK) s = pack_weights(m, dtype);
    if (s != QKV_OK) {
        qkv__gpt_free(m);
        return s;
    }
    *out = m;
    return QKV_OK;
}

void qkv__gpt_free(qkv_gpt *m) {
    if (!m) return;
    qkv__lora_release(m->lora, m->lora_slot);
    qkv__owned_weights_free(&m->owned);
    qkv__packed_set_free(&m->packed);
    qkv__free(m->layers);
    qkv_safetensors_close(m->st);
    qkv__free(m);
}

/* ---------------------------------------------------------------- forward */

/* The final norm: LayerNorm (GPT-2) or RMSNorm (Llama). */
static qkv_status norm(qkv_runtime *rt, const qkv_gpt *m, float *out, const float *in,
                       const float *w, const float *b, int64_t N) {
    const qkv_gpt_config *c = &m->cfg;
    if (c->arch == QKV_GPT_ARCH_GPT2)
        return qkv_nn_layernorm_forward(rt, out, NULL, NULL, in, w, b, N, c->hidden_size,
                                        c->norm_eps);
    return qkv_nn_rmsnorm_forward(rt, out, NULL, in, w, N, c->hidden_size, c->norm_eps);
}

typedef struct {
    const qkv_gpt *m;
    qkv_kv_cache *const *caches;
    const int64_t *lens, *offs; /* [n_seq] */
    int64_t n_seq;
    const float *q;       /* [N, Hq D] */
    float *att;           /* [N, Hq D] */
    float *probs;         /* NULL, or every sequence's [L, Hq, T, Tk] back to back */
    const int64_t *poffs; /* [n_seq] where sequence s starts in probs */
    int64_t layer;
} attn_job;

/* Sequence s's new queries against its cache (already holding the new keys). */
static qkv_status attend_one(qkv_runtime *rt, const void *ctx, int64_t s) {
    const attn_job *j = ctx;
    const qkv_gpt_config *c = &j->m->cfg;
    const qkv_kv_cache *kv = j->caches[s];
    qkv_attention_desc d;
    memset(&d, 0, sizeof d);
    d.batch = 1;
    d.q_len = j->lens[s];
    d.kv_len = kv->len + j->lens[s];
    d.n_heads = c->num_heads;
    d.n_kv_heads = c->num_kv_heads;
    d.head_dim = c->head_dim;
    d.scale = c->attn_scale;
    if (c->scale_by_layer)
        d.scale = (c->attn_scale ? c->attn_scale : 1.0f / sqrtf((float)c->head_dim)) /
                  (float)(j->layer + 1);
    d.causal = 1;
    d.window_left = d.window_right = -1;
    int64_t o = j->offs[s] * c->num_heads * c->head_dim;
    const float *k = qkv__kv_cache_k(kv, j->layer);
    QKV_TRY(qkv_attention_forward(rt, &d, j->q + o, k, qkv__kv_cache_v(kv, j->layer), j->att + o,
                                  NULL));
    if (!j->probs) return QKV_OK;
    /* the same (rotated) q, cached k and descriptor: this layer's probabilities [Hq, T, Tk] */
    return qkv_attention_probs(
        rt, &d, j->q + o, k, j->probs + j->poffs[s] + j->layer * c->num_heads * d.q_len * d.kv_len);
}

static qkv_status check_args(const qkv_gpt *m, qkv_kv_cache *const *caches, const int32_t *ids,
                             const int64_t *lens, int64_t n_seq, float *logits, int64_t *N) {
    if (!m || !caches || !ids || !lens || !logits || n_seq <= 0)
        return qkv__fail(QKV_ERR_INVALID_ARG, "gpt forward: NULL argument or no sequence");
    const qkv_gpt_config *c = &m->cfg;
    int64_t n = 0;
    for (int64_t s = 0; s < n_seq; s++) {
        const qkv_kv_cache *kv = caches[s];
        if (!kv || kv->n_layers != c->num_layers || kv->n_kv_heads != c->num_kv_heads ||
            kv->head_dim != c->head_dim)
            return qkv__fail(QKV_ERR_INVALID_ARG,
                             "gpt forward: the cache of sequence %lld does not fit this model",
                             (long long)s);
        if (lens[s] < 1 || lens[s] > kv->cap - kv->len)
            return qkv__fail(QKV_ERR_INVALID_ARG,
                             "gpt forward: sequence %lld adds %lld tokens to a cache holding "
                             "%lld of %lld",
                             (long long)s, (long long)lens[s], (long long)kv->len,
                             (long long)kv->cap);
        if (c->arch == QKV_GPT_ARCH_GPT2 && kv->len + lens[s] > c->max_position)
            return qkv__fail(QKV_ERR_INVALID_ARG,
                             "gpt forward: sequence %lld reaches position %lld, past n_positions "
                             "%lld",
                             (long long)s, (long long)(kv->len + lens[s]),
                             (long long)c->max_position);
        n += lens[s];
    }
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab_size)
            return qkv__fail(QKV_ERR_INVALID_ARG,
                             "gpt forward: token id %d at %lld is outside the vocabulary [0, %lld)",
                             ids[i], (long long)i, (long long)c->vocab_size);
    *N = n;
    return QKV_OK;
}

/* RoPE at each sequence's positions (Llama) and the new keys/values appended to the caches
 * (the first half of attend_caches). */
static qkv_status append_caches(attn_job *job, qkv_runtime *rt, int64_t l,
                                const qkv__block_acts *a) {
    const qkv_gpt_config *c = &job->m->cfg;
    const int64_t D = c->head_dim, Q = c->num_heads * D, K = c->num_kv_heads * D;
    for (int64_t s = 0; s < job->n_seq; s++) {
        qkv_kv_cache *kv = job->caches[s];
        const int64_t o = job->offs[s], T = job->lens[s];
        if (c->arch == QKV_GPT_ARCH_LLAMA) {
            qkv_nn_rope rope = {QKV_NN_ROPE_HALF, c->rope_theta, 0};
            QKV_TRY(qkv_nn_rope_forward(rt, a->q + o * Q, a->q + o * Q, &rope, 1, T, c->num_heads,
                                        D, kv->len));
            QKV_TRY(qkv_nn_rope_forward(rt, a->k + o * K, a->k + o * K, &rope, 1, T,
                                        c->num_kv_heads, D, kv->len));
        }
        /* the new keys/values [T, Hk, D] go to rows len.. of the cache */
        memcpy(qkv__kv_cache_k(kv, l) + kv->len * K, a->k + o * K, sizeof(float) * (size_t)(T * K));
        memcpy(qkv__kv_cache_v(kv, l) + kv->len * K, a->v + o * K, sizeof(float) * (size_t)(T * K));
    }
    job->layer = l;
    job->q = a->q;
    job->att = a->att;
    return QKV_OK;
}

/* The attention of layer l (block.h's qkv__attend_fn): RoPE at each sequence's positions
 * (Llama), the new keys/values appended to the caches, then each sequence's queries against its
 * cache. */
static qkv_status attend_caches(void *ctx, qkv_runtime *rt, int64_t l, const qkv__block_acts *a) {
    attn_job *job = ctx;
    QKV_TRY(append_caches(job, rt, l, a));
    /* Many sequences (batched decode): one per thread, each attention call serial inside.
     * Few: one at a time, each parallel inside. */
    return qkv__each(rt, job->n_seq, attend_one, job);
}

/* The rows the head reads: x [N, C] itself with all_logits, else each sequence's last new token
 * copied into last [n_seq, C]. */
static const float *last_rows(const attn_job *job, const float *x, float *last, int all_logits,
                              int64_t C) {
    if (all_logits) return x;
    for (int64_t s = 0; s < job->n_seq; s++)
        memcpy(last + s * C, x + (job->offs[s] + job->lens[s] - 1) * C, sizeof(float) * (size_t)C);
    return last;
}

/* ---------------------------------------------------------------- a decode step in one region
 *
 * A decode step (one new token per sequence) is ~5 small products a layer, each a pool job of
 * its own: a fork and a join, the pool's mutex and condition variable each time (perf: 5.5% of
 * a GPT-2-124M f16 step in fork/join). Here the whole step (every layer, the final norm, the
 * head) runs inside ONE team (core/runtime.h): every thread walks the same stages. Each product
 * splits its column panels exactly as its own job would (the same chunks: the same bits) and
 * ends at a barrier; the one-row norms and Llama's SwiGLU run on every thread into its own
 * buffers (the same code on the same input: the same bits, no barrier); thread 0 alone splits
 * q/k/v, applies RoPE and appends to the caches, then a barrier; then every thread makes the
 * attention's calls (qkv__each) and they split over the team as their own jobs would: with
 * many sequences one sequence per thread, with few each sequence's heads and key ranges
 * (attention/flash_fwd.c, its partials in the team's shared block). Per layer with one sequence:
 * 6 barriers, 7 once its keys split, where the layer-by-layer step forks and joins 4 jobs (6).
 * Layers with an adapter or unfused products, attention maps (probs), prefill and
 * QKV_DECODE_REGION=0 keep the layer-by-layer path. */

typedef struct {
    qkv_runtime *rt;
    const qkv_gpt *m;
    attn_job *job;
    const qkv__block_acts *a; /* the shared buffers: q, k, v, att, fused, a (GPT-2's MLP) */
    float *x, *logits;        /* the residual stream [N, C]; logits [R, V] */
    float *priv;              /* per thread: ln, last [N, C]; Llama: gate, up [N, F] */
    size_t priv_floats;
    int64_t N, R;
    int all_logits;
} step_job;

/* x [N, C] -> out: the decoder's pre-norm of a layer (or the final one), as the block runs it. */
static qkv_status step_norm(const step_job *j, float *out, const float *in, const float *w,
                            const float *b, int64_t N) {
    void *tok = qkv__team_solo_begin(); /* every thread, into its own buffer */
    qkv_status st = norm(j->rt, j->m, out, in, w, b, N);
    qkv__team_solo_end(tok);
    return st;
}

static qkv_status step_thread(void *ctx, int tid, int n_threads) {
    (void)n_threads;
    const step_job *j = ctx;
    const qkv_gpt_config *c = &j->m->cfg;
    const qkv__block_acts *a = j->a;
    qkv_runtime *rt = j->rt;
    const int64_t N = j->N, C = c->hidden_size, F = c->intermediate_size;
    const int64_t Q = c->num_heads * c->head_dim, K = c->num_kv_heads * c->head_dim;
    const int llama = c->arch == QKV_GPT_ARCH_LLAMA;
    float *ln = j->priv + (size_t)tid * j->priv_floats, *last = ln + N * C;
    float *gate = last + N * C, *up = gate + N * F;
    float *x = j->x;
    for (int64_t l = 0; l < c->num_layers; l++) {
        const qkv__dec_layer *w = &j->m->layers[l].blk;
        QKV_TRY(step_norm(j, ln, x, w->ln1_w, w->ln1_b, N));
        QKV_TRY(qkv_nn_linear_forward(rt, &w->qkv, a->fused, ln, N, QKV_ACT_NONE, NULL));
        if (tid == 0) {
            void *tok = qkv__team_solo_begin();
            qkv__split_rows(a->fused, N, Q, K, K, a->q, a->k, a->v);
            qkv_status st = append_caches(j->job, rt, l, a);
            qkv__team_solo_end(tok);
            QKV_TRY(st);
        }
        qkv__team_barrier();
        QKV_TRY(qkv__each(rt, j->job->n_seq, attend_one, j->job)); /* split, barriers */
        QKV_TRY(qkv_nn_linear_forward(rt, &w->o, x, a->att, N, QKV_ACT_NONE, x));
        QKV_TRY(step_norm(j, ln, x, w->ln2_w, w->ln2_b, N));
        const float *in = a->a;
        if (llama) {
            QKV_TRY(qkv_nn_linear_forward(rt, &w->gate_up, a->fused, ln, N, QKV_ACT_NONE, NULL));
            void *tok = qkv__team_solo_begin(); /* every thread, into its own buffers */
            qkv__split_rows(a->fused, N, F, F, 0, gate, up, NULL);
            qkv_status st = qkv_nn_swiglu_forward(rt, gate, gate, up, N * F);
            qkv__team_solo_end(tok);
            QKV_TRY(st);
            in = gate;
        } else {
            QKV_TRY(qkv_nn_linear_forward(rt, &w->fc, a->a, ln, N, c->act, NULL));
        }
        QKV_TRY(qkv_nn_linear_forward(rt, &w->proj, x, in, N, QKV_ACT_NONE, x));
    }
    const float *rows = last_rows(j->job, x, last, j->all_logits, C);
    QKV_TRY(step_norm(j, ln, rows, j->m->lnf_w, j->m->lnf_b, j->R));
    return qkv_nn_linear_forward(rt, &j->m->head, j->logits, ln, j->R, QKV_ACT_NONE, NULL);
}

/* The step can run as one region: fused products, no adapter (the switch: env
 * QKV_DECODE_REGION=0 turns it off; =1, the default, is accepted). No cache-length bound: the
 * attention splits over the team as its own job would (see above). Measured on 2 threads,
 * GPT-2-124M and Llama-125M, f16 and int8, 4-528 cached tokens (docs/PERFORMANCE.md, "The
 * decode region at every cache length"). With another job on the machine, the region was
 * 1.08-1.39x the layer-by-layer step (medians of ABBA pairs). At lighter load, near quiet
 * speeds (GPT-2), the two tied: medians 0.97-1.04x. Before the split, thread 0 ran the attention
 * alone and a bound kept long caches out: attention at most 1/64 of the layer's products, ~70
 * cached tokens. Past it the region measured 0.8-0.9x at 128-192 cached tokens. */
static int region_fits(const qkv_gpt *m) {
    const char *env = getenv("QKV_DECODE_REGION");
    if (env && strcmp(env, "0") == 0) return 0;
    if (m->lora || m->head.lora) return 0;
    for (int64_t l = 0; l < m->cfg.num_layers; l++) {
        const qkv__dec_layer *w = &m->layers[l].blk;
        const int llama = m->cfg.arch == QKV_GPT_ARCH_LLAMA;
        if (!w->qkv.C || (llama && !w->gate_up.C) || w->qkv.lora || w->o.lora || w->proj.lora ||
            (llama ? w->gate_up.lora : w->fc.lora))
            return 0;
    }
    return 1;
}

/* The layers, final norm and head of a decode step in one region (see above). */
static qkv_status decode_region(qkv_runtime *rt, const qkv_gpt *m, attn_job *job,
                                const qkv__block_acts *a, float *x, int64_t N, int64_t R,
                                int all_logits, float *logits) {
    const qkv_gpt_config *c = &m->cfg;
    const int64_t C = c->hidden_size, F = c->intermediate_size;
    const int T = qkv_runtime_n_threads(rt);
    size_t per = (size_t)(2 * N * C + (c->arch == QKV_GPT_ARCH_LLAMA ? 2 * N * F : 0)), total;
    if (qkv__mul_overflow(per, (size_t)T, &total) ||
        qkv__mul_overflow(total, sizeof(float), &total))
        return qkv__fail(QKV_ERR_OVERFLOW, "gpt decode: per-thread buffer size overflows");
    float *priv = qkv__alloc(total);
    if (!priv) return qkv__fail(QKV_ERR_NOMEM, "gpt decode: cannot allocate %zu bytes", total);
    step_job j = {.rt = rt,
                  .m = m,
                  .job = job,
                  .a = a,
                  .x = x,
                  .logits = logits,
                  .priv = priv,
                  .priv_floats = per,
                  .N = N,
                  .R = R,
                  .all_logits = all_logits};
    qkv_status st = qkv__team_run(rt, step_thread, &j);
    qkv__free(priv);
    return st;
}

qkv_status qkv__gpt_forward(qkv_runtime *rt, const qkv_gpt *m, qkv_kv_cache *const *caches,
                            const int32_t *ids, const int64_t *lens, int64_t n_seq, int all_logits,
                            float *logits) {
    return qkv__gpt_forward_probs(rt, m, caches, ids, lens, n_seq, all_logits, logits, NULL);
}

qkv_status qkv__gpt_forward_probs(qkv_runtime *rt, const qkv_gpt *m, qkv_kv_cache *const *caches,
                                  const int32_t *ids, const int64_t *lens, int64_t n_seq,
                                  int all_logits, float *logits, float *probs) {
    int64_t N = 0;
    QKV_TRY(check_args(m, caches, ids, lens, n_seq, logits, &N));
    const qkv_gpt_config *c = &m->cfg;
    const int64_t C = c->hidden_size, F = c->intermediate_size, V = c->vocab_size;
    const int64_t Q = c->num_heads * c->head_dim, K = c->num_kv_heads * c->head_dim;
    const int64_t R = all_logits ? N : n_seq; /* rows of logits */
    /* workspace: offs, poffs [n_seq] (int64); x, h [N, C]; q, att [N, Q]; k, v [N, K];
     * f1, f2 [N, F]; fused [N, FW] (block.h); last [R, C] */
    const int64_t FW = c->arch == QKV_GPT_ARCH_LLAMA && 2 * F > Q + 2 * K ? 2 * F : Q + 2 * K;
    size_t per_row =
        (size_t)(2 * C + 2 * Q + 2 * K + (c->arch == QKV_GPT_ARCH_LLAMA ? 2 : 1) * F + FW);
    size_t nfl;
    if (qkv__mul_overflow((size_t)N, per_row, &nfl) ||
        qkv__add_overflow(nfl, (size_t)R * (size_t)C + (size_t)n_seq * 4, &nfl) ||
        qkv__mul_overflow(nfl, sizeof(float), &nfl))
        return qkv__fail(QKV_ERR_OVERFLOW, "gpt forward: workspace size overflows");
    float *ws = qkv__alloc(nfl);
    if (!ws) return qkv__fail(QKV_ERR_NOMEM, "gpt forward: cannot allocate %zu bytes", nfl);
    int64_t *offs = (int64_t *)ws, *poffs = offs + n_seq; /* first: 8-byte aligned */
    float *x = ws + 4 * n_seq, *h = x + N * C, *q = h + N * C, *att = q + N * Q, *k = att + N * Q;
    float *v = k + N * K, *f1 = v + N * K;
    float *f2 = c->arch == QKV_GPT_ARCH_LLAMA ? f1 + N * F : f1;
    float *fused = f2 + N * F, *last = fused + N * FW; /* [N, FW], [R, C] */
    qkv_status st;

    /* embeddings: token (+ learned position, continuing from each cache's length) */
    for (int64_t s = 0, n = 0, p = 0; s < n_seq; n += lens[s], s++) {
        offs[s] = n;
        poffs[s] = p; /* the caller checked that Σ L·Hq·T·Tk fits */
        p += c->num_layers * c->num_heads * lens[s] * (caches[s]->len + lens[s]);
    }
    st = qkv_nn_embedding_forward(rt, x, ids, m->wte, N, V, C);
    for (int64_t s = 0; st == QKV_OK && m->wpe && s < n_seq; s++)
        st = qkv_nn_position_add_forward(rt, x + offs[s] * C, x + offs[s] * C, m->wpe, 1, lens[s],
                                         C, c->max_position, caches[s]->len);
    attn_job job = {.m = m,
                    .caches = caches,
                    .lens = lens,
                    .offs = offs,
                    .n_seq = n_seq,
                    .probs = probs,
                    .poffs = poffs};
    /* one scratch set for every block; the residual stream x is updated in place */
    const int llama = c->arch == QKV_GPT_ARCH_LLAMA;
    const qkv__block_acts a = {.ln1 = h,
                               .q = q,
                               .k = k,
                               .v = v,
                               .att = att,
                               .res2 = x,
                               .ln2 = h,
                               .h = llama ? f1 : NULL,
                               .u = llama ? f2 : NULL,
                               .a = f1,
                               .fused = fused};
    const qkv__dec_cfg dc = {llama, C, F, Q, K, c->norm_eps, c->act};
    /* a decode step (one new token per sequence): one region (see decode_region) */
    const int region = st == QKV_OK && !probs && N == n_seq && region_fits(m);
    if (region) st = decode_region(rt, m, &job, &a, x, N, R, all_logits, logits);
    for (int64_t l = 0; !region && st == QKV_OK && l < c->num_layers; l++)
        st =
            qkv__dec_block_forward(rt, &dc, &m->layers[l].blk, l, &a, x, x, N, attend_caches, &job);
    if (!region && st == QKV_OK)
        st = norm(rt, m, h, last_rows(&job, x, last, all_logits, C), m->lnf_w, m->lnf_b, R);
    if (!region && st == QKV_OK)
        st = qkv_nn_linear_forward(rt, &m->head, logits, h, R, QKV_ACT_NONE, NULL);
    if (st == QKV_OK)
        for (int64_t s = 0; s < n_seq; s++) caches[s]->len += lens[s];
    qkv__free(ws);
    return st;
}
