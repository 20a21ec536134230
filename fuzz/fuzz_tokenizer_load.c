/* fuzz_tokenizer_load.c — libFuzzer target for the tokenizer.json loader.
 *
 * The input is written to a temporary file and loaded. Any input is refused with a status
 * (and *out NULL) or loads into a tokenizer whose promises hold on a few fixed texts: every
 * id is below the vocabulary size, offsets lie inside their text and are ordered pairs, the
 * masks are 0/1, decode succeeds. A broken promise aborts (a crash for libFuzzer). */
#include "fuzz_require.h"
#include "qkv.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const qkv_tokenizer *t, const char *a, const char *b) {
    qkv_encoding *e = NULL;
    size_t la = strlen(a), lb = b ? strlen(b) : 0;
    qkv_status s = qkv_tokenizer_encode(t, a, la, b, lb, NULL, &e);
    if (s != QKV_OK) {
        REQUIRE(e == NULL);
        return;
    }
    size_t v = qkv_tokenizer_vocab_size(t);
    for (size_t i = 0; i < e->n; i++) {
        REQUIRE(e->ids[i] >= 0);
        REQUIRE(e->attention_mask[i] == 0 || e->attention_mask[i] == 1);
        REQUIRE(e->special_tokens_mask[i] == 0 || e->special_tokens_mask[i] == 1);
        size_t lim = e->sequence_ids[i] == 1 ? lb : la;
        REQUIRE(e->offsets[2 * i] >= 0 && e->offsets[2 * i] <= e->offsets[2 * i + 1]);
        REQUIRE((size_t)e->offsets[2 * i + 1] <= lim);
        if (e->attention_mask[i] && !e->special_tokens_mask[i]) REQUIRE((size_t)e->ids[i] < v);
    }
    char *d = NULL;
    REQUIRE(qkv_tokenizer_decode(t, e->ids, e->n, 1, &d, NULL) == QKV_OK);
    qkv_free(d);
    qkv_encoding_free(e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char path[64];
    if (!path[0]) snprintf(path, sizeof path, "/tmp/fuzz_tokenizer_load.%ld.json", (long)getpid());
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    qkv_tokenizer *t = (qkv_tokenizer *)&size;
    qkv_status s = qkv_tokenizer_load(path, &t);
    if (s != QKV_OK) {
        REQUIRE(t == NULL);
        REQUIRE(qkv_last_error()[0] != 0);
        return 0;
    }
    check(t, "Hello, world! h\xc3\xa9llo \xe4\xbd\xa0\xe5\xa5\xbd [CLS] <|endoftext|> \xff", NULL);
    check(t, "a b c", "pair text here");
    check(t, "", NULL);
    qkv_tokenizer_free(t);
    return 0;
}
