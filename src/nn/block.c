/* block.c — the MLP (dense -> activation -> dense) and the Transformer block in both orders,
 * each written once over a set of layers (qkv__nn_ops): the _ref functions over the reference
 * twins, the others over the fast layers.
 *
 *   post-LN (BERT, original Transformer):  res1 = x + Attn(x);      x1 = LN1(res1)
 *                                          res2 = x1 + MLP(x1);     y  = LN2(res2)
 *   pre-LN (GPT-2):                        res1 = x + Attn(LN1(x))  (= x1)
 *                                          y    = x1 + MLP(LN2(x1))
 *
 * The forwards write the attention / MLP branch straight into the residual buffer and add the
 * skip in place, so the only tensors kept are the ones some backward reads (block.h lists
 * them). The backwards follow the graph in reverse; the gradient of a residual sum flows to
 * both of its inputs unchanged, which the accumulate convention (nn.h) turns into passing the
 * same gradient buffer to both consumers. */
#include "core/alloc.h"
#include "nn/nn.h"
#include "nn/nn_internal.h"

#include <math.h>
#include <string.h>

/* ---------------------------------------------------------------- MLP */

static qkv_status mlp_check(const char *fn, const qkv_nn_mlp_params *p, qkv_act act, int64_t N,
                            int64_t C, int64_t F) {
    int64_t t;
    NN_NONNULL(fn, p);
    NN_REQUIRE(p->w_fc1 != NULL, "%s: params->w_fc1 is NULL", fn);
    NN_REQUIRE(p->w_fc2 != NULL, "%s: params->w_fc2 is NULL", fn);
    NN_REQUIRE(act == QKV_ACT_GELU_ERF || act == QKV_ACT_GELU_TANH || act == QKV_ACT_RELU ||
                   act == QKV_ACT_SILU,
               "%s: act = %d is not a qkv_act", fn, (int)act);
    NN_POSITIVE(fn, N);
    NN_POSITIVE(fn, C);
    NN_POSITIVE(fn, F);
    NN_NUMEL2(fn, "N*C", N, C, t);
    NN_NUMEL2(fn, "N*F", N, F, t);
    NN_NUMEL2(fn, "F*C", F, C, t);
    return QKV_OK;
}

static qkv_status mlp_layout(const char *fn, nn_layout *l, qkv_nn_mlp_acts *acts, int64_t N,
                             int64_t F) {
    int64_t nf;
    NN_POSITIVE(fn, N);
    NN_POSITIVE(fn, F);
    NN_NUMEL2(fn, "N*F", N, F, nf);
    qkv_nn_mlp_acts a;
    a.h = nn_take(l, nf);
    a.a = nn_take(l, nf);
    NN_REQUIRE(!l->overflow, "%s: the activations' total size overflows", fn);
    if (acts) *acts = a;
    return QKV_OK;
}

qkv_status qkv_nn_mlp_acts_size(int64_t N, int64_t F, int64_t *n_floats) {
    static const char fn[] = "qkv_nn_mlp_acts_size";
    NN_NONNULL(fn, n_floats);
    nn_layout l = {0};
    QKV_TRY(mlp_layout(fn, &l, NULL, N, F));
    *n_floats = l.used;
    return QKV_OK;
}

qkv_status qkv_nn_mlp_acts_bind(qkv_nn_mlp_acts *acts, int64_t N, int64_t F, float *mem) {
    static const char fn[] = "qkv_nn_mlp_acts_bind";
    NN_NONNULL(fn, acts);
    NN_NONNULL(fn, mem);
    nn_layout l = {.base = mem};
    return mlp_layout(fn, &l, acts, N, F);
}

static qkv_status mlp_forward_impl(const qkv__nn_ops *ops, qkv_runtime *rt, float *out,
                                   qkv_nn_mlp_acts *acts, const float *x,
                                   const qkv_nn_mlp_params *params, qkv_act act, int64_t N,
                                   int64_t C, int64_t F) {
    const char *fn = ops == &qkv__nn_ops_ref ? "qkv_nn_mlp_forward_ref" : "qkv_nn_mlp_forward";
    NN_NONNULL(fn, out);
    NN_NONNULL(fn, acts);
    NN_NONNULL(fn, x);
    QKV_TRY(mlp_check(fn, params, act, N, C, F));
    NN_REQUIRE(acts->h && acts->a, "%s: acts has a NULL buffer (use qkv_nn_mlp_acts_bind)", fn);
    QKV_TRY(ops->linear_fwd(rt, acts->h, x, params->w_fc1, params->b_fc1, N, C, F));   /* (N,F) */
    QKV_TRY(ops->act_fwd(rt, act, acts->a, acts->h, N * F));                           /* (N,F) */
    QKV_TRY(ops->linear_fwd(rt, out, acts->a, params->w_fc2, params->b_fc2, N, F, C)); /* (N,C) */
    return QKV_OK;
}

static qkv_status mlp_backward_impl(const qkv__nn_ops *ops, qkv_runtime *rt, float *dx,
                                    const qkv_nn_mlp_grads *grads, const float *dout,
                                    const float *x, const qkv_nn_mlp_acts *acts,
                                    const qkv_nn_mlp_params *params, qkv_act act, int64_t N,
                                    int64_t C, int64_t F) {
    const char *fn = ops == &qkv__nn_ops_ref ? "qkv_nn_mlp_backward_ref" : "qkv_nn_mlp_backward";
    NN_NONNULL(fn, dout);
    NN_NONNULL(fn, acts);
    NN_NONNULL(fn, x);
    QKV_TRY(mlp_check(fn, params, act, N, C, F));
    NN_REQUIRE(acts->h && acts->a, "%s: acts has a NULL buffer (use qkv_nn_mlp_acts_bind)", fn);
    qkv_nn_mlp_grads g = {0};
    if (grads) {
        g = *grads;
        if (!params->b_fc1) g.b_fc1 = NULL;
        if (!params->b_fc2) g.b_fc2 = NULL;
    }
    const int64_t nf = N * F;
    float *da = qkv__calloc(2 * (size_t)nf, sizeof(float)); /* da, dh (N, F), accumulated */
    if (!da) return qkv__fail(QKV_ERR_NOMEM, "%s: out of memory (N*F = %lld)", fn, (long long)nf);
    float *dh = da + nf;
    qkv_status st =
        ops->linear_bwd(rt, da, g.w_fc2, g.b_fc2, dout, acts->a, params->w_fc2, N, F, C);
    if (st == QKV_OK) st = ops->act_bwd(rt, act, dh, da, acts->h, nf);
    if (st == QKV_OK) st = ops->linear_bwd(rt, dx, g.w_fc1, g.b_fc1, dh, x, params->w_fc1, N, C, F);
    qkv__free(da);
    return st;
}

/* ---------------------------------------------------------------- block */

static qkv_status block_check_config(const char *fn, const qkv_nn_block_config *cfg) {
    NN_NONNULL(fn, cfg);
    NN_REQUIRE(cfg->attn.C_kv == 0 || cfg->attn.C_kv == cfg->attn.C,
               "%s: cfg->attn.C_kv = %lld must be 0 or C (the block is self-attention)", fn,
               (long long)cfg->attn.C_kv);
    NN_REQUIRE(cfg->order == QKV_NN_POST_LN || cfg->order == QKV_NN_PRE_LN,
               "%s: cfg->order = %d is not a qkv_nn_norm_order", fn, (int)cfg->order);
    NN_REQUIRE(cfg->F > 0, "%s: cfg->F must be positive (got %lld)", fn, (long long)cfg->F);
    NN_REQUIRE(cfg->eps >= 0.0f && isfinite(cfg->eps),
               "%s: cfg->eps must be finite and >= 0 (got %g)", fn, (double)cfg->eps);
    return QKV_OK;
}

static qkv_status block_layout(const char *fn, nn_layout *l, qkv_nn_block_acts *acts,
                               const qkv_nn_block_config *cfg, int64_t B, int64_t T) {
    int64_t N, NC;
    QKV_TRY(block_check_config(fn, cfg));
    NN_POSITIVE(fn, B);
    NN_POSITIVE(fn, T);
    NN_NUMEL2(fn, "B*T", B, T, N);
    NN_NUMEL2(fn, "B*T*C", N, cfg->attn.C, NC);
    const int pre = cfg->order == QKV_NN_PRE_LN;
    qkv_nn_block_acts a;
    memset(&a, 0, sizeof a);
    a.ln1 = nn_take(l, NC);
    a.ln1_mean = nn_take(l, N);
    a.ln1_rstd = nn_take(l, N);
    QKV_TRY(qkv__nn_mha_acts_layout(fn, l, &a.attn, &cfg->attn, B, T, T));
    a.res1 = nn_take(l, NC);
    if (pre) a.ln2 = nn_take(l, NC);
    a.ln2_mean = nn_take(l, N);
    a.ln2_rstd = nn_take(l, N);
    QKV_TRY(mlp_layout(fn, l, &a.mlp, N, cfg->F));
    if (!pre) a.res2 = nn_take(l, NC);
    NN_REQUIRE(!l->overflow, "%s: the activations' total size overflows", fn);
    if (acts) *acts = a;
    return QKV_OK;
}

qkv_status qkv_nn_block_acts_size(const qkv_nn_block_config *cfg, int64_t B, int64_t T,
                                  int64_t *n_floats) {
    static const char fn[] = "qkv_nn_block_acts_size";
    NN_NONNULL(fn, n_floats);
    nn_layout l = {0};
    QKV_TRY(block_layout(fn, &l, NULL, cfg, B, T));
    *n_floats = l.used;
    return QKV_OK;
}

qkv_status qkv_nn_block_acts_bind(qkv_nn_block_acts *acts, const qkv_nn_block_config *cfg,
                                  int64_t B, int64_t T, float *mem) {
    static const char fn[] = "qkv_nn_block_acts_bind";
    NN_NONNULL(fn, acts);
    NN_NONNULL(fn, mem);
    nn_layout l = {.base = mem};
    return block_layout(fn, &l, acts, cfg, B, T);
}

/* Checks shared by forward and backward (the sub-layers check the rest before writing). */
static qkv_status block_check_call(const char *fn, const qkv_nn_block_config *cfg,
                                   const qkv_nn_block_params *p, const qkv_nn_block_acts *a,
                                   const float *x, int64_t B, int64_t T) {
    NN_NONNULL(fn, x);
    NN_NONNULL(fn, p);
    NN_NONNULL(fn, a);
    nn_layout l = {0};
    QKV_TRY(block_layout(fn, &l, NULL, cfg, B, T));
    const int pre = cfg->order == QKV_NN_PRE_LN;
    NN_REQUIRE(a->ln1 && a->ln1_mean && a->ln1_rstd && a->res1 && a->ln2_mean && a->ln2_rstd &&
                   (pre ? a->ln2 != NULL : a->res2 != NULL),
               "%s: acts has a NULL buffer (use qkv_nn_block_acts_bind)", fn);
    QKV_TRY(mlp_check(fn, &p->mlp, cfg->act, B * T, cfg->attn.C, cfg->F));
    return QKV_OK;
}

static qkv_status block_forward_impl(const qkv__nn_ops *ops, qkv_runtime *rt, float *out,
                                     qkv_nn_block_acts *acts, const float *x,
                                     const qkv_nn_block_params *params,
                                     const qkv_nn_block_config *cfg, const qkv_nn_attn_mask *mask,
                                     int64_t B, int64_t T) {
    const char *fn = ops == &qkv__nn_ops_ref ? "qkv_nn_block_forward_ref" : "qkv_nn_block_forward";
    NN_NONNULL(fn, out);
    QKV_TRY(block_check_call(fn, cfg, params, acts, x, B, T));
    NN_REQUIRE(out != x, "%s: out must not alias x", fn);
    const qkv_nn_block_params *p = params;
    qkv_nn_block_acts *a = acts;
    const int64_t C = cfg->attn.C, N = B * T, NC = N * C, F = cfg->F;
    const float eps = cfg->eps;

    if (cfg->order == QKV_NN_PRE_LN) {
        QKV_TRY(
            ops->ln_fwd(rt, a->ln1, a->ln1_mean, a->ln1_rstd, x, p->ln1_w, p->ln1_b, N, C, eps));
        QKV_TRY(qkv__nn_mha_forward(ops, rt, a->res1, &a->attn, a->ln1, NULL, &p->attn, &cfg->attn,
                                    mask, B, T, T));
        QKV_TRY(ops->res_fwd(rt, a->res1, a->res1, x, NC)); /* x1 = x + Attn(LN1(x)) */
        QKV_TRY(ops->ln_fwd(rt, a->ln2, a->ln2_mean, a->ln2_rstd, a->res1, p->ln2_w, p->ln2_b, N, C,
                            eps));
        QKV_TRY(mlp_forward_impl(ops, rt, out, &a->mlp, a->ln2, &p->mlp, cfg->act, N, C, F));
        QKV_TRY(ops->res_fwd(rt, out, out, a->res1, NC)); /* y = x1 + MLP(LN2(x1)) */
    } else {
        QKV_TRY(qkv__nn_mha_forward(ops, rt, a->res1, &a->attn, x, NULL, &p->attn, &cfg->attn, mask,
                                    B, T, T));
        QKV_TRY(ops->res_fwd(rt, a->res1, a->res1, x, NC)); /* x + Attn(x) */
        QKV_TRY(ops->ln_fwd(rt, a->ln1, a->ln1_mean, a->ln1_rstd, a->res1, p->ln1_w, p->ln1_b, N, C,
                            eps)); /* x1 */
        QKV_TRY(mlp_forward_impl(ops, rt, a->res2, &a->mlp, a->ln1, &p->mlp, cfg->act, N, C, F));
        QKV_TRY(ops->res_fwd(rt, a->res2, a->res2, a->ln1, NC)); /* x1 + MLP(x1) */
        QKV_TRY(ops->ln_fwd(rt, out, a->ln2_mean, a->ln2_rstd, a->res2, p->ln2_w, p->ln2_b, N, C,
                            eps)); /* y */
    }
    return QKV_OK;
}

static qkv_status block_backward_impl(const qkv__nn_ops *ops, qkv_runtime *rt, float *dx,
                                      const qkv_nn_block_grads *grads, const float *dout,
                                      const float *x, const qkv_nn_block_acts *acts,
                                      const qkv_nn_block_params *params,
                                      const qkv_nn_block_config *cfg, const qkv_nn_attn_mask *mask,
                                      int64_t B, int64_t T) {
    const char *fn =
        ops == &qkv__nn_ops_ref ? "qkv_nn_block_backward_ref" : "qkv_nn_block_backward";
    NN_NONNULL(fn, dout);
    QKV_TRY(block_check_call(fn, cfg, params, acts, x, B, T));
    const qkv_nn_block_params *p = params;
    const qkv_nn_block_acts *a = acts;
    const int64_t C = cfg->attn.C, N = B * T, NC = N * C, F = cfg->F;
    qkv_nn_block_grads g;
    memset(&g, 0, sizeof g);
    if (grads) {
        g = *grads;
        if (!p->ln1_w) g.ln1_w = NULL;
        if (!p->ln1_b) g.ln1_b = NULL;
        if (!p->ln2_w) g.ln2_w = NULL;
        if (!p->ln2_b) g.ln2_b = NULL;
    }

    float *s = qkv__calloc(3 * (size_t)NC, sizeof(float)); /* three (N, C) gradients */
    if (!s)
        return qkv__fail(QKV_ERR_NOMEM, "%s: out of memory (3*B*T*C = %lld)", fn,
                         (long long)(3 * NC));
    qkv_status st = QKV_OK;
#define STEP(call)                                                                                 \
    if (st == QKV_OK) st = (call)

    if (cfg->order == QKV_NN_PRE_LN) {
        float *dres1 = s, *dln2 = s + NC, *dln1 = s + 2 * NC; /* each (N, C) */
        /* y = x1 + MLP(LN2(x1)) */
        STEP(ops->res_bwd(rt, dres1, NULL, dout, NC));
        STEP(mlp_backward_impl(ops, rt, dln2, &g.mlp, dout, a->ln2, &a->mlp, &p->mlp, cfg->act, N,
                               C, F));
        STEP(ops->ln_bwd(rt, dres1, g.ln2_w, g.ln2_b, dln2, a->res1, p->ln2_w, a->ln2_mean,
                         a->ln2_rstd, N, C));
        /* x1 = x + Attn(LN1(x)) */
        if (dx) STEP(ops->res_bwd(rt, dx, NULL, dres1, NC));
        STEP(qkv__nn_mha_backward(ops, rt, dln1, NULL, &g.attn, dres1, a->ln1, NULL, &a->attn,
                                  &p->attn, &cfg->attn, mask, B, T, T));
        STEP(ops->ln_bwd(rt, dx, g.ln1_w, g.ln1_b, dln1, x, p->ln1_w, a->ln1_mean, a->ln1_rstd, N,
                         C));
    } else {
        float *dres2 = s, *dln1 = s + NC, *dres1 = s + 2 * NC; /* each (N, C) */
        /* y = LN2(res2), res2 = x1 + MLP(x1) */
        STEP(ops->ln_bwd(rt, dres2, g.ln2_w, g.ln2_b, dout, a->res2, p->ln2_w, a->ln2_mean,
                         a->ln2_rstd, N, C));
        STEP(ops->res_bwd(rt, dln1, NULL, dres2, NC));
        STEP(mlp_backward_impl(ops, rt, dln1, &g.mlp, dres2, a->ln1, &a->mlp, &p->mlp, cfg->act, N,
                               C, F));
        /* x1 = LN1(res1), res1 = x + Attn(x) */
        STEP(ops->ln_bwd(rt, dres1, g.ln1_w, g.ln1_b, dln1, a->res1, p->ln1_w, a->ln1_mean,
                         a->ln1_rstd, N, C));
        if (dx) STEP(ops->res_bwd(rt, dx, NULL, dres1, NC));
        STEP(qkv__nn_mha_backward(ops, rt, dx, NULL, &g.attn, dres1, x, NULL, &a->attn, &p->attn,
                                  &cfg->attn, mask, B, T, T));
    }
#undef STEP
    qkv__free(s);
    return st;
}

/* ---------------------------------------------------------------- the two forms */

qkv_status qkv_nn_mlp_forward_ref(qkv_runtime *rt, float *out, qkv_nn_mlp_acts *acts,
                                  const float *x, const qkv_nn_mlp_params *params, qkv_act act,
                                  int64_t N, int64_t C, int64_t F) {
    return mlp_forward_impl(&qkv__nn_ops_ref, rt, out, acts, x, params, act, N, C, F);
}

qkv_status qkv_nn_mlp_forward(qkv_runtime *rt, float *out, qkv_nn_mlp_acts *acts, const float *x,
                              const qkv_nn_mlp_params *params, qkv_act act, int64_t N, int64_t C,
                              int64_t F) {
    return mlp_forward_impl(&qkv__nn_ops_fast, rt, out, acts, x, params, act, N, C, F);
}

qkv_status qkv_nn_mlp_backward_ref(qkv_runtime *rt, float *dx, const qkv_nn_mlp_grads *grads,
                                   const float *dout, const float *x, const qkv_nn_mlp_acts *acts,
                                   const qkv_nn_mlp_params *params, qkv_act act, int64_t N,
                                   int64_t C, int64_t F) {
    return mlp_backward_impl(&qkv__nn_ops_ref, rt, dx, grads, dout, x, acts, params, act, N, C, F);
}

qkv_status qkv_nn_mlp_backward(qkv_runtime *rt, float *dx, const qkv_nn_mlp_grads *grads,
                               const float *dout, const float *x, const qkv_nn_mlp_acts *acts,
                               const qkv_nn_mlp_params *params, qkv_act act, int64_t N, int64_t C,
                               int64_t F) {
    return mlp_backward_impl(&qkv__nn_ops_fast, rt, dx, grads, dout, x, acts, params, act, N, C, F);
}

qkv_status qkv_nn_block_forward_ref(qkv_runtime *rt, float *out, qkv_nn_block_acts *acts,
                                    const float *x, const qkv_nn_block_params *params,
                                    const qkv_nn_block_config *cfg, const qkv_nn_attn_mask *mask,
                                    int64_t B, int64_t T) {
    return block_forward_impl(&qkv__nn_ops_ref, rt, out, acts, x, params, cfg, mask, B, T);
}

qkv_status qkv_nn_block_forward(qkv_runtime *rt, float *out, qkv_nn_block_acts *acts,
                                const float *x, const qkv_nn_block_params *params,
                                const qkv_nn_block_config *cfg, const qkv_nn_attn_mask *mask,
                                int64_t B, int64_t T) {
    return block_forward_impl(&qkv__nn_ops_fast, rt, out, acts, x, params, cfg, mask, B, T);
}

qkv_status qkv_nn_block_backward_ref(qkv_runtime *rt, float *dx, const qkv_nn_block_grads *grads,
                                     const float *dout, const float *x,
                                     const qkv_nn_block_acts *acts,
                                     const qkv_nn_block_params *params,
                                     const qkv_nn_block_config *cfg, const qkv_nn_attn_mask *mask,
                                     int64_t B, int64_t T) {
    return block_backward_impl(&qkv__nn_ops_ref, rt, dx, grads, dout, x, acts, params, cfg, mask, B,
                               T);
}

qkv_status qkv_nn_block_backward(qkv_runtime *rt, float *dx, const qkv_nn_block_grads *grads,
                                 const float *dout, const float *x, const qkv_nn_block_acts *acts,
                                 const qkv_nn_block_params *params, const qkv_nn_block_config *cfg,
                                 const qkv_nn_attn_mask *mask, int64_t B, int64_t T) {
    return block_backward_impl(&qkv__nn_ops_fast, rt, dx, grads, dout, x, acts, params, cfg, mask,
                               B, T);
}
