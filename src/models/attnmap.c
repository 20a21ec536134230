/* attnmap.c — attention maps of a whole model and what is computed from them (API in qkv.h):
 * qkv_model_attention / qkv_lm_attention run the inference forward of bert.c / gpt.c with a
 * probabilities buffer, so every map comes from the q and k the layer really attended with
 * (there is no second implementation of the model here); rollout and per-head summaries are
 * plain loops over those maps, in double. The encoder-decoder's maps (qkv_seq2seq_attention) are
 * in seq2seq.c, beside the decoding they follow.
 *
 * Why not through the fused kernels: they never form the T×T matrix (docs/ATTENTION.md), so the
 * layers call qkv_attention_probs (the reference, materializing) beside their attention, only
 * when a caller asks for the maps. */
#include "core/abi.h"
#include "core/alloc.h"
#include "core/error.h"
#include "models/bert.h"
#include "models/gpt.h"
#include "models/kv_cache.h"
#include "models/lm.h"
#include "models/model.h"
#include "qkv.h"

#include <math.h>
#include <string.h>

int64_t qkv_model_num_layers(const qkv_model *m) { return m ? m->bert->cfg.num_layers : 0; }
int64_t qkv_model_num_heads(const qkv_model *m) { return m ? m->bert->cfg.num_heads : 0; }
int64_t qkv_lm_num_layers(const qkv_lm *lm) { return lm ? lm->gpt->cfg.num_layers : 0; }
int64_t qkv_lm_num_heads(const qkv_lm *lm) { return lm ? lm->gpt->cfg.num_heads : 0; }

qkv_status qkv_attention_maps_len(int64_t L, int64_t H, const int64_t *lens, size_t n,
                                  size_t *out) {
    static const char fn[] = "qkv_attention_maps_len";
    if (!out || (n && !lens)) return qkv__fail(QKV_ERR_INVALID_ARG, "%s: NULL argument", fn);
    *out = 0;
    if (L < 1 || H < 1) return qkv__fail(QKV_ERR_INVALID_ARG, "%s: L and H must be >= 1", fn);
    size_t total = 0, lh;
    if (qkv__mul_overflow((size_t)L, (size_t)H, &lh))
        return qkv__fail(QKV_ERR_OVERFLOW, "%s: L·H overflows", fn);
    for (size_t s = 0; s < n; s++) {
        size_t t2, x;
        if (lens[s] < 1)
            return qkv__fail(QKV_ERR_INVALID_ARG, "%s: sequence %zu has length %lld", fn, s,
                             (long long)lens[s]);
        if (qkv__mul_overflow((size_t)lens[s], (size_t)lens[s], &t2) ||
            qkv__mul_overflow(t2, lh, &x) || qkv__add_overflow(total, x, &total))
            return qkv__fail(QKV_ERR_OVERFLOW, "%s: the maps' size overflows", fn);
    }
    if (qkv__mul_overflow(total, sizeof(float), &lh))
        return qkv__fail(QKV_ERR_OVERFLOW, "%s: the maps' size in bytes overflows", fn);
    *out = total;
    return QKV_OK;
}

/* Lengths within [1, max] and probs large enough for their maps. */
static qkv_status check_maps(const char *fn, int64_t L, int64_t H, const int64_t *lens, size_t n,
                             int64_t max, size_t probs_len) {
    for (size_t s = 0; s < n; s++)
        if (lens[s] < 1 || lens[s] > max)
            return qkv__fail(QKV_ERR_INVALID_ARG,
                             "%s: sequence %zu has %lld tokens (1..%lld allowed)", fn, s,
                             (long long)lens[s], (long long)max);
    size_t need = 0;
    QKV_TRY(qkv_attention_maps_len(L, H, lens, n, &need));
    if (probs_len < need)
        return qkv__fail(QKV_ERR_INVALID_ARG,
                         "%s: probs holds %zu floats; the maps of these sequences need %zu", fn,
                         probs_len, need);
    return QKV_OK;
}

qkv_status qkv_model_attention(qkv_runtime *rt, const qkv_model *m, const int32_t *ids,
                               const int32_t *type_ids, const int64_t *lens, size_t n, float *probs,
                               size_t probs_len) {
    static const char fn[] = "qkv_model_attention";
    if (!m || !ids || !lens || !probs || n == 0)
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: NULL argument or no sequence", fn);
    const qkv_bert_config *c = &m->bert->cfg;
    QKV_TRY(check_maps(fn, c->num_layers, c->num_heads, lens, n, m->max_seq_len, probs_len));
    int64_t N = 0;
    for (size_t s = 0; s < n; s++) N += lens[s];
    float *hidden = qkv__alloc(sizeof(float) * (size_t)N * (size_t)c->hidden_size); /* [N, C] */
    if (!hidden) return qkv__fail(QKV_ERR_NOMEM, "%s: out of memory", fn);
    qkv_status st =
        qkv__bert_forward_probs(rt, m->bert, ids, type_ids, lens, (int64_t)n, hidden, probs);
    qkv__free(hidden);
    return st;
}

qkv_status qkv_lm_attention(qkv_runtime *rt, const qkv_lm *lm, const int32_t *ids,
                            const int64_t *lens, size_t n, float *probs, size_t probs_len) {
    static const char fn[] = "qkv_lm_attention";
    if (!lm || !ids || !lens || !probs || n == 0)
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: NULL argument or no sequence", fn);
    const qkv_gpt_config *c = &lm->gpt->cfg;
    QKV_TRY(check_maps(fn, c->num_layers, c->num_heads, lens, n, c->max_position, probs_len));
    /* fresh caches, so Tk = T; logits of the last token of each sequence (discarded) */
    qkv_kv_cache *kv = qkv__calloc(n, sizeof *kv);
    qkv_kv_cache **kvp = qkv__calloc(n, sizeof *kvp);
    float *logits = qkv__alloc(sizeof(float) * n * (size_t)c->vocab_size); /* [n, V] */
    qkv_status st =
        kv && kvp && logits ? QKV_OK : qkv__fail(QKV_ERR_NOMEM, "%s: out of memory", fn);
    for (size_t s = 0; st == QKV_OK && s < n; s++) {
        kvp[s] = &kv[s];
        st = qkv__kv_cache_init(&kv[s], c->num_layers, lens[s], c->num_kv_heads, c->head_dim);
    }
    if (st == QKV_OK)
        st = qkv__gpt_forward_probs(rt, lm->gpt, kvp, ids, lens, (int64_t)n, 0, logits, probs);
    for (size_t s = 0; kv && s < n; s++) qkv__kv_cache_release(&kv[s]);
    qkv__free(kv);
    qkv__free(kvp);
    qkv__free(logits);
    return st;
}

/* ---------------------------------------------------------------- rollout */

qkv_status qkv_attention_rollout(const float *p, int64_t L, int64_t H, int64_t T, float *out) {
    static const char fn[] = "qkv_attention_rollout";
    if (!p || !out || L < 1 || H < 1 || T < 1)
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: NULL argument or a size below 1", fn);
    size_t tt, bytes;
    if (qkv__mul_overflow((size_t)T, (size_t)T, &tt) ||
        qkv__mul_overflow(tt, 3 * sizeof(double), &bytes))
        return qkv__fail(QKV_ERR_OVERFLOW, "%s: T = %lld is too large", fn, (long long)T);
    double *r = qkv__alloc(bytes); /* r, a, next: [T, T] each */
    if (!r) return qkv__fail(QKV_ERR_NOMEM, "%s: out of memory", fn);
    double *a = r + tt, *nx = a + tt;
    for (int64_t l = 0; l < L; l++) {
        /* a = rownorm(mean_h p[l, h] + I) */
        memset(a, 0, tt * sizeof(double));
        for (int64_t h = 0; h < H; h++) {
            const float *ph = p + ((size_t)l * (size_t)H + (size_t)h) * tt;
            for (size_t e = 0; e < tt; e++) a[e] += (double)ph[e];
        }
        for (int64_t i = 0; i < T; i++) {
            double *row = a + i * T, sum = 0;
            for (int64_t j = 0; j < T; j++) sum += (row[j] = row[j] / (double)H + (i == j));
            for (int64_t j = 0; j < T; j++) row[j] /= sum;
        }
        if (l == 0) {
            memcpy(r, a, tt * sizeof(double));
            continue;
        }
        /* r = a · r */
        for (int64_t i = 0; i < T; i++) {
            double *o = nx + i * T;
            memset(o, 0, (size_t)T * sizeof(double));
            for (int64_t k = 0; k < T; k++) {
                const double aik = a[i * T + k], *rk = r + k * T;
                for (int64_t j = 0; j < T; j++) o[j] += aik * rk[j];
            }
        }
        memcpy(r, nx, tt * sizeof(double));
    }
    for (size_t e = 0; e < tt; e++) out[e] = (float)r[e];
    qkv__free(r);
    return QKV_OK;
}

/* ---------------------------------------------------------------- per-head summaries */

/* The summaries of map p [Tq, Tk]; square: the query and key positions are one sequence's
 * (distance and prev defined), else they are NaN. */
static qkv_status head_stats(const char *fn, const float *p, int64_t Tq, int64_t Tk,
                             const uint8_t *marks, int square, qkv_head_stats *out) {
    if (!p || !out || Tq < 1 || Tk < 1)
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: NULL argument or a size below 1", fn);
    qkv_head_stats hs;
    memset(&hs, 0, sizeof hs);
    hs.struct_size = sizeof hs;
    double ent = 0, dist = 0, cls = 0, sep = 0, prev = 0;
    int64_t rows = 0, prev_rows = 0;
    for (int64_t i = 0; i < Tq; i++) {
        const float *row = p + i * Tk;
        double sum = 0, e = 0, d = 0, c = 0, s = 0;
        for (int64_t j = 0; j < Tk; j++) {
            const double x = row[j];
            sum += x;
            if (x > 0) e -= x * log(x);
            d += x * (double)(i > j ? i - j : j - i);
            if (marks && (marks[j] & QKV_MARK_CLS)) c += x;
            if (marks && (marks[j] & QKV_MARK_SEP)) s += x;
        }
        if (!(sum > 0)) continue; /* a row that sees no key */
        rows++;
        ent += e, dist += d, cls += c, sep += s;
        if (square && i > 0) prev += row[i - 1], prev_rows++;
    }
    if (rows) {
        hs.entropy = ent / (double)rows;
        hs.distance = dist / (double)rows;
        hs.cls = cls / (double)rows;
        hs.sep = sep / (double)rows;
    }
    if (prev_rows) hs.prev = prev / (double)prev_rows;
    if (!square) hs.distance = hs.prev = NAN;
    hs.rows = rows;
    QKV__STRUCT_OUT(qkv_head_stats, out, &hs);
    return QKV_OK;
}

qkv_status qkv_attention_head_stats(const float *p, int64_t T, const uint8_t *marks,
                                    qkv_head_stats *out) {
    return head_stats("qkv_attention_head_stats", p, T, T, marks, 1, out);
}

qkv_status qkv_attention_head_stats_cross(const float *p, int64_t Tq, int64_t Tk,
                                          const uint8_t *marks, qkv_head_stats *out) {
    return head_stats("qkv_attention_head_stats_cross", p, Tq, Tk, marks, 0, out);
}
