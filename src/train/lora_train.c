/* lora_train.c — LoRA adapters on a trainer (qkv_trainer_add_lora), as Hugging Face PEFT trains
 * them: A (r, in) and B (out, r) of every targeted linear layer become parameters of their own,
 * appended after the table's rows in the flat buffers ("<module>.lora_A.weight", PEFT's names
 * without "base_model.model." and ".default"), and every other parameter is frozen except the
 * modules to save. Frozen parameters get no gradient (trainer.h qkv__tgrad), so a LoRA step
 * runs no weight-gradient GEMM of a frozen matrix.
 *
 * The forward binds each adapter to its layers through the slots of models/lora.h: before each
 * forward (qkv__tlora_begin) the slot structs are refilled with the current buffers, the
 * gradient pointers (NULL for a frozen adapter), the dropout rate (training only) and the
 * batch's seed, with one stream per slot, so the backward regenerates the same masks.
 *
 * Files: the checkpoint keeps the config as metadata "lora" (JSON) and the tensors by name;
 * qkv_trainer_save_lora writes PEFT's adapter directory. */
#include "train/trainer.h"

#include "core/abi.h"
#include "core/alloc.h"
#include "core/error.h"
#include "core/rng.h"
#include "io/json.h"
#include "models/lora.h"
#include "nn/nn.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* Dropout streams of the adapters: far from the encoder's (block.h) and the classifier's. */
#define LORA_STREAM0 ((uint64_t)1 << 41)

struct qkv__tlora {
    qkv__lora_shape shape;
    qkv__lora_site *sites;
    size_t n_sites;
    int64_t r;
    float alpha, dropout, scale;
    int rslora;
    uint64_t seed;
    char **targets, **mts; /* owned copies of the config's names */
    size_t n_targets, n_mts;
    char *base_model;
    size_t first;      /* the first adapter parameter */
    int64_t *pa;       /* [n_sites] index of the site's A (B follows), -1: no adapter */
    qkv_nn_lora *slot; /* [L·QKV__LS_PER_LAYER + QKV__LS_HEADS]; r 0: no adapter */
    size_t n_slots;
};

void qkv_lora_config_init_sized(qkv_lora_config *c, size_t struct_size) {
    if (!c) return;
    qkv_lora_config d = {sizeof d, 8, 8.0f, 0.0f, 0, NULL, 0, NULL, 0, 0, NULL};
    QKV__STRUCT_FILL(qkv_lora_config, c, struct_size, &d);
}

static void free_strs(char **v, size_t n) {
    for (size_t i = 0; v && i < n; i++) qkv__free(v[i]);
    qkv__free(v);
}

void qkv__tlora_free(struct qkv__tlora *lo) {
    if (!lo) return;
    qkv__free(lo->sites);
    free_strs(lo->targets, lo->n_targets);
    free_strs(lo->mts, lo->n_mts);
    qkv__free(lo->base_model);
    qkv__free(lo->pa);
    qkv__free(lo->slot);
    qkv__free(lo);
}

size_t qkv__tlora_first(const qkv_trainer *t) { return t->lora->first; }

qkv_nn_lora *qkv__tlora_slots(const qkv_trainer *t) { return t->lora ? t->lora->slot : NULL; }

int qkv_trainer_has_lora(const qkv_trainer *t) { return t && t->lora; }

void qkv__tlora_begin(qkv_trainer *t, const qkv__tbatch *b) {
    struct qkv__tlora *lo = t->lora;
    if (!lo) return;
    memset(lo->slot, 0, lo->n_slots * sizeof *lo->slot);
    for (size_t k = 0; k < lo->n_sites; k++) {
        if (lo->pa[k] < 0) continue;
        const qkv__lora_site *s = &lo->sites[k];
        const size_t ia = (size_t)lo->pa[k], ib = ia + 1;
        const size_t at = s->layer >= 0 ? qkv__lora_slot(s->layer, s->kind)
                                        : qkv__lora_head_slot(lo->shape.L, s->kind);
        qkv__lora_bind(s, t->w + t->params[ia].offset, t->w + t->params[ib].offset,
                       qkv__tgrad(t, ia), qkv__tgrad(t, ib), lo->r, lo->scale, &lo->slot[at]);
        for (int i = 0; i < s->n_slots; i++) { /* c_attn's q, k, v share A and its mask */
            lo->slot[at + (size_t)i].dropout = b->train ? lo->dropout : 0.0f;
            lo->slot[at + (size_t)i].seed = b->seed;
            lo->slot[at + (size_t)i].stream = LORA_STREAM0 + at;
        }
    }
}

/* ---------------------------------------------------------------- adding adapters */

static qkv__lora_shape shape_of(const qkv_trainer *t) {
    const qkv__tconfig *c = &t->cfg;
    const qkv__lora_family f = c->arch == QKV__TARCH_GPT2    ? QKV__LORA_GPT2
                               : c->arch == QKV__TARCH_LLAMA ? QKV__LORA_LLAMA
                                                             : QKV__LORA_BERT;
    return (qkv__lora_shape){f,
                             t->tab->prefix,
                             c->L,
                             c->C,
                             c->F,
                             c->H * c->D,
                             c->Hk * c->D,
                             c->arch == QKV__TARCH_BERT_CLS,
                             c->arch == QKV__TARCH_BERT};
}

/* Parameter name p (a module's ".weight" / ".bias") lies in a module that key matches: the
 * module itself or any module enclosing it (PEFT's modules_to_save matching). */
static int param_in_module(const char *p, const char *key) {
    char buf[128];
    snprintf(buf, sizeof buf, "%s", p);
    for (char *dot = strrchr(buf, '.'); dot; dot = strrchr(buf, '.')) {
        *dot = 0;
        if (qkv__lora_match(buf, key)) return 1;
    }
    return 0;
}

static char **dup_strs(const char *const *v, size_t n) {
    char **o = qkv__calloc(n + 1, sizeof *o);
    for (size_t i = 0; o && i < n; i++)
        if (!(o[i] = qkv__strdup(v[i]))) {
            free_strs(o, n);
            return NULL;
        }
    return o;
}

/* Grows the parameter list and the four flat buffers by the adapters of the targeted sites. */
static qkv_status grow(qkv_trainer *t, struct qkv__tlora *lo) {
    if (qkv__tsharded(t))
        return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_trainer_add_lora: the trainer's optimizer "
                                              "state is sharded across ranks (ZeRO-1)");
    size_t n_new = 0;
    for (size_t k = 0; k < lo->n_sites; k++) n_new += lo->pa[k] >= 0 ? 2 : 0;
    qkv__tparam *params = qkv__calloc(t->n_params + n_new, sizeof *params);
    if (!params) return qkv__fail(QKV_ERR_NOMEM, "qkv_trainer_add_lora: out of memory");
    memcpy(params, t->params, t->n_params * sizeof *params);
    size_t np = t->n_params;
    int64_t nf = t->n_floats;
    for (size_t k = 0; k < lo->n_sites; k++) {
        if (lo->pa[k] < 0) continue;
        const qkv__lora_site *s = &lo->sites[k];
        lo->pa[k] = (int64_t)np;
        for (int ab = 0; ab < 2; ab++) {
            qkv__tparam *p = &params[np++];
            if (snprintf(p->name, sizeof p->name, "%s.lora_%c.weight", s->module, ab ? 'B' : 'A') >=
                (int)sizeof p->name) {
                qkv__free(params);
                return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_trainer_add_lora: name of %s too long",
                                 s->module);
            }
            p->ndim = 2;
            p->shape[0] = ab ? s->OC : lo->r;
            p->shape[1] = ab ? lo->r : s->C;
            p->numel = p->shape[0] * p->shape[1];
            p->offset = nf;
            p->decay = 1; /* transformers' Trainer decays every matrix that trains */
            p->trainable = 1;
            p->init = QKV__INIT_ZERO;
            p->dtype = QKV_DTYPE_F32;
            nf += (p->numel + 15) / 16 * 16;
        }
    }
    const size_t bytes = (size_t)nf * sizeof(float), old = (size_t)t->n_floats * sizeof(float);
    float *buf[4] = {qkv__calloc(1, bytes), qkv__calloc(1, bytes), qkv__calloc(1, bytes),
                     qkv__calloc(1, bytes)};
    float **dst[4] = {&t->w, &t->g, &t->m, &t->v};
    if (!buf[0] || !buf[1] || !buf[2] || !buf[3]) {
        for (int i = 0; i < 4; i++) qkv__free(buf[i]);
        qkv__free(params);
        return qkv__fail(QKV_ERR_NOMEM, "qkv_trainer_add_lora: cannot allocate %lld floats x4",
                         (long long)nf);
    }
    for (int i = 0; i < 4; i++) {
        memcpy(buf[i], *dst[i], old);
        qkv__free(*dst[i]);
        *dst[i] = buf[i];
    }
    qkv__free(t->params);
    t->params = params;
    lo->first = t->n_params;
    t->n_params = np;
    t->n_floats = nf;
    t->mv_end = nf;
    return qkv__trainer_build_segs(t);
}

/* Adds the adapters of c to t; init: A as PEFT initializes it (else left to the caller). */
static qkv_status add_lora(qkv_trainer *t, const qkv_lora_config *c, int init) {
    static const char fn[] = "qkv_trainer_add_lora";
    if (t->lora) return qkv__fail(QKV_ERR_INVALID_ARG, "%s: the trainer has adapters already", fn);
    if (c->r < 1 || c->r > QKV__LORA_MAX_R || !isfinite(c->alpha) || !(c->dropout >= 0.0f) ||
        !(c->dropout < 1.0f))
        return qkv__fail(QKV_ERR_INVALID_ARG,
                         "%s: r = %lld (1 to %d), alpha = %g (finite), dropout = %g ([0, 1))", fn,
                         (long long)c->r, QKV__LORA_MAX_R, (double)c->alpha, (double)c->dropout);
    if ((c->n_targets && !c->targets) || (c->n_modules_to_save && !c->modules_to_save))
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: NULL targets or modules_to_save", fn);
    struct qkv__tlora *lo = qkv__calloc(1, sizeof *lo);
    if (!lo) return qkv__fail(QKV_ERR_NOMEM, "%s: out of memory", fn);
    lo->shape = shape_of(t);
    lo->r = c->r, lo->alpha = c->alpha, lo->dropout = c->dropout, lo->rslora = c->use_rslora != 0;
    lo->scale = qkv__lora_scale(c->alpha, c->r, lo->rslora);
    lo->seed = c->seed;
    static const char *const cls_save[] = {"classifier"};
    size_t nt = c->n_targets, nm = c->n_modules_to_save;
    const char *const *tg = c->targets, *const *ms = c->modules_to_save;
    if (!tg) tg = qkv__lora_default_targets(lo->shape.family, &nt);
    if (!ms && t->cfg.arch == QKV__TARCH_BERT_CLS) ms = cls_save, nm = 1;
    lo->targets = dup_strs(tg, nt);
    lo->mts = dup_strs(ms, nm);
    lo->n_targets = nt, lo->n_mts = nm;
    lo->base_model = c->base_model ? qkv__strdup(c->base_model) : NULL;
    qkv_status s = lo->targets && lo->mts && (!c->base_model || lo->base_model)
                       ? qkv__lora_sites(&lo->shape, &lo->sites, &lo->n_sites)
                       : qkv__fail(QKV_ERR_NOMEM, "%s: out of memory", fn);
    if (s == QKV_OK) {
        lo->n_slots = qkv__lora_head_slot(lo->shape.L, QKV__LS_HEADS);
        lo->pa = qkv__calloc(lo->n_sites + 1, sizeof *lo->pa);
        lo->slot = qkv__calloc(lo->n_slots, sizeof *lo->slot);
        if (!lo->pa || !lo->slot) s = qkv__fail(QKV_ERR_NOMEM, "%s: out of memory", fn);
    }
    for (size_t k = 0; s == QKV_OK && k < lo->n_sites; k++) lo->pa[k] = -1;
    /* every target must name at least one layer; a targeted layer must not be saved whole */
    for (size_t i = 0; s == QKV_OK && i < nt; i++) {
        int hit = 0;
        if (!tg[i] || !*tg[i]) s = qkv__fail(QKV_ERR_INVALID_ARG, "%s: an empty target", fn);
        for (size_t k = 0; s == QKV_OK && k < lo->n_sites; k++)
            if (qkv__lora_match(lo->sites[k].module, tg[i])) lo->pa[k] = 0, hit = 1;
        if (s == QKV_OK && !hit)
            s = qkv__fail(QKV_ERR_INVALID_ARG,
                          "%s: target module \"%s\" matches no linear layer of this %s model "
                          "that LoRA supports",
                          fn, tg[i], qkv__tarch_name(t->cfg.arch));
    }
    const size_t nb = t->n_params;
    for (size_t j = 0; s == QKV_OK && j < nm; j++) {
        int hit = 0;
        for (size_t i = 0; ms[j] && i < nb; i++) hit |= param_in_module(t->params[i].name, ms[j]);
        if (!ms[j] || !hit)
            s = qkv__fail(QKV_ERR_INVALID_ARG,
                          "%s: module to save \"%s\" matches no parameter of this model", fn,
                          ms[j] ? ms[j] : "(null)");
    }
    for (size_t k = 0; s == QKV_OK && k < lo->n_sites; k++)
        for (size_t j = 0; lo->pa[k] == 0 && j < nm; j++)
            if (qkv__lora_match(lo->sites[k].module, ms[j]) ||
                param_in_module(lo->sites[k].module, ms[j]))
                s = qkv__fail(QKV_ERR_INVALID_ARG,
                              "%s: %s is targeted but lies in the module to save \"%s\"", fn,
                              lo->sites[k].module, ms[j]);
    if (s == QKV_OK) s = grow(t, lo);
    if (s != QKV_OK) {
        qkv__tlora_free(lo);
        return s;
    }
    t->lora = lo;
    for (size_t i = 0; i < nb; i++) { /* freeze the base but the modules to save */
        int keep = 0;
        for (size_t j = 0; j < nm; j++) keep |= param_in_module(t->params[i].name, ms[j]);
        t->params[i].trainable = keep;
    }
    for (size_t k = 0; init && k < lo->n_sites; k++) {
        if (lo->pa[k] < 0) continue;
        /* kaiming_uniform_(a = √5) on A (r, C): bound = gain·√(3 / C), gain = √(2 / 6) */
        const qkv__tparam *p = &t->params[lo->pa[k]];
        const double bound = 1.0 / sqrt((double)lo->sites[k].C);
        float *a = t->w + p->offset;
        for (int64_t j = 0; j < p->numel; j++)
            a[j] = (float)(bound * (2.0 * (double)qkv__rng_uniform(c->seed, k, (uint64_t)j) - 1.0));
    }
    t->logits_valid = 0;
    return QKV_OK;
}

qkv_status qkv_trainer_add_lora(qkv_trainer *t, const qkv_lora_config *config) {
    static const char fn[] = "qkv_trainer_add_lora";
    if (!t) return qkv__fail(QKV_ERR_INVALID_ARG, "%s: NULL trainer", fn);
    qkv_lora_config c;
    qkv_lora_config d;
    qkv_lora_config_init(&d);
    QKV_TRY(QKV__STRUCT_IN(qkv_lora_config, &c, config, &d, fn));
    if (t->cfg.arch == QKV__TARCH_MARIAN)
        return qkv__fail(QKV_ERR_UNSUPPORTED, "%s: LoRA is not implemented for marian", fn);
    return add_lora(t, &c, 1);
}

/* ---------------------------------------------------------------- merged weights */

qkv_status qkv__tlora_merged(const qkv_trainer *t, float **out) {
    const struct qkv__tlora *lo = t->lora;
    float *w = qkv__alloc((size_t)t->n_floats * sizeof *w);
    if (!w) return qkv__fail(QKV_ERR_NOMEM, "LoRA merge: out of memory");
    memcpy(w, t->w, (size_t)t->n_floats * sizeof *w);
    qkv_status s = QKV_OK;
    for (size_t k = 0; s == QKV_OK && k < lo->n_sites; k++) {
        if (lo->pa[k] < 0) continue;
        const qkv__lora_site *si = &lo->sites[k];
        char name[128];
        snprintf(name, sizeof name, "%s.weight", si->module);
        size_t i = 0;
        while (i < lo->first && strcmp(t->params[i].name, name) != 0) i++;
        if (i == lo->first) {
            s = qkv__fail(QKV_ERR_INVALID_ARG, "LoRA merge: no parameter %s", name);
            break;
        }
        const size_t ia = (size_t)lo->pa[k];
        const qkv_nn_lora a = {t->w + t->params[ia].offset,
                               t->w + t->params[ia + 1].offset,
                               NULL,
                               NULL,
                               lo->r,
                               lo->scale,
                               0.0f,
                               0,
                               0};
        s = qkv_nn_lora_merge(w + t->params[i].offset, si->in_out, 0, si->C, si->OC, &a, 1.0f);
    }
    if (s != QKV_OK) {
        qkv__free(w);
        return s;
    }
    *out = w;
    return QKV_OK;
}

/* ---------------------------------------------------------------- files */

static json_t *str_array(char **v, size_t n) {
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        if (json_array_append_new(a, json_string(v[i])) != 0) {
            json_decref(a);
            return NULL;
        }
    return a;
}

/* A JSON text to qkv__free (jansson's own buffer released), NULL on NOMEM. */
static char *dump(json_t *o, size_t flags, int newline) {
    char *s = o ? json_dumps(o, flags) : NULL;
    char *out = s ? qkv__alloc(strlen(s) + 2) : NULL;
    if (out) snprintf(out, strlen(s) + 2, "%s%s", s, newline ? "\n" : "");
    json_free_t release;
    json_get_alloc_funcs(NULL, &release);
    if (s) release(s);
    return out;
}

char *qkv__tlora_meta(const qkv_trainer *t) {
    const struct qkv__tlora *lo = t->lora;
    qkv__json_begin();
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)lo->seed);
    json_t *o =
        json_pack("{s:I,s:f,s:f,s:b,s:o*,s:o*,s:s,s:s?}", "r", (json_int_t)lo->r, "alpha",
                  (double)lo->alpha, "dropout", (double)lo->dropout, "use_rslora", lo->rslora,
                  "targets", str_array(lo->targets, lo->n_targets), "modules_to_save",
                  str_array(lo->mts, lo->n_mts), "seed", seed, "base_model", lo->base_model);
    char *s = dump(o, JSON_COMPACT, 0);
    json_decref(o);
    qkv__json_end();
    return s;
}

static const char **json_strs(json_t *a, size_t *n) {
    *n = json_is_array(a) ? json_array_size(a) : 0;
    const char **v = qkv__calloc(*n + 1, sizeof *v);
    for (size_t i = 0; v && i < *n; i++)
        if (!(v[i] = json_string_value(json_array_get(a, i)))) {
            qkv__free(v);
            return NULL;
        }
    return v;
}

qkv_status qkv__tlora_restore(qkv_trainer *t, const char *path, const char *meta) {
    qkv__json_begin();
    json_error_t err;
    json_t *o = json_loads(meta, JSON_REJECT_DUPLICATES, &err);
    qkv_lora_config c;
    qkv_lora_config_init(&c);
    json_t *r = json_object_get(o, "r"), *al = json_object_get(o, "alpha"),
           *dr = json_object_get(o, "dropout");
    const char *seed = json_string_value(json_object_get(o, "seed"));
    size_t nt = 0, nm = 0;
    const char **tg = json_strs(json_object_get(o, "targets"), &nt);
    const char **ms = json_strs(json_object_get(o, "modules_to_save"), &nm);
    qkv_status s = QKV_OK;
    if (!json_is_object(o) || !json_is_integer(r) || !json_is_number(al) || !json_is_number(dr) ||
        !seed || !tg || !ms || !json_is_array(json_object_get(o, "targets")) ||
        !json_is_array(json_object_get(o, "modules_to_save"))) {
        s = qkv__fail(QKV_ERR_FORMAT, "%s: bad metadata 'lora'", path);
    } else {
        c.r = (int64_t)json_integer_value(r);
        c.alpha = (float)json_number_value(al);
        c.dropout = (float)json_number_value(dr);
        c.use_rslora = json_is_true(json_object_get(o, "use_rslora"));
        c.seed = strtoull(seed, NULL, 10);
        c.targets = tg, c.n_targets = nt;
        c.modules_to_save = ms, c.n_modules_to_save = nm;
        c.base_model = json_string_value(json_object_get(o, "base_model"));
        s = add_lora(t, &c, 0);
        if (s != QKV_OK) s = qkv__fail(s, "%s: metadata 'lora': %s", path, qkv_last_error());
    }
    qkv__free(tg);
    qkv__free(ms);
    json_decref(o);
    qkv__json_end();
    return s;
}

static const char *task_type(const qkv_trainer *t) {
    return t->cfg.arch == QKV__TARCH_BERT_CLS ? "SEQ_CLS"
           : t->cfg.arch == QKV__TARCH_BERT   ? "FEATURE_EXTRACTION"
                                              : "CAUSAL_LM";
}

/* adapter_config.json as PEFT 0.21's LoraConfig.save_pretrained writes the fields qkv uses. */
static qkv_status write_config(const qkv_trainer *t, const char *dir) {
    const struct qkv__tlora *lo = t->lora;
    char path[4200];
    if (snprintf(path, sizeof path, "%s/adapter_config.json", dir) >= (int)sizeof path)
        return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_trainer_save_lora: path too long");
    qkv__json_begin();
    json_t *o = json_pack(
        "{s:s,s:s,s:s?,s:I,s:f,s:f,s:o*,s:b,s:b,s:s,s:b,s:b,s:b,s:{},s:{},s:n,s:n,s:b,s:n}",
        "peft_type", "LORA", "task_type", task_type(t), "base_model_name_or_path", lo->base_model,
        "r", (json_int_t)lo->r, "lora_alpha", (double)lo->alpha, "lora_dropout",
        (double)lo->dropout, "target_modules", str_array(lo->targets, lo->n_targets),
        "fan_in_fan_out", t->cfg.arch == QKV__TARCH_GPT2, "use_rslora", lo->rslora, "bias", "none",
        "inference_mode", 1, "use_dora", 0, "init_lora_weights", 1, "rank_pattern", "alpha_pattern",
        "layers_to_transform", "layers_pattern", "lora_bias", 0, "revision");
    if (o && json_object_set_new(o, "modules_to_save",
                                 lo->n_mts ? str_array(lo->mts, lo->n_mts) : json_null()) != 0) {
        json_decref(o);
        o = NULL;
    }
    char *text = dump(o, JSON_INDENT(2) | JSON_SORT_KEYS, 1);
    json_decref(o);
    qkv__json_end();
    if (!text) return qkv__fail(QKV_ERR_NOMEM, "qkv_trainer_save_lora: out of memory");
    qkv_status s = qkv__write_text_atomic(path, text);
    qkv__free(text);
    return s;
}

qkv_status qkv_trainer_save_lora(const qkv_trainer *t, const char *dir) {
    static const char fn[] = "qkv_trainer_save_lora";
    if (!t || !dir) return qkv__fail(QKV_ERR_INVALID_ARG, "%s: NULL argument", fn);
    if (!t->lora) return qkv__fail(QKV_ERR_INVALID_ARG, "%s: the trainer has no adapters", fn);
    const struct qkv__tlora *lo = t->lora;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return qkv__write_fail("cannot create the directory", dir);
    /* the adapters, then the modules to save, as get_peft_model_state_dict orders them */
    const size_t n = t->n_params;
    qkv_st_write_tensor *wt = qkv__calloc(n, sizeof *wt);
    char(*names)[160] = qkv__calloc(n, sizeof *names);
    qkv_status s = wt && names ? QKV_OK : qkv__fail(QKV_ERR_NOMEM, "%s: out of memory", fn);
    size_t k = 0;
    for (size_t pass = 0; s == QKV_OK && pass < 2; pass++)
        for (size_t i = pass ? 0 : lo->first; i < (pass ? lo->first : n); i++) {
            const qkv__tparam *p = &t->params[i];
            int save = !pass;
            for (size_t j = 0; pass && j < lo->n_mts; j++)
                save |= param_in_module(p->name, lo->mts[j]);
            if (!save) continue;
            snprintf(names[k], sizeof names[k], "base_model.model.%s", p->name);
            wt[k] = (qkv_st_write_tensor){names[k], p->dtype, p->ndim, p->shape, t->w + p->offset};
            k++;
        }
    char path[4200];
    if (s == QKV_OK &&
        snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir) >= (int)sizeof path)
        s = qkv__fail(QKV_ERR_INVALID_ARG, "%s: path too long", fn);
    const char *mk[] = {"format"}, *mv[] = {"pt"};
    if (s == QKV_OK) s = qkv_safetensors_write(path, wt, k, mk, mv, 1);
    qkv__free(wt);
    qkv__free(names);
    if (s == QKV_OK) s = write_config(t, dir);
    return s;
}
