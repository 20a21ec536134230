/* test_core_runtime.c — the thread pool: coverage of every index exactly once, chunking that
 * depends only on (n, grain, threads), nesting, many jobs, concurrent callers, a task's failure
 * message reaching the caller from any thread; teams (one region, the pool's split inside,
 * barriers, solo sections, a failing thread not hanging the others). Also run under ThreadSanitizer
 * by the CI (QKV_SANITIZE=thread). */
#include "core/error.h"
#include "core/runtime.h"
#include "qkv.h"
#include "test.h"

#include <pthread.h>
#include <stdatomic.h>

typedef struct {
    atomic_int *hits;
    int64_t n;
    atomic_int calls;
    int n_threads;
    int bad_tid;
} cover_ctx;

static void cover(void *p, int64_t begin, int64_t end, int tid) {
    cover_ctx *c = p;
    atomic_fetch_add(&c->calls, 1);
    if (tid < 0 || tid >= c->n_threads) c->bad_tid = 1;
    for (int64_t i = begin; i < end; i++) atomic_fetch_add(&c->hits[i], 1);
}

static void check_cover(qkv_runtime *rt, int64_t n, int64_t grain) {
    atomic_int *hits = calloc((size_t)(n ? n : 1), sizeof *hits);
    cover_ctx c = {hits, n, 0, qkv_runtime_n_threads(rt), 0};
    qkv_parallel_for(rt, n, grain, cover, &c);
    int ok = 1;
    for (int64_t i = 0; i < n; i++) ok &= atomic_load(&hits[i]) == 1;
    CHECK_MSG(ok, "n=%lld grain=%lld", (long long)n, (long long)grain);
    CHECK(!c.bad_tid);
    CHECK(atomic_load(&c.calls) <= c.n_threads);
    if (grain > 0 && n > 0) CHECK(atomic_load(&c.calls) <= (n + grain - 1) / grain);
    free(hits);
}

/* Record the chunk boundaries to show they are a function of (n, grain, threads) only. */
typedef struct {
    int64_t begin[64], end[64];
} chunks_ctx;
static void record(void *p, int64_t begin, int64_t end, int tid) {
    chunks_ctx *c = p;
    c->begin[tid] = begin;
    c->end[tid] = end;
}

typedef struct {
    qkv_runtime *rt;
    atomic_long sum;
} nest_ctx;
static void inner(void *p, int64_t begin, int64_t end, int tid) {
    (void)tid;
    nest_ctx *c = p;
    for (int64_t i = begin; i < end; i++) atomic_fetch_add(&c->sum, (long)i);
}
static void outer(void *p, int64_t begin, int64_t end, int tid) {
    (void)tid;
    nest_ctx *c = p;
    for (int64_t i = begin; i < end; i++) qkv_parallel_for(c->rt, 100, 1, inner, c);
}

/* Inside a job of a one-thread pool, a nested call with a NULL runtime (what qkv__each's items
 * make) runs on the calling thread, not on the default runtime's threads. */
typedef struct {
    pthread_t caller;
    atomic_int elsewhere;
} here_ctx;
static void here_inner(void *p, int64_t begin, int64_t end, int tid) {
    (void)begin, (void)end, (void)tid;
    here_ctx *c = p;
    if (!pthread_equal(pthread_self(), c->caller)) atomic_fetch_add(&c->elsewhere, 1);
}
static void here_outer(void *p, int64_t begin, int64_t end, int tid) {
    (void)tid;
    for (int64_t i = begin; i < end; i++) qkv_parallel_for(NULL, 64, 1, here_inner, p);
}

/* Failing tasks: the chunks holding an index in [fail_from, fail_to) raise a message naming
 * the index; which thread ran them is recorded. */
typedef struct {
    qkv_runtime *rt;
    int64_t fail_from, fail_to;
    pthread_t caller;
    atomic_int failed_off_caller; /* a failure was raised on a thread other than the caller */
    _Atomic int failed;
    qkv_status status;
    int nest; /* run the failing work in a nested qkv_parallel_for */
} fail_ctx;

static void fail_items(fail_ctx *c, int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; i++)
        if (i >= c->fail_from && i < c->fail_to) {
            if (!pthread_equal(pthread_self(), c->caller)) atomic_store(&c->failed_off_caller, 1);
            qkv__task_fail(&c->failed, &c->status,
                           qkv__fail(QKV_ERR_FORMAT, "zebra item %lld is striped", (long long)i));
        }
}
static void fail_inner(void *p, int64_t begin, int64_t end, int tid) {
    (void)tid;
    fail_items(p, begin, end);
}
static void fail_task(void *p, int64_t begin, int64_t end, int tid) {
    (void)tid;
    fail_ctx *c = p;
    if (c->nest)
        qkv_parallel_for(c->rt, end, 1, fail_inner, c); /* items [0, end), serially here */
    else
        fail_items(c, begin, end);
}

/* One job of n items failing in [from, to); returns the status the tasks recorded. */
static qkv_status run_failing(qkv_runtime *rt, int64_t n, int64_t from, int64_t to, int nest,
                              int *off_caller) {
    fail_ctx c;
    memset(&c, 0, sizeof c);
    c.rt = rt;
    c.fail_from = from;
    c.fail_to = to;
    c.caller = pthread_self();
    c.nest = nest;
    qkv_parallel_for(rt, n, 1, fail_task, &c);
    *off_caller = atomic_load(&c.failed_off_caller);
    return atomic_load(&c.failed) ? c.status : QKV_OK;
}

static void check_failure_messages(int nt) {
    qkv_runtime *rt = NULL;
    CHECK_OK(qkv_runtime_create(nt, &rt));
    int off = 0;
    for (int r = 0; r < 50; r++) {
        /* the last item fails: with 2 threads it is in the worker's chunk */
        qkv__fail(QKV_ERR_IO, "a stale message");
        CHECK_EQ_INT(run_failing(rt, 2, 1, 2, 0, &off), QKV_ERR_FORMAT);
        CHECK_MSG(strstr(qkv_last_error(), "zebra item 1 is striped") != NULL, "threads %d: '%s'",
                  nt, qkv_last_error());
        CHECK_EQ_INT(off, nt > 1);
        /* a job that succeeds leaves the caller's message alone */
        qkv__fail(QKV_ERR_IO, "an older message");
        CHECK_EQ_INT(run_failing(rt, 2, 5, 6, 0, &off), QKV_OK);
        CHECK(strcmp(qkv_last_error(), "an older message") == 0);
        /* every item fails: the message is one of them, consistent with the status */
        qkv_clear_error();
        CHECK_EQ_INT(run_failing(rt, 64, 0, 64, 0, &off), QKV_ERR_FORMAT);
        CHECK(strncmp(qkv_last_error(), "zebra item ", 11) == 0);
        /* the first item fails (on the caller's own chunk), then a worker-only failure: the
         * pool's record was reset between the jobs */
        CHECK_EQ_INT(run_failing(rt, 2, 0, 1, 0, &off), QKV_ERR_FORMAT);
        CHECK(strstr(qkv_last_error(), "zebra item 0 ") != NULL);
        CHECK_EQ_INT(run_failing(rt, 2, 1, 2, 0, &off), QKV_ERR_FORMAT);
        CHECK(strstr(qkv_last_error(), "zebra item 1 ") != NULL);
        /* raised inside a nested (serial) qkv_parallel_for on a worker */
        qkv_clear_error();
        CHECK_EQ_INT(run_failing(rt, 2, 1, 2, 1, &off), QKV_ERR_FORMAT);
        CHECK_MSG(strstr(qkv_last_error(), "zebra item 1 is striped") != NULL,
                  "threads %d, nested: '%s'", nt, qkv_last_error());
    }
    qkv_runtime_free(rt);
}

static void *caller(void *p) {
    qkv_runtime *rt = p;
    for (int r = 0; r < 200; r++) check_cover(rt, 1000 + r, 3);
    return NULL;
}

/* ---------------------------------------------------------------- teams (qkv__team_run) */

typedef struct {
    qkv_runtime *rt;
    int n_threads;      /* the pool's */
    chunks_ctx want[8]; /* the pool's chunks of each (n, grain) below */
    chunks_ctx got;
    atomic_int hits[1000];
    int stage[8]; /* stage[t]: the round thread t last finished (barrier ordering) */
    int bad, seen_n, fail_tid;
    int nested; /* in a pool job: one chunk [0, n) */
    atomic_int serial_calls;
} team_ctx;

static const int64_t TEAM_N[8] = {1, 2, 3, 7, 64, 999, 1000, 5};
static const int64_t TEAM_GRAIN[8] = {1, 1, 1, 2, 100, 10, 1, 5};

static void team_record(void *p, int64_t begin, int64_t end, int tid) {
    team_ctx *c = p;
    c->got.begin[tid] = begin;
    c->got.end[tid] = end;
    for (int64_t i = begin; i < end; i++) atomic_fetch_add(&c->hits[i], 1);
}

static void team_serial(void *p, int64_t begin, int64_t end, int tid) {
    team_ctx *c = p;
    if (tid != 0 || begin != 0 || end != 10) c->bad = 1;
    atomic_fetch_add(&c->serial_calls, 1);
}

/* Every thread: each (n, grain) split as the pool splits it, barriers ordering the stages, a
 * solo section running its loop serially. */
static qkv_status team_body(void *p, int tid, int n) {
    team_ctx *c = p;
    if (tid == 0) c->seen_n = n;
    for (int round = 0; round < 40; round++) {
        const int k = round % 8;
        qkv_parallel_for(c->rt, TEAM_N[k], TEAM_GRAIN[k], team_record, c); /* ends at a barrier */
        if (tid == 0) { /* every chunk written and only the pool's */
            for (int t = 0; t < n; t++) {
                const int64_t b = c->want[k].begin[t], e = c->want[k].end[t];
                if (!c->nested && b < e && (c->got.begin[t] != b || c->got.end[t] != e)) c->bad = 1;
            }
            for (int64_t i = 0; i < TEAM_N[k]; i++)
                if (atomic_exchange(&c->hits[i], 0) != 1) c->bad = 1;
            memset(&c->got, 0, sizeof c->got);
        }
        c->stage[tid] = round;
        qkv__team_barrier();
        for (int t = 0; t < n; t++)
            if (c->stage[t] != round) c->bad = 1;
        void *tok = qkv__team_solo_begin();
        if (qkv__team_active()) c->bad = 1;
        qkv_parallel_for(c->rt, 10, 1, team_serial, c); /* serial: tid 0, [0, 10) */
        qkv__team_solo_end(tok);
        qkv__team_barrier();
    }
    return QKV_OK;
}

/* Thread fail_tid fails at round 3; the others go on through their barriers (no shared data:
 * once a thread left, barriers no longer order anything). */
static qkv_status team_fail_body(void *p, int tid, int n) {
    const team_ctx *c = p;
    (void)n;
    for (int round = 0; round < 40; round++) {
        if (tid == c->fail_tid && round == 3)
            return qkv__fail(QKV_ERR_NOMEM, "team thread %d fails", tid);
        qkv__team_barrier();
    }
    return QKV_OK;
}

/* qkv__team_shared: every thread gets the same block, large enough (growing and shrinking
 * requests), and what each thread writes to its part is what the others read after a barrier. */
static const size_t SHARED_BYTES[6] = {100, 5000, 200, 1 << 20, 64, 3 << 20};

static qkv_status team_shared_body(void *p, int tid, int n) {
    team_ctx *c = p;
    static unsigned char *seen[8]; /* each thread's block of the round */
    for (int round = 0; round < 12; round++) {
        const size_t bytes = SHARED_BYTES[round % 6], part = bytes / (size_t)n;
        unsigned char *b = qkv__team_shared(bytes);
        if (!b) return qkv__fail(QKV_ERR_NOMEM, "team_shared: no block");
        seen[tid] = b;
        memset(b + (size_t)tid * part, tid + round, part); /* this thread's part */
        qkv__team_barrier();
        for (int t = 0; t < n; t++) {
            if (seen[t] != b) c->bad = 1;
            for (size_t i = 0; i < part; i += 997)
                if (b[(size_t)t * part + i] != (unsigned char)(t + round)) c->bad = 1;
        }
        qkv__team_barrier(); /* the reads end before the next round's call */
    }
    return QKV_OK;
}

/* Thread fail_tid fails; the others ask for ever larger blocks (no waiting for it): NULL or a
 * block large enough, never a smaller one. */
static qkv_status team_shared_fail_body(void *p, int tid, int n) {
    team_ctx *c = p;
    (void)n;
    if (tid == c->fail_tid) return qkv__fail(QKV_ERR_NOMEM, "team thread %d fails", tid);
    for (int round = 0; round < 8; round++) {
        const size_t bytes = (size_t)(16 << 20) << round % 2; /* past the earlier runs' blocks */
        unsigned char *b = qkv__team_shared(bytes);
        if (b) b[bytes - 1] = 1;
    }
    return QKV_OK;
}

static void team_nested(void *p, int64_t begin, int64_t end, int tid) {
    (void)end, (void)tid;
    team_ctx *c = p;
    if (begin == 0 && qkv__team_run(c->rt, team_body, c) != QKV_OK) c->bad = 1;
}

static void check_team(int nt) {
    qkv_runtime *rt = NULL;
    CHECK_OK(qkv_runtime_create(nt, &rt));
    team_ctx *c = calloc(1, sizeof *c);
    c->rt = rt;
    c->n_threads = nt;
    for (int k = 0; k < 8; k++) qkv_parallel_for(rt, TEAM_N[k], TEAM_GRAIN[k], record, &c->want[k]);
    const uint64_t b0 = qkv__team_barrier_count(), j0 = qkv__pool_job_count();
    CHECK_OK(qkv__team_run(rt, team_body, c));
    CHECK_MSG(!c->bad, "team of %d: a split, a barrier or a solo section went wrong", nt);
    CHECK_EQ_INT(c->seen_n, nt);
    CHECK_EQ_INT(atomic_load(&c->serial_calls), 40 * nt);
    if (nt > 1) {
        CHECK_EQ_INT(qkv__pool_job_count() - j0, 1); /* one fork/join for all of it */
        CHECK_EQ_INT(qkv__team_barrier_count() - b0, 40 * 3);
    }
    CHECK(qkv__team_shared(64) == NULL); /* outside a team (a team of one runs outside) */
    if (nt > 1) CHECK_OK(qkv__team_run(rt, team_shared_body, c));
    CHECK_MSG(!c->bad, "team of %d: qkv__team_shared gave different or overwritten blocks", nt);
    /* inside a pool job: one thread, n = 1, the loops serial */
    c->seen_n = 0;
    c->nested = 1;
    atomic_store(&c->serial_calls, 0);
    qkv_parallel_for(rt, nt, 1, team_nested, c); /* item 0 on the calling thread */
    CHECK(!c->bad && c->seen_n == 1 && atomic_load(&c->serial_calls) == 40);
    c->nested = 0;
    /* a thread that fails: the others do not wait for it; its status and message come back */
    for (int t = 0; t < nt; t++) {
        c->fail_tid = t;
        qkv_status st = qkv__team_run(rt, team_fail_body, c);
        CHECK_STATUS(st, QKV_ERR_NOMEM);
        CHECK(strstr(qkv_last_error(), "fails") != NULL);
        st = qkv__team_run(rt, team_shared_fail_body, c);
        CHECK_STATUS(st, QKV_ERR_NOMEM);
    }
    free(c);
    qkv_runtime_free(rt);
}

int main(void) {
    for (int nt = 1; nt <= 5; nt++) {
        qkv_runtime *rt = NULL;
        CHECK_OK(qkv_runtime_create(nt, &rt));
        CHECK_EQ_INT(qkv_runtime_n_threads(rt), nt);
        int64_t sizes[] = {0, 1, 2, 3, 7, 64, 1000, 100003};
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
            for (int64_t grain = 0; grain <= 64; grain = grain ? grain * 4 : 1)
                check_cover(rt, sizes[s], grain);
        /* deterministic split */
        chunks_ctx a, b;
        memset(&a, 0, sizeof a);
        memset(&b, 0, sizeof b);
        qkv_parallel_for(rt, 1001, 10, record, &a);
        qkv_parallel_for(rt, 1001, 10, record, &b);
        CHECK(memcmp(&a, &b, sizeof a) == 0);
        /* nesting runs the inner loop serially, without deadlock */
        nest_ctx nc = {rt, 0};
        qkv_parallel_for(rt, 10, 1, outer, &nc);
        CHECK_EQ_INT(atomic_load(&nc.sum), 10L * 4950);
        if (nt == 1) {
            here_ctx hc = {pthread_self(), 0};
            qkv_parallel_for(rt, 8, 1, here_outer, &hc);
            CHECK_EQ_INT(atomic_load(&hc.elsewhere), 0);
        }
        /* many small jobs in a row (wake-up/sleep races) */
        for (int r = 0; r < 2000; r++) check_cover(rt, 5, 1);
        qkv_runtime_free(rt);
    }
    /* one region, barriers between its stages */
    for (int nt = 1; nt <= 4; nt++) check_team(nt);
    /* a task's failure message reaches the caller whichever thread raised it */
    for (int nt = 1; nt <= 3; nt++) check_failure_messages(nt);
    /* two application threads sharing one runtime */
    qkv_runtime *rt = NULL;
    CHECK_OK(qkv_runtime_create(3, &rt));
    pthread_t t1, t2;
    pthread_create(&t1, NULL, caller, rt);
    pthread_create(&t2, NULL, caller, rt);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    qkv_runtime_free(rt);

    /* default runtime, QKV_NUM_THREADS, bad arguments */
    check_cover(NULL, 777, 1);
    CHECK(qkv_runtime_n_threads(NULL) >= 1);
    CHECK_STATUS(qkv_runtime_create(-1, &rt), QKV_ERR_INVALID_ARG);
    CHECK(strstr(qkv_last_error(), "n_threads") != NULL);
    CHECK_STATUS(qkv_runtime_create(1, NULL), QKV_ERR_INVALID_ARG);
    qkv_runtime_free(NULL);
    setenv("QKV_NUM_THREADS", "3", 1);
    CHECK_EQ_INT(qkv__default_thread_count(), 3);
    setenv("QKV_NUM_THREADS", "zero", 1);
    CHECK(qkv__default_thread_count() >= 1);
    CHECK_OK(qkv_runtime_create(0, &rt));
    CHECK(qkv_runtime_n_threads(rt) >= 1);
    qkv_runtime_free(rt);
    return test_finish("core_runtime");
}
