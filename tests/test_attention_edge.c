/* test_attention_edge.c — the reference attention on edge and hostile inputs: huge logits
 * (±1e4, ±1e30, -inf bias), sizes of 1, large B·H with tiny T, a score grid past 2^32 (64-bit
 * dropout counters), descriptor validation (each invalid field is named), size overflow,
 * allocation failure, probs (rows sum to 1 and equal exp(score - lse)), the key/query interval
 * rules against each other, and independence from the thread count. */
#include "attention/attention.h"
#include "attention_oracle.h"
#include "qkv.h"
#include "test.h"

#include <stdint.h>

static qkv_attention_desc base_desc(int64_t B, int64_t Tq, int64_t Tk, int64_t Hq, int64_t Hk,
                                    int64_t D) {
    qkv_attention_desc d;
    memset(&d, 0, sizeof d);
    d.batch = B;
    d.q_len = Tq;
    d.kv_len = Tk;
    d.n_heads = Hq;
    d.n_kv_heads = Hk;
    d.head_dim = D;
    d.window_left = d.window_right = -1;
    return d;
}

/* Library outputs of one case. */
typedef struct outputs {
    float *out, *lse, *dq, *dk, *dv;
} outputs;

static void run_lib(qkv_runtime *rt, const oracle_case *c, outputs *o) {
    o->out = malloc((size_t)c->no * sizeof(float));
    o->lse = malloc((size_t)c->nlse * sizeof(float));
    o->dq = malloc((size_t)c->nq * sizeof(float));
    o->dk = malloc((size_t)c->nk * sizeof(float));
    o->dv = malloc((size_t)c->nv * sizeof(float));
    CHECK_OK(qkv_attention_forward(rt, &c->d, c->q, c->k, c->v, o->out, o->lse));
    CHECK_OK(qkv_attention_backward(rt, &c->d, c->q, c->k, c->v, o->out, o->lse, c->dout, o->dq,
                                    o->dk, o->dv));
}

static void free_outputs(outputs *o) {
    free(o->out);
    free(o->lse);
    free(o->dq);
    free(o->dk);
    free(o->dv);
}

/* Forward of the library against the double oracle: |out - ref| <= atol + rtol |ref|, lse with
 * a relative 1e-6 (-inf must match exactly). Returns the max abs error of out. */
static double compare_forward(const char *name, const oracle_case *c, const outputs *o, double atol,
                              double rtol) {
    double *qd = oracle_to_double(c->q, c->nq), *kd = oracle_to_double(c->k, c->nk);
    double *vd = oracle_to_double(c->v, c->nv);
    double *ref = malloc((size_t)c->no * sizeof *ref);
    double *ref_lse = malloc((size_t)c->nlse * sizeof *ref_lse);
    oracle_forward(&c->d, qd, kd, vd, ref, ref_lse, NULL);
    double worst = 0;
    for (int64_t t = 0; t < c->no; t++) {
        double e = fabs((double)o->out[t] - ref[t]);
        if (e > worst) worst = e;
        CHECK_MSG(e <= atol + rtol * fabs(ref[t]), "%s: out[%lld] = %.9g, oracle %.9g", name,
                  (long long)t, (double)o->out[t], ref[t]);
    }
    for (int64_t t = 0; t < c->nlse; t++) {
        if (ref_lse[t] == -INFINITY)
            CHECK_MSG(o->lse[t] == -INFINITY, "%s: lse[%lld] = %g, expected -inf", name,
                      (long long)t, (double)o->lse[t]);
        else
            CHECK_MSG(fabs((double)o->lse[t] - ref_lse[t]) <= 1e-6 * fabs(ref_lse[t]) + 1e-6,
                      "%s: lse[%lld] = %.9g, oracle %.9g", name, (long long)t, (double)o->lse[t],
                      ref_lse[t]);
    }
    CHECK_EQ_INT(oracle_count_nonfinite(o->out, c->no), 0);
    free(qd);
    free(kd);
    free(vd);
    free(ref);
    free(ref_lse);
    return worst;
}

/* Invariants of the backward that hold however peaked the softmax is (no dropout, no empty
 * rows, MHA): Σ_j dv_j = Σ_i dout_i (rows of P sum to 1) and Σ_j dk_j = 0 (adding a constant
 * to every key's score of a row changes nothing). Tolerances relative to Σ|terms|. */
static void check_backward_invariants(const char *name, const oracle_case *c, const outputs *o,
                                      double rtol) {
    const qkv_attention_desc *d = &c->d;
    int64_t B = d->batch, Tq = d->q_len, Tk = d->kv_len, H = d->n_heads, D = d->head_dim;
    CHECK_EQ_INT(oracle_count_nonfinite(o->dq, c->nq), 0);
    CHECK_EQ_INT(oracle_count_nonfinite(o->dk, c->nk), 0);
    CHECK_EQ_INT(oracle_count_nonfinite(o->dv, c->nv), 0);
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t x = 0; x < D; x++) {
                double sdv = 0, sdo = 0, adv = 0, sdk = 0, adk = 0;
                for (int64_t j = 0; j < Tk; j++) {
                    sdv += o->dv[((b * Tk + j) * H + h) * D + x];
                    adv += fabs(o->dv[((b * Tk + j) * H + h) * D + x]);
                    sdk += o->dk[((b * Tk + j) * H + h) * D + x];
                    adk += fabs(o->dk[((b * Tk + j) * H + h) * D + x]);
                }
                for (int64_t i = 0; i < Tq; i++) sdo += c->dout[((b * Tq + i) * H + h) * D + x];
                CHECK_MSG(fabs(sdv - sdo) <= rtol * (adv + 1), "%s: Σdv %.9g vs Σdout %.9g", name,
                          sdv, sdo);
                CHECK_MSG(fabs(sdk) <= rtol * (adk + 1), "%s: Σdk = %.9g (Σ|dk| %.3g)", name, sdk,
                          adk);
            }
}

/* ---------------------------------------------------------------- huge logits */

static void test_huge_logits(void) {
    /* scores of ±1e4 from q·k: |q|, |k| ~ 100, D = 4, scale 1/2 (pass 0, 1); the same
     * invariants at ordinary logits (pass 2, 3) */
    for (int pass = 0; pass < 4; pass++) {
        qkv_attention_desc d = base_desc(2, 5, 6, 2, 2, 4);
        d.causal = pass & 1;
        oracle_case c;
        oracle_seed(11 + (uint64_t)pass);
        oracle_case_init(&c, &d, BIAS_NONE, 0, NULL, pass < 2 ? 100.0f : 1.0f);
        outputs o;
        run_lib(NULL, &c, &o);
        compare_forward(pass < 2 ? "1e4" : "1", &c, &o, 1e-6, 1e-5);
        /* the backward recomputes P from the float lse, whose rounding (|lse| 2^-24, ~6e-4 at
         * 1e4) is a relative error of P: the price of the lse contract, see ATTENTION.md */
        double lse_max = 0;
        for (int64_t t = 0; t < c.nlse; t++) lse_max = fmax(lse_max, fabs(o.lse[t]));
        if (pass < 2) {
            printf("  huge logits: max |lse| %.1f\n", lse_max);
            CHECK(lse_max > 5e3);
        }
        check_backward_invariants(pass < 2 ? "1e4" : "1", &c, &o, 1e-5 + 2.0 * lse_max * 0x1p-24);
        free_outputs(&o);
        oracle_case_free(&c);
    }
    /* ±1e30 from a bias (random signs), and from q·k directly (1e15 · 1e15) */
    {
        qkv_attention_desc d = base_desc(2, 4, 5, 2, 2, 3);
        oracle_case c;
        oracle_seed(13);
        oracle_case_init(&c, &d, BIAS_FULL, 0, NULL, 1.0f);
        int64_t nb = 2 * 2 * 4 * 5;
        for (int64_t t = 0; t < nb; t++) c.bias[t] = c.bias[t] >= 0 ? 1e30f : -1e30f;
        c.bias[7] = 3e30f; /* one clear winner in one row */
        outputs o;
        run_lib(NULL, &c, &o);
        compare_forward("bias ±1e30", &c, &o, 1e-6, 1e-5);
        CHECK_EQ_INT(oracle_count_nonfinite(o.lse, c.nlse), 0);
        CHECK_EQ_INT(oracle_count_nonfinite(o.dq, c.nq), 0);
        CHECK_EQ_INT(oracle_count_nonfinite(o.dk, c.nk), 0);
        CHECK_EQ_INT(oracle_count_nonfinite(o.dv, c.nv), 0);
        free_outputs(&o);
        oracle_case_free(&c);
    }
    {
        qkv_attention_desc d = base_desc(1, 3, 4, 1, 1, 1);
        d.scale = 1.0f;
        oracle_case c;
        oracle_seed(14);
        oracle_case_init(&c, &d, BIAS_NONE, 0, NULL, 1.0f);
        const float qs[3] = {1e15f, -1e15f, 3e14f}, ks[4] = {1e15f, -2e15f, 5e14f, 1e15f};
        memcpy(c.q, qs, sizeof qs);
        memcpy(c.k, ks, sizeof ks);
        outputs o;
        run_lib(NULL, &c, &o);
        compare_forward("q·k ±1e30", &c, &o, 1e-6, 1e-5);
        CHECK_EQ_INT(oracle_count_nonfinite(o.lse, c.nlse), 0);
        CHECK_EQ_INT(oracle_count_nonfinite(o.dq, c.nq), 0);
        CHECK_EQ_INT(oracle_count_nonfinite(o.dk, c.nk), 0);
        CHECK_EQ_INT(oracle_count_nonfinite(o.dv, c.nv), 0);
        free_outputs(&o);
        oracle_case_free(&c);
    }
    /* every score -1e30: a uniform softmax, lse = -1e30 + log Tk, not an empty row */
    {
        qkv_attention_desc d = base_desc(1, 2, 5, 1, 1, 2);
        oracle_case c;
        oracle_seed(15);
        oracle_case_init(&c, &d, BIAS_BCAST_Q, 0, NULL, 1.0f);
        for (int64_t j = 0; j < 5; j++) c.bias[j] = -1e30f;
        outputs o;
        run_lib(NULL, &c, &o);
        compare_forward("all -1e30", &c, &o, 1e-6, 1e-5);
        for (int64_t i = 0; i < 2; i++) {
            CHECK(isfinite(o.lse[i]));
            for (int64_t x = 0; x < 2; x++) {
                double mean = 0;
                for (int64_t j = 0; j < 5; j++) mean += c.v[j * 2 + x] / 5.0;
                CHECK_NEAR(o.out[i * 2 + x], mean, 1e-6, 1e-5);
            }
        }
        free_outputs(&o);
        oracle_case_free(&c);
    }
    /* -inf bias: a row of only -inf is empty (out 0, lse -inf, dq 0), partial -inf masks keys */
    {
        qkv_attention_desc d = base_desc(1, 3, 4, 1, 1, 2);
        oracle_case c;
        oracle_seed(16);
        oracle_case_init(&c, &d, BIAS_FULL, 0, NULL, 1.0f);
        for (int64_t j = 0; j < 4; j++) c.bias[0 * 4 + j] = -INFINITY; /* row 0: empty */
        c.bias[1 * 4 + 0] = c.bias[1 * 4 + 2] = -INFINITY;             /* row 1: keys 1, 3 */
        outputs o;
        run_lib(NULL, &c, &o);
        compare_forward("-inf bias", &c, &o, 1e-6, 1e-5);
        CHECK(o.lse[0] == -INFINITY);
        CHECK(o.out[0] == 0.0f && o.out[1] == 0.0f);
        CHECK(o.dq[0] == 0.0f && o.dq[1] == 0.0f);
        CHECK(isfinite(o.lse[1]) && isfinite(o.lse[2]));
        CHECK_EQ_INT(oracle_count_nonfinite(o.dq, c.nq), 0);
        CHECK_EQ_INT(oracle_count_nonfinite(o.dk, c.nk), 0);
        CHECK_EQ_INT(oracle_count_nonfinite(o.dv, c.nv), 0);
        free_outputs(&o);
        oracle_case_free(&c);
    }
}

/* ---------------------------------------------------------------- sizes of 1, large B·H */

static void test_small_sizes(void) {
    /* Tq = Tk = D = 1: P = 1, out = v, lse = score */
    {
        qkv_attention_desc d = base_desc(1, 1, 1, 1, 1, 1);
        const float q = 0.5f, k = -3.0f, v = 7.25f, dout = 2.0f;
        float out, lse, dq, dk, dv;
        CHECK_OK(qkv_attention_forward(NULL, &d, &q, &k, &v, &out, &lse));
        CHECK(out == v);
        CHECK(lse == q * k); /* scale 1/sqrt(1) */
        CHECK_OK(qkv_attention_backward(NULL, &d, &q, &k, &v, &out, &lse, &dout, &dq, &dk, &dv));
        CHECK(dq == 0.0f && dk == 0.0f); /* a softmax over one key does not depend on it */
        CHECK(dv == dout);
    }
    /* Tq = 1 (decoding) with causal: the last query sees every key */
    {
        qkv_attention_desc d = base_desc(2, 1, 9, 4, 2, 3);
        d.causal = 1;
        oracle_case c;
        oracle_seed(21);
        oracle_case_init(&c, &d, BIAS_NONE, 1, NULL, 1.0f);
        outputs o;
        run_lib(NULL, &c, &o);
        compare_forward("Tq=1", &c, &o, 1e-6, 1e-5);
        free_outputs(&o);
        oracle_case_free(&c);
    }
    /* Tk = 1: out = v for every query that sees it */
    {
        qkv_attention_desc d = base_desc(1, 4, 1, 2, 1, 2);
        oracle_case c;
        oracle_seed(22);
        oracle_case_init(&c, &d, BIAS_NONE, 0, NULL, 1.0f);
        outputs o;
        run_lib(NULL, &c, &o);
        compare_forward("Tk=1", &c, &o, 0, 0); /* exact */
        free_outputs(&o);
        oracle_case_free(&c);
    }
    /* large B·H, tiny T, on a 1- and a 2-thread runtime: bitwise equal results */
    {
        qkv_attention_desc d = base_desc(64, 2, 3, 96, 32, 2);
        d.causal = 1;
        oracle_case c;
        oracle_seed(23);
        oracle_case_init(&c, &d, BIAS_BCAST_B, 1, NULL, 1.0f);
        qkv_runtime *rt1 = NULL, *rt2 = NULL;
        CHECK_OK(qkv_runtime_create(1, &rt1));
        CHECK_OK(qkv_runtime_create(2, &rt2));
        outputs o1, o2;
        run_lib(rt1, &c, &o1);
        run_lib(rt2, &c, &o2);
        compare_forward("B*H = 6144", &c, &o1, 1e-6, 1e-5);
        CHECK(memcmp(o1.out, o2.out, (size_t)c.no * sizeof(float)) == 0);
        CHECK(memcmp(o1.lse, o2.lse, (size_t)c.nlse * sizeof(float)) == 0);
        CHECK(memcmp(o1.dq, o2.dq, (size_t)c.nq * sizeof(float)) == 0);
        CHECK(memcmp(o1.dk, o2.dk, (size_t)c.nk * sizeof(float)) == 0);
        CHECK(memcmp(o1.dv, o2.dv, (size_t)c.nv * sizeof(float)) == 0);
        free_outputs(&o1);
        free_outputs(&o2);
        qkv_runtime_free(rt1);
        qkv_runtime_free(rt2);
        oracle_case_free(&c);
    }
}

/* Larger problem (enough work to be split across threads), all features on: 1 vs 3 threads. */
static void test_thread_independence(void) {
    static const int32_t lens[3] = {40, 17, 0};
    qkv_attention_desc d = base_desc(3, 33, 40, 6, 2, 16);
    d.v_head_dim = 8;
    d.causal = 1;
    d.window_left = 20;
    d.dropout_p = 0.2f;
    d.dropout_seed = 99;
    oracle_case c;
    oracle_seed(31);
    oracle_case_init(&c, &d, BIAS_BCAST_H, 1, lens, 1.0f);
    qkv_runtime *rt1 = NULL, *rt3 = NULL;
    CHECK_OK(qkv_runtime_create(1, &rt1));
    CHECK_OK(qkv_runtime_create(3, &rt3));
    outputs o1, o3;
    run_lib(rt1, &c, &o1);
    run_lib(rt3, &c, &o3);
    compare_forward("threads", &c, &o1, 1e-6, 1e-5);
    CHECK(memcmp(o1.out, o3.out, (size_t)c.no * sizeof(float)) == 0);
    CHECK(memcmp(o1.lse, o3.lse, (size_t)c.nlse * sizeof(float)) == 0);
    CHECK(memcmp(o1.dq, o3.dq, (size_t)c.nq * sizeof(float)) == 0);
    CHECK(memcmp(o1.dk, o3.dk, (size_t)c.nk * sizeof(float)) == 0);
    CHECK(memcmp(o1.dv, o3.dv, (size_t)c.nv * sizeof(float)) == 0);
    int64_t np = 3 * 6 * 33 * 40;
    float *p1 = malloc((size_t)np * sizeof *p1), *p3 = malloc((size_t)np * sizeof *p3);
    CHECK_OK(qkv_attention_probs(rt1, &c.d, c.q, c.k, p1));
    CHECK_OK(qkv_attention_probs(rt3, &c.d, c.q, c.k, p3));
    CHECK(memcmp(p1, p3, (size_t)np * sizeof *p1) == 0);
    free(p1);
    free(p3);
    free_outputs(&o1);
    free_outputs(&o3);
    qkv_runtime_free(rt1);
    qkv_runtime_free(rt3);
    oracle_case_free(&c);
}

/* A score grid of 70000 x 70000 > 2^32 (dropout counters past 32 bits), made cheap by a 0/0
 * window: query i sees only key i, so out_i = v_i / (1-p) or 0, per the 64-bit counter. */
static void test_big_grid(void) {
    const int64_t T = 70000;
    qkv_attention_desc d = base_desc(1, T, T, 1, 1, 1);
    d.window_left = d.window_right = 0;
    d.dropout_p = 0.5f;
    d.dropout_seed = 5;
    float *q = malloc((size_t)T * sizeof *q), *k = malloc((size_t)T * sizeof *k);
    float *v = malloc((size_t)T * sizeof *v), *out = malloc((size_t)T * sizeof *out);
    float *lse = malloc((size_t)T * sizeof *lse);
    for (int64_t t = 0; t < T; t++) {
        q[t] = 1.0f;
        k[t] = 0.5f;
        v[t] = (float)(t % 7 + 1);
    }
    CHECK_OK(qkv_attention_forward(NULL, &d, q, k, v, out, lse));
    int64_t wrong = 0, kept_high = 0;
    for (int64_t i = 0; i < T; i++) {
        float expect = (float)(oracle_drop(&d, 0, 0, i, i) * v[i]);
        wrong += out[i] != expect || lse[i] != 0.5f;
        if (i >= 65536 && out[i] != 0.0f) kept_high++;
    }
    CHECK_EQ_INT(wrong, 0);
    CHECK(kept_high > 0 && kept_high < T - 65536);
    free(q);
    free(k);
    free(v);
    free(out);
    free(lse);
}

/* ---------------------------------------------------------------- probs */

static void test_probs(void) {
    static const int32_t lens[2] = {7, 0};
    qkv_attention_desc d = base_desc(2, 6, 7, 4, 2, 3);
    d.causal = 1;
    d.window_left = 3;
    d.dropout_p = 0.5f; /* probs never apply dropout */
    oracle_case c;
    oracle_seed(41);
    oracle_case_init(&c, &d, BIAS_FULL, 1, lens, 1.0f);
    int64_t np = 2 * 4 * 6 * 7;
    float *p = malloc((size_t)np * sizeof *p); /* [B, Hq, Tq, Tk] */
    float *out = malloc((size_t)c.no * sizeof *out), *lse = malloc((size_t)c.nlse * sizeof *lse);
    CHECK_OK(qkv_attention_probs(NULL, &c.d, c.q, c.k, p));
    CHECK_OK(qkv_attention_forward(NULL, &c.d, c.q, c.k, c.v, out, lse));
    double *qd = oracle_to_double(c.q, c.nq), *kd = oracle_to_double(c.k, c.nk);
    double *vd = oracle_to_double(c.v, c.nv);
    double *ref = malloc((size_t)c.no * sizeof *ref), *ref_p = malloc((size_t)np * sizeof *ref_p);
    oracle_forward(&c.d, qd, kd, vd, ref, NULL, ref_p);
    const double scale = 1.0 / sqrt(3.0);
    int64_t rows = 0, empty = 0;
    for (int64_t b = 0; b < 2; b++)
        for (int64_t h = 0; h < 4; h++)
            for (int64_t i = 0; i < 6; i++) {
                const float *pr = p + ((b * 4 + h) * 6 + i) * 7;
                double L = lse[(b * 4 + h) * 6 + i], sum = 0;
                for (int64_t j = 0; j < 7; j++) {
                    sum += pr[j];
                    CHECK_NEAR(pr[j], ref_p[((b * 4 + h) * 6 + i) * 7 + j], 1e-7, 1e-6);
                    if (!oracle_visible(&c.d, b, i, j)) {
                        CHECK(pr[j] == 0.0f);
                        continue;
                    }
                    /* p = exp(score - lse), score recomputed here in double */
                    double s = 0;
                    for (int64_t x = 0; x < 3; x++)
                        s += qd[((b * 6 + i) * 4 + h) * 3 + x] *
                             kd[((b * 7 + j) * 2 + h / 2) * 3 + x];
                    s = s * scale + c.bias[((b * 4 + h) * 6 + i) * 7 + j] -
                        (double)c.slopes[h] * fabs((double)(i + 1 - j));
                    CHECK_NEAR(pr[j], exp(s - L), 1e-7, 1e-5);
                }
                if (L == -INFINITY) {
                    empty++;
                    CHECK(sum == 0.0);
                } else {
                    rows++;
                    CHECK_NEAR(sum, 1.0, 1e-6, 0);
                }
            }
    CHECK_EQ_INT(empty, 4 * 6); /* batch 1 has kv_lens 0 */
    CHECK_EQ_INT(rows, 4 * 6);
    free(p);
    free(out);
    free(lse);
    free(qd);
    free(kd);
    free(vd);
    free(ref);
    free(ref_p);
    oracle_case_free(&c);
}

/* ---------------------------------------------------------------- interval rules */

/* qkv__attn_query_range must be exactly the transpose of qkv__attn_key_range, and both must
 * agree with the definition (the oracle's key-by-key rule), over many mask combinations. */
static void test_ranges(void) {
    int64_t bad = 0, combos = 0;
    const int64_t wins[] = {-1, 0, 1, 2, 5, INT64_MAX};
    const int32_t lens_v[] = {0, 1, 3, 9};
    for (int64_t Tq = 1; Tq <= 9; Tq += 2)
        for (int64_t Tk = 1; Tk <= 9; Tk += 2)
            for (int causal = 0; causal < 2; causal++)
                for (size_t a = 0; a < 6; a++)
                    for (size_t w = 0; w < 6; w++)
                        for (size_t l = 0; l < 5; l++) {
                            qkv_attention_desc d = base_desc(1, Tq, Tk, 1, 1, 1);
                            int32_t len = l < 4 ? lens_v[l] : 0;
                            if (l < 4 && len > Tk) continue;
                            d.causal = causal;
                            d.window_left = wins[a];
                            d.window_right = wins[w];
                            d.kv_lens = l < 4 ? &len : NULL;
                            qkv__attn_problem pb;
                            CHECK_OK(qkv__attn_validate("test", &d, 0, &pb));
                            combos++;
                            for (int64_t i = 0; i < Tq; i++)
                                for (int64_t j = 0; j < Tk; j++) {
                                    int64_t klo, khi, qlo, qhi;
                                    qkv__attn_key_range(&pb, 0, i, &klo, &khi);
                                    qkv__attn_query_range(&pb, 0, j, &qlo, &qhi);
                                    int def = oracle_visible(&d, 0, i, j);
                                    bad += def != (j >= klo && j < khi);
                                    bad += def != (i >= qlo && i < qhi);
                                    bad += klo > khi || qlo > qhi;
                                }
                        }
    printf("  interval rules: %lld mask combinations checked, %lld mismatches\n", (long long)combos,
           (long long)bad);
    CHECK_EQ_INT(bad, 0);
}

/* ---------------------------------------------------------------- validation */

/* Expects QKV_ERR_INVALID_ARG from all three entry points, each naming `field`. */
static void expect_invalid(const qkv_attention_desc *d, const char *field) {
    static float buf[64];
    float *f = buf;
    qkv_status s[3];
    s[0] = qkv_attention_forward(NULL, d, f, f, f, f, f);
    int named0 = strstr(qkv_last_error(), field) != NULL;
    s[1] = qkv_attention_backward(NULL, d, f, f, f, f, f, f, f, f, f);
    int named1 = strstr(qkv_last_error(), field) != NULL;
    s[2] = qkv_attention_probs(NULL, d, f, f, f);
    int named2 = strstr(qkv_last_error(), field) != NULL;
    for (int t = 0; t < 3; t++)
        CHECK_MSG(s[t] == QKV_ERR_INVALID_ARG, "%s: status %d", field, s[t]);
    CHECK_MSG(named0 && named1 && named2, "message does not name '%s': %s", field,
              qkv_last_error());
}

static void test_validation(void) {
    static float buf[64];
    float *f = buf;
    const qkv_attention_desc ok = base_desc(1, 2, 2, 2, 1, 2);
    qkv_attention_desc d;
#define MUTATE(stmt, field)                                                                        \
    do {                                                                                           \
        d = ok;                                                                                    \
        stmt;                                                                                      \
        expect_invalid(&d, field);                                                                 \
    } while (0)
    MUTATE(d.batch = 0, "batch");
    MUTATE(d.batch = -3, "batch");
    MUTATE(d.q_len = 0, "q_len");
    MUTATE(d.kv_len = -1, "kv_len");
    MUTATE(d.n_heads = 0, "n_heads");
    MUTATE(d.n_kv_heads = 0, "n_kv_heads");
    MUTATE(d.n_kv_heads = 3, "n_kv_heads"); /* 3 does not divide 2 */
    MUTATE((d.n_heads = 4, d.n_kv_heads = 3), "n_kv_heads");
    MUTATE(d.head_dim = 0, "head_dim");
    MUTATE(d.v_head_dim = -2, "v_head_dim");
    MUTATE(d.window_left = -2, "window_left");
    MUTATE(d.window_right = INT64_MIN, "window_right");
    MUTATE(d.dropout_p = 1.0f, "dropout_p");
    MUTATE(d.dropout_p = -0.1f, "dropout_p");
    MUTATE(d.dropout_p = NAN, "dropout_p");
    MUTATE(d.scale = INFINITY, "scale");
    MUTATE(d.scale = NAN, "scale");
    MUTATE((d.bias = f, d.bias_stride_h = -1), "bias_stride_h");
    MUTATE((d.batch = 2, d.bias = f, d.bias_stride_b = INT64_MAX), "bias_stride_b");
    static const int32_t lens_neg[1] = {-1}, lens_big[1] = {3};
    MUTATE(d.kv_lens = lens_neg, "kv_lens[0]");
    MUTATE(d.kv_lens = lens_big, "kv_lens[0]");
    /* sizes whose products overflow int64 (element counts or byte counts) */
    MUTATE((d.batch = INT64_C(1) << 32, d.q_len = INT64_C(1) << 32), "overflow");
    MUTATE((d.kv_len = INT64_C(1) << 62), "overflow"); /* k bytes: 2^62 * 2 * 4 */
    MUTATE((d.v_head_dim = INT64_MAX / 2), "overflow");
    MUTATE((d.n_heads = INT64_C(1) << 31, d.n_kv_heads = 1, d.head_dim = INT64_C(1) << 31),
           "overflow");
#undef MUTATE
    /* the score grid is checked only where it is indexed: probs and dropout */
    d = ok;
    d.q_len = d.kv_len = INT64_C(1) << 32; /* grid 2^64 * 2; q, k fit */
    CHECK_STATUS(qkv_attention_probs(NULL, &d, f, f, f), QKV_ERR_INVALID_ARG);
    CHECK(strstr(qkv_last_error(), "overflow") != NULL);
    d.dropout_p = 0.1f;
    CHECK_STATUS(qkv_attention_forward(NULL, &d, f, f, f, f, NULL), QKV_ERR_INVALID_ARG);
    CHECK(strstr(qkv_last_error(), "overflow") != NULL);

    /* NULL pointers */
    d = ok;
    CHECK_STATUS(qkv_attention_forward(NULL, NULL, f, f, f, f, f), QKV_ERR_INVALID_ARG);
    CHECK(strstr(qkv_last_error(), "desc") != NULL);
    CHECK_STATUS(qkv_attention_backward(NULL, NULL, f, f, f, f, f, f, f, f, f),
                 QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_attention_probs(NULL, NULL, f, f, f), QKV_ERR_INVALID_ARG);
    const char *fwd_names[4] = {"q", "k", "v", "out"};
    for (int t = 0; t < 4; t++) {
        const float *a[4] = {f, f, f, f};
        a[t] = NULL;
        CHECK_STATUS(qkv_attention_forward(NULL, &d, a[0], a[1], a[2], (float *)a[3], NULL),
                     QKV_ERR_INVALID_ARG);
        char want[32];
        snprintf(want, sizeof want, ": %s is NULL", fwd_names[t]);
        CHECK_MSG(strstr(qkv_last_error(), want) != NULL, "%s", qkv_last_error());
    }
    CHECK_OK(qkv_attention_forward(NULL, &d, f, f, f, f, NULL)); /* lse may be NULL */
    const char *bwd_names[9] = {"q", "k", "v", "out", "lse", "dout", "dq", "dk", "dv"};
    for (int t = 0; t < 9; t++) {
        float *a[9];
        for (int u = 0; u < 9; u++) a[u] = f;
        a[t] = NULL;
        CHECK_STATUS(
            qkv_attention_backward(NULL, &d, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8]),
            QKV_ERR_INVALID_ARG);
        char want[32];
        snprintf(want, sizeof want, ": %s is NULL", bwd_names[t]);
        CHECK_MSG(strstr(qkv_last_error(), want) != NULL, "%s", qkv_last_error());
    }
    CHECK_STATUS(qkv_attention_probs(NULL, &d, f, f, NULL), QKV_ERR_INVALID_ARG);
    CHECK(strstr(qkv_last_error(), ": p is NULL") != NULL);
    CHECK_STATUS(qkv_attention_probs(NULL, &d, NULL, f, f), QKV_ERR_INVALID_ARG);
    CHECK(strstr(qkv_last_error(), ": q is NULL") != NULL);

    /* edge values that are valid */
    d = ok;
    d.window_left = d.window_right = INT64_MAX; /* a window wider than everything */
    d.dropout_p = 0.999f;
    d.scale = -0.5f;
    static const int32_t lens0[1] = {0};
    d.kv_lens = lens0;
    CHECK_OK(qkv_attention_forward(NULL, &d, f, f, f, f, f));
    CHECK_OK(qkv_attention_backward(NULL, &d, f, f, f, f, f, f, f, f, f));
    CHECK_OK(qkv_attention_probs(NULL, &d, f, f, f));
}

/* ---------------------------------------------------------------- allocation failure */

static int fail_after_;
static void *failing_alloc(size_t size, size_t align, void *user) {
    (void)user;
    if (fail_after_-- <= 0) return NULL;
    return aligned_alloc(align, (size + align - 1) / align * align);
}
static void plain_free(void *p, void *user) {
    (void)user;
    free(p);
}

static void test_alloc_failure(void) {
    qkv_attention_desc d = base_desc(1, 3, 3, 2, 2, 2);
    float q[12] = {0}, out[12], lse[6], p[18];
    qkv_runtime *rt = NULL;
    CHECK_OK(qkv_runtime_create(2, &rt));
    qkv_allocator a = {failing_alloc, plain_free, NULL};
    qkv_set_allocator(&a);
    fail_after_ = 0;
    CHECK_STATUS(qkv_attention_forward(rt, &d, q, q, q, out, lse), QKV_ERR_NOMEM);
    CHECK(strstr(qkv_last_error(), "qkv_attention_forward") != NULL);
    fail_after_ = 0;
    CHECK_STATUS(qkv_attention_backward(rt, &d, q, q, q, out, lse, q, out, out, out),
                 QKV_ERR_NOMEM);
    fail_after_ = 0;
    CHECK_STATUS(qkv_attention_probs(rt, &d, q, q, p), QKV_ERR_NOMEM);
    fail_after_ = 1000;
    CHECK_OK(qkv_attention_forward(rt, &d, q, q, q, out, lse));
    qkv_set_allocator(NULL);
    qkv_runtime_free(rt);
}

int main(void) {
    test_huge_logits();
    test_small_sizes();
    test_thread_independence();
    test_big_grid();
    test_probs();
    test_ranges();
    test_validation();
    test_alloc_failure();
    return test_finish("attention_edge");
}
