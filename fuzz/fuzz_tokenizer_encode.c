/* fuzz_tokenizer_encode.c — libFuzzer target for encode and decode on hostile text.
 *
 * Two real tokenizers (the MiniLM WordPiece and the corpus-trained byte-level BPE of the
 * test fixtures) encode the input bytes, alone and split into a pair, with options taken from
 * the first byte (special tokens, truncation strategy and length, padding, direction).
 * Promises: encode succeeds or refuses with INVALID_ARG (impossible truncation only); ids are
 * in the vocabulary; offsets are ordered and inside their text and fall on code point
 * boundaries (char offsets agree); byte-level BPE decode gives back the exact input bytes. */
#include "fuzz_require.h"
#include "qkv.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef QKV_SOURCE_DIR
#define QKV_SOURCE_DIR "."
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static qkv_tokenizer *tok[2];

static void check(const qkv_tokenizer *t, int bytelevel, const char *a, size_t la, const char *b,
                  size_t lb, const qkv_encode_options *o) {
    qkv_encoding *e = NULL;
    qkv_status s = qkv_tokenizer_encode(t, a, la, b, lb, o, &e);
    if (s != QKV_OK) {
        REQUIRE(s == QKV_ERR_INVALID_ARG && e == NULL);
        return;
    }
    size_t v = qkv_tokenizer_vocab_size(t);
    for (size_t i = 0; i < e->n; i++) {
        REQUIRE(e->ids[i] >= 0 && ((size_t)e->ids[i] < v || !e->attention_mask[i]));
        size_t lim = e->sequence_ids[i] == 1 ? lb : la;
        int64_t s0 = e->offsets[2 * i], s1 = e->offsets[2 * i + 1];
        REQUIRE(s0 >= 0 && s0 <= s1 && (size_t)s1 <= lim);
        REQUIRE(e->char_offsets[2 * i] <= e->char_offsets[2 * i + 1]);
        REQUIRE((s0 == s1) == (e->char_offsets[2 * i] == e->char_offsets[2 * i + 1]));
    }
    char *d = NULL;
    size_t dl = 0;
    REQUIRE(qkv_tokenizer_decode(t, e->ids, e->n, 0, &d, &dl) == QKV_OK);
    if (bytelevel && !b && !o->add_special_tokens && o->max_length == 0 && o->pad_to == 0)
        REQUIRE(dl == la && memcmp(d, a, la) == 0);
    qkv_free(d);
    qkv_encoding_free(e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!tok[0]) {
        if (qkv_tokenizer_load(QKV_SOURCE_DIR "/tests/fixtures/tokenizer/minilm", &tok[0]) ||
            qkv_tokenizer_load(QKV_SOURCE_DIR "/tests/fixtures/tokenizer/bpe", &tok[1])) {
            fprintf(stderr, "fuzz_tokenizer_encode: cannot load the fixtures: %s\n",
                    qkv_last_error());
            abort();
        }
    }
    uint8_t flags = size ? data[0] : 0;
    const char *text = size ? (const char *)data + 1 : "";
    size_t n = size ? size - 1 : 0;
    for (int k = 0; k < 2; k++) {
        qkv_encode_options o;
        qkv_tokenizer_default_options(tok[k], &o);
        o.add_special_tokens = flags & 1;
        o.max_length = (flags & 2) ? (flags >> 4) : 0;
        o.truncation = (qkv_truncation)((flags >> 2) % 3);
        o.truncate_left = (flags >> 3) & 1;
        o.pad_to = (flags & 0x40) ? 20 : 0;
        o.pad_left = flags >> 7;
        check(tok[k], k == 1, text, n, NULL, 0, &o);
        check(tok[k], k == 1, text, n / 2, text + n / 2, n - n / 2, &o);
    }
    return 0;
}
