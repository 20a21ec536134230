/* rows.c — threaded wrappers over the single-threaded row kernels (see rows.h). */
#include "kernels/rows.h"

#include "kernels/dispatch.h"

typedef struct {
    const float *x, *w, *b;
    float *y;
    size_t n;
    float eps;
    int rms;
} norm_job;

static void norm_task(void *ctx, int64_t begin, int64_t end, int tid) {
    (void)tid;
    const norm_job *j = ctx;
    const float *x = j->x + (size_t)begin * j->n;
    float *y = j->y + (size_t)begin * j->n;
    size_t rows = (size_t)(end - begin);
    if (j->rms)
        qkv__kernels()->rmsnorm_f32(x, j->w, y, NULL, rows, j->n, j->eps);
    else
        qkv__kernels()->layernorm_f32(x, j->w, j->b, y, NULL, NULL, rows, j->n, j->eps);
}

/* ~16k elements per task: below that, waking a thread costs more than it saves. */
static int64_t grain(size_t n) { return n >= 16384 ? 1 : (int64_t)(16384 / (n ? n : 1)); }

void qkv__layernorm_rows(qkv_runtime *rt, const float *x, const float *w, const float *b, float *y,
                         size_t rows, size_t n, float eps) {
    norm_job j = {x, w, b, y, n, eps, 0};
    qkv_parallel_for(rt, (int64_t)rows, grain(n), norm_task, &j);
}

void qkv__rmsnorm_rows(qkv_runtime *rt, const float *x, const float *w, float *y, size_t rows,
                       size_t n, float eps) {
    norm_job j = {x, w, NULL, y, n, eps, 1};
    qkv_parallel_for(rt, (int64_t)rows, grain(n), norm_task, &j);
}
