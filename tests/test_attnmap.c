/* test_attnmap.c — attention maps of whole models (qkv_model_attention, qkv_lm_attention) on
 * tiny random BERT (a sentence pair with token types, sequences padded in the reference batch),
 * GPT-2 and Llama (GQA, RoPE) models against transformers' output_attentions=True, rollout and
 * per-head summaries against numpy (tests/fixtures/attnmap, tools/gen_attention_maps.py); that
 * asking for the maps does not change the forward's outputs; hostile arguments; gradient × input
 * saliency of a classifier's logits through the trainer's backward. Per QKV_ARCH. */
#include "attnmap_check.h"
#include "models/bert.h"
#include "models/gpt.h"
#include "models/kv_cache.h"
#include "models/lm.h"
#include "models/model.h"
#include "test_arch.h"

#define FIX QKV_SOURCE_DIR "/tests/fixtures/attnmap"
#define MODELS QKV_SOURCE_DIR "/tests/fixtures/models"

/* The encoder's hidden states and the decoder's logits with and without maps: the same bits. */
static void maps_do_not_change_the_forward(const qkv_model *m, const qkv_lm *lm) {
    const int32_t ids[12] = {1, 5, 9, 13, 2, 7, 3, 4, 8, 2, 11, 6};
    const int32_t types[12] = {0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 0, 0};
    const int64_t lens[2] = {10, 2};
    const int64_t C = m->bert->cfg.hidden_size, L = m->bert->cfg.num_layers,
                  H = m->bert->cfg.num_heads;
    float *h0 = malloc(sizeof(float) * 12 * (size_t)C),
          *h1 = malloc(sizeof(float) * 12 * (size_t)C);
    float *p = malloc(sizeof(float) * (size_t)(L * H * (100 + 4)));
    CHECK_OK(qkv__bert_forward(NULL, m->bert, ids, types, lens, 2, h0));
    CHECK_OK(qkv__bert_forward_probs(NULL, m->bert, ids, types, lens, 2, h1, p));
    CHECK(memcmp(h0, h1, sizeof(float) * 12 * (size_t)C) == 0);
    free(h0), free(h1), free(p);

    const qkv_gpt_config *c = &lm->gpt->cfg;
    const int64_t V = c->vocab_size;
    float *l0 = malloc(sizeof(float) * 12 * (size_t)V),
          *l1 = malloc(sizeof(float) * 12 * (size_t)V);
    p = malloc(sizeof(float) * (size_t)(c->num_layers * c->num_heads * (100 + 4)));
    for (int with = 0; with < 2; with++) {
        qkv_kv_cache kv[2];
        qkv_kv_cache *kvp[2] = {&kv[0], &kv[1]};
        for (int s = 0; s < 2; s++)
            CHECK_OK(
                qkv__kv_cache_init(&kv[s], c->num_layers, lens[s], c->num_kv_heads, c->head_dim));
        CHECK_OK(qkv__gpt_forward_probs(NULL, lm->gpt, kvp, ids, lens, 2, 1, with ? l1 : l0,
                                        with ? p : NULL));
        for (int s = 0; s < 2; s++) qkv__kv_cache_release(&kv[s]);
    }
    CHECK(memcmp(l0, l1, sizeof(float) * 12 * (size_t)V) == 0);
    free(l0), free(l1), free(p);
}

static void hostile(const qkv_model *m, const qkv_lm *lm) {
    const int32_t ids[4] = {1, 5, 9, 2};
    int64_t lens[1] = {4};
    const int64_t L = qkv_model_num_layers(m), H = qkv_model_num_heads(m);
    size_t n = 0;
    CHECK_OK(qkv_attention_maps_len(L, H, lens, 1, &n));
    CHECK_EQ_INT((int64_t)n, L * H * 16);
    float *p = malloc(sizeof(float) * n);
    CHECK_STATUS(qkv_model_attention(NULL, m, ids, NULL, lens, 1, p, n - 1), QKV_ERR_INVALID_ARG);
    CHECK(strstr(qkv_last_error(), "probs holds") != NULL);
    CHECK_STATUS(qkv_lm_attention(NULL, lm, ids, lens, 1, p, 3), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_model_attention(NULL, NULL, ids, NULL, lens, 1, p, n), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_model_attention(NULL, m, ids, NULL, lens, 0, p, n), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_lm_attention(NULL, lm, NULL, lens, 1, p, n), QKV_ERR_INVALID_ARG);
    int64_t bad[1] = {0};
    CHECK_STATUS(qkv_model_attention(NULL, m, ids, NULL, bad, 1, p, n), QKV_ERR_INVALID_ARG);
    bad[0] = qkv_model_max_tokens(m) + 1;
    CHECK_STATUS(qkv_model_attention(NULL, m, ids, NULL, bad, 1, p, n), QKV_ERR_INVALID_ARG);
    CHECK(strstr(qkv_last_error(), "tokens") != NULL);
    const int32_t far[4] = {1, 5, 100000, 2}; /* outside the vocabulary */
    CHECK_STATUS(qkv_model_attention(NULL, m, far, NULL, lens, 1, p, n), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_lm_attention(NULL, lm, far, lens, 1, p, n), QKV_ERR_INVALID_ARG);
    const int32_t tt[4] = {0, 0, 7, 0}; /* a token type the model lacks */
    CHECK_STATUS(qkv_model_attention(NULL, m, ids, tt, lens, 1, p, n), QKV_ERR_INVALID_ARG);
    /* sizes that overflow, refused before anything is allocated */
    int64_t huge[2] = {(int64_t)1 << 31, (int64_t)1 << 31};
    CHECK_STATUS(qkv_attention_maps_len(64, 64, huge, 2, &n), QKV_ERR_OVERFLOW);
    CHECK_STATUS(qkv_attention_maps_len(0, 1, lens, 1, &n), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_attention_maps_len(1, 1, NULL, 1, &n), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_attention_rollout(p, 1, 1, (int64_t)1 << 40, p), QKV_ERR_OVERFLOW);
    CHECK_STATUS(qkv_attention_rollout(NULL, 1, 1, 4, p), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_attention_rollout(p, 0, 1, 4, p), QKV_ERR_INVALID_ARG);
    qkv_head_stats hs = {.struct_size = sizeof hs};
    CHECK_STATUS(qkv_attention_head_stats(p, 0, NULL, &hs), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_attention_head_stats(p, 4, NULL, NULL), QKV_ERR_INVALID_ARG);
    CHECK_EQ_INT(qkv_model_num_layers(NULL), 0);
    CHECK_EQ_INT(qkv_lm_num_heads(NULL), 0);
    free(p);
}

/* A map whose rows are all masked (no key): left out of the means, not NaN. */
static void empty_rows(void) {
    const float p[9] = {0, 0, 0, 1, 0, 0, 0.5f, 0.5f, 0};
    const uint8_t marks[3] = {QKV_MARK_CLS, 0, QKV_MARK_SEP};
    qkv_head_stats hs = {.struct_size = sizeof hs};
    CHECK_OK(qkv_attention_head_stats(p, 3, marks, &hs));
    CHECK_EQ_INT(hs.rows, 2);
    CHECK_NEAR(hs.entropy, 0.5 * log(2.0), 1e-12, 0);
    CHECK_NEAR(hs.distance, (1.0 + 1.5) / 2, 1e-12, 0);
    CHECK_NEAR(hs.cls, (1.0 + 0.5) / 2, 1e-12, 0);
    CHECK_NEAR(hs.sep, 0.0, 1e-12, 0);
    CHECK_NEAR(hs.prev, (1.0 + 0.5) / 2, 1e-12, 0);
    /* an older, shorter struct: nothing written past its struct_size */
    unsigned char buf[sizeof(qkv_head_stats) + 8];
    memset(buf, 0xab, sizeof buf);
    size_t small = offsetof(qkv_head_stats, distance);
    memcpy(buf, &small, sizeof small);
    CHECK_OK(qkv_attention_head_stats(p, 3, marks, (qkv_head_stats *)buf));
    CHECK(buf[small] == 0xab && buf[sizeof buf - 1] == 0xab);
}

/* Gradient × input of a tiny BertForSequenceClassification's logits on a text pair, through
 * the trainer's backward, against transformers (inputs_embeds, float64). */
static void saliency(void) {
    qkv_safetensors *st = fix_open(FIX "/saliency_pair.safetensors");
    const qkv_st_tensor *ti = qkv_safetensors_find(st, "ids");
    const int64_t T = ti->shape[0];
    const int32_t *ids = ti->data, *types = fix_need(st, "type_ids");
    const float *want = fix_need(st, "saliency"), *want_logits = fix_need(st, "logits");
    qkv_trainer *t = NULL;
    CHECK_OK(qkv_trainer_load_hf_classifier(QKV_SOURCE_DIR "/tests/fixtures/cls/pair", NULL, &t));
    if (!t) return;
    const int64_t NL = qkv_trainer_num_labels(t);
    float *sal = malloc(sizeof(float) * (size_t)T), logits[8];
    double worst = 0;
    for (int64_t k = 0; k < NL; k++) {
        CHECK_OK(qkv_trainer_saliency(NULL, t, ids, types, T, k, sal, logits));
        double e = fix_rel_err(sal, want + k * T, T);
        worst = e > worst ? e : worst;
        CHECK_MSG(e <= 1e-4, "saliency of logit %lld off by %.3g (relative)", (long long)k, e);
    }
    CHECK_MSG(fix_rel_err(logits, want_logits, NL) <= 1e-5, "logits differ");
    /* the gradients are left zero: a second call gives the same bits */
    float *again = malloc(sizeof(float) * (size_t)T);
    CHECK_OK(qkv_trainer_saliency(NULL, t, ids, types, T, NL - 1, again, NULL));
    CHECK(memcmp(sal, again, sizeof(float) * (size_t)T) == 0);
    CHECK_STATUS(qkv_trainer_saliency(NULL, t, ids, types, T, NL, sal, NULL), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_trainer_saliency(NULL, t, ids, types, T, -1, sal, NULL), QKV_ERR_INVALID_ARG);
    const int32_t bad[2] = {0, 1 << 30};
    CHECK_STATUS(qkv_trainer_saliency(NULL, t, bad, NULL, 2, 0, sal, NULL), QKV_ERR_INVALID_ARG);
    printf("saliency: %lld labels x %lld tokens, max error %.3g relative to the largest\n",
           (long long)NL, (long long)T, worst);
    qkv_trainer_free(t);
    qkv_trainer *g = NULL;
    CHECK_OK(qkv_trainer_load_hf(MODELS "/gpt2_tiny", &g));
    CHECK_STATUS(qkv_trainer_saliency(NULL, g, ids, NULL, 2, 0, sal, NULL), QKV_ERR_UNSUPPORTED);
    qkv_trainer_free(g);
    free(sal), free(again);
    qkv_safetensors_close(st);
}

int main(void) {
    test_use_arch_from_env();
    qkv_model *m = NULL;
    qkv_lm *gpt2 = NULL, *llama = NULL;
    CHECK_OK(qkv_model_load(FIX "/bert_tiny", &m));
    CHECK_OK(qkv_lm_load(MODELS "/gpt2_tiny", &gpt2));
    CHECK_OK(qkv_lm_load(MODELS "/llama_tiny", &llama));
    if (!m || !gpt2 || !llama) return test_finish("attnmap");
    am_check_golden("bert_tiny", FIX "/bert_tiny.safetensors", m, NULL);
    am_check_golden("gpt2_tiny", FIX "/gpt2_tiny.safetensors", NULL, gpt2);
    am_check_golden("llama_tiny", FIX "/llama_tiny.safetensors", NULL, llama);
    maps_do_not_change_the_forward(m, llama);
    hostile(m, gpt2);
    empty_rows();
    saliency();
    qkv_model_free(m);
    qkv_lm_free(gpt2);
    qkv_lm_free(llama);
    return test_finish("attnmap");
}
