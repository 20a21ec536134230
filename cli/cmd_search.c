/* cmd_search.c — `qkv search`: semantic search over the lines of a corpus file. The corpus is
 * embedded once and saved as an index (safetensors: the embeddings plus the corpus hash, line
 * count and model in the metadata); later runs reuse the index while the corpus and model are
 * unchanged. Each query is embedded and the corpus lines are ranked by cosine similarity. */
#include "atomic.h"
#include "cli.h"
#include "textio.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void cmd_search_help(void) {
    printf("Usage: qkv search [--model DIR] --corpus FILE [options] [QUERY...]\n\n"
           "Ranks the lines of FILE by cosine similarity of their sentence embeddings to each\n"
           "QUERY (queries are read from stdin, one per line, when none is given) and prints\n"
           "the top matches. The corpus is embedded once and saved as an index; later runs\n"
           "load the index while the corpus file and the model are unchanged.\n\n"
           "Options:\n"
           "  --model DIR    model directory (default: $QKV_MODEL, else models/all-MiniLM-L6-v2)\n"
           "  --dtype T      weights of the linear layers: f32 (default), bf16, f16 or\n"
           "                 int8 (the index records it: another dtype rebuilds it)\n"
           "  --corpus FILE  one document per line (required)\n"
           "  --index FILE   where the index is kept (default: FILE.qkv-index.safetensors)\n"
           "  --no-save      do not write the index\n"
           "  --top-k K      matches per query (default 5)\n"
           "  --json         one JSON object per query instead of text\n"
           "  --threads N    threads (default: QKV_NUM_THREADS or all CPUs)\n"
           "  --progress     show progress on stderr even when it is not a terminal\n");
}

#define INDEX_FORMAT "qkv-search-index"
/* what indexes before this version wrote: still ours to replace, but always rebuilt */
#define INDEX_FORMAT_V1 "qkv search index: one row per corpus line"

/* What the embeddings depend on besides the corpus: each file of the model directory that
 * shapes them (weights, config, tokenizer, pooling), as name:size:mtime, and the dtype the
 * weights run in when it is not f32 (";dtype:bf16"; f32 indexes keep their old identity). A
 * changed file or dtype changes the string, and the index is rebuilt. */
static void model_identity(const char *dir, qkv_dtype dtype, char *out, size_t cap) {
    static const char *const files[] = {"config.json",           "model.safetensors",
                                        "tokenizer.json",        "vocab.txt",
                                        "tokenizer_config.json", "modules.json",
                                        "1_Pooling/config.json", "sentence_bert_config.json"};
    size_t n = 0;
    out[0] = 0;
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char path[4200];
        struct stat sb;
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        if (stat(path, &sb) != 0) continue;
        int w =
            snprintf(out + n, cap - n, "%s%s:%lld:%lld.%09ld", n ? ";" : "", files[i],
                     (long long)sb.st_size, (long long)sb.st_mtim.tv_sec, (long)sb.st_mtim.tv_nsec);
        if (w < 0 || (size_t)w >= cap - n) break;
        n += (size_t)w;
    }
    if (dtype != QKV_DTYPE_F32 && n < cap)
        snprintf(out + n, cap - n, ";dtype:%s", cli_dtype_name(dtype));
}

/* The saved index at path: 1 loaded (it matches the corpus, the model's files and the width,
 * and every value is finite); 0 to be (re)built, with the reason in *why (NULL: there is none);
 * -1 when path holds something that is not a qkv search index (never replaced). */
static int load_index(const char *path, const text_lines *t, const char *model, qkv_dtype dtype,
                      size_t dim, float *emb, const char **why) {
    *why = NULL;
    struct stat sb;
    if (stat(path, &sb) != 0) return 0;
    if (sb.st_size == 0) return *why = "it is empty", 0;
    if (cli_check_output("search", "--index", path, OUT_SAFETENSORS)) return -1;
    qkv_safetensors *st = NULL;
    if (qkv_safetensors_open(path, &st) != QKV_OK) {
        fprintf(stderr, "qkv search: --index %s: %s; not replaced\n", path, qkv_last_error());
        return -1;
    }
    const char *fmt = qkv_safetensors_metadata_get(st, "format");
    if (!fmt || (strcmp(fmt, INDEX_FORMAT) != 0 && strcmp(fmt, INDEX_FORMAT_V1) != 0)) {
        fprintf(stderr,
                "qkv search: --index %s: exists and is a safetensors file but not a qkv search "
                "index; not replaced (remove it or choose another name)\n",
                path);
        qkv_safetensors_close(st);
        return -1;
    }
    char hash[32], lines[32], ident[2048];
    snprintf(hash, sizeof hash, "%016" PRIx64, t->hash);
    snprintf(lines, sizeof lines, "%zu", t->n);
    model_identity(model, dtype, ident, sizeof ident);
    const char *h = qkv_safetensors_metadata_get(st, "corpus_fnv1a64");
    const char *l = qkv_safetensors_metadata_get(st, "corpus_lines");
    const char *mf = qkv_safetensors_metadata_get(st, "model_files");
    const qkv_st_tensor *e = qkv_safetensors_find(st, "embeddings");
    int ok = 0;
    if (strcmp(fmt, INDEX_FORMAT) != 0)
        *why = "it was written by an older qkv";
    else if (!h || !l || strcmp(h, hash) != 0 || strcmp(l, lines) != 0)
        *why = "the corpus changed";
    else if (!mf || strcmp(mf, ident) != 0)
        *why = "the model changed (its weights, configuration, tokenizer or pooling, or --dtype)";
    else if (!e || e->dtype != QKV_DTYPE_F32 || e->ndim != 2 || e->shape[0] != (int64_t)t->n ||
             e->shape[1] != (int64_t)dim)
        *why = "its embeddings have the wrong shape";
    else {
        const float *x = e->data;
        size_t n = t->n * dim, i = 0;
        while (i < n && isfinite(x[i])) i++;
        if (i < n)
            *why = "it holds values that are not finite (corrupted)";
        else {
            memcpy(emb, x, n * sizeof(float));
            ok = 1;
        }
    }
    qkv_safetensors_close(st);
    return ok;
}

static qkv_status save_index(const char *path, const text_lines *t, const char *model,
                             qkv_dtype dtype, size_t dim, const float *emb) {
    char hash[32], lines[32], ident[2048];
    snprintf(hash, sizeof hash, "%016" PRIx64, t->hash);
    snprintf(lines, sizeof lines, "%zu", t->n);
    model_identity(model, dtype, ident, sizeof ident);
    int64_t shape[2] = {(int64_t)t->n, (int64_t)dim};
    qkv_st_write_tensor w = {"embeddings", QKV_DTYPE_F32, 2, shape, emb};
    const char *k[] = {"format", "corpus_fnv1a64", "corpus_lines", "model", "model_files"};
    const char *v[] = {INDEX_FORMAT, hash, lines, model, ident};
    return qkv_safetensors_write(path, &w, 1, k, v, 5);
}

static double cosine(const float *a, const float *b, size_t n) {
    double d = 0, na = 0, nb = 0;
    for (size_t i = 0; i < n; i++) {
        d += (double)a[i] * b[i];
        na += (double)a[i] * a[i];
        nb += (double)b[i] * b[i];
    }
    return na > 0 && nb > 0 ? d / sqrt(na * nb) : 0.0;
}

int cmd_search(int argc, char **argv) {
    const char *model = cli_default_model(), *corpus = NULL, *index = NULL;
    long top_k = 5, threads = 0;
    int json = 0, no_save = 0, force_progress = 0;
    qkv_dtype dtype = QKV_DTYPE_F32;
    const char **queries = calloc((size_t)argc, sizeof *queries);
    size_t nq = 0;
    if (!queries) return EXIT_FAIL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (strcmp(a, "--model") == 0 && more)
            model = argv[++i];
        else if (strcmp(a, "--corpus") == 0 && more)
            corpus = argv[++i];
        else if (strcmp(a, "--index") == 0 && more)
            index = argv[++i];
        else if (strcmp(a, "--dtype") == 0 && more) {
            if (cli_parse_dtype("search", argv[++i], &dtype)) goto usage;
        } else if (strcmp(a, "--no-save") == 0)
            no_save = 1;
        else if (strcmp(a, "--json") == 0)
            json = 1;
        else if (strcmp(a, "--progress") == 0)
            force_progress = 1;
        else if (strcmp(a, "--top-k") == 0 && more) {
            if (cli_parse_count("search", a, argv[++i], 1, 1000000, &top_k)) goto usage;
        } else if (strcmp(a, "--threads") == 0 && more) {
            if (cli_parse_count("search", a, argv[++i], 1, 1024, &threads)) goto usage;
        } else if (strcmp(a, "--") == 0) {
            while (++i < argc) queries[nq++] = argv[i];
        } else if (a[0] == '-' && a[1] == '-') {
            cli_usage_error("search", "unknown option '%s'", a);
            goto usage;
        } else
            queries[nq++] = a;
    }
    if (!corpus) {
        cli_usage_error("search", "--corpus FILE is required");
        goto usage;
    }

    int rc;
    text_lines t, q;
    memset(&q, 0, sizeof q);
    if ((rc = text_lines_read(corpus, &t))) {
        free(queries);
        return rc;
    }
    char default_index[4200];
    if (!index) {
        snprintf(default_index, sizeof default_index, "%s.qkv-index.safetensors", corpus);
        index = default_index;
    }
    qkv_model *m = NULL;
    qkv_runtime *rt = NULL;
    float *emb = NULL, *qe = NULL;
    if ((rc = cli_load_model_as("search", model, dtype, &m))) goto done;
    qkv_status s = qkv_runtime_create((int)threads, &rt);
    if (s != QKV_OK) {
        rc = cli_report("runtime", s);
        goto done;
    }
    size_t dim = (size_t)qkv_model_dim(m);
    emb = malloc((t.n ? t.n : 1) * dim * sizeof *emb);
    if (!emb) {
        rc = EXIT_FAIL;
        goto done;
    }
    const char *why = NULL;
    int got = load_index(index, &t, model, dtype, dim, emb, &why);
    if (got < 0) {
        rc = EXIT_USAGE;
        goto done;
    }
    if (got) {
        fprintf(stderr, "qkv search: using the index %s (%zu lines)\n", index, t.n);
    } else {
        if (why) fprintf(stderr, "qkv search: rebuilding the index %s: %s\n", index, why);
        if ((rc = cli_embed_lines(rt, m, &t, 256, force_progress, emb))) goto done;
        if (!no_save) {
            s = save_index(index, &t, model, dtype, dim, emb);
            if (s != QKV_OK)
                fprintf(stderr, "qkv search: warning: index not saved: %s: %s\n", qkv_strerror(s),
                        qkv_last_error());
            else
                fprintf(stderr, "qkv search: embedded %zu lines; index saved to %s\n", t.n, index);
        }
    }
    if (nq == 0) { /* queries from stdin */
        if ((rc = text_lines_read("-", &q))) goto done;
    } else {
        q.n = nq;
        q.line = (char **)queries;
        q.len = malloc(nq * sizeof *q.len);
        if (!q.len) {
            rc = EXIT_FAIL;
            goto done;
        }
        for (size_t i = 0; i < nq; i++) q.len[i] = strlen(queries[i]);
    }
    qe = malloc((q.n ? q.n : 1) * dim * sizeof *qe);
    size_t *order = malloc((t.n ? t.n : 1) * sizeof *order);
    double *score = malloc((t.n ? t.n : 1) * sizeof *score);
    if (!qe || !order || !score) {
        free(order), free(score);
        rc = EXIT_FAIL;
        goto done;
    }
    s = q.n ? qkv_embed(rt, m, (const char *const *)q.line, q.len, q.n, qe) : QKV_OK;
    if (s != QKV_OK) {
        free(order), free(score);
        rc = cli_report("queries", s);
        goto done;
    }
    size_t k = (size_t)top_k < t.n ? (size_t)top_k : t.n;
    for (size_t i = 0; i < q.n; i++) {
        for (size_t j = 0; j < t.n; j++) score[j] = cosine(qe + i * dim, emb + j * dim, dim);
        /* partial selection of the k best (ties: earlier line first) */
        for (size_t j = 0; j < t.n; j++) order[j] = j;
        for (size_t r = 0; r < k; r++) {
            size_t best = r;
            for (size_t j = r + 1; j < t.n; j++)
                if (score[order[j]] > score[order[best]]) best = j;
            size_t tmp = order[r];
            order[r] = order[best];
            order[best] = tmp;
        }
        if (json) {
            printf("{\"query\":");
            json_write_string(stdout, q.line[i], q.len[i]);
            printf(",\"results\":[");
            for (size_t r = 0; r < k; r++) {
                printf("%s{\"rank\":%zu,\"line\":%zu,\"score\":", r ? "," : "", r + 1,
                       order[r] + 1);
                json_write_number(stdout, "%.6f", score[order[r]]);
                fputs(",\"text\":", stdout);
                json_write_string(stdout, t.line[order[r]], t.len[order[r]]);
                printf("}");
            }
            printf("]}\n");
        } else {
            printf("%sQuery: %.*s\n", i ? "\n" : "", (int)q.len[i], q.line[i]);
            for (size_t r = 0; r < k; r++)
                printf("  %zu. %.4f  %.*s\n", r + 1, score[order[r]], (int)t.len[order[r]],
                       t.line[order[r]]);
        }
    }
    free(order), free(score);
done:
    if (nq) { /* q.line points at argv: don't free the strings */
        free(q.len);
    } else {
        text_lines_free(&q);
    }
    free(emb), free(qe);
    qkv_runtime_free(rt);
    qkv_model_free(m);
    text_lines_free(&t);
    free(queries);
    return rc;
usage:
    free(queries);
    return EXIT_USAGE;
}
