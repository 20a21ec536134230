/* test_tokenizer_spm.c — SentencePiece-style tokenizers against their references, and the
 * SentencePiece model reader against hostile files.
 *
 * Fixtures (tests/fixtures/tokenizer/spm/, written by tools/gen_spm_fixtures.py): texts.txt
 * (one JSON string a line) and per tokenizer expect.NAME.jsonl with the ids of the single and
 * pair encodings and decode(ids) with and without special tokens, from Hugging Face
 * tokenizers (tokenizer.json files), Google's sentencepiece (the .model files) and
 * transformers' MarianTokenizer (the marian/ directory). Every field must be equal. */
#include "fault_alloc.h"
#include "qkv.h"
#include "test.h"

#include <jansson.h>

#define FIX QKV_SOURCE_DIR "/tests/fixtures/tokenizer/spm"

typedef struct tcase {
    const char *name; /* expect.NAME.jsonl */
    const char *path; /* under FIX */
} tcase;

static const tcase cases[] = {
    {"unigram", "unigram"},
    {"unigram_bf", "unigram_bf"},
    {"legacy", "legacy"},
    {"never", "never"},
    {"t5", "t5"},
    {"spmconv", "spmconv"},
    {"llama", "llama"},
    {"llama_nobf", "llama_nobf"},
    {"spm_uni", "spm_uni.model"},
    {"spm_bpe", "spm_bpe.model"},
    {"marian", "marian"},
};

static json_t *read_lines(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    json_t *arr = json_array();
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) > 0) {
        json_error_t err;
        json_t *j = json_loadb(line, (size_t)len, JSON_DECODE_ANY, &err);
        if (!j) {
            fprintf(stderr, "%s: %s\n", path, err.text);
            break;
        }
        json_array_append_new(arr, j);
    }
    free(line);
    fclose(f);
    *n = json_array_size(arr);
    return arr;
}

static int ids_equal(const int32_t *ids, size_t n, json_t *exp) {
    if (json_array_size(exp) != n) return 0;
    for (size_t i = 0; i < n; i++)
        if (json_integer_value(json_array_get(exp, i)) != ids[i]) return 0;
    return 1;
}

static void print_ids(const char *what, const int32_t *ids, size_t n) {
    fprintf(stderr, "  %s:", what);
    for (size_t i = 0; i < n && i < 40; i++) fprintf(stderr, " %d", ids[i]);
    fputc('\n', stderr);
}

static void run_case(const tcase *c, json_t *texts, size_t nt) {
    char p[1024], e[1024];
    snprintf(p, sizeof p, "%s/%s", FIX, c->path);
    snprintf(e, sizeof e, "%s/expect.%s.jsonl", FIX, c->name);
    qkv_tokenizer *t = NULL;
    CHECK_STATUS(qkv_tokenizer_load(p, &t), QKV_OK);
    size_t ne = 0;
    json_t *exp = read_lines(e, &ne);
    CHECK(exp != NULL && ne == nt);
    if (!t || !exp || ne != nt) {
        qkv_tokenizer_free(t);
        json_decref(exp);
        return;
    }
    size_t bad_ids = 0, bad_pair = 0, bad_dec = 0, bad_off = 0, n_off = 0;
    for (size_t i = 0; i < nt; i++) {
        json_t *x = json_array_get(exp, i), *a = json_array_get(texts, i),
               *b = json_array_get(texts, (i + 1) % nt);
        const char *s = json_string_value(a);
        size_t sl = json_string_length(a);
        qkv_encoding *enc = NULL, *pe = NULL;
        CHECK_STATUS(qkv_tokenizer_encode(t, s, sl, NULL, 0, NULL, &enc), QKV_OK);
        CHECK_STATUS(
            qkv_tokenizer_encode(t, s, sl, json_string_value(b), json_string_length(b), NULL, &pe),
            QKV_OK);
        if (!enc || !pe) {
            qkv_encoding_free(enc);
            qkv_encoding_free(pe);
            continue;
        }
        if (!ids_equal(enc->ids, enc->n, json_object_get(x, "ids"))) {
            if (bad_ids++ < 3) {
                fprintf(stderr, "%s: text %zu: ids differ\n", c->name, i);
                print_ids("got", enc->ids, enc->n);
            }
        }
        if (!ids_equal(pe->ids, pe->n, json_object_get(x, "pair"))) bad_pair++;
        json_t *off = json_object_get(x, "offsets"); /* code points, tokenizer.json only */
        if (off) {
            int same = json_array_size(off) == enc->n;
            for (size_t k = 0; same && k < enc->n; k++) {
                json_t *o = json_array_get(off, k);
                same = json_integer_value(json_array_get(o, 0)) == enc->char_offsets[2 * k] &&
                       json_integer_value(json_array_get(o, 1)) == enc->char_offsets[2 * k + 1];
            }
            if (!same && bad_off++ < 3)
                fprintf(stderr, "%s: text %zu: offsets differ\n", c->name, i);
            n_off++;
        }
        for (int skip = 1; skip >= 0; skip--) {
            char *d = NULL;
            size_t dl = 0;
            json_t *want = json_object_get(x, skip ? "skip" : "keep");
            CHECK_STATUS(qkv_tokenizer_decode(t, enc->ids, enc->n, skip, &d, &dl), QKV_OK);
            if (d && (dl != json_string_length(want) || memcmp(d, json_string_value(want), dl))) {
                if (bad_dec++ < 3)
                    fprintf(stderr, "%s: text %zu: decode(skip=%d) \"%s\" != \"%s\"\n", c->name, i,
                            skip, d, json_string_value(want));
            }
            qkv_free(d);
        }
        qkv_encoding_free(enc);
        qkv_encoding_free(pe);
    }
    printf("%-11s %zu texts: %zu id, %zu pair, %zu decode, %zu/%zu offset mismatches\n", c->name,
           nt, bad_ids, bad_pair, bad_dec, bad_off, n_off);
    CHECK_EQ_INT(bad_off, 0);
    CHECK_EQ_INT(bad_ids, 0);
    CHECK_EQ_INT(bad_pair, 0);
    CHECK_EQ_INT(bad_dec, 0);
    json_decref(exp);
    qkv_tokenizer_free(t);
}

/* ---- hostile SentencePiece files */

static int write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    int ok = fwrite(p, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

static uint8_t *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long l = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)l);
    *n = fread(b, 1, (size_t)l, f);
    fclose(f);
    return b;
}

/* loads path (a .model file); any status but a crash is fine, OK tokenizers must encode */
static qkv_status try_load(const char *path) {
    qkv_tokenizer *t = NULL;
    qkv_status s = qkv_tokenizer_load(path, &t);
    CHECK(s == QKV_OK || s == QKV_ERR_FORMAT || s == QKV_ERR_UNSUPPORTED);
    CHECK((s == QKV_OK) == (t != NULL));
    if (t) {
        const char *txt = "Hello wörld, ＡＢＣ 😀 e\xcc\x81 \xff bad";
        qkv_encoding *e = NULL;
        qkv_status es = qkv_tokenizer_encode(t, txt, strlen(txt), NULL, 0, NULL, &e);
        CHECK(es == QKV_OK || es == QKV_ERR_FORMAT);
        if (e) {
            char *d = NULL;
            CHECK_STATUS(qkv_tokenizer_decode(t, e->ids, e->n, 1, &d, NULL), QKV_OK);
            qkv_free(d);
        }
        qkv_encoding_free(e);
        qkv_tokenizer_free(t);
    }
    return s;
}

/* a varint-length-delimited field */
static size_t put_ld(uint8_t *o, uint8_t tag, const void *p, size_t n) {
    size_t k = 0;
    o[k++] = tag;
    size_t v = n;
    do {
        o[k++] = (uint8_t)((v & 0x7F) | (v > 0x7F ? 0x80 : 0));
        v >>= 7;
    } while (v);
    memcpy(o + k, p, n);
    return k + n;
}

/* ModelProto with pieces <unk>(UNKNOWN) and "▁a" plus a normalizer_spec carrying charsmap */
static size_t tiny_model(uint8_t *o, const uint8_t *charsmap, size_t cn) {
    uint8_t pc[64], ns[512];
    size_t k = 0, n;
    n = put_ld(pc, 0x0A, "<unk>", 5);
    pc[n++] = 0x18, pc[n++] = 2; /* type UNKNOWN */
    k += put_ld(o + k, 0x0A, pc, n);
    n = put_ld(pc, 0x0A,
               "\xE2\x96\x81"
               "a",
               4);
    pc[n++] = 0x15, memcpy(pc + n, "\x00\x00\x80\xbf", 4), n += 4; /* score -1 */
    k += put_ld(o + k, 0x0A, pc, n);
    n = put_ld(ns, 0x12, charsmap, cn);
    k += put_ld(o + k, 0x1A, ns, n);
    return k;
}

static void test_hostile(void) {
    char tmp[] = "/tmp/qkv_spm_XXXXXX";
    int fd = mkstemp(tmp);
    CHECK(fd >= 0);
    close(fd);
    char path[64];
    snprintf(path, sizeof path, "%s.model", tmp);
    uint8_t buf[1024];
    /* a sane tiny model loads and encodes ("a" known, the rest unknown) */
    static const uint8_t ok_map[] = {4, 0, 0, 0, 0, 0, 0, 0}; /* one empty trie unit */
    CHECK(write_file(path, buf, tiny_model(buf, ok_map, sizeof ok_map)));
    CHECK_STATUS(try_load(path), QKV_OK);
    /* the charsmap's trie size beyond the blob */
    static const uint8_t big_trie[] = {0xFF, 0xFF, 0, 0, 0, 0, 0, 0};
    CHECK(write_file(path, buf, tiny_model(buf, big_trie, sizeof big_trie)));
    CHECK_STATUS(try_load(path), QKV_ERR_FORMAT);
    CHECK(strstr(qkv_last_error(), "precompiled_charsmap") != NULL);
    /* strings that are not UTF-8 */
    static const uint8_t bad_utf8[] = {4, 0, 0, 0, 0, 0, 0, 0, 0xC3, 0x28, 0};
    CHECK(write_file(path, buf, tiny_model(buf, bad_utf8, sizeof bad_utf8)));
    CHECK_STATUS(try_load(path), QKV_ERR_FORMAT);
    /* a rule for "H" whose value points past the strings: loads, and encoding names the
     * charsmap. Darts units: the root (unit 0) has offset 1, so 'H' (0x48) is unit
     * 1 ^ 0x48 = 0x49: label 'H', has_leaf, offset 2; its value unit is 0x49 ^ 2. */
    {
        uint32_t units[0x50] = {0};
        units[0] = 1u << 10;
        units[0x49] = 0x48u | (1u << 8) | (2u << 10);
        units[0x49 ^ 2] = 0x7FFFFFF0u;
        uint8_t blob[4 + sizeof units + 2];
        uint32_t ts = sizeof units;
        memcpy(blob, &ts, 4);
        memcpy(blob + 4, units, sizeof units);
        blob[4 + sizeof units] = 'x';
        blob[5 + sizeof units] = 0;
        CHECK(write_file(path, buf, tiny_model(buf, blob, sizeof blob)));
        qkv_tokenizer *t = NULL;
        CHECK_STATUS(qkv_tokenizer_load(path, &t), QKV_OK);
        qkv_encoding *e = NULL;
        if (t) {
            CHECK_STATUS(qkv_tokenizer_encode(t, "aHa", 3, NULL, 0, NULL, &e), QKV_ERR_FORMAT);
            CHECK(strstr(qkv_last_error(), "precompiled_charsmap") != NULL);
            CHECK(e == NULL);
            CHECK_STATUS(qkv_tokenizer_encode(t, "aa", 2, NULL, 0, NULL, &e), QKV_OK);
            qkv_encoding_free(e);
        }
        qkv_tokenizer_free(t);
    }
    /* not a protobuf at all, and empty */
    CHECK(write_file(path, "\xff\xff\xff\xff", 4));
    CHECK_STATUS(try_load(path), QKV_ERR_FORMAT);
    CHECK(write_file(path, "", 0));
    CHECK_STATUS(try_load(path), QKV_ERR_FORMAT); /* no pieces */
    /* the real model, truncated at many lengths and with bytes flipped */
    size_t n = 0;
    uint8_t *m = slurp(FIX "/spm_uni.model", &n);
    CHECK(m && n > 1000);
    int n_ok = 0, n_bad = 0;
    for (size_t cut = 1; m && cut < n; cut += n / 97 + 1) {
        CHECK(write_file(path, m, cut));
        if (try_load(path) == QKV_OK)
            n_ok++;
        else
            n_bad++;
    }
    uint64_t r = 0x9E3779B97F4A7C15ull;
    for (int k = 0; m && k < 150; k++) {
        uint8_t *c = malloc(n);
        memcpy(c, m, n);
        for (int f = 0; f < 4; f++) {
            r ^= r << 13, r ^= r >> 7, r ^= r << 17;
            c[r % n] ^= (uint8_t)(r >> 32 | 1);
        }
        CHECK(write_file(path, c, n));
        if (try_load(path) == QKV_OK)
            n_ok++;
        else
            n_bad++;
        free(c);
    }
    printf("hostile .model files: %d loaded, %d refused, none crashed\n", n_ok, n_bad);
    CHECK(n_bad > 0);
    free(m);
    unlink(path);
    unlink(tmp);
}

static void test_unsupported(void) {
    static const char *const bad[] = {
        "{\"normalizer\": {\"type\": \"Replace\", \"pattern\": {\"Regex\": \"[a-z]+\"}, "
        "\"content\": \"x\"}, \"model\": {\"type\": \"Unigram\", \"unk_id\": 0, \"vocab\": "
        "[[\"<unk>\", 0.0]]}}",
        "{\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": "
        "\"Whitespace\"}, {\"type\": \"Metaspace\", \"replacement\": \"_\"}]}, \"model\": "
        "{\"type\": \"Unigram\", \"unk_id\": 0, \"vocab\": [[\"<unk>\", 0.0]]}}",
        "{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"<unk>\", 0.0]]}, \"decoder\": "
        "{\"type\": \"CTC\"}}",
    };
    char tmp[] = "/tmp/qkv_tokjson_XXXXXX";
    int fd = mkstemp(tmp);
    CHECK(fd >= 0);
    close(fd);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(write_file(tmp, bad[i], strlen(bad[i])));
        qkv_tokenizer *t = NULL;
        CHECK_STATUS(qkv_tokenizer_load(tmp, &t), QKV_ERR_UNSUPPORTED);
        CHECK(t == NULL);
    }
    /* a Unigram without unk_id meeting an unknown char is an error, as in tokenizers */
    const char *nounk = "{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", -1.0]]}}";
    CHECK(write_file(tmp, nounk, strlen(nounk)));
    qkv_tokenizer *t = NULL;
    CHECK_STATUS(qkv_tokenizer_load(tmp, &t), QKV_OK);
    qkv_encoding *e = NULL;
    if (t) {
        CHECK_STATUS(qkv_tokenizer_encode(t, "ab", 2, NULL, 0, NULL, &e), QKV_ERR_FORMAT);
        CHECK_STATUS(qkv_tokenizer_encode(t, "aa", 2, NULL, 0, NULL, &e), QKV_OK);
        if (e) CHECK_EQ_INT(e->n, 2);
        qkv_encoding_free(e);
    }
    qkv_tokenizer_free(t);
    unlink(tmp);
}

/* every allocation of load + encode + decode failed in turn: NOMEM, nothing leaked */
static void test_nomem(const char *path) {
    const char *txt = "Hello wörld 😀 </s> ＡＢＣ";
    int bad = 0;
    long total = 0;
    for (fail_at = 0;; fail_at++) {
        n_attempt = n_alloc = n_free = 0;
        qkv_allocator a = {failing_alloc, counting_free, NULL};
        qkv_set_allocator(&a);
        qkv_tokenizer *t = NULL;
        qkv_status s = qkv_tokenizer_load(path, &t);
        qkv_encoding *e = NULL;
        char *d = NULL;
        if (s == QKV_OK) s = qkv_tokenizer_encode(t, txt, strlen(txt), NULL, 0, NULL, &e);
        if (s == QKV_OK) s = qkv_tokenizer_decode(t, e->ids, e->n, 0, &d, NULL);
        qkv_free(d);
        qkv_encoding_free(e);
        qkv_tokenizer_free(t);
        qkv_set_allocator(NULL);
        if (n_alloc != n_free || (s != QKV_OK && s != QKV_ERR_NOMEM)) bad++;
        if (s == QKV_OK) {
            total = fail_at;
            break;
        }
    }
    printf("%s: every one of %ld allocations failed in turn: %d bad outcomes\n", path, total, bad);
    CHECK_EQ_INT(bad, 0);
    CHECK(total > 10);
}

int main(int argc, char **argv) {
    size_t nt = 0;
    json_t *texts = read_lines(FIX "/texts.txt", &nt);
    CHECK(texts && nt > 100);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (argc < 2 || strcmp(argv[1], cases[i].name) == 0) run_case(&cases[i], texts, nt);
    json_decref(texts);
    if (argc < 2) {
        test_hostile();
        test_unsupported();
        test_nomem(FIX "/marian");
        test_nomem(FIX "/unigram_bf/tokenizer.json");
    }
    return test_finish("tokenizer_spm");
}
