/* logreg.c — multinomial logistic regression fitted as scikit-learn's LogisticRegression
 * (penalty l2, solver lbfgs) fits it (qkv.h, docs/CLASSIFY.md "Baselines").
 *
 * The objective is sklearn's LinearModelLoss: the mean over samples of the cross-entropy of
 * softmax(W x + b) (two classes: of sigmoid(w x + b), HalfBinomialLoss) plus
 * ||W||^2 / (2 C n); the intercepts are not penalized. Parameters are one vector theta =
 * [W (R x d) row-major, b (R)], R = 1 for two classes, else the number of classes, started at
 * zero as sklearn does. With more than two classes the objective is flat along "add the same
 * number to every intercept"; every gradient sums to zero over the intercepts, and so does
 * every L-BFGS direction (built from gradients), so the iterates stay where sklearn's do and
 * the optimum there is unique: the two meet at the same point whatever their paths.
 *
 * Everything is double. One evaluation runs in two parallel passes whose sums do not depend on
 * how the work is cut: per sample (decision values, loss, residual p - onehot), then per
 * feature column (the gradient sums over samples in sample order). So a fit gives the same
 * bits on any thread count. */
#include "core/abi.h"
#include "core/alloc.h"
#include "core/error.h"

#include <float.h>
#include <math.h>
#include <string.h>

#define LBFGS_M 10         /* correction pairs kept (scipy's maxcor default) */
#define MAX_LINE_SEARCH 50 /* trial steps per line search (sklearn's maxls) */
#define WOLFE_C1 1e-4      /* sufficient decrease */
#define WOLFE_C2 0.9       /* curvature (weak Wolfe) */
#define MAX_CLASSES (1 << 20)
#define DEFAULT_MAX_ITER 10000
#define DEFAULT_TOL 1e-10

struct qkv_logreg {
    int64_t d, n_classes, rows; /* rows R: 1 for two classes, else n_classes */
    double *coef;               /* [R, d] */
    double *intercept;          /* [R] */
    qkv_logreg_stats stats;
};

void qkv_logreg_default_options_sized(qkv_logreg_options *o, size_t struct_size) {
    if (!o) return;
    qkv_logreg_options d;
    memset(&d, 0, sizeof d);
    d.C = 1.0;
    d.max_iter = DEFAULT_MAX_ITER;
    d.tol = DEFAULT_TOL;
    QKV__STRUCT_FILL(qkv_logreg_options, o, struct_size, &d);
}

/* ------------------------------------------------------------------ the objective */

typedef struct objective {
    const double *x; /* [n, d] */
    const int32_t *y;
    int64_t n, d, rows;
    int intercept;       /* 0: b stays 0 (its gradient is set to 0) */
    double l2;           /* 1 / (C n) */
    const double *theta; /* [R d + R]: the point being evaluated */
    double *res;         /* [n, R] decision values, then residuals p - onehot */
    double *loss;        /* [n] per-sample loss */
    double *grad;        /* [R d + R] */
} objective;

/* z[r] = b[r] + W[r] . x for one sample. */
static void decision(const double *W, const double *b, const double *x, int64_t d, int64_t rows,
                     double *z) {
    for (int64_t r = 0; r < rows; r++) {
        const double *w = W + r * d;
        double s = 0.0;
        for (int64_t j = 0; j < d; j++) s += w[j] * x[j];
        z[r] = s + b[r];
    }
}

/* log(1 + exp(z)) without overflow. */
static double softplus(double z) { return z > 0 ? z + log1p(exp(-z)) : log1p(exp(z)); }

static double sigmoid(double z) {
    if (z >= 0) return 1.0 / (1.0 + exp(-z));
    double e = exp(z);
    return e / (1.0 + e);
}

/* In place: z [K] -> softmax(z); returns log-sum-exp(z). */
static double softmax_inplace(double *z, int64_t k) {
    double m = z[0];
    for (int64_t c = 1; c < k; c++) m = z[c] > m ? z[c] : m;
    double s = exp(z[0] - m); /* the max term is 1: s >= 1 */
    for (int64_t c = 1; c < k; c++) s += exp(z[c] - m);
    double lse = m + log(s);
    for (int64_t c = 0; c < k; c++) z[c] = exp(z[c] - lse);
    return lse;
}

/* Pass 1, samples [i0, i1): decision values, loss and residual of each. */
static void pass_samples(void *ctx, int64_t i0, int64_t i1, int tid) {
    (void)tid;
    objective *o = ctx;
    const double *W = o->theta, *b = o->theta + o->rows * o->d;
    for (int64_t i = i0; i < i1; i++) {
        double *z = o->res + i * o->rows;
        decision(W, b, o->x + i * o->d, o->d, o->rows, z);
        int32_t y = o->y[i];
        if (o->rows == 1) { /* HalfBinomialLoss: y in {0, 1} */
            o->loss[i] = softplus(z[0]) - (y ? z[0] : 0.0);
            z[0] = sigmoid(z[0]) - (double)y;
        } else {
            double zy = z[y];
            o->loss[i] = softmax_inplace(z, o->rows) - zy;
            z[y] -= 1.0;
        }
    }
}

/* Pass 2, feature columns [j0, j1): grad W[r, j] = sum_i res[i, r] x[i, j] / n + l2 W[r, j],
 * summed in sample order. */
static void pass_columns(void *ctx, int64_t j0, int64_t j1, int tid) {
    (void)tid;
    objective *o = ctx;
    const int64_t d = o->d, rows = o->rows;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = j0; j < j1; j++) o->grad[r * d + j] = 0.0;
    for (int64_t i = 0; i < o->n; i++) {
        const double *x = o->x + i * d;
        for (int64_t r = 0; r < rows; r++) {
            const double c = o->res[i * rows + r];
            double *g = o->grad + r * d;
            for (int64_t j = j0; j < j1; j++) g[j] += c * x[j];
        }
    }
    const double inv_n = 1.0 / (double)o->n;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = j0; j < j1; j++)
            o->grad[r * d + j] = o->grad[r * d + j] * inv_n + o->l2 * o->theta[r * d + j];
}

/* The objective at theta; its gradient into o->grad. */
static double evaluate(qkv_runtime *rt, objective *o, const double *theta) {
    o->theta = theta;
    qkv_parallel_for(rt, o->n, 64, pass_samples, o);
    qkv_parallel_for(rt, o->d, 16, pass_columns, o);
    const int64_t nw = o->rows * o->d;
    const double inv_n = 1.0 / (double)o->n;
    double f = 0.0, w2 = 0.0;
    for (int64_t i = 0; i < o->n; i++) f += o->loss[i];
    for (int64_t k = 0; k < nw; k++) w2 += theta[k] * theta[k];
    for (int64_t r = 0; r < o->rows; r++) {
        double s = 0.0;
        for (int64_t i = 0; i < o->n; i++) s += o->res[i * o->rows + r];
        o->grad[nw + r] = o->intercept ? s * inv_n : 0.0;
    }
    return f * inv_n + 0.5 * o->l2 * w2;
}

/* ------------------------------------------------------------------ L-BFGS */

static double dot(const double *a, const double *b, int64_t n) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static double max_abs(const double *a, int64_t n) {
    double m = 0.0;
    for (int64_t i = 0; i < n; i++) m = fabs(a[i]) > m ? fabs(a[i]) : m;
    return m;
}

/* The work vectors of one fit, carved from one allocation. */
typedef struct lbfgs {
    int64_t p;
    double *x, *g, *xn, *gn, *dir;
    double *s, *y; /* [LBFGS_M, p] rings */
    double rho[LBFGS_M], alpha[LBFGS_M];
    int count, head; /* pairs kept; slot of the next pair */
} lbfgs;

/* dir = -H g by the two-loop recursion, H0 = (s.y / y.y) I of the newest pair. */
static void two_loop(lbfgs *L) {
    const int64_t p = L->p;
    for (int64_t k = 0; k < p; k++) L->dir[k] = -L->g[k];
    if (!L->count) return;
    for (int c = 0; c < L->count; c++) { /* newest first */
        int slot = (L->head - 1 - c + LBFGS_M) % LBFGS_M;
        L->alpha[slot] = L->rho[slot] * dot(L->s + slot * p, L->dir, p);
        const double *yv = L->y + slot * p;
        for (int64_t k = 0; k < p; k++) L->dir[k] -= L->alpha[slot] * yv[k];
    }
    int newest = (L->head - 1 + LBFGS_M) % LBFGS_M;
    const double *yn = L->y + newest * p;
    double gamma = 1.0 / (L->rho[newest] * dot(yn, yn, p));
    for (int64_t k = 0; k < p; k++) L->dir[k] *= gamma;
    for (int c = L->count - 1; c >= 0; c--) { /* oldest first */
        int slot = (L->head - 1 - c + LBFGS_M) % LBFGS_M;
        double beta = L->rho[slot] * dot(L->y + slot * p, L->dir, p);
        const double *sv = L->s + slot * p;
        for (int64_t k = 0; k < p; k++) L->dir[k] += (L->alpha[slot] - beta) * sv[k];
    }
}

/* Minimizes the objective from theta = 0; the result is left in L->x. */
static void minimize(qkv_runtime *rt, objective *o, lbfgs *L, const qkv_logreg_options *opt,
                     qkv_logreg_stats *st) {
    const int64_t p = L->p;
    memset(L->x, 0, (size_t)p * sizeof(double));
    double f = evaluate(rt, o, L->x);
    memcpy(L->g, o->grad, (size_t)p * sizeof(double));
    st->evaluations = 1;
    st->iterations = 0;
    st->converged = 0;
    for (;;) {
        double gmax = max_abs(L->g, p);
        if (gmax <= opt->tol) {
            st->converged = 1;
            break;
        }
        if (st->iterations >= opt->max_iter) break;
        two_loop(L);
        double gd = dot(L->g, L->dir, p);
        if (!(gd < 0)) { /* not a descent direction (rounding): restart from -g */
            L->count = 0;
            two_loop(L);
            gd = dot(L->g, L->dir, p);
        }
        /* the first step is scaled to length 1, as L-BFGS-B's */
        double t = L->count ? 1.0 : fmin(1.0, 1.0 / sqrt(-gd)), lo = 0.0, hi = INFINITY;
        double fn = f;
        int ok = 0;
        for (int ls = 0; ls < MAX_LINE_SEARCH; ls++) {
            for (int64_t k = 0; k < p; k++) L->xn[k] = L->x[k] + t * L->dir[k];
            fn = evaluate(rt, o, L->xn);
            st->evaluations++;
            /* Near the optimum f changes less than its rounding error while the gradient
             * is still exact to ~1e-16: a step whose change of f is noise counts as a
             * decrease when the slope at its end is still <= 0 (the objective is convex, so
             * it fell all the way), as Hager and Zhang's approximate Wolfe conditions do. */
            double gnd = dot(o->grad, L->dir, p);
            int armijo = fn <= f + WOLFE_C1 * t * gd;
            int flat = fabs(fn - f) <= 16 * DBL_EPSILON * fabs(f) && gnd <= 0;
            if (!(armijo || flat))
                hi = t;
            else if (gnd < WOLFE_C2 * gd)
                lo = t;
            else {
                ok = 1;
                break;
            }
            t = isinf(hi) ? 2.0 * t : 0.5 * (lo + hi);
        }
        if (!ok) break; /* no decrease found: the objective is flat to rounding here */
        memcpy(L->gn, o->grad, (size_t)p * sizeof(double));
        double *sv = L->s + L->head * p, *yv = L->y + L->head * p;
        for (int64_t k = 0; k < p; k++) sv[k] = L->xn[k] - L->x[k], yv[k] = L->gn[k] - L->g[k];
        double sy = dot(sv, yv, p);
        if (sy > 0) { /* always, for a Wolfe step on a convex function; kept as a guard */
            L->rho[L->head] = 1.0 / sy;
            L->head = (L->head + 1) % LBFGS_M;
            L->count += L->count < LBFGS_M;
        }
        double *tmp = L->x;
        L->x = L->xn, L->xn = tmp;
        tmp = L->g, L->g = L->gn, L->gn = tmp;
        f = fn;
        st->iterations++;
    }
    st->loss = f;
    st->grad_max = max_abs(L->g, p);
}

/* ------------------------------------------------------------------ the API */

static qkv_status check_features(const float *x, int64_t n, int64_t d, const char *fn) {
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < d; j++)
            if (!isfinite(x[i * d + j]))
                return qkv__fail(QKV_ERR_INVALID_ARG, "%s: x[%lld, %lld] is not finite", fn,
                                 (long long)i, (long long)j);
    return QKV_OK;
}

qkv_status qkv_logreg_fit(qkv_runtime *rt, const float *x, const int32_t *y, int64_t n, int64_t d,
                          int64_t n_classes, const qkv_logreg_options *opts, qkv_logreg **out) {
    static const char fn[] = "qkv_logreg_fit";
    if (!out) return qkv__fail(QKV_ERR_INVALID_ARG, "%s: out is NULL", fn);
    *out = NULL;
    qkv_logreg_options def, o;
    qkv_logreg_default_options(&def);
    QKV_TRY(QKV__STRUCT_IN(qkv_logreg_options, &o, opts, &def, "qkv_logreg_options"));
    if (o.C == 0) o.C = 1.0;
    if (o.max_iter == 0) o.max_iter = DEFAULT_MAX_ITER;
    if (o.tol == 0) o.tol = DEFAULT_TOL;
    if (!x || !y) return qkv__fail(QKV_ERR_INVALID_ARG, "%s: x or y is NULL", fn);
    if (n < 1 || d < 1)
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: n = %lld and d = %lld must be >= 1", fn,
                         (long long)n, (long long)d);
    if (n_classes < 2 || n_classes > MAX_CLASSES)
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: n_classes = %lld, must be in [2, 2^20]", fn,
                         (long long)n_classes);
    if (!(o.C > 0) || !isfinite(o.C) || o.max_iter < 0 || !(o.tol > 0))
        return qkv__fail(QKV_ERR_INVALID_ARG,
                         "%s: C = %g must be > 0 and finite, max_iter = %lld >= 0, tol = %g > 0",
                         fn, o.C, (long long)o.max_iter, o.tol);
    const int64_t rows = n_classes == 2 ? 1 : n_classes;
    size_t nd, nr, pw, p, xbytes, work;
    if (qkv__mul_overflow((size_t)n, (size_t)d, &nd) ||
        qkv__mul_overflow((size_t)n, (size_t)rows, &nr) ||
        qkv__mul_overflow((size_t)rows, (size_t)d, &pw) ||
        qkv__add_overflow(pw, (size_t)rows, &p) || qkv__mul_overflow(nd, sizeof(double), &xbytes) ||
        qkv__mul_overflow(p, 6 + 2 * LBFGS_M, &work) || work > SIZE_MAX / sizeof(double) / 2 ||
        nr > SIZE_MAX / sizeof(double) / 4 || xbytes > SIZE_MAX / 4)
        return qkv__fail(QKV_ERR_OVERFLOW, "%s: n = %lld, d = %lld, %lld classes: too large", fn,
                         (long long)n, (long long)d, (long long)n_classes);
    QKV_TRY(check_features(x, n, d, fn));
    {
        int64_t *count = qkv__calloc((size_t)n_classes, sizeof *count);
        if (!count) return qkv__fail(QKV_ERR_NOMEM, "%s: out of memory", fn);
        qkv_status s = QKV_OK;
        for (int64_t i = 0; i < n && s == QKV_OK; i++)
            if (y[i] < 0 || y[i] >= n_classes)
                s = qkv__fail(QKV_ERR_INVALID_ARG, "%s: y[%lld] = %d is not in [0, %lld)", fn,
                              (long long)i, y[i], (long long)n_classes);
            else
                count[y[i]]++;
        for (int64_t k = 0; k < n_classes && s == QKV_OK; k++)
            if (!count[k])
                s = qkv__fail(QKV_ERR_INVALID_ARG, "%s: class %lld has no example", fn,
                              (long long)k);
        qkv__free(count);
        if (s) return s;
    }
    qkv_logreg *m = qkv__calloc(1, sizeof *m);
    double *buf = qkv__alloc(xbytes + (nr + (size_t)n + work) * sizeof(double));
    if (m) m->coef = qkv__alloc((pw + (size_t)rows) * sizeof(double));
    if (!m || !buf || !m->coef) {
        qkv__free(buf);
        qkv_logreg_free(m);
        return qkv__fail(QKV_ERR_NOMEM, "%s: out of memory (%lld x %lld features)", fn,
                         (long long)n, (long long)d);
    }
    m->d = d, m->n_classes = n_classes, m->rows = rows;
    m->intercept = m->coef + pw;
    double *xd = buf;
    for (size_t k = 0; k < nd; k++) xd[k] = (double)x[k];
    objective ob = {.x = xd,
                    .y = y,
                    .n = n,
                    .d = d,
                    .rows = rows,
                    .intercept = !o.no_intercept,
                    .l2 = 1.0 / (o.C * (double)n),
                    .res = xd + nd,
                    .loss = xd + nd + nr,
                    .grad = xd + nd + nr + n};
    lbfgs L = {.p = (int64_t)p}; /* work: grad, x, g, xn, gn, s and y rings, dir */
    double *w = ob.grad + p;
    L.x = w, L.g = w + p, L.xn = w + 2 * p, L.gn = w + 3 * p, L.s = w + 4 * p;
    L.y = L.s + LBFGS_M * p;
    L.dir = L.y + LBFGS_M * p;
    m->stats.struct_size = sizeof m->stats;
    minimize(rt, &ob, &L, &o, &m->stats);
    memcpy(m->coef, L.x, p * sizeof(double));
    qkv__free(buf);
    *out = m;
    return QKV_OK;
}

void qkv_logreg_free(qkv_logreg *m) {
    if (!m) return;
    qkv__free(m->coef);
    qkv__free(m);
}

int64_t qkv_logreg_num_classes(const qkv_logreg *m) { return m ? m->n_classes : 0; }
int64_t qkv_logreg_dim(const qkv_logreg *m) { return m ? m->d : 0; }

const double *qkv_logreg_coef(const qkv_logreg *m, int64_t *rows) {
    if (rows) *rows = m ? m->rows : 0;
    return m ? m->coef : NULL;
}

const double *qkv_logreg_intercept(const qkv_logreg *m) { return m ? m->intercept : NULL; }

qkv_status qkv_logreg_get_stats(const qkv_logreg *m, qkv_logreg_stats *out) {
    if (!m || !out) return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_logreg_get_stats: NULL argument");
    QKV__STRUCT_OUT(qkv_logreg_stats, out, &m->stats);
    return QKV_OK;
}

/* Decision values of n samples into z [n, R] (a row at a time; z may be per-row scratch). */
static qkv_status predict_common(const qkv_logreg *m, const float *x, int64_t n, const void *dst,
                                 const char *fn) {
    if (!m || !x || !dst) return qkv__fail(QKV_ERR_INVALID_ARG, "%s: NULL argument", fn);
    if (n < 0 || (n > 0 && (size_t)n > SIZE_MAX / sizeof(double) / (size_t)m->d))
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: n = %lld", fn, (long long)n);
    return check_features(x, n, m->d, fn);
}

/* One sample's decision values (double features from float x). */
static void decide(const qkv_logreg *m, const float *xf, double *xrow, double *z) {
    for (int64_t j = 0; j < m->d; j++) xrow[j] = (double)xf[j];
    decision(m->coef, m->intercept, xrow, m->d, m->rows, z);
}

qkv_status qkv_logreg_predict_proba(const qkv_logreg *m, const float *x, int64_t n, double *proba) {
    static const char fn[] = "qkv_logreg_predict_proba";
    QKV_TRY(predict_common(m, x, n, proba, fn));
    double *xrow = qkv__alloc((size_t)m->d * sizeof(double));
    if (!xrow) return qkv__fail(QKV_ERR_NOMEM, "%s: out of memory", fn);
    for (int64_t i = 0; i < n; i++) {
        double *pr = proba + i * m->n_classes;
        if (m->rows == 1) {
            double z;
            decide(m, x + i * m->d, xrow, &z);
            pr[1] = sigmoid(z);
            pr[0] = 1.0 - pr[1];
        } else {
            decide(m, x + i * m->d, xrow, pr);
            softmax_inplace(pr, m->n_classes);
        }
    }
    qkv__free(xrow);
    return QKV_OK;
}

qkv_status qkv_logreg_predict(const qkv_logreg *m, const float *x, int64_t n, int32_t *pred) {
    static const char fn[] = "qkv_logreg_predict";
    QKV_TRY(predict_common(m, x, n, pred, fn));
    double *xrow = qkv__alloc((size_t)(m->d + m->rows) * sizeof(double));
    if (!xrow) return qkv__fail(QKV_ERR_NOMEM, "%s: out of memory", fn);
    double *z = xrow + m->d;
    for (int64_t i = 0; i < n; i++) {
        decide(m, x + i * m->d, xrow, z);
        int32_t best = 0;
        if (m->rows == 1)
            best = z[0] > 0;
        else
            for (int64_t k = 1; k < m->rows; k++)
                if (z[k] > z[best]) best = (int32_t)k;
        pred[i] = best;
    }
    qkv__free(xrow);
    return QKV_OK;
}
