/* trainer.c — what every architecture's trainer shares (see trainer.h): the parameter list built
 * from the architecture's table, fresh initialization, configs from Hugging Face directories,
 * the activation arena, batch checks, the loss, and the public qkv_trainer_* entry points. */
#include "train/trainer.h"
#include "train/dist.h"

#include "core/abi.h"
#include "core/alloc.h"
#include "core/error.h"
#include "core/rng.h"
#include "io/json.h"
#include "models/bert.h"
#include "models/gpt.h"
#include "nn/nn.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---------------------------------------------------------------- architectures */

const char *qkv__tarch_name(qkv__tarch a) {
    return a == QKV__TARCH_LLAMA      ? "llama"
           : a == QKV__TARCH_BERT     ? "bert"
           : a == QKV__TARCH_BERT_CLS ? "bert_cls"
           : a == QKV__TARCH_MARIAN   ? "marian"
                                      : "gpt2";
}

int qkv__tarch_parse(const char *s, qkv__tarch *a) {
    if (!s) return 0;
    if (strcmp(s, "gpt2") == 0)
        *a = QKV__TARCH_GPT2;
    else if (strcmp(s, "llama") == 0)
        *a = QKV__TARCH_LLAMA;
    else if (strcmp(s, "bert") == 0)
        *a = QKV__TARCH_BERT;
    else if (strcmp(s, "bert_cls") == 0)
        *a = QKV__TARCH_BERT_CLS;
    else if (strcmp(s, "marian") == 0)
        *a = QKV__TARCH_MARIAN;
    else
        return 0;
    return 1;
}

static const qkv__param_table *table_of(qkv__tarch a) {
    return a == QKV__TARCH_LLAMA      ? &qkv__params_llama
           : a == QKV__TARCH_BERT     ? &qkv__params_bert
           : a == QKV__TARCH_BERT_CLS ? &qkv__params_bert_cls
           : a == QKV__TARCH_MARIAN   ? &qkv__params_marian
                                      : &qkv__params_gpt2;
}

qkv_status qkv__tconfig_load(const char *dir, qkv__tconfig *c) {
    char path[4096];
    QKV_TRY(qkv__json_config_path(dir, path, sizeof path));
    memset(c, 0, sizeof *c);
    c->init_std = 0.02;
    c->bos_id = c->eos_id = c->pad_id = -1;
    qkv_bert_config bc;
    qkv_gpt_config gc;
    /* model_type picks the parser, so its errors are the ones the user sees */
    qkv__json_begin();
    json_t *root = NULL;
    qkv_status st = qkv__json_load_file(path, 0, &root);
    const char *mt = NULL; /* a model_type of another JSON type is refused, naming it */
    if (st == QKV_OK) st = qkv__json_str(path, root, "model_type", NULL, &mt);
    const int bert = mt && strcmp(mt, "bert") == 0, marian = mt && strcmp(mt, "marian") == 0;
    json_decref(root);
    qkv__json_end();
    QKV_TRY(st);
    if (marian) return qkv__tconfig_load_marian(dir, c);
    if (bert) {
        QKV_TRY(qkv__bert_config_load(dir, &bc));
        c->arch = QKV__TARCH_BERT;
        c->V = bc.vocab_size, c->P = bc.max_position, c->C = bc.hidden_size;
        c->L = bc.num_layers, c->H = c->Hk = bc.num_heads, c->D = c->C / c->H;
        c->F = bc.intermediate_size, c->TV = bc.type_vocab_size, c->eps = bc.layer_norm_eps;
        c->act = bc.act, c->tied = 1, c->pad_id = bc.pad_token_id;
        if (c->TV < 1)
            return qkv__fail(QKV_ERR_UNSUPPORTED, "%s: training needs type_vocab_size >= 1", path);
        return QKV_OK;
    }
    QKV_TRY(qkv__gpt_config_load(dir, &gc));
    c->V = gc.vocab_size, c->P = gc.max_position, c->C = gc.hidden_size, c->L = gc.num_layers;
    c->H = gc.num_heads, c->Hk = gc.num_kv_heads, c->D = gc.head_dim, c->F = gc.intermediate_size;
    c->eps = gc.norm_eps, c->act = gc.act, c->tied = gc.tied, c->rope_theta = gc.rope_theta;
    c->bos_id = gc.bos_token_id, c->eos_id = gc.eos_token_id;
    if (gc.arch == QKV_GPT_ARCH_LLAMA) {
        c->arch = QKV__TARCH_LLAMA;
        return QKV_OK;
    }
    c->arch = QKV__TARCH_GPT2;
    const char *why = !gc.tied                ? "tie_word_embeddings (must be true)"
                      : gc.attn_scale != 0.0f ? "scale_attn_weights (must be true)"
                      : gc.scale_by_layer     ? "scale_attn_by_inverse_layer_idx"
                      : gc.intermediate_size != 4 * gc.hidden_size ? "n_inner (must be 4 n_embd)"
                                                                   : NULL;
    if (why) return qkv__fail(QKV_ERR_UNSUPPORTED, "%s: training does not support %s", path, why);
    return QKV_OK;
}

void qkv_classifier_spec_init_sized(qkv_classifier_spec *s, size_t struct_size) {
    if (!s) return;
    qkv_classifier_spec d = {sizeof d, 0, NULL, -1, 0};
    QKV__STRUCT_FILL(qkv_classifier_spec, s, struct_size, &d);
}

qkv_status qkv__tconfig_load_cls(const char *dir, const qkv_classifier_spec *spec, qkv__tconfig *c,
                                 qkv__labels *labels) {
    static const char fn[] = "qkv_trainer_load_hf_classifier";
    memset(labels, 0, sizeof *labels);
    qkv_classifier_spec sp;
    qkv_classifier_spec_init(&sp);
    if (spec) QKV_TRY(QKV__STRUCT_IN(qkv_classifier_spec, &sp, spec, NULL, fn));
    if (sp.num_labels < 0 || sp.num_labels > QKV__MAX_LABELS || (sp.labels && sp.num_labels < 1) ||
        sp.problem_type < -1 || sp.problem_type > QKV_PROBLEM_REGRESSION)
        return qkv__fail(QKV_ERR_INVALID_ARG,
                         "%s: num_labels %lld (0 to %lld; >= 1 with names) or problem_type %d "
                         "(-1 or a qkv_problem_type) out of range",
                         fn, (long long)sp.num_labels, (long long)QKV__MAX_LABELS, sp.problem_type);
    QKV_TRY(qkv__tconfig_load(dir, c));
    char path[4096];
    QKV_TRY(qkv__json_config_path(dir, path, sizeof path));
    if (c->arch != QKV__TARCH_BERT)
        return qkv__fail(QKV_ERR_UNSUPPORTED,
                         "%s: sequence classification needs a BERT (model_type bert), not %s", path,
                         qkv__tarch_name(c->arch));
    qkv_bert_config bc;
    QKV_TRY(qkv__bert_config_load(dir, &bc));
    qkv__json_begin();
    json_t *root = NULL;
    qkv_status st = qkv__json_load_file(path, 0, &root);
    qkv__labels cfgl = {0};
    if (st == QKV_OK) st = qkv__labels_parse(path, root, &cfgl);
    json_t *ir = root ? json_object_get(root, "initializer_range") : NULL;
    if (st == QKV_OK && ir && !json_is_null(ir)) {
        if (!json_is_number(ir) || !(json_number_value(ir) >= 0.0) ||
            !(json_number_value(ir) < 1e3))
            st = qkv__fail(QKV_ERR_FORMAT, "%s: initializer_range must be a number in [0, 1000)",
                           path);
        else
            c->init_std = json_number_value(ir);
    }
    json_decref(root);
    qkv__json_end();
    QKV_TRY(st);
    /* the spec's labels, else config.json's (transformers: num_labels=k without names makes
     * LABEL_0 ... LABEL_k-1) */
    const qkv_problem_type p = sp.problem_type >= 0 ? (qkv_problem_type)sp.problem_type
                               : cfgl.problem_given ? cfgl.problem
                               : (sp.num_labels ? sp.num_labels : cfgl.n) == 1
                                   ? QKV_PROBLEM_REGRESSION
                                   : QKV_PROBLEM_SINGLE_LABEL;
    if (sp.num_labels > 0)
        st = qkv__labels_make(sp.num_labels, sp.labels, p, labels);
    else
        st = qkv__labels_make(cfgl.n, (const char *const *)cfgl.names, p, labels);
    qkv__labels_free(&cfgl);
    QKV_TRY(st);
    labels->problem_given = 1;
    c->arch = QKV__TARCH_BERT_CLS;
    c->NL = labels->n;
    c->problem = p;
    c->p_hidden = bc.hidden_dropout;
    c->p_attn = bc.attn_dropout;
    c->p_cls = bc.classifier_dropout;
    return QKV_OK;
}

/* ---------------------------------------------------------------- parameters */

/* Calls fn for every parameter of cfg, in named_parameters() order (the rows of
 * models/params.h: l = -1 pre, 0..L-1 layers, L post, L + 1 head), with its shape. */
typedef qkv_status (*param_fn)(void *ctx, const char *name, int64_t d0, int64_t d1, int64_t l,
                               const qkv__param_spec *row);

static qkv_status walk_params(const qkv__tconfig *cfg, const qkv__param_table *tab, param_fn fn,
                              void *ctx) {
    const int64_t L = cfg->L;
    const qkv__dims dims = {.V = cfg->V,
                            .P = cfg->P,
                            .C = cfg->C,
                            .F = cfg->F,
                            .Q = cfg->H * cfg->D,
                            .K = cfg->Hk * cfg->D,
                            .TV = cfg->TV,
                            .NL = cfg->NL,
                            .Vd = cfg->Vd,
                            .F2 = cfg->F2};
    char name[sizeof((qkv__tparam *)0)->name];
    /* l: -1 pre, 0..L-1 layer, then the L2 layer2 rows (l = L + j, named j), L post (L + 1 head)
     * as fn sees it */
    const int64_t L2 = tab->n_layer2 ? cfg->L2 : 0;
    for (int64_t k = -1; k <= L + L2 + 1; k++) {
        const int dec = k >= L && k < L + L2;
        const int64_t l = dec ? k - L : k < L ? k : k - L2; /* what fn gets, the name's index */
        const qkv__param_spec *rows = k < 0         ? tab->pre
                                      : k < L       ? tab->layer
                                      : dec         ? tab->layer2
                                      : k == L + L2 ? tab->post
                                                    : tab->head;
        int n = k < 0         ? tab->n_pre
                : k < L       ? tab->n_layer
                : dec         ? tab->n_layer2
                : k == L + L2 ? tab->n_post
                              : tab->n_head;
        for (int i = 0; i < n; i++) {
            if (rows[i].untied_only && cfg->tied) continue;
            if ((rows[i].embed == QKV__EMB_SHARED && !cfg->shared) ||
                (rows[i].embed == QKV__EMB_SEPARATE && cfg->shared))
                continue;
            if (rows[i].dtype != QKV_DTYPE_F32) /* the flat buffers are F32 */
                return qkv__fail(QKV_ERR_UNSUPPORTED, "trainer: %s is not F32", rows[i].name);
            if (qkv__param_name(name, sizeof name, k <= L + L2 ? tab->prefix : "", &rows[i], l) !=
                QKV_OK)
                return QKV_ERR_INVALID_ARG;
            QKV_TRY(fn(ctx, name, qkv__param_dim(rows[i].d0, &dims),
                       rows[i].d1 == QKV__DIM_NONE ? 0 : qkv__param_dim(rows[i].d1, &dims), l,
                       &rows[i]));
        }
    }
    return QKV_OK;
}

static qkv_status add_param(void *ctx, const char *name, int64_t d0, int64_t d1, int64_t l,
                            const qkv__param_spec *row) {
    qkv_trainer *t = ctx;
    if (l < 0) t->n_pre++;
    qkv__tparam *p = &t->params[t->n_params++];
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ndim = d1 ? 2 : 1;
    p->shape[0] = d0;
    p->shape[1] = d1;
    p->numel = d0 * (d1 ? d1 : 1);
    p->offset = t->n_floats;
    p->decay = row->decay;
    p->init = row->init;
    p->trainable = row->trainable;
    p->dtype = row->dtype;
    /* keep every tensor 64-byte aligned in the flat buffers */
    t->n_floats += (p->numel + 15) / 16 * 16;
    return QKV_OK;
}

static qkv_status check_config(const qkv__tconfig *c) {
    const int64_t lim = (int64_t)1 << 24;
    if (c->V < 1 || c->V > (int64_t)INT32_MAX || c->P < 1 || c->P > lim || c->C < 1 ||
        c->C > 65536 || c->L < 1 || c->L > 4096 || c->H < 1 || c->Hk < 1 || c->H % c->Hk != 0 ||
        c->D < 1 || c->D > 65536 || c->F < 1 || c->F > (1 << 20) || c->TV < 0 || c->TV > lim ||
        (c->arch == QKV__TARCH_LLAMA && c->D % 2 != 0) || !(c->eps >= 0) ||
        (c->arch == QKV__TARCH_BERT_CLS && (c->NL < 1 || c->NL > QKV__MAX_LABELS)))
        return qkv__fail(
            QKV_ERR_INVALID_ARG,
            "trainer: bad shape (vocab %lld, positions %lld, hidden %lld, layers %lld, "
            "heads %lld/%lld of dim %lld, MLP %lld): all >= 1, the KV heads must "
            "divide the heads",
            (long long)c->V, (long long)c->P, (long long)c->C, (long long)c->L, (long long)c->H,
            (long long)c->Hk, (long long)c->D, (long long)c->F);
    if (c->arch == QKV__TARCH_MARIAN &&
        (c->L2 < 1 || c->L2 > 4096 || c->H2 < 1 || c->C % c->H2 != 0 || c->F2 < 1 ||
         c->F2 > (1 << 20) || c->Vd < 1 || c->Vd > (int64_t)INT32_MAX || c->start_id < 0 ||
         c->start_id >= c->Vd || c->pad_id < 0 || c->pad_id >= c->Vd))
        return qkv__fail(QKV_ERR_INVALID_ARG,
                         "trainer: bad decoder shape (layers %lld, heads %lld, MLP %lld, vocab "
                         "%lld, start %d, pad %d)",
                         (long long)c->L2, (long long)c->H2, (long long)c->F2, (long long)c->Vd,
                         c->start_id, c->pad_id);
    double total =
        (double)(c->V + c->Vd + c->P + c->TV) * (double)c->C +
        (double)c->L2 * (4.0 * (double)c->C * (double)c->C + 3.0 * (double)c->C * (double)c->F2) +
        (double)c->L *
            (4.0 * (double)c->C * (double)c->H * (double)c->D + 3.0 * (double)c->C * (double)c->F);
    if (total > 4e10) return qkv__fail(QKV_ERR_OVERFLOW, "trainer: model too large");
    return QKV_OK;
}

qkv_status qkv__trainer_build_segs(qkv_trainer *t) {
    int64_t n = 0;
    for (size_t i = 0; i < t->n_params; i++)
        n += (t->params[i].numel + QKV__SEG_FLOATS - 1) / QKV__SEG_FLOATS;
    qkv__tseg *segs = qkv__calloc((size_t)n, sizeof *segs);
    if (!segs) return qkv__fail(QKV_ERR_NOMEM, "trainer: out of memory");
    for (size_t i = 0, k = 0; i < t->n_params; i++)
        for (int64_t b = 0; b < t->params[i].numel; b += QKV__SEG_FLOATS) {
            int64_t e =
                b + QKV__SEG_FLOATS < t->params[i].numel ? b + QKV__SEG_FLOATS : t->params[i].numel;
            segs[k++] = (qkv__tseg){(int64_t)i, t->params[i].offset + b, t->params[i].offset + e};
        }
    qkv__free(t->segs);
    t->segs = segs;
    t->n_segs = n;
    return QKV_OK;
}

qkv_status qkv__trainer_alloc(const qkv__tconfig *cfg, qkv_trainer **out) {
    *out = NULL;
    if (!cfg) return qkv__fail(QKV_ERR_INVALID_ARG, "trainer: NULL config");
    QKV_TRY(check_config(cfg));
    qkv_trainer *t = qkv__calloc(1, sizeof *t);
    if (!t) return qkv__fail(QKV_ERR_NOMEM, "trainer: out of memory");
    t->cfg = *cfg;
    t->shape = (qkv_gpt2_shape){cfg->V, cfg->P, cfg->C, cfg->L, cfg->H};
    t->tab = table_of(cfg->arch);
    const qkv__param_table *tab = t->tab;
    const int64_t L = cfg->L;
    const size_t n_rows = (size_t)(tab->n_pre + tab->n_post + tab->n_head) +
                          (size_t)L * (size_t)tab->n_layer +
                          (size_t)cfg->L2 * (size_t)tab->n_layer2;
    t->params = qkv__calloc(n_rows, sizeof *t->params);
    if (!t->params) {
        qkv__free(t);
        return qkv__fail(QKV_ERR_NOMEM, "trainer: out of memory");
    }
    qkv_status st = walk_params(cfg, tab, add_param, t);
    if (st != QKV_OK) {
        qkv_trainer_free(t);
        return st;
    }
    (void)qkv__trainer_build_segs(t);
    size_t bytes = (size_t)t->n_floats * sizeof(float);
    t->w = qkv__calloc(1, bytes);
    t->g = qkv__calloc(1, bytes);
    t->m = qkv__calloc(1, bytes);
    t->v = qkv__calloc(1, bytes);
    t->mv_end = t->n_floats;
    if (!t->w || !t->g || !t->m || !t->v || !t->segs) {
        qkv_trainer_free(t);
        return qkv__fail(QKV_ERR_NOMEM, "trainer: cannot allocate %lld parameters (x4 buffers)",
                         (long long)t->n_floats);
    }
    *out = t;
    return QKV_OK;
}

/* ---------------------------------------------------------------- sizes claimed by files */

typedef struct numel_sum {
    int64_t all, required, L;
    int bert, cls;
} numel_sum;

static qkv_status sum_param(void *ctx, const char *name, int64_t d0, int64_t d1, int64_t l,
                            const qkv__param_spec *row) {
    (void)name, (void)row;
    numel_sum *s = ctx;
    const int64_t n = d0 * (d1 ? d1 : 1);
    s->all += n;
    /* what a Hugging Face file must hold: checkpoint.c's load_weights starts BERT's heads and a
     * classifier's pooler fresh when the file lacks them */
    if (!(s->bert && (l > s->L || (s->cls && l == s->L)))) s->required += n;
    return QKV_OK;
}

qkv_status qkv__tconfig_check_file(const qkv__tconfig *cfg, const qkv_safetensors *st,
                                   const char *path, int checkpoint) {
    QKV_TRY(check_config(cfg));
    numel_sum s = {.L = cfg->L,
                   .cls = cfg->arch == QKV__TARCH_BERT_CLS,
                   .bert = cfg->arch == QKV__TARCH_BERT || cfg->arch == QKV__TARCH_BERT_CLS};
    QKV_TRY(walk_params(cfg, table_of(cfg->arch), sum_param, &s));
    double have = 0;
    for (size_t i = 0; i < qkv_safetensors_count(st); i++)
        have += (double)qkv_safetensors_tensor(st, i)->nbytes;
    /* a checkpoint holds the weights and both AdamW moments in F32; a model at least every
     * required tensor in a 2-byte type (F16, BF16) */
    const double need = checkpoint ? 12.0 * (double)s.all : 2.0 * (double)s.required;
    if (need > have)
        return qkv__fail(QKV_ERR_FORMAT,
                         "%s: the %s claims %lld parameters (vocab %lld, positions %lld, hidden "
                         "%lld, layers %lld, MLP %lld), %.0f bytes at least, but the file holds "
                         "%.0f bytes of tensors",
                         path, checkpoint ? "metadata" : "config", (long long)s.all,
                         (long long)cfg->V, (long long)cfg->P, (long long)cfg->C, (long long)cfg->L,
                         (long long)cfg->F, need, have);
    return QKV_OK;
}

/* Parameter i as transformers initializes it, by its table row's init (models/params.h). */
void qkv__trainer_init_param(qkv_trainer *t, size_t i, uint64_t seed) {
    const qkv__tparam *p = &t->params[i];
    float *w = t->w + p->offset;
    if (p->init == QKV__INIT_NORMAL || p->init == QKV__INIT_NORMAL_PROJ) {
        double s = t->cfg.init_std;
        if (p->init == QKV__INIT_NORMAL_PROJ) s /= sqrt(2.0 * (double)t->cfg.L);
        for (int64_t j = 0; j < p->numel; j++)
            w[j] = (float)(s * (double)qkv__rng_normal(seed, i, (uint64_t)j));
    } else {
        const float v = p->init == QKV__INIT_ONE ? 1.0f : 0.0f;
        for (int64_t j = 0; j < p->numel; j++) w[j] = v;
    }
}

static void init_weights(qkv_trainer *t, uint64_t seed) {
    for (size_t i = 0; i < t->n_params; i++) qkv__trainer_init_param(t, i, seed);
}

qkv_status qkv_trainer_new(const qkv_gpt2_shape *shape, uint64_t seed, qkv_trainer **out) {
    if (!out || !shape) return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_trainer_new: NULL argument");
    if (shape->n_head < 1 || shape->n_embd % shape->n_head != 0)
        return qkv__fail(QKV_ERR_INVALID_ARG,
                         "trainer: bad shape: n_head %lld must be >= 1 and divide n_embd %lld",
                         (long long)shape->n_head, (long long)shape->n_embd);
    qkv__tconfig c = {.arch = QKV__TARCH_GPT2,
                      .V = shape->vocab_size,
                      .P = shape->n_positions,
                      .C = shape->n_embd,
                      .L = shape->n_layer,
                      .H = shape->n_head,
                      .Hk = shape->n_head,
                      .D = shape->n_embd / shape->n_head,
                      .F = 4 * shape->n_embd,
                      .eps = 1e-5f,
                      .act = QKV_ACT_GELU_TANH,
                      .tied = 1,
                      .init_std = 0.02,
                      .bos_id = -1,
                      .eos_id = -1,
                      .pad_id = -1};
    qkv_trainer *t;
    QKV_TRY(qkv__trainer_alloc(&c, &t));
    init_weights(t, seed);
    *out = t;
    return QKV_OK;
}

qkv_status qkv_trainer_new_hf_config(const char *dir, uint64_t seed, qkv_trainer **out) {
    if (!dir || !out)
        return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_trainer_new_hf_config: NULL argument");
    *out = NULL;
    qkv__tconfig c;
    QKV_TRY(qkv__tconfig_load(dir, &c));
    qkv_trainer *t;
    QKV_TRY(qkv__trainer_alloc(&c, &t));
    init_weights(t, seed);
    *out = t;
    return QKV_OK;
}

void qkv_trainer_free(qkv_trainer *t) {
    if (!t) return;
    qkv__free(t->w);
    qkv__free(t->g);
    qkv__free(t->m);
    qkv__free(t->v);
    qkv__free(t->params);
    qkv__free(t->segs);
    qkv__free(t->arena);
    qkv__free(t->layer);
    qkv__free(t->layer2);
    qkv__free(t->pe);
    qkv__labels_free(&t->labels);
    qkv__tlora_free(t->lora);
    qkv__free(t);
}

void qkv_trainer_get_shape(const qkv_trainer *t, qkv_gpt2_shape *shape) {
    if (t && shape) *shape = t->shape;
}

const char *qkv_trainer_arch(const qkv_trainer *t) { return t ? qkv__tarch_name(t->cfg.arch) : ""; }

int64_t qkv_trainer_num_labels(const qkv_trainer *t) {
    return t && t->cfg.arch == QKV__TARCH_BERT_CLS ? t->cfg.NL : 0;
}

const char *qkv_trainer_label(const qkv_trainer *t, int64_t i) {
    return t && t->cfg.arch == QKV__TARCH_BERT_CLS && i >= 0 && i < t->labels.n ? t->labels.names[i]
                                                                                : NULL;
}

qkv_problem_type qkv_trainer_problem_type(const qkv_trainer *t) {
    return t ? t->cfg.problem : QKV_PROBLEM_SINGLE_LABEL;
}

qkv_status qkv_trainer_set_dropout(qkv_trainer *t, float hidden, float attention,
                                   float classifier) {
    if (!t) return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_trainer_set_dropout: NULL trainer");
    const float p[3] = {hidden, attention, classifier};
    for (int i = 0; i < 3; i++)
        if (!(p[i] < 1.0f) || p[i] != p[i])
            return qkv__fail(QKV_ERR_INVALID_ARG,
                             "qkv_trainer_set_dropout: rate %g is not below 1 (negative: keep)",
                             (double)p[i]);
    if (t->cfg.arch != QKV__TARCH_BERT_CLS && t->cfg.arch != QKV__TARCH_MARIAN)
        return qkv__fail(QKV_ERR_UNSUPPORTED,
                         "qkv_trainer_set_dropout: dropout is for classifiers and marian (this is "
                         "%s)",
                         qkv__tarch_name(t->cfg.arch));
    if (hidden >= 0) t->cfg.p_hidden = hidden;
    if (attention >= 0) t->cfg.p_attn = attention;
    if (classifier >= 0)
        *(t->cfg.arch == QKV__TARCH_MARIAN ? &t->cfg.p_act : &t->cfg.p_cls) = classifier;
    return QKV_OK;
}

qkv_status qkv_trainer_set_label_smoothing(qkv_trainer *t, float eps) {
    if (!t) return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_trainer_set_label_smoothing: NULL trainer");
    if (!(eps >= 0.0f && eps < 1.0f))
        return qkv__fail(QKV_ERR_INVALID_ARG,
                         "qkv_trainer_set_label_smoothing: %g is outside [0, 1)", (double)eps);
    t->cfg.smoothing = eps;
    return QKV_OK;
}

size_t qkv_trainer_fresh_params(const qkv_trainer *t) { return t ? t->n_fresh : 0; }

int64_t qkv_trainer_steps(const qkv_trainer *t) { return t ? t->steps : 0; }

size_t qkv_trainer_param_count(const qkv_trainer *t) { return t ? t->n_params : 0; }

int64_t qkv_trainer_numel(const qkv_trainer *t) {
    int64_t numel = 0;
    for (size_t i = 0; t && i < t->n_params; i++) numel += t->params[i].numel;
    return numel;
}

size_t qkv_trainer_optimizer_bytes(const qkv_trainer *t) {
    return t ? 2 * (size_t)(t->mv_end - t->mv_begin) * sizeof(float) : 0;
}

double qkv_trainer_step_flops(const qkv_trainer *t, int64_t B, int64_t T) {
    if (!t) return 0.0;
    double tokens = (double)B * (double)T;
    return 6.0 * (double)qkv_trainer_numel(t) * tokens +
           12.0 * (double)t->cfg.L * tokens * (double)T * (double)(t->cfg.H * t->cfg.D);
}

qkv_status qkv_trainer_param(qkv_trainer *t, size_t i, qkv_param_info *info) {
    if (!t || !info || i >= t->n_params)
        return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_trainer_param: no parameter %zu", i);
    const qkv__tparam *p = &t->params[i];
    qkv_param_info o = {sizeof o,    p->name,          p->ndim,          {p->shape[0], p->shape[1]},
                        p->numel,    t->w + p->offset, t->g + p->offset, p->decay,
                        p->trainable};
    QKV__STRUCT_OUT(qkv_param_info, info, &o);
    return QKV_OK;
}

qkv_status qkv_trainer_set_trainable(qkv_trainer *t, size_t i, int trainable) {
    if (!t || i >= t->n_params)
        return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_trainer_set_trainable: no parameter %zu", i);
    t->params[i].trainable = trainable != 0;
    return QKV_OK;
}

float *qkv__trainer_buffer(qkv_trainer *t, int which, int64_t *n) {
    *n = which < 2 ? t->n_floats : t->mv_end - t->mv_begin;
    return which == 0 ? t->w : which == 1 ? t->g : which == 2 ? t->m : t->v;
}

int64_t qkv__trainer_layers(const qkv_trainer *t) { return t->cfg.L; }

void qkv__trainer_layer_range(const qkv_trainer *t, int64_t l, int64_t *begin, int64_t *end) {
    const size_t first = (size_t)t->tab->n_pre + (size_t)l * (size_t)t->tab->n_layer;
    const qkv__tparam *last = &t->params[first + (size_t)t->tab->n_layer - 1];
    *begin = t->params[first].offset;
    *end = last->offset + (last->numel + 15) / 16 * 16; /* add_param's padding */
}

void qkv__trainer_set_layer_hook(qkv_trainer *t, void (*fn)(void *, int64_t), void *user) {
    t->layer_hook = fn, t->layer_hook_user = user;
}

void qkv_trainer_zero_grad(qkv_trainer *t) {
    if (t) memset(t->g, 0, (size_t)t->n_floats * sizeof(float));
}

const float *qkv_trainer_logits(const qkv_trainer *t) {
    return t && t->logits_valid ? t->logits : NULL;
}

/* ---------------------------------------------------------------- activations */

typedef struct {
    float *base;
    size_t used; /* floats */
} carve;

static float *take(carve *c, int64_t n) {
    size_t k = ((size_t)n + 15) / 16 * 16;
    float *p = c->base ? c->base + c->used : NULL;
    c->used += k;
    return p;
}

static void bind_layer(const qkv__tconfig *cf, carve *c, qkv__tacts *a, int64_t B, int64_t T) {
    const int64_t N = B * T, C = cf->C, F = cf->F, Q = cf->H * cf->D, K = cf->Hk * cf->D;
    const int bert = cf->arch == QKV__TARCH_BERT || cf->arch == QKV__TARCH_BERT_CLS ||
                     cf->arch == QKV__TARCH_MARIAN,
              llama = cf->arch == QKV__TARCH_LLAMA;
    memset(a, 0, sizeof *a);
    a->ln1 = take(c, N * C);
    a->mean1 = take(c, N);
    a->rstd1 = take(c, N);
    a->q = take(c, N * Q);
    a->k = take(c, N * K);
    a->v = take(c, N * K);
    a->att = take(c, N * Q);
    a->lse = take(c, B * cf->H * T);
    if (bert) a->res1 = take(c, N * C);
    a->res2 = take(c, N * C);
    if (!bert) a->ln2 = take(c, N * C);
    a->mean2 = take(c, N);
    a->rstd2 = take(c, N);
    a->h = take(c, N * F);
    if (llama) a->u = take(c, N * F);
    a->a = take(c, N * F);
}

/* Marian (T: the longer of source and target): the encoder's layers as BERT's, the decoder's
 * with their cross-attention and third norm. */
static void bind_marian(qkv_trainer *t, carve *c, int64_t B, int64_t T) {
    const qkv__tconfig *cf = &t->cfg;
    const int64_t N = B * T, C = cf->C, L = cf->L, L2 = cf->L2;
    const int64_t F = cf->F > cf->F2 ? cf->F : cf->F2;
    t->resid = take(c, (L + 1) * N * C);
    for (int64_t l = 0; l < L; l++) bind_layer(cf, c, &t->layer[l], B, T);
    t->resid2 = take(c, (L2 + 1) * N * C);
    for (int64_t l = 0; l < L2; l++) {
        qkv__tacts *a = &t->layer2[l];
        memset(a, 0, sizeof *a);
        a->q = take(c, N * C), a->k = take(c, N * C), a->v = take(c, N * C);
        a->att = take(c, N * C), a->lse = take(c, B * cf->H2 * T);
        a->res1 = take(c, N * C), a->ln1 = take(c, N * C);
        a->mean1 = take(c, N), a->rstd1 = take(c, N);
        a->cq = take(c, N * C), a->catt = take(c, N * C), a->clse = take(c, B * cf->H2 * T);
        a->res2 = take(c, N * C), a->ln2 = take(c, N * C);
        a->mean2 = take(c, N), a->rstd2 = take(c, N);
        a->h = take(c, N * cf->F2), a->a = take(c, N * cf->F2);
        a->res3 = take(c, N * C), a->mean3 = take(c, N), a->rstd3 = take(c, N);
    }
    t->xkv = take(c, L2 * 2 * N * C);
    t->denc = take(c, N * C);
    t->dec_ids = (int32_t *)take(c, N);
    t->logits = take(c, N * cf->Vd);
    t->row_loss = take(c, N);
    t->tgt = (int32_t *)take(c, N);
    t->dresid = take(c, N * C);
    t->dln = take(c, N * C);
    t->dx1 = take(c, N * C);
    t->datt = take(c, N * C);
    t->dq = take(c, N * C);
    t->dk = take(c, N * C);
    t->dv = take(c, N * C);
    t->da = take(c, N * F);
    t->dh = take(c, N * F);
}

/* Lays everything out (c->base NULL: only counts). */
static void bind_all(qkv_trainer *t, carve *c, int64_t B, int64_t T, qkv_recompute policy) {
    const qkv__tconfig *cf = &t->cfg;
    if (cf->arch == QKV__TARCH_MARIAN) {
        bind_marian(t, c, B, T);
        return;
    }
    const int64_t N = B * T, C = cf->C, V = cf->V, L = cf->L, F = cf->F, Q = cf->H * cf->D,
                  K = cf->Hk * cf->D;
    const int cls = cf->arch == QKV__TARCH_BERT_CLS, mlm = cf->arch == QKV__TARCH_BERT;
    const int bert = mlm || cls, llama = cf->arch == QKV__TARCH_LLAMA, lm = !cls;
    int64_t nl = policy == QKV_RECOMPUTE_LAYERS ? 1 : L;
    t->resid = take(c, (L + 1) * N * C);
    for (int64_t l = 0; l < nl; l++) bind_layer(cf, c, &t->layer[l], B, T);
    t->emb = bert ? take(c, N * C) : NULL;
    t->emb_mean = bert ? take(c, N) : NULL;
    t->emb_rstd = bert ? take(c, N) : NULL;
    t->head = mlm ? take(c, N * C) : NULL;
    t->head_act = mlm ? take(c, N * C) : NULL;
    t->lnf = lm ? take(c, N * C) : NULL;
    t->meanf = lm ? take(c, N) : NULL;
    t->rstdf = lm ? take(c, N) : NULL;
    t->logits = take(c, lm ? N * V : B * cf->NL);
    t->cls_x = cls ? take(c, B * C) : NULL;
    t->pool_h = cls ? take(c, B * C) : NULL;
    t->pool_a = cls ? take(c, B * C) : NULL;
    t->pool_d = cls ? take(c, B * C) : NULL;
    t->dcls = cls ? take(c, B * C) : NULL;
    t->dpool = cls ? take(c, B * (C > cf->NL ? C : cf->NL)) : NULL;
    t->row_loss = take(c, N);
    t->tgt = (int32_t *)take(c, N); /* int32 and float have one size */
    t->dresid = take(c, N * C);
    t->dln = take(c, N * C);
    t->dx1 = bert ? take(c, N * C) : NULL;
    t->datt = take(c, N * Q);
    t->dq = take(c, N * Q);
    t->dqr = llama ? take(c, N * Q) : NULL;
    t->dk = take(c, N * K);
    t->dkr = llama ? take(c, N * K) : NULL;
    t->dv = take(c, N * K);
    t->da = take(c, N * F);
    t->dh = take(c, N * F);
    t->du = llama ? take(c, N * F) : NULL;
}

qkv_status qkv_trainer_reserve(qkv_trainer *t, int64_t B, int64_t T, qkv_recompute policy,
                               size_t *bytes) {
    if (!t) return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_trainer_reserve: NULL trainer");
    if (B < 1 || T < 1 || T > t->cfg.P || B > ((int64_t)1 << 20))
        return qkv__fail(QKV_ERR_INVALID_ARG,
                         "qkv_trainer_reserve: B = %lld, T = %lld (need B >= 1 and 1 <= T <= "
                         "n_positions = %lld)",
                         (long long)B, (long long)T, (long long)t->cfg.P);
    if (policy != QKV_RECOMPUTE_NONE && policy != QKV_RECOMPUTE_LAYERS)
        return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_trainer_reserve: unknown recompute policy %d",
                         (int)policy);
    if (t->arena && B <= t->cap_B && T <= t->cap_T && policy == t->policy) {
        if (bytes) *bytes = t->arena_bytes;
        return QKV_OK;
    }
    if (t->arena) {
        B = B > t->cap_B ? B : t->cap_B;
        T = T > t->cap_T ? T : t->cap_T;
    }
    const int marian = t->cfg.arch == QKV__TARCH_MARIAN;
    if (marian && policy != QKV_RECOMPUTE_NONE)
        return qkv__fail(QKV_ERR_UNSUPPORTED,
                         "qkv_trainer_reserve: recomputation is not implemented for marian");
    int64_t nl = policy == QKV_RECOMPUTE_LAYERS ? 1 : t->cfg.L;
    qkv__tacts *layer = qkv__calloc((size_t)nl, sizeof *layer);
    qkv__tacts *layer2 = marian ? qkv__calloc((size_t)t->cfg.L2, sizeof *layer2) : NULL;
    if (!layer || (marian && !layer2)) {
        qkv__free(layer);
        qkv__free(layer2);
        return qkv__fail(QKV_ERR_NOMEM, "trainer: out of memory");
    }
    qkv__free(t->arena);
    qkv__free(t->layer);
    qkv__free(t->layer2);
    t->arena = NULL;
    t->layer = layer;
    t->layer2 = layer2;
    t->cap_B = t->cap_T = 0;
    t->logits_valid = 0;
    carve c = {0};
    bind_all(t, &c, B, T, policy);
    double need = (double)c.used * sizeof(float);
    if (need > (double)SIZE_MAX / 2)
        return qkv__fail(QKV_ERR_OVERFLOW, "trainer: activations for B %lld T %lld overflow",
                         (long long)B, (long long)T);
    t->arena = qkv__alloc(c.used * sizeof(float));
    if (!t->arena)
        return qkv__fail(QKV_ERR_NOMEM,
                         "trainer: cannot allocate %.1f MiB of activations for B %lld T %lld "
                         "(try a smaller batch, or recompute = layers)",
                         need / 1048576.0, (long long)B, (long long)T);
    c = (carve){t->arena, 0};
    bind_all(t, &c, B, T, policy);
    t->arena_bytes = c.used * sizeof(float);
    t->cap_B = B;
    t->cap_T = T;
    t->policy = policy;
    if (bytes) *bytes = t->arena_bytes;
    return QKV_OK;
}

/* ---------------------------------------------------------------- batches and the loss */

/* An encoder-decoder's batch: the source src_ids (B, S) with src_lens, the labels targets (B, T)
 * (-100 / -1 ignored), the decoder's inputs ids (B, T) or, when NULL, the labels shifted right
 * with decoder_start_token_id (ignored labels becoming pad), as transformers' shift_tokens_right.
 */
static qkv_status check_s2s_batch(qkv_trainer *t, const char *fn, const qkv_train_batch *b,
                                  qkv__tbatch *out) {
    const qkv__tconfig *c = &t->cfg;
    const int64_t B = b->B, T = b->T, S = b->S;
    if (!b->src_ids || !b->targets)
        return qkv__fail(QKV_ERR_INVALID_ARG,
                         "%s: an encoder-decoder's batch needs src_ids and "
                         "targets",
                         fn);
    if (B < 1 || T < 1 || S < 1 || T > c->P || S > c->P || B > ((int64_t)1 << 20))
        return qkv__fail(QKV_ERR_INVALID_ARG,
                         "%s: B = %lld, S = %lld, T = %lld (S and T must be in [1, %lld])", fn,
                         (long long)B, (long long)S, (long long)T, (long long)c->P);
    if (b->types || b->kv_lens || b->labels || b->values)
        return qkv__fail(QKV_ERR_INVALID_ARG,
                         "%s: token types, kv_lens (the source's are src_lens), labels and values "
                         "are not for an encoder-decoder",
                         fn);
    for (int64_t n = 0; n < B * S; n++)
        if (b->src_ids[n] < 0 || b->src_ids[n] >= c->V)
            return qkv__fail(QKV_ERR_INVALID_ARG, "%s: src_ids[%lld] = %d is outside [0, %lld)", fn,
                             (long long)n, b->src_ids[n], (long long)c->V);
    for (int64_t i = 0; b->src_lens && i < B; i++)
        if (b->src_lens[i] < 1 || b->src_lens[i] > S)
            return qkv__fail(QKV_ERR_INVALID_ARG, "%s: src_lens[%lld] = %d is outside [1, %lld]",
                             fn, (long long)i, b->src_lens[i], (long long)S);
    for (int64_t n = 0; n < B * T; n++) {
        const int32_t y = b->targets[n];
        if (y != -1 && y != -100 && (y < 0 || y >= c->Vd))
            return qkv__fail(QKV_ERR_INVALID_ARG,
                             "%s: targets[%lld] = %d is outside [0, %lld) (or -1 / -100: ignored)",
                             fn, (long long)n, y, (long long)c->Vd);
        if (b->ids && (b->ids[n] < 0 || b->ids[n] >= c->Vd))
            return qkv__fail(QKV_ERR_INVALID_ARG, "%s: ids[%lld] = %d is outside [0, %lld)", fn,
                             (long long)n, b->ids[n], (long long)c->Vd);
    }
    QKV_TRY(qkv_trainer_reserve(t, B, S > T ? S : T, QKV_RECOMPUTE_NONE, NULL));
    for (int64_t n = 0; n < B * T; n++) {
        t->tgt[n] = b->targets[n] < 0 ? -1 : b->targets[n];
        if (b->ids)
            t->dec_ids[n] = b->ids[n];
        else if (n % T == 0)
            t->dec_ids[n] = c->start_id;
        else
            t->dec_ids[n] = b->targets[n - 1] < 0 ? c->pad_id : b->targets[n - 1];
    }
    *out = (qkv__tbatch){.ids = t->dec_ids,
                         .tgt = t->tgt,
                         .kv_lens = b->src_lens,
                         .B = B,
                         .T = T,
                         .src = b->src_ids,
                         .S = S,
                         .seed = b->dropout_seed};
    return QKV_OK;
}

/* Checks b and copies its targets into t->tgt with every ignored one (-1 or -100) as -1. */
qkv_status qkv__trainer_check_batch(qkv_trainer *t, const char *fn, const qkv_train_batch *b,
                                    qkv__tbatch *out) {
    if (!b) return qkv__fail(QKV_ERR_INVALID_ARG, "%s: NULL batch", fn);
    qkv_train_batch local;
    QKV_TRY(QKV__STRUCT_IN(qkv_train_batch, &local, b, NULL, fn));
    b = &local;
    const int cls = t->cfg.arch == QKV__TARCH_BERT_CLS;
    if (t->cfg.arch == QKV__TARCH_MARIAN) return check_s2s_batch(t, fn, b, out);
    if (!b->ids || (!cls && !b->targets))
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: NULL batch, ids or targets", fn);
    if (cls && (t->cfg.problem == QKV_PROBLEM_SINGLE_LABEL ? !b->labels : !b->values))
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: a %s classifier's batch needs %s", fn,
                         qkv__problem_name(t->cfg.problem),
                         t->cfg.problem == QKV_PROBLEM_SINGLE_LABEL ? "labels" : "values");
    const int64_t B = b->B, T = b->T, V = t->cfg.V;
    if (B < 1 || T < 1 || T > t->cfg.P)
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: B = %lld, T = %lld (T must be <= %lld)", fn,
                         (long long)B, (long long)T, (long long)t->cfg.P);
    if (t->cfg.arch != QKV__TARCH_BERT && !cls && (b->types || b->kv_lens))
        return qkv__fail(QKV_ERR_INVALID_ARG,
                         "%s: token types and padding lengths are for encoders (this is %s)", fn,
                         qkv__tarch_name(t->cfg.arch));
    for (int64_t n = 0; n < B * T; n++) {
        if (b->ids[n] < 0 || b->ids[n] >= V)
            return qkv__fail(QKV_ERR_INVALID_ARG, "%s: ids[%lld] = %d is outside [0, %lld)", fn,
                             (long long)n, b->ids[n], (long long)V);
        int32_t y = cls ? -1 : b->targets[n];
        if (y != -1 && y != -100 && (y < 0 || y >= V))
            return qkv__fail(QKV_ERR_INVALID_ARG,
                             "%s: targets[%lld] = %d is outside [0, %lld) (or -1 / -100: ignored)",
                             fn, (long long)n, y, (long long)V);
        if (b->types && (b->types[n] < 0 || b->types[n] >= t->cfg.TV))
            return qkv__fail(QKV_ERR_INVALID_ARG, "%s: types[%lld] = %d is outside [0, %lld)", fn,
                             (long long)n, b->types[n], (long long)t->cfg.TV);
    }
    for (int64_t i = 0; b->kv_lens && i < B; i++)
        if (b->kv_lens[i] < 1 || b->kv_lens[i] > T)
            return qkv__fail(QKV_ERR_INVALID_ARG, "%s: kv_lens[%lld] = %d is outside [1, %lld]", fn,
                             (long long)i, b->kv_lens[i], (long long)T);
    const int64_t NL = t->cfg.NL;
    for (int64_t i = 0; cls && b->labels && t->cfg.problem == QKV_PROBLEM_SINGLE_LABEL && i < B;
         i++)
        if (b->labels[i] != -1 && b->labels[i] != -100 && (b->labels[i] < 0 || b->labels[i] >= NL))
            return qkv__fail(QKV_ERR_INVALID_ARG,
                             "%s: labels[%lld] = %d is outside [0, %lld) (or -1 / -100: ignored)",
                             fn, (long long)i, b->labels[i], (long long)NL);
    for (int64_t i = 0; cls && t->cfg.problem != QKV_PROBLEM_SINGLE_LABEL && i < B * NL; i++)
        if (!isfinite(b->values[i]) || (t->cfg.problem == QKV_PROBLEM_MULTI_LABEL &&
                                        !(b->values[i] >= 0.0f && b->values[i] <= 1.0f)))
            return qkv__fail(QKV_ERR_INVALID_ARG, "%s: values[%lld] = %g is not %s", fn,
                             (long long)i, (double)b->values[i],
                             t->cfg.problem == QKV_PROBLEM_MULTI_LABEL ? "in [0, 1]" : "finite");
    QKV_TRY(qkv_trainer_reserve(t, B, T, t->arena ? t->policy : QKV_RECOMPUTE_NONE, NULL));
    if (cls && t->cfg.problem == QKV_PROBLEM_SINGLE_LABEL)
        for (int64_t i = 0; i < B; i++) t->tgt[i] = b->labels[i] < 0 ? -1 : b->labels[i];
    else if (!cls)
        for (int64_t n = 0; n < B * T; n++) t->tgt[n] = b->targets[n] < 0 ? -1 : b->targets[n];
    *out = (qkv__tbatch){.ids = b->ids,
                         .tgt = t->tgt,
                         .types = b->types,
                         .kv_lens = b->kv_lens,
                         .B = B,
                         .T = T,
                         .values = b->values,
                         .seed = b->dropout_seed};
    return QKV_OK;
}

qkv_status qkv__trainer_loss(qkv_runtime *rt, qkv_trainer *t, int64_t N, int64_t V, int backward,
                             float scale, float *loss) {
    if (backward)
        QKV_TRY(qkv_nn_cross_entropy_fused(rt, loss, t->row_loss, t->logits, t->tgt, N, V, -1,
                                           t->cfg.smoothing, scale));
    else
        QKV_TRY(qkv_nn_cross_entropy_forward(rt, loss, t->row_loss, t->logits, t->tgt, N, V, -1,
                                             t->cfg.smoothing));
    t->logits_valid = !backward;
    return QKV_OK;
}

static qkv_status forward(qkv_runtime *rt, qkv_trainer *t, const qkv__tbatch *b, int backward,
                          float scale, float *loss) {
    t->logits_valid = 0;
    qkv__tlora_begin(t, b);
    switch (t->cfg.arch) {
    case QKV__TARCH_BERT: return qkv__bert_mlm_forward(rt, t, b, backward, scale, loss);
    case QKV__TARCH_BERT_CLS: return qkv__bert_cls_forward(rt, t, b, backward, scale, loss);
    case QKV__TARCH_MARIAN: return qkv__marian_forward(rt, t, b, backward, scale, loss);
    default: return qkv__decoder_forward(rt, t, b, backward, scale, loss);
    }
}

static qkv_status backward(qkv_runtime *rt, qkv_trainer *t, const qkv__tbatch *b) {
    switch (t->cfg.arch) {
    case QKV__TARCH_BERT: return qkv__bert_mlm_backward(rt, t, b);
    case QKV__TARCH_BERT_CLS: return qkv__bert_cls_backward(rt, t, b);
    case QKV__TARCH_MARIAN: return qkv__marian_backward(rt, t, b);
    default: return qkv__decoder_backward(rt, t, b);
    }
}

qkv_status qkv_trainer_forward_backward_batch(qkv_runtime *rt, qkv_trainer *t,
                                              const qkv_train_batch *batch, float scale,
                                              float *loss) {
    static const char fn[] = "qkv_trainer_forward_backward";
    if (!t || !loss) return qkv__fail(QKV_ERR_INVALID_ARG, "%s: NULL argument", fn);
    if (!isfinite(scale)) return qkv__fail(QKV_ERR_INVALID_ARG, "%s: scale is not finite", fn);
    qkv__tbatch b;
    QKV_TRY(qkv__trainer_check_batch(t, fn, batch, &b));
    b.train = 1;
    QKV_TRY(forward(rt, t, &b, 1, scale, loss));
    return backward(rt, t, &b);
}

qkv_status qkv_trainer_eval_batch(qkv_runtime *rt, qkv_trainer *t, const qkv_train_batch *batch,
                                  float *loss) {
    static const char fn[] = "qkv_trainer_eval";
    if (!t || !loss) return qkv__fail(QKV_ERR_INVALID_ARG, "%s: NULL argument", fn);
    qkv__tbatch b;
    QKV_TRY(qkv__trainer_check_batch(t, fn, batch, &b));
    return forward(rt, t, &b, 0, 0.0f, loss);
}

qkv_status qkv_trainer_forward_backward(qkv_runtime *rt, qkv_trainer *t, const int32_t *ids,
                                        const int32_t *targets, int64_t B, int64_t T, float scale,
                                        float *loss) {
    qkv_train_batch b = {sizeof b, ids, targets, NULL, NULL, B, T, NULL, NULL, 0, NULL, NULL, 0};
    return qkv_trainer_forward_backward_batch(rt, t, &b, scale, loss);
}

qkv_status qkv_trainer_eval(qkv_runtime *rt, qkv_trainer *t, const int32_t *ids,
                            const int32_t *targets, int64_t B, int64_t T, float *loss) {
    qkv_train_batch b = {sizeof b, ids, targets, NULL, NULL, B, T, NULL, NULL, 0, NULL, NULL, 0};
    return qkv_trainer_eval_batch(rt, t, &b, loss);
}
