/* labeled_read.c — the file formats of labelled text (qkv_labeled_load): TSV and CSV through
 * libcsv, JSON lines through jansson (io/json.h), and class folders. The object they fill is
 * labeled.c's; the formats and rules are in docs/TRAINING.md ("Labelled data for
 * classification").
 *
 * Files are streamed in chunks: memory grows with the examples kept, never with one hostile
 * record, because a row, a line or an example file longer than max_record_bytes is refused as
 * soon as it gets there (libcsv's field buffer is checked after every piece fed to it). Only
 * regular files are read: they are opened non-blocking and checked with fstat, so a FIFO or a
 * device is refused instead of waited on. The parsers take their input in pieces of any size
 * and give the same result for every cut (qkv__labeled_parse lets the fuzzer check it). */
#include "train/labeled.h"

#include "core/abi.h"
#include "core/alloc.h"
#include "core/error.h"
#include "io/file.h"
#include "io/json.h"
#include "train/data.h"

#include <csv.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_MAX_RECORD ((size_t)1 << 20)
#define READ_CHUNK ((size_t)1 << 16)
#define MAX_COLUMNS 1024
/* libcsv grows its field buffer by a fixed step (128 bytes by default: quadratic copying) */
#define CSV_BLOCK ((size_t)1 << 16)
/* libcsv's state "inside a field" (libcsv.c, FIELD_BEGUN): with quoted set at the end of the
 * input, a quoted field was never closed (libcsv reports it only in its strict mode, which
 * also refuses the stray quotes real TSV files have) */
#define CSV_FIELD_BEGUN 2

void qkv_labeled_default_options_sized(qkv_labeled_options *o, size_t struct_size) {
    if (!o) return;
    qkv_labeled_options d;
    memset(&d, 0, sizeof d);
    d.label_separator = '|';
    d.max_record_bytes = DEFAULT_MAX_RECORD;
    QKV__STRUCT_FILL(qkv_labeled_options, o, struct_size, &d);
}

/* One load: the options resolved, and the object being filled. */
typedef struct reader {
    qkv_labeled_options o;
    qkv_labeled *d;
    size_t max; /* max_record_bytes */
    const char *text_names[4], *pair_names[3], *label_names[3];
} reader;

static qkv_status resolve(reader *r, const qkv_labeled_options *opts, const char *fn) {
    memset(r, 0, sizeof *r);
    qkv_labeled_options defaults;
    qkv_labeled_default_options(&defaults);
    QKV_TRY(QKV__STRUCT_IN(qkv_labeled_options, &r->o, opts, &defaults, fn));
    qkv_labeled_options *o = &r->o;
    if ((unsigned)o->format > QKV_LABELED_DIR || (unsigned)o->problem > QKV_PROBLEM_REGRESSION ||
        o->header < -1 || o->header > 1)
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: format %d, problem %d or header %d unknown", fn,
                         (int)o->format, (int)o->problem, o->header);
    if ((o->text_field && !*o->text_field) || (o->pair_field && !*o->pair_field) ||
        (o->label_field && !*o->label_field))
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: an empty field name", fn);
    r->max = o->max_record_bytes ? o->max_record_bytes : DEFAULT_MAX_RECORD;
    if (r->max > SIZE_MAX / 4)
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: max_record_bytes %zu is too large", fn, r->max);
    if (!o->label_separator) o->label_separator = '|';
    /* the names each role answers to, in order of preference */
    if (o->text_field) {
        r->text_names[0] = o->text_field;
    } else {
        r->text_names[0] = "text";
        r->text_names[1] = "sentence";
        r->text_names[2] = "sentence1";
    }
    if (o->pair_field) {
        r->pair_names[0] = o->pair_field;
    } else {
        r->pair_names[0] = "text_pair";
        r->pair_names[1] = "sentence2";
    }
    r->label_names[0] = o->label_field ? o->label_field : "label";
    if (!o->label_field && o->problem == QKV_PROBLEM_MULTI_LABEL) r->label_names[1] = "labels";
    return QKV_OK;
}

/* "'a', 'b' or 'c'" */
static const char *name_list(char *buf, size_t cap, const char *const *names) {
    size_t n = 0, k = 0;
    while (names[k]) k++;
    buf[0] = '\0';
    for (size_t i = 0; i < k && n < cap; i++) {
        int w = snprintf(buf + n, cap - n, "%s'%.64s'",
                         i == 0       ? ""
                         : i + 1 == k ? " or "
                                      : ", ",
                         names[i]);
        if (w < 0) break;
        n += (size_t)w;
    }
    return buf;
}

/* A regression label: a decimal number (spaces around it allowed), finite as a float. */
static qkv_status add_value_text(reader *r, const char *s, size_t n) {
    char buf[80];
    while (n && (*s == ' ' || *s == '\t')) s++, n--;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
    double v = NAN;
    if (n > 0 && n < sizeof buf && strspn(s, "0123456789+-.eE") >= n) {
        memcpy(buf, s, n);
        buf[n] = '\0';
        char *end;
        double x = strtod(buf, &end);
        if (end == buf + n) v = x;
    }
    if (n >= sizeof buf) n = sizeof buf - 1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    return qkv__lab_value(r->d, v, buf);
}

/* The label cell of a TSV/CSV row (NUL-terminated at s[n]). */
static qkv_status add_label_cell(reader *r, const char *s, size_t n) {
    switch (r->o.problem) {
    case QKV_PROBLEM_REGRESSION: return add_value_text(r, s, n);
    case QKV_PROBLEM_MULTI_LABEL:
        /* names separated by label_separator; an empty cell: no label applies */
        for (size_t a = 0; n > 0;) {
            const char *e = memchr(s + a, r->o.label_separator, n - a);
            size_t b = e ? (size_t)(e - s) : n;
            QKV_TRY(qkv__lab_label(r->d, s + a, b - a));
            if (!e) break;
            a = b + 1;
        }
        return QKV_OK;
    default: return qkv__lab_label(r->d, s, n);
    }
}

/* ---------------------------------------------------------------- TSV / CSV */

typedef struct csv_reader {
    reader *r;
    struct csv_parser p;
    int64_t line;     /* the line being fed (1-based; lines end at LF) */
    int64_t rec_line; /* the line the current record started on */
    int in_record;
    int64_t nul_line; /* the first line with a NUL byte (0: none) */
    qkv__buf rec;     /* the current record's fields, each followed by a NUL */
    qkv__buf fields;  /* size_t [nf]: where each field starts in rec */
    size_t nf, rec_bytes;
    int have_columns; /* the first row was seen */
    size_t ncols;
    long col_text, col_pair, col_label;
    qkv_status st;
} csv_reader;

static const char *field(const csv_reader *c, long k) {
    size_t off;
    memcpy(&off, c->fields.p + (size_t)k * sizeof off, sizeof off);
    return c->rec.p + off;
}

static size_t field_len(const csv_reader *c, long k) {
    size_t off, end = c->rec.len - 1; /* the last field ends before the last NUL */
    memcpy(&off, c->fields.p + (size_t)k * sizeof off, sizeof off);
    if ((size_t)k + 1 < c->nf) {
        memcpy(&end, c->fields.p + (size_t)(k + 1) * sizeof end, sizeof end);
        end--;
    }
    return end - off;
}

/* The first column named names[0], else names[1], ...; -1 if none. */
static long find_column(const csv_reader *c, const char *const *names) {
    for (; *names; names++)
        for (size_t k = 0; k < c->nf; k++)
            if (strcmp(field(c, (long)k), *names) == 0) return (long)k;
    return -1;
}

/* The first row: a header (named columns) or the first example (columns by position). */
static qkv_status csv_columns(csv_reader *c, int *is_header) {
    reader *r = c->r;
    char names[256];
    int header = r->o.header > 0;
    if (r->o.header == 0)
        header = find_column(c, r->text_names) >= 0 || find_column(c, r->pair_names) >= 0 ||
                 find_column(c, r->label_names) >= 0;
    c->ncols = c->nf;
    *is_header = header;
    if (!header) {
        if (c->nf != 2 && c->nf != 3)
            return qkv__lab_fail(r->d, c->rec_line,
                                 "%zu columns; without a header row, 2 (text, label) or 3 (text, "
                                 "text_pair, label) are expected",
                                 c->nf);
        c->col_text = 0;
        c->col_pair = c->nf == 3 ? 1 : -1;
        c->col_label = (long)c->nf - 1;
        return QKV_OK;
    }
    c->col_text = find_column(c, r->text_names);
    c->col_pair = find_column(c, r->pair_names);
    c->col_label = find_column(c, r->label_names);
    if (c->col_text < 0)
        return qkv__lab_fail(r->d, c->rec_line, "the header has no text column %s",
                             name_list(names, sizeof names, r->text_names));
    if (c->col_label < 0)
        return qkv__lab_fail(r->d, c->rec_line, "the header has no label column %s",
                             name_list(names, sizeof names, r->label_names));
    if (c->col_pair < 0 && r->o.pair_field)
        return qkv__lab_fail(r->d, c->rec_line, "the header has no text_pair column '%.64s'",
                             r->o.pair_field);
    return QKV_OK;
}

static qkv_status csv_row(csv_reader *c) {
    if (!c->have_columns) {
        c->have_columns = 1;
        int is_header;
        QKV_TRY(csv_columns(c, &is_header));
        if (is_header) return QKV_OK;
    }
    if (c->nf != c->ncols)
        return qkv__lab_fail(c->r->d, c->rec_line, "wrong number of columns: %zu, expected %zu",
                             c->nf, c->ncols);
    if (c->line > c->rec_line && !c->r->d->multiline++) /* a quoted field ran over a line end */
        c->r->d->multiline_line = c->rec_line;
    const char *pair = c->col_pair >= 0 ? field(c, c->col_pair) : NULL;
    QKV_TRY(qkv__lab_add(c->r->d, c->rec_line, field(c, c->col_text), field_len(c, c->col_text),
                         pair, pair ? field_len(c, c->col_pair) : 0));
    return add_label_cell(c->r, field(c, c->col_label), field_len(c, c->col_label));
}

static qkv_status nul_error(csv_reader *c) {
    return c->st = qkv__lab_fail(c->r->d, c->nul_line, "bad encoding: a NUL byte");
}

/* libcsv's callbacks: a field ends; a record ends. They cannot stop the parser, so a failure
 * is kept in c->st and the feeding loop stops at the next piece. */
static void csv_on_field(void *s, size_t len, void *ctx) {
    csv_reader *c = ctx;
    if (c->st != QKV_OK) return;
    if (c->nf >= MAX_COLUMNS) {
        c->st = qkv__lab_fail(c->r->d, c->rec_line, "more than %d columns", MAX_COLUMNS);
        return;
    }
    if (len > c->r->max - c->rec_bytes) {
        c->st = qkv__lab_fail(c->r->d, c->rec_line,
                              "a row longer than %zu bytes (max_record_bytes)", c->r->max);
        return;
    }
    size_t off = c->rec.len;
    c->st = qkv__buf_put(&c->fields, &off, sizeof off);
    if (c->st == QKV_OK) c->st = qkv__buf_reserve(&c->rec, len + 1);
    if (c->st != QKV_OK) return;
    if (len) memcpy(c->rec.p + c->rec.len, s, len);
    c->rec.p[c->rec.len + len] = '\0';
    c->rec.len += len + 1;
    c->rec_bytes += len;
    c->nf++;
}

static void csv_on_record(int term, void *ctx) {
    (void)term;
    csv_reader *c = ctx;
    c->in_record = 0;
    if (c->st == QKV_OK) c->st = c->nul_line ? nul_error(c) : csv_row(c);
    c->nf = c->rec_bytes = c->rec.len = c->fields.len = 0;
}

static int csv_no_space(unsigned char ch) {
    (void)ch;
    return 0; /* spaces around fields are text (libcsv trims them by default) */
}

/* libcsv's buffer through qkv__alloc: a header keeps each block's size for the copy. libcsv
 * retries a failed growth with a smaller step and goes on, so a failure is remembered here and
 * reported as NOMEM after the piece (what the fault-injection tests expect of every failure). */
#define CSV_HDR 64
static _Thread_local int csv_alloc_failed;
static void *csv_realloc(void *old, size_t size) {
    char *p = size <= SIZE_MAX - CSV_HDR ? qkv__alloc(size + CSV_HDR) : NULL;
    if (!p) {
        csv_alloc_failed = 1;
        return NULL;
    }
    memcpy(p, &size, sizeof size);
    if (old) {
        size_t was;
        memcpy(&was, (char *)old - CSV_HDR, sizeof was);
        memcpy(p + CSV_HDR, old, was < size ? was : size);
        qkv__free((char *)old - CSV_HDR);
    }
    return p + CSV_HDR;
}

static void csv_release(void *p) {
    if (p) qkv__free((char *)p - CSV_HDR);
}

static void csv_init_reader(csv_reader *c, reader *r, int tsv) {
    memset(c, 0, sizeof *c);
    c->r = r;
    c->line = 1;
    csv_alloc_failed = 0;
    csv_init(&c->p, 0);
    csv_set_delim(&c->p, tsv ? '\t' : ',');
    /* with no_quotes the quote character is NUL, which never reaches the parser */
    csv_set_quote(&c->p, r->o.no_quotes ? '\0' : '"');
    csv_set_space_func(&c->p, csv_no_space);
    csv_set_realloc_func(&c->p, csv_realloc);
    csv_set_free_func(&c->p, csv_release);
    csv_set_blk_size(&c->p, CSV_BLOCK);
}

/* Feeds bytes of one line (no NUL among them) to libcsv. */
static qkv_status csv_feed_piece(csv_reader *c, const char *p, size_t n) {
    size_t fed = csv_parse(&c->p, p, n, csv_on_field, csv_on_record, c);
    if ((fed != n || csv_alloc_failed) && c->st == QKV_OK)
        c->st = qkv__fail(
            csv_alloc_failed || csv_error(&c->p) == CSV_ENOMEM ? QKV_ERR_NOMEM : QKV_ERR_FORMAT,
            "%s:%lld: %s", c->r->d->paths.p + c->r->d->cur_src, (long long)c->rec_line,
            csv_alloc_failed ? "out of memory" : csv_strerror(csv_error(&c->p)));
    if (c->st != QKV_OK) return c->st;
    /* + 1: a quoted field's closing quote sits in the buffer until the next byte */
    if (c->p.entry_pos > c->r->max + 1)
        return c->st = qkv__lab_fail(c->r->d, c->rec_line,
                                     "a row longer than %zu bytes (max_record_bytes)", c->r->max);
    return QKV_OK;
}

/* Every check happens at the same point of the input however it is cut into pieces, so the
 * first error is the same: a NUL byte is not fed (with no_quotes NUL is libcsv's quote
 * character) but reported when its record ends, after the errors of fields before it. */
static qkv_status csv_feed(csv_reader *c, const char *p, size_t n) {
    if (c->st != QKV_OK) return c->st;
    /* a line at a time, so a record knows the line it starts on */
    for (size_t i = 0, j; i < n; i = j) {
        for (j = i; j < n && p[j] != '\n' && p[j] != '\r'; j++) {
        }
        if (j < n) j++; /* the line end goes with its line */
        if (!c->in_record && (j - i > 1 || (p[i] != '\n' && p[i] != '\r'))) {
            c->in_record = 1;
            c->rec_line = c->line;
        }
        for (size_t a = i, b; a < j; a = b + 1) {
            const char *z = memchr(p + a, '\0', j - a);
            b = z ? (size_t)(z - p) : j;
            if (b > a) QKV_TRY(csv_feed_piece(c, p + a, b - a));
            if (z && !c->nul_line) c->nul_line = c->line;
        }
        if (p[j - 1] == '\n') c->line++;
    }
    return QKV_OK;
}

static qkv_status csv_finish(csv_reader *c) {
    if (c->st != QKV_OK) return c->st;
    if (c->nul_line) return nul_error(c);
    if (c->p.pstate == CSV_FIELD_BEGUN && c->p.quoted)
        return c->st = qkv__lab_fail(c->r->d, c->rec_line,
                                     "a quoted field is not closed before the end of the file");
    csv_fini(&c->p, csv_on_field, csv_on_record, c);
    return c->st;
}

static void csv_free_reader(csv_reader *c) {
    csv_free(&c->p);
    qkv__buf_free(&c->rec);
    qkv__buf_free(&c->fields);
}

/* ---------------------------------------------------------------- JSON lines */

typedef struct jsonl_reader {
    reader *r;
    qkv__buf line; /* the line being gathered */
    int64_t lineno;
    qkv_status st;
} jsonl_reader;

/* The member named names[0], else names[1], ...; NULL if none (*key: the name found). */
static json_t *get_member(json_t *obj, const char *const *names, const char **key) {
    for (; *names; names++) {
        json_t *v = json_object_get(obj, *names);
        if (v) {
            *key = *names;
            return v;
        }
    }
    return NULL;
}

/* One label name: a string, or an integer written in decimal. */
static qkv_status json_label(jsonl_reader *j, const json_t *v, const char *key, long index) {
    char num[32];
    if (json_is_string(v))
        return qkv__lab_label(j->r->d, json_string_value(v), json_string_length(v));
    if (json_is_integer(v)) {
        int w = snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return qkv__lab_label(j->r->d, num, (size_t)w);
    }
    if (index >= 0)
        return qkv__lab_fail(j->r->d, j->lineno,
                             "wrong JSON type: '%s'[%ld] is %s, expected a string or an integer",
                             key, index, qkv__json_type_name(v));
    return qkv__lab_fail(j->r->d, j->lineno,
                         "wrong JSON type: '%s' is %s, expected a string or an integer%s", key,
                         qkv__json_type_name(v),
                         j->r->o.problem == QKV_PROBLEM_MULTI_LABEL ? " or an array of them" : "");
}

static qkv_status jsonl_example(jsonl_reader *j, json_t *obj) {
    reader *r = j->r;
    char names[256];
    const char *tkey = NULL, *pkey = NULL, *lkey = NULL;
    json_t *t = get_member(obj, r->text_names, &tkey);
    json_t *p = get_member(obj, r->pair_names, &pkey);
    json_t *l = get_member(obj, r->label_names, &lkey);
    if (!t)
        return qkv__lab_fail(r->d, j->lineno, "missing field %s",
                             name_list(names, sizeof names, r->text_names));
    if (!json_is_string(t))
        return qkv__lab_fail(r->d, j->lineno, "wrong JSON type: '%s' is %s, expected a string",
                             tkey, qkv__json_type_name(t));
    if (p && !json_is_string(p) && !json_is_null(p))
        return qkv__lab_fail(r->d, j->lineno,
                             "wrong JSON type: '%s' is %s, expected a string or null", pkey,
                             qkv__json_type_name(p));
    if (!l)
        return qkv__lab_fail(r->d, j->lineno, "missing field %s",
                             name_list(names, sizeof names, r->label_names));
    int has_pair = p && json_is_string(p);
    QKV_TRY(qkv__lab_add(r->d, j->lineno, json_string_value(t), json_string_length(t),
                         has_pair ? json_string_value(p) : NULL,
                         has_pair ? json_string_length(p) : 0));
    if (r->o.problem == QKV_PROBLEM_REGRESSION) {
        if (!json_is_number(l))
            return qkv__lab_fail(r->d, j->lineno, "wrong JSON type: '%s' is %s, expected a number",
                                 lkey, qkv__json_type_name(l));
        return qkv__lab_value(r->d, json_number_value(l), "(a JSON number)");
    }
    if (r->o.problem == QKV_PROBLEM_MULTI_LABEL && json_is_array(l)) {
        for (size_t k = 0; k < json_array_size(l); k++)
            QKV_TRY(json_label(j, json_array_get(l, k), lkey, (long)k));
        return QKV_OK;
    }
    return json_label(j, l, lkey, -1);
}

static qkv_status jsonl_line(jsonl_reader *j) {
    const char *s = j->line.p;
    size_t n = j->line.len;
    if (n && s[n - 1] == '\r') n--;
    size_t k = 0;
    while (k < n && (s[k] == ' ' || s[k] == '\t' || s[k] == '\r')) k++;
    if (k == n) return QKV_OK; /* blank lines are skipped */
    size_t bad;
    if (memchr(s, '\0', n)) return qkv__lab_fail(j->r->d, j->lineno, "bad encoding: a NUL byte");
    if (!qkv__utf8_valid(s, n, &bad))
        return qkv__lab_fail(j->r->d, j->lineno,
                             "bad encoding: invalid UTF-8 at byte %zu of the line", bad);
    qkv__json_begin();
    json_error_t err;
    json_t *root = json_loadb(s, n, JSON_REJECT_DUPLICATES, &err);
    qkv_status st;
    if (qkv__json_alloc_failed())
        st = qkv__fail(QKV_ERR_NOMEM, "%s:%lld: out of memory while parsing",
                       j->r->d->paths.p + j->r->d->cur_src, (long long)j->lineno);
    else if (!root)
        st = qkv__lab_fail(j->r->d, j->lineno, "malformed JSON: %s (column %d)", err.text,
                           err.column);
    else if (!json_is_object(root))
        st = qkv__lab_fail(j->r->d, j->lineno,
                           "wrong JSON type: the line is %s, expected an object (JSON lines: one "
                           "object a line)",
                           qkv__json_type_name(root));
    else
        st = jsonl_example(j, root);
    json_decref(root);
    qkv__json_end();
    return st;
}

static qkv_status jsonl_feed(jsonl_reader *j, const char *p, size_t n) {
    if (j->st != QKV_OK) return j->st;
    while (n > 0) {
        const char *nl = memchr(p, '\n', n);
        size_t piece = nl ? (size_t)(nl - p) : n;
        if (piece > j->r->max - j->line.len)
            return j->st =
                       qkv__lab_fail(j->r->d, j->lineno,
                                     "a line longer than %zu bytes (max_record_bytes)", j->r->max);
        if ((j->st = qkv__buf_put(&j->line, p, piece)) != QKV_OK) return j->st;
        if (!nl) break;
        if ((j->st = jsonl_line(j)) != QKV_OK) return j->st;
        j->line.len = 0;
        j->lineno++;
        p = nl + 1;
        n -= piece + 1;
    }
    return QKV_OK;
}

static qkv_status jsonl_finish(jsonl_reader *j) {
    if (j->st == QKV_OK && j->line.len) j->st = jsonl_line(j);
    return j->st;
}

/* ---------------------------------------------------------------- one text file */

typedef struct text_parser {
    qkv_labeled_format fmt;
    csv_reader csv;
    jsonl_reader json;
} text_parser;

static void tp_init(text_parser *tp, reader *r, qkv_labeled_format fmt) {
    memset(tp, 0, sizeof *tp);
    tp->fmt = fmt;
    if (fmt == QKV_LABELED_JSONL) {
        tp->json.r = r;
        tp->json.lineno = 1;
    } else {
        csv_init_reader(&tp->csv, r, fmt == QKV_LABELED_TSV);
    }
}

static qkv_status tp_feed(text_parser *tp, const char *p, size_t n) {
    return tp->fmt == QKV_LABELED_JSONL ? jsonl_feed(&tp->json, p, n) : csv_feed(&tp->csv, p, n);
}

static qkv_status tp_finish(text_parser *tp) {
    return tp->fmt == QKV_LABELED_JSONL ? jsonl_finish(&tp->json) : csv_finish(&tp->csv);
}

static void tp_free(text_parser *tp) {
    if (tp->fmt == QKV_LABELED_JSONL)
        qkv__buf_free(&tp->json.line);
    else
        csv_free_reader(&tp->csv);
}

static size_t bom_length(const char *p, size_t n) {
    return n >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
}

/* Reads until buf is full or the end of the file; *got bytes. */
static qkv_status read_full(int fd, char *buf, size_t cap, size_t *got, const char *path) {
    *got = 0;
    while (*got < cap) {
        ssize_t k = read(fd, buf + *got, cap - *got);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return qkv__data_io_fail("read failed", path);
        if (k == 0) break;
        *got += (size_t)k;
    }
    return QKV_OK;
}

static qkv_status parse_file(reader *r, qkv_labeled_format fmt, const char *path) {
    int fd;
    QKV_TRY(qkv__open_regular(path, 0, &fd, NULL));
    char *buf = qkv__alloc(READ_CHUNK);
    if (!buf) {
        close(fd);
        return qkv__fail(QKV_ERR_NOMEM, "%s: a read buffer", path);
    }
    text_parser tp;
    tp_init(&tp, r, fmt);
    qkv_status s = QKV_OK;
    for (int first = 1; s == QKV_OK; first = 0) {
        size_t got;
        s = read_full(fd, buf, READ_CHUNK, &got, path);
        if (s != QKV_OK || got == 0) break;
        size_t skip = first ? bom_length(buf, got) : 0;
        s = tp_feed(&tp, buf + skip, got - skip);
    }
    if (s == QKV_OK) s = tp_finish(&tp);
    tp_free(&tp);
    qkv__free(buf);
    close(fd);
    return s;
}

/* ---------------------------------------------------------------- class folders */

static int cmp_cstr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The entries of dir not starting with '.', sorted by bytes: (*list)[0..*n) point into *pool.
 * The caller frees *list and *pool. */
static qkv_status list_dir(const char *dir, qkv__buf *pool, const char ***list, size_t *n) {
    *list = NULL;
    *n = 0;
    DIR *dh = opendir(dir);
    if (!dh) return qkv__data_io_fail("cannot list", dir);
    qkv__buf offs = {0};
    qkv_status s = QKV_OK;
    struct dirent *e;
    errno = 0;
    while (s == QKV_OK && (e = readdir(dh)) != NULL) {
        if (e->d_name[0] == '.') continue;
        size_t off = pool->len;
        s = qkv__buf_put(pool, e->d_name, strlen(e->d_name) + 1);
        if (s == QKV_OK) s = qkv__buf_put(&offs, &off, sizeof off);
        errno = 0;
    }
    if (s == QKV_OK && errno != 0) s = qkv__data_io_fail("cannot list", dir);
    closedir(dh);
    size_t count = offs.len / sizeof(size_t);
    if (s == QKV_OK && count > 0) {
        *list = qkv__calloc(count, sizeof **list);
        if (!*list) s = qkv__fail(QKV_ERR_NOMEM, "%s: %zu names", dir, count);
    }
    if (s == QKV_OK) {
        for (size_t i = 0; i < count; i++) {
            size_t off;
            memcpy(&off, offs.p + i * sizeof off, sizeof off);
            (*list)[i] = pool->p + off;
        }
        if (count) qsort(*list, count, sizeof **list, cmp_cstr);
        *n = count;
    }
    qkv__buf_free(&offs);
    return s;
}

static qkv_status join(char *out, const char *a, const char *b) {
    int w = snprintf(out, PATH_MAX, "%s/%s", a, b);
    if (w < 0 || w >= PATH_MAX) return qkv__fail(QKV_ERR_INVALID_ARG, "%s/%s: path too long", a, b);
    return QKV_OK;
}

/* One file of a class folder: one example, its text the whole file (BOM and trailing line
 * ends dropped), its label the folder's name. */
static qkv_status read_example_file(reader *r, const char *path, const char *label,
                                    qkv__buf *content) {
    QKV_TRY(qkv__lab_source(r->d, path));
    int fd;
    uint64_t fsize;
    QKV_TRY(qkv__open_regular(path, 1, &fd, &fsize));
    qkv_status s = QKV_OK;
    size_t got = 0;
    if (fsize > r->max)
        s = qkv__lab_fail(r->d, 0, "%lld bytes, more than max_record_bytes (%zu)", (long long)fsize,
                          r->max);
    content->len = 0;
    if (s == QKV_OK) s = qkv__buf_reserve(content, r->max + 1);
    if (s == QKV_OK) s = read_full(fd, content->p, r->max + 1, &got, path);
    close(fd);
    if (s == QKV_OK && got > r->max) /* grew after fstat */
        s = qkv__lab_fail(r->d, 0, "more than max_record_bytes (%zu)", r->max);
    if (s != QKV_OK) return s;
    const char *p = content->p;
    size_t skip = bom_length(p, got);
    p += skip;
    got -= skip;
    while (got && (p[got - 1] == '\n' || p[got - 1] == '\r')) got--;
    QKV_TRY(qkv__lab_add(r->d, 0, p, got, NULL, 0));
    return qkv__lab_label(r->d, label, strlen(label));
}

static qkv_status read_class(reader *r, const char *class_dir, const char *label,
                             qkv__buf *content) {
    qkv__buf pool = {0};
    const char **files;
    size_t n;
    qkv_status s = list_dir(class_dir, &pool, &files, &n);
    char path[PATH_MAX];
    for (size_t i = 0; i < n && s == QKV_OK; i++) {
        s = join(path, class_dir, files[i]);
        if (s == QKV_OK) s = read_example_file(r, path, label, content);
    }
    qkv__free(files);
    qkv__buf_free(&pool);
    return s;
}

static qkv_status read_dir(reader *r, const char *root) {
    if (r->o.problem != QKV_PROBLEM_SINGLE_LABEL)
        return qkv__fail(QKV_ERR_INVALID_ARG,
                         "%s: a directory of class folders gives single labels only", root);
    qkv__buf pool = {0}, content = {0};
    const char **classes;
    size_t n;
    qkv_status s = list_dir(root, &pool, &classes, &n);
    char path[PATH_MAX];
    for (size_t i = 0; i < n && s == QKV_OK; i++) {
        struct stat sb;
        s = join(path, root, classes[i]);
        /* lstat: a symbolic link is not a class folder; files beside the folders are ignored */
        if (s != QKV_OK || lstat(path, &sb) != 0 || !S_ISDIR(sb.st_mode)) continue;
        size_t bad;
        if (!qkv__utf8_valid(classes[i], strlen(classes[i]), &bad))
            s = qkv__fail(QKV_ERR_FORMAT, "%s: bad encoding: the folder name is not UTF-8", path);
        else
            s = read_class(r, path, classes[i], &content);
    }
    qkv__free(classes);
    qkv__buf_free(&pool);
    qkv__buf_free(&content);
    return s;
}

/* ---------------------------------------------------------------- entry points */

static qkv_labeled_format by_extension(const char *path) {
    const char *slash = strrchr(path, '/'), *dot = strrchr(path, '.');
    if (!dot || (slash && dot < slash)) return QKV_LABELED_AUTO;
    if (strcasecmp(dot, ".tsv") == 0) return QKV_LABELED_TSV;
    if (strcasecmp(dot, ".csv") == 0) return QKV_LABELED_CSV;
    if (strcasecmp(dot, ".jsonl") == 0 || strcasecmp(dot, ".ndjson") == 0 ||
        strcasecmp(dot, ".json") == 0)
        return QKV_LABELED_JSONL;
    return QKV_LABELED_AUTO;
}

static qkv_status unknown_format(const char *path) {
    return qkv__fail(QKV_ERR_INVALID_ARG,
                     "%s: cannot tell the format from the name (.tsv, .csv, .jsonl, .ndjson, "
                     ".json or a directory): set the format option",
                     path);
}

qkv_status qkv_labeled_load(const char *path, const qkv_labeled_options *opts, qkv_labeled **out) {
    if (out) *out = NULL;
    if (!path || !out) return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_labeled_load: NULL argument");
    reader r;
    QKV_TRY(resolve(&r, opts, "qkv_labeled_load: opts"));
    qkv_labeled_format fmt = r.o.format;
    struct stat sb;
    if (fmt == QKV_LABELED_AUTO)
        fmt = stat(path, &sb) == 0 && S_ISDIR(sb.st_mode) ? QKV_LABELED_DIR : by_extension(path);
    if (fmt == QKV_LABELED_AUTO) return unknown_format(path);
    QKV_TRY(qkv__lab_new(r.o.problem, &r.d));
    qkv_status s;
    if (fmt == QKV_LABELED_DIR) {
        s = read_dir(&r, path);
    } else {
        s = qkv__lab_source(r.d, path);
        if (s == QKV_OK) s = parse_file(&r, fmt, path);
    }
    if (s == QKV_OK) s = qkv__lab_finish(r.d, path);
    if (s != QKV_OK) {
        qkv_labeled_free(r.d);
        return s;
    }
    *out = r.d;
    return QKV_OK;
}

qkv_status qkv__labeled_parse(const char *name, const void *data, size_t len,
                              const qkv_labeled_options *opts, size_t chunk, qkv_labeled **out) {
    *out = NULL;
    reader r;
    QKV_TRY(resolve(&r, opts, "qkv__labeled_parse: opts"));
    qkv_labeled_format fmt = r.o.format ? r.o.format : by_extension(name);
    if (fmt == QKV_LABELED_AUTO || fmt == QKV_LABELED_DIR) return unknown_format(name);
    QKV_TRY(qkv__lab_new(r.o.problem, &r.d));
    qkv_status s = qkv__lab_source(r.d, name);
    text_parser tp;
    tp_init(&tp, &r, fmt);
    const char *p = data;
    size_t skip = bom_length(p, len);
    p += skip;
    len -= skip;
    if (chunk == 0) chunk = len ? len : 1;
    for (size_t i = 0; i < len && s == QKV_OK; i += chunk)
        s = tp_feed(&tp, p + i, len - i < chunk ? len - i : chunk);
    if (s == QKV_OK) s = tp_finish(&tp);
    tp_free(&tp);
    if (s == QKV_OK) s = qkv__lab_finish(r.d, name);
    if (s != QKV_OK) {
        qkv_labeled_free(r.d);
        return s;
    }
    *out = r.d;
    return QKV_OK;
}
