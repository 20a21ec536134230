/* test_attention_golden.c — the reference attention against PyTorch golden files.
 *
 * The files tests/fixtures/attention/NN_name.safetensors are written by
 * tools/gen_attention_golden.py (PyTorch in float64 on float32 inputs, rounded to float32: the
 * exact answers); each holds one configuration's descriptor in its __metadata__, its inputs, and
 * out, lse, dq, dk, dv for loss = Σ out ∘ dout. This test needs no Python: it reads the committed
 * files.
 *
 * Tolerance, for every element of out, lse, dq, dk, dv:
 *   |got - golden| <= ATOL + RTOL |golden|,  RTOL = 1e-4 (fp32, reductions over long axes),
 *   ATOL = 1e-5 (values are O(1): inputs are standard normal); -inf in lse must match exactly.
 * The maximum absolute and relative errors are printed per file and overall. */
#include "qkv.h"
#include "test.h"

#include <dirent.h>
#include <errno.h>
#include <stdint.h>

#define RTOL 1e-4
#define ATOL 1e-5
#define MIN_CONFIGS 40

enum { T_OUT, T_LSE, T_DQ, T_DK, T_DV, T_COUNT };
static const char *const tensor_names[T_COUNT] = {"out", "lse", "dq", "dk", "dv"};
static double g_max_abs[T_COUNT], g_max_rel[T_COUNT];

/* A metadata value parsed as an integer; records a failure if absent or malformed. */
static int64_t meta_i64(const qkv_safetensors *st, const char *file, const char *key) {
    const char *s = qkv_safetensors_metadata_get(st, key);
    char *end = NULL;
    errno = 0;
    long long v = s ? strtoll(s, &end, 10) : 0;
    CHECK_MSG(s && *s && *end == '\0' && errno == 0, "%s: metadata '%s' = '%s'", file, key,
              s ? s : "(absent)");
    return (int64_t)v;
}

static float meta_f32(const qkv_safetensors *st, const char *file, const char *key) {
    const char *s = qkv_safetensors_metadata_get(st, key);
    char *end = NULL;
    double v = s ? strtod(s, &end) : 0;
    CHECK_MSG(s && *s && *end == '\0', "%s: metadata '%s' = '%s'", file, key, s ? s : "(absent)");
    return (float)v; /* the generator stores the float32 value exactly */
}

/* A copy of tensor `name` (aligned, owned by the caller), checked for dtype and shape; NULL if
 * absent and optional, else a recorded failure. */
static void *load(const qkv_safetensors *st, const char *file, const char *name, qkv_dtype dtype,
                  int ndim, const int64_t *shape, int optional) {
    const qkv_st_tensor *t = qkv_safetensors_find(st, name);
    if (!t) {
        CHECK_MSG(optional, "%s: tensor '%s' missing", file, name);
        return NULL;
    }
    int ok = t->dtype == dtype && t->ndim == ndim;
    for (int a = 0; ok && a < ndim; a++) ok = t->shape[a] == shape[a];
    CHECK_MSG(ok, "%s: tensor '%s' has an unexpected dtype or shape", file, name);
    if (!ok) return NULL;
    void *p = malloc(t->nbytes ? t->nbytes : 1);
    memcpy(p, t->data, t->nbytes);
    return p;
}

/* Compares n values; updates the per-tensor and global maxima; returns the worst ratio
 * err / (ATOL + RTOL |golden|) (<= 1 passes). */
static double compare(const char *file, int which, const float *got, const float *gold, int64_t n,
                      double *max_abs) {
    double worst = 0;
    *max_abs = 0;
    for (int64_t t = 0; t < n; t++) {
        double a = got[t], b = gold[t];
        if (isinf(b) && b < 0) { /* lse of a row with no visible key */
            CHECK_MSG(a == b, "%s: %s[%lld] = %g, golden -inf", file, tensor_names[which],
                      (long long)t, a);
            continue;
        }
        double err = fabs(a - b), ratio = err / (ATOL + RTOL * fabs(b));
        if (!(err <= *max_abs)) *max_abs = err; /* NaN propagates */
        if (!(ratio <= worst)) worst = ratio;
        if (fabs(b) > 1e-2 && err / fabs(b) > g_max_rel[which]) g_max_rel[which] = err / fabs(b);
        CHECK_MSG(ratio <= 1.0, "%s: %s[%lld] = %.9g, golden %.9g", file, tensor_names[which],
                  (long long)t, a, b);
    }
    if (*max_abs > g_max_abs[which]) g_max_abs[which] = *max_abs;
    return worst;
}

static void run_file(const char *dir, const char *file) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    qkv_safetensors *st = NULL;
    CHECK_OK(qkv_safetensors_open(path, &st));
    if (!st) return;
    const char *fmt = qkv_safetensors_metadata_get(st, "format");
    CHECK_MSG(fmt && strcmp(fmt, "qkv-attention-golden-1") == 0, "%s: format %s", file,
              fmt ? fmt : "(absent)");

    qkv_attention_desc d;
    memset(&d, 0, sizeof d);
    d.batch = meta_i64(st, file, "batch");
    d.q_len = meta_i64(st, file, "q_len");
    d.kv_len = meta_i64(st, file, "kv_len");
    d.n_heads = meta_i64(st, file, "n_heads");
    d.n_kv_heads = meta_i64(st, file, "n_kv_heads");
    d.head_dim = meta_i64(st, file, "head_dim");
    d.v_head_dim = meta_i64(st, file, "v_head_dim");
    d.scale = meta_f32(st, file, "scale");
    d.causal = (int)meta_i64(st, file, "causal");
    d.window_left = meta_i64(st, file, "window_left");
    d.window_right = meta_i64(st, file, "window_right");
    d.bias_stride_b = meta_i64(st, file, "bias_stride_b");
    d.bias_stride_h = meta_i64(st, file, "bias_stride_h");
    d.bias_stride_q = meta_i64(st, file, "bias_stride_q");
    int64_t B = d.batch, Tq = d.q_len, Tk = d.kv_len, Hq = d.n_heads, Hk = d.n_kv_heads;
    int64_t D = d.head_dim, Dv = d.v_head_dim ? d.v_head_dim : d.head_dim;
    if (B <= 0 || Tq <= 0 || Tk <= 0 || Hq <= 0 || Hk <= 0 || D <= 0 || Dv <= 0 ||
        B * Tq * Hq * (D + Dv) > (INT64_C(1) << 26)) {
        CHECK_MSG(0, "%s: implausible sizes", file);
        qkv_safetensors_close(st);
        return;
    }

    const int64_t s_q[4] = {B, Tq, Hq, D}, s_k[4] = {B, Tk, Hk, D}, s_v[4] = {B, Tk, Hk, Dv};
    const int64_t s_o[4] = {B, Tq, Hq, Dv}, s_lse[3] = {B, Hq, Tq}, s_b[1] = {B}, s_h[1] = {Hq};
    float *q = load(st, file, "q", QKV_DTYPE_F32, 4, s_q, 0);                 /* [B, Tq, Hq, D] */
    float *k = load(st, file, "k", QKV_DTYPE_F32, 4, s_k, 0);                 /* [B, Tk, Hk, D] */
    float *v = load(st, file, "v", QKV_DTYPE_F32, 4, s_v, 0);                 /* [B, Tk, Hk, Dv] */
    float *dout = load(st, file, "dout", QKV_DTYPE_F32, 4, s_o, 0);           /* [B, Tq, Hq, Dv] */
    float *g_out = load(st, file, "out", QKV_DTYPE_F32, 4, s_o, 0);           /* [B, Tq, Hq, Dv] */
    float *g_lse = load(st, file, "lse", QKV_DTYPE_F32, 3, s_lse, 0);         /* [B, Hq, Tq] */
    float *g_dq = load(st, file, "dq", QKV_DTYPE_F32, 4, s_q, 0);             /* [B, Tq, Hq, D] */
    float *g_dk = load(st, file, "dk", QKV_DTYPE_F32, 4, s_k, 0);             /* [B, Tk, Hk, D] */
    float *g_dv = load(st, file, "dv", QKV_DTYPE_F32, 4, s_v, 0);             /* [B, Tk, Hk, Dv] */
    int32_t *lens = load(st, file, "kv_lens", QKV_DTYPE_I32, 1, s_b, 1);      /* [B] */
    float *slopes = load(st, file, "alibi_slopes", QKV_DTYPE_F32, 1, s_h, 1); /* [Hq] */
    float *bias = NULL; /* compact [B or 1, Hq or 1, Tq or 1, Tk]; indexed through strides */
    const qkv_st_tensor *bt = qkv_safetensors_find(st, "bias");
    if (bt) {
        int64_t last = (B - 1) * d.bias_stride_b + (Hq - 1) * d.bias_stride_h +
                       (Tq - 1) * d.bias_stride_q + Tk - 1;
        CHECK_MSG(bt->dtype == QKV_DTYPE_F32 && (int64_t)(bt->nbytes / 4) > last,
                  "%s: bias too small for its strides", file);
        if (bt->dtype == QKV_DTYPE_F32 && (int64_t)(bt->nbytes / 4) > last) {
            bias = malloc(bt->nbytes);
            memcpy(bias, bt->data, bt->nbytes);
        }
    }
    d.kv_lens = lens;
    d.alibi_slopes = slopes;
    d.bias = bias;

    int64_t nq = B * Tq * Hq * D, nk = B * Tk * Hk * D, nv = B * Tk * Hk * Dv;
    int64_t no = B * Tq * Hq * Dv, nlse = B * Hq * Tq;
    float *out = malloc((size_t)no * sizeof *out);   /* [B, Tq, Hq, Dv] */
    float *lse = malloc((size_t)nlse * sizeof *lse); /* [B, Hq, Tq] */
    float *dq = malloc((size_t)nq * sizeof *dq);     /* [B, Tq, Hq, D] */
    float *dk = malloc((size_t)nk * sizeof *dk);     /* [B, Tk, Hk, D] */
    float *dv = malloc((size_t)nv * sizeof *dv);     /* [B, Tk, Hk, Dv] */
    if (q && k && v && dout && g_out && g_lse && g_dq && g_dk && g_dv && (bias || !bt)) {
        CHECK_OK(qkv_attention_forward(NULL, &d, q, k, v, out, lse));
        CHECK_OK(qkv_attention_backward(NULL, &d, q, k, v, out, lse, dout, dq, dk, dv));
        double abs_err[T_COUNT], worst = 0;
        worst = fmax(worst, compare(file, T_OUT, out, g_out, no, &abs_err[T_OUT]));
        worst = fmax(worst, compare(file, T_LSE, lse, g_lse, nlse, &abs_err[T_LSE]));
        worst = fmax(worst, compare(file, T_DQ, dq, g_dq, nq, &abs_err[T_DQ]));
        worst = fmax(worst, compare(file, T_DK, dk, g_dk, nk, &abs_err[T_DK]));
        worst = fmax(worst, compare(file, T_DV, dv, g_dv, nv, &abs_err[T_DV]));
        const char *oracle = qkv_safetensors_metadata_get(st, "oracle");
        printf("  %-56s %-4s max abs err out %.1e lse %.1e dq %.1e dk %.1e dv %.1e  "
               "(%.3f of tolerance)\n",
               file, oracle ? oracle : "?", abs_err[T_OUT], abs_err[T_LSE], abs_err[T_DQ],
               abs_err[T_DK], abs_err[T_DV], worst);
    }
    free(q);
    free(k);
    free(v);
    free(dout);
    free(g_out);
    free(g_lse);
    free(g_dq);
    free(g_dk);
    free(g_dv);
    free(lens);
    free(slopes);
    free(bias);
    free(out);
    free(lse);
    free(dq);
    free(dk);
    free(dv);
    qkv_safetensors_close(st);
}

static int cmp_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(void) {
    const char *dir = QKV_SOURCE_DIR "/tests/fixtures/attention";
    DIR *dh = opendir(dir);
    CHECK_MSG(dh != NULL, "cannot open %s", dir);
    if (!dh) return test_finish("attention_golden");
    char *names[512] = {0};
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(dh)) != NULL && n < 512) {
        size_t len = strlen(e->d_name);
        if (len > 12 && strcmp(e->d_name + len - 12, ".safetensors") == 0)
            names[n++] = strdup(e->d_name);
    }
    closedir(dh);
    qsort(names, n, sizeof *names, cmp_names);
    printf("%zu golden files in %s (tolerance |err| <= %g + %g |golden|)\n", n, dir, ATOL, RTOL);
    CHECK_MSG(n >= MIN_CONFIGS, "only %zu golden files (want >= %d)", n, MIN_CONFIGS);
    for (size_t t = 0; t < n; t++) {
        run_file(dir, names[t]);
        free(names[t]);
    }
    for (int t = 0; t < T_COUNT; t++)
        printf("max over all files: %-3s abs err %.2e, rel err (|golden| > 1e-2) %.2e\n",
               tensor_names[t], g_max_abs[t], g_max_rel[t]);
    return test_finish("attention_golden");
}
