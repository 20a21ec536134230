/* cmd_evaluate.c — `qkv evaluate`: a sequence classifier (BertForSequenceClassification
 * directory) on a labelled file, scored as scikit-learn scores it.
 *
 * The file is read by qkv_labeled_load (TSV, CSV, JSON lines, class folders) with the model's
 * problem type, its labels are renumbered by the model's id2label (qkv_labeled_map_labels), and
 * every example goes through qkv_classify in batches. Single-label: the prediction is the label
 * of the highest score (softmax), as `qkv classify` gives it; multi-label: every label whose
 * sigmoid is above --threshold; regression: the raw output. Then classification_report
 * (qkv_cls_report, sklearn's text byte for byte) and the confusion matrix on stdout, or for
 * regression MSE, MAE, RMSE, R² and Pearson's r. Every output file is checked before the model
 * runs (an existing path must be a regular file) and written whole or not at all (atomic.h);
 * the predictions stream into their temporary file as the batches come. */
#include "atomic.h"
#include "cli.h"
#include "plot.h"
#include "textio.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CMD "evaluate"

void cmd_evaluate_help(void) {
    printf(
        "Usage: qkv evaluate --model DIR --data FILE [options]     (a classifier)\n"
        "       qkv evaluate --hyp FILE --ref FILE [options]       (translations: BLEU, chrF)\n\n"
        "Runs a sequence classifier (a Hugging Face BertForSequenceClassification directory, as\n"
        "for `qkv classify`) on every example of a labelled file and prints how well it does:\n"
        "scikit-learn's classification_report (the same text, byte for byte, as\n"
        "sklearn.metrics.classification_report(y_true, y_pred, labels=range(C),\n"
        "target_names=the model's labels, digits=N)), then the confusion matrix.\n\n"
        "Data (--data FILE): what qkv's labelled-data reader takes (docs/TRAINING.md,\n"
        "\"Labelled data for classification\"): TSV or CSV with columns text[,text_pair],label\n"
        "(a header row names them, else by position), JSON lines {\"text\", \"text_pair\",\n"
        "\"label\"}, or a directory with one folder per class holding one file per example.\n"
        "Examples with a text_pair are classified as pairs. The labels must be names of the\n"
        "model's id2label (config.json): an unknown label stops the run with exit 2, naming\n"
        "FILE:LINE and listing the model's labels. A multi-label model reads a set of labels\n"
        "per example (a|b in TSV/CSV, an array in JSON lines); a regression model a number.\n"
        "  --format F            auto (default: a directory, else by extension: .tsv, .csv,\n"
        "                        .jsonl/.ndjson/.json), tsv, csv, jsonl, dir\n"
        "  --text-field NAME     the text column / key (default text, else sentence, else\n"
        "                        sentence1)\n"
        "  --pair-field NAME     the text_pair column / key (default text_pair, else sentence2)\n"
        "  --label-field NAME    the label column / key (default label; multi-label also labels)\n"
        "  --header | --no-header  TSV/CSV: the first row is / is not a header (default: a\n"
        "                        header when a cell of the first row is a known column name)\n"
        "  --label-sep C         multi-label TSV/CSV: the character between names (default |)\n"
        "  --no-quotes           TSV/CSV: '\"' is plain text (files written without quoting)\n"
        "  --max-record BYTES    the longest row, line or example file (default 1 MiB)\n\n"
        "Predictions:\n"
        "  single-label          the label with the highest score (softmax over the labels;\n"
        "                        the first on a tie), as `qkv classify` prints it\n"
        "  multi-label           every label whose sigmoid is above --threshold T (default 0.5);\n"
        "                        the report is sklearn's multi-label one (micro, macro,\n"
        "                        weighted and samples averages; accuracy = rows exactly right)\n"
        "                        and the confusion text gives tn fp fn tp per label\n"
        "  regression            the model's output (one value) against the number: prints\n"
        "                        MSE, MAE, RMSE, R^2 (sklearn's r2_score: 1 - SS_res / SS_tot;\n"
        "                        when the true values are all equal, 1 if every prediction is\n"
        "                        exact, else 0) and Pearson's r (nan, JSON null, when either side\n"
        "                        is constant) instead of a report\n\n"
        "Outputs (stdout: the report, a blank line, the confusion matrix):\n"
        "  --digits N            decimals in the report (default 2; regression: 4), 0..60\n"
        "  --report PATH         also write the report text (exactly sklearn's string)\n"
        "  --json PATH           the metrics as JSON: per-class precision, recall, f1-score and\n"
        "                        support, the averages, the confusion matrix, with accuracy\n"
        "                        and macro_f1 at the top level (regression: mse, mae, rmse, r2,\n"
        "                        pearson_r); unrounded (17 significant digits)\n"
        "  --confusion PATH.svg  the confusion matrix as an SVG picture (single-label, at most\n"
        "                        %d labels)\n"
        "  --predictions PATH    one JSON object per example, in file order: {\"index\" (from 0),\n"
        "                        \"line\" (where its record starts; class folders: 0 and a\n"
        "                        \"file\"), \"true\", \"predicted\", \"score\" (the predicted "
        "label's\n"
        "                        score)}; multi-label: label lists and \"scores\" for every "
        "label;\n"
        "                        regression: the true and predicted numbers\n"
        "Output files are written to a temporary file and renamed, so a file is complete or\n"
        "untouched; an existing PATH that is a directory or not a regular file is refused.\n\n"
        "Other options:\n"
        "  --model DIR           the classifier directory (required)\n"
        "  --data FILE           the labelled data (required)\n"
        "  --batch N             examples per batch (default 64)\n"
        "  --threads N           threads (default: QKV_NUM_THREADS or all CPUs)\n"
        "  --dtype T             the encoder's linear layers: f32 (default, exact), bf16 or\n"
        "                        f16 (16-bit weights, half the bytes) or int8\n"
        "  --progress            a progress bar on stderr even when it is not a terminal (by\n"
        "                        default: a bar on a terminal, else a line every 5 seconds)\n\n"
        "Exit status: 0 done; 2 bad usage or bad input (a data error names FILE:LINE; an\n"
        "unknown label; a model without a classification head or tokenizer; an output path that\n"
        "cannot be written); 1 otherwise.\n\n",
        CLI_CONFUSION_MAX);
    cmd_evaluate_mt_help();
}

typedef struct opts {
    const char *model, *data;
    qkv_labeled_options lo;
    long digits; /* -1: the default */
    double threshold;
    int have_threshold;
    long batch, threads;
    qkv_dtype dtype;
    int force_progress;
    const char *report, *json, *confusion, *predictions;
} opts;

static int parse_format(const char *v, qkv_labeled_format *f) {
    static const char *const names[] = {"auto", "tsv", "csv", "jsonl", "dir"};
    for (int i = 0; i < 5; i++)
        if (strcmp(v, names[i]) == 0) {
            *f = (qkv_labeled_format)i;
            return EXIT_OK;
        }
    return cli_usage_error(CMD, "--format is auto, tsv, csv, jsonl or dir, not '%s'", v);
}

static int parse_args(int argc, char **argv, opts *o) {
    memset(o, 0, sizeof *o);
    qkv_labeled_default_options(&o->lo);
    o->digits = -1;
    o->threshold = 0.5;
    o->batch = 64;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        const char **str = strcmp(a, "--model") == 0         ? &o->model
                           : strcmp(a, "--data") == 0        ? &o->data
                           : strcmp(a, "--report") == 0      ? &o->report
                           : strcmp(a, "--json") == 0        ? &o->json
                           : strcmp(a, "--confusion") == 0   ? &o->confusion
                           : strcmp(a, "--predictions") == 0 ? &o->predictions
                           : strcmp(a, "--text-field") == 0  ? &o->lo.text_field
                           : strcmp(a, "--pair-field") == 0  ? &o->lo.pair_field
                           : strcmp(a, "--label-field") == 0 ? &o->lo.label_field
                                                             : NULL;
        long v;
        if (str && more) {
            *str = argv[++i];
            if (!**str) return cli_usage_error(CMD, "%s wants a non-empty value", a);
        } else if (strcmp(a, "--format") == 0 && more) {
            if (parse_format(argv[++i], &o->lo.format)) return EXIT_USAGE;
        } else if (strcmp(a, "--digits") == 0 && more) {
            if (cli_parse_count(CMD, a, argv[++i], 0, 60, &o->digits)) return EXIT_USAGE;
        } else if (strcmp(a, "--batch") == 0 && more) {
            if (cli_parse_count(CMD, a, argv[++i], 1, 1 << 20, &o->batch)) return EXIT_USAGE;
        } else if (strcmp(a, "--threads") == 0 && more) {
            if (cli_parse_count(CMD, a, argv[++i], 1, 1024, &o->threads)) return EXIT_USAGE;
        } else if (strcmp(a, "--dtype") == 0 && more) {
            if (cli_parse_dtype(CMD, argv[++i], &o->dtype)) return EXIT_USAGE;
        } else if (strcmp(a, "--max-record") == 0 && more) {
            if (cli_parse_count(CMD, a, argv[++i], 1, 1L << 40, &v)) return EXIT_USAGE;
            o->lo.max_record_bytes = (size_t)v;
        } else if (strcmp(a, "--threshold") == 0 && more) {
            char *end;
            const char *t = argv[++i];
            errno = 0;
            o->threshold = strtod(t, &end);
            if (!*t || *end || errno || !(o->threshold >= 0 && o->threshold <= 1))
                return cli_usage_error(CMD, "--threshold wants a number in [0, 1], got '%s'", t);
            o->have_threshold = 1;
        } else if (strcmp(a, "--label-sep") == 0 && more) {
            const char *c = argv[++i];
            if (strlen(c) != 1 || c[0] == '\n' || c[0] == '\r' || c[0] == '"')
                return cli_usage_error(CMD,
                                       "--label-sep wants one character (not a quote or a "
                                       "line break), got '%s'",
                                       c);
            o->lo.label_separator = c[0];
        } else if (strcmp(a, "--header") == 0)
            o->lo.header = 1;
        else if (strcmp(a, "--no-header") == 0)
            o->lo.header = -1;
        else if (strcmp(a, "--no-quotes") == 0)
            o->lo.no_quotes = 1;
        else if (strcmp(a, "--progress") == 0)
            o->force_progress = 1;
        else if (a[0] == '-')
            return cli_usage_error(CMD, "unknown option '%s'%s", a,
                                   more ? "" : " (or its value is missing)");
        else
            return cli_usage_error(CMD, "unexpected argument '%s' (the data is --data FILE)", a);
    }
    if (!o->model) return cli_usage_error(CMD, "--model DIR is required");
    if (!o->data) return cli_usage_error(CMD, "--data FILE is required");
    return EXIT_OK;
}

/* An output path must be new or a regular file, in an existing directory we may write in, and
 * not the data or another output. */
static int check_output(const char *opt, const char *path, const opts *o) {
    struct stat sb, db;
    if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode)) {
        fprintf(stderr, "qkv %s: %s %s: exists and is not a regular file (%s); not replaced\n", CMD,
                opt, path, S_ISDIR(sb.st_mode) ? "a directory" : "a special file");
        return EXIT_USAGE;
    }
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir) {
        fprintf(stderr, "qkv %s: out of memory\n", CMD);
        return EXIT_FAIL;
    }
    int bad = stat(dir, &db) != 0 || !S_ISDIR(db.st_mode) ? 1 : access(dir, W_OK) != 0 ? 2 : 0;
    if (bad) {
        fprintf(stderr, "qkv %s: %s %s: %s '%s'\n", CMD, opt, path,
                bad == 1 ? "no such directory" : "cannot write in", dir);
        free(dir);
        return EXIT_USAGE;
    }
    free(dir);
    const char *others[] = {o->data, o->report, o->json, o->confusion, o->predictions};
    int same = 0;
    for (int k = 0; k < 5; k++) {
        if (!others[k] || others[k] == path) continue;
        struct stat ob;
        if (strcmp(others[k], path) == 0 || (stat(path, &sb) == 0 && stat(others[k], &ob) == 0 &&
                                             sb.st_dev == ob.st_dev && sb.st_ino == ob.st_ino))
            same = 1;
    }
    if (same) {
        fprintf(stderr, "qkv %s: %s %s: the same file as the data or another output\n", CMD, opt,
                path);
        return EXIT_USAGE;
    }
    return EXIT_OK;
}

/* ---------------------------------------------------------------- regression */

typedef struct regression {
    double mse, mae, rmse, r2, pearson_r;
} regression;

/* sklearn's mean_squared_error, mean_absolute_error, r2_score (force_finite: a constant y_true
 * gives 1 for an exact fit, else 0) and Pearson's r (NaN when a side is constant), in double
 * with the means taken first. */
static regression regression_metrics(const double *y, const double *p, size_t n) {
    double my = 0, mp = 0, se = 0, ae = 0;
    for (size_t i = 0; i < n; i++) {
        my += y[i], mp += p[i];
        se += (p[i] - y[i]) * (p[i] - y[i]);
        ae += fabs(p[i] - y[i]);
    }
    my /= (double)n, mp /= (double)n;
    double syy = 0, spp = 0, syp = 0;
    for (size_t i = 0; i < n; i++) {
        syy += (y[i] - my) * (y[i] - my);
        spp += (p[i] - mp) * (p[i] - mp);
        syp += (y[i] - my) * (p[i] - mp);
    }
    regression r;
    r.mse = se / (double)n;
    r.mae = ae / (double)n;
    r.rmse = sqrt(r.mse);
    r.r2 = syy > 0 ? 1.0 - se / syy : se == 0 ? 1.0 : 0.0;
    r.pearson_r = syy > 0 && spp > 0 ? syp / sqrt(syy * spp) : NAN;
    return r;
}

static char *regression_text(const regression *r, size_t n, int digits) {
    const char *names[] = {"MSE", "MAE", "RMSE", "R²", "Pearson r"};
    const double v[] = {r->mse, r->mae, r->rmse, r->r2, r->pearson_r};
    size_t cap = 64 + 5 * (size_t)(96 + digits);
    char *s = malloc(cap);
    if (!s) return NULL;
    size_t k = (size_t)snprintf(s, cap, "%-10s %zu\n", "examples", n);
    for (int i = 0; i < 5; i++) /* "R²" is 3 bytes for 2 columns: pad by bytes plus one */
        k += (size_t)snprintf(s + k, cap - k, "%-*s %.*f\n", i == 3 ? 11 : 10, names[i], digits,
                              v[i]);
    return s;
}

/* A JSON number, or null when it is not finite. */
static json_t *json_num(double v) { return isfinite(v) ? json_real(v) : json_null(); }

/* ---------------------------------------------------------------- predictions file */

static void put_score(FILE *f, double v) {
    if (isfinite(v))
        fprintf(f, "%.7g", v);
    else
        fputs("null", f);
}

/* A float in the fewest digits that read back to it (0.385, not 0.38499999), null if it is
 * not finite. */
static void put_float(FILE *f, float v) {
    char buf[32];
    if (!isfinite(v)) {
        fputs("null", f);
        return;
    }
    for (int p = 6; p <= 9; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, (double)v);
        if (strtof(buf, NULL) == v) break;
    }
    fputs(buf, f);
}

static void put_name(FILE *f, const char *s) { json_write_string(f, s, strlen(s)); }

/* The labels of an indicator row as a JSON array. */
static void put_set(FILE *f, const qkv_model *m, const uint8_t *row, int64_t NL) {
    fputc('[', f);
    for (int64_t c = 0, first = 1; c < NL; c++)
        if (row[c]) {
            if (!first) fputc(',', f);
            put_name(f, qkv_model_label(m, c));
            first = 0;
        }
    fputc(']', f);
}

/* ---------------------------------------------------------------- the run */

typedef struct run {
    const opts *o;
    qkv_model *m;
    qkv_labeled *d;
    qkv_problem_type problem;
    int64_t NL;
    size_t N;
    int32_t *y_true, *y_pred;     /* single-label [N] */
    uint8_t *yt_multi, *yp_multi; /* multi-label [N, NL] */
    double *v_true, *v_pred;      /* regression [N] */
    atomic_file pred;             /* --predictions, open while classifying */
} run;

static void run_free(run *r) {
    free(r->y_true), free(r->y_pred), free(r->yt_multi), free(r->yp_multi);
    free(r->v_true), free(r->v_pred);
    atomic_abort(&r->pred);
    qkv_labeled_free(r->d);
    qkv_model_free(r->m);
}

/* Loads the data with the model's problem type and maps its labels to the model's. */
static int load_data(run *r) {
    const opts *o = r->o;
    qkv_labeled_options lo = o->lo;
    lo.problem = r->problem;
    qkv_status s = qkv_labeled_load(o->data, &lo, &r->d);
    if (s != QKV_OK) return cli_report(o->data, s);
    cli_warn_multiline(CMD, o->data, r->d, lo.no_quotes);
    if (r->problem == QKV_PROBLEM_REGRESSION) return EXIT_OK;
    const char **names = malloc((size_t)r->NL * sizeof *names);
    if (!names) {
        fprintf(stderr, "qkv %s: out of memory\n", CMD);
        return EXIT_FAIL;
    }
    for (int64_t k = 0; k < r->NL; k++) names[k] = qkv_model_label(r->m, k);
    s = qkv_labeled_map_labels(r->d, names, r->NL);
    free(names);
    if (s == QKV_OK) return EXIT_OK;
    if (s != QKV_ERR_FORMAT) return cli_report(o->data, s);
    fprintf(stderr, "qkv %s: %s\nqkv %s: the labels of %s are:", CMD, qkv_last_error(), CMD,
            o->model);
    for (int64_t k = 0; k < r->NL && k < 100; k++)
        fprintf(stderr, "%s '%s'", k ? "," : "", qkv_model_label(r->m, k));
    if (r->NL > 100) fprintf(stderr, " ... (%lld in all)", (long long)r->NL);
    fputc('\n', stderr);
    return EXIT_USAGE;
}

static int alloc_arrays(run *r) {
    size_t N = r->N, NL = (size_t)r->NL;
    if (r->problem == QKV_PROBLEM_SINGLE_LABEL) {
        r->y_true = malloc(N * sizeof *r->y_true);
        r->y_pred = malloc(N * sizeof *r->y_pred);
        if (r->y_true && r->y_pred) return EXIT_OK;
    } else if (r->problem == QKV_PROBLEM_MULTI_LABEL) {
        if (N <= SIZE_MAX / NL) {
            r->yt_multi = malloc(N * NL);
            r->yp_multi = malloc(N * NL);
        }
        if (r->yt_multi && r->yp_multi) return EXIT_OK;
    } else {
        r->v_true = malloc(N * sizeof *r->v_true);
        r->v_pred = malloc(N * sizeof *r->v_pred);
        if (r->v_true && r->v_pred) return EXIT_OK;
    }
    fprintf(stderr, "qkv %s: out of memory for %zu examples of %lld labels\n", CMD, N,
            (long long)r->NL);
    return EXIT_FAIL;
}

/* Example i's truth and prediction from its scores row [NL] (logits for regression), and its
 * predictions line. */
static void record(run *r, size_t i, const float *row, float *vec) {
    const int64_t NL = r->NL;
    FILE *f = r->pred.f;
    if (f) {
        int64_t line;
        const char *file = qkv_labeled_source(r->d, (int64_t)i, &line);
        fprintf(f, "{\"index\":%zu,\"line\":%lld", i, (long long)line);
        if (line == 0 && file) {
            fputs(",\"file\":", f);
            put_name(f, file);
        }
    }
    if (r->problem == QKV_PROBLEM_SINGLE_LABEL) {
        int64_t best = 0; /* the first highest score; NaN ranks last, as qkv classify's */
        for (int64_t c = 1; c < NL; c++)
            if (row[c] > row[best] || (isnan(row[best]) && !isnan(row[c]))) best = c;
        r->y_true[i] = qkv_labeled_label(r->d, (int64_t)i);
        r->y_pred[i] = (int32_t)best;
        if (f) {
            fputs(",\"true\":", f);
            put_name(f, qkv_model_label(r->m, r->y_true[i]));
            fputs(",\"predicted\":", f);
            put_name(f, qkv_model_label(r->m, best));
            fputs(",\"score\":", f);
            put_score(f, row[best]);
        }
    } else if (r->problem == QKV_PROBLEM_MULTI_LABEL) {
        uint8_t *t = r->yt_multi + i * (size_t)NL, *p = r->yp_multi + i * (size_t)NL;
        qkv_labeled_label_vector(r->d, (int64_t)i, vec); /* i is in range: cannot fail */
        for (int64_t c = 0; c < NL; c++) {
            t[c] = vec[c] != 0;
            p[c] = row[c] > r->o->threshold;
        }
        if (f) {
            fputs(",\"true\":", f);
            put_set(f, r->m, t, NL);
            fputs(",\"predicted\":", f);
            put_set(f, r->m, p, NL);
            fputs(",\"scores\":{", f);
            for (int64_t c = 0; c < NL; c++) {
                if (c) fputc(',', f);
                put_name(f, qkv_model_label(r->m, c));
                fputc(':', f);
                put_score(f, row[c]);
            }
            fputc('}', f);
        }
    } else {
        r->v_true[i] = qkv_labeled_value(r->d, (int64_t)i);
        r->v_pred[i] = row[0];
        if (f) {
            fputs(",\"true\":", f);
            put_float(f, (float)r->v_true[i]);
            fputs(",\"predicted\":", f);
            put_float(f, row[0]);
        }
    }
    if (f) fputs("}\n", f);
}

/* Every example through the model, batch by batch. */
static int classify_all(run *r, qkv_runtime *rt) {
    const size_t B = (size_t)r->o->batch, NL = (size_t)r->NL;
    const int pairs = qkv_labeled_has_pairs(r->d);
    const char **text = malloc(B * sizeof *text), **pair = malloc(B * sizeof *pair);
    size_t *tlen = malloc(B * sizeof *tlen), *plen = malloc(B * sizeof *plen);
    float *out = malloc(B * NL * sizeof *out), *vec = malloc(NL * sizeof *vec);
    int rc = EXIT_OK;
    if (!text || !pair || !tlen || !plen || !out || !vec) {
        fprintf(stderr, "qkv %s: out of memory for a batch of %zu\n", CMD, B);
        rc = EXIT_FAIL;
        goto done;
    }
    progress p;
    progress_begin(&p, "evaluating", r->N, r->o->force_progress);
    progress_lines(&p, 5.0);
    for (size_t i = 0; i < r->N; i += B) {
        size_t nb = r->N - i < B ? r->N - i : B;
        for (size_t k = 0; k < nb; k++) {
            text[k] = qkv_labeled_text(r->d, (int64_t)(i + k), &tlen[k]);
            pair[k] = qkv_labeled_pair(r->d, (int64_t)(i + k), &plen[k]);
            if (!pair[k]) plen[k] = 0;
        }
        qkv_status s = qkv_classify(rt, r->m, text, tlen, pairs ? pair : NULL, plen, nb, out);
        if (s == QKV_OK && r->problem != QKV_PROBLEM_REGRESSION)
            s = qkv_classify_scores(r->m, out, nb, out);
        if (s != QKV_OK) {
            progress_end(&p, i);
            int64_t l0, l1;
            const char *file = qkv_labeled_source(r->d, (int64_t)i, &l0);
            qkv_labeled_source(r->d, (int64_t)(i + nb - 1), &l1);
            char what[512];
            snprintf(what, sizeof what, "%s: examples %zu..%zu (lines %lld..%lld)", file, i + 1,
                     i + nb, (long long)l0, (long long)l1);
            rc = cli_report(what, s);
            goto done;
        }
        for (size_t k = 0; k < nb; k++) record(r, i + k, out + k * NL, vec);
        progress_update(&p, i + nb);
    }
    progress_end(&p, r->N);
done:
    free(text), free(pair), free(tlen), free(plen), free(out), free(vec);
    return rc;
}

/* ---------------------------------------------------------------- writing the results */

static void put_text(FILE *f, const void *text) { fputs((const char *)text, f); }

static void put_json(FILE *f, const void *obj) {
    json_dumpf((const json_t *)obj, f, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
    fputc('\n', f);
}

static int write_file(const char *opt, const char *path, void (*fn)(FILE *, const void *),
                      const void *ctx) {
    if (atomic_write(path, fn, ctx) == 0) return EXIT_OK;
    fprintf(stderr, "qkv %s: %s %s: %s\n", CMD, opt, path, strerror(errno));
    return EXIT_FAIL;
}

static const char *problem_name(qkv_problem_type p) {
    return p == QKV_PROBLEM_MULTI_LABEL  ? "multi_label_classification"
           : p == QKV_PROBLEM_REGRESSION ? "regression"
                                         : "single_label_classification";
}

/* The head of every JSON file: what was evaluated. */
static json_t *json_head(const run *r) {
    json_t *o = json_object();
    if (!o) return NULL;
    int bad = json_object_set_new(o, "model", cli_json_string(r->o->model));
    bad |= json_object_set_new(o, "data", cli_json_string(r->o->data));
    bad |= json_object_set_new(o, "problem_type", json_string(problem_name(r->problem)));
    if (r->problem == QKV_PROBLEM_MULTI_LABEL)
        bad |= json_object_set_new(o, "threshold", json_real(r->o->threshold));
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static int emit(const char *text, const char *more) {
    fputs(text, stdout);
    if (more) printf("\n%s", more);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "qkv %s: write error on stdout\n", CMD);
        return EXIT_FAIL;
    }
    return EXIT_OK;
}

static int finish_regression(run *r) {
    regression g = regression_metrics(r->v_true, r->v_pred, r->N);
    char *text = regression_text(&g, r->N, r->o->digits < 0 ? 4 : (int)r->o->digits);
    json_t *j = json_head(r);
    int rc = EXIT_FAIL;
    if (!text || !j || json_object_set_new(j, "n_samples", json_integer((json_int_t)r->N)) != 0 ||
        json_object_set_new(j, "mse", json_num(g.mse)) != 0 ||
        json_object_set_new(j, "mae", json_num(g.mae)) != 0 ||
        json_object_set_new(j, "rmse", json_num(g.rmse)) != 0 ||
        json_object_set_new(j, "r2", json_num(g.r2)) != 0 ||
        json_object_set_new(j, "pearson_r", json_num(g.pearson_r)) != 0) {
        fprintf(stderr, "qkv %s: out of memory\n", CMD);
        goto done;
    }
    if ((rc = emit(text, NULL))) goto done;
    if (r->o->report && (rc = write_file("--report", r->o->report, put_text, text))) goto done;
    if (r->o->json) rc = write_file("--json", r->o->json, put_json, j);
done:
    free(text);
    json_decref(j);
    return rc;
}

static int finish_classification(run *r) {
    const int multi = r->problem == QKV_PROBLEM_MULTI_LABEL;
    const char **names = malloc((size_t)r->NL * sizeof *names);
    qkv_cls_metrics *m = NULL;
    char *report = NULL, *confusion = NULL, *js = NULL;
    json_t *j = NULL, *full = NULL;
    int rc = EXIT_FAIL;
    if (!names) {
        fprintf(stderr, "qkv %s: out of memory\n", CMD);
        goto done;
    }
    for (int64_t k = 0; k < r->NL; k++) names[k] = qkv_model_label(r->m, k);
    qkv_status s = multi ? qkv_cls_metrics_compute_multilabel(r->yt_multi, r->yp_multi,
                                                              (int64_t)r->N, r->NL, &m)
                         : qkv_cls_metrics_compute(r->y_true, r->y_pred, (int64_t)r->N, r->NL, &m);
    int digits = r->o->digits < 0 ? 2 : (int)r->o->digits;
    if (s == QKV_OK) s = qkv_cls_report(m, names, digits, &report);
    if (s == QKV_OK) s = qkv_cls_confusion_text(m, names, &confusion);
    if (s == QKV_OK && r->o->json) s = qkv_cls_report_json(m, names, &js);
    if (s != QKV_OK) {
        rc = cli_report("metrics", s);
        goto done;
    }
    if ((rc = emit(report, confusion))) goto done;
    if (r->o->report && (rc = write_file("--report", r->o->report, put_text, report))) goto done;
    if (r->o->confusion &&
        cli_plot_confusion_svg(r->o->confusion, NULL, names, m->confusion, r->NL) != 0) {
        fprintf(stderr, "qkv %s: --confusion %s: %s\n", CMD, r->o->confusion, strerror(errno));
        rc = EXIT_FAIL;
        goto done;
    }
    if (r->o->json) {
        json_error_t e;
        full = json_loads(js, 0, &e);
        j = json_head(r);
        rc = EXIT_FAIL;
        if (!full || !j || json_object_set_new(j, "accuracy", json_real(m->accuracy)) != 0 ||
            json_object_set_new(j, "macro_f1", json_real(m->macro.f1)) != 0 ||
            json_object_update_missing(j, full) != 0) {
            fprintf(stderr, "qkv %s: out of memory for the JSON metrics\n", CMD);
            goto done;
        }
        rc = write_file("--json", r->o->json, put_json, j);
    }
done:
    free(names);
    qkv_free(report);
    qkv_free(confusion);
    qkv_free(js);
    json_decref(full);
    json_decref(j);
    qkv_cls_metrics_free(m);
    return rc;
}

int cmd_evaluate(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--hyp") == 0 || strcmp(argv[i], "--ref") == 0)
            return cmd_evaluate_mt(argc, argv);
    opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc) return rc;
    const char *outs[][2] = {{"--report", o.report},
                             {"--json", o.json},
                             {"--confusion", o.confusion},
                             {"--predictions", o.predictions}};
    for (int k = 0; k < 4; k++)
        if (outs[k][1] && (rc = check_output(outs[k][0], outs[k][1], &o))) return rc;

    run r = {0};
    r.o = &o;
    if ((rc = cli_load_classifier(CMD, o.model, o.dtype, &r.m))) return rc;
    r.NL = qkv_model_num_labels(r.m);
    r.problem = qkv_model_problem_type(r.m);
    qkv_runtime *rt = NULL;
    if (r.problem == QKV_PROBLEM_REGRESSION && r.NL != 1) {
        rc = cli_usage_error(CMD, "%s: a regression head of %lld outputs; qkv evaluate takes one",
                             o.model, (long long)r.NL);
        goto done;
    }
    if (o.confusion && r.problem != QKV_PROBLEM_SINGLE_LABEL) {
        rc = cli_usage_error(CMD, "--confusion draws single-label confusion matrices; %s is %s",
                             o.model, problem_name(r.problem));
        goto done;
    }
    if (o.confusion && r.NL > CLI_CONFUSION_MAX) {
        rc = cli_usage_error(CMD, "--confusion draws at most %d labels; %s has %lld",
                             CLI_CONFUSION_MAX, o.model, (long long)r.NL);
        goto done;
    }
    if (o.have_threshold && r.problem != QKV_PROBLEM_MULTI_LABEL)
        fprintf(stderr, "qkv %s: note: --threshold is for multi-label models; %s is %s\n", CMD,
                o.model, problem_name(r.problem));
    if ((rc = load_data(&r))) goto done;
    r.N = (size_t)qkv_labeled_count(r.d);
    if ((rc = alloc_arrays(&r))) goto done;
    qkv_status s = qkv_runtime_create((int)o.threads, &rt);
    if (s != QKV_OK) {
        rc = cli_report("runtime", s);
        goto done;
    }
    if (o.predictions && atomic_open(&r.pred, o.predictions) != 0) {
        fprintf(stderr, "qkv %s: --predictions %s: %s\n", CMD, o.predictions, strerror(errno));
        rc = EXIT_FAIL;
        goto done;
    }
    if ((rc = classify_all(&r, rt))) goto done;
    if (o.predictions && atomic_commit(&r.pred) != 0) {
        fprintf(stderr, "qkv %s: --predictions %s: %s\n", CMD, o.predictions, strerror(errno));
        rc = EXIT_FAIL;
        goto done;
    }
    rc = r.problem == QKV_PROBLEM_REGRESSION ? finish_regression(&r) : finish_classification(&r);
done:
    qkv_runtime_free(rt);
    run_free(&r);
    return rc;
}
