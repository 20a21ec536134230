/* bench_train.c — training step time of a GPT-2 124M configuration (random weights): one step
 * = forward + backward of a micro-batch, global-norm clipping and an AdamW update, as llm.c's
 * train_gpt2 and tools/bench_torch_train.py time it.
 *
 *   bench_train [--shapes 4x64,8x256] [--steps 5] [--threads N] [--recompute] [--layers L]
 *
 * Prints one JSON object per shape: median and min step time, tokens/s, the model FLOPs rate
 * (6·params·tokens + attention, as llm.c counts it), and the peak RSS of the process so far
 * (run one shape per process for a per-shape peak). */
#include "bench_util.h"
#include "qkv.h"

#include <stdio.h>
#include <sys/resource.h>

static long peak_rss_kib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

int main(int argc, char **argv) {
    const char *shapes = "4x64,8x256";
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--shapes") == 0) shapes = argv[i + 1];
    int steps = (int)bench_int_opt(argc, argv, "--steps", 5);
    int threads = (int)bench_int_opt(argc, argv, "--threads", 0);
    long layers = bench_int_opt(argc, argv, "--layers", 12);
    int recompute = bench_has_flag(argc, argv, "--recompute");
    qkv_runtime *rt = NULL;
    if (qkv_runtime_create(threads, &rt) != QKV_OK) return 1;
    qkv_gpt2_shape sh = {50257, 1024, 768, layers, 12};
    qkv_trainer *t = NULL;
    if (qkv_trainer_new(&sh, 1, &t) != QKV_OK) {
        fprintf(stderr, "%s\n", qkv_last_error());
        return 1;
    }
    int64_t n_params = qkv_trainer_numel(t);
    qkv_adamw hp;
    qkv_adamw_defaults(&hp);
    const char *s = shapes;
    while (*s) {
        long B, T;
        int used;
        if (sscanf(s, "%ldx%ld%n", &B, &T, &used) != 2) break;
        s += used;
        if (*s == ',') s++;
        size_t bytes = 0;
        if (qkv_trainer_reserve(t, B, T, recompute ? QKV_RECOMPUTE_LAYERS : QKV_RECOMPUTE_NONE,
                                &bytes) != QKV_OK) {
            fprintf(stderr, "%s\n", qkv_last_error());
            return 1;
        }
        int32_t *ids = malloc((size_t)(B * T) * sizeof *ids),
                *tg = malloc((size_t)(B * T) * sizeof *tg);
        unsigned long long x = 42;
        for (long i = 0; i < B * T; i++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            ids[i] = (int32_t)((x >> 33) % 50257);
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            tg[i] = (int32_t)((x >> 33) % 50257);
        }
        double times[64], t_fb[64], t_opt[64];
        int n = steps < 64 ? steps : 64;
        float loss = 0, norm = 0;
        for (int k = -2; k < n; k++) { /* two warm-up steps */
            double t0 = bench_now();
            qkv_trainer_zero_grad(t);
            int ok = qkv_trainer_forward_backward(rt, t, ids, tg, B, T, 1.0f, &loss) == QKV_OK;
            double t1 = bench_now();
            if (!ok || qkv_trainer_step(rt, t, &hp, 1e-4f, 1.0f, &norm) != QKV_OK) {
                fprintf(stderr, "%s\n", qkv_last_error());
                return 1;
            }
            if (k >= 0) {
                times[k] = bench_now() - t0;
                t_fb[k] = t1 - t0;
                t_opt[k] = times[k] - t_fb[k];
            }
        }
        double mn = times[0];
        for (int k = 1; k < n; k++) mn = times[k] < mn ? times[k] : mn;
        double med = bench_median(times, n), med_fb = bench_median(t_fb, n),
               med_opt = bench_median(t_opt, n);
        double flops = qkv_trainer_step_flops(t, B, T);
        printf("{\"bench\": \"train_gpt2_124m\", \"B\": %ld, \"T\": %ld, \"layers\": %ld, "
               "\"threads\": %d, \"recompute\": %d, \"median_ms\": %.1f, \"min_ms\": %.1f, "
               "\"fwd_bwd_ms\": %.1f, \"zero_clip_adamw_ms\": %.1f, "
               "\"tokens_per_s\": %.1f, \"gflops\": %.1f, \"loss\": %.4f, "
               "\"activation_mib\": %.1f, \"peak_rss_mib\": %.1f, \"params\": %lld}\n",
               B, T, layers, qkv_runtime_n_threads(rt), recompute, 1e3 * med, 1e3 * mn,
               1e3 * med_fb, 1e3 * med_opt, (double)(B * T) / med, flops / med / 1e9, loss,
               (double)bytes / 1048576.0, (double)peak_rss_kib() / 1024.0, (long long)n_params);
        fflush(stdout);
        free(ids);
        free(tg);
    }
    qkv_trainer_free(t);
    qkv_runtime_free(rt);
    return 0;
}
