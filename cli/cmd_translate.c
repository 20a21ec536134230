/* cmd_translate.c — `qkv translate`: a MarianMT or T5 directory translates lines, one output
 * line per input line (T5: each after a task prefix, e.g. "translate English to German: "). Lines
 * are read in windows (8 batches' worth, or up to the end of the input), each window sorted by
 * token count so that a batch holds sentences of similar lengths, and written back in input order
 * when the window is done: streaming with bounded memory, and a pipe of single lines (--batch 1)
 * answers line by line. Text goes through the directory's tokenizer (source.spm + vocab.json);
 * decoding is qkv_seq2seq_generate with the directory's generation defaults unless overridden. */
#include "cli.h"
#include "textio.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void cmd_translate_help(void) {
    printf("Usage: qkv translate --model DIR [FILE | -] [options]\n\n"
           "Translates each line of FILE (or stdin: '-' or no FILE) with a MarianMT model\n"
           "directory (config.json, model.safetensors, source.spm, vocab.json; OPUS-MT layout)\n"
           "or a T5 / T5 v1.1 directory (config.json, model.safetensors, tokenizer.json or\n"
           "spiece.model) and writes one line per input line, in input order, as transformers'\n"
           "generate() then decode(skip_special_tokens=True) would.\n\n"
           "Options:\n"
           "  --prefix TEXT      put TEXT before every line (T5 expects e.g. \"translate English\n"
           "                     to German: \"). Default: the prefix of the first translation*\n"
           "                     entry of config.json's task_specific_params when it has one,\n"
           "                     else none; --prefix '' turns it off\n"
           "  --beams N          beam size (default: the directory's num_beams; 1 = greedy)\n"
           "  --max-length N     target tokens at most, counting the start token (default:\n"
           "                     the directory's max_length)\n"
           "  --max-new-tokens N new tokens at most (overrides --max-length)\n"
           "  --length-penalty X beam score = log p / length^X (default: the directory's)\n"
           "  --no-repeat-ngram N  no n-gram of this size twice (default: the directory's)\n"
           "  --batch N          sentences decoded together (default 32); sentences are sorted\n"
           "                     by length within windows of 8 batches, each window written\n"
           "                     when done (--batch 1: every line as soon as it is read)\n"
           "  --json             one JSON object per line: line, translation, score, tokens\n"
           "  --threads N        threads (default: QKV_NUM_THREADS or all CPUs)\n"
           "  --dtype T          weights of the linear layers and the head: f32 (default,\n"
           "                     exact), bf16 or f16 (half the weight bytes; scores differ\n"
           "                     slightly) or int8 (a quarter)\n");
}

typedef struct {
    size_t index; /* position in the input */
    int64_t n;
} item;

static int by_length(const void *a, const void *b) {
    const item *x = a, *y = b;
    if (x->n != y->n) return x->n < y->n ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

qkv_status cli_translate_encode(const qkv_tokenizer *tok, const char *prefix, const char *text,
                                size_t len, int32_t **ids, int64_t *n) {
    *ids = NULL, *n = 0;
    const size_t np = strlen(prefix);
    char *full = malloc(np + len + 1);
    if (!full) return QKV_ERR_NOMEM;
    memcpy(full, prefix, np);
    memcpy(full + np, text, len);
    full[np + len] = '\0';
    qkv_encoding *e = NULL;
    qkv_status s = qkv_tokenizer_encode(tok, full, np + len, NULL, 0, NULL, &e);
    free(full);
    if (s != QKV_OK) return s;
    *ids = malloc(sizeof(int32_t) * (e->n ? e->n : 1));
    if (*ids) {
        memcpy(*ids, e->ids, sizeof(int32_t) * e->n);
        *n = (int64_t)e->n;
    }
    qkv_encoding_free(e);
    return *ids ? QKV_OK : QKV_ERR_NOMEM;
}

qkv_status cli_translate_ids(qkv_runtime *rt, const qkv_seq2seq *m, const qkv_tokenizer *ttok,
                             const qkv_translate_options *o, size_t batch, int32_t *const *ids,
                             const int64_t *lens, size_t n, char **text, float *score,
                             int64_t *tlen) {
    const int64_t cap = qkv_seq2seq_max_output(m, o);
    if (cap == 0) return QKV_ERR_INVALID_ARG;
    for (size_t i = 0; i < n; i++) text[i] = NULL;
    item *it = calloc(n ? n : 1, sizeof *it);
    int64_t *olen = calloc(batch, sizeof *olen), *blens = calloc(batch, sizeof *blens);
    float *sc = calloc(batch, sizeof *sc);
    int32_t *out = malloc(sizeof(int32_t) * batch * (size_t)cap), *src = NULL;
    qkv_status s = it && olen && blens && sc && out ? QKV_OK : QKV_ERR_NOMEM;
    for (size_t i = 0; s == QKV_OK && i < n; i++) it[i] = (item){i, lens[i]};
    if (s == QKV_OK) qsort(it, n, sizeof *it, by_length);
    for (size_t b0 = 0; s == QKV_OK && b0 < n; b0 += batch) {
        const size_t nb = n - b0 < batch ? n - b0 : batch;
        size_t total = 0;
        for (size_t k = 0; k < nb; k++) total += (size_t)it[b0 + k].n;
        int32_t *grow = realloc(src, sizeof(int32_t) * total);
        if (!grow) {
            s = QKV_ERR_NOMEM;
            break;
        }
        src = grow;
        for (size_t k = 0, off = 0; k < nb; off += (size_t)it[b0 + k].n, k++) {
            memcpy(src + off, ids[it[b0 + k].index], sizeof(int32_t) * (size_t)it[b0 + k].n);
            blens[k] = it[b0 + k].n;
        }
        s = qkv_seq2seq_generate(rt, m, src, blens, nb, o, out, olen, sc);
        for (size_t k = 0; s == QKV_OK && k < nb; k++) {
            const size_t i = it[b0 + k].index;
            score[i] = sc[k];
            tlen[i] = olen[k];
            s = qkv_tokenizer_decode(ttok, out + k * (size_t)cap, (size_t)olen[k], 1, &text[i],
                                     NULL);
        }
    }
    if (s != QKV_OK)
        for (size_t i = 0; i < n; i++) {
            qkv_free(text[i]);
            text[i] = NULL;
        }
    free(it), free(olen), free(blens), free(sc), free(out), free(src);
    return s;
}

typedef struct {
    const qkv_seq2seq *m;
    const qkv_tokenizer *tok, *ttok; /* source side (encode); target side (decode) */
    qkv_runtime *rt;
    const qkv_translate_options *o;
    const char *prefix; /* before every line ("" for none) */
    size_t batch;
    int json;
} ctx;

/* Translates and writes lines[0, n) (line numbers first + 1 ...); returns the exit code. */
static int run_window(const ctx *c, char **lines, size_t n, size_t first) {
    int32_t **ids = calloc(n, sizeof *ids);
    char **text = calloc(n, sizeof *text);
    float *score = calloc(n, sizeof *score);
    int64_t *lens = calloc(n, sizeof *lens), *tlen = calloc(n, sizeof *tlen);
    int rc = ids && text && score && lens && tlen ? EXIT_OK : EXIT_FAIL;
    if (rc != EXIT_OK) fprintf(stderr, "qkv translate: out of memory\n");
    const int64_t max_src = qkv_seq2seq_max_source(c->m);
    for (size_t i = 0; rc == EXIT_OK && i < n; i++) {
        qkv_status s =
            cli_translate_encode(c->tok, c->prefix, lines[i], strlen(lines[i]), &ids[i], &lens[i]);
        if (s != QKV_OK) {
            char what[64];
            snprintf(what, sizeof what, "line %zu", first + i + 1);
            rc = cli_report(what, s);
            break;
        }
        if (lens[i] > max_src || lens[i] == 0) {
            fprintf(stderr,
                    "qkv translate: line %zu has %lld tokens; the model takes at most %lld "
                    "(max_position_embeddings; T5: n_positions)\n",
                    first + i + 1, (long long)lens[i], (long long)max_src);
            rc = EXIT_USAGE;
        }
    }
    if (rc == EXIT_OK) {
        qkv_status s = cli_translate_ids(c->rt, c->m, c->ttok, c->o, c->batch, ids, lens, n, text,
                                         score, tlen);
        if (s != QKV_OK) rc = cli_report("translate", s);
    }
    if (rc == EXIT_OK) {
        for (size_t i = 0; i < n; i++) {
            if (c->json) {
                printf("{\"line\": %zu, \"translation\": ", first + i + 1);
                json_write_string(stdout, text[i], strlen(text[i]));
                printf(", \"score\": %.9g, \"tokens\": %lld}\n", (double)score[i],
                       (long long)tlen[i]);
            } else {
                fputs(text[i], stdout);
                fputc('\n', stdout);
            }
        }
        if (fflush(stdout) != 0 || ferror(stdout)) {
            fprintf(stderr, "qkv translate: cannot write the output\n");
            rc = EXIT_FAIL;
        }
    }
    for (size_t i = 0; ids && i < n; i++) free(ids[i]);
    for (size_t i = 0; text && i < n; i++) qkv_free(text[i]);
    free(ids), free(text), free(score), free(lens), free(tlen);
    return rc;
}

int cmd_translate(int argc, char **argv) {
    const char *model = NULL, *input = NULL, *prefix = NULL;
    long beams = 0, max_length = 0, max_new = 0, batch = 32, threads = 0, ngram = -1;
    double lp = 0;
    int json = 0, have_lp = 0;
    qkv_dtype dtype = QKV_DTYPE_F32;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED_VALUE                                                                                 \
    if (!v) return cli_usage_error("translate", "%s needs a value", a);                            \
    i++
        if (cli_is_help(a)) {
            cmd_translate_help();
            return EXIT_OK;
        } else if (strcmp(a, "--model") == 0) {
            NEED_VALUE;
            model = v;
        } else if (strcmp(a, "--prefix") == 0) {
            NEED_VALUE;
            prefix = v;
        } else if (strcmp(a, "--beams") == 0) {
            NEED_VALUE;
            if (cli_parse_count("translate", a, v, 1, 1024, &beams)) return EXIT_USAGE;
        } else if (strcmp(a, "--max-length") == 0) {
            NEED_VALUE;
            if (cli_parse_count("translate", a, v, 2, 1 << 20, &max_length)) return EXIT_USAGE;
        } else if (strcmp(a, "--max-new-tokens") == 0) {
            NEED_VALUE;
            if (cli_parse_count("translate", a, v, 1, 1 << 20, &max_new)) return EXIT_USAGE;
        } else if (strcmp(a, "--no-repeat-ngram") == 0) {
            NEED_VALUE;
            if (cli_parse_count("translate", a, v, 0, 1 << 20, &ngram)) return EXIT_USAGE;
        } else if (strcmp(a, "--batch") == 0) {
            NEED_VALUE;
            if (cli_parse_count("translate", a, v, 1, 4096, &batch)) return EXIT_USAGE;
        } else if (strcmp(a, "--threads") == 0) {
            NEED_VALUE;
            if (cli_parse_count("translate", a, v, 1, 1024, &threads)) return EXIT_USAGE;
        } else if (strcmp(a, "--length-penalty") == 0) {
            NEED_VALUE;
            char *end;
            lp = strtod(v, &end);
            if (!*v || *end || !(lp > -1e6 && lp < 1e6))
                return cli_usage_error("translate", "--length-penalty wants a number, got '%s'", v);
            have_lp = 1;
        } else if (strcmp(a, "--dtype") == 0) {
            NEED_VALUE;
            if (cli_parse_dtype("translate", v, &dtype)) return EXIT_USAGE;
        } else if (strcmp(a, "--json") == 0) {
            json = 1;
        } else if (a[0] == '-' && a[1] != '\0') {
            return cli_usage_error("translate", "unknown option '%s'", a);
        } else if (!input) {
            input = a;
        } else {
            return cli_usage_error("translate", "one input file at most ('%s' is a second)", a);
        }
#undef NEED_VALUE
    }
    if (!model) return cli_usage_error("translate", "--model DIR is required");
    if (!input) input = "-";

    qkv_seq2seq *m = NULL;
    qkv_tokenizer *tok = NULL, *ttok = NULL;
    qkv_runtime *rt = NULL;
    FILE *f = NULL;
    int rc = EXIT_OK;
    const qkv_model_options mo = {.struct_size = sizeof mo, .dtype = dtype};
    qkv_status s = qkv_seq2seq_load_opts(model, &mo, &m);
    if (s != QKV_OK) return cli_report(model, s);
    if ((s = qkv_tokenizer_load(model, &tok)) != QKV_OK ||
        (s = qkv_tokenizer_load_target(model, &ttok)) != QKV_OK) {
        rc = cli_report(model, s);
        goto done;
    }
    if ((s = qkv_runtime_create((int)threads, &rt)) != QKV_OK) {
        rc = cli_report("runtime", s);
        goto done;
    }
    qkv_translate_options o;
    qkv_seq2seq_default_options(m, &o);
    if (beams) o.num_beams = beams;
    if (max_length) o.max_length = max_length;
    if (max_new) o.max_new_tokens = max_new;
    if (ngram >= 0) o.no_repeat_ngram_size = ngram;
    if (have_lp) o.length_penalty = (float)lp;
    const int64_t cap = qkv_seq2seq_max_output(m, &o);
    if (cap == 0) {
        rc = cli_report("options", QKV_ERR_INVALID_ARG);
        goto done;
    }
    struct stat sb;
    if (strcmp(input, "-") != 0 && (stat(input, &sb) != 0 || !S_ISREG(sb.st_mode))) {
        fprintf(stderr, "qkv translate: %s: not a readable regular file\n", input);
        rc = EXIT_USAGE;
        goto done;
    }
    f = strcmp(input, "-") == 0 ? stdin : fopen(input, "rb");
    if (!f) {
        fprintf(stderr, "qkv translate: %s: cannot open\n", input);
        rc = EXIT_USAGE;
        goto done;
    }
    if (!prefix) prefix = qkv_seq2seq_source_prefix(m);
    ctx c = {m, tok, ttok, rt, &o, prefix, (size_t)batch, json};
    const size_t window = batch == 1 ? 1 : 8 * (size_t)batch; /* --batch 1: line by line */
    char **lines = calloc(window, sizeof *lines);
    char *buf = NULL;
    size_t bcap = 0, n = 0, first = 0;
    ssize_t got;
    if (!lines) {
        fprintf(stderr, "qkv translate: out of memory\n");
        rc = EXIT_FAIL;
    }
    while (rc == EXIT_OK && (got = getline(&buf, &bcap, f)) >= 0) {
        size_t len = (size_t)got;
        if (len && buf[len - 1] == '\n') len--;
        if (len && buf[len - 1] == '\r') len--;
        if (memchr(buf, '\0', len)) {
            fprintf(stderr, "qkv translate: %s: line %zu contains a NUL byte\n", input,
                    first + n + 1);
            rc = EXIT_USAGE;
            break;
        }
        lines[n] = strndup(buf, len);
        if (!lines[n]) {
            fprintf(stderr, "qkv translate: out of memory\n");
            rc = EXIT_FAIL;
            break;
        }
        /* a full window: translate it and write it out */
        if (++n == window) {
            rc = run_window(&c, lines, n, first);
            for (size_t i = 0; i < n; i++) free(lines[i]);
            first += n;
            n = 0;
        }
    }
    if (rc == EXIT_OK && ferror(f)) {
        fprintf(stderr, "qkv translate: %s: read error\n", input);
        rc = EXIT_USAGE;
    }
    if (rc == EXIT_OK && n) rc = run_window(&c, lines, n, first);
    for (size_t i = 0; lines && i < n; i++) free(lines[i]);
    free(lines);
    free(buf);
done:
    if (f && f != stdin) fclose(f);
    qkv_runtime_free(rt);
    qkv_tokenizer_free(tok);
    qkv_tokenizer_free(ttok);
    qkv_seq2seq_free(m);
    return rc;
}
