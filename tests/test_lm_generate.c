/* test_lm_generate.c — text generation (token ids) through the public qkv_lm API on the tiny
 * random fixtures of tools/gen_gpt_golden.py: greedy generation of 32 tokens identical to
 * Hugging Face generate(do_sample=False), each prompt alone and all batched; batched sampling
 * identical to one-at-a-time; seeded sampling reproducible and independent of the thread
 * count; top-k 1 equal to greedy; the logits processors against Hugging Face's
 * LogitsProcessor outputs (tests/fixtures/models/sampling_golden.safetensors); the draw's
 * distribution; stop tokens, the per-token callback, context overflow (refuse and slide, the
 * slide checked against a recomputation with qkv_lm_logits); invalid options; every allocation
 * of a generate call failed in turn. Runs per QKV_ARCH. */
#include "models/sample.h"
#include "qkv.h"
#include "test.h"
#include "test_arch.h"

#define FIXTURES QKV_SOURCE_DIR "/tests/fixtures/models/"
#define NEW 32

static const char *const MODELS[] = {"gpt2_tiny", "llama_tiny", "llama_tiny_untied"};

static const qkv_st_tensor *need(qkv_safetensors *st, const char *name) {
    const qkv_st_tensor *t = qkv_safetensors_find(st, name);
    if (!t) {
        fprintf(stderr, "fixture lacks %s\n", name);
        exit(1);
    }
    return t;
}

static qkv_sampling greedy_opts(int64_t n_new) {
    qkv_sampling o;
    memset(&o, 0, sizeof o);
    o.max_new_tokens = n_new;
    return o;
}

static qkv_sampling sampled_opts(uint64_t seed) {
    qkv_sampling o = greedy_opts(NEW);
    o.temperature = 0.9f;
    o.top_k = 40;
    o.top_p = 0.95f;
    o.repetition_penalty = 1.1f;
    o.seed = seed;
    return o;
}

/* Greedy 32 tokens against HF, alone and batched; sampling batched vs alone; seeds. */
static void generation(const char *name) {
    char dir[512], path[600];
    snprintf(dir, sizeof dir, FIXTURES "%s", name);
    snprintf(path, sizeof path, "%s/golden.safetensors", dir);
    qkv_lm *lm = NULL;
    qkv_safetensors *g = NULL;
    CHECK_OK(qkv_lm_load(dir, &lm));
    CHECK_OK(qkv_safetensors_open(path, &g));
    if (!lm || !g) return;
    const qkv_st_tensor *gi = need(g, "gen_ids"), *gl = need(g, "gen_lens"),
                        *go = need(g, "gen_out");
    const int32_t *ids = gi->data, *want = go->data;
    const int64_t S = gl->shape[0];
    int64_t lens[8];
    memcpy(lens, gl->data, sizeof(int64_t) * (size_t)S);
    int32_t out[8 * NEW], one[NEW];
    int64_t out_lens[8], one_len;
    qkv_runtime *rt1 = NULL, *rt2 = NULL;
    CHECK_OK(qkv_runtime_create(1, &rt1));
    CHECK_OK(qkv_runtime_create(2, &rt2));

    /* greedy, batched, against HF */
    qkv_sampling o = greedy_opts(NEW);
    qkv_generate_stats stats = {.struct_size = sizeof stats};
    CHECK_OK(qkv_lm_generate_tokens(rt2, lm, ids, lens, (size_t)S, &o, NULL, NULL, out, out_lens,
                                    &stats));
    int same = 1;
    for (int64_t s = 0; s < S; s++) {
        CHECK_EQ_INT(out_lens[s], NEW);
        for (int i = 0; i < NEW; i++) same &= out[s * NEW + i] == want[s * NEW + i];
    }
    CHECK_MSG(same, "%s: greedy generation differs from Hugging Face", name);
    printf("%s: greedy %d tokens x %lld prompts batched: %s Hugging Face (prefill %lld tokens, "
           "decode %lld)\n",
           name, NEW, (long long)S, same ? "identical to" : "DIFFERENT from",
           (long long)stats.prefill_tokens, (long long)stats.decode_tokens);
    CHECK_EQ_INT(stats.prefill_tokens, lens[0] + lens[1] + lens[2]);
    CHECK_EQ_INT(stats.decode_tokens, S * (NEW - 1));
    /* each prompt alone (1 thread): identical */
    const int32_t *p = ids;
    for (int64_t s = 0; s < S; s++) {
        CHECK_OK(
            qkv_lm_generate_tokens(rt1, lm, p, &lens[s], 1, &o, NULL, NULL, one, &one_len, NULL));
        CHECK(one_len == NEW && memcmp(one, out + s * NEW, sizeof one) == 0);
        p += lens[s];
    }

    /* sampling: batched equals one-at-a-time (sequence i draws from seed + i), 1 vs 2 threads */
    int32_t out2[8 * NEW];
    int64_t out2_lens[8];
    o = sampled_opts(42);
    CHECK_OK(
        qkv_lm_generate_tokens(rt2, lm, ids, lens, (size_t)S, &o, NULL, NULL, out, out_lens, NULL));
    CHECK_OK(qkv_lm_generate_tokens(rt1, lm, ids, lens, (size_t)S, &o, NULL, NULL, out2, out2_lens,
                                    NULL));
    CHECK(memcmp(out, out2, sizeof(int32_t) * (size_t)(S * NEW)) == 0);
    p = ids;
    int alone_same = 1;
    for (int64_t s = 0; s < S; s++) {
        qkv_sampling o1 = sampled_opts(42 + (uint64_t)s);
        CHECK_OK(
            qkv_lm_generate_tokens(rt1, lm, p, &lens[s], 1, &o1, NULL, NULL, one, &one_len, NULL));
        alone_same &= one_len == out_lens[s] && memcmp(one, out + s * NEW, sizeof one) == 0;
        p += lens[s];
    }
    CHECK_MSG(alone_same, "%s: batched sampling differs from one-at-a-time", name);
    /* explicit per-sequence seeds give the same as seed + i */
    uint64_t seeds[8];
    for (int64_t s = 0; s < S; s++) seeds[s] = 42 + (uint64_t)s;
    o.seed = 999;
    o.seeds = seeds;
    CHECK_OK(qkv_lm_generate_tokens(rt2, lm, ids, lens, (size_t)S, &o, NULL, NULL, out2, out2_lens,
                                    NULL));
    CHECK(memcmp(out, out2, sizeof(int32_t) * (size_t)(S * NEW)) == 0);
    /* another seed gives other tokens; the sampled text is not the greedy one */
    o = sampled_opts(43);
    CHECK_OK(qkv_lm_generate_tokens(rt2, lm, ids, lens, (size_t)S, &o, NULL, NULL, out2, out2_lens,
                                    NULL));
    CHECK(memcmp(out, out2, sizeof(int32_t) * (size_t)(S * NEW)) != 0);
    CHECK(memcmp(out, want, sizeof(int32_t) * (size_t)(S * NEW)) != 0);

    /* top_k = 1 with temperature 1 samples the argmax: greedy */
    o = greedy_opts(NEW);
    o.temperature = 1.0f;
    o.top_k = 1;
    o.seed = 7;
    CHECK_OK(
        qkv_lm_generate_tokens(rt2, lm, ids, lens, (size_t)S, &o, NULL, NULL, out, out_lens, NULL));
    CHECK(memcmp(out, want, sizeof(int32_t) * (size_t)(S * NEW)) == 0);

    qkv_runtime_free(rt1);
    qkv_runtime_free(rt2);
    qkv_safetensors_close(g);
    qkv_lm_free(lm);
}

/* Each processor applied to fixed logits against HF's output (-inf where HF removed). */
static void check_rows(const char *what, const float *got, const float *want, int64_t n) {
    int ok = 1;
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        if (isinf(want[i]) || isinf(got[i])) {
            ok &= got[i] == want[i];
            continue;
        }
        double d = fabs((double)got[i] - want[i]) / (1e-6 + fabs(want[i]));
        if (d > worst) worst = d;
    }
    CHECK_MSG(ok && worst <= 1e-6, "%s: removed sets differ (%d) or relative error %.3g", what, !ok,
              worst);
}

static void processors(void) {
    qkv_safetensors *g = NULL;
    CHECK_OK(qkv_safetensors_open(FIXTURES "sampling_golden.safetensors", &g));
    if (!g) return;
    const qkv_st_tensor *lt = need(g, "logits"), *st = need(g, "seen");
    const int64_t R = lt->shape[0], V = lt->shape[1], nseen = st->shape[1];
    float *x = malloc(sizeof(float) * (size_t)V);
    void *scratch = malloc(qkv__sample_scratch_size(V));
    uint8_t *seen = malloc((size_t)V);
    for (int64_t r = 0; r < R; r++) {
        const float *row = (const float *)lt->data + r * V;
        memset(seen, 0, (size_t)V);
        for (int64_t i = 0; i < nseen; i++) seen[((const int32_t *)st->data)[r * nseen + i]] = 1;
#define RUN(name, stmt)                                                                            \
    do {                                                                                           \
        memcpy(x, row, sizeof(float) * (size_t)V);                                                 \
        stmt;                                                                                      \
        check_rows(name, x, (const float *)need(g, name)->data + r * V, V);                        \
    } while (0)
        RUN("rep_1.3", qkv__logits_repetition_penalty(x, V, seen, 1.3f));
        RUN("rep_0.8", qkv__logits_repetition_penalty(x, V, seen, 0.8f));
        RUN("temp_0.7", qkv__logits_temperature(x, V, 0.7f));
        RUN("topk_10", qkv__logits_top_k(x, V, 10, scratch));
        RUN("topp_0.9", qkv__logits_top_p(x, V, 0.9f, scratch));
        RUN("topp_0.05", qkv__logits_top_p(x, V, 0.05f, scratch));
        RUN("chain_r1.2_t0.8_k50_p0.8", {
            qkv__logits_repetition_penalty(x, V, seen, 1.2f);
            qkv__logits_temperature(x, V, 0.8f);
            qkv__logits_top_k(x, V, 50, scratch);
            qkv__logits_top_p(x, V, 0.8f, scratch);
        });
#undef RUN
    }
    /* top-k keeps ties with the k-th value */
    float t[6] = {1, 3, 2, 3, 0, 2};
    qkv__logits_top_k(t, 6, 3, scratch);
    CHECK(t[0] == -INFINITY && t[4] == -INFINITY && t[1] == 3 && t[2] == 2 && t[5] == 2);
    /* the draw: frequencies of 40000 draws (steps 0..) follow softmax within 4 sigma */
    float l3[3] = {0.0f, 1.0f, 2.0f}, pr[3];
    double z = 1 + exp(1.0) + exp(2.0);
    for (int i = 0; i < 3; i++) pr[i] = (float)(exp((double)l3[i]) / z);
    int counts[3] = {0, 0, 0};
    const int n = 40000;
    qkv_sampling o = greedy_opts(1);
    o.temperature = 1.0f;
    uint8_t none[3] = {0, 0, 0};
    for (int i = 0; i < n; i++) {
        memcpy(x, l3, sizeof l3);
        counts[qkv__sample_token(x, 3, none, &o, 5, (uint64_t)i, scratch)]++;
    }
    for (int i = 0; i < 3; i++) {
        double sd = sqrt(n * pr[i] * (1 - pr[i]));
        CHECK_MSG(fabs(counts[i] - n * pr[i]) <= 4 * sd, "token %d drawn %d times, expected %.0f",
                  i, counts[i], n * pr[i]);
    }
    /* a removed token is never drawn */
    float l2[3] = {0.0f, -INFINITY, 0.0f};
    for (int i = 0; i < 1000; i++) CHECK(qkv__sample_from_logits(l2, 3, (float)i / 1000) != 1);
    free(x);
    free(scratch);
    free(seen);
    qkv_safetensors_close(g);
}

typedef struct {
    int calls, stop_at;
    int32_t got[64];
} cb_state;

static int on_token(void *user, size_t seq, int32_t tok) {
    cb_state *c = user;
    CHECK_EQ_INT(seq, 0);
    c->got[c->calls++] = tok;
    return c->calls == c->stop_at;
}

/* Stop tokens, the callback, overflow. */
static void control(void) {
    qkv_lm *lm = NULL;
    CHECK_OK(qkv_lm_load(FIXTURES "gpt2_tiny", &lm));
    if (!lm) return;
    CHECK_EQ_INT(qkv_lm_vocab_size(lm), 384);
    CHECK_EQ_INT(qkv_lm_max_context(lm), 128);
    CHECK_EQ_INT(qkv_lm_eos_token(lm), 1);
    int32_t prompt[100], full[NEW], out[NEW];
    for (int i = 0; i < 100; i++) prompt[i] = (int32_t)((i * 53 + 5) % 384);
    int64_t len = 12, n_out = 0;
    qkv_sampling o = greedy_opts(NEW);
    CHECK_OK(qkv_lm_generate_tokens(NULL, lm, prompt, &len, 1, &o, NULL, NULL, full, &n_out, NULL));
    CHECK_EQ_INT(n_out, NEW);
    /* a stop token ends the sequence after emitting it */
    int first = 0;
    while (first < NEW && full[first] != full[5]) first++;
    o.stop_tokens = &full[5];
    o.n_stop_tokens = 1;
    CHECK_OK(qkv_lm_generate_tokens(NULL, lm, prompt, &len, 1, &o, NULL, NULL, out, &n_out, NULL));
    CHECK_EQ_INT(n_out, first + 1);
    CHECK(memcmp(out, full, sizeof(int32_t) * (size_t)n_out) == 0);
    /* the callback sees every token in order and can stop */
    cb_state cs = {0, 3, {0}};
    o = greedy_opts(NEW);
    CHECK_OK(
        qkv_lm_generate_tokens(NULL, lm, prompt, &len, 1, &o, on_token, &cs, out, &n_out, NULL));
    CHECK_EQ_INT(n_out, 3);
    CHECK_EQ_INT(cs.calls, 3);
    CHECK(memcmp(cs.got, full, 3 * sizeof(int32_t)) == 0);

    /* refuse: 100 + 32 - 1 tokens do not fit GPT-2's 128 positions; nor 12 + 32 - 1 in 16 */
    len = 100;
    CHECK_STATUS(
        qkv_lm_generate_tokens(NULL, lm, prompt, &len, 1, &o, NULL, NULL, out, &n_out, NULL),
        QKV_ERR_INVALID_ARG);
    CHECK(strstr(qkv_last_error(), "QKV_CONTEXT_SLIDE") != NULL);
    CHECK_EQ_INT(n_out, 0);
    len = 12;
    o.context = 16;
    CHECK_STATUS(
        qkv_lm_generate_tokens(NULL, lm, prompt, &len, 1, &o, NULL, NULL, out, &n_out, NULL),
        QKV_ERR_INVALID_ARG);
    o.context = 129;
    CHECK_STATUS(
        qkv_lm_generate_tokens(NULL, lm, prompt, &len, 1, &o, NULL, NULL, out, &n_out, NULL),
        QKV_ERR_INVALID_ARG);
    /* slide with a context of 16: the model sees tokens [start, n) where start jumps to
     * n - 8 whenever n - start > 16; recompute each step with qkv_lm_logits */
    o.context = 16;
    o.overflow = QKV_CONTEXT_SLIDE;
    for (int64_t plen = 12; plen <= 40; plen += 28) { /* 40: a prompt longer than the context */
        CHECK_OK(
            qkv_lm_generate_tokens(NULL, lm, prompt, &plen, 1, &o, NULL, NULL, out, &n_out, NULL));
        CHECK_EQ_INT(n_out, NEW);
        int32_t seq[200];
        memcpy(seq, prompt, sizeof(int32_t) * (size_t)plen);
        int64_t n = plen, start = 0;
        float logits[16 * 384];
        int ok = 1;
        for (int i = 0; i < NEW; i++) {
            if (n - start > 16) start = n - 8;
            int64_t w = n - start;
            CHECK_OK(qkv_lm_logits(NULL, lm, seq + start, &w, 1, logits));
            int32_t best = qkv__logits_argmax(logits + (w - 1) * 384, 384);
            ok &= best == out[i];
            seq[n++] = out[i];
        }
        CHECK_MSG(ok, "slide with a prompt of %lld tokens differs from the recomputation",
                  (long long)plen);
    }
    /* a long generation slides many times past GPT-2's 128 positions */
    o = greedy_opts(300);
    o.overflow = QKV_CONTEXT_SLIDE;
    int32_t big[300];
    len = 100;
    CHECK_OK(qkv_lm_generate_tokens(NULL, lm, prompt, &len, 1, &o, NULL, NULL, big, &n_out, NULL));
    CHECK_EQ_INT(n_out, 300);

    /* invalid arguments, named */
    o = greedy_opts(0);
    len = 12;
    CHECK_STATUS(qkv_lm_generate_tokens(NULL, lm, prompt, &len, 1, &o, NULL, NULL, out, NULL, NULL),
                 QKV_ERR_INVALID_ARG);
    CHECK(strstr(qkv_last_error(), "max_new_tokens") != NULL);
    static const struct {
        float temperature, top_p, penalty;
        int64_t top_k;
        int32_t stop;
        const char *field;
    } bad[] = {{-1, 0, 0, 0, 0, "temperature"}, {NAN, 0, 0, 0, 0, "temperature"},
               {0, 1.5f, 0, 0, 0, "top_p"},     {0, 0, -2, 0, 0, "repetition_penalty"},
               {0, 0, 0, -1, 0, "top_k"},       {0, 0, 0, 0, 384, "stop_tokens"}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        o = greedy_opts(4);
        o.temperature = bad[i].temperature;
        o.top_p = bad[i].top_p;
        o.repetition_penalty = bad[i].penalty;
        o.top_k = bad[i].top_k;
        o.stop_tokens = &bad[i].stop;
        o.n_stop_tokens = 1;
        CHECK_STATUS(
            qkv_lm_generate_tokens(NULL, lm, prompt, &len, 1, &o, NULL, NULL, out, NULL, NULL),
            QKV_ERR_INVALID_ARG);
        CHECK_MSG(strstr(qkv_last_error(), bad[i].field) != NULL, "'%s' lacks '%s'",
                  qkv_last_error(), bad[i].field);
    }
    o = greedy_opts(4);
    int32_t bad_id = 384;
    int64_t one = 1, zero = 0;
    CHECK_STATUS(
        qkv_lm_generate_tokens(NULL, lm, &bad_id, &one, 1, &o, NULL, NULL, out, NULL, NULL),
        QKV_ERR_INVALID_ARG);
    CHECK_STATUS(
        qkv_lm_generate_tokens(NULL, lm, prompt, &zero, 1, &o, NULL, NULL, out, NULL, NULL),
        QKV_ERR_INVALID_ARG);
    CHECK_STATUS(
        qkv_lm_generate_tokens(NULL, lm, prompt, &len, 1, NULL, NULL, NULL, out, NULL, NULL),
        QKV_ERR_INVALID_ARG);
    CHECK_OK(qkv_lm_generate_tokens(NULL, lm, prompt, &len, 0, &o, NULL, NULL, out, NULL, NULL));
    float lg[384];
    CHECK_STATUS(qkv_lm_logits(NULL, lm, prompt, &zero, 1, lg), QKV_ERR_INVALID_ARG);
    qkv_lm_free(lm);
    qkv_lm *none = NULL;
    CHECK_STATUS(qkv_lm_load(FIXTURES "nonexistent", &none), QKV_ERR_IO);
    CHECK(none == NULL);
    qkv_lm_free(NULL);
}

static int n_alloc, n_free, fail_at = -1;
static void *fail_alloc(size_t size, size_t align, void *user) {
    (void)user;
    if (n_alloc++ == fail_at) return NULL;
    return aligned_alloc(align, (size + align - 1) / align * align);
}
static void count_free(void *p, void *user) {
    (void)user;
    n_free++;
    free(p);
}

/* A batched sampling generate with the Nth allocation failing, for every N: NOMEM, no leak. */
static void generate_nomem(void) {
    qkv_lm *lm = NULL;
    qkv_runtime *rt = NULL;
    CHECK_OK(qkv_lm_load(FIXTURES "llama_tiny", &lm));
    CHECK_OK(qkv_runtime_create(1, &rt));
    if (!lm || !rt) return;
    int32_t ids[10] = {3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, out[2 * 4];
    int64_t lens[2] = {4, 6};
    qkv_sampling o = sampled_opts(1);
    o.max_new_tokens = 4;
    qkv_allocator a = {fail_alloc, count_free, NULL};
    int n = 0;
    for (fail_at = 0;; fail_at++) {
        n_alloc = n_free = 0;
        qkv_set_allocator(&a);
        qkv_status s =
            qkv_lm_generate_tokens(rt, lm, ids, lens, 2, &o, NULL, NULL, out, NULL, NULL);
        qkv_set_allocator(NULL);
        if (s == QKV_OK) break;
        n++;
        CHECK_MSG(s == QKV_ERR_NOMEM, "fail_at %d: status %d (%s)", fail_at, (int)s,
                  qkv_last_error());
        CHECK_MSG(n_alloc - 1 == n_free, "fail_at %d: %d allocations, %d frees", fail_at, n_alloc,
                  n_free);
        if (fail_at > 100000) break;
    }
    printf("generate: %d allocation failures injected, each NOMEM without a leak\n", n);
    qkv_runtime_free(rt);
    qkv_lm_free(lm);
}

/* ---------------------------------------------------------------- continuous batching */

#define NB 6
typedef struct {
    int32_t tok[NB][64];
    int64_t n[NB];
    size_t handle[NB];
    int end_after[NB]; /* on_token ends sequence i after this many tokens (0: never) */
} batch_log;

static int batch_on_token(void *user, size_t seq, int32_t tok) {
    batch_log *l = user;
    for (int i = 0; i < NB; i++)
        if (l->handle[i] == seq) {
            CHECK(l->n[i] < 64);
            if (l->n[i] < 64) l->tok[i][l->n[i]++] = tok;
            return l->end_after[i] && l->n[i] == l->end_after[i];
        }
    CHECK_MSG(0, "a token for an unknown handle %zu", seq);
    return 1;
}

/* Sequences joining and leaving a qkv_lm_batch at different steps, with different options
 * (greedy, sampled, a stop token, a sliding context, ended by the callback, cancelled): each
 * one's tokens equal qkv_lm_generate_tokens on its prompt alone. */
static void batch_decode(const char *name) {
    char dir[512];
    snprintf(dir, sizeof dir, FIXTURES "%s", name);
    qkv_lm *lm = NULL;
    qkv_runtime *rt = NULL;
    CHECK_OK(qkv_lm_load(dir, &lm));
    CHECK_OK(qkv_runtime_create(2, &rt));
    if (!lm || !rt) return;
    int32_t prompts[NB][8];
    int64_t plen[NB] = {3, 8, 5, 1, 6, 4};
    for (int i = 0; i < NB; i++)
        for (int t = 0; t < 8; t++) prompts[i][t] = (int32_t)(3 + (i * 37 + t * 11) % 60);
    qkv_sampling o[NB];
    o[0] = greedy_opts(12);
    o[1] = sampled_opts(7);
    o[1].max_new_tokens = 20;
    o[2] = sampled_opts(9);
    o[3] = greedy_opts(30);
    o[3].context = 8; /* slides */
    o[3].overflow = QKV_CONTEXT_SLIDE;
    o[4] = sampled_opts(11);
    o[5] = greedy_opts(25);
    /* the reference: each alone; sequence 2 stops at its 6th token (a stop token) */
    int32_t want[NB][64];
    int64_t want_n[NB];
    int32_t stop = 0;
    for (int i = 0; i < NB; i++) {
        if (i == 2) {
            CHECK_OK(qkv_lm_generate_tokens(rt, lm, prompts[i], &plen[i], 1, &o[i], NULL, NULL,
                                            want[i], &want_n[i], NULL));
            stop = want[i][5];
            o[i].stop_tokens = &stop;
            o[i].n_stop_tokens = 1;
        }
        CHECK_OK(qkv_lm_generate_tokens(rt, lm, prompts[i], &plen[i], 1, &o[i], NULL, NULL, want[i],
                                        &want_n[i], NULL));
    }
    batch_log l;
    memset(&l, 0, sizeof l);
    l.end_after[4] = 5; /* the caller ends 4 after five tokens */
    const int join_at[NB] = {0, 0, 3, 5, 5, 9};
    int joined[NB] = {0}, ended[NB] = {0};
    qkv_lm_batch *b = NULL;
    CHECK_OK(qkv_lm_batch_create(lm, &b));
    if (!b) return;
    size_t max_size = 0;
    for (int step = 0; step < 200; step++) {
        for (int i = 0; i < NB; i++)
            if (!joined[i] && join_at[i] == step) {
                CHECK_OK(qkv_lm_batch_add(b, prompts[i], plen[i], &o[i], &l.handle[i]));
                joined[i] = 1;
            }
        if (step == 7) { /* 1 is cancelled mid-way; an unknown handle is NOT_FOUND */
            CHECK(qkv_lm_batch_cancel(b, 1000) == QKV_ERR_NOT_FOUND);
            CHECK_OK(qkv_lm_batch_cancel(b, l.handle[1]));
            ended[1] = 1;
        }
        if (qkv_lm_batch_size(b) > max_size) max_size = qkv_lm_batch_size(b);
        if (qkv_lm_batch_size(b) == 0 && step > 9) break;
        size_t out[NB], n_out = 9;
        CHECK_OK(qkv_lm_batch_step(rt, b, batch_on_token, &l, out, &n_out));
        for (size_t k = 0; k < n_out; k++)
            for (int i = 0; i < NB; i++)
                if (joined[i] && l.handle[i] == out[k]) ended[i]++;
    }
    CHECK(max_size >= 4);
    for (int i = 0; i < NB; i++) {
        CHECK_MSG(ended[i] == 1, "%s: sequence %d ended %d times", name, i, ended[i]);
        int64_t n = i == 1 ? l.n[i] : i == 4 ? 5 : want_n[i]; /* 1 was cancelled after 7 */
        if (i == 1) CHECK(l.n[1] == 7);
        CHECK_MSG(l.n[i] == n && memcmp(l.tok[i], want[i], (size_t)n * sizeof(int32_t)) == 0,
                  "%s: sequence %d: %lld tokens, want %lld, or different ones", name, i,
                  (long long)l.n[i], (long long)n);
    }
    /* the stop token ended it (at its first draw) */
    CHECK(want_n[2] >= 1 && want_n[2] <= 6 && want[2][want_n[2] - 1] == stop);
    qkv_lm_batch_free(b);
    qkv_runtime_free(rt);
    qkv_lm_free(lm);
}

/* A batch's adds and steps with the Nth allocation failing, for every N: NOMEM, no leak, and a
 * failed step leaves the batch able to go on. */
static void batch_nomem(void) {
    qkv_lm *lm = NULL;
    qkv_runtime *rt = NULL;
    CHECK_OK(qkv_lm_load(FIXTURES "llama_tiny", &lm));
    CHECK_OK(qkv_runtime_create(1, &rt));
    if (!lm || !rt) return;
    int32_t ids[6] = {3, 4, 5, 6, 7, 8}, want[4], got[4];
    int64_t len = 6, n_want = 0;
    qkv_sampling o = sampled_opts(1);
    o.max_new_tokens = 4;
    CHECK_OK(qkv_lm_generate_tokens(rt, lm, ids, &len, 1, &o, NULL, NULL, want, &n_want, NULL));
    qkv_allocator a = {fail_alloc, count_free, NULL};
    int n = 0;
    for (fail_at = 0;; fail_at++) {
        n_alloc = n_free = 0;
        qkv_set_allocator(&a);
        qkv_lm_batch *b = NULL;
        size_t h[2];
        qkv_status s = qkv_lm_batch_create(lm, &b);
        if (s == QKV_OK) s = qkv_lm_batch_add(b, ids, 6, &o, &h[0]);
        if (s == QKV_OK) s = qkv_lm_batch_add(b, ids, 4, &o, &h[1]);
        qkv_status first_fail = QKV_OK;
        for (int step = 0; s == QKV_OK && qkv_lm_batch_size(b) > 0 && step < 20; step++) {
            qkv_status t = qkv_lm_batch_step(rt, b, NULL, NULL, NULL, NULL);
            if (t != QKV_OK && first_fail == QKV_OK) first_fail = t; /* the next step goes on */
        }
        qkv_lm_batch_free(b);
        qkv_set_allocator(NULL);
        if (s == QKV_OK && first_fail == QKV_OK) break;
        n++;
        qkv_status bad = s != QKV_OK ? s : first_fail;
        CHECK_MSG(bad == QKV_ERR_NOMEM, "fail_at %d: status %d (%s)", n, (int)bad,
                  qkv_last_error());
        CHECK_MSG(n_alloc - 1 == n_free, "failure %d: %d allocations, %d frees", n, n_alloc,
                  n_free);
        if (n > 100000) break;
    }
    /* after a failed step, the same tokens: retry through a step that fails once */
    qkv_lm_batch *b = NULL;
    size_t h;
    CHECK_OK(qkv_lm_batch_create(lm, &b));
    CHECK_OK(qkv_lm_batch_add(b, ids, len, &o, &h));
    batch_log l;
    memset(&l, 0, sizeof l);
    l.handle[0] = h;
    for (int i = 1; i < NB; i++) l.handle[i] = (size_t)-1;
    n_alloc = n_free = 0;
    fail_at = 0;
    qkv_set_allocator(&a);
    qkv_status s = qkv_lm_batch_step(rt, b, batch_on_token, &l, NULL, NULL);
    qkv_set_allocator(NULL);
    CHECK(s == QKV_ERR_NOMEM && l.n[0] == 0);
    while (qkv_lm_batch_size(b) > 0)
        CHECK_OK(qkv_lm_batch_step(rt, b, batch_on_token, &l, NULL, NULL));
    memcpy(got, l.tok[0], sizeof got);
    CHECK(l.n[0] == n_want && memcmp(got, want, sizeof got) == 0);
    qkv_lm_batch_free(b);
    printf("batch: %d allocation failures injected, each NOMEM without a leak\n", n);
    qkv_runtime_free(rt);
    qkv_lm_free(lm);
}

int main(void) {
    test_use_arch_from_env();
    for (size_t i = 0; i < sizeof MODELS / sizeof *MODELS; i++) generation(MODELS[i]);
    processors();
    control();
    generate_nomem();
    for (size_t i = 0; i < sizeof MODELS / sizeof *MODELS; i++) batch_decode(MODELS[i]);
    batch_nomem();
    return test_finish("lm_generate");
}
