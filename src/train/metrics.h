/* metrics.h — internals of the classification metrics (metrics.c; the API is in qkv.h).
 *
 * scikit-learn averages with numpy, whose float sums are pairwise; a report is only
 * byte-identical to sklearn's when a value near a rounding tie has the same last bit, so the
 * averages here sum in numpy's order. */
#ifndef QKV_TRAIN_METRICS_H
#define QKV_TRAIN_METRICS_H

#include <stddef.h>
#include <stdint.h>

/* np.add.reduce of a contiguous float64 array: numpy's pairwise_sum (blocks of at most 128
 * summed by 8 interleaved accumulators, larger arrays split in two halves cut at a multiple
 * of 8), starting from 0. Bit-identical to np.sum(a) for a 1-D contiguous array. */
double qkv__np_sum(const double *a, int64_t n);

/* The number of code points of the valid UTF-8 string s: Python's len() of it. */
int64_t qkv__utf8_codepoints(const char *s);

#endif
