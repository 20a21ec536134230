/* file.h — how qkv opens the files it reads (every reader goes through here).
 *
 * Only regular files are opened as files: the open is non-blocking, so a FIFO, a device, a
 * socket or a directory given where a file is expected is refused at once (QKV_ERR_IO, "not a
 * regular file"), never waited on; the descriptor is switched back to blocking afterwards.
 * Sizes: callers get the size fstat saw and check every size a file claims against it before
 * allocating. A path found inside a data file (a dataset's meta.json naming its tokenizer, an
 * adapter naming its base) is resolved with qkv__path_inside: relative to the directory of the
 * file that named it, and refused if it leaves that directory. */
#ifndef QKV_IO_FILE_H
#define QKV_IO_FILE_H

#include "qkv.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Opens path read-only (O_CLOEXEC, no controlling tty; with nofollow a symbolic link is refused,
 * QKV_ERR_FORMAT "a symbolic link (not followed)"). Missing or unreadable: QKV_ERR_IO "cannot
 * open: <reason>"; anything but a regular file: QKV_ERR_IO "not a regular file (a FIFO)"
 * (or a directory, a character device, ...). On success *fd is blocking and *size (if not NULL)
 * the file's size. */
qkv_status qkv__open_regular(const char *path, int nofollow, int *fd, uint64_t *size);

/* The same as a stdio stream ("rb"). */
qkv_status qkv__fopen_regular(const char *path, FILE **f, uint64_t *size);

/* The whole regular file into a NUL-terminated buffer (qkv__alloc; the caller qkv__free()s).
 * Files larger than max bytes are refused with QKV_ERR_FORMAT before anything is allocated. */
qkv_status qkv__read_regular(const char *path, size_t max, char **buf, size_t *len);

/* 1 if path exists and is not a regular file (a FIFO, a directory, a device), else 0. */
int qkv__exists_not_regular(const char *path);

/* A path named inside a data file whose directory is dir: an absolute name is taken as it is
 * only when allow_absolute; a relative one is joined to dir. The result must resolve (symbolic
 * links and .. followed) to a file inside dir's resolved directory, else QKV_ERR_FORMAT naming
 * `what`. *out is qkv__alloc'd (the joined path, not the resolved one). */
qkv_status qkv__path_inside(const char *dir, const char *name, int allow_absolute, const char *what,
                            char **out);

#endif
