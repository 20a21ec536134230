/* lora.c — LoRA sites, PEFT's naming and matching, and reading a PEFT adapter directory (see
 * lora.h). An adapter file is read only after its config: r is bounded before any tensor is
 * looked at, every key must name a site of the model (or an extra tensor the caller accepts),
 * every A and B must have exactly the site's shape, and both must be present. F32 tensors are
 * used in place (mapped); F16/BF16 are converted once. */
#include "models/lora.h"

#include "core/alloc.h"
#include "core/error.h"
#include "io/json.h"
#include "models/weights.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

int qkv__lora_match(const char *module, const char *key) {
    const size_t n = strlen(module), k = strlen(key);
    if (!k) return 0;
    if (n == k) return strcmp(module, key) == 0;
    return n > k && module[n - k - 1] == '.' && strcmp(module + n - k, key) == 0;
}

const char *const *qkv__lora_default_targets(qkv__lora_family f, size_t *n) {
    static const char *const bert[] = {"query", "value"};
    static const char *const gpt2[] = {"c_attn"};
    static const char *const llama[] = {"q_proj", "v_proj"};
    *n = f == QKV__LORA_GPT2 ? 1 : 2;
    return f == QKV__LORA_GPT2 ? gpt2 : f == QKV__LORA_LLAMA ? llama : bert;
}

float qkv__lora_scale(float alpha, int64_t r, int rslora) {
    return rslora ? (float)((double)alpha / sqrt((double)r)) : (float)((double)alpha / (double)r);
}

typedef struct {
    const char *name; /* after "<prefix><layers>.%d." */
    int kind, n_slots;
    char in, out; /* 'C', 'F', 'Q', 'K', '3' (3C) */
    int in_out;
} site_row;

static const site_row bert_rows[] = {
    {"attention.self.query", QKV__LS_Q, 1, 'C', 'C', 0},
    {"attention.self.key", QKV__LS_K, 1, 'C', 'C', 0},
    {"attention.self.value", QKV__LS_V, 1, 'C', 'C', 0},
    {"attention.output.dense", QKV__LS_O, 1, 'C', 'C', 0},
    {"intermediate.dense", QKV__LS_FC, 1, 'C', 'F', 0},
    {"output.dense", QKV__LS_PROJ, 1, 'F', 'C', 0},
};
static const site_row gpt2_rows[] = {
    {"attn.c_attn", QKV__LS_Q, 3, 'C', '3', 1},
    {"attn.c_proj", QKV__LS_O, 1, 'C', 'C', 1},
    {"mlp.c_fc", QKV__LS_FC, 1, 'C', 'F', 1},
    {"mlp.c_proj", QKV__LS_PROJ, 1, 'F', 'C', 1},
};
static const site_row llama_rows[] = {
    {"self_attn.q_proj", QKV__LS_Q, 1, 'C', 'Q', 0},
    {"self_attn.k_proj", QKV__LS_K, 1, 'C', 'K', 0},
    {"self_attn.v_proj", QKV__LS_V, 1, 'C', 'K', 0},
    {"self_attn.o_proj", QKV__LS_O, 1, 'Q', 'C', 0},
    {"mlp.gate_proj", QKV__LS_GATE, 1, 'C', 'F', 0},
    {"mlp.up_proj", QKV__LS_FC, 1, 'C', 'F', 0},
    {"mlp.down_proj", QKV__LS_PROJ, 1, 'F', 'C', 0},
};

static int64_t dim_of(const qkv__lora_shape *s, char d) {
    return d == 'C' ? s->C : d == 'F' ? s->F : d == 'Q' ? s->Q : d == 'K' ? s->K : 3 * s->C;
}

qkv_status qkv__lora_sites(const qkv__lora_shape *s, qkv__lora_site **out, size_t *n) {
    const site_row *rows = s->family == QKV__LORA_GPT2    ? gpt2_rows
                           : s->family == QKV__LORA_LLAMA ? llama_rows
                                                          : bert_rows;
    const size_t nr = s->family == QKV__LORA_GPT2    ? sizeof gpt2_rows / sizeof *gpt2_rows
                      : s->family == QKV__LORA_LLAMA ? sizeof llama_rows / sizeof *llama_rows
                                                     : sizeof bert_rows / sizeof *bert_rows;
    const char *layers = s->family == QKV__LORA_GPT2    ? "h"
                         : s->family == QKV__LORA_LLAMA ? "layers"
                                                        : "encoder.layer";
    const size_t total = (size_t)s->L * nr + 2;
    qkv__lora_site *v = qkv__calloc(total, sizeof *v);
    if (!v) return qkv__fail(QKV_ERR_NOMEM, "LoRA: out of memory");
    size_t k = 0;
    for (int64_t l = 0; l < s->L; l++)
        for (size_t i = 0; i < nr; i++, k++) {
            snprintf(v[k].module, sizeof v[k].module, "%s%s.%lld.%s", s->prefix, layers,
                     (long long)l, rows[i].name);
            v[k].layer = l;
            v[k].kind = rows[i].kind;
            v[k].n_slots = rows[i].n_slots;
            v[k].C = dim_of(s, rows[i].in);
            v[k].OC = dim_of(s, rows[i].out);
            v[k].in_out = rows[i].in_out;
        }
    if (s->family == QKV__LORA_BERT && s->pooler)
        v[k++] = (qkv__lora_site){"", -1, QKV__LS_POOLER, 1, s->C, s->C, 0};
    if (s->family == QKV__LORA_BERT && s->pooler)
        snprintf(v[k - 1].module, sizeof v->module, "%spooler.dense", s->prefix);
    if (s->family == QKV__LORA_BERT && s->transform) /* the MLM head: unprefixed */
        v[k++] = (qkv__lora_site){
            "cls.predictions.transform.dense", -1, QKV__LS_TRANSFORM, 1, s->C, s->C, 0};
    *out = v;
    *n = k;
    return QKV_OK;
}

void qkv__lora_bind(const qkv__lora_site *s, const float *A, const float *B, float *gA, float *gB,
                    int64_t r, float scale, qkv_nn_lora *lo) {
    const int64_t rows = s->OC / s->n_slots; /* c_attn: q, k, v take C rows of B each */
    for (int i = 0; i < s->n_slots; i++)
        lo[i] = (qkv_nn_lora){
            A, B + i * rows * r, gA, gB ? gB + i * rows * r : NULL, r, scale, 0.0f, 0, 0};
}

static void attach(qkv_nn_linear *lin, qkv_nn_lora *lo) { lin->lora = lo->r > 0 ? lo : NULL; }

void qkv__lora_attach_dec(qkv__dec_layer *w, qkv_nn_lora *s) {
    attach(&w->q, &s[QKV__LS_Q]);
    attach(&w->k, &s[QKV__LS_K]);
    attach(&w->v, &s[QKV__LS_V]);
    attach(&w->o, &s[QKV__LS_O]);
    attach(&w->fc, &s[QKV__LS_FC]);
    attach(&w->proj, &s[QKV__LS_PROJ]);
    attach(&w->gate, &s[QKV__LS_GATE]);
}

void qkv__lora_attach_enc(qkv__enc_layer *w, qkv_nn_lora *s) {
    attach(&w->q, &s[QKV__LS_Q]);
    attach(&w->k, &s[QKV__LS_K]);
    attach(&w->v, &s[QKV__LS_V]);
    attach(&w->o, &s[QKV__LS_O]);
    attach(&w->fc, &s[QKV__LS_FC]);
    attach(&w->out, &s[QKV__LS_PROJ]);
}

/* ---------------------------------------------------------------- adapter directories */

#define CONFIG_MAX_BYTES ((off_t)1 << 20)

static qkv_status regular_file(const char *path, off_t max) {
    struct stat sb;
    if (stat(path, &sb) != 0) return qkv__fail(QKV_ERR_IO, "%s: cannot open (missing?)", path);
    if (!S_ISREG(sb.st_mode)) return qkv__fail(QKV_ERR_IO, "%s: not a regular file", path);
    if (max && sb.st_size > max)
        return qkv__fail(QKV_ERR_FORMAT, "%s: %lld bytes, more than an adapter config may have",
                         path, (long long)sb.st_size);
    return QKV_OK;
}

/* adapter_config.json: PEFT LoRA, no DoRA / bias / patterns; r, alpha, rslora, fan_in_fan_out. */
static qkv_status read_config(const char *path, qkv__lora_file *f) {
    QKV_TRY(regular_file(path, CONFIG_MAX_BYTES));
    qkv__json_begin();
    json_t *o = NULL;
    qkv_status s = qkv__json_load_file(path, 0, &o);
    const char *pt = NULL, *bias = NULL;
    int64_t r = 0;
    double al = 0;
    int dora = 0, lb = 0, rslora = 0, fifo = 0;
    json_t *rp = json_object_get(o, "rank_pattern"), *ap = json_object_get(o, "alpha_pattern");
    if (s == QKV_OK && !json_is_object(o))
        s = qkv__fail(QKV_ERR_FORMAT, "%s: not a JSON object", path);
    /* every field of its JSON type, or refused naming it (never a silent default) */
    if (s == QKV_OK) s = qkv__json_str(path, o, "peft_type", NULL, &pt);
    if (s == QKV_OK) s = qkv__json_str(path, o, "bias", "none", &bias);
    if (s == QKV_OK) s = qkv__json_bool(path, o, "use_dora", 0, &dora);
    if (s == QKV_OK) s = qkv__json_bool(path, o, "lora_bias", 0, &lb);
    if (s == QKV_OK) s = qkv__json_bool(path, o, "use_rslora", 0, &rslora);
    if (s == QKV_OK) s = qkv__json_bool(path, o, "fan_in_fan_out", 0, &fifo);
    if (s != QKV_OK) {
    } else if (!pt || strcmp(pt, "LORA") != 0) {
        s = qkv__fail(QKV_ERR_FORMAT, "%s: peft_type must be \"LORA\"", path);
    } else if ((s = qkv__json_int(path, o, "r", 1, 0, INT64_MIN, INT64_MAX, &r)) != QKV_OK) {
    } else if (r < 1 || r > QKV__LORA_MAX_R) {
        s = qkv__fail(QKV_ERR_FORMAT, "%s: r must be an integer in [1, %d]", path, QKV__LORA_MAX_R);
    } else if ((s = qkv__json_num(path, o, "lora_alpha", NAN, -1e6, 1e6, &al)) != QKV_OK) {
    } else if (isnan(al)) {
        s = qkv__fail(QKV_ERR_FORMAT, "%s: missing required field 'lora_alpha'", path);
    } else if (strcmp(bias, "none") != 0 || lb) {
        s = qkv__fail(QKV_ERR_UNSUPPORTED, "%s: bias \"%s\" (only \"none\")", path,
                      lb ? "lora_bias" : bias);
    } else if (dora) {
        s = qkv__fail(QKV_ERR_UNSUPPORTED, "%s: use_dora (DoRA)", path);
    } else if ((rp && !json_is_null(rp) && !json_is_object(rp)) ||
               (ap && !json_is_null(ap) && !json_is_object(ap))) {
        s = qkv__fail(QKV_ERR_FORMAT, "%s: rank_pattern / alpha_pattern must be objects", path);
    } else if ((json_is_object(rp) && json_object_size(rp)) ||
               (json_is_object(ap) && json_object_size(ap))) {
        s = qkv__fail(QKV_ERR_UNSUPPORTED, "%s: rank_pattern / alpha_pattern", path);
    } else {
        f->r = r;
        f->alpha = (float)al;
        f->rslora = rslora;
        f->fan_in_fan_out = fifo;
        f->scale = qkv__lora_scale(f->alpha, f->r, f->rslora);
    }
    json_decref(o);
    qkv__json_end();
    return s;
}

#define PEFT_PREFIX "base_model.model."

/* The site whose module is name (with or without the model prefix), or -1. */
static int64_t find_site(const char *name, size_t len, const qkv__lora_shape *shape,
                         const qkv__lora_site *sites, size_t n) {
    const size_t pl = strlen(shape->prefix);
    for (size_t i = 0; i < n; i++) {
        const char *m = sites[i].module;
        const size_t ml = strlen(m);
        if (ml == len && memcmp(m, name, len) == 0) return (int64_t)i;
        if (strncmp(m, shape->prefix, pl) == 0 && ml - pl == len && memcmp(m + pl, name, len) == 0)
            return (int64_t)i;
    }
    return -1;
}

static int ends_with(const char *s, size_t n, const char *suf) {
    const size_t k = strlen(suf);
    return n >= k && memcmp(s + n - k, suf, k) == 0;
}

qkv_status qkv__lora_file_open(const char *dir, const qkv__lora_shape *shape,
                               const qkv__lora_site *sites, size_t n_sites,
                               int (*keep_extra)(const char *name), qkv__lora_file *f) {
    memset(f, 0, sizeof *f);
    if (!dir) return qkv__fail(QKV_ERR_INVALID_ARG, "LoRA: NULL adapter directory");
    char cpath[4200];
    if (snprintf(cpath, sizeof cpath, "%s/adapter_config.json", dir) >= (int)sizeof cpath ||
        snprintf(f->path, sizeof f->path, "%s/adapter_model.safetensors", dir) >=
            (int)sizeof f->path)
        return qkv__fail(QKV_ERR_INVALID_ARG, "LoRA: adapter directory path too long");
    QKV_TRY(read_config(cpath, f));
    QKV_TRY(regular_file(f->path, 0));
    QKV_TRY(qkv_safetensors_open(f->path, &f->st));
    const size_t nt = qkv_safetensors_count(f->st);
    f->a = qkv__calloc(n_sites + 1, sizeof *f->a);
    f->b = qkv__calloc(n_sites + 1, sizeof *f->b);
    f->extra = qkv__calloc(nt + 1, sizeof *f->extra);
    qkv_owned_weights *owned = qkv__calloc(1, sizeof *owned);
    f->owned = owned;
    qkv_status s = f->a && f->b && f->extra && owned
                       ? QKV_OK
                       : qkv__fail(QKV_ERR_NOMEM, "LoRA: out of memory");
    const size_t ppl = strlen(PEFT_PREFIX);
    for (size_t i = 0; s == QKV_OK && i < nt; i++) {
        const char *name = qkv_safetensors_tensor(f->st, i)->name;
        if (strncmp(name, PEFT_PREFIX, ppl) != 0) {
            s = qkv__fail(QKV_ERR_FORMAT, "%s: tensor '%s' does not start with \"%s\"", f->path,
                          name, PEFT_PREFIX);
            break;
        }
        const char *rest = name + ppl;
        const size_t n = strlen(rest);
        const int is_a = ends_with(rest, n, ".lora_A.weight"),
                  is_b = ends_with(rest, n, ".lora_B.weight");
        if (!is_a && !is_b) {
            if (keep_extra && keep_extra(rest))
                f->extra[f->n_extra++] = rest;
            else
                s = qkv__fail(QKV_ERR_FORMAT,
                              "%s: tensor '%s' is neither a LoRA matrix of one of the model's "
                              "linear layers nor a module this model can take",
                              f->path, name);
            continue;
        }
        const int64_t k = find_site(rest, n - strlen(".lora_A.weight"), shape, sites, n_sites);
        if (k < 0) {
            s = qkv__fail(QKV_ERR_FORMAT,
                          "%s: tensor '%s': no linear layer of the model has that name (or "
                          "adapters there are not supported)",
                          f->path, name);
            break;
        }
        const qkv__lora_site *q = &sites[k];
        const float *p = NULL;
        s = qkv__weight_f32(f->st, f->path, name, is_a ? f->r : q->OC, is_a ? q->C : f->r, owned,
                            &p);
        if (s == QKV_OK && (is_a ? f->a[k] : f->b[k]))
            s = qkv__fail(QKV_ERR_FORMAT, "%s: tensor '%s' given twice", f->path, name);
        if (s == QKV_OK) (is_a ? f->a : f->b)[k] = p;
    }
    for (size_t k = 0; s == QKV_OK && k < n_sites; k++) {
        if (!f->a[k] != !f->b[k])
            s = qkv__fail(QKV_ERR_FORMAT, "%s: %s has lora_%s.weight but not lora_%s.weight",
                          f->path, sites[k].module, f->a[k] ? "A" : "B", f->a[k] ? "B" : "A");
        if (f->a[k]) f->n_adapted++;
    }
    if (s == QKV_OK && !f->n_adapted && !f->n_extra)
        s = qkv__fail(QKV_ERR_FORMAT, "%s: no LoRA tensors", f->path);
    if (s != QKV_OK) qkv__lora_file_close(f);
    return s;
}

void qkv__lora_file_close(qkv__lora_file *f) {
    if (!f) return;
    if (f->owned) qkv__owned_weights_free(f->owned);
    qkv__free(f->owned);
    qkv__free(f->a);
    qkv__free(f->b);
    qkv__free(f->extra);
    qkv_safetensors_close(f->st);
    memset(f, 0, sizeof *f);
}

const qkv_st_tensor *qkv__lora_file_extra(const qkv__lora_file *f, const char *name) {
    char full[256];
    if (snprintf(full, sizeof full, PEFT_PREFIX "%s", name) >= (int)sizeof full) return NULL;
    return qkv_safetensors_find(f->st, full);
}
