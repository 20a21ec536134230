/* data.h — internal pieces of tokenized datasets: helpers shared by the reader (data.c) and
 * the writer (data_prepare.c), and the two parsers, exposed so tests reach them directly.
 *
 * Shard file (docs/TRAINING.md, "Dataset format"): a 64-byte header, then n_tokens ids, each
 * bytes_per_id bytes little-endian. Header: "QKVTOKS1", u32 version (1), u32 bytes_per_id
 * (2 or 4), u64 n_tokens, u64 vocab_size, 32 zero bytes; all integers little-endian. */
#ifndef QKV_TRAIN_DATA_H
#define QKV_TRAIN_DATA_H

#include "qkv.h"

#include <stddef.h>
#include <stdint.h>

#define QKV_DATA_MAGIC "QKVTOKS1"
#define QKV_DATA_VERSION 1
#define QKV_DATA_HEADER_BYTES 64
/* ids are int32_t in the API, so a vocabulary holds at most 2^31 ids */
#define QKV_DATA_MAX_VOCAB ((int64_t)1 << 31)
#define QKV_DATA_PATH_CAP 4096

/* Shared by the reader (data.c) and the writer (data_prepare.c). */
/* IO status with "path: what: strerror(errno)". */
qkv_status qkv__data_io_fail(const char *what, const char *path);
/* "train" or "val" (file names and meta.json keys). */
const char *qkv__data_split_name(int split);
/* out[QKV_DATA_PATH_CAP] = dir/name; INVALID_ARG if it does not fit. */
qkv_status qkv__data_join(char *out, const char *dir, const char *name);

/* What meta.json says about one split. */
typedef struct qkv__data_meta {
    int64_t vocab_size;
    int64_t eot_id;
    int64_t documents, tokens; /* of the split */
    size_t n_shards;
    char **shards;   /* [n_shards] file names inside the dataset directory */
    char *tokenizer; /* "tokenizer" as written (absolute, or relative to the directory), or NULL */
    uint32_t *crc;   /* [n_shards] CRC-32C of each shard's ids, or NULL (datasets before them) */
} qkv__data_meta;

/* Parses meta.json text[0..len) (path names it in messages) and picks split. Refuses anything
 * malformed with FORMAT: a wrong format name or version, sizes out of range, shard names that
 * are not plain file names. NOMEM if an allocation fails. On failure *out is zeroed. */
qkv_status qkv__data_meta_parse(const char *text, size_t len, const char *path, qkv_split split,
                                qkv__data_meta *out);
void qkv__data_meta_free(qkv__data_meta *m);

/* Validates a whole shard image buf[0..len): header, exact size, and every id below the
 * vocabulary (vocab_size > 0: must equal the header's; 0: the header's is taken). FORMAT names
 * path and the byte offset. On success sets *n_tokens and *bytes_per_id. */
qkv_status qkv__data_shard_check(const uint8_t *buf, size_t len, int64_t vocab_size,
                                 const char *path, int64_t *n_tokens, int *bytes_per_id);

#endif
