/* test_kernels_gemm.c — the blocked GEMM of the active ISA (run once per QKV_ARCH) against the
 * naive triple loop: every transpose case, alpha/beta (beta 0 ignores NaN in C), edge sizes
 * around the register and cache blocks, leading dimensions larger than the row, K = 0, the
 * fused epilogues, bit-identical results for 1..3 threads, argument errors. */
#include "kernels/gemm.h"
#include "qkv.h"
#include "test.h"
#include "test_arch.h"

#include <stdint.h>

static uint64_t seed = 12345;
static float urand(void) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((seed >> 40) & 0xffffff) / (float)(1 << 24) * 2.0f - 1.0f;
}

static double max_rel_err(const float *got, const float *want, int64_t M, int64_t N, int64_t ld,
                          int64_t K) {
    double worst = 0;
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double g = got[i * ld + j], w = want[i * ld + j];
            /* error scale: sqrt(K) ulps of the typical magnitude of a product sum */
            double e = fabs(g - w) / (1.0 + fabs(w));
            if (!(e <= worst)) worst = e; /* NaN propagates as worst */
        }
    (void)K;
    return worst;
}

static int run_case(qkv_runtime *rt, int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                    float beta, int pad, const qkv_gemm_epilogue *epi, int nan_c) {
    int64_t lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
    int64_t arows = ta ? K : M, brows = tb ? N : K;
    float *A = malloc(sizeof(float) * (size_t)(arows * lda + 1));
    float *B = malloc(sizeof(float) * (size_t)(brows * ldb + 1));
    float *C = malloc(sizeof(float) * (size_t)(M * ldc + 1));
    float *R = malloc(sizeof(float) * (size_t)(M * ldc + 1));
    for (int64_t i = 0; i < arows * lda; i++) A[i] = urand();
    for (int64_t i = 0; i < brows * ldb; i++) B[i] = urand();
    for (int64_t i = 0; i < M * ldc; i++) C[i] = R[i] = nan_c ? NAN : urand();
    qkv__gemm_f32_naive(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, R, ldc, epi);
    qkv_status s = qkv__gemm_f32(rt, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, epi);
    CHECK_OK(s);
    double err = max_rel_err(C, R, M, N, ldc, K);
    int ok = err <= 2e-5 * sqrt((double)(K ? K : 1));
    /* padding columns are never written */
    for (int64_t i = 0; i < M && ok; i++)
        for (int64_t j = N; j < ldc; j++)
            if (!nan_c && C[i * ldc + j] != R[i * ldc + j]) ok = 0;
    CHECK_MSG(ok, "ta=%d tb=%d M=%lld N=%lld K=%lld alpha=%g beta=%g pad=%d epi=%d err=%g", ta, tb,
              (long long)M, (long long)N, (long long)K, alpha, beta, pad, epi ? (int)epi->act : -1,
              err);
    free(A), free(B), free(C), free(R);
    return ok;
}

int main(void) {
    test_use_arch_from_env();
    qkv_runtime *rt1 = NULL, *rt2 = NULL, *rt3 = NULL;
    CHECK_OK(qkv_runtime_create(1, &rt1));
    CHECK_OK(qkv_runtime_create(2, &rt2));
    CHECK_OK(qkv_runtime_create(3, &rt3));

    /* sizes around every block of every ISA (MR 4/6/8, NR 8/16/48, KC 256/384, MC 128-144) */
    const int64_t ms[] = {1, 2, 5, 6, 7, 13, 14, 15, 29, 33, 141, 150};
    const int64_t ns[] = {1, 3, 8, 15, 16, 17, 31, 32, 33, 47, 48, 49, 65, 100};
    const int64_t ks[] = {0, 1, 2, 7, 64, 255, 256, 257, 383, 385, 600, 769};
    int n = 0;
    for (size_t a = 0; a < sizeof ms / sizeof *ms; a++)
        for (size_t b = 0; b < sizeof ns / sizeof *ns; b++)
            for (size_t c = 0; c < sizeof ks / sizeof *ks; c++) {
                int ta = (int)((a + c) & 1), tb = (int)((b + c) >> 1 & 1);
                if (ms[a] * ns[b] * ks[c] > 3000000) continue;
                run_case(n % 2 ? rt2 : rt1, ta, tb, ms[a], ns[b], ks[c], 1.0f, 0.0f, (int)(n % 3),
                         NULL, 0);
                n++;
            }
    /* all transpose cases, alpha/beta, beta 0 with NaN in C */
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            run_case(rt2, ta, tb, 37, 45, 300, 0.5f, 1.0f, 3, NULL, 0);
            run_case(rt2, ta, tb, 37, 45, 300, -2.0f, 0.25f, 0, NULL, 0);
            run_case(rt2, ta, tb, 37, 45, 300, 1.0f, 0.0f, 1, NULL, 1);
        }
    /* epilogues */
    float bias[200], res[300 * 210];
    for (int i = 0; i < 200; i++) bias[i] = urand();
    for (int i = 0; i < 300 * 210; i++) res[i] = urand();
    qkv_act acts[] = {QKV_ACT_NONE, QKV_ACT_GELU_ERF, QKV_ACT_GELU_TANH, QKV_ACT_RELU,
                      QKV_ACT_SILU};
    for (size_t i = 0; i < sizeof acts / sizeof *acts; i++) {
        qkv_gemm_epilogue e = {bias, acts[i], NULL, 0};
        run_case(rt2, 0, 1, 50, 70, 260, 1.0f, 0.0f, 0, &e, 0);
        qkv_gemm_epilogue e2 = {i % 2 ? bias : NULL, acts[i], res, 210};
        run_case(rt3, 0, 1, 290, 200, 33, 1.0f, 0.5f, 2, &e2, 0);
        qkv_gemm_epilogue e3 = {bias, acts[i], res, 210};
        run_case(rt1, 1, 0, 20, 200, 0, 1.0f, 0.5f, 2, &e3, 0); /* K = 0 */
    }
    /* results do not depend on the thread count */
    {
        int64_t M = 300, N = 250, K = 700;
        float *A = malloc(sizeof(float) * (size_t)(M * K)),
              *B = malloc(sizeof(float) * (size_t)(K * N));
        float *C1 = malloc(sizeof(float) * (size_t)(M * N)),
              *C2 = malloc(sizeof(float) * (size_t)(M * N));
        float *C3 = malloc(sizeof(float) * (size_t)(M * N));
        for (int64_t i = 0; i < M * K; i++) A[i] = urand();
        for (int64_t i = 0; i < K * N; i++) B[i] = urand();
        CHECK_OK(qkv__gemm_f32(rt1, 0, 0, M, N, K, 1, A, K, B, N, 0, C1, N, NULL));
        CHECK_OK(qkv__gemm_f32(rt2, 0, 0, M, N, K, 1, A, K, B, N, 0, C2, N, NULL));
        CHECK_OK(qkv__gemm_f32(rt3, 0, 0, M, N, K, 1, A, K, B, N, 0, C3, N, NULL));
        CHECK(memcmp(C1, C2, sizeof(float) * (size_t)(M * N)) == 0);
        CHECK(memcmp(C1, C3, sizeof(float) * (size_t)(M * N)) == 0);
        free(A), free(B), free(C1), free(C2), free(C3);
    }
    /* argument errors */
    float x[4] = {0};
    CHECK_STATUS(qkv__gemm_f32(rt1, 0, 0, -1, 2, 2, 1, x, 2, x, 2, 0, x, 2, NULL),
                 QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv__gemm_f32(rt1, 0, 0, 2, 2, 2, 1, x, 1, x, 2, 0, x, 2, NULL),
                 QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv__gemm_f32(rt1, 0, 0, 2, 2, 2, 1, NULL, 2, x, 2, 0, x, 2, NULL),
                 QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv__gemm_f32(rt1, 0, 0, 2, 2, 2, 1, x, 2, x, 2, 0, x, 1, NULL),
                 QKV_ERR_INVALID_ARG);
    CHECK_OK(qkv__gemm_f32(rt1, 0, 0, 0, 2, 2, 1, NULL, 2, NULL, 2, 0, NULL, 2, NULL));
    qkv_runtime_free(rt1);
    qkv_runtime_free(rt2);
    qkv_runtime_free(rt3);
    return test_finish("kernels_gemm");
}
