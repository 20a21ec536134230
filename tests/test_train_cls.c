/* test_train_cls.c — fine-tuning BERT for sequence classification against Hugging Face
 * transformers in PyTorch.
 *
 * Fixtures (tests/fixtures/train/bert_cls, from tools/gen_cls_train_golden.py): tiny random
 * BertForSequenceClassification models — single-label (3 named labels), multi-label (4) and
 * regression (1) — on sentence-pair batches with right padding; transformers' own loss
 * (model(..., labels=...).loss), logits and every gradient on batch 0; and 10 steps of
 * torch.optim.AdamW with the Trainer's parameter groups, get_linear_schedule_with_warmup and
 * clip_grad_norm_. Checked here, on every ISA:
 *   - labels, problem types and head loading read from config.json;
 *   - logits 1e-5, loss 1e-6 and every gradient 1e-4 relative to the tensor's scale (the last
 *     block runs on the [CLS] rows only, bert_train.c; transformers' runs on all rows);
 *   - 10 steps (dropout off): each loss and grad norm within 1e-4, every final weight 1e-4, with
 *     the schedule QKV_LR_LINEAR_HF equal to transformers';
 *   - recompute and 1 vs 2 threads give bit-identical gradients, with dropout on too;
 *   - dropout: a pure function of the batch's seed, off in eval, and the backward is the
 *     gradient of the dropped-out forward (central differences);
 *   - a fresh head (a checkpoint without one, or for other labels) is initialized as transformers
 *     does, from the seed;
 *   - checkpoints keep the labels, the export is a BertForSequenceClassification directory that
 *     loads back identically and that transformers' AutoModelForSequenceClassification runs to
 *     the same logits (tools/check_hf_export.py; skipped with a message without torch);
 *   - bad labels and values are refused. */
#include "qkv.h"
#include "test.h"
#include "test_arch.h"
#include "train_testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FIX QKV_SOURCE_DIR "/tests/fixtures/train/bert_cls/"

enum { S = 10, B = 4, T = 16 };

typedef struct {
    const char *model, *grads; /* in FIX */
    qkv_problem_type problem;
    int64_t nl;
    const char *label0;
} cls_case;

static const cls_case cases[] = {
    {"model", "grads.safetensors", QKV_PROBLEM_SINGLE_LABEL, 3, "negative"},
    {"model_multi", "grads_multi.safetensors", QKV_PROBLEM_MULTI_LABEL, 4, "a"},
    {"model_reg", "grads_reg.safetensors", QKV_PROBLEM_REGRESSION, 1, "LABEL_0"},
};

static qkv_safetensors *bt;

static qkv_train_batch batch_of(const cls_case *c, int s) {
    qkv_train_batch b = {sizeof b, NULL, NULL, NULL, NULL, B, T, NULL, NULL, 0, NULL, NULL, 0};
    b.ids = (const int32_t *)fix_need(bt, "ids") + s * B * T;
    b.types = (const int32_t *)fix_need(bt, "token_type_ids") + s * B * T;
    b.kv_lens = (const int32_t *)fix_need(bt, "kv_lens") + s * B;
    if (c->problem == QKV_PROBLEM_SINGLE_LABEL)
        b.labels = (const int32_t *)fix_need(bt, "labels") + s * B;
    else if (c->problem == QKV_PROBLEM_MULTI_LABEL)
        b.values = (const float *)fix_need(bt, "multi") + s * B * 4;
    else
        b.values = (const float *)fix_need(bt, "reg") + s * B;
    return b;
}

static qkv_trainer *load_dir(const char *dir, const qkv_classifier_spec *spec) {
    qkv_trainer *t = NULL;
    CHECK_OK(qkv_trainer_load_hf_classifier(dir, spec, &t));
    if (!t) exit(1);
    return t;
}

static qkv_trainer *load(const cls_case *c) {
    char path[512];
    snprintf(path, sizeof path, "%s%s", FIX, c->model);
    return load_dir(path, NULL);
}

static void gradients_match_torch(const cls_case *c) {
    char path[512];
    snprintf(path, sizeof path, "%s%s", FIX, c->grads);
    qkv_safetensors *gs = fix_open(path);
    qkv_trainer *t = load(c);
    CHECK(strcmp(qkv_trainer_arch(t), "bert_cls") == 0);
    CHECK_EQ_INT(qkv_trainer_num_labels(t), c->nl);
    CHECK(qkv_trainer_problem_type(t) == c->problem);
    CHECK(qkv_trainer_label(t, 0) && strcmp(qkv_trainer_label(t, 0), c->label0) == 0);
    CHECK(qkv_trainer_label(t, c->nl) == NULL);
    CHECK_EQ_INT((int64_t)qkv_trainer_fresh_params(t), 0);
    qkv_train_batch b = batch_of(c, 0);
    float loss = 0, eval_loss = 0;
    CHECK_OK(qkv_trainer_eval_batch(NULL, t, &b, &eval_loss));
    const float *logits = qkv_trainer_logits(t);
    CHECK(logits != NULL);
    if (logits) {
        double e = fix_rel_err(logits, fix_need(gs, "logits"), B * c->nl);
        CHECK_MSG(e <= 1e-5, "%s logits rel err %.3g", c->model, e);
    }
    qkv_trainer_zero_grad(t);
    CHECK_OK(qkv_trainer_forward_backward_batch(NULL, t, &b, 1.0f, &loss));
    const float ref = *(const float *)fix_need(gs, "loss");
    CHECK_MSG(fabs(loss - ref) <= 1e-6 * fabs(ref) + 1e-7, "%s: loss %.8f, torch %.8f", c->model,
              loss, ref);
    CHECK(loss == eval_loss);
    double worst;
    const char *worst_name;
    size_t n = tt_check_grads(t, gs, c->model, &worst, &worst_name);
    CHECK_EQ_INT((int64_t)n + 2, (int64_t)qkv_safetensors_count(gs));
    printf("%s: loss %.7f (torch %.7f); %zu gradients, worst rel err %.3g (%s)\n", c->model, loss,
           ref, n, worst, worst_name);
    qkv_trainer_free(t);
    qkv_safetensors_close(gs);
}

typedef struct {
    qkv_adamw hp;
    qkv_lr_schedule lr;
    float clip;
} hyper;

static hyper hyper_of(void) {
    json_error_t e;
    json_t *j = json_load_file(FIX "adamw.json", 0, &e);
    if (!j) {
        fprintf(stderr, "adamw.json: %s\n", e.text);
        exit(1);
    }
#define NUM(k) json_number_value(json_object_get(j, k))
    hyper h = {.hp = {.struct_size = sizeof(qkv_adamw),
                      .beta1 = (float)NUM("beta1"),
                      .beta2 = (float)NUM("beta2"),
                      .eps = (float)NUM("eps"),
                      .weight_decay = (float)NUM("weight_decay")},
               .lr = {.struct_size = sizeof(qkv_lr_schedule),
                      .lr_max = NUM("lr_max"),
                      .lr_min = 0.0,
                      .warmup = (int64_t)NUM("warmup_steps"),
                      .total = (int64_t)NUM("total_steps"),
                      .decay = QKV_LR_LINEAR_HF},
               .clip = (float)NUM("clip_grad_norm")};
#undef NUM
    json_decref(j);
    return h;
}

static void ten_steps_match_torch(void) {
    const cls_case *c = &cases[0];
    qkv_safetensors *ss = fix_open(FIX "steps.safetensors");
    const float *losses = fix_need(ss, "losses"), *norms = fix_need(ss, "grad_norms"),
                *lrs = fix_need(ss, "lrs");
    const hyper h = hyper_of();
    qkv_trainer *t = load(c);
    double worst = 0;
    for (int s = 0; s < S; s++) {
        CHECK_NEAR(qkv_lr_at(&h.lr, s), lrs[s], 0, 1e-6);
        qkv_train_batch b = batch_of(c, s);
        b.dropout_seed = 1000 + (uint64_t)s; /* the config's rates are 0: no effect */
        float loss, norm;
        qkv_trainer_zero_grad(t);
        CHECK_OK(qkv_trainer_forward_backward_batch(NULL, t, &b, 1.0f, &loss));
        CHECK_OK(qkv_trainer_step(NULL, t, &h.hp, (float)qkv_lr_at(&h.lr, s), h.clip, &norm));
        CHECK_MSG(fabs(loss - losses[s]) <= 1e-4 * fabs(losses[s]),
                  "step %d: loss %.7f, torch %.7f", s, loss, losses[s]);
        CHECK_MSG(fabs(norm - norms[s]) <= 1e-4 * fabs(norms[s]), "step %d: norm %.7f, torch %.7f",
                  s, norm, norms[s]);
        worst = fmax(worst, fabs(loss - losses[s]) / fabs(losses[s]));
    }
    double worst_w = 0;
    for (size_t i = 0; i < qkv_trainer_param_count(t); i++) {
        qkv_param_info p = {.struct_size = sizeof p};
        CHECK_OK(qkv_trainer_param(t, i, &p));
        char name[160];
        snprintf(name, sizeof name, "final.%s", p.name);
        const float *ref = fix_need(ss, name);
        double e = fix_rel_err(p.data, ref, p.numel);
        /* the key biases (true gradient 0) move by noise on both sides: Adam's first steps
         * scale any gradient to ~lr, so bound them by 10 lr-sized steps instead */
        if (tt_is_key_bias(p.name)) {
            double d = 0;
            for (int64_t j = 0; j < p.numel; j++)
                d = fmax(d, fabs((double)p.data[j] - (double)ref[j]));
            CHECK_MSG(d <= 2.0 * 10 * h.lr.lr_max, "%s differs by %.3g", p.name, d);
            continue;
        }
        CHECK_MSG(e <= 1e-4, "%s after 10 steps: rel err %.3g", p.name, e);
        worst_w = fmax(worst_w, e);
    }
    printf("10 AdamW steps (linear warmup/decay as transformers): loss %.5f -> %.5f, worst loss "
           "rel err %.3g, worst weight %.3g\n",
           losses[0], losses[S - 1], worst, worst_w);
    qkv_trainer_free(t);
    qkv_safetensors_close(ss);
}

/* Every gradient after one forward/backward of batch 1, in one buffer. */
static float *grads_after(const cls_case *c, qkv_runtime *rt, qkv_recompute policy, float drop,
                          int64_t *n) {
    qkv_trainer *t = load(c);
    CHECK_OK(qkv_trainer_set_dropout(t, drop, drop, drop));
    CHECK_OK(qkv_trainer_reserve(t, B, T, policy, NULL));
    qkv_train_batch b = batch_of(c, 1);
    b.dropout_seed = 42;
    float loss;
    qkv_trainer_zero_grad(t);
    CHECK_OK(qkv_trainer_forward_backward_batch(rt, t, &b, 0.5f, &loss));
    float *g = tt_all_grads(t, n);
    qkv_trainer_free(t);
    return g;
}

static void policies_and_threads(const cls_case *c) {
    qkv_runtime *one, *two;
    CHECK_OK(qkv_runtime_create(1, &one));
    CHECK_OK(qkv_runtime_create(2, &two));
    for (int d = 0; d < 2; d++) {
        const float drop = d ? 0.2f : 0.0f;
        int64_t n0, n1, n2;
        float *g0 = grads_after(c, one, QKV_RECOMPUTE_NONE, drop, &n0);
        float *g1 = grads_after(c, one, QKV_RECOMPUTE_LAYERS, drop, &n1);
        float *g2 = grads_after(c, two, QKV_RECOMPUTE_NONE, drop, &n2);
        CHECK(n0 == n1 && n0 == n2);
        CHECK_MSG(memcmp(g0, g1, (size_t)n0 * sizeof *g0) == 0,
                  "%s (dropout %g): recompute changes gradients", c->model, drop);
        CHECK_MSG(memcmp(g0, g2, (size_t)n0 * sizeof *g0) == 0,
                  "%s (dropout %g): 2 threads change gradients", c->model, drop);
        free(g0), free(g1), free(g2);
    }
    qkv_runtime_free(one);
    qkv_runtime_free(two);
}

/* Dropout: deterministic in the seed, absent from eval, and the backward differentiates the
 * dropped-out forward: checked against central differences (in double around float losses, on
 * the largest gradients of a few tensors). */
static void dropout(void) {
    const cls_case *c = &cases[0];
    qkv_trainer *t = load(c);
    CHECK_OK(qkv_trainer_set_dropout(t, 0.1f, 0.1f, 0.1f));
    CHECK(qkv_trainer_set_dropout(t, 1.0f, 0, 0) == QKV_ERR_INVALID_ARG);
    CHECK(qkv_trainer_set_dropout(t, NAN, 0, 0) == QKV_ERR_INVALID_ARG);
    qkv_train_batch b = batch_of(c, 2);
    float l_eval, l_eval2, l1, l2, l3;
    CHECK_OK(qkv_trainer_eval_batch(NULL, t, &b, &l_eval));
    b.dropout_seed = 7;
    qkv_trainer_zero_grad(t);
    CHECK_OK(qkv_trainer_forward_backward_batch(NULL, t, &b, 1.0f, &l1));
    CHECK_OK(qkv_trainer_forward_backward_batch(NULL, t, &b, 1.0f, &l2));
    b.dropout_seed = 8;
    CHECK_OK(qkv_trainer_forward_backward_batch(NULL, t, &b, 1.0f, &l3));
    CHECK_OK(qkv_trainer_eval_batch(NULL, t, &b, &l_eval2));
    CHECK(l1 == l2);                 /* same seed, same masks */
    CHECK(l1 != l3 && l1 != l_eval); /* another seed, or none, changes the loss */
    CHECK(l_eval == l_eval2);        /* eval has no dropout */
    /* finite differences of the seed-7 loss against its gradient (taken first: the
     * forward_backward calls below accumulate into the gradients) */
    b.dropout_seed = 7;
    qkv_trainer_zero_grad(t);
    float l0;
    CHECK_OK(qkv_trainer_forward_backward_batch(NULL, t, &b, 1.0f, &l0));
    const char *names[] = {"classifier.weight", "bert.pooler.dense.weight",
                           "bert.encoder.layer.0.attention.self.query.weight",
                           "bert.encoder.layer.1.output.dense.weight",
                           "bert.embeddings.word_embeddings.weight"};
    enum { K = sizeof names / sizeof *names };
    float *at[K], want[K];
    for (int k = 0; k < K; k++)
        for (size_t i = 0; i < qkv_trainer_param_count(t); i++) {
            qkv_param_info p = {.struct_size = sizeof p};
            CHECK_OK(qkv_trainer_param(t, i, &p));
            if (strcmp(p.name, names[k]) != 0) continue;
            int64_t j = 0;
            for (int64_t q = 1; q < p.numel; q++)
                if (fabsf(p.grad[q]) > fabsf(p.grad[j])) j = q;
            at[k] = p.data + j;
            want[k] = p.grad[j];
        }
    int checked = 0;
    for (int k = 0; k < K; k++) {
        const float w0 = *at[k], h = 2e-2f;
        float lp, lm;
        *at[k] = w0 + h;
        CHECK_OK(qkv_trainer_forward_backward_batch(NULL, t, &b, 1.0f, &lp));
        *at[k] = w0 - h;
        CHECK_OK(qkv_trainer_forward_backward_batch(NULL, t, &b, 1.0f, &lm));
        *at[k] = w0;
        const double fd = ((double)lp - (double)lm) / (2.0 * h);
        CHECK_MSG(fabs(fd - want[k]) <= 0.03 * fabs(want[k]) + 2e-4,
                  "dropout gradient of %s: backward %.6g, central difference %.6g", names[k],
                  want[k], fd);
        checked++;
    }
    CHECK_EQ_INT(checked, 5);
    printf("dropout: deterministic per seed, off in eval, backward = central differences (%d "
           "tensors)\n",
           checked);
    qkv_trainer_free(t);
}

static const float *param_data(qkv_trainer *t, const char *name, int64_t *numel) {
    for (size_t i = 0; i < qkv_trainer_param_count(t); i++) {
        qkv_param_info p = {.struct_size = sizeof p};
        CHECK_OK(qkv_trainer_param(t, i, &p));
        if (strcmp(p.name, name) == 0) {
            if (numel) *numel = p.numel;
            return p.data;
        }
    }
    CHECK_MSG(0, "no parameter %s", name);
    exit(1);
}

static void files_roundtrip(const cls_case *c) {
    const hyper h = hyper_of();
    qkv_trainer *t = load(c);
    CHECK_OK(qkv_trainer_set_dropout(t, 0.1f, -1, 0.05f));
    qkv_train_batch b = batch_of(c, 2);
    float loss, norm;
    qkv_trainer_zero_grad(t);
    CHECK_OK(qkv_trainer_forward_backward_batch(NULL, t, &b, 1.0f, &loss));
    CHECK_OK(qkv_trainer_step(NULL, t, &h.hp, 1e-3f, h.clip, &norm));
    char dir[] = "/tmp/qkv_train_cls.XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char ckpt[128], exp[128];
    snprintf(ckpt, sizeof ckpt, "%s/ckpt.safetensors", dir);
    snprintf(exp, sizeof exp, "%s/model", dir);
    CHECK_OK(qkv_trainer_save(t, ckpt, "{}"));
    qkv_trainer *r = NULL;
    CHECK_OK(qkv_trainer_restore(ckpt, &r, NULL));
    CHECK(r && strcmp(qkv_trainer_arch(r), "bert_cls") == 0 && tt_same_weights(t, r));
    CHECK(r && qkv_trainer_num_labels(r) == c->nl && qkv_trainer_problem_type(r) == c->problem);
    CHECK(r && strcmp(qkv_trainer_label(r, 0), c->label0) == 0);
    /* the restored trainer continues exactly as the original, dropout rates included */
    b = batch_of(c, 3);
    b.dropout_seed = 99;
    float l1, l2;
    qkv_trainer_zero_grad(t);
    qkv_trainer_zero_grad(r);
    CHECK_OK(qkv_trainer_forward_backward_batch(NULL, t, &b, 1.0f, &l1));
    CHECK_OK(qkv_trainer_forward_backward_batch(NULL, r, &b, 1.0f, &l2));
    CHECK_OK(qkv_trainer_step(NULL, t, &h.hp, 1e-3f, h.clip, &norm));
    CHECK_OK(qkv_trainer_step(NULL, r, &h.hp, 1e-3f, h.clip, &norm));
    CHECK(l1 == l2 && tt_same_weights(t, r));
    /* the export: a BertForSequenceClassification directory with the labels */
    CHECK_OK(qkv_trainer_export_hf(t, exp, -1));
    char cfg_path[160];
    snprintf(cfg_path, sizeof cfg_path, "%s/config.json", exp);
    json_error_t je;
    json_t *cfg = json_load_file(cfg_path, 0, &je);
    CHECK(cfg != NULL);
    if (cfg) {
        json_t *arch = json_array_get(json_object_get(cfg, "architectures"), 0);
        CHECK(json_is_string(arch) &&
              strcmp(json_string_value(arch), "BertForSequenceClassification") == 0);
        json_t *l0 = json_object_get(json_object_get(cfg, "id2label"), "0");
        CHECK(json_is_string(l0) && strcmp(json_string_value(l0), c->label0) == 0);
        CHECK(json_integer_value(json_object_get(json_object_get(cfg, "label2id"), c->label0)) ==
              0);
        CHECK(json_number_value(json_object_get(cfg, "hidden_dropout_prob")) == (double)0.1f);
        CHECK(json_number_value(json_object_get(cfg, "classifier_dropout")) == (double)0.05f);
        json_decref(cfg);
    }
    qkv_trainer *e = load_dir(exp, NULL);
    CHECK(tt_same_weights(t, e) && qkv_trainer_problem_type(e) == c->problem);
    CHECK(qkv_trainer_num_labels(e) == c->nl && qkv_trainer_fresh_params(e) == 0);
    float le, lt;
    b = batch_of(c, 4);
    CHECK_OK(qkv_trainer_eval_batch(NULL, e, &b, &le));
    CHECK_OK(qkv_trainer_eval_batch(NULL, t, &b, &lt));
    CHECK(le == lt);
    /* transformers on the export, with the padding masks and token types */
    char ref_path[160];
    snprintf(ref_path, sizeof ref_path, "%s/ref.safetensors", dir);
    int64_t ids_shape[2] = {B, T}, lens_shape[1] = {B}, lg_shape[2] = {B, c->nl};
    qkv_st_write_tensor ref[4] = {{"ids", QKV_DTYPE_I32, 2, ids_shape, b.ids},
                                  {"token_type_ids", QKV_DTYPE_I32, 2, ids_shape, b.types},
                                  {"kv_lens", QKV_DTYPE_I32, 1, lens_shape, b.kv_lens},
                                  {"logits", QKV_DTYPE_F32, 2, lg_shape, qkv_trainer_logits(t)}};
    CHECK_OK(qkv_safetensors_write(ref_path, ref, 4, NULL, NULL, 0));
    char args[800];
    snprintf(args, sizeof args, "--ids %s --types %s --lens %s --logits %s --atol 1e-5 --rtol 1e-5",
             ref_path, ref_path, ref_path, ref_path);
    tt_hf_check(dir, exp, args, c->model);
    test_rm_rf(dir);
    qkv_trainer_free(t);
    qkv_trainer_free(r);
    qkv_trainer_free(e);
}

/* A checkpoint without the head, or a head for other labels: initialized as transformers
 * does (N(0, initializer_range) matrices, zero biases), a pure function of the seed. */
static void fresh_heads(void) {
    const char *mlm = QKV_SOURCE_DIR "/tests/fixtures/train/bert_tiny/model"; /* no pooler */
    const char *names[2] = {"no", "yes"};
    qkv_classifier_spec sp;
    qkv_classifier_spec_init(&sp);
    sp.num_labels = 2;
    sp.labels = names;
    sp.seed = 5;
    qkv_trainer *a = load_dir(mlm, &sp), *b = load_dir(mlm, &sp);
    sp.seed = 6;
    qkv_trainer *c = load_dir(mlm, &sp);
    CHECK_EQ_INT((int64_t)qkv_trainer_fresh_params(a), 4); /* pooler + classifier */
    CHECK(tt_same_weights(a, b) && !tt_same_weights(a, c));
    CHECK(strcmp(qkv_trainer_label(a, 1), "yes") == 0);
    CHECK(qkv_trainer_problem_type(a) == QKV_PROBLEM_SINGLE_LABEL);
    int64_t n;
    const float *w = param_data(a, "classifier.weight", &n), *bias;
    double s2 = 0;
    for (int64_t i = 0; i < n; i++) s2 += (double)w[i] * w[i];
    const double sd = sqrt(s2 / (double)n);
    CHECK_MSG(sd > 0.015 && sd < 0.025, "fresh classifier std %.4f (initializer_range 0.02)", sd);
    bias = param_data(a, "classifier.bias", &n);
    for (int64_t i = 0; i < n; i++) CHECK(bias[i] == 0.0f);
    /* the encoder is the checkpoint's */
    qkv_trainer *m = NULL;
    CHECK_OK(qkv_trainer_load_hf(mlm, &m));
    int64_t nw;
    const float *w1 = param_data(a, "bert.encoder.layer.1.output.dense.weight", &nw),
                *w2 = param_data(m, "bert.encoder.layer.1.output.dense.weight", NULL);
    CHECK(memcmp(w1, w2, (size_t)nw * sizeof(float)) == 0);
    /* other labels than the checkpoint's head: its pooler stays, the classifier is new */
    char dir[512];
    snprintf(dir, sizeof dir, "%smodel", FIX);
    qkv_trainer *d = load_dir(dir, &sp);
    CHECK_EQ_INT((int64_t)qkv_trainer_fresh_params(d), 2);
    /* 1 label and no problem type anywhere: regression, as transformers */
    qkv_classifier_spec one;
    qkv_classifier_spec_init(&one);
    one.num_labels = 1;
    qkv_trainer *r = load_dir(mlm, &one);
    CHECK(qkv_trainer_problem_type(r) == QKV_PROBLEM_REGRESSION);
    one.problem_type = QKV_PROBLEM_MULTI_LABEL;
    qkv_trainer *ml = load_dir(dir, &one);
    CHECK(qkv_trainer_problem_type(ml) == QKV_PROBLEM_MULTI_LABEL);
    printf("fresh heads: seeded, N(0, %.4f) classifier, zero bias, encoder kept\n", sd);
    qkv_trainer_free(a), qkv_trainer_free(b), qkv_trainer_free(c), qkv_trainer_free(d);
    qkv_trainer_free(m), qkv_trainer_free(r), qkv_trainer_free(ml);
}

static void bad_inputs(void) {
    qkv_trainer *t = load(&cases[0]);
    qkv_train_batch b = batch_of(&cases[0], 0);
    float loss;
    int32_t bad[B] = {0, 1, 3, 0};
    b.labels = bad;
    CHECK(qkv_trainer_forward_backward_batch(NULL, t, &b, 1.0f, &loss) == QKV_ERR_INVALID_ARG);
    CHECK(strstr(qkv_last_error(), "labels[2] = 3") != NULL);
    int32_t ignored[B] = {-100, -100, -100, 2};
    b.labels = ignored; /* ignored sequences are fine */
    CHECK_OK(qkv_trainer_forward_backward_batch(NULL, t, &b, 1.0f, &loss));
    b.labels = NULL;
    CHECK(qkv_trainer_eval_batch(NULL, t, &b, &loss) == QKV_ERR_INVALID_ARG);
    qkv_trainer_free(t);
    t = load(&cases[1]);
    b = batch_of(&cases[1], 0);
    float vals[B * 4] = {0};
    vals[5] = 2.0f;
    b.values = vals;
    CHECK(qkv_trainer_eval_batch(NULL, t, &b, &loss) == QKV_ERR_INVALID_ARG);
    vals[5] = NAN;
    CHECK(qkv_trainer_eval_batch(NULL, t, &b, &loss) == QKV_ERR_INVALID_ARG);
    qkv_trainer_free(t);
    /* specs and models a classifier cannot be */
    const char *dup[2] = {"x", "x"};
    qkv_classifier_spec sp;
    qkv_classifier_spec_init(&sp);
    sp.num_labels = 2;
    sp.labels = dup;
    char dir[512];
    snprintf(dir, sizeof dir, "%smodel", FIX);
    qkv_trainer *x = NULL;
    CHECK(qkv_trainer_load_hf_classifier(dir, &sp, &x) != QKV_OK && x == NULL);
    CHECK(strstr(qkv_last_error(), "twice") != NULL);
    sp.labels = NULL;
    sp.problem_type = 7;
    CHECK(qkv_trainer_load_hf_classifier(dir, &sp, &x) == QKV_ERR_INVALID_ARG);
    CHECK(qkv_trainer_load_hf_classifier(QKV_SOURCE_DIR "/tests/fixtures/train/gpt2_tiny", NULL,
                                         &x) == QKV_ERR_UNSUPPORTED);
    CHECK(qkv_trainer_set_dropout(NULL, 0, 0, 0) == QKV_ERR_INVALID_ARG);
}

int main(void) {
    test_use_arch_from_env();
    bt = fix_open(FIX "batches.safetensors");
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) gradients_match_torch(&cases[i]);
    ten_steps_match_torch();
    policies_and_threads(&cases[0]);
    policies_and_threads(&cases[1]);
    dropout();
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) files_roundtrip(&cases[i]);
    fresh_heads();
    bad_inputs();
    qkv_safetensors_close(bt);
    return test_finish("train_cls");
}
