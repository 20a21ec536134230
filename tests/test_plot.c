/* test_plot.c — cli_plot_svg (cli/plot.c): a chart of two series is a well-formed SVG with
 * one polyline per run of finite points and the right number of points in each, escaped
 * text, a legend; degenerate inputs (no series, empty series, one point, a constant, all
 * NaN, NULL x, extreme values) still give a valid file without NaN coordinates; bad
 * arguments and unwritable paths fail with errno and leave no temporary file. Confusion
 * matrices (cli_plot_confusion_svg): test_confusion. */
#include "../cli/plot.h"
#include "test.h"

#include <dirent.h>
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmp[512];

static char *read_all(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long l = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)l + 1);
    size_t n = fread(b, 1, (size_t)l, f);
    b[n] = 0;
    fclose(f);
    return b;
}

static int count(const char *s, const char *needle) {
    int n = 0;
    for (const char *p = strstr(s, needle); p; p = strstr(p + 1, needle)) n++;
    return n;
}

/* The number of "x,y" pairs of each polyline, in order, into out; returns how many lines. */
static int polyline_points(const char *s, int *out, int cap) {
    int n = 0;
    for (const char *p = strstr(s, "<polyline"); p && n < cap; p = strstr(p + 1, "<polyline")) {
        const char *q = strstr(p, "points=\"");
        if (!q) break;
        q += 8;
        int pts = 0;
        while (*q && *q != '"') {
            if (*q == ',') pts++;
            q++;
        }
        out[n++] = pts;
    }
    return n;
}

/* Structure every chart must have. */
static void check_svg(const char *what, const char *s) {
    CHECK_MSG(s != NULL, "%s: not written", what);
    if (!s) return;
    CHECK_MSG(strncmp(s, "<svg ", 5) == 0, "%s: does not start with <svg", what);
    size_t n = strlen(s);
    CHECK_MSG(n > 7 && strcmp(s + n - 7, "</svg>\n") == 0, "%s: does not end with </svg>", what);
    CHECK_MSG(count(s, "<svg") == 1 && count(s, "</svg>") == 1, "%s: one svg element", what);
    CHECK_MSG(count(s, "<text") == count(s, "</text>"), "%s: text elements balanced", what);
    CHECK_MSG(count(s, "<g ") == count(s, "</g>"), "%s: groups balanced", what);
    CHECK_MSG(!strstr(s, "nan") && !strstr(s, "inf"), "%s: a non-finite coordinate", what);
    CHECK_MSG(!strstr(s, ">-0<"), "%s: a -0 tick label", what);
    /* every '<' opens a tag that closes */
    int depth = 0, bad = 0;
    for (const char *p = s; *p; p++) {
        if (*p == '<') bad |= depth++ != 0;
        if (*p == '>') bad |= --depth != 0;
    }
    CHECK_MSG(!bad && depth == 0, "%s: unbalanced angle brackets", what);
}

static char *plot(const char *name, const char *title, const cli_series *s, int n) {
    char path[700];
    snprintf(path, sizeof path, "%s/%s.svg", tmp, name);
    int rc = cli_plot_svg(path, title, "step", "loss", s, n);
    CHECK_MSG(rc == 0, "%s: cli_plot_svg failed: %s", name, strerror(errno));
    char *svg = read_all(path);
    check_svg(name, svg);
    return svg;
}

static int dir_entries(void) {
    DIR *d = opendir(tmp);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) n += e->d_name[0] != '.';
    if (d) closedir(d);
    return n;
}

/* cli_plot_confusion_svg: n^2 cell rects, names escaped on both axes, counts in the cells,
 * shading by row fraction, long names cut with the whole name as tooltip, bad arguments; the
 * write replaces the file by rename (a hard link to the old file keeps the old bytes) and
 * leaves no temporary file behind, also when it fails. */
static void test_confusion(void) {
    char path[700], link_path[760];
    const char *names[4] = {"cat", "dog <&> \"x\"", "\xc3\xa9moji \xf0\x9f\x99\x82",
                            "a very long class name that goes on and on"};
    int64_t counts[16] = {17, 2,  0, 1,  /* true cat */
                          3,  25, 4, 0,  /* true dog */
                          0,  0,  9, 0,  /* all right: one full-dark cell */
                          0,  0,  0, 0}; /* no sample: a white row, no NaN */
    snprintf(path, sizeof path, "%s/confusion.svg", tmp);
    FILE *f = fopen(path, "wb");
    fputs("old", f);
    fclose(f);
    snprintf(link_path, sizeof link_path, "%s/confusion.old", tmp);
    CHECK(link(path, link_path) == 0);
    int before = dir_entries();
    CHECK(cli_plot_confusion_svg(path, "confusion <test>", names, counts, 4) == 0);
    CHECK_EQ_INT(dir_entries(), before); /* no temporary file left */
    char *old = read_all(link_path), *svg = read_all(path);
    CHECK(old && strcmp(old, "old") == 0); /* renamed over, not rewritten in place */
    free(old);
    check_svg("confusion", svg);
    if (svg) {
        CHECK_EQ_INT(count(svg, "<rect class=\"cell\""), 16);
        CHECK(strstr(svg, ">confusion &lt;test&gt;</text>") != NULL);
        CHECK_EQ_INT(count(svg, ">cat</text>"), 2); /* row and column */
        CHECK_EQ_INT(count(svg, ">dog &lt;&amp;&gt; &quot;x&quot;</text>"), 2);
        CHECK_EQ_INT(count(svg, ">\xc3\xa9moji \xf0\x9f\x99\x82</text>"), 2);
        CHECK(!strstr(svg, "dog <&>"));
        /* the long name: 23 code points and an ellipsis, the whole name as tooltip */
        CHECK_EQ_INT(count(svg, ">a very long class name \xe2\x80\xa6<title>a very long class name "
                                "that goes on and on</title></text>"),
                     2);
        for (int i = 0; i < 16; i++) {
            char want[64];
            snprintf(want, sizeof want, ">%lld</text>", (long long)counts[i]);
            CHECK_MSG(strstr(svg, want) != NULL, "count %lld not written", (long long)counts[i]);
        }
        CHECK_EQ_INT(count(svg, "fill=\"rgb(8,48,107)\" stroke"), 1);            /* 9 of 9 */
        CHECK_EQ_INT(count(svg, "fill=\"rgb(247,251,255)\" stroke"), 2 + 3 + 4); /* zeros */
        CHECK(strstr(svg, "rotate(-45") && strstr(svg, ">predicted label</text>") &&
              strstr(svg, ">true label</text>"));
    }
    free(svg);
    unlink(link_path);

    /* 1 and 20 classes, numbers for names */
    int64_t one = 5, big[400];
    CHECK(cli_plot_confusion_svg(path, NULL, NULL, &one, 1) == 0);
    svg = read_all(path);
    check_svg("confusion 1", svg);
    CHECK(svg && count(svg, "<rect class=\"cell\"") == 1 && strstr(svg, ">5</text>"));
    free(svg);
    for (int i = 0; i < 400; i++) big[i] = (i % 21 == 0) ? 50 + i : i % 3;
    CHECK(cli_plot_confusion_svg(path, "twenty", NULL, big, 20) == 0);
    svg = read_all(path);
    check_svg("confusion 20", svg);
    CHECK(svg && count(svg, "<rect class=\"cell\"") == 400 && strstr(svg, ">19</text>"));
    free(svg);

    /* errors: nothing written, no temporary file */
    before = dir_entries();
    int64_t neg[4] = {1, -1, 0, 1};
    errno = 0;
    CHECK(cli_plot_confusion_svg(path, "t", NULL, neg, 2) == -1 && errno == EINVAL);
    errno = 0;
    CHECK(cli_plot_confusion_svg(path, "t", NULL, NULL, 2) == -1 && errno == EINVAL);
    errno = 0;
    CHECK(cli_plot_confusion_svg(path, "t", NULL, counts, 0) == -1 && errno == EINVAL);
    errno = 0;
    CHECK(cli_plot_confusion_svg(NULL, "t", NULL, counts, 2) == -1 && errno == EINVAL);
    errno = 0;
    CHECK(cli_plot_confusion_svg(path, "t", NULL, counts, CLI_CONFUSION_MAX + 1) == -1 &&
          errno == EINVAL);
    snprintf(path, sizeof path, "%s/missing/dir/c.svg", tmp);
    errno = 0;
    CHECK(cli_plot_confusion_svg(path, "t", names, counts, 4) == -1 && errno == ENOENT);
    CHECK_EQ_INT(dir_entries(), before);
}

int main(void) {
    snprintf(tmp, sizeof tmp, "%s/plot_tmp.%ld", QKV_BINARY_DIR, (long)getpid());
    if (mkdir(tmp, 0777) != 0) return 1;

    /* two series, a NaN gap in the first */
    double x1[5] = {0, 10, 20, 30, 40}, y1[5] = {4.2, 3.1, NAN, 2.5, 2.2};
    double x2[3] = {0, 20, 40}, y2[3] = {4.3, 3.3, 2.9};
    cli_series s[2] = {{"train", x1, y1, 5}, {"val <&>", x2, y2, 3}};
    char *svg = plot("two", "loss \"curve\" <1>", s, 2);
    if (svg) {
        int pts[8], n = polyline_points(svg, pts, 8);
        CHECK_EQ_INT(n, 3);
        CHECK(n == 3 && pts[0] == 2 && pts[1] == 2 && pts[2] == 3);
        CHECK(strstr(svg, "loss &quot;curve&quot; &lt;1&gt;") != NULL);
        CHECK(strstr(svg, ">train</text>") != NULL);
        CHECK(strstr(svg, ">val &lt;&amp;&gt;</text>") != NULL);
        CHECK(strstr(svg, ">step</text>") && strstr(svg, ">loss</text>"));
        CHECK(strstr(svg, "#1f77b4") && strstr(svg, "#ff7f0e")); /* two colours */
        CHECK(strstr(svg, ">40</text>") != NULL);                /* round x ticks */
        CHECK(strstr(svg, ">2.0</text>") || strstr(svg, ">2.5</text>"));
    }
    free(svg);

    /* a long series with NULL x */
    enum { L = 1000 };
    double *yl = malloc(L * sizeof *yl);
    for (int i = 0; i < L; i++) yl[i] = 10.0 / (1 + i);
    cli_series sl = {"long", NULL, yl, L};
    svg = plot("long", "long", &sl, 1);
    if (svg) {
        int pts[2];
        CHECK(polyline_points(svg, pts, 2) == 1 && pts[0] == L);
        CHECK(strstr(svg, ">1000</text>") != NULL);
    }
    free(svg);
    free(yl);

    /* degenerate inputs */
    svg = plot("none", NULL, NULL, 0);
    CHECK(svg && !strstr(svg, "<polyline"));
    free(svg);
    cli_series empty = {"empty", x1, y1, 0};
    svg = plot("empty", "", &empty, 1);
    CHECK(svg && !strstr(svg, "<polyline") && strstr(svg, ">empty</text>"));
    free(svg);
    double one_x = 5, one_y = 2.5;
    cli_series one = {NULL, &one_x, &one_y, 1};
    svg = plot("one", "one point", &one, 1);
    CHECK(svg && !strstr(svg, "<polyline") && count(svg, "<circle") == 1);
    CHECK(svg && strstr(svg, ">series 1</text>"));
    free(svg);
    double cy[4] = {3, 3, 3, 3};
    cli_series constant = {"flat", NULL, cy, 4};
    svg = plot("constant", "constant", &constant, 1);
    if (svg) {
        int pts[2];
        CHECK(polyline_points(svg, pts, 2) == 1 && pts[0] == 4);
    }
    free(svg);
    double zy[3] = {0, 0, 0};
    cli_series zeros = {"zero", NULL, zy, 3};
    free(plot("zeros", "zeros", &zeros, 1));
    double ny[3] = {NAN, INFINITY, -INFINITY};
    cli_series nans = {"gaps", NULL, ny, 3};
    svg = plot("nans", "all NaN", &nans, 1);
    CHECK(svg && !strstr(svg, "<polyline") && !strstr(svg, "<circle"));
    free(svg);
    double ex[2] = {-1e308, 1e308}, ey[2] = {1e-300, 2e-300};
    cli_series extreme = {"extreme", ex, ey, 2};
    char path[700];
    snprintf(path, sizeof path, "%s/extreme.svg", tmp);
    CHECK(cli_plot_svg(path, "extreme", NULL, NULL, &extreme, 1) == 0); /* no hang, no crash */
    char *e = read_all(path);
    CHECK(e && strncmp(e, "<svg", 4) == 0 && strstr(e, "</svg>\n"));
    free(e);
    double ty[2] = {1e-7, 3e-7}, sy[2] = {-1, 1};
    cli_series tiny[2] = {{"tiny", NULL, ty, 2}, {"sym", NULL, sy, 2}};
    free(plot("tiny", "tiny", tiny, 1));
    free(plot("sym", "sym", tiny + 1, 1));
    /* nine series: colours repeat */
    cli_series many[9];
    for (int k = 0; k < 9; k++) many[k] = (cli_series){"s", NULL, x2, 3};
    svg = plot("many", "many", many, 9);
    CHECK(svg && count(svg, "<polyline") == 9);
    free(svg);

    /* errors */
    errno = 0;
    CHECK(cli_plot_svg(NULL, "t", NULL, NULL, s, 2) == -1 && errno == EINVAL);
    errno = 0;
    CHECK(cli_plot_svg(path, "t", NULL, NULL, NULL, 2) == -1 && errno == EINVAL);
    cli_series neg = {"neg", NULL, y1, -1}, noy = {"noy", x1, NULL, 3};
    errno = 0;
    CHECK(cli_plot_svg(path, "t", NULL, NULL, &neg, 1) == -1 && errno == EINVAL);
    errno = 0;
    CHECK(cli_plot_svg(path, "t", NULL, NULL, &noy, 1) == -1 && errno == EINVAL);
    int before = dir_entries();
    snprintf(path, sizeof path, "%s/missing/dir/x.svg", tmp);
    errno = 0;
    CHECK(cli_plot_svg(path, "t", NULL, NULL, s, 2) == -1 && errno == ENOENT);
    CHECK_EQ_INT(dir_entries(), before); /* no temporary file left */
    /* overwriting an existing chart replaces it */
    snprintf(path, sizeof path, "%s/two.svg", tmp);
    CHECK(cli_plot_svg(path, "again", NULL, NULL, &one, 1) == 0);
    e = read_all(path);
    CHECK(e && strstr(e, ">again</text>") && !strstr(e, "<polyline"));
    free(e);
    CHECK_EQ_INT(dir_entries(), before);
    test_confusion();

    DIR *d = opendir(tmp);
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') continue;
        if (snprintf(path, sizeof path, "%s/%s", tmp, de->d_name) >= (int)sizeof path) continue;
        unlink(path);
    }
    if (d) closedir(d);
    rmdir(tmp);
    return test_finish("plot");
}
