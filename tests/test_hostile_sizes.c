/* test_hostile_sizes.c — files that claim sizes they do not contain (issue 14.4).
 *
 * Each case builds a small file whose numbers claim far more than its bytes (a token id near
 * 2^31, a checkpoint or config.json of a wide model over a few bytes of tensors) and checks the
 * reader refuses it with QKV_ERR_FORMAT while the library's allocations (counted through
 * qkv_set_allocator: the largest single request and the peak of live bytes) stay small. Before
 * the checks, these loads asked for 16 GB (the token id) or tens of GB (the model shapes).
 * Honest files just under the limits still load. Long truncated texts: the prefix encoding of
 * the tokenizer gives exactly the whole text's encoding (the reference: prefixes off), on lines
 * just above and well above max_length, for every pre-tokenizer kind it applies to. */
#include "qkv.h"
#include "test.h"
#include "tokenizer/tokenizer_internal.h"

#include <malloc.h>
#include <stdint.h>

/* ---------------------------------------------------------------- a measuring allocator */

static size_t live, peak, largest;

static void *measure_alloc(size_t size, size_t align, void *user) {
    (void)user;
    if (size > largest) largest = size;
    void *p = aligned_alloc(align, (size + align - 1) / align * align);
    if (p) {
        live += malloc_usable_size(p);
        if (live > peak) peak = live;
    }
    return p;
}

static void measure_free(void *p, void *user) {
    (void)user;
    if (p) live -= malloc_usable_size(p);
    free(p);
}

static void measure_reset(void) { peak = live, largest = 0; }

#define SMALL ((size_t)64 << 20) /* what a refusal may cost at most */

#define CHECK_REFUSED_SMALL(expr)                                                                  \
    do {                                                                                           \
        measure_reset();                                                                           \
        CHECK_STATUS(expr, QKV_ERR_FORMAT);                                                        \
        CHECK_MSG(largest < SMALL && peak < SMALL, "%s: largest allocation %zu, peak %zu bytes",   \
                  #expr, largest, peak);                                                           \
    } while (0)

static char dir[256];

static void put(const char *name, const char *text) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (!f) abort();
    fputs(text, f);
    fclose(f);
}

static const char *at(const char *name) {
    static char p[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
    return p[k];
}

/* s with ins inserted after the first occurrence of after (malloc'd) */
static char *insert_after(const char *s, const char *after, const char *ins) {
    const char *q = strstr(s, after);
    if (!q) abort();
    size_t a = (size_t)(q - s) + strlen(after), n = strlen(s), m = strlen(ins);
    char *r = malloc(n + m + 1);
    memcpy(r, s, a);
    memcpy(r + a, ins, m);
    memcpy(r + a + m, s + a, n - a + 1);
    return r;
}

/* ---------------------------------------------------------------- tokenizers */

static void tokenizer_ids(void) {
    size_t len;
    char *base = test_read_all(QKV_SOURCE_DIR "/tests/fixtures/cls/single/tokenizer.json", &len);
    CHECK(base != NULL);
    if (!base) return;
    qkv_tokenizer *t = NULL;
    /* tokenizer.json: one vocabulary id near 2^31 (120 tokens) */
    char *v = insert_after(base, "\"vocab\": {", "\"zzhostile\": 2147483000, ");
    put("big_id.json", v);
    CHECK_REFUSED_SMALL(qkv_tokenizer_load(at("big_id.json"), &t));
    CHECK(t == NULL);
    CHECK_MSG(strstr(qkv_last_error(), "big_id.json") && strstr(qkv_last_error(), "2147483000"),
              "%s", qkv_last_error());
    free(v);
    /* an added token's id */
    v = insert_after(base, "\"added_tokens\": [",
                     "{\"id\": 2000000000, \"content\": \"<zz>\", \"single_word\": false, "
                     "\"lstrip\": false, \"rstrip\": false, \"normalized\": false, "
                     "\"special\": true}, ");
    put("big_added.json", v);
    CHECK_REFUSED_SMALL(qkv_tokenizer_load(at("big_added.json"), &t));
    free(v);
    /* a hole tokenizers allows: ids past the entries but within twice their number + slack */
    v = insert_after(base, "\"vocab\": {", "\"zzhole\": 300, ");
    put("hole.json", v);
    measure_reset();
    CHECK_OK(qkv_tokenizer_load(at("hole.json"), &t));
    CHECK_EQ_INT(qkv_tokenizer_vocab_size(t), 301);
    qkv_tokenizer_free(t);
    t = NULL;
    free(v);
    free(base);
    /* vocab.json + merges.txt (load_vocab.c) */
    put("vocab.json", "{\"a\": 0, \"b\": 1, \"ab\": 2147483000}");
    put("merges.txt", "#version: 0.2\na b\n");
    CHECK_REFUSED_SMALL(qkv_tokenizer_load(at("vocab.json"), &t));
    /* vocab.txt has no ids (line numbers are the ids): nothing to claim */
}

/* Long lines: prefix encoding == whole encoding. */
static unsigned long long rng = 88172645463325252ull;
static unsigned next_u(unsigned n) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (unsigned)(rng % n);
}

static const char *const words[] = {"hello",
                                    "world,",
                                    "naïve",
                                    "日本語",
                                    "don't",
                                    "123",
                                    "4.5",
                                    "[MASK]",
                                    "<s>",
                                    "ﬁne",
                                    "Ünïcödé",
                                    "a",
                                    "internationalization",
                                    "–",
                                    "🙂",
                                    "x-y",
                                    "(yes)",
                                    "the",
                                    "of",
                                    "TOKENS",
                                    "…",
                                    "e\xcc\x81",
                                    "ab\xff",
                                    "\xe2\x96\x81meta"};
static const char *const seps[] = {" ", " ", " ", " ", "  ", "\t", "\n", " \n ", "   "};

/* a text of n words */
static char *make_text(size_t n, size_t *len) {
    size_t cap = n * 32 + 16, k = 0;
    char *s = malloc(cap);
    for (size_t i = 0; i < n; i++) {
        const char *w = words[next_u(sizeof words / sizeof *words)];
        const char *p = i ? seps[next_u(sizeof seps / sizeof *seps)] : "";
        k += (size_t)sprintf(s + k, "%s%s", p, w);
    }
    *len = k;
    return s;
}

static int same_encoding(const qkv_encoding *a, const qkv_encoding *b) {
    if (a->n != b->n) return 0;
    for (size_t i = 0; i < a->n; i++)
        if (a->ids[i] != b->ids[i] || a->type_ids[i] != b->type_ids[i] ||
            a->special_tokens_mask[i] != b->special_tokens_mask[i] ||
            a->offsets[2 * i] != b->offsets[2 * i] ||
            a->offsets[2 * i + 1] != b->offsets[2 * i + 1] ||
            a->char_offsets[2 * i] != b->char_offsets[2 * i] ||
            a->char_offsets[2 * i + 1] != b->char_offsets[2 * i + 1])
            return 0;
    return 1;
}

static void long_lines(const char *name, int expect_prefix) {
    char path[512];
    snprintf(path, sizeof path, "%s/tests/fixtures/tokenizer/%s/tokenizer.json", QKV_SOURCE_DIR,
             name);
    qkv_tokenizer *t = NULL;
    CHECK_OK(qkv_tokenizer_load(path, &t));
    if (!t) return;
    size_t used0 = qkv__tok_prefix_used;
    int compared = 0, mismatches = 0, over = 0;
    static const int64_t maxes[] = {16, 128, 512};
    for (int m = 0; m < 3; m++) {
        qkv_encode_options o;
        qkv_tokenizer_default_options(t, &o);
        o.max_length = maxes[m];
        o.truncation = QKV_TRUNCATE_LONGEST_FIRST;
        qkv_encode_options whole = o;
        whole.max_length = 0;
        /* word counts around max_length (tokens per word vary: just above and below) and far
         * above it */
        for (size_t n = (size_t)maxes[m] / 2; n < (size_t)maxes[m] * 2 + 8; n += 1 + n / 16) {
            for (int rep = 0; rep < 3; rep++) {
                size_t len;
                char *s = make_text(rep == 2 ? n * 40 : n, &len);
                qkv_encoding *fast = NULL, *ref = NULL, *all = NULL;
                qkv__tok_prefix_min = 0; /* every truncated text by prefixes */
                CHECK_OK(qkv_tokenizer_encode(t, s, len, NULL, 0, &o, &fast));
                qkv__tok_prefix_min = SIZE_MAX; /* the whole text: the reference */
                CHECK_OK(qkv_tokenizer_encode(t, s, len, NULL, 0, &o, &ref));
                CHECK_OK(qkv_tokenizer_encode(t, s, len, NULL, 0, &whole, &all));
                if (fast && ref && all) {
                    compared++;
                    over += all->n > (size_t)maxes[m];
                    if (!same_encoding(fast, ref)) {
                        if (mismatches++ < 3)
                            fprintf(stderr, "%s: max_length %lld, %zu bytes: encodings differ\n",
                                    name, (long long)maxes[m], len);
                    }
                }
                qkv_encoding_free(fast);
                qkv_encoding_free(ref);
                qkv_encoding_free(all);
                free(s);
            }
        }
    }
    qkv__tok_prefix_min = (size_t)64 << 10;
    size_t used = qkv__tok_prefix_used - used0;
    printf("%s: %d texts compared (%d over max_length), %zu encoded by a prefix\n", name, compared,
           over, used);
    CHECK_EQ_INT(mismatches, 0);
    CHECK(over > compared / 2);
    if (expect_prefix)
        CHECK_MSG(used > (size_t)compared / 4, "%s: only %zu prefix encodes", name, used);
    else
        CHECK_EQ_INT(used, 0); /* one word for the whole text: never cut */
    qkv_tokenizer_free(t);
}

/* ---------------------------------------------------------------- models and checkpoints */

static void tiny_tensor_file(const char *name, const char *const *keys, const char *const *vals,
                             size_t n_meta) {
    static float x[4];
    int64_t shape[1] = {4};
    qkv_st_write_tensor w = {"x", QKV_DTYPE_F32, 1, shape, x};
    CHECK_OK(qkv_safetensors_write(at(name), &w, 1, keys, vals, n_meta));
}

static void checkpoints(void) {
    /* metadata of a wide GPT-2 over 16 bytes of tensors */
    const char *keys[] = {
        "format",  "version", "arch",  "vocab_size",         "n_positions",        "n_embd",
        "n_layer", "n_head",  "steps", "layer_norm_epsilon", "activation_function"};
    const char *vals[] = {"qkv-train-checkpoint",
                          "1",
                          "gpt2",
                          "50257",
                          "1024",
                          "4096",
                          "48",
                          "32",
                          "0",
                          "1e-05",
                          "gelu_new"};
    tiny_tensor_file("wide.safetensors", keys, vals, 11);
    qkv_trainer *t = NULL;
    CHECK_REFUSED_SMALL(qkv_trainer_restore(at("wide.safetensors"), &t, NULL));
    CHECK(t == NULL);
    CHECK(strstr(qkv_last_error(), "wide.safetensors") && strstr(qkv_last_error(), "claims"));
    /* an honest tiny checkpoint still restores */
    qkv_gpt2_shape sh = {64, 16, 16, 2, 2};
    CHECK_OK(qkv_trainer_new(&sh, 1, &t));
    CHECK_OK(qkv_trainer_save(t, at("tiny.safetensors"), "{}"));
    CHECK_OK(qkv_trainer_export_hf(t, at("tiny_hf"), -1));
    qkv_trainer_free(t);
    t = NULL;
    CHECK_OK(qkv_trainer_restore(at("tiny.safetensors"), &t, NULL));
    qkv_trainer_free(t);
    t = NULL;
    CHECK_OK(qkv_trainer_load_hf(at("tiny_hf"), &t));
    qkv_trainer_free(t);
}

static void model_dirs(void) {
    char sub[512];
    snprintf(sub, sizeof sub, "%s/wide_gpt2", dir);
    mkdir(sub, 0755);
    put("wide_gpt2/config.json",
        "{\"model_type\": \"gpt2\", \"vocab_size\": 50257, \"n_positions\": 1024, \"n_embd\": "
        "4096, \"n_layer\": 48, \"n_head\": 32}");
    tiny_tensor_file("wide_gpt2/model.safetensors", NULL, NULL, 0);
    qkv_trainer *t = NULL;
    CHECK_REFUSED_SMALL(qkv_trainer_load_hf(at("wide_gpt2"), &t));
    CHECK(strstr(qkv_last_error(), "model.safetensors") && strstr(qkv_last_error(), "claims"));
    qkv_lm *lm = NULL; /* inference: every tensor is checked by name and shape as it is mapped */
    measure_reset();
    qkv_status s = qkv_lm_load(at("wide_gpt2"), &lm);
    CHECK(s != QKV_OK && s != QKV_ERR_NOMEM && lm == NULL);
    CHECK_MSG(largest < SMALL && peak < SMALL, "qkv_lm_load: largest %zu, peak %zu", largest, peak);

    snprintf(sub, sizeof sub, "%s/wide_bert", dir);
    mkdir(sub, 0755);
    put("wide_bert/config.json",
        "{\"model_type\": \"bert\", \"vocab_size\": 30522, \"hidden_size\": 4096, "
        "\"num_hidden_layers\": 48, \"num_attention_heads\": 32, \"intermediate_size\": 16384, "
        "\"max_position_embeddings\": 512, \"type_vocab_size\": 2, \"id2label\": {\"0\": \"a\", "
        "\"1\": \"b\"}}");
    tiny_tensor_file("wide_bert/model.safetensors", NULL, NULL, 0);
    CHECK_REFUSED_SMALL(qkv_trainer_load_hf(at("wide_bert"), &t));
    CHECK_REFUSED_SMALL(qkv_trainer_load_hf_classifier(at("wide_bert"), NULL, &t));
    qkv_model *m = NULL;
    measure_reset();
    s = qkv_model_load(at("wide_bert"), &m);
    CHECK(s != QKV_OK && s != QKV_ERR_NOMEM && m == NULL);
    CHECK_MSG(largest < SMALL && peak < SMALL, "qkv_model_load: largest %zu, peak %zu", largest,
              peak);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/qkv_hostile_sizes.XXXXXX");
    if (!mkdtemp(dir)) return 1;
    qkv_allocator a = {measure_alloc, measure_free, NULL};
    qkv_set_allocator(&a);
    tokenizer_ids();
    checkpoints();
    model_dirs();
    long_lines("minilm", 1); /* BertPreTokenizer, BertNormalizer, WordPiece */
    long_lines("cased", 1);
    long_lines("bpe", 1);         /* ByteLevel with its regex, BPE */
    long_lines("spm/unigram", 1); /* Metaspace (split), NFKC, Unigram */
    long_lines("spm/t5", 1);      /* WhitespaceSplit + Metaspace, Precompiled charsmap */
    long_lines("spm/llama", 0);   /* Metaspace without split: the text is one word */
    qkv_set_allocator(NULL);
    test_rm_rf(dir);
    return test_finish("hostile_sizes");
}
