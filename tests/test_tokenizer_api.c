/* test_tokenizer_api.c — the tokenizer API's contracts beyond the HF comparisons: argument
 * checks, options (truncation strategies and directions, padding, no special tokens),
 * lookups, malformed and unsupported tokenizer files (refused with the component's name),
 * hostile text (invalid UTF-8, NUL, huge words, 1 MB inputs), concurrent encodes sharing the
 * BPE cache, and fault injection: every allocation of load + encode + decode failed in turn
 * must give QKV_ERR_NOMEM (or success where a failed allocation only skips the cache) with
 * nothing leaked. */
#include "fault_alloc.h"
#include "qkv.h"
#include "test.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FIX QKV_SOURCE_DIR "/tests/fixtures/tokenizer"

static char tmpdir[512];

static const char *write_tmp(const char *name, const char *text) {
    static char path[1024];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    fputs(text, f);
    fclose(f);
    return path;
}

/* a tiny WordPiece and a tiny byte-level BPE, small enough to sweep allocation failures */
static const char *tiny_wp =
    "{\"normalizer\":{\"type\":\"BertNormalizer\",\"lowercase\":true},"
    "\"pre_tokenizer\":{\"type\":\"BertPreTokenizer\"},"
    "\"added_tokens\":[{\"id\":0,\"content\":\"[PAD]\",\"special\":true,\"normalized\":false},"
    "{\"id\":1,\"content\":\"[UNK]\",\"special\":true,\"normalized\":false},"
    "{\"id\":2,\"content\":\"[CLS]\",\"special\":true,\"normalized\":false},"
    "{\"id\":3,\"content\":\"[SEP]\",\"special\":true,\"normalized\":false}],"
    "\"post_processor\":{\"type\":\"BertProcessing\",\"sep\":[\"[SEP]\",3],\"cls\":[\"[CLS]\",2]},"
    "\"decoder\":{\"type\":\"WordPiece\",\"prefix\":\"##\",\"cleanup\":true},"
    "\"model\":{\"type\":\"WordPiece\",\"unk_token\":\"[UNK]\",\"continuing_subword_prefix\":\"##"
    "\","
    "\"max_input_chars_per_word\":100,\"vocab\":{\"[PAD]\":0,\"[UNK]\":1,\"[CLS]\":2,\"[SEP]\":3,"
    "\"hello\":4,\"world\":5,\"!\":6,\"wo\":7,\"##r\":8,\"##ld\":9,\"a\":10,\"##a\":11}}}";

static const char *tiny_bpe_head =
    "{\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":true},"
    "\"post_processor\":{\"type\":\"ByteLevel\",\"trim_offsets\":true},"
    "\"decoder\":{\"type\":\"ByteLevel\"},"
    "\"added_tokens\":[{\"id\":0,\"content\":\"<|endoftext|>\",\"special\":true,"
    "\"normalized\":false}],\"model\":{\"type\":\"BPE\",\"merges\":[\"h e\",\"l l\",\"he ll\","
    "[\"\\u0120\",\"w\"]],\"vocab\":{\"<|endoftext|>\":0,\"he\":257,\"ll\":258,\"hell\":259,"
    "\"\\u0120w\":260";

static char *tiny_bpe(void) {
    /* the 256 byte-level chars get ids 1..256 */
    static char buf[16384];
    size_t n = (size_t)snprintf(buf, sizeof buf, "%s", tiny_bpe_head);
    int id = 1;
    for (int b = 0; b < 256; b++) {
        int cp;
        if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE)
            cp = b;
        else {
            int k = 0;
            for (int x = 0; x < b; x++)
                if (!((x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || x >= 0xAE)) k++;
            cp = 256 + k;
        }
        if (cp == '"' || cp == '\\')
            n += (size_t)snprintf(buf + n, sizeof buf - n, ",\"\\%c\":%d", cp, id++);
        else
            n += (size_t)snprintf(buf + n, sizeof buf - n, ",\"\\u%04x\":%d", cp, id++);
    }
    snprintf(buf + n, sizeof buf - n, "}}}");
    return buf;
}

static qkv_tokenizer *load(const char *path) {
    qkv_tokenizer *t = NULL;
    CHECK_OK(qkv_tokenizer_load(path, &t));
    return t;
}

static qkv_encoding *enc(const qkv_tokenizer *t, const char *s, const char *pair,
                         const qkv_encode_options *o) {
    qkv_encoding *e = NULL;
    CHECK_OK(qkv_tokenizer_encode(t, s, strlen(s), pair, pair ? strlen(pair) : 0, o, &e));
    return e;
}

static int ids_are(const qkv_encoding *e, const int32_t *want, size_t n) {
    if (!e || e->n != n) return 0;
    for (size_t i = 0; i < n; i++)
        if (e->ids[i] != want[i]) return 0;
    return 1;
}

static void test_wordpiece_basics(void) {
    qkv_tokenizer *t = load(write_tmp("wp.json", tiny_wp));
    if (!t) return;
    CHECK_EQ_INT(qkv_tokenizer_vocab_size(t), 12);
    CHECK_EQ_INT(qkv_tokenizer_token_to_id(t, "world", 5), 5);
    CHECK_EQ_INT(qkv_tokenizer_token_to_id(t, "nope", 4), -1);
    CHECK(strcmp(qkv_tokenizer_id_to_token(t, 8), "##r") == 0);
    CHECK(qkv_tokenizer_id_to_token(t, 12) == NULL && qkv_tokenizer_id_to_token(t, -1) == NULL);
    CHECK_EQ_INT(qkv_tokenizer_special_id(t, QKV_SPECIAL_CLS), 2);
    CHECK_EQ_INT(qkv_tokenizer_special_id(t, QKV_SPECIAL_SEP), 3);
    CHECK_EQ_INT(qkv_tokenizer_special_id(t, QKV_SPECIAL_UNK), 1);
    CHECK_EQ_INT(qkv_tokenizer_special_id(t, QKV_SPECIAL_MASK), -1);

    qkv_encoding *e = enc(t, "Hello WORLD! wor xyz", NULL, NULL);
    static const int32_t w1[] = {2, 4, 5, 6, 7, 8, 1, 3};
    CHECK(ids_are(e, w1, 8));
    if (e) {
        CHECK_EQ_INT(e->offsets[2 * 4], 13); /* "wo" */
        CHECK_EQ_INT(e->offsets[2 * 5], 15); /* "##r" */
        CHECK_EQ_INT(e->offsets[2 * 6 + 1], 20);
        char *d = NULL;
        CHECK_OK(qkv_tokenizer_decode(t, e->ids, e->n, 1, &d, NULL));
        CHECK(d && strcmp(d, "hello world! wor") == 0); /* [UNK] is special: skipped */
        qkv_free(d);
        CHECK_OK(qkv_tokenizer_decode(t, e->ids, e->n, 0, &d, NULL));
        CHECK(d && strcmp(d, "[CLS] hello world! wor [UNK] [SEP]") == 0);
        qkv_free(d);
    }
    qkv_encoding_free(e);

    /* options: no specials; truncation strategies and directions; padding */
    qkv_encode_options o;
    qkv_tokenizer_default_options(t, &o);
    o.add_special_tokens = 0;
    e = enc(t, "hello world", "a a a", &o);
    static const int32_t w2[] = {4, 5, 10, 10, 10};
    CHECK(ids_are(e, w2, 5));
    if (e) CHECK(e->type_ids[0] == 0 && e->type_ids[2] == 1 && e->sequence_ids[4] == 1);
    qkv_encoding_free(e);
    qkv_tokenizer_default_options(t, &o);
    o.max_length = 6; /* 3 specials + 3 tokens: "a a a a" (4) vs "hello" (1) -> 1 + 2 */
    e = enc(t, "hello", "a a a a", &o);
    static const int32_t w3[] = {2, 4, 3, 10, 10, 3};
    CHECK(ids_are(e, w3, 6));
    qkv_encoding_free(e);
    o.truncate_left = 1;
    o.truncation = QKV_TRUNCATE_ONLY_FIRST;
    e = enc(t, "hello world ! a", "a", &o);
    static const int32_t w4[] = {2, 6, 10, 3, 10, 3};
    CHECK(ids_are(e, w4, 6));
    qkv_encoding_free(e);
    o.truncation = QKV_TRUNCATE_ONLY_SECOND;
    qkv_encoding *bad = NULL;
    CHECK_STATUS(qkv_tokenizer_encode(t, "a a a a", 7, "a", 1, &o, &bad), QKV_ERR_INVALID_ARG);
    CHECK(bad == NULL);
    o.max_length = 2; /* fewer than the 3 special tokens of a pair */
    o.truncation = QKV_TRUNCATE_LONGEST_FIRST;
    CHECK_STATUS(qkv_tokenizer_encode(t, "a", 1, "a", 1, &o, &bad), QKV_ERR_INVALID_ARG);
    qkv_tokenizer_default_options(t, &o);
    o.pad_to = 5;
    o.pad_left = 1;
    o.pad_id = 0;
    e = enc(t, "a", NULL, &o);
    static const int32_t w5[] = {0, 0, 2, 10, 3};
    CHECK(ids_are(e, w5, 5));
    if (e)
        CHECK(e->attention_mask[1] == 0 && e->attention_mask[2] == 1 &&
              e->special_tokens_mask[0] == 1 && e->sequence_ids[0] == -1);
    qkv_encoding_free(e);
    o.pad_left = 0;
    o.pad_to = 0;
    o.pad_to_multiple_of = 4;
    e = enc(t, "a a", NULL, &o);
    CHECK(e && e->n == 4 && e->ids[2] == 10 && e->ids[3] == 3);
    qkv_encoding_free(e);
    e = enc(t, "a a a", NULL, &o);
    CHECK(e && e->n == 8 && e->attention_mask[5] == 0);
    qkv_encoding_free(e);

    /* arguments */
    CHECK_STATUS(qkv_tokenizer_encode(NULL, "a", 1, NULL, 0, NULL, &bad), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_tokenizer_encode(t, NULL, 1, NULL, 0, NULL, &bad), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_tokenizer_encode(t, "a", 1, NULL, 1, NULL, &bad), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_tokenizer_encode(t, "a", 1, NULL, 0, NULL, NULL), QKV_ERR_INVALID_ARG);
    e = NULL;
    CHECK_OK(qkv_tokenizer_encode(t, NULL, 0, NULL, 0, NULL, &e)); /* empty text */
    CHECK(e && e->n == 2);
    qkv_encoding_free(e);
    char *d = NULL;
    static const int32_t odd[] = {-5, 99999, 4};
    CHECK_OK(qkv_tokenizer_decode(t, odd, 3, 0, &d, NULL)); /* unknown ids dropped, as HF */
    CHECK(d && strcmp(d, "hello") == 0);
    qkv_free(d);
    CHECK_STATUS(qkv_tokenizer_decode(t, NULL, 1, 0, &d, NULL), QKV_ERR_INVALID_ARG);
    qkv_tokenizer_free(t);
    qkv_tokenizer_free(NULL);
    qkv_encoding_free(NULL);
}

static void test_bpe_basics(void) {
    qkv_tokenizer *t = load(write_tmp("bpe.json", tiny_bpe()));
    if (!t) return;
    qkv_encoding *e = enc(t, "hello<|endoftext|> world", NULL, NULL);
    /* "hello" -> hell o; special; " world" -> Ġw o r l d */
    CHECK(e && e->n == 8 && e->ids[0] == 259 && e->ids[2] == 0 && e->ids[3] == 260);
    if (e) {
        CHECK_EQ_INT(e->offsets[2 * 3], 19); /* Ġw: the space trimmed from the offsets */
        CHECK_EQ_INT(e->offsets[2 * 3 + 1], 20);
    }
    qkv_encoding_free(e);
    /* any bytes round-trip */
    char bytes[512];
    for (int i = 0; i < 512; i++) bytes[i] = (char)((i * 7 + 3) & 0xFF);
    qkv_encode_options o;
    qkv_tokenizer_default_options(t, &o);
    e = NULL;
    CHECK_OK(qkv_tokenizer_encode(t, bytes, sizeof bytes, NULL, 0, &o, &e));
    if (e) {
        char *d = NULL;
        size_t dl = 0;
        CHECK_OK(qkv_tokenizer_decode(t, e->ids, e->n, 0, &d, &dl));
        CHECK(d && dl == sizeof bytes && memcmp(d, bytes, dl) == 0);
        qkv_free(d);
    }
    qkv_encoding_free(e);
    qkv_tokenizer_free(t);
}

static void test_malformed(void) {
    static const struct {
        const char *json;
        qkv_status want;
        const char *phrase;
    } cases[] = {
        {"", QKV_ERR_FORMAT, "invalid JSON"},
        {"[1,2]", QKV_ERR_FORMAT, "top level"},
        {"{\"model\":{\"type\":\"Unigram\",\"vocab\":[]}}", QKV_ERR_FORMAT, "Unigram"},
        {"{\"model\":{\"type\":\"WordLevel\",\"vocab\":{}}}", QKV_ERR_UNSUPPORTED, "WordLevel"},
        {"{\"normalizer\":{\"type\":\"Nmt\"},\"model\":{\"type\":\"WordPiece\",\"vocab\":{\"a\":0}"
         "}}",
         QKV_ERR_UNSUPPORTED, "Nmt"},
        {"{\"pre_tokenizer\":{\"type\":\"Whitespace\"},\"model\":{\"type\":\"WordPiece\",\"vocab\":"
         "{"
         "}}}",
         QKV_ERR_UNSUPPORTED, "Whitespace"},
        {"{\"post_processor\":{\"type\":\"Sequence\"},\"model\":{\"type\":\"WordPiece\",\"vocab\":{"
         "\"a\":0}}}",
         QKV_ERR_UNSUPPORTED, "Sequence"},
        {"{\"decoder\":{\"type\":\"CTC\"},\"model\":{\"type\":\"WordPiece\",\"vocab\":{\"a\":"
         "0}}}",
         QKV_ERR_UNSUPPORTED, "CTC"},
        {"{\"model\":{\"type\":\"WordPiece\",\"vocab\":{\"a\":-1}}}", QKV_ERR_FORMAT, "vocab"},
        {"{\"model\":{\"type\":\"WordPiece\",\"vocab\":{\"a\":4294967296}}}", QKV_ERR_FORMAT,
         "vocab"},
        {"{\"model\":{\"type\":\"WordPiece\",\"vocab\":[]}}", QKV_ERR_FORMAT, "vocab"},
        {"{\"model\":{\"type\":\"WordPiece\",\"vocab\":{}}}", QKV_ERR_FORMAT, "empty"},
        {"{\"model\":7}", QKV_ERR_FORMAT, "model"},
        {"{\"pre_tokenizer\":{\"type\":\"ByteLevel\"},\"model\":{\"type\":\"BPE\",\"dropout\":0.1,"
         "\"vocab\":{},\"merges\":[]}}",
         QKV_ERR_UNSUPPORTED, "dropout"},
        {"{\"pre_tokenizer\":{\"type\":\"ByteLevel\"},\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":"
         "0},"
         "\"merges\":[\"a b\"]}}",
         QKV_ERR_FORMAT, "merge 0"},
        {"{\"pre_tokenizer\":{\"type\":\"ByteLevel\"},\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":"
         "0},"
         "\"merges\":[\"a a a\"]}}",
         QKV_ERR_FORMAT, "merge 0"},
        {"{\"pre_tokenizer\":{\"type\":\"ByteLevel\"},\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":"
         "0},"
         "\"merges\":[3]}}",
         QKV_ERR_FORMAT, "merges[0]"},
        {"{\"pre_tokenizer\":{\"type\":\"BertPreTokenizer\"},\"model\":{\"type\":\"BPE\","
         "\"vocab\":{\"a\":0},\"merges\":[]}}",
         QKV_ERR_UNSUPPORTED, "BertPreTokenizer"},
        {"{\"added_tokens\":[{\"id\":1,\"content\":\"x\",\"single_word\":true}],"
         "\"model\":{\"type\":\"WordPiece\",\"vocab\":{\"a\":0}}}",
         QKV_ERR_UNSUPPORTED, "single_word"},
        {"{\"added_tokens\":[{\"id\":1}],\"model\":{\"type\":\"WordPiece\",\"vocab\":{\"a\":0}}}",
         QKV_ERR_FORMAT, "content"},
        {"{\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":"
         "{\"id\":\"[X]\",\"type_id\":0}}],\"pair\":[],\"special_tokens\":{}},"
         "\"model\":{\"type\":\"WordPiece\",\"vocab\":{\"a\":0}}}",
         QKV_ERR_FORMAT, "[X]"},
        {"{\"truncation\":{\"max_length\":5,\"strategy\":\"Weird\"},"
         "\"model\":{\"type\":\"WordPiece\",\"vocab\":{\"a\":0}}}",
         QKV_ERR_UNSUPPORTED, "Weird"},
        {"{\"normalizer\":{\"type\":\"BertNormalizer\",\"lowercase\":3},"
         "\"model\":{\"type\":\"WordPiece\",\"vocab\":{\"a\":0}}}",
         QKV_ERR_FORMAT, "lowercase"},
        {"{\"model\":{\"type\":\"WordPiece\",\"vocab\":{\"a\":0,\"a\":1}}}", QKV_ERR_FORMAT,
         "JSON"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        qkv_tokenizer *t = (qkv_tokenizer *)1;
        qkv_status s = qkv_tokenizer_load(write_tmp("bad.json", cases[i].json), &t);
        CHECK_MSG(s == cases[i].want, "case %zu: status %d (%s) want %d", i, (int)s,
                  qkv_last_error(), (int)cases[i].want);
        CHECK_MSG(strstr(qkv_last_error(), cases[i].phrase) != NULL,
                  "case %zu: \"%s\" lacks \"%s\"", i, qkv_last_error(), cases[i].phrase);
        CHECK(t == NULL);
    }
    qkv_tokenizer *t = NULL;
    CHECK_STATUS(qkv_tokenizer_load("/nonexistent/x", &t), QKV_ERR_IO);
    CHECK_STATUS(qkv_tokenizer_load(tmpdir, &t), QKV_ERR_NOT_FOUND); /* dir without files */
    CHECK_STATUS(qkv_tokenizer_load(NULL, &t), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_tokenizer_load(tmpdir, NULL), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_tokenizer_load(write_tmp("v.txt", "a\n\xff\n"), &t), QKV_ERR_FORMAT);
}

static void test_hostile_text(void) {
    qkv_tokenizer *ts[2] = {NULL, NULL};
    CHECK_OK(qkv_tokenizer_load(FIX "/minilm", &ts[0]));
    CHECK_OK(qkv_tokenizer_load(FIX "/bpe", &ts[1]));
    size_t n = 1u << 20;
    char *big = malloc(n);
    for (int k = 0; k < 2; k++) {
        qkv_tokenizer *t = ts[k];
        if (!t) continue;
        qkv_encode_options o;
        qkv_tokenizer_default_options(t, &o);
        o.max_length = 0;
        o.pad_to = 0;
        for (int pattern = 0; pattern < 4; pattern++) {
            for (size_t i = 0; i < n; i++)
                big[i] = pattern == 0   ? 'a'                                   /* one huge word */
                         : pattern == 1 ? ' '                                   /* all spaces */
                         : pattern == 2 ? (char)(0x80 + (i % 64))               /* invalid UTF-8 */
                                        : "\xe4\xbd\xa0 \x00!e\xcc\x81"[i % 9]; /* mixed */
            qkv_encoding *e = NULL;
            CHECK_OK(qkv_tokenizer_encode(t, big, n, NULL, 0, &o, &e));
            if (e && k == 1) { /* byte-level BPE gives the bytes back */
                char *d = NULL;
                size_t dl = 0;
                CHECK_OK(qkv_tokenizer_decode(t, e->ids, e->n, 0, &d, &dl));
                CHECK(d && dl == n && memcmp(d, big, n) == 0);
                qkv_free(d);
            }
            if (e && k == 0 && pattern == 0) CHECK(e->n == 3 && e->ids[1] == 100); /* [UNK] */
            qkv_encoding_free(e);
        }
    }
    free(big);
    qkv_tokenizer_free(ts[0]);
    qkv_tokenizer_free(ts[1]);
}

typedef struct job {
    const qkv_tokenizer *t;
    int ok;
} job;

static void *encode_many(void *arg) {
    job *j = arg;
    char line[64];
    j->ok = 1;
    for (int i = 0; i < 1000; i++) {
        int n = snprintf(line, sizeof line, "word%d and more word%d text", i % 500, i % 37);
        qkv_encoding *e = NULL;
        if (qkv_tokenizer_encode(j->t, line, (size_t)n, NULL, 0, NULL, &e) != QKV_OK) j->ok = 0;
        char *d = NULL;
        size_t dl = 0;
        if (!e || qkv_tokenizer_decode(j->t, e->ids, e->n, 0, &d, &dl) != QKV_OK ||
            dl != (size_t)n || memcmp(d, line, dl) != 0)
            j->ok = 0;
        qkv_free(d);
        qkv_encoding_free(e);
    }
    return NULL;
}

static void test_threads(void) {
    qkv_tokenizer *t = NULL;
    CHECK_OK(qkv_tokenizer_load(FIX "/bpe/tokenizer.json", &t));
    if (!t) return;
    pthread_t th[4];
    job jobs[4];
    for (int i = 0; i < 4; i++) {
        jobs[i].t = t;
        pthread_create(&th[i], NULL, encode_many, &jobs[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK(jobs[i].ok);
    }
    qkv_tokenizer_free(t);
}

/* ---- fault injection */

static qkv_status roundtrip_all(const char *path, const char *text) {
    qkv_tokenizer *t = NULL;
    qkv_status s = qkv_tokenizer_load(path, &t);
    if (s != QKV_OK) return s;
    qkv_encoding *e = NULL;
    for (int k = 0; k < 2 && s == QKV_OK; k++) { /* twice: the second hits the BPE cache */
        qkv_encoding_free(e);
        e = NULL;
        s = qkv_tokenizer_encode(t, text, strlen(text), "pair text", 9, NULL, &e);
    }
    char *d = NULL;
    if (s == QKV_OK) s = qkv_tokenizer_decode(t, e->ids, e->n, 1, &d, NULL);
    qkv_free(d);
    qkv_encoding_free(e);
    qkv_tokenizer_free(t);
    return s;
}

static void sweep(const char *what, const char *path, const char *text) {
    qkv_allocator a = {failing_alloc, counting_free, NULL};
    long n;
    for (n = 0; n < 200000; n++) {
        n_attempt = n_alloc = n_free = 0;
        fail_at = n;
        qkv_set_allocator(&a);
        qkv_status s = roundtrip_all(path, text);
        qkv_set_allocator(NULL);
        int injected = n_attempt > n;
        CHECK_MSG(s == QKV_OK || (injected && s == QKV_ERR_NOMEM),
                  "%s: failing allocation %ld "
                  "gave %d (%s)",
                  what, n, (int)s, qkv_last_error());
        CHECK_MSG(n_alloc == n_free, "%s: failing allocation %ld leaked %ld", what, n,
                  n_alloc - n_free);
        if (!injected) break;
    }
    printf("%s: swept %ld allocation failures\n", what, n);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "%s/tokenizer_api_tmp.%ld", QKV_BINARY_DIR, (long)getpid());
    char cmd[600];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", tmpdir);
    if (system(cmd) != 0) return 1;
    test_wordpiece_basics();
    test_bpe_basics();
    test_malformed();
    test_hostile_text();
    test_threads();
    sweep("wordpiece", write_tmp("wp_nomem.json", tiny_wp), "Hello, WORLD! wor \xc3\xa9 [SEP] x");
    sweep("bpe", write_tmp("bpe_nomem.json", tiny_bpe()), "hello world <|endoftext|>\xff yes");
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) return 1;
    return test_finish("tokenizer_api");
}
