/* fuzz_labeled.c — libFuzzer target for the labelled-text reader (TSV, CSV, JSON lines).
 *
 * Input: one byte of options (bits 0-1 the format: TSV, CSV, JSON lines; 2-3 the problem;
 * 4 no_quotes; 5-6 header: detect, yes, no; 7 a 48-byte record cap), one byte giving a piece
 * size, then the file's bytes. The bytes are parsed from memory twice, whole and cut into
 * pieces of that size (qkv__labeled_parse, the parser qkv_labeled_load feeds from a file):
 * both must give the same status and message, or the same examples. Accepted data must keep
 * every promise of qkv.h: texts non-empty UTF-8 without NUL bytes, label ids in range, names
 * in the documented order, a split that partitions the examples, mapping to the names
 * reversed succeeding and to a name list missing one failing with FORMAT. A broken promise
 * aborts (a crash for libFuzzer). */
#include "fuzz_require.h"
#include "io/json.h"
#include "qkv.h"
#include "train/labeled.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* -?[0-9]+ within a long long (*v) */
static int is_integer(const char *s, long long *v) {
    const char *p = s + (*s == '-');
    if (!*p) return 0;
    for (; *p; p++)
        if (*p < '0' || *p > '9') return 0;
    errno = 0;
    *v = strtoll(s, NULL, 10);
    return errno == 0;
}

static void check_names(const qkv_labeled *d) {
    int64_t n = qkv_labeled_num_labels(d);
    int numeric = 1;
    long long x, y;
    for (int64_t k = 0; k < n; k++) numeric &= is_integer(qkv_labeled_label_name(d, k), &x);
    for (int64_t k = 0; k + 1 < n; k++) {
        const char *a = qkv_labeled_label_name(d, k), *b = qkv_labeled_label_name(d, k + 1);
        REQUIRE(a && b && *a && strcmp(a, b) != 0);
        if (numeric) {
            is_integer(a, &x);
            is_integer(b, &y);
            REQUIRE(x < y || (x == y && strcmp(a, b) < 0));
        } else {
            REQUIRE(strcmp(a, b) < 0);
        }
    }
}

static void check_examples(const qkv_labeled *d) {
    int64_t n = qkv_labeled_count(d), L = qkv_labeled_num_labels(d);
    qkv_problem_type p = qkv_labeled_problem(d);
    REQUIRE(n >= 1);
    float *v = malloc(sizeof(float) * (size_t)(L ? L : 1));
    for (int64_t i = 0; i < n; i++) {
        size_t len;
        const char *t = qkv_labeled_text(d, i, &len);
        REQUIRE(t && len > 0 && strlen(t) == len && qkv__utf8_valid(t, len, NULL));
        t = qkv_labeled_pair(d, i, &len);
        REQUIRE(!t || (len > 0 && strlen(t) == len && qkv__utf8_valid(t, len, NULL)));
        int64_t line;
        REQUIRE(qkv_labeled_source(d, i, &line) && line >= 1);
        if (p == QKV_PROBLEM_REGRESSION) {
            float x = qkv_labeled_value(d, i);
            REQUIRE(x == x && x - x == 0); /* finite */
            continue;
        }
        int32_t id = qkv_labeled_label(d, i);
        REQUIRE(p == QKV_PROBLEM_SINGLE_LABEL ? id >= 0 && id < L : id == -1);
        REQUIRE(qkv_labeled_label_vector(d, i, v) == QKV_OK);
        int ones = 0;
        for (int64_t k = 0; k < L; k++) {
            REQUIRE(v[k] == 0 || v[k] == 1);
            ones += v[k] == 1;
        }
        REQUIRE(p == QKV_PROBLEM_MULTI_LABEL || (ones == 1 && v[id] == 1));
    }
    free(v);
}

static int same(const qkv_labeled *a, const qkv_labeled *b) {
    if (qkv_labeled_count(a) != qkv_labeled_count(b) ||
        qkv_labeled_num_labels(a) != qkv_labeled_num_labels(b))
        return 0;
    for (int64_t k = 0; k < qkv_labeled_num_labels(a); k++)
        if (strcmp(qkv_labeled_label_name(a, k), qkv_labeled_label_name(b, k)) != 0) return 0;
    for (int64_t i = 0; i < qkv_labeled_count(a); i++) {
        size_t n1, n2;
        const char *t1 = qkv_labeled_text(a, i, &n1), *t2 = qkv_labeled_text(b, i, &n2);
        int64_t l1, l2;
        qkv_labeled_source(a, i, &l1);
        qkv_labeled_source(b, i, &l2);
        if (n1 != n2 || memcmp(t1, t2, n1) != 0 || l1 != l2 ||
            qkv_labeled_label(a, i) != qkv_labeled_label(b, i))
            return 0;
        float x = qkv_labeled_value(a, i), y = qkv_labeled_value(b, i);
        if (x != y && !(x != x && y != y)) return 0;
    }
    return 1;
}

static void check_split_and_map(qkv_labeled *d) {
    int64_t n = qkv_labeled_count(d), L = qkv_labeled_num_labels(d);
    if (n >= 2) {
        qkv_labeled *tr = NULL, *va = NULL;
        REQUIRE(qkv_labeled_split(d, 0.3, 42, &tr, &va) == QKV_OK);
        REQUIRE(qkv_labeled_count(tr) + qkv_labeled_count(va) == n);
        REQUIRE(qkv_labeled_count(tr) >= 1 || qkv_labeled_count(va) >= 1);
        qkv_labeled_free(tr);
        qkv_labeled_free(va);
    }
    if (L < 1) return;
    const char **names = malloc(sizeof *names * (size_t)L);
    char **copy = malloc(sizeof *copy * (size_t)L);
    for (int64_t k = 0; k < L; k++) {
        copy[k] = strdup(qkv_labeled_label_name(d, L - 1 - k));
        names[k] = copy[k];
    }
    int32_t before = qkv_labeled_label(d, 0);
    REQUIRE(qkv_labeled_map_labels(d, names, L) == QKV_OK);
    REQUIRE(before < 0 || qkv_labeled_label(d, 0) == L - 1 - before);
    /* without one name that an example uses: FORMAT, and nothing changes */
    if (L >= 2 && qkv_labeled_problem(d) == QKV_PROBLEM_SINGLE_LABEL) {
        int32_t used = qkv_labeled_label(d, 0);
        const char **fewer = malloc(sizeof *fewer * (size_t)(L - 1));
        for (int64_t k = 0, j = 0; k < L; k++)
            if (k != used) fewer[j++] = names[k];
        REQUIRE(qkv_labeled_map_labels(d, fewer, L - 1) == QKV_ERR_FORMAT);
        REQUIRE(qkv_labeled_num_labels(d) == L && qkv_labeled_label(d, 0) == used);
        free(fewer);
    }
    for (int64_t k = 0; k < L; k++) free(copy[k]);
    free(copy);
    free(names);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    static const char *const names[] = {"fuzz.tsv", "fuzz.csv", "fuzz.jsonl", "fuzz.jsonl"};
    uint8_t flags = data[0];
    size_t piece = 1 + data[1] % 64;
    qkv_labeled_options o;
    qkv_labeled_default_options(&o);
    o.problem = (qkv_problem_type)((flags >> 2) & 3);
    if (o.problem > QKV_PROBLEM_REGRESSION) o.problem = QKV_PROBLEM_SINGLE_LABEL;
    o.no_quotes = (flags >> 4) & 1;
    o.header = ((flags >> 5) & 3) == 1 ? 1 : ((flags >> 5) & 3) == 2 ? -1 : 0;
    if (flags & 0x80) o.max_record_bytes = 48;
    const char *name = names[flags & 3];
    data += 2;
    size -= 2;

    qkv_labeled *whole = (qkv_labeled *)1, *cut = (qkv_labeled *)1;
    qkv_status s1 = qkv__labeled_parse(name, data, size, &o, 0, &whole);
    static char msg[2048];
    snprintf(msg, sizeof msg, "%s", qkv_last_error());
    qkv_status s2 = qkv__labeled_parse(name, data, size, &o, piece, &cut);
    REQUIRE(s1 == s2);
    if (s1 != QKV_OK) {
        REQUIRE(whole == NULL && cut == NULL);
        REQUIRE(s1 == QKV_ERR_FORMAT); /* nothing else can go wrong with bytes in memory */
        REQUIRE(strcmp(msg, qkv_last_error()) == 0 && strncmp(msg, name, strlen(name)) == 0);
        return 0;
    }
    REQUIRE(same(whole, cut));
    check_names(whole);
    check_examples(whole);
    check_split_and_map(whole);
    qkv_labeled_free(whole);
    qkv_labeled_free(cut);
    return 0;
}
