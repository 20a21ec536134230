/* fixture_util.h — reading the safetensors golden files of the tests (tests/fixtures), which
 * exit the test with a message when a fixture is missing: a broken checkout, not a failure of
 * the code under test. */
#ifndef QKV_TEST_FIXTURE_UTIL_H
#define QKV_TEST_FIXTURE_UTIL_H

#include "qkv.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static inline qkv_safetensors *fix_open(const char *path) {
    qkv_safetensors *st = NULL;
    if (qkv_safetensors_open(path, &st) != QKV_OK) {
        fprintf(stderr, "cannot open %s: %s\n", path, qkv_last_error());
        exit(1);
    }
    return st;
}

/* The data of tensor `name`. */
static inline const void *fix_need(qkv_safetensors *st, const char *name) {
    const qkv_st_tensor *t = qkv_safetensors_find(st, name);
    if (!t) {
        fprintf(stderr, "fixture lacks %s\n", name);
        exit(1);
    }
    return t->data;
}

/* max |a - b| / max |b|: the error relative to the reference tensor's scale. */
static inline double fix_rel_err(const float *a, const float *b, int64_t n) {
    double worst = 0, scale = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        worst = d > worst ? d : worst;
        scale = fabs((double)b[i]) > scale ? fabs((double)b[i]) : scale;
    }
    return worst / (scale > 1e-30 ? scale : 1e-30);
}

#endif
