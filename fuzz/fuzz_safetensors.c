/* fuzz_safetensors.c — libFuzzer target for the safetensors reader.
 *
 * Any input either is refused with a status and a message, or opens into a view whose every
 * promise holds: tensors tile the data section in order, every byte of every tensor lies in
 * the input (each is read, so ASan sees any escape), find and metadata_get agree with the
 * listings. A broken promise aborts, which libFuzzer reports as a crash. */
#include "fuzz_require.h"
#include "qkv.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile unsigned sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    qkv_safetensors *st = NULL;
    qkv_status s = qkv_safetensors_open_memory(data, size, &st);
    if (s != QKV_OK) {
        REQUIRE(st == NULL);
        REQUIRE(s == QKV_ERR_FORMAT || s == QKV_ERR_NOMEM || s == QKV_ERR_OVERFLOW);
        REQUIRE(qkv_last_error()[0] != '\0');
        return 0;
    }
    size_t n = qkv_safetensors_count(st);
    uint64_t next = 0;
    unsigned sum = 0;
    const uint8_t *end = data + size;
    for (size_t i = 0; i < n; i++) {
        const qkv_st_tensor *t = qkv_safetensors_tensor(st, i);
        REQUIRE(t != NULL && t->name != NULL);
        REQUIRE(t->ndim >= 0 && t->ndim <= QKV_MAX_DIMS);
        REQUIRE(t->offset == next);
        next = t->offset + t->nbytes;
        uint64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            REQUIRE(t->shape[d] >= 0);
            numel *= (uint64_t)t->shape[d];
        }
        REQUIRE(numel * qkv_dtype_size(t->dtype) == t->nbytes);
        const uint8_t *p = t->data;
        REQUIRE(p >= data && p <= end && t->nbytes <= (size_t)(end - p));
        for (size_t b = 0; b < t->nbytes; b++) sum += p[b];
        REQUIRE(qkv_safetensors_find(st, t->name) == t);
    }
    REQUIRE(qkv_safetensors_tensor(st, n) == NULL);
    for (size_t i = 0; i < qkv_safetensors_metadata_count(st); i++) {
        const char *k, *v;
        qkv_safetensors_metadata_at(st, i, &k, &v);
        REQUIRE(k && v && qkv_safetensors_metadata_get(st, k) == v);
        sum += (unsigned)strlen(v);
    }
    qkv_safetensors_close(st);
    sink = sum; /* keeps the reads from being optimized away */
    return 0;
}
