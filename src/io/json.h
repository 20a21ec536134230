/* json.h — jansson behind qkv's allocator hook, and a strict UTF-8 check.
 *
 * jansson's allocation functions are process-global, so every qkv use of jansson runs between
 * qkv__json_begin() and qkv__json_end(). They hold one lock, point jansson at qkv__alloc /
 * qkv__free (so the fail-the-Nth-allocation tests reach JSON too) and restore whatever the host
 * program had set. Every json_t made inside must be released before qkv__json_end(). The lock
 * only orders qkv's own uses; a host thread using jansson at the same moment is not covered. */
#ifndef QKV_IO_JSON_H
#define QKV_IO_JSON_H

#include "qkv.h"

#include <stddef.h>
#include <stdint.h>

struct json_t;

void qkv__json_begin(void);
/* 1 if an allocation made by jansson failed since qkv__json_begin(). jansson reports some
 * out-of-memory cases as parse errors; this tells NOMEM from a malformed document. */
int qkv__json_alloc_failed(void);
void qkv__json_end(void);

/* Reads and parses the JSON file path (between qkv__json_begin/end; rejects duplicate keys).
 * A missing file: QKV_OK with *root NULL if optional, else IO. Malformed: FORMAT with the line.
 * Any allocation that failed inside jansson: NOMEM (the tree is thrown away). The caller
 * json_decref()s *root. */
qkv_status qkv__json_load_file(const char *path, int optional, struct json_t **root);
#define QKV__MAX_JSON_FILE ((size_t)1 << 30) /* larger JSON files are refused unread */
/* The config.json of a model: dir_or_file itself when it is a regular file, else
 * dir_or_file/config.json. INVALID_ARG if the path does not fit in cap. */
qkv_status qkv__json_config_path(const char *dir_or_file, char *buf, size_t cap);

/* Typed fields of a JSON object (config files). Each reads obj[key] (obj may be NULL): absent
 * or null gives def (or, when required, FORMAT "missing required field"); a value of another
 * JSON type is refused with FORMAT naming path and key, never replaced by the default; a number
 * outside [lo, hi] is refused naming the field and the range (UNSUPPORTED for an integer, as
 * for a size qkv does not run; FORMAT for a real). qkv__json_num also refuses what is not
 * finite; pass hi = FLT_MAX for a value stored as a float. qkv__json_str's *out points into
 * the tree. */
qkv_status qkv__json_int(const char *path, const struct json_t *obj, const char *key, int required,
                         int64_t def, int64_t lo, int64_t hi, int64_t *out);
qkv_status qkv__json_num(const char *path, const struct json_t *obj, const char *key, double def,
                         double lo, double hi, double *out);
qkv_status qkv__json_bool(const char *path, const struct json_t *obj, const char *key, int def,
                          int *out);
qkv_status qkv__json_str(const char *path, const struct json_t *obj, const char *key,
                         const char *def, const char **out);

/* "an object", "a string", "a boolean"...: a value's JSON type, for messages. */
const char *qkv__json_type_name(const struct json_t *v);

/* Strict UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing past U+10FFFF). Returns 1
 * if s[0..len) is valid; else 0 and, if bad is not NULL, the offset of the first bad byte. */
int qkv__utf8_valid(const void *s, size_t len, size_t *bad);

#endif
