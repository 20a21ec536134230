/* marian.c — loading a Hugging Face MarianMT directory and running its encoder and one decoder
 * step (see marian.h). Both are lists of layer calls: the encoder block is block.h's BERT block
 * (qkv__enc_block_forward), the decoder block qkv__s2s_dec_block_forward; what is Marian's own
 * is the embedding (scale, sinusoidal table), where the attention gets its keys (attend_* below)
 * and the head with final_logits_bias. */
#include "models/marian.h"

#include "core/alloc.h"
#include "core/error.h"
#include "core/runtime.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "kernels/dispatch.h"
#include "models/params.h"
#include "nn/nn.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---------------------------------------------------------------- config */

static qkv_status parse_config(const char *path, json_t *o, qkv_marian_config *c) {
    if (!json_is_object(o)) return qkv__fail(QKV_ERR_FORMAT, "%s: not a JSON object", path);
    json_t *mt = json_object_get(o, "model_type");
    if (!json_is_string(mt) || strcmp(json_string_value(mt), "marian") != 0)
        return qkv__fail(QKV_ERR_UNSUPPORTED,
                         "%s: model_type '%s' is not a supported encoder-decoder (marian, t5)",
                         path, json_is_string(mt) ? json_string_value(mt) : "(missing)");
    QKV_TRY(qkv__s2s_get_int(path, o, "vocab_size", 0, 1, 2, INT32_MAX, &c->V));
    QKV_TRY(qkv__s2s_get_int(path, o, "d_model", 0, 1, 2, 65536, &c->C));
    QKV_TRY(qkv__s2s_get_int(path, o, "max_position_embeddings", 0, 1, 1, 1 << 16, &c->P));
    QKV_TRY(qkv__s2s_get_int(path, o, "encoder_layers", 0, 1, 1, 1024, &c->Le));
    QKV_TRY(qkv__s2s_get_int(path, o, "decoder_layers", 0, 1, 1, 1024, &c->Ld));
    QKV_TRY(qkv__s2s_get_int(path, o, "encoder_attention_heads", 0, 1, 1, 4096, &c->He));
    QKV_TRY(qkv__s2s_get_int(path, o, "decoder_attention_heads", 0, 1, 1, 4096, &c->Hd));
    QKV_TRY(qkv__s2s_get_int(path, o, "encoder_ffn_dim", 0, 1, 1, 1 << 20, &c->Fe));
    QKV_TRY(qkv__s2s_get_int(path, o, "decoder_ffn_dim", 0, 1, 1, 1 << 20, &c->Fd));
    if (c->P * c->C > ((int64_t)1 << 28))
        return qkv__fail(QKV_ERR_UNSUPPORTED,
                         "%s: max_position_embeddings %lld x d_model %lld: the position table "
                         "would exceed 1 GiB",
                         path, (long long)c->P, (long long)c->C);
    if (c->C % 2 || c->C % c->He || c->C % c->Hd)
        return qkv__fail(QKV_ERR_UNSUPPORTED,
                         "%s: d_model %lld must be even and a multiple of the attention heads",
                         path, (long long)c->C);
    QKV_TRY(qkv__s2s_get_bool(path, o, "share_encoder_decoder_embeddings", 1, &c->shared));
    QKV_TRY(qkv__s2s_get_bool(path, o, "tie_word_embeddings", 1, &c->tied));
    c->Vd = c->V;
    if (!c->shared)
        QKV_TRY(qkv__s2s_get_int(path, o, "decoder_vocab_size", c->V, 0, 2, INT32_MAX, &c->Vd));
    int scale, nb;
    QKV_TRY(qkv__s2s_get_bool(path, o, "scale_embedding", 0, &scale));
    c->embed_scale = scale ? sqrtf((float)c->C) : 1.0f;
    QKV_TRY(qkv__s2s_get_bool(path, o, "normalize_before", 0, &nb));
    if (nb) return qkv__fail(QKV_ERR_UNSUPPORTED, "%s: normalize_before = true", path);
    json_t *act = json_object_get(o, "activation_function");
    const char *a = json_is_string(act) ? json_string_value(act) : "gelu";
    static const struct {
        const char *name;
        qkv_act act;
    } acts[] = {{"swish", QKV_ACT_SILU},
                {"silu", QKV_ACT_SILU},
                {"gelu", QKV_ACT_GELU_ERF},
                {"gelu_new", QKV_ACT_GELU_TANH},
                {"gelu_pytorch_tanh", QKV_ACT_GELU_TANH},
                {"relu", QKV_ACT_RELU}};
    c->act = QKV_ACT_NONE;
    for (size_t i = 0; i < sizeof acts / sizeof *acts; i++)
        if (strcmp(a, acts[i].name) == 0) c->act = acts[i].act;
    if (c->act == QKV_ACT_NONE)
        return qkv__fail(QKV_ERR_UNSUPPORTED,
                         "%s: activation_function '%s' is not supported (swish, silu, gelu, "
                         "gelu_new, relu)",
                         path, a);
    int64_t x = 0;
    QKV_TRY(qkv__s2s_get_int(path, o, "pad_token_id", 0, 1, 0, c->Vd - 1, &x));
    c->gen.pad = (int32_t)x;
    QKV_TRY(qkv__s2s_get_int(path, o, "eos_token_id", 0, 1, 0, c->Vd - 1, &x));
    c->gen.eos = (int32_t)x;
    c->gen.start = c->gen.pad;
    qkv__s2s_gen_defaults(&c->gen);
    return qkv__s2s_gen_parse(path, o, c->Vd, &c->gen);
}

qkv_status qkv__marian_config_load(const char *dir, qkv_marian_config *cfg) {
    char path[4096];
    if (!dir || !cfg) return qkv__fail(QKV_ERR_INVALID_ARG, "marian config: NULL argument");
    memset(cfg, 0, sizeof *cfg);
    QKV_TRY(qkv__json_config_path(dir, path, sizeof path));
    qkv__json_begin();
    json_t *root = NULL;
    qkv_status s = qkv__json_load_file(path, 0, &root);
    if (s == QKV_OK) s = parse_config(path, root, cfg);
    if (s == QKV_OK) s = qkv__s2s_gen_file(dir, cfg->Vd, &cfg->gen);
    json_decref(root);
    qkv__json_end();
    if (s != QKV_OK) qkv__marian_config_release(cfg);
    return s;
}

void qkv__marian_config_release(qkv_marian_config *cfg) {
    if (cfg) qkv__s2s_gen_release(&cfg->gen);
}

/* ---------------------------------------------------------------- weights */

typedef struct {
    qkv_marian *m;
    const char *path, *prefix;
} loader;

static qkv_status get(loader *L, const char *name, int64_t d0, int64_t d1, const float **out) {
    char full[256];
    if (snprintf(full, sizeof full, "%s%s", L->prefix, name) >= (int)sizeof full)
        return qkv__fail(QKV_ERR_INTERNAL, "marian: tensor name too long");
    return qkv__weight_f32(L->m->st, L->path, full, d0, d1, &L->m->owned, out);
}

/* The first of names (each without the prefix; "" ends the list) that the file holds. */
static const char *first_present(loader *L, const char *const *names) {
    char full[256];
    for (; **names; names++) {
        snprintf(full, sizeof full, "%s%s", L->prefix, *names);
        if (qkv_safetensors_find(L->m->st, full)) return *names;
    }
    return NULL;
}

/* A linear layer from its weight (out, in) and bias, packed in the model's dtype. */
static qkv_status linear(qkv_marian *m, const float *w, const float *b, int64_t in, int64_t out,
                         qkv_nn_linear *y) {
    QKV_TRY(qkv__packed_linear(&m->packed, 1, in, out, w, in, b, y));
    qkv__safetensors_drop_pages(m->st, w, (size_t)in * (size_t)out * sizeof(float));
    return QKV_OK;
}

/* Every layer's rows of qkv__params_marian (the encoder's, then the decoder's), read in the
 * table's order (missing or misshaped tensors: FORMAT naming them), then packed: attention
 * projections (weight, bias) pairs first, each layer norm a (weight, bias) pair where the
 * table has it. */
static qkv_status load_layers(loader *L) {
    qkv_marian *m = L->m;
    const qkv_marian_config *c = &m->cfg;
    const qkv__param_table *tab = &qkv__params_marian;
    const qkv__dims dims = {.V = c->V, .Vd = c->Vd, .C = c->C, .F = c->Fe, .F2 = c->Fd};
    const int64_t C = c->C;
    const float *r[26]; /* the rows of one layer */
    char name[256];
    for (int64_t i = 0; i < c->Le + c->Ld; i++) {
        const int dec = i >= c->Le;
        const int64_t l = dec ? i - c->Le : i;
        const qkv__param_spec *rows = dec ? tab->layer2 : tab->layer;
        const int n = dec ? tab->n_layer2 : tab->n_layer;
        if (n != (dec ? 26 : 16)) /* the indices below follow params.c's marian_enc / marian_dec */
            return qkv__fail(QKV_ERR_INTERNAL, "marian: the parameter table changed");
        for (int k = 0; k < n; k++) {
            const qkv__param_spec *p = &rows[k];
            QKV_TRY(qkv__param_name(name, sizeof name, L->prefix, p, l));
            const int64_t d1 = p->d1 == QKV__DIM_NONE ? 0 : qkv__param_dim(p->d1, &dims);
            QKV_TRY(qkv__weight_f32(m->st, L->path, name, qkv__param_dim(p->d0, &dims), d1,
                                    &m->owned, &r[k]));
        }
        if (!dec) { /* q k v o, self_attn_layer_norm, fc1 fc2, final_layer_norm */
            qkv__enc_layer *e = &m->enc[l];
            qkv_nn_linear *lin[4] = {&e->q, &e->k, &e->v, &e->o};
            for (int k = 0; k < 4; k++) QKV_TRY(linear(m, r[2 * k], r[2 * k + 1], C, C, lin[k]));
            e->ln1_w = r[8], e->ln1_b = r[9];
            QKV_TRY(linear(m, r[10], r[11], C, c->Fe, &e->fc));
            QKV_TRY(linear(m, r[12], r[13], c->Fe, C, &e->out));
            e->ln2_w = r[14], e->ln2_b = r[15];
        } else { /* self q k v o, its norm, cross q k v o, its norm, fc1 fc2, final norm */
            qkv__s2s_dec_layer *d = &m->dec[l];
            qkv_nn_linear *self[4] = {&d->q, &d->k, &d->v, &d->o};
            qkv_nn_linear *cross[4] = {&d->cq, &d->ck, &d->cv, &d->co};
            for (int k = 0; k < 4; k++) QKV_TRY(linear(m, r[2 * k], r[2 * k + 1], C, C, self[k]));
            d->ln1_w = r[8], d->ln1_b = r[9];
            for (int k = 0; k < 4; k++)
                QKV_TRY(linear(m, r[10 + 2 * k], r[11 + 2 * k], C, C, cross[k]));
            d->ln2_w = r[18], d->ln2_b = r[19];
            QKV_TRY(linear(m, r[20], r[21], C, c->Fd, &d->fc));
            QKV_TRY(linear(m, r[22], r[23], c->Fd, C, &d->out));
            d->ln3_w = r[24], d->ln3_b = r[25];
        }
    }
    return QKV_OK;
}

/* The embeddings and the head. save_pretrained keeps one of a set of tied tensors, so each
 * table is looked up under every name it is tied to. */
static qkv_status load_embeddings(loader *L) {
    qkv_marian *m = L->m;
    const qkv_marian_config *c = &m->cfg;
    static const char *const shared[] = {"model.shared.weight", "model.encoder.embed_tokens.weight",
                                         "model.decoder.embed_tokens.weight", "lm_head.weight", ""};
    static const char *const enc[] = {"model.encoder.embed_tokens.weight", "model.shared.weight",
                                      ""};
    static const char *const dec_tied[] = {"model.decoder.embed_tokens.weight", "lm_head.weight",
                                           ""};
    static const char *const dec[] = {"model.decoder.embed_tokens.weight", ""};
    const char *saved = L->prefix;
    L->prefix = ""; /* these names carry their own prefix */
    const char *ne = first_present(L, c->shared ? shared : enc);
    const char *nd = c->shared ? ne : first_present(L, c->tied ? dec_tied : dec);
    qkv_status s = QKV_OK;
    if (!ne || !nd)
        s = qkv__fail(QKV_ERR_FORMAT, "%s: no %s embedding table (%s)", L->path,
                      !ne ? "encoder" : "decoder", !ne ? (c->shared ? shared : enc)[0] : dec[0]);
    if (s == QKV_OK) s = get(L, ne, c->V, c->C, &m->enc_embed);
    if (s == QKV_OK) s = get(L, nd, c->Vd, c->C, &m->dec_embed);
    const float *head = m->dec_embed;
    if (s == QKV_OK && !c->tied) s = get(L, "lm_head.weight", c->Vd, c->C, &head);
    if (s == QKV_OK && qkv_safetensors_find(m->st, "final_logits_bias"))
        s = get(L, "final_logits_bias", 1, c->Vd, &m->logits_bias);
    if (s == QKV_OK)
        s = qkv__packed_linear(&m->packed, 1, c->C, c->Vd, head, c->C, m->logits_bias, &m->head);
    L->prefix = saved;
    return s;
}

qkv_status qkv__marian_positions(int64_t P, int64_t C, float **out) {
    const int64_t h = C / 2;
    size_t n;
    *out = NULL;
    if (qkv__mul_overflow((size_t)P, (size_t)C * sizeof(float), &n))
        return qkv__fail(QKV_ERR_OVERFLOW, "marian: position table overflows");
    float *pe = qkv__alloc(n);
    if (!pe) return qkv__fail(QKV_ERR_NOMEM, "marian: cannot allocate the position table");
    for (int64_t p = 0; p < P; p++)
        for (int64_t i = 0; i < h; i++) {
            double a = (double)p / pow(10000.0, (double)(2 * i) / (double)C);
            pe[p * C + i] = (float)sin(a);
            pe[p * C + h + i] = (float)cos(a);
        }
    *out = pe;
    return QKV_OK;
}

static qkv_status make_positions(qkv_marian *m) {
    return qkv__marian_positions(m->cfg.P, m->cfg.C, &m->pe);
}

qkv_status qkv__marian_load(const char *dir, qkv_dtype dtype, qkv_marian **out) {
    if (!dir || !out) return qkv__fail(QKV_ERR_INVALID_ARG, "qkv__marian_load: NULL argument");
    *out = NULL;
    qkv_marian *m = qkv__calloc(1, sizeof *m);
    if (!m) return qkv__fail(QKV_ERR_NOMEM, "marian: out of memory");
    qkv_status s = qkv__marian_config_load(dir, &m->cfg);
    char path[4096];
    if (s == QKV_OK && snprintf(path, sizeof path, "%s/model.safetensors", dir) >= (int)sizeof path)
        s = qkv__fail(QKV_ERR_INVALID_ARG, "model directory path is too long");
    if (s == QKV_OK) s = qkv_safetensors_open(path, &m->st);
    if (s == QKV_OK) {
        const qkv_marian_config *c = &m->cfg;
        m->enc = qkv__calloc((size_t)c->Le, sizeof *m->enc);
        m->dec = qkv__calloc((size_t)c->Ld, sizeof *m->dec);
        if (!m->enc || !m->dec) s = qkv__fail(QKV_ERR_NOMEM, "marian: out of memory");
        if (s == QKV_OK)
            s = qkv__packed_set_init(&m->packed, dtype, 6 * c->Le + 10 * c->Ld + 1, "marian");
    }
    if (s == QKV_OK) {
        loader L = {m, path, "model."};
        if (!qkv_safetensors_find(m->st, "model.encoder.layers.0.fc1.weight")) L.prefix = "";
        s = load_layers(&L);
        if (s == QKV_OK) s = load_embeddings(&L);
    }
    if (s == QKV_OK) s = make_positions(m);
    if (s != QKV_OK) {
        qkv__marian_free(m);
        return s;
    }
    *out = m;
    return QKV_OK;
}

void qkv__marian_free(qkv_marian *m) {
    if (!m) return;
    qkv__packed_set_free(&m->packed);
    qkv__free(m->enc);
    qkv__free(m->dec);
    qkv__free(m->pe);
    qkv__owned_weights_free(&m->owned);
    qkv_safetensors_close(m->st);
    qkv__marian_config_release(&m->cfg);
    qkv__free(m);
}

/* ---------------------------------------------------------------- attention */

/* One attention call per sequence or row: many run one per thread (each call serial), few run
 * one at a time (each call parallel inside). */
typedef struct attn_job attn_job;
typedef qkv_status (*attn_one_fn)(qkv_runtime *rt, const attn_job *j, int64_t i);
struct attn_job {
    const qkv_marian *m;
    attn_one_fn one;
    int64_t n;                   /* sequences (encoder) or rows (decoder) */
    const int64_t *lens, *offs;  /* encoder: [n] */
    qkv_kv_cache *const *caches; /* decoder: [n] */
    const float *kv;             /* decoder: the cross keys/values, [Ld, 2, N, C] */
    int64_t kv_n;                /* N */
    const int64_t *src_off, *src_len;
    float *probs;                      /* encoder: NULL, or each source's [Le, He, T, T] */
    const int64_t *poffs;              /* encoder: [n] where source s starts in probs */
    const qkv__marian_step_maps *maps; /* decoder: NULL, or the maps of its one row */
    float *scratch;                    /* decoder with maps: [Hd, max(T, S)] */
    int64_t layer;
    const qkv__block_acts *a;
};

static qkv_status attn_item(qkv_runtime *rt, const void *ctx, int64_t i) {
    const attn_job *j = ctx;
    return j->one(rt, j, i);
}

static qkv_status attn_run(qkv_runtime *rt, attn_job *j, int64_t l, const qkv__block_acts *a) {
    j->layer = l;
    j->a = a;
    return qkv__each(rt, j->n, attn_item, j);
}

static qkv_attention_desc desc(int64_t H, int64_t D, int64_t tq, int64_t tk) {
    qkv_attention_desc d;
    memset(&d, 0, sizeof d);
    d.batch = 1;
    d.q_len = tq;
    d.kv_len = tk;
    d.n_heads = d.n_kv_heads = H;
    d.head_dim = D;
    d.window_left = d.window_right = -1;
    return d;
}

/* encoder: source s over its own tokens */
static qkv_status enc_one(qkv_runtime *rt, const attn_job *j, int64_t s) {
    const qkv_marian_config *c = &j->m->cfg;
    const qkv_attention_desc d = desc(c->He, c->C / c->He, j->lens[s], j->lens[s]);
    const int64_t o = j->offs[s] * c->C;
    QKV_TRY(
        qkv_attention_forward(rt, &d, j->a->q + o, j->a->k + o, j->a->v + o, j->a->att + o, NULL));
    if (!j->probs) return QKV_OK;
    /* the same q, k and descriptor: this layer's probabilities, [He, T, T] */
    const int64_t T = j->lens[s];
    return qkv_attention_probs(rt, &d, j->a->q + o, j->a->k + o,
                               j->probs + j->poffs[s] + j->layer * c->He * T * T);
}

/* The probabilities of one decoder query (the row's new token, position t of the maps) over
 * n keys, with the descriptor and q, k its attention used: [H, 1, n] into the scratch, then
 * row t of every head's map of this layer, map [H, T, n_cols] (keys past n stay as they are:
 * 0, set by the caller). */
static qkv_status step_probs(qkv_runtime *rt, const attn_job *j, const qkv_attention_desc *d,
                             const float *q, const float *k, float *map, int64_t n_cols) {
    QKV_TRY(qkv_attention_probs(rt, d, q, k, j->scratch));
    const int64_t H = d->n_heads, T = j->maps->T, t = j->caches[0]->len, n = d->kv_len;
    for (int64_t h = 0; h < H; h++)
        memcpy(map + ((h * T + t) * n_cols), j->scratch + h * n, sizeof(float) * (size_t)n);
    return QKV_OK;
}

/* One decoder query [H, D] against d->kv_len keys and values, rows of H·D floats of k and v:
 * the first kv_len, or those of a beam group's cache (kv: its token j at
 * qkv__kv_cache_row(kv, j)). The decoding kernel (one row against a short list, no tiling):
 * softmax(q·kᵀ / √D) v as qkv_attention_forward computes it for this descriptor. */
static qkv_status decode_attention(const qkv_attention_desc *d, const float *q, const float *k,
                                   const float *v, const qkv_kv_cache *kv, float *out) {
    const size_t H = (size_t)d->n_heads, D = (size_t)d->head_dim, n = (size_t)d->kv_len;
    float buf[512];
    int64_t rbuf[512];
    void *mem = n <= 512 ? NULL : qkv__alloc(n * (sizeof(float) + sizeof(int64_t)));
    if (n > 512 && !mem) return qkv__fail(QKV_ERR_NOMEM, "marian decode: out of memory");
    float *scratch = mem ? mem : buf;                                 /* [n] */
    int64_t *rows = mem ? (int64_t *)(scratch + n) : rbuf, *r = NULL; /* [n] */
    if (kv && kv->slot) {
        for (size_t j = 0; j < n; j++) rows[j] = qkv__kv_cache_row(kv, (int64_t)j);
        r = rows;
    }
    qkv__kernels()->attn_decode_f32(H, D, n, q, k, H * D, v, H * D, r, 1.0f / sqrtf((float)D), out,
                                    scratch);
    qkv__free(mem);
    return QKV_OK;
}

/* decoder self-attention: row r's new key/value appended to its cache, its query against it */
static qkv_status self_one(qkv_runtime *rt, const attn_job *j, int64_t r) {
    const qkv_marian_config *c = &j->m->cfg;
    qkv_kv_cache *kv = j->caches[r];
    const int64_t C = c->C, t = kv->len;
    float *k = qkv__kv_cache_k(kv, j->layer), *v = qkv__kv_cache_v(kv, j->layer);
    if (kv->slot) kv->slot[t] = (int32_t)kv->way; /* a beam group: this beam's own place */
    const int64_t place = qkv__kv_cache_row(kv, t);
    memcpy(k + place * C, j->a->k + r * C, sizeof(float) * (size_t)C);
    memcpy(v + place * C, j->a->v + r * C, sizeof(float) * (size_t)C);
    const qkv_attention_desc d = desc(c->Hd, C / c->Hd, 1, t + 1);
    QKV_TRY(decode_attention(&d, j->a->q + r * C, k, v, kv, j->a->att + r * C));
    if (!j->maps) return QKV_OK;
    const int64_t T = j->maps->T;
    return step_probs(rt, j, &d, j->a->q + r * C, k, j->maps->self + j->layer * c->Hd * T * T, T);
}

/* decoder cross-attention: row r's query against its source's keys/values */
static qkv_status cross_one(qkv_runtime *rt, const attn_job *j, int64_t r) {
    const qkv_marian_config *c = &j->m->cfg;
    const int64_t C = c->C;
    const float *k = j->kv + (j->layer * 2 * j->kv_n + j->src_off[r]) * C;
    const float *v = k + j->kv_n * C;
    const qkv_attention_desc d = desc(c->Hd, C / c->Hd, 1, j->src_len[r]);
    QKV_TRY(decode_attention(&d, j->a->cq + r * C, k, v, NULL, j->a->catt + r * C));
    if (!j->maps) return QKV_OK;
    const int64_t T = j->maps->T, S = j->src_len[r];
    return step_probs(rt, j, &d, j->a->cq + r * C, k, j->maps->cross + j->layer * c->Hd * T * S, S);
}

static qkv_status attend(void *ctx, qkv_runtime *rt, int64_t l, const qkv__block_acts *a) {
    attn_job *j = ctx;
    return attn_run(rt, j, l, a);
}

static qkv_status attend_cross(void *ctx, qkv_runtime *rt, int64_t l, const qkv__block_acts *a) {
    attn_job j = *(attn_job *)ctx; /* the same rows, another attention */
    j.one = cross_one;
    return attn_run(rt, &j, l, a);
}

/* ---------------------------------------------------------------- forward */

/* x (N, C) = E[ids] · scale (positions are added by the caller). */
static qkv_status embed(qkv_runtime *rt, const float *table, int64_t V, float scale,
                        const int32_t *ids, int64_t N, int64_t C, float *x) {
    for (int64_t i = 0; i < N; i++)
        if (ids[i] < 0 || ids[i] >= V)
            return qkv__fail(QKV_ERR_INVALID_ARG,
                             "marian: token id %d at %lld is outside the vocabulary [0, %lld)",
                             ids[i], (long long)i, (long long)V);
    QKV_TRY(qkv_nn_embedding_forward(rt, x, ids, table, N, V, C));
    if (scale != 1.0f)
        for (int64_t i = 0; i < N * C; i++) x[i] *= scale;
    return QKV_OK;
}

/* Scratch of a block over N rows, C wide, MLP F: x q k v att res1 ln1 ln2 res2 (N, C), a (N, F). */
static qkv_status block_scratch(int64_t N, int64_t C, int64_t F, qkv__block_acts *a, float **x,
                                float **out) {
    size_t n;
    *out = NULL;
    if (qkv__mul_overflow((size_t)N, (size_t)(9 * C + F), &n) ||
        qkv__mul_overflow(n, sizeof(float), &n))
        return qkv__fail(QKV_ERR_OVERFLOW, "marian: workspace size overflows");
    float *ws = qkv__alloc(n);
    if (!ws) return qkv__fail(QKV_ERR_NOMEM, "marian: cannot allocate %zu bytes", n);
    memset(a, 0, sizeof *a);
    float *p = ws;
    *x = p, p += N * C;
    a->q = p, p += N * C;
    a->k = p, p += N * C;
    a->v = p, p += N * C;
    a->att = p, p += N * C;
    a->res1 = p, p += N * C;
    a->ln1 = p, p += N * C;
    a->ln2 = p, p += N * C;
    a->res2 = p, p += N * C;
    a->a = p;
    *out = ws;
    return QKV_OK;
}

qkv_status qkv__marian_encode(qkv_runtime *rt, const qkv_marian *m, const int32_t *ids,
                              const int64_t *lens, int64_t n, float *out) {
    return qkv__marian_encode_probs(rt, m, ids, lens, n, out, NULL);
}

qkv_status qkv__marian_encode_probs(qkv_runtime *rt, const qkv_marian *m, const int32_t *ids,
                                    const int64_t *lens, int64_t n, float *out, float *probs) {
    if (!m || !ids || !lens || !out || n <= 0)
        return qkv__fail(QKV_ERR_INVALID_ARG, "marian encode: NULL argument or no source");
    const qkv_marian_config *c = &m->cfg;
    const int64_t C = c->C;
    int64_t N = 0;
    for (int64_t s = 0; s < n; s++) {
        if (lens[s] < 1 || lens[s] > c->P)
            return qkv__fail(QKV_ERR_INVALID_ARG,
                             "marian encode: source %lld has %lld tokens (1..%lld allowed)",
                             (long long)s, (long long)lens[s], (long long)c->P);
        N += lens[s];
    }
    int64_t *offs = qkv__calloc(2 * (size_t)n, sizeof *offs), *poffs = offs ? offs + n : NULL;
    qkv__block_acts a;
    float *x = NULL, *ws = NULL;
    qkv_status st = offs ? block_scratch(N, C, c->Fe, &a, &x, &ws)
                         : qkv__fail(QKV_ERR_NOMEM, "marian encode: out of memory");
    if (st == QKV_OK) st = embed(rt, m->enc_embed, c->V, c->embed_scale, ids, N, C, x);
    for (int64_t s = 0, o = 0; st == QKV_OK && s < n; o += lens[s], s++) {
        offs[s] = o;
        poffs[s] = s ? poffs[s - 1] + c->Le * c->He * lens[s - 1] * lens[s - 1] : 0;
        st = qkv_nn_position_add_forward(rt, x + o * C, x + o * C, m->pe, 1, lens[s], C, c->P, 0);
    }
    attn_job job = {
        .m = m, .one = enc_one, .n = n, .lens = lens, .offs = offs, .probs = probs, .poffs = poffs};
    const qkv__enc_cfg ec = {C, c->Fe, 1e-5f, c->act, 0.0f, 0, 0.0f};
    if (st == QKV_OK) a.res2 = a.res1; /* inference: one buffer for both residual sums */
    for (int64_t l = 0; st == QKV_OK && l < c->Le; l++)
        st = qkv__enc_block_forward(rt, &ec, &m->enc[l], l, &a, x, l == c->Le - 1 ? out : x, N,
                                    attend, &job);
    qkv__free(ws);
    qkv__free(offs);
    return st;
}

qkv_status qkv__marian_cross_kv(qkv_runtime *rt, const qkv_marian *m, const float *enc, int64_t N,
                                float *kv) {
    if (!m || !enc || !kv || N <= 0)
        return qkv__fail(QKV_ERR_INVALID_ARG, "marian cross_kv: NULL argument");
    const int64_t C = m->cfg.C;
    for (int64_t l = 0; l < m->cfg.Ld; l++) {
        float *k = kv + l * 2 * N * C;
        QKV_TRY(qkv_nn_linear_forward(rt, &m->dec[l].ck, k, enc, N, QKV_ACT_NONE, NULL));
        QKV_TRY(qkv_nn_linear_forward(rt, &m->dec[l].cv, k + N * C, enc, N, QKV_ACT_NONE, NULL));
    }
    return QKV_OK;
}

qkv_status qkv__marian_decode_step(qkv_runtime *rt, const qkv_marian *m,
                                   qkv_kv_cache *const *caches, const int32_t *tok, const float *kv,
                                   int64_t N, const int64_t *src_off, const int64_t *src_len,
                                   int64_t R, float *logits) {
    return qkv__marian_decode_step_probs(rt, m, caches, tok, kv, N, src_off, src_len, R, logits,
                                         NULL);
}

qkv_status qkv__marian_decode_step_probs(qkv_runtime *rt, const qkv_marian *m,
                                         qkv_kv_cache *const *caches, const int32_t *tok,
                                         const float *kv, int64_t N, const int64_t *src_off,
                                         const int64_t *src_len, int64_t R, float *logits,
                                         const qkv__marian_step_maps *maps) {
    if (!m || !caches || !tok || !kv || !src_off || !src_len || !logits || R <= 0)
        return qkv__fail(QKV_ERR_INVALID_ARG, "marian decode: NULL argument or no row");
    const qkv_marian_config *c = &m->cfg;
    const int64_t C = c->C;
    for (int64_t r = 0; r < R; r++) {
        const qkv_kv_cache *k = caches[r];
        if (!k || k->n_layers != c->Ld || k->n_kv_heads != c->Hd || k->head_dim != C / c->Hd ||
            k->len >= k->cap || k->len >= c->P)
            return qkv__fail(QKV_ERR_INVALID_ARG,
                             "marian decode: the cache of row %lld does not fit (full, or past "
                             "max_position_embeddings %lld)",
                             (long long)r, (long long)c->P);
        if (src_off[r] < 0 || src_len[r] < 1 || src_off[r] + src_len[r] > N)
            return qkv__fail(QKV_ERR_INVALID_ARG, "marian decode: row %lld's source is outside kv",
                             (long long)r);
    }
    if (maps && (R != 1 || !maps->self || !maps->cross || caches[0]->len >= maps->T ||
                 src_len[0] != maps->S || caches[0]->slot))
        return qkv__fail(QKV_ERR_INVALID_ARG,
                         "marian decode: maps are for one row at a position inside them, over "
                         "their source");
    qkv__block_acts a;
    float *x = NULL, *ws = NULL, *scratch = NULL;
    QKV_TRY(block_scratch(R, C, c->Fd, &a, &x, &ws));
    qkv_status st = QKV_OK;
    if (maps) { /* the caller checked that Hd·max(T, S) fits: its maps are larger */
        scratch =
            qkv__alloc(sizeof(float) * (size_t)(c->Hd * (maps->T > maps->S ? maps->T : maps->S)));
        if (!scratch) st = qkv__fail(QKV_ERR_NOMEM, "marian decode: out of memory");
    }
    if (st == QKV_OK) st = embed(rt, m->dec_embed, c->Vd, c->embed_scale, tok, R, C, x);
    for (int64_t r = 0; st == QKV_OK && r < R; r++)
        st = qkv_nn_position_add_forward(rt, x + r * C, x + r * C, m->pe, 1, 1, C, c->P,
                                         caches[r]->len);
    attn_job job = {.m = m,
                    .one = self_one,
                    .n = R,
                    .caches = caches,
                    .kv = kv,
                    .kv_n = N,
                    .src_off = src_off,
                    .src_len = src_len,
                    .maps = maps,
                    .scratch = scratch};
    const qkv__enc_cfg ec = {C, c->Fd, 1e-5f, c->act, 0.0f, 0, 0.0f};
    a.cq = a.q, a.catt = a.att, a.res3 = a.res2; /* inference: the block's buffers reused */
    for (int64_t l = 0; st == QKV_OK && l < c->Ld; l++)
        st = qkv__s2s_dec_block_forward(rt, &ec, &m->dec[l], l, &a, x, x, R, attend, attend_cross,
                                        &job);
    if (st == QKV_OK) st = qkv_nn_linear_forward(rt, &m->head, logits, x, R, QKV_ACT_NONE, NULL);
    if (st == QKV_OK)
        for (int64_t r = 0; r < R; r++) caches[r]->len++;
    qkv__free(scratch);
    qkv__free(ws);
    return st;
}
