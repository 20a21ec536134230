/* load_vocab.c — the pre-tokenizer.json formats: a BERT vocab.txt (+ tokenizer_config.json)
 * and a GPT-2 vocab.json + merges.txt, turned into the same components tokenizers'
 * converters (transformers' convert_slow_tokenizer: BertConverter, GPT2Converter) build, so
 * they encode exactly as the tokenizer.json they would produce. */
#include "tokenizer/tokenizer_internal.h"

#include "core/alloc.h"
#include "core/error.h"
#include "io/json.h"

#include <jansson.h>
#include <string.h>

/* a special token in tokenizer_config.json: "[CLS]" or {"content": "[CLS]", ...}; another
 * type is refused naming the field (*st), never replaced by the default */
static const char *cfg_token(const char *path, json_t *cfg, const char *key, const char *def,
                             qkv_status *st) {
    json_t *v = json_object_get(cfg, key);
    const char *out = def;
    if (*st != QKV_OK || !v || json_is_null(v)) return def;
    if (json_is_object(v))
        *st = qkv__json_str(path, v, "content", NULL, &out);
    else if (json_is_string(v))
        out = json_string_value(v);
    else
        *st = qkv__fail(QKV_ERR_FORMAT, "%s: field '%s' must be a token (a string or an object)",
                        path, key);
    if (*st == QKV_OK && !out)
        *st = qkv__fail(QKV_ERR_FORMAT, "%s: field '%s' has no content", path, key);
    return *st == QKV_OK ? out : def;
}

static int cfg_bool(const char *path, json_t *cfg, const char *key, int def, qkv_status *st) {
    int v = def;
    if (*st == QKV_OK) *st = qkv__json_bool(path, cfg, key, def, &v);
    return v;
}

static qkv_status add_special(qkv_tokenizer *t, const char *tok, int which) {
    int32_t id;
    if (!qkv__strmap_get(&t->vocab, tok, strlen(tok), &id)) return QKV_OK;
    t->special_ids[which] = id;
    return qkv__tok_add_added(t, tok, strlen(tok), id, 1, 0, 0, 0);
}

qkv_status qkv__tok_load_vocab_txt(qkv_tokenizer *t, const char *vocab, const char *config) {
    char *buf;
    size_t len;
    QKV_TRY(qkv__read_file(vocab, &buf, &len));
    size_t i = 0, id = 0;
    qkv_status st = QKV_OK;
    while (st == QKV_OK && i < len) {
        const char *line = buf + i;
        const char *nl = memchr(line, '\n', len - i);
        size_t l = nl ? (size_t)(nl - line) : len - i;
        i += l + (nl ? 1 : 0);
        size_t k = l;
        while (k > 0 && (line[k - 1] == '\r' || line[k - 1] == ' ' || line[k - 1] == '\t')) k--;
        if (!qkv__utf8_valid(line, k, NULL))
            st = qkv__fail(QKV_ERR_FORMAT, "%s: line %zu is not valid UTF-8", vocab, id + 1);
        else
            st = qkv__tok_add_vocab(t, line, k, (int64_t)id);
        id++;
    }
    qkv__free(buf);
    QKV_TRY(st);
    if (t->n_ids == 0) return qkv__fail(QKV_ERR_FORMAT, "%s: empty vocabulary", vocab);

    json_t *cfg = NULL;
    char *cbuf = NULL;
    if (config) QKV_TRY(qkv__read_file(config, &cbuf, &len));
    qkv__json_begin();
    if (cbuf) {
        json_error_t err;
        cfg = json_loadb(cbuf, len, 0, &err);
        if (qkv__json_alloc_failed()) /* jansson went on after a failed allocation */
            st = qkv__fail(QKV_ERR_NOMEM, "%s: out of memory parsing JSON", config);
        else if (!cfg || !json_is_object(cfg))
            st = qkv__fail(QKV_ERR_FORMAT, "%s: invalid JSON at line %d: %s", config, err.line,
                           cfg ? "not an object" : err.text);
    }
    const char *unk = "[UNK]", *cls = "[CLS]", *sep = "[SEP]", *pad = "[PAD]", *mask = "[MASK]";
    char *tokens[5] = {0};
    if (st == QKV_OK) {
        const char *tc = NULL;
        st = qkv__json_str(config, cfg, "tokenizer_class", NULL, &tc);
        if (st == QKV_OK && tc && strstr(tc, "Bert") == NULL && strstr(tc, "MiniLM") == NULL &&
            strstr(tc, "Electra") == NULL && strstr(tc, "DistilBert") == NULL)
            st = qkv__fail(QKV_ERR_UNSUPPORTED,
                           "%s: tokenizer_class \"%s\" with a vocab.txt is "
                           "not supported (BERT-style WordPiece only)",
                           config, tc);
        int lower = cfg_bool(config, cfg, "do_lower_case", 1, &st);
        t->norm.kind = TOK_NORM_BERT;
        t->norm.clean_text = 1;
        t->norm.handle_chinese = cfg_bool(config, cfg, "tokenize_chinese_chars", 1, &st);
        t->norm.lowercase = lower;
        t->norm.strip_accents = cfg_bool(config, cfg, "strip_accents", lower, &st);
        if (cfg_bool(config, cfg, "do_basic_tokenize", 1, &st) == 0 && st == QKV_OK)
            st = qkv__fail(QKV_ERR_UNSUPPORTED, "%s: do_basic_tokenize false is not supported",
                           config);
        const char *names[5] = {cfg_token(config, cfg, "unk_token", unk, &st),
                                cfg_token(config, cfg, "cls_token", cls, &st),
                                cfg_token(config, cfg, "sep_token", sep, &st),
                                cfg_token(config, cfg, "pad_token", pad, &st),
                                cfg_token(config, cfg, "mask_token", mask, &st)};
        for (int k = 0; k < 5 && st == QKV_OK; k++) {
            tokens[k] = qkv__strdup(names[k]);
            if (!tokens[k]) st = qkv__fail(QKV_ERR_NOMEM, "tokenizer config");
        }
    }
    json_decref(cfg);
    qkv__json_end();
    qkv__free(cbuf);
    if (st == QKV_OK) {
        t->model = TOK_MODEL_WORDPIECE;
        t->pre.kind = TOK_PRE_BERT;
        t->wp.prefix = qkv__strdup("##");
        t->dec.kind = TOK_DEC_WORDPIECE;
        t->dec.prefix = qkv__strdup("##");
        t->dec.cleanup = 1;
        if (!t->wp.prefix || !t->dec.prefix) st = qkv__fail(QKV_ERR_NOMEM, "tokenizer");
        t->wp.prefix_len = 2;
        int32_t unk_id;
        t->wp.unk_id =
            qkv__strmap_get(&t->vocab, tokens[0], strlen(tokens[0]), &unk_id) ? unk_id : -1;
        /* the converter's added tokens, in its order: pad, unk, cls, sep, mask */
        static const int order[5] = {3, 0, 1, 2, 4};
        static const int which[5] = {QKV_SPECIAL_UNK, QKV_SPECIAL_CLS, QKV_SPECIAL_SEP,
                                     QKV_SPECIAL_PAD, QKV_SPECIAL_MASK};
        for (int k = 0; k < 5 && st == QKV_OK; k++)
            st = add_special(t, tokens[order[k]], which[order[k]]);
        if (st == QKV_OK) st = qkv__tok_template_bert(t, tokens[1], tokens[2], 0);
    }
    for (int k = 0; k < 5; k++) qkv__free(tokens[k]);
    return st;
}

qkv_status qkv__tok_load_vocab_json(qkv_tokenizer *t, const char *vocab_json) {
    char *buf;
    size_t len;
    QKV_TRY(qkv__read_file(vocab_json, &buf, &len));
    qkv__json_begin();
    json_error_t err;
    json_t *v = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &err);
    qkv_status st = QKV_OK;
    if (qkv__json_alloc_failed()) { /* jansson went on after a failed allocation */
        st = qkv__fail(QKV_ERR_NOMEM, "%s: out of memory parsing JSON", vocab_json);
    } else if (!v || !json_is_object(v)) {
        st = qkv__fail(QKV_ERR_FORMAT, "%s: must be a JSON object of token -> id (line %d: %s)",
                       vocab_json, err.line, v ? "not an object" : err.text);
    } else {
        const char *k;
        json_t *x;
        json_object_foreach(v, k, x) {
            if (!json_is_integer(x) || json_integer_value(x) < 0) {
                st = qkv__fail(QKV_ERR_FORMAT, "%s: \"%s\" needs a non-negative integer id",
                               vocab_json, k);
                break;
            }
            st = qkv__tok_add_vocab(t, k, strlen(k), json_integer_value(x));
            if (st != QKV_OK) break;
        }
    }
    json_decref(v);
    qkv__json_end();
    qkv__free(buf);
    return st;
}

qkv_status qkv__tok_load_vocab_merges(qkv_tokenizer *t, const char *vocab_json,
                                      const char *merges_txt) {
    char *buf;
    size_t len;
    qkv_status st = QKV_OK;
    QKV_TRY(qkv__tok_load_vocab_json(t, vocab_json));
    if (t->n_ids == 0) return qkv__fail(QKV_ERR_FORMAT, "%s: empty vocabulary", vocab_json);

    QKV_TRY(qkv__read_file(merges_txt, &buf, &len));
    size_t i = 0, rank = 0, line_no = 0;
    while (st == QKV_OK && i < len) {
        const char *line = buf + i;
        const char *nl = memchr(line, '\n', len - i);
        size_t l = nl ? (size_t)(nl - line) : len - i;
        i += l + (nl ? 1 : 0);
        line_no++;
        while (l > 0 && (line[l - 1] == '\r')) l--;
        if (l == 0 || (line_no == 1 && l >= 8 && memcmp(line, "#version", 8) == 0)) continue;
        st = qkv__tok_merge_line(t, merges_txt, rank++, line, l);
    }
    qkv__free(buf);
    QKV_TRY(st);
    t->model = TOK_MODEL_BPE;
    t->bpe.byte_level = 1;
    t->pre.kind = TOK_PRE_BYTELEVEL;
    t->pre.add_prefix_space = 0;
    t->pre.use_regex = 1;
    t->post.kind = TOK_POST_BYTELEVEL;
    t->post.trim_offsets = 1;
    t->post.trim_add_prefix_space = 0;
    t->dec.kind = TOK_DEC_BYTELEVEL;
    int32_t id;
    if (qkv__strmap_get(&t->vocab, "<|endoftext|>", 13, &id))
        QKV_TRY(qkv__tok_add_added(t, "<|endoftext|>", 13, id, 1, 0, 0, 0));
    return QKV_OK;
}
