/* mha.c — the multi-head attention module: Q/K/V projections, optional RoPE, scaled dot-product
 * attention through the public qkv_attention_forward/backward, output projection. Written once
 * over a set of layers (nn_internal.h's qkv__nn_ops): qkv_nn_mha_*_ref over the reference
 * twins, qkv_nn_mha_* over the fast layers.
 *
 * Layout: [B, T, H·D] is [B, T, H, D], so the projections write q, k, v directly in the layout
 * the attention API takes, with no transposes or copies. Self-attention is the case mem == NULL
 * (K and V read x); cross-attention reads mem. GQA/MQA come from H_kv < H, passed through.
 *
 * Backward (accumulating, nn.h):
 *   datt = dout · W_o                      (and dW_o, db_o)
 *   dq, dk, dv = attention backward(datt)   (the attention API overwrites them)
 *   dq, dk = inverse RoPE rotation          (if RoPE)
 *   dx += dq · W_q; dsrc += dk · W_k + dv · W_v   (dsrc = dx for self-attention) */
#include "core/alloc.h"
#include "nn/nn.h"
#include "nn/nn_internal.h"

#include <math.h>
#include <string.h>

/* The config with its defaults resolved. */
typedef struct {
    int64_t C, Ckv, H, Hk, D;
    int64_t Q, K; /* H·D, Hk·D */
} mha_dims;

/* The eight projection tensors, from separate or fused storage. */
typedef struct {
    const float *w_q, *b_q, *w_k, *b_k, *w_v, *b_v, *w_o, *b_o;
} mha_w;
typedef struct {
    float *w_q, *b_q, *w_k, *b_k, *w_v, *b_v, *w_o, *b_o;
} mha_g;

static qkv_status mha_dims_resolve(const char *fn, const qkv_nn_mha_config *cfg, mha_dims *m) {
    NN_NONNULL(fn, cfg);
    NN_REQUIRE(cfg->C > 0, "%s: cfg->C must be positive (got %lld)", fn, (long long)cfg->C);
    NN_REQUIRE(cfg->H > 0, "%s: cfg->H must be positive (got %lld)", fn, (long long)cfg->H);
    NN_REQUIRE(cfg->C_kv >= 0, "%s: cfg->C_kv must be >= 0 (got %lld)", fn, (long long)cfg->C_kv);
    NN_REQUIRE(cfg->H_kv >= 0, "%s: cfg->H_kv must be >= 0 (got %lld)", fn, (long long)cfg->H_kv);
    NN_REQUIRE(cfg->D >= 0, "%s: cfg->D must be >= 0 (got %lld)", fn, (long long)cfg->D);
    m->C = cfg->C;
    m->Ckv = cfg->C_kv ? cfg->C_kv : cfg->C;
    m->H = cfg->H;
    m->Hk = cfg->H_kv ? cfg->H_kv : cfg->H;
    NN_REQUIRE(m->H % m->Hk == 0, "%s: cfg->H = %lld is not a multiple of cfg->H_kv = %lld", fn,
               (long long)m->H, (long long)m->Hk);
    if (cfg->D) {
        m->D = cfg->D;
    } else {
        NN_REQUIRE(cfg->C % cfg->H == 0,
                   "%s: cfg->D is 0 but cfg->C = %lld is not a multiple of cfg->H = %lld", fn,
                   (long long)cfg->C, (long long)cfg->H);
        m->D = cfg->C / cfg->H;
    }
    NN_NUMEL2(fn, "H*D", m->H, m->D, m->Q);
    NN_NUMEL2(fn, "H_kv*D", m->Hk, m->D, m->K);
    NN_REQUIRE(isfinite(cfg->scale), "%s: cfg->scale is not finite", fn);
    if (cfg->rope) {
        const qkv_nn_rope *r = cfg->rope;
        int64_t R = r->dims ? r->dims : m->D;
        NN_REQUIRE(r->style == QKV_NN_ROPE_INTERLEAVED || r->style == QKV_NN_ROPE_HALF,
                   "%s: cfg->rope->style = %d is not a qkv_nn_rope_style", fn, (int)r->style);
        NN_REQUIRE(r->theta > 0 && isfinite(r->theta), "%s: cfg->rope->theta must be positive", fn);
        NN_REQUIRE(R > 0 && R <= m->D && R % 2 == 0,
                   "%s: cfg->rope->dims = %lld must be even and in (0, D = %lld]", fn,
                   (long long)r->dims, (long long)m->D);
    }
    return QKV_OK;
}

/* Checks the sizes of one call: every tensor's element count fits. */
static qkv_status mha_sizes_check(const char *fn, const mha_dims *m, int64_t B, int64_t Tq,
                                  int64_t Tk) {
    int64_t nq, nk, t;
    NN_POSITIVE(fn, B);
    NN_POSITIVE(fn, Tq);
    NN_POSITIVE(fn, Tk);
    NN_NUMEL2(fn, "B*Tq", B, Tq, nq);
    NN_NUMEL2(fn, "B*Tk", B, Tk, nk);
    NN_NUMEL2(fn, "B*Tq*H*D", nq, m->Q, t);
    NN_NUMEL2(fn, "B*Tq*C", nq, m->C, t);
    NN_NUMEL2(fn, "B*Tk*H_kv*D", nk, m->K, t);
    NN_NUMEL2(fn, "B*Tk*C_kv", nk, m->Ckv, t);
    NN_NUMEL2(fn, "H*D*C", m->Q, m->C, t);
    NN_NUMEL2(fn, "H_kv*D*C_kv", m->K, m->Ckv, t);
    NN_NUMEL2(fn, "B*H*Tq", nq, m->H, t);
    return QKV_OK;
}

qkv_status qkv__nn_mha_acts_layout(const char *fn, nn_layout *l, qkv_nn_mha_acts *acts,
                                   const qkv_nn_mha_config *cfg, int64_t B, int64_t Tq,
                                   int64_t Tk) {
    mha_dims m = {0};
    QKV_TRY(mha_dims_resolve(fn, cfg, &m));
    QKV_TRY(mha_sizes_check(fn, &m, B, Tq, Tk));
    qkv_nn_mha_acts a;
    a.q = nn_take(l, B * Tq * m.Q);
    a.k = nn_take(l, B * Tk * m.K);
    a.v = nn_take(l, B * Tk * m.K);
    a.att = nn_take(l, B * Tq * m.Q);
    a.lse = nn_take(l, B * m.H * Tq);
    NN_REQUIRE(!l->overflow, "%s: the activations' total size overflows", fn);
    if (acts) *acts = a;
    return QKV_OK;
}

qkv_status qkv_nn_mha_acts_size(const qkv_nn_mha_config *cfg, int64_t B, int64_t Tq, int64_t Tk,
                                int64_t *n_floats) {
    static const char fn[] = "qkv_nn_mha_acts_size";
    NN_NONNULL(fn, n_floats);
    nn_layout l = {0};
    QKV_TRY(qkv__nn_mha_acts_layout(fn, &l, NULL, cfg, B, Tq, Tk));
    *n_floats = l.used;
    return QKV_OK;
}

qkv_status qkv_nn_mha_acts_bind(qkv_nn_mha_acts *acts, const qkv_nn_mha_config *cfg, int64_t B,
                                int64_t Tq, int64_t Tk, float *mem) {
    static const char fn[] = "qkv_nn_mha_acts_bind";
    NN_NONNULL(fn, acts);
    NN_NONNULL(fn, mem);
    nn_layout l = {.base = mem};
    return qkv__nn_mha_acts_layout(fn, &l, acts, cfg, B, Tq, Tk);
}

/* Validates one forward/backward call; resolves dims and weights. */
static qkv_status mha_prepare(const char *fn, const qkv_nn_mha_config *cfg,
                              const qkv_nn_mha_params *params, const qkv_nn_attn_mask *mask,
                              const float *x, const float *mem, const qkv_nn_mha_acts *acts,
                              int64_t B, int64_t Tq, int64_t Tk, mha_dims *m, mha_w *w) {
    NN_NONNULL(fn, x);
    NN_NONNULL(fn, params);
    NN_NONNULL(fn, acts);
    QKV_TRY(mha_dims_resolve(fn, cfg, m));
    QKV_TRY(mha_sizes_check(fn, m, B, Tq, Tk));
    NN_REQUIRE(mem || Tk == Tq, "%s: self-attention (mem NULL) needs Tk == Tq (got %lld, %lld)", fn,
               (long long)Tk, (long long)Tq);
    NN_REQUIRE(mem || m->Ckv == m->C,
               "%s: self-attention (mem NULL) needs cfg->C_kv == cfg->C or 0 (got %lld)", fn,
               (long long)cfg->C_kv);
    NN_REQUIRE(!cfg->fused_qkv || m->Ckv == m->C,
               "%s: fused_qkv needs cfg->C_kv == cfg->C or 0 (got %lld)", fn, (long long)cfg->C_kv);
    NN_REQUIRE(acts->q && acts->k && acts->v && acts->att && acts->lse,
               "%s: acts has a NULL buffer (use qkv_nn_mha_acts_bind)", fn);
    const qkv_nn_mha_params *p = params;
    if (cfg->fused_qkv) {
        NN_REQUIRE(p->w_qkv != NULL, "%s: params->w_qkv is NULL (cfg->fused_qkv is set)", fn);
        w->w_q = p->w_qkv;
        w->w_k = p->w_qkv + m->Q * m->C;
        w->w_v = w->w_k + m->K * m->C;
        w->b_q = p->b_qkv;
        w->b_k = p->b_qkv ? p->b_qkv + m->Q : NULL;
        w->b_v = p->b_qkv ? p->b_qkv + m->Q + m->K : NULL;
    } else {
        NN_REQUIRE(p->w_q != NULL, "%s: params->w_q is NULL", fn);
        NN_REQUIRE(p->w_k != NULL, "%s: params->w_k is NULL", fn);
        NN_REQUIRE(p->w_v != NULL, "%s: params->w_v is NULL", fn);
        w->w_q = p->w_q, w->w_k = p->w_k, w->w_v = p->w_v;
        w->b_q = p->b_q, w->b_k = p->b_k, w->b_v = p->b_v;
    }
    NN_REQUIRE(p->w_o != NULL, "%s: params->w_o is NULL", fn);
    w->w_o = p->w_o;
    w->b_o = p->b_o;
    if (mask && mask->kv_lens)
        for (int64_t b = 0; b < B; b++)
            NN_REQUIRE(mask->kv_lens[b] >= 0 && mask->kv_lens[b] <= Tk,
                       "%s: mask->kv_lens[%lld] = %d is outside [0, Tk = %lld]", fn, (long long)b,
                       (int)mask->kv_lens[b], (long long)Tk);
    NN_REQUIRE(!mask || (mask->dropout_p >= 0.0f && mask->dropout_p < 1.0f),
               "%s: mask->dropout_p must be in [0, 1) (got %g)", fn,
               mask ? (double)mask->dropout_p : 0.0);
    return QKV_OK;
}

static qkv_attention_desc mha_desc(const mha_dims *m, const qkv_nn_mha_config *cfg,
                                   const qkv_nn_attn_mask *mask, int64_t B, int64_t Tq,
                                   int64_t Tk) {
    qkv_attention_desc d;
    memset(&d, 0, sizeof d);
    d.batch = B;
    d.q_len = Tq;
    d.kv_len = Tk;
    d.n_heads = m->H;
    d.n_kv_heads = m->Hk;
    d.head_dim = m->D;
    d.v_head_dim = m->D;
    d.scale = cfg->scale;
    d.window_left = -1;
    d.window_right = -1;
    if (mask) {
        d.causal = mask->causal;
        d.kv_lens = mask->kv_lens;
        d.alibi_slopes = mask->alibi_slopes;
        d.dropout_p = mask->dropout_p;
        d.dropout_seed = mask->dropout_seed;
        if (mask->window) d.window_left = mask->window_left, d.window_right = mask->window_right;
    }
    return d;
}

/* What a forward computes: everything, only the source's K/V (cross-attention: once per
 * source), or everything but the K/V (reusing acts->k, acts->v from a KV_ONLY call). */
typedef enum { MHA_ALL = 0, MHA_KV_ONLY = 1, MHA_KV_READY = 2 } mha_part;

static qkv_status mha_forward_part(const qkv__nn_ops *ops, mha_part part, const char *fn,
                                   qkv_runtime *rt, float *out, qkv_nn_mha_acts *acts,
                                   const float *x, const float *mem,
                                   const qkv_nn_mha_params *params, const qkv_nn_mha_config *cfg,
                                   const qkv_nn_attn_mask *mask, int64_t B, int64_t Tq,
                                   int64_t Tk) {
    mha_dims m = {0};
    mha_w w = {0};
    if (part != MHA_KV_ONLY) NN_NONNULL(fn, out);
    QKV_TRY(mha_prepare(fn, cfg, params, mask, x, mem, acts, B, Tq, Tk, &m, &w));
    const float *src = mem ? mem : x; /* (B, Tk, C_kv) */
    const int64_t NQ = B * Tq, NK = B * Tk;
    if (part != MHA_KV_READY) {
        QKV_TRY(ops->linear_fwd(rt, acts->k, src, w.w_k, w.b_k, NK, m.Ckv, m.K)); /* (B,Tk,Hk,D) */
        QKV_TRY(ops->linear_fwd(rt, acts->v, src, w.w_v, w.b_v, NK, m.Ckv, m.K)); /* (B,Tk,Hk,D) */
        if (cfg->rope) QKV_TRY(ops->rope_fwd(rt, acts->k, acts->k, cfg->rope, B, Tk, m.Hk, m.D, 0));
    }
    if (part == MHA_KV_ONLY) return QKV_OK;
    QKV_TRY(ops->linear_fwd(rt, acts->q, x, w.w_q, w.b_q, NQ, m.C, m.Q)); /* (B,Tq,H,D) */
    if (cfg->rope) QKV_TRY(ops->rope_fwd(rt, acts->q, acts->q, cfg->rope, B, Tq, m.H, m.D, 0));
    qkv_attention_desc d = mha_desc(&m, cfg, mask, B, Tq, Tk);
    QKV_TRY(qkv_attention_forward(rt, &d, acts->q, acts->k, acts->v, acts->att, acts->lse));
    return ops->linear_fwd(rt, out, acts->att, w.w_o, w.b_o, NQ, m.Q, m.C); /* (B,Tq,C) */
}

qkv_status qkv__nn_mha_forward(const qkv__nn_ops *ops, qkv_runtime *rt, float *out,
                               qkv_nn_mha_acts *acts, const float *x, const float *mem,
                               const qkv_nn_mha_params *params, const qkv_nn_mha_config *cfg,
                               const qkv_nn_attn_mask *mask, int64_t B, int64_t Tq, int64_t Tk) {
    const char *fn = ops == &qkv__nn_ops_ref ? "qkv_nn_mha_forward_ref" : "qkv_nn_mha_forward";
    return mha_forward_part(ops, MHA_ALL, fn, rt, out, acts, x, mem, params, cfg, mask, B, Tq, Tk);
}

qkv_status qkv__nn_mha_backward(const qkv__nn_ops *ops, qkv_runtime *rt, float *dx, float *dmem,
                                const qkv_nn_mha_grads *grads, const float *dout, const float *x,
                                const float *mem, const qkv_nn_mha_acts *acts,
                                const qkv_nn_mha_params *params, const qkv_nn_mha_config *cfg,
                                const qkv_nn_attn_mask *mask, int64_t B, int64_t Tq, int64_t Tk) {
    const char *fn = ops == &qkv__nn_ops_ref ? "qkv_nn_mha_backward_ref" : "qkv_nn_mha_backward";
    mha_dims m = {0};
    mha_w w = {0};
    NN_NONNULL(fn, dout);
    QKV_TRY(mha_prepare(fn, cfg, params, mask, x, mem, acts, B, Tq, Tk, &m, &w));
    NN_REQUIRE(mem || !dmem, "%s: dmem must be NULL for self-attention (mem NULL)", fn);

    mha_g g = {0};
    if (grads && cfg->fused_qkv) {
        if (grads->w_qkv) {
            g.w_q = grads->w_qkv;
            g.w_k = grads->w_qkv + m.Q * m.C;
            g.w_v = g.w_k + m.K * m.C;
        }
        if (grads->b_qkv && params->b_qkv) {
            g.b_q = grads->b_qkv;
            g.b_k = grads->b_qkv + m.Q;
            g.b_v = grads->b_qkv + m.Q + m.K;
        }
    } else if (grads) {
        g.w_q = grads->w_q, g.w_k = grads->w_k, g.w_v = grads->w_v;
        g.b_q = w.b_q ? grads->b_q : NULL;
        g.b_k = w.b_k ? grads->b_k : NULL;
        g.b_v = w.b_v ? grads->b_v : NULL;
    }
    if (grads) {
        g.w_o = grads->w_o;
        g.b_o = w.b_o ? grads->b_o : NULL;
    }

    const int64_t NQ = B * Tq, NK = B * Tk;
    const int64_t nq = NQ * m.Q, nk = NK * m.K; /* elements of q / att, of k / v */
    const int rope = cfg->rope != NULL;
    /* scratch: datt, dq, dk, dv (+ the un-rotated dq0, dk0 with RoPE); zeroed because datt,
     * dq0 and dk0 accumulate (dq, dk, dv are overwritten by the attention backward) */
    const size_t n_scratch = (size_t)(2 * nq + 2 * nk) + (rope ? (size_t)(nq + nk) : 0);
    float *scratch = qkv__calloc(n_scratch, sizeof(float));
    if (!scratch) return qkv__fail(QKV_ERR_NOMEM, "%s: out of memory (%zu floats)", fn, n_scratch);
    float *datt = scratch; /* (B, Tq, H, D) */
    float *dq = datt + nq; /* (B, Tq, H, D) */
    float *dk = dq + nq;   /* (B, Tk, Hk, D) */
    float *dv = dk + nk;   /* (B, Tk, Hk, D) */
    float *dq0 = dv + nk;  /* (B, Tq, H, D) before RoPE */
    float *dk0 = dq0 + nq; /* (B, Tk, Hk, D) before RoPE */
    const float *src = mem ? mem : x;
    float *dsrc = mem ? dmem : dx;
    qkv_status st;

    st = ops->linear_bwd(rt, datt, g.w_o, g.b_o, dout, acts->att, w.w_o, NQ, m.Q, m.C);
    if (st == QKV_OK) {
        qkv_attention_desc d = mha_desc(&m, cfg, mask, B, Tq, Tk);
        st = qkv_attention_backward(rt, &d, acts->q, acts->k, acts->v, acts->att, acts->lse, datt,
                                    dq, dk, dv);
    }
    if (st == QKV_OK && rope) {
        st = ops->rope_bwd(rt, dq0, dq, cfg->rope, B, Tq, m.H, m.D, 0);
        if (st == QKV_OK) st = ops->rope_bwd(rt, dk0, dk, cfg->rope, B, Tk, m.Hk, m.D, 0);
        dq = dq0;
        dk = dk0;
    }
    if (st == QKV_OK) st = ops->linear_bwd(rt, dx, g.w_q, g.b_q, dq, x, w.w_q, NQ, m.C, m.Q);
    if (st == QKV_OK) st = ops->linear_bwd(rt, dsrc, g.w_k, g.b_k, dk, src, w.w_k, NK, m.Ckv, m.K);
    if (st == QKV_OK) st = ops->linear_bwd(rt, dsrc, g.w_v, g.b_v, dv, src, w.w_v, NK, m.Ckv, m.K);
    qkv__free(scratch);
    return st;
}

/* ---------------------------------------------------------------- the two forms */

qkv_status qkv_nn_mha_forward_ref(qkv_runtime *rt, float *out, qkv_nn_mha_acts *acts,
                                  const float *x, const float *mem, const qkv_nn_mha_params *params,
                                  const qkv_nn_mha_config *cfg, const qkv_nn_attn_mask *mask,
                                  int64_t B, int64_t Tq, int64_t Tk) {
    return qkv__nn_mha_forward(&qkv__nn_ops_ref, rt, out, acts, x, mem, params, cfg, mask, B, Tq,
                               Tk);
}

qkv_status qkv_nn_mha_forward(qkv_runtime *rt, float *out, qkv_nn_mha_acts *acts, const float *x,
                              const float *mem, const qkv_nn_mha_params *params,
                              const qkv_nn_mha_config *cfg, const qkv_nn_attn_mask *mask, int64_t B,
                              int64_t Tq, int64_t Tk) {
    return qkv__nn_mha_forward(&qkv__nn_ops_fast, rt, out, acts, x, mem, params, cfg, mask, B, Tq,
                               Tk);
}

qkv_status qkv_nn_mha_backward_ref(qkv_runtime *rt, float *dx, float *dmem,
                                   const qkv_nn_mha_grads *grads, const float *dout, const float *x,
                                   const float *mem, const qkv_nn_mha_acts *acts,
                                   const qkv_nn_mha_params *params, const qkv_nn_mha_config *cfg,
                                   const qkv_nn_attn_mask *mask, int64_t B, int64_t Tq,
                                   int64_t Tk) {
    return qkv__nn_mha_backward(&qkv__nn_ops_ref, rt, dx, dmem, grads, dout, x, mem, acts, params,
                                cfg, mask, B, Tq, Tk);
}

qkv_status qkv_nn_mha_backward(qkv_runtime *rt, float *dx, float *dmem,
                               const qkv_nn_mha_grads *grads, const float *dout, const float *x,
                               const float *mem, const qkv_nn_mha_acts *acts,
                               const qkv_nn_mha_params *params, const qkv_nn_mha_config *cfg,
                               const qkv_nn_attn_mask *mask, int64_t B, int64_t Tq, int64_t Tk) {
    return qkv__nn_mha_backward(&qkv__nn_ops_fast, rt, dx, dmem, grads, dout, x, mem, acts, params,
                                cfg, mask, B, Tq, Tk);
}

/* ---------------------------------------------------------------- K/V once per source */

qkv_status qkv_nn_mha_kv_forward(qkv_runtime *rt, qkv_nn_mha_acts *acts, const float *mem,
                                 const qkv_nn_mha_params *params, const qkv_nn_mha_config *cfg,
                                 int64_t B, int64_t Tk) {
    static const char fn[] = "qkv_nn_mha_kv_forward";
    NN_NONNULL(fn, mem);
    /* the query side is not computed: its sizes are those of one query row */
    return mha_forward_part(&qkv__nn_ops_fast, MHA_KV_ONLY, fn, rt, NULL, acts, mem, mem, params,
                            cfg, NULL, B, 1, Tk);
}

qkv_status qkv_nn_mha_forward_kv(qkv_runtime *rt, float *out, qkv_nn_mha_acts *acts, const float *x,
                                 const qkv_nn_mha_params *params, const qkv_nn_mha_config *cfg,
                                 const qkv_nn_attn_mask *mask, int64_t B, int64_t Tq, int64_t Tk) {
    static const char fn[] = "qkv_nn_mha_forward_kv";
    /* mem is only checked for presence here: the K/V it gave are in acts */
    return mha_forward_part(&qkv__nn_ops_fast, MHA_KV_READY, fn, rt, out, acts, x, x, params, cfg,
                            mask, B, Tq, Tk);
}
