/* dtype.c — element types: sizes, safetensors names, and the scalar 16-bit float conversions.
 *
 * The conversions themselves live in core/half.h (inline, shared with the kernels); this file
 * gives them their public names. The bulk qkv_*_n conversions are dispatched per instruction
 * set and live with the kernels (src/kernels/convert.c), since core sits below kernels. */
#include "core/error.h"
#include "core/half.h"
#include "qkv.h"

#include <string.h>

/* Indexed by qkv_dtype; names are the safetensors spellings. */
static const struct {
    const char *name;
    size_t size;
} dtypes[QKV_DTYPE_COUNT_] = {
    [QKV_DTYPE_F32] = {"F32", 4},         [QKV_DTYPE_F16] = {"F16", 2},
    [QKV_DTYPE_BF16] = {"BF16", 2},       [QKV_DTYPE_F64] = {"F64", 8},
    [QKV_DTYPE_I8] = {"I8", 1},           [QKV_DTYPE_U8] = {"U8", 1},
    [QKV_DTYPE_I16] = {"I16", 2},         [QKV_DTYPE_U16] = {"U16", 2},
    [QKV_DTYPE_I32] = {"I32", 4},         [QKV_DTYPE_U32] = {"U32", 4},
    [QKV_DTYPE_I64] = {"I64", 8},         [QKV_DTYPE_U64] = {"U64", 8},
    [QKV_DTYPE_BOOL] = {"BOOL", 1},       [QKV_DTYPE_F8_E4M3] = {"F8_E4M3", 1},
    [QKV_DTYPE_F8_E5M2] = {"F8_E5M2", 1},
};

static int dtype_valid(qkv_dtype t) { return (unsigned)t < (unsigned)QKV_DTYPE_COUNT_; }

size_t qkv_dtype_size(qkv_dtype t) { return dtype_valid(t) ? dtypes[t].size : 0; }

const char *qkv_dtype_name(qkv_dtype t) { return dtype_valid(t) ? dtypes[t].name : "?"; }

qkv_status qkv_dtype_parse(const char *name, qkv_dtype *out) {
    if (!name || !out) return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_dtype_parse: NULL argument");
    for (int i = 0; i < QKV_DTYPE_COUNT_; i++)
        if (strcmp(name, dtypes[i].name) == 0) {
            *out = (qkv_dtype)i;
            return QKV_OK;
        }
    return qkv__fail(QKV_ERR_INVALID_ARG, "unknown dtype '%.40s'", name);
}

float qkv_f16_to_f32(uint16_t h) { return qkv__f16_to_f32(h); }
uint16_t qkv_f32_to_f16(float f) { return qkv__f32_to_f16(f); }
float qkv_bf16_to_f32(uint16_t h) { return qkv__bf16_to_f32(h); }
uint16_t qkv_f32_to_bf16(float f) { return qkv__f32_to_bf16(f); }
