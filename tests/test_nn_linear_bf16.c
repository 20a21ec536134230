/* test_nn_linear_bf16.c — the linear layer with bf16 weights (qkv_nn_linear.packed_bf16), run
 * once per QKV_ARCH with every bf16 kernel of that ISA on this CPU (the default plain kernel;
 * on AVX-512 with AVX512_BF16 also vdpbf16ps, selected explicitly):
 *  - forward (bias, GELU, residual, residual == out) against the reference in double on the
 *    bf16-rounded weights, every element within the bound derived from the formats
 *    (gemm_bf16.h; bound() below), not a tuned threshold;
 *  - plain kernels: bit-identical to the FP32 layer (qkv_nn_linear_packed, packed with the
 *    kernel's FP32 twin) on the widened weights, for every epilogue (the epilogue is the
 *    FP32 GEMM's own code);
 *  - 1 and 2 threads bit-identical; a residual overlapping out; invalid layers (both packed
 *    forms set, shapes that disagree) refused; NOMEM of the residual copy. */
#include "core/half.h"
#include "fault_alloc.h"
#include "kernels/dispatch.h"
#include "kernels/gemm.h"
#include "kernels/gemm_bf16.h"
#include "nn/nn.h"
#include "nn_testutil.h"
#include "qkv.h"
#include "test.h"
#include "test_arch.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static float urand(void) { return (float)(2.0 * nt_uniform() - 1.0); }

static float *falloc(int64_t n) {
    float *p = malloc(sizeof(float) * (size_t)(n ? n : 1));
    if (!p) abort();
    return p;
}

/* The bound of one output before the activation (gemm_bf16.h's formula), for n roundings
 * (K multiply-adds, one add per K block, the bias and the residual or the accumulated out),
 * S = Σ|x_k||w_k| + |b| + |r|, u = 2^-24, γ_n = n·u/(1 - n·u):
 *   plain: γ_n·S + n·2^-149 (gradual underflow)
 *   pairs: 2^-8·Σ|x||w| (each x rounded to bf16) + γ_n·(1 + 2^-8)·S
 *          + 2^-126·(Σ|x| + Σ|w| + n) (vdpbf16ps flushes subnormals). */
static double bound(int pairs, double n, double S, double Sxw, double sx, double sw) {
    const double u = 0x1p-24, gam = n * u / (1.0 - n * u);
    if (!pairs) return gam * S + n * 0x1p-149;
    return 0x1p-8 * Sxw + gam * (1.0 + 0x1p-8) * S + 0x1p-126 * (sx + sw + n);
}

static double gelu(double z) { return 0.5 * z * (1.0 + erf(z / sqrt(2.0))); }

typedef struct {
    const qkv_gemm_bf16_config *cfg;
    qkv_runtime *rt1, *rt2;
} ctx;

/* One layer (N, C) -> (N, OC): act NONE or GELU (erf), with or without bias and residual,
 * or accumulating (residual == out). */
static void run_case(const ctx *t, int64_t N, int64_t C, int64_t OC, qkv_act act, int bias,
                     int resid, int accum) {
    float *W = falloc(OC * C), *Wr = falloc(OC * C), *b = falloc(OC), *x = falloc(N * C);
    float *r = falloc(N * OC), *y = falloc(N * OC), *y2 = falloc(N * OC), *yf = falloc(N * OC);
    for (int64_t i = 0; i < OC * C; i++) {
        W[i] = nt_weight();
        Wr[i] = qkv__bf16_to_f32(qkv__f32_to_bf16(W[i])); /* the weights the layer holds */
    }
    for (int64_t i = 0; i < OC; i++) b[i] = urand();
    for (int64_t i = 0; i < N * C; i++) x[i] = urand();
    for (int64_t i = 0; i < N * OC; i++) r[i] = 4.0f * urand();
    qkv_gemm_bf16_packed *P = NULL;
    CHECK_OK(qkv__gemm_bf16_pack_f32(t->cfg, 1, C, OC, W, C, &P));
    for (int64_t i = 0; i < OC * C; i++) W[i] = NAN; /* the layer must not read it */
    qkv_nn_linear L = qkv_nn_linear_packed_bf16(P, bias ? b : NULL);
    CHECK(L.C == C && L.OC == OC && L.packed == NULL && L.w == NULL);
    const float *res = resid ? r : NULL;
    if (accum) {
        memcpy(y, r, sizeof(float) * (size_t)(N * OC));
        memcpy(y2, r, sizeof(float) * (size_t)(N * OC));
        res = y;
    }
    CHECK_OK(qkv_nn_linear_forward(t->rt1, &L, y, x, N, act, res));
    CHECK_OK(qkv_nn_linear_forward(t->rt2, &L, y2, x, N, act, accum ? y2 : res));
    CHECK_MSG(memcmp(y, y2, sizeof(float) * (size_t)(N * OC)) == 0,
              "%s N=%lld C=%lld OC=%lld: 1 and 2 threads differ", t->cfg->name, (long long)N,
              (long long)C, (long long)OC);
    /* against the double reference on the rounded weights */
    int64_t kc = qkv__gemm_k_block(t->cfg->kc, C), kblocks = (C + kc - 1) / kc;
    double worst = 0.0;
    int bad = 0;
    for (int64_t i = 0; i < N; i++)
        for (int64_t j = 0; j < OC; j++) {
            double z = bias ? (double)b[j] : 0.0, Sxw = 0, sx = 0, sw = 0;
            for (int64_t k = 0; k < C; k++) {
                z += (double)x[i * C + k] * (double)Wr[j * C + k];
                Sxw += fabs((double)x[i * C + k] * (double)Wr[j * C + k]);
                sx += fabs((double)x[i * C + k]);
                sw += fabs((double)Wr[j * C + k]);
            }
            double rv = resid || accum ? (double)r[i * OC + j] : 0.0;
            double S = Sxw + (bias ? fabs((double)b[j]) : 0.0) + fabs(rv);
            double n = (double)(C + kblocks + 2);
            double e = bound(t->cfg->pairs, n, S, Sxw, sx, sw), want;
            if (act == QKV_ACT_GELU_ERF) {
                /* |gelu'| <= 1.13; the GELU kernel's own error rel 1e-6 + abs 1e-15
                 * (docs/KERNELS.md); the residual add one more rounding */
                double g = gelu(z);
                e = 1.13 * e + 1e-6 * (fabs(g) + 1.13 * e) + 1e-15 + 0x1p-23 * (fabs(g) + fabs(rv));
                want = g + rv;
            } else {
                want = z + rv;
            }
            double err = fabs((double)y[i * OC + j] - want);
            if (!(err <= e)) bad++;
            if (err / (e > 0 ? e : 1) > worst) worst = err / (e > 0 ? e : 1);
        }
    CHECK_MSG(bad == 0, "%s N=%lld C=%lld OC=%lld act=%d: %d outside the bound (worst %.3g x)",
              t->cfg->name, (long long)N, (long long)C, (long long)OC, (int)act, bad, worst);
    /* plain kernels: the FP32 layer's bits on the widened weights */
    if (!t->cfg->pairs) {
        qkv_gemm_config f;
        t->cfg->f32_twin(&f);
        qkv_gemm_packed *PF = NULL;
        CHECK_OK(qkv__gemm_pack_b(&f, 1, C, OC, Wr, C, &PF));
        qkv_nn_linear LF = qkv_nn_linear_packed(PF, bias ? b : NULL);
        if (accum) memcpy(yf, r, sizeof(float) * (size_t)(N * OC));
        CHECK_OK(qkv_nn_linear_forward(t->rt2, &LF, yf, x, N, act, accum ? yf : res));
        CHECK_MSG(memcmp(y, yf, sizeof(float) * (size_t)(N * OC)) == 0,
                  "%s N=%lld C=%lld OC=%lld act=%d: not the FP32 twin's bits", t->cfg->name,
                  (long long)N, (long long)C, (long long)OC, (int)act);
        qkv__gemm_packed_free(PF);
    }
    qkv__gemm_bf16_packed_free(P);
    free(W), free(Wr), free(b), free(x), free(r), free(y), free(y2), free(yf);
}

static void test_shapes(const ctx *t) {
    static const int64_t shapes[][3] = {{1, 1, 1},      {3, 17, 5},      {16, 384, 384},
                                        {9, 384, 1536}, {33, 1536, 384}, {130, 64, 100}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        int64_t N = shapes[s][0], C = shapes[s][1], OC = shapes[s][2];
        run_case(t, N, C, OC, QKV_ACT_NONE, 0, 0, 0);
        run_case(t, N, C, OC, QKV_ACT_NONE, 1, 1, 0);
        run_case(t, N, C, OC, QKV_ACT_GELU_ERF, 1, 0, 0);
        run_case(t, N, C, OC, QKV_ACT_GELU_ERF, 1, 1, 0);
        run_case(t, N, C, OC, QKV_ACT_NONE, 1, 0, 1); /* residual == out: accumulate */
    }
}

/* A residual that overlaps out without being it: copied first, so the result is as if it
 * were separate. */
static void test_overlap(const ctx *t) {
    const int64_t N = 6, C = 40, OC = 24;
    float *W = falloc(OC * C), *x = falloc(N * C), *buf = falloc(N * OC + 8), *sep = falloc(N * OC),
          *want = falloc(N * OC);
    for (int64_t i = 0; i < OC * C; i++) W[i] = nt_weight();
    for (int64_t i = 0; i < N * C; i++) x[i] = urand();
    for (int64_t i = 0; i < N * OC + 8; i++) buf[i] = urand();
    qkv_gemm_bf16_packed *P = NULL;
    CHECK_OK(qkv__gemm_bf16_pack_f32(t->cfg, 1, C, OC, W, C, &P));
    qkv_nn_linear L = qkv_nn_linear_packed_bf16(P, NULL);
    memcpy(sep, buf + 8, sizeof(float) * (size_t)(N * OC));
    CHECK_OK(qkv_nn_linear_forward(t->rt1, &L, want, x, N, QKV_ACT_NONE, sep));
    CHECK_OK(qkv_nn_linear_forward(t->rt1, &L, buf, x, N, QKV_ACT_NONE, buf + 8));
    CHECK(memcmp(buf, want, sizeof(float) * (size_t)(N * OC)) == 0);
    qkv__gemm_bf16_packed_free(P);
    free(W), free(x), free(buf), free(sep), free(want);
}

typedef struct {
    const qkv_nn_linear *L;
    float *buf;
    const float *x;
} nomem_ctx;

static qkv_status overlap_call(qkv_runtime *rt, void *p) {
    nomem_ctx *c = p;
    return qkv_nn_linear_forward(rt, c->L, c->buf, c->x, 4, QKV_ACT_NONE, c->buf + 1);
}

static void test_args(const ctx *t) {
    float W[12], x[12], y[20] = {0}; /* y + 1 is the overlapping residual */
    for (int i = 0; i < 12; i++) W[i] = x[i] = urand();
    qkv_gemm_bf16_packed *P = NULL;
    qkv_gemm_packed *PF = NULL;
    CHECK_OK(qkv__gemm_bf16_pack_f32(t->cfg, 1, 3, 4, W, 3, &P));
    CHECK_OK(qkv__gemm_pack_b(NULL, 1, 3, 4, W, 3, &PF));
    qkv_nn_linear L = qkv_nn_linear_packed_bf16(P, NULL);
    L.packed = PF; /* both forms */
    CHECK_STATUS(qkv_nn_linear_forward(NULL, &L, y, x, 4, QKV_ACT_NONE, NULL), QKV_ERR_INVALID_ARG);
    CHECK(strstr(qkv_last_error(), "packed_bf16") != NULL);
    L = qkv_nn_linear_packed_bf16(P, NULL);
    L.OC = 3; /* disagrees with the packed weights */
    CHECK_STATUS(qkv_nn_linear_forward(NULL, &L, y, x, 4, QKV_ACT_NONE, NULL), QKV_ERR_INVALID_ARG);
    CHECK(strstr(qkv_last_error(), "packed_bf16 is (3, 4)") != NULL);
    L = qkv_nn_linear_packed_bf16(P, NULL);
    CHECK_STATUS(qkv_nn_linear_forward(NULL, &L, y, x, 4, (qkv_act)99, NULL), QKV_ERR_INVALID_ARG);
    /* the overlapping residual's copy fails in turn: NOMEM, nothing leaked */
    nomem_ctx c = {&L, y, x};
    CHECK(fault_each_alloc(overlap_call, &c, 20) >= 1);
    qkv__gemm_bf16_packed_free(P);
    qkv__gemm_packed_free(PF);
}

static void test_config(const qkv_gemm_bf16_config *cfg, qkv_runtime *rt1, qkv_runtime *rt2) {
    printf("kernel: %s (%s activations)\n", cfg->name, cfg->pairs ? "bf16" : "FP32");
    ctx t = {cfg, rt1, rt2};
    test_shapes(&t);
    test_overlap(&t);
    test_args(&t);
}

int main(void) {
    qkv_arch arch = test_use_arch_from_env();
    qkv_runtime *rt1 = NULL, *rt2 = NULL;
    CHECK_OK(qkv_runtime_create(1, &rt1));
    CHECK_OK(qkv_runtime_create(2, &rt2));
    qkv_gemm_bf16_config cfg;
    qkv__kernels()->gemm_bf16_config(&cfg);
    test_config(&cfg, rt1, rt2);
    /* on AVX-512, every other bf16 kernel the CPU and build have, selected explicitly */
    static const int kinds[] = {QKV_BF16_PLAIN, QKV_BF16_DPBF16, QKV_BF16_AMX};
    for (size_t i = 0; arch == QKV_ARCH_AVX512 && i < sizeof kinds / sizeof *kinds; i++) {
        qkv_gemm_bf16_config other;
        qkv__gemm_bf16_select(kinds[i]);
        qkv__kernels()->gemm_bf16_config(&other);
        qkv__gemm_bf16_select(QKV_BF16_DEFAULT);
        if (strcmp(other.name, cfg.name) != 0) test_config(&other, rt1, rt2);
    }
    qkv_runtime_free(rt1);
    qkv_runtime_free(rt2);
    return test_finish("nn_linear_bf16");
}
