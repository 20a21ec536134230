/* test_attnmap_minilm.c — every layer's and head's attention of all-MiniLM-L6-v2 (a sentence, a
 * sentence pair with token types, a longer sentence, run as one packed batch) against
 * transformers' output_attentions=True, and rollout and head summaries against numpy
 * (tests/fixtures/attnmap/minilm.safetensors, tools/gen_attention_maps.py). Per QKV_ARCH.
 * Skipped (77) when the model is not installed (scripts/fetch-model.sh installs it). */
#include "attnmap_check.h"
#include "test_arch.h"

#include <sys/stat.h>

#define MODEL_DIR QKV_SOURCE_DIR "/models/all-MiniLM-L6-v2"

int main(void) {
    test_use_arch_from_env();
    struct stat sb;
    if (stat(MODEL_DIR "/model.safetensors", &sb) != 0)
        TEST_SKIP("%s is not installed (scripts/fetch-model.sh fetches it)", MODEL_DIR);
    qkv_model *m = NULL;
    CHECK_OK(qkv_model_load(MODEL_DIR, &m));
    if (!m) return test_finish("attnmap_minilm");
    am_check_golden("minilm", QKV_SOURCE_DIR "/tests/fixtures/attnmap/minilm.safetensors", m, NULL);
    qkv_model_free(m);
    return test_finish("attnmap_minilm");
}
