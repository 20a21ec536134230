/* test_attnmap_marian.c — an encoder-decoder's attention maps (qkv_seq2seq_attention) on the
 * tiny random MarianMT models of tests/fixtures/marian (tiny: 2 + 2 layers, 4 heads; sep: 3 + 1
 * layers, separate decoder embeddings) against transformers' encoder_attentions,
 * decoder_attentions and cross_attentions (output_attentions=True, float64;
 * tools/gen_marian_attention_maps.py), for (source, target) pairs of different lengths; the
 * encoder's rollout and the per-head summaries (square and cross) against numpy; rows are
 * distributions, the decoder's are causal; 1 and 3 threads agree; asking for the maps does not
 * change the decoder's logits; hostile arguments; every allocation failed in turn. Per
 * QKV_ARCH. */
#include "attnmap_check.h"
#include "fault_alloc.h"
#include "models/kv_cache.h"
#include "models/marian.h"
#include "test_arch.h"

#define FIX QKV_SOURCE_DIR "/tests/fixtures/attnmap"
#define MARIAN QKV_SOURCE_DIR "/tests/fixtures/marian"

/* The per-head summaries of n maps [rows, cols] against want [n, k] (k = 5 square, 3 cross:
 * entropy, cls, sep); relative to max(1, |want|). */
static double stats_diff(const float *p, int64_t n, int64_t rows, int64_t cols,
                         const int32_t *marks_i32, const double *want, int square) {
    uint8_t marks[256];
    for (int64_t j = 0; j < cols && j < 256; j++) marks[j] = (uint8_t)marks_i32[j];
    double worst = 0;
    for (int64_t k = 0; k < n; k++) {
        qkv_head_stats hs = {.struct_size = sizeof hs};
        const float *m = p + k * rows * cols;
        if (square)
            CHECK_OK(qkv_attention_head_stats(m, rows, marks, &hs));
        else
            CHECK_OK(qkv_attention_head_stats_cross(m, rows, cols, marks, &hs));
        const double all[5] = {hs.entropy, hs.distance, hs.cls, hs.sep, hs.prev};
        const double got3[3] = {hs.entropy, hs.cls, hs.sep};
        const double *got = square ? all : got3;
        const int nk = square ? 5 : 3;
        const double *w = want + k * nk;
        for (int i = 0; i < nk; i++) {
            double d = fabs(got[i] - w[i]) / (1.0 > fabs(w[i]) ? 1.0 : fabs(w[i]));
            worst = d > worst ? d : worst;
        }
        if (!square) CHECK(isnan(hs.distance) && isnan(hs.prev));
        CHECK_EQ_INT(hs.rows, rows);
    }
    return worst;
}

/* Rows of n maps [rows, cols] sum to 1; causal: 0 exactly past the diagonal. */
static double row_sums(const float *p, int64_t n, int64_t rows, int64_t cols, int causal,
                       int *leak) {
    double worst = 0;
    for (int64_t r = 0; r < n * rows; r++) {
        const int64_t i = r % rows;
        double sum = 0;
        for (int64_t j = 0; j < cols; j++) {
            sum += p[r * cols + j];
            if (causal && j > i && p[r * cols + j] != 0.0f) *leak = 1;
        }
        worst = fabs(sum - 1) > worst ? fabs(sum - 1) : worst;
    }
    return worst;
}

static void check_golden(const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", MARIAN, name);
    qkv_seq2seq *m = NULL;
    CHECK_OK(qkv_seq2seq_load(path, &m));
    snprintf(path, sizeof path, "%s/marian_%s.safetensors", FIX, name);
    qkv_safetensors *st = fix_open(path);
    if (!m || !st) return;
    const qkv_st_tensor *tl = qkv_safetensors_find(st, "src_lens");
    const int64_t n = tl->shape[0], *slens = tl->data, *dlens = fix_need(st, "dec_lens");
    const int32_t *src = fix_need(st, "src_ids"), *dec = fix_need(st, "dec_ids");
    const float *we = fix_need(st, "enc"), *wd = fix_need(st, "dec"), *wx = fix_need(st, "cross");
    const float *wroll = fix_need(st, "enc_rollout");
    const double *wes = fix_need(st, "enc_stats"), *wds = fix_need(st, "dec_stats"),
                 *wxs = fix_need(st, "cross_stats");
    const int64_t Le = qkv_seq2seq_num_layers(m, 0), He = qkv_seq2seq_num_heads(m, 0);
    const int64_t Ld = qkv_seq2seq_num_layers(m, 1), Hd = qkv_seq2seq_num_heads(m, 1);
    const int32_t eos = qkv_seq2seq_eos_token(m);
    qkv_runtime *rt1 = NULL, *rt3 = NULL;
    CHECK_OK(qkv_runtime_create(1, &rt1));
    CHECK_OK(qkv_runtime_create(3, &rt3));
    double de = 0, dd = 0, dx = 0, sums = 0, roll = 0, ste = 0, std = 0, stx = 0;
    int leak = 0, same = 1;
    for (int64_t c = 0, so = 0, to = 0, eo = 0, doo = 0, xo = 0, ro = 0; c < n; c++) {
        const int64_t S = slens[c], T = dlens[c];
        CHECK(S != T);
        CHECK_EQ_INT(dec[to], qkv_seq2seq_start_token(m));
        size_t need = 0;
        CHECK_OK(qkv_seq2seq_attention_len(m, S, T, &need));
        const size_t ne = (size_t)(Le * He * S * S), nd = (size_t)(Ld * Hd * T * T);
        CHECK_EQ_INT((int64_t)need, (int64_t)(ne + nd + (size_t)(Ld * Hd * T * S)));
        float *p = malloc(sizeof(float) * need), *p3 = malloc(sizeof(float) * need);
        memset(p, 0xff, sizeof(float) * need); /* NaN: every element must be written */
        CHECK_OK(qkv_seq2seq_attention(NULL, m, src + so, S, dec + to, T, p, need));
        const float *pe = p, *pd = p + ne, *px = pd + nd;
        double e = am_max_diff(pe, we + eo, ne), d = am_max_diff(pd, wd + doo, nd),
               x = am_max_diff(px, wx + xo, need - ne - nd);
        de = e > de ? e : de, dd = d > dd ? d : dd, dx = x > dx ? x : dx;
        double s1 = row_sums(pe, Le * He, S, S, 0, &leak),
               s2 = row_sums(pd, Ld * Hd, T, T, 1, &leak),
               s3 = row_sums(px, Ld * Hd, T, S, 0, &leak);
        sums = fmax(sums, fmax(s1, fmax(s2, s3)));

        /* the encoder's rollout, and the summaries with the fixture's marks */
        float *r = malloc(sizeof(float) * (size_t)(S * S));
        CHECK_OK(qkv_attention_rollout(pe, Le, He, S, r));
        roll = fmax(roll, am_max_diff(r, wroll + ro, (size_t)(S * S)));
        free(r);
        int32_t smarks[256] = {0}, dmarks[256] = {0}, cmarks[256] = {0};
        for (int64_t j = 0; j < S && j < 256; j++)
            smarks[j] = cmarks[j] = src[so + j] == eos ? QKV_MARK_SEP : 0;
        cmarks[0] |= QKV_MARK_CLS;
        for (int64_t j = 0; j < T && j < 256; j++)
            dmarks[j] = dec[to + j] == eos ? QKV_MARK_SEP : 0;
        dmarks[0] |= QKV_MARK_CLS;
        ste = fmax(ste, stats_diff(pe, Le * He, S, S, smarks, wes + c * Le * He * 5, 1));
        std = fmax(std, stats_diff(pd, Ld * Hd, T, T, dmarks, wds + c * Ld * Hd * 5, 1));
        stx = fmax(stx, stats_diff(px, Ld * Hd, T, S, cmarks, wxs + c * Ld * Hd * 3, 0));

        /* one thread and three: the same bits */
        CHECK_OK(qkv_seq2seq_attention(rt1, m, src + so, S, dec + to, T, p3, need));
        same &= memcmp(p, p3, sizeof(float) * need) == 0;
        CHECK_OK(qkv_seq2seq_attention(rt3, m, src + so, S, dec + to, T, p3, need));
        same &= memcmp(p, p3, sizeof(float) * need) == 0;
        free(p), free(p3);
        so += S, to += T, eo += (int64_t)ne, doo += (int64_t)nd, xo += Ld * Hd * T * S;
        ro += S * S;
    }
    CHECK_MSG(de <= 1e-5, "%s: encoder maps differ from transformers by %.3g", name, de);
    CHECK_MSG(dd <= 1e-5, "%s: decoder maps differ from transformers by %.3g", name, dd);
    CHECK_MSG(dx <= 1e-5, "%s: cross maps differ from transformers by %.3g", name, dx);
    CHECK_MSG(sums < 1e-5, "%s: a row sums to 1 %+.3g", name, sums);
    CHECK_MSG(!leak, "%s: a decoder query attends to a later token", name);
    CHECK_MSG(roll <= 1e-5, "%s: encoder rollout off by %.3g", name, roll);
    CHECK_MSG(ste <= 1e-4 && std <= 1e-4 && stx <= 1e-4,
              "%s: head stats off: encoder %.3g, decoder %.3g, cross %.3g", name, ste, std, stx);
    CHECK_MSG(same, "%s: 1 and 3 threads or the default runtime differ", name);
    printf("%s: %lld pairs, encoder %lldx%lld, decoder %lldx%lld: max |diff| encoder %.3g, "
           "decoder %.3g, cross %.3g; rollout %.3g; stats rel %.3g / %.3g / %.3g\n",
           name, (long long)n, (long long)Le, (long long)He, (long long)Ld, (long long)Hd, de, dd,
           dx, roll, ste, std, stx);
    qkv_runtime_free(rt1);
    qkv_runtime_free(rt3);
    qkv_safetensors_close(st);
    qkv_seq2seq_free(m);
}

/* The decoder's logits with and without maps: the same bits, step after step. */
static void maps_do_not_change_the_decoder(void) {
    qkv_marian *m = NULL;
    CHECK_OK(qkv__marian_load(MARIAN "/tiny", QKV_DTYPE_F32, &m));
    if (!m) return;
    const qkv_marian_config *c = &m->cfg;
    const int32_t src[5] = {3, 17, 42, 9, c->gen.eos}, dec[4] = {c->gen.start, 5, 6, 7};
    const int64_t S = 5, T = 4, C = c->C, off = 0;
    float *enc = malloc(sizeof(float) * (size_t)(S * C)),
          *kv = malloc(sizeof(float) * (size_t)(2 * c->Ld * S * C));
    float *l0 = malloc(sizeof(float) * (size_t)c->Vd), *l1 = malloc(sizeof(float) * (size_t)c->Vd);
    float *self = calloc((size_t)(c->Ld * c->Hd * T * T), sizeof(float)),
          *cross = calloc((size_t)(c->Ld * c->Hd * T * S), sizeof(float));
    const qkv__marian_step_maps maps = {self, cross, T, S};
    CHECK_OK(qkv__marian_encode(NULL, m, src, &S, 1, enc));
    CHECK_OK(qkv__marian_cross_kv(NULL, m, enc, S, kv));
    qkv_kv_cache a, b;
    qkv_kv_cache *pa = &a, *pb = &b;
    CHECK_OK(qkv__kv_cache_init(&a, c->Ld, T, c->Hd, C / c->Hd));
    CHECK_OK(qkv__kv_cache_init(&b, c->Ld, T, c->Hd, C / c->Hd));
    int same = 1;
    for (int64_t t = 0; t < T; t++) {
        CHECK_OK(qkv__marian_decode_step(NULL, m, &pa, dec + t, kv, S, &off, &S, 1, l0));
        CHECK_OK(
            qkv__marian_decode_step_probs(NULL, m, &pb, dec + t, kv, S, &off, &S, 1, l1, &maps));
        same &= memcmp(l0, l1, sizeof(float) * (size_t)c->Vd) == 0;
    }
    CHECK_MSG(same, "the decoder's logits change when maps are asked for");
    /* maps for a row past their T, or two rows: refused */
    CHECK_STATUS(qkv__marian_decode_step_probs(NULL, m, &pb, dec, kv, S, &off, &S, 1, l1, &maps),
                 QKV_ERR_INVALID_ARG);
    qkv__kv_cache_release(&a);
    qkv__kv_cache_release(&b);
    free(enc), free(kv), free(l0), free(l1), free(self), free(cross);
    qkv__marian_free(m);
}

typedef struct {
    const qkv_seq2seq *m;
    const int32_t *src, *dec;
    float *p;
    size_t need;
} attn_call;

static qkv_status call_attention(qkv_runtime *rt, void *ctx) {
    const attn_call *a = ctx;
    return qkv_seq2seq_attention(rt, a->m, a->src, 3, a->dec, 2, a->p, a->need);
}

static void hostile(void) {
    qkv_seq2seq *m = NULL;
    CHECK_OK(qkv_seq2seq_load(MARIAN "/tiny", &m));
    if (!m) return;
    const int64_t P = qkv_seq2seq_max_source(m), V = qkv_seq2seq_vocab_size(m);
    int32_t *ids = calloc((size_t)P + 1, sizeof(int32_t));
    const int32_t start = qkv_seq2seq_start_token(m);
    size_t need = 0, big = 0;
    CHECK_OK(qkv_seq2seq_attention_len(m, P, P, &big));
    float *p = malloc(sizeof(float) * big);
    CHECK_OK(qkv_seq2seq_attention_len(m, 3, 2, &need));
    const int32_t dec[2] = {start, 5};
    CHECK_OK(qkv_seq2seq_attention(NULL, m, ids, 3, dec, 2, p, need));
    CHECK_STATUS(qkv_seq2seq_attention(NULL, m, ids, 3, dec, 2, p, need - 1), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_seq2seq_attention(NULL, m, ids, 0, dec, 2, p, need), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_seq2seq_attention(NULL, m, ids, 3, dec, 0, p, need), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_seq2seq_attention(NULL, NULL, ids, 3, dec, 2, p, need), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_seq2seq_attention(NULL, m, NULL, 3, dec, 2, p, need), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_seq2seq_attention(NULL, m, ids, 3, NULL, 2, p, need), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_seq2seq_attention(NULL, m, ids, 3, dec, 2, NULL, need), QKV_ERR_INVALID_ARG);
    /* longer than max_position_embeddings, on either side */
    CHECK_OK(qkv_seq2seq_attention(NULL, m, ids, P, ids, P, p, big));
    CHECK_STATUS(qkv_seq2seq_attention(NULL, m, ids, P + 1, dec, 2, p, big), QKV_ERR_INVALID_ARG);
    CHECK(strstr(qkv_last_error(), "max_position_embeddings") != NULL);
    CHECK_STATUS(qkv_seq2seq_attention(NULL, m, dec, 2, ids, P + 1, p, big), QKV_ERR_INVALID_ARG);
    /* ids outside the vocabularies, named */
    const int32_t bad_src[3] = {1, (int32_t)V, 0}, bad_dec[2] = {start, -1};
    CHECK_STATUS(qkv_seq2seq_attention(NULL, m, bad_src, 3, dec, 2, p, need), QKV_ERR_INVALID_ARG);
    CHECK(strstr(qkv_last_error(), "source token 1") != NULL);
    CHECK_STATUS(qkv_seq2seq_attention(NULL, m, ids, 3, bad_dec, 2, p, need), QKV_ERR_INVALID_ARG);
    CHECK(strstr(qkv_last_error(), "target token 1") != NULL);
    /* sizes */
    CHECK_STATUS(qkv_seq2seq_attention_len(m, 0, 2, &need), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_seq2seq_attention_len(NULL, 1, 2, &need), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_seq2seq_attention_len(m, INT64_MAX / 2, 2, &need), QKV_ERR_OVERFLOW);
    CHECK_EQ_INT((int64_t)need, 0);
    CHECK_OK(qkv_seq2seq_attention_len(m, 3, 2, &need));
    CHECK_EQ_INT(qkv_seq2seq_num_layers(NULL, 0), 0);
    CHECK_EQ_INT(qkv_seq2seq_num_heads(NULL, 1), 0);
    CHECK_EQ_INT(qkv_seq2seq_start_token(NULL), -1);
    CHECK_EQ_INT(qkv_seq2seq_eos_token(NULL), -1);
    qkv_head_stats hs = {.struct_size = sizeof hs};
    CHECK_STATUS(qkv_attention_head_stats_cross(p, 0, 3, NULL, &hs), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_attention_head_stats_cross(p, 2, 0, NULL, &hs), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_attention_head_stats_cross(NULL, 2, 3, NULL, &hs), QKV_ERR_INVALID_ARG);

    /* every allocation of a call failed in turn: NOMEM, nothing leaks */
    attn_call ac = {m, ids, dec, p, need};
    int fails = fault_each_alloc(call_attention, &ac, 500);
    CHECK(fails > 3);
    free(ids), free(p);
    qkv_seq2seq_free(m);
}

/* The target side's tokenizer: target.spm with vocab.json (here the same model as source.spm,
 * so the same ids); a directory without target.spm falls back to qkv_tokenizer_load. */
static void target_tokenizer(void) {
    qkv_tokenizer *s = NULL, *t = NULL, *b = NULL;
    CHECK_OK(qkv_tokenizer_load(MARIAN "/tiny", &s));
    CHECK_OK(qkv_tokenizer_load_target(MARIAN "/tiny", &t));
    CHECK_OK(qkv_tokenizer_load_target(QKV_SOURCE_DIR "/tests/fixtures/cls/pair", &b));
    CHECK(b != NULL && qkv_tokenizer_vocab_size(b) > 0);
    qkv_tokenizer_free(b);
    CHECK_STATUS(qkv_tokenizer_load_target(MARIAN "/nonexistent", &b), QKV_ERR_IO);
    CHECK(b == NULL);
    if (s && t) {
        qkv_encoding *es = NULL, *et = NULL;
        const char *text = "This License applies to any program.";
        CHECK_OK(qkv_tokenizer_encode(s, text, strlen(text), NULL, 0, NULL, &es));
        CHECK_OK(qkv_tokenizer_encode(t, text, strlen(text), NULL, 0, NULL, &et));
        CHECK(es && et && es->n == et->n && memcmp(es->ids, et->ids, es->n * 4) == 0);
        CHECK(et && et->n > 1 && et->ids[et->n - 1] == 0); /* </s> */
        qkv_encoding_free(es), qkv_encoding_free(et);
    }
    qkv_tokenizer_free(s), qkv_tokenizer_free(t);
}

int main(void) {
    test_use_arch_from_env();
    check_golden("tiny");
    check_golden("sep");
    maps_do_not_change_the_decoder();
    hostile();
    target_tokenizer();
    return test_finish("attnmap_marian");
}
