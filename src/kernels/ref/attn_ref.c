/* attn_ref.c — portable micro-kernels of fused attention (contracts: kernels/attn_kernels.h).
 *
 * Plain loops in float (the compiler may vectorize them for the baseline ISA), expf from libm.
 * They complete the ref kernel table and let the flash driver run on any machine; the public
 * attention entry points still send the scalar ISA to the reference (attention_ref.c). */
#include "kernels/attn_kernels.h"

#include "core/rng.h"

#include <math.h>

static void dot_f32_ref(int64_t rows, int64_t cols, int64_t kd, const float *a, int64_t lda,
                        const float *bt, int64_t ldb, float *s, int64_t lds) {
    int64_t cpad = (cols + QKV_ATTN_COL_ALIGN - 1) / QKV_ATTN_COL_ALIGN * QKV_ATTN_COL_ALIGN;
    for (int64_t r = 0; r < rows; r++) {
        float *sr = s + r * lds; /* [cpad] */
        for (int64_t c = 0; c < cpad; c++) sr[c] = 0.0f;
        for (int64_t d = 0; d < kd; d++) {
            float av = a[r * lda + d];
            const float *b = bt + d * ldb;
            for (int64_t c = 0; c < cpad; c++) sr[c] += av * b[c];
        }
    }
}

static void acc_f32_ref(int64_t rows, int64_t n, int64_t kd, const float *p, int64_t prs,
                        int64_t pks, const float *bm, int64_t ldb, float *c, int64_t ldc,
                        const float *row_scale) {
    for (int64_t r = 0; r < rows; r++) {
        float *cr = c + r * ldc; /* [n] */
        if (row_scale)
            for (int64_t x = 0; x < n; x++) cr[x] *= row_scale[r];
        for (int64_t k = 0; k < kd; k++) {
            float pv = p[r * prs + k * pks];
            const float *b = bm + k * ldb;
            for (int64_t x = 0; x < n; x++) cr[x] += pv * b[x];
        }
    }
}

static void exp_f32_ref(const float *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = expf(x[i]);
}

static void softmax_f32_ref(int64_t rows, int64_t cols, float *s, int64_t lds, float *m, float *l,
                            float *alpha, const float *z) {
    for (int64_t r = 0; r < rows; r++) { /* column r of the key-major tile */
        float mn = m[r];
        for (int64_t c = 0; c < cols; c++) mn = s[c * lds + r] > mn ? s[c * lds + r] : mn;
        float mu = mn == -INFINITY ? 0.0f : mn, sum = 0.0f;
        alpha[r] = expf(m[r] - mu);
        for (int64_t c = 0; c < cols; c++) {
            float e = expf(s[c * lds + r] - mu);
            sum += e;
            s[c * lds + r] = z ? e * z[c * lds + r] : e;
        }
        l[r] = l[r] * alpha[r] + sum;
        m[r] = mn;
    }
}

static void bwd_ds_f32_ref(int64_t rows, int64_t cols, float *s, float *dp, int64_t ld,
                           const float *lse, const float *drow, const float *z) {
    for (int64_t r = 0; r < rows; r++) {
        float *sr = s + r * ld, *dr = dp + r * ld; /* [cols] each */
        for (int64_t c = 0; c < cols; c++) {
            float zc = z ? z[r * ld + c] : 1.0f;
            float pr = lse[r] == -INFINITY ? 0.0f : expf(fminf(sr[c] - lse[r], 0.0f));
            dr[c] = lse[r] == -INFINITY ? 0.0f : pr * (zc * dr[c] - drow[r]);
            sr[c] = pr * zc;
        }
    }
}

static void dropout_f32_ref(int64_t rows, int64_t cols, const uint64_t *first, uint64_t col0,
                            const qkv_attn_dropout *dr, float *z, int64_t rs, int64_t cs) {
    uint64_t seed = (uint64_t)dr->key[1] << 32 | dr->key[0];
    uint64_t stream = (uint64_t)dr->stream[1] << 32 | dr->stream[0];
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            float u = qkv__rng_uniform(seed, stream, first[r] + col0 + (uint64_t)c);
            z[r * rs + c * cs] = u >= dr->p ? dr->keep : 0.0f;
        }
}

void qkv__attn_config_ref(qkv_attn_kernels *k) {
    k->name = "attn_f32_ref";
    k->dot = dot_f32_ref;
    k->acc = acc_f32_ref;
    k->softmax = softmax_f32_ref;
    k->bwd_ds = bwd_ds_f32_ref;
    k->dropout = dropout_f32_ref;
    k->exp = exp_f32_ref;
}
