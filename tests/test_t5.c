/* test_t5.c — T5 / T5 v1.1 inference against transformers on the tiny random models of
 * tools/gen_t5_fixtures.py (tests/fixtures/t5/): t5 (ReLU, tied embeddings with the
 * d_model^-0.5 rescale, 3 heads of d_kv 8 for d_model 32, 2 + 3 layers, 8 buckets / max
 * distance 12) and v11 (gated-gelu, untied lm_head, 4 heads of d_kv 16, 3 + 2 layers, 10
 * buckets / 16), on sources of 3–69 tokens so that the relative position buckets saturate.
 *   - qkv__t5_bucket equal to transformers' _relative_position_bucket for relative positions
 *     -700..700, bidirectional and causal, for the fixture configs, T5's 32 / 128 and edges;
 *   - the encoder output and the decoder's teacher-forced logits, one token per step through
 *     the KV cache (the bias row of each new query against every cached key), within 1e-4;
 *   - qkv_seq2seq_generate: ids identical to generate() for greedy and beam search (s2s_check.h),
 *     beam scores within 1e-4; 2 threads equal; each sentence alone equal to the batch;
 *   - the tokenizers: v11/tokenizer.json and a directory holding spiece.model alone give the ids
 *     of transformers' T5Tokenizer (Unigram, [WhitespaceSplit, Metaspace], "$A </s>", the
 *     <extra_id_N> sentinels);
 *   - the source prefix from task_specific_params; hostile config.json edits and tensors
 *     (zero heads, d_kv 0, absurd bucket counts, a missing or misshaped tensor) refused naming
 *     the field or tensor; every allocation of a beam-search call failed in turn.
 * Runs per QKV_ARCH. */
#include "fixture_util.h"
#include "models/kv_cache.h"
#include "models/t5.h"
#include "qkv.h"
#include "s2s_check.h"
#include "test.h"
#include "test_arch.h"

#define FIX QKV_SOURCE_DIR "/tests/fixtures/t5/"

/* as SETUPS in tools/gen_t5_fixtures.py */
static const s2s_setup SETUPS[] = {
    {"greedy", 1, 0, 0, 1.0f, QKV_EARLY_STOP_FALSE, 0},
    {"beam4", 4, 0, 0, 1.0f, QKV_EARLY_STOP_FALSE, 0},
    {"beam4_lp06_es", 4, 0, 0, 0.6f, QKV_EARLY_STOP_TRUE, 0},
    {"beam4_lp2_nr2", 4, 0, 2, 2.0f, QKV_EARLY_STOP_FALSE, 0},
    {"beam4_lpm1_never", 4, 0, 0, -1.0f, QKV_EARLY_STOP_NEVER, 0},
    {"beam3_new7", 3, 7, 0, 1.0f, QKV_EARLY_STOP_FALSE, 0},
    {"greedy_nr3", 1, 20, 3, 1.0f, QKV_EARLY_STOP_FALSE, 0},
    {"beam5_nr3_es", 5, 0, 3, 1.0f, QKV_EARLY_STOP_TRUE, 0},
};

static void check_buckets(void) {
    qkv_safetensors *st = fix_open(FIX "expect.buckets.safetensors");
    static const int64_t cfgs[][2] = {{8, 12}, {10, 16}, {32, 128}, {4, 3}, {6, 100}};
    int64_t checked = 0;
    for (size_t c = 0; c < sizeof cfgs / sizeof *cfgs; c++)
        for (int bi = 0; bi < 2; bi++) {
            char key[64];
            snprintf(key, sizeof key, "b%lld_%lld_%d", (long long)cfgs[c][0], (long long)cfgs[c][1],
                     bi);
            const qkv_st_tensor *t = s2s_tensor(st, key);
            const int32_t *want = t->data;
            const int64_t R = (t->shape[0] - 1) / 2;
            for (int64_t r = -R; r <= R; r++, checked++) {
                int32_t b = qkv__t5_bucket(r, bi, cfgs[c][0], cfgs[c][1]);
                CHECK_MSG(b == want[r + R], "%s rel %lld: bucket %d, transformers %d", key,
                          (long long)r, b, want[r + R]);
                if (b != want[r + R]) break;
            }
        }
    printf("buckets: %lld relative positions as transformers\n", (long long)checked);
    qkv_safetensors_close(st);
}

/* encoder output and teacher-forced decoder logits through the internal API */
static void check_forward(const char *name, qkv_runtime *rt) {
    char dir[512], path[512];
    snprintf(dir, sizeof dir, FIX "%s", name);
    snprintf(path, sizeof path, FIX "expect.%s.safetensors", name);
    qkv_safetensors *st = fix_open(path);
    qkv_t5 *m = NULL;
    CHECK_OK(qkv__t5_load(dir, QKV_DTYPE_F32, &m));
    if (!m) return;
    const qkv_t5_config *c = &m->cfg;
    const qkv_st_tensor *tl = s2s_tensor(st, "src_lens");
    const int64_t n = tl->shape[0], *lens = tl->data, C = c->C, V = c->V, Q = c->Q;
    const int32_t *ids = fix_need(st, "src_ids");
    int64_t N = 0;
    for (int64_t s = 0; s < n; s++) N += lens[s];
    float *enc = malloc(sizeof(float) * (size_t)(N * C));
    CHECK_OK(qkv__t5_encode(rt, m, ids, lens, n, enc));
    const float *want = fix_need(st, "enc_out");
    double ew = 0;
    for (int64_t s = 0, o = 0; s < n; o += lens[s], s++) {
        double e = fix_rel_err(enc + o * C, want + o * C, lens[s] * C);
        ew = e > ew ? e : ew;
        CHECK_MSG(e < 1e-4, "%s encoder output of source %lld: error %.3g", name, (long long)s, e);
    }
    printf("%s: encoder error %.2g", name, ew);
    float *kv = malloc(sizeof(float) * (size_t)(2 * c->Ld * N * Q));
    CHECK_OK(qkv__t5_cross_kv(rt, m, enc, N, kv));
    const qkv_st_tensor *td = s2s_tensor(st, "dec_ids");
    const int64_t T = td->shape[1];
    const int32_t *dec = td->data;
    const float *wl = fix_need(st, "dec_logits"); /* [n, T, V] */
    qkv_kv_cache *caches = calloc((size_t)n, sizeof *caches);
    qkv_kv_cache **kvp = calloc((size_t)n, sizeof *kvp);
    int64_t *off = calloc((size_t)n, sizeof *off);
    int32_t *tok = calloc((size_t)n, sizeof *tok);
    float *logits = malloc(sizeof(float) * (size_t)(n * V));
    for (int64_t s = 0, o = 0; s < n; o += lens[s], s++) {
        off[s] = o;
        kvp[s] = &caches[s];
        CHECK_OK(qkv__kv_cache_init(&caches[s], c->Ld, 2, c->H, c->D)); /* grows on the way */
    }
    double worst = 0;
    for (int64_t t = 0; t < T; t++) {
        for (int64_t s = 0; s < n; s++) {
            tok[s] = dec[s * T + t];
            CHECK_OK(qkv__kv_cache_reserve(&caches[s], t + 1));
        }
        CHECK_OK(qkv__t5_decode_step(rt, m, kvp, tok, kv, N, off, lens, n, logits));
        for (int64_t s = 0; s < n; s++) {
            double e = fix_rel_err(logits + s * V, wl + (s * T + t) * V, V);
            worst = e > worst ? e : worst;
            CHECK_MSG(e < 1e-4, "%s logits of source %lld step %lld: error %.3g", name,
                      (long long)s, (long long)t, e);
        }
    }
    printf(", decoder logits error %.2g (%lld steps)\n", worst, (long long)T);
    tok[0] = (int32_t)V; /* a token outside the vocabulary */
    CHECK_STATUS(qkv__t5_decode_step(rt, m, kvp, tok, kv, N, off, lens, n, logits),
                 QKV_ERR_INVALID_ARG);
    for (int64_t s = 0; s < n; s++) qkv__kv_cache_release(&caches[s]);
    free(caches), free(kvp), free(off), free(tok), free(logits), free(kv), free(enc);
    qkv__t5_free(m);
    qkv_safetensors_close(st);
}

/* texts.txt through a tokenizer: the ids transformers gave (ids_KEY, lens_KEY) */
static void check_tok_ids(const char *path, const char *key) {
    qkv_safetensors *st = fix_open(FIX "expect.tok.safetensors");
    char k[32];
    snprintf(k, sizeof k, "lens_%s", key);
    const qkv_st_tensor *tl = s2s_tensor(st, k);
    snprintf(k, sizeof k, "ids_%s", key);
    const int32_t *want = fix_need(st, k);
    const int64_t *wl = tl->data;
    qkv_tokenizer *tok = NULL;
    size_t nt = 0;
    char *texts = test_read_all(FIX "texts.txt", &nt);
    CHECK_OK(qkv_tokenizer_load(path, &tok));
    int64_t line = 0, o = 0;
    for (char *p = texts, *nl; tok && texts && (nl = strchr(p, '\n')); p = nl + 1, line++) {
        *nl = '\0';
        qkv_encoding *e = NULL;
        CHECK_OK(qkv_tokenizer_encode(tok, p, strlen(p), NULL, 0, NULL, &e));
        if (!e || line >= tl->shape[0]) break;
        int eq = (int64_t)e->n == wl[line] &&
                 memcmp(e->ids, want + o, sizeof(int32_t) * (size_t)wl[line]) == 0;
        CHECK_MSG(eq, "%s line %lld '%s': %zu ids, transformers %lld", key, (long long)line, p,
                  e->n, (long long)wl[line]);
        o += wl[line];
        qkv_encoding_free(e);
    }
    CHECK_EQ_INT(line, tl->shape[0]);
    printf("tokenizer %s: %lld lines with transformers' ids\n", key, (long long)line);
    free(texts);
    qkv_tokenizer_free(tok);
    qkv_safetensors_close(st);
}

static void check_tokenizers(void) {
    check_tok_ids(FIX "v11", "json");
    check_tok_ids(FIX "spiece", "spm");
}

/* config.json edits on a copy of t5/ that must be refused, naming the field or tensor */
static void check_hostile(void) {
    char tmpl[] = "/tmp/qkv_t5_XXXXXX", path[256];
    const char *dir = mkdtemp(tmpl);
    CHECK(dir != NULL);
    if (!dir) return;
    size_t clen = 0;
    char *cfg = test_read_all(FIX "t5/config.json", &clen);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    test_copy_file(FIX "t5/model.safetensors", path);
    static const struct {
        const char *from, *to, *msg;
        qkv_status want;
    } edits[] = {
        {"\"num_heads\": 3", "\"num_heads\": 0", "num_heads", QKV_ERR_FORMAT},
        {"\"d_kv\": 8", "\"d_kv\": 0", "d_kv", QKV_ERR_FORMAT},
        {"\"d_kv\": 8", "\"d_kv\": -5", "d_kv", QKV_ERR_FORMAT},
        {"\"relative_attention_num_buckets\": 8", "\"relative_attention_num_buckets\": 2",
         "relative_attention_num_buckets", QKV_ERR_FORMAT},
        {"\"relative_attention_num_buckets\": 8",
         "\"relative_attention_num_buckets\": 9223372036854775807",
         "relative_attention_num_buckets", QKV_ERR_FORMAT},
        {"\"relative_attention_max_distance\": 12", "\"relative_attention_max_distance\": 4",
         "relative_attention_max_distance", QKV_ERR_FORMAT},
        {"\"relative_attention_num_buckets\": 8", "\"relative_attention_num_buckets\": 16",
         "relative_attention_bias", QKV_ERR_FORMAT},
        {"\"num_heads\": 3", "\"num_heads\": 4096, \"d_kv\": 65536", "d_kv", QKV_ERR_FORMAT},
        {"\"n_positions\": 128", "\"n_positions\": 65537", "n_positions", QKV_ERR_FORMAT},
        {"\"d_ff\": 48", "\"d_ff\": 47", "DenseReluDense.wi.weight", QKV_ERR_FORMAT},
        {"\"num_decoder_layers\": 3", "\"num_decoder_layers\": 4", "decoder.block.3",
         QKV_ERR_FORMAT},
        {"\"feed_forward_proj\": \"relu\"", "\"feed_forward_proj\": \"gated-gelu\"", "wi_0",
         QKV_ERR_FORMAT},
        {"\"feed_forward_proj\": \"relu\"", "\"feed_forward_proj\": \"mish\"", "feed_forward_proj",
         QKV_ERR_UNSUPPORTED},
        {"\"tie_word_embeddings\": true", "\"tie_word_embeddings\": false", "lm_head.weight",
         QKV_ERR_FORMAT},
        {"\"layer_norm_epsilon\": 1e-06", "\"layer_norm_epsilon\": -1", "layer_norm_epsilon",
         QKV_ERR_FORMAT},
        {"\"vocab_size\": 256", "\"vocab_size\": 255", "shared.weight", QKV_ERR_FORMAT},
        {"\"d_model\": 32", "\"d_model\": \"32\"", "d_model", QKV_ERR_FORMAT},
    };
    for (size_t k = 0; cfg && k < sizeof edits / sizeof *edits; k++) {
        const char *at = strstr(cfg, edits[k].from);
        CHECK_MSG(at != NULL, "config.json lacks %s", edits[k].from);
        if (!at) continue;
        snprintf(path, sizeof path, "%s/config.json", dir);
        FILE *f = fopen(path, "wb");
        fwrite(cfg, 1, (size_t)(at - cfg), f);
        fputs(edits[k].to, f);
        fputs(at + strlen(edits[k].from), f);
        fclose(f);
        qkv_seq2seq *bad = NULL;
        CHECK_STATUS(qkv_seq2seq_load(dir, &bad), edits[k].want);
        CHECK_MSG(strstr(qkv_last_error(), edits[k].msg) != NULL,
                  "edit %zu: message '%s' lacks '%s'", k, qkv_last_error(), edits[k].msg);
        CHECK(bad == NULL);
    }
    free(cfg);
    test_rm_rf(dir);
}

static void check_api(void) {
    qkv_seq2seq *t5 = NULL, *v11 = NULL;
    CHECK_OK(qkv_seq2seq_load(FIX "t5", &t5));
    CHECK_OK(qkv_seq2seq_load(FIX "v11", &v11));
    if (!t5 || !v11) return;
    CHECK(strcmp(qkv_seq2seq_source_prefix(t5), "") == 0);
    CHECK(strcmp(qkv_seq2seq_source_prefix(v11), "translate English to German: ") == 0);
    CHECK(strcmp(qkv_seq2seq_source_prefix(NULL), "") == 0);
    CHECK_EQ_INT(qkv_seq2seq_vocab_size(t5), 256);
    CHECK_EQ_INT(qkv_seq2seq_max_source(t5), 128); /* n_positions */
    qkv_translate_options o;
    qkv_seq2seq_default_options(t5, &o);
    CHECK_EQ_INT(o.num_beams, 1);
    CHECK_EQ_INT(o.max_length, 30); /* generation_config.json */
    const int32_t src[4] = {5, 6, 7, 1};
    const int64_t len = 4;
    o.num_beams = 3;
    o.max_new_tokens = 4;
    s2s_check_nomem(v11, src, len, &o);
    /* and while loading */
    qkv_allocator a2 = {failing_alloc, counting_free, NULL};
    int load_fails = 0;
    for (fail_at = 0;; fail_at++) {
        n_attempt = n_alloc = n_free = 0;
        qkv_set_allocator(&a2);
        qkv_seq2seq *m = NULL;
        qkv_status s = qkv_seq2seq_load(FIX "v11", &m);
        qkv_seq2seq_free(m);
        qkv_set_allocator(NULL);
        CHECK_MSG(n_alloc == n_free, "load fail_at %ld: %ld allocations, %ld frees", fail_at,
                  n_alloc, n_free);
        if (s == QKV_OK) break;
        CHECK_MSG(s == QKV_ERR_NOMEM, "load fail_at %ld: status %d (%s)", fail_at, (int)s,
                  qkv_last_error());
        load_fails++;
        if (fail_at > 2000) break;
    }
    fail_at = -1;
    printf("load allocation failures injected: %d\n", load_fails);
    qkv_seq2seq_free(t5);
    qkv_seq2seq_free(v11);
}

int main(void) {
    test_use_arch_from_env();
    qkv_runtime *rt1 = NULL, *rt2 = NULL;
    CHECK_OK(qkv_runtime_create(1, &rt1));
    CHECK_OK(qkv_runtime_create(2, &rt2));
    check_buckets();
    check_forward("t5", rt1);
    check_forward("v11", rt2);
    s2s_check_generate(FIX, "t5", SETUPS, sizeof SETUPS / sizeof *SETUPS, rt1, rt2);
    s2s_check_generate(FIX, "v11", SETUPS, sizeof SETUPS / sizeof *SETUPS, rt1, rt2);
    check_tokenizers();
    check_hostile();
    check_api();
    qkv_runtime_free(rt1);
    qkv_runtime_free(rt2);
    return test_finish("t5");
}
