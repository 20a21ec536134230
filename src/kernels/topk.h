/* topk.h — the insertion step of a running top-k selection, shared by the ref and SIMD
 * log_softmax_topk kernels (and their callers' merges) so every ISA selects identically. */
#ifndef QKV_KERNELS_TOPK_H
#define QKV_KERNELS_TOPK_H

#include <stddef.h>
#include <stdint.h>

/* val, idx [k] hold the *have best so far, descending; offers (y, i), i larger than every index
 * offered before: a tie keeps the earlier index first, a NaN y only fills free places (after
 * the others) and never displaces anything. */
static inline void qkv__topk_offer(float y, int64_t i, size_t k, size_t *have, float *val,
                                   int64_t *idx) {
    if (*have == k && !(y > val[k - 1])) return;
    size_t j = *have < k ? (*have)++ : k - 1;
    while (j > 0 && y > val[j - 1]) {
        val[j] = val[j - 1];
        idx[j] = idx[j - 1];
        j--;
    }
    val[j] = y;
    idx[j] = i;
}

#endif
