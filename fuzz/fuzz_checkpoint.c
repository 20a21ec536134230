/* fuzz_checkpoint.c — libFuzzer target for a training checkpoint's metadata read against its
 * tensors (qkv_trainer_restore).
 *
 * Input: the bytes of a checkpoint (a safetensors file whose __metadata__ gives the shape,
 * step, arch, labels, LoRA and frozen parameters), written to a temporary file and restored.
 * Any input is refused with a status and a message, or restores into a trainer whose shape is
 * sane. Metadata claiming a model larger than the tensors present would allocate past
 * libFuzzer's -malloc_limit_mb (2 GB in scripts/fuzz.sh), which libFuzzer reports as a crash. */
#include "fuzz_require.h"
#include "qkv.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[64];

static void cleanup(void) { unlink(path); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!path[0]) {
        strcpy(path, "/tmp/qkv_fuzz_ckpt.XXXXXX");
        int fd = mkstemp(path);
        if (fd < 0) abort();
        close(fd);
        atexit(cleanup);
    }
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (size && fwrite(data, 1, size, f) != size) abort();
    fclose(f);
    qkv_trainer *t = (qkv_trainer *)1;
    char *user = NULL;
    qkv_status s = qkv_trainer_restore(path, &t, &user);
    if (s != QKV_OK) {
        REQUIRE(t == NULL && user == NULL);
        REQUIRE(qkv_last_error()[0] != '\0');
        return 0;
    }
    qkv_gpt2_shape sh;
    qkv_trainer_get_shape(t, &sh);
    REQUIRE(sh.vocab_size >= 1 && sh.n_embd >= 1 && sh.n_layer >= 1 && sh.n_head >= 1);
    REQUIRE(user != NULL);
    qkv_free(user);
    qkv_trainer_free(t);
    return 0;
}
