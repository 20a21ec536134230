/* sample.c — logits processors (Hugging Face semantics) and the token draw (see sample.h).
 *
 * Everything here runs on one thread per sequence and in a fixed order, so the token chosen
 * is a pure function of the logits, the options, the seed and the step. Probabilities are
 * accumulated in double; removed tokens are -INFINITY and get probability 0. */
#include "models/sample.h"

#include "core/error.h"
#include "core/rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void qkv__logits_repetition_penalty(float *logits, int64_t V, const uint8_t *seen, float penalty) {
    for (int64_t v = 0; v < V; v++)
        if (seen[v]) logits[v] = logits[v] < 0 ? logits[v] * penalty : logits[v] / penalty;
}

void qkv__logits_temperature(float *logits, int64_t V, float t) {
    for (int64_t v = 0; v < V; v++) logits[v] /= t;
}

/* The k-th largest of a[0..n) (k in [1, n]); reorders a. Quickselect, O(n) expected. */
static float kth_largest(float *a, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n - 1, want = k - 1; /* index in descending order */
    while (lo < hi) {
        float pivot = a[lo + (hi - lo) / 2];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (a[i] > pivot) i++;
            while (a[j] < pivot) j--;
            if (i <= j) {
                float t = a[i];
                a[i] = a[j];
                a[j] = t;
                i++;
                j--;
            }
        }
        if (want <= j)
            hi = j;
        else if (want >= i)
            lo = i;
        else
            return a[want];
    }
    return a[want];
}

void qkv__logits_top_k(float *logits, int64_t V, int64_t k, float *scratch) {
    if (k >= V) return;
    memcpy(scratch, logits, sizeof(float) * (size_t)V);
    const float kth = kth_largest(scratch, V, k);
    for (int64_t v = 0; v < V; v++)
        if (logits[v] < kth) logits[v] = -INFINITY;
}

/* qsort has no context argument: the keys of the sort running on this thread */
static _Thread_local const float *tl_keys;

/* Ascending by logit, ties by ascending id (deterministic). */
static int cmp_ascending(const void *a, const void *b) {
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    float x = tl_keys[i], y = tl_keys[j];
    if (x < y) return -1;
    if (x > y) return 1;
    return (i > j) - (i < j);
}

void qkv__logits_top_p(float *logits, int64_t V, float p, int32_t *scratch) {
    if (p >= 1.0f) return;
    int64_t n = 0;
    float mx = -INFINITY;
    for (int64_t v = 0; v < V; v++)
        if (logits[v] > -INFINITY) {
            scratch[n++] = (int32_t)v;
            if (logits[v] > mx) mx = logits[v];
        }
    if (n <= 1) return;
    tl_keys = logits;
    qsort(scratch, (size_t)n, sizeof *scratch, cmp_ascending);
    double total = 0;
    for (int64_t i = 0; i < n; i++) total += exp((double)logits[scratch[i]] - mx);
    /* ascending cumulative probability; tokens with cum <= 1 - p go (never the last one) */
    const double limit = 1.0 - (double)p;
    double cum = 0;
    for (int64_t i = 0; i < n - 1; i++) {
        cum += exp((double)logits[scratch[i]] - mx) / total;
        if (cum > limit) break;
        logits[scratch[i]] = -INFINITY;
    }
}

int32_t qkv__logits_argmax(const float *logits, int64_t V) {
    int64_t best = 0;
    for (int64_t v = 1; v < V; v++)
        if (logits[v] > logits[best]) best = v;
    return (int32_t)best;
}

int32_t qkv__sample_from_logits(const float *logits, int64_t V, float u) {
    float mx = -INFINITY;
    for (int64_t v = 0; v < V; v++)
        if (logits[v] > mx) mx = logits[v];
    double total = 0;
    for (int64_t v = 0; v < V; v++) total += exp((double)logits[v] - mx);
    const double target = (double)u * total;
    double cum = 0;
    int64_t last = 0;
    for (int64_t v = 0; v < V; v++) {
        if (logits[v] == -INFINITY) continue;
        cum += exp((double)logits[v] - mx);
        last = v;
        if (cum > target) return (int32_t)v;
    }
    return (int32_t)last; /* rounding left target at the very top */
}

size_t qkv__sample_scratch_size(int64_t V) { return (size_t)V * (sizeof(float) + sizeof(int32_t)); }

int32_t qkv__sample_token(float *logits, int64_t V, const uint8_t *seen, const qkv_sampling *o,
                          uint64_t seed, uint64_t step, void *scratch) {
    if (o->repetition_penalty > 0 && o->repetition_penalty != 1.0f)
        qkv__logits_repetition_penalty(logits, V, seen, o->repetition_penalty);
    if (o->temperature == 0) return qkv__logits_argmax(logits, V);
    if (o->temperature != 1.0f) qkv__logits_temperature(logits, V, o->temperature);
    if (o->top_k > 0) qkv__logits_top_k(logits, V, o->top_k, scratch);
    if (o->top_p > 0 && o->top_p < 1.0f)
        qkv__logits_top_p(logits, V, o->top_p, (int32_t *)((float *)scratch + V));
    return qkv__sample_from_logits(logits, V, qkv__rng_uniform(seed, 0, step));
}

qkv_status qkv__sampling_check(const qkv_sampling *o, int64_t V) {
    if (!o) return qkv__fail(QKV_ERR_INVALID_ARG, "sampling options: NULL");
    if (o->max_new_tokens < 1)
        return qkv__fail(QKV_ERR_INVALID_ARG, "sampling: max_new_tokens = %lld must be >= 1",
                         (long long)o->max_new_tokens);
    if (!(o->temperature >= 0) || !isfinite(o->temperature))
        return qkv__fail(QKV_ERR_INVALID_ARG, "sampling: temperature = %g must be >= 0 and finite",
                         (double)o->temperature);
    if (o->top_k < 0)
        return qkv__fail(QKV_ERR_INVALID_ARG, "sampling: top_k = %lld must be >= 0",
                         (long long)o->top_k);
    if (!(o->top_p >= 0 && o->top_p <= 1))
        return qkv__fail(QKV_ERR_INVALID_ARG, "sampling: top_p = %g must be in [0, 1]",
                         (double)o->top_p);
    if (!(o->repetition_penalty >= 0) || !isfinite(o->repetition_penalty))
        return qkv__fail(QKV_ERR_INVALID_ARG,
                         "sampling: repetition_penalty = %g must be >= 0 and finite",
                         (double)o->repetition_penalty);
    if (o->n_stop_tokens && !o->stop_tokens)
        return qkv__fail(QKV_ERR_INVALID_ARG,
                         "sampling: stop_tokens is NULL with n_stop_tokens %zu", o->n_stop_tokens);
    for (size_t i = 0; i < o->n_stop_tokens; i++)
        if (o->stop_tokens[i] < 0 || o->stop_tokens[i] >= V)
            return qkv__fail(QKV_ERR_INVALID_ARG,
                             "sampling: stop_tokens[%zu] = %d is outside the vocabulary [0, %lld)",
                             i, o->stop_tokens[i], (long long)V);
    if (o->context < 0)
        return qkv__fail(QKV_ERR_INVALID_ARG, "sampling: context = %lld must be >= 0",
                         (long long)o->context);
    if (o->overflow != QKV_CONTEXT_REFUSE && o->overflow != QKV_CONTEXT_SLIDE)
        return qkv__fail(QKV_ERR_INVALID_ARG,
                         "sampling: overflow = %d is not a qkv_context_overflow", (int)o->overflow);
    return QKV_OK;
}
