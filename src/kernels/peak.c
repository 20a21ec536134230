/* peak.c — measures this machine's FP32 FMA peak on the spot, for benchmarks that report
 * "percent of peak". Each thread runs a loop of independent FMA chains of the active ISA's
 * widest vectors (enough chains to cover FMA latency x throughput) for a fixed time; the
 * result is total FLOPs / wall time, the best of a few repeats. */
#include "core/runtime.h"
#include "kernels/dispatch.h"
#include "qkv.h"

#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
    float (*loop)(int64_t iters, double *flops);
    int64_t iters;
    double flops[1024];
    volatile float sink;
} peak_ctx;

static void peak_task(void *p, int64_t begin, int64_t end, int tid) {
    peak_ctx *c = p;
    (void)begin, (void)end;
    c->sink = c->loop(c->iters, &c->flops[tid]);
}

static void one_task(void *p, int64_t begin, int64_t end, int tid) {
    for (int64_t t = begin; t < end; t++) peak_task(p, t, t + 1, tid);
}

double qkv_fma_peak_gflops(qkv_runtime *rt, double seconds) {
    return qkv__peak_gflops_with(rt, seconds, qkv__kernels()->fma_peak_loop);
}

double qkv__peak_gflops_with(qkv_runtime *rt, double seconds,
                             float (*loop)(int64_t iters, double *flops)) {
    if (!(seconds > 0)) seconds = 0.2;
    if (!loop) return 0.0;
    int n = qkv_runtime_n_threads(rt);
    if (n > 1024) n = 1024;
    peak_ctx c = {.loop = loop};
    /* calibrate iterations on one thread to ~seconds/4 per repeat */
    c.iters = 1 << 16;
    for (;;) {
        double t0 = now_s();
        peak_task(&c, 0, 1, 0);
        double dt = now_s() - t0;
        if (dt > seconds / 16 || c.iters > ((int64_t)1 << 40)) {
            c.iters = (int64_t)((double)c.iters * (seconds / 4) / (dt > 0 ? dt : 1e-9)) + 1;
            break;
        }
        c.iters *= 4;
    }
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = now_s();
        qkv_parallel_for(rt, n, 1, one_task, &c);
        double dt = now_s() - t0, total = 0;
        for (int t = 0; t < n; t++) total += c.flops[t];
        if (dt > 0 && total / dt > best) best = total / dt;
    }
    return best / 1e9;
}
