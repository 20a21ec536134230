/* tfevents.c — TensorBoard event files (see tfevents.h).
 *
 * Messages are built as protobuf-c structs on the stack and packed into one buffer; reading
 * back (only the step of each record, on resume) unpacks through qkv's allocator. The file is
 * appended a whole record at a time and flushed, so a crash leaves at most one truncated
 * record at the end: TensorBoard's reader stops there without error, and the next resume
 * cuts it off (qkv__tb_open). */
#include "io/tfevents.h"

#include "core/alloc.h"
#include "core/error.h"
#include "io/crc32c.h"
#include "io/tensorboard.pb-c.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PATH_CAP 4096
#define MAX_SCALARS 16

struct qkv__tb_writer {
    FILE *f;
    char path[PATH_CAP];
};

/* ---------------------------------------------------------------- framing */

static void put_le32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get_le32(const uint8_t *p) {
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
static uint64_t get_le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* The 12 bytes before a record of n bytes: the length and its masked CRC. */
static void frame_head(uint8_t head[12], size_t n) {
    for (int i = 0; i < 8; i++) head[i] = (uint8_t)((uint64_t)n >> (8 * i));
    put_le32(head + 8, qkv__crc32c_masked(head, 8));
}

size_t qkv__tfrecord_frame(uint8_t *out, const void *data, size_t n) {
    frame_head(out, n);
    if (n) memcpy(out + 12, data, n);
    put_le32(out + 12 + n, qkv__crc32c_masked(data, n));
    return n + 16;
}

qkv__tfr qkv__tfrecord_next(const uint8_t *buf, size_t len, size_t *off, const uint8_t **data,
                            size_t *n) {
    if (*off >= len) return QKV__TFR_END;
    const size_t left = len - *off;
    const uint8_t *p = buf + *off;
    if (left < 12) return QKV__TFR_TRUNCATED;
    if (qkv__crc32c_masked(p, 8) != get_le32(p + 8)) return QKV__TFR_CORRUPT;
    const uint64_t m = get_le64(p);
    if (m > QKV__TFRECORD_MAX) return QKV__TFR_CORRUPT;
    if (left - 12 < m + 4) return QKV__TFR_TRUNCATED;
    if (qkv__crc32c_masked(p + 12, (size_t)m) != get_le32(p + 12 + m)) return QKV__TFR_CORRUPT;
    *data = p + 12, *n = (size_t)m;
    *off += (size_t)m + 16;
    return QKV__TFR_OK;
}

/* ---------------------------------------------------------------- messages */

static qkv_status pack(const QkvTb__Event *ev, uint8_t **out, size_t *n) {
    const size_t size = qkv_tb__event__get_packed_size(ev);
    *out = qkv__alloc(size ? size : 1);
    if (!*out) return qkv__fail(QKV_ERR_NOMEM, "TensorBoard event: out of memory");
    *n = qkv_tb__event__pack(ev, *out);
    return QKV_OK;
}

qkv_status qkv__tb_encode_file_version(double wall_time, uint8_t **out, size_t *n) {
    QkvTb__Event ev = QKV_TB__EVENT__INIT;
    ev.wall_time = wall_time;
    ev.what_case = QKV_TB__EVENT__WHAT_FILE_VERSION;
    ev.file_version = (char *)"brain.Event:2";
    return pack(&ev, out, n);
}

qkv_status qkv__tb_encode_scalars(double wall_time, int64_t step, const char *const *tags,
                                  const double *values, size_t k, uint8_t **out, size_t *n) {
    if (k > MAX_SCALARS || (k && (!tags || !values)))
        return qkv__fail(QKV_ERR_INVALID_ARG, "TensorBoard scalars: %zu values (at most %d)", k,
                         MAX_SCALARS);
    QkvTb__Summary__Value vals[MAX_SCALARS], *ptrs[MAX_SCALARS];
    for (size_t i = 0; i < k; i++) {
        qkv_tb__summary__value__init(&vals[i]);
        vals[i].tag = (char *)tags[i];
        vals[i].value_case = QKV_TB__SUMMARY__VALUE__VALUE_SIMPLE_VALUE;
        vals[i].simple_value = (float)values[i];
        ptrs[i] = &vals[i];
    }
    QkvTb__Summary sum = QKV_TB__SUMMARY__INIT;
    sum.n_value = k, sum.value = ptrs;
    QkvTb__Event ev = QKV_TB__EVENT__INIT;
    ev.wall_time = wall_time, ev.step = step;
    ev.what_case = QKV_TB__EVENT__WHAT_SUMMARY;
    ev.summary = &sum;
    return pack(&ev, out, n);
}

qkv_status qkv__tb_encode_histogram(double wall_time, int64_t step, const char *tag, const float *x,
                                    int64_t count, uint8_t **out, size_t *n) {
    if (!tag || count < 0 || (count && !x))
        return qkv__fail(QKV_ERR_INVALID_ARG, "TensorBoard histogram: bad arguments");
    double mn = INFINITY, mx = -INFINITY, s = 0, sq = 0, num = 0;
    for (int64_t i = 0; i < count; i++) {
        const double v = (double)x[i];
        if (!isfinite(v)) continue;
        mn = v < mn ? v : mn, mx = v > mx ? v : mx;
        s += v, sq += v * v, num += 1;
    }
    if (num == 0) mn = mx = 0;
    const int nb = mx > mn ? QKV__TB_BUCKETS : 1;
    double limit[QKV__TB_BUCKETS], bucket[QKV__TB_BUCKETS];
    for (int b = 0; b < nb; b++) {
        limit[b] = b == nb - 1 ? mx : mn + (mx - mn) * (double)(b + 1) / (double)nb;
        bucket[b] = 0;
    }
    if (nb == 1) bucket[0] = num;
    for (int64_t i = 0; nb > 1 && i < count; i++) {
        const double v = (double)x[i];
        if (!isfinite(v)) continue;
        int b = (int)((v - mn) / (mx - mn) * (double)nb);
        bucket[b < 0 ? 0 : b >= nb ? nb - 1 : b] += 1;
    }
    QkvTb__HistogramProto h = QKV_TB__HISTOGRAM_PROTO__INIT;
    h.min = mn, h.max = mx, h.num = num, h.sum = s, h.sum_squares = sq;
    h.n_bucket_limit = h.n_bucket = (size_t)nb;
    h.bucket_limit = limit, h.bucket = bucket;
    QkvTb__Summary__Value val = QKV_TB__SUMMARY__VALUE__INIT, *ptr = &val;
    val.tag = (char *)tag;
    val.value_case = QKV_TB__SUMMARY__VALUE__VALUE_HISTO;
    val.histo = &h;
    QkvTb__Summary sum = QKV_TB__SUMMARY__INIT;
    sum.n_value = 1, sum.value = &ptr;
    QkvTb__Event ev = QKV_TB__EVENT__INIT;
    ev.wall_time = wall_time, ev.step = step;
    ev.what_case = QKV_TB__EVENT__WHAT_SUMMARY;
    ev.summary = &sum;
    return pack(&ev, out, n);
}

/* protobuf-c's allocations go through qkv's hook; allocator_data counts the failures, since
 * unpack returns NULL alike for a malformed message and for a failed allocation. */
static void *pb_alloc(void *ud, size_t size) {
    void *p = qkv__alloc(size ? size : 1);
    if (!p) ++*(int *)ud;
    return p;
}
static void pb_free(void *ud, void *p) {
    (void)ud;
    qkv__free(p);
}

qkv_status qkv__tb_event_step(const uint8_t *data, size_t n, int64_t *step, int *file_version) {
    int failed = 0;
    ProtobufCAllocator a = {pb_alloc, pb_free, &failed};
    QkvTb__Event *ev = qkv_tb__event__unpack(&a, n, data);
    if (!ev && failed)
        return qkv__fail(QKV_ERR_NOMEM, "reading a TensorBoard event: out of memory");
    if (!ev) return qkv__fail(QKV_ERR_FORMAT, "not a TensorBoard Event message");
    *step = ev->step;
    *file_version = ev->what_case == QKV_TB__EVENT__WHAT_FILE_VERSION;
    qkv_tb__event__free_unpacked(ev, &a);
    return QKV_OK;
}

/* ---------------------------------------------------------------- the writer */

static double wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Frames and writes one Event; 0, or -1 with errno set. */
static int write_record(FILE *f, const uint8_t *event, size_t n) {
    uint8_t head[12], foot[4];
    frame_head(head, n);
    put_le32(foot, qkv__crc32c_masked(event, n));
    return fwrite(head, 1, 12, f) == 12 && fwrite(event, 1, n, f) == n && fwrite(foot, 1, 4, f) == 4
               ? 0
               : -1;
}

static qkv_status write_version(FILE *f, const char *path) {
    uint8_t *ev = NULL;
    size_t n = 0;
    QKV_TRY(qkv__tb_encode_file_version(wall_now(), &ev, &n));
    const int rc = write_record(f, ev, n);
    qkv__free(ev);
    return rc == 0 ? QKV_OK : qkv__write_fail("cannot write", path);
}

/* The newest (largest) name of an event file in dir (temporary files left out), or "". */
static void newest_event_file(const char *dir, char *name, size_t cap) {
    name[0] = 0;
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    const size_t plen = strlen(QKV__TB_PREFIX);
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, QKV__TB_PREFIX, plen) != 0 || strstr(e->d_name, ".tmp.") ||
            strlen(e->d_name) >= cap || strcmp(e->d_name, name) <= 0)
            continue;
        char path[PATH_CAP];
        struct stat st;
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path ||
            lstat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        snprintf(name, cap, "%s", e->d_name);
    }
    closedir(d);
}

/* Copies the whole records of steps <= upto from `in` (the file_version record first, a new
 * one) to `out`, stopping at a truncated or damaged record. *clean: 1 if the file was exactly
 * a file_version record and such records, nothing dropped. */
static qkv_status copy_kept(FILE *in, const char *path, FILE *out, const char *tmp, int64_t upto,
                            int *clean) {
    struct stat st;
    if (fstat(fileno(in), &st) != 0) return qkv__io_fail("cannot stat", path);
    if (!S_ISREG(st.st_mode)) return qkv__fail(QKV_ERR_IO, "%s: not a regular file", path);
    QKV_TRY(write_version(out, tmp));
    uint64_t left = (uint64_t)st.st_size;
    uint8_t *buf = NULL;
    size_t cap = 0;
    qkv_status s = QKV_OK;
    int saw_version = 0;
    *clean = 1;
    for (int64_t index = 0;; index++) {
        uint8_t head[12];
        const size_t got = fread(head, 1, sizeof head, in);
        if (got == 0 && !ferror(in)) break; /* the end */
        if (got < sizeof head || left < 12 || qkv__crc32c_masked(head, 8) != get_le32(head + 8) ||
            get_le64(head) > QKV__TFRECORD_MAX || get_le64(head) + 4 > left - 12) {
            *clean = 0; /* truncated or damaged: drop it and what follows */
            break;
        }
        const size_t m = (size_t)get_le64(head), need = 12 + m + 4;
        left -= need;
        if (need > cap) {
            qkv__free(buf);
            cap = need;
            if (!(buf = qkv__alloc(cap))) {
                s = qkv__fail(QKV_ERR_NOMEM, "%s: out of memory", path);
                break;
            }
        }
        memcpy(buf, head, 12);
        if (fread(buf + 12, 1, m + 4, in) != m + 4) {
            s = qkv__io_fail("cannot read", path);
            break;
        }
        int64_t step = 0;
        int version = 0;
        qkv_status es = qkv__crc32c_masked(buf + 12, m) != get_le32(buf + 12 + m)
                            ? QKV_ERR_FORMAT
                            : qkv__tb_event_step(buf + 12, m, &step, &version);
        if (es == QKV_ERR_NOMEM) {
            s = es;
            break;
        }
        if (es != QKV_OK) {
            *clean = 0;
            break;
        }
        if (version != (index == 0)) *clean = 0; /* only the first record is the version */
        saw_version |= version && index == 0;
        if (version) continue; /* a new one was written */
        if (step > upto) {
            *clean = 0;
            continue;
        }
        if (fwrite(buf, 1, need, out) != need) {
            s = qkv__write_fail("cannot write", tmp);
            break;
        }
    }
    if (s == QKV_OK && ferror(in)) s = qkv__io_fail("cannot read", path);
    if (!saw_version) *clean = 0; /* e.g. an empty file: it gets its version record */
    qkv__free(buf);
    return s;
}

/* Cuts path back to the records of steps <= upto unless it holds nothing else (see .h). */
static qkv_status cut_back(const char *path, int64_t upto) {
    char tmp[PATH_CAP + 32];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *in = fopen(path, "rb");
    if (!in) return qkv__io_fail("cannot read", path);
    FILE *out = fopen(tmp, "wb");
    if (!out) {
        fclose(in);
        return qkv__write_fail("cannot create", tmp);
    }
    int clean = 0;
    qkv_status s = copy_kept(in, path, out, tmp, upto, &clean);
    fclose(in);
    if (s == QKV_OK && !clean && (fflush(out) != 0 || fsync(fileno(out)) != 0))
        s = qkv__write_fail("cannot write", tmp);
    if (fclose(out) != 0 && s == QKV_OK && !clean) s = qkv__write_fail("cannot write", tmp);
    if (s == QKV_OK && !clean && rename(tmp, path) != 0)
        s = qkv__write_fail("cannot rename the temporary file", tmp);
    if (s != QKV_OK || clean) unlink(tmp);
    return s;
}

qkv_status qkv__tb_open(const char *run_dir, int64_t upto, qkv__tb_writer **out) {
    if (!run_dir || !out) return qkv__fail(QKV_ERR_INVALID_ARG, "qkv__tb_open: NULL argument");
    *out = NULL;
    qkv__tb_writer *w = qkv__calloc(1, sizeof *w);
    if (!w) return qkv__fail(QKV_ERR_NOMEM, "TensorBoard events: out of memory");
    char name[256];
    newest_event_file(run_dir, name, sizeof name);
    qkv_status s = QKV_OK;
    if (name[0]) {
        if (snprintf(w->path, sizeof w->path, "%s/%s", run_dir, name) >= (int)sizeof w->path)
            s = qkv__fail(QKV_ERR_INVALID_ARG, "%s: path too long", run_dir);
        if (s == QKV_OK) s = cut_back(w->path, upto);
        if (s == QKV_OK && !(w->f = fopen(w->path, "ab")))
            s = qkv__write_fail("cannot append to", w->path);
    } else {
        char host[128] = "";
        if (gethostname(host, sizeof host - 1) != 0 || !host[0]) snprintf(host, sizeof host, "qkv");
        for (char *p = host; *p; p++)
            if (*p == '/') *p = '_';
        if (snprintf(w->path, sizeof w->path, "%s/" QKV__TB_PREFIX "%lld.%s", run_dir,
                     (long long)time(NULL), host) >= (int)sizeof w->path)
            s = qkv__fail(QKV_ERR_INVALID_ARG, "%s: path too long", run_dir);
        if (s == QKV_OK && !(w->f = fopen(w->path, "wb")))
            s = qkv__write_fail("cannot create", w->path);
        if (s == QKV_OK) s = write_version(w->f, w->path);
        if (s == QKV_OK && fflush(w->f) != 0) s = qkv__write_fail("cannot write", w->path);
    }
    if (s != QKV_OK) {
        if (w->f) fclose(w->f);
        qkv__free(w);
        return s;
    }
    *out = w;
    return QKV_OK;
}

qkv_status qkv__tb_append(qkv__tb_writer *w, const uint8_t *event, size_t n) {
    if (write_record(w->f, event, n) != 0 || fflush(w->f) != 0)
        return qkv__write_fail("cannot write", w->path);
    return QKV_OK;
}

/* Appends the encoded event ev (when s is OK) and frees it. */
static qkv_status append_encoded(qkv__tb_writer *w, qkv_status s, uint8_t *ev, size_t n) {
    if (s == QKV_OK) s = qkv__tb_append(w, ev, n);
    qkv__free(ev);
    return s;
}

qkv_status qkv__tb_scalars(qkv__tb_writer *w, int64_t step, const char *const *tags,
                           const double *values, size_t k) {
    uint8_t *ev = NULL;
    size_t n = 0;
    qkv_status s = qkv__tb_encode_scalars(wall_now(), step, tags, values, k, &ev, &n);
    return append_encoded(w, s, ev, n);
}

qkv_status qkv__tb_histogram(qkv__tb_writer *w, int64_t step, const char *tag, const float *x,
                             int64_t count) {
    uint8_t *ev = NULL;
    size_t n = 0;
    qkv_status s = qkv__tb_encode_histogram(wall_now(), step, tag, x, count, &ev, &n);
    return append_encoded(w, s, ev, n);
}

qkv_status qkv__tb_sync(qkv__tb_writer *w) {
    if (fflush(w->f) != 0 || fsync(fileno(w->f)) != 0)
        return qkv__write_fail("cannot write", w->path);
    return QKV_OK;
}

const char *qkv__tb_path(const qkv__tb_writer *w) { return w ? w->path : NULL; }

qkv_status qkv__tb_close(qkv__tb_writer *w) {
    if (!w) return QKV_OK;
    qkv_status s = QKV_OK;
    if (fclose(w->f) != 0) s = qkv__write_fail("cannot write", w->path);
    qkv__free(w);
    return s;
}
