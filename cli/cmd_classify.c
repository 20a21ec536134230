/* cmd_classify.c — `qkv classify`: the labels a sequence classifier (transformers'
 * BertForSequenceClassification directory) gives every line of a file or of stdin: plain text,
 * text pairs split at a TAB, or JSON lines {"text": ..., "text_pair": ...}. Output: one line per
 * input line, in order: "label<TAB>score", more labels with --top-k / --all, or one JSON object.
 * The whole input is read and checked first (a bad line stops the run before any output), then
 * classified and written in batches. */
#include "cli.h"
#include "textio.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cmd_classify_help(void) {
    printf("Usage: qkv classify --model DIR [options] [FILE | -]\n\n"
           "Classifies every line of FILE (default: stdin) with a sequence classifier: a\n"
           "Hugging Face BertForSequenceClassification directory (config.json with its\n"
           "id2label / num_labels / problem_type, model.safetensors with the pooler and the\n"
           "classifier, tokenizer.json or vocab.txt). Each input is tokenized with [CLS] and\n"
           "[SEP] and, when longer than the model's max_position_embeddings, truncated\n"
           "longest-first, as transformers' tokenizer(text, text_pair, truncation=True) does.\n"
           "Scores are those of transformers' text-classification pipeline: softmax over the\n"
           "labels (single-label), a sigmoid per label (multi_label_classification, or one label\n"
           "without a problem_type), the raw value (problem_type regression).\n\n"
           "Input, one item per line:\n"
           "  plain text (default)  the line is the text; with --pairs the first TAB separates\n"
           "                        text and text_pair (a line without a TAB, or with nothing\n"
           "                        after it, has no pair). A line's bytes are taken as they are:\n"
           "                        invalid UTF-8 reads as U+FFFD (as Python's\n"
           "                        errors=\"replace\"), an empty line is the empty text.\n"
           "  JSON lines (--jsonl, or FILE ending in .jsonl)\n"
           "                        {\"text\": \"...\", \"text_pair\": \"...\"}; text_pair may be\n"
           "                        absent or null, other keys are ignored. A line that is not\n"
           "                        such an object (invalid JSON or UTF-8, an empty line) is an\n"
           "                        error.\n\n"
           "Output, one line per input line, in order:\n"
           "  default               label<TAB>score of the best label\n"
           "  --top-k K             the K best labels, best first: label<TAB>score<TAB>label...\n"
           "  --all                 every label, best first\n"
           "  --json                one JSON object per line: {\"label\": best label, \"score\":\n"
           "                        its score, \"scores\": {label: score, ...}} with every label\n"
           "                        (or the --top-k best), best first\n"
           "  --logits              the raw logits instead of the scores\n\n"
           "Options:\n"
           "  --model DIR           the classifier directory (required)\n"
           "  --lora DIR            apply a PEFT LoRA adapter directory (not merged); a\n"
           "                        SEQ_CLS adapter brings its classifier head\n"
           "  --pairs               plain-text lines are text<TAB>text_pair\n"
           "  --jsonl               the input is JSON lines (whatever FILE is called)\n"
           "  --batch N             lines per batch (default 64)\n"
           "  --threads N           threads (default: QKV_NUM_THREADS or all CPUs)\n"
           "  --dtype T             the encoder's linear layers: f32 (default, exact), bf16 or\n"
           "                        f16 (16-bit weights, half the bytes) or int8\n"
           "  --progress            show progress on stderr even when it is not a terminal\n\n"
           "Exit status: 0 done; 2 bad usage or bad input (the message names FILE:LINE), a\n"
           "model directory that cannot be read or has no classification head; 1 otherwise.\n");
}

/* The inputs: t's lines are the texts (rewritten for --pairs / JSON lines), pair[i] NULL or
 * the text pair. */
typedef struct {
    text_lines t;
    char **pair;
    size_t *pair_len;
} inputs;

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* text<TAB>pair: the line is cut at its first TAB, in place. */
static void split_pairs(inputs *in) {
    for (size_t i = 0; i < in->t.n; i++) {
        char *tab = memchr(in->t.line[i], '\t', in->t.len[i]);
        if (!tab) continue;
        *tab = '\0';
        in->pair[i] = tab + 1;
        in->pair_len[i] = in->t.len[i] - (size_t)(tab + 1 - in->t.line[i]);
        in->t.len[i] = (size_t)(tab - in->t.line[i]);
    }
}

static char *dup_bytes(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* JSON line i of path into text (replacing the line) and pair; 0, or the exit code after a
 * message naming path:line. Pairs of JSON lines are owned (freed with the inputs). */
static int parse_json_line(const char *path, inputs *in, size_t i) {
    json_error_t e;
    json_t *o =
        json_loadb(in->t.line[i], in->t.len[i], JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &e);
    const char *why = NULL;
    if (!o)
        why = e.text;
    else if (!json_is_object(o))
        why = "not a JSON object";
    json_t *text = o ? json_object_get(o, "text") : NULL,
           *pair = o ? json_object_get(o, "text_pair") : NULL;
    if (!why && !json_is_string(text)) why = "\"text\" must be a string";
    if (!why && pair && !json_is_null(pair) && !json_is_string(pair))
        why = "\"text_pair\" must be a string or null";
    if (why) {
        fprintf(stderr, "qkv classify: %s:%zu: %s\n", path, i + 1, why);
        json_decref(o);
        return EXIT_USAGE;
    }
    char *t = dup_bytes(json_string_value(text), json_string_length(text));
    char *p =
        json_is_string(pair) ? dup_bytes(json_string_value(pair), json_string_length(pair)) : NULL;
    if (!t || (json_is_string(pair) && !p)) {
        free(t), free(p), json_decref(o);
        fprintf(stderr, "qkv classify: out of memory\n");
        return EXIT_FAIL;
    }
    free(in->t.line[i]);
    in->t.line[i] = t;
    in->t.len[i] = json_string_length(text);
    in->pair[i] = p;
    in->pair_len[i] = p ? json_string_length(pair) : 0;
    json_decref(o);
    return EXIT_OK;
}

static void inputs_free(inputs *in, int jsonl) {
    for (size_t i = 0; jsonl && in->pair && i < in->t.n; i++) free(in->pair[i]);
    free(in->pair);
    free(in->pair_len);
    text_lines_free(&in->t);
}

static void write_row(FILE *f, const qkv_model *m, const float *row, int64_t k, int json,
                      int64_t *idx) {
    cli_top_k(row, qkv_model_num_labels(m), k, idx);
    if (!json) {
        for (int64_t j = 0; j < k; j++)
            fprintf(f, "%s%s\t%.7g", j ? "\t" : "", qkv_model_label(m, idx[j]), row[idx[j]]);
        fputc('\n', f);
        return;
    }
    const char *best = qkv_model_label(m, idx[0]);
    fputs("{\"label\":", f);
    json_write_string(f, best, strlen(best));
    fputs(",\"score\":", f); /* a NaN score (from NaN weights) is null, not a bare nan */
    json_write_number(f, "%.7g", row[idx[0]]);
    fputs(",\"scores\":{", f);
    for (int64_t j = 0; j < k; j++) {
        const char *l = qkv_model_label(m, idx[j]);
        if (j) fputc(',', f);
        json_write_string(f, l, strlen(l));
        fputc(':', f);
        json_write_number(f, "%.7g", row[idx[j]]);
    }
    fputs("}}\n", f);
}

int cli_load_classifier(const char *cmd, const char *dir, qkv_dtype dtype, qkv_model **out) {
    qkv_model *m = NULL;
    int rc = cli_load_model_as(cmd, dir, dtype, &m);
    if (rc) return rc;
    if (qkv_model_num_labels(m) == 0) {
        fprintf(stderr,
                "qkv %s: %s has no classification head (a BertForSequenceClassification "
                "directory is needed: config.json architectures naming it, model.safetensors "
                "with the pooler and classifier.weight); `qkv embed` takes encoders\n",
                cmd, dir);
        qkv_model_free(m);
        return EXIT_USAGE;
    }
    if (!qkv_model_tokenizer(m)) {
        fprintf(stderr, "qkv %s: %s has no tokenizer (tokenizer.json or vocab.txt)\n", cmd, dir);
        qkv_model_free(m);
        return EXIT_USAGE;
    }
    *out = m;
    return EXIT_OK;
}

int cmd_classify(int argc, char **argv) {
    const char *model = NULL, *in_path = "-", *lora = NULL;
    long batch = 64, threads = 0, k = 0;
    qkv_dtype dtype = QKV_DTYPE_F32;
    int pairs = 0, jsonl = 0, all = 0, json = 0, logits = 0, force_progress = 0, have_in = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (strcmp(a, "--model") == 0 && more)
            model = argv[++i];
        else if (strcmp(a, "--lora") == 0 && more)
            lora = argv[++i];
        else if (strcmp(a, "--top-k") == 0 && more) {
            if (cli_parse_count("classify", a, argv[++i], 1, 1 << 20, &k)) return EXIT_USAGE;
        } else if (strcmp(a, "--batch") == 0 && more) {
            if (cli_parse_count("classify", a, argv[++i], 1, 1 << 20, &batch)) return EXIT_USAGE;
        } else if (strcmp(a, "--threads") == 0 && more) {
            if (cli_parse_count("classify", a, argv[++i], 1, 1024, &threads)) return EXIT_USAGE;
        } else if (strcmp(a, "--dtype") == 0 && more) {
            if (cli_parse_dtype("classify", argv[++i], &dtype)) return EXIT_USAGE;
        } else if (strcmp(a, "--all") == 0)
            all = 1;
        else if (strcmp(a, "--pairs") == 0)
            pairs = 1;
        else if (strcmp(a, "--jsonl") == 0)
            jsonl = 1;
        else if (strcmp(a, "--json") == 0)
            json = 1;
        else if (strcmp(a, "--logits") == 0)
            logits = 1;
        else if (strcmp(a, "--progress") == 0)
            force_progress = 1;
        else if (a[0] == '-' && a[1] != '\0')
            return cli_usage_error("classify", "unknown option '%s'", a);
        else if (have_in)
            return cli_usage_error("classify", "one input file at most (got '%s' and '%s')",
                                   in_path, a);
        else {
            in_path = a;
            have_in = 1;
        }
    }
    if (!model) return cli_usage_error("classify", "--model DIR is required");
    if (all && k) return cli_usage_error("classify", "--top-k and --all exclude each other");
    if (ends_with(in_path, ".jsonl")) jsonl = 1;
    if (jsonl && pairs)
        return cli_usage_error("classify", "--pairs is for plain text; JSON lines give "
                                           "\"text_pair\"");

    qkv_model *m = NULL;
    int rc = cli_load_classifier("classify", model, dtype, &m);
    if (rc) return rc;
    if ((rc = cli_apply_lora("classify", m, lora))) {
        qkv_model_free(m);
        return rc;
    }
    const int64_t NL = qkv_model_num_labels(m);
    const int64_t K = all ? NL : k ? (k < NL ? k : NL) : json ? NL : 1;

    inputs in = {0};
    qkv_runtime *rt = NULL;
    float *out = NULL;
    int64_t *idx = NULL;
    if ((rc = text_lines_read(in_path, &in.t))) goto done;
    const char *shown = strcmp(in_path, "-") == 0 ? "<stdin>" : in_path;
    in.pair = calloc(in.t.n ? in.t.n : 1, sizeof *in.pair);
    in.pair_len = calloc(in.t.n ? in.t.n : 1, sizeof *in.pair_len);
    out = malloc((size_t)batch * (size_t)NL * sizeof *out);
    idx = malloc((size_t)NL * sizeof *idx);
    if (!in.pair || !in.pair_len || !out || !idx) {
        fprintf(stderr, "qkv classify: out of memory for %zu lines\n", in.t.n);
        rc = EXIT_FAIL;
        goto done;
    }
    if (pairs) split_pairs(&in);
    for (size_t i = 0; jsonl && i < in.t.n; i++)
        if ((rc = parse_json_line(shown, &in, i))) goto done;
    qkv_status s = qkv_runtime_create((int)threads, &rt);
    if (s != QKV_OK) {
        rc = cli_report("runtime", s);
        goto done;
    }
    progress p;
    progress_begin(&p, "classifying", in.t.n, force_progress);
    for (size_t i = 0; i < in.t.n; i += (size_t)batch) {
        size_t nb = in.t.n - i < (size_t)batch ? in.t.n - i : (size_t)batch;
        s = qkv_classify(rt, m, (const char *const *)in.t.line + i, in.t.len + i,
                         (pairs || jsonl) ? (const char *const *)in.pair + i : NULL,
                         in.pair_len + i, nb, out);
        if (s == QKV_OK && !logits) s = qkv_classify_scores(m, out, nb, out);
        if (s != QKV_OK) {
            progress_end(&p, i);
            char what[96];
            snprintf(what, sizeof what, "%s: lines %zu..%zu", shown, i + 1, i + nb);
            rc = cli_report(what, s);
            goto done;
        }
        for (size_t r = 0; r < nb; r++) write_row(stdout, m, out + r * (size_t)NL, K, json, idx);
        progress_update(&p, i + nb);
    }
    progress_end(&p, in.t.n);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "qkv classify: write error\n");
        rc = EXIT_FAIL;
    }
done:
    free(out);
    free(idx);
    inputs_free(&in, jsonl);
    qkv_runtime_free(rt);
    qkv_model_free(m);
    return rc;
}
