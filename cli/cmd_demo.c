/* cmd_demo.c — `qkv demo`: a short, visible tour of scaled dot-product attention through the
 * public API: the attention pattern of a tiny causal example, then one timed forward and
 * backward at GPT-2 size. */
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void cmd_demo_help(void) {
    printf("Usage: qkv demo [--seq N] [--threads N]\n\n"
           "A short attention demo: prints the causal attention probabilities of a 6-token\n"
           "example (each row sums to 1; tokens never look ahead), then times one forward and\n"
           "one backward pass of multi-head attention at GPT-2 size (12 heads x 64 dims,\n"
           "--seq tokens, default 1024) and reports milliseconds and GFLOP/s.\n\n"
           "Options:\n  --seq N      sequence length of the timed run (1..16384, default 1024)\n"
           "  --threads N  threads (default: QKV_NUM_THREADS or all online CPUs)\n");
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static float frand(void) { /* xorshift64*, uniform in [-1, 1) */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (float)((rng_state * 0x2545f4914f6cdd1dull) >> 40) / (float)(1 << 23) - 1.0f;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int parse_int(const char *s, long lo, long hi, long *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi) return 0;
    *out = v;
    return 1;
}

static qkv_attention_desc make_desc(int64_t T, int64_t H, int64_t D, int causal) {
    qkv_attention_desc d;
    memset(&d, 0, sizeof d);
    d.batch = 1;
    d.q_len = d.kv_len = T;
    d.n_heads = d.n_kv_heads = H;
    d.head_dim = D;
    d.causal = causal;
    d.window_left = d.window_right = -1;
    return d;
}

static int pattern(qkv_runtime *rt) {
    static const char *tokens[] = {"the", "cat", "sat", "on", "the", "mat"};
    enum { T = 6, D = 8 };
    float q[T * D], k[T * D], p[T * T];
    /* Queries and keys share a direction per word so equal words attend to each other. */
    for (int t = 0; t < T; t++)
        for (int i = 0; i < D; i++) {
            float base =
                (float)((strlen(tokens[t]) * 7 + (size_t)tokens[t][0] * (size_t)(i + 1)) % 11) /
                    5.0f -
                1.0f;
            q[t * D + i] = base + 0.3f * frand();
            k[t * D + i] = base + 0.3f * frand();
        }
    qkv_attention_desc d = make_desc(T, 1, D, 1);
    qkv_status s = qkv_attention_probs(rt, &d, q, k, p);
    if (s != QKV_OK) return cli_report("attention probabilities", s);
    printf("Causal self-attention probabilities softmax(QK^T/sqrt(d) + mask), 1 head, d=%d:\n\n"
           "          ",
           D);
    for (int j = 0; j < T; j++) printf("%6s", tokens[j]);
    printf("\n");
    for (int i = 0; i < T; i++) {
        printf("  %6s  ", tokens[i]);
        double sum = 0;
        for (int j = 0; j < T; j++) {
            if (j > i)
                printf("%6s", ".");
            else
                printf("%6.2f", p[i * T + j]);
            sum += p[i * T + j];
        }
        printf("   sum %.3f\n", sum);
    }
    printf("\n('.' = masked: a token attends only to itself and earlier tokens.)\n\n");
    return EXIT_OK;
}

static int timed(qkv_runtime *rt, int64_t T) {
    const int64_t H = 12, D = 64;
    size_t n = (size_t)(T * H * D);
    float *q = malloc(n * sizeof *q), *k = malloc(n * sizeof *k), *v = malloc(n * sizeof *v);
    float *o = malloc(n * sizeof *o), *dout = malloc(n * sizeof *dout);
    float *dq = malloc(n * sizeof *dq), *dk = malloc(n * sizeof *dk), *dv = malloc(n * sizeof *dv);
    float *lse = malloc((size_t)(H * T) * sizeof *lse);
    int rc = EXIT_OK;
    if (!q || !k || !v || !o || !dout || !dq || !dk || !dv || !lse) {
        fprintf(stderr, "qkv demo: out of memory\n");
        rc = EXIT_FAIL;
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        q[i] = frand();
        k[i] = frand();
        v[i] = frand();
        dout[i] = frand();
    }
    qkv_attention_desc d = make_desc(T, H, D, 1);
    double t0 = now_s();
    qkv_status s = qkv_attention_forward(rt, &d, q, k, v, o, lse);
    double t1 = now_s();
    if (s == QKV_OK) s = qkv_attention_backward(rt, &d, q, k, v, o, lse, dout, dq, dk, dv);
    double t2 = now_s();
    if (s != QKV_OK) {
        rc = cli_report("attention", s);
        goto done;
    }
    /* FLOPs convention (docs/PERFORMANCE.md): forward 4*B*H*T*T*D, halved when causal;
     * backward 2.5x forward. */
    double fwd_flops = 4.0 * (double)H * (double)T * (double)T * (double)D / 2.0;
    printf("Causal multi-head attention, B=1 T=%lld H=%lld D=%lld, %d thread(s), arch %s:\n",
           (long long)T, (long long)H, (long long)D, qkv_runtime_n_threads(rt),
           qkv_arch_name(qkv_arch_active()));
    printf("  forward   %9.2f ms  %7.2f GFLOP/s\n", 1e3 * (t1 - t0), fwd_flops / (t1 - t0) / 1e9);
    printf("  backward  %9.2f ms  %7.2f GFLOP/s\n", 1e3 * (t2 - t1),
           2.5 * fwd_flops / (t2 - t1) / 1e9);
done:
    free(q), free(k), free(v), free(o), free(dout), free(dq), free(dk), free(dv), free(lse);
    return rc;
}

int cmd_demo(int argc, char **argv) {
    long seq = 1024, threads = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seq") == 0 && i + 1 < argc) {
            if (!parse_int(argv[++i], 1, 16384, &seq))
                return cli_usage_error("demo", "--seq wants a number in 1..16384, got '%s'",
                                       argv[i]);
        } else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            if (!parse_int(argv[++i], 1, 1024, &threads))
                return cli_usage_error("demo", "--threads wants a number in 1..1024, got '%s'",
                                       argv[i]);
        } else {
            return cli_usage_error("demo", "unknown option '%s'", argv[i]);
        }
    }
    qkv_runtime *rt = NULL;
    qkv_status s = qkv_runtime_create((int)threads, &rt);
    if (s != QKV_OK) return cli_report("runtime", s);
    int rc = pattern(rt);
    if (rc == EXIT_OK) rc = timed(rt, seq);
    qkv_runtime_free(rt);
    return rc;
}
