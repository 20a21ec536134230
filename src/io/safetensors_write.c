/* safetensors_write.c — qkv_safetensors_write: atomic, validated safetensors files.
 *
 * Inputs are checked before anything touches the disk (names, dtypes, shapes, sizes, duplicate
 * names and keys), so a failed call leaves no file behind. The header is built with jansson:
 * "__metadata__" first when there is metadata, then the tensors in the caller's order with
 * offsets following that order (the reference writer sorts by dtype and name; any order is a
 * valid file, and keeping the caller's lets checkpoints control their layout). It is padded
 * with spaces so that the data section starts at a multiple of 8, as the reference does.
 *
 * Crash safety: the file is written to "<path>.tmp.<pid>", fsynced, renamed over path, and the
 * directory is fsynced, so path holds either the old file or the complete new one. */
#include "io/safetensors.h"

#include "core/alloc.h"
#include "core/error.h"
#include "io/json.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WHERE "qkv_safetensors_write"

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* INVALID_ARG naming the first duplicate among names[0..n), NOMEM, or OK. */
static qkv_status check_unique(const char *const *names, size_t n, const char *what) {
    if (n < 2) return QKV_OK;
    const char **sorted = qkv__calloc(n, sizeof *sorted);
    if (!sorted) return qkv__fail(QKV_ERR_NOMEM, WHERE ": out of memory checking %ss", what);
    memcpy(sorted, names, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, cmp_str_ptr);
    qkv_status s = QKV_OK;
    for (size_t i = 1; i < n && s == QKV_OK; i++)
        if (strcmp(sorted[i - 1], sorted[i]) == 0)
            s = qkv__fail(QKV_ERR_INVALID_ARG, WHERE ": duplicate %s '%s'", what, sorted[i]);
    qkv__free(sorted);
    return s;
}

static qkv_status check_text(const char *what, size_t i, const char *s) {
    if (!s) return qkv__fail(QKV_ERR_INVALID_ARG, WHERE ": %s %zu is NULL", what, i);
    size_t bad;
    if (!qkv__utf8_valid(s, strlen(s), &bad))
        return qkv__fail(QKV_ERR_INVALID_ARG, WHERE ": %s %zu is not valid UTF-8 (byte %zu)", what,
                         i, bad);
    return QKV_OK;
}

/* Validates everything and fills nbytes[i]; *total = sum of nbytes. */
static qkv_status check_inputs(const qkv_st_write_tensor *tensors, size_t n_tensors,
                               const char *const *keys, const char *const *values, size_t n_meta,
                               size_t *nbytes, uint64_t *total) {
    *total = 0;
    for (size_t i = 0; i < n_tensors; i++) {
        const qkv_st_write_tensor *t = &tensors[i];
        QKV_TRY(check_text("tensor name", i, t->name));
        if (strcmp(t->name, QKV_ST_METADATA_KEY) == 0)
            return qkv__fail(QKV_ERR_INVALID_ARG,
                             WHERE ": tensor %zu: the name '__metadata__' is reserved", i);
        size_t esize = qkv__st_dtype_size(t->dtype);
        if (!esize)
            return qkv__fail(QKV_ERR_INVALID_ARG, WHERE ": tensor '%s': invalid dtype %d", t->name,
                             (int)t->dtype);
        if (t->ndim < 0 || t->ndim > QKV_MAX_DIMS)
            return qkv__fail(QKV_ERR_INVALID_ARG, WHERE ": tensor '%s': ndim %d is outside [0, %d]",
                             t->name, t->ndim, QKV_MAX_DIMS);
        if (t->ndim > 0 && !t->shape)
            return qkv__fail(QKV_ERR_INVALID_ARG, WHERE ": tensor '%s': shape is NULL", t->name);
        uint64_t numel = 1;
        int overflow = 0;
        for (int d = 0; d < t->ndim; d++) {
            if (t->shape[d] < 0)
                return qkv__fail(QKV_ERR_INVALID_ARG,
                                 WHERE ": tensor '%s': shape[%d] is %lld, expected >= 0", t->name,
                                 d, (long long)t->shape[d]);
            if (__builtin_mul_overflow(numel, (uint64_t)t->shape[d], &numel) ||
                numel > (uint64_t)INT64_MAX)
                overflow = 1;
        }
        uint64_t size;
        if (overflow || __builtin_mul_overflow(numel, (uint64_t)esize, &size) || size > SIZE_MAX ||
            __builtin_add_overflow(*total, size, total) || *total > (uint64_t)INT64_MAX)
            return qkv__fail(QKV_ERR_OVERFLOW, WHERE ": tensor '%s': byte size overflows", t->name);
        if (size > 0 && !t->data)
            return qkv__fail(QKV_ERR_INVALID_ARG, WHERE ": tensor '%s': data is NULL", t->name);
        nbytes[i] = (size_t)size;
    }
    for (size_t i = 0; i < n_meta; i++) {
        QKV_TRY(check_text("metadata key", i, keys[i]));
        QKV_TRY(check_text("metadata value", i, values[i]));
    }
    return QKV_OK;
}

/* json_object_set_new / json_array_append_new take the value even when they fail. */
static int put(json_t *obj, const char *key, json_t *v) {
    return v ? json_object_set_new(obj, key, v) : -1;
}
static int append(json_t *arr, json_t *v) { return v ? json_array_append_new(arr, v) : -1; }

static json_t *build_header(const qkv_st_write_tensor *tensors, size_t n_tensors,
                            const size_t *nbytes, const char *const *keys,
                            const char *const *values, size_t n_meta) {
    json_t *root = json_object();
    if (!root) return NULL;
    if (n_meta > 0) {
        json_t *meta = json_object();
        if (put(root, QKV_ST_METADATA_KEY, meta)) goto fail;
        for (size_t i = 0; i < n_meta; i++)
            if (put(meta, keys[i], json_string(values[i]))) goto fail;
    }
    uint64_t offset = 0;
    for (size_t i = 0; i < n_tensors; i++) {
        const qkv_st_write_tensor *t = &tensors[i];
        json_t *e = json_object(), *shape = json_array(), *offs = json_array();
        if (!e || !shape || !offs) {
            json_decref(e);
            json_decref(shape);
            json_decref(offs);
            goto fail;
        }
        if (put(root, t->name, e)) {
            json_decref(shape);
            json_decref(offs);
            goto fail;
        }
        if (put(e, "dtype", json_string(qkv__st_dtype_name(t->dtype)))) {
            json_decref(shape);
            json_decref(offs);
            goto fail;
        }
        if (put(e, "shape", shape)) {
            json_decref(offs);
            goto fail;
        }
        if (put(e, "data_offsets", offs)) goto fail;
        for (int d = 0; d < t->ndim; d++)
            if (append(shape, json_integer((json_int_t)t->shape[d]))) goto fail;
        if (append(offs, json_integer((json_int_t)offset))) goto fail;
        offset += nbytes[i];
        if (append(offs, json_integer((json_int_t)offset))) goto fail;
    }
    return root;
fail:
    json_decref(root);
    return NULL;
}

/* Serializes the header into a new buffer: 8-byte length, JSON, spaces up to a multiple of 8. */
static qkv_status encode_header(const qkv_st_write_tensor *tensors, size_t n_tensors,
                                const size_t *nbytes, const char *const *keys,
                                const char *const *values, size_t n_meta, uint8_t **out,
                                size_t *out_len) {
    qkv_status s = QKV_OK;
    *out = NULL;
    qkv__json_begin();
    json_t *root = build_header(tensors, n_tensors, nbytes, keys, values, n_meta);
    size_t json_len = root ? json_dumpb(root, NULL, 0, JSON_COMPACT) : 0;
    if (!root || json_len == 0 || qkv__json_alloc_failed()) {
        s = qkv__fail(QKV_ERR_NOMEM, WHERE ": out of memory building the header (%zu tensors)",
                      n_tensors);
    } else if (json_len > QKV_ST_MAX_HEADER - QKV_ST_PREFIX) {
        s = qkv__fail(QKV_ERR_INVALID_ARG,
                      WHERE ": the header would be %zu bytes, over the %llu-byte limit of "
                            "safetensors readers",
                      json_len, QKV_ST_MAX_HEADER);
    } else {
        size_t n = (json_len + QKV_ST_PREFIX - 1) / QKV_ST_PREFIX * QKV_ST_PREFIX;
        uint8_t *buf = qkv__alloc(QKV_ST_PREFIX + n);
        if (!buf) {
            s = qkv__fail(QKV_ERR_NOMEM, WHERE ": out of memory for a %zu-byte header", n);
        } else if (json_dumpb(root, (char *)buf + QKV_ST_PREFIX, json_len, JSON_COMPACT) !=
                       json_len ||
                   qkv__json_alloc_failed()) {
            qkv__free(buf);
            s = qkv__fail(QKV_ERR_NOMEM, WHERE ": out of memory writing the header");
        } else {
            for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)n >> (8 * i));
            memset(buf + QKV_ST_PREFIX + json_len, ' ', n - json_len);
            *out = buf;
            *out_len = QKV_ST_PREFIX + n;
        }
    }
    json_decref(root);
    qkv__json_end();
    return s;
}

static int write_all(int fd, const void *data, size_t n) {
    const uint8_t *p = data;
    while (n > 0) {
        size_t chunk = n < ((size_t)1 << 30) ? n : ((size_t)1 << 30);
        ssize_t w = write(fd, p, chunk);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static qkv_status io_fail(const char *what, const char *path) { /* every use is a write */
    return qkv__write_fail(what, path);
}

/* The directory holding path ("." or "/" when there is none to take), for the final fsync.
 * Made before anything is written, so that no allocation can fail after the rename. */
static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    size_t n = !slash ? 1 : slash == path ? 1 : (size_t)(slash - path);
    char *dir = qkv__alloc(n + 1);
    if (dir) {
        memcpy(dir, slash ? path : ".", n);
        dir[n] = '\0';
    }
    return dir;
}

/* fsync of the directory, so the rename itself is durable. Filesystems that cannot sync a
 * directory (EINVAL) are accepted. */
static qkv_status sync_dir(const char *path, const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return io_fail("written, but cannot open its directory to sync it", path);
    qkv_status s = QKV_OK;
    if (fsync(fd) != 0 && errno != EINVAL)
        s = io_fail("written, but cannot sync its directory", path);
    close(fd);
    return s;
}

static qkv_status write_file(const char *path, const char *tmp, const char *dir,
                             const uint8_t *header, size_t header_len,
                             const qkv_st_write_tensor *tensors, size_t n_tensors,
                             const size_t *nbytes) {
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) return io_fail("cannot create", tmp);
    qkv_status s = QKV_OK;
    if (write_all(fd, header, header_len) != 0) s = io_fail("write failed", tmp);
    for (size_t i = 0; i < n_tensors && s == QKV_OK; i++)
        if (nbytes[i] && write_all(fd, tensors[i].data, nbytes[i]) != 0)
            s = io_fail("write failed", tmp);
    if (s == QKV_OK && fsync(fd) != 0) s = io_fail("fsync failed", tmp);
    if (close(fd) != 0 && s == QKV_OK) s = io_fail("close failed", tmp);
    if (s == QKV_OK && rename(tmp, path) != 0) s = io_fail("cannot rename the temporary file", tmp);
    if (s != QKV_OK) {
        unlink(tmp);
        return s;
    }
    return sync_dir(path, dir);
}

qkv_status qkv_safetensors_write(const char *path, const qkv_st_write_tensor *tensors,
                                 size_t n_tensors, const char *const *meta_keys,
                                 const char *const *meta_values, size_t n_meta) {
    if (!path || !*path) return qkv__fail(QKV_ERR_INVALID_ARG, WHERE ": path is NULL or empty");
    if (n_tensors && !tensors) return qkv__fail(QKV_ERR_INVALID_ARG, WHERE ": tensors is NULL");
    if (n_meta && (!meta_keys || !meta_values))
        return qkv__fail(QKV_ERR_INVALID_ARG, WHERE ": metadata keys or values are NULL");

    qkv_status s;
    size_t *nbytes = qkv__calloc(n_tensors, sizeof *nbytes);
    const char **names = qkv__calloc(n_tensors, sizeof *names);
    uint8_t *header = NULL;
    char *tmp = NULL, *dir = NULL;
    if (!nbytes || !names) {
        s = qkv__fail(QKV_ERR_NOMEM, WHERE ": out of memory (%zu tensors)", n_tensors);
        goto done;
    }
    uint64_t total;
    s = check_inputs(tensors, n_tensors, meta_keys, meta_values, n_meta, nbytes, &total);
    if (s != QKV_OK) goto done;
    for (size_t i = 0; i < n_tensors; i++) names[i] = tensors[i].name;
    s = check_unique(names, n_tensors, "tensor name");
    if (s == QKV_OK) s = check_unique(meta_keys, n_meta, "metadata key");
    if (s != QKV_OK) goto done;
    size_t header_len = 0;
    s = encode_header(tensors, n_tensors, nbytes, meta_keys, meta_values, n_meta, &header,
                      &header_len);
    if (s != QKV_OK) goto done;
    size_t tmp_cap = strlen(path) + 32;
    tmp = qkv__alloc(tmp_cap);
    dir = dir_of(path);
    if (!tmp || !dir) {
        s = qkv__fail(QKV_ERR_NOMEM, WHERE ": out of memory");
        goto done;
    }
    snprintf(tmp, tmp_cap, "%s.tmp.%ld", path, (long)getpid());
    s = write_file(path, tmp, dir, header, header_len, tensors, n_tensors, nbytes);
done:
    qkv__free(dir);
    qkv__free(tmp);
    qkv__free(header);
    qkv__free(names);
    qkv__free(nbytes);
    return s;
}
