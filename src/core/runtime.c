/* runtime.c — qkv_runtime: a persistent thread pool and qkv_parallel_for.
 *
 * Design: n-1 worker threads wait for jobs; the calling thread is worker 0. A waiting thread
 * (a worker between jobs, the caller waiting for the workers) first spins for up to
 * SPIN_NS, then sleeps on a condition variable. A training step issues hundreds of short
 * jobs back to back; waking a sleeping thread costs a futex call and, on a VM, an IPI to an
 * idle vCPU (tens of microseconds and the vCPU's caches cold), so the spin keeps a worker
 * ready for the next job while the caller runs the serial code in between.
 * A job splits [0, n) into at most n_threads contiguous chunks, chunk t going to thread t, so
 * the split (and therefore any per-chunk float summation) depends only on n, grain and the
 * thread count. One job runs at a time per runtime (a mutex serializes callers); a
 * parallel_for issued from inside a job runs serially on the calling thread, which keeps
 * nested use deadlock-free. A message a task raises (qkv__fail) on a worker lands in that
 * worker's thread-local slot, which the caller never reads; so every thread running a chunk
 * also offers its first failure to the pool's job_error, and after the join the caller takes
 * it into its own slot (error.h): qkv_last_error() after a failed job is the task's message,
 * whichever thread raised it. */
#include "core/runtime.h"
#include "core/alloc.h"
#include "core/error.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SPIN_NS 200000 /* 0.2 ms */

static void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static int64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Spins until *v != old or SPIN_NS pass; returns 1 if it changed. */
static int spin_until_changed(const _Atomic uint64_t *v, uint64_t old) {
    int64_t t0 = mono_ns();
    for (;;) {
        for (int i = 0; i < 64; i++) {
            if (atomic_load_explicit(v, memory_order_acquire) != old) return 1;
            cpu_relax();
        }
        if (mono_ns() - t0 > SPIN_NS) return 0;
    }
}

/* qkv__team_shared's block: this header, then the bytes (64-byte aligned, as qkv__alloc's). */
typedef struct team_block {
    struct team_block *next; /* in rt->retired */
    size_t bytes;
    char pad[QKV_ALIGN - sizeof(void *) - sizeof(size_t)];
} team_block;

struct qkv_runtime {
    int n_threads;
    pthread_t *threads;       /* [n_threads - 1] */
    pthread_mutex_t job_lock; /* serializes callers of parallel_for */
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    _Atomic uint64_t generation; /* bumped per job (under mu); workers wait for a change */
    _Atomic uint64_t pending;    /* workers still running the current job */
    _Atomic int shutdown;
    /* current job */
    qkv_range_fn fn;
    void *ctx;
    int64_t n, chunk;
    qkv__job_error job_error; /* the job's first failure (core/error.h) */
    /* the scratch block (qkv__runtime_scratch_acquire) */
    _Atomic int scratch_busy;
    void *scratch;
    size_t scratch_bytes;
    /* the teams' shared block (qkv__team_shared); blocks it replaced during a team, freed when
     * the team ends */
    team_block *_Atomic team_block;
    team_block *retired;
};

static _Thread_local int in_parallel_region;

/* the team the calling thread runs in (qkv__team_run; NULL outside or solo) */
typedef struct team team;
static _Thread_local team *cur_team;
static void team_for(team *tm, int64_t n, int64_t grain, qkv_range_fn fn, void *ctx);
static _Atomic uint64_t pool_jobs; /* qkv__pool_job_count */

static void run_chunk(qkv_runtime *rt, int tid) {
    int64_t begin = (int64_t)tid * rt->chunk;
    int64_t end = begin + rt->chunk;
    if (end > rt->n) end = rt->n;
    if (begin < end) rt->fn(rt->ctx, begin, end, tid);
}

typedef struct {
    qkv_runtime *rt;
    int tid;
} worker_arg;

static void *worker_main(void *p) {
    worker_arg a = *(worker_arg *)p;
    qkv__free(p);
    qkv_runtime *rt = a.rt;
    uint64_t seen = 0;
    in_parallel_region = 1;
    qkv__job_error_enter(&rt->job_error); /* this thread only ever runs rt's chunks */
    for (;;) {
        if (!spin_until_changed(&rt->generation, seen)) {
            pthread_mutex_lock(&rt->mu);
            while (!rt->shutdown && atomic_load(&rt->generation) == seen)
                pthread_cond_wait(&rt->wake, &rt->mu);
            pthread_mutex_unlock(&rt->mu);
        }
        if (atomic_load(&rt->shutdown)) break;
        seen = atomic_load_explicit(&rt->generation, memory_order_acquire);
        run_chunk(rt, a.tid);
        if (atomic_fetch_sub_explicit(&rt->pending, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&rt->mu);
            pthread_cond_signal(&rt->done);
            pthread_mutex_unlock(&rt->mu);
        }
    }
    return NULL;
}

int qkv__default_thread_count(void) {
    static int warned; /* the warning once per process */
    const char *env = getenv("QKV_NUM_THREADS");
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1) n = 1;
    if (n > 1024) n = 1024;
    if (env && *env) {
        char *end;
        errno = 0;
        long v = strtol(env, &end, 10);
        if (errno == 0 && end != env && *end == '\0' && v >= 1 && v <= 1024) return (int)v;
        /* an environment variable has no caller to return an error to: say it on stderr
         * rather than silently run with another thread count */
        if (!__atomic_exchange_n(&warned, 1, __ATOMIC_RELAXED))
            fprintf(stderr,
                    "qkv: warning: QKV_NUM_THREADS=%.40s is not a whole number in [1, 1024]; "
                    "ignored (using %ld, the online CPUs)\n",
                    env, n);
    }
    return (int)n;
}

qkv_status qkv_runtime_create(int n_threads, qkv_runtime **out) {
    if (!out) return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_runtime_create: out is NULL");
    *out = NULL;
    if (n_threads < 0 || n_threads > 1024)
        return qkv__fail(QKV_ERR_INVALID_ARG,
                         "qkv_runtime_create: n_threads %d is outside [0, 1024]", n_threads);
    if (n_threads == 0) n_threads = qkv__default_thread_count();
    qkv_runtime *rt = qkv__calloc(1, sizeof *rt);
    if (!rt) return qkv__fail(QKV_ERR_NOMEM, "qkv_runtime_create: out of memory");
    rt->n_threads = n_threads;
    pthread_mutex_init(&rt->job_lock, NULL);
    pthread_mutex_init(&rt->mu, NULL);
    pthread_cond_init(&rt->wake, NULL);
    pthread_cond_init(&rt->done, NULL);
    if (n_threads > 1) {
        rt->threads = qkv__calloc((size_t)n_threads - 1, sizeof *rt->threads);
        if (!rt->threads) {
            qkv_runtime_free(rt);
            return qkv__fail(QKV_ERR_NOMEM, "qkv_runtime_create: out of memory");
        }
        for (int t = 1; t < n_threads; t++) {
            worker_arg *a = qkv__alloc(sizeof *a);
            int rc = a ? 0 : -1;
            if (a) {
                a->rt = rt;
                a->tid = t;
                rc = pthread_create(&rt->threads[t - 1], NULL, worker_main, a);
                if (rc != 0) qkv__free(a);
            }
            if (rc != 0) {
                rt->n_threads = t; /* only t-1 workers exist; free joins exactly those */
                qkv_runtime_free(rt);
                return qkv__fail(a ? QKV_ERR_INTERNAL : QKV_ERR_NOMEM,
                                 "qkv_runtime_create: cannot start thread %d of %d", t, n_threads);
            }
        }
    }
    *out = rt;
    return QKV_OK;
}

void qkv_runtime_free(qkv_runtime *rt) {
    if (!rt) return;
    if (rt->threads) {
        pthread_mutex_lock(&rt->mu);
        rt->shutdown = 1;
        pthread_cond_broadcast(&rt->wake);
        pthread_mutex_unlock(&rt->mu);
        for (int t = 1; t < rt->n_threads; t++) pthread_join(rt->threads[t - 1], NULL);
        qkv__free(rt->threads);
    }
    qkv__free(rt->scratch);
    qkv__free(atomic_load(&rt->team_block));
    pthread_cond_destroy(&rt->wake);
    pthread_cond_destroy(&rt->done);
    pthread_mutex_destroy(&rt->mu);
    pthread_mutex_destroy(&rt->job_lock);
    qkv__free(rt);
}

static qkv_runtime *default_rt;
static pthread_once_t default_once = PTHREAD_ONCE_INIT;

static void default_cleanup(void) {
    qkv_runtime_free(default_rt);
    default_rt = NULL;
}

static void default_init(void) {
    if (qkv_runtime_create(0, &default_rt) != QKV_OK) {
        default_rt = NULL; /* fall back to serial execution */
        return;
    }
    atexit(default_cleanup);
}

qkv_runtime *qkv__runtime_or_default(qkv_runtime *rt) {
    if (rt) return rt;
    pthread_once(&default_once, default_init);
    return default_rt;
}

int qkv_runtime_n_threads(const qkv_runtime *rt) {
    const qkv_runtime *r = qkv__runtime_or_default((qkv_runtime *)rt);
    return r ? r->n_threads : 1;
}

void qkv_parallel_for(qkv_runtime *rt, int64_t n, int64_t grain, qkv_range_fn fn, void *ctx) {
    if (n <= 0 || !fn) return;
    if (grain < 1) grain = 1;
    if (cur_team) {
        team_for(cur_team, n, grain, fn, ctx);
        return;
    }
    rt = qkv__runtime_or_default(rt);
    int64_t max_chunks = (n + grain - 1) / grain;
    int n_threads = rt ? rt->n_threads : 1;
    if (max_chunks < n_threads) n_threads = (int)max_chunks;
    if (n_threads <= 1 || in_parallel_region) {
        /* a pool of one thread runs fn as its job: calls nested in it (qkv__each's items pass a
         * NULL runtime) stay on this thread, as in a pool job, instead of waking the default
         * runtime's threads behind the caller's back */
        const int job = !in_parallel_region && (!rt || rt->n_threads <= 1);
        if (job) in_parallel_region = 1;
        fn(ctx, 0, n, 0);
        if (job) in_parallel_region = 0;
        return;
    }
    atomic_fetch_add_explicit(&pool_jobs, 1, memory_order_relaxed);
    pthread_mutex_lock(&rt->job_lock);
    pthread_mutex_lock(&rt->mu);
    rt->fn = fn;
    rt->ctx = ctx;
    rt->n = n;
    /* chunk = ceil(n / min(pool size, ceil(n / grain))): a function of (n, grain, pool size)
     * only. Every worker wakes; those past the last chunk find an empty range. */
    int64_t chunk = (n + n_threads - 1) / n_threads;
    rt->chunk = chunk;
    atomic_store_explicit(&rt->pending, (uint64_t)(rt->n_threads - 1), memory_order_relaxed);
    atomic_fetch_add_explicit(&rt->generation, 1, memory_order_release);
    pthread_cond_broadcast(&rt->wake);
    pthread_mutex_unlock(&rt->mu);

    in_parallel_region = 1;
    qkv__job_error *outer = qkv__job_error_enter(&rt->job_error);
    run_chunk(rt, 0);
    qkv__job_error_enter(outer);
    in_parallel_region = 0;

    int64_t t0 = mono_ns();
    while (atomic_load_explicit(&rt->pending, memory_order_acquire) > 0 && mono_ns() - t0 < SPIN_NS)
        for (int i = 0; i < 64; i++) cpu_relax();
    if (atomic_load_explicit(&rt->pending, memory_order_acquire) > 0) {
        pthread_mutex_lock(&rt->mu);
        while (atomic_load_explicit(&rt->pending, memory_order_acquire) > 0)
            pthread_cond_wait(&rt->done, &rt->mu);
        pthread_mutex_unlock(&rt->mu);
    }
    (void)qkv__job_error_take(&rt->job_error); /* the workers' writes are ordered by pending */
    pthread_mutex_unlock(&rt->job_lock);
}

void *qkv__runtime_scratch_acquire(qkv_runtime *rt, size_t bytes) {
    rt = qkv__runtime_or_default(rt);
    if (!rt || atomic_exchange(&rt->scratch_busy, 1)) return NULL;
    if (rt->scratch_bytes < bytes) {
        qkv__free(rt->scratch);
        rt->scratch = qkv__alloc(bytes);
        rt->scratch_bytes = rt->scratch ? bytes : 0;
        if (!rt->scratch) {
            atomic_store(&rt->scratch_busy, 0);
            return NULL;
        }
    }
    return rt->scratch;
}

void qkv__runtime_scratch_release(qkv_runtime *rt, void *block) {
    rt = qkv__runtime_or_default(rt);
    if (rt && block && block == rt->scratch) atomic_store(&rt->scratch_busy, 0);
}

/* ---------------------------------------------------------------- items that can fail */

typedef struct {
    qkv__item_fn fn;
    void *ctx;
    _Atomic int failed;
    qkv_status status;
} items_job;

static void items_task(void *ctx, int64_t begin, int64_t end, int tid) {
    items_job *j = ctx;
    for (int64_t i = begin; i < end && !atomic_load_explicit(&j->failed, memory_order_relaxed); i++)
        qkv__task_fail(&j->failed, &j->status, j->fn(j->ctx, i, tid));
}

qkv_status qkv__parallel_items(qkv_runtime *rt, int64_t n, qkv__item_fn fn, void *ctx) {
    items_job j = {fn, ctx, 0, QKV_OK};
    qkv_parallel_for(rt, n, 1, items_task, &j);
    return j.failed ? j.status : QKV_OK;
}

typedef struct {
    qkv__each_fn fn;
    const void *ctx;
} each_ctx;

static qkv_status each_item(void *ctx, int64_t i, int tid) {
    (void)tid;
    const each_ctx *e = ctx;
    return e->fn(NULL, e->ctx, i); /* nested: runs on this thread */
}

qkv_status qkv__each(qkv_runtime *rt, int64_t n, qkv__each_fn fn, const void *ctx) {
    if (n >= 2 * qkv_runtime_n_threads(rt)) {
        each_ctx e = {fn, ctx};
        return qkv__parallel_items(rt, n, each_item, &e);
    }
    for (int64_t i = 0; i < n; i++) QKV_TRY(fn(rt, ctx, i));
    return QKV_OK;
}

/* ---------------------------------------------------------------- teams (runtime.h) */

struct team {
    qkv_runtime *rt;
    int n;
    _Atomic int count;  /* threads arrived at the current barrier */
    _Atomic int sense;  /* flips when the last one arrives */
    _Atomic int failed; /* a thread's fn failed: barriers stop waiting */
    qkv_status status;  /* its status */
    qkv__team_fn fn;
    void *ctx;
};

static _Thread_local int cur_tid;    /* the thread's index in cur_team */
static _Thread_local int team_sense; /* the sense this thread waits for next */
static _Atomic uint64_t barriers_passed;

void qkv__team_barrier(void) {
    team *t = cur_team;
    if (!t || t->n <= 1) return;
    const int s = team_sense ^= 1;
    if (atomic_fetch_add_explicit(&t->count, 1, memory_order_acq_rel) == t->n - 1) {
        atomic_store_explicit(&t->count, 0, memory_order_relaxed);
        atomic_fetch_add_explicit(&barriers_passed, 1, memory_order_relaxed);
        atomic_store_explicit(&t->sense, s, memory_order_release);
        return;
    }
    int64_t t0 = mono_ns();
    for (;;) {
        for (int i = 0; i < 64; i++) {
            if (atomic_load_explicit(&t->sense, memory_order_acquire) == s) return;
            cpu_relax();
        }
        if (atomic_load_explicit(&t->failed, memory_order_acquire)) return;
        if (mono_ns() - t0 > SPIN_NS) sched_yield();
    }
}

/* qkv_parallel_for inside a team: the pool's split (see qkv_parallel_for), this thread's
 * chunk (run solo, so calls nested in it run serially), then the barrier. */
static void team_for(team *tm, int64_t n, int64_t grain, qkv_range_fn fn, void *ctx) {
    int64_t max_chunks = (n + grain - 1) / grain;
    int nt = max_chunks < tm->n ? (int)max_chunks : tm->n;
    int64_t chunk = (n + nt - 1) / nt;
    int64_t begin = (int64_t)cur_tid * chunk, end = begin + chunk;
    if (end > n) end = n;
    if (begin < end) {
        cur_team = NULL;
        fn(ctx, begin, end, cur_tid);
        cur_team = tm;
    }
    qkv__team_barrier();
}

static void team_task(void *ctx, int64_t begin, int64_t end, int tid) {
    team *t = ctx;
    (void)tid;
    for (int64_t i = begin; i < end; i++) { /* one item per thread */
        cur_team = t;
        cur_tid = (int)i;
        team_sense = 0;
        qkv_status s = t->fn(t->ctx, (int)i, t->n);
        cur_team = NULL;
        if (s != QKV_OK) {
            qkv__task_fail(&t->failed, &t->status, s);
            atomic_store_explicit(&t->failed, 1, memory_order_release);
        }
    }
}

qkv_status qkv__team_run(qkv_runtime *rt, qkv__team_fn fn, void *ctx) {
    if (!fn) return qkv__fail(QKV_ERR_INVALID_ARG, "qkv__team_run: fn is NULL");
    rt = qkv__runtime_or_default(rt);
    const int n = rt ? rt->n_threads : 1;
    /* nested (a pool job or another team): the pool would run the items one after another */
    if (n <= 1 || in_parallel_region || cur_team) return fn(ctx, 0, 1);
    team t = {.rt = rt, .n = n, .fn = fn, .ctx = ctx};
    qkv_parallel_for(rt, n, 1, team_task, &t);
    while (rt->retired) { /* every thread has returned: none still reads them */
        team_block *b = rt->retired;
        rt->retired = b->next;
        qkv__free(b);
    }
    return atomic_load(&t.failed) ? t.status : QKV_OK;
}

int qkv__team_active(void) { return cur_team != NULL; }

void *qkv__team_shared(size_t bytes) {
    team *t = cur_team;
    if (!t) return NULL;
    qkv_runtime *rt = t->rt;
    team_block *b = atomic_load_explicit(&rt->team_block, memory_order_acquire);
    if (b && b->bytes >= bytes) return b + 1; /* every thread read the same block */
    /* too small: every thread read it (they all come here), then thread 0 replaces it. The old
     * one is retired, not freed: after a failure, barriers stop waiting and another thread may
     * still be using it. */
    qkv__team_barrier();
    if (cur_tid == 0 && !atomic_load_explicit(&t->failed, memory_order_acquire) &&
        bytes <= SIZE_MAX / 2 - sizeof *b) {
        /* at least 5/4 of the old size: a request growing a little at a time (the attention of
         * a decode step, one key more each step) replaces the block only now and then */
        size_t grown = b && b->bytes < SIZE_MAX / 4 && b->bytes + b->bytes / 4 > bytes
                           ? b->bytes + b->bytes / 4
                           : bytes;
        team_block *nb = qkv__alloc(sizeof *b + grown);
        if (nb) {
            nb->next = NULL;
            nb->bytes = grown;
            if (b) b->next = rt->retired, rt->retired = b;
            atomic_store_explicit(&rt->team_block, nb, memory_order_release);
        }
    }
    qkv__team_barrier();
    if (atomic_load_explicit(&t->failed, memory_order_acquire)) return NULL;
    b = atomic_load_explicit(&rt->team_block, memory_order_acquire);
    return b && b->bytes >= bytes ? b + 1 : NULL; /* NULL: thread 0 found no memory */
}

void *qkv__team_solo_begin(void) {
    team *t = cur_team;
    cur_team = NULL;
    return t;
}

void qkv__team_solo_end(void *token) { cur_team = token; }

uint64_t qkv__team_barrier_count(void) {
    return atomic_load_explicit(&barriers_passed, memory_order_relaxed);
}

uint64_t qkv__pool_job_count(void) {
    return atomic_load_explicit(&pool_jobs, memory_order_relaxed);
}
