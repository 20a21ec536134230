/* error.c — status strings and the per-thread detailed message behind qkv_last_error(), and
 * the hand-over of a pool thread's message to the caller of its job (error.h). */
#include "core/error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char last_error[QKV__ERROR_MAX];
/* The job this thread runs a chunk of (set by the runtime), or NULL. */
static _Thread_local qkv__job_error *current_job;

const char *qkv_strerror(qkv_status s) {
    switch (s) {
    case QKV_OK: return "ok";
    case QKV_ERR_INVALID_ARG: return "invalid argument";
    case QKV_ERR_NOMEM: return "out of memory";
    case QKV_ERR_IO: return "input/output error";
    case QKV_ERR_FORMAT: return "malformed file";
    case QKV_ERR_UNSUPPORTED: return "unsupported";
    case QKV_ERR_NOT_FOUND: return "not found";
    case QKV_ERR_OVERFLOW: return "size overflow";
    case QKV_ERR_INTERNAL: return "internal error";
    case QKV_ERR_INTERRUPTED: return "interrupted";
    case QKV_ERR_NOT_FINITE: return "not finite";
    case QKV_ERR_WRITE: return "cannot write the output";
    case QKV_ERR_PEER: return "another process of the run failed";
    }
    return "unknown status";
}

const char *qkv_last_error(void) { return last_error; }

void qkv_clear_error(void) { last_error[0] = '\0'; }

qkv_status qkv__fail(qkv_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    qkv__job_error *e = current_job;
    if (e) {
        int expected = 0;
        if (atomic_compare_exchange_strong_explicit(&e->taken, &expected, 1, memory_order_relaxed,
                                                    memory_order_relaxed)) {
            e->status = s;
            memcpy(e->message, last_error, sizeof e->message);
        }
    }
    return s;
}

qkv__job_error *qkv__job_error_enter(qkv__job_error *e) {
    qkv__job_error *prev = current_job;
    current_job = e;
    return prev;
}

qkv_status qkv__job_error_take(qkv__job_error *e) {
    if (!atomic_load_explicit(&e->taken, memory_order_relaxed)) return QKV_OK;
    memcpy(last_error, e->message, sizeof last_error);
    atomic_store_explicit(&e->taken, 0, memory_order_relaxed);
    return e->status;
}

qkv_status qkv__write_fail(const char *what, const char *path) {
    int e = errno;
    char ebuf[128];
    /* the machine could not take the output (a failure); anything else (no such directory, no
     * permission, a directory in the way) is a bad output path */
    int full = e == ENOSPC || e == EFBIG || e == EDQUOT || e == EIO || e == EROFS;
    return qkv__fail(full ? QKV_ERR_WRITE : QKV_ERR_IO, "%s: %s: %s", path, what,
                     strerror_r(e, ebuf, sizeof ebuf));
}

qkv_status qkv__io_fail(const char *what, const char *path) {
    int e = errno;
    char ebuf[128];
    return qkv__fail(QKV_ERR_IO, "%s: %s: %s", path, what, strerror_r(e, ebuf, sizeof ebuf));
}
