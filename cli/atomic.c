/* atomic.c — whole-or-nothing output files (see atomic.h). */
#include "atomic.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

/* The kind of an existing file's first bytes (head[0..n), n <= 4096; whole is 1 when that is
 * the whole file, size its size). */
static out_kind kind_of(const unsigned char *head, size_t n, uint64_t size, const char **what) {
    if (n >= 6 && memcmp(head, "\x93NUMPY", 6) == 0) return *what = "a NumPy array", OUT_NPY;
    if (n >= 8 && memcmp(head, "\x89PNG\r\n\x1a\n", 8) == 0)
        return *what = "a PNG picture", OUT_PNG;
    if (n >= 9) {
        uint64_t h = 0;
        for (int i = 7; i >= 0; i--) h = h << 8 | head[i];
        if (h >= 2 && h <= size - 8 && head[8] == '{')
            return *what = "a safetensors file", OUT_SAFETENSORS;
    }
    if (memchr(head, 0, n)) return *what = "a binary file", (out_kind)-1;
    size_t i = 0;
    while (i < n && (head[i] == ' ' || head[i] == '\t' || head[i] == '\n' || head[i] == '\r')) i++;
    if (n - i >= 4 && (memcmp(head + i, "<svg", 4) == 0 || memcmp(head + i, "<?xm", 4) == 0))
        return *what = "an SVG/XML document", OUT_SVG;
    if (i == n || head[i] == '{' || head[i] == '[') return *what = "JSON", OUT_JSONL;
    return *what = "a text file", OUT_TEXT;
}

int cli_check_output(const char *cmd, const char *opt, const char *path, out_kind kind) {
    struct stat sb;
    if (stat(path, &sb) != 0) return 0;                   /* a new file */
    if (S_ISREG(sb.st_mode) && sb.st_size == 0) return 0; /* nothing in it to lose */
    const char *what = NULL;
    if (S_ISDIR(sb.st_mode))
        what = "a directory";
    else if (!S_ISREG(sb.st_mode))
        what = S_ISFIFO(sb.st_mode) ? "a FIFO" : "a special file";
    if (!what) {
        unsigned char head[4096];
        size_t n = 0;
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
        if (fd >= 0) {
            ssize_t r = read(fd, head, sizeof head);
            n = r > 0 ? (size_t)r : 0;
            close(fd);
        }
        out_kind k = kind_of(head, n, (uint64_t)sb.st_size, &what);
        if (k == kind || (kind == OUT_TEXT && k == OUT_JSONL)) return 0;
    }
    fprintf(stderr,
            "qkv %s: %s %s: exists and is %s; not replaced (remove it or choose another "
            "name)\n",
            cmd, opt, path, what);
    return 2;
}
