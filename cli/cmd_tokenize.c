/* cmd_tokenize.c — `qkv tokenize` (text to ids and tokens) and `qkv tokenizer train` (learn a
 * byte-level BPE), over the public tokenizer API only.
 *
 * Input is a TEXT argument, or lines streamed from a file or stdin ("-"): each line is one
 * text, read with getline so memory stays bounded by the longest line, whatever the file size.
 * A progress bar (bytes done / file size, MB/s) goes to stderr when stderr is a terminal or
 * with --progress; stdout carries only results. JSON is written by hand through
 * json_write_string (textio.h): escaped, and valid UTF-8 even when --decode gives bytes that
 * are not (a byte-level token cut in the middle of a character). A line that cannot be encoded
 * or decoded is named by its number; --on-error chooses whether the run stops there (exit 2)
 * or skips it (an empty output line, or null with --json, so outputs stay line-aligned). */
#include "cli.h"
#include "textio.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void cmd_tokenize_help(void) {
    printf("Usage: qkv tokenize --model PATH [options] [TEXT | -]\n\n"
           "Encode TEXT (or every line of a file or of stdin with -) with a Hugging Face\n"
           "tokenizer and print the ids and tokens. PATH is a model directory or a file:\n"
           "tokenizer.json, vocab.txt (+ tokenizer_config.json beside it), vocab.json\n"
           "(+ merges.txt beside it), a SentencePiece .model / .spm file, or a Marian\n"
           "directory (source.spm + vocab.json). See docs/TOKENIZERS.md for what is\n"
           "supported.\n\n"
           "Options:\n"
           "  --model PATH        the tokenizer (required)\n"
           "  --file FILE         encode every line of FILE (streamed; any size)\n"
           "  --pair TEXT         a second sequence (text pairs: [CLS] A [SEP] B [SEP])\n"
           "  --max-length N      truncate to N tokens, special tokens included\n"
           "  --truncation S      longest_first (default), only_first or only_second\n"
           "  --pad-to N          pad with the pad id up to N tokens\n"
           "  --no-special        do not add special tokens ([CLS], [SEP], ...)\n"
           "  --offsets           also print each token's [start, end) byte span\n"
           "  --json              one JSON object per text: ids, tokens, type_ids,\n"
           "                      attention_mask, and offsets / char_offsets with --offsets\n"
           "  --ids-only          one line of space-separated ids per text\n"
           "  --decode            the input is ids (space-separated); print the text\n"
           "  --keep-special      with --decode: keep special tokens ([CLS], <|endoftext|>)\n"
           "  --on-error stop|skip  a line of a file or stdin that fails (too long for\n"
           "                      --truncation only_first, an id not in the vocabulary):\n"
           "                      stop there (default, exit 2) or skip it with a warning\n"
           "                      (its output line is empty, or null with --json)\n"
           "  --progress          progress bar on stderr even when it is not a terminal\n"
           "  -h, --help          show this help\n\n"
           "Without --max-length / --pad-to the tokenizer file's own truncation and padding\n"
           "apply (tokenizer.json may set them; --max-length 0 / --pad-to 0 turn them off).\n\n"
           "       qkv tokenizer train --vocab-size N --out DIR [--special TOK]...\n"
           "                           [--min-frequency N] FILES...\n\n"
           "Learn a byte-level BPE (GPT-2 style) from the text FILES and write\n"
           "DIR/tokenizer.json, loadable by qkv and by Hugging Face tokenizers.\n"
           "--special adds a special token (default: <|endoftext|>); N counts the 256 bytes\n"
           "and the special tokens.\n\n"
           "Exit codes: 0 ok, 1 failure, 2 bad usage or a bad model path or file.\n");
}

typedef struct opts {
    const char *model, *pair, *file, *text;
    int json, offsets, ids_only, decode, keep_special, skip_errors, progress, stdin_in;
    qkv_encode_options enc;
} opts;

/* --decode: the line is token ids separated by spaces or commas. Each must be a whole number
 * in the vocabulary (no wrapping of 4294967297 to 1, no skipped words); the exit code, with a
 * message naming where (the line number, 0 for a TEXT argument). */
static int print_ids_text(const qkv_tokenizer *tok, const char *line, const opts *o,
                          size_t lineno) {
    size_t cap = 64, n = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    const int64_t vocab = (int64_t)qkv_tokenizer_vocab_size(tok);
    const char *p = line;
    char where[48] = "";
    if (lineno) snprintf(where, sizeof where, "line %zu: ", lineno);
    int rc = ids ? EXIT_OK : EXIT_FAIL;
    while (rc == EXIT_OK && *p) {
        while (*p == ' ' || *p == ',' || *p == '\t' || *p == '\r') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        size_t w = strcspn(p, " ,\t\r");
        if (end == p || (end - p) != (ptrdiff_t)w) {
            fprintf(stderr, "qkv tokenize: --decode: %s'%.*s' is not a token id\n", where,
                    (int)(w > 40 ? 40 : w), p);
            rc = EXIT_USAGE;
        } else if (errno || v < 0 || v >= vocab) {
            fprintf(stderr,
                    "qkv tokenize: --decode: %s%.*s is not an id of the vocabulary [0, %lld)\n",
                    where, (int)(w > 40 ? 40 : w), p, (long long)vocab);
            rc = EXIT_USAGE;
        } else if (n == cap) {
            int32_t *ni = realloc(ids, 2 * cap * sizeof *ids);
            if (!ni)
                rc = EXIT_FAIL;
            else
                ids = ni, cap *= 2;
        }
        if (rc == EXIT_OK) ids[n++] = (int32_t)v;
        p = end;
    }
    char *text = NULL;
    size_t tl = 0;
    if (rc == EXIT_OK) {
        qkv_status s = qkv_tokenizer_decode(tok, ids, n, !o->keep_special, &text, &tl);
        if (s != QKV_OK) rc = cli_report("tokenize --decode", s);
    }
    if (rc == EXIT_OK) {
        if (o->json) {
            fputs("{\"text\":", stdout);
            json_write_string(stdout, text, tl);
            fputs("}\n", stdout);
        } else {
            fwrite(text, 1, tl, stdout);
            fputc('\n', stdout);
        }
    }
    qkv_free(text);
    free(ids);
    return rc;
}

static int print_encoding(const qkv_tokenizer *tok, const char *text, size_t len, const opts *o,
                          size_t lineno) {
    qkv_encoding *e = NULL;
    qkv_status s =
        qkv_tokenizer_encode(tok, text, len, o->pair, o->pair ? strlen(o->pair) : 0, &o->enc, &e);
    if (s != QKV_OK) {
        static const char *const trunc[] = {"longest_first", "only_first", "only_second"};
        char what[160] = "tokenize", flags[96] = "";
        if (o->enc.max_length > 0) /* the flags a truncation failure comes from */
            snprintf(flags, sizeof flags, " (--max-length %lld, --truncation %s)",
                     (long long)o->enc.max_length,
                     (unsigned)o->enc.truncation < 3 ? trunc[o->enc.truncation] : "?");
        if (lineno)
            snprintf(what, sizeof what, "tokenize: line %zu%s", lineno, flags);
        else
            snprintf(what, sizeof what, "tokenize%s", flags);
        return cli_report(what, s);
    }
    if (o->json) {
        fputs("{\"ids\":[", stdout);
        for (size_t i = 0; i < e->n; i++) printf("%s%d", i ? "," : "", e->ids[i]);
        fputs("],\"tokens\":[", stdout);
        for (size_t i = 0; i < e->n; i++) {
            const char *t = qkv_tokenizer_id_to_token(tok, e->ids[i]);
            if (i) fputc(',', stdout);
            json_write_string(stdout, t ? t : "", t ? strlen(t) : 0);
        }
        fputs("],\"type_ids\":[", stdout);
        for (size_t i = 0; i < e->n; i++) printf("%s%d", i ? "," : "", e->type_ids[i]);
        fputs("],\"attention_mask\":[", stdout);
        for (size_t i = 0; i < e->n; i++) printf("%s%d", i ? "," : "", e->attention_mask[i]);
        fputs("]", stdout);
        if (o->offsets) {
            fputs(",\"offsets\":[", stdout);
            for (size_t i = 0; i < e->n; i++)
                printf("%s[%lld,%lld]", i ? "," : "", (long long)e->offsets[2 * i],
                       (long long)e->offsets[2 * i + 1]);
            fputs("],\"char_offsets\":[", stdout);
            for (size_t i = 0; i < e->n; i++)
                printf("%s[%lld,%lld]", i ? "," : "", (long long)e->char_offsets[2 * i],
                       (long long)e->char_offsets[2 * i + 1]);
            fputs("]", stdout);
        }
        fputs("}\n", stdout);
    } else if (o->ids_only) {
        for (size_t i = 0; i < e->n; i++) printf("%s%d", i ? " " : "", e->ids[i]);
        fputc('\n', stdout);
    } else {
        fputs("ids:", stdout);
        for (size_t i = 0; i < e->n; i++) printf(" %d", e->ids[i]);
        fputs("\ntokens:", stdout);
        for (size_t i = 0; i < e->n; i++) {
            const char *t = qkv_tokenizer_id_to_token(tok, e->ids[i]);
            printf(" %s", t ? t : "?");
        }
        fputc('\n', stdout);
        if (o->offsets) {
            fputs("offsets:", stdout);
            for (size_t i = 0; i < e->n; i++)
                printf(" %lld:%lld", (long long)e->offsets[2 * i],
                       (long long)e->offsets[2 * i + 1]);
            fputc('\n', stdout);
        }
    }
    qkv_encoding_free(e);
    return EXIT_OK;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void progress_bar(double done, double total, double t0, int final) {
    double el = now_s() - t0, mbs = el > 0 ? done / 1e6 / el : 0;
    if (total > 0) {
        double f = done / total;
        if (f > 1) f = 1;
        int w = 30, k = (int)(f * w);
        fprintf(stderr, "\r[%.*s%*s] %5.1f%%  %.1f MB  %.1f MB/s", k,
                "##############################", w - k, "", 100 * f, done / 1e6, mbs);
    } else {
        fprintf(stderr, "\r%.1f MB  %.1f MB/s", done / 1e6, mbs);
    }
    if (final) fputc('\n', stderr);
    fflush(stderr);
}

static int stream(const qkv_tokenizer *tok, FILE *in, const opts *o, double total) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int show = o->progress || isatty(STDERR_FILENO);
    double t0 = now_s(), last = t0, done = 0;
    int rc = EXIT_OK;
    size_t lineno = 0, skipped = 0;
    while ((n = getline(&line, &cap, in)) >= 0) {
        done += (double)n;
        lineno++;
        if (n > 0 && line[n - 1] == '\n') line[--n] = 0;
        rc = o->decode ? print_ids_text(tok, line, o, lineno)
                       : print_encoding(tok, line, (size_t)n, o, lineno);
        if (rc == EXIT_USAGE && o->skip_errors) { /* the message named the line; keep going */
            fputs(o->json ? "null\n" : "\n", stdout);
            skipped++;
            rc = EXIT_OK;
        }
        if (rc != EXIT_OK) {
            if (rc == EXIT_USAGE)
                fprintf(stderr, "qkv tokenize: stopped at line %zu (--on-error skip goes on)\n",
                        lineno);
            break;
        }
        if (show && now_s() - last > 0.2) {
            last = now_s();
            progress_bar(done, total, t0, 0);
        }
    }
    if (skipped)
        fprintf(stderr, "qkv tokenize: %zu of %zu lines skipped (--on-error skip)\n", skipped,
                lineno);
    if (show) progress_bar(done, total, t0, 1);
    free(line);
    if (ferror(in)) {
        fprintf(stderr, "qkv tokenize: read error: %s\n", strerror(errno));
        return EXIT_FAIL;
    }
    return rc;
}

static int parse_int(const char *cmd, const char *flag, const char *v, int64_t *out) {
    char *end;
    errno = 0;
    long long x = v ? strtoll(v, &end, 10) : 0;
    if (!v || errno || *end || x < 0) return cli_usage_error(cmd, "%s needs a number >= 0", flag);
    *out = x;
    return 0;
}

int cmd_tokenize(int argc, char **argv) {
    opts o;
    memset(&o, 0, sizeof o);
    int64_t max_len = -1, pad_to = -1;
    int no_special = 0, trunc = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--model") == 0 && v)
            o.model = argv[++i];
        else if (strcmp(a, "--pair") == 0 && v)
            o.pair = argv[++i];
        else if (strcmp(a, "--file") == 0 && v)
            o.file = argv[++i];
        else if (strcmp(a, "--max-length") == 0) {
            if (parse_int("tokenize", a, v, &max_len)) return EXIT_USAGE;
            i++;
        } else if (strcmp(a, "--pad-to") == 0) {
            if (parse_int("tokenize", a, v, &pad_to)) return EXIT_USAGE;
            i++;
        } else if (strcmp(a, "--truncation") == 0 && v) {
            i++;
            if (strcmp(v, "longest_first") == 0)
                trunc = QKV_TRUNCATE_LONGEST_FIRST;
            else if (strcmp(v, "only_first") == 0)
                trunc = QKV_TRUNCATE_ONLY_FIRST;
            else if (strcmp(v, "only_second") == 0)
                trunc = QKV_TRUNCATE_ONLY_SECOND;
            else
                return cli_usage_error("tokenize", "unknown truncation '%s'", v);
        } else if (strcmp(a, "--no-special") == 0)
            no_special = 1;
        else if (strcmp(a, "--offsets") == 0)
            o.offsets = 1;
        else if (strcmp(a, "--json") == 0)
            o.json = 1;
        else if (strcmp(a, "--ids-only") == 0)
            o.ids_only = 1;
        else if (strcmp(a, "--decode") == 0)
            o.decode = 1;
        else if (strcmp(a, "--keep-special") == 0)
            o.keep_special = 1;
        else if (strcmp(a, "--on-error") == 0 && v) {
            i++;
            if (strcmp(v, "skip") != 0 && strcmp(v, "stop") != 0)
                return cli_usage_error("tokenize", "--on-error is stop or skip, not '%s'", v);
            o.skip_errors = strcmp(v, "skip") == 0;
        } else if (strcmp(a, "--progress") == 0)
            o.progress = 1;
        else if (strcmp(a, "-") == 0)
            o.stdin_in = 1;
        else if (strcmp(a, "--") == 0 && v) {
            o.text = argv[++i];
        } else if (a[0] == '-' && a[1] == '-')
            return cli_usage_error("tokenize", "unknown option or missing value: %s", a);
        else if (!o.text)
            o.text = a;
        else
            return cli_usage_error("tokenize", "one TEXT only (quote it), or - for stdin");
    }
    if (!o.model) return cli_usage_error("tokenize", "--model PATH is required");
    if (o.keep_special && !o.decode)
        return cli_usage_error("tokenize", "--keep-special goes with --decode");
    if ((o.text != NULL) + o.stdin_in + (o.file != NULL) != 1)
        return cli_usage_error("tokenize", "give exactly one of TEXT, - (stdin) or --file FILE");
    qkv_tokenizer *tok = NULL;
    qkv_status s = qkv_tokenizer_load(o.model, &tok);
    if (s != QKV_OK) return cli_report(o.model, s);
    qkv_tokenizer_default_options(tok, &o.enc);
    if (max_len >= 0) o.enc.max_length = max_len;
    if (pad_to >= 0) {
        o.enc.pad_to = pad_to;
        if (pad_to == 0) o.enc.pad_to_multiple_of = 0;
    }
    if (trunc >= 0) o.enc.truncation = (qkv_truncation)trunc;
    if (no_special) o.enc.add_special_tokens = 0;
    int rc;
    if (o.text) {
        rc = o.decode ? print_ids_text(tok, o.text, &o, 0)
                      : print_encoding(tok, o.text, strlen(o.text), &o, 0);
    } else if (o.file) {
        FILE *f = fopen(o.file, "rb");
        if (!f) {
            fprintf(stderr, "qkv tokenize: %s: %s\n", o.file, strerror(errno));
            qkv_tokenizer_free(tok);
            return EXIT_USAGE;
        }
        struct stat sb;
        double total = fstat(fileno(f), &sb) == 0 && S_ISREG(sb.st_mode) ? (double)sb.st_size : 0;
        rc = stream(tok, f, &o, total);
        fclose(f);
    } else {
        rc = stream(tok, stdin, &o, 0);
    }
    qkv_tokenizer_free(tok);
    if (fflush(stdout) != 0 && rc == EXIT_OK) rc = EXIT_FAIL;
    return rc;
}

static void train_progress(void *ctx, double f) {
    if (!*(int *)ctx) return;
    fprintf(stderr, "\rtraining: %5.1f%%", 100 * f);
    if (f >= 1) fputc('\n', stderr);
    fflush(stderr);
}

static int cmd_bpe_train(int argc, char **argv) {
    int64_t vocab = 0, minf = 0;
    const char *out = NULL;
    const char **files = calloc((size_t)argc, sizeof *files);
    const char **special = calloc((size_t)argc + 1, sizeof *special);
    size_t nf = 0, ns = 0;
    int show = isatty(STDERR_FILENO), rc = EXIT_OK;
    if (!files || !special) {
        free(files);
        free(special);
        return EXIT_FAIL;
    }
    for (int i = 1; i < argc && rc == EXIT_OK; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--vocab-size") == 0)
            rc = parse_int("tokenizer train", a, v, &vocab), i++;
        else if (strcmp(a, "--min-frequency") == 0)
            rc = parse_int("tokenizer train", a, v, &minf), i++;
        else if (strcmp(a, "--out") == 0 && v)
            out = argv[++i];
        else if (strcmp(a, "--special") == 0 && v)
            special[ns++] = argv[++i];
        else if (strcmp(a, "--progress") == 0)
            show = 1;
        else if (a[0] == '-' && a[1] == '-')
            rc = cli_usage_error("tokenizer train", "unknown option or missing value: %s", a);
        else
            files[nf++] = a;
    }
    if (rc == EXIT_OK && (!out || vocab <= 0 || nf == 0))
        rc = cli_usage_error("tokenizer train", "needs --vocab-size N, --out DIR and FILES");
    if (rc == EXIT_OK) {
        if (ns == 0) special[ns++] = "<|endoftext|>";
        qkv_status s =
            qkv_bpe_train(files, nf, (size_t)vocab, special, ns, minf, out, train_progress, &show);
        rc = s == QKV_OK ? EXIT_OK : cli_report("tokenizer train", s);
        if (s == QKV_OK) fprintf(stderr, "wrote %s/tokenizer.json\n", out);
    }
    free(files);
    free(special);
    return rc;
}

int cmd_tokenizer(int argc, char **argv) {
    if (argc < 2) return cli_usage_error("tokenizer", "expected a subcommand: train");
    if (strcmp(argv[1], "train") == 0) return cmd_bpe_train(argc - 1, argv + 1);
    return cli_usage_error("tokenizer", "unknown subcommand '%s' (expected: train)", argv[1]);
}
