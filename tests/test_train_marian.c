/* test_train_marian.c — training a MarianMT encoder-decoder (teacher forcing) against Hugging
 * Face transformers in PyTorch.
 *
 * Fixtures (tests/fixtures/train/marian_tiny, from tools/gen_marian_train_golden.py): a tiny
 * random MarianMTModel (2 + 2 layers, 4 / 2 heads, swish, scaled embeddings, shared and tied
 * embeddings; model_sep: separate encoder and decoder tables of 61 and 53 rows), batches of 3
 * with padding on both sides (source lengths 9, 6, 4 of 9; labels 7, 5, 3 of 7 then -100).
 * Checked here:
 *   - logits 1e-5, loss 1e-6 and every gradient 1e-4 relative to the tensor's scale, without
 *     and with label smoothing 0.1, and on model_sep;
 *   - 10 AdamW steps (label smoothing 0.1): each loss and every final weight within 1e-4;
 *   - decoder inputs given explicitly (the labels shifted right) = the shift done by qkv;
 *   - dropout: the same seed gives bit-identical losses, a different one another loss;
 *   - a checkpoint restores architecture, weights, moments and label smoothing (one more step
 *     on both gives bit-identical weights); LoRA is refused (UNSUPPORTED);
 *   - the Hugging Face export loads back with bit-identical weights, and transformers'
 *     MarianMTModel computes the trainer's logits from it (tools/check_hf_export.py; skipped
 *     with a message without a Python with torch and transformers);
 *   - bad batches are refused with INVALID_ARG, recomputation with UNSUPPORTED. */
#include "qkv.h"
#include "test.h"
#include "train_testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FIX QKV_SOURCE_DIR "/tests/fixtures/train/marian_tiny/"

enum { NB = 10, B = 3, S = 9, T = 7, V = 61, VD = 53, PAD = 52 };

static qkv_safetensors *bt;

static qkv_train_batch batch_of(int s) {
    qkv_train_batch b = {.struct_size = sizeof b, .B = B, .T = T, .S = S};
    b.src_ids = (const int32_t *)fix_need(bt, "src_ids") + s * B * S;
    b.src_lens = (const int32_t *)fix_need(bt, "src_lens") + s * B;
    b.targets = (const int32_t *)fix_need(bt, "labels") + s * B * T;
    return b;
}

static qkv_trainer *load(const char *model) {
    char path[512];
    snprintf(path, sizeof path, FIX "%s", model);
    qkv_trainer *t = NULL;
    CHECK_OK(qkv_trainer_load_hf(path, &t));
    if (!t) exit(1);
    return t;
}

static void gradients_match(const char *model, const char *grads, int64_t v, float smoothing) {
    char path[512];
    snprintf(path, sizeof path, FIX "%s", grads);
    qkv_safetensors *gs = fix_open(path);
    qkv_trainer *t = load(model);
    CHECK(strcmp(qkv_trainer_arch(t), "marian") == 0);
    CHECK_OK(qkv_trainer_set_label_smoothing(t, smoothing));
    qkv_train_batch b = batch_of(0);
    float loss = 0, eval_loss = 0;
    CHECK_OK(qkv_trainer_eval_batch(NULL, t, &b, &eval_loss));
    const float *logits = qkv_trainer_logits(t);
    CHECK(logits != NULL);
    if (logits) {
        double e = fix_rel_err(logits, fix_need(gs, "logits"), B * T * v);
        CHECK_MSG(e <= 1e-5, "%s logits rel err %.3g", grads, e);
    }
    qkv_trainer_zero_grad(t);
    CHECK_OK(qkv_trainer_forward_backward_batch(NULL, t, &b, 1.0f, &loss));
    const float ref = *(const float *)fix_need(gs, "loss");
    CHECK_NEAR(loss, ref, 0, 1e-6);
    CHECK(loss == eval_loss);
    double worst;
    const char *worst_name;
    size_t n = tt_check_grads(t, gs, grads, &worst, &worst_name);
    /* every gradient in the fixture was compared (plus loss and logits) */
    CHECK_EQ_INT((int64_t)n + 2, (int64_t)qkv_safetensors_count(gs));
    printf("%s: loss %.7f (torch %.7f); %zu gradients, worst rel err %.3g (%s)\n", grads, loss, ref,
           n, worst, worst_name);
    qkv_trainer_free(t);
    qkv_safetensors_close(gs);
}

static void ten_steps_match(void) {
    qkv_safetensors *ss = fix_open(FIX "steps.safetensors");
    const float *losses = fix_need(ss, "losses");
    qkv_trainer *t = load("model"), *init = load("model");
    CHECK_OK(qkv_trainer_set_label_smoothing(t, 0.1f));
    qkv_adamw hp;
    qkv_adamw_defaults(&hp);
    hp.beta1 = 0.9f, hp.beta2 = 0.999f, hp.eps = 1e-8f, hp.weight_decay = 0.01f;
    double worst = 0, worst_w = 0, worst_k = 0;
    for (int s = 0; s < NB; s++) {
        qkv_train_batch b = batch_of(s);
        float loss;
        qkv_trainer_zero_grad(t);
        CHECK_OK(qkv_trainer_forward_backward_batch(NULL, t, &b, 1.0f, &loss));
        CHECK_OK(qkv_trainer_adamw_step(NULL, t, &hp, 5e-3f));
        CHECK_MSG(fabs(loss - losses[s]) <= 1e-4 * fabs(losses[s]),
                  "step %d: loss %.7f, torch %.7f", s, loss, losses[s]);
        worst = fmax(worst, fabs(loss - losses[s]) / fabs(losses[s]));
    }
    for (size_t i = 0; i < qkv_trainer_param_count(t); i++) {
        qkv_param_info p = {.struct_size = sizeof p}, p0 = {.struct_size = sizeof p0};
        CHECK_OK(qkv_trainer_param(t, i, &p));
        CHECK_OK(qkv_trainer_param(init, i, &p0));
        if (!p.trainable) { /* final_logits_bias: a buffer, never updated */
            CHECK(memcmp(p.data, p0.data, (size_t)p.numel * sizeof(float)) == 0);
            continue;
        }
        char name[160];
        snprintf(name, sizeof name, "final.%s", p.name);
        const float *ref = fix_need(ss, name);
        double e = fix_rel_err(p.data, ref, p.numel);
        if (tt_is_key_bias(p.name)) { /* true gradient 0: Adam moves both by noise / eps */
            CHECK_MSG(e <= 1e-3, "%s after 10 steps: rel err %.3g", p.name, e);
            worst_k = fmax(worst_k, e);
            continue;
        }
        CHECK_MSG(e <= 1e-4, "%s after 10 steps: rel err %.3g", p.name, e);
        worst_w = fmax(worst_w, e);
    }
    printf("10 AdamW steps: loss %.5f -> %.5f, worst loss rel err %.3g, worst weight %.3g (key "
           "biases %.3g)\n",
           losses[0], losses[NB - 1], worst, worst_w, worst_k);
    qkv_trainer_free(t);
    qkv_trainer_free(init);
    qkv_safetensors_close(ss);
}

static void explicit_decoder_inputs(void) {
    qkv_trainer *t = load("model");
    qkv_train_batch b = batch_of(1);
    int32_t ids[B * T];
    for (int i = 0; i < B; i++)
        for (int j = 0; j < T; j++) {
            const int32_t y = j ? b.targets[i * T + j - 1] : PAD; /* decoder_start = pad */
            ids[i * T + j] = y < 0 ? PAD : y;
        }
    float l1, l2;
    CHECK_OK(qkv_trainer_eval_batch(NULL, t, &b, &l1));
    b.ids = ids;
    CHECK_OK(qkv_trainer_eval_batch(NULL, t, &b, &l2));
    CHECK(l1 == l2);
    ids[1] = (ids[1] + 1) % VD; /* another decoder input: another loss */
    CHECK_OK(qkv_trainer_eval_batch(NULL, t, &b, &l2));
    CHECK(l1 != l2);
    qkv_trainer_free(t);
}

static void dropout_seeded(void) {
    qkv_trainer *t = load("model");
    qkv_train_batch b = batch_of(2);
    float l0, l1, l2, l3;
    CHECK_OK(qkv_trainer_forward_backward_batch(NULL, t, &b, 1.0f, &l0));
    CHECK_OK(qkv_trainer_set_dropout(t, 0.1f, 0.1f, 0.1f));
    b.dropout_seed = 7;
    CHECK_OK(qkv_trainer_forward_backward_batch(NULL, t, &b, 1.0f, &l1));
    CHECK_OK(qkv_trainer_forward_backward_batch(NULL, t, &b, 1.0f, &l2));
    b.dropout_seed = 8;
    CHECK_OK(qkv_trainer_forward_backward_batch(NULL, t, &b, 1.0f, &l3));
    CHECK(l1 == l2);
    CHECK(l1 != l0 && l3 != l1);
    float le;
    CHECK_OK(qkv_trainer_eval_batch(NULL, t, &b, &le)); /* eval: no dropout */
    CHECK(le == l0);
    qkv_trainer_free(t);
}

static void export_roundtrip(void) {
    char dir[] = "/tmp/qkv_marian_train_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    qkv_trainer *t = load("model");
    CHECK_OK(qkv_trainer_set_label_smoothing(t, 0.1f));
    qkv_adamw hp;
    qkv_adamw_defaults(&hp);
    for (int s = 0; s < 3; s++) { /* weights that are not the fixture's */
        qkv_train_batch b = batch_of(s);
        float loss;
        qkv_trainer_zero_grad(t);
        CHECK_OK(qkv_trainer_forward_backward_batch(NULL, t, &b, 1.0f, &loss));
        CHECK_OK(qkv_trainer_adamw_step(NULL, t, &hp, 1e-2f));
    }
    char exp[600], path[700];
    snprintf(exp, sizeof exp, "%s/export", dir);
    CHECK_OK(qkv_trainer_export_hf(t, exp, -1));
    qkv_trainer *u = NULL;
    CHECK_OK(qkv_trainer_load_hf(exp, &u));
    CHECK(u && tt_same_weights(t, u));
    /* the trainer's logits of batch 4 for transformers to match */
    qkv_train_batch b = batch_of(4);
    float loss;
    CHECK_OK(qkv_trainer_eval_batch(NULL, t, &b, &loss));
    const int64_t shape[3] = {B, T, V};
    qkv_st_write_tensor w = {"logits", QKV_DTYPE_F32, 3, shape, qkv_trainer_logits(t)};
    snprintf(path, sizeof path, "%s/logits.safetensors", dir);
    CHECK_OK(qkv_safetensors_write(path, &w, 1, NULL, NULL, 0));
    char args[1600];
    snprintf(args, sizeof args,
             "--ids %s:src_ids --lens %s:src_lens --labels %s:labels --index 4 --logits %s",
             FIX "batches.safetensors", FIX "batches.safetensors", FIX "batches.safetensors", path);
    tt_hf_check(dir, exp, args, "marian export");
    qkv_trainer_free(u);
    qkv_trainer_free(t);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

/* A checkpoint restores the architecture, the weights and the moments: one more step on the
 * restored trainer and on the original gives bit-identical weights. */
static void checkpoint_roundtrip(void) {
    char dir[] = "/tmp/qkv_marian_ckpt_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[600];
    snprintf(path, sizeof path, "%s/ckpt.safetensors", dir);
    qkv_trainer *t = load("model_sep");
    CHECK_OK(qkv_trainer_set_label_smoothing(t, 0.1f));
    qkv_adamw hp;
    qkv_adamw_defaults(&hp);
    float loss, l2;
    for (int s = 0; s < 2; s++) {
        qkv_train_batch b = batch_of(s);
        qkv_trainer_zero_grad(t);
        CHECK_OK(qkv_trainer_forward_backward_batch(NULL, t, &b, 1.0f, &loss));
        CHECK_OK(qkv_trainer_adamw_step(NULL, t, &hp, 1e-2f));
    }
    CHECK_OK(qkv_trainer_save(t, path, NULL));
    qkv_trainer *u = NULL;
    CHECK_OK(qkv_trainer_restore(path, &u, NULL));
    CHECK(u && strcmp(qkv_trainer_arch(u), "marian") == 0 && tt_same_weights(t, u));
    qkv_train_batch b = batch_of(2);
    qkv_trainer *both[2] = {t, u};
    for (int i = 0; i < 2 && u; i++) {
        qkv_trainer_zero_grad(both[i]);
        CHECK_OK(qkv_trainer_forward_backward_batch(NULL, both[i], &b, 1.0f, i ? &l2 : &loss));
        CHECK_OK(qkv_trainer_adamw_step(NULL, both[i], &hp, 1e-2f));
    }
    CHECK(u && loss == l2 && tt_same_weights(t, u)); /* smoothing restored with the rest */
    qkv_lora_config lc;
    qkv_lora_config_init(&lc);
    CHECK_STATUS(qkv_trainer_add_lora(t, &lc), QKV_ERR_UNSUPPORTED);
    qkv_trainer_free(u);
    qkv_trainer_free(t);
    unlink(path);
    CHECK(rmdir(dir) == 0);
}

static void bad_batches(void) {
    qkv_trainer *t = load("model");
    float loss;
    qkv_train_batch b = batch_of(0);
    int32_t src[B * S], lens[B] = {9, 0, 4};
    memcpy(src, b.src_ids, sizeof src);
    src[5] = V;
    b.src_ids = src;
    CHECK_STATUS(qkv_trainer_forward_backward_batch(NULL, t, &b, 1.0f, &loss), QKV_ERR_INVALID_ARG);
    b = batch_of(0);
    b.src_lens = lens;
    CHECK_STATUS(qkv_trainer_forward_backward_batch(NULL, t, &b, 1.0f, &loss), QKV_ERR_INVALID_ARG);
    b = batch_of(0);
    b.src_ids = NULL;
    CHECK_STATUS(qkv_trainer_eval_batch(NULL, t, &b, &loss), QKV_ERR_INVALID_ARG);
    b = batch_of(0);
    b.kv_lens = lens; /* the source's lengths go in src_lens */
    CHECK_STATUS(qkv_trainer_eval_batch(NULL, t, &b, &loss), QKV_ERR_INVALID_ARG);
    b = batch_of(0);
    b.S = 33; /* past max_position_embeddings */
    CHECK_STATUS(qkv_trainer_eval_batch(NULL, t, &b, &loss), QKV_ERR_INVALID_ARG);
    int32_t tg[B * T];
    memcpy(tg, batch_of(0).targets, sizeof tg);
    tg[3] = V; /* outside the decoder's vocabulary */
    b = batch_of(0);
    b.targets = tg;
    CHECK_STATUS(qkv_trainer_eval_batch(NULL, t, &b, &loss), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_trainer_reserve(t, B, S, QKV_RECOMPUTE_LAYERS, NULL), QKV_ERR_UNSUPPORTED);
    CHECK_STATUS(qkv_trainer_set_label_smoothing(t, 1.0f), QKV_ERR_INVALID_ARG);
    qkv_trainer_free(t);
}

int main(void) {
    bt = fix_open(FIX "batches.safetensors");
    gradients_match("model", "grads.safetensors", V, 0.0f);
    gradients_match("model", "grads_ls.safetensors", V, 0.1f);
    gradients_match("model_sep", "grads_sep.safetensors", VD, 0.0f);
    ten_steps_match();
    explicit_decoder_inputs();
    dropout_seeded();
    export_roundtrip();
    checkpoint_roundtrip();
    bad_batches();
    qkv_safetensors_close(bt);
    return test_finish("train_marian");
}
