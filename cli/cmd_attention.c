/* cmd_attention.c — `qkv attention`: every layer's and head's attention of a model on one text
 * (or text pair), from the library's qkv_model_attention / qkv_lm_attention (the inference
 * forward itself), saved as safetensors, drawn as PNG heatmaps (heatmap.c) and as one offline
 * HTML page (attn_html.c), with the attention rollout and a table of per-head summaries. */
#include "attn_cmd.h"
#include "attn_html.h"
#include "cli.h"
#include "heatmap.h"
#include "textio.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CMD ATTN_CMD

void cmd_attention_help(void) {
    printf(
        "Usage: qkv attention --model DIR --text TEXT [--pair TEXT] [--out DIR] [options]\n"
        "       qkv attention --model MARIAN_DIR --text SOURCE [--target-text TARGET] [--out "
        "DIR]\n\n"
        "Shows what every attention head of a model looks at while it reads TEXT: the\n"
        "probability that each token (a row, the query) gives to each token (a column, the\n"
        "key), for every layer and head, taken from the same forward pass that inference runs.\n"
        "Models: BERT-family encoders (model_type bert; --pair gives a sentence pair, its\n"
        "tokens of type 1) and GPT-2 / Llama decoders (causal: a token sees only those before\n"
        "it). The text is tokenized with the directory's tokenizer and cut to the model's "
        "length.\n\n"
        "Writes into --out DIR (default ./attention; created if missing):\n"
        "  attention.safetensors  layer.N [heads, T, T] for every layer, rollout [T, T], ids and\n"
        "                         type_ids [T]; metadata: tokens (a JSON list), model, text, pair\n"
        "  layerNN_headMM.png     one heatmap per head with the tokens as axis labels\n"
        "  layerNN_heads.png      all heads of a layer side by side\n"
        "  rollout.png            attention rollout (Abnar & Zuidema 2020) over all layers\n"
        "  attention.html         one self-contained page (no network): choose a layer and a\n"
        "                         head, see the value under the pointer, the rollout, the table\n"
        "and prints a table of the heads to stdout: entropy (nats; 0 = all on one token), mean\n"
        "distance (tokens), shares of attention on [CLS] and [SEP] (decoders: the first token\n"
        "and EOS) and on the previous token. Colours run from 0 to 1 on a fixed scale.\n"
        "Saliency: which input tokens drove one number f, through the training backward:\n"
        "gradient x input (sum over the word embedding of df/de * e) and integrated gradients\n"
        "(Sundararajan et al. 2017; the gradient averaged on the straight line from a baseline\n"
        "to the input, times input - baseline), printed, in the page, drawn in saliency.png and\n"
        "saved as saliency and integrated_gradients [T] with f at the input and the baseline.\n"
        "Existing files of these names are replaced (atomically); a directory or special file\n"
        "in their place is refused.\n\n"
        "Options:\n"
        "  --target T     what the saliency explains (default: logit for a classifier,\n"
        "                 next-token for a decoder, similarity with --compare, else none):\n"
        "                 logit       a classifier's (BertForSequenceClassification) label logit\n"
        "                 next-token  a decoder's logit of the token after the text\n"
        "                 similarity  the cosine similarity of the mean-pooled embeddings of the\n"
        "                             text and of --compare (sentence-transformers encoders)\n"
        "                 none        no saliency\n"
        "  --label NAME   logit: the label (a name or an index); next-token: the token (text\n"
        "                 that is one token, or #ID); default: the model's prediction\n"
        "  --compare TEXT the second text of the similarity target (held fixed)\n"
        "  --ig-steps N   integrated-gradient steps m (default 50; 0: gradient x input only)\n"
        "  --ig-rule R    trapezoid (default: m + 1 gradients at alpha = k/m, ends halved) or\n"
        "                 right (m gradients at alpha = 1/m..1, captum's riemann_right)\n"
        "  --baseline B   zero (default: all-zero word embeddings), pad, mask or eos: that\n"
        "                 token's word embedding at every position\n"
        "Encoder-decoders (model_type marian, e.g. OPUS-MT): three stacks of maps from the\n"
        "forward that `qkv translate` runs: the encoder's self-attention over the source [S x S],\n"
        "the decoder's causal self-attention over the target [T x T] and the cross-attention of\n"
        "each target token over the source [T x S] (what the decoder read from the source while\n"
        "predicting the next token). The target is --target-text (tokenized with target.spm,\n"
        "</s> appended; the decoder reads it shifted right after its start token), or else qkv's\n"
        "own greedy translation of the source (the output says which). Texts longer than\n"
        "max_position_embeddings are refused, not cut. Files: encoder.layer.N, decoder.layer.N,\n"
        "cross.layer.N [heads, rows, columns], encoder.rollout, source_ids, decoder_ids,\n"
        "target_ids; PNGs encoder_/decoder_/cross_layerNN_headMM.png and _heads.png grids,\n"
        "encoder_rollout.png; the page has a stack selector. Rollout: encoder only (the decoder\n"
        "also mixes in the source through cross-attention, which rollout does not model). Head\n"
        "table: every stack; distance and previous-token share only where queries and keys are\n"
        "one sequence (not cross); the marked tokens are the first key (the decoder's: its start\n"
        "token) and </s>. No saliency for encoder-decoders (--target, --label, --compare "
        "refused).\n"
        "  --target-text TARGET  the target sentence (encoder-decoders only)\n\n"
        "  --layer L      draw the per-head PNGs of layer L only (default: every layer)\n"
        "  --head H       draw the per-head PNGs of head H only (default: every head)\n"
        "  --threads N    threads (default: QKV_NUM_THREADS or all CPUs)\n\n"
        "Attention weights show where a head reads from, not why the model decides: see\n"
        "docs/INTERPRET.md. Exit codes: 0 ok; 1 failure; 2 bad usage or bad input.\n");
}

typedef attn_opts opts;

/* The options that take a string: stored in their field of opts. */
static const struct {
    const char *flag;
    size_t off;
} string_opts[] = {
    {"--model", offsetof(opts, model)},       {"--text", offsetof(opts, text)},
    {"--pair", offsetof(opts, pair)},         {"--out", offsetof(opts, out)},
    {"--label", offsetof(opts, label)},       {"--target", offsetof(opts, target)},
    {"--compare", offsetof(opts, compare)},   {"--ig-rule", offsetof(opts, rule)},
    {"--baseline", offsetof(opts, baseline)}, {"--target-text", offsetof(opts, target_text)}};

/* 1 if flag is one of string_opts and has a value (then stored). */
static int string_option(opts *o, const char *flag, const char *value) {
    for (size_t k = 0; value && k < sizeof string_opts / sizeof string_opts[0]; k++)
        if (strcmp(flag, string_opts[k].flag) == 0) {
            memcpy((char *)o + string_opts[k].off, &value, sizeof value);
            return 1;
        }
    return 0;
}

static int parse(int argc, char **argv, opts *o) {
    memset(o, 0, sizeof *o);
    o->out = "attention";
    o->layer = o->head = -1;
    o->ig_steps = 50;
    o->rule = "trapezoid";
    o->baseline = "zero";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const int more = i + 1 < argc;
        if (cli_is_help(a)) {
            cmd_attention_help();
            exit(EXIT_OK);
        } else if (string_option(o, a, more ? argv[i + 1] : NULL)) {
            i++;
        } else if (strcmp(a, "--ig-steps") == 0 && more) {
            if (cli_parse_count(CMD, a, argv[++i], 0, 100000, &o->ig_steps)) return EXIT_USAGE;
        } else if (strcmp(a, "--layer") == 0 && more) {
            if (cli_parse_count(CMD, a, argv[++i], 0, 1 << 20, &o->layer)) return EXIT_USAGE;
        } else if (strcmp(a, "--head") == 0 && more) {
            if (cli_parse_count(CMD, a, argv[++i], 0, 1 << 20, &o->head)) return EXIT_USAGE;
        } else if (strcmp(a, "--threads") == 0 && more) {
            if (cli_parse_count(CMD, a, argv[++i], 1, 1024, &o->threads)) return EXIT_USAGE;
        } else {
            return cli_usage_error(CMD, "unknown option or missing value: '%s'", a);
        }
    }
    if (!o->model) return cli_usage_error(CMD, "--model DIR is required");
    if (!o->text) return cli_usage_error(CMD, "--text TEXT is required");
    if (!*o->out) return cli_usage_error(CMD, "--out wants a directory");
    if (o->target && strcmp(o->target, "logit") && strcmp(o->target, "next-token") &&
        strcmp(o->target, "similarity") && strcmp(o->target, "none"))
        return cli_usage_error(CMD,
                               "--target %s: logit, next-token, similarity or none (the target "
                               "sentence of a translation model goes in --target-text)",
                               o->target);
    if (strcmp(o->rule, "trapezoid") && strcmp(o->rule, "right"))
        return cli_usage_error(CMD, "--ig-rule %s: trapezoid or right", o->rule);
    if (strcmp(o->baseline, "zero") && strcmp(o->baseline, "pad") && strcmp(o->baseline, "mask") &&
        strcmp(o->baseline, "eos"))
        return cli_usage_error(CMD, "--baseline %s: zero, pad, mask or eos", o->baseline);
    return EXIT_OK;
}

/* 1: encoder (BERT family), 0: decoder, 2: encoder-decoder (Marian), from DIR/config.json's
 * model_type; -1 after a message. */
static int model_kind(const char *dir) {
    char path[4096];
    struct stat sb;
    if (snprintf(path, sizeof path, "%s/config.json", dir) >= (int)sizeof path ||
        stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fprintf(stderr, "qkv %s: %s: no config.json (a Hugging Face model directory?)\n", CMD, dir);
        return -1;
    }
    json_error_t err;
    json_t *root = json_load_file(path, 0, &err);
    if (!root) {
        fprintf(stderr, "qkv %s: %s:%d: %s\n", CMD, path, err.line, err.text);
        return -1;
    }
    const char *t = json_string_value(json_object_get(root, "model_type"));
    int kind = -1;
    if (t && (strcmp(t, "bert") == 0 || strcmp(t, "roberta") == 0 || strcmp(t, "xlm-roberta") == 0))
        kind = 1;
    else if (t && (strcmp(t, "gpt2") == 0 || strcmp(t, "llama") == 0 || strcmp(t, "mistral") == 0))
        kind = 0;
    else if (t && strcmp(t, "marian") == 0)
        kind = 2;
    else
        fprintf(stderr,
                "qkv %s: %s: model_type %s%s%s is not one qkv draws attention for (bert, gpt2, "
                "llama, marian)\n",
                CMD, path, t ? "'" : "", t ? t : "missing", t ? "'" : "");
    json_decref(root);
    return kind;
}

char *attn_token_label(const qkv_tokenizer *tok, int32_t id, int encoder) {
    const char *s = qkv_tokenizer_id_to_token(tok, id);
    char *dec = NULL;
    size_t len = 0;
    if (!encoder && qkv_tokenizer_decode(tok, &id, 1, 0, &dec, &len) == QKV_OK) s = dec;
    if (!s) s = "?";
    if (!dec) len = strlen(s);
    char *clean = utf8_clean(s, len);
    qkv_free(dec);
    if (!clean) return NULL;
    /* make whitespace visible */
    size_t n = strlen(clean);
    char *out = malloc(3 * n + 4), *o = out;
    for (size_t i = 0; out && i < n; i++) {
        if (clean[i] == ' ' && i == 0)
            memcpy(o, "\xe2\x90\xa3", 3), o += 3;
        else if (clean[i] == '\n')
            memcpy(o, "\xe2\x86\xb5", 3), o += 3;
        else if (clean[i] == '\t' || clean[i] == '\r')
            *o++ = ' ';
        else
            *o++ = clean[i];
    }
    if (out) *o = '\0';
    free(clean);
    return out;
}

int attn_check_file(const char *path) {
    struct stat sb;
    if (lstat(path, &sb) == 0 && !S_ISREG(sb.st_mode)) {
        fprintf(stderr, "qkv %s: %s exists and is not a regular file (%s); not replaced\n", CMD,
                path, S_ISDIR(sb.st_mode) ? "a directory" : "a link or special file");
        return EXIT_USAGE;
    }
    return EXIT_OK;
}

int attn_prepare_out(const char *dir) {
    struct stat sb;
    if (stat(dir, &sb) == 0) {
        if (S_ISDIR(sb.st_mode)) return EXIT_OK;
        fprintf(stderr, "qkv %s: --out %s exists and is not a directory; not replaced\n", CMD, dir);
        return EXIT_USAGE;
    }
    if (mkdir(dir, 0755) != 0) {
        fprintf(stderr, "qkv %s: cannot create %s: %s\n", CMD, dir, strerror(errno));
        return EXIT_USAGE;
    }
    return EXIT_OK;
}

typedef struct {
    int encoder;
    qkv_model *m;
    qkv_lm *lm;
    qkv_tokenizer *own_tok; /* a decoder's (an encoder's belongs to the model) */
    const qkv_tokenizer *tok;
    qkv_encoding *enc;
    int64_t T, L, H;
    char **labels;         /* [T] */
    float *maps;           /* [L, H, T, T] */
    float *roll;           /* [T, T] */
    qkv_head_stats *stats; /* [L * H] */
    uint8_t *marks;        /* [T] */
    int target;            /* a qkv_attr_target, or -1: no saliency */
    float *sal;            /* [T] gradient x input, or NULL */
    float *ig;             /* [T] integrated gradients, or NULL */
    char *sal_label;       /* the label or token explained, or the compared text (UTF-8) */
    char *sal_what;        /* a sentence saying what f is */
    char *ig_note;         /* steps, rule, baseline, completeness */
    qkv_attr_result res;
} job;

static void job_free(job *j) {
    for (int64_t i = 0; j->labels && i < j->T; i++) free(j->labels[i]);
    free(j->labels);
    free(j->maps);
    free(j->roll);
    free(j->stats);
    free(j->marks);
    free(j->sal);
    free(j->ig);
    free(j->sal_label);
    free(j->sal_what);
    free(j->ig_note);
    qkv_encoding_free(j->enc);
    qkv_tokenizer_free(j->own_tok);
    qkv_model_free(j->m);
    qkv_lm_free(j->lm);
}

static int load(job *j, const opts *o, int kind) {
    if (o->target_text)
        return cli_usage_error(CMD,
                               "--target-text is for encoder-decoder models (marian); %s is not "
                               "one (--target names a saliency target)",
                               o->model);
    j->encoder = kind;
    qkv_status s;
    if (j->encoder) {
        if ((s = qkv_model_load(o->model, &j->m)) != QKV_OK) return cli_report(o->model, s);
        j->tok = qkv_model_tokenizer(j->m);
        j->L = qkv_model_num_layers(j->m), j->H = qkv_model_num_heads(j->m);
    } else {
        if (o->pair)
            return cli_usage_error(CMD, "--pair is for encoders (BERT); %s is a decoder", o->model);
        if ((s = qkv_lm_load(o->model, &j->lm)) != QKV_OK) return cli_report(o->model, s);
        if (qkv_tokenizer_load(o->model, &j->own_tok) == QKV_OK) j->tok = j->own_tok;
        j->L = qkv_lm_num_layers(j->lm), j->H = qkv_lm_num_heads(j->lm);
    }
    if (!j->tok) {
        fprintf(stderr, "qkv %s: %s has no tokenizer (tokenizer.json, vocab.txt or vocab.json)\n",
                CMD, o->model);
        return EXIT_USAGE;
    }
    if (o->layer >= j->L || o->head >= j->H)
        return cli_usage_error(CMD, "the model has layers 0..%lld and heads 0..%lld",
                               (long long)j->L - 1, (long long)j->H - 1);
    return EXIT_OK;
}

static int tokenize(job *j, const opts *o) {
    qkv_encode_options eo;
    qkv_tokenizer_default_options(j->tok, &eo);
    eo.max_length = j->encoder ? qkv_model_max_tokens(j->m) : qkv_lm_max_context(j->lm);
    eo.truncation = QKV_TRUNCATE_LONGEST_FIRST;
    eo.pad_to = eo.pad_to_multiple_of = 0;
    qkv_status s = qkv_tokenizer_encode(j->tok, o->text, strlen(o->text), o->pair,
                                        o->pair ? strlen(o->pair) : 0, &eo, &j->enc);
    if (s != QKV_OK) return cli_report("tokenizing the text", s);
    j->T = (int64_t)j->enc->n;
    if (j->T < 1) {
        fprintf(stderr, "qkv %s: the text gives no tokens\n", CMD);
        return EXIT_USAGE;
    }
    j->labels = calloc((size_t)j->T, sizeof *j->labels);
    for (int64_t i = 0; j->labels && i < j->T; i++)
        if (!(j->labels[i] = attn_token_label(j->tok, j->enc->ids[i], j->encoder))) break;
    if (!j->labels || !j->labels[j->T - 1]) {
        fprintf(stderr, "qkv %s: out of memory\n", CMD);
        return EXIT_FAIL;
    }
    return EXIT_OK;
}

/* maps, rollout, marks and summaries */
static int compute(job *j, qkv_runtime *rt) {
    size_t n = 0;
    const int64_t lens[1] = {j->T};
    qkv_status s = qkv_attention_maps_len(j->L, j->H, lens, 1, &n);
    if (s != QKV_OK) return cli_report("attention maps", s);
    j->maps = malloc(n * sizeof(float));
    j->roll = malloc((size_t)(j->T * j->T) * sizeof(float));
    j->stats = calloc((size_t)(j->L * j->H), sizeof *j->stats);
    j->marks = calloc((size_t)j->T, 1);
    if (!j->maps || !j->roll || !j->stats || !j->marks) {
        fprintf(stderr, "qkv %s: out of memory (%zu floats of maps)\n", CMD, n);
        return EXIT_FAIL;
    }
    const int32_t *ids = j->enc->ids;
    s = j->encoder ? qkv_model_attention(rt, j->m, ids, j->enc->type_ids, lens, 1, j->maps, n)
                   : qkv_lm_attention(rt, j->lm, ids, lens, 1, j->maps, n);
    if (s == QKV_OK) s = qkv_attention_rollout(j->maps, j->L, j->H, j->T, j->roll);
    if (s != QKV_OK) return cli_report("attention maps", s);
    const int32_t cls = j->encoder ? qkv_tokenizer_special_id(j->tok, QKV_SPECIAL_CLS) : -2;
    const int32_t sep =
        j->encoder ? qkv_tokenizer_special_id(j->tok, QKV_SPECIAL_SEP) : qkv_lm_eos_token(j->lm);
    for (int64_t i = 0; i < j->T; i++) {
        if ((j->encoder && ids[i] == cls) || (!j->encoder && i == 0)) j->marks[i] |= QKV_MARK_CLS;
        if (sep >= 0 && ids[i] == sep) j->marks[i] |= QKV_MARK_SEP;
    }
    const size_t tt = (size_t)(j->T * j->T);
    for (int64_t k = 0; k < j->L * j->H; k++) {
        j->stats[k].struct_size = sizeof j->stats[k];
        s = qkv_attention_head_stats(j->maps + (size_t)k * tt, j->T, j->marks, &j->stats[k]);
        if (s != QKV_OK) return cli_report("head summaries", s);
    }
    return EXIT_OK;
}

/* The saliency target: from --target, else what the model has; -1 for none (after a message
 * when the options ask for what the model lacks: *rc). */
static int choose_target(const job *j, const opts *o, int *rc) {
    const int64_t NL = j->encoder ? qkv_model_num_labels(j->m) : 0;
    const char *t = o->target;
    *rc = EXIT_OK;
    if (!t) t = o->compare ? "similarity" : NL > 0 ? "logit" : !j->encoder ? "next-token" : "none";
    if (strcmp(t, "none") == 0) {
        if (o->label || o->compare)
            *rc = cli_usage_error(CMD, "--label and --compare need a saliency target; %s",
                                  o->target ? "--target is none"
                                            : "this model has no classification head (use "
                                              "--target similarity with --compare)");
        return -1;
    }
    if (strcmp(t, "logit") == 0 && NL < 1) {
        *rc = cli_usage_error(CMD, "--target logit / --label: %s has no classification head",
                              o->model);
        return -1;
    }
    if (strcmp(t, "next-token") == 0 && j->encoder) {
        *rc = cli_usage_error(CMD, "--target next-token is for decoders (GPT-2, Llama)");
        return -1;
    }
    if (strcmp(t, "similarity") == 0 && (!j->encoder || !o->compare)) {
        *rc = cli_usage_error(CMD, "--target similarity needs an encoder and --compare TEXT");
        return -1;
    }
    if (o->compare && strcmp(t, "similarity") != 0) {
        *rc = cli_usage_error(CMD, "--compare is for --target similarity");
        return -1;
    }
    if (o->label && strcmp(t, "similarity") == 0) {
        *rc = cli_usage_error(CMD, "--label is for the logit and next-token targets");
        return -1;
    }
    return strcmp(t, "logit") == 0        ? QKV_ATTR_LOGIT
           : strcmp(t, "next-token") == 0 ? QKV_ATTR_NEXT_TOKEN
                                          : QKV_ATTR_SIMILARITY;
}

/* Encodes text as the maps' text was (special tokens, cut to the model's length). */
static qkv_status encode_like_text(const job *j, const char *text, int special, qkv_encoding **e) {
    qkv_encode_options eo;
    qkv_tokenizer_default_options(j->tok, &eo);
    eo.max_length = j->encoder ? qkv_model_max_tokens(j->m) : qkv_lm_max_context(j->lm);
    eo.truncation = QKV_TRUNCATE_LONGEST_FIRST;
    eo.pad_to = eo.pad_to_multiple_of = 0;
    eo.add_special_tokens = special;
    return qkv_tokenizer_encode(j->tok, text, strlen(text), NULL, 0, &eo, e);
}

/* --label as an index: a classifier's label (name or number), a decoder's token (text that is
 * one token, or #ID); -1 without --label; -2 after a message. */
static int64_t label_index(const job *j, const opts *o) {
    if (!o->label) return -1;
    char *end;
    if (j->target == QKV_ATTR_LOGIT) {
        const int64_t NL = qkv_model_num_labels(j->m);
        for (int64_t k = 0; k < NL; k++)
            if (strcmp(qkv_model_label(j->m, k), o->label) == 0) return k;
        long v = strtol(o->label, &end, 10);
        if (*o->label && !*end && v >= 0 && v < NL) return v;
        cli_usage_error(CMD, "--label %s is not a label of the model", o->label);
        return -2;
    }
    if (o->label[0] == '#' && o->label[1]) {
        long v = strtol(o->label + 1, &end, 10);
        if (!*end && v >= 0 && (size_t)v < qkv_tokenizer_vocab_size(j->tok)) return v;
        cli_usage_error(CMD, "--label %s: not a token id of the vocabulary", o->label);
        return -2;
    }
    qkv_encoding *e = NULL;
    qkv_status s = encode_like_text(j, o->label, 0, &e);
    int64_t id = s == QKV_OK && e->n == 1 ? e->ids[0] : -2;
    if (s != QKV_OK)
        cli_report("tokenizing --label", s);
    else if (id < 0)
        cli_usage_error(CMD, "--label '%s' is %zu tokens, not one (give #ID for a token id)",
                        o->label, e->n);
    qkv_encoding_free(e);
    return id;
}

static int32_t baseline_id(const job *j, const opts *o) {
    if (strcmp(o->baseline, "zero") == 0) return -1;
    int32_t id = strcmp(o->baseline, "pad") == 0 ? qkv_tokenizer_special_id(j->tok, QKV_SPECIAL_PAD)
                 : strcmp(o->baseline, "mask") == 0
                     ? qkv_tokenizer_special_id(j->tok, QKV_SPECIAL_MASK)
                 : j->encoder ? qkv_tokenizer_special_id(j->tok, QKV_SPECIAL_SEP)
                              : qkv_lm_eos_token(j->lm);
    if (id < 0) cli_usage_error(CMD, "--baseline %s: the tokenizer has no such token", o->baseline);
    return id < 0 ? -2 : id;
}

/* cos(a, b) of two sentence embeddings of the inference pipeline (qkv_embed_tokens). */
static int embed_cosine(qkv_runtime *rt, const job *j, const qkv_encoding *b, double *cos) {
    const int64_t C = qkv_model_dim(j->m);
    float *u = malloc(sizeof(float) * (size_t)C), *v = malloc(sizeof(float) * (size_t)C);
    const int64_t la = j->T, lb = (int64_t)b->n;
    qkv_status s = u && v ? qkv_embed_tokens(rt, j->m, j->enc->ids, &la, 1, u) : QKV_ERR_NOMEM;
    if (s == QKV_OK) s = qkv_embed_tokens(rt, j->m, b->ids, &lb, 1, v);
    double uu = 0, vv = 0, uv = 0;
    for (int64_t c = 0; s == QKV_OK && c < C; c++)
        uu += (double)u[c] * u[c], vv += (double)v[c] * v[c], uv += (double)u[c] * v[c];
    *cos = uv / sqrt(uu * vv);
    free(u), free(v);
    return s == QKV_OK ? EXIT_OK : cli_report("sentence embeddings", s);
}

static char *dup_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *dup_printf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *out = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (!out) return NULL;
    va_start(ap, fmt);
    vsnprintf(out, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return out;
}

/* Gradient x input and integrated gradients of the chosen target (qkv_trainer_attribute). */
static int compute_saliency(job *j, const opts *o, qkv_runtime *rt) {
    int rc;
    j->target = choose_target(j, o, &rc);
    if (j->target < 0) return rc;
    qkv_attr_options ao;
    qkv_attr_options_init(&ao);
    ao.target = j->target;
    ao.index = label_index(j, o);
    ao.baseline_id = baseline_id(j, o);
    if (ao.index == -2 || ao.baseline_id == -2) return EXIT_USAGE;
    ao.ig_steps = o->ig_steps;
    ao.ig_rule = strcmp(o->rule, "right") == 0 ? QKV_IG_RIGHT : QKV_IG_TRAPEZOID;
    qkv_encoding *cmp = NULL;
    qkv_status s;
    if (j->target == QKV_ATTR_SIMILARITY) {
        if ((s = encode_like_text(j, o->compare, 1, &cmp)) != QKV_OK)
            return cli_report("tokenizing --compare", s);
        ao.compare_ids = cmp->ids;
        ao.compare_type_ids = cmp->type_ids;
        ao.compare_T = (int64_t)cmp->n;
    }
    qkv_trainer *t = NULL;
    s = j->target == QKV_ATTR_LOGIT ? qkv_trainer_load_hf_classifier(o->model, NULL, &t)
                                    : qkv_trainer_load_hf(o->model, &t);
    rc = s == QKV_OK ? EXIT_OK : cli_report(o->model, s);
    j->sal = malloc((size_t)j->T * sizeof(float));
    j->ig = o->ig_steps > 0 ? malloc((size_t)j->T * sizeof(float)) : NULL;
    if (rc == EXIT_OK && (!j->sal || (o->ig_steps > 0 && !j->ig))) {
        fprintf(stderr, "qkv %s: out of memory\n", CMD);
        rc = EXIT_FAIL;
    }
    j->res.struct_size = sizeof j->res;
    if (rc == EXIT_OK) {
        s = qkv_trainer_attribute(rt, t, j->enc->ids, j->encoder ? j->enc->type_ids : NULL, j->T,
                                  &ao, j->sal, j->ig, &j->res);
        if (s != QKV_OK) rc = cli_report("saliency", s);
    }
    double cos = 0;
    if (rc == EXIT_OK && j->target == QKV_ATTR_SIMILARITY) {
        /* the trainer pools by the mean; the model's own pipeline must agree */
        rc = embed_cosine(rt, j, cmp, &cos);
        if (rc == EXIT_OK && fabs(cos - j->res.f_input) > 1e-3) {
            fprintf(stderr,
                    "qkv %s: %s: the pipeline's similarity is %.6f but the mean-pooled one %.6f: "
                    "the similarity target needs mean pooling (sentence-transformers' Pooling "
                    "with pooling_mode_mean_tokens)\n",
                    CMD, o->model, cos, j->res.f_input);
            rc = EXIT_USAGE;
        }
    }
    if (rc == EXIT_OK) {
        if (j->target == QKV_ATTR_LOGIT) {
            j->sal_label = strdup(qkv_model_label(j->m, j->res.index));
            j->sal_what = dup_printf("the logit of label '%s' (%.4f)",
                                     j->sal_label ? j->sal_label : "?", j->res.f_input);
        } else if (j->target == QKV_ATTR_NEXT_TOKEN) {
            j->sal_label = attn_token_label(j->tok, (int32_t)j->res.index, 0);
            j->sal_what = dup_printf("the logit of the next token '%s' (id %lld, %.4f)",
                                     j->sal_label ? j->sal_label : "?", (long long)j->res.index,
                                     j->res.f_input);
        } else {
            j->sal_label = utf8_clean(o->compare, strlen(o->compare));
            j->sal_what = dup_printf("the cosine similarity with \"%s\" (%.4f)",
                                     j->sal_label ? j->sal_label : "?", j->res.f_input);
        }
        if (j->ig)
            j->ig_note = dup_printf(
                "Integrated gradients: %ld steps, %s rule, baseline %s%s; sum of attributions "
                "%.5f, f(input) - f(baseline) = %.5f - %.5f = %.5f, completeness gap %.2g "
                "(more steps shrink it).",
                o->ig_steps, o->rule, o->baseline,
                strcmp(o->baseline, "zero") == 0
                    ? " (all-zero word embeddings)"
                    : " (that token's word embedding at every position)",
                j->res.ig_sum, j->res.f_input, j->res.f_baseline,
                j->res.f_input - j->res.f_baseline,
                j->res.ig_sum - (j->res.f_input - j->res.f_baseline));
        if (!j->sal_label || !j->sal_what || (j->ig && !j->ig_note)) {
            fprintf(stderr, "qkv %s: out of memory\n", CMD);
            rc = EXIT_FAIL;
        }
    }
    if (rc != EXIT_OK) {
        free(j->sal), free(j->ig);
        j->sal = j->ig = NULL;
    }
    qkv_encoding_free(cmp);
    qkv_trainer_free(t);
    return rc;
}

static void print_table(const job *j) {
    const char *c = j->encoder ? "[CLS]" : "first", *e = j->encoder ? "[SEP]" : "EOS";
    printf("%d tokens:", (int)j->T);
    for (int64_t i = 0; i < j->T; i++) printf(" %s", j->labels[i]);
    printf("\n\nlayer head  entropy  distance  %6s  %6s  previous\n", c, e);
    for (int64_t l = 0; l < j->L; l++)
        for (int64_t h = 0; h < j->H; h++) {
            const qkv_head_stats *s = &j->stats[l * j->H + h];
            printf("%5lld %4lld  %7.3f  %8.2f  %6.3f  %6.3f  %8.3f\n", (long long)l, (long long)h,
                   s->entropy, s->distance, s->cls, s->sep, s->prev);
        }
    if (!j->sal) return;
    printf("\nsaliency of %s:\n", j->sal_what);
    printf("%5s  %-20s %17s%s\n", "token", "", "gradient x input",
           j->ig ? "  integrated gradients" : "");
    for (int64_t i = 0; i < j->T; i++) {
        printf("%5lld  %-20s %+17.5f", (long long)i, j->labels[i], j->sal[i]);
        if (j->ig) printf("  %+20.5f", j->ig[i]);
        printf("\n");
    }
    if (j->ig_note) printf("%s\n", j->ig_note);
}

char *attn_tokens_json(char *const *labels, int64_t n) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return NULL;
    fputc('[', f);
    for (int64_t i = 0; i < n; i++) {
        if (i) fputc(',', f);
        json_write_string(f, labels[i], strlen(labels[i]));
    }
    fputc(']', f);
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

static int write_tensors(const job *j, const opts *o, const char *path) {
    const int64_t L = j->L, T = j->T;
    qkv_st_write_tensor *t = calloc((size_t)L + 5, sizeof *t); /* maps, 5 more */
    char(*names)[32] = calloc((size_t)L, sizeof *names);
    int64_t shape3[3] = {j->H, T, T}, shape2[2] = {T, T}, shape1[1] = {T};
    char *toks = attn_tokens_json(j->labels, j->T), *text = utf8_clean(o->text, strlen(o->text));
    char *pair = o->pair ? utf8_clean(o->pair, strlen(o->pair)) : NULL;
    int rc = EXIT_FAIL;
    if (t && names && toks && text && (!o->pair || pair)) {
        for (int64_t l = 0; l < L; l++) {
            snprintf(names[l], sizeof names[l], "layer.%lld", (long long)l);
            t[l] = (qkv_st_write_tensor){names[l], QKV_DTYPE_F32, 3, shape3,
                                         j->maps + (size_t)(l * j->H * T * T)};
        }
        t[L] = (qkv_st_write_tensor){"rollout", QKV_DTYPE_F32, 2, shape2, j->roll};
        t[L + 1] = (qkv_st_write_tensor){"ids", QKV_DTYPE_I32, 1, shape1, j->enc->ids};
        t[L + 2] = (qkv_st_write_tensor){"type_ids", QKV_DTYPE_I32, 1, shape1, j->enc->type_ids};
        size_t nt = (size_t)L + 3, nm = 4;
        if (j->sal) t[nt++] = (qkv_st_write_tensor){"saliency", QKV_DTYPE_F32, 1, shape1, j->sal};
        if (j->ig)
            t[nt++] =
                (qkv_st_write_tensor){"integrated_gradients", QKV_DTYPE_F32, 1, shape1, j->ig};
        const char *keys[16] = {"format", "tokens", "model", "text"};
        const char *vals[16] = {"qkv attention: layer.N [heads, query, key] probabilities", toks,
                                o->model, text};
        char num[5][40];
        if (pair) keys[nm] = "pair", vals[nm++] = pair;
        if (j->sal) {
            static const char *tnames[3] = {"logit", "next-token", "similarity"};
            keys[nm] = "saliency_target", vals[nm++] = tnames[j->target];
            keys[nm] = j->target == QKV_ATTR_SIMILARITY ? "compare" : "saliency_label";
            vals[nm++] = j->sal_label;
            snprintf(num[0], sizeof num[0], "%.9g", j->res.f_input);
            keys[nm] = "f_input", vals[nm++] = num[0];
        }
        if (j->ig) {
            snprintf(num[1], sizeof num[1], "%ld", o->ig_steps);
            snprintf(num[2], sizeof num[2], "%.9g", j->res.f_baseline);
            snprintf(num[3], sizeof num[3], "%.9g", j->res.ig_sum);
            keys[nm] = "ig_steps", vals[nm++] = num[1];
            keys[nm] = "ig_rule", vals[nm++] = o->rule;
            keys[nm] = "ig_baseline", vals[nm++] = o->baseline;
            keys[nm] = "f_baseline", vals[nm++] = num[2];
            keys[nm] = "ig_sum", vals[nm++] = num[3];
        }
        qkv_status s = qkv_safetensors_write(path, t, nt, keys, vals, nm);
        rc = s == QKV_OK ? EXIT_OK : cli_report(path, s);
    } else {
        fprintf(stderr, "qkv %s: out of memory\n", CMD);
    }
    free(t), free(names), free(toks), free(text), free(pair);
    return rc;
}

int attn_png_failed(const char *path) {
    fprintf(stderr, "qkv %s: cannot write %s: %s\n", CMD, path, strerror(errno));
    return EXIT_FAIL;
}

int attn_stack_pngs(const attn_opts *o, const attn_stack *s, const char *prefix, int *count) {
    const int64_t R = s->R, C = s->C, H = s->H;
    const char *name = *prefix ? s->name : NULL; /* a stack of several: its name in the titles */
    char path[4200], title[160];
    cli_heat *grid = calloc((size_t)H, sizeof *grid);
    char(*titles)[32] = calloc((size_t)H, sizeof *titles);
    if (!grid || !titles) {
        free(grid), free(titles);
        fprintf(stderr, "qkv %s: out of memory\n", CMD);
        return EXIT_FAIL;
    }
    int rc = EXIT_OK;
    for (int64_t l = 0; rc == EXIT_OK && l < s->L; l++) {
        for (int64_t h = 0; h < H; h++) {
            const float *m = s->maps + (size_t)((l * H + h) * R * C);
            snprintf(titles[h], sizeof titles[h], "head %lld", (long long)h);
            grid[h] = (cli_heat){m, R, C, NULL, NULL, titles[h], 1.0f};
            if ((o->layer >= 0 && l != o->layer) || (o->head >= 0 && h != o->head)) continue;
            snprintf(path, sizeof path, "%s/%slayer%02lld_head%02lld.png", o->out, prefix,
                     (long long)l, (long long)h);
            snprintf(title, sizeof title, "%s%slayer %lld, head %lld", name ? name : "",
                     name ? ", " : "", (long long)l, (long long)h);
            const cli_heat one = {m, R, C, s->rows, s->cols, title, 1.0f};
            if (cli_heatmap_png(path, &one) != 0) {
                rc = attn_png_failed(path);
                break;
            }
            ++*count;
        }
        if (rc != EXIT_OK || (o->layer >= 0 && l != o->layer)) continue;
        snprintf(path, sizeof path, "%s/%slayer%02lld_heads.png", o->out, prefix, (long long)l);
        snprintf(title, sizeof title, "%s%slayer %lld: all %lld heads", name ? name : "",
                 name ? ", " : "", (long long)l, (long long)H);
        if (cli_heatmap_grid_png(path, title, grid, (int)H) != 0)
            rc = attn_png_failed(path);
        else
            ++*count;
    }
    free(grid), free(titles);
    return rc;
}

static int write_pngs(const job *j, const opts *o, int *count) {
    const int64_t T = j->T;
    const char *const *lab = (const char *const *)j->labels;
    char path[4200];
    const attn_stack stack = {"", j->L, j->H, T, T, lab, lab, j->maps, NULL, j->stats, "", ""};
    int rc = attn_stack_pngs(o, &stack, "", count);
    if (rc != EXIT_OK) return rc;
    snprintf(path, sizeof path, "%s/rollout.png", o->out);
    const cli_heat r = {j->roll, T, T, lab, lab, "attention rollout over all layers", 1.0f};
    if (cli_heatmap_png(path, &r) != 0) return attn_png_failed(path);
    ++*count;
    if (!j->sal) return EXIT_OK;
    snprintf(path, sizeof path, "%s/saliency.png", o->out);
    char head[400];
    snprintf(head, sizeof head, "saliency of %s", j->sal_what);
    char sub[200];
    snprintf(sub, sizeof sub,
             "integrated gradients: %ld steps, %s rule, %s baseline; "
             "completeness gap %.2g",
             o->ig_steps, o->rule, o->baseline,
             j->res.ig_sum - (j->res.f_input - j->res.f_baseline));
    const float *rows[2] = {j->sal, j->ig};
    const char *names[2] = {"gradient x input", "integrated gradients"};
    const cli_strip st = {
        head,         j->ig ? sub : "gradient x input only (--ig-steps 0)", lab, T, rows, names,
        j->ig ? 2 : 1};
    if (cli_saliency_png(path, &st) != 0) return attn_png_failed(path);
    ++*count;
    return EXIT_OK;
}

/* Every output name is new or a regular file, before anything is written. */
static int check_outputs(const job *j, const opts *o) {
    char path[4200];
    static const char *fixed[] = {"attention.safetensors", "attention.html", "rollout.png",
                                  "saliency.png"};
    for (int k = 0; k < 4; k++) {
        snprintf(path, sizeof path, "%s/%s", o->out, fixed[k]);
        if (attn_check_file(path)) return EXIT_USAGE;
    }
    for (int64_t l = 0; l < j->L; l++) {
        snprintf(path, sizeof path, "%s/layer%02lld_heads.png", o->out, (long long)l);
        if (attn_check_file(path)) return EXIT_USAGE;
        for (int64_t h = 0; h < j->H; h++) {
            snprintf(path, sizeof path, "%s/layer%02lld_head%02lld.png", o->out, (long long)l,
                     (long long)h);
            if (attn_check_file(path)) return EXIT_USAGE;
        }
    }
    return EXIT_OK;
}

int cmd_attention(int argc, char **argv) {
    opts o;
    int rc = parse(argc, argv, &o);
    if (rc != EXIT_OK) return rc;
    if (strlen(o.out) > 4000) return cli_usage_error(CMD, "--out is too long");
    job j;
    memset(&j, 0, sizeof j);
    qkv_runtime *rt = NULL;
    const int kind = model_kind(o.model);
    if (kind < 0) return EXIT_USAGE;
    if (kind == 2) return cmd_attention_seq2seq(&o);
    rc = load(&j, &o, kind);
    if (rc == EXIT_OK) rc = tokenize(&j, &o);
    if (rc == EXIT_OK) {
        qkv_status s = qkv_runtime_create((int)o.threads, &rt);
        rc = s == QKV_OK ? compute(&j, rt) : cli_report("threads", s);
    }
    if (rc == EXIT_OK) rc = compute_saliency(&j, &o, rt);
    if (rc == EXIT_OK) rc = attn_prepare_out(o.out);
    if (rc == EXIT_OK) rc = check_outputs(&j, &o);
    char path[4200];
    int pngs = 0;
    if (rc == EXIT_OK) {
        snprintf(path, sizeof path, "%s/attention.safetensors", o.out);
        rc = write_tensors(&j, &o, path);
    }
    if (rc == EXIT_OK) rc = write_pngs(&j, &o, &pngs);
    if (rc == EXIT_OK) {
        snprintf(path, sizeof path, "%s/attention.html", o.out);
        char *text = utf8_clean(o.text, strlen(o.text));
        const char *const *lab = (const char *const *)j.labels;
        const attn_stack stack = {j.encoder ? "self-attention" : "causal self-attention",
                                  j.L,
                                  j.H,
                                  j.T,
                                  j.T,
                                  lab,
                                  lab,
                                  j.maps,
                                  j.roll,
                                  j.stats,
                                  j.encoder ? "[CLS]" : "first",
                                  j.encoder ? "[SEP]" : "EOS"};
        const attn_page page = {.model = o.model,
                                .text = text ? text : "",
                                .pair = o.pair,
                                .stacks = &stack,
                                .n_stacks = 1,
                                .saliency = j.sal,
                                .ig = j.ig,
                                .saliency_what = j.sal_what,
                                .ig_note = j.ig_note};
        if (attn_html_write(path, &page) != 0) {
            fprintf(stderr, "qkv %s: cannot write %s: %s\n", CMD, path, strerror(errno));
            rc = EXIT_FAIL;
        }
        free(text);
    }
    if (rc == EXIT_OK) {
        print_table(&j);
        fprintf(stderr, "qkv %s: wrote %s/attention.safetensors, attention.html and %d PNGs\n", CMD,
                o.out, pngs);
    }
    qkv_runtime_free(rt);
    job_free(&j);
    cli_heatmap_cleanup();
    return rc;
}
