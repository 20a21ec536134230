/* generate.c — qkv_lm: a causal decoder loaded for text generation, the public face of
 * models/gpt (full-sequence logits and token generation with KV caches; API in qkv.h).
 *
 * Generation keeps, per sequence: its KV cache (sized by the context), its history (prompt +
 * generated ids, needed to re-prefill when the context slides), a `seen` mark per vocabulary id
 * (the repetition penalty) and its RNG seed. Each step is one packed forward over the active
 * sequences: the first step feeds every prompt (the batched prefill), later steps feed one
 * token per sequence (the decode path: attention with Tq = 1 against the cache), except a
 * sequence whose cache is full under QKV_CONTEXT_SLIDE, which is re-fed its last context/2
 * tokens from an empty cache in the same pass. A sequence's logits do not depend on what else
 * is in the pass (gpt.h), and its draws depend only on its own seed and step, so batched
 * generation equals one-at-a-time. */
#include "core/abi.h"
#include "core/alloc.h"
#include "core/error.h"
#include "models/gpt.h"
#include "models/kv_cache.h"
#include "models/lm.h"
#include "models/model.h"
#include "models/sample.h"
#include "qkv.h"

#include <string.h>
#include <time.h>

qkv_status qkv_lm_load_lora(qkv_lm *lm, const char *dir) {
    if (!lm) return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_lm_load_lora: NULL model");
    return qkv__gpt_load_lora(lm->gpt, dir);
}

qkv_status qkv_lm_load(const char *dir, qkv_lm **out) { return qkv_lm_load_opts(dir, NULL, out); }

qkv_status qkv_lm_load_opts(const char *dir, const qkv_model_options *opts, qkv_lm **out) {
    if (out) *out = NULL;
    if (!dir || !out) return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_lm_load: NULL argument");
    qkv_dtype dtype;
    QKV_TRY(qkv__model_options_dtype("qkv_lm_load", opts, &dtype));
    qkv_lm *lm = qkv__calloc(1, sizeof *lm);
    if (!lm) return qkv__fail(QKV_ERR_NOMEM, "qkv_lm_load: out of memory");
    qkv_status s = qkv__gpt_load(dir, dtype, &lm->gpt);
    if (s != QKV_OK) {
        qkv__free(lm);
        return s;
    }
    *out = lm;
    return QKV_OK;
}

void qkv_lm_free(qkv_lm *lm) {
    if (!lm) return;
    qkv__gpt_free(lm->gpt);
    qkv__free(lm);
}

qkv_dtype qkv_lm_dtype(const qkv_lm *lm) { return lm ? lm->gpt->packed.dtype : QKV_DTYPE_F32; }
int64_t qkv_lm_vocab_size(const qkv_lm *lm) { return lm ? lm->gpt->cfg.vocab_size : 0; }
int64_t qkv_lm_max_context(const qkv_lm *lm) { return lm ? lm->gpt->cfg.max_position : 0; }
int32_t qkv_lm_eos_token(const qkv_lm *lm) { return lm ? lm->gpt->cfg.eos_token_id : -1; }

size_t qkv_lm_eos_tokens(const qkv_lm *lm, int32_t *ids, size_t cap) {
    if (!lm) return 0;
    size_t n = (size_t)lm->gpt->cfg.n_eos;
    for (size_t i = 0; i < n && i < cap && ids; i++) ids[i] = lm->gpt->cfg.eos_ids[i];
    return n;
}

static qkv_status new_cache(const qkv_gpt_config *c, qkv_kv_cache *kv, int64_t cap) {
    return qkv__kv_cache_init(kv, c->num_layers, cap, c->num_kv_heads, c->head_dim);
}

/* Tokens per forward call of qkv_lm_logits: bounds the workspace and the caches. */
#define LOGITS_TOKENS_PER_CALL 4096

qkv_status qkv_lm_logits(qkv_runtime *rt, const qkv_lm *lm, const int32_t *ids, const int64_t *lens,
                         size_t n, float *logits) {
    if (!lm || !lens || !logits || (n && !ids))
        return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_lm_logits: NULL argument");
    const qkv_gpt_config *c = &lm->gpt->cfg;
    for (size_t s = 0; s < n; s++)
        if (lens[s] < 1 || lens[s] > c->max_position)
            return qkv__fail(QKV_ERR_INVALID_ARG,
                             "qkv_lm_logits: sequence %zu has %lld tokens (1..%lld allowed)", s,
                             (long long)lens[s], (long long)c->max_position);
    qkv_status st = QKV_OK;
    size_t s0 = 0;
    while (st == QKV_OK && s0 < n) {
        /* a group of whole sequences of at most LOGITS_TOKENS_PER_CALL tokens (or one) */
        size_t s1 = s0;
        int64_t tok = 0;
        while (s1 < n && (s1 == s0 || tok + lens[s1] <= LOGITS_TOKENS_PER_CALL)) tok += lens[s1++];
        size_t g = s1 - s0;
        qkv_kv_cache *kv = qkv__calloc(g, sizeof *kv);
        qkv_kv_cache **kvp = qkv__calloc(g, sizeof *kvp);
        if (!kv || !kvp) st = qkv__fail(QKV_ERR_NOMEM, "qkv_lm_logits: out of memory");
        for (size_t i = 0; st == QKV_OK && i < g; i++) {
            kvp[i] = &kv[i];
            st = new_cache(c, &kv[i], lens[s0 + i]);
        }
        if (st == QKV_OK)
            st = qkv__gpt_forward(rt, lm->gpt, kvp, ids, lens + s0, (int64_t)g, 1, logits);
        for (size_t i = 0; kv && i < g; i++) qkv__kv_cache_release(&kv[i]);
        qkv__free(kv);
        qkv__free(kvp);
        ids += tok;
        logits += tok * c->vocab_size;
        s0 = s1;
    }
    return st;
}

/* ---------------------------------------------------------------- generation */

typedef struct {
    qkv_kv_cache kv;
    int32_t *hist; /* [prompt + max_new] prompt then generated ids */
    int64_t n_hist, n_prompt, n_gen;
    int64_t fed;   /* history tokens already in the cache's view (the next feed starts there) */
    uint8_t *seen; /* [V] */
    uint64_t seed;
    int done;
} seq_state;

typedef struct {
    seq_state *seqs;    /* [n] */
    qkv_kv_cache **kvp; /* [n] caches of the active sequences of a pass */
    int32_t *feed;      /* [n * context] packed ids of a pass */
    int64_t *feed_lens; /* [n] */
    size_t *active;     /* [n] sequence index of each row of a pass */
    float *logits;      /* [n, V] */
    void *scratch;      /* sampling scratch */
} gen_state;

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void seq_release(seq_state *q) {
    qkv__kv_cache_release(&q->kv);
    qkv__free(q->hist);
    qkv__free(q->seen);
}

static void gen_free(gen_state *g, size_t n) {
    for (size_t i = 0; g->seqs && i < n; i++) seq_release(&g->seqs[i]);
    qkv__free(g->seqs);
    qkv__free(g->kvp);
    qkv__free(g->feed);
    qkv__free(g->feed_lens);
    qkv__free(g->active);
    qkv__free(g->logits);
    qkv__free(g->scratch);
}

/* The context (cache tokens per sequence) and up-front refusals. */
static qkv_status plan_context(const qkv_gpt_config *c, const int64_t *lens, size_t n,
                               const qkv_sampling *o, int64_t *ctx) {
    int64_t longest = 0;
    for (size_t s = 0; s < n; s++) {
        if (lens[s] < 1)
            return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_lm_generate_tokens: prompt %zu is empty", s);
        if (lens[s] > longest) longest = lens[s];
    }
    /* the last generated token is never fed: a sequence needs prompt + max_new - 1 */
    int64_t need =
        longest > INT64_MAX - o->max_new_tokens ? INT64_MAX : longest + o->max_new_tokens - 1;
    int64_t cap = o->context ? o->context : (need < c->max_position ? need : c->max_position);
    if (cap > c->max_position)
        return qkv__fail(QKV_ERR_INVALID_ARG,
                         "qkv_lm_generate_tokens: context %lld exceeds the model's %lld",
                         (long long)cap, (long long)c->max_position);
    if (o->overflow == QKV_CONTEXT_REFUSE) {
        for (size_t s = 0; s < n; s++)
            if (lens[s] + o->max_new_tokens - 1 > cap)
                return qkv__fail(QKV_ERR_INVALID_ARG,
                                 "qkv_lm_generate_tokens: prompt %zu (%lld tokens) + %lld new "
                                 "tokens needs a context of %lld, it is %lld (use "
                                 "QKV_CONTEXT_SLIDE or a larger context)",
                                 s, (long long)lens[s], (long long)o->max_new_tokens,
                                 (long long)(lens[s] + o->max_new_tokens - 1), (long long)cap);
    } else if (cap < 2) {
        return qkv__fail(QKV_ERR_INVALID_ARG,
                         "qkv_lm_generate_tokens: sliding needs a context of at least 2");
    }
    *ctx = cap;
    return QKV_OK;
}

/* Sequence q: an empty cache of ctx tokens, the prompt ids[0..len) as its history (checked
 * against the vocabulary; `which` numbers it in messages), room for max_new more. */
static qkv_status seq_init(seq_state *q, const qkv_gpt_config *c, const int32_t *ids, int64_t len,
                           int64_t max_new, int64_t ctx, size_t which) {
    const int64_t V = c->vocab_size;
    QKV_TRY(new_cache(c, &q->kv, ctx));
    q->hist = qkv__calloc((size_t)(len + max_new), sizeof *q->hist);
    q->seen = qkv__calloc((size_t)V, 1);
    if (!q->hist || !q->seen)
        return qkv__fail(QKV_ERR_NOMEM, "qkv_lm_generate_tokens: out of memory");
    memcpy(q->hist, ids, sizeof *ids * (size_t)len);
    for (int64_t t = 0; t < len; t++) {
        if (ids[t] < 0 || ids[t] >= V)
            return qkv__fail(QKV_ERR_INVALID_ARG,
                             "qkv_lm_generate_tokens: prompt %zu token %lld = %d is outside "
                             "the vocabulary [0, %lld)",
                             which, (long long)t, ids[t], (long long)V);
        q->seen[ids[t]] = 1;
    }
    q->n_hist = q->n_prompt = len;
    return QKV_OK;
}

static qkv_status gen_init(gen_state *g, const qkv_gpt_config *c, const int32_t *ids,
                           const int64_t *lens, size_t n, const qkv_sampling *o, int64_t ctx) {
    const int64_t V = c->vocab_size;
    memset(g, 0, sizeof *g);
    size_t nctx, nv;
    if (qkv__mul_overflow(n, (size_t)ctx, &nctx) || qkv__mul_overflow(n, (size_t)V, &nv))
        return qkv__fail(QKV_ERR_OVERFLOW, "qkv_lm_generate_tokens: sizes overflow");
    g->seqs = qkv__calloc(n, sizeof *g->seqs);
    g->kvp = qkv__calloc(n, sizeof *g->kvp);
    g->feed = qkv__calloc(nctx, sizeof *g->feed);
    g->feed_lens = qkv__calloc(n, sizeof *g->feed_lens);
    g->active = qkv__calloc(n, sizeof *g->active);
    g->logits = qkv__calloc(nv, sizeof *g->logits);
    g->scratch = qkv__alloc(qkv__sample_scratch_size(V));
    if (!g->seqs || !g->kvp || !g->feed || !g->feed_lens || !g->active || !g->logits || !g->scratch)
        return qkv__fail(QKV_ERR_NOMEM, "qkv_lm_generate_tokens: out of memory");
    for (size_t s = 0; s < n; s++) {
        seq_state *q = &g->seqs[s];
        QKV_TRY(seq_init(q, c, ids, lens[s], o->max_new_tokens, ctx, s));
        q->seed = o->seeds ? o->seeds[s] : o->seed + (uint64_t)s;
        ids += lens[s];
    }
    return QKV_OK;
}

/* Appends sequence s's pending tokens to the pass (sliding when they do not fit). */
static void add_feed(gen_state *g, size_t s, int64_t *rows, int64_t *n_ids) {
    seq_state *q = &g->seqs[s];
    const int64_t cap = q->kv.cap;
    if (q->kv.len + (q->n_hist - q->fed) > cap) { /* QKV_CONTEXT_SLIDE (refuse was up front) */
        q->kv.len = 0;
        q->fed = q->n_hist - cap / 2;
    }
    const int64_t T = q->n_hist - q->fed;
    memcpy(g->feed + *n_ids, q->hist + q->fed, sizeof(int32_t) * (size_t)T);
    g->kvp[*rows] = &q->kv;
    g->feed_lens[*rows] = T;
    g->active[*rows] = s;
    q->fed = q->n_hist;
    *n_ids += T;
    (*rows)++;
}

/* Row r of a pass's logits: sequence g->active[r]'s next token under o, appended to its
 * history; the sequence is done after max_new_tokens or a stop token. */
static int32_t take_token(gen_state *g, int64_t r, int64_t V, const qkv_sampling *o) {
    seq_state *q = &g->seqs[g->active[r]];
    int32_t tok = qkv__sample_token(g->logits + r * V, V, q->seen, o, q->seed, (uint64_t)q->n_gen,
                                    g->scratch);
    q->hist[q->n_hist++] = tok;
    q->seen[tok] = 1;
    q->n_gen++;
    if (q->n_gen == o->max_new_tokens) q->done = 1;
    for (size_t i = 0; i < o->n_stop_tokens; i++)
        if (tok == o->stop_tokens[i]) q->done = 1;
    return tok;
}

qkv_status qkv_lm_generate_tokens(qkv_runtime *rt, const qkv_lm *lm, const int32_t *ids,
                                  const int64_t *lens, size_t n, const qkv_sampling *opts,
                                  qkv_token_fn on_token, void *user, int32_t *out,
                                  int64_t *out_lens, qkv_generate_stats *stats) {
    if (!lm || !lens || (n && !ids))
        return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_lm_generate_tokens: NULL argument");
    const qkv_gpt_config *c = &lm->gpt->cfg;
    const int64_t V = c->vocab_size;
    qkv_sampling o; /* the program's options in this version's layout (core/abi.h) */
    if (opts) {
        QKV_TRY(QKV__STRUCT_IN(qkv_sampling, &o, opts, NULL, "qkv_lm_generate_tokens: opts"));
        opts = &o;
    }
    QKV_TRY(qkv__sampling_check(opts, V));
    qkv_generate_stats gs; /* copied to *stats up to its struct_size */
    memset(&gs, 0, sizeof gs);
    if (stats) QKV__STRUCT_OUT(qkv_generate_stats, stats, &gs);
    if (out_lens)
        for (size_t s = 0; s < n; s++) out_lens[s] = 0;
    if (n == 0) return QKV_OK;
    int64_t ctx = 0;
    QKV_TRY(plan_context(c, lens, n, opts, &ctx));
    gen_state g;
    qkv_status st = gen_init(&g, c, ids, lens, n, opts, ctx);
    for (int pass = 0; st == QKV_OK; pass++) {
        int64_t rows = 0, n_ids = 0;
        for (size_t s = 0; s < n; s++)
            if (!g.seqs[s].done) add_feed(&g, s, &rows, &n_ids);
        if (rows == 0) break;
        double t0 = now_seconds();
        st = qkv__gpt_forward(rt, lm->gpt, g.kvp, g.feed, g.feed_lens, rows, 0, g.logits);
        for (int64_t r = 0; st == QKV_OK && r < rows; r++) {
            size_t s = g.active[r];
            seq_state *q = &g.seqs[s];
            int32_t tok = take_token(&g, r, V, opts);
            if (out) out[s * (size_t)opts->max_new_tokens + (size_t)q->n_gen - 1] = tok;
            if (out_lens) out_lens[s] = q->n_gen;
            if (on_token && on_token(user, s, tok)) q->done = 1;
        }
        double dt = now_seconds() - t0;
        if (pass == 0) {
            gs.prefill_tokens = n_ids;
            gs.prefill_seconds = dt;
        } else {
            gs.decode_tokens += n_ids;
            gs.decode_seconds += dt;
        }
    }
    gen_free(&g, n);
    if (stats) QKV__STRUCT_OUT(qkv_generate_stats, stats, &gs);
    return st;
}

/* ---------------------------------------------------------------- continuous batching */

/* Sequences that come and go: the state of qkv_lm_generate_tokens, grown and compacted as
 * sequences are added and end; each keeps its own options (and a copy of its stop tokens). */
struct qkv_lm_batch {
    const qkv_lm *lm;
    gen_state g;       /* seqs [cap]; kvp, feed_lens, active, logits sized for cap rows */
    qkv_sampling *opt; /* [cap] */
    int32_t *stops;    /* [cap * QKV_LM_BATCH_MAX_STOP] the stop tokens opt[i] points into */
    size_t *ids;       /* [cap] the caller's handle of each sequence */
    int64_t *prev_fed, *prev_len; /* [cap] restored when a step fails */
    size_t n, cap, next_id;
    int64_t feed_cap; /* ints in g.feed */
    int64_t sum_ctx;  /* the live sequences' cache sizes: the most one pass feeds */
};

qkv_status qkv_lm_batch_create(const qkv_lm *lm, qkv_lm_batch **out) {
    if (!lm || !out) return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_lm_batch_create: NULL argument");
    *out = NULL;
    qkv_lm_batch *b = qkv__calloc(1, sizeof *b);
    if (!b || !(b->g.scratch = qkv__alloc(qkv__sample_scratch_size(lm->gpt->cfg.vocab_size)))) {
        qkv__free(b);
        return qkv__fail(QKV_ERR_NOMEM, "qkv_lm_batch_create: out of memory");
    }
    b->lm = lm;
    *out = b;
    return QKV_OK;
}

void qkv_lm_batch_free(qkv_lm_batch *b) {
    if (!b) return;
    gen_free(&b->g, b->n);
    qkv__free(b->opt), qkv__free(b->stops), qkv__free(b->ids);
    qkv__free(b->prev_fed), qkv__free(b->prev_len);
    qkv__free(b);
}

size_t qkv_lm_batch_size(const qkv_lm_batch *b) { return b ? b->n : 0; }

/* *p: a new block of new_size bytes holding the old block's first old_size; 0 when out of
 * memory (then *p is unchanged). */
static int regrow(void **p, size_t old_size, size_t new_size) {
    void *q = qkv__alloc(new_size);
    if (!q) return 0;
    if (*p && old_size) memcpy(q, *p, old_size);
    qkv__free(*p);
    *p = q;
    return 1;
}

/* Room for one more sequence. */
static qkv_status batch_grow(qkv_lm_batch *b) {
    if (b->n < b->cap) return QKV_OK;
    const size_t cap = b->cap ? 2 * b->cap : 8;
    const size_t V = (size_t)b->lm->gpt->cfg.vocab_size;
#define GROW(field, count)                                                                         \
    do {                                                                                           \
        if (!regrow((void **)&(field), b->cap * (count) * sizeof *(field),                         \
                    cap * (count) * sizeof *(field)))                                              \
            return qkv__fail(QKV_ERR_NOMEM, "qkv_lm_batch_add: out of memory");                    \
    } while (0)
    GROW(b->g.seqs, 1);
    GROW(b->g.kvp, 1);
    GROW(b->g.feed_lens, 1);
    GROW(b->g.active, 1);
    GROW(b->g.logits, V);
    GROW(b->opt, 1);
    GROW(b->stops, QKV_LM_BATCH_MAX_STOP);
    GROW(b->ids, 1);
    GROW(b->prev_fed, 1);
    GROW(b->prev_len, 1);
#undef GROW
    for (size_t i = 0; i < b->n; i++) /* the stop tokens moved */
        b->opt[i].stop_tokens = b->stops + i * QKV_LM_BATCH_MAX_STOP;
    b->cap = cap;
    return QKV_OK;
}

qkv_status qkv_lm_batch_add(qkv_lm_batch *b, const int32_t *ids, int64_t len,
                            const qkv_sampling *opts, size_t *seq) {
    if (!b || !ids || !opts || !seq)
        return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_lm_batch_add: NULL argument");
    const qkv_gpt_config *c = &b->lm->gpt->cfg;
    qkv_sampling o;
    QKV_TRY(QKV__STRUCT_IN(qkv_sampling, &o, opts, NULL, "qkv_lm_batch_add: opts"));
    QKV_TRY(qkv__sampling_check(&o, c->vocab_size));
    if (o.n_stop_tokens > QKV_LM_BATCH_MAX_STOP)
        return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_lm_batch_add: %zu stop tokens (at most %d)",
                         o.n_stop_tokens, QKV_LM_BATCH_MAX_STOP);
    int64_t ctx = 0;
    QKV_TRY(plan_context(c, &len, 1, &o, &ctx));
    QKV_TRY(batch_grow(b));
    /* a pass feeds at most a cache's worth per sequence */
    const int64_t need = b->sum_ctx + ctx;
    if (need > b->feed_cap) {
        if (!regrow((void **)&b->g.feed, 0, (size_t)need * sizeof *b->g.feed))
            return qkv__fail(QKV_ERR_NOMEM, "qkv_lm_batch_add: out of memory");
        b->feed_cap = need;
    }
    seq_state *q = &b->g.seqs[b->n];
    memset(q, 0, sizeof *q);
    qkv_status st = seq_init(q, c, ids, len, o.max_new_tokens, ctx, 0);
    if (st != QKV_OK) {
        seq_release(q);
        return st;
    }
    q->seed = o.seeds ? o.seeds[0] : o.seed;
    int32_t *stops = b->stops + b->n * QKV_LM_BATCH_MAX_STOP;
    if (o.n_stop_tokens) memcpy(stops, o.stop_tokens, o.n_stop_tokens * sizeof *stops);
    o.stop_tokens = stops;
    o.seeds = NULL;
    b->opt[b->n] = o;
    b->ids[b->n] = *seq = b->next_id++;
    b->sum_ctx += ctx;
    b->n++;
    return QKV_OK;
}

/* Removes sequence i (the last one takes its place). */
static void batch_remove(qkv_lm_batch *b, size_t i) {
    b->sum_ctx -= b->g.seqs[i].kv.cap;
    seq_release(&b->g.seqs[i]);
    size_t last = --b->n;
    if (i == last) return;
    b->g.seqs[i] = b->g.seqs[last];
    b->ids[i] = b->ids[last];
    b->opt[i] = b->opt[last];
    b->opt[i].stop_tokens = b->stops + i * QKV_LM_BATCH_MAX_STOP;
    memcpy(b->stops + i * QKV_LM_BATCH_MAX_STOP, b->stops + last * QKV_LM_BATCH_MAX_STOP,
           QKV_LM_BATCH_MAX_STOP * sizeof *b->stops);
}

qkv_status qkv_lm_batch_cancel(qkv_lm_batch *b, size_t seq) {
    for (size_t i = 0; b && i < b->n; i++)
        if (b->ids[i] == seq) {
            batch_remove(b, i);
            return QKV_OK;
        }
    return qkv__fail(QKV_ERR_NOT_FOUND, "qkv_lm_batch_cancel: no sequence %zu in the batch", seq);
}

qkv_status qkv_lm_batch_step(qkv_runtime *rt, qkv_lm_batch *b, qkv_token_fn on_token, void *user,
                             size_t *ended, size_t *n_ended) {
    if (n_ended) *n_ended = 0;
    if (!b) return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_lm_batch_step: NULL batch");
    if (b->n == 0) return QKV_OK;
    const int64_t V = b->lm->gpt->cfg.vocab_size;
    int64_t rows = 0, n_ids = 0;
    for (size_t s = 0; s < b->n; s++) {
        b->prev_fed[s] = b->g.seqs[s].fed;
        b->prev_len[s] = b->g.seqs[s].kv.len;
        add_feed(&b->g, s, &rows, &n_ids);
    }
    qkv_status st =
        qkv__gpt_forward(rt, b->lm->gpt, b->g.kvp, b->g.feed, b->g.feed_lens, rows, 0, b->g.logits);
    if (st != QKV_OK) { /* as before the step: the next one feeds the same tokens again */
        for (size_t s = 0; s < b->n; s++) {
            b->g.seqs[s].fed = b->prev_fed[s];
            b->g.seqs[s].kv.len = b->prev_len[s];
        }
        return st;
    }
    for (int64_t r = 0; r < rows; r++) {
        size_t s = b->g.active[r];
        int32_t tok = take_token(&b->g, r, V, &b->opt[s]);
        if (on_token && on_token(user, b->ids[s], tok)) b->g.seqs[s].done = 1;
    }
    for (size_t s = b->n; s-- > 0;) /* from the end: a removal moves the last one into s */
        if (b->g.seqs[s].done) {
            if (ended) ended[*n_ended] = b->ids[s];
            if (n_ended) (*n_ended)++;
            batch_remove(b, s);
        }
    return QKV_OK;
}
