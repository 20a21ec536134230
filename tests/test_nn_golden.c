/* test_nn_golden.c — every src/nn layer against PyTorch, from the safetensors files that
 * tools/gen_nn_golden.py writes into tests/fixtures/nn (PyTorch computes in float64 from
 * float32-representable inputs and stores float32; this test needs no Python).
 *
 * Tolerances (fp32):
 *   elementwise ops (activations, residual, RoPE, sinusoidal, position add, ALiBi, embedding
 *   lookup, softmax / log-softmax outputs): per element |got - ref| <= 1e-5 · |ref|, where
 *   elements smaller than 1e-3 · max|ref| are held to 1e-5 · 1e-3 · max|ref| instead;
 *   reductions (linear, norms, gradients that sum over rows or a softmax row, cross-entropy,
 *   attention, MLP, blocks): max|got - ref| <= 1e-4 · max|ref| (normwise).
 * The maximum error of each op is printed. */
#include "nn/block_ref.h"
#include "nn/nn_ref.h"
#include "nn/positional_ref.h"
#include "qkv.h"
#include "test.h"

#include <stdint.h>

#define TOL_ELEM 1e-5
#define TOL_RED 1e-4
#define TOL_ZERO 1e-6

/* ZERO: a gradient that is exactly zero in exact arithmetic (the key bias: adding q·b_k to every
 * score of a row leaves the softmax unchanged), so only float noise is left to compare:
 * max|got - ref| <= 1e-6 absolute. */
typedef enum { ELEM, RED, ZERO } kind;

/* ---------------------------------------------------------------- fixtures */

typedef struct {
    const char *name;
    qkv_safetensors *st;
} fixture;

static int fx_open(fixture *f, const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/fixtures/nn/%s.safetensors", QKV_SOURCE_DIR, name);
    f->name = name;
    f->st = NULL;
    qkv_status s = qkv_safetensors_open(path, &f->st);
    CHECK_MSG(s == QKV_OK, "cannot open %s: %s", path, qkv_last_error());
    return s == QKV_OK;
}

static void fx_close(fixture *f) { qkv_safetensors_close(f->st); }

/* A float32 copy (aligned, owned by the caller) of tensor `t`; NULL if absent. */
static float *fx_f32(fixture *f, const char *t, int64_t *n) {
    const qkv_st_tensor *e = qkv_safetensors_find(f->st, t);
    if (!e) return NULL;
    CHECK_MSG(e->dtype == QKV_DTYPE_F32, "%s/%s: dtype %d", f->name, t, (int)e->dtype);
    float *p = malloc(e->nbytes ? e->nbytes : 4);
    memcpy(p, e->data, e->nbytes);
    if (n) *n = (int64_t)(e->nbytes / sizeof(float));
    return p;
}

/* like fx_f32 but the tensor must exist */
static float *fx_req(fixture *f, const char *t, int64_t *n) {
    float *p = fx_f32(f, t, n);
    CHECK_MSG(p != NULL, "%s: no tensor %s", f->name, t);
    if (!p) {
        p = calloc(1, sizeof(float));
        if (n) *n = 0;
    }
    return p;
}

/* an I64 tensor converted to int32 */
static int32_t *fx_i32(fixture *f, const char *t, int64_t *n) {
    const qkv_st_tensor *e = qkv_safetensors_find(f->st, t);
    if (!e) return NULL;
    CHECK(e->dtype == QKV_DTYPE_I64);
    int64_t k = (int64_t)(e->nbytes / 8);
    int32_t *p = malloc((size_t)(k ? k : 1) * sizeof(int32_t));
    for (int64_t i = 0; i < k; i++) {
        int64_t v;
        memcpy(&v, (const char *)e->data + 8 * i, 8);
        p[i] = (int32_t)v;
    }
    if (n) *n = k;
    return p;
}

static int64_t fx_dim(fixture *f, const char *t, int i) {
    const qkv_st_tensor *e = qkv_safetensors_find(f->st, t);
    if (!e) return 0;
    return i < 0 ? e->shape[e->ndim + i] : e->shape[i];
}

static double fx_meta(fixture *f, const char *key, double dflt) {
    const char *v = qkv_safetensors_metadata_get(f->st, key);
    return v ? strtod(v, NULL) : dflt;
}

/* ---------------------------------------------------------------- comparison */

#define MAX_OPS 64
static struct {
    char op[48];
    double err;
    kind k;
} summary[MAX_OPS];
static int n_summary;

static void note(const char *op, double err, kind k) {
    for (int i = 0; i < n_summary; i++)
        if (!strcmp(summary[i].op, op) && summary[i].k == k) {
            if (err > summary[i].err) summary[i].err = err;
            return;
        }
    if (n_summary < MAX_OPS) {
        snprintf(summary[n_summary].op, sizeof summary[n_summary].op, "%s", op);
        summary[n_summary].err = err;
        summary[n_summary].k = k;
        n_summary++;
    }
}

static const char *kind_name(kind k) { return k == ELEM ? "elem" : k == RED ? "norm" : "abs "; }

/* Compares got with ref by the rule of kind k; records and returns the error. */
static double cmp(const char *op, const char *what, const float *got, const float *ref, int64_t n,
                  kind k) {
    double maxref = 0, err = 0;
    for (int64_t i = 0; i < n; i++) maxref = fmax(maxref, fabs((double)ref[i]));
    if (maxref == 0) maxref = 1e-30;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)ref[i]);
        if (!(d == d)) d = INFINITY; /* NaN */
        double e = k == ELEM  ? d / fmax(fabs((double)ref[i]), 1e-3 * maxref)
                   : k == RED ? d / maxref
                              : d;
        err = fmax(err, e);
    }
    double tol = k == ELEM ? TOL_ELEM : k == RED ? TOL_RED : TOL_ZERO;
    CHECK_MSG(err <= tol, "%s %s: error %.3g > %.3g", op, what, err, tol);
    printf("  %-24s %-10s %s err %.2e\n", op, what, kind_name(k), err);
    note(op, err, k);
    return err;
}

/* ---------------------------------------------------------------- layers */

static void golden_linear(const char *name) {
    fixture f;
    if (!fx_open(&f, name)) return;
    int64_t nx, nw, nout;
    float *x = fx_req(&f, "x", &nx), *w = fx_req(&f, "weight", &nw), *b = fx_f32(&f, "bias", NULL);
    float *out = fx_req(&f, "out", &nout), *dout = fx_req(&f, "dout", NULL);
    float *dx_ref = fx_req(&f, "dx", NULL), *dw_ref = fx_req(&f, "dweight", NULL);
    float *db_ref = fx_f32(&f, "dbias", NULL);
    const int64_t C = fx_dim(&f, "x", -1), OC = fx_dim(&f, "weight", 0), N = nx / C;
    float *y = calloc((size_t)nout, 4), *dx = calloc((size_t)nx, 4), *dw = calloc((size_t)nw, 4);
    float *db = calloc((size_t)OC, 4);
    CHECK_OK(qkv_nn_linear_forward_ref(NULL, y, x, w, b, N, C, OC));
    CHECK_OK(qkv_nn_linear_backward_ref(NULL, dx, dw, b ? db : NULL, dout, x, w, N, C, OC));
    cmp(name, "out", y, out, nout, RED);
    cmp(name, "dx", dx, dx_ref, nx, RED);
    cmp(name, "dweight", dw, dw_ref, nw, RED);
    if (b) cmp(name, "dbias", db, db_ref, OC, RED);
    free(x), free(w), free(b), free(out), free(dout), free(dx_ref), free(dw_ref), free(db_ref);
    free(y), free(dx), free(dw), free(db);
    fx_close(&f);
}

static void golden_embedding(void) {
    fixture f;
    if (!fx_open(&f, "embedding")) return;
    int64_t nt, N, nout;
    float *table = fx_req(&f, "table", &nt), *out = fx_req(&f, "out", &nout);
    float *dout = fx_req(&f, "dout", NULL), *dt_ref = fx_req(&f, "dtable", NULL);
    int32_t *ids = fx_i32(&f, "ids", &N);
    const int64_t V = fx_dim(&f, "table", 0), C = fx_dim(&f, "table", 1);
    float *y = calloc((size_t)nout, 4), *dt = calloc((size_t)nt, 4);
    CHECK_OK(qkv_nn_embedding_forward_ref(y, ids, table, N, V, C));
    CHECK_OK(qkv_nn_embedding_backward_ref(NULL, dt, dout, ids, N, V, C));
    cmp("embedding", "out", y, out, nout, ELEM);
    cmp("embedding", "dtable", dt, dt_ref, nt, RED);
    free(table), free(out), free(dout), free(dt_ref), free(ids), free(y), free(dt);
    fx_close(&f);
}

static void golden_norm(const char *name, int rms) {
    fixture f;
    if (!fx_open(&f, name)) return;
    int64_t nx;
    float *x = fx_req(&f, "x", &nx), *w = fx_req(&f, "weight", NULL);
    float *b = rms ? NULL : fx_req(&f, "bias", NULL);
    float *out = fx_req(&f, "out", NULL), *dout = fx_req(&f, "dout", NULL);
    float *dx_ref = fx_req(&f, "dx", NULL), *dw_ref = fx_req(&f, "dweight", NULL);
    float *db_ref = rms ? NULL : fx_req(&f, "dbias", NULL);
    const float eps = (float)fx_meta(&f, "eps", -1);
    CHECK(eps > 0);
    const int64_t C = fx_dim(&f, "x", -1), N = nx / C;
    float *y = calloc((size_t)nx, 4), *dx = calloc((size_t)nx, 4), *dw = calloc((size_t)C, 4);
    float *db = calloc((size_t)C, 4), *mean = calloc((size_t)N, 4), *rstd = calloc((size_t)N, 4);
    if (rms) {
        CHECK_OK(qkv_nn_rmsnorm_forward_ref(NULL, y, rstd, x, w, N, C, eps));
        CHECK_OK(qkv_nn_rmsnorm_backward_ref(NULL, dx, dw, dout, x, w, rstd, N, C));
    } else {
        CHECK_OK(qkv_nn_layernorm_forward_ref(NULL, y, mean, rstd, x, w, b, N, C, eps));
        CHECK_OK(qkv_nn_layernorm_backward_ref(NULL, dx, dw, db, dout, x, w, mean, rstd, N, C));
    }
    cmp(name, "out", y, out, nx, RED);
    cmp(name, "dx", dx, dx_ref, nx, RED);
    cmp(name, "dweight", dw, dw_ref, C, RED);
    if (!rms) cmp(name, "dbias", db, db_ref, C, RED);
    free(x), free(w), free(b), free(out), free(dout), free(dx_ref), free(dw_ref), free(db_ref);
    free(y), free(dx), free(dw), free(db), free(mean), free(rstd);
    fx_close(&f);
}

static void golden_pointwise(void) {
    fixture f;
    if (!fx_open(&f, "pointwise")) return;
    int64_t n;
    float *x = fx_req(&f, "x", &n), *dout = fx_req(&f, "dout", NULL);
    float *y = calloc((size_t)n, 4), *dx = calloc((size_t)n, 4);
    static const struct {
        const char *name;
        qkv_act act;
    } acts[] = {{"gelu", QKV_ACT_GELU_ERF},
                {"gelu_tanh", QKV_ACT_GELU_TANH},
                {"relu", QKV_ACT_RELU},
                {"silu", QKV_ACT_SILU}};
    for (int a = 0; a < 4; a++) {
        char key[64];
        snprintf(key, sizeof key, "%s.out", acts[a].name);
        float *out = fx_req(&f, key, NULL);
        snprintf(key, sizeof key, "%s.dx", acts[a].name);
        float *dx_ref = fx_req(&f, key, NULL);
        memset(dx, 0, (size_t)n * 4);
        CHECK_OK(qkv_nn_act_forward_ref(NULL, acts[a].act, y, x, n));
        CHECK_OK(qkv_nn_act_backward_ref(NULL, acts[a].act, dx, dout, x, n));
        cmp(acts[a].name, "out", y, out, n, ELEM);
        cmp(acts[a].name, "dx", dx, dx_ref, n, ELEM);
        free(out), free(dx_ref);
    }
    int64_t m;
    float *a = fx_req(&f, "add.a", &m), *b = fx_req(&f, "add.b", NULL);
    float *out = fx_req(&f, "add.out", NULL), *dya = fx_req(&f, "add.dout", NULL);
    float *da_ref = fx_req(&f, "add.da", NULL), *db_ref = fx_req(&f, "add.db", NULL);
    float *ra = calloc((size_t)m, 4), *rb = calloc((size_t)m, 4);
    CHECK_OK(qkv_nn_residual_forward_ref(NULL, y, a, b, m));
    CHECK_OK(qkv_nn_residual_backward_ref(NULL, ra, rb, dya, m));
    cmp("residual", "out", y, out, m, ELEM);
    cmp("residual", "da", ra, da_ref, m, ELEM);
    cmp("residual", "db", rb, db_ref, m, ELEM);
    free(a), free(b), free(out), free(dya), free(da_ref), free(db_ref), free(ra), free(rb);
    free(x), free(dout), free(y), free(dx);
    fx_close(&f);
}

static void golden_softmax(const char *name) {
    fixture f;
    if (!fx_open(&f, name)) return;
    int64_t n;
    float *x = fx_req(&f, "x", &n), *dout = fx_req(&f, "dout", NULL);
    const int64_t V = fx_dim(&f, "x", -1), N = n / V;
    float *y = calloc((size_t)n, 4), *dx = calloc((size_t)n, 4);
    for (int lg = 0; lg < 2; lg++) {
        const char *op = lg ? "log_softmax" : "softmax";
        char key[64], label[64];
        snprintf(key, sizeof key, "%s.out", op);
        float *out = fx_req(&f, key, NULL);
        snprintf(key, sizeof key, "%s.dx", op);
        float *dx_ref = fx_req(&f, key, NULL);
        memset(dx, 0, (size_t)n * 4);
        if (lg) {
            CHECK_OK(qkv_nn_log_softmax_forward_ref(NULL, y, x, N, V));
            CHECK_OK(qkv_nn_log_softmax_backward_ref(NULL, dx, dout, y, N, V));
        } else {
            CHECK_OK(qkv_nn_softmax_forward_ref(NULL, y, x, N, V));
            CHECK_OK(qkv_nn_softmax_backward_ref(NULL, dx, dout, y, N, V));
        }
        snprintf(label, sizeof label, "%s V%lld", op, (long long)V);
        cmp(label, "out", y, out, n, ELEM);
        cmp(label, "dx", dx, dx_ref, n, RED);
        free(out), free(dx_ref);
    }
    free(x), free(dout), free(y), free(dx);
    fx_close(&f);
}

static void golden_cross_entropy(const char *name) {
    fixture f;
    if (!fx_open(&f, name)) return;
    int64_t n, N;
    float *logits = fx_req(&f, "logits", &n);
    int32_t *targets = fx_i32(&f, "targets", &N);
    const int64_t V = fx_dim(&f, "logits", -1);
    const int32_t ignore = (int32_t)fx_meta(&f, "ignore_index", 0);
    const float dloss = (float)fx_meta(&f, "dloss", 1);
    const char *ls = qkv_safetensors_metadata_get(f.st, "label_smoothing");
    CHECK(ls != NULL);
    float *dl = calloc((size_t)n, 4);
    for (int k = 0; k < 2 && ls; k++) {
        char key[32];
        const float eps = (float)strtod(k ? strchr(ls, ',') + 1 : ls, NULL);
        snprintf(key, sizeof key, "loss%d", k);
        float *loss_ref = fx_req(&f, key, NULL);
        snprintf(key, sizeof key, "dlogits%d", k);
        float *dl_ref = fx_req(&f, key, NULL);
        float loss = 0;
        memset(dl, 0, (size_t)n * 4);
        CHECK_OK(qkv_nn_cross_entropy_forward_ref(NULL, &loss, NULL, logits, targets, N, V, ignore,
                                                  eps));
        CHECK_OK(
            qkv_nn_cross_entropy_backward_ref(NULL, dl, dloss, logits, targets, N, V, ignore, eps));
        char label[64];
        snprintf(label, sizeof label, "cross_entropy V%lld", (long long)V);
        cmp(label, k ? "loss ls" : "loss", &loss, loss_ref, 1, RED);
        cmp(label, k ? "dlogits ls" : "dlogits", dl, dl_ref, n, RED);
        free(loss_ref), free(dl_ref);
    }
    free(logits), free(targets), free(dl);
    fx_close(&f);
}

/* ---------------------------------------------------------------- attention, MLP, block */

static void golden_mha(const char *name) {
    fixture f;
    if (!fx_open(&f, name)) return;
    qkv_nn_mha_config cfg;
    memset(&cfg, 0, sizeof cfg);
    const int cross = qkv_safetensors_find(f.st, "mem") != NULL;
    const int64_t B = fx_dim(&f, "x", 0), Tq = fx_dim(&f, "x", 1), C = fx_dim(&f, "x", 2);
    const int64_t Tk = cross ? fx_dim(&f, "mem", 1) : Tq;
    cfg.C = C;
    cfg.C_kv = cross ? fx_dim(&f, "mem", 2) : 0;
    cfg.H = (int64_t)fx_meta(&f, "heads", 0);
    cfg.fused_qkv = (int)fx_meta(&f, "fused", 0);
    qkv_nn_attn_mask mask;
    memset(&mask, 0, sizeof mask);
    mask.causal = (int)fx_meta(&f, "causal", 0);
    mask.kv_lens = fx_i32(&f, "kv_lens", NULL);
    float slopes[64];
    if (fx_meta(&f, "alibi", 0) != 0) {
        CHECK_OK(qkv_nn_alibi_slopes(slopes, cfg.H));
        mask.alibi_slopes = slopes;
    }
    static const char *pn[] = {"w_q", "b_q",   "w_k",   "b_k", "w_v",
                               "b_v", "w_qkv", "b_qkv", "w_o", "b_o"};
    float *pv[10], *gv[10];
    int64_t pnum[10];
    for (int i = 0; i < 10; i++) {
        pv[i] = fx_f32(&f, pn[i], &pnum[i]);
        gv[i] = pv[i] ? calloc((size_t)pnum[i], 4) : NULL;
    }
    qkv_nn_mha_params w = {pv[0], pv[1], pv[2], pv[3], pv[4], pv[5], pv[6], pv[7], pv[8], pv[9]};
    qkv_nn_mha_grads g = {gv[0], gv[1], gv[2], gv[3], gv[4], gv[5], gv[6], gv[7], gv[8], gv[9]};
    int64_t nx, nm = 0, nout, na;
    float *x = fx_req(&f, "x", &nx), *mem = cross ? fx_req(&f, "mem", &nm) : NULL;
    float *out = fx_req(&f, "out", &nout), *dout = fx_req(&f, "dout", NULL);
    float *y = calloc((size_t)nout, 4), *dx = calloc((size_t)nx, 4);
    float *dmem = cross ? calloc((size_t)nm, 4) : NULL;
    CHECK_OK(qkv_nn_mha_acts_size(&cfg, B, Tq, Tk, &na));
    float *am = calloc((size_t)na, 4);
    qkv_nn_mha_acts acts;
    CHECK_OK(qkv_nn_mha_acts_bind(&acts, &cfg, B, Tq, Tk, am));
    CHECK_OK(qkv_nn_mha_forward_ref(NULL, y, &acts, x, mem, &w, &cfg, &mask, B, Tq, Tk));
    CHECK_OK(qkv_nn_mha_backward_ref(NULL, dx, dmem, &g, dout, x, mem, &acts, &w, &cfg, &mask, B,
                                     Tq, Tk));
    cmp(name, "out", y, out, nout, RED);
    float *ref = fx_req(&f, "dx", NULL);
    cmp(name, "dx", dx, ref, nx, RED);
    free(ref);
    if (cross) {
        ref = fx_req(&f, "dmem", NULL);
        cmp(name, "dmem", dmem, ref, nm, RED);
        free(ref);
    }
    for (int i = 0; i < 10; i++) {
        if (!pv[i]) continue;
        char key[16];
        snprintf(key, sizeof key, "d%s", pn[i]);
        ref = fx_req(&f, key, NULL);
        cmp(name, key, gv[i], ref, pnum[i], strcmp(key, "db_k") ? RED : ZERO);
        free(ref), free(pv[i]), free(gv[i]);
    }
    free((void *)mask.kv_lens), free(x), free(mem), free(out), free(dout), free(y), free(dx);
    free(dmem), free(am);
    fx_close(&f);
}

static void golden_mlp(const char *name, qkv_act act) {
    fixture f;
    if (!fx_open(&f, name)) return;
    int64_t nx, n1, n2, nb1, nb2;
    float *x = fx_req(&f, "x", &nx), *w1 = fx_req(&f, "w_fc1", &n1),
          *b1 = fx_req(&f, "b_fc1", &nb1);
    float *w2 = fx_req(&f, "w_fc2", &n2), *b2 = fx_req(&f, "b_fc2", &nb2);
    float *out = fx_req(&f, "out", NULL), *dout = fx_req(&f, "dout", NULL);
    const int64_t C = fx_dim(&f, "x", -1), N = nx / C, F = fx_dim(&f, "w_fc1", 0);
    float *y = calloc((size_t)nx, 4), *dx = calloc((size_t)nx, 4);
    float *g1 = calloc((size_t)n1, 4), *gb1 = calloc((size_t)nb1, 4);
    float *g2 = calloc((size_t)n2, 4), *gb2 = calloc((size_t)nb2, 4);
    int64_t na;
    CHECK_OK(qkv_nn_mlp_acts_size(N, F, &na));
    float *am = calloc((size_t)na, 4);
    qkv_nn_mlp_acts acts;
    CHECK_OK(qkv_nn_mlp_acts_bind(&acts, N, F, am));
    qkv_nn_mlp_params w = {w1, b1, w2, b2};
    qkv_nn_mlp_grads g = {g1, gb1, g2, gb2};
    CHECK_OK(qkv_nn_mlp_forward_ref(NULL, y, &acts, x, &w, act, N, C, F));
    CHECK_OK(qkv_nn_mlp_backward_ref(NULL, dx, &g, dout, x, &acts, &w, act, N, C, F));
    cmp(name, "out", y, out, nx, RED);
    static const char *gn[] = {"dx", "dw_fc1", "db_fc1", "dw_fc2", "db_fc2"};
    float *gs[] = {dx, g1, gb1, g2, gb2};
    int64_t gnum[] = {nx, n1, nb1, n2, nb2};
    for (int i = 0; i < 5; i++) {
        float *ref = fx_req(&f, gn[i], NULL);
        cmp(name, gn[i], gs[i], ref, gnum[i], RED);
        free(ref);
    }
    free(x), free(w1), free(b1), free(w2), free(b2), free(out), free(dout), free(y), free(dx);
    free(g1), free(gb1), free(g2), free(gb2), free(am);
    fx_close(&f);
}

static void golden_block(const char *name) {
    fixture f;
    if (!fx_open(&f, name)) return;
    qkv_nn_block_config cfg;
    memset(&cfg, 0, sizeof cfg);
    const int64_t B = fx_dim(&f, "x", 0), T = fx_dim(&f, "x", 1), C = fx_dim(&f, "x", 2);
    cfg.attn.C = C;
    cfg.attn.H = (int64_t)fx_meta(&f, "heads", 0);
    cfg.attn.fused_qkv = 1; /* torch's in_proj_weight */
    cfg.F = fx_dim(&f, "w_fc1", 0);
    cfg.eps = (float)fx_meta(&f, "eps", 0);
    cfg.order = fx_meta(&f, "pre_ln", 0) != 0 ? QKV_NN_PRE_LN : QKV_NN_POST_LN;
    cfg.act = QKV_ACT_GELU_ERF;
    qkv_nn_attn_mask mask;
    memset(&mask, 0, sizeof mask);
    mask.causal = (int)fx_meta(&f, "causal", 0);
    mask.kv_lens = fx_i32(&f, "kv_lens", NULL);

    static const char *pn[] = {"ln1_w", "ln1_b", "w_qkv", "b_qkv", "w_o",   "b_o",
                               "ln2_w", "ln2_b", "w_fc1", "b_fc1", "w_fc2", "b_fc2"};
    enum { NP = 12 };
    float *pv[NP], *gv[NP];
    int64_t pnum[NP];
    for (int i = 0; i < NP; i++) {
        pv[i] = fx_req(&f, pn[i], &pnum[i]);
        gv[i] = calloc((size_t)(pnum[i] ? pnum[i] : 1), 4);
    }
    qkv_nn_block_params w;
    memset(&w, 0, sizeof w);
    w.ln1_w = pv[0], w.ln1_b = pv[1], w.attn.w_qkv = pv[2], w.attn.b_qkv = pv[3];
    w.attn.w_o = pv[4], w.attn.b_o = pv[5], w.ln2_w = pv[6], w.ln2_b = pv[7];
    w.mlp.w_fc1 = pv[8], w.mlp.b_fc1 = pv[9], w.mlp.w_fc2 = pv[10], w.mlp.b_fc2 = pv[11];
    qkv_nn_block_grads g;
    memset(&g, 0, sizeof g);
    g.ln1_w = gv[0], g.ln1_b = gv[1], g.attn.w_qkv = gv[2], g.attn.b_qkv = gv[3];
    g.attn.w_o = gv[4], g.attn.b_o = gv[5], g.ln2_w = gv[6], g.ln2_b = gv[7];
    g.mlp.w_fc1 = gv[8], g.mlp.b_fc1 = gv[9], g.mlp.w_fc2 = gv[10], g.mlp.b_fc2 = gv[11];

    int64_t nx, na;
    float *x = fx_req(&f, "x", &nx), *out = fx_req(&f, "out", NULL);
    float *dout = fx_req(&f, "dout", NULL);
    float *y = calloc((size_t)nx, 4), *dx = calloc((size_t)nx, 4);
    CHECK_OK(qkv_nn_block_acts_size(&cfg, B, T, &na));
    float *am = calloc((size_t)na, 4);
    qkv_nn_block_acts acts;
    CHECK_OK(qkv_nn_block_acts_bind(&acts, &cfg, B, T, am));
    CHECK_OK(qkv_nn_block_forward_ref(NULL, y, &acts, x, &w, &cfg, &mask, B, T));
    CHECK_OK(qkv_nn_block_backward_ref(NULL, dx, &g, dout, x, &acts, &w, &cfg, &mask, B, T));
    cmp(name, "out", y, out, nx, RED);
    float *ref = fx_req(&f, "dx", NULL);
    cmp(name, "dx", dx, ref, nx, RED);
    free(ref);
    for (int i = 0; i < NP; i++) {
        char key[16];
        snprintf(key, sizeof key, "d%s", pn[i]);
        ref = fx_req(&f, key, NULL);
        cmp(name, key, gv[i], ref, pnum[i], RED);
        free(ref), free(pv[i]), free(gv[i]);
    }
    free((void *)mask.kv_lens), free(x), free(out), free(dout), free(y), free(dx), free(am);
    fx_close(&f);
}

/* ---------------------------------------------------------------- positional */

static void golden_sinusoidal(void) {
    fixture f;
    if (!fx_open(&f, "sinusoidal")) return;
    static const int64_t cases[][3] = {{50, 16, 0}, {9, 7, 3}};
    for (int c = 0; c < 2; c++) {
        char key[32];
        const int64_t T = cases[c][0], C = cases[c][1], pos0 = cases[c][2];
        snprintf(key, sizeof key, "pe_%lld_%lld_%lld", (long long)T, (long long)C, (long long)pos0);
        float *ref = fx_req(&f, key, NULL), *pe = calloc((size_t)(T * C), 4);
        CHECK_OK(qkv_nn_sinusoidal(pe, T, C, pos0));
        cmp("sinusoidal", key, pe, ref, T * C, ELEM);
        free(ref), free(pe);
    }
    fx_close(&f);
}

static void golden_rope(const char *name) {
    fixture f;
    if (!fx_open(&f, name)) return;
    int64_t n;
    float *x = fx_req(&f, "x", &n), *dout = fx_req(&f, "dout", NULL);
    const int64_t B = fx_dim(&f, "x", 0), T = fx_dim(&f, "x", 1), H = fx_dim(&f, "x", 2);
    const int64_t D = fx_dim(&f, "x", 3);
    qkv_nn_rope rope = {QKV_NN_ROPE_INTERLEAVED, fx_meta(&f, "theta", 0),
                        (int64_t)fx_meta(&f, "dims", 0)};
    const int64_t pos0 = (int64_t)fx_meta(&f, "pos0", 0);
    float *y = calloc((size_t)n, 4), *dx = calloc((size_t)n, 4);
    for (int s = 0; s < 2; s++) {
        const char *style = s ? "half" : "interleaved";
        char key[64], label[64];
        rope.style = s ? QKV_NN_ROPE_HALF : QKV_NN_ROPE_INTERLEAVED;
        snprintf(key, sizeof key, "%s.out", style);
        float *out = fx_req(&f, key, NULL);
        snprintf(key, sizeof key, "%s.dx", style);
        float *dx_ref = fx_req(&f, key, NULL);
        memset(dx, 0, (size_t)n * 4);
        CHECK_OK(qkv_nn_rope_forward_ref(NULL, y, x, &rope, B, T, H, D, pos0));
        CHECK_OK(qkv_nn_rope_backward_ref(NULL, dx, dout, &rope, B, T, H, D, pos0));
        snprintf(label, sizeof label, "%s %s", name, style);
        cmp(label, "out", y, out, n, ELEM);
        cmp(label, "dx", dx, dx_ref, n, ELEM);
        free(out), free(dx_ref);
    }
    free(x), free(dout), free(y), free(dx);
    fx_close(&f);
}

static void golden_position_add(void) {
    fixture f;
    if (!fx_open(&f, "position_add")) return;
    int64_t n, np;
    float *x = fx_req(&f, "x", &n), *pe = fx_req(&f, "pe", &np), *out = fx_req(&f, "out", NULL);
    float *dout = fx_req(&f, "dout", NULL), *dx_ref = fx_req(&f, "dx", NULL);
    float *dpe_ref = fx_req(&f, "dpe", NULL);
    const int64_t B = fx_dim(&f, "x", 0), T = fx_dim(&f, "x", 1), C = fx_dim(&f, "x", 2);
    const int64_t P = fx_dim(&f, "pe", 0), pos0 = (int64_t)fx_meta(&f, "pos0", 0);
    float *y = calloc((size_t)n, 4), *dx = calloc((size_t)n, 4), *dpe = calloc((size_t)np, 4);
    CHECK_OK(qkv_nn_position_add_forward_ref(NULL, y, x, pe, B, T, C, P, pos0));
    CHECK_OK(qkv_nn_position_add_backward_ref(NULL, dx, dpe, dout, B, T, C, P, pos0));
    cmp("position_add", "out", y, out, n, ELEM);
    cmp("position_add", "dx", dx, dx_ref, n, ELEM);
    cmp("position_add", "dpe", dpe, dpe_ref, np, RED);
    free(x), free(pe), free(out), free(dout), free(dx_ref), free(dpe_ref), free(y), free(dx);
    free(dpe);
    fx_close(&f);
}

static void golden_alibi(void) {
    fixture f;
    if (!fx_open(&f, "alibi")) return;
    size_t count = qkv_safetensors_count(f.st);
    CHECK(count >= 10);
    for (size_t i = 0; i < count; i++) {
        const qkv_st_tensor *e = qkv_safetensors_tensor(f.st, i);
        const int64_t H = e->shape[0];
        float *ref = fx_req(&f, e->name, NULL), *s = calloc((size_t)H, 4);
        CHECK_OK(qkv_nn_alibi_slopes(s, H));
        cmp("alibi_slopes", e->name, s, ref, H, ELEM);
        free(ref), free(s);
    }
    fx_close(&f);
}

int main(void) {
    golden_linear("linear");
    golden_linear("linear_nobias");
    golden_linear("linear_long");
    golden_embedding();
    golden_norm("layernorm", 0);
    golden_norm("layernorm_long", 0);
    golden_norm("rmsnorm", 1);
    golden_norm("rmsnorm_long", 1);
    golden_pointwise();
    golden_softmax("softmax");
    golden_softmax("softmax_long");
    golden_cross_entropy("cross_entropy");
    golden_cross_entropy("cross_entropy_long");
    golden_mha("mha_self");
    golden_mha("mha_self_causal");
    golden_mha("mha_self_padding");
    golden_mha("mha_self_alibi");
    golden_mha("mha_cross");
    golden_mha("mha_cross_kdim");
    golden_mlp("mlp_gelu", QKV_ACT_GELU_ERF);
    golden_mlp("mlp_gelu_tanh", QKV_ACT_GELU_TANH);
    golden_block("block_post");
    golden_block("block_post_padding");
    golden_block("block_pre");
    golden_block("block_pre_causal");
    golden_sinusoidal();
    golden_rope("rope_full");
    golden_rope("rope_partial");
    golden_position_add();
    golden_alibi();

    printf("\nmax error per op (elem: per-element relative, tol %.0e; norm: normwise, tol %.0e; "
           "abs: absolute, tol %.0e)\n",
           TOL_ELEM, TOL_RED, TOL_ZERO);
    for (int i = 0; i < n_summary; i++)
        printf("  %-26s %s %.2e\n", summary[i].op, kind_name(summary[i].k), summary[i].err);
    return test_finish("nn_golden");
}
