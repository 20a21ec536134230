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

#include "core/abi.h"
#include "core/alloc.h"
#include "core/error.h"

#include <math.h>
#include <string.h>

/* Work is split by segments (trainer.h: every tensor cut into pieces of at most 256 Ki
 * floats), so two threads get equal shares; every sum runs in segment order, the same for any
 * thread count. */

typedef struct {
    qkv_trainer *t;
    int64_t s0;      /* the first segment */
    double *partial; /* per segment: Σ g² */
} norm_ctx;

static void sumsq_segs(void *p, int64_t s0, int64_t s1, int tid) {
    norm_ctx *c = p;
    (void)tid;
    for (int64_t s = c->s0 + s0; s < c->s0 + s1; s++) {
        const qkv__tseg *q = &c->t->segs[s];
        const float *g = c->t->g;
        double acc = 0;
        if (!c->t->params[q->param].trainable) { /* frozen: no gradient, as requires_grad=False */
            c->partial[s] = 0;
            continue;
        }
        for (int64_t j = q->begin; j < q->end; j++) acc += (double)g[j] * (double)g[j];
        c->partial[s] = acc;
    }
}

void qkv__trainer_sumsq(qkv_runtime *rt, qkv_trainer *t, int64_t s0, int64_t s1, double *partial) {
    norm_ctx c = {t, s0, partial};
    if (s1 > s0) qkv_parallel_for(rt, s1 - s0, 1, sumsq_segs, &c);
}

void qkv__clip_coef(double sumsq, float max_norm, float *norm, float *coef) {
    double total = sqrt(sumsq);
    *norm = (float)total;
    *coef = 1.0f;
    if (max_norm > 0) {
        double k = (double)max_norm / (total + 1e-6);
        if (k < 1.0) *coef = (float)k;
    }
}

/* The global L2 norm of the gradients and the clipping coefficient (1: no scaling); the
 * segments' sums are added in segment order (ZeRO-1's sharded step adds the same ones). */
static qkv_status grad_norm(qkv_runtime *rt, qkv_trainer *t, float max_norm, float *norm,
                            float *coef) {
    double *partial = qkv__alloc((size_t)t->n_segs * sizeof *partial);
    if (!partial) return qkv__fail(QKV_ERR_NOMEM, "clip_grad_norm: out of memory");
    qkv__trainer_sumsq(rt, t, 0, t->n_segs, partial);
    double s = 0;
    for (int64_t i = 0; i < t->n_segs; i++) s += partial[i];
    qkv__free(partial);
    qkv__clip_coef(s, max_norm, norm, coef);
    return QKV_OK;
}

static qkv_status check_clip(const qkv_trainer *t, float max_norm, const float *norm) {
    if (!t || !norm) return qkv__fail(QKV_ERR_INVALID_ARG, "clip_grad_norm: NULL argument");
    if (!(max_norm >= 0) || isinf(max_norm))
        return qkv__fail(QKV_ERR_INVALID_ARG, "clip_grad_norm: max_norm %g (need >= 0, finite)",
                         (double)max_norm);
    return QKV_OK;
}

typedef struct {
    qkv_trainer *t;
    float coef; /* gradient scale (clipping) */
} scale_ctx;

static void scale_segs(void *p, int64_t s0, int64_t s1, int tid) {
    const scale_ctx *c = p;
    (void)tid;
    for (int64_t s = s0; s < s1; s++)
        for (int64_t j = c->t->segs[s].begin; j < c->t->segs[s].end; j++) c->t->g[j] *= c->coef;
}

qkv_status qkv_trainer_clip_grad_norm(qkv_runtime *rt, qkv_trainer *t, float max_norm,
                                      float *norm) {
    QKV_TRY(check_clip(t, max_norm, norm));
    scale_ctx c = {.t = t};
    QKV_TRY(grad_norm(rt, t, max_norm, norm, &c.coef));
    if (c.coef < 1.0f) qkv_parallel_for(rt, t->n_segs, 1, scale_segs, &c);
    return QKV_OK;
}

typedef struct {
    qkv_trainer *t;
    int64_t s0; /* the first segment */
    float coef; /* gradient scale (clipping); 1: none */
    float decay_mul, w1, b2, w2, step_size, bc2_sqrt, eps;
} adam_ctx;

void qkv_adamw_defaults_sized(qkv_adamw *hp, size_t struct_size) {
    if (!hp) return;
    qkv_adamw d;
    memset(&d, 0, sizeof d);
    d.beta1 = 0.9f;
    d.beta2 = 0.999f;
    d.eps = 1e-8f;
    d.weight_decay = 0.01f;
    QKV__STRUCT_FILL(qkv_adamw, hp, struct_size, &d);
}

static void adam_segs(void *p, int64_t s0, int64_t s1, int tid) {
    const adam_ctx *c = p;
    (void)tid;
    /* the moments hold the floats from mv_begin (a ZeRO-1 slice) */
    float *w = c->t->w, *m = c->t->m - c->t->mv_begin, *v = c->t->v - c->t->mv_begin;
    const float *g = c->t->g;
    const int scaled = c->coef < 1.0f;
    for (int64_t s = c->s0 + s0; s < c->s0 + s1; s++) {
        const int decay = c->t->params[c->t->segs[s].param].decay;
        if (!c->t->params[c->t->segs[s].param].trainable) continue; /* frozen */
        for (int64_t j = c->t->segs[s].begin; j < c->t->segs[s].end; j++) {
            float gj = scaled ? g[j] * c->coef : g[j]; /* what clipping would have stored */
            float wj = decay ? w[j] * c->decay_mul : w[j];
            float mj = m[j] + c->w1 * (gj - m[j]);
            float vj = v[j] * c->b2 + c->w2 * gj * gj;
            float denom = sqrtf(vj) / c->bc2_sqrt + c->eps;
            w[j] = wj + c->step_size * mj / denom;
            m[j] = mj;
            v[j] = vj;
        }
    }
}

qkv_status qkv__trainer_adamw_segs(qkv_runtime *rt, qkv_trainer *t, const qkv_adamw *hp_in,
                                   float lr, float coef, int64_t s0, int64_t s1) {
    static const char fn[] = "qkv_trainer_adamw_step";
    if (!t || !hp_in) return qkv__fail(QKV_ERR_INVALID_ARG, "%s: NULL argument", fn);
    if (s0 < s1 && (t->segs[s0].begin < t->mv_begin || t->segs[s1 - 1].end > t->mv_end))
        return qkv__fail(QKV_ERR_INVALID_ARG,
                         "%s: this trainer holds the optimizer state of a slice of the "
                         "parameters only (ZeRO-1 across ranks: qkv_train_options.zero)",
                         fn);
    qkv_adamw hpl, defaults; /* in this version's layout (core/abi.h) */
    qkv_adamw_defaults(&defaults);
    QKV_TRY(QKV__STRUCT_IN(qkv_adamw, &hpl, hp_in, &defaults, "qkv_trainer_adamw_step: hp"));
    const qkv_adamw *hp = &hpl;
    if (!(lr >= 0) || isinf(lr) || !(hp->beta1 >= 0 && hp->beta1 < 1) ||
        !(hp->beta2 >= 0 && hp->beta2 < 1) || !(hp->eps >= 0) || isinf(hp->eps) ||
        !(hp->weight_decay >= 0) || isinf(hp->weight_decay))
        return qkv__fail(QKV_ERR_INVALID_ARG,
                         "%s: lr %g, betas (%g, %g), eps %g, weight_decay %g (need lr >= 0, "
                         "0 <= beta < 1, eps >= 0, weight_decay >= 0)",
                         fn, (double)lr, (double)hp->beta1, (double)hp->beta2, (double)hp->eps,
                         (double)hp->weight_decay);
    /* the scalars as torch computes them: Python floats (double), used in F32 ops */
    double step = (double)(t->steps + 1);
    double b1 = hp->beta1, b2 = hp->beta2, dlr = lr;
    double bc1 = 1.0 - pow(b1, step), bc2 = 1.0 - pow(b2, step);
    adam_ctx c = {t,
                  s0,
                  coef,
                  (float)(1.0 - dlr * (double)hp->weight_decay),
                  (float)(1.0 - b1),
                  (float)b2,
                  (float)(1.0 - b2),
                  (float)(-dlr / bc1),
                  (float)sqrt(bc2),
                  hp->eps};
    if (s1 > s0) qkv_parallel_for(rt, s1 - s0, 1, adam_segs, &c);
    t->steps++;
    return QKV_OK;
}

qkv_status qkv_trainer_adamw_step(qkv_runtime *rt, qkv_trainer *t, const qkv_adamw *hp, float lr) {
    return qkv__trainer_adamw_segs(rt, t, hp, lr, 1.0f, 0, t ? t->n_segs : 0);
}

qkv_status qkv_trainer_step(qkv_runtime *rt, qkv_trainer *t, const qkv_adamw *hp, float lr,
                            float max_norm, float *norm) {
    QKV_TRY(check_clip(t, max_norm, norm));
    float coef;
    QKV_TRY(grad_norm(rt, t, max_norm, norm, &coef));
    if (!isfinite(*norm)) return QKV_OK; /* nothing updated: the caller sees the norm */
    return qkv__trainer_adamw_segs(rt, t, hp, lr, coef, 0, t->n_segs);
}

double qkv_lr_at(const qkv_lr_schedule *s_in, int64_t step) {
    if (!s_in) return 0.0;
    qkv_lr_schedule sl; /* in this version's layout (core/abi.h) */
    if (QKV__STRUCT_IN(qkv_lr_schedule, &sl, s_in, NULL, "qkv_lr_at: s") != QKV_OK) return NAN;
    const qkv_lr_schedule *s = &sl;
    const int hf = s->decay == QKV_LR_LINEAR_HF;
    if (step < s->warmup) return s->lr_max * (double)(step + !hf) / (double)s->warmup;
    if (s->decay == QKV_LR_CONSTANT || s->total <= s->warmup) return s->lr_max;
    double r = (double)(step - s->warmup) / (double)(s->total - s->warmup);
    if (r > 1) r = 1;
    if (s->decay == QKV_LR_LINEAR || hf) return s->lr_max - r * (s->lr_max - s->lr_min);
    return s->lr_min + 0.5 * (1.0 + cos(M_PI * r)) * (s->lr_max - s->lr_min);
}
