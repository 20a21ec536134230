/* bench_tokenize.c — tokenizer throughput on one thread: MB/s of text encoded (ids, type ids,
 * masks and offsets, one qkv_tokenizer_encode per line, no truncation or padding) for the
 * MiniLM WordPiece and the corpus-trained byte-level BPE of the test fixtures, over the
 * fortunes corpus (or the files given). JSON lines on stdout, median of --reps runs (default 5).
 * tools/bench_hf_tokenize.py runs Hugging Face tokenizers on the same lines in the same run
 * and prints the ratio. The BPE cache is warm after the first run, as in any long job. */
#include "qkv.h"

#include "bench_util.h"

#include <dirent.h>
#include <stdio.h>
#include <sys/stat.h>

#ifndef QKV_SOURCE_DIR
#define QKV_SOURCE_DIR "."
#endif

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void append_file(const char *p, char **buf, size_t *n) {
    FILE *f = fopen(p, "rb");
    if (!f) return;
    fseek(f, 0, SEEK_END);
    long l = ftell(f);
    fseek(f, 0, SEEK_SET);
    *buf = realloc(*buf, *n + (size_t)l + 1);
    *n += fread(*buf + *n, 1, (size_t)l, f);
    fclose(f);
}

int main(int argc, char **argv) {
    int reps = 5;
    char *text = NULL;
    size_t n = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
            reps = atoi(argv[++i]);
        else
            append_file(argv[i], &text, &n);
    }
    if (!text) { /* the fortunes corpus, as the tests build it */
        const char *dir = "/usr/share/games/fortunes";
        DIR *d = opendir(dir);
        if (!d) {
            fprintf(stderr, "bench_tokenize: no input (install fortunes or give files)\n");
            return 2;
        }
        char *names[512];
        int k = 0;
        struct dirent *e;
        while ((e = readdir(d)) && k < 512) {
            size_t l = strlen(e->d_name);
            if (e->d_name[0] == '.' || (l > 4 && strcmp(e->d_name + l - 4, ".dat") == 0)) continue;
            char p[1024];
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            struct stat sb;
            if (lstat(p, &sb) == 0 && S_ISREG(sb.st_mode)) names[k++] = strdup(p);
        }
        closedir(d);
        qsort(names, (size_t)k, sizeof *names, cmp_str);
        for (int i = 0; i < k; i++) {
            append_file(names[i], &text, &n);
            free(names[i]);
        }
    }
    if (reps < 1) reps = 1;
    static const struct {
        const char *name, *path;
    } toks[] = {
        {"wordpiece-minilm", QKV_SOURCE_DIR "/tests/fixtures/tokenizer/minilm/tokenizer.json"},
        {"bpe-bytelevel", QKV_SOURCE_DIR "/tests/fixtures/tokenizer/bpe/tokenizer.json"}};
    for (size_t k = 0; k < 2; k++) {
        qkv_tokenizer *t = NULL;
        if (qkv_tokenizer_load(toks[k].path, &t) != QKV_OK) {
            fprintf(stderr, "bench_tokenize: %s\n", qkv_last_error());
            return 1;
        }
        qkv_encode_options o;
        qkv_tokenizer_default_options(t, &o);
        o.max_length = 0;
        o.pad_to = 0;
        o.pad_to_multiple_of = 0;
        double *ms = calloc((size_t)reps, sizeof *ms);
        size_t tokens = 0, lines = 0;
        for (int r = 0; r < reps; r++) {
            double t0 = bench_now();
            size_t i = 0;
            tokens = lines = 0;
            while (i < n) {
                const char *nl = memchr(text + i, '\n', n - i);
                size_t l = nl ? (size_t)(nl - (text + i)) : n - i;
                qkv_encoding *e = NULL;
                if (qkv_tokenizer_encode(t, text + i, l, NULL, 0, &o, &e) == QKV_OK) tokens += e->n;
                qkv_encoding_free(e);
                lines++;
                i += l + 1;
            }
            ms[r] = 1e3 * (bench_now() - t0);
        }
        double med = bench_median(ms, reps);
        printf("{\"bench\":\"tokenize\",\"impl\":\"qkv\",\"tokenizer\":\"%s\",\"threads\":1,"
               "\"bytes\":%zu,\"lines\":%zu,\"tokens\":%zu,\"median_ms\":%.2f,\"mb_per_s\":%.2f}\n",
               toks[k].name, n, lines, tokens, med, (double)n / 1e6 / (med / 1e3));
        fflush(stdout);
        free(ms);
        qkv_tokenizer_free(t);
    }
    free(text);
    return 0;
}
