/* cmd_train.c — `qkv train`: train a GPT-2 from scratch or from a Hugging Face checkpoint on
 * a dataset prepared by `qkv data prepare`.
 *
 * A run lives in one directory (--out RUN):
 *   config.json                 the effective configuration (also stored in every checkpoint)
 *   metrics.jsonl               one JSON object per step (loss, lr, grad_norm, tokens/s) and
 *                               per validation (val_loss, val_ppl)
 *   loss.svg                    train and validation loss curves, redrawn at each validation
 *   events.out.tfevents.*       the same metrics for TensorBoard (unless --no-tensorboard)
 *   ckpt_NNNNNNNN.safetensors   checkpoints (weights + AdamW state + config), the last --keep
 *   model/                      the final model as a Hugging Face GPT-2 directory (+ tokenizer)
 * The loop itself (schedule, accumulation, validation, metrics, checkpoints and their
 * rotation, resumption, the NaN guard) is the library's qkv_train_run; this file is its front
 * end: options and --config, the run directory, signals, the progress bar and the plot (from
 * the loop's callbacks), the export, and exit codes.
 * Batches are a pure function of (seed, step), and every kernel is deterministic, so
 * `--resume` continues exactly where the checkpoint left off: the same losses as a run that
 * was never interrupted. Ctrl-C / SIGTERM finish the current step, save, and exit (the handler
 * only sets a flag that the loop polls); a second Ctrl-C kills at once (the last checkpoint is
 * intact: they are written atomically). A loss or gradient norm that is not finite stops the
 * run before the update, keeping the last good checkpoint. */
#include "atomic.h"
#include "cli.h"
#include "plot.h"
#include "progress.h"
#include "textio.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

void cmd_train_help(void) {
    printf(
        "Usage: qkv train --data DIR --out RUN [options]\n"
        "       qkv train --resume --out RUN [--steps N] [...]\n"
        "       qkv train --config FILE [options]\n\n"
        "Trains a Transformer with AdamW on a dataset made by `qkv data prepare`, from scratch or\n"
        "from a Hugging Face directory (--init): GPT-2 or a Llama-style decoder as a causal LM\n"
        "(next-token loss), or a BERT encoder as a masked LM (15%% of the tokens chosen; of\n"
        "those 80%% become the mask token, 10%% a random token, 10%% stay; the loss is on them).\n"
        "Writes RUN/metrics.jsonl, RUN/loss.svg, a TensorBoard event file, checkpoints\n"
        "RUN/ckpt_*.safetensors and, at the end, RUN/model/ (a Hugging Face directory for\n"
        "`qkv generate` and transformers). `qkv report RUN` draws the run as one HTML page.\n\n"
        "Run:\n"
        "  --data DIR            prepared dataset (train and val splits)\n"
        "  --out RUN             run directory (created; must not hold a run unless --resume)\n"
        "  --resume              continue RUN from its latest checkpoint, bit for bit; only\n"
        "                        --steps and the logging/eval/save/thread options may change\n"
        "  --config FILE         JSON object of these options (keys with _ or -); flags win\n"
        "  --init DIR            start from a Hugging Face GPT-2, Llama, BERT or MarianMT\n"
        "                        directory\n"
        "Model (from scratch; the vocabulary comes from the dataset):\n"
        "  --arch gpt2|llama|bert|marian (gpt2; marian for a parallel dataset)\n"
        "  --n-layer N (4)  --n-head N (4)  --n-embd N (128)  --n-positions N (= --seq)\n"
        "  --n-kv-head N (= --n-head; llama: grouped-query attention)  --n-inner N (4 n-embd;\n"
        "                        llama, bert: the MLP width)\n"
        "  --mask-token TEXT ([MASK])  bert: the tokenizer's mask token\n"
        "Translation (marian: --n-layer encoder and decoder layers each; a dataset from\n"
        "`qkv data prepare --source --target`; RUN/model/ loads in `qkv translate`):\n"
        "  --src-seq N (= --seq) source tokens per sentence at most (--seq: target tokens)\n"
        "  --label-smoothing X (marian 0.1, else 0)  as torch's CrossEntropyLoss\n"
        "  --dropout X           marian: dropout rate (default: the config's; 0.1 from\n"
        "                        scratch, as MarianConfig)\n"
        "  --group-by-length 0|1 (0)  marian: 0 draws each batch's pairs at random; 1 runs\n"
        "                        epochs over every pair in batches of alike lengths: far less\n"
        "                        padding on mixed lengths, but short pairs weigh more per token\n"
        "Batches:\n"
        "  --batch B (8)         sequences (marian: sentence pairs) per micro-batch\n"
        "  --seq T (128)         tokens per sequence\n"
        "  --accum K (1)         micro-batches accumulated per step (batch = B*K sequences)\n"
        "  --recompute none|layers   keep all activations (default) or recompute each block\n"
        "                        in the backward (less memory, ~30%% more compute)\n"
        "Optimizer (torch.optim.AdamW; no decay on biases and LayerNorms):\n"
        "  --steps N (1000)  --lr X (1e-3)  --min-lr X (1e-4)  --warmup N (100)\n"
        "  --decay cosine|linear|constant (cosine)  --weight-decay X (0.1)\n"
        "  --beta1 X (0.9)  --beta2 X (0.95)  --eps X (1e-8)  --clip X (1.0; 0 = off)\n"
        "  --seed S (1234)       initialization and batch sampling\n"
        "Progress and checkpoints:\n"
        "  --eval-every N (100)  validation loss every N steps and at the end (0 = end only)\n"
        "  --eval-batches N (20) validation batches per evaluation\n"
        "  --save-every N (200)  checkpoint every N steps (and at the end, and on Ctrl-C)\n"
        "  --keep K (3)          checkpoints kept\n"
        "  --log-every N (10)    progress lines when stderr is not a terminal\n"
        "  --no-tensorboard      do not write RUN/events.out.tfevents.* (TensorBoard's\n"
        "                        scalars of every metrics line; `tensorboard --logdir RUN`)\n"
        "  --tb-histograms       also a histogram of every weight tensor at each validation\n"
        "  --threads N           threads (default: QKV_NUM_THREADS or all CPUs)\n"
        "  --progress-json FD    also write every metrics line as one JSON object on the open\n"
        "                        file descriptor FD (1: stdout): the metrics.jsonl fields at\n"
        "                        full precision, \"kind\": \"step\" or \"eval\", \"replayed\": "
        "true\n"
        "                        for the lines of before a --resume (for programs that drive\n"
        "                        qkv train, such as the Python package's qkv.train)\n"
        "  --progress-ack FD     after each such line, wait for one byte on FD: 's' (or the end\n"
        "                        of the file) stops the run after this step as Ctrl-C does\n"
        "Several processes (mpirun -np N qkv train ...; a build with -DQKV_WITH_MPI=ON):\n"
        "  --exact-reduce 0|1 (0)  1: sum the gradients in a fixed order, bit-identical for\n"
        "                        any number of processes (0: all-reduce, equal within rounding)\n"
        "  --zero 0|1 (0)        1: ZeRO-1, AdamW's moments sharded across the processes (each\n"
        "                        keeps 1/N of them; the same results; one process: no effect)\n"
        "  --mpi-timeout S (300) stop when the other processes do not answer for S seconds\n\n"
        "Exit codes: 0 done, 1 failure (e.g. loss became NaN), 2 bad input or usage,\n"
        "130 / 143 stopped by SIGINT / SIGTERM after saving a checkpoint.\n");
}

/* ---------------------------------------------------------------- options */

typedef struct train_cfg {
    char data[1024], out[1024], init[1024], decay[16], recompute[16], arch[16], mask_token[64];
    long n_layer, n_head, n_embd, n_positions, n_kv_head, n_inner;
    long batch, seq, accum, steps, warmup;
    long eval_every, eval_batches, save_every, keep, log_every, threads;
    long tensorboard, tb_histograms; /* 0 / 1 */
    long exact_reduce;               /* 0 / 1 */
    long zero;                       /* 0 / 1: ZeRO-1 */
    long src_seq;                    /* marian: source tokens at most (0: --seq) */
    long group_by_length;            /* marian: 1 length-grouped epochs, 0 uniform draws */
    double label_smoothing, dropout; /* -1: marian 0.1 / others 0; -1: the config's */
    double mpi_timeout;
    double lr, min_lr, weight_decay, beta1, beta2, eps, clip;
    unsigned long long seed;
} train_cfg;

typedef enum { O_STR, O_LONG, O_DBL, O_U64 } opt_kind;
typedef struct {
    const char *name;
    opt_kind kind;
    size_t off, size;
    double lo, hi;
    int resumable; /* may change on --resume */
} opt_def;

#define S_(f) O_STR, offsetof(train_cfg, f), sizeof(((train_cfg *)0)->f), 0, 0
#define L_(f, lo, hi) O_LONG, offsetof(train_cfg, f), 0, lo, hi
#define D_(f, lo, hi) O_DBL, offsetof(train_cfg, f), 0, lo, hi
static const opt_def OPTS[] = {
    {"data", S_(data), 0},
    {"out", S_(out), 0},
    {"init", S_(init), 0},
    {"decay", S_(decay), 0},
    {"recompute", S_(recompute), 1},
    {"arch", S_(arch), 0},
    {"mask-token", S_(mask_token), 0},
    {"n-kv-head", L_(n_kv_head, 0, 1024), 0},
    {"n-inner", L_(n_inner, 0, 1 << 20), 0},
    {"n-layer", L_(n_layer, 1, 1024), 0},
    {"n-head", L_(n_head, 1, 1024), 0},
    {"n-embd", L_(n_embd, 1, 65536), 0},
    {"n-positions", L_(n_positions, 0, 1 << 20), 0},
    {"batch", L_(batch, 1, 1 << 16), 0},
    {"seq", L_(seq, 1, 1 << 20), 0},
    {"accum", L_(accum, 1, 1 << 16), 0},
    {"steps", L_(steps, 1, 1e12), 1},
    {"warmup", L_(warmup, 0, 1e12), 0},
    {"eval-every", L_(eval_every, 0, 1e12), 1},
    {"eval-batches", L_(eval_batches, 1, 1e9), 1},
    {"save-every", L_(save_every, 0, 1e12), 1},
    {"keep", L_(keep, 1, 1e6), 1},
    {"log-every", L_(log_every, 1, 1e12), 1},
    {"threads", L_(threads, 0, 4096), 1},
    {"tensorboard", L_(tensorboard, 0, 1), 1},
    {"tb-histograms", L_(tb_histograms, 0, 1), 1},
    {"exact-reduce", L_(exact_reduce, 0, 1), 1},
    {"zero", L_(zero, 0, 1), 1},
    {"mpi-timeout", D_(mpi_timeout, 1, 1e6), 1},
    {"lr", D_(lr, 0, 10), 0},
    {"min-lr", D_(min_lr, 0, 10), 0},
    {"weight-decay", D_(weight_decay, 0, 10), 0},
    {"beta1", D_(beta1, 0, 0.999999), 0},
    {"beta2", D_(beta2, 0, 0.999999), 0},
    {"eps", D_(eps, 0, 1), 0},
    {"clip", D_(clip, 0, 1e9), 0},
    {"seed", O_U64, offsetof(train_cfg, seed), 0, 0, 0, 0},
    {"src-seq", L_(src_seq, 0, 1 << 20), 0},
    {"label-smoothing", D_(label_smoothing, -1, 0.999), 0},
    {"dropout", D_(dropout, -1, 0.999), 0},
    {"group-by-length", L_(group_by_length, 0, 1), 0},
};
#define N_OPTS (sizeof OPTS / sizeof *OPTS)

static void cfg_defaults(train_cfg *c) {
    memset(c, 0, sizeof *c);
    strcpy(c->decay, "cosine");
    strcpy(c->recompute, "none");
    strcpy(c->arch, "gpt2");
    strcpy(c->mask_token, "[MASK]");
    c->n_layer = 4, c->n_head = 4, c->n_embd = 128, c->n_positions = 0;
    c->batch = 8, c->seq = 128, c->accum = 1, c->steps = 1000, c->warmup = 100;
    c->eval_every = 100, c->eval_batches = 20, c->save_every = 200, c->keep = 3;
    c->log_every = 10, c->threads = 0;
    c->tensorboard = 1, c->tb_histograms = 0;
    c->exact_reduce = 0, c->mpi_timeout = 300;
    c->lr = 1e-3, c->min_lr = 1e-4, c->weight_decay = 0.1, c->beta1 = 0.9, c->beta2 = 0.95;
    c->eps = 1e-8, c->clip = 1.0, c->seed = 1234;
    c->src_seq = 0, c->label_smoothing = -1, c->dropout = -1, c->group_by_length = 0;
}

static const opt_def *find_opt(const char *name) {
    char n[64];
    size_t i = 0;
    for (; name[i] && i < sizeof n - 1; i++) n[i] = name[i] == '_' ? '-' : name[i];
    n[i] = 0;
    for (size_t k = 0; k < N_OPTS; k++)
        if (strcmp(OPTS[k].name, n) == 0) return &OPTS[k];
    return NULL;
}

/* Sets one option from text; returns 0 or prints why and returns EXIT_USAGE. */
static int set_opt(train_cfg *c, const opt_def *o, const char *val, const char *from) {
    char *base = (char *)c + o->off, *end = NULL;
    /* the option as the user wrote it: --lr on the command line, "lr" in a --config file */
    char name[96];
    snprintf(name, sizeof name, strcmp(from, "command line") == 0 ? "--%s" : "\"%s\"", o->name);
    errno = 0;
    switch (o->kind) {
    case O_STR:
        if (strlen(val) >= o->size)
            return cli_usage_error("train", "%s: value of %s is too long", from, name);
        strcpy(base, val);
        return 0;
    case O_LONG: {
        double x = strtod(val, &end);
        if (errno || end == val || *end || x != floor(x) || x < o->lo || x > o->hi)
            return cli_usage_error("train",
                                   "%s: %s must be a whole number in [%.0f, %.0f], not '%s'", from,
                                   name, o->lo, o->hi, val);
        *(long *)base = (long)x;
        return 0;
    }
    case O_DBL: {
        double x = strtod(val, &end);
        if (errno || end == val || *end || !(x >= o->lo && x <= o->hi))
            return cli_usage_error("train", "%s: %s must be a number in [%g, %g], not '%s'", from,
                                   name, o->lo, o->hi, val);
        *(double *)base = x;
        return 0;
    }
    case O_U64: {
        unsigned long long x = strtoull(val, &end, 10);
        if (errno || end == val || *end || val[0] == '-')
            return cli_usage_error("train", "%s: %s must be a whole number >= 0, not '%s'", from,
                                   name, val);
        *(unsigned long long *)base = x;
        return 0;
    }
    }
    return 0;
}

/* Applies a JSON object of options. */
static int apply_json(train_cfg *c, json_t *root, const char *from, int resuming) {
    if (!json_is_object(root))
        return cli_usage_error("train", "%s: the configuration must be a JSON object", from);
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        const opt_def *o = find_opt(key);
        if (!o) return cli_usage_error("train", "%s: unknown option '%s'", from, key);
        if (resuming && strcmp(o->name, "out") == 0) continue;
        char buf[1100];
        /* each option has its JSON type: a string where a number goes (or the reverse) is
           refused naming it, never converted or replaced by the default */
        const char *want = NULL;
        if (json_is_null(v))
            continue;
        else if (o->kind == O_STR && json_is_string(v))
            snprintf(buf, sizeof buf, "%s", json_string_value(v));
        else if (o->kind == O_STR)
            want = "a string";
        else if (json_is_integer(v))
            snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(v));
        else if (o->kind == O_DBL && json_is_real(v))
            snprintf(buf, sizeof buf, "%.17g", json_real_value(v));
        else if (o->kind == O_LONG && o->hi == 1 && json_is_boolean(v)) /* the switches */
            snprintf(buf, sizeof buf, "%d", json_is_true(v));
        else if (o->kind == O_U64 && json_is_string(v)) /* the seed is saved as a string */
            snprintf(buf, sizeof buf, "%s", json_string_value(v));
        else
            want = o->kind == O_DBL ? "a number" : "a whole number";
        if (want) return cli_usage_error("train", "%s: option '%s' must be %s", from, key, want);
        int rc = set_opt(c, o, buf, from);
        if (rc) return rc;
    }
    return 0;
}

/* The configuration as a JSON object (checkpoint "user" metadata and RUN/config.json). */
static char *cfg_json(const train_cfg *c) {
    json_t *o = json_object();
    for (size_t k = 0; k < N_OPTS; k++) {
        const opt_def *d = &OPTS[k];
        const char *base = (const char *)c + d->off;
        json_t *v = NULL;
        switch (d->kind) {
        case O_STR: v = json_string(base); break;
        case O_LONG: v = json_integer(*(const long *)base); break;
        case O_DBL: v = json_real(*(const double *)base); break;
        case O_U64: {
            char s[32];
            snprintf(s, sizeof s, "%llu", *(const unsigned long long *)base);
            v = json_string(s);
            break;
        }
        }
        /* jansson refuses a string that is not UTF-8 (v NULL): no config rather than one
           without the field */
        if (!o || json_object_set_new(o, d->name, v) != 0) {
            json_decref(o);
            return NULL;
        }
    }
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(o);
    return s;
}

/* ---------------------------------------------------------------- run directory */

static volatile sig_atomic_t g_signal = 0;
static qkv_dist *g_dist; /* several processes (mpirun), or NULL */
static int g_agreed;     /* the failure is every rank's (no rank waits for another) */
static int g_rank0 = 1;  /* this process writes and prints (rank 0, or alone) */
static void on_signal(int sig) { g_signal = sig; }
static cli_progress g_progress; /* --progress-json / --progress-ack */

static void draw(const char *run, const cli_curve *tr, const cli_curve *va) {
    char path[2048];
    snprintf(path, sizeof path, "%s/loss.svg", run);
    cli_series s[2] = {{"train loss", tr->x, tr->y, tr->n},
                       {"validation loss", va->x, va->y, va->n}};
    if (cli_plot_svg(path, "qkv train: loss", "step", "cross-entropy (nats/token)", s, 2) != 0)
        fprintf(stderr, "qkv train: warning: cannot write %s: %s\n", path, strerror(errno));
}

/* The dataset's end-of-text id (meta.json; opened and checked by qkv_dataset_open already) and
 * its tokenizer (qkv_dataset_tokenizer: absolute, or kept inside the dataset directory). */
static void dataset_meta(const char *data, const qkv_dataset *ds, int32_t *eot, int32_t *tgt_eot,
                         char *tok, size_t tok_cap) {
    char path[2048];
    snprintf(path, sizeof path, "%s/meta.json", data);
    *eot = *tgt_eot = -1;
    tok[0] = 0;
    const char *t = qkv_dataset_tokenizer(ds);
    if (t && snprintf(tok, tok_cap, "%s", t) >= (int)tok_cap) tok[0] = 0;
    json_t *j = json_load_file(path, 0, NULL);
    if (!j) return;
    json_t *e = json_object_get(j, "eot_id");
    if (json_is_integer(e)) *eot = (int32_t)json_integer_value(e);
    e = json_object_get(j, "target_eot_id");
    if (json_is_integer(e)) *tgt_eot = (int32_t)json_integer_value(e);
    json_decref(j);
}

typedef struct byte_span {
    const char *p;
    size_t n;
} byte_span;

static void write_bytes(FILE *out, const void *ctx) {
    const byte_span *b = ctx;
    fwrite(b->p, 1, b->n, out); /* a short write shows in atomic_commit's flush */
}

/* The tokenizer into the exported model: only a file that loads as a tokenizer (a name read
 * from meta.json is not trusted to be one), read whole, then written whole or not at all.
 * 0, or -1 with a reason in *why. */
static int copy_file(const char *from, const char *to);

static int copy_tokenizer(const char *from, const char *to, const char **why) {
    qkv_tokenizer *tok = NULL;
    if (qkv_tokenizer_load(from, &tok) != QKV_OK) {
        *why = qkv_last_error();
        return -1;
    }
    qkv_tokenizer_free(tok);
    *why = "cannot read or write it";
    return copy_file(from, to);
}

/* A regular file's bytes, read whole, to `to` whole or not at all: 0 or -1. */
static int copy_file(const char *from, const char *to) {
    FILE *in = fopen(from, "rb");
    if (!in) return -1;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    int ok = 1;
    for (;;) {
        if (n == cap) {
            char *nb = cap < ((size_t)1 << 30) ? realloc(buf, cap ? 2 * cap : 1 << 16) : NULL;
            if (!nb) {
                ok = 0;
                break;
            }
            buf = nb;
            cap = cap ? 2 * cap : 1 << 16;
        }
        size_t got = fread(buf + n, 1, cap - n, in);
        n += got;
        if (got == 0) break;
    }
    ok &= !ferror(in);
    fclose(in);
    byte_span b = {buf, n};
    int rc = ok ? atomic_write(to, write_bytes, &b) : -1;
    free(buf);
    return rc;
}

/* Writes text and a newline to path through a temporary file and a rename; 0 or -1 (errno). */
static int write_line_atomic(const char *path, const char *text) {
    char tmp[2100];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) return -1;
    int ok = fprintf(f, "%s\n", text) >= 0 && fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok &= fclose(f) == 0;
    if (ok && rename(tmp, path) == 0) return 0;
    int e = errno;
    unlink(tmp);
    errno = e;
    return -1;
}

/* 1 if the Marian tokenizer directory dir has separate source and target vocabularies
 * (tokenizer_config.json "separate_vocabs": true; the tokenizer loader checked the file). */
static int marian_separate_vocabs(const char *dir) {
    char p[2200];
    snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
    json_t *c = json_load_file(p, 0, NULL);
    const int sep = json_is_true(json_object_get(c, "separate_vocabs"));
    json_decref(c);
    return sep;
}

/* marian: generation_config.json beside the exported model (--init's, or OPUS-MT's layout:
 * beam 4, max_length the positions, pad banned, forced EOS, from the exported config.json)
 * and, when the dataset's tokenizers are Marian directories, their source.spm, target.spm and
 * vocab.json (+ target_vocab.json and tokenizer_config.json when the sides' vocabularies are
 * separate), so that `qkv translate` and transformers' MarianTokenizer load the directory.
 * 0, or -1 when no Marian tokenizer was copied (the caller copies tokenizer.json then). */
static int export_marian_extras(const char *init, const char *tok, const char *ttok,
                                const char *dir) {
    char a[2200], b[2200];
    snprintf(a, sizeof a, "%s/generation_config.json", init);
    snprintf(b, sizeof b, "%s/generation_config.json", dir);
    struct stat sb;
    if (!(init[0] && stat(a, &sb) == 0 && S_ISREG(sb.st_mode) && copy_file(a, b) == 0)) {
        snprintf(a, sizeof a, "%s/config.json", dir);
        json_t *c = json_load_file(a, 0, NULL);
        json_int_t pad = json_integer_value(json_object_get(c, "pad_token_id")),
                   eos = json_integer_value(json_object_get(c, "eos_token_id")),
                   start = json_integer_value(json_object_get(c, "decoder_start_token_id")),
                   P = json_integer_value(json_object_get(c, "max_position_embeddings"));
        json_decref(c);
        json_t *g =
            json_pack("{s:[[I]],s:I,s:I,s:I,s:I,s:i,s:I}", "bad_words_ids", pad,
                      "decoder_start_token_id", start, "eos_token_id", eos, "forced_eos_token_id",
                      eos, "max_length", P, "num_beams", 4, "pad_token_id", pad);
        char *js = g ? json_dumps(g, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
        if (!js || write_line_atomic(b, js) != 0)
            fprintf(stderr, "qkv train: warning: cannot write %s\n", b);
        free(js);
        json_decref(g);
    }
    snprintf(a, sizeof a, "%s/source.spm", tok);
    if (!tok[0] || stat(a, &sb) != 0) return -1; /* not a Marian directory */
    qkv_tokenizer *t1 = NULL, *t2 = NULL;
    const int ok =
        qkv_tokenizer_load(tok, &t1) == QKV_OK && qkv_tokenizer_load_target(ttok, &t2) == QKV_OK;
    const char *why = ok ? "cannot read or write it" : qkv_last_error();
    qkv_tokenizer_free(t1);
    qkv_tokenizer_free(t2);
    /* one vocabulary for both sides when both come from one directory that shares it; else
     * the target's (target_vocab.json or vocab.json of ttok) as target_vocab.json, with
     * separate_vocabs in tokenizer_config.json, as MarianTokenizer saves such a tokenizer */
    const int sep = ok && (strcmp(tok, ttok) != 0 || marian_separate_vocabs(ttok));
    const char *from[4] = {tok, tok, ttok, ttok},
               *names[4] = {"source.spm", "vocab.json", "target.spm", "target_vocab.json"},
               *src[4] = {"source.spm", "vocab.json", "target.spm",
                          strcmp(tok, ttok) != 0 && !marian_separate_vocabs(ttok)
                              ? "vocab.json"
                              : "target_vocab.json"};
    for (int i = 0; i < (sep ? 4 : 3); i++) {
        snprintf(a, sizeof a, "%s/%s", from[i], src[i]);
        snprintf(b, sizeof b, "%s/%s", dir, names[i]);
        if (!ok || copy_file(a, b) != 0) {
            fprintf(stderr, "qkv train: warning: the tokenizer file %s was not copied to %s: %s\n",
                    a, dir, why);
            return 0;
        }
    }
    snprintf(b, sizeof b, "%s/tokenizer_config.json", dir);
    if (sep && write_line_atomic(b, "{\"separate_vocabs\": true}") != 0)
        fprintf(stderr, "qkv train: warning: cannot write %s\n", b);
    return 0;
}

/* ---------------------------------------------------------------- the loop's front end */

/* The loop itself is qkv_train_run (src/train/loop.c); this side draws the progress and the
 * plot from its callbacks. */
typedef struct run {
    train_cfg c;
    qkv_runtime *rt;
    qkv_trainer *t;
    qkv_dataset *train, *val;
    cli_curve tr, va;
    int32_t eot, tgt_eot;       /* tgt_eot: a parallel dataset's target side (-1: none) */
    int32_t mask_id;            /* BERT: --mask-token's id */
    char tok[1024], ttok[1024]; /* ttok: a parallel dataset's target tokenizer, or "" */
    int tty;
    long start_step;
    double ema_tps;
} run;

static void fmt_eta(double s, char *buf, size_t cap) {
    if (!isfinite(s) || s < 0) s = 0;
    long x = (long)s;
    if (x >= 3600)
        snprintf(buf, cap, "%ldh%02ldm", x / 3600, x / 60 % 60);
    else
        snprintf(buf, cap, "%ldm%02lds", x / 60, x % 60);
}

/* Every metrics line (also those kept from before a --resume): the curves; a validation
 * redraws the plot and is printed. */
static void on_metrics(const qkv_train_record *m, void *user) {
    run *r = user;
    if (g_rank0 && cli_progress_emit(&g_progress, m)) g_signal = SIGINT; /* the driver's stop */
    if (m->kind == QKV_TRAIN_RECORD_STEP) {
        cli_curve_add(&r->tr, (double)m->step, m->loss);
        return;
    }
    cli_curve_add(&r->va, (double)m->step, m->val_loss);
    if (m->replayed) return;
    draw(r->c.out, &r->tr, &r->va);
    if (isfinite(m->val_loss)) {
        if (r->tty) fputc('\n', stderr);
        fprintf(stderr, "step %lld: val_loss %.4f  val_ppl %.2f\n", (long long)m->step, m->val_loss,
                m->val_ppl);
    }
}

/* After every step: a progress bar on a terminal, else a line every --log-every steps. */
static void on_progress(const qkv_train_record *p, void *user) {
    run *r = user;
    const train_cfg *c = &r->c;
    long step = (long)p->step;
    r->ema_tps = r->ema_tps ? 0.9 * r->ema_tps + 0.1 * p->tokens_per_s : p->tokens_per_s;
    /* the ETA from the mean step time of this run so far (a step's tokens vary for sentence
     * pairs; length-grouped batches vary a lot from step to step) */
    char eta[32];
    const long done = step - r->start_step;
    fmt_eta(done > 0 ? (double)(c->steps - step) * p->elapsed_s / (double)done : 0, eta,
            sizeof eta);
    if (r->tty)
        fprintf(stderr, "\rstep %ld/%ld | loss %.4f | lr %.3g | %.0f tok/s | ETA %s   ", step,
                c->steps, p->loss, p->lr, r->ema_tps, eta);
    else if (step % c->log_every == 0 || step == c->steps || step == r->start_step + 1)
        fprintf(stderr, "step %ld/%ld | loss %.4f | lr %.3g | %.0f tok/s | ETA %s\n", step,
                c->steps, p->loss, p->lr, r->ema_tps, eta);
}

static int should_stop(void *user) {
    (void)user;
    return g_signal != 0;
}

/* This process's resident memory now, in KiB (/proc/self/status VmRSS), or -1. */
static long rss_now_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) kib = strtol(line + 6, NULL, 10);
    if (f) fclose(f);
    return kib;
}

/* After a run, on every rank: what this process held (with ZeRO-1 its moments are a slice);
 * the peak includes the start, when the trainer still held every moment. */
static void print_memory(const run *r) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru); /* ru_maxrss: KiB on Linux */
    const int n = qkv_dist_size(g_dist);
    char who[64] = "this process";
    if (n > 1) snprintf(who, sizeof who, "rank %d of %d", qkv_dist_rank(g_dist), n);
    fprintf(stderr,
            "  memory (%s): optimizer state %.2f MiB%s, RSS %.1f MiB at the end, peak %.1f "
            "MiB\n",
            who, (double)qkv_trainer_optimizer_bytes(r->t) / 1048576.0,
            r->c.zero && n > 1 ? " (its ZeRO-1 slice)" : "", (double)rss_now_kib() / 1024.0,
            (double)ru.ru_maxrss / 1024.0);
}

static int train_loop(run *r) {
    train_cfg *c = &r->c;
    qkv_train_options o;
    qkv_train_options_init(&o);
    o.train = r->train, o.val = r->val;
    o.batch = c->batch, o.seq = c->seq, o.accum = c->accum, o.steps = c->steps, o.seed = c->seed;
    o.lr = c->lr, o.min_lr = c->min_lr, o.warmup = c->warmup;
    o.decay = strcmp(c->decay, "linear") == 0     ? QKV_LR_LINEAR
              : strcmp(c->decay, "constant") == 0 ? QKV_LR_CONSTANT
                                                  : QKV_LR_COSINE;
    o.weight_decay = c->weight_decay, o.beta1 = c->beta1, o.beta2 = c->beta2, o.eps = c->eps;
    o.clip = c->clip;
    o.eval_every = c->eval_every, o.eval_batches = c->eval_batches;
    o.run_dir = c->out, o.save_every = c->save_every, o.keep = c->keep;
    o.mask_token_id = r->mask_id;
    o.tensorboard = (int)c->tensorboard, o.tb_histograms = (int)c->tb_histograms;
    o.dist = g_dist, o.exact_reduce = (int)c->exact_reduce, o.zero = (int)c->zero;
    o.src_seq = c->src_seq;
    o.length_grouped = (int)c->group_by_length;
    char *cfg = cfg_json(c); /* stored in every checkpoint: what --resume continues */
    if (!cfg) return cli_report("recording the options", QKV_ERR_NOMEM);
    o.checkpoint_json = cfg;
    qkv_train_callbacks cb;
    memset(&cb, 0, sizeof cb);
    cb.struct_size = sizeof cb;
    cb.progress = on_progress, cb.metrics = on_metrics, cb.should_stop = should_stop;
    r->tty = isatty(2);
    r->start_step = (long)qkv_trainer_steps(r->t);
    double t_start = now_seconds();
    qkv_status s = qkv_train_run(r->rt, r->t, &o, &cb, r);
    free(cfg);
    long step = (long)qkv_trainer_steps(r->t);
    if (r->tty && g_rank0) fputc('\n', stderr);
    /* what every rank sees alike: bad options or configurations, a stop, a non-finite loss */
    g_agreed = s == QKV_ERR_INVALID_ARG || s == QKV_ERR_INTERRUPTED || s == QKV_ERR_NOT_FINITE;
    if (g_agreed && !g_rank0)
        return s == QKV_ERR_INVALID_ARG  ? EXIT_USAGE
               : s == QKV_ERR_NOT_FINITE ? EXIT_FAIL
               : g_signal == SIGINT      ? 130
                                         : 143;
    if (s == QKV_OK && !g_rank0) {
        print_memory(r);
        return 0;
    }
    if (s == QKV_ERR_INTERRUPTED) {
        fprintf(stderr,
                "qkv train: stopped by %s after step %ld; checkpoint saved. Continue with:\n"
                "  qkv train --resume --out %s\n",
                g_signal == SIGINT ? "SIGINT" : "SIGTERM", step, c->out);
        return g_signal == SIGINT ? 130 : 143;
    }
    if (s == QKV_ERR_NOT_FINITE) {
        long last = (long)qkv_train_latest_checkpoint(c->out);
        fprintf(stderr, "qkv train: %s.\n", qkv_last_error());
        if (last >= 0)
            fprintf(stderr,
                    "  The last good checkpoint is %s/ckpt_%08ld.safetensors (step %ld); try a "
                    "lower --lr or --clip.\n",
                    c->out, last, last);
        else
            fprintf(stderr, "  No checkpoint was written; try a lower --lr or --clip.\n");
        return EXIT_FAIL;
    }
    if (s != QKV_OK) return cli_report("training", s);
    draw(c->out, &r->tr, &r->va);
    /* the final model */
    char dir[2048], path[2100];
    snprintf(dir, sizeof dir, "%s/model", c->out);
    s = qkv_trainer_export_hf(r->t, dir, r->eot);
    if (s != QKV_OK) return cli_report("exporting the model", s);
    const int marian = strcmp(qkv_trainer_arch(r->t), "marian") == 0;
    if (marian && export_marian_extras(c->init, r->tok, r->ttok[0] ? r->ttok : r->tok, dir) == 0)
        ; /* the Marian tokenizer files are there */
    else if (r->tok[0]) {
        char src[2100];
        struct stat sb;
        snprintf(src, sizeof src, "%s", r->tok);
        if (stat(src, &sb) == 0 && S_ISDIR(sb.st_mode))
            snprintf(src, sizeof src, "%s/tokenizer.json", r->tok);
        snprintf(path, sizeof path, "%s/tokenizer.json", dir);
        const char *why = "";
        if (copy_tokenizer(src, path, &why) != 0)
            fprintf(stderr, "qkv train: warning: the tokenizer %s was not copied to %s: %s\n", src,
                    path, why);
    }
    fprintf(stderr, "qkv train: %ld steps done in %.1f s; model written to %s\n",
            step - r->start_step, now_seconds() - t_start, dir);
    print_memory(r);
    return 0;
}
/* ---------------------------------------------------------------- command */

/* A fresh model of --arch: GPT-2 from its shape; Llama and BERT from a Hugging Face
 * config.json written into the run directory (RUN/model_config.json, a record of what was
 * trained). */
/* A fresh model's vocabulary when the dataset names no tokenizer: at most this (the largest
 * published tokenizers have ~260k ids). */
#define MAX_VOCAB_UNCONFIRMED 1048576

/* The vocabulary size of the tokenizer at path (target: its target side), or -1. */
static long tokenizer_vocab(const char *path, int target, int32_t *pad) {
    qkv_tokenizer *tok = NULL;
    qkv_status s = !path    ? QKV_ERR_NOT_FOUND
                   : target ? qkv_tokenizer_load_target(path, &tok)
                            : qkv_tokenizer_load(path, &tok);
    long v = s == QKV_OK ? (long)qkv_tokenizer_vocab_size(tok) : -1;
    if (pad) *pad = s == QKV_OK ? qkv_tokenizer_special_id(tok, QKV_SPECIAL_PAD) : -1;
    qkv_tokenizer_free(tok);
    return v;
}

/* --arch marian: a MarianMTModel config.json for the parallel dataset (shape flags as the
 * other archs: --n-layer encoder and decoder layers each). The vocabularies are the dataset's
 * sides (one shared table when both come from one tokenizer); pad (= decoder start, as
 * OPUS-MT) is the target tokenizer's pad token, else one more id past the vocabulary. */
static int marian_config(const run *r, long P, long F, char *js, size_t cap) {
    const train_cfg *c = &r->c;
    if (!qkv_dataset_is_parallel(r->train))
        return cli_usage_error("train",
                               "--arch marian trains on sentence pairs: %s is not a parallel "
                               "dataset (qkv data prepare --source --target)",
                               c->data);
    const char *tp = qkv_dataset_tokenizer(r->train), *ttp = qkv_dataset_target_tokenizer(r->train);
    long V = (long)qkv_dataset_vocab_size(r->train),
         Vd = (long)qkv_dataset_target_vocab_size(r->train);
    int32_t pad = -1;
    long tv = tokenizer_vocab(tp, 0, NULL), ttv = tokenizer_vocab(ttp, 1, &pad);
    if (tv < 0 || ttv < 0 || V > tv || Vd > ttv)
        return cli_usage_error("train",
                               "%s: --arch marian needs the dataset's tokenizers (%s, %s) to load "
                               "and hold its vocabularies (%ld, %ld)",
                               c->data, tp ? tp : "none", ttp ? ttp : "none", V, Vd);
    const int shared = tp && ttp && strcmp(tp, ttp) == 0 && V == Vd && !marian_separate_vocabs(tp);
    if (pad < 0 || pad >= Vd) { /* no pad token: one more id */
        pad = (int32_t)Vd++;
        if (shared) V = Vd;
    }
    if (r->tgt_eot < 0 || r->tgt_eot >= Vd)
        return cli_usage_error("train", "%s: meta.json has no target_eot_id", c->data);
    if (c->n_kv_head && c->n_kv_head != c->n_head)
        return cli_usage_error("train", "--n-kv-head is for llama");
    int n = snprintf(js, cap,
                     "{\"architectures\": [\"MarianMTModel\"], \"model_type\": \"marian\", "
                     "\"vocab_size\": %ld, \"decoder_vocab_size\": %ld, \"d_model\": %ld, "
                     "\"encoder_layers\": %ld, \"decoder_layers\": %ld, "
                     "\"encoder_attention_heads\": %ld, \"decoder_attention_heads\": %ld, "
                     "\"encoder_ffn_dim\": %ld, \"decoder_ffn_dim\": %ld, "
                     "\"max_position_embeddings\": %ld, \"activation_function\": \"swish\", "
                     "\"scale_embedding\": true, \"share_encoder_decoder_embeddings\": %s, "
                     "\"tie_word_embeddings\": true, \"normalize_before\": false, "
                     "\"pad_token_id\": %d, \"decoder_start_token_id\": %d, "
                     "\"eos_token_id\": %d, \"forced_eos_token_id\": %d, \"dropout\": 0.1, "
                     "\"attention_dropout\": 0.0, \"activation_dropout\": 0.0, "
                     "\"init_std\": 0.02, \"is_encoder_decoder\": true}\n",
                     V, Vd, c->n_embd, c->n_layer, c->n_layer, c->n_head, c->n_head, F, F, P,
                     shared ? "true" : "false", pad, pad, r->tgt_eot, r->tgt_eot);
    return n > 0 && (size_t)n < cap ? 0 : cli_usage_error("train", "marian config too long");
}

static int new_model(run *r) {
    const train_cfg *c = &r->c;
    long P = c->n_positions ? c->n_positions : c->seq;
    if (strcmp(c->arch, "marian") == 0 && !c->n_positions && c->src_seq > P) P = c->src_seq;
    long V = (long)qkv_dataset_vocab_size(r->train);
    /* the vocabulary is a number meta.json claims: check it against the dataset's tokenizer (a
     * dataset cannot make a fresh model ask for a 2^31-row embedding table) */
    const char *tp = qkv_dataset_tokenizer(r->train);
    long tv = tokenizer_vocab(tp, 0, NULL);
    if (tv >= 0 && V > tv)
        return cli_usage_error("train",
                               "%s: meta.json claims a vocabulary of %ld ids, but its tokenizer %s "
                               "has %ld",
                               c->data, V, tp, tv);
    if (tv < 0 && V > MAX_VOCAB_UNCONFIRMED)
        return cli_usage_error(
            "train",
            "%s: meta.json claims a vocabulary of %ld ids and names no tokenizer "
            "that confirms it; more than %ld is refused",
            c->data, V, (long)MAX_VOCAB_UNCONFIRMED);
    long Hk = c->n_kv_head ? c->n_kv_head : c->n_head, F = c->n_inner ? c->n_inner : 4 * c->n_embd;
    if (c->n_embd % c->n_head)
        return cli_usage_error("train", "--n-head %ld must divide --n-embd %ld", c->n_head,
                               c->n_embd);
    if (c->n_head % Hk)
        return cli_usage_error("train", "--n-kv-head %ld must divide --n-head %ld", Hk, c->n_head);
    qkv_status s;
    if (strcmp(c->arch, "gpt2") == 0) {
        if (c->n_inner && c->n_inner != 4 * c->n_embd)
            return cli_usage_error("train", "GPT-2 training needs --n-inner = 4 n-embd");
        qkv_gpt2_shape sh = {V, P, c->n_embd, c->n_layer, c->n_head};
        s = qkv_trainer_new(&sh, c->seed, &r->t);
        return s == QKV_OK ? 0 : cli_report("creating the model", s);
    }
    char js[1400], path[2048];
    if (strcmp(c->arch, "marian") == 0) {
        int rc = marian_config(r, P, F, js, sizeof js);
        if (rc) return rc;
    } else if (strcmp(c->arch, "llama") == 0) {
        if ((c->n_embd / c->n_head) % 2)
            return cli_usage_error("train", "llama needs an even head size (n-embd / n-head)");
        snprintf(js, sizeof js,
                 "{\"model_type\": \"llama\", \"vocab_size\": %ld, \"hidden_size\": %ld, "
                 "\"intermediate_size\": %ld, \"num_hidden_layers\": %ld, "
                 "\"num_attention_heads\": %ld, \"num_key_value_heads\": %ld, "
                 "\"max_position_embeddings\": %ld, \"rms_norm_eps\": 1e-05, "
                 "\"rope_theta\": 10000.0, \"tie_word_embeddings\": false, "
                 "\"hidden_act\": \"silu\"}\n",
                 V, c->n_embd, F, c->n_layer, c->n_head, Hk, P);
    } else if (strcmp(c->arch, "bert") == 0) {
        if (Hk != c->n_head) return cli_usage_error("train", "--n-kv-head is for llama");
        snprintf(js, sizeof js,
                 "{\"model_type\": \"bert\", \"vocab_size\": %ld, \"hidden_size\": %ld, "
                 "\"intermediate_size\": %ld, \"num_hidden_layers\": %ld, "
                 "\"num_attention_heads\": %ld, \"max_position_embeddings\": %ld, "
                 "\"type_vocab_size\": 2, \"layer_norm_eps\": 1e-12, \"hidden_act\": \"gelu\"}\n",
                 V, c->n_embd, F, c->n_layer, c->n_head, P);
    } else {
        return cli_usage_error("train", "--arch must be gpt2, llama, bert or marian, not '%s'",
                               c->arch);
    }
    snprintf(path, sizeof path, "%s/model_config.json", c->out);
    if (write_line_atomic(path, js) != 0) {
        fprintf(stderr, "qkv train: cannot write %s: %s\n", path, strerror(errno));
        return EXIT_FAILURE;
    }
    s = qkv_trainer_new_hf_config(path, c->seed, &r->t);
    return s == QKV_OK ? 0 : cli_report("creating the model", s);
}

/* BERT: the id of --mask-token in the dataset's tokenizer (-1 and a message if absent). */
static int32_t mask_token_id(const run *r) {
    qkv_tokenizer *tok = NULL;
    if (!r->tok[0] || qkv_tokenizer_load(r->tok, &tok) != QKV_OK) {
        fprintf(stderr, "qkv train: masked-LM training needs the dataset's tokenizer (%s): %s\n",
                r->tok[0] ? r->tok : "none recorded", qkv_last_error());
        return -1;
    }
    int32_t id = qkv_tokenizer_token_to_id(tok, r->c.mask_token, strlen(r->c.mask_token));
    qkv_tokenizer_free(tok);
    if (id < 0)
        fprintf(stderr,
                "qkv train: the tokenizer %s has no token '%s' (--mask-token; train one with "
                "`qkv tokenizer train --special '%s'`)\n",
                r->tok, r->c.mask_token, r->c.mask_token);
    return id;
}

/* --init: the run's config.json records the shape of the model that is trained (the
 * --n-layer ... defaults do not apply to it): the trainer's shape, and the key/value heads and
 * MLP width from the directory's config.json. */
static void record_init_shape(train_cfg *c, const qkv_trainer *t, const qkv_gpt2_shape *sh) {
    snprintf(c->arch, sizeof c->arch, "%s", qkv_trainer_arch(t));
    c->n_layer = (long)sh->n_layer, c->n_head = (long)sh->n_head, c->n_embd = (long)sh->n_embd;
    c->n_positions = (long)sh->n_positions;
    c->n_kv_head = 0, c->n_inner = 0; /* = n-head, 4 n-embd unless the config says otherwise */
    char path[2100];
    snprintf(path, sizeof path, "%s/config.json", c->init); /* it just loaded: readable */
    json_t *j = json_load_file(path, 0, NULL);
    const int gpt2 = strcmp(c->arch, "gpt2") == 0;
    json_t *kv = json_object_get(j, "num_key_value_heads");
    json_t *ff = json_object_get(j, gpt2                             ? "n_inner"
                                    : strcmp(c->arch, "marian") == 0 ? "encoder_ffn_dim"
                                                                     : "intermediate_size");
    if (json_is_integer(kv) && strcmp(c->arch, "llama") == 0)
        c->n_kv_head = (long)json_integer_value(kv);
    if (json_is_integer(ff)) c->n_inner = (long)json_integer_value(ff);
    json_decref(j);
}

static int setup(run *r, int resuming) {
    train_cfg *c = &r->c;
    char path[2048];
    long last = (long)qkv_train_latest_checkpoint(c->out);
    if (!resuming && last >= 0)
        return cli_usage_error("train",
                               "%s already holds a run (checkpoint of step %ld); use --resume to "
                               "continue it or choose another --out",
                               c->out, last);
    if (g_rank0 && mkdir(c->out, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "qkv train: cannot create %s: %s\n", c->out, strerror(errno));
        return EXIT_USAGE;
    }
    qkv_status s = qkv_dataset_open(c->data, QKV_SPLIT_TRAIN, &r->train);
    if (s == QKV_OK) s = qkv_dataset_open(c->data, QKV_SPLIT_VAL, &r->val);
    if (s != QKV_OK) return cli_report(c->data, s);
    dataset_meta(c->data, r->train, &r->eot, &r->tgt_eot, r->tok, sizeof r->tok);
    const char *ttp = qkv_dataset_target_tokenizer(r->train);
    if (!ttp || snprintf(r->ttok, sizeof r->ttok, "%s", ttp) >= (int)sizeof r->ttok) r->ttok[0] = 0;
    const int parallel = qkv_dataset_is_parallel(r->train);
    if (!r->t) {
        if (c->init[0]) {
            s = qkv_trainer_load_hf(c->init, &r->t);
            if (s != QKV_OK) return cli_report(c->init, s);
        } else {
            int rc = new_model(r);
            if (rc) return rc;
        }
    }
    qkv_gpt2_shape sh;
    qkv_trainer_get_shape(r->t, &sh);
    if (c->init[0] && !resuming) record_init_shape(c, r->t, &sh);
    r->mask_id = -1;
    if (strcmp(qkv_trainer_arch(r->t), "bert") == 0 && (r->mask_id = mask_token_id(r)) < 0)
        return EXIT_USAGE;
    const int marian = strcmp(qkv_trainer_arch(r->t), "marian") == 0;
    if (marian != parallel)
        return cli_usage_error("train",
                               marian ? "a marian model trains on sentence pairs: %s is not a "
                                        "parallel dataset (qkv data prepare --source --target)"
                                      : "%s is a parallel dataset (sentence pairs): it trains an "
                                        "encoder-decoder (--arch marian, or --init MARIAN_DIR)",
                               c->data);
    if (c->label_smoothing < 0) c->label_smoothing = marian ? 0.1 : 0.0;
    if (c->dropout >= 0 && !marian) return cli_usage_error("train", "--dropout is for marian");
    s = qkv_trainer_set_label_smoothing(r->t, (float)c->label_smoothing);
    if (s == QKV_OK && c->dropout >= 0)
        s = qkv_trainer_set_dropout(r->t, (float)c->dropout, -1, -1);
    if (s != QKV_OK) return cli_report("--label-smoothing / --dropout", s);
    const long seq_max = c->src_seq > c->seq ? c->src_seq : c->seq;
    if (marian && seq_max > sh.n_positions)
        return cli_usage_error("train",
                               "--seq / --src-seq %ld is longer than the model's positions %lld",
                               seq_max, (long long)sh.n_positions);
    if (!marian && c->src_seq) return cli_usage_error("train", "--src-seq is for marian");
    if (!marian && qkv_dataset_vocab_size(r->train) > sh.vocab_size)
        return cli_usage_error("train",
                               "the dataset's vocabulary (%lld) is larger than the "
                               "model's (%lld)",
                               (long long)qkv_dataset_vocab_size(r->train),
                               (long long)sh.vocab_size);
    if (c->seq > sh.n_positions)
        return cli_usage_error("train", "--seq %ld is longer than the model's n_positions %lld",
                               c->seq, (long long)sh.n_positions);
    if (!marian && qkv_dataset_tokens(r->train) < c->seq + 1)
        return cli_usage_error("train", "the train split has %lld tokens, fewer than --seq + 1",
                               (long long)qkv_dataset_tokens(r->train));
    if (strcmp(c->decay, "cosine") && strcmp(c->decay, "linear") && strcmp(c->decay, "constant"))
        return cli_usage_error("train", "--decay must be cosine, linear or constant");
    if (strcmp(c->recompute, "none") && strcmp(c->recompute, "layers"))
        return cli_usage_error("train", "--recompute must be none or layers");
    if (qkv_runtime_create((int)c->threads, &r->rt) != QKV_OK)
        return cli_report("creating threads", QKV_ERR_NOMEM);
    size_t bytes = 0;
    s = qkv_trainer_reserve(
        r->t, c->batch, seq_max,
        strcmp(c->recompute, "layers") == 0 ? QKV_RECOMPUTE_LAYERS : QKV_RECOMPUTE_NONE, &bytes);
    if (s != QKV_OK) return cli_report("allocating activations", s);
    char *js = cfg_json(c);
    snprintf(path, sizeof path, "%s/config.json", c->out);
    if (!js)
        return cli_usage_error("train",
                               "the options cannot be recorded in %s (is a path not valid "
                               "UTF-8?)",
                               path);
    if (g_rank0 && write_line_atomic(path, js) != 0) { /* a full disk is a failure, not bad input */
        fprintf(stderr, "qkv train: cannot write %s: %s\n", path, strerror(errno));
        free(js);
        return EXIT_FAILURE;
    }
    free(js);
    if (!g_rank0) return 0;
    int64_t n_params = qkv_trainer_numel(r->t);
    fprintf(stderr,
            "qkv train: %s %lld layers, %lld heads, n_embd %lld, vocab %lld, positions %lld: "
            "%.2fM parameters\n"
            "  data %s: %lld train / %lld val tokens; batch %ld x %ld x %ld tokens/step; "
            "activations %.1f MiB; %d threads\n",
            qkv_trainer_arch(r->t), (long long)sh.n_layer, (long long)sh.n_head,
            (long long)sh.n_embd, (long long)sh.vocab_size, (long long)sh.n_positions,
            (double)n_params / 1e6, c->data, (long long)qkv_dataset_tokens(r->train),
            (long long)qkv_dataset_tokens(r->val), c->batch, c->accum, c->seq,
            (double)bytes / 1048576.0, qkv_runtime_n_threads(r->rt));
    if (g_dist)
        fprintf(stderr,
                "  %d processes (MPI): each takes every %d-th micro-batch of a step; %s "
                "reduction\n",
                qkv_dist_size(g_dist), qkv_dist_size(g_dist),
                c->exact_reduce ? "exact (fixed-order)" : "all-reduce");
    if (c->zero && qkv_dist_size(g_dist) > 1)
        fprintf(stderr,
                "  ZeRO-1: each process keeps the optimizer state of 1/%d of the parameters\n",
                qkv_dist_size(g_dist));
    else if (c->zero)
        fprintf(stderr, "  --zero 1 with one process: nothing to shard, it has no effect\n");
    if (parallel)
        fprintf(stderr, "  %lld train / %lld val sentence pairs; label smoothing %g\n",
                (long long)qkv_dataset_pairs(r->train), (long long)qkv_dataset_pairs(r->val),
                c->label_smoothing);
    if (parallel && qkv_dataset_pairs(r->val) <= 0)
        fprintf(stderr, "  warning: the validation split holds no pair: no validation loss will "
                        "be reported\n");
    else if (!parallel && qkv_dataset_batches(r->val, c->batch, c->seq) <= 0)
        fprintf(stderr,
                "  warning: the validation split (%lld tokens) holds no batch of %ld x %ld "
                "tokens: no validation loss will be reported\n",
                (long long)qkv_dataset_tokens(r->val), c->batch, c->seq);
    if (resuming)
        fprintf(stderr, "  resuming at step %lld of %ld\n", (long long)qkv_trainer_steps(r->t),
                c->steps);
    return 0;
}

int cmd_train(int argc, char **argv) {
    train_cfg cfg, flags_cfg;
    cfg_defaults(&cfg);
    const char *config = NULL;
    int resume = 0;
    /* flags are applied twice: first to find --config / --resume / --out, then over them */
    const char *set_names[N_OPTS];
    const char *set_vals[N_OPTS];
    int n_set = 0;
    cli_progress_init(&g_progress);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) {
            cmd_train_help();
            return 0;
        }
        int prc;
        if (cli_progress_arg("train", &g_progress, argc, argv, &i, &prc)) {
            if (prc) return prc;
            continue;
        }
        if (strcmp(a, "--resume") == 0) {
            resume = 1;
            continue;
        }
        /* the switches are the options tensorboard / tb-histograms set to 0 / 1 */
        if (strcmp(a, "--no-tensorboard") == 0 || strcmp(a, "--tb-histograms") == 0) {
            if (n_set == (int)N_OPTS) return cli_usage_error("train", "too many options");
            const int off = strcmp(a, "--no-tensorboard") == 0;
            set_names[n_set] = off ? "tensorboard" : "tb-histograms";
            set_vals[n_set++] = off ? "0" : "1";
            continue;
        }
        if (strncmp(a, "--", 2) != 0 || i + 1 >= argc)
            return cli_usage_error("train", "unknown argument or missing value: %s", a);
        if (strcmp(a, "--config") == 0) {
            config = argv[++i];
            continue;
        }
        const opt_def *o = find_opt(a + 2);
        if (!o || strchr(a + 2, '_')) return cli_usage_error("train", "unknown option %s", a);
        if (n_set == (int)N_OPTS) return cli_usage_error("train", "too many options");
        set_names[n_set] = o->name;
        set_vals[n_set++] = argv[++i];
    }
    cfg_defaults(&flags_cfg);
    for (int k = 0; k < n_set; k++) {
        int rc = set_opt(&flags_cfg, find_opt(set_names[k]), set_vals[k], "command line");
        if (rc) return rc;
    }
    if (config) {
        json_error_t err;
        json_t *j = json_load_file(config, 0, &err);
        if (!j) return cli_usage_error("train", "%s:%d: %s", config, err.line, err.text);
        int rc = apply_json(&cfg, j, config, 0);
        json_decref(j);
        if (rc) return rc;
    }
    for (int k = 0; k < n_set; k++) set_opt(&cfg, find_opt(set_names[k]), set_vals[k], "");
    if (!cfg.out[0]) return cli_usage_error("train", "needs --out RUN (the run directory)");
    run r;
    memset(&r, 0, sizeof r);
    if (resume) {
        long last = (long)qkv_train_latest_checkpoint(cfg.out);
        if (last < 0) return cli_usage_error("train", "--resume: no checkpoint in %s", cfg.out);
        char path[2048];
        snprintf(path, sizeof path, "%s/ckpt_%08ld.safetensors", cfg.out, last);
        char *user = NULL, *aside = NULL;
        qkv_status s = qkv_train_resume_checked(cfg.out, &r.t, &user, &aside);
        if (s != QKV_OK) return cli_report(path, s);
        if (aside) { /* damaged checkpoints were skipped: say which, and from where it goes on */
            fprintf(stderr, "qkv train: warning: set aside damaged checkpoints: %s\n", aside);
            fprintf(stderr, "qkv train: resuming from step %lld instead\n",
                    (long long)qkv_trainer_steps(r.t));
            qkv_free(aside);
            snprintf(path, sizeof path, "%s/ckpt_%08lld.safetensors", cfg.out,
                     (long long)qkv_trainer_steps(r.t));
        }
        train_cfg saved;
        cfg_defaults(&saved);
        json_t *j = json_loads(user, 0, NULL);
        qkv_free(user);
        int rc =
            j ? apply_json(&saved, j, path, 1) : cli_usage_error("train", "%s: bad config", path);
        json_decref(j);
        if (rc) {
            qkv_trainer_free(r.t);
            return rc;
        }
        strcpy(saved.out, cfg.out);
        for (int k = 0; k < n_set; k++) {
            const opt_def *o = find_opt(set_names[k]);
            if (strcmp(o->name, "out") == 0) continue;
            if (!o->resumable) {
                qkv_trainer_free(r.t);
                return cli_usage_error("train",
                                       "--%s cannot change on --resume (it would not continue the "
                                       "same run)",
                                       o->name);
            }
            set_opt(&saved, o, set_vals[k], "");
        }
        cfg = saved;
    } else if (!cfg.data[0]) {
        return cli_usage_error("train", "needs --data DIR (a dataset from `qkv data prepare`)");
    }
    r.c = cfg;
    int rc = cli_dist_begin("train", cfg.mpi_timeout, &g_dist);
    if (rc) {
        qkv_trainer_free(r.t);
        return rc;
    }
    g_rank0 = qkv_dist_rank(g_dist) == 0;
    rc = setup(&r, resume);
    if (!rc) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sa.sa_flags = SA_RESETHAND; /* a second Ctrl-C kills at once */
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        rc = train_loop(&r);
    }
    qkv_trainer_free(r.t);
    qkv_dataset_close(r.train);
    qkv_dataset_close(r.val);
    qkv_runtime_free(r.rt);
    cli_curve_free(&r.tr), cli_curve_free(&r.va);
    cli_dist_end(g_dist, rc, g_agreed || rc == EXIT_USAGE);
    return rc;
}
