/* test_core_runtime.c — the thread pool: coverage of every index exactly once, chunking that
 * depends only on (n, grain, threads), nesting, many jobs, concurrent callers. Also run under
 * ThreadSanitizer by the CI (QKV_SANITIZE=thread). */
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

static void *caller(void *p) {
    qkv_runtime *rt = p;
    for (int r = 0; r < 200; r++) check_cover(rt, 1000 + r, 3);
    return NULL;
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
        /* many small jobs in a row (wake-up/sleep races) */
        for (int r = 0; r < 2000; r++) check_cover(rt, 5, 1);
        qkv_runtime_free(rt);
    }
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
