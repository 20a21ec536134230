/* fuzz_spm.c — libFuzzer target for the SentencePiece model reader (load_spm.c, protobuf-c)
 * and the precompiled charsmap parser and matcher (charsmap.c).
 *
 * The first byte chooses what the rest is:
 *   0: a whole .model file;
 *   1: a precompiled_charsmap, wrapped into a tiny ModelProto's normalizer_spec (SentencePiece's
 *      longest-match normalizer);
 *   2: a precompiled_charsmap, base64-encoded as the Precompiled normalizer of a tokenizer.json
 *      (tokenizers' per-grapheme algorithm).
 * Any input is refused with a status (and no tokenizer) or loads into a tokenizer that encodes
 * a few fixed texts with a status (a charsmap rule may point outside its strings: FORMAT),
 * keeps ids inside the vocabulary and decodes. A broken promise aborts. */
#include "fuzz_require.h"
#include "qkv.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const qkv_tokenizer *t, const char *a) {
    qkv_encoding *e = NULL;
    qkv_status s = qkv_tokenizer_encode(t, a, strlen(a), NULL, 0, NULL, &e);
    if (s != QKV_OK) {
        REQUIRE(s == QKV_ERR_FORMAT && e == NULL);
        return;
    }
    size_t v = qkv_tokenizer_vocab_size(t);
    for (size_t i = 0; i < e->n; i++) {
        REQUIRE(e->ids[i] >= 0 && (size_t)e->ids[i] < v);
        REQUIRE(e->offsets[2 * i] <= e->offsets[2 * i + 1]);
        REQUIRE((size_t)e->offsets[2 * i + 1] <= strlen(a));
    }
    char *d = NULL;
    REQUIRE(qkv_tokenizer_decode(t, e->ids, e->n, 0, &d, NULL) == QKV_OK);
    qkv_free(d);
    qkv_encoding_free(e);
}

static size_t put_ld(uint8_t *o, uint8_t tag, const void *p, size_t n) {
    size_t k = 0, v = n;
    o[k++] = tag;
    do {
        o[k++] = (uint8_t)((v & 0x7F) | (v > 0x7F ? 0x80 : 0));
        v >>= 7;
    } while (v);
    memcpy(o + k, p, n);
    return k + n;
}

/* ModelProto { pieces: <unk> (UNKNOWN), "▁a", "b"; normalizer_spec { precompiled_charsmap } } */
static uint8_t *wrap_model(const uint8_t *cm, size_t n, size_t *out_n) {
    uint8_t *o = malloc(2 * n + 256), *ns = malloc(n + 16), pc[32];
    size_t k = 0, m;
    m = put_ld(pc, 0x0A, "<unk>", 5);
    pc[m++] = 0x18, pc[m++] = 2;
    k += put_ld(o + k, 0x0A, pc, m);
    m = put_ld(pc, 0x0A,
               "\xE2\x96\x81"
               "a",
               4);
    k += put_ld(o + k, 0x0A, pc, m);
    m = put_ld(pc, 0x0A, "b", 1);
    k += put_ld(o + k, 0x0A, pc, m);
    m = put_ld(ns, 0x12, cm, n);
    k += put_ld(o + k, 0x1A, ns, m);
    free(ns);
    *out_n = k;
    return o;
}

static char *wrap_json(const uint8_t *cm, size_t n, size_t *out_n) {
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    static const char head[] =
        "{\"normalizer\": {\"type\": \"Precompiled\", \"precompiled_charsmap\": \"";
    static const char tail[] =
        "\"}, \"pre_tokenizer\": {\"type\": \"Metaspace\"}, \"model\": "
        "{\"type\": \"Unigram\", \"unk_id\": 0, \"vocab\": [[\"<unk>\", 0.0], "
        "[\"\\u2581a\", -1.0], [\"b\", -2.0]]}}";
    char *o = malloc(sizeof head + 4 * (n / 3 + 1) + sizeof tail + 1);
    size_t k = 0;
    memcpy(o, head, sizeof head - 1);
    k = sizeof head - 1;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)cm[i] << 16 | (i + 1 < n ? (uint32_t)cm[i + 1] << 8 : 0) |
                     (i + 2 < n ? cm[i + 2] : 0);
        o[k++] = b64[v >> 18];
        o[k++] = b64[(v >> 12) & 63];
        o[k++] = i + 1 < n ? b64[(v >> 6) & 63] : '=';
        o[k++] = i + 2 < n ? b64[v & 63] : '=';
    }
    memcpy(o + k, tail, sizeof tail - 1);
    k += sizeof tail - 1;
    *out_n = k;
    return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char model[64], json[64];
    if (!model[0]) {
        snprintf(model, sizeof model, "/tmp/fuzz_spm.%ld.model", (long)getpid());
        snprintf(json, sizeof json, "/tmp/fuzz_spm.%ld.json", (long)getpid());
    }
    if (size == 0) return 0;
    int mode = data[0] % 3;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    uint8_t *buf = NULL;
    size_t bn = n;
    if (mode == 1) buf = wrap_model(p, n, &bn);
    if (mode == 2) buf = (uint8_t *)wrap_json(p, n, &bn);
    const char *path = mode == 2 ? json : model;
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(buf ? buf : p, 1, bn, f);
        fclose(f);
    }
    free(buf);
    if (!f) return 0;
    qkv_tokenizer *t = (qkv_tokenizer *)&size;
    qkv_status s = qkv_tokenizer_load(path, &t);
    if (s != QKV_OK) {
        REQUIRE(t == NULL);
        REQUIRE(qkv_last_error()[0] != 0);
        return 0;
    }
    check(t,
          "Hello, world!  h\xc3\xa9llo \xef\xbc\xa1 e\xcc\x81 \xe4\xbd\xa0\xe5\xa5\xbd \xff\xfe");
    check(t, "ab\tba \xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9 \xef\xac\x81");
    check(t, "");
    qkv_tokenizer_free(t);
    return 0;
}
