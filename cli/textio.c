/* textio.c — line input, progress on stderr, JSON string output (see textio.h). */
#include "textio.h"

#include <jansson.h>

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int text_lines_push(text_lines *t, const char *s, size_t len) {
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 256;
        char **l = realloc(t->line, cap * sizeof *l);
        if (!l) return -1;
        t->line = l;
        size_t *n = realloc(t->len, cap * sizeof *n);
        if (!n) return -1;
        t->len = n;
        t->cap = cap;
    }
    char *c = malloc(len + 1);
    if (!c) return -1;
    memcpy(c, s, len);
    c[len] = '\0';
    t->line[t->n] = c;
    t->len[t->n++] = len;
    return 0;
}

int text_lines_read(const char *path, text_lines *out) {
    memset(out, 0, sizeof *out);
    out->hash = 1469598103934665603ull;
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "qkv: %s: cannot open\n", path);
        return 2;
    }
    char *buf = NULL;
    size_t cap = 0;
    ssize_t got;
    int rc = 0;
    while ((got = getline(&buf, &cap, f)) >= 0) {
        size_t len = (size_t)got;
        for (size_t i = 0; i < len; i++)
            out->hash = (out->hash ^ (unsigned char)buf[i]) * 1099511628211ull;
        if (len && buf[len - 1] == '\n') len--;
        if (len && buf[len - 1] == '\r') len--;
        if (text_lines_push(out, buf, len) != 0) {
            fprintf(stderr, "qkv: %s: out of memory after %zu lines\n", path, out->n);
            rc = 1;
            break;
        }
    }
    if (rc == 0 && ferror(f)) {
        fprintf(stderr, "qkv: %s: read error\n", path);
        rc = 2;
    }
    free(buf);
    if (f != stdin) fclose(f);
    if (rc) text_lines_free(out);
    return rc;
}

void text_lines_free(text_lines *t) {
    for (size_t i = 0; i < t->n; i++) free(t->line[i]);
    free(t->line);
    free(t->len);
    memset(t, 0, sizeof *t);
}

void progress_begin(progress *p, const char *label, size_t total, int force) {
    p->on = force || isatty(2);
    p->label = label;
    p->total = total;
    p->start = p->last = now_seconds();
    p->every = 0;
    p->lines = 0;
}

void progress_lines(progress *p, double seconds) {
    if (!p->on && seconds > 0) p->every = seconds;
}

/* A full line (for logs): "label: done/total (P%), R/s, ETA Ss". */
static void draw_line(progress *p, size_t done, double t) {
    double el = t - p->start, rate = el > 0 ? (double)done / el : 0;
    if (p->total)
        fprintf(stderr, "%s: %zu/%zu (%.0f%%), %.1f/s, ETA %.0fs\n", p->label, done, p->total,
                100.0 * (double)done / (double)p->total, rate,
                rate > 0 ? (double)(p->total - done) / rate : 0.0);
    else
        fprintf(stderr, "%s: %zu, %.1f/s\n", p->label, done, rate);
    fflush(stderr);
    p->lines++;
}

static void draw(progress *p, size_t done, int final) {
    double t = now_seconds(), el = t - p->start;
    double rate = el > 0 ? (double)done / el : 0;
    if (p->total) {
        int width = 24, fill = (int)((double)width * (double)done / (double)p->total);
        char bar[32];
        for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
        bar[width] = '\0';
        double eta = rate > 0 ? (double)(p->total - done) / rate : 0;
        fprintf(stderr, "\r%s [%s] %zu/%zu  %.1f/s  ETA %.0fs ", p->label, bar, done, p->total,
                rate, final ? 0.0 : eta);
    } else {
        fprintf(stderr, "\r%s %zu  %.1f/s ", p->label, done, rate);
    }
    if (final) fputc('\n', stderr);
    fflush(stderr);
}

void progress_update(progress *p, size_t done) {
    if (!p->on && p->every > 0) {
        double t = now_seconds();
        if (t - p->last >= p->every) {
            p->last = t;
            draw_line(p, done, t);
        }
        return;
    }
    if (!p->on) return;
    double t = now_seconds();
    if (t - p->last < 0.1) return;
    p->last = t;
    draw(p, done, 0);
}

void progress_end(progress *p, size_t done) {
    if (p->on)
        draw(p, done, 1);
    else if (p->lines)
        draw_line(p, done, now_seconds()); /* only after a first line */
}

size_t utf8_valid_len(const unsigned char *u, size_t left) {
    if (!left) return 0;
    unsigned char c = u[0];
    if (c < 0x80) return 1;
    size_t n = c >= 0xf0 && c <= 0xf4   ? 4
               : c >= 0xe0 && c <= 0xef ? 3
               : c >= 0xc2 && c < 0xe0  ? 2
                                        : 0;
    int ok = n && n <= left;
    for (size_t k = 1; ok && k < n; k++) ok = (u[k] & 0xc0) == 0x80;
    if (ok && n == 3) ok = !(c == 0xe0 && u[1] < 0xa0) && !(c == 0xed && u[1] >= 0xa0);
    if (ok && n == 4) ok = !(c == 0xf0 && u[1] < 0x90) && !(c == 0xf4 && u[1] >= 0x90);
    return ok ? n : 0;
}

char *utf8_clean(const char *s, size_t len) {
    const unsigned char *u = (const unsigned char *)s;
    char *out = malloc(3 * len + 1), *o = out; /* each bad byte grows to 3 */
    if (!out) return NULL;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_valid_len(u + i, len - i);
        if (n) {
            memcpy(o, u + i, n);
            o += n, i += n;
        } else {
            memcpy(o, "\xef\xbf\xbd", 3);
            o += 3, i++;
        }
    }
    *o = '\0';
    return out;
}

void json_write_string(FILE *f, const char *s, size_t len) {
    const unsigned char *u = (const unsigned char *)s;
    fputc('"', f);
    for (size_t i = 0; i < len;) {
        unsigned char c = u[i];
        if (c == '"' || c == '\\') {
            fputc('\\', f);
            fputc(c, f);
            i++;
        } else if (c < 0x20) {
            const char *e = c == '\n' ? "\\n" : c == '\t' ? "\\t" : c == '\r' ? "\\r" : NULL;
            if (e)
                fputs(e, f);
            else
                fprintf(f, "\\u%04x", c);
            i++;
        } else {
            /* copy a valid UTF-8 sequence, else write U+FFFD for the byte */
            size_t n = utf8_valid_len(u + i, len - i);
            if (n) {
                fwrite(u + i, 1, n, f);
                i += n;
            } else {
                fputs("\xef\xbf\xbd", f);
                i++;
            }
        }
    }
    fputc('"', f);
}

json_t *cli_json_string(const char *s) {
    char *c = s ? utf8_clean(s, strlen(s)) : NULL;
    json_t *j = c ? json_string(c) : NULL;
    free(c);
    return j;
}

char *json_quote(const char *s) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return NULL;
    json_write_string(f, s, strlen(s));
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

void json_write_number(FILE *f, const char *fmt, double x) {
    if (isfinite(x))
        fprintf(f, fmt, x);
    else
        fputs("null", f);
}

/* 1 if a token of printf's non-finite spellings (nan, -nan, inf, -inf, any case) starts at p,
 * and its length in *n */
static int nonfinite_at(const char *p, size_t *n) {
    const char *q = p + (*p == '-');
    if (strncasecmp(q, "nan", 3) == 0 || strncasecmp(q, "inf", 3) == 0) {
        q += 3;
        if (strncasecmp(q, "inity", 5) == 0) q += 5;
        *n = (size_t)(q - p);
        return 1;
    }
    return 0;
}

void json_printf(FILE *f, const char *fmt, ...) {
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (buf) vsnprintf(buf, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    if (!buf) return; /* out of memory: the line is lost, as a failed fprintf's */
    int in_str = 0;
    for (const char *p = buf; *p;) {
        size_t k;
        if (in_str) {
            if (*p == '\\' && p[1])
                fputc(*p++, f);
            else if (*p == '"')
                in_str = 0;
            fputc(*p++, f);
        } else if (*p == '"') {
            in_str = 1;
            fputc(*p++, f);
        } else if ((p == buf || strchr(":,[ ", p[-1])) && nonfinite_at(p, &k)) {
            fputs("null", f);
            p += k;
        } else {
            fputc(*p++, f);
        }
    }
    free(buf);
}

void cli_warn_multiline(const char *cmd, const char *path, const qkv_labeled *d, int no_quotes) {
    int64_t first;
    const int64_t n = qkv_labeled_multiline(d, &first);
    if (n && !no_quotes)
        fprintf(stderr,
                "qkv %s: warning: %s: %lld record(s) run over several lines through a quoted "
                "field (the first from line %lld); if '\"' is plain text in this file, use "
                "--no-quotes\n",
                cmd, path, (long long)n, (long long)first);
}

void cli_top_k(const float *row, int64_t n, int64_t k, int64_t *idx) {
    for (int64_t j = 0; j < k; j++) {
        int64_t best = -1;
        for (int64_t c = 0; c < n; c++) {
            int taken = 0;
            for (int64_t q = 0; q < j && !taken; q++) taken = idx[q] == c;
            if (!taken && (best < 0 || row[c] > row[best] || (isnan(row[best]) && !isnan(row[c]))))
                best = c;
        }
        idx[j] = best;
    }
}
