/* test_safetensors_malformed.c — every file of tests/fixtures/safetensors/malformed is refused
 * with the status and message its MANIFEST.tsv line names, through qkv_safetensors_open and
 * qkv_safetensors_open_memory alike. The files come from tools/gen_safetensors_fixtures.py. */
#include "qkv.h"
#include "st_spec.h"
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static qkv_status status_by_name(const char *name) {
    static const struct {
        const char *name;
        qkv_status s;
    } names[] = {
        {"QKV_OK", QKV_OK},
        {"QKV_ERR_INVALID_ARG", QKV_ERR_INVALID_ARG},
        {"QKV_ERR_NOMEM", QKV_ERR_NOMEM},
        {"QKV_ERR_IO", QKV_ERR_IO},
        {"QKV_ERR_FORMAT", QKV_ERR_FORMAT},
        {"QKV_ERR_UNSUPPORTED", QKV_ERR_UNSUPPORTED},
        {"QKV_ERR_NOT_FOUND", QKV_ERR_NOT_FOUND},
        {"QKV_ERR_OVERFLOW", QKV_ERR_OVERFLOW},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(names[i].name, name) == 0) return names[i].s;
    return (qkv_status)-1;
}

static void check_one(const char *dir, const char *file, qkv_status want, const char *phrase) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    qkv_safetensors *st = (qkv_safetensors *)&st;
    qkv_status s = qkv_safetensors_open(path, &st);
    CHECK_MSG(s == want, "%s: open returned %s, expected %s (%s)", file, qkv_strerror(s),
              qkv_strerror(want), qkv_last_error());
    CHECK_MSG(st == NULL, "%s: handle not reset to NULL", file);
    CHECK_MSG(strstr(qkv_last_error(), phrase) != NULL, "%s: message '%s' lacks '%s'", file,
              qkv_last_error(), phrase);
    CHECK_MSG(strstr(qkv_last_error(), path) != NULL, "%s: message '%s' does not name the file",
              file, qkv_last_error());
    if (s == QKV_OK) qkv_safetensors_close(st);

    size_t len = 0;
    uint8_t *buf = st_read_file(path, &len);
    CHECK_MSG(buf != NULL, "cannot read %s", path);
    if (!buf) return;
    st = NULL;
    s = qkv_safetensors_open_memory(buf, len, &st);
    CHECK_MSG(s == want, "%s: open_memory returned %s, expected %s (%s)", file, qkv_strerror(s),
              qkv_strerror(want), qkv_last_error());
    CHECK_MSG(strstr(qkv_last_error(), phrase) != NULL, "%s (memory): message '%s' lacks '%s'",
              file, qkv_last_error(), phrase);
    if (s == QKV_OK) qkv_safetensors_close(st);

    /* Prefixes are refused as FORMAT (or, rarely, happen to be a valid file), never worse. */
    for (size_t cut = 0; cut < len; cut += 1 + len / 64) {
        st = NULL;
        s = qkv_safetensors_open_memory(buf, cut, &st);
        CHECK_MSG(s == QKV_ERR_FORMAT || s == QKV_OK, "%s cut at %zu: %s", file, cut,
                  qkv_strerror(s));
        qkv_safetensors_close(st);
    }
    free(buf);
}

int main(void) {
    const char *dir = QKV_SOURCE_DIR "/tests/fixtures/safetensors/malformed";
    char manifest[1024];
    snprintf(manifest, sizeof manifest, "%s/MANIFEST.tsv", dir);
    FILE *f = fopen(manifest, "r");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", manifest);
        return 1;
    }
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '#' || line[0] == '\0') continue;
        char *save = NULL;
        char *file = strtok_r(line, "\t", &save);
        char *status = strtok_r(NULL, "\t", &save);
        char *phrase = strtok_r(NULL, "\t", &save);
        CHECK_MSG(file && status && phrase, "bad manifest line %d", n + 1);
        if (!file || !status || !phrase) continue;
        qkv_status want = status_by_name(status);
        CHECK_MSG((int)want >= 0, "unknown status %s", status);
        check_one(dir, file, want, phrase);
        n++;
    }
    fclose(f);
    printf("%d malformed files\n", n);
    CHECK_MSG(n >= 35, "only %d malformed files in the manifest", n);
    return test_finish("safetensors_malformed");
}
