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
#include "models/sample.h"
#include "qkv.h"

#include <string.h>
#include <time.h>

qkv_status qkv_lm_load_lora(qkv_lm *lm, const char *dir) {
    if (!lm) return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_lm_load_lora: NULL model");
    return qkv__gpt_load_lora(lm->gpt, dir);
}

qkv_status qkv_lm_load(const char *dir, qkv_lm **out) {
    if (!dir || !out) return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_lm_load: NULL argument");
    *out = NULL;
    qkv_lm *lm = qkv__calloc(1, sizeof *lm);
    if (!lm) return qkv__fail(QKV_ERR_NOMEM, "qkv_lm_load: out of memory");
    qkv_status s = qkv__gpt_load(dir, &lm->gpt);
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

static void gen_free(gen_state *g, size_t n) {
    for (size_t i = 0; g->seqs && i < n; i++) {
        qkv__kv_cache_release(&g->seqs[i].kv);
        qkv__free(g->seqs[i].hist);
        qkv__free(g->seqs[i].seen);
    }
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
        QKV_TRY(new_cache(c, &q->kv, ctx));
        q->hist = qkv__calloc((size_t)(lens[s] + o->max_new_tokens), sizeof *q->hist);
        q->seen = qkv__calloc((size_t)V, 1);
        if (!q->hist || !q->seen)
            return qkv__fail(QKV_ERR_NOMEM, "qkv_lm_generate_tokens: out of memory");
        memcpy(q->hist, ids, sizeof *ids * (size_t)lens[s]);
        for (int64_t t = 0; t < lens[s]; t++) {
            if (ids[t] < 0 || ids[t] >= V)
                return qkv__fail(QKV_ERR_INVALID_ARG,
                                 "qkv_lm_generate_tokens: prompt %zu token %lld = %d is outside "
                                 "the vocabulary [0, %lld)",
                                 s, (long long)t, ids[t], (long long)V);
            q->seen[ids[t]] = 1;
        }
        q->n_hist = q->n_prompt = lens[s];
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
            int32_t tok = qkv__sample_token(g.logits + r * V, V, q->seen, opts, q->seed,
                                            (uint64_t)q->n_gen, g.scratch);
            q->hist[q->n_hist++] = tok;
            q->seen[tok] = 1;
            if (out) out[s * (size_t)opts->max_new_tokens + (size_t)q->n_gen] = tok;
            q->n_gen++;
            if (out_lens) out_lens[s] = q->n_gen;
            if (q->n_gen == opts->max_new_tokens) q->done = 1;
            for (size_t i = 0; i < opts->n_stop_tokens; i++)
                if (tok == opts->stop_tokens[i]) q->done = 1;
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
