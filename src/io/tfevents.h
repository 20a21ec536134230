/* tfevents.h — TensorBoard event files: the TFRecord framing, the Event / Summary messages
 * (encoded by protobuf-c from src/io/tensorboard.proto) and the writer that the training loop
 * keeps in a run directory.
 *
 * A file is a sequence of records, each
 *     uint64 length (little-endian) | uint32 masked CRC-32C of those 8 bytes |
 *     data[length] (one serialized Event) | uint32 masked CRC-32C of data
 * and its first Event carries file_version "brain.Event:2". TensorBoard reads every file named
 * events.out.tfevents.* in a directory. */
#ifndef QKV_IO_TFEVENTS_H
#define QKV_IO_TFEVENTS_H

#include "qkv.h"

#include <stddef.h>
#include <stdint.h>

#define QKV__TB_PREFIX "events.out.tfevents."
/* The largest record we write or read back (a histogram is ~1 KB; a step's scalars ~100 B). */
#define QKV__TFRECORD_MAX ((uint64_t)16 << 20)
/* Buckets of a weight histogram: equal widths between the tensor's min and max. */
#define QKV__TB_BUCKETS 30

/* Writes the framed record of data[0..n) to out[0 .. n + 16); returns n + 16. */
size_t qkv__tfrecord_frame(uint8_t *out, const void *data, size_t n);

typedef enum qkv__tfr {
    QKV__TFR_OK = 0,    /* a whole record: *data, *n, *off advanced past it */
    QKV__TFR_END,       /* *off == len: no more records */
    QKV__TFR_TRUNCATED, /* the bytes left are the start of a record (a write cut short) */
    QKV__TFR_CORRUPT    /* a CRC does not match, or the length is past QKV__TFRECORD_MAX */
} qkv__tfr;
/* The record at buf[*off ..len). Never reads outside buf. */
qkv__tfr qkv__tfrecord_next(const uint8_t *buf, size_t len, size_t *off, const uint8_t **data,
                            size_t *n);

/* One serialized Event in a buffer from qkv__alloc (the caller qkv__free()s *out). */
qkv_status qkv__tb_encode_file_version(double wall_time, uint8_t **out, size_t *n);
/* A Summary of k simple_value scalars (as float, as TensorBoard stores them) at step. */
qkv_status qkv__tb_encode_scalars(double wall_time, int64_t step, const char *const *tags,
                                  const double *values, size_t k, uint8_t **out, size_t *n);
/* A Summary holding one HistogramProto of x[0..count): min, max, num, sum, sum of squares and
 * QKV__TB_BUCKETS equal-width buckets (bucket_limit: each bucket's right edge; the last is max;
 * one bucket when min == max). Non-finite values are left out. */
qkv_status qkv__tb_encode_histogram(double wall_time, int64_t step, const char *tag, const float *x,
                                    int64_t count, uint8_t **out, size_t *n);
/* The step of a serialized Event and whether it is the file_version record; FORMAT if data is
 * not an Event, NOMEM. */
qkv_status qkv__tb_event_step(const uint8_t *data, size_t n, int64_t *step, int *file_version);

/* The event file of a run directory, open for appending. */
typedef struct qkv__tb_writer qkv__tb_writer;

/* Opens run_dir's event file for a run continuing after step `upto`: the newest
 * events.out.tfevents.* already there (a resumed run keeps its file), else a new
 * events.out.tfevents.<seconds>.<host> starting with the file_version record. An existing file
 * that holds only whole records of steps <= upto is appended to as it is; otherwise it is cut
 * back to them — records of later steps (written after the checkpoint resumed from), a
 * truncated last record (a crash mid-write) and everything from a damaged record on are
 * dropped — through a temporary file, fsync and rename. */
qkv_status qkv__tb_open(const char *run_dir, int64_t upto, qkv__tb_writer **out);
/* Appends the framed record of one Event and flushes it (a crash loses at most this record,
 * which readers skip as truncated). */
qkv_status qkv__tb_append(qkv__tb_writer *w, const uint8_t *event, size_t n);
/* The scalars at step (wall time: now). */
qkv_status qkv__tb_scalars(qkv__tb_writer *w, int64_t step, const char *const *tags,
                           const double *values, size_t k);
/* A histogram of x[0..count) at step (wall time: now). */
qkv_status qkv__tb_histogram(qkv__tb_writer *w, int64_t step, const char *tag, const float *x,
                             int64_t count);
/* fsync: called before each checkpoint, as for metrics.jsonl. */
qkv_status qkv__tb_sync(qkv__tb_writer *w);
/* The file's path. */
const char *qkv__tb_path(const qkv__tb_writer *w);
/* Closes the file; NULL is fine. IO if the last writes fail. */
qkv_status qkv__tb_close(qkv__tb_writer *w);

#endif
