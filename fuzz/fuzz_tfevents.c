/* fuzz_tfevents.c — libFuzzer target for reading back a TensorBoard event file on resume
 * (qkv__tb_open's cut back, src/io/tfevents.c) and for the record reader.
 *
 * Input: the first byte is the step resumed from (0..255), the rest is an existing
 * events.out.tfevents.* file of a run directory. Whatever it holds, qkv__tb_open either fails
 * with a status or leaves a file that reads whole: a file_version record first, then only
 * Events of steps <= the step resumed from, no truncated or damaged record. A broken promise
 * aborts (a crash for libFuzzer). */
#include "fuzz_require.h"
#include "io/tfevents.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64];

/* at exit: the run directory and whatever qkv__tb_open left in it */
static void remove_dir(void) {
    DIR *d = opendir(dir);
    if (!d) return;
    char path[512];
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
    closedir(d);
    rmdir(dir);
}

static uint8_t *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    REQUIRE(f);
    uint8_t *b = NULL;
    size_t cap = 0;
    *n = 0;
    for (;;) {
        if (*n == cap) {
            cap = cap ? 2 * cap : 4096;
            b = realloc(b, cap);
            REQUIRE(b);
        }
        size_t got = fread(b + *n, 1, cap - *n, f);
        if (!got) break;
        *n += got;
    }
    fclose(f);
    return b;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "%s", "/tmp/qkv_fuzz_tfevents.XXXXXX");
        REQUIRE(mkdtemp(dir));
        atexit(remove_dir);
    }
    /* the record reader alone, over the raw bytes: never past the end */
    size_t off = 0, n;
    const uint8_t *rec;
    while (qkv__tfrecord_next(data, size, &off, &rec, &n) == QKV__TFR_OK) REQUIRE(off <= size);

    if (size < 1) return 0;
    const int64_t upto = data[0];
    char path[128];
    snprintf(path, sizeof path, "%s/" QKV__TB_PREFIX "1700000000.fuzz", dir);
    FILE *f = fopen(path, "wb");
    REQUIRE(f);
    if (size > 1) REQUIRE(fwrite(data + 1, 1, size - 1, f) == size - 1);
    fclose(f);
    qkv__tb_writer *w = NULL;
    qkv_status s = qkv__tb_open(dir, upto, &w);
    if (s == QKV_OK) {
        REQUIRE(w && strcmp(qkv__tb_path(w), path) == 0);
        REQUIRE(qkv__tb_close(w) == QKV_OK);
        size_t len;
        uint8_t *b = slurp(path, &len);
        off = 0;
        int k = 0;
        qkv__tfr r;
        while ((r = qkv__tfrecord_next(b, len, &off, &rec, &n)) == QKV__TFR_OK) {
            int64_t step;
            int version;
            REQUIRE(qkv__tb_event_step(rec, n, &step, &version) == QKV_OK);
            REQUIRE(version == (k == 0));
            REQUIRE(version || step <= upto);
            k++;
        }
        REQUIRE(r == QKV__TFR_END && k >= 1);
        free(b);
    } else {
        REQUIRE(w == NULL);
    }
    unlink(path);
    return 0;
}
