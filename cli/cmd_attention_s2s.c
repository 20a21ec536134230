/* cmd_attention_s2s.c — `qkv attention` on an encoder-decoder (MarianMT): the maps of
 * qkv_seq2seq_attention, the forward that translation runs, in three stacks — the encoder's
 * self-attention over the source, the decoder's causal self-attention over the target and the
 * cross-attention of each target token over the source — saved as safetensors, drawn as PNGs
 * (heatmap.c) and as one offline HTML page with a stack selector (attn_html.c). The target is
 * --target-text (tokenized with target.spm, as MarianTokenizer's text_target) or else qkv's
 * own greedy translation of the source. Rollout is computed for the encoder only; the head
 * summaries for every stack (distance and previous-token share only where queries and keys
 * are one sequence). */
#include "attn_cmd.h"
#include "attn_html.h"
#include "cli.h"
#include "heatmap.h"
#include "textio.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CMD ATTN_CMD

enum { ENC, DEC, CROSS, NK };
static const char *const kind_file[NK] = {"encoder", "decoder", "cross"};
static const char *const kind_title[NK] = {"encoder self-attention", "decoder self-attention",
                                           "cross-attention"};

typedef struct {
    qkv_seq2seq *m;
    qkv_tokenizer *stok, *ttok; /* source.spm, target.spm (both with vocab.json) */
    qkv_encoding *src;
    int64_t S, T;
    int32_t *dec, *labels; /* [T] the decoder input; the target tokens (labels) */
    int64_t L[NK], H[NK];
    char **slab, **tlab; /* [S], [T] token labels */
    char *target;        /* the target's text (decoded without special tokens) */
    int greedy, cut;     /* the target is qkv's translation; it hit max_length before EOS */
    float *probs;        /* everything qkv_seq2seq_attention writes */
    float *map[NK];      /* into probs: [L, H, R, C] each */
    float *roll;         /* [S, S] rollout of the encoder */
    qkv_head_stats *stats[NK];
} s2s_job;

static void job_free(s2s_job *j) {
    for (int64_t i = 0; j->slab && i < j->S; i++) free(j->slab[i]);
    for (int64_t i = 0; j->tlab && i < j->T; i++) free(j->tlab[i]);
    free(j->slab), free(j->tlab), free(j->dec), free(j->labels), free(j->target);
    free(j->probs), free(j->roll);
    for (int k = 0; k < NK; k++) free(j->stats[k]);
    qkv_encoding_free(j->src);
    qkv_tokenizer_free(j->stok);
    qkv_tokenizer_free(j->ttok);
    qkv_seq2seq_free(j->m);
}

static int64_t rows_of(const s2s_job *j, int k) { return k == ENC ? j->S : j->T; }
static int64_t cols_of(const s2s_job *j, int k) { return k == DEC ? j->T : j->S; }
static char **row_labels(const s2s_job *j, int k) { return k == ENC ? j->slab : j->tlab; }
static char **col_labels(const s2s_job *j, int k) { return k == DEC ? j->tlab : j->slab; }

static int oom(void) {
    fprintf(stderr, "qkv %s: out of memory\n", CMD);
    return EXIT_FAIL;
}

/* Options of the other models that have no meaning here. */
static int check_options(const attn_opts *o) {
    if (o->pair)
        return cli_usage_error(CMD,
                               "--pair is for encoders (BERT); %s is a translation "
                               "model (give the target with --target-text)",
                               o->model);
    if ((o->target && strcmp(o->target, "none") != 0) || o->label || o->compare)
        return cli_usage_error(CMD, "saliency (--target, --label, --compare) is not available for "
                                    "encoder-decoder models; the target sentence goes in "
                                    "--target-text");
    return EXIT_OK;
}

static int load(s2s_job *j, const attn_opts *o) {
    qkv_status s;
    if ((s = qkv_seq2seq_load(o->model, &j->m)) != QKV_OK) return cli_report(o->model, s);
    if ((s = qkv_tokenizer_load(o->model, &j->stok)) != QKV_OK) return cli_report(o->model, s);
    if ((s = qkv_tokenizer_load_target(o->model, &j->ttok)) != QKV_OK)
        return cli_report(o->model, s);
    for (int k = 0; k < NK; k++) {
        j->L[k] = qkv_seq2seq_num_layers(j->m, k != ENC);
        j->H[k] = qkv_seq2seq_num_heads(j->m, k != ENC);
    }
    const int64_t L = j->L[ENC] > j->L[DEC] ? j->L[ENC] : j->L[DEC];
    const int64_t H = j->H[ENC] > j->H[DEC] ? j->H[ENC] : j->H[DEC];
    if (o->layer >= L || o->head >= H)
        return cli_usage_error(CMD, "the model has layers 0..%lld and heads 0..%lld",
                               (long long)L - 1, (long long)H - 1);
    return EXIT_OK;
}

/* The source's ids ("</s>" appended), refused past max_position_embeddings. */
static int tokenize_source(s2s_job *j, const attn_opts *o) {
    qkv_status s = qkv_tokenizer_encode(j->stok, o->text, strlen(o->text), NULL, 0, NULL, &j->src);
    if (s != QKV_OK) return cli_report("tokenizing the text", s);
    j->S = (int64_t)j->src->n;
    const int64_t P = qkv_seq2seq_max_source(j->m);
    if (j->S > P) {
        fprintf(stderr,
                "qkv %s: the text is %lld tokens; %s reads at most %lld "
                "(max_position_embeddings)\n",
                CMD, (long long)j->S, o->model, (long long)P);
        return EXIT_USAGE;
    }
    if (j->S < 1) {
        fprintf(stderr, "qkv %s: the text gives no tokens\n", CMD);
        return EXIT_USAGE;
    }
    return EXIT_OK;
}

/* The target tokens: --target-text's (with "</s>"), or the greedy translation's. */
static int target_tokens(s2s_job *j, const attn_opts *o, qkv_runtime *rt) {
    const int64_t P = qkv_seq2seq_max_source(j->m);
    const int32_t eos = qkv_seq2seq_eos_token(j->m);
    qkv_status s;
    if (o->target_text) {
        qkv_encoding *e = NULL;
        s = qkv_tokenizer_encode(j->ttok, o->target_text, strlen(o->target_text), NULL, 0, NULL,
                                 &e);
        if (s != QKV_OK) return cli_report("tokenizing --target-text", s);
        int64_t n = (int64_t)e->n;
        int rc = EXIT_OK;
        if (n == 0 || (n == 1 && e->ids[0] == eos)) {
            fprintf(stderr, "qkv %s: --target-text gives no tokens\n", CMD);
            rc = EXIT_USAGE;
        } else if (n > P) {
            fprintf(stderr,
                    "qkv %s: --target-text is %lld tokens; %s reads at most %lld "
                    "(max_position_embeddings)\n",
                    CMD, (long long)n, o->model, (long long)P);
            rc = EXIT_USAGE;
        } else if (!(j->labels = malloc(sizeof(int32_t) * (size_t)n))) {
            rc = oom();
        } else {
            memcpy(j->labels, e->ids, sizeof(int32_t) * (size_t)n);
            j->T = n;
        }
        qkv_encoding_free(e);
        return rc;
    }
    qkv_translate_options to;
    qkv_seq2seq_default_options(j->m, &to);
    to.num_beams = 1;
    const int64_t cap = qkv_seq2seq_max_output(j->m, &to);
    if (cap < 1) return cli_report("translation options", QKV_ERR_INVALID_ARG);
    if (!(j->labels = malloc(sizeof(int32_t) * (size_t)cap))) return oom();
    int64_t n = 0;
    s = qkv_seq2seq_generate(rt, j->m, j->src->ids, &j->S, 1, &to, j->labels, &n, NULL);
    if (s != QKV_OK) return cli_report("translating the text", s);
    if (n < 1) {
        fprintf(stderr, "qkv %s: the greedy translation is empty\n", CMD);
        return EXIT_FAIL;
    }
    j->T = n;
    j->greedy = 1;
    j->cut = j->labels[n - 1] != eos;
    return EXIT_OK;
}

/* The decoder input (start, then the labels but the last), the target text and the labels. */
static int prepare_target(s2s_job *j) {
    const int64_t T = j->T;
    j->dec = malloc(sizeof(int32_t) * (size_t)T);
    j->slab = calloc((size_t)j->S, sizeof *j->slab);
    j->tlab = calloc((size_t)T, sizeof *j->tlab);
    if (!j->dec || !j->slab || !j->tlab) return oom();
    j->dec[0] = qkv_seq2seq_start_token(j->m);
    memcpy(j->dec + 1, j->labels, sizeof(int32_t) * (size_t)(T - 1));
    char *txt = NULL;
    size_t len = 0;
    qkv_status s = qkv_tokenizer_decode(j->ttok, j->labels, (size_t)T, 1, &txt, &len);
    if (s != QKV_OK) return cli_report("decoding the target", s);
    j->target = utf8_clean(txt, len);
    qkv_free(txt);
    if (!j->target) return oom();
    for (int64_t i = 0; i < j->S; i++)
        if (!(j->slab[i] = attn_token_label(j->stok, j->src->ids[i], 1))) return oom();
    for (int64_t i = 0; i < T; i++)
        if (!(j->tlab[i] = attn_token_label(j->ttok, j->dec[i], 1))) return oom();
    return EXIT_OK;
}

/* maps, the encoder's rollout, marks and summaries */
static int compute(s2s_job *j, qkv_runtime *rt) {
    size_t n = 0;
    qkv_status s = qkv_seq2seq_attention_len(j->m, j->S, j->T, &n);
    if (s != QKV_OK) return cli_report("attention maps", s);
    j->probs = malloc(n * sizeof(float));
    j->roll = malloc(sizeof(float) * (size_t)(j->S * j->S));
    uint8_t *smarks = calloc((size_t)j->S, 1), *tmarks = calloc((size_t)j->T, 1);
    int rc = j->probs && j->roll && smarks && tmarks ? EXIT_OK : oom();
    for (int k = 0; rc == EXIT_OK && k < NK; k++)
        if (!(j->stats[k] = calloc((size_t)(j->L[k] * j->H[k]), sizeof *j->stats[k]))) rc = oom();
    if (rc == EXIT_OK) {
        s = qkv_seq2seq_attention(rt, j->m, j->src->ids, j->S, j->dec, j->T, j->probs, n);
        j->map[ENC] = j->probs;
        j->map[DEC] = j->map[ENC] + j->L[ENC] * j->H[ENC] * j->S * j->S;
        j->map[CROSS] = j->map[DEC] + j->L[DEC] * j->H[DEC] * j->T * j->T;
        if (s == QKV_OK)
            s = qkv_attention_rollout(j->map[ENC], j->L[ENC], j->H[ENC], j->S, j->roll);
        if (s != QKV_OK) rc = cli_report("attention maps", s);
    }
    /* marks: the first key (the decoder's: its start token) and </s> */
    const int32_t eos = qkv_seq2seq_eos_token(j->m);
    for (int64_t i = 0; rc == EXIT_OK && i < j->S; i++)
        smarks[i] =
            (uint8_t)((i == 0 ? QKV_MARK_CLS : 0) | (j->src->ids[i] == eos ? QKV_MARK_SEP : 0));
    for (int64_t i = 0; rc == EXIT_OK && i < j->T; i++)
        tmarks[i] = (uint8_t)((i == 0 ? QKV_MARK_CLS : 0) | (j->dec[i] == eos ? QKV_MARK_SEP : 0));
    for (int k = 0; rc == EXIT_OK && k < NK; k++) {
        const int64_t R = rows_of(j, k), C = cols_of(j, k);
        for (int64_t lh = 0; rc == EXIT_OK && lh < j->L[k] * j->H[k]; lh++) {
            qkv_head_stats *hs = &j->stats[k][lh];
            hs->struct_size = sizeof *hs;
            const float *p = j->map[k] + lh * R * C;
            s = k == CROSS ? qkv_attention_head_stats_cross(p, R, C, smarks, hs)
                           : qkv_attention_head_stats(p, R, k == ENC ? smarks : tmarks, hs);
            if (s != QKV_OK) rc = cli_report("head summaries", s);
        }
    }
    free(smarks), free(tmarks);
    return rc;
}

static const char *target_note(const s2s_job *j) {
    return !j->greedy ? "the target is --target-text"
           : j->cut   ? "the target is qkv's own greedy translation (--target-text not given), cut "
                        "at max_length before </s>"
                      : "the target is qkv's own greedy translation (--target-text not given)";
}

static void print_table(const s2s_job *j) {
    printf("target: %s\n", target_note(j));
    printf("  \"%s\"\n", j->target);
    printf("%lld source tokens:", (long long)j->S);
    for (int64_t i = 0; i < j->S; i++) printf(" %s", j->slab[i]);
    printf("\n%lld decoder tokens:", (long long)j->T);
    for (int64_t i = 0; i < j->T; i++) printf(" %s", j->tlab[i]);
    printf("\n");
    static const char *const cls[NK] = {"first", "start", "first"};
    for (int k = 0; k < NK; k++) {
        printf("\n%s [%lld x %lld]\nlayer head  entropy  distance  %6s  %6s  previous\n",
               kind_title[k], (long long)rows_of(j, k), (long long)cols_of(j, k), cls[k], "</s>");
        for (int64_t l = 0; l < j->L[k]; l++)
            for (int64_t h = 0; h < j->H[k]; h++) {
                const qkv_head_stats *s = &j->stats[k][l * j->H[k] + h];
                printf("%5lld %4lld  %7.3f  ", (long long)l, (long long)h, s->entropy);
                if (isnan(s->distance))
                    printf("%8s", "-");
                else
                    printf("%8.2f", s->distance);
                printf("  %6.3f  %6.3f  ", s->cls, s->sep);
                if (isnan(s->prev))
                    printf("%8s\n", "-");
                else
                    printf("%8.3f\n", s->prev);
            }
    }
}

static int write_tensors(const s2s_job *j, const attn_opts *o, const char *path) {
    const int64_t nl = j->L[ENC] + 2 * j->L[DEC];
    qkv_st_write_tensor *t = calloc((size_t)nl + 4, sizeof *t);
    char(*names)[40] = calloc((size_t)nl, sizeof *names);
    int64_t(*shapes)[3] = calloc(NK, sizeof *shapes);
    int64_t ss[2] = {j->S, j->S}, s1[1] = {j->S}, t1[1] = {j->T};
    char *stoks = attn_tokens_json(j->slab, j->S), *ttoks = attn_tokens_json(j->tlab, j->T);
    char *text = utf8_clean(o->text, strlen(o->text));
    int rc = EXIT_FAIL;
    if (t && names && shapes && stoks && ttoks && text) {
        size_t nt = 0;
        for (int k = 0; k < NK; k++) {
            const int64_t R = rows_of(j, k), C = cols_of(j, k);
            shapes[k][0] = j->H[k], shapes[k][1] = R, shapes[k][2] = C;
            for (int64_t l = 0; l < j->L[k]; l++, nt++) {
                snprintf(names[nt], sizeof names[nt], "%s.layer.%lld", kind_file[k], (long long)l);
                t[nt] = (qkv_st_write_tensor){names[nt], QKV_DTYPE_F32, 3, shapes[k],
                                              j->map[k] + l * j->H[k] * R * C};
            }
        }
        t[nt++] = (qkv_st_write_tensor){"encoder.rollout", QKV_DTYPE_F32, 2, ss, j->roll};
        t[nt++] = (qkv_st_write_tensor){"source_ids", QKV_DTYPE_I32, 1, s1, j->src->ids};
        t[nt++] = (qkv_st_write_tensor){"decoder_ids", QKV_DTYPE_I32, 1, t1, j->dec};
        t[nt++] = (qkv_st_write_tensor){"target_ids", QKV_DTYPE_I32, 1, t1, j->labels};
        const char *keys[] = {"format",      "model",         "text",          "target",
                              "target_from", "source_tokens", "decoder_tokens"};
        const char *vals[] = {"qkv attention (encoder-decoder): encoder.layer.N [heads, source, "
                              "source], decoder.layer.N [heads, target, target], cross.layer.N "
                              "[heads, target, source] probabilities",
                              o->model,
                              text,
                              j->target,
                              j->greedy ? (j->cut ? "greedy translation by qkv (cut at max_length)"
                                                  : "greedy translation by qkv")
                                        : "--target-text",
                              stoks,
                              ttoks};
        qkv_status s = qkv_safetensors_write(path, t, nt, keys, vals, 7);
        rc = s == QKV_OK ? EXIT_OK : cli_report(path, s);
    } else {
        oom();
    }
    free(t), free(names), free(shapes), free(stoks), free(ttoks), free(text);
    return rc;
}

/* The three stacks as the page and the PNGs take them. */
static void stacks(const s2s_job *j, attn_stack st[NK]) {
    static const char *const cls[NK] = {"first", "start", "first"};
    for (int k = 0; k < NK; k++)
        st[k] = (attn_stack){kind_title[k],
                             j->L[k],
                             j->H[k],
                             rows_of(j, k),
                             cols_of(j, k),
                             (const char *const *)row_labels(j, k),
                             (const char *const *)col_labels(j, k),
                             j->map[k],
                             k == ENC ? j->roll : NULL,
                             j->stats[k],
                             cls[k],
                             "</s>"};
}

static int write_pngs(const s2s_job *j, const attn_opts *o, int *count) {
    char path[4200], prefix[16];
    attn_stack st[NK];
    stacks(j, st);
    int rc = EXIT_OK;
    for (int k = 0; rc == EXIT_OK && k < NK; k++) {
        snprintf(prefix, sizeof prefix, "%s_", kind_file[k]);
        rc = attn_stack_pngs(o, &st[k], prefix, count);
    }
    if (rc != EXIT_OK) return rc;
    snprintf(path, sizeof path, "%s/encoder_rollout.png", o->out);
    const char *const *sl = (const char *const *)j->slab;
    const cli_heat r = {j->roll, j->S, j->S, sl, sl, "encoder: attention rollout over all layers",
                        1.0f};
    if (cli_heatmap_png(path, &r) != 0) return attn_png_failed(path);
    ++*count;
    return EXIT_OK;
}

/* Every output name is new or a regular file, before anything is written. */
static int check_outputs(const s2s_job *j, const attn_opts *o) {
    char path[4200];
    static const char *fixed[] = {"attention.safetensors", "attention.html", "encoder_rollout.png"};
    for (int k = 0; k < 3; k++) {
        snprintf(path, sizeof path, "%s/%s", o->out, fixed[k]);
        if (attn_check_file(path)) return EXIT_USAGE;
    }
    for (int k = 0; k < NK; k++)
        for (int64_t l = 0; l < j->L[k]; l++) {
            snprintf(path, sizeof path, "%s/%s_layer%02lld_heads.png", o->out, kind_file[k],
                     (long long)l);
            if (attn_check_file(path)) return EXIT_USAGE;
            for (int64_t h = 0; h < j->H[k]; h++) {
                snprintf(path, sizeof path, "%s/%s_layer%02lld_head%02lld.png", o->out,
                         kind_file[k], (long long)l, (long long)h);
                if (attn_check_file(path)) return EXIT_USAGE;
            }
        }
    return EXIT_OK;
}

static int write_html(const s2s_job *j, const attn_opts *o, const char *path) {
    attn_stack st[NK];
    stacks(j, st);
    char note[512];
    snprintf(note, sizeof note,
             "%s. Decoder and cross-attention rows: row t is the step that reads target token t "
             "(the start token first) and predicts token t + 1. Rollout: encoder only.",
             target_note(j));
    char *text = utf8_clean(o->text, strlen(o->text));
    const attn_page page = {.model = o->model,
                            .text = text ? text : "",
                            .target = j->target,
                            .note = note,
                            .stacks = st,
                            .n_stacks = NK};
    int rc = EXIT_OK;
    if (attn_html_write(path, &page) != 0) {
        fprintf(stderr, "qkv %s: cannot write %s: %s\n", CMD, path, strerror(errno));
        rc = EXIT_FAIL;
    }
    free(text);
    return rc;
}

int cmd_attention_seq2seq(const attn_opts *o) {
    s2s_job j;
    memset(&j, 0, sizeof j);
    qkv_runtime *rt = NULL;
    int rc = check_options(o);
    if (rc == EXIT_OK) rc = load(&j, o);
    if (rc == EXIT_OK) rc = tokenize_source(&j, o);
    if (rc == EXIT_OK) {
        qkv_status s = qkv_runtime_create((int)o->threads, &rt);
        if (s != QKV_OK) rc = cli_report("threads", s);
    }
    if (rc == EXIT_OK) rc = target_tokens(&j, o, rt);
    if (rc == EXIT_OK) rc = prepare_target(&j);
    if (rc == EXIT_OK) rc = compute(&j, rt);
    if (rc == EXIT_OK) rc = attn_prepare_out(o->out);
    if (rc == EXIT_OK) rc = check_outputs(&j, o);
    char path[4200];
    int pngs = 0;
    if (rc == EXIT_OK) {
        snprintf(path, sizeof path, "%s/attention.safetensors", o->out);
        rc = write_tensors(&j, o, path);
    }
    if (rc == EXIT_OK) rc = write_pngs(&j, o, &pngs);
    if (rc == EXIT_OK) {
        snprintf(path, sizeof path, "%s/attention.html", o->out);
        rc = write_html(&j, o, path);
    }
    if (rc == EXIT_OK) {
        print_table(&j);
        fprintf(stderr, "qkv %s: wrote %s/attention.safetensors, attention.html and %d PNGs\n", CMD,
                o->out, pngs);
    }
    qkv_runtime_free(rt);
    job_free(&j);
    cli_heatmap_cleanup();
    return rc;
}
