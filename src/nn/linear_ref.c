/* linear_ref.c — (the double-precision reference; the fast layers are in nn.h) the dense layer y =
 * x Wᵀ + b with W in the Hugging Face layout [out, in].
 *
 * Why this layout: it is how torch.nn.Linear and every Hugging Face checkpoint store weights,
 * so mmapped weights are used as they are, and each output element is one contiguous dot
 * product of an input row with a weight row.
 *
 * Threading: the forward and dinp split over rows n, dweight/dbias over output channels o.
 * Every output element is reduced by one thread in a fixed order (in double), so results do
 * not depend on the thread count. */
#include "nn/nn_internal.h"
#include "nn/nn_ref.h"

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
} linear_ctx;

static void linear_forward_rows(void *p, int64_t n0, int64_t n1, int tid) {
    const linear_ctx *c = p;
    (void)tid;
    const int64_t C = c->C, OC = c->OC;
    for (int64_t n = n0; n < n1; n++) {
        const float *x = c->inp + n * C; /* (C) */
        float *y = c->out + n * OC;      /* (OC) */
        for (int64_t o = 0; o < OC; o++) {
            const float *w = c->weight + o * C; /* (C) */
            double s = c->bias ? (double)c->bias[o] : 0.0;
            for (int64_t i = 0; i < C; i++) s += (double)x[i] * (double)w[i];
            y[o] = (float)s;
        }
    }
}

/* dinp[n, i] += Σ_o dout[n, o] W[o, i], i in blocks of NN_CBLOCK so W is read by row segments. */
static void linear_dinp_rows(void *p, int64_t n0, int64_t n1, int tid) {
    const linear_ctx *c = p;
    (void)tid;
    const int64_t C = c->C, OC = c->OC;
    double acc[NN_CBLOCK];
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

qkv_status qkv_nn_linear_forward_ref(qkv_runtime *rt, float *out, const float *inp,
                                     const float *weight, const float *bias, int64_t N, int64_t C,
                                     int64_t OC) {
    static const char fn[] = "qkv_nn_linear_forward_ref";
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
    qkv_parallel_for(rt, N, nn_grain(occ), linear_forward_rows, &c);
    return QKV_OK;
}

qkv_status qkv_nn_linear_backward_ref(qkv_runtime *rt, float *dinp, float *dweight, float *dbias,
                                      const float *dout, const float *inp, const float *weight,
                                      int64_t N, int64_t C, int64_t OC) {
    static const char fn[] = "qkv_nn_linear_backward_ref";
    int64_t nc, noc, occ;
    NN_NONNULL(fn, dout);
    NN_POSITIVE(fn, N);
    NN_POSITIVE(fn, C);
    NN_POSITIVE(fn, OC);
    NN_NUMEL2(fn, "N*C", N, C, nc);
    NN_NUMEL2(fn, "N*OC", N, OC, noc);
    NN_NUMEL2(fn, "OC*C", OC, C, occ);
    (void)nc, (void)noc;
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
    if (dinp) qkv_parallel_for(rt, N, nn_grain(occ), linear_dinp_rows, &c);
    if (dweight || dbias) {
        int64_t work = N * (dweight ? C : 1);
        qkv_parallel_for(rt, OC, nn_grain(work), linear_dweight_cols, &c);
    }
    return QKV_OK;
}
