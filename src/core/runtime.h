/* runtime.h — internal runtime helpers (the pool itself is public: qkv_parallel_for). */
#ifndef QKV_CORE_RUNTIME_H
#define QKV_CORE_RUNTIME_H

#include "qkv.h"

/* rt, or the default runtime (created on first use; NULL if it could not be created, in
 * which case work runs serially). */
qkv_runtime *qkv__runtime_or_default(qkv_runtime *rt);
/* QKV_NUM_THREADS if valid, else online CPUs. */
int qkv__default_thread_count(void);

/* One block the runtime (rt, or the default one) keeps between calls for a kernel's large
 * temporary (the attention repacks): fresh memory costs page faults and zeroing on every call,
 * and on this project's VMs far more (memory given back to the host is faulted in again:
 * perf, the attention forward at 2 threads, the worker thread spent more time in clear_page
 * than in the dot micro-kernel). Returns a block of at least bytes, or NULL when another caller
 * holds it or it cannot grow (the caller then allocates its own). The block grows to the
 * largest request and is freed with the runtime; the callers bound their requests (see
 * attention/flash.h). Give it back with qkv__runtime_scratch_release. Thread-safe. */
void *qkv__runtime_scratch_acquire(qkv_runtime *rt, size_t bytes);
/* Returns the block of qkv__runtime_scratch_acquire (anything else is ignored). */
void qkv__runtime_scratch_release(qkv_runtime *rt, void *block);

/* fn(ctx, i, tid) for every i in [0, n) on rt's pool, one item per task (tid: the worker's
 * index, for per-thread scratch); after a failure no further item starts, and the first
 * failure's status is returned (its message reaches the caller through the runtime). */
typedef qkv_status (*qkv__item_fn)(void *ctx, int64_t i, int tid);
qkv_status qkv__parallel_items(qkv_runtime *rt, int64_t n, qkv__item_fn fn, void *ctx);

/* fn(rt, ctx, i) for every i in [0, n), as the per-sequence attention calls of a batch want it:
 * many items (n >= 2 × threads) run one per thread, each call serial inside (rt NULL); few run
 * one at a time, each parallel inside. Stops at the first failure and returns its status. */
typedef qkv_status (*qkv__each_fn)(qkv_runtime *rt, const void *ctx, int64_t i);
qkv_status qkv__each(qkv_runtime *rt, int64_t n, qkv__each_fn fn, const void *ctx);

/* ---------------------------------------------------------------- teams (one region, barriers)
 *
 * qkv__team_run runs fn(ctx, tid, n) once on each of the n threads of rt's pool, all at the
 * same time (one fork/join), for code that runs a whole sequence of dependent stages (a decode
 * step) where a job per stage would fork and join every time. Inside fn, on every thread:
 *   - qkv_parallel_for (and so every layer and kernel built on it) splits [0, n) exactly as the
 *     pool would (chunk t to thread t: the same chunks, the same bits), each thread runs its
 *     own chunk, then all meet at a barrier. Every thread of the team must make the same
 *     sequence of such calls with the same (n, grain). A range of one chunk runs on thread 0.
 *   - qkv__team_solo_begin / _end bracket code one thread runs alone (its qkv_parallel_for
 *     calls run serially, as nested calls do): per-thread redundant work into private buffers,
 *     or thread 0's serial stage before a qkv__team_barrier.
 * A thread whose fn fails marks the team failed; barriers then stop waiting, so the others
 * finish (their results are discarded) and the first failure is returned. With a pool of one
 * thread, or when called inside a parallel region, fn runs once on the caller with n = 1 and
 * everything inside runs as it would outside a team. */
typedef qkv_status (*qkv__team_fn)(void *ctx, int tid, int n_threads);
qkv_status qkv__team_run(qkv_runtime *rt, qkv__team_fn fn, void *ctx);
/* Waits until every thread of the caller's team arrived (no-op outside a team). Spins, then
 * yields the CPU (sched_yield) after the pool's spin time. */
void qkv__team_barrier(void);
/* 1 while the calling thread runs inside a team (not solo), else 0. */
int qkv__team_active(void);
/* Solo section: the team's split is suspended on the calling thread (returns a token for _end). */
void *qkv__team_solo_begin(void);
void qkv__team_solo_end(void *token);
/* Inside a team: a block of at least bytes that every thread of the team sees, for a stage
 * whose threads exchange data through memory of the stage's own (a split attention's partial
 * results). Every thread calls it with the same bytes, at the same point of the sequence of
 * calls; the block stays valid until the next call, which must come after a barrier that ends
 * its use (a qkv_parallel_for ends with one). It is kept by the runtime, so that a call finding
 * it large enough costs nothing; a larger one costs two barriers and thread 0's allocation.
 * Returns the same pointer on every thread, or NULL on every thread when thread 0 finds no
 * memory; NULL outside a team. Once the team has failed (barriers no longer wait), NULL or a
 * block of at least bytes: a replaced block is freed only when the team ends. */
void *qkv__team_shared(size_t bytes);
/* Barriers a team passed since the process started (all teams; for tests and benchmarks). */
uint64_t qkv__team_barrier_count(void);
/* Jobs the pools forked to their workers (each a fork and a join) since the process started. */
uint64_t qkv__pool_job_count(void);

#endif
