/* attnmap_check.h — one golden attention-map file (tools/gen_attention_maps.py) against qkv:
 * the maps of qkv_model_attention / qkv_lm_attention against transformers' output_attentions
 * (float64, one right-padded batch), and rollout and per-head summaries against the numpy
 * reference, both on the fixture's own maps (the formulas) and on qkv's (end to end). Shared by
 * test_attnmap.c (tiny random models) and test_attnmap_minilm.c. */
#ifndef QKV_TEST_ATTNMAP_CHECK_H
#define QKV_TEST_ATTNMAP_CHECK_H

#include "fixture_util.h"
#include "qkv.h"
#include "test.h"

#include <math.h>
#include <string.h>

/* max |a - b| over n floats */
static inline double am_max_diff(const float *a, const float *b, size_t n) {
    double w = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        w = d > w ? d : w;
    }
    return w;
}

/* The stats of every head of every sequence of maps p against the fixture's [S, L, H, 5]. */
static inline double am_stats_diff(const float *p, const int32_t *marks_i32, const int64_t *lens,
                                   int64_t S, int64_t L, int64_t H, const double *want) {
    double worst = 0;
    size_t po = 0, to = 0;
    for (int64_t s = 0; s < S; s++) {
        const int64_t T = lens[s];
        uint8_t marks[1024];
        for (int64_t j = 0; j < T && j < 1024; j++) marks[j] = (uint8_t)marks_i32[to + (size_t)j];
        for (int64_t lh = 0; lh < L * H; lh++) {
            qkv_head_stats hs = {.struct_size = sizeof hs};
            CHECK_OK(qkv_attention_head_stats(p + po + (size_t)(lh * T * T), T, marks, &hs));
            const double got[5] = {hs.entropy, hs.distance, hs.cls, hs.sep, hs.prev};
            const double *w = want + ((size_t)s * (size_t)(L * H) + (size_t)lh) * 5;
            for (int k = 0; k < 5; k++) {
                double d = fabs(got[k] - w[k]) / (1.0 > fabs(w[k]) ? 1.0 : fabs(w[k]));
                worst = d > worst ? d : worst;
            }
            CHECK_EQ_INT(hs.rows, T);
        }
        po += (size_t)(L * H * T * T);
        to += (size_t)T;
    }
    return worst;
}

/* Rollout of every sequence of maps p against the fixture's packed [Σ T²]. */
static inline double am_rollout_diff(const float *p, const int64_t *lens, int64_t S, int64_t L,
                                     int64_t H, const float *want) {
    double worst = 0;
    size_t po = 0, ro = 0;
    for (int64_t s = 0; s < S; s++) {
        const int64_t T = lens[s];
        float *r = malloc(sizeof(float) * (size_t)(T * T));
        CHECK_OK(qkv_attention_rollout(p + po, L, H, T, r));
        double d = am_max_diff(r, want + ro, (size_t)(T * T));
        worst = d > worst ? d : worst;
        free(r);
        po += (size_t)(L * H * T * T);
        ro += (size_t)(T * T);
    }
    return worst;
}

/* Runs golden file `path` through a model: exactly one of m, lm. Tolerance 1e-5 on the maps. */
static inline void am_check_golden(const char *name, const char *path, const qkv_model *m,
                                   const qkv_lm *lm) {
    qkv_safetensors *st = fix_open(path);
    const qkv_st_tensor *tl = qkv_safetensors_find(st, "lens");
    CHECK(tl != NULL);
    if (!tl) return;
    const int64_t S = tl->shape[0];
    const int64_t *lens = tl->data;
    const int32_t *ids = fix_need(st, "ids"), *types = fix_need(st, "type_ids");
    const int32_t *marks = fix_need(st, "marks");
    const float *want = fix_need(st, "probs"), *want_roll = fix_need(st, "rollout");
    const double *want_stats = fix_need(st, "stats");
    const int64_t L = m ? qkv_model_num_layers(m) : qkv_lm_num_layers(lm);
    const int64_t H = m ? qkv_model_num_heads(m) : qkv_lm_num_heads(lm);
    size_t n = 0;
    CHECK_OK(qkv_attention_maps_len(L, H, lens, (size_t)S, &n));
    CHECK_EQ_INT((int64_t)n, qkv_safetensors_find(st, "probs")->shape[0]);
    float *p = malloc(sizeof(float) * n), *p1 = malloc(sizeof(float) * n);
    memset(p, 0xff, sizeof(float) * n); /* NaN: every element must be written */
    if (m)
        CHECK_OK(qkv_model_attention(NULL, m, ids, types, lens, (size_t)S, p, n));
    else
        CHECK_OK(qkv_lm_attention(NULL, lm, ids, lens, (size_t)S, p, n));
    double dmax = am_max_diff(p, want, n);
    CHECK_MSG(dmax <= 1e-5, "%s: maps differ from transformers by %.3g", name, dmax);

    /* rows are distributions; a decoder's keys after the query are exactly 0 */
    double worst_sum = 0;
    int leak = 0;
    for (int64_t s = 0, po = 0; s < S; po += L * H * lens[s] * lens[s], s++)
        for (int64_t r = 0; r < L * H * lens[s]; r++) {
            const int64_t T = lens[s], i = r % T;
            const float *row = p + po + r * T;
            double sum = 0;
            for (int64_t j = 0; j < T; j++) {
                sum += row[j];
                if (lm && j > i && row[j] != 0.0f) leak = 1;
            }
            worst_sum = fabs(sum - 1) > worst_sum ? fabs(sum - 1) : worst_sum;
        }
    CHECK_MSG(worst_sum < 1e-5, "%s: a row sums to 1 %+.3g", name, worst_sum);
    CHECK_MSG(!leak, "%s: a decoder query attends to a later token", name);

    /* each sequence alone gives its slice of the batch, bit for bit */
    int same = 1;
    for (int64_t s = 0, to = 0, po = 0; s < S;
         to += lens[s], po += L * H * lens[s] * lens[s], s++) {
        size_t ns = (size_t)(L * H * lens[s] * lens[s]);
        if (m)
            CHECK_OK(qkv_model_attention(NULL, m, ids + to, types + to, lens + s, 1, p1, ns));
        else
            CHECK_OK(qkv_lm_attention(NULL, lm, ids + to, lens + s, 1, p1, ns));
        same &= memcmp(p1, p + po, ns * sizeof(float)) == 0;
    }
    CHECK_MSG(same, "%s: a sequence alone differs from its slice of the batch", name);

    /* one thread and three: the same bits */
    qkv_runtime *rt1 = NULL, *rt3 = NULL;
    CHECK_OK(qkv_runtime_create(1, &rt1));
    CHECK_OK(qkv_runtime_create(3, &rt3));
    float *p3 = malloc(sizeof(float) * n);
    if (m) {
        CHECK_OK(qkv_model_attention(rt1, m, ids, types, lens, (size_t)S, p1, n));
        CHECK_OK(qkv_model_attention(rt3, m, ids, types, lens, (size_t)S, p3, n));
    } else {
        CHECK_OK(qkv_lm_attention(rt1, lm, ids, lens, (size_t)S, p1, n));
        CHECK_OK(qkv_lm_attention(rt3, lm, ids, lens, (size_t)S, p3, n));
    }
    CHECK_MSG(memcmp(p1, p3, n * sizeof(float)) == 0, "%s: 1 and 3 threads differ", name);
    qkv_runtime_free(rt1);
    qkv_runtime_free(rt3);
    free(p3);

    /* rollout and summaries: the formulas on the fixture's maps, then end to end on qkv's */
    double r_ref = am_rollout_diff(want, lens, S, L, H, want_roll);
    double r_qkv = am_rollout_diff(p, lens, S, L, H, want_roll);
    double s_ref = am_stats_diff(want, marks, lens, S, L, H, want_stats);
    double s_qkv = am_stats_diff(p, marks, lens, S, L, H, want_stats);
    CHECK_MSG(r_ref <= 1e-6, "%s: rollout of the fixture's maps off by %.3g", name, r_ref);
    CHECK_MSG(r_qkv <= 1e-5, "%s: rollout of qkv's maps off by %.3g", name, r_qkv);
    CHECK_MSG(s_ref <= 1e-6, "%s: head stats of the fixture's maps off by %.3g", name, s_ref);
    CHECK_MSG(s_qkv <= 1e-4, "%s: head stats of qkv's maps off by %.3g", name, s_qkv);
    printf("%s: %lld sequences, %lld layers x %lld heads: maps max |diff| %.3g; rollout %.3g "
           "(fixture maps) %.3g (qkv maps); head stats rel %.3g / %.3g\n",
           name, (long long)S, (long long)L, (long long)H, dmax, r_ref, r_qkv, s_ref, s_qkv);
    free(p);
    free(p1);
    qkv_safetensors_close(st);
}

#endif
