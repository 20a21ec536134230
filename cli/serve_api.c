/* serve_api.c — the requests of `qkv serve`, apart from the sockets: routing, parsing and
 * validating the JSON bodies, the limits, and replies in OpenAI's shapes. Models are reached
 * through serve_backend only, so fuzz/fuzz_serve_request.c runs all of this with a stub.
 *
 * Every problem of a request is an error reply, never a crash: bodies are parsed by jansson
 * (strict UTF-8, duplicate keys refused, nesting bounded), every field's type and range is
 * checked before use and named in the message. */
#include "serve.h"
#include "textio.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---------------------------------------------------------------- a growing buffer */

typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t len) {
    if (b->oom) return;
    if (b->n + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + len + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->n, s, len);
    b->n += len;
    b->p[b->n] = '\0';
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof tmp) {
        sb_put(b, tmp, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        b->oom = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb_put(b, big, (size_t)n);
    free(big);
}

/* A JSON string literal of s[0..len): escaped, each byte of invalid UTF-8 as U+FFFD. */
static void sb_json_string(sbuf *b, const char *s, size_t len) {
    const unsigned char *u = (const unsigned char *)s;
    sb_put(b, "\"", 1);
    for (size_t i = 0; i < len;) {
        unsigned char c = u[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            sb_put(b, e, 2);
            i++;
        } else if (c < 0x20) {
            sb_printf(b, "\\u%04x", c);
            i++;
        } else {
            size_t n = utf8_valid_len(u + i, len - i);
            if (n)
                sb_put(b, s + i, n), i += n;
            else
                sb_put(b, "\xef\xbf\xbd", 3), i++;
        }
    }
    sb_put(b, "\"", 1);
}

/* A float as JSON: %.9g gives back the same float32; NaN and infinities (JSON has none) are
 * null. */
static void sb_float(sbuf *b, float x) {
    if (isfinite(x))
        sb_printf(b, "%.9g", (double)x);
    else
        sb_str(b, "null");
}

static void sb_base64(sbuf *b, const unsigned char *d, size_t n) {
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)d[i] << 16;
        if (i + 1 < n) v |= (unsigned)d[i + 1] << 8;
        if (i + 2 < n) v |= d[i + 2];
        char q[4] = {tab[v >> 18 & 63], tab[v >> 12 & 63], i + 1 < n ? tab[v >> 6 & 63] : '=',
                     i + 2 < n ? tab[v & 63] : '='};
        sb_put(b, q, 4);
    }
}

/* ---------------------------------------------------------------- replies */

void serve_reply_free(serve_reply *r) {
    if (!r) return;
    free(r->body);
    serve_completion_free(r->stream);
    free(r->stream);
    memset(r, 0, sizeof *r);
}

static void reply_take(serve_reply *r, int status, sbuf *b) {
    if (b->oom) {
        free(b->p);
        serve_reply_error(r, 500, "out_of_memory", "the server ran out of memory for the reply");
        return;
    }
    r->status = status;
    r->content_type = "application/json";
    r->body = b->p;
    r->len = b->n;
}

/* OpenAI's error types by status. */
static const char *error_type(int status) {
    switch (status) {
    case 401: return "authentication_error";
    case 404: return "not_found_error";
    case 429: return "rate_limit_error";
    default: return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

void serve_reply_error(serve_reply *r, int status, const char *code, const char *fmt, ...) {
    char msg[SERVE_ERR_LEN + 256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    free(r->body);
    r->body = NULL;
    sbuf b = {0};
    sb_str(&b, "{\"error\":{\"message\":");
    sb_json_string(&b, msg, strlen(msg));
    sb_printf(&b, ",\"type\":\"%s\",\"param\":null,\"code\":\"%s\"}}\n", error_type(status), code);
    r->status = status;
    r->content_type = "application/json";
    if (b.oom) { /* a static body would need another owner: say it with the status alone */
        free(b.p);
        b.p = NULL, b.n = 0;
    }
    r->body = b.p;
    r->len = b.n;
}

/* ---------------------------------------------------------------- authentication */

int serve_auth_ok(const char *key, const char *authorization) {
    if (!key || !*key) return 1;
    if (!authorization || strncmp(authorization, "Bearer ", 7) != 0) return 0;
    const char *got = authorization + 7;
    size_t kl = strlen(key), gl = strlen(got);
    unsigned diff = kl != gl; /* every byte of the key is looked at, whatever matched */
    for (size_t i = 0; i < kl; i++)
        diff |= (unsigned)((unsigned char)key[i] ^ (i < gl ? (unsigned char)got[i] : 0u));
    return diff == 0;
}

/* ---------------------------------------------------------------- request bodies */

/* The body as a JSON object, or an error reply. */
static json_t *parse_object(const char *body, size_t len, serve_reply *r) {
    if (len == 0) {
        serve_reply_error(r, 400, "invalid_json", "the request has no body: send a JSON object");
        return NULL;
    }
    json_error_t e;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &e);
    if (!root) {
        serve_reply_error(r, 400, "invalid_json",
                          "the body is not valid JSON (UTF-8, no duplicate keys): %s at line %d, "
                          "column %d",
                          e.text, e.line, e.column);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        serve_reply_error(r, 400, "invalid_request", "the body must be a JSON object");
        return NULL;
    }
    return root;
}

/* "model": absent or null (the one loaded), else one of the loaded names. Returns the name to
 * reply with, or NULL after an error reply. */
static const char *pick_model(json_t *root, const char *want, const char *what, serve_reply *r) {
    json_t *m = json_object_get(root, "model");
    if (!want) {
        const char *opt = strcmp(what, "language model") == 0      ? "--lm DIR"
                          : strcmp(what, "classifier") == 0        ? "--classifier DIR"
                          : strcmp(what, "translation model") == 0 ? "--translator DIR"
                                                                   : "--model DIR";
        serve_reply_error(r, 404, "model_not_found", "no %s is loaded: start qkv serve with %s",
                          what, opt);
        return NULL;
    }
    if (!m || json_is_null(m)) return want;
    if (!json_is_string(m)) {
        serve_reply_error(r, 400, "invalid_type", "'model' must be a string");
        return NULL;
    }
    if (strcmp(json_string_value(m), want) != 0) {
        serve_reply_error(r, 404, "model_not_found",
                          "the model '%.200s' is not served here; the %s is '%s'",
                          json_string_value(m), what, want);
        return NULL;
    }
    return want;
}

/* "input": a string or a non-empty array of strings, at most lim->max_inputs. Fills texts and
 * lens (malloc'd, pointing into root). Returns the count, or 0 after an error reply. */
/* "input": a string (one input) or a non-empty array of at most lim->max_inputs. Returns the
 * count (*in the field), or 0 after an error reply. */
static size_t count_inputs(json_t *root, const char *field, const serve_limits *lim, json_t **in,
                           serve_reply *r) {
    size_t n;
    *in = json_object_get(root, field);
    if (!*in) {
        serve_reply_error(r, 400, "missing_field",
                          "'%s' is required: a string or an array of "
                          "strings",
                          field);
        return 0;
    }
    if (json_is_string(*in))
        n = 1;
    else if (json_is_array(*in))
        n = json_array_size(*in);
    else {
        serve_reply_error(r, 400, "invalid_type", "'%s' must be a string or an array of strings",
                          field);
        return 0;
    }
    if (n == 0) {
        serve_reply_error(r, 400, "invalid_value", "'%s' is an empty array", field);
        return 0;
    }
    if (n > lim->max_inputs) {
        serve_reply_error(r, 400, "too_many_inputs",
                          "'%s' has %zu texts; this server takes at most %zu per request "
                          "(--max-inputs)",
                          field, n, lim->max_inputs);
        return 0;
    }
    return n;
}

static size_t get_texts(json_t *root, const char *field, const serve_limits *lim,
                        const char ***texts, size_t **lens, serve_reply *r) {
    json_t *in;
    size_t n = count_inputs(root, field, lim, &in, r);
    if (!n) return 0;
    *texts = malloc(n * sizeof **texts);
    *lens = malloc(n * sizeof **lens);
    if (!*texts || !*lens) {
        free(*texts), free(*lens);
        *texts = NULL, *lens = NULL;
        serve_reply_error(r, 500, "out_of_memory", "out of memory for %zu texts", n);
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_is_string(in) ? in : json_array_get(in, i);
        if (!json_is_string(t)) {
            free(*texts), free(*lens);
            *texts = NULL, *lens = NULL;
            serve_reply_error(r, 400, "invalid_type",
                              "'%s[%zu]' must be a string (token-id inputs are not supported)",
                              field, i);
            return 0;
        }
        (*texts)[i] = json_string_value(t);
        (*lens)[i] = json_string_length(t);
    }
    return n;
}

static int64_t sum_lens(const int64_t *lens, size_t n) {
    int64_t t = 0;
    for (size_t i = 0; i < n; i++) t += lens[i];
    return t;
}

/* The end of a list reply (embeddings, tokens): the model and the usage. */
static void finish_list(sbuf *o, const char *model, int64_t total, serve_reply *r) {
    sb_str(o, "],\"model\":");
    sb_json_string(o, model, strlen(model));
    sb_printf(o, ",\"usage\":{\"prompt_tokens\":%lld,\"total_tokens\":%lld}}\n", (long long)total,
              (long long)total);
    reply_take(r, 200, o);
}

/* 1 after an error reply when a request's tokens exceed --max-tokens. */
static int over_token_limit(int64_t total, const serve_limits *lim, serve_reply *r) {
    if (total <= lim->max_tokens) return 0;
    serve_reply_error(r, 400, "too_many_tokens",
                      "the inputs have %lld tokens; this server takes at most %lld per request "
                      "(--max-tokens)",
                      (long long)total, (long long)lim->max_tokens);
    return 1;
}

/* ---------------------------------------------------------------- /v1/embeddings */

static void handle_embeddings(const serve_backend *b, const serve_limits *lim, const char *body,
                              size_t len, serve_reply *r) {
    json_t *root = parse_object(body, len, r);
    if (!root) return;
    const char **texts = NULL;
    size_t *lens = NULL, n = 0;
    int32_t *ids = NULL;
    int64_t *tok_lens = NULL;
    float *out = NULL;
    char err[SERVE_ERR_LEN] = "";
    int base64 = 0;
    const char *model = pick_model(root, b->embed_name, "embedding model", r);
    if (!model) goto done;
    json_t *fmt = json_object_get(root, "encoding_format");
    if (fmt && !json_is_null(fmt)) {
        const char *f = json_is_string(fmt) ? json_string_value(fmt) : "";
        if (strcmp(f, "base64") == 0)
            base64 = 1;
        else if (strcmp(f, "float") != 0) {
            serve_reply_error(r, 400, "invalid_value",
                              "'encoding_format' must be \"float\" or \"base64\"");
            goto done;
        }
    }
    json_t *dims = json_object_get(root, "dimensions");
    if (dims && !json_is_null(dims) &&
        (!json_is_integer(dims) || json_integer_value(dims) != b->embed_dim)) {
        serve_reply_error(r, 400, "invalid_value",
                          "'dimensions' must be %lld, the model's width (no shortening)",
                          (long long)b->embed_dim);
        goto done;
    }
    if (!(n = get_texts(root, "input", lim, &texts, &lens, r))) goto done;
    qkv_status s = b->embed_tokenize(b->user, texts, lens, n, &ids, &tok_lens, err);
    if (s != QKV_OK) {
        serve_reply_error(r, s == QKV_ERR_NOMEM ? 500 : 400, "tokenize_failed", "%s", err);
        goto done;
    }
    int64_t total = sum_lens(tok_lens, n);
    if (over_token_limit(total, lim, r)) goto done;
    size_t dim = (size_t)b->embed_dim;
    out = malloc(n * dim * sizeof *out);
    if (!out) {
        serve_reply_error(r, 500, "out_of_memory", "out of memory for %zu embeddings", n);
        goto done;
    }
    s = b->embed(b->user, ids, tok_lens, n, out, err);
    if (s != QKV_OK) {
        serve_reply_error(r, 500, "embedding_failed", "%s", err);
        goto done;
    }
    sbuf o = {0};
    sb_str(&o, "{\"object\":\"list\",\"data\":[");
    for (size_t i = 0; i < n; i++) {
        sb_printf(&o, "%s{\"object\":\"embedding\",\"index\":%zu,\"embedding\":", i ? "," : "", i);
        if (base64) { /* little-endian float32, as OpenAI's (x86 and ARM are little-endian) */
            sb_put(&o, "\"", 1);
            sb_base64(&o, (const unsigned char *)(out + i * dim), dim * sizeof *out);
            sb_put(&o, "\"", 1);
        } else {
            sb_put(&o, "[", 1);
            for (size_t c = 0; c < dim; c++) {
                if (c) sb_put(&o, ",", 1);
                sb_float(&o, out[i * dim + c]);
            }
            sb_put(&o, "]", 1);
        }
        sb_put(&o, "}", 1);
    }
    finish_list(&o, model, total, r);
done:
    free(out);
    qkv_free(ids);
    qkv_free(tok_lens);
    free(texts);
    free(lens);
    json_decref(root);
}

/* ---------------------------------------------------------------- /tokenize */

static void handle_tokenize(const serve_backend *b, const serve_limits *lim, const char *body,
                            size_t len, serve_reply *r) {
    json_t *root = parse_object(body, len, r);
    if (!root) return;
    const char **texts = NULL;
    size_t *lens = NULL, n = 0;
    int32_t *ids = NULL;
    int64_t *tok_lens = NULL;
    char err[SERVE_ERR_LEN] = "";
    /* the model asked for, else the embedding model, else the language model */
    json_t *m = json_object_get(root, "model");
    const char *model = NULL;
    int lm = 0;
    if (m && json_is_string(m) && b->lm_name && strcmp(json_string_value(m), b->lm_name) == 0)
        model = b->lm_name, lm = 1;
    else if ((!m || json_is_null(m)) && !b->embed_name && b->lm_name)
        model = b->lm_name, lm = 1;
    else if (!(model = pick_model(root, b->embed_name ? b->embed_name : b->lm_name, "model", r)))
        goto done;
    if (lm && !b->lm_has_tokenizer) {
        serve_reply_error(r, 400, "no_tokenizer",
                          "the model '%s' has no tokenizer (tokenizer.json, vocab.json)", model);
        goto done;
    }
    if (!(n = get_texts(root, "input", lim, &texts, &lens, r))) goto done;
    if (!lm) {
        qkv_status s = b->embed_tokenize(b->user, texts, lens, n, &ids, &tok_lens, err);
        if (s != QKV_OK) {
            serve_reply_error(r, s == QKV_ERR_NOMEM ? 500 : 400, "tokenize_failed", "%s", err);
            goto done;
        }
    } else { /* one text at a time into the same packed layout */
        tok_lens = qkv_malloc(n * sizeof *tok_lens);
        if (!tok_lens) {
            serve_reply_error(r, 500, "out_of_memory", "out of memory");
            goto done;
        }
        size_t have = 0;
        for (size_t i = 0; i < n; i++) {
            int32_t *one = NULL;
            size_t k = 0;
            qkv_status s = b->lm_tokenize(b->user, texts[i], lens[i], &one, &k, err);
            if (s != QKV_OK) {
                serve_reply_error(r, s == QKV_ERR_NOMEM ? 500 : 400, "tokenize_failed", "%s", err);
                goto done;
            }
            int32_t *grown = have + k > (size_t)lim->max_tokens
                                 ? NULL
                                 : qkv_malloc((have + k ? have + k : 1) * sizeof *grown);
            if (!grown) {
                qkv_free(one);
                if (have + k > (size_t)lim->max_tokens)
                    serve_reply_error(r, 400, "too_many_tokens",
                                      "the inputs have more than %lld tokens (--max-tokens)",
                                      (long long)lim->max_tokens);
                else
                    serve_reply_error(r, 500, "out_of_memory", "out of memory");
                goto done;
            }
            if (have) memcpy(grown, ids, have * sizeof *ids);
            if (k) memcpy(grown + have, one, k * sizeof *ids);
            qkv_free(ids);
            qkv_free(one);
            ids = grown;
            have += k;
            tok_lens[i] = (int64_t)k;
        }
    }
    int64_t total = sum_lens(tok_lens, n);
    if (over_token_limit(total, lim, r)) goto done;
    sbuf o = {0};
    sb_str(&o, "{\"object\":\"list\",\"data\":[");
    int64_t at = 0;
    for (size_t i = 0; i < n; i++) {
        sb_printf(&o, "%s{\"object\":\"tokens\",\"index\":%zu,\"tokens\":[", i ? "," : "", i);
        for (int64_t k = 0; k < tok_lens[i]; k++) sb_printf(&o, "%s%d", k ? "," : "", ids[at + k]);
        at += tok_lens[i];
        sb_put(&o, "]}", 2);
    }
    finish_list(&o, model, total, r);
done:
    qkv_free(ids);
    qkv_free(tok_lens);
    free(texts);
    free(lens);
    json_decref(root);
}

/* ---------------------------------------------------------------- /v1/completions */

void serve_completion_free(serve_completion *c) {
    if (!c) return;
    free(c->ids);
    for (size_t i = 0; i < c->n_stop; i++) free(c->stop[i]);
    memset(c, 0, sizeof *c);
}

/* A number field in [lo, hi] (absent or null: def). 0, or -1 after an error reply. */
static int get_number(json_t *root, const char *field, double lo, double hi, double def,
                      double *out, serve_reply *r) {
    json_t *v = json_object_get(root, field);
    *out = def;
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v) || json_number_value(v) < lo || json_number_value(v) > hi) {
        serve_reply_error(r, 400, "invalid_value", "'%s' must be a number in [%g, %g]", field, lo,
                          hi);
        return -1;
    }
    *out = json_number_value(v);
    return 0;
}

/* A whole-number field in [lo, hi] (absent or null: def). 0, or -1 after an error reply. */
static int get_whole(json_t *root, const char *field, int64_t lo, int64_t hi, int64_t def,
                     int64_t *out, serve_reply *r) {
    double v;
    if (get_number(root, field, (double)lo, (double)hi, (double)def, &v, r)) return -1;
    if (v != floor(v)) {
        serve_reply_error(r, 400, "invalid_value", "'%s' must be a whole number", field);
        return -1;
    }
    *out = (int64_t)v;
    return 0;
}

/* A field that must be absent, null, or the given harmless value (the features qkv does not
 * have). 0, or -1 after an error reply. */
static int refuse_unless(json_t *root, const char *field, json_t *harmless, const char *why,
                         serve_reply *r) {
    json_t *v = json_object_get(root, field);
    int ok = !v || json_is_null(v) || (harmless && json_equal(v, harmless)) ||
             (harmless && json_is_number(harmless) && json_is_number(v) &&
              json_number_value(v) == json_number_value(harmless)); /* 0.0 is 0 */
    json_decref(harmless);
    if (ok) return 0;
    serve_reply_error(r, 400, "unsupported", "'%s' is not supported: %s", field, why);
    return -1;
}

static atomic_ullong completion_counter;

/* Fills c from the body; 0, or -1 after an error reply. */
static int parse_completion(const serve_backend *b, const serve_limits *lim, json_t *root,
                            serve_completion *c, serve_reply *r) {
    char err[SERVE_ERR_LEN] = "";
    if (refuse_unless(root, "n", json_integer(1), "one completion per request", r) ||
        refuse_unless(root, "best_of", json_integer(1), "one completion per request", r) ||
        refuse_unless(root, "echo", json_false(), "the prompt is not echoed", r) ||
        refuse_unless(root, "logprobs", NULL, "no log-probabilities", r) ||
        refuse_unless(root, "suffix", NULL, "no insertion", r) ||
        refuse_unless(root, "logit_bias", NULL, "no logit bias", r) ||
        refuse_unless(root, "presence_penalty", json_integer(0), "no presence penalty", r) ||
        refuse_unless(root, "frequency_penalty", json_integer(0), "no frequency penalty", r))
        return -1;
    json_t *p = json_object_get(root, "prompt");
    /* a one-element array holds the one prompt */
    if (p && json_is_array(p) && json_array_size(p) == 1 &&
        (json_is_string(json_array_get(p, 0)) || json_is_array(json_array_get(p, 0))))
        p = json_array_get(p, 0);
    if (!p) {
        serve_reply_error(r, 400, "missing_field",
                          "'prompt' is required: a string or an array of token ids");
        return -1;
    }
    if (json_is_string(p)) {
        if (!b->lm_has_tokenizer) {
            serve_reply_error(r, 400, "no_tokenizer",
                              "the model '%s' has no tokenizer: give 'prompt' as token ids",
                              b->lm_name);
            return -1;
        }
        int32_t *ids = NULL;
        size_t n = 0;
        qkv_status s =
            b->lm_tokenize(b->user, json_string_value(p), json_string_length(p), &ids, &n, err);
        if (s != QKV_OK) {
            serve_reply_error(r, s == QKV_ERR_NOMEM ? 500 : 400, "tokenize_failed", "%s", err);
            return -1;
        }
        c->ids = malloc((n ? n : 1) * sizeof *c->ids);
        if (c->ids && n) memcpy(c->ids, ids, n * sizeof *ids);
        qkv_free(ids);
        c->n_ids = n;
    } else if (json_is_array(p)) {
        size_t n = json_array_size(p);
        if (n > (size_t)lim->max_tokens) {
            serve_reply_error(r, 400, "too_many_tokens",
                              "the prompt has %zu tokens; this server takes at most %lld per "
                              "request (--max-tokens)",
                              n, (long long)lim->max_tokens);
            return -1;
        }
        c->ids = malloc((n ? n : 1) * sizeof *c->ids);
        for (size_t i = 0; c->ids && i < n; i++) {
            json_t *t = json_array_get(p, i);
            if (!json_is_integer(t) || json_integer_value(t) < 0 ||
                json_integer_value(t) >= b->lm_vocab) {
                serve_reply_error(r, 400, "invalid_value",
                                  "'prompt[%zu]' must be a token id in [0, %lld) (one prompt "
                                  "per request)",
                                  i, (long long)b->lm_vocab);
                return -1;
            }
            c->ids[i] = (int32_t)json_integer_value(t);
        }
        c->n_ids = n;
    } else {
        serve_reply_error(r, 400, "invalid_type",
                          "'prompt' must be a string or an array of token ids");
        return -1;
    }
    if (!c->ids) {
        serve_reply_error(r, 500, "out_of_memory", "out of memory for the prompt");
        return -1;
    }
    if (c->n_ids == 0) {
        serve_reply_error(r, 400, "invalid_value", "'prompt' is empty");
        return -1;
    }
    if (get_whole(root, "max_tokens", 1, lim->max_new_tokens, 16, &c->max_tokens, r)) return -1;
    double v;
    if (get_number(root, "temperature", 0, 2, 1, &v, r)) return -1;
    c->temperature = (float)v;
    if (get_number(root, "top_p", 0, 1, 1, &v, r)) return -1;
    if (v == 0) {
        serve_reply_error(r, 400, "invalid_value", "'top_p' must be in (0, 1]");
        return -1;
    }
    c->top_p = (float)v;
    json_t *seed = json_object_get(root, "seed");
    if (seed && !json_is_null(seed)) {
        if (!json_is_integer(seed)) {
            serve_reply_error(r, 400, "invalid_type", "'seed' must be an integer");
            return -1;
        }
        c->seed = (uint64_t)json_integer_value(seed);
    } else { /* no seed: a different one per request */
        c->seed =
            (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ull + atomic_fetch_add(&completion_counter, 1);
    }
    json_t *st = json_object_get(root, "stop");
    if (st && !json_is_null(st)) {
        size_t n = json_is_string(st) ? 1 : json_is_array(st) ? json_array_size(st) : 0;
        if ((!json_is_string(st) && !json_is_array(st)) || n > SERVE_MAX_STOP) {
            serve_reply_error(r, 400, "invalid_value",
                              "'stop' must be a string or an array of at most %d strings",
                              SERVE_MAX_STOP);
            return -1;
        }
        for (size_t i = 0; i < n; i++) {
            json_t *s = json_is_string(st) ? st : json_array_get(st, i);
            if (!json_is_string(s) || json_string_length(s) == 0) {
                serve_reply_error(r, 400, "invalid_value", "'stop[%zu]' must be a non-empty string",
                                  i);
                return -1;
            }
            c->stop[i] = malloc(json_string_length(s) + 1);
            if (!c->stop[i]) {
                serve_reply_error(r, 500, "out_of_memory", "out of memory");
                return -1;
            }
            memcpy(c->stop[i], json_string_value(s), json_string_length(s) + 1);
            c->stop_len[i] = json_string_length(s);
            c->n_stop = i + 1;
        }
    }
    json_t *stream = json_object_get(root, "stream");
    if (stream && !json_is_null(stream) && !json_is_boolean(stream)) {
        serve_reply_error(r, 400, "invalid_type", "'stream' must be true or false");
        return -1;
    }
    c->stream = stream && json_is_true(stream);
    if ((int64_t)c->n_ids + c->max_tokens > lim->max_tokens) {
        serve_reply_error(r, 400, "too_many_tokens",
                          "the prompt (%zu tokens) and max_tokens (%lld) exceed this server's "
                          "%lld tokens per request (--max-tokens)",
                          c->n_ids, (long long)c->max_tokens, (long long)lim->max_tokens);
        return -1;
    }
    /* the last new token is never fed back: prompt + max_tokens - 1 positions */
    if ((int64_t)c->n_ids + c->max_tokens - 1 > b->lm_context) {
        serve_reply_error(r, 400, "context_length_exceeded",
                          "the prompt (%zu tokens) and max_tokens (%lld) need more than the "
                          "model's context of %lld tokens",
                          c->n_ids, (long long)c->max_tokens, (long long)b->lm_context);
        return -1;
    }
    c->created = (int64_t)time(NULL);
    snprintf(c->id, sizeof c->id, "cmpl-%llx-%llx", (unsigned long long)c->created,
             (unsigned long long)atomic_fetch_add(&completion_counter, 1));
    return 0;
}

size_t serve_text_ready(const serve_completion *c, const char *t, size_t len, int final,
                        long *stop_at) {
    *stop_at = -1;
    for (size_t i = 0; i < c->n_stop; i++) {
        size_t sl = c->stop_len[i];
        for (size_t at = 0; sl <= len && at + sl <= len; at++)
            if (memcmp(t + at, c->stop[i], sl) == 0) {
                if (*stop_at < 0 || (long)at < *stop_at) *stop_at = (long)at;
                break;
            }
    }
    if (*stop_at >= 0) return (size_t)*stop_at;
    if (final) return len;
    size_t hold = 0; /* a tail that may grow into a stop string */
    for (size_t i = 0; i < c->n_stop; i++)
        for (size_t k = c->stop_len[i] - 1 < len ? c->stop_len[i] - 1 : len; k > hold; k--)
            if (memcmp(t + len - k, c->stop[i], k) == 0) {
                hold = k;
                break;
            }
    size_t ready = len - hold;
    /* an incomplete UTF-8 sequence at the end waits for its next bytes */
    for (size_t back = 1; back <= 3 && back <= ready; back++) {
        unsigned char u = (unsigned char)t[ready - back];
        if ((u & 0xc0) == 0x80) continue; /* a continuation byte: look further back */
        size_t need = u >= 0xf0 ? 4 : u >= 0xe0 ? 3 : u >= 0xc0 ? 2 : 1;
        if (need > back) ready -= back;
        break;
    }
    return ready;
}

char *serve_sse_chunk(const char *model, const serve_completion *c, const char *text, size_t len,
                      const char *finish_reason, size_t *out_len) {
    sbuf o = {0};
    sb_printf(&o, "data: {\"id\":\"%s\",\"object\":\"text_completion\",\"created\":%lld,\"model\":",
              c->id, (long long)c->created);
    sb_json_string(&o, model, strlen(model));
    sb_str(&o, ",\"choices\":[{\"text\":");
    sb_json_string(&o, text, len);
    sb_str(&o, ",\"index\":0,\"logprobs\":null,\"finish_reason\":");
    if (finish_reason)
        sb_printf(&o, "\"%s\"", finish_reason);
    else
        sb_str(&o, "null");
    sb_str(&o, "}]}\n\n");
    if (o.oom) {
        free(o.p);
        return NULL;
    }
    *out_len = o.n;
    return o.p;
}

static int collect_text(void *user, const char *text, size_t len) {
    sb_put(user, text, len);
    return ((sbuf *)user)->oom;
}

static void handle_completions(const serve_backend *b, const serve_limits *lim, const char *body,
                               size_t len, serve_reply *r) {
    json_t *root = parse_object(body, len, r);
    if (!root) return;
    serve_completion *c = calloc(1, sizeof *c);
    const char *model = pick_model(root, b->lm_name, "language model", r);
    if (!c) {
        serve_reply_error(r, 500, "out_of_memory", "out of memory");
        goto done;
    }
    if (!model || parse_completion(b, lim, root, c, r) != 0) goto done;
    if (c->stream) { /* the caller streams it */
        r->status = 200;
        r->stream = c;
        c = NULL;
        goto done;
    }
    sbuf text = {0};
    serve_completion_result res = {"length", 0, 0};
    char err[SERVE_ERR_LEN] = "";
    qkv_status s = b->complete(b->user, c, collect_text, &text, &res, err);
    if (s != QKV_OK || text.oom) {
        free(text.p);
        serve_reply_error(r, s == QKV_ERR_INVALID_ARG ? 400 : 500, "generation_failed", "%s",
                          s != QKV_OK ? err : "out of memory");
        goto done;
    }
    sbuf o = {0};
    sb_printf(&o,
              "{\"id\":\"%s\",\"object\":\"text_completion\",\"created\":%lld,\"model\":", c->id,
              (long long)c->created);
    sb_json_string(&o, model, strlen(model));
    sb_str(&o, ",\"choices\":[{\"text\":");
    sb_json_string(&o, text.p ? text.p : "", text.n);
    free(text.p);
    sb_printf(&o,
              ",\"index\":0,\"logprobs\":null,\"finish_reason\":\"%s\"}],\"usage\":{"
              "\"prompt_tokens\":%lld,\"completion_tokens\":%lld,\"total_tokens\":%lld}}\n",
              res.finish_reason, (long long)res.prompt_tokens, (long long)res.completion_tokens,
              (long long)(res.prompt_tokens + res.completion_tokens));
    reply_take(r, 200, &o);
done:
    serve_completion_free(c);
    free(c);
    json_decref(root);
}

/* ---------------------------------------------------------------- /classify */

/* "input": a text, or an array whose items are texts or [text, text_pair] arrays. Fills the
 * four arrays (malloc'd, pointing into root; pairs[i] NULL: no pair). Returns the count, or 0
 * after an error reply. */
static size_t get_cls_inputs(json_t *root, const serve_limits *lim, const char ***texts,
                             size_t **lens, const char ***pairs, size_t **pair_lens,
                             serve_reply *r) {
    json_t *in;
    size_t n = count_inputs(root, "input", lim, &in, r);
    if (!n) return 0;
    *texts = calloc(n, sizeof **texts);
    *pairs = calloc(n, sizeof **pairs);
    *lens = calloc(n, sizeof **lens);
    *pair_lens = calloc(n, sizeof **pair_lens);
    int ok = *texts && *pairs && *lens && *pair_lens;
    if (!ok) serve_reply_error(r, 500, "out_of_memory", "out of memory for %zu inputs", n);
    for (size_t i = 0; ok && i < n; i++) {
        json_t *t = json_is_string(in) ? in : json_array_get(in, i), *p = NULL;
        if (json_is_array(t) && json_array_size(t) == 2) {
            p = json_array_get(t, 1);
            t = json_array_get(t, 0);
        }
        if (!json_is_string(t) || (p && !json_is_string(p))) {
            serve_reply_error(r, 400, "invalid_type",
                              "'input[%zu]' must be a string or a [text, text_pair] array of two "
                              "strings",
                              i);
            ok = 0;
            break;
        }
        (*texts)[i] = json_string_value(t);
        (*lens)[i] = json_string_length(t);
        if (p) {
            (*pairs)[i] = json_string_value(p);
            (*pair_lens)[i] = json_string_length(p);
        }
    }
    if (ok) return n;
    free(*texts), free(*pairs), free(*lens), free(*pair_lens);
    *texts = *pairs = NULL, *lens = *pair_lens = NULL;
    return 0;
}

static void handle_classify(const serve_backend *b, const serve_limits *lim, const char *body,
                            size_t len, serve_reply *r) {
    json_t *root = parse_object(body, len, r);
    if (!root) return;
    const char **texts = NULL, **pairs = NULL;
    size_t *lens = NULL, *pair_lens = NULL, n = 0;
    int32_t *ids = NULL, *types = NULL;
    int64_t *tok_lens = NULL, *idx = NULL, k = 0;
    float *out = NULL;
    char err[SERVE_ERR_LEN] = "";
    const char *model = pick_model(root, b->cls_name, "classifier", r);
    if (!model) goto done;
    const int64_t NL = b->cls_labels;
    if (get_whole(root, "top_k", 1, NL, NL, &k, r)) goto done;
    json_t *lg = json_object_get(root, "logits");
    if (lg && !json_is_null(lg) && !json_is_boolean(lg)) {
        serve_reply_error(r, 400, "invalid_type", "'logits' must be true or false");
        goto done;
    }
    if (!(n = get_cls_inputs(root, lim, &texts, &lens, &pairs, &pair_lens, r))) goto done;
    qkv_status s =
        b->cls_tokenize(b->user, texts, lens, pairs, pair_lens, n, &ids, &types, &tok_lens, err);
    if (s != QKV_OK) {
        serve_reply_error(r, s == QKV_ERR_NOMEM ? 500 : 400, "tokenize_failed", "%s", err);
        goto done;
    }
    int64_t total = sum_lens(tok_lens, n);
    if (over_token_limit(total, lim, r)) goto done;
    out = malloc(n * (size_t)NL * sizeof *out);
    idx = malloc((size_t)NL * sizeof *idx);
    if (!out || !idx) {
        serve_reply_error(r, 500, "out_of_memory", "out of memory for %zu inputs", n);
        goto done;
    }
    s = b->classify(b->user, ids, types, tok_lens, n, lg && json_is_true(lg), out, err);
    if (s != QKV_OK) {
        serve_reply_error(r, 500, "classification_failed", "%s", err);
        goto done;
    }
    sbuf o = {0};
    sb_str(&o, "{\"object\":\"list\",\"data\":[");
    for (size_t i = 0; i < n; i++) {
        const float *row = out + i * (size_t)NL;
        cli_top_k(row, NL, k, idx); /* best first, as qkv classify ranks them */
        const char *best = b->cls_label(b->user, idx[0]);
        sb_printf(&o, "%s{\"object\":\"classification\",\"index\":%zu,\"label\":", i ? "," : "", i);
        sb_json_string(&o, best, strlen(best));
        sb_str(&o, ",\"score\":");
        sb_float(&o, row[idx[0]]);
        sb_str(&o, ",\"scores\":[");
        for (int64_t j = 0; j < k; j++) {
            const char *l = b->cls_label(b->user, idx[j]);
            sb_str(&o, j ? ",{\"label\":" : "{\"label\":");
            sb_json_string(&o, l, strlen(l));
            sb_str(&o, ",\"score\":");
            sb_float(&o, row[idx[j]]);
            sb_put(&o, "}", 1);
        }
        sb_put(&o, "]}", 2);
    }
    finish_list(&o, model, total, r);
done:
    free(out), free(idx);
    qkv_free(ids), qkv_free(types), qkv_free(tok_lens);
    free(texts), free(lens), free(pairs), free(pair_lens);
    json_decref(root);
}

/* ---------------------------------------------------------------- /translate */

/* The decoding options of a /translate request; 0, or -1 after an error reply. */
static int parse_translate_opts(json_t *root, const serve_limits *lim, serve_translate_opts *o,
                                const char **prefix, serve_reply *r) {
    memset(o, 0, sizeof *o);
    o->no_repeat_ngram = -1;
    if (get_whole(root, "beams", 1, SERVE_MAX_BEAMS, 0, &o->beams, r) ||
        get_whole(root, "max_new_tokens", 1, lim->max_new_tokens, 0, &o->max_new_tokens, r) ||
        get_whole(root, "max_length", 2, lim->max_new_tokens + 1, 0, &o->max_length, r) ||
        get_whole(root, "no_repeat_ngram_size", 0, 1 << 20, -1, &o->no_repeat_ngram, r))
        return -1;
    json_t *lp = json_object_get(root, "length_penalty");
    if (lp && !json_is_null(lp)) {
        double v;
        if (get_number(root, "length_penalty", -1e6, 1e6, 0, &v, r)) return -1;
        o->length_penalty = (float)v;
        o->has_length_penalty = 1;
    }
    json_t *p = json_object_get(root, "prefix");
    if (p && !json_is_null(p)) {
        if (!json_is_string(p)) {
            serve_reply_error(r, 400, "invalid_type", "'prefix' must be a string");
            return -1;
        }
        *prefix = json_string_value(p);
    }
    return 0;
}

static void handle_translate(const serve_backend *b, const serve_limits *lim, const char *body,
                             size_t len, serve_reply *r) {
    json_t *root = parse_object(body, len, r);
    if (!root) return;
    const char **texts = NULL;
    size_t *lens = NULL, n = 0;
    int32_t **ids = NULL;
    int64_t *src_lens = NULL, *tlen = NULL;
    char **text = NULL;
    float *score = NULL;
    char err[SERVE_ERR_LEN] = "";
    serve_translate_opts opts;
    const char *model = pick_model(root, b->mt_name, "translation model", r);
    const char *prefix = b->mt_prefix ? b->mt_prefix : "";
    if (!model || parse_translate_opts(root, lim, &opts, &prefix, r)) goto done;
    if (!(n = get_texts(root, "input", lim, &texts, &lens, r))) goto done;
    ids = calloc(n, sizeof *ids);
    src_lens = calloc(n, sizeof *src_lens);
    tlen = calloc(n, sizeof *tlen);
    text = calloc(n, sizeof *text);
    score = calloc(n, sizeof *score);
    if (!ids || !src_lens || !tlen || !text || !score) {
        serve_reply_error(r, 500, "out_of_memory", "out of memory for %zu inputs", n);
        goto done;
    }
    int64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        qkv_status s =
            b->mt_tokenize(b->user, prefix, texts[i], lens[i], &ids[i], &src_lens[i], err);
        if (s != QKV_OK) {
            serve_reply_error(r, s == QKV_ERR_NOMEM ? 500 : 400, "tokenize_failed", "%s", err);
            goto done;
        }
        if (src_lens[i] < 1 || src_lens[i] > b->mt_max_source) {
            serve_reply_error(r, 400, "context_length_exceeded",
                              "'input[%zu]' has %lld tokens; the model takes 1 to %lld", i,
                              (long long)src_lens[i], (long long)b->mt_max_source);
            goto done;
        }
        total += src_lens[i];
        if (over_token_limit(total, lim, r)) goto done;
    }
    qkv_status s = b->translate(b->user, &opts, ids, src_lens, n, text, score, tlen, err);
    if (s != QKV_OK) {
        serve_reply_error(r, s == QKV_ERR_INVALID_ARG ? 400 : 500,
                          s == QKV_ERR_INVALID_ARG ? "invalid_value" : "translation_failed", "%s",
                          err);
        goto done;
    }
    int64_t out_total = 0;
    sbuf o = {0};
    sb_str(&o, "{\"object\":\"list\",\"data\":[");
    for (size_t i = 0; i < n; i++) {
        sb_printf(&o, "%s{\"object\":\"translation\",\"index\":%zu,\"translation\":", i ? "," : "",
                  i);
        sb_json_string(&o, text[i], strlen(text[i]));
        sb_str(&o, ",\"score\":");
        sb_float(&o, score[i]);
        sb_printf(&o, ",\"tokens\":%lld}", (long long)tlen[i]);
        out_total += tlen[i];
    }
    sb_str(&o, "],\"model\":");
    sb_json_string(&o, model, strlen(model));
    sb_printf(&o,
              ",\"usage\":{\"prompt_tokens\":%lld,\"completion_tokens\":%lld,\"total_tokens\":%lld}"
              "}\n",
              (long long)total, (long long)out_total, (long long)(total + out_total));
    reply_take(r, 200, &o);
done:
    for (size_t i = 0; ids && i < n; i++) free(ids[i]);
    for (size_t i = 0; text && i < n; i++) qkv_free(text[i]);
    free(ids), free(src_lens), free(tlen), free(text), free(score);
    free(texts), free(lens);
    json_decref(root);
}

/* ---------------------------------------------------------------- routing */

static const char *const model_kinds[4] = {"embedding", "completion", "classification",
                                           "translation"};

static void handle_models(const serve_backend *b, serve_reply *r) {
    sbuf o = {0};
    sb_str(&o, "{\"object\":\"list\",\"data\":[");
    const char *names[4] = {b->embed_name, b->lm_name, b->cls_name, b->mt_name};
    int k = 0;
    for (int i = 0; i < 4; i++) {
        if (!names[i]) continue;
        sb_str(&o, k++ ? "," : "");
        sb_str(&o, "{\"id\":");
        sb_json_string(&o, names[i], strlen(names[i]));
        sb_printf(&o, ",\"object\":\"model\",\"created\":0,\"owned_by\":\"qkv\",\"kind\":\"%s\"}",
                  model_kinds[i]);
    }
    sb_str(&o, "]}\n");
    reply_take(r, 200, &o);
}

enum serve_route serve_route_of(const char *path) {
    static const struct {
        const char *path;
        enum serve_route route;
    } routes[] = {{"/health", ROUTE_HEALTH},           {"/v1/embeddings", ROUTE_EMBEDDINGS},
                  {"/embeddings", ROUTE_EMBEDDINGS},   {"/v1/completions", ROUTE_COMPLETIONS},
                  {"/completions", ROUTE_COMPLETIONS}, {"/tokenize", ROUTE_TOKENIZE},
                  {"/v1/models", ROUTE_MODELS},        {"/metrics", ROUTE_METRICS},
                  {"/classify", ROUTE_CLASSIFY},       {"/translate", ROUTE_TRANSLATE}};
    if (!path) return ROUTE_OTHER;
    size_t len = strcspn(path, "?");
    for (size_t i = 0; i < sizeof routes / sizeof *routes; i++)
        if (strlen(routes[i].path) == len && memcmp(routes[i].path, path, len) == 0)
            return routes[i].route;
    return ROUTE_OTHER;
}

void serve_handle(const serve_backend *b, const serve_limits *lim, const char *method,
                  const char *path, const char *body, size_t len, serve_reply *r) {
    memset(r, 0, sizeof *r);
    enum serve_route route = serve_route_of(path);
    int get = method && (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0);
    int post = method && strcmp(method, "POST") == 0;
    int wants_post = route == ROUTE_EMBEDDINGS || route == ROUTE_COMPLETIONS ||
                     route == ROUTE_TOKENIZE || route == ROUTE_CLASSIFY || route == ROUTE_TRANSLATE;
    if (route == ROUTE_OTHER) {
        serve_reply_error(
            r, 404, "not_found",
            "no route %.100s: POST /v1/embeddings, /v1/completions, /tokenize, /classify, "
            "/translate; "
            "GET /health, /v1/models, /metrics",
            path ? path : "");
        return;
    }
    if (wants_post ? !post : !get) {
        serve_reply_error(r, 405, "method_not_allowed", "%.100s takes %s, not %.20s", path,
                          wants_post ? "POST" : "GET", method ? method : "");
        return;
    }
    switch (route) {
    case ROUTE_HEALTH: {
        sbuf o = {0}; /* the loaded models by kind */
        sb_str(&o, "{\"status\":\"ok\",\"models\":{");
        const char *names[4] = {b->embed_name, b->lm_name, b->cls_name, b->mt_name};
        for (int i = 0, k = 0; i < 4; i++)
            if (names[i]) {
                sb_printf(&o, "%s\"%s\":", k++ ? "," : "", model_kinds[i]);
                sb_json_string(&o, names[i], strlen(names[i]));
            }
        sb_str(&o, "}}\n");
        reply_take(r, 200, &o);
        return;
    }
    case ROUTE_MODELS: handle_models(b, r); return;
    case ROUTE_METRICS: {
        char *t = b->metrics_text ? b->metrics_text(b->user) : NULL;
        if (!t) {
            serve_reply_error(r, 500, "out_of_memory", "no metrics");
            return;
        }
        r->status = 200;
        r->content_type = "text/plain; version=0.0.4; charset=utf-8";
        r->body = t;
        r->len = strlen(t);
        return;
    }
    case ROUTE_EMBEDDINGS: handle_embeddings(b, lim, body, len, r); return;
    case ROUTE_TOKENIZE: handle_tokenize(b, lim, body, len, r); return;
    case ROUTE_COMPLETIONS: handle_completions(b, lim, body, len, r); return;
    case ROUTE_CLASSIFY: handle_classify(b, lim, body, len, r); return;
    case ROUTE_TRANSLATE: handle_translate(b, lim, body, len, r); return;
    default: return;
    }
}
