/* attn_cmd.h — what the two halves of `qkv attention` share: cmd_attention.c (BERT, GPT-2 and
 * Llama: one stack of self-attention maps, saliency) and cmd_attention_s2s.c (encoder-decoders:
 * encoder, decoder and cross-attention stacks). */
#ifndef QKV_CLI_ATTN_CMD_H
#define QKV_CLI_ATTN_CMD_H

#include "attn_html.h"
#include "qkv.h"

#include <stdint.h>

#define ATTN_CMD "attention"

typedef struct attn_opts {
    const char *model, *text, *pair, *out, *label, *target, *compare, *rule, *baseline;
    const char *target_text; /* encoder-decoders: the target sentence (NULL: greedy translation) */
    long layer, head, threads, ig_steps;
} attn_opts;

/* The label of token id: the vocabulary's token string (piece) when piece, else the decoded
 * text of the token; a leading space shown as ␣, line breaks as ↵; valid UTF-8, malloc'd. */
char *attn_token_label(const qkv_tokenizer *tok, int32_t id, int piece);
/* An output path must be new or a regular file: EXIT_OK or EXIT_USAGE after a message. */
int attn_check_file(const char *path);
/* The output directory: made if missing; else it must be a directory. */
int attn_prepare_out(const char *dir);
/* "cannot write PATH: errno" and EXIT_FAIL. */
int attn_png_failed(const char *path);
/* The labels as a JSON list (malloc'd), or NULL. */
char *attn_tokens_json(char *const *labels, int64_t n);

/* The PNGs of one stack into --out: PREFIXlayerNN_headMM.png per head (with the tokens) and
 * PREFIXlayerNN_heads.png per layer (the grid); only --layer's / --head's when given. A
 * non-empty prefix puts the stack's name in the titles. Adds to *count; the exit code. */
int attn_stack_pngs(const attn_opts *o, const attn_stack *s, const char *prefix, int *count);

/* `qkv attention` on an encoder-decoder directory (model_type marian). */
int cmd_attention_seq2seq(const attn_opts *o);

#endif
