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

#endif
