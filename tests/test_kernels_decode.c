/* test_kernels_decode.c — the decoding kernels of the active ISA (run once per QKV_ARCH; the
 * scalar run checks the ref kernels):
 *   attn_decode_f32       against a plain double-precision attention written here, on head
 *                         counts 1..8, head dims 1..100 (every tail), 1..70 keys, padded key
 *                         strides, keys gathered through a row list (repeats included), flat
 *                         and very peaked scores (scale up to 50);
 *   log_softmax_stats_f32 + log_softmax_topk_f32 against what beam search did before them:
 *                         log_softmax_f32 of the row, banned entries set to -inf, += add, and a
 *                         plain insertion top-k over the whole row — the same values bit for bit
 *                         and the same indices, on row lengths 1..200, 4095, 58101, random rows,
 *                         rows of many ties (quantized), banned entries, add = 0 / -3.5 / -1e9
 *                         (every value rounds to the same float: the order is the index order);
 *                         and non-finite rows (NaN, +inf, all -inf) give non-finite stats.
 * Tolerance of attn_decode, from the float format (u = 2^-24, γ_k = k·u / (1 − k·u)), for one
 * head with A_j = Σ_d |q_d · k_jd|, E = γ_(D+1) · |scale| · max_j A_j (the error of one score:
 * D fused multiply-adds and a horizontal sum, then · scale) and ε the exp kernel's relative
 * error (QKV_ATTN_EXP_MAX_REL_ERR):
 *   |got − want| <= max_j |v_j| · (2(e^(2E) − 1) + 2ε + 2u·n/e + 2γ_n + 4u + n·2^-125)
 * — a score error moves the weight p_j by at most the factor e^(±2E) against the max; the
 * rounding of s_j − max (relative u) moves it by e^(u·x_j) with x_j e^(−x_j) <= 1/e; the sums
 * over n keys of the weights and of p_j·v_j add γ_n each; 1/Σ and the final product u each;
 * exp's results below 2^-125 are off by at most 2^-125 absolute. */
#include "kernels/attn_kernels.h"
#include "kernels/dispatch.h"
#include "nn_testutil.h"
#include "qkv.h"
#include "test.h"
#include "test_arch.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

static float urand(float lo, float hi) { return (float)(lo + (hi - lo) * nt_uniform()); }
static size_t urand_index(size_t n) { return (size_t)(nt_uniform() * (double)n) % n; }

static double gamma_k(double k) { return k * 0x1p-24 / (1.0 - k * 0x1p-24); }

/* The bound above for head h. */
static double decode_bound(size_t h, size_t D, size_t n, const float *q, const float *k, size_t ldk,
                           const int64_t *rows, float scale, double vmax) {
    const double u = 0x1p-24;
    double amax = 0.0;
    for (size_t j = 0; j < n; j++) {
        const float *kj = k + (rows ? (size_t)rows[j] : j) * ldk + h * D;
        double a = 0.0;
        for (size_t d = 0; d < D; d++) a += fabs((double)q[h * D + d] * kj[d]);
        amax = a > amax ? a : amax;
    }
    const double E = gamma_k((double)D + 1) * fabs((double)scale) * amax;
    return vmax *
           (2.0 * expm1(2.0 * E) + 2.0 * QKV_ATTN_EXP_MAX_REL_ERR + 2.0 * u * (double)n / M_E +
            2.0 * gamma_k((double)n) + 4.0 * u + (double)n * 0x1p-125);
}

/* ---------------------------------------------------------------- attn_decode */

static void attn_plain(size_t H, size_t D, size_t n, const float *q, const float *k, size_t ldk,
                       const float *v, size_t ldv, const int64_t *rows, float scale, double *out) {
    double *s = malloc(n * sizeof *s);
    for (size_t h = 0; h < H; h++) {
        double m = -INFINITY, l = 0.0;
        for (size_t j = 0; j < n; j++) {
            double a = 0.0;
            const size_t r = rows ? (size_t)rows[j] : j;
            for (size_t d = 0; d < D; d++) a += (double)q[h * D + d] * k[r * ldk + h * D + d];
            s[j] = a * scale;
            if (s[j] > m) m = s[j];
        }
        for (size_t j = 0; j < n; j++) l += (s[j] = exp(s[j] - m));
        for (size_t d = 0; d < D; d++) {
            double o = 0.0;
            for (size_t j = 0; j < n; j++)
                o += s[j] * v[(rows ? (size_t)rows[j] : j) * ldv + h * D + d];
            out[h * D + d] = o / l;
        }
    }
    free(s);
}

/* gather: the n keys are rows picked at random (repeats allowed) among 2n + 1 */
static void attn_case(const qkv_kernels *kt, size_t H, size_t D, size_t n, size_t pad, float scale,
                      int gather) {
    const size_t ld = H * D + pad, nk = gather ? 2 * n + 1 : n;
    float *q = calloc(H * D, sizeof *q), *k = calloc(nk * ld, sizeof *k);
    float *v = calloc(nk * ld, sizeof *v), *out = calloc(H * D, sizeof *out);
    float *scratch = malloc(n * sizeof *scratch);
    double *want = malloc(H * D * sizeof *want);
    int64_t *rows = gather ? malloc(n * sizeof *rows) : NULL;
    for (size_t j = 0; gather && j < n; j++) rows[j] = (int64_t)urand_index(nk);
    for (size_t i = 0; i < H * D; i++) q[i] = urand(-1, 1);
    for (size_t i = 0; i < nk * ld; i++) k[i] = urand(-1, 1), v[i] = urand(-2, 2);
    attn_plain(H, D, n, q, k, ld, v, ld, rows, scale, want);
    kt->attn_decode_f32(H, D, n, q, k, ld, v, ld, rows, scale, out, scratch);
    double vmax = 0.0;
    for (size_t i = 0; i < nk * ld; i++) vmax = fabs(v[i]) > vmax ? fabs(v[i]) : vmax;
    for (size_t h = 0; h < H; h++) {
        const double bound = decode_bound(h, D, n, q, k, ld, rows, scale, vmax);
        for (size_t i = h * D; i < (h + 1) * D; i++)
            CHECK_MSG(fabs(out[i] - want[i]) <= bound,
                      "attn_decode H %zu D %zu n %zu pad %zu scale %g gather %d: out[%zu] = %.9g, "
                      "want %.9g, bound %.3g",
                      H, D, n, pad, (double)scale, gather, i, (double)out[i], want[i], bound);
    }
    free(q), free(k), free(v), free(out), free(scratch), free(want), free(rows);
}

static void test_attn_decode(const qkv_kernels *kt) {
    static const size_t Hs[] = {1, 3, 8}, Ds[] = {1, 5, 8, 15, 16, 17, 31, 33, 64, 65, 100};
    static const size_t ns[] = {1, 2, 3, 4, 5, 7, 8, 9, 31, 70};
    for (size_t a = 0; a < sizeof Hs / sizeof *Hs; a++)
        for (size_t b = 0; b < sizeof Ds / sizeof *Ds; b++)
            for (size_t c = 0; c < sizeof ns / sizeof *ns; c++) {
                attn_case(kt, Hs[a], Ds[b], ns[c], 0, 1.0f / sqrtf((float)Ds[b]), 0);
                attn_case(kt, Hs[a], Ds[b], ns[c], 3, 0.125f, 0);
                attn_case(kt, Hs[a], Ds[b], ns[c], 1, 0.25f, 1);
            }
    attn_case(kt, 8, 64, 40, 0, 50.0f, 0); /* nearly one-hot weights */
    attn_case(kt, 8, 64, 40, 0, 0.0f, 1);  /* uniform weights */
}

/* ---------------------------------------------------------------- log_softmax_topk */

/* The selection beam search used before the kernel: insertion over the whole row. */
static void topk_plain(const float *x, size_t n, size_t k, float *val, int64_t *idx) {
    size_t have = 0;
    for (size_t i = 0; i < n; i++) {
        const float v = x[i];
        if (have == k && !(v > val[k - 1])) continue;
        size_t j = have < k ? have++ : k - 1;
        while (j > 0 && v > val[j - 1]) {
            val[j] = val[j - 1];
            idx[j] = idx[j - 1];
            j--;
        }
        val[j] = v;
        idx[j] = (int64_t)i;
    }
}

static void topk_case(const qkv_kernels *kt, size_t n, size_t k, int pattern, float add,
                      size_t n_ban) {
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    float *val = malloc(k * sizeof *val), *wval = malloc(k * sizeof *wval);
    int64_t *idx = malloc(k * sizeof *idx), *widx = malloc(k * sizeof *widx);
    for (size_t i = 0; i < n; i++)
        x[i] = pattern == 0   ? urand(-12, 12)
               : pattern == 1 ? (float)(int)urand(-3, 3)     /* many exact ties */
                              : urand(-1e-6f, 1e-6f) + 7.0f; /* ties after rounding */
    size_t *ban = malloc((n_ban ? n_ban : 1) * sizeof *ban);
    for (size_t b = 0; b < n_ban; b++) ban[b] = urand_index(n);
    /* before: log_softmax, bans, + add, selection */
    kt->log_softmax_f32(x, y, 1, n);
    for (size_t b = 0; b < n_ban; b++) y[ban[b]] = -INFINITY;
    for (size_t i = 0; i < n; i++) y[i] += add;
    topk_plain(y, n, k, wval, widx);
    /* now: stats of the raw row, bans on the raw row, fused selection */
    float m;
    double ls;
    kt->log_softmax_stats_f32(x, n, &m, &ls);
    CHECK(isfinite(m) && isfinite(ls));
    for (size_t b = 0; b < n_ban; b++) x[ban[b]] = -INFINITY;
    kt->log_softmax_topk_f32(x, n, m, ls, add, k, val, idx);
    int same = 1;
    for (size_t j = 0; j < k; j++)
        same &= memcmp(&val[j], &wval[j], sizeof(float)) == 0 && idx[j] == widx[j];
    CHECK_MSG(same, "log_softmax_topk n %zu k %zu pattern %d add %g bans %zu differs", n, k,
              pattern, (double)add, n_ban);
    free(x), free(y), free(val), free(wval), free(idx), free(widx), free(ban);
}

static void test_topk(const qkv_kernels *kt) {
    static const float adds[] = {0.0f, -3.5f, -1.0e9f};
    static const size_t ks[] = {1, 2, 8, 9};
    for (size_t n = 1; n <= 200; n += (n < 70 ? 1 : 13))
        for (size_t a = 0; a < sizeof ks / sizeof *ks; a++) {
            const size_t k = ks[a] < n ? ks[a] : n;
            for (int pattern = 0; pattern < 3; pattern++)
                for (size_t b = 0; b < sizeof adds / sizeof *adds; b++) {
                    topk_case(kt, n, k, pattern, adds[b], 0);
                    topk_case(kt, n, k, pattern, adds[b], n / 3 < 5 ? n / 3 : 5);
                }
        }
    for (int pattern = 0; pattern < 3; pattern++) {
        topk_case(kt, 4095, 8, pattern, -2.0f, 3);
        topk_case(kt, 58101, 8, pattern, -1.25f, 2);
        topk_case(kt, 58101, 64, pattern, 0.0f, 0);
    }
    topk_case(kt, 10, 10, 1, 0.0f, 10); /* k = n, many bans (some twice) */
    /* non-finite rows: the stats say so (callers then take log_softmax_f32's path) */
    float r[5] = {1, 2, NAN, 3, 4}, m;
    double ls;
    kt->log_softmax_stats_f32(r, 5, &m, &ls);
    CHECK(!isfinite(m) || !isfinite(ls));
    r[2] = INFINITY;
    kt->log_softmax_stats_f32(r, 5, &m, &ls);
    CHECK(!isfinite(m) || !isfinite(ls));
    for (int i = 0; i < 5; i++) r[i] = -INFINITY;
    kt->log_softmax_stats_f32(r, 5, &m, &ls);
    CHECK(!isfinite(m) || !isfinite(ls));
}

int main(void) {
    test_use_arch_from_env();
    const qkv_kernels *k = qkv__kernels();
    test_print_kernel_isa("attn_decode_f32");
    test_print_kernel_isa("log_softmax_topk_f32");
    test_attn_decode(k);
    test_topk(k);
    return test_finish("kernels_decode");
}
