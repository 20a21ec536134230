/* generate_tokens.c — continue token-id prompts with a causal language model through the
 * public API (libqkv only: no tokenizer needed, ids in and out).
 *
 *   generate_tokens MODEL_DIR [N_NEW [TEMPERATURE [SEED]]]
 *
 * MODEL_DIR is a Hugging Face GPT-2 or Llama-style directory (config.json +
 * model.safetensors). Two prompts of ids are generated at once (batched, each with its own KV
 * cache); tokens are printed as they come, then the tokens/s of prefill and decode.
 * Built by CMake (tests/CMakeLists.txt) and run as a test so it cannot rot. */
#include <qkv.h>

#include <stdio.h>
#include <stdlib.h>

/* Called for every new token; returning nonzero would stop that sequence. */
static int print_token(void *user, size_t seq, int32_t token) {
    (void)user;
    printf("sequence %zu: token %d\n", seq, token);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL_DIR [N_NEW [TEMPERATURE [SEED]]]\n", argv[0]);
        return 2;
    }
    qkv_lm *lm = NULL;
    qkv_status s = qkv_lm_load(argv[1], &lm);
    if (s != QKV_OK) {
        fprintf(stderr, "cannot load %s: %s\n", argv[1], qkv_last_error());
        return 1;
    }
    /* two prompts, packed: ids [3 + 5], lens [2] */
    const int32_t ids[] = {10, 20, 30, 7, 7, 8, 9, 100};
    const int64_t lens[] = {3, 5};
    qkv_sampling opts = {0}; /* zero: greedy, no penalty, refuse on context overflow */
    opts.max_new_tokens = argc > 2 ? atoll(argv[2]) : 8;
    opts.temperature = argc > 3 ? (float)atof(argv[3]) : 0.0f;
    opts.top_p = 0.95f; /* used when sampling (temperature > 0) */
    opts.seed = argc > 4 ? strtoull(argv[4], NULL, 10) : 1;
    int32_t eos = qkv_lm_eos_token(lm); /* stop on the model's end-of-sequence token */
    if (eos >= 0) {
        opts.stop_tokens = &eos;
        opts.n_stop_tokens = 1;
    }
    qkv_generate_stats stats = {.struct_size = sizeof stats}; /* struct_size: see qkv.h */
    s = qkv_lm_generate_tokens(NULL, lm, ids, lens, 2, &opts, print_token, NULL, NULL, NULL,
                               &stats);
    if (s != QKV_OK) {
        fprintf(stderr, "generation failed: %s\n", qkv_last_error());
        qkv_lm_free(lm);
        return 1;
    }
    fprintf(stderr, "prefill: %lld tokens, %.1f tokens/s; decode: %lld tokens, %.1f tokens/s\n",
            (long long)stats.prefill_tokens,
            stats.prefill_seconds > 0 ? (double)stats.prefill_tokens / stats.prefill_seconds : 0.0,
            (long long)stats.decode_tokens,
            stats.decode_seconds > 0 ? (double)stats.decode_tokens / stats.decode_seconds : 0.0);
    qkv_lm_free(lm);
    return 0;
}
