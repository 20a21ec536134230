/* serve.h — `qkv serve`, an HTTP API over the public API. Three parts:
 *   serve_api.c      the requests, apart from the sockets: routing, JSON parsing and validation,
 *                    limits, replies in OpenAI's shapes, errors ({"error":{message,type,code}});
 *                    models are reached only through serve_backend, so the fuzzer
 *                    (fuzz/fuzz_serve_request.c) runs it whole with a stub backend;
 *   serve_metrics.c  counters and histograms, rendered in Prometheus' text format;
 *   cmd_serve.c      the command: options, models, libmicrohttpd (a thread per connection),
 *                    the dynamic batcher of embeddings, the generation worker, shutdown. */
#ifndef QKV_CLI_SERVE_H
#define QKV_CLI_SERVE_H

#include "qkv.h"

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

/* Limits a request is held to (cmd_serve.c's options set them). */
typedef struct serve_limits {
    size_t max_body;        /* bytes of one request body */
    size_t max_inputs;      /* texts per /v1/embeddings or /tokenize request */
    int64_t max_tokens;     /* tokens per request: embeddings and /tokenize count the tokens
                               the model sees (after truncation); completions count the
                               prompt plus max_tokens */
    int64_t max_new_tokens; /* completions: the largest max_tokens (default for a request
                               that gives none: 16, as OpenAI's) */
} serve_limits;

#define SERVE_ERR_LEN 512
#define SERVE_MAX_STOP 4   /* stop strings per completion, as OpenAI's */
#define SERVE_MAX_BEAMS 16 /* beams per /translate request */

/* A parsed /v1/completions request. */
typedef struct serve_completion {
    int32_t *ids; /* the prompt's tokens (malloc'd) */
    size_t n_ids;
    int64_t max_tokens;
    float temperature, top_p;
    uint64_t seed;
    char *stop[SERVE_MAX_STOP]; /* malloc'd stop strings */
    size_t stop_len[SERVE_MAX_STOP];
    size_t n_stop;
    int stream;
    int64_t created; /* seconds since the epoch, for the replies */
    char id[48];     /* "cmpl-..." */
} serve_completion;
void serve_completion_free(serve_completion *c);

/* Receives the text of a completion as it is produced (stop strings already cut off, never
 * half a UTF-8 sequence); returns nonzero to stop generating (the client went away). */
typedef int (*serve_text_fn)(void *user, const char *text, size_t len);

/* How a completion ended. */
typedef struct serve_completion_result {
    const char *finish_reason; /* "stop" (a stop string or token), "length" */
    int64_t prompt_tokens, completion_tokens;
} serve_completion_result;

/* A /translate request's decoding options: 0 (or has_length_penalty 0, no_repeat_ngram -1)
 * keeps the model directory's default, as qkv translate's options do. */
typedef struct serve_translate_opts {
    int64_t beams, max_length, max_new_tokens, no_repeat_ngram;
    float length_penalty;
    int has_length_penalty;
} serve_translate_opts;

/* What the handlers need from the models. Each function returns a qkv_status and, on failure,
 * a message in err[SERVE_ERR_LEN]. */
typedef struct serve_backend {
    void *user;
    /* the embedding model, or embed_name NULL */
    const char *embed_name;
    int64_t embed_dim;
    /* the ids the model sees for n texts (qkv_model_tokenize; *ids, *lens freed with qkv_free) */
    qkv_status (*embed_tokenize)(void *user, const char *const *texts, const size_t *lens, size_t n,
                                 int32_t **ids, int64_t **tok_lens, char *err);
    /* out [n, embed_dim] (qkv_embed_tokens, batched with other requests) */
    qkv_status (*embed)(void *user, const int32_t *ids, const int64_t *lens, size_t n, float *out,
                        char *err);
    /* the language model, or lm_name NULL */
    const char *lm_name;
    int64_t lm_vocab, lm_context;
    int lm_has_tokenizer;
    /* a prompt's ids (no special tokens added; *ids freed with qkv_free) */
    qkv_status (*lm_tokenize)(void *user, const char *text, size_t len, int32_t **ids, size_t *n,
                              char *err);
    /* generates c's text into emit; res says how it ended */
    qkv_status (*complete)(void *user, const serve_completion *c, serve_text_fn emit,
                           void *emit_user, serve_completion_result *res, char *err);
    /* the sequence classifier, or cls_name NULL */
    const char *cls_name;
    int64_t cls_labels;
    const char *(*cls_label)(void *user, int64_t i);
    /* the ids the classifier sees for n texts (pairs[i] NULL: no pair) as qkv_classify_tokenize
     * gives them (*ids, *types, *tok_lens freed with qkv_free) */
    qkv_status (*cls_tokenize)(void *user, const char *const *texts, const size_t *lens,
                               const char *const *pairs, const size_t *pair_lens, size_t n,
                               int32_t **ids, int32_t **types, int64_t **tok_lens, char *err);
    /* out [n, cls_labels]: the scores (logits 1: the logits), batched with other requests */
    qkv_status (*classify)(void *user, const int32_t *ids, const int32_t *types,
                           const int64_t *lens, size_t n, int logits, float *out, char *err);
    /* the translation model (MarianMT, T5), or mt_name NULL */
    const char *mt_name;
    const char *mt_prefix; /* the model's default source prefix ("" for none) */
    int64_t mt_max_source;
    /* the ids of prefix + text (*ids malloc'd) */
    qkv_status (*mt_tokenize)(void *user, const char *prefix, const char *text, size_t len,
                              int32_t **ids, int64_t *n, char *err);
    /* translates n sources as qkv translate: text[i] (qkv_free), score[i], tlen[i] target
     * tokens; INVALID_ARG for options the model refuses */
    qkv_status (*translate)(void *user, const serve_translate_opts *o, int32_t *const *ids,
                            const int64_t *lens, size_t n, char **text, float *score, int64_t *tlen,
                            char *err);
    /* the Prometheus text of /metrics (malloc'd), or NULL */
    char *(*metrics_text)(void *user);
} serve_backend;

/* A reply: status, content type and a malloc'd body; or, for a completion with "stream": true,
 * status 200 and stream set (the caller streams it as server-sent events and frees it). */
typedef struct serve_reply {
    int status;
    const char *content_type;
    char *body;
    size_t len;
    serve_completion *stream;
} serve_reply;
void serve_reply_free(serve_reply *r);
/* An OpenAI-shaped error reply: {"error":{"message","type","code","param":null}}. */
void serve_reply_error(serve_reply *r, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Handles one request whose body has been read whole (authentication and the body limit are the
 * caller's: see serve_auth_ok and serve_limits.max_body). Never fails: every problem is an
 * error reply (4xx for the client's, 500 for the server's). */
void serve_handle(const serve_backend *b, const serve_limits *lim, const char *method,
                  const char *path, const char *body, size_t len, serve_reply *r);

/* 1 when no key is required (key NULL or "") or authorization is "Bearer <key>" (compared in
 * constant time). */
int serve_auth_ok(const char *key, const char *authorization);

/* Text generation helpers shared by the streaming and the plain completion. */
/* Of the text produced so far, t[0..len): how many bytes may be sent now — not a trailing
 * incomplete UTF-8 sequence, not a tail that may still become a stop string; *stop_at is the
 * offset of the first complete stop string, or -1. */
size_t serve_text_ready(const serve_completion *c, const char *t, size_t len, int final,
                        long *stop_at);
/* One server-sent event of a streamed completion: "data: {...}\n\n" (malloc'd; NULL when out
 * of memory). finish_reason NULL: a text chunk. */
char *serve_sse_chunk(const char *model, const serve_completion *c, const char *text, size_t len,
                      const char *finish_reason, size_t *out_len);

/* ---------------------------------------------------------------- metrics (serve_metrics.c) */

enum serve_route {
    ROUTE_HEALTH,
    ROUTE_EMBEDDINGS,
    ROUTE_COMPLETIONS,
    ROUTE_TOKENIZE,
    ROUTE_MODELS,
    ROUTE_METRICS,
    ROUTE_CLASSIFY,
    ROUTE_TRANSLATE,
    ROUTE_OTHER,
    ROUTE_COUNT_
};
enum serve_token_kind {
    TOKENS_EMBEDDING,
    TOKENS_PROMPT,
    TOKENS_COMPLETION,
    TOKENS_CLASSIFY,
    TOKENS_SOURCE, /* translation sources */
    TOKENS_TARGET, /* translations */
    TOKENS_COUNT_
};
/* What a batched forward computed: embeddings, classifications, or one decode step of the
 * concurrent completions. */
enum serve_batch_kind { BATCH_EMBED, BATCH_CLASSIFY, BATCH_DECODE, BATCH_COUNT_ };
enum { SERVE_LAT_BUCKETS = 13, SERVE_BATCH_BUCKETS = 9, SERVE_CODES = 14 };

typedef struct serve_metrics {
    pthread_mutex_t mu;
    uint64_t requests[ROUTE_COUNT_][SERVE_CODES];
    uint64_t lat_bucket[ROUTE_COUNT_][SERVE_LAT_BUCKETS]; /* cumulative at render time */
    double lat_sum[ROUTE_COUNT_];
    uint64_t lat_count[ROUTE_COUNT_];
    uint64_t tokens[TOKENS_COUNT_];
    uint64_t batch_seq_bucket[BATCH_COUNT_][SERVE_BATCH_BUCKETS];
    uint64_t batch_req_bucket[BATCH_COUNT_][SERVE_BATCH_BUCKETS];
    uint64_t batch_seq_sum[BATCH_COUNT_], batch_req_sum[BATCH_COUNT_], batches[BATCH_COUNT_];
    int64_t in_flight;
    uint64_t disconnects; /* requests ended by the client or a timeout before the reply */
} serve_metrics;

void serve_metrics_init(serve_metrics *m);
void serve_metrics_destroy(serve_metrics *m);
enum serve_route serve_route_of(const char *path);
void serve_metrics_request(serve_metrics *m, enum serve_route route, int status, double seconds);
void serve_metrics_tokens(serve_metrics *m, enum serve_token_kind kind, uint64_t n);
/* One batched forward: how many sequences and requests it carried. */
void serve_metrics_batch(serve_metrics *m, enum serve_batch_kind kind, size_t sequences,
                         size_t requests);
void serve_metrics_in_flight(serve_metrics *m, int delta);
void serve_metrics_disconnect(serve_metrics *m);
/* The Prometheus text exposition (malloc'd; NULL when out of memory). */
char *serve_metrics_render(serve_metrics *m);

#endif
