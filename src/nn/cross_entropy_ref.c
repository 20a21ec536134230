/* cross_entropy_ref.c — (the double-precision reference; the fast layers are in nn.h) mean
 * cross-entropy over logits with ignore index and label smoothing, matching
 * torch.nn.functional.cross_entropy(reduction='mean').
 *
 * Per row, with lse = log Σ_v exp(x_v) (max-subtracted, summed in double):
 *   l = (1 - ε) (lse - x_t) + ε (lse - mean_v x_v)
 * i.e. the cross-entropy against the smoothed target distribution (1 - ε) onehot(t) + ε / V.
 * The mean is over the rows whose target is not ignore_index. Row losses are computed in
 * parallel into a scratch array and summed in order of n, so the loss does not depend on the
 * thread count. */
#include "core/alloc.h"
#include "nn/nn_internal.h"
#include "nn/nn_ref.h"

#include <math.h>

typedef struct {
    double *row_loss;    /* (N) */
    float *dlogits;      /* (N, V) */
    const float *logits; /* (N, V) */
    const int32_t *targets;
    int64_t V;
    int32_t ignore_index;
    double eps;    /* label smoothing */
    double dscale; /* dloss / count */
} ce_ctx;

/* The row maximum m and log Σ_v exp(x_v - m), in double. Everything below is written in terms
 * of x - m (exact in double for float inputs) so that logits of ±1e30 keep their log-sum. */
static double row_max(const float *x, int64_t V) {
    float m = -INFINITY;
    for (int64_t v = 0; v < V; v++) m = x[v] > m ? x[v] : m;
    return m;
}
static double row_logsum(const float *x, int64_t V, double m) {
    double s = 0.0;
    for (int64_t v = 0; v < V; v++) s += exp((double)x[v] - m);
    /* s >= 1 when m is finite (the maximum contributes exp(0)); a row of -inf logits gives NaN
     * through x - m, as in torch */
    // cppcheck-suppress invalidFunctionArg
    return log(s);
}

static void ce_forward_rows(void *p, int64_t n0, int64_t n1, int tid) {
    const ce_ctx *c = p;
    (void)tid;
    const int64_t V = c->V;
    for (int64_t n = n0; n < n1; n++) {
        const int32_t t = c->targets[n];
        if (t == c->ignore_index) {
            c->row_loss[n] = 0.0;
            continue;
        }
        const float *x = c->logits + n * V; /* (V) */
        const double m = row_max(x, V), ls = row_logsum(x, V, m);
        /* lse - x_t = log s - (x_t - m) */
        double l = (1.0 - c->eps) * (ls - ((double)x[t] - m));
        if (c->eps != 0.0) {   /* skipped at ε = 0 so a -inf logit cannot make 0 · inf */
            double mean = 0.0; /* mean_v (x_v - m) */
            for (int64_t v = 0; v < V; v++) mean += (double)x[v] - m;
            mean /= (double)V;
            l += c->eps * (ls - mean);
        }
        c->row_loss[n] = l;
    }
}

static void ce_backward_rows(void *p, int64_t n0, int64_t n1, int tid) {
    const ce_ctx *c = p;
    (void)tid;
    const int64_t V = c->V;
    const double uniform = c->eps / (double)V;
    for (int64_t n = n0; n < n1; n++) {
        const int32_t t = c->targets[n];
        if (t == c->ignore_index) continue;
        const float *x = c->logits + n * V; /* (V) */
        float *dx = c->dlogits + n * V;     /* (V) */
        const double m = row_max(x, V), ls = row_logsum(x, V, m);
        for (int64_t v = 0; v < V; v++) {
            double prob = exp(((double)x[v] - m) - ls);
            double g = prob - uniform - (v == t ? 1.0 - c->eps : 0.0);
            dx[v] = (float)((double)dx[v] + c->dscale * g);
        }
    }
}

/* Validates and returns the number of non-ignored rows in *count. */
static qkv_status ce_check(const char *fn, const float *logits, const int32_t *targets, int64_t N,
                           int64_t V, int32_t ignore_index, float label_smoothing, int64_t *count) {
    int64_t nv;
    NN_NONNULL(fn, logits);
    NN_NONNULL(fn, targets);
    NN_POSITIVE(fn, N);
    NN_POSITIVE(fn, V);
    NN_NUMEL2(fn, "N*V", N, V, nv);
    (void)nv;
    NN_REQUIRE(label_smoothing >= 0.0f && label_smoothing <= 1.0f,
               "%s: label_smoothing must be in [0, 1] (got %g)", fn, (double)label_smoothing);
    int64_t k = 0;
    for (int64_t n = 0; n < N; n++) {
        if (targets[n] == ignore_index) continue;
        NN_REQUIRE(targets[n] >= 0 && targets[n] < V,
                   "%s: targets[%lld] = %d is outside [0, V = %lld) and is not ignore_index (%d)",
                   fn, (long long)n, (int)targets[n], (long long)V, (int)ignore_index);
        k++;
    }
    *count = k;
    return QKV_OK;
}

qkv_status qkv_nn_cross_entropy_forward_ref(qkv_runtime *rt, float *loss, float *losses,
                                            const float *logits, const int32_t *targets, int64_t N,
                                            int64_t V, int32_t ignore_index,
                                            float label_smoothing) {
    static const char fn[] = "qkv_nn_cross_entropy_forward_ref";
    int64_t count = 0;
    NN_NONNULL(fn, loss);
    QKV_TRY(ce_check(fn, logits, targets, N, V, ignore_index, label_smoothing, &count));
    double *row_loss = qkv__alloc((size_t)N * sizeof(double)); /* (N) */
    if (!row_loss)
        return qkv__fail(QKV_ERR_NOMEM, "%s: out of memory (N = %lld)", fn, (long long)N);
    ce_ctx c = {.row_loss = row_loss,
                .logits = logits,
                .targets = targets,
                .V = V,
                .ignore_index = ignore_index,
                .eps = label_smoothing};
    qkv_parallel_for(rt, N, nn_grain(3 * V), ce_forward_rows, &c);
    double sum = 0.0;
    for (int64_t n = 0; n < N; n++) {
        sum += row_loss[n];
        if (losses) losses[n] = (float)row_loss[n];
    }
    *loss = count ? (float)(sum / (double)count) : 0.0f;
    qkv__free(row_loss);
    return QKV_OK;
}

qkv_status qkv_nn_cross_entropy_backward_ref(qkv_runtime *rt, float *dlogits, float dloss,
                                             const float *logits, const int32_t *targets, int64_t N,
                                             int64_t V, int32_t ignore_index,
                                             float label_smoothing) {
    static const char fn[] = "qkv_nn_cross_entropy_backward_ref";
    int64_t count = 0;
    QKV_TRY(ce_check(fn, logits, targets, N, V, ignore_index, label_smoothing, &count));
    if (!dlogits || count == 0) return QKV_OK;
    ce_ctx c = {.dlogits = dlogits,
                .logits = logits,
                .targets = targets,
                .V = V,
                .ignore_index = ignore_index,
                .eps = label_smoothing,
                .dscale = (double)dloss / (double)count};
    qkv_parallel_for(rt, N, nn_grain(3 * V), ce_backward_rows, &c);
    return QKV_OK;
}
