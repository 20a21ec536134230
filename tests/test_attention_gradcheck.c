/* test_attention_gradcheck.c — the reference attention against an independent double-precision
 * forward (tests/attention_oracle.h) and its backward against central finite differences of
 * that forward, for every mask kind alone and combined, GQA/MQA, Dv != D, custom scale and
 * dropout (same seed: the backward must be the derivative of the dropped-out forward); then
 * dropout statistics (keep rate, 1/(1-p) scaling, determinism).
 *
 * Tolerances: the library computes in double but stores float, and its backward reads the
 * float out and lse of its forward, so both checks allow a few float roundings:
 *   forward  |out - out_oracle| <= 1e-6 + 1e-5 |out_oracle|, same for lse;
 *   backward |g - g_fd| <= 2e-6 + 2e-5 |g_fd| (g_fd from double central differences, step
 *   1e-5, whose own error is ~1e-10; the observed error is ~1.5e-7). */
#include "attention_oracle.h"
#include "qkv.h"
#include "test.h"

#include <float.h>

typedef struct spec {
    const char *name;
    int64_t B, Tq, Tk, Hq, Hk, D, Dv;
    float scale;
    int causal;
    int64_t wl, wr;
    const int32_t *lens; /* [B] or NULL */
    int bias;            /* BIAS_* */
    int alibi;
    float dropout_p;
} spec;

static double g_max_fwd_err, g_max_grad_err;

/* loss(q,k,v) = Σ dout ∘ out_oracle(q,k,v), everything double. */
static double oracle_loss(const qkv_attention_desc *d, const double *q, const double *k,
                          const double *v, const double *dout, double *out, int64_t no) {
    oracle_forward(d, q, k, v, out, NULL, NULL);
    double L = 0;
    for (int64_t t = 0; t < no; t++) L += dout[t] * out[t];
    return L;
}

/* Compares the library gradient g (float, n values) with central differences of the loss with
 * respect to x (double, n values, perturbed in place). Returns the max scaled error. */
static double fd_compare(const char *case_name, const char *what, const qkv_attention_desc *d,
                         double *x, const float *g, int64_t n, const double *q, const double *k,
                         const double *v, const double *dout, double *out, int64_t no) {
    const double eps = 1e-5;
    double worst = 0;
    for (int64_t t = 0; t < n; t++) {
        double x0 = x[t];
        x[t] = x0 + eps;
        double lp = oracle_loss(d, q, k, v, dout, out, no);
        x[t] = x0 - eps;
        double lm = oracle_loss(d, q, k, v, dout, out, no);
        x[t] = x0;
        double fd = (lp - lm) / (2 * eps);
        double err = fabs((double)g[t] - fd);
        double scaled = err / (2e-6 + 2e-5 * fabs(fd));
        if (err > worst) worst = err;
        CHECK_MSG(scaled <= 1.0, "%s: d%s[%lld] = %.9g, finite differences %.9g", case_name, what,
                  (long long)t, (double)g[t], fd);
    }
    return worst;
}

static void run_spec(const spec *s) {
    qkv_attention_desc d;
    memset(&d, 0, sizeof d);
    d.batch = s->B;
    d.q_len = s->Tq;
    d.kv_len = s->Tk;
    d.n_heads = s->Hq;
    d.n_kv_heads = s->Hk;
    d.head_dim = s->D;
    d.v_head_dim = s->Dv;
    d.scale = s->scale;
    d.causal = s->causal;
    d.window_left = s->wl;
    d.window_right = s->wr;
    d.dropout_p = s->dropout_p;
    d.dropout_seed = 1234567;
    oracle_case c;
    oracle_case_init(&c, &d, s->bias, s->alibi, s->lens, 1.5f);
    int64_t Dv = oracle_dv(&d);

    float *out = malloc((size_t)c.no * sizeof *out);   /* [B, Tq, Hq, Dv] */
    float *lse = malloc((size_t)c.nlse * sizeof *lse); /* [B, Hq, Tq] */
    float *dq = malloc((size_t)c.nq * sizeof *dq);     /* [B, Tq, Hq, D] */
    float *dk = malloc((size_t)c.nk * sizeof *dk);     /* [B, Tk, Hk, D] */
    float *dv = malloc((size_t)c.nv * sizeof *dv);     /* [B, Tk, Hk, Dv] */
    CHECK_OK(qkv_attention_forward(NULL, &c.d, c.q, c.k, c.v, out, lse));
    CHECK_OK(qkv_attention_backward(NULL, &c.d, c.q, c.k, c.v, out, lse, c.dout, dq, dk, dv));
    CHECK_EQ_INT(oracle_count_nonfinite(out, c.no), 0);
    CHECK_EQ_INT(oracle_count_nonfinite(dq, c.nq), 0);
    CHECK_EQ_INT(oracle_count_nonfinite(dk, c.nk), 0);
    CHECK_EQ_INT(oracle_count_nonfinite(dv, c.nv), 0);

    /* (a) forward against the double oracle */
    double *qd = oracle_to_double(c.q, c.nq), *kd = oracle_to_double(c.k, c.nk);
    double *vd = oracle_to_double(c.v, c.nv), *dod = oracle_to_double(c.dout, c.no);
    double *ref = malloc((size_t)c.no * sizeof *ref);
    double *ref_lse = malloc((size_t)c.nlse * sizeof *ref_lse);
    oracle_forward(&c.d, qd, kd, vd, ref, ref_lse, NULL);
    double fwd_err = 0;
    for (int64_t t = 0; t < c.no; t++) {
        double e = fabs((double)out[t] - ref[t]);
        if (e > fwd_err) fwd_err = e;
        CHECK_MSG(e <= 1e-6 + 1e-5 * fabs(ref[t]), "%s: out[%lld] = %.9g, oracle %.9g", s->name,
                  (long long)t, (double)out[t], ref[t]);
    }
    int64_t empty_rows = 0;
    for (int64_t t = 0; t < c.nlse; t++) {
        if (ref_lse[t] == -INFINITY) {
            empty_rows++;
            CHECK_MSG(lse[t] == -INFINITY, "%s: lse[%lld] = %g, expected -inf", s->name,
                      (long long)t, (double)lse[t]);
            /* t = (b*Hq + h)*Tq + i: out row and dq row must be exactly 0 */
            int64_t i = t % s->Tq, bh = t / s->Tq, h = bh % s->Hq, b = bh / s->Hq;
            int64_t oo = ((b * s->Tq + i) * s->Hq + h) * Dv, qo = oo / Dv * s->D;
            for (int64_t x = 0; x < Dv; x++) CHECK(out[oo + x] == 0.0f);
            for (int64_t x = 0; x < s->D; x++) CHECK(dq[qo + x] == 0.0f);
            continue;
        }
        double e = fabs((double)lse[t] - ref_lse[t]);
        if (e > fwd_err) fwd_err = e;
        CHECK_MSG(e <= 1e-6 + 1e-5 * fabs(ref_lse[t]), "%s: lse[%lld] = %.9g, oracle %.9g", s->name,
                  (long long)t, (double)lse[t], ref_lse[t]);
    }

    /* (b) backward against central differences of the double forward */
    double *scratch = malloc((size_t)c.no * sizeof *scratch);
    double e1 = fd_compare(s->name, "q", &c.d, qd, dq, c.nq, qd, kd, vd, dod, scratch, c.no);
    double e2 = fd_compare(s->name, "k", &c.d, kd, dk, c.nk, qd, kd, vd, dod, scratch, c.no);
    double e3 = fd_compare(s->name, "v", &c.d, vd, dv, c.nv, qd, kd, vd, dod, scratch, c.no);
    double grad_err = fmax(e1, fmax(e2, e3));
    printf("  %-28s fwd max err %.2e  grad max err %.2e  empty rows %lld\n", s->name, fwd_err,
           grad_err, (long long)empty_rows);
    if (fwd_err > g_max_fwd_err) g_max_fwd_err = fwd_err;
    if (grad_err > g_max_grad_err) g_max_grad_err = grad_err;

    free(scratch);
    free(ref);
    free(ref_lse);
    free(qd);
    free(kd);
    free(vd);
    free(dod);
    free(out);
    free(lse);
    free(dq);
    free(dk);
    free(dv);
    oracle_case_free(&c);
}

/* ---------------------------------------------------------------- dropout statistics */

/* With v_j = e_j (Dv = Tk, one-hot rows), out row i is the dropped-out probability row:
 * out_ij = P_ij Z_ij. Each entry is either 0 or P_ij / (1 - p); the kept fraction is 1 - p. */
static void dropout_statistics(float p_drop) {
    const int64_t B = 2, H = 4, T = 128;
    qkv_attention_desc d;
    memset(&d, 0, sizeof d);
    d.batch = B;
    d.q_len = T;
    d.kv_len = T;
    d.n_heads = H;
    d.n_kv_heads = H;
    d.head_dim = 8;
    d.v_head_dim = T;
    d.window_left = d.window_right = -1;
    d.dropout_p = p_drop;
    d.dropout_seed = 42;
    int64_t nq = B * T * H * 8, nv = B * T * H * T, np = B * H * T * T;
    float *q = malloc((size_t)nq * sizeof *q);     /* [B, T, H, 8] */
    float *k = malloc((size_t)nq * sizeof *k);     /* [B, T, H, 8] */
    float *v = calloc((size_t)nv, sizeof *v);      /* [B, T, H, T] one-hot */
    float *out = malloc((size_t)nv * sizeof *out); /* [B, T, H, T] */
    float *out2 = malloc((size_t)nv * sizeof *out2);
    float *pr = malloc((size_t)np * sizeof *pr); /* [B, H, T, T] */
    oracle_fill(q, nq, 1.0f);
    oracle_fill(k, nq, 1.0f);
    for (int64_t b = 0; b < B; b++)
        for (int64_t j = 0; j < T; j++)
            for (int64_t h = 0; h < H; h++) v[((b * T + j) * H + h) * T + j] = 1.0f;
    CHECK_OK(qkv_attention_forward(NULL, &d, q, k, v, out, NULL));
    CHECK_OK(qkv_attention_probs(NULL, &d, q, k, pr));

    double keep_scale = 1.0 / (1.0 - (double)p_drop);
    int64_t kept = 0, bad_scale = 0;
    double row_sum_mean = 0;
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < T; i++) {
                double row_sum = 0;
                for (int64_t j = 0; j < T; j++) {
                    float o = out[((b * T + i) * H + h) * T + j];
                    double pij = pr[((b * H + h) * T + i) * T + j];
                    row_sum += o;
                    if (o == 0.0f) continue;
                    kept++;
                    if (fabs(o - pij * keep_scale) > 1e-6 * pij * keep_scale) bad_scale++;
                }
                row_sum_mean += row_sum;
            }
    double rows = (double)(B * H * T);
    row_sum_mean /= rows;
    double rate = (double)kept / (double)np;
    double se = sqrt(p_drop * (1.0 - p_drop) / (double)np);
    printf("  dropout p=%.2f: keep rate %.5f (expected %.5f, se %.5f), kept values off scale: "
           "%lld, mean row sum %.4f\n",
           (double)p_drop, rate, 1.0 - p_drop, se, (long long)bad_scale, row_sum_mean);
    CHECK_MSG(fabs(rate - (1.0 - p_drop)) <= 4 * se, "keep rate %.5f vs %.5f", rate, 1.0 - p_drop);
    CHECK_EQ_INT(bad_scale, 0);
    /* E[row sum] = 1; the per-row sum has variance <= p/(1-p) * max_j P_ij; loose bound: */
    CHECK_MSG(fabs(row_sum_mean - 1.0) <= 4 * sqrt(p_drop / (1.0 - p_drop) / rows),
              "mean row sum %.5f", row_sum_mean);

    /* the same seed gives the same mask (also on another runtime), another seed another one */
    qkv_runtime *rt1 = NULL;
    CHECK_OK(qkv_runtime_create(1, &rt1));
    CHECK_OK(qkv_attention_forward(rt1, &d, q, k, v, out2, NULL));
    CHECK(memcmp(out, out2, (size_t)nv * sizeof *out) == 0);
    d.dropout_seed = 43;
    CHECK_OK(qkv_attention_forward(rt1, &d, q, k, v, out2, NULL));
    int64_t same = 0;
    for (int64_t t = 0; t < nv; t++) same += (out[t] == 0.0f) == (out2[t] == 0.0f);
    double agree = (double)same / (double)nv, expect = 1.0 - 2.0 * p_drop * (1.0 - p_drop);
    /* on one-hot positions the masks agree with probability p^2 + (1-p)^2; elsewhere out is 0 */
    double agree_onhot = (agree * (double)nv - (double)(nv - np)) / (double)np;
    CHECK_MSG(fabs(agree_onhot - expect) <= 0.02, "seeds 42/43 masks agree on %.4f (expect %.4f)",
              agree_onhot, expect);
    qkv_runtime_free(rt1);
    free(q);
    free(k);
    free(v);
    free(out);
    free(out2);
    free(pr);
}

int main(void) {
    static const int32_t lens2[2] = {4, 0};  /* batch 1 has no keys at all */
    static const int32_t lens2b[2] = {6, 2}; /* with Tk = 6 */
    static const int32_t lens3[3] = {7, 3, 1};
    const int64_t N = -1; /* no window */
    const spec specs[] = {
        /* name                 B  Tq Tk Hq Hk D  Dv scale  causal wl wr  lens  bias alibi p */
        {"none", 2, 5, 6, 2, 2, 3, 0, 0, 0, N, N, NULL, BIAS_NONE, 0, 0},
        {"causal Tq==Tk", 2, 5, 5, 2, 2, 3, 0, 0, 1, N, N, NULL, BIAS_NONE, 0, 0},
        {"causal Tq<Tk", 2, 4, 7, 2, 2, 3, 0, 0, 1, N, N, NULL, BIAS_NONE, 0, 0},
        {"causal Tq>Tk", 2, 7, 4, 2, 2, 3, 0, 0, 1, N, N, NULL, BIAS_NONE, 0, 0},
        {"window left", 1, 6, 6, 2, 2, 3, 0, 0, 0, 2, N, NULL, BIAS_NONE, 0, 0},
        {"window right", 1, 6, 6, 2, 2, 3, 0, 0, 0, N, 1, NULL, BIAS_NONE, 0, 0},
        {"window left+right Tq<Tk", 1, 4, 8, 2, 2, 3, 0, 0, 0, 1, 2, NULL, BIAS_NONE, 0, 0},
        {"window 0/0 (diagonal)", 1, 5, 5, 2, 2, 3, 0, 0, 0, 0, 0, NULL, BIAS_NONE, 0, 0},
        {"window Tq>Tk", 1, 7, 4, 2, 2, 3, 0, 0, 0, 1, 0, NULL, BIAS_NONE, 0, 0},
        {"kv_lens (one 0)", 2, 4, 5, 2, 2, 3, 0, 0, 0, N, N, lens2, BIAS_NONE, 0, 0},
        {"kv_lens", 3, 3, 7, 2, 2, 3, 0, 0, 0, N, N, lens3, BIAS_NONE, 0, 0},
        {"bias full", 2, 4, 5, 2, 2, 3, 0, 0, 0, N, N, NULL, BIAS_FULL, 0, 0},
        {"bias bcast batch", 2, 4, 5, 2, 2, 3, 0, 0, 0, N, N, NULL, BIAS_BCAST_B, 0, 0},
        {"bias bcast heads", 2, 4, 5, 2, 2, 3, 0, 0, 0, N, N, NULL, BIAS_BCAST_H, 0, 0},
        {"bias bcast queries", 2, 4, 5, 2, 2, 3, 0, 0, 0, N, N, NULL, BIAS_BCAST_Q, 0, 0},
        {"alibi", 1, 5, 7, 4, 4, 2, 0, 0, 0, N, N, NULL, BIAS_NONE, 1, 0},
        {"gqa 4/2", 2, 4, 5, 4, 2, 3, 0, 0, 0, N, N, NULL, BIAS_NONE, 0, 0},
        {"mqa 4/1", 2, 4, 5, 4, 1, 3, 0, 0, 0, N, N, NULL, BIAS_NONE, 0, 0},
        {"Dv != D", 2, 4, 5, 2, 2, 3, 5, 0, 0, N, N, NULL, BIAS_NONE, 0, 0},
        {"Dv < D", 1, 4, 5, 2, 2, 4, 1, 0, 0, N, N, NULL, BIAS_NONE, 0, 0},
        {"custom scale", 2, 4, 5, 2, 2, 3, 0, 0.8f, 0, N, N, NULL, BIAS_NONE, 0, 0},
        {"causal+window+lens", 2, 5, 6, 2, 2, 3, 0, 0, 1, 2, N, lens2b, BIAS_NONE, 0, 0},
        {"causal+bias+alibi+gqa", 2, 6, 5, 4, 2, 3, 2, 0, 1, N, N, NULL, BIAS_BCAST_B, 1, 0},
        {"all masks combined", 2, 5, 6, 4, 2, 3, 4, 0.45f, 1, 3, N, lens2b, BIAS_BCAST_H, 1, 0},
        {"all + window right + mqa", 2, 6, 6, 4, 1, 2, 3, 0, 0, 2, 1, lens2b, BIAS_BCAST_Q, 1, 0},
        {"dropout 0.3", 2, 5, 6, 2, 2, 3, 0, 0, 0, N, N, NULL, BIAS_NONE, 0, 0.3f},
        {"dropout 0.6 + masks + gqa", 2, 5, 6, 4, 2, 3, 4, 0, 1, 3, N, lens2b, BIAS_FULL, 1, 0.6f},
    };
    for (size_t t = 0; t < sizeof specs / sizeof specs[0]; t++) {
        oracle_seed(1000 + t);
        run_spec(&specs[t]);
    }
    /* random small configurations: every feature drawn independently */
    oracle_seed(99);
    const int n_random = 60;
    for (int t = 0; t < n_random; t++) {
        static const int64_t wins[4] = {-1, 0, 1, 3};
        int32_t lens[2];
        char name[32];
        snprintf(name, sizeof name, "random %d", t);
        spec r = {name, 0, 0, 0, 0, 0, 0, 0, 0, 0, -1, -1, NULL, BIAS_NONE, 0, 0};
#define PICK(n) ((int64_t)((oracle_uniform() + 1.0f) * 0.5f * (float)(n)) % (n))
        r.B = 1 + PICK(2);
        r.Tq = 1 + PICK(6);
        r.Tk = 1 + PICK(6);
        r.Hk = 1 + PICK(2);
        r.Hq = r.Hk * (1 + PICK(3));
        r.D = 1 + PICK(4);
        r.Dv = PICK(4);
        r.scale = PICK(2) ? 0.7f : 0.0f;
        r.causal = (int)PICK(2);
        r.wl = wins[PICK(4)];
        r.wr = wins[PICK(4)];
        r.bias = (int)PICK(5);
        r.alibi = (int)PICK(2);
        r.dropout_p = PICK(3) == 0 ? 0.4f : 0.0f;
        if (PICK(2)) {
            lens[0] = (int32_t)PICK(r.Tk + 1);
            lens[1] = (int32_t)PICK(r.Tk + 1);
            r.lens = lens;
        }
#undef PICK
        run_spec(&r);
    }
    printf("max forward error %.3e, max gradient error %.3e over %zu cases\n", g_max_fwd_err,
           g_max_grad_err, sizeof specs / sizeof specs[0] + (size_t)n_random);
    oracle_seed(7);
    dropout_statistics(0.25f);
    dropout_statistics(0.6f);
    return test_finish("attention_gradcheck");
}
