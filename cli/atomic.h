/* atomic.h — output files written whole or not at all: a temporary file beside the target
 * (PATH.tmp.PID), fsynced, then renamed over it, so a reader (or a crash) never sees a half
 * file. Shared by the plots and `qkv evaluate`'s outputs. */
#ifndef QKV_CLI_ATOMIC_H
#define QKV_CLI_ATOMIC_H

#include <stdio.h>

typedef struct atomic_file {
    FILE *f;    /* write here between atomic_open and atomic_commit / atomic_abort */
    char *tmp;  /* the temporary name */
    char *path; /* the target */
} atomic_file;

/* Creates the temporary file; 0, or -1 with errno set (nothing to clean up then). */
int atomic_open(atomic_file *a, const char *path);
/* Flushes, fsyncs, closes and renames the temporary file over the target; on any failure the
 * temporary file is removed. 0, or -1 with errno set. a is released either way. */
int atomic_commit(atomic_file *a);
/* Closes and removes the temporary file; the target is untouched. NULL-safe, idempotent. */
void atomic_abort(atomic_file *a);

/* The whole file from fn(f, ctx) in one go (atomic_open, fn, atomic_commit). 0 or -1 (errno). */
int atomic_write(const char *path, void (*fn)(FILE *f, const void *ctx), const void *ctx);

/* What an output file holds, as far as replacing an existing file is concerned. */
typedef enum out_kind {
    OUT_TEXT,        /* text: no NUL bytes, not one of the binary formats below */
    OUT_JSONL,       /* JSON lines (empty, or text whose first character is '{' or '[') */
    OUT_NPY,         /* a NumPy .npy array (\x93NUMPY) */
    OUT_SAFETENSORS, /* a safetensors file (8-byte header length, then '{') */
    OUT_SVG,         /* an SVG picture (<svg or <?xml) */
    OUT_PNG,         /* a PNG picture */
} out_kind;

/* Never overwrite what is not ours: 0 if path may be written as an output of this kind (it does
 * not exist, or it is a regular file already of this kind, so a rerun replaces its own output).
 * Else prints "qkv CMD: OPT PATH: exists and is <what it is>; not replaced" and returns 2: a
 * directory, a FIFO or a device, or a file of another kind (a model.safetensors given as a
 * JSON-lines output, notes.txt as an .npy). */
int cli_check_output(const char *cmd, const char *opt, const char *path, out_kind kind);

#endif
