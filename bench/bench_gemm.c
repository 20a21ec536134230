/* bench_gemm.c — qkv's packed GEMM against OpenBLAS (when built with it) on the square
 * 2048³ case and Transformer shapes: M tokens in {128..4096}, N, K in {384, 768, 1536, 3072}.
 * One JSON line per shape and thread count:
 *   {"op":"gemm","M":..,"N":..,"K":..,"trans_b":..,"threads":..,"ms":median,"gflops":..,
 *    "peak_pct":..,"openblas_ms":..,"ratio_vs_openblas":openblas_ms/ms}
 * Usage: bench_gemm [--threads N] [--reps R] [--quick] [--packed | --bf16 | --i8]
 * --packed: the inference shapes instead (M in {1, 8, 16, 32, 64, 128}, x·Wᵀ), each timed three
 * ways on the same data: the plain call (packs W every call), W prepacked once
 * (qkv__gemm_f32_packed, "packed_ms") and prepacked with A always packed ("packed_pa_ms", the
 * small-M kernel off), plus "pack_ms", the one-off cost of qkv__gemm_pack_b.
 * --bf16: bf16 weights (qkv__gemm_bf16, kernels/gemm_bf16.h) against FP32 prepacked weights
 * on MiniLM-like (M = 128) and decode-like (M = 1) shapes, x·Wᵀ: GFLOP/s of both, each as a
 * percent of the in-process peak of the instruction it runs (FMA for FP32 and the plain bf16
 * kernels, vdpbf16ps for the AVX512_BF16 one), and the weight bytes streamed per second;
 * "plain_*": the plain kernel of the same ISA (vdpbf16ps turned off), timed on the same data;
 * "best_gflops": from the fastest of the reps instead of the median.
 * --i8: int8 weights and dynamic int8 activations (qkv__gemm_i8, kernels/gemm_i8.h) against
 * FP32 prepacked weights on the --bf16 shapes plus the batched-embedding ones (M = 2048):
 * "GOPS" (2·M·N·K / s) of both, the int8 one also as a percent of the in-process peak of its
 * kernel's instruction (tdpbssd on the AMX kernel's tiles, vpdpbusd; the FMA peak where the
 * kernel has no peak loop of its own), "speedup" f32_ms / i8_ms; the kernel is the default one
 * (AMX where the CPU has it; QKV_I8_KERNEL=vnni|avx2 picks another);
 * "f16_*": f16 weights (qkv__gemm_f16_pack_f32, the default f16 kernel) on the same data.
 * Peer: run with OPENBLAS_CORETYPE=SkylakeX (Debian's OpenBLAS misdetects this CPU) and
 * OPENBLAS_NUM_THREADS equal to --threads; the program sets both if unset. */
#include "bench_util.h"
#include "kernels/dispatch.h"
#include "kernels/gemm.h"
#include "kernels/gemm_bf16.h"
#include "kernels/gemm_i8.h"
#include "qkv.h"

#include <stdio.h>

#if QKV_BENCH_OPENBLAS
#include <cblas.h>
#endif

static double time_qkv(qkv_runtime *rt, int tb, int64_t M, int64_t N, int64_t K, const float *A,
                       const float *B, float *C, int reps) {
    double t[64];
    for (int r = 0; r < reps; r++) {
        double t0 = bench_now();
        qkv__gemm_f32(rt, 0, tb, M, N, K, 1.0f, A, K, B, tb ? K : N, 0.0f, C, N, NULL);
        t[r] = bench_now() - t0;
    }
    return bench_median(t, reps);
}

enum { W_F32, W_BF16, W_I8 }; /* the kind of prepacked weights P below */

/* Median time of reps calls of C = A·W (prepacked as P, of that kind); *best (if not NULL)
 * gets the fastest (on a loaded machine the median of a millisecond call includes
 * preemptions; the minimum shows the kernel). */
static double time_weights(qkv_runtime *rt, int kind, int64_t M, const float *A, const void *P,
                           float *C, int reps, double *best) {
    double t[64];
    int64_t K = kind == W_F32    ? qkv__gemm_packed_k(P)
                : kind == W_BF16 ? qkv__gemm_bf16_packed_k(P)
                                 : qkv__gemm_i8_packed_k(P);
    int64_t N = kind == W_F32    ? qkv__gemm_packed_n(P)
                : kind == W_BF16 ? qkv__gemm_bf16_packed_n(P)
                                 : qkv__gemm_i8_packed_n(P);
    for (int r = 0; r < reps; r++) {
        double t0 = bench_now();
        if (kind == W_F32)
            qkv__gemm_f32_packed(rt, 0, M, A, K, P, 1.0f, 0.0f, C, N, NULL);
        else if (kind == W_BF16)
            qkv__gemm_bf16(rt, M, A, K, P, 0.0f, C, N, NULL);
        else
            qkv__gemm_i8(rt, M, A, K, P, 0.0f, C, N, NULL);
        t[r] = bench_now() - t0;
        if (best && (r == 0 || t[r] < *best)) *best = t[r];
    }
    return bench_median(t, reps);
}

/* The inference shapes: few rows against a weight stored [N, K] (x·Wᵀ). */
static int run_packed(qkv_runtime *rt, int threads, int reps, double peak) {
    const int64_t ms[] = {1, 8, 16, 32, 64, 128};
    const int64_t nk[][2] = {{384, 384},  {1536, 384}, {384, 1536}, {768, 768},
                             {3072, 768}, {768, 3072}, {50257, 768}};
    qkv_gemm_config cfg, pa;
    qkv__kernels()->gemm_f32_config(&cfg);
    pa = cfg;
    pa.ukr_rows = NULL;
    for (size_t b = 0; b < sizeof nk / sizeof *nk; b++) {
        int64_t N = nk[b][0], K = nk[b][1];
        float *B = malloc(sizeof(float) * (size_t)(K * N));
        float *A = malloc(sizeof(float) * (size_t)(128 * K));
        float *C = malloc(sizeof(float) * (size_t)(128 * N));
        if (!A || !B || !C) return 1;
        bench_fill(A, (size_t)(128 * K), 1);
        bench_fill(B, (size_t)(K * N), 2);
        qkv_gemm_packed *P = NULL, *Q = NULL;
        double t0 = bench_now();
        if (qkv__gemm_pack_b(&cfg, 1, K, N, B, K, &P) != QKV_OK) return 1;
        double pack_ms = (bench_now() - t0) * 1e3;
        if (qkv__gemm_pack_b(&pa, 1, K, N, B, K, &Q) != QKV_OK) return 1;
        for (size_t a = 0; a < sizeof ms / sizeof *ms; a++) {
            int64_t M = ms[a];
            double flops = 2.0 * (double)M * (double)N * (double)K;
            time_qkv(rt, 1, M, N, K, A, B, C, 1);
            double ms_u = time_qkv(rt, 1, M, N, K, A, B, C, reps) * 1e3;
            time_weights(rt, W_F32, M, A, P, C, 1, NULL);
            double ms_p = time_weights(rt, W_F32, M, A, P, C, reps, NULL) * 1e3;
            time_weights(rt, W_F32, M, A, Q, C, 1, NULL);
            double ms_pa = time_weights(rt, W_F32, M, A, Q, C, reps, NULL) * 1e3;
            printf("{\"op\":\"gemm_packed\",\"M\":%lld,\"N\":%lld,\"K\":%lld,\"threads\":%d,"
                   "\"arch\":\"%s\",\"unpacked_ms\":%.4f,\"packed_ms\":%.4f,"
                   "\"packed_pa_ms\":%.4f,\"pack_ms\":%.3f,\"packed_gflops\":%.1f,"
                   "\"packed_peak_pct\":%.1f,\"packed_gbps\":%.1f,\"speedup\":%.2f}\n",
                   (long long)M, (long long)N, (long long)K, threads,
                   qkv_arch_name(qkv_arch_active()), ms_u, ms_p, ms_pa, pack_ms, flops / ms_p / 1e6,
                   100.0 * flops / ms_p / 1e6 / peak, 4.0 * (double)K * (double)N / ms_p / 1e6,
                   ms_u / ms_p);
            fflush(stdout);
        }
        qkv__gemm_packed_free(P);
        qkv__gemm_packed_free(Q);
        free(A), free(B), free(C);
    }
    return 0;
}

/* A [M, K] and W [N, K] filled with the bench's data, C [M, N]; 1 when out of memory. */
static int operands(int64_t M, int64_t N, int64_t K, float **A, float **W, float **C) {
    *W = malloc(sizeof(float) * (size_t)(K * N));
    *A = malloc(sizeof(float) * (size_t)(M * K));
    *C = malloc(sizeof(float) * (size_t)(M * N));
    if (!*A || !*W || !*C) return 1;
    bench_fill(*A, (size_t)(M * K), 1);
    bench_fill(*W, (size_t)(K * N), 2);
    return 0;
}

/* bf16 weights vs FP32 weights, both prepacked, on the same data. */
static int run_bf16(qkv_runtime *rt, int threads, int reps, double peak) {
    const int64_t shapes[][3] = {{128, 1536, 384},  {128, 384, 1536},  {128, 768, 768},
                                 {1, 3072, 768},    {1, 768, 3072},    {8, 3072, 768},
                                 {2048, 1536, 384}, {2048, 384, 1536}, {2048, 1152, 384}};
    /* the bf16-activation kernel the CPU has (QKV_BF16_KERNEL=amx|dpbf16 picks one; unset: AMX,
     * else vdpbf16ps, else the plain kernel); the plain one beside it */
    qkv_gemm_bf16_config bcfg, pcfg;
    const char *env = getenv("QKV_BF16_KERNEL");
    qkv__gemm_bf16_select(env && strcmp(env, "dpbf16") == 0 ? QKV_BF16_DPBF16 : QKV_BF16_AMX);
    qkv__kernels()->gemm_bf16_config(&bcfg);
    if (!bcfg.pairs) {
        qkv__gemm_bf16_select(QKV_BF16_DPBF16);
        qkv__kernels()->gemm_bf16_config(&bcfg);
    }
    qkv__gemm_bf16_select(QKV_BF16_PLAIN);
    qkv__kernels()->gemm_bf16_config(&pcfg);
    qkv__gemm_bf16_select(QKV_BF16_DEFAULT);
    double bpeak = qkv__peak_gflops_with(rt, 0.3, bcfg.peak_loop);
    fprintf(stderr, "bench_gemm --bf16: kernel %s, measured peak of its instruction %.1f GFLOP/s\n",
            bcfg.name, bpeak);
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        float *A, *W, *C;
        if (operands(M, N, K, &A, &W, &C) != 0) return 1;
        qkv_gemm_packed *P = NULL;
        qkv_gemm_bf16_packed *Q = NULL, *R = NULL;
        if (qkv__gemm_pack_b(NULL, 1, K, N, W, K, &P) != QKV_OK) return 1;
        if (qkv__gemm_bf16_pack_f32(&bcfg, 1, K, N, W, K, &Q) != QKV_OK) return 1;
        if (qkv__gemm_bf16_pack_f32(&pcfg, 1, K, N, W, K, &R) != QKV_OK) return 1;
        double flops = 2.0 * (double)M * (double)N * (double)K;
        double best_f, best_b, best_p;
        time_weights(rt, W_F32, M, A, P, C, 1, NULL);
        double ms_f = time_weights(rt, W_F32, M, A, P, C, reps, &best_f) * 1e3;
        time_weights(rt, W_BF16, M, A, Q, C, 1, NULL);
        double ms_b = time_weights(rt, W_BF16, M, A, Q, C, reps, &best_b) * 1e3;
        time_weights(rt, W_BF16, M, A, R, C, 1, NULL);
        double ms_p = time_weights(rt, W_BF16, M, A, R, C, reps, &best_p) * 1e3;
        printf("{\"op\":\"gemm_bf16\",\"M\":%lld,\"N\":%lld,\"K\":%lld,\"threads\":%d,"
               "\"arch\":\"%s\",\"kernel\":\"%s\",\"f32_ms\":%.4f,\"f32_gflops\":%.1f,"
               "\"f32_peak_pct\":%.1f,\"f32_weight_gbps\":%.1f,\"bf16_ms\":%.4f,"
               "\"bf16_gflops\":%.1f,\"bf16_peak_pct\":%.1f,\"bf16_weight_gbps\":%.1f,"
               "\"speedup\":%.2f,\"plain_kernel\":\"%s\",\"plain_ms\":%.4f,"
               "\"plain_gflops\":%.1f,\"plain_speedup\":%.2f,\"best_gflops\":{\"f32\":%.1f,"
               "\"bf16\":%.1f,\"plain\":%.1f}}\n",
               (long long)M, (long long)N, (long long)K, threads, qkv_arch_name(qkv_arch_active()),
               bcfg.name, ms_f, flops / ms_f / 1e6, 100.0 * flops / ms_f / 1e6 / peak,
               4.0 * (double)K * (double)N / ms_f / 1e6, ms_b, flops / ms_b / 1e6,
               100.0 * flops / ms_b / 1e6 / bpeak, 2.0 * (double)K * (double)N / ms_b / 1e6,
               ms_f / ms_b, pcfg.name, ms_p, flops / ms_p / 1e6, ms_f / ms_p, flops / best_f / 1e9,
               flops / best_b / 1e9, flops / best_p / 1e9);
        fflush(stdout);
        qkv__gemm_packed_free(P);
        qkv__gemm_bf16_packed_free(Q);
        qkv__gemm_bf16_packed_free(R);
        free(A), free(W), free(C);
    }
    return 0;
}

/* int8 weights and activations vs FP32 weights, both prepacked, on the same data. */
static int run_i8(qkv_runtime *rt, int threads, int reps, double peak) {
    const int64_t shapes[][3] = {{128, 1536, 384},  {128, 384, 1536},  {128, 768, 768},
                                 {1, 3072, 768},    {1, 768, 3072},    {8, 3072, 768},
                                 {2048, 1536, 384}, {2048, 384, 1536}, {2048, 384, 384}};
    qkv_gemm_i8_config icfg;
    qkv__kernels()->gemm_i8_config(&icfg);
    double ipeak = icfg.peak_loop ? qkv__peak_gflops_with(rt, 0.3, icfg.peak_loop) : peak;
    fprintf(stderr, "bench_gemm --i8: kernel %s, measured peak of its instruction %.1f GOPS\n",
            icfg.name, ipeak);
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        float *A, *W, *C;
        if (operands(M, N, K, &A, &W, &C) != 0) return 1;
        qkv_gemm_packed *P = NULL;
        qkv_gemm_i8_packed *Q = NULL;
        qkv_gemm_bf16_packed *H = NULL;
        if (qkv__gemm_pack_b(NULL, 1, K, N, W, K, &P) != QKV_OK) return 1;
        if (qkv__gemm_i8_pack_f32(&icfg, 1, K, N, W, K, &Q) != QKV_OK) return 1;
        if (qkv__gemm_f16_pack_f32(NULL, 1, K, N, W, K, &H) != QKV_OK) return 1;
        double ops = 2.0 * (double)M * (double)N * (double)K;
        double best_f, best_i, best_h;
        int r = M >= 1024 && reps > 3 ? 3 : reps; /* the large shapes: a shared machine */
        time_weights(rt, W_F32, M, A, P, C, 1, NULL);
        double ms_f = time_weights(rt, W_F32, M, A, P, C, r, &best_f) * 1e3;
        time_weights(rt, W_I8, M, A, Q, C, 1, NULL);
        double ms_i = time_weights(rt, W_I8, M, A, Q, C, r, &best_i) * 1e3;
        time_weights(rt, W_BF16, M, A, H, C, 1, NULL);
        double ms_h = time_weights(rt, W_BF16, M, A, H, C, r, &best_h) * 1e3;
        printf("{\"op\":\"gemm_i8\",\"M\":%lld,\"N\":%lld,\"K\":%lld,\"threads\":%d,"
               "\"arch\":\"%s\",\"kernel\":\"%s\",\"f32_ms\":%.4f,\"f32_gops\":%.1f,"
               "\"f32_peak_pct\":%.1f,\"i8_ms\":%.4f,\"i8_gops\":%.1f,\"i8_peak_pct\":%.1f,"
               "\"speedup\":%.2f,\"f16_ms\":%.4f,\"f16_gops\":%.1f,"
               "\"best_gops\":{\"f32\":%.1f,\"i8\":%.1f,\"f16\":%.1f}}\n",
               (long long)M, (long long)N, (long long)K, threads, qkv_arch_name(qkv_arch_active()),
               icfg.name, ms_f, ops / ms_f / 1e6, 100.0 * ops / ms_f / 1e6 / peak, ms_i,
               ops / ms_i / 1e6, 100.0 * ops / ms_i / 1e6 / ipeak, ms_f / ms_i, ms_h,
               ops / ms_h / 1e6, ops / best_f / 1e9, ops / best_i / 1e9, ops / best_h / 1e9);
        fflush(stdout);
        qkv__gemm_packed_free(P);
        qkv__gemm_i8_packed_free(Q);
        qkv__gemm_bf16_packed_free(H);
        free(A), free(W), free(C);
    }
    return 0;
}

#if QKV_BENCH_OPENBLAS
static double time_blas(int tb, int64_t M, int64_t N, int64_t K, const float *A, const float *B,
                        float *C, int reps) {
    double t[64];
    for (int r = 0; r < reps; r++) {
        double t0 = bench_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)M, (int)N,
                    (int)K, 1.0f, A, (int)K, B, tb ? (int)K : (int)N, 0.0f, C, (int)N);
        t[r] = bench_now() - t0;
    }
    return bench_median(t, reps);
}
#endif

int main(int argc, char **argv) {
    int threads = (int)bench_int_opt(argc, argv, "--threads", 1);
    int reps = (int)bench_int_opt(argc, argv, "--reps", 7);
    int quick = bench_has_flag(argc, argv, "--quick");
    if (reps < 1 || reps > 64) reps = 7;
    char nt[16];
    snprintf(nt, sizeof nt, "%d", threads);
    setenv("OPENBLAS_CORETYPE", "SkylakeX", 0);
    setenv("OPENBLAS_NUM_THREADS", nt, 0);
#if QKV_BENCH_OPENBLAS
    openblas_set_num_threads(threads);
#endif
    qkv_runtime *rt = NULL;
    if (qkv_runtime_create(threads, &rt) != QKV_OK) return 1;
    double peak = qkv_fma_peak_gflops(rt, 0.3);
    fprintf(stderr, "bench_gemm: arch %s, %d thread(s), measured FMA peak %.1f GFLOP/s\n",
            qkv_arch_name(qkv_arch_active()), threads, peak);

    if (bench_has_flag(argc, argv, "--bf16")) {
        int rc = run_bf16(rt, threads, reps, peak);
        qkv_runtime_free(rt);
        return rc;
    }
    if (bench_has_flag(argc, argv, "--i8")) {
        int rc = run_i8(rt, threads, reps, peak);
        qkv_runtime_free(rt);
        return rc;
    }
    if (bench_has_flag(argc, argv, "--packed")) {
        int rc = run_packed(rt, threads, reps, peak);
        qkv_runtime_free(rt);
        return rc;
    }
    /* x W^T is the Transformer's linear layer: B stored [N, K], trans_b = 1. */
    struct {
        int64_t M, N, K;
        int tb;
    } shapes[64];
    int n = 0;
    shapes[n++] = (typeof(shapes[0])){2048, 2048, 2048, 0};
    const int64_t ms[] = {128, 512, 1024, 4096};
    const int64_t nk[][2] = {{384, 384}, {768, 768}, {3072, 768}, {768, 3072}, {1536, 1536}};
    for (size_t a = 0; a < sizeof ms / sizeof *ms; a++)
        for (size_t b = 0; b < sizeof nk / sizeof *nk; b++) {
            if (quick && (a % 2 || b % 2)) continue;
            shapes[n++] = (typeof(shapes[0])){ms[a], nk[b][0], nk[b][1], 1};
        }
    /* Two passes: every qkv measurement first, then every OpenBLAS one. OpenBLAS's idle
     * workers spin for a while after each call and took the second CPU from qkv's next
     * measurement when the two alternated (2-thread qkv numbers on short shapes then read as
     * the 1-thread speed). */
    double ms_q[64] = {0}, ms_b[64] = {0};
    for (int pass = 0; pass < 2; pass++) {
#if !QKV_BENCH_OPENBLAS
        if (pass == 1) break;
#endif
        for (int s = 0; s < n; s++) {
            int64_t M = shapes[s].M, N = shapes[s].N, K = shapes[s].K;
            int tb = shapes[s].tb;
            float *A = malloc(sizeof(float) * (size_t)(M * K));
            float *B = malloc(sizeof(float) * (size_t)(K * N));
            float *C = malloc(sizeof(float) * (size_t)(M * N));
            if (!A || !B || !C) return 1;
            bench_fill(A, (size_t)(M * K), 1);
            bench_fill(B, (size_t)(K * N), 2);
            double flops = 2.0 * (double)M * (double)N * (double)K;
            int r = flops > 1e10 ? (reps < 5 ? reps : 5) : reps;
            if (pass == 0) {
                time_qkv(rt, tb, M, N, K, A, B, C, 1); /* warm up */
                ms_q[s] = time_qkv(rt, tb, M, N, K, A, B, C, r) * 1e3;
            }
#if QKV_BENCH_OPENBLAS
            if (pass == 1) {
                time_blas(tb, M, N, K, A, B, C, 1);
                ms_b[s] = time_blas(tb, M, N, K, A, B, C, r) * 1e3;
            }
#endif
            free(A), free(B), free(C);
        }
    }
    for (int s = 0; s < n; s++) {
        int64_t M = shapes[s].M, N = shapes[s].N, K = shapes[s].K;
        double flops = 2.0 * (double)M * (double)N * (double)K;
        printf("{\"op\":\"gemm\",\"M\":%lld,\"N\":%lld,\"K\":%lld,\"trans_b\":%d,\"threads\":%d,"
               "\"arch\":\"%s\",\"ms\":%.3f,\"gflops\":%.1f,\"peak_pct\":%.1f",
               (long long)M, (long long)N, (long long)K, shapes[s].tb, threads,
               qkv_arch_name(qkv_arch_active()), ms_q[s], flops / ms_q[s] / 1e6,
               100.0 * flops / ms_q[s] / 1e6 / peak);
        if (ms_b[s] > 0)
            printf(",\"openblas_ms\":%.3f,\"openblas_gflops\":%.1f,\"ratio_vs_openblas\":%.3f",
                   ms_b[s], flops / ms_b[s] / 1e6, ms_b[s] / ms_q[s]);
        printf("}\n");
    }
    qkv_runtime_free(rt);
    return 0;
}
