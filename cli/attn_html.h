/* attn_html.h — the offline HTML page of `qkv attention`: one file with its CSS, JavaScript and
 * data inline (no network): a stack / layer / head selector, the map drawn on a canvas with the
 * tokens as labels and the value under the pointer, the rollout, and the per-head summary
 * table of the stack shown. */
#ifndef QKV_CLI_ATTN_HTML_H
#define QKV_CLI_ATTN_HTML_H

#include "qkv.h"

#include <stdint.h>

/* One stack of maps: every layer's and head's [R, C] (a model's self-attention: R = C = T;
 * an encoder-decoder has three: encoder, decoder, cross). */
typedef struct attn_stack {
    const char *name;   /* for the selector ("encoder self-attention"); plain text */
    int64_t L, H, R, C; /* layers, heads, query rows, key columns */
    const char *const *rows, *const *cols; /* [R] and [C] token labels, valid UTF-8 */
    const float *maps;                     /* [L, H, R, C] */
    const float *rollout;                  /* [C, C] or NULL (none for this stack) */
    const qkv_head_stats *stats;           /* [L * H]; NaN fields shown as a dash */
    const char *cls_name, *sep_name;       /* the table's names of the marked tokens */
} attn_stack;

typedef struct attn_page {
    const char *model, *text, *pair; /* shown at the top; pair may be NULL */
    const char *target;              /* an encoder-decoder's target text, or NULL */
    const char *note;                /* a line below them (what the target is), or NULL */
    const attn_stack *stacks;        /* [n_stacks] >= 1; the first is shown first */
    int n_stacks;
    const float *saliency;     /* [stacks[0].C] gradient x input over stacks[0]'s tokens, or NULL */
    const float *ig;           /* [stacks[0].C] integrated gradients, or NULL */
    const char *saliency_what; /* what they explain ("the logit of label x"), plain text */
    const char *ig_note;       /* the integrated gradients' steps, rule, baseline and
                                  completeness, plain text, or NULL */
} attn_page;

/* Writes the page to path atomically (atomic.h). 0, or -1 with errno set. */
int attn_html_write(const char *path, const attn_page *p);

#endif
