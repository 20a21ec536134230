/* fuzz_dataset.c — libFuzzer target for the tokenized-dataset reader (meta.json + shards).
 *
 * Input: a 2-byte little-endian length L, L bytes of meta.json, and the rest as the one shard
 * train_00000.bin; both are written to a temporary directory and the train split is opened.
 * Any input is refused with a status (and *out NULL) or opens into a dataset whose promises
 * hold: sample and sequential give ids below the vocabulary size, targets are the ids shifted
 * by one, and too-long windows are refused. The shard is also written as train_tgt_00000.bin,
 * the target side a parallel meta.json ("kind": "parallel") may name; a parallel dataset that
 * opens keeps its promises too: every sentence of both sides is 1..cap ids below the side's
 * vocabulary, the lengths add up to the side's tokens, and token windows are refused. A broken
 * promise aborts (a crash for libFuzzer). */
#include "fuzz_require.h"
#include "fuzz_two_files.h"
#include "qkv.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void windows(const qkv_dataset *ds, int64_t B, int64_t T) {
    int64_t n = qkv_dataset_tokens(ds), v = qkv_dataset_vocab_size(ds);
    int32_t ids[64], tg[64];
    qkv_status s = qkv_dataset_sample(ds, 1, 2, B, T, ids, tg);
    REQUIRE((s == QKV_OK) == (T + 1 <= n));
    if (s == QKV_OK)
        for (int64_t i = 0; i < B * T; i++) {
            REQUIRE(ids[i] >= 0 && ids[i] < v && tg[i] >= 0 && tg[i] < v);
            REQUIRE(i % T == T - 1 || tg[i] == ids[i + 1]);
        }
    int64_t nb = qkv_dataset_batches(ds, B, T);
    REQUIRE(nb >= 0 && nb * B * T <= (n > 0 ? n - 1 : 0));
    for (int64_t i = 0; i < nb && i < 4; i++) {
        REQUIRE(qkv_dataset_sequential(ds, i, B, T, ids, tg) == QKV_OK);
        for (int64_t k = 0; k < B * T; k++) REQUIRE(ids[k] >= 0 && ids[k] < v);
    }
    REQUIRE(qkv_dataset_sequential(ds, nb, B, T, ids, tg) == QKV_ERR_INVALID_ARG);
}

static void pairs(const qkv_dataset *ds) {
    int32_t ids[64], tg[64];
    REQUIRE(qkv_dataset_sample(ds, 1, 2, 1, 1, ids, tg) == QKV_ERR_INVALID_ARG);
    REQUIRE(qkv_dataset_batches(ds, 1, 1) == 0);
    const int64_t n = qkv_dataset_pairs(ds);
    const int64_t v[2] = {qkv_dataset_vocab_size(ds), qkv_dataset_target_vocab_size(ds)},
                  tokens[2] = {qkv_dataset_tokens(ds), qkv_dataset_target_tokens(ds)};
    REQUIRE(n >= 0 && v[0] >= 1 && v[1] >= 1);
    for (int side = 0; side < 2; side++) {
        int64_t sum = 0;
        for (int64_t i = 0; i < n; i++) {
            const int64_t full = qkv_dataset_sentence_len(ds, side, i);
            REQUIRE(full >= 1);
            sum += full;
            if (i >= 64) continue; /* the first ones read back, whole and cut */
            for (int64_t cap = 3; cap <= 64; cap += 61) {
                int64_t len = -1;
                REQUIRE(qkv_dataset_sentence(ds, side, i, cap, ids, &len) == QKV_OK);
                REQUIRE(len == (full < cap ? full : cap));
                for (int64_t k = 0; k < len; k++) REQUIRE(ids[k] >= 0 && ids[k] < v[side]);
            }
        }
        REQUIRE(sum == tokens[side]);
    }
}

static void remove_target(void) {
    char path[128];
    snprintf(path, sizeof path, "%s/train_tgt_00000.bin", fuzz_dir);
    unlink(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int registered;
    if (!fuzz_two_files("/tmp/qkv_fuzz_dataset.XXXXXX", "meta.json", "train_00000.bin", data, size))
        return 0;
    if (!registered) { /* runs before fuzz_two_files' cleanup (atexit: last in, first out) */
        atexit(remove_target);
        registered = 1;
    }
    size_t L = (size_t)data[0] | (size_t)data[1] << 8;
    if (L > size - 2) L = size - 2;
    fuzz_put("train_tgt_00000.bin", data + 2 + L, size - 2 - L);
    qkv_dataset *ds = (qkv_dataset *)1;
    qkv_status s = qkv_dataset_open(fuzz_dir, QKV_SPLIT_TRAIN, &ds);
    if (s != QKV_OK) {
        REQUIRE(ds == NULL);
        REQUIRE(qkv_last_error()[0] != '\0');
        return 0;
    }
    REQUIRE(qkv_dataset_tokens(ds) >= 0 && qkv_dataset_vocab_size(ds) >= 1);
    if (qkv_dataset_is_parallel(ds)) {
        pairs(ds);
        qkv_dataset_close(ds);
        return 0;
    }
    windows(ds, 1, 1);
    windows(ds, 2, 3);
    windows(ds, 4, 16);
    qkv_dataset_close(ds);
    return 0;
}
