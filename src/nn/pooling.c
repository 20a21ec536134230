/* pooling.c — sentence-transformers pooling (see pooling.h): the layer library's pooling. */
#include "nn/pooling.h"

#include <math.h>

void qkv_nn_pool_forward(const float *hidden, const int64_t *lens, int64_t n_seq, int64_t C,
                         qkv_pool_mode mode, int normalize, float *out) {
    const float *h = hidden;
    for (int64_t s = 0; s < n_seq; s++) {
        float *o = out + s * C;
        int64_t T = lens[s];
        for (int64_t c = 0; c < C; c++) {
            double acc;
            if (mode == QKV_POOL_CLS) {
                acc = h[c];
            } else if (mode == QKV_POOL_MAX) {
                acc = -INFINITY;
                for (int64_t t = 0; t < T; t++)
                    if (h[t * C + c] > acc) acc = h[t * C + c];
            } else {
                acc = 0.0;
                for (int64_t t = 0; t < T; t++) acc += h[t * C + c];
                acc /= (double)T;
                if (mode == QKV_POOL_MEAN_SQRT_LEN) acc *= sqrt((double)T);
            }
            o[c] = (float)acc;
        }
        if (normalize) {
            double ss = 0.0;
            for (int64_t c = 0; c < C; c++) ss += (double)o[c] * o[c];
            double norm = sqrt(ss);
            if (norm < 1e-12) norm = 1e-12;
            for (int64_t c = 0; c < C; c++) o[c] = (float)(o[c] / norm);
        }
        h += T * C;
    }
}
