/* s2s_check.h — the decoding check every encoder-decoder test runs (test_marian.c, test_t5.c)
 * on a fixture written by its tools/gen_*_fixtures.py: expect.NAME.safetensors with src_ids,
 * src_lens and, per decoding setup, NAME.ids / NAME.lens / NAME.scores from generate(). */
#ifndef QKV_TESTS_S2S_CHECK_H
#define QKV_TESTS_S2S_CHECK_H

#include "fault_alloc.h"
#include "fixture_util.h"
#include "qkv.h"
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* a decoding setup, as SETUPS in the generating script */
typedef struct {
    const char *name;
    int64_t beams, max_new, ngram;
    float lp;
    qkv_early_stopping es;
    int renorm;
} s2s_setup;

static const qkv_st_tensor *s2s_tensor(qkv_safetensors *st, const char *name) {
    const qkv_st_tensor *t = qkv_safetensors_find(st, name);
    if (!t) {
        fprintf(stderr, "fixture lacks %s\n", name);
        exit(1);
    }
    return t;
}

static qkv_translate_options s2s_options(const qkv_seq2seq *m, const s2s_setup *u) {
    qkv_translate_options o;
    qkv_seq2seq_default_options(m, &o);
    o.num_beams = u->beams;
    o.max_new_tokens = u->max_new;
    o.no_repeat_ngram_size = u->ngram;
    o.length_penalty = u->lp;
    o.early_stopping = u->es;
    o.renormalize_logits = u->renorm;
    return o;
}

/* qkv_seq2seq_generate on the fixture's batch for every setup: ids identical to transformers'
 * generate(), beam scores within 1e-4 of sequences_scores; 2 threads give the same ids; each
 * sentence alone gives what it got in the batch. */
static void s2s_check_generate(const char *fix, const char *name, const s2s_setup *setups,
                               size_t n_setups, qkv_runtime *rt1, qkv_runtime *rt2) {
    char dir[512], path[512];
    snprintf(dir, sizeof dir, "%s%s", fix, name);
    snprintf(path, sizeof path, "%sexpect.%s.safetensors", fix, name);
    qkv_safetensors *st = fix_open(path);
    qkv_seq2seq *m = NULL;
    CHECK_OK(qkv_seq2seq_load(dir, &m));
    if (!m) return;
    const qkv_st_tensor *tl = s2s_tensor(st, "src_lens");
    const int64_t n = tl->shape[0], *lens = tl->data;
    const int32_t *src = fix_need(st, "src_ids");
    int same = 0, total = 0;
    for (size_t k = 0; k < n_setups; k++) {
        const s2s_setup *u = &setups[k];
        qkv_translate_options o = s2s_options(m, u);
        const int64_t cap = qkv_seq2seq_max_output(m, &o);
        CHECK(cap > 0);
        int32_t *out = calloc((size_t)(n * cap), sizeof *out);
        int32_t *out2 = calloc((size_t)(n * cap), sizeof *out2);
        int64_t *olen = calloc((size_t)n, sizeof *olen), *olen2 = calloc((size_t)n, sizeof *olen2);
        float *sc = calloc((size_t)n, sizeof *sc), *sc2 = calloc((size_t)n, sizeof *sc2);
        CHECK_OK(qkv_seq2seq_generate(rt1, m, src, lens, (size_t)n, &o, out, olen, sc));
        char key[128];
        snprintf(key, sizeof key, "%s.lens", u->name);
        const int64_t *wlen = s2s_tensor(st, key)->data;
        snprintf(key, sizeof key, "%s.ids", u->name);
        const int32_t *wids = s2s_tensor(st, key)->data;
        snprintf(key, sizeof key, "%s.scores", u->name);
        const qkv_st_tensor *ws = qkv_safetensors_find(st, key);
        for (int64_t s = 0, o2 = 0; s < n; o2 += wlen[s], s++) {
            int eq = olen[s] == wlen[s] &&
                     memcmp(out + s * cap, wids + o2, sizeof(int32_t) * (size_t)wlen[s]) == 0;
            same += eq, total++;
            CHECK_MSG(eq, "%s %s sentence %lld: %lld tokens, transformers %lld (first %d vs %d)",
                      name, u->name, (long long)s, (long long)olen[s], (long long)wlen[s],
                      olen[s] ? out[s * cap] : -1, wlen[s] ? wids[o2] : -1);
            if (ws) CHECK_NEAR(sc[s], ((const float *)ws->data)[s], 0, 1e-4);
        }
        /* 2 threads: the same ids */
        CHECK_OK(qkv_seq2seq_generate(rt2, m, src, lens, (size_t)n, &o, out2, olen2, sc2));
        CHECK(memcmp(olen, olen2, sizeof(int64_t) * (size_t)n) == 0);
        CHECK(memcmp(out, out2, sizeof(int32_t) * (size_t)(n * cap)) == 0);
        /* each sentence alone: what it got in the batch */
        for (int64_t s = 0, o2 = 0; s < n; o2 += lens[s], s++) {
            int64_t l1 = 0;
            memset(out2, 0, sizeof(int32_t) * (size_t)cap);
            CHECK_OK(qkv_seq2seq_generate(rt1, m, src + o2, lens + s, 1, &o, out2, &l1, sc2));
            CHECK_MSG(
                l1 == olen[s] && memcmp(out2, out + s * cap, sizeof(int32_t) * (size_t)l1) == 0,
                "%s %s: sentence %lld alone differs from the batch", name, u->name, (long long)s);
        }
        free(out), free(out2), free(olen), free(olen2), free(sc), free(sc2);
    }
    printf("%s: %d of %d generated sentences identical to transformers\n", name, same, total);
    qkv_seq2seq_free(m);
    qkv_safetensors_close(st);
}

/* Every allocation of a generate call (one source, src [len], options o) failed in turn:
 * NOMEM, nothing leaks; then it succeeds. */
static void s2s_check_nomem(const qkv_seq2seq *m, const int32_t *src, int64_t len,
                            const qkv_translate_options *o) {
    int32_t out[256];
    int64_t olen;
    int fails = 0;
    qkv_allocator a = {failing_alloc, counting_free, NULL};
    if (qkv_seq2seq_max_output(m, o) > 256) return;
    for (fail_at = 0;; fail_at++) {
        n_attempt = n_alloc = n_free = 0;
        qkv_set_allocator(&a);
        /* a runtime of its own, so that its scratch block is freed inside the count too */
        qkv_runtime *rt = NULL;
        qkv_status s = qkv_runtime_create(1, &rt);
        if (s == QKV_OK) s = qkv_seq2seq_generate(rt, m, src, &len, 1, o, out, &olen, NULL);
        qkv_runtime_free(rt);
        qkv_set_allocator(NULL);
        CHECK_MSG(n_alloc == n_free, "fail_at %ld: %ld allocations, %ld frees", fail_at, n_alloc,
                  n_free);
        if (s == QKV_OK) break;
        CHECK_MSG(s == QKV_ERR_NOMEM, "fail_at %ld: status %d", fail_at, (int)s);
        fails++;
        if (fail_at > 500) break;
    }
    fail_at = -1;
    printf("allocation failures injected: %d\n", fails);
    CHECK(fails > 5);
}

#endif
