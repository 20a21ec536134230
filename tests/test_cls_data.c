/* test_cls_data.c — labelled examples tokenized for a classifier (qkv_cls_data) and the
 * classifier path of the training loop (qkv_train_run with cls_train / cls_val):
 *   - every example's ids and token types are the tokenizer's encoding of its text (and pair),
 *     cut to max_length longest-first; the counts add up; bad arguments are refused;
 *   - qkv_trainer_predict gives each example the logits of a forward over it alone;
 *   - a classifier run: the steps of qkv_train_epoch_steps, metrics lines with the epoch and
 *     the validation scores (JSON null, never NaN), best.safetensors, the same weights with 1
 *     and 2 threads, with and without length grouping the same number of examples seen;
 *   - batches split into micro-batches (options.micro_batch; 3 of 8: parts 3, 3, 2, and an
 *     empty one at an epoch's short last batch) give the whole batches' losses and weights
 *     within rounding;
 *   - options that do not fit (datasets and examples together, a GPT-2 trainer, examples longer
 *     than seq, other labels) are refused naming the field. */
#include "qkv.h"
#include "test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MODEL QKV_SOURCE_DIR "/tests/fixtures/cls/single"

static char g_dir[64];

static const char *write_tsv(const char *name, int n, int pairs, unsigned seed) {
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "w");
    static const char *words[] = {"the",  "movie", "film",  "it",  "this", "was", "is", "very",
                                  "team", "game",  "music", "and", "of",   "to",  "in", "play"};
    static const char *keys[3][3] = {
        {"good", "great", "love"}, {"bad", "awful", "hate"}, {"vote", "law", "cell"}};
    static const char *labels[3] = {"positive", "negative", "neutral"};
    fprintf(f, pairs ? "text\ttext_pair\tlabel\n" : "text\tlabel\n");
    for (int i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        int k = (int)((seed >> 16) % 3), len = 2 + (int)((seed >> 8) % 20);
        for (int j = 0; j < len; j++) {
            seed = seed * 1103515245u + 12345u;
            fprintf(f, "%s ", words[(seed >> 16) % 16]);
        }
        fprintf(f, "%s", keys[k][(seed >> 4) % 3]);
        if (pairs) fprintf(f, "\tthe %s", words[(seed >> 12) % 16]);
        fprintf(f, "\t%s\n", labels[k]);
    }
    fclose(f);
    return path;
}

static qkv_labeled *load(const char *path) {
    qkv_labeled *d = NULL;
    CHECK_OK(qkv_labeled_load(path, NULL, &d));
    if (!d) exit(1);
    return d;
}

static void tokenization(qkv_tokenizer *tok) {
    qkv_labeled *d = load(write_tsv("pairs.tsv", 60, 1, 5));
    qkv_cls_data *cd = NULL;
    const int64_t L = 12;
    CHECK_OK(qkv_cls_data_build(NULL, d, tok, L, &cd));
    CHECK_EQ_INT(qkv_cls_data_count(cd), 60);
    /* the examples as one forward each sees them: compare the token count with the
     * tokenizer's own encoding under the same options */
    qkv_encode_options eo;
    qkv_tokenizer_default_options(tok, &eo);
    eo.max_length = L;
    eo.truncation = QKV_TRUNCATE_LONGEST_FIRST;
    int64_t total = 0, at_cap = 0, longest = 0;
    for (int64_t i = 0; i < 60; i++) {
        size_t tl, pl;
        const char *t = qkv_labeled_text(d, i, &tl), *p = qkv_labeled_pair(d, i, &pl);
        qkv_encoding *e = NULL;
        CHECK_OK(qkv_tokenizer_encode(tok, t, tl, p, pl, &eo, &e));
        int has_type1 = 0;
        for (size_t k = 0; k < e->n; k++) has_type1 |= e->type_ids[k] == 1;
        CHECK(has_type1); /* the pair's tokens have type 1 */
        total += (int64_t)e->n;
        at_cap += (int64_t)e->n == L;
        if ((int64_t)e->n > longest) longest = (int64_t)e->n;
        qkv_encoding_free(e);
    }
    CHECK_EQ_INT(qkv_cls_data_tokens(cd), total);
    CHECK_EQ_INT(qkv_cls_data_truncated(cd), at_cap);
    CHECK_EQ_INT(qkv_cls_data_max_len(cd), longest);
    CHECK(longest == L && at_cap > 0); /* the data has examples longer than L */
    qkv_cls_data_free(cd);
    qkv_cls_data *x = NULL;
    CHECK(qkv_cls_data_build(NULL, d, tok, 2, &x) == QKV_ERR_INVALID_ARG && !x);
    CHECK(qkv_cls_data_build(NULL, NULL, tok, 16, &x) == QKV_ERR_INVALID_ARG);
    CHECK(qkv_cls_data_build(NULL, d, NULL, 16, &x) == QKV_ERR_INVALID_ARG);
    qkv_cls_data_free(NULL);
    CHECK_EQ_INT(qkv_cls_data_count(NULL), 0);
    qkv_labeled_free(d);
}

static qkv_trainer *classifier(qkv_labeled *train) {
    const int64_t nl = qkv_labeled_num_labels(train);
    const char *names[8];
    for (int64_t k = 0; k < nl; k++) names[k] = qkv_labeled_label_name(train, k);
    qkv_classifier_spec sp;
    qkv_classifier_spec_init(&sp);
    sp.num_labels = nl, sp.labels = names, sp.seed = 3;
    qkv_trainer *t = NULL;
    CHECK_OK(qkv_trainer_load_hf_classifier(MODEL, &sp, &t));
    if (!t) exit(1);
    return t;
}

/* qkv_trainer_predict == one forward per example. */
static void predict(qkv_tokenizer *tok) {
    qkv_labeled *d = load(write_tsv("p.tsv", 23, 0, 9));
    qkv_cls_data *cd = NULL;
    CHECK_OK(qkv_cls_data_build(NULL, d, tok, 32, &cd));
    qkv_trainer *t = classifier(d);
    const int64_t NL = qkv_trainer_num_labels(t);
    float *all = malloc((size_t)(23 * NL) * sizeof *all);
    CHECK_OK(qkv_trainer_predict(NULL, t, cd, 5, all));
    qkv_encode_options eo;
    qkv_tokenizer_default_options(tok, &eo);
    double worst = 0;
    for (int64_t i = 0; i < 23; i++) {
        size_t tl;
        const char *text = qkv_labeled_text(d, i, &tl);
        qkv_encoding *e = NULL;
        CHECK_OK(qkv_tokenizer_encode(tok, text, tl, NULL, 0, &eo, &e));
        int32_t len = (int32_t)e->n, label = qkv_labeled_label(d, i);
        qkv_train_batch b = {sizeof b, e->ids, NULL, e->type_ids, &len, 1, len,
                             &label,   NULL,   0,    NULL,        NULL, 0};
        float loss;
        CHECK_OK(qkv_trainer_eval_batch(NULL, t, &b, &loss));
        const float *lg = qkv_trainer_logits(t);
        for (int64_t k = 0; k < NL; k++)
            worst = fmax(worst, fabs((double)lg[k] - (double)all[i * NL + k]));
        qkv_encoding_free(e);
    }
    /* padded batches of other examples change nothing but summation order */
    CHECK_MSG(worst <= 1e-5, "predict vs one example at a time: %.3g", worst);
    CHECK(qkv_trainer_predict(NULL, t, cd, 0, all) == QKV_ERR_INVALID_ARG);
    free(all);
    qkv_trainer_free(t);
    qkv_cls_data_free(cd);
    qkv_labeled_free(d);
}

typedef struct {
    int steps, evals, bests, nan_tokens;
    double last_epoch, loss[32], val_loss[4];
} seen;

static void on_metrics(const qkv_train_record *r, void *user) {
    seen *s = user;
    if (r->kind == QKV_TRAIN_RECORD_STEP) {
        if (s->steps < 32) s->loss[s->steps] = r->loss;
        s->steps++;
        s->last_epoch = r->epoch;
    } else {
        if (s->evals < 4) s->val_loss[s->evals] = r->val_loss;
        s->evals++;
        s->bests += r->best;
        CHECK(isfinite(r->val_accuracy) && isfinite(r->val_macro_f1) && isfinite(r->val_loss));
    }
    if (r->json && (strstr(r->json, "nan") || strstr(r->json, "NaN") || strstr(r->json, "inf")))
        s->nan_tokens++;
}

/* micro: options.micro_batch, and the model's dropout off (the splits draw other masks) */
static float *run(qkv_tokenizer *tok, int threads, int grouped, int64_t micro, const char *dir,
                  seen *s) {
    qkv_labeled *tr = load(write_tsv("tr.tsv", 70, 0, 11)),
                *va = load(write_tsv("va.tsv", 20, 0, 12));
    qkv_trainer *t = classifier(tr);
    if (micro) CHECK_OK(qkv_trainer_set_dropout(t, 0.0f, 0.0f, 0.0f));
    const char *names[8];
    for (int64_t k = 0; k < qkv_trainer_num_labels(t); k++) names[k] = qkv_trainer_label(t, k);
    CHECK_OK(qkv_labeled_map_labels(va, names, qkv_trainer_num_labels(t)));
    qkv_cls_data *ctr = NULL, *cva = NULL;
    CHECK_OK(qkv_cls_data_build(NULL, tr, tok, 32, &ctr));
    CHECK_OK(qkv_cls_data_build(NULL, va, tok, 32, &cva));
    qkv_runtime *rt = NULL;
    CHECK_OK(qkv_runtime_create(threads, &rt));
    qkv_train_options o;
    qkv_train_options_init(&o);
    o.cls_train = ctr, o.cls_val = cva, o.length_grouped = grouped;
    o.batch = 8, o.seq = 32, o.lr = 1e-3, o.min_lr = 0, o.decay = QKV_LR_LINEAR_HF;
    const int64_t epoch = qkv_train_epoch_steps(70, 8, 1);
    CHECK_EQ_INT(epoch, 9);
    o.steps = 3 * epoch, o.warmup = 2, o.eval_every = epoch, o.save_every = epoch;
    o.run_dir = dir, o.keep_best = 1, o.seed = 5, o.micro_batch = micro;
    qkv_train_callbacks cb;
    memset(&cb, 0, sizeof cb);
    cb.struct_size = sizeof cb;
    cb.metrics = on_metrics;
    memset(s, 0, sizeof *s);
    CHECK_OK(qkv_train_run(rt, t, &o, &cb, s));
    int64_t n = qkv_trainer_numel(t);
    float *w = malloc((size_t)n * sizeof *w);
    for (size_t i = 0, off = 0; i < qkv_trainer_param_count(t); i++) {
        qkv_param_info p = {.struct_size = sizeof p};
        CHECK_OK(qkv_trainer_param(t, i, &p));
        memcpy(w + off, p.data, (size_t)p.numel * sizeof *w);
        off += (size_t)p.numel;
    }
    /* refused options */
    qkv_train_options bad = o;
    bad.run_dir = NULL, bad.steps = 0;
    bad.seq = 8; /* examples are longer */
    CHECK(qkv_train_run(rt, t, &bad, NULL, NULL) == QKV_ERR_INVALID_ARG);
    CHECK(strstr(qkv_last_error(), "longer than seq") != NULL);
    qkv_dataset *none = (qkv_dataset *)(void *)1; /* never dereferenced: refused first */
    bad = o, bad.run_dir = NULL, bad.train = none;
    CHECK(qkv_train_run(rt, t, &bad, NULL, NULL) == QKV_ERR_INVALID_ARG);
    bad = o, bad.run_dir = NULL, bad.cls_train = NULL;
    CHECK(qkv_train_run(rt, t, &bad, NULL, NULL) == QKV_ERR_INVALID_ARG);
    qkv_trainer *g = NULL;
    qkv_gpt2_shape sh = {64, 32, 16, 1, 2};
    CHECK_OK(qkv_trainer_new(&sh, 1, &g));
    bad = o, bad.run_dir = NULL;
    CHECK(qkv_train_run(rt, g, &bad, NULL, NULL) == QKV_ERR_INVALID_ARG);
    CHECK(strstr(qkv_last_error(), "classifier") != NULL);
    bad = o, bad.run_dir = NULL, bad.micro_batch = -1;
    CHECK(qkv_train_run(rt, t, &bad, NULL, NULL) == QKV_ERR_INVALID_ARG);
    CHECK(strstr(qkv_last_error(), "micro_batch") != NULL);
    bad = o, bad.run_dir = NULL, bad.cls_train = bad.cls_val = NULL, bad.train = none;
    bad.micro_batch = 2;
    CHECK(qkv_train_run(rt, g, &bad, NULL, NULL) == QKV_ERR_INVALID_ARG);
    CHECK(strstr(qkv_last_error(), "micro_batch splits classifier batches") != NULL);
    qkv_trainer_free(g);
    qkv_runtime_free(rt);
    qkv_trainer_free(t);
    qkv_cls_data_free(ctr), qkv_cls_data_free(cva);
    qkv_labeled_free(tr), qkv_labeled_free(va);
    return w;
}

static void training(qkv_tokenizer *tok) {
    char d1[128], d2[128], d3[128], d4[128], d5[128];
    snprintf(d1, sizeof d1, "%s/run1", g_dir);
    snprintf(d2, sizeof d2, "%s/run2", g_dir);
    snprintf(d3, sizeof d3, "%s/run3", g_dir);
    snprintf(d4, sizeof d4, "%s/run4", g_dir);
    snprintf(d5, sizeof d5, "%s/run5", g_dir);
    seen s1, s2, s3, s4, s5;
    float *w1 = run(tok, 1, 1, 0, d1, &s1), *w2 = run(tok, 2, 1, 0, d2, &s2),
          *w3 = run(tok, 1, 0, 0, d3, &s3), *w4 = run(tok, 1, 1, 3, d4, &s4),
          *w5 = run(tok, 1, 1, 8, d5, &s5); /* 8: the whole batch, without dropout */
    CHECK_EQ_INT(s1.steps, 27);
    CHECK_EQ_INT(s1.evals, 3);
    CHECK(s1.bests >= 1);
    CHECK_EQ_INT(s1.nan_tokens, 0);
    CHECK_NEAR(s1.last_epoch, 3.0, 0, 1e-9);
    qkv_trainer *t = NULL;
    qkv_labeled *tr = load(write_tsv("tr.tsv", 70, 0, 11));
    t = classifier(tr);
    const size_t n = (size_t)qkv_trainer_numel(t);
    CHECK_MSG(memcmp(w1, w2, n * sizeof *w1) == 0, "1 vs 2 threads: different weights");
    CHECK_MSG(memcmp(w1, w3, n * sizeof *w1) != 0, "length grouping changes nothing");
    /* micro-batches of 3: the same steps and evaluations, losses and weights within rounding
     * of whole batches (both without dropout) */
    CHECK_EQ_INT(s4.steps, 27);
    CHECK_EQ_INT(s4.evals, 3);
    double worst = 0, wmax = 0;
    for (int i = 0; i < 27; i++) {
        CHECK_NEAR(s4.loss[i], s5.loss[i], 0, 1e-5);
        const double d = fabs(s4.loss[i] - s5.loss[i]) / fabs(s5.loss[i]);
        if (d > worst) worst = d;
    }
    for (int i = 0; i < 3; i++) CHECK_NEAR(s4.val_loss[i], s5.val_loss[i], 0, 1e-5);
    /* AdamW moves a weight whose gradient is near 0 by about lr whichever sign rounding gives
     * it: after 27 steps of lr 1e-3 the weights agree to a few lr (the losses to 1e-5) */
    for (size_t i = 0; i < n; i++) {
        CHECK_NEAR(w4[i], w5[i], 5e-3, 0);
        if (fabs(w4[i] - w5[i]) > wmax) wmax = fabs(w4[i] - w5[i]);
    }
    CHECK_MSG(memcmp(w5, w4, n * sizeof *w1) != 0, "micro-batches of 3 are the whole batch");
    char best[160];
    snprintf(best, sizeof best, "%s/best.safetensors", d1);
    qkv_trainer *b = NULL;
    CHECK_OK(qkv_trainer_restore(best, &b, NULL));
    CHECK(b && strcmp(qkv_trainer_arch(b), "bert_cls") == 0);
    printf("classifier runs: %d steps, %d evaluations (%d best), 1 = 2 threads bitwise; "
           "micro-batches of 3: losses within %.2g relative, weights within %.2g\n",
           s1.steps, s1.evals, s1.bests, worst, wmax);
    qkv_trainer_free(b);
    qkv_trainer_free(t);
    qkv_labeled_free(tr);
    free(w1), free(w2), free(w3), free(w4), free(w5);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/qkv_cls_data.XXXXXX");
    if (!mkdtemp(g_dir)) return 1;
    qkv_tokenizer *tok = NULL;
    CHECK_OK(qkv_tokenizer_load(MODEL, &tok));
    if (!tok) return 1;
    tokenization(tok);
    predict(tok);
    training(tok);
    qkv_tokenizer_free(tok);
    test_rm_rf(g_dir);
    return test_finish("cls_data");
}
