/* test_attribution.c — gradient × input and integrated gradients (qkv_trainer_attribute) of a
 * classifier's logit (tiny BertForSequenceClassification, a text pair), a decoder's next-token
 * logit (tiny GPT-2 and Llama) and the cosine similarity of mean-pooled embeddings (tiny BERT;
 * all-MiniLM-L6-v2 when installed) against transformers + torch autograd in float64
 * (tests/fixtures/attribution, tools/gen_attribution.py): both quadrature rules, the zero and a
 * token baseline, f at the input and at the baselines; the call leaves the trainer's gradients
 * and trainable flags as they were; hostile options. Per QKV_ARCH. */
#include "fixture_util.h"
#include "test.h"
#include "test_arch.h"

#include <string.h>
#include <sys/stat.h>

#define FIX QKV_SOURCE_DIR "/tests/fixtures"
#define TOL 1e-4

/* max |a − b| / max |b| with a reference in double. */
static double rel_err(const float *a, const double *b, int64_t n) {
    double worst = 0, scale = 0;
    for (int64_t i = 0; i < n; i++) {
        worst = fmax(worst, fabs((double)a[i] - b[i]));
        scale = fmax(scale, fabs(b[i]));
    }
    return worst / (scale > 1e-30 ? scale : 1e-30);
}

static double worst_seen = 0;

static void check(const char *what, const char *name, const float *got, const double *want,
                  int64_t T) {
    double e = rel_err(got, want, T);
    worst_seen = fmax(worst_seen, e);
    CHECK_MSG(e <= TOL, "%s: %s off by %.3g (relative to the largest)", what, name, e);
    printf("  %-28s %-18s max error %.2e relative\n", what, name, e);
}

/* f values: relative to max(|f|, 1e-3) (a cosine near 0 would make a relative error
 * meaningless) */
static void check_f(const char *what, const char *name, double got, double want) {
    double e = fabs(got - want) / fmax(fabs(want), 1e-3);
    CHECK_MSG(e <= 1e-5, "%s: %s = %.9g, transformers %.9g", what, name, got, want);
}

/* The trainer's gradient buffers and flags, to see that an attribution leaves them alone. */
static float *snapshot(qkv_trainer *t, int *flags) {
    size_t n = qkv_trainer_param_count(t);
    int64_t total = qkv_trainer_numel(t), off = 0;
    float *g = malloc(sizeof(float) * (size_t)total);
    for (size_t i = 0; i < n; i++) {
        qkv_param_info pi = {.struct_size = sizeof pi};
        CHECK_OK(qkv_trainer_param(t, i, &pi));
        memcpy(g + off, pi.grad, sizeof(float) * (size_t)pi.numel);
        off += pi.numel;
        flags[i] = pi.trainable;
    }
    return g;
}

static void run_case(const char *what, qkv_trainer *t, const char *fixture) {
    qkv_safetensors *st = fix_open(fixture);
    const qkv_st_tensor *ti = qkv_safetensors_find(st, "ids");
    const int64_t T = ti->shape[0];
    const int32_t *ids = ti->data, *types = fix_need(st, "type_ids");
    const int64_t index = *(const int64_t *)fix_need(st, "index"),
                  steps = *(const int64_t *)fix_need(st, "steps"),
                  base = *(const int64_t *)fix_need(st, "baseline_id");
    const double *f = fix_need(st, "f"), *gxi = fix_need(st, "gxi"),
                 *ig_tz = fix_need(st, "ig_trapezoid_zero"),
                 *ig_rt = fix_need(st, "ig_right_token");
    const qkv_st_tensor *ci = qkv_safetensors_find(st, "compare_ids");
    const char *arch = qkv_trainer_arch(t);
    const int decoder = strcmp(arch, "gpt2") == 0 || strcmp(arch, "llama") == 0;

    /* a non-zero gradient and one frozen tensor, which the call must leave alone */
    qkv_param_info p0 = {.struct_size = sizeof p0};
    CHECK_OK(qkv_trainer_param(t, 1, &p0));
    for (int64_t i = 0; i < p0.numel; i++) p0.grad[i] = 0.25f * (float)(i % 7);
    CHECK_OK(qkv_trainer_set_trainable(t, 2, 0));
    int *flags0 = calloc(qkv_trainer_param_count(t), sizeof(int)),
        *flags1 = calloc(qkv_trainer_param_count(t), sizeof(int));
    float *g0 = snapshot(t, flags0);

    qkv_attr_options o;
    qkv_attr_options_init(&o);
    o.target = ci ? QKV_ATTR_SIMILARITY : decoder ? QKV_ATTR_NEXT_TOKEN : QKV_ATTR_LOGIT;
    o.index = index;
    if (ci) {
        o.compare_ids = ci->data;
        o.compare_type_ids = fix_need(st, "compare_type_ids");
        o.compare_T = ci->shape[0];
    }
    o.ig_steps = steps;
    float *sal = malloc(sizeof(float) * (size_t)T), *ig = malloc(sizeof(float) * (size_t)T);
    qkv_attr_result r = {.struct_size = sizeof r};
    CHECK_OK(qkv_trainer_attribute(NULL, t, ids, decoder ? NULL : types, T, &o, sal, ig, &r));
    check(what, "gradient x input", sal, gxi, T);
    check(what, "IG trapezoid/zero", ig, ig_tz, T);
    check_f(what, "f(input)", r.f_input, f[0]);
    check_f(what, "f(zero baseline)", r.f_baseline, f[1]);
    CHECK_EQ_INT(r.index, index);
    CHECK_EQ_INT(r.passes, steps + 1 + (ci ? 1 : 0));
    double sum = 0;
    for (int64_t i = 0; i < T; i++) sum += ig[i];
    CHECK_NEAR(r.ig_sum, sum, 1e-5 * fmax(1.0, fabs(sum)), 0);
    printf("  %-28s completeness gap (trapezoid, zero) %.3g\n", what,
           r.ig_sum - (r.f_input - r.f_baseline));

    o.ig_rule = QKV_IG_RIGHT;
    o.baseline_id = (int32_t)base;
    o.index = -1; /* the prediction: for the logits of the fixtures, the one they explain */
    if (!ci && !decoder) o.index = index; /* the classifier's fixture explains label 1 */
    if (ci) o.index = 3;                  /* ignored by the similarity */
    CHECK_OK(qkv_trainer_attribute(NULL, t, ids, decoder ? NULL : types, T, &o, NULL, ig, &r));
    check(what, "IG right/token", ig, ig_rt, T);
    check_f(what, "f(token baseline)", r.f_baseline, f[2]);
    CHECK_EQ_INT(r.index, ci ? -1 : index);

    /* m = 1 with the right rule and the zero baseline is gradient × input itself */
    o.ig_steps = 1;
    o.baseline_id = -1;
    o.index = index;
    CHECK_OK(qkv_trainer_attribute(NULL, t, ids, decoder ? NULL : types, T, &o, NULL, ig, &r));
    check(what, "IG right/zero, m = 1", ig, gxi, T);

    float *g1 = snapshot(t, flags1);
    CHECK(memcmp(g0, g1, sizeof(float) * (size_t)qkv_trainer_numel(t)) == 0);
    CHECK(memcmp(flags0, flags1, sizeof(int) * qkv_trainer_param_count(t)) == 0);
    CHECK_OK(qkv_trainer_set_trainable(t, 2, 1));
    qkv_trainer_zero_grad(t);
    free(g0), free(g1), free(flags0), free(flags1), free(sal), free(ig);
    qkv_safetensors_close(st);
}

static void hostile(qkv_trainer *cls, qkv_trainer *gpt, qkv_trainer *bert) {
    const int32_t ids[4] = {1, 5, 9, 2};
    float s[4], ig[4];
    qkv_attr_options o;
    qkv_attr_options_init(&o);
    CHECK_EQ_INT(o.index, -1);
    CHECK_EQ_INT(o.baseline_id, -1);
    o.target = QKV_ATTR_NEXT_TOKEN;
    CHECK_STATUS(qkv_trainer_attribute(NULL, cls, ids, NULL, 4, &o, s, NULL, NULL),
                 QKV_ERR_UNSUPPORTED);
    o.target = QKV_ATTR_LOGIT;
    CHECK_STATUS(qkv_trainer_attribute(NULL, gpt, ids, NULL, 4, &o, s, NULL, NULL),
                 QKV_ERR_UNSUPPORTED);
    CHECK(strstr(qkv_last_error(), "gpt2") != NULL);
    CHECK_STATUS(qkv_trainer_attribute(NULL, bert, ids, NULL, 4, &o, s, NULL, NULL),
                 QKV_ERR_UNSUPPORTED);
    o.target = 7;
    CHECK_STATUS(qkv_trainer_attribute(NULL, cls, ids, NULL, 4, &o, s, NULL, NULL),
                 QKV_ERR_INVALID_ARG);
    o.target = QKV_ATTR_SIMILARITY; /* no second sequence */
    CHECK_STATUS(qkv_trainer_attribute(NULL, bert, ids, NULL, 4, &o, s, NULL, NULL),
                 QKV_ERR_INVALID_ARG);
    CHECK(strstr(qkv_last_error(), "compare") != NULL);
    o.compare_ids = ids;
    o.compare_T = 1 << 20; /* longer than the model */
    CHECK_STATUS(qkv_trainer_attribute(NULL, bert, ids, NULL, 4, &o, s, NULL, NULL),
                 QKV_ERR_INVALID_ARG);
    o.compare_T = 4;
    o.ig_steps = 3; /* no ig array */
    CHECK_STATUS(qkv_trainer_attribute(NULL, bert, ids, NULL, 4, &o, s, NULL, NULL),
                 QKV_ERR_INVALID_ARG);
    o.ig_steps = -1;
    CHECK_STATUS(qkv_trainer_attribute(NULL, bert, ids, NULL, 4, &o, s, ig, NULL),
                 QKV_ERR_INVALID_ARG);
    o.ig_steps = 2;
    o.ig_rule = 5;
    CHECK_STATUS(qkv_trainer_attribute(NULL, bert, ids, NULL, 4, &o, s, ig, NULL),
                 QKV_ERR_INVALID_ARG);
    o.ig_rule = QKV_IG_RIGHT;
    o.baseline_id = 1 << 30;
    CHECK_STATUS(qkv_trainer_attribute(NULL, bert, ids, NULL, 4, &o, s, ig, NULL),
                 QKV_ERR_INVALID_ARG);
    CHECK(strstr(qkv_last_error(), "baseline_id") != NULL);
    o.baseline_id = -1;
    const int32_t far[4] = {1, 5, 1 << 30, 2};
    CHECK_STATUS(qkv_trainer_attribute(NULL, bert, far, NULL, 4, &o, s, ig, NULL),
                 QKV_ERR_INVALID_ARG);
    o.compare_ids = far;
    CHECK_STATUS(qkv_trainer_attribute(NULL, bert, ids, NULL, 4, &o, s, ig, NULL),
                 QKV_ERR_INVALID_ARG);
    const int32_t bad_types[4] = {0, 9, 0, 0};
    o.compare_ids = ids;
    CHECK_STATUS(qkv_trainer_attribute(NULL, bert, ids, bad_types, 4, &o, s, ig, NULL),
                 QKV_ERR_INVALID_ARG);
    CHECK_OK(qkv_trainer_attribute(NULL, bert, ids, NULL, 4, &o, s, ig, NULL));
    qkv_attr_options_init(&o);
    o.target = QKV_ATTR_NEXT_TOKEN;
    o.index = 1 << 30;
    CHECK_STATUS(qkv_trainer_attribute(NULL, gpt, ids, NULL, 4, &o, s, NULL, NULL),
                 QKV_ERR_INVALID_ARG);
    o.index = -1;
    CHECK_STATUS(qkv_trainer_attribute(NULL, gpt, ids, ids, 4, &o, s, NULL, NULL),
                 QKV_ERR_INVALID_ARG); /* token types are for encoders */
    CHECK_STATUS(qkv_trainer_attribute(NULL, gpt, ids, NULL, 0, &o, s, NULL, NULL),
                 QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_trainer_attribute(NULL, gpt, NULL, NULL, 4, &o, s, NULL, NULL),
                 QKV_ERR_INVALID_ARG);
    /* NULL options: the defaults (a classifier's predicted logit, gradient × input) */
    CHECK_OK(qkv_trainer_attribute(NULL, cls, ids, NULL, 4, NULL, s, NULL, NULL));
    /* a newer caller's longer struct with a field this library does not know */
    unsigned char big[sizeof(qkv_attr_options) + 8];
    memset(big, 0, sizeof big);
    memcpy(big, &o, sizeof o);
    size_t sz = sizeof big;
    memcpy(big, &sz, sizeof sz);
    big[sizeof big - 1] = 1;
    CHECK_STATUS(qkv_trainer_attribute(NULL, gpt, ids, NULL, 4, (const qkv_attr_options *)big, s,
                                       NULL, NULL),
                 QKV_ERR_INVALID_ARG);
}

int main(void) {
    test_use_arch_from_env();
    qkv_trainer *cls = NULL, *gpt = NULL, *llama = NULL, *bert = NULL;
    CHECK_OK(qkv_trainer_load_hf_classifier(FIX "/cls/pair", NULL, &cls));
    CHECK_OK(qkv_trainer_load_hf(FIX "/models/gpt2_tiny", &gpt));
    CHECK_OK(qkv_trainer_load_hf(FIX "/models/llama_tiny", &llama));
    CHECK_OK(qkv_trainer_load_hf(FIX "/attnmap/bert_tiny", &bert));
    if (!cls || !gpt || !llama || !bert) return test_finish("attribution");
    run_case("classifier logit", cls, FIX "/attribution/cls_pair.safetensors");
    run_case("GPT-2 next token", gpt, FIX "/attribution/gpt2_next.safetensors");
    run_case("Llama next token", llama, FIX "/attribution/llama_next.safetensors");
    run_case("BERT similarity", bert, FIX "/attribution/bert_sim.safetensors");
    struct stat sb;
    if (stat(QKV_SOURCE_DIR "/models/all-MiniLM-L6-v2/model.safetensors", &sb) == 0) {
        qkv_trainer *mini = NULL;
        CHECK_OK(qkv_trainer_load_hf(QKV_SOURCE_DIR "/models/all-MiniLM-L6-v2", &mini));
        if (mini) run_case("MiniLM similarity", mini, FIX "/attribution/minilm_sim.safetensors");
        qkv_trainer_free(mini);
    } else {
        printf("  all-MiniLM-L6-v2 is not installed: its case is left out\n");
    }
    hostile(cls, gpt, bert);
    printf("largest error %.2e relative (tolerance %.0e)\n", worst_seen, TOL);
    qkv_trainer_free(cls), qkv_trainer_free(gpt), qkv_trainer_free(llama), qkv_trainer_free(bert);
    return test_finish("attribution");
}
