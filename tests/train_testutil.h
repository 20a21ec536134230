/* train_testutil.h — what the trainer tests (test_train_arch, test_train_cls) share: comparing
 * weights, gathering gradients, checking every gradient against a golden file, and running
 * tools/check_hf_export.py on an export. */
#ifndef QKV_TEST_TRAIN_TESTUTIL_H
#define QKV_TEST_TRAIN_TESTUTIL_H

#include "fixture_util.h"
#include "qkv.h"
#include "test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

/* The same parameter names and bit-identical values. */
static inline int tt_same_weights(qkv_trainer *a, qkv_trainer *b) {
    if (qkv_trainer_param_count(a) != qkv_trainer_param_count(b)) return 0;
    for (size_t i = 0; i < qkv_trainer_param_count(a); i++) {
        qkv_param_info p = {.struct_size = sizeof p}, q = {.struct_size = sizeof q};
        if (qkv_trainer_param(a, i, &p) != QKV_OK || qkv_trainer_param(b, i, &q) != QKV_OK ||
            strcmp(p.name, q.name) != 0 || p.numel != q.numel ||
            memcmp(p.data, q.data, (size_t)p.numel * sizeof(float)) != 0)
            return 0;
    }
    return 1;
}

/* Every gradient, in parameter order, in one malloc'ed buffer of *n floats. */
static inline float *tt_all_grads(qkv_trainer *t, int64_t *n) {
    *n = qkv_trainer_numel(t);
    float *g = malloc((size_t)*n * sizeof *g);
    int64_t o = 0;
    for (size_t i = 0; i < qkv_trainer_param_count(t); i++) {
        qkv_param_info p = {.struct_size = sizeof p};
        CHECK_OK(qkv_trainer_param(t, i, &p));
        memcpy(g + o, p.grad, (size_t)p.numel * sizeof(float));
        o += p.numel;
    }
    return g;
}

/* BERT's and Marian's attention key biases. */
static inline int tt_is_key_bias(const char *name) {
    return strstr(name, "self.key.bias") != NULL || strstr(name, "k_proj.bias") != NULL;
}

/* Every gradient of t within 1e-4 of the golden file's (relative to the tensor's scale); the
 * BERT key biases, whose true gradient is 0, must be noise-sized. Returns the number of
 * gradients compared; *worst / *worst_name the largest error. */
static inline size_t tt_check_grads(qkv_trainer *t, qkv_safetensors *gs, const char *label,
                                    double *worst, const char **worst_name) {
    double gq = 0;
    size_t n = 0;
    *worst = 0, *worst_name = "";
    for (size_t i = 0; i < qkv_trainer_param_count(t); i++) {
        qkv_param_info p = {.struct_size = sizeof p};
        CHECK_OK(qkv_trainer_param(t, i, &p));
        /* a frozen tensor without a golden gradient: a buffer (Marian's final_logits_bias) */
        if (!p.trainable && !qkv_safetensors_find(gs, p.name)) continue;
        const float *g = fix_need(gs, p.name);
        n++;
        if (tt_is_key_bias(p.name)) { /* true gradient 0: both sides are rounding noise */
            for (int64_t j = 0; j < p.numel; j++) gq = fmax(gq, fabs((double)p.grad[j]));
            continue;
        }
        double e = fix_rel_err(p.grad, g, p.numel);
        CHECK_MSG(e <= 1e-4, "%s: gradient of %s: rel err %.3g", label, p.name, e);
        if (e > *worst) *worst = e, *worst_name = p.name;
    }
    CHECK_MSG(gq <= 1e-6, "%s: key-bias gradient %.3g is not noise-sized", label, gq);
    return n;
}

/* tools/check_hf_export.py on the export `model` with `args`, its output printed; exit 77 (no
 * Python with torch and transformers) counts as a pass with its SKIP message. */
static inline void tt_hf_check(const char *tmpdir, const char *model, const char *args,
                               const char *label) {
    char cmd[8192];
    if (snprintf(cmd, sizeof cmd,
                 "%s/tests/run_python_check.sh torch,transformers %s/tools/check_hf_export.py %s "
                 "%s > %s/py.out 2>&1",
                 QKV_SOURCE_DIR, QKV_SOURCE_DIR, model, args, tmpdir) >= (int)sizeof cmd) {
        CHECK_MSG(0, "%s: the check's command line is too long", label);
        return;
    }
    fflush(stdout);
    int rc = system(cmd);
    rc = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
    snprintf(cmd, sizeof cmd, "cat %s/py.out", tmpdir);
    if (system(cmd) != 0) printf("(no output)\n");
    CHECK_MSG(rc == 0 || rc == 77, "%s: transformers on the export: exit %d", label, rc);
}

#endif
