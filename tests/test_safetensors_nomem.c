/* test_safetensors_nomem.c — fault injection: fail the Nth allocation, for every N, in the
 * safetensors reader (open, open_memory, also on malformed files) and writer. Each failure must
 * come back as QKV_ERR_NOMEM (never a crash or a wrong status) with every allocation freed, and
 * a failed write must leave no file behind. jansson allocates through the same hook. */
#include "fault_alloc.h"
#include "qkv.h"
#include "st_spec.h"
#include "test.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void arm(long n) {
    n_attempt = n_alloc = n_free = 0;
    fail_at = n;
}

enum { MAX_STEPS = 100000 };

typedef qkv_status (*open_fn)(const void *arg, size_t len, qkv_safetensors **out);

static qkv_status open_path(const void *arg, size_t len, qkv_safetensors **out) {
    (void)len;
    return qkv_safetensors_open(arg, out);
}

static qkv_status open_mem(const void *arg, size_t len, qkv_safetensors **out) {
    return qkv_safetensors_open_memory(arg, len, out);
}

/* Fails allocation 0, 1, 2, ... in turn. While the failure is reached the call must return
 * NOMEM; the first N the call does not reach gives its normal result, which must be `final`.
 * Returns that N (the number of allocations of a normal call), or -1. */
static long sweep_open(const char *what, open_fn fn, const void *arg, size_t len,
                       qkv_status final) {
    for (long n = 0; n < MAX_STEPS; n++) {
        arm(n);
        qkv_safetensors *st = NULL;
        qkv_status s = fn(arg, len, &st);
        int injected = n_attempt > n;
        if (s == QKV_OK) qkv_safetensors_close(st);
        CHECK_MSG(n_alloc == n_free, "%s, failing allocation %ld: %ld allocations, %ld frees", what,
                  n, n_alloc, n_free);
        if (!injected) {
            CHECK_MSG(s == final, "%s: %s (%s), expected %s", what, qkv_strerror(s),
                      qkv_last_error(), qkv_strerror(final));
            return s == final ? n : -1;
        }
        CHECK_MSG(s == QKV_ERR_NOMEM, "%s, failing allocation %ld: %s (%s), expected NOMEM", what,
                  n, qkv_strerror(s), qkv_last_error());
        if (s != QKV_ERR_NOMEM) return -1;
        CHECK_MSG(st == NULL, "%s: handle set on failure", what);
    }
    CHECK_MSG(0, "%s: never succeeded", what);
    return -1;
}

static char tmpdir[256];

static int dir_entries(void) {
    DIR *d = opendir(tmpdir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    if (d) closedir(d);
    return n;
}

static void sweep_write(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/out.safetensors", tmpdir);
    long n;
    for (n = 0; n < MAX_STEPS; n++) {
        arm(n);
        qkv_status s = st_spec_write(path);
        CHECK_MSG(n_alloc == n_free, "write, failing allocation %ld: %ld allocations, %ld frees", n,
                  n_alloc, n_free);
        if (n_attempt <= n) {
            CHECK_OK(s);
            break;
        }
        CHECK_MSG(s == QKV_ERR_NOMEM, "write, failing allocation %ld: %s (%s)", n, qkv_strerror(s),
                  qkv_last_error());
        CHECK_MSG(dir_entries() == 0, "write, failing allocation %ld: files left behind", n);
        if (s != QKV_ERR_NOMEM) break;
    }
    printf("write: succeeded once %ld allocations could be made\n", n);
    CHECK(n > 3); /* the header really is built through the hook */
    fail_at = -1;
    qkv_safetensors *st = NULL;
    CHECK_OK(qkv_safetensors_open(path, &st));
    if (st) st_spec_check_file(st);
    qkv_safetensors_close(st);
    CHECK_EQ_INT(n_alloc, n_free);
    unlink(path);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "%s/qkv_stnomem_XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    qkv_allocator a = {failing_alloc, counting_free, NULL};
    qkv_set_allocator(&a);

    static const char *valid[] = {"all_dtypes", "tiny_model", "hand_unordered", "no_tensors",
                                  "metadata_only"};
    for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/tests/fixtures/safetensors/valid/%s.safetensors",
                 QKV_SOURCE_DIR, valid[i]);
        long n = sweep_open(path, open_path, path, 0, QKV_OK);
        printf("open %s: succeeded once %ld allocations could be made\n", valid[i], n);
        CHECK(n > 0);
        size_t len = 0;
        fail_at = -1;
        uint8_t *buf = st_read_file(path, &len);
        CHECK(buf != NULL);
        if (buf) CHECK(sweep_open(path, open_mem, buf, len, QKV_OK) == n);
        free(buf);
    }

    /* Malformed files: allocation failures may come first, then the FORMAT error. */
    static const char *bad[] = {"duplicate_names", "metadata_value_number", "gap_in_offsets",
                                "unknown_dtype",   "bad_json_syntax",       "deep_nesting"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/tests/fixtures/safetensors/malformed/%s.safetensors",
                 QKV_SOURCE_DIR, bad[i]);
        CHECK(sweep_open(path, open_path, path, 0, QKV_ERR_FORMAT) >= 0);
    }

    sweep_write();

    qkv_set_allocator(NULL);
    rmdir(tmpdir);
    return test_finish("safetensors_nomem");
}
