/* checkpoint.c — the trainer's files: checkpoints (weights + AdamW state + step + the caller's
 * JSON, one safetensors file written atomically), Hugging Face export and import.
 *
 * Checkpoint tensors: every parameter under its Hugging Face name, AdamW's first and second
 * moments under "optim.exp_avg.<name>" and "optim.exp_avg_sq.<name>". Metadata: format
 * "qkv-train-checkpoint", version "1", arch (gpt2, llama, bert; absent: gpt2), the sizes
 * (vocab_size, n_positions, n_embd, n_layer, n_head, n_kv_head, head_dim, n_inner,
 * type_vocab_size), layer_norm_epsilon, activation_function, rope_theta, tied, steps, and
 * "user" (the caller's JSON). Checkpoints of GPT-2 trainers from before arch was recorded lack
 * the keys after n_head; they take GPT-2's values. */
#include "train/trainer.h"

#include "core/abi.h"
#include "core/alloc.h"
#include "core/error.h"
#include "io/crc32c.h"
#include "io/json.h"
#include "models/gpt.h"
#include "models/weights.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *act_name(qkv_act a) {
    switch (a) {
    case QKV_ACT_GELU_ERF: return "gelu";
    case QKV_ACT_RELU: return "relu";
    case QKV_ACT_SILU: return "silu";
    default: return "gelu_new";
    }
}

static int act_parse(const char *s, qkv_act *a) {
    if (!s) return 0;
    if (strcmp(s, "gelu_new") == 0)
        *a = QKV_ACT_GELU_TANH;
    else if (strcmp(s, "gelu") == 0)
        *a = QKV_ACT_GELU_ERF;
    else if (strcmp(s, "relu") == 0)
        *a = QKV_ACT_RELU;
    else if (strcmp(s, "silu") == 0)
        *a = QKV_ACT_SILU;
    else
        return 0;
    return 1;
}

/* ---------------------------------------------------------------- checkpoints */

/* A classifier's label names as a JSON array (qkv__free it), NULL when out of memory. */
static char *labels_json(const qkv__labels *l) {
    qkv__json_begin();
    json_t *a = json_array();
    for (int64_t i = 0; a && i < l->n; i++)
        if (json_array_append_new(a, json_string(l->names[i])) != 0) {
            json_decref(a);
            a = NULL;
        }
    char *s = a ? json_dumps(a, JSON_COMPACT) : NULL;
    json_decref(a);
    char *out = s ? qkv__strdup(s) : NULL;
    json_free_t release;
    json_get_alloc_funcs(NULL, &release);
    if (s) release(s); /* jansson's own free: its blocks carry a header (io/json.c) */
    qkv__json_end();
    return out;
}

/* The labels of a classifier checkpoint's metadata into t (its config already has NL). */
static qkv_status restore_labels(const char *path, const qkv_safetensors *st, qkv__tconfig *c,
                                 qkv__labels *out) {
    const char *pt = qkv_safetensors_metadata_get(st, "problem_type");
    const char *dr = qkv_safetensors_metadata_get(st, "dropout");
    const char *lj = qkv_safetensors_metadata_get(st, "labels");
    int k = -1;
    for (int i = 0; pt && i <= QKV_PROBLEM_REGRESSION; i++)
        if (strcmp(pt, qkv__problem_name((qkv_problem_type)i)) == 0) k = i;
    if (k < 0 || !dr || !lj || sscanf(dr, "%f,%f,%f", &c->p_hidden, &c->p_attn, &c->p_cls) != 3 ||
        !(c->p_hidden >= 0 && c->p_hidden < 1 && c->p_attn >= 0 && c->p_attn < 1 && c->p_cls >= 0 &&
          c->p_cls < 1))
        return qkv__fail(QKV_ERR_FORMAT,
                         "%s: a classifier checkpoint needs metadata problem_type, dropout and "
                         "labels",
                         path);
    c->problem = (qkv_problem_type)k;
    qkv__json_begin();
    json_error_t err;
    json_t *a = json_loads(lj, JSON_REJECT_DUPLICATES, &err);
    size_t n = json_is_array(a) ? json_array_size(a) : 0;
    const char **names = n ? qkv__calloc(n, sizeof *names) : NULL;
    qkv_status s = QKV_OK;
    for (size_t i = 0; names && i < n; i++)
        if (!(names[i] = json_string_value(json_array_get(a, i)))) s = QKV_ERR_FORMAT;
    if (!names || s != QKV_OK || (int64_t)n > QKV__MAX_LABELS)
        s = qkv__fail(QKV_ERR_FORMAT, "%s: bad metadata 'labels' (a JSON array of names)", path);
    else
        s = qkv__labels_make((int64_t)n, names, c->problem, out);
    qkv__free(names);
    json_decref(a);
    qkv__json_end();
    c->NL = out->n;
    return s;
}

/* CRC-32C of the weights, then the first and second moments, parameter by parameter: the
 * checkpoint's tensors in that order (whatever order the file stores them in). */
static uint32_t data_crc(const qkv_trainer *t) {
    const float *buf[3] = {t->w, t->m, t->v};
    uint32_t crc = 0;
    for (int k = 0; k < 3; k++)
        for (size_t i = 0; i < t->n_params; i++)
            crc = qkv__crc32c(crc, buf[k] + t->params[i].offset,
                              (size_t)t->params[i].numel * sizeof(float));
    return crc;
}

qkv_status qkv_trainer_save(const qkv_trainer *t, const char *path, const char *user_json) {
    if (!t || !path) return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_trainer_save: NULL argument");
    if (qkv__tsharded(t)) /* qkv_train_run's checkpoints gather them (zero.c) */
        return qkv__fail(QKV_ERR_INVALID_ARG,
                         "qkv_trainer_save: this trainer holds the optimizer state of a slice "
                         "of the parameters only (ZeRO-1 across ranks); resume from its run's "
                         "checkpoint instead");
    size_t n = t->n_params * 3;
    qkv_st_write_tensor *wt = qkv__calloc(n, sizeof *wt);
    char(*names)[128] = qkv__calloc(n, sizeof *names);
    if (!wt || !names) {
        qkv__free(wt);
        qkv__free(names);
        return qkv__fail(QKV_ERR_NOMEM, "qkv_trainer_save: out of memory");
    }
    static const char *const pre[3] = {"", "optim.exp_avg.", "optim.exp_avg_sq."};
    const float *buf[3] = {t->w, t->m, t->v};
    for (int k = 0; k < 3; k++)
        for (size_t i = 0; i < t->n_params; i++) {
            const qkv__tparam *p = &t->params[i];
            size_t j = (size_t)k * t->n_params + i;
            snprintf(names[j], sizeof names[j], "%s%s", pre[k], p->name);
            wt[j] =
                (qkv_st_write_tensor){names[j], p->dtype, p->ndim, p->shape, buf[k] + p->offset};
        }
    const qkv__tconfig *c = &t->cfg;
    const char *keys[] = {"format",
                          "version",
                          "arch",
                          "vocab_size",
                          "n_positions",
                          "n_embd",
                          "n_layer",
                          "n_head",
                          "n_kv_head",
                          "head_dim",
                          "n_inner",
                          "type_vocab_size",
                          "layer_norm_epsilon",
                          "activation_function",
                          "rope_theta",
                          "tied",
                          "steps",
                          "frozen",
                          "user",
                          "problem_type",
                          "dropout",
                          "labels"};
    char v[18][40], drop[64];
    const int64_t num[] = {c->V, c->P, c->C, c->L, c->H, c->Hk, c->D, c->F, c->TV};
    for (int i = 0; i < 9; i++) snprintf(v[3 + i], sizeof v[0], "%" PRId64, num[i]);
    snprintf(v[12], sizeof v[0], "%.9g", (double)c->eps);
    snprintf(v[13], sizeof v[0], "%s", act_name(c->act));
    snprintf(v[14], sizeof v[0], "%.17g", c->rope_theta);
    snprintf(v[15], sizeof v[0], "%d", c->tied);
    snprintf(v[16], sizeof v[0], "%" PRId64, t->steps);
    /* frozen parameters: their indices, comma-separated ("" when none) */
    char *frozen = qkv__alloc(t->n_params * 21 + 1);
    if (!frozen) {
        qkv__free(wt);
        qkv__free(names);
        return qkv__fail(QKV_ERR_NOMEM, "qkv_trainer_save: out of memory");
    }
    size_t fl = 0;
    frozen[0] = 0;
    for (size_t i = 0; i < t->n_params; i++)
        if (!t->params[i].trainable) fl += (size_t)sprintf(frozen + fl, "%s%zu", fl ? "," : "", i);
    const char *vals[22] = {"qkv-train-checkpoint", "1", qkv__tarch_name(c->arch)};
    for (int i = 3; i < 17; i++) vals[i] = v[i];
    vals[17] = frozen;
    vals[18] = user_json ? user_json : "{}";
    /* classifiers: the head's problem type, dropout rates and labels (a JSON array) */
    const int cls = c->arch == QKV__TARCH_BERT_CLS;
    char *labels = cls ? labels_json(&t->labels) : NULL;
    snprintf(drop, sizeof drop, "%.9g,%.9g,%.9g", (double)c->p_hidden, (double)c->p_attn,
             (double)c->p_cls);
    vals[19] = qkv__problem_name(c->problem);
    vals[20] = drop;
    vals[21] = labels;
    /* adapters: their config (lora_train.c) as one more key */
    char *lora = t->lora ? qkv__tlora_meta(t) : NULL;
    const char *k2[26], *v2[26];
    size_t nm = cls ? 22 : 19;
    memcpy(k2, keys, nm * sizeof *k2);
    memcpy(v2, vals, nm * sizeof *v2);
    /* encoder-decoders: the decoder's sizes, embeddings, special ids and rates */
    char s2s[400];
    if (c->arch == QKV__TARCH_MARIAN) {
        snprintf(s2s, sizeof s2s,
                 "%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64
                 ",%d,%.9g,%d,%d,%d,%.9g,%.9g,%.9g,%.9g",
                 c->L2, c->H2, c->F2, c->Vd, c->shared, (double)c->embed_scale, c->start_id,
                 c->pad_id, c->eos_id, (double)c->p_hidden, (double)c->p_attn, (double)c->p_act,
                 (double)c->smoothing);
        k2[nm] = "seq2seq", v2[nm++] = s2s;
    }
    if (lora) k2[nm] = "lora", v2[nm++] = lora;
    /* the checksum of every tensor's data, verified by qkv_trainer_restore */
    char crc[16];
    snprintf(crc, sizeof crc, "%08" PRIx32, data_crc(t));
    k2[nm] = "data_crc32c", v2[nm++] = crc;
    qkv_status st = (cls && !labels) || (t->lora && !lora)
                        ? qkv__fail(QKV_ERR_NOMEM, "qkv_trainer_save: out of memory")
                        : qkv_safetensors_write(path, wt, n, k2, v2, nm);
    qkv__free(lora);
    qkv__free(labels);
    qkv__free(frozen);
    qkv__free(wt);
    qkv__free(names);
    return st;
}

static int meta_i64(const qkv_safetensors *st, const char *key, int64_t *out) {
    const char *s = qkv_safetensors_metadata_get(st, key);
    if (!s || !*s) return 0;
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (errno || *end) return 0;
    *out = x;
    return 1;
}

/* An encoder-decoder's metadata "seq2seq" (what qkv_trainer_save writes) into c; the sizes and
 * ids are checked with the rest of the config. */
static qkv_status restore_seq2seq(const char *path, const qkv_safetensors *st, qkv__tconfig *c) {
    const char *m = qkv_safetensors_metadata_get(st, "seq2seq");
    long long L2, H2, F2, Vd;
    int shared, start, pad, eos, used = -1;
    float scale, ph, pa, pact, ls;
    if (!m ||
        sscanf(m, "%lld,%lld,%lld,%lld,%d,%f,%d,%d,%d,%f,%f,%f,%f%n", &L2, &H2, &F2, &Vd, &shared,
               &scale, &start, &pad, &eos, &ph, &pa, &pact, &ls, &used) != 13 ||
        used < 0 || m[used] != 0 || !(scale > 0.0f) || !(ph >= 0.0f && ph < 1.0f) ||
        !(pa >= 0.0f && pa < 1.0f) || !(pact >= 0.0f && pact < 1.0f) || !(ls >= 0.0f && ls < 1.0f))
        return qkv__fail(QKV_ERR_FORMAT, "%s: metadata 'seq2seq' is missing or malformed", path);
    c->L2 = L2, c->H2 = H2, c->F2 = F2, c->Vd = Vd, c->shared = shared != 0;
    c->embed_scale = scale, c->start_id = start, c->pad_id = pad, c->eos_id = eos;
    c->p_hidden = ph, c->p_attn = pa, c->p_act = pact, c->smoothing = ls;
    return QKV_OK;
}

qkv_status qkv_trainer_restore(const char *path, qkv_trainer **out, char **user_json) {
    if (!path || !out) return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_trainer_restore: NULL argument");
    *out = NULL;
    if (user_json) *user_json = NULL;
    qkv_safetensors *st;
    QKV_TRY(qkv_safetensors_open(path, &st));
    qkv_status s = QKV_OK;
    const char *fmt = qkv_safetensors_metadata_get(st, "format");
    qkv__tconfig c = {.arch = QKV__TARCH_GPT2,
                      .init_std = 0.02,
                      .bos_id = -1,
                      .eos_id = -1,
                      .pad_id = -1,
                      .tied = 1,
                      .act = QKV_ACT_GELU_TANH,
                      .eps = 1e-5f};
    int64_t steps = 0, tied = 1;
    const char *arch = qkv_safetensors_metadata_get(st, "arch");
    if (!fmt || strcmp(fmt, "qkv-train-checkpoint") != 0) {
        s = qkv__fail(QKV_ERR_FORMAT, "%s: not a qkv training checkpoint (metadata 'format')",
                      path);
    } else if ((arch && !qkv__tarch_parse(arch, &c.arch)) || !meta_i64(st, "vocab_size", &c.V) ||
               !meta_i64(st, "n_positions", &c.P) || !meta_i64(st, "n_embd", &c.C) ||
               !meta_i64(st, "n_layer", &c.L) || !meta_i64(st, "n_head", &c.H) ||
               !meta_i64(st, "steps", &steps) || steps < 0 || c.H < 1) {
        s = qkv__fail(QKV_ERR_FORMAT, "%s: checkpoint metadata is missing or malformed", path);
    } else {
        c.Hk = c.H, c.D = c.C / c.H, c.F = 4 * c.C; /* GPT-2's, for checkpoints without them */
        const char *keys[] = {"n_kv_head", "head_dim", "n_inner", "type_vocab_size", "tied"};
        int64_t *dst[] = {&c.Hk, &c.D, &c.F, &c.TV, &tied};
        for (int i = 0; i < 5; i++)
            if (qkv_safetensors_metadata_get(st, keys[i]) && !meta_i64(st, keys[i], dst[i]))
                s = qkv__fail(QKV_ERR_FORMAT, "%s: bad metadata '%s'", path, keys[i]);
        c.tied = tied != 0;
        const char *e = qkv_safetensors_metadata_get(st, "layer_norm_epsilon");
        const char *r = qkv_safetensors_metadata_get(st, "rope_theta");
        char *end = NULL, *rend = NULL;
        if (e) c.eps = strtof(e, &end);
        if (r) c.rope_theta = strtod(r, &rend);
        if (!e || *end || !(c.eps >= 0) || (r && *rend) ||
            !act_parse(qkv_safetensors_metadata_get(st, "activation_function"), &c.act))
            s = qkv__fail(QKV_ERR_FORMAT,
                          "%s: bad layer_norm_epsilon, rope_theta or "
                          "activation_function",
                          path);
    }
    if (s == QKV_OK && c.arch == QKV__TARCH_MARIAN) s = restore_seq2seq(path, st, &c);
    qkv__labels labels = {0};
    if (s == QKV_OK && c.arch == QKV__TARCH_BERT_CLS) s = restore_labels(path, st, &c, &labels);
    if (s == QKV_OK) s = qkv__tconfig_check_file(&c, st, path, 1);
    qkv_trainer *t = NULL;
    if (s == QKV_OK) s = qkv__trainer_alloc(&c, &t);
    if (t) t->labels = labels, labels = (qkv__labels){0};
    qkv__labels_free(&labels);
    const char *lora = qkv_safetensors_metadata_get(st, "lora");
    if (s == QKV_OK && lora) s = qkv__tlora_restore(t, path, lora);
    for (size_t i = 0; s == QKV_OK && lora && i < t->n_params; i++)
        t->params[i].trainable = 1; /* the 'frozen' list below is the whole truth */
    static const char *const pre[3] = {"", "optim.exp_avg.", "optim.exp_avg_sq."};
    for (int k = 0; s == QKV_OK && k < 3; k++) {
        float *buf = k == 0 ? t->w : k == 1 ? t->m : t->v;
        for (size_t i = 0; s == QKV_OK && i < t->n_params; i++) {
            const qkv__tparam *p = &t->params[i];
            char name[160];
            snprintf(name, sizeof name, "%s%s", pre[k], p->name);
            const qkv_st_tensor *x = qkv_safetensors_find(st, name);
            if (!x || x->dtype != p->dtype || x->ndim != p->ndim || x->shape[0] != p->shape[0] ||
                (p->ndim == 2 && x->shape[1] != p->shape[1]))
                s = qkv__fail(QKV_ERR_FORMAT,
                              "%s: tensor '%s' is missing or not F32 of the shape the metadata "
                              "gives",
                              path, name);
            else
                memcpy(buf + p->offset, x->data, (size_t)p->numel * sizeof(float));
        }
    }
    if (s == QKV_OK && user_json) {
        const char *u = qkv_safetensors_metadata_get(st, "user");
        *user_json = qkv__strdup(u ? u : "{}");
        if (!*user_json) s = qkv__fail(QKV_ERR_NOMEM, "qkv_trainer_restore: out of memory");
    }
    const char *crc = s == QKV_OK ? qkv_safetensors_metadata_get(st, "data_crc32c") : NULL;
    if (crc) { /* checkpoints before this version have none */
        char want[16];
        snprintf(want, sizeof want, "%08" PRIx32, data_crc(t));
        if (strcmp(crc, want) != 0)
            s = qkv__fail(QKV_ERR_FORMAT,
                          "%s: the data does not match its checksum (data_crc32c %s, computed "
                          "%s): the checkpoint is damaged",
                          path, crc, want);
    }
    const char *fz = s == QKV_OK ? qkv_safetensors_metadata_get(st, "frozen") : NULL;
    for (const char *q = fz; q && *q && s == QKV_OK;) { /* "i,j,...": frozen parameters */
        char *end;
        errno = 0;
        unsigned long long i = strtoull(q, &end, 10);
        if (errno || end == q || i >= t->n_params || (*end && *end != ','))
            s = qkv__fail(QKV_ERR_FORMAT, "%s: bad metadata 'frozen'", path);
        else
            t->params[i].trainable = 0, q = *end ? end + 1 : end;
    }
    qkv_safetensors_close(st);
    if (s != QKV_OK) {
        qkv_trainer_free(t);
        if (user_json) { /* copied before the checksum and 'frozen' checks: nothing on failure */
            qkv_free(*user_json);
            *user_json = NULL;
        }
        return s;
    }
    t->steps = steps;
    *out = t;
    return QKV_OK;
}

/* ---------------------------------------------------------------- Hugging Face */

qkv_status qkv__write_text_atomic(const char *path, const char *text) {
    char tmp[4200];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return qkv__fail(QKV_ERR_INVALID_ARG, "path too long: %s", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return qkv__write_fail("cannot create", tmp);
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int e = errno;
            close(fd);
            unlink(tmp);
            errno = e;
            return qkv__write_fail("cannot write", tmp);
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        errno = e;
        return qkv__write_fail("cannot write", path);
    }
    return QKV_OK;
}

/* Writes the JSON object o (built after qkv__json_begin; s: how building it went) to path
 * atomically, indented with sorted keys; releases o and ends the JSON section. */
static qkv_status dump_config(const char *path, json_t *o, qkv_status s) {
    char *text = s == QKV_OK ? json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
    if (s == QKV_OK && !text) s = qkv__fail(QKV_ERR_NOMEM, "export: out of memory");
    json_decref(o);
    char *nl = text ? qkv__alloc(strlen(text) + 2) : NULL;
    if (text && !nl) s = qkv__fail(QKV_ERR_NOMEM, "export: out of memory");
    if (nl) snprintf(nl, strlen(text) + 2, "%s\n", text);
    json_free_t release;
    json_get_alloc_funcs(NULL, &release);
    if (text) release(text); /* jansson's own free (io/json.c) */
    qkv__json_end();
    if (s == QKV_OK) s = qkv__write_text_atomic(path, nl);
    qkv__free(nl);
    return s;
}

/* config.json of a BertForSequenceClassification: the encoder's fields, the dropout rates it
 * was trained with, and the head's labels and problem type. */
static qkv_status export_cls_config(const qkv_trainer *t, const char *dir, const char *pad) {
    const qkv__tconfig *c = &t->cfg;
    char path[4096];
    if (snprintf(path, sizeof path, "%s/config.json", dir) >= (int)sizeof path)
        return qkv__fail(QKV_ERR_INVALID_ARG, "export: directory path too long");
    qkv__json_begin();
    json_t *o = json_pack(
        "{s:[s],s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:s,s:f,s:f,s:f,s:f,s:f,s:s,"
        "s:s,s:b}",
        "architectures", "BertForSequenceClassification", "model_type", "bert", "vocab_size",
        (json_int_t)c->V, "max_position_embeddings", (json_int_t)c->P, "type_vocab_size",
        (json_int_t)c->TV, "hidden_size", (json_int_t)c->C, "intermediate_size", (json_int_t)c->F,
        "num_hidden_layers", (json_int_t)c->L, "num_attention_heads", (json_int_t)c->H,
        "hidden_act", act_name(c->act), "layer_norm_eps", (double)c->eps, "hidden_dropout_prob",
        (double)c->p_hidden, "attention_probs_dropout_prob", (double)c->p_attn,
        "classifier_dropout", (double)c->p_cls, "initializer_range", c->init_std,
        "position_embedding_type", "absolute", "torch_dtype", "float32", "use_cache", 1);
    qkv_status s =
        o ? qkv__labels_write(&t->labels, o) : qkv__fail(QKV_ERR_NOMEM, "export: out of memory");
    if (s == QKV_OK && strcmp(pad, "null") != 0 &&
        json_object_set_new(o, "pad_token_id", json_integer(atoi(pad))) != 0)
        s = qkv__fail(QKV_ERR_NOMEM, "export: out of memory");
    return dump_config(path, o, s);
}

/* config.json of a MarianMTModel: what qkv__tconfig_load_marian reads back. */
static qkv_status export_marian_config(const qkv_trainer *t, const char *dir) {
    const qkv__tconfig *c = &t->cfg;
    char path[4096];
    if (snprintf(path, sizeof path, "%s/config.json", dir) >= (int)sizeof path)
        return qkv__fail(QKV_ERR_INVALID_ARG, "export: directory path too long");
    const char *act = c->act == QKV_ACT_SILU        ? "swish"
                      : c->act == QKV_ACT_GELU_ERF  ? "gelu"
                      : c->act == QKV_ACT_GELU_TANH ? "gelu_new"
                                                    : "relu";
    qkv__json_begin();
    json_t *o = json_pack(
        "{s:[s],s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:s,s:b,s:b,s:b,s:b,s:I,s:I,s:I,"
        "s:f,s:f,s:f,s:f,s:b,s:s}",
        "architectures", "MarianMTModel", "model_type", "marian", "vocab_size", (json_int_t)c->V,
        "decoder_vocab_size", (json_int_t)c->Vd, "d_model", (json_int_t)c->C,
        "max_position_embeddings", (json_int_t)c->P, "encoder_layers", (json_int_t)c->L,
        "decoder_layers", (json_int_t)c->L2, "encoder_attention_heads", (json_int_t)c->H,
        "decoder_attention_heads", (json_int_t)c->H2, "encoder_ffn_dim", (json_int_t)c->F,
        "decoder_ffn_dim", (json_int_t)c->F2, "activation_function", act, "scale_embedding",
        c->embed_scale != 1.0f, "share_encoder_decoder_embeddings", c->shared,
        "tie_word_embeddings", c->tied, "normalize_before", 0, "pad_token_id",
        (json_int_t)c->pad_id, "eos_token_id", (json_int_t)c->eos_id, "decoder_start_token_id",
        (json_int_t)c->start_id, "dropout", (double)c->p_hidden, "attention_dropout",
        (double)c->p_attn, "activation_dropout", (double)c->p_act, "init_std", c->init_std,
        "is_encoder_decoder", 1, "torch_dtype", "float32");
    qkv_status s = o ? QKV_OK : qkv__fail(QKV_ERR_NOMEM, "export: out of memory");
    return dump_config(path, o, s);
}

qkv_status qkv_trainer_export_hf(const qkv_trainer *t, const char *dir, int32_t eot_id) {
    if (!t || !dir) return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_trainer_export_hf: NULL argument");
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return qkv__write_fail("cannot create the directory", dir);
    char path[4096];
    if (snprintf(path, sizeof path, "%s/model.safetensors", dir) >= (int)sizeof path)
        return qkv__fail(QKV_ERR_INVALID_ARG, "export: directory path too long");
    /* with adapters: the merged weights W + s·B·A, without the adapters' own tensors */
    float *merged = NULL;
    if (t->lora) QKV_TRY(qkv__tlora_merged(t, &merged));
    const float *W = merged ? merged : t->w;
    const size_t np = qkv__tn_base(t);
    qkv_st_write_tensor *wt = qkv__calloc(np, sizeof *wt);
    if (!wt) {
        qkv__free(merged);
        return qkv__fail(QKV_ERR_NOMEM, "export: out of memory");
    }
    for (size_t i = 0; i < np; i++) {
        const qkv__tparam *p = &t->params[i];
        wt[i] = (qkv_st_write_tensor){p->name, p->dtype, p->ndim, p->shape, W + p->offset};
    }
    const char *mk[] = {"format"}, *mv[] = {"pt"};
    qkv_status s = qkv_safetensors_write(path, wt, np, mk, mv, 1);
    qkv__free(wt);
    qkv__free(merged);
    QKV_TRY(s);
    const qkv__tconfig *c = &t->cfg;
    char bos[32] = "null", eos[32] = "null", pad[32] = "null";
    int32_t b = c->bos_id >= 0 ? c->bos_id : eot_id, e = c->eos_id >= 0 ? c->eos_id : eot_id;
    if (b >= 0) snprintf(bos, sizeof bos, "%d", b);
    if (e >= 0) snprintf(eos, sizeof eos, "%d", e);
    if (c->pad_id >= 0) snprintf(pad, sizeof pad, "%d", c->pad_id);
    if (c->arch == QKV__TARCH_BERT_CLS) return export_cls_config(t, dir, pad);
    if (c->arch == QKV__TARCH_MARIAN) return export_marian_config(t, dir);
    char cfg[2048];
    if (c->arch == QKV__TARCH_LLAMA)
        snprintf(cfg, sizeof cfg,
                 "{\n"
                 "  \"architectures\": [\"LlamaForCausalLM\"],\n"
                 "  \"model_type\": \"llama\",\n"
                 "  \"vocab_size\": %lld,\n"
                 "  \"max_position_embeddings\": %lld,\n"
                 "  \"hidden_size\": %lld,\n"
                 "  \"intermediate_size\": %lld,\n"
                 "  \"num_hidden_layers\": %lld,\n"
                 "  \"num_attention_heads\": %lld,\n"
                 "  \"num_key_value_heads\": %lld,\n"
                 "  \"head_dim\": %lld,\n"
                 "  \"hidden_act\": \"silu\",\n"
                 "  \"rms_norm_eps\": %.9g,\n"
                 "  \"rope_theta\": %.17g,\n"
                 "  \"attention_bias\": false,\n"
                 "  \"mlp_bias\": false,\n"
                 "  \"attention_dropout\": 0.0,\n"
                 "  \"initializer_range\": %.9g,\n"
                 "  \"tie_word_embeddings\": %s,\n"
                 "  \"bos_token_id\": %s,\n"
                 "  \"eos_token_id\": %s,\n"
                 "  \"torch_dtype\": \"float32\"\n"
                 "}\n",
                 (long long)c->V, (long long)c->P, (long long)c->C, (long long)c->F,
                 (long long)c->L, (long long)c->H, (long long)c->Hk, (long long)c->D,
                 (double)c->eps, c->rope_theta, c->init_std, c->tied ? "true" : "false", bos, eos);
    else if (c->arch == QKV__TARCH_BERT)
        snprintf(cfg, sizeof cfg,
                 "{\n"
                 "  \"architectures\": [\"BertForMaskedLM\"],\n"
                 "  \"model_type\": \"bert\",\n"
                 "  \"vocab_size\": %lld,\n"
                 "  \"max_position_embeddings\": %lld,\n"
                 "  \"type_vocab_size\": %lld,\n"
                 "  \"hidden_size\": %lld,\n"
                 "  \"intermediate_size\": %lld,\n"
                 "  \"num_hidden_layers\": %lld,\n"
                 "  \"num_attention_heads\": %lld,\n"
                 "  \"hidden_act\": \"%s\",\n"
                 "  \"layer_norm_eps\": %.9g,\n"
                 "  \"hidden_dropout_prob\": 0.0,\n"
                 "  \"attention_probs_dropout_prob\": 0.0,\n"
                 "  \"initializer_range\": %.9g,\n"
                 "  \"position_embedding_type\": \"absolute\",\n"
                 "  \"pad_token_id\": %s,\n"
                 "  \"torch_dtype\": \"float32\"\n"
                 "}\n",
                 (long long)c->V, (long long)c->P, (long long)c->TV, (long long)c->C,
                 (long long)c->F, (long long)c->L, (long long)c->H, act_name(c->act),
                 (double)c->eps, c->init_std, pad);
    else
        snprintf(cfg, sizeof cfg,
                 "{\n"
                 "  \"architectures\": [\"GPT2LMHeadModel\"],\n"
                 "  \"model_type\": \"gpt2\",\n"
                 "  \"vocab_size\": %lld,\n"
                 "  \"n_positions\": %lld,\n"
                 "  \"n_ctx\": %lld,\n"
                 "  \"n_embd\": %lld,\n"
                 "  \"n_layer\": %lld,\n"
                 "  \"n_head\": %lld,\n"
                 "  \"n_inner\": null,\n"
                 "  \"activation_function\": \"%s\",\n"
                 "  \"layer_norm_epsilon\": %.9g,\n"
                 "  \"resid_pdrop\": 0.0,\n"
                 "  \"embd_pdrop\": 0.0,\n"
                 "  \"attn_pdrop\": 0.0,\n"
                 "  \"initializer_range\": %.9g,\n"
                 "  \"scale_attn_weights\": true,\n"
                 "  \"tie_word_embeddings\": true,\n"
                 "  \"bos_token_id\": %s,\n"
                 "  \"eos_token_id\": %s,\n"
                 "  \"torch_dtype\": \"float32\"\n"
                 "}\n",
                 (long long)c->V, (long long)c->P, (long long)c->P, (long long)c->C,
                 (long long)c->L, (long long)c->H, act_name(c->act), (double)c->eps, c->init_std,
                 bos, eos);
    if (snprintf(path, sizeof path, "%s/config.json", dir) >= (int)sizeof path)
        return qkv__fail(QKV_ERR_INVALID_ARG, "export: directory path too long");
    return qkv__write_text_atomic(path, cfg);
}

/* The weights of dir's model.safetensors into t, by the parameter table's names. Head rows
 * (and a classifier's pooler) the checkpoint lacks, or has in another shape (a classifier for
 * other labels), start fresh from seed, as transformers initializes them; t->n_fresh counts
 * them. */
static qkv_status open_weights(const char *dir, char *path, size_t cap, qkv_safetensors **st) {
    if (snprintf(path, cap, "%s/model.safetensors", dir) >= (int)cap)
        return qkv__fail(QKV_ERR_INVALID_ARG, "model directory path is too long");
    return qkv_safetensors_open(path, st);
}

static qkv_status load_weights(qkv_trainer *t, const char *path, qkv_safetensors *st,
                               uint64_t seed) {
    /* our body names carry the prefix ("transformer.", "model.", "bert."); the base-model
     * checkpoints (GPT2Model, LlamaModel, BertModel) have none */
    const qkv__param_table *tab = t->tab;
    const size_t plen = strlen(tab->prefix);
    const int strip = !qkv_safetensors_find(st, t->params[0].name);
    const int cls = t->cfg.arch == QKV__TARCH_BERT_CLS,
              bert = cls || t->cfg.arch == QKV__TARCH_BERT;
    const size_t first_post = qkv__tbody(t); /* pooler, then head */
    qkv_status s = QKV_OK;
    t->n_fresh = 0;
    for (size_t i = 0; s == QKV_OK && i < t->n_params; i++) {
        const qkv__tparam *p = &t->params[i];
        const int body = strncmp(p->name, tab->prefix, plen) == 0; /* head rows: unprefixed */
        const char *name = strip && body ? p->name + plen : p->name;
        const int optional = bert && (!body || (cls && i >= first_post));
        const qkv_st_tensor *x = qkv_safetensors_find(st, name);
        if (optional && (!x || x->ndim != p->ndim || x->shape[0] != p->shape[0] ||
                         (p->ndim == 2 && x->shape[1] != p->shape[1]))) {
            qkv__trainer_init_param(t, i, seed); /* a fresh head */
            t->n_fresh++;
            continue;
        }
        qkv_owned_weights owned = {0};
        const float *src;
        s = qkv__weight_f32(st, path, name, p->shape[0], p->ndim == 2 ? p->shape[1] : 0, &owned,
                            &src);
        if (s == QKV_OK) memcpy(t->w + p->offset, src, (size_t)p->numel * sizeof(float));
        qkv__owned_weights_free(&owned);
    }
    return s;
}

/* A trainer for config c from dir's model.safetensors: the file is opened and its size checked
 * against c before anything is allocated. Takes labels (NULL: none) in every case. */
static qkv_status load_hf(const char *dir, const qkv__tconfig *c, qkv__labels *labels,
                          uint64_t seed, qkv_trainer **out) {
    char path[4096];
    qkv_safetensors *st = NULL;
    qkv_trainer *t = NULL;
    qkv_status s = open_weights(dir, path, sizeof path, &st);
    if (s == QKV_OK) s = qkv__tconfig_check_file(c, st, path, 0);
    if (s == QKV_OK) s = qkv__trainer_alloc(c, &t);
    if (s == QKV_OK && labels) t->labels = *labels, *labels = (qkv__labels){0};
    if (labels) qkv__labels_free(labels);
    if (s == QKV_OK) s = load_weights(t, path, st, seed);
    qkv_safetensors_close(st);
    if (s != QKV_OK) {
        qkv_trainer_free(t);
        return s;
    }
    *out = t;
    return QKV_OK;
}

qkv_status qkv_trainer_load_hf(const char *dir, qkv_trainer **out) {
    if (!dir || !out) return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_trainer_load_hf: NULL argument");
    *out = NULL;
    qkv__tconfig c;
    QKV_TRY(qkv__tconfig_load(dir, &c));
    return load_hf(dir, &c, NULL, 0, out);
}

qkv_status qkv_trainer_load_hf_classifier(const char *dir, const qkv_classifier_spec *spec,
                                          qkv_trainer **out) {
    if (!dir || !out)
        return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_trainer_load_hf_classifier: NULL argument");
    *out = NULL;
    qkv_classifier_spec sp;
    qkv_classifier_spec_init(&sp);
    if (spec)
        QKV_TRY(
            QKV__STRUCT_IN(qkv_classifier_spec, &sp, spec, NULL, "qkv_trainer_load_hf_classifier"));
    qkv__tconfig c;
    qkv__labels labels;
    QKV_TRY(qkv__tconfig_load_cls(dir, &sp, &c, &labels));
    return load_hf(dir, &c, &labels, sp.seed, out);
}
