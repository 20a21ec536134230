/* test_bert.c — the BERT encoder on the real all-MiniLM-L6-v2 weights against Hugging Face
 * (tests/fixtures/bert/minilm_golden.safetensors, from tools/gen_bert_golden.py): last hidden
 * states of 10 sentences (incl. an empty one and a 100+ token one) run as one packed batch, and
 * the sentence-transformers embeddings (mean pooling + L2 normalization). Runs per QKV_ARCH.
 * Skipped (77) when the model is not installed (scripts/fetch-model.sh installs it; the README's
 * test command runs that first). Also: config and weight errors are refused by name. */
#include "models/bert.h"
#include "nn/pooling.h"
#include "qkv.h"
#include "test.h"
#include "test_arch.h"

#include <sys/stat.h>
#include <unistd.h>

#define MODEL_DIR QKV_SOURCE_DIR "/models/all-MiniLM-L6-v2"

static const qkv_st_tensor *need(qkv_safetensors *st, const char *name) {
    const qkv_st_tensor *t = qkv_safetensors_find(st, name);
    if (!t) {
        fprintf(stderr, "fixture lacks %s\n", name);
        exit(1);
    }
    return t;
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static void config_errors(void) {
    char dir[] = "/tmp/qkv_bert_cfg_XXXXXX";
    if (!mkdtemp(dir)) return;
    char path[256];
    snprintf(path, sizeof path, "%s/config.json", dir);
    qkv_bert_config c;
    write_file(path, "{\"model_type\":\"bert\",\"vocab_size\":10,\"hidden_size\":8,"
                     "\"num_hidden_layers\":1,\"num_attention_heads\":2,\"intermediate_size\":16,"
                     "\"hidden_act\":\"mish\"}");
    CHECK_STATUS(qkv__bert_config_load(dir, &c), QKV_ERR_UNSUPPORTED);
    CHECK(strstr(qkv_last_error(), "hidden_act") != NULL);
    write_file(path, "{\"model_type\":\"bert\",\"vocab_size\":10,\"hidden_size\":8,"
                     "\"num_attention_heads\":2,\"intermediate_size\":16}");
    CHECK_STATUS(qkv__bert_config_load(dir, &c), QKV_ERR_FORMAT);
    CHECK(strstr(qkv_last_error(), "num_hidden_layers") != NULL);
    write_file(path, "{\"model_type\":\"gpt2\"}");
    CHECK_STATUS(qkv__bert_config_load(dir, &c), QKV_ERR_UNSUPPORTED);
    write_file(path, "{\"model_type\":\"bert\",\"vocab_size\":10,\"hidden_size\":9,"
                     "\"num_hidden_layers\":1,\"num_attention_heads\":2,\"intermediate_size\":16}");
    CHECK_STATUS(qkv__bert_config_load(dir, &c), QKV_ERR_FORMAT);
    write_file(path, "{not json");
    CHECK_STATUS(qkv__bert_config_load(dir, &c), QKV_ERR_FORMAT);
    write_file(path, "{\"model_type\":\"bert\",\"vocab_size\":10,\"hidden_size\":8,"
                     "\"num_hidden_layers\":1,\"num_attention_heads\":2,\"intermediate_size\":16,"
                     "\"position_embedding_type\":\"relative_key\"}");
    CHECK_STATUS(qkv__bert_config_load(dir, &c), QKV_ERR_UNSUPPORTED);
    CHECK(strstr(qkv_last_error(), "position_embedding_type") != NULL);
    /* a valid config with weights that do not match it: refused naming the tensor */
    write_file(path, "{\"model_type\":\"bert\",\"vocab_size\":10,\"hidden_size\":8,"
                     "\"num_hidden_layers\":1,\"num_attention_heads\":2,\"intermediate_size\":16}");
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    float w[10 * 8] = {0};
    int64_t shape[2] = {10, 7};
    qkv_st_write_tensor t = {"embeddings.word_embeddings.weight", QKV_DTYPE_F32, 2, shape, w};
    CHECK_OK(qkv_safetensors_write(path, &t, 1, NULL, NULL, 0));
    qkv_bert *m = NULL;
    CHECK_STATUS(qkv__bert_load(dir, &m), QKV_ERR_FORMAT);
    CHECK(strstr(qkv_last_error(), "embeddings.word_embeddings.weight") != NULL &&
          strstr(qkv_last_error(), "[10, 8]") != NULL);
    shape[1] = 8;
    CHECK_OK(qkv_safetensors_write(path, &t, 1, NULL, NULL, 0));
    CHECK_STATUS(qkv__bert_load(dir, &m), QKV_ERR_FORMAT);
    CHECK(strstr(qkv_last_error(), "position_embeddings") != NULL);
    CHECK(m == NULL);
    remove(path);
    snprintf(path, sizeof path, "%s/config.json", dir);
    remove(path);
    CHECK_STATUS(qkv__bert_config_load(dir, &c), QKV_ERR_IO);
    rmdir(dir);
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

/* qkv_model_load with the Nth allocation failing: NOMEM and nothing leaked. A full load makes
 * ~100k allocations (the tokenizer's vocabulary), so every N of the first 80 is tried (config,
 * weights, pipeline, the tokenizer's start) and then 60 spread over the rest, the last included. */
static void load_nomem(void) {
    qkv_allocator a = {fail_alloc, count_free, NULL};
    n_alloc = n_free = 0;
    fail_at = -1;
    qkv_set_allocator(&a);
    qkv_model *pm = NULL;
    CHECK_OK(qkv_model_load(MODEL_DIR, &pm));
    qkv_model_free(pm);
    qkv_set_allocator(NULL);
    int total = n_alloc, tried = 0;
    CHECK_EQ_INT(n_alloc, n_free);
    for (int k = 0; k < 140; k++) {
        fail_at = k < 80 ? k : 80 + (int)((long)(total - 81) * (k - 80) / 59);
        if (fail_at >= total) break;
        n_alloc = n_free = 0;
        qkv_set_allocator(&a);
        pm = NULL;
        qkv_status s = qkv_model_load(MODEL_DIR, &pm);
        qkv_model_free(pm);
        qkv_set_allocator(NULL);
        tried++;
        CHECK_MSG(s == QKV_ERR_NOMEM, "fail_at %d: status %d (%s)", fail_at, (int)s,
                  qkv_last_error());
        CHECK_MSG(n_alloc - 1 == n_free, "fail_at %d: %d allocations, %d frees", fail_at, n_alloc,
                  n_free);
    }
    printf("model load: %d allocations; %d of them failed in turn, each NOMEM without a leak\n",
           total, tried);
}

int main(void) {
    test_use_arch_from_env();
    config_errors();
    struct stat sb;
    if (stat(MODEL_DIR "/model.safetensors", &sb) != 0) {
        test_finish("bert (config part)");
        TEST_SKIP("model not installed at %s (run scripts/fetch-model.sh)", MODEL_DIR);
    }
    /* the sweep does not depend on the ISA: run it once */
    if (qkv_arch_active() == qkv_arch_best()) load_nomem();
    qkv_bert *m = NULL;
    CHECK_OK(qkv__bert_load(MODEL_DIR, &m));
    if (!m) return test_finish("bert");
    CHECK_EQ_INT(m->cfg.hidden_size, 384);
    CHECK_EQ_INT(m->cfg.num_layers, 6);
    CHECK_EQ_INT(m->cfg.act, QKV_ACT_GELU_ERF);

    qkv_safetensors *g = NULL;
    CHECK_OK(
        qkv_safetensors_open(QKV_SOURCE_DIR "/tests/fixtures/bert/minilm_golden.safetensors", &g));
    const qkv_st_tensor *ids = need(g, "ids"), *types = need(g, "type_ids"),
                        *lens = need(g, "lens");
    const qkv_st_tensor *hid = need(g, "hidden"), *emb = need(g, "embeddings");
    int64_t N = ids->shape[0], S = lens->shape[0], C = 384;
    const float *want_h = hid->data, *want_e = emb->data;
    float *h = malloc(sizeof(float) * (size_t)(N * C)),
          *e = malloc(sizeof(float) * (size_t)(S * C));
    int64_t lens_v[64];
    memcpy(lens_v, lens->data, sizeof(int64_t) * (size_t)S);

    for (int threads = 1; threads <= 2; threads++) {
        qkv_runtime *rt = NULL;
        CHECK_OK(qkv_runtime_create(threads, &rt));
        CHECK_OK(qkv__bert_forward(rt, m, ids->data, types->data, lens_v, S, h));
        double worst = 0;
        for (int64_t i = 0; i < N * C; i++) {
            double d = fabs((double)h[i] - want_h[i]);
            if (!(d <= worst)) worst = d;
        }
        printf("threads %d: hidden max abs error %.3g over %lld tokens\n", threads, worst,
               (long long)N);
        CHECK_MSG(worst < 2e-5, "hidden states differ from Hugging Face by %g", worst);
        qkv_nn_pool_forward(h, lens_v, S, C, QKV_POOL_MEAN, 1, e);
        double worst_e = 0, min_cos = 1;
        for (int64_t s = 0; s < S; s++) {
            double dot = 0, nw = 0;
            for (int64_t c = 0; c < C; c++) {
                double d = fabs((double)e[s * C + c] - want_e[s * C + c]);
                if (!(d <= worst_e)) worst_e = d;
                dot += (double)e[s * C + c] * want_e[s * C + c];
                nw += (double)want_e[s * C + c] * want_e[s * C + c];
            }
            double cosv = dot / sqrt(nw);
            if (cosv < min_cos) min_cos = cosv;
        }
        printf("threads %d: embeddings max abs error %.3g, min cosine %.9f\n", threads, worst_e,
               min_cos);
        CHECK(worst_e < 1e-5);
        CHECK(min_cos > 0.999999);
        qkv_runtime_free(rt);
    }
    /* one sequence alone equals the same sequence inside the batch */
    {
        float *h1 = malloc(sizeof(float) * (size_t)(lens_v[1] * C));
        const int32_t *id1 = (const int32_t *)ids->data + lens_v[0];
        CHECK_OK(qkv__bert_forward(NULL, m, id1, NULL, &lens_v[1], 1, h1));
        double worst = 0;
        for (int64_t i = 0; i < lens_v[1] * C; i++) {
            double d = fabs((double)h1[i] - h[lens_v[0] * C + i]);
            if (d > worst) worst = d;
        }
        CHECK_MSG(worst < 1e-5, "batched vs alone: %g", worst);
        free(h1);
    }
    /* bad input is refused, not run */
    int32_t bad[2] = {101, 40000};
    int64_t two = 2, big = 513;
    CHECK_STATUS(qkv__bert_forward(NULL, m, bad, NULL, &two, 1, h), QKV_ERR_INVALID_ARG);
    CHECK(strstr(qkv_last_error(), "40000") != NULL);
    CHECK_STATUS(qkv__bert_forward(NULL, m, bad, NULL, &big, 1, h), QKV_ERR_INVALID_ARG);
    int32_t tt[2] = {0, 2};
    bad[1] = 102;
    CHECK_STATUS(qkv__bert_forward(NULL, m, bad, tt, &two, 1, h), QKV_ERR_INVALID_ARG);
    /* the public API: the sentence-transformers pipeline (mean pooling, Normalize, 256 max) */
    {
        qkv_model *pm = NULL;
        CHECK_OK(qkv_model_load(MODEL_DIR, &pm));
        CHECK_EQ_INT(qkv_model_dim(pm), 384);
        CHECK_EQ_INT(qkv_model_max_tokens(pm), 256);
        CHECK_OK(qkv_embed_tokens(NULL, pm, ids->data, lens_v, (size_t)S, e));
        double worst_e = 0;
        for (int64_t i = 0; i < S * C; i++) {
            double d = fabs((double)e[i] - want_e[i]);
            if (!(d <= worst_e)) worst_e = d;
        }
        printf("qkv_embed_tokens: max abs error %.3g vs sentence-transformers\n", worst_e);
        CHECK(worst_e < 1e-5);
        int64_t long_len = 300;
        CHECK_STATUS(qkv_embed_tokens(NULL, pm, ids->data, &long_len, 1, e), QKV_ERR_INVALID_ARG);
        qkv_model_free(pm);
        qkv_model_free(NULL);
        CHECK_STATUS(qkv_model_load("/nonexistent-model-dir", &pm), QKV_ERR_IO);
        CHECK(pm == NULL);
    }
    free(h), free(e);
    qkv_safetensors_close(g);
    qkv__bert_free(m);
    return test_finish("bert");
}
