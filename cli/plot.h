/* plot.h — standalone SVG charts for the command line: line charts (train / validation loss
 * curves) and confusion matrices (qkv evaluate).
 *
 * No dependency and no fonts to ship: the SVG names a generic sans-serif font and any browser
 * or image viewer draws it. */
#ifndef QKV_CLI_PLOT_H
#define QKV_CLI_PLOT_H

#include <stdint.h>
#include <stdio.h>

/* One line: points (x[i], y[i]) for i in [0, n). x may be NULL (then x[i] = i). Points with a
 * non-finite coordinate are skipped and break the line there; a point with no finite
 * neighbour is drawn as a dot. */
typedef struct cli_series {
    const char *name; /* legend text (NULL or "": "series K") */
    const double *x;
    const double *y;
    int64_t n;
} cli_series;

/* Writes a line chart of series[0..n_series) to path: linear axes fitted to the finite points
 * with round tick values, a grid, a legend, one colour per series (8 colours, then repeated),
 * title and axis labels (may be NULL). Degenerate data (no points, one point, a constant) gets
 * a unit-wide range around it. The file is written to a temporary name, fsynced and renamed,
 * so path is never half written. Returns 0, or -1 with errno set (EINVAL for bad arguments). */
int cli_plot_svg(const char *path, const char *title, const char *xlabel, const char *ylabel,
                 const cli_series *series, int n_series);

/* The same chart as one <svg> element written to f (e.g. inline in an HTML page). 0, or -1 with
 * errno EINVAL for bad arguments. */
int cli_plot_svg_to(FILE *f, const char *title, const char *xlabel, const char *ylabel,
                    const cli_series *series, int n_series);

/* s with & < > " ' escaped and control characters other than tab and newline as spaces: safe
 * as XML / HTML text and attribute values. NULL writes nothing. */
void cli_put_escaped(FILE *f, const char *s);

/* Points collected for a line chart as they come (x and y grow together). */
typedef struct cli_curve {
    double *x, *y;
    int64_t n, cap;
} cli_curve;
/* Appends (x, y); a point that cannot be stored (out of memory) is dropped. */
void cli_curve_add(cli_curve *c, double x, double y);
void cli_curve_free(cli_curve *c);

/* The most classes cli_plot_confusion_svg draws (the file grows as the square). */
#define CLI_CONFUSION_MAX 200

/* Writes a confusion matrix of n classes to path: counts[i*n + j] samples of true class i
 * predicted as j (qkv_cls_metrics.confusion), one square cell each, shaded by the fraction of
 * row i it holds (white 0 to dark blue 1, with a scale), the count written in it when the cell
 * is large enough (cells shrink from 72 to 14 px as n grows; about 2 to 40 classes read well),
 * a tooltip per cell, class names (NULL: the numbers; cut to 24 code points) on the left and,
 * turned 45 degrees, under the grid, axis titles and an optional title. Written atomically as
 * cli_plot_svg. Returns 0, or -1 with errno set (EINVAL: NULL path or counts, n outside
 * [1, CLI_CONFUSION_MAX], a negative count). */
int cli_plot_confusion_svg(const char *path, const char *title, const char *const *names,
                           const int64_t *counts, int64_t n);

#endif
