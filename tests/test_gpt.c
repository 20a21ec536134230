/* test_gpt.c — the causal decoders (GPT-2, Llama tied, Llama untied stored as BF16) on tiny
 * random models against Hugging Face (tests/fixtures/models/<name>/golden.safetensors, from
 * tools/gen_gpt_golden.py): logits of a batch of prompts of different lengths (1..100 tokens,
 * one packed call) within 1e-4 relative; KV-cache decoding (prefill, then one token per step,
 * and a chunked prefill) equal to full recomputation; config and weight errors refused by
 * name; every allocation of a load failed in turn. Runs per QKV_ARCH. */
#include "models/gpt.h"
#include "qkv.h"
#include "test.h"
#include "test_arch.h"

#include <sys/stat.h>
#include <unistd.h>

#define FIXTURES QKV_SOURCE_DIR "/tests/fixtures/models/"

static const char *const MODELS[] = {"gpt2_tiny", "llama_tiny", "llama_tiny_untied"};

static const qkv_st_tensor *need(qkv_safetensors *st, const char *name) {
    const qkv_st_tensor *t = qkv_safetensors_find(st, name);
    if (!t) {
        fprintf(stderr, "fixture lacks %s\n", name);
        exit(1);
    }
    return t;
}

/* max |a - b| / max |b| over n values */
static double rel_err(const float *a, const float *b, int64_t n) {
    double worst = 0, scale = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > worst || d != d) worst = d != d ? INFINITY : d;
        if (fabs(b[i]) > scale) scale = fabs(b[i]);
    }
    return worst / (scale > 0 ? scale : 1);
}

/* Logits of the golden prompts (packed, one call) with 1 and 2 threads: within 1e-4 of HF's
 * float64 logits relative to the largest; identical across thread counts. */
static void golden_logits(const char *name) {
    char dir[512], path[600];
    snprintf(dir, sizeof dir, FIXTURES "%s", name);
    snprintf(path, sizeof path, "%s/golden.safetensors", dir);
    qkv_lm *lm = NULL;
    CHECK_OK(qkv_lm_load(dir, &lm));
    qkv_safetensors *g = NULL;
    CHECK_OK(qkv_safetensors_open(path, &g));
    if (!lm || !g) return;
    const qkv_st_tensor *ids = need(g, "ids"), *lens = need(g, "lens"), *want = need(g, "logits");
    const int64_t N = ids->shape[0], S = lens->shape[0], V = qkv_lm_vocab_size(lm);
    CHECK_EQ_INT(want->shape[1], V);
    int64_t lv[16];
    memcpy(lv, lens->data, sizeof(int64_t) * (size_t)S);
    float *got[2];
    for (int threads = 1; threads <= 2; threads++) {
        qkv_runtime *rt = NULL;
        CHECK_OK(qkv_runtime_create(threads, &rt));
        got[threads - 1] = malloc(sizeof(float) * (size_t)(N * V));
        CHECK_OK(qkv_lm_logits(rt, lm, ids->data, lv, (size_t)S, got[threads - 1]));
        double e = rel_err(got[threads - 1], want->data, N * V);
        printf("%s: logits of %lld prompts (%lld tokens), %d thread(s): max error %.3g relative "
               "to max |logit|\n",
               name, (long long)S, (long long)N, threads, e);
        CHECK_MSG(e <= 1e-4, "%s: logits error %.3g", name, e);
        qkv_runtime_free(rt);
    }
    CHECK(memcmp(got[0], got[1], sizeof(float) * (size_t)(N * V)) == 0);
    free(got[0]);
    free(got[1]);
    qkv_safetensors_close(g);
    qkv_lm_free(lm);
}

/* Prefill T0 tokens, then feed one token per step through the cache (and, separately, the
 * rest as one chunk): the logits of each step equal the full recomputation's at that position. */
static void cache_equals_recompute(const char *name) {
    char dir[512];
    snprintf(dir, sizeof dir, FIXTURES "%s", name);
    qkv_gpt *m = NULL;
    CHECK_OK(qkv__gpt_load(dir, QKV_DTYPE_F32, &m));
    if (!m) return;
    const qkv_gpt_config *c = &m->cfg;
    const int64_t T = 40, T0 = 9, V = c->vocab_size;
    int32_t ids[40];
    for (int64_t t = 0; t < T; t++) ids[t] = (int32_t)((t * 37 + 11) % V);
    float *full = malloc(sizeof(float) * (size_t)(T * V)),
          *step = malloc(sizeof(float) * (size_t)(T * V));
    qkv_kv_cache kv;
    qkv_kv_cache *kvp = &kv;
    CHECK_OK(qkv__kv_cache_init(&kv, c->num_layers, T, c->num_kv_heads, c->head_dim));
    int64_t len = T;
    CHECK_OK(qkv__gpt_forward(NULL, m, &kvp, ids, &len, 1, 1, full));
    CHECK_EQ_INT(kv.len, T);

    /* prefill T0 (last-position logits only), then T - T0 decode steps */
    kv.len = 0;
    len = T0;
    CHECK_OK(qkv__gpt_forward(NULL, m, &kvp, ids, &len, 1, 0, step + (T0 - 1) * V));
    for (int64_t t = T0; t < T; t++) {
        len = 1;
        CHECK_OK(qkv__gpt_forward(NULL, m, &kvp, ids + t, &len, 1, 0, step + t * V));
    }
    double e = rel_err(step + (T0 - 1) * V, full + (T0 - 1) * V, (T - T0 + 1) * V);
    printf("%s: KV-cache decode vs full recomputation over %lld steps: max error %.3g\n", name,
           (long long)(T - T0), e);
    CHECK(e <= 2e-6);

    /* chunked prefill: two chunks, all logits */
    kv.len = 0;
    len = 17;
    CHECK_OK(qkv__gpt_forward(NULL, m, &kvp, ids, &len, 1, 1, step));
    len = T - 17;
    CHECK_OK(qkv__gpt_forward(NULL, m, &kvp, ids + 17, &len, 1, 1, step + 17 * V));
    e = rel_err(step, full, T * V);
    printf("%s: chunked prefill (17 + 23) vs one pass: max error %.3g\n", name, e);
    CHECK(e <= 2e-6);

    /* the cache is full: one more token is refused, the cache is left as it was */
    len = 1;
    CHECK_STATUS(qkv__gpt_forward(NULL, m, &kvp, ids, &len, 1, 0, step), QKV_ERR_INVALID_ARG);
    CHECK_EQ_INT(kv.len, T);
    int32_t bad = (int32_t)V;
    kv.len = 0;
    CHECK_STATUS(qkv__gpt_forward(NULL, m, &kvp, &bad, &len, 1, 0, step), QKV_ERR_INVALID_ARG);
    CHECK(strstr(qkv_last_error(), "vocabulary") != NULL);
    qkv__kv_cache_release(&kv);
    free(full);
    free(step);
    qkv__gpt_free(m);
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

#define LLAMA_CFG(extra)                                                                           \
    "{\"model_type\":\"llama\",\"vocab_size\":10,\"hidden_size\":8,\"num_hidden_layers\":1,"       \
    "\"num_attention_heads\":2,\"num_key_value_heads\":1,\"intermediate_size\":16" extra "}"

static void config_errors(void) {
    char dir[] = "/tmp/qkv_gpt_cfg_XXXXXX";
    if (!mkdtemp(dir)) return;
    char path[256];
    snprintf(path, sizeof path, "%s/config.json", dir);
    qkv_gpt_config c;
    static const struct {
        const char *json;
        qkv_status want;
        const char *field;
    } cases[] = {
        {"{\"model_type\":\"t5\"}", QKV_ERR_UNSUPPORTED, "model_type"},
        {"{\"vocab_size\":3}", QKV_ERR_FORMAT, "model_type"},
        {LLAMA_CFG(",\"rope_scaling\":{\"rope_type\":\"linear\",\"factor\":2.0}"),
         QKV_ERR_UNSUPPORTED, "rope_scaling"},
        {LLAMA_CFG(",\"rope_parameters\":{\"rope_type\":\"yarn\",\"rope_theta\":1e4}"),
         QKV_ERR_UNSUPPORTED, "rope_type"},
        {LLAMA_CFG(",\"attention_bias\":true"), QKV_ERR_UNSUPPORTED, "attention_bias"},
        {LLAMA_CFG(",\"mlp_bias\":true"), QKV_ERR_UNSUPPORTED, "mlp_bias"},
        {LLAMA_CFG(",\"hidden_act\":\"gelu\""), QKV_ERR_UNSUPPORTED, "hidden_act"},
        {LLAMA_CFG(",\"pretraining_tp\":2"), QKV_ERR_UNSUPPORTED, "pretraining_tp"},
        {"{\"model_type\":\"llama\",\"vocab_size\":10,\"hidden_size\":8,"
         "\"num_hidden_layers\":1,\"num_attention_heads\":2,\"num_key_value_heads\":3,"
         "\"intermediate_size\":16}",
         QKV_ERR_FORMAT, "num_key_value_heads"},
        {"{\"model_type\":\"mistral\",\"vocab_size\":10,\"hidden_size\":8,"
         "\"num_hidden_layers\":1,\"num_attention_heads\":2,\"intermediate_size\":16,"
         "\"sliding_window\":4096}",
         QKV_ERR_UNSUPPORTED, "sliding_window"},
        {"{\"model_type\":\"llama\",\"vocab_size\":10,\"num_hidden_layers\":1,"
         "\"num_attention_heads\":2,\"intermediate_size\":16}",
         QKV_ERR_FORMAT, "hidden_size"},
        {"{\"model_type\":\"gpt2\",\"vocab_size\":10,\"n_embd\":8,\"n_layer\":1,\"n_head\":2,"
         "\"activation_function\":\"mish\"}",
         QKV_ERR_UNSUPPORTED, "activation_function"},
        {"{\"model_type\":\"gpt2\",\"vocab_size\":10,\"n_embd\":9,\"n_layer\":1,\"n_head\":2}",
         QKV_ERR_FORMAT, "n_head"},
        {"{\"model_type\":\"gpt2\",\"vocab_size\":10,\"n_embd\":8,\"n_layer\":1,\"n_head\":2,"
         "\"add_cross_attention\":true}",
         QKV_ERR_UNSUPPORTED, "add_cross_attention"},
        {"{not json", QKV_ERR_FORMAT, "line"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        write_file(path, cases[i].json);
        CHECK_STATUS(qkv__gpt_config_load(dir, &c), cases[i].want);
        CHECK_MSG(strstr(qkv_last_error(), cases[i].field) != NULL, "case %zu: '%s' lacks '%s'", i,
                  qkv_last_error(), cases[i].field);
    }
    write_file(path, LLAMA_CFG(",\"rope_theta\":500000.0,\"eos_token_id\":[7,8]"));
    CHECK_OK(qkv__gpt_config_load(dir, &c));
    CHECK(c.rope_theta == 500000.0 && c.eos_token_id == 7 && c.head_dim == 4 && !c.tied);

    /* a valid config with weights that do not match it: refused naming the tensor */
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    float w[10 * 8] = {0};
    int64_t shape[2] = {10, 7};
    qkv_st_write_tensor t = {"model.embed_tokens.weight", QKV_DTYPE_F32, 2, shape, w};
    CHECK_OK(qkv_safetensors_write(path, &t, 1, NULL, NULL, 0));
    qkv_gpt *m = NULL;
    CHECK_STATUS(qkv__gpt_load(dir, QKV_DTYPE_F32, &m), QKV_ERR_FORMAT);
    CHECK(strstr(qkv_last_error(), "model.embed_tokens.weight") != NULL &&
          strstr(qkv_last_error(), "[10, 8]") != NULL);
    shape[1] = 8;
    CHECK_OK(qkv_safetensors_write(path, &t, 1, NULL, NULL, 0));
    CHECK_STATUS(qkv__gpt_load(dir, QKV_DTYPE_F32, &m), QKV_ERR_FORMAT);
    CHECK(strstr(qkv_last_error(), "model.layers.0.self_attn.q_proj.weight") !=
          NULL); /* the first after it */
    t.dtype = QKV_DTYPE_I32;
    CHECK_OK(qkv_safetensors_write(path, &t, 1, NULL, NULL, 0));
    CHECK_STATUS(qkv__gpt_load(dir, QKV_DTYPE_F32, &m), QKV_ERR_UNSUPPORTED);
    CHECK(strstr(qkv_last_error(), "I32") != NULL);
    CHECK(m == NULL);
    remove(path);
    snprintf(path, sizeof path, "%s/config.json", dir);
    remove(path);
    CHECK_STATUS(qkv__gpt_config_load(dir, &c), QKV_ERR_IO);
    rmdir(dir);
}

/* An untied GPT-2 needs lm_head.weight; the untied Llama fixture without it is refused. */
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

/* qkv_lm_load (BF16: conversions allocate) with the Nth allocation failing, for every N. */
static void load_nomem(void) {
    qkv_allocator a = {fail_alloc, count_free, NULL};
    int n = 0;
    for (fail_at = 0;; fail_at++) {
        n_alloc = n_free = 0;
        qkv_set_allocator(&a);
        qkv_lm *lm = NULL;
        qkv_status s = qkv_lm_load(FIXTURES "llama_tiny_untied", &lm);
        qkv_lm_free(lm);
        qkv_set_allocator(NULL);
        if (s == QKV_OK) break;
        n++;
        CHECK_MSG(s == QKV_ERR_NOMEM, "fail_at %d: status %d (%s)", fail_at, (int)s,
                  qkv_last_error());
        CHECK_MSG(n_alloc - 1 == n_free, "fail_at %d: %d allocations, %d frees", fail_at, n_alloc,
                  n_free);
        if (fail_at > 100000) break;
    }
    printf("lm load: %d allocation failures injected, each NOMEM without a leak\n", n);
}

/* The load fuses q, k, v (and Llama's gate, up) into one product each; qkv__gpt_unfuse (what a
 * LoRA adapter needs) packs them apart again: the logits are the same bits either way (each
 * output column is summed as in its own product), for every dtype's kernels. */
static void fused_equals_separate(const char *name, qkv_dtype dtype) {
    char dir[512];
    snprintf(dir, sizeof dir, FIXTURES "%s", name);
    qkv_gpt *m = NULL;
    CHECK_OK(qkv__gpt_load(dir, dtype, &m));
    if (!m) return;
    const qkv_gpt_config *c = &m->cfg;
    const int64_t T = 23, V = c->vocab_size;
    int32_t ids[23];
    for (int64_t t = 0; t < T; t++) ids[t] = (int32_t)((t * 53 + 5) % V);
    float *a = malloc(sizeof(float) * (size_t)(T * V)),
          *b = malloc(sizeof(float) * (size_t)(T * V));
    qkv_kv_cache kv;
    qkv_kv_cache *kvp = &kv;
    CHECK_OK(qkv__kv_cache_init(&kv, c->num_layers, T, c->num_kv_heads, c->head_dim));
    CHECK(m->layers[0].blk.qkv.C == c->hidden_size && m->layers[0].blk.q.C == 0);
    CHECK((c->arch == QKV_GPT_ARCH_LLAMA) == (m->layers[0].blk.gate_up.C != 0));
    int64_t len = T;
    CHECK_OK(qkv__gpt_forward(NULL, m, &kvp, ids, &len, 1, 1, a));
    CHECK_OK(qkv__gpt_unfuse(m));
    CHECK(m->layers[0].blk.qkv.C == 0 && m->layers[0].blk.gate_up.C == 0);
    CHECK(m->layers[0].blk.q.C == c->hidden_size);
    printf("%s (%s): fused and separate q/k/v%s products compared on %lld tokens\n", name,
           qkv_dtype_name(dtype), c->arch == QKV_GPT_ARCH_LLAMA ? " and gate/up" : "",
           (long long)T);
    kv.len = 0;
    CHECK_OK(qkv__gpt_forward(NULL, m, &kvp, ids, &len, 1, 1, b));
    CHECK_MSG(memcmp(a, b, sizeof(float) * (size_t)(T * V)) == 0,
              "%s (%s): fused q/k/v (gate/up) logits != separate products", name,
              qkv_dtype_name(dtype));
    CHECK_OK(qkv__gpt_unfuse(m)); /* a second time: nothing left to do */
    qkv__kv_cache_release(&kv);
    free(a), free(b);
    qkv__gpt_free(m);
}

int main(void) {
    test_use_arch_from_env();
    config_errors();
    for (size_t i = 0; i < sizeof MODELS / sizeof *MODELS; i++) {
        fused_equals_separate(MODELS[i], QKV_DTYPE_F32);
        fused_equals_separate(MODELS[i], QKV_DTYPE_BF16);
    }
    for (size_t i = 0; i < sizeof MODELS / sizeof *MODELS; i++) {
        golden_logits(MODELS[i]);
        cache_equals_recompute(MODELS[i]);
    }
    qkv_gpt *m = NULL;
    CHECK_OK(qkv__gpt_load(FIXTURES "gpt2_tiny", QKV_DTYPE_F32, &m));
    if (m) {
        CHECK_EQ_INT(m->cfg.arch, QKV_GPT_ARCH_GPT2);
        CHECK_EQ_INT(m->cfg.act, QKV_ACT_GELU_TANH);
        CHECK(m->cfg.tied && m->lm_head == m->wte && m->owned.n == 0); /* F32: zero copy */
        CHECK_EQ_INT(m->cfg.eos_token_id, 1);
    }
    qkv__gpt_free(m);
    CHECK_OK(qkv__gpt_load(FIXTURES "llama_tiny_untied", QKV_DTYPE_F32, &m));
    if (m) {
        CHECK_EQ_INT(m->cfg.num_kv_heads, 2);
        CHECK(!m->cfg.tied && m->lm_head != m->wte && m->owned.n > 0); /* BF16: converted */
    }
    qkv__gpt_free(m);
    load_nomem();
    return test_finish("gpt");
}
