/* error.h — internal error reporting: set a status with a detailed, per-thread message.
 *
 * Every failing path in libqkv returns through qkv__fail(), so qkv_last_error() always
 * describes the most recent failure on this thread. A failure raised inside a qkv_parallel_for
 * job (on a pool thread, whose message slot the caller cannot see) is also offered to the
 * job's qkv__job_error, which the runtime copies into the caller's slot after the join: a task
 * that fails on any thread leaves its message to the caller of qkv_parallel_for. */
#ifndef QKV_CORE_ERROR_H
#define QKV_CORE_ERROR_H

#include "qkv.h"

#include <stdatomic.h>

#if defined(__GNUC__)
#define QKV_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define QKV_PRINTF(a, b)
#endif

/* Bytes of one message, NUL included (longer messages are truncated). */
#define QKV__ERROR_MAX 1024

/* Records the message for this thread and returns s, so callers can write
 * `return qkv__fail(QKV_ERR_FORMAT, "tensor '%s': ...", name);`. */
qkv_status qkv__fail(qkv_status s, const char *fmt, ...) QKV_PRINTF(2, 3);

/* QKV_ERR_IO "PATH: WHAT: strerror(errno)": a file that could not be opened or read. Call it
 * right after the failing call (errno). */
qkv_status qkv__io_fail(const char *what, const char *path);

/* "PATH: WHAT: strerror(errno)" for an output that could not be written: QKV_ERR_WRITE when the
 * machine could not take it (ENOSPC, EFBIG, EDQUOT, EIO, EROFS), else QKV_ERR_IO (a bad output
 * path: no such directory, no permission). Call it right after the failing call (errno). */
qkv_status qkv__write_fail(const char *what, const char *path);

/* Propagate a failing status unchanged (its message is already recorded). */
#define QKV_TRY(expr)                                                                              \
    do {                                                                                           \
        qkv_status qkv__st = (expr);                                                               \
        if (qkv__st != QKV_OK) return qkv__st;                                                     \
    } while (0)

/* The first failure raised during one parallel job (the runtime owns one per pool).
 * The thread whose qkv__fail claims `taken` first writes status and message, once; they are
 * read only after the join, which orders them (the workers' release of the pending count). */
typedef struct qkv__job_error {
    _Atomic int taken;
    qkv_status status;
    char message[QKV__ERROR_MAX];
} qkv__job_error;

/* For a task that keeps its status in its job: stores st in *status if st is a failure and
 * the first one claimed through *failed (thread-safe: one writer; read both after the join).
 * The message needs no keeping: the runtime hands it to the caller. */
static inline void qkv__task_fail(_Atomic int *failed, qkv_status *status, qkv_status st) {
    int expected = 0;
    if (st != QKV_OK && atomic_compare_exchange_strong_explicit(
                            failed, &expected, 1, memory_order_relaxed, memory_order_relaxed))
        *status = st;
}

/* Makes qkv__fail on this thread also offer its failure to e (NULL: stop); returns the
 * previous target. The runtime sets it around every chunk of a job it runs. */
qkv__job_error *qkv__job_error_enter(qkv__job_error *e);
/* After the join, on the caller's thread: if a failure was recorded, makes its message this
 * thread's qkv_last_error() and returns its status; QKV_OK otherwise. Resets e. The success
 * path is one relaxed load. */
qkv_status qkv__job_error_take(qkv__job_error *e);

#endif
