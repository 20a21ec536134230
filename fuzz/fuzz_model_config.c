/* fuzz_model_config.c — libFuzzer target for a model directory's config.json read against its
 * model.safetensors (the trainer's import, the classifier import, the decoder and the encoder
 * loaders).
 *
 * Input: a 2-byte little-endian length L, L bytes of config.json, and the rest as
 * model.safetensors; both are written to a temporary directory and loaded four ways. Any
 * input is refused with a status and a message, or loads. A size the config claims beyond the
 * tensors present would allocate past libFuzzer's -malloc_limit_mb (2 GB in scripts/fuzz.sh),
 * which libFuzzer reports as a crash. */
#include "qkv.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_model_config: broken promise: %s\n", #cond);                     \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static char dir[64];

static void put(const char *name, const uint8_t *p, size_t n) {
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (n && fwrite(p, 1, n, f) != n) abort();
    fclose(f);
}

static void cleanup(void) {
    char path[128];
    snprintf(path, sizeof path, "%s/config.json", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path);
    rmdir(dir);
}

static void refused_or(qkv_status s, int ok) {
    REQUIRE((s == QKV_OK) == (ok != 0));
    if (s != QKV_OK) REQUIRE(qkv_last_error()[0] != '\0');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!dir[0]) {
        strcpy(dir, "/tmp/qkv_fuzz_config.XXXXXX");
        if (!mkdtemp(dir)) abort();
        atexit(cleanup);
    }
    if (size < 2) return 0;
    size_t L = (size_t)data[0] | (size_t)data[1] << 8;
    if (L > size - 2) L = size - 2;
    put("config.json", data + 2, L);
    put("model.safetensors", data + 2 + L, size - 2 - L);
    qkv_trainer *t = NULL;
    qkv_status s = qkv_trainer_load_hf(dir, &t);
    refused_or(s, t != NULL);
    if (t) {
        qkv_gpt2_shape sh;
        qkv_trainer_get_shape(t, &sh);
        REQUIRE(sh.vocab_size >= 1 && sh.n_embd >= 1 && sh.n_layer >= 1);
    }
    qkv_trainer_free(t);
    t = NULL;
    s = qkv_trainer_load_hf_classifier(dir, NULL, &t);
    refused_or(s, t != NULL);
    qkv_trainer_free(t);
    qkv_lm *lm = NULL;
    s = qkv_lm_load(dir, &lm);
    refused_or(s, lm != NULL);
    qkv_lm_free(lm);
    qkv_model *m = NULL;
    s = qkv_model_load(dir, &m);
    refused_or(s, m != NULL);
    qkv_model_free(m);
    return 0;
}
