/* progress.h — `--progress-json FD` and `--progress-ack FD` of qkv train and qkv finetune: every
 * metrics record as one JSON line for a program that drives the command (the Python package's
 * qkv.train / qkv.finetune, python/qkv/_train.py), and an optional handshake that lets it stop
 * the run after the step it has just seen. */
#ifndef QKV_CLI_PROGRESS_H
#define QKV_CLI_PROGRESS_H

#include "qkv.h"

typedef struct cli_progress {
    int fd;  /* --progress-json: where the lines go (1: stdout), -1 off */
    int ack; /* --progress-ack: one byte read after each line, -1 off */
} cli_progress;

/* Both off. */
void cli_progress_init(cli_progress *p);
/* If argv[*i] is --progress-json or --progress-ack: takes its value (an open file descriptor),
 * advances *i and returns 1, setting *rc to EXIT_USAGE (with a message) for a bad value, else
 * to 0. Returns 0 for any other argument. */
int cli_progress_arg(const char *cmd, cli_progress *p, int argc, char **argv, int *i, int *rc);
/* Writes m as one JSON line on p->fd: the metrics.jsonl line's fields with their numbers at
 * full precision (the record's doubles, printed with 17 digits, where the file has 6), plus
 * "kind": "step" | "eval" and "replayed": true for the lines kept from before a resume. Then,
 * with p->ack, waits for one byte: 's' or the end of the file (the driver is gone) asks the run
 * to stop after this step, anything else goes on. Returns 1 when the run should stop (also
 * when the line cannot be written: the reader is gone), else 0. */
int cli_progress_emit(const cli_progress *p, const qkv_train_record *m);

#endif
