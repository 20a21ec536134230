/* cmd_inspect.c — `qkv inspect FILE.safetensors [--json]`: the tensors and metadata of a file.
 *
 * Opening the file runs every validation of the library, so inspect doubles as a checker: a
 * malformed file gives "qkv: FILE: malformed file: <detail>" and exit code 2. Only the public
 * API is used; the JSON output is written by hand with a small string escaper (the CLI does not
 * link jansson). Names and values are valid UTF-8 (the reader guarantees it); the file name may
 * not be, so the escaper replaces invalid bytes with U+FFFD. */
#include "cli.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

void cmd_inspect_help(void) {
    printf("Usage: qkv inspect FILE.safetensors [--json]\n\n"
           "Validate a safetensors file and list its tensors (name, dtype, shape, bytes, offset\n"
           "from the start of the data section, in file order) and its __metadata__ (key = "
           "value),\nwith totals: tensor count, parameter count and data bytes.\n\n"
           "Options:\n"
           "  --json     one JSON object instead of a table:\n"
           "             {\"file\", \"tensor_count\", \"parameter_count\", \"bytes\",\n"
           "              \"tensors\": [{\"name\", \"dtype\", \"shape\", \"bytes\", "
           "\"offset\"}], \"metadata\": {}}\n"
           "  -h, --help show this help\n\n"
           "Exit codes: 0 ok; 2 bad usage, or a file that is missing, unreadable or malformed\n"
           "(the message says what is wrong and where).\n");
}

/* Length of the valid UTF-8 sequence at s, or 0 if s does not start one. */
static size_t utf8_seq(const unsigned char *s) {
    size_t n;
    if (s[0] < 0x80) return 1;
    if (s[0] >= 0xC2 && s[0] <= 0xDF)
        n = 2;
    else if (s[0] >= 0xE0 && s[0] <= 0xEF)
        n = 3;
    else if (s[0] >= 0xF0 && s[0] <= 0xF4)
        n = 4;
    else
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    return n;
}

/* Writes s escaped for a JSON string (quote 1), or for a table cell (quote 0: same escapes
 * for control characters, so a newline in a value cannot break a row). With f NULL nothing is
 * written. Returns the number of characters of the output (its width in a table). */
static size_t put_escaped(FILE *f, const char *s, int quote) {
    const unsigned char *p = (const unsigned char *)s;
    size_t cols = 0;
    if (quote && f) fputc('"', f);
    while (*p) {
        size_t n = utf8_seq(p);
        const char *esc = NULL;
        char buf[8];
        if (n == 0) {
            esc = quote ? "\\ufffd" : "\xEF\xBF\xBD";
            n = 1;
        } else if (*p == '"' && quote) {
            esc = "\\\"";
        } else if (*p == '\\') {
            esc = "\\\\";
        } else if (*p == '\n') {
            esc = "\\n";
        } else if (*p == '\t') {
            esc = "\\t";
        } else if (*p == '\r') {
            esc = "\\r";
        } else if (*p < 0x20) {
            snprintf(buf, sizeof buf, "\\u%04x", *p);
            esc = buf;
        }
        if (esc) {
            if (f) fputs(esc, f);
            cols += esc[0] == '\\' ? strlen(esc) : 1;
        } else {
            if (f) fwrite(p, 1, n, f);
            cols++;
        }
        p += n;
    }
    if (quote && f) fputc('"', f);
    return cols;
}

static void pad(size_t used, size_t width) {
    for (; used < width; used++) putchar(' ');
}

static size_t shape_text(char *buf, size_t cap, const qkv_st_tensor *t) {
    size_t used = 0;
    buf[0] = '\0';
    used += (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < t->ndim && used < cap; d++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%lld", d ? ", " : "",
                                 (long long)t->shape[d]);
    if (used < cap) used += (size_t)snprintf(buf + used, cap - used, "]");
    return used < cap ? used : cap - 1;
}

static uint64_t numel_of(const qkv_st_tensor *t) {
    size_t es = qkv_dtype_size(t->dtype);
    return es ? (uint64_t)t->nbytes / es : 0;
}

static void print_json(const char *path, const qkv_safetensors *st, uint64_t params,
                       uint64_t bytes) {
    size_t n = qkv_safetensors_count(st);
    printf("{\"file\":");
    put_escaped(stdout, path, 1);
    printf(",\"tensor_count\":%zu,\"parameter_count\":%llu,\"bytes\":%llu,\"tensors\":[", n,
           (unsigned long long)params, (unsigned long long)bytes);
    for (size_t i = 0; i < n; i++) {
        const qkv_st_tensor *t = qkv_safetensors_tensor(st, i);
        printf("%s{\"name\":", i ? "," : "");
        put_escaped(stdout, t->name, 1);
        printf(",\"dtype\":\"%s\",\"shape\":[", qkv_dtype_name(t->dtype));
        for (int d = 0; d < t->ndim; d++) printf("%s%lld", d ? "," : "", (long long)t->shape[d]);
        printf("],\"bytes\":%zu,\"offset\":%llu}", t->nbytes, (unsigned long long)t->offset);
    }
    printf("],\"metadata\":{");
    for (size_t i = 0; i < qkv_safetensors_metadata_count(st); i++) {
        const char *k, *v;
        qkv_safetensors_metadata_at(st, i, &k, &v);
        if (i) putchar(',');
        put_escaped(stdout, k, 1);
        putchar(':');
        put_escaped(stdout, v, 1);
    }
    printf("}}\n");
}

static void print_table(const char *path, const qkv_safetensors *st, uint64_t params,
                        uint64_t bytes) {
    size_t n = qkv_safetensors_count(st);
    size_t w_name = 4, w_shape = 5;
    char shape[192];
    for (size_t i = 0; i < n; i++) {
        const qkv_st_tensor *t = qkv_safetensors_tensor(st, i);
        size_t cols = put_escaped(NULL, t->name, 0);
        if (cols > w_name) w_name = cols;
        size_t sl = shape_text(shape, sizeof shape, t);
        if (sl > w_shape) w_shape = sl;
    }
    put_escaped(stdout, path, 0);
    printf(": %zu tensor%s, %llu parameters, %llu bytes of data\n", n, n == 1 ? "" : "s",
           (unsigned long long)params, (unsigned long long)bytes);
    if (n) {
        printf("\n");
        pad((size_t)printf("name"), w_name + 2);
        pad((size_t)printf("dtype"), 9);
        pad((size_t)printf("shape"), w_shape + 2);
        printf("%14s %14s\n", "bytes", "offset");
    }
    for (size_t i = 0; i < n; i++) {
        const qkv_st_tensor *t = qkv_safetensors_tensor(st, i);
        pad(put_escaped(stdout, t->name, 0), w_name + 2);
        pad((size_t)printf("%s", qkv_dtype_name(t->dtype)), 9);
        shape_text(shape, sizeof shape, t);
        pad((size_t)printf("%s", shape), w_shape + 2);
        printf("%14zu %14llu\n", t->nbytes, (unsigned long long)t->offset);
    }
    size_t nm = qkv_safetensors_metadata_count(st);
    printf("\nmetadata (%zu key%s)%s\n", nm, nm == 1 ? "" : "s", nm ? ":" : "");
    for (size_t i = 0; i < nm; i++) {
        const char *k, *v;
        qkv_safetensors_metadata_at(st, i, &k, &v);
        printf("  ");
        put_escaped(stdout, k, 0);
        printf(" = ");
        put_escaped(stdout, v, 0);
        printf("\n");
    }
}

int cmd_inspect(int argc, char **argv) {
    int json = 0, options_done = 0;
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!options_done && strcmp(a, "--") == 0) {
            options_done = 1;
        } else if (!options_done && strcmp(a, "--json") == 0) {
            json = 1;
        } else if (!options_done && a[0] == '-' && a[1] != '\0') {
            return cli_usage_error("inspect", "unknown option '%s'", a);
        } else if (path) {
            return cli_usage_error("inspect", "one file at a time ('%s' and '%s' given)", path, a);
        } else {
            path = a;
        }
    }
    if (!path) return cli_usage_error("inspect", "missing FILE.safetensors argument");

    qkv_safetensors *st = NULL;
    qkv_status s = qkv_safetensors_open(path, &st);
    if (s != QKV_OK) return cli_report(path, s);
    uint64_t params = 0, bytes = 0;
    for (size_t i = 0; i < qkv_safetensors_count(st); i++) {
        const qkv_st_tensor *t = qkv_safetensors_tensor(st, i);
        params += numel_of(t);
        bytes += t->nbytes;
    }
    if (json)
        print_json(path, st, params, bytes);
    else
        print_table(path, st, params, bytes);
    qkv_safetensors_close(st);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "qkv: inspect: cannot write the output\n");
        return EXIT_FAIL;
    }
    return EXIT_OK;
}
