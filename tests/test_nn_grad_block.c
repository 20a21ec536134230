/* test_nn_grad_block.c — finite-difference gradient checks of the composite src/nn modules:
 * multi-head attention (self and cross, separate and fused projections, GQA/MQA, RoPE in both
 * conventions, causal / kv_lens / ALiBi masks, attention dropout, no bias, fully masked rows),
 * the MLP with every activation, and the Transformer block in both orders.
 *
 * The double reference composes the independent reference forwards of nn_testutil.h (its own
 * attention included), so it checks the module's wiring, the attention API's backward as
 * called by the module, and the accumulate convention (x feeds Q, K and V; residual streams).
 * Tolerances: forward 1e-6 · max(|out|, 1), gradient 1e-5 · max(|g|, 1e-2) per variable (a
 * few float roundings of intermediate tensors, amplified by softmax and the norms; observed
 * errors are ~1e-7 to 1e-6). */
#include "attention/attention.h"
#include "core/rng.h"
#include "nn/block_ref.h"
#include "nn_testutil.h"

#define FWD_TOL 1e-6
#define GRAD_TOL 1e-5

/* ---------------------------------------------------------------- MHA variables */

/* Variable indices of one attention module's parameters (-1: absent). */
typedef struct {
    int w_q, b_q, w_k, b_k, w_v, b_v, w_qkv, b_qkv, w_o, b_o;
} mha_idx;

typedef struct {
    int64_t C, Ckv, H, Hk, D, Q, K;
} mdims;

static mdims dims_of(const qkv_nn_mha_config *cfg) {
    mdims m;
    m.C = cfg->C;
    m.Ckv = cfg->C_kv ? cfg->C_kv : cfg->C;
    m.H = cfg->H;
    m.Hk = cfg->H_kv ? cfg->H_kv : cfg->H;
    m.D = cfg->D ? cfg->D : cfg->C / cfg->H;
    m.Q = m.H * m.D;
    m.K = m.Hk * m.D;
    return m;
}

static void add_var(nn_prob *p, const char *name, int64_t n, double lo, double hi) {
    nn_prob_var(p, name, nt_rand(n, lo, hi), nt_alloc(n), n);
}

static void add_mha_vars(nn_prob *p, const qkv_nn_mha_config *cfg, int bias, mha_idx *ix) {
    mdims m = dims_of(cfg);
    const double s = 1.0 / sqrt((double)m.C), skv = 1.0 / sqrt((double)m.Ckv);
    memset(ix, -1, sizeof *ix);
    if (cfg->fused_qkv) {
        ix->w_qkv = p->nvar, add_var(p, "w_qkv", (m.Q + 2 * m.K) * m.C, -s, s);
        if (bias) ix->b_qkv = p->nvar, add_var(p, "b_qkv", m.Q + 2 * m.K, -0.5, 0.5);
    } else {
        ix->w_q = p->nvar, add_var(p, "w_q", m.Q * m.C, -s, s);
        if (bias) ix->b_q = p->nvar, add_var(p, "b_q", m.Q, -0.5, 0.5);
        ix->w_k = p->nvar, add_var(p, "w_k", m.K * m.Ckv, -skv, skv);
        if (bias) ix->b_k = p->nvar, add_var(p, "b_k", m.K, -0.5, 0.5);
        ix->w_v = p->nvar, add_var(p, "w_v", m.K * m.Ckv, -skv, skv);
        if (bias) ix->b_v = p->nvar, add_var(p, "b_v", m.K, -0.5, 0.5);
    }
    const double so = 1.0 / sqrt((double)m.Q);
    ix->w_o = p->nvar, add_var(p, "w_o", m.C * m.Q, -so, so);
    if (bias) ix->b_o = p->nvar, add_var(p, "b_o", m.C, -0.5, 0.5);
}

#define PF(p, i) ((i) >= 0 ? (p)->var[i].f : NULL)
#define PG(p, i) ((i) >= 0 ? (p)->var[i].g : NULL)
#define PD(p, i) ((i) >= 0 ? (p)->var[i].d : NULL)

static qkv_nn_mha_params mha_params(const nn_prob *p, const mha_idx *ix) {
    qkv_nn_mha_params w = {PF(p, ix->w_q), PF(p, ix->b_q), PF(p, ix->w_k),   PF(p, ix->b_k),
                           PF(p, ix->w_v), PF(p, ix->b_v), PF(p, ix->w_qkv), PF(p, ix->b_qkv),
                           PF(p, ix->w_o), PF(p, ix->b_o)};
    return w;
}

static qkv_nn_mha_grads mha_grads(const nn_prob *p, const mha_idx *ix) {
    qkv_nn_mha_grads g = {PG(p, ix->w_q), PG(p, ix->b_q), PG(p, ix->w_k),   PG(p, ix->b_k),
                          PG(p, ix->w_v), PG(p, ix->b_v), PG(p, ix->w_qkv), PG(p, ix->b_qkv),
                          PG(p, ix->w_o), PG(p, ix->b_o)};
    return g;
}

/* attention-probability dropout multiplier, by the rule of src/attention/attention.h */
typedef struct {
    int64_t H, Tq, Tk;
    float p;
    uint64_t seed;
} keep_ctx;

static double keep_fn(void *vc, int64_t b, int64_t h, int64_t i, int64_t j) {
    const keep_ctx *c = vc;
    uint64_t idx = (uint64_t)(((b * c->H + h) * c->Tq + i) * c->Tk + j);
    float u = qkv__rng_uniform(c->seed, QKV_ATTN_DROPOUT_STREAM, idx);
    return u >= c->p ? 1.0 / (1.0 - (double)c->p) : 0.0;
}

/* out (B, Tq, C) = reference MHA of x (B, Tq, C) and src (B, Tk, C_kv) */
static void ref_mha(double *out, const double *x, const double *src, const nn_prob *p,
                    const mha_idx *ix, const qkv_nn_mha_config *cfg, const qkv_nn_attn_mask *mask,
                    int64_t B, int64_t Tq, int64_t Tk) {
    mdims m = dims_of(cfg);
    const double *wq, *bq, *wk, *bk, *wv, *bv;
    if (cfg->fused_qkv) {
        const double *w = PD(p, ix->w_qkv), *b = PD(p, ix->b_qkv);
        wq = w, wk = w + m.Q * m.C, wv = wk + m.K * m.C;
        bq = b, bk = b ? b + m.Q : NULL, bv = b ? b + m.Q + m.K : NULL;
    } else {
        wq = PD(p, ix->w_q), wk = PD(p, ix->w_k), wv = PD(p, ix->w_v);
        bq = PD(p, ix->b_q), bk = PD(p, ix->b_k), bv = PD(p, ix->b_v);
    }
    double *q = nt_alloc_d(B * Tq * m.Q), *k = nt_alloc_d(B * Tk * m.K);
    double *v = nt_alloc_d(B * Tk * m.K), *att = nt_alloc_d(B * Tq * m.Q);
    ref_linear(q, x, wq, bq, B * Tq, m.C, m.Q);
    ref_linear(k, src, wk, bk, B * Tk, m.Ckv, m.K);
    ref_linear(v, src, wv, bv, B * Tk, m.Ckv, m.K);
    if (cfg->rope) {
        double *t = nt_alloc_d(B * Tq * m.Q > B * Tk * m.K ? B * Tq * m.Q : B * Tk * m.K);
        int64_t R = cfg->rope->dims ? cfg->rope->dims : m.D;
        ref_rope(t, q, B, Tq, m.H, m.D, R, cfg->rope->theta, (int)cfg->rope->style, 0);
        memcpy(q, t, (size_t)(B * Tq * m.Q) * sizeof(double));
        ref_rope(t, k, B, Tk, m.Hk, m.D, R, cfg->rope->theta, (int)cfg->rope->style, 0);
        memcpy(k, t, (size_t)(B * Tk * m.K) * sizeof(double));
        free(t);
    }
    double scale = cfg->scale ? cfg->scale : 1.0 / sqrt((double)m.D);
    keep_ctx kc = {m.H, Tq, Tk, mask ? mask->dropout_p : 0.0f, mask ? mask->dropout_seed : 0};
    ref_attention(att, q, k, v, B, Tq, Tk, m.H, m.Hk, m.D, scale, mask ? mask->causal : 0,
                  mask ? mask->kv_lens : NULL, mask ? mask->alibi_slopes : NULL,
                  kc.p > 0 ? keep_fn : NULL, &kc);
    ref_linear(out, att, PD(p, ix->w_o), PD(p, ix->b_o), B * Tq, m.Q, m.C);
    free(q), free(k), free(v), free(att);
}

/* ---------------------------------------------------------------- MHA problem */

typedef struct {
    qkv_nn_mha_config cfg;
    qkv_nn_attn_mask mask;
    const qkv_nn_attn_mask *maskp;
    int64_t B, Tq, Tk;
    int cross;
    int ix_x, ix_mem;
    mha_idx ix;
    qkv_nn_mha_acts acts;
    float *acts_mem;
} mha_case;

static void mha_fd(nn_prob *p) {
    mha_case *c = p->ctx;
    ref_mha(p->out_d, PD(p, c->ix_x), c->cross ? PD(p, c->ix_mem) : PD(p, c->ix_x), p, &c->ix,
            &c->cfg, c->maskp, c->B, c->Tq, c->Tk);
}
static qkv_status mha_ff(nn_prob *p) {
    mha_case *c = p->ctx;
    qkv_nn_mha_params w = mha_params(p, &c->ix);
    return qkv_nn_mha_forward_ref(NULL, p->out_f, &c->acts, PF(p, c->ix_x), PF(p, c->ix_mem), &w,
                                  &c->cfg, c->maskp, c->B, c->Tq, c->Tk);
}
static qkv_status mha_bf(nn_prob *p) {
    mha_case *c = p->ctx;
    qkv_nn_mha_params w = mha_params(p, &c->ix);
    qkv_nn_mha_grads g = mha_grads(p, &c->ix);
    return qkv_nn_mha_backward_ref(NULL, PG(p, c->ix_x), PG(p, c->ix_mem), &g, p->dout_f,
                                   PF(p, c->ix_x), PF(p, c->ix_mem), &c->acts, &w, &c->cfg,
                                   c->maskp, c->B, c->Tq, c->Tk);
}

static void run_mha(const char *label, mha_case *c, int bias) {
    mdims m = dims_of(&c->cfg);
    nn_prob p;
    memset(&p, 0, sizeof p);
    p.label = label;
    p.ctx = c;
    p.nout = c->B * c->Tq * m.C;
    p.out_f = nt_alloc(p.nout);
    p.out_d = nt_alloc_d(p.nout);
    p.dout_f = nt_rand(p.nout, -1, 1);
    c->ix_x = p.nvar, add_var(&p, "x", c->B * c->Tq * m.C, -1, 1);
    c->ix_mem = -1;
    if (c->cross) c->ix_mem = p.nvar, add_var(&p, "mem", c->B * c->Tk * m.Ckv, -1, 1);
    add_mha_vars(&p, &c->cfg, bias, &c->ix);
    int64_t n_acts = 0;
    CHECK_OK(qkv_nn_mha_acts_size(&c->cfg, c->B, c->Tq, c->Tk, &n_acts));
    c->acts_mem = nt_alloc(n_acts);
    CHECK_OK(qkv_nn_mha_acts_bind(&c->acts, &c->cfg, c->B, c->Tq, c->Tk, c->acts_mem));
    p.fwd_d = mha_fd, p.fwd_f = mha_ff, p.bwd_f = mha_bf;
    nn_prob_run(&p, FWD_TOL, GRAD_TOL);
    for (int v = 0; v < p.nvar; v++) {
        /* never NaN, also for fully masked rows */
        for (int64_t i = 0; i < p.var[v].n; i++)
            if (!isfinite(p.var[v].g[i])) {
                CHECK_MSG(0, "%s: gradient of %s[%lld] is not finite", label, p.var[v].name,
                          (long long)i);
                break;
            }
        free(p.var[v].f), free(p.var[v].g);
    }
    nn_prob_free(&p);
    free(p.out_f), free(p.out_d), free(p.dout_f), free(c->acts_mem);
}

static mha_case mha_self(int64_t B, int64_t T, int64_t C, int64_t H) {
    mha_case c;
    memset(&c, 0, sizeof c);
    c.cfg.C = C, c.cfg.H = H;
    c.B = B, c.Tq = T, c.Tk = T;
    return c;
}

static void test_mha(void) {
    static const qkv_nn_rope rope_half = {QKV_NN_ROPE_HALF, 10000.0, 0};
    static const qkv_nn_rope rope_inter = {QKV_NN_ROPE_INTERLEAVED, 10000.0, 2};
    int32_t lens[2] = {5, 2}, lens0[2] = {4, 0}, lens_x[2] = {7, 4};
    float slopes[3];
    CHECK_OK(qkv_nn_alibi_slopes(slopes, 3));
    mha_case c;

    c = mha_self(2, 5, 8, 2);
    run_mha("mha self", &c, 1);

    c = mha_self(2, 5, 8, 2);
    c.cfg.fused_qkv = 1, c.mask.causal = 1, c.maskp = &c.mask;
    run_mha("mha self fused causal", &c, 1);

    c = mha_self(2, 5, 8, 2);
    c.mask.causal = 1, c.mask.kv_lens = lens, c.maskp = &c.mask;
    run_mha("mha self causal kv_lens", &c, 1);

    c = mha_self(2, 4, 8, 2);
    c.mask.kv_lens = lens0, c.maskp = &c.mask;
    run_mha("mha self kv_lens 0 (masked rows)", &c, 1);

    c = mha_self(2, 5, 8, 2);
    run_mha("mha self no bias", &c, 0);

    c = mha_self(2, 5, 10, 4);
    c.cfg.H_kv = 2, c.cfg.D = 3, c.mask.causal = 1, c.maskp = &c.mask;
    run_mha("mha GQA 4/2 D3 (H*D != C)", &c, 1);

    c = mha_self(2, 5, 16, 4);
    c.cfg.H_kv = 1, c.cfg.rope = &rope_half, c.mask.causal = 1, c.maskp = &c.mask;
    run_mha("mha MQA 4/1 rope half", &c, 1);

    c = mha_self(1, 6, 8, 2);
    c.cfg.fused_qkv = 1, c.cfg.rope = &rope_inter;
    run_mha("mha fused rope interleaved R2", &c, 1);

    c = mha_self(2, 6, 9, 3);
    c.mask.causal = 1, c.mask.alibi_slopes = slopes, c.maskp = &c.mask;
    run_mha("mha alibi causal H3", &c, 1);

    c = mha_self(2, 5, 8, 2);
    c.mask.dropout_p = 0.2f, c.mask.dropout_seed = 77, c.maskp = &c.mask;
    c.cfg.scale = 0.3f;
    run_mha("mha attention dropout, scale", &c, 1);

    c = mha_self(2, 3, 8, 2);
    c.cross = 1, c.Tk = 7, c.cfg.C_kv = 6, c.mask.kv_lens = lens_x, c.maskp = &c.mask;
    run_mha("mha cross C_kv6 kv_lens", &c, 1);

    c = mha_self(2, 3, 8, 2);
    c.cross = 1, c.Tk = 7, c.cfg.fused_qkv = 1, c.mask.causal = 1, c.maskp = &c.mask;
    run_mha("mha cross fused causal Tq3 Tk7", &c, 1);

    c = mha_self(1, 1, 4, 1);
    c.cross = 1, c.Tk = 1;
    run_mha("mha cross B1 Tq1 Tk1 H1", &c, 1);

    c = mha_self(1, 1, 1, 1);
    run_mha("mha self C1", &c, 1);
}

/* ---------------------------------------------------------------- MLP */

typedef struct {
    int64_t N, C, F;
    qkv_act act;
    qkv_nn_mlp_acts acts;
    float *acts_mem;
} mlp_case;

static void mlp_fd(nn_prob *p) {
    mlp_case *c = p->ctx;
    double *h = nt_alloc_d(c->N * c->F);
    ref_linear(h, p->var[0].d, p->var[1].d, p->var[2].d, c->N, c->C, c->F);
    for (int64_t i = 0; i < c->N * c->F; i++) h[i] = ref_act((int)c->act, h[i]);
    ref_linear(p->out_d, h, p->var[3].d, p->var[4].d, c->N, c->F, c->C);
    free(h);
}
static qkv_status mlp_ff(nn_prob *p) {
    mlp_case *c = p->ctx;
    qkv_nn_mlp_params w = {p->var[1].f, p->var[2].f, p->var[3].f, p->var[4].f};
    return qkv_nn_mlp_forward_ref(NULL, p->out_f, &c->acts, p->var[0].f, &w, c->act, c->N, c->C,
                                  c->F);
}
static qkv_status mlp_bf(nn_prob *p) {
    mlp_case *c = p->ctx;
    qkv_nn_mlp_params w = {p->var[1].f, p->var[2].f, p->var[3].f, p->var[4].f};
    qkv_nn_mlp_grads g = {p->var[1].g, p->var[2].g, p->var[3].g, p->var[4].g};
    return qkv_nn_mlp_backward_ref(NULL, p->var[0].g, &g, p->dout_f, p->var[0].f, &c->acts, &w,
                                   c->act, c->N, c->C, c->F);
}

static void test_mlp(qkv_act act, const char *label) {
    mlp_case c = {.N = 7, .C = 5, .F = 11, .act = act};
    nn_prob p;
    memset(&p, 0, sizeof p);
    p.label = label;
    p.ctx = &c;
    p.nout = c.N * c.C;
    p.out_f = nt_alloc(p.nout);
    p.out_d = nt_alloc_d(p.nout);
    p.dout_f = nt_rand(p.nout, -1, 1);
    add_var(&p, "x", c.N * c.C, -2, 2);
    add_var(&p, "w_fc1", c.F * c.C, -0.5, 0.5);
    add_var(&p, "b_fc1", c.F, -0.5, 0.5);
    add_var(&p, "w_fc2", c.C * c.F, -0.3, 0.3);
    add_var(&p, "b_fc2", c.C, -0.5, 0.5);
    int64_t n_acts;
    CHECK_OK(qkv_nn_mlp_acts_size(c.N, c.F, &n_acts));
    c.acts_mem = nt_alloc(n_acts);
    CHECK_OK(qkv_nn_mlp_acts_bind(&c.acts, c.N, c.F, c.acts_mem));
    p.fwd_d = mlp_fd, p.fwd_f = mlp_ff, p.bwd_f = mlp_bf;
    /* ReLU: FD across the kink is meaningless; the inputs keep |h| > h_fd almost surely */
    nn_prob_run(&p, FWD_TOL, GRAD_TOL);
    for (int v = 0; v < p.nvar; v++) free(p.var[v].f), free(p.var[v].g);
    nn_prob_free(&p);
    free(p.out_f), free(p.out_d), free(p.dout_f), free(c.acts_mem);
}

/* ---------------------------------------------------------------- Transformer block */

typedef struct {
    qkv_nn_block_config cfg;
    qkv_nn_attn_mask mask;
    const qkv_nn_attn_mask *maskp;
    int64_t B, T;
    mha_idx ix;
    int ln1_w, ln1_b, ln2_w, ln2_b, fc1_w, fc1_b, fc2_w, fc2_b;
    qkv_nn_block_acts acts;
    float *acts_mem;
} block_case;

static void block_fd(nn_prob *p) {
    block_case *c = p->ctx;
    const int64_t C = c->cfg.attn.C, N = c->B * c->T, F = c->cfg.F;
    const double eps = c->cfg.eps;
    const double *x = p->var[0].d;
    double *a = nt_alloc_d(N * C), *r1 = nt_alloc_d(N * C), *l1 = nt_alloc_d(N * C);
    double *l2 = nt_alloc_d(N * C), *h = nt_alloc_d(N * F), *mo = nt_alloc_d(N * C);
    double *r2 = nt_alloc_d(N * C);
#define MLP_D(out, in)                                                                             \
    do {                                                                                           \
        ref_linear(h, in, PD(p, c->fc1_w), PD(p, c->fc1_b), N, C, F);                              \
        for (int64_t i = 0; i < N * F; i++) h[i] = ref_act((int)c->cfg.act, h[i]);                 \
        ref_linear(out, h, PD(p, c->fc2_w), PD(p, c->fc2_b), N, F, C);                             \
    } while (0)
    if (c->cfg.order == QKV_NN_PRE_LN) {
        ref_layernorm(l1, x, PD(p, c->ln1_w), PD(p, c->ln1_b), N, C, eps);
        ref_mha(a, l1, l1, p, &c->ix, &c->cfg.attn, c->maskp, c->B, c->T, c->T);
        for (int64_t i = 0; i < N * C; i++) r1[i] = x[i] + a[i];
        ref_layernorm(l2, r1, PD(p, c->ln2_w), PD(p, c->ln2_b), N, C, eps);
        MLP_D(mo, l2);
        for (int64_t i = 0; i < N * C; i++) p->out_d[i] = r1[i] + mo[i];
    } else {
        ref_mha(a, x, x, p, &c->ix, &c->cfg.attn, c->maskp, c->B, c->T, c->T);
        for (int64_t i = 0; i < N * C; i++) r1[i] = x[i] + a[i];
        ref_layernorm(l1, r1, PD(p, c->ln1_w), PD(p, c->ln1_b), N, C, eps);
        MLP_D(mo, l1);
        for (int64_t i = 0; i < N * C; i++) r2[i] = l1[i] + mo[i];
        ref_layernorm(p->out_d, r2, PD(p, c->ln2_w), PD(p, c->ln2_b), N, C, eps);
    }
#undef MLP_D
    free(a), free(r1), free(l1), free(l2), free(h), free(mo), free(r2);
}

static qkv_nn_block_params block_params(const nn_prob *p, const block_case *c) {
    qkv_nn_block_params w;
    w.ln1_w = PF(p, c->ln1_w), w.ln1_b = PF(p, c->ln1_b);
    w.ln2_w = PF(p, c->ln2_w), w.ln2_b = PF(p, c->ln2_b);
    w.attn = mha_params(p, &c->ix);
    w.mlp.w_fc1 = PF(p, c->fc1_w), w.mlp.b_fc1 = PF(p, c->fc1_b);
    w.mlp.w_fc2 = PF(p, c->fc2_w), w.mlp.b_fc2 = PF(p, c->fc2_b);
    return w;
}

static qkv_status block_ff(nn_prob *p) {
    block_case *c = p->ctx;
    qkv_nn_block_params w = block_params(p, c);
    return qkv_nn_block_forward_ref(NULL, p->out_f, &c->acts, p->var[0].f, &w, &c->cfg, c->maskp,
                                    c->B, c->T);
}
static qkv_status block_bf(nn_prob *p) {
    block_case *c = p->ctx;
    qkv_nn_block_params w = block_params(p, c);
    qkv_nn_block_grads g;
    g.ln1_w = PG(p, c->ln1_w), g.ln1_b = PG(p, c->ln1_b);
    g.ln2_w = PG(p, c->ln2_w), g.ln2_b = PG(p, c->ln2_b);
    g.attn = mha_grads(p, &c->ix);
    g.mlp.w_fc1 = PG(p, c->fc1_w), g.mlp.b_fc1 = PG(p, c->fc1_b);
    g.mlp.w_fc2 = PG(p, c->fc2_w), g.mlp.b_fc2 = PG(p, c->fc2_b);
    return qkv_nn_block_backward_ref(NULL, p->var[0].g, &g, p->dout_f, p->var[0].f, &c->acts, &w,
                                     &c->cfg, c->maskp, c->B, c->T);
}

static void run_block(const char *label, block_case *c) {
    const int64_t C = c->cfg.attn.C, N = c->B * c->T, F = c->cfg.F;
    nn_prob p;
    memset(&p, 0, sizeof p);
    p.label = label;
    p.ctx = c;
    p.nout = N * C;
    p.out_f = nt_alloc(p.nout);
    p.out_d = nt_alloc_d(p.nout);
    p.dout_f = nt_rand(p.nout, -1, 1);
    add_var(&p, "x", N * C, -1.5, 1.5);
    c->ln1_w = p.nvar, add_var(&p, "ln1_w", C, 0.5, 1.5);
    c->ln1_b = p.nvar, add_var(&p, "ln1_b", C, -0.5, 0.5);
    add_mha_vars(&p, &c->cfg.attn, 1, &c->ix);
    c->ln2_w = p.nvar, add_var(&p, "ln2_w", C, 0.5, 1.5);
    c->ln2_b = p.nvar, add_var(&p, "ln2_b", C, -0.5, 0.5);
    const double s1 = 1.0 / sqrt((double)C), s2 = 1.0 / sqrt((double)F);
    c->fc1_w = p.nvar, add_var(&p, "w_fc1", F * C, -s1, s1);
    c->fc1_b = p.nvar, add_var(&p, "b_fc1", F, -0.5, 0.5);
    c->fc2_w = p.nvar, add_var(&p, "w_fc2", C * F, -s2, s2);
    c->fc2_b = p.nvar, add_var(&p, "b_fc2", C, -0.5, 0.5);
    int64_t n_acts;
    CHECK_OK(qkv_nn_block_acts_size(&c->cfg, c->B, c->T, &n_acts));
    c->acts_mem = nt_alloc(n_acts);
    CHECK_OK(qkv_nn_block_acts_bind(&c->acts, &c->cfg, c->B, c->T, c->acts_mem));
    p.fwd_d = block_fd, p.fwd_f = block_ff, p.bwd_f = block_bf;
    nn_prob_run(&p, FWD_TOL, GRAD_TOL);
    for (int v = 0; v < p.nvar; v++) free(p.var[v].f), free(p.var[v].g);
    nn_prob_free(&p);
    free(p.out_f), free(p.out_d), free(p.dout_f), free(c->acts_mem);
}

static block_case block_new(qkv_nn_norm_order order, int64_t B, int64_t T, int64_t C, int64_t H,
                            int64_t F) {
    block_case c;
    memset(&c, 0, sizeof c);
    c.cfg.attn.C = C, c.cfg.attn.H = H, c.cfg.attn.fused_qkv = 1;
    c.cfg.F = F, c.cfg.eps = 1e-5f, c.cfg.order = order, c.cfg.act = QKV_ACT_GELU_ERF;
    c.B = B, c.T = T;
    return c;
}

static void test_blocks(void) {
    int32_t lens[2] = {5, 3};
    block_case c;
    c = block_new(QKV_NN_POST_LN, 2, 5, 8, 2, 16);
    run_block("block post-LN (BERT)", &c);

    c = block_new(QKV_NN_POST_LN, 2, 5, 8, 2, 16);
    c.mask.kv_lens = lens, c.maskp = &c.mask, c.cfg.attn.fused_qkv = 0, c.cfg.eps = 1e-12f;
    run_block("block post-LN kv_lens separate qkv", &c);

    c = block_new(QKV_NN_PRE_LN, 2, 5, 8, 2, 16);
    c.mask.causal = 1, c.maskp = &c.mask, c.cfg.act = QKV_ACT_GELU_TANH;
    run_block("block pre-LN (GPT-2) causal", &c);

    c = block_new(QKV_NN_PRE_LN, 2, 5, 8, 2, 16);
    c.mask.kv_lens = lens, c.maskp = &c.mask, c.cfg.act = QKV_ACT_RELU;
    run_block("block pre-LN kv_lens relu", &c);

    c = block_new(QKV_NN_PRE_LN, 1, 1, 3, 1, 5);
    run_block("block pre-LN B1 T1 C3", &c);

    c = block_new(QKV_NN_POST_LN, 1, 3, 6, 3, 7);
    c.cfg.act = QKV_ACT_SILU;
    run_block("block post-LN odd sizes silu", &c);
}

int main(void) {
    nt_seed(2);
    test_mha();
    test_mlp(QKV_ACT_GELU_ERF, "mlp gelu");
    test_mlp(QKV_ACT_GELU_TANH, "mlp gelu_tanh");
    test_mlp(QKV_ACT_RELU, "mlp relu");
    test_mlp(QKV_ACT_SILU, "mlp silu");
    test_blocks();
    return test_finish("nn_grad_block");
}
