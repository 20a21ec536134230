/* tokenizer_internal.h — the pieces of a qkv_tokenizer shared by the files of src/tokenizer.
 *
 * Pipeline of one encode, as in Hugging Face tokenizers:
 *   text --added tokens split (added.c)--> segments --normalizer (normalize.c)--> normalized
 *   chars, each with the byte span [start, end) of the input it came from --pre-tokenizer
 *   (pretokenize.c)--> words --model (wordpiece.c | bpe.c)--> tokens with input byte spans
 *   --truncation, post-processor template, padding (postprocess.c)--> qkv_encoding.
 * Offsets are byte spans into the caller's text throughout; code point offsets are derived at
 * the end. Texts are limited to UINT32_MAX - 1 bytes so spans fit in uint32_t. */
#ifndef QKV_TOKENIZER_INTERNAL_H
#define QKV_TOKENIZER_INTERNAL_H

#include "qkv.h"
#include "tokenizer/hashmap.h"

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

/* A growable array; QKV_TRY-able push through tok_reserve. */
qkv_status qkv__tok_reserve(void **buf, size_t *cap, size_t need, size_t elem);

/* ---- normalized text: one code point and the input bytes it came from */
typedef struct tok_nchar {
    uint32_t cp;
    uint32_t start, end; /* byte span in the input; several chars may share one */
} tok_nchar;

typedef struct tok_nbuf {
    tok_nchar *c;
    size_t n, cap;
} tok_nbuf;

/* ---- tokens of one sequence, before post-processing */
typedef struct tok_seq {
    int32_t *ids;
    uint32_t *start, *end; /* byte spans in the sequence's text */
    uint8_t *special;      /* 1 for added special tokens */
    size_t n, cap;
} tok_seq;
qkv_status qkv__tok_seq_push(tok_seq *s, int32_t id, uint32_t start, uint32_t end, int special);
void qkv__tok_seq_free(tok_seq *s);

/* ---- words: pairs (begin, end) of normalized char indices */
typedef struct tok_words {
    size_t *w; /* 2 per word */
    size_t n, cap;
} tok_words;

/* ---- components */
enum { TOK_NORM_NONE = 0, TOK_NORM_BERT = 1 };
typedef struct tok_normalizer {
    int kind;
    int clean_text, handle_chinese, strip_accents, lowercase;
} tok_normalizer;

enum { TOK_PRE_NONE = 0, TOK_PRE_BERT = 1, TOK_PRE_BYTELEVEL = 2 };
typedef struct tok_pretokenizer {
    int kind;
    int add_prefix_space, use_regex; /* ByteLevel */
} tok_pretokenizer;

enum { TOK_MODEL_WORDPIECE = 1, TOK_MODEL_BPE = 2 };

typedef struct tok_wordpiece {
    int32_t unk_id; /* -1 if the vocabulary lacks unk_token */
    char *prefix;   /* continuing_subword_prefix, "##" */
    size_t prefix_len;
    uint64_t prefix_hash; /* FNV state after the prefix */
    size_t max_chars;     /* max_input_chars_per_word */
    size_t max_token_len; /* longest vocabulary entry in bytes (bounds the search) */
} tok_wordpiece;

struct tok_bpe_cache;
typedef struct tok_bpe {
    qkv__u64map merges;   /* (left id << 32 | right id) -> (rank << 32 | merged id) */
    int32_t byte_id[256]; /* id of the byte-level char of each byte, -1 if absent */
    int byte_level;       /* words are mapped through the GPT-2 byte-to-unicode table */
    int32_t unk_id;       /* -1: none */
    int ignore_merges;
    int fuse_unk;
    struct tok_bpe_cache *cache;
} tok_bpe;

typedef struct tok_piece { /* one element of a template */
    int is_seq;            /* 1: Sequence A/B; 0: special token */
    int seq;               /* 0 = A, 1 = B */
    int32_t type_id;
    int32_t *ids; /* special token ids */
    size_t n_ids;
} tok_piece;

enum { TOK_POST_NONE = 0, TOK_POST_TEMPLATE = 1, TOK_POST_BYTELEVEL = 2 };
typedef struct tok_post {
    int kind;
    tok_piece *single, *pair;
    size_t n_single, n_pair;
    int trim_offsets; /* ByteLevel / Roberta trimming of whitespace in offsets */
    int trim_add_prefix_space;
} tok_post;

enum { TOK_DEC_NONE = 0, TOK_DEC_WORDPIECE = 1, TOK_DEC_BYTELEVEL = 2 };
typedef struct tok_decoder {
    int kind;
    char *prefix; /* WordPiece */
    int cleanup;
} tok_decoder;

typedef struct tok_added {
    char *content;
    size_t len;
    int32_t id;
    int special, lstrip, rstrip, normalized;
} tok_added;

/* Scratch of one encode, reused: a tokenizer keeps one spare (taken and given back under a
 * trylock, so concurrent encodes just allocate their own) to save the allocations of every
 * call. Capacities only grow; a context over QKV_TOK_CTX_KEEP bytes is not kept. */
#define QKV_TOK_CTX_KEEP ((size_t)16 << 20)
typedef struct tok_ctx {
    tok_nbuf nb;
    tok_words words;
    void *scratch;
    size_t scratch_cap;
    uint8_t *wbytes;
    size_t wbytes_cap;
    uint32_t (*wspan)[2];
    size_t wspan_cap;
    tok_seq a, b;
    uint32_t *b2c[2], *c2b[2]; /* byte -> code point and back, per text (postprocess.c) */
    size_t b2c_cap[2], c2b_cap[2];
} tok_ctx;

typedef struct tok_pool {
    pthread_mutex_t lock;
    tok_ctx *spare;
} tok_pool;

struct qkv_tokenizer {
    tok_pool *pool;
    int model;
    qkv__strmap vocab;  /* token -> id (model vocabulary and added tokens) */
    char **id_to_token; /* [n_ids] pointers into vocab's pool, NULL for holes */
    size_t n_ids;       /* 1 + the largest id */
    size_t model_vocab; /* entries of the model vocabulary */
    tok_wordpiece wp;
    tok_bpe bpe;
    tok_normalizer norm;
    tok_pretokenizer pre;
    tok_post post;
    tok_decoder dec;
    tok_added *added;
    size_t n_added;
    uint8_t added_first[256]; /* 1 if some added token starts with this byte */
    qkv_encode_options defaults;
    int32_t special_ids[QKV_SPECIAL_COUNT_];
};

/* normalize.c: appends the normalized chars of text[a..b) (spans are absolute). */
qkv_status qkv__tok_normalize(const qkv_tokenizer *t, const uint8_t *text, size_t a, size_t b,
                              tok_nbuf *out);

/* pretokenize.c: word boundaries over normalized chars (tok_words). */
qkv_status qkv__tok_pre_bert(const tok_nbuf *nb, tok_words *out);
qkv_status qkv__tok_pre_gpt2(const tok_nbuf *nb, size_t first, tok_words *out);

/* wordpiece.c: tokens of one word (normalized chars c[0..n)). */
qkv_status qkv__wordpiece_word(const qkv_tokenizer *t, const tok_nchar *c, size_t n, tok_seq *out,
                               void **scratch, size_t *scratch_cap);

/* bpe.c */
qkv_status qkv__bpe_init(qkv_tokenizer *t);
void qkv__bpe_free(tok_bpe *b);
/* Tokens of one word given as bytes w[0..n) with span[i] = input span of byte i. */
qkv_status qkv__bpe_word(const qkv_tokenizer *t, const uint8_t *w, size_t n,
                         const uint32_t (*span)[2], tok_seq *out);
/* The GPT-2 byte <-> unicode table: code point of byte b; byte of code point (or -1). */
uint32_t qkv__bytelevel_char(uint8_t b);
int qkv__bytelevel_byte(uint32_t cp);

/* postprocess.c: truncation, template, padding; fills out. */
qkv_status qkv__tok_postprocess(const qkv_tokenizer *t, tok_ctx *c, tok_seq *a, tok_seq *b,
                                const qkv_encode_options *o, const uint8_t *text, size_t len,
                                const uint8_t *pair, size_t pair_len, qkv_encoding **out);

/* load_json.c / load_vocab.c */
qkv_status qkv__tok_load_json(qkv_tokenizer *t, const char *path);
qkv_status qkv__tok_load_vocab_txt(qkv_tokenizer *t, const char *vocab, const char *config);
qkv_status qkv__tok_load_vocab_merges(qkv_tokenizer *t, const char *vocab_json,
                                      const char *merges_txt);
/* tokenizer.c: shared loader helpers */
qkv_status qkv__tok_add_vocab(qkv_tokenizer *t, const char *tok, size_t len, int64_t id);
qkv_status qkv__tok_finish(qkv_tokenizer *t); /* builds id_to_token, tables, defaults */
qkv_status qkv__tok_add_added(qkv_tokenizer *t, const char *content, size_t len, int64_t id,
                              int special, int lstrip, int rstrip, int normalized);
qkv_status qkv__tok_template_bert(qkv_tokenizer *t, const char *cls, const char *sep, int roberta);
/* Tokenizer files (tokenizer.json, vocab.txt, merges.txt) larger than this are refused before
 * anything is read: the largest published tokenizer.json files are tens of MiB. */
#define QKV__MAX_TOKENIZER_FILE ((size_t)1 << 30)
/* The whole regular file (qkv__read_regular with that limit). */
qkv_status qkv__read_file(const char *path, char **buf, size_t *len);
/* one "a b" merge of rank `rank` (load_json.c) */
qkv_status qkv__tok_merge_line(qkv_tokenizer *t, const char *path, size_t rank, const char *line,
                               size_t len);

#endif
