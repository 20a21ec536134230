/* error.h — internal error reporting: set a status with a detailed, per-thread message.
 *
 * Every failing path in libqkv returns through qkv__fail(), so qkv_last_error() always
 * describes the most recent failure on this thread. */
#ifndef QKV_CORE_ERROR_H
#define QKV_CORE_ERROR_H

#include "qkv.h"

#if defined(__GNUC__)
#define QKV_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define QKV_PRINTF(a, b)
#endif

/* Records the message for this thread and returns s, so callers can write
 * `return qkv__fail(QKV_ERR_FORMAT, "tensor '%s': ...", name);`. */
qkv_status qkv__fail(qkv_status s, const char *fmt, ...) QKV_PRINTF(2, 3);

/* Propagate a failing status unchanged (its message is already recorded). */
#define QKV_TRY(expr)                                                                              \
    do {                                                                                           \
        qkv_status qkv__st = (expr);                                                               \
        if (qkv__st != QKV_OK) return qkv__st;                                                     \
    } while (0)

#endif
