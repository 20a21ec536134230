/* cmd_baseline.c — `qkv baseline`: the two numbers a fine-tuned text classifier has to beat,
 * on labelled data (qkv_labeled_*: TSV, CSV, JSON lines, class folders):
 *   (a) the majority class: every example gets the most frequent training label;
 *   (b) logistic regression on frozen sentence embeddings: qkv_embed of the model's pipeline
 *       (all-MiniLM-L6-v2: mean pooling + L2 normalization), fitted by qkv_logreg_fit as
 *       scikit-learn's LogisticRegression(C, l2, lbfgs, fit_intercept) is.
 * Each is reported as scikit-learn's classification_report (qkv_cls_report) on the test set
 * (and the validation set with --val), with accuracy and macro-F1; --json writes every number.
 * Pairs (text_pair): text and pair are embedded separately and concatenated, [e(text),
 * e(pair)]; an example without a pair gets zeros in the second half. */
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

void cmd_baseline_help(void) {
    printf("Usage: qkv baseline --model DIR --train FILE --test FILE [--val FILE] [options]\n\n"
           "Baselines of a text-classification dataset, each printed as scikit-learn's\n"
           "classification_report with accuracy and macro-F1:\n"
           "  majority    every example gets the most frequent training label (the first in\n"
           "              sorted order on ties, as DummyClassifier(strategy=\"most_frequent\"))\n"
           "  logreg      multinomial logistic regression on frozen sentence embeddings of\n"
           "              DIR (its sentence-transformers pipeline; a plain BERT directory: mean\n"
           "              pooling), fitted as sklearn's LogisticRegression(C=C, penalty=\"l2\",\n"
           "              solver=\"lbfgs\", fit_intercept=True) to a gradient of --tol\n"
           "Data: TSV, CSV, JSON lines or class folders (docs/TRAINING.md, \"Labelled data\"),\n"
           "single-label; the labels of --test and --val must occur in --train. With text\n"
           "pairs, text and pair are embedded separately and concatenated (zeros for a missing\n"
           "pair).\n\n"
           "Options:\n"
           "  --model DIR       the encoder (required; e.g. models/all-MiniLM-L6-v2)\n"
           "  --train FILE      the training examples (required)\n"
           "  --test FILE       the examples reported on (required)\n"
           "  --val FILE        also report on these\n"
           "  --C X             inverse L2 strength of the logistic regression (default 1)\n"
           "  --max-iter N      most L-BFGS iterations (default 10000)\n"
           "  --tol X           stop at this max |gradient| (default 1e-10)\n"
           "  --digits N        digits of the reports (default 4)\n"
           "  --json PATH       write every number as JSON (written whole or not at all)\n"
           "  --batch N         texts per embedding batch (default 64)\n"
           "  --threads N       threads (default: QKV_NUM_THREADS or all CPUs)\n"
           "  --progress        show progress on stderr even when it is not a terminal\n\n"
           "Exit status: 0 done; 2 bad usage or bad input (the message names FILE:LINE); 1\n"
           "otherwise.\n");
}

/* One labelled file and what the baselines need of it. */
typedef struct split {
    const char *role, *path;
    qkv_labeled *d;
    int64_t n;
    int32_t *y;  /* [n] label ids in the training set's numbering */
    float *feat; /* [n, F] */
} split;

typedef struct options {
    const char *model, *json_path;
    long batch, threads, digits, max_iter;
    double C, tol;
    int force_progress;
} options;

static int load_split(split *s, const split *train) {
    qkv_labeled_options lo;
    qkv_labeled_default_options(&lo);
    qkv_status st = qkv_labeled_load(s->path, &lo, &s->d);
    if (st != QKV_OK) return cli_report(s->path, st);
    cli_warn_multiline("baseline", s->path, s->d, lo.no_quotes);
    if (train) {
        int64_t k = qkv_labeled_num_labels(train->d);
        const char **names = malloc((size_t)k * sizeof *names);
        if (!names) return fprintf(stderr, "qkv baseline: out of memory\n"), EXIT_FAIL;
        for (int64_t i = 0; i < k; i++) names[i] = qkv_labeled_label_name(train->d, i);
        st = qkv_labeled_map_labels(s->d, names, k);
        free(names);
        if (st != QKV_OK) return cli_report(s->path, st);
    }
    s->n = qkv_labeled_count(s->d);
    s->y = malloc((size_t)s->n * sizeof *s->y);
    if (!s->y) return fprintf(stderr, "qkv baseline: out of memory\n"), EXIT_FAIL;
    for (int64_t i = 0; i < s->n; i++) s->y[i] = qkv_labeled_label(s->d, i);
    return EXIT_OK;
}

/* The texts (second = 0) or pairs (1) of s: embedded into s->feat columns [col, col + dim);
 * examples without a pair keep their zeros. */
static int embed_column(qkv_runtime *rt, const qkv_model *m, split *s, int second, int64_t F,
                        const options *o) {
    const int64_t dim = qkv_model_dim(m);
    text_lines t = {0};
    t.line = malloc((size_t)s->n * sizeof *t.line);
    t.len = malloc((size_t)s->n * sizeof *t.len);
    int64_t *row = malloc((size_t)s->n * sizeof *row);
    float *e = malloc((size_t)s->n * (size_t)dim * sizeof *e);
    int rc = EXIT_OK;
    if (!t.line || !t.len || !row || !e) {
        fprintf(stderr, "qkv baseline: out of memory for %lld examples\n", (long long)s->n);
        rc = EXIT_FAIL;
        goto done;
    }
    for (int64_t i = 0; i < s->n; i++) {
        size_t len;
        const char *txt =
            second ? qkv_labeled_pair(s->d, i, &len) : qkv_labeled_text(s->d, i, &len);
        if (!txt) continue;
        t.line[t.n] = (char *)txt; /* read only */
        t.len[t.n] = len;
        row[t.n++] = i;
    }
    if (t.n && (rc = cli_embed_lines(rt, m, &t, (size_t)o->batch, o->force_progress, e))) goto done;
    for (size_t k = 0; k < t.n; k++)
        memcpy(s->feat + row[k] * F + (second ? dim : 0), e + k * (size_t)dim,
               (size_t)dim * sizeof *e);
done:
    free(t.line), free(t.len), free(row), free(e);
    return rc;
}

/* The majority class of the training labels: the most frequent, the lowest id on ties. */
static int32_t majority(const split *train, int64_t k) {
    int64_t *count = calloc((size_t)k, sizeof *count);
    int32_t best = 0;
    if (!count) return 0;
    for (int64_t i = 0; i < train->n; i++) count[train->y[i]]++;
    for (int64_t c = 1; c < k; c++)
        if (count[c] > count[best]) best = (int32_t)c;
    free(count);
    return best;
}

/* Prints the report of pred against s's labels; adds {"report", "accuracy", "macro_f1"} as
 * json[s->role]. */
static int report(const split *s, const int32_t *pred, const char *const *names, int64_t k,
                  const options *o, const char *title, json_t *json) {
    qkv_cls_metrics *mt = NULL;
    char *text = NULL, *js = NULL;
    qkv_status st = qkv_cls_metrics_compute(s->y, pred, s->n, k, &mt);
    if (st == QKV_OK) st = qkv_cls_report(mt, names, (int)o->digits, &text);
    if (st == QKV_OK) st = qkv_cls_report_json(mt, names, &js);
    if (st != QKV_OK) {
        qkv_cls_metrics_free(mt);
        return cli_report("metrics", st);
    }
    printf("\n== %s, on %s (%s, %lld examples)\n%s\naccuracy %.*f  macro-F1 %.*f\n", title, s->role,
           s->path, (long long)s->n, text, (int)o->digits, mt->accuracy, (int)o->digits,
           mt->macro.f1);
    json_t *r = json_loads(js, 0, NULL);
    json_object_set_new(json, s->role,
                        json_pack("{s:o, s:f, s:f, s:o}", "report", r ? r : json_null(), "accuracy",
                                  mt->accuracy, "macro_f1", mt->macro.f1, "path",
                                  cli_json_string(s->path)));
    qkv_free(text), qkv_free(js);
    qkv_cls_metrics_free(mt);
    return EXIT_OK;
}

static void dump_json(FILE *f, const void *ctx) {
    json_dumpf((const json_t *)ctx, f, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
    fputc('\n', f);
}

static int parse_real(const char *opt, const char *val, double lo, double *out) {
    char *end;
    errno = 0;
    double x = strtod(val, &end);
    if (end == val || *end || errno || !isfinite(x) || !(x > lo))
        return cli_usage_error("baseline", "%s wants a number > %g, got '%s'", opt, lo, val);
    *out = x;
    return EXIT_OK;
}

static int parse_args(int argc, char **argv, options *o, split *sp) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        const char *v = more ? argv[i + 1] : NULL;
        if (strcmp(a, "--model") == 0 && more)
            o->model = v;
        else if (strcmp(a, "--train") == 0 && more)
            sp[0].path = v;
        else if (strcmp(a, "--test") == 0 && more)
            sp[1].path = v;
        else if (strcmp(a, "--val") == 0 && more)
            sp[2].path = v;
        else if (strcmp(a, "--json") == 0 && more)
            o->json_path = v;
        else if (strcmp(a, "--C") == 0 && more) {
            if (parse_real(a, v, 0, &o->C)) return EXIT_USAGE;
        } else if (strcmp(a, "--tol") == 0 && more) {
            if (parse_real(a, v, 0, &o->tol)) return EXIT_USAGE;
        } else if (strcmp(a, "--max-iter") == 0 && more) {
            if (cli_parse_count("baseline", a, v, 1, 100000000, &o->max_iter)) return EXIT_USAGE;
        } else if (strcmp(a, "--digits") == 0 && more) {
            if (cli_parse_count("baseline", a, v, 0, 17, &o->digits)) return EXIT_USAGE;
        } else if (strcmp(a, "--batch") == 0 && more) {
            if (cli_parse_count("baseline", a, v, 1, 1 << 20, &o->batch)) return EXIT_USAGE;
        } else if (strcmp(a, "--threads") == 0 && more) {
            if (cli_parse_count("baseline", a, v, 1, 1024, &o->threads)) return EXIT_USAGE;
        } else if (strcmp(a, "--progress") == 0) {
            o->force_progress = 1;
            continue;
        } else
            return cli_usage_error("baseline", "unknown option or missing value: '%s'", a);
        i++;
    }
    if (!o->model || !sp[0].path || !sp[1].path)
        return cli_usage_error("baseline", "--model, --train and --test are required");
    return EXIT_OK;
}

int cmd_baseline(int argc, char **argv) {
    options o = {.batch = 64, .digits = 4, .max_iter = 10000, .C = 1.0, .tol = 1e-10};
    split sp[3] = {{.role = "train"}, {.role = "test"}, {.role = "val"}};
    int rc = parse_args(argc, argv, &o, sp);
    if (rc) return rc;
    const int n_sp = sp[2].path ? 3 : 2;
    qkv_model *m = NULL;
    qkv_runtime *rt = NULL;
    qkv_logreg *lr = NULL;
    json_t *json = json_object(), *jmaj = json_object(), *jlr = json_object();
    const char **names = NULL;
    int32_t *pred = NULL;

    if ((rc = load_split(&sp[0], NULL))) goto done;
    if (qkv_labeled_problem(sp[0].d) != QKV_PROBLEM_SINGLE_LABEL) {
        fprintf(stderr, "qkv baseline: %s: only single-label data\n", sp[0].path);
        rc = EXIT_USAGE;
        goto done;
    }
    const int64_t K = qkv_labeled_num_labels(sp[0].d);
    if (K < 2) {
        fprintf(stderr, "qkv baseline: %s: %lld class; a classifier needs two or more\n",
                sp[0].path, (long long)K);
        rc = EXIT_USAGE;
        goto done;
    }
    for (int s = 1; s < n_sp; s++)
        if ((rc = load_split(&sp[s], &sp[0]))) goto done;
    names = malloc((size_t)K * sizeof *names);
    int64_t most = 0;
    for (int s = 0; s < n_sp; s++) most = sp[s].n > most ? sp[s].n : most;
    pred = malloc((size_t)most * sizeof *pred);
    if (!names || !pred || !json || !jmaj || !jlr) {
        fprintf(stderr, "qkv baseline: out of memory\n");
        rc = EXIT_FAIL;
        goto done;
    }
    for (int64_t k = 0; k < K; k++) names[k] = qkv_labeled_label_name(sp[0].d, k);
    printf("train: %s, %lld examples, %lld classes\n", sp[0].path, (long long)sp[0].n,
           (long long)K);

    /* (a) the majority class */
    const int32_t maj = majority(&sp[0], K);
    char title[256];
    snprintf(title, sizeof title, "majority class (\"%s\", the most frequent training label)",
             names[maj]);
    json_object_set_new(jmaj, "label", json_string(names[maj]));
    for (int s = 1; s < n_sp; s++) {
        for (int64_t i = 0; i < sp[s].n; i++) pred[i] = maj;
        if ((rc = report(&sp[s], pred, names, K, &o, title, jmaj))) goto done;
    }

    /* (b) logistic regression on the embeddings */
    if ((rc = cli_load_model("baseline", o.model, &m))) goto done;
    qkv_status st = qkv_runtime_create((int)o.threads, &rt);
    if (st != QKV_OK) {
        rc = cli_report("runtime", st);
        goto done;
    }
    int pairs = 0;
    for (int s = 0; s < n_sp; s++) pairs |= qkv_labeled_has_pairs(sp[s].d);
    const int64_t dim = qkv_model_dim(m), F = dim * (pairs ? 2 : 1);
    double t0 = now_seconds();
    for (int s = 0; s < n_sp; s++) {
        sp[s].feat = calloc((size_t)sp[s].n * (size_t)F, sizeof *sp[s].feat);
        if (!sp[s].feat) {
            fprintf(stderr, "qkv baseline: out of memory for the embeddings of %s\n", sp[s].path);
            rc = EXIT_FAIL;
            goto done;
        }
        for (int second = 0; second <= pairs; second++)
            if ((rc = embed_column(rt, m, &sp[s], second, F, &o))) goto done;
    }
    double t_embed = now_seconds() - t0;
    printf("embeddings: %s, %lld features%s, %.1f s\n", o.model, (long long)F,
           pairs ? " (text and text_pair embedded separately, concatenated)" : "", t_embed);
    qkv_logreg_options lo;
    qkv_logreg_default_options(&lo);
    lo.C = o.C, lo.max_iter = o.max_iter, lo.tol = o.tol;
    t0 = now_seconds();
    st = qkv_logreg_fit(rt, sp[0].feat, sp[0].y, sp[0].n, F, K, &lo, &lr);
    if (st != QKV_OK) {
        rc = cli_report("logistic regression", st);
        goto done;
    }
    double t_fit = now_seconds() - t0;
    qkv_logreg_stats ls = {.struct_size = sizeof ls};
    qkv_logreg_get_stats(lr, &ls);
    printf("logistic regression: C %g, %lld L-BFGS iterations, max |gradient| %.2g, %s, %.1f s\n",
           o.C, (long long)ls.iterations, ls.grad_max,
           ls.converged ? "converged" : "NOT converged (raise --max-iter or --tol)", t_fit);
    snprintf(title, sizeof title, "logistic regression on the embeddings (C %g)", o.C);
    for (int s = 1; s < n_sp; s++) {
        if ((st = qkv_logreg_predict(lr, sp[s].feat, sp[s].n, pred)) != QKV_OK) {
            rc = cli_report("logistic regression", st);
            goto done;
        }
        if ((rc = report(&sp[s], pred, names, K, &o, title, jlr))) goto done;
    }
    json_object_set_new(jlr, "C", json_real(o.C));
    json_object_set_new(jlr, "iterations", json_integer(ls.iterations));
    json_object_set_new(jlr, "grad_max", json_real(ls.grad_max));
    json_object_set_new(jlr, "loss", json_real(ls.loss));
    json_object_set_new(jlr, "converged", json_boolean(ls.converged));
    json_object_set_new(jlr, "fit_seconds", json_real(t_fit));

    if (o.json_path) {
        json_t *labels = json_array();
        for (int64_t k = 0; k < K; k++) json_array_append_new(labels, json_string(names[k]));
        json_object_set_new(json, "model", cli_json_string(o.model));
        json_object_set_new(
            json, "train",
            json_pack("{s:o, s:I}", "path", cli_json_string(sp[0].path), "n", (json_int_t)sp[0].n));
        json_object_set_new(json, "labels", labels);
        json_object_set_new(json, "features", json_integer(F));
        json_object_set_new(json, "pairs", json_boolean(pairs));
        json_object_set_new(json, "embed_seconds", json_real(t_embed));
        json_object_set_new(json, "majority", jmaj);
        json_object_set_new(json, "logreg", jlr);
        jmaj = jlr = NULL;
        if (atomic_write(o.json_path, dump_json, json) != 0) {
            fprintf(stderr, "qkv baseline: cannot write %s: %s\n", o.json_path, strerror(errno));
            rc = EXIT_FAIL;
        }
    }
done:
    json_decref(json), json_decref(jmaj), json_decref(jlr);
    for (int s = 0; s < 3; s++) {
        qkv_labeled_free(sp[s].d);
        free(sp[s].y), free(sp[s].feat);
    }
    free(names), free(pred);
    qkv_logreg_free(lr);
    qkv_runtime_free(rt);
    qkv_model_free(m);
    return rc;
}
