/* cmd_bench.c — `qkv bench`: timings through the public API, one JSON object per line.
 *
 *   qkv bench attention   fused attention forward and backward over a shape set
 *   qkv bench train       GPT-2 training steps (forward, backward, clip + AdamW)
 *   qkv bench generate    prefill and decode tokens/s of a decoder directory
 *   qkv bench embed       sentences/s of an encoder directory
 *   qkv bench finetune    fine-tuning steps of a BERT classifier (dropout as in its config)
 *   qkv bench tokenize    MB/s of text encoded by a tokenizer, one line per call
 *
 * Every line carries the thread count and the active instruction set; attention and training
 * also the FMA peak measured on the spot and the share of it reached. Medians of --reps runs
 * after one warm-up. The programs in bench/ go further (peers in the same process, internal
 * kernels); docs/PERFORMANCE.md has the numbers. Benchmarks assert nothing about time. */
#include "cli.h"
#include "textio.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void cmd_bench_help(void) {
    printf(
        "Usage: qkv bench attention [--shape B,T,H,D]... [--causal] [--dropout P] [--reps R] "
        "[--threads N]\n"
        "       qkv bench train [--shape BxT]... [--layers L] [--reps R] [--threads N]\n"
        "       qkv bench generate --model DIR [--dtype f32|bf16|f16|int8] [--prompt T] [--new M] "
        "[--reps R] [--threads N]\n"
        "       qkv bench embed [--model DIR] [--dtype f32|bf16|f16|int8] [--batch N] [--tokens T] "
        "[--reps R] [--threads N]\n"
        "       qkv bench finetune [--model DIR] [--batch N] [--tokens T] [--reps R] "
        "[--threads N]\n"
        "       qkv bench tokenize [--model PATH] [--file FILE]... [--reps R]\n\n"
        "Times qkv through its public API and prints one JSON object per line: median ms of\n"
        "--reps runs (default 5) after a warm-up, throughput, and for attention and training\n"
        "GFLOP/s and the percent of the machine's FMA peak measured at the start.\n\n"
        "  attention  forward and backward of softmax(QK^T/sqrt(D))V, q/k/v [B, T, H, D];\n"
        "             default shapes (4,1024,16,64) (4,1024,8,128) (1,4096,16,64);\n"
        "             --dropout P drops probabilities with rate P (training)\n"
        "  train      one GPT-2 124M training step (random weights and tokens): forward,\n"
        "             backward, clipping, AdamW; default shapes 4x64 and 8x256\n"
        "             (--layers L trains an L-layer model of the same width, for a quick look)\n"
        "  generate   a prompt of T tokens (default 128), then M greedy tokens (default 32)\n"
        "             with any GPT-2 / Llama directory (random weights: bench/bench_generate\n"
        "             --keep DIR writes GPT-2-124M and Llama-125M shaped ones); --dtype as for\n"
        "             generate\n"
        "  embed      batches of N sequences (default 32) of T tokens (default 64) through\n"
        "             an encoder (default: $QKV_MODEL or models/all-MiniLM-L6-v2), its\n"
        "             linear layers in --dtype (f32 default, bf16, f16, int8); also the process's\n"
        "             resident memory after loading and at the end (rss_*_mib, Linux)\n"
        "  finetune   one fine-tuning step (forward, backward, clip + AdamW) of a BERT\n"
        "             sequence classifier (2 labels, fresh head) on N random sequences of T\n"
        "             tokens (defaults 32 x 64; model as for embed), with the dropout rates\n"
        "             of its config.json (hidden and attention probabilities)\n"
        "  tokenize   every line of the --file(s) (default: the fortune files in\n"
        "             /usr/share/games/fortunes) encoded by PATH's tokenizer (model as for\n"
        "             embed), one qkv_tokenizer_encode per line, ids, type ids, masks and\n"
        "             offsets, no truncation or padding, on one thread: MB/s and tokens/s\n"
        "             (bench/bench_tokenize and tools/bench_hf_tokenize.py compare with\n"
        "             Hugging Face tokenizers)\n");
}

typedef struct {
    int reps, threads;
    qkv_runtime *rt;
    double peak;
} bench_env;

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void fill(float *x, size_t n, unsigned long long seed) {
    for (size_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((seed >> 40) & 0xffffff) / (float)(1 << 24) * 2.0f - 1.0f;
    }
}

/* ---------------------------------------------------------------- attention */

static int bench_attention(bench_env *e, const long (*shapes)[4], int n_shapes, int causal,
                           float dropout) {
    for (int s = 0; s < n_shapes; s++) {
        long B = shapes[s][0], T = shapes[s][1], H = shapes[s][2], D = shapes[s][3];
        size_t n = (size_t)(B * T * H * D);
        float *q = malloc(n * sizeof *q), *k = malloc(n * sizeof *k), *v = malloc(n * sizeof *v),
              *o = malloc(n * sizeof *o), *d_o = malloc(n * sizeof *d_o),
              *dq = malloc(n * sizeof *dq), *dk = malloc(n * sizeof *dk),
              *dv = malloc(n * sizeof *dv), *lse = malloc((size_t)(B * H * T) * sizeof *lse);
        if (!q || !k || !v || !o || !d_o || !dq || !dk || !dv || !lse) {
            fprintf(stderr, "qkv bench: out of memory for attention shape %d\n", s);
            return EXIT_FAIL;
        }
        fill(q, n, 1), fill(k, n, 2), fill(v, n, 3), fill(d_o, n, 4);
        qkv_attention_desc d;
        memset(&d, 0, sizeof d);
        d.batch = B, d.q_len = d.kv_len = T, d.n_heads = d.n_kv_heads = H, d.head_dim = D;
        d.causal = causal, d.window_left = d.window_right = -1;
        d.dropout_p = dropout, d.dropout_seed = 7;
        double tf[64], tb[64];
        int reps = e->reps;
        for (int r = -1; r < reps; r++) {
            double t0 = now_seconds();
            qkv_status st = qkv_attention_forward(e->rt, &d, q, k, v, o, lse);
            double t1 = now_seconds();
            if (st == QKV_OK)
                st = qkv_attention_backward(e->rt, &d, q, k, v, o, lse, d_o, dq, dk, dv);
            double t2 = now_seconds();
            if (st != QKV_OK) return cli_report("attention", st);
            if (r >= 0) tf[r] = t1 - t0, tb[r] = t2 - t1;
        }
        /* 4·B·H·T²·D multiply-adds forward (QKᵀ and PV), 2.5× that backward; half if causal */
        double fl = 4.0 * (double)B * (double)H * (double)T * (double)T * (double)D;
        if (causal) fl *= 0.5;
        double mf = median(tf, reps), mb = median(tb, reps);
        json_printf(
            stdout,
            "{\"bench\":\"attention\",\"B\":%ld,\"T\":%ld,\"H\":%ld,\"D\":%ld,\"causal\":%d,"
            "\"dropout\":%g,\"threads\":%d,\"isa\":\"%s\",\"fwd_ms\":%.3f,\"fwd_gflops\":%.1f,"
            "\"fwd_peak_pct\":%.1f,\"bwd_ms\":%.3f,\"bwd_gflops\":%.1f,\"bwd_peak_pct\":%.1f}\n",
            B, T, H, D, causal, (double)dropout, e->threads, qkv_arch_name(qkv_arch_active()),
            1e3 * mf, fl / mf / 1e9, 100 * fl / mf / 1e9 / e->peak, 1e3 * mb, 2.5 * fl / mb / 1e9,
            100 * 2.5 * fl / mb / 1e9 / e->peak);
        fflush(stdout);
        free(q), free(k), free(v), free(o), free(d_o), free(dq), free(dk), free(dv), free(lse);
    }
    return 0;
}

/* ---------------------------------------------------------------- train */

static int bench_train(bench_env *e, const long (*shapes)[2], int n_shapes, long layers) {
    qkv_gpt2_shape sh = {50257, 1024, 768, layers, 12};
    qkv_trainer *t = NULL;
    qkv_status st = qkv_trainer_new(&sh, 1, &t);
    if (st != QKV_OK) return cli_report("creating the model", st);
    int64_t n_params = qkv_trainer_numel(t);
    qkv_adamw hp;
    qkv_adamw_defaults(&hp);
    int rc = 0;
    for (int s = 0; s < n_shapes && !rc; s++) {
        long B = shapes[s][0], T = shapes[s][1];
        int32_t *ids = malloc((size_t)(B * T) * sizeof *ids),
                *tg = malloc((size_t)(B * T) * sizeof *tg);
        if (!ids || !tg) {
            free(ids), free(tg);
            rc = cli_report("batch", QKV_ERR_NOMEM);
            break;
        }
        unsigned long long x = 42;
        for (long i = 0; i < B * T; i++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            ids[i] = (int32_t)((x >> 33) % 50257);
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            tg[i] = (int32_t)((x >> 33) % 50257);
        }
        double times[64];
        float loss = 0, norm = 0;
        for (int r = -1; r < e->reps && !rc; r++) {
            double t0 = now_seconds();
            qkv_trainer_zero_grad(t);
            st = qkv_trainer_forward_backward(e->rt, t, ids, tg, B, T, 1.0f, &loss);
            if (st == QKV_OK) st = qkv_trainer_step(e->rt, t, &hp, 1e-4f, 1.0f, &norm);
            if (st != QKV_OK) rc = cli_report("training step", st);
            if (r >= 0) times[r] = now_seconds() - t0;
        }
        if (!rc) {
            double m = median(times, e->reps);
            double fl = qkv_trainer_step_flops(t, B, T);
            json_printf(
                stdout,
                "{\"bench\":\"train\",\"model\":\"gpt2-124m-shaped\",\"layers\":%ld,"
                "\"params\":%lld,\"B\":%ld,\"T\":%ld,\"threads\":%d,\"isa\":\"%s\","
                "\"step_ms\":%.1f,\"tokens_per_s\":%.1f,\"gflops\":%.1f,\"peak_pct\":%.1f}\n",
                layers, (long long)n_params, B, T, e->threads, qkv_arch_name(qkv_arch_active()),
                1e3 * m, (double)(B * T) / m, fl / m / 1e9, 100 * fl / m / 1e9 / e->peak);
            fflush(stdout);
        }
        free(ids), free(tg);
    }
    qkv_trainer_free(t);
    return rc;
}

/* ---------------------------------------------------------------- generate, embed */

static int bench_generate(bench_env *e, const char *dir, qkv_dtype dtype, long T, long M) {
    qkv_lm *lm = NULL;
    const qkv_model_options mo = {.struct_size = sizeof mo, .dtype = dtype};
    qkv_status st = qkv_lm_load_opts(dir, &mo, &lm);
    if (st != QKV_OK) return cli_report(dir, st);
    int32_t *ids = malloc((size_t)T * sizeof *ids);
    if (!ids) {
        qkv_lm_free(lm);
        return cli_report("prompt", QKV_ERR_NOMEM);
    }
    for (long t = 0; t < T; t++) ids[t] = (int32_t)((t * 7919 + 13) % qkv_lm_vocab_size(lm));
    qkv_sampling o;
    memset(&o, 0, sizeof o);
    o.max_new_tokens = M + 1; /* M decode steps after the prompt pass */
    double pre[64], dec[64];
    int64_t len = T;
    int rc = 0;
    for (int r = -1; r < e->reps; r++) {
        qkv_generate_stats s = {.struct_size = sizeof s};
        st = qkv_lm_generate_tokens(e->rt, lm, ids, &len, 1, &o, NULL, NULL, NULL, NULL, &s);
        if (st != QKV_OK) {
            rc = cli_report("generate", st);
            break;
        }
        if (r >= 0) {
            pre[r] = (double)s.prefill_tokens / s.prefill_seconds;
            dec[r] = (double)s.decode_tokens / s.decode_seconds;
        }
    }
    if (!rc) { /* the directory as a JSON string (escaped, valid UTF-8) */
        char *qdir = json_quote(dir);
        json_printf(stdout,
                    "{\"bench\":\"generate\",\"model\":%s,\"dtype\":\"%s\",\"threads\":%d,"
                    "\"isa\":\"%s\",\"prompt\":%ld,\"new\":%ld,\"prefill_tok_s\":%.1f,"
                    "\"decode_tok_s\":%.2f}\n",
                    qdir ? qdir : "null", cli_dtype_name(qkv_lm_dtype(lm)), e->threads,
                    qkv_arch_name(qkv_arch_active()), T, M, median(pre, e->reps),
                    median(dec, e->reps));
        free(qdir);
    }
    free(ids);
    qkv_lm_free(lm);
    return rc;
}

/* VmRSS of this process in MiB (Linux /proc/self/status), or -1. */
static double rss_mib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) kib = strtod(line + 6, NULL);
    if (f) fclose(f);
    return kib < 0 ? -1 : kib / 1024.0;
}

static int bench_embed(bench_env *e, const char *dir, qkv_dtype dtype, long N, long T) {
    qkv_model *m = NULL;
    int rc = cli_load_model_as("bench", dir, dtype, &m);
    const double rss = rss_mib(); /* the loaded model, before any batch's buffers */
    if (rc) return rc;
    if (T > qkv_model_max_tokens(m)) T = qkv_model_max_tokens(m);
    int32_t *ids = malloc((size_t)(N * T) * sizeof *ids);
    int64_t *lens = malloc((size_t)N * sizeof *lens);
    float *out = malloc((size_t)(N * qkv_model_dim(m)) * sizeof *out);
    if (!ids || !lens || !out) rc = cli_report("batch", QKV_ERR_NOMEM);
    double times[64];
    /* ids in [1000, 21000) as always; a smaller vocabulary (a test model): ids within it */
    const qkv_tokenizer *tok = qkv_model_tokenizer(m);
    const long V = tok ? (long)qkv_tokenizer_vocab_size(tok) : 30522;
    for (long i = 0; !rc && i < N * T; i++)
        ids[i] = (int32_t)(V >= 21000 ? 1000 + (i * 7919) % 20000 : (i * 7919) % V);
    for (long i = 0; !rc && i < N; i++) lens[i] = T;
    for (int r = -1; !rc && r < e->reps; r++) {
        double t0 = now_seconds();
        qkv_status st = qkv_embed_tokens(e->rt, m, ids, lens, (size_t)N, out);
        if (st != QKV_OK) rc = cli_report("embed", st);
        if (r >= 0) times[r] = now_seconds() - t0;
    }
    if (!rc) {
        double md = median(times, e->reps);
        { /* the directory as a JSON string (escaped, valid UTF-8) */
            char *qdir = json_quote(dir);
            json_printf(stdout,
                        "{\"bench\":\"embed\",\"model\":%s,\"threads\":%d,\"isa\":\"%s\","
                        "\"dtype\":\"%s\",\"batch\":%ld,\"tokens\":%ld,\"ms\":%.2f,"
                        "\"sentences_per_s\":%.1f,\"tokens_per_s\":%.1f,\"rss_load_mib\":%.1f,"
                        "\"rss_end_mib\":%.1f}\n",
                        qdir ? qdir : "null", e->threads, qkv_arch_name(qkv_arch_active()),
                        cli_dtype_name(qkv_model_dtype(m)), N, T, 1e3 * md, (double)N / md,
                        (double)(N * T) / md, rss, rss_mib());
            free(qdir);
        }
    }
    free(ids), free(lens), free(out);
    qkv_model_free(m);
    return rc;
}

/* One fine-tuning step per rep: a fresh 2-label head on dir's encoder, random ids and labels,
 * forward + backward with the config's dropout (a new seed each step), clip + AdamW. */
static int bench_finetune(bench_env *e, const char *dir, long N, long T) {
    qkv_classifier_spec spec;
    qkv_classifier_spec_init(&spec);
    spec.num_labels = 2;
    qkv_trainer *t = NULL;
    qkv_status st = qkv_trainer_load_hf_classifier(dir, &spec, &t);
    if (st != QKV_OK) return cli_report(dir, st);
    qkv_gpt2_shape sh;
    qkv_trainer_get_shape(t, &sh);
    if (T > sh.n_positions) T = sh.n_positions;
    int32_t *ids = malloc((size_t)(N * T) * sizeof *ids), *labels = malloc((size_t)N * 4);
    int rc = !ids || !labels ? cli_report("batch", QKV_ERR_NOMEM) : 0;
    unsigned long long x = 42;
    for (long i = 0; !rc && i < N * T; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = (int32_t)((x >> 33) % (unsigned long long)sh.vocab_size);
    }
    for (long i = 0; !rc && i < N; i++) labels[i] = (int32_t)(i % 2);
    qkv_adamw hp;
    qkv_adamw_defaults(&hp);
    double times[64];
    float loss = 0, norm = 0;
    for (int r = -1; !rc && r < e->reps; r++) {
        qkv_train_batch b = {.struct_size = sizeof b, .ids = ids, .B = N, .T = T};
        b.labels = labels, b.dropout_seed = (uint64_t)(r + 2);
        double t0 = now_seconds();
        qkv_trainer_zero_grad(t);
        st = qkv_trainer_forward_backward_batch(e->rt, t, &b, 1.0f, &loss);
        if (st == QKV_OK) st = qkv_trainer_step(e->rt, t, &hp, 2e-5f, 1.0f, &norm);
        if (st != QKV_OK) rc = cli_report("fine-tuning step", st);
        if (r >= 0) times[r] = now_seconds() - t0;
    }
    if (!rc) {
        double m = median(times, e->reps);
        { /* the directory as a JSON string (escaped, valid UTF-8) */
            char *qdir = json_quote(dir);
            json_printf(stdout,
                        "{\"bench\":\"finetune\",\"model\":%s,\"threads\":%d,\"isa\":\"%s\","
                        "\"batch\":%ld,\"tokens\":%ld,\"step_ms\":%.1f,\"sequences_per_s\":%.2f}\n",
                        qdir ? qdir : "null", e->threads, qkv_arch_name(qkv_arch_active()), N, T,
                        1e3 * m, (double)N / m);
            free(qdir);
        }
    }
    free(ids), free(labels);
    qkv_trainer_free(t);
    return rc;
}

/* ---------------------------------------------------------------- tokenize */

/* The lines of path appended to t; the exit code. */
static int append_lines(text_lines *t, const char *path) {
    text_lines one;
    int rc = text_lines_read(path, &one);
    for (size_t k = 0; !rc && k < one.n; k++)
        if (text_lines_push(t, one.line[k], one.len[k]) != 0) rc = cli_report(path, QKV_ERR_NOMEM);
    if (one.line) text_lines_free(&one);
    return rc;
}

/* The fortune files, sorted by name (the corpus the tokenizer tests use), into t. */
static int fortunes(text_lines *t) {
    static const char dir[] = "/usr/share/games/fortunes";
    struct dirent **names = NULL;
    int n = scandir(dir, &names, NULL, alphasort), rc = n < 0 ? EXIT_USAGE : 0;
    if (n < 0)
        fprintf(stderr, "qkv bench tokenize: no --file given and no %s to read instead\n", dir);
    memset(t, 0, sizeof *t);
    for (int i = 0; i < n; i++) {
        const char *e = names[i]->d_name;
        size_t l = strlen(e);
        char path[1024];
        struct stat sb;
        snprintf(path, sizeof path, "%s/%s", dir, e);
        if (!rc && e[0] != '.' && !(l > 4 && strcmp(e + l - 4, ".dat") == 0) &&
            lstat(path, &sb) == 0 && S_ISREG(sb.st_mode)) {
            rc = append_lines(t, path);
        }
        free(names[i]);
    }
    free(names);
    if (rc) text_lines_free(t);
    return rc;
}

static int bench_tokenize(bench_env *e, const char *path, const char *const *files, int n_files) {
    text_lines t;
    memset(&t, 0, sizeof t);
    int rc = n_files ? 0 : fortunes(&t);
    for (int f = 0; !rc && f < n_files; f++) {
        rc = append_lines(&t, files[f]);
    }
    if (rc) {
        text_lines_free(&t);
        return rc;
    }
    qkv_tokenizer *tok = NULL;
    qkv_status st = qkv_tokenizer_load(path, &tok);
    if (st != QKV_OK) {
        text_lines_free(&t);
        return cli_report(path, st);
    }
    qkv_encode_options o;
    qkv_tokenizer_default_options(tok, &o);
    o.max_length = 0, o.pad_to = 0, o.pad_to_multiple_of = 0;
    size_t bytes = 0, tokens = 0;
    for (size_t i = 0; i < t.n; i++) bytes += t.len[i] + 1;
    double times[64];
    for (int r = -1; !rc && r < e->reps; r++) {
        double t0 = now_seconds();
        tokens = 0;
        for (size_t i = 0; !rc && i < t.n; i++) {
            qkv_encoding *enc = NULL;
            st = qkv_tokenizer_encode(tok, t.line[i], t.len[i], NULL, 0, &o, &enc);
            if (st != QKV_OK) {
                fprintf(stderr, "qkv bench tokenize: line %zu of the input:\n", i + 1);
                rc = cli_report("tokenize", st);
            } else {
                tokens += enc->n;
            }
            qkv_encoding_free(enc);
        }
        if (r >= 0) times[r] = now_seconds() - t0;
    }
    if (!rc) {
        double m = median(times, e->reps);
        char *qp = json_quote(path);
        json_printf(stdout,
                    "{\"bench\":\"tokenize\",\"model\":%s,\"threads\":1,\"isa\":\"%s\","
                    "\"bytes\":%zu,\"lines\":%zu,\"tokens\":%zu,\"median_ms\":%.2f,"
                    "\"mb_per_s\":%.2f,\"tokens_per_s\":%.0f}\n",
                    qp ? qp : "null", qkv_arch_name(qkv_arch_active()), bytes, t.n, tokens, 1e3 * m,
                    (double)bytes / 1e6 / m, (double)tokens / m);
        free(qp);
    }
    qkv_tokenizer_free(tok);
    text_lines_free(&t);
    return rc;
}

/* ---------------------------------------------------------------- command */

int cmd_bench(int argc, char **argv) {
    if (argc < 2 || cli_is_help(argv[1])) {
        cmd_bench_help();
        return argc < 2 ? EXIT_USAGE : 0;
    }
    const char *what = argv[1];
    long attn[16][4], tr[16][2];
    int n_attn = 0, n_tr = 0, causal = 0;
    float dropout = 0.0f;
    long reps = 5, threads = 0, layers = 12, prompt = 128, new_tokens = 32, batch = 32, tokens = 64;
    const char *model = NULL;
    qkv_dtype dtype = QKV_DTYPE_F32;
    const char *files[64];
    int n_files = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        if (cli_is_help(a)) {
            cmd_bench_help();
            return 0;
        } else if (strcmp(a, "--causal") == 0) {
            causal = 1;
            continue;
        } else if (!v) {
            return cli_usage_error("bench", "missing value after %s", a);
        } else if (strcmp(a, "--shape") == 0 && strcmp(what, "attention") == 0) {
            if (n_attn == 16) return cli_usage_error("bench", "at most 16 shapes");
            long *s = attn[n_attn];
            char tail;
            if (sscanf(v, "%ld,%ld,%ld,%ld%c", &s[0], &s[1], &s[2], &s[3], &tail) != 4 ||
                s[0] < 1 || s[1] < 1 || s[2] < 1 || s[3] < 1 ||
                s[0] * s[1] * s[2] * s[3] > (1L << 30))
                return cli_usage_error("bench", "--shape wants B,T,H,D (positive), not '%s'", v);
            n_attn++;
        } else if (strcmp(a, "--shape") == 0 && strcmp(what, "train") == 0) {
            if (n_tr == 16) return cli_usage_error("bench", "at most 16 shapes");
            char tail;
            if (sscanf(v, "%ldx%ld%c", &tr[n_tr][0], &tr[n_tr][1], &tail) != 2 || tr[n_tr][0] < 1 ||
                tr[n_tr][1] < 1 || tr[n_tr][1] > 1024 || tr[n_tr][0] > 4096)
                return cli_usage_error("bench", "--shape wants BxT (T <= 1024), not '%s'", v);
            n_tr++;
        } else if (strcmp(a, "--dropout") == 0 && strcmp(what, "attention") == 0) {
            char *end;
            double p = strtod(v, &end);
            if (!*v || *end || !(p >= 0.0 && p < 1.0))
                return cli_usage_error("bench", "--dropout wants a rate in [0, 1), not '%s'", v);
            dropout = (float)p;
        } else if (strcmp(a, "--dtype") == 0 &&
                   (strcmp(what, "embed") == 0 || strcmp(what, "generate") == 0)) {
            rc = cli_parse_dtype("bench", v, &dtype) ? EXIT_USAGE : 0;
        } else if (strcmp(a, "--reps") == 0) {
            rc = cli_parse_count("bench", a, v, 1, 64, &reps);
        } else if (strcmp(a, "--threads") == 0) {
            rc = cli_parse_count("bench", a, v, 0, 1024, &threads);
        } else if (strcmp(a, "--layers") == 0) {
            rc = cli_parse_count("bench", a, v, 1, 48, &layers);
        } else if (strcmp(a, "--prompt") == 0 || strcmp(a, "--tokens") == 0) {
            rc = cli_parse_count("bench", a, v, 1, 1 << 16, a[2] == 'p' ? &prompt : &tokens);
        } else if (strcmp(a, "--new") == 0) {
            rc = cli_parse_count("bench", a, v, 1, 1 << 16, &new_tokens);
        } else if (strcmp(a, "--batch") == 0) {
            rc = cli_parse_count("bench", a, v, 1, 1 << 16, &batch);
        } else if (strcmp(a, "--model") == 0) {
            model = v;
        } else if (strcmp(a, "--file") == 0 && strcmp(what, "tokenize") == 0) {
            if (n_files == 64) return cli_usage_error("bench", "at most 64 --file");
            files[n_files++] = v;
        } else {
            return cli_usage_error("bench", "unknown option %s for `qkv bench %s`", a, what);
        }
        if (rc) return rc;
        i++;
    }
    bench_env e = {(int)reps, 0, NULL, 0};
    if (qkv_runtime_create((int)threads, &e.rt) != QKV_OK)
        return cli_report("creating threads", QKV_ERR_NOMEM);
    e.threads = qkv_runtime_n_threads(e.rt);
    int rc;
    if (strcmp(what, "attention") == 0 || strcmp(what, "train") == 0 ||
        strcmp(what, "finetune") == 0) {
        e.peak = qkv_fma_peak_gflops(e.rt, 0.3);
        fprintf(stderr, "qkv bench: %s, %d thread(s), measured FMA peak %.1f GFLOP/s\n",
                qkv_arch_name(qkv_arch_active()), e.threads, e.peak);
    }
    if (strcmp(what, "attention") == 0) {
        static const long def[][4] = {{4, 1024, 16, 64}, {4, 1024, 8, 128}, {1, 4096, 16, 64}};
        rc = n_attn ? bench_attention(&e, (const long(*)[4])attn, n_attn, causal, dropout)
                    : bench_attention(&e, def, 3, causal, dropout);
    } else if (strcmp(what, "train") == 0) {
        static const long def[][2] = {{4, 64}, {8, 256}};
        rc = n_tr ? bench_train(&e, (const long(*)[2])tr, n_tr, layers)
                  : bench_train(&e, def, 2, layers);
    } else if (strcmp(what, "generate") == 0) {
        rc = model ? bench_generate(&e, model, dtype, prompt, new_tokens)
                   : cli_usage_error("bench", "generate needs --model DIR");
    } else if (strcmp(what, "embed") == 0) {
        rc = bench_embed(&e, model ? model : cli_default_model(), dtype, batch, tokens);
    } else if (strcmp(what, "finetune") == 0) {
        rc = bench_finetune(&e, model ? model : cli_default_model(), batch, tokens);
    } else if (strcmp(what, "tokenize") == 0) {
        rc = bench_tokenize(&e, model ? model : cli_default_model(), files, n_files);
    } else {
        rc = cli_usage_error("bench",
                             "unknown benchmark '%s' (attention, train, generate, embed, "
                             "finetune, tokenize)",
                             what);
    }
    qkv_runtime_free(e.rt);
    return rc;
}
