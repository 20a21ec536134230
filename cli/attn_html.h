/* attn_html.h — the offline HTML page of `qkv attention`: one file with its CSS, JavaScript and
 * data inline (no network): a layer / head selector, the map drawn on a canvas with the tokens
 * as labels and the value under the pointer, the rollout, and the per-head summary table. */
#ifndef QKV_CLI_ATTN_HTML_H
#define QKV_CLI_ATTN_HTML_H

#include "qkv.h"

#include <stdint.h>

typedef struct attn_page {
    const char *model, *text, *pair; /* shown at the top; pair may be NULL */
    const char *const *tokens;       /* [T] valid UTF-8 */
    int64_t T, L, H;
    const float *maps;               /* [L, H, T, T] */
    const float *rollout;            /* [T, T] */
    const qkv_head_stats *stats;     /* [L * H] */
    const char *cls_name, *sep_name; /* the table's names of the marked tokens */
    const float *saliency;           /* [T] gradient x input, or NULL */
    const float *ig;                 /* [T] integrated gradients, or NULL */
    const char *saliency_what;       /* what they explain ("the logit of label x"), plain text */
    const char *ig_note;             /* the integrated gradients' steps, rule, baseline and
                                        completeness, plain text, or NULL */
} attn_page;

/* Writes the page to path atomically (atomic.h). 0, or -1 with errno set. */
int attn_html_write(const char *path, const attn_page *p);

#endif
