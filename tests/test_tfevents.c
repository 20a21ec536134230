/* test_tfevents.c — TensorBoard event files (src/io/tfevents.c, src/io/crc32c.c).
 *
 * CRC-32C against its published check value and the RFC 3720 (B.4) vectors; the framing and
 * the Event / Summary / HistogramProto encoding byte for byte against a file written by
 * TensorBoard's own RecordWriter and protobuf messages (tools/gen_tfevents_fixture.py, the
 * same inputs); the record reader on every truncation and every flipped byte of that file;
 * the writer of a run directory: a new file, appending, and the cut back on resume (records
 * of later steps, a truncated last record, a damaged record); every allocation failed in turn. */
#include "test.h"

#include "core/alloc.h"
#include "fault_alloc.h"
#include "io/crc32c.h"
#include "io/tfevents.h"

#include <stdint.h>

static void test_crc32c(void) {
    CHECK_EQ_INT(qkv__crc32c(0, "123456789", 9), 0xE3069283u);
    CHECK_EQ_INT(qkv__crc32c(0, "", 0), 0);
    /* RFC 3720 B.4: 32 bytes of zeros, of ones, ascending, descending; an iSCSI read PDU */
    uint8_t b[48];
    memset(b, 0, 32);
    CHECK_EQ_INT(qkv__crc32c(0, b, 32), 0x8A9136AAu);
    memset(b, 0xFF, 32);
    CHECK_EQ_INT(qkv__crc32c(0, b, 32), 0x62A8AB43u);
    for (int i = 0; i < 32; i++) b[i] = (uint8_t)i;
    CHECK_EQ_INT(qkv__crc32c(0, b, 32), 0x46DD794Eu);
    for (int i = 0; i < 32; i++) b[i] = (uint8_t)(31 - i);
    CHECK_EQ_INT(qkv__crc32c(0, b, 32), 0x113FDB5Cu);
    static const uint8_t pdu[48] = {0x01, 0xc0, 0, 0,    0,    0, 0, 0,    0,    0, 0,    0,
                                    0,    0,    0, 0,    0x14, 0, 0, 0,    0,    0, 0x04, 0,
                                    0,    0,    0, 0x14, 0,    0, 0, 0x18, 0x28, 0, 0,    0,
                                    0,    0,    0, 0,    0x02, 0, 0, 0,    0,    0, 0,    0};
    CHECK_EQ_INT(qkv__crc32c(0, pdu, 48), 0xD9963A56u);
    /* continuing a CRC over pieces equals the CRC of the whole */
    CHECK_EQ_INT(qkv__crc32c(qkv__crc32c(0, "1234", 4), "56789", 5), 0xE3069283u);
    /* the vectors through the table too, and the SSE4.2 path (when the CPU has it: say so)
     * against the table on random data of every length 0..300 at every alignment 0..7, in one
     * piece and continued over two */
    CHECK_EQ_INT(qkv__crc32c_table(0, "123456789", 9), 0xE3069283u);
    CHECK_EQ_INT(qkv__crc32c_table(0, pdu, 48), 0xD9963A56u);
    if (!qkv__crc32c_hw()) printf("crc32c: no SSE4.2 on this CPU: the table path only\n");
    static uint8_t rnd[320];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof rnd; i++)
        rnd[i] = (uint8_t)((x = x * 1103515245u + 12345u) >> 16);
    int bad = 0;
    for (size_t off = 0; off < 8; off++)
        for (size_t n = 0; n + off <= 308; n++) {
            uint32_t want = qkv__crc32c_table(7, rnd + off, n);
            bad += qkv__crc32c(7, rnd + off, n) != want;
            bad +=
                qkv__crc32c(qkv__crc32c(7, rnd + off, n / 3), rnd + off + n / 3, n - n / 3) != want;
        }
    CHECK_EQ_INT(bad, 0);
}

/* The fixture's inputs (tools/gen_tfevents_fixture.py). */
static void hist_input(float *x) {
    for (int i = 0; i < 64; i++) x[i] = (float)((i * 37) % 101 - 50) / 16.0f;
    x[64] = INFINITY;
}

/* The three records of the fixture, encoded by qkv and framed, into buf; the length. */
static size_t encode_reference(uint8_t *buf) {
    size_t len = 0, n = 0;
    uint8_t *ev = NULL;
    CHECK_OK(qkv__tb_encode_file_version(1700000000.25, &ev, &n));
    len += qkv__tfrecord_frame(buf + len, ev, n);
    qkv__free(ev);
    const char *tags[] = {"train/loss", "train/lr", "val/ppl", "zero"};
    const double v[] = {2.5, 0.000123, 1e30, 0.0};
    CHECK_OK(qkv__tb_encode_scalars(1700000001.5, 3, tags, v, 4, &ev, &n));
    len += qkv__tfrecord_frame(buf + len, ev, n);
    qkv__free(ev);
    float x[65];
    hist_input(x);
    CHECK_OK(qkv__tb_encode_histogram(1700000002.75, 4, "weights/h.0.w", x, 65, &ev, &n));
    len += qkv__tfrecord_frame(buf + len, ev, n);
    qkv__free(ev);
    return len;
}

static void test_reference_bytes(void) {
    size_t flen;
    char *want = test_read_all(QKV_SOURCE_DIR "/tests/fixtures/tfevents/reference.tfevents", &flen);
    if (!want) {
        fprintf(stderr, "missing fixture tests/fixtures/tfevents/reference.tfevents\n");
        CHECK(0);
        return;
    }
    uint8_t buf[4096];
    size_t len = encode_reference(buf);
    CHECK_EQ_INT(len, flen);
    CHECK(len == flen && memcmp(buf, want, len) == 0);
    for (size_t i = 0; i < len && i < flen; i++)
        if (buf[i] != (uint8_t)want[i]) {
            fprintf(stderr, "first difference at byte %zu: %02x vs TensorBoard's %02x\n", i, buf[i],
                    (uint8_t)want[i]);
            break;
        }
    /* read back: three records, steps 0, 3, 4, the first the file_version */
    size_t off = 0, n;
    const uint8_t *d;
    int64_t steps[3] = {-1, -1, -1};
    int version[3] = {0, 0, 0}, k = 0;
    qkv__tfr r;
    while ((r = qkv__tfrecord_next((const uint8_t *)want, flen, &off, &d, &n)) == QKV__TFR_OK &&
           k < 3) {
        CHECK_OK(qkv__tb_event_step(d, n, &steps[k], &version[k]));
        k++;
    }
    CHECK_EQ_INT(r, QKV__TFR_END);
    CHECK_EQ_INT(k, 3);
    CHECK(version[0] && !version[1] && !version[2]);
    CHECK(steps[0] == 0 && steps[1] == 3 && steps[2] == 4);

    /* every prefix: whole records, then TRUNCATED (never a partial record, never past len) */
    size_t ends[3], e = 0, m = 0;
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(qkv__tfrecord_next((const uint8_t *)want, flen, &e, &d, &m), QKV__TFR_OK);
        ends[i] = e;
    }
    int bad = 0;
    for (size_t cut = 0; cut < flen; cut++) {
        uint8_t *copy = malloc(cut ? cut : 1); /* exactly cut bytes: ASan sees any overread */
        memcpy(copy, want, cut);
        size_t o = 0, whole = 0;
        while ((r = qkv__tfrecord_next(copy, cut, &o, &d, &n)) == QKV__TFR_OK) whole++;
        const size_t expect = cut >= ends[1] ? 2 : cut >= ends[0] ? 1 : 0;
        const int at_end = cut == ends[0] || cut == ends[1] || cut == 0;
        if (whole != expect || r != (at_end ? QKV__TFR_END : QKV__TFR_TRUNCATED)) bad++;
        free(copy);
    }
    CHECK_MSG(bad == 0, "%d prefixes misread", bad);
    /* every flipped byte is caught by a CRC (a length may also read as truncated) */
    bad = 0;
    for (size_t i = 0; i < flen; i++) {
        uint8_t *copy = malloc(flen);
        memcpy(copy, want, flen);
        copy[i] ^= 0x20;
        size_t o = 0, whole = 0;
        while ((r = qkv__tfrecord_next(copy, flen, &o, &d, &n)) == QKV__TFR_OK) whole++;
        if (whole == 3 || r == QKV__TFR_END) bad++;
        free(copy);
    }
    CHECK_MSG(bad == 0, "%d flipped bytes went unnoticed", bad);
    free(want);
}

/* The steps of the records of the event file in dir (the only one), -1 for file_version; the
 * count, or -1 if the file does not read whole. */
static int file_steps(const char *dir, int64_t *steps, int cap, char *name, size_t name_cap) {
    DIR *d = opendir(dir);
    struct dirent *e;
    int files = 0;
    while (d && (e = readdir(d)))
        if (strncmp(e->d_name, QKV__TB_PREFIX, strlen(QKV__TB_PREFIX)) == 0) {
            snprintf(name, name_cap, "%s/%s", dir, e->d_name);
            files++;
        }
    if (d) closedir(d);
    if (files != 1) return -1;
    size_t len, off = 0, n;
    char *buf = test_read_all(name, &len);
    const uint8_t *data;
    int k = 0;
    qkv__tfr r;
    while ((r = qkv__tfrecord_next((uint8_t *)buf, len, &off, &data, &n)) == QKV__TFR_OK &&
           k < cap) {
        int v;
        if (qkv__tb_event_step(data, n, &steps[k], &v) != QKV_OK) break;
        if (v) steps[k] = -1;
        k++;
    }
    free(buf);
    return r == QKV__TFR_END ? k : -1;
}

static void write_steps(const char *dir, int64_t from, int64_t to, int64_t upto) {
    qkv__tb_writer *w = NULL;
    CHECK_OK(qkv__tb_open(dir, upto, &w));
    if (!w) return;
    for (int64_t s = from; s <= to; s++) {
        const char *tag = "train/loss";
        const double v = 1.0 / (double)s;
        CHECK_OK(qkv__tb_scalars(w, s, &tag, &v, 1));
    }
    CHECK_OK(qkv__tb_close(w));
}

static void test_writer(void) {
    char dir[] = "/tmp/qkv_tfevents_XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK(0);
        return;
    }
    char path[4200], other[4200];
    int64_t st[64];
    write_steps(dir, 1, 6, 0);
    CHECK_EQ_INT(file_steps(dir, st, 64, path, sizeof path), 7);
    CHECK(st[0] == -1 && st[1] == 1 && st[6] == 6);
    CHECK(strstr(path, "/" QKV__TB_PREFIX) != NULL);

    /* resume at step 6 (all kept): appended to as it is — the first 6 records are untouched */
    size_t before_len, after_len;
    char *before = test_read_all(path, &before_len);
    write_steps(dir, 7, 8, 6);
    char *after = test_read_all(path, &after_len);
    CHECK(after_len > before_len && memcmp(before, after, before_len) == 0);
    CHECK_EQ_INT(file_steps(dir, st, 64, other, sizeof other), 9);
    CHECK(strcmp(path, other) == 0);
    free(before), free(after);

    /* resume at step 4: steps 5..8 go; then 5..6 again: no step twice */
    write_steps(dir, 5, 6, 4);
    int n = file_steps(dir, st, 64, other, sizeof other);
    CHECK_EQ_INT(n, 7);
    for (int i = 1; i < n; i++) CHECK_EQ_INT(st[i], i);

    /* a truncated last record (a crash mid-write) is cut off on the next resume */
    FILE *f = fopen(path, "ab");
    const uint8_t partial[20] = {40, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 9, 9};
    fwrite(partial, 1, sizeof partial, f);
    fclose(f);
    CHECK_EQ_INT(file_steps(dir, st, 64, other, sizeof other), -1);
    write_steps(dir, 7, 7, 6);
    CHECK_EQ_INT(file_steps(dir, st, 64, other, sizeof other), 8);
    CHECK_EQ_INT(st[7], 7);

    /* a damaged record in the middle: it and what follows are dropped */
    size_t len;
    char *buf = test_read_all(path, &len);
    size_t off = 0, m;
    const uint8_t *d;
    for (int i = 0; i < 4; i++) qkv__tfrecord_next((uint8_t *)buf, len, &off, &d, &m);
    buf[off + 14] ^= 1; /* inside the data of record 4 (step 4) */
    f = fopen(path, "wb");
    fwrite(buf, 1, len, f);
    fclose(f);
    free(buf);
    write_steps(dir, 8, 8, 7);
    n = file_steps(dir, st, 64, other, sizeof other);
    CHECK_EQ_INT(n, 5);
    CHECK(n == 5 && st[3] == 3 && st[4] == 8);

    /* no temporary file is left behind */
    DIR *dd = opendir(dir);
    struct dirent *e;
    int tmp = 0;
    while ((e = readdir(dd)))
        if (strstr(e->d_name, ".tmp.")) tmp++;
    closedir(dd);
    CHECK_EQ_INT(tmp, 0);

    /* an empty event file (a crash before its first record) gets the file_version record */
    f = fopen(path, "wb");
    fclose(f);
    write_steps(dir, 1, 1, 0);
    n = file_steps(dir, st, 64, other, sizeof other);
    CHECK(n == 2 && st[0] == -1 && st[1] == 1);

    /* a directory named like an event file is not taken for one */
    test_rm_rf(dir);
    mkdir(dir, 0755);
    snprintf(other, sizeof other, "%s/" QKV__TB_PREFIX "9999999999.x", dir);
    mkdir(other, 0755);
    qkv__tb_writer *w = NULL;
    CHECK_OK(qkv__tb_open(dir, 0, &w));
    CHECK(w && strcmp(qkv__tb_path(w), other) != 0);
    CHECK_OK(qkv__tb_close(w));
    test_rm_rf(dir);

    /* a run directory that does not exist: IO, with the path in the message */
    w = NULL;
    CHECK_STATUS(qkv__tb_open("/nonexistent/qkv_run", 0, &w), QKV_ERR_IO);
    CHECK(w == NULL && strstr(qkv_last_error(), "/nonexistent/qkv_run") != NULL);
}

/* Every allocation of opening (new and cut back), writing and closing, failed in turn. */
static void test_nomem(void) {
    char dir[] = "/tmp/qkv_tfevents_nomem_XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK(0);
        return;
    }
    write_steps(dir, 1, 3, 0);
    int failures_seen = 0, bad = 0;
    for (fail_at = 0; fail_at < 200; fail_at++) {
        n_attempt = n_alloc = n_free = 0;
        qkv_allocator a = {failing_alloc, counting_free, NULL};
        qkv_set_allocator(&a);
        qkv__tb_writer *w = NULL;
        qkv_status s = qkv__tb_open(dir, 2, &w); /* cuts step 3 */
        float x[65];
        hist_input(x);
        if (s == QKV_OK) s = qkv__tb_histogram(w, 3, "weights/x", x, 65);
        qkv_status c = qkv__tb_close(w);
        qkv_set_allocator(NULL);
        if (n_alloc != n_free) bad++, fprintf(stderr, "leak at allocation %ld\n", fail_at);
        if (s == QKV_OK && c == QKV_OK && n_attempt <= fail_at) break; /* nothing left to fail */
        if (s != QKV_ERR_NOMEM)
            bad++, fprintf(stderr, "allocation %ld failed: %s\n", fail_at, qkv_last_error());
        failures_seen++;
    }
    CHECK_MSG(bad == 0, "%d allocation failures not reported as NOMEM or leaking", bad);
    CHECK(failures_seen > 0);
    test_rm_rf(dir);
}

int main(void) {
    test_crc32c();
    test_reference_bytes();
    test_writer();
    test_nomem();
    return test_finish("tfevents");
}
