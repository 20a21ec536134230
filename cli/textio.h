/* textio.h — reading text inputs line by line, a progress line on stderr, and a few writers
 * shared by the commands that take many texts (embed, search). */
#ifndef QKV_CLI_TEXTIO_H
#define QKV_CLI_TEXTIO_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Lines of a file (or stdin for "-"), without their "\n" / "\r\n". */
typedef struct text_lines {
    char **line;
    size_t *len;
    size_t n, cap;
    uint64_t hash; /* FNV-1a of the whole input: identifies a corpus for a saved index */
} text_lines;

/* 0 on success; else prints a message naming path and returns the exit code (2). */
int text_lines_read(const char *path, text_lines *out);
void text_lines_free(text_lines *t);
/* Appends a copy of s[0..len) to t (zero-initialized or read); 0, or -1 when out of memory. */
int text_lines_push(text_lines *t, const char *s, size_t len);

/* A progress line on stderr, redrawn at most ~10 times a second: "label  done/total  rate  ETA".
 * Enabled when stderr is a terminal or force is set; total 0 means unknown. */
typedef struct progress {
    int on;
    const char *label;
    size_t total;
    double start, last;
    double every; /* > 0: not on a terminal, a full line every this many seconds */
    int lines;    /* lines printed so far */
} progress;
void progress_begin(progress *p, const char *label, size_t total, int force);
/* After progress_begin: when the bar is off (stderr is no terminal), print a whole line every
 * `seconds` instead, for logs of long runs; a run shorter than that prints nothing. */
void progress_lines(progress *p, double seconds);
void progress_update(progress *p, size_t done);
void progress_end(progress *p, size_t done);

/* Length of the valid UTF-8 sequence at u (left bytes available), or 0 if none starts there. */
size_t utf8_valid_len(const unsigned char *u, size_t left);
/* s[0..len) as NUL-terminated valid UTF-8 (malloc'd; NULL when out of memory): each byte that
 * starts no valid sequence becomes U+FFFD. */
char *utf8_clean(const char *s, size_t len);
/* Writes a JSON string literal (escaped) of s[0..len). Invalid UTF-8 bytes become U+FFFD.
 * Every string the CLI writes into JSON goes through this (or json_quote). */
void json_write_string(FILE *f, const char *s, size_t len);
/* The JSON string literal of s, quotes included, for a "%s" in json_printf (malloc'd; NULL
 * when out of memory). */
char *json_quote(const char *s);
/* jansson's string of s with every byte that is not UTF-8 made U+FFFD (json_string refuses
 * such a string: the field would go missing). NULL for NULL or out of memory. */
struct json_t;
struct json_t *cli_json_string(const char *s);
/* x written with fmt (one double conversion, e.g. "%.7g"), or null when x is not finite:
 * JSON has no NaN or Infinity. */
void json_write_number(FILE *f, const char *fmt, double x);
/* printf for a line of JSON whose numbers come from %f / %g conversions: a nan or inf that a
 * conversion printed outside a string is written as null. Strings must already be JSON
 * literals (json_quote). */
void json_printf(FILE *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The k best of row[0..n) into idx, best first; ties keep index order, NaN ranks last
 * (qkv classify's and qkv serve's label ranking). */
void cli_top_k(const float *row, int64_t n, int64_t k, int64_t *idx);

/* Monotonic seconds. */
double now_seconds(void);

/* Shared by embed and search (cmd_embed.c). */
#include "qkv.h"
/* The default model: $QKV_MODEL when set, else the first all-MiniLM-L6-v2 that has a
 * config.json in <exe dir>/../share/qkv/models, <exe dir>/models, <exe dir>/../models (the
 * executable's directory from /proc/self/exe: an installation or a build tree), ./models. */
const char *cli_default_model(void);
/* qkv_model_load with a message (and a hint for a missing model: for the default one, every
 * place it was looked for); returns the exit code. */
int cli_load_model(const char *cmd, const char *dir, qkv_model **m);
/* The same with the linear layers in dtype (qkv_model_options.dtype). */
int cli_load_model_as(const char *cmd, const char *dir, qkv_dtype dtype, qkv_model **m);
/* --dtype's value: f32 or bf16 into *out; else a usage error naming it (the exit code). */
int cli_parse_dtype(const char *cmd, const char *val, qkv_dtype *out);
/* The --dtype spelling of a weight dtype: "f32", "bf16" or "f16". */
const char *cli_dtype_name(qkv_dtype d);
/* Parses a whole number in [lo, hi] for option opt; returns the exit code. */
/* Warns on stderr ("qkv CMD: warning: ...") when d, read from path with quoting, has records that
 * ran over several lines through a quoted field (qkv_labeled_multiline): a TSV whose texts start
 * with '"' merged lines; --no-quotes reads such a file as plain text. */
void cli_warn_multiline(const char *cmd, const char *path, const qkv_labeled *d, int no_quotes);
int cli_parse_count(const char *cmd, const char *opt, const char *val, long lo, long hi, long *out);
/* Embeds t's lines in batches into out [t->n, dim], with progress; returns the exit code. */
int cli_embed_lines(qkv_runtime *rt, const qkv_model *m, const text_lines *t, size_t batch,
                    int force_progress, float *out);

#endif
