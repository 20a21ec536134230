/* cross_entropy.c — softmax cross-entropy over rows (the LM and classifier heads).
 *
 * Per row n with target t, m = max x, s = Σ e^(x - m) (the ISA's exp kernel, summed in double):
 *   lse = m + log s,  l_n = (1 - ε)(lse - x_t) + ε (lse - mean x)
 *   dx  = g · (e^(x - m) / s - (1 - ε) onehot(t) - ε / V),  g = dloss / count
 * Rows are split over threads; the mean sums the row losses in order of n on the calling
 * thread, so the loss is the same for every thread count. The fused form exponentiates the
 * logits in place and turns them into their gradient: no second V-wide buffer per row. */
#include "core/alloc.h"
#include "kernels/dispatch.h"
#include "nn/nn.h"
#include "nn/nn_internal.h"

#include <math.h>
#include <string.h>

#define CE_BLOCK 256

typedef struct {
    const float *x; /* logits (N, V), read */
    float *io;      /* fused: logits in, gradient out */
    float *dx;      /* backward: += gradient */
    float *losses;
    const int32_t *t;
    int64_t V;
    int32_t ignore;
    float eps, g; /* label smoothing; dloss / count */
} ce_ctx;

/* m, log Σ e^(x - m) and Σ x of a row without writing it. */
static void row_stats(const float *x, int64_t V, float *m_out, double *logs, double *sumx) {
    float m = -INFINITY;
    double sx = 0;
    for (int64_t j = 0; j < V; j++) {
        m = x[j] > m ? x[j] : m;
        sx += x[j];
    }
    float buf[CE_BLOCK];
    double s = 0;
    for (int64_t j0 = 0; j0 < V; j0 += CE_BLOCK) {
        int64_t nj = V - j0 < CE_BLOCK ? V - j0 : CE_BLOCK;
        for (int64_t j = 0; j < nj; j++) buf[j] = x[j0 + j] - m;
        qkv__kernels()->exp_f32(buf, buf, (size_t)nj);
        for (int64_t j = 0; j < nj; j++) s += buf[j];
    }
    *m_out = m;
    *logs = log(s);
    *sumx = sx;
}

static float row_loss(const float *x, int64_t V, int32_t t, float eps, float m, double logs,
                      double sumx) {
    double lse = (double)m + logs;
    double l = (1.0 - (double)eps) * (lse - (double)x[t]);
    if (eps > 0) l += (double)eps * (lse - sumx / (double)V);
    return (float)l;
}

static void ce_fwd_rows(void *p, int64_t n0, int64_t n1, int tid) {
    const ce_ctx *c = p;
    (void)tid;
    for (int64_t n = n0; n < n1; n++) {
        const int32_t t = c->t[n];
        if (t == c->ignore) {
            c->losses[n] = 0.0f;
            continue;
        }
        const float *x = c->x + n * c->V;
        float m;
        double logs, sumx;
        row_stats(x, c->V, &m, &logs, &sumx);
        c->losses[n] = row_loss(x, c->V, t, c->eps, m, logs, sumx);
    }
}

static void ce_bwd_rows(void *p, int64_t n0, int64_t n1, int tid) {
    const ce_ctx *c = p;
    (void)tid;
    const int64_t V = c->V;
    const float smooth = c->g * c->eps / (float)V;
    for (int64_t n = n0; n < n1; n++) {
        const int32_t t = c->t[n];
        if (t == c->ignore) continue;
        const float *x = c->x + n * V;
        float *dx = c->dx + n * V;
        float m;
        double logs, sumx;
        row_stats(x, V, &m, &logs, &sumx);
        const float f = (float)((double)c->g / exp(logs));
        float buf[CE_BLOCK];
        for (int64_t j0 = 0; j0 < V; j0 += CE_BLOCK) {
            int64_t nj = V - j0 < CE_BLOCK ? V - j0 : CE_BLOCK;
            for (int64_t j = 0; j < nj; j++) buf[j] = x[j0 + j] - m;
            qkv__kernels()->exp_f32(buf, buf, (size_t)nj);
            for (int64_t j = 0; j < nj; j++) dx[j0 + j] += buf[j] * f - smooth;
        }
        dx[t] -= c->g * (1.0f - c->eps);
    }
}

static void ce_fused_rows(void *p, int64_t n0, int64_t n1, int tid) {
    const ce_ctx *c = p;
    (void)tid;
    const int64_t V = c->V;
    const float smooth = c->g * c->eps / (float)V;
    for (int64_t n = n0; n < n1; n++) {
        float *x = c->io + n * V;
        const int32_t t = c->t[n];
        if (t == c->ignore) {
            c->losses[n] = 0.0f;
            memset(x, 0, (size_t)V * sizeof(float));
            continue;
        }
        float m = -INFINITY;
        double sumx = 0, s = 0;
        for (int64_t j = 0; j < V; j++) {
            m = x[j] > m ? x[j] : m;
            sumx += x[j];
        }
        const float xt = x[t];
        for (int64_t j = 0; j < V; j++) x[j] -= m;
        qkv__kernels()->exp_f32(x, x, (size_t)V);
        for (int64_t j = 0; j < V; j++) s += x[j];
        double lse = (double)m + log(s);
        double l = (1.0 - (double)c->eps) * (lse - (double)xt);
        if (c->eps > 0) l += (double)c->eps * (lse - sumx / (double)V);
        c->losses[n] = (float)l;
        const float f = (float)((double)c->g / s);
        for (int64_t j = 0; j < V; j++) x[j] = x[j] * f - smooth;
        x[t] -= c->g * (1.0f - c->eps);
    }
}

static qkv_status check(const char *fn, const int32_t *targets, int64_t N, int64_t V,
                        int32_t ignore, float eps, int64_t *count) {
    int64_t n;
    NN_NONNULL(fn, targets);
    NN_POSITIVE(fn, N);
    NN_POSITIVE(fn, V);
    NN_NUMEL2(fn, "N*V", N, V, n);
    NN_REQUIRE(eps >= 0.0f && eps <= 1.0f, "%s: label_smoothing = %g must be in [0, 1]", fn,
               (double)eps);
    *count = 0;
    for (n = 0; n < N; n++) {
        if (targets[n] == ignore) continue;
        NN_REQUIRE(targets[n] >= 0 && targets[n] < V,
                   "%s: targets[%lld] = %d is outside [0, %lld) and not ignore_index %d", fn,
                   (long long)n, targets[n], (long long)V, ignore);
        (*count)++;
    }
    return QKV_OK;
}

/* Runs fn over the rows with losses in `losses` or scratch; *loss = their mean. */
static qkv_status run_loss(const char *fn, qkv_runtime *rt, ce_ctx *c, float *loss, float *losses,
                           int64_t N, int64_t count, qkv_range_fn rows) {
    float *scratch = NULL;
    if (!losses) {
        scratch = qkv__alloc((size_t)N * sizeof(float));
        if (!scratch) return qkv__fail(QKV_ERR_NOMEM, "%s: out of memory", fn);
        losses = scratch;
    }
    c->losses = losses;
    qkv_parallel_for(rt, N, nn_grain(4 * c->V), rows, c);
    double s = 0;
    for (int64_t n = 0; n < N; n++) s += losses[n];
    if (loss) *loss = count ? (float)(s / (double)count) : 0.0f;
    qkv__free(scratch);
    return QKV_OK;
}

qkv_status qkv_nn_cross_entropy_forward(qkv_runtime *rt, float *loss, float *losses,
                                        const float *logits, const int32_t *targets, int64_t N,
                                        int64_t V, int32_t ignore_index, float label_smoothing) {
    static const char fn[] = "qkv_nn_cross_entropy_forward";
    int64_t count = 0;
    NN_NONNULL(fn, loss);
    NN_NONNULL(fn, logits);
    QKV_TRY(check(fn, targets, N, V, ignore_index, label_smoothing, &count));
    ce_ctx c = {.x = logits, .t = targets, .V = V, .ignore = ignore_index, .eps = label_smoothing};
    return run_loss(fn, rt, &c, loss, losses, N, count, ce_fwd_rows);
}

qkv_status qkv_nn_cross_entropy_backward(qkv_runtime *rt, float *dlogits, float dloss,
                                         const float *logits, const int32_t *targets, int64_t N,
                                         int64_t V, int32_t ignore_index, float label_smoothing) {
    static const char fn[] = "qkv_nn_cross_entropy_backward";
    int64_t count = 0;
    NN_NONNULL(fn, dlogits);
    NN_NONNULL(fn, logits);
    QKV_TRY(check(fn, targets, N, V, ignore_index, label_smoothing, &count));
    NN_REQUIRE(isfinite(dloss), "%s: dloss is not finite", fn);
    if (!count) return QKV_OK;
    ce_ctx c = {.x = logits,
                .dx = dlogits,
                .t = targets,
                .V = V,
                .ignore = ignore_index,
                .eps = label_smoothing,
                .g = dloss / (float)count};
    qkv_parallel_for(rt, N, nn_grain(4 * V), ce_bwd_rows, &c);
    return QKV_OK;
}

qkv_status qkv_nn_cross_entropy_fused(qkv_runtime *rt, float *loss, float *losses, float *logits,
                                      const int32_t *targets, int64_t N, int64_t V,
                                      int32_t ignore_index, float label_smoothing, float dloss) {
    static const char fn[] = "qkv_nn_cross_entropy_fused";
    int64_t count = 0;
    NN_NONNULL(fn, loss);
    NN_NONNULL(fn, logits);
    QKV_TRY(check(fn, targets, N, V, ignore_index, label_smoothing, &count));
    NN_REQUIRE(isfinite(dloss), "%s: dloss is not finite", fn);
    ce_ctx c = {.io = logits,
                .t = targets,
                .V = V,
                .ignore = ignore_index,
                .eps = label_smoothing,
                .g = count ? dloss / (float)count : 0.0f};
    return run_loss(fn, rt, &c, loss, losses, N, count, ce_fused_rows);
}
