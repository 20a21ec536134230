/* bert.c — loading a Hugging Face BERT checkpoint and running the encoder (see bert.h).
 *
 * Embeddings (word + position + token type, LayerNorm), then per layer models/block.h's
 * qkv__enc_block_forward (post-LN; the one training runs too) over the weights packed at load,
 * with attend_seqs as its attention: each sequence of the packed rows over its own tokens.
 * Every matrix product is one GEMM over all N tokens of the batch. A classifier
 * (BertForSequenceClassification) adds the pooler and the classifier over each sequence's first
 * token (qkv__bert_classify_head), one GEMM each over the batch's sequences. */
#include "models/bert.h"
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
#include <string.h>

/* ---------------------------------------------------------------- config */

/* A probability field (a dropout rate): absent or null gives def. */
static qkv_status cfg_prob(const char *path, json_t *root, const char *key, float def, float *out) {
    json_t *v = json_object_get(root, key);
    *out = def;
    if (!v || json_is_null(v)) return QKV_OK;
    if (!json_is_number(v) || !(json_number_value(v) >= 0.0) || !(json_number_value(v) < 1.0))
        return qkv__fail(QKV_ERR_FORMAT, "%s: field '%s' must be a number in [0, 1)", path, key);
    *out = (float)json_number_value(v);
    return QKV_OK;
}

static qkv_status parse_config(const char *path, json_t *root, qkv_bert_config *c) {
    if (!json_is_object(root)) return qkv__fail(QKV_ERR_FORMAT, "%s: not a JSON object", path);
    const char *s;
    QKV_TRY(qkv__json_str(path, root, "model_type", NULL, &s));
    if (s) {
        if (strcmp(s, "bert") != 0 && strcmp(s, "roberta") != 0 && strcmp(s, "xlm-roberta") != 0)
            return qkv__fail(QKV_ERR_UNSUPPORTED,
                             "%s: model_type '%s' is not a BERT-family encoder (bert)", path, s);
    }
    int64_t v = 0;
    QKV_TRY(qkv__json_int(path, root, "vocab_size", 1, 0, 1, INT32_MAX, &c->vocab_size));
    QKV_TRY(qkv__json_int(path, root, "hidden_size", 1, 0, 1, 65536, &c->hidden_size));
    QKV_TRY(qkv__json_int(path, root, "num_hidden_layers", 1, 0, 1, 1024, &c->num_layers));
    QKV_TRY(qkv__json_int(path, root, "num_attention_heads", 1, 0, 1, 4096, &c->num_heads));
    QKV_TRY(
        qkv__json_int(path, root, "intermediate_size", 1, 0, 1, 1 << 20, &c->intermediate_size));
    QKV_TRY(
        qkv__json_int(path, root, "max_position_embeddings", 0, 512, 1, 1 << 20, &c->max_position));
    QKV_TRY(qkv__json_int(path, root, "type_vocab_size", 0, 2, 0, 1 << 20, &c->type_vocab_size));
    QKV_TRY(qkv__json_int(path, root, "pad_token_id", 0, 0, 0, INT32_MAX, &v));
    c->pad_token_id = (int32_t)v;
    if (c->hidden_size % c->num_heads != 0)
        return qkv__fail(QKV_ERR_FORMAT,
                         "%s: hidden_size %lld is not a multiple of num_attention_heads %lld", path,
                         (long long)c->hidden_size, (long long)c->num_heads);
    double eps; /* stored as a float: more than FLT_MAX would become infinity */
    QKV_TRY(qkv__json_num(path, root, "layer_norm_eps", 1e-12, 0, FLT_MAX, &eps));
    c->layer_norm_eps = (float)eps;
    QKV_TRY(cfg_prob(path, root, "hidden_dropout_prob", 0.1f, &c->hidden_dropout));
    QKV_TRY(cfg_prob(path, root, "attention_probs_dropout_prob", 0.1f, &c->attn_dropout));
    QKV_TRY(cfg_prob(path, root, "classifier_dropout", c->hidden_dropout, &c->classifier_dropout));
    const char *a;
    QKV_TRY(qkv__json_str(path, root, "hidden_act", "gelu", &a));
    if (strcmp(a, "gelu") == 0)
        c->act = QKV_ACT_GELU_ERF;
    else if (strcmp(a, "gelu_new") == 0 || strcmp(a, "gelu_pytorch_tanh") == 0)
        c->act = QKV_ACT_GELU_TANH;
    else if (strcmp(a, "relu") == 0)
        c->act = QKV_ACT_RELU;
    else if (strcmp(a, "silu") == 0 || strcmp(a, "swish") == 0)
        c->act = QKV_ACT_SILU;
    else
        return qkv__fail(QKV_ERR_UNSUPPORTED,
                         "%s: hidden_act '%s' is not supported (gelu, gelu_new, "
                         "gelu_pytorch_tanh, relu, silu)",
                         path, a);
    const char *pe;
    QKV_TRY(qkv__json_str(path, root, "position_embedding_type", "absolute", &pe));
    if (strcmp(pe, "absolute") != 0)
        return qkv__fail(QKV_ERR_UNSUPPORTED,
                         "%s: position_embedding_type '%s' is not supported (absolute)", path, pe);
    int dec;
    QKV_TRY(qkv__json_bool(path, root, "is_decoder", 0, &dec));
    if (dec) return qkv__fail(QKV_ERR_UNSUPPORTED, "%s: is_decoder = true is not supported", path);
    return QKV_OK;
}

/* config.json's architectures: 1 if it names BertForSequenceClassification; UNSUPPORTED for
 * another *ForSequenceClassification (a head qkv does not run); else 0. */
static qkv_status arch_is_classifier(const char *path, json_t *root, int *cls) {
    static const char suffix[] = "ForSequenceClassification";
    json_t *archs = json_object_get(root, "architectures"), *a;
    size_t i;
    *cls = 0;
    if (archs && !json_is_null(archs) && !json_is_array(archs))
        return qkv__fail(QKV_ERR_FORMAT, "%s: field 'architectures' must be a list of names", path);
    json_array_foreach(archs, i, a) {
        const char *s = json_string_value(a);
        if (!s)
            return qkv__fail(QKV_ERR_FORMAT, "%s: field 'architectures' must be a list of names",
                             path);
        size_t n = strlen(s);
        if (n < sizeof suffix - 1 || strcmp(s + n - (sizeof suffix - 1), suffix) != 0) continue;
        if (strcmp(s, "BertForSequenceClassification") != 0)
            return qkv__fail(QKV_ERR_UNSUPPORTED,
                             "%s: architectures names %s; the classification head qkv runs is "
                             "BertForSequenceClassification's (pooler + classifier)",
                             path, s);
        *cls = 1;
    }
    return QKV_OK;
}

/* What config.json says: the encoder's config and, when labels is not NULL, whether it is a
 * classifier (*cls: architectures says so, or force_cls: the weights have a classifier) and
 * then its labels. */
static qkv_status read_config(const char *dir, qkv_bert_config *cfg, qkv__labels *labels,
                              int force_cls, int *cls) {
    char path[4096];
    QKV_TRY(qkv__json_config_path(dir, path, sizeof path));
    memset(cfg, 0, sizeof *cfg);
    qkv__json_begin();
    json_t *root;
    qkv_status s = qkv__json_load_file(path, 0, &root);
    if (s == QKV_OK) s = parse_config(path, root, cfg);
    if (s == QKV_OK && labels) s = arch_is_classifier(path, root, cls);
    if (s == QKV_OK && labels && (*cls || force_cls)) {
        *cls = 1;
        s = qkv__labels_parse(path, root, labels);
    }
    json_decref(root);
    qkv__json_end();
    return s;
}

qkv_status qkv__bert_config_load(const char *dir, qkv_bert_config *cfg) {
    return read_config(dir, cfg, NULL, 0, NULL);
}

/* ---------------------------------------------------------------- weights */

typedef struct {
    qkv_bert *m;
    const char *path;
    const char *prefix; /* "" or "bert." */
} loader;

/* Name and shape of row r of the parameter table (layer l for layer rows). The encoder's rows
 * carry the loader's prefix, the head rows none. */
static qkv_status row_name(loader *L, const char *prefix, const qkv__param_spec *r, int64_t l,
                           char *name, size_t cap, int64_t *d0, int64_t *d1) {
    const qkv_bert_config *c = &L->m->cfg;
    const qkv__dims dims = {.V = c->vocab_size,
                            .P = c->max_position,
                            .C = c->hidden_size,
                            .F = c->intermediate_size,
                            .Q = c->hidden_size,
                            .K = c->hidden_size,
                            .TV = c->type_vocab_size,
                            .NL = L->m->labels.n};
    QKV_TRY(qkv__param_name(name, cap, prefix, r, l));
    *d0 = qkv__param_dim(r->d0, &dims);
    *d1 = r->d1 == QKV__DIM_NONE ? 0 : qkv__param_dim(r->d1, &dims);
    return QKV_OK;
}

/* Row r of the parameter table into *out, F32 of the row's shape; layer l for layer rows. */
static qkv_status get_as(loader *L, const char *prefix, const qkv__param_spec *r, int64_t l,
                         const float **out) {
    char name[256];
    int64_t d0, d1;
    QKV_TRY(row_name(L, prefix, r, l, name, sizeof name, &d0, &d1));
    return qkv__weight_f32(L->m->st, L->path, name, d0, d1, &L->m->owned, out);
}

/* Row r (a matrix W [out, in]) of layer l as op(W) = Wᵀ packed for the 16-bit GEMM in the
 * model's dtype (BF16 or F16): a tensor of that dtype as stored, F32 rounded to nearest even,
 * the other 16-bit dtype widened (exactly) into a temporary F32 copy first; then the mapped
 * pages are given back, so no F32 copy of the weights stays in memory. */
static qkv_status get_bf16(loader *L, const qkv__param_spec *r, int64_t l,
                           qkv_gemm_bf16_packed **out) {
    char name[256];
    int64_t d0, d1;
    const qkv_st_tensor *t;
    QKV_TRY(row_name(L, L->prefix, r, l, name, sizeof name, &d0, &d1));
    QKV_TRY(qkv__weight_find(L->m->st, L->path, name, d0, d1, &t));
    const size_t n = (size_t)d0 * (size_t)d1;
    /* stored in the model's 16-bit dtype: packed as stored (copied first from an odd address,
     * which the format allows); any other float dtype: widened to F32, then rounded */
    const int f16 = L->m->dtype == QKV_DTYPE_F16;
    const qkv_dtype same = f16 ? QKV_DTYPE_F16 : QKV_DTYPE_BF16;
    void *tmp = NULL; /* the F32 widening, or the 16-bit copy */
    qkv_status s = QKV_OK;
    if (t->dtype == QKV_DTYPE_F32) {
        s = (f16 ? qkv__gemm_f16_pack_f32 : qkv__gemm_bf16_pack_f32)(NULL, 1, d1, d0, t->data, d1,
                                                                     out);
    } else if (t->dtype == QKV_DTYPE_BF16 || t->dtype == QKV_DTYPE_F16) {
        const int as_is = t->dtype == same, odd = ((uintptr_t)t->data & 1u) != 0;
        if ((!as_is || odd) && !(tmp = qkv__alloc(n * (as_is ? sizeof(uint16_t) : sizeof(float)))))
            return qkv__fail(QKV_ERR_NOMEM, "%s: cannot convert tensor '%s'", L->path, name);
        if (!as_is) {
            qkv__weight_widen(t, tmp);
            s = (f16 ? qkv__gemm_f16_pack_f32 : qkv__gemm_bf16_pack_f32)(NULL, 1, d1, d0, tmp, d1,
                                                                         out);
        } else {
            if (odd) memcpy(tmp, t->data, n * sizeof(uint16_t));
            s = (f16 ? qkv__gemm_f16_pack : qkv__gemm_bf16_pack)(NULL, 1, d1, d0,
                                                                 odd ? tmp : t->data, d1, out);
        }
    } else {
        return qkv__fail(QKV_ERR_UNSUPPORTED, "%s: tensor '%s' has dtype %s (F32, F16, BF16 only)",
                         L->path, name, qkv_dtype_name(t->dtype));
    }
    qkv__free(tmp);
    if (s == QKV_OK) qkv__safetensors_drop_pages(L->m->st, t->data, t->nbytes);
    return s;
}

/* Row r (a matrix W [out, in]) of layer l as op(W) = Wᵀ quantized to int8 and packed: from
 * the mapped tensor when it is F32, else from a temporary F32 widening of it; then the mapped
 * pages are given back. */
static qkv_status get_i8(loader *L, const qkv__param_spec *r, int64_t l, qkv_gemm_i8_packed **out) {
    char name[256];
    int64_t d0, d1;
    const qkv_st_tensor *t;
    QKV_TRY(row_name(L, L->prefix, r, l, name, sizeof name, &d0, &d1));
    QKV_TRY(qkv__weight_find(L->m->st, L->path, name, d0, d1, &t));
    float *tmp = NULL;
    if (t->dtype == QKV_DTYPE_BF16 || t->dtype == QKV_DTYPE_F16) {
        if (!(tmp = qkv__alloc((size_t)d0 * (size_t)d1 * sizeof(float))))
            return qkv__fail(QKV_ERR_NOMEM, "%s: cannot convert tensor '%s'", L->path, name);
        qkv__weight_widen(t, tmp);
    } else if (t->dtype != QKV_DTYPE_F32) {
        return qkv__fail(QKV_ERR_UNSUPPORTED, "%s: tensor '%s' has dtype %s (F32, F16, BF16 only)",
                         L->path, name, qkv_dtype_name(t->dtype));
    }
    qkv_status s = qkv__gemm_i8_pack_f32(NULL, 1, d1, d0, tmp ? tmp : t->data, d1, out);
    qkv__free(tmp);
    if (s != QKV_OK) { /* name the tensor (the message is copied: qkv__fail rewrites it) */
        char why[512];
        snprintf(why, sizeof why, "%s", qkv_last_error());
        return qkv__fail(s, "%s: tensor '%s' as int8: %s", L->path, name, why);
    }
    qkv__safetensors_drop_pages(L->m->st, t->data, t->nbytes);
    return QKV_OK;
}

static qkv_status get(loader *L, const qkv__param_spec *r, int64_t l, const float **out) {
    return get_as(L, L->prefix, r, l, out);
}

/* Every tensor of the BERT table (models/params.h) into its field, in the table's order. */
static qkv_status load_weights(loader *L) {
    qkv_bert *m = L->m;
    const qkv_bert_config *c = &m->cfg;
    const qkv__param_table *tab = &qkv__params_bert;
    char probe[128]; /* BertForMaskedLM & co. prefix the encoder with "bert." */
    snprintf(probe, sizeof probe, "%s", tab->pre[0].name);
    L->prefix = "";
    if (!qkv_safetensors_find(m->st, probe)) {
        snprintf(probe, sizeof probe, "%s%s", tab->prefix, tab->pre[0].name);
        if (qkv_safetensors_find(m->st, probe)) L->prefix = tab->prefix;
    }
    const float **pre[5] = {&m->word_emb, &m->pos_emb, &m->type_emb, &m->emb_ln_w, &m->emb_ln_b};
    if (tab->n_pre != 5 || tab->n_layer != 16 || tab->n_opt != 2)
        return qkv__fail(QKV_ERR_INTERNAL, "bert: the parameter table does not match bert.c");
    for (int i = 0; i < tab->n_pre; i++)
        if (i != 2 || c->type_vocab_size > 0) /* a model without token types has no table */
            QKV_TRY(get(L, &tab->pre[i], 0, pre[i]));
    m->layers = qkv__calloc((size_t)c->num_layers, sizeof *m->layers);
    if (!m->layers) return qkv__fail(QKV_ERR_NOMEM, "bert: out of memory");
    for (int64_t l = 0; l < c->num_layers; l++) {
        qkv_bert_layer *y = &m->layers[l];
        const float **f[16] = {&y->wq, &y->bq, &y->wk,    &y->bk,    &y->wv, &y->bv,
                               &y->wo, &y->bo, &y->ln1_w, &y->ln1_b, &y->w1, &y->b1,
                               &y->w2, &y->b2, &y->ln2_w, &y->ln2_b};
        /* the matrices, when they are loaded as bf16 */
        qkv_gemm_bf16_packed **h[16] = {&y->hq, NULL, &y->hk, NULL, &y->hv, NULL, &y->ho, NULL,
                                        NULL,   NULL, &y->h1, NULL, &y->h2, NULL, NULL,   NULL};
        /* int8: every matrix but the value projection, which int8 models keep in bf16: of the
         * six kinds of matrix quantized alone it moved the MiniLM embeddings most (1 - mean
         * cosine 2.7e-4 of 5.0e-4 for all six; q 1.2e-5, k 1.6e-5, attention output 2.0e-5,
         * FFN up 1.5e-4, FFN down 7.6e-5), its error reaching the residual stream undamped (q
         * and k pass through the softmax), at 1/12 of a block's multiply-adds (PERFORMANCE.md) */
        qkv_gemm_i8_packed **q[16] = {&y->iq, NULL, &y->ik, NULL, NULL,   NULL, &y->io, NULL,
                                      NULL,   NULL, &y->i1, NULL, &y->i2, NULL, NULL,   NULL};
        for (int i = 0; i < tab->n_layer; i++) {
            if (m->dtype == QKV_DTYPE_I8 && q[i])
                QKV_TRY(get_i8(L, &tab->layer[i], l, q[i]));
            else if (m->dtype != QKV_DTYPE_F32 && h[i])
                QKV_TRY(get_bf16(L, &tab->layer[i], l, h[i]));
            else
                QKV_TRY(get(L, &tab->layer[i], l, f[i]));
        }
    }
    if (m->labels.n > 0) { /* a classifier: the pooler (required) and the classifier */
        const qkv__param_table *ct = &qkv__params_bert_cls;
        if (ct->n_post != 2 || ct->n_head != 2)
            return qkv__fail(QKV_ERR_INTERNAL, "bert: the classifier table does not match bert.c");
        QKV_TRY(get(L, &ct->post[0], 0, &m->pool_w));
        QKV_TRY(get(L, &ct->post[1], 0, &m->pool_b));
        QKV_TRY(get_as(L, "", &ct->head[0], 0, &m->cls_w));
        return get_as(L, "", &ct->head[1], 0, &m->cls_b);
    }
    char pn[128]; /* the pooler, when the checkpoint has one */
    QKV_TRY(qkv__param_name(pn, sizeof pn, L->prefix, &tab->opt[0], 0));
    if (qkv_safetensors_find(m->st, pn)) {
        QKV_TRY(get(L, &tab->opt[0], 0, &m->pool_w));
        QKV_TRY(get(L, &tab->opt[1], 0, &m->pool_b));
    }
    return QKV_OK;
}

/* W [out, in] -> op(W) = Wᵀ [in, out] packed for the GEMM, then the mapped W given back. */
static qkv_status pack_one(qkv_bert *m, const float *w, int64_t out_f, int64_t in_f,
                           qkv_gemm_packed **p) {
    QKV_TRY(qkv__gemm_pack_b(NULL, 1, in_f, out_f, w, in_f, p));
    qkv__safetensors_drop_pages(m->st, w, (size_t)out_f * (size_t)in_f * sizeof(float));
    return QKV_OK;
}

/* The inference layer over whichever packed form the model holds (int8: q, 16-bit: h, else p). */
static qkv_nn_linear lin(const qkv_gemm_packed *p, const qkv_gemm_bf16_packed *h,
                         const qkv_gemm_i8_packed *q, const float *b) {
    return q   ? qkv_nn_linear_packed_i8(q, b)
           : h ? qkv_nn_linear_packed_bf16(h, b)
               : qkv_nn_linear_packed(p, b);
}

static qkv_status pack_weights(qkv_bert *m) {
    const int64_t C = m->cfg.hidden_size, F = m->cfg.intermediate_size;
    for (int64_t l = 0; l < m->cfg.num_layers; l++) {
        qkv_bert_layer *y = &m->layers[l];
        if (m->dtype == QKV_DTYPE_F32) { /* bf16, f16, int8: packed by load_weights already */
            QKV_TRY(pack_one(m, y->wq, C, C, &y->pq));
            QKV_TRY(pack_one(m, y->wk, C, C, &y->pk));
            QKV_TRY(pack_one(m, y->wv, C, C, &y->pv));
            QKV_TRY(pack_one(m, y->wo, C, C, &y->po));
            QKV_TRY(pack_one(m, y->w1, F, C, &y->p1));
            QKV_TRY(pack_one(m, y->w2, C, F, &y->p2));
        }
        y->blk = (qkv__enc_layer){lin(y->pq, y->hq, y->iq, y->bq),
                                  lin(y->pk, y->hk, y->ik, y->bk),
                                  lin(y->pv, y->hv, y->iv, y->bv),
                                  lin(y->po, y->ho, y->io, y->bo),
                                  lin(y->p1, y->h1, y->i1, y->b1),
                                  lin(y->p2, y->h2, y->i2, y->b2),
                                  y->ln1_w,
                                  y->ln1_b,
                                  y->ln2_w,
                                  y->ln2_b};
    }
    return QKV_OK;
}

qkv_status qkv__bert_load(const char *dir, qkv_bert **out) {
    return qkv__bert_load_as(dir, QKV_DTYPE_F32, out);
}

qkv_status qkv__bert_load_as(const char *dir, qkv_dtype dtype, qkv_bert **out) {
    if (!dir || !out) return qkv__fail(QKV_ERR_INVALID_ARG, "qkv__bert_load: NULL argument");
    *out = NULL;
    if (dtype != QKV_DTYPE_F32 && dtype != QKV_DTYPE_BF16 && dtype != QKV_DTYPE_F16 &&
        dtype != QKV_DTYPE_I8)
        return qkv__fail(QKV_ERR_INVALID_ARG, "bert: dtype %s for the weights (F32, BF16, F16, I8)",
                         qkv_dtype_name(dtype));
    qkv_bert *m = qkv__calloc(1, sizeof *m);
    if (!m) return qkv__fail(QKV_ERR_NOMEM, "bert: out of memory");
    m->dtype = dtype;
    int cls = 0;
    qkv_status s = read_config(dir, &m->cfg, &m->labels, 0, &cls);
    char path[4096];
    if (s == QKV_OK && snprintf(path, sizeof path, "%s/model.safetensors", dir) >= (int)sizeof path)
        s = qkv__fail(QKV_ERR_INVALID_ARG, "model directory path is too long");
    if (s == QKV_OK) s = qkv_safetensors_open(path, &m->st);
    /* classifier.weight without the architecture: a classifier all the same (its labels) */
    if (s == QKV_OK && !cls && qkv_safetensors_find(m->st, qkv__params_bert_cls.head[0].name))
        s = read_config(dir, &m->cfg, &m->labels, 1, &cls);
    if (s == QKV_OK) {
        loader L = {m, path, ""};
        s = load_weights(&L);
    }
    if (s == QKV_OK) s = pack_weights(m);
    if (s != QKV_OK) {
        qkv__bert_free(m);
        return s;
    }
    *out = m;
    return QKV_OK;
}

void qkv__bert_free(qkv_bert *m) {
    if (!m) return;
    qkv__lora_release(m->lora, m->lora_slot);
    qkv__owned_weights_free(&m->owned);
    for (int64_t l = 0; m->layers && l < m->cfg.num_layers; l++) {
        qkv_bert_layer *y = &m->layers[l];
        qkv__gemm_packed_free(y->pq);
        qkv__gemm_packed_free(y->pk);
        qkv__gemm_packed_free(y->pv);
        qkv__gemm_packed_free(y->po);
        qkv__gemm_packed_free(y->p1);
        qkv__gemm_packed_free(y->p2);
        qkv_gemm_bf16_packed *h[] = {y->hq, y->hk, y->hv, y->ho, y->h1, y->h2};
        for (size_t i = 0; i < sizeof h / sizeof *h; i++) qkv__gemm_bf16_packed_free(h[i]);
        qkv_gemm_i8_packed *q[] = {y->iq, y->ik, y->iv, y->io, y->i1, y->i2};
        for (size_t i = 0; i < sizeof q / sizeof *q; i++) qkv__gemm_i8_packed_free(q[i]);
    }
    qkv__free(m->layers);
    qkv__labels_free(&m->labels);
    qkv_safetensors_close(m->st);
    qkv__free(m);
}

/* ---------------------------------------------------------------- forward */

typedef struct {
    const qkv_bert *m;
    const int64_t *lens, *offs; /* [n_seq] */
    int64_t n_seq;
    const float *q, *k, *v; /* [N, C] */
    float *att;             /* [N, C] */
    float *probs;           /* NULL, or every sequence's [L, H, T, T] back to back */
    const int64_t *poffs;   /* [n_seq] where sequence s starts in probs */
    int64_t layer;
} attn_job;

static qkv_status attend_one(qkv_runtime *rt, const void *ctx, int64_t s) {
    const attn_job *j = ctx;
    const qkv_bert_config *c = &j->m->cfg;
    qkv_attention_desc d;
    memset(&d, 0, sizeof d);
    d.batch = 1;
    d.q_len = d.kv_len = j->lens[s];
    d.n_heads = d.n_kv_heads = c->num_heads;
    d.head_dim = c->hidden_size / c->num_heads;
    d.window_left = d.window_right = -1;
    int64_t o = j->offs[s] * c->hidden_size;
    QKV_TRY(qkv_attention_forward(rt, &d, j->q + o, j->k + o, j->v + o, j->att + o, NULL));
    if (!j->probs) return QKV_OK;
    /* the same q, k and descriptor: this layer's probabilities, [H, T, T] */
    const int64_t T = j->lens[s];
    return qkv_attention_probs(rt, &d, j->q + o, j->k + o,
                               j->probs + j->poffs[s] + j->layer * c->num_heads * T * T);
}

/* The attention of every layer (block.h's qkv__attend_fn): each sequence over its own tokens.
 * Many sequences: one per thread (each attention call then runs serially). Few: one at a
 * time, each parallel inside. */
static qkv_status attend_seqs(void *ctx, qkv_runtime *rt, int64_t l, const qkv__block_acts *a) {
    attn_job *job = ctx;
    job->layer = l;
    job->q = a->q, job->k = a->k, job->v = a->v, job->att = a->att;
    return qkv__each(rt, job->n_seq, attend_one, job);
}

qkv_status qkv__bert_forward(qkv_runtime *rt, const qkv_bert *m, const int32_t *ids,
                             const int32_t *type_ids, const int64_t *lens, int64_t n_seq,
                             float *hidden) {
    return qkv__bert_forward_probs(rt, m, ids, type_ids, lens, n_seq, hidden, NULL);
}

qkv_status qkv__bert_forward_probs(qkv_runtime *rt, const qkv_bert *m, const int32_t *ids,
                                   const int32_t *type_ids, const int64_t *lens, int64_t n_seq,
                                   float *hidden, float *probs) {
    if (!m || !ids || !lens || !hidden || n_seq <= 0)
        return qkv__fail(QKV_ERR_INVALID_ARG, "bert forward: NULL argument or no sequence");
    const qkv_bert_config *c = &m->cfg;
    const int64_t C = c->hidden_size, F = c->intermediate_size;
    int64_t N = 0;
    for (int64_t s = 0; s < n_seq; s++) {
        if (lens[s] < 1 || lens[s] > c->max_position)
            return qkv__fail(QKV_ERR_INVALID_ARG,
                             "bert forward: sequence %lld has %lld tokens (1..%lld allowed)",
                             (long long)s, (long long)lens[s], (long long)c->max_position);
        N += lens[s];
    }
    for (int64_t n = 0; n < N; n++) {
        if (ids[n] < 0 || ids[n] >= c->vocab_size)
            return qkv__fail(QKV_ERR_INVALID_ARG,
                             "bert forward: token id %d at %lld is outside "
                             "the vocabulary [0, %lld)",
                             ids[n], (long long)n, (long long)c->vocab_size);
        int32_t tt = type_ids ? type_ids[n] : 0;
        if (tt < 0 || tt >= (c->type_vocab_size ? c->type_vocab_size : 1))
            return qkv__fail(QKV_ERR_INVALID_ARG,
                             "bert forward: token type %d at %lld is outside "
                             "[0, %lld)",
                             tt, (long long)n, (long long)c->type_vocab_size);
    }
    /* workspace: q, k, v, att, tmp [N, C]; mlp [N, F]; offsets, probs offsets [n_seq] */
    size_t nc = (size_t)N * (size_t)C, nf = (size_t)N * (size_t)F;
    float *ws = qkv__alloc((5 * nc + nf) * sizeof(float) + 2 * (size_t)n_seq * sizeof(int64_t));
    if (!ws) return qkv__fail(QKV_ERR_NOMEM, "bert forward: cannot allocate the workspace");
    float *q = ws, *k = q + nc, *v = k + nc, *att = v + nc, *tmp = att + nc, *mlp = tmp + nc;
    int64_t *offs = (int64_t *)(mlp + nf), *poffs = offs + n_seq;
    qkv_status st;

    /* embeddings: word + position + token type, then LayerNorm */
    for (int64_t s = 0, n = 0, p = 0; s < n_seq; n += lens[s], s++) {
        offs[s] = n;
        poffs[s] = p; /* the caller checked that Σ L·H·T² fits */
        p += c->num_layers * c->num_heads * lens[s] * lens[s];
    }
    st = qkv_nn_embedding_forward(rt, tmp, ids, m->word_emb, N, c->vocab_size, C);
    for (int64_t s = 0; st == QKV_OK && s < n_seq; s++)
        st = qkv_nn_position_add_forward(rt, tmp + offs[s] * C, tmp + offs[s] * C, m->pos_emb, 1,
                                         lens[s], C, c->max_position, 0);
    if (st == QKV_OK && m->type_emb) {
        if (type_ids)
            st = qkv_nn_embedding_add_forward(rt, tmp, type_ids, m->type_emb, N, c->type_vocab_size,
                                              C);
        else /* every token of type 0 */
            st = qkv_nn_position_add_forward(rt, tmp, tmp, m->type_emb, N, 1, C, c->type_vocab_size,
                                             0);
    }
    if (st == QKV_OK)
        st = qkv_nn_layernorm_forward(rt, hidden, NULL, NULL, tmp, m->emb_ln_w, m->emb_ln_b, N, C,
                                      c->layer_norm_eps);

    attn_job job = {
        .m = m, .lens = lens, .offs = offs, .n_seq = n_seq, .probs = probs, .poffs = poffs};
    /* one scratch set for every block; hidden is the stream, updated in place */
    const qkv__block_acts a = {
        .ln1 = hidden, .q = q, .k = k, .v = v, .att = att, .res1 = tmp, .res2 = tmp, .a = mlp};
    const qkv__enc_cfg ec = {C, F, c->layer_norm_eps, c->act, 0.0f, 0, 0.0f};
    for (int64_t l = 0; st == QKV_OK && l < c->num_layers; l++)
        st = qkv__enc_block_forward(rt, &ec, &m->layers[l].blk, l, &a, hidden, hidden, N,
                                    attend_seqs, &job);
    qkv__free(ws);
    return st;
}

qkv_status qkv__bert_classify_head(qkv_runtime *rt, const qkv_bert *m, const float *hidden,
                                   const int64_t *lens, int64_t n_seq, float *logits) {
    if (!m || !hidden || !lens || !logits || n_seq <= 0)
        return qkv__fail(QKV_ERR_INVALID_ARG, "bert classify: NULL argument or no sequence");
    if (!m->cls_w)
        return qkv__fail(QKV_ERR_INVALID_ARG, "bert classify: the model has no classifier");
    const int64_t C = m->cfg.hidden_size, NL = m->labels.n;
    float *first = qkv__alloc(2 * (size_t)n_seq * (size_t)C * sizeof(float)); /* (n_seq, C) */
    if (!first) return qkv__fail(QKV_ERR_NOMEM, "bert classify: out of memory");
    float *pooled = first + n_seq * C; /* (n_seq, C) */
    for (int64_t s = 0, o = 0; s < n_seq; o += lens[s], s++)
        memcpy(first + s * C, hidden + o * C, (size_t)C * sizeof(float));
    qkv_nn_linear pool = {.w = m->pool_w, .b = m->pool_b, .C = C, .OC = C};
    const qkv_nn_lora *pl =
        m->lora_slot ? &m->lora_slot[qkv__lora_head_slot(m->cfg.num_layers, QKV__LS_POOLER)] : NULL;
    if (pl && pl->r > 0) pool.lora = pl; /* a LoRA adapter's (lora_apply.c) */
    const qkv_nn_linear cls = {.w = m->cls_w, .b = m->cls_b, .C = C, .OC = NL};
    qkv_status st = qkv_nn_linear_forward(rt, &pool, pooled, first, n_seq, QKV_ACT_TANH, NULL);
    if (st == QKV_OK)
        st = qkv_nn_linear_forward(rt, &cls, logits, pooled, n_seq, QKV_ACT_NONE, NULL);
    qkv__free(first);
    return st;
}
