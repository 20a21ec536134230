/* file.c — regular-file opening and contained paths (file.h). */
#include "io/file.h"

#include "core/alloc.h"
#include "core/error.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *kind_of(mode_t m) {
    if (S_ISDIR(m)) return "a directory";
    if (S_ISFIFO(m)) return "a FIFO";
    if (S_ISCHR(m)) return "a character device";
    if (S_ISBLK(m)) return "a block device";
    if (S_ISSOCK(m)) return "a socket";
    return "not a regular file";
}

qkv_status qkv__open_regular(const char *path, int nofollow, int *fd, uint64_t *size) {
    *fd = -1;
    if (!path || !*path) return qkv__fail(QKV_ERR_INVALID_ARG, "empty file name");
    char eb[128];
    int d = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY | (nofollow ? O_NOFOLLOW : 0));
    if (d < 0) {
        int e = errno;
        if (nofollow && e == ELOOP)
            return qkv__fail(QKV_ERR_FORMAT, "%s: a symbolic link (not followed)", path);
        if (e == ENXIO) /* a socket */
            return qkv__fail(QKV_ERR_IO, "%s: not a regular file (a socket)", path);
        return qkv__fail(QKV_ERR_IO, "%s: cannot open: %s", path, strerror_r(e, eb, sizeof eb));
    }
    struct stat sb;
    if (fstat(d, &sb) != 0) {
        int e = errno;
        close(d);
        return qkv__fail(QKV_ERR_IO, "%s: cannot stat: %s", path, strerror_r(e, eb, sizeof eb));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(d);
        return qkv__fail(QKV_ERR_IO, "%s: not a regular file (%s)", path, kind_of(sb.st_mode));
    }
    int fl = fcntl(d, F_GETFL);
    if (fl >= 0) (void)fcntl(d, F_SETFL, fl & ~O_NONBLOCK);
    *fd = d;
    if (size) *size = (uint64_t)sb.st_size;
    return QKV_OK;
}

qkv_status qkv__fopen_regular(const char *path, FILE **f, uint64_t *size) {
    *f = NULL;
    int fd;
    QKV_TRY(qkv__open_regular(path, 0, &fd, size));
    *f = fdopen(fd, "rb");
    if (!*f) {
        close(fd);
        return qkv__fail(QKV_ERR_NOMEM, "%s: cannot open a stream", path);
    }
    return QKV_OK;
}

qkv_status qkv__read_regular(const char *path, size_t max, char **buf, size_t *len) {
    *buf = NULL;
    *len = 0;
    int fd;
    uint64_t size;
    QKV_TRY(qkv__open_regular(path, 0, &fd, &size));
    if (size > max) {
        close(fd);
        return qkv__fail(QKV_ERR_FORMAT,
                         "%s: %llu bytes, more than the %zu a file of this kind may have", path,
                         (unsigned long long)size, max);
    }
    size_t n = (size_t)size, got = 0;
    char *b = qkv__alloc(n + 1);
    if (!b) {
        close(fd);
        return qkv__fail(QKV_ERR_NOMEM, "%s: %zu bytes", path, n + 1);
    }
    qkv_status s = QKV_OK;
    while (got < n) { /* a file that shrank meanwhile: what is there */
        ssize_t r = read(fd, b + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            char eb[128];
            s = qkv__fail(QKV_ERR_IO, "%s: read failed: %s", path,
                          strerror_r(errno, eb, sizeof eb));
            break;
        }
        if (r == 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (s != QKV_OK) {
        qkv__free(b);
        return s;
    }
    b[got] = '\0';
    *buf = b;
    *len = got;
    return QKV_OK;
}

int qkv__exists_not_regular(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && !S_ISREG(sb.st_mode);
}

qkv_status qkv__path_inside(const char *dir, const char *name, int allow_absolute, const char *what,
                            char **out) {
    *out = NULL;
    if (!name || !*name) return qkv__fail(QKV_ERR_FORMAT, "%s: empty file name", what);
    size_t nd = strlen(dir), nn = strlen(name);
    char *joined = qkv__alloc(nd + nn + 2);
    if (!joined) return qkv__fail(QKV_ERR_NOMEM, "%s: out of memory", what);
    if (name[0] == '/') {
        if (!allow_absolute) {
            qkv__free(joined);
            return qkv__fail(QKV_ERR_FORMAT,
                             "%s: '%s' is an absolute path; a file named inside %s must be "
                             "relative to it",
                             what, name, dir);
        }
        memcpy(joined, name, nn + 1);
        *out = joined;
        return QKV_OK;
    }
    memcpy(joined, dir, nd);
    joined[nd] = '/';
    memcpy(joined + nd + 1, name, nn + 1);
    char *rd = realpath(dir, NULL), *rf = realpath(joined, NULL);
    qkv_status s = QKV_OK;
    if (!rd || !rf) {
        char eb[128];
        s = qkv__fail(QKV_ERR_IO, "%s: %s: cannot resolve: %s", what, rd ? joined : dir,
                      strerror_r(errno, eb, sizeof eb));
    } else {
        size_t nr = strlen(rd);
        int inside = strncmp(rf, rd, nr) == 0 && (rf[nr] == '/' || (nr == 1 && rd[0] == '/'));
        if (!inside)
            s = qkv__fail(QKV_ERR_FORMAT, "%s: '%s' leads outside %s (to %s)", what, name, dir, rf);
    }
    free(rd);
    free(rf);
    if (s != QKV_OK) {
        qkv__free(joined);
        return s;
    }
    *out = joined;
    return QKV_OK;
}
