/* test_decoders_bf16.c — causal LMs (GPT-2, Llama) and encoder-decoders (Marian, T5) loaded
 * with 16-bit weights, bf16 and f16 (qkv_model_options.dtype through qkv_lm_load_opts /
 * qkv_seq2seq_load_opts, issue 18), through the public API only, once per QKV_ARCH; every
 * check below runs for both dtypes (the f16 bound is 8 times tighter than bf16's, so bf16's
 * bound holds for it a fortiori):
 *  - plumbing, exact: a copy of each tiny fixture with every tensor stored in the dtype (BF16
 *    ones of a BF16 file rounded to f16 for the f16 copy) gives,
 *    loaded in it, bit for bit what it gives loaded as f32 (the weights are bf16 values either way,
 *    and the plain bf16 kernel, the default, reproduces the FP32 GEMM's bits on them): LM logits
 *    of every position; seq2seq beam-search ids and scores. Every packed matrix and the head
 *    take part, so one left in F32 or packed wrongly shows.
 *    llama_tiny_untied is stored in BF16 already: its bf16 and f32 loads must agree as they are.
 *  - rounding at load, exact: for the fixture whose head is not tied to an embedding table
 *    (T5 v1.1; the helper is the one every model packs with), the F32 file loaded as bf16 equals
 * the F32 load of a copy whose linear matrices (and head) were rounded to bf16 beforehand
 * (embeddings, norms, biases and T5's relative-position table untouched, as bf16 loading leaves
 * them).
 *  - accuracy: LM logits, bf16 vs f32 on the original files: the cosine of every position's
 *    logits row must be >= 0.9995. Why that holds: rounding changes each weight by a relative
 *    2^-9 at most with uncorrelated signs, moving each linear layer's output by about
 *    2^-9/√3 ≈ 1.1e-3 relative (RMS); the tiny fixtures have at most 2 blocks of 7 matrices
 *    plus the head, adding in quadrature to δ ≈ √15 · 1.1e-3 ≈ 4.3e-3, so 1 - cos ≈ δ²/2 ≈ 1e-5,
 *    50 times below the checked 5e-4.
 *  - int8 (dtype I8, kernels/gemm_i8.h): LM logits of the F32 files, cosine of every position
 *    with f32 >= 0.99, and not the f32 bits. Why: with scales per 32 k, a group's largest value
 *    sits at ±127 and a Gaussian-like group's RMS is ~1/2.5 of its max, so rounding (uniform,
 *    RMS step/√12) moves each weight and each activation by ~2.5/(127·√12) ≈ 5.7e-3 relative
 *    RMS; a product of the two moves by ~8e-3, and with activation outliers (max/RMS ~4) ~1.1e-2
 *    per linear layer. 15 matrices (2 blocks of 7 + the head) in quadrature: δ ≈ 4.2e-2, so
 *    1 - cos ≈ δ²/2 ≈ 9e-4; the check, 1e-2, leaves a margin of 10 (measured: 0.9979 at worst,
 *    llama_tiny). Encoder-decoders (Marian, T5, T5 v1.1) load in I8 and run beam search.
 *  - options: NULL / zero options are f32; I8 loads; other values INVALID_ARG. */
#include "kernels/dispatch.h"
#include "kernels/gemm_bf16.h"
#include "qkv.h"
#include "test.h"
#include "test_arch.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MODELS QKV_SOURCE_DIR "/tests/fixtures/models/"
#define MARIAN QKV_SOURCE_DIR "/tests/fixtures/marian/tiny"
#define T5 QKV_SOURCE_DIR "/tests/fixtures/t5/t5"
#define T5V11 QKV_SOURCE_DIR "/tests/fixtures/t5/v11"
#define INT8_COS 0.99 /* int8 logits vs f32, every position: derived in the header */

/* ---------------------------------------------------------------- variants */

/* A matrix that bf16 loading packs: 2-D, neither an embedding table nor T5's position table. */
static int is_packed(const qkv_st_tensor *t) {
    const char *n = t->name;
    return t->ndim == 2 && !strstr(n, "embed") && !strstr(n, "wte") && !strstr(n, "wpe") &&
           !strstr(n, "shared") && !strstr(n, "relative_attention_bias");
}

typedef enum {
    ALL_16,      /* every F32 tensor stored in the 16-bit dtype */
    MAT_ROUNDED, /* the packed matrices' values rounded to it, stored as F32; the rest as is */
} variant;

static qkv_dtype dt = QKV_DTYPE_BF16; /* the 16-bit dtype under test */
static const char *dn = "bf16";

static void round16(const float *x, uint16_t *h, size_t n) {
    (dt == QKV_DTYPE_F16 ? qkv_f32_to_f16_n : qkv_f32_to_bf16_n)(x, h, n);
}

/* dst/ = the regular files of src (config, tokenizer, ...) with model.safetensors as `v`. */
static void write_variant(const char *src, const char *dst, variant v) {
    static const char *const files[] = {"config.json",
                                        "generation_config.json",
                                        "tokenizer.json",
                                        "tokenizer_config.json",
                                        "source.spm",
                                        "target.spm",
                                        "vocab.json",
                                        "spiece.model",
                                        "special_tokens_map.json"};
    char a[600], b[600];
    struct stat sb;
    mkdir(dst, 0700);
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(a, sizeof a, "%s/%s", src, files[i]);
        snprintf(b, sizeof b, "%s/%s", dst, files[i]);
        if (stat(a, &sb) == 0) test_copy_file(a, b);
    }
    snprintf(a, sizeof a, "%s/model.safetensors", src);
    qkv_safetensors *st = NULL;
    CHECK_OK(qkv_safetensors_open(a, &st));
    if (!st) return;
    size_t n = qkv_safetensors_count(st);
    qkv_st_write_tensor *w = calloc(n, sizeof *w);
    void **bufs = calloc(n, sizeof *bufs);
    for (size_t i = 0; i < n; i++) {
        const qkv_st_tensor *t = qkv_safetensors_tensor(st, i);
        qkv_dtype d = t->dtype;
        const void *data = t->data;
        size_t numel = t->nbytes / 4;
        if (t->dtype == QKV_DTYPE_BF16 && v == ALL_16 && dt != QKV_DTYPE_BF16) {
            numel = t->nbytes / 2; /* a BF16 file (llama_tiny_untied): its values in dt */
            float *f = malloc(numel * 4);
            uint16_t *h = bufs[i] = malloc(numel * 2);
            qkv_bf16_to_f32_n(t->data, f, numel);
            round16(f, h, numel);
            free(f);
            d = dt, data = h;
        } else if (t->dtype == QKV_DTYPE_F32 && v == ALL_16) {
            uint16_t *h = bufs[i] = malloc(numel * 2);
            round16(t->data, h, numel);
            d = dt, data = h;
        } else if (t->dtype == QKV_DTYPE_F32 && is_packed(t)) {
            uint16_t *h = malloc(numel * 2);
            float *f = bufs[i] = malloc(numel * 4);
            round16(t->data, h, numel);
            (dt == QKV_DTYPE_F16 ? qkv_f16_to_f32_n : qkv_bf16_to_f32_n)(h, f, numel);
            free(h);
            data = f;
        }
        w[i] = (qkv_st_write_tensor){t->name, d, t->ndim, t->shape, data};
    }
    snprintf(b, sizeof b, "%s/model.safetensors", dst);
    CHECK_OK(qkv_safetensors_write(b, w, n, NULL, NULL, 0));
    for (size_t i = 0; i < n; i++) free(bufs[i]);
    free(bufs), free(w);
    qkv_safetensors_close(st);
}

/* 1 when bf16 models are packed for the plain kernel (FP32 activations: the FP32 GEMM's bits),
 * 0 for vdpbf16ps or AMX (bf16 activations), as now selected. */
static int plain_kernel(void) {
    qkv_gemm_bf16_config c;
    qkv__kernels()->gemm_bf16_config(&c);
    return !c.pairs;
}

/* ---------------------------------------------------------------- causal LMs */

#define NSEQ 5
static int32_t ids[NSEQ * 24];
static int64_t lens[NSEQ];
static size_t ntok;

static void lm_inputs(int64_t vocab) {
    uint64_t x = 7;
    ntok = 0;
    for (int s = 0; s < NSEQ; s++) ntok += (size_t)(lens[s] = 1 + (s * 5) % 24);
    for (size_t i = 0; i < ntok; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = (int32_t)((x >> 33) % (uint64_t)vocab);
    }
}

/* Logits [ntok, V] of dir loaded as dtype (NULL on failure); *V its vocabulary. */
static float *lm_logits(const char *dir, qkv_dtype dtype, int64_t *V) {
    qkv_model_options o = {.struct_size = sizeof o, .dtype = dtype};
    qkv_lm *lm = NULL;
    CHECK_OK(qkv_lm_load_opts(dir, &o, &lm));
    if (!lm) return NULL;
    CHECK(qkv_lm_dtype(lm) == dtype);
    *V = qkv_lm_vocab_size(lm);
    if (ntok == 0) lm_inputs(*V);
    float *out = calloc(ntok * (size_t)*V, sizeof(float));
    CHECK_OK(qkv_lm_logits(NULL, lm, ids, lens, NSEQ, out));
    qkv_lm_free(lm);
    return out;
}

static int same_bits(const void *a, const void *b, size_t bytes) {
    return a && b && memcmp(a, b, bytes) == 0;
}

/* Min over positions of the cosine between the logits rows of a and b [ntok, V]. */
static double min_cosine(const float *a, const float *b, int64_t V) {
    double lo = 2;
    for (size_t r = 0; a && b && r < ntok; r++) {
        const float *x = a + r * (size_t)V, *y = b + r * (size_t)V;
        double ab = 0, aa = 0, bb = 0;
        for (int64_t j = 0; j < V; j++) {
            ab += (double)x[j] * y[j];
            aa += (double)x[j] * x[j];
            bb += (double)y[j] * y[j];
        }
        double c = ab / sqrt(aa * bb);
        lo = c < lo ? c : lo;
    }
    return lo;
}

/* stored_bf16: the fixture's file holds BF16 already (llama_tiny_untied), so bf16 and f32
 * loads must agree bit for bit; else (F32 files) the accuracy check, then the all-BF16 copy. */
static void lm_case(const char *root, const char *name, int stored_bf16) {
    char src[600], all[600];
    snprintf(src, sizeof src, MODELS "%s", name);
    snprintf(all, sizeof all, "%s/%s_all_%s", root, name, dn);
    ntok = 0;
    int64_t V = 0;
    float *f32 = lm_logits(src, QKV_DTYPE_F32, &V);
    float *b16 = lm_logits(src, dt, &V);
    const size_t bytes = ntok * (size_t)V * sizeof(float);
    if (stored_bf16 && dt == QKV_DTYPE_BF16) {
        if (plain_kernel())
            CHECK_MSG(same_bits(f32, b16, bytes), "%s: BF16 file: bf16 != f32 load", name);
        free(f32), free(b16);
        return;
    }
    const double lo = min_cosine(f32, b16, V);
    CHECK_MSG(lo >= 0.9995, "%s: logits cosine %s vs f32 %.7f < 0.9995", name, dn, lo);
    CHECK_MSG(!same_bits(f32, b16, bytes), "%s: %s gave the f32 logits bit for bit", name, dn);
    printf("%s: %s vs f32 logits over %zu positions: min cosine %.7f\n", name, dn, ntok, lo);
    if (plain_kernel() || dt == QKV_DTYPE_F16) {
        write_variant(src, all, ALL_16);
        int64_t V2 = 0;
        float *a32 = lm_logits(all, QKV_DTYPE_F32, &V2), *a16 = lm_logits(all, dt, &V2);
        CHECK_MSG(same_bits(a32, a16, bytes), "%s: all-%s file: %s != f32 on its values", name, dn,
                  dn);
        free(a32), free(a16);
    }
    free(f32), free(b16);
}

/* ---------------------------------------------------------------- int8 */

/* int8 (dtype I8) logits against f32 on the original file (the bound: the file's header). */
static void lm_int8(const char *name) {
    char src[600];
    snprintf(src, sizeof src, MODELS "%s", name);
    ntok = 0;
    int64_t V = 0;
    float *f32 = lm_logits(src, QKV_DTYPE_F32, &V);
    float *q8 = lm_logits(src, QKV_DTYPE_I8, &V);
    const double lo = min_cosine(f32, q8, V);
    CHECK_MSG(lo >= INT8_COS, "%s: logits cosine int8 vs f32 %.7f < %g", name, lo, INT8_COS);
    CHECK_MSG(!same_bits(f32, q8, ntok * (size_t)V * sizeof(float)),
              "%s: int8 gave the f32 logits bit for bit", name);
    printf("%s: int8 vs f32 logits over %zu positions: min cosine %.7f\n", name, ntok, lo);
    free(f32), free(q8);
}

/* ---------------------------------------------------------------- encoder-decoders */

#define NSRC 4

typedef struct {
    int32_t out[NSRC * 64];
    int64_t out_lens[NSRC];
    float scores[NSRC];
} s2s_result;

/* Beam search (3 beams, 12 tokens at most) over NSRC fixed sources of dir loaded as dtype. */
static int s2s_run(const char *dir, qkv_dtype dtype, s2s_result *r) {
    qkv_model_options o = {.struct_size = sizeof o, .dtype = dtype};
    qkv_seq2seq *m = NULL;
    memset(r, 0, sizeof *r);
    CHECK_OK(qkv_seq2seq_load_opts(dir, &o, &m));
    if (!m) return 0;
    CHECK(qkv_seq2seq_dtype(m) == dtype);
    const int64_t V = qkv_seq2seq_vocab_size(m);
    int32_t src[NSRC * 9];
    int64_t sl[NSRC];
    size_t k = 0;
    uint64_t x = 11;
    for (int s = 0; s < NSRC; s++) {
        sl[s] = 3 + 2 * s;
        for (int64_t i = 0; i < sl[s] - 1; i++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            src[k++] = (int32_t)(3 + (x >> 33) % (uint64_t)(V - 3));
        }
        src[k++] = qkv_seq2seq_eos_token(m);
    }
    qkv_translate_options t;
    qkv_seq2seq_default_options(m, &t);
    t.num_beams = 3;
    t.max_new_tokens = 12;
    const int64_t W = qkv_seq2seq_max_output(m, &t);
    int ok = W > 0 && W * NSRC <= (int64_t)(sizeof r->out / sizeof *r->out);
    CHECK(ok);
    if (ok)
        CHECK_OK(qkv_seq2seq_generate(NULL, m, src, sl, NSRC, &t, r->out, r->out_lens, r->scores));
    qkv_seq2seq_free(m);
    return ok;
}

/* An encoder-decoder loads and runs in int8: every output within bounds, and the dtype kept. */
static void s2s_int8(const char *src, const char *name) {
    s2s_result r;
    if (!s2s_run(src, QKV_DTYPE_I8, &r)) return;
    for (int s = 0; s < NSRC; s++)
        CHECK_MSG(r.out_lens[s] >= 1 && isfinite(r.scores[s]), "%s: int8 beam %d", name, s);
    printf("%s: int8 beam search ran (scores %.3f .. %.3f)\n", name, (double)r.scores[0],
           (double)r.scores[NSRC - 1]);
}

static void s2s_case(const char *root, const char *src, const char *name, int untied) {
    char all[600], rnd[600];
    snprintf(all, sizeof all, "%s/%s_all_%s", root, name, dn);
    snprintf(rnd, sizeof rnd, "%s/%s_rnd_%s", root, name, dn);
    static s2s_result f32, b16, a32, a16, r32;
    s2s_run(src, QKV_DTYPE_F32, &f32);
    s2s_run(src, dt, &b16);
    int same_ids = 0;
    for (int s = 0; s < NSRC; s++)
        same_ids += f32.out_lens[s] == b16.out_lens[s] &&
                    memcmp(f32.out + s * 64, b16.out + s * 64, 64 * sizeof(int32_t)) == 0;
    printf("%s: beam search %s vs f32: %d of %d outputs the same; scores", name, dn, same_ids,
           NSRC);
    for (int s = 0; s < NSRC; s++) printf(" %.5f/%.5f", b16.scores[s], f32.scores[s]);
    printf("\n");
    if (!plain_kernel() && dt == QKV_DTYPE_BF16) return;
    write_variant(src, all, ALL_16);
    s2s_run(all, QKV_DTYPE_F32, &a32);
    s2s_run(all, dt, &a16);
    CHECK_MSG(same_bits(&a32, &a16, sizeof a32), "%s: all-%s file: %s != f32 on its values", name,
              dn, dn);
    if (untied) {
        write_variant(src, rnd, MAT_ROUNDED);
        s2s_run(rnd, QKV_DTYPE_F32, &r32);
        CHECK_MSG(same_bits(&r32, &b16, sizeof r32),
                  "%s: rounded at load != the F32 file of rounded matrices", name);
    }
}

/* ---------------------------------------------------------------- options */

static void options(void) {
    qkv_lm *lm = NULL;
    qkv_seq2seq *m = NULL;
    CHECK_OK(qkv_lm_load_opts(MODELS "gpt2_tiny", NULL, &lm));
    CHECK(qkv_lm_dtype(lm) == QKV_DTYPE_F32);
    qkv_lm_free(lm);
    CHECK_OK(qkv_seq2seq_load_opts(MARIAN, NULL, &m));
    CHECK(qkv_seq2seq_dtype(m) == QKV_DTYPE_F32);
    qkv_seq2seq_free(m);
    CHECK(qkv_lm_dtype(NULL) == QKV_DTYPE_F32 && qkv_seq2seq_dtype(NULL) == QKV_DTYPE_F32);
    qkv_model_options o = {.struct_size = sizeof o, .dtype = QKV_DTYPE_I8};
    CHECK_OK(qkv_lm_load_opts(MODELS "gpt2_tiny", &o, &lm));
    CHECK(qkv_lm_dtype(lm) == QKV_DTYPE_I8);
    qkv_lm_free(lm);
    o.dtype = QKV_DTYPE_F64;
    lm = (qkv_lm *)&o;
    CHECK_STATUS(qkv_lm_load_opts(MODELS "gpt2_tiny", &o, &lm), QKV_ERR_INVALID_ARG);
    CHECK(lm == NULL && strstr(qkv_last_error(), "dtype 3") != NULL);
    CHECK_STATUS(qkv_seq2seq_load_opts(MARIAN, &o, &m), QKV_ERR_INVALID_ARG);
    CHECK(m == NULL && strstr(qkv_last_error(), "qkv_seq2seq_load") != NULL);
    o.dtype = (qkv_dtype)1000;
    CHECK_STATUS(qkv_lm_load_opts(MODELS "gpt2_tiny", &o, &lm), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_seq2seq_load_opts(MARIAN, &o, &m), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_lm_load_opts(NULL, NULL, &lm), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_seq2seq_load_opts(MARIAN, NULL, NULL), QKV_ERR_INVALID_ARG);
}

int main(void) {
    test_use_arch_from_env();
    test_print_kernel_isa("gemm_bf16_config");
    char root[] = "/tmp/qkv_decoders_bf16_XXXXXX";
    if (!mkdtemp(root)) {
        CHECK(0);
        return test_finish("decoders_bf16");
    }
    for (int f16 = 0; f16 < 2; f16++) {
        dt = f16 ? QKV_DTYPE_F16 : QKV_DTYPE_BF16;
        dn = f16 ? "f16" : "bf16";
        lm_case(root, "gpt2_tiny", 0);
        lm_case(root, "llama_tiny", 0);
        lm_case(root, "llama_tiny_untied", 1);
        s2s_case(root, MARIAN, "marian_tiny", 0);
        s2s_case(root, T5, "t5", 0);
        s2s_case(root, T5V11, "t5_v11", 1);
    }
    lm_int8("gpt2_tiny");
    lm_int8("llama_tiny");
    lm_int8("llama_tiny_untied");
    s2s_int8(MARIAN, "marian_tiny");
    s2s_int8(T5, "t5");
    s2s_int8(T5V11, "t5_v11");
    options();
    test_rm_rf(root);
    return test_finish("decoders_bf16");
}
