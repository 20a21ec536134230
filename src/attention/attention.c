/* attention.c — the public attention entry points: qkv_attention_forward, _forward_bf16,
 * _backward, _probs.
 *
 * Owns descriptor validation (every message names the offending field) and the choice of
 * implementation, after the same validation, so every implementation sees only problems that
 * satisfy the invariants listed in attention.h: forward and backward run the fused kernels
 * (flash_fwd.c, flash_bwd.c) with the active ISA's micro-kernels when that ISA is avx2 or
 * avx512 (with or without dropout); the scalar ISA and probs run the reference in
 * attention_ref.c (the oracle). The bf16 forward widens q, k, v exactly to float (per tile in
 * the fused path, whole tensors for the reference) and is otherwise the float forward. */
#include "attention/attention.h"
#include "attention/flash.h"
#include "core/abi.h"
#include "core/alloc.h"
#include "core/error.h"
#include "kernels/dispatch.h"

#include <math.h>

/* a * b into *out; 1 if it overflows int64 (operands are >= 0). */
static int mul_i64(int64_t a, int64_t b, int64_t *out) { return __builtin_mul_overflow(a, b, out); }

/* Element count of a product of four sizes, checked to fit int64 also as a byte count of
 * floats (so that callers may allocate or index it). */
static qkv_status check_count(const char *fn, const char *what, int64_t a, int64_t b, int64_t c,
                              int64_t e) {
    int64_t n;
    if (mul_i64(a, b, &n) || mul_i64(n, c, &n) || mul_i64(n, e, &n) ||
        mul_i64(n, (int64_t)sizeof(float), &n) || (uint64_t)n > (uint64_t)SIZE_MAX)
        return qkv__fail(QKV_ERR_INVALID_ARG,
                         "%s: the size of %s (%lld x %lld x %lld x %lld floats) overflows", fn,
                         what, (long long)a, (long long)b, (long long)c, (long long)e);
    return QKV_OK;
}

static qkv_status check_positive(const char *fn, const char *field, int64_t v) {
    if (v <= 0)
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: desc->%s = %lld must be > 0", fn, field,
                         (long long)v);
    return QKV_OK;
}

static qkv_status check_window(const char *fn, const char *field, int64_t v) {
    if (v < -1)
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: desc->%s = %lld must be -1 (unlimited) or >= 0",
                         fn, field, (long long)v);
    return QKV_OK;
}

/* The largest bias index (B-1)*sb + (Hq-1)*sh + (Tq-1)*sq + Tk-1 must fit int64. */
static qkv_status check_bias(const char *fn, const qkv_attention_desc *d) {
    const char *names[3] = {"bias_stride_b", "bias_stride_h", "bias_stride_q"};
    int64_t strides[3] = {d->bias_stride_b, d->bias_stride_h, d->bias_stride_q};
    int64_t extent[3] = {d->batch - 1, d->n_heads - 1, d->q_len - 1};
    int64_t last = d->kv_len - 1, t;
    for (int a = 0; a < 3; a++) {
        if (strides[a] < 0)
            return qkv__fail(QKV_ERR_INVALID_ARG, "%s: desc->%s = %lld must be >= 0", fn, names[a],
                             (long long)strides[a]);
        if (mul_i64(extent[a], strides[a], &t) || __builtin_add_overflow(last, t, &last))
            return qkv__fail(QKV_ERR_INVALID_ARG,
                             "%s: the largest bias index overflows (desc->%s = %lld)", fn, names[a],
                             (long long)strides[a]);
    }
    return QKV_OK;
}

qkv_status qkv__attn_validate(const char *fn, const qkv_attention_desc *d, int need_grid,
                              qkv__attn_problem *pb) {
    if (!d) return qkv__fail(QKV_ERR_INVALID_ARG, "%s: desc is NULL", fn);
    QKV_TRY(check_positive(fn, "batch", d->batch));
    QKV_TRY(check_positive(fn, "q_len", d->q_len));
    QKV_TRY(check_positive(fn, "kv_len", d->kv_len));
    QKV_TRY(check_positive(fn, "n_heads", d->n_heads));
    QKV_TRY(check_positive(fn, "n_kv_heads", d->n_kv_heads));
    QKV_TRY(check_positive(fn, "head_dim", d->head_dim));
    if (d->v_head_dim < 0)
        return qkv__fail(QKV_ERR_INVALID_ARG,
                         "%s: desc->v_head_dim = %lld must be >= 0 (0 means head_dim)", fn,
                         (long long)d->v_head_dim);
    if (d->n_heads % d->n_kv_heads != 0)
        return qkv__fail(QKV_ERR_INVALID_ARG,
                         "%s: desc->n_kv_heads = %lld does not divide desc->n_heads = %lld", fn,
                         (long long)d->n_kv_heads, (long long)d->n_heads);
    if (!isfinite(d->scale))
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: desc->scale = %g is not finite", fn,
                         (double)d->scale);
    if (!(d->dropout_p >= 0.0f && d->dropout_p < 1.0f))
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: desc->dropout_p = %g is outside [0, 1)", fn,
                         (double)d->dropout_p);
    QKV_TRY(check_window(fn, "window_left", d->window_left));
    QKV_TRY(check_window(fn, "window_right", d->window_right));

    int64_t B = d->batch, Tq = d->q_len, Tk = d->kv_len, Hq = d->n_heads, Hk = d->n_kv_heads;
    int64_t D = d->head_dim, Dv = d->v_head_dim ? d->v_head_dim : d->head_dim;
    QKV_TRY(check_count(fn, "q [B, Tq, Hq, D]", B, Tq, Hq, D));
    QKV_TRY(check_count(fn, "k [B, Tk, Hk, D]", B, Tk, Hk, D));
    QKV_TRY(check_count(fn, "v [B, Tk, Hk, Dv]", B, Tk, Hk, Dv));
    QKV_TRY(check_count(fn, "out [B, Tq, Hq, Dv]", B, Tq, Hq, Dv));
    QKV_TRY(check_count(fn, "lse [B, Hq, Tq]", B, Hq, Tq, 1));
    /* The score grid is only indexed by probs and by dropout (its RNG counter). */
    if (need_grid || d->dropout_p > 0.0f)
        QKV_TRY(check_count(fn, "the scores [B, Hq, Tq, Tk]", B, Hq, Tq, Tk));
    if (d->bias) QKV_TRY(check_bias(fn, d));
    if (d->kv_lens) {
        for (int64_t b = 0; b < B; b++) {
            if (d->kv_lens[b] < 0 || d->kv_lens[b] > Tk)
                return qkv__fail(QKV_ERR_INVALID_ARG,
                                 "%s: desc->kv_lens[%lld] = %d is outside [0, kv_len = %lld]", fn,
                                 (long long)b, (int)d->kv_lens[b], (long long)Tk);
        }
    }

    pb->d = d;
    pb->B = B;
    pb->Tq = Tq;
    pb->Tk = Tk;
    pb->Hq = Hq;
    pb->Hk = Hk;
    pb->group = Hq / Hk;
    pb->D = D;
    pb->Dv = Dv;
    pb->scale = d->scale != 0.0f ? (double)d->scale : 1.0 / sqrt((double)D);
    pb->keep_scale = 1.0 / (1.0 - (double)d->dropout_p);
    return QKV_OK;
}

/* 1 (and *kr filled) if the fused path takes this problem: every problem, dropout included,
 * unless the active ISA is scalar (which keeps the double-precision reference). */
static int use_flash(const qkv__attn_problem *pb, qkv_attn_kernels *kr) {
    (void)pb;
    if (qkv_arch_active() == QKV_ARCH_SCALAR) return 0;
    qkv__kernels()->attn_f32_config(kr);
    return 1;
}

/* The program's descriptor copied into this version's layout (core/abi.h), then validated:
 * pb->d points at *local. */
static qkv_status desc_in(const char *fn, const qkv_attention_desc *d, qkv_attention_desc *local,
                          int need_grid, qkv__attn_problem *pb) {
    if (!d) return qkv__fail(QKV_ERR_INVALID_ARG, "%s: desc is NULL", fn);
    QKV_TRY(QKV__STRUCT_IN(qkv_attention_desc, local, d, NULL, fn));
    return qkv__attn_validate(fn, local, need_grid, pb);
}

static qkv_status need(const char *fn, const char *name, const void *p) {
    if (!p) return qkv__fail(QKV_ERR_INVALID_ARG, "%s: %s is NULL", fn, name);
    return QKV_OK;
}

/* The checks of both forwards: the descriptor, then q, k, v, out not NULL. */
static qkv_status forward_in(const char *fn, const qkv_attention_desc *d, qkv_attention_desc *dl,
                             qkv__attn_problem *pb, const void *q, const void *k, const void *v,
                             const float *out) {
    QKV_TRY(desc_in(fn, d, dl, 0, pb));
    QKV_TRY(need(fn, "q", q));
    QKV_TRY(need(fn, "k", k));
    QKV_TRY(need(fn, "v", v));
    return need(fn, "out", out);
}

qkv_status qkv_attention_forward(qkv_runtime *rt, const qkv_attention_desc *d, const float *q,
                                 const float *k, const float *v, float *out, float *lse) {
    qkv_attention_desc dl;
    qkv__attn_problem pb;
    QKV_TRY(forward_in("qkv_attention_forward", d, &dl, &pb, q, k, v, out));
    qkv_attn_kernels kr;
    if (use_flash(&pb, &kr)) return qkv__attention_forward_flash(rt, &pb, &kr, q, k, v, out, lse);
    return qkv__attention_forward_ref(rt, &pb, q, k, v, out, lse);
}

/* Widened copies of the bf16 q, k, v (the scalar ISA's path to the reference); *buf owns them. */
static qkv_status widen_all(const char *fn, const qkv__attn_problem *pb, const uint16_t *q,
                            const uint16_t *k, const uint16_t *v, float **buf, float **qf,
                            float **kf, float **vf) {
    size_t nq = (size_t)(pb->B * pb->Tq * pb->Hq * pb->D);
    size_t nk = (size_t)(pb->B * pb->Tk * pb->Hk * pb->D);
    size_t nv = (size_t)(pb->B * pb->Tk * pb->Hk * pb->Dv);
    if (nq + nk + nv > SIZE_MAX / sizeof(float) ||
        !(*buf = qkv__alloc((nq + nk + nv) * sizeof(float))))
        return qkv__fail(QKV_ERR_NOMEM, "%s: cannot allocate %zu floats for the widened q, k, v",
                         fn, nq + nk + nv);
    *qf = *buf, *kf = *qf + nq, *vf = *kf + nk;
    qkv_bf16_to_f32_n(q, *qf, nq);
    qkv_bf16_to_f32_n(k, *kf, nk);
    qkv_bf16_to_f32_n(v, *vf, nv);
    return QKV_OK;
}

qkv_status qkv_attention_forward_bf16(qkv_runtime *rt, const qkv_attention_desc *d,
                                      const uint16_t *q, const uint16_t *k, const uint16_t *v,
                                      float *out, float *lse) {
    static const char fn[] = "qkv_attention_forward_bf16";
    qkv_attention_desc dl;
    qkv__attn_problem pb;
    QKV_TRY(forward_in(fn, d, &dl, &pb, q, k, v, out));
    qkv_attn_kernels kr;
    if (use_flash(&pb, &kr))
        return qkv__attention_forward_flash_bf16(rt, &pb, &kr, qkv__kernels()->convert_bf16_f32, q,
                                                 k, v, out, lse);
    float *buf = NULL, *qf = NULL, *kf = NULL, *vf = NULL;
    QKV_TRY(widen_all(fn, &pb, q, k, v, &buf, &qf, &kf, &vf));
    qkv_status st = qkv__attention_forward_ref(rt, &pb, qf, kf, vf, out, lse);
    qkv__free(buf);
    return st;
}

qkv_status qkv_attention_backward(qkv_runtime *rt, const qkv_attention_desc *d, const float *q,
                                  const float *k, const float *v, const float *out,
                                  const float *lse, const float *dout, float *dq, float *dk,
                                  float *dv) {
    static const char fn[] = "qkv_attention_backward";
    qkv_attention_desc dl;
    qkv__attn_problem pb;
    QKV_TRY(desc_in(fn, d, &dl, 0, &pb));
    QKV_TRY(need(fn, "q", q));
    QKV_TRY(need(fn, "k", k));
    QKV_TRY(need(fn, "v", v));
    QKV_TRY(need(fn, "out", out));
    QKV_TRY(need(fn, "lse", lse));
    QKV_TRY(need(fn, "dout", dout));
    QKV_TRY(need(fn, "dq", dq));
    QKV_TRY(need(fn, "dk", dk));
    QKV_TRY(need(fn, "dv", dv));
    qkv_attn_kernels kr;
    if (use_flash(&pb, &kr))
        return qkv__attention_backward_flash(rt, &pb, &kr, q, k, v, out, lse, dout, dq, dk, dv);
    return qkv__attention_backward_ref(rt, &pb, q, k, v, out, lse, dout, dq, dk, dv);
}

qkv_status qkv_attention_probs(qkv_runtime *rt, const qkv_attention_desc *d, const float *q,
                               const float *k, float *p) {
    static const char fn[] = "qkv_attention_probs";
    qkv_attention_desc dl;
    qkv__attn_problem pb;
    QKV_TRY(desc_in(fn, d, &dl, 1, &pb));
    QKV_TRY(need(fn, "q", q));
    QKV_TRY(need(fn, "k", k));
    QKV_TRY(need(fn, "p", p));
    return qkv__attention_probs_ref(rt, &pb, q, k, p);
}
