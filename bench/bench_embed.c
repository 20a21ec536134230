/* bench_embed.c — sentence-embedding throughput of all-MiniLM-L6-v2 through the public API
 * (qkv_embed_tokens): batches of 1 and 32 sequences of 16, 128 and 256 tokens, on 1 and 2
 * threads. One JSON line per case:
 *   {"op":"embed","batch":..,"seq":..,"threads":..,"ms":median per batch,
 *    "sentences_per_s":..,"tokens_per_s":..}
 * The peers (tools/bench_embed_peers.py: sentence-transformers' BertModel on PyTorch and ONNX
 * Runtime) print the same lines for the same cases; run both back to back.
 * Usage: bench_embed [--model DIR] [--reps R] [--threads-list 1,2] */
#include "bench_util.h"
#include "qkv.h"

#include <stdio.h>

int main(int argc, char **argv) {
    const char *dir = "models/all-MiniLM-L6-v2";
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--model") == 0) dir = argv[i + 1];
    int reps = (int)bench_int_opt(argc, argv, "--reps", 10);
    if (reps < 1 || reps > 64) reps = 10;
    qkv_model *m = NULL;
    qkv_status s = qkv_model_load(dir, &m);
    if (s != QKV_OK) {
        fprintf(stderr, "bench_embed: %s: %s\n", dir, qkv_last_error());
        return 2;
    }
    const int batches[] = {1, 32}, seqs[] = {16, 128, 256}, threads[] = {1, 2};
    int32_t *ids = malloc(sizeof(int32_t) * 32 * 256);
    int64_t lens[32];
    float *out = malloc(sizeof(float) * 32 * (size_t)qkv_model_dim(m));
    unsigned long long seed = 7;
    for (size_t t = 0; t < sizeof threads / sizeof *threads; t++) {
        qkv_runtime *rt = NULL;
        if (qkv_runtime_create(threads[t], &rt) != QKV_OK) return 1;
        for (size_t b = 0; b < 2; b++)
            for (size_t q = 0; q < 3; q++) {
                int B = batches[b], T = seqs[q];
                for (int i = 0; i < B; i++) {
                    lens[i] = T;
                    int32_t *row = ids + (size_t)i * (size_t)T;
                    row[0] = 101; /* [CLS] ... [SEP] */
                    for (int j = 1; j < T - 1; j++) {
                        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
                        row[j] = 1000 + (int32_t)((seed >> 33) % 28000);
                    }
                    row[T - 1] = 102;
                }
                double tm[64];
                qkv_embed_tokens(rt, m, ids, lens, (size_t)B, out); /* warm up */
                for (int r = 0; r < reps; r++) {
                    double t0 = bench_now();
                    qkv_embed_tokens(rt, m, ids, lens, (size_t)B, out);
                    tm[r] = bench_now() - t0;
                }
                double med = bench_median(tm, reps);
                printf("{\"op\":\"embed\",\"impl\":\"qkv\",\"batch\":%d,\"seq\":%d,\"threads\":%d,"
                       "\"ms\":%.3f,\"sentences_per_s\":%.1f,\"tokens_per_s\":%.0f}\n",
                       B, T, threads[t], med * 1e3, B / med, (double)B * T / med);
                fflush(stdout);
            }
        qkv_runtime_free(rt);
    }
    free(ids), free(out);
    qkv_model_free(m);
    return 0;
}
