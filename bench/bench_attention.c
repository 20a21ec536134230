/* bench_attention.c — fused attention forward / backward / decode, one JSON line per shape.
 *
 * For each shape: the median of N runs of the public entry point (the active ISA's path: the
 * fused kernels under avx2 / avx512), GFLOP/s with the DESIGN.md convention (forward
 * 4·B·Hq·Tq·Tk·D, halved when causal and Tq == Tk; backward 2.5x forward; decode as forward),
 * the percent of this machine's FMA peak measured on the spot with the same thread count
 * (qkv_fma_peak_gflops: independent FMA chains of the active ISA's widest vectors), and
 * the ratio against the reference path (attention_ref.c) run in the same process on the same
 * shape. The reference is O(10x) slower, so it is timed once and only when its estimated time
 * is under --ref-budget seconds (default 3); otherwise "ref_ratio" is null. When built with
 * OpenBLAS (Debian libopenblas-dev), forward shapes are also timed on an unfused path:
 * per (batch, head) S = QKᵀ by cblas_sgemm, scale and mask, a row softmax, O = S·V by
 * cblas_sgemm (S materialized, as an implementation without fusion does): "openblas_ratio"
 * is its median time over qkv's (null for backward, decode and padded shapes).
 *
 * --kernels times the active ISA's attention micro-kernels alone on the forward's tiles
 * (128 query rows x 64 keys, D 64 and 128; the same K/V tiles again and again, so they stay
 * in cache): dot (Sᵀ = K·Qᵀ), softmax (one online step) and acc (O = alpha∘O + P·V), one
 * thread, with their GFLOP/s (softmax: its share of a tile's time instead). That is the
 * ceiling the fused forward can reach on this machine.
 *
 * --bf16 also times qkv_attention_forward_bf16 on the same shapes (forward and decode; q, k, v
 * converted to bf16 once, outside the timing): "bf16_median_ms", "bf16_gflops" and
 * "bf16_speedup", the float forward's median time over the bf16 one (null for backward).
 *
 * Usage: bench_attention [--quick] [--threads N] [--runs N] [--ref-budget S] [--only
 * fwd|bwd|decode] [--kernels] [--rss] [--bf16]
 * Benchmarks assert nothing about time; results go to docs/PERFORMANCE.md. */
#include "attention/attention.h"
#include "bench_util.h"
#include "kernels/attn_kernels.h"
#include "kernels/dispatch.h"
#include "qkv.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/resource.h>
#if QKV_BENCH_OPENBLAS
#include <cblas.h>
void openblas_set_num_threads(int);
/* Stops OpenBLAS's worker threads (it starts them again on its next threaded call). Its idle
 * workers spin with sched_yield instead of sleeping, from the library's load on and after
 * every call: on 2 vCPUs that took most of a core from qkv's timings (measured: qkv's 2-thread
 * forward at 1.0-1.2x its 1-thread speed in this program, 1.9x without OpenBLAS). So the
 * workers are stopped before anything is timed and after each peer run. */
int blas_thread_shutdown_(void);
#endif

/* ---------------------------------------------------------------- shapes */

typedef struct shape {
    const char *op; /* attention_fwd, attention_bwd, decode */
    const char *tag;
    int64_t B, Tq, Tk, Hq, Hk, D;
    int causal, padded;
} shape;

static double flops_of(const shape *s) {
    double f = 4.0 * (double)s->B * (double)s->Hq * (double)s->Tq * (double)s->Tk * (double)s->D;
    if (s->causal && s->Tq == s->Tk) f *= 0.5;
    if (strcmp(s->op, "attention_bwd") == 0) f *= 2.5;
    return f;
}

static int g_bf16; /* --bf16 */

typedef struct bufs {
    float *q, *k, *v, *out, *lse, *dout, *dq, *dk, *dv;
    int32_t *lens;
} bufs;

static int run_once(qkv_runtime *rt, const shape *s, const qkv_attention_desc *d, bufs *b,
                    int use_ref) {
    qkv__attn_problem pb;
    if (qkv__attn_validate("bench", d, 0, &pb) != QKV_OK) return 1;
    if (strcmp(s->op, "attention_bwd") != 0)
        return use_ref ? (int)qkv__attention_forward_ref(rt, &pb, b->q, b->k, b->v, b->out, b->lse)
                       : (int)qkv_attention_forward(rt, d, b->q, b->k, b->v, b->out, b->lse);
    return use_ref ? (int)qkv__attention_backward_ref(rt, &pb, b->q, b->k, b->v, b->out, b->lse,
                                                      b->dout, b->dq, b->dk, b->dv)
                   : (int)qkv_attention_backward(rt, d, b->q, b->k, b->v, b->out, b->lse, b->dout,
                                                 b->dq, b->dk, b->dv);
}

#if QKV_BENCH_OPENBLAS
/* The unfused forward: per (b, h), S [Tq, Tk] = scale · Q Kᵀ, causal mask, softmax, O = S V. */
static void unfused_forward(const shape *s, const bufs *b, float *S) {
    const int64_t Tq = s->Tq, Tk = s->Tk, D = s->D, Hq = s->Hq, Hk = s->Hk;
    const float scale = 1.0f / sqrtf((float)D);
    for (int64_t bb = 0; bb < s->B; bb++)
        for (int64_t h = 0; h < Hq; h++) {
            int64_t hk = h / (Hq / Hk);
            const float *q = b->q + (bb * Tq * Hq + h) * D, *k = b->k + (bb * Tk * Hk + hk) * D,
                        *v = b->v + (bb * Tk * Hk + hk) * D;
            float *o = b->out + (bb * Tq * Hq + h) * D;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)Tq, (int)Tk, (int)D, scale, q,
                        (int)(Hq * D), k, (int)(Hk * D), 0.0f, S, (int)Tk);
            for (int64_t i = 0; i < Tq; i++) {
                float *row = S + i * Tk, mx = -INFINITY, sum = 0;
                int64_t last = s->causal ? i + (Tk - Tq) : Tk - 1;
                for (int64_t j = last + 1; j < Tk; j++) row[j] = 0.0f;
                for (int64_t j = 0; j <= last; j++) mx = row[j] > mx ? row[j] : mx;
                for (int64_t j = 0; j <= last; j++) sum += row[j] = expf(row[j] - mx);
                for (int64_t j = 0; j <= last; j++) row[j] /= sum;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)Tq, (int)D, (int)Tk, 1.0f,
                        S, (int)Tk, v, (int)(Hk * D), 0.0f, o, (int)(Hq * D));
        }
}
#endif

static void bench_shape(qkv_runtime *rt, const shape *s, int runs, double peak, double ref_budget) {
    qkv_attention_desc d;
    memset(&d, 0, sizeof d);
    d.batch = s->B;
    d.q_len = s->Tq;
    d.kv_len = s->Tk;
    d.n_heads = s->Hq;
    d.n_kv_heads = s->Hk;
    d.head_dim = s->D;
    d.causal = s->causal;
    d.window_left = d.window_right = -1;
    size_t nq = (size_t)(s->B * s->Tq * s->Hq * s->D), nk = (size_t)(s->B * s->Tk * s->Hk * s->D);
    bufs b = {0};
    b.q = qkv_malloc(nq * 4);
    b.k = qkv_malloc(nk * 4);
    b.v = qkv_malloc(nk * 4);
    b.out = qkv_malloc(nq * 4);
    b.lse = qkv_malloc((size_t)(s->B * s->Hq * s->Tq) * 4);
    int bwd = strcmp(s->op, "attention_bwd") == 0;
    if (bwd) {
        b.dout = qkv_malloc(nq * 4);
        b.dq = qkv_malloc(nq * 4);
        b.dk = qkv_malloc(nk * 4);
        b.dv = qkv_malloc(nk * 4);
    }
    bench_fill(b.q, nq, 1);
    bench_fill(b.k, nk, 2);
    bench_fill(b.v, nk, 3);
    if (bwd) bench_fill(b.dout, nq, 4);
    if (s->padded) { /* BERT-style padding: batch element b keeps 100% - 10b% of the keys */
        b.lens = malloc((size_t)s->B * sizeof *b.lens);
        for (int64_t i = 0; i < s->B; i++) b.lens[i] = (int32_t)(s->Tk - (s->Tk * (i % 5)) / 10);
        d.kv_lens = b.lens;
    }
    if (bwd) qkv_attention_forward(rt, &d, b.q, b.k, b.v, b.out, b.lse);
    run_once(rt, s, &d, &b, 0); /* warm-up */
    double *t = malloc((size_t)runs * sizeof *t);
    for (int r = 0; r < runs; r++) {
        double t0 = bench_now();
        run_once(rt, s, &d, &b, 0);
        t[r] = bench_now() - t0;
    }
    double med = bench_median(t, runs), gflops = flops_of(s) / med * 1e-9;
    /* the reference: about 10-40x slower; timed once if it fits the budget */
    double ref_ratio = -1;
    if (med * 40.0 < ref_budget) {
        double t0 = bench_now();
        run_once(rt, s, &d, &b, 1);
        ref_ratio = (bench_now() - t0) / med;
    }
    char blas[32] = "null";
#if QKV_BENCH_OPENBLAS
    if (strcmp(s->op, "attention_fwd") == 0 && !s->padded) {
        openblas_set_num_threads(qkv_runtime_n_threads(rt));
        float *S = malloc((size_t)(s->Tq * s->Tk) * sizeof *S);
        if (S) {
            unfused_forward(s, &b, S); /* warm-up */
            double *tb = malloc((size_t)runs * sizeof *tb);
            for (int r = 0; r < runs; r++) {
                double t0 = bench_now();
                unfused_forward(s, &b, S);
                tb[r] = bench_now() - t0;
            }
            snprintf(blas, sizeof blas, "%.2f", bench_median(tb, runs) / med);
            free(tb);
            free(S);
            blas_thread_shutdown_(); /* see its declaration */
        }
    }
#endif
    char bf[96] = "\"bf16_median_ms\":null,\"bf16_gflops\":null,\"bf16_speedup\":null";
    if (g_bf16 && !bwd) { /* the same inputs rounded to bf16, the same output buffers */
        uint16_t *qh = qkv_malloc(nq * 2), *kh = qkv_malloc(nk * 2), *vh = qkv_malloc(nk * 2);
        double *th = malloc((size_t)runs * sizeof *th);
        if (qh && kh && vh && th) {
            qkv_f32_to_bf16_n(b.q, qh, nq);
            qkv_f32_to_bf16_n(b.k, kh, nk);
            qkv_f32_to_bf16_n(b.v, vh, nk);
            qkv_attention_forward_bf16(rt, &d, qh, kh, vh, b.out, b.lse); /* warm-up */
            for (int r = 0; r < runs; r++) {
                double t0 = bench_now();
                qkv_attention_forward_bf16(rt, &d, qh, kh, vh, b.out, b.lse);
                th[r] = bench_now() - t0;
            }
            double mh = bench_median(th, runs);
            snprintf(bf, sizeof bf,
                     "\"bf16_median_ms\":%.3f,\"bf16_gflops\":%.1f,\"bf16_speedup\":%.2f", mh * 1e3,
                     flops_of(s) / mh * 1e-9, med / mh);
        }
        free(th);
        qkv_free(qh), qkv_free(kh), qkv_free(vh);
    }
    char ref[32];
    if (ref_ratio > 0)
        snprintf(ref, sizeof ref, "%.2f", ref_ratio);
    else
        snprintf(ref, sizeof ref, "null");
    printf("{\"op\":\"%s\",\"tag\":\"%s\",\"B\":%lld,\"Tq\":%lld,\"Tk\":%lld,\"Hq\":%lld,"
           "\"Hk\":%lld,\"D\":%lld,\"causal\":%d,\"padded\":%d,\"threads\":%d,\"arch\":\"%s\","
           "\"runs\":%d,\"median_ms\":%.3f,\"gflops\":%.1f,\"peak_gflops\":%.1f,"
           "\"pct_peak\":%.1f,\"ref_ratio\":%s,\"openblas_ratio\":%s,%s}\n",
           s->op, s->tag, (long long)s->B, (long long)s->Tq, (long long)s->Tk, (long long)s->Hq,
           (long long)s->Hk, (long long)s->D, s->causal, s->padded, qkv_runtime_n_threads(rt),
           qkv_arch_name(qkv_arch_active()), runs, med * 1e3, gflops, peak, 100.0 * gflops / peak,
           ref, blas, bf);
    fflush(stdout);
    free(t);
    free(b.lens);
    qkv_free(b.q), qkv_free(b.k), qkv_free(b.v), qkv_free(b.out), qkv_free(b.lse);
    qkv_free(b.dout), qkv_free(b.dq), qkv_free(b.dk), qkv_free(b.dv);
}

/* --rss: one forward at B 1, H 8, D 64, T 32768 (no lse), then the process's peak RSS against
 * the bytes of q, k, v and out (the memory target: <= 1.3x). Run it in its own process. */
static int rss_check(qkv_runtime *rt) {
    const int64_t T = 32768, H = 8, D = 64;
    size_t n = (size_t)(T * H * D);
    float *q = qkv_malloc(n * 4), *k = qkv_malloc(n * 4), *v = qkv_malloc(n * 4);
    float *out = qkv_malloc(n * 4);
    if (!q || !k || !v || !out) return 1;
    bench_fill(q, n, 1);
    bench_fill(k, n, 2);
    bench_fill(v, n, 3);
    memset(out, 0, n * 4);
    qkv_attention_desc d;
    memset(&d, 0, sizeof d);
    d.batch = 1, d.q_len = d.kv_len = T, d.n_heads = d.n_kv_heads = H, d.head_dim = D;
    d.window_left = d.window_right = -1;
    double t0 = bench_now();
    qkv_status st = qkv_attention_forward(rt, &d, q, k, v, out, NULL);
    double dt = bench_now() - t0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double tensors = 4.0 * (double)n * 4.0, rss = (double)ru.ru_maxrss * 1024.0;
    printf("{\"op\":\"rss\",\"B\":1,\"T\":%lld,\"H\":%lld,\"D\":%lld,\"status\":%d,"
           "\"seconds\":%.2f,\"tensor_bytes\":%.0f,\"peak_rss_bytes\":%.0f,\"ratio\":%.3f}\n",
           (long long)T, (long long)H, (long long)D, (int)st, dt, tensors, rss, rss / tensors);
    qkv_free(q), qkv_free(k), qkv_free(v), qkv_free(out);
    return st != QKV_OK;
}

/* --kernels: see the header comment. One thread (the micro-kernels are single-threaded). */
static int kernels_bench(double peak, int runs) {
    qkv_attn_kernels kr;
    qkv__kernels()->attn_f32_config(&kr);
    enum { ROWS = 128, BC = 64, REPS = 2000 };
    for (int64_t D = 64; D <= 128; D += 64) {
        float *qt = qkv_malloc((size_t)(D * ROWS) * sizeof(float));
        float *kv = qkv_malloc((size_t)(2 * BC * D) * sizeof(float));
        float *st = qkv_malloc((size_t)(BC * ROWS) * sizeof(float));
        float *o = qkv_malloc((size_t)(ROWS * D) * sizeof(float));
        float *mla = qkv_malloc((size_t)(3 * ROWS) * sizeof(float)); /* m, l, alpha */
        if (!qt || !kv || !st || !o || !mla) return 1;
        bench_fill(qt, (size_t)(D * ROWS), 1);
        bench_fill(kv, (size_t)(2 * BC * D), 2);
        for (int64_t i = 0; i < ROWS * D; i++) o[i] = 0.0f;
        double t_dot[16], t_sm[16], t_acc[16];
        if (runs > 16) runs = 16;
        for (int r = 0; r < runs; r++) {
            for (int64_t i = 0; i < ROWS; i++) mla[i] = -INFINITY, mla[ROWS + i] = 0.0f;
            double t0 = bench_now();
            for (int k = 0; k < REPS; k++) kr.dot(BC, ROWS, D, kv, D, qt, ROWS, st, ROWS);
            double t1 = bench_now();
            for (int k = 0; k < REPS; k++) /* re-exponentiates P: same work every step */
                kr.softmax(ROWS, BC, st, ROWS, mla, mla + ROWS, mla + 2 * ROWS, NULL);
            double t2 = bench_now();
            for (int k = 0; k < REPS; k++)
                kr.acc(ROWS, D, BC, st, 1, ROWS, kv + BC * D, D, o, D, mla + 2 * ROWS);
            double t3 = bench_now();
            t_dot[r] = t1 - t0, t_sm[r] = t2 - t1, t_acc[r] = t3 - t2;
        }
        double fl = 2.0 * ROWS * BC * (double)D * REPS; /* each of dot and acc */
        double dot = bench_median(t_dot, runs), sm = bench_median(t_sm, runs);
        double acc = bench_median(t_acc, runs);
        printf(
            "{\"op\":\"attn_kernels\",\"arch\":\"%s\",\"rows\":%d,\"keys\":%d,\"D\":%lld,"
            "\"dot_gflops\":%.1f,\"dot_pct_peak\":%.1f,\"acc_gflops\":%.1f,\"acc_pct_peak\":%.1f,"
            "\"tile_pct_peak\":%.1f,\"softmax_share\":%.3f}\n",
            qkv_arch_name(qkv_arch_active()), ROWS, BC, (long long)D, fl / dot * 1e-9,
            100.0 * fl / dot * 1e-9 / peak, fl / acc * 1e-9, 100.0 * fl / acc * 1e-9 / peak,
            100.0 * 2.0 * fl / (dot + sm + acc) * 1e-9 / peak, sm / (dot + sm + acc));
        qkv_free(qt), qkv_free(kv), qkv_free(st), qkv_free(o), qkv_free(mla);
    }
    return 0;
}

int main(int argc, char **argv) {
    int quick = bench_has_flag(argc, argv, "--quick");
    g_bf16 = bench_has_flag(argc, argv, "--bf16");
    int threads = (int)bench_int_opt(argc, argv, "--threads", 0);
    int runs = (int)bench_int_opt(argc, argv, "--runs", quick ? 3 : 5);
    double ref_budget = (double)bench_int_opt(argc, argv, "--ref-budget", 3);
    const char *only = NULL;
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--only") == 0) only = argv[i + 1];
    qkv_runtime *rt = NULL;
    if (qkv_runtime_create(threads, &rt) != QKV_OK) return 1;
#if QKV_BENCH_OPENBLAS
    blas_thread_shutdown_(); /* see its declaration */
#endif
    if (bench_has_flag(argc, argv, "--rss")) {
        int rc = rss_check(rt);
        qkv_runtime_free(rt);
        return rc;
    }
    if (bench_has_flag(argc, argv, "--kernels")) {
        qkv_runtime *one = NULL;
        if (qkv_runtime_create(1, &one) != QKV_OK) return 1;
        double peak1 = qkv_fma_peak_gflops(one, 0.3);
        printf("{\"op\":\"fma_peak\",\"threads\":1,\"arch\":\"%s\",\"gflops\":%.1f}\n",
               qkv_arch_name(qkv_arch_active()), peak1);
        int rc = kernels_bench(peak1, runs);
        qkv_runtime_free(one);
        qkv_runtime_free(rt);
        return rc;
    }
    double peak = qkv_fma_peak_gflops(rt, 0.3); /* same ISA and thread count */
    printf("{\"op\":\"fma_peak\",\"threads\":%d,\"arch\":\"%s\",\"gflops\":%.1f}\n",
           qkv_runtime_n_threads(rt), qkv_arch_name(qkv_arch_active()), peak);

    shape list[160];
    int n = 0;
    static const int64_t bt[5][2] = {{8, 512}, {4, 1024}, {2, 2048}, {1, 4096}, {1, 8192}};
    static const int64_t hd[2][2] = {{32, 64}, {16, 128}};
    const char *ops[2] = {"attention_fwd", "attention_bwd"};
    for (int o = 0; o < 2; o++) {
        if (only && strncmp(ops[o] + 10, only, 3) != 0) continue;
        for (int i = 0; i < (quick ? 2 : 5); i++)
            for (int h = 0; h < 2; h++)
                for (int c = 0; c < 2; c++)
                    list[n++] = (shape){ops[o],   "set",    bt[i][0], bt[i][1], bt[i][1],
                                        hd[h][0], hd[h][0], hd[h][1], c,        0};
        static const int64_t bert_t[3] = {128, 384, 512}, bert_b[3] = {1, 8, 32};
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 3; j++) {
                if (quick && !(i == 2 && j == 1)) continue;
                list[n++] =
                    (shape){ops[o], "bert", bert_b[j], bert_t[i], bert_t[i], 12, 12, 64, 0, 1};
            }
        list[n++] = (shape){ops[o], "gpt2", 1, 1024, 1024, 12, 12, 64, 1, 0};
    }
    if (!only || strcmp(only, "decode") == 0) {
        for (int64_t tk = 1024; tk <= 32768; tk *= 2) {
            if (quick && tk != 4096) continue;
            list[n++] = (shape){"decode", "gqa", 1, 1, tk, 32, 8, 128, 1, 0};
        }
    }
    for (int i = 0; i < n; i++) bench_shape(rt, &list[i], runs, peak, ref_budget);
    qkv_runtime_free(rt);
    return 0;
}
