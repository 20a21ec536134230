/* cmd_data.c — `qkv data prepare` (text files to token shards for training) and `qkv data info`
 * (what a prepared directory holds), over the public dataset API only.
 *
 * prepare streams the files through the library (memory stays bounded by the longest
 * document); a progress line (percent of bytes, MB/s) goes to stderr when stderr is a terminal
 * or with --progress, and a summary (documents and tokens per split, tokens/s) to stdout. The
 * CLI does not link jansson, so info prints meta.json as written and then opens both splits,
 * which validates every shard (header, size, ids below the vocabulary). */
#include "cli.h"
#include "textio.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void cmd_data_help(void) {
    printf("Usage: qkv data prepare --tokenizer PATH --out DIR [options] FILES...\n"
           "       qkv data prepare --source FILE --target FILE --tokenizer PATH --out DIR\n"
           "                        [--target-tokenizer PATH] [--val-fraction F |\n"
           "                        --val-source FILE --val-target FILE] [--on-error stop|skip]\n"
           "       qkv data info DIR\n\n"
           "prepare tokenizes text FILES into a training dataset: DIR/meta.json and binary\n"
           "shards of token ids, DIR/train_00000.bin ... and DIR/val_00000.bin ... (the\n"
           "format is in docs/TRAINING.md). Each document is encoded without special tokens\n"
           "and followed by the tokenizer's end-of-text token (<|endoftext|>, </s>, [SEP]).\n"
           "Each document goes to the validation split with probability --val-fraction,\n"
           "decided by --seed, so the split is the same on every run; when the draw leaves a\n"
           "split empty, the last document is moved there (with 2 documents or more). DIR is\n"
           "created if missing; an earlier dataset in it is replaced (meta.json is written\n"
           "last, so DIR is never left looking complete when it is not).\n\n"
           "Options:\n"
           "  --tokenizer PATH    tokenizer.json, vocab.json (+ merges.txt), vocab.txt, or a\n"
           "                      model directory holding one (required)\n"
           "  --out DIR           the dataset directory (required)\n"
           "  --split-on LINE     a line equal to LINE (a trailing \\r is ignored) ends a\n"
           "                      document, e.g. --split-on %% for fortune files; without it\n"
           "                      each file is one document. Blank documents are skipped.\n"
           "  --val-fraction F    share of documents for validation, 0..1 (default 0.05)\n"
           "  --shard-tokens N    at most N tokens per shard file (default 100000000)\n"
           "  --seed S            seed of the train/validation draw (default 0)\n"
           "  --progress          progress line on stderr even when it is not a terminal\n"
           "  -h, --help          show this help\n\n"
           "Parallel text (translation; `qkv train --arch marian` or --init MARIAN_DIR):\n"
           "  --source FILE --target FILE  line-aligned text: line i of each is a pair\n"
           "  --target-tokenizer PATH  the target side's (default: --tokenizer; a Marian\n"
           "                      directory's target side is its target.spm + vocab.json)\n"
           "  --val-source FILE --val-target FILE  validation pairs (instead of the draw)\n"
           "  --on-error stop|skip  a pair with an empty line, invalid UTF-8, a NUL byte or\n"
           "                      the end-of-sentence token in its text: stop (exit 2, the\n"
           "                      file and line named; default) or skip the pair. Unequal\n"
           "                      line counts always stop.\n"
           "  Each sentence is encoded without special tokens and ends with its tokenizer's\n"
           "  end-of-sentence id (</s>): what transformers' MarianTokenizer gives.\n\n"
           "info checks every shard of DIR and prints meta.json and the token counts.\n\n"
           "Exit codes: 0 ok, 1 failure, 2 bad usage or bad input (a missing file, a\n"
           "tokenizer without an end-of-text token, a malformed dataset).\n");
}

typedef struct prep_progress {
    int on, done;
    double start, last, total_bytes;
} prep_progress;

static void on_progress(void *ctx, double f) {
    prep_progress *p = ctx;
    if (!p->on || p->done) return;
    double t = now_seconds();
    if (f < 1 && t - p->last < 0.1) return;
    p->done = f >= 1;
    p->last = t;
    double el = t - p->start, mb = f * p->total_bytes / 1e6;
    int width = 24, fill = (int)(f * width);
    char bar[32];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
    bar[width] = '\0';
    fprintf(stderr, "\rdata prepare [%s] %5.1f%%  %.1f MB  %.1f MB/s ", bar, 100 * f, mb,
            el > 0 ? mb / el : 0.0);
    if (f >= 1) fputc('\n', stderr);
    fflush(stderr);
}

static int parse_fraction(const char *v, double *out) {
    char *end;
    errno = 0;
    double x = v ? strtod(v, &end) : NAN;
    if (!v || errno || end == v || *end || !(x >= 0 && x <= 1))
        return cli_usage_error("data prepare", "--val-fraction needs a number in [0, 1]");
    *out = x;
    return 0;
}

static int parse_u64(const char *flag, const char *v, int positive, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long x = v && *v != '-' ? strtoull(v, &end, 10) : 0;
    if (!v || *v == '-' || errno || end == v || *end || (positive && x == 0))
        return cli_usage_error("data prepare", "%s needs a whole number%s", flag,
                               positive ? " > 0" : " >= 0");
    *out = x;
    return 0;
}

/* --source / --target: the parallel dataset (qkv_data_prepare_parallel). */
static int prepare_parallel(const char *tok_path, const char *tgt_path, const char *source,
                            const char *target, qkv_data_options *o, const char *out,
                            prep_progress *pp) {
    qkv_tokenizer *tok = NULL, *ttok = NULL;
    qkv_status s = qkv_tokenizer_load(tok_path, &tok);
    if (s != QKV_OK) return cli_report(tok_path, s);
    s = qkv_tokenizer_load_target(tgt_path, &ttok);
    if (s != QKV_OK) {
        qkv_tokenizer_free(tok);
        return cli_report(tgt_path, s);
    }
    o->tokenizer_path = tok_path;
    o->target_tokenizer_path = tgt_path;
    const char *files[4] = {source, target, o->val_source, o->val_target};
    for (int i = 0; i < 4; i++) {
        struct stat sb;
        if (files[i] && stat(files[i], &sb) == 0 && S_ISREG(sb.st_mode))
            pp->total_bytes += (double)sb.st_size;
    }
    qkv_data_stats st = {.struct_size = sizeof st};
    pp->start = pp->last = now_seconds();
    s = qkv_data_prepare_parallel(tok, ttok, source, target, o, out, &st, on_progress, pp);
    qkv_tokenizer_free(tok);
    qkv_tokenizer_free(ttok);
    if (s != QKV_OK) {
        if (pp->on && !pp->done) fputc('\n', stderr);
        return cli_report("data prepare", s);
    }
    printf("wrote %s: train %lld pairs, %lld source tokens; val %lld pairs, %lld source tokens\n",
           out, (long long)st.documents[0], (long long)st.tokens[0], (long long)st.documents[1],
           (long long)st.tokens[1]);
    if (st.skipped) printf("skipped %lld pairs (--on-error skip)\n", (long long)st.skipped);
    return EXIT_OK;
}

static int cmd_prepare(int argc, char **argv) {
    const char *tok_path = NULL, *out = NULL, *source = NULL, *target = NULL, *tgt_tok = NULL;
    int val_fraction_set = 0;
    const char **files = calloc((size_t)argc, sizeof *files);
    if (!files) return EXIT_FAIL;
    size_t nf = 0;
    qkv_data_options o;
    qkv_data_default_options(&o);
    prep_progress pp = {isatty(STDERR_FILENO), 0, 0, 0, 0};
    int rc = EXIT_OK, only_files = 0;
    for (int i = 1; i < argc && rc == EXIT_OK; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (only_files || a[0] != '-' || strcmp(a, "-") == 0) {
            files[nf++] = a;
        } else if (strcmp(a, "--") == 0) {
            only_files = 1;
        } else if (strcmp(a, "--tokenizer") == 0 && v) {
            tok_path = argv[++i];
        } else if (strcmp(a, "--out") == 0 && v) {
            out = argv[++i];
        } else if (strcmp(a, "--split-on") == 0 && v) {
            o.split_on = argv[++i];
        } else if (strcmp(a, "--source") == 0 && v) {
            source = argv[++i];
        } else if (strcmp(a, "--target") == 0 && v) {
            target = argv[++i];
        } else if (strcmp(a, "--target-tokenizer") == 0 && v) {
            tgt_tok = argv[++i];
        } else if (strcmp(a, "--val-source") == 0 && v) {
            o.val_source = argv[++i];
        } else if (strcmp(a, "--val-target") == 0 && v) {
            o.val_target = argv[++i];
        } else if (strcmp(a, "--on-error") == 0 && v) {
            const char *p = argv[++i];
            if (strcmp(p, "stop") != 0 && strcmp(p, "skip") != 0)
                rc = cli_usage_error("data prepare", "--on-error must be stop or skip");
            o.skip_bad_pairs = strcmp(p, "skip") == 0;
        } else if (strcmp(a, "--val-fraction") == 0) {
            rc = parse_fraction(v, &o.val_fraction), i++;
            val_fraction_set = 1;
        } else if (strcmp(a, "--shard-tokens") == 0) {
            uint64_t n = 0;
            rc = parse_u64(a, v, 1, &n), i++;
            if (rc == EXIT_OK && n > INT64_MAX)
                rc = cli_usage_error("data prepare", "--shard-tokens is too large");
            o.shard_tokens = (int64_t)n;
        } else if (strcmp(a, "--seed") == 0) {
            rc = parse_u64(a, v, 0, &o.seed), i++;
        } else if (strcmp(a, "--progress") == 0) {
            pp.on = 1;
        } else {
            rc = cli_usage_error("data prepare", "unknown option or missing value: %s", a);
        }
    }
    const int parallel =
        source || target || tgt_tok || o.val_source || o.val_target || o.skip_bad_pairs;
    if (rc == EXIT_OK && parallel) {
        if (!source || !target || !tok_path || !out || nf || o.split_on)
            rc = cli_usage_error("data prepare",
                                 "parallel text needs --source FILE --target FILE --tokenizer "
                                 "PATH --out DIR, and no FILES or --split-on");
        else if (!o.val_source != !o.val_target)
            rc = cli_usage_error("data prepare", "--val-source and --val-target go together");
        else if (o.val_source && val_fraction_set)
            rc = cli_usage_error("data prepare",
                                 "--val-fraction and --val-source exclude each other");
        if (rc == EXIT_OK)
            rc = prepare_parallel(tok_path, tgt_tok ? tgt_tok : tok_path, source, target, &o, out,
                                  &pp);
        free(files);
        if (fflush(stdout) != 0 && rc == EXIT_OK) rc = EXIT_FAIL;
        return rc;
    }
    if (rc == EXIT_OK && (!tok_path || !out || nf == 0))
        rc = cli_usage_error("data prepare", "needs --tokenizer PATH, --out DIR and FILES");
    for (size_t i = 0; rc == EXIT_OK && i < nf; i++) {
        struct stat sb;
        if (stat(files[i], &sb) != 0) {
            fprintf(stderr, "qkv data prepare: %s: %s\n", files[i], strerror(errno));
            rc = EXIT_USAGE;
        } else if (S_ISREG(sb.st_mode)) {
            pp.total_bytes += (double)sb.st_size;
        }
    }
    qkv_tokenizer *tok = NULL;
    if (rc == EXIT_OK) {
        qkv_status s = qkv_tokenizer_load(tok_path, &tok);
        if (s != QKV_OK) rc = cli_report(tok_path, s);
    }
    if (rc == EXIT_OK) {
        o.tokenizer_path = tok_path;
        qkv_data_stats st = {.struct_size = sizeof st};
        pp.start = pp.last = now_seconds();
        qkv_status s = qkv_data_prepare(tok, files, nf, &o, out, &st, on_progress, &pp);
        double el = now_seconds() - pp.start;
        if (s != QKV_OK) {
            if (pp.on && !pp.done) fputc('\n', stderr);
            rc = cli_report("data prepare", s);
        } else {
            int64_t tokens = st.tokens[0] + st.tokens[1];
            printf("wrote %s: train %lld documents, %lld tokens; val %lld documents, %lld "
                   "tokens\n",
                   out, (long long)st.documents[0], (long long)st.tokens[0],
                   (long long)st.documents[1], (long long)st.tokens[1]);
            printf("%.2f MB of text in %.2f s: %.0f tokens/s\n", (double)st.bytes_read / 1e6, el,
                   el > 0 ? (double)tokens / el : 0.0);
        }
    }
    qkv_tokenizer_free(tok);
    free(files);
    if (fflush(stdout) != 0 && rc == EXIT_OK) rc = EXIT_FAIL;
    return rc;
}

static int cmd_info_dataset(int argc, char **argv) {
    if (argc != 2 || argv[1][0] == '-')
        return cli_usage_error("data info", "expected exactly one argument: the dataset DIR");
    const char *dir = argv[1];
    qkv_dataset *ds[2] = {NULL, NULL};
    static const char *names[2] = {"train", "val"};
    for (int k = 0; k < 2; k++) {
        qkv_status s = qkv_dataset_open(dir, (qkv_split)k, &ds[k]);
        if (s != QKV_OK) {
            qkv_dataset_close(ds[0]);
            return cli_report(dir, s);
        }
    }
    size_t plen = strlen(dir) + sizeof "/meta.json";
    char *path = malloc(plen);
    FILE *f = NULL;
    if (path) {
        snprintf(path, plen, "%s/meta.json", dir);
        f = fopen(path, "rb");
    }
    printf("dataset %s\n", dir);
    if (f) {
        char buf[4096];
        size_t n;
        char last = '\n';
        printf("meta.json:\n");
        while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
            fwrite(buf, 1, n, stdout);
            last = buf[n - 1];
        }
        if (last != '\n') putchar('\n');
        fclose(f);
    }
    free(path);
    printf("vocab_size: %lld\n", (long long)qkv_dataset_vocab_size(ds[0]));
    for (int k = 0; k < 2; k++)
        if (qkv_dataset_is_parallel(ds[k]))
            printf("%s: %lld pairs, %lld source / %lld target tokens (every shard checked)\n",
                   names[k], (long long)qkv_dataset_pairs(ds[k]),
                   (long long)qkv_dataset_tokens(ds[k]),
                   (long long)qkv_dataset_target_tokens(ds[k]));
        else
            printf("%s: %lld tokens (every shard checked)\n", names[k],
                   (long long)qkv_dataset_tokens(ds[k]));
    qkv_dataset_close(ds[0]);
    qkv_dataset_close(ds[1]);
    return fflush(stdout) == 0 ? EXIT_OK : EXIT_FAIL;
}

int cmd_data(int argc, char **argv) {
    if (argc < 2) return cli_usage_error("data", "expected a subcommand: prepare or info");
    if (strcmp(argv[1], "prepare") == 0) return cmd_prepare(argc - 1, argv + 1);
    if (strcmp(argv[1], "info") == 0) return cmd_info_dataset(argc - 1, argv + 1);
    return cli_usage_error("data", "unknown subcommand '%s' (expected: prepare, info)", argv[1]);
}
