/* test_train_loop.c — qkv_train_run, the library's training loop, on a tiny random GPT-2
 * (V 64, P 16, C 16, L 2, H 2) and a dataset of random ids this test writes itself.
 * Checked:
 *   - N steps through the loop give bit-identical weights and losses to the same steps by
 *     hand (qkv_dataset_sample + qkv_trainer_forward_backward + qkv_trainer_step at
 *     qkv_lr_at), with and without gradient accumulation; a different batch order does not;
 *   - callbacks: progress once per step in order, metrics lines STEP / EVAL at the expected
 *     steps (also in metrics.jsonl), checkpoints at save_every and the last step, rotation
 *     keeping the newest `keep`;
 *   - a stop request mid-run saves a checkpoint and returns INTERRUPTED; qkv_train_resume +
 *     qkv_train_run then finish with the weights and metrics of the uninterrupted run, bit for
 *     bit, and replay the kept metrics lines first; a stop before the first step saves too;
 *   - the NaN guard: a poisoned weight or an absurd learning rate returns NOT_FINITE with no
 *     update applied and nothing written for the failing step;
 *   - options.zero (ZeRO-1) without ranks: the same bits as without it, the whole optimizer
 *     state kept (qkv_trainer_optimizer_bytes: 8 per float);
 *   - versioned structs (struct_size 0 or unknown refused) and bad options. */
#include "qkv.h"
#include "test.h"

#include <dirent.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { V = 64, P = 16, C = 16, L = 2, H = 2, B = 2, T = 8, NTRAIN = 3000, NVAL = 400 };

static char g_tmp[256];
static qkv_dataset *g_train, *g_val;

/* ---------------------------------------------------------------- files */

static void write_shard(const char *path, int64_t n, uint64_t seed) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
    unsigned char h[64] = "QKVTOKS1";
    uint32_t version = 1, bpi = 2;
    uint64_t nt = (uint64_t)n, vocab = V;
    memcpy(h + 8, &version, 4);
    memcpy(h + 12, &bpi, 4);
    memcpy(h + 16, &nt, 8);
    memcpy(h + 24, &vocab, 8);
    fwrite(h, 1, sizeof h, f);
    uint64_t x = seed;
    for (int64_t i = 0; i < n; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        uint16_t id = (uint16_t)((x >> 33) % V);
        fwrite(&id, 2, 1, f);
    }
    fclose(f);
}

static void make_dataset(const char *dir) {
    char p[512];
    mkdir(dir, 0755);
    snprintf(p, sizeof p, "%s/train_00000.bin", dir);
    write_shard(p, NTRAIN, 1);
    snprintf(p, sizeof p, "%s/val_00000.bin", dir);
    write_shard(p, NVAL, 2);
    snprintf(p, sizeof p, "%s/meta.json", dir);
    FILE *f = fopen(p, "w");
    fprintf(f,
            "{\"format\": \"qkv-tokens\", \"version\": 1, \"vocab_size\": %d, \"eot_id\": %d,\n"
            " \"bytes_per_id\": 2, \"tokenizer\": null,\n"
            " \"train\": {\"documents\": 1, \"tokens\": %d, \"shards\": [\"train_00000.bin\"]},\n"
            " \"val\": {\"documents\": 1, \"tokens\": %d, \"shards\": [\"val_00000.bin\"]}}\n",
            V, V - 1, NTRAIN, NVAL);
    fclose(f);
}

static int exists(const char *dir, const char *name) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

static int count_ckpts(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)) != NULL) n += strncmp(e->d_name, "ckpt_", 5) == 0;
    closedir(d);
    return n;
}

/* metrics.jsonl without the timing fields (tokens_per_s, step_s, elapsed_s). */
static char *metrics_untimed(const char *dir) {
    char p[512], line[1024];
    snprintf(p, sizeof p, "%s/metrics.jsonl", dir);
    FILE *f = fopen(p, "r");
    if (!f) return strdup("(missing)");
    size_t cap = 1 << 16, n = 0;
    char *out = calloc(cap, 1);
    while (fgets(line, sizeof line, f)) {
        char *cut = strstr(line, ", \"tokens_per_s\"");
        if (cut) strcpy(cut, "}\n");
        size_t l = strlen(line);
        if (n + l + 1 < cap) memcpy(out + n, line, l + 1), n += l;
    }
    fclose(f);
    return out;
}

static int count_lines(const char *dir, const char *key) {
    char *m = metrics_untimed(dir);
    int n = 0;
    for (char *p = m; (p = strstr(p, key)); p++) n++;
    free(m);
    return n;
}

/* ---------------------------------------------------------------- trainers */

static qkv_trainer *tiny(void) {
    qkv_gpt2_shape sh = {V, P, C, L, H};
    qkv_trainer *t = NULL;
    CHECK_OK(qkv_trainer_new(&sh, 7, &t));
    if (!t) exit(1);
    return t;
}

static float *weights(qkv_trainer *t, int64_t *n) {
    *n = qkv_trainer_numel(t);
    float *w = malloc((size_t)*n * sizeof *w), *o = w;
    for (size_t i = 0; i < qkv_trainer_param_count(t); i++) {
        qkv_param_info p = {.struct_size = sizeof p};
        qkv_trainer_param(t, i, &p);
        memcpy(o, p.data, (size_t)p.numel * sizeof *o);
        o += p.numel;
    }
    return w;
}

static int same_weights(qkv_trainer *a, qkv_trainer *b) {
    int64_t na, nb;
    float *wa = weights(a, &na), *wb = weights(b, &nb);
    int same = na == nb && memcmp(wa, wb, (size_t)na * sizeof *wa) == 0;
    free(wa), free(wb);
    return same;
}

static qkv_train_options base_options(int64_t steps) {
    qkv_train_options o;
    qkv_train_options_init(&o);
    o.train = g_train;
    o.batch = B, o.seq = T, o.steps = steps, o.seed = 99;
    o.lr = 5e-3, o.min_lr = 5e-4, o.warmup = 2, o.clip = 0.5;
    o.eval_every = 0, o.save_every = 0;
    return o;
}

/* What the loop should do, by hand: step s samples batches s·K + k. */
static void by_hand(qkv_trainer *t, const qkv_train_options *o, uint64_t index_shift,
                    double *losses) {
    qkv_adamw hp;
    qkv_adamw_defaults(&hp);
    hp.beta1 = (float)o->beta1, hp.beta2 = (float)o->beta2, hp.eps = (float)o->eps;
    hp.weight_decay = (float)o->weight_decay;
    qkv_lr_schedule sc = {sizeof sc, o->lr, o->min_lr, o->warmup, o->steps, o->decay};
    int32_t ids[B * T], tgt[B * T];
    for (int64_t s = qkv_trainer_steps(t); s < o->steps; s++) {
        double loss = 0;
        qkv_trainer_zero_grad(t);
        for (int64_t k = 0; k < o->accum; k++) {
            float l;
            CHECK_OK(qkv_dataset_sample(
                g_train, o->seed, (uint64_t)(s * o->accum + k) + index_shift, B, T, ids, tgt));
            CHECK_OK(
                qkv_trainer_forward_backward(NULL, t, ids, tgt, B, T, 1.0f / (float)o->accum, &l));
            loss += (double)l / (double)o->accum;
        }
        float norm;
        CHECK_OK(qkv_trainer_step(NULL, t, &hp, (float)qkv_lr_at(&sc, s), (float)o->clip, &norm));
        if (losses) losses[s] = loss;
    }
}

/* ---------------------------------------------------------------- callbacks */

typedef struct seen {
    int64_t progress[64];
    double loss[64];
    int n_progress;
    int64_t step_lines[64], eval_lines[64];
    int n_step, n_eval, n_replayed, bad_order;
    int64_t ckpts[64];
    int n_ckpt;
    int64_t stop_after; /* should_stop fires once progress has reached this step (0: never) */
    int polls;
    qkv_trainer *t;
    float *snapshot; /* weights after the last progress call */
} seen;

static void cb_progress(const qkv_train_record *r, void *user) {
    seen *s = user;
    if (r->struct_size != sizeof *r || r->kind != QKV_TRAIN_RECORD_STEP || r->replayed)
        s->bad_order++;
    if (s->n_progress < 64) s->progress[s->n_progress] = r->step, s->loss[s->n_progress] = r->loss;
    s->n_progress++;
    if (s->t) {
        int64_t n;
        free(s->snapshot);
        s->snapshot = weights(s->t, &n);
    }
}

static void cb_metrics(const qkv_train_record *r, void *user) {
    seen *s = user;
    if (r->replayed) {
        s->n_replayed++;
        return;
    }
    if (!r->json || strncmp(r->json, "{\"step\": ", 9) != 0) s->bad_order++;
    if (r->kind == QKV_TRAIN_RECORD_STEP) {
        if (s->n_step < 64) s->step_lines[s->n_step] = r->step;
        s->n_step++;
        if (!(r->loss > 0) || !(r->tokens_per_s > 0) || !isnan(r->val_loss)) s->bad_order++;
    } else {
        if (s->n_eval < 64) s->eval_lines[s->n_eval] = r->step;
        s->n_eval++;
        if (!(r->val_loss > 0) || fabs(r->val_ppl - exp(r->val_loss)) > 1e-9 * r->val_ppl ||
            !isnan(r->loss))
            s->bad_order++;
    }
}

static void cb_checkpoint(int64_t step, const char *path, void *user) {
    seen *s = user;
    if (s->n_ckpt < 64) s->ckpts[s->n_ckpt] = step;
    s->n_ckpt++;
    if (access(path, F_OK) != 0) s->bad_order++;
}

static int cb_stop(void *user) {
    seen *s = user;
    s->polls++;
    return s->stop_after > 0 && s->n_progress > 0 &&
           s->progress[s->n_progress - 1] >= s->stop_after;
}

static qkv_train_callbacks callbacks(void) {
    qkv_train_callbacks cb;
    memset(&cb, 0, sizeof cb);
    cb.struct_size = sizeof cb;
    cb.progress = cb_progress, cb.metrics = cb_metrics, cb.checkpoint = cb_checkpoint;
    cb.should_stop = cb_stop;
    return cb;
}

/* ---------------------------------------------------------------- tests */

static void loop_equals_by_hand(void) {
    for (int accum = 1; accum <= 3; accum += 2) {
        qkv_train_options o = base_options(6);
        o.accum = accum;
        qkv_trainer *a = tiny(), *b = tiny(), *c = tiny();
        qkv_train_callbacks cb = callbacks();
        seen s = {0};
        CHECK_OK(qkv_train_run(NULL, a, &o, &cb, &s));
        CHECK_EQ_INT(qkv_trainer_steps(a), 6);
        double losses[6];
        by_hand(b, &o, 0, losses);
        CHECK_MSG(same_weights(a, b), "accum %d: loop and by-hand weights differ", accum);
        CHECK_EQ_INT(s.n_progress, 6);
        for (int i = 0; i < 6 && i < s.n_progress; i++) {
            CHECK_EQ_INT(s.progress[i], i + 1);
            CHECK_MSG(s.loss[i] == losses[i], "accum %d step %d: loss %.9g vs %.9g", accum, i,
                      s.loss[i], losses[i]);
        }
        /* the comparison can fail: another batch order gives other weights */
        by_hand(c, &o, 1, NULL);
        CHECK(!same_weights(a, c));
        /* ZeRO-1 in one process: nothing to shard, the same bits */
        qkv_trainer *z = tiny();
        qkv_train_options oz = o;
        oz.zero = 1;
        CHECK_OK(qkv_train_run(NULL, z, &oz, NULL, NULL));
        CHECK_MSG(same_weights(a, z), "accum %d: zero = 1 alone changed the weights", accum);
        CHECK(qkv_trainer_optimizer_bytes(z) >= 8 * (size_t)qkv_trainer_numel(z) &&
              qkv_trainer_optimizer_bytes(z) == qkv_trainer_optimizer_bytes(a));
        CHECK(qkv_trainer_optimizer_bytes(NULL) == 0);
        qkv_trainer_free(z);
        /* no run directory, no validation: no checkpoints, no EVAL lines, no replay */
        CHECK_EQ_INT(s.n_ckpt, 0);
        CHECK_EQ_INT(s.n_eval, 0);
        CHECK_EQ_INT(s.n_step, 6);
        CHECK_EQ_INT(s.n_replayed, 0);
        CHECK_EQ_INT(s.bad_order, 0);
        CHECK_EQ_INT(s.polls, 7); /* before each step and after the last */
        /* nothing left to do: OK, no step */
        seen s2 = {0};
        CHECK_OK(qkv_train_run(NULL, a, &o, &cb, &s2));
        CHECK_EQ_INT(s2.n_progress, 0);
        CHECK_EQ_INT(qkv_trainer_steps(a), 6);
        qkv_trainer_free(a), qkv_trainer_free(b), qkv_trainer_free(c);
    }
}

static void run_directory(void) {
    char dir[300];
    snprintf(dir, sizeof dir, "%s/run", g_tmp);
    qkv_train_options o = base_options(10);
    o.val = g_val, o.eval_every = 4, o.eval_batches = 3;
    o.run_dir = dir, o.save_every = 3, o.keep = 2;
    o.checkpoint_json = "{\"who\": \"test_train_loop\"}";
    qkv_trainer *t = tiny();
    qkv_train_callbacks cb = callbacks();
    seen s = {0};
    CHECK_OK(qkv_train_run(NULL, t, &o, &cb, &s));
    CHECK_EQ_INT(s.n_step, 10);
    CHECK_EQ_INT(s.n_eval, 3); /* 4, 8 and the last */
    CHECK(s.n_eval == 3 && s.eval_lines[0] == 4 && s.eval_lines[1] == 8 && s.eval_lines[2] == 10);
    CHECK(s.n_ckpt == 4 && s.ckpts[0] == 3 && s.ckpts[1] == 6 && s.ckpts[2] == 9 &&
          s.ckpts[3] == 10);
    for (int i = 0; i < 10 && i < s.n_step; i++) CHECK_EQ_INT(s.step_lines[i], i + 1);
    CHECK_EQ_INT(s.bad_order, 0);
    CHECK_EQ_INT(count_ckpts(dir), 2);
    CHECK(exists(dir, "ckpt_00000010.safetensors") && exists(dir, "ckpt_00000009.safetensors"));
    CHECK(!exists(dir, "ckpt_00000006.safetensors"));
    CHECK_EQ_INT(qkv_train_latest_checkpoint(dir), 10);
    CHECK_EQ_INT(count_lines(dir, "\"loss\""), 10);
    CHECK_EQ_INT(count_lines(dir, "\"val_loss\""), 3);
    char *m = metrics_untimed(dir);
    CHECK(strstr(m, "{\"step\": 1, \"loss\": ") == m);
    CHECK(strstr(m, "\"lr\": ") && strstr(m, "\"grad_norm\": ") && strstr(m, "\"val_ppl\": "));
    free(m);
    /* the checkpoint carries the caller's JSON and restores to the same weights */
    qkv_trainer *r = NULL;
    char *user = NULL;
    CHECK_OK(qkv_train_resume(dir, &r, &user));
    CHECK(user && strstr(user, "test_train_loop"));
    CHECK(r && qkv_trainer_steps(r) == 10 && same_weights(r, t));
    qkv_free(user);
    qkv_trainer_free(r);
    /* a fresh trainer may not write into a directory holding later checkpoints */
    qkv_trainer *f = tiny();
    CHECK_STATUS(qkv_train_run(NULL, f, &o, NULL, NULL), QKV_ERR_INVALID_ARG);
    CHECK(strstr(qkv_last_error(), "step 10") != NULL);
    CHECK_EQ_INT(count_ckpts(dir), 2);
    qkv_trainer_free(f);
    qkv_trainer_free(t);
}

static void stop_and_resume(void) {
    char da[300], db[300];
    snprintf(da, sizeof da, "%s/a", g_tmp);
    snprintf(db, sizeof db, "%s/b", g_tmp);
    qkv_train_options o = base_options(12);
    o.accum = 2, o.val = g_val, o.eval_every = 3, o.eval_batches = 2;
    o.save_every = 4, o.keep = 3;
    qkv_train_callbacks cb = callbacks();
    /* uninterrupted */
    o.run_dir = da;
    qkv_trainer *a = tiny();
    seen sa = {0};
    CHECK_OK(qkv_train_run(NULL, a, &o, &cb, &sa));
    /* stopped after step 5 (not a save_every step), then resumed */
    o.run_dir = db;
    qkv_trainer *b = tiny();
    seen sb = {0};
    sb.stop_after = 5;
    CHECK_STATUS(qkv_train_run(NULL, b, &o, &cb, &sb), QKV_ERR_INTERRUPTED);
    CHECK_EQ_INT(qkv_trainer_steps(b), 5);
    CHECK_EQ_INT(sb.n_progress, 5);
    CHECK(exists(db, "ckpt_00000005.safetensors") && exists(db, "ckpt_00000004.safetensors"));
    CHECK(sb.n_ckpt == 2 && sb.ckpts[1] == 5);
    CHECK_EQ_INT(qkv_train_latest_checkpoint(db), 5);
    qkv_trainer_free(b);
    b = NULL;
    CHECK_OK(qkv_train_resume(db, &b, NULL));
    if (!b) return;
    CHECK_EQ_INT(qkv_trainer_steps(b), 5);
    seen sr = {0};
    CHECK_OK(qkv_train_run(NULL, b, &o, &cb, &sr));
    CHECK_EQ_INT(sr.n_replayed, 6); /* steps 1..5 and the validation of step 3 */
    CHECK_EQ_INT(sr.n_progress, 7);
    CHECK(sr.n_progress > 0 && sr.progress[0] == 6);
    CHECK_MSG(same_weights(a, b), "resumed weights differ from the uninterrupted run's");
    char *ma = metrics_untimed(da), *mb = metrics_untimed(db);
    CHECK_MSG(strcmp(ma, mb) == 0, "metrics differ:\n%s---\n%s", ma, mb);
    free(ma), free(mb);
    /* the resumed run's losses are the uninterrupted run's */
    for (int i = 0; i < 7 && i < sr.n_progress; i++) CHECK(sr.loss[i] == sa.loss[5 + i]);
    qkv_trainer_free(b);
    /* resuming the finished run from step 4 (its later checkpoints gone): metrics.jsonl is cut
     * back to step 4 first, so the finished file equals the uninterrupted one again */
    char p[400];
    snprintf(p, sizeof p, "%s/ckpt_00000012.safetensors", da);
    unlink(p);
    snprintf(p, sizeof p, "%s/ckpt_00000008.safetensors", da);
    unlink(p);
    ma = metrics_untimed(da);
    CHECK_OK(qkv_train_resume(da, &b, NULL));
    if (!b) return;
    CHECK_EQ_INT(qkv_trainer_steps(b), 4);
    seen s4 = {0};
    o.run_dir = da;
    CHECK_OK(qkv_train_run(NULL, b, &o, &cb, &s4));
    CHECK_EQ_INT(s4.n_replayed, 5); /* steps 1..4 and the validation of step 3 */
    CHECK_MSG(same_weights(a, b), "weights after resuming from step 4 differ");
    mb = metrics_untimed(da);
    CHECK_MSG(strcmp(ma, mb) == 0, "metrics differ:\n%s---\n%s", ma, mb);
    free(ma), free(mb);
    qkv_trainer_free(b);
    qkv_trainer_free(a);
}

static int stop_always(void *user) {
    (void)user;
    return 1;
}

static void stop_before_first_step(void) {
    char dir[300];
    snprintf(dir, sizeof dir, "%s/first", g_tmp);
    qkv_train_options o = base_options(5);
    o.run_dir = dir;
    qkv_train_callbacks cb = callbacks();
    cb.should_stop = stop_always;
    qkv_trainer *t = tiny(), *fresh = tiny();
    seen s = {0};
    CHECK_STATUS(qkv_train_run(NULL, t, &o, &cb, &s), QKV_ERR_INTERRUPTED);
    CHECK_EQ_INT(s.n_progress, 0);
    CHECK_EQ_INT(qkv_trainer_steps(t), 0);
    CHECK(exists(dir, "ckpt_00000000.safetensors"));
    CHECK(same_weights(t, fresh));
    /* without a run directory nothing is written, and it still stops */
    o.run_dir = NULL;
    CHECK_STATUS(qkv_train_run(NULL, t, &o, &cb, &s), QKV_ERR_INTERRUPTED);
    qkv_trainer_free(t), qkv_trainer_free(fresh);
}

static void nan_guard(void) {
    char dir[300], dir2[300];
    snprintf(dir, sizeof dir, "%s/nan", g_tmp);
    snprintf(dir2, sizeof dir2, "%s/nan2", g_tmp);
    qkv_train_callbacks cb = callbacks();
    /* A poisoned weight stops the very first step. A NaN in wpe[0][0] (read by every
     * sequence) makes the loss NaN; today an infinite query bias leaves the loss finite and
     * makes the gradient norm NaN (the softmax absorbs it, its gradient does not): the guard
     * must catch either. */
    static const struct {
        const char *name;
        float value;
    } poison[] = {{"transformer.wpe.weight", NAN}, {"transformer.h.1.attn.c_attn.bias", INFINITY}};
    for (int c = 0; c < 2; c++) {
        qkv_train_options o = base_options(5);
        o.run_dir = dir, o.save_every = 1, o.val = g_val, o.eval_every = 1;
        qkv_trainer *t = tiny();
        qkv_param_info p = {.struct_size = sizeof p};
        int found = 0;
        for (size_t i = 0; i < qkv_trainer_param_count(t); i++) {
            CHECK_OK(qkv_trainer_param(t, i, &p));
            if (strcmp(p.name, poison[c].name) == 0) p.data[0] = poison[c].value, found = 1;
        }
        CHECK(found);
        int64_t n0;
        float *before = weights(t, &n0);
        seen s = {0};
        CHECK_STATUS(qkv_train_run(NULL, t, &o, &cb, &s), QKV_ERR_NOT_FINITE);
        CHECK(strstr(qkv_last_error(), "step 1: the loss") != NULL);
        CHECK(strstr(qkv_last_error(), "not finite") != NULL);
        printf("poisoned %s: %s\n", poison[c].name, qkv_last_error());
        CHECK_EQ_INT(qkv_trainer_steps(t), 0);
        CHECK_EQ_INT(s.n_progress, 0);
        CHECK_EQ_INT(s.n_step + s.n_eval + s.n_ckpt, 0);
        CHECK_EQ_INT(count_ckpts(dir), 0);
        CHECK_EQ_INT(count_lines(dir, "\"step\""), 0);
        float *after = weights(t, &n0);
        CHECK(memcmp(before, after, (size_t)n0 * sizeof *after) == 0);
        free(before), free(after);
        qkv_trainer_free(t);
    }
    qkv_train_options o;
    qkv_trainer *t;
    int64_t n0;

    /* an absurd learning rate: the weights blow up after the first update; the step whose loss
     * or norm is not finite changes nothing and writes nothing */
    o = base_options(20);
    o.run_dir = dir2, o.save_every = 1, o.keep = 100, o.lr = 1e30, o.warmup = 0, o.clip = 0;
    t = tiny();
    seen s2 = {0};
    s2.t = t;
    CHECK_STATUS(qkv_train_run(NULL, t, &o, &cb, &s2), QKV_ERR_NOT_FINITE);
    int64_t k = qkv_trainer_steps(t);
    CHECK_MSG(k >= 1 && k < 20, "stopped after %lld steps", (long long)k);
    CHECK_EQ_INT(s2.n_progress, k);
    CHECK_EQ_INT(count_ckpts(dir2), k);
    CHECK_EQ_INT(qkv_train_latest_checkpoint(dir2), k);
    CHECK_EQ_INT(count_lines(dir2, "\"loss\""), k);
    if (s2.snapshot) {
        float *w = weights(t, &n0);
        CHECK_MSG(memcmp(w, s2.snapshot, (size_t)n0 * sizeof *w) == 0,
                  "the failing step changed the weights");
        free(w);
    }
    free(s2.snapshot);
    qkv_trainer_free(t);
}

static void bad_options(void) {
    qkv_trainer *t = tiny();
    qkv_train_options o = base_options(2);
    qkv_train_callbacks cb = callbacks();
    o.struct_size = 0;
    CHECK_STATUS(qkv_train_run(NULL, t, &o, NULL, NULL), QKV_ERR_INVALID_ARG);
    CHECK(strstr(qkv_last_error(), "struct_size") != NULL);
    o.struct_size = sizeof o + 8;
    CHECK_STATUS(qkv_train_run(NULL, t, &o, NULL, NULL), QKV_ERR_INVALID_ARG);
    o.struct_size = sizeof o;
    cb.struct_size = 0;
    CHECK_STATUS(qkv_train_run(NULL, t, &o, &cb, NULL), QKV_ERR_INVALID_ARG);
    cb.struct_size = sizeof cb + 16;
    CHECK_STATUS(qkv_train_run(NULL, t, &o, &cb, NULL), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_train_run(NULL, NULL, &o, NULL, NULL), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_train_run(NULL, t, NULL, NULL, NULL), QKV_ERR_INVALID_ARG);
    struct {
        const char *what;
        qkv_train_options o;
    } bad[9];
    for (int i = 0; i < 9; i++) bad[i].o = base_options(2);
    bad[0].what = "seq", bad[0].o.seq = P + 1;
    bad[1].what = "train", bad[1].o.train = NULL;
    bad[2].what = "batch", bad[2].o.batch = 0;
    bad[3].what = "accum", bad[3].o.accum = 0;
    bad[4].what = "keep", bad[4].o.keep = 0;
    bad[5].what = "lr", bad[5].o.lr = NAN;
    bad[6].what = "beta", bad[6].o.beta2 = 1.0;
    bad[7].what = "decay", bad[7].o.decay = (qkv_lr_decay)7;
    bad[8].what = "zero", bad[8].o.zero = 2;
    for (int i = 0; i < 9; i++) {
        qkv_status s = qkv_train_run(NULL, t, &bad[i].o, NULL, NULL);
        CHECK_MSG(s == QKV_ERR_INVALID_ARG, "bad %s: %s", bad[i].what, qkv_strerror(s));
    }
    CHECK_EQ_INT(qkv_trainer_steps(t), 0);
    /* the defaults are the documented ones */
    qkv_train_options d;
    memset(&d, 0xff, sizeof d);
    qkv_train_options_init(&d);
    CHECK(d.struct_size == sizeof d && d.batch == 8 && d.seq == 128 && d.accum == 1 &&
          d.steps == 1000 && d.seed == 1234 && d.lr == 1e-3 && d.decay == QKV_LR_COSINE &&
          d.keep == 3 && d.save_every == 200 && d.eval_every == 100 && !d.run_dir && !d.train);
    /* resuming from nothing */
    qkv_trainer *r = (qkv_trainer *)&d;
    char empty[300];
    snprintf(empty, sizeof empty, "%s/empty", g_tmp);
    mkdir(empty, 0755);
    CHECK_STATUS(qkv_train_resume(empty, &r, NULL), QKV_ERR_NOT_FOUND);
    CHECK(r == NULL);
    CHECK_EQ_INT(qkv_train_latest_checkpoint(empty), -1);
    CHECK_EQ_INT(qkv_train_latest_checkpoint("/nonexistent/qkv"), -1);
    qkv_trainer_free(t);
}

int main(void) {
    snprintf(g_tmp, sizeof g_tmp, "%s/train_loop_tmp.%ld", QKV_BINARY_DIR, (long)getpid());
    test_rm_rf(g_tmp);
    mkdir(g_tmp, 0755);
    char data[300];
    snprintf(data, sizeof data, "%s/data", g_tmp);
    make_dataset(data);
    CHECK_OK(qkv_dataset_open(data, QKV_SPLIT_TRAIN, &g_train));
    CHECK_OK(qkv_dataset_open(data, QKV_SPLIT_VAL, &g_val));
    if (!g_train || !g_val) return test_finish("train_loop");
    loop_equals_by_hand();
    run_directory();
    stop_and_resume();
    stop_before_first_step();
    nan_guard();
    bad_options();
    qkv_dataset_close(g_train);
    qkv_dataset_close(g_val);
    if (!test_failures_) test_rm_rf(g_tmp);
    return test_finish("train_loop");
}
