/* data_prepare.c — writing tokenized datasets (qkv_data_prepare): text files to binary shards
 * of token ids plus meta.json. The reader is data.c; the format is in docs/TRAINING.md.
 *
 * Text is streamed in chunks (a document is held in memory only while it is being tokenized).
 * Each document goes to the train or the validation split by a counter-based draw on (seed,
 * document index), so the split is a pure function of the seed and the input order. One
 * document is held back before it is written so that the last one can be moved when the draw
 * left a split empty. Every file is written as NAME.tmp, fsynced and renamed, into a staging
 * directory beside out_dir (OUT.tmp.PID) with meta.json last; only when all of it is on disk is
 * the staging directory swapped with out_dir (renameat2 RENAME_EXCHANGE, one atomic step) and
 * the old dataset removed. A failure (a full disk, a bad input file, a signal) leaves the old
 * dataset as it was. An existing out_dir must be a dataset (only files qkv writes in one) or an
 * empty directory: anything else is not ours to replace. */
#include "train/data.h"

#include "core/abi.h"
#include "core/alloc.h"
#include "core/error.h"
#include "core/rng.h"
#include "io/crc32c.h"
#include "io/json.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_SHARD_TOKENS 100000000
#define READ_CHUNK (1u << 20) /* bytes read from a text file at a time */
/* The document -> split draw: this stream under opts->seed (fixed: datasets depend on it). */
#define DOC_STREAM 0x51b4d0c5u

static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* fsync of a directory so renames in it are durable; EINVAL (cannot sync a directory) is fine. */
qkv_status qkv__data_sync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return qkv__write_fail("cannot open the directory to sync it", dir);
    qkv_status s = QKV_OK;
    if (fsync(fd) != 0 && errno != EINVAL) s = qkv__write_fail("cannot sync the directory", dir);
    close(fd);
    return s;
}

static int write_all(int fd, const void *buf, size_t n) {
    const uint8_t *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

void qkv_data_default_options_sized(qkv_data_options *o, size_t struct_size) {
    if (!o) return;
    qkv_data_options d;
    memset(&d, 0, sizeof d);
    d.val_fraction = 0.05;
    d.shard_tokens = DEFAULT_SHARD_TOKENS;
    QKV__STRUCT_FILL(qkv_data_options, o, struct_size, &d);
}

static qkv_status shard_name(char *out, const char *dir, const char *prefix, int64_t k,
                             const char *ext) {
    if (snprintf(out, QKV_DATA_PATH_CAP, "%s/%s_%05lld.bin%s", dir, prefix, (long long)k, ext) >=
        QKV_DATA_PATH_CAP)
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: path too long", dir);
    return QKV_OK;
}

static qkv_status writer_flush(qkv__shard_writer *w) {
    w->crc = qkv__crc32c(w->crc, w->buf, w->buf_len);
    if (w->buf_len && write_all(w->fd, w->buf, w->buf_len) != 0)
        return qkv__write_fail("write failed", w->tmp);
    w->buf_len = 0;
    return QKV_OK;
}

static qkv_status writer_open_shard(qkv__shard_writer *w) {
    QKV_TRY(shard_name(w->path, w->dir, w->prefix, w->n_shards, ""));
    QKV_TRY(shard_name(w->tmp, w->dir, w->prefix, w->n_shards, ".tmp"));
    uint32_t *c = qkv__alloc((size_t)(w->n_shards + 1) * sizeof *c); /* few shards: a copy */
    if (!c) return qkv__fail(QKV_ERR_NOMEM, "%s: shard checksums", w->tmp);
    if (w->n_shards) memcpy(c, w->crcs, (size_t)w->n_shards * sizeof *c);
    qkv__free(w->crcs);
    w->crcs = c;
    w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (w->fd < 0) return qkv__write_fail("cannot create", w->tmp);
    w->n_shards++;
    w->in_shard = 0;
    w->crc = 0;
    uint8_t header[QKV_DATA_HEADER_BYTES] = {0}; /* rewritten with the count at close */
    if (write_all(w->fd, header, sizeof header) != 0)
        return qkv__write_fail("write failed", w->tmp);
    return QKV_OK;
}

qkv_status qkv__writer_close_shard(qkv__shard_writer *w) {
    if (w->fd < 0) return QKV_OK;
    QKV_TRY(writer_flush(w));
    w->crcs[w->n_shards - 1] = w->crc;
    uint8_t h[QKV_DATA_HEADER_BYTES] = {0};
    memcpy(h, QKV_DATA_MAGIC, 8);
    put_u32(h + 8, QKV_DATA_VERSION);
    put_u32(h + 12, (uint32_t)w->bpi);
    put_u64(h + 16, (uint64_t)w->in_shard);
    put_u64(h + 24, w->vocab);
    if (pwrite(w->fd, h, sizeof h, 0) != (ssize_t)sizeof h)
        return qkv__write_fail("write failed", w->tmp);
    if (fsync(w->fd) != 0) return qkv__write_fail("fsync failed", w->tmp);
    int rc = close(w->fd);
    w->fd = -1;
    qkv_status s = QKV_OK;
    if (rc != 0)
        s = qkv__write_fail("close failed", w->tmp);
    else if (rename(w->tmp, w->path) != 0)
        s = qkv__write_fail("cannot rename the temporary file", w->tmp);
    if (s != QKV_OK) unlink(w->tmp);
    return s;
}

qkv_status qkv__writer_put(qkv__shard_writer *w, const int32_t *ids, size_t n) {
    while (n > 0) {
        if (w->fd < 0) QKV_TRY(writer_open_shard(w));
        int64_t room = w->shard_tokens - w->in_shard;
        size_t k = (uint64_t)room < n ? (size_t)room : n;
        for (size_t i = 0; i < k; i++) {
            if (w->buf_len + 4 > QKV__WRITE_BUF) QKV_TRY(writer_flush(w));
            uint32_t id = (uint32_t)ids[i];
            for (int b = 0; b < w->bpi; b++) w->buf[w->buf_len++] = (uint8_t)(id >> (8 * b));
        }
        ids += k;
        n -= k;
        w->in_shard += (int64_t)k;
        w->tokens += (int64_t)k;
        if (w->in_shard == w->shard_tokens) QKV_TRY(qkv__writer_close_shard(w));
    }
    return QKV_OK;
}

qkv_status qkv__writer_init(qkv__shard_writer *w, const char *dir, const char *prefix,
                            uint64_t vocab, int64_t shard_tokens) {
    memset(w, 0, sizeof *w);
    w->dir = dir;
    w->prefix = prefix;
    w->bpi = vocab <= 65536 ? 2 : 4;
    w->vocab = vocab;
    w->shard_tokens = shard_tokens;
    w->fd = -1;
    w->buf = qkv__alloc(QKV__WRITE_BUF);
    return w->buf ? QKV_OK : qkv__fail(QKV_ERR_NOMEM, "data prepare: buffers");
}

/* Drops the temporary file of a shard left open by a failure. */
static void writer_abort(qkv__shard_writer *w) {
    if (w->fd >= 0) {
        close(w->fd);
        unlink(w->tmp);
        w->fd = -1;
    }
}

void qkv__writer_release(qkv__shard_writer *w) {
    writer_abort(w);
    qkv__free(w->buf);
    qkv__free(w->crcs);
    w->buf = NULL;
    w->crcs = NULL;
}

typedef struct prep {
    const qkv_tokenizer *tok;
    qkv_encode_options enc;
    int32_t eot;
    double val_fraction;
    uint64_t seed;
    int64_t n_docs; /* documents seen (non-empty), the index of the draw */
    qkv_encoding *pending;
    int pending_split;
    qkv__shard_writer w[2];
    /* the text being read */
    char *doc;
    size_t len, cap;
    uint64_t bytes_done, bytes_total;
    qkv_progress_fn progress;
    void *progress_ctx;
} prep;

static qkv_status flush_pending(prep *p) {
    if (!p->pending) return QKV_OK;
    qkv__shard_writer *w = &p->w[p->pending_split];
    qkv_status s = qkv__writer_put(w, p->pending->ids, p->pending->n);
    if (s == QKV_OK) s = qkv__writer_put(w, &p->eot, 1);
    if (s == QKV_OK) w->documents++;
    qkv_encoding_free(p->pending);
    p->pending = NULL;
    return s;
}

static int blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!(s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n' || s[i] == '\v' ||
              s[i] == '\f'))
            return 0;
    return 1;
}

/* One document: tokenized now, written when the next one arrives (or at the end). */
static qkv_status add_document(prep *p, const char *text, size_t n) {
    if (blank(text, n)) return QKV_OK;
    qkv_encoding *e = NULL;
    QKV_TRY(qkv_tokenizer_encode(p->tok, text, n, NULL, 0, &p->enc, &e));
    for (size_t i = 0; i < e->n; i++)
        if (e->ids[i] < 0 || (uint64_t)e->ids[i] >= p->w[0].vocab) {
            int32_t bad = e->ids[i];
            qkv_encoding_free(e);
            return qkv__fail(QKV_ERR_INTERNAL, "data prepare: the tokenizer gave id %d", bad);
        }
    qkv_status s = flush_pending(p);
    if (s != QKV_OK) {
        qkv_encoding_free(e);
        return s;
    }
    p->pending = e;
    p->pending_split = qkv__rng_uniform(p->seed, DOC_STREAM, (uint64_t)p->n_docs) < p->val_fraction
                           ? QKV_SPLIT_VAL
                           : QKV_SPLIT_TRAIN;
    p->n_docs++;
    return QKV_OK;
}

static qkv_status reserve(prep *p, size_t need, const char *path) {
    if (need <= p->cap) return QKV_OK;
    size_t cap = p->cap ? p->cap : READ_CHUNK;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) return qkv__fail(QKV_ERR_OVERFLOW, "%s: document too large", path);
        cap *= 2;
    }
    char *b = qkv__alloc(cap);
    if (!b) return qkv__fail(QKV_ERR_NOMEM, "%s: a document of %zu bytes", path, need);
    if (p->len) memcpy(b, p->doc, p->len);
    qkv__free(p->doc);
    p->doc = b;
    p->cap = cap;
    return QKV_OK;
}

/* 1 if line[0..n) (its "\n" removed) is the separator, after dropping one trailing '\r'. */
static int is_separator(const char *line, size_t n, const char *sep, size_t sep_len) {
    if (n > 0 && line[n - 1] == '\r') n--;
    return n == sep_len && memcmp(line, sep, n) == 0;
}

/* Streams one file through the document splitter. p->doc holds the unfinished document at
 * [doc_start, len); line_start is where the current (unfinished) line begins; scan is where
 * the search for the next '\n' resumes. */
static qkv_status read_file(prep *p, const char *path, const char *sep) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return qkv__data_io_fail("cannot open", path);
    size_t sep_len = sep ? strlen(sep) : 0;
    size_t doc_start = 0, line_start = 0, scan = 0;
    qkv_status s = QKV_OK;
    p->len = 0;
    for (;;) {
        s = reserve(p, p->len + READ_CHUNK, path);
        if (s != QKV_OK) break;
        ssize_t r = read(fd, p->doc + p->len, READ_CHUNK);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            s = qkv__data_io_fail("read failed", path);
            break;
        }
        if (r == 0) break;
        p->len += (size_t)r;
        p->bytes_done += (uint64_t)r;
        if (sep) {
            for (;;) {
                char *nl = memchr(p->doc + scan, '\n', p->len - scan);
                if (!nl) {
                    scan = p->len;
                    break;
                }
                size_t end = (size_t)(nl - p->doc);
                if (is_separator(p->doc + line_start, end - line_start, sep, sep_len)) {
                    s = add_document(p, p->doc + doc_start, line_start - doc_start);
                    if (s != QKV_OK) break;
                    doc_start = end + 1;
                }
                line_start = scan = end + 1;
            }
            if (s != QKV_OK) break;
            if (doc_start > 0) { /* keep only the unfinished document */
                memmove(p->doc, p->doc + doc_start, p->len - doc_start);
                p->len -= doc_start;
                line_start -= doc_start;
                scan -= doc_start;
                doc_start = 0;
            }
        }
        if (p->progress && p->bytes_total) {
            double f = (double)p->bytes_done / (double)p->bytes_total;
            p->progress(p->progress_ctx, f < 1 ? f : 1); /* pipes are not in the total */
        }
    }
    close(fd);
    if (s != QKV_OK) return s;
    size_t end = p->len;
    if (sep && is_separator(p->doc + line_start, p->len - line_start, sep, sep_len))
        end = line_start; /* the file ends with a separator line without "\n" */
    return add_document(p, p->doc + doc_start, end - doc_start);
}

/* The last document goes where a split would otherwise stay empty (docs/TRAINING.md). */
static qkv_status finish_documents(prep *p) {
    if (!p->pending) return QKV_OK;
    int64_t train = p->w[0].documents, val = p->w[1].documents;
    if (train == 0) /* everything else went to validation, or this is the only document */
        p->pending_split = QKV_SPLIT_TRAIN;
    else if (val == 0 && p->val_fraction > 0)
        p->pending_split = QKV_SPLIT_VAL;
    return flush_pending(p);
}

json_t *qkv__writer_json(const qkv__shard_writer *w) {
    json_t *names = json_array(), *crcs = json_array();
    for (int64_t k = 0; names && crcs && k < w->n_shards; k++) {
        char name[64], crc[16];
        snprintf(name, sizeof name, "%s_%05lld.bin", w->prefix, (long long)k);
        snprintf(crc, sizeof crc, "%08x", (unsigned)w->crcs[k]);
        if (json_array_append_new(names, json_string(name)) != 0 ||
            json_array_append_new(crcs, json_string(crc)) != 0) {
            json_decref(names);
            json_decref(crcs);
            return NULL;
        }
    }
    if (!names || !crcs) {
        json_decref(names);
        json_decref(crcs);
        return NULL;
    }
    /* crc32c[k]: CRC-32C of shard k's ids (the bytes after its header), checked on open */
    return json_pack("{s:I,s:I,s:o,s:o}", "documents", (json_int_t)w->documents, "tokens",
                     (json_int_t)w->tokens, "shards", names, "crc32c", crcs);
}

const char *qkv__data_tokenizer_name(const char *path, char **abs) {
    *abs = path ? realpath(path, NULL) : NULL;
    const char *tp = *abs ? *abs : path;
    return tp && qkv__utf8_valid(tp, strlen(tp), NULL) ? tp : NULL; /* JSON holds UTF-8 only */
}

qkv_status qkv__data_write_meta(json_t *root, const char *dir) {
    char path[QKV_DATA_PATH_CAP], tmp[QKV_DATA_PATH_CAP];
    qkv_status s = qkv__data_join(path, dir, "meta.json");
    if (s == QKV_OK) s = qkv__data_join(tmp, dir, "meta.json.tmp");
    if (s != QKV_OK) {
        json_decref(root);
        return s;
    }
    if (!root || !json_is_object(json_object_get(root, "train")) ||
        !json_is_object(json_object_get(root, "val")) || qkv__json_alloc_failed())
        s = qkv__fail(QKV_ERR_NOMEM, "%s: building meta.json", path);
    else if (json_dump_file(root, tmp,
                            JSON_PRESERVE_ORDER | JSON_INDENT(2) | JSON_REAL_PRECISION(15)) != 0)
        s = qkv__json_alloc_failed() ? qkv__fail(QKV_ERR_NOMEM, "%s: writing meta.json", path)
                                     : qkv__write_fail("cannot write", tmp);
    else if (qkv__json_alloc_failed()) /* the output is right, but the hook said no: honour it */
        s = qkv__fail(QKV_ERR_NOMEM, "%s: writing meta.json", path);
    json_decref(root);
    if (s == QKV_OK) { /* json_dump_file does not sync */
        int fd = open(tmp, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fsync(fd) != 0) s = qkv__write_fail("fsync failed", tmp);
        if (fd >= 0) close(fd);
    }
    if (s == QKV_OK && rename(tmp, path) != 0)
        s = qkv__write_fail("cannot rename the temporary file", tmp);
    if (s != QKV_OK) unlink(tmp);
    return s;
}

static qkv_status write_meta(const prep *p, const qkv_data_options *o, const char *dir) {
    char seed[24];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)o->seed);
    /* stored absolute, so training from another directory still finds it */
    char *abs;
    const char *tp = qkv__data_tokenizer_name(o->tokenizer_path, &abs);
    qkv__json_begin();
    json_t *root = json_pack(
        "{s:s,s:i,s:I,s:I,s:i,s:s?,s:f,s:s?,s:s,s:I,s:o?,s:o?}", "format", "qkv-tokens", "version",
        QKV_DATA_VERSION, "vocab_size", (json_int_t)p->w[0].vocab, "eot_id", (json_int_t)p->eot,
        "bytes_per_id", p->w[0].bpi, "tokenizer", tp, "val_fraction", p->val_fraction, "split_on",
        o->split_on, "seed", seed, "shard_tokens", (json_int_t)p->w[0].shard_tokens, "train",
        qkv__writer_json(&p->w[0]), "val", qkv__writer_json(&p->w[1]));
    qkv_status s = qkv__data_write_meta(root, dir);
    qkv__json_end();
    free(abs);
    return s;
}

/* 1 if name is a file qkv writes in a dataset directory: meta.json (and its .tmp), or a shard
 * train_NNNNN.bin / val_NNNNN.bin, train_tgt_NNNNN.bin / val_tgt_NNNNN.bin (and their .tmp). */
static int dataset_file(const char *name) {
    if (strcmp(name, "meta.json") == 0 || strcmp(name, "meta.json.tmp") == 0) return 1;
    const char *p = strncmp(name, "train_", 6) == 0 ? name + 6
                    : strncmp(name, "val_", 4) == 0 ? name + 4
                                                    : NULL;
    if (!p) return 0;
    if (strncmp(p, "tgt_", 4) == 0) p += 4; /* a parallel dataset's target side */
    size_t d = 0;
    while (p[d] >= '0' && p[d] <= '9') d++;
    return d >= 5 && (strcmp(p + d, ".bin") == 0 || strcmp(p + d, ".bin.tmp") == 0);
}

/* Checks an existing out_dir: a directory holding only dataset files (or nothing). Sets *exists.
 * Anything else: FORMAT (not a dataset: not replaced). */
static qkv_status check_out_dir(const char *dir, int *exists) {
    struct stat sb;
    *exists = 0;
    if (stat(dir, &sb) != 0) return QKV_OK;
    if (!S_ISDIR(sb.st_mode))
        return qkv__fail(QKV_ERR_FORMAT, "%s: exists and is not a directory; not replaced", dir);
    *exists = 1;
    DIR *d = opendir(dir);
    if (!d) return qkv__data_io_fail("cannot read the directory", dir);
    qkv_status s = QKV_OK;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        if (!dataset_file(e->d_name)) {
            s = qkv__fail(QKV_ERR_FORMAT,
                          "%s: exists and holds '%s', which is not part of a qkv dataset; not "
                          "replaced (choose another --out, or remove it)",
                          dir, e->d_name);
            break;
        }
    }
    closedir(d);
    return s;
}

/* Removes the dataset files of dir, then dir itself (best effort: a cleanup). */
static void remove_dataset_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char path[QKV_DATA_PATH_CAP];
        while ((e = readdir(d)) != NULL)
            if (dataset_file(e->d_name) && qkv__data_join(path, dir, e->d_name) == QKV_OK)
                unlink(path);
        closedir(d);
    }
    rmdir(dir);
}

/* The staging directory beside out_dir: OUT.tmp.PID (trailing slashes of out_dir dropped). */
static qkv_status staging_name(char *out, const char *out_dir) {
    size_t n = strlen(out_dir);
    while (n > 1 && out_dir[n - 1] == '/') n--;
    if (snprintf(out, QKV_DATA_PATH_CAP, "%.*s.tmp.%ld", (int)n, out_dir, (long)getpid()) >=
        QKV_DATA_PATH_CAP)
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: path too long", out_dir);
    return QKV_OK;
}

/* Puts the complete dataset in stage at out_dir; the old one (if any) is removed afterwards. */
static qkv_status swap_in(const char *stage, const char *out_dir, int exists) {
    if (!exists) {
        if (rename(stage, out_dir) != 0)
            return qkv__write_fail("cannot rename the finished dataset into place", out_dir);
        return QKV_OK;
    }
    if (renameat2(AT_FDCWD, stage, AT_FDCWD, out_dir, RENAME_EXCHANGE) == 0) {
        remove_dataset_dir(stage); /* now the old dataset */
        return QKV_OK;
    }
    if (errno != EINVAL && errno != ENOSYS)
        return qkv__write_fail("cannot swap the finished dataset into place", out_dir);
    /* a file system without RENAME_EXCHANGE: two renames, the old one kept until the end */
    char old[QKV_DATA_PATH_CAP];
    if (snprintf(old, sizeof old, "%s.old", stage) >= (int)sizeof old)
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: path too long", out_dir);
    if (rename(out_dir, old) != 0) return qkv__write_fail("cannot move aside", out_dir);
    if (rename(stage, out_dir) != 0) {
        qkv_status s = qkv__write_fail("cannot rename the finished dataset into place", out_dir);
        rename(old, out_dir); /* put the old one back */
        return s;
    }
    remove_dataset_dir(old);
    return QKV_OK;
}

qkv_status qkv__data_stage_begin(const char *out_dir, char *stage, int *exists) {
    QKV_TRY(check_out_dir(out_dir, exists));
    QKV_TRY(staging_name(stage, out_dir));
    remove_dataset_dir(stage); /* a leftover of a killed run with this pid */
    if (mkdir(stage, 0777) != 0) return qkv__write_fail("cannot create the directory", stage);
    return QKV_OK;
}

qkv_status qkv__data_stage_end(qkv_status s, const char *stage, const char *out_dir, int exists) {
    if (s == QKV_OK) s = qkv__data_sync_dir(stage);
    if (s == QKV_OK) s = swap_in(stage, out_dir, exists);
    if (s != QKV_OK) remove_dataset_dir(stage); /* the old dataset, if any, is untouched */
    return s;
}

qkv_status qkv_data_prepare(const qkv_tokenizer *tok, const char *const *files, size_t n_files,
                            const qkv_data_options *opts, const char *out_dir,
                            qkv_data_stats *stats, qkv_progress_fn progress, void *progress_ctx) {
    qkv_data_stats ds; /* copied to *stats up to its struct_size (core/abi.h) */
    memset(&ds, 0, sizeof ds);
    if (stats) QKV__STRUCT_OUT(qkv_data_stats, stats, &ds);
    if (!tok || !files || n_files == 0 || !out_dir || !*out_dir)
        return qkv__fail(QKV_ERR_INVALID_ARG,
                         "qkv_data_prepare: tok, files (at least one) and out_dir are required");
    qkv_data_options o, defaults; /* in this version's layout (core/abi.h); NULL: defaults */
    qkv_data_default_options(&defaults);
    QKV_TRY(QKV__STRUCT_IN(qkv_data_options, &o, opts, &defaults, "qkv_data_prepare: opts"));
    if (!(o.val_fraction >= 0 && o.val_fraction <= 1))
        return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_data_prepare: val_fraction %g is not in [0, 1]",
                         o.val_fraction);
    if (o.shard_tokens < 0)
        return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_data_prepare: shard_tokens %lld is negative",
                         (long long)o.shard_tokens);
    if (o.shard_tokens == 0) o.shard_tokens = DEFAULT_SHARD_TOKENS;
    if (o.split_on &&
        (strchr(o.split_on, '\n') || !qkv__utf8_valid(o.split_on, strlen(o.split_on), NULL)))
        return qkv__fail(QKV_ERR_INVALID_ARG,
                         "qkv_data_prepare: split_on must be one line of valid UTF-8");
    for (size_t i = 0; i < n_files; i++)
        if (!files[i])
            return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_data_prepare: files[%zu] is NULL", i);
    int32_t eot = qkv_tokenizer_special_id(tok, QKV_SPECIAL_SEP);
    if (eot < 0) eot = qkv_tokenizer_token_to_id(tok, "<|endoftext|>", 13);
    if (eot < 0) return qkv__fail(QKV_ERR_INVALID_ARG, "tokenizer has no end-of-text token");
    size_t vocab = qkv_tokenizer_vocab_size(tok);
    if (vocab == 0 || vocab > (size_t)QKV_DATA_MAX_VOCAB || (size_t)eot >= vocab)
        return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_data_prepare: vocabulary of %zu ids", vocab);

    prep p;
    memset(&p, 0, sizeof p);
    p.w[0].fd = p.w[1].fd = -1; /* (writer_release before qkv__writer_init) */
    p.tok = tok;
    qkv_tokenizer_default_options(tok, &p.enc);
    p.enc.add_special_tokens = 0;
    p.enc.max_length = 0;
    p.enc.pad_to = 0;
    p.enc.pad_to_multiple_of = 0;
    p.eot = eot;
    p.val_fraction = o.val_fraction;
    p.seed = o.seed;
    p.progress = progress;
    p.progress_ctx = progress_ctx;
    for (size_t i = 0; i < n_files; i++) {
        struct stat sb;
        if (stat(files[i], &sb) != 0) return qkv__data_io_fail("cannot open", files[i]);
        if (S_ISDIR(sb.st_mode))
            return qkv__fail(QKV_ERR_IO, "%s: is a directory, expected a text file", files[i]);
        if (S_ISREG(sb.st_mode)) p.bytes_total += (uint64_t)sb.st_size;
    }
    int exists;
    char stage[QKV_DATA_PATH_CAP];
    QKV_TRY(qkv__data_stage_begin(out_dir, stage, &exists));
    qkv_status s = qkv__writer_init(&p.w[0], stage, "train", vocab, o.shard_tokens);
    if (s == QKV_OK) s = qkv__writer_init(&p.w[1], stage, "val", vocab, o.shard_tokens);
    if (s == QKV_OK && progress) progress(progress_ctx, 0.0);
    for (size_t i = 0; i < n_files && s == QKV_OK; i++) s = read_file(&p, files[i], o.split_on);
    if (s == QKV_OK) s = finish_documents(&p);
    for (int k = 0; k < 2 && s == QKV_OK; k++) s = qkv__writer_close_shard(&p.w[k]);
    if (s == QKV_OK) s = qkv__data_sync_dir(stage);
    if (s == QKV_OK) s = write_meta(&p, &o, stage);
    s = qkv__data_stage_end(s, stage, out_dir, exists);
    if (s == QKV_OK && progress) progress(progress_ctx, 1.0);
    qkv_encoding_free(p.pending);
    qkv__free(p.doc);
    qkv__writer_release(&p.w[0]);
    qkv__writer_release(&p.w[1]);
    if (s == QKV_OK && stats) {
        for (int k = 0; k < 2; k++) {
            ds.documents[k] = p.w[k].documents;
            ds.tokens[k] = p.w[k].tokens;
        }
        ds.bytes_read = (int64_t)p.bytes_done;
        QKV__STRUCT_OUT(qkv_data_stats, stats, &ds);
    }
    return s;
}
