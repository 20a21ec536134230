/* heatmap.h — PNG heatmaps of attention maps for `qkv attention`, drawn with cairo (text
 * through cairo's font rendering, PNG through cairo's writer) and written atomically
 * (atomic.h): one map with its token labels, or a grid of maps (the heads of a layer). */
#ifndef QKV_CLI_HEATMAP_H
#define QKV_CLI_HEATMAP_H

#include <stdint.h>

/* One map: v [rows, cols], row-major, shaded on a fixed scale [0, vmax] (values are clamped
 * into it; NaN is drawn grey). Labels (UTF-8; invalid bytes are shown as U+FFFD, long ones
 * cut) may be NULL. */
typedef struct cli_heat {
    const float *v;
    int64_t rows, cols;
    const char *const *row_labels; /* [rows] down the left side, or NULL */
    const char *const *col_labels; /* [cols] along the top, turned, or NULL */
    const char *title;             /* above the map, or NULL */
    float vmax;                    /* top of the colour scale; <= 0 means 1 */
} cli_heat;

/* The colour of x in [0, 1] on the scale (viridis, 9 stops linearly interpolated): r, g, b in
 * [0, 1]. Shared with the HTML page so both show the same colours. */
void cli_heat_colour(double x, double rgb[3]);
/* The scale's stops as "#rrggbb" strings, for the page: writes n <= 9 of them, returns 9. */
int cli_heat_stops(char out[][8], int n);

/* A single map with its labels, a colour bar and the title. 0, or -1 with errno set (EINVAL
 * for bad arguments or a map over 4096 cells a side, EIO when cairo fails). */
int cli_heatmap_png(const char *path, const cli_heat *h);
/* n maps side by side in rows of about √n, each with its title, no token labels, one colour
 * bar, a title over all. Same returns as cli_heatmap_png. */
int cli_heatmap_grid_png(const char *path, const char *title, const cli_heat *maps, int n);

/* A saliency strip: the tokens left to right (labels turned along the top) and n_rows rows of
 * one value per token, each shaded on its own diverging scale (red > 0, blue < 0, white 0;
 * full colour at the row's largest |value|, printed at its right), the value written in each
 * cell when it fits. */
typedef struct cli_strip {
    const char *title, *subtitle; /* above the strip; either may be NULL */
    const char *const *tokens;    /* [T] UTF-8 */
    int64_t T;                    /* 1..4096 */
    const float *const *rows;     /* [n_rows][T] */
    const char *const *row_names; /* [n_rows] */
    int n_rows;                   /* 1..8 */
} cli_strip;
/* Same returns as cli_heatmap_png. */
int cli_saliency_png(const char *path, const cli_strip *s);

/* Releases cairo's caches (fonts) at the end of the command, so leak checkers see only ours. */
void cli_heatmap_cleanup(void);

#endif
