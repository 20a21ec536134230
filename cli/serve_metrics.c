/* serve_metrics.c — what `qkv serve` counts, and GET /metrics in Prometheus' text exposition
 * format (version 0.0.4): requests by route and status, latency histograms by route, tokens
 * processed, the dynamic batcher's batch sizes, requests in flight. One mutex: updates are a
 * few additions per request. */
#include "serve.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double lat_le[SERVE_LAT_BUCKETS - 1] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                     0.1,   0.25,   0.5,   1,    2.5,   10};
static const int batch_le[SERVE_BATCH_BUCKETS - 1] = {1, 2, 4, 8, 16, 32, 64, 128};
/* every status the server replies with; anything else counts as the last one, 0 ("other") */
static const int codes[SERVE_CODES] = {200, 400, 401, 404, 405, 408, 413,
                                       415, 429, 431, 500, 503, 504, 0};
static const char *const route_names[ROUTE_COUNT_] = {
    "/health",  "/v1/embeddings", "/v1/completions", "/tokenize", "/v1/models",
    "/metrics", "/classify",      "/translate",      "other"};
static const char *const token_kinds[TOKENS_COUNT_] = {
    "embedding", "prompt", "completion", "classification", "translation_source", "translation"};
static const char *const batch_kinds[BATCH_COUNT_] = {"embedding", "classification", "decode"};

void serve_metrics_init(serve_metrics *m) {
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
}

void serve_metrics_destroy(serve_metrics *m) { pthread_mutex_destroy(&m->mu); }

void serve_metrics_request(serve_metrics *m, enum serve_route route, int status, double seconds) {
    int c = SERVE_CODES - 1;
    for (int i = 0; i < SERVE_CODES - 1; i++)
        if (codes[i] == status) c = i;
    int b = SERVE_LAT_BUCKETS - 1;
    for (int i = 0; i < SERVE_LAT_BUCKETS - 1; i++)
        if (seconds <= lat_le[i]) {
            b = i;
            break;
        }
    pthread_mutex_lock(&m->mu);
    m->requests[route][c]++;
    m->lat_bucket[route][b]++;
    m->lat_sum[route] += seconds;
    m->lat_count[route]++;
    pthread_mutex_unlock(&m->mu);
}

void serve_metrics_tokens(serve_metrics *m, enum serve_token_kind kind, uint64_t n) {
    pthread_mutex_lock(&m->mu);
    m->tokens[kind] += n;
    pthread_mutex_unlock(&m->mu);
}

static int batch_bucket(size_t n) {
    for (int i = 0; i < SERVE_BATCH_BUCKETS - 1; i++)
        if ((int)n <= batch_le[i]) return i;
    return SERVE_BATCH_BUCKETS - 1;
}

void serve_metrics_batch(serve_metrics *m, enum serve_batch_kind kind, size_t sequences,
                         size_t requests) {
    pthread_mutex_lock(&m->mu);
    m->batch_seq_bucket[kind][batch_bucket(sequences)]++;
    m->batch_req_bucket[kind][batch_bucket(requests)]++;
    m->batch_seq_sum[kind] += sequences;
    m->batch_req_sum[kind] += requests;
    m->batches[kind]++;
    pthread_mutex_unlock(&m->mu);
}

void serve_metrics_in_flight(serve_metrics *m, int delta) {
    pthread_mutex_lock(&m->mu);
    m->in_flight += delta;
    pthread_mutex_unlock(&m->mu);
}

void serve_metrics_disconnect(serve_metrics *m) {
    pthread_mutex_lock(&m->mu);
    m->disconnects++;
    pthread_mutex_unlock(&m->mu);
}

typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} text;

static void put(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(text *t, const char *fmt, ...) {
    if (t->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->p + t->n, t->cap - t->n, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->oom = 1;
            return;
        }
        if ((size_t)n < t->cap - t->n) {
            t->n += (size_t)n;
            return;
        }
        size_t cap = t->cap * 2 + (size_t)n + 1;
        char *p = realloc(t->p, cap);
        if (!p) {
            t->oom = 1;
            return;
        }
        t->p = p, t->cap = cap;
    }
}

/* A cumulative histogram: name_bucket{labels,le=...}, name_sum, name_count. */
static void histogram(text *t, const char *name, const char *labels, const uint64_t *bucket, int nb,
                      const char *const *le, double sum, uint64_t count) {
    uint64_t cum = 0;
    const char *sep = *labels ? "," : "";
    for (int i = 0; i < nb; i++) {
        cum += bucket[i];
        put(t, "%s_bucket{%s%sle=\"%s\"} %llu\n", name, labels, sep, le[i],
            (unsigned long long)cum);
    }
    if (*labels)
        put(t, "%s_sum{%s} %.9g\n%s_count{%s} %llu\n", name, labels, sum, name, labels,
            (unsigned long long)count);
    else
        put(t, "%s_sum %.9g\n%s_count %llu\n", name, sum, name, (unsigned long long)count);
}

char *serve_metrics_render(serve_metrics *m) {
    serve_metrics s;
    pthread_mutex_lock(&m->mu);
    memcpy(&s, m, sizeof s); /* a consistent copy; its mutex is never used */
    pthread_mutex_unlock(&m->mu);
    text t = {malloc(4096), 0, 4096, 0};
    if (!t.p) return NULL;
    char lat_names[SERVE_LAT_BUCKETS][16], batch_names[SERVE_BATCH_BUCKETS][16];
    const char *lat_le_s[SERVE_LAT_BUCKETS], *batch_le_s[SERVE_BATCH_BUCKETS];
    for (int i = 0; i < SERVE_LAT_BUCKETS; i++) {
        if (i < SERVE_LAT_BUCKETS - 1)
            snprintf(lat_names[i], sizeof lat_names[i], "%g", lat_le[i]);
        else
            snprintf(lat_names[i], sizeof lat_names[i], "+Inf");
        lat_le_s[i] = lat_names[i];
    }
    for (int i = 0; i < SERVE_BATCH_BUCKETS; i++) {
        if (i < SERVE_BATCH_BUCKETS - 1)
            snprintf(batch_names[i], sizeof batch_names[i], "%d", batch_le[i]);
        else
            snprintf(batch_names[i], sizeof batch_names[i], "+Inf");
        batch_le_s[i] = batch_names[i];
    }
    put(&t, "# HELP qkv_serve_requests_total Requests answered, by route and HTTP status "
            "(code \"other\": any status not listed).\n# TYPE qkv_serve_requests_total counter\n");
    for (int r = 0; r < ROUTE_COUNT_; r++)
        for (int c = 0; c < SERVE_CODES; c++)
            if (s.requests[r][c]) {
                char code[16];
                snprintf(code, sizeof code, "%d", codes[c]);
                put(&t, "qkv_serve_requests_total{route=\"%s\",code=\"%s\"} %llu\n", route_names[r],
                    codes[c] ? code : "other", (unsigned long long)s.requests[r][c]);
            }
    put(&t, "# HELP qkv_serve_request_duration_seconds Time from a request's headers to its "
            "reply, by route.\n# TYPE qkv_serve_request_duration_seconds histogram\n");
    for (int r = 0; r < ROUTE_COUNT_; r++) {
        if (!s.lat_count[r]) continue;
        char labels[64];
        snprintf(labels, sizeof labels, "route=\"%s\"", route_names[r]);
        histogram(&t, "qkv_serve_request_duration_seconds", labels, s.lat_bucket[r],
                  SERVE_LAT_BUCKETS, lat_le_s, s.lat_sum[r], s.lat_count[r]);
    }
    put(&t, "# HELP qkv_serve_tokens_total Tokens processed: embedded, completion prompts, "
            "generated.\n# TYPE qkv_serve_tokens_total counter\n");
    for (int k = 0; k < TOKENS_COUNT_; k++)
        put(&t, "qkv_serve_tokens_total{kind=\"%s\"} %llu\n", token_kinds[k],
            (unsigned long long)s.tokens[k]);
    static const char *const batch_help[2] = {
        "qkv_serve_batch_sequences Sequences per batched forward pass, by kind: embedding and "
        "classification (texts across requests), decode (concurrent completions per generation "
        "step).",
        "qkv_serve_batch_requests Requests per batched forward pass, by kind."};
    for (int h = 0; h < 2; h++) {
        const char *name = h ? "qkv_serve_batch_requests" : "qkv_serve_batch_sequences";
        put(&t, "# HELP %s\n# TYPE %s histogram\n", batch_help[h], name);
        for (int k = 0; k < BATCH_COUNT_; k++) {
            char labels[64];
            snprintf(labels, sizeof labels, "kind=\"%s\"", batch_kinds[k]);
            histogram(&t, name, labels, h ? s.batch_req_bucket[k] : s.batch_seq_bucket[k],
                      SERVE_BATCH_BUCKETS, batch_le_s,
                      (double)(h ? s.batch_req_sum[k] : s.batch_seq_sum[k]), s.batches[k]);
        }
    }
    put(&t,
        "# HELP qkv_serve_requests_in_flight Requests being read, computed or sent.\n"
        "# TYPE qkv_serve_requests_in_flight gauge\nqkv_serve_requests_in_flight %lld\n",
        (long long)s.in_flight);
    put(&t,
        "# HELP qkv_serve_aborted_total Requests ended by the client, an error or a timeout "
        "before their reply was sent.\n# TYPE qkv_serve_aborted_total counter\n"
        "qkv_serve_aborted_total %llu\n",
        (unsigned long long)s.disconnects);
    if (t.oom) {
        free(t.p);
        return NULL;
    }
    return t.p;
}
