/* json.c — jansson routed through qkv__alloc under one lock, and strict UTF-8 validation.
 * See json.h for why the allocation hooks are swapped in and out around each use. */
#include "io/json.h"

#include "core/alloc.h"
#include "core/error.h"
#include "io/file.h"

#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static pthread_mutex_t json_lock = PTHREAD_MUTEX_INITIALIZER;
static json_malloc_t saved_malloc;
static json_free_t saved_free;
static int alloc_failed; /* guarded by json_lock */

/* jansson is not safe against failed allocations: under fault injection its lexer corrupted
 * the heap ("free(): invalid next size") or hit an assert. So when our hook's allocation fails
 * inside jansson, the request is served by malloc instead and the failure is remembered;
 * callers then report NOMEM (qkv__json_alloc_failed) and throw the tree away. Each block
 * carries a 16-byte header saying where it came from, so the free hook returns it there. */
#define HDR 16

static void *json_hook_alloc(size_t size) {
    if (size > SIZE_MAX - HDR) return NULL;
    unsigned char *p = qkv__alloc(size + HDR);
    unsigned char origin = 0;
    if (!p) {
        alloc_failed = 1;
        p = malloc(size + HDR);
        origin = 1;
        if (!p) return NULL;
    }
    p[0] = origin;
    return p + HDR;
}

static void json_hook_free(void *ptr) {
    if (!ptr) return;
    unsigned char *p = (unsigned char *)ptr - HDR;
    if (p[0])
        free(p);
    else
        qkv__free(p);
}

void qkv__json_begin(void) {
    pthread_mutex_lock(&json_lock);
    json_get_alloc_funcs(&saved_malloc, &saved_free);
    json_set_alloc_funcs(json_hook_alloc, json_hook_free);
    alloc_failed = 0;
}

int qkv__json_alloc_failed(void) { return alloc_failed; }

void qkv__json_end(void) {
    json_set_alloc_funcs(saved_malloc, saved_free);
    pthread_mutex_unlock(&json_lock);
}

qkv_status qkv__json_load_file(const char *path, int optional, json_t **root) {
    *root = NULL;
    struct stat sb;
    if (stat(path, &sb) != 0) {
        if (optional) return QKV_OK;
        return qkv__fail(QKV_ERR_IO, "%s: cannot open", path);
    }
    /* read through qkv__read_regular: a FIFO or a directory is refused, never waited on */
    char *text;
    size_t len;
    QKV_TRY(qkv__read_regular(path, QKV__MAX_JSON_FILE, &text, &len));
    json_error_t err;
    *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
    qkv__free(text);
    if (alloc_failed) {
        json_decref(*root);
        *root = NULL;
        return qkv__fail(QKV_ERR_NOMEM, "%s: out of memory while parsing", path);
    }
    if (*root) return QKV_OK;
    if (err.line < 0 || strstr(err.text, "unable to open"))
        return qkv__fail(QKV_ERR_IO, "%s: cannot read: %s", path, err.text);
    return qkv__fail(QKV_ERR_FORMAT, "%s: line %d: %s", path, err.line, err.text);
}

int qkv__utf8_valid(const void *s, size_t len, size_t *bad) {
    const uint8_t *p = s;
    size_t i = 0;
    while (i < len) {
        uint8_t c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;                     /* continuation bytes */
        uint8_t lo = 0x80, hi = 0xBF; /* allowed range of the first continuation byte */
        if (c >= 0xC2 && c <= 0xDF) {
            n = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 2;
            if (c == 0xE0) lo = 0xA0; /* overlong */
            if (c == 0xED) hi = 0x9F; /* UTF-16 surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3;
            if (c == 0xF0) lo = 0x90; /* overlong */
            if (c == 0xF4) hi = 0x8F; /* past U+10FFFF */
        } else {
            break; /* a continuation byte, 0xC0, 0xC1 or 0xF5..0xFF where a sequence starts */
        }
        if (len - i <= n || p[i + 1] < lo || p[i + 1] > hi) break;
        size_t k = 2;
        while (k <= n && (p[i + k] & 0xC0) == 0x80) k++;
        if (k <= n) break;
        i += n + 1;
    }
    if (i == len) return 1;
    if (bad) *bad = i; /* the first byte of the bad sequence */
    return 0;
}

qkv_status qkv__json_config_path(const char *dir_or_file, char *buf, size_t cap) {
    struct stat sb;
    int file = stat(dir_or_file, &sb) == 0 && S_ISREG(sb.st_mode);
    int n = file ? snprintf(buf, cap, "%s", dir_or_file)
                 : snprintf(buf, cap, "%s/config.json", dir_or_file);
    if (n < 0 || (size_t)n >= cap)
        return qkv__fail(QKV_ERR_INVALID_ARG, "model directory path is too long");
    return QKV_OK;
}

/* ---------------------------------------------------------------- typed config fields */

/* obj[key], or NULL when absent or null */
static const json_t *field(const json_t *obj, const char *key) {
    const json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
    return v && !json_is_null(v) ? v : NULL;
}

const char *qkv__json_type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

qkv_status qkv__json_int(const char *path, const json_t *obj, const char *key, int required,
                         int64_t def, int64_t lo, int64_t hi, int64_t *out) {
    const json_t *v = field(obj, key);
    if (!v) {
        if (required)
            return qkv__fail(QKV_ERR_FORMAT, "%s: missing required field '%s'", path, key);
        *out = def;
        return QKV_OK;
    }
    if (!json_is_integer(v))
        return qkv__fail(QKV_ERR_FORMAT, "%s: field '%s' must be an integer, not %s", path, key,
                         qkv__json_type_name(v));
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return qkv__fail(QKV_ERR_UNSUPPORTED, "%s: field '%s' = %lld is outside [%lld, %lld]", path,
                         key, (long long)x, (long long)lo, (long long)hi);
    *out = (int64_t)x;
    return QKV_OK;
}

qkv_status qkv__json_num(const char *path, const json_t *obj, const char *key, double def,
                         double lo, double hi, double *out) {
    const json_t *v = field(obj, key);
    *out = def;
    if (!v) return QKV_OK;
    if (!json_is_number(v))
        return qkv__fail(QKV_ERR_FORMAT, "%s: field '%s' must be a number, not %s", path, key,
                         qkv__json_type_name(v));
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi)) /* also NaN; jansson reads 1e999 as a parse error already */
        return qkv__fail(QKV_ERR_FORMAT, "%s: field '%s' = %g is outside [%g, %g]", path, key, x,
                         lo, hi);
    *out = x;
    return QKV_OK;
}

qkv_status qkv__json_bool(const char *path, const json_t *obj, const char *key, int def, int *out) {
    const json_t *v = field(obj, key);
    *out = def;
    if (!v) return QKV_OK;
    if (!json_is_boolean(v))
        return qkv__fail(QKV_ERR_FORMAT, "%s: field '%s' must be true or false, not %s", path, key,
                         qkv__json_type_name(v));
    *out = json_is_true(v);
    return QKV_OK;
}

qkv_status qkv__json_str(const char *path, const json_t *obj, const char *key, const char *def,
                         const char **out) {
    const json_t *v = field(obj, key);
    *out = def;
    if (!v) return QKV_OK;
    if (!json_is_string(v))
        return qkv__fail(QKV_ERR_FORMAT, "%s: field '%s' must be a string, not %s", path, key,
                         qkv__json_type_name(v));
    *out = json_string_value(v);
    return QKV_OK;
}
