/* test_embed_bf16.c — BERT models loaded with bf16 weights (qkv_model_options.dtype, issue 18),
 * through the public API only, once per QKV_ARCH:
 *  - accuracy: all-MiniLM-L6-v2 (when installed) on the 201 sentences of
 *    tests/fixtures/embed/sentences.txt (every 8th on the scalar ISA), and the tiny BERT fixture on
 * random tokens: the cosine of every bf16 embedding with its f32 one is reported (min, mean) and
 * must be >= 0.9995 (int8: below). Why that bound holds with a wide margin: RNE rounding changes
 * every weight by a relative 2^-9 at most (u = 2^-9 for bf16's 8-bit significand), with signs that
 * do not line up, so each linear layer's output moves by about 2^-9/√3 ≈ 1.1e-3 relative (RMS).
 * Counting all 36 matrices of MiniLM's 6 blocks (q, k, v, output, two in the MLP) as independent
 * contributions that add in quadrature (LayerNorm keeps every block's scale), the embedding moves
 * by a relative δ ≈ √36 · 1.1e-3 ≈ 7e-3, so 1 - cos ≈ δ²/2 ≈ 2.5e-5. The check, 1 - cos <= 5e-4
 * (the target), leaves a margin of 20 over that estimate.
 *  - files: a BF16 checkpoint is packed as stored and gives, bit for bit, what the F32
 *    checkpoint rounded at load gives (both with dtype bf16; the BF16 matrices placed at odd
 *    addresses, which the format allows); with the plain bf16 kernel (the default) a model
 *    loaded as bf16 equals, bit for bit, the F32 model on the widened weights (all-BF16 file
 *    loaded both ways); F16 matrices (odd addresses too) are rounded through F32; no F32 copy
 *    of the matrices is kept (the library's live bytes after loading, counted through
 *    qkv_set_allocator);
 *  - f16 (dtype F16) the same way: cosines, F16 matrices as stored == F32 rounded at load,
 *    == the F32 model on their widening (plain kernel);
 *  - int8 (dtype I8, kernels/gemm_i8.h; BERT keeps the value projection in bf16, models/bert.c):
 *    the same cosines, every row >= 0.999 (issue 18's target) and their mean >= 0.9995 (the
 *    16-bit dtypes' bound). Why it is reachable: with scales per 32 k, rounding moves each
 *    weight and activation by ~2.5/(127·√12) ≈ 5.7e-3 relative RMS (a group's max at ±127, its
 *    RMS ~1/2.5 of that); the error that reaches the output comes from the layers whose output
 *    enters the residual stream undamped, and measured alone the value projection gave most of
 *    it (1 - mean cosine 2.7e-4 of 5.0e-4 with all six kinds of matrix in int8: min 0.99828);
 *    with it in bf16 MiniLM measured min 0.99919, mean 0.99976 (the tiny fixture 0.99981). The
 *    row bound is the target itself, not derived with a margin: a change of the format that
 *    loses accuracy should fail here.
 *  - options: NULL and zero-initialized options are f32; F16 and I8 load; other values
 * and a struct_size with unknown non-zero bytes INVALID_ARG, with a message naming the dtype. */
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

#define MINILM QKV_SOURCE_DIR "/models/all-MiniLM-L6-v2"
#define TINY QKV_SOURCE_DIR "/tests/fixtures/attnmap/bert_tiny"
#define INT8_COS 0.999       /* int8 embeddings vs f32, every row: issue 18's target */
#define INT8_COS_MEAN 0.9995 /* and their mean: the bound of the 16-bit dtypes */

/* ---------------------------------------------------------------- counting allocator */

/* Every allocation carries its size in front, so live bytes and their peak can be counted. */
static size_t live, peak;
static void *count_alloc(size_t size, size_t align, void *user) {
    (void)user;
    size_t head = align < 16 ? 16 : align;
    char *p = aligned_alloc(head, (size + head + head - 1) / head * head);
    if (!p) return NULL;
    ((size_t *)(p + head))[-1] = size;
    ((size_t *)(p + head))[-2] = head;
    live += size;
    if (live > peak) peak = live;
    return p + head;
}
static void count_free(void *q, void *user) {
    (void)user;
    if (!q) return;
    size_t size = ((size_t *)q)[-1], head = ((size_t *)q)[-2];
    live -= size;
    free((char *)q - head);
}

/* ---------------------------------------------------------------- helpers */

static qkv_model *load(const char *dir, qkv_dtype dtype) {
    qkv_model_options o = {.struct_size = sizeof o, .dtype = dtype};
    qkv_model *m = NULL;
    CHECK_OK(qkv_model_load_opts(dir, &o, &m));
    if (m) CHECK(qkv_model_dtype(m) == dtype);
    return m;
}

static double cosine(const float *a, const float *b, int64_t n) {
    double ab = 0, aa = 0, bb = 0;
    for (int64_t i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    return ab / sqrt(aa * bb);
}

/* Reports and checks the cosine of each pair of rows of a (dtype dn), b (f32) [n, dim]. */
static void check_cosines(const char *what, const char *dn, const float *a, const float *b,
                          size_t n, int64_t dim) {
    const double bound = strcmp(dn, "int8") == 0 ? INT8_COS : 0.9995;
    double lo = 2, sum = 0;
    int differ = 0;
    for (size_t i = 0; i < n; i++) {
        double c = cosine(a + i * (size_t)dim, b + i * (size_t)dim, dim);
        CHECK_MSG(c >= bound, "%s: %s row %zu: cosine %.7f < %g", what, dn, i, c, bound);
        lo = c < lo ? c : lo;
        sum += c;
    }
    if (strcmp(dn, "int8") == 0)
        CHECK_MSG(sum / (double)n >= INT8_COS_MEAN, "%s: int8 mean cosine %.7f < %g", what,
                  sum / (double)n, INT8_COS_MEAN);
    differ = memcmp(a, b, n * (size_t)dim * sizeof(float)) != 0;
    CHECK_MSG(differ, "%s: %s gave the f32 embeddings bit for bit (not rounded?)", what, dn);
    printf("%s: %s vs f32 cosine over %zu: min %.7f mean %.7f\n", what, dn, n, lo, sum / (double)n);
}

/* Sentence embeddings [n, dim] of the model at dir in dtype for ids/lens. */
static float *embed_tokens(const char *dir, qkv_dtype dtype, const int32_t *ids,
                           const int64_t *lens, size_t n) {
    qkv_model *m = load(dir, dtype);
    if (!m) return NULL;
    float *out = calloc(n * (size_t)qkv_model_dim(m), sizeof(float));
    CHECK_OK(qkv_embed_tokens(NULL, m, ids, lens, n, out));
    qkv_model_free(m);
    return out;
}

/* ---------------------------------------------------------------- accuracy */

/* step: every step-th sentence (the scalar ISA takes every 8th, so the sanitizer build stays
 * within the test's time limit; the other ISAs all 201). */
static void minilm_cosines(size_t step) {
    struct stat sb;
    if (stat(MINILM "/model.safetensors", &sb) != 0) {
        printf("all-MiniLM-L6-v2 not installed: its bf16 accuracy is not checked here\n");
        return;
    }
    size_t len;
    char *text = test_read_all(QKV_SOURCE_DIR "/tests/fixtures/embed/sentences.txt", &len);
    CHECK(text != NULL);
    if (!text) return;
    const char *lines[512];
    size_t lens[512], n = 0;
    size_t k = 0;
    for (char *p = text, *end = text + len; p < end && n < 512; k++) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t l = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (k % step == 0) {
            lines[n] = p;
            lens[n++] = l;
        }
        p += l + 1;
    }
    qkv_model *m32 = load(MINILM, QKV_DTYPE_F32);
    const qkv_dtype dts[] = {QKV_DTYPE_BF16, QKV_DTYPE_F16, QKV_DTYPE_I8};
    const char *dns[] = {"bf16", "f16", "int8"};
    for (int d = 0; d < 3 && m32; d++) {
        qkv_model *m16 = load(MINILM, dts[d]);
        if (!m16) continue;
        const int64_t dim = qkv_model_dim(m32);
        float *a = calloc(n * (size_t)dim, sizeof(float)), *b = calloc(n * (size_t)dim, 4);
        CHECK_OK(qkv_embed(NULL, m32, lines, lens, n, a));
        CHECK_OK(qkv_embed(NULL, m16, lines, lens, n, b));
        check_cosines("all-MiniLM-L6-v2", dns[d], b, a, n, dim);
        free(a), free(b);
        qkv_model_free(m16);
    }
    qkv_model_free(m32);
    free(text);
}

#define NSEQ 12
static int32_t tiny_ids[NSEQ * 40];
static int64_t tiny_lens[NSEQ];
static size_t tiny_tokens;

static void tiny_inputs(void) {
    uint64_t x = 18;
    for (int s = 0; s < NSEQ; s++) tiny_lens[s] = 1 + (s * 7) % 40;
    for (int s = 0; s < NSEQ; s++) tiny_tokens += (size_t)tiny_lens[s];
    for (size_t i = 0; i < tiny_tokens; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        tiny_ids[i] = (int32_t)((x >> 33) % 64); /* the fixture's vocabulary */
    }
}

static void tiny_cosines(void) {
    float *a = embed_tokens(TINY, QKV_DTYPE_F32, tiny_ids, tiny_lens, NSEQ);
    float *b = embed_tokens(TINY, QKV_DTYPE_BF16, tiny_ids, tiny_lens, NSEQ);
    float *h = embed_tokens(TINY, QKV_DTYPE_F16, tiny_ids, tiny_lens, NSEQ);
    float *q = embed_tokens(TINY, QKV_DTYPE_I8, tiny_ids, tiny_lens, NSEQ);
    if (a && b) check_cosines("bert_tiny fixture", "bf16", b, a, NSEQ, 32);
    if (a && h) check_cosines("bert_tiny fixture", "f16", h, a, NSEQ, 32);
    if (a && q) check_cosines("bert_tiny fixture", "int8", q, a, NSEQ, 32);
    free(a), free(b), free(h), free(q);
}

/* ---------------------------------------------------------------- files */

/* An encoder matrix: the six per-block linear weights (2-D, under encoder.layer.). */
static int is_matrix(const qkv_st_tensor *t) {
    return t->ndim == 2 && strstr(t->name, "encoder.layer.") != NULL;
}

typedef enum {
    MAT_BF16_ODD,  /* matrices BF16 at odd addresses (after a 1-byte tensor), the rest F32 */
    ALL_BF16,      /* every tensor BF16 */
    MAT_F16,       /* matrices F16, the rest F32 */
    MAT_F16_AS_F32 /* matrices F32 holding the F16 values widened, the rest F32 */
} variant;

/* dir/ = the tiny fixture's config and its weights rewritten as `v`. Returns the F32 matrix
 * elements in the file. */
static size_t write_variant(const char *dir, variant v) {
    char p[512];
    snprintf(p, sizeof p, "%s/config.json", dir);
    test_copy_file(TINY "/config.json", p);
    qkv_safetensors *st = NULL;
    CHECK_OK(qkv_safetensors_open(TINY "/model.safetensors", &st));
    if (!st) return 0;
    size_t n = qkv_safetensors_count(st), mat = 0, k = 0;
    qkv_st_write_tensor *w = calloc(n + 1, sizeof *w);
    void **bufs = calloc(n, sizeof *bufs);
    static const uint8_t pad = 0;
    static const int64_t one = 1;
    /* non-matrices first, then (MAT_BF16_ODD) the pad byte, then the matrices */
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1 && (v == MAT_BF16_ODD || v == MAT_F16))
            w[k++] = (qkv_st_write_tensor){"zz_pad", QKV_DTYPE_U8, 1, &one, &pad};
        for (size_t i = 0; i < n; i++) {
            const qkv_st_tensor *t = qkv_safetensors_tensor(st, i);
            if (is_matrix(t) != pass) continue;
            CHECK(t->dtype == QKV_DTYPE_F32);
            size_t numel = t->nbytes / 4;
            qkv_dtype d = QKV_DTYPE_F32;
            const void *data = t->data;
            if (v == ALL_BF16 || (pass && v == MAT_BF16_ODD)) {
                uint16_t *h = bufs[i] = malloc(numel * 2);
                qkv_f32_to_bf16_n(t->data, h, numel);
                d = QKV_DTYPE_BF16, data = h;
            } else if (pass && (v == MAT_F16 || v == MAT_F16_AS_F32)) {
                uint16_t *h = malloc(numel * 2);
                qkv_f32_to_f16_n(t->data, h, numel);
                if (v == MAT_F16) {
                    bufs[i] = h, d = QKV_DTYPE_F16, data = h;
                } else {
                    float *f = bufs[i] = malloc(numel * 4);
                    qkv_f16_to_f32_n(h, f, numel);
                    free(h);
                    data = f;
                }
            }
            if (pass) mat += numel;
            w[k++] = (qkv_st_write_tensor){t->name, d, t->ndim, t->shape, data};
        }
    }
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    CHECK_OK(qkv_safetensors_write(p, w, k, NULL, NULL, 0));
    for (size_t i = 0; i < n; i++) free(bufs[i]);
    free(bufs), free(w);
    qkv_safetensors_close(st);
    return mat;
}

static int same_bits(const float *a, const float *b, size_t n) {
    return a && b && memcmp(a, b, n * sizeof(float)) == 0;
}

/* 1 when bf16 models are packed for the plain kernel (FP32 activations), as now selected. */
static int plain_kernel(void) {
    qkv_gemm_bf16_config c;
    qkv__kernels()->gemm_bf16_config(&c);
    return !c.pairs;
}

static void files(void) {
    char root[] = "/tmp/qkv_embed_bf16_XXXXXX";
    if (!mkdtemp(root)) {
        CHECK(0);
        return;
    }
    char odd[600], all[600], f16[600], f16w[600];
    snprintf(odd, sizeof odd, "%s/odd", root);
    snprintf(all, sizeof all, "%s/all", root);
    snprintf(f16, sizeof f16, "%s/f16", root);
    snprintf(f16w, sizeof f16w, "%s/f16w", root);
    mkdir(odd, 0700), mkdir(all, 0700), mkdir(f16, 0700), mkdir(f16w, 0700);
    size_t mat = write_variant(odd, MAT_BF16_ODD);
    write_variant(all, ALL_BF16);
    write_variant(f16, MAT_F16);
    write_variant(f16w, MAT_F16_AS_F32);
    const size_t n = NSEQ * 32;

    /* F32 checkpoint rounded at load == the BF16 checkpoint packed as stored */
    float *from_f32 = embed_tokens(TINY, QKV_DTYPE_BF16, tiny_ids, tiny_lens, NSEQ);
    float *from_bf16 = embed_tokens(odd, QKV_DTYPE_BF16, tiny_ids, tiny_lens, NSEQ);
    CHECK_MSG(same_bits(from_f32, from_bf16, n), "F32 rounded at load != BF16 as stored");
    /* the plain bf16 kernel is the FP32 GEMM on the widened weights */
    if (plain_kernel()) {
        float *odd32 = embed_tokens(odd, QKV_DTYPE_F32, tiny_ids, tiny_lens, NSEQ);
        CHECK_MSG(same_bits(odd32, from_bf16, n), "BF16 matrices: bf16 != f32 on widened");
        float *a16 = embed_tokens(all, QKV_DTYPE_BF16, tiny_ids, tiny_lens, NSEQ);
        float *a32 = embed_tokens(all, QKV_DTYPE_F32, tiny_ids, tiny_lens, NSEQ);
        CHECK_MSG(same_bits(a16, a32, n), "all-BF16 file: bf16 != f32 on widened");
        free(odd32), free(a16), free(a32);
    }
    /* F16 matrices: widened exactly, then rounded as F32 ones are */
    float *h = embed_tokens(f16, QKV_DTYPE_BF16, tiny_ids, tiny_lens, NSEQ);
    float *hw = embed_tokens(f16w, QKV_DTYPE_BF16, tiny_ids, tiny_lens, NSEQ);
    CHECK_MSG(same_bits(h, hw, n), "F16 matrices != their F32 widening, both as bf16");
    free(h), free(hw), free(from_f32), free(from_bf16);
    /* dtype f16: F16 matrices (odd addresses) packed as stored == the F32 file rounded to f16 at
     * load == the F32 model on their widening (f16 always runs the plain kernel) */
    h = embed_tokens(f16, QKV_DTYPE_F16, tiny_ids, tiny_lens, NSEQ);
    float *r = embed_tokens(TINY, QKV_DTYPE_F16, tiny_ids, tiny_lens, NSEQ);
    CHECK_MSG(same_bits(h, r, n), "F16 matrices as stored != F32 rounded to f16 at load");
    hw = embed_tokens(f16w, QKV_DTYPE_F32, tiny_ids, tiny_lens, NSEQ);
    CHECK_MSG(same_bits(h, hw, n), "F16 matrices: f16 != f32 on widened");
    free(h), free(r), free(hw);

    /* memory: no F32 copy of the matrices stays (an all-BF16 file: f32 keeps an F32 copy and
     * F32 panels, at least 8 bytes a weight; bf16 its bf16 panels, about 2) */
    qkv_allocator a = {count_alloc, count_free, NULL};
    size_t after[2], peaks[2];
    for (int d = 0; d < 2; d++) {
        qkv_set_allocator(&a);
        live = peak = 0;
        qkv_model *m = load(all, d ? QKV_DTYPE_BF16 : QKV_DTYPE_F32);
        after[d] = live, peaks[d] = peak;
        qkv_model_free(m);
        CHECK_MSG(live == 0, "%zu bytes live after qkv_model_free", live);
        qkv_set_allocator(NULL);
    }
    printf("all-BF16 tiny file, %zu matrix weights: live bytes after load f32 %zu, bf16 %zu "
           "(peaks %zu, %zu)\n",
           mat, after[0], after[1], peaks[0], peaks[1]);
    CHECK_MSG(after[0] >= after[1] + 5 * mat, "bf16 load keeps %zu bytes, f32 %zu", after[1],
              after[0]);
    test_rm_rf(root);
}

/* ---------------------------------------------------------------- options */

static void options(void) {
    qkv_model *m = NULL;
    CHECK_OK(qkv_model_load_opts(TINY, NULL, &m));
    CHECK(qkv_model_dtype(m) == QKV_DTYPE_F32);
    qkv_model_free(m);
    qkv_model_options o = {0}; /* struct_size 0: the first layout */
    CHECK_OK(qkv_model_load_opts(TINY, &o, &m));
    CHECK(qkv_model_dtype(m) == QKV_DTYPE_F32);
    qkv_model_free(m);
    CHECK(qkv_model_dtype(NULL) == QKV_DTYPE_F32);
    o.struct_size = sizeof o;
    o.dtype = QKV_DTYPE_F16;
    CHECK_OK(qkv_model_load_opts(TINY, &o, &m));
    CHECK(qkv_model_dtype(m) == QKV_DTYPE_F16);
    qkv_model_free(m);
    o.dtype = QKV_DTYPE_I8;
    CHECK_OK(qkv_model_load_opts(TINY, &o, &m));
    CHECK(qkv_model_dtype(m) == QKV_DTYPE_I8);
    qkv_model_free(m);
    o.dtype = QKV_DTYPE_F64;
    m = (qkv_model *)&o;
    CHECK_STATUS(qkv_model_load_opts(TINY, &o, &m), QKV_ERR_INVALID_ARG);
    CHECK(strstr(qkv_last_error(), "dtype 3") != NULL);
    o.dtype = (qkv_dtype)1000;
    CHECK_STATUS(qkv_model_load_opts(TINY, &o, &m), QKV_ERR_INVALID_ARG);
    struct {
        qkv_model_options o;
        uint64_t future;
    } big = {{.struct_size = sizeof big, .dtype = QKV_DTYPE_BF16}, 1};
    CHECK_STATUS(qkv_model_load_opts(TINY, &big.o, &m), QKV_ERR_INVALID_ARG);
    big.future = 0; /* a newer program's unset field: accepted */
    CHECK_OK(qkv_model_load_opts(TINY, &big.o, &m));
    CHECK(qkv_model_dtype(m) == QKV_DTYPE_BF16);
    qkv_model_free(m);
    CHECK_STATUS(qkv_model_load_opts(NULL, NULL, &m), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_model_load_opts(TINY, NULL, NULL), QKV_ERR_INVALID_ARG);
}

int main(void) {
    qkv_arch arch = test_use_arch_from_env();
    tiny_inputs();
    options();
    tiny_cosines();
    files();               /* with the kernel selected (AMX by default where the CPU has it) */
    if (!plain_kernel()) { /* and the plain one, whose bits are the FP32 GEMM's */
        printf("files() again with the plain bf16 kernel\n");
        qkv__gemm_bf16_select(QKV_BF16_PLAIN);
        files();
        qkv__gemm_bf16_select(QKV_BF16_DEFAULT);
    }
    minilm_cosines(arch == QKV_ARCH_SCALAR ? 8 : 1);
    return test_finish("embed_bf16");
}
