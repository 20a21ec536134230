/* test_classify.c — sequence classification (qkv_classify, qkv_classify_tokens,
 * qkv_classify_scores, the label accessors) against Hugging Face transformers on four tiny
 * random BertForSequenceClassification models from tests/fixtures/cls (tools/gen_cls_golden.py):
 * single-label with 3 named labels, multi-label, regression (1 label), sentence pairs with
 * longest-first truncation. Logits within 1e-5 of transformers' (float64) relative to the
 * largest, scores within 1e-5 of the text-classification pipeline's; batched, one-at-a-time,
 * pre-tokenized and 1- or 2-thread results equal bit for bit; the labels and problem type as
 * config.json says; directories without a head, without a pooler, with a misshaped classifier
 * or another architecture's head refused clearly. Run once per QKV_ARCH. */
#include "fixture_util.h"
#include "qkv.h"
#include "test.h"
#include "test_arch.h"

#include <jansson.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FIX QKV_SOURCE_DIR "/tests/fixtures/cls/"

typedef struct {
    size_t n;
    char **texts, **pairs; /* pairs[i] NULL: no pair */
} inputs;

static inputs read_inputs(const char *path) {
    inputs in = {0};
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        exit(1);
    }
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        json_error_t e;
        json_t *o = json_loads(line, 0, &e);
        if (!o) {
            fprintf(stderr, "%s: bad line: %s\n", path, e.text);
            exit(1);
        }
        in.texts = realloc(in.texts, (in.n + 1) * sizeof *in.texts);
        in.pairs = realloc(in.pairs, (in.n + 1) * sizeof *in.pairs);
        in.texts[in.n] = strdup(json_string_value(json_object_get(o, "text")));
        const char *p = json_string_value(json_object_get(o, "text_pair"));
        in.pairs[in.n] = p ? strdup(p) : NULL;
        in.n++;
        json_decref(o);
    }
    fclose(f);
    return in;
}

static void free_inputs(inputs *in) {
    for (size_t i = 0; i < in->n; i++) free(in->texts[i]), free(in->pairs[i]);
    free(in->texts), free(in->pairs);
}

static int has_pairs(const inputs *in) {
    for (size_t i = 0; i < in->n; i++)
        if (in->pairs[i]) return 1;
    return 0;
}

/* Tokenizes as qkv_classify documents it, through the public tokenizer: packed ids and type
 * ids, lens [n]. */
static void tokenize(const qkv_model *m, const inputs *in, int32_t **ids, int32_t **types,
                     int64_t *lens) {
    const qkv_tokenizer *tok = qkv_model_tokenizer(m);
    qkv_encode_options o;
    qkv_tokenizer_default_options(tok, &o);
    o.max_length = qkv_model_max_tokens(m);
    o.truncation = QKV_TRUNCATE_LONGEST_FIRST;
    size_t total = 0;
    *ids = NULL, *types = NULL;
    for (size_t i = 0; i < in->n; i++) {
        qkv_encoding *e = NULL;
        const char *p = in->pairs[i] && *in->pairs[i] ? in->pairs[i] : NULL; /* "" is no pair */
        CHECK_OK(qkv_tokenizer_encode(tok, in->texts[i], strlen(in->texts[i]), p, p ? strlen(p) : 0,
                                      &o, &e));
        if (!e) exit(1);
        *ids = realloc(*ids, (total + e->n) * sizeof **ids);
        *types = realloc(*types, (total + e->n) * sizeof **types);
        memcpy(*ids + total, e->ids, e->n * sizeof **ids);
        memcpy(*types + total, e->type_ids, e->n * sizeof **types);
        total += e->n;
        lens[i] = (int64_t)e->n;
        qkv_encoding_free(e);
    }
}

static void test_model(const char *name, qkv_runtime *rt1, qkv_runtime *rt2) {
    char dir[512], path[512];
    snprintf(dir, sizeof dir, FIX "%s", name);
    snprintf(path, sizeof path, FIX "%s_golden.safetensors", name);
    qkv_safetensors *g = fix_open(path);
    const qkv_st_tensor *gl = qkv_safetensors_find(g, "logits");
    if (!gl || gl->ndim != 2) exit(1);
    const float *want = fix_need(g, "logits"), *want_scores = fix_need(g, "scores");
    const int64_t *want_lens = fix_need(g, "lens");
    snprintf(path, sizeof path, FIX "%s.jsonl", name);
    inputs in = read_inputs(path);
    CHECK_EQ_INT((int64_t)in.n, gl->shape[0]);
    const int64_t NL = gl->shape[1];

    qkv_model *m = NULL;
    CHECK_OK(qkv_model_load(dir, &m));
    if (!m) exit(1);
    /* the labels and problem type, as transformers' config gives them */
    CHECK_EQ_INT(qkv_model_num_labels(m), NL);
    json_t *labels = json_loads(qkv_safetensors_metadata_get(g, "labels"), 0, NULL);
    CHECK(json_is_array(labels) && (int64_t)json_array_size(labels) == NL);
    for (int64_t i = 0; i < NL; i++) {
        const char *l = qkv_model_label(m, i);
        CHECK_MSG(l && strcmp(l, json_string_value(json_array_get(labels, (size_t)i))) == 0,
                  "%s: label %lld is %s", name, (long long)i, l ? l : "NULL");
    }
    json_decref(labels);
    CHECK(qkv_model_label(m, NL) == NULL && qkv_model_label(m, -1) == NULL);
    const char *pt = qkv_safetensors_metadata_get(g, "problem_type");
    qkv_problem_type want_pt =
        strcmp(pt, "multi_label_classification") == 0 ? QKV_PROBLEM_MULTI_LABEL
        : strcmp(pt, "regression") == 0 || (strcmp(pt, "null") == 0 && NL == 1)
            ? QKV_PROBLEM_REGRESSION
            : QKV_PROBLEM_SINGLE_LABEL;
    CHECK_MSG(qkv_model_problem_type(m) == want_pt, "%s: problem type %d, want %d (%s)", name,
              (int)qkv_model_problem_type(m), (int)want_pt, pt);

    /* all inputs in one call, against transformers */
    const size_t nl = (size_t)in.n * (size_t)NL;
    float *logits = calloc(nl, sizeof *logits), *one = calloc(nl, sizeof *one);
    float *tl = calloc(nl, sizeof *tl), *t2 = calloc(nl, sizeof *t2);
    const char *const *pairs = has_pairs(&in) ? (const char *const *)in.pairs : NULL;
    CHECK_OK(qkv_classify(rt2, m, (const char *const *)in.texts, NULL, pairs, NULL, in.n, logits));
    double err = fix_rel_err(logits, want, (int64_t)nl);
    printf("%s: %zu inputs, %lld labels, logits max relative error %.3g\n", name, in.n,
           (long long)NL, err);
    CHECK_MSG(err <= 1e-5, "%s: logits differ from transformers' by %.3g", name, err);
    for (size_t i = 0; err > 1e-5 && i < in.n; i++) /* which inputs */
        for (int64_t k = 0; k < NL; k++)
            printf("  input %zu label %lld: qkv %.9g transformers %.9g\n", i, (long long)k,
                   (double)logits[i * (size_t)NL + (size_t)k],
                   (double)want[i * (size_t)NL + (size_t)k]);
    /* one at a time (with explicit byte lengths) */
    for (size_t i = 0; i < in.n; i++) {
        size_t tl_i = strlen(in.texts[i]), pl_i = in.pairs[i] ? strlen(in.pairs[i]) : 0;
        CHECK_OK(qkv_classify(rt1, m, (const char *const *)&in.texts[i], &tl_i,
                              pairs ? (const char *const *)&in.pairs[i] : NULL, &pl_i, 1,
                              one + i * (size_t)NL));
    }
    CHECK_MSG(memcmp(one, logits, nl * sizeof *one) == 0, "%s: one at a time != batched", name);
    /* pre-tokenized, with the golden file's token counts (the truncation) */
    int32_t *ids, *types;
    int64_t *lens = calloc(in.n, sizeof *lens);
    tokenize(m, &in, &ids, &types, lens);
    for (size_t i = 0; i < in.n; i++)
        CHECK_MSG(lens[i] == want_lens[i], "%s: input %zu has %lld tokens, transformers %lld", name,
                  i, (long long)lens[i], (long long)want_lens[i]);
    CHECK_OK(qkv_classify_tokens(rt1, m, ids, types, lens, in.n, tl));
    CHECK_MSG(memcmp(tl, logits, nl * sizeof *tl) == 0, "%s: classify_tokens != classify", name);
    /* qkv_classify_tokenize: the same ids, types and lengths as the tokenizer's */
    int32_t *qids = NULL, *qtypes = NULL;
    int64_t *qlens = NULL, total = 0;
    CHECK_OK(qkv_classify_tokenize(rt2, m, (const char *const *)in.texts, NULL, pairs, NULL, in.n,
                                   &qids, &qtypes, &qlens));
    for (size_t i = 0; qlens && i < in.n; i++) total += lens[i];
    CHECK_MSG(qlens && memcmp(qlens, lens, in.n * sizeof *lens) == 0 &&
                  memcmp(qids, ids, (size_t)total * sizeof *ids) == 0 &&
                  memcmp(qtypes, types, (size_t)total * sizeof *types) == 0,
              "%s: qkv_classify_tokenize differs from the tokenizer", name);
    qkv_free(qids), qkv_free(qtypes), qkv_free(qlens);
    if (!pairs) { /* without pairs every type id is 0: NULL gives the same */
        CHECK_OK(qkv_classify_tokens(rt2, m, ids, NULL, lens, in.n, t2));
        CHECK(memcmp(t2, logits, nl * sizeof *t2) == 0);
    }
    /* the scores of the pipeline; in place gives the same bits */
    float *scores = calloc(nl, sizeof *scores);
    CHECK_OK(qkv_classify_scores(m, logits, in.n, scores));
    err = fix_rel_err(scores, want_scores, (int64_t)nl);
    printf("%s: scores max relative error %.3g\n", name, err);
    CHECK_MSG(err <= 1e-5, "%s: scores differ from the pipeline's by %.3g", name, err);
    memcpy(t2, logits, nl * sizeof *t2);
    CHECK_OK(qkv_classify_scores(m, t2, in.n, t2));
    CHECK(memcmp(t2, scores, nl * sizeof *t2) == 0);
    /* invalid arguments */
    int64_t bad = qkv_model_max_tokens(m) + 1;
    CHECK_STATUS(qkv_classify_tokens(rt1, m, ids, NULL, &bad, 1, t2), QKV_ERR_INVALID_ARG);
    bad = 0;
    CHECK_STATUS(qkv_classify_tokens(rt1, m, ids, NULL, &bad, 1, t2), QKV_ERR_INVALID_ARG);
    int32_t bad_type[2] = {7, 7}, two_ids[2] = {2, 3};
    int64_t two = 2;
    CHECK_STATUS(qkv_classify_tokens(rt1, m, two_ids, bad_type, &two, 1, t2), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_classify(rt1, m, NULL, NULL, NULL, NULL, 1, t2), QKV_ERR_INVALID_ARG);
    CHECK_OK(qkv_classify(rt1, m, NULL, NULL, NULL, NULL, 0, NULL));

    free(ids), free(types), free(lens), free(scores);
    free(logits), free(one), free(tl), free(t2);
    free_inputs(&in);
    qkv_model_free(m);
    qkv_safetensors_close(g);
}

/* ---------------------------------------------------------------- directories refused */

/* dir/config.json = src's config.json with key set to value (NULL: removed). */
static void write_config(const char *dir, const char *src, const char *key, json_t *value) {
    char p[512];
    snprintf(p, sizeof p, "%s/config.json", src);
    json_t *root = json_load_file(p, 0, NULL);
    if (!root) exit(1);
    if (value)
        json_object_set_new(root, key, value);
    else
        json_object_del(root, key);
    snprintf(p, sizeof p, "%s/config.json", dir);
    json_dump_file(root, p, JSON_INDENT(1));
    json_decref(root);
}

/* dir/model.safetensors = src's tensors without `drop`. */
static void write_weights_without(const char *dir, const char *src, const char *drop) {
    char p[512];
    snprintf(p, sizeof p, "%s/model.safetensors", src);
    qkv_safetensors *st = fix_open(p);
    size_t n = qkv_safetensors_count(st), k = 0;
    qkv_st_write_tensor *w = calloc(n, sizeof *w);
    for (size_t i = 0; i < n; i++) {
        const qkv_st_tensor *t = qkv_safetensors_tensor(st, i);
        if (strcmp(t->name, drop) == 0) continue;
        w[k++] = (qkv_st_write_tensor){t->name, t->dtype, t->ndim, t->shape, t->data};
    }
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    CHECK_OK(qkv_safetensors_write(p, w, k, NULL, NULL, 0));
    free(w);
    qkv_safetensors_close(st);
}

static void expect_load_error(const char *dir, qkv_status want, const char *needle,
                              const char *what) {
    qkv_model *m = NULL;
    qkv_status s = qkv_model_load(dir, &m);
    CHECK_MSG(s == want && m == NULL, "%s: status %d, want %d", what, (int)s, (int)want);
    CHECK_MSG(strstr(qkv_last_error(), needle) != NULL, "%s: message '%s' lacks '%s'", what,
              qkv_last_error(), needle);
    qkv_model_free(m);
}

static void test_refused(qkv_runtime *rt) {
    char dir[] = "/tmp/qkv_cls_XXXXXX";
    if (!mkdtemp(dir)) return;
    char p[512];
    const char *single = FIX "single";

    /* a directory without a head loads (as an encoder) and is refused when asked to classify */
    qkv_model *m = NULL;
    CHECK_OK(qkv_model_load(QKV_SOURCE_DIR "/tests/fixtures/train/bert_tiny/model", &m));
    CHECK_EQ_INT(qkv_model_num_labels(m), 0);
    CHECK(qkv_model_label(m, 0) == NULL);
    int32_t ids[3] = {2, 5, 3};
    int64_t len = 3;
    float out[4];
    CHECK_STATUS(qkv_classify_tokens(rt, m, ids, NULL, &len, 1, out), QKV_ERR_UNSUPPORTED);
    CHECK(strstr(qkv_last_error(), "no classification head") != NULL);
    const char *text = "hello";
    CHECK_STATUS(qkv_classify(rt, m, &text, NULL, NULL, NULL, 1, out), QKV_ERR_UNSUPPORTED);
    int32_t *ti = NULL, *tt = NULL;
    int64_t *tn = NULL;
    CHECK_STATUS(qkv_classify_tokenize(rt, m, &text, NULL, NULL, NULL, 1, &ti, &tt, &tn),
                 QKV_ERR_UNSUPPORTED);
    CHECK(!ti && !tt && !tn);
    CHECK(strstr(qkv_last_error(), "no classification head") != NULL);
    CHECK_STATUS(qkv_classify_scores(m, out, 1, out), QKV_ERR_UNSUPPORTED);
    qkv_model_free(m);
    CHECK_EQ_INT(qkv_model_num_labels(NULL), 0);

    /* BertForSequenceClassification without its pooler: refused at load, naming the tensor */
    snprintf(p, sizeof p, "%s/config.json", dir);
    test_copy_file(FIX "single/config.json", p);
    write_weights_without(dir, single, "bert.pooler.dense.weight");
    expect_load_error(dir, QKV_ERR_FORMAT, "bert.pooler.dense.weight", "no pooler");
    /* ... or its classifier (the architecture says it is one) */
    write_weights_without(dir, single, "classifier.bias");
    expect_load_error(dir, QKV_ERR_FORMAT, "classifier.bias", "no classifier bias");

    /* config.json with 5 labels over a (3, C) classifier: the shape is checked */
    write_weights_without(dir, single, "");
    json_t *id2 = json_object();
    for (int i = 0; i < 5; i++) {
        char k[16], v[16];
        snprintf(k, sizeof k, "%d", i), snprintf(v, sizeof v, "l%d", i);
        json_object_set_new(id2, k, json_string(v));
    }
    write_config(dir, single, "id2label", id2);
    expect_load_error(dir, QKV_ERR_FORMAT, "classifier.weight", "5 labels over 3 rows");
    /* malformed labels are refused through labels.c, naming the field */
    write_config(dir, single, "id2label", json_pack("{s:s,s:s,s:s}", "0", "a", "1", "b", "5", "c"));
    expect_load_error(dir, QKV_ERR_FORMAT, "id2label", "id2label with a gap");
    /* another architecture's head */
    write_config(dir, single, "architectures",
                 json_pack("[s]", "RobertaForSequenceClassification"));
    expect_load_error(dir, QKV_ERR_UNSUPPORTED, "RobertaForSequenceClassification", "roberta head");

    /* no architectures at all: classifier.weight makes it a classifier, with the same logits */
    write_config(dir, single, "architectures", NULL);
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    test_copy_file(FIX "single/tokenizer.json", p);
    qkv_model *a = NULL, *b = NULL;
    CHECK_OK(qkv_model_load(dir, &a));
    CHECK_OK(qkv_model_load(single, &b));
    if (a && b) {
        CHECK_EQ_INT(qkv_model_num_labels(a), 3);
        CHECK(strcmp(qkv_model_label(a, 2), qkv_model_label(b, 2)) == 0);
        const char *t[2] = {"this movie is very good", "i hate it"};
        float la[6], lb[6];
        CHECK_OK(qkv_classify(rt, a, t, NULL, NULL, NULL, 2, la));
        CHECK_OK(qkv_classify(rt, b, t, NULL, NULL, NULL, 2, lb));
        CHECK(memcmp(la, lb, sizeof la) == 0);
    }
    qkv_model_free(a), qkv_model_free(b);

    /* one label without problem_type: regression for the model, sigmoid for the pipeline */
    write_config(dir, FIX "regression", "problem_type", NULL);
    write_weights_without(dir, FIX "regression", "");
    a = NULL;
    CHECK_OK(qkv_model_load(dir, &a));
    if (a) {
        CHECK(qkv_model_problem_type(a) == QKV_PROBLEM_REGRESSION);
        const float lg[3] = {-2.5f, 0.0f, 3.0f};
        float sc[3];
        CHECK_OK(qkv_classify_scores(a, lg, 3, sc));
        for (int i = 0; i < 3; i++)
            CHECK_NEAR(sc[i], 1.0 / (1.0 + exp(-(double)lg[i])), 1e-7, 1e-6);
    }
    qkv_model_free(a);
    test_rm_rf(dir);
}

int main(void) {
    test_use_arch_from_env();
    qkv_runtime *rt1 = NULL, *rt2 = NULL;
    CHECK_OK(qkv_runtime_create(1, &rt1));
    CHECK_OK(qkv_runtime_create(2, &rt2));
    static const char *models[] = {"single", "multi", "regression", "pair"};
    for (size_t i = 0; i < sizeof models / sizeof *models; i++) test_model(models[i], rt1, rt2);
    test_refused(rt2);
    qkv_runtime_free(rt1);
    qkv_runtime_free(rt2);
    return test_finish("classify");
}
