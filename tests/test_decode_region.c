/* test_decode_region.c — a decode step in one parallel region (gpt.c's decode_region, issue 18)
 * against the layer-by-layer path (QKV_DECODE_REGION=0), once per QKV_ARCH: random GPT-2 and
 * Llama models written here, wide enough (C 384 / 320, vocabulary 640) that their products are
 * split over two threads (the tiny fixtures' products run on one), loaded in f32, bf16, f16 and
 * int8, run with 1 and 2 threads: prompts, then greedy decode steps of one sequence, of three
 * (each one's attention split over the team as its own call splits it: heads, and past 64
 * cached tokens key ranges) and of five (the sequences' attentions split over the team as
 * qkv__each splits them), with short caches and with up to 200 cached tokens; every step's
 * logits must be the same bits and the tokens equal. With 2 threads
 * the region must be taken: one pool job per step and its barriers, where the old path forks a
 * job per product. */
#include "core/runtime.h"
#include "models/gpt.h"
#include "models/kv_cache.h"
#include "models/params.h"
#include "qkv.h"
#include "test.h"
#include "test_arch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define STEPS 6
#define MAXSEQ 5

static uint64_t rng = 88172645463325252ull;
static float uniform(float a) { /* xorshift64: uniform in [-a, a) */
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return a * (2.0f * (float)((rng >> 40) * (1.0 / 16777216.0)) - 1.0f);
}

/* A random model of the table's architecture (dims d, L layers) into dir. */
static void write_model(const char *dir, const char *config, const qkv__param_table *tab,
                        const qkv__dims *d, int64_t L, int untied) {
    char path[600], name[256];
    mkdir(dir, 0700);
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f) return;
    fputs(config, f);
    fclose(f);
    enum { MAXT = 64 };
    qkv_st_write_tensor w[MAXT];
    char *names[MAXT];
    float *bufs[MAXT];
    int64_t shapes[MAXT][2];
    size_t n = 0;
    for (int64_t l = -1; l <= L + 1; l++) {
        const qkv__param_spec *rows = l < 0 ? tab->pre : l == L ? tab->post : tab->head;
        int nr = l < 0 ? tab->n_pre : l == L ? tab->n_post : tab->n_head;
        if (l >= 0 && l < L) rows = tab->layer, nr = tab->n_layer;
        for (int i = 0; i < nr && n < MAXT; i++) {
            const qkv__param_spec *r = &rows[i];
            if (r->untied_only && !untied) continue;
            CHECK_OK(qkv__param_name(name, sizeof name, "", r, l));
            int64_t d0 = qkv__param_dim(r->d0, d), d1 = qkv__param_dim(r->d1, d);
            float *b = malloc(sizeof(float) * (size_t)(d0 * d1));
            for (int64_t k = 0; k < d0 * d1; k++)
                b[k] = r->init == QKV__INIT_ONE ? 1.0f + uniform(0.2f) : uniform(0.08f);
            names[n] = strdup(name);
            bufs[n] = b;
            shapes[n][0] = d0, shapes[n][1] = d1;
            w[n] = (qkv_st_write_tensor){names[n], QKV_DTYPE_F32, r->d1 == QKV__DIM_NONE ? 1 : 2,
                                         shapes[n], b};
            n++;
        }
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    CHECK_OK(qkv_safetensors_write(path, w, n, NULL, NULL, 0));
    for (size_t i = 0; i < n; i++) free(names[i]), free(bufs[i]);
}

typedef struct {
    uint64_t jobs, barriers; /* over the decode steps */
} syncs;

/* The prompts of MAXSEQ sequences (lengths plen[s]) into kv (capacity plen + STEPS) and their
 * last logits [MAXSEQ, V] into first. */
static void prefill(qkv_runtime *rt, const qkv_gpt *m, const int64_t *plen, qkv_kv_cache *kv,
                    float *first) {
    const int64_t V = m->cfg.vocab_size;
    qkv_kv_cache *kvp[MAXSEQ];
    int64_t lens[MAXSEQ], total = 0;
    for (int s = 0; s < MAXSEQ; s++) total += plen[s];
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)total);
    for (int s = 0, n = 0; s < MAXSEQ; s++) {
        CHECK_OK(qkv__kv_cache_init(&kv[s], m->cfg.num_layers, plen[s] + STEPS, m->cfg.num_kv_heads,
                                    m->cfg.head_dim));
        kvp[s] = &kv[s];
        lens[s] = plen[s];
        for (int64_t t = 0; t < lens[s]; t++, n++) ids[n] = (int32_t)((n * 37 + 11 * s + 5) % V);
    }
    CHECK_OK(qkv__gpt_forward(rt, m, kvp, ids, lens, MAXSEQ, 0, first));
    free(ids);
}

/* STEPS greedy steps of one token each for the first n_seq sequences, from copies of the
 * prefilled caches src and their logits first; every step's logits [STEPS, n_seq, V] into out. */
static syncs decode(qkv_runtime *rt, const qkv_gpt *m, int n_seq, const qkv_kv_cache *src,
                    const float *first, float *out) {
    const int64_t V = m->cfg.vocab_size;
    qkv_kv_cache kv[MAXSEQ], *kvp[MAXSEQ];
    int32_t next[MAXSEQ];
    int64_t lens[MAXSEQ];
    float *logits = malloc(sizeof(float) * (size_t)(MAXSEQ * V));
    memcpy(logits, first, sizeof(float) * (size_t)(MAXSEQ * V));
    for (int s = 0; s < n_seq; s++) {
        CHECK_OK(qkv__kv_cache_init(&kv[s], src[s].n_layers, src[s].cap, src[s].n_kv_heads,
                                    src[s].head_dim));
        qkv__kv_cache_copy(&kv[s], &src[s]);
        kvp[s] = &kv[s];
    }
    syncs y = {qkv__pool_job_count(), qkv__team_barrier_count()};
    for (int step = 0; step < STEPS; step++) {
        for (int s = 0; s < n_seq; s++) { /* greedy: the argmax of the last logits */
            const float *row = logits + s * V;
            int32_t best = 0;
            for (int64_t v = 1; v < V; v++)
                if (row[v] > row[best]) best = (int32_t)v;
            next[s] = best;
            lens[s] = 1;
        }
        CHECK_OK(qkv__gpt_forward(rt, m, kvp, next, lens, n_seq, 0, logits));
        memcpy(out + (size_t)step * (size_t)(n_seq * V), logits,
               sizeof(float) * (size_t)(n_seq * V));
    }
    y.jobs = qkv__pool_job_count() - y.jobs;
    y.barriers = qkv__team_barrier_count() - y.barriers;
    for (int s = 0; s < n_seq; s++) qkv__kv_cache_release(&kv[s]);
    free(logits);
    return y;
}

/* Short caches (prompts of 3 + 2s tokens) and long ones (up to 200 cached tokens: the
 * attention's keys split into ranges, see attention/flash_fwd.c). */
static const int64_t PROMPTS[2][MAXSEQ] = {{3, 5, 7, 9, 11}, {200, 131, 70, 3, 5}};

static void compare(const char *dir, const char *what, qkv_dtype dtype) {
    qkv_gpt *m = NULL;
    CHECK_OK(qkv__gpt_load(dir, dtype, &m));
    if (!m) return;
    const int64_t V = m->cfg.vocab_size;
    const size_t nv = (size_t)(STEPS * MAXSEQ * V);
    float *old = malloc(sizeof(float) * nv), *neu = malloc(sizeof(float) * nv);
    float *first = malloc(sizeof(float) * (size_t)(MAXSEQ * V));
    static const int seqs[] = {1, 3, 5};
    qkv_runtime *rts[2] = {NULL, NULL};
    CHECK_OK(qkv_runtime_create(1, &rts[0]));
    CHECK_OK(qkv_runtime_create(2, &rts[1]));
    for (int p = 0; p < 2; p++) {
        qkv_kv_cache kv[MAXSEQ];
        prefill(rts[1], m, PROMPTS[p], kv, first); /* one prefill for every decode below */
        for (int threads = 1; threads <= 2; threads++) {
            qkv_runtime *rt = rts[threads - 1];
            for (size_t i = 0; i < sizeof seqs / sizeof *seqs; i++) {
                const int ns = seqs[i];
                setenv("QKV_DECODE_REGION", "0", 1);
                syncs a = decode(rt, m, ns, kv, first, old);
                setenv("QKV_DECODE_REGION", "1", 1); /* the region (the default) */
                syncs b = decode(rt, m, ns, kv, first, neu);
                unsetenv("QKV_DECODE_REGION");
                const size_t k = (size_t)(STEPS * ns * V);
                CHECK_MSG(memcmp(old, neu, sizeof(float) * k) == 0,
                          "%s %s, %d threads, %d sequences, %lld cached tokens: region logits != "
                          "layer-by-layer",
                          what, qkv_dtype_name(dtype), threads, ns, (long long)PROMPTS[p][0]);
                printf("%s %s, %d thread(s), %d seq, %lld cached: %d steps bit-identical; per "
                       "step: old %.1f pool jobs, region %.1f pool jobs + %.1f barriers\n",
                       what, qkv_dtype_name(dtype), threads, ns, (long long)PROMPTS[p][0], STEPS,
                       (double)a.jobs / STEPS, (double)b.jobs / STEPS, (double)b.barriers / STEPS);
                CHECK_EQ_INT(a.barriers, 0);
                if (threads == 2) { /* the region was taken: one job a step */
                    CHECK_EQ_INT(b.jobs, STEPS);
                    CHECK(b.barriers >= (uint64_t)STEPS * 5 * (uint64_t)m->cfg.num_layers);
                    CHECK(a.jobs > b.jobs);
                }
            }
        }
        for (int s = 0; s < MAXSEQ; s++) qkv__kv_cache_release(&kv[s]);
    }
    qkv_runtime_free(rts[0]);
    qkv_runtime_free(rts[1]);
    free(old), free(neu), free(first);
    qkv__gpt_free(m);
}

static const char GPT2_CFG[] = "{\"model_type\": \"gpt2\", \"n_embd\": 384, \"n_head\": 6, "
                               "\"n_layer\": 2, \"n_positions\": 256, \"vocab_size\": 640, "
                               "\"eos_token_id\": 1}";
static const char LLAMA_CFG[] =
    "{\"model_type\": \"llama\", \"hidden_size\": 320, \"num_attention_heads\": 4, "
    "\"num_key_value_heads\": 2, \"head_dim\": 80, \"intermediate_size\": 704, "
    "\"num_hidden_layers\": 2, \"max_position_embeddings\": 256, \"vocab_size\": 640, "
    "\"tie_word_embeddings\": false}";

int main(void) {
    test_use_arch_from_env();
    char root[] = "/tmp/qkv_decode_region_XXXXXX", g[64], l[64];
    CHECK(mkdtemp(root) != NULL);
    snprintf(g, sizeof g, "%s/gpt2", root);
    snprintf(l, sizeof l, "%s/llama", root);
    const qkv__dims dg = {.V = 640, .P = 256, .C = 384, .F = 1536, .Q = 384, .K = 384};
    const qkv__dims dl = {.V = 640, .P = 256, .C = 320, .F = 704, .Q = 320, .K = 160};
    write_model(g, GPT2_CFG, &qkv__params_gpt2, &dg, 2, 0);
    write_model(l, LLAMA_CFG, &qkv__params_llama, &dl, 2, 1);
    static const qkv_dtype dts[] = {QKV_DTYPE_F32, QKV_DTYPE_BF16, QKV_DTYPE_F16, QKV_DTYPE_I8};
    for (size_t i = 0; i < sizeof dts / sizeof *dts; i++) {
        compare(g, "gpt2", dts[i]);
        compare(l, "llama", dts[i]);
    }
    const char *const dirs[] = {g, l};
    char path[600];
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/config.json", dirs[i]);
        unlink(path);
        snprintf(path, sizeof path, "%s/model.safetensors", dirs[i]);
        unlink(path);
        rmdir(dirs[i]);
    }
    rmdir(root);
    return test_finish("decode_region");
}
