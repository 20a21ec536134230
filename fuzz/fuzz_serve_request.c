/* fuzz_serve_request.c — qkv serve's request handling (cli/serve_api.c) without sockets: the
 * first byte picks the method and route, the rest is the body. A stub backend stands for the
 * models: it tokenizes a text into one id per byte (at least one), embeds as zeros, and
 * "generates" the prompt's ids back as bytes, one at a time, through the same stop-string and
 * UTF-8 hold-back logic (serve_text_ready) and server-sent events the server uses; classifies
 * every input with fixed scores (ties and a NaN), and "translates" a source into its bytes
 * reversed. The first byte: bits 0-2 and 5 the path, 3-4 the method, 6 no embedding model or
 * classifier, 7 no language model or translator. */
#include "fuzz_require.h"
#include "serve.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static qkv_status stub_tokenize(void *user, const char *const *texts, const size_t *lens, size_t n,
                                int32_t **ids, int64_t **tok_lens, char *err) {
    (void)user, (void)err;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += lens[i] < 64 ? lens[i] + 1 : 65;
    *ids = qkv_malloc((total ? total : 1) * sizeof **ids);
    *tok_lens = qkv_malloc((n ? n : 1) * sizeof **tok_lens);
    if (!*ids || !*tok_lens) {
        qkv_free(*ids), qkv_free(*tok_lens);
        *ids = NULL, *tok_lens = NULL;
        return QKV_ERR_NOMEM;
    }
    for (size_t i = 0, o = 0; i < n; i++) {
        size_t k = lens[i] < 64 ? lens[i] + 1 : 65;
        for (size_t j = 0; j < k; j++) (*ids)[o++] = j ? (unsigned char)texts[i][j - 1] : 101;
        (*tok_lens)[i] = (int64_t)k;
    }
    return QKV_OK;
}

static qkv_status stub_embed(void *user, const int32_t *ids, const int64_t *lens, size_t n,
                             float *out, char *err) {
    (void)user, (void)ids, (void)lens, (void)err;
    memset(out, 0, n * 8 * sizeof *out);
    if (n) out[0] = 1.0f / 3.0f;
    return QKV_OK;
}

static qkv_status stub_lm_tokenize(void *user, const char *text, size_t len, int32_t **ids,
                                   size_t *n, char *err) {
    (void)user, (void)err;
    *ids = qkv_malloc((len ? len : 1) * sizeof **ids);
    if (!*ids) return QKV_ERR_NOMEM;
    for (size_t i = 0; i < len; i++) (*ids)[i] = (unsigned char)text[i];
    *n = len;
    return QKV_OK;
}

static qkv_status stub_complete(void *user, const serve_completion *c, serve_text_fn emit,
                                void *emit_user, serve_completion_result *res, char *err) {
    (void)user, (void)err;
    char text[256];
    size_t n = c->n_ids < sizeof text ? c->n_ids : sizeof text, sent = 0;
    if ((int64_t)n > c->max_tokens) n = (size_t)c->max_tokens;
    res->finish_reason = "length";
    for (size_t i = 0; i <= n; i++) {
        if (i < n) text[i] = (char)c->ids[i];
        long stop_at;
        size_t ready = serve_text_ready(c, text, i < n ? i + 1 : n, i == n, &stop_at);
        if (ready < sent) __builtin_trap(); /* what was sent can never be taken back */
        if (ready > sent && emit(emit_user, text + sent, ready - sent)) break;
        sent = ready;
        if (stop_at >= 0) {
            res->finish_reason = "stop";
            break;
        }
    }
    res->prompt_tokens = (int64_t)c->n_ids;
    res->completion_tokens = (int64_t)n;
    return QKV_OK;
}

static const char *stub_label(void *user, int64_t i) {
    (void)user;
    static const char *const names[3] = {"neg", "pos", "a \"quoted\" label"};
    return i >= 0 && i < 3 ? names[i] : NULL;
}

static qkv_status stub_cls_tokenize(void *user, const char *const *texts, const size_t *lens,
                                    const char *const *pairs, const size_t *pair_lens, size_t n,
                                    int32_t **ids, int32_t **types, int64_t **tok_lens, char *err) {
    qkv_status s = stub_tokenize(user, texts, lens, n, ids, tok_lens, err);
    if (s != QKV_OK) return s;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        total += (size_t)(*tok_lens)[i];
        if (pairs[i] && pair_lens[i] > 4096) __builtin_trap(); /* bounded by the body */
    }
    *types = qkv_malloc((total ? total : 1) * sizeof **types);
    if (!*types) {
        qkv_free(*ids), qkv_free(*tok_lens);
        *ids = NULL, *tok_lens = NULL;
        return QKV_ERR_NOMEM;
    }
    memset(*types, 0, total * sizeof **types);
    return QKV_OK;
}

static qkv_status stub_classify(void *user, const int32_t *ids, const int32_t *types,
                                const int64_t *lens, size_t n, int logits, float *out, char *err) {
    (void)user, (void)ids, (void)types, (void)err;
    for (size_t i = 0; i < n; i++) /* ties, and a NaN, for the ranking */
        for (int k = 0; k < 3; k++)
            out[i * 3 + k] = k == 2 && lens[i] == 3 ? __builtin_nanf("") : logits ? 1.0f : 0.25f;
    return QKV_OK;
}

static qkv_status stub_mt_tokenize(void *user, const char *prefix, const char *text, size_t len,
                                   int32_t **ids, int64_t *n, char *err) {
    (void)user, (void)err;
    size_t np = strlen(prefix);
    *ids = malloc((np + len + 1) * sizeof **ids);
    if (!*ids) return QKV_ERR_NOMEM;
    for (size_t i = 0; i < np + len; i++)
        (*ids)[i] = (unsigned char)(i < np ? prefix[i] : text[i - np]);
    (*ids)[np + len] = 0; /* </s> */
    *n = (int64_t)(np + len + 1);
    return QKV_OK;
}

static qkv_status stub_translate(void *user, const serve_translate_opts *o, int32_t *const *ids,
                                 const int64_t *lens, size_t n, char **text, float *score,
                                 int64_t *tlen, char *err) {
    (void)user, (void)err;
    if (o->beams > SERVE_MAX_BEAMS) __builtin_trap();
    for (size_t i = 0; i < n; i++) {                       /* the source's bytes back, reversed */
        if (lens[i] < 1 || lens[i] > 64) __builtin_trap(); /* the server's limit */
        text[i] = qkv_malloc((size_t)lens[i]);
        if (!text[i]) return QKV_ERR_NOMEM;
        for (int64_t k = 0; k + 1 < lens[i]; k++) text[i][k] = (char)ids[i][lens[i] - 2 - k];
        text[i][lens[i] - 1] = '\0';
        score[i] = -1.5f;
        tlen[i] = lens[i];
    }
    return QKV_OK;
}

static char *stub_metrics(void *user) {
    serve_metrics *m = user;
    return serve_metrics_render(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char *const methods[] = {"POST", "GET", "HEAD", "PUT"};
    static const char *const
        paths[] = {"/v1/embeddings", "/tokenize",          "/v1/completions",
                   "/health",        "/v1/models",         "/metrics",
                   "/nope",          "/v1/embeddings?x=1", /* bit 0x20 set: the routes below */
                   "/classify",      "/translate",         "/classify",
                   "/translate",     "/classify",          "/translate",
                   "/classify?x=1",  "/translate?x=1"};
    if (size < 1) return 0;
    static serve_metrics metrics;
    static int init;
    if (!init) {
        serve_metrics_init(&metrics);
        init = 1;
    }
    serve_backend b = {.user = NULL,
                       .embed_name = data[0] & 0x40 ? NULL : "stub-embed",
                       .embed_dim = 8,
                       .embed_tokenize = stub_tokenize,
                       .embed = stub_embed,
                       .lm_name = data[0] & 0x80 ? NULL : "stub-lm",
                       .lm_vocab = 256,
                       .lm_context = 128,
                       .lm_has_tokenizer = 1,
                       .lm_tokenize = stub_lm_tokenize,
                       .complete = stub_complete,
                       .cls_name = data[0] & 0x40 ? NULL : "stub-cls",
                       .cls_labels = 3,
                       .cls_label = stub_label,
                       .cls_tokenize = stub_cls_tokenize,
                       .classify = stub_classify,
                       .mt_name = data[0] & 0x80 ? NULL : "stub-mt",
                       .mt_prefix = "",
                       .mt_max_source = 64,
                       .mt_tokenize = stub_mt_tokenize,
                       .translate = stub_translate,
                       .metrics_text = stub_metrics};
    b.user = &metrics;
    serve_limits lim = {
        .max_body = 1 << 16, .max_inputs = 16, .max_tokens = 512, .max_new_tokens = 64};
    const char *method = methods[(data[0] >> 3) & 3];
    const char *path = paths[(data[0] & 7) | (data[0] & 0x20 ? 8 : 0)];
    serve_reply r;
    serve_handle(&b, &lim, method, path, (const char *)data + 1, size - 1, &r);
    REQUIRE(r.status >= 200 && r.status <= 599);
    if (!r.stream && r.content_type && strstr(r.content_type, "application/json")) {
        /* every JSON reply parses, and an error reply is OpenAI's {"error": {"message", ...}} */
        json_error_t jerr;
        json_t *j = json_loadb(r.body, r.len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
        REQUIRE(j);
        if (r.status >= 400)
            REQUIRE(json_is_string(json_object_get(json_object_get(j, "error"), "message")));
        json_decref(j);
    }
    if (r.stream) { /* as the server streams it */
        size_t n = 0;
        char *ev = serve_sse_chunk("stub-lm", r.stream, "x", 1, "stop", &n);
        free(ev);
    }
    serve_metrics_request(&metrics, serve_route_of(path), r.status, 0.001);
    serve_reply_free(&r);
    /* the API key check on the body as an Authorization header */
    char *auth = malloc(size);
    if (auth) {
        memcpy(auth, data + 1, size - 1);
        auth[size - 1] = '\0';
        (void)serve_auth_ok("sesame", auth);
        free(auth);
    }
    return 0;
}
