/* test_kernels_gemm_i8.c — the int8 GEMM (kernels/gemm_i8.h) of the active ISA (run once per
 * QKV_ARCH), plus every other kernel explicitly where the CPU and the build have it (on AVX-512
 * the AMX, vpdpbusd and avx2 kernels through qkv__gemm_i8_select, then the ref kernel), each
 * also unfused (its micro-kernel and group step instead of its fused tile, when it has one):
 *  - bit-identical to qkv__gemm_i8_naive (which quantizes straight from the format, no packing,
 *    int64 sums) on random and edge shapes (M, N, K = 1, odd, around every kernel's MR / NR
 *    and K quads, past the 32-row blocks of A and the AMX kernel's 16-row tiles, M up to 150),
 *    both layouts of B, beta 0 / 1, ldc > N (the padding untouched); rounding ties of the
 *    activations (to even, as rint);
 *  - every element within the error bound DERIVED from the format against the exact product
 *    (double; gemm_i8.h): per weight |Δb| <= s/2·(1+2^-16), per activation |Δa| <=
 *    t/2·(1+2^-16) (s, t of the k's group; the 2^-16: the float division before rint), so
 *      |C - Σ A·B - beta·C| <= E_q + γ_{n_g+3}·(Σ|A·B| + E_q + |beta·C|),
 *      E_q = Σ_k (|a|·s/2·(1+u) + |b|·t/2·(1+u) + s·t/4·(1+u)^2)
 *    (γ: the float steps, per group (float)acc, t·s, the product, the sum; then beta·C);
 *  - the packed weights: |q·s - w| <= s/2·(1+u), |q| <= 127, each group's largest weight at
 *    ±127;
 *  - bit-identical results for 1, 2 and 3 threads, rows alone vs batched, with an epilogue
 *    (bias, GELU, residual) equal to the naive result followed by the same epilogue code;
 *  - the worst case of the int32 sums (every a = 255 unsigned, every q = ±127) over a long K:
 *    the exact value;
 *  - non-finite input: a weight NaN/Inf is refused (INVALID_ARG); a row of A with NaN or Inf
 *    gives a row of NaN, the other rows unchanged; zero rows / columns give 0;
 *  - argument errors and NOMEM at every allocation (no leak);
 *  - int8 and bf16 products alternating on one thread (the AMX kernels' two tile
 *    configurations, kernels/avx512/amx.h): each as alone. */
#include "fault_alloc.h"
#include "kernels/dispatch.h"
#include "kernels/gemm.h"
#include "kernels/gemm_bf16.h"
#include "kernels/gemm_i8.h"
#include "nn_testutil.h"
#include "qkv.h"
#include "test.h"
#include "test_arch.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static float urand(void) { return (float)(2.0 * nt_uniform() - 1.0); }

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    return p;
}

static int same_bits(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

#define U_Q (1.0 / 65536.0) /* 2^-16 */

/* One product: the kernel against the naive reference (bits) and the exact product (bound). */
static void run_case(const qkv_gemm_i8_config *cfg, qkv_runtime *rt, int tb, int64_t M, int64_t N,
                     int64_t K, float beta, int64_t ldc) {
    const int64_t ldb = tb ? K + 2 : N + 1, lda = K + 1;
    float *A = xmalloc(sizeof(float) * (size_t)(M * lda));
    float *B = xmalloc(sizeof(float) * (size_t)((tb ? N : K) * ldb));
    float *C = xmalloc(sizeof(float) * (size_t)(M * ldc)),
          *R = xmalloc(sizeof(float) * (size_t)(M * ldc));
    for (int64_t i = 0; i < M * lda; i++) A[i] = urand() * 3.0f;
    for (int64_t i = 0; i < (tb ? N : K) * ldb; i++) B[i] = urand() * 0.5f;
    float *C0 = xmalloc(sizeof(float) * (size_t)(M * ldc));
    for (int64_t i = 0; i < M * ldc; i++) C[i] = R[i] = C0[i] = urand();
    qkv_gemm_i8_packed *P = NULL;
    CHECK_OK(qkv__gemm_i8_pack_f32(cfg, tb, K, N, B, ldb, &P));
    CHECK(qkv__gemm_i8_packed_k(P) == K && qkv__gemm_i8_packed_n(P) == N);
    CHECK_OK(qkv__gemm_i8(rt, M, A, lda, P, beta, C, ldc, NULL));
    qkv__gemm_i8_naive(tb, M, N, K, A, lda, B, ldb, beta, R, ldc);
    long bad_bits = 0, bad_bound = 0;
    const int64_t ng = (K + QKV_GEMM_I8_GROUP - 1) / QKV_GEMM_I8_GROUP;
    const double gam = (double)(ng + 3) * 0x1p-24 / (1.0 - (double)(ng + 3) * 0x1p-24);
    for (int64_t i = 0; i < M; i++) {
        for (int64_t j = 0; j < ldc; j++) {
            const float got = C[i * ldc + j];
            if (!same_bits(got, R[i * ldc + j])) bad_bits++;
            if (j >= N) continue;
            double exact = 0, eq = 0, sab = 0, t = 0;
            for (int64_t k = 0; k < K; k++) {
                if (k % QKV_GEMM_I8_GROUP == 0) { /* t of this group, as the format computes it */
                    float amax = 0.0f;
                    for (int64_t h = k; h < K && h < k + QKV_GEMM_I8_GROUP; h++)
                        amax = fmaxf(amax, fabsf(A[i * lda + h]));
                    t = (double)(amax / 127.0f);
                }
                const double s = (double)qkv__gemm_i8_packed_scale(P, k, j);
                double a = A[i * lda + k], b = tb ? B[j * ldb + k] : B[k * ldb + j];
                exact += a * b;
                sab += fabs(a * b);
                eq += fabs(a) * s / 2 * (1 + U_Q) + fabs(b) * t / 2 * (1 + U_Q) +
                      s * t / 4 * (1 + U_Q) * (1 + U_Q);
            }
            const double bc = beta == 0.0f ? 0.0 : (double)beta * (double)C0[i * ldc + j];
            const double bound = eq + gam * (sab + eq + fabs(bc));
            if (!(fabs((double)got - (exact + bc)) <= bound)) bad_bound++;
        }
    }
    CHECK_MSG(bad_bits == 0,
              "%s tb=%d M=%lld N=%lld K=%lld beta=%g ldc=%lld: %ld elements differ from naive",
              cfg->name, tb, (long long)M, (long long)N, (long long)K, (double)beta, (long long)ldc,
              bad_bits);
    CHECK_MSG(bad_bound == 0, "%s tb=%d M=%lld N=%lld K=%lld: %ld elements past the bound",
              cfg->name, tb, (long long)M, (long long)N, (long long)K, bad_bound);
    qkv__gemm_i8_packed_free(P);
    free(A), free(B), free(C), free(R), free(C0);
}

static void test_shapes(const qkv_gemm_i8_config *cfg, qkv_runtime *rt1, qkv_runtime *rt2) {
    const int64_t Ms[] = {1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33};
    const int64_t Ns[] = {1, 3, 7, 8, 9, 15, 16, 17, 47, 48, 49, 97};
    const int64_t Ks[] = {1, 2, 3, 4, 5, 7, 8, 9, 63, 64, 65, 300};
    for (size_t a = 0; a < sizeof Ms / sizeof *Ms; a++)
        for (size_t b = 0; b < sizeof Ns / sizeof *Ns; b++) {
            int64_t K = Ks[(a * 5 + b * 7) % (sizeof Ks / sizeof *Ks)];
            int tb = (int)((a + b) & 1);
            float beta = (a + 2 * b) % 3 == 0 ? 1.0f : 0.0f;
            int64_t ldc = Ns[b] + (int64_t)(b % 3);
            run_case(cfg, (a & 1) ? rt2 : rt1, tb, Ms[a], Ns[b], K, beta, ldc);
        }
    for (size_t c = 0; c < sizeof Ks / sizeof *Ks; c++) { /* every K, both layouts */
        run_case(cfg, rt1, 0, 3, 50, Ks[c], 0.0f, 50);
        run_case(cfg, rt2, 1, 9, 49, Ks[c], 1.0f, 53);
    }
    /* the row blocks of A (32 rows; threads take (row block, panel) tasks): M around and past
     * them with N and K tails */
    const int64_t Mb[] = {15, 31, 32, 63, 64, 65, 100, 131, 150}, Nb[] = {47, 96, 145},
                  Kb[] = {32, 70, 389};
    for (size_t a = 0; a < sizeof Mb / sizeof *Mb; a++)
        for (size_t b = 0; b < sizeof Nb / sizeof *Nb; b++)
            run_case(cfg, (a + b) & 1 ? rt2 : rt1, (int)(a & 1), Mb[a], Nb[b], Kb[(a + b) % 3],
                     (a + b) % 3 == 1 ? 1.0f : 0.0f, Nb[b] + (int64_t)(a % 2));
    for (int r = 0; r < 20; r++) { /* random shapes */
        int64_t M = 1 + (int64_t)(nt_uniform() * 40), N = 1 + (int64_t)(nt_uniform() * 130);
        int64_t K = 1 + (int64_t)(nt_uniform() * 400);
        run_case(cfg, rt2, r & 1, M, N, K, (r % 3) ? 0.0f : 1.0f, N + (r % 2));
    }
}

/* Rounding ties of the activations' quantization (x / t = an odd multiple of 1/2, t = 1: each
 * group's largest |x| is 127): the kernel's bytes round as the naive rint (ties to even). */
static void test_ties(const qkv_gemm_i8_config *cfg, qkv_runtime *rt) {
    enum { M = 3, N = 17, K = 96 };
    float A[M * K], W[N * K], C[M * N], R[M * N];
    for (int64_t i = 0; i < M * K; i++)
        A[i] = i % 32 == 5 ? -127.0f : (float)((i * 37) % 253 - 126) * 0.5f;
    for (int64_t i = 0; i < N * K; i++) W[i] = urand();
    qkv_gemm_i8_packed *P = NULL;
    CHECK_OK(qkv__gemm_i8_pack_f32(cfg, 1, K, N, W, K, &P));
    CHECK_OK(qkv__gemm_i8(rt, M, A, K, P, 0.0f, C, N, NULL));
    qkv__gemm_i8_naive(1, M, N, K, A, K, W, K, 0.0f, R, N);
    CHECK_MSG(memcmp(C, R, sizeof C) == 0, "%s: rounding ties differ from the naive GEMM",
              cfg->name);
    qkv__gemm_i8_packed_free(P);
}

/* 1 vs 2 vs 3 threads, rows alone vs batched, with a fused epilogue = naive + the same
 * epilogue. */
static void test_deterministic(const qkv_gemm_i8_config *cfg, qkv_runtime *rt1, qkv_runtime *rt2,
                               qkv_runtime *rt3) {
    const int64_t M = 37, N = 203, K = 301;
    float *A = xmalloc(sizeof(float) * (size_t)(M * K)),
          *W = xmalloc(sizeof(float) * (size_t)(N * K));
    float *bias = xmalloc(sizeof(float) * (size_t)N),
          *res = xmalloc(sizeof(float) * (size_t)(M * N));
    float *C1 = xmalloc(sizeof(float) * (size_t)(M * N)),
          *C3 = xmalloc(sizeof(float) * (size_t)(M * N));
    float *C2 = xmalloc(sizeof(float) * (size_t)(M * N));
    float *Cr = xmalloc(sizeof(float) * (size_t)(M * N)),
          *Cn = xmalloc(sizeof(float) * (size_t)(M * N));
    for (int64_t i = 0; i < M * K; i++) A[i] = urand();
    for (int64_t i = 0; i < N * K; i++) W[i] = urand();
    for (int64_t i = 0; i < N; i++) bias[i] = urand();
    for (int64_t i = 0; i < M * N; i++) res[i] = urand();
    qkv_gemm_i8_packed *P = NULL;
    CHECK_OK(qkv__gemm_i8_pack_f32(cfg, 1, K, N, W, K, &P));
    qkv_gemm_epilogue e = {.bias = bias, .act = QKV_ACT_GELU_ERF, .residual = res, .ldr = N};
    CHECK_OK(qkv__gemm_i8(rt1, M, A, K, P, 0.0f, C1, N, &e));
    CHECK_OK(qkv__gemm_i8(rt2, M, A, K, P, 0.0f, C2, N, &e));
    CHECK_OK(qkv__gemm_i8(rt3, M, A, K, P, 0.0f, C3, N, &e));
    for (int64_t i = 0; i < M; i++) /* one row at a time; the residual's row i is row 0 then */
    {
        qkv_gemm_epilogue ei = e;
        ei.residual = res + i * N;
        CHECK_OK(qkv__gemm_i8(rt3, 1, A + i * K, K, P, 0.0f, Cr + i * N, N, &ei));
    }
    qkv__gemm_i8_naive(1, M, N, K, A, K, W, K, 0.0f, Cn, N);
    for (int64_t i = 0; i < M; i++) qkv__gemm_epilogue_tile(&e, Cn + i * N, N, i, 0, 1, (int)N);
    CHECK(memcmp(C1, C2, sizeof(float) * (size_t)(M * N)) == 0);
    CHECK(memcmp(C1, C3, sizeof(float) * (size_t)(M * N)) == 0);
    CHECK(memcmp(C1, Cr, sizeof(float) * (size_t)(M * N)) == 0);
    CHECK(memcmp(C1, Cn, sizeof(float) * (size_t)(M * N)) == 0);
    qkv__gemm_i8_packed_free(P);
    free(A), free(W), free(bias), free(res), free(C1), free(C2), free(C3), free(Cr), free(Cn);
}

/* The packed weights against the format (independently of the kernels). */
static void test_pack(const qkv_gemm_i8_config *cfg) {
    const int64_t K = 37, N = 21;
    float *W = xmalloc(sizeof(float) * (size_t)(N * K));
    for (int64_t i = 0; i < N * K; i++) W[i] = urand() * (float)(1 + i % 5);
    for (int64_t k = 0; k < K; k++) W[3 * K + k] = 0.0f; /* a zero column of op(W) */
    qkv_gemm_i8_packed *P = NULL;
    CHECK_OK(qkv__gemm_i8_pack_f32(cfg, 1, K, N, W, K, &P));
    long bad = 0;
    for (int64_t n = 0; n < N; n++)
        for (int64_t k0 = 0; k0 < K; k0 += QKV_GEMM_I8_GROUP) {
            const int64_t k1 = K < k0 + QKV_GEMM_I8_GROUP ? K : k0 + QKV_GEMM_I8_GROUP;
            float amax = 0.0f;
            for (int64_t k = k0; k < k1; k++) amax = fmaxf(amax, fabsf(W[n * K + k]));
            const float s = qkv__gemm_i8_packed_scale(P, k0, n);
            bad += amax == 0.0f ? s != 1.0f : s != amax / 127.0f;
            int top = 0;
            for (int64_t k = k0; k < k1; k++) {
                int q = qkv__gemm_i8_packed_get(P, k, n);
                double w = W[n * K + k];
                bad += q < -127 || q > 127;
                bad += qkv__gemm_i8_packed_scale(P, k, n) != s;
                bad += !(fabs((double)q * s - w) <= s / 2.0 * (1 + U_Q));
                if (fabsf(W[n * K + k]) == amax && amax > 0.0f) top += q == 127 || q == -127;
            }
            bad += amax > 0.0f && top == 0;
        }
    CHECK_MSG(bad == 0, "%s: %ld packed values off the format", cfg->name, bad);
    qkv__gemm_i8_packed_free(P);
    free(W);
}

/* The worst case of the int32 sums over a long K: every a = 255 (unsigned), every q = ±127. */
static void test_worst_case(const qkv_gemm_i8_config *cfg, qkv_runtime *rt) {
    const int64_t K = 70000; /* past 2^31 / (255·127): a sum over all of K would overflow */
    float *A = xmalloc(sizeof(float) * (size_t)K), *W = xmalloc(sizeof(float) * (size_t)(2 * K));
    for (int64_t k = 0; k < K; k++) A[k] = 1.0f, W[k] = 1.0f, W[K + k] = -1.0f;
    qkv_gemm_i8_packed *P = NULL;
    CHECK_OK(qkv__gemm_i8_pack_f32(cfg, 1, K, 2, W, K, &P));
    float C[2], R[2];
    CHECK_OK(qkv__gemm_i8(rt, 1, A, K, P, 0.0f, C, 2, NULL));
    qkv__gemm_i8_naive(1, 1, 2, K, A, K, W, K, 0.0f, R, 2);
    /* each group: acc = ±G·127·127 exactly, times (t·s) with t = s = fl(1/127), summed */
    const float ts = (1.0f / 127.0f) * (1.0f / 127.0f);
    float want = 0.0f;
    for (int64_t k = 0; k < K; k += QKV_GEMM_I8_GROUP) {
        const int64_t len = K - k < QKV_GEMM_I8_GROUP ? K - k : QKV_GEMM_I8_GROUP;
        want = want + (float)(len * 127 * 127) * ts;
    }
    CHECK(same_bits(C[0], want) && same_bits(C[0], R[0]));
    CHECK(same_bits(C[1], -want) && same_bits(C[1], R[1]));
    CHECK(fabs((double)C[0] - (double)K) <= 1e-3 * (double)K);
    qkv__gemm_i8_packed_free(P);
    free(A), free(W);
}

static void test_nonfinite(const qkv_gemm_i8_config *cfg, qkv_runtime *rt) {
    const int64_t M = 5, N = 19, K = 23;
    float A[5 * 23], W[19 * 23], C[5 * 19], R[5 * 19];
    for (int64_t i = 0; i < M * K; i++) A[i] = urand();
    for (int64_t i = 0; i < N * K; i++) W[i] = urand();
    for (int64_t k = 0; k < K; k++) A[2 * K + k] = 0.0f; /* a zero row */
    A[1 * K + 4] = NAN;
    A[3 * K + 9] = -INFINITY;
    qkv_gemm_i8_packed *P = NULL;
    CHECK_OK(qkv__gemm_i8_pack_f32(cfg, 1, K, N, W, K, &P));
    CHECK_OK(qkv__gemm_i8(rt, M, A, K, P, 0.0f, C, N, NULL));
    qkv__gemm_i8_naive(1, M, N, K, A, K, W, K, 0.0f, R, N);
    for (int64_t j = 0; j < N; j++) {
        CHECK(isnan(C[1 * N + j]) && isnan(C[3 * N + j]));
        CHECK(C[2 * N + j] == 0.0f);
        CHECK(isfinite(C[j]) && isfinite(C[4 * N + j]));
    }
    for (int64_t i = 0; i < M * N; i++)
        CHECK(same_bits(C[i], R[i]) || (isnan(C[i]) && isnan(R[i])));
    qkv__gemm_i8_packed_free(P);
    const float bad[] = {NAN, INFINITY, -INFINITY};
    for (int b = 0; b < 3; b++) {
        float w2[19 * 23];
        memcpy(w2, W, sizeof w2);
        w2[7 * K + 11] = bad[b];
        P = (qkv_gemm_i8_packed *)1;
        CHECK_STATUS(qkv__gemm_i8_pack_f32(cfg, 1, K, N, w2, K, &P), QKV_ERR_INVALID_ARG);
        CHECK(P == NULL);
        CHECK(strstr(qkv_last_error(), "k 11, n 7") != NULL);
    }
}

/* Every allocation of pack and of a product fails in turn (fault_alloc.h): NOMEM, *out NULL,
 * no leak (ASan too). */
typedef struct {
    const qkv_gemm_i8_config *cfg;
    int64_t M, N, K;
    const float *A, *W;
    float *C;
} nomem_ctx;

static qkv_status nomem_call(qkv_runtime *rt, void *ctx) {
    const nomem_ctx *c = ctx;
    qkv_gemm_i8_packed *P = (qkv_gemm_i8_packed *)1;
    qkv_status s = qkv__gemm_i8_pack_f32(c->cfg, 1, c->K, c->N, c->W, c->K, &P);
    if (s != QKV_OK) {
        CHECK(P == NULL);
        return s;
    }
    s = qkv__gemm_i8(rt, c->M, c->A, c->K, P, 0.0f, c->C, c->N, NULL);
    qkv__gemm_i8_packed_free(P);
    return s;
}

static void test_nomem(const qkv_gemm_i8_config *cfg) {
    nomem_ctx c = {cfg, 20, 60, 301, NULL, NULL, NULL};
    float *A = xmalloc(sizeof(float) * (size_t)(c.M * c.K));
    float *W = xmalloc(sizeof(float) * (size_t)(c.N * c.K));
    c.C = xmalloc(sizeof(float) * (size_t)(c.M * c.N));
    for (int64_t i = 0; i < c.M * c.K; i++) A[i] = urand();
    for (int64_t i = 0; i < c.N * c.K; i++) W[i] = urand();
    c.A = A, c.W = W;
    CHECK(fault_each_alloc(nomem_call, &c, 100) >= 7); /* pack: 5, product: 2 */
    free(A), free(W), free(c.C);
}

static void test_args(const qkv_gemm_i8_config *cfg) {
    float x[16] = {0};
    qkv_gemm_i8_packed *P = (qkv_gemm_i8_packed *)1;
    CHECK_STATUS(qkv__gemm_i8_pack_f32(cfg, 1, 2, 2, x, 2, NULL), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv__gemm_i8_pack_f32(cfg, 1, -1, 2, x, 2, &P), QKV_ERR_INVALID_ARG);
    CHECK(P == NULL);
    CHECK_STATUS(qkv__gemm_i8_pack_f32(cfg, 1, 2, -2, x, 2, &P), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv__gemm_i8_pack_f32(cfg, 1, 2, 2, NULL, 2, &P), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv__gemm_i8_pack_f32(cfg, 1, 3, 2, x, 2, &P), QKV_ERR_INVALID_ARG); /* ldb<K */
    CHECK_STATUS(qkv__gemm_i8_pack_f32(cfg, 0, 2, 3, x, 2, &P), QKV_ERR_INVALID_ARG); /* ldb<N */
    CHECK_STATUS(qkv__gemm_i8(NULL, 2, x, 2, NULL, 0, x, 2, NULL), QKV_ERR_INVALID_ARG);
    CHECK_OK(qkv__gemm_i8_pack_f32(cfg, 1, 2, 2, x, 2, &P));
    CHECK(strcmp(qkv__gemm_i8_packed_kernel(P), cfg->name) == 0);
    CHECK(qkv__gemm_i8_packed_bytes(P) > 0);
    CHECK_STATUS(qkv__gemm_i8(NULL, -1, x, 2, P, 0, x, 2, NULL), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv__gemm_i8(NULL, 2, x, 1, P, 0, x, 2, NULL), QKV_ERR_INVALID_ARG); /* lda */
    CHECK_STATUS(qkv__gemm_i8(NULL, 2, NULL, 2, P, 0, x, 2, NULL), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv__gemm_i8(NULL, 2, x, 2, P, 0, x, 1, NULL), QKV_ERR_INVALID_ARG); /* ldc */
    CHECK_STATUS(qkv__gemm_i8(NULL, 2, x, 2, P, 0, NULL, 2, NULL), QKV_ERR_INVALID_ARG);
    CHECK_OK(qkv__gemm_i8(NULL, 0, NULL, 2, P, 0, NULL, 2, NULL)); /* M = 0 */
    qkv__gemm_i8_packed_free(P);
    /* K = 0: C = beta·C */
    CHECK_OK(qkv__gemm_i8_pack_f32(cfg, 1, 0, 5, NULL, 0, &P));
    x[0] = 3.0f;
    x[1] = NAN;
    CHECK_OK(qkv__gemm_i8(NULL, 1, NULL, 0, P, 2.0f, x, 5, NULL));
    CHECK(x[0] == 6.0f);
    CHECK_OK(qkv__gemm_i8(NULL, 1, NULL, 0, P, 0.0f, x, 5, NULL)); /* beta 0 drops the NaN */
    CHECK(x[1] == 0.0f);
    qkv__gemm_i8_packed_free(P);
    CHECK_OK(qkv__gemm_i8_pack_f32(cfg, 1, 7, 0, NULL, 7, &P));
    CHECK(qkv__gemm_i8_packed_bytes(P) == 0);
    qkv__gemm_i8_packed_free(P);
    qkv__gemm_i8_packed_free(NULL);
}

/* The int8 kernel cfg and the default bf16 kernel (AMX where the CPU has it: another tile
 * configuration) alternating on one thread, each result the same as alone: the int8 one the
 * naive reference's, the bf16 one that of a fresh thread whose first product it is (its tile
 * state untouched by the int8 kernel). */
typedef struct {
    const qkv_gemm_bf16_packed *H;
    const float *A;
    float *C;
    int64_t M, N, K;
} bf16_alone;

static void *bf16_alone_main(void *arg) {
    bf16_alone *j = arg;
    qkv_runtime *rt = NULL;
    CHECK_OK(qkv_runtime_create(1, &rt));
    CHECK_OK(qkv__gemm_bf16(rt, j->M, j->A, j->K, j->H, 0.0f, j->C, j->N, NULL));
    qkv_runtime_free(rt);
    return NULL;
}

static void test_alternate(const qkv_gemm_i8_config *cfg, qkv_runtime *rt1) {
    const int64_t M = 40, N = 70, K = 100;
    float *A = xmalloc(sizeof(float) * (size_t)(M * K)),
          *W = xmalloc(sizeof(float) * (size_t)(N * K));
    float *Ci = xmalloc(sizeof(float) * (size_t)(M * N)),
          *Cb = xmalloc(sizeof(float) * (size_t)(M * N));
    float *Rn = xmalloc(sizeof(float) * (size_t)(M * N)),
          *Rb = xmalloc(sizeof(float) * (size_t)(M * N));
    for (int64_t i = 0; i < M * K; i++) A[i] = urand();
    for (int64_t i = 0; i < N * K; i++) W[i] = urand();
    qkv_gemm_i8_packed *P = NULL;
    qkv_gemm_bf16_packed *H = NULL;
    CHECK_OK(qkv__gemm_i8_pack_f32(cfg, 1, K, N, W, K, &P));
    CHECK_OK(qkv__gemm_bf16_pack_f32(NULL, 1, K, N, W, K, &H));
    qkv__gemm_i8_naive(1, M, N, K, A, K, W, K, 0.0f, Rn, N);
    bf16_alone job = {H, A, Rb, M, N, K};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, bf16_alone_main, &job) == 0);
    CHECK(pthread_join(th, NULL) == 0);
    for (int r = 0; r < 3; r++) {
        CHECK_OK(qkv__gemm_i8(rt1, M, A, K, P, 0.0f, Ci, N, NULL));
        CHECK_OK(qkv__gemm_bf16(rt1, M, A, K, H, 0.0f, Cb, N, NULL));
        CHECK_MSG(memcmp(Ci, Rn, sizeof(float) * (size_t)(M * N)) == 0,
                  "%s after bf16 differs from naive", cfg->name);
        CHECK_MSG(memcmp(Cb, Rb, sizeof(float) * (size_t)(M * N)) == 0,
                  "bf16 (%s) after %s differs from bf16 alone", qkv__gemm_bf16_packed_kernel(H),
                  cfg->name);
    }
    qkv__gemm_i8_packed_free(P);
    qkv__gemm_bf16_packed_free(H);
    free(A), free(W), free(Ci), free(Cb), free(Rn), free(Rb);
}

static void test_config_once(const qkv_gemm_i8_config *cfg, const char *how, qkv_runtime *rt1,
                             qkv_runtime *rt2, qkv_runtime *rt3) {
    printf("kernel: %s%s (MR %d, NR %d)\n", cfg->name, how, cfg->mr, cfg->nr);
    test_shapes(cfg, rt1, rt2);
    test_deterministic(cfg, rt1, rt2, rt3);
    test_ties(cfg, rt1);
    test_pack(cfg);
    /* explicit runtimes only: the default one, made on first use, would start worker threads
     * whose start-up frees could land inside test_nomem's counting */
    test_worst_case(cfg, rt3);
    test_nonfinite(cfg, rt1); /* not NULL: the default runtime's workers would start here */
    test_nomem(cfg);
    test_args(cfg);
    test_alternate(cfg, rt1);
}

/* The config as it is, and with a fused tile also without it (its ukr and group step). */
static void test_config(const qkv_gemm_i8_config *cfg, qkv_runtime *rt1, qkv_runtime *rt2,
                        qkv_runtime *rt3) {
    test_config_once(cfg, "", rt1, rt2, rt3);
    if (cfg->tile) {
        qkv_gemm_i8_config u = *cfg;
        u.tile = NULL;
        test_config_once(&u, " (unfused)", rt1, rt2, rt3);
    }
}

int main(void) {
    qkv_arch arch = test_use_arch_from_env();
    test_print_kernel_isa("gemm_i8_config");
    qkv_runtime *rt1 = NULL, *rt2 = NULL, *rt3 = NULL;
    CHECK_OK(qkv_runtime_create(1, &rt1));
    CHECK_OK(qkv_runtime_create(2, &rt2));
    CHECK_OK(qkv_runtime_create(3, &rt3));
    qkv_gemm_i8_config cfg;
    qkv__kernels()->gemm_i8_config(&cfg);
    /* the default on AVX-512: AMX where the CPU and build have it (unless QKV_I8_KERNEL asks for
     * another kernel), else vpdpbusd where they have it */
    const char *env = getenv("QKV_I8_KERNEL");
    const unsigned f = qkv_cpu_features();
    const int has_amx = (f & QKV_CPU_AMX_INT8) && strstr(qkv_build_info(), " amx_int8");
    const int has_vnni = (f & QKV_CPU_AVX512VNNI) && strstr(qkv_build_info(), "avx512vnni");
    printf("cpu: avx512_vnni %s, amx_int8 %s\n", f & QKV_CPU_AVX512VNNI ? "yes" : "no",
           f & QKV_CPU_AMX_INT8 ? "yes" : "no");
    if (!env && arch == QKV_ARCH_AVX512 && has_amx)
        CHECK(strcmp(cfg.name, "gemm_i8_amx") == 0);
    else if (!env && arch == QKV_ARCH_AVX512 && has_vnni)
        CHECK(strcmp(cfg.name, "gemm_i8_avx512vnni") == 0);
    test_config(&cfg, rt1, rt2, rt3);
    /* on AVX-512, every other kernel the CPU and build have, selected explicitly (AMX falls
     * back to vpdpbusd, vpdpbusd to avx2) */
    static const int kinds[] = {QKV_I8_AMX, QKV_I8_VNNI};
    const int have[] = {has_amx, has_vnni};
    static const char *const names[] = {"gemm_i8_amx", "gemm_i8_avx512vnni"};
    for (size_t i = 0; arch == QKV_ARCH_AVX512 && i < sizeof kinds / sizeof *kinds; i++) {
        qkv_gemm_i8_config other;
        qkv__gemm_i8_select(kinds[i]);
        qkv__kernels()->gemm_i8_config(&other);
        const char *want = have[i]              ? names[i]
                           : i == 0 && has_vnni ? "gemm_i8_avx512vnni"
                                                : "gemm_i8_avx2";
        CHECK_MSG(strcmp(other.name, want) == 0, "selected %s, got %s", names[i], other.name);
        if (strcmp(other.name, cfg.name) != 0 && strcmp(other.name, "gemm_i8_avx2") != 0)
            test_config(&other, rt1, rt2, rt3);
    }
    if (arch == QKV_ARCH_AVX512) { /* the avx2 kernel by selection too */
        qkv_gemm_i8_config w;
        qkv__gemm_i8_select(QKV_I8_WIDE);
        qkv__kernels()->gemm_i8_config(&w);
        CHECK(strcmp(w.name, "gemm_i8_avx2") == 0);
    }
    qkv__gemm_i8_select(QKV_I8_DEFAULT);
    /* the fallbacks below the active ISA give the same bits (each checked against naive) */
    if (arch >= QKV_ARCH_AVX2 && strcmp(cfg.name, "gemm_i8_avx2") != 0) {
        qkv_gemm_i8_config c2;
        CHECK_OK(qkv_arch_set(QKV_ARCH_AVX2));
        qkv__kernels()->gemm_i8_config(&c2);
        CHECK_OK(qkv_arch_set(arch));
        CHECK(strcmp(c2.name, "gemm_i8_avx2") == 0);
        test_config(&c2, rt1, rt2, rt3);
    }
    if (strcmp(cfg.name, "gemm_i8_ref") != 0) {
        qkv_gemm_i8_config cr;
        qkv__gemm_i8_config_ref(&cr);
        test_config(&cr, rt1, rt2, rt3);
    }
    qkv_runtime_free(rt1);
    qkv_runtime_free(rt2);
    qkv_runtime_free(rt3);
    return test_finish("kernels_gemm_i8");
}
