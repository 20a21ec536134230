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

#endif
