/* heatmap.c — attention heatmaps as PNG through cairo (see heatmap.h).
 *
 * Layout of one map: title and a line saying what the axes are, the key labels turned along
 * the top, the query labels down the left, square cells, a colour bar on the right. Labels are
 * drawn every k-th cell when cells get smaller than the font. Text goes through cairo's "toy"
 * font API with a sans-serif face (fontconfig picks DejaVu Sans or whatever is installed); the
 * image is written by cairo's PNG writer into a temporary file renamed over the target
 * (atomic.h). */
#include "heatmap.h"

#include "atomic.h"

#include <cairo.h>
#include <errno.h>
#include <fontconfig/fontconfig.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* viridis at 0, 1/8, ..., 1 (matplotlib's table, rounded to 8 bits) */
static const unsigned char stops[9][3] = {{68, 1, 84},    {71, 44, 122},  {59, 81, 139},
                                          {44, 113, 142}, {33, 144, 141}, {39, 173, 129},
                                          {92, 200, 99},  {170, 220, 50}, {253, 231, 37}};

void cli_heat_colour(double x, double rgb[3]) {
    if (!(x >= 0)) x = 0; /* NaN too */
    if (x > 1) x = 1;
    double f = x * 8;
    int i = (int)f;
    if (i > 7) i = 7;
    f -= i;
    for (int c = 0; c < 3; c++) rgb[c] = ((1 - f) * stops[i][c] + f * stops[i + 1][c]) / 255.0;
}

int cli_heat_stops(char out[][8], int n) {
    for (int i = 0; i < n && i < 9; i++)
        snprintf(out[i], 8, "#%02x%02x%02x", stops[i][0], stops[i][1], stops[i][2]);
    return 9;
}

enum { MAX_SIDE = 4096, LABEL_CP = 20 };

/* label cut to LABEL_CP code points (with "…"), into buf (valid UTF-8 in, valid out) */
static const char *cut(const char *s, char *buf, size_t cap) {
    size_t i = 0, cp = 0;
    while (s[i] && cp < LABEL_CP) {
        i++;
        while ((s[i] & 0xc0) == 0x80) i++;
        cp++;
    }
    if (!s[i]) return s;
    if (i + 4 > cap) i = 0;
    memcpy(buf, s, i);
    memcpy(buf + i, "\xe2\x80\xa6", 4);
    return buf;
}

static double text_width(cairo_t *cr, const char *s) {
    char b[128];
    cairo_text_extents_t e;
    cairo_text_extents(cr, cut(s, b, sizeof b), &e);
    return e.x_advance;
}

static void set_font(cairo_t *cr, double size, int bold) {
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL,
                           bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, size);
}

/* The cells of h at (x, y), cell px each. */
static void draw_cells(cairo_t *cr, const cli_heat *h, double x, double y, double cell) {
    const double vmax = h->vmax > 0 ? h->vmax : 1;
    for (int64_t i = 0; i < h->rows; i++)
        for (int64_t j = 0; j < h->cols; j++) {
            const float v = h->v[i * h->cols + j];
            double rgb[3] = {0.6, 0.6, 0.6};
            if (!isnan(v)) cli_heat_colour(v / vmax, rgb);
            cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
            cairo_rectangle(cr, x + (double)j * cell, y + (double)i * cell, cell + 0.5, cell + 0.5);
            cairo_fill(cr);
        }
}

/* A vertical colour bar of height ht at (x, y) from vmax (top) to 0, with three ticks. */
static void draw_bar(cairo_t *cr, double x, double y, double ht, float vmax) {
    if (!(vmax > 0)) vmax = 1;
    for (int k = 0; k < (int)ht; k++) {
        double rgb[3];
        cli_heat_colour(1.0 - (double)k / ht, rgb);
        cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
        cairo_rectangle(cr, x, y + k, 14, 1.5);
        cairo_fill(cr);
    }
    set_font(cr, 10, 0);
    cairo_set_source_rgb(cr, 0.15, 0.15, 0.15);
    for (int t = 0; t <= 2; t++) {
        char s[32];
        snprintf(s, sizeof s, "%.2g", vmax * (1.0 - t / 2.0));
        cairo_move_to(cr, x + 18, y + ht * t / 2.0 + 4);
        cairo_show_text(cr, s);
    }
}

static cairo_status_t png_write(void *closure, const unsigned char *data, unsigned int len) {
    return fwrite(data, 1, len, closure) == len ? CAIRO_STATUS_SUCCESS : CAIRO_STATUS_WRITE_ERROR;
}

/* The surface into path atomically; frees the surface. */
static int save(cairo_surface_t *sf, const char *path) {
    atomic_file a;
    if (cairo_surface_status(sf) != CAIRO_STATUS_SUCCESS || atomic_open(&a, path) != 0) {
        int e = cairo_surface_status(sf) != CAIRO_STATUS_SUCCESS ? EIO : errno;
        cairo_surface_destroy(sf);
        errno = e;
        return -1;
    }
    cairo_status_t cs = cairo_surface_write_to_png_stream(sf, png_write, a.f);
    cairo_surface_destroy(sf);
    if (cs != CAIRO_STATUS_SUCCESS) {
        atomic_abort(&a);
        errno = EIO;
        return -1;
    }
    return atomic_commit(&a);
}

/* A drawing context's failure (an invalid string, no memory) as -1 / EIO. */
static int check(cairo_t *cr) {
    cairo_status_t s = cairo_status(cr);
    cairo_destroy(cr);
    if (s == CAIRO_STATUS_SUCCESS) return 0;
    errno = EIO;
    return -1;
}

static int valid(const cli_heat *h) {
    return h && h->v && h->rows >= 1 && h->cols >= 1 && h->rows <= MAX_SIDE && h->cols <= MAX_SIDE;
}

/* A drawing context on sf: white, the title (bold) and a grey line under it (either NULL). */
static cairo_t *begin_page(cairo_surface_t *sf, const char *title, const char *subtitle) {
    cairo_t *cr = cairo_create(sf);
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    set_font(cr, 14, 1);
    cairo_move_to(cr, 12, 20);
    if (title) cairo_show_text(cr, title);
    set_font(cr, 11, 0);
    cairo_set_source_rgb(cr, 0.35, 0.35, 0.35);
    cairo_move_to(cr, 12, 38);
    if (subtitle) cairo_show_text(cr, subtitle);
    return cr;
}

int cli_heatmap_png(const char *path, const cli_heat *h) {
    if (!path || !valid(h)) {
        errno = EINVAL;
        return -1;
    }
    const int64_t side = h->rows > h->cols ? h->rows : h->cols;
    double cell = 640.0 / (double)side;
    cell = cell < 4 ? 4 : cell > 32 ? 32 : floor(cell);
    const double font = cell - 2 < 7 ? 7 : cell - 2 > 12 ? 12 : cell - 2;
    const int64_t step = (int64_t)ceil((font + 1) / cell); /* label every step-th cell */
    /* measure the labels on a scratch surface */
    cairo_surface_t *probe = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, 1, 1);
    cairo_t *cr = cairo_create(probe);
    set_font(cr, font, 0);
    double wrow = 0, wcol = 0;
    for (int64_t i = 0; h->row_labels && i < h->rows; i++) {
        double w = text_width(cr, h->row_labels[i]);
        wrow = w > wrow ? w : wrow;
    }
    for (int64_t j = 0; h->col_labels && j < h->cols; j++) {
        double w = text_width(cr, h->col_labels[j]);
        wcol = w > wcol ? w : wcol;
    }
    /* a narrow map (few key columns) still shows its whole title and subtitle */
    static const char sub[] = "rows: query token (who looks)   columns: key token (looked at)";
    set_font(cr, 14, 1);
    double wtext = h->title ? text_width(cr, h->title) : 0;
    set_font(cr, 11, 0);
    wtext = fmax(wtext, text_width(cr, sub));
    cairo_destroy(cr);
    cairo_surface_destroy(probe);
    const double left = 12 + wrow + 6, top = 52 + wcol + 6;
    const double gw = cell * (double)h->cols, gh = cell * (double)h->rows;
    const int W = (int)ceil(fmax(left + gw + 70, 12 + wtext + 12)),
              Ht = (int)ceil(top + (gh > 120 ? gh : 120) + 16);
    cairo_surface_t *sf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, W, Ht);
    cr = begin_page(sf, h->title, sub);
    set_font(cr, font, 0);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    char b[128];
    for (int64_t i = 0; h->row_labels && i < h->rows; i += step) {
        const char *s = cut(h->row_labels[i], b, sizeof b);
        cairo_move_to(cr, left - 6 - text_width(cr, s), top + ((double)i + 0.5) * cell + font / 3);
        cairo_show_text(cr, s);
    }
    for (int64_t j = 0; h->col_labels && j < h->cols; j += step) {
        cairo_save(cr);
        cairo_move_to(cr, left + ((double)j + 0.5) * cell + font / 3, top - 6);
        cairo_rotate(cr, -M_PI / 2);
        cairo_show_text(cr, cut(h->col_labels[j], b, sizeof b));
        cairo_restore(cr);
    }
    draw_cells(cr, h, left, top, cell);
    draw_bar(cr, left + gw + 16, top, gh > 120 ? gh : 120, h->vmax);
    int rc = check(cr);
    if (rc != 0) {
        cairo_surface_destroy(sf);
        return rc;
    }
    return save(sf, path);
}

int cli_heatmap_grid_png(const char *path, const char *title, const cli_heat *maps, int n) {
    if (!path || !maps || n < 1) {
        errno = EINVAL;
        return -1;
    }
    int64_t side = 1;
    for (int k = 0; k < n; k++) {
        if (!valid(&maps[k])) {
            errno = EINVAL;
            return -1;
        }
        side = maps[k].rows > side ? maps[k].rows : side;
        side = maps[k].cols > side ? maps[k].cols : side;
    }
    const int cols = (int)ceil(sqrt((double)n)), rows = (n + cols - 1) / cols;
    double cell = 220.0 / (double)side;
    cell = cell < 1 ? 1 : cell > 14 ? 14 : cell;
    const double tile = cell * (double)side, pad = 14, head = 20;
    const double top = 44;
    const int W = (int)ceil(pad + cols * (tile + pad) + 60);
    const int Ht = (int)ceil(top + rows * (tile + head + pad) + pad);
    cairo_surface_t *sf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, W, Ht);
    cairo_t *cr = cairo_create(sf);
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    set_font(cr, 14, 1);
    cairo_move_to(cr, pad, 22);
    if (title) cairo_show_text(cr, title);
    set_font(cr, 11, 0);
    cairo_set_source_rgb(cr, 0.35, 0.35, 0.35);
    cairo_move_to(cr, pad, 38);
    cairo_show_text(cr, "each tile: rows = query tokens, columns = key tokens, in text order");
    for (int k = 0; k < n; k++) {
        const double x = pad + (k % cols) * (tile + pad),
                     y = top + (k / cols) * (tile + head + pad);
        set_font(cr, 11, 0);
        cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
        cairo_move_to(cr, x, y + 14);
        if (maps[k].title) cairo_show_text(cr, maps[k].title);
        draw_cells(cr, &maps[k], x, y + head, cell);
    }
    draw_bar(cr, pad + cols * (tile + pad), top + head, tile > 120 ? tile : 120, maps[0].vmax);
    int rc = check(cr);
    if (rc != 0) {
        cairo_surface_destroy(sf);
        return rc;
    }
    return save(sf, path);
}

/* x in [-1, 1]: blue (-1) through white (0) to red (1), the page's colours. */
static void diverging(double x, double rgb[3]) {
    if (!(x == x)) x = 0;
    x = x < -1 ? -1 : x > 1 ? 1 : x;
    const double red[3] = {214 / 255.0, 39 / 255.0, 40 / 255.0},
                 blue[3] = {31 / 255.0, 119 / 255.0, 180 / 255.0};
    const double *c = x >= 0 ? red : blue, a = fabs(x);
    for (int k = 0; k < 3; k++) rgb[k] = 1.0 - a * (1.0 - c[k]);
}

int cli_saliency_png(const char *path, const cli_strip *s) {
    if (!path || !s || !s->tokens || !s->rows || !s->row_names || s->T < 1 || s->T > MAX_SIDE ||
        s->n_rows < 1 || s->n_rows > 8) {
        errno = EINVAL;
        return -1;
    }
    for (int r = 0; r < s->n_rows; r++)
        if (!s->rows[r] || !s->row_names[r]) {
            errno = EINVAL;
            return -1;
        }
    double cell = 900.0 / (double)s->T;
    cell = cell < 6 ? 6 : cell > 56 ? 56 : floor(cell);
    const double font = cell - 2 < 7 ? 7 : cell - 2 > 12 ? 12 : cell - 2, rowh = 30;
    const int64_t step = (int64_t)ceil((font + 1) / cell);
    cairo_surface_t *probe = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, 1, 1);
    cairo_t *cr = cairo_create(probe);
    set_font(cr, font, 0);
    double wtok = 0, wname = 0;
    for (int64_t j = 0; j < s->T; j++) wtok = fmax(wtok, text_width(cr, s->tokens[j]));
    set_font(cr, 11, 0);
    for (int r = 0; r < s->n_rows; r++) wname = fmax(wname, text_width(cr, s->row_names[r]));
    cairo_destroy(cr);
    cairo_surface_destroy(probe);
    const double left = 12 + wname + 10, top = 60 + wtok + 6, gw = cell * (double)s->T;
    const int W = (int)ceil(left + gw + 110), Ht = (int)ceil(top + rowh * s->n_rows + 34);
    cairo_surface_t *sf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, W < 520 ? 520 : W, Ht);
    cr = begin_page(sf, s->title, s->subtitle);
    set_font(cr, font, 0);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    char b[128];
    for (int64_t j = 0; j < s->T; j += step) {
        cairo_save(cr);
        cairo_move_to(cr, left + ((double)j + 0.5) * cell + font / 3, top - 6);
        cairo_rotate(cr, -M_PI / 2);
        cairo_show_text(cr, cut(s->tokens[j], b, sizeof b));
        cairo_restore(cr);
    }
    for (int r = 0; r < s->n_rows; r++) {
        const float *v = s->rows[r];
        const double y = top + rowh * r;
        double mx = 0;
        for (int64_t j = 0; j < s->T; j++) mx = fmax(mx, fabs((double)v[j]));
        set_font(cr, 11, 0);
        cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
        cairo_move_to(cr, 12, y + rowh / 2 + 4);
        cairo_show_text(cr, s->row_names[r]);
        for (int64_t j = 0; j < s->T; j++) {
            double rgb[3];
            diverging(mx > 0 ? (double)v[j] / mx : 0, rgb);
            cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
            cairo_rectangle(cr, left + (double)j * cell, y + 2, cell - 1, rowh - 4);
            cairo_fill(cr);
            if (cell < 40) continue;
            snprintf(b, sizeof b, "%+.2g", (double)v[j]);
            set_font(cr, 9, 0);
            cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
            cairo_move_to(cr, left + (double)j * cell + (cell - 1 - text_width(cr, b)) / 2,
                          y + rowh / 2 + 3);
            cairo_show_text(cr, b);
        }
        snprintf(b, sizeof b, "|max| %.3g", mx);
        set_font(cr, 10, 0);
        cairo_set_source_rgb(cr, 0.35, 0.35, 0.35);
        cairo_move_to(cr, left + gw + 8, y + rowh / 2 + 4);
        cairo_show_text(cr, b);
    }
    set_font(cr, 10, 0);
    cairo_set_source_rgb(cr, 0.35, 0.35, 0.35);
    cairo_move_to(cr, 12, top + rowh * s->n_rows + 20);
    cairo_show_text(cr, "red: the token's attribution raises the target, blue: lowers it; each "
                        "row on its own scale");
    int rc = check(cr);
    if (rc != 0) {
        cairo_surface_destroy(sf);
        return rc;
    }
    return save(sf, path);
}

void cli_heatmap_cleanup(void) {
    cairo_debug_reset_static_data(); /* drops cairo's font faces, which hold fontconfig patterns */
    FcFini();
}
