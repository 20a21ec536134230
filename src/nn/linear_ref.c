/* linear_ref.c — (the double-precision reference; the fast layers are in nn.h) the dense layer y =
 * x Wᵀ + b with W in the Hugging Face layout [out, in], and with a low-rank adapter (LoRA)
 * y = x Wᵀ + b + scale · (drop(x) Aᵀ) Bᵀ.
 *
 * Why this layout: it is how torch.nn.Linear and every Hugging Face checkpoint store weights,
 * so mmapped weights are used as they are, and each output element is one contiguous dot
 * product of an input row with a weight row.
 *
 * Threading: the forward and dinp split over rows n, dweight/dbias over output channels o.
 * Every output element is reduced by one thread in a fixed order (in double), so results do
 * not depend on the thread count. */
#include "core/alloc.h"
#include "core/rng.h"
#include "nn/nn_internal.h"
#include "nn/nn_ref.h"

#include <math.h>

typedef struct {
    float *out;          /* (N, OC) */
    float *dinp;         /* (N, C) */
    float *dweight;      /* (OC, C) */
    float *dbias;        /* (OC) */
    const float *inp;    /* (N, C) */
    const float *weight; /* (OC, C) */
    const float *bias;   /* (OC) */
    const float *dout;   /* (N, OC) */
    int64_t N, C, OC;
    /* the adapter (NULL: none) and its double scratch */
    const qkv_nn_lora *lora;
    double keep_scale; /* 1 / (1 - p) */
    double *xd;        /* (N, C) drop(inp), backward only */
    double *h;         /* (N, r) drop(inp) · aᵀ */
    double *dh;        /* (N, r) dout · b, backward only */
} linear_ctx;

/* The dropout multiplier of input element (n, i): 0 or 1 / (1 - p), the mask of
 * qkv_nn_dropout_forward_ref over the (N, C) input. */
static double lora_keep(const linear_ctx *c, int64_t n, int64_t i) {
    const float p = c->lora->dropout;
    if (p == 0.0f) return 1.0;
    const float u = qkv__rng_uniform(c->lora->seed, c->lora->stream, (uint64_t)(n * c->C + i));
    return (double)u >= (double)p ? c->keep_scale : 0.0;
}

/* h[n] = drop(inp[n]) · aᵀ (r), in double. */
static void lora_h_row(const linear_ctx *c, int64_t n, double *h) {
    const int64_t C = c->C, r = c->lora->r;
    const float *x = c->inp + n * C, *a = c->lora->a;
    for (int64_t k = 0; k < r; k++) h[k] = 0.0;
    for (int64_t i = 0; i < C; i++) {
        const double xd = (double)x[i] * lora_keep(c, n, i);
        if (xd == 0.0) continue;
        for (int64_t k = 0; k < r; k++) h[k] += xd * (double)a[k * C + i];
    }
}

static void linear_forward_rows(void *p, int64_t n0, int64_t n1, int tid) {
    const linear_ctx *c = p;
    (void)tid;
    const int64_t C = c->C, OC = c->OC;
    for (int64_t n = n0; n < n1; n++) {
        const float *x = c->inp + n * C; /* (C) */
        float *y = c->out + n * OC;      /* (OC) */
        double *h = NULL;                /* (r) */
        if (c->lora) {
            h = c->h + n * c->lora->r;
            lora_h_row(c, n, h);
        }
        for (int64_t o = 0; o < OC; o++) {
            const float *w = c->weight + o * C; /* (C) */
            double s = c->bias ? (double)c->bias[o] : 0.0;
            for (int64_t i = 0; i < C; i++) s += (double)x[i] * (double)w[i];
            if (h) {
                const int64_t r = c->lora->r;
                const float *b = c->lora->b + o * r; /* (r) */
                double t = 0.0;
                for (int64_t k = 0; k < r; k++) t += h[k] * (double)b[k];
                s += (double)c->lora->scale * t;
            }
            y[o] = (float)s;
        }
    }
}

/* dinp[n, i] += Σ_o dout[n, o] W[o, i], i in blocks of NN_CBLOCK so W is read by row segments. */
static void linear_dinp_rows(void *p, int64_t n0, int64_t n1, int tid) {
    const linear_ctx *c = p;
    (void)tid;
    const int64_t C = c->C, OC = c->OC;
    double acc[NN_CBLOCK], lacc[NN_CBLOCK];
    for (int64_t n = n0; n < n1; n++) {
        const float *dy = c->dout + n * OC; /* (OC) */
        float *dx = c->dinp + n * C;        /* (C) */
        for (int64_t i0 = 0; i0 < C; i0 += NN_CBLOCK) {
            int64_t ni = C - i0 < NN_CBLOCK ? C - i0 : NN_CBLOCK;
            for (int64_t i = 0; i < ni; i++) acc[i] = 0.0;
            for (int64_t o = 0; o < OC; o++) {
                const double d = dy[o];
                const float *w = c->weight + o * C + i0;
                for (int64_t i = 0; i < ni; i++) acc[i] += d * (double)w[i];
            }
            if (c->lora) { /* + scale · drop'(dh[n] · a) */
                const int64_t r = c->lora->r;
                for (int64_t i = 0; i < ni; i++) lacc[i] = 0.0;
                for (int64_t k = 0; k < r; k++) {
                    const double d = c->dh[n * r + k];
                    const float *a = c->lora->a + k * C + i0;
                    for (int64_t i = 0; i < ni; i++) lacc[i] += d * (double)a[i];
                }
                for (int64_t i = 0; i < ni; i++)
                    acc[i] += (double)c->lora->scale * lora_keep(c, n, i0 + i) * lacc[i];
            }
            for (int64_t i = 0; i < ni; i++) dx[i0 + i] = (float)((double)dx[i0 + i] + acc[i]);
        }
    }
}

/* dweight[o, i] += Σ_n dout[n, o] inp[n, i]; dbias[o] += Σ_n dout[n, o]. */
static void linear_dweight_cols(void *p, int64_t o0, int64_t o1, int tid) {
    const linear_ctx *c = p;
    (void)tid;
    const int64_t N = c->N, C = c->C, OC = c->OC;
    double acc[NN_CBLOCK];
    for (int64_t o = o0; o < o1; o++) {
        if (c->dweight) {
            float *dw = c->dweight + o * C; /* (C) */
            for (int64_t i0 = 0; i0 < C; i0 += NN_CBLOCK) {
                int64_t ni = C - i0 < NN_CBLOCK ? C - i0 : NN_CBLOCK;
                for (int64_t i = 0; i < ni; i++) acc[i] = 0.0;
                for (int64_t n = 0; n < N; n++) {
                    const double d = c->dout[n * OC + o];
                    const float *x = c->inp + n * C + i0;
                    for (int64_t i = 0; i < ni; i++) acc[i] += d * (double)x[i];
                }
                for (int64_t i = 0; i < ni; i++) dw[i0 + i] = (float)((double)dw[i0 + i] + acc[i]);
            }
        }
        if (c->dbias) {
            double s = 0.0;
            for (int64_t n = 0; n < N; n++) s += c->dout[n * OC + o];
            c->dbias[o] = (float)((double)c->dbias[o] + s);
        }
    }
}

/* The backward's per-row adapter values: xd[n] = drop(inp[n]) (when inp is given), h[n] =
 * xd[n] · aᵀ, dh[n] = dout[n] · b. */
static void lora_rows(void *p, int64_t n0, int64_t n1, int tid) {
    const linear_ctx *c = p;
    (void)tid;
    const int64_t C = c->C, OC = c->OC, r = c->lora->r;
    for (int64_t n = n0; n < n1; n++) {
        if (c->inp) {
            for (int64_t i = 0; i < C; i++)
                c->xd[n * C + i] = (double)c->inp[n * C + i] * lora_keep(c, n, i);
            lora_h_row(c, n, c->h + n * r);
        }
        for (int64_t k = 0; k < r; k++) {
            double s = 0.0;
            for (int64_t o = 0; o < OC; o++)
                s += (double)c->dout[n * OC + o] * (double)c->lora->b[o * r + k];
            c->dh[n * r + k] = s;
        }
    }
}

/* ga[k, i] += scale · Σ_n dh[n, k] xd[n, i] (k: rank rows). */
static void lora_ga_rows(void *p, int64_t k0, int64_t k1, int tid) {
    const linear_ctx *c = p;
    (void)tid;
    const int64_t N = c->N, C = c->C, r = c->lora->r;
    const double scale = c->lora->scale;
    for (int64_t k = k0; k < k1; k++)
        for (int64_t i = 0; i < C; i++) {
            double s = 0.0;
            for (int64_t n = 0; n < N; n++) s += c->dh[n * r + k] * c->xd[n * C + i];
            float *g = c->lora->ga + k * C + i;
            *g = (float)((double)*g + scale * s);
        }
}

/* gb[o, k] += scale · Σ_n dout[n, o] h[n, k] (o: output channels). */
static void lora_gb_rows(void *p, int64_t o0, int64_t o1, int tid) {
    const linear_ctx *c = p;
    (void)tid;
    const int64_t N = c->N, OC = c->OC, r = c->lora->r;
    const double scale = c->lora->scale;
    for (int64_t o = o0; o < o1; o++)
        for (int64_t k = 0; k < r; k++) {
            double s = 0.0;
            for (int64_t n = 0; n < N; n++) s += (double)c->dout[n * OC + o] * c->h[n * r + k];
            float *g = c->lora->gb + o * r + k;
            *g = (float)((double)*g + scale * s);
        }
}

qkv_status qkv__nn_lora_check(const char *fn, const qkv_nn_lora *lora, int64_t N, int64_t C,
                              int64_t OC) {
    NN_NONNULL(fn, lora);
    NN_REQUIRE(lora->r >= 1, "%s: lora->r must be >= 1 (got %lld)", fn, (long long)lora->r);
    NN_REQUIRE(lora->a != NULL, "%s: lora->a is NULL", fn);
    NN_REQUIRE(lora->b != NULL, "%s: lora->b is NULL", fn);
    NN_REQUIRE(isfinite(lora->scale), "%s: lora->scale must be finite (got %g)", fn,
               (double)lora->scale);
    NN_REQUIRE(lora->dropout >= 0.0f && lora->dropout < 1.0f,
               "%s: lora->dropout must be in [0, 1) (got %g)", fn, (double)lora->dropout);
    int64_t n;
    NN_NUMEL2(fn, "N*lora->r", N, lora->r, n);
    NN_NUMEL2(fn, "lora->r*C", lora->r, C, n);
    NN_NUMEL2(fn, "OC*lora->r", OC, lora->r, n);
    (void)n;
    return QKV_OK;
}

static qkv_status forward(const char *fn, qkv_runtime *rt, float *out, const float *inp,
                          const float *weight, const float *bias, const qkv_nn_lora *lora,
                          int64_t N, int64_t C, int64_t OC) {
    int64_t nc, noc, occ;
    NN_NONNULL(fn, out);
    NN_NONNULL(fn, inp);
    NN_NONNULL(fn, weight);
    NN_POSITIVE(fn, N);
    NN_POSITIVE(fn, C);
    NN_POSITIVE(fn, OC);
    NN_NUMEL2(fn, "N*C", N, C, nc);
    NN_NUMEL2(fn, "N*OC", N, OC, noc);
    NN_NUMEL2(fn, "OC*C", OC, C, occ);
    (void)nc, (void)noc;
    linear_ctx c = {
        .out = out, .inp = inp, .weight = weight, .bias = bias, .N = N, .C = C, .OC = OC};
    int64_t work = occ;
    if (lora) {
        QKV_TRY(qkv__nn_lora_check(fn, lora, N, C, OC));
        c.lora = lora;
        c.keep_scale = 1.0 / (1.0 - (double)lora->dropout);
        c.h = qkv__alloc((size_t)(N * lora->r) * sizeof(double));
        if (!c.h)
            return qkv__fail(QKV_ERR_NOMEM, "%s: out of memory (N*lora->r = %lld)", fn,
                             (long long)(N * lora->r));
        work += lora->r * (C + OC);
    }
    qkv_parallel_for(rt, N, nn_grain(work), linear_forward_rows, &c);
    qkv__free(c.h);
    return QKV_OK;
}

qkv_status qkv_nn_linear_forward_ref(qkv_runtime *rt, float *out, const float *inp,
                                     const float *weight, const float *bias, int64_t N, int64_t C,
                                     int64_t OC) {
    return forward("qkv_nn_linear_forward_ref", rt, out, inp, weight, bias, NULL, N, C, OC);
}

qkv_status qkv_nn_linear_lora_forward_ref(qkv_runtime *rt, float *out, const float *inp,
                                          const float *weight, const float *bias,
                                          const qkv_nn_lora *lora, int64_t N, int64_t C,
                                          int64_t OC) {
    static const char fn[] = "qkv_nn_linear_lora_forward_ref";
    NN_NONNULL(fn, lora);
    return forward(fn, rt, out, inp, weight, bias, lora, N, C, OC);
}

static qkv_status backward(const char *fn, qkv_runtime *rt, float *dinp, float *dweight,
                           float *dbias, const float *dout, const float *inp, const float *weight,
                           const qkv_nn_lora *lora, int64_t N, int64_t C, int64_t OC) {
    int64_t nc, noc, occ;
    NN_NONNULL(fn, dout);
    NN_POSITIVE(fn, N);
    NN_POSITIVE(fn, C);
    NN_POSITIVE(fn, OC);
    NN_NUMEL2(fn, "N*C", N, C, nc);
    NN_NUMEL2(fn, "N*OC", N, OC, noc);
    NN_NUMEL2(fn, "OC*C", OC, C, occ);
    (void)noc;
    NN_REQUIRE(!dinp || weight, "%s: weight is NULL (needed for dinp)", fn);
    NN_REQUIRE(!dweight || inp, "%s: inp is NULL (needed for dweight)", fn);
    linear_ctx c = {.dinp = dinp,
                    .dweight = dweight,
                    .dbias = dbias,
                    .dout = dout,
                    .inp = inp,
                    .weight = weight,
                    .N = N,
                    .C = C,
                    .OC = OC};
    const int adapter = lora && (dinp || lora->ga || lora->gb);
    if (lora) {
        QKV_TRY(qkv__nn_lora_check(fn, lora, N, C, OC));
        NN_REQUIRE(!(lora->ga || lora->gb) || inp, "%s: inp is NULL (needed for lora->ga, gb)", fn);
    }
    if (adapter) {
        const int64_t nr = N * lora->r;
        c.lora = lora;
        c.keep_scale = 1.0 / (1.0 - (double)lora->dropout);
        c.xd = qkv__alloc((size_t)nc * sizeof(double));
        c.h = qkv__alloc((size_t)nr * sizeof(double));
        c.dh = qkv__alloc((size_t)nr * sizeof(double));
        if (!c.xd || !c.h || !c.dh) {
            qkv__free(c.xd), qkv__free(c.h), qkv__free(c.dh);
            return qkv__fail(QKV_ERR_NOMEM, "%s: out of memory (N*C = %lld, N*lora->r = %lld)", fn,
                             (long long)nc, (long long)nr);
        }
        qkv_parallel_for(rt, N, nn_grain(lora->r * (C + OC)), lora_rows, &c);
    }
    if (dinp) qkv_parallel_for(rt, N, nn_grain(occ), linear_dinp_rows, &c);
    if (dweight || dbias) {
        int64_t work = N * (dweight ? C : 1);
        qkv_parallel_for(rt, OC, nn_grain(work), linear_dweight_cols, &c);
    }
    if (adapter && lora->ga) qkv_parallel_for(rt, lora->r, nn_grain(N * C), lora_ga_rows, &c);
    if (adapter && lora->gb) qkv_parallel_for(rt, OC, nn_grain(N * lora->r), lora_gb_rows, &c);
    if (adapter) qkv__free(c.xd), qkv__free(c.h), qkv__free(c.dh);
    return QKV_OK;
}

qkv_status qkv_nn_linear_backward_ref(qkv_runtime *rt, float *dinp, float *dweight, float *dbias,
                                      const float *dout, const float *inp, const float *weight,
                                      int64_t N, int64_t C, int64_t OC) {
    return backward("qkv_nn_linear_backward_ref", rt, dinp, dweight, dbias, dout, inp, weight, NULL,
                    N, C, OC);
}

qkv_status qkv_nn_linear_lora_backward_ref(qkv_runtime *rt, float *dinp, float *dweight,
                                           float *dbias, const float *dout, const float *inp,
                                           const float *weight, const qkv_nn_lora *lora, int64_t N,
                                           int64_t C, int64_t OC) {
    static const char fn[] = "qkv_nn_linear_lora_backward_ref";
    NN_NONNULL(fn, lora);
    return backward(fn, rt, dinp, dweight, dbias, dout, inp, weight, lora, N, C, OC);
}
