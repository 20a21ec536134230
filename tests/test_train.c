/* test_train.c — the GPT-2 trainer against PyTorch and against itself.
 *
 * Fixtures (tests/fixtures/train, from tools/gen_train_golden.py): a tiny GPT-2 (V 101, P 32,
 * C 32, L 2, H 4) with perturbed norms and biases, 10 batches of B 2 × T 16, the loss, logits
 * and every parameter's gradient after one forward/backward, and 10 AdamW steps (warmup +
 * cosine, weight decay on matrices only, global-norm clipping active on some steps) with the
 * losses, pre-clip norms and final weights. Checked here:
 *   - loss and every gradient within 1e-4 relative (max |Δ| / max |ref| per tensor);
 *   - 10 steps: every loss within 1e-4 relative, final weights within 1e-4 relative;
 *   - gradient accumulation over 2 micro-batches equals the large batch (1e-5);
 *   - activation recomputation and 1 vs 2 threads give bit-identical gradients;
 *   - save / restore in the middle of a run continues bit-identically;
 *   - a process killed while writing a checkpoint (RLIMIT_FSIZE, SIGXFSZ) leaves the previous
 *     checkpoint intact and loadable;
 *   - the Hugging Face export loads in qkv_lm (same logits); bad input is refused.
 * Runs per QKV_ARCH. */
#include "fixture_util.h"
#include "qkv.h"
#include "test.h"
#include "test_arch.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define FIX QKV_SOURCE_DIR "/tests/fixtures/train/"

enum { S = 10, B = 2, T = 16, V = 101 };

static const int32_t *ids_of(qkv_safetensors *bt, int s) {
    return (const int32_t *)fix_need(bt, "ids") + s * B * T;
}
static const int32_t *tgt_of(qkv_safetensors *bt, int s) {
    return (const int32_t *)fix_need(bt, "targets") + s * B * T;
}

static qkv_trainer *load_tiny(void) {
    qkv_trainer *t = NULL;
    CHECK_OK(qkv_trainer_load_hf(FIX "gpt2_tiny", &t));
    if (!t) exit(1);
    return t;
}

/* The fixture's optimizer settings. */
static const qkv_adamw HP = {sizeof(qkv_adamw), 0.9f, 0.95f, 1e-8f, 0.1f};
static const qkv_lr_schedule LR = {sizeof(qkv_lr_schedule), 1e-2, 1e-3, 3, 10, QKV_LR_COSINE};
static const float CLIP = 1.25f;

static void one_step(qkv_runtime *rt, qkv_trainer *t, qkv_safetensors *bt, int s, float *loss,
                     float *norm) {
    qkv_trainer_zero_grad(t);
    CHECK_OK(qkv_trainer_forward_backward(rt, t, ids_of(bt, s), tgt_of(bt, s), B, T, 1.0f, loss));
    CHECK_OK(qkv_trainer_clip_grad_norm(rt, t, CLIP, norm));
    CHECK_OK(qkv_trainer_adamw_step(rt, t, &HP, (float)qkv_lr_at(&LR, s)));
}

static void gradients_match_torch(qkv_safetensors *bt) {
    qkv_safetensors *gs = fix_open(FIX "grads.safetensors");
    qkv_trainer *t = load_tiny();
    float loss = 0, eval_loss = 0;
    CHECK_OK(qkv_trainer_eval(NULL, t, ids_of(bt, 0), tgt_of(bt, 0), B, T, &eval_loss));
    const float *logits = qkv_trainer_logits(t);
    CHECK(logits != NULL);
    if (logits) {
        double e = fix_rel_err(logits, fix_need(gs, "logits"), B * T * V);
        CHECK_MSG(e <= 1e-5, "logits rel err %.3g", e);
    }
    qkv_trainer_zero_grad(t);
    CHECK_OK(
        qkv_trainer_forward_backward(NULL, t, ids_of(bt, 0), tgt_of(bt, 0), B, T, 1.0f, &loss));
    const float ref = *(const float *)fix_need(gs, "loss");
    CHECK_NEAR(loss, ref, 0, 1e-6);
    CHECK(loss == eval_loss);
    CHECK(qkv_trainer_logits(t) == NULL); /* turned into gradients */
    double worst = 0;
    const char *worst_name = "";
    for (size_t i = 0; i < qkv_trainer_param_count(t); i++) {
        qkv_param_info p = {.struct_size = sizeof p};
        CHECK_OK(qkv_trainer_param(t, i, &p));
        double e = fix_rel_err(p.grad, fix_need(gs, p.name), p.numel);
        CHECK_MSG(e <= 1e-4, "gradient of %s: rel err %.3g", p.name, e);
        if (e > worst) worst = e, worst_name = p.name;
    }
    printf("loss %.7f (torch %.7f); worst gradient rel err %.3g (%s)\n", loss, ref, worst,
           worst_name);
    qkv_trainer_free(t);
    qkv_safetensors_close(gs);
}

static void ten_steps_match_torch(qkv_safetensors *bt) {
    qkv_safetensors *ss = fix_open(FIX "steps.safetensors");
    const float *losses = fix_need(ss, "losses"), *norms = fix_need(ss, "grad_norms"),
                *lrs = fix_need(ss, "lrs");
    qkv_trainer *t = load_tiny();
    double worst = 0;
    for (int s = 0; s < S; s++) {
        CHECK_NEAR(qkv_lr_at(&LR, s), lrs[s], 0, 1e-6);
        float loss, norm;
        one_step(NULL, t, bt, s, &loss, &norm);
        CHECK_MSG(fabs(loss - losses[s]) <= 1e-4 * fabs(losses[s]),
                  "step %d: loss %.7f, torch %.7f", s, loss, losses[s]);
        CHECK_MSG(fabs(norm - norms[s]) <= 1e-4 * fabs(norms[s]), "step %d: norm %.7f, torch %.7f",
                  s, norm, norms[s]);
        double e = fabs(loss - losses[s]) / fabs(losses[s]);
        worst = e > worst ? e : worst;
    }
    CHECK_EQ_INT(qkv_trainer_steps(t), S);
    /* the fused clip + AdamW pass gives the same bits */
    qkv_trainer *f = load_tiny();
    for (int s = 0; s < S; s++) {
        float loss, norm;
        qkv_trainer_zero_grad(f);
        CHECK_OK(
            qkv_trainer_forward_backward(NULL, f, ids_of(bt, s), tgt_of(bt, s), B, T, 1.0f, &loss));
        CHECK_OK(qkv_trainer_step(NULL, f, &HP, (float)qkv_lr_at(&LR, s), CLIP, &norm));
        CHECK(norm == norms[s] || fabs(norm - norms[s]) <= 1e-4 * norms[s]);
    }
    for (size_t i = 0; i < qkv_trainer_param_count(t); i++) {
        qkv_param_info a = {.struct_size = sizeof a}, b = {.struct_size = sizeof b};
        CHECK_OK(qkv_trainer_param(t, i, &a));
        CHECK_OK(qkv_trainer_param(f, i, &b));
        CHECK_MSG(memcmp(a.data, b.data, (size_t)a.numel * sizeof(float)) == 0,
                  "fused step differs on %s", a.name);
    }
    qkv_trainer_free(f);
    printf("10 AdamW steps: loss %.5f -> %.5f, worst loss rel err %.3g\n", losses[0], losses[S - 1],
           worst);
    for (size_t i = 0; i < qkv_trainer_param_count(t); i++) {
        qkv_param_info p = {.struct_size = sizeof p};
        CHECK_OK(qkv_trainer_param(t, i, &p));
        char name[160];
        snprintf(name, sizeof name, "final.%s", p.name);
        const float *ref = fix_need(ss, name);
        if (strstr(p.name, "c_attn.bias")) {
            /* The key bias adds q·b_k to every score of a row, which the softmax cancels: its
             * true gradient is 0, both sides compute rounding noise (~1e-9), and Adam
             * normalizes noise to ±lr steps of either sign. Compare the query and value
             * thirds; check the key third's gradient is noise-sized. */
            const int64_t C = p.numel / 3;
            double eq = fix_rel_err(p.data, ref, C),
                   ev = fix_rel_err(p.data + 2 * C, ref + 2 * C, C);
            CHECK_MSG(eq <= 1e-4 && ev <= 1e-4, "%s (q, v) after 10 steps: rel err %.3g %.3g",
                      p.name, eq, ev);
            double gk = 0, gq = 0;
            for (int64_t j = 0; j < C; j++) {
                gk = fmax(gk, fabs(p.grad[C + j]));
                gq = fmax(gq, fabs(p.grad[j]));
            }
            CHECK_MSG(gk <= 1e-4 * gq, "key-bias gradient %.3g vs query-bias %.3g", gk, gq);
            continue;
        }
        double e = fix_rel_err(p.data, ref, p.numel);
        CHECK_MSG(e <= 1e-4, "weights of %s after 10 steps: rel err %.3g", p.name, e);
    }
    qkv_trainer_free(t);
    qkv_safetensors_close(ss);
}

/* Copies every gradient into one buffer. */
static float *grads_copy(qkv_trainer *t, int64_t *n) {
    int64_t total = 0;
    for (size_t i = 0; i < qkv_trainer_param_count(t); i++) {
        qkv_param_info p = {.struct_size = sizeof p};
        qkv_trainer_param(t, i, &p);
        total += p.numel;
    }
    float *g = malloc((size_t)total * sizeof *g), *o = g;
    for (size_t i = 0; i < qkv_trainer_param_count(t); i++) {
        qkv_param_info p = {.struct_size = sizeof p};
        qkv_trainer_param(t, i, &p);
        memcpy(o, p.grad, (size_t)p.numel * sizeof *o);
        o += p.numel;
    }
    *n = total;
    return g;
}

static void accumulation_policies_threads(qkv_safetensors *bt) {
    qkv_trainer *t = load_tiny();
    float loss, l0, l1;
    int64_t n;
    qkv_trainer_zero_grad(t);
    CHECK_OK(
        qkv_trainer_forward_backward(NULL, t, ids_of(bt, 1), tgt_of(bt, 1), B, T, 1.0f, &loss));
    float *big = grads_copy(t, &n);
    /* two micro-batches of one sequence each, scale 1/2 */
    qkv_trainer_zero_grad(t);
    CHECK_OK(qkv_trainer_forward_backward(NULL, t, ids_of(bt, 1), tgt_of(bt, 1), 1, T, 0.5f, &l0));
    CHECK_OK(qkv_trainer_forward_backward(NULL, t, ids_of(bt, 1) + T, tgt_of(bt, 1) + T, 1, T, 0.5f,
                                          &l1));
    float *acc = grads_copy(t, &n);
    double e = fix_rel_err(acc, big, n);
    CHECK_MSG(e <= 1e-5, "accumulated gradients vs one batch: rel err %.3g", e);
    CHECK_NEAR(0.5 * (l0 + l1), loss, 0, 1e-6);
    printf("accumulation: 2 micro-batches vs 1 batch, rel err %.3g\n", e);
    /* recomputation gives the same bits */
    CHECK_OK(qkv_trainer_reserve(t, B, T, QKV_RECOMPUTE_LAYERS, NULL));
    qkv_trainer_zero_grad(t);
    CHECK_OK(qkv_trainer_forward_backward(NULL, t, ids_of(bt, 1), tgt_of(bt, 1), B, T, 1.0f, &l0));
    float *re = grads_copy(t, &n);
    CHECK(l0 == loss);
    CHECK(memcmp(re, big, (size_t)n * sizeof *re) == 0);
    /* and so do 1 and 2 threads */
    qkv_runtime *r1 = NULL, *r2 = NULL;
    CHECK_OK(qkv_runtime_create(1, &r1));
    CHECK_OK(qkv_runtime_create(2, &r2));
    qkv_trainer_zero_grad(t);
    CHECK_OK(qkv_trainer_forward_backward(r1, t, ids_of(bt, 1), tgt_of(bt, 1), B, T, 1.0f, &l0));
    float *g1 = grads_copy(t, &n);
    qkv_trainer_zero_grad(t);
    CHECK_OK(qkv_trainer_forward_backward(r2, t, ids_of(bt, 1), tgt_of(bt, 1), B, T, 1.0f, &l1));
    float *g2 = grads_copy(t, &n);
    CHECK(l0 == l1 && l0 == loss);
    CHECK(memcmp(g1, g2, (size_t)n * sizeof *g1) == 0);
    CHECK(memcmp(g1, big, (size_t)n * sizeof *g1) == 0);
    qkv_runtime_free(r1);
    qkv_runtime_free(r2);
    free(big), free(acc), free(re), free(g1), free(g2);
    qkv_trainer_free(t);
}

static void resume_and_crash(qkv_safetensors *bt) {
    char dir[] = "/tmp/qkv_test_train_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char ck[256], ck2[256];
    snprintf(ck, sizeof ck, "%s/ckpt.safetensors", dir);
    snprintf(ck2, sizeof ck2, "%s/ckpt2.safetensors", dir);
    /* uninterrupted run */
    float ref[S], norm;
    qkv_trainer *t = load_tiny();
    for (int s = 0; s < S; s++) {
        one_step(NULL, t, bt, s, &ref[s], &norm);
        if (s == 3) CHECK_OK(qkv_trainer_save(t, ck, "{\"step\": 4}"));
    }
    qkv_trainer_free(t);
    /* resume from step 4 */
    char *user = NULL;
    CHECK_OK(qkv_trainer_restore(ck, &t, &user));
    if (!t) return;
    CHECK(user && strcmp(user, "{\"step\": 4}") == 0);
    qkv_free(user);
    CHECK_EQ_INT(qkv_trainer_steps(t), 4);
    int same = 1;
    for (int s = 4; s < S; s++) {
        float loss;
        one_step(NULL, t, bt, s, &loss, &norm);
        same &= loss == ref[s];
    }
    CHECK_MSG(same, "resumed losses differ from the uninterrupted run");
    /* crash while writing over ck: the child dies of SIGXFSZ part way through */
    float w0;
    qkv_param_info p = {.struct_size = sizeof p};
    qkv_trainer *old = NULL;
    CHECK_OK(qkv_trainer_restore(ck, &old, NULL));
    CHECK_OK(qkv_trainer_param(old, 0, &p));
    w0 = p.data[5];
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        struct rlimit rl = {4096, 4096};
        setrlimit(RLIMIT_FSIZE, &rl);
        qkv_trainer_save(t, ck, "{\"step\": 10}");
        _exit(0); /* not reached: the write past 4 KiB kills the process */
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK_MSG(WIFSIGNALED(status) && WTERMSIG(status) == SIGXFSZ, "child status %d", status);
    qkv_trainer *after = NULL;
    CHECK_OK(qkv_trainer_restore(ck, &after, &user));
    if (after) {
        CHECK_EQ_INT(qkv_trainer_steps(after), 4);
        CHECK_OK(qkv_trainer_param(after, 0, &p));
        CHECK(p.data[5] == w0);
        CHECK(user && strcmp(user, "{\"step\": 4}") == 0);
        qkv_free(user);
    }
    qkv_trainer_free(after);
    qkv_trainer_free(old);
    /* bad input */
    CHECK_STATUS(qkv_trainer_restore(FIX "grads.safetensors", &after, NULL), QKV_ERR_FORMAT);
    CHECK(after == NULL);
    FILE *f = fopen(ck2, "wb");
    fputs("not a checkpoint", f);
    fclose(f);
    CHECK_STATUS(qkv_trainer_restore(ck2, &after, NULL), QKV_ERR_FORMAT);
    int32_t bad[B * T];
    memcpy(bad, ids_of(bt, 0), sizeof bad);
    bad[7] = V;
    float loss;
    CHECK_STATUS(qkv_trainer_forward_backward(NULL, t, bad, tgt_of(bt, 0), B, T, 1.0f, &loss),
                 QKV_ERR_INVALID_ARG);
    CHECK_STATUS(
        qkv_trainer_forward_backward(NULL, t, ids_of(bt, 0), tgt_of(bt, 0), 1, 33, 1.0f, &loss),
        QKV_ERR_INVALID_ARG);
    qkv_gpt2_shape bad_shape = {101, 32, 30, 2, 4};
    CHECK_STATUS(qkv_trainer_new(&bad_shape, 1, &after), QKV_ERR_INVALID_ARG);
    qkv_trainer_free(t);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

static void export_loads(qkv_safetensors *bt) {
    char dir[] = "/tmp/qkv_test_export_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    qkv_trainer *t = load_tiny();
    float loss, norm;
    one_step(NULL, t, bt, 0, &loss, &norm);
    CHECK_OK(qkv_trainer_eval(NULL, t, ids_of(bt, 2), tgt_of(bt, 2), 1, T, &loss));
    CHECK_OK(qkv_trainer_export_hf(t, dir, 1));
    qkv_lm *lm = NULL;
    CHECK_OK(qkv_lm_load(dir, &lm));
    if (lm) {
        float *lg = malloc((size_t)T * V * sizeof *lg);
        int64_t len = T;
        CHECK_OK(qkv_lm_logits(NULL, lm, ids_of(bt, 2), &len, 1, lg));
        double e = fix_rel_err(lg, qkv_trainer_logits(t), T * V);
        CHECK_MSG(e <= 1e-5, "exported model logits rel err %.3g", e);
        free(lg);
        qkv_lm_free(lm);
    }
    /* a fresh model is initialized reproducibly */
    qkv_gpt2_shape sh = {101, 32, 32, 2, 4};
    qkv_trainer *a = NULL, *b = NULL;
    CHECK_OK(qkv_trainer_new(&sh, 7, &a));
    CHECK_OK(qkv_trainer_new(&sh, 7, &b));
    if (a && b) {
        qkv_param_info pa = {.struct_size = sizeof pa}, pb = {.struct_size = sizeof pb};
        CHECK_OK(qkv_trainer_param(a, 2, &pa)); /* ln_1.weight = 1 */
        CHECK(pa.data[0] == 1.0f);
        CHECK_OK(qkv_trainer_param(a, 0, &pa));
        CHECK_OK(qkv_trainer_param(b, 0, &pb));
        CHECK(memcmp(pa.data, pb.data, (size_t)pa.numel * sizeof(float)) == 0);
        double s2 = 0;
        for (int64_t i = 0; i < pa.numel; i++) s2 += (double)pa.data[i] * pa.data[i];
        CHECK_NEAR(sqrt(s2 / (double)pa.numel), 0.02, 0.002, 0);
        /* model FLOPs: GPT-2 with V 101, P 32, C 32, L 2 has wte 3232 + wpe 1024 + ln_f 64 +
         * 2 layers x (ln 2·64 + c_attn 3072 + 96 + attn c_proj 1024 + 32 + c_fc 4096 + 128 +
         * mlp c_proj 4096 + 32) = 29728 parameters; B 3, T 8: 6·29728·24 + 12·2·24·8·32 */
        CHECK(qkv_trainer_numel(a) == 29728);
        CHECK(qkv_trainer_numel(NULL) == 0);
        CHECK(qkv_trainer_step_flops(a, 3, 8) == 4280832.0 + 147456.0);
        CHECK(qkv_trainer_step_flops(NULL, 3, 8) == 0.0);
    }
    qkv_trainer_free(a);
    qkv_trainer_free(b);
    qkv_trainer_free(t);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

int main(void) {
    test_use_arch_from_env();
    qkv_safetensors *bt = fix_open(FIX "batches.safetensors");
    gradients_match_torch(bt);
    ten_steps_match_torch(bt);
    accumulation_policies_threads(bt);
    resume_and_crash(bt);
    export_loads(bt);
    qkv_safetensors_close(bt);
    return test_finish("test_train");
}
