/* test_labeled.c — labelled text for classification (qkv_labeled_*): TSV, CSV, JSON lines and
 * class folders written into a scratch directory by the test itself; headers, pairs, quoting,
 * CRLF, BOM, multi-label, regression, label order, mapping to given names, every error class
 * with its FILE:LINE message, a FIFO refused, the stratified split, a 1,000-example round
 * trip (the test's own generated examples are the reference), the same parse whatever the
 * input is cut into, and fault injection (every allocation failed in turn). */
#include "fault_alloc.h"
#include "qkv.h"
#include "test.h"
#include "train/labeled.h"

#include <errno.h>
#include <stdint.h>
#include <sys/types.h>

static char dir[256];

static const char *path_of(const char *name) {
    static char p[2][512];
    static int k;
    k ^= 1;
    snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
    return p[k];
}

static void put_bytes(const char *name, const char *data, size_t n) {
    FILE *f = fopen(path_of(name), "wb");
    if (!f) {
        perror(name);
        exit(1);
    }
    if (n && fwrite(data, 1, n, f) != n) exit(1);
    fclose(f);
}

static void put(const char *name, const char *text) { put_bytes(name, text, strlen(text)); }

static qkv_labeled *load(const char *name, const qkv_labeled_options *o) {
    qkv_labeled *d = NULL;
    qkv_status s = qkv_labeled_load(path_of(name), o, &d);
    CHECK_MSG(s == QKV_OK, "%s: %s: %s", name, qkv_strerror(s), qkv_last_error());
    return d;
}

static int text_is(const qkv_labeled *d, int64_t i, const char *want) {
    size_t n;
    const char *t = qkv_labeled_text(d, i, &n);
    return t && n == strlen(want) && strcmp(t, want) == 0;
}

static int pair_is(const qkv_labeled *d, int64_t i, const char *want) {
    size_t n;
    const char *t = qkv_labeled_pair(d, i, &n);
    if (!want) return t == NULL;
    return t && n == strlen(want) && strcmp(t, want) == 0;
}

static int name_is(const qkv_labeled *d, int64_t k, const char *want) {
    const char *s = qkv_labeled_label_name(d, k);
    return s && strcmp(s, want) == 0;
}

static int64_t line_of(const qkv_labeled *d, int64_t i) {
    int64_t line = -1;
    qkv_labeled_source(d, i, &line);
    return line;
}

/* The load must fail with `status` and a message containing "DIR/NAME" + `want`. */
static void expect_fail(const char *name, const qkv_labeled_options *o, qkv_status status,
                        const char *want) {
    qkv_labeled *d = (qkv_labeled *)1;
    qkv_status s = qkv_labeled_load(path_of(name), o, &d);
    char full[1024];
    snprintf(full, sizeof full, "%s%s", path_of(name), want);
    CHECK_MSG(s == status && d == NULL && strstr(qkv_last_error(), full),
              "%s: %s (%s), expected %s with '%s'", name, qkv_strerror(s), qkv_last_error(),
              qkv_strerror(status), full);
    if (s == QKV_OK) qkv_labeled_free(d);
}

static qkv_labeled_options opts_for(qkv_problem_type p) {
    qkv_labeled_options o;
    qkv_labeled_default_options(&o);
    o.problem = p;
    return o;
}

/* ---------------------------------------------------------------- formats */

static void test_tsv(void) {
    put("plain.tsv", "hello world\tpos\nbad movie\tneg\n\n");
    qkv_labeled *d = load("plain.tsv", NULL);
    if (d) {
        CHECK_EQ_INT(qkv_labeled_count(d), 2);
        CHECK(text_is(d, 0, "hello world") && text_is(d, 1, "bad movie"));
        CHECK(pair_is(d, 0, NULL) && !qkv_labeled_has_pairs(d));
        CHECK_EQ_INT(qkv_labeled_num_labels(d), 2);
        CHECK(name_is(d, 0, "neg") && name_is(d, 1, "pos"));
        CHECK_EQ_INT(qkv_labeled_label(d, 0), 1);
        CHECK_EQ_INT(qkv_labeled_label(d, 1), 0);
        CHECK_EQ_INT(line_of(d, 0), 1);
        CHECK_EQ_INT(line_of(d, 1), 2);
        CHECK(strcmp(qkv_labeled_source(d, 1, NULL), path_of("plain.tsv")) == 0);
        CHECK(qkv_labeled_problem(d) == QKV_PROBLEM_SINGLE_LABEL);
        CHECK(isnan(qkv_labeled_value(d, 0)));
        float v[2] = {7, 7};
        CHECK_OK(qkv_labeled_label_vector(d, 0, v));
        CHECK(v[0] == 0 && v[1] == 1);
        /* out of range */
        CHECK(qkv_labeled_text(d, 2, NULL) == NULL && qkv_labeled_text(d, -1, NULL) == NULL);
        CHECK(qkv_labeled_source(d, 2, NULL) == NULL && qkv_labeled_label(d, 2) == -1);
        CHECK(qkv_labeled_label_name(d, 2) == NULL);
        CHECK_STATUS(qkv_labeled_label_vector(d, 2, v), QKV_ERR_INVALID_ARG);
        int64_t first = -1;
        CHECK_EQ_INT(qkv_labeled_multiline(d, &first), 0);
        CHECK_EQ_INT(first, 0);
    }
    qkv_labeled_free(d);

    /* a text that starts with '"' without being quoted: lines 2-4 become one record, counted */
    put("quote.tsv", "ok\tpos\n\"Quoted start.\tpos\nplain\tneg\nend\"\tneg\nfine\tpos\n");
    d = load("quote.tsv", NULL);
    if (d) {
        int64_t first = -1;
        CHECK_EQ_INT(qkv_labeled_count(d), 3);
        CHECK_EQ_INT(qkv_labeled_multiline(d, &first), 1);
        CHECK_EQ_INT(first, 2);
    }
    qkv_labeled_free(d);
    qkv_labeled_options nq;
    qkv_labeled_default_options(&nq);
    nq.no_quotes = 1;
    d = load("quote.tsv", &nq);
    if (d) {
        CHECK_EQ_INT(qkv_labeled_count(d), 5);
        CHECK_EQ_INT(qkv_labeled_multiline(d, NULL), 0);
    }
    qkv_labeled_free(d);
    CHECK_EQ_INT(qkv_labeled_multiline(NULL, NULL), 0);

    /* a GLUE-style header: named columns, pairs; integer labels */
    put("glue.tsv", "sentence1\tsentence2\tlabel\nA cat.\tA dog.\t1\nRain\tSun\t0\n");
    d = load("glue.tsv", NULL);
    if (d) {
        CHECK_EQ_INT(qkv_labeled_count(d), 2);
        CHECK(text_is(d, 0, "A cat.") && pair_is(d, 0, "A dog.") && pair_is(d, 1, "Sun"));
        CHECK(qkv_labeled_has_pairs(d));
        CHECK(name_is(d, 0, "0") && name_is(d, 1, "1"));
        CHECK_EQ_INT(qkv_labeled_label(d, 0), 1);
        CHECK_EQ_INT(line_of(d, 0), 2);
        CHECK_EQ_INT(line_of(d, 1), 3);
    }
    qkv_labeled_free(d);

    /* columns chosen by name, in any order, extra columns ignored */
    put("named.tsv", "idx\tlabel\tsentence\n0\tpos\tgood\n1\tneg\tbad\n");
    d = load("named.tsv", NULL);
    if (d) CHECK(qkv_labeled_count(d) == 2 && text_is(d, 1, "bad") && name_is(d, 0, "neg"));
    qkv_labeled_free(d);
    qkv_labeled_options o = opts_for(QKV_PROBLEM_SINGLE_LABEL);
    o.text_field = "review";
    o.label_field = "stars";
    o.header = 1;
    put("custom.tsv", "stars\tid\treview\n5\tx\tgreat\n1\ty\tawful\n");
    d = load("custom.tsv", &o);
    if (d) CHECK(qkv_labeled_count(d) == 2 && text_is(d, 0, "great") && name_is(d, 1, "5"));
    qkv_labeled_free(d);

    /* three columns without a header: text, text_pair, label */
    put("three.tsv", "q one\ta one\tyes\nq two\ta two\tno\n");
    d = load("three.tsv", NULL);
    if (d) CHECK(pair_is(d, 1, "a two") && name_is(d, 1, "yes") && qkv_labeled_label(d, 1) == 0);
    qkv_labeled_free(d);

    /* header = -1: a first row that looks like a header is an example */
    o = opts_for(QKV_PROBLEM_SINGLE_LABEL);
    o.header = -1;
    put("nohead.tsv", "text\tlabel\nx\ty\n");
    d = load("nohead.tsv", &o);
    if (d) CHECK(qkv_labeled_count(d) == 2 && text_is(d, 0, "text") && name_is(d, 0, "label"));
    qkv_labeled_free(d);

    /* spaces around fields are kept; quotes are honoured in TSV unless no_quotes */
    put("quoted.tsv", "  padded \t\"a\tb\"\n\"tab\there\"\tx\nmid \"quote\"\ty\n");
    d = load("quoted.tsv", NULL);
    if (d) {
        CHECK(text_is(d, 0, "  padded ") && name_is(d, 0, "a\tb"));
        CHECK(text_is(d, 1, "tab\there"));
        CHECK(text_is(d, 2, "mid \"quote\""));
    }
    qkv_labeled_free(d);
    /* a text that starts with a quote opens a quoted field, which then runs on to the next
     * lone quote (libcsv's lenient reading): such files need no_quotes */
    put("quoted.tsv", "ok\tx\n\"Hi,\" she said\tx\nnext\ty\n");
    expect_fail("quoted.tsv", NULL, QKV_ERR_FORMAT, ":2: a quoted field is not closed");
    o = opts_for(QKV_PROBLEM_SINGLE_LABEL);
    o.no_quotes = 1;
    put("noquote.tsv", "\"Hi,\" she said\tx\nit's \"fine\"\ty\n");
    d = load("noquote.tsv", &o);
    if (d) CHECK(text_is(d, 0, "\"Hi,\" she said") && text_is(d, 1, "it's \"fine\""));
    qkv_labeled_free(d);
}

static void test_csv(void) {
    put("q.csv", "text,label\n\"Hello, world\",pos\n\"multi\nline \"\"quoted\"\"\",neg\n"
                 "plain,pos\n\"\",neg\n");
    expect_fail("q.csv", NULL, QKV_ERR_FORMAT, ":6: empty text");
    put("q.csv", "text,label\n\"Hello, world\",pos\n\"multi\nline \"\"quoted\"\"\",neg\n"
                 "plain,pos\n");
    qkv_labeled *d = load("q.csv", NULL);
    if (d) {
        CHECK_EQ_INT(qkv_labeled_count(d), 3);
        CHECK(text_is(d, 0, "Hello, world"));
        CHECK(text_is(d, 1, "multi\nline \"quoted\""));
        CHECK(text_is(d, 2, "plain"));
        /* a record's line is where it starts; lines inside quotes are counted */
        CHECK_EQ_INT(line_of(d, 0), 2);
        CHECK_EQ_INT(line_of(d, 1), 3);
        CHECK_EQ_INT(line_of(d, 2), 5);
    }
    qkv_labeled_free(d);

    /* CRLF line ends (kept inside quotes) and a BOM */
    put("crlf.csv", "\xEF\xBB\xBFtext,label\r\nfirst,a\r\n\"two\r\nlines\",b\r\n\r\nlast,a");
    d = load("crlf.csv", NULL);
    if (d) {
        CHECK_EQ_INT(qkv_labeled_count(d), 3);
        CHECK(text_is(d, 0, "first") && text_is(d, 1, "two\r\nlines") && text_is(d, 2, "last"));
        CHECK(name_is(d, 0, "a") && name_is(d, 1, "b"));
        CHECK_EQ_INT(line_of(d, 2), 6);
    }
    qkv_labeled_free(d);
    put("crlf.tsv", "a\tx\r\nb\ty\r\n");
    d = load("crlf.tsv", NULL);
    if (d) CHECK(text_is(d, 0, "a") && name_is(d, 1, "y") && line_of(d, 1) == 2);
    qkv_labeled_free(d);
    put("bom.tsv", "\xEF\xBB\xBFtext\tlabel\nhi\tx\n");
    d = load("bom.tsv", NULL);
    if (d) CHECK(qkv_labeled_count(d) == 1 && text_is(d, 0, "hi"));
    qkv_labeled_free(d);
}

static void test_jsonl(void) {
    put("a.jsonl", "{\"text\":\"a\",\"label\":\"x\",\"idx\":0}\n"
                   "{\"text\":\"b\",\"text_pair\":\"c\",\"label\":3}\n"
                   "   \n"
                   "{\"text\":\"d\\u00e9\",\"text_pair\":null,\"label\":\"y\"}");
    qkv_labeled *d = load("a.jsonl", NULL);
    if (d) {
        CHECK_EQ_INT(qkv_labeled_count(d), 3);
        CHECK(pair_is(d, 0, NULL) && pair_is(d, 1, "c") && pair_is(d, 2, NULL));
        CHECK(qkv_labeled_has_pairs(d) && text_is(d, 2, "d\xC3\xA9"));
        /* "3" among strings: byte order */
        CHECK(name_is(d, 0, "3") && name_is(d, 1, "x") && name_is(d, 2, "y"));
        CHECK_EQ_INT(qkv_labeled_label(d, 1), 0);
        CHECK_EQ_INT(line_of(d, 2), 4);
    }
    qkv_labeled_free(d);
    /* GLUE's names, CRLF, a BOM, the .json and .ndjson extensions */
    const char *glue = "\xEF\xBB\xBF{\"sentence1\":\"s1\",\"sentence2\":\"s2\",\"label\":0}\r\n"
                       "{\"sentence\":\"s3\",\"label\":1}\r\n";
    put("glue.json", glue);
    put("glue.ndjson", glue);
    for (int k = 0; k < 2; k++) {
        d = load(k ? "glue.ndjson" : "glue.json", NULL);
        if (d)
            CHECK(qkv_labeled_count(d) == 2 && text_is(d, 0, "s1") && pair_is(d, 0, "s2") &&
                  text_is(d, 1, "s3") && name_is(d, 1, "1"));
        qkv_labeled_free(d);
    }
    /* format forced: a .txt file read as JSON lines */
    put("forced.txt", "{\"text\":\"t\",\"label\":\"l\"}\n");
    qkv_labeled_options o = opts_for(QKV_PROBLEM_SINGLE_LABEL);
    o.format = QKV_LABELED_JSONL;
    d = load("forced.txt", &o);
    CHECK(d && qkv_labeled_count(d) == 1);
    qkv_labeled_free(d);
    expect_fail("forced.txt", NULL, QKV_ERR_INVALID_ARG, ": cannot tell the format");
}

static void test_multi_label(void) {
    qkv_labeled_options o = opts_for(QKV_PROBLEM_MULTI_LABEL);
    put("multi.tsv", "t1\ta|b\nt2\t\nt3\tc|b|c\n");
    qkv_labeled *d = load("multi.tsv", &o);
    if (d) {
        CHECK_EQ_INT(qkv_labeled_num_labels(d), 3);
        float v[3];
        const float want[3][3] = {{1, 1, 0}, {0, 0, 0}, {0, 1, 1}};
        for (int i = 0; i < 3; i++) {
            CHECK_OK(qkv_labeled_label_vector(d, i, v));
            CHECK_MSG(memcmp(v, want[i], sizeof v) == 0, "example %d", i);
        }
        CHECK_EQ_INT(qkv_labeled_label(d, 0), -1);
    }
    qkv_labeled_free(d);
    o.label_separator = ',';
    put("multi_sep.csv", "text,labels\nx,\"a,b\"\n");
    d = load("multi_sep.csv", &o);
    if (d) CHECK(qkv_labeled_num_labels(d) == 2 && name_is(d, 1, "b"));
    qkv_labeled_free(d);
    o = opts_for(QKV_PROBLEM_MULTI_LABEL);
    put("multi.jsonl",
        "{\"text\":\"a\",\"labels\":[\"x\",\"y\"]}\n{\"text\":\"b\",\"label\":\"x\"}\n"
        "{\"text\":\"c\",\"labels\":[2,\"y\",2]}\n{\"text\":\"d\",\"labels\":[]}\n");
    d = load("multi.jsonl", &o);
    if (d) {
        CHECK_EQ_INT(qkv_labeled_num_labels(d), 3); /* 2, x, y */
        float v[3];
        CHECK_OK(qkv_labeled_label_vector(d, 2, v));
        CHECK(v[0] == 1 && v[1] == 0 && v[2] == 1);
        CHECK_OK(qkv_labeled_label_vector(d, 3, v));
        CHECK(v[0] == 0 && v[1] == 0 && v[2] == 0);
    }
    qkv_labeled_free(d);
    put("multi_bad.tsv", "t1\ta||b\n");
    expect_fail("multi_bad.tsv", &o, QKV_ERR_FORMAT, ":1: empty label");
    put("multi_bad.jsonl", "{\"text\":\"a\",\"labels\":[\"x\",true]}\n");
    expect_fail("multi_bad.jsonl", &o, QKV_ERR_FORMAT, ":1: wrong JSON type: 'labels'[1]");
}

static void test_regression(void) {
    qkv_labeled_options o = opts_for(QKV_PROBLEM_REGRESSION);
    put("reg.tsv", "text\tlabel\nt\t0.5\nu\t-3e2\nv\t 4 \n");
    qkv_labeled *d = load("reg.tsv", &o);
    if (d) {
        CHECK_EQ_INT(qkv_labeled_count(d), 3);
        CHECK(qkv_labeled_value(d, 0) == 0.5f && qkv_labeled_value(d, 1) == -300.0f &&
              qkv_labeled_value(d, 2) == 4.0f);
        CHECK_EQ_INT(qkv_labeled_num_labels(d), 0);
        float v[1];
        CHECK_STATUS(qkv_labeled_label_vector(d, 0, v), QKV_ERR_INVALID_ARG);
        const char *names[] = {"a"};
        CHECK_STATUS(qkv_labeled_map_labels(d, names, 1), QKV_ERR_INVALID_ARG);
    }
    qkv_labeled_free(d);
    put("reg.jsonl", "{\"text\":\"a\",\"label\":2.5}\n{\"text\":\"b\",\"label\":3}\n");
    d = load("reg.jsonl", &o);
    if (d) CHECK(qkv_labeled_value(d, 0) == 2.5f && qkv_labeled_value(d, 1) == 3.0f);
    qkv_labeled_free(d);
    const char *bad[] = {"abc", "inf", "nan", "1e999", "0x10", "1.5x", ""};
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        char text[64];
        snprintf(text, sizeof text, "ok\t1\nt\t%s\n", bad[k]);
        put("reg_bad.tsv", text);
        expect_fail("reg_bad.tsv", &o, QKV_ERR_FORMAT, ":2: regression label");
    }
    put("reg_bad.jsonl", "{\"text\":\"a\",\"label\":\"2.5\"}\n");
    expect_fail("reg_bad.jsonl", &o, QKV_ERR_FORMAT, ":1: wrong JSON type: 'label' is a string");
    o.format = QKV_LABELED_DIR;
    CHECK_STATUS(qkv_labeled_load(dir, &o, &d), QKV_ERR_INVALID_ARG);
}

/* ---------------------------------------------------------------- labels */

static void test_label_order(void) {
    put("ints.tsv", "a\t10\nb\t2\nc\t-1\nd\t2\n");
    qkv_labeled *d = load("ints.tsv", NULL);
    if (d) {
        CHECK(qkv_labeled_num_labels(d) == 3 && name_is(d, 0, "-1") && name_is(d, 1, "2") &&
              name_is(d, 2, "10"));
        CHECK(qkv_labeled_label(d, 0) == 2 && qkv_labeled_label(d, 1) == 1 &&
              qkv_labeled_label(d, 2) == 0 && qkv_labeled_label(d, 3) == 1);
    }
    qkv_labeled_free(d);
    put("mixed.tsv", "a\t10\nb\t2\nc\tB\nd\ta\n");
    d = load("mixed.tsv", NULL);
    if (d)
        CHECK(name_is(d, 0, "10") && name_is(d, 1, "2") && name_is(d, 2, "B") &&
              name_is(d, 3, "a"));
    qkv_labeled_free(d);
}

static void test_map_labels(void) {
    put("map.tsv", "t1\tneg\nt2\tpos\nt3\tneg\n");
    qkv_labeled *d = load("map.tsv", NULL);
    if (!d) return;
    const char *given[] = {"pos", "neutral", "neg"};
    CHECK_OK(qkv_labeled_map_labels(d, given, 3));
    CHECK_EQ_INT(qkv_labeled_num_labels(d), 3);
    CHECK(name_is(d, 0, "pos") && name_is(d, 1, "neutral") && name_is(d, 2, "neg"));
    CHECK(qkv_labeled_label(d, 0) == 2 && qkv_labeled_label(d, 1) == 0 &&
          qkv_labeled_label(d, 2) == 2);
    /* an unknown label: FORMAT naming the file and line of its first example; d unchanged */
    const char *small[] = {"neg"};
    qkv_status s = qkv_labeled_map_labels(d, small, 1);
    char want[600];
    snprintf(want, sizeof want, "%s:2: unknown label 'pos'", path_of("map.tsv"));
    CHECK_MSG(s == QKV_ERR_FORMAT && strstr(qkv_last_error(), want), "%s", qkv_last_error());
    CHECK(qkv_labeled_num_labels(d) == 3 && qkv_labeled_label(d, 1) == 0);
    const char *dup[] = {"pos", "neg", "pos"};
    CHECK_STATUS(qkv_labeled_map_labels(d, dup, 3), QKV_ERR_INVALID_ARG);
    const char *empty[] = {"pos", ""};
    CHECK_STATUS(qkv_labeled_map_labels(d, empty, 2), QKV_ERR_INVALID_ARG);
    const char *nul[] = {"pos", NULL};
    CHECK_STATUS(qkv_labeled_map_labels(d, nul, 2), QKV_ERR_INVALID_ARG);
    const char *bad_utf8[] = {"\xff"};
    CHECK_STATUS(qkv_labeled_map_labels(d, bad_utf8, 1), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_labeled_map_labels(d, given, 0), QKV_ERR_INVALID_ARG);
    qkv_labeled_free(d);

    /* multi-label: the ids move with the names; an unknown one inside a set is named */
    qkv_labeled_options o = opts_for(QKV_PROBLEM_MULTI_LABEL);
    put("map_multi.jsonl", "{\"text\":\"a\",\"labels\":[\"x\"]}\n"
                           "{\"text\":\"b\",\"labels\":[\"y\",\"z\"]}\n");
    d = load("map_multi.jsonl", &o);
    if (!d) return;
    const char *zyx[] = {"z", "y", "x", "w"};
    CHECK_OK(qkv_labeled_map_labels(d, zyx, 4));
    float v[4];
    CHECK_OK(qkv_labeled_label_vector(d, 1, v));
    CHECK(v[0] == 1 && v[1] == 1 && v[2] == 0 && v[3] == 0);
    const char *xy[] = {"x", "y"};
    s = qkv_labeled_map_labels(d, xy, 2);
    snprintf(want, sizeof want, "%s:2: unknown label 'z'", path_of("map_multi.jsonl"));
    CHECK_MSG(s == QKV_ERR_FORMAT && strstr(qkv_last_error(), want), "%s", qkv_last_error());
    qkv_labeled_free(d);
}

/* ---------------------------------------------------------------- errors */

static void test_errors(void) {
    qkv_labeled_options o = opts_for(QKV_PROBLEM_SINGLE_LABEL);
    put("e.tsv", "ok\tx\n\tpos\n");
    expect_fail("e.tsv", NULL, QKV_ERR_FORMAT, ":2: empty text");
    put("e.tsv", "ok\tx\nbad \xff byte\tpos\n");
    expect_fail("e.tsv", NULL, QKV_ERR_FORMAT, ":2: bad encoding");
    put("e.tsv", "ok\tx\ngood\t\xC0\xAF\n"); /* an overlong '/' in the label */
    expect_fail("e.tsv", NULL, QKV_ERR_FORMAT, ":2: bad encoding");
    put_bytes("e.tsv", "ok\tx\nnul\0byte\tpos\n", 19);
    expect_fail("e.tsv", NULL, QKV_ERR_FORMAT, ":2: bad encoding: a NUL byte");
    put("e.tsv", "a\tx\nb\ty\tz\n");
    expect_fail("e.tsv", NULL, QKV_ERR_FORMAT, ":2: wrong number of columns: 3, expected 2");
    put("e.tsv", "a\tb\tc\td\n");
    expect_fail("e.tsv", NULL, QKV_ERR_FORMAT, ":1: 4 columns; without a header");
    put("e.tsv", "one column\n");
    expect_fail("e.tsv", NULL, QKV_ERR_FORMAT, ":1: 1 columns");
    put("e.tsv", "ok\tx\nno label\t\n");
    expect_fail("e.tsv", NULL, QKV_ERR_FORMAT, ":2: empty label");
    put("e.tsv", "text\tlabel\nok\tx\n\"never closed\ty\nmore\tz\n");
    expect_fail("e.tsv", NULL, QKV_ERR_FORMAT, ":3: a quoted field is not closed");
    put("e.tsv", "text\tclass\nok\tx\n");
    expect_fail("e.tsv", NULL, QKV_ERR_FORMAT, ":1: the header has no label column 'label'");
    put("e.tsv", "sentence\ttext_pair\tlabel\nok\t\tx\n");
    expect_fail("e.tsv", NULL, QKV_ERR_FORMAT, ":2: empty text_pair");
    o.pair_field = "hypothesis";
    put("e.tsv", "text\tlabel\nok\tx\n");
    expect_fail("e.tsv", &o, QKV_ERR_FORMAT, ":1: the header has no text_pair column");
    o.pair_field = NULL;
    put("e.tsv", "");
    expect_fail("e.tsv", NULL, QKV_ERR_FORMAT, ": no examples");
    put("e.tsv", "text\tlabel\n\n\r\n");
    expect_fail("e.tsv", NULL, QKV_ERR_FORMAT, ": no examples");
    put("e.csv", "\xEF\xBB\xBF");
    expect_fail("e.csv", NULL, QKV_ERR_FORMAT, ": no examples");

    put("e.jsonl", "{\"text\":\"a\",\"label\":\"x\"}\n{\"text\": \"a\", \"label\": }\n");
    expect_fail("e.jsonl", NULL, QKV_ERR_FORMAT, ":2: malformed JSON");
    put("e.jsonl", "{\"text\":\"a\",\"label\":\"x\",\"label\":\"y\"}\n");
    expect_fail("e.jsonl", NULL, QKV_ERR_FORMAT, ":1: malformed JSON"); /* duplicate key */
    put("e.jsonl", "{\"text\":\"a\"}\n");
    expect_fail("e.jsonl", NULL, QKV_ERR_FORMAT, ":1: missing field 'label'");
    put("e.jsonl", "\n{\"label\":\"a\"}\n");
    expect_fail("e.jsonl", NULL, QKV_ERR_FORMAT,
                ":2: missing field 'text', 'sentence' or 'sentence1'");
    put("e.jsonl", "{\"text\":5,\"label\":\"a\"}\n");
    expect_fail("e.jsonl", NULL, QKV_ERR_FORMAT, ":1: wrong JSON type: 'text' is an integer");
    put("e.jsonl", "{\"text\":\"t\",\"text_pair\":[],\"label\":\"a\"}\n");
    expect_fail("e.jsonl", NULL, QKV_ERR_FORMAT, ":1: wrong JSON type: 'text_pair' is an array");
    put("e.jsonl", "{\"text\":\"t\",\"label\":true}\n");
    expect_fail("e.jsonl", NULL, QKV_ERR_FORMAT, ":1: wrong JSON type: 'label' is a boolean");
    put("e.jsonl", "{\"text\":\"t\",\"label\":[\"a\"]}\n");
    expect_fail("e.jsonl", NULL, QKV_ERR_FORMAT, ":1: wrong JSON type: 'label' is an array");
    put("e.jsonl", "{\"text\":\"t\",\"label\":1.5}\n");
    expect_fail("e.jsonl", NULL, QKV_ERR_FORMAT, ":1: wrong JSON type: 'label' is a real");
    put("e.jsonl", "[{\"text\":\"t\",\"label\":\"a\"}]\n");
    expect_fail("e.jsonl", NULL, QKV_ERR_FORMAT, ":1: wrong JSON type: the line is an array");
    put("e.jsonl", "{\"text\":\"\",\"label\":\"a\"}\n");
    expect_fail("e.jsonl", NULL, QKV_ERR_FORMAT, ":1: empty text");
    put("e.jsonl", "{\"text\":\"\xff\",\"label\":\"a\"}\n");
    expect_fail("e.jsonl", NULL, QKV_ERR_FORMAT, ":1: bad encoding");
    put("e.jsonl", "{\"text\":\"a\",\"label\":\"\"}\n");
    expect_fail("e.jsonl", NULL, QKV_ERR_FORMAT, ":1: empty label");
    put("e.jsonl", "\n  \n");
    expect_fail("e.jsonl", NULL, QKV_ERR_FORMAT, ": no examples");

    /* the record cap: a long field, row or line is refused with its line, not allocated */
    o = opts_for(QKV_PROBLEM_SINGLE_LABEL);
    o.max_record_bytes = 64;
    char big[400];
    memset(big, 'x', sizeof big);
    memcpy(big, "ok\ta\n", 5);
    memcpy(big + sizeof big - 3, "\tb\n", 3);
    put_bytes("e.tsv", big, sizeof big);
    expect_fail("e.tsv", &o, QKV_ERR_FORMAT, ":2: a row longer than 64 bytes");
    put("e.tsv", "ok\ta\n0123456789012345678901234567890123456789\t01234567890123456789012345\n");
    expect_fail("e.tsv", &o, QKV_ERR_FORMAT, ":2: a row longer than 64 bytes");
    big[0] = '"';
    memcpy(big + sizeof big - 3, "\"\tb", 3);
    put_bytes("e.csv", big, sizeof big); /* an open quote: the field would run to the end */
    expect_fail("e.csv", &o, QKV_ERR_FORMAT, ":1: a row longer than 64 bytes");
    put("e.jsonl",
        "{\"text\":\"a\",\"label\":\"x\"}\n"
        "{\"text\":\"01234567890123456789012345678901234567890123456789\",\"label\":\"x\"}\n");
    expect_fail("e.jsonl", &o, QKV_ERR_FORMAT, ":2: a line longer than 64 bytes");

    /* paths */
    CHECK_STATUS(qkv_labeled_load(path_of("missing.tsv"), NULL, &(qkv_labeled *){NULL}),
                 QKV_ERR_IO);
    o = opts_for(QKV_PROBLEM_SINGLE_LABEL);
    o.format = QKV_LABELED_TSV;
    expect_fail("", &o, QKV_ERR_IO, ": not a regular file (a directory)");
    o.problem = (qkv_problem_type)7;
    CHECK_STATUS(qkv_labeled_load(path_of("e.tsv"), &o, &(qkv_labeled *){NULL}),
                 QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_labeled_load(NULL, NULL, &(qkv_labeled *){NULL}), QKV_ERR_INVALID_ARG);
}

static void test_fifo(void) {
    const char *p = path_of("pipe.tsv");
    if (mkfifo(p, 0600) != 0) {
        CHECK_MSG(0, "mkfifo: %s", strerror(errno));
        return;
    }
    /* no writer: a reader that opened it blocking would hang here */
    expect_fail("pipe.tsv", NULL, QKV_ERR_IO, ": not a regular file (a FIFO)");
    unlink(p);
    qkv_labeled *d = (qkv_labeled *)1;
    qkv_labeled_options o = opts_for(QKV_PROBLEM_SINGLE_LABEL);
    o.format = QKV_LABELED_TSV;
    CHECK_STATUS(qkv_labeled_load("/dev/null", &o, &d), QKV_ERR_IO);
    CHECK(d == NULL && strstr(qkv_last_error(), "character device"));
}

/* ---------------------------------------------------------------- class folders */

static void mk(const char *name) { CHECK(mkdir(path_of(name), 0700) == 0); }

static void test_dir(void) {
    mk("imdb");
    mk("imdb/pos");
    mk("imdb/neg");
    mk("imdb/.cache");
    put("imdb/.cache/x.txt", "not an example");
    put("imdb/README", "ignored: not a folder");
    put("imdb/neg/b.txt", "bad\r\n\n");
    put("imdb/neg/a.txt", "\xEF\xBB\xBF"
                          "awful\nreally");
    put("imdb/pos/.hidden", "skipped");
    put("imdb/pos/1.txt", "good\n");
    qkv_labeled *d = load("imdb", NULL);
    if (d) {
        CHECK_EQ_INT(qkv_labeled_count(d), 3);
        CHECK(text_is(d, 0, "awful\nreally") && text_is(d, 1, "bad") && text_is(d, 2, "good"));
        CHECK(name_is(d, 0, "neg") && name_is(d, 1, "pos") && qkv_labeled_label(d, 2) == 1);
        int64_t line = -1;
        const char *src = qkv_labeled_source(d, 1, &line);
        CHECK(src && strcmp(src, path_of("imdb/neg/b.txt")) == 0 && line == 0);
    }
    qkv_labeled_free(d);
    /* format forced on a directory */
    qkv_labeled_options o = opts_for(QKV_PROBLEM_SINGLE_LABEL);
    o.format = QKV_LABELED_DIR;
    d = load("imdb", &o);
    CHECK(d && qkv_labeled_count(d) == 3);
    qkv_labeled_free(d);

    put("imdb/pos/2.txt", "\n");
    expect_fail("imdb", NULL, QKV_ERR_FORMAT, "/pos/2.txt: empty text");
    unlink(path_of("imdb/pos/2.txt"));
    put("imdb/pos/2.txt", "\xfe");
    expect_fail("imdb", NULL, QKV_ERR_FORMAT, "/pos/2.txt: bad encoding");
    unlink(path_of("imdb/pos/2.txt"));
    o.max_record_bytes = 4;
    expect_fail("imdb", &o, QKV_ERR_FORMAT, "/neg/a.txt: 15 bytes, more than max_record_bytes");
    CHECK(mkfifo(path_of("imdb/pos/fifo"), 0600) == 0);
    expect_fail("imdb", NULL, QKV_ERR_IO, "/pos/fifo: not a regular file (a FIFO)");
    unlink(path_of("imdb/pos/fifo"));
    CHECK(symlink("/etc/passwd", path_of("imdb/pos/link")) == 0);
    expect_fail("imdb", NULL, QKV_ERR_FORMAT, "/pos/link: a symbolic link");
    unlink(path_of("imdb/pos/link"));
    mk("imdb/pos/sub");
    expect_fail("imdb", NULL, QKV_ERR_IO, "/pos/sub: not a regular file (a directory)");
    rmdir(path_of("imdb/pos/sub"));
    /* a symbolic link to a folder is not a class */
    CHECK(symlink(path_of("imdb/pos"), path_of("imdb/zzz")) == 0);
    d = load("imdb", NULL);
    CHECK(d && qkv_labeled_num_labels(d) == 2);
    qkv_labeled_free(d);
    mk("empty");
    expect_fail("empty", NULL, QKV_ERR_FORMAT, ": no examples");
}

/* ---------------------------------------------------------------- split */

static int count_label(const qkv_labeled *d, int32_t k) {
    int c = 0;
    for (int64_t i = 0; i < qkv_labeled_count(d); i++) c += qkv_labeled_label(d, i) == k;
    return c;
}

/* train and val are d's examples, each once, in d's order in each part. */
static void check_partition(const qkv_labeled *d, const qkv_labeled *tr, const qkv_labeled *va) {
    int64_t n = qkv_labeled_count(d), a = 0, b = 0;
    CHECK_EQ_INT(qkv_labeled_count(tr) + qkv_labeled_count(va), n);
    for (int64_t i = 0; i < n; i++) {
        const char *t = qkv_labeled_text(d, i, NULL);
        const qkv_labeled *part = NULL;
        int64_t j = -1;
        if (a < qkv_labeled_count(tr) && strcmp(qkv_labeled_text(tr, a, NULL), t) == 0)
            part = tr, j = a++;
        else if (b < qkv_labeled_count(va) && strcmp(qkv_labeled_text(va, b, NULL), t) == 0)
            part = va, j = b++;
        CHECK_MSG(part != NULL, "example %lld is in neither part, or out of order", (long long)i);
        if (!part) return;
        int64_t l1, l2;
        CHECK(strcmp(qkv_labeled_source(d, i, &l1), qkv_labeled_source(part, j, &l2)) == 0 &&
              l1 == l2);
        CHECK(qkv_labeled_label(d, i) == qkv_labeled_label(part, j));
    }
    CHECK(qkv_labeled_num_labels(tr) == qkv_labeled_num_labels(d) &&
          qkv_labeled_num_labels(va) == qkv_labeled_num_labels(d));
}

static void test_split(void) {
    /* classes of 50, 30, 2 and 1 examples, interleaved */
    FILE *f = fopen(path_of("split.tsv"), "w");
    int sizes[4] = {50, 30, 2, 1}, left[4] = {50, 30, 2, 1}, id = 0;
    for (int r = 0; r < 50; r++)
        for (int c = 0; c < 4; c++)
            if (left[c]-- > 0) fprintf(f, "example %d\tclass%d\n", id++, c);
    fclose(f);
    qkv_labeled *d = load("split.tsv", NULL);
    if (!d) return;
    qkv_labeled *tr = NULL, *va = NULL, *tr2 = NULL, *va2 = NULL, *tr3 = NULL, *va3 = NULL;
    CHECK_OK(qkv_labeled_split(d, 0.2, 7, &tr, &va));
    CHECK_OK(qkv_labeled_split(d, 0.2, 7, &tr2, &va2));
    CHECK_OK(qkv_labeled_split(d, 0.2, 8, &tr3, &va3));
    if (tr && va && tr2 && va2 && tr3 && va3) {
        check_partition(d, tr, va);
        check_partition(d, tr3, va3);
        /* round(0.2 n), at least one each side for n >= 2; a single example stays in train */
        const int want_val[4] = {10, 6, 1, 0};
        for (int c = 0; c < 4; c++) {
            CHECK_EQ_INT(count_label(va, c), want_val[c]);
            CHECK_EQ_INT(count_label(tr, c), sizes[c] - want_val[c]);
        }
        /* a pure function of the seed */
        int same = qkv_labeled_count(va) == qkv_labeled_count(va2), differs = 0;
        for (int64_t i = 0; same && i < qkv_labeled_count(va); i++) {
            same &= strcmp(qkv_labeled_text(va, i, NULL), qkv_labeled_text(va2, i, NULL)) == 0;
            differs |= strcmp(qkv_labeled_text(va, i, NULL), qkv_labeled_text(va3, i, NULL)) != 0;
        }
        CHECK(same);
        CHECK_MSG(differs, "seeds 7 and 8 gave the same validation set");
    }
    qkv_labeled_free(tr);
    qkv_labeled_free(va);
    qkv_labeled_free(tr2);
    qkv_labeled_free(va2);
    qkv_labeled_free(tr3);
    qkv_labeled_free(va3);
    /* the extremes of val_fraction still leave one of a class of 2 on each side */
    CHECK_OK(qkv_labeled_split(d, 0.999, 1, &tr, &va));
    if (tr && va) {
        CHECK_EQ_INT(count_label(tr, 2), 1);
        CHECK_EQ_INT(count_label(va, 0), 49);
    }
    qkv_labeled_free(tr);
    qkv_labeled_free(va);
    CHECK_STATUS(qkv_labeled_split(d, 0, 1, &tr, &va), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_labeled_split(d, 1, 1, &tr, &va), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_labeled_split(d, NAN, 1, &tr, &va), QKV_ERR_INVALID_ARG);
    CHECK(tr == NULL && va == NULL);
    qkv_labeled_free(d);

    /* multi-label and regression: round(f n) of all, pairs and label sets kept */
    qkv_labeled_options o = opts_for(QKV_PROBLEM_MULTI_LABEL);
    f = fopen(path_of("split_multi.tsv"), "w");
    for (int i = 0; i < 40; i++) fprintf(f, "t%d\tp%d\t%s\n", i, i, i % 3 ? "a|b" : "c");
    fclose(f);
    d = load("split_multi.tsv", &o);
    if (d) {
        CHECK_OK(qkv_labeled_split(d, 0.25, 3, &tr, &va));
        if (tr && va) {
            CHECK_EQ_INT(qkv_labeled_count(va), 10);
            for (int64_t i = 0; i < qkv_labeled_count(va); i++) {
                const char *t = qkv_labeled_text(va, i, NULL), *p = qkv_labeled_pair(va, i, NULL);
                int k = atoi(t + 1);
                CHECK(p && atoi(p + 1) == k);
                float v[3];
                CHECK_OK(qkv_labeled_label_vector(va, i, v));
                CHECK(k % 3 ? (v[0] == 1 && v[1] == 1 && v[2] == 0)
                            : (v[0] == 0 && v[1] == 0 && v[2] == 1));
            }
        }
        qkv_labeled_free(tr);
        qkv_labeled_free(va);
    }
    qkv_labeled_free(d);
    /* multi-label examples with no label at all (found by fuzz_labeled: UB in the copy) */
    put("split_none.tsv", "a\t\nb\t\n");
    d = load("split_none.tsv", &o);
    if (d) {
        CHECK_EQ_INT(qkv_labeled_num_labels(d), 0);
        CHECK_OK(qkv_labeled_split(d, 0.5, 3, &tr, &va));
        CHECK(tr && va && qkv_labeled_count(tr) == 1 && qkv_labeled_count(va) == 1);
        qkv_labeled_free(tr);
        qkv_labeled_free(va);
    }
    qkv_labeled_free(d);
    o = opts_for(QKV_PROBLEM_REGRESSION);
    put("split_reg.tsv", "a\t1\nb\t2\n");
    d = load("split_reg.tsv", &o);
    if (d) {
        CHECK_OK(qkv_labeled_split(d, 0.01, 3, &tr, &va));
        if (tr && va) {
            CHECK(qkv_labeled_count(tr) == 1 && qkv_labeled_count(va) == 1);
            CHECK(qkv_labeled_value(tr, 0) + qkv_labeled_value(va, 0) == 3.0f);
        }
        qkv_labeled_free(tr);
        qkv_labeled_free(va);
    }
    qkv_labeled_free(d);
}

/* ---------------------------------------------------------------- round trip */

#define N_ROUND 1000
static const char *fragments[] = {"hello",
                                  "w\xC3\xB6rld",
                                  "\xE6\x97\xA5\xE6\x9C\xAC",
                                  ",",
                                  "\t",
                                  "\"",
                                  "\n",
                                  "\r\n",
                                  " ",
                                  "\xF0\x9F\x98\x80",
                                  "'",
                                  "it's",
                                  "a,b",
                                  "\"q\"",
                                  "x"};
static const char *classes[] = {"neg", "pos", "neu tral", "a,b", "q\"t", "\xC3\xA9t\xC3\xA9"};

typedef struct example {
    char text[96], pair[96];
    int cls;
} example;

static uint64_t rng = 88172645463325252ull;
static uint32_t next_u32(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 32);
}

static void random_text(char *out, size_t cap) {
    out[0] = '\0';
    int k = 1 + (int)(next_u32() % 6);
    for (int i = 0; i < k; i++) {
        const char *f = fragments[next_u32() % (sizeof fragments / sizeof *fragments)];
        if (strlen(out) + strlen(f) + 1 < cap) strcat(out, f);
    }
}

static void write_delimited(FILE *f, const char *s, char delim) {
    if (!strchr(s, delim) && !strpbrk(s, "\"\r\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void write_json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void check_round_trip(const char *name, const qkv_labeled *d, const example *ex) {
    CHECK_EQ_INT(qkv_labeled_count(d), N_ROUND);
    if (qkv_labeled_count(d) != N_ROUND) return;
    /* names sorted by bytes (not all integers) */
    const char *sorted[6];
    memcpy(sorted, classes, sizeof sorted);
    qsort(sorted, 6, sizeof *sorted, cmp_str);
    CHECK_EQ_INT(qkv_labeled_num_labels(d), 6);
    int bad = 0;
    for (int k = 0; k < 6; k++) bad += !name_is(d, k, sorted[k]);
    for (int i = 0; i < N_ROUND; i++) {
        bad += !text_is(d, i, ex[i].text) || !pair_is(d, i, ex[i].pair);
        const char *nm = qkv_labeled_label_name(d, qkv_labeled_label(d, i));
        bad += !nm || strcmp(nm, classes[ex[i].cls]) != 0;
    }
    CHECK_MSG(bad == 0, "%s: %d mismatches", name, bad);
}

/* Every cut of the input into pieces gives the same examples and the same failure. */
static void check_chunking(const char *name, const char *data, size_t len,
                           const qkv_labeled_options *o) {
    qkv_labeled *whole = NULL;
    qkv_status s0 = qkv__labeled_parse(name, data, len, o, 0, &whole);
    char msg0[1024];
    snprintf(msg0, sizeof msg0, "%s", qkv_last_error());
    const size_t cuts[] = {1, 2, 3, 7, 64, 4099};
    for (size_t c = 0; c < sizeof cuts / sizeof *cuts; c++) {
        qkv_labeled *d = NULL;
        qkv_status s = qkv__labeled_parse(name, data, len, o, cuts[c], &d);
        CHECK_MSG(s == s0 && (s0 == QKV_OK || strcmp(qkv_last_error(), msg0) == 0),
                  "%s cut every %zu bytes: %s (%s) vs %s (%s)", name, cuts[c], qkv_strerror(s),
                  qkv_last_error(), qkv_strerror(s0), msg0);
        if (s == QKV_OK && s0 == QKV_OK) {
            int same = qkv_labeled_count(d) == qkv_labeled_count(whole) &&
                       qkv_labeled_num_labels(d) == qkv_labeled_num_labels(whole);
            for (int64_t i = 0; same && i < qkv_labeled_count(d); i++) {
                size_t n1, n2;
                const char *t1 = qkv_labeled_text(d, i, &n1), *t2 = qkv_labeled_text(whole, i, &n2);
                int64_t l1, l2;
                qkv_labeled_source(d, i, &l1);
                qkv_labeled_source(whole, i, &l2);
                same = n1 == n2 && memcmp(t1, t2, n1) == 0 && l1 == l2 &&
                       qkv_labeled_label(d, i) == qkv_labeled_label(whole, i);
            }
            CHECK_MSG(same, "%s cut every %zu bytes: different examples", name, cuts[c]);
        }
        qkv_labeled_free(d);
    }
    qkv_labeled_free(whole);
}

static char *slurp(const char *name, size_t *len) {
    FILE *f = fopen(path_of(name), "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    *len = fread(b, 1, (size_t)n, f);
    fclose(f);
    return b;
}

static void test_round_trip(void) {
    static example ex[N_ROUND];
    for (int i = 0; i < N_ROUND; i++) {
        random_text(ex[i].text, sizeof ex[i].text);
        random_text(ex[i].pair, sizeof ex[i].pair);
        ex[i].cls = (int)(next_u32() % 6);
    }
    const char *names[] = {"round.csv", "round.tsv", "round.jsonl"};
    for (int k = 0; k < 3; k++) {
        FILE *f = fopen(path_of(names[k]), "wb");
        char delim = k == 0 ? ',' : '\t';
        if (k < 2) fprintf(f, "text%ctext_pair%clabel\r\n", delim, delim);
        for (int i = 0; i < N_ROUND; i++) {
            if (k < 2) {
                write_delimited(f, ex[i].text, delim);
                fputc(delim, f);
                write_delimited(f, ex[i].pair, delim);
                fputc(delim, f);
                write_delimited(f, classes[ex[i].cls], delim);
                fputs(i % 2 ? "\n" : "\r\n", f);
            } else {
                fputs("{\"text\": ", f);
                write_json_string(f, ex[i].text);
                fputs(", \"text_pair\": ", f);
                write_json_string(f, ex[i].pair);
                fputs(", \"label\": ", f);
                write_json_string(f, classes[ex[i].cls]);
                fputs("}\n", f);
            }
        }
        fclose(f);
        qkv_labeled *d = load(names[k], NULL);
        if (d) check_round_trip(names[k], d, ex);
        qkv_labeled_free(d);
        size_t len;
        char *data = slurp(names[k], &len);
        if (data) check_chunking(names[k], data, len, NULL);
        free(data);
    }
}

/* Failures and successes alike are the same whatever the cut. */
static void test_chunking_cases(void) {
    static const struct {
        const char *name, *data;
    } cases[] = {
        {"c.tsv", "text\tlabel\r\n\"a\r\nb\"\tx\r\n\r\nc\ty\n"},
        {"c.csv", "\xEF\xBB\xBF\"x,\"\"y\"\"\",1\n\"z\"\" \",2"},
        {"c.tsv", "ok\tx\n\"never closed\ty\n"},
        {"c.tsv", "a\tx\nb\ty\tz\n"},
        {"c.tsv", "a\tx\n\xC3\tb\n"},
        {"c.jsonl", "{\"text\":\"a\",\"label\":1}\r\n\r\n{\"text\":\"b\",\"label\":\"x\"}"},
        {"c.jsonl", "{\"text\":\"a\",\"label\":1}\n{\"text\":\"b\",\"label\":}\n"},
        {"c.jsonl", "{\"text\":\"a\xF0\x9F\x98\",\"label\":1}\n"},
        {"c.jsonl", "\xEF\xBB\xBF{\"text\":\"a\",\"label\":1}"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++)
        check_chunking(cases[k].name, cases[k].data, strlen(cases[k].data), NULL);
    qkv_labeled_options o = opts_for(QKV_PROBLEM_SINGLE_LABEL);
    o.max_record_bytes = 16;
    check_chunking("c.tsv", "short\tx\n\"0123456789abcdefghijklmnop\"\ty\n", 38, &o);
    check_chunking("c.jsonl", "{\"text\":\"0123456789abcdef\",\"label\":1}\n", 38, &o);
    /* a NUL byte before a field that is too long: the row's length is the error, at any cut */
    check_chunking("c.tsv", "ab\0c\t0123456789abcdefghij\n", 26, &o);
    check_chunking("c.tsv", "a\tb\n\0\nc\td\n", 12, &o);
    o.no_quotes = 1;
    check_chunking("c.tsv", "a\"b\0c\tx\n", 9, &o);
}

/* ---------------------------------------------------------------- options, fault injection */

static void test_options(void) {
    qkv_labeled_options o;
    memset(&o, 0xCD, sizeof o);
    qkv_labeled_default_options(&o);
    CHECK_EQ_INT(o.struct_size, sizeof o);
    CHECK(o.format == QKV_LABELED_AUTO && o.problem == QKV_PROBLEM_SINGLE_LABEL && o.header == 0);
    CHECK(o.text_field == NULL && o.label_separator == '|' && o.no_quotes == 0);
    CHECK_EQ_INT(o.max_record_bytes, 1 << 20);
    /* a zeroed struct (struct_size 0) means the defaults too */
    qkv_labeled_options z;
    memset(&z, 0, sizeof z);
    z.problem = QKV_PROBLEM_MULTI_LABEL;
    put("zero.tsv", "t\ta|b\n");
    qkv_labeled *d = load("zero.tsv", &z);
    CHECK(d && qkv_labeled_num_labels(d) == 2);
    qkv_labeled_free(d);
    o.text_field = "";
    CHECK_STATUS(qkv_labeled_load(path_of("zero.tsv"), &o, &d), QKV_ERR_INVALID_ARG);
}

/* Fails allocation 0, 1, 2, ... of a load and then of a split and a mapping: NOMEM each time
 * (nothing leaked) until the call no longer reaches the failure and succeeds. */
static void sweep(const char *name, const qkv_labeled_options *o) {
    qkv_allocator a = {failing_alloc, counting_free, NULL};
    qkv_set_allocator(&a);
    long n;
    for (n = 0; n < 100000; n++) {
        n_attempt = n_alloc = n_free = 0;
        fail_at = n;
        qkv_labeled *d = NULL, *tr = NULL, *va = NULL;
        qkv_status s = qkv_labeled_load(path_of(name), o, &d);
        if (s == QKV_OK) s = qkv_labeled_split(d, 0.5, 1, &tr, &va);
        if (s == QKV_OK && o->problem != QKV_PROBLEM_REGRESSION) {
            int64_t k = qkv_labeled_num_labels(d);
            const char *rev[8];
            for (int64_t j = 0; j < k && j < 8; j++) rev[j] = qkv_labeled_label_name(d, k - 1 - j);
            s = qkv_labeled_map_labels(d, rev, k < 8 ? k : 8);
        }
        int injected = n_attempt > n;
        qkv_labeled_free(tr);
        qkv_labeled_free(va);
        qkv_labeled_free(d);
        CHECK_MSG(n_alloc == n_free, "%s, failing allocation %ld: %ld allocations, %ld frees", name,
                  n, n_alloc, n_free);
        if (!injected) {
            CHECK_MSG(s == QKV_OK, "%s: %s", name, qkv_last_error());
            break;
        }
        CHECK_MSG(s == QKV_ERR_NOMEM, "%s, failing allocation %ld: %s (%s)", name, n,
                  qkv_strerror(s), qkv_last_error());
    }
    qkv_set_allocator(NULL);
    printf("%s: %ld allocations failed in turn\n", name, n);
}

static void test_nomem(void) {
    put("nomem.tsv", "text\ttext_pair\tlabel\n\"a\nb\"\tp\tx\nc\tq\ty\nd\tr\tx\n");
    put("nomem.jsonl", "{\"text\":\"a\",\"label\":\"x\"}\n{\"text\":\"b\",\"label\":\"y\"}\n");
    put("nomem_multi.jsonl", "{\"text\":\"a\",\"labels\":[\"x\",\"y\"]}\n"
                             "{\"text\":\"b\",\"labels\":[\"y\"]}\n");
    qkv_labeled_options o = opts_for(QKV_PROBLEM_SINGLE_LABEL);
    sweep("nomem.tsv", &o);
    sweep("nomem.jsonl", &o);
    sweep("imdb", &o);
    o.problem = QKV_PROBLEM_MULTI_LABEL;
    sweep("nomem_multi.jsonl", &o);
    o.problem = QKV_PROBLEM_REGRESSION;
    put("nomem_reg.csv", "a,1\nb,2\n");
    sweep("nomem_reg.csv", &o);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/qkv_test_labeled.XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_tsv();
    test_csv();
    test_jsonl();
    test_multi_label();
    test_regression();
    test_label_order();
    test_map_labels();
    test_errors();
    test_fifo();
    test_dir();
    test_split();
    test_round_trip();
    test_chunking_cases();
    test_options();
    test_nomem();
    test_rm_rf(dir);
    return test_finish("test_labeled");
}
