/* attribute.c — which input tokens drove an output: gradient × input and integrated gradients
 * (Sundararajan, Taly & Yan 2017) through the trainer's own forward and backward.
 *
 * f is a scalar of one sequence's word embeddings e (T, C): a classifier's logit, a decoder's
 * next-token logit at the last position, or the cosine similarity of the mean-pooled last
 * hidden states with those of a second sequence. One "pass" runs the architecture's forward on
 * given word embeddings (qkv__tbatch.word_emb replaces the lookup word[ids]; positions and token
 * types are added as usual), seeds the backward with ∂f/∂(its output) and runs the backward down
 * to ∂f/∂e: BERT's t->dx1 (the gradient of the summed embeddings), a decoder's t->dresid (of the
 * block input resid[0] = word + position). Every parameter is frozen for the call, so the
 * backward computes no weight gradient (NULL gradients are skipped) and the caller's gradients
 * are untouched; the flags are restored on every path.
 *
 * Integrated gradients on the straight line e(alpha) = e0 + alpha (e − e0):
 *   ig_i = Σ_c (e − e0)_i,c · Σ_k w_k ∂f/∂e_i,c (e(alpha_k))
 * with alpha_k = k/m and w_k = 1/m (right sum: k = 1..m; trapezoid: k = 0..m, the two ends
 * 1/2m). The gradients are summed in double. alpha = 1 is the input itself (e, not
 * e0 + (e − e0), which can round differently), so gradient × input comes from the same pass. */
#include "train/trainer.h"

#include "core/abi.h"
#include "core/alloc.h"
#include "core/error.h"

#include <math.h>
#include <string.h>

void qkv_attr_options_init_sized(qkv_attr_options *o, size_t struct_size) {
    if (!o) return;
    qkv_attr_options d = {sizeof d, QKV_ATTR_LOGIT, -1, NULL, NULL, 0, 0, QKV_IG_TRAPEZOID, -1};
    QKV__STRUCT_FILL(qkv_attr_options, o, struct_size, &d);
}

#define MAX_IG_STEPS 100000

/* What one call works with. */
typedef struct {
    qkv_trainer *t;
    qkv__tbatch b;    /* the sequence (B = 1) */
    int target;       /* qkv_attr_target */
    int64_t index;    /* the logit explained; -1 until the input's forward picks it */
    const float *cmp; /* SIMILARITY: the second sequence's pooled hidden state (C) */
    double cmp_norm;
    int64_t passes;
    float *logits; /* LOGIT: the input's logits (NL) when not NULL */
    int32_t *tgt;  /* placeholder targets, all -1, for the longer sequence */
} attr_ctx;

static int64_t argmax(const float *x, int64_t n) {
    int64_t k = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[k]) k = i;
    return k;
}

/* pooled (C) = the mean of resid[L]'s T rows, in double. */
static void mean_pool(const qkv_trainer *t, int64_t T, double *pooled) {
    const int64_t C = t->cfg.C;
    const float *h = t->resid + t->cfg.L * T * C;
    for (int64_t c = 0; c < C; c++) pooled[c] = 0;
    for (int64_t i = 0; i < T; i++)
        for (int64_t c = 0; c < C; c++) pooled[c] += (double)h[i * C + c];
    for (int64_t c = 0; c < C; c++) pooled[c] /= (double)T;
}

/* One pass at word embeddings x (T, C): *f, and ∂f/∂x into grad (T, C) unless grad is NULL
 * (then the forward only). scratch: C doubles. */
static qkv_status pass(qkv_runtime *rt, attr_ctx *a, const float *x, double *f, float *grad,
                       double *scratch) {
    qkv_trainer *t = a->t;
    const int64_t T = a->b.T, C = t->cfg.C;
    qkv__tbatch b = a->b;
    b.word_emb = x;
    float loss = 0;
    a->passes++;
    qkv__tlora_begin(t, &b);
    t->logits_valid = 0;
    if (a->target == QKV_ATTR_LOGIT) {
        const int64_t NL = t->cfg.NL;
        QKV_TRY(qkv__bert_cls_forward(rt, t, &b, 0, 0.0f, &loss));
        if (a->index < 0) a->index = argmax(t->logits, NL);
        if (a->logits && a->passes == 1) memcpy(a->logits, t->logits, (size_t)NL * sizeof(float));
        *f = (double)t->logits[a->index];
        if (!grad) return QKV_OK;
        for (int64_t k = 0; k < NL; k++) t->logits[k] = k == a->index ? 1.0f : 0.0f;
        QKV_TRY(qkv__bert_cls_backward(rt, t, &b));
        memcpy(grad, t->dx1, (size_t)(T * C) * sizeof(float));
    } else if (a->target == QKV_ATTR_NEXT_TOKEN) {
        const int64_t V = t->cfg.V;
        QKV_TRY(qkv__decoder_forward(rt, t, &b, 0, 0.0f, &loss));
        float *last = t->logits + (T - 1) * V;
        if (a->index < 0) a->index = argmax(last, V);
        *f = (double)last[a->index];
        if (!grad) return QKV_OK;
        memset(t->logits, 0, (size_t)(T * V) * sizeof(float));
        last[a->index] = 1.0f;
        QKV_TRY(qkv__decoder_backward(rt, t, &b));
        memcpy(grad, t->dresid, (size_t)(T * C) * sizeof(float));
    } else { /* SIMILARITY: f = u·v / (|u| |v|), u = mean_i h_i */
        QKV_TRY(qkv__bert_encode_forward(rt, t, &b));
        double *u = scratch, uu = 0, uv = 0;
        mean_pool(t, T, u);
        for (int64_t c = 0; c < C; c++) uu += u[c] * u[c], uv += u[c] * (double)a->cmp[c];
        const double nu = sqrt(uu), nv = a->cmp_norm;
        if (!(nu > 0) || !(nv > 0))
            return qkv__fail(QKV_ERR_INVALID_ARG,
                             "qkv_trainer_attribute: a pooled embedding is zero; the cosine "
                             "similarity is undefined");
        *f = uv / (nu * nv);
        if (!grad) return QKV_OK;
        /* ∂f/∂u = v / (|u||v|) − f u / |u|²; each row of resid[L] gets 1/T of it */
        float *dr = t->dresid;
        for (int64_t c = 0; c < C; c++) {
            const double g = ((double)a->cmp[c] / (nu * nv) - *f * u[c] / uu) / (double)T;
            for (int64_t i = 0; i < T; i++) dr[i * C + c] = (float)g;
        }
        QKV_TRY(qkv__bert_encode_backward(rt, t, &b));
        memcpy(grad, t->dx1, (size_t)(T * C) * sizeof(float));
    }
    return QKV_OK;
}

/* SIMILARITY: the second sequence's pooled hidden state into cmp (C). */
static qkv_status compare_embedding(qkv_runtime *rt, attr_ctx *a, const qkv_attr_options *o,
                                    float *cmp, double *scratch) {
    static const char fn[] = "qkv_trainer_attribute";
    qkv_trainer *t = a->t;
    /* targets: the caller's all -1 (no loss is read) */
    const int32_t lab = -1;
    qkv_train_batch cb = {.struct_size = sizeof cb,
                          .ids = o->compare_ids,
                          .targets = a->tgt,
                          .types = o->compare_type_ids,
                          .B = 1,
                          .T = o->compare_T,
                          .labels = &lab,
                          .values = a->b.values};
    qkv__tbatch b;
    QKV_TRY(qkv__trainer_check_batch(t, fn, &cb, &b));
    qkv__tlora_begin(t, &b);
    QKV_TRY(qkv__bert_encode_forward(rt, t, &b));
    a->passes++;
    mean_pool(t, o->compare_T, scratch);
    double n = 0;
    for (int64_t c = 0; c < t->cfg.C; c++) {
        cmp[c] = (float)scratch[c];
        n += (double)cmp[c] * (double)cmp[c];
    }
    a->cmp_norm = sqrt(n);
    return QKV_OK;
}

static qkv_status check_options(const qkv_trainer *t, const qkv_attr_options *o, int64_t T) {
    static const char fn[] = "qkv_trainer_attribute";
    const qkv__tarch arch = t->cfg.arch;
    const int ok =
        o->target == QKV_ATTR_LOGIT        ? arch == QKV__TARCH_BERT_CLS
        : o->target == QKV_ATTR_NEXT_TOKEN ? arch == QKV__TARCH_GPT2 || arch == QKV__TARCH_LLAMA
        : o->target == QKV_ATTR_SIMILARITY ? arch == QKV__TARCH_BERT || arch == QKV__TARCH_BERT_CLS
                                           : -1;
    if (ok < 0)
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: target %d is not a qkv_attr_target", fn,
                         o->target);
    if (!ok)
        return qkv__fail(QKV_ERR_UNSUPPORTED, "%s: a %s trainer has no %s target", fn,
                         qkv__tarch_name(arch),
                         o->target == QKV_ATTR_LOGIT        ? "classifier logit"
                         : o->target == QKV_ATTR_NEXT_TOKEN ? "next-token"
                                                            : "similarity");
    const int64_t n = o->target == QKV_ATTR_LOGIT        ? t->cfg.NL
                      : o->target == QKV_ATTR_NEXT_TOKEN ? t->cfg.V
                                                         : 0;
    if (o->target != QKV_ATTR_SIMILARITY && (o->index < -1 || o->index >= n))
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: index %lld is outside [0, %lld) (or -1)", fn,
                         (long long)o->index, (long long)n);
    if (o->ig_steps < 0 || o->ig_steps > MAX_IG_STEPS)
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: ig_steps %lld is outside [0, %d]", fn,
                         (long long)o->ig_steps, MAX_IG_STEPS);
    if (o->ig_rule != QKV_IG_TRAPEZOID && o->ig_rule != QKV_IG_RIGHT)
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: ig_rule %d is not a qkv_ig_rule", fn,
                         o->ig_rule);
    if (o->baseline_id < -1 || o->baseline_id >= t->cfg.V)
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: baseline_id %d is outside [0, %lld) (or -1)", fn,
                         o->baseline_id, (long long)t->cfg.V);
    if (T < 1) return qkv__fail(QKV_ERR_INVALID_ARG, "%s: T = %lld", fn, (long long)T);
    return QKV_OK;
}

/* The passes of one call, with every parameter frozen by the caller. */
static qkv_status attribute(qkv_runtime *rt, attr_ctx *a, const qkv_attr_options *o, float *gxi,
                            float *ig, qkv_attr_result *r, float *mem) {
    qkv_trainer *t = a->t;
    const int64_t T = a->b.T, C = t->cfg.C, TC = T * C, m = o->ig_steps;
    /* mem: e, e0, x, grad (T, C) floats each, then cmp (C) floats, then acc (T, C) and scratch
     * (C) doubles (64-byte aligned: TC is rounded up by the caller) */
    const int64_t TCa = (TC + 15) / 16 * 16, Ca = (C + 15) / 16 * 16;
    float *e = mem, *e0 = e + TCa, *x = e0 + TCa, *grad = x + TCa, *cmp = grad + TCa;
    double *acc = (double *)(cmp + Ca), *scratch = acc + TCa;
    const float *wte = qkv__tpre(t, t->w, 0);
    for (int64_t i = 0; i < T; i++) {
        memcpy(e + i * C, wte + (int64_t)a->b.ids[i] * C, (size_t)C * sizeof(float));
        if (o->baseline_id >= 0)
            memcpy(e0 + i * C, wte + (int64_t)o->baseline_id * C, (size_t)C * sizeof(float));
        else
            memset(e0 + i * C, 0, (size_t)C * sizeof(float));
    }
    if (a->target == QKV_ATTR_SIMILARITY) {
        QKV_TRY(compare_embedding(rt, a, o, cmp, scratch));
        a->cmp = cmp;
    }
    /* the input first: it picks the index and gives gradient × input */
    double f1 = 0, f0 = 0, f;
    QKV_TRY(pass(rt, a, e, &f1, grad, scratch));
    r->index = a->index;
    r->f_input = f1;
    if (gxi)
        for (int64_t i = 0; i < T; i++) {
            double s = 0;
            for (int64_t c = 0; c < C; c++) s += (double)grad[i * C + c] * (double)e[i * C + c];
            gxi[i] = (float)s;
        }
    if (m < 1) return QKV_OK;
    const int trap = o->ig_rule == QKV_IG_TRAPEZOID;
    for (int64_t k = 0; k < TC; k++) acc[k] = (trap ? 0.5 : 1.0) * (double)grad[k];
    /* alpha = 0: f(baseline), and the trapezoid's first gradient */
    QKV_TRY(pass(rt, a, e0, &f0, trap ? grad : NULL, scratch));
    for (int64_t k = 0; trap && k < TC; k++) acc[k] += 0.5 * (double)grad[k];
    for (int64_t s = 1; s < m; s++) {
        const float alpha = (float)((double)s / (double)m);
        for (int64_t k = 0; k < TC; k++) x[k] = e0[k] + alpha * (e[k] - e0[k]);
        QKV_TRY(pass(rt, a, x, &f, grad, scratch));
        for (int64_t k = 0; k < TC; k++) acc[k] += (double)grad[k];
    }
    double sum = 0;
    for (int64_t i = 0; i < T; i++) {
        double s = 0;
        for (int64_t c = 0; c < C; c++)
            s += ((double)e[i * C + c] - (double)e0[i * C + c]) * acc[i * C + c] / (double)m;
        ig[i] = (float)s;
        sum += s;
    }
    r->f_baseline = f0;
    r->ig_sum = sum;
    return QKV_OK;
}

/* qkv_trainer_attribute, and the input's logits of a classifier into logits (or NULL). */
static qkv_status attribute_call(qkv_runtime *rt, qkv_trainer *t, const int32_t *ids,
                                 const int32_t *type_ids, int64_t T, const qkv_attr_options *opt,
                                 float *grad_x_input, float *ig, qkv_attr_result *res,
                                 float *logits) {
    static const char fn[] = "qkv_trainer_attribute";
    if (!t || !ids) return qkv__fail(QKV_ERR_INVALID_ARG, "%s: NULL trainer or ids", fn);
    qkv_attr_options o;
    qkv_attr_options_init(&o);
    if (opt) QKV_TRY(QKV__STRUCT_IN(qkv_attr_options, &o, opt, &o, fn));
    QKV_TRY(check_options(t, &o, T));
    if (o.ig_steps > 0 && !ig)
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: ig_steps %lld needs the ig array", fn,
                         (long long)o.ig_steps);
    const int sim = o.target == QKV_ATTR_SIMILARITY;
    if (sim && (!o.compare_ids || o.compare_T < 1 || o.compare_T > t->cfg.P))
        return qkv__fail(QKV_ERR_INVALID_ARG,
                         "%s: the similarity target needs compare_ids and compare_T in [1, %lld] "
                         "(it is %lld)",
                         fn, (long long)t->cfg.P, (long long)o.compare_T);
    const int64_t Tmax = sim && o.compare_T > T ? o.compare_T : T;
    if (T > t->cfg.P)
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: T = %lld is longer than the model's %lld", fn,
                         (long long)T, (long long)t->cfg.P);
    /* activations for the longer sequence first: the batches below keep pointers into them */
    QKV_TRY(qkv_trainer_reserve(t, 1, Tmax, t->arena ? t->policy : QKV_RECOMPUTE_NONE, NULL));
    attr_ctx a = {.t = t, .target = o.target, .index = sim ? -1 : o.index, .logits = logits};
    /* placeholder targets: the forwards compute a loss no one reads */
    const int64_t NL = t->cfg.NL > 0 ? t->cfg.NL : 1;
    float *values = qkv__calloc((size_t)NL, sizeof(float));
    a.tgt = qkv__alloc((size_t)Tmax * sizeof(int32_t));
    const int32_t lab = -1;
    const int64_t C = t->cfg.C, TCa = (T * C + 15) / 16 * 16, Ca = (C + 15) / 16 * 16;
    float *mem =
        qkv__alloc((size_t)(4 * TCa + Ca) * sizeof(float) + (size_t)(TCa + Ca) * sizeof(double));
    int *flags = qkv__alloc(t->n_params * sizeof(int));
    qkv_status st = QKV_OK;
    if (!values || !a.tgt || !mem || !flags)
        st = qkv__fail(QKV_ERR_NOMEM, "%s: out of memory (T %lld, C %lld)", fn, (long long)T,
                       (long long)C);
    for (int64_t i = 0; st == QKV_OK && i < Tmax; i++) a.tgt[i] = -1;
    qkv_train_batch batch = {.struct_size = sizeof batch,
                             .ids = ids,
                             .targets = a.tgt,
                             .types = type_ids,
                             .B = 1,
                             .T = T,
                             .labels = &lab,
                             .values = values};
    if (st == QKV_OK) st = qkv__trainer_check_batch(t, fn, &batch, &a.b);
    qkv_attr_result r = {sizeof r, -1, 0, 0, 0, 0};
    if (st == QKV_OK) {
        for (size_t i = 0; i < t->n_params; i++) flags[i] = t->params[i].trainable;
        for (size_t i = 0; i < t->n_params; i++) t->params[i].trainable = 0;
        st = attribute(rt, &a, &o, grad_x_input, ig, &r, mem);
        for (size_t i = 0; i < t->n_params; i++) t->params[i].trainable = flags[i];
        t->logits_valid = 0;
    }
    r.passes = a.passes;
    if (st == QKV_OK && res) QKV__STRUCT_OUT(qkv_attr_result, res, &r);
    qkv__free(values), qkv__free(a.tgt), qkv__free(mem), qkv__free(flags);
    return st;
}

qkv_status qkv_trainer_attribute(qkv_runtime *rt, qkv_trainer *t, const int32_t *ids,
                                 const int32_t *type_ids, int64_t T, const qkv_attr_options *opt,
                                 float *grad_x_input, float *ig, qkv_attr_result *res) {
    return attribute_call(rt, t, ids, type_ids, T, opt, grad_x_input, ig, res, NULL);
}

qkv_status qkv_trainer_saliency(qkv_runtime *rt, qkv_trainer *t, const int32_t *ids,
                                const int32_t *type_ids, int64_t T, int64_t label, float *saliency,
                                float *logits) {
    static const char fn[] = "qkv_trainer_saliency";
    if (!t || !ids || !saliency) return qkv__fail(QKV_ERR_INVALID_ARG, "%s: NULL argument", fn);
    if (t->cfg.arch != QKV__TARCH_BERT_CLS)
        return qkv__fail(QKV_ERR_UNSUPPORTED, "%s: %s is not a classifier", fn,
                         qkv__tarch_name(t->cfg.arch));
    if (label < 0 || label >= t->cfg.NL)
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: label %lld is outside [0, %lld)", fn,
                         (long long)label, (long long)t->cfg.NL);
    qkv_attr_options o;
    qkv_attr_options_init(&o);
    o.target = QKV_ATTR_LOGIT;
    o.index = label;
    return attribute_call(rt, t, ids, type_ids, T, &o, saliency, NULL, NULL, logits);
}
