/* cmd_report.c — `qkv report RUN`: one self-contained HTML page of a training run, readable
 * offline in any browser: the curves of metrics.jsonl as inline SVG (loss, learning rate,
 * gradient norm, throughput, validation scores), a summary, the configuration of
 * RUN/config.json and, for `qkv finetune` runs, the classification reports and confusion
 * matrices the run wrote. Nothing is fetched: no script, no font, no external image.
 *
 * Every file is read only if it is a regular file of bounded size; a line of metrics.jsonl that
 * is not a JSON object with an integer "step" is counted and skipped. The page is written to a
 * temporary file and renamed (atomic.h). */
#include "atomic.h"
#include "cli.h"
#include "plot.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define LINE_CAP 65536          /* metrics lines are ~150 bytes */
#define TEXT_CAP (4 << 20)      /* report.txt, config.json */
#define SVG_CAP (8 << 20)       /* confusion.svg */
#define METRICS_CAP (1ll << 32) /* metrics.jsonl */

void cmd_report_help(void) {
    printf("Usage: qkv report RUN [--out FILE]\n\n"
           "Writes one self-contained HTML page of the run directory RUN of `qkv train` or\n"
           "`qkv finetune` (default FILE: RUN/report.html), to open offline in any browser:\n"
           "  - a summary: steps, last and best losses, validation scores, time, tokens/s;\n"
           "  - curves from RUN/metrics.jsonl drawn as inline SVG: training and validation\n"
           "    loss, learning rate, gradient norm, throughput (tokens/s), validation accuracy\n"
           "    and macro-F1 (finetune);\n"
           "  - the configuration (RUN/config.json);\n"
           "  - finetune runs: the classification reports (report.txt, test_report.txt) and the\n"
           "    confusion matrices (confusion.svg, test_confusion.svg), embedded.\n"
           "The page uses no script and loads nothing. It is written to a temporary file and\n"
           "renamed. For live curves while a run trains: tensorboard --logdir RUN.\n\n"
           "Exit codes: 0 written, 1 failure, 2 bad usage or RUN is not a run directory.\n");
}

/* ---------------------------------------------------------------- reading the run */

typedef struct run_data {
    cli_curve loss, lr, grad, tps, vloss, vppl, vacc, vf1;
    double train_s, last_elapsed;
    int64_t steps, evals, skipped, last_step;
    int best_marked;
    double best_step, best_score; /* the line marked "best" last (finetune: macro-F1) */
} run_data;

static void run_free(run_data *d) {
    cli_curve *c[] = {&d->loss, &d->lr, &d->grad, &d->tps, &d->vloss, &d->vppl, &d->vacc, &d->vf1};
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) cli_curve_free(c[i]);
}

static double num(json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

/* Opens path for reading if it is a regular file of at most cap bytes; NULL (errno) if not.
 * *size gets its size. */
static FILE *open_regular(const char *path, long long cap, long long *size) {
    struct stat st;
    if (stat(path, &st) != 0) return NULL;
    if (!S_ISREG(st.st_mode) || st.st_size > cap) {
        errno = S_ISREG(st.st_mode) ? EFBIG : EINVAL;
        return NULL;
    }
    FILE *f = fopen(path, "rb");
    if (f && (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode))) { /* swapped meanwhile */
        fclose(f);
        errno = EINVAL;
        return NULL;
    }
    if (size) *size = (long long)st.st_size;
    return f;
}

/* The whole file (malloc'd, NUL-terminated), or NULL when absent, not regular or too large. */
static char *read_small(const char *path, long long cap, size_t *len) {
    long long size = 0;
    FILE *f = open_regular(path, cap, &size);
    if (!f) return NULL;
    char *b = malloc((size_t)size + 1);
    size_t n = b ? fread(b, 1, (size_t)size, f) : 0;
    fclose(f);
    if (!b) return NULL;
    b[n] = 0;
    if (len) *len = n;
    return b;
}

static int read_metrics(const char *path, run_data *d) {
    FILE *f = open_regular(path, METRICS_CAP, NULL);
    if (!f) {
        fprintf(stderr, "qkv report: %s: %s (is this a run directory of qkv train / finetune?)\n",
                path, errno == EINVAL ? "not a regular file" : strerror(errno));
        return EXIT_USAGE;
    }
    char *line = malloc(LINE_CAP);
    if (!line) {
        fclose(f);
        return cli_report("report", QKV_ERR_NOMEM);
    }
    d->best_step = NAN;
    int long_line = 0;
    while (fgets(line, LINE_CAP, f)) {
        size_t n = strlen(line);
        int whole = n > 0 && line[n - 1] == '\n';
        if (long_line || (!whole && !feof(f))) { /* longer than any line qkv writes */
            if (!long_line) d->skipped++;
            long_line = !whole;
            continue;
        }
        json_t *j = json_loads(line, 0, NULL);
        json_t *st = j ? json_object_get(j, "step") : NULL;
        if (!json_is_integer(st)) {
            if (strspn(line, " \t\r\n") != n) d->skipped++;
            json_decref(j);
            continue;
        }
        const double step = (double)json_integer_value(st);
        if (json_is_number(json_object_get(j, "loss"))) {
            d->steps++;
            d->last_step = json_integer_value(st);
            cli_curve_add(&d->loss, step, num(j, "loss"));
            cli_curve_add(&d->lr, step, num(j, "lr"));
            cli_curve_add(&d->grad, step, num(j, "grad_norm"));
            cli_curve_add(&d->tps, step, num(j, "tokens_per_s"));
            const double s = num(j, "step_s");
            if (isfinite(s)) d->train_s += s;
        } else if (json_object_get(j, "val_loss")) {
            d->evals++;
            cli_curve_add(&d->vloss, step, num(j, "val_loss"));
            cli_curve_add(&d->vppl, step, num(j, "val_ppl"));
            cli_curve_add(&d->vacc, step, num(j, "val_accuracy"));
            cli_curve_add(&d->vf1, step, num(j, "val_macro_f1"));
            if (json_is_true(json_object_get(j, "best"))) {
                d->best_marked = 1, d->best_step = step;
                d->best_score =
                    isfinite(num(j, "val_macro_f1")) ? num(j, "val_macro_f1") : num(j, "val_loss");
            }
        } else {
            d->skipped++;
        }
        json_decref(j);
    }
    int err = ferror(f);
    fclose(f);
    free(line);
    if (err) {
        fprintf(stderr, "qkv report: cannot read %s\n", path);
        return EXIT_FAIL;
    }
    return 0;
}

/* ---------------------------------------------------------------- the page */

static int has_finite(const cli_curve *c) {
    for (int64_t i = 0; i < c->n; i++)
        if (isfinite(c->y[i])) return 1;
    return 0;
}

static double last_finite(const cli_curve *c) {
    for (int64_t i = c->n; i-- > 0;)
        if (isfinite(c->y[i])) return c->y[i];
    return NAN;
}

static double min_finite(const cli_curve *c, double *at) {
    double m = NAN;
    for (int64_t i = 0; i < c->n; i++)
        if (isfinite(c->y[i]) && !(c->y[i] >= m)) m = c->y[i], *at = c->x[i];
    return m;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median_finite(const cli_curve *c) {
    double *v = malloc((size_t)(c->n ? c->n : 1) * sizeof *v);
    int64_t n = 0;
    for (int64_t i = 0; v && i < c->n; i++)
        if (isfinite(c->y[i])) v[n++] = c->y[i];
    double m = NAN;
    if (n) {
        qsort(v, (size_t)n, sizeof *v, cmp_double);
        m = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
    }
    free(v);
    return m;
}

static void chart(FILE *f, const char *id, const char *heading, const char *ylabel,
                  const cli_series *s, int n) {
    fprintf(f, "<figure class=\"chart\" id=\"%s\">\n", id);
    cli_plot_svg_to(f, heading, "step", ylabel, s, n);
    fputs("</figure>\n", f);
}

static void row(FILE *f, const char *name, const char *fmt, double v) {
    if (!isfinite(v)) return;
    fprintf(f, "<tr><th>%s</th><td>", name);
    fprintf(f, fmt, v);
    fputs("</td></tr>\n", f);
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void put_base64(FILE *f, const unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n) v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n) v |= p[i + 2];
        fputc(b64[v >> 18 & 63], f);
        fputc(b64[v >> 12 & 63], f);
        fputc(i + 1 < n ? b64[v >> 6 & 63] : '=', f);
        fputc(i + 2 < n ? b64[v & 63] : '=', f);
    }
}

/* RUN/<prefix>report.txt and RUN/<prefix>confusion.svg when the run wrote them. The SVG goes in
 * as an <img> data URL: an image, so nothing in the file can run as part of the page. */
static void classification(FILE *f, const char *run, const char *prefix, const char *title) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%sreport.txt", run, prefix);
    char *text = read_small(path, TEXT_CAP, NULL);
    size_t svg_len = 0;
    snprintf(path, sizeof path, "%s/%sconfusion.svg", run, prefix);
    char *svg = read_small(path, SVG_CAP, &svg_len);
    if (svg && strncmp(svg, "<svg", 4) != 0) free(svg), svg = NULL; /* not ours */
    if (text || svg) {
        fprintf(f, "<section id=\"%sclassification\">\n<h2>", prefix);
        cli_put_escaped(f, title);
        fputs("</h2>\n", f);
        if (text) {
            fprintf(f, "<pre class=\"report\" id=\"%sreport\">", prefix);
            cli_put_escaped(f, text);
            fputs("</pre>\n", f);
        }
        if (svg) {
            fprintf(f,
                    "<img class=\"confusion\" id=\"%sconfusion\" alt=\"confusion matrix\" "
                    "src=\"data:image/svg+xml;base64,",
                    prefix);
            put_base64(f, (const unsigned char *)svg, svg_len);
            fputs("\">\n", f);
        }
        fputs("</section>\n", f);
    }
    free(text), free(svg);
}

static void config_table(FILE *f, const char *run) {
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", run);
    char *text = read_small(path, TEXT_CAP, NULL);
    json_t *j = text ? json_loads(text, 0, NULL) : NULL;
    fputs("<section id=\"config\">\n<h2>Configuration</h2>\n", f);
    if (!json_is_object(j)) {
        fputs("<p>No readable config.json in the run directory.</p>\n", f);
    } else {
        fputs("<table class=\"config\">\n", f);
        const char *k;
        json_t *v;
        json_object_foreach(j, k, v) {
            char *s = json_is_string(v)
                          ? NULL
                          : json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT | JSON_REAL_PRECISION(10));
            fputs("<tr><th>", f);
            cli_put_escaped(f, k);
            fputs("</th><td>", f);
            cli_put_escaped(f, json_is_string(v) ? json_string_value(v) : s);
            fputs("</td></tr>\n", f);
            free(s);
        }
        fputs("</table>\n", f);
    }
    fputs("</section>\n", f);
    json_decref(j);
    free(text);
}

typedef struct page {
    const char *run;
    const run_data *d;
} page;

static void write_page(FILE *f, const void *ctx) {
    const page *p = ctx;
    const run_data *d = p->d;
    fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>"
          "qkv report: ",
          f);
    cli_put_escaped(f, p->run);
    fputs("</title>\n<style>\n"
          "body{font-family:sans-serif;margin:24px;max-width:1000px;color:#222}\n"
          "h1{font-size:22px}h2{font-size:18px;margin-top:28px}\n"
          "table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:3px 8px;"
          "text-align:left;font-size:13px}th{background:#f4f4f4}\n"
          "figure.chart{margin:12px 0}figure.chart svg{max-width:100%;height:auto}\n"
          "pre.report{background:#f8f8f8;padding:8px;font-size:13px}\n"
          "img.confusion{max-width:100%}\n"
          "</style>\n</head>\n<body>\n<h1 id=\"title\">qkv report: ",
          f);
    cli_put_escaped(f, p->run);
    fputs("</h1>\n", f);

    fputs("<section id=\"summary\">\n<h2>Summary</h2>\n<table class=\"summary\">\n", f);
    row(f, "steps logged", "%.0f", (double)d->steps);
    row(f, "last step", "%.0f", (double)d->last_step);
    row(f, "validations", "%.0f", (double)d->evals);
    row(f, "last training loss", "%.6g", last_finite(&d->loss));
    double at = NAN;
    const double best_vloss = min_finite(&d->vloss, &at);
    if (isfinite(best_vloss)) {
        fprintf(f, "<tr><th>lowest validation loss</th><td>%.6g (step %.0f)</td></tr>\n",
                best_vloss, at);
    }
    row(f, "last validation loss", "%.6g", last_finite(&d->vloss));
    row(f, "last validation perplexity", "%.6g", last_finite(&d->vppl));
    row(f, "last validation accuracy", "%.4f", last_finite(&d->vacc));
    row(f, "last validation macro-F1", "%.4f", last_finite(&d->vf1));
    if (d->best_marked)
        fprintf(f, "<tr><th>best checkpoint</th><td>step %.0f (score %.6g)</td></tr>\n",
                d->best_step, d->best_score);
    row(f, "training time (sum of step times, s)", "%.2f", d->train_s);
    row(f, "median throughput (tokens/s)", "%.1f", median_finite(&d->tps));
    row(f, "last throughput (tokens/s)", "%.1f", last_finite(&d->tps));
    if (d->skipped)
        fprintf(f, "<tr><th>lines skipped</th><td>%lld (not metrics of qkv)</td></tr>\n",
                (long long)d->skipped);
    fputs("</table>\n</section>\n", f);

    fputs("<section id=\"curves\">\n<h2>Curves</h2>\n", f);
    if (!d->steps && !d->evals) fputs("<p>metrics.jsonl holds no step yet.</p>\n", f);
    cli_series loss[2] = {{"training loss", d->loss.x, d->loss.y, d->loss.n},
                          {"validation loss", d->vloss.x, d->vloss.y, d->vloss.n}};
    if (has_finite(&d->loss) || has_finite(&d->vloss))
        chart(f, "chart-loss", "loss", "loss", loss, 2);
    cli_series lr = {"learning rate", d->lr.x, d->lr.y, d->lr.n};
    if (has_finite(&d->lr)) chart(f, "chart-lr", "learning rate", "learning rate", &lr, 1);
    cli_series gn = {"gradient norm", d->grad.x, d->grad.y, d->grad.n};
    if (has_finite(&d->grad))
        chart(f, "chart-grad-norm", "gradient norm (before clipping)", "L2 norm", &gn, 1);
    cli_series tp = {"tokens/s", d->tps.x, d->tps.y, d->tps.n};
    if (has_finite(&d->tps)) chart(f, "chart-throughput", "throughput", "tokens/s", &tp, 1);
    cli_series val[2] = {{"validation accuracy", d->vacc.x, d->vacc.y, d->vacc.n},
                         {"validation macro-F1", d->vf1.x, d->vf1.y, d->vf1.n}};
    if (has_finite(&d->vacc) || has_finite(&d->vf1))
        chart(f, "chart-val", "validation scores", "score", val, 2);
    cli_series ppl = {"validation perplexity", d->vppl.x, d->vppl.y, d->vppl.n};
    if (has_finite(&d->vppl))
        chart(f, "chart-val-ppl", "validation perplexity", "perplexity", &ppl, 1);
    fputs("</section>\n", f);

    config_table(f, p->run);
    classification(f, p->run, "", "Validation set (best model)");
    classification(f, p->run, "test_", "Test set (best model)");
    fprintf(f, "<footer><p>Written by <code>qkv report</code> (qkv %s) from ", qkv_version());
    cli_put_escaped(f, p->run);
    fputs("/metrics.jsonl.</p></footer>\n", f);
    fputs("</body>\n</html>\n", f);
}

int cmd_report(int argc, char **argv) {
    const char *run = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--out") == 0) {
            if (i + 1 >= argc) return cli_usage_error("report", "--out needs a file");
            out = argv[++i];
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return cli_usage_error("report", "unknown option '%s'", argv[i]);
        } else if (run) {
            return cli_usage_error("report", "one run directory, not '%s' too", argv[i]);
        } else {
            run = argv[i];
        }
    }
    if (!run) return cli_usage_error("report", "needs the run directory RUN");
    struct stat st;
    if (stat(run, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "qkv report: %s: not a directory\n", run);
        return EXIT_USAGE;
    }
    char metrics[4200], def[4200];
    if (snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", run) >= (int)sizeof metrics)
        return cli_usage_error("report", "the path is too long");
    snprintf(def, sizeof def, "%s/report.html", run);
    if (!out) out = def;
    run_data d;
    memset(&d, 0, sizeof d);
    int rc = read_metrics(metrics, &d);
    if (!rc) {
        page p = {run, &d};
        if (atomic_write(out, write_page, &p) != 0) {
            fprintf(stderr, "qkv report: cannot write %s: %s\n", out, strerror(errno));
            rc = EXIT_FAIL;
        } else {
            fprintf(stderr, "qkv report: wrote %s (%lld steps, %lld validations)\n", out,
                    (long long)d.steps, (long long)d.evals);
        }
    }
    run_free(&d);
    return rc;
}
