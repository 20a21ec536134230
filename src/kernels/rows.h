/* rows.h — row kernels of the active ISA spread over the runtime's threads (the dispatch-table
 * row kernels are single-threaded by contract; callers split rows, and these do it for the
 * inference paths of the models). Each row is computed by one thread, so results do not
 * depend on the thread count. */
#ifndef QKV_KERNELS_ROWS_H
#define QKV_KERNELS_ROWS_H

#include "qkv.h"

#include <stddef.h>

/* y (rows, n) = LayerNorm(x) · w + b (see dispatch.h layernorm_f32); y may be x. */
void qkv__layernorm_rows(qkv_runtime *rt, const float *x, const float *w, const float *b, float *y,
                         size_t rows, size_t n, float eps);
/* y (rows, n) = RMSNorm(x) · w; y may be x. */
void qkv__rmsnorm_rows(qkv_runtime *rt, const float *x, const float *w, float *y, size_t rows,
                       size_t n, float eps);

#endif
