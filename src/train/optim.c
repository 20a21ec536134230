/* optim.c — global-norm gradient clipping, AdamW and the learning-rate schedule.
 *
 * AdamW follows torch.optim.AdamW's single-tensor path (the CPU default) operation by
 * operation, in F32 with the scalars it computes in double (Python floats), so the same
 * gradients give the same weights to rounding:
 *   θ ← θ · (1 − lr·λ)                      (decoupled decay, only for decay tensors)
 *   m ← m + (1 − β1)(g − m)                 (lerp)
 *   v ← v·β2 + ((1 − β2)·g)·g               (mul, addcmul)
 *   θ ← θ + ((−lr / (1 − β1ᵗ))·m) / (√v / √(1 − β2ᵗ) + ε)   (addcdiv)  */
#include "train/trainer.h"

#include "core/alloc.h"
#include "core/error.h"

#include <math.h>

typedef struct {
    qkv_trainer *t;
    double *partial; /* per tensor: Σ g² */
    float coef;
} norm_ctx;

static void sumsq_tensors(void *p, int64_t i0, int64_t i1, int tid) {
    norm_ctx *c = p;
    (void)tid;
    for (int64_t i = i0; i < i1; i++) {
        const qkv__tparam *q = &c->t->params[i];
        const float *g = c->t->g + q->offset;
        double s = 0;
        for (int64_t j = 0; j < q->numel; j++) s += (double)g[j] * (double)g[j];
        c->partial[i] = s;
    }
}

static void scale_tensors(void *p, int64_t i0, int64_t i1, int tid) {
    norm_ctx *c = p;
    (void)tid;
    for (int64_t i = i0; i < i1; i++) {
        const qkv__tparam *q = &c->t->params[i];
        float *g = c->t->g + q->offset;
        for (int64_t j = 0; j < q->numel; j++) g[j] *= c->coef;
    }
}

qkv_status qkv_trainer_clip_grad_norm(qkv_runtime *rt, qkv_trainer *t, float max_norm,
                                      float *norm) {
    if (!t || !norm) return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_trainer_clip_grad_norm: NULL");
    if (!(max_norm >= 0) || isinf(max_norm))
        return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_trainer_clip_grad_norm: max_norm %g",
                         (double)max_norm);
    double stack[512], *partial = t->n_params <= 512 ? stack : NULL;
    if (!partial) partial = qkv__alloc(t->n_params * sizeof *partial);
    if (!partial) return qkv__fail(QKV_ERR_NOMEM, "clip_grad_norm: out of memory");
    norm_ctx c = {t, partial, 1.0f};
    qkv_parallel_for(rt, (int64_t)t->n_params, 1, sumsq_tensors, &c);
    double s = 0;
    for (size_t i = 0; i < t->n_params; i++) s += partial[i];
    if (partial != stack) qkv__free(partial);
    double total = sqrt(s);
    *norm = (float)total;
    if (max_norm > 0) {
        double coef = (double)max_norm / (total + 1e-6);
        if (coef < 1.0) {
            c.coef = (float)coef;
            qkv_parallel_for(rt, (int64_t)t->n_params, 1, scale_tensors, &c);
        }
    }
    return QKV_OK;
}

void qkv_adamw_defaults(qkv_adamw *hp) {
    if (!hp) return;
    hp->beta1 = 0.9f;
    hp->beta2 = 0.999f;
    hp->eps = 1e-8f;
    hp->weight_decay = 0.01f;
}

typedef struct {
    qkv_trainer *t;
    float decay_mul, w1, b2, w2, step_size, bc2_sqrt, eps;
} adam_ctx;

static void adam_tensors(void *p, int64_t i0, int64_t i1, int tid) {
    const adam_ctx *c = p;
    (void)tid;
    for (int64_t i = i0; i < i1; i++) {
        const qkv__tparam *q = &c->t->params[i];
        float *w = c->t->w + q->offset, *m = c->t->m + q->offset, *v = c->t->v + q->offset;
        const float *g = c->t->g + q->offset;
        const float dm = q->decay ? c->decay_mul : 1.0f;
        for (int64_t j = 0; j < q->numel; j++) {
            float wj = q->decay ? w[j] * dm : w[j];
            float mj = m[j] + c->w1 * (g[j] - m[j]);
            float vj = v[j] * c->b2 + c->w2 * g[j] * g[j];
            float denom = sqrtf(vj) / c->bc2_sqrt + c->eps;
            w[j] = wj + c->step_size * mj / denom;
            m[j] = mj;
            v[j] = vj;
        }
    }
}

qkv_status qkv_trainer_adamw_step(qkv_runtime *rt, qkv_trainer *t, const qkv_adamw *hp, float lr) {
    static const char fn[] = "qkv_trainer_adamw_step";
    if (!t || !hp) return qkv__fail(QKV_ERR_INVALID_ARG, "%s: NULL argument", fn);
    if (!(lr >= 0) || isinf(lr) || !(hp->beta1 >= 0 && hp->beta1 < 1) ||
        !(hp->beta2 >= 0 && hp->beta2 < 1) || !(hp->eps >= 0) || isinf(hp->eps) ||
        !(hp->weight_decay >= 0) || isinf(hp->weight_decay))
        return qkv__fail(QKV_ERR_INVALID_ARG,
                         "%s: lr %g, betas (%g, %g), eps %g, weight_decay %g (need lr >= 0, "
                         "0 <= beta < 1, eps >= 0, weight_decay >= 0)",
                         fn, (double)lr, (double)hp->beta1, (double)hp->beta2, (double)hp->eps,
                         (double)hp->weight_decay);
    double step = (double)(t->steps + 1);
    double b1 = hp->beta1, b2 = hp->beta2, dlr = lr;
    double bc1 = 1.0 - pow(b1, step), bc2 = 1.0 - pow(b2, step);
    adam_ctx c = {t,
                  (float)(1.0 - dlr * (double)hp->weight_decay),
                  (float)(1.0 - b1),
                  (float)b2,
                  (float)(1.0 - b2),
                  (float)(-dlr / bc1),
                  (float)sqrt(bc2),
                  hp->eps};
    qkv_parallel_for(rt, (int64_t)t->n_params, 1, adam_tensors, &c);
    t->steps++;
    return QKV_OK;
}

double qkv_lr_at(const qkv_lr_schedule *s, int64_t step) {
    if (!s) return 0.0;
    if (step < s->warmup) return s->lr_max * (double)(step + 1) / (double)s->warmup;
    if (s->decay == QKV_LR_CONSTANT || s->total <= s->warmup) return s->lr_max;
    double r = (double)(step - s->warmup) / (double)(s->total - s->warmup);
    if (r > 1) r = 1;
    if (s->decay == QKV_LR_LINEAR) return s->lr_max - r * (s->lr_max - s->lr_min);
    return s->lr_min + 0.5 * (1.0 + cos(M_PI * r)) * (s->lr_max - s->lr_min);
}
