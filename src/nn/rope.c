/* rope.c — rotary position embeddings in float, from a per-call table of cos/sin.
 *
 * The angle of pair k at position p is p / theta^(2k/R), formed in double as the reference
 * does; its cos and sin are rounded to float once into a (T, R/2) table shared by every batch
 * row and head, then each pair is rotated in float. The backward is the rotation by the
 * negated angle, accumulated. */
#include "core/alloc.h"
#include "nn/nn.h"
#include "nn/nn_internal.h"

#include <math.h>

typedef struct {
    float *out;       /* forward: overwritten; backward: accumulated */
    const float *inp; /* (B, T, H, D) */
    float *cs, *sn;   /* (T, R/2) */
    int64_t T, H, D, R, pos0;
    double theta;
    int half, inverse;
} rope_ctx;

static void table_rows(void *p, int64_t t0, int64_t t1, int tid) {
    const rope_ctx *c = p;
    (void)tid;
    const int64_t half = c->R / 2;
    for (int64_t t = t0; t < t1; t++) {
        const double pos = (double)(c->pos0 + t);
        for (int64_t k = 0; k < half; k++) {
            const double angle = pos / pow(c->theta, (double)(2 * k) / (double)c->R);
            c->cs[t * half + k] = (float)cos(angle);
            c->sn[t * half + k] = (float)sin(angle);
        }
    }
}

static void rotate_rows(void *p, int64_t r0, int64_t r1, int tid) {
    const rope_ctx *c = p;
    (void)tid;
    const int64_t H = c->H, D = c->D, R = c->R, half = R / 2;
    const int64_t step = c->half ? 1 : 2, off = c->half ? half : 1;
    for (int64_t r = r0; r < r1; r++) { /* r = b*T + t */
        const float *cs = c->cs + (r % c->T) * half, *sn = c->sn + (r % c->T) * half;
        for (int64_t h = 0; h < H; h++) {
            const float *x = c->inp + (r * H + h) * D; /* (D) */
            float *y = c->out + (r * H + h) * D;       /* (D) */
            if (c->inverse) {
                for (int64_t k = 0; k < half; k++) {
                    const float xa = x[k * step], xb = x[k * step + off];
                    y[k * step] += xa * cs[k] + xb * sn[k];
                    y[k * step + off] += xb * cs[k] - xa * sn[k];
                }
                for (int64_t d = R; d < D; d++) y[d] += x[d];
            } else {
                for (int64_t k = 0; k < half; k++) {
                    const float xa = x[k * step], xb = x[k * step + off];
                    y[k * step] = xa * cs[k] - xb * sn[k];
                    y[k * step + off] = xa * sn[k] + xb * cs[k];
                }
                if (y != x)
                    for (int64_t d = R; d < D; d++) y[d] = x[d];
            }
        }
    }
}

static qkv_status rope_run(const char *fn, qkv_runtime *rt, rope_ctx *c, int64_t B) {
    const int64_t half = c->R / 2;
    size_t bytes = 2 * (size_t)c->T * (size_t)half * sizeof(float);
    float *tab = qkv__alloc(bytes);
    if (!tab) return qkv__fail(QKV_ERR_NOMEM, "%s: cannot allocate %zu bytes", fn, bytes);
    c->cs = tab;
    c->sn = tab + c->T * half;
    qkv_parallel_for(rt, c->T, nn_grain(half * 40), table_rows, c);
    qkv_parallel_for(rt, B * c->T, nn_grain(c->H * c->D * 2), rotate_rows, c);
    qkv__free(tab);
    return QKV_OK;
}

qkv_status qkv_nn_rope_forward(qkv_runtime *rt, float *out, const float *inp,
                               const qkv_nn_rope *rope, int64_t B, int64_t T, int64_t H, int64_t D,
                               int64_t pos0) {
    static const char fn[] = "qkv_nn_rope_forward";
    int64_t R = 0;
    NN_NONNULL(fn, out);
    NN_NONNULL(fn, inp);
    QKV_TRY(qkv__nn_rope_check(fn, rope, B, T, H, D, pos0, &R));
    rope_ctx c = {.out = out,
                  .inp = inp,
                  .T = T,
                  .H = H,
                  .D = D,
                  .R = R,
                  .pos0 = pos0,
                  .theta = rope->theta,
                  .half = rope->style == QKV_NN_ROPE_HALF};
    return rope_run(fn, rt, &c, B);
}

qkv_status qkv_nn_rope_backward(qkv_runtime *rt, float *dinp, const float *dout,
                                const qkv_nn_rope *rope, int64_t B, int64_t T, int64_t H, int64_t D,
                                int64_t pos0) {
    static const char fn[] = "qkv_nn_rope_backward";
    int64_t R = 0;
    NN_NONNULL(fn, dout);
    QKV_TRY(qkv__nn_rope_check(fn, rope, B, T, H, D, pos0, &R));
    if (!dinp) return QKV_OK;
    NN_REQUIRE(dinp != dout, "%s: dinp and dout are the same buffer (dinp accumulates)", fn);
    rope_ctx c = {.out = dinp,
                  .inp = dout,
                  .T = T,
                  .H = H,
                  .D = D,
                  .R = R,
                  .pos0 = pos0,
                  .theta = rope->theta,
                  .half = rope->style == QKV_NN_ROPE_HALF,
                  .inverse = 1};
    return rope_run(fn, rt, &c, B);
}
