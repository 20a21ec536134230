/* eval.h — internal pieces of the translation metrics (bleu.c, chrf.c): sacreBLEU's text
 * handling over Unicode code points (text.c) and a counter of n-grams (ngrams.c).
 *
 * sacreBLEU works on Python str: code points, Python's whitespace (str.split / str.rstrip),
 * str.lower (full mapping with the final sigma), and for the 'intl' tokenizer the `regex`
 * module's \p{P} \p{S} \p{N}. text.c answers each question from utf8proc and then from the
 * generated exception lists of sacrebleu_compat.h, so every code point is classified as
 * sacreBLEU classifies it. */
#ifndef QKV_EVAL_EVAL_H
#define QKV_EVAL_EVAL_H

#include "qkv.h"

#include <stddef.h>
#include <stdint.h>

/* A growable array of code points (or of token ids). */
typedef struct sb_buf {
    uint32_t *v;
    size_t n, cap;
} sb_buf;

qkv_status qkv__sb_reserve(sb_buf *b, size_t more);
qkv_status qkv__sb_append(sb_buf *b, const uint32_t *v, size_t n);
void qkv__sb_buf_free(sb_buf *b);

/* Strict UTF-8 (as Python's decoder with errors="strict") of NUL-terminated s into out
 * (replaced). Invalid bytes: INVALID_ARG naming `what` (e.g. "reference 2, line 7") and the
 * byte offset. */
qkv_status qkv__sb_decode(const char *s, sb_buf *out, const char *what);

/* Python's str.isspace. */
int qkv__sb_space(uint32_t c);
/* Python's str.lower of in[0..n) into out (replaced). */
qkv_status qkv__sb_lower(const uint32_t *in, size_t n, sb_buf *out);

/* BLEU's tokenizers, applied to line (in place; tmp is scratch), after BLEU's rstrip. */
typedef enum { SB_TOK_13A = 0, SB_TOK_INTL = 1, SB_TOK_NONE = 2 } sb_tokenizer;
qkv_status qkv__sb_tokenize(int tokenizer, sb_buf *line, sb_buf *tmp);

/* Python's str.split(): the [start, end) of each word of s[0..n) into words (pairs, replaced). */
qkv_status qkv__sb_split(const uint32_t *s, size_t n, sb_buf *words);

/* Counts of n-grams. A key is a tag (the n-gram's kind / order) and a run of `len` uint32 in
 * an arena buffer the caller owns and passes to every call (it may grow between calls: keys
 * are offsets). Entries stay in insertion order in e[0..n). */
typedef struct sb_entry {
    uint64_t hash;
    uint32_t tag, len;
    size_t off;
    int64_t count;
} sb_entry;

typedef struct sb_ngrams {
    sb_entry *e;
    size_t n, cap;
    int64_t *slot; /* open addressing: index into e, -1 empty; nslot a power of two */
    size_t nslot;
} sb_ngrams;

void qkv__sb_ng_free(sb_ngrams *t);
void qkv__sb_ng_clear(sb_ngrams *t);
/* The entry of key (tag, arena[off, off + len)), inserted with count 0 if new: its index. */
qkv_status qkv__sb_ng_add(sb_ngrams *t, const sb_buf *arena, uint32_t tag, size_t off, uint32_t len,
                          size_t *index);
/* The entry's index, or -1. */
int64_t qkv__sb_ng_find(const sb_ngrams *t, const sb_buf *arena, uint32_t tag, size_t off,
                        uint32_t len);

/* The id of word w[0..len) in vocab (tag 0; keys copied into arena), a new id if unseen. */
qkv_status qkv__sb_intern(sb_ngrams *vocab, sb_buf *arena, const uint32_t *w, size_t len,
                          uint32_t *id);

/* A new string from printf (free with qkv_free). */
qkv_status qkv__sb_printf(char **text, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#endif
