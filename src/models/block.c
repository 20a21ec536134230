/* block.c — the forward of each family's Transformer block (see block.h): a list of layer calls
 * that inference and training share. */
#include "models/block.h"

#include "core/error.h"

#include <string.h>

void qkv__split_rows(const float *src, int64_t N, int64_t w0, int64_t w1, int64_t w2, float *d0,
                     float *d1, float *d2) {
    const int64_t w = w0 + w1 + (d2 ? w2 : 0);
    for (int64_t r = 0; r < N; r++) {
        const float *s = src + r * w;
        memcpy(d0 + r * w0, s, sizeof(float) * (size_t)w0);
        memcpy(d1 + r * w1, s + w0, sizeof(float) * (size_t)w1);
        if (d2) memcpy(d2 + r * w2, s + w0 + w1, sizeof(float) * (size_t)w2);
    }
}

qkv_status qkv__dec_block_forward(qkv_runtime *rt, const qkv__dec_cfg *c, const qkv__dec_layer *w,
                                  int64_t l, const qkv__block_acts *a, const float *x, float *y,
                                  int64_t N, qkv__attend_fn attend, void *ctx) {
    const int64_t C = c->C, F = c->F;
    /* attention: res2 = x + O(attend(Q ln1, K ln1, V ln1)), ln1 = Norm1(x) */
    if (c->llama)
        QKV_TRY(qkv_nn_rmsnorm_forward(rt, a->ln1, a->rstd1, x, w->ln1_w, N, C, c->eps));
    else
        QKV_TRY(qkv_nn_layernorm_forward(rt, a->ln1, a->mean1, a->rstd1, x, w->ln1_w, w->ln1_b, N,
                                         C, c->eps));
    if (w->qkv.C) { /* one product, split */
        if (!a->fused) return qkv__fail(QKV_ERR_INTERNAL, "decoder block: no fused scratch");
        QKV_TRY(qkv_nn_linear_forward(rt, &w->qkv, a->fused, a->ln1, N, QKV_ACT_NONE, NULL));
        qkv__split_rows(a->fused, N, c->Q, c->K, c->K, a->q, a->k, a->v);
    } else {
        QKV_TRY(qkv_nn_linear_forward(rt, &w->q, a->q, a->ln1, N, QKV_ACT_NONE, NULL));
        QKV_TRY(qkv_nn_linear_forward(rt, &w->k, a->k, a->ln1, N, QKV_ACT_NONE, NULL));
        QKV_TRY(qkv_nn_linear_forward(rt, &w->v, a->v, a->ln1, N, QKV_ACT_NONE, NULL));
    }
    QKV_TRY(attend(ctx, rt, l, a));
    QKV_TRY(qkv_nn_linear_forward(rt, &w->o, a->res2, a->att, N, QKV_ACT_NONE, x));
    /* MLP: y = res2 + MLP(ln2), ln2 = Norm2(res2) */
    if (c->llama) {
        QKV_TRY(qkv_nn_rmsnorm_forward(rt, a->ln2, a->rstd2, a->res2, w->ln2_w, N, C, c->eps));
        if (w->gate_up.C) {
            if (!a->fused) return qkv__fail(QKV_ERR_INTERNAL, "decoder block: no fused scratch");
            QKV_TRY(
                qkv_nn_linear_forward(rt, &w->gate_up, a->fused, a->ln2, N, QKV_ACT_NONE, NULL));
            qkv__split_rows(a->fused, N, F, F, 0, a->h, a->u, NULL);
        } else {
            QKV_TRY(qkv_nn_linear_forward(rt, &w->gate, a->h, a->ln2, N, QKV_ACT_NONE, NULL));
            QKV_TRY(qkv_nn_linear_forward(rt, &w->fc, a->u, a->ln2, N, QKV_ACT_NONE, NULL));
        }
        QKV_TRY(qkv_nn_swiglu_forward(rt, a->a, a->h, a->u, N * F));
    } else {
        QKV_TRY(qkv_nn_layernorm_forward(rt, a->ln2, a->mean2, a->rstd2, a->res2, w->ln2_w,
                                         w->ln2_b, N, C, c->eps));
        if (a->h) { /* training keeps the pre-activation for the backward */
            QKV_TRY(qkv_nn_linear_forward(rt, &w->fc, a->h, a->ln2, N, QKV_ACT_NONE, NULL));
            QKV_TRY(qkv_nn_act_forward(rt, c->act, a->a, a->h, N * F));
        } else { /* inference: the activation in the GEMM epilogue */
            QKV_TRY(qkv_nn_linear_forward(rt, &w->fc, a->a, a->ln2, N, c->act, NULL));
        }
    }
    return qkv_nn_linear_forward(rt, &w->proj, y, a->a, N, QKV_ACT_NONE, a->res2);
}

/* a->a (N, F) = act(x W1ᵀ + b1): training keeps the pre-activation a->h for the backward and
 * drops out c->act_drop of a->a (stream qkv__enc_drop_stream(l, site) of seed ^
 * QKV__ACT_DROP_SEED); inference (a->h NULL) runs the activation in the GEMM epilogue. */
static qkv_status mlp_in(qkv_runtime *rt, const qkv__enc_cfg *c, const qkv_nn_linear *fc,
                         const qkv__block_acts *a, const float *x, int64_t N, int64_t l, int site) {
    const int64_t F = c->F;
    if (!a->h) return qkv_nn_linear_forward(rt, fc, a->a, x, N, c->act, NULL);
    QKV_TRY(qkv_nn_linear_forward_pre(rt, fc, a->a, a->h, x, N, c->act)); /* h and act(h) */
    if (c->act_drop > 0.0f)
        QKV_TRY(qkv_nn_dropout_forward(rt, a->a, a->a, N * F, c->act_drop,
                                       c->seed ^ QKV__ACT_DROP_SEED,
                                       qkv__enc_drop_stream(l, site)));
    return QKV_OK;
}

qkv_status qkv__enc_block_forward(qkv_runtime *rt, const qkv__enc_cfg *c, const qkv__enc_layer *w,
                                  int64_t l, const qkv__block_acts *a, const float *x, float *y,
                                  int64_t N, qkv__attend_fn attend, void *ctx) {
    /* ln1 = LN1(x + O(attend(Q x, K x, V x))) */
    QKV_TRY(qkv_nn_linear_forward(rt, &w->q, a->q, x, N, QKV_ACT_NONE, NULL));
    QKV_TRY(qkv_nn_linear_forward(rt, &w->k, a->k, x, N, QKV_ACT_NONE, NULL));
    QKV_TRY(qkv_nn_linear_forward(rt, &w->v, a->v, x, N, QKV_ACT_NONE, NULL));
    QKV_TRY(attend(ctx, rt, l, a));
    return qkv__enc_block_tail_forward(rt, c, w, l, a, x, y, N);
}

qkv_status qkv__enc_block_tail_forward(qkv_runtime *rt, const qkv__enc_cfg *c,
                                       const qkv__enc_layer *w, int64_t l, const qkv__block_acts *a,
                                       const float *x, float *y, int64_t N) {
    const int64_t C = c->C;
    if (c->drop > 0.0f) { /* res1 = x + drop(att Woᵀ + bo) */
        QKV_TRY(qkv_nn_linear_forward(rt, &w->o, a->res1, a->att, N, QKV_ACT_NONE, NULL));
        QKV_TRY(qkv_nn_dropout_forward(rt, a->res1, a->res1, N * C, c->drop, c->seed,
                                       qkv__enc_drop_stream(l, 0)));
        QKV_TRY(qkv_nn_residual_forward(rt, a->res1, a->res1, x, N * C));
    } else {
        QKV_TRY(qkv_nn_linear_forward(rt, &w->o, a->res1, a->att, N, QKV_ACT_NONE, x));
    }
    QKV_TRY(qkv_nn_layernorm_forward(rt, a->ln1, a->mean1, a->rstd1, a->res1, w->ln1_w, w->ln1_b, N,
                                     C, c->eps));
    /* y = LN2(ln1 + act(ln1 W1ᵀ + b1) W2ᵀ + b2) */
    QKV_TRY(mlp_in(rt, c, &w->fc, a, a->ln1, N, l, 0));
    if (c->drop > 0.0f) { /* res2 = ln1 + drop(a W2ᵀ + b2) */
        QKV_TRY(qkv_nn_linear_forward(rt, &w->out, a->res2, a->a, N, QKV_ACT_NONE, NULL));
        QKV_TRY(qkv_nn_dropout_forward(rt, a->res2, a->res2, N * C, c->drop, c->seed,
                                       qkv__enc_drop_stream(l, 1)));
        QKV_TRY(qkv_nn_residual_forward(rt, a->res2, a->res2, a->ln1, N * C));
    } else {
        QKV_TRY(qkv_nn_linear_forward(rt, &w->out, a->res2, a->a, N, QKV_ACT_NONE, a->ln1));
    }
    return qkv_nn_layernorm_forward(rt, y, a->mean2, a->rstd2, a->res2, w->ln2_w, w->ln2_b, N, C,
                                    c->eps);
}

/* out = inp + drop(out) when p > 0 (training); the sublayer output is already in out. */
static qkv_status drop_add(qkv_runtime *rt, float *out, const float *inp, int64_t n, float p,
                           uint64_t seed, uint64_t stream) {
    QKV_TRY(qkv_nn_dropout_forward(rt, out, out, n, p, seed, stream));
    return qkv_nn_residual_forward(rt, out, out, inp, n);
}

qkv_status qkv__s2s_dec_block_forward(qkv_runtime *rt, const qkv__enc_cfg *c,
                                      const qkv__s2s_dec_layer *w, int64_t l,
                                      const qkv__block_acts *a, const float *x, float *y, int64_t N,
                                      qkv__attend_fn attend, qkv__attend_fn cross, void *ctx) {
    const int64_t C = c->C;
    const int drop = c->drop > 0.0f;
    float *r2 = a->h ? a->res2 : a->res1; /* inference: one buffer for both attention sums */
    /* h1 = LN1(x + drop(O(attend(Q x, K x, V x)))) */
    QKV_TRY(qkv_nn_linear_forward(rt, &w->q, a->q, x, N, QKV_ACT_NONE, NULL));
    QKV_TRY(qkv_nn_linear_forward(rt, &w->k, a->k, x, N, QKV_ACT_NONE, NULL));
    QKV_TRY(qkv_nn_linear_forward(rt, &w->v, a->v, x, N, QKV_ACT_NONE, NULL));
    QKV_TRY(attend(ctx, rt, l, a));
    QKV_TRY(qkv_nn_linear_forward(rt, &w->o, a->res1, a->att, N, QKV_ACT_NONE, drop ? NULL : x));
    if (drop)
        QKV_TRY(drop_add(rt, a->res1, x, N * C, c->drop, c->seed, qkv__enc_drop_stream(l, 0)));
    QKV_TRY(qkv_nn_layernorm_forward(rt, a->ln1, a->mean1, a->rstd1, a->res1, w->ln1_w, w->ln1_b, N,
                                     C, c->eps));
    /* h2 = LN2(h1 + drop(CO(cross(CQ h1)))) */
    QKV_TRY(qkv_nn_linear_forward(rt, &w->cq, a->cq, a->ln1, N, QKV_ACT_NONE, NULL));
    QKV_TRY(cross(ctx, rt, l, a));
    QKV_TRY(qkv_nn_linear_forward(rt, &w->co, r2, a->catt, N, QKV_ACT_NONE, drop ? NULL : a->ln1));
    if (drop)
        QKV_TRY(drop_add(rt, r2, a->ln1, N * C, c->drop, c->seed, qkv__enc_drop_stream(l, 1)));
    QKV_TRY(qkv_nn_layernorm_forward(rt, a->ln2, a->mean2, a->rstd2, r2, w->ln2_w, w->ln2_b, N, C,
                                     c->eps));
    /* y = LN3(h2 + drop(drop_act(act(h2 W1ᵀ + b1)) W2ᵀ + b2)) */
    QKV_TRY(mlp_in(rt, c, &w->fc, a, a->ln2, N, l, 1));
    QKV_TRY(
        qkv_nn_linear_forward(rt, &w->out, a->res3, a->a, N, QKV_ACT_NONE, drop ? NULL : a->ln2));
    if (drop)
        QKV_TRY(
            drop_add(rt, a->res3, a->ln2, N * C, c->drop, c->seed + 1, qkv__enc_drop_stream(l, 0)));
    return qkv_nn_layernorm_forward(rt, y, a->mean3, a->rstd3, a->res3, w->ln3_w, w->ln3_b, N, C,
                                    c->eps);
}
