/* bench_rowops.c — the row kernels (exp, activations, softmax, LayerNorm, RMSNorm, forward and
 * backward) of every instruction set this machine runs, against the ref kernels in the same
 * run. One thread (the kernels are single-row-range; callers split rows). One JSON line per op,
 * shape and ISA:
 *   {"op":..,"n":row length,"rows":..,"isa":..,"ms":median,"gbps":bytes/time,
 *    "ref_ms":..,"speedup_vs_ref":ref_ms/ms}
 * Bytes count the large arrays read and written once each (w, b, dw, db, statistics left out),
 * e.g. 8 B/element for a forward (x in, y out), 16 for a backward (x, dy, dx in; dx out).
 * Usage: bench_rowops [--reps R] [--quick] [--isa scalar|avx2|avx512] */
#include "bench_util.h"
#include "kernels/dispatch.h"
#include "qkv.h"

#include <stdio.h>

enum {
    OP_EXP,
    OP_GELU_ERF,
    OP_GELU_ERF_BWD,
    OP_GELU_TANH,
    OP_GELU_TANH_BWD,
    OP_SILU,
    OP_SOFTMAX,
    OP_SOFTMAX_BWD,
    OP_LOG_SOFTMAX,
    OP_LAYERNORM,
    OP_LAYERNORM_BWD,
    OP_RMSNORM,
    OP_RMSNORM_BWD,
    N_OPS
};
static const char *op_names[N_OPS] = {"exp",           "gelu_erf",  "gelu_erf_bwd",  "gelu_tanh",
                                      "gelu_tanh_bwd", "silu",      "softmax",       "softmax_bwd",
                                      "log_softmax",   "layernorm", "layernorm_bwd", "rmsnorm",
                                      "rmsnorm_bwd"};
static const int op_bytes[N_OPS] = {8, 8, 16, 8, 16, 8, 8, 16, 8, 8, 16, 8, 16};

typedef struct {
    float *x, *y, *dy, *dx, *w, *b, *dw, *db, *mean, *rstd;
} bufs;

static void run_op(const qkv_kernels *k, int op, const bufs *m, size_t rows, size_t n) {
    const size_t t = rows * n;
    switch (op) {
    case OP_EXP: k->exp_f32(m->x, m->y, t); break;
    case OP_GELU_ERF: k->act_f32(QKV_ACT_GELU_ERF, m->x, m->y, t); break;
    case OP_GELU_ERF_BWD: k->act_bwd_f32(QKV_ACT_GELU_ERF, m->x, m->dy, m->dx, t); break;
    case OP_GELU_TANH: k->act_f32(QKV_ACT_GELU_TANH, m->x, m->y, t); break;
    case OP_GELU_TANH_BWD: k->act_bwd_f32(QKV_ACT_GELU_TANH, m->x, m->dy, m->dx, t); break;
    case OP_SILU: k->act_f32(QKV_ACT_SILU, m->x, m->y, t); break;
    case OP_SOFTMAX: k->softmax_f32(m->x, m->y, rows, n); break;
    case OP_SOFTMAX_BWD: k->softmax_bwd_f32(m->y, m->dy, m->dx, rows, n); break;
    case OP_LOG_SOFTMAX: k->log_softmax_f32(m->x, m->y, rows, n); break;
    case OP_LAYERNORM:
        k->layernorm_f32(m->x, m->w, m->b, m->y, m->mean, m->rstd, rows, n, 1e-5f);
        break;
    case OP_LAYERNORM_BWD:
        k->layernorm_bwd_f32(m->dy, m->x, m->w, m->mean, m->rstd, m->dx, m->dw, m->db, rows, n);
        break;
    case OP_RMSNORM: k->rmsnorm_f32(m->x, m->w, m->y, m->rstd, rows, n, 1e-5f); break;
    case OP_RMSNORM_BWD:
        k->rmsnorm_bwd_f32(m->dy, m->x, m->w, m->rstd, m->dx, m->dw, rows, n);
        break;
    }
}

/* Median seconds of reps calls (at least 3, more while under 0.2 s, at most max_reps). */
static double time_op(const qkv_kernels *k, int op, const bufs *m, size_t rows, size_t n,
                      int max_reps) {
    double t[64];
    int r = 0;
    double total = 0.0;
    run_op(k, op, m, rows, n); /* warm up */
    while (r < max_reps && (r < 3 || total < 0.2)) {
        double t0 = bench_now();
        run_op(k, op, m, rows, n);
        t[r] = bench_now() - t0;
        total += t[r++];
    }
    return bench_median(t, r);
}

int main(int argc, char **argv) {
    const int quick = bench_has_flag(argc, argv, "--quick");
    int max_reps = (int)bench_int_opt(argc, argv, "--reps", 21);
    if (max_reps < 3) max_reps = 3;
    if (max_reps > 64) max_reps = 64;
    const char *only = NULL;
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--isa")) only = argv[i + 1];
    /* (rows, n): BERT/GPT-2 hidden rows, attention-score rows, GPT-2 vocabulary rows */
    const size_t shapes[][2] = {{2048, 768}, {256, 4096}, {16, 50257}};
    const int n_shapes = quick ? 1 : 3;
    size_t maxt = 0, maxn = 0;
    for (int s = 0; s < n_shapes; s++) {
        if (shapes[s][0] * shapes[s][1] > maxt) maxt = shapes[s][0] * shapes[s][1];
        if (shapes[s][1] > maxn) maxn = shapes[s][1];
    }
    bufs m;
    float **all[] = {&m.x, &m.y, &m.dy, &m.dx};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) {
        *all[i] = malloc(maxt * sizeof(float));
        if (!*all[i]) return 1;
        bench_fill(*all[i], maxt, 11 + i);
    }
    float **small[] = {&m.w, &m.b, &m.dw, &m.db, &m.mean, &m.rstd};
    for (size_t i = 0; i < sizeof small / sizeof *small; i++) {
        *small[i] = malloc(maxn * sizeof(float));
        if (!*small[i]) return 1;
        bench_fill(*small[i], maxn, 101 + i);
    }
    for (size_t i = 0; i < maxt; i++) m.x[i] *= 4.0f; /* logits / pre-activations in [-4, 4) */
    for (size_t i = 0; i < maxn; i++) m.rstd[i] = 1.0f, m.mean[i] = 0.0f;

    const qkv_arch isas[] = {QKV_ARCH_SCALAR, QKV_ARCH_AVX2, QKV_ARCH_AVX512};
    const qkv_kernels *ref = &qkv__kernels_ref;
    fprintf(stderr, "bench_rowops: 1 thread, best arch %s\n", qkv_arch_name(qkv_arch_best()));
    for (int s = 0; s < n_shapes; s++) {
        const size_t rows = shapes[s][0], n = shapes[s][1];
        for (int op = 0; op < N_OPS; op++) {
            /* the softmax backward reads probabilities: make y one (rstd/mean stay 1/0) */
            if (op == OP_SOFTMAX_BWD) ref->softmax_f32(m.x, m.y, rows, n);
            const double ref_s = time_op(ref, op, &m, rows, n, max_reps);
            for (size_t a = 0; a < sizeof isas / sizeof *isas; a++) {
                if (only && strcmp(only, qkv_arch_name(isas[a]))) continue;
                if (qkv_arch_set(isas[a]) != QKV_OK) continue;
                const qkv_kernels *k = qkv__kernels();
                const double sec =
                    isas[a] == QKV_ARCH_SCALAR ? ref_s : time_op(k, op, &m, rows, n, max_reps);
                const double bytes = (double)op_bytes[op] * (double)(rows * n);
                printf("{\"op\":\"%s\",\"n\":%zu,\"rows\":%zu,\"isa\":\"%s\",\"ms\":%.4f,"
                       "\"gbps\":%.2f,\"ref_ms\":%.4f,\"speedup_vs_ref\":%.2f}\n",
                       op_names[op], n, rows, qkv_arch_name(isas[a]), sec * 1e3, bytes / sec * 1e-9,
                       ref_s * 1e3, ref_s / sec);
                fflush(stdout);
            }
        }
    }
    qkv_arch_set(qkv_arch_best());
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(*all[i]);
    for (size_t i = 0; i < sizeof small / sizeof *small; i++) free(*small[i]);
    return 0;
}
