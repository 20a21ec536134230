/* progress.c — the metrics records of qkv train / qkv finetune as JSON lines on a file
 * descriptor (progress.h). */
#include "progress.h"

#include "cli.h"
#include "textio.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void cli_progress_init(cli_progress *p) { p->fd = p->ack = -1; }

int cli_progress_arg(const char *cmd, cli_progress *p, int argc, char **argv, int *i, int *rc) {
    const char *a = argv[*i];
    const int json = strcmp(a, "--progress-json") == 0;
    if (!json && strcmp(a, "--progress-ack") != 0) return 0;
    *rc = 0;
    if (*i + 1 >= argc) {
        *rc = cli_usage_error(cmd, "%s needs a file descriptor", a);
        return 1;
    }
    long fd;
    const char *v = argv[++*i];
    if ((*rc = cli_parse_count(cmd, a, v, 0, 1 << 20, &fd))) return 1;
    if (fcntl((int)fd, F_GETFD) == -1) {
        *rc = cli_usage_error(cmd, "%s %s: not an open file descriptor", a, v);
        return 1;
    }
    if (json) {
        p->fd = (int)fd;
        signal(SIGPIPE, SIG_IGN); /* a reader gone is a stop request, not a kill */
    } else {
        p->ack = (int)fd;
    }
    return 1;
}

/* The record's doubles by their metrics.jsonl names. */
static double field(const qkv_train_record *m, const char *k) {
    static const struct {
        const char *name;
        size_t off;
    } F[] = {
        {"loss", offsetof(qkv_train_record, loss)},
        {"lr", offsetof(qkv_train_record, lr)},
        {"grad_norm", offsetof(qkv_train_record, grad_norm)},
        {"tokens_per_s", offsetof(qkv_train_record, tokens_per_s)},
        {"step_s", offsetof(qkv_train_record, step_s)},
        {"elapsed_s", offsetof(qkv_train_record, elapsed_s)},
        {"val_loss", offsetof(qkv_train_record, val_loss)},
        {"val_ppl", offsetof(qkv_train_record, val_ppl)},
        {"epoch", offsetof(qkv_train_record, epoch)},
        {"val_accuracy", offsetof(qkv_train_record, val_accuracy)},
        {"val_macro_f1", offsetof(qkv_train_record, val_macro_f1)},
    };
    for (size_t i = 0; i < sizeof F / sizeof *F; i++)
        if (strcmp(F[i].name, k) == 0 && F[i].off + sizeof(double) <= m->struct_size)
            return *(const double *)((const char *)m + F[i].off);
    return NAN;
}

static int write_all(int fd, const char *s, size_t n) {
    while (n) {
        ssize_t w = write(fd, s, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        s += w, n -= (size_t)w;
    }
    return 0;
}

int cli_progress_emit(const cli_progress *p, const qkv_train_record *m) {
    if (p->fd < 0) return 0;
    json_t *j = m->json ? json_loads(m->json, 0, NULL) : NULL;
    if (!json_is_object(j)) {
        json_decref(j);
        j = json_object();
    }
    for (void *it = json_object_iter(j); it; it = json_object_iter_next(j, it)) {
        const double x = field(m, json_object_iter_key(it));
        if (json_is_number(json_object_iter_value(it)) && isfinite(x))
            json_object_iter_set_new(j, it, json_real(x));
    }
    json_object_set_new(j, "kind", json_string(m->kind == QKV_TRAIN_RECORD_EVAL ? "eval" : "step"));
    if (m->replayed) json_object_set_new(j, "replayed", json_true());
    char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
    json_decref(j);
    int stop = 1;
    if (s) {
        size_t n = strlen(s);
        s[n] = '\n'; /* json_dumps' terminator becomes the newline: one write of the line */
        stop = write_all(p->fd, s, n + 1) != 0;
        free(s);
    }
    if (stop || p->ack < 0) return stop;
    char c;
    ssize_t r;
    do r = read(p->ack, &c, 1);
    while (r < 0 && errno == EINTR);
    return r <= 0 || c == 's';
}
