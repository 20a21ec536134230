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

#endif
