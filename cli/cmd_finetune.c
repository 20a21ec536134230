/* cmd_finetune.c — `qkv finetune`: fine-tunes a BERT (any Hugging Face BERT directory:
 * BertModel / sentence-transformers, BertForMaskedLM or BertForSequenceClassification) into a
 * sequence classifier on a labelled file, as transformers' Trainer does: AdamW with weight decay
 * except biases and LayerNorms, linear warmup then linear decay, gradient clipping, dropout as
 * the config says, evaluation each epoch, the best model kept.
 *
 * The library does the work (qkv_labeled_* reads the data, qkv_cls_data_build tokenizes it,
 * qkv_trainer_load_hf_classifier builds the model, qkv_train_run is the loop with its metrics,
 * checkpoints and resumption, qkv_cls_metrics_* the report); this side is options, the run
 * directory, signals, the progress bar, plots and the final reports. */
#include "atomic.h"
#include "cli.h"
#include "plot.h"
#include "progress.h"
#include "textio.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void cmd_finetune_help(void) {
    printf(
        "Usage: qkv finetune --model DIR --train FILE --out RUN [options]\n"
        "       qkv finetune --resume --out RUN [--threads N] [--no-tensorboard]\n"
        "       mpirun -np P qkv finetune ... (data-parallel: below)\n\n"
        "Fine-tunes a BERT into a sequence classifier (transformers'\n"
        "BertForSequenceClassification: pooler dense + tanh over [CLS], dropout, a linear\n"
        "classifier) on labelled text, as transformers' Trainer does: AdamW (weight decay on\n"
        "everything but biases and LayerNorms), linear warmup then linear decay to 0, gradient\n"
        "clipping, dropout as the model's config.json says, an evaluation on the validation set\n"
        "after every epoch; the best epoch (validation macro-F1; loss for regression) is kept.\n"
        "DIR is any Hugging Face BERT directory (config.json, model.safetensors, tokenizer.json\n"
        "or vocab.txt): a sentence-transformers model such as all-MiniLM-L6-v2, a BertModel, a\n"
        "BertForMaskedLM or a BertForSequenceClassification. A missing classification head (or\n"
        "one for other labels) starts as transformers initializes it, from --seed.\n\n"
        "Data (--train, --val, --test): TSV / CSV (columns text[,text_pair],label; a header row\n"
        "is detected), JSON lines {\"text\", \"text_pair\", \"label\"}, or a directory with one\n"
        "folder per class holding one text file per example (docs/TRAINING.md, \"Labelled data\n"
        "for classification\"). Label names are kept and written to the model's config.json as\n"
        "id2label / label2id. Without --val, --val-split of the training data (stratified, a\n"
        "pure function of --seed) is held out.\n\n"
        "The run directory RUN gets:\n"
        "  metrics.jsonl         a line per step (loss, lr, grad_norm, tokens/s, epoch) and per\n"
        "                        evaluation (val_loss, val_accuracy, val_macro_f1, best)\n"
        "  loss.svg, f1.svg      the training / validation loss and the validation scores\n"
        "  events.out.tfevents.* the same metrics for TensorBoard (tensorboard --logdir RUN)\n"
        "  config.json           these options (`qkv report RUN` shows them with the curves)\n"
        "  ckpt_*.safetensors    checkpoints (weights, AdamW state, labels, these options)\n"
        "  best.safetensors      the best evaluation's checkpoint\n"
        "  model/                the best model as a Hugging Face directory that\n"
        "                        AutoModelForSequenceClassification and `qkv classify` load\n"
        "  report.txt, confusion.svg     the best model on the validation set: scikit-learn's\n"
        "                        classification_report and the confusion matrix\n"
        "  test_report.txt, test_confusion.svg   the same on --test\n\n"
        "Options (defaults in parentheses):\n"
        "  --model DIR           the BERT to start from (required)\n"
        "  --train FILE          labelled training data (required)\n"
        "  --val FILE            labelled validation data\n"
        "  --val-split F         without --val: the share of --train held out (0.1)\n"
        "  --test FILE           labelled test data: reported once at the end, never trained on\n"
        "  --out RUN             the run directory (required; created)\n"
        "  --problem P           single (one label per text), multi (labels: a JSON array, or\n"
        "                        names separated by --label-sep), regression (a number); default:\n"
        "                        the model's problem_type, else single\n"
        "  --labels A,B,...      the label names in id order (default: the model's id2label when\n"
        "                        the data's labels are among them, else the training data's,\n"
        "                        sorted)\n"
        "  --epochs N            (3)\n"
        "  --batch N             examples per step (32)\n"
        "  --lr X                peak learning rate (2e-5)\n"
        "  --weight-decay X      AdamW weight decay (0.01)\n"
        "  --warmup-ratio X      share of the steps spent warming up (0.1)\n"
        "  --clip X              gradient-norm clipping, 0 off (1.0)\n"
        "  --max-length N        tokens per example incl. [CLS]/[SEP]; longer is truncated\n"
        "                        longest-first (128, at most the model's positions)\n"
        "  --dropout P|off       every dropout rate (hidden, attention, classifier); default:\n"
        "                        config.json's\n"
        "  --no-group-by-length  shuffle without grouping examples of alike lengths into batches\n"
        "  --seed N              data order, dropout, a new head, the split (42)\n"
        "  --eval-every N        evaluate every N steps (default: each epoch)\n"
        "  --save-every N        checkpoint every N steps (default: each epoch)\n"
        "  --keep N              checkpoints kept besides best.safetensors (2)\n"
        "  --recompute           recompute activations in the backward (less memory)\n"
        "  --no-tensorboard      write no TensorBoard event file\n"
        "  --tb-histograms       also a histogram of every trained tensor at each evaluation\n"
        "LoRA (train low-rank adapters and the classifier only, as PEFT does; the run also\n"
        "writes RUN/adapter/, a PEFT adapter directory, besides the merged RUN/model/):\n"
        "  --lora-r R            the adapters' rank (off by default; 8 is usual)\n"
        "  --lora-alpha A        lora_alpha: the update is scaled by A / R (default 2 R)\n"
        "  --lora-dropout P      dropout on the adapters' input (0.1)\n"
        "  --lora-targets LIST   modules to adapt, PEFT's names (query,value)\n"
        "  --threads N           threads (default: QKV_NUM_THREADS or all CPUs)\n"
        "  --progress-json FD    also write every metrics line as one JSON object on the open\n"
        "                        file descriptor FD (1: stdout): the metrics.jsonl fields at\n"
        "                        full precision, \"kind\": \"step\" or \"eval\", \"replayed\": "
        "true\n"
        "                        for the lines of before a --resume (for programs that drive\n"
        "                        qkv finetune, such as the Python package's qkv.finetune)\n"
        "  --progress-ack FD     after each such line, wait for one byte on FD: 's' (or the end\n"
        "                        of the file) stops the run after this step as Ctrl-C does\n"
        "  --resume              continue RUN from its newest checkpoint (data and options as\n"
        "                        stored in it); the result equals an uninterrupted run\n"
        "  --micro-batch N       examples per forward and backward: a step's --batch examples\n"
        "                        are ceil(batch / N) micro-batches, their gradients summed\n"
        "                        (default: --batch; with mpirun -np P: ceil(batch / P)). Part of\n"
        "                        the run: its results depend on it (dropout masks, rounding),\n"
        "                        not on P; kept on --resume\n"
        "Several processes (mpirun -np P qkv finetune ...; a build with -DQKV_WITH_MPI=ON): each\n"
        "takes every P-th micro-batch of a step and a share of each evaluation; process 0 alone\n"
        "writes RUN and prints (docs/SCALING.md):\n"
        "  --exact-reduce 0|1    1: sum the gradients in a fixed order, bit-identical for any\n"
        "                        number of processes, 1 included (0: all-reduce, equal within\n"
        "                        rounding) (0; may change on --resume)\n"
        "  --zero 0|1            1: ZeRO-1, AdamW's moments sharded across the processes (0;\n"
        "                        may change on --resume)\n"
        "  --mpi-timeout S       stop when the other processes do not answer for S seconds (300)\n"
        "Data reading: --format tsv|csv|jsonl|dir, --text-field, --pair-field, --label-field,\n"
        "  --label-sep C, --no-quotes, --header yes|no (as `qkv evaluate`).\n\n"
        "Ctrl-C (or SIGTERM) stops after the current step with a checkpoint; --resume goes on.\n"
        "Exit status: 0 done; 2 bad usage or input (the message names FILE:LINE); 1 failure\n"
        "(130 / 143 when stopped by SIGINT / SIGTERM).\n");
}

/* ---------------------------------------------------------------- options */

typedef struct ft_cfg {
    char model[PATH_MAX], train[PATH_MAX], val[PATH_MAX], test[PATH_MAX], out[PATH_MAX];
    char labels[4096], lora_targets[256];
    char problem[16], format[8], text_field[64], pair_field[64], label_field[64], header[4];
    char label_sep;
    int no_quotes, group, recompute;
    int tensorboard, tb_histograms; /* not stored in checkpoints: given again on --resume */
    double val_split, lr, weight_decay, warmup_ratio, clip, dropout; /* dropout < 0: config */
    long epochs, batch, max_length, eval_every, save_every, keep, lora_r;
    double lora_alpha, lora_dropout; /* alpha 0: 2 r */
    unsigned long long seed;
    long micro_batch;        /* 0: decided at the start (--batch, or split over the processes) */
    long exact_reduce, zero; /* 0 / 1 */
    double mpi_timeout;      /* not stored in checkpoints */
    int set_exact, set_zero, set_micro; /* given on the command line (--resume overrides) */
} ft_cfg;

static void cfg_defaults(ft_cfg *c) {
    memset(c, 0, sizeof *c);
    c->val_split = 0.1, c->lr = 2e-5, c->weight_decay = 0.01, c->warmup_ratio = 0.1;
    c->clip = 1.0, c->dropout = -1.0;
    c->epochs = 3, c->batch = 32, c->max_length = 128, c->keep = 2, c->seed = 42, c->group = 1;
    c->label_sep = '|';
    c->tensorboard = 1;
    c->lora_dropout = 0.1;
    c->mpi_timeout = 300;
    snprintf(c->lora_targets, sizeof c->lora_targets, "query,value");
}

/* The options as JSON (stored in every checkpoint: what --resume continues). */
static char *cfg_json(const ft_cfg *c) {
    char sep[2] = {c->label_sep, 0};
    json_t *j = json_pack(
        "{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:b,s:b,s:b,s:f,s:f,s:f,s:f,s:f,"
        "s:f,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:f,s:f,s:s,s:I,s:I,s:I}",
        "model", c->model, "train", c->train, "val", c->val, "test", c->test, "out", c->out,
        "labels", c->labels, "problem", c->problem, "format", c->format, "text_field",
        c->text_field, "pair_field", c->pair_field, "label_field", c->label_field, "header",
        c->header, "label_sep", sep, "no_quotes", c->no_quotes, "group", c->group, "recompute",
        c->recompute, "val_split", c->val_split, "lr", c->lr, "weight_decay", c->weight_decay,
        "warmup_ratio", c->warmup_ratio, "clip", c->clip, "dropout", c->dropout, "epochs",
        (json_int_t)c->epochs, "batch", (json_int_t)c->batch, "max_length",
        (json_int_t)c->max_length, "eval_every", (json_int_t)c->eval_every, "save_every",
        (json_int_t)c->save_every, "keep", (json_int_t)c->keep, "seed", (json_int_t)c->seed,
        "lora_r", (json_int_t)c->lora_r, "lora_alpha", c->lora_alpha, "lora_dropout",
        c->lora_dropout, "lora_targets", c->lora_targets, "micro_batch", (json_int_t)c->micro_batch,
        "exact_reduce", (json_int_t)c->exact_reduce, "zero", (json_int_t)c->zero);
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return s;
}

static int str_field(json_t *j, const char *k, char *dst, size_t cap) {
    json_t *v = json_object_get(j, k);
    if (!json_is_string(v) || strlen(json_string_value(v)) >= cap) return -1;
    snprintf(dst, cap, "%s", json_string_value(v));
    return 0;
}

/* The options of a checkpoint's JSON (--resume); -1 if any is missing or of the wrong type. */
static int cfg_from_json(ft_cfg *c, const char *text) {
    json_t *j = json_loads(text, 0, NULL);
    if (!j) return -1;
    char sep[4];
    int bad = str_field(j, "model", c->model, sizeof c->model) |
              str_field(j, "train", c->train, sizeof c->train) |
              str_field(j, "val", c->val, sizeof c->val) |
              str_field(j, "test", c->test, sizeof c->test) |
              str_field(j, "labels", c->labels, sizeof c->labels) |
              str_field(j, "problem", c->problem, sizeof c->problem) |
              str_field(j, "format", c->format, sizeof c->format) |
              str_field(j, "text_field", c->text_field, sizeof c->text_field) |
              str_field(j, "pair_field", c->pair_field, sizeof c->pair_field) |
              str_field(j, "label_field", c->label_field, sizeof c->label_field) |
              str_field(j, "header", c->header, sizeof c->header) |
              str_field(j, "label_sep", sep, sizeof sep) |
              str_field(j, "lora_targets", c->lora_targets, sizeof c->lora_targets);
    c->label_sep = sep[0];
    json_t *v;
#define B_(k, dst)                                                                                 \
    if (!json_is_boolean(v = json_object_get(j, k)))                                               \
        bad = -1;                                                                                  \
    else                                                                                           \
        dst = json_is_true(v);
#define F_(k, dst)                                                                                 \
    if (!json_is_number(v = json_object_get(j, k)))                                                \
        bad = -1;                                                                                  \
    else                                                                                           \
        dst = json_number_value(v);
#define I_(k, dst)                                                                                 \
    if (!json_is_integer(v = json_object_get(j, k)))                                               \
        bad = -1;                                                                                  \
    else                                                                                           \
        dst = json_integer_value(v);
    B_("no_quotes", c->no_quotes) B_("group", c->group) B_("recompute", c->recompute);
    F_("val_split", c->val_split) F_("lr", c->lr) F_("weight_decay", c->weight_decay);
    F_("warmup_ratio", c->warmup_ratio) F_("clip", c->clip) F_("dropout", c->dropout);
    I_("epochs", c->epochs) I_("batch", c->batch) I_("max_length", c->max_length);
    I_("eval_every", c->eval_every) I_("save_every", c->save_every) I_("keep", c->keep);
    I_("seed", c->seed) I_("lora_r", c->lora_r);
    F_("lora_alpha", c->lora_alpha) F_("lora_dropout", c->lora_dropout);
    /* runs older than data-parallel fine-tuning lack these: whole batches, no exact reduction */
    c->micro_batch = c->exact_reduce = c->zero = 0;
    if (json_object_get(j, "micro_batch")) {
        I_("micro_batch", c->micro_batch) I_("exact_reduce", c->exact_reduce) I_("zero", c->zero);
    }
#undef B_
#undef F_
#undef I_
    json_decref(j);
    return bad ? -1 : 0;
}

/* An absolute form of a path typed by the user (so --resume from elsewhere finds it). */
static int absolute(const char *cmd, const char *opt, const char *in, char *out, size_t cap) {
    char cwd[PATH_MAX];
    int n = in[0] == '/' || !getcwd(cwd, sizeof cwd) ? snprintf(out, cap, "%s", in)
                                                     : snprintf(out, cap, "%s/%s", cwd, in);
    if (n < 0 || (size_t)n >= cap) return cli_usage_error(cmd, "%s: path too long", opt);
    return 0;
}

static int parse_double(const char *opt, const char *v, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !(x >= lo && x <= hi))
        return cli_usage_error("finetune", "%s must be a number in [%g, %g], not '%s'", opt, lo, hi,
                               v);
    *out = x;
    return 0;
}

static int copy_str(const char *opt, const char *v, char *dst, size_t cap) {
    if (strlen(v) >= cap) return cli_usage_error("finetune", "%s is too long", opt);
    snprintf(dst, cap, "%s", v);
    return 0;
}

/* Several processes (mpirun): this one's part, or NULL alone. */
static qkv_dist *g_dist;
static int g_agreed;    /* the failure is every rank's (no rank waits for another) */
static int g_rank0 = 1; /* this process writes and prints (rank 0, or alone) */

/* ---------------------------------------------------------------- data */

static int load_data(const ft_cfg *c, const char *path, qkv_problem_type p, qkv_labeled **out) {
    qkv_labeled_options o;
    qkv_labeled_default_options(&o);
    o.problem = p;
    o.format = !c->format[0]                   ? QKV_LABELED_AUTO
               : strcmp(c->format, "tsv") == 0 ? QKV_LABELED_TSV
               : strcmp(c->format, "csv") == 0 ? QKV_LABELED_CSV
               : strcmp(c->format, "dir") == 0 ? QKV_LABELED_DIR
                                               : QKV_LABELED_JSONL;
    o.header = !c->header[0] ? 0 : strcmp(c->header, "yes") == 0 ? 1 : -1;
    o.text_field = c->text_field[0] ? c->text_field : NULL;
    o.pair_field = c->pair_field[0] ? c->pair_field : NULL;
    o.label_field = c->label_field[0] ? c->label_field : NULL;
    o.label_separator = c->label_sep;
    o.no_quotes = c->no_quotes;
    qkv_status s = qkv_labeled_load(path, &o, out);
    if (s != QKV_OK) return cli_report("reading the data", s);
    if (g_rank0) cli_warn_multiline("finetune", path, *out, c->no_quotes);
    return 0;
}

/* The model's problem_type from its config.json (single-label when absent). */
static qkv_problem_type config_problem(const char *dir) {
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_t *j = json_load_file(path, 0, NULL);
    json_t *p = j ? json_object_get(j, "problem_type") : NULL;
    const char *s = json_is_string(p) ? json_string_value(p) : "";
    qkv_problem_type r = strcmp(s, "multi_label_classification") == 0 ? QKV_PROBLEM_MULTI_LABEL
                         : strcmp(s, "regression") == 0               ? QKV_PROBLEM_REGRESSION
                                                                      : QKV_PROBLEM_SINGLE_LABEL;
    json_decref(j);
    return r;
}

/* Splits "a,b,c" into names (pointers into buf). */
static int64_t split_names(char *buf, const char **names, int64_t cap) {
    int64_t n = 0;
    for (char *p = buf; *p && n < cap;) {
        names[n++] = p;
        char *comma = strchr(p, ',');
        if (!comma) break;
        *comma = 0;
        p = comma + 1;
    }
    return n;
}

/* ---------------------------------------------------------------- the loop's front end */

static volatile sig_atomic_t g_signal = 0;
static void on_signal(int sig) { g_signal = sig; }
static cli_progress g_progress; /* --progress-json / --progress-ack */
static int should_stop(void *user) {
    (void)user;
    return g_signal != 0;
}

typedef struct ft_run {
    ft_cfg c;
    qkv_runtime *rt;
    qkv_trainer *t;
    qkv_tokenizer *tok;
    qkv_labeled *train, *val, *test;
    qkv_cls_data *dtrain, *dval, *dtest;
    cli_curve tr, va, acc, f1;
    int64_t total, start_step, epoch_steps;
    int tty;
    double ema, t0;
} ft_run;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void draw(ft_run *r) {
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/loss.svg", r->c.out);
    cli_series s[2] = {{"train loss", r->tr.x, r->tr.y, r->tr.n},
                       {"validation loss", r->va.x, r->va.y, r->va.n}};
    if (cli_plot_svg(path, "qkv finetune: loss", "epoch", "loss", s, 2) != 0)
        fprintf(stderr, "qkv finetune: warning: cannot write %s: %s\n", path, strerror(errno));
    if (!r->f1.n) return;
    snprintf(path, sizeof path, "%s/f1.svg", r->c.out);
    cli_series m[2] = {{"validation accuracy", r->acc.x, r->acc.y, r->acc.n},
                       {"validation macro-F1", r->f1.x, r->f1.y, r->f1.n}};
    if (cli_plot_svg(path, "qkv finetune: validation", "epoch", "score", m, 2) != 0)
        fprintf(stderr, "qkv finetune: warning: cannot write %s: %s\n", path, strerror(errno));
}

static void on_metrics(const qkv_train_record *m, void *user) {
    ft_run *r = user;
    if (g_rank0 && cli_progress_emit(&g_progress, m)) g_signal = SIGINT; /* the driver's stop */
    if (m->kind == QKV_TRAIN_RECORD_STEP) {
        cli_curve_add(&r->tr, m->epoch, m->loss);
        return;
    }
    cli_curve_add(&r->va, m->epoch, m->val_loss);
    if (isfinite(m->val_macro_f1)) {
        cli_curve_add(&r->acc, m->epoch, m->val_accuracy);
        cli_curve_add(&r->f1, m->epoch, m->val_macro_f1);
    }
    if (m->replayed) return;
    draw(r);
    if (r->tty) fputc('\n', stderr);
    if (isfinite(m->val_macro_f1))
        fprintf(stderr, "epoch %.2f (step %lld): val_loss %.4f  accuracy %.4f  macro-F1 %.4f%s\n",
                m->epoch, (long long)m->step, m->val_loss, m->val_accuracy, m->val_macro_f1,
                m->best ? "  (best so far: saved)" : "");
    else
        fprintf(stderr, "epoch %.2f (step %lld): val_loss %.4f%s\n", m->epoch, (long long)m->step,
                m->val_loss, m->best ? "  (best so far: saved)" : "");
}

static void on_progress(const qkv_train_record *p, void *user) {
    ft_run *r = user;
    r->ema = r->ema ? 0.9 * r->ema + 0.1 * p->step_s : p->step_s;
    const double eta = (double)(r->total - p->step) * r->ema;
    long e = (long)eta;
    char etas[32];
    snprintf(etas, sizeof etas, e >= 3600 ? "%ldh%02ldm" : "%ldm%02lds",
             e >= 3600 ? e / 3600 : e / 60, e >= 3600 ? e / 60 % 60 : e % 60);
    const long ep = (long)((p->step - 1) / r->epoch_steps) + 1;
    if (r->tty)
        fprintf(stderr,
                "\repoch %ld/%ld | step %lld/%lld | loss %.4f | lr %.3g | %.0f tok/s | ETA %s  ",
                ep, r->c.epochs, (long long)p->step, (long long)r->total, p->loss, p->lr,
                p->tokens_per_s, etas);
    else if (p->step % 50 == 0 || p->step == r->total || p->step == r->start_step + 1)
        fprintf(stderr,
                "epoch %ld/%ld | step %lld/%lld | loss %.4f | lr %.3g | %.0f tok/s | ETA %s\n", ep,
                r->c.epochs, (long long)p->step, (long long)r->total, p->loss, p->lr,
                p->tokens_per_s, etas);
}

/* ---------------------------------------------------------------- reports */

static void put_text(FILE *f, const void *text) { fputs(text, f); }

/* The trainer's predictions on d: the classification report (printed, and written to
 * RUN/<prefix>report.txt) and the confusion matrix (RUN/<prefix>confusion.svg); regression:
 * the mean squared error. */
static int report(ft_run *r, const qkv_cls_data *d, const char *title, const char *prefix) {
    const int64_t n = qkv_cls_data_count(d), NL = qkv_trainer_num_labels(r->t);
    const qkv_problem_type pt = qkv_trainer_problem_type(r->t);
    float *lg = malloc((size_t)(n * NL) * sizeof *lg);
    if (!lg) return cli_report("report", QKV_ERR_NOMEM);
    qkv_status s = qkv_trainer_predict(r->rt, r->t, d, r->c.batch, lg);
    if (s != QKV_OK) {
        free(lg);
        return cli_report("predicting", s);
    }
    const qkv_labeled *src = d == r->dtest ? r->test : r->val;
    const char **names = malloc((size_t)NL * sizeof *names);
    for (int64_t k = 0; names && k < NL; k++) names[k] = qkv_trainer_label(r->t, k);
    qkv_cls_metrics *m = NULL;
    if (pt == QKV_PROBLEM_REGRESSION) {
        double se = 0;
        for (int64_t i = 0; i < n; i++) {
            double e = (double)lg[i] - (double)qkv_labeled_value(src, i);
            se += e * e;
        }
        printf("%s: mean squared error %.6g over %lld examples\n", title, se / (double)n,
               (long long)n);
    } else if (pt == QKV_PROBLEM_SINGLE_LABEL) {
        int32_t *yt = malloc((size_t)n * 2 * sizeof *yt);
        for (int64_t i = 0; yt && i < n; i++) {
            int32_t best = 0;
            for (int32_t k = 1; k < NL; k++)
                if (lg[i * NL + k] > lg[i * NL + best]) best = k;
            yt[i] = qkv_labeled_label(src, i), yt[n + i] = best;
        }
        s = yt ? qkv_cls_metrics_compute(yt, yt + n, n, NL, &m) : QKV_ERR_NOMEM;
        free(yt);
    } else {
        uint8_t *mt = malloc((size_t)(n * NL) * 2);
        float *vec = malloc((size_t)NL * sizeof *vec);
        for (int64_t i = 0; mt && vec && i < n; i++) {
            qkv_labeled_label_vector(src, i, vec);
            for (int64_t k = 0; k < NL; k++) {
                mt[i * NL + k] = vec[k] > 0.5f;
                mt[n * NL + i * NL + k] = lg[i * NL + k] > 0.0f;
            }
        }
        s = mt && vec ? qkv_cls_metrics_compute_multilabel(mt, mt + n * NL, n, NL, &m)
                      : QKV_ERR_NOMEM;
        free(mt), free(vec);
    }
    free(lg);
    int rc = 0;
    if (s != QKV_OK) rc = cli_report("the report", s);
    char *text = NULL, *conf = NULL;
    if (m && qkv_cls_report(m, names, 4, &text) == QKV_OK) {
        printf("%s (%lld examples):\n\n%s\n", title, (long long)n, text);
        char path[PATH_MAX + 32];
        snprintf(path, sizeof path, "%s/%sreport.txt", r->c.out, prefix);
        if (atomic_write(path, put_text, text) != 0)
            fprintf(stderr, "qkv finetune: warning: cannot write %s\n", path);
        if (!m->multilabel && qkv_cls_confusion_text(m, names, &conf) == QKV_OK)
            printf("confusion matrix (rows: true, columns: predicted):\n%s\n", conf);
        snprintf(path, sizeof path, "%s/%sconfusion.svg", r->c.out, prefix);
        if (!m->multilabel && NL <= CLI_CONFUSION_MAX &&
            cli_plot_confusion_svg(path, title, names, m->confusion, NL) != 0)
            fprintf(stderr, "qkv finetune: warning: cannot write %s\n", path);
    }
    qkv_free(text);
    qkv_free(conf);
    qkv_cls_metrics_free(m);
    free(names);
    return rc;
}

/* Copies the tokenizer files of the source model into the exported directory. */
static void copy_tokenizer(const char *from_dir, const char *to_dir) {
    static const char *const files[] = {"tokenizer.json", "vocab.txt", "tokenizer_config.json",
                                        "special_tokens_map.json"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char a[PATH_MAX + 64], b[PATH_MAX + 64];
        snprintf(a, sizeof a, "%s/%s", from_dir, files[i]);
        snprintf(b, sizeof b, "%s/%s", to_dir, files[i]);
        struct stat st;
        if (lstat(a, &st) != 0 || !S_ISREG(st.st_mode)) continue; /* regular files only */
        FILE *in = fopen(a, "rb");
        atomic_file out;
        const int opened = in && atomic_open(&out, b) == 0;
        int ok = opened;
        char buf[65536];
        size_t k;
        while (ok && (k = fread(buf, 1, sizeof buf, in)) > 0) ok = fwrite(buf, 1, k, out.f) == k;
        ok = ok && !ferror(in);
        if (ok)
            ok = atomic_commit(&out) == 0;
        else if (opened)
            atomic_abort(&out);
        if (in) fclose(in);
        if (!ok) fprintf(stderr, "qkv finetune: warning: could not copy %s\n", a);
    }
}

/* ---------------------------------------------------------------- setup */

static int parse_args(int argc, char **argv, ft_cfg *c, int *resume, long *threads) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
#define VAL()                                                                                      \
    do {                                                                                           \
        if (!v) return cli_usage_error("finetune", "%s needs a value", a);                         \
        i++;                                                                                       \
    } while (0)
        if (cli_progress_arg("finetune", &g_progress, argc, argv, &i, &rc)) {
            if (rc) return rc;
            continue;
        }
        if (strcmp(a, "--resume") == 0)
            *resume = 1;
        else if (strcmp(a, "--no-group-by-length") == 0)
            c->group = 0;
        else if (strcmp(a, "--recompute") == 0)
            c->recompute = 1;
        else if (strcmp(a, "--no-quotes") == 0)
            c->no_quotes = 1;
        else if (strcmp(a, "--no-tensorboard") == 0)
            c->tensorboard = 0;
        else if (strcmp(a, "--tb-histograms") == 0)
            c->tb_histograms = 1;
        else if (strcmp(a, "--model") == 0) {
            VAL();
            rc = absolute("finetune", a, v, c->model, sizeof c->model);
        } else if (strcmp(a, "--train") == 0) {
            VAL();
            rc = absolute("finetune", a, v, c->train, sizeof c->train);
        } else if (strcmp(a, "--val") == 0) {
            VAL();
            rc = absolute("finetune", a, v, c->val, sizeof c->val);
        } else if (strcmp(a, "--test") == 0) {
            VAL();
            rc = absolute("finetune", a, v, c->test, sizeof c->test);
        } else if (strcmp(a, "--out") == 0) {
            VAL();
            rc = copy_str(a, v, c->out, sizeof c->out);
        } else if (strcmp(a, "--labels") == 0) {
            VAL();
            rc = copy_str(a, v, c->labels, sizeof c->labels);
        } else if (strcmp(a, "--problem") == 0) {
            VAL();
            if (strcmp(v, "single") && strcmp(v, "multi") && strcmp(v, "regression"))
                return cli_usage_error("finetune", "--problem is single, multi or regression");
            rc = copy_str(a, v, c->problem, sizeof c->problem);
        } else if (strcmp(a, "--format") == 0) {
            VAL();
            if (strcmp(v, "tsv") && strcmp(v, "csv") && strcmp(v, "jsonl") && strcmp(v, "dir"))
                return cli_usage_error("finetune", "--format is tsv, csv, jsonl or dir");
            rc = copy_str(a, v, c->format, sizeof c->format);
        } else if (strcmp(a, "--header") == 0) {
            VAL();
            if (strcmp(v, "yes") && strcmp(v, "no"))
                return cli_usage_error("finetune", "--header is yes or no");
            rc = copy_str(a, v, c->header, sizeof c->header);
        } else if (strcmp(a, "--text-field") == 0) {
            VAL();
            rc = copy_str(a, v, c->text_field, sizeof c->text_field);
        } else if (strcmp(a, "--pair-field") == 0) {
            VAL();
            rc = copy_str(a, v, c->pair_field, sizeof c->pair_field);
        } else if (strcmp(a, "--label-field") == 0) {
            VAL();
            rc = copy_str(a, v, c->label_field, sizeof c->label_field);
        } else if (strcmp(a, "--label-sep") == 0) {
            VAL();
            if (strlen(v) != 1) return cli_usage_error("finetune", "--label-sep is one character");
            c->label_sep = v[0];
        } else if (strcmp(a, "--lora-r") == 0) {
            VAL();
            rc = cli_parse_count("finetune", a, v, 1, 4096, &c->lora_r);
        } else if (strcmp(a, "--lora-alpha") == 0) {
            VAL();
            rc = parse_double(a, v, 1e-6, 1e6, &c->lora_alpha);
        } else if (strcmp(a, "--lora-dropout") == 0) {
            VAL();
            rc = parse_double(a, v, 0, 0.99, &c->lora_dropout);
        } else if (strcmp(a, "--lora-targets") == 0) {
            VAL();
            rc = copy_str(a, v, c->lora_targets, sizeof c->lora_targets);
        } else if (strcmp(a, "--val-split") == 0) {
            VAL();
            rc = parse_double(a, v, 1e-6, 0.9, &c->val_split);
        } else if (strcmp(a, "--lr") == 0) {
            VAL();
            rc = parse_double(a, v, 0, 10, &c->lr);
        } else if (strcmp(a, "--weight-decay") == 0) {
            VAL();
            rc = parse_double(a, v, 0, 10, &c->weight_decay);
        } else if (strcmp(a, "--warmup-ratio") == 0) {
            VAL();
            rc = parse_double(a, v, 0, 1, &c->warmup_ratio);
        } else if (strcmp(a, "--clip") == 0) {
            VAL();
            rc = parse_double(a, v, 0, 1e6, &c->clip);
        } else if (strcmp(a, "--dropout") == 0) {
            VAL();
            if (strcmp(v, "off") == 0)
                c->dropout = 0;
            else
                rc = parse_double(a, v, 0, 0.99, &c->dropout);
        } else if (strcmp(a, "--epochs") == 0) {
            VAL();
            rc = cli_parse_count("finetune", a, v, 1, 100000, &c->epochs);
        } else if (strcmp(a, "--batch") == 0) {
            VAL();
            rc = cli_parse_count("finetune", a, v, 1, 1 << 16, &c->batch);
        } else if (strcmp(a, "--max-length") == 0) {
            VAL();
            rc = cli_parse_count("finetune", a, v, 3, 1 << 16, &c->max_length);
        } else if (strcmp(a, "--eval-every") == 0) {
            VAL();
            rc = cli_parse_count("finetune", a, v, 1, LONG_MAX, &c->eval_every);
        } else if (strcmp(a, "--save-every") == 0) {
            VAL();
            rc = cli_parse_count("finetune", a, v, 1, LONG_MAX, &c->save_every);
        } else if (strcmp(a, "--keep") == 0) {
            VAL();
            rc = cli_parse_count("finetune", a, v, 1, 1000, &c->keep);
        } else if (strcmp(a, "--seed") == 0) {
            VAL();
            long s;
            rc = cli_parse_count("finetune", a, v, 0, LONG_MAX, &s);
            c->seed = (unsigned long long)s;
        } else if (strcmp(a, "--threads") == 0) {
            VAL();
            rc = cli_parse_count("finetune", a, v, 1, 1024, threads);
        } else if (strcmp(a, "--micro-batch") == 0) {
            VAL();
            rc = cli_parse_count("finetune", a, v, 1, 1 << 16, &c->micro_batch);
            c->set_micro = 1;
        } else if (strcmp(a, "--exact-reduce") == 0) {
            VAL();
            rc = cli_parse_count("finetune", a, v, 0, 1, &c->exact_reduce);
            c->set_exact = 1;
        } else if (strcmp(a, "--zero") == 0) {
            VAL();
            rc = cli_parse_count("finetune", a, v, 0, 1, &c->zero);
            c->set_zero = 1;
        } else if (strcmp(a, "--mpi-timeout") == 0) {
            VAL();
            rc = parse_double(a, v, 1, 1e6, &c->mpi_timeout);
        } else {
            return cli_usage_error("finetune", "unknown option '%s'", a);
        }
#undef VAL
        if (rc) return rc;
    }
    return 0;
}

/* The validation set (--val, else --val-split of the training data, which r->train then loses)
 * and --test, their labels mapped to names[0..nl) (the training data's already are). */
static int load_eval_sets(ft_run *r, qkv_problem_type pt, const char *const *names, int64_t nl) {
    const ft_cfg *c = &r->c;
    int rc;
    qkv_status s;
    if (c->val[0]) {
        if ((rc = load_data(c, c->val, pt, &r->val))) return rc;
    } else {
        qkv_labeled *tr = NULL, *va = NULL;
        s = qkv_labeled_split(r->train, c->val_split, c->seed, &tr, &va);
        if (s != QKV_OK) return cli_report("holding out a validation split", s);
        qkv_labeled_free(r->train);
        r->train = tr, r->val = va;
    }
    if (c->test[0] && (rc = load_data(c, c->test, pt, &r->test))) return rc;
    qkv_labeled *sets[2] = {r->val, r->test};
    for (int i = 0; i < 2; i++)
        if (sets[i] && pt != QKV_PROBLEM_REGRESSION &&
            (s = qkv_labeled_map_labels(sets[i], names, nl)) != QKV_OK)
            return cli_report(i ? "the test labels" : "the validation labels", s);
    return 0;
}

/* Data, labels, the model and the tokenized examples of a new run. */
static int setup(ft_run *r) {
    ft_cfg *c = &r->c;
    const qkv_problem_type pt = !c->problem[0]                          ? config_problem(c->model)
                                : strcmp(c->problem, "multi") == 0      ? QKV_PROBLEM_MULTI_LABEL
                                : strcmp(c->problem, "regression") == 0 ? QKV_PROBLEM_REGRESSION
                                                                        : QKV_PROBLEM_SINGLE_LABEL;
    int rc = load_data(c, c->train, pt, &r->train);
    if (rc) return rc;
    /* the label names: --labels, else the model's id2label when it names every label of the
     * data, else the data's own */
    const char *names[4096];
    int64_t nl = 0;
    char buf[sizeof c->labels];
    qkv_trainer *probe = NULL;
    if (c->labels[0]) {
        snprintf(buf, sizeof buf, "%s", c->labels);
        nl = split_names(buf, names, 4096);
    } else if (pt != QKV_PROBLEM_REGRESSION &&
               qkv_trainer_load_hf_classifier(c->model, NULL, &probe) == QKV_OK) {
        int64_t n = qkv_trainer_num_labels(probe), ok = n <= 4096;
        for (int64_t k = 0; ok && k < n; k++) {
            names[k] = qkv_trainer_label(probe, k);
            ok = strncmp(names[k], "LABEL_", 6) != 0;
        }
        if (ok && qkv_labeled_map_labels(r->train, names, n) == QKV_OK) nl = n;
    }
    if (!nl && pt != QKV_PROBLEM_REGRESSION) {
        nl = qkv_labeled_num_labels(r->train);
        if (nl > 4096) nl = 0;
        for (int64_t k = 0; k < nl; k++) names[k] = qkv_labeled_label_name(r->train, k);
    }
    if (pt == QKV_PROBLEM_REGRESSION) nl = 1, names[0] = "LABEL_0";
    /* the names live in r->train (or buf / probe) until the trainer has copied them */
    qkv_status s = QKV_OK;
    if (pt != QKV_PROBLEM_REGRESSION && !nl)
        return cli_usage_error("finetune", "the training data has no labels");
    if (pt != QKV_PROBLEM_REGRESSION) {
        /* copy the names: map_labels renumbers r->train, whose strings they may be */
        static char store[1 << 16];
        size_t used = 0;
        for (int64_t k = 0; k < nl; k++) {
            size_t len = strlen(names[k]) + 1;
            if (used + len > sizeof store) return cli_usage_error("finetune", "too many labels");
            memcpy(store + used, names[k], len);
            names[k] = store + used;
            used += len;
        }
        qkv_trainer_free(probe), probe = NULL;
        if ((s = qkv_labeled_map_labels(r->train, names, nl)) != QKV_OK)
            return cli_report("the training labels", s);
    }
    qkv_trainer_free(probe);
    if ((rc = load_eval_sets(r, pt, names, nl))) return rc;
    qkv_classifier_spec sp;
    qkv_classifier_spec_init(&sp);
    sp.num_labels = nl, sp.labels = names, sp.problem_type = (int)pt, sp.seed = c->seed;
    s = qkv_trainer_load_hf_classifier(c->model, &sp, &r->t);
    if (s != QKV_OK) return cli_report("loading the model", s);
    if (qkv_trainer_fresh_params(r->t) && g_rank0)
        fprintf(stderr,
                "qkv finetune: %zu tensors of the head are new (initialized from seed %llu)\n",
                qkv_trainer_fresh_params(r->t), c->seed);
    if (c->dropout >= 0 && (s = qkv_trainer_set_dropout(r->t, (float)c->dropout, (float)c->dropout,
                                                        (float)c->dropout)) != QKV_OK)
        return cli_report("--dropout", s);
    if (c->lora_r > 0) {
        char tb[sizeof c->lora_targets];
        const char *targets[64];
        snprintf(tb, sizeof tb, "%s", c->lora_targets);
        qkv_lora_config lc;
        qkv_lora_config_init(&lc);
        lc.r = c->lora_r;
        lc.alpha = (float)(c->lora_alpha > 0 ? c->lora_alpha : 2.0 * (double)c->lora_r);
        lc.dropout = (float)c->lora_dropout;
        lc.targets = targets;
        lc.n_targets = (size_t)split_names(tb, targets, 64);
        lc.seed = c->seed;
        lc.base_model = c->model;
        if ((s = qkv_trainer_add_lora(r->t, &lc)) != QKV_OK) return cli_report("--lora-*", s);
        int64_t trained = 0;
        for (size_t i = 0; i < qkv_trainer_param_count(r->t); i++) {
            qkv_param_info p = {.struct_size = sizeof p};
            if (qkv_trainer_param(r->t, i, &p) == QKV_OK && p.trainable) trained += p.numel;
        }
        if (g_rank0)
            fprintf(stderr, "qkv finetune: LoRA r %ld on %s: %lld of %lld parameters trained\n",
                    c->lora_r, c->lora_targets, (long long)trained,
                    (long long)qkv_trainer_numel(r->t));
    }
    return 0;
}

static int tokenize(ft_run *r) {
    ft_cfg *c = &r->c;
    qkv_status s = qkv_tokenizer_load(c->model, &r->tok);
    if (s != QKV_OK) return cli_report("loading the tokenizer", s);
    qkv_gpt2_shape sh;
    qkv_trainer_get_shape(r->t, &sh);
    if (c->max_length > sh.n_positions) c->max_length = (long)sh.n_positions;
    qkv_labeled *src[3] = {r->train, r->val, r->test};
    qkv_cls_data **dst[3] = {&r->dtrain, &r->dval, &r->dtest};
    for (int i = 0; i < 3; i++) {
        if (!src[i]) continue;
        s = qkv_cls_data_build(r->rt, src[i], r->tok, c->max_length, dst[i]);
        if (s != QKV_OK) return cli_report("tokenizing", s);
    }
    if (!g_rank0) return 0;
    fprintf(stderr,
            "qkv finetune: %lld training, %lld validation%s examples; %lld labels (%s); "
            "%lld training examples reach --max-length %ld\n",
            (long long)qkv_cls_data_count(r->dtrain), (long long)qkv_cls_data_count(r->dval),
            r->dtest ? " and test" : "", (long long)qkv_trainer_num_labels(r->t),
            qkv_trainer_problem_type(r->t) == QKV_PROBLEM_REGRESSION    ? "regression"
            : qkv_trainer_problem_type(r->t) == QKV_PROBLEM_MULTI_LABEL ? "multi-label"
                                                                        : "single-label",
            (long long)qkv_cls_data_truncated(r->dtrain), c->max_length);
    return 0;
}

/* ---------------------------------------------------------------- command */

/* The micro-batch of a new run (--micro-batch, else the batch shared by the processes), and
 * on rank 0 how a step is computed. */
static void resolve_micro_batch(ft_cfg *c) {
    const long n = qkv_dist_size(g_dist);
    if (!c->micro_batch || c->micro_batch > c->batch)
        c->micro_batch = c->micro_batch ? c->batch : (c->batch + n - 1) / n;
}

static void print_split(const ft_run *r) {
    const ft_cfg *c = &r->c;
    const long n = qkv_dist_size(g_dist);
    const long mb = c->micro_batch && c->micro_batch < c->batch ? c->micro_batch : c->batch;
    const long k = (c->batch + mb - 1) / mb;
    if (!g_rank0 || (n == 1 && k == 1 && !c->zero)) return;
    fprintf(stderr, "qkv finetune: a step's %ld examples are %ld micro-batch%s of %ld", c->batch, k,
            k == 1 ? "" : "es", mb);
    if (n > 1)
        fprintf(stderr, "; %ld processes (MPI), process r computing r, r + %ld, ...; %s%s", n, n,
                c->exact_reduce ? "exact reduction (fixed order)"
                                : "gradients summed by all-reduce",
                k < n ? " (fewer micro-batches than processes: some wait; --micro-batch is "
                        "the run's)"
                      : "");
    fputc('\n', stderr);
    if (c->zero && n > 1)
        fprintf(stderr,
                "qkv finetune: ZeRO-1: each process keeps the optimizer state of 1/%ld of the "
                "parameters\n",
                n);
    else if (c->zero)
        fprintf(stderr, "qkv finetune: --zero 1 with one process: nothing to shard, no effect\n");
}

static int run_loop(ft_run *r) {
    ft_cfg *c = &r->c;
    r->epoch_steps = qkv_train_epoch_steps(qkv_cls_data_count(r->dtrain), c->batch, 1);
    r->total = r->epoch_steps * c->epochs;
    qkv_train_options o;
    qkv_train_options_init(&o);
    o.cls_train = r->dtrain, o.cls_val = r->dval;
    o.length_grouped = c->group;
    o.batch = c->batch, o.seq = c->max_length, o.accum = 1, o.steps = r->total;
    o.seed = c->seed, o.lr = c->lr, o.min_lr = 0;
    o.warmup = (int64_t)ceil(c->warmup_ratio * (double)r->total);
    o.decay = QKV_LR_LINEAR_HF;
    o.weight_decay = c->weight_decay, o.beta1 = 0.9, o.beta2 = 0.999, o.eps = 1e-8;
    o.clip = c->clip;
    o.eval_every = c->eval_every ? c->eval_every : r->epoch_steps;
    o.save_every = c->save_every ? c->save_every : r->epoch_steps;
    o.run_dir = c->out, o.keep = c->keep, o.keep_best = 1;
    o.tensorboard = c->tensorboard, o.tb_histograms = c->tb_histograms;
    o.micro_batch = c->micro_batch;
    o.dist = g_dist, o.exact_reduce = (int)c->exact_reduce, o.zero = (int)c->zero;
    char *cfg = cfg_json(c);
    if (!cfg) /* jansson refuses strings that are not UTF-8: never a run without its options */
        return cli_usage_error("finetune",
                               "the options cannot be recorded in %s/config.json (is a path "
                               "or a field name not valid UTF-8?)",
                               c->out);
    o.checkpoint_json = cfg;
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/config.json", c->out); /* for `qkv report` */
    if (!g_rank0)
        ;
    else if (mkdir(c->out, 0755) != 0 && errno != EEXIST)
        fprintf(stderr, "qkv finetune: warning: cannot create %s: %s\n", c->out, strerror(errno));
    else if (atomic_write(path, put_text, cfg) != 0)
        fprintf(stderr, "qkv finetune: warning: cannot write %s: %s\n", path, strerror(errno));
    print_split(r);
    if (c->recompute) {
        qkv_status s =
            qkv_trainer_reserve(r->t, c->batch, c->max_length, QKV_RECOMPUTE_LAYERS, NULL);
        if (s != QKV_OK) {
            free(cfg);
            return cli_report("reserving activations", s);
        }
    }
    qkv_train_callbacks cb;
    memset(&cb, 0, sizeof cb);
    cb.struct_size = sizeof cb;
    cb.progress = on_progress, cb.metrics = on_metrics, cb.should_stop = should_stop;
    r->tty = isatty(2);
    r->start_step = qkv_trainer_steps(r->t);
    r->t0 = now_s();
    qkv_status s = qkv_train_run(r->rt, r->t, &o, &cb, r);
    free(cfg);
    if (r->tty && g_rank0) fputc('\n', stderr);
    /* what every rank sees alike: bad options or configurations, a stop, a non-finite loss */
    g_agreed = s == QKV_ERR_INVALID_ARG || s == QKV_ERR_INTERRUPTED || s == QKV_ERR_NOT_FINITE;
    if ((g_agreed || s == QKV_OK) && !g_rank0) /* rank 0 reports and writes the model */
        return s == QKV_OK                ? 0
               : s == QKV_ERR_INVALID_ARG ? EXIT_USAGE
               : s == QKV_ERR_NOT_FINITE  ? EXIT_FAIL
               : g_signal == SIGINT       ? 130
                                          : 143;
    if (s == QKV_ERR_INTERRUPTED) {
        fprintf(stderr,
                "qkv finetune: stopped by %s after step %lld; checkpoint saved. Continue with:\n"
                "  qkv finetune --resume --out %s\n",
                g_signal == SIGINT ? "SIGINT" : "SIGTERM", (long long)qkv_trainer_steps(r->t),
                c->out);
        return g_signal == SIGINT ? 130 : 143;
    }
    if (s != QKV_OK) return cli_report("fine-tuning", s);
    draw(r);
    fprintf(stderr, "qkv finetune: %lld steps in %.1f s\n",
            (long long)(qkv_trainer_steps(r->t) - r->start_step), now_s() - r->t0);
    /* the best evaluation's weights become the model */
    snprintf(path, sizeof path, "%s/best.safetensors", c->out);
    qkv_trainer *best = NULL;
    if (qkv_trainer_restore(path, &best, NULL) == QKV_OK) {
        qkv_trainer_free(r->t);
        r->t = best;
    }
    int rc = report(r, r->dval, "validation (best model)", "");
    if (!rc && r->dtest) rc = report(r, r->dtest, "test (best model)", "test_");
    if (rc) return rc;
    char dir[PATH_MAX + 16];
    snprintf(dir, sizeof dir, "%s/model", c->out);
    s = qkv_trainer_export_hf(r->t, dir, -1);
    if (s != QKV_OK) return cli_report("exporting the model", s);
    copy_tokenizer(c->model, dir);
    if (qkv_trainer_has_lora(r->t)) {
        snprintf(dir, sizeof dir, "%s/adapter", c->out);
        s = qkv_trainer_save_lora(r->t, dir);
        if (s != QKV_OK) return cli_report("writing the adapter", s);
        fprintf(stderr, "qkv finetune: the LoRA adapter is in %s (PEFT format; --lora %s)\n", dir,
                dir);
        snprintf(dir, sizeof dir, "%s/model", c->out);
    }
    fprintf(stderr, "qkv finetune: the best model is in %s (qkv classify --model %s)\n", dir, dir);
    return 0;
}

int cmd_finetune(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (cli_is_help(argv[i])) {
            cmd_finetune_help();
            return 0;
        }
    ft_run r;
    memset(&r, 0, sizeof r);
    cfg_defaults(&r.c);
    int resume = 0;
    long threads = 0;
    cli_progress_init(&g_progress);
    int rc = parse_args(argc, argv, &r.c, &resume, &threads);
    if (rc) return rc;
    if (!r.c.out[0]) return cli_usage_error("finetune", "--out RUN is required");
    if (resume && r.c.set_micro)
        return cli_usage_error("finetune", "--micro-batch cannot change on --resume (the run's "
                                           "results depend on it)");
    if ((rc = cli_dist_begin("finetune", r.c.mpi_timeout, &g_dist))) return rc;
    g_rank0 = qkv_dist_rank(g_dist) == 0;
    qkv_status s = qkv_runtime_create((int)threads, &r.rt);
    if (s != QKV_OK) {
        rc = cli_report("creating the thread pool", s);
        goto done;
    }
    if (resume) {
        char out[sizeof r.c.out];
        snprintf(out, sizeof out, "%s", r.c.out);
        const ft_cfg given = r.c; /* what the command line may change */
        char *js = NULL, *aside = NULL;
        s = qkv_train_resume_checked(out, &r.t, &js, &aside);
        if (s != QKV_OK) {
            rc = cli_report("resuming", s);
            goto done;
        }
        if (aside && !g_rank0) qkv_free(aside), aside = NULL;
        if (aside) { /* damaged checkpoints were skipped: say which, and from where it goes on */
            fprintf(stderr, "qkv finetune: warning: set aside damaged checkpoints: %s\n", aside);
            fprintf(stderr, "qkv finetune: resuming from step %lld instead\n",
                    (long long)qkv_trainer_steps(r.t));
            qkv_free(aside);
        }
        if (!js || cfg_from_json(&r.c, js) != 0) {
            free(js);
            rc = cli_usage_error("finetune", "%s: the checkpoint holds no qkv finetune options",
                                 out);
            goto done;
        }
        free(js);
        snprintf(r.c.out, sizeof r.c.out, "%s", out);
        r.c.mpi_timeout = given.mpi_timeout;
        r.c.tensorboard = given.tensorboard, r.c.tb_histograms = given.tb_histograms;
        if (given.set_exact) r.c.exact_reduce = given.exact_reduce;
        if (given.set_zero) r.c.zero = given.zero;
        /* the data as the run read it (labels mapped to the trainer's) */
        const qkv_problem_type pt = qkv_trainer_problem_type(r.t);
        const int64_t nl = qkv_trainer_num_labels(r.t);
        const char **names = malloc((size_t)nl * sizeof *names);
        for (int64_t k = 0; names && k < nl; k++) names[k] = qkv_trainer_label(r.t, k);
        if ((rc = load_data(&r.c, r.c.train, pt, &r.train))) goto done_names;
        if (pt != QKV_PROBLEM_REGRESSION &&
            (s = qkv_labeled_map_labels(r.train, names, nl)) != QKV_OK) {
            rc = cli_report("the training labels", s);
            goto done_names;
        }
        rc = load_eval_sets(&r, pt, names, nl);
    done_names:
        free(names);
        if (rc) goto done;
        if (g_rank0)
            fprintf(stderr, "qkv finetune: resuming %s at step %lld\n", r.c.out,
                    (long long)qkv_trainer_steps(r.t));
    } else {
        if (!r.c.model[0] || !r.c.train[0]) {
            rc = cli_usage_error("finetune", "--model DIR and --train FILE are required");
            goto done;
        }
        resolve_micro_batch(&r.c);
        if (qkv_train_latest_checkpoint(r.c.out) >= 0) {
            rc = cli_usage_error("finetune",
                                 "%s already holds a run (continue it with --resume, or choose "
                                 "another --out)",
                                 r.c.out);
            goto done;
        }
        if ((rc = setup(&r))) goto done;
    }
    if ((rc = tokenize(&r))) goto done;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    rc = run_loop(&r);
done:
    qkv_trainer_free(r.t);
    qkv_tokenizer_free(r.tok);
    qkv_labeled_free(r.train), qkv_labeled_free(r.val), qkv_labeled_free(r.test);
    qkv_cls_data_free(r.dtrain), qkv_cls_data_free(r.dval), qkv_cls_data_free(r.dtest);
    cli_curve_free(&r.tr), cli_curve_free(&r.va);
    cli_curve_free(&r.acc), cli_curve_free(&r.f1);
    qkv_runtime_free(r.rt);
    cli_dist_end(g_dist, rc, g_agreed || rc == EXIT_USAGE);
    return rc;
}
