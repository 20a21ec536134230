/* json_valid.c — a strict JSON check for the CLI tests (no Python in tests): each FILE (or
 * each line of it with --lines) must parse with jansson, which accepts only valid UTF-8 and
 * no NaN / Infinity tokens. Exit 0 if all parse, else 1 with the first failure on stderr. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    int lines = argc > 1 && strcmp(argv[1], "--lines") == 0;
    if (argc < 2 + lines) {
        fprintf(stderr, "usage: json_valid [--lines] FILE...\n");
        return 2;
    }
    for (int i = 1 + lines; i < argc; i++) {
        json_error_t err;
        if (!lines) {
            json_t *j = json_load_file(argv[i], JSON_DECODE_ANY, &err);
            if (!j) {
                fprintf(stderr, "%s:%d: %s\n", argv[i], err.line, err.text);
                return 1;
            }
            json_decref(j);
            continue;
        }
        FILE *f = fopen(argv[i], "rb");
        if (!f) {
            fprintf(stderr, "%s: cannot open\n", argv[i]);
            return 1;
        }
        char *buf = NULL;
        size_t cap = 0;
        ssize_t n;
        long no = 0;
        while ((n = getline(&buf, &cap, f)) >= 0) {
            no++;
            json_t *j = json_loadb(buf, (size_t)n, JSON_DECODE_ANY, &err);
            if (!j) {
                fprintf(stderr, "%s: line %ld: %s\n", argv[i], no, err.text);
                free(buf);
                fclose(f);
                return 1;
            }
            json_decref(j);
        }
        free(buf);
        fclose(f);
        if (no == 0) {
            fprintf(stderr, "%s: no lines\n", argv[i]);
            return 1;
        }
    }
    return 0;
}
