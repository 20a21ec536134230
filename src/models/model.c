/* model.c — qkv_model: a model directory loaded for a job (today: sentence embeddings with a
 * BERT encoder), the public face of src/models.
 *
 * A sentence-transformers directory is read as the library does: modules.json lists the
 * pipeline (Transformer, then Pooling from its folder's config.json, then optionally
 * Normalize); sentence_bert_config.json gives max_seq_length (longer inputs are truncated).
 * A plain Hugging Face BERT directory (no modules.json) gets mean pooling without
 * normalization, and the model's max_position_embeddings. Modules other than these are refused
 * by name. */
#include "models/model.h"
#include "core/abi.h"
#include "core/alloc.h"
#include "core/error.h"
#include "io/file.h"
#include "io/json.h"
#include "models/bert.h"
#include "nn/nn.h"
#include "nn/pooling.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static qkv_status read_pooling(const char *dir, const char *sub, qkv_model *m) {
    char path[4200];
    /* a folder named by modules.json: it must stay inside the model directory */
    char *folder = NULL;
    QKV_TRY(qkv__path_inside(dir, sub, 0, "modules.json: the Pooling module's path", &folder));
    int n = snprintf(path, sizeof path, "%s/config.json", folder);
    qkv__free(folder);
    if (n < 0 || (size_t)n >= sizeof path)
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: path too long", dir);
    json_t *root;
    QKV_TRY(qkv__json_load_file(path, 0, &root));
    static const struct {
        const char *key;
        qkv_pool_mode mode;
    } modes[] = {{"pooling_mode_mean_tokens", QKV_POOL_MEAN},
                 {"pooling_mode_cls_token", QKV_POOL_CLS},
                 {"pooling_mode_max_tokens", QKV_POOL_MAX},
                 {"pooling_mode_mean_sqrt_len_tokens", QKV_POOL_MEAN_SQRT_LEN}};
    int found = 0;
    qkv_status s = QKV_OK;
    int on = 0;
    for (size_t i = 0; s == QKV_OK && i < sizeof modes / sizeof *modes; i++)
        if ((s = qkv__json_bool(path, root, modes[i].key, 0, &on)) == QKV_OK && on) {
            m->pool = modes[i].mode;
            found++;
        }
    const char *unsupported[] = {"pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken"};
    for (size_t i = 0; s == QKV_OK && i < sizeof unsupported / sizeof *unsupported; i++)
        if ((s = qkv__json_bool(path, root, unsupported[i], 0, &on)) == QKV_OK && on)
            s = qkv__fail(QKV_ERR_UNSUPPORTED, "%s: %s is not supported", path, unsupported[i]);
    if (s == QKV_OK && found != 1)
        s = qkv__fail(found ? QKV_ERR_UNSUPPORTED : QKV_ERR_FORMAT,
                      "%s: expected exactly one pooling mode, found %d (several modes "
                      "concatenated are not supported)",
                      path, found);
    json_decref(root);
    return s;
}

static qkv_status read_pipeline(const char *dir, qkv_model *m) {
    char path[4200];
    json_t *root;
    m->pool = QKV_POOL_MEAN;
    m->normalize = 0;
    m->max_seq_len = m->bert->cfg.max_position;
    snprintf(path, sizeof path, "%s/modules.json", dir);
    QKV_TRY(qkv__json_load_file(path, 1, &root));
    if (!root) return QKV_OK; /* a plain Hugging Face encoder */
    qkv_status s = QKV_OK;
    if (!json_is_array(root)) s = qkv__fail(QKV_ERR_FORMAT, "%s: not a JSON array", path);
    size_t i;
    json_t *mod;
    json_array_foreach(root, i, mod) {
        if (s != QKV_OK) break;
        const char *type = NULL, *sub = NULL;
        if (!json_is_object(mod))
            s = qkv__fail(QKV_ERR_FORMAT, "%s: module %zu is not an object", path, i);
        else if ((s = qkv__json_str(path, mod, "type", NULL, &type)) == QKV_OK)
            s = qkv__json_str(path, mod, "path", NULL, &sub);
        if (s != QKV_OK) {
        } else if (!type || !sub) {
            s = qkv__fail(QKV_ERR_FORMAT, "%s: module %zu lacks 'type' or 'path'", path, i);
        } else if (strcmp(type, "sentence_transformers.models.Transformer") == 0) {
            if (i != 0)
                s = qkv__fail(QKV_ERR_UNSUPPORTED, "%s: the Transformer must be module 0", path);
        } else if (strcmp(type, "sentence_transformers.models.Pooling") == 0) {
            s = read_pooling(dir, sub, m);
        } else if (strcmp(type, "sentence_transformers.models.Normalize") == 0) {
            m->normalize = 1;
        } else {
            s = qkv__fail(QKV_ERR_UNSUPPORTED,
                          "%s: module type '%s' is not supported "
                          "(Transformer, Pooling, Normalize)",
                          path, type);
        }
    }
    json_decref(root);
    if (s != QKV_OK) return s;
    snprintf(path, sizeof path, "%s/sentence_bert_config.json", dir);
    QKV_TRY(qkv__json_load_file(path, 1, &root));
    if (root) { /* a longer max_seq_length than the positions is cut to them, as in
                   sentence-transformers */
        int64_t msl;
        s = qkv__json_int(path, root, "max_seq_length", 0, m->max_seq_len, 1, INT64_MAX, &msl);
        if (s == QKV_OK && msl < m->max_seq_len) m->max_seq_len = msl;
        json_decref(root);
    }
    return s;
}

static int has_tokenizer(const char *dir) {
    static const char *names[] = {"tokenizer.json", "vocab.txt", "vocab.json"};
    char path[4200];
    struct stat sb;
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (stat(path, &sb) == 0) return 1;
    }
    return 0;
}

qkv_status qkv_model_load(const char *dir, qkv_model **out) {
    return qkv_model_load_opts(dir, NULL, out);
}

qkv_status qkv__model_options_dtype(const char *fn, const qkv_model_options *opts, qkv_dtype *out) {
    qkv_model_options o;
    QKV_TRY(QKV__STRUCT_IN(qkv_model_options, &o, opts, NULL, "model options"));
    if (o.dtype != QKV_DTYPE_F32 && o.dtype != QKV_DTYPE_BF16 && o.dtype != QKV_DTYPE_F16 &&
        o.dtype != QKV_DTYPE_I8)
        return qkv__fail(QKV_ERR_INVALID_ARG,
                         "%s: options dtype %d is not a weight dtype (F32, BF16, F16, I8)", fn,
                         (int)o.dtype);
    *out = o.dtype;
    return QKV_OK;
}

qkv_status qkv_model_load_opts(const char *dir, const qkv_model_options *opts, qkv_model **out) {
    if (out) *out = NULL;
    if (!dir || !out) return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_model_load: NULL argument");
    qkv_dtype dtype = QKV_DTYPE_F32;
    QKV_TRY(qkv__model_options_dtype("qkv_model_load", opts, &dtype));
    qkv_model *m = qkv__calloc(1, sizeof *m);
    if (!m) return qkv__fail(QKV_ERR_NOMEM, "qkv_model_load: out of memory");
    qkv_status s = qkv__bert_load_as(dir, dtype, &m->bert);
    if (s == QKV_OK) {
        qkv__json_begin();
        s = read_pipeline(dir, m);
        qkv__json_end();
    }
    if (s == QKV_OK && has_tokenizer(dir)) s = qkv_tokenizer_load(dir, &m->tok);
    if (s != QKV_OK) {
        qkv_model_free(m);
        return s;
    }
    *out = m;
    return QKV_OK;
}

void qkv_model_free(qkv_model *m) {
    if (!m) return;
    qkv__bert_free(m->bert);
    qkv_tokenizer_free(m->tok);
    qkv__free(m);
}

qkv_dtype qkv_model_dtype(const qkv_model *m) { return m ? m->bert->dtype : QKV_DTYPE_F32; }

int64_t qkv_model_dim(const qkv_model *m) { return m ? m->bert->cfg.hidden_size : 0; }
int64_t qkv_model_max_tokens(const qkv_model *m) { return m ? m->max_seq_len : 0; }

/* Tokens per forward call: bounds the workspace (about 6 · C + F floats per token). */
#define EMBED_TOKENS_PER_CALL 8192

/* What follows the encoder: sentence-transformers pooling, or the classification head. */
typedef enum { HEAD_POOL, HEAD_CLASSIFY } head_kind;

/* n packed sequences through the encoder in calls of about EMBED_TOKENS_PER_CALL tokens, each
 * call's hidden states through the head into out [n, width]. */
static qkv_status run_encoder(qkv_runtime *rt, const qkv_model *m, const char *fn, head_kind head,
                              const int32_t *ids, const int32_t *type_ids, const int64_t *lens,
                              size_t n, float *out, int64_t width) {
    if (!m || !lens || !out || (n && !ids))
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: NULL argument", fn);
    const int64_t C = m->bert->cfg.hidden_size;
    int64_t total = 0;
    for (size_t s = 0; s < n; s++) {
        if (lens[s] < 1 || lens[s] > m->max_seq_len)
            return qkv__fail(QKV_ERR_INVALID_ARG,
                             "%s: sequence %zu has %lld tokens (1..%lld allowed)", fn, s,
                             (long long)lens[s], (long long)m->max_seq_len);
        total += lens[s];
    }
    if (n == 0) return QKV_OK;
    float *hidden = qkv__alloc(
        sizeof(float) * (size_t)C *
        (size_t)(total < EMBED_TOKENS_PER_CALL ? total : EMBED_TOKENS_PER_CALL + m->max_seq_len));
    if (!hidden) return qkv__fail(QKV_ERR_NOMEM, "%s: out of memory", fn);
    qkv_status st = QKV_OK;
    size_t s0 = 0;
    int64_t t0 = 0; /* first token of sequence s0 */
    while (st == QKV_OK && s0 < n) {
        size_t s1 = s0;
        int64_t tok = 0;
        while (s1 < n && (s1 == s0 || tok + lens[s1] <= EMBED_TOKENS_PER_CALL)) tok += lens[s1++];
        const int64_t ns = (int64_t)(s1 - s0);
        float *o = out + s0 * (size_t)width;
        st = qkv__bert_forward(rt, m->bert, ids + t0, type_ids ? type_ids + t0 : NULL, lens + s0,
                               ns, hidden);
        if (st == QKV_OK && head == HEAD_POOL)
            qkv_nn_pool_forward(hidden, lens + s0, ns, C, m->pool, m->normalize, o);
        else if (st == QKV_OK)
            st = qkv__bert_classify_head(rt, m->bert, hidden, lens + s0, ns, o);
        t0 += tok;
        s0 = s1;
    }
    qkv__free(hidden);
    return st;
}

qkv_status qkv_embed_tokens(qkv_runtime *rt, const qkv_model *m, const int32_t *ids,
                            const int64_t *lens, size_t n, float *out) {
    return run_encoder(rt, m, "qkv_embed_tokens", HEAD_POOL, ids, NULL, lens, n, out,
                       m ? m->bert->cfg.hidden_size : 0);
}

const qkv_tokenizer *qkv_model_tokenizer(const qkv_model *m) { return m ? m->tok : NULL; }

typedef struct {
    const qkv_model *m;
    const char *const *texts, *const *pairs;
    const size_t *text_lens, *pair_lens;
    qkv_encoding **enc; /* [n] */
    _Atomic int failed;
    qkv_status status;
} encode_job;

static void encode_task(void *ctx, int64_t begin, int64_t end, int tid) {
    (void)tid;
    encode_job *j = ctx;
    qkv_encode_options o;
    qkv_tokenizer_default_options(j->m->tok, &o);
    /* as sentence-transformers (and transformers' pipelines with truncation=True) call the
     * tokenizer: special tokens, longest-first truncation at the model's most tokens, no
     * padding (whatever tokenizer.json says) */
    o.add_special_tokens = 1;
    o.max_length = j->m->max_seq_len;
    o.truncation = QKV_TRUNCATE_LONGEST_FIRST;
    o.truncate_left = 0;
    o.pad_to = 0;
    o.pad_to_multiple_of = 0;
    for (int64_t i = begin; i < end && !j->failed; i++) {
        const char *t = j->texts[i] ? j->texts[i] : "";
        size_t len = j->text_lens ? j->text_lens[i] : strlen(t);
        const char *p = j->pairs ? j->pairs[i] : NULL;
        size_t plen = p ? (j->pair_lens ? j->pair_lens[i] : strlen(p)) : 0;
        if (plen == 0) p = NULL; /* as transformers' tokenizers: an empty pair is no pair */
        qkv_status s = qkv_tokenizer_encode(j->m->tok, t, len, p, plen, &o, &j->enc[i]);
        if (s != QKV_OK && !j->failed) {
            j->status = s;
            j->failed = 1;
        }
    }
}

/* Tokenizes n texts (and pairs) in parallel into packed ids [Σ lens], type_ids (when asked
 * for) and lens [n]; the caller frees the three. */
static qkv_status tokenize(qkv_runtime *rt, const qkv_model *m, const char *fn,
                           const char *const *texts, const size_t *text_lens,
                           const char *const *pairs, const size_t *pair_lens, size_t n,
                           int32_t **ids_out, int32_t **types_out, int64_t **lens_out) {
    encode_job j = {
        .m = m, .texts = texts, .text_lens = text_lens, .pairs = pairs, .pair_lens = pair_lens};
    j.enc = qkv__calloc(n, sizeof *j.enc);
    int64_t *lens = qkv__alloc(n * sizeof *lens);
    int32_t *ids = NULL, *types = NULL;
    qkv_status s = QKV_OK;
    if (!j.enc || !lens) s = qkv__fail(QKV_ERR_NOMEM, "%s: out of memory", fn);
    if (s == QKV_OK) {
        qkv_parallel_for(rt, (int64_t)n, 16, encode_task, &j);
        if (j.failed) s = j.status;
    }
    size_t total = 0;
    for (size_t i = 0; s == QKV_OK && i < n; i++) {
        lens[i] = (int64_t)j.enc[i]->n;
        total += j.enc[i]->n;
    }
    if (s == QKV_OK && (!(ids = qkv__alloc((total ? total : 1) * sizeof *ids)) ||
                        (types_out && !(types = qkv__alloc((total ? total : 1) * sizeof *types)))))
        s = qkv__fail(QKV_ERR_NOMEM, "%s: out of memory", fn);
    for (size_t i = 0, o = 0; s == QKV_OK && i < n; o += j.enc[i]->n, i++) {
        memcpy(ids + o, j.enc[i]->ids, j.enc[i]->n * sizeof *ids);
        if (types) memcpy(types + o, j.enc[i]->type_ids, j.enc[i]->n * sizeof *types);
    }
    for (size_t i = 0; j.enc && i < n; i++) qkv_encoding_free(j.enc[i]);
    qkv__free(j.enc);
    if (s != QKV_OK) {
        qkv__free(lens), qkv__free(ids), qkv__free(types);
        return s;
    }
    *ids_out = ids, *lens_out = lens;
    if (types_out) *types_out = types;
    return QKV_OK;
}

qkv_status qkv_model_tokenize(qkv_runtime *rt, const qkv_model *m, const char *const *texts,
                              const size_t *text_lens, size_t n, int32_t **ids, int64_t **lens) {
    if (ids) *ids = NULL;
    if (lens) *lens = NULL;
    if (!m || !ids || !lens || (n && !texts))
        return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_model_tokenize: NULL argument");
    if (!m->tok)
        return qkv__fail(QKV_ERR_UNSUPPORTED,
                         "qkv_model_tokenize: the model directory has no tokenizer "
                         "(tokenizer.json, vocab.txt)");
    return tokenize(rt, m, "qkv_model_tokenize", texts, text_lens, NULL, NULL, n, ids, NULL, lens);
}

qkv_status qkv_embed(qkv_runtime *rt, const qkv_model *m, const char *const *texts,
                     const size_t *text_lens, size_t n, float *out) {
    if (!m || (n && (!texts || !out)))
        return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_embed: NULL argument");
    if (!m->tok)
        return qkv__fail(QKV_ERR_UNSUPPORTED,
                         "qkv_embed: the model directory has no tokenizer (tokenizer.json, "
                         "vocab.txt); use qkv_embed_tokens");
    if (n == 0) return QKV_OK;
    int32_t *ids;
    int64_t *lens;
    QKV_TRY(tokenize(rt, m, "qkv_embed", texts, text_lens, NULL, NULL, n, &ids, NULL, &lens));
    qkv_status s = qkv_embed_tokens(rt, m, ids, lens, n, out);
    qkv__free(lens);
    qkv__free(ids);
    return s;
}

/* ---------------------------------------------------------------- classification */

int64_t qkv_model_num_labels(const qkv_model *m) {
    return m && m->bert->cls_w ? m->bert->labels.n : 0;
}

const char *qkv_model_label(const qkv_model *m, int64_t i) {
    return i >= 0 && i < qkv_model_num_labels(m) ? m->bert->labels.names[i] : NULL;
}

qkv_problem_type qkv_model_problem_type(const qkv_model *m) {
    return qkv_model_num_labels(m) ? m->bert->labels.problem : QKV_PROBLEM_SINGLE_LABEL;
}

static qkv_status need_head(const qkv_model *m, const char *fn) {
    if (!m) return qkv__fail(QKV_ERR_INVALID_ARG, "%s: NULL model", fn);
    if (!qkv_model_num_labels(m))
        return qkv__fail(
            QKV_ERR_UNSUPPORTED,
            "%s: the model has no classification head (a BertForSequenceClassification "
            "directory: config.json architectures naming it, or classifier.weight in "
            "model.safetensors, with the pooler)",
            fn);
    return QKV_OK;
}

qkv_status qkv_classify_tokens(qkv_runtime *rt, const qkv_model *m, const int32_t *ids,
                               const int32_t *type_ids, const int64_t *lens, size_t n,
                               float *logits) {
    QKV_TRY(need_head(m, "qkv_classify_tokens"));
    return run_encoder(rt, m, "qkv_classify_tokens", HEAD_CLASSIFY, ids, type_ids, lens, n, logits,
                       m->bert->labels.n);
}

qkv_status qkv_classify(qkv_runtime *rt, const qkv_model *m, const char *const *texts,
                        const size_t *text_lens, const char *const *pairs, const size_t *pair_lens,
                        size_t n, float *logits) {
    QKV_TRY(need_head(m, "qkv_classify"));
    if (n && (!texts || !logits))
        return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_classify: NULL argument");
    if (!m->tok)
        return qkv__fail(QKV_ERR_UNSUPPORTED,
                         "qkv_classify: the model directory has no tokenizer (tokenizer.json, "
                         "vocab.txt); use qkv_classify_tokens");
    if (n == 0) return QKV_OK;
    int32_t *ids, *types;
    int64_t *lens;
    QKV_TRY(tokenize(rt, m, "qkv_classify", texts, text_lens, pairs, pair_lens, n, &ids, &types,
                     &lens));
    qkv_status s = qkv_classify_tokens(rt, m, ids, types, lens, n, logits);
    qkv__free(lens), qkv__free(ids), qkv__free(types);
    return s;
}

qkv_status qkv_classify_tokenize(qkv_runtime *rt, const qkv_model *m, const char *const *texts,
                                 const size_t *text_lens, const char *const *pairs,
                                 const size_t *pair_lens, size_t n, int32_t **ids,
                                 int32_t **type_ids, int64_t **lens) {
    if (ids) *ids = NULL;
    if (type_ids) *type_ids = NULL;
    if (lens) *lens = NULL;
    if (!ids || !type_ids || !lens || (n && !texts))
        return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_classify_tokenize: NULL argument");
    QKV_TRY(need_head(m, "qkv_classify_tokenize"));
    if (!m->tok)
        return qkv__fail(QKV_ERR_UNSUPPORTED,
                         "qkv_classify_tokenize: the model directory has no tokenizer "
                         "(tokenizer.json, vocab.txt)");
    return tokenize(rt, m, "qkv_classify_tokenize", texts, text_lens, pairs, pair_lens, n, ids,
                    type_ids, lens);
}

/* σ(x) without overflow for either sign. */
static double sigmoid(double x) {
    if (x >= 0) return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

qkv_status qkv_classify_scores(const qkv_model *m, const float *logits, size_t n, float *scores) {
    QKV_TRY(need_head(m, "qkv_classify_scores"));
    if (n && (!logits || !scores))
        return qkv__fail(QKV_ERR_INVALID_ARG, "qkv_classify_scores: NULL argument");
    if (n == 0) return QKV_OK;
    const qkv__labels *l = &m->bert->labels;
    const size_t numel = n * (size_t)l->n;
    /* transformers' text-classification pipeline: identity for an explicit regression, sigmoid
     * for multi-label or a single label, else softmax */
    if (l->problem_given && l->problem == QKV_PROBLEM_REGRESSION) {
        if (scores != logits) memmove(scores, logits, numel * sizeof *scores);
    } else if (l->problem == QKV_PROBLEM_MULTI_LABEL || l->n == 1) {
        for (size_t i = 0; i < numel; i++) scores[i] = (float)sigmoid(logits[i]);
    } else if (scores != logits) {
        return qkv_nn_softmax_forward(NULL, scores, logits, (int64_t)n, l->n);
    } else { /* in place: the softmax layer reads a separate input */
        float *tmp = qkv__alloc(numel * sizeof *tmp);
        if (!tmp) return qkv__fail(QKV_ERR_NOMEM, "qkv_classify_scores: out of memory");
        memcpy(tmp, logits, numel * sizeof *tmp);
        qkv_status s = qkv_nn_softmax_forward(NULL, scores, tmp, (int64_t)n, l->n);
        qkv__free(tmp);
        return s;
    }
    return QKV_OK;
}
