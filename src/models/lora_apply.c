/* lora_apply.c — PEFT LoRA adapters applied to loaded models (qkv_model_load_lora,
 * qkv_lm_load_lora: on the fly, through the qkv_nn_linear lora pointer of each block layer,
 * beside the packed weights) and folded into a copy of a model directory (qkv_lora_merge).
 * The adapter directory is read and checked whole (models/lora.c) before the model changes. */
#include "models/lora.h"

#include "core/alloc.h"
#include "core/error.h"
#include "io/file.h"
#include "io/json.h"
#include "models/bert.h"
#include "models/gpt.h"
#include "models/labels.h"
#include "models/model.h"
#include "models/weights.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void qkv__lora_release(qkv__lora_file *f, qkv_nn_lora *slots) {
    qkv__lora_file_close(f);
    qkv__free(f);
    qkv__free(slots);
}

/* The slots of every adapted site (inference: no gradients, no dropout). */
static qkv_nn_lora *make_slots(const qkv__lora_shape *sh, const qkv__lora_site *sites, size_t n,
                               const qkv__lora_file *f) {
    qkv_nn_lora *slots = qkv__calloc(qkv__lora_head_slot(sh->L, QKV__LS_HEADS), sizeof *slots);
    for (size_t k = 0; slots && k < n; k++) {
        if (!f->a[k]) continue;
        const size_t at = sites[k].layer >= 0 ? qkv__lora_slot(sites[k].layer, sites[k].kind)
                                              : qkv__lora_head_slot(sh->L, sites[k].kind);
        qkv__lora_bind(&sites[k], f->a[k], f->b[k], NULL, NULL, f->r, f->scale, &slots[at]);
    }
    return slots;
}

/* Opens dir against a model of this shape: *f (allocated) and its slots. */
static qkv_status open_adapter(const char *dir, const qkv__lora_shape *sh,
                               int (*keep_extra)(const char *), qkv__lora_file **f,
                               qkv_nn_lora **slots) {
    qkv__lora_site *sites = NULL;
    size_t n = 0;
    QKV_TRY(qkv__lora_sites(sh, &sites, &n));
    *f = qkv__calloc(1, sizeof **f);
    qkv_status s = *f ? qkv__lora_file_open(dir, sh, sites, n, keep_extra, *f)
                      : qkv__fail(QKV_ERR_NOMEM, "LoRA: out of memory");
    *slots = s == QKV_OK ? make_slots(sh, sites, n, *f) : NULL;
    if (s == QKV_OK && !*slots) s = qkv__fail(QKV_ERR_NOMEM, "LoRA: out of memory");
    qkv__free(sites);
    if (s != QKV_OK) {
        qkv__lora_release(*f, *slots);
        *f = NULL, *slots = NULL;
    }
    return s;
}

/* ---------------------------------------------------------------- encoders */

static const char *const bert_extras[] = {"classifier.weight", "classifier.bias",
                                          "pooler.dense.weight", "pooler.dense.bias"};

static int bert_extra(const char *name) {
    if (strncmp(name, "bert.", 5) == 0) name += 5;
    for (size_t i = 0; i < sizeof bert_extras / sizeof *bert_extras; i++)
        if (strcmp(name, bert_extras[i]) == 0) return 1;
    return 0;
}

/* An extra tensor named with or without "bert.", as F32 of shape (d0[, d1]); NULL if absent. */
static qkv_status bert_extra_get(qkv__lora_file *f, const char *name, int64_t d0, int64_t d1,
                                 const float **out) {
    *out = NULL;
    char full[128];
    for (int pre = 0; pre < 2; pre++) {
        snprintf(full, sizeof full, "base_model.model.%s%s", pre ? "bert." : "", name);
        if (qkv_safetensors_find(f->st, full))
            return qkv__weight_f32(f->st, f->path, full, d0, d1, f->owned, out);
    }
    return QKV_OK;
}

qkv_status qkv_model_load_lora(qkv_model *m, const char *dir) {
    static const char fn[] = "qkv_model_load_lora";
    if (!m || !dir) return qkv__fail(QKV_ERR_INVALID_ARG, "%s: NULL argument", fn);
    qkv_bert *b = m->bert;
    if (b->lora) return qkv__fail(QKV_ERR_INVALID_ARG, "%s: the model has an adapter already", fn);
    const qkv_bert_config *c = &b->cfg;
    const int64_t C = c->hidden_size;
    const qkv__lora_shape sh = {
        QKV__LORA_BERT,    "bert.", c->num_layers, C, c->intermediate_size, C, C,
        b->pool_w != NULL, 0};
    qkv__lora_file *f;
    qkv_nn_lora *slots;
    QKV_TRY(open_adapter(dir, &sh, bert_extra, &f, &slots));
    /* the head a SEQ_CLS adapter saves whole: classifier (NL, C), maybe the pooler */
    const qkv_st_tensor *cw = NULL;
    for (size_t i = 0; i < f->n_extra && !cw; i++)
        if (strcmp(f->extra[i], "classifier.weight") == 0 ||
            strcmp(f->extra[i], "bert.classifier.weight") == 0)
            cw = qkv__lora_file_extra(f, f->extra[i]);
    const int64_t NL = cw && cw->ndim == 2 ? cw->shape[0] : b->labels.n;
    const float *cls_w = NULL, *cls_b = NULL, *pool_w = NULL, *pool_b = NULL;
    qkv_status s = QKV_OK;
    if (NL < 1 || NL > QKV__MAX_LABELS)
        s = cw ? qkv__fail(QKV_ERR_FORMAT, "%s: classifier.weight has %lld rows", f->path,
                           (long long)NL)
               : QKV_OK;
    else if (b->labels.n && NL != b->labels.n)
        s = qkv__fail(QKV_ERR_FORMAT, "%s: the classifier has %lld labels, the model %lld", f->path,
                      (long long)NL, (long long)b->labels.n);
    if (s == QKV_OK && NL >= 1) s = bert_extra_get(f, "classifier.weight", NL, C, &cls_w);
    if (s == QKV_OK && NL >= 1) s = bert_extra_get(f, "classifier.bias", NL, 0, &cls_b);
    if (s == QKV_OK) s = bert_extra_get(f, "pooler.dense.weight", C, C, &pool_w);
    if (s == QKV_OK) s = bert_extra_get(f, "pooler.dense.bias", C, 0, &pool_b);
    if (s == QKV_OK && (!cls_w != !cls_b || !pool_w != !pool_b))
        s = qkv__fail(QKV_ERR_FORMAT, "%s: a module to save needs both its weight and bias",
                      f->path);
    if (s == QKV_OK && cls_w && !pool_w && !b->pool_w)
        s = qkv__fail(QKV_ERR_FORMAT, "%s: a classifier needs a pooler (the model has none)",
                      f->path);
    qkv__labels labels = {0};
    if (s == QKV_OK && cls_w && !b->labels.n)
        s = qkv__labels_make(NL, NULL, NL == 1 ? QKV_PROBLEM_REGRESSION : QKV_PROBLEM_SINGLE_LABEL,
                             &labels);
    if (s != QKV_OK) {
        qkv__lora_release(f, slots);
        return s;
    }
    /* everything checked: the model changes */
    if (labels.n) b->labels = labels;
    if (cls_w) b->cls_w = cls_w, b->cls_b = cls_b;
    if (pool_w) b->pool_w = pool_w, b->pool_b = pool_b;
    for (int64_t l = 0; l < c->num_layers; l++)
        qkv__lora_attach_enc(&b->layers[l].blk, slots + qkv__lora_slot(l, 0));
    b->lora = f;
    b->lora_slot = slots;
    return QKV_OK;
}

/* ---------------------------------------------------------------- decoders */

static qkv__lora_shape gpt_shape(const qkv_gpt_config *c) {
    const int g2 = c->arch == QKV_GPT_ARCH_GPT2;
    return (qkv__lora_shape){g2 ? QKV__LORA_GPT2 : QKV__LORA_LLAMA,
                             g2 ? "transformer." : "model.",
                             c->num_layers,
                             c->hidden_size,
                             c->intermediate_size,
                             c->num_heads * c->head_dim,
                             c->num_kv_heads * c->head_dim,
                             0,
                             0};
}

qkv_status qkv__gpt_load_lora(qkv_gpt *m, const char *dir) {
    static const char fn[] = "qkv_lm_load_lora";
    if (!m || !dir) return qkv__fail(QKV_ERR_INVALID_ARG, "%s: NULL argument", fn);
    if (m->lora) return qkv__fail(QKV_ERR_INVALID_ARG, "%s: the model has an adapter already", fn);
    const qkv__lora_shape sh = gpt_shape(&m->cfg);
    qkv__lora_file *f;
    qkv_nn_lora *slots;
    QKV_TRY(open_adapter(dir, &sh, NULL, &f, &slots));
    qkv_status st = qkv__gpt_unfuse(m); /* the adapter attaches to q, k, v, gate, up one by one */
    if (st != QKV_OK) {
        qkv__lora_release(f, slots);
        return st;
    }
    for (int64_t l = 0; l < m->cfg.num_layers; l++)
        qkv__lora_attach_dec(&m->layers[l].blk, slots + qkv__lora_slot(l, 0));
    m->lora = f;
    m->lora_slot = slots;
    return QKV_OK;
}

/* ---------------------------------------------------------------- merging into a directory */

static qkv_status copy_file(const char *src, const char *dst) {
    int in;
    QKV_TRY(qkv__open_regular(src, 1, &in, NULL)); /* never a FIFO or a link swapped in */
    int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (out < 0) {
        close(in);
        return qkv__write_fail("cannot create", dst);
    }
    char buf[1 << 16];
    qkv_status s = QKV_OK;
    for (;;) {
        ssize_t r = read(in, buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) s = qkv__fail(QKV_ERR_IO, "cannot read %s: %s", src, strerror(errno));
        if (r <= 0) break;
        for (ssize_t o = 0; s == QKV_OK && o < r;) {
            ssize_t w = write(out, buf + o, (size_t)(r - o));
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) s = qkv__write_fail("cannot write", dst);
            o += w > 0 ? w : 0;
        }
        if (s != QKV_OK) break;
    }
    if (fsync(out) != 0 && s == QKV_OK) s = qkv__write_fail("cannot write", dst);
    close(out);
    close(in);
    return s;
}

/* Copies the regular files of src (not model.safetensors) into dst, and of its
 * subdirectories one level down (sentence-transformers' 1_Pooling/ ...). */
static qkv_status copy_dir(const char *src, const char *dst, int depth) {
    DIR *d = opendir(src);
    if (!d) return qkv__fail(QKV_ERR_IO, "cannot read directory %s: %s", src, strerror(errno));
    qkv_status s = QKV_OK;
    for (struct dirent *e; s == QKV_OK && (e = readdir(d));) {
        if (e->d_name[0] == '.' || (!depth && strcmp(e->d_name, "model.safetensors") == 0))
            continue;
        char a[4200], b[4200];
        if (snprintf(a, sizeof a, "%s/%s", src, e->d_name) >= (int)sizeof a ||
            snprintf(b, sizeof b, "%s/%s", dst, e->d_name) >= (int)sizeof b) {
            s = qkv__fail(QKV_ERR_INVALID_ARG, "path too long: %s/%s", src, e->d_name);
            break;
        }
        struct stat sb;
        if (lstat(a, &sb) != 0) continue;
        if (S_ISREG(sb.st_mode)) {
            s = copy_file(a, b);
        } else if (S_ISDIR(sb.st_mode) && depth == 0) {
            if (mkdir(b, 0755) != 0)
                s = qkv__write_fail("cannot create", b);
            else
                s = copy_dir(a, b, 1);
        }
    }
    closedir(d);
    return s;
}

static void remove_tree(const char *dir) {
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char p[4200];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode))
            remove_tree(p);
        else
            unlink(p);
    }
    if (d) closedir(d);
    rmdir(dir);
}

/* The shape of a Hugging Face directory's model for its adapters (from config.json). */
static qkv_status dir_shape(const char *dir, const qkv_safetensors *st, qkv__lora_shape *sh) {
    char path[4200];
    QKV_TRY(qkv__json_config_path(dir, path, sizeof path));
    qkv__json_begin();
    json_t *o = NULL;
    qkv_status s = qkv__json_load_file(path, 0, &o);
    const char *mt = json_string_value(json_object_get(o, "model_type"));
    const int bert = mt && strcmp(mt, "bert") == 0;
    json_decref(o);
    qkv__json_end();
    QKV_TRY(s);
    if (!bert) {
        qkv_gpt_config gc;
        QKV_TRY(qkv__gpt_config_load(dir, &gc));
        *sh = gpt_shape(&gc);
        return QKV_OK;
    }
    qkv_bert_config bc;
    QKV_TRY(qkv__bert_config_load(dir, &bc));
    const int64_t C = bc.hidden_size;
    *sh = (qkv__lora_shape){QKV__LORA_BERT,
                            "bert.",
                            bc.num_layers,
                            C,
                            bc.intermediate_size,
                            C,
                            C,
                            qkv_safetensors_find(st, "bert.pooler.dense.weight") ||
                                qkv_safetensors_find(st, "pooler.dense.weight"),
                            qkv_safetensors_find(st, "cls.predictions.transform.dense.weight") !=
                                NULL};
    return QKV_OK;
}

/* The base tensor a name (with or without the prefix) denotes, or NULL. */
static const qkv_st_tensor *base_find(const qkv_safetensors *st, const char *prefix,
                                      const char *name) {
    const qkv_st_tensor *x = qkv_safetensors_find(st, name);
    const size_t pl = strlen(prefix);
    if (!x && strncmp(name, prefix, pl) == 0) x = qkv_safetensors_find(st, name + pl);
    if (!x) {
        char full[256];
        snprintf(full, sizeof full, "%s%s", prefix, name);
        x = qkv_safetensors_find(st, full);
    }
    return x;
}

/* Writes tmp/model.safetensors: base tensors, the adapted ones merged in F32, the extras. */
static qkv_status write_merged(const char *model_path, qkv_safetensors *st,
                               const qkv__lora_shape *sh, const qkv__lora_site *sites,
                               size_t n_sites, qkv__lora_file *f, const char *out_path) {
    const size_t nb = qkv_safetensors_count(st), n = nb + f->n_extra;
    qkv_st_write_tensor *wt = qkv__calloc(n + 1, sizeof *wt);
    float **merged = qkv__calloc(nb + 1, sizeof *merged);
    qkv_owned_weights owned = {0};
    qkv_status s = wt && merged ? QKV_OK : qkv__fail(QKV_ERR_NOMEM, "LoRA merge: out of memory");
    for (size_t i = 0; s == QKV_OK && i < nb; i++) {
        const qkv_st_tensor *x = qkv_safetensors_tensor(st, i);
        wt[i] = (qkv_st_write_tensor){x->name, x->dtype, x->ndim, x->shape, x->data};
    }
    for (size_t k = 0; s == QKV_OK && k < n_sites; k++) {
        if (!f->a[k]) continue;
        const qkv__lora_site *q = &sites[k];
        char name[160];
        snprintf(name, sizeof name, "%s.weight", q->module);
        const qkv_st_tensor *x = base_find(st, sh->prefix, name);
        if (!x) {
            s = qkv__fail(QKV_ERR_FORMAT, "%s: no tensor %s for the adapter of %s", model_path,
                          name, q->module);
            break;
        }
        const size_t i = (size_t)(x - qkv_safetensors_tensor(st, 0));
        const float *w;
        s = qkv__weight_f32(st, model_path, x->name, q->in_out ? q->C : q->OC,
                            q->in_out ? q->OC : q->C, &owned, &w);
        if (s != QKV_OK) break;
        merged[i] = qkv__alloc((size_t)(q->C * q->OC) * sizeof(float));
        if (!merged[i]) {
            s = qkv__fail(QKV_ERR_NOMEM, "LoRA merge: out of memory");
            break;
        }
        memcpy(merged[i], w, (size_t)(q->C * q->OC) * sizeof(float));
        const qkv_nn_lora a = {f->a[k], f->b[k], NULL, NULL, f->r, f->scale, 0.0f, 0, 0};
        s = qkv_nn_lora_merge(merged[i], q->in_out, 0, q->C, q->OC, &a, 1.0f);
        wt[i].dtype = QKV_DTYPE_F32;
        wt[i].data = merged[i];
    }
    size_t m = nb;
    for (size_t e = 0; s == QKV_OK && e < f->n_extra; e++) { /* modules_to_save */
        const qkv_st_tensor *y = qkv__lora_file_extra(f, f->extra[e]);
        const qkv_st_tensor *x = base_find(st, sh->prefix, f->extra[e]);
        if (!y) continue;
        if (x) {
            size_t i = (size_t)(x - qkv_safetensors_tensor(st, 0));
            if (x->ndim != y->ndim || memcmp(x->shape, y->shape, (size_t)x->ndim * 8) != 0)
                s = qkv__fail(QKV_ERR_FORMAT, "%s: %s has another shape than the model's %s",
                              f->path, y->name, x->name);
            wt[i] = (qkv_st_write_tensor){x->name, y->dtype, y->ndim, y->shape, y->data};
        } else {
            wt[m++] = (qkv_st_write_tensor){f->extra[e], y->dtype, y->ndim, y->shape, y->data};
        }
    }
    const char *mk[] = {"format"}, *mv[] = {"pt"};
    if (s == QKV_OK) s = qkv_safetensors_write(out_path, wt, m, mk, mv, 1);
    for (size_t i = 0; merged && i < nb; i++) qkv__free(merged[i]);
    qkv__free(merged);
    qkv__free(wt);
    qkv__owned_weights_free(&owned);
    return s;
}

qkv_status qkv_lora_merge(const char *model_dir, const char *lora_dir, const char *out_dir) {
    static const char fn[] = "qkv_lora_merge";
    if (!model_dir || !lora_dir || !out_dir || !*out_dir)
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: NULL argument", fn);
    /* refuse an existing non-empty output before reading anything */
    DIR *od = opendir(out_dir);
    struct stat osb;
    const int existed = od != NULL;
    if (od) {
        int empty = 1;
        for (struct dirent *e; (e = readdir(od));)
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) empty = 0;
        closedir(od);
        if (!empty)
            return qkv__fail(QKV_ERR_INVALID_ARG, "%s: %s exists and is not empty", fn, out_dir);
    } else if (lstat(out_dir, &osb) == 0) {
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: %s exists and is not a directory", fn, out_dir);
    }
    char mpath[4200], tmp[4200], opath[4300];
    if (snprintf(mpath, sizeof mpath, "%s/model.safetensors", model_dir) >= (int)sizeof mpath ||
        snprintf(tmp, sizeof tmp, "%s.tmp.%ld", out_dir, (long)getpid()) >= (int)sizeof tmp)
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: path too long", fn);
    snprintf(opath, sizeof opath, "%s/model.safetensors", tmp);
    qkv_safetensors *st = NULL;
    QKV_TRY(qkv_safetensors_open(mpath, &st));
    qkv__lora_shape sh;
    qkv__lora_site *sites = NULL;
    size_t n = 0;
    qkv__lora_file f = {0};
    qkv_status s = dir_shape(model_dir, st, &sh);
    if (s == QKV_OK) s = qkv__lora_sites(&sh, &sites, &n);
    if (s == QKV_OK)
        s = qkv__lora_file_open(lora_dir, &sh, sites, n,
                                sh.family == QKV__LORA_BERT ? bert_extra : NULL, &f);
    int made = 0;
    if (s == QKV_OK) {
        if (mkdir(tmp, 0755) != 0)
            s = qkv__write_fail("cannot create", tmp);
        else
            made = 1;
    }
    if (s == QKV_OK) s = write_merged(mpath, st, &sh, sites, n, &f, opath);
    if (s == QKV_OK) s = copy_dir(model_dir, tmp, 0);
    if (s == QKV_OK && existed) rmdir(out_dir); /* the empty directory that was there */
    if (s == QKV_OK && rename(tmp, out_dir) != 0)
        s = qkv__write_fail("cannot rename into place", tmp);
    if (s != QKV_OK && made) remove_tree(tmp);
    qkv__lora_file_close(&f);
    qkv__free(sites);
    qkv_safetensors_close(st);
    return s;
}
