/* st_spec.h — the safetensors round-trip spec shared by the safetensors tests.
 *
 * Mirrors SPEC, METADATA and element_bytes() of tools/safetensors_roundtrip.py exactly (same
 * names, order, shapes, values), so a file written by either side can be checked by the other.
 * Values are exact in every dtype; the F8 dtypes are raw bytes. Include after test.h. */
#ifndef QKV_TEST_ST_SPEC_H
#define QKV_TEST_ST_SPEC_H

#include "qkv.h"
#include "test.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

typedef struct st_spec_tensor {
    const char *name;
    qkv_dtype dtype;
    int ndim;
    int64_t shape[3];
} st_spec_tensor;

static const st_spec_tensor st_spec[] = {
    {"t_bool", QKV_DTYPE_BOOL, 2, {2, 3}},
    {"t_u8", QKV_DTYPE_U8, 2, {2, 3}},
    {"t_i8", QKV_DTYPE_I8, 2, {2, 3}},
    {"t_i16", QKV_DTYPE_I16, 2, {2, 3}},
    {"t_u16", QKV_DTYPE_U16, 2, {2, 3}},
    {"t_f16", QKV_DTYPE_F16, 2, {2, 3}},
    {"t_bf16", QKV_DTYPE_BF16, 2, {2, 3}},
    {"t_i32", QKV_DTYPE_I32, 2, {2, 3}},
    {"t_u32", QKV_DTYPE_U32, 2, {2, 3}},
    {"t_f32", QKV_DTYPE_F32, 2, {2, 3}},
    {"t_f64", QKV_DTYPE_F64, 2, {2, 3}},
    {"t_i64", QKV_DTYPE_I64, 2, {2, 3}},
    {"t_u64", QKV_DTYPE_U64, 2, {2, 3}},
    {"t_f8_e4m3", QKV_DTYPE_F8_E4M3, 2, {2, 3}},
    {"t_f8_e5m2", QKV_DTYPE_F8_E5M2, 2, {2, 3}},
    {"scalar", QKV_DTYPE_F32, 0, {0}},
    {"empty", QKV_DTYPE_F32, 2, {0, 3}},
    {"empty_i8", QKV_DTYPE_I8, 3, {3, 0, 2}},
    {"big.weight", QKV_DTYPE_F32, 2, {33, 17}},
    {"unicod\xc3\xa9.\xe5\x90\x8d\xe5\x89\x8d", QKV_DTYPE_F16, 1, {5}},
};
#define ST_SPEC_N (sizeof st_spec / sizeof st_spec[0])

/* In the order of the Python dict (the writer keeps the given order; the reader sorts). */
static const char *const st_spec_meta_keys[] = {"format", "producer", "unicode", "quotes", "empty"};
static const char *const st_spec_meta_values[] = {
    "pt", "qkv round trip", "h\xc3\xa9llo \xe2\x9c\x93 \xe5\x90\x8d\xe5\x89\x8d", "a\"b\\c\nd\te",
    ""};
#define ST_SPEC_N_META 5

static inline size_t st_elem_size(qkv_dtype t) {
    switch (t) {
    case QKV_DTYPE_BOOL:
    case QKV_DTYPE_U8:
    case QKV_DTYPE_I8:
    case QKV_DTYPE_F8_E4M3:
    case QKV_DTYPE_F8_E5M2: return 1;
    case QKV_DTYPE_I16:
    case QKV_DTYPE_U16:
    case QKV_DTYPE_F16:
    case QKV_DTYPE_BF16: return 2;
    case QKV_DTYPE_I32:
    case QKV_DTYPE_U32:
    case QKV_DTYPE_F32: return 4;
    case QKV_DTYPE_F64:
    case QKV_DTYPE_I64:
    case QKV_DTYPE_U64: return 8;
    default: return 0;
    }
}

static inline int64_t st_numel(const st_spec_tensor *t) {
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
    return n;
}

/* Half-precision bits of v; exact for the spec's values (multiples of 0.5 up to 6.5). */
static inline uint16_t st_half_bits(double v) {
    if (v == 0) return 0;
    uint16_t sign = v < 0 ? 0x8000 : 0;
    int e;
    double m = frexp(fabs(v), &e); /* |v| = m * 2^e, m in [0.5, 1) */
    return (uint16_t)(sign | (uint16_t)((e - 1 + 15) << 10) | (uint16_t)((m * 2 - 1) * 1024));
}

/* Little-endian bytes of element i of a tensor of dtype t into out (st_elem_size(t) bytes). */
static inline void st_spec_element(qkv_dtype t, int64_t i, uint8_t *out) {
    double fv = (double)(i % 13) - 6 + 0.5 * (double)(i % 2);
    uint64_t bits = 0;
    switch (t) {
    case QKV_DTYPE_F16: bits = st_half_bits(fv); break;
    case QKV_DTYPE_BF16:
    case QKV_DTYPE_F32: {
        float f = (float)fv;
        uint32_t u;
        memcpy(&u, &f, 4);
        bits = t == QKV_DTYPE_BF16 ? u >> 16 : u;
        break;
    }
    case QKV_DTYPE_F64: memcpy(&bits, &fv, 8); break;
    case QKV_DTYPE_I8:
    case QKV_DTYPE_I16:
    case QKV_DTYPE_I32: bits = (uint64_t)(int64_t)((i % 13) - 6); break;
    case QKV_DTYPE_I64: bits = (uint64_t)(((i % 13) - 6) * ((int64_t)1 << 40) + i); break;
    case QKV_DTYPE_U8:
    case QKV_DTYPE_U16:
    case QKV_DTYPE_U32: bits = (uint64_t)(i % 13); break;
    case QKV_DTYPE_U64: bits = (uint64_t)(i % 13) * ((uint64_t)1 << 50) + (uint64_t)i; break;
    case QKV_DTYPE_BOOL: bits = i % 3 == 0; break;
    default: bits = (uint64_t)((i * 37 + 11) & 0xFF); break; /* F8: raw bytes */
    }
    for (size_t b = 0; b < st_elem_size(t); b++) out[b] = (uint8_t)(bits >> (8 * b));
}

static inline void st_spec_fill(const st_spec_tensor *t, uint8_t *buf) {
    size_t es = st_elem_size(t->dtype);
    for (int64_t i = 0; i < st_numel(t); i++) st_spec_element(t->dtype, i, buf + (size_t)i * es);
}

/* Checks one tensor of an open file against the spec entry: dtype, shape, size, every byte. */
static inline void st_spec_check_tensor(const qkv_st_tensor *got, const st_spec_tensor *want) {
    CHECK_MSG(got != NULL, "tensor '%s' missing", want->name);
    if (!got) return;
    CHECK_MSG(strcmp(got->name, want->name) == 0, "name '%s' vs '%s'", got->name, want->name);
    CHECK_MSG(got->dtype == want->dtype, "'%s': dtype %d vs %d", want->name, (int)got->dtype,
              (int)want->dtype);
    CHECK_EQ_INT(got->ndim, want->ndim);
    for (int d = 0; d < want->ndim && d < got->ndim; d++)
        CHECK_EQ_INT(got->shape[d], want->shape[d]);
    size_t es = st_elem_size(want->dtype);
    CHECK_EQ_INT(got->nbytes, (size_t)st_numel(want) * es);
    if (got->nbytes != (size_t)st_numel(want) * es) return;
    const uint8_t *p = got->data;
    int bad = 0;
    for (int64_t i = 0; i < st_numel(want) && !bad; i++) {
        uint8_t e[8];
        st_spec_element(want->dtype, i, e);
        if (memcmp(p + (size_t)i * es, e, es) != 0) bad = 1;
    }
    CHECK_MSG(!bad, "'%s': data differs from the spec", want->name);
}

/* Checks a whole file: the spec's tensors (found by name), nothing else, and the metadata. */
static inline void st_spec_check_file(const qkv_safetensors *st) {
    CHECK_EQ_INT(qkv_safetensors_count(st), ST_SPEC_N);
    for (size_t i = 0; i < ST_SPEC_N; i++)
        st_spec_check_tensor(qkv_safetensors_find(st, st_spec[i].name), &st_spec[i]);
    CHECK_EQ_INT(qkv_safetensors_metadata_count(st), ST_SPEC_N_META);
    for (size_t i = 0; i < ST_SPEC_N_META; i++) {
        const char *v = qkv_safetensors_metadata_get(st, st_spec_meta_keys[i]);
        CHECK_MSG(v && strcmp(v, st_spec_meta_values[i]) == 0, "metadata '%s' = '%s'",
                  st_spec_meta_keys[i], v ? v : "(absent)");
    }
}

/* Writes the spec with qkv (data buffers allocated here and freed before returning). */
static inline qkv_status st_spec_write(const char *path) {
    qkv_st_write_tensor w[ST_SPEC_N];
    uint8_t *bufs[ST_SPEC_N];
    for (size_t i = 0; i < ST_SPEC_N; i++) {
        size_t n = (size_t)st_numel(&st_spec[i]) * st_elem_size(st_spec[i].dtype);
        bufs[i] = malloc(n ? n : 1);
        st_spec_fill(&st_spec[i], bufs[i]);
        w[i] = (qkv_st_write_tensor){st_spec[i].name, st_spec[i].dtype, st_spec[i].ndim,
                                     st_spec[i].shape, bufs[i]};
    }
    qkv_status s = qkv_safetensors_write(path, w, ST_SPEC_N, st_spec_meta_keys, st_spec_meta_values,
                                         ST_SPEC_N_META);
    for (size_t i = 0; i < ST_SPEC_N; i++) free(bufs[i]);
    return s;
}

/* A whole file into malloc'd memory (NULL on failure). */
static inline uint8_t *st_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
    *len = n > 0 ? (size_t)n : 0;
    if (buf && *len && fread(buf, 1, *len, f) != *len) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    return buf;
}

#endif
