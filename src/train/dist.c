/* dist.c — qkv_dist: data-parallel training over MPI (Open MPI), or its refusal in a build
 * without MPI. The training loop (loop.c) decides what is reduced and in which order; this
 * file only moves bytes and watches the clock.
 *
 * Why non-blocking calls polled against a deadline rather than the blocking collectives: a
 * blocking MPI_Allreduce whose peer died may wait forever. Each collective is started with
 * its MPI_I* form and polled with MPI_Test (sleeping 100 µs between polls, so a waiting rank
 * leaves the CPU to a computing one) until it completes, returns an error (the communicator
 * has MPI_ERRORS_RETURN) or the timeout passes: the watchdog. */
#include "train/dist.h"

#include "core/alloc.h"
#include "core/error.h"

#include <stdlib.h>
#include <string.h>

#if QKV_WITH_MPI

#include <mpi.h>
#include <time.h>

struct qkv_dist {
    MPI_Comm comm;
    int rank, size;
    double timeout_s;
    int own_init;      /* 1: qkv_dist_init called MPI_Init_thread, qkv_dist_finalize ends it */
    MPI_Request *pend; /* started by qkv__dist_isum_f32, not yet waited for */
    int n_pend, cap_pend;
};

int qkv_dist_available(void) { return 1; }

qkv_status qkv_dist_init(int *argc, char ***argv, double timeout_s, qkv_dist **out) {
    if (!out) return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_dist_init: NULL out");
    *out = NULL;
    if (!(timeout_s > 0))
        return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_dist_init: timeout must be > 0");
    qkv_dist *d = qkv__calloc(1, sizeof *d);
    if (!d) return qkv__fail(QKV_ERR_NOMEM, "qkv_dist_init: out of memory");
    int inited = 0, provided = 0;
    MPI_Initialized(&inited);
    if (!inited) {
        if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
            qkv__free(d);
            return qkv__fail(QKV_ERR_PEER, "MPI_Init_thread failed");
        }
        d->own_init = 1;
    }
    if (MPI_Comm_dup(MPI_COMM_WORLD, &d->comm) != MPI_SUCCESS) {
        qkv__free(d);
        return qkv__fail(QKV_ERR_PEER, "MPI_Comm_dup failed");
    }
    MPI_Comm_set_errhandler(d->comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(d->comm, &d->rank);
    MPI_Comm_size(d->comm, &d->size);
    d->timeout_s = timeout_s;
    *out = d;
    return QKV_OK;
}

int qkv_dist_rank(const qkv_dist *d) { return d ? d->rank : 0; }
int qkv_dist_size(const qkv_dist *d) { return d ? d->size : 1; }

void qkv_dist_finalize(qkv_dist *d) {
    if (!d) return;
    qkv__free(d->pend);
    MPI_Comm_free(&d->comm);
    if (d->own_init) MPI_Finalize();
    qkv__free(d);
}

void qkv_dist_abort(qkv_dist *d, int code) {
    if (d) MPI_Abort(d->comm, code);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static qkv_status mpi_fail(const qkv_dist *d, int rc, const char *what) {
    char msg[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    return qkv__fail(QKV_ERR_PEER,
                     "rank %d of %d: %s failed (%s): another rank has died or cannot be reached",
                     d->rank, d->size, what, msg);
}

/* The watchdog: waits for req until it completes, fails or the timeout passes. */
static qkv_status wait(qkv_dist *d, MPI_Request *req, int rc, const char *what) {
    if (rc != MPI_SUCCESS) return mpi_fail(d, rc, what);
    const double t0 = now_s();
    for (long polls = 0;; polls++) {
        int done = 0;
        rc = MPI_Test(req, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) return mpi_fail(d, rc, what);
        if (done) return QKV_OK;
        if (polls > 1000) { /* a fast collective never sleeps */
            if (now_s() - t0 > d->timeout_s)
                return qkv__fail(QKV_ERR_PEER,
                                 "rank %d of %d: no answer from the other ranks for %g s in %s: "
                                 "a rank has died or hangs (the timeout is --mpi-timeout)",
                                 d->rank, d->size, d->timeout_s, what);
            struct timespec ts = {0, 100000};
            nanosleep(&ts, NULL);
        }
    }
}

qkv_status qkv__dist_isum_f32(qkv_dist *d, float *buf, int64_t n, int64_t bucket,
                              const char *what) {
    for (int64_t i = 0; i < n; i += bucket) {
        if (d->n_pend == d->cap_pend) {
            int cap = d->cap_pend ? 2 * d->cap_pend : 64;
            MPI_Request *grown = qkv__alloc((size_t)cap * sizeof *grown);
            if (!grown) return qkv__fail(QKV_ERR_NOMEM, "%s: out of memory", what);
            if (d->n_pend) memcpy(grown, d->pend, (size_t)d->n_pend * sizeof *grown);
            qkv__free(d->pend);
            d->pend = grown, d->cap_pend = cap;
        }
        const int c = (int)(n - i < bucket ? n - i : bucket);
        int rc = MPI_Iallreduce(MPI_IN_PLACE, buf + i, c, MPI_FLOAT, MPI_SUM, d->comm,
                                &d->pend[d->n_pend]);
        if (rc != MPI_SUCCESS) return mpi_fail(d, rc, what);
        d->n_pend++;
    }
    return QKV_OK;
}

void qkv__dist_progress(qkv_dist *d) {
    int done;
    if (d->n_pend) MPI_Testall(d->n_pend, d->pend, &done, MPI_STATUSES_IGNORE);
}

qkv_status qkv__dist_wait_all(qkv_dist *d, const char *what) {
    qkv_status s = QKV_OK;
    for (int i = 0; i < d->n_pend && s == QKV_OK; i++) s = wait(d, &d->pend[i], MPI_SUCCESS, what);
    d->n_pend = 0;
    return s;
}

qkv_status qkv__dist_sum_f64(qkv_dist *d, double *buf, int64_t n, const char *what) {
    MPI_Request r;
    int rc = MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, MPI_DOUBLE, MPI_SUM, d->comm, &r);
    return wait(d, &r, rc, what);
}

qkv_status qkv__dist_max_int(qkv_dist *d, int *v, const char *what) {
    MPI_Request r;
    int rc = MPI_Iallreduce(MPI_IN_PLACE, v, 1, MPI_INT, MPI_MAX, d->comm, &r);
    return wait(d, &r, rc, what);
}

qkv_status qkv__dist_gather_f32(qkv_dist *d, const float *send, float *recv, int64_t n,
                                const char *what) {
    MPI_Request r;
    int rc = MPI_Igather(send, (int)n, MPI_FLOAT, recv, (int)n, MPI_FLOAT, 0, d->comm, &r);
    return wait(d, &r, rc, what);
}

qkv_status qkv__dist_bcast_f32(qkv_dist *d, float *buf, int64_t n, int64_t bucket,
                               const char *what) {
    for (int64_t i = 0; i < n; i += bucket) {
        const int c = (int)(n - i < bucket ? n - i : bucket);
        MPI_Request r;
        int rc = MPI_Ibcast(buf + i, c, MPI_FLOAT, 0, d->comm, &r);
        QKV_TRY(wait(d, &r, rc, what));
    }
    return QKV_OK;
}

qkv_status qkv__dist_compare(qkv_dist *d, const uint64_t *h, int n, int *first_bad, int *word) {
    *first_bad = -1, *word = 0;
    uint64_t *all = qkv__alloc((size_t)d->size * (size_t)n * sizeof *all);
    if (!all) return qkv__fail(QKV_ERR_NOMEM, "comparing the ranks' configurations: out of memory");
    MPI_Request r;
    int rc = MPI_Iallgather(h, n, MPI_UINT64_T, all, n, MPI_UINT64_T, d->comm, &r);
    qkv_status s = wait(d, &r, rc, "comparing the ranks' configurations");
    for (int k = 1; s == QKV_OK && k < d->size && *first_bad < 0; k++)
        for (int i = 0; i < n; i++)
            if (all[(size_t)k * (size_t)n + (size_t)i] != all[i]) {
                *first_bad = k, *word = i;
                break;
            }
    qkv__free(all);
    return s;
}

#else /* built without MPI: qkv_dist cannot be created, so the loop never calls the rest */

struct qkv_dist {
    int unused;
};

int qkv_dist_available(void) { return 0; }

qkv_status qkv_dist_init(int *argc, char ***argv, double timeout_s, qkv_dist **out) {
    (void)argc, (void)argv, (void)timeout_s;
    if (out) *out = NULL;
    return qkv__fail(QKV_ERR_UNSUPPORTED,
                     "this qkv was built without MPI (configure with -DQKV_WITH_MPI=ON)");
}

int qkv_dist_rank(const qkv_dist *d) { return (void)d, 0; }
int qkv_dist_size(const qkv_dist *d) { return (void)d, 1; }
void qkv_dist_finalize(qkv_dist *d) { (void)d; }
void qkv_dist_abort(qkv_dist *d, int code) { (void)d, (void)code; }

#define NO_MPI return qkv__fail(QKV_ERR_UNSUPPORTED, "built without MPI")
qkv_status qkv__dist_isum_f32(qkv_dist *d, float *b, int64_t n, int64_t k, const char *w) {
    (void)d, (void)b, (void)n, (void)k, (void)w;
    NO_MPI;
}
void qkv__dist_progress(qkv_dist *d) { (void)d; }
qkv_status qkv__dist_wait_all(qkv_dist *d, const char *w) {
    (void)d, (void)w;
    NO_MPI;
}
qkv_status qkv__dist_sum_f64(qkv_dist *d, double *b, int64_t n, const char *w) {
    (void)d, (void)b, (void)n, (void)w;
    NO_MPI;
}
qkv_status qkv__dist_max_int(qkv_dist *d, int *v, const char *w) {
    (void)d, (void)v, (void)w;
    NO_MPI;
}
qkv_status qkv__dist_gather_f32(qkv_dist *d, const float *s, float *r, int64_t n, const char *w) {
    (void)d, (void)s, (void)r, (void)n, (void)w;
    NO_MPI;
}
qkv_status qkv__dist_bcast_f32(qkv_dist *d, float *b, int64_t n, int64_t k, const char *w) {
    (void)d, (void)b, (void)n, (void)k, (void)w;
    NO_MPI;
}
qkv_status qkv__dist_compare(qkv_dist *d, const uint64_t *h, int n, int *bad, int *word) {
    (void)d, (void)h, (void)n, (void)bad, (void)word;
    NO_MPI;
}

#endif
