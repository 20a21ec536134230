/* t5.c — loading a Hugging Face T5 / T5 v1.1 directory and running its encoder and one decoder
 * step (see t5.h). The tensors are the rows of qkv__params_t5 (models/params.c), walked here in
 * order; the forward is a list of layer calls (src/nn: RMSNorm, packed linears with the
 * residual add in their epilogue, attention with an additive bias and scale 1). What is T5's
 * own is the relative position bias: precomputed once per model as one row per relative
 * position (enc_bias, dec_bias), so a decoder step's bias is a pointer into dec_bias and the
 * encoder's is spread to (H, T, T) per source. */
#include "models/t5.h"

#include "core/alloc.h"
#include "core/error.h"
#include "core/runtime.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "models/params.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---------------------------------------------------------------- buckets */

int32_t qkv__t5_bucket(int64_t rel, int bidirectional, int64_t nb, int64_t md) {
    int64_t b = 0;
    if (bidirectional) {
        nb /= 2;
        if (rel > 0) b = nb;
        rel = rel < 0 ? -rel : rel;
    } else {
        rel = rel < 0 ? -rel : 0;
    }
    const int64_t me = nb / 2; /* exact buckets below this distance */
    if (rel < me) return (int32_t)(b + rel);
    /* as torch: float32 log of rel/me, divided by log(md/me) and scaled, truncated */
    float x = logf((float)rel / (float)me) / (float)log((double)md / (double)me) * (float)(nb - me);
    if (!(x < (float)nb)) x = (float)nb;
    int64_t big = me + (int64_t)x;
    return (int32_t)(b + (big < nb - 1 ? big : nb - 1));
}

/* ---------------------------------------------------------------- config */

/* feed_forward_proj: "[gated-]act", as T5Config splits it ("gated-gelu" means gelu_new) */
static qkv_status parse_ff(const char *path, json_t *o, qkv_t5_config *c) {
    json_t *v = json_object_get(o, "feed_forward_proj");
    const char *f = json_is_string(v) ? json_string_value(v) : "relu";
    if (v && !json_is_null(v) && !json_is_string(v))
        return qkv__fail(QKV_ERR_FORMAT, "%s: field 'feed_forward_proj' must be a string", path);
    c->gated = strncmp(f, "gated-", 6) == 0;
    const char *a = c->gated ? f + 6 : f;
    static const struct {
        const char *name;
        qkv_act act;
    } acts[] = {{"relu", QKV_ACT_RELU},          {"gelu", QKV_ACT_GELU_ERF},
                {"gelu_new", QKV_ACT_GELU_TANH}, {"gelu_pytorch_tanh", QKV_ACT_GELU_TANH},
                {"silu", QKV_ACT_SILU},          {"swish", QKV_ACT_SILU}};
    c->act = QKV_ACT_NONE;
    for (size_t i = 0; i < sizeof acts / sizeof *acts; i++)
        if (strcmp(a, acts[i].name) == 0) c->act = acts[i].act;
    if (strcmp(f, "gated-gelu") == 0) c->act = QKV_ACT_GELU_TANH; /* transformers' mapping */
    if (c->act == QKV_ACT_NONE)
        return qkv__fail(QKV_ERR_UNSUPPORTED,
                         "%s: feed_forward_proj '%s' is not supported ([gated-]relu, gelu, "
                         "gelu_new, silu)",
                         path, f);
    return QKV_OK;
}

/* The prefix of the first "translation*" entry of task_specific_params that has one. */
static qkv_status parse_prefix(const char *path, json_t *o, qkv_t5_config *c) {
    json_t *tp = json_object_get(o, "task_specific_params"), *task;
    const char *key, *prefix = "";
    if (tp && !json_is_null(tp) && !json_is_object(tp))
        return qkv__fail(QKV_ERR_FORMAT, "%s: task_specific_params must be an object", path);
    if (json_is_object(tp)) {
        json_object_foreach(tp, key, task) {
            json_t *p = json_object_get(task, "prefix");
            if (strncmp(key, "translation", 11) == 0 && json_is_string(p)) {
                prefix = json_string_value(p);
                break;
            }
        }
    }
    size_t n = strlen(prefix);
    c->prefix = qkv__alloc(n + 1);
    if (!c->prefix) return qkv__fail(QKV_ERR_NOMEM, "%s: out of memory", path);
    memcpy(c->prefix, prefix, n + 1);
    return QKV_OK;
}

static qkv_status parse_config(const char *path, json_t *o, qkv_t5_config *c) {
    if (!json_is_object(o)) return qkv__fail(QKV_ERR_FORMAT, "%s: not a JSON object", path);
    json_t *mt = json_object_get(o, "model_type");
    if (!json_is_string(mt) || strcmp(json_string_value(mt), "t5") != 0)
        return qkv__fail(QKV_ERR_UNSUPPORTED, "%s: model_type is not t5", path);
    QKV_TRY(qkv__s2s_get_int(path, o, "vocab_size", 32128, 0, 2, INT32_MAX, &c->V));
    QKV_TRY(qkv__s2s_get_int(path, o, "d_model", 512, 0, 1, 65536, &c->C));
    QKV_TRY(qkv__s2s_get_int(path, o, "d_kv", 64, 0, 1, 65536, &c->D));
    QKV_TRY(qkv__s2s_get_int(path, o, "num_heads", 8, 0, 1, 4096, &c->H));
    QKV_TRY(qkv__s2s_get_int(path, o, "d_ff", 2048, 0, 1, 1 << 20, &c->F));
    QKV_TRY(qkv__s2s_get_int(path, o, "num_layers", 6, 0, 1, 1024, &c->Le));
    QKV_TRY(qkv__s2s_get_int(path, o, "num_decoder_layers", c->Le, 0, 1, 1024, &c->Ld));
    QKV_TRY(qkv__s2s_get_int(path, o, "relative_attention_num_buckets", 32, 0, 4, 1 << 16, &c->NB));
    /* the decoder's exact buckets end at NB/2: the log-spaced ones need a larger distance */
    QKV_TRY(qkv__s2s_get_int(path, o, "relative_attention_max_distance", 128, 0, c->NB / 2 + 1,
                             1 << 20, &c->MD));
    QKV_TRY(qkv__s2s_get_int(path, o, "n_positions", 512, 0, 1, 1 << 16, &c->P));
    c->Q = c->H * c->D;
    if (c->Q > (1 << 20))
        return qkv__fail(QKV_ERR_FORMAT, "%s: num_heads %lld x d_kv %lld exceeds 2^20", path,
                         (long long)c->H, (long long)c->D);
    if (c->H * (2 * c->P) > ((int64_t)1 << 26))
        return qkv__fail(QKV_ERR_FORMAT,
                         "%s: num_heads %lld x n_positions %lld: the position bias rows would "
                         "exceed 256 MiB",
                         path, (long long)c->H, (long long)c->P);
    double eps = 1e-6;
    QKV_TRY(qkv__json_num(path, o, "layer_norm_epsilon", 1e-6, 0.0, 1.0, &eps));
    c->eps = (float)eps;
    QKV_TRY(parse_ff(path, o, c));
    int scale;
    QKV_TRY(qkv__s2s_get_bool(path, o, "tie_word_embeddings", 1, &c->tied));
    QKV_TRY(qkv__s2s_get_bool(path, o, "scale_decoder_outputs", c->tied, &scale));
    c->scale_out = scale;
    int64_t x = 0;
    QKV_TRY(qkv__s2s_get_int(path, o, "pad_token_id", 0, 0, 0, c->V - 1, &x));
    c->gen.pad = (int32_t)x;
    QKV_TRY(qkv__s2s_get_int(path, o, "eos_token_id", 1, 0, 0, c->V - 1, &x));
    c->gen.eos = (int32_t)x;
    c->gen.start = c->gen.pad;
    QKV_TRY(parse_prefix(path, o, c));
    qkv__s2s_gen_defaults(&c->gen);
    return qkv__s2s_gen_parse(path, o, c->V, &c->gen);
}

qkv_status qkv__t5_config_load(const char *dir, qkv_t5_config *cfg) {
    char path[4096];
    if (!dir || !cfg) return qkv__fail(QKV_ERR_INVALID_ARG, "t5 config: NULL argument");
    memset(cfg, 0, sizeof *cfg);
    QKV_TRY(qkv__json_config_path(dir, path, sizeof path));
    qkv__json_begin();
    json_t *root = NULL;
    qkv_status s = qkv__json_load_file(path, 0, &root);
    if (s == QKV_OK) s = parse_config(path, root, cfg);
    if (s == QKV_OK) s = qkv__s2s_gen_file(dir, cfg->V, &cfg->gen);
    json_decref(root);
    qkv__json_end();
    if (s != QKV_OK) qkv__t5_config_release(cfg);
    return s;
}

void qkv__t5_config_release(qkv_t5_config *cfg) {
    if (!cfg) return;
    qkv__s2s_gen_release(&cfg->gen);
    qkv__free(cfg->prefix);
    cfg->prefix = NULL;
}

/* ---------------------------------------------------------------- weights */

/* The rows of qkv__params_t5, in order, as fields: a block's raw matrices before packing. */
typedef struct {
    const float *q, *k, *v, *o, *ln0;
    const float *cq, *ck, *cv, *co, *ln1;
    const float *wi, *wi0, *wi1, *wo, *ln_ff;
} raw_layer;

static qkv_status pack(qkv_t5 *m, const float *w, int64_t in, int64_t out, qkv_nn_linear *y) {
    QKV_TRY(qkv__packed_linear(&m->packed, 1, in, out, w, in, NULL, y));
    qkv__safetensors_drop_pages(m->st, w, (size_t)in * (size_t)out * sizeof(float));
    return QKV_OK;
}

static qkv_status pack_layer(qkv_t5 *m, const raw_layer *r, int dec, qkv_t5_layer *y) {
    const qkv_t5_config *c = &m->cfg;
    QKV_TRY(pack(m, r->q, c->C, c->Q, &y->q));
    QKV_TRY(pack(m, r->k, c->C, c->Q, &y->k));
    QKV_TRY(pack(m, r->v, c->C, c->Q, &y->v));
    QKV_TRY(pack(m, r->o, c->Q, c->C, &y->o));
    if (dec) {
        QKV_TRY(pack(m, r->cq, c->C, c->Q, &y->cq));
        QKV_TRY(pack(m, r->ck, c->C, c->Q, &y->ck));
        QKV_TRY(pack(m, r->cv, c->C, c->Q, &y->cv));
        QKV_TRY(pack(m, r->co, c->Q, c->C, &y->co));
    }
    QKV_TRY(pack(m, c->gated ? r->wi0 : r->wi, c->C, c->F, &y->wi));
    if (c->gated) QKV_TRY(pack(m, r->wi1, c->C, c->F, &y->wi1));
    QKV_TRY(pack(m, r->wo, c->F, c->C, &y->wo));
    y->ln_sa = r->ln0;
    y->ln_ca = dec ? r->ln1 : NULL;
    y->ln_ff = r->ln_ff;
    return QKV_OK;
}

/* Every row of qkv__params_t5 that this config has, into its field (missing or misshaped
 * tensors: FORMAT naming them), then packed. */
static qkv_status load_weights(qkv_t5 *m, const char *path) {
    const qkv__param_table *tab = &qkv__params_t5;
    const qkv_t5_config *c = &m->cfg;
    const qkv__dims dims = {.V = c->V, .C = c->C, .F = c->F, .Q = c->Q, .NB = c->NB, .H = c->H};
    const float **pre[3] = {&m->embed, &m->enc_rel, &m->dec_rel};
    const float **post[2] = {&m->enc_final, &m->dec_final};
    char name[256];
    raw_layer r;
    for (int64_t i = -1; i <= c->Le + c->Ld; i++) { /* pre, encoder, decoder, post */
        const int enc = i >= 0 && i < c->Le, dec = i >= c->Le && i < c->Le + c->Ld;
        const int64_t l = dec ? i - c->Le : i;
        const qkv__param_spec *rows = i < 0 ? tab->pre
                                      : enc ? tab->layer
                                      : dec ? tab->layer2
                                            : tab->post;
        const int n = i < 0 ? tab->n_pre : enc ? tab->n_layer : dec ? tab->n_layer2 : tab->n_post;
        const float **enc_f[10] = {&r.q,  &r.k,   &r.v,   &r.o,  &r.ln0,
                                   &r.wi, &r.wi0, &r.wi1, &r.wo, &r.ln_ff};
        const float **dec_f[15] = {&r.q,  &r.k,   &r.v,  &r.o,   &r.ln0, &r.cq, &r.ck,   &r.cv,
                                   &r.co, &r.ln1, &r.wi, &r.wi0, &r.wi1, &r.wo, &r.ln_ff};
        const float ***fields = i < 0 ? pre : enc ? enc_f : dec ? dec_f : post;
        memset(&r, 0, sizeof r);
        for (int k = 0; k < n; k++) {
            const qkv__param_spec *p = &rows[k];
            if ((p->ff == QKV__FF_PLAIN && c->gated) || (p->ff == QKV__FF_GATED && !c->gated))
                continue;
            QKV_TRY(qkv__param_name(name, sizeof name, tab->prefix, p, l));
            const int64_t d1 = p->d1 == QKV__DIM_NONE ? 0 : qkv__param_dim(p->d1, &dims);
            QKV_TRY(qkv__weight_f32(m->st, path, name, qkv__param_dim(p->d0, &dims), d1, &m->owned,
                                    fields[k]));
        }
        if (enc || dec) QKV_TRY(pack_layer(m, &r, dec, dec ? &m->dec[l] : &m->enc[l]));
    }
    /* the head: lm_head.weight when the file has it (v1.1), else the shared table */
    const float *head = m->embed;
    if (qkv_safetensors_find(m->st, tab->head[0].name))
        QKV_TRY(qkv__weight_f32(m->st, path, tab->head[0].name, c->V, c->C, &m->owned, &head));
    else if (!c->tied)
        return qkv__fail(QKV_ERR_FORMAT, "%s: no tensor %s (tie_word_embeddings is false)", path,
                         tab->head[0].name);
    return qkv__packed_linear(&m->packed, 1, c->C, c->V, head, c->C, NULL, &m->head);
}

/* The bias of every relative position, per head: enc_bias (H, 2P - 1) at key − query + P − 1,
 * dec_bias (H, P + 1) at P − (query − key). */
static qkv_status make_bias(qkv_t5 *m) {
    const qkv_t5_config *c = &m->cfg;
    const int64_t H = c->H, P = c->P, We = 2 * P - 1, Wd = P + 1;
    m->enc_bias = qkv__alloc(sizeof(float) * (size_t)(H * We));
    m->dec_bias = qkv__alloc(sizeof(float) * (size_t)(H * Wd));
    if (!m->enc_bias || !m->dec_bias) return qkv__fail(QKV_ERR_NOMEM, "t5: position bias");
    for (int64_t k = 0; k < We; k++) {
        const int32_t b = qkv__t5_bucket(k - (P - 1), 1, c->NB, c->MD);
        for (int64_t h = 0; h < H; h++) m->enc_bias[h * We + k] = m->enc_rel[b * H + h];
    }
    for (int64_t k = 0; k < Wd; k++) {
        const int32_t b = qkv__t5_bucket(k - P, 0, c->NB, c->MD);
        for (int64_t h = 0; h < H; h++) m->dec_bias[h * Wd + k] = m->dec_rel[b * H + h];
    }
    return QKV_OK;
}

qkv_status qkv__t5_load(const char *dir, qkv_dtype dtype, qkv_t5 **out) {
    if (!dir || !out) return qkv__fail(QKV_ERR_INVALID_ARG, "qkv__t5_load: NULL argument");
    *out = NULL;
    qkv_t5 *m = qkv__calloc(1, sizeof *m);
    if (!m) return qkv__fail(QKV_ERR_NOMEM, "t5: out of memory");
    qkv_status s = qkv__t5_config_load(dir, &m->cfg);
    char path[4096];
    if (s == QKV_OK && snprintf(path, sizeof path, "%s/model.safetensors", dir) >= (int)sizeof path)
        s = qkv__fail(QKV_ERR_INVALID_ARG, "model directory path is too long");
    if (s == QKV_OK) s = qkv_safetensors_open(path, &m->st);
    if (s == QKV_OK) {
        const qkv_t5_config *c = &m->cfg;
        m->enc = qkv__calloc((size_t)c->Le, sizeof *m->enc);
        m->dec = qkv__calloc((size_t)c->Ld, sizeof *m->dec);
        if (!m->enc || !m->dec) s = qkv__fail(QKV_ERR_NOMEM, "t5: out of memory");
        if (s == QKV_OK)
            s = qkv__packed_set_init(&m->packed, dtype, 7 * c->Le + 11 * c->Ld + 1, "t5");
    }
    if (s == QKV_OK) s = load_weights(m, path);
    if (s == QKV_OK) s = make_bias(m);
    if (s != QKV_OK) {
        qkv__t5_free(m);
        return s;
    }
    *out = m;
    return QKV_OK;
}

void qkv__t5_free(qkv_t5 *m) {
    if (!m) return;
    qkv__packed_set_free(&m->packed);
    qkv__free(m->enc);
    qkv__free(m->dec);
    qkv__free(m->enc_bias);
    qkv__free(m->dec_bias);
    qkv__owned_weights_free(&m->owned);
    qkv_safetensors_close(m->st);
    qkv__t5_config_release(&m->cfg);
    qkv__free(m);
}

/* ---------------------------------------------------------------- attention */

/* Per source (encoder) or row (decoder) attention calls (qkv__each). */
typedef struct job job;
struct job {
    const qkv_t5 *m;
    qkv_status (*one)(qkv_runtime *rt, const job *j, int64_t i);
    int64_t n;
    const int64_t *lens, *offs;  /* encoder */
    qkv_kv_cache *const *caches; /* decoder self-attention */
    const float *kv;             /* decoder cross-attention: [Ld, 2, N, Q] */
    int64_t kv_n;
    const int64_t *src_off, *src_len;
    int64_t layer;
    const float *q, *k, *v; /* (n rows, Q) projections */
    float *att;             /* (n rows, Q) */
};

static qkv_status item(qkv_runtime *rt, const void *ctx, int64_t i) {
    const job *j = ctx;
    return j->one(rt, j, i);
}

static qkv_status run(qkv_runtime *rt, const job *j) { return qkv__each(rt, j->n, item, j); }

/* T5 scores are q·k unscaled */
static qkv_attention_desc desc(const qkv_t5_config *c, int64_t tq, int64_t tk) {
    qkv_attention_desc d = QKV_ATTENTION_DESC_INIT;
    d.batch = 1;
    d.q_len = tq;
    d.kv_len = tk;
    d.n_heads = d.n_kv_heads = c->H;
    d.head_dim = c->D;
    d.scale = 1.0f;
    return d;
}

/* encoder: source s over its own T tokens, with the bias spread to (H, T, T) */
static qkv_status enc_one(qkv_runtime *rt, const job *j, int64_t s) {
    const qkv_t5_config *c = &j->m->cfg;
    const int64_t T = j->lens[s], H = c->H, P = c->P, We = 2 * P - 1, o = j->offs[s] * c->Q;
    float *bias = qkv__alloc(sizeof(float) * (size_t)(H * T * T));
    if (!bias)
        return qkv__fail(QKV_ERR_NOMEM, "t5 encode: position bias of %lld tokens", (long long)T);
    for (int64_t h = 0; h < H; h++)
        for (int64_t i = 0; i < T; i++)
            memcpy(bias + (h * T + i) * T, j->m->enc_bias + h * We + (P - 1 - i),
                   sizeof(float) * (size_t)T);
    qkv_attention_desc d = desc(c, T, T);
    d.bias = bias;
    d.bias_stride_h = T * T;
    d.bias_stride_q = T;
    qkv_status st = qkv_attention_forward(rt, &d, j->q + o, j->k + o, j->v + o, j->att + o, NULL);
    qkv__free(bias);
    return st;
}

/* decoder self-attention: row r's key/value appended to its cache; its query at position t
 * against keys 0..t, the bias row of distance t - key read straight from dec_bias */
static qkv_status self_one(qkv_runtime *rt, const job *j, int64_t r) {
    const qkv_t5_config *c = &j->m->cfg;
    const qkv_kv_cache *kv = j->caches[r];
    const int64_t Q = c->Q, t = kv->len;
    float *k = qkv__kv_cache_k(kv, j->layer), *v = qkv__kv_cache_v(kv, j->layer);
    memcpy(k + t * Q, j->k + r * Q, sizeof(float) * (size_t)Q);
    memcpy(v + t * Q, j->v + r * Q, sizeof(float) * (size_t)Q);
    qkv_attention_desc d = desc(c, 1, t + 1);
    d.bias = j->m->dec_bias + (c->P - t);
    d.bias_stride_h = c->P + 1;
    return qkv_attention_forward(rt, &d, j->q + r * Q, k, v, j->att + r * Q, NULL);
}

/* decoder cross-attention: row r's query against its source's keys/values, no bias */
static qkv_status cross_one(qkv_runtime *rt, const job *j, int64_t r) {
    const qkv_t5_config *c = &j->m->cfg;
    const int64_t Q = c->Q;
    const float *k = j->kv + (j->layer * 2 * j->kv_n + j->src_off[r]) * Q;
    const float *v = k + j->kv_n * Q;
    const qkv_attention_desc d = desc(c, 1, j->src_len[r]);
    return qkv_attention_forward(rt, &d, j->q + r * Q, k, v, j->att + r * Q, NULL);
}

/* ---------------------------------------------------------------- forward */

/* Scratch over N rows: h (N, C), q k v att (N, Q), a u (N, F). */
typedef struct {
    float *ws, *h, *q, *k, *v, *att, *a, *u;
} scratch;

static qkv_status scratch_get(const qkv_t5_config *c, int64_t N, scratch *s) {
    size_t n;
    memset(s, 0, sizeof *s);
    if (qkv__mul_overflow((size_t)N, (size_t)(c->C + 4 * c->Q + 2 * c->F), &n) ||
        qkv__mul_overflow(n, sizeof(float), &n))
        return qkv__fail(QKV_ERR_OVERFLOW, "t5: workspace size overflows");
    float *p = s->ws = qkv__alloc(n);
    if (!p) return qkv__fail(QKV_ERR_NOMEM, "t5: cannot allocate %zu bytes", n);
    s->h = p, p += N * c->C;
    s->q = p, p += N * c->Q;
    s->k = p, p += N * c->Q;
    s->v = p, p += N * c->Q;
    s->att = p, p += N * c->Q;
    s->a = p, p += N * c->F;
    s->u = p;
    return QKV_OK;
}

/* x (N, C) = E[ids] */
static qkv_status embed(qkv_runtime *rt, const qkv_t5 *m, const int32_t *ids, int64_t N, float *x) {
    for (int64_t i = 0; i < N; i++)
        if (ids[i] < 0 || ids[i] >= m->cfg.V)
            return qkv__fail(QKV_ERR_INVALID_ARG,
                             "t5: token id %d at %lld is outside the vocabulary [0, %lld)", ids[i],
                             (long long)i, (long long)m->cfg.V);
    return qkv_nn_embedding_forward(rt, x, ids, m->embed, N, m->cfg.V, m->cfg.C);
}

/* x += O(attend(Q h, K h, V h)), h = RMS(x) (the self-attention sublayer) */
static qkv_status self_attn(qkv_runtime *rt, const qkv_t5_layer *w, job *j, const scratch *s,
                            float *x, int64_t N) {
    const qkv_t5_config *c = &j->m->cfg;
    QKV_TRY(qkv_nn_rmsnorm_forward(rt, s->h, NULL, x, w->ln_sa, N, c->C, c->eps));
    QKV_TRY(qkv_nn_linear_forward(rt, &w->q, s->q, s->h, N, QKV_ACT_NONE, NULL));
    QKV_TRY(qkv_nn_linear_forward(rt, &w->k, s->k, s->h, N, QKV_ACT_NONE, NULL));
    QKV_TRY(qkv_nn_linear_forward(rt, &w->v, s->v, s->h, N, QKV_ACT_NONE, NULL));
    QKV_TRY(run(rt, j));
    return qkv_nn_linear_forward(rt, &w->o, x, s->att, N, QKV_ACT_NONE, x);
}

/* x += wo(act(wi h)) or wo(act(wi_0 h) ∘ wi_1 h), h = RMS(x) */
static qkv_status ff(qkv_runtime *rt, const qkv_t5_config *c, const qkv_t5_layer *w,
                     const scratch *s, float *x, int64_t N) {
    QKV_TRY(qkv_nn_rmsnorm_forward(rt, s->h, NULL, x, w->ln_ff, N, c->C, c->eps));
    QKV_TRY(qkv_nn_linear_forward(rt, &w->wi, s->a, s->h, N, c->act, NULL));
    if (c->gated) {
        QKV_TRY(qkv_nn_linear_forward(rt, &w->wi1, s->u, s->h, N, QKV_ACT_NONE, NULL));
        for (int64_t i = 0; i < N * c->F; i++) s->a[i] *= s->u[i];
    }
    return qkv_nn_linear_forward(rt, &w->wo, x, s->a, N, QKV_ACT_NONE, x);
}

qkv_status qkv__t5_encode(qkv_runtime *rt, const qkv_t5 *m, const int32_t *ids, const int64_t *lens,
                          int64_t n, float *out) {
    if (!m || !ids || !lens || !out || n <= 0)
        return qkv__fail(QKV_ERR_INVALID_ARG, "t5 encode: NULL argument or no source");
    const qkv_t5_config *c = &m->cfg;
    int64_t N = 0;
    for (int64_t s = 0; s < n; s++) {
        if (lens[s] < 1 || lens[s] > c->P)
            return qkv__fail(QKV_ERR_INVALID_ARG,
                             "t5 encode: source %lld has %lld tokens (1..%lld allowed)",
                             (long long)s, (long long)lens[s], (long long)c->P);
        N += lens[s];
    }
    int64_t *offs = qkv__calloc((size_t)n, sizeof *offs);
    scratch s;
    qkv_status st =
        offs ? scratch_get(c, N, &s) : qkv__fail(QKV_ERR_NOMEM, "t5 encode: out of memory");
    for (int64_t i = 1; st == QKV_OK && i < n; i++) offs[i] = offs[i - 1] + lens[i - 1];
    if (st == QKV_OK) st = embed(rt, m, ids, N, out); /* the stream lives in out */
    job j = {.m = m, .one = enc_one, .n = n, .lens = lens, .offs = offs};
    if (st == QKV_OK) j.q = s.q, j.k = s.k, j.v = s.v, j.att = s.att;
    for (int64_t l = 0; st == QKV_OK && l < c->Le; l++) {
        st = self_attn(rt, &m->enc[l], &j, &s, out, N);
        if (st == QKV_OK) st = ff(rt, c, &m->enc[l], &s, out, N);
    }
    if (st == QKV_OK)
        st = qkv_nn_rmsnorm_forward(rt, out, NULL, out, m->enc_final, N, c->C, c->eps);
    if (offs) qkv__free(s.ws);
    qkv__free(offs);
    return st;
}

qkv_status qkv__t5_cross_kv(qkv_runtime *rt, const qkv_t5 *m, const float *enc, int64_t N,
                            float *kv) {
    if (!m || !enc || !kv || N <= 0)
        return qkv__fail(QKV_ERR_INVALID_ARG, "t5 cross_kv: NULL argument");
    const int64_t Q = m->cfg.Q;
    for (int64_t l = 0; l < m->cfg.Ld; l++) {
        float *k = kv + l * 2 * N * Q;
        QKV_TRY(qkv_nn_linear_forward(rt, &m->dec[l].ck, k, enc, N, QKV_ACT_NONE, NULL));
        QKV_TRY(qkv_nn_linear_forward(rt, &m->dec[l].cv, k + N * Q, enc, N, QKV_ACT_NONE, NULL));
    }
    return QKV_OK;
}

qkv_status qkv__t5_decode_step(qkv_runtime *rt, const qkv_t5 *m, qkv_kv_cache *const *caches,
                               const int32_t *tok, const float *kv, int64_t N,
                               const int64_t *src_off, const int64_t *src_len, int64_t R,
                               float *logits) {
    if (!m || !caches || !tok || !kv || !src_off || !src_len || !logits || R <= 0)
        return qkv__fail(QKV_ERR_INVALID_ARG, "t5 decode: NULL argument or no row");
    const qkv_t5_config *c = &m->cfg;
    for (int64_t r = 0; r < R; r++) {
        const qkv_kv_cache *k = caches[r];
        if (!k || k->n_layers != c->Ld || k->n_kv_heads != c->H || k->head_dim != c->D ||
            k->len >= k->cap || k->len >= c->P || k->slot)
            return qkv__fail(
                QKV_ERR_INVALID_ARG,
                "t5 decode: the cache of row %lld does not fit (full, a beam group, or past "
                "n_positions %lld)",
                (long long)r, (long long)c->P);
        if (src_off[r] < 0 || src_len[r] < 1 || src_off[r] + src_len[r] > N)
            return qkv__fail(QKV_ERR_INVALID_ARG, "t5 decode: row %lld's source is outside kv",
                             (long long)r);
    }
    scratch s;
    float *x = qkv__alloc(sizeof(float) * (size_t)(R * c->C));
    if (!x) return qkv__fail(QKV_ERR_NOMEM, "t5 decode: out of memory");
    qkv_status st = scratch_get(c, R, &s);
    if (st == QKV_OK) st = embed(rt, m, tok, R, x);
    job j = {.m = m,
             .n = R,
             .caches = caches,
             .kv = kv,
             .kv_n = N,
             .src_off = src_off,
             .src_len = src_len,
             .q = s.q,
             .k = s.k,
             .v = s.v,
             .att = s.att};
    for (int64_t l = 0; st == QKV_OK && l < c->Ld; l++) {
        const qkv_t5_layer *w = &m->dec[l];
        j.layer = l;
        j.one = self_one;
        st = self_attn(rt, w, &j, &s, x, R);
        /* x += CO(cross(CQ RMS(x))) */
        if (st == QKV_OK) st = qkv_nn_rmsnorm_forward(rt, s.h, NULL, x, w->ln_ca, R, c->C, c->eps);
        if (st == QKV_OK) st = qkv_nn_linear_forward(rt, &w->cq, s.q, s.h, R, QKV_ACT_NONE, NULL);
        j.one = cross_one;
        if (st == QKV_OK) st = run(rt, &j);
        if (st == QKV_OK) st = qkv_nn_linear_forward(rt, &w->co, x, s.att, R, QKV_ACT_NONE, x);
        if (st == QKV_OK) st = ff(rt, c, w, &s, x, R);
    }
    if (st == QKV_OK) st = qkv_nn_rmsnorm_forward(rt, x, NULL, x, m->dec_final, R, c->C, c->eps);
    if (st == QKV_OK && c->scale_out) {
        const float k = (float)pow((double)c->C, -0.5);
        for (int64_t i = 0; i < R * c->C; i++) x[i] *= k;
    }
    if (st == QKV_OK) st = qkv_nn_linear_forward(rt, &m->head, logits, x, R, QKV_ACT_NONE, NULL);
    if (st == QKV_OK)
        for (int64_t r = 0; r < R; r++) caches[r]->len++;
    qkv__free(s.ws);
    qkv__free(x);
    return st;
}
