/* test_train_arch.c — training Llama-style decoders and BERT masked LMs against Hugging Face
 * transformers in PyTorch.
 *
 * Fixtures (tests/fixtures/train/{llama_tiny,bert_tiny}, from tools/gen_train_golden_arch.py;
 * the GPT-2 one of tools/gen_train_golden.py joins for the checks after the 10-step run):
 * tiny random LlamaForCausalLM (GQA 4/2 heads, RoPE, RMSNorm, SwiGLU; untied head, and a tied
 * variant) and BertForMaskedLM (token types, right padding, MLM labels with -100), the loss,
 * logits and every parameter's gradient on batch 0, and a 10-step AdamW run (losses, pre-clip
 * norms, final weights) with the hyperparameters of adamw.json. Checked here, on every ISA:
 *   - logits 1e-5, loss 1e-6 and every gradient 1e-4 relative to the tensor's scale;
 *   - 10 steps: each loss and grad norm within 1e-4 relative, every final weight within 1e-4
 *     (BERT's key biases, whose true gradient is 0, against the fixture's noise bound);
 *   - recompute (QKV_RECOMPUTE_LAYERS) and 1 vs 2 threads give bit-identical gradients;
 *   - a checkpoint restores the architecture and bit-identical weights; the Hugging Face export
 *     loads back (qkv_trainer_load_hf) with bit-identical weights and logits;
 *   - Llama's export runs in the inference engine (qkv_lm) with the trainer's logits;
 *   - transformers loads every export and computes the trainer's logits (1e-4), through
 *     tools/check_hf_export.py; skipped with a message when no Python has torch and
 *     transformers (tests/run_python_check.sh). */
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

#define FIX QKV_SOURCE_DIR "/tests/fixtures/train/"

enum { S = 10, B = 2, T = 16, V = 101 };

typedef struct {
    const char *arch;    /* qkv_trainer_arch */
    const char *dir;     /* fixture folder */
    const char *model;   /* model directory inside it */
    const char *grads;   /* gradients file inside it */
    int bert, ten_steps; /* BERT batches; the 10-step run exists */
} arch_case;

static qkv_safetensors *open_fix(const char *dir, const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s%s/%s", FIX, dir, name);
    return fix_open(path);
}

/* Batch s of the fixture. */
static qkv_train_batch batch_of(const arch_case *ac, qkv_safetensors *bt, int s) {
    qkv_train_batch b = {sizeof b, NULL, NULL, NULL, NULL, B, T, NULL, NULL, 0, NULL, NULL, 0};
    b.ids = (const int32_t *)fix_need(bt, "ids") + s * B * T;
    if (ac->bert) {
        b.targets = (const int32_t *)fix_need(bt, "labels") + s * B * T;
        b.types = (const int32_t *)fix_need(bt, "token_type_ids") + s * B * T;
        b.kv_lens = (const int32_t *)fix_need(bt, "kv_lens") + s * B;
    } else {
        b.targets = (const int32_t *)fix_need(bt, "targets") + s * B * T;
    }
    return b;
}

static qkv_trainer *load(const arch_case *ac) {
    char path[512];
    snprintf(path, sizeof path, "%s%s/%s", FIX, ac->dir, ac->model);
    qkv_trainer *t = NULL;
    CHECK_OK(qkv_trainer_load_hf(path, &t));
    if (!t) exit(1);
    return t;
}

typedef struct {
    qkv_adamw hp;
    qkv_lr_schedule lr;
    float clip, key_bias_drift;
} hyper;

static hyper hyper_of(const arch_case *ac) {
    char path[512];
    snprintf(path, sizeof path, "%s%s/adamw.json", FIX, ac->dir);
    json_error_t e;
    json_t *j = json_load_file(path, 0, &e);
    if (!j) {
        fprintf(stderr, "%s: %s\n", path, e.text);
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
                      .lr_min = NUM("lr_min"),
                      .warmup = (int64_t)NUM("warmup_steps"),
                      .total = (int64_t)NUM("total_steps"),
                      .decay = QKV_LR_COSINE},
               .clip = (float)NUM("clip_grad_norm"),
               .key_bias_drift = (float)NUM("key_bias_drift")};
#undef NUM
    CHECK(strcmp(json_string_value(json_object_get(j, "schedule")), "cosine") == 0);
    json_decref(j);
    return h;
}

static void gradients_match_torch(const arch_case *ac, qkv_safetensors *bt) {
    qkv_safetensors *gs = open_fix(ac->dir, ac->grads);
    qkv_trainer *t = load(ac);
    CHECK(strcmp(qkv_trainer_arch(t), ac->arch) == 0);
    qkv_train_batch b = batch_of(ac, bt, 0);
    float loss = 0, eval_loss = 0;
    CHECK_OK(qkv_trainer_eval_batch(NULL, t, &b, &eval_loss));
    const float *logits = qkv_trainer_logits(t);
    CHECK(logits != NULL);
    if (logits) {
        double e = fix_rel_err(logits, fix_need(gs, "logits"), B * T * V);
        CHECK_MSG(e <= 1e-5, "%s logits rel err %.3g", ac->dir, e);
    }
    qkv_trainer_zero_grad(t);
    CHECK_OK(qkv_trainer_forward_backward_batch(NULL, t, &b, 1.0f, &loss));
    const float ref = *(const float *)fix_need(gs, "loss");
    CHECK_NEAR(loss, ref, 0, 1e-6);
    CHECK(loss == eval_loss);
    double worst;
    const char *worst_name;
    size_t n_checked = tt_check_grads(t, gs, ac->dir, &worst, &worst_name);
    /* every gradient in the fixture was compared (plus loss and logits) */
    CHECK_EQ_INT((int64_t)n_checked + 2, (int64_t)qkv_safetensors_count(gs));
    printf("%s/%s: loss %.7f (torch %.7f); %zu gradients, worst rel err %.3g (%s)\n", ac->dir,
           ac->model, loss, ref, n_checked, worst, worst_name);
    qkv_trainer_free(t);
    qkv_safetensors_close(gs);
}

static void ten_steps_match_torch(const arch_case *ac, qkv_safetensors *bt) {
    qkv_safetensors *ss = open_fix(ac->dir, "steps.safetensors");
    const float *losses = fix_need(ss, "losses"), *norms = fix_need(ss, "grad_norms"),
                *lrs = fix_need(ss, "lrs");
    const hyper h = hyper_of(ac);
    qkv_trainer *t = load(ac), *init = load(ac);
    double worst = 0;
    for (int s = 0; s < S; s++) {
        CHECK_NEAR(qkv_lr_at(&h.lr, s), lrs[s], 0, 1e-6);
        qkv_train_batch b = batch_of(ac, bt, s);
        float loss, norm;
        qkv_trainer_zero_grad(t);
        CHECK_OK(qkv_trainer_forward_backward_batch(NULL, t, &b, 1.0f, &loss));
        CHECK_OK(qkv_trainer_step(NULL, t, &h.hp, (float)qkv_lr_at(&h.lr, s), h.clip, &norm));
        CHECK_MSG(fabs(loss - losses[s]) <= 1e-4 * fabs(losses[s]),
                  "%s step %d: loss %.7f, torch %.7f", ac->dir, s, loss, losses[s]);
        CHECK_MSG(fabs(norm - norms[s]) <= 1e-4 * fabs(norms[s]),
                  "%s step %d: norm %.7f, torch %.7f", ac->dir, s, norm, norms[s]);
        worst = fmax(worst, fabs(loss - losses[s]) / fabs(losses[s]));
    }
    double worst_w = 0;
    for (size_t i = 0; i < qkv_trainer_param_count(t); i++) {
        qkv_param_info p = {.struct_size = sizeof p}, p0 = {.struct_size = sizeof p0};
        CHECK_OK(qkv_trainer_param(t, i, &p));
        CHECK_OK(qkv_trainer_param(init, i, &p0));
        char name[160];
        snprintf(name, sizeof name, "final.%s", p.name);
        const float *ref = fix_need(ss, name);
        if (tt_is_key_bias(
                p.name)) { /* noise-driven drift on both sides, bounded by the fixture's */
            double d = 0, ours = 0;
            for (int64_t j = 0; j < p.numel; j++) {
                d = fmax(d, fabs((double)p.data[j] - (double)ref[j]));
                ours = fmax(ours, fabs((double)p.data[j] - (double)p0.data[j]));
            }
            CHECK_MSG(ours <= 4.0 * h.key_bias_drift + 1e-7 && d <= 5.0 * h.key_bias_drift + 1e-7,
                      "%s: %s drifted %.3g (torch's bound %.3g, difference %.3g)", ac->dir, p.name,
                      ours, h.key_bias_drift, d);
            continue;
        }
        double e = fix_rel_err(p.data, ref, p.numel);
        CHECK_MSG(e <= 1e-4, "%s: %s after 10 steps: rel err %.3g", ac->dir, p.name, e);
        worst_w = fmax(worst_w, e);
    }
    printf("%s: 10 AdamW steps, loss %.5f -> %.5f, worst loss rel err %.3g, worst weight %.3g\n",
           ac->dir, losses[0], losses[S - 1], worst, worst_w);
    qkv_trainer_free(t);
    qkv_trainer_free(init);
    qkv_safetensors_close(ss);
}

/* All gradients after one forward/backward of batch 1, in one buffer. */
static float *grads_after(const arch_case *ac, qkv_safetensors *bt, qkv_runtime *rt,
                          qkv_recompute policy, int64_t *n) {
    qkv_trainer *t = load(ac);
    CHECK_OK(qkv_trainer_reserve(t, B, T, policy, NULL));
    qkv_train_batch b = batch_of(ac, bt, 1);
    float loss;
    qkv_trainer_zero_grad(t);
    CHECK_OK(qkv_trainer_forward_backward_batch(rt, t, &b, 0.5f, &loss));
    float *g = tt_all_grads(t, n);
    qkv_trainer_free(t);
    return g;
}

static void policies_and_threads(const arch_case *ac, qkv_safetensors *bt) {
    qkv_runtime *one, *two;
    CHECK_OK(qkv_runtime_create(1, &one));
    CHECK_OK(qkv_runtime_create(2, &two));
    int64_t n0, n1, n2;
    float *g0 = grads_after(ac, bt, one, QKV_RECOMPUTE_NONE, &n0);
    float *g1 = grads_after(ac, bt, one, QKV_RECOMPUTE_LAYERS, &n1);
    float *g2 = grads_after(ac, bt, two, QKV_RECOMPUTE_NONE, &n2);
    CHECK(n0 == n1 && n0 == n2);
    CHECK_MSG(memcmp(g0, g1, (size_t)n0 * sizeof *g0) == 0, "%s: recompute changes gradients",
              ac->dir);
    CHECK_MSG(memcmp(g0, g2, (size_t)n0 * sizeof *g0) == 0, "%s: 2 threads change gradients",
              ac->dir);
    free(g0), free(g1), free(g2);
    qkv_runtime_free(one);
    qkv_runtime_free(two);
}

static void files_roundtrip(const arch_case *ac, qkv_safetensors *bt) {
    const hyper h = hyper_of(ac);
    qkv_trainer *t = load(ac);
    qkv_train_batch b = batch_of(ac, bt, 2);
    float loss, norm;
    qkv_trainer_zero_grad(t);
    CHECK_OK(qkv_trainer_forward_backward_batch(NULL, t, &b, 1.0f, &loss));
    CHECK_OK(qkv_trainer_step(NULL, t, &h.hp, 1e-3f, h.clip, &norm));
    char dir[] = "/tmp/qkv_train_arch.XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char ckpt[128], exp[128];
    snprintf(ckpt, sizeof ckpt, "%s/ckpt.safetensors", dir);
    snprintf(exp, sizeof exp, "%s/model", dir);
    CHECK_OK(qkv_trainer_save(t, ckpt, "{\"x\": 1}"));
    qkv_trainer *r = NULL;
    char *user = NULL;
    CHECK_OK(qkv_trainer_restore(ckpt, &r, &user));
    CHECK(r && strcmp(qkv_trainer_arch(r), qkv_trainer_arch(t)) == 0);
    CHECK(r && qkv_trainer_steps(r) == 1 && tt_same_weights(t, r));
    CHECK(user && strcmp(user, "{\"x\": 1}") == 0);
    free(user);
    /* the restored trainer continues exactly as the original */
    float l1, l2;
    b = batch_of(ac, bt, 3);
    qkv_trainer_zero_grad(t);
    qkv_trainer_zero_grad(r);
    CHECK_OK(qkv_trainer_forward_backward_batch(NULL, t, &b, 1.0f, &l1));
    CHECK_OK(qkv_trainer_forward_backward_batch(NULL, r, &b, 1.0f, &l2));
    CHECK_OK(qkv_trainer_step(NULL, t, &h.hp, 1e-3f, h.clip, &norm));
    CHECK_OK(qkv_trainer_step(NULL, r, &h.hp, 1e-3f, h.clip, &norm));
    CHECK(l1 == l2 && tt_same_weights(t, r));
    /* the export loads back with the same weights and logits */
    CHECK_OK(qkv_trainer_export_hf(t, exp, -1));
    qkv_trainer *e = NULL;
    CHECK_OK(qkv_trainer_load_hf(exp, &e));
    CHECK(e && tt_same_weights(t, e));
    float le, lt;
    CHECK_OK(qkv_trainer_eval_batch(NULL, e, &b, &le));
    CHECK_OK(qkv_trainer_eval_batch(NULL, t, &b, &lt)); /* t's logits stay for the check below */
    CHECK(le == lt);
    if (!ac->bert) { /* the decoder export runs in the inference engine */
        qkv_lm *lm = NULL;
        CHECK_OK(qkv_lm_load(exp, &lm));
        const float *ref = qkv_trainer_logits(t);
        const int64_t lens[2] = {T, T};
        float *lg = malloc((size_t)B * T * V * sizeof *lg);
        CHECK_OK(qkv_lm_logits(NULL, lm, b.ids, lens, B, lg));
        double err = fix_rel_err(lg, ref, (int64_t)B * T * V);
        CHECK_MSG(err <= 1e-5, "%s: qkv_lm logits of the export vs the trainer's: %.3g", ac->dir,
                  err);
        free(lg);
        qkv_lm_free(lm);
    }
    /* transformers on the export: full-length sequences of type 0 (what model(ids) assumes) */
    qkv_train_batch full = {sizeof full, b.ids, b.targets, NULL, NULL, B, T,
                            NULL,        NULL,  0,         NULL, NULL, 0};
    CHECK_OK(qkv_trainer_eval_batch(NULL, t, &full, &lt));
    char ref_path[160];
    snprintf(ref_path, sizeof ref_path, "%s/ref.safetensors", dir);
    int64_t ids_shape[2] = {B, T}, lg_shape[3] = {B, T, V};
    qkv_st_write_tensor ref[2] = {{"ids", QKV_DTYPE_I32, 2, ids_shape, b.ids},
                                  {"logits", QKV_DTYPE_F32, 3, lg_shape, qkv_trainer_logits(t)}};
    CHECK_OK(qkv_safetensors_write(ref_path, ref, 2, NULL, NULL, 0));
    char args[400];
    snprintf(args, sizeof args, "--ids %s --logits %s", ref_path, ref_path);
    tt_hf_check(dir, exp, args, ac->dir);
    test_rm_rf(dir);
    qkv_trainer_free(t);
    qkv_trainer_free(r);
    qkv_trainer_free(e);
}

/* Configs training refuses, with the message of the right parser. */
static void bad_configs(void) {
    static const struct {
        const char *json, *status_word;
        qkv_status status;
    } cases[] = {
        {"{\"model_type\": \"bert\", \"vocab_size\": 10}", "hidden_size", QKV_ERR_FORMAT},
        {"{\"model_type\": \"t5\"}", "t5", QKV_ERR_UNSUPPORTED},
        {"{\"model_type\": \"gpt2\", \"vocab_size\": 10, \"n_embd\": 8, \"n_layer\": 1, "
         "\"n_head\": 2, \"tie_word_embeddings\": false}",
         "tie_word_embeddings", QKV_ERR_UNSUPPORTED},
    };
    char dir[] = "/tmp/qkv_train_cfg.XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[128];
    snprintf(path, sizeof path, "%s/config.json", dir);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        FILE *f = fopen(path, "w");
        fputs(cases[i].json, f);
        fclose(f);
        qkv_trainer *t = NULL;
        CHECK_STATUS(qkv_trainer_new_hf_config(dir, 1, &t), cases[i].status);
        CHECK_MSG(t == NULL && strstr(qkv_last_error(), cases[i].status_word) != NULL,
                  "config %zu: message \"%s\" does not name %s", i, qkv_last_error(),
                  cases[i].status_word);
    }
    remove(path);
    rmdir(dir);
}

/* A frozen parameter (qkv_trainer_set_trainable) keeps its value and is left out of the
 * gradient norm; the others train; a checkpoint remembers which are frozen. */
static void frozen_param(const arch_case *ac, qkv_safetensors *bt) {
    const hyper h = hyper_of(ac);
    qkv_trainer *t = load(ac);
    const size_t fz = 1, other = 2;
    CHECK_OK(qkv_trainer_set_trainable(t, fz, 0));
    CHECK_STATUS(qkv_trainer_set_trainable(t, qkv_trainer_param_count(t), 0), QKV_ERR_INVALID_ARG);
    qkv_param_info p = {.struct_size = sizeof p}, o = {.struct_size = sizeof o};
    CHECK_OK(qkv_trainer_param(t, fz, &p));
    CHECK_OK(qkv_trainer_param(t, other, &o));
    CHECK(p.trainable == 0 && o.trainable == 1);
    float *before = malloc((size_t)p.numel * sizeof *before), o0 = o.data[0];
    memcpy(before, p.data, (size_t)p.numel * sizeof *before);
    for (int s = 0; s < 2; s++) {
        qkv_train_batch b = batch_of(ac, bt, s);
        float loss, norm;
        qkv_trainer_zero_grad(t);
        CHECK_OK(qkv_trainer_forward_backward_batch(NULL, t, &b, 1.0f, &loss));
        double ss = 0; /* the norm over the trainable gradients only */
        for (size_t i = 0; i < qkv_trainer_param_count(t); i++) {
            qkv_param_info q = {.struct_size = sizeof q};
            CHECK_OK(qkv_trainer_param(t, i, &q));
            for (int64_t j = 0; q.trainable && j < q.numel; j++)
                ss += (double)q.grad[j] * (double)q.grad[j];
        }
        CHECK_OK(qkv_trainer_step(NULL, t, &h.hp, 1e-2f, 0.0f, &norm));
        CHECK_NEAR(norm, sqrt(ss), 0, 1e-5);
    }
    CHECK_MSG(memcmp(before, p.data, (size_t)p.numel * sizeof *before) == 0,
              "%s: the frozen %s changed", ac->dir, p.name);
    CHECK_MSG(o.data[0] != o0, "%s: %s did not train", ac->dir, o.name);
    char path[] = "/tmp/qkv_frozen_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    CHECK_OK(qkv_trainer_save(t, path, NULL));
    qkv_trainer *r = NULL;
    CHECK_OK(qkv_trainer_restore(path, &r, NULL));
    qkv_param_info q = {.struct_size = sizeof q};
    CHECK(r && qkv_trainer_param(r, fz, &q) == QKV_OK && q.trainable == 0);
    CHECK(r && qkv_trainer_param(r, other, &q) == QKV_OK && q.trainable == 1);
    remove(path);
    free(before);
    qkv_trainer_free(t);
    qkv_trainer_free(r);
}

int main(void) {
    test_use_arch_from_env();
    bad_configs();
    const arch_case cases[] = {
        {"gpt2", ".", "gpt2_tiny", "grads.safetensors", 0, 0}, /* its 10 steps: test_train */
        {"llama", "llama_tiny", "model", "grads.safetensors", 0, 1},
        {"llama", "llama_tiny", "model_tied", "grads_tied.safetensors", 0, 0},
        {"bert", "bert_tiny", "model", "grads.safetensors", 1, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const arch_case *ac = &cases[i];
        qkv_safetensors *bt = open_fix(ac->dir, "batches.safetensors");
        gradients_match_torch(ac, bt);
        if (ac->ten_steps) ten_steps_match_torch(ac, bt);
        policies_and_threads(ac, bt);
        files_roundtrip(ac, bt);
        frozen_param(ac, bt);
        qkv_safetensors_close(bt);
    }
    return test_finish("train_arch");
}
