/* fuzz_two_files.h — the input layout of the fuzz targets that read a directory of two files
 * (fuzz_dataset: meta.json + a shard; fuzz_model_config: config.json + model.safetensors): a
 * 2-byte little-endian length L, L bytes of the first file, the rest as the second, written into
 * one temporary directory (made on first use, removed at exit). Included once per target. */
#ifndef QKV_FUZZ_TWO_FILES_H
#define QKV_FUZZ_TWO_FILES_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char fuzz_dir[64];
static const char *fuzz_names[2];

static void fuzz_put(const char *name, const uint8_t *p, size_t n) {
    char path[128];
    snprintf(path, sizeof path, "%s/%s", fuzz_dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (n && fwrite(p, 1, n, f) != n) abort();
    fclose(f);
}

static void fuzz_cleanup(void) {
    char path[128];
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", fuzz_dir, fuzz_names[i]);
        unlink(path);
    }
    rmdir(fuzz_dir);
}

/* Writes the two files of data into fuzz_dir (a mkdtemp of tmpl, at most 63 bytes, on the first
 * call); 0 when the input is too short to hold the length. */
static int fuzz_two_files(const char *tmpl, const char *first, const char *second,
                          const uint8_t *data, size_t size) {
    if (!fuzz_dir[0]) {
        snprintf(fuzz_dir, sizeof fuzz_dir, "%s", tmpl);
        if (!mkdtemp(fuzz_dir)) abort();
        fuzz_names[0] = first, fuzz_names[1] = second;
        atexit(fuzz_cleanup);
    }
    if (size < 2) return 0;
    size_t L = (size_t)data[0] | (size_t)data[1] << 8;
    if (L > size - 2) L = size - 2;
    fuzz_put(first, data + 2, L);
    fuzz_put(second, data + 2 + L, size - 2 - L);
    return 1;
}

#endif
