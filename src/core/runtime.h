/* runtime.h — internal runtime helpers (the pool itself is public: qkv_parallel_for). */
#ifndef QKV_CORE_RUNTIME_H
#define QKV_CORE_RUNTIME_H

#include "qkv.h"

/* rt, or the default runtime (created on first use; NULL if it could not be created, in
 * which case work runs serially). */
qkv_runtime *qkv__runtime_or_default(qkv_runtime *rt);
/* QKV_NUM_THREADS if valid, else online CPUs. */
int qkv__default_thread_count(void);

#endif
