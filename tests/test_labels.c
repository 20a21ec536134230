/* test_labels.c — models/labels.{c,h}: the classification fields of config.json (id2label,
 * label2id, num_labels, problem_type) read and written as transformers' PretrainedConfig does:
 * the defaults (2 labels LABEL_0, LABEL_1; single label, regression for one label), num_labels
 * alone, id2label in any key order, every malformed form refused with FORMAT naming the field
 * (gaps, ids given twice, keys that are not ids, names that are not strings, empty or repeated
 * names, a num_labels that disagrees, an unknown problem_type), qkv__labels_make / copy, and
 * write-then-parse round trips. */
#include "core/alloc.h"
#include "io/json.h"
#include "models/labels.h"
#include "test.h"

#include <jansson.h>
#include <string.h>

/* Parses the JSON text js (an object) with qkv__labels_parse; *l is filled on QKV_OK. */
static qkv_status parse(const char *js, qkv__labels *l) {
    qkv__json_begin();
    json_error_t e;
    json_t *root = json_loads(js, JSON_REJECT_DUPLICATES, &e);
    qkv_status s = QKV_ERR_INTERNAL;
    if (!root)
        fprintf(stderr, "bad test JSON %s: %s\n", js, e.text);
    else
        s = qkv__labels_parse("config.json", root, l);
    json_decref(root);
    qkv__json_end();
    return s;
}

static void expect(const char *js, int64_t n, const char *const *names, qkv_problem_type p,
                   int given) {
    qkv__labels l;
    qkv_status s = parse(js, &l);
    CHECK_MSG(s == QKV_OK, "%s: %s", js, qkv_last_error());
    if (s != QKV_OK) return;
    CHECK_MSG(l.n == n, "%s: %lld labels, want %lld", js, (long long)l.n, (long long)n);
    for (int64_t i = 0; i < n && i < l.n; i++) {
        char def[32];
        snprintf(def, sizeof def, "LABEL_%lld", (long long)i);
        const char *want = names ? names[i] : def;
        CHECK_MSG(strcmp(l.names[i], want) == 0, "%s: label %lld is %s, want %s", js, (long long)i,
                  l.names[i], want);
    }
    CHECK_MSG(l.problem == p && l.problem_given == given, "%s: problem %d given %d", js,
              (int)l.problem, l.problem_given);
    qkv__labels_free(&l);
}

static void refuse(const char *js, const char *needle) {
    qkv__labels l;
    memset(&l, 0x5a, sizeof l);
    qkv_status s = parse(js, &l);
    CHECK_MSG(s == QKV_ERR_FORMAT, "%s: status %d, want FORMAT", js, (int)s);
    CHECK_MSG(strstr(qkv_last_error(), needle) && strstr(qkv_last_error(), "config.json"),
              "%s: message '%s' lacks '%s'", js, qkv_last_error(), needle);
    CHECK(l.n == 0 && l.names == NULL); /* nothing to free on failure */
}

static void test_parse(void) {
    /* defaults: PretrainedConfig's 2 labels; problem_type null */
    expect("{}", 2, NULL, QKV_PROBLEM_SINGLE_LABEL, 0);
    expect("{\"id2label\": null, \"num_labels\": null, \"problem_type\": null}", 2, NULL,
           QKV_PROBLEM_SINGLE_LABEL, 0);
    /* num_labels alone: LABEL_i; one label is a regression unless told otherwise */
    expect("{\"num_labels\": 5}", 5, NULL, QKV_PROBLEM_SINGLE_LABEL, 0);
    expect("{\"num_labels\": 1}", 1, NULL, QKV_PROBLEM_REGRESSION, 0);
    expect("{\"num_labels\": 1, \"problem_type\": \"multi_label_classification\"}", 1, NULL,
           QKV_PROBLEM_MULTI_LABEL, 1);
    /* id2label in any key order, names kept as written (any UTF-8) */
    static const char *const abc[] = {"négatif", "neutral", "😀 positive"};
    expect("{\"id2label\": {\"2\": \"😀 positive\", \"0\": \"négatif\", \"1\": \"neutral\"}}", 3,
           abc, QKV_PROBLEM_SINGLE_LABEL, 0);
    expect("{\"id2label\": {\"0\": \"négatif\", \"1\": \"neutral\", \"2\": \"😀 positive\"}, "
           "\"num_labels\": 3, \"problem_type\": \"single_label_classification\"}",
           3, abc, QKV_PROBLEM_SINGLE_LABEL, 1);
    static const char *const one[] = {"score"};
    expect("{\"id2label\": {\"0\": \"score\"}}", 1, one, QKV_PROBLEM_REGRESSION, 0);
    expect("{\"id2label\": {\"0\": \"score\"}, \"problem_type\": \"regression\"}", 1, one,
           QKV_PROBLEM_REGRESSION, 1);
    expect("{\"num_labels\": 4, \"problem_type\": \"multi_label_classification\"}", 4, NULL,
           QKV_PROBLEM_MULTI_LABEL, 1);
    /* label2id is written for transformers, not read: a stale one does not matter */
    expect("{\"num_labels\": 2, \"label2id\": {\"x\": 7}}", 2, NULL, QKV_PROBLEM_SINGLE_LABEL, 0);

    /* gaps and ids given twice */
    refuse("{\"id2label\": {\"0\": \"a\", \"2\": \"c\"}}", "id2label key \"2\"");
    refuse("{\"id2label\": {\"1\": \"a\", \"2\": \"c\"}}", "id2label key \"2\"");
    refuse("{\"id2label\": {\"0\": \"a\", \"+0\": \"b\"}}", "id 0 twice");
    /* keys that are not ids */
    refuse("{\"id2label\": {\"0\": \"a\", \"x\": \"b\"}}", "id2label key \"x\"");
    refuse("{\"id2label\": {\"0\": \"a\", \"-1\": \"b\"}}", "id2label key \"-1\"");
    refuse("{\"id2label\": {\"0\": \"a\", \"01\": \"b\"}}", "id2label key \"01\"");
    refuse("{\"id2label\": {\"0\": \"a\", \"1x\": \"b\"}}", "id2label key \"1x\"");
    refuse("{\"id2label\": {\"\": \"a\"}}", "id2label key \"\"");
    /* names that are not strings, empty or repeated */
    refuse("{\"id2label\": {\"0\": 3}}", "id2label[\"0\"] must be a string");
    refuse("{\"id2label\": {\"0\": \"a\", \"1\": null}}", "id2label[\"1\"] must be a string");
    refuse("{\"id2label\": {\"0\": \"\"}}", "empty");
    refuse("{\"id2label\": {\"0\": \"same\", \"1\": \"same\"}}", "'same' appears twice");
    /* id2label itself malformed */
    refuse("{\"id2label\": {}}", "id2label must be an object");
    refuse("{\"id2label\": [\"a\", \"b\"]}", "id2label must be an object");
    refuse("{\"id2label\": \"a\"}", "id2label must be an object");
    /* num_labels malformed or disagreeing with id2label */
    refuse("{\"num_labels\": 0}", "num_labels must be an integer");
    refuse("{\"num_labels\": -3}", "num_labels must be an integer");
    refuse("{\"num_labels\": 2.5}", "num_labels must be an integer");
    refuse("{\"num_labels\": \"2\"}", "num_labels must be an integer");
    refuse("{\"num_labels\": 1099511627776}", "num_labels must be an integer");
    refuse("{\"id2label\": {\"0\": \"a\", \"1\": \"b\"}, \"num_labels\": 3}",
           "num_labels disagrees");
    refuse("{\"id2label\": {\"0\": \"a\"}, \"num_labels\": \"1\"}", "num_labels disagrees");
    /* problem_type values */
    refuse("{\"problem_type\": \"classification\"}", "problem_type must be");
    refuse("{\"problem_type\": 1}", "problem_type must be");
    refuse("{\"problem_type\": \"Regression\"}", "problem_type must be");
    /* not an object */
    refuse("[]", "not a JSON object");
}

static void test_make_copy(void) {
    qkv__labels l, c;
    static const char *const names[] = {"x", NULL, "z"};
    CHECK_OK(qkv__labels_make(3, names, QKV_PROBLEM_MULTI_LABEL, &l));
    CHECK(l.n == 3 && strcmp(l.names[0], "x") == 0 && strcmp(l.names[1], "LABEL_1") == 0);
    CHECK(l.problem == QKV_PROBLEM_MULTI_LABEL && l.problem_given == 0);
    l.problem_given = 1;
    CHECK_OK(qkv__labels_copy(&l, &c));
    CHECK(c.n == 3 && c.names[2] != l.names[2] && strcmp(c.names[2], "z") == 0);
    CHECK(c.problem == l.problem && c.problem_given == 1);
    qkv__labels_free(&c);
    qkv__labels_free(&l);
    qkv__labels_free(&l); /* twice is fine: free zeroes the struct */
    qkv__labels_free(NULL);
    CHECK_STATUS(qkv__labels_make(0, NULL, QKV_PROBLEM_SINGLE_LABEL, &l), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv__labels_make(QKV__MAX_LABELS + 1, NULL, QKV_PROBLEM_SINGLE_LABEL, &l),
                 QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv__labels_make(2, NULL, (qkv_problem_type)7, &l), QKV_ERR_INVALID_ARG);
    static const char *const dup[] = {"a", "b", "a"};
    CHECK_STATUS(qkv__labels_make(3, dup, QKV_PROBLEM_SINGLE_LABEL, &l), QKV_ERR_INVALID_ARG);
    CHECK(strstr(qkv_last_error(), "'a' appears twice") != NULL);
    static const char *const bad_utf8[] = {"ok", "\xff\xfe"};
    CHECK_STATUS(qkv__labels_make(2, bad_utf8, QKV_PROBLEM_SINGLE_LABEL, &l), QKV_ERR_INVALID_ARG);
    CHECK(strstr(qkv_last_error(), "not valid UTF-8") != NULL);
    static const char *const clash[] = {"LABEL_1", NULL}; /* a default name can collide too */
    CHECK_STATUS(qkv__labels_make(2, clash, QKV_PROBLEM_SINGLE_LABEL, &l), QKV_ERR_INVALID_ARG);
    CHECK(strcmp(qkv__problem_name(QKV_PROBLEM_SINGLE_LABEL), "single_label_classification") == 0);
    CHECK(strcmp(qkv__problem_name(QKV_PROBLEM_MULTI_LABEL), "multi_label_classification") == 0);
    CHECK(strcmp(qkv__problem_name(QKV_PROBLEM_REGRESSION), "regression") == 0);
    CHECK(strcmp(qkv__problem_name((qkv_problem_type)9), "?") == 0);
}

/* write, dump to text, parse: the same labels, problem_type now given; label2id inverts. */
static void roundtrip(int64_t n, const char *const *names, qkv_problem_type p) {
    qkv__labels l, back;
    CHECK_OK(qkv__labels_make(n, names, p, &l));
    qkv__json_begin();
    json_t *root = json_pack("{s:s,s:i}", "model_type", "bert", "num_labels", (json_int_t)n);
    CHECK_OK(qkv__labels_write(&l, root));
    json_t *l2i = json_object_get(root, "label2id");
    CHECK(json_is_object(l2i) && (int64_t)json_object_size(l2i) == n);
    for (int64_t i = 0; i < n; i++)
        CHECK(json_integer_value(json_object_get(l2i, l.names[i])) == (json_int_t)i);
    CHECK(strcmp(json_string_value(json_object_get(root, "model_type")), "bert") == 0);
    char text[4096]; /* json_dumps' buffer would come from qkv's jansson hooks */
    size_t len = json_dumpb(root, text, sizeof text - 1, JSON_SORT_KEYS);
    CHECK(len > 0 && len < sizeof text);
    text[len < sizeof text ? len : 0] = '\0';
    json_decref(root);
    root = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
    CHECK_OK(qkv__labels_parse("roundtrip", root, &back));
    json_decref(root);
    qkv__json_end();
    CHECK(back.n == n && back.problem == p && back.problem_given == 1);
    for (int64_t i = 0; i < n && i < back.n; i++) CHECK(strcmp(back.names[i], l.names[i]) == 0);
    qkv__labels_free(&back);
    qkv__labels_free(&l);
}

static void test_roundtrip(void) {
    static const char *const sent[] = {"negative", "neutral", "positive"};
    roundtrip(3, sent, QKV_PROBLEM_SINGLE_LABEL);
    roundtrip(1, NULL, QKV_PROBLEM_REGRESSION);
    roundtrip(1, NULL, QKV_PROBLEM_SINGLE_LABEL); /* given, so not turned into a regression */
    static const char *const odd[] = {"a \"quoted\" \\ name", "漢字", "tab\there"};
    roundtrip(3, odd, QKV_PROBLEM_MULTI_LABEL);
    roundtrip(12, NULL, QKV_PROBLEM_MULTI_LABEL); /* ids past 9: "10" sorts before "2" */
}

/* Every allocation of qkv__labels_parse failing in turn (the JSON tree is built before the
 * failures are armed): NOMEM, never a crash, nothing leaked. */
static int64_t fail_at = -1, n_alloc = 0, live = 0;
static int armed = 0;
static void *t_alloc(size_t size, size_t align, void *ud) {
    (void)ud;
    if (armed && n_alloc++ == fail_at) return NULL;
    void *p = NULL;
    if (posix_memalign(&p, align < sizeof(void *) ? sizeof(void *) : align, size ? size : 1))
        return NULL;
    live++;
    return p;
}
static void t_free(void *p, void *ud) {
    (void)ud;
    if (p) live--;
    free(p);
}

static void test_nomem(void) {
    const char *js = "{\"id2label\": {\"0\": \"a\", \"1\": \"b\", \"2\": \"c\"}}";
    qkv_allocator a = {t_alloc, t_free, NULL};
    for (fail_at = 0;; fail_at++) {
        n_alloc = 0, live = 0;
        qkv_set_allocator(&a);
        qkv__json_begin();
        json_t *root = json_loads(js, 0, NULL);
        armed = 1;
        qkv__labels l;
        qkv_status s = qkv__labels_parse("config.json", root, &l);
        armed = 0;
        if (s == QKV_OK) qkv__labels_free(&l);
        json_decref(root);
        qkv__json_end();
        qkv_set_allocator(NULL);
        CHECK_MSG(s == QKV_OK || s == QKV_ERR_NOMEM, "allocation %lld failing: status %d",
                  (long long)fail_at, (int)s);
        CHECK_MSG(live == 0, "allocation %lld failing: %lld blocks leaked", (long long)fail_at,
                  (long long)live);
        if (s == QKV_OK) break;
    }
    CHECK(fail_at >= 4); /* the name array and three names at least */
    printf("nomem: %lld allocations each failed in turn\n", (long long)fail_at);
}

int main(void) {
    test_parse();
    test_make_copy();
    test_roundtrip();
    test_nomem();
    return test_finish("labels");
}
