/* data.h — internal pieces of tokenized datasets: helpers shared by the reader (data.c) and
 * the writer (data_prepare.c), and the two parsers, exposed so tests reach them directly.
 *
 * Shard file (docs/TRAINING.md, "Dataset format"): a 64-byte header, then n_tokens ids, each
 * bytes_per_id bytes little-endian. Header: "QKVTOKS1", u32 version (1), u32 bytes_per_id
 * (2 or 4), u64 n_tokens, u64 vocab_size, 32 zero bytes; all integers little-endian. */
#ifndef QKV_TRAIN_DATA_H
#define QKV_TRAIN_DATA_H

#include "qkv.h"

#include <jansson.h>
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
    /* "kind": "parallel" (sentence pairs): the fields above are the source side's; the split's
     * "target" object gives the target side's stream, top-level target_* its vocabulary */
    int parallel;
    int64_t tgt_vocab_size, tgt_eot_id;
    char *tgt_tokenizer; /* "target_tokenizer" as written, or NULL */
    int64_t tgt_documents, tgt_tokens;
    size_t tgt_n_shards;
    char **tgt_shards;
    uint32_t *tgt_crc;
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

/* Uniform integer in [0, range) as a pure function of (seed, stream, element): the draw of
 * qkv_dataset_sample, shared with the sentence-pair sampler (s2s_batch.c). range > 0. */
uint64_t qkv__data_uniform_below(uint64_t seed, uint64_t stream, uint64_t element, uint64_t range);

/* The visiting order of epoch `epoch` over n examples: a permutation of [0, n) that is a pure
 * function of (seed, epoch). With batch > 0 it is grouped by length as transformers'
 * group_by_length: the shuffled examples are cut into runs of 50 batches and each run sorted
 * by decreasing len(ctx, i) (ties by index), so a batch holds alike lengths; with
 * shuffle_batches the full batches of each run are then visited in a seeded random order (so
 * the steps do not run from long to short sentences; a last, smaller batch stays last). Returns
 * NOMEM, without a message and with order untouched, when the sort's memory cannot be had. */
qkv_status qkv__epoch_order(int64_t n, int64_t (*len)(const void *ctx, int64_t i), const void *ctx,
                            uint64_t seed, int64_t epoch, int64_t batch, int shuffle_batches,
                            int64_t *order);

/* ---- the writer's pieces, shared by data_prepare.c (documents) and data_parallel.c (pairs) */

/* One stream's shard files, written in order: DIR/<prefix>_NNNNN.bin (through NAME.tmp). */
typedef struct qkv__shard_writer {
    const char *dir;
    const char *prefix; /* "train", "val", "train_tgt", "val_tgt" */
    int bpi;
    int64_t shard_tokens;
    uint64_t vocab;
    int fd;           /* -1: no shard open */
    int64_t in_shard; /* tokens in the open shard */
    int64_t n_shards; /* shards opened so far (the open one included) */
    int64_t documents, tokens;
    uint8_t *buf; /* [QKV__WRITE_BUF] */
    size_t buf_len;
    uint32_t crc;   /* CRC-32C of the open shard's ids (the bytes after its header) */
    uint32_t *crcs; /* [n_shards] of the closed shards, for meta.json */
    char path[QKV_DATA_PATH_CAP], tmp[QKV_DATA_PATH_CAP];
} qkv__shard_writer;
#define QKV__WRITE_BUF (1u << 16) /* bytes of ids buffered before a write */

/* Sets up w (allocates its buffer); NOMEM. */
qkv_status qkv__writer_init(qkv__shard_writer *w, const char *dir, const char *prefix,
                            uint64_t vocab, int64_t shard_tokens);
qkv_status qkv__writer_put(qkv__shard_writer *w, const int32_t *ids, size_t n);
qkv_status qkv__writer_close_shard(qkv__shard_writer *w);
/* Drops a shard left open by a failure and frees the buffers. */
void qkv__writer_release(qkv__shard_writer *w);
/* {"documents", "tokens", "shards", "crc32c"} of w, or NULL (out of memory). */
json_t *qkv__writer_json(const qkv__shard_writer *w);

/* path as meta.json records a tokenizer: absolute (*abs: realpath's result to free(), or
 * NULL), or NULL when it is not UTF-8. */
const char *qkv__data_tokenizer_name(const char *path, char **abs);
/* Writes root to dir/meta.json through meta.json.tmp, fsynced; consumes root. */
qkv_status qkv__data_write_meta(json_t *root, const char *dir);
/* The staging directory of out_dir: checks out_dir (a dataset or nothing: else FORMAT), makes
 * OUT.tmp.PID in stage[QKV_DATA_PATH_CAP]; *exists: out_dir is there. */
qkv_status qkv__data_stage_begin(const char *out_dir, char *stage, int *exists);
/* Syncs stage; on ok swaps it in as out_dir (the old one removed), else removes stage. */
qkv_status qkv__data_stage_end(qkv_status s, const char *stage, const char *out_dir, int exists);
/* fsync of a directory (EINVAL is fine). */
qkv_status qkv__data_sync_dir(const char *dir);

#endif
