/* serve_check.c — reads qkv serve's replies for tests/cli/test_serve_cli.sh (no Python, no jq in
 * tests):
 *   serve_check embeddings REPLY.json EXPECTED.npy [FIRST_ROW]
 *       the reply is an OpenAI embeddings list whose vector i equals row FIRST_ROW + i of the
 *       float32 [rows, dim] .npy (qkv embed --format npy) bit for bit, as float or base64;
 *       index i, object "embedding", usage.prompt_tokens == total_tokens > 0
 *   serve_check field FILE PATH
 *       prints the value at PATH (keys and array indexes joined by '.', e.g. error.code,
 *       data.0.tokens): strings raw, other values as JSON; exit 1 when absent
 * Exit 0 when the check holds, 1 with the reason on stderr. */
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *fmt, const char *a, long b) {
    fprintf(stderr, "serve_check: ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, "\n");
    return 1;
}

/* The float32 matrix of a .npy file (version 1, '<f4', C order). */
static float *read_npy(const char *path, long *rows, long *cols) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char head[10];
    char hdr[1024];
    float *x = NULL;
    if (fread(head, 1, 10, f) == 10 && memcmp(head, "\x93NUMPY\x01", 7) == 0) {
        size_t hl = head[8] | (size_t)head[9] << 8;
        if (hl < sizeof hdr && fread(hdr, 1, hl, f) == hl) {
            hdr[hl] = '\0';
            const char *sh = strstr(hdr, "'shape': (");
            if (strstr(hdr, "'<f4'") && sh && sscanf(sh, "'shape': (%ld, %ld)", rows, cols) == 2 &&
                *rows >= 0 && *cols > 0 && *rows < (1L << 24) && *cols < (1L << 20)) {
                x = malloc(sizeof(float) * (size_t)(*rows ? *rows : 1) * (size_t)*cols);
                if (x && fread(x, sizeof(float), (size_t)(*rows * *cols), f) !=
                             (size_t)(*rows * *cols)) {
                    free(x);
                    x = NULL;
                }
            }
        }
    }
    fclose(f);
    return x;
}

static int b64(int c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* base64 text to bytes; returns the count, or -1 when malformed. */
static long unbase64(const char *s, unsigned char *out, size_t cap) {
    size_t n = strlen(s), o = 0;
    if (n % 4) return -1;
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        for (int k = 0; k < 4; k++) v[k] = s[i + k] == '=' ? 0 : b64((unsigned char)s[i + k]);
        if (v[0] < 0 || v[1] < 0 || v[2] < 0 || v[3] < 0) return -1;
        unsigned w =
            (unsigned)v[0] << 18 | (unsigned)v[1] << 12 | (unsigned)v[2] << 6 | (unsigned)v[3];
        unsigned char b[3] = {(unsigned char)(w >> 16), (unsigned char)(w >> 8), (unsigned char)w};
        int keep = s[i + 2] == '=' ? 1 : s[i + 3] == '=' ? 2 : 3;
        for (int k = 0; k < keep; k++) {
            if (o == cap) return -1;
            out[o++] = b[k];
        }
    }
    return (long)o;
}

static int check_embeddings(const char *reply, const char *npy, long first) {
    long rows, cols;
    float *want = read_npy(npy, &rows, &cols);
    if (!want) return fail("%s: not a float32 .npy matrix%ld", npy, 0);
    json_error_t e;
    json_t *r = json_load_file(reply, 0, &e);
    int bad = 0;
    if (!r) {
        free(want);
        return fail("%s: not JSON (%ld)", reply, 0);
    }
    json_t *data = json_object_get(r, "data");
    if (!json_is_array(data) || json_array_size(data) == 0 ||
        first + (long)json_array_size(data) > rows)
        bad = fail("%s: 'data' is not an array of at most %ld rows", reply, rows - first);
    if (strcmp(json_string_value(json_object_get(r, "object")) ?: "", "list") != 0)
        bad = fail("%s: object is not \"list\"%ld", reply, 0);
    json_t *usage = json_object_get(r, "usage");
    json_int_t pt = json_integer_value(json_object_get(usage, "prompt_tokens"));
    if (pt <= 0 || pt != json_integer_value(json_object_get(usage, "total_tokens")))
        bad = fail("%s: usage.prompt_tokens %ld is not total_tokens (or not > 0)", reply, (long)pt);
    unsigned char *raw = malloc(sizeof(float) * (size_t)cols + 4);
    for (size_t i = 0; !bad && i < json_array_size(data); i++) {
        json_t *d = json_array_get(data, i);
        const float *w = want + (size_t)(first + (long)i) * (size_t)cols;
        if (json_integer_value(json_object_get(d, "index")) != (json_int_t)i ||
            strcmp(json_string_value(json_object_get(d, "object")) ?: "", "embedding") != 0) {
            bad = fail("%s: data[%ld] has the wrong index or object", reply, (long)i);
            break;
        }
        json_t *v = json_object_get(d, "embedding");
        if (json_is_string(v)) { /* base64 */
            long n = unbase64(json_string_value(v), raw, sizeof(float) * (size_t)cols + 4);
            if (n != (long)sizeof(float) * cols || memcmp(raw, w, (size_t)n) != 0)
                bad = fail("%s: data[%ld] base64 differs from the expected row", reply, (long)i);
            continue;
        }
        if (!json_is_array(v) || (long)json_array_size(v) != cols) {
            bad = fail("%s: data[%ld].embedding has the wrong length", reply, (long)i);
            break;
        }
        for (long c = 0; c < cols; c++) {
            float got = (float)json_number_value(json_array_get(v, (size_t)c));
            if (memcmp(&got, &w[c], sizeof got) != 0) {
                fprintf(stderr, "serve_check: %s: data[%zu][%ld] = %.9g, expected %.9g\n", reply, i,
                        c, (double)got, (double)w[c]);
                bad = 1;
                break;
            }
        }
    }
    free(raw);
    free(want);
    json_decref(r);
    return bad;
}

static int print_field(const char *file, const char *path) {
    json_error_t e;
    json_t *r = json_load_file(file, JSON_DECODE_ANY, &e), *v = r;
    if (!r) return fail("%s: not JSON (%ld)", file, 0);
    char *p = strdup(path), *save = NULL;
    for (char *k = strtok_r(p, ".", &save); v && k; k = strtok_r(NULL, ".", &save)) {
        char *end;
        long i = strtol(k, &end, 10);
        v = json_is_array(v) && !*end ? json_array_get(v, (size_t)i) : json_object_get(v, k);
    }
    free(p);
    int rc = 0;
    if (!v) {
        fprintf(stderr, "serve_check: %s: no %s\n", file, path);
        rc = 1;
    } else if (json_is_string(v))
        printf("%s\n", json_string_value(v));
    else {
        char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
        printf("%s\n", s ? s : "");
        free(s);
    }
    json_decref(r);
    return rc;
}

/* A /classify reply as `qkv classify --all` prints it: per input, label<TAB>score... best
 * first, the scores as float32 with %.7g (the reply's 9 digits give the float back). With
 * `translations`: each data[i].translation on a line, as `qkv translate` prints them. */
static int print_data(const char *file, int classify) {
    json_error_t e;
    json_t *r = json_load_file(file, 0, &e), *data = json_object_get(r, "data");
    if (!json_is_array(data)) {
        json_decref(r);
        return fail("%s: no data array (%ld)", file, 0);
    }
    for (size_t i = 0; i < json_array_size(data); i++) {
        json_t *d = json_array_get(data, i);
        if (!classify) {
            const char *t = json_string_value(json_object_get(d, "translation"));
            printf("%s\n", t ? t : "(no translation)");
            continue;
        }
        json_t *sc = json_object_get(d, "scores");
        for (size_t k = 0; k < json_array_size(sc); k++) {
            json_t *o = json_array_get(sc, k);
            const char *l = json_string_value(json_object_get(o, "label"));
            printf("%s%s\t%.7g", k ? "\t" : "", l ? l : "(no label)",
                   (double)(float)json_number_value(json_object_get(o, "score")));
        }
        printf("\n");
    }
    json_decref(r);
    return 0;
}

/* The lines of a text file as a JSON array for "input": strings, or with `pairs` [text,
 * text_pair] arrays split at the first TAB (as qkv classify --pairs reads them). */
static int print_inputs(const char *file, int pairs) {
    FILE *f = fopen(file, "rb");
    if (!f) return fail("%s: cannot open (%ld)", file, 0);
    json_t *a = json_array();
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) >= 0) {
        if (n && line[n - 1] == '\n') line[--n] = '\0';
        char *tab = pairs ? strchr(line, '\t') : NULL;
        if (tab) {
            *tab = '\0';
            json_array_append_new(a, json_pack("[ss]", line, tab + 1));
        } else
            json_array_append_new(a, json_stringn(line, (size_t)n));
    }
    free(line);
    fclose(f);
    char *s = json_dumps(a, JSON_COMPACT);
    printf("%s\n", s ? s : "null");
    free(s);
    json_decref(a);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 3 && strcmp(argv[1], "inputs") == 0)
        return print_inputs(argv[2], argc > 3 && strcmp(argv[3], "pairs") == 0);
    if (argc == 3 && strcmp(argv[1], "classify") == 0) return print_data(argv[2], 1);
    if (argc == 3 && strcmp(argv[1], "translations") == 0) return print_data(argv[2], 0);
    if (argc >= 4 && strcmp(argv[1], "embeddings") == 0)
        return check_embeddings(argv[2], argv[3], argc > 4 ? atol(argv[4]) : 0);
    if (argc == 4 && strcmp(argv[1], "field") == 0) return print_field(argv[2], argv[3]);
    fprintf(stderr,
            "usage: serve_check embeddings REPLY NPY [FIRST_ROW] | field FILE PATH | classify "
            "REPLY | translations REPLY | inputs FILE [pairs]\n");
    return 2;
}
