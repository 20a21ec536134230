/* cmd_perplexity.c — `qkv perplexity`: how well a causal LM (GPT-2, Llama-style) predicts a
 * held-out text, in each weight dtype.
 *
 * The tokens come from a prepared dataset's split (--data DIR: the windows qkv train's
 * validation loss reads, qkv_dataset_sequential) or from a text (FILE or stdin, tokenized
 * whole with the model's tokenizer). Either way they are cut into consecutive, non-overlapping
 * windows of --context + 1 tokens; in each, every token after the first is predicted from the
 * ones before it in that window (the last, shorter window of a text too). Batches of windows go
 * through qkv_lm_logits; each target's negative log-likelihood is log Σ exp(logits) minus its
 * logit, summed in double. perplexity = exp(mean NLL). */
#include "cli.h"
#include "textio.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CMD "perplexity"

void cmd_perplexity_help(void) {
    printf("Usage: qkv perplexity --model DIR (--data DIR | FILE | -) [options]\n\n"
           "How well a GPT-2 / Llama-style model predicts a text it was not trained on: the\n"
           "perplexity exp(mean negative log-likelihood per token) and the mean NLL in nats.\n"
           "Compare dtypes with --dtype (the weights' rounding is the only difference).\n\n"
           "Tokens:\n"
           "  --data DIR       a dataset from `qkv data prepare` (its --split, default val):\n"
           "                   the same windows `qkv train` computes its validation loss on,\n"
           "                   so the number matches the run's val_loss (mean NLL) when\n"
           "                   --context is the run's --seq\n"
           "  FILE | -         a text (stdin for '-'), tokenized whole with the model's\n"
           "                   tokenizer (no special tokens added)\n"
           "Windows: consecutive, non-overlapping runs of --context + 1 tokens; in each, every\n"
           "token after the first is predicted from those before it in the window.\n\n"
           "Options:\n"
           "  --model DIR      the model directory (config.json, model.safetensors)\n"
           "  --dtype T        weights of the linear layers and the head: f32 (default), bf16,\n"
           "                   f16 or int8\n"
           "  --split S        with --data: val (default) or train\n"
           "  --context N      tokens a window predicts from (default: the model's context\n"
           "                   length, at most 1024)\n"
           "  --batch N        windows per forward (default 8; fewer when their logits would\n"
           "                   pass 256 MiB)\n"
           "  --max-windows N  score the first N windows only (default: all)\n"
           "  --threads N      threads (default: QKV_NUM_THREADS or all CPUs)\n"
           "  --json           one JSON object: perplexity, nll, tokens, windows, context,\n"
           "                   dtype, seconds\n"
           "  --progress       progress on stderr even when it is not a terminal\n\n"
           "Exit status: 0 done; 2 bad usage, an unreadable model, dataset or text, a text too\n"
           "short (fewer than 2 tokens) or ids outside the model's vocabulary; 1 otherwise.\n");
}

/* The token source: a dataset's windows, or one tokenized text. */
typedef struct {
    qkv_dataset *ds;
    int32_t *text; /* the text's ids */
    int64_t n_text;
    int64_t T, B;
    int64_t windows; /* in all (before --max-windows) */
} source;

/* Window w's ids [len] and targets [len] (len <= T) into ids / tg; returns len, or -1 (error
 * reported). Dataset windows come B at a time (batch w / B), cached in dbuf / dtg. */
static int64_t window(const source *s, int64_t w, int32_t *ids, int32_t *tg, int32_t *dbuf,
                      int32_t *dtg, int64_t *cached) {
    if (s->ds) {
        const int64_t b = w / s->B, r = w % s->B;
        if (*cached != b) {
            qkv_status st = qkv_dataset_sequential(s->ds, b, s->B, s->T, dbuf, dtg);
            if (st != QKV_OK) return cli_report("dataset", st), -1;
            *cached = b;
        }
        memcpy(ids, dbuf + r * s->T, (size_t)s->T * sizeof *ids);
        memcpy(tg, dtg + r * s->T, (size_t)s->T * sizeof *tg);
        return s->T;
    }
    const int64_t o = w * s->T, len = s->n_text - 1 - o < s->T ? s->n_text - 1 - o : s->T;
    memcpy(ids, s->text + o, (size_t)len * sizeof *ids);
    memcpy(tg, s->text + o + 1, (size_t)len * sizeof *tg);
    return len;
}

/* The text at path tokenized whole into s->text (lines joined with "\n"). */
static int read_text(const char *path, const char *model, source *s) {
    qkv_tokenizer *tok = NULL;
    qkv_status st = qkv_tokenizer_load(model, &tok);
    if (st != QKV_OK) {
        int rc = cli_report(model, st);
        fprintf(stderr, "qkv " CMD ": a text needs the model's tokenizer; --data takes a "
                        "prepared dataset instead\n");
        return rc;
    }
    text_lines t = {0};
    int rc = text_lines_read(path, &t);
    char *all = NULL;
    size_t n = 0;
    for (size_t i = 0; !rc && i < t.n; i++) n += t.len[i] + 1;
    if (!rc && !(all = malloc(n + 1))) rc = cli_report(path, QKV_ERR_NOMEM);
    size_t o = 0;
    for (size_t i = 0; !rc && i < t.n; i++) {
        memcpy(all + o, t.line[i], t.len[i]);
        o += t.len[i];
        if (i + 1 < t.n) all[o++] = '\n';
    }
    qkv_encode_options eo = {.struct_size = sizeof eo}; /* no special tokens, no truncation */
    qkv_encoding *e = NULL;
    if (!rc && (st = qkv_tokenizer_encode(tok, all, o, NULL, 0, &eo, &e)) != QKV_OK)
        rc = cli_report(path, st);
    if (!rc && !(s->text = malloc(((size_t)e->n + 1) * sizeof *s->text)))
        rc = cli_report(path, QKV_ERR_NOMEM);
    if (!rc) {
        memcpy(s->text, e->ids, (size_t)e->n * sizeof *s->text);
        s->n_text = (int64_t)e->n;
    }
    qkv_encoding_free(e);
    free(all);
    text_lines_free(&t);
    qkv_tokenizer_free(tok);
    return rc;
}

int cmd_perplexity(int argc, char **argv) {
    const char *model = NULL, *data = NULL, *input = NULL, *split = "val";
    long context = 0, batch = 8, threads = 0, max_windows = 0;
    int json = 0, force_progress = 0;
    qkv_dtype dtype = QKV_DTYPE_F32;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED_VALUE                                                                                 \
    if (!v) return cli_usage_error(CMD, "%s needs a value", a);                                    \
    i++
        if (cli_is_help(a)) {
            cmd_perplexity_help();
            return EXIT_OK;
        } else if (strcmp(a, "--model") == 0) {
            NEED_VALUE;
            model = v;
        } else if (strcmp(a, "--data") == 0) {
            NEED_VALUE;
            data = v;
        } else if (strcmp(a, "--split") == 0) {
            NEED_VALUE;
            if (strcmp(v, "val") != 0 && strcmp(v, "train") != 0)
                return cli_usage_error(CMD, "--split is val or train, not '%s'", v);
            split = v;
        } else if (strcmp(a, "--dtype") == 0) {
            NEED_VALUE;
            if (cli_parse_dtype(CMD, v, &dtype)) return EXIT_USAGE;
        } else if (strcmp(a, "--context") == 0) {
            NEED_VALUE;
            if (cli_parse_count(CMD, a, v, 1, 1 << 20, &context)) return EXIT_USAGE;
        } else if (strcmp(a, "--batch") == 0) {
            NEED_VALUE;
            if (cli_parse_count(CMD, a, v, 1, 4096, &batch)) return EXIT_USAGE;
        } else if (strcmp(a, "--max-windows") == 0) {
            NEED_VALUE;
            if (cli_parse_count(CMD, a, v, 1, 1L << 40, &max_windows)) return EXIT_USAGE;
        } else if (strcmp(a, "--threads") == 0) {
            NEED_VALUE;
            if (cli_parse_count(CMD, a, v, 1, 1024, &threads)) return EXIT_USAGE;
        } else if (strcmp(a, "--json") == 0) {
            json = 1;
        } else if (strcmp(a, "--progress") == 0) {
            force_progress = 1;
        } else if (a[0] == '-' && a[1] != '\0') {
            return cli_usage_error(CMD, "unknown option '%s'", a);
        } else if (!input) {
            input = a;
        } else {
            return cli_usage_error(CMD, "one text at most ('%s' is a second)", a);
        }
#undef NEED_VALUE
    }
    if (!model) return cli_usage_error(CMD, "--model DIR is required");
    if (!data == !input)
        return cli_usage_error(CMD, data ? "--data and a text FILE: give one of them"
                                         : "give the tokens: --data DIR, or a text FILE or '-'");

    qkv_lm *lm = NULL;
    qkv_runtime *rt = NULL;
    source s = {0};
    int32_t *ids = NULL, *tg = NULL, *dbuf = NULL, *dtg = NULL;
    int64_t *lens = NULL;
    float *logits = NULL;
    int rc = EXIT_OK;
    const qkv_model_options mo = {.struct_size = sizeof mo, .dtype = dtype};
    qkv_status st = qkv_lm_load_opts(model, &mo, &lm);
    if (st != QKV_OK) return cli_report(model, st);
    const int64_t V = qkv_lm_vocab_size(lm), P = qkv_lm_max_context(lm);
    const int64_t T = context ? context : P < 1024 ? P : 1024;
    if (T > P) {
        rc = cli_usage_error(CMD, "--context %ld is longer than the model's context (%lld)",
                             context, (long long)P);
        goto done;
    }
    /* the logits of a forward stay within 256 MiB */
    const long most = (long)((1L << 26) / ((size_t)T * (size_t)V));
    if (batch > most) batch = most > 1 ? most : 1;
    s.T = T, s.B = batch;
    if (data) {
        st = qkv_dataset_open(data, strcmp(split, "val") == 0 ? QKV_SPLIT_VAL : QKV_SPLIT_TRAIN,
                              &s.ds);
        if (st != QKV_OK) {
            rc = cli_report(data, st);
            goto done;
        }
        if (qkv_dataset_is_parallel(s.ds)) {
            rc = cli_usage_error(CMD, "%s is a parallel (translation) dataset", data);
            goto done;
        }
        if (qkv_dataset_vocab_size(s.ds) > V) {
            rc = cli_usage_error(CMD, "%s has ids up to %lld, the model's vocabulary %lld", data,
                                 (long long)qkv_dataset_vocab_size(s.ds) - 1, (long long)V);
            goto done;
        }
        s.windows = qkv_dataset_batches(s.ds, batch, T) * batch;
        if (s.windows == 0) {
            rc = cli_usage_error(CMD, "%s's %s split has fewer than %ld windows of %lld tokens",
                                 data, split, batch, (long long)T + 1);
            goto done;
        }
    } else {
        if ((rc = read_text(input, model, &s))) goto done;
        if (s.n_text < 2) {
            rc = cli_usage_error(CMD, "%s has %lld tokens: 2 at least are needed", input,
                                 (long long)s.n_text);
            goto done;
        }
        for (int64_t i = 0; i < s.n_text; i++)
            if (s.text[i] < 0 || s.text[i] >= V) {
                rc = cli_usage_error(CMD,
                                     "the tokenizer gave id %d, outside the model's "
                                     "vocabulary (%lld)",
                                     s.text[i], (long long)V);
                goto done;
            }
        s.windows = (s.n_text - 1 + T - 1) / T;
    }
    const int64_t W = max_windows && max_windows < s.windows ? max_windows : s.windows;
    const size_t rows = (size_t)batch * (size_t)T;
    ids = malloc(rows * sizeof *ids), tg = malloc(rows * sizeof *tg);
    dbuf = malloc(rows * sizeof *dbuf), dtg = malloc(rows * sizeof *dtg);
    lens = malloc((size_t)batch * sizeof *lens);
    logits = malloc(rows * (size_t)V * sizeof *logits);
    if (!ids || !tg || !dbuf || !dtg || !lens || !logits) {
        rc = cli_report("perplexity", QKV_ERR_NOMEM);
        goto done;
    }
    if ((st = qkv_runtime_create((int)threads, &rt)) != QKV_OK) {
        rc = cli_report("runtime", st);
        goto done;
    }
    progress pg;
    progress_begin(&pg, "windows", (size_t)W, force_progress);
    progress_lines(&pg, 5);
    const double t0 = now_seconds();
    double nll = 0;
    int64_t n_tok = 0, cached = -1;
    for (int64_t w = 0; w < W && !rc;) {
        size_t nb = 0, off = 0;
        for (; nb < (size_t)batch && w < W; nb++, w++) {
            int64_t len = window(&s, w, ids + off, tg + off, dbuf, dtg, &cached);
            if (len < 0) {
                rc = EXIT_USAGE;
                break;
            }
            lens[nb] = len;
            off += (size_t)len;
        }
        if (rc) break;
        if ((st = qkv_lm_logits(rt, lm, ids, lens, nb, logits)) != QKV_OK) {
            rc = cli_report("perplexity", st);
            break;
        }
        for (size_t r = 0; r < off; r++) {
            const float *row = logits + r * (size_t)V;
            float mx = row[0];
            for (int64_t j = 1; j < V; j++) mx = row[j] > mx ? row[j] : mx;
            double z = 0;
            for (int64_t j = 0; j < V; j++) z += exp((double)row[j] - mx);
            nll += log(z) + mx - row[tg[r]];
        }
        n_tok += (int64_t)off;
        progress_update(&pg, (size_t)w);
    }
    progress_end(&pg, (size_t)W);
    if (!rc) {
        const double secs = now_seconds() - t0, mean = nll / (double)n_tok;
        const char *dn = cli_dtype_name(qkv_lm_dtype(lm));
        if (json)
            printf("{\"perplexity\":%.9g,\"nll\":%.9g,\"tokens\":%lld,\"windows\":%lld,"
                   "\"context\":%lld,\"dtype\":\"%s\",\"seconds\":%.3f}\n",
                   exp(mean), mean, (long long)n_tok, (long long)W, (long long)T, dn, secs);
        else
            printf("perplexity %.4f (mean NLL %.6f nats/token) over %lld tokens in %lld windows "
                   "of %lld; dtype %s; %.2f s\n",
                   exp(mean), mean, (long long)n_tok, (long long)W, (long long)T, dn, secs);
    }
done:
    free(ids), free(tg), free(dbuf), free(dtg), free(lens), free(logits), free(s.text);
    qkv_dataset_close(s.ds);
    qkv_runtime_free(rt);
    qkv_lm_free(lm);
    return rc;
}
