/* test_nn_grad.c — finite-difference gradient checks of every elementary src/nn layer, plus
 * dropout's statistics and forward/backward mask consistency.
 *
 * Each layer runs in float; its analytic gradient is compared with central differences
 * (step 1e-6) of an independent double-precision forward (tests/nn_testutil.h). Tolerances:
 *   forward   max|out_f - out_d| <= 1e-6 · max(|out_d|, 1)   (float rounding of the outputs)
 *   gradient  max|g - g_fd|     <= 5e-6 · max(|g_fd|, 1e-2)  per variable
 * (double accumulation leaves only a few float roundings, ~1e-7 relative; the central
 * difference in double is accurate to ~1e-9). */
#include "core/rng.h"
#include "nn/nn_ref.h"
#include "nn/positional_ref.h"
#include "nn_testutil.h"

#define FWD_TOL 1e-6
#define GRAD_TOL 5e-6

/* The parameters of one layer under test. */
typedef struct {
    int64_t N, C, OC, V, B, T, H, D, P, pos0;
    double eps;
    int act, bias, affine;
    qkv_nn_rope rope;
    float p, smoothing;
    uint64_t seed, stream;
    int32_t *ids; /* embedding ids / cross-entropy targets */
    int32_t ignore;
    float *saved1, *saved2; /* mean/rstd, softmax output */
} lctx;

#define CTX(p) ((lctx *)(p)->ctx)
#define VF(p, i) ((p)->var[i].f)
#define VD(p, i) ((p)->var[i].d)
#define VG(p, i) ((p)->var[i].g)

static nn_prob prob_new(const char *label, lctx *c, int64_t nout) {
    nn_prob p;
    memset(&p, 0, sizeof p);
    p.label = label;
    p.ctx = c;
    p.nout = nout;
    p.out_f = nt_alloc(nout);
    p.out_d = nt_alloc_d(nout);
    p.dout_f = nt_rand(nout, -1, 1);
    return p;
}

static void prob_done(nn_prob *p) {
    for (int v = 0; v < p->nvar; v++) {
        free(p->var[v].f);
        free(p->var[v].g);
    }
    nn_prob_free(p);
    free(p->out_f);
    free(p->out_d);
    free(p->dout_f);
}

/* a variable of n random values in [lo, hi) with a gradient buffer */
static void add_var(nn_prob *p, const char *name, int64_t n, double lo, double hi) {
    nn_prob_var(p, name, nt_rand(n, lo, hi), nt_alloc(n), n);
}

/* ---------------------------------------------------------------- linear */

static void linear_fd(nn_prob *p) {
    lctx *c = CTX(p);
    ref_linear(p->out_d, VD(p, 0), VD(p, 1), c->bias ? VD(p, 2) : NULL, c->N, c->C, c->OC);
}
static qkv_status linear_ff(nn_prob *p) {
    lctx *c = CTX(p);
    return qkv_nn_linear_forward_ref(NULL, p->out_f, VF(p, 0), VF(p, 1), c->bias ? VF(p, 2) : NULL,
                                     c->N, c->C, c->OC);
}
static qkv_status linear_bf(nn_prob *p) {
    lctx *c = CTX(p);
    return qkv_nn_linear_backward_ref(NULL, VG(p, 0), VG(p, 1), c->bias ? VG(p, 2) : NULL,
                                      p->dout_f, VF(p, 0), VF(p, 1), c->N, c->C, c->OC);
}

static void test_linear(int64_t N, int64_t C, int64_t OC, int bias) {
    char label[64];
    snprintf(label, sizeof label, "linear N%lld C%lld OC%lld%s", (long long)N, (long long)C,
             (long long)OC, bias ? "" : " nobias");
    lctx c = {.N = N, .C = C, .OC = OC, .bias = bias};
    nn_prob p = prob_new(label, &c, N * OC);
    add_var(&p, "x", N * C, -1, 1);
    add_var(&p, "W", OC * C, -1, 1);
    if (bias) add_var(&p, "b", OC, -1, 1);
    p.fwd_d = linear_fd, p.fwd_f = linear_ff, p.bwd_f = linear_bf;
    nn_prob_run(&p, FWD_TOL, GRAD_TOL);
    prob_done(&p);
}

/* ---------------------------------------------------------------- embedding */

static void embedding_fd(nn_prob *p) {
    lctx *c = CTX(p);
    for (int64_t n = 0; n < c->N; n++)
        for (int64_t i = 0; i < c->C; i++) p->out_d[n * c->C + i] = VD(p, 0)[c->ids[n] * c->C + i];
}
static qkv_status embedding_ff(nn_prob *p) {
    lctx *c = CTX(p);
    return qkv_nn_embedding_forward_ref(p->out_f, c->ids, VF(p, 0), c->N, c->V, c->C);
}
static qkv_status embedding_bf(nn_prob *p) {
    lctx *c = CTX(p);
    return qkv_nn_embedding_backward_ref(NULL, VG(p, 0), p->dout_f, c->ids, c->N, c->V, c->C);
}

static void test_embedding(int64_t N, int64_t V, int64_t C) {
    char label[64];
    snprintf(label, sizeof label, "embedding N%lld V%lld C%lld", (long long)N, (long long)V,
             (long long)C);
    lctx c = {.N = N, .V = V, .C = C};
    c.ids = malloc((size_t)N * sizeof(int32_t));
    for (int64_t n = 0; n < N; n++) c.ids[n] = (int32_t)((n * 7 + n / 3) % V); /* repeats */
    nn_prob p = prob_new(label, &c, N * C);
    add_var(&p, "table", V * C, -1, 1);
    p.fwd_d = embedding_fd, p.fwd_f = embedding_ff, p.bwd_f = embedding_bf;
    nn_prob_run(&p, FWD_TOL, GRAD_TOL);
    prob_done(&p);
    free(c.ids);
}

/* ---------------------------------------------------------------- LayerNorm, RMSNorm */

static void layernorm_fd(nn_prob *p) {
    lctx *c = CTX(p);
    ref_layernorm(p->out_d, VD(p, 0), c->affine ? VD(p, 1) : NULL, c->affine ? VD(p, 2) : NULL,
                  c->N, c->C, c->eps);
}
static qkv_status layernorm_ff(nn_prob *p) {
    lctx *c = CTX(p);
    return qkv_nn_layernorm_forward_ref(NULL, p->out_f, c->saved1, c->saved2, VF(p, 0),
                                        c->affine ? VF(p, 1) : NULL, c->affine ? VF(p, 2) : NULL,
                                        c->N, c->C, (float)c->eps);
}
static qkv_status layernorm_bf(nn_prob *p) {
    lctx *c = CTX(p);
    return qkv_nn_layernorm_backward_ref(
        NULL, VG(p, 0), c->affine ? VG(p, 1) : NULL, c->affine ? VG(p, 2) : NULL, p->dout_f,
        VF(p, 0), c->affine ? VF(p, 1) : NULL, c->saved1, c->saved2, c->N, c->C);
}

static void rmsnorm_fd(nn_prob *p) {
    lctx *c = CTX(p);
    ref_rmsnorm(p->out_d, VD(p, 0), c->affine ? VD(p, 1) : NULL, c->N, c->C, c->eps);
}
static qkv_status rmsnorm_ff(nn_prob *p) {
    lctx *c = CTX(p);
    return qkv_nn_rmsnorm_forward_ref(NULL, p->out_f, c->saved1, VF(p, 0),
                                      c->affine ? VF(p, 1) : NULL, c->N, c->C, (float)c->eps);
}
static qkv_status rmsnorm_bf(nn_prob *p) {
    lctx *c = CTX(p);
    return qkv_nn_rmsnorm_backward_ref(NULL, VG(p, 0), c->affine ? VG(p, 1) : NULL, p->dout_f,
                                       VF(p, 0), c->affine ? VF(p, 1) : NULL, c->saved1, c->N,
                                       c->C);
}

static void test_norm(int rms, int64_t N, int64_t C, double eps, int affine, double shift) {
    char label[64];
    snprintf(label, sizeof label, "%s N%lld C%lld%s", rms ? "rmsnorm" : "layernorm", (long long)N,
             (long long)C, affine ? "" : " no-affine");
    lctx c = {.N = N, .C = C, .eps = eps, .affine = affine};
    c.saved1 = nt_alloc(N);
    c.saved2 = nt_alloc(N);
    nn_prob p = prob_new(label, &c, N * C);
    add_var(&p, "x", N * C, shift - 2, shift + 2);
    if (affine) {
        add_var(&p, "w", C, 0.5, 1.5);
        if (!rms) add_var(&p, "b", C, -1, 1);
    }
    if (rms)
        p.fwd_d = rmsnorm_fd, p.fwd_f = rmsnorm_ff, p.bwd_f = rmsnorm_bf;
    else
        p.fwd_d = layernorm_fd, p.fwd_f = layernorm_ff, p.bwd_f = layernorm_bf;
    nn_prob_run(&p, FWD_TOL, GRAD_TOL);
    prob_done(&p);
    free(c.saved1);
    free(c.saved2);
}

/* ---------------------------------------------------------------- activations */

static void act_fd(nn_prob *p) {
    lctx *c = CTX(p);
    for (int64_t i = 0; i < c->N; i++) p->out_d[i] = ref_act(c->act, VD(p, 0)[i]);
}
static qkv_status act_ff(nn_prob *p) {
    lctx *c = CTX(p);
    return qkv_nn_act_forward_ref(NULL, (qkv_act)c->act, p->out_f, VF(p, 0), c->N);
}
static qkv_status act_bf(nn_prob *p) {
    lctx *c = CTX(p);
    return qkv_nn_act_backward_ref(NULL, (qkv_act)c->act, VG(p, 0), p->dout_f, VF(p, 0), c->N);
}

static void test_act(int act, const char *name, double range) {
    char label[64];
    snprintf(label, sizeof label, "%s |x|<%g", name, range);
    lctx c = {.N = 601, .act = act};
    nn_prob p = prob_new(label, &c, c.N);
    add_var(&p, "x", c.N, -range, range);
    for (int64_t i = 0; i < c.N; i++) /* keep away from ReLU's kink */
        if (fabsf(VF(&p, 0)[i]) < 1e-3f) VF(&p, 0)[i] = 0.5f;
    p.fwd_d = act_fd, p.fwd_f = act_ff, p.bwd_f = act_bf;
    nn_prob_run(&p, FWD_TOL, GRAD_TOL);
    prob_done(&p);
}

/* ---------------------------------------------------------------- softmax, log-softmax */

static void softmax_fd(nn_prob *p) {
    lctx *c = CTX(p);
    ref_softmax(p->out_d, VD(p, 0), c->N, c->V, c->act);
}
static qkv_status softmax_ff(nn_prob *p) {
    lctx *c = CTX(p);
    qkv_status s = c->act ? qkv_nn_log_softmax_forward_ref(NULL, p->out_f, VF(p, 0), c->N, c->V)
                          : qkv_nn_softmax_forward_ref(NULL, p->out_f, VF(p, 0), c->N, c->V);
    memcpy(c->saved1, p->out_f, (size_t)(c->N * c->V) * sizeof(float));
    return s;
}
static qkv_status softmax_bf(nn_prob *p) {
    lctx *c = CTX(p);
    return c->act
               ? qkv_nn_log_softmax_backward_ref(NULL, VG(p, 0), p->dout_f, c->saved1, c->N, c->V)
               : qkv_nn_softmax_backward_ref(NULL, VG(p, 0), p->dout_f, c->saved1, c->N, c->V);
}

static void test_softmax(int log_, int64_t N, int64_t V, double scale) {
    char label[64];
    snprintf(label, sizeof label, "%s N%lld V%lld", log_ ? "log_softmax" : "softmax", (long long)N,
             (long long)V);
    lctx c = {.N = N, .V = V, .act = log_};
    c.saved1 = nt_alloc(N * V);
    nn_prob p = prob_new(label, &c, N * V);
    add_var(&p, "x", N * V, -scale, scale);
    p.fwd_d = softmax_fd, p.fwd_f = softmax_ff, p.bwd_f = softmax_bf;
    nn_prob_run(&p, FWD_TOL, GRAD_TOL);
    prob_done(&p);
    free(c.saved1);
}

/* ---------------------------------------------------------------- cross-entropy */

static void ce_fd(nn_prob *p) {
    lctx *c = CTX(p);
    p->out_d[0] = ref_cross_entropy(VD(p, 0), c->ids, c->N, c->V, c->ignore, c->smoothing);
}
static qkv_status ce_ff(nn_prob *p) {
    lctx *c = CTX(p);
    return qkv_nn_cross_entropy_forward_ref(NULL, p->out_f, NULL, VF(p, 0), c->ids, c->N, c->V,
                                            c->ignore, c->smoothing);
}
static qkv_status ce_bf(nn_prob *p) {
    lctx *c = CTX(p);
    return qkv_nn_cross_entropy_backward_ref(NULL, VG(p, 0), p->dout_f[0], VF(p, 0), c->ids, c->N,
                                             c->V, c->ignore, c->smoothing);
}

static void test_cross_entropy(int64_t N, int64_t V, int32_t ignore, float smoothing) {
    char label[64];
    snprintf(label, sizeof label, "cross_entropy N%lld V%lld ls%g", (long long)N, (long long)V,
             (double)smoothing);
    lctx c = {.N = N, .V = V, .ignore = ignore, .smoothing = smoothing};
    c.ids = malloc((size_t)N * sizeof(int32_t));
    for (int64_t n = 0; n < N; n++) c.ids[n] = (int32_t)((n * 5 + 1) % V);
    if (N > 2) c.ids[1] = ignore, c.ids[N - 1] = ignore; /* two ignored rows */
    nn_prob p = prob_new(label, &c, 1);
    add_var(&p, "logits", N * V, -3, 3);
    p.fwd_d = ce_fd, p.fwd_f = ce_ff, p.bwd_f = ce_bf;
    nn_prob_run(&p, FWD_TOL, GRAD_TOL);
    prob_done(&p);
    free(c.ids);
}

/* ---------------------------------------------------------------- dropout, residual */

static void dropout_fd(nn_prob *p) {
    lctx *c = CTX(p);
    for (int64_t i = 0; i < c->N; i++) {
        int keep = qkv__rng_uniform(c->seed, c->stream, (uint64_t)i) >= c->p;
        p->out_d[i] = keep ? VD(p, 0)[i] / (1.0 - (double)c->p) : 0.0;
    }
}
static qkv_status dropout_ff(nn_prob *p) {
    lctx *c = CTX(p);
    return qkv_nn_dropout_forward_ref(NULL, p->out_f, VF(p, 0), c->N, c->p, c->seed, c->stream);
}
static qkv_status dropout_bf(nn_prob *p) {
    lctx *c = CTX(p);
    return qkv_nn_dropout_backward_ref(NULL, VG(p, 0), p->dout_f, c->N, c->p, c->seed, c->stream);
}

static void residual_fd(nn_prob *p) {
    for (int64_t i = 0; i < p->nout; i++) p->out_d[i] = VD(p, 0)[i] + VD(p, 1)[i];
}
static qkv_status residual_ff(nn_prob *p) {
    return qkv_nn_residual_forward_ref(NULL, p->out_f, VF(p, 0), VF(p, 1), p->nout);
}
static qkv_status residual_bf(nn_prob *p) {
    return qkv_nn_residual_backward_ref(NULL, VG(p, 0), VG(p, 1), p->dout_f, p->nout);
}

static void test_dropout_residual(void) {
    lctx c = {.N = 777, .p = 0.3f, .seed = 42, .stream = 7};
    nn_prob p = prob_new("dropout p0.3", &c, c.N);
    add_var(&p, "x", c.N, -2, 2);
    p.fwd_d = dropout_fd, p.fwd_f = dropout_ff, p.bwd_f = dropout_bf;
    nn_prob_run(&p, FWD_TOL, GRAD_TOL);
    prob_done(&p);

    nn_prob r = prob_new("residual", &c, 33);
    add_var(&r, "a", 33, -2, 2);
    add_var(&r, "b", 33, -2, 2);
    r.fwd_d = residual_fd, r.fwd_f = residual_ff, r.bwd_f = residual_bf;
    nn_prob_run(&r, FWD_TOL, GRAD_TOL);
    prob_done(&r);
}

/* Keep rate, scaling, forward/backward mask consistency, seed/stream independence, and thread
 * count independence. */
static void test_dropout_statistics(void) {
    const int64_t n = 1 << 18;
    float *x = nt_alloc(n), *y = nt_alloc(n), *y2 = nt_alloc(n), *dy = nt_alloc(n);
    float *dx = nt_alloc(n);
    for (int64_t i = 0; i < n; i++) x[i] = 1.0f, dy[i] = 2.0f;
    const float ps[] = {0.1f, 0.5f, 0.9f};
    for (int k = 0; k < 3; k++) {
        const float p = ps[k];
        const float scale = (float)(1.0 / (1.0 - (double)p));
        CHECK_OK(qkv_nn_dropout_forward_ref(NULL, y, x, n, p, 1234, 1));
        int64_t kept = 0, bad_value = 0, mismatch = 0;
        double sum = 0;
        for (int64_t i = 0; i < n; i++) {
            if (y[i] != 0) kept++;
            if (y[i] != 0 && y[i] != scale) bad_value++;
            sum += y[i];
        }
        /* the backward regenerates the same mask: dx = dy · scale exactly where kept */
        memset(dx, 0, (size_t)n * sizeof(float));
        CHECK_OK(qkv_nn_dropout_backward_ref(NULL, dx, dy, n, p, 1234, 1));
        for (int64_t i = 0; i < n; i++)
            if ((y[i] != 0) != (dx[i] != 0) || (dx[i] != 0 && dx[i] != 2.0f * scale)) mismatch++;
        const double q = 1.0 - (double)p, sigma = sqrt((double)n * p * q);
        printf("  dropout p=%.1f: kept %.5f (expected %.5f, 5 sigma = %.5f), mean %.5f\n",
               (double)p, (double)kept / (double)n, q, 5 * sigma / (double)n, sum / (double)n);
        CHECK(fabs((double)kept - (double)n * q) <= 5 * sigma);
        CHECK(fabs(sum / (double)n - 1.0) <= 5 * sigma / (double)n / q);
        CHECK_EQ_INT(bad_value, 0);
        CHECK_EQ_INT(mismatch, 0);

        /* another seed or stream gives another mask (disagreement ~ 2pq) */
        int64_t diff_seed = 0, diff_stream = 0;
        CHECK_OK(qkv_nn_dropout_forward_ref(NULL, y2, x, n, p, 1235, 1));
        for (int64_t i = 0; i < n; i++) diff_seed += (y[i] != 0) != (y2[i] != 0);
        CHECK_OK(qkv_nn_dropout_forward_ref(NULL, y2, x, n, p, 1234, 2));
        for (int64_t i = 0; i < n; i++) diff_stream += (y[i] != 0) != (y2[i] != 0);
        const double expect = 2.0 * p * q * (double)n;
        CHECK(fabs((double)diff_seed - expect) <= 6 * sqrt(expect));
        CHECK(fabs((double)diff_stream - expect) <= 6 * sqrt(expect));
    }
    /* in place and on any thread count: the same bits */
    qkv_runtime *rt1 = NULL, *rt3 = NULL;
    CHECK_OK(qkv_runtime_create(1, &rt1));
    CHECK_OK(qkv_runtime_create(3, &rt3));
    nt_fill(x, n, -1, 1);
    CHECK_OK(qkv_nn_dropout_forward_ref(rt1, y, x, n, 0.25f, 99, 3));
    CHECK_OK(qkv_nn_dropout_forward_ref(rt3, y2, x, n, 0.25f, 99, 3));
    CHECK(memcmp(y, y2, (size_t)n * sizeof(float)) == 0);
    CHECK_OK(qkv_nn_dropout_forward_ref(rt3, x, x, n, 0.25f, 99, 3));
    CHECK(memcmp(y, x, (size_t)n * sizeof(float)) == 0);
    /* p = 0 is the identity */
    CHECK_OK(qkv_nn_dropout_forward_ref(NULL, y2, y, n, 0.0f, 5, 5));
    CHECK(memcmp(y, y2, (size_t)n * sizeof(float)) == 0);
    qkv_runtime_free(rt1);
    qkv_runtime_free(rt3);
    free(x), free(y), free(y2), free(dy), free(dx);
}

/* ---------------------------------------------------------------- RoPE, position add */

static void rope_fd(nn_prob *p) {
    lctx *c = CTX(p);
    int64_t R = c->rope.dims ? c->rope.dims : c->D;
    ref_rope(p->out_d, VD(p, 0), c->B, c->T, c->H, c->D, R, c->rope.theta, (int)c->rope.style,
             c->pos0);
}
static qkv_status rope_ff(nn_prob *p) {
    lctx *c = CTX(p);
    return qkv_nn_rope_forward_ref(NULL, p->out_f, VF(p, 0), &c->rope, c->B, c->T, c->H, c->D,
                                   c->pos0);
}
static qkv_status rope_bf(nn_prob *p) {
    lctx *c = CTX(p);
    return qkv_nn_rope_backward_ref(NULL, VG(p, 0), p->dout_f, &c->rope, c->B, c->T, c->H, c->D,
                                    c->pos0);
}

static void test_rope(qkv_nn_rope_style style, int64_t B, int64_t T, int64_t H, int64_t D,
                      int64_t R, double theta, int64_t pos0) {
    char label[80];
    snprintf(label, sizeof label, "rope %s D%lld R%lld pos0 %lld",
             style == QKV_NN_ROPE_HALF ? "half" : "interleaved", (long long)D, (long long)R,
             (long long)pos0);
    lctx c = {.B = B, .T = T, .H = H, .D = D, .pos0 = pos0};
    c.rope.style = style, c.rope.theta = theta, c.rope.dims = R;
    const int64_t n = B * T * H * D;
    nn_prob p = prob_new(label, &c, n);
    add_var(&p, "x", n, -1, 1);
    p.fwd_d = rope_fd, p.fwd_f = rope_ff, p.bwd_f = rope_bf;
    nn_prob_run(&p, FWD_TOL, GRAD_TOL);
    /* in place gives the same result; the backward inverts the forward */
    float *y = nt_alloc(n), *back = nt_alloc(n);
    memcpy(y, VF(&p, 0), (size_t)n * sizeof(float));
    CHECK_OK(qkv_nn_rope_forward_ref(NULL, y, y, &c.rope, B, T, H, D, pos0));
    CHECK(memcmp(y, p.out_f, (size_t)n * sizeof(float)) == 0);
    CHECK_OK(qkv_nn_rope_backward_ref(NULL, back, y, &c.rope, B, T, H, D, pos0));
    double err = 0;
    for (int64_t i = 0; i < n; i++) err = fmax(err, fabs((double)back[i] - VF(&p, 0)[i]));
    CHECK_MSG(err < 1e-6, "%s: inverse rotation error %g", label, err);
    free(y), free(back);
    prob_done(&p);
}

static void posadd_fd(nn_prob *p) {
    lctx *c = CTX(p);
    for (int64_t b = 0; b < c->B; b++)
        for (int64_t t = 0; t < c->T; t++)
            for (int64_t i = 0; i < c->C; i++)
                p->out_d[(b * c->T + t) * c->C + i] =
                    VD(p, 0)[(b * c->T + t) * c->C + i] + VD(p, 1)[(c->pos0 + t) * c->C + i];
}
static qkv_status posadd_ff(nn_prob *p) {
    lctx *c = CTX(p);
    return qkv_nn_position_add_forward_ref(NULL, p->out_f, VF(p, 0), VF(p, 1), c->B, c->T, c->C,
                                           c->P, c->pos0);
}
static qkv_status posadd_bf(nn_prob *p) {
    lctx *c = CTX(p);
    return qkv_nn_position_add_backward_ref(NULL, VG(p, 0), VG(p, 1), p->dout_f, c->B, c->T, c->C,
                                            c->P, c->pos0);
}

static void test_position_add(void) {
    lctx c = {.B = 3, .T = 4, .C = 5, .P = 9, .pos0 = 2};
    nn_prob p = prob_new("position_add (learned)", &c, c.B * c.T * c.C);
    add_var(&p, "x", c.B * c.T * c.C, -1, 1);
    add_var(&p, "pe", c.P * c.C, -1, 1);
    p.fwd_d = posadd_fd, p.fwd_f = posadd_ff, p.bwd_f = posadd_bf;
    nn_prob_run(&p, FWD_TOL, GRAD_TOL);
    prob_done(&p);
}

int main(void) {
    nt_seed(1);
    test_linear(1, 1, 1, 1);
    test_linear(6, 7, 5, 1);
    test_linear(5, 70, 9, 1); /* C past one 64-channel block */
    test_linear(3, 4, 2, 0);
    test_embedding(1, 1, 1);
    test_embedding(13, 5, 7);
    test_embedding(9, 4, 70);
    test_norm(0, 1, 1, 1e-5, 1, 0);
    test_norm(0, 5, 17, 1e-5, 1, 3.0); /* rows with a large mean */
    test_norm(0, 3, 130, 1e-12, 1, 0);
    test_norm(0, 4, 9, 1e-5, 0, 0);
    test_norm(1, 1, 1, 1e-6, 1, 0.5);
    test_norm(1, 5, 17, 1e-6, 1, 0);
    test_norm(1, 3, 130, 1e-5, 1, 1.0);
    test_norm(1, 4, 9, 1e-6, 0, 0);
    test_act(QKV_ACT_GELU_ERF, "gelu", 6);
    test_act(QKV_ACT_GELU_TANH, "gelu_tanh", 6);
    test_act(QKV_ACT_RELU, "relu", 3);
    test_act(QKV_ACT_SILU, "silu", 6);
    test_act(QKV_ACT_SILU, "silu", 40);
    test_act(QKV_ACT_TANH, "tanh", 6);
    test_act(QKV_ACT_TANH, "tanh", 40);
    test_softmax(0, 1, 1, 1);
    test_softmax(0, 4, 13, 3);
    test_softmax(0, 3, 200, 8);
    test_softmax(1, 1, 1, 1);
    test_softmax(1, 4, 13, 3);
    test_softmax(1, 3, 200, 8);
    test_cross_entropy(1, 1, -100, 0.0f);
    test_cross_entropy(7, 9, -100, 0.0f);
    test_cross_entropy(7, 9, 2, 0.1f); /* an in-range class as the ignore index */
    test_cross_entropy(5, 300, -1, 0.25f);
    test_cross_entropy(4, 6, -100, 1.0f);
    test_dropout_residual();
    test_dropout_statistics();
    test_rope(QKV_NN_ROPE_INTERLEAVED, 2, 5, 3, 8, 8, 10000.0, 0);
    test_rope(QKV_NN_ROPE_HALF, 2, 5, 3, 8, 8, 10000.0, 0);
    test_rope(QKV_NN_ROPE_INTERLEAVED, 1, 4, 2, 10, 6, 500000.0, 17); /* partial, KV-cache offset */
    test_rope(QKV_NN_ROPE_HALF, 1, 4, 2, 10, 6, 500000.0, 17);
    test_rope(QKV_NN_ROPE_HALF, 1, 1, 1, 2, 0, 10000.0, 3);
    test_position_add();
    return test_finish("nn_grad");
}
