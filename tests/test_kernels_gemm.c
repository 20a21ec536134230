/* test_kernels_gemm.c — the blocked GEMM of the active ISA (run once per QKV_ARCH) against the
 * naive triple loop: every transpose case, alpha/beta (beta 0 ignores NaN in C), edge sizes
 * around the register and cache blocks, leading dimensions larger than the row, K = 0, the
 * fused epilogues, bit-identical results for 1..3 threads, argument errors, a residual that
 * aliases C. Prepacked B: bit-identical to the unpacked GEMM (every shape class, both layouts
 * of B, with and without the small-M in-place-A kernel, row by row vs batched), still valid
 * after the active ISA changes, NOMEM at every allocation, argument errors. */
#include "kernels/dispatch.h"
#include "kernels/gemm.h"
#include "qkv.h"
#include "test.h"
#include "test_arch.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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

/* qkv__gemm_f32_with(cfg) on B vs qkv__gemm_f32_packed on B packed under cfg: memcmp over the
 * whole C buffer (padding included), same inputs. Also checks the packed B is no longer read:
 * B is overwritten with NaN before the packed call. */
static int packed_case(const qkv_gemm_config *cfg, qkv_runtime *rt, int ta, int tb, int64_t M,
                       int64_t N, int64_t K, float alpha, float beta, int pad,
                       const qkv_gemm_epilogue *epi) {
    int64_t lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
    int64_t arows = ta ? K : M, brows = tb ? N : K;
    size_t nb = (size_t)(brows * ldb + 1), nc = (size_t)(M * ldc + 1);
    float *A = malloc(sizeof(float) * (size_t)(arows * lda + 1));
    float *B = malloc(sizeof(float) * nb);
    float *C1 = malloc(sizeof(float) * nc), *C2 = malloc(sizeof(float) * nc);
    for (int64_t i = 0; i < arows * lda; i++) A[i] = urand();
    for (int64_t i = 0; i < brows * ldb; i++) B[i] = urand();
    for (size_t i = 0; i < nc; i++) C1[i] = C2[i] = urand();
    qkv_gemm_packed *P = NULL;
    CHECK_OK(qkv__gemm_pack_b(cfg, tb, K, N, B, ldb, &P));
    CHECK_OK(
        qkv__gemm_f32_with(cfg, rt, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C1, ldc, epi));
    for (size_t i = 0; i < nb; i++) B[i] = NAN;
    CHECK_OK(qkv__gemm_f32_packed(rt, ta, M, A, lda, P, alpha, beta, C2, ldc, epi));
    int ok = memcmp(C1, C2, sizeof(float) * nc) == 0;
    CHECK_MSG(ok, "packed != unpacked: %s ta=%d tb=%d M=%lld N=%lld K=%lld pad=%d epi=%d",
              cfg->name, ta, tb, (long long)M, (long long)N, (long long)K, pad,
              epi ? (int)epi->act : -1);
    qkv__gemm_packed_free(P);
    free(A), free(B), free(C1), free(C2);
    return ok;
}

/* Prepacked B == unpacked, bit for bit, with the ISA's config and with its small-M kernel
 * turned off (A always packed), on the edge shapes of every ISA's blocks. */
static void test_packed(qkv_runtime *rt1, qkv_runtime *rt2) {
    qkv_gemm_config cfg, nosmall;
    qkv__kernels()->gemm_f32_config(&cfg);
    nosmall = cfg;
    nosmall.ukr_rows = NULL;
    const int64_t ms[] = {1, 2, 3, 5, 6, 7, 8, 9, 13, 16, 17, 33, 64, 65, 150};
    const int64_t ns[] = {1, 3, 8, 16, 17, 47, 48, 49, 95, 97, 300};
    const int64_t ks[] = {0, 1, 3, 7, 8, 9, 64, 255, 256, 257, 383, 384, 385, 769};
    int n = 0;
    for (size_t a = 0; a < sizeof ms / sizeof *ms; a++)
        for (size_t b = 0; b < sizeof ns / sizeof *ns; b++)
            for (size_t c = 0; c < sizeof ks / sizeof *ks; c++) {
                if (ms[a] * ns[b] * ks[c] > 2000000) continue;
                int ta = (int)((a + c) % 3 == 0), tb = (int)((b + c + a) & 1);
                const qkv_gemm_config *k = n % 3 == 2 ? &nosmall : &cfg;
                float beta = n % 4 == 0 ? 0.0f : n % 4 == 1 ? 1.0f : 0.5f;
                packed_case(k, n % 2 ? rt2 : rt1, ta, tb, ms[a], ns[b], ks[c], n % 5 ? 1.0f : -0.5f,
                            beta, (int)(n % 3), NULL);
                n++;
            }
    /* epilogues, both layouts of B, both configs */
    float bias[300], res[160 * 310];
    for (int i = 0; i < 300; i++) bias[i] = urand();
    for (int i = 0; i < 160 * 310; i++) res[i] = urand();
    for (int act = QKV_ACT_NONE; act <= QKV_ACT_TANH; act++)
        for (int tb = 0; tb < 2; tb++) {
            qkv_gemm_epilogue e = {
                act % 2 ? bias : NULL, (qkv_act)act, act > 1 ? res : NULL, 310, NULL, 0, NULL, 0};
            packed_case(&cfg, rt2, 0, tb, 5, 300, 400, 1.0f, 0.0f, 1, &e);
            packed_case(&cfg, rt1, 0, tb, 150, 97, 385, 1.0f, 0.0f, 0, &e);
            packed_case(&nosmall, rt2, 0, tb, 7, 300, 400, 1.0f, 0.25f, 2, &e);
            packed_case(&cfg, rt2, 1, tb, 9, 200, 0, 1.0f, 0.5f, 2, &e); /* K = 0 */
        }
}

/* Each row computed alone (M = 1, the decode case) equals the same row of one batched call:
 * the small-M kernel, the packed-A kernel and the unpacked GEMM agree bit for bit. */
static void test_rows_vs_batch(qkv_runtime *rt) {
    const int64_t M = 70, N = 200, K = 777; /* K: 3 blocks; N: an edge panel */
    float *A = malloc(sizeof(float) * (size_t)(M * K)),
          *W = malloc(sizeof(float) * (size_t)(N * K));
    float *Cb = malloc(sizeof(float) * (size_t)(M * N)),
          *Cr = malloc(sizeof(float) * (size_t)(M * N));
    float *Cu = malloc(sizeof(float) * (size_t)(M * N)), bias[200];
    for (int64_t i = 0; i < M * K; i++) A[i] = urand();
    for (int64_t i = 0; i < N * K; i++) W[i] = urand();
    for (int i = 0; i < 200; i++) bias[i] = urand();
    qkv_gemm_epilogue e = {bias, QKV_ACT_GELU_TANH, NULL, 0, NULL, 0, NULL, 0};
    qkv_gemm_packed *P = NULL;
    CHECK_OK(qkv__gemm_pack_b(NULL, 1, K, N, W, K, &P));
    CHECK(qkv__gemm_packed_k(P) == K && qkv__gemm_packed_n(P) == N);
    CHECK(qkv__gemm_packed_bytes(P) >= (size_t)(N * K) * sizeof(float));
    CHECK_OK(qkv__gemm_f32(rt, 0, 1, M, N, K, 1.0f, A, K, W, K, 0.0f, Cu, N, &e));
    CHECK_OK(qkv__gemm_f32_packed(rt, 0, M, A, K, P, 1.0f, 0.0f, Cb, N, &e));
    for (int64_t i = 0; i < M; i++)
        CHECK_OK(qkv__gemm_f32_packed(rt, 0, 1, A + i * K, K, P, 1.0f, 0.0f, Cr + i * N, N, &e));
    CHECK(memcmp(Cu, Cb, sizeof(float) * (size_t)(M * N)) == 0);
    CHECK(memcmp(Cu, Cr, sizeof(float) * (size_t)(M * N)) == 0);
    /* rows in chunks of 3 (a batch of 3 decoding sequences) */
    for (int64_t i = 0; i < M; i += 3) {
        int64_t m = M - i < 3 ? M - i : 3;
        CHECK_OK(qkv__gemm_f32_packed(rt, 0, m, A + i * K, K, P, 1.0f, 0.0f, Cr + i * N, N, &e));
    }
    CHECK(memcmp(Cu, Cr, sizeof(float) * (size_t)(M * N)) == 0);
    qkv__gemm_packed_free(P);
    free(A), free(W), free(Cb), free(Cr), free(Cu);
}

/* A handle packed under one ISA keeps computing with it after the active ISA changes. */
static void test_packed_survives_arch_change(qkv_runtime *rt) {
    qkv_arch before = qkv_arch_active();
    const int64_t M = 10, N = 100, K = 300;
    float *A = malloc(sizeof(float) * (size_t)(M * K)),
          *W = malloc(sizeof(float) * (size_t)(N * K));
    float *C1 = malloc(sizeof(float) * (size_t)(M * N)),
          *C2 = malloc(sizeof(float) * (size_t)(M * N));
    for (int64_t i = 0; i < M * K; i++) A[i] = urand();
    for (int64_t i = 0; i < N * K; i++) W[i] = urand();
    qkv_gemm_config cfg;
    qkv__kernels()->gemm_f32_config(&cfg);
    qkv_gemm_packed *P = NULL;
    CHECK_OK(qkv__gemm_pack_b(NULL, 1, K, N, W, K, &P));
    CHECK_OK(qkv__gemm_f32_with(&cfg, rt, 0, 1, M, N, K, 1.0f, A, K, W, K, 0.0f, C1, N, NULL));
    qkv_arch other = before == QKV_ARCH_SCALAR ? qkv_arch_best() : QKV_ARCH_SCALAR;
    CHECK_OK(qkv_arch_set(other));
    CHECK_OK(qkv__gemm_f32_packed(rt, 0, M, A, K, P, 1.0f, 0.0f, C2, N, NULL));
    CHECK(memcmp(C1, C2, sizeof(float) * (size_t)(M * N)) == 0);
    CHECK_OK(qkv_arch_set(before));
    qkv__gemm_packed_free(P);
    free(A), free(W), free(C1), free(C2);
}

/* The residual may be C itself (the residual stream updated in place), for any beta and on
 * both entry points: the result must be that of a separate copy of the residual. Before the
 * fix, the first K block overwrote C before the epilogue read it. */
static void test_residual_alias(qkv_runtime *rt) {
    const int64_t M = 21, N = 70, K = 500, ldc = 75;
    float *A = malloc(sizeof(float) * (size_t)(M * K)),
          *W = malloc(sizeof(float) * (size_t)(N * K));
    float *C = malloc(sizeof(float) * (size_t)(M * ldc)),
          *R = malloc(sizeof(float) * (size_t)(M * ldc));
    float *X = malloc(sizeof(float) * (size_t)(M * ldc)), bias[70];
    for (int64_t i = 0; i < M * K; i++) A[i] = urand();
    for (int64_t i = 0; i < N * K; i++) W[i] = urand();
    for (int i = 0; i < 70; i++) bias[i] = urand();
    qkv_gemm_packed *P = NULL;
    CHECK_OK(qkv__gemm_pack_b(NULL, 1, K, N, W, K, &P));
    for (int packed = 0; packed < 2; packed++)
        for (int b = 0; b < 2; b++) {
            float beta = b ? 0.5f : 0.0f;
            for (int64_t i = 0; i < M * ldc; i++) C[i] = R[i] = X[i] = urand();
            qkv_gemm_epilogue sep = {bias, QKV_ACT_GELU_ERF, X, ldc, NULL, 0, NULL,
                                     0}; /* X: a copy of C */
            qkv_gemm_epilogue alias = {bias, QKV_ACT_GELU_ERF, C, ldc, NULL, 0, NULL, 0};
            CHECK_OK(qkv__gemm_f32(rt, 0, 1, M, N, K, 1.0f, A, K, W, K, beta, R, ldc, &sep));
            if (packed)
                CHECK_OK(qkv__gemm_f32_packed(rt, 0, M, A, K, P, 1.0f, beta, C, ldc, &alias));
            else
                CHECK_OK(qkv__gemm_f32(rt, 0, 1, M, N, K, 1.0f, A, K, W, K, beta, C, ldc, &alias));
            CHECK_MSG(memcmp(C, R, sizeof(float) * (size_t)(M * ldc)) == 0,
                      "residual == C: packed=%d beta=%g", packed, beta);
        }
    /* a residual shifted by one row inside C (partial overlap) */
    for (int64_t i = 0; i < M * ldc; i++) C[i] = R[i] = X[i] = urand();
    qkv_gemm_epilogue sep = {NULL, QKV_ACT_NONE, X + ldc, ldc, NULL, 0, NULL, 0};
    qkv_gemm_epilogue shifted = {NULL, QKV_ACT_NONE, C + ldc, ldc, NULL, 0, NULL, 0};
    CHECK_OK(qkv__gemm_f32(rt, 0, 1, M - 1, N, K, 1.0f, A, K, W, K, 0.0f, R, ldc, &sep));
    CHECK_OK(qkv__gemm_f32(rt, 0, 1, M - 1, N, K, 1.0f, A, K, W, K, 0.0f, C, ldc, &shifted));
    CHECK(memcmp(C, R, sizeof(float) * (size_t)((M - 1) * ldc)) == 0);
    qkv__gemm_packed_free(P);
    free(A), free(W), free(C), free(R), free(X);
}

static long n_attempt, fail_at = -1;
static void *failing_alloc(size_t size, size_t align, void *user) {
    (void)user;
    if (n_attempt++ == fail_at) return NULL;
    return aligned_alloc(align, (size + align - 1) / align * align);
}
static void plain_free(void *p, void *user) {
    (void)user;
    free(p);
}

/* Fails every allocation of pack_b and of a packed product in turn: NOMEM, *out NULL, no leak
 * (ASan), then success once nothing fails. */
static void test_packed_nomem(void) {
    const int64_t M = 20, N = 60, K = 300;
    float *A = malloc(sizeof(float) * (size_t)(M * K)),
          *W = malloc(sizeof(float) * (size_t)(N * K));
    float *C = malloc(sizeof(float) * (size_t)(M * N)),
          *R = malloc(sizeof(float) * (size_t)(M * N));
    for (int64_t i = 0; i < M * K; i++) A[i] = urand();
    for (int64_t i = 0; i < N * K; i++) W[i] = urand();
    CHECK_OK(qkv__gemm_f32(NULL, 0, 1, M, N, K, 1.0f, A, K, W, K, 0.0f, R, N, NULL));
    qkv_allocator fa = {failing_alloc, plain_free, NULL};
    qkv_set_allocator(&fa);
    int done = 0;
    for (long n = 0; n < 100 && !done; n++) {
        n_attempt = 0;
        fail_at = n;
        qkv_gemm_packed *P = (qkv_gemm_packed *)1;
        qkv_status s = qkv__gemm_pack_b(NULL, 1, K, N, W, K, &P);
        if (s == QKV_OK) {
            /* a packed product that needs memory: M > rows_max packs A; the residual is C */
            qkv_gemm_epilogue e = {NULL, QKV_ACT_NONE, C, N, NULL, 0, NULL, 0};
            memset(C, 0, sizeof(float) * (size_t)(M * N));
            s = qkv__gemm_f32_packed(NULL, 1, M, A, M, P, 1.0f, 0.0f, C, N, &e);
            qkv__gemm_packed_free(P);
            if (s == QKV_OK) done = 1;
        } else {
            CHECK(P == NULL);
        }
        if (!done) CHECK_MSG(s == QKV_ERR_NOMEM, "allocation %ld: status %d", n, (int)s);
    }
    fail_at = -1;
    qkv_set_allocator(NULL);
    CHECK(done);
    free(A), free(W), free(C), free(R);
}

static void test_packed_args(void) {
    float x[16] = {0};
    qkv_gemm_packed *P = (qkv_gemm_packed *)1;
    CHECK_STATUS(qkv__gemm_pack_b(NULL, 0, 2, 2, x, 2, NULL), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv__gemm_pack_b(NULL, 0, -1, 2, x, 2, &P), QKV_ERR_INVALID_ARG);
    CHECK(P == NULL);
    CHECK_STATUS(qkv__gemm_pack_b(NULL, 0, 2, -2, x, 2, &P), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv__gemm_pack_b(NULL, 0, 2, 2, NULL, 2, &P), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv__gemm_pack_b(NULL, 0, 2, 3, x, 2, &P), QKV_ERR_INVALID_ARG); /* ldb < N */
    CHECK_STATUS(qkv__gemm_pack_b(NULL, 1, 3, 2, x, 2, &P), QKV_ERR_INVALID_ARG); /* ldb < K */
    CHECK_STATUS(qkv__gemm_f32_packed(NULL, 0, 2, x, 2, NULL, 1, 0, x, 2, NULL),
                 QKV_ERR_INVALID_ARG);
    CHECK_OK(qkv__gemm_pack_b(NULL, 1, 2, 2, x, 2, &P));
    CHECK_STATUS(qkv__gemm_f32_packed(NULL, 0, -1, x, 2, P, 1, 0, x, 2, NULL), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv__gemm_f32_packed(NULL, 0, 2, x, 1, P, 1, 0, x, 2, NULL), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv__gemm_f32_packed(NULL, 0, 2, NULL, 2, P, 1, 0, x, 2, NULL),
                 QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv__gemm_f32_packed(NULL, 0, 2, x, 2, P, 1, 0, x, 1, NULL), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv__gemm_f32_packed(NULL, 0, 2, x, 2, P, 1, 0, NULL, 2, NULL),
                 QKV_ERR_INVALID_ARG);
    qkv_gemm_epilogue bad = {NULL, (qkv_act)99, NULL, 0, NULL, 0, NULL, 0};
    CHECK_STATUS(qkv__gemm_f32_packed(NULL, 0, 2, x, 2, P, 1, 0, x + 8, 2, &bad),
                 QKV_ERR_INVALID_ARG);
    CHECK_OK(qkv__gemm_f32_packed(NULL, 0, 0, NULL, 2, P, 1, 0, NULL, 2, NULL)); /* M = 0 */
    qkv__gemm_packed_free(P);
    /* empty matrices pack to valid handles */
    CHECK_OK(qkv__gemm_pack_b(NULL, 0, 0, 5, NULL, 5, &P));
    x[0] = 3.0f;
    CHECK_OK(qkv__gemm_f32_packed(NULL, 0, 1, NULL, 0, P, 1, 2.0f, x, 5, NULL)); /* C = 2C */
    CHECK(x[0] == 6.0f);
    qkv__gemm_packed_free(P);
    CHECK_OK(qkv__gemm_pack_b(NULL, 1, 7, 0, NULL, 7, &P));
    CHECK(qkv__gemm_packed_bytes(P) == 0);
    qkv__gemm_packed_free(P);
    qkv__gemm_packed_free(NULL);
}

/* The backward epilogue (act_grad): the bits of the plain product followed by act_bwd_f32 into
 * zeros, on shapes around every ISA's blocks (edge tiles, several K blocks, K = 0, beta 1, both
 * transposes, 1 to 3 threads, a strided act_grad); and its argument checks. */
static void test_act_grad(qkv_runtime *const *rts) {
    const int64_t shapes[][3] = {{1, 1, 1},   {7, 49, 3},     {13, 95, 384}, {150, 100, 385},
                                 {33, 48, 0}, {141, 17, 769}, {64, 300, 64}};
    const qkv_act acts[] = {QKV_ACT_GELU_ERF, QKV_ACT_GELU_TANH, QKV_ACT_RELU, QKV_ACT_SILU,
                            QKV_ACT_TANH};
    int n = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (size_t a = 0; a < sizeof acts / sizeof *acts; a++, n++) {
            const int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2], ldg = N + 5;
            const int ta = n & 1, tb = n >> 1 & 1;
            const float beta = n % 3 == 0 ? 1.0f : 0.0f;
            float *A = malloc(sizeof(float) * (size_t)(M * (K ? K : 1)));
            float *B = malloc(sizeof(float) * (size_t)((K ? K : 1) * N));
            float *G = malloc(sizeof(float) * (size_t)(M * ldg));
            float *C1 = malloc(sizeof(float) * (size_t)(M * N));
            float *C2 = malloc(sizeof(float) * (size_t)(M * N));
            float *Z = calloc((size_t)(M * N), sizeof(float));
            for (int64_t i = 0; i < M * K; i++) A[i] = urand();
            for (int64_t i = 0; i < K * N; i++) B[i] = urand();
            for (int64_t i = 0; i < M * ldg; i++) G[i] = 6.0f * urand();
            for (int64_t i = 0; i < M * N; i++) C1[i] = C2[i] = urand();
            const qkv_gemm_epilogue e = {.act = acts[a], .act_grad = G, .ldg = ldg};
            qkv_runtime *rt = rts[n % 3];
            CHECK_OK(qkv__gemm_f32(rt, ta, tb, M, N, K, 0.75f, A, ta ? M : K, B, tb ? K : N, beta,
                                   C1, N, &e));
            CHECK_OK(qkv__gemm_f32(rt, ta, tb, M, N, K, 0.75f, A, ta ? M : K, B, tb ? K : N, beta,
                                   C2, N, NULL));
            for (int64_t i = 0; i < M; i++)
                qkv__kernels()->act_bwd_f32(acts[a], G + i * ldg, C2 + i * N, Z + i * N, (size_t)N);
            CHECK_MSG(memcmp(C1, Z, sizeof(float) * (size_t)(M * N)) == 0,
                      "act_grad epilogue M=%lld N=%lld K=%lld act=%d: not the unfused bits",
                      (long long)M, (long long)N, (long long)K, (int)acts[a]);
            free(A), free(B), free(G), free(C1), free(C2), free(Z);
        }
    /* the forward form (pre): pre = the biased value, c = act(pre); the bits of the bias-only
     * epilogue followed by act_f32 */
    for (size_t a = 0; a < sizeof acts / sizeof *acts; a++) {
        const int64_t M = 37, N = 101, K = 400, ldp = N + 3;
        float *A = malloc(sizeof(float) * (size_t)(M * K)),
              *B = malloc(sizeof(float) * (size_t)(K * N));
        float *bias = malloc(sizeof(float) * (size_t)N),
              *P = malloc(sizeof(float) * (size_t)(M * ldp));
        float *C1 = malloc(sizeof(float) * (size_t)(M * N)),
              *C2 = malloc(sizeof(float) * (size_t)(M * N));
        for (int64_t i = 0; i < M * K; i++) A[i] = urand();
        for (int64_t i = 0; i < K * N; i++) B[i] = urand();
        for (int64_t i = 0; i < N; i++) bias[i] = urand();
        const qkv_gemm_epilogue e = {.bias = bias, .act = acts[a], .pre = P, .ldp = ldp};
        const qkv_gemm_epilogue eb = {.bias = bias};
        CHECK_OK(qkv__gemm_f32(rts[a % 3], 0, 1, M, N, K, 1, A, K, B, K, 0, C1, N, &e));
        CHECK_OK(qkv__gemm_f32(rts[a % 3], 0, 1, M, N, K, 1, A, K, B, K, 0, C2, N, &eb));
        int same_pre = 1;
        for (int64_t i = 0; i < M; i++) {
            same_pre &= memcmp(P + i * ldp, C2 + i * N, sizeof(float) * (size_t)N) == 0;
            qkv__kernels()->act_f32(acts[a], C2 + i * N, C2 + i * N, (size_t)N);
        }
        CHECK_MSG(same_pre, "pre epilogue act=%d: pre is not the biased product", (int)acts[a]);
        CHECK_MSG(memcmp(C1, C2, sizeof(float) * (size_t)(M * N)) == 0,
                  "pre epilogue act=%d: not the unfused bits", (int)acts[a]);
        free(A), free(B), free(bias), free(P), free(C1), free(C2);
    }
    float x[64] = {0}, c[64] = {0};
    qkv_gemm_epilogue bad = {.act = QKV_ACT_RELU, .pre = c + 4, .ldp = 8};
    CHECK(qkv__gemm_f32(NULL, 0, 0, 4, 8, 1, 1, x, 1, x, 8, 0, c, 8, &bad) == QKV_ERR_INVALID_ARG);
    bad = (qkv_gemm_epilogue){.act = QKV_ACT_NONE, .pre = x, .ldp = 8};
    CHECK(qkv__gemm_f32(NULL, 0, 0, 8, 8, 1, 1, x, 1, x, 8, 0, c, 8, &bad) == QKV_ERR_INVALID_ARG);
    bad = (qkv_gemm_epilogue){.act = QKV_ACT_NONE, .act_grad = x, .ldg = 8};
    CHECK(qkv__gemm_f32(NULL, 0, 0, 8, 8, 1, 1, x, 1, x, 8, 0, c, 8, &bad) == QKV_ERR_INVALID_ARG);
    bad = (qkv_gemm_epilogue){.bias = x, .act = QKV_ACT_RELU, .act_grad = x, .ldg = 8};
    CHECK(qkv__gemm_f32(NULL, 0, 0, 8, 8, 1, 1, x, 1, x, 8, 0, c, 8, &bad) == QKV_ERR_INVALID_ARG);
    bad = (qkv_gemm_epilogue){.act = QKV_ACT_RELU, .act_grad = x, .ldg = 7};
    CHECK(qkv__gemm_f32(NULL, 0, 0, 8, 8, 1, 1, x, 1, x, 8, 0, c, 8, &bad) == QKV_ERR_INVALID_ARG);
    bad = (qkv_gemm_epilogue){.act = QKV_ACT_RELU, .act_grad = c + 4, .ldg = 8};
    CHECK(qkv__gemm_f32(NULL, 0, 0, 4, 8, 1, 1, x, 1, x, 8, 0, c, 8, &bad) == QKV_ERR_INVALID_ARG);
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
    qkv_act acts[] = {QKV_ACT_NONE, QKV_ACT_GELU_ERF, QKV_ACT_GELU_TANH,
                      QKV_ACT_RELU, QKV_ACT_SILU,     QKV_ACT_TANH};
    for (size_t i = 0; i < sizeof acts / sizeof *acts; i++) {
        qkv_gemm_epilogue e = {bias, acts[i], NULL, 0, NULL, 0, NULL, 0};
        run_case(rt2, 0, 1, 50, 70, 260, 1.0f, 0.0f, 0, &e, 0);
        qkv_gemm_epilogue e2 = {i % 2 ? bias : NULL, acts[i], res, 210, NULL, 0, NULL, 0};
        run_case(rt3, 0, 1, 290, 200, 33, 1.0f, 0.5f, 2, &e2, 0);
        qkv_gemm_epilogue e3 = {bias, acts[i], res, 210, NULL, 0, NULL, 0};
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
    test_packed(rt1, rt2);
    test_rows_vs_batch(rt1);
    test_rows_vs_batch(rt2);
    test_packed_survives_arch_change(rt2);
    test_residual_alias(rt2);
    test_residual_alias(rt1);
    {
        qkv_runtime *const rts[3] = {rt1, rt2, rt3};
        test_act_grad(rts);
    }
    test_packed_nomem();
    test_packed_args();
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
