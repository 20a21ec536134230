/* data.c — reading tokenized datasets: meta.json and shard parsing, qkv_dataset_open (every
 * shard of a split mmapped read-only), and the windows of qkv_dataset_sample / _sequential.
 * The writer is data_prepare.c; the format is in docs/TRAINING.md ("Dataset format").
 *
 * Why shards of raw ids: training reads random windows from the whole corpus at every step, so
 * the reader must reach any token in O(1) without parsing; a memory map of fixed-width ids does
 * that, and the page cache (not our heap) decides what stays in memory.
 *
 * Every shard is validated once at open (header, exact size, every id below the vocabulary),
 * so sampling never meets a bad id and needs no checks. The split is one stream of tokens
 * across its shards; windows may cross shard boundaries. */
#include "train/data.h"

#include "core/alloc.h"
#include "core/error.h"
#include "core/rng.h"
#include "io/crc32c.h"
#include "io/file.h"
#include "io/json.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_META_BYTES (256u << 20) /* meta.json larger than this is not ours */

/* Sampling streams of the counter-based generator (fixed: resumed runs depend on them). */
#define SAMPLE_KEY 0x73616d706c65ull       /* "sample": xored into the sampling seed */
#define SAMPLE_RETRY 0x9e3779b97f4a7c15ull /* added to the key on a (rare) rejected draw */

qkv_status qkv__data_io_fail(const char *what, const char *path) {
    return qkv__io_fail(what, path);
}

const char *qkv__data_split_name(int split) { return split == QKV_SPLIT_VAL ? "val" : "train"; }

qkv_status qkv__data_join(char *out, const char *dir, const char *name) {
    if (snprintf(out, QKV_DATA_PATH_CAP, "%s/%s", dir, name) >= QKV_DATA_PATH_CAP)
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: path too long", dir);
    return QKV_OK;
}

static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get_u64(const uint8_t *p) {
    return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

/* ---------------------------------------------------------------- shard parsing */

qkv_status qkv__data_shard_check(const uint8_t *buf, size_t len, int64_t vocab_size,
                                 const char *path, int64_t *n_tokens, int *bytes_per_id) {
    if (len < QKV_DATA_HEADER_BYTES)
        return qkv__fail(QKV_ERR_FORMAT, "%s: %zu bytes, shorter than the %d-byte shard header",
                         path, len, QKV_DATA_HEADER_BYTES);
    if (memcmp(buf, QKV_DATA_MAGIC, 8) != 0)
        return qkv__fail(QKV_ERR_FORMAT, "%s: not a qkv token shard (no \"%s\" at byte 0)", path,
                         QKV_DATA_MAGIC);
    uint32_t version = get_u32(buf + 8), bpi = get_u32(buf + 12);
    uint64_t n = get_u64(buf + 16), vocab = get_u64(buf + 24);
    if (version != QKV_DATA_VERSION)
        return qkv__fail(QKV_ERR_FORMAT, "%s: shard version %u, this build reads version %d", path,
                         version, QKV_DATA_VERSION);
    if (bpi != 2 && bpi != 4)
        return qkv__fail(QKV_ERR_FORMAT, "%s: byte offset 12: bytes_per_id %u, expected 2 or 4",
                         path, bpi);
    if (vocab == 0 || vocab > (uint64_t)QKV_DATA_MAX_VOCAB)
        return qkv__fail(QKV_ERR_FORMAT, "%s: byte offset 24: vocab_size %llu out of range", path,
                         (unsigned long long)vocab);
    if (vocab_size > 0 && vocab != (uint64_t)vocab_size)
        return qkv__fail(QKV_ERR_FORMAT,
                         "%s: byte offset 24: vocab_size %llu, but meta.json says %lld", path,
                         (unsigned long long)vocab, (long long)vocab_size);
    if (bpi == 2 && vocab > 65536)
        return qkv__fail(QKV_ERR_FORMAT, "%s: 2-byte ids cannot hold a vocabulary of %llu", path,
                         (unsigned long long)vocab);
    for (size_t i = 32; i < QKV_DATA_HEADER_BYTES; i++)
        if (buf[i] != 0)
            return qkv__fail(QKV_ERR_FORMAT, "%s: byte offset %zu: reserved header byte not zero",
                             path, i);
    if (n > (uint64_t)((len - QKV_DATA_HEADER_BYTES) / bpi) ||
        (uint64_t)QKV_DATA_HEADER_BYTES + n * bpi != (uint64_t)len)
        return qkv__fail(QKV_ERR_FORMAT,
                         "%s: the header says %llu tokens of %u bytes (%llu bytes in all), the "
                         "file has %zu bytes",
                         path, (unsigned long long)n, bpi,
                         n > (UINT64_MAX - QKV_DATA_HEADER_BYTES) / bpi
                             ? (unsigned long long)UINT64_MAX
                             : (unsigned long long)(QKV_DATA_HEADER_BYTES + n * bpi),
                         len);
    const uint8_t *ids = buf + QKV_DATA_HEADER_BYTES;
    if (bpi == 2 && vocab < 65536) {
        for (size_t i = 0; i < (size_t)n; i++) {
            uint32_t id = (uint32_t)ids[2 * i] | (uint32_t)ids[2 * i + 1] << 8;
            if (id >= vocab)
                return qkv__fail(QKV_ERR_FORMAT,
                                 "%s: byte offset %zu: token id %u is not below the vocabulary "
                                 "size %llu",
                                 path, QKV_DATA_HEADER_BYTES + 2 * i, id,
                                 (unsigned long long)vocab);
        }
    } else if (bpi == 4) {
        for (size_t i = 0; i < (size_t)n; i++) {
            uint32_t id = get_u32(ids + 4 * i);
            if (id >= vocab)
                return qkv__fail(QKV_ERR_FORMAT,
                                 "%s: byte offset %zu: token id %u is not below the vocabulary "
                                 "size %llu",
                                 path, QKV_DATA_HEADER_BYTES + 4 * i, id,
                                 (unsigned long long)vocab);
        }
    }
    *n_tokens = (int64_t)n;
    *bytes_per_id = (int)bpi;
    return QKV_OK;
}

/* ---------------------------------------------------------------- meta.json parsing */

void qkv__data_meta_free(qkv__data_meta *m) {
    if (!m) return;
    for (size_t i = 0; i < m->n_shards; i++) qkv__free(m->shards[i]);
    qkv__free(m->shards);
    qkv__free(m->tokenizer);
    qkv__free(m->crc);
    for (size_t i = 0; i < m->tgt_n_shards; i++) qkv__free(m->tgt_shards[i]);
    qkv__free(m->tgt_shards);
    qkv__free(m->tgt_tokenizer);
    qkv__free(m->tgt_crc);
    memset(m, 0, sizeof *m);
}

/* An integer member in [lo, hi], or FORMAT naming the key. */
static qkv_status meta_int(json_t *obj, const char *key, const char *where, const char *path,
                           int64_t lo, int64_t hi, int64_t *out) {
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v))
        return qkv__fail(QKV_ERR_FORMAT, "%s: %s\"%s\" must be an integer", path, where, key);
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return qkv__fail(QKV_ERR_FORMAT, "%s: %s\"%s\" is %lld, expected %lld..%lld", path, where,
                         key, (long long)x, (long long)lo, (long long)hi);
    *out = (int64_t)x;
    return QKV_OK;
}

/* A shard name must stay inside the dataset directory: no '/', no leading '.'. */
static int plain_file_name(const char *s, size_t n) {
    if (n == 0 || n > 255 || s[0] == '.') return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] == '/' || s[i] == '\\' || s[i] == '\0') return 0;
    return 1;
}

/* A tokenizer name (a string) of meta.json into *out, or nothing when absent / null. */
static qkv_status meta_name(json_t *root, const char *key, const char *path, char **out) {
    json_t *tok = json_object_get(root, key);
    if (!tok || json_is_null(tok)) return QKV_OK;
    if (!json_is_string(tok) || json_string_length(tok) == 0 ||
        strlen(json_string_value(tok)) != json_string_length(tok))
        return qkv__fail(QKV_ERR_FORMAT, "%s: \"%s\" must be a file name (a string)", path, key);
    *out = qkv__strdup(json_string_value(tok));
    if (!*out) return qkv__fail(QKV_ERR_NOMEM, "%s: tokenizer name", path);
    return QKV_OK;
}

/* One stream of a split (name: "train", "val", "train.target" ...): documents, tokens, shards,
 * crc32c. */
static qkv_status meta_stream(json_t *s, const char *name, const char *path, int64_t *documents,
                              int64_t *tokens, size_t *n_shards, char ***names, uint32_t **crc) {
    char where[32];
    snprintf(where, sizeof where, "%s.", name);
    if (!json_is_object(s))
        return qkv__fail(QKV_ERR_FORMAT, "%s: \"%s\" must be an object", path, name);
    QKV_TRY(meta_int(s, "documents", where, path, 0, INT64_MAX, documents));
    QKV_TRY(meta_int(s, "tokens", where, path, 0, INT64_MAX, tokens));
    json_t *shards = json_object_get(s, "shards");
    if (!json_is_array(shards))
        return qkv__fail(QKV_ERR_FORMAT, "%s: \"%s.shards\" must be an array", path, name);
    size_t n = json_array_size(shards);
    if (n) {
        *names = qkv__calloc(n, sizeof **names);
        if (!*names) return qkv__fail(QKV_ERR_NOMEM, "%s: %zu shard names", path, n);
    }
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(shards, i);
        if (!json_is_string(e) || !plain_file_name(json_string_value(e), json_string_length(e)))
            return qkv__fail(QKV_ERR_FORMAT,
                             "%s: \"%s.shards\"[%zu] must be a file name in the dataset "
                             "directory",
                             path, name, i);
        (*names)[i] = qkv__strdup(json_string_value(e));
        if (!(*names)[i]) return qkv__fail(QKV_ERR_NOMEM, "%s: shard names", path);
        *n_shards = i + 1;
    }
    json_t *crcs = json_object_get(s, "crc32c");
    if (crcs && !json_is_null(crcs)) { /* one 8-digit hex string per shard */
        if (!json_is_array(crcs) || json_array_size(crcs) != n)
            return qkv__fail(QKV_ERR_FORMAT,
                             "%s: \"%s.crc32c\" must be an array of one checksum per shard", path,
                             name);
        if (n && !(*crc = qkv__calloc(n, sizeof **crc)))
            return qkv__fail(QKV_ERR_NOMEM, "%s: shard checksums", path);
        for (size_t i = 0; i < n; i++) {
            const char *h = json_string_value(json_array_get(crcs, i));
            char *end = NULL;
            unsigned long v = h && strlen(h) == 8 ? strtoul(h, &end, 16) : 0;
            if (!h || strlen(h) != 8 || *end)
                return qkv__fail(QKV_ERR_FORMAT, "%s: \"%s.crc32c\"[%zu] must be 8 hex digits",
                                 path, name, i);
            (*crc)[i] = (uint32_t)v;
        }
    }
    return QKV_OK;
}

static qkv_status meta_from_json(json_t *root, const char *path, qkv_split split,
                                 qkv__data_meta *m) {
    if (!json_is_object(root))
        return qkv__fail(QKV_ERR_FORMAT, "%s: the top level must be an object", path);
    json_t *fmt = json_object_get(root, "format");
    if (!json_is_string(fmt) || strcmp(json_string_value(fmt), "qkv-tokens") != 0)
        return qkv__fail(QKV_ERR_FORMAT, "%s: \"format\" must be \"qkv-tokens\"", path);
    int64_t version = 0;
    QKV_TRY(meta_int(root, "version", "", path, 0, INT64_MAX, &version));
    if (version != QKV_DATA_VERSION)
        return qkv__fail(QKV_ERR_FORMAT, "%s: dataset version %lld, this build reads version %d",
                         path, (long long)version, QKV_DATA_VERSION);
    json_t *kind = json_object_get(root, "kind"); /* absent: "tokens" (datasets before pairs) */
    if (kind && !(json_is_string(kind) && (strcmp(json_string_value(kind), "tokens") == 0 ||
                                           strcmp(json_string_value(kind), "parallel") == 0)))
        return qkv__fail(QKV_ERR_FORMAT, "%s: \"kind\" must be \"tokens\" or \"parallel\"", path);
    m->parallel = kind && strcmp(json_string_value(kind), "parallel") == 0;
    QKV_TRY(meta_int(root, "vocab_size", "", path, 1, QKV_DATA_MAX_VOCAB, &m->vocab_size));
    QKV_TRY(meta_int(root, "eot_id", "", path, 0, m->vocab_size - 1, &m->eot_id));
    QKV_TRY(meta_name(root, "tokenizer", path, &m->tokenizer));
    const char *name = qkv__data_split_name((int)split);
    json_t *s = json_object_get(root, name);
    QKV_TRY(
        meta_stream(s, name, path, &m->documents, &m->tokens, &m->n_shards, &m->shards, &m->crc));
    if (!m->parallel) return QKV_OK;
    QKV_TRY(
        meta_int(root, "target_vocab_size", "", path, 1, QKV_DATA_MAX_VOCAB, &m->tgt_vocab_size));
    QKV_TRY(meta_int(root, "target_eot_id", "", path, 0, m->tgt_vocab_size - 1, &m->tgt_eot_id));
    QKV_TRY(meta_name(root, "target_tokenizer", path, &m->tgt_tokenizer));
    char tname[32];
    snprintf(tname, sizeof tname, "%s.target", name);
    QKV_TRY(meta_stream(json_object_get(s, "target"), tname, path, &m->tgt_documents,
                        &m->tgt_tokens, &m->tgt_n_shards, &m->tgt_shards, &m->tgt_crc));
    if (m->tgt_documents != m->documents)
        return qkv__fail(QKV_ERR_FORMAT,
                         "%s: \"%s.target.documents\" is %lld, the source side has %lld "
                         "sentences: the pairs do not line up",
                         path, name, (long long)m->tgt_documents, (long long)m->documents);
    return QKV_OK;
}

qkv_status qkv__data_meta_parse(const char *text, size_t len, const char *path, qkv_split split,
                                qkv__data_meta *out) {
    memset(out, 0, sizeof *out);
    if (split != QKV_SPLIT_TRAIN && split != QKV_SPLIT_VAL)
        return qkv__fail(QKV_ERR_INVALID_ARG, "dataset: unknown split %d", (int)split);
    qkv__json_begin();
    json_error_t err;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
    qkv_status s;
    if (qkv__json_alloc_failed())
        s = qkv__fail(QKV_ERR_NOMEM, "%s: out of memory while parsing", path);
    else if (!root)
        s = qkv__fail(QKV_ERR_FORMAT, "%s: line %d: %s", path, err.line, err.text);
    else
        s = meta_from_json(root, path, split, out);
    json_decref(root);
    qkv__json_end();
    if (s != QKV_OK) qkv__data_meta_free(out);
    return s;
}

/* ---------------------------------------------------------------- reading */

typedef struct data_shard {
    void *map; /* the whole file, header included */
    size_t map_len;
    const uint8_t *ids; /* map + 64 */
    int bpi;
    int64_t n, first; /* tokens, and the split position of the first one */
} data_shard;

/* One stream of ids over its shards: a split's tokens, or one side of its sentence pairs. */
typedef struct data_stream {
    int64_t n_tokens, vocab_size;
    int32_t eos; /* parallel: the id that ends every sentence */
    size_t n_shards;
    data_shard *shards;
    int64_t *off; /* parallel: [pairs + 1] where sentence i starts (off[pairs] = n_tokens) */
} data_stream;

struct qkv_dataset {
    char *tokenizer;     /* resolved (qkv_dataset_tokenizer), or NULL */
    char *tgt_tokenizer; /* parallel: the target side's, or NULL */
    int parallel;
    int64_t pairs;
    data_stream s[2]; /* the tokens (or the source side), the target side */
};

static void stream_close(data_stream *st) {
    for (size_t i = 0; i < st->n_shards; i++)
        if (st->shards[i].map) munmap(st->shards[i].map, st->shards[i].map_len);
    qkv__free(st->shards);
    qkv__free(st->off);
}

void qkv_dataset_close(qkv_dataset *ds) {
    if (!ds) return;
    stream_close(&ds->s[0]);
    stream_close(&ds->s[1]);
    qkv__free(ds->tokenizer);
    qkv__free(ds->tgt_tokenizer);
    qkv__free(ds);
}

int64_t qkv_dataset_tokens(const qkv_dataset *ds) { return ds ? ds->s[0].n_tokens : 0; }
const char *qkv_dataset_tokenizer(const qkv_dataset *ds) { return ds ? ds->tokenizer : NULL; }
int64_t qkv_dataset_vocab_size(const qkv_dataset *ds) { return ds ? ds->s[0].vocab_size : 0; }
int qkv_dataset_is_parallel(const qkv_dataset *ds) { return ds ? ds->parallel : 0; }
int64_t qkv_dataset_pairs(const qkv_dataset *ds) { return ds && ds->parallel ? ds->pairs : 0; }
int64_t qkv_dataset_target_tokens(const qkv_dataset *ds) {
    return ds && ds->parallel ? ds->s[1].n_tokens : 0;
}
int64_t qkv_dataset_target_vocab_size(const qkv_dataset *ds) {
    return ds && ds->parallel ? ds->s[1].vocab_size : 0;
}
const char *qkv_dataset_target_tokenizer(const qkv_dataset *ds) {
    return ds && ds->parallel ? ds->tgt_tokenizer : NULL;
}

/* Whole small file into a NUL-terminated buffer (meta.json). */
static qkv_status read_small_file(const char *path, char **buf, size_t *len) {
    return qkv__read_regular(path, MAX_META_BYTES, buf, len);
}

static qkv_status map_shard(const char *path, int64_t vocab, data_shard *sh) {
    int fd;
    uint64_t fsize;
    QKV_TRY(qkv__open_regular(path, 0, &fd, &fsize)); /* a FIFO: refused, never waited on */
    struct stat sb = {.st_size = (off_t)fsize};
    qkv_status s = QKV_OK;
    if ((uint64_t)sb.st_size < QKV_DATA_HEADER_BYTES) {
        s = qkv__fail(QKV_ERR_FORMAT, "%s: %lld bytes, shorter than the %d-byte shard header", path,
                      (long long)sb.st_size, QKV_DATA_HEADER_BYTES);
    } else if ((uint64_t)sb.st_size > SIZE_MAX) {
        s = qkv__fail(QKV_ERR_OVERFLOW, "%s: too large to map", path);
    } else {
        size_t len = (size_t)sb.st_size;
        void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            s = qkv__data_io_fail("cannot mmap", path);
        } else {
            sh->map = map;
            sh->map_len = len;
            s = qkv__data_shard_check(map, len, vocab, path, &sh->n, &sh->bpi);
            sh->ids = (const uint8_t *)map + QKV_DATA_HEADER_BYTES;
        }
    }
    close(fd);
    return s;
}

/* Maps the shards names[0..n) of dir (each checked against vocab) and their checksums (crc
 * NULL: none recorded); their tokens must add up to `tokens` (meta.json's; what names the
 * stream in messages). */
static qkv_status stream_open(const char *dir, const char *what, char *const *names, size_t n,
                              const uint32_t *crc, int64_t vocab, int64_t tokens, data_stream *st) {
    char path[QKV_DATA_PATH_CAP];
    st->vocab_size = vocab;
    if (n && !(st->shards = qkv__calloc(n, sizeof *st->shards)))
        return qkv__fail(QKV_ERR_NOMEM, "%s: dataset of %zu shards", dir, n);
    qkv_status s = QKV_OK;
    for (size_t i = 0; i < n && s == QKV_OK; i++) {
        s = qkv__data_join(path, dir, names[i]);
        if (s == QKV_OK) s = map_shard(path, vocab, &st->shards[i]);
        st->n_shards = i + 1;
        if (s == QKV_OK) {
            st->shards[i].first = st->n_tokens;
            if (__builtin_add_overflow(st->n_tokens, st->shards[i].n, &st->n_tokens))
                s = qkv__fail(QKV_ERR_OVERFLOW, "%s: token count overflows", dir);
        }
    }
    if (s == QKV_OK && st->n_tokens != tokens)
        s = qkv__fail(QKV_ERR_FORMAT, "%s/meta.json: the %s has %lld tokens, its shards %lld", dir,
                      what, (long long)tokens, (long long)st->n_tokens);
    /* then each shard's ids against meta.json's checksum (the counts agree by now) */
    for (size_t i = 0; s == QKV_OK && crc && i < n; i++) {
        const data_shard *sh = &st->shards[i];
        uint32_t c = qkv__crc32c(0, sh->ids, (size_t)sh->n * (size_t)sh->bpi);
        if (c != crc[i]) {
            (void)qkv__data_join(path, dir, names[i]);
            s = qkv__fail(QKV_ERR_FORMAT,
                          "%s: the data does not match its checksum in meta.json (crc32c %08x, "
                          "computed %08x): the shard is damaged",
                          path, (unsigned)crc[i], (unsigned)c);
        }
    }
    return s;
}

static int32_t id_at(const data_shard *sh, int64_t k) {
    const uint8_t *p = sh->ids + (size_t)sh->bpi * (size_t)k;
    return sh->bpi == 2 ? (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8) : (int32_t)get_u32(p);
}

/* A parallel side: where each of its `pairs` sentences starts (every sentence ends with eos,
 * the last token of the stream included). FORMAT when the count differs from meta.json's. */
static qkv_status stream_index(const char *dir, const char *what, int64_t pairs, data_stream *st) {
    int64_t count = 0;
    for (size_t i = 0; i < st->n_shards; i++)
        for (int64_t k = 0; k < st->shards[i].n; k++) count += id_at(&st->shards[i], k) == st->eos;
    int last_eos = 1; /* the stream's last token (none: nothing to end) */
    for (size_t i = st->n_shards; i-- > 0;)
        if (st->shards[i].n) {
            last_eos = id_at(&st->shards[i], st->shards[i].n - 1) == st->eos;
            break;
        }
    if (count != pairs || !last_eos)
        return qkv__fail(QKV_ERR_FORMAT,
                         "%s/meta.json: the %s holds %lld sentences (each ending in id %d)%s, "
                         "meta.json says %lld",
                         dir, what, (long long)count, st->eos,
                         !last_eos ? " and a tail without one" : "", (long long)pairs);
    if ((uint64_t)pairs >= SIZE_MAX / sizeof *st->off)
        return qkv__fail(QKV_ERR_OVERFLOW, "%s: %lld sentences", dir, (long long)pairs);
    st->off = qkv__alloc(((size_t)pairs + 1) * sizeof *st->off);
    if (!st->off)
        return qkv__fail(QKV_ERR_NOMEM, "%s: index of %lld sentences", dir, (long long)pairs);
    int64_t j = 0;
    st->off[0] = 0;
    for (size_t i = 0; i < st->n_shards; i++)
        for (int64_t k = 0; k < st->shards[i].n; k++)
            if (id_at(&st->shards[i], k) == st->eos) st->off[++j] = st->shards[i].first + k + 1;
    return QKV_OK;
}

qkv_status qkv_dataset_open(const char *dir, qkv_split split, qkv_dataset **out) {
    if (!out) return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_dataset_open: out is NULL");
    *out = NULL;
    if (!dir) return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_dataset_open: dir is NULL");
    char path[QKV_DATA_PATH_CAP];
    QKV_TRY(qkv__data_join(path, dir, "meta.json"));
    char *text = NULL;
    size_t len = 0;
    struct stat sb;
    if (stat(path, &sb) != 0 && errno == ENOENT)
        return qkv__fail(QKV_ERR_IO,
                         "%s: no meta.json: not a prepared dataset (see qkv data prepare)", dir);
    QKV_TRY(read_small_file(path, &text, &len));
    qkv__data_meta meta;
    qkv_status s = qkv__data_meta_parse(text, len, path, split, &meta);
    qkv__free(text);
    if (s != QKV_OK) return s;
    qkv_dataset *ds = qkv__calloc(1, sizeof *ds);
    if (!ds) {
        qkv__data_meta_free(&meta);
        return qkv__fail(QKV_ERR_NOMEM, "%s: dataset", dir);
    }
    /* the tokenizer named in meta.json: a relative name must stay inside the dataset (a
     * dataset someone else made cannot point the export at ../../.ssh/id_rsa); an absolute one
     * is what the user gave `qkv data prepare` (the export still copies it only if it loads as
     * a tokenizer) */
    if (meta.tokenizer) {
        s = qkv__path_inside(dir, meta.tokenizer, 1, "meta.json: tokenizer", &ds->tokenizer);
        if (s == QKV_ERR_IO) s = QKV_OK; /* gone since: the dataset still opens, without one */
    }
    if (s == QKV_OK && meta.tgt_tokenizer) {
        s = qkv__path_inside(dir, meta.tgt_tokenizer, 1, "meta.json: target_tokenizer",
                             &ds->tgt_tokenizer);
        if (s == QKV_ERR_IO) s = QKV_OK;
    }
    const char *name = qkv__data_split_name((int)split);
    char what[2][32];
    snprintf(what[0], sizeof what[0], "%s split%s", name, meta.parallel ? "'s source side" : "");
    snprintf(what[1], sizeof what[1], "%s split's target side", name);
    if (s == QKV_OK)
        s = stream_open(dir, what[0], meta.shards, meta.n_shards, meta.crc, meta.vocab_size,
                        meta.tokens, &ds->s[0]);
    if (s == QKV_OK && meta.parallel) {
        ds->parallel = 1;
        ds->pairs = meta.documents;
        ds->s[0].eos = (int32_t)meta.eot_id;
        ds->s[1].eos = (int32_t)meta.tgt_eot_id;
        s = stream_open(dir, what[1], meta.tgt_shards, meta.tgt_n_shards, meta.tgt_crc,
                        meta.tgt_vocab_size, meta.tgt_tokens, &ds->s[1]);
        for (int k = 0; k < 2 && s == QKV_OK; k++)
            s = stream_index(dir, what[k], ds->pairs, &ds->s[k]);
    }
    qkv__data_meta_free(&meta);
    if (s != QKV_OK) {
        qkv_dataset_close(ds);
        return s;
    }
    *out = ds;
    return QKV_OK;
}

/* tokens [pos, pos + n) of the stream into dst; the caller checked the range */
static void copy_stream(const data_stream *ds, int64_t pos, int64_t n, int32_t *dst) {
    size_t lo = 0, hi = ds->n_shards; /* the last shard whose first <= pos */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (ds->shards[mid].first <= pos)
            lo = mid;
        else
            hi = mid;
    }
    for (size_t s = lo; n > 0; s++) {
        const data_shard *sh = &ds->shards[s];
        int64_t off = pos - sh->first;
        if (off >= sh->n) continue; /* empty shard, or pos past this one */
        int64_t k = sh->n - off < n ? sh->n - off : n;
        if (sh->bpi == 2) {
            const uint8_t *p = sh->ids + 2 * off;
            for (int64_t i = 0; i < k; i++)
                dst[i] = (int32_t)((uint32_t)p[2 * i] | (uint32_t)p[2 * i + 1] << 8);
        } else {
            const uint8_t *p = sh->ids + 4 * off;
            for (int64_t i = 0; i < k; i++) dst[i] = (int32_t)get_u32(p + 4 * i);
        }
        dst += k;
        pos += k;
        n -= k;
    }
}

static void copy_tokens(const qkv_dataset *ds, int64_t pos, int64_t n, int32_t *dst) {
    copy_stream(&ds->s[0], pos, n, dst);
}

int64_t qkv_dataset_sentence_len(const qkv_dataset *ds, int side, int64_t i) {
    if (!ds || !ds->parallel || (side != 0 && side != 1) || i < 0 || i >= ds->pairs) return 0;
    return ds->s[side].off[i + 1] - ds->s[side].off[i];
}

qkv_status qkv_dataset_sentence(const qkv_dataset *ds, int side, int64_t i, int64_t cap,
                                int32_t *out, int64_t *len) {
    static const char fn[] = "qkv_dataset_sentence";
    if (!ds || !out || !len) return qkv__fail(QKV_ERR_INVALID_ARG, "%s: NULL argument", fn);
    *len = 0;
    if (!ds->parallel)
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: not a parallel dataset (kind \"tokens\")", fn);
    if ((side != 0 && side != 1) || i < 0 || i >= ds->pairs || cap < 1)
        return qkv__fail(QKV_ERR_INVALID_ARG,
                         "%s: side %d, sentence %lld of %lld, cap %lld (side 0 or 1, cap >= 1)", fn,
                         side, (long long)i, (long long)ds->pairs, (long long)cap);
    const data_stream *st = &ds->s[side];
    const int64_t n = st->off[i + 1] - st->off[i]; /* >= 1: it ends with eos */
    if (n <= cap) {
        copy_stream(st, st->off[i], n, out);
        *len = n;
    } else { /* as transformers' truncation: the first cap - 1 ids, then the end of sentence */
        copy_stream(st, st->off[i], cap - 1, out);
        out[cap - 1] = st->eos;
        *len = cap;
    }
    return QKV_OK;
}

static qkv_status check_batch_args(const char *fn, const qkv_dataset *ds, int64_t B, int64_t T,
                                   const int32_t *ids, const int32_t *targets) {
    if (!ds || !ids || !targets)
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: ds, ids and targets are required", fn);
    if (ds->parallel)
        return qkv__fail(QKV_ERR_INVALID_ARG,
                         "%s: a parallel dataset holds sentence pairs, not one token stream "
                         "(train an encoder-decoder on it)",
                         fn);
    size_t bt;
    if (B <= 0 || T <= 0 || qkv__mul_overflow((size_t)B, (size_t)T, &bt) ||
        bt > SIZE_MAX / sizeof(int32_t))
        return qkv__fail(QKV_ERR_INVALID_ARG,
                         "%s: B = %lld, T = %lld: both must be positive, B * T ids must fit", fn,
                         (long long)B, (long long)T);
    const int64_t nt = ds->s[0].n_tokens;
    if (nt < 1 || T > nt - 1)
        return qkv__fail(QKV_ERR_INVALID_ARG,
                         "%s: the split has %lld tokens, a window needs T + 1 = %lld", fn,
                         (long long)nt, (long long)T + 1);
    return QKV_OK;
}

/* Uniform integer in [0, range): 64 bits from two u32 draws, modulo with rejection of the
 * biased tail (rejection has probability < range / 2^64; a retry changes the key). */
uint64_t qkv__data_uniform_below(uint64_t seed, uint64_t stream, uint64_t element, uint64_t range) {
    uint64_t threshold = (0 - range) % range; /* 2^64 mod range */
    for (uint64_t k = 0;; k++) {
        uint64_t key = seed ^ SAMPLE_KEY;
        key += k * SAMPLE_RETRY;
        uint64_t u = (uint64_t)qkv__rng_u32(key, stream, 2 * element) << 32 |
                     qkv__rng_u32(key, stream, 2 * element + 1);
        if (u >= threshold) return u % range;
    }
}

qkv_status qkv_dataset_sample(const qkv_dataset *ds, uint64_t seed, uint64_t index, int64_t B,
                              int64_t T, int32_t *ids, int32_t *targets) {
    QKV_TRY(check_batch_args("qkv_dataset_sample", ds, B, T, ids, targets));
    uint64_t starts = (uint64_t)(ds->s[0].n_tokens - T); /* start in [0, n - T - 1] */
    for (int64_t b = 0; b < B; b++) {
        int64_t start = (int64_t)qkv__data_uniform_below(seed, index, (uint64_t)b, starts);
        copy_tokens(ds, start, T, ids + b * T);         /* (B, T) */
        copy_tokens(ds, start + 1, T, targets + b * T); /* (B, T) */
    }
    return QKV_OK;
}

int64_t qkv_dataset_batches(const qkv_dataset *ds, int64_t B, int64_t T) {
    if (!ds || ds->parallel || B <= 0 || T <= 0 || ds->s[0].n_tokens < 1) return 0;
    return (ds->s[0].n_tokens - 1) / T / B;
}

qkv_status qkv_dataset_sequential(const qkv_dataset *ds, int64_t index, int64_t B, int64_t T,
                                  int32_t *ids, int32_t *targets) {
    QKV_TRY(check_batch_args("qkv_dataset_sequential", ds, B, T, ids, targets));
    int64_t nb = qkv_dataset_batches(ds, B, T);
    if (index < 0 || index >= nb)
        return qkv__fail(QKV_ERR_INVALID_ARG,
                         "qkv_dataset_sequential: batch %lld of %lld (B = %lld, T = %lld)",
                         (long long)index, (long long)nb, (long long)B, (long long)T);
    for (int64_t b = 0; b < B; b++) {
        int64_t start = (index * B + b) * T; /* < n_tokens - T since index < nb */
        copy_tokens(ds, start, T, ids + b * T);
        copy_tokens(ds, start + 1, T, targets + b * T);
    }
    return QKV_OK;
}

/* ---------------------------------------------------------------- epochs */

typedef struct {
    uint32_t key;
    int64_t i;
    int64_t len;
} ord;

static int by_key(const void *a, const void *b) {
    const ord *x = a, *y = b;
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

static int by_len_desc(const void *a, const void *b) {
    const ord *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

#define EPOCH_STREAM ((uint64_t)1 << 44)

qkv_status qkv__epoch_order(int64_t n, int64_t (*len)(const void *ctx, int64_t i), const void *ctx,
                            uint64_t seed, int64_t epoch, int64_t batch, int shuffle_batches,
                            int64_t *order) {
    ord *o = qkv__alloc((size_t)n * sizeof *o);
    if (!o) return QKV_ERR_NOMEM;
    for (int64_t i = 0; i < n; i++)
        o[i] = (ord){qkv__rng_u32(seed, EPOCH_STREAM + (uint64_t)epoch, (uint64_t)i), i,
                     batch > 0 ? len(ctx, i) : 0};
    qsort(o, (size_t)n, sizeof *o, by_key);
    if (batch > 0) {
        const int64_t mega = 50 * batch;
        for (int64_t s = 0; s < n; s += mega)
            qsort(o + s, (size_t)(s + mega < n ? mega : n - s), sizeof *o, by_len_desc);
    }
    if (batch > 0 && shuffle_batches && n / batch > 1) {
        /* full batch b of the epoch is full batch key[b].i; the last, smaller one stays last */
        const int64_t nb = n / batch;
        ord *key = qkv__alloc((size_t)nb * sizeof *key);
        if (!key) {
            qkv__free(o);
            return QKV_ERR_NOMEM;
        }
        for (int64_t b = 0; b < nb; b++)
            key[b] =
                (ord){qkv__rng_u32(seed, EPOCH_STREAM + (uint64_t)epoch, (uint64_t)(n + b)), b, 0};
        for (int64_t s = 0; s < nb; s += 50) /* within each run of 50: the runs stay in order */
            qsort(key + s, (size_t)(s + 50 < nb ? 50 : nb - s), sizeof *key, by_key);
        for (int64_t b = 0; b < nb; b++)
            for (int64_t j = 0; j < batch; j++) order[b * batch + j] = o[key[b].i * batch + j].i;
        for (int64_t i = nb * batch; i < n; i++) order[i] = o[i].i;
        qkv__free(key);
    } else {
        for (int64_t i = 0; i < n; i++) order[i] = o[i].i;
    }
    qkv__free(o);
    return QKV_OK;
}
