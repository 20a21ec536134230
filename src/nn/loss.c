/* loss.c — the losses of classification heads other than softmax cross-entropy (nn.h):
 * binary cross-entropy with logits (multi-label) and mean squared error (regression). Their
 * inputs are one row per sequence (B × labels), so each is one plain loop in double on the
 * calling thread: the form a _ref twin would have, and the only one. */
#include "nn/nn.h"
#include "nn/nn_internal.h"

#include <math.h>

static qkv_status check(const char *fn, const float *x, const float *y, int64_t n) {
    NN_NONNULL(fn, x);
    NN_NONNULL(fn, y);
    NN_POSITIVE(fn, n);
    NN_REQUIRE(n <= NN_MAX_NUMEL, "%s: n = %lld is too large", fn, (long long)n);
    return QKV_OK;
}

/* log(1 + e^{-|x|}) + max(x, 0) − x·y: torch's stable form of −[y log σ(x) + (1−y) log(1−σ(x))]. */
static double bce_term(double x, double y) { return fmax(x, 0.0) - x * y + log1p(exp(-fabs(x))); }

static double sigmoid(double x) {
    if (x >= 0) return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

qkv_status qkv_nn_bce_logits_forward(float *loss, const float *logits, const float *targets,
                                     int64_t n) {
    static const char fn[] = "qkv_nn_bce_logits_forward";
    NN_NONNULL(fn, loss);
    QKV_TRY(check(fn, logits, targets, n));
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += bce_term(logits[i], targets[i]);
    *loss = (float)(s / (double)n);
    return QKV_OK;
}

qkv_status qkv_nn_bce_logits_backward(float *dlogits, float dloss, const float *logits,
                                      const float *targets, int64_t n) {
    static const char fn[] = "qkv_nn_bce_logits_backward";
    NN_NONNULL(fn, dlogits);
    QKV_TRY(check(fn, logits, targets, n));
    const double k = (double)dloss / (double)n;
    for (int64_t i = 0; i < n; i++)
        dlogits[i] += (float)(k * (sigmoid(logits[i]) - (double)targets[i]));
    return QKV_OK;
}

qkv_status qkv_nn_mse_forward(float *loss, const float *pred, const float *targets, int64_t n) {
    static const char fn[] = "qkv_nn_mse_forward";
    NN_NONNULL(fn, loss);
    QKV_TRY(check(fn, pred, targets, n));
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)pred[i] - (double)targets[i];
        s += d * d;
    }
    *loss = (float)(s / (double)n);
    return QKV_OK;
}

qkv_status qkv_nn_mse_backward(float *dpred, float dloss, const float *pred, const float *targets,
                               int64_t n) {
    static const char fn[] = "qkv_nn_mse_backward";
    NN_NONNULL(fn, dpred);
    QKV_TRY(check(fn, pred, targets, n));
    const double k = 2.0 * (double)dloss / (double)n;
    for (int64_t i = 0; i < n; i++) dpred[i] += (float)(k * ((double)pred[i] - (double)targets[i]));
    return QKV_OK;
}
