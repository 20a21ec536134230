/* positional_ref.c — (the double-precision reference; the fast layers are in nn.h) sinusoidal
 * tables, learned absolute position add, RoPE, ALiBi slopes.
 *
 * Angles are computed in double from the integer position (p · theta^(-2k/R) is formed as
 * p / theta^(2k/R)), so tables stay accurate for long contexts; each value is rounded to float
 * once. RoPE computes each (t, k) angle once per token and applies it to every head of the
 * token, which keeps the trigonometry to B·T·R/2 calls without a cached table. */
#include "nn/positional_ref.h"
#include "nn/nn_internal.h"

#include <math.h>

/* ---------------------------------------------------------------- sinusoidal */

qkv_status qkv_nn_sinusoidal(float *pe, int64_t T, int64_t C, int64_t pos0) {
    static const char fn[] = "qkv_nn_sinusoidal";
    int64_t tc;
    NN_NONNULL(fn, pe);
    NN_POSITIVE(fn, T);
    NN_POSITIVE(fn, C);
    NN_NUMEL2(fn, "T*C", T, C, tc);
    (void)tc;
    NN_REQUIRE(pos0 >= 0 && pos0 <= INT64_MAX - T,
               "%s: pos0 = %lld is negative or pos0 + T "
               "overflows",
               fn, (long long)pos0);
    for (int64_t t = 0; t < T; t++) {
        const double p = (double)(pos0 + t);
        float *row = pe + t * C; /* (C) */
        for (int64_t c = 0; c < C; c++) {
            const int64_t i2 = c & ~(int64_t)1; /* 2i */
            const double angle = p / pow(10000.0, (double)i2 / (double)C);
            row[c] = (float)((c & 1) ? cos(angle) : sin(angle));
        }
    }
    return QKV_OK;
}

/* ---------------------------------------------------------------- learned absolute */

static qkv_status position_check(const char *fn, int64_t B, int64_t T, int64_t C, int64_t P,
                                 int64_t pos0) {
    int64_t bt, btc, pc;
    NN_POSITIVE(fn, B);
    NN_POSITIVE(fn, T);
    NN_POSITIVE(fn, C);
    NN_POSITIVE(fn, P);
    NN_NUMEL2(fn, "B*T", B, T, bt);
    NN_NUMEL2(fn, "B*T*C", bt, C, btc);
    NN_NUMEL2(fn, "P*C", P, C, pc);
    (void)btc, (void)pc;
    NN_REQUIRE(pos0 >= 0 && pos0 <= P - T,
               "%s: pos0 = %lld with T = %lld runs past the P = %lld positions of pe", fn,
               (long long)pos0, (long long)T, (long long)P);
    return QKV_OK;
}

qkv_status qkv_nn_position_add_forward_ref(qkv_runtime *rt, float *out, const float *inp,
                                           const float *pe, int64_t B, int64_t T, int64_t C,
                                           int64_t P, int64_t pos0) {
    static const char fn[] = "qkv_nn_position_add_forward_ref";
    NN_NONNULL(fn, out);
    NN_NONNULL(fn, inp);
    NN_NONNULL(fn, pe);
    QKV_TRY(position_check(fn, B, T, C, P, pos0));
    (void)rt; /* memory-bound and simple: one pass on the calling thread */
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++) {
            const float *x = inp + (b * T + t) * C; /* (C) */
            const float *e = pe + (pos0 + t) * C;   /* (C) */
            float *y = out + (b * T + t) * C;       /* (C) */
            for (int64_t c = 0; c < C; c++) y[c] = x[c] + e[c];
        }
    return QKV_OK;
}

qkv_status qkv_nn_position_add_backward_ref(qkv_runtime *rt, float *dinp, float *dpe,
                                            const float *dout, int64_t B, int64_t T, int64_t C,
                                            int64_t P, int64_t pos0) {
    static const char fn[] = "qkv_nn_position_add_backward_ref";
    NN_NONNULL(fn, dout);
    QKV_TRY(position_check(fn, B, T, C, P, pos0));
    (void)rt;
    if (dinp)
        for (int64_t i = 0; i < B * T * C; i++) dinp[i] += dout[i];
    if (dpe)
        for (int64_t t = 0; t < T; t++)
            for (int64_t c = 0; c < C; c++) {
                double s = 0.0;
                for (int64_t b = 0; b < B; b++) s += dout[(b * T + t) * C + c];
                dpe[(pos0 + t) * C + c] = (float)((double)dpe[(pos0 + t) * C + c] + s);
            }
    return QKV_OK;
}

/* ---------------------------------------------------------------- RoPE */

typedef struct {
    float *out;       /* forward: (B, T, H, D) overwritten; backward: accumulated */
    const float *inp; /* (B, T, H, D) */
    int64_t T, H, D, R, pos0;
    double theta;
    int half, inverse;
} rope_ctx;

static void rope_rows(void *p, int64_t r0, int64_t r1, int tid) {
    const rope_ctx *c = p;
    (void)tid;
    const int64_t H = c->H, D = c->D, R = c->R, half = R / 2;
    for (int64_t r = r0; r < r1; r++) { /* r = b*T + t */
        const int64_t t = r % c->T;
        const double pos = (double)(c->pos0 + t);
        for (int64_t k = 0; k < half; k++) {
            const double angle = pos / pow(c->theta, (double)(2 * k) / (double)R);
            const double cs = cos(angle), sn = c->inverse ? -sin(angle) : sin(angle);
            const int64_t a = c->half ? k : 2 * k, b = c->half ? k + half : 2 * k + 1;
            for (int64_t h = 0; h < H; h++) {
                const float *x = c->inp + (r * H + h) * D; /* (D) */
                float *y = c->out + (r * H + h) * D;       /* (D) */
                const double xa = x[a], xb = x[b];
                const double ya = xa * cs - xb * sn, yb = xa * sn + xb * cs;
                if (c->inverse) { /* backward: accumulate */
                    y[a] = (float)((double)y[a] + ya);
                    y[b] = (float)((double)y[b] + yb);
                } else {
                    y[a] = (float)ya;
                    y[b] = (float)yb;
                }
            }
        }
        for (int64_t h = 0; h < H; h++) { /* the dims past R pass through */
            const float *x = c->inp + (r * H + h) * D;
            float *y = c->out + (r * H + h) * D;
            for (int64_t d = R; d < D; d++) y[d] = c->inverse ? y[d] + x[d] : x[d];
        }
    }
}

qkv_status qkv__nn_rope_check(const char *fn, const qkv_nn_rope *rope, int64_t B, int64_t T,
                              int64_t H, int64_t D, int64_t pos0, int64_t *R) {
    int64_t bt, bth, n;
    NN_NONNULL(fn, rope);
    NN_POSITIVE(fn, B);
    NN_POSITIVE(fn, T);
    NN_POSITIVE(fn, H);
    NN_POSITIVE(fn, D);
    NN_NUMEL2(fn, "B*T", B, T, bt);
    NN_NUMEL2(fn, "B*T*H", bt, H, bth);
    NN_NUMEL2(fn, "B*T*H*D", bth, D, n);
    (void)n;
    NN_REQUIRE(rope->style == QKV_NN_ROPE_INTERLEAVED || rope->style == QKV_NN_ROPE_HALF,
               "%s: rope->style = %d is not a qkv_nn_rope_style", fn, (int)rope->style);
    NN_REQUIRE(rope->theta > 0 && isfinite(rope->theta),
               "%s: rope->theta must be positive and finite (got %g)", fn, rope->theta);
    int64_t r = rope->dims ? rope->dims : D;
    NN_REQUIRE(r > 0 && r <= D && r % 2 == 0,
               "%s: rope->dims = %lld must be even and in (0, D = %lld] (0 means D)", fn,
               (long long)rope->dims, (long long)D);
    NN_REQUIRE(pos0 >= 0 && pos0 <= INT64_MAX - T,
               "%s: pos0 = %lld is negative or pos0 + T overflows", fn, (long long)pos0);
    *R = r;
    return QKV_OK;
}

qkv_status qkv_nn_rope_forward_ref(qkv_runtime *rt, float *out, const float *inp,
                                   const qkv_nn_rope *rope, int64_t B, int64_t T, int64_t H,
                                   int64_t D, int64_t pos0) {
    static const char fn[] = "qkv_nn_rope_forward_ref";
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
                  .half = rope->style == QKV_NN_ROPE_HALF,
                  .inverse = 0};
    qkv_parallel_for(rt, B * T, nn_grain(H * D * 4), rope_rows, &c);
    return QKV_OK;
}

qkv_status qkv_nn_rope_backward_ref(qkv_runtime *rt, float *dinp, const float *dout,
                                    const qkv_nn_rope *rope, int64_t B, int64_t T, int64_t H,
                                    int64_t D, int64_t pos0) {
    static const char fn[] = "qkv_nn_rope_backward_ref";
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
    qkv_parallel_for(rt, B * T, nn_grain(H * D * 4), rope_rows, &c);
    return QKV_OK;
}

/* ---------------------------------------------------------------- ALiBi */

qkv_status qkv_nn_alibi_slopes(float *slopes, int64_t H) {
    static const char fn[] = "qkv_nn_alibi_slopes";
    NN_NONNULL(fn, slopes);
    NN_POSITIVE(fn, H);
    NN_REQUIRE(H <= (INT64_C(1) << 30), "%s: H = %lld is too large", fn, (long long)H);
    int64_t n = 1;
    while (n * 2 <= H) n *= 2; /* largest power of two <= H */
    for (int64_t h = 0; h < n; h++) slopes[h] = (float)exp2(-8.0 * (double)(h + 1) / (double)n);
    for (int64_t j = 0; j < H - n; j++)
        slopes[n + j] = (float)exp2(-8.0 * (double)(2 * j + 1) / (double)(2 * n));
    return QKV_OK;
}
