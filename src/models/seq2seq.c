/* seq2seq.c — qkv_seq2seq: an encoder-decoder translation model (models/marian) and its
 * decoding as transformers' generate() does it (API in qkv.h; docs/TRANSLATION.md).
 *
 * The sources of a call are encoded once, packed, and every decoder layer's cross-attention
 * keys/values of them computed once (qkv__marian_cross_kv). Then every step feeds one token per
 * live row — one row per sentence (greedy) or num_beams rows per sentence (beam search) — to
 * qkv__marian_decode_step, each row with its own self-attention cache.
 *
 * The beam search is transformers' vectorized one (generation/utils.py, _beam_search), sentence
 * by sentence: log_softmax of the logits, the logits processors (no_repeat_ngram_size,
 * bad_words_ids, forced_eos_token_id at max_length - 1; renormalize_logits: log_softmax again),
 * plus the running beam scores; the top
 * 2·num_beams candidates of all beams; the best num_beams that did not just finish run on (a
 * finished candidate gets -1e9); candidates among the top num_beams that hit EOS or max_length
 * join the finished set with score / (length ^ length_penalty), merged by score; the
 * early-stopping heuristic. The -1e9 offsets are added in float as transformers adds them, so
 * scores and their order agree with it. A sentence stops when transformers' loop would no
 * longer change its best hypothesis, which is what it returns (num_return_sequences 1).
 * Marian's beams of a sentence are one beam group (kv_cache.h): one key/value block, each beam
 * a list of places, so a reorder copies lists, never keys. T5's beams (plain caches, which its
 * relative-bias attention reads) share caches copy-on-duplicate: a beam continuing its own
 * parent keeps the cache; only a parent chosen twice is copied. The sentences' beam updates
 * run in parallel (each writes only its own sentence, its own caches and its thread's scratch);
 * best_next selects candidates with the fused log-softmax top-k kernel. */
#include "core/abi.h"
#include "core/alloc.h"
#include "core/error.h"
#include "core/runtime.h"
#include "io/json.h"
#include "kernels/dispatch.h"
#include "kernels/topk.h"
#include "models/kv_cache.h"
#include "models/marian.h"
#include "models/model.h"
#include "models/t5.h"
#include "nn/nn.h"
#include "qkv.h"

#include <jansson.h>
#include <math.h>
#include <string.h>

/* One of the models (m or t), and what decoding needs to know of it. */
struct qkv_seq2seq {
    qkv_marian *m;
    qkv_t5 *t;
    const qkv__s2s_gen *gen;
    int64_t V, P;        /* the decoder's vocabulary; the most source (and target) tokens */
    int64_t C;           /* the encoder output's width */
    int64_t Ld, H, D, Q; /* decoder layers; heads, head dim and H·D of its attention */
    const char *prefix;  /* the source prefix the directory suggests ("" if none) */
};

static qkv_status encode(qkv_runtime *rt, const qkv_seq2seq *s, const int32_t *ids,
                         const int64_t *lens, int64_t n, float *out) {
    return s->m ? qkv__marian_encode(rt, s->m, ids, lens, n, out)
                : qkv__t5_encode(rt, s->t, ids, lens, n, out);
}
static qkv_status cross_kv(qkv_runtime *rt, const qkv_seq2seq *s, const float *enc, int64_t N,
                           float *kv) {
    return s->m ? qkv__marian_cross_kv(rt, s->m, enc, N, kv)
                : qkv__t5_cross_kv(rt, s->t, enc, N, kv);
}
static qkv_status decode_step(qkv_runtime *rt, const qkv_seq2seq *s, qkv_kv_cache *const *caches,
                              const int32_t *tok, const float *kv, int64_t N, const int64_t *off,
                              const int64_t *len, int64_t R, float *logits) {
    return s->m ? qkv__marian_decode_step(rt, s->m, caches, tok, kv, N, off, len, R, logits)
                : qkv__t5_decode_step(rt, s->t, caches, tok, kv, N, off, len, R, logits);
}

/* *t5 = 1 if dir's config.json says model_type "t5". Anything unreadable gives 0 (Marian's
 * loader then reports it), except running out of memory. */
static qkv_status is_t5(const char *dir, int *t5) {
    char path[4096];
    json_t *root = NULL;
    *t5 = 0;
    if (qkv__json_config_path(dir, path, sizeof path) != QKV_OK) return QKV_OK;
    qkv__json_begin();
    qkv_status s = qkv__json_load_file(path, 0, &root);
    if (s == QKV_OK) {
        json_t *mt = json_object_get(root, "model_type");
        *t5 = json_is_string(mt) && strcmp(json_string_value(mt), "t5") == 0;
    }
    json_decref(root);
    qkv__json_end();
    return s == QKV_ERR_NOMEM ? s : QKV_OK;
}

qkv_status qkv_seq2seq_load(const char *dir, qkv_seq2seq **out) {
    return qkv_seq2seq_load_opts(dir, NULL, out);
}

qkv_status qkv_seq2seq_load_opts(const char *dir, const qkv_model_options *opts,
                                 qkv_seq2seq **out) {
    if (out) *out = NULL;
    if (!dir || !out) return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_seq2seq_load: NULL argument");
    qkv_dtype dtype;
    QKV_TRY(qkv__model_options_dtype("qkv_seq2seq_load", opts, &dtype));
    qkv_seq2seq *s = qkv__calloc(1, sizeof *s);
    if (!s) return qkv__fail(QKV_ERR_NOMEM, "qkv_seq2seq_load: out of memory");
    int t5 = 0;
    qkv_status st = is_t5(dir, &t5);
    if (st == QKV_OK)
        st = t5 ? qkv__t5_load(dir, dtype, &s->t) : qkv__marian_load(dir, dtype, &s->m);
    if (st != QKV_OK) {
        qkv__free(s);
        return st;
    }
    if (s->m) {
        const qkv_marian_config *c = &s->m->cfg;
        s->gen = &c->gen, s->V = c->Vd, s->P = c->P, s->C = c->C;
        s->Ld = c->Ld, s->H = c->Hd, s->D = c->C / c->Hd, s->Q = c->C, s->prefix = "";
    } else {
        const qkv_t5_config *c = &s->t->cfg;
        s->gen = &c->gen, s->V = c->V, s->P = c->P, s->C = c->C;
        s->Ld = c->Ld, s->H = c->H, s->D = c->D, s->Q = c->Q, s->prefix = c->prefix;
    }
    *out = s;
    return QKV_OK;
}

void qkv_seq2seq_free(qkv_seq2seq *s) {
    if (!s) return;
    qkv__marian_free(s->m);
    qkv__t5_free(s->t);
    qkv__free(s);
}

qkv_dtype qkv_seq2seq_dtype(const qkv_seq2seq *s) {
    return !s ? QKV_DTYPE_F32 : s->m ? s->m->packed.dtype : s->t->packed.dtype;
}
int64_t qkv_seq2seq_vocab_size(const qkv_seq2seq *s) { return s ? s->V : 0; }
int64_t qkv_seq2seq_max_source(const qkv_seq2seq *s) { return s ? s->P : 0; }
const char *qkv_seq2seq_source_prefix(const qkv_seq2seq *s) { return s ? s->prefix : ""; }

static void defaults(const qkv_seq2seq *s, qkv_translate_options *d) {
    memset(d, 0, sizeof *d);
    d->struct_size = sizeof *d;
    if (!s) return;
    const qkv__s2s_gen *c = s->gen;
    d->num_beams = c->num_beams;
    d->max_length = c->max_length;
    d->length_penalty = c->length_penalty;
    d->early_stopping = (qkv_early_stopping)c->early_stopping;
    d->no_repeat_ngram_size = c->no_repeat_ngram;
    d->renormalize_logits = c->renormalize;
}

void qkv_seq2seq_default_options_sized(const qkv_seq2seq *s, qkv_translate_options *o,
                                       size_t struct_size) {
    if (!o) return;
    qkv_translate_options d;
    defaults(s, &d);
    QKV__STRUCT_FILL(qkv_translate_options, o, struct_size, &d);
}

/* The options in this version's layout, checked; *L = the max_length in force. */
static qkv_status read_options(const qkv_seq2seq *s, const qkv_translate_options *in,
                               qkv_translate_options *o, int64_t *L, const char *fn) {
    qkv_translate_options d;
    defaults(s, &d);
    QKV_TRY(QKV__STRUCT_IN(qkv_translate_options, o, in, &d, fn));
    const int64_t P = s->P;
    if (o->num_beams < 1 || o->num_beams > 1024)
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: num_beams = %lld must be in [1, 1024]", fn,
                         (long long)o->num_beams);
    if (o->max_new_tokens < 0 || o->max_new_tokens > P)
        return qkv__fail(QKV_ERR_INVALID_ARG,
                         "%s: max_new_tokens = %lld must be in [0, %lld] (max_position_embeddings; "
                         "T5: n_positions)",
                         fn, (long long)o->max_new_tokens, (long long)P);
    *L = o->max_new_tokens > 0 ? 1 + o->max_new_tokens : o->max_length;
    if (*L < 2 || *L - 1 > P)
        return qkv__fail(QKV_ERR_INVALID_ARG,
                         "%s: max_length = %lld must be in [2, %lld] (max_position_embeddings or "
                         "T5's n_positions, + 1)",
                         fn, (long long)*L, (long long)(P + 1));
    if (!isfinite(o->length_penalty))
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: length_penalty must be finite", fn);
    if (o->early_stopping < QKV_EARLY_STOP_FALSE || o->early_stopping > QKV_EARLY_STOP_NEVER)
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: early_stopping = %d is not a qkv_early_stopping",
                         fn, (int)o->early_stopping);
    if (o->no_repeat_ngram_size < 0)
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: no_repeat_ngram_size must be >= 0", fn);
    if (o->renormalize_logits != 0 && o->renormalize_logits != 1)
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: renormalize_logits must be 0 or 1", fn);
    return QKV_OK;
}

int64_t qkv_seq2seq_max_output(const qkv_seq2seq *s, const qkv_translate_options *opts) {
    if (!s) return 0;
    qkv_translate_options o;
    int64_t L = 0;
    return read_options(s, opts, &o, &L, "qkv_seq2seq_max_output") == QKV_OK ? L - 1 : 0;
}

/* ---------------------------------------------------------------- logits processors */

/* transformers' NoRepeatNGram, NoBadWords, ForcedEOS (in its order) on one row of scores,
 * for the hypothesis hist[0, cur) (start token included). */
static void process(float *x, int64_t V, const int32_t *hist, int64_t cur, int64_t ngram,
                    const qkv__s2s_gen *c, int64_t L) {
    if (ngram > 0 && cur >= ngram) { /* windows whose first n-1 tokens are the current suffix */
        const int32_t *suffix = hist + cur - ngram + 1;
        for (int64_t i = 0; i + ngram <= cur; i++)
            if (memcmp(hist + i, suffix, sizeof(int32_t) * (size_t)(ngram - 1)) == 0)
                x[hist[i + ngram - 1]] = -INFINITY;
    }
    for (int64_t i = 0; i < c->n_bad; i++) x[c->bad_ids[i]] = -INFINITY;
    if (c->forced_eos >= 0 && cur == L - 1) {
        for (int64_t v = 0; v < V; v++) x[v] = -INFINITY;
        x[c->forced_eos] = 0.0f;
    }
}

/* ---------------------------------------------------------------- decoding state */

typedef struct {
    int32_t *run, *fin;           /* [nb, L] hypotheses: running, finished (start token first) */
    float *run_score, *fin_score; /* [nb] */
    int64_t *fin_len;             /* [nb] */
    uint8_t *fin_flag;            /* [nb] */
    int heur;                     /* transformers' is_early_stop_heuristic_unsatisfied */
    int done;
} sent;

typedef struct {
    const qkv_seq2seq *m;
    int64_t n, nb, L, V, R; /* sentences, beams, max_length, vocab, rows = n · nb */
    qkv_kv_cache *pool;     /* [R] */
    int64_t *map;           /* [R] row (sentence · nb + beam) -> its cache in pool */
    qkv_kv_cache **kvp;     /* [R] caches of a step's rows */
    int32_t *tok;           /* [R] */
    int64_t *off, *len;     /* [R] the row's source in kv */
    int64_t *row_sent;      /* [R] */
    int64_t *src_off;       /* [n] */
    const int64_t *src_len; /* [n] */
    float *kv, *logits;     /* [Ld, 2, N, Q], [R, V] */
    sent *s;                /* [n] */
    int group;              /* pool: a beam group per sentence (kv_cache.h), map the identity */
    int nthr;               /* threads of the beam updates; each has its own scratch: */
    int32_t *tmp_hist;      /* [nthr, 3 nb, L] */
    float *top_val;         /* [nthr, 2 K] (K = 2 nb) */
    int64_t *top_idx;       /* [nthr, 2 K] */
} dec_state;

static void state_free(dec_state *d) {
    for (int64_t r = 0; d->pool && r < d->R; r++)
        if (!d->group)
            qkv__kv_cache_release(&d->pool[r]);
        else if (r % d->nb == 0)
            qkv__kv_group_release(&d->pool[r]);
    for (int64_t i = 0; d->s && i < d->n; i++) {
        sent *s = &d->s[i];
        qkv__free(s->run);
        qkv__free(s->fin);
        qkv__free(s->run_score);
        qkv__free(s->fin_score);
        qkv__free(s->fin_len);
        qkv__free(s->fin_flag);
    }
    void *p[] = {d->pool,    d->map, d->kvp,    d->tok, d->off,      d->len,     d->row_sent,
                 d->src_off, d->kv,  d->logits, d->s,   d->tmp_hist, d->top_val, d->top_idx};
    for (size_t i = 0; i < sizeof p / sizeof *p; i++) qkv__free(p[i]);
}

static qkv_status state_init(dec_state *d, const qkv_seq2seq *m, const int64_t *lens, int64_t n,
                             int64_t nb, int64_t L, int64_t N, int nthr) {
    const qkv__s2s_gen *c = m->gen;
    memset(d, 0, sizeof *d);
    d->m = m, d->n = n, d->nb = nb, d->L = L, d->V = m->V, d->src_len = lens;
    size_t R, rv, kvn;
    if (qkv__mul_overflow((size_t)n, (size_t)nb, &R) || qkv__mul_overflow(R, (size_t)m->V, &rv) ||
        qkv__mul_overflow((size_t)N, (size_t)(2 * m->Q * m->Ld), &kvn))
        return qkv__fail(QKV_ERR_OVERFLOW, "qkv_seq2seq_generate: sizes overflow");
    d->R = (int64_t)R;
    d->nthr = nthr;
    d->group = m->m && nb > 1; /* Marian's attention reads beam groups (T5's: plain caches) */
    d->pool = qkv__calloc(R, sizeof *d->pool);
    d->map = qkv__calloc(R, sizeof *d->map);
    d->kvp = qkv__calloc(R, sizeof *d->kvp);
    d->tok = qkv__calloc(R, sizeof *d->tok);
    d->off = qkv__calloc(R, sizeof *d->off);
    d->len = qkv__calloc(R, sizeof *d->len);
    d->row_sent = qkv__calloc(R, sizeof *d->row_sent);
    d->src_off = qkv__calloc((size_t)n, sizeof *d->src_off);
    d->kv = qkv__calloc(kvn, sizeof *d->kv);
    d->logits = qkv__calloc(rv, sizeof *d->logits);
    d->s = qkv__calloc((size_t)n, sizeof *d->s);
    d->tmp_hist = qkv__calloc((size_t)nthr * (size_t)(3 * nb * L), sizeof *d->tmp_hist);
    d->top_val = qkv__calloc((size_t)nthr * (size_t)(4 * nb), sizeof *d->top_val);
    d->top_idx = qkv__calloc((size_t)nthr * (size_t)(4 * nb), sizeof *d->top_idx);
    if (!d->pool || !d->map || !d->kvp || !d->tok || !d->off || !d->len || !d->row_sent ||
        !d->src_off || !d->kv || !d->logits || !d->s || !d->tmp_hist || !d->top_val || !d->top_idx)
        return qkv__fail(QKV_ERR_NOMEM, "qkv_seq2seq_generate: out of memory");
    for (int64_t i = 0, o = 0; i < n; o += lens[i], i++) {
        d->src_off[i] = o;
        /* caches start near the source length and grow (a translation is rarely much longer) */
        int64_t cap = 2 * lens[i] + 8 < L - 1 ? 2 * lens[i] + 8 : L - 1;
        sent *s = &d->s[i];
        s->run = qkv__calloc((size_t)(nb * L), sizeof *s->run);
        s->fin = qkv__calloc((size_t)(nb * L), sizeof *s->fin);
        s->run_score = qkv__calloc((size_t)nb, sizeof *s->run_score);
        s->fin_score = qkv__calloc((size_t)nb, sizeof *s->fin_score);
        s->fin_len = qkv__calloc((size_t)nb, sizeof *s->fin_len);
        s->fin_flag = qkv__calloc((size_t)nb, sizeof *s->fin_flag);
        if (!s->run || !s->fin || !s->run_score || !s->fin_score || !s->fin_len || !s->fin_flag)
            return qkv__fail(QKV_ERR_NOMEM, "qkv_seq2seq_generate: out of memory");
        s->heur = 1;
        for (int64_t b = 0; b < nb; b++) {
            s->run[b * L] = c->start;
            s->run_score[b] = b ? -1.0e9f : 0.0f;
            s->fin_score[b] = -1.0e9f;
            d->map[i * nb + b] = i * nb + b;
            if (!d->group)
                QKV_TRY(qkv__kv_cache_init(&d->pool[i * nb + b], m->Ld, cap, m->H, m->D));
        }
        if (d->group) QKV_TRY(qkv__kv_group_init(&d->pool[i * nb], nb, m->Ld, cap, m->H, m->D));
    }
    return QKV_OK;
}

/* Feeds the last token of every live row (cur tokens so far) and computes their logits;
 * *rows = how many, in the order of live sentences and their beams. */
static qkv_status step(qkv_runtime *rt, dec_state *d, int64_t cur, int64_t N, int64_t *rows) {
    int64_t R = 0;
    for (int64_t i = 0; i < d->n; i++) {
        if (d->s[i].done) continue;
        for (int64_t b = 0; b < d->nb; b++, R++) {
            qkv_kv_cache *kv = &d->pool[d->map[i * d->nb + b]];
            if (kv->len == kv->cap) { /* a group grows at its first beam, all beams at once */
                int64_t cap = 2 * kv->cap < d->L - 1 ? 2 * kv->cap : d->L - 1;
                QKV_TRY(d->group ? qkv__kv_group_reserve(kv, cap) : qkv__kv_cache_reserve(kv, cap));
            }
            d->kvp[R] = kv;
            d->tok[R] = d->s[i].run[b * d->L + cur - 1];
            d->off[R] = d->src_off[i];
            d->len[R] = d->src_len[i];
            d->row_sent[R] = i;
        }
    }
    *rows = R;
    if (R == 0) return QKV_OK;
    return decode_step(rt, d->m, d->kvp, d->tok, d->kv, N, d->off, d->len, R, d->logits);
}

/* The K best of x[0, n) by value, descending; ties: the lower index first (torch.topk keeps
 * them in index order on the CPU for the sizes used here). */
static void top_k(const float *x, int64_t n, int64_t K, float *val, int64_t *idx) {
    size_t have = 0;
    for (int64_t i = 0; i < n; i++) qkv__topk_offer(x[i], i, (size_t)K, &have, val, idx);
    for (int64_t j = (int64_t)have; j < K; j++) val[j] = -INFINITY, idx[j] = 0;
}

/* The K best next tokens of sentence s's nb beams, by log_softmax(logits) + the beam's score
 * after the logits processors, over all nb·V: val, idx (flat b·V + v) as top_k over the
 * materialized scores would give them (ties: the lower flat index). lg [nb, V] are the rows'
 * logits (overwritten). Usually one fused pass per row: the row's log-softmax max and sum, the
 * bans (-inf) on the logits, then the kernel's selection, which forms each score with the
 * log-softmax's own float operations; the per-row lists are offered in order of rows, so ties
 * resolve as in one pass. Forced EOS, renormalize_logits and non-finite rows take the
 * materializing path. rv, ri [K]: scratch. */
static void best_next(const dec_state *d, const sent *s, float *lg, int64_t cur,
                      const qkv_translate_options *o, float *val, int64_t *idx, float *rv,
                      int64_t *ri) {
    const qkv__s2s_gen *c = d->m->gen;
    const qkv_kernels *k = qkv__kernels();
    const int64_t nb = d->nb, V = d->V, L = d->L, K = 2 * nb, Kr = K < V ? K : V;
    float m[1024];
    double ls[1024];
    int fast = !o->renormalize_logits && !(c->forced_eos >= 0 && cur == L - 1);
    for (int64_t b = 0; fast && b < nb; b++) {
        k->log_softmax_stats_f32(lg + b * V, (size_t)V, &m[b], &ls[b]);
        fast = isfinite(m[b]) && isfinite(ls[b]);
    }
    if (fast) {
        size_t have = 0;
        for (int64_t b = 0; b < nb; b++) {
            float *x = lg + b * V;
            process(x, V, s->run + b * L, cur, o->no_repeat_ngram_size, c, L); /* bans only */
            k->log_softmax_topk_f32(x, (size_t)V, m[b], ls[b], s->run_score[b], (size_t)Kr, rv, ri);
            for (int64_t j = 0; j < Kr; j++)
                qkv__topk_offer(rv[j], b * V + ri[j], (size_t)K, &have, val, idx);
        }
        for (int64_t j = (int64_t)have; j < K; j++) val[j] = -INFINITY, idx[j] = 0;
        return;
    }
    for (int64_t b = 0; b < nb; b++) {
        float *x = lg + b * V;
        k->log_softmax_f32(x, x, 1, (size_t)V);
        process(x, V, s->run + b * L, cur, o->no_repeat_ngram_size, c, L);
        if (o->renormalize_logits) k->log_softmax_f32(x, x, 1, (size_t)V);
        for (int64_t v = 0; v < V; v++) x[v] += s->run_score[b];
    }
    top_k(lg, nb * V, K, val, idx);
}

/* One beam-search step of sentence s (number i), its nb rows' logits at lg [nb, V]; tid: the
 * thread (its scratch). */
static qkv_status beam_update(dec_state *d, sent *s, int64_t i, float *lg, int64_t cur,
                              const qkv_translate_options *o, int tid) {
    const qkv__s2s_gen *c = d->m->gen;
    const int64_t nb = d->nb, V = d->V, L = d->L, K = 2 * nb;
    float *val = d->top_val + (size_t)tid * (size_t)(2 * K);
    int64_t *idx = d->top_idx + (size_t)tid * (size_t)(2 * K);
    int32_t *hist = d->tmp_hist + (size_t)tid * (size_t)(3 * nb * L);
    best_next(d, s, lg, cur, o, val, idx, val + K, idx + K);
    int hits[2 * 1024], all_hit = 1;
    for (int64_t k = 0; k < K; k++) {
        const int32_t t = (int32_t)(idx[k] % V);
        hits[k] = t == c->eos || cur + 1 >= L;
        all_hit &= hits[k];
    }
    /* the finished set: the previous one merged with this step's top num_beams finishers */
    int32_t *cand = hist; /* [K, L] candidate hypotheses */
    for (int64_t k = 0; k < K; k++) {
        memcpy(cand + k * L, s->run + (idx[k] / V) * L, sizeof(int32_t) * (size_t)cur);
        cand[k * L + cur] = (int32_t)(idx[k] % V);
    }
    int full = o->early_stopping == QKV_EARLY_STOP_TRUE;
    for (int64_t b = 0; b < nb; b++) full &= s->fin_flag[b];
    const float div = (float)pow((double)cur, (double)o->length_penalty);
    float merged[3 * 1024] = {0};
    for (int64_t b = 0; b < nb; b++) merged[b] = s->fin_score[b];
    for (int64_t k = 0; k < K; k++) {
        float f = val[k] / div;
        f += full ? -1.0e9f : -0.0f;
        f += s->heur ? -0.0f : -1.0e9f;
        f += hits[k] && k < nb ? -0.0f : -1.0e9f;
        merged[nb + k] = f;
    }
    float mv[1024];
    int64_t mi[1024];
    top_k(merged, nb + K, nb, mv, mi);
    int32_t *nf = hist + K * L; /* [nb, L] the new finished set */
    int64_t nlen[1024];
    uint8_t nflag[1024];
    for (int64_t b = 0; b < nb; b++) {
        const int64_t j = mi[b];
        if (j < nb) {
            memcpy(nf + b * L, s->fin + j * L, sizeof(int32_t) * (size_t)L);
            nlen[b] = s->fin_len[j], nflag[b] = s->fin_flag[j];
        } else {
            memcpy(nf + b * L, cand + (j - nb) * L, sizeof(int32_t) * (size_t)(cur + 1));
            nlen[b] = cur + 1, nflag[b] = hits[j - nb] && j - nb < nb;
        }
    }
    for (int64_t b = 0; b < nb; b++) {
        memcpy(s->fin + b * L, nf + b * L, sizeof(int32_t) * (size_t)L);
        s->fin_score[b] = mv[b], s->fin_len[b] = nlen[b], s->fin_flag[b] = nflag[b];
    }
    /* the running beams: the best num_beams candidates that did not just finish */
    float rs[2 * 1024] = {0}, rv[1024];
    int64_t ri[1024], parent[1024];
    for (int64_t k = 0; k < K; k++) rs[k] = val[k] + (hits[k] ? -1.0e9f : -0.0f);
    top_k(rs, K, nb, rv, ri);
    for (int64_t b = 0; b < nb; b++) {
        parent[b] = idx[ri[b]] / V;
        memcpy(s->run + b * L, cand + ri[b] * L, sizeof(int32_t) * (size_t)(cur + 1));
        s->run_score[b] = rv[b];
    }
    /* caches follow their hypotheses. A beam group: every beam takes its parent's list of
     * places (the keys stay where they are). Else a parent's cache goes to its first child,
     * copies to the others. */
    if (d->group) {
        qkv_kv_cache *g = &d->pool[i * nb];
        const size_t n = sizeof(int32_t) * (size_t)g[0].len;
        for (int64_t b = 0; b < nb; b++) memcpy(hist + b * L, g[b].slot, n); /* [nb, L] */
        for (int64_t b = 0; b < nb; b++) memcpy(g[b].slot, hist + parent[b] * L, n);
    }
    int64_t *map = d->map + i * nb, nmap[1024], freec[1024], nfree = 0;
    uint8_t used[1024] = {0};
    for (int64_t b = 0; b < nb && !d->group; b++) {
        nmap[b] = used[parent[b]] ? -1 : map[parent[b]];
        used[parent[b]] = 1;
    }
    for (int64_t p = 0; p < nb && !d->group; p++)
        if (!used[p]) freec[nfree++] = map[p];
    for (int64_t b = 0; b < nb && !d->group; b++)
        if (nmap[b] < 0) {
            nmap[b] = freec[--nfree];
            qkv_kv_cache *dst = &d->pool[nmap[b]];
            const qkv_kv_cache *src = &d->pool[map[parent[b]]];
            QKV_TRY(qkv__kv_cache_reserve(dst, src->cap));
            qkv__kv_cache_copy(dst, src);
        }
    if (!d->group) memcpy(map, nmap, sizeof(int64_t) * (size_t)nb);
    /* transformers' stopping conditions, per sentence */
    const int64_t next = cur + 1;
    const int64_t best_len =
        o->early_stopping == QKV_EARLY_STOP_NEVER && o->length_penalty > 0 ? L - 1 : next - 1;
    const float best = s->run_score[0] / (float)pow((double)best_len, (double)o->length_penalty);
    float worst = s->fin_score[0];
    for (int64_t b = 1; b < nb; b++) worst = s->fin_score[b] < worst ? s->fin_score[b] : worst;
    int any = 0;
    for (int64_t b = 0; b < nb; b++) any |= best > (s->fin_flag[b] ? worst : -1.0e9f);
    s->heur &= any;
    int all_fin = 1;
    for (int64_t b = 0; b < nb; b++) all_fin &= s->fin_flag[b];
    if (!s->heur || (o->early_stopping == QKV_EARLY_STOP_TRUE && all_fin) || all_hit) s->done = 1;
    return QKV_OK;
}

/* Every live sentence's beam update (sentence j of the step's n_live at rows j·nb), one
 * sentence per task: they share nothing but the read-only model state. */
typedef struct {
    dec_state *d;
    int64_t cur;
    const qkv_translate_options *o;
} beam_job;

static qkv_status beam_item(void *ctx, int64_t k, int tid) {
    beam_job *j = ctx;
    dec_state *d = j->d;
    const int64_t r = k * d->nb, i = d->row_sent[r];
    return beam_update(d, &d->s[i], i, d->logits + r * d->V, j->cur, j->o, tid);
}

static qkv_status beam_step(qkv_runtime *rt, dec_state *d, int64_t n_live, int64_t cur,
                            const qkv_translate_options *o) {
    beam_job j = {d, cur, o};
    if (d->nthr > 1) return qkv__parallel_items(rt, n_live, beam_item, &j);
    for (int64_t k = 0; k < n_live; k++) QKV_TRY(beam_item(&j, k, 0));
    return QKV_OK;
}

qkv_status qkv_seq2seq_generate(qkv_runtime *rt, const qkv_seq2seq *ss, const int32_t *src,
                                const int64_t *lens, size_t n, const qkv_translate_options *opts,
                                int32_t *out, int64_t *out_lens, float *scores) {
    static const char fn[] = "qkv_seq2seq_generate";
    if (!ss || !lens || !out || !out_lens || (n && !src))
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: NULL argument", fn);
    const qkv__s2s_gen *c = ss->gen;
    qkv_translate_options o;
    int64_t L = 0;
    QKV_TRY(read_options(ss, opts, &o, &L, fn));
    const int64_t nb = o.num_beams, V = ss->V, cap_out = L - 1;
    for (size_t i = 0; i < n; i++) out_lens[i] = 0;
    if (n == 0) return QKV_OK;
    int64_t N = 0;
    for (size_t i = 0; i < n; i++) {
        if (lens[i] < 1 || lens[i] > ss->P)
            return qkv__fail(QKV_ERR_INVALID_ARG,
                             "%s: source %zu has %lld tokens (1..%lld allowed)", fn, i,
                             (long long)lens[i], (long long)ss->P);
        N += lens[i];
    }
    dec_state d;
    qkv_status st = state_init(&d, ss, lens, (int64_t)n, nb, L, N, qkv_runtime_n_threads(rt));
    size_t enc_bytes = 0;
    if (st == QKV_OK && (qkv__mul_overflow((size_t)N, (size_t)ss->C, &enc_bytes) ||
                         qkv__mul_overflow(enc_bytes, sizeof(float), &enc_bytes)))
        st = qkv__fail(QKV_ERR_OVERFLOW, "%s: sizes overflow", fn);
    float *enc = st == QKV_OK ? qkv__alloc(enc_bytes) : NULL;
    if (st == QKV_OK && !enc) st = qkv__fail(QKV_ERR_NOMEM, "%s: out of memory", fn);
    if (st == QKV_OK) st = encode(rt, ss, src, lens, (int64_t)n, enc);
    if (st == QKV_OK) st = cross_kv(rt, ss, enc, N, d.kv);
    qkv__free(enc);
    float *gscore = qkv__calloc(n, sizeof *gscore); /* greedy: Σ log p */
    if (st == QKV_OK && !gscore) st = qkv__fail(QKV_ERR_NOMEM, "%s: out of memory", fn);
    for (int64_t cur = 1; st == QKV_OK && cur < L; cur++) {
        int64_t R = 0;
        st = step(rt, &d, cur, N, &R);
        if (st != QKV_OK || R == 0) break;
        if (nb == 1) { /* greedy: the processors on the logits, then the first argmax */
            for (int64_t r = 0; r < R; r++) {
                const int64_t i = d.row_sent[r];
                sent *s = &d.s[i];
                float *x = d.logits + r * V;
                process(x, V, s->run, cur, o.no_repeat_ngram_size, c, L);
                int64_t best = 0;
                for (int64_t v = 1; v < V; v++)
                    if (x[v] > x[best]) best = v;
                float lsm;
                st = qkv_nn_log_softmax_forward(NULL, x, x, 1, V);
                if (st != QKV_OK) break;
                lsm = x[best];
                gscore[i] += lsm;
                s->run[cur] = (int32_t)best;
                if (best == c->eos || cur + 1 >= L) {
                    s->done = 1;
                    s->fin_len[0] = cur + 1;
                    s->fin_flag[0] = 1;
                    memcpy(s->fin, s->run, sizeof(int32_t) * (size_t)(cur + 1));
                    s->fin_score[0] = gscore[i] / (float)pow((double)cur, (double)o.length_penalty);
                }
            }
            continue;
        }
        st = beam_step(rt, &d, R / nb, cur, &o);
    }
    for (size_t i = 0; st == QKV_OK && i < n; i++) {
        const sent *s = &d.s[i];
        const int64_t len = s->fin_flag[0] ? s->fin_len[0] - 1 : 0;
        memcpy(out + i * (size_t)cap_out, s->fin + 1, sizeof(int32_t) * (size_t)len);
        out_lens[i] = len;
        if (scores) scores[i] = s->fin_score[0];
    }
    qkv__free(gscore);
    state_free(&d);
    return st;
}

qkv_status qkv_seq2seq_translate(qkv_runtime *rt, const qkv_seq2seq *ss, const qkv_tokenizer *tok,
                                 const char *const *texts, size_t n,
                                 const qkv_translate_options *opts, char **out, float *scores) {
    return qkv_seq2seq_translate_with(rt, ss, tok, tok, texts, n, opts, out, scores);
}

qkv_status qkv_seq2seq_translate_with(qkv_runtime *rt, const qkv_seq2seq *ss,
                                      const qkv_tokenizer *tok, const qkv_tokenizer *ttok,
                                      const char *const *texts, size_t n,
                                      const qkv_translate_options *opts, char **out,
                                      float *scores) {
    static const char fn[] = "qkv_seq2seq_translate";
    if (!ss || !tok || !ttok || !out || (n && !texts))
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: NULL argument", fn);
    for (size_t i = 0; i < n; i++) out[i] = NULL;
    if (n == 0) return QKV_OK;
    qkv_translate_options o;
    int64_t L = 0;
    QKV_TRY(read_options(ss, opts, &o, &L, fn));
    const int64_t cap = L - 1;
    qkv_encoding **enc = qkv__calloc(n, sizeof *enc);
    int64_t *lens = qkv__calloc(n, sizeof *lens), *olens = qkv__calloc(n, sizeof *olens), N = 0;
    qkv_status st =
        enc && lens && olens ? QKV_OK : qkv__fail(QKV_ERR_NOMEM, "%s: out of memory", fn);
    for (size_t i = 0; st == QKV_OK && i < n; i++) {
        if (!texts[i]) st = qkv__fail(QKV_ERR_INVALID_ARG, "%s: text %zu is NULL", fn, i);
        if (st == QKV_OK)
            st = qkv_tokenizer_encode(tok, texts[i], strlen(texts[i]), NULL, 0, NULL, &enc[i]);
        if (st == QKV_OK && (enc[i]->n < 1 || (int64_t)enc[i]->n > ss->P))
            st = qkv__fail(QKV_ERR_INVALID_ARG,
                           "%s: text %zu has %zu tokens; the model takes 1..%lld", fn, i, enc[i]->n,
                           (long long)ss->P);
        if (st == QKV_OK) lens[i] = (int64_t)enc[i]->n, N += lens[i];
    }
    int32_t *src = st == QKV_OK ? qkv__alloc(sizeof(int32_t) * (size_t)N) : NULL;
    size_t n_ids = 0;
    if (st == QKV_OK && qkv__mul_overflow(n, (size_t)cap * sizeof(int32_t), &n_ids))
        st = qkv__fail(QKV_ERR_OVERFLOW, "%s: sizes overflow", fn);
    int32_t *ids = st == QKV_OK ? qkv__alloc(n_ids) : NULL;
    if (st == QKV_OK && (!src || !ids)) st = qkv__fail(QKV_ERR_NOMEM, "%s: out of memory", fn);
    for (size_t i = 0, at = 0; st == QKV_OK && i < n; at += (size_t)lens[i], i++)
        memcpy(src + at, enc[i]->ids, sizeof(int32_t) * (size_t)lens[i]);
    if (st == QKV_OK) st = qkv_seq2seq_generate(rt, ss, src, lens, n, &o, ids, olens, scores);
    for (size_t i = 0; st == QKV_OK && i < n; i++)
        st = qkv_tokenizer_decode(ttok, ids + i * (size_t)cap, (size_t)olens[i], 1, &out[i], NULL);
    if (st != QKV_OK)
        for (size_t i = 0; i < n; i++) {
            qkv_free(out[i]);
            out[i] = NULL;
        }
    for (size_t i = 0; enc && i < n; i++) qkv_encoding_free(enc[i]);
    qkv__free(enc);
    qkv__free(lens);
    qkv__free(olens);
    qkv__free(src);
    qkv__free(ids);
    return st;
}

/* ---------------------------------------------------------------- attention maps */

int64_t qkv_seq2seq_num_layers(const qkv_seq2seq *s, int decoder) {
    if (!s) return 0;
    if (!s->m) return decoder ? s->t->cfg.Ld : s->t->cfg.Le;
    return decoder ? s->m->cfg.Ld : s->m->cfg.Le;
}
int64_t qkv_seq2seq_num_heads(const qkv_seq2seq *s, int decoder) {
    if (!s) return 0;
    if (!s->m) return s->t->cfg.H;
    return decoder ? s->m->cfg.Hd : s->m->cfg.He;
}
int32_t qkv_seq2seq_start_token(const qkv_seq2seq *s) { return s ? s->gen->start : -1; }
int32_t qkv_seq2seq_eos_token(const qkv_seq2seq *s) { return s ? s->gen->eos : -1; }

/* The maps are drawn through Marian's layers only (T5's relative bias is not passed to them). */
static qkv_status maps_supported(const qkv_seq2seq *s, const char *fn) {
    if (s->m) return QKV_OK;
    return qkv__fail(QKV_ERR_UNSUPPORTED, "%s: attention maps of T5 models are not implemented yet",
                     fn);
}

qkv_status qkv_seq2seq_attention_len(const qkv_seq2seq *s, int64_t S, int64_t T, size_t *out) {
    static const char fn[] = "qkv_seq2seq_attention_len";
    if (!s || !out) return qkv__fail(QKV_ERR_INVALID_ARG, "%s: NULL argument", fn);
    *out = 0;
    QKV_TRY(maps_supported(s, fn));
    if (S < 1 || T < 1)
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: S = %lld and T = %lld must be >= 1", fn,
                         (long long)S, (long long)T);
    const qkv_marian_config *c = &s->m->cfg;
    size_t e, d, x, total, bytes;
    /* Le·He·S², Ld·Hd·T², Ld·Hd·T·S */
    if (qkv__mul_overflow((size_t)S, (size_t)S, &e) ||
        qkv__mul_overflow(e, (size_t)(c->Le * c->He), &e) ||
        qkv__mul_overflow((size_t)T, (size_t)T, &d) ||
        qkv__mul_overflow(d, (size_t)(c->Ld * c->Hd), &d) ||
        qkv__mul_overflow((size_t)T, (size_t)S, &x) ||
        qkv__mul_overflow(x, (size_t)(c->Ld * c->Hd), &x) || qkv__add_overflow(e, d, &total) ||
        qkv__add_overflow(total, x, &total) || qkv__mul_overflow(total, sizeof(float), &bytes))
        return qkv__fail(QKV_ERR_OVERFLOW, "%s: the maps' size overflows", fn);
    *out = total;
    return QKV_OK;
}

qkv_status qkv_seq2seq_attention(qkv_runtime *rt, const qkv_seq2seq *ss, const int32_t *src,
                                 int64_t S, const int32_t *dec, int64_t T, float *probs,
                                 size_t probs_len) {
    static const char fn[] = "qkv_seq2seq_attention";
    if (!ss || !src || !dec || !probs)
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: NULL argument", fn);
    QKV_TRY(maps_supported(ss, fn));
    const qkv_marian *m = ss->m;
    const qkv_marian_config *c = &m->cfg;
    if (S < 1 || S > c->P || T < 1 || T > c->P)
        return qkv__fail(QKV_ERR_INVALID_ARG,
                         "%s: the source has %lld tokens and the target %lld (1..%lld allowed: "
                         "max_position_embeddings)",
                         fn, (long long)S, (long long)T, (long long)c->P);
    for (int64_t i = 0; i < S; i++)
        if (src[i] < 0 || src[i] >= c->V)
            return qkv__fail(QKV_ERR_INVALID_ARG,
                             "%s: source token %lld is id %d, outside the vocabulary [0, %lld)", fn,
                             (long long)i, src[i], (long long)c->V);
    for (int64_t i = 0; i < T; i++)
        if (dec[i] < 0 || dec[i] >= c->Vd)
            return qkv__fail(QKV_ERR_INVALID_ARG,
                             "%s: target token %lld is id %d, outside the vocabulary [0, %lld)", fn,
                             (long long)i, dec[i], (long long)c->Vd);
    size_t need = 0;
    QKV_TRY(qkv_seq2seq_attention_len(ss, S, T, &need));
    if (probs_len < need)
        return qkv__fail(QKV_ERR_INVALID_ARG,
                         "%s: probs holds %zu floats; the maps of S = %lld, T = %lld need %zu", fn,
                         probs_len, (long long)S, (long long)T, need);
    const int64_t C = c->C, es = c->Le * c->He * S * S, ds = c->Ld * c->Hd * T * T;
    /* the decoder's maps: zero where a query may not look (keys after it) */
    memset(probs + es, 0, sizeof(float) * (need - (size_t)es));
    const qkv__marian_step_maps maps = {probs + es, probs + es + ds, T, S};
    /* enc [S, C], kv [Ld, 2, S, C], logits [Vd] (the logits are not needed) */
    float *enc = qkv__alloc(sizeof(float) * (size_t)(S * C * (1 + 2 * c->Ld) + c->Vd));
    if (!enc) return qkv__fail(QKV_ERR_NOMEM, "%s: out of memory", fn);
    float *kv = enc + S * C, *logits = kv + 2 * c->Ld * S * C;
    qkv_kv_cache cache;
    memset(&cache, 0, sizeof cache);
    qkv_kv_cache *cp = &cache;
    const int64_t off = 0;
    qkv_status st = qkv__marian_encode_probs(rt, m, src, &S, 1, enc, probs);
    if (st == QKV_OK) st = qkv__marian_cross_kv(rt, m, enc, S, kv);
    if (st == QKV_OK) st = qkv__kv_cache_init(&cache, c->Ld, T, c->Hd, C / c->Hd);
    /* as generation runs it: one token per step against the cache */
    for (int64_t t = 0; st == QKV_OK && t < T; t++)
        st = qkv__marian_decode_step_probs(rt, m, &cp, dec + t, kv, S, &off, &S, 1, logits, &maps);
    qkv__kv_cache_release(&cache);
    qkv__free(enc);
    return st;
}
