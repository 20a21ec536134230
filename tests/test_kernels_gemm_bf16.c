/* test_kernels_gemm_bf16.c — the 16-bit-weight GEMMs of the active ISA (run once per QKV_ARCH):
 * bf16 weights, and f16 weights (the same plain kernels widening IEEE halves), each against the
 * plain reference (qkv__gemm_bf16_naive / _f16_naive, double accumulation):
 *  - random and edge shapes (M, N, K = 1, odd, around every ISA's tiles and K blocks, large K),
 *    both layouts of B, beta 0 / 1 / 0.5, leading dimensions larger than the row, every element
 *    within the error bound DERIVED from the formats (gemm_bf16.h; bound() below);
 *  - plain kernels (ref, avx2): bit-identical to qkv__gemm_f32 of the same ISA on the widened
 *    weights (the math is identical); on an avx512 CPU the avx2 fallback is checked too;
 *  - K = 1: one product, so the result is exact: bf16(a)·b (pairs kernels round a) or
 *    fl(a·b) (plain kernels), with activations on and around RNE ties;
 *  - bit-identical results for 1 and 3 threads, and for rows alone vs batched;
 *  - FP32 -> bf16 packing: round to nearest even against an independent reference (nearest of
 *    the two neighbours in double, ties to the even one), on ties, NaN (never Inf), ±Inf,
 *    overflow, subnormals (f16: equal to core/half.h's qkv__f32_to_f16, which test_core_dtype
 *    checks); pack_f32 gives the same panels as converting first;
 *  - argument errors (a config of the other format refused) and NOMEM at every allocation. */
#include "core/half.h"
#include "fault_alloc.h"
#include "kernels/dispatch.h"
#include "kernels/gemm.h"
#include "kernels/gemm_bf16.h"
#include "nn_testutil.h"
#include "qkv.h"
#include "test.h"
#include "test_arch.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static float urand(void) { return (float)(2.0 * nt_uniform() - 1.0); }

/* The weight format of cfg (bf16, or f16 when cfg->f16): conversions, packers, reference. */
static uint16_t to16(const qkv_gemm_bf16_config *cfg, float x) {
    return cfg->f16 ? qkv__f32_to_f16(x) : qkv__f32_to_bf16(x);
}
static float from16(const qkv_gemm_bf16_config *cfg, uint16_t h) {
    return cfg->f16 ? qkv__f16_to_f32(h) : qkv__bf16_to_f32(h);
}
static qkv_status pack16(const qkv_gemm_bf16_config *cfg, int tb, int64_t K, int64_t N,
                         const uint16_t *B, int64_t ldb, qkv_gemm_bf16_packed **out) {
    return (cfg->f16 ? qkv__gemm_f16_pack : qkv__gemm_bf16_pack)(cfg, tb, K, N, B, ldb, out);
}
static qkv_status pack16_f32(const qkv_gemm_bf16_config *cfg, int tb, int64_t K, int64_t N,
                             const float *B, int64_t ldb, qkv_gemm_bf16_packed **out) {
    return (cfg->f16 ? qkv__gemm_f16_pack_f32 : qkv__gemm_bf16_pack_f32)(cfg, tb, K, N, B, ldb,
                                                                         out);
}

static float bits_f(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
static uint32_t f_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* Independent RNE reference for FP32 -> bf16 on finite x: the two bf16 neighbours lo (x with
 * the low 16 bits cleared, toward zero) and hi (the next one away from zero; 2^128 past the
 * largest finite, which IEEE rounding treats as Inf), the nearer in double, ties to the one
 * with an even last bit. NaN -> a NaN of the same sign. */
static uint16_t ref_bf16(float x) {
    uint32_t u = f_bits(x);
    if (isnan(x)) return (uint16_t)((u >> 16) | 0x7f81u); /* only "is a NaN" is compared */
    if (isinf(x)) return (uint16_t)(u >> 16);
    uint32_t lo = u >> 16, hi = lo + 1;
    double dl = fabs((double)x - (double)bits_f(lo << 16));
    double vh = (hi & 0x7fffu) == 0x7f80u ? copysign(0x1p128, (double)x) : (double)bits_f(hi << 16);
    double dh = fabs(vh - (double)x);
    if (dl < dh) return (uint16_t)lo;
    if (dh < dl) return (uint16_t)hi;
    return (uint16_t)((lo & 1u) ? hi : lo);
}

static int is_nan16(const qkv_gemm_bf16_config *cfg, uint16_t h) {
    if (cfg->f16) return (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0;
    return (h & 0x7f80u) == 0x7f80u && (h & 0x7fu) != 0;
}

/* The error bound of one C element, from the formats (gemm_bf16.h): S = Σ_k |a_k||b_k| + |βc|,
 * n = the roundings a term can go through (K multiply-adds, one add per K block, the βc add),
 * γ_n = n·u/(1 - n·u) with u = 2^-24 (FP32), plus u·S for the reference's own final rounding.
 *   plain (FP32 activations): γ_n·S + n·2^-149 (gradual underflow, absolute, per operation)
 *   pairs (bf16 activations): 2^-8·S (each a rounded to 8 significant bits, RNE) +
 *       γ_n·(1 + 2^-8)·S (accumulating the rounded products) + 2^-126·(Σ|a| + Σ|b| + n)
 *       (vdpbf16ps flushes subnormal inputs and results to zero). */
static double bound(int pairs, int64_t K, int64_t kblocks, double S, double suma, double sumb) {
    const double u = 0x1p-24;
    double n = (double)(K + kblocks + 1), gam = n * u / (1.0 - n * u);
    if (!pairs) return (gam + u) * S + n * 0x1p-149;
    return (0x1p-8 + gam * (1.0 + 0x1p-8) + u) * S + 0x1p-126 * (suma + sumb + n);
}

/* 64-byte aligned, as qkv's own buffers are (rows of C can then take non-temporal stores) */
static void *xmalloc(size_t n) {
    void *p = aligned_alloc(64, (n + 63) / 64 * 64 + 64);
    if (!p) abort();
    return p;
}

/* One product: cfg's kernel vs the reference within bound(); for plain kernels also vs the
 * FP32 twin on the widened weights, bit for bit. B is overwritten after packing (the packed
 * handle must not read it). */
static void run_case(const qkv_gemm_bf16_config *cfg, qkv_runtime *rt, int tb, int64_t M, int64_t N,
                     int64_t K, float beta, int pad) {
    int64_t lda = K + pad, ldb = (tb ? K : N) + pad, ldc = N + pad, brows = tb ? N : K;
    float *A = xmalloc(sizeof(float) * (size_t)(M * lda));
    uint16_t *B = xmalloc(sizeof(uint16_t) * (size_t)(brows * ldb));
    float *Bf = xmalloc(sizeof(float) * (size_t)(brows * ldb));
    float *C = xmalloc(sizeof(float) * (size_t)(M * ldc)),
          *R = xmalloc(sizeof(float) * (size_t)(M * ldc));
    float *T = xmalloc(sizeof(float) * (size_t)(M * ldc));
    for (int64_t i = 0; i < M * lda; i++) A[i] = urand();
    for (int64_t i = 0; i < brows * ldb; i++) {
        B[i] = to16(cfg, nt_weight());
        Bf[i] = from16(cfg, B[i]);
    }
    for (int64_t i = 0; i < M * ldc; i++) C[i] = R[i] = T[i] = urand();
    (cfg->f16 ? qkv__gemm_f16_naive : qkv__gemm_bf16_naive)(tb, M, N, K, A, lda, B, ldb, beta, R,
                                                            ldc);
    qkv_gemm_bf16_packed *P = NULL;
    CHECK_OK(pack16(cfg, tb, K, N, B, ldb, &P));
    for (int64_t i = 0; i < brows * ldb; i++) B[i] = 0x7fc1; /* NaN: must not be read */
    CHECK_OK(qkv__gemm_bf16(rt, M, A, lda, P, beta, C, ldc, NULL));
    int64_t kc = qkv__gemm_k_block(cfg->kc, K), kblocks = K ? (K + kc - 1) / kc : 0;
    double worst = 0;
    int bad = 0;
    for (int64_t i = 0; i < M; i++) {
        for (int64_t j = 0; j < N; j++) {
            double S = beta == 0.0f ? 0.0 : fabs((double)beta * (double)T[i * ldc + j]);
            double sa = 0, sb = 0;
            for (int64_t p = 0; p < K; p++) {
                double a = fabs((double)A[i * lda + p]);
                double b = fabs((double)(tb ? Bf[j * ldb + p] : Bf[p * ldb + j]));
                S += a * b, sa += a, sb += b;
            }
            double err = fabs((double)C[i * ldc + j] - (double)R[i * ldc + j]);
            double tol = bound(cfg->pairs, K, kblocks, S, sa, sb);
            if (!(err <= tol) && bad++ < 3)
                fprintf(stderr, "%s M=%lld N=%lld K=%lld (%lld,%lld): %.9g vs %.9g err %g > %g\n",
                        cfg->name, (long long)M, (long long)N, (long long)K, (long long)i,
                        (long long)j, C[i * ldc + j], R[i * ldc + j], err, tol);
            if (S > 0 && err / S > worst) worst = err / S;
        }
        for (int64_t j = N; j < ldc; j++) bad += C[i * ldc + j] != T[i * ldc + j]; /* untouched */
    }
    CHECK_MSG(bad == 0, "%s tb=%d M=%lld N=%lld K=%lld beta=%g pad=%d: %d bad", cfg->name, tb,
              (long long)M, (long long)N, (long long)K, beta, pad, bad);
    if (cfg->f32_twin) { /* the same FMAs on the widened weights: the same bits */
        qkv_gemm_config f;
        cfg->f32_twin(&f);
        memcpy(R, T, sizeof(float) * (size_t)(M * ldc));
        CHECK_OK(
            qkv__gemm_f32_with(&f, rt, 0, tb, M, N, K, 1.0f, A, lda, Bf, ldb, beta, R, ldc, NULL));
        CHECK_MSG(memcmp(C, R, sizeof(float) * (size_t)(M * ldc)) == 0,
                  "%s != %s on widened weights: tb=%d M=%lld N=%lld K=%lld", cfg->name, f.name, tb,
                  (long long)M, (long long)N, (long long)K);
    }
    qkv__gemm_bf16_packed_free(P);
    free(A), free(B), free(Bf), free(C), free(R), free(T);
}

static void test_shapes(const qkv_gemm_bf16_config *cfg, qkv_runtime *rt1, qkv_runtime *rt2) {
    const int64_t ms[] = {1, 2, 3, 5, 6, 7, 8, 9, 13, 17, 64, 65, 150};
    const int64_t ns[] = {1, 3, 8, 16, 17, 47, 48, 49, 97, 300};
    const int64_t ks[] = {0, 1, 2, 3, 7, 8, 255, 256, 257, 383, 385, 511, 512, 513, 769, 1025};
    int n = 0;
    for (size_t a = 0; a < sizeof ms / sizeof *ms; a++)
        for (size_t b = 0; b < sizeof ns / sizeof *ns; b++)
            for (size_t c = 0; c < sizeof ks / sizeof *ks; c++) {
                if (ms[a] * ns[b] * ks[c] > 1500000) continue;
                if ((a + b + c) % 2) continue; /* half the grid, every size still visited */
                float beta = n % 3 == 0 ? 0.0f : n % 3 == 1 ? 1.0f : 0.5f;
                run_case(cfg, n % 2 ? rt2 : rt1, (int)((a + c) & 1), ms[a], ns[b], ks[c], beta,
                         (int)(n % 3));
                n++;
            }
    /* large K: the bound grows with K, the error must stay under it */
    run_case(cfg, rt2, 1, 3, 50, 10007, 0.0f, 1);
    run_case(cfg, rt2, 0, 9, 49, 4099, 1.0f, 0);
    run_case(cfg, rt1, 1, 128, 96, 1536, 0.0f, 0); /* MiniLM-like, N cut */
    /* C past 8 MiB: non-temporal stores where a kernel has them (AMX), beta 0 and 1 */
    run_case(cfg, rt2, 1, 1100, 2048, 40, 0.0f, 0);
    run_case(cfg, rt2, 0, 1030, 2064, 33, 1.0f, 0);
}

/* K = 1: C = a·b exactly (one product, added to 0): bf16(a)·b for pairs kernels, whose product
 * is exact in FP32, fl(a·b) for plain kernels. Activations on and next to RNE ties. */
static void test_k1_exact(const qkv_gemm_bf16_config *cfg) {
    const int64_t M = 11, N = 53;
    float A[11], C[11 * 53];
    uint16_t B[53];
    static const uint32_t lows[] = {0x8000, 0x7fff, 0x8001, 0x0000, 0xffff, 0x18000, 0x10000};
    for (int64_t i = 0; i < M; i++) {
        uint32_t u = (nt_u32() & 0x3fff0000u) | 0x20000000u; /* normal, away from the ends */
        A[i] = bits_f((u & ~0x1ffffu) + lows[i % 7]) * (i & 1 ? -1.0f : 1.0f);
    }
    for (int64_t j = 0; j < N; j++) B[j] = to16(cfg, nt_weight());
    qkv_gemm_bf16_packed *P = NULL;
    CHECK_OK(pack16(cfg, 1, 1, N, B, 1, &P));
    CHECK_OK(qkv__gemm_bf16(NULL, M, A, 1, P, 0.0f, C, N, NULL));
    int bad = 0;
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double b = (double)from16(cfg, B[j]);
            double a = cfg->pairs ? (double)bits_f((uint32_t)ref_bf16(A[i]) << 16) : (double)A[i];
            float want = (float)(a * b); /* exact in double: 24 x 8 (f16: 11) bits */
            bad += f_bits(C[i * N + j]) != f_bits(want);
        }
    CHECK_MSG(bad == 0, "%s: K = 1 products not exact (%d)", cfg->name, bad);
    qkv__gemm_bf16_packed_free(P);
}

/* Rows alone == the same rows batched; 1 thread == 3 threads (bit for bit). */
static void test_deterministic(const qkv_gemm_bf16_config *cfg, qkv_runtime *rt1,
                               qkv_runtime *rt3) {
    const int64_t M = 70, N = 200, K = 777;
    float *A = xmalloc(sizeof(float) * (size_t)(M * K)),
          *W = xmalloc(sizeof(float) * (size_t)(N * K));
    float *C1 = xmalloc(sizeof(float) * (size_t)(M * N)),
          *C2 = xmalloc(sizeof(float) * (size_t)(M * N));
    float *C3 = xmalloc(sizeof(float) * (size_t)(M * N));
    for (int64_t i = 0; i < M * K; i++) A[i] = urand();
    for (int64_t i = 0; i < N * K; i++) W[i] = nt_weight();
    qkv_gemm_bf16_packed *P = NULL;
    CHECK_OK(pack16_f32(cfg, 1, K, N, W, K, &P));
    CHECK(qkv__gemm_bf16_packed_k(P) == K && qkv__gemm_bf16_packed_n(P) == N);
    CHECK(qkv__gemm_bf16_packed_bytes(P) >= (size_t)(N * K) * sizeof(uint16_t));
    CHECK(strcmp(qkv__gemm_bf16_packed_kernel(P), cfg->name) == 0);
    CHECK_OK(qkv__gemm_bf16(rt1, M, A, K, P, 0.0f, C1, N, NULL));
    CHECK_OK(qkv__gemm_bf16(rt3, M, A, K, P, 0.0f, C2, N, NULL));
    for (int64_t i = 0; i < M; i += 3) {
        int64_t m = M - i < 3 ? M - i : 3;
        CHECK_OK(qkv__gemm_bf16(rt3, m, A + i * K, K, P, 0.0f, C3 + i * N, N, NULL));
    }
    CHECK(memcmp(C1, C2, sizeof(float) * (size_t)(M * N)) == 0);
    CHECK(memcmp(C1, C3, sizeof(float) * (size_t)(M * N)) == 0);
    for (int64_t i = 0; i < M; i++)
        CHECK_OK(qkv__gemm_bf16(rt1, 1, A + i * K, K, P, 0.0f, C3 + i * N, N, NULL));
    CHECK(memcmp(C1, C3, sizeof(float) * (size_t)(M * N)) == 0);
    qkv__gemm_bf16_packed_free(P);
    free(A), free(W), free(C1), free(C2), free(C3);
}

/* FP32 -> bf16 at packing: RNE against ref_bf16 on ties, near-ties, NaN, ±Inf, overflow,
 * subnormals and random bits; the panels equal those packed from the converted weights. */
static void test_pack_rounding(const qkv_gemm_bf16_config *cfg) {
    const int64_t K = 37, N = 51, n = K * N; /* odd sizes: pair padding, edge panels */
    float *W = xmalloc(sizeof(float) * (size_t)n);
    uint16_t *H = xmalloc(sizeof(uint16_t) * (size_t)n);
    static const uint32_t special[] = {
        0x3f808000u, /* 1 + 2^-8: tie, even is 1 */
        0x3f818000u, /* tie, even is up */
        0x3f807fffu, 0x3f808001u, 0xbf808000u, 0xbf818000u, 0x7f800000u, 0xff800000u, /* ±Inf */
        0x7fc00000u, 0xffc00001u, 0x7f800001u, /* NaN: quiet, negative, signalling low payload */
        0x7fa00000u,                           /* signalling NaN with a high payload */
        0x7f7fffffu, 0x7f7f8000u, 0x7f7f7fffu, /* FLT_MAX -> Inf; tie to even (Inf); below */
        0x00000001u, 0x80000001u, 0x00008000u, /* subnormals: tiny, tie at 0 */
        0x00018000u, 0x007fffffu, 0x00800000u, 0x807f8000u, 0x00000000u, 0x80000000u};
    const size_t ns = sizeof special / sizeof *special;
    for (int64_t i = 0; i < n; i++) {
        uint32_t u = (size_t)i < ns ? special[i] : nt_u32();
        if (i % 5 == 1 && (size_t)i >= ns) u = (u & 0xffff0000u) | 0x8000u; /* more ties */
        W[i] = bits_f(u);
        H[i] = cfg->f16 ? qkv__f32_to_f16(W[i]) : ref_bf16(W[i]); /* f16: core/half.h's, tested
                                                                     by test_core_dtype */
    }
    qkv_gemm_bf16_packed *P = NULL, *Q = NULL;
    CHECK_OK(pack16_f32(cfg, 1, K, N, W, K, &P));
    CHECK_OK(pack16(cfg, 1, K, N, H, K, &Q));
    int bad = 0, same = 1;
    for (int64_t j = 0; j < N; j++)
        for (int64_t k = 0; k < K; k++) {
            uint16_t got = qkv__gemm_bf16_packed_get(P, k, j), want = H[j * K + k];
            int ok = is_nan16(cfg, want) ? is_nan16(cfg, got) && (got >> 15) == (want >> 15)
                                         : got == want;
            if (!ok && bad++ < 5)
                fprintf(stderr, "pack_f32 %08x -> %04x, want %04x\n", f_bits(W[j * K + k]), got,
                        want);
            if (!is_nan16(cfg, want)) same &= qkv__gemm_bf16_packed_get(Q, k, j) == got;
        }
    CHECK_MSG(bad == 0, "%s: FP32 -> 16-bit packing is not RNE (%d)", cfg->name, bad);
    CHECK(same);
    /* [K, N] layout: the same values transposed */
    qkv_gemm_bf16_packed *T = NULL;
    float *Wt = xmalloc(sizeof(float) * (size_t)n);
    for (int64_t j = 0; j < N; j++)
        for (int64_t k = 0; k < K; k++) Wt[k * N + j] = W[j * K + k];
    CHECK_OK(pack16_f32(cfg, 0, K, N, Wt, N, &T));
    for (int64_t j = 0; j < N; j++)
        for (int64_t k = 0; k < K; k++)
            same &= qkv__gemm_bf16_packed_get(T, k, j) == qkv__gemm_bf16_packed_get(P, k, j);
    CHECK_MSG(same, "%s: [K,N] and [N,K] packings differ", cfg->name);
    qkv__gemm_bf16_packed_free(P);
    qkv__gemm_bf16_packed_free(Q);
    qkv__gemm_bf16_packed_free(T);
    free(W), free(H), free(Wt);
}

/* Every allocation of pack and of a product fails in turn: NOMEM, *out NULL, no leak (ASan). */
static void test_nomem(const qkv_gemm_bf16_config *cfg) {
    const int64_t M = 20, N = 60, K = 301;
    float *A = xmalloc(sizeof(float) * (size_t)(M * K)),
          *W = xmalloc(sizeof(float) * (size_t)(N * K));
    float *C = xmalloc(sizeof(float) * (size_t)(M * N));
    for (int64_t i = 0; i < M * K; i++) A[i] = urand();
    for (int64_t i = 0; i < N * K; i++) W[i] = urand();
    qkv_allocator fa = {failing_alloc, counting_free, NULL};
    qkv_set_allocator(&fa);
    int done = 0;
    for (long n = 0; n < 100 && !done; n++) {
        n_attempt = n_alloc = n_free = 0;
        fail_at = n;
        qkv_gemm_bf16_packed *P = (qkv_gemm_bf16_packed *)1;
        qkv_status s = pack16_f32(cfg, 1, K, N, W, K, &P);
        if (s == QKV_OK) {
            s = qkv__gemm_bf16(NULL, M, A, K, P, 0.0f, C, N, NULL);
            qkv__gemm_bf16_packed_free(P);
            if (s == QKV_OK) done = 1;
        } else {
            CHECK(P == NULL);
        }
        if (!done) CHECK_MSG(s == QKV_ERR_NOMEM, "allocation %ld: status %d", n, (int)s);
        CHECK_MSG(n_alloc == n_free, "allocation %ld: %ld allocs, %ld frees", n, n_alloc, n_free);
    }
    fail_at = -1;
    qkv_set_allocator(NULL);
    CHECK(done);
    free(A), free(W), free(C);
}

static void test_args(const qkv_gemm_bf16_config *cfg) {
    uint16_t h[16] = {0};
    float x[16] = {0};
    qkv_gemm_bf16_packed *P = (qkv_gemm_bf16_packed *)1;
    CHECK_STATUS(pack16(cfg, 1, 2, 2, h, 2, NULL), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(pack16(cfg, 1, -1, 2, h, 2, &P), QKV_ERR_INVALID_ARG);
    CHECK(P == NULL);
    CHECK_STATUS(pack16(cfg, 1, 2, -2, h, 2, &P), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(pack16(cfg, 1, 2, 2, NULL, 2, &P), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(pack16_f32(cfg, 1, 2, 2, NULL, 2, &P), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(pack16(cfg, 1, 3, 2, h, 2, &P), QKV_ERR_INVALID_ARG); /* ldb < K */
    CHECK_STATUS(pack16(cfg, 0, 2, 3, h, 2, &P), QKV_ERR_INVALID_ARG); /* ldb < N */
    CHECK_STATUS(qkv__gemm_bf16(NULL, 2, x, 2, NULL, 0, x, 2, NULL), QKV_ERR_INVALID_ARG);
    CHECK_OK(pack16(cfg, 1, 2, 2, h, 2, &P));
    CHECK_STATUS(qkv__gemm_bf16(NULL, -1, x, 2, P, 0, x, 2, NULL), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv__gemm_bf16(NULL, 2, x, 1, P, 0, x, 2, NULL), QKV_ERR_INVALID_ARG); /* lda */
    CHECK_STATUS(qkv__gemm_bf16(NULL, 2, NULL, 2, P, 0, x, 2, NULL), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv__gemm_bf16(NULL, 2, x, 2, P, 0, x, 1, NULL), QKV_ERR_INVALID_ARG); /* ldc */
    CHECK_STATUS(qkv__gemm_bf16(NULL, 2, x, 2, P, 0, NULL, 2, NULL), QKV_ERR_INVALID_ARG);
    CHECK_OK(qkv__gemm_bf16(NULL, 0, NULL, 2, P, 0, NULL, 2, NULL)); /* M = 0 */
    qkv__gemm_bf16_packed_free(P);
    /* K = 0: C = beta·C */
    CHECK_OK(pack16(cfg, 1, 0, 5, NULL, 0, &P));
    x[0] = 3.0f;
    x[1] = NAN;
    CHECK_OK(qkv__gemm_bf16(NULL, 1, NULL, 0, P, 2.0f, x, 5, NULL));
    CHECK(x[0] == 6.0f);
    CHECK_OK(qkv__gemm_bf16(NULL, 1, NULL, 0, P, 0.0f, x, 5, NULL)); /* beta 0 drops the NaN */
    CHECK(x[1] == 0.0f);
    qkv__gemm_bf16_packed_free(P);
    CHECK_OK(pack16(cfg, 1, 7, 0, NULL, 7, &P));
    CHECK(qkv__gemm_bf16_packed_bytes(P) == 0);
    CHECK(qkv__gemm_bf16_packed_is_f16(P) == cfg->f16);
    qkv__gemm_bf16_packed_free(P);
    qkv__gemm_bf16_packed_free(NULL);
    /* a config of the other format is refused */
    P = (qkv_gemm_bf16_packed *)1;
    CHECK_STATUS((cfg->f16 ? qkv__gemm_bf16_pack : qkv__gemm_f16_pack)(cfg, 1, 2, 2, h, 2, &P),
                 QKV_ERR_INVALID_ARG);
    CHECK(P == NULL);
}

/* One product with an epilogue (bias and residual each present or not) against the product
 * without it followed by qkv__gemm_epilogue_tile over C: 1 when the bits are the same. */
static int epilogue_case(const qkv_gemm_bf16_config *cfg, qkv_runtime *rt, int64_t M, int64_t N,
                         int64_t K, float beta, qkv_act act, int with_bias, int with_res) {
    float *A = xmalloc(sizeof(float) * (size_t)(M * K)),
          *W = xmalloc(sizeof(float) * (size_t)(N * K));
    float *bias = xmalloc(sizeof(float) * (size_t)N),
          *res = xmalloc(sizeof(float) * (size_t)(M * N));
    float *C = xmalloc(sizeof(float) * (size_t)(M * N)),
          *R = xmalloc(sizeof(float) * (size_t)(M * N));
    for (int64_t i = 0; i < M * K; i++) A[i] = urand();
    for (int64_t i = 0; i < N * K; i++) W[i] = nt_weight();
    for (int64_t i = 0; i < N; i++) bias[i] = urand();
    for (int64_t i = 0; i < M * N; i++) res[i] = urand(), C[i] = R[i] = urand();
    qkv_gemm_bf16_packed *P = NULL;
    CHECK_OK(pack16_f32(cfg, 1, K, N, W, K, &P));
    qkv_gemm_epilogue e = {
        .bias = with_bias ? bias : NULL, .act = act, .residual = with_res ? res : NULL, .ldr = N};
    CHECK_OK(qkv__gemm_bf16(rt, M, A, K, P, beta, C, N, &e));
    CHECK_OK(qkv__gemm_bf16(rt, M, A, K, P, beta, R, N, NULL));
    qkv__gemm_epilogue_tile(&e, R, N, 0, 0, (int)M, (int)N);
    const int same = memcmp(C, R, sizeof(float) * (size_t)(M * N)) == 0;
    if (!same)
        fprintf(stderr, "%s epilogue M=%lld N=%lld K=%lld act %d: not the unfused bits\n",
                cfg->name, (long long)M, (long long)N, (long long)K, (int)act);
    qkv__gemm_bf16_packed_free(P);
    free(A), free(W), free(bias), free(res), free(C), free(R);
    return same;
}

/* With an epilogue (bias, each activation, a residual; beta 0 and 1; edge shapes, and a C past
 * 8 MiB, where a kernel may use non-temporal stores): the same bits as the product without it
 * followed by qkv__gemm_epilogue_tile over C. */
static void test_epilogue(const qkv_gemm_bf16_config *cfg, qkv_runtime *rt) {
    const int64_t shapes[][3] = {
        {1, 33, 70}, {17, 31, 64}, {32, 32, 32}, {70, 97, 385}, {64, 64, 3}};
    static const qkv_act acts[] = {QKV_ACT_NONE, QKV_ACT_GELU_ERF, QKV_ACT_GELU_TANH,
                                   QKV_ACT_RELU, QKV_ACT_SILU,     QKV_ACT_TANH};
    int n = 0, bad = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (size_t a = 0; a < sizeof acts / sizeof *acts; a++, n++)
            bad += !epilogue_case(cfg, rt, shapes[s][0], shapes[s][1], shapes[s][2],
                                  n % 2 ? 1.0f : 0.0f, acts[a], n % 3 != 2, n % 4 != 1);
    CHECK_MSG(bad == 0, "%s: %d of %d products with an epilogue differ from the unfused ones",
              cfg->name, bad, n);
    CHECK_MSG(epilogue_case(cfg, rt, 1100, 2048, 40, 0.0f, QKV_ACT_GELU_ERF, 1, 1),
              "%s: a large product with an epilogue differs from the unfused one", cfg->name);
}

static void test_config(const qkv_gemm_bf16_config *cfg, qkv_runtime *rt1, qkv_runtime *rt2,
                        qkv_runtime *rt3) {
    printf("kernel: %s (%s weights, %s activations)\n", cfg->name, cfg->f16 ? "f16" : "bf16",
           cfg->pairs ? "bf16" : "FP32");
    test_shapes(cfg, rt1, rt2);
    test_k1_exact(cfg);
    test_epilogue(cfg, rt2);
    test_deterministic(cfg, rt1, rt3);
    test_pack_rounding(cfg);
    test_nomem(cfg);
    test_args(cfg);
}

int main(void) {
    qkv_arch arch = test_use_arch_from_env();
    qkv_runtime *rt1 = NULL, *rt2 = NULL, *rt3 = NULL;
    CHECK_OK(qkv_runtime_create(1, &rt1));
    CHECK_OK(qkv_runtime_create(2, &rt2));
    CHECK_OK(qkv_runtime_create(3, &rt3));
    qkv_gemm_bf16_config cfg;
    qkv__kernels()->gemm_bf16_config(&cfg);
    /* the default: AMX on AVX-512 where the CPU has it (unless QKV_BF16_KERNEL asks for another
     * kernel), else the plain kernel of the ISA */
    const char *env = getenv("QKV_BF16_KERNEL");
    const unsigned f = qkv_cpu_features();
    if (!env && arch == QKV_ARCH_AVX512 && (f & QKV_CPU_AMX_BF16) &&
        strstr(qkv_build_info(), " amx"))
        CHECK(strcmp(cfg.name, "gemm_bf16_amx") == 0);
    else if (!env)
        CHECK(cfg.pairs == 0);
    printf("cpu: avx512_bf16 %s, amx_bf16 %s\n", f & QKV_CPU_AVX512BF16 ? "yes" : "no",
           f & QKV_CPU_AMX_BF16 ? "yes" : "no");
    test_config(&cfg, rt1, rt2, rt3);
    qkv_gemm_bf16_config hf; /* f16 weights: the plain kernel of the ISA */
    qkv__kernels()->gemm_f16_config(&hf);
    CHECK(hf.f16 == 1 && hf.pairs == 0 && hf.f32_twin != NULL);
    test_config(&hf, rt1, rt2, rt3);
    /* on AVX-512, every other bf16 kernel the CPU and build have, selected explicitly; a kernel
     * the CPU has must be there unless the build lacks it (qkv_build_info lists them) */
    static const int kinds[] = {QKV_BF16_PLAIN, QKV_BF16_DPBF16, QKV_BF16_AMX};
    static const char *const names[] = {"gemm_bf16_avx512", "gemm_bf16_avx512bf16",
                                        "gemm_bf16_amx"};
    static const unsigned needs[] = {0, QKV_CPU_AVX512BF16, QKV_CPU_AMX_BF16};
    static const char *const builds[] = {"", " avx512bf16", " amx"};
    for (size_t i = 0; arch == QKV_ARCH_AVX512 && i < sizeof kinds / sizeof *kinds; i++) {
        qkv_gemm_bf16_config other;
        qkv__gemm_bf16_select(kinds[i]);
        qkv__kernels()->gemm_bf16_config(&other);
        qkv__gemm_bf16_select(QKV_BF16_DEFAULT);
        const int has = (f & needs[i]) == needs[i] && strstr(qkv_build_info(), builds[i]);
        CHECK_MSG(strcmp(other.name, has ? names[i] : "gemm_bf16_avx512") == 0,
                  "selected %s, got %s", names[i], other.name);
        if (strcmp(other.name, cfg.name) != 0) test_config(&other, rt1, rt2, rt3);
    }
    qkv_runtime_free(rt1);
    qkv_runtime_free(rt2);
    qkv_runtime_free(rt3);
    return test_finish("kernels_gemm_bf16");
}
