/* safetensors.h — what the reader and writer of the safetensors format share.
 *
 * Layout: 8 bytes N (little-endian u64), N bytes of UTF-8 JSON header, then the data section.
 * The header maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets
 * relative to the data section) and may hold "__metadata__": {string: string}. */
#ifndef QKV_IO_SAFETENSORS_H
#define QKV_IO_SAFETENSORS_H

#include "qkv.h"

#include <stddef.h>

/* The header-length cap of the reference implementation (Hugging Face safetensors). */
#define QKV_ST_MAX_HEADER 100000000ull
/* The header length prefix; writers pad the header so that the data section starts at a
 * multiple of this, like the reference does. */
#define QKV_ST_PREFIX 8
#define QKV_ST_METADATA_KEY "__metadata__"

/* The format's own dtype spellings, matched exactly (case-sensitive): "F32", "BF16", ...
 * Kept here rather than relying on qkv_dtype_parse so that the file format stays strict
 * whatever aliases the public parser may accept. */
int qkv__st_dtype_parse(const char *name, qkv_dtype *out); /* 1 if known */
const char *qkv__st_dtype_name(qkv_dtype t);               /* NULL if invalid */
size_t qkv__st_dtype_size(qkv_dtype t);                    /* 0 if invalid */
/* "BOOL, U8, ..." for messages. */
const char *qkv__st_dtype_list(void);

/* Gives the pages of [data, data + nbytes) in the file mapping of st back to the kernel
 * (madvise MADV_DONTNEED on the whole pages inside): for a model that copied a tensor (packed
 * GEMM weights), so that the mapped original stops counting in its RSS. The data stays
 * readable (the mapping is private, read-only and never written, so a later read faults the
 * same bytes back in from the file). No-op for qkv_safetensors_open_memory handles, ranges
 * outside the mapping, or when madvise fails. */
void qkv__safetensors_drop_pages(const qkv_safetensors *st, const void *data, size_t nbytes);

#endif
