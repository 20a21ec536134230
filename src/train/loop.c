/* loop.c — the training loop behind qkv_train_run: schedule, gradient accumulation, the fused
 * clip + AdamW step, validation, metrics.jsonl, checkpoints with rotation, resumption, stop
 * requests and the NaN guard. `qkv train` is a front end over it (options, signals, progress
 * bar, plot, export); so is anything else that trains (fine-tuning, a Python binding).
 *
 * Only the public qkv_trainer_* and qkv_dataset_* calls are used: the loop does not know the
 * architecture behind the trainer handle.
 *
 * Invariants:
 *   - batches are a pure function of (seed, step·accum + k) and the learning rate of the
 *     step, so a run resumed from any checkpoint takes exactly the steps of an uninterrupted
 *     one (every kernel is deterministic);
 *   - a step whose loss or gradient norm is not finite changes nothing: no update (the
 *     trainer refuses it), no metrics line, no checkpoint;
 *   - files are never half written: checkpoints by qkv_trainer_save (temporary, fsync,
 *     rename), the resumed metrics.jsonl (and TensorBoard event file) through a temporary file
 *     and a rename; afterwards metrics lines and event records are appended whole and
 *     flushed, and fsynced before every checkpoint so a checkpoint never refers to metrics
 *     that a crash could lose;
 *   - the library never installs signal handlers: the caller's should_stop is polled between
 *     steps;
 *   - with several ranks (options.dist) every rank holds the same weights after every step:
 *     they start equal (compared at the start) and take the same step from the same summed
 *     gradient; each micro-batch and validation batch is computed by one rank, and the losses
 *     come back in a table indexed by micro-batch (a sum where one term is nonzero is exact)
 *     so that they add up in the single process's order. Only rank 0 writes or calls back;
 *   - with options.zero (ZeRO-1, zero.c) each rank keeps the optimizer state of its slice of
 *     the parameters: the gradients are reduce-scattered (exact_reduce: scattered from rank 0)
 *     instead of all-reduced, each rank steps its slice and the weights are all-gathered; every
 *     rank takes part in writing a checkpoint (rank 0 gathers the moments and writes). */
#include "train/cls_data.h"
#include "train/dist.h"
#include "train/s2s_batch.h"

#include "core/alloc.h"
#include "core/error.h"
#include "core/rng.h"
#include "io/json.h"
#include "io/tfevents.h"
#include "models/labels.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PATH_CAP 4096
#define LINE_CAP 4096 /* metrics lines are ~150 bytes; longer ones are not ours */

void qkv_train_options_init(qkv_train_options *o) {
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->struct_size = sizeof *o;
    o->batch = 8, o->seq = 128, o->accum = 1, o->steps = 1000, o->seed = 1234;
    o->lr = 1e-3, o->min_lr = 1e-4, o->warmup = 100, o->decay = QKV_LR_COSINE;
    o->weight_decay = 0.1, o->beta1 = 0.9, o->beta2 = 0.95, o->eps = 1e-8, o->clip = 1.0;
    o->eval_every = 100, o->eval_batches = 20;
    o->save_every = 200, o->keep = 3;
    o->mlm_probability = 0.15, o->mask_token_id = -1;
    o->length_grouped = 1;
}

int64_t qkv_train_epoch_steps(int64_t n, int64_t batch, int64_t accum) {
    if (n < 1 || batch < 1 || accum < 1) return 0;
    const int64_t micro = (n + batch - 1) / batch;
    return (micro + accum - 1) / accum;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Prefixes the current message with context (copied first: it is the buffer written to). */
static qkv_status with_context(qkv_status s, const char *what, int64_t step) {
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", qkv_last_error());
    return qkv__fail(s, "%s at step %" PRId64 ": %s", what, step, msg);
}

/* ---------------------------------------------------------------- run directory */

/* 1 and the step if name is ckpt_<digits>.safetensors. */
static int ckpt_step(const char *name, int64_t *step) {
    if (strncmp(name, "ckpt_", 5) != 0) return 0;
    const char *p = name + 5;
    int64_t s = 0;
    if (*p < '0' || *p > '9') return 0;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (s > (INT64_MAX - 9) / 10) return 0;
        s = s * 10 + (*p - '0');
    }
    if (strcmp(p, ".safetensors") != 0) return 0;
    *step = s;
    return 1;
}

static int ckpt_path(char *buf, const char *dir, int64_t step) {
    int n = snprintf(buf, PATH_CAP, "%s/ckpt_%08" PRId64 ".safetensors", dir, step);
    return n > 0 && n < PATH_CAP;
}

/* The newest checkpoint step below `below` (INT64_MAX: any), or -1. */
static int64_t qkv_train_latest_checkpoint_before(const char *run_dir, int64_t below) {
    DIR *d = run_dir ? opendir(run_dir) : NULL;
    if (!d) return -1;
    int64_t best = -1, s;
    struct dirent *e;
    while ((e = readdir(d)))
        if (ckpt_step(e->d_name, &s) && s > best && s < below) best = s;
    closedir(d);
    return best;
}

int64_t qkv_train_latest_checkpoint(const char *run_dir) {
    return qkv_train_latest_checkpoint_before(run_dir, INT64_MAX);
}

qkv_status qkv_train_resume_checked(const char *run_dir, qkv_trainer **out, char **user_json,
                                    char **set_aside) {
    if (!run_dir || !out) return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_train_resume: NULL argument");
    *out = NULL;
    if (user_json) *user_json = NULL;
    if (set_aside) *set_aside = NULL;
    int64_t last = qkv_train_latest_checkpoint(run_dir);
    if (last < 0)
        return qkv__fail(QKV_ERR_NOT_FOUND, "%s: no checkpoint (ckpt_NNNNNNNN.safetensors)",
                         run_dir);
    char note[4096] = ""; /* the checkpoints set aside, and why */
    for (;;) {
        char path[PATH_CAP], bad[PATH_CAP + 16];
        if (!ckpt_path(path, run_dir, last))
            return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_train_resume: run_dir is too long");
        qkv_status s = qkv_trainer_restore(path, out, user_json);
        /* a damaged checkpoint (malformed, wrong checksum, unreadable) is renamed aside, never
         * deleted, and the next older one tried; other failures (out of memory) stop here */
        int damaged = s == QKV_ERR_FORMAT || s == QKV_ERR_IO || s == QKV_ERR_OVERFLOW;
        int64_t older = damaged ? qkv_train_latest_checkpoint_before(run_dir, last) : -1;
        if (s == QKV_OK || !damaged || older < 0) {
            if (s == QKV_OK && set_aside && note[0]) {
                *set_aside = qkv__strdup(note);
                if (!*set_aside) {
                    qkv_trainer_free(*out);
                    *out = NULL;
                    return qkv__fail(QKV_ERR_NOMEM, "qkv_train_resume: out of memory");
                }
            }
            return s;
        }
        snprintf(bad, sizeof bad, "%s.damaged", path);
        /* cannot set it aside: report it as it is — unless another process (an MPI rank)
         * renamed it first, then go on to the older one as it does */
        if (rename(path, bad) != 0 && errno != ENOENT) return s;
        size_t n = strlen(note);
        if (n < sizeof note - 1024) /* each entry fits in 1024 bytes; later ones are left out */
            snprintf(note + n, 1024, "%s%.300s (%.300s): renamed to %.300s.damaged", n ? "; " : "",
                     path, qkv_last_error(), path);
        last = older;
    }
}

qkv_status qkv_train_resume(const char *run_dir, qkv_trainer **out, char **user_json) {
    return qkv_train_resume_checked(run_dir, out, user_json, NULL);
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Keeps the newest `keep` checkpoints and removes leftovers of interrupted writes
 * (ckpt_*.safetensors.tmp.<pid>, metrics.jsonl.tmp.<pid>, events.out.tfevents.*.tmp.<pid>). */
static qkv_status prune(const char *dir, int64_t keep) {
    DIR *d = opendir(dir);
    if (!d) return qkv__io_fail("cannot list", dir);
    int64_t *steps = NULL, s;
    size_t n = 0, cap = 0;
    char path[PATH_CAP];
    struct dirent *e;
    qkv_status st = QKV_OK;
    while ((e = readdir(d))) {
        if ((strncmp(e->d_name, "ckpt_", 5) == 0 && strstr(e->d_name, ".safetensors.tmp.")) ||
            strncmp(e->d_name, "metrics.jsonl.tmp.", 18) == 0 ||
            (strncmp(e->d_name, QKV__TB_PREFIX, strlen(QKV__TB_PREFIX)) == 0 &&
             strstr(e->d_name, ".tmp."))) {
            if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) < (int)sizeof path)
                unlink(path);
        } else if (ckpt_step(e->d_name, &s)) {
            if (n == cap) {
                size_t ncap = cap ? 2 * cap : 64;
                int64_t *grown = qkv__alloc(ncap * sizeof *grown);
                if (!grown) {
                    st = qkv__fail(QKV_ERR_NOMEM, "pruning checkpoints: out of memory");
                    break;
                }
                if (n) memcpy(grown, steps, n * sizeof *steps);
                qkv__free(steps);
                steps = grown, cap = ncap;
            }
            steps[n++] = s;
        }
    }
    closedir(d);
    if (st == QKV_OK && (int64_t)n > keep) {
        qsort(steps, n, sizeof *steps, cmp_i64);
        for (size_t i = 0; i + (size_t)keep < n; i++)
            if (ckpt_path(path, dir, steps[i])) unlink(path);
    }
    qkv__free(steps);
    return st;
}

/* ---------------------------------------------------------------- the loop's state */

typedef struct loop {
    qkv_runtime *rt;
    qkv_trainer *t;
    const qkv_train_options *o;
    const qkv_train_callbacks *cb; /* NULL: none */
    void *user;
    int32_t *ids, *tgt; /* [B, T] */
    FILE *metrics;      /* run_dir/metrics.jsonl, appending; NULL without run_dir */
    char metrics_path[PATH_CAP];
    qkv__tb_writer *tb; /* the TensorBoard event file (options.tensorboard), or NULL */
    double t_start;
    int64_t saved; /* the step of the last checkpoint this call wrote, or -1 */
    /* classifier runs: the example order of epoch order_epoch, the batch's other inputs */
    int64_t *order, order_epoch, *val_order;
    int32_t *types, *lens, *labels;
    float *values;
    double best; /* the best validation score so far (larger is better), or NaN */
    /* several ranks (options.dist): this one of size; writer: rank 0 (or a lone process) */
    int rank, size, writer;
    double *part;       /* [2K]: a step's losses / K and token counts by micro-batch */
    float *gsum, *gbuf; /* exact_reduce: the ordered sum (rank 0), the gathered bucket */
    qkv__zero zero;     /* options.zero: the ranks' slices (zero.c) */
    int sharded;        /* options.zero with several ranks: checkpoints need every rank */
    qkv__s2s *s2s;      /* an encoder-decoder on sentence pairs (s2s_batch.c), or NULL */
} loop;

/* Floats per all-reduce / gather / broadcast: 4 MiB messages. */
#define BUCKET ((int64_t)1 << 20)

/* Batches of an epoch of a classifier run. */
static int64_t micro_per_epoch(const loop *L) {
    return (L->o->cls_train->n + L->o->batch - 1) / L->o->batch;
}

/* Examples per micro-batch of a classifier run (options.micro_batch), and the micro-batches of
 * one of its batches. */
static int64_t cls_micro_size(const qkv_train_options *o) {
    return o->micro_batch > 0 && o->micro_batch < o->batch ? o->micro_batch : o->batch;
}
static int64_t cls_splits(const qkv_train_options *o) {
    return (o->batch + cls_micro_size(o) - 1) / cls_micro_size(o);
}

/* Micro-batches per optimizer step: accum, times the splits of each batch (classifiers). */
static int64_t step_micros(const qkv_train_options *o) {
    return o->accum * (o->cls_train ? cls_splits(o) : 1);
}

static void record_init(qkv_train_record *r, qkv_train_record_kind kind, int64_t step,
                        int64_t total) {
    memset(r, 0, sizeof *r);
    r->struct_size = sizeof *r;
    r->kind = kind;
    r->step = step, r->total_steps = total;
    r->loss = r->lr = r->grad_norm = r->tokens_per_s = r->step_s = r->elapsed_s = NAN;
    r->val_loss = r->val_ppl = NAN;
    r->epoch = r->val_accuracy = r->val_macro_f1 = NAN;
}

/* The score keep_best ranks validations by (larger is better): macro-F1 when there is one,
 * else minus the loss. */
static double eval_score(const qkv_train_record *r) {
    return isfinite(r->val_macro_f1) ? r->val_macro_f1 : -r->val_loss;
}

/* x printed with fmt, or null (JSON has no NaN / Infinity). */
static const char *num(char *buf, size_t cap, const char *fmt, double x) {
    if (!isfinite(x)) return "null";
    snprintf(buf, cap, fmt, x);
    return buf;
}

/* r's numbers as TensorBoard scalars: the tags name the metrics.jsonl keys (train/loss is
 * "loss", val/loss is "val_loss"); non-finite values are left out, as they are null there. */
static qkv_status tb_scalars(loop *L, const qkv_train_record *r) {
    static const char *const step_tags[] = {"train/loss", "train/lr", "train/grad_norm",
                                            "train/tokens_per_s"};
    static const char *const eval_tags[] = {"val/loss", "val/ppl", "val/accuracy", "val/macro_f1"};
    const int step = r->kind == QKV_TRAIN_RECORD_STEP;
    const double v[4] = {step ? r->loss : r->val_loss, step ? r->lr : r->val_ppl,
                         step ? r->grad_norm : r->val_accuracy,
                         step ? r->tokens_per_s : r->val_macro_f1};
    const char *tags[4];
    double vals[4];
    size_t k = 0;
    for (int i = 0; i < 4; i++)
        if (isfinite(v[i])) tags[k] = step ? step_tags[i] : eval_tags[i], vals[k++] = v[i];
    return k ? qkv__tb_scalars(L->tb, r->step, tags, vals, k) : QKV_OK;
}

/* options.tb_histograms: a histogram of every trainable tensor at this step. */
static qkv_status tb_weights(loop *L, int64_t step) {
    if (!L->tb || !L->o->tb_histograms) return QKV_OK;
    char tag[512];
    for (size_t i = 0; i < qkv_trainer_param_count(L->t); i++) {
        qkv_param_info p = {.struct_size = sizeof p};
        QKV_TRY(qkv_trainer_param(L->t, i, &p));
        if (!p.trainable) continue;
        snprintf(tag, sizeof tag, "weights/%s", p.name);
        QKV_TRY(qkv__tb_histogram(L->tb, step, tag, p.data, p.numel));
    }
    return QKV_OK;
}

/* Appends r's line to metrics.jsonl (if any) and hands it to the metrics callback. */
static qkv_status emit(loop *L, qkv_train_record *r) {
    char line[LINE_CAP], ep[48] = "", vl[32], a[32], f[32], g[32], t[32], ss[32], el[32];
    if (!L->writer) return QKV_OK;
    if (isfinite(r->epoch)) snprintf(ep, sizeof ep, ", \"epoch\": %.4f", r->epoch);
    if (r->kind == QKV_TRAIN_RECORD_STEP) /* the loss is finite (the loop stops at a
                                             non-finite one); the rest may not be */
        snprintf(line, sizeof line,
                 "{\"step\": %" PRId64 "%s, \"loss\": %s, \"lr\": %s, \"grad_norm\": %s, "
                 "\"tokens_per_s\": %s, \"step_s\": %s, \"elapsed_s\": %s}",
                 r->step, ep, num(vl, sizeof vl, "%.6f", r->loss), num(a, sizeof a, "%.6g", r->lr),
                 num(g, sizeof g, "%.6g", r->grad_norm), num(t, sizeof t, "%.1f", r->tokens_per_s),
                 num(ss, sizeof ss, "%.4f", r->step_s), num(el, sizeof el, "%.2f", r->elapsed_s));
    else if (L->o->cls_val)
        snprintf(line, sizeof line,
                 "{\"step\": %" PRId64 "%s, \"val_loss\": %s, \"val_accuracy\": %s, "
                 "\"val_macro_f1\": %s%s}",
                 r->step, ep, num(vl, sizeof vl, "%.6f", r->val_loss),
                 num(a, sizeof a, "%.6f", r->val_accuracy),
                 num(f, sizeof f, "%.6f", r->val_macro_f1), r->best ? ", \"best\": true" : "");
    else /* a large loss overflows the perplexity: null, as JSON has no Infinity */
        snprintf(line, sizeof line, "{\"step\": %" PRId64 ", \"val_loss\": %s, \"val_ppl\": %s%s}",
                 r->step, num(vl, sizeof vl, "%.6f", r->val_loss),
                 num(a, sizeof a, "%.4f", r->val_ppl), r->best ? ", \"best\": true" : "");
    if (L->tb) QKV_TRY(tb_scalars(L, r));
    r->json = line;
    if (L->metrics && (fprintf(L->metrics, "%s\n", line) < 0 || fflush(L->metrics) != 0))
        return qkv__write_fail("cannot write", L->metrics_path);
    if (L->cb && L->cb->metrics) L->cb->metrics(r, L->user);
    r->json = NULL;
    return QKV_OK;
}

static double num_or_nan(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

/* 1 if o has key (a number or null: a value that was not finite) */
static int has(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    return json_is_number(v) || json_is_null(v);
}

/* Lines written before metrics.jsonl wrote null for what is not finite may hold NaN, -NaN,
 * Infinity, inf ... where a number goes, which no JSON parser reads: those tokens outside
 * strings become null, so a resumed run keeps the line (and writes it back as valid JSON).
 * null may be one byte longer than the token: the line is rewritten into its buffer of cap
 * bytes only when it fits (else it is left as it was, and dropped as unreadable). */
static void nonfinite_to_null(char *line, size_t cap) {
    char out[LINE_CAP + LINE_CAP / 3 + 8], *w = out;
    static const char *const tokens[] = {"-Infinity", "Infinity", "-inf", "inf",
                                         "-nan",      "nan",      "-NaN", "NaN"};
    int in_str = 0;
    if (strlen(line) >= LINE_CAP) return;
    for (const char *p = line; *p;) {
        if (in_str) {
            if (*p == '\\' && p[1])
                *w++ = *p++;
            else if (*p == '"')
                in_str = 0;
            *w++ = *p++;
            continue;
        }
        if (*p == '"') {
            in_str = 1;
            *w++ = *p++;
            continue;
        }
        size_t k = 0, n = 0;
        for (; k < sizeof tokens / sizeof *tokens; k++)
            if (strncmp(p, tokens[k], n = strlen(tokens[k])) == 0) break;
        if (k < sizeof tokens / sizeof *tokens && (p == line || !isalnum((unsigned char)p[-1]))) {
            memcpy(w, "null", 4);
            w += 4, p += n;
            while (isalnum((unsigned char)*p) || *p == '(' || *p == ')') p++; /* nan(0x...) */
            continue;
        }
        *w++ = *p++;
    }
    *w = '\0';
    if ((size_t)(w - out) < cap) memcpy(line, out, (size_t)(w - out) + 1);
}

/* One line of an existing metrics.jsonl: 1 if it belongs to a step <= upto (then *r is filled
 * and r->replayed is 1 for a STEP or EVAL line worth replaying), 0 if it goes; NOMEM if
 * jansson ran out of memory. A line is rewritten in place when it held NaN / Infinity. */
static qkv_status parse_line(char *line, int64_t upto, int64_t total, int *keep,
                             qkv_train_record *r) {
    *keep = 0;
    record_init(r, QKV_TRAIN_RECORD_STEP, 0, total); /* replayed stays 0 unless filled below */
    qkv__json_begin();
    json_t *j = json_loads(line, 0, NULL);
    if (!j && !qkv__json_alloc_failed()) {
        nonfinite_to_null(line, LINE_CAP); /* metrics_start's buffer */
        j = json_loads(line, 0, NULL);
    }
    int nomem = qkv__json_alloc_failed();
    json_t *st = j ? json_object_get(j, "step") : NULL;
    if (json_is_integer(st) && json_integer_value(st) <= upto) {
        *keep = 1;
        int64_t step = (int64_t)json_integer_value(st);
        if (has(j, "val_loss")) { /* null when the loss was not finite */
            record_init(r, QKV_TRAIN_RECORD_EVAL, step, total);
            r->val_loss = num_or_nan(j, "val_loss");
            r->val_ppl = num_or_nan(j, "val_ppl");
            r->val_accuracy = num_or_nan(j, "val_accuracy");
            r->val_macro_f1 = num_or_nan(j, "val_macro_f1");
            r->epoch = num_or_nan(j, "epoch");
            r->best = json_is_true(json_object_get(j, "best"));
            r->replayed = 1;
        } else if (has(j, "loss")) {
            record_init(r, QKV_TRAIN_RECORD_STEP, step, total);
            r->loss = num_or_nan(j, "loss");
            r->lr = num_or_nan(j, "lr");
            r->grad_norm = num_or_nan(j, "grad_norm");
            r->tokens_per_s = num_or_nan(j, "tokens_per_s");
            r->step_s = num_or_nan(j, "step_s");
            r->elapsed_s = num_or_nan(j, "elapsed_s");
            r->epoch = num_or_nan(j, "epoch");
            r->replayed = 1;
        }
    }
    json_decref(j);
    qkv__json_end();
    return nomem ? qkv__fail(QKV_ERR_NOMEM, "reading metrics.jsonl: out of memory") : QKV_OK;
}

/* Cuts metrics.jsonl back to the steps <= upto (a resumed run rewrites what came after; a
 * new run starts it empty), replays the kept lines to the metrics callback and opens it for
 * appending. The cut goes through a temporary file and a rename. */
static qkv_status metrics_start(loop *L, int64_t upto) {
    char tmp[PATH_CAP + 32];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", L->metrics_path, (long)getpid());
    FILE *in = fopen(L->metrics_path, "r");
    if (!in && errno != ENOENT) return qkv__io_fail("cannot read", L->metrics_path);
    FILE *out = fopen(tmp, "w");
    if (!out) {
        qkv_status s = qkv__write_fail("cannot create", tmp);
        if (in) fclose(in);
        return s;
    }
    qkv_status s = QKV_OK;
    char line[LINE_CAP];
    int rest_of_long_line = 0;
    while (s == QKV_OK && in && fgets(line, sizeof line, in)) {
        size_t n = strlen(line);
        int whole = n > 0 && line[n - 1] == '\n';
        if (rest_of_long_line || (!whole && !feof(in))) { /* overlong: not ours, dropped */
            rest_of_long_line = !whole;
            continue;
        }
        if (whole) line[--n] = '\0';
        int keep;
        qkv_train_record r;
        s = parse_line(line, upto, L->o->steps, &keep, &r);
        if (s != QKV_OK || !keep) continue;
        if (fprintf(out, "%s\n", line) < 0) {
            s = qkv__write_fail("cannot write", tmp);
            break;
        }
        if (r.replayed && r.kind == QKV_TRAIN_RECORD_EVAL && !isnan(eval_score(&r)) &&
            !(eval_score(&r) <= L->best)) /* the best of the kept history (NaN: none yet) */
            L->best = eval_score(&r);
        if (r.replayed && L->cb && L->cb->metrics) {
            r.json = line;
            L->cb->metrics(&r, L->user);
        }
    }
    if (s == QKV_OK && in && ferror(in)) s = qkv__io_fail("cannot read", L->metrics_path);
    if (in) fclose(in);
    if (s == QKV_OK && (fflush(out) != 0 || fsync(fileno(out)) != 0))
        s = qkv__write_fail("cannot write", tmp);
    if (fclose(out) != 0 && s == QKV_OK) s = qkv__write_fail("cannot write", tmp);
    if (s == QKV_OK && rename(tmp, L->metrics_path) != 0)
        s = qkv__write_fail("cannot rename the temporary file", tmp);
    if (s != QKV_OK) {
        unlink(tmp);
        return s;
    }
    L->metrics = fopen(L->metrics_path, "a");
    if (!L->metrics) return qkv__write_fail("cannot append to", L->metrics_path);
    return QKV_OK;
}

/* A checkpoint of `step`, then the rotation. */
static qkv_status save(loop *L, int64_t step) {
    const char *dir = L->o->run_dir;
    char path[PATH_CAP];
    if (!ckpt_path(path, dir, step))
        return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_train_run: run_dir is too long");
    if (L->writer && (fflush(L->metrics) != 0 || fsync(fileno(L->metrics)) != 0))
        return qkv__write_fail("cannot write", L->metrics_path);
    if (L->tb) QKV_TRY(qkv__tb_sync(L->tb));
    const char *js = L->o->checkpoint_json ? L->o->checkpoint_json : "{}";
    qkv_status s =
        L->o->zero ? qkv__zero_save(&L->zero, L->t, path, js) : qkv_trainer_save(L->t, path, js);
    if (s != QKV_OK) return with_context(s, "saving the checkpoint", step);
    L->saved = step;
    if (!L->writer) return QKV_OK;
    QKV_TRY(prune(dir, L->o->keep));
    if (L->cb && L->cb->checkpoint) L->cb->checkpoint(step, path, L->user);
    return QKV_OK;
}

/* keep_best: a validation better than every earlier one of the run is saved as best.safetensors
 * (marked in its metrics line). */
static qkv_status maybe_best(loop *L, qkv_train_record *r) {
    const double score = eval_score(r);
    if ((!L->writer && !L->sharded) || !L->o->keep_best || !L->o->run_dir) return QKV_OK;
    /* rank 0 alone knows the best score of a resumed run's history: it decides */
    int better = L->writer && isfinite(score) && !(score <= L->best);
    if (L->sharded) QKV_TRY(qkv__dist_max_int(L->o->dist, &better, "agreeing on the best"));
    if (!better) return QKV_OK;
    char path[PATH_CAP];
    if (snprintf(path, sizeof path, "%s/best.safetensors", L->o->run_dir) >= (int)sizeof path)
        return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_train_run: run_dir is too long");
    const char *js = L->o->checkpoint_json ? L->o->checkpoint_json : "{}";
    qkv_status s =
        L->o->zero ? qkv__zero_save(&L->zero, L->t, path, js) : qkv_trainer_save(L->t, path, js);
    if (s != QKV_OK) return with_context(s, "saving the best checkpoint", r->step);
    if (!L->writer) return QKV_OK;
    L->best = score;
    r->best = 1;
    if (L->cb && L->cb->checkpoint) L->cb->checkpoint(r->step, path, L->user);
    return QKV_OK;
}

/* Streams of the masked-LM draws, apart from each other and from the batch sampling. */
#define MLM_TRAIN_STREAM ((uint64_t)1 << 40)
#define MLM_EVAL_STREAM ((uint64_t)1 << 41)

/* BERT: turns a batch of tokens into masked-LM inputs and targets (qkv_train_options), with
 * the draws of element i a pure function of (seed, stream, i): u0 chooses the token, u1 what
 * its input becomes, u2 the random replacement. Other trainers' batches stay as sampled. */
static void mlm_mask(const loop *L, uint64_t stream, int64_t n) {
    const qkv_train_options *o = L->o;
    if (strcmp(qkv_trainer_arch(L->t), "bert") != 0) return;
    qkv_gpt2_shape sh;
    qkv_trainer_get_shape(L->t, &sh);
    const int64_t V = qkv_dataset_vocab_size(o->train) < sh.vocab_size
                          ? qkv_dataset_vocab_size(o->train)
                          : sh.vocab_size;
    for (int64_t i = 0; i < n; i++) {
        const uint64_t k = 3 * (uint64_t)i;
        L->tgt[i] = -100;
        if (qkv__rng_uniform(o->seed, stream, k) >= o->mlm_probability) continue;
        L->tgt[i] = L->ids[i];
        float u = qkv__rng_uniform(o->seed, stream, k + 1);
        if (u < 0.8f)
            L->ids[i] = o->mask_token_id;
        else if (u < 0.9f)
            L->ids[i] = (int32_t)(qkv__rng_u32(o->seed, stream, k + 2) % (uint64_t)V);
    }
}

/* The mean validation loss over the first eval_batches sequential batches, as an EVAL line;
 * nothing when the split holds no batch. */
static qkv_status eval_line(loop *L, int64_t step, double val_loss) {
    qkv_train_record r;
    record_init(&r, QKV_TRAIN_RECORD_EVAL, step, L->o->steps);
    r.val_loss = val_loss;
    r.val_ppl = exp(r.val_loss);
    QKV_TRY(maybe_best(L, &r));
    return emit(L, &r);
}

static qkv_status evaluate(loop *L, int64_t step) {
    const qkv_train_options *o = L->o;
    if (!o->val) return QKV_OK;
    if (L->s2s) {
        double v;
        int any;
        qkv_status s = qkv__s2s_evaluate(L->rt, L->t, L->s2s, o, L->rank, L->size, &v, &any);
        if (s != QKV_OK) return with_context(s, "validation", step);
        return any ? eval_line(L, step, v) : QKV_OK;
    }
    int64_t nb = qkv_dataset_batches(o->val, o->batch, o->seq);
    if (nb > o->eval_batches) nb = o->eval_batches;
    if (nb <= 0) return QKV_OK;
    /* several ranks: batch i on rank i mod size, the losses summed in the order of i */
    double *part = qkv__calloc((size_t)nb, sizeof *part), sum = 0;
    if (!part) return qkv__fail(QKV_ERR_NOMEM, "validation: out of memory");
    qkv_status s = QKV_OK;
    for (int64_t i = L->rank; i < nb && s == QKV_OK; i += L->size) {
        float loss;
        s = qkv_dataset_sequential(o->val, i, o->batch, o->seq, L->ids, L->tgt);
        if (s == QKV_OK) mlm_mask(L, MLM_EVAL_STREAM + (uint64_t)i, o->batch * o->seq);
        if (s == QKV_OK) s = qkv_trainer_eval(L->rt, L->t, L->ids, L->tgt, o->batch, o->seq, &loss);
        if (s != QKV_OK)
            s = with_context(s, "validation", step);
        else
            part[i] = loss;
    }
    if (s == QKV_OK && L->size > 1) s = qkv__dist_sum_f64(o->dist, part, nb, "validation");
    for (int64_t i = 0; i < nb; i++) sum += part[i];
    qkv__free(part);
    QKV_TRY(s);
    return eval_line(L, step, sum / (double)nb);
}

/* ---------------------------------------------------------------- classifier runs */

qkv_status qkv_trainer_predict(qkv_runtime *rt, qkv_trainer *t, const qkv_cls_data *d,
                               int64_t batch, float *out) {
    static const char fn[] = "qkv_trainer_predict";
    if (!t || !d || !out) return qkv__fail(QKV_ERR_INVALID_ARG, "%s: NULL argument", fn);
    if (batch < 1 || batch > ((int64_t)1 << 20))
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: batch %lld outside [1, 2^20]", fn,
                         (long long)batch);
    const int64_t NL = qkv_trainer_num_labels(t), n = d->n;
    if (NL != d->nl || qkv_trainer_problem_type(t) != d->problem)
        return qkv__fail(QKV_ERR_INVALID_ARG,
                         "%s: the examples (%s, %lld labels) do not fit the trainer (%s, %lld)", fn,
                         qkv__problem_name(d->problem), (long long)d->nl,
                         qkv__problem_name(qkv_trainer_problem_type(t)), (long long)NL);
    const int64_t B = batch < n ? batch : n, cap = B * d->max_len;
    int64_t *order = qkv__alloc((size_t)n * sizeof *order);
    int32_t *ids = qkv__alloc((size_t)cap * sizeof *ids),
            *types = qkv__alloc((size_t)cap * sizeof *types);
    int32_t *lens = qkv__alloc((size_t)B * sizeof *lens),
            *labels = qkv__alloc((size_t)B * sizeof *labels);
    float *values = qkv__alloc((size_t)(B * NL) * sizeof *values);
    qkv_status s = order && ids && types && lens && labels && values
                       ? QKV_OK
                       : qkv__fail(QKV_ERR_NOMEM, "%s: out of memory", fn);
    if (s == QKV_OK) qkv__cls_epoch_order(d, 0, 0, n, order); /* by decreasing length */
    for (int64_t start = 0; s == QKV_OK && start < n; start += B) {
        const int64_t nb = start + B <= n ? B : n - start;
        qkv_train_batch b = qkv__cls_batch(d, order + start, nb, ids, types, lens, labels, values);
        float loss;
        s = qkv_trainer_eval_batch(rt, t, &b, &loss);
        const float *lg = s == QKV_OK ? qkv_trainer_logits(t) : NULL;
        for (int64_t i = 0; lg && i < nb; i++)
            memcpy(out + order[start + i] * NL, lg + i * NL, (size_t)NL * sizeof *out);
    }
    qkv__free(order), qkv__free(ids), qkv__free(types), qkv__free(lens), qkv__free(labels);
    qkv__free(values);
    return s;
}

/* Micro-batch b (B examples at most) of example order `order` from `start`, as a batch. */
static qkv_train_batch cls_batch(loop *L, const qkv_cls_data *d, const int64_t *order,
                                 int64_t start) {
    const int64_t B = start + L->o->batch <= d->n ? L->o->batch : d->n - start;
    return qkv__cls_batch(d, order + start, B, L->ids, L->types, L->lens, L->labels, L->values);
}

/* Micro-batch k of step `step` of a classifier run: part k % S (S = cls_splits) of batch
 * m = step·accum + k / S (epoch m / M, its (m % M)-th batch), forward and backward, its
 * gradient added scaled by its share num / den of the step (examples of it over examples of the
 * step's batches times accum). An empty part (the epoch's last batch may be short) computes
 * nothing: *num = 0. */
static qkv_status cls_micro(loop *L, int64_t step, int64_t k, float *loss, int64_t *num,
                            int64_t *den, int64_t *tokens) {
    const qkv_train_options *o = L->o;
    const qkv_cls_data *d = o->cls_train;
    const int64_t S = cls_splits(o), mb = cls_micro_size(o);
    const int64_t m = step * o->accum + k / S, part = k % S;
    const int64_t M = micro_per_epoch(L), epoch = m / M;
    if (L->order_epoch != epoch) {
        qkv__cls_epoch_order(d, o->seed, epoch, o->length_grouped ? o->batch : 0, L->order);
        L->order_epoch = epoch;
    }
    const int64_t start = (m % M) * o->batch;
    const int64_t nb = start + o->batch <= d->n ? o->batch : d->n - start;
    const int64_t first = part * mb, ns = first + mb <= nb ? mb : nb - first;
    *loss = 0, *tokens = 0, *num = ns > 0 ? ns : 0, *den = nb * o->accum;
    if (ns <= 0) return QKV_OK;
    qkv_train_batch b = qkv__cls_batch(d, L->order + start + first, ns, L->ids, L->types, L->lens,
                                       L->labels, L->values);
    /* part 0 keeps the seed a batch had before batches were split */
    b.dropout_seed =
        o->seed * 0x9E3779B97F4A7C15ull + (uint64_t)m + 1 + (uint64_t)part * 0xD1B54A32D192ED03ull;
    for (int64_t i = 0; i < b.B; i++) *tokens += b.kv_lens[i];
    /* the share as a float: 1 / accum when the part is the whole batch, as before the split */
    const float scale = ns == nb ? 1.0f / (float)o->accum : (float)((double)ns / (double)*den);
    return qkv_trainer_forward_backward_batch(L->rt, L->t, &b, scale, loss);
}

/* Validation over all of cls_val (in order of length, so batches pad little): the mean loss
 * per example, accuracy and macro-F1, as an EVAL line. Several ranks: batch i on rank
 * i mod size; each batch's loss and predictions come back in a table of sums with one nonzero
 * term per entry (exact), and the losses add up in batch order as in one process. */
static qkv_status cls_evaluate(loop *L, int64_t step) {
    const qkv_train_options *o = L->o;
    const qkv_cls_data *d = o->cls_val;
    if (!d) return QKV_OK;
    const int64_t n = d->n, NL = d->nl, nb = (n + o->batch - 1) / o->batch;
    const int single = d->problem == QKV_PROBLEM_SINGLE_LABEL,
              multi = d->problem == QKV_PROBLEM_MULTI_LABEL;
    const int64_t W = single ? 1 : multi ? NL : 0; /* predictions per example */
    int32_t *yt = single ? qkv__alloc((size_t)n * 2 * sizeof *yt) : NULL;
    uint8_t *mt = multi ? qkv__alloc((size_t)(n * NL) * 2) : NULL;
    /* [nb] each batch's loss times its examples, then [n, W] the predictions (by example) */
    double *tab = qkv__calloc((size_t)(nb + n * W), sizeof *tab), *pred = tab + nb;
    if ((single && !yt) || (multi && !mt) || !tab) {
        qkv__free(yt), qkv__free(mt), qkv__free(tab);
        return qkv__fail(QKV_ERR_NOMEM, "validation: out of memory");
    }
    double sum = 0;
    qkv_status s = QKV_OK;
    for (int64_t i = L->rank; i < nb && s == QKV_OK; i += L->size) {
        const int64_t start = i * o->batch;
        qkv_train_batch b = cls_batch(L, d, L->val_order, start);
        float loss;
        s = qkv_trainer_eval_batch(L->rt, L->t, &b, &loss);
        if (s != QKV_OK) break;
        tab[i] = (double)loss * (double)b.B;
        const float *lg = qkv_trainer_logits(L->t);
        for (int64_t j = 0; j < b.B; j++) {
            const int64_t e = L->val_order[start + j];
            const float *row = lg + j * NL;
            if (single) {
                int32_t best = 0;
                for (int32_t k = 1; k < NL; k++)
                    if (row[k] > row[best]) best = k;
                pred[e] = best;
            } else if (multi) {
                for (int64_t k = 0; k < NL; k++) pred[e * NL + k] = row[k] > 0.0f;
            }
        }
    }
    /* every rank joins the sum, also after a failure of its own (the others wait for it);
     * a failure anywhere is then everyone's */
    int failed = s != QKV_OK;
    if (L->size > 1) {
        qkv_status ds = qkv__dist_max_int(o->dist, &failed, "validation");
        if (ds == QKV_OK && !failed) ds = qkv__dist_sum_f64(o->dist, tab, nb + n * W, "validation");
        if (s == QKV_OK && ds != QKV_OK) s = ds;
        if (s == QKV_OK && failed) s = qkv__fail(QKV_ERR_PEER, "validation failed on another rank");
    }
    for (int64_t i = 0; s == QKV_OK && i < nb; i++) sum += tab[i];
    for (int64_t e = 0; s == QKV_OK && e < n; e++)
        if (single) {
            yt[e] = d->labels[e], yt[n + e] = (int32_t)pred[e];
        } else if (multi) {
            for (int64_t k = 0; k < NL; k++) {
                mt[e * NL + k] = d->values[e * NL + k] > 0.5f;
                mt[n * NL + e * NL + k] = pred[e * NL + k] > 0.5;
            }
        }
    qkv__free(tab);
    qkv_train_record r;
    record_init(&r, QKV_TRAIN_RECORD_EVAL, step, o->steps);
    r.val_loss = sum / (double)n;
    r.epoch = (double)step / (double)qkv_train_epoch_steps(o->cls_train->n, o->batch, o->accum);
    qkv_cls_metrics *m = NULL;
    if (s == QKV_OK && single) s = qkv_cls_metrics_compute(yt, yt + n, n, NL, &m);
    if (s == QKV_OK && multi) s = qkv_cls_metrics_compute_multilabel(mt, mt + n * NL, n, NL, &m);
    if (m) r.val_accuracy = m->accuracy, r.val_macro_f1 = m->macro.f1;
    qkv_cls_metrics_free(m);
    qkv__free(yt);
    qkv__free(mt);
    if (s != QKV_OK) return with_context(s, "validation", step);
    QKV_TRY(maybe_best(L, &r));
    return emit(L, &r);
}

/* Micro-batch k of step `step`: forward and backward, the gradients added to the trainer's
 * scaled by the micro-batch's share num / den of the step (1 / accum but for classifiers'
 * split batches). */
static qkv_status micro(loop *L, int64_t step, int64_t k, float *loss, int64_t *num, int64_t *den,
                        int64_t *tokens) {
    const qkv_train_options *o = L->o;
    if (o->cls_train) return cls_micro(L, step, k, loss, num, den, tokens);
    const int64_t m = step * o->accum + k;
    const float scale = 1.0f / (float)o->accum;
    *num = 1, *den = o->accum;
    if (L->s2s) return qkv__s2s_micro(L->rt, L->t, L->s2s, o, m, scale, loss, tokens);
    *tokens = o->batch * o->seq;
    qkv_status s =
        qkv_dataset_sample(o->train, o->seed, (uint64_t)m, o->batch, o->seq, L->ids, L->tgt);
    if (s == QKV_OK) mlm_mask(L, MLM_TRAIN_STREAM + (uint64_t)m, o->batch * o->seq);
    if (s == QKV_OK)
        s = qkv_trainer_forward_backward(L->rt, L->t, L->ids, L->tgt, o->batch, o->seq, scale,
                                         loss);
    return s;
}

/* exact_reduce, after round j (micro-batches j·size .. j·size + size - 1, one per rank, each
 * rank's gradient holding its micro-batch's alone): adds them to gsum in micro-batch order,
 * on rank 0, bucket by bucket. */
static qkv_status exact_round(loop *L, int64_t j, const char *what) {
    int64_t n;
    const float *g = qkv__trainer_buffer(L->t, 1, &n);
    const int64_t K = step_micros(L->o), N = L->size;
    if (N == 1) {
        for (int64_t i = 0; i < n; i++) L->gsum[i] += g[i];
        return QKV_OK;
    }
    for (int64_t off = 0; off < n; off += BUCKET) {
        const int64_t c = n - off < BUCKET ? n - off : BUCKET;
        QKV_TRY(qkv__dist_gather_f32(L->o->dist, g + off, L->gbuf, c, what));
        if (L->rank != 0) continue;
        for (int64_t q = 0; q < N && j * N + q < K; q++) {
            float *dst = L->gsum + off;
            const float *src = L->gbuf + q * c;
            for (int64_t i = 0; i < c; i++) dst[i] += src[i];
        }
    }
    return QKV_OK;
}

/* The all-reduce overlapped with the last local micro-batch's backward: each block's gradient
 * range starts its all-reduce as soon as the block's backward is done (the trainer's layer
 * hook), from the last block down; whatever is left (blocks whose hook did not come in order,
 * embeddings, final norm, head, LoRA adapters) follows after the backward. Every rank starts
 * the same ranges in the same order — block L-1 ... block 0, then [0, block 0) and [block L-1,
 * end) — whether or not it had a micro-batch, as MPI matches collectives by order. */
typedef struct overlap {
    loop *L;
    float *g;
    const int64_t *bound; /* ZeRO-1: the ranks' slices (reduce-scatter), or NULL (all-reduce) */
    int64_t low;          /* the lowest block whose all-reduce has started (layers: none) */
    qkv_status st;
} overlap;

/* Starts the sum of g[b, e): all of it on every rank, or (ZeRO-1) each rank's slice on it. */
static qkv_status reduce(overlap *ov, int64_t b, int64_t e) {
    const char *what = "summing the gradients";
    if (ov->bound)
        return qkv__dist_ireduce_scatter_f32(ov->L->o->dist, ov->g, b, e, ov->bound, BUCKET, what);
    return qkv__dist_isum_f32(ov->L->o->dist, ov->g + b, e - b, BUCKET, what);
}

static void on_block_done(void *user, int64_t l) {
    overlap *ov = user;
    if (ov->st != QKV_OK || l != ov->low - 1) return;
    int64_t b, e;
    qkv__trainer_layer_range(ov->L->t, l, &b, &e);
    ov->st = reduce(ov, b, e);
    ov->low = l;
    qkv__dist_progress(ov->L->o->dist);
}

/* After the backward: the blocks not started yet, the rest, then the wait. */
static qkv_status overlap_finish(overlap *ov, int64_t n) {
    qkv_dist *d = ov->L->o->dist;
    const int64_t layers = qkv__trainer_layers(ov->L->t);
    const char *what = "summing the gradients";
    while (ov->st == QKV_OK && ov->low > 0) on_block_done(ov, ov->low - 1);
    int64_t b0 = n, e1 = n, b, e; /* blocks 0 .. L-1 cover [b0, e1) */
    if (layers > 0) {
        qkv__trainer_layer_range(ov->L->t, 0, &b0, &e);
        qkv__trainer_layer_range(ov->L->t, layers - 1, &b, &e1);
    }
    if (ov->st == QKV_OK) ov->st = reduce(ov, 0, b0);
    if (ov->st == QKV_OK) ov->st = reduce(ov, e1, n);
    qkv_status w = qkv__dist_wait_all(d, what); /* also after a failed start: none stays pending */
    return ov->st != QKV_OK ? ov->st : w;
}

/* One optimizer step over `accum` micro-batches (rank r of N computes r, r + N, ...); fills r
 * (a STEP record) on success. */
static qkv_status train_step(loop *L, int64_t step, const qkv_adamw *hp,
                             const qkv_lr_schedule *sched, qkv_train_record *r) {
    const qkv_train_options *o = L->o;
    const int64_t B = o->batch, K = step_micros(o), N = L->size;
    const int exact = o->exact_reduce;
    double t0 = now_s(), loss = 0, tokens = 0;
    int64_t n;
    float *g = qkv__trainer_buffer(L->t, 1, &n);
    memset(L->part, 0, (size_t)(2 * K) * sizeof *L->part);
    if (exact && L->gsum) memset(L->gsum, 0, (size_t)n * sizeof *L->gsum);
    qkv_trainer_zero_grad(L->t);
    overlap ov = {L, g, o->zero ? L->zero.bound : NULL, qkv__trainer_layers(L->t), QKV_OK};
    for (int64_t j = 0; j * N < K; j++) {
        const int64_t k = j * N + L->rank;
        if (exact) qkv_trainer_zero_grad(L->t);
        if (k < K) {
            float l;
            int64_t nt, num, den;
            const int last = !exact && N > 1 && k + N >= K; /* this rank's last micro-batch */
            if (last) qkv__trainer_set_layer_hook(L->t, on_block_done, &ov);
            qkv_status s = micro(L, step, k, &l, &num, &den, &nt);
            if (last) qkv__trainer_set_layer_hook(L->t, NULL, NULL);
            if (s != QKV_OK) return with_context(s, "training", step + 1);
            /* l·num is exact in a double, so num = 1 (or a whole batch) gives l / accum */
            L->part[k] = (double)l * (double)num / (double)den, L->part[K + k] = (double)nt;
        }
        if (exact) QKV_TRY(exact_round(L, j, "summing the gradients"));
    }
    /* (the gradients first: their all-reduces started in the backward, and MPI matches
     * collectives by the order they start in) */
    if (!exact && N > 1) QKV_TRY(overlap_finish(&ov, n));
    if (N > 1) QKV_TRY(qkv__dist_sum_f64(o->dist, L->part, 2 * K, "summing the losses"));
    for (int64_t k = 0; k < K; k++) loss += L->part[k], tokens += L->part[K + k];
    if (exact) {
        if (L->rank == 0) memcpy(g, L->gsum, (size_t)n * sizeof *g);
        if (N > 1 && o->zero) /* ZeRO-1: each rank its slice */
            QKV_TRY(qkv__dist_scatter_f32(o->dist, g, n, L->zero.bound, BUCKET,
                                          "sharing the gradients"));
        else if (N > 1)
            QKV_TRY(qkv__dist_bcast_f32(o->dist, g, n, BUCKET, "sharing the gradients"));
    }
    double lr = qkv_lr_at(sched, step);
    float norm = NAN;
    /* clipping + AdamW in one pass; a non-finite norm leaves the weights untouched */
    if (isfinite(loss)) {
        qkv_status s =
            o->zero ? qkv__zero_step(&L->zero, L->rt, L->t, hp, (float)lr, (float)o->clip, &norm)
                    : qkv_trainer_step(L->rt, L->t, hp, (float)lr, (float)o->clip, &norm);
        if (s != QKV_OK) return with_context(s, "the optimizer step", step + 1);
    }
    if (!isfinite(loss) || !isfinite(norm))
        return qkv__fail(QKV_ERR_NOT_FINITE,
                         "step %" PRId64 ": the loss (%g) or gradient norm (%g) is not finite; "
                         "stopped before updating the weights",
                         step + 1, loss, (double)norm);
    double t1 = now_s();
    record_init(r, QKV_TRAIN_RECORD_STEP, step + 1, o->steps);
    r->loss = loss, r->lr = lr, r->grad_norm = (double)norm;
    r->step_s = t1 - t0;
    r->tokens_per_s = tokens / r->step_s;
    r->elapsed_s = t1 - L->t_start;
    if (o->cls_train)
        r->epoch = (double)(step + 1) / (double)qkv_train_epoch_steps(o->cls_train->n, B, o->accum);
    return QKV_OK;
}

/* ---------------------------------------------------------------- options */

#define BAD(...) qkv__fail(QKV_ERR_INVALID_ARG, "qkv_train_run: " __VA_ARGS__)

static qkv_status check_options(const qkv_trainer *t, const qkv_train_options *o,
                                const qkv_train_callbacks *cb) {
    if (!t || !o) return BAD("NULL trainer or options");
    if (o->struct_size != sizeof *o)
        return BAD("options.struct_size is %zu, this library knows %zu (set it with "
                   "qkv_train_options_init)",
                   o->struct_size, sizeof *o);
    if (cb && cb->struct_size != sizeof *cb)
        return BAD("callbacks.struct_size is %zu, this library knows %zu", cb->struct_size,
                   sizeof *cb);
    if (o->cls_train || o->cls_val) {
        if (o->train || o->val)
            return BAD("train / val datasets and cls_train / cls_val exclude each other");
        if (!o->cls_train) return BAD("options.cls_val needs cls_train");
        if (strcmp(qkv_trainer_arch(t), "bert_cls") != 0)
            return BAD("labelled examples train a classifier (qkv_trainer_load_hf_classifier), "
                       "not a %s trainer",
                       qkv_trainer_arch(t));
        const qkv_cls_data *ds[2] = {o->cls_train, o->cls_val};
        for (int i = 0; i < 2 && ds[i]; i++) {
            const int64_t nl = qkv_trainer_num_labels(t);
            if (ds[i]->problem != qkv_trainer_problem_type(t) || ds[i]->nl != nl)
                return BAD("the %s examples are %s with %" PRId64
                           " labels, the trainer %s with %" PRId64,
                           i ? "validation" : "training", qkv__problem_name(ds[i]->problem),
                           ds[i]->nl, qkv__problem_name(qkv_trainer_problem_type(t)), nl);
            if (ds[i]->max_len > o->seq)
                return BAD("an example of %" PRId64 " tokens is longer than seq %" PRId64
                           " (build the data with max_length <= seq)",
                           ds[i]->max_len, o->seq);
        }
    } else if (!o->train) {
        return BAD("options.train is NULL");
    }
    if (o->batch < 1 || o->batch > ((int64_t)1 << 20)) return BAD("batch must be in [1, 2^20]");
    if (o->seq < 1) return BAD("seq must be >= 1");
    if (o->accum < 1 || o->accum > ((int64_t)1 << 20)) return BAD("accum must be in [1, 2^20]");
    if (o->steps < 0 || o->warmup < 0 || o->eval_every < 0 || o->eval_batches < 0 ||
        o->save_every < 0)
        return BAD("steps, warmup, eval_every, eval_batches and save_every must be >= 0");
    if (o->keep < 1) return BAD("keep must be >= 1");
    int64_t bt, idx;
    if (__builtin_mul_overflow(o->batch, o->seq, &bt) ||
        __builtin_mul_overflow(bt, o->accum, &bt) ||
        __builtin_mul_overflow(o->steps, o->accum, &idx) || bt > ((int64_t)1 << 40))
        return BAD("batch x seq x accum (or steps x accum) is too large");
    if (o->decay != QKV_LR_CONSTANT && o->decay != QKV_LR_COSINE && o->decay != QKV_LR_LINEAR &&
        o->decay != QKV_LR_LINEAR_HF)
        return BAD("unknown decay %d", (int)o->decay);
    const double fl[] = {o->lr, o->min_lr, o->weight_decay, o->eps, o->clip};
    static const char *const fl_name[] = {"lr", "min_lr", "weight_decay", "eps", "clip"};
    for (size_t i = 0; i < sizeof fl / sizeof *fl; i++)
        if (!(fl[i] >= 0) || !isfinite((float)fl[i]))
            return BAD("%s must be a finite float >= 0, not %g", fl_name[i], fl[i]);
    if (!(o->beta1 >= 0 && o->beta1 < 1) || !(o->beta2 >= 0 && o->beta2 < 1))
        return BAD("beta1 and beta2 must be in [0, 1)");
    if (o->zero != 0 && o->zero != 1) return BAD("zero must be 0 or 1, not %d", o->zero);
    if (o->micro_batch < 0) return BAD("micro_batch must be >= 0");
    if (o->micro_batch && !o->cls_train && o->micro_batch < o->batch)
        return BAD("micro_batch splits classifier batches (cls_train); other runs split a "
                   "step with accum");
    qkv_gpt2_shape sh;
    qkv_trainer_get_shape(t, &sh);
    if (strcmp(qkv_trainer_arch(t), "bert") == 0) {
        if (!(o->mlm_probability > 0 && o->mlm_probability < 1))
            return BAD("mlm_probability must be in (0, 1), not %g", o->mlm_probability);
        if (o->mask_token_id < 0 || o->mask_token_id >= sh.vocab_size)
            return BAD("a masked-LM (BERT) run needs mask_token_id in [0, %" PRId64 "), not %d",
                       sh.vocab_size, o->mask_token_id);
    }
    if (o->seq > sh.n_positions)
        return BAD("seq %" PRId64 " is longer than the model's n_positions %" PRId64, o->seq,
                   sh.n_positions);
    if (o->cls_train || qkv__s2s_wanted(t, o)) {
        if (o->run_dir && strlen(o->run_dir) > PATH_CAP - 64) return BAD("run_dir is too long");
        return o->cls_train ? QKV_OK : qkv__s2s_check(t, o);
    }
    if (qkv_dataset_vocab_size(o->train) > sh.vocab_size)
        return BAD("the dataset's vocabulary (%" PRId64 ") is larger than the model's (%" PRId64
                   ")",
                   qkv_dataset_vocab_size(o->train), sh.vocab_size);
    if (o->val && qkv_dataset_vocab_size(o->val) > sh.vocab_size)
        return BAD("the validation vocabulary (%" PRId64 ") is larger than the model's (%" PRId64
                   ")",
                   qkv_dataset_vocab_size(o->val), sh.vocab_size);
    if (qkv_dataset_tokens(o->train) < o->seq + 1)
        return BAD("the train split has %" PRId64 " tokens, fewer than seq + 1",
                   qkv_dataset_tokens(o->train));
    if (o->run_dir && strlen(o->run_dir) > PATH_CAP - 64) return BAD("run_dir is too long");
    return QKV_OK;
}

/* ---------------------------------------------------------------- several ranks */

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}
#define FNV0 0xcbf29ce484222325ull
#define HASH(h, x) ((h) = fnv((h), &(x), sizeof(x)))

/* What the ranks must agree on, one word each (the names say which differs). */
static const char *const AGREE[] = {
    "qkv version, build or kernels", "training options", "model shape", "optimizer step", "data",
    "weights or optimizer state"};
#define N_AGREE (sizeof AGREE / sizeof *AGREE)

/* Compares the ranks' options, model, state and data (hashes, all-gathered): INVALID_ARG
 * naming the first rank and the thing that differs from rank 0. */
static qkv_status agree(loop *L) {
    const qkv_train_options *o = L->o;
    uint64_t h[N_AGREE];
    for (size_t i = 0; i < N_AGREE; i++) h[i] = FNV0;
    const size_t sizes[] = {sizeof(qkv_train_options), sizeof(qkv_train_record),
                            sizeof(qkv_param_info)};
    h[0] = fnv(fnv(h[0], QKV_VERSION_STRING, strlen(QKV_VERSION_STRING)), sizes, sizeof sizes);
    /* the build (compiler, build type, sanitizers, ISA kernels compiled in) and the kernels in
     * use: ranks computing with other kernels would not sum to one process's gradients */
    const char *build = qkv_build_info();
    const int isa = (int)qkv_arch_active();
    h[0] = fnv(fnv(h[0], build, strlen(build)), &isa, sizeof isa);
    const int64_t ints[] = {o->batch,          o->seq,        o->accum,          o->steps,
                            (int64_t)o->seed,  o->warmup,     (int64_t)o->decay, o->eval_every,
                            o->eval_batches,   o->save_every, o->keep,           o->mask_token_id,
                            o->length_grouped, o->keep_best,  o->tensorboard,    o->tb_histograms,
                            o->exact_reduce,   o->zero,       o->src_seq,        cls_micro_size(o)};
    const double dbl[] = {o->lr,    o->min_lr, o->weight_decay, o->beta1,
                          o->beta2, o->eps,    o->clip,         o->mlm_probability};
    HASH(h[1], ints), HASH(h[1], dbl);
    if (o->checkpoint_json) h[1] = fnv(h[1], o->checkpoint_json, strlen(o->checkpoint_json));
    const char *arch = qkv_trainer_arch(L->t);
    h[2] = fnv(h[2], arch, strlen(arch));
    for (size_t i = 0; i < qkv_trainer_param_count(L->t); i++) {
        qkv_param_info p = {.struct_size = sizeof p};
        QKV_TRY(qkv_trainer_param(L->t, i, &p));
        h[2] = fnv(h[2], p.name, strlen(p.name));
        HASH(h[2], p.numel), HASH(h[2], p.trainable), HASH(h[2], p.decay);
    }
    const int64_t st = qkv_trainer_steps(L->t);
    HASH(h[3], st);
    if (o->cls_train) { /* the examples themselves: tokens, types, labels */
        const qkv_cls_data *d[2] = {o->cls_train, o->cls_val};
        for (int i = 0; i < 2; i++) {
            const int64_t v[3] = {d[i] ? d[i]->n : -1, d[i] ? d[i]->nl : -1,
                                  d[i] ? d[i]->max_len : -1};
            HASH(h[4], v);
            if (!d[i]) continue;
            const size_t nt = (size_t)d[i]->off[d[i]->n];
            h[4] = fnv(h[4], d[i]->off, (size_t)(d[i]->n + 1) * sizeof *d[i]->off);
            h[4] = fnv(h[4], d[i]->ids, nt * sizeof *d[i]->ids);
            if (d[i]->types) h[4] = fnv(h[4], d[i]->types, nt * sizeof *d[i]->types);
            if (d[i]->labels) h[4] = fnv(h[4], d[i]->labels, (size_t)d[i]->n * sizeof(int32_t));
            if (d[i]->values)
                h[4] = fnv(h[4], d[i]->values, (size_t)(d[i]->n * d[i]->nl) * sizeof(float));
        }
    } else {
        const int64_t v[4] = {qkv_dataset_tokens(o->train), qkv_dataset_vocab_size(o->train),
                              o->val ? qkv_dataset_tokens(o->val) : -1,
                              o->val ? qkv_dataset_vocab_size(o->val) : -1};
        HASH(h[4], v);
    }
    int64_t nw;
    qkv__trainer_buffer(L->t, 0, &nw);
    for (int which = 0; which < 4; which += 1 + (which == 0)) { /* w, m, v */
        int64_t n;
        const float *b = qkv__trainer_buffer(L->t, which, &n);
        if (n == nw) h[5] = fnv(h[5], b, (size_t)n * sizeof *b); /* not a ZeRO-1 slice */
    }
    int bad, word;
    QKV_TRY(qkv__dist_compare(o->dist, h, (int)N_AGREE, &bad, &word));
    if (bad >= 0)
        return qkv__fail(QKV_ERR_INVALID_ARG,
                         "the %d ranks do not run the same training: rank %d and rank 0 differ "
                         "in their %s (start every rank with the same command, binary and "
                         "files)",
                         L->size, bad, AGREE[word]);
    return QKV_OK;
}

/* ---------------------------------------------------------------- the loop */

static qkv_status run(loop *L) {
    const qkv_train_options *o = L->o;
    const qkv_train_callbacks *cb = L->cb;
    int64_t step = qkv_trainer_steps(L->t);
    qkv_adamw hp;
    qkv_adamw_defaults(&hp);
    hp.beta1 = (float)o->beta1, hp.beta2 = (float)o->beta2, hp.eps = (float)o->eps;
    hp.weight_decay = (float)o->weight_decay;
    qkv_lr_schedule sched;
    memset(&sched, 0, sizeof sched);
    sched.lr_max = o->lr, sched.lr_min = o->min_lr;
    sched.warmup = o->warmup, sched.total = o->steps, sched.decay = o->decay;

    if (L->size > 1) QKV_TRY(agree(L));
    int64_t nf, nm;
    qkv__trainer_buffer(L->t, 1, &nf);
    qkv__trainer_buffer(L->t, 2, &nm);
    if (o->zero) { /* after agree: it compares the whole optimizer state */
        QKV_TRY(qkv__zero_begin(&L->zero, L->t, o->dist));
        L->sharded = L->size > 1;
    } else if (nm != nf) {
        return BAD("the trainer holds the optimizer state of a slice of the parameters only "
                   "(left by a ZeRO-1 run): train on with options.zero, or resume from a "
                   "checkpoint");
    }
    if (o->run_dir) {
        if (L->writer && mkdir(o->run_dir, 0755) != 0 && errno != EEXIST)
            return qkv__write_fail("cannot create the run directory", o->run_dir);
        int64_t last = qkv_train_latest_checkpoint(o->run_dir);
        if (last > step)
            return BAD("%s holds a checkpoint of step %" PRId64 ", past the trainer's step %" PRId64
                       " (resume from it, or use another directory)",
                       o->run_dir, last, step);
        snprintf(L->metrics_path, sizeof L->metrics_path, "%s/metrics.jsonl", o->run_dir);
        if (L->writer) QKV_TRY(metrics_start(L, step));
        if (L->writer && o->tensorboard) QKV_TRY(qkv__tb_open(o->run_dir, step, &L->tb));
    }
    L->part = qkv__alloc((size_t)(2 * step_micros(o)) * sizeof *L->part);
    if (!L->part) return qkv__fail(QKV_ERR_NOMEM, "qkv_train_run: out of memory");
    if (o->exact_reduce && L->rank == 0) {
        const int64_t gb = nf < BUCKET ? nf : BUCKET;
        L->gsum = qkv__alloc((size_t)nf * sizeof *L->gsum);
        L->gbuf = L->size > 1 ? qkv__alloc((size_t)(gb * L->size) * sizeof *L->gbuf) : NULL;
        if (!L->gsum || (L->size > 1 && !L->gbuf))
            return qkv__fail(QKV_ERR_NOMEM, "qkv_train_run: out of memory (exact_reduce)");
    }
    L->ids = qkv__alloc((size_t)(o->batch * o->seq) * sizeof *L->ids);
    L->tgt = qkv__alloc((size_t)(o->batch * o->seq) * sizeof *L->tgt);
    if (!L->ids || !L->tgt) return qkv__fail(QKV_ERR_NOMEM, "qkv_train_run: out of memory");
    if (!o->cls_train && qkv__s2s_wanted(L->t, o)) QKV_TRY(qkv__s2s_begin(L->t, o, &L->s2s));
    if (o->cls_train) {
        const int64_t nl = o->cls_train->nl, nv = o->cls_val ? o->cls_val->n : 0;
        L->types = qkv__alloc((size_t)(o->batch * o->seq) * sizeof *L->types);
        L->lens = qkv__alloc((size_t)o->batch * sizeof *L->lens);
        L->labels = qkv__alloc((size_t)o->batch * sizeof *L->labels);
        L->values = qkv__alloc((size_t)(o->batch * nl) * sizeof *L->values);
        L->order = qkv__alloc((size_t)o->cls_train->n * sizeof *L->order);
        L->val_order = nv ? qkv__alloc((size_t)nv * sizeof *L->val_order) : NULL;
        if (!L->types || !L->lens || !L->labels || !L->values || !L->order || (nv && !L->val_order))
            return qkv__fail(QKV_ERR_NOMEM, "qkv_train_run: out of memory");
        L->order_epoch = -1;
        /* validation in order of decreasing length: batches of alike lengths, a fixed order */
        if (nv) qkv__cls_epoch_order(o->cls_val, 0, 0, nv, L->val_order);
    }
    L->t_start = now_s();
    for (;;) {
        int stop = cb && cb->should_stop && cb->should_stop(L->user);
        if (L->size > 1) /* one rank's request stops all, after the same step */
            QKV_TRY(qkv__dist_max_int(o->dist, &stop, "agreeing on a stop request"));
        if (stop) {
            if (o->run_dir && (L->writer || L->sharded) && L->saved != step) QKV_TRY(save(L, step));
            return qkv__fail(QKV_ERR_INTERRUPTED, "stopped on request after step %" PRId64 "%s",
                             step, o->run_dir ? "; checkpoint saved" : "");
        }
        if (step >= o->steps) return QKV_OK;
        qkv_train_record r;
        QKV_TRY(train_step(L, step, &hp, &sched, &r));
        step++;
        QKV_TRY(emit(L, &r));
        if (L->writer && cb && cb->progress) cb->progress(&r, L->user);
        if ((o->eval_every && step % o->eval_every == 0) || step == o->steps) {
            QKV_TRY(o->cls_train ? cls_evaluate(L, step) : evaluate(L, step));
            QKV_TRY(tb_weights(L, step));
        }
        if (o->run_dir && (L->writer || L->sharded) &&
            ((o->save_every && step % o->save_every == 0) || step == o->steps))
            QKV_TRY(save(L, step));
    }
}

qkv_status qkv_train_run(qkv_runtime *rt, qkv_trainer *t, const qkv_train_options *opt,
                         const qkv_train_callbacks *cb, void *user) {
    QKV_TRY(check_options(t, opt, cb));
    loop L;
    memset(&L, 0, sizeof L);
    L.rt = rt, L.t = t, L.o = opt, L.cb = cb, L.user = user, L.saved = -1;
    L.best = NAN;
    L.rank = qkv_dist_rank(opt->dist), L.size = qkv_dist_size(opt->dist);
    L.writer = L.rank == 0;
    qkv_status s = run(&L);
    if (L.metrics && fclose(L.metrics) != 0 && s == QKV_OK)
        s = qkv__write_fail("cannot write", L.metrics_path);
    qkv_status ts = qkv__tb_close(L.tb);
    if (s == QKV_OK) s = ts;
    qkv__free(L.ids);
    qkv__free(L.tgt);
    qkv__free(L.types);
    qkv__free(L.lens);
    qkv__free(L.labels);
    qkv__free(L.values);
    qkv__free(L.order);
    qkv__free(L.val_order);
    qkv__free(L.part);
    qkv__free(L.gsum);
    qkv__free(L.gbuf);
    qkv__zero_end(&L.zero);
    qkv__s2s_free(L.s2s);
    return s;
}
