/* labeled.h — internals of labelled text for classification (qkv_labeled in qkv.h).
 *
 * labeled.c owns the object: examples, their texts, sources and labels, label names and their
 * order, mapping to a given list of names, the split and the accessors. labeled_read.c owns the
 * file formats (TSV/CSV through libcsv, JSON lines through jansson, class folders) and feeds
 * examples in through qkv__lab_add / qkv__lab_label / qkv__lab_value.
 *
 * Memory: everything lives in a handful of growing buffers (one byte pool for all texts, one
 * for source paths, one for label names, one array of examples), never one allocation per
 * example: qkv__alloc aligns to 64 bytes, and a data set holds hundreds of thousands. */
#ifndef QKV_TRAIN_LABELED_H
#define QKV_TRAIN_LABELED_H

#include "core/error.h"
#include "qkv.h"
#include "tokenizer/hashmap.h"

#include <stddef.h>
#include <stdint.h>

#define QKV__LAB_NO_PAIR SIZE_MAX

/* A growing byte buffer through qkv__alloc (doubling: amortized O(1) appends). */
typedef struct qkv__buf {
    char *p;
    size_t len, cap;
} qkv__buf;

qkv_status qkv__buf_reserve(qkv__buf *b, size_t extra);
qkv_status qkv__buf_put(qkv__buf *b, const void *src, size_t n);
void qkv__buf_free(qkv__buf *b);

typedef struct qkv__lab_example {
    size_t text, text_len; /* offset in the text pool (NUL-terminated there), bytes */
    size_t pair, pair_len; /* QKV__LAB_NO_PAIR: no text_pair */
    size_t src;            /* offset of the source path in the path pool */
    int64_t line;          /* line the record starts on (1-based); 0: a whole file */
    size_t lab;            /* multi-label: index of the first id in labs */
    int32_t label;         /* single-label: the id; multi-label: the number of ids */
    float value;           /* regression */
} qkv__lab_example;

struct qkv_labeled {
    qkv_problem_type problem;
    int64_t n;         /* examples */
    int64_t n_pairs;   /* examples with a text_pair */
    qkv__buf ex;       /* qkv__lab_example [n] */
    qkv__buf text;     /* texts and pairs, each followed by a NUL */
    qkv__buf paths;    /* source paths, each followed by a NUL */
    qkv__buf labs;     /* int32_t: the ids of multi-label examples, back to back */
    qkv__buf names;    /* label names, each followed by a NUL */
    qkv__buf name_off; /* size_t [n_labels]: offset of name k in names */
    int64_t n_labels;
    int64_t multiline, multiline_line; /* TSV/CSV records over several lines; the first's line */
    size_t cur_src;                    /* while loading: the path of the examples being added */
    qkv__strmap intern; /* while loading: name -> id (ids in order of first appearance) */
    qkv__buf seen;      /* while loading: int64_t [n_labels], the last example with label k */
};

/* Used by the readers while loading. */
qkv_status qkv__lab_new(qkv_problem_type problem, qkv_labeled **out);
/* The source path of the examples added from now on. */
qkv_status qkv__lab_source(qkv_labeled *d, const char *path);
/* FORMAT "SOURCE:LINE: what" (line 0: "SOURCE: what"). */
qkv_status qkv__lab_fail(const qkv_labeled *d, int64_t line, const char *fmt, ...) QKV_PRINTF(3, 4);
/* Appends an example: text must be non-empty UTF-8 without NUL bytes, and so must pair if it
 * is not NULL. Its label comes next: qkv__lab_label (once for single-label, any number of
 * times for multi-label) or qkv__lab_value. */
qkv_status qkv__lab_add(qkv_labeled *d, int64_t line, const char *text, size_t text_len,
                        const char *pair, size_t pair_len);
qkv_status qkv__lab_label(qkv_labeled *d, const char *name, size_t len);
/* Sets the value of the last example (regression): finite as a float, else FORMAT. */
qkv_status qkv__lab_value(qkv_labeled *d, double v, const char *as_text);
/* After the last example: FORMAT naming `what` if there is none; sorts the label names. */
qkv_status qkv__lab_finish(qkv_labeled *d, const char *what);

/* Parses data[0..len) as the file `name` would be read (opts->format TSV, CSV or JSONL, or
 * AUTO: by name's extension), fed to the parser in pieces of `chunk` bytes (0: all at once):
 * the result must not depend on it. For the fuzzer and the tests. */
qkv_status qkv__labeled_parse(const char *name, const void *data, size_t len,
                              const qkv_labeled_options *opts, size_t chunk, qkv_labeled **out);

#endif
