/* atomic.c — whole-or-nothing output files (see atomic.h). */
#include "atomic.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int atomic_open(atomic_file *a, const char *path) {
    memset(a, 0, sizeof *a);
    size_t n = strlen(path), cap = n + 32;
    a->tmp = malloc(cap);
    a->path = malloc(n + 1);
    if (!a->tmp || !a->path) {
        free(a->tmp), free(a->path);
        memset(a, 0, sizeof *a);
        errno = ENOMEM;
        return -1;
    }
    memcpy(a->path, path, n + 1);
    snprintf(a->tmp, cap, "%s.tmp.%ld", path, (long)getpid());
    a->f = fopen(a->tmp, "wb");
    if (!a->f) {
        int e = errno;
        free(a->tmp), free(a->path);
        memset(a, 0, sizeof *a);
        errno = e;
        return -1;
    }
    return 0;
}

static void release(atomic_file *a) {
    free(a->tmp);
    free(a->path);
    memset(a, 0, sizeof *a);
}

int atomic_commit(atomic_file *a) {
    if (!a->f) {
        errno = EINVAL;
        return -1;
    }
    int err = 0;
    errno = 0;
    if (fflush(a->f) != 0 || ferror(a->f) || fsync(fileno(a->f)) != 0) err = errno ? errno : EIO;
    if (fclose(a->f) != 0 && !err) err = errno ? errno : EIO;
    a->f = NULL;
    if (!err && rename(a->tmp, a->path) != 0) err = errno;
    if (err) unlink(a->tmp);
    release(a);
    if (err) {
        errno = err;
        return -1;
    }
    return 0;
}

void atomic_abort(atomic_file *a) {
    if (!a || !a->f) return;
    fclose(a->f);
    unlink(a->tmp);
    release(a);
}

int atomic_write(const char *path, void (*fn)(FILE *f, const void *ctx), const void *ctx) {
    atomic_file a;
    if (atomic_open(&a, path) != 0) return -1;
    fn(a.f, ctx);
    return atomic_commit(&a);
}
