/* checkpoint.c — the trainer's files: checkpoints (weights + AdamW state + step + the caller's
 * JSON, one safetensors file written atomically), Hugging Face export and import.
 *
 * Checkpoint tensors: every parameter under its Hugging Face name, AdamW's first and second
 * moments under "optim.exp_avg.<name>" and "optim.exp_avg_sq.<name>". Metadata: format
 * "qkv-train-checkpoint", version "1", the shape (vocab_size, n_positions, n_embd, n_layer,
 * n_head), layer_norm_epsilon, activation_function, steps, and "user" (the caller's JSON). */
#include "train/trainer.h"

#include "core/alloc.h"
#include "core/error.h"
#include "models/gpt.h"
#include "models/weights.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
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

qkv_status qkv_trainer_save(const qkv_trainer *t, const char *path, const char *user_json) {
    if (!t || !path) return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_trainer_save: NULL argument");
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
            wt[j] = (qkv_st_write_tensor){names[j], QKV_DTYPE_F32, p->ndim, p->shape,
                                          buf[k] + p->offset};
        }
    char v[8][32];
    const qkv_gpt2_shape *s = &t->shape;
    snprintf(v[0], sizeof v[0], "%" PRId64, s->vocab_size);
    snprintf(v[1], sizeof v[1], "%" PRId64, s->n_positions);
    snprintf(v[2], sizeof v[2], "%" PRId64, s->n_embd);
    snprintf(v[3], sizeof v[3], "%" PRId64, s->n_layer);
    snprintf(v[4], sizeof v[4], "%" PRId64, s->n_head);
    snprintf(v[5], sizeof v[5], "%.9g", (double)t->eps);
    snprintf(v[6], sizeof v[6], "%s", act_name(t->act));
    snprintf(v[7], sizeof v[7], "%" PRId64, t->steps);
    const char *keys[] = {
        "format",  "version", "vocab_size",         "n_positions",         "n_embd",
        "n_layer", "n_head",  "layer_norm_epsilon", "activation_function", "steps",
        "user"};
    const char *vals[] = {
        "qkv-train-checkpoint",      "1", v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7],
        user_json ? user_json : "{}"};
    qkv_status st = qkv_safetensors_write(path, wt, n, keys, vals, sizeof keys / sizeof *keys);
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

qkv_status qkv_trainer_restore(const char *path, qkv_trainer **out, char **user_json) {
    if (!path || !out) return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_trainer_restore: NULL argument");
    *out = NULL;
    if (user_json) *user_json = NULL;
    qkv_safetensors *st;
    QKV_TRY(qkv_safetensors_open(path, &st));
    qkv_status s = QKV_OK;
    const char *fmt = qkv_safetensors_metadata_get(st, "format");
    qkv_gpt2_shape sh;
    int64_t steps = 0;
    float eps = 1e-5f;
    qkv_act act = QKV_ACT_GELU_TANH;
    if (!fmt || strcmp(fmt, "qkv-train-checkpoint") != 0) {
        s = qkv__fail(QKV_ERR_FORMAT, "%s: not a qkv training checkpoint (metadata 'format')",
                      path);
    } else if (!meta_i64(st, "vocab_size", &sh.vocab_size) ||
               !meta_i64(st, "n_positions", &sh.n_positions) ||
               !meta_i64(st, "n_embd", &sh.n_embd) || !meta_i64(st, "n_layer", &sh.n_layer) ||
               !meta_i64(st, "n_head", &sh.n_head) || !meta_i64(st, "steps", &steps) || steps < 0) {
        s = qkv__fail(QKV_ERR_FORMAT, "%s: checkpoint metadata is missing or malformed", path);
    } else {
        const char *e = qkv_safetensors_metadata_get(st, "layer_norm_epsilon");
        char *end = NULL;
        if (e) eps = strtof(e, &end);
        if (!e || *end || !(eps >= 0) ||
            !act_parse(qkv_safetensors_metadata_get(st, "activation_function"), &act))
            s = qkv__fail(QKV_ERR_FORMAT, "%s: bad layer_norm_epsilon or activation_function",
                          path);
    }
    qkv_trainer *t = NULL;
    if (s == QKV_OK) s = qkv__trainer_alloc(&sh, &t);
    static const char *const pre[3] = {"", "optim.exp_avg.", "optim.exp_avg_sq."};
    for (int k = 0; s == QKV_OK && k < 3; k++) {
        float *buf = k == 0 ? t->w : k == 1 ? t->m : t->v;
        for (size_t i = 0; s == QKV_OK && i < t->n_params; i++) {
            const qkv__tparam *p = &t->params[i];
            char name[160];
            snprintf(name, sizeof name, "%s%s", pre[k], p->name);
            const qkv_st_tensor *x = qkv_safetensors_find(st, name);
            if (!x || x->dtype != QKV_DTYPE_F32 || x->ndim != p->ndim ||
                x->shape[0] != p->shape[0] || (p->ndim == 2 && x->shape[1] != p->shape[1]))
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
    qkv_safetensors_close(st);
    if (s != QKV_OK) {
        qkv_trainer_free(t);
        return s;
    }
    t->steps = steps;
    t->eps = eps;
    t->act = act;
    *out = t;
    return QKV_OK;
}

/* ---------------------------------------------------------------- Hugging Face */

static qkv_status write_text_atomic(const char *path, const char *text) {
    char tmp[4200];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return qkv__fail(QKV_ERR_INVALID_ARG, "path too long: %s", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return qkv__fail(QKV_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int e = errno;
            close(fd);
            unlink(tmp);
            return qkv__fail(QKV_ERR_IO, "cannot write %s: %s", tmp, strerror(e));
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return qkv__fail(QKV_ERR_IO, "cannot write %s: %s", path, strerror(e));
    }
    return QKV_OK;
}

qkv_status qkv_trainer_export_hf(const qkv_trainer *t, const char *dir, int32_t eot_id) {
    if (!t || !dir) return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_trainer_export_hf: NULL argument");
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return qkv__fail(QKV_ERR_IO, "cannot create directory %s: %s", dir, strerror(errno));
    char path[4096];
    if (snprintf(path, sizeof path, "%s/model.safetensors", dir) >= (int)sizeof path)
        return qkv__fail(QKV_ERR_INVALID_ARG, "export: directory path too long");
    qkv_st_write_tensor *wt = qkv__calloc(t->n_params, sizeof *wt);
    if (!wt) return qkv__fail(QKV_ERR_NOMEM, "export: out of memory");
    for (size_t i = 0; i < t->n_params; i++) {
        const qkv__tparam *p = &t->params[i];
        wt[i] = (qkv_st_write_tensor){p->name, QKV_DTYPE_F32, p->ndim, p->shape, t->w + p->offset};
    }
    const char *mk[] = {"format"}, *mv[] = {"pt"};
    qkv_status s = qkv_safetensors_write(path, wt, t->n_params, mk, mv, 1);
    qkv__free(wt);
    QKV_TRY(s);
    const qkv_gpt2_shape *sh = &t->shape;
    char ids[64] = "null";
    if (eot_id >= 0) snprintf(ids, sizeof ids, "%d", eot_id);
    char cfg[2048];
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
             "  \"initializer_range\": 0.02,\n"
             "  \"scale_attn_weights\": true,\n"
             "  \"tie_word_embeddings\": true,\n"
             "  \"bos_token_id\": %s,\n"
             "  \"eos_token_id\": %s,\n"
             "  \"torch_dtype\": \"float32\"\n"
             "}\n",
             (long long)sh->vocab_size, (long long)sh->n_positions, (long long)sh->n_positions,
             (long long)sh->n_embd, (long long)sh->n_layer, (long long)sh->n_head, act_name(t->act),
             (double)t->eps, ids, ids);
    if (snprintf(path, sizeof path, "%s/config.json", dir) >= (int)sizeof path)
        return qkv__fail(QKV_ERR_INVALID_ARG, "export: directory path too long");
    return write_text_atomic(path, cfg);
}

qkv_status qkv_trainer_load_hf(const char *dir, qkv_trainer **out) {
    if (!dir || !out) return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_trainer_load_hf: NULL argument");
    *out = NULL;
    qkv_gpt_config c;
    QKV_TRY(qkv__gpt_config_load(dir, &c));
    const char *why = c.arch != QKV_GPT_ARCH_GPT2 ? "model_type (gpt2 only)"
                      : !c.tied                   ? "tie_word_embeddings (must be true)"
                      : c.attn_scale != 0.0f      ? "scale_attn_weights (must be true)"
                      : c.scale_by_layer          ? "scale_attn_by_inverse_layer_idx"
                      : c.intermediate_size != 4 * c.hidden_size ? "n_inner (must be 4 n_embd)"
                                                                 : NULL;
    if (why)
        return qkv__fail(QKV_ERR_UNSUPPORTED, "%s/config.json: training does not support %s", dir,
                         why);
    qkv_gpt2_shape sh = {c.vocab_size, c.max_position, c.hidden_size, c.num_layers, c.num_heads};
    qkv_trainer *t;
    QKV_TRY(qkv__trainer_alloc(&sh, &t));
    t->eps = c.norm_eps;
    t->act = c.act;
    char path[4096];
    qkv_status s = QKV_OK;
    if (snprintf(path, sizeof path, "%s/model.safetensors", dir) >= (int)sizeof path)
        s = qkv__fail(QKV_ERR_INVALID_ARG, "model directory path is too long");
    qkv_safetensors *st = NULL;
    if (s == QKV_OK) s = qkv_safetensors_open(path, &st);
    const char *prefix = st && qkv_safetensors_find(st, "transformer.wte.weight") ? "" : "h";
    for (size_t i = 0; s == QKV_OK && i < t->n_params; i++) {
        const qkv__tparam *p = &t->params[i];
        /* our names carry "transformer."; a GPT2Model checkpoint has none */
        const char *name = prefix[0] ? p->name + strlen("transformer.") : p->name;
        qkv_owned_weights owned = {0};
        const float *src;
        s = qkv__weight_f32(st, path, name, p->shape[0], p->ndim == 2 ? p->shape[1] : 0, &owned,
                            &src);
        if (s == QKV_OK) memcpy(t->w + p->offset, src, (size_t)p->numel * sizeof(float));
        qkv__owned_weights_free(&owned);
    }
    qkv_safetensors_close(st);
    if (s != QKV_OK) {
        qkv_trainer_free(t);
        return s;
    }
    *out = t;
    return QKV_OK;
}
