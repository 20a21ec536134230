/* test_logreg.c — qkv_logreg_fit against scikit-learn's LogisticRegression(lbfgs, l2)
 * (tests/fixtures/logreg, tools/gen_logreg_fixture.py).
 *
 * The fixture holds, per case, sklearn's coef_ / intercept_ / predict_proba / predict and the
 * optimum itself (sklearn's solution polished by Newton's method in numpy to a gradient of
 * ~1e-16), with the smallest eigenvalue lambda of the objective's Hessian there. The objective
 * is lambda-strongly convex (off the intercepts' null direction, which neither solver moves
 * along), so a point whose gradient has 2-norm |g| lies within |g| / lambda of the optimum:
 * that bound, computed from qkv's own gradient (fitted here to tol 1e-12 and held to it), is
 * the tolerance on the coefficients, with nothing to tune; the probabilities must then match
 * the optimum's to 1e-9 (measured: <= 5e-10). sklearn stops when the objective falls by less
 * than 64 eps relative (its ftol), at a gradient of ~1e-8, up to 5e-6 from the optimum in
 * coefficients (measured by the generator), so against sklearn's own numbers the tolerances are
 * that gap's: coefficients 1e-4 of their scale (measured <= 5e-6), probabilities 1e-5 absolute
 * (measured <= 3e-6), and the same predictions. Also: the same bits for 1 and 2 threads,
 * predict = the argmax of predict_proba, bad arguments, every allocation failed in turn. */
#include "qkv.h"

#include "fault_alloc.h"
#include "fixture_util.h"
#include "test.h"

#define FIXTURE QKV_SOURCE_DIR "/tests/fixtures/logreg/logreg.safetensors"

typedef struct fcase {
    const float *x, *xt;
    const int32_t *y, *pred;
    const double *meta, *coef, *icpt, *proba, *ocoef, *oicpt, *oproba;
    int64_t n, d, m, k, rows;
} fcase;

static fcase load_case(qkv_safetensors *st, int i) {
    char name[64];
    fcase c;
#define GET(field, suffix)                                                                         \
    (snprintf(name, sizeof name, "c%d." suffix, i), c.field = fix_need(st, name))
    GET(x, "x"), GET(xt, "xt"), GET(y, "y"), GET(pred, "pred"), GET(meta, "meta");
    GET(coef, "coef"), GET(icpt, "intercept"), GET(proba, "proba");
    GET(ocoef, "opt_coef"), GET(oicpt, "opt_intercept"), GET(oproba, "opt_proba");
#undef GET
    snprintf(name, sizeof name, "c%d.x", i);
    const qkv_st_tensor *tx = qkv_safetensors_find(st, name);
    snprintf(name, sizeof name, "c%d.xt", i);
    const qkv_st_tensor *tt = qkv_safetensors_find(st, name);
    c.n = tx->shape[0], c.d = tx->shape[1], c.m = tt->shape[0];
    c.k = (int64_t)c.meta[0];
    c.rows = c.k == 2 ? 1 : c.k;
    return c;
}

static void check_case(qkv_runtime *rt, const fcase *c, int i) {
    qkv_logreg_options o;
    qkv_logreg_default_options(&o);
    o.C = c->meta[1];
    o.no_intercept = c->meta[2] == 0;
    o.tol = 1e-12;
    qkv_logreg *m = NULL;
    CHECK_OK(qkv_logreg_fit(rt, c->x, c->y, c->n, c->d, c->k, &o, &m));
    if (!m) return;
    qkv_logreg_stats st = {.struct_size = sizeof st};
    CHECK_OK(qkv_logreg_get_stats(m, &st));
    CHECK_MSG(st.converged && st.grad_max <= 1e-12, "case %d: converged %d, max |g| %.3g", i,
              st.converged, st.grad_max);
    int64_t rows = 0;
    const double *coef = qkv_logreg_coef(m, &rows), *icpt = qkv_logreg_intercept(m);
    CHECK_EQ_INT(rows, c->rows);
    CHECK_EQ_INT(qkv_logreg_num_classes(m), c->k);
    CHECK_EQ_INT(qkv_logreg_dim(m), c->d);
    /* distance to the optimum against |g|_2 / lambda, |g|_2 <= sqrt(P) max |g| */
    double dist2 = 0, p = (double)(c->rows * (c->d + 1)), lam = c->meta[6];
    double worst_sk = 0, scale = 0;
    for (int64_t k = 0; k < c->rows * c->d; k++) {
        dist2 += (coef[k] - c->ocoef[k]) * (coef[k] - c->ocoef[k]);
        worst_sk = fmax(worst_sk, fabs(coef[k] - c->coef[k]));
        scale = fmax(scale, fabs(c->coef[k]));
    }
    for (int64_t r = 0; r < c->rows; r++) {
        dist2 += (icpt[r] - c->oicpt[r]) * (icpt[r] - c->oicpt[r]);
        worst_sk = fmax(worst_sk, fabs(icpt[r] - c->icpt[r]));
    }
    double bound = sqrt(p) * st.grad_max / lam + 1e-12;
    CHECK_MSG(sqrt(dist2) <= bound, "case %d: |theta - optimum| %.3g > |g| / lambda %.3g", i,
              sqrt(dist2), bound);
    /* sklearn's own distance to the optimum is up to 5e-6 (its ftol stop) */
    CHECK_MSG(worst_sk <= 1e-4 * fmax(scale, 1.0), "case %d: coef vs sklearn %.3g (scale %.3g)", i,
              worst_sk, scale);
    double *pr = malloc((size_t)(c->m * c->k) * sizeof *pr);
    int32_t *pred = malloc((size_t)c->m * sizeof *pred);
    CHECK_OK(qkv_logreg_predict_proba(m, c->xt, c->m, pr));
    CHECK_OK(qkv_logreg_predict(m, c->xt, c->m, pred));
    double e_opt = 0, e_sk = 0;
    for (int64_t k = 0; k < c->m * c->k; k++) {
        e_opt = fmax(e_opt, fabs(pr[k] - c->oproba[k]));
        e_sk = fmax(e_sk, fabs(pr[k] - c->proba[k]));
    }
    CHECK_MSG(e_opt <= 1e-9, "case %d: proba vs optimum %.3g", i, e_opt);
    CHECK_MSG(e_sk <= 1e-5, "case %d: proba vs sklearn %.3g", i, e_sk);
    int same_pred = 1, argmax_ok = 1;
    for (int64_t s = 0; s < c->m; s++) {
        same_pred &= pred[s] == c->pred[s];
        int32_t best = 0;
        for (int64_t k = 1; k < c->k; k++)
            if (pr[s * c->k + k] > pr[s * c->k + best]) best = (int32_t)k;
        argmax_ok &= best == pred[s];
    }
    CHECK_MSG(same_pred, "case %d: predict differs from sklearn's", i);
    CHECK_MSG(argmax_ok, "case %d: predict is not the argmax of predict_proba", i);
    printf("case %d: K %lld C %g: %lld iterations (sklearn %g), max |g| %.2e, |theta - opt| "
           "%.2e (bound %.2e), coef vs sklearn %.2e, proba vs opt %.2e, vs sklearn %.2e\n",
           i, (long long)c->k, c->meta[1], (long long)st.iterations, c->meta[3], st.grad_max,
           sqrt(dist2), bound, worst_sk, e_opt, e_sk);
    free(pr), free(pred);
    qkv_logreg_free(m);
}

/* Threads cut the work differently but no sum changes order: the same bits. */
static void check_threads(const fcase *c) {
    qkv_runtime *r1 = NULL, *r2 = NULL;
    CHECK_OK(qkv_runtime_create(1, &r1));
    CHECK_OK(qkv_runtime_create(2, &r2));
    qkv_logreg *a = NULL, *b = NULL;
    CHECK_OK(qkv_logreg_fit(r1, c->x, c->y, c->n, c->d, c->k, NULL, &a));
    CHECK_OK(qkv_logreg_fit(r2, c->x, c->y, c->n, c->d, c->k, NULL, &b));
    if (a && b) {
        int64_t rows;
        const double *ca = qkv_logreg_coef(a, &rows), *cb = qkv_logreg_coef(b, NULL);
        CHECK(memcmp(ca, cb, (size_t)(rows * c->d) * sizeof(double)) == 0);
        CHECK(memcmp(qkv_logreg_intercept(a), qkv_logreg_intercept(b),
                     (size_t)rows * sizeof(double)) == 0);
    }
    qkv_logreg_free(a), qkv_logreg_free(b);
    qkv_runtime_free(r1), qkv_runtime_free(r2);
}

static void check_bad_args(qkv_runtime *rt) {
    float x[8] = {0, 1, 1, 0, 2, 2, -1, 0}; /* 4 samples x 2 */
    int32_t y[4] = {0, 1, 2, 1}, y_missing[4] = {0, 2, 2, 0}, y_out[4] = {0, 1, 3, 1};
    qkv_logreg *m = (qkv_logreg *)&m; /* must become NULL on failure */
    CHECK_STATUS(qkv_logreg_fit(rt, x, y, 4, 2, 1, NULL, &m), QKV_ERR_INVALID_ARG);
    CHECK(m == NULL);
    CHECK_STATUS(qkv_logreg_fit(rt, x, y_missing, 4, 2, 3, NULL, &m), QKV_ERR_INVALID_ARG);
    CHECK(strstr(qkv_last_error(), "class 1 has no example") != NULL);
    CHECK_STATUS(qkv_logreg_fit(rt, x, y_out, 4, 2, 3, NULL, &m), QKV_ERR_INVALID_ARG);
    CHECK(strstr(qkv_last_error(), "y[2] = 3") != NULL);
    CHECK_STATUS(qkv_logreg_fit(rt, NULL, y, 4, 2, 3, NULL, &m), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_logreg_fit(rt, x, y, 0, 2, 3, NULL, &m), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_logreg_fit(rt, x, y, 4, 2, 3, NULL, NULL), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_logreg_fit(rt, x, y, INT64_MAX / 2, 4, 3, NULL, &m), QKV_ERR_OVERFLOW);
    qkv_logreg_options o;
    qkv_logreg_default_options(&o);
    o.C = -1;
    CHECK_STATUS(qkv_logreg_fit(rt, x, y, 4, 2, 3, &o, &m), QKV_ERR_INVALID_ARG);
    o.C = NAN;
    CHECK_STATUS(qkv_logreg_fit(rt, x, y, 4, 2, 3, &o, &m), QKV_ERR_INVALID_ARG);
    float xn[8] = {0, 1, 1, 0, 2, NAN, -1, 0};
    CHECK_STATUS(qkv_logreg_fit(rt, xn, y, 4, 2, 3, NULL, &m), QKV_ERR_INVALID_ARG);
    CHECK(strstr(qkv_last_error(), "x[2, 1] is not finite") != NULL);
    /* a struct_size this version does not know, with non-zero bytes past its own: refused */
    struct {
        qkv_logreg_options o;
        int64_t future;
    } big = {.o = {.struct_size = sizeof big}, .future = 1};
    CHECK_STATUS(qkv_logreg_fit(rt, x, y, 4, 2, 3, &big.o, &m), QKV_ERR_INVALID_ARG);
    big.future = 0;
    CHECK_OK(qkv_logreg_fit(rt, x, y, 4, 2, 3, &big.o, &m));
    /* a zeroed struct means the defaults */
    qkv_logreg_options z;
    memset(&z, 0, sizeof z);
    qkv_logreg *m0 = NULL;
    CHECK_OK(qkv_logreg_fit(rt, x, y, 4, 2, 3, &z, &m0));
    if (m && m0) CHECK(memcmp(qkv_logreg_coef(m, NULL), qkv_logreg_coef(m0, NULL), 6 * 8) == 0);
    double pr[12];
    int32_t pred[4];
    CHECK_STATUS(qkv_logreg_predict_proba(m, xn, 4, pr), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_logreg_predict(NULL, x, 4, pred), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_logreg_predict(m, x, 4, NULL), QKV_ERR_INVALID_ARG);
    CHECK_OK(qkv_logreg_predict(m, x, 0, pred));
    CHECK_STATUS(qkv_logreg_get_stats(m, NULL), QKV_ERR_INVALID_ARG);
    /* an old, shorter stats struct is written only up to its struct_size */
    struct {
        size_t struct_size;
        int64_t iterations;
        int64_t canary;
    } small = {.struct_size = offsetof(qkv_logreg_stats, evaluations), .canary = 12345};
    CHECK_OK(qkv_logreg_get_stats(m, (qkv_logreg_stats *)&small));
    CHECK(small.iterations > 0 && small.canary == 12345);
    qkv_logreg_free(m), qkv_logreg_free(m0);
    qkv_logreg_free(NULL);
    CHECK(qkv_logreg_coef(NULL, NULL) == NULL && qkv_logreg_num_classes(NULL) == 0);
}

/* Every allocation of a fit and a prediction failed in turn: NOMEM, nothing leaked. */
static void check_nomem(qkv_runtime *rt, const fcase *c) {
    int done = 0;
    for (fail_at = 0; !done && fail_at < 100; fail_at++) {
        n_attempt = n_alloc = n_free = 0;
        qkv_allocator a = {failing_alloc, counting_free, NULL};
        qkv_set_allocator(&a);
        qkv_logreg *m = NULL;
        qkv_status s = qkv_logreg_fit(rt, c->x, c->y, c->n, c->d, c->k, NULL, &m);
        double pr[256];
        if (s == QKV_OK) s = qkv_logreg_predict_proba(m, c->xt, 2, pr);
        done = s == QKV_OK;
        qkv_logreg_free(m);
        qkv_set_allocator(NULL);
        CHECK_MSG(done || s == QKV_ERR_NOMEM, "allocation %ld failed: status %d", fail_at, s);
        CHECK_MSG(n_alloc == n_free, "allocation %ld failed: %ld leaked", fail_at,
                  n_alloc - n_free);
    }
    CHECK_MSG(done && fail_at > 3, "the fit succeeded after %ld failures", fail_at - 1);
}

int main(void) {
    qkv_safetensors *st = fix_open(FIXTURE);
    int n_cases = *(const int32_t *)fix_need(st, "cases");
    /* First, on one thread: a pool's workers free their start-up block when they first run,
     * which must not fall inside the counted calls. */
    qkv_runtime *r1 = NULL, *rt = NULL;
    CHECK_OK(qkv_runtime_create(1, &r1));
    fcase small = load_case(st, 0);
    check_nomem(r1, &small);
    check_bad_args(r1);
    qkv_runtime_free(r1);
    CHECK_OK(qkv_runtime_create(2, &rt));
    for (int i = 0; i < n_cases; i++) {
        fcase c = load_case(st, i);
        check_case(rt, &c, i);
    }
    fcase big = load_case(st, 6); /* 10 classes, d 40 */
    check_threads(&big);
    qkv_runtime_free(rt);
    qkv_safetensors_close(st);
    return test_finish("test_logreg");
}
