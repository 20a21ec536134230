/* cmd_serve.c — `qkv serve`: an HTTP/1.1 API (OpenAI's shapes) for embeddings, tokenization and
 * text completion, on libmicrohttpd. The requests themselves are handled in serve_api.c; this
 * file owns the sockets, the models and the threads:
 *   - libmicrohttpd runs a thread per connection (at most --max-connections), so a request may
 *     block while its texts wait for the model; bodies are read up to --max-body, a connection
 *     idle (or a body slower) than --timeout seconds is closed;
 *   - embeddings are batched dynamically: each request tokenizes its texts on its own thread,
 *     queues them, and one worker takes everything waiting (up to --max-batch texts) into one
 *     forward pass; the encoder gives the same bits alone or batched, so batching never
 *     changes a vector;
 *   - completions are decoded together: each request (a streamed one from a thread of its own,
 *     feeding the response through a small buffer) hands its prompt to the decode thread, which
 *     runs one batched forward per step over every active completion (qkv_lm_batch, at most
 *     --decode-batch); a request joins at the next step, leaves when it ends, and gets the
 *     tokens it would get alone; the text is decoded and sent from the decode thread;
 *   - SIGTERM / SIGINT stop accepting connections, wait for the requests in flight (at most
 *     --shutdown-timeout seconds; a second signal stops at once), then free everything. */
#include "cli.h"
#include "serve.h"
#include "textio.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <microhttpd.h>
#include <netdb.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

void cmd_serve_help(void) {
    printf("Usage: qkv serve [--model DIR] [--lm DIR] [--classifier DIR] [--translator DIR]\n"
           "                 [--host ADDR] --port P [options]\n\n"
           "An HTTP/1.1 API in OpenAI's request and response shapes (docs/SERVE.md):\n"
           "  POST /v1/embeddings   sentence embeddings with the --model directory (as qkv embed)\n"
           "  POST /v1/completions  text completion with the --lm directory (\"stream\": true for\n"
           "                        server-sent events)\n"
           "  POST /tokenize        the token ids a model sees\n"
           "  POST /classify        labels and scores with the --classifier (as qkv classify)\n"
           "  POST /translate       translations with the --translator (as qkv translate)\n"
           "  GET  /health, /v1/models, /metrics (Prometheus)\n"
           "Without a model option it serves the default embedding model (as qkv embed).\n\n"
           "Options:\n"
           "  --model DIR            a sentence-transformers model directory (embeddings)\n"
           "  --dtype T              the linear layers' weights of every model served: f32\n"
           "                         (default, exact), bf16 or f16 (half the bytes), int8\n"
           "  --lm DIR               a GPT-2 / Llama-style model directory with its tokenizer\n"
           "  --classifier DIR       a BertForSequenceClassification directory (classification)\n"
           "  --translator DIR       a MarianMT or T5 directory (translation)\n"
           "  --host ADDR            address to listen on (default 127.0.0.1: this machine only)\n"
           "  --port P               port; 0 takes a free one (the line 'listening on' says it)\n"
           "  --api-key KEY          require 'Authorization: Bearer KEY' (except /health);\n"
           "                         default $QKV_API_KEY (preferred: not visible in ps)\n"
           "  --threads N            threads of the model (default: QKV_NUM_THREADS or all CPUs)\n"
           "  --max-batch N          texts per embedding / classification forward pass across\n"
           "                         requests (64)\n"
           "  --batch-wait-ms MS     let a batch fill for up to MS ms before its forward (0:\n"
           "                         take what is waiting, no delay); also the completions\n"
           "                         when none is being decoded\n"
           "  --decode-batch N       completions decoded together, one forward per token (64);\n"
           "                         more wait for a place\n"
           "  --max-body BYTES       largest request body (4194304)\n"
           "  --max-inputs N         texts per embeddings / tokenize / classify / translate\n"
           "                         request (2048)\n"
           "  --max-tokens N         tokens per request (65536)\n"
           "  --max-new-tokens N     largest completion max_tokens, translation max_new_tokens\n"
           "                         (1024)\n"
           "  --max-connections N    connections at once; more wait in the kernel's queue (64)\n"
           "  --timeout S            close a connection idle, or sending its body, for S s (30)\n"
           "  --shutdown-timeout S   on SIGTERM, wait at most S s for requests in flight (30)\n"
           "  --log                  one line per request on stderr\n");
}

/* ---------------------------------------------------------------- the server */

typedef struct embed_job {
    enum serve_batch_kind kind; /* BATCH_EMBED (the --model) or BATCH_CLASSIFY (--classifier) */
    const int32_t *ids, *types; /* types: classification only (NULL: all 0) */
    const int64_t *lens;
    size_t n;
    float *out; /* [n, dim] embeddings or [n, labels] logits */
    qkv_status status;
    char err[SERVE_ERR_LEN];
    int done;
    struct embed_job *next;
} embed_job;

typedef struct server {
    serve_limits lim;
    const char *api_key;
    int log;
    unsigned timeout;
    qkv_model *model;
    qkv_lm *lm;
    qkv_tokenizer *lm_tok;
    qkv_model *cls;                  /* --classifier */
    qkv_seq2seq *mt;                 /* --translator */
    qkv_tokenizer *mt_tok, *mt_ttok; /* source side (encode), target side (decode) */
    char embed_name[256], lm_name[256], cls_name[256], mt_name[256];
    qkv_runtime *rt;     /* the forwards */
    qkv_runtime *tok_rt; /* 1 thread: tokenizing on the connection threads, without a lock */
    int32_t eos[8];
    size_t n_eos;
    serve_metrics metrics;
    serve_backend backend;
    /* the embedding batcher */
    pthread_mutex_t mu;
    pthread_cond_t work, done;
    embed_job *head, *tail;
    int stop;
    size_t max_batch;
    long batch_wait_ms;
    int draining; /* shutting down: batches no longer wait to fill */
    pthread_t worker;
    /* the decode batch of the completions (decode_worker) */
    qkv_lm_batch *lm_batch;
    pthread_mutex_t gmu;
    pthread_cond_t gwork, gdone;
    struct gen_job *gpending;
    int gstop, gdraining;
    size_t decode_batch;
    pthread_t decoder;
    atomic_int active;  /* requests between their first byte and their completion */
    atomic_int streams; /* generating threads of streamed completions */
} server;

static int64_t sum_tokens(const int64_t *lens, size_t n) {
    int64_t t = 0;
    for (size_t i = 0; i < n; i++) t += lens[i];
    return t;
}

static void set_err(char *err, const char *what) {
    snprintf(err, SERVE_ERR_LEN, "%s: %s", what, *qkv_last_error() ? qkv_last_error() : "failed");
}

/* The end of a --batch-wait-ms wait starting now (CLOCK_REALTIME, for pthread_cond_timedwait). */
static struct timespec wait_deadline(const server *s) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    long ns = until.tv_nsec + (s->batch_wait_ms % 1000) * 1000000L;
    until.tv_sec += s->batch_wait_ms / 1000 + ns / 1000000000L;
    until.tv_nsec = ns % 1000000000L;
    return until;
}

/* One forward of a kind over n packed sequences. */
static qkv_status forward(server *s, enum serve_batch_kind kind, const int32_t *ids,
                          const int32_t *types, const int64_t *lens, size_t n, float *out) {
    if (kind == BATCH_EMBED) return qkv_embed_tokens(s->rt, s->model, ids, lens, n, out);
    return qkv_classify_tokens(s->rt, s->cls, ids, types, lens, n, out);
}

/* One forward over the jobs first..(end of list), all of one kind: their texts packed back to
 * back. */
static void run_batch(server *s, embed_job *first, size_t nseq, size_t nreq) {
    const enum serve_batch_kind kind = first->kind;
    int64_t tokens = 0;
    for (embed_job *j = first; j; j = j->next) tokens += sum_tokens(j->lens, j->n);
    serve_metrics_batch(&s->metrics, kind, nseq, nreq);
    serve_metrics_tokens(&s->metrics, kind == BATCH_EMBED ? TOKENS_EMBEDDING : TOKENS_CLASSIFY,
                         (uint64_t)tokens);
    const size_t dim =
        (size_t)(kind == BATCH_EMBED ? qkv_model_dim(s->model) : qkv_model_num_labels(s->cls));
    if (nreq > 1) {
        int32_t *ids = malloc((size_t)tokens * sizeof *ids);
        int32_t *types = kind == BATCH_CLASSIFY ? calloc((size_t)tokens, sizeof *types) : NULL;
        int64_t *lens = malloc(nseq * sizeof *lens);
        float *out = malloc(nseq * dim * sizeof *out);
        qkv_status st = QKV_ERR_NOMEM;
        if (ids && lens && out && (types || kind != BATCH_CLASSIFY)) {
            size_t t = 0, q = 0;
            for (embed_job *j = first; j; j = j->next) {
                int64_t jt = sum_tokens(j->lens, j->n);
                memcpy(ids + t, j->ids, (size_t)jt * sizeof *ids);
                if (types && j->types) memcpy(types + t, j->types, (size_t)jt * sizeof *types);
                memcpy(lens + q, j->lens, j->n * sizeof *lens);
                t += (size_t)jt, q += j->n;
            }
            st = forward(s, kind, ids, types, lens, nseq, out);
        }
        if (st == QKV_OK) {
            size_t q = 0;
            for (embed_job *j = first; j; j = j->next) {
                memcpy(j->out, out + q * dim, j->n * dim * sizeof *out);
                j->status = QKV_OK;
                q += j->n;
            }
        }
        free(ids), free(types), free(lens), free(out);
        if (st == QKV_OK) return;
        /* the batch failed (out of memory?): each request alone, so one cannot fail another */
    }
    for (embed_job *j = first; j; j = j->next) {
        j->status = forward(s, kind, j->ids, j->types, j->lens, j->n, j->out);
        if (j->status != QKV_OK) set_err(j->err, kind == BATCH_EMBED ? "embedding" : "classifying");
    }
}

static void *batch_worker(void *arg) {
    server *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->head && !s->stop) pthread_cond_wait(&s->work, &s->mu);
        if (!s->head) break;        /* stopping, nothing left */
        if (s->batch_wait_ms > 0) { /* let a batch fill: --batch-wait-ms */
            struct timespec until = wait_deadline(s);
            for (;;) {
                size_t queued = 0;
                for (embed_job *j = s->head; j; j = j->next) queued += j->n;
                if (s->stop || s->draining || queued >= s->max_batch ||
                    pthread_cond_timedwait(&s->work, &s->mu, &until) != 0)
                    break;
            }
        }
        /* everything waiting, up to max_batch texts (the first job always, whatever its size) */
        embed_job *first = s->head, *last = first;
        size_t nseq = first->n, nreq = 1;
        while (last->next && last->next->kind == first->kind &&
               nseq + last->next->n <= s->max_batch) {
            last = last->next;
            nseq += last->n, nreq++;
        }
        s->head = last->next;
        if (!s->head) s->tail = NULL;
        last->next = NULL;
        pthread_mutex_unlock(&s->mu);
        run_batch(s, first, nseq, nreq);
        pthread_mutex_lock(&s->mu);
        for (embed_job *j = first, *next; j; j = next) {
            next = j->next; /* j belongs to its waiting request once done is set */
            j->done = 1;
        }
        pthread_cond_broadcast(&s->done);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---------------------------------------------------------------- the backend */

static qkv_status be_embed_tokenize(void *user, const char *const *texts, const size_t *lens,
                                    size_t n, int32_t **ids, int64_t **tok_lens, char *err) {
    server *s = user;
    qkv_status st = qkv_model_tokenize(s->tok_rt, s->model, texts, lens, n, ids, tok_lens);
    if (st != QKV_OK) set_err(err, "tokenizing");
    return st;
}

/* Queues a job for the batcher and waits until it is done. */
static qkv_status run_job(server *s, embed_job *j, char *err) {
    pthread_mutex_lock(&s->mu);
    if (s->tail)
        s->tail->next = j;
    else
        s->head = j;
    s->tail = j;
    pthread_cond_signal(&s->work);
    while (!j->done) pthread_cond_wait(&s->done, &s->mu);
    pthread_mutex_unlock(&s->mu);
    if (j->status != QKV_OK) memcpy(err, j->err, SERVE_ERR_LEN);
    return j->status;
}

static qkv_status be_embed(void *user, const int32_t *ids, const int64_t *lens, size_t n,
                           float *out, char *err) {
    embed_job j = {.kind = BATCH_EMBED, .ids = ids, .lens = lens, .n = n, .out = out};
    return run_job(user, &j, err);
}

static const char *be_cls_label(void *user, int64_t i) {
    return qkv_model_label(((server *)user)->cls, i);
}

static qkv_status be_cls_tokenize(void *user, const char *const *texts, const size_t *lens,
                                  const char *const *pairs, const size_t *pair_lens, size_t n,
                                  int32_t **ids, int32_t **types, int64_t **tok_lens, char *err) {
    server *s = user;
    qkv_status st = qkv_classify_tokenize(s->tok_rt, s->cls, texts, lens, pairs, pair_lens, n, ids,
                                          types, tok_lens);
    if (st != QKV_OK) set_err(err, "tokenizing");
    return st;
}

static qkv_status be_classify(void *user, const int32_t *ids, const int32_t *types,
                              const int64_t *lens, size_t n, int logits, float *out, char *err) {
    server *s = user;
    embed_job j = {
        .kind = BATCH_CLASSIFY, .ids = ids, .types = types, .lens = lens, .n = n, .out = out};
    qkv_status st = run_job(s, &j, err);
    if (st == QKV_OK && !logits && (st = qkv_classify_scores(s->cls, out, n, out)) != QKV_OK)
        set_err(err, "scores");
    return st;
}

static qkv_status be_mt_tokenize(void *user, const char *prefix, const char *text, size_t len,
                                 int32_t **ids, int64_t *n, char *err) {
    server *s = user;
    qkv_status st = cli_translate_encode(s->mt_tok, prefix, text, len, ids, n);
    if (st != QKV_OK) set_err(err, "tokenizing");
    return st;
}

/* Sentences per qkv_seq2seq_generate call, as qkv translate's default --batch. */
#define TRANSLATE_BATCH 32

static qkv_status be_translate(void *user, const serve_translate_opts *r, int32_t *const *ids,
                               const int64_t *lens, size_t n, char **text, float *score,
                               int64_t *tlen, char *err) {
    server *s = user;
    qkv_translate_options o; /* as qkv translate sets them from its options */
    qkv_seq2seq_default_options(s->mt, &o);
    if (r->beams) o.num_beams = r->beams;
    if (r->max_length) o.max_length = r->max_length;
    if (r->max_new_tokens) o.max_new_tokens = r->max_new_tokens;
    if (r->no_repeat_ngram >= 0) o.no_repeat_ngram_size = r->no_repeat_ngram;
    if (r->has_length_penalty) o.length_penalty = r->length_penalty;
    if (qkv_seq2seq_max_output(s->mt, &o) == 0) {
        set_err(err, "options");
        return QKV_ERR_INVALID_ARG;
    }
    qkv_status st = cli_translate_ids(s->rt, s->mt, s->mt_ttok, &o, TRANSLATE_BATCH, ids, lens, n,
                                      text, score, tlen);
    if (st != QKV_OK) {
        set_err(err, "translating");
        if (st == QKV_ERR_INVALID_ARG) st = QKV_ERR_INTERNAL; /* the options were checked */
    } else {
        int64_t src = 0, tgt = 0;
        for (size_t i = 0; i < n; i++) src += lens[i], tgt += tlen[i];
        serve_metrics_tokens(&s->metrics, TOKENS_SOURCE, (uint64_t)src);
        serve_metrics_tokens(&s->metrics, TOKENS_TARGET, (uint64_t)tgt);
    }
    return st;
}

static qkv_status be_lm_tokenize(void *user, const char *text, size_t len, int32_t **ids, size_t *n,
                                 char *err) {
    server *s = user;
    qkv_encode_options o; /* as qkv generate encodes a prompt */
    qkv_tokenizer_default_options(s->lm_tok, &o);
    o.add_special_tokens = 1;
    o.max_length = 0;
    o.pad_to = 0;
    qkv_encoding *enc = NULL;
    *ids = NULL, *n = 0;
    qkv_status st = qkv_tokenizer_encode(s->lm_tok, text, len, NULL, 0, &o, &enc);
    if (st != QKV_OK) {
        set_err(err, "tokenizing");
        return st;
    }
    *ids = qkv_malloc((enc->n ? enc->n : 1) * sizeof **ids);
    if (!*ids) {
        qkv_encoding_free(enc);
        snprintf(err, SERVE_ERR_LEN, "tokenizing: out of memory");
        return QKV_ERR_NOMEM;
    }
    memcpy(*ids, enc->ids, enc->n * sizeof **ids);
    *n = enc->n;
    qkv_encoding_free(enc);
    return QKV_OK;
}

/* One generation's text: the ids so far are decoded whole after each token (a token may
 * complete a UTF-8 sequence the previous one began), and what serve_text_ready allows goes
 * out. */
typedef struct gen_state {
    server *s;
    const serve_completion *c;
    serve_text_fn emit;
    void *emit_user;
    int32_t *ids;
    size_t n, cap, sent;
    int eos, stopped, failed;
} gen_state;

/* Decodes g's ids and sends what is ready; 1 when generation should end. */
static int gen_flush(gen_state *g, int final) {
    char *text = NULL;
    size_t len = 0;
    if (qkv_tokenizer_decode(g->s->lm_tok, g->ids, g->n, 1, &text, &len) != QKV_OK) {
        g->failed = 1;
        return 1;
    }
    long stop_at;
    size_t ready = serve_text_ready(g->c, text, len, final, &stop_at);
    int end = 0;
    if (ready > g->sent) {
        if (g->emit(g->emit_user, text + g->sent, ready - g->sent)) end = 1;
        g->sent = ready;
    }
    if (stop_at >= 0) g->stopped = end = 1;
    qkv_free(text);
    return end;
}

static int gen_on_token(void *user, size_t seq, int32_t token) {
    (void)seq;
    gen_state *g = user;
    for (size_t i = 0; i < g->s->n_eos; i++)
        if (token == g->s->eos[i]) { /* ends the sequence; its text is not part of the reply */
            g->eos = 1;
            return 1;
        }
    if (g->n == g->cap) {
        size_t cap = g->cap ? 2 * g->cap : 64;
        int32_t *p = realloc(g->ids, cap * sizeof *p);
        if (!p) {
            g->failed = 1;
            return 1;
        }
        g->ids = p, g->cap = cap;
    }
    g->ids[g->n++] = token;
    return gen_flush(g, 0);
}

/* A completion waiting for, or in, the decode batch. */
typedef struct gen_job {
    gen_state g;
    qkv_sampling o;
    size_t handle;
    qkv_status status;
    char err[SERVE_ERR_LEN];
    int finished; /* the decode thread's: the job is over (done is set under gmu after it) */
    int done;     /* the request may go on (and the job's memory goes away) */
    struct gen_job *next;
} gen_job;

/* The decode thread's token callback: the job whose handle it is takes the token. */
static int decode_on_token(void *user, size_t seq, int32_t token) {
    for (gen_job *j = user; j; j = j->next)
        if (j->handle == seq) return gen_on_token(&j->g, seq, token);
    return 1;
}

/* Hands the finished jobs of list (or all) back to their requests; returns the list without
 * them. */
static gen_job *finish_jobs(server *s, gen_job *list, int all) {
    gen_job *keep = NULL, **tail = &keep;
    pthread_mutex_lock(&s->gmu);
    for (gen_job *j = list, *next; j; j = next) {
        next = j->next;
        if (all || j->finished) {
            j->done = 1; /* j belongs to its waiting request from here on */
        } else {
            *tail = j;
            tail = &j->next;
        }
    }
    *tail = NULL;
    pthread_cond_broadcast(&s->gdone);
    pthread_mutex_unlock(&s->gmu);
    return keep;
}

/* The decode thread: concurrent completions decoded together, one batched forward per step
 * over every active sequence (qkv_lm_batch); a request joins at the next step and leaves when
 * it ends, its tokens are those it would get alone. */
static void *decode_worker(void *arg) {
    server *s = arg;
    gen_job *active = NULL;
    size_t n_active = 0, *ended = NULL;
    pthread_mutex_lock(&s->gmu);
    for (;;) {
        while (!s->gpending && !active && !s->gstop) pthread_cond_wait(&s->gwork, &s->gmu);
        if (!s->gpending && !active) break;    /* stopping, nothing left */
        if (!active && s->batch_wait_ms > 0) { /* idle: let a batch gather (--batch-wait-ms) */
            struct timespec until = wait_deadline(s);
            for (;;) {
                size_t queued = 0;
                for (gen_job *j = s->gpending; j; j = j->next) queued++;
                if (s->gstop || s->gdraining || queued >= s->decode_batch ||
                    pthread_cond_timedwait(&s->gwork, &s->gmu, &until) != 0)
                    break;
            }
        }
        gen_job *fresh = NULL, **ftail = &fresh;
        while (s->gpending && n_active < s->decode_batch) { /* joins, up to --decode-batch */
            gen_job *j = s->gpending;
            s->gpending = j->next;
            j->next = NULL;
            *ftail = j;
            ftail = &j->next;
            n_active++;
        }
        pthread_mutex_unlock(&s->gmu);
        for (gen_job *j = fresh, *next; j; j = next) {
            next = j->next;
            j->status = qkv_lm_batch_add(s->lm_batch, j->g.c->ids, (int64_t)j->g.c->n_ids, &j->o,
                                         &j->handle);
            if (j->status != QKV_OK) {
                set_err(j->err, "generating");
                j->finished = 1;
                n_active--;
            }
            j->next = active;
            active = j;
        }
        active = finish_jobs(s, active, 0); /* those that could not join */
        size_t n = qkv_lm_batch_size(s->lm_batch), n_ended = 0;
        size_t *grown = n ? realloc(ended, n * sizeof *ended) : ended;
        qkv_status st = n && !grown ? QKV_ERR_NOMEM : QKV_OK;
        if (grown) ended = grown;
        if (n && st == QKV_OK) {
            serve_metrics_batch(&s->metrics, BATCH_DECODE, n, n);
            st = qkv_lm_batch_step(s->rt, s->lm_batch, decode_on_token, active, ended, &n_ended);
        }
        if (st != QKV_OK) { /* every active request fails (a failed step changed nothing) */
            for (gen_job *j = active; j; j = j->next) {
                qkv_lm_batch_cancel(s->lm_batch, j->handle);
                j->status = st;
                if (st == QKV_ERR_NOMEM && !grown)
                    snprintf(j->err, SERVE_ERR_LEN, "generating: out of memory");
                else
                    set_err(j->err, "generating");
            }
            active = finish_jobs(s, active, 1);
            n_active = 0;
        } else {
            for (size_t k = 0; k < n_ended; k++)
                for (gen_job *j = active; j; j = j->next)
                    if (j->handle == ended[k]) j->finished = 1;
            n_active -= n_ended;
            active = finish_jobs(s, active, 0);
        }
        pthread_mutex_lock(&s->gmu);
    }
    pthread_mutex_unlock(&s->gmu);
    free(ended);
    return NULL;
}

static qkv_status be_complete(void *user, const serve_completion *c, serve_text_fn emit,
                              void *emit_user, serve_completion_result *res, char *err) {
    server *s = user;
    gen_job j = {.g = {.s = s, .c = c, .emit = emit, .emit_user = emit_user}};
    gen_state *g = &j.g;
    memset(&j.o, 0, sizeof j.o);
    j.o.struct_size = sizeof j.o;
    j.o.max_new_tokens = c->max_tokens;
    j.o.temperature = c->temperature;
    j.o.top_p = c->top_p >= 1 ? 0 : c->top_p;
    j.o.seed = c->seed;
    j.o.overflow = QKV_CONTEXT_REFUSE;
    pthread_mutex_lock(&s->gmu); /* to the decode thread, which generates into g */
    gen_job **tail = &s->gpending;
    while (*tail) tail = &(*tail)->next;
    *tail = &j;
    pthread_cond_signal(&s->gwork);
    while (!j.done) pthread_cond_wait(&s->gdone, &s->gmu);
    pthread_mutex_unlock(&s->gmu);
    qkv_status st = j.status;
    if (st != QKV_OK)
        memcpy(err, j.err, SERVE_ERR_LEN);
    else if (!g->failed && !g->stopped) /* the held-back tail, now that nothing follows */
        gen_flush(g, 1);
    if (st == QKV_OK && g->failed) {
        snprintf(err, SERVE_ERR_LEN, "generating: out of memory or an undecodable token");
        st = QKV_ERR_NOMEM;
    }
    res->finish_reason = g->eos || g->stopped ? "stop" : "length";
    res->prompt_tokens = (int64_t)c->n_ids;
    res->completion_tokens = (int64_t)g->n + g->eos;
    serve_metrics_tokens(&s->metrics, TOKENS_PROMPT, c->n_ids);
    serve_metrics_tokens(&s->metrics, TOKENS_COMPLETION, (uint64_t)res->completion_tokens);
    free(g->ids);
    return st;
}

static char *be_metrics(void *user) { return serve_metrics_render(&((server *)user)->metrics); }

/* ---------------------------------------------------------------- streaming */

/* A streamed completion: the generating thread appends events, libmicrohttpd's reader takes
 * them; whichever side is last frees it. */
typedef struct stream {
    server *s;
    serve_completion *c;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char *buf;
    size_t len, off, cap;
    int finished, cancelled, refs;
} stream;

static void stream_unref(stream *st) {
    pthread_mutex_lock(&st->mu);
    int last = --st->refs == 0;
    pthread_mutex_unlock(&st->mu);
    if (!last) return;
    pthread_mutex_destroy(&st->mu);
    pthread_cond_destroy(&st->cv);
    serve_completion_free(st->c);
    free(st->c);
    free(st->buf);
    free(st);
}

/* Appends an event; 1 when the client is gone (or memory is). */
static int stream_put(stream *st, char *ev, size_t len) {
    pthread_mutex_lock(&st->mu);
    int gone = st->cancelled || !ev;
    if (!gone) {
        if (st->off == st->len) st->off = st->len = 0;
        if (st->len + len > st->cap) {
            size_t cap = st->cap ? st->cap : 4096;
            while (cap < st->len + len) cap *= 2;
            char *p = realloc(st->buf, cap);
            if (!p)
                gone = 1;
            else
                st->buf = p, st->cap = cap;
        }
        if (!gone) {
            memcpy(st->buf + st->len, ev, len);
            st->len += len;
            pthread_cond_signal(&st->cv);
        }
    }
    pthread_mutex_unlock(&st->mu);
    free(ev);
    return gone;
}

static int stream_emit(void *user, const char *text, size_t len) {
    stream *st = user;
    size_t n = 0;
    char *ev = serve_sse_chunk(st->s->lm_name, st->c, text, len, NULL, &n);
    return stream_put(st, ev, n);
}

static void *stream_thread(void *arg) {
    stream *st = arg;
    serve_completion_result res = {"length", 0, 0};
    char err[SERVE_ERR_LEN] = "";
    qkv_status s = be_complete(st->s, st->c, stream_emit, st, &res, err);
    size_t n = 0;
    if (s != QKV_OK) { /* the status line is gone: the error is an event */
        serve_reply r = {0};
        serve_reply_error(&r, 500, "generation_failed", "%s", err);
        size_t len = strlen("data: ") + r.len + 2;
        char *ev = malloc(len + 1);
        if (ev && r.body) {
            snprintf(ev, len + 1, "data: %.*s\n\n", (int)(r.len - 1), r.body); /* r ends in \n */
            stream_put(st, ev, strlen(ev));
        } else
            free(ev);
        serve_reply_free(&r);
    } else {
        char *ev = serve_sse_chunk(st->s->lm_name, st->c, "", 0, res.finish_reason, &n);
        stream_put(st, ev, n);
    }
    char *done = strdup("data: [DONE]\n\n");
    stream_put(st, done, done ? strlen(done) : 0);
    pthread_mutex_lock(&st->mu);
    st->finished = 1;
    pthread_cond_signal(&st->cv);
    pthread_mutex_unlock(&st->mu);
    server *srv = st->s;
    stream_unref(st);
    atomic_fetch_sub(&srv->streams, 1); /* the last touch of s: shutdown may free it next */
    return NULL;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    stream *st = cls;
    pthread_mutex_lock(&st->mu);
    while (st->off == st->len && !st->finished) pthread_cond_wait(&st->cv, &st->mu);
    ssize_t n;
    if (st->off == st->len)
        n = MHD_CONTENT_READER_END_OF_STREAM;
    else {
        size_t k = st->len - st->off < max ? st->len - st->off : max;
        memcpy(buf, st->buf + st->off, k);
        st->off += k;
        n = (ssize_t)k;
    }
    pthread_mutex_unlock(&st->mu);
    return n;
}

static void stream_free(void *cls) {
    stream *st = cls;
    pthread_mutex_lock(&st->mu);
    st->cancelled = 1; /* the generator stops at its next token */
    pthread_mutex_unlock(&st->mu);
    stream_unref(st);
}

/* ---------------------------------------------------------------- libmicrohttpd */

typedef struct request {
    char *body;
    size_t len, cap;
    int too_big, answered, status;
    double t0;
    enum serve_route route;
    char method[16], url[128];
} request;

static enum MHD_Result send_reply(struct MHD_Connection *conn, request *q, serve_reply *r) {
    struct MHD_Response *resp =
        r->body ? MHD_create_response_from_buffer(r->len, r->body, MHD_RESPMEM_MUST_FREE)
                : MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        serve_reply_free(r);
        return MHD_NO;
    }
    r->body = NULL; /* the response owns it now */
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            r->content_type ? r->content_type : "application/json");
    if (r->status == 401) MHD_add_response_header(resp, "WWW-Authenticate", "Bearer");
    enum MHD_Result ok = MHD_queue_response(conn, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    q->status = r->status;
    q->answered = 1;
    serve_reply_free(r);
    return ok;
}

static enum MHD_Result send_error(struct MHD_Connection *conn, request *q, int status,
                                  const char *code, const char *msg) {
    serve_reply r = {0};
    serve_reply_error(&r, status, code, "%s", msg);
    return send_reply(conn, q, &r);
}

static enum MHD_Result start_stream(server *s, struct MHD_Connection *conn, request *q,
                                    serve_reply *r) {
    stream *st = calloc(1, sizeof *st);
    if (!st) {
        serve_reply_free(r);
        return send_error(conn, q, 500, "out_of_memory", "out of memory");
    }
    st->s = s;
    st->c = r->stream;
    r->stream = NULL;
    st->refs = 2;
    pthread_mutex_init(&st->mu, NULL);
    pthread_cond_init(&st->cv, NULL);
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, st, stream_free);
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    atomic_fetch_add(&s->streams, 1);
    if (!resp || pthread_create(&t, &attr, stream_thread, st) != 0) {
        atomic_fetch_sub(&s->streams, 1);
        pthread_attr_destroy(&attr);
        if (resp) {
            MHD_destroy_response(resp); /* calls stream_free: one reference */
        } else {
            st->refs = 1;
        }
        stream_unref(st);
        serve_reply_free(r);
        return send_error(conn, q, 500, "out_of_memory", "cannot start the stream");
    }
    pthread_attr_destroy(&attr);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    enum MHD_Result ok = MHD_queue_response(conn, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    q->status = 200;
    q->answered = 1;
    serve_reply_free(r);
    return ok;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_size, void **con_cls) {
    (void)version;
    server *s = cls;
    request *q = *con_cls;
    if (!q) { /* the headers: check what can be checked before any body is read */
        q = calloc(1, sizeof *q);
        if (!q) return MHD_NO;
        *con_cls = q;
        q->t0 = now_seconds();
        q->route = serve_route_of(url);
        snprintf(q->method, sizeof q->method, "%s", method);
        snprintf(q->url, sizeof q->url, "%s", url);
        atomic_fetch_add(&s->active, 1);
        serve_metrics_in_flight(&s->metrics, 1);
        if (q->route != ROUTE_HEALTH &&
            !serve_auth_ok(s->api_key, MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                                   MHD_HTTP_HEADER_AUTHORIZATION)))
            return send_error(conn, q, 401, "invalid_api_key",
                              "a valid API key is required: 'Authorization: Bearer KEY'");
        const char *cl =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > s->lim.max_body) {
            char msg[128];
            snprintf(msg, sizeof msg,
                     "the body is larger than this server's %zu bytes (--max-body)",
                     s->lim.max_body);
            return send_error(conn, q, 413, "request_too_large", msg);
        }
        return MHD_YES;
    }
    if (*upload_size) { /* a piece of the body */
        size_t n = *upload_size;
        *upload_size = 0;
        if (q->answered) return MHD_YES; /* refused already: the rest is dropped */
        if (s->timeout && now_seconds() - q->t0 > s->timeout) {
            q->status = 408; /* a body sent too slowly: the connection is closed */
            return MHD_NO;
        }
        if (q->too_big || q->len + n > s->lim.max_body) {
            q->too_big = 1;
            return MHD_YES;
        }
        if (q->len + n > q->cap) {
            size_t cap = q->cap ? q->cap : 4096;
            while (cap < q->len + n) cap *= 2;
            if (cap > s->lim.max_body) cap = s->lim.max_body;
            char *p = realloc(q->body, cap);
            if (!p) {
                q->too_big = 1; /* no memory for it: as good as too big */
                return MHD_YES;
            }
            q->body = p, q->cap = cap;
        }
        memcpy(q->body + q->len, upload_data, n);
        q->len += n;
        return MHD_YES;
    }
    if (q->answered) return MHD_YES;
    if (q->too_big) {
        char msg[128];
        snprintf(msg, sizeof msg, "the body is larger than this server's %zu bytes (--max-body)",
                 s->lim.max_body);
        return send_error(conn, q, 413, "request_too_large", msg);
    }
    serve_reply r;
    serve_handle(&s->backend, &s->lim, method, url, q->body, q->len, &r);
    free(q->body);
    q->body = NULL;
    if (r.stream) return start_stream(s, conn, q, &r);
    return send_reply(conn, q, &r);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    (void)conn;
    server *s = cls;
    request *q = *con_cls;
    if (!q) return;
    double dt = now_seconds() - q->t0;
    int status = q->status ? q->status : 400; /* ended before any reply: a broken request */
    serve_metrics_request(&s->metrics, q->route, status, dt);
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK) serve_metrics_disconnect(&s->metrics);
    if (s->log)
        fprintf(stderr, "qkv serve: %s %s %d %.1f ms%s\n", q->method, q->url, status, dt * 1e3,
                toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (aborted)");
    serve_metrics_in_flight(&s->metrics, -1);
    free(q->body);
    free(q);
    *con_cls = NULL;
    atomic_fetch_sub(&s->active, 1);
}

/* ---------------------------------------------------------------- the command */

/* The last component of a directory path: the model's name in requests and replies. */
static void model_name(const char *dir, char *out, size_t cap) {
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/') len--;
    size_t start = len;
    while (start > 0 && dir[start - 1] != '/') start--;
    snprintf(out, cap, "%.*s", (int)(len - start), dir + start);
}

static int parse_size(const char *opt, const char *val, long lo, long hi, long *out) {
    return cli_parse_count("serve", opt, val, lo, hi, out);
}

/* The address to bind: a numeric IPv4 or IPv6 address, or a name resolved once. */
static int resolve(const char *host, long port, struct sockaddr_storage *ss, socklen_t *len) {
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    char ps[16];
    snprintf(ps, sizeof ps, "%ld", port);
    int e = getaddrinfo(host, ps, &hints, &ai);
    if (e != 0 || !ai) {
        fprintf(stderr, "qkv serve: --host %s: %s\n", host, gai_strerror(e));
        return EXIT_USAGE;
    }
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    *len = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

int cmd_serve(int argc, char **argv) {
    const char *model_dir = NULL, *lm_dir = NULL, *host = "127.0.0.1", *key = getenv("QKV_API_KEY");
    const char *cls_dir = NULL, *mt_dir = NULL;
    long port = -1, threads = 0, max_batch = 64, max_body = 4 << 20, max_inputs = 2048;
    long decode_batch = 64;
    long max_tokens = 65536, max_new = 1024, max_conn = 64, timeout = 30, shutdown_timeout = 30;
    long batch_wait = 0;
    int log = 0;
    qkv_dtype dtype = QKV_DTYPE_F32;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc, rc = 0;
        if (strcmp(a, "--model") == 0 && more)
            model_dir = argv[++i];
        else if (strcmp(a, "--dtype") == 0 && more)
            rc = cli_parse_dtype("serve", argv[++i], &dtype) ? EXIT_USAGE : 0;
        else if (strcmp(a, "--lm") == 0 && more)
            lm_dir = argv[++i];
        else if (strcmp(a, "--classifier") == 0 && more)
            cls_dir = argv[++i];
        else if (strcmp(a, "--translator") == 0 && more)
            mt_dir = argv[++i];
        else if (strcmp(a, "--host") == 0 && more)
            host = argv[++i];
        else if (strcmp(a, "--api-key") == 0 && more)
            key = argv[++i];
        else if (strcmp(a, "--port") == 0 && more)
            rc = parse_size(a, argv[++i], 0, 65535, &port);
        else if (strcmp(a, "--threads") == 0 && more)
            rc = parse_size(a, argv[++i], 1, 1024, &threads);
        else if (strcmp(a, "--decode-batch") == 0 && more)
            rc = parse_size(a, argv[++i], 1, 4096, &decode_batch);
        else if (strcmp(a, "--max-batch") == 0 && more)
            rc = parse_size(a, argv[++i], 1, 1 << 16, &max_batch);
        else if (strcmp(a, "--batch-wait-ms") == 0 && more)
            rc = parse_size(a, argv[++i], 0, 60000, &batch_wait);
        else if (strcmp(a, "--max-body") == 0 && more)
            rc = parse_size(a, argv[++i], 64, 1L << 30, &max_body);
        else if (strcmp(a, "--max-inputs") == 0 && more)
            rc = parse_size(a, argv[++i], 1, 1 << 20, &max_inputs);
        else if (strcmp(a, "--max-tokens") == 0 && more)
            rc = parse_size(a, argv[++i], 1, 1L << 30, &max_tokens);
        else if (strcmp(a, "--max-new-tokens") == 0 && more)
            rc = parse_size(a, argv[++i], 1, 1 << 20, &max_new);
        else if (strcmp(a, "--max-connections") == 0 && more)
            rc = parse_size(a, argv[++i], 1, 100000, &max_conn);
        else if (strcmp(a, "--timeout") == 0 && more)
            rc = parse_size(a, argv[++i], 1, 86400, &timeout);
        else if (strcmp(a, "--shutdown-timeout") == 0 && more)
            rc = parse_size(a, argv[++i], 0, 86400, &shutdown_timeout);
        else if (strcmp(a, "--log") == 0)
            log = 1;
        else
            return cli_usage_error("serve", "unknown option or missing value: '%s'", a);
        if (rc) return rc;
    }
    if (port < 0) return cli_usage_error("serve", "--port is required (0: any free port)");
    if (!model_dir && !lm_dir && !cls_dir && !mt_dir) model_dir = cli_default_model();

    server *s = calloc(1, sizeof *s);
    if (!s) return EXIT_FAIL;
    int rc = EXIT_OK, worker = 0, decoder = 0, sync_ok = 0;
    struct MHD_Daemon *d = NULL;
    s->lim.max_body = (size_t)max_body;
    s->lim.max_inputs = (size_t)max_inputs;
    s->lim.max_tokens = max_tokens;
    s->lim.max_new_tokens = max_new;
    s->api_key = key && *key ? key : NULL;
    s->log = log;
    s->timeout = (unsigned)timeout;
    s->max_batch = (size_t)max_batch;
    s->batch_wait_ms = batch_wait;
    serve_metrics_init(&s->metrics);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->work, NULL);
    pthread_cond_init(&s->done, NULL);
    pthread_mutex_init(&s->gmu, NULL);
    pthread_cond_init(&s->gwork, NULL);
    pthread_cond_init(&s->gdone, NULL);
    s->decode_batch = (size_t)decode_batch;
    sync_ok = 1;
    serve_backend *b = &s->backend;
    b->user = s;
    b->metrics_text = be_metrics;
    qkv_status st;
    const qkv_model_options mo = {.struct_size = sizeof mo, .dtype = dtype};
    if (model_dir) {
        if ((rc = cli_load_model_as("serve", model_dir, dtype, &s->model))) goto done;
        if (!qkv_model_tokenizer(s->model)) {
            rc = cli_usage_error("serve", "%s has no tokenizer (tokenizer.json, vocab.txt)",
                                 model_dir);
            goto done;
        }
        model_name(model_dir, s->embed_name, sizeof s->embed_name);
        b->embed_name = s->embed_name;
        b->embed_dim = qkv_model_dim(s->model);
        b->embed_tokenize = be_embed_tokenize;
        b->embed = be_embed;
    }
    if (lm_dir) {
        if ((st = qkv_lm_load_opts(lm_dir, &mo, &s->lm)) != QKV_OK) {
            rc = cli_report(lm_dir, st);
            goto done;
        }
        if ((st = qkv_tokenizer_load(lm_dir, &s->lm_tok)) != QKV_OK) {
            rc = cli_report(lm_dir, st);
            fprintf(stderr, "qkv serve: --lm needs the model's tokenizer (tokenizer.json, or "
                            "vocab.json + merges.txt)\n");
            goto done;
        }
        model_name(lm_dir, s->lm_name, sizeof s->lm_name);
        b->lm_name = s->lm_name;
        b->lm_vocab = qkv_lm_vocab_size(s->lm);
        b->lm_context = qkv_lm_max_context(s->lm);
        b->lm_has_tokenizer = 1;
        b->lm_tokenize = be_lm_tokenize;
        b->complete = be_complete;
        s->n_eos = qkv_lm_eos_tokens(s->lm, s->eos, 8);
        if (s->n_eos > 8) s->n_eos = 8;
    }
    if (cls_dir) {
        if ((rc = cli_load_classifier("serve", cls_dir, dtype, &s->cls))) goto done;
        model_name(cls_dir, s->cls_name, sizeof s->cls_name);
        b->cls_name = s->cls_name;
        b->cls_labels = qkv_model_num_labels(s->cls);
        b->cls_label = be_cls_label;
        b->cls_tokenize = be_cls_tokenize;
        b->classify = be_classify;
    }
    if (mt_dir) {
        if ((st = qkv_seq2seq_load_opts(mt_dir, &mo, &s->mt)) != QKV_OK ||
            (st = qkv_tokenizer_load(mt_dir, &s->mt_tok)) != QKV_OK ||
            (st = qkv_tokenizer_load_target(mt_dir, &s->mt_ttok)) != QKV_OK) {
            rc = cli_report(mt_dir, st);
            goto done;
        }
        model_name(mt_dir, s->mt_name, sizeof s->mt_name);
        b->mt_name = s->mt_name;
        b->mt_prefix = qkv_seq2seq_source_prefix(s->mt);
        b->mt_max_source = qkv_seq2seq_max_source(s->mt);
        b->mt_tokenize = be_mt_tokenize;
        b->translate = be_translate;
    }
    if ((st = qkv_runtime_create((int)threads, &s->rt)) != QKV_OK ||
        (st = qkv_runtime_create(1, &s->tok_rt)) != QKV_OK) {
        rc = cli_report("runtime", st);
        goto done;
    }

    /* Signals: blocked in every thread (the ones started below inherit the mask) and taken by
     * sigwait here; SIGPIPE from a closed connection is ignored. */
    signal(SIGPIPE, SIG_IGN);
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    if (s->model || s->cls) {
        if (pthread_create(&s->worker, NULL, batch_worker, s) != 0) {
            fprintf(stderr, "qkv serve: cannot start the batching thread\n");
            rc = EXIT_FAIL;
            goto done;
        }
        worker = 1;
    }
    if (s->lm) {
        if ((st = qkv_lm_batch_create(s->lm, &s->lm_batch)) != QKV_OK) {
            rc = cli_report("decode batch", st);
            goto done;
        }
        if (pthread_create(&s->decoder, NULL, decode_worker, s) != 0) {
            fprintf(stderr, "qkv serve: cannot start the decoding thread\n");
            rc = EXIT_FAIL;
            goto done;
        }
        decoder = 1;
    }
    struct sockaddr_storage addr;
    socklen_t addr_len;
    if ((rc = resolve(host, port, &addr, &addr_len))) goto done;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ITC;
    if (addr.ss_family == AF_INET6) flags |= MHD_USE_IPv6;
    d = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR,
                         (struct sockaddr *)&addr, MHD_OPTION_CONNECTION_LIMIT, (unsigned)max_conn,
                         MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)timeout,
                         MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "qkv serve: cannot listen on %s port %ld: %s\n", host, port,
                errno ? strerror(errno) : "libmicrohttpd refused");
        rc = EXIT_FAIL;
        goto done;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    char served[1200] = "";
    const char *what[4] = {"embeddings", "completions", "classification", "translation"};
    const char *names[4] = {b->embed_name, b->lm_name, b->cls_name, b->mt_name};
    for (int i = 0; i < 4; i++)
        if (names[i])
            snprintf(served + strlen(served), sizeof served - strlen(served), "%s%s: %s",
                     *served ? ", " : "", what[i], names[i]);
    printf("qkv serve: listening on http://%s%s%s:%u (%s)\n", addr.ss_family == AF_INET6 ? "[" : "",
           host, addr.ss_family == AF_INET6 ? "]" : "", info ? info->port : (unsigned)port, served);
    fflush(stdout);

    int sig = 0;
    while (sigwait(&sigs, &sig) != 0) {
    }
    fprintf(stderr, "qkv serve: %s: no new connections; finishing %d request(s) in flight\n",
            sig == SIGTERM ? "SIGTERM" : "SIGINT", atomic_load(&s->active));
    pthread_mutex_lock(&s->mu);
    s->draining = 1;
    pthread_cond_broadcast(&s->work);
    pthread_mutex_unlock(&s->mu);
    pthread_mutex_lock(&s->gmu); /* the decode thread no longer waits for a batch to gather */
    s->gdraining = 1;
    pthread_cond_broadcast(&s->gwork);
    pthread_mutex_unlock(&s->gmu);
    MHD_socket lfd = MHD_quiesce_daemon(d);
    if (lfd != MHD_INVALID_SOCKET) close(lfd);
    struct timespec tick = {0, 10 * 1000 * 1000};
    double until = now_seconds() + (double)shutdown_timeout;
    while (atomic_load(&s->active) > 0 && now_seconds() < until)
        if (sigtimedwait(&sigs, NULL, &tick) > 0) { /* a second signal: stop now */
            fprintf(stderr, "qkv serve: second signal: stopping now\n");
            break;
        }
    if (atomic_load(&s->active) > 0)
        fprintf(stderr, "qkv serve: %d request(s) still in flight are cut off\n",
                atomic_load(&s->active));
    MHD_stop_daemon(d); /* joins the connection threads */
    d = NULL;
    fprintf(stderr, "qkv serve: stopped\n");
done:
    if (d) MHD_stop_daemon(d);
    /* streams cut off by the stop end at their next token (their reader is gone) */
    while (atomic_load(&s->streams) > 0) nanosleep(&(struct timespec){0, 1000000}, NULL);
    if (worker) {
        pthread_mutex_lock(&s->mu);
        s->stop = 1;
        pthread_cond_broadcast(&s->work);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->worker, NULL);
    }
    if (decoder) {
        pthread_mutex_lock(&s->gmu);
        s->gstop = 1;
        pthread_cond_broadcast(&s->gwork);
        pthread_mutex_unlock(&s->gmu);
        pthread_join(s->decoder, NULL);
    }
    if (sync_ok) {
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->work);
        pthread_cond_destroy(&s->done);
        pthread_mutex_destroy(&s->gmu);
        pthread_cond_destroy(&s->gwork);
        pthread_cond_destroy(&s->gdone);
        serve_metrics_destroy(&s->metrics);
    }
    qkv_runtime_free(s->rt);
    qkv_runtime_free(s->tok_rt);
    qkv_tokenizer_free(s->lm_tok);
    qkv_lm_batch_free(s->lm_batch);
    qkv_lm_free(s->lm);
    qkv_model_free(s->model);
    qkv_model_free(s->cls);
    qkv_tokenizer_free(s->mt_tok);
    qkv_tokenizer_free(s->mt_ttok);
    qkv_seq2seq_free(s->mt);
    free(s);
    return rc;
}
