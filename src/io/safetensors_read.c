/* safetensors_read.c — opening and validating safetensors files (qkv_safetensors_*).
 *
 * The file is mmapped read-only and private; tensor data pointers point into the mapping, so
 * opening a model copies only names and metadata. Validation is all-or-nothing and happens at
 * open. Once open succeeds: every tensor lies inside the file, the tensors tile the data
 * section exactly (sorted by offset, from 0, no gap, no overlap, no trailing byte), every size
 * fits in size_t, and names and metadata are valid UTF-8 without NUL bytes.
 *
 * The checks are those of the reference implementation (Hugging Face safetensors: header length
 * cap, UTF-8, JSON, known dtypes, shape x dtype size == span, contiguous offsets, exact file
 * size, string-only __metadata__) plus stricter ones: duplicate names, unknown keys in a tensor
 * entry, entries of the wrong JSON type, at most QKV_MAX_DIMS dims. Every message names the
 * file and the tensor, says what was expected and found, and gives a byte offset where one
 * means something.
 *
 * Status policy: anything wrong inside the file is QKV_ERR_FORMAT (including a shape whose
 * size overflows: no file can hold it); OVERFLOW only when a valid file is too big for this
 * machine's size_t; IO for open/stat/mmap; NOMEM for allocation failures (also inside jansson). */
#include "io/file.h"
#include "io/safetensors.h"

#include "core/alloc.h"
#include "core/error.h"
#include "io/json.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------- the format's dtypes */

/* safetensors spells dtypes exactly as qkv_dtype_name does (core/dtype.c owns the table). */
int qkv__st_dtype_parse(const char *name, qkv_dtype *out) {
    for (int i = 0; i < QKV_DTYPE_COUNT_; i++)
        if (strcmp(name, qkv_dtype_name((qkv_dtype)i)) == 0) {
            *out = (qkv_dtype)i;
            return 1;
        }
    return 0;
}

const char *qkv__st_dtype_name(qkv_dtype t) { return qkv_dtype_size(t) ? qkv_dtype_name(t) : NULL; }

size_t qkv__st_dtype_size(qkv_dtype t) { return qkv_dtype_size(t); }

const char *qkv__st_dtype_list(void) {
    return "BOOL, U8, I8, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64, F8_E4M3, F8_E5M2";
}

/* ---------------------------------------------------------------- the handle */

typedef struct st_meta {
    const char *key, *value;
} st_meta;

struct qkv_safetensors {
    void *map; /* the mmap of qkv_safetensors_open, or NULL */
    size_t map_len;
    qkv_st_tensor *tensors; /* [n_tensors], ascending offsets */
    size_t n_tensors;
    const qkv_st_tensor **by_name; /* [n_tensors], sorted by name: _find is a binary search */
    st_meta *meta;                 /* [n_meta], sorted by key */
    size_t n_meta;
    char *strings; /* every name, key and value, NUL-terminated, in one block */
};

/* What the parser knows about the buffer; `what` names it in messages. */
typedef struct st_src {
    const char *what;
    const uint8_t *buf;
    size_t header_len; /* N */
    size_t data_len;   /* len - 8 - N */
} st_src;

static uint64_t read_le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static const char *json_kind(const json_t *j) {
    switch (json_typeof(j)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL: return "real number";
    case JSON_TRUE: return "true";
    case JSON_FALSE: return "false";
    case JSON_NULL: return "null";
    }
    return "value";
}

/* "[2, 3, 4]" into buf (always NUL-terminated; "..." if it does not fit). */
static void format_shape(char *buf, size_t cap, const int64_t *shape, int ndim) {
    size_t used = 0;
    int w = snprintf(buf, cap, "[");
    used = w > 0 ? (size_t)w : 0;
    for (int d = 0; d < ndim && used < cap; d++) {
        w = snprintf(buf + used, cap - used, "%s%lld", d ? ", " : "", (long long)shape[d]);
        if (w < 0) break;
        used += (size_t)w;
    }
    if (used < cap) snprintf(buf + used, cap - used, "]");
}

/* ---------------------------------------------------------------- one tensor entry */

/* A non-negative JSON integer, or a FORMAT failure describing `field` of tensor `name`. */
static qkv_status get_uint(const st_src *s, const char *name, const char *field, size_t index,
                           const json_t *j, uint64_t *out) {
    if (!json_is_integer(j))
        return qkv__fail(QKV_ERR_FORMAT,
                         "%s: tensor '%s': %s[%zu] is a JSON %s, expected a non-negative integer",
                         s->what, name, field, index, json_kind(j));
    json_int_t v = json_integer_value(j);
    if (v < 0)
        return qkv__fail(QKV_ERR_FORMAT,
                         "%s: tensor '%s': %s[%zu] is %lld, expected a non-negative integer",
                         s->what, name, field, index, (long long)v);
    *out = (uint64_t)v;
    return QKV_OK;
}

static qkv_status parse_tensor(const st_src *s, const char *name, const json_t *e,
                               qkv_st_tensor *t) {
    if (!json_is_object(e))
        return qkv__fail(QKV_ERR_FORMAT, "%s: tensor '%s': entry is a JSON %s, expected an object",
                         s->what, name, json_kind(e));
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)e, key, v) {
        if (strcmp(key, "dtype") != 0 && strcmp(key, "shape") != 0 &&
            strcmp(key, "data_offsets") != 0)
            return qkv__fail(QKV_ERR_FORMAT,
                             "%s: tensor '%s': unknown key '%s' (expected only dtype, shape and "
                             "data_offsets)",
                             s->what, name, key);
    }
    const json_t *jd = json_object_get(e, "dtype"), *js = json_object_get(e, "shape");
    const json_t *jo = json_object_get(e, "data_offsets");
    const char *missing = !jd ? "dtype" : !js ? "shape" : !jo ? "data_offsets" : NULL;
    if (missing)
        return qkv__fail(QKV_ERR_FORMAT, "%s: tensor '%s': missing key '%s'", s->what, name,
                         missing);

    /* dtype */
    if (!json_is_string(jd))
        return qkv__fail(QKV_ERR_FORMAT, "%s: tensor '%s': dtype is a JSON %s, expected a string",
                         s->what, name, json_kind(jd));
    if (!qkv__st_dtype_parse(json_string_value(jd), &t->dtype))
        return qkv__fail(QKV_ERR_FORMAT, "%s: tensor '%s': unknown dtype '%s' (expected one of %s)",
                         s->what, name, json_string_value(jd), qkv__st_dtype_list());
    size_t esize = qkv__st_dtype_size(t->dtype);

    /* shape: the element count is multiplied in order with overflow checks, as the reference
     * does, and must stay within int64_t (qkv's element counts) */
    if (!json_is_array(js))
        return qkv__fail(QKV_ERR_FORMAT, "%s: tensor '%s': shape is a JSON %s, expected an array",
                         s->what, name, json_kind(js));
    size_t ndim = json_array_size(js);
    if (ndim > QKV_MAX_DIMS)
        return qkv__fail(QKV_ERR_FORMAT,
                         "%s: tensor '%s': shape has %zu dims, more than the %d qkv supports",
                         s->what, name, ndim, QKV_MAX_DIMS);
    t->ndim = (int)ndim;
    uint64_t numel = 1;
    int overflow = 0;
    for (size_t d = 0; d < ndim; d++) {
        uint64_t dim = 0;
        QKV_TRY(get_uint(s, name, "shape", d, json_array_get(js, d), &dim));
        t->shape[d] = (int64_t)dim;
        if (__builtin_mul_overflow(numel, dim, &numel) || numel > (uint64_t)INT64_MAX) overflow = 1;
    }
    char shape_text[192];
    format_shape(shape_text, sizeof shape_text, t->shape, t->ndim);
    uint64_t nbytes;
    if (overflow || __builtin_mul_overflow(numel, (uint64_t)esize, &nbytes))
        return qkv__fail(QKV_ERR_FORMAT, "%s: tensor '%s': shape %s of %s: byte size overflows",
                         s->what, name, shape_text, json_string_value(jd));

    /* data_offsets */
    if (!json_is_array(jo) || json_array_size(jo) != 2)
        return qkv__fail(QKV_ERR_FORMAT,
                         "%s: tensor '%s': data_offsets is a JSON %s%s, expected an array "
                         "[begin, end]",
                         s->what, name, json_kind(jo),
                         json_is_array(jo) ? " of the wrong length" : "");
    uint64_t begin = 0, end = 0;
    QKV_TRY(get_uint(s, name, "data_offsets", 0, json_array_get(jo, 0), &begin));
    QKV_TRY(get_uint(s, name, "data_offsets", 1, json_array_get(jo, 1), &end));
    if (begin > end)
        return qkv__fail(QKV_ERR_FORMAT,
                         "%s: tensor '%s': data_offsets [%llu, %llu]: begin is after end", s->what,
                         name, (unsigned long long)begin, (unsigned long long)end);
    if (end - begin != nbytes)
        return qkv__fail(QKV_ERR_FORMAT,
                         "%s: tensor '%s': shape %s of %s needs %llu bytes, but data_offsets "
                         "[%llu, %llu] span %llu",
                         s->what, name, shape_text, json_string_value(jd),
                         (unsigned long long)nbytes, (unsigned long long)begin,
                         (unsigned long long)end, (unsigned long long)(end - begin));
    if (end > s->data_len)
        return qkv__fail(QKV_ERR_FORMAT,
                         "%s: tensor '%s': data_offsets [%llu, %llu] run past the end of the data "
                         "section (%zu bytes from file byte offset %zu); is the file truncated?",
                         s->what, name, (unsigned long long)begin, (unsigned long long)end,
                         s->data_len, QKV_ST_PREFIX + s->header_len);
    t->offset = begin;
    t->nbytes = (size_t)nbytes;
    t->data = s->buf + QKV_ST_PREFIX + s->header_len + begin;
    return QKV_OK;
}

/* ---------------------------------------------------------------- the whole header */

static char *pool_put(char **pool, const char *str, size_t n) {
    char *dst = *pool;
    memcpy(dst, str, n);
    dst[n] = '\0';
    *pool += n + 1;
    return dst;
}

static qkv_status nomem(const st_src *s) {
    return qkv__fail(QKV_ERR_NOMEM, "%s: out of memory reading the %zu-byte header", s->what,
                     s->header_len);
}

/* Fills st from the parsed header (names and metadata copied; tensors in header order). */
static qkv_status load_header(qkv_safetensors *st, const st_src *s, json_t *root) {
    if (!json_is_object(root))
        return qkv__fail(QKV_ERR_FORMAT, "%s: header is a JSON %s, expected an object", s->what,
                         json_kind(root));
    const json_t *meta = json_object_get(root, QKV_ST_METADATA_KEY);
    size_t n_tensors = json_object_size(root) - (meta != NULL);
    size_t pool_size = 1, n_meta = 0;
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (v != meta) pool_size += strlen(key) + 1;
    }
    if (meta) {
        if (!json_is_object(meta))
            return qkv__fail(QKV_ERR_FORMAT, "%s: __metadata__ is a JSON %s, expected an object",
                             s->what, json_kind(meta));
        json_object_foreach((json_t *)meta, key, v) {
            if (!json_is_string(v))
                return qkv__fail(QKV_ERR_FORMAT,
                                 "%s: __metadata__ value of '%s' is a JSON %s, expected a string",
                                 s->what, key, json_kind(v));
            pool_size += strlen(key) + 1 + json_string_length(v) + 1;
            n_meta++;
        }
    }
    /* The header is at most 100 MB, so none of these sizes can overflow. */
    st->tensors = qkv__calloc(n_tensors, sizeof *st->tensors);
    st->by_name = qkv__calloc(n_tensors, sizeof *st->by_name);
    st->meta = qkv__calloc(n_meta, sizeof *st->meta);
    st->strings = qkv__alloc(pool_size);
    if (!st->tensors || !st->by_name || !st->meta || !st->strings) return nomem(s);
    char *pool = st->strings;
    if (meta) {
        json_object_foreach((json_t *)meta, key, v) {
            st_meta *m = &st->meta[st->n_meta++];
            m->key = pool_put(&pool, key, strlen(key));
            m->value = pool_put(&pool, json_string_value(v), json_string_length(v));
        }
    }
    json_object_foreach(root, key, v) {
        if (v == meta) continue;
        qkv_st_tensor *t = &st->tensors[st->n_tensors];
        QKV_TRY(parse_tensor(s, key, v, t));
        t->name = pool_put(&pool, key, strlen(key));
        st->n_tensors++;
    }
    return QKV_OK;
}

/* File order: by offsets; zero-size tensors sharing an offset keep their header order (the
 * pointers are into the header-order array), so a file lists tensors as its writer did. */
static int cmp_offset(const void *a, const void *b) {
    const qkv_st_tensor *x = *(const qkv_st_tensor *const *)a,
                        *y = *(const qkv_st_tensor *const *)b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    if (x->nbytes != y->nbytes) return x->nbytes < y->nbytes ? -1 : 1;
    return x < y ? -1 : x > y;
}

static int cmp_name(const void *a, const void *b) {
    const qkv_st_tensor *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

static int cmp_meta(const void *a, const void *b) {
    const st_meta *x = a, *y = b;
    return strcmp(x->key, y->key);
}

/* Sorts into file order and checks that the tensors tile the data section exactly. */
static qkv_status check_layout(qkv_safetensors *st, const st_src *s) {
    const qkv_st_tensor **order = st->by_name; /* used as scratch first */
    for (size_t i = 0; i < st->n_tensors; i++) order[i] = &st->tensors[i];
    if (st->n_tensors) qsort(order, st->n_tensors, sizeof *order, cmp_offset);
    qkv_st_tensor *sorted = qkv__calloc(st->n_tensors, sizeof *sorted);
    if (!sorted) return nomem(s);
    for (size_t i = 0; i < st->n_tensors; i++) sorted[i] = *order[i];
    qkv__free(st->tensors);
    st->tensors = sorted;
    uint64_t next = 0; /* where the next tensor must begin */
    for (size_t i = 0; i < st->n_tensors; i++) {
        const qkv_st_tensor *t = &st->tensors[i];
        if (t->offset > next) {
            if (i == 0)
                return qkv__fail(QKV_ERR_FORMAT,
                                 "%s: gap in data offsets: the first tensor '%s' begins at data "
                                 "offset %llu, expected 0 (file byte offset %zu)",
                                 s->what, t->name, (unsigned long long)t->offset,
                                 QKV_ST_PREFIX + s->header_len);
            return qkv__fail(QKV_ERR_FORMAT,
                             "%s: gap in data offsets: tensor '%s' ends at %llu but the next "
                             "tensor '%s' begins at %llu",
                             s->what, st->tensors[i - 1].name, (unsigned long long)next, t->name,
                             (unsigned long long)t->offset);
        }
        if (t->offset < next) {
            const qkv_st_tensor *p = &st->tensors[i - 1];
            return qkv__fail(
                QKV_ERR_FORMAT, "%s: tensors '%s' [%llu, %llu] and '%s' [%llu, %llu] overlap",
                s->what, p->name, (unsigned long long)p->offset,
                (unsigned long long)p->offset + p->nbytes, t->name, (unsigned long long)t->offset,
                (unsigned long long)t->offset + t->nbytes);
        }
        next = t->offset + t->nbytes;
    }
    if (next != s->data_len)
        return qkv__fail(QKV_ERR_FORMAT,
                         "%s: %llu trailing bytes after the last tensor: the tensors cover %llu "
                         "bytes of the %zu-byte data section (trailing data from file byte offset "
                         "%llu)",
                         s->what, (unsigned long long)(s->data_len - next),
                         (unsigned long long)next, s->data_len,
                         (unsigned long long)(QKV_ST_PREFIX + s->header_len + next));
    for (size_t i = 0; i < st->n_tensors; i++) st->by_name[i] = &st->tensors[i];
    if (st->n_tensors) qsort(st->by_name, st->n_tensors, sizeof *st->by_name, cmp_name);
    for (size_t i = 1; i < st->n_tensors; i++) /* jansson already refused these; stay safe */
        if (strcmp(st->by_name[i - 1]->name, st->by_name[i]->name) == 0)
            return qkv__fail(QKV_ERR_FORMAT, "%s: duplicate tensor name '%s'", s->what,
                             st->by_name[i]->name);
    if (st->n_meta) qsort(st->meta, st->n_meta, sizeof *st->meta, cmp_meta);
    return QKV_OK;
}

static qkv_status load(qkv_safetensors *st, const uint8_t *buf, size_t len, const char *what) {
    st_src s = {what, buf, 0, 0};
    if (len < QKV_ST_PREFIX)
        return qkv__fail(QKV_ERR_FORMAT,
                         "%s: file is %zu bytes, too short for the 8-byte header length", what,
                         len);
    uint64_t n = read_le64(buf);
    if (n > QKV_ST_MAX_HEADER)
        return qkv__fail(QKV_ERR_FORMAT,
                         "%s: header length %llu (byte offset 0) is over the limit of %llu bytes",
                         what, (unsigned long long)n, QKV_ST_MAX_HEADER);
    if (n > len - QKV_ST_PREFIX)
        return qkv__fail(QKV_ERR_FORMAT,
                         "%s: header length %llu (byte offset 0) runs past the end of the file: "
                         "only %zu bytes follow it",
                         what, (unsigned long long)n, len - QKV_ST_PREFIX);
    s.header_len = (size_t)n;
    s.data_len = len - QKV_ST_PREFIX - s.header_len;
    const char *header = (const char *)buf + QKV_ST_PREFIX;
    size_t bad;
    if (!qkv__utf8_valid(header, s.header_len, &bad))
        return qkv__fail(QKV_ERR_FORMAT,
                         "%s: header is not valid UTF-8: byte 0x%02x at byte offset %zu", what,
                         (unsigned)(uint8_t)header[bad], QKV_ST_PREFIX + bad);

    qkv__json_begin();
    json_error_t err;
    json_t *root = json_loadb(header, s.header_len, JSON_REJECT_DUPLICATES, &err);
    qkv_status status;
    if (qkv__json_alloc_failed()) {
        /* jansson ignores some failed allocations (its lexer's token buffer) and may then
         * return a damaged tree: any failure inside the parse means out of memory. */
        status = nomem(&s);
    } else if (!root) {
        size_t at = QKV_ST_PREFIX + (err.position > 0 ? (size_t)err.position : 0);
        if (json_error_code(&err) == json_error_duplicate_key)
            status =
                qkv__fail(QKV_ERR_FORMAT, "%s: duplicate name in header near byte offset %zu: %s",
                          what, at, err.text);
        else
            status =
                qkv__fail(QKV_ERR_FORMAT, "%s: header is not valid JSON near byte offset %zu: %s",
                          what, at, err.text);
    } else {
        status = load_header(st, &s, root);
    }
    json_decref(root);
    qkv__json_end();
    QKV_TRY(status);
    return check_layout(st, &s);
}

/* ---------------------------------------------------------------- public API */

void qkv__safetensors_drop_pages(const qkv_safetensors *st, const void *data, size_t nbytes) {
    if (!st || !st->map || !data || !nbytes) return; /* a caller's buffer is never touched */
    uintptr_t m0 = (uintptr_t)st->map, m1 = m0 + st->map_len;
    uintptr_t d0 = (uintptr_t)data, d1 = d0 + nbytes;
    if (d0 < m0 || d1 > m1) return;
    long ps = sysconf(_SC_PAGESIZE);
    if (ps <= 0) return;
    uintptr_t page = (uintptr_t)ps;
    /* whole pages only: the partial pages at both ends hold neighbouring tensors */
    uintptr_t a = (d0 + page - 1) / page * page, b = d1 / page * page;
    if (a < b) (void)madvise((void *)a, b - a, MADV_DONTNEED);
}

void qkv_safetensors_close(qkv_safetensors *st) {
    if (!st) return;
    if (st->map) munmap(st->map, st->map_len);
    qkv__free(st->tensors);
    qkv__free(st->by_name);
    qkv__free(st->meta);
    qkv__free(st->strings);
    qkv__free(st);
}

static qkv_status finish(qkv_safetensors *st, qkv_status s, qkv_safetensors **out) {
    if (s != QKV_OK) {
        qkv_safetensors_close(st);
        return s;
    }
    *out = st;
    return QKV_OK;
}

qkv_status qkv_safetensors_open_memory(const void *buf, size_t len, qkv_safetensors **out) {
    if (!out) return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_safetensors_open_memory: out is NULL");
    *out = NULL;
    if (!buf && len)
        return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_safetensors_open_memory: buf is NULL");
    static const uint8_t empty[1];
    qkv_safetensors *st = qkv__calloc(1, sizeof *st);
    if (!st) return qkv__fail(QKV_ERR_NOMEM, "<memory>: out of memory");
    return finish(st, load(st, buf ? buf : empty, len, "<memory>"), out);
}

qkv_status qkv_safetensors_open(const char *path, qkv_safetensors **out) {
    if (!out) return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_safetensors_open: out is NULL");
    *out = NULL;
    if (!path) return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_safetensors_open: path is NULL");
    char ebuf[128];
    int fd;
    uint64_t fsize;
    QKV_TRY(qkv__open_regular(path, 0, &fd, &fsize)); /* a FIFO or directory: refused at once */
    if (fsize > SIZE_MAX) {
        close(fd);
        return qkv__fail(QKV_ERR_OVERFLOW, "%s: %llu bytes do not fit in this machine's memory",
                         path, (unsigned long long)fsize);
    }
    size_t len = (size_t)fsize;
    void *map = NULL;
    if (len > 0) {
        map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            qkv_status s = qkv__fail(QKV_ERR_IO, "%s: cannot map %zu bytes: %s", path, len,
                                     strerror_r(errno, ebuf, sizeof ebuf));
            close(fd);
            return s;
        }
    }
    close(fd); /* the mapping keeps the file alive */
    qkv_safetensors *st = qkv__calloc(1, sizeof *st);
    if (!st) {
        if (map) munmap(map, len);
        return qkv__fail(QKV_ERR_NOMEM, "%s: out of memory", path);
    }
    st->map = map;
    st->map_len = len;
    static const uint8_t empty[1];
    return finish(st, load(st, map ? map : empty, len, path), out);
}

size_t qkv_safetensors_count(const qkv_safetensors *st) { return st ? st->n_tensors : 0; }

const qkv_st_tensor *qkv_safetensors_tensor(const qkv_safetensors *st, size_t i) {
    return st && i < st->n_tensors ? &st->tensors[i] : NULL;
}

const qkv_st_tensor *qkv_safetensors_find(const qkv_safetensors *st, const char *name) {
    if (!st || !name) return NULL;
    size_t lo = 0, hi = st->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, st->by_name[mid]->name);
        if (c == 0) return st->by_name[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

size_t qkv_safetensors_metadata_count(const qkv_safetensors *st) { return st ? st->n_meta : 0; }

void qkv_safetensors_metadata_at(const qkv_safetensors *st, size_t i, const char **key,
                                 const char **value) {
    const st_meta *m = st && i < st->n_meta ? &st->meta[i] : NULL;
    if (key) *key = m ? m->key : NULL;
    if (value) *value = m ? m->value : NULL;
}

const char *qkv_safetensors_metadata_get(const qkv_safetensors *st, const char *key) {
    if (!st || !key) return NULL;
    size_t lo = 0, hi = st->n_meta;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(key, st->meta[mid].key);
        if (c == 0) return st->meta[mid].value;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}
