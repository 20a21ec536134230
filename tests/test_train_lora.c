/* test_train_lora.c — LoRA training and use (qkv_trainer_add_lora, qkv_trainer_save_lora,
 * qkv_model_load_lora, qkv_lm_load_lora, qkv_lora_merge) against Hugging Face PEFT.
 *
 * Fixtures: tests/fixtures/train/lora (tools/gen_lora_train_golden.py: PEFT LoraConfig SEQ_CLS,
 * r 4, alpha 8, targets query and value, on the tiny BertForSequenceClassification of
 * tests/fixtures/train/bert_cls). Checked, on every ISA:
 *   - gradients of every lora_A / lora_B and of the classifier vs PEFT (1e-4 of the tensor's
 *     scale), loss 1e-5; the frozen base gets no gradient at all (exactly 0 after zero_grad);
 *   - 5 AdamW steps: losses and final adapters / classifier vs torch 1e-4; the frozen base
 *     weights bit-identical afterwards;
 *   - central differences of the loss for elements of A and B, on BERT, GPT-2 (fused c_attn,
 *     Conv1D), Llama and the BERT MLM head, every target of each;
 *   - adapter dropout: a pure function of the batch seed (same seed same gradients, another
 *     seed others);
 *   - checkpoints keep adapters, config and frozen flags (a restored trainer steps to the same
 *     bits);
 *   - save_lora -> qkv_model_load_lora: classify logits equal the trainer's (1e-5); for GPT-2
 *     and Llama save_lora -> qkv_lm_load_lora: qkv_lm_logits equal the trainer's; export_hf
 *     (merged) loads back to the trainer's loss;
 *   - qkv_lora_merge: the merged directory's logits equal the unmerged adapter's (1e-5); a
 *     non-empty output is refused;
 *   - a PEFT-written adapter directory gives PEFT's logits (1e-5); tools/check_peft_adapter.py
 *     (PeftModel.from_pretrained on qkv's adapter: same logits; skipped without peft);
 *   - bad adapter directories are refused (missing file, wrong r, unknown module, FIFO) and
 *     leave the model as it was; bad configs and targets are refused naming them. */
#include "qkv.h"
#include "test.h"
#include "test_arch.h"
#include "train_testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FIX QKV_SOURCE_DIR "/tests/fixtures/train/"
#define BASE FIX "bert_cls/model"

enum { B = 4, T = 16 };

static qkv_safetensors *bt;

static qkv_train_batch batch_of(int s) {
    qkv_train_batch b = {sizeof b, NULL, NULL, NULL, NULL, B, T, NULL, NULL, 0, NULL, NULL, 0};
    b.ids = (const int32_t *)fix_need(bt, "ids") + s * B * T;
    b.types = (const int32_t *)fix_need(bt, "token_type_ids") + s * B * T;
    b.kv_lens = (const int32_t *)fix_need(bt, "kv_lens") + s * B;
    b.labels = (const int32_t *)fix_need(bt, "labels") + s * B;
    return b;
}

static const char *const qv[] = {"query", "value"};

static qkv_trainer *peft_trainer(void) {
    qkv_trainer *t = NULL;
    CHECK_OK(qkv_trainer_load_hf_classifier(BASE, NULL, &t));
    if (!t) exit(1);
    qkv_lora_config c;
    qkv_lora_config_init(&c);
    c.r = 4, c.alpha = 8, c.targets = qv, c.n_targets = 2;
    CHECK_OK(qkv_trainer_add_lora(t, &c));
    qkv_safetensors *init = fix_open(FIX "lora/init.safetensors");
    size_t n = 0;
    for (size_t i = 0; i < qkv_trainer_param_count(t); i++) {
        qkv_param_info p = {.struct_size = sizeof p};
        CHECK_OK(qkv_trainer_param(t, i, &p));
        if (!strstr(p.name, ".lora_")) continue;
        memcpy(p.data, fix_need(init, p.name), (size_t)p.numel * sizeof(float));
        n++;
    }
    CHECK_MSG(n == 8, "%zu adapter tensors (2 layers x query, value x A, B)", n);
    qkv_safetensors_close(init);
    return t;
}

static qkv_param_info param(qkv_trainer *t, size_t i) {
    qkv_param_info p = {.struct_size = sizeof p};
    CHECK_OK(qkv_trainer_param(t, i, &p));
    return p;
}

/* One step's gradients vs PEFT; the frozen parameters' gradients never computed. */
static void gradients_match_peft(void) {
    qkv_trainer *t = peft_trainer();
    qkv_safetensors *gs = fix_open(FIX "lora/grads.safetensors");
    qkv_train_batch b = batch_of(0);
    float loss;
    CHECK_OK(qkv_trainer_eval_batch(NULL, t, &b, &loss));
    double e = fix_rel_err(qkv_trainer_logits(t), fix_need(gs, "logits"), B * 3);
    CHECK_MSG(e <= 1e-5, "logits rel err %.3g", e);
    qkv_trainer_zero_grad(t);
    CHECK_OK(qkv_trainer_forward_backward_batch(NULL, t, &b, 1.0f, &loss));
    CHECK_NEAR(loss, *(const float *)fix_need(gs, "loss"), 1e-5, 0);
    size_t trained = 0, frozen_nonzero = 0;
    double worst = 0;
    for (size_t i = 0; i < qkv_trainer_param_count(t); i++) {
        qkv_param_info p = param(t, i);
        if (!p.trainable) {
            for (int64_t j = 0; j < p.numel; j++) frozen_nonzero += p.grad[j] != 0.0f;
            continue;
        }
        trained++;
        double r = fix_rel_err(p.grad, fix_need(gs, p.name), p.numel);
        CHECK_MSG(r <= 1e-4, "gradient of %s: rel err %.3g", p.name, r);
        worst = fmax(worst, r);
    }
    CHECK_MSG(trained == 10, "%zu trainable tensors (8 adapters + classifier)", trained);
    CHECK_MSG(frozen_nonzero == 0, "%zu gradient values of frozen parameters computed",
              frozen_nonzero);
    printf("lora vs PEFT: loss %.7f, %zu trainable gradients, worst rel err %.3g\n", loss, trained,
           worst);
    qkv_safetensors_close(gs);
    qkv_trainer_free(t);
}

static qkv_adamw hp(void) {
    qkv_adamw h;
    qkv_adamw_defaults(&h);
    h.weight_decay = 0.01f;
    return h;
}

static void steps_match_peft(void) {
    qkv_trainer *t = peft_trainer();
    qkv_safetensors *ss = fix_open(FIX "lora/steps.safetensors");
    const float *losses = fix_need(ss, "losses");
    /* a frozen matrix, to compare afterwards */
    size_t qi = 0;
    while (strcmp(param(t, qi).name, "bert.encoder.layer.0.attention.self.query.weight") != 0) qi++;
    qkv_param_info q = param(t, qi);
    float *before = malloc((size_t)q.numel * sizeof *before);
    memcpy(before, q.data, (size_t)q.numel * sizeof *before);
    const qkv_adamw h = hp();
    for (int s = 0; s < 5; s++) {
        qkv_train_batch b = batch_of(s);
        float loss, norm;
        qkv_trainer_zero_grad(t);
        CHECK_OK(qkv_trainer_forward_backward_batch(NULL, t, &b, 1.0f, &loss));
        CHECK_OK(qkv_trainer_step(NULL, t, &h, 1e-2f, 0.0f, &norm));
        CHECK_MSG(fabs(loss - losses[s]) <= 1e-4, "step %d: loss %.7f, PEFT %.7f", s, loss,
                  losses[s]);
    }
    double worst = 0;
    for (size_t i = 0; i < qkv_trainer_param_count(t); i++) {
        qkv_param_info p = param(t, i);
        if (!p.trainable) continue;
        char name[160];
        snprintf(name, sizeof name, "final.%s", p.name);
        double r = fix_rel_err(p.data, fix_need(ss, name), p.numel);
        CHECK_MSG(r <= 1e-4, "%s after 5 steps: rel err %.3g", p.name, r);
        worst = fmax(worst, r);
    }
    CHECK_MSG(memcmp(before, q.data, (size_t)q.numel * sizeof *before) == 0,
              "the frozen %s changed", q.name);
    printf("5 AdamW steps vs PEFT: worst final rel err %.3g\n", worst);
    free(before);
    qkv_safetensors_close(ss);
    qkv_trainer_free(t);
}

/* ---------------------------------------------------------------- every architecture */

typedef struct {
    const char *dir;
    int bert;
    const char *const *targets;
    size_t n_targets;
} arch_case;

static const char *const bert_all[] = {"query", "key", "value", "dense"};
static const char *const gpt2_all[] = {"c_attn", "c_proj", "c_fc"};
static const char *const llama_all[] = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                        "gate_proj", "up_proj", "down_proj"};

static const arch_case arch_cases[] = {
    {"gpt2_tiny", 0, gpt2_all, 3},
    {"llama_tiny/model", 0, llama_all, 7},
    {"bert_tiny/model", 1, bert_all, 4},
};

enum { AB = 2, AT = 8 };
static int32_t a_ids[AB * AT], a_tgt[AB * AT];

static qkv_train_batch arch_batch(void) {
    for (int i = 0; i < AB * AT; i++)
        a_ids[i] = (int32_t)((i * 37 + 11) % 97), a_tgt[i] = (int32_t)((i * 53 + 5) % 97);
    qkv_train_batch b = {sizeof b, a_ids, a_tgt, NULL, NULL, AB, AT, NULL, NULL, 0, NULL, NULL, 0};
    return b;
}

/* Random nonzero B (PEFT starts it at 0, which hides A's gradient). */
static void randomize_b(qkv_trainer *t) {
    uint32_t x = 12345;
    for (size_t i = 0; i < qkv_trainer_param_count(t); i++) {
        qkv_param_info p = param(t, i);
        if (!strstr(p.name, ".lora_B.")) continue;
        for (int64_t j = 0; j < p.numel; j++) {
            x = x * 1664525u + 1013904223u;
            p.data[j] = 0.2f * ((float)(x >> 8) / 16777216.0f - 0.5f);
        }
    }
}

static float eval_loss(qkv_trainer *t, const qkv_train_batch *b) {
    float loss = 0;
    CHECK_OK(qkv_trainer_eval_batch(NULL, t, b, &loss));
    return loss;
}

static void arch_fd_and_files(const arch_case *ac) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s%s", FIX, ac->dir);
    qkv_trainer *t = NULL;
    CHECK_OK(qkv_trainer_load_hf(dir, &t));
    if (!t) return;
    const size_t nb = qkv_trainer_param_count(t);
    qkv_lora_config c;
    qkv_lora_config_init(&c);
    c.r = 3, c.alpha = 5, c.use_rslora = 1, c.targets = ac->targets, c.n_targets = ac->n_targets;
    c.seed = 7;
    CHECK_OK(qkv_trainer_add_lora(t, &c));
    CHECK(qkv_trainer_has_lora(t));
    randomize_b(t);
    qkv_train_batch b = arch_batch();
    qkv_trainer_zero_grad(t);
    float loss;
    CHECK_OK(qkv_trainer_forward_backward_batch(NULL, t, &b, 1.0f, &loss));
    /* central differences on a few elements of every adapter tensor */
    double worst = 0;
    size_t n_ad = 0;
    for (size_t i = nb; i < qkv_trainer_param_count(t); i++) {
        qkv_param_info p = param(t, i);
        CHECK_MSG(p.trainable, "%s is not trainable", p.name);
        n_ad++;
        double gmax = 0; /* errors relative to the tensor's largest gradient */
        int64_t jmax = 0;
        for (int64_t j = 0; j < p.numel; j++)
            if (fabs(p.grad[j]) > gmax) gmax = fabs(p.grad[j]), jmax = j;
        for (int k = 0; k < 2; k++) {
            const int64_t j = k ? (7919 + (int64_t)i * 31) % p.numel : jmax;
            const float w0 = p.data[j], h = 1e-2f;
            p.data[j] = w0 + h;
            const double lp = eval_loss(t, &b);
            p.data[j] = w0 - h;
            const double lm = eval_loss(t, &b);
            p.data[j] = w0;
            const double fd = (lp - lm) / (2.0 * h), g = p.grad[j];
            /* float32 losses: FD carries ~ulp(loss) / 2h = 3e-5 of rounding */
            const double err = fabs(fd - g) / (gmax + 1e-4);
            CHECK_MSG(fabs(fd - g) <= 2e-2 * gmax + 6e-5, "%s: %s[%lld]: FD %.6g, analytic %.6g",
                      ac->dir, p.name, (long long)j, fd, g);
            worst = fmax(worst, err);
        }
    }
    for (size_t i = 0; i < nb; i++)
        CHECK_MSG(!param(t, i).trainable, "%s: base %s is trainable", ac->dir, param(t, i).name);
    printf("%s: %zu adapter tensors, FD worst rel err %.3g\n", ac->dir, n_ad, worst);

    /* export (merged) gives the adapted model's loss without adapters */
    char tmp[] = "/tmp/qkv_lora_arch_XXXXXX";
    CHECK(mkdtemp(tmp) != NULL);
    char ex[600], ad[600];
    snprintf(ex, sizeof ex, "%s/export", tmp);
    snprintf(ad, sizeof ad, "%s/adapter", tmp);
    const float l0 = eval_loss(t, &b);
    CHECK_OK(qkv_trainer_export_hf(t, ex, -1));
    qkv_trainer *m = NULL;
    CHECK_OK(qkv_trainer_load_hf(ex, &m));
    if (m) CHECK_NEAR(eval_loss(m, &b), l0, 1e-5, 0);
    qkv_trainer_free(m);
    CHECK_OK(qkv_trainer_save_lora(t, ad));
    if (!ac->bert) { /* the adapter at inference, unmerged */
        qkv_lm *lm = NULL;
        CHECK_OK(qkv_lm_load(dir, &lm));
        CHECK_OK(qkv_lm_load_lora(lm, ad));
        CHECK_STATUS(qkv_lm_load_lora(lm, ad), QKV_ERR_INVALID_ARG);
        const int64_t V = qkv_lm_vocab_size(lm), lens[AB] = {AT, AT};
        float *lg = malloc((size_t)(AB * AT * V) * sizeof *lg);
        CHECK_OK(qkv_lm_logits(NULL, lm, a_ids, lens, AB, lg));
        double e = fix_rel_err(lg, qkv_trainer_logits(t), AB * AT * V);
        CHECK_MSG(e <= 1e-5, "%s: qkv_lm with the adapter vs the trainer: rel err %.3g", ac->dir,
                  e);
        printf("%s: qkv_lm_load_lora logits vs trainer rel err %.3g\n", ac->dir, e);
        free(lg);
        qkv_lm_free(lm);
    }
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    CHECK(system(cmd) == 0);
    qkv_trainer_free(t);
}

/* Adapter dropout: a pure function of the batch's seed. */
static void dropout_seeded(void) {
    qkv_trainer *t = NULL;
    CHECK_OK(qkv_trainer_load_hf(FIX "bert_tiny/model", &t));
    qkv_lora_config c;
    qkv_lora_config_init(&c);
    c.dropout = 0.3f;
    CHECK_OK(qkv_trainer_add_lora(t, &c));
    randomize_b(t);
    qkv_train_batch b = arch_batch();
    int64_t n;
    float l1, l2, l3;
    b.dropout_seed = 5;
    qkv_trainer_zero_grad(t);
    CHECK_OK(qkv_trainer_forward_backward_batch(NULL, t, &b, 1.0f, &l1));
    float *g1 = tt_all_grads(t, &n);
    qkv_trainer_zero_grad(t);
    CHECK_OK(qkv_trainer_forward_backward_batch(NULL, t, &b, 1.0f, &l2));
    float *g2 = tt_all_grads(t, &n);
    b.dropout_seed = 6;
    qkv_trainer_zero_grad(t);
    CHECK_OK(qkv_trainer_forward_backward_batch(NULL, t, &b, 1.0f, &l3));
    float *g3 = tt_all_grads(t, &n);
    CHECK(l1 == l2 && memcmp(g1, g2, (size_t)n * sizeof *g1) == 0);
    CHECK(memcmp(g1, g3, (size_t)n * sizeof *g1) != 0);
    CHECK_NEAR(eval_loss(t, &b), eval_loss(t, &b), 0, 0); /* eval: no dropout, deterministic */
    free(g1), free(g2), free(g3);
    qkv_trainer_free(t);
}

/* ---------------------------------------------------------------- files */

static void pack(int s, int32_t *ids, int32_t *types, int64_t *lens) {
    qkv_train_batch b = batch_of(s);
    int64_t o = 0;
    for (int i = 0; i < B; i++) {
        lens[i] = b.kv_lens[i];
        memcpy(ids + o, b.ids + i * T, (size_t)lens[i] * sizeof *ids);
        memcpy(types + o, b.types + i * T, (size_t)lens[i] * sizeof *types);
        o += lens[i];
    }
}

static void classify(qkv_model *m, int s, float *logits) {
    int32_t ids[B * T], types[B * T];
    int64_t lens[B];
    pack(s, ids, types, lens);
    CHECK_OK(qkv_classify_tokens(NULL, m, ids, types, lens, B, logits));
}

static void write_logits(const char *path, const float *x) {
    const int64_t shape[2] = {B, 3};
    qkv_st_write_tensor w = {"logits", QKV_DTYPE_F32, 2, shape, x};
    CHECK_OK(qkv_safetensors_write(path, &w, 1, NULL, NULL, 0));
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) fputs(text, f), fclose(f);
}

static void files(void) {
    char tmp[] = "/tmp/qkv_lora_XXXXXX";
    CHECK(mkdtemp(tmp) != NULL);
    char ad[600], ck[600], mg[600], lp[600], cmd[2400];
    snprintf(ad, sizeof ad, "%s/adapter", tmp);
    snprintf(ck, sizeof ck, "%s/ckpt.safetensors", tmp);
    snprintf(mg, sizeof mg, "%s/merged", tmp);
    snprintf(lp, sizeof lp, "%s/logits.safetensors", tmp);
    qkv_trainer *t = peft_trainer();
    const qkv_adamw h = hp();
    for (int s = 0; s < 2; s++) { /* train a little, so the classifier moved too */
        qkv_train_batch b = batch_of(s);
        float loss, norm;
        qkv_trainer_zero_grad(t);
        CHECK_OK(qkv_trainer_forward_backward_batch(NULL, t, &b, 1.0f, &loss));
        CHECK_OK(qkv_trainer_step(NULL, t, &h, 1e-2f, 0.0f, &norm));
    }
    /* checkpoint: adapters, config and frozen flags come back; the next step is identical */
    CHECK_OK(qkv_trainer_save(t, ck, NULL));
    qkv_trainer *r = NULL;
    CHECK_OK(qkv_trainer_restore(ck, &r, NULL));
    CHECK(r && qkv_trainer_has_lora(r) && tt_same_weights(t, r));
    for (size_t i = 0; r && i < qkv_trainer_param_count(t); i++)
        CHECK(param(t, i).trainable == param(r, i).trainable);
    qkv_train_batch b2 = batch_of(2);
    for (int k = 0; r && k < 2; k++) {
        qkv_trainer *x = k ? r : t;
        float loss, norm;
        qkv_trainer_zero_grad(x);
        CHECK_OK(qkv_trainer_forward_backward_batch(NULL, x, &b2, 1.0f, &loss));
        CHECK_OK(qkv_trainer_step(NULL, x, &h, 1e-2f, 0.0f, &norm));
    }
    CHECK(r && tt_same_weights(t, r));
    qkv_trainer_free(r);
    /* save_lora -> qkv_model_load_lora: the trainer's logits */
    qkv_train_batch b = batch_of(3);
    float loss, want[B * 3], got[B * 3], merged[B * 3];
    CHECK_OK(qkv_trainer_eval_batch(NULL, t, &b, &loss));
    memcpy(want, qkv_trainer_logits(t), sizeof want);
    CHECK_OK(qkv_trainer_save_lora(t, ad));
    qkv_model *m = NULL;
    CHECK_OK(qkv_model_load(BASE, &m));
    float base[B * 3];
    classify(m, 3, base);
    CHECK_OK(qkv_model_load_lora(m, ad));
    classify(m, 3, got);
    double e = fix_rel_err(got, want, B * 3);
    CHECK_MSG(e <= 1e-5, "qkv_model_load_lora logits vs trainer: rel err %.3g", e);
    CHECK(fix_rel_err(base, want, B * 3) > 1e-3); /* the adapter changed something */
    printf("save_lora -> qkv_model_load_lora: logits rel err %.3g\n", e);
    /* merged directory == unmerged adapter */
    CHECK_OK(qkv_lora_merge(BASE, ad, mg));
    CHECK_STATUS(qkv_lora_merge(BASE, ad, mg), QKV_ERR_INVALID_ARG); /* not empty */
    qkv_model *mm = NULL;
    CHECK_OK(qkv_model_load(mg, &mm));
    if (mm) classify(mm, 3, merged);
    e = fix_rel_err(merged, got, B * 3);
    CHECK_MSG(e <= 1e-5, "merged vs unmerged logits: rel err %.3g", e);
    printf("qkv_lora_merge: merged vs unmerged logits rel err %.3g\n", e);
    qkv_model_free(mm);
    /* PEFT loads qkv's adapter and computes the same logits */
    write_logits(lp, got);
    snprintf(cmd, sizeof cmd,
             "%s/tests/run_python_check.sh torch,transformers,peft %s/tools/check_peft_adapter.py "
             "%s %s --batches %s --index 3 --logits %s > %s/py.out 2>&1",
             QKV_SOURCE_DIR, QKV_SOURCE_DIR, BASE, ad, FIX "bert_cls/batches.safetensors", lp, tmp);
    fflush(stdout);
    int rc = system(cmd);
    rc = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
    snprintf(cmd, sizeof cmd, "cat %s/py.out", tmp);
    if (system(cmd) != 0) printf("(no output)\n");
    CHECK_MSG(rc == 0 || rc == 77, "check_peft_adapter.py: exit %d", rc);
    qkv_model_free(m);
    /* PEFT's own adapter directory gives PEFT's logits */
    m = NULL;
    CHECK_OK(qkv_model_load(BASE, &m));
    CHECK_OK(qkv_model_load_lora(m, FIX "lora/peft_adapter"));
    qkv_safetensors *pl = fix_open(FIX "lora/peft_logits.safetensors");
    classify(m, 5, got);
    e = fix_rel_err(got, fix_need(pl, "logits"), B * 3);
    CHECK_MSG(e <= 1e-5, "PEFT's adapter: logits rel err %.3g", e);
    printf("PEFT-written adapter: logits vs PEFT rel err %.3g\n", e);
    qkv_safetensors_close(pl);
    qkv_model_free(m);
    qkv_trainer_free(t);
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    CHECK(system(cmd) == 0);
}

/* ---------------------------------------------------------------- refusals */

static void copy(const char *from, const char *to) { test_copy_file(from, to); }

static void bad_adapters(void) {
    char tmp[] = "/tmp/qkv_lora_bad_XXXXXX";
    CHECK(mkdtemp(tmp) != NULL);
    char cfg[600], st[600], cmd[700];
    snprintf(cfg, sizeof cfg, "%s/adapter_config.json", tmp);
    snprintf(st, sizeof st, "%s/adapter_model.safetensors", tmp);
    qkv_model *m = NULL;
    CHECK_OK(qkv_model_load(BASE, &m));
    float base[B * 3], after[B * 3];
    classify(m, 0, base);
    /* missing files */
    CHECK_STATUS(qkv_model_load_lora(m, tmp), QKV_ERR_IO);
    copy(FIX "lora/peft_adapter/adapter_config.json", cfg);
    CHECK_STATUS(qkv_model_load_lora(m, tmp), QKV_ERR_IO);
    CHECK(strstr(qkv_last_error(), "adapter_model.safetensors") != NULL);
    /* a FIFO instead of the weights */
    CHECK(mkfifo(st, 0600) == 0);
    CHECK_STATUS(qkv_model_load_lora(m, tmp), QKV_ERR_IO);
    CHECK(strstr(qkv_last_error(), "not a regular file") != NULL);
    unlink(st);
    copy(FIX "lora/peft_adapter/adapter_model.safetensors", st);
    /* wrong r: A and B do not have the shape the config says */
    write_text(cfg, "{\"peft_type\": \"LORA\", \"r\": 5, \"lora_alpha\": 8}");
    CHECK_STATUS(qkv_model_load_lora(m, tmp), QKV_ERR_FORMAT);
    CHECK(strstr(qkv_last_error(), "lora_A") != NULL);
    write_text(cfg, "{\"peft_type\": \"LORA\", \"r\": 100000, \"lora_alpha\": 8}");
    CHECK_STATUS(qkv_model_load_lora(m, tmp), QKV_ERR_FORMAT);
    write_text(cfg, "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"use_dora\": true}");
    CHECK_STATUS(qkv_model_load_lora(m, tmp), QKV_ERR_UNSUPPORTED);
    write_text(cfg, "{\"peft_type\": \"IA3\", \"r\": 4, \"lora_alpha\": 8}");
    CHECK_STATUS(qkv_model_load_lora(m, tmp), QKV_ERR_FORMAT);
    /* an unknown module: layer 9 of a 2-layer model */
    write_text(cfg, "{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 8}");
    const int64_t sa[2] = {2, 32}, sb[2] = {32, 2};
    float z[64] = {0};
    qkv_st_write_tensor w[2] = {
        {"base_model.model.bert.encoder.layer.9.attention.self.query.lora_A.weight", QKV_DTYPE_F32,
         2, sa, z},
        {"base_model.model.bert.encoder.layer.9.attention.self.query.lora_B.weight", QKV_DTYPE_F32,
         2, sb, z}};
    CHECK_OK(qkv_safetensors_write(st, w, 2, NULL, NULL, 0));
    CHECK_STATUS(qkv_model_load_lora(m, tmp), QKV_ERR_FORMAT);
    CHECK(strstr(qkv_last_error(), "layer.9") != NULL);
    /* A without B */
    w[0].name = "base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight";
    CHECK_OK(qkv_safetensors_write(st, w, 1, NULL, NULL, 0));
    CHECK_STATUS(qkv_model_load_lora(m, tmp), QKV_ERR_FORMAT);
    /* the model is as it was */
    classify(m, 0, after);
    CHECK(memcmp(base, after, sizeof base) == 0);
    qkv_model_free(m);
    /* a decoder adapter on an encoder and back */
    qkv_lm *lm = NULL;
    CHECK_OK(qkv_lm_load(FIX "gpt2_tiny", &lm));
    CHECK_STATUS(qkv_lm_load_lora(lm, FIX "lora/peft_adapter"), QKV_ERR_FORMAT);
    qkv_lm_free(lm);
    /* bad configs */
    qkv_trainer *t = NULL;
    CHECK_OK(qkv_trainer_load_hf_classifier(BASE, NULL, &t));
    qkv_lora_config c;
    qkv_lora_config_init(&c);
    const char *bad[] = {"c_attn"};
    c.targets = bad, c.n_targets = 1;
    CHECK_STATUS(qkv_trainer_add_lora(t, &c), QKV_ERR_INVALID_ARG);
    CHECK(strstr(qkv_last_error(), "c_attn") != NULL);
    c.targets = NULL, c.n_targets = 0;
    const char *nosave[] = {"nonexistent"};
    c.modules_to_save = nosave, c.n_modules_to_save = 1;
    CHECK_STATUS(qkv_trainer_add_lora(t, &c), QKV_ERR_INVALID_ARG);
    CHECK(strstr(qkv_last_error(), "nonexistent") != NULL);
    qkv_lora_config_init(&c);
    c.r = 0;
    CHECK_STATUS(qkv_trainer_add_lora(t, &c), QKV_ERR_INVALID_ARG);
    c.r = 8, c.dropout = 1.0f;
    CHECK_STATUS(qkv_trainer_add_lora(t, &c), QKV_ERR_INVALID_ARG);
    CHECK(!qkv_trainer_has_lora(t));
    CHECK_STATUS(qkv_trainer_save_lora(t, tmp), QKV_ERR_INVALID_ARG);
    qkv_lora_config_init(&c);
    CHECK_OK(qkv_trainer_add_lora(t, &c));
    CHECK_STATUS(qkv_trainer_add_lora(t, &c), QKV_ERR_INVALID_ARG);
    qkv_trainer_free(t);
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    CHECK(system(cmd) == 0);
}

int main(void) {
    test_use_arch_from_env();
    bt = fix_open(FIX "bert_cls/batches.safetensors");
    gradients_match_peft();
    steps_match_peft();
    for (size_t i = 0; i < sizeof arch_cases / sizeof *arch_cases; i++)
        arch_fd_and_files(&arch_cases[i]);
    dropout_seeded();
    files();
    bad_adapters();
    qkv_safetensors_close(bt);
    return test_finish("train_lora");
}
