/* plot.c — SVG line charts (see plot.h).
 *
 * Layout: a fixed 860 x 520 canvas, the plot area on the left, the legend on the right. Axis
 * ranges are widened to multiples of a "nice" step (1, 2 or 5 times a power of ten, four to
 * eight intervals per axis), so tick labels are round numbers; the number of ticks is capped so
 * that no input, however extreme, can make the tick loop run long. */
#include "plot.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

static void put_escaped(FILE *f, const char *s) {
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
        put_escaped(f, title);
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
        put_escaped(f, xlabel);
        fputs("</text>\n", f);
    }
    if (ylabel && *ylabel) {
        double cy = (PY0 + PY1) / 2;
        fprintf(f,
                "<text x=\"20\" y=\"%.1f\" text-anchor=\"middle\" "
                "transform=\"rotate(-90 20 %.1f)\">",
                cy, cy);
        put_escaped(f, ylabel);
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
            put_escaped(f, series[k].name);
        else
            fprintf(f, "series %d", k + 1);
        fputs("</text>\n", f);
    }
    fputs("</svg>\n", f);
}

int cli_plot_svg(const char *path, const char *title, const char *xlabel, const char *ylabel,
                 const cli_series *series, int n_series) {
    if (!path || n_series < 0 || (n_series > 0 && !series)) {
        errno = EINVAL;
        return -1;
    }
    for (int k = 0; k < n_series; k++)
        if (series[k].n < 0 || (series[k].n > 0 && !series[k].y)) {
            errno = EINVAL;
            return -1;
        }
    size_t cap = strlen(path) + 32;
    char *tmp = malloc(cap);
    if (!tmp) return -1;
    snprintf(tmp, cap, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        free(tmp);
        return -1;
    }
    draw(f, title, xlabel, ylabel, series, n_series);
    int err = 0;
    errno = 0;
    if (fflush(f) != 0 || ferror(f) || fsync(fileno(f)) != 0) err = errno ? errno : EIO;
    if (fclose(f) != 0 && !err) err = errno;
    if (!err && rename(tmp, path) != 0) err = errno;
    if (err) unlink(tmp);
    free(tmp);
    if (err) {
        errno = err;
        return -1;
    }
    return 0;
}
