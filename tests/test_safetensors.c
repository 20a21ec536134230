/* test_safetensors.c — safetensors write/read round trips, the valid fixtures (written by the
 * reference implementation), open_memory, find, metadata, writer validation, atomic writes. */
#include "qkv.h"
#include "st_spec.h"
#include "test.h"

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[256];

static const char *tmp_path(const char *name) {
    static char buf[512];
    snprintf(buf, sizeof buf, "%s/%s", tmpdir, name);
    return buf;
}

static int file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* Number of entries of tmpdir whose name contains ".tmp." (leftover temporary files). */
static int count_temp_files(void) {
    DIR *d = opendir(tmpdir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) n++;
    if (d) closedir(d);
    return n;
}

static int message_has(const char *word) { return strstr(qkv_last_error(), word) != NULL; }

/* Tensors are listed in ascending offsets that tile the data section, find agrees. */
static void check_invariants(const qkv_safetensors *st) {
    uint64_t next = 0;
    for (size_t i = 0; i < qkv_safetensors_count(st); i++) {
        const qkv_st_tensor *t = qkv_safetensors_tensor(st, i);
        CHECK(t != NULL);
        CHECK_EQ_INT(t->offset, next);
        next = t->offset + t->nbytes;
        CHECK(qkv_safetensors_find(st, t->name) == t);
        int64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) numel *= t->shape[d];
        CHECK_EQ_INT((size_t)numel * st_elem_size(t->dtype), t->nbytes);
    }
    CHECK(qkv_safetensors_tensor(st, qkv_safetensors_count(st)) == NULL);
    const char *prev = NULL;
    for (size_t i = 0; i < qkv_safetensors_metadata_count(st); i++) {
        const char *k, *v;
        qkv_safetensors_metadata_at(st, i, &k, &v);
        CHECK(k && v);
        if (prev) CHECK(strcmp(prev, k) < 0); /* sorted by key */
        CHECK(qkv_safetensors_metadata_get(st, k) == v);
        prev = k;
    }
}

static void test_roundtrip_spec(void) {
    const char *path = tmp_path("spec.safetensors");
    CHECK_OK(st_spec_write(path));
    CHECK_EQ_INT(count_temp_files(), 0);
    qkv_safetensors *st = NULL;
    CHECK_OK(qkv_safetensors_open(path, &st));
    if (!st) return;
    st_spec_check_file(st);
    check_invariants(st);
    /* The writer keeps the given order. */
    for (size_t i = 0; i < ST_SPEC_N && i < qkv_safetensors_count(st); i++)
        CHECK(strcmp(qkv_safetensors_tensor(st, i)->name, st_spec[i].name) == 0);
    const qkv_st_tensor *s = qkv_safetensors_find(st, "scalar");
    CHECK(s && s->ndim == 0 && s->nbytes == 4);
    const qkv_st_tensor *e = qkv_safetensors_find(st, "empty_i8");
    CHECK(e && e->ndim == 3 && e->nbytes == 0 && e->shape[1] == 0);
    CHECK(qkv_safetensors_find(st, "absent") == NULL);
    CHECK(qkv_safetensors_find(st, "") == NULL);
    CHECK(qkv_safetensors_find(st, NULL) == NULL);
    CHECK(qkv_safetensors_metadata_get(st, "absent") == NULL);
    CHECK(qkv_safetensors_metadata_get(st, NULL) == NULL);
    const char *k = "x", *v = "y";
    qkv_safetensors_metadata_at(st, 99, &k, &v);
    CHECK(k == NULL && v == NULL);
    qkv_safetensors_metadata_at(st, 0, &k, &v);
    CHECK(k && strcmp(k, "empty") == 0 && v && strcmp(v, "") == 0);

    /* The layout on disk: data section at a multiple of 8, header padded with spaces. */
    size_t len = 0;
    uint8_t *raw = st_read_file(path, &len);
    CHECK(raw != NULL && len > 8);
    if (raw) {
        uint64_t n = 0;
        for (int i = 7; i >= 0; i--) n = (n << 8) | raw[i];
        CHECK_EQ_INT((8 + n) % 8, 0);
        CHECK(raw[8] == '{');
        CHECK(memcmp(raw + 8, "{\"__metadata__\":{\"format\":\"pt\"", 30) == 0);
        size_t end = 8 + (size_t)n;
        while (end > 8 && raw[end - 1] == ' ') end--;
        CHECK(raw[end - 1] == '}');
        CHECK(8 + n - end < 8);
        /* The data pointers point into the mapping: the first tensor's data is 8-aligned. */
        CHECK(((uintptr_t)qkv_safetensors_tensor(st, 0)->data & 7) == 0);

        /* open_memory gives the same view, pointing into the caller's buffer. */
        qkv_safetensors *m = NULL;
        CHECK_OK(qkv_safetensors_open_memory(raw, len, &m));
        if (m) {
            st_spec_check_file(m);
            check_invariants(m);
            const qkv_st_tensor *t = qkv_safetensors_tensor(m, 3);
            CHECK((const uint8_t *)t->data >= raw && (const uint8_t *)t->data < raw + len);
            CHECK_EQ_INT((const uint8_t *)t->data - raw, 8 + n + t->offset);
            qkv_safetensors_close(m);
        }
        free(raw);
    }
    qkv_safetensors_close(st);
}

static void test_empty_and_overwrite(void) {
    const char *path = tmp_path("empty.safetensors");
    CHECK_OK(qkv_safetensors_write(path, NULL, 0, NULL, NULL, 0));
    size_t len = 0;
    uint8_t *raw = st_read_file(path, &len);
    CHECK_EQ_INT(len, 16); /* "{}" padded to 8 */
    if (raw) CHECK(memcmp(raw, "\x08\0\0\0\0\0\0\0{}      ", 16) == 0);
    free(raw);
    qkv_safetensors *st = NULL;
    CHECK_OK(qkv_safetensors_open(path, &st));
    CHECK_EQ_INT(qkv_safetensors_count(st), 0);
    CHECK_EQ_INT(qkv_safetensors_metadata_count(st), 0);
    qkv_safetensors_close(st);

    /* Overwriting replaces the file whole. */
    const char *key = "k", *val = "v";
    float x = 1.5f;
    qkv_st_write_tensor t = {"x", QKV_DTYPE_F32, 0, NULL, &x};
    CHECK_OK(qkv_safetensors_write(path, &t, 1, &key, &val, 1));
    CHECK_OK(qkv_safetensors_open(path, &st));
    CHECK_EQ_INT(qkv_safetensors_count(st), 1);
    const qkv_st_tensor *g = qkv_safetensors_find(st, "x");
    CHECK(g && g->ndim == 0 && g->nbytes == 4 && memcmp(g->data, &x, 4) == 0);
    CHECK(qkv_safetensors_metadata_get(st, "k") &&
          !strcmp(qkv_safetensors_metadata_get(st, "k"), "v"));
    qkv_safetensors_close(st);
    CHECK_EQ_INT(count_temp_files(), 0);

    /* Zero-size tensors with NULL data are fine. */
    int64_t shape[2] = {0, 5};
    qkv_st_write_tensor z[2] = {{"z0", QKV_DTYPE_BF16, 2, shape, NULL},
                                {"z1", QKV_DTYPE_I64, 1, shape, NULL}};
    CHECK_OK(qkv_safetensors_write(path, z, 2, NULL, NULL, 0));
    CHECK_OK(qkv_safetensors_open(path, &st));
    CHECK_EQ_INT(qkv_safetensors_count(st), 2);
    check_invariants(st);
    qkv_safetensors_close(st);
}

static uint64_t lcg(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 33;
}

static void test_many_tensors(void) {
    enum { N = 1500 };
    qkv_st_write_tensor *w = calloc(N, sizeof *w);
    int64_t(*shapes)[2] = calloc(N, sizeof *shapes);
    char(*names)[48] = calloc(N, sizeof *names);
    uint8_t *data = calloc(N * 64, 1);
    uint64_t seed = 42;
    for (int i = 0; i < N; i++) {
        /* shuffled-looking names so that header order, offset order and name order differ */
        snprintf(names[i], sizeof names[i], "layer.%llu.w%d", (unsigned long long)lcg(&seed) % 997,
                 i);
        shapes[i][0] = (int64_t)(lcg(&seed) % 5);
        shapes[i][1] = (int64_t)(1 + lcg(&seed) % 4);
        for (int b = 0; b < 64; b++) data[i * 64 + b] = (uint8_t)(i * 7 + b);
        w[i] = (qkv_st_write_tensor){names[i], i % 2 ? QKV_DTYPE_U16 : QKV_DTYPE_I32, 2, shapes[i],
                                     data + i * 64};
    }
    const char *path = tmp_path("many.safetensors");
    CHECK_OK(qkv_safetensors_write(path, w, N, NULL, NULL, 0));
    qkv_safetensors *st = NULL;
    CHECK_OK(qkv_safetensors_open(path, &st));
    CHECK_EQ_INT(qkv_safetensors_count(st), N);
    check_invariants(st);
    int bad = 0;
    for (int i = 0; i < N; i++) {
        const qkv_st_tensor *t = qkv_safetensors_find(st, names[i]);
        if (!t || t->shape[0] != shapes[i][0] || t->shape[1] != shapes[i][1] ||
            memcmp(t->data, data + i * 64, t->nbytes) != 0)
            bad++;
        if (qkv_safetensors_tensor(st, (size_t)i) != t) bad++; /* given order kept */
    }
    CHECK_EQ_INT(bad, 0);
    CHECK(qkv_safetensors_find(st, "layer.") == NULL);
    CHECK(qkv_safetensors_find(st, "zzz") == NULL);
    CHECK(qkv_safetensors_find(st, "a") == NULL);
    qkv_safetensors_close(st);
    free(w);
    free(shapes);
    free(names);
    free(data);
}

/* A rejected write leaves neither the file nor a temporary file. */
#define CHECK_WRITE_REJECTED(expr, status, word)                                                   \
    do {                                                                                           \
        CHECK_STATUS(expr, status);                                                                \
        CHECK_MSG(message_has(word), "message '%s' lacks '%s'", qkv_last_error(), word);           \
        CHECK(!file_exists(bad_path));                                                             \
        CHECK_EQ_INT(count_temp_files(), 0);                                                       \
    } while (0)

static void test_writer_validation(void) {
    const char *bad_path = tmp_path("rejected.safetensors");
    static const int64_t shape[2] = {2, 3};
    static const int64_t neg[2] = {2, -3};
    static const int64_t huge[3] = {INT64_MAX / 2, 4, 4};
    float data[6] = {0};
    qkv_st_write_tensor ok = {"a", QKV_DTYPE_F32, 2, shape, data};
    qkv_st_write_tensor t[2] = {ok, ok};

    CHECK_WRITE_REJECTED(qkv_safetensors_write(NULL, &ok, 1, NULL, NULL, 0), QKV_ERR_INVALID_ARG,
                         "path");
    CHECK_WRITE_REJECTED(qkv_safetensors_write("", &ok, 1, NULL, NULL, 0), QKV_ERR_INVALID_ARG,
                         "path");
    CHECK_WRITE_REJECTED(qkv_safetensors_write(bad_path, NULL, 1, NULL, NULL, 0),
                         QKV_ERR_INVALID_ARG, "tensors");
    CHECK_WRITE_REJECTED(qkv_safetensors_write(bad_path, t, 2, NULL, NULL, 0), QKV_ERR_INVALID_ARG,
                         "duplicate tensor name 'a'");
    t[1].name = "__metadata__";
    CHECK_WRITE_REJECTED(qkv_safetensors_write(bad_path, t, 2, NULL, NULL, 0), QKV_ERR_INVALID_ARG,
                         "reserved");
    t[1].name = NULL;
    CHECK_WRITE_REJECTED(qkv_safetensors_write(bad_path, t, 2, NULL, NULL, 0), QKV_ERR_INVALID_ARG,
                         "NULL");
    t[1].name = "bad\xff";
    CHECK_WRITE_REJECTED(qkv_safetensors_write(bad_path, t, 2, NULL, NULL, 0), QKV_ERR_INVALID_ARG,
                         "UTF-8");
    t[1] = ok;
    t[1].name = "b";
    t[1].ndim = -1;
    CHECK_WRITE_REJECTED(qkv_safetensors_write(bad_path, t, 2, NULL, NULL, 0), QKV_ERR_INVALID_ARG,
                         "ndim");
    t[1].ndim = QKV_MAX_DIMS + 1;
    CHECK_WRITE_REJECTED(qkv_safetensors_write(bad_path, t, 2, NULL, NULL, 0), QKV_ERR_INVALID_ARG,
                         "ndim");
    t[1].ndim = 2;
    t[1].shape = neg;
    CHECK_WRITE_REJECTED(qkv_safetensors_write(bad_path, t, 2, NULL, NULL, 0), QKV_ERR_INVALID_ARG,
                         "shape[1] is -3");
    t[1].shape = NULL;
    CHECK_WRITE_REJECTED(qkv_safetensors_write(bad_path, t, 2, NULL, NULL, 0), QKV_ERR_INVALID_ARG,
                         "shape is NULL");
    t[1].shape = shape;
    t[1].data = NULL;
    CHECK_WRITE_REJECTED(qkv_safetensors_write(bad_path, t, 2, NULL, NULL, 0), QKV_ERR_INVALID_ARG,
                         "data is NULL");
    t[1].data = data;
    t[1].dtype = QKV_DTYPE_COUNT_;
    CHECK_WRITE_REJECTED(qkv_safetensors_write(bad_path, t, 2, NULL, NULL, 0), QKV_ERR_INVALID_ARG,
                         "dtype");
    t[1].dtype = (qkv_dtype)-1;
    CHECK_WRITE_REJECTED(qkv_safetensors_write(bad_path, t, 2, NULL, NULL, 0), QKV_ERR_INVALID_ARG,
                         "dtype");
    t[1].dtype = QKV_DTYPE_F64;
    t[1].ndim = 3;
    t[1].shape = huge;
    CHECK_WRITE_REJECTED(qkv_safetensors_write(bad_path, t, 2, NULL, NULL, 0), QKV_ERR_OVERFLOW,
                         "overflow");
    /* each tensor fits, the sum does not */
    static const int64_t half[1] = {(INT64_MAX / 2) + 8};
    qkv_st_write_tensor two[2] = {{"p", QKV_DTYPE_U8, 1, half, data},
                                  {"q", QKV_DTYPE_U8, 1, half, data}};
    CHECK_WRITE_REJECTED(qkv_safetensors_write(bad_path, two, 2, NULL, NULL, 0), QKV_ERR_OVERFLOW,
                         "overflow");

    const char *keys[2] = {"k", "k"}, *vals[2] = {"1", "2"};
    CHECK_WRITE_REJECTED(qkv_safetensors_write(bad_path, &ok, 1, keys, vals, 2),
                         QKV_ERR_INVALID_ARG, "duplicate metadata key 'k'");
    CHECK_WRITE_REJECTED(qkv_safetensors_write(bad_path, &ok, 1, NULL, vals, 2),
                         QKV_ERR_INVALID_ARG, "metadata");
    keys[1] = NULL;
    CHECK_WRITE_REJECTED(qkv_safetensors_write(bad_path, &ok, 1, keys, vals, 2),
                         QKV_ERR_INVALID_ARG, "metadata key 1 is NULL");
    keys[1] = "j";
    vals[0] = "\xc0\x80";
    CHECK_WRITE_REJECTED(qkv_safetensors_write(bad_path, &ok, 1, keys, vals, 2),
                         QKV_ERR_INVALID_ARG, "UTF-8");

    /* I/O failures: a missing directory, a path that is a directory. Nothing is left behind. */
    char missing[600];
    snprintf(missing, sizeof missing, "%s/no/such/dir/x.safetensors", tmpdir);
    CHECK_STATUS(qkv_safetensors_write(missing, &ok, 1, NULL, NULL, 0), QKV_ERR_IO);
    CHECK(message_has("no/such/dir"));
    const char *dir = tmp_path("a_directory");
    CHECK(mkdir(dir, 0755) == 0);
    CHECK_STATUS(qkv_safetensors_write(dir, &ok, 1, NULL, NULL, 0), QKV_ERR_IO);
    CHECK(message_has("rename"));
    CHECK_EQ_INT(count_temp_files(), 0);
    rmdir(dir);
}

static void test_reader_api(void) {
    qkv_safetensors *st = (qkv_safetensors *)&st; /* must be reset to NULL on failure */
    CHECK_STATUS(qkv_safetensors_open(NULL, &st), QKV_ERR_INVALID_ARG);
    CHECK(st == NULL);
    CHECK_STATUS(qkv_safetensors_open("x", NULL), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_safetensors_open_memory("x", 1, NULL), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_safetensors_open_memory(NULL, 10, &st), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_safetensors_open_memory(NULL, 0, &st), QKV_ERR_FORMAT);
    CHECK(message_has("too short"));
    const char *missing = tmp_path("does_not_exist.safetensors");
    st = (qkv_safetensors *)&st;
    CHECK_STATUS(qkv_safetensors_open(missing, &st), QKV_ERR_IO);
    CHECK(st == NULL);
    CHECK(message_has("does_not_exist.safetensors") && message_has("No such file"));
    CHECK_STATUS(qkv_safetensors_open(tmpdir, &st), QKV_ERR_IO);
    CHECK(message_has("not a regular file"));
    qkv_safetensors_close(NULL);
    CHECK_EQ_INT(qkv_safetensors_count(NULL), 0);
    CHECK(qkv_safetensors_tensor(NULL, 0) == NULL);
    CHECK(qkv_safetensors_find(NULL, "a") == NULL);
    CHECK_EQ_INT(qkv_safetensors_metadata_count(NULL), 0);
    CHECK(qkv_safetensors_metadata_get(NULL, "a") == NULL);
    qkv_safetensors_metadata_at(NULL, 0, NULL, NULL);
}

static qkv_safetensors *open_fixture(const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/tests/fixtures/safetensors/valid/%s", QKV_SOURCE_DIR, name);
    qkv_safetensors *st = NULL;
    CHECK_OK(qkv_safetensors_open(path, &st));
    /* the same through open_memory */
    size_t len = 0;
    uint8_t *raw = st_read_file(path, &len);
    CHECK_MSG(raw != NULL, "cannot read %s", path);
    qkv_safetensors *m = NULL;
    CHECK_OK(qkv_safetensors_open_memory(raw, len, &m));
    if (st && m) {
        CHECK_EQ_INT(qkv_safetensors_count(m), qkv_safetensors_count(st));
        for (size_t i = 0; i < qkv_safetensors_count(st); i++) {
            const qkv_st_tensor *a = qkv_safetensors_tensor(st, i),
                                *b = qkv_safetensors_tensor(m, i);
            CHECK(strcmp(a->name, b->name) == 0 && a->offset == b->offset &&
                  a->nbytes == b->nbytes && memcmp(a->data, b->data, a->nbytes) == 0);
        }
    }
    qkv_safetensors_close(m);
    free(raw);
    if (st) check_invariants(st);
    return st;
}

static void test_valid_fixtures(void) {
    /* Written by Hugging Face safetensors (tools/safetensors_roundtrip.py fixtures). */
    qkv_safetensors *st = open_fixture("all_dtypes.safetensors");
    if (st) st_spec_check_file(st);
    qkv_safetensors_close(st);

    st = open_fixture("no_tensors.safetensors");
    CHECK(st && qkv_safetensors_count(st) == 0 && qkv_safetensors_metadata_count(st) == 0);
    qkv_safetensors_close(st);

    st = open_fixture("metadata_only.safetensors");
    CHECK(st && qkv_safetensors_count(st) == 0 && qkv_safetensors_metadata_count(st) == 2);
    CHECK(st && !strcmp(qkv_safetensors_metadata_get(st, "note"), "no tensors"));
    qkv_safetensors_close(st);

    st = open_fixture("tiny_model.safetensors");
    CHECK_EQ_INT(qkv_safetensors_count(st), 8);
    const qkv_st_tensor *t = qkv_safetensors_find(st, "embeddings.word_embeddings.weight");
    CHECK(t && t->dtype == QKV_DTYPE_F32 && t->ndim == 2 && t->shape[0] == 30 && t->shape[1] == 8);
    t = qkv_safetensors_find(st, "embeddings.LayerNorm.weight");
    CHECK(t && t->nbytes == 32 && ((const float *)t->data)[7] == 1.0f);
    t = qkv_safetensors_find(st, "position_ids");
    CHECK(t && t->dtype == QKV_DTYPE_I64 && t->shape[0] == 1 && t->shape[1] == 16);
    if (t) {
        int64_t v;
        memcpy(&v, (const uint8_t *)t->data + 15 * 8, 8);
        CHECK_EQ_INT(v, 15);
    }
    t = qkv_safetensors_find(st, "encoder.layer.0.attention.self.query.weight");
    CHECK(t && t->dtype == QKV_DTYPE_F16 && t->nbytes == 128);
    CHECK(st && !strcmp(qkv_safetensors_metadata_get(st, "format"), "pt"));
    qkv_safetensors_close(st);

    st = open_fixture("zero_size.safetensors");
    CHECK_EQ_INT(qkv_safetensors_count(st), 4);
    t = qkv_safetensors_find(st, "scalar");
    CHECK(t && t->ndim == 0 && t->nbytes == 4 && ((const float *)t->data)[0] == 3.5f);
    t = qkv_safetensors_find(st, "empty3");
    CHECK(t && t->ndim == 3 && t->nbytes == 0 && t->dtype == QKV_DTYPE_I32);
    qkv_safetensors_close(st);

    /* Hand-made: entries out of order, zero-size tensors sharing offsets, whitespace around the
     * JSON, a data section not at a multiple of 8. Sorted by (begin, end, name). */
    st = open_fixture("hand_unordered.safetensors");
    static const char *order[] = {"e0", "a", "e1", "z", "s"};
    CHECK_EQ_INT(qkv_safetensors_count(st), 5);
    for (size_t i = 0; i < 5 && i < qkv_safetensors_count(st); i++)
        CHECK_MSG(!strcmp(qkv_safetensors_tensor(st, i)->name, order[i]), "position %zu: %s", i,
                  qkv_safetensors_tensor(st, i)->name);
    t = qkv_safetensors_find(st, "z");
    CHECK(t && t->offset == 5 && t->nbytes == 3 && ((const uint8_t *)t->data)[0] == 6);
    t = qkv_safetensors_find(st, "s");
    CHECK(t && t->ndim == 0 && ((const uint8_t *)t->data)[0] == 9);
    qkv_safetensors_close(st);

    st = open_fixture("hand_all_empty.safetensors");
    CHECK_EQ_INT(qkv_safetensors_count(st), 2);
    qkv_safetensors_close(st);

    st = open_fixture("hand_eight_dims.safetensors");
    t = qkv_safetensors_find(st, "t");
    CHECK(t && t->ndim == 8 && t->nbytes == 16 && t->dtype == QKV_DTYPE_U16);
    qkv_safetensors_close(st);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "%s/qkv_st_XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_roundtrip_spec();
    test_empty_and_overwrite();
    test_many_tensors();
    test_writer_validation();
    test_reader_api();
    test_valid_fixtures();
    CHECK_EQ_INT(count_temp_files(), 0);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    CHECK(system(cmd) == 0);
    return test_finish("safetensors");
}
