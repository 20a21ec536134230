/* error.c — status strings and the per-thread detailed message behind qkv_last_error(). */
#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char last_error[1024];

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
    return s;
}
