/* plot.h — standalone SVG line charts for the command line (train / validation loss curves).
 *
 * No dependency and no fonts to ship: the SVG names a generic sans-serif font and any browser
 * or image viewer draws it. */
#ifndef QKV_CLI_PLOT_H
#define QKV_CLI_PLOT_H

#include <stdint.h>

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

#endif
