/* embed.c — a complete program using libqkv: sentence embeddings and cosine similarity.
 *
 *   cc embed.c $(pkg-config --cflags --libs qkv) -o embed
 *   ./embed models/all-MiniLM-L6-v2 "A man is eating food." "A man eats a meal." "It is raining."
 *
 * Prints the similarity of the first sentence to each of the others. Every qkv call returns a
 * qkv_status; on failure qkv_last_error() says what went wrong (file, tensor, field). */
#include <math.h>
#include <qkv.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s MODEL_DIR SENTENCE SENTENCE...\n", argv[0]);
        return 2;
    }
    qkv_model *model = NULL;
    qkv_status s = qkv_model_load(argv[1], &model);
    if (s != QKV_OK) {
        fprintf(stderr, "cannot load %s: %s: %s\n", argv[1], qkv_strerror(s), qkv_last_error());
        return 2;
    }
    size_t n = (size_t)(argc - 2), dim = (size_t)qkv_model_dim(model);
    float *emb = malloc(n * dim * sizeof *emb);
    /* NULL runtime: the default thread pool; NULL lengths: NUL-terminated texts */
    s = emb ? qkv_embed(NULL, model, (const char *const *)argv + 2, NULL, n, emb) : QKV_ERR_NOMEM;
    if (s != QKV_OK) {
        fprintf(stderr, "embedding failed: %s: %s\n", qkv_strerror(s), qkv_last_error());
        qkv_model_free(model);
        free(emb);
        return 1;
    }
    for (size_t i = 1; i < n; i++) {
        double dot = 0, na = 0, nb = 0;
        for (size_t c = 0; c < dim; c++) {
            dot += (double)emb[c] * emb[i * dim + c];
            na += (double)emb[c] * emb[c];
            nb += (double)emb[i * dim + c] * emb[i * dim + c];
        }
        printf("%.4f  %s\n", dot / sqrt(na * nb), argv[i + 2]);
    }
    free(emb);
    qkv_model_free(model);
    return 0;
}
