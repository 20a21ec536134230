/* pooling.h — sentence-transformers pooling of token states into one vector per sequence:
 * mean over the tokens (pooling_mode_mean_tokens), the first token (cls), the element-wise max,
 * or mean · sqrt(len) (mean_sqrt_len_tokens); optionally L2-normalized (the Normalize module).
 * A layer of the library with a forward only (sums in double, so it is its own reference);
 * its backward comes with the first model that trains through it. */
#ifndef QKV_NN_POOLING_H
#define QKV_NN_POOLING_H

#include "qkv.h"

#include <stdint.h>

typedef enum qkv_pool_mode {
    QKV_POOL_MEAN = 0,
    QKV_POOL_CLS = 1,
    QKV_POOL_MAX = 2,
    QKV_POOL_MEAN_SQRT_LEN = 3,
} qkv_pool_mode;

/* hidden [N, C] packed over n_seq sequences of lens[s] tokens -> out [n_seq, C]. Sums in
 * double. normalize: divide each row by max(‖row‖₂, 1e-12) as torch.nn.functional.normalize. */
void qkv_nn_pool_forward(const float *hidden, const int64_t *lens, int64_t n_seq, int64_t C,
                         qkv_pool_mode mode, int normalize, float *out);

#endif
