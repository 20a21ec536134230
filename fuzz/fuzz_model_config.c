/* fuzz_model_config.c — libFuzzer target for a model directory's config.json read against its
 * model.safetensors (the trainer's import, the classifier import, the decoder, the encoder and
 * the encoder-decoder (Marian, T5) loaders).
 *
 * Input: a 2-byte little-endian length L, L bytes of config.json, and the rest as
 * model.safetensors; both are written to a temporary directory and loaded five ways. Any
 * input is refused with a status and a message, or loads. A size the config claims beyond the
 * tensors present would allocate past libFuzzer's -malloc_limit_mb (2 GB in scripts/fuzz.sh),
 * which libFuzzer reports as a crash. */
#include "fuzz_require.h"
#include "fuzz_two_files.h"
#include "qkv.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void refused_or(qkv_status s, int ok) {
    REQUIRE((s == QKV_OK) == (ok != 0));
    if (s != QKV_OK) REQUIRE(qkv_last_error()[0] != '\0');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!fuzz_two_files("/tmp/qkv_fuzz_config.XXXXXX", "config.json", "model.safetensors", data,
                        size))
        return 0;
    qkv_trainer *t = NULL;
    qkv_status s = qkv_trainer_load_hf(fuzz_dir, &t);
    refused_or(s, t != NULL);
    if (t) {
        qkv_gpt2_shape sh;
        qkv_trainer_get_shape(t, &sh);
        REQUIRE(sh.vocab_size >= 1 && sh.n_embd >= 1 && sh.n_layer >= 1);
    }
    qkv_trainer_free(t);
    t = NULL;
    s = qkv_trainer_load_hf_classifier(fuzz_dir, NULL, &t);
    refused_or(s, t != NULL);
    qkv_trainer_free(t);
    qkv_lm *lm = NULL;
    s = qkv_lm_load(fuzz_dir, &lm);
    refused_or(s, lm != NULL);
    qkv_lm_free(lm);
    qkv_model *m = NULL;
    s = qkv_model_load(fuzz_dir, &m);
    refused_or(s, m != NULL);
    qkv_model_free(m);
    qkv_seq2seq *ss = NULL;
    s = qkv_seq2seq_load(fuzz_dir, &ss);
    refused_or(s, ss != NULL);
    if (ss) REQUIRE(qkv_seq2seq_vocab_size(ss) >= 2 && qkv_seq2seq_source_prefix(ss) != NULL);
    qkv_seq2seq_free(ss);
    return 0;
}
