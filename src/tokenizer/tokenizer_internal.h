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

/* ---- SentencePiece's precompiled charsmap (charsmap.c): a Darts double-array trie over
 * UTF-8 byte strings whose values are offsets of NUL-terminated replacements in `norm`. */
typedef struct tok_charsmap {
    uint32_t *units; /* the trie, n_units >= 1 */
    size_t n_units;
    char *norm; /* the replacement strings, followed by one extra NUL */
    size_t norm_len;
} tok_charsmap;
/* Parses a precompiled_charsmap blob (le32 trie size in bytes, trie, strings): every size is
 * checked against the bytes present, the strings must be UTF-8. `what` names it in errors. */
qkv_status qkv__charsmap_parse(const uint8_t *blob, size_t n, const char *what, tok_charsmap *out);
void qkv__charsmap_free(tok_charsmap *m);
/* Prefix matches of s[0..n) in the trie. longest = 0: the shortest match (spm_precompiled's
 * results[0], which also stops at a NUL byte); 1: the longest (SentencePiece's normalizer).
 * Returns 1 with *len (bytes of s matched) and the replacement, 0 if nothing matches, or
 * QKV_ERR_FORMAT (negated, < 0) when a value points outside the strings. */
int qkv__charsmap_match(const tok_charsmap *m, const uint8_t *s, size_t n, int longest, size_t *len,
                        const char **rep, size_t *rep_len);

/* ---- components */
enum { TOK_NORM_NONE = 0, TOK_NORM_BERT = 1, TOK_NORM_STEPS = 2, TOK_NORM_SPM = 3 };
/* one step of a tokenizer.json normalizer (a Sequence is several) */
enum {
    TOK_NS_NFC = 1,
    TOK_NS_NFD,
    TOK_NS_NFKC,
    TOK_NS_NFKD,
    TOK_NS_PRECOMPILED,
    TOK_NS_STRIP,
    TOK_NS_REPLACE,
    TOK_NS_PREPEND,
    TOK_NS_LOWERCASE
};
typedef struct tok_nstep {
    int kind;
    int left, right; /* Strip */
    uint32_t *pat;   /* Replace: the pattern's chars (a literal) */
    size_t pat_n;    /* (for a regex "c{n,}" / "c+": pat = {c}, pat_n = 1) */
    size_t pat_min;  /* regex: at least this many c in a run; 0: literal pattern */
    uint32_t *with;  /* Replace content, Prepend text */
    size_t with_n;
    tok_charsmap charsmap; /* Precompiled */
} tok_nstep;

/* SentencePiece's own normalizer (normalizer_spec of a .model / .spm file) */
typedef struct tok_spm_norm {
    tok_charsmap charsmap; /* n_units == 0: identity */
    int add_dummy_prefix, remove_extra_whitespaces, escape_whitespaces;
    char **user; /* user-defined pieces, matched first and kept as they are */
    size_t n_user;
} tok_spm_norm;

typedef struct tok_normalizer {
    int kind;
    int clean_text, handle_chinese, strip_accents, lowercase; /* BERT */
    tok_nstep *steps;                                         /* STEPS */
    size_t n_steps;
    tok_spm_norm spm; /* SPM */
} tok_normalizer;

enum { TOK_PRE_NONE = 0, TOK_PRE_BERT = 1, TOK_PRE_BYTELEVEL = 2, TOK_PRE_META = 3 };
enum { TOK_PREPEND_ALWAYS = 0, TOK_PREPEND_FIRST = 1, TOK_PREPEND_NEVER = 2 };
typedef struct tok_pretokenizer {
    int kind;
    int add_prefix_space, use_regex; /* ByteLevel */
    int ws_split;                    /* Metaspace: after a WhitespaceSplit (a Sequence) */
    uint32_t meta_char;              /* Metaspace replacement */
    int prepend, split;              /* Metaspace prepend_scheme, split */
} tok_pretokenizer;

enum { TOK_MODEL_WORDPIECE = 1, TOK_MODEL_BPE = 2, TOK_MODEL_UNIGRAM = 3 };

/* Unigram (unigram.c). Pieces are the model's own ids; `remap` (Marian: vocab.json) turns
 * them into output ids. spm = 1 follows SentencePiece itself (float sums, only NORMAL and
 * USER_DEFINED pieces in the lattice, min score over NORMAL pieces); 0 follows tokenizers. */
enum {
    TOK_PIECE_NORMAL = 1,
    TOK_PIECE_UNKNOWN = 2,
    TOK_PIECE_CONTROL = 3,
    TOK_PIECE_USER = 4,
    TOK_PIECE_UNUSED = 5,
    TOK_PIECE_BYTE = 6
};
typedef struct tok_unigram {
    qkv__strmap pieces; /* piece -> model id */
    double *scores;     /* [n_pieces] */
    uint8_t *types;     /* [n_pieces] TOK_PIECE_*, NULL: all normal (tokenizers) */
    size_t n_pieces;
    int32_t unk;           /* model id of unk, -1 none */
    int32_t *remap;        /* [n_pieces] output id of each piece, or NULL (identity) */
    int32_t unk_out;       /* output id of an unknown piece, -1: none (an error, as tokenizers) */
    int32_t byte_out[256]; /* output id of <0xNN>, -1 if absent */
    int byte_fallback, spm;
    double min_score, max_score;
    size_t max_len;   /* longest piece in bytes */
    int marian_codes; /* strip a leading ">>xx<<" language code as its own token (Marian) */
} tok_unigram;

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
    int unk_missing;       /* unk_token names no vocabulary entry: unknown text is an error */
    int byte_fallback;     /* an unknown char becomes its <0xNN> tokens if they all exist */
    int32_t byte_tok[256]; /* id of <0xNN>, -1 if absent (byte_fallback) */
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

enum {
    TOK_DEC_NONE = 0,
    TOK_DEC_WORDPIECE = 1,
    TOK_DEC_BYTELEVEL = 2,
    TOK_DEC_STEPS = 3,
    TOK_DEC_MARIAN = 4,
    TOK_DEC_SPM = 5
};
/* steps of a decoder Sequence (each maps the list of token strings, as decode_chain) */
enum { TOK_DS_REPLACE = 1, TOK_DS_BYTEFALLBACK, TOK_DS_FUSE, TOK_DS_STRIP, TOK_DS_META };
typedef struct tok_dstep {
    int kind;
    char *from, *to; /* Replace (UTF-8) */
    uint32_t ch;     /* Strip content, Metaspace replacement */
    size_t start, stop;
    int prepend; /* Metaspace prepend scheme */
} tok_dstep;
typedef struct tok_decoder {
    int kind;
    char *prefix; /* WordPiece */
    int cleanup;
    tok_dstep *steps; /* STEPS */
    size_t n_steps;
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
    tok_nbuf nb, nb2; /* nb2: scratch of normalizer steps and Metaspace */
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
    tok_unigram uni;
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

/* normalize.c: appends the normalized chars of text[a..b) (spans are absolute); tmp is
 * scratch for the steps of a Sequence. */
qkv_status qkv__tok_normalize(const qkv_tokenizer *t, const uint8_t *text, size_t a, size_t b,
                              tok_nbuf *out, tok_nbuf *tmp);
void qkv__tok_normalizer_free(tok_normalizer *n);
/* charsmap.c: tokenizers' Precompiled normalizer (by grapheme) over in -> out; SentencePiece's
 * normalizer over text[a..b) -> out. */
qkv_status qkv__charsmap_normalize(const tok_charsmap *m, const tok_nbuf *in, tok_nbuf *out);
qkv_status qkv__spm_normalize(const tok_spm_norm *z, const uint8_t *text, size_t a, size_t b,
                              tok_nbuf *out);
qkv_status qkv__nb_push(tok_nbuf *nb, uint32_t cp, uint32_t s, uint32_t e);

/* pretokenize.c: Metaspace (after an optional WhitespaceSplit) over nb: writes the new chars
 * to out and the words to words. */
qkv_status qkv__tok_pre_meta(const tok_pretokenizer *p, const tok_nbuf *nb, tok_nbuf *out,
                             tok_words *words);

/* unigram.c: Viterbi segmentation of one word (UTF-8 bytes w[0..n), span[i] = input span of
 * byte i); tokens appended to out. */
qkv_status qkv__unigram_word(const qkv_tokenizer *t, const uint8_t *w, size_t n,
                             const uint32_t (*span)[2], tok_seq *out, void **scratch,
                             size_t *scratch_cap);
void qkv__unigram_free(tok_unigram *u);
/* fills byte_out / max_len / min and max scores once pieces are in (load_json.c, load_spm.c) */
qkv_status qkv__unigram_finish(qkv_tokenizer *t);

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

/* load_spm.c: a SentencePiece model file (Marian's source.spm); vocab_json: Marian's
 * vocab.json mapping pieces to ids, or NULL (ids are the model's). */
qkv_status qkv__tok_load_spm(qkv_tokenizer *t, const char *path, const char *vocab_json);

/* load_json.c / load_vocab.c */
qkv_status qkv__tok_load_json(qkv_tokenizer *t, const char *path);
qkv_status qkv__tok_load_vocab_txt(qkv_tokenizer *t, const char *vocab, const char *config);
/* a {token: id} JSON object (GPT-2's / Marian's vocab.json) into the vocabulary */
qkv_status qkv__tok_load_vocab_json(qkv_tokenizer *t, const char *vocab_json);
qkv_status qkv__tok_load_vocab_merges(qkv_tokenizer *t, const char *vocab_json,
                                      const char *merges_txt);
/* tokenizer.c: shared loader helpers */
qkv_status qkv__tok_add_vocab(qkv_tokenizer *t, const char *tok, size_t len, int64_t id);
/* builds id_to_token, tables, defaults; refuses ids far beyond the tokens present (path names
 * the file in the message) */
qkv_status qkv__tok_finish(qkv_tokenizer *t, const char *path);
/* Truncated texts longer than this many bytes are encoded by prefixes (tokenizer.c; 64 KiB).
 * Tests set 0 (every text) or SIZE_MAX (never: the reference) and read how many encodes ended
 * on a prefix. */
extern size_t qkv__tok_prefix_min;
extern size_t qkv__tok_prefix_used;
/* T5Tokenizer over a spiece.model alone (load_spm.c): n_extra sentinels <extra_id_i> at ids
 * n_pieces + n_extra - 1 - i, the special pieces as added tokens, "$A </s>". */
qkv_status qkv__tok_load_spm_t5(qkv_tokenizer *t, const char *path, int64_t n_extra);
qkv_status qkv__tok_add_added(qkv_tokenizer *t, const char *content, size_t len, int64_t id,
                              int special, int lstrip, int rstrip, int normalized);
qkv_status qkv__tok_template_eos(qkv_tokenizer *t, int32_t eos);
qkv_status qkv__tok_template_bert(qkv_tokenizer *t, const char *cls, const char *sep, int roberta);
/* Tokenizer files (tokenizer.json, vocab.txt, merges.txt) larger than this are refused before
 * anything is read: the largest published tokenizer.json files are tens of MiB. */
#define QKV__MAX_TOKENIZER_FILE ((size_t)1 << 30)
#define QKV__TOK_ID_SLACK 256 /* holes tolerated in the ids of a tiny vocabulary */
/* The whole regular file (qkv__read_regular with that limit). */
qkv_status qkv__read_file(const char *path, char **buf, size_t *len);
/* one "a b" merge of rank `rank` (load_json.c) */
qkv_status qkv__tok_merge_line(qkv_tokenizer *t, const char *path, size_t rank, const char *line,
                               size_t len);

#endif
