/* bench_lora.c — one fine-tuning step of a BERT sequence classifier with LoRA against full
 * fine-tuning: step time (median) and the process's peak RSS. Run each mode in its own process
 * (peak RSS is per process):
 *   bench_lora --mode lora|full [--model DIR] [--batch 32] [--seq 128] [--threads 2] [--steps 3]
 * LoRA: r 8, alpha 16, targets query, value (PEFT's BERT default), classifier trained (SEQ_CLS).
 * One JSON line on stdout. Random token ids below the vocabulary, labels 0/1. */
#include "bench_util.h"
#include "qkv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static const char *str_opt(int argc, char **argv, const char *name, const char *def) {
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0) return argv[i + 1];
    return def;
}

int main(int argc, char **argv) {
    const char *mode = str_opt(argc, argv, "--mode", "lora");
    const char *dir = str_opt(argc, argv, "--model", "models/all-MiniLM-L6-v2");
    const long B = bench_int_opt(argc, argv, "--batch", 32),
               T = bench_int_opt(argc, argv, "--seq", 128);
    const long threads = bench_int_opt(argc, argv, "--threads", 2),
               steps = bench_int_opt(argc, argv, "--steps", 3);
    const int lora = strcmp(mode, "lora") == 0;
    qkv_classifier_spec spec;
    qkv_classifier_spec_init(&spec);
    spec.num_labels = 2;
    qkv_trainer *t = NULL;
    qkv_runtime *rt = NULL;
    if (qkv_trainer_load_hf_classifier(dir, &spec, &t) != QKV_OK ||
        qkv_runtime_create((int)threads, &rt) != QKV_OK) {
        fprintf(stderr, "bench_lora: %s\n", qkv_last_error());
        return 1;
    }
    qkv_trainer_set_dropout(t, 0.0f, 0.0f, 0.0f);
    if (lora) {
        qkv_lora_config c;
        qkv_lora_config_init(&c);
        c.r = 8, c.alpha = 16;
        if (qkv_trainer_add_lora(t, &c) != QKV_OK) {
            fprintf(stderr, "bench_lora: %s\n", qkv_last_error());
            return 1;
        }
    }
    qkv_gpt2_shape sh;
    qkv_trainer_get_shape(t, &sh);
    int32_t *ids = malloc((size_t)(B * T) * sizeof *ids),
            *labels = malloc((size_t)B * sizeof *labels);
    for (long i = 0; i < B * T; i++) ids[i] = (int32_t)(1000 + (i * 7919) % (sh.vocab_size - 1000));
    for (long i = 0; i < B; i++) labels[i] = (int32_t)(i & 1);
    qkv_train_batch b = {sizeof b, ids, NULL, NULL, NULL, B, T, labels, NULL, 0};
    qkv_adamw hp;
    qkv_adamw_defaults(&hp);
    double times[64];
    int64_t trainable = 0;
    for (size_t i = 0; i < qkv_trainer_param_count(t); i++) {
        qkv_param_info p = {.struct_size = sizeof p};
        qkv_trainer_param(t, i, &p);
        trainable += p.trainable ? p.numel : 0;
    }
    for (long s = 0; s <= steps && s < 63; s++) { /* step 0 warms up */
        float loss, norm;
        double t0 = bench_now();
        qkv_trainer_zero_grad(t);
        if (qkv_trainer_forward_backward_batch(rt, t, &b, 1.0f, &loss) != QKV_OK ||
            qkv_trainer_step(rt, t, &hp, 1e-4f, 1.0f, &norm) != QKV_OK) {
            fprintf(stderr, "bench_lora: %s\n", qkv_last_error());
            return 1;
        }
        times[s] = bench_now() - t0;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("{\"bench\": \"lora_step\", \"mode\": \"%s\", \"model\": \"%s\", \"batch\": %ld, "
           "\"seq\": %ld, \"threads\": %ld, \"trainable\": %lld, \"params\": %lld, "
           "\"step_s\": %.4f, \"peak_rss_mib\": %.1f}\n",
           mode, dir, B, T, threads, (long long)trainable, (long long)qkv_trainer_numel(t),
           bench_median(times + 1, (int)steps), (double)ru.ru_maxrss / 1024.0);
    qkv_trainer_free(t);
    qkv_runtime_free(rt);
    free(ids);
    free(labels);
    return 0;
}
