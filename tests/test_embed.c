/* test_embed.c — the public embedding API (qkv_model_load / qkv_embed) end to end on the real
 * all-MiniLM-L6-v2 against sentence-transformers on PyTorch: 201 sentences (160 lines of the
 * fortunes corpus and 41 stress lines: CJK, RTL, emoji/ZWJ, control characters, invalid UTF-8,
 * very long texts, empty lines) from tests/fixtures/embed (tools/gen_embed_golden.py).
 * Tolerances (issue 6): cosine >= 0.99999 and max abs difference <= 1e-4 per sentence. Batched
 * results must equal one-at-a-time results bit for bit. Malformed model directories are refused
 * cleanly. Uses only include/qkv.h, like a program outside the tree. */
#include "qkv.h"
#include "test.h"
#include "test_arch.h"

#include <sys/stat.h>
#include <unistd.h>

#define MODEL_DIR QKV_SOURCE_DIR "/models/all-MiniLM-L6-v2"
#define FIX QKV_SOURCE_DIR "/tests/fixtures/embed/"

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

/* A copy of the model directory with one file replaced or removed. */
static void malformed_dirs(void) {
    char dir[] = "/tmp/qkv_embed_bad_XXXXXX";
    if (!mkdtemp(dir)) return;
    char p[512];
    qkv_model *m = NULL;
    /* no weights at all */
    snprintf(p, sizeof p, "%s/config.json", dir);
    test_copy_file(MODEL_DIR "/config.json", p);
    CHECK_STATUS(qkv_model_load(dir, &m), QKV_ERR_IO);
    CHECK(strstr(qkv_last_error(), "model.safetensors") != NULL);
    CHECK(m == NULL);
    /* weights present, but the config lies about their size */
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    if (symlink(MODEL_DIR "/model.safetensors", p) != 0)
        test_copy_file(MODEL_DIR "/model.safetensors", p);
    snprintf(p, sizeof p, "%s/config.json", dir);
    write_text(p, "{\"model_type\":\"bert\",\"vocab_size\":30522,\"hidden_size\":768,"
                  "\"num_hidden_layers\":6,\"num_attention_heads\":12,\"intermediate_size\":1536}");
    CHECK_STATUS(qkv_model_load(dir, &m), QKV_ERR_FORMAT);
    CHECK(strstr(qkv_last_error(), "[30522, 768]") != NULL);
    write_text(p, "{\"model_type\":\"bert\",\"vocab_size\":30522,\"hidden_size\":384,"
                  "\"num_hidden_layers\":7,\"num_attention_heads\":12,\"intermediate_size\":1536}");
    CHECK_STATUS(qkv_model_load(dir, &m), QKV_ERR_FORMAT);
    CHECK(strstr(qkv_last_error(), "encoder.layer.6.") != NULL);
    /* a good config, a pipeline that asks for something we do not have */
    test_copy_file(MODEL_DIR "/config.json", p);
    snprintf(p, sizeof p, "%s/modules.json", dir);
    write_text(p, "[{\"idx\":0,\"name\":\"0\",\"path\":\"\",\"type\":"
                  "\"sentence_transformers.models.Transformer\"},{\"idx\":1,\"name\":\"1\","
                  "\"path\":\"1_Dense\",\"type\":\"sentence_transformers.models.Dense\"}]");
    CHECK_STATUS(qkv_model_load(dir, &m), QKV_ERR_UNSUPPORTED);
    CHECK(strstr(qkv_last_error(), "Dense") != NULL);
    write_text(p, "[{\"idx\":0,");
    CHECK_STATUS(qkv_model_load(dir, &m), QKV_ERR_FORMAT);
    /* no tokenizer: loads, but text embedding says why it cannot */
    remove(p);
    CHECK_OK(qkv_model_load(dir, &m));
    float e[384];
    const char *t = "hello";
    CHECK_STATUS(qkv_embed(NULL, m, &t, NULL, 1, e), QKV_ERR_UNSUPPORTED);
    CHECK(strstr(qkv_last_error(), "tokenizer") != NULL);
    int32_t *no_ids = NULL;
    int64_t *no_lens = NULL;
    CHECK_STATUS(qkv_model_tokenize(NULL, m, &t, NULL, 1, &no_ids, &no_lens), QKV_ERR_UNSUPPORTED);
    CHECK(no_ids == NULL && no_lens == NULL);
    qkv_model_free(m);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    remove(p);
    snprintf(p, sizeof p, "%s/config.json", dir);
    remove(p);
    rmdir(dir);
}

int main(void) {
    test_use_arch_from_env();
    struct stat sb;
    if (stat(MODEL_DIR "/model.safetensors", &sb) != 0)
        TEST_SKIP("model not installed at %s (run scripts/fetch-model.sh)", MODEL_DIR);
    malformed_dirs();

    size_t len;
    char *text = test_read_all(FIX "sentences.txt", &len);
    CHECK(text != NULL);
    const char *lines[512];
    size_t lens[512], n = 0;
    for (size_t i = 0, start = 0; text && i < len; i++)
        if (text[i] == '\n') {
            lines[n] = text + start;
            lens[n++] = i - start;
            start = i + 1;
        }
    qkv_safetensors *g = NULL;
    CHECK_OK(qkv_safetensors_open(FIX "minilm_st.safetensors", &g));
    const qkv_st_tensor *want = g ? qkv_safetensors_find(g, "embeddings") : NULL;
    CHECK(want && want->shape[0] == (int64_t)n && want->shape[1] == 384);
    if (want && want->shape[0] != (int64_t)n) return test_finish("embed");
    if (!want) return test_finish("embed");

    /* The scalar ISA runs the double-precision reference attention: check every 8th sentence
     * there (long ones included) to keep sanitizer builds well within their time limit. */
    size_t step = qkv_arch_active() == QKV_ARCH_SCALAR ? 8 : 1;
    if (step > 1) {
        size_t k = 0;
        for (size_t s = 0; s < n; s += step) lines[k] = lines[s], lens[k] = lens[s], k++;
        n = k;
    }
    qkv_model *m = NULL;
    CHECK_OK(qkv_model_load(MODEL_DIR, &m));
    float *e = malloc(sizeof(float) * 384 * n), *one = malloc(sizeof(float) * 384);
    CHECK_OK(qkv_embed(NULL, m, lines, lens, n, e));
    const float *w_all = want->data;
    float *w = malloc(sizeof(float) * 384 * n);
    for (size_t s = 0; s < n; s++) memcpy(w + s * 384, w_all + s * step * 384, sizeof(float) * 384);
    double worst_abs = 0, worst_cos = 1;
    size_t worst_line = 0;
    for (size_t s = 0; s < n; s++) {
        double dot = 0, na = 0, nb = 0, mx = 0;
        for (int c = 0; c < 384; c++) {
            double a = e[s * 384 + c], b = w[s * 384 + c];
            dot += a * b, na += a * a, nb += b * b;
            if (fabs(a - b) > mx) mx = fabs(a - b);
        }
        double cs = dot / sqrt(na * nb);
        CHECK_MSG(cs >= 0.99999 && mx <= 1e-4, "line %zu: cosine %.8f, max abs %.3g: '%.60s'",
                  s + 1, cs, mx, lines[s]);
        if (mx > worst_abs) worst_abs = mx;
        if (cs < worst_cos) worst_cos = cs, worst_line = s + 1;
    }
    printf("%zu sentences: min cosine %.9f (line %zu), max abs difference %.3g\n", n, worst_cos,
           worst_line, worst_abs);
    /* one at a time gives the same bits as the batch */
    int same = 1;
    for (size_t s = 0; s < n; s += 7) {
        CHECK_OK(qkv_embed(NULL, m, &lines[s], &lens[s], 1, one));
        if (memcmp(one, e + s * 384, sizeof(float) * 384) != 0) same = 0;
    }
    CHECK_MSG(same, "batched and one-at-a-time embeddings differ");
    /* qkv_model_tokenize + qkv_embed_tokens is qkv_embed, bit for bit (the server's path) */
    {
        int32_t *tids = NULL;
        int64_t *tlens = NULL;
        CHECK_OK(qkv_model_tokenize(NULL, m, lines, lens, n, &tids, &tlens));
        float *et = malloc(sizeof(float) * 384 * n);
        int in_range = 1;
        for (size_t s = 0; tlens && s < n; s++)
            if (tlens[s] < 1 || tlens[s] > qkv_model_max_tokens(m)) in_range = 0;
        CHECK_MSG(in_range, "qkv_model_tokenize: a length outside 1..max_tokens");
        if (tids && tlens && in_range) {
            CHECK_OK(qkv_embed_tokens(NULL, m, tids, tlens, n, et));
            CHECK_MSG(memcmp(et, e, sizeof(float) * 384 * n) == 0,
                      "qkv_model_tokenize + qkv_embed_tokens differs from qkv_embed");
        }
        free(et);
        qkv_free(tids);
        qkv_free(tlens);
        CHECK_STATUS(qkv_model_tokenize(NULL, m, lines, lens, 1, NULL, &tlens),
                     QKV_ERR_INVALID_ARG);
        CHECK(tlens == NULL);
        CHECK_OK(qkv_model_tokenize(NULL, m, lines, lens, 0, &tids, &tlens));
        qkv_free(tids);
        qkv_free(tlens);
    }
    /* and so does a different thread count */
    qkv_runtime *rt1 = NULL;
    CHECK_OK(qkv_runtime_create(1, &rt1));
    float *e1 = malloc(sizeof(float) * 384 * n);
    CHECK_OK(qkv_embed(rt1, m, lines, lens, n, e1));
    CHECK_MSG(memcmp(e1, e, sizeof(float) * 384 * n) == 0, "1 thread differs from the default");
    qkv_runtime_free(rt1);
    /* NUL-terminated texts and a NULL text ("") */
    const char *nt[2] = {"hello world", NULL};
    CHECK_OK(qkv_embed(NULL, m, nt, NULL, 2, e1));
    CHECK_STATUS(qkv_embed(NULL, NULL, nt, NULL, 1, e1), QKV_ERR_INVALID_ARG);
    CHECK_OK(qkv_embed(NULL, m, nt, NULL, 0, e1));
    free(e), free(e1), free(one), free(text), free(w);
    qkv_model_free(m);
    qkv_safetensors_close(g);
    return test_finish("embed");
}
