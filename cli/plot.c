/* plot.c — SVG line charts and confusion matrices (see plot.h).
 *
 * Line charts: a fixed 860 x 520 canvas, the plot area on the left, the legend on the right. Axis
 * ranges are widened to multiples of a "nice" step (1, 2 or 5 times a power of ten, four to
 * eight intervals per axis), so tick labels are round numbers; the number of ticks is capped so
 * that no input, however extreme, can make the tick loop run long. Confusion matrices: a
 * canvas sized to the grid of square cells and the longest class name. Both are written to a
 * temporary file and renamed (atomic_write, atomic.h). */
#include "plot.h"
#include "atomic.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define W 860
#define H 520
#define PX0 80.0  /* plot area: left */
#define PX1 660.0 /* right */
#define PY0 50.0  /* top */
#define PY1 450.0 /* bottom */
#define MAX_TICKS 40

static const char *const colours[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728",
                                      "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"};

typedef struct axis {
    double lo, hi, step; /* lo and hi are multiples of step when step > 0 */
} axis;

void cli_put_escaped(FILE *f, const char *s) {
    for (; s && *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&apos;", f); break;
        default:
            /* control characters are not allowed in XML 1.0 text */
            if ((unsigned char)*s < 0x20 && *s != '\t' && *s != '\n')
                fputc(' ', f);
            else
                fputc(*s, f);
        }
    }
}

static double px(const cli_series *s, int64_t i) { return s->x ? s->x[i] : (double)i; }

static int finite_point(const cli_series *s, int64_t i) {
    return isfinite(px(s, i)) && isfinite(s->y[i]);
}

/* 1, 2 or 5 times a power of ten, near span / 5: 4 to 8 intervals. */
static double nice_step(double span) {
    double raw = span / 5, p = pow(10, floor(log10(raw))), m = raw / p;
    return (m < 1.5 ? 1 : m < 3 ? 2 : m < 7 ? 5 : 10) * p;
}

/* Range [mn, mx] of the data (mn > mx: no data) to a displayed axis. */
static axis fit_axis(double mn, double mx) {
    axis a;
    if (mn > mx) { /* no finite point */
        mn = 0;
        mx = 1;
    }
    if (mx - mn <= fabs(mx) * 1e-12 || mx == mn) { /* a constant: a unit-wide range around it */
        double half = mn == 0 ? 0.5 : fabs(mn) * 0.1;
        mn -= half;
        mx += half;
    }
    a.lo = mn;
    a.hi = mx;
    a.step = 0;
    double span = mx - mn;
    if (!isfinite(span) || span <= 0) return a; /* extreme values: no round ticks */
    double step = nice_step(span);
    if (!(step > 0) || !isfinite(step)) return a;
    double lo = floor(mn / step) * step, hi = ceil(mx / step) * step;
    if (hi > lo && (hi - lo) / step <= MAX_TICKS) {
        a.lo = lo;
        a.hi = hi;
        a.step = step;
    }
    return a;
}

static double map(const axis *a, double v, double p0, double p1) {
    return p0 + (v - a->lo) / (a->hi - a->lo) * (p1 - p0);
}

/* A tick label with as many decimals as the step needs; never "-0". */
static void tick_label(char *buf, size_t cap, double v, double step) {
    if (step > 0 && fabs(v) < step * 1e-9) v = 0;
    double mag = fmax(fabs(v), step);
    if (step > 0 && mag < 1e7 && step >= 1e-6) {
        int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
        snprintf(buf, cap, "%.*f", dec, v);
    } else {
        snprintf(buf, cap, "%.4g", v);
    }
}

/* The ticks of an axis: multiples of step from lo to hi, or just the two ends. */
static int ticks(const axis *a, double *out) {
    if (a->step <= 0) {
        out[0] = a->lo;
        out[1] = a->hi;
        return 2;
    }
    int n = (int)floor((a->hi - a->lo) / a->step + 0.5) + 1;
    if (n > MAX_TICKS + 1) n = MAX_TICKS + 1;
    for (int i = 0; i < n; i++) out[i] = a->lo + a->step * i;
    return n;
}

static void draw(FILE *f, const char *title, const char *xlabel, const char *ylabel,
                 const cli_series *series, int n_series) {
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
    for (int k = 0; k < n_series; k++)
        for (int64_t i = 0; i < series[k].n; i++) {
            if (!finite_point(&series[k], i)) continue;
            double x = px(&series[k], i), y = series[k].y[i];
            xmin = fmin(xmin, x);
            xmax = fmax(xmax, x);
            ymin = fmin(ymin, y);
            ymax = fmax(ymax, y);
        }
    axis ax = fit_axis(xmin, xmax), ay = fit_axis(ymin, ymax);

    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">\n",
            W, H, W, H);
    fprintf(f, "<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"white\"/>\n", W, H);
    if (title && *title) {
        fprintf(f, "<text x=\"%.1f\" y=\"28\" text-anchor=\"middle\" font-size=\"16\">",
                (PX0 + PX1) / 2);
        cli_put_escaped(f, title);
        fputs("</text>\n", f);
    }
    double tx[MAX_TICKS + 2], ty[MAX_TICKS + 2];
    char lab[64];
    int ntx = ticks(&ax, tx), nty = ticks(&ay, ty);
    fputs("<g stroke=\"#e0e0e0\" stroke-width=\"1\">\n", f);
    for (int i = 0; i < ntx; i++) {
        double x = map(&ax, tx[i], PX0, PX1);
        fprintf(f, "<line x1=\"%.2f\" y1=\"%.1f\" x2=\"%.2f\" y2=\"%.1f\"/>\n", x, PY0, x, PY1);
    }
    for (int i = 0; i < nty; i++) {
        double y = map(&ay, ty[i], PY1, PY0);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.2f\" x2=\"%.1f\" y2=\"%.2f\"/>\n", PX0, y, PX1, y);
    }
    fputs("</g>\n", f);
    fprintf(f,
            "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
            "stroke=\"black\"/>\n",
            PX0, PY0, PX1 - PX0, PY1 - PY0);
    for (int i = 0; i < ntx; i++) {
        tick_label(lab, sizeof lab, tx[i], ax.step);
        fprintf(f, "<text x=\"%.2f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n",
                map(&ax, tx[i], PX0, PX1), PY1 + 18, lab);
    }
    for (int i = 0; i < nty; i++) {
        tick_label(lab, sizeof lab, ty[i], ay.step);
        fprintf(f, "<text x=\"%.1f\" y=\"%.2f\" text-anchor=\"end\">%s</text>\n", PX0 - 6,
                map(&ay, ty[i], PY1, PY0) + 4, lab);
    }
    if (xlabel && *xlabel) {
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", (PX0 + PX1) / 2,
                PY1 + 42);
        cli_put_escaped(f, xlabel);
        fputs("</text>\n", f);
    }
    if (ylabel && *ylabel) {
        double cy = (PY0 + PY1) / 2;
        fprintf(f,
                "<text x=\"20\" y=\"%.1f\" text-anchor=\"middle\" "
                "transform=\"rotate(-90 20 %.1f)\">",
                cy, cy);
        cli_put_escaped(f, ylabel);
        fputs("</text>\n", f);
    }
    /* the lines: one polyline per run of finite points, a dot for a lone point */
    for (int k = 0; k < n_series; k++) {
        const cli_series *s = &series[k];
        const char *c = colours[k % (int)(sizeof colours / sizeof colours[0])];
        int64_t i = 0;
        while (i < s->n) {
            if (!finite_point(s, i)) {
                i++;
                continue;
            }
            int64_t j = i;
            while (j < s->n && finite_point(s, j)) j++;
            if (j - i == 1) {
                fprintf(f, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"2.5\" fill=\"%s\"/>\n",
                        map(&ax, px(s, i), PX0, PX1), map(&ay, s->y[i], PY1, PY0), c);
            } else {
                fprintf(f,
                        "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" "
                        "stroke-linejoin=\"round\" points=\"",
                        c);
                for (int64_t m = i; m < j; m++)
                    fprintf(f, "%s%.2f,%.2f", m > i ? " " : "", map(&ax, px(s, m), PX0, PX1),
                            map(&ay, s->y[m], PY1, PY0));
                fputs("\"/>\n", f);
            }
            i = j;
        }
    }
    /* legend */
    for (int k = 0; k < n_series; k++) {
        const char *c = colours[k % (int)(sizeof colours / sizeof colours[0])];
        double y = PY0 + 10 + 20.0 * k;
        fprintf(f,
                "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                "stroke-width=\"3\"/>\n",
                PX1 + 20, y, PX1 + 44, y, c);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">", PX1 + 50, y + 4);
        if (series[k].name && *series[k].name)
            cli_put_escaped(f, series[k].name);
        else
            fprintf(f, "series %d", k + 1);
        fputs("</text>\n", f);
    }
    fputs("</svg>\n", f);
}

typedef struct line_chart {
    const char *title, *xlabel, *ylabel;
    const cli_series *series;
    int n_series;
} line_chart;

static void draw_line_chart(FILE *f, const void *ctx) {
    const line_chart *c = ctx;
    draw(f, c->title, c->xlabel, c->ylabel, c->series, c->n_series);
}

static int bad_series(const cli_series *series, int n_series) {
    if (n_series < 0 || (n_series > 0 && !series)) return 1;
    for (int k = 0; k < n_series; k++)
        if (series[k].n < 0 || (series[k].n > 0 && !series[k].y)) return 1;
    return 0;
}

int cli_plot_svg(const char *path, const char *title, const char *xlabel, const char *ylabel,
                 const cli_series *series, int n_series) {
    if (!path || bad_series(series, n_series)) {
        errno = EINVAL;
        return -1;
    }
    line_chart c = {title, xlabel, ylabel, series, n_series};
    return atomic_write(path, draw_line_chart, &c);
}

int cli_plot_svg_to(FILE *f, const char *title, const char *xlabel, const char *ylabel,
                    const cli_series *series, int n_series) {
    if (!f || bad_series(series, n_series)) {
        errno = EINVAL;
        return -1;
    }
    draw(f, title, xlabel, ylabel, series, n_series);
    return 0;
}

/* ---------------------------------------------------------------- confusion matrix */

/* Cells are CELL_MAX px for a few classes, shrinking to keep the grid near GRID px, never below
 * CELL_MIN; names longer than NAME_MAX code points are cut (the whole name is the tooltip). */
#define GRID 520.0
#define CELL_MAX 72.0
#define CELL_MIN 14.0
#define NAME_MAX 24
#define CHAR_W 7.0 /* a rough width of one 12px sans-serif character */

typedef struct confusion_chart {
    const char *title;
    const char *const *names;
    const int64_t *counts;
    int64_t n;
} confusion_chart;

static int64_t codepoints(const char *s) {
    int64_t n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

#define ELLIPSIS "\xe2\x80\xa6" /* U+2026 in UTF-8 */
#define ARROW " \xe2\x86\x92 "  /* U+2192 */

/* Label i in full: its name or its number. */
static void put_name(FILE *f, const confusion_chart *c, int64_t i) {
    if (c->names && c->names[i])
        cli_put_escaped(f, c->names[i]);
    else
        fprintf(f, "%lld", (long long)i);
}

/* Label i for an axis: a name longer than NAME_MAX code points is cut, with an ellipsis and
 * the whole name as its tooltip. */
static void put_label(FILE *f, const confusion_chart *c, int64_t i) {
    const char *s = c->names ? c->names[i] : NULL;
    if (!s || codepoints(s) <= NAME_MAX) {
        put_name(f, c, i);
        return;
    }
    const char *e = s;
    for (int k = 0; k < NAME_MAX - 1 && *e; k++) /* past NAME_MAX - 1 code points */
        do e++;
        while (((unsigned char)*e & 0xC0) == 0x80);
    for (const char *p = s; p < e; p++) { /* the kept bytes, escaped as put_escaped does */
        char one[2] = {*p, 0};
        cli_put_escaped(f, one);
    }
    fputs(ELLIPSIS "<title>", f);
    cli_put_escaped(f, s);
    fputs("</title>", f);
}

static double label_width(const confusion_chart *c) {
    int64_t w = 2;
    for (int64_t i = 0; i < c->n; i++) {
        int64_t l = c->names && c->names[i] ? codepoints(c->names[i]) : 6;
        w = l > w ? l : w;
    }
    return (double)(w > NAME_MAX ? NAME_MAX : w) * CHAR_W;
}

/* White to dark blue (matplotlib's "Blues" ends) by v in [0, 1]. */
static void shade(double v, int rgb[3]) {
    static const int lo[3] = {247, 251, 255}, hi[3] = {8, 48, 107};
    for (int k = 0; k < 3; k++) rgb[k] = (int)(lo[k] + (hi[k] - lo[k]) * v + 0.5);
}

static void draw_confusion(FILE *f, const void *ctx) {
    const confusion_chart *c = ctx;
    int64_t n = c->n;
    double cell = GRID / (double)n;
    cell = cell > CELL_MAX ? CELL_MAX : cell < CELL_MIN ? CELL_MIN : cell;
    double lw = label_width(c), grid = cell * (double)n;
    double x0 = 50 + lw, y0 = 60;               /* top-left of the grid */
    double bottom = y0 + grid + lw * 0.71 + 50; /* column names run down at 45 degrees */
    double width = x0 + grid + 110, height = bottom;
    if (width < 360) width = 360;
    double font = cell >= 40 ? 13 : cell >= 24 ? 11 : 8;
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
            "viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\" font-size=\"12\">\n",
            width, height, width, height);
    fprintf(f, "<rect x=\"0\" y=\"0\" width=\"%.0f\" height=\"%.0f\" fill=\"white\"/>\n", width,
            height);
    fputs("<defs><linearGradient id=\"scale\" x1=\"0\" y1=\"1\" x2=\"0\" y2=\"0\">"
          "<stop offset=\"0\" stop-color=\"rgb(247,251,255)\"/>"
          "<stop offset=\"1\" stop-color=\"rgb(8,48,107)\"/></linearGradient></defs>\n",
          f);
    if (c->title && *c->title) {
        fprintf(f, "<text x=\"%.1f\" y=\"28\" text-anchor=\"middle\" font-size=\"16\">",
                x0 + grid / 2);
        cli_put_escaped(f, c->title);
        fputs("</text>\n", f);
    }
    /* cells: shaded by the fraction of the true class's samples (row-normalized) */
    for (int64_t i = 0; i < n; i++) {
        int64_t row = 0;
        for (int64_t j = 0; j < n; j++) row += c->counts[i * n + j];
        for (int64_t j = 0; j < n; j++) {
            int64_t k = c->counts[i * n + j];
            double v = row > 0 ? (double)k / (double)row : 0;
            int rgb[3];
            shade(v, rgb);
            double x = x0 + cell * (double)j, y = y0 + cell * (double)i;
            fprintf(f,
                    "<rect class=\"cell\" x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" "
                    "fill=\"rgb(%d,%d,%d)\" stroke=\"white\"><title>",
                    x, y, cell, cell, rgb[0], rgb[1], rgb[2]);
            put_name(f, c, i);
            fputs(ARROW, f);
            put_name(f, c, j);
            fprintf(f, ": %lld (%.1f%% of the row)</title></rect>\n", (long long)k, 100 * v);
            if (cell >= 18)
                fprintf(f,
                        "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"middle\" font-size=\"%.0f\" "
                        "fill=\"%s\">%lld</text>\n",
                        x + cell / 2, y + cell / 2 + font * 0.35, font, v > 0.5 ? "white" : "black",
                        (long long)k);
        }
    }
    fprintf(f,
            "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"none\" "
            "stroke=\"#444\"/>\n",
            x0, y0, grid, grid);
    /* row names on the left, column names under the grid turned 45 degrees */
    for (int64_t i = 0; i < n; i++) {
        fprintf(f, "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"end\">", x0 - 6,
                y0 + cell * ((double)i + 0.5) + 4);
        put_label(f, c, i);
        fputs("</text>\n", f);
    }
    for (int64_t j = 0; j < n; j++) {
        double x = x0 + cell * ((double)j + 0.5), y = y0 + grid + 12;
        fprintf(f,
                "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"end\" "
                "transform=\"rotate(-45 %.2f %.2f)\">",
                x, y, x, y);
        put_label(f, c, j);
        fputs("</text>\n", f);
    }
    fprintf(f, "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"middle\">predicted label</text>\n",
            x0 + grid / 2, bottom - 14);
    double cy = y0 + grid / 2;
    fprintf(f,
            "<text x=\"18\" y=\"%.2f\" text-anchor=\"middle\" "
            "transform=\"rotate(-90 18 %.2f)\">true label</text>\n",
            cy, cy);
    /* the colour scale */
    double sx = x0 + grid + 30, sh = grid < 200 ? grid : 200;
    fprintf(f,
            "<rect x=\"%.2f\" y=\"%.2f\" width=\"14\" height=\"%.2f\" fill=\"url(#scale)\" "
            "stroke=\"#444\"/>\n",
            sx, y0, sh);
    fprintf(f, "<text x=\"%.2f\" y=\"%.2f\">1</text>\n", sx + 20, y0 + 9);
    fprintf(f, "<text x=\"%.2f\" y=\"%.2f\">0</text>\n", sx + 20, y0 + sh);
    fprintf(f, "<text x=\"%.2f\" y=\"%.2f\" font-size=\"10\">of row</text>\n", sx - 6,
            y0 + sh + 16);
    fputs("</svg>\n", f);
}

int cli_plot_confusion_svg(const char *path, const char *title, const char *const *names,
                           const int64_t *counts, int64_t n) {
    if (!path || !counts || n < 1 || n > CLI_CONFUSION_MAX) {
        errno = EINVAL;
        return -1;
    }
    for (int64_t i = 0; i < n * n; i++)
        if (counts[i] < 0) {
            errno = EINVAL;
            return -1;
        }
    confusion_chart c = {title, names, counts, n};
    return atomic_write(path, draw_confusion, &c);
}

void cli_curve_add(cli_curve *c, double x, double y) {
    if (c->n == c->cap) {
        int64_t cap = c->cap ? 2 * c->cap : 256;
        double *nx = realloc(c->x, (size_t)cap * sizeof *nx);
        if (!nx) return;
        c->x = nx;
        double *ny = realloc(c->y, (size_t)cap * sizeof *ny);
        if (!ny) return;
        c->y = ny;
        c->cap = cap;
    }
    c->x[c->n] = x;
    c->y[c->n++] = y;
}

void cli_curve_free(cli_curve *c) {
    free(c->x);
    free(c->y);
    c->x = c->y = NULL;
    c->n = c->cap = 0;
}
