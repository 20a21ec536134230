/* test_nn_edge.c — edge cases of the src/nn layers: sizes of 1, huge logits (±1e4, ±1e30) and
 * masked (-inf) rows in softmax / log-softmax / cross-entropy, invalid arguments (status
 * QKV_ERR_INVALID_ARG, a message naming the argument, outputs untouched), results that do not
 * depend on the thread count, and allocation failures in the backwards that allocate. */
#include "nn/block_ref.h"
#include "nn/nn_ref.h"
#include "nn/positional_ref.h"
#include "nn_testutil.h"

/* ---------------------------------------------------------------- sizes of 1 */

static void test_size_one(void) {
    float x = 3.5f, y = -1, w = 2.0f, b = 0.25f, mean = 0, rstd = 0, dx = 0, dw = 0, db = 0;
    float dy = 1.5f;
    /* LayerNorm of one channel: x̂ = 0, so out = bias and no gradient reaches x */
    CHECK_OK(qkv_nn_layernorm_forward_ref(NULL, &y, &mean, &rstd, &x, &w, &b, 1, 1, 1e-5f));
    CHECK(y == b);
    CHECK_OK(qkv_nn_layernorm_backward_ref(NULL, &dx, &dw, &db, &dy, &x, &w, &mean, &rstd, 1, 1));
    CHECK(dx == 0 && dw == 0 && db == dy);
    /* softmax of one logit is 1, log-softmax 0, for any value */
    const float vals[] = {0.0f, 1e30f, -1e30f, 7.0f};
    for (int i = 0; i < 4; i++) {
        CHECK_OK(qkv_nn_softmax_forward_ref(NULL, &y, &vals[i], 1, 1));
        CHECK(y == 1.0f);
        CHECK_OK(qkv_nn_log_softmax_forward_ref(NULL, &y, &vals[i], 1, 1));
        CHECK(y == 0.0f);
    }
    /* cross-entropy with one class: loss 0, gradient 0 (with or without smoothing) */
    int32_t t = 0;
    float loss = -1, dl = 0;
    CHECK_OK(qkv_nn_cross_entropy_forward_ref(NULL, &loss, NULL, &x, &t, 1, 1, -100, 0.3f));
    CHECK(loss == 0.0f);
    CHECK_OK(qkv_nn_cross_entropy_backward_ref(NULL, &dl, 1.0f, &x, &t, 1, 1, -100, 0.3f));
    CHECK(dl == 0.0f);
    /* ALiBi with one head: 2^-8 */
    float s = 0;
    CHECK_OK(qkv_nn_alibi_slopes(&s, 1));
    CHECK(s == 1.0f / 256.0f);
    /* linear 1x1x1 */
    CHECK_OK(qkv_nn_linear_forward_ref(NULL, &y, &x, &w, &b, 1, 1, 1));
    CHECK(y == 3.5f * 2.0f + 0.25f);
    /* RoPE at position 0 is the identity; sinusoidal at position 0 is (0, 1, 0, 1, ...) */
    float r[4] = {1, 2, 3, 4}, ro[4], pe[5];
    qkv_nn_rope rope = {QKV_NN_ROPE_HALF, 10000.0, 0};
    CHECK_OK(qkv_nn_rope_forward_ref(NULL, ro, r, &rope, 1, 1, 1, 4, 0));
    CHECK(memcmp(r, ro, sizeof r) == 0);
    CHECK_OK(qkv_nn_sinusoidal(pe, 1, 5, 0));
    CHECK(pe[0] == 0 && pe[1] == 1 && pe[2] == 0 && pe[3] == 1 && pe[4] == 0);
}

/* ---------------------------------------------------------------- huge logits, masked rows */

static void check_softmax_rows(const char *label, const float *x, int64_t N, int64_t V) {
    float *y = nt_alloc(N * V), *ly = nt_alloc(N * V), *dy = nt_rand(N * V, -1, 1);
    float *dx = nt_alloc(N * V), *dlx = nt_alloc(N * V);
    double *xd = nt_alloc_d(N * V), *yd = nt_alloc_d(N * V), *lyd = nt_alloc_d(N * V);
    for (int64_t i = 0; i < N * V; i++) xd[i] = x[i];
    ref_softmax(yd, xd, N, V, 0);
    ref_softmax(lyd, xd, N, V, 1);
    CHECK_OK(qkv_nn_softmax_forward_ref(NULL, y, x, N, V));
    CHECK_OK(qkv_nn_log_softmax_forward_ref(NULL, ly, x, N, V));
    CHECK_OK(qkv_nn_softmax_backward_ref(NULL, dx, dy, y, N, V));
    CHECK_OK(qkv_nn_log_softmax_backward_ref(NULL, dlx, dy, ly, N, V));
    double err = 0, lerr = 0;
    int finite = 1;
    for (int64_t i = 0; i < N * V; i++) {
        /* log-probabilities are -inf exactly where the logit is -inf */
        finite &= isfinite(y[i]) && isfinite(dx[i]) && isfinite(dlx[i]) &&
                  (x[i] == -INFINITY ? ly[i] == -INFINITY : isfinite(ly[i]));
        err = fmax(err, fabs(y[i] - yd[i]));
        lerr = fmax(lerr, fabs(ly[i] - lyd[i]) / fmax(fabs(lyd[i]), 1.0));
    }
    for (int64_t n = 0; n < N; n++) {
        double s = 0;
        for (int64_t v = 0; v < V; v++) s += y[n * V + v];
        CHECK_MSG(fabs(s - 1) < 1e-6, "%s: row %lld sums to %.9g", label, (long long)n, s);
    }
    printf("  %-28s softmax err %.2e  log_softmax rel err %.2e\n", label, err, lerr);
    CHECK_MSG(finite, "%s: non-finite output or gradient", label);
    CHECK_MSG(err < 1e-7, "%s: softmax error %g", label, err);
    CHECK_MSG(lerr < 1e-7, "%s: log-softmax error %g", label, lerr);
    free(y), free(ly), free(dy), free(dx), free(dlx), free(xd), free(yd), free(lyd);
}

static void check_cross_entropy(const char *label, const float *x, const int32_t *t, int64_t N,
                                int64_t V, float eps) {
    float loss = 0, *dl = nt_alloc(N * V);
    double *xd = nt_alloc_d(N * V);
    for (int64_t i = 0; i < N * V; i++) xd[i] = x[i];
    const double ref = ref_cross_entropy(xd, t, N, V, -100, eps);
    CHECK_OK(qkv_nn_cross_entropy_forward_ref(NULL, &loss, NULL, x, t, N, V, -100, eps));
    CHECK_OK(qkv_nn_cross_entropy_backward_ref(NULL, dl, 1.0f, x, t, N, V, -100, eps));
    int finite = isfinite(loss);
    double gsum = 0;
    for (int64_t i = 0; i < N * V; i++) finite &= isfinite(dl[i]), gsum += dl[i];
    printf("  %-28s loss %.9g (ref %.9g)\n", label, (double)loss, ref);
    CHECK_MSG(finite, "%s: non-finite loss or gradient", label);
    CHECK_MSG(fabs(loss - ref) <= 1e-6 * fmax(fabs(ref), 1), "%s: loss %.9g, expected %.9g", label,
              (double)loss, ref);
    CHECK_MSG(fabs(gsum) < 1e-5, "%s: gradient rows do not sum to 0 (%g)", label, gsum);
    free(dl), free(xd);
}

static void test_huge_logits(void) {
    const float big4[] = {1e4f, -1e4f, 0, 5e3f, 1e4f, /**/ -1e4f, -1e4f, -1e4f, -1e4f, -1e4f};
    check_softmax_rows("logits +-1e4", big4, 2, 5);
    const float big30[] = {1e30f,       -1e30f, 0,     1e30f,  3,
                           /**/ -1e30f, -1e30f, 1,     -1e30f, -1e30f,
                           /**/ 1e30f,  1e30f,  1e30f, 1e30f,  1e30f};
    check_softmax_rows("logits +-1e30", big30, 3, 5);
    const float masked[] = {-INFINITY, 2, -INFINITY, 0, 1};
    check_softmax_rows("some logits -inf", masked, 1, 5);

    /* a fully masked row: probabilities 0, log-probabilities -inf, gradient 0, no NaN */
    const float all_inf[] = {-INFINITY, -INFINITY, -INFINITY, 1, 2, 3};
    float y[6], dx[6] = {0}, dy[6] = {1, 2, 3, 4, 5, 6};
    CHECK_OK(qkv_nn_softmax_forward_ref(NULL, y, all_inf, 2, 3));
    CHECK(y[0] == 0 && y[1] == 0 && y[2] == 0 && isfinite(y[3]));
    CHECK_OK(qkv_nn_softmax_backward_ref(NULL, dx, dy, y, 2, 3));
    CHECK(dx[0] == 0 && dx[1] == 0 && dx[2] == 0);
    CHECK_OK(qkv_nn_log_softmax_forward_ref(NULL, y, all_inf, 2, 3));
    CHECK(y[0] == -INFINITY && y[1] == -INFINITY && y[2] == -INFINITY && isfinite(y[3]));
    memset(dx, 0, sizeof dx);
    CHECK_OK(qkv_nn_log_softmax_backward_ref(NULL, dx, dy, y, 2, 3));
    CHECK(dx[0] == 0 && dx[1] == 0 && dx[2] == 0 && isfinite(dx[3]));

    const int32_t t4[] = {1, 0};
    check_cross_entropy("cross_entropy +-1e4", big4, t4, 2, 5, 0.0f);
    check_cross_entropy("cross_entropy +-1e4 ls0.1", big4, t4, 2, 5, 0.1f);
    const int32_t t30[] = {1, 2, 4};
    check_cross_entropy("cross_entropy +-1e30", big30, t30, 3, 5, 0.0f);
    check_cross_entropy("cross_entropy +-1e30 ls0.1", big30, t30, 3, 5, 0.1f);
    /* -inf logits (masked vocabulary) with the target elsewhere: finite without smoothing */
    const int32_t tm[] = {1};
    check_cross_entropy("cross_entropy -inf logits", masked, tm, 1, 5, 0.0f);

    /* every target ignored: loss 0 and no gradient (torch gives NaN) */
    const int32_t ign[] = {-100, -100};
    float loss = 1, dl[10] = {0};
    CHECK_OK(qkv_nn_cross_entropy_forward_ref(NULL, &loss, NULL, big4, ign, 2, 5, -100, 0.1f));
    CHECK(loss == 0.0f);
    CHECK_OK(qkv_nn_cross_entropy_backward_ref(NULL, dl, 1.0f, big4, ign, 2, 5, -100, 0.1f));
    for (int i = 0; i < 10; i++) CHECK(dl[i] == 0.0f);
}

/* ---------------------------------------------------------------- invalid arguments */

/* expr must fail with INVALID_ARG and a message containing `name` */
#define CHECK_INVALID(expr, name)                                                                  \
    do {                                                                                           \
        qkv_clear_error();                                                                         \
        CHECK_STATUS(expr, QKV_ERR_INVALID_ARG);                                                   \
        CHECK_MSG(strstr(qkv_last_error(), name) != NULL, "message \"%s\" does not name %s",       \
                  qkv_last_error(), name);                                                         \
    } while (0)

static void test_invalid(void) {
    float a[64], b[64], c[64], d[64];
    for (int i = 0; i < 64; i++) a[i] = b[i] = c[i] = d[i] = 0.5f;
    float sentinel[64];
    for (int i = 0; i < 64; i++) sentinel[i] = 42.0f;
    float out[64];
    memcpy(out, sentinel, sizeof out);

    /* linear */
    CHECK_INVALID(qkv_nn_linear_forward_ref(NULL, NULL, a, b, c, 2, 2, 2), "out");
    CHECK_INVALID(qkv_nn_linear_forward_ref(NULL, out, a, NULL, c, 2, 2, 2), "weight");
    CHECK_INVALID(qkv_nn_linear_forward_ref(NULL, out, a, b, c, 0, 2, 2), "N");
    CHECK_INVALID(qkv_nn_linear_forward_ref(NULL, out, a, b, c, 2, -1, 2), "C");
    CHECK_INVALID(qkv_nn_linear_forward_ref(NULL, out, a, b, c, INT64_MAX / 2, 4, 2), "overflows");
    CHECK_INVALID(qkv_nn_linear_backward_ref(NULL, out, NULL, NULL, NULL, a, b, 2, 2, 2), "dout");
    CHECK_INVALID(qkv_nn_linear_backward_ref(NULL, NULL, out, NULL, a, NULL, b, 2, 2, 2), "inp");
    CHECK(memcmp(out, sentinel, sizeof out) == 0);

    /* embedding: ids out of range, outputs untouched */
    int32_t ids[4] = {0, 1, -1, 2};
    CHECK_INVALID(qkv_nn_embedding_forward_ref(out, ids, a, 4, 3, 2), "ids[2]");
    ids[2] = 3;
    CHECK_INVALID(qkv_nn_embedding_forward_ref(out, ids, a, 4, 3, 2), "ids[2]");
    CHECK_INVALID(qkv_nn_embedding_backward_ref(NULL, out, a, ids, 4, 3, 2), "ids[2]");
    CHECK_INVALID(qkv_nn_embedding_forward_ref(out, ids, a, 4, 0, 2), "V");
    CHECK(memcmp(out, sentinel, sizeof out) == 0);

    /* norms */
    CHECK_INVALID(qkv_nn_layernorm_forward_ref(NULL, out, b, c, a, NULL, NULL, 2, 2, -1.0f), "eps");
    CHECK_INVALID(qkv_nn_layernorm_forward_ref(NULL, out, b, c, a, NULL, NULL, 2, 2, NAN), "eps");
    CHECK_INVALID(qkv_nn_layernorm_backward_ref(NULL, out, NULL, NULL, a, a, NULL, NULL, c, 2, 2),
                  "mean");
    CHECK_INVALID(qkv_nn_rmsnorm_forward_ref(NULL, out, b, NULL, NULL, 2, 2, 1e-6f), "inp");
    CHECK_INVALID(qkv_nn_rmsnorm_backward_ref(NULL, out, NULL, a, a, NULL, NULL, 2, 2), "rrms");
    CHECK(memcmp(out, sentinel, sizeof out) == 0);

    /* pointwise */
    CHECK_INVALID(qkv_nn_act_forward_ref(NULL, (qkv_act)99, out, a, 4), "act");
    CHECK_INVALID(qkv_nn_gelu_forward_ref(NULL, out, a, 0, 0), "n");
    CHECK_INVALID(qkv_nn_dropout_forward_ref(NULL, out, a, 4, 1.0f, 1, 1), "p");
    CHECK_INVALID(qkv_nn_dropout_forward_ref(NULL, out, a, 4, -0.1f, 1, 1), "p");
    CHECK_INVALID(qkv_nn_dropout_backward_ref(NULL, out, a, 4, NAN, 1, 1), "p");
    CHECK_INVALID(qkv_nn_residual_forward_ref(NULL, out, a, NULL, 4), "b");
    CHECK_INVALID(qkv_nn_residual_backward_ref(NULL, out, out, a, 4), "da and db");
    CHECK(memcmp(out, sentinel, sizeof out) == 0);

    /* softmax, cross-entropy */
    CHECK_INVALID(qkv_nn_softmax_forward_ref(NULL, out, a, 2, 0), "V");
    CHECK_INVALID(qkv_nn_log_softmax_backward_ref(NULL, out, NULL, a, 2, 2), "dout");
    int32_t t[3] = {0, 5, 1};
    float loss = 42.0f;
    CHECK_INVALID(qkv_nn_cross_entropy_forward_ref(NULL, &loss, NULL, a, t, 3, 5, -100, 0),
                  "targets[1]");
    t[1] = -100;
    CHECK_INVALID(qkv_nn_cross_entropy_forward_ref(NULL, &loss, NULL, a, t, 3, 5, -100, 1.5f),
                  "label_smoothing");
    CHECK_INVALID(qkv_nn_cross_entropy_backward_ref(NULL, out, 1, a, t, 3, 5, -100, NAN),
                  "label_smoothing");
    CHECK_INVALID(qkv_nn_cross_entropy_forward_ref(NULL, NULL, NULL, a, t, 3, 5, -100, 0), "loss");
    CHECK(loss == 42.0f);
    CHECK(memcmp(out, sentinel, sizeof out) == 0);

    /* positional */
    qkv_nn_rope rope = {QKV_NN_ROPE_HALF, 10000.0, 3};
    CHECK_INVALID(qkv_nn_rope_forward_ref(NULL, out, a, &rope, 1, 2, 2, 4, 0), "dims");
    rope.dims = 6;
    CHECK_INVALID(qkv_nn_rope_forward_ref(NULL, out, a, &rope, 1, 2, 2, 4, 0), "dims");
    rope.dims = 0, rope.theta = 0;
    CHECK_INVALID(qkv_nn_rope_forward_ref(NULL, out, a, &rope, 1, 2, 2, 4, 0), "theta");
    rope.theta = 10000.0, rope.style = (qkv_nn_rope_style)7;
    CHECK_INVALID(qkv_nn_rope_forward_ref(NULL, out, a, &rope, 1, 2, 2, 4, 0), "style");
    rope.style = QKV_NN_ROPE_INTERLEAVED;
    CHECK_INVALID(qkv_nn_rope_forward_ref(NULL, out, a, &rope, 1, 2, 2, 4, -1), "pos0");
    CHECK_INVALID(qkv_nn_rope_forward_ref(NULL, out, a, NULL, 1, 2, 2, 4, 0), "rope");
    CHECK_INVALID(qkv_nn_rope_backward_ref(NULL, out, out, &rope, 1, 2, 2, 4, 0), "dinp and dout");
    CHECK_INVALID(qkv_nn_sinusoidal(out, 0, 4, 0), "T");
    CHECK_INVALID(qkv_nn_position_add_forward_ref(NULL, out, a, b, 1, 4, 2, 5, 2), "pos0");
    CHECK_INVALID(qkv_nn_alibi_slopes(out, 0), "H");
    CHECK(memcmp(out, sentinel, sizeof out) == 0);

    /* attention module */
    qkv_nn_mha_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.C = 6, cfg.H = 4;
    int64_t n;
    CHECK_INVALID(qkv_nn_mha_acts_size(&cfg, 1, 2, 2, &n), "cfg->C");
    cfg.H = 3, cfg.H_kv = 2;
    CHECK_INVALID(qkv_nn_mha_acts_size(&cfg, 1, 2, 2, &n), "cfg->H_kv");
    cfg.H_kv = 0;
    CHECK_INVALID(qkv_nn_mha_acts_size(&cfg, 0, 2, 2, &n), "B");
    CHECK_INVALID(qkv_nn_mha_acts_size(NULL, 1, 2, 2, &n), "cfg");
    CHECK_OK(qkv_nn_mha_acts_size(&cfg, 1, 2, 3, &n));
    float *am = nt_alloc(n), *w = nt_rand(3 * 36 + 36, -1, 1);
    qkv_nn_mha_acts acts;
    CHECK_INVALID(qkv_nn_mha_acts_bind(&acts, &cfg, 1, 2, 3, NULL), "mem");
    CHECK_OK(qkv_nn_mha_acts_bind(&acts, &cfg, 1, 2, 3, am));
    qkv_nn_mha_params p;
    memset(&p, 0, sizeof p);
    p.w_q = w, p.w_k = w + 36, p.w_v = w + 72;
    float x[12], mem[24], y[12];
    nt_fill(x, 12, -1, 1);
    nt_fill(mem, 24, -1, 1);
    memcpy(y, sentinel, sizeof y);
    CHECK_INVALID(qkv_nn_mha_forward_ref(NULL, y, &acts, x, mem, &p, &cfg, NULL, 1, 2, 3), "w_o");
    p.w_o = w + 108;
    CHECK_INVALID(qkv_nn_mha_forward_ref(NULL, y, &acts, x, NULL, &p, &cfg, NULL, 1, 2, 3), "Tk");
    int32_t lens[1] = {4};
    qkv_nn_attn_mask mask = {.kv_lens = lens};
    CHECK_INVALID(qkv_nn_mha_forward_ref(NULL, y, &acts, x, mem, &p, &cfg, &mask, 1, 2, 3),
                  "kv_lens[0]");
    mask.kv_lens = NULL, mask.dropout_p = 1.0f;
    CHECK_INVALID(qkv_nn_mha_forward_ref(NULL, y, &acts, x, mem, &p, &cfg, &mask, 1, 2, 3),
                  "dropout_p");
    cfg.fused_qkv = 1, cfg.C_kv = 4;
    p.w_qkv = w;
    CHECK_INVALID(qkv_nn_mha_forward_ref(NULL, y, &acts, x, mem, &p, &cfg, NULL, 1, 2, 3),
                  "fused_qkv");
    cfg.fused_qkv = 0, cfg.C_kv = 0;
    CHECK(memcmp(y, sentinel, sizeof y) == 0);
    CHECK_OK(qkv_nn_mha_forward_ref(NULL, y, &acts, x, mem, &p, &cfg, NULL, 1, 2, 3));
    CHECK_INVALID(
        qkv_nn_mha_backward_ref(NULL, NULL, mem, NULL, y, x, NULL, &acts, &p, &cfg, NULL, 1, 2, 2),
        "dmem");
    free(am), free(w);

    /* block */
    qkv_nn_block_config bc;
    memset(&bc, 0, sizeof bc);
    bc.attn.C = 4, bc.attn.H = 2, bc.F = 8, bc.eps = 1e-5f, bc.order = (qkv_nn_norm_order)5;
    CHECK_INVALID(qkv_nn_block_acts_size(&bc, 1, 2, &n), "order");
    bc.order = QKV_NN_PRE_LN, bc.F = 0;
    CHECK_INVALID(qkv_nn_block_acts_size(&bc, 1, 2, &n), "cfg->F");
    bc.F = 8, bc.attn.C_kv = 3;
    CHECK_INVALID(qkv_nn_block_acts_size(&bc, 1, 2, &n), "C_kv");
    bc.attn.C_kv = 0, bc.eps = -1;
    CHECK_INVALID(qkv_nn_block_acts_size(&bc, 1, 2, &n), "eps");
    CHECK_INVALID(qkv_nn_mlp_acts_size(4, 0, &n), "F");
}

/* ---------------------------------------------------------------- thread-count independence */

static void test_threads(void) {
    qkv_runtime *rt[3] = {NULL, NULL, NULL};
    for (int i = 0; i < 3; i++) CHECK_OK(qkv_runtime_create(i + 1, &rt[i]));
    const int64_t N = 301, C = 130, OC = 97, V = 50;
    float *x = nt_rand(N * C, -1, 1), *w = nt_rand(OC * C, -1, 1), *bias = nt_rand(OC, -1, 1);
    float *dy = nt_rand(N * OC, -1, 1), *lw = nt_rand(C, 0.5, 1.5), *lb = nt_rand(C, -1, 1);
    float *logits = nt_rand(N * V, -5, 5);
    int32_t *ids = malloc((size_t)N * sizeof(int32_t));
    for (int64_t i = 0; i < N; i++) ids[i] = (int32_t)((i * i) % V);
    float *res[3][10];
    for (int r = 0; r < 3; r++) {
        float **o = res[r];
        o[0] = nt_alloc(N * OC), o[1] = nt_alloc(N * C), o[2] = nt_alloc(OC * C);
        o[3] = nt_alloc(OC), o[4] = nt_alloc(N * C), o[5] = nt_alloc(N * C);
        o[6] = nt_alloc(2 * C + 2 * N), o[7] = nt_alloc(N * V), o[8] = nt_alloc(V * C);
        o[9] = nt_alloc(2);
        float *mean = o[6] + 2 * C, *rstd = mean + N;
        CHECK_OK(qkv_nn_linear_forward_ref(rt[r], o[0], x, w, bias, N, C, OC));
        CHECK_OK(qkv_nn_linear_backward_ref(rt[r], o[1], o[2], o[3], dy, x, w, N, C, OC));
        CHECK_OK(qkv_nn_layernorm_forward_ref(rt[r], o[4], mean, rstd, x, lw, lb, N, C, 1e-5f));
        CHECK_OK(qkv_nn_layernorm_backward_ref(rt[r], o[5], o[6], o[6] + C, o[4], x, lw, mean, rstd,
                                               N, C));
        CHECK_OK(
            qkv_nn_cross_entropy_forward_ref(rt[r], &o[9][0], NULL, logits, ids, N, V, -100, 0.1f));
        CHECK_OK(
            qkv_nn_cross_entropy_backward_ref(rt[r], o[7], 1.0f, logits, ids, N, V, -100, 0.1f));
        CHECK_OK(qkv_nn_embedding_backward_ref(rt[r], o[8], x, ids, N, V, C));
    }
    const int64_t sizes[10] = {N * OC, N * C,         OC * C, OC,    N * C,
                               N * C,  2 * C + 2 * N, N * V,  V * C, 2};
    int same = 1;
    for (int r = 1; r < 3; r++)
        for (int k = 0; k < 10; k++)
            same &= memcmp(res[0][k], res[r][k], (size_t)sizes[k] * sizeof(float)) == 0;
    CHECK_MSG(same, "results differ between 1, 2 and 3 threads");
    for (int r = 0; r < 3; r++) {
        for (int k = 0; k < 10; k++) free(res[r][k]);
        qkv_runtime_free(rt[r]);
    }
    free(x), free(w), free(bias), free(dy), free(lw), free(lb), free(logits), free(ids);
}

/* ---------------------------------------------------------------- out of memory */

static void test_nomem(void) {
    qkv_runtime *rt = NULL;
    CHECK_OK(qkv_runtime_create(1, &rt));
    qkv_nn_block_config bc;
    memset(&bc, 0, sizeof bc);
    bc.attn.C = 4, bc.attn.H = 2, bc.attn.fused_qkv = 1, bc.F = 8, bc.eps = 1e-5f;
    bc.order = QKV_NN_PRE_LN, bc.act = QKV_ACT_GELU_ERF;
    const int64_t B = 1, T = 3, C = 4, F = 8;
    int64_t n;
    CHECK_OK(qkv_nn_block_acts_size(&bc, B, T, &n));
    float *am = nt_alloc(n), *w = nt_rand(4096, -0.5, 0.5), *x = nt_rand(B * T * C, -1, 1);
    float *y = nt_alloc(B * T * C), *dx = nt_alloc(B * T * C);
    qkv_nn_block_acts acts;
    CHECK_OK(qkv_nn_block_acts_bind(&acts, &bc, B, T, am));
    qkv_nn_block_params p;
    memset(&p, 0, sizeof p);
    p.attn.w_qkv = w, p.attn.w_o = w + 3 * C * C;
    p.mlp.w_fc1 = w + 4 * C * C, p.mlp.w_fc2 = w + 4 * C * C + F * C;
    CHECK_OK(qkv_nn_block_forward_ref(rt, y, &acts, x, &p, &bc, NULL, B, T));

    const qkv_allocator fail = {nt_failing_alloc, nt_system_free, NULL};
    qkv_set_allocator(&fail);
    int32_t ids[3] = {0, 1, 0};
    float loss;
    CHECK_STATUS(qkv_nn_block_backward_ref(rt, dx, NULL, y, x, &acts, &p, &bc, NULL, B, T),
                 QKV_ERR_NOMEM);
    CHECK_STATUS(
        qkv_nn_mlp_backward_ref(rt, dx, NULL, y, x, &acts.mlp, &p.mlp, bc.act, B * T, C, F),
        QKV_ERR_NOMEM);
    CHECK_STATUS(qkv_nn_mha_backward_ref(rt, dx, NULL, NULL, y, acts.ln1, NULL, &acts.attn, &p.attn,
                                         &bc.attn, NULL, B, T, T),
                 QKV_ERR_NOMEM);
    CHECK_STATUS(qkv_nn_embedding_backward_ref(rt, dx, x, ids, 3, 2, C), QKV_ERR_NOMEM);
    CHECK_STATUS(qkv_nn_cross_entropy_forward_ref(rt, &loss, NULL, x, ids, 3, 4, -100, 0),
                 QKV_ERR_NOMEM);
    CHECK(strstr(qkv_last_error(), "out of memory") != NULL);
    qkv_set_allocator(NULL);
    CHECK_OK(qkv_nn_block_backward_ref(rt, dx, NULL, y, x, &acts, &p, &bc, NULL, B, T));
    free(am), free(w), free(x), free(y), free(dx);
    qkv_runtime_free(rt);
}

int main(void) {
    nt_seed(3);
    test_size_one();
    test_huge_logits();
    test_invalid();
    test_threads();
    test_nomem();
    return test_finish("nn_edge");
}
