/* data_parallel.c — writing parallel datasets (qkv_data_prepare_parallel): two line-aligned
 * text files (line i of each is a sentence pair) to the source and target shards of each split
 * plus meta.json "kind": "parallel" (docs/TRAINING.md, "Dataset format"). The reader is
 * data.c; the shard writer, the staging directory and meta.json's writing are data_prepare.c's.
 *
 * Both files are read in step, one line at a time (memory stays bounded by the longest line).
 * Each side is encoded without special tokens and followed by its tokenizer's end-of-sentence
 * id, so a sentence of the dataset is what transformers' MarianTokenizer gives for a Marian
 * directory (source text; text_target with target.spm). The end-of-sentence id is also what
 * separates sentences in a shard, so a sentence whose text encodes to it (a literal "</s>")
 * is refused like an empty line. Pair i goes to validation by the draw of qkv_data_prepare on
 * the line number, so the split does not depend on which pairs were skipped. */
#include "train/data.h"

#include "core/abi.h"
#include "core/alloc.h"
#include "core/error.h"
#include "core/rng.h"
#include "io/file.h"
#include "io/json.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define READ_CHUNK (1u << 20)
#define MAX_LINE ((size_t)1 << 26) /* a longer "line" is not a sentence */
#define DOC_STREAM 0x51b4d0c5u     /* data_prepare.c's document -> split draw */

/* ---------------------------------------------------------------- reading lines */

typedef struct line_reader {
    const char *path;
    int fd;
    char *buf;
    size_t cap, len, pos; /* bytes [pos, len) of buf are read but not returned yet */
    int eof;
    int64_t line; /* the number (1-based) of the line last returned */
} line_reader;

static qkv_status reader_open(line_reader *r, const char *path) {
    memset(r, 0, sizeof *r);
    r->path = path;
    r->fd = -1;
    return qkv__open_regular(path, 0, &r->fd, NULL);
}

static void reader_close(line_reader *r) {
    if (r->fd >= 0) close(r->fd);
    qkv__free(r->buf);
    r->fd = -1;
    r->buf = NULL;
}

/* The next line (without its "\n" and one "\r" before it) in *s, *n: valid until the next call;
 * *got 0 at the end of the file. A last line without "\n" counts; an empty file has none. */
static qkv_status next_line(line_reader *r, const char **s, size_t *n, int *got, uint64_t *bytes) {
    *got = 0;
    for (;;) {
        char *nl = r->len > r->pos ? memchr(r->buf + r->pos, '\n', r->len - r->pos) : NULL;
        if (nl || (r->eof && r->pos < r->len)) {
            size_t end = nl ? (size_t)(nl - r->buf) : r->len;
            *s = r->buf + r->pos;
            *n = end - r->pos;
            if (*n > 0 && (*s)[*n - 1] == '\r') (*n)--;
            r->pos = nl ? end + 1 : end;
            r->line++;
            *got = 1;
            return QKV_OK;
        }
        if (r->eof) return QKV_OK;
        if (r->pos > 0) { /* keep only the unfinished line */
            memmove(r->buf, r->buf + r->pos, r->len - r->pos);
            r->len -= r->pos;
            r->pos = 0;
        }
        if (r->len > MAX_LINE)
            return qkv__fail(QKV_ERR_FORMAT, "%s: line %lld: longer than %zu bytes", r->path,
                             (long long)r->line + 1, MAX_LINE);
        if (r->cap - r->len < READ_CHUNK) {
            size_t cap = r->len + 2 * READ_CHUNK;
            char *b = qkv__alloc(cap);
            if (!b) return qkv__fail(QKV_ERR_NOMEM, "%s: a line of %zu bytes", r->path, r->len);
            if (r->len) memcpy(b, r->buf, r->len);
            qkv__free(r->buf);
            r->buf = b;
            r->cap = cap;
        }
        ssize_t k = read(r->fd, r->buf + r->len, r->cap - r->len);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return qkv__data_io_fail("read failed", r->path);
        if (k == 0) r->eof = 1;
        r->len += (size_t)k;
        *bytes += (uint64_t)k;
    }
}

/* ---------------------------------------------------------------- pairs */

typedef struct side {
    const qkv_tokenizer *tok;
    qkv_encode_options enc;
    int32_t eos;
    uint64_t vocab;
} side;

typedef struct pprep {
    side sd[2];                /* source, target */
    qkv__shard_writer w[2][2]; /* [split][side] */
    double val_fraction;
    uint64_t seed;
    int skip;
    int64_t skipped;
    qkv_encoding *pending[2]; /* the last pair, written when the next one comes (or at the end) */
    int pending_split;
    uint64_t bytes_done, bytes_total;
    qkv_progress_fn progress;
    void *progress_ctx;
} pprep;

static int blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!(s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\v' || s[i] == '\f'))
            return 0;
    return 1;
}

/* What is wrong with one side's line as a sentence (NULL: nothing); *e gets its encoding. */
static qkv_status encode_line(const side *sd, const char *s, size_t n, const char **why,
                              qkv_encoding **e) {
    *why = NULL;
    *e = NULL;
    size_t bad;
    if (memchr(s, '\0', n))
        *why = "a NUL byte";
    else if (!qkv__utf8_valid(s, n, &bad))
        *why = "invalid UTF-8";
    else if (blank(s, n))
        *why = "an empty line";
    if (*why) return QKV_OK;
    QKV_TRY(qkv_tokenizer_encode(sd->tok, s, n, NULL, 0, &sd->enc, e));
    for (size_t i = 0; i < (*e)->n; i++) {
        if ((*e)->ids[i] < 0 || (uint64_t)(*e)->ids[i] >= sd->vocab)
            return qkv__fail(QKV_ERR_INTERNAL, "data prepare: the tokenizer gave id %d",
                             (*e)->ids[i]);
        if ((*e)->ids[i] == sd->eos) *why = "the end-of-sentence token inside the sentence";
    }
    if (!*why && (*e)->n == 0) *why = "no token";
    return QKV_OK;
}

static qkv_status flush_pending(pprep *p) {
    if (!p->pending[0]) return QKV_OK;
    qkv_status s = QKV_OK;
    for (int k = 0; k < 2 && s == QKV_OK; k++) {
        qkv__shard_writer *w = &p->w[p->pending_split][k];
        s = qkv__writer_put(w, p->pending[k]->ids, p->pending[k]->n);
        if (s == QKV_OK) s = qkv__writer_put(w, &p->sd[k].eos, 1);
        if (s == QKV_OK) w->documents++;
    }
    for (int k = 0; k < 2; k++) {
        qkv_encoding_free(p->pending[k]);
        p->pending[k] = NULL;
    }
    return s;
}

/* One pair (line `index` of the files): checked, encoded, held as the pending pair. */
static qkv_status add_pair(pprep *p, const line_reader *r, const char *const *txt,
                           const size_t *len, int split, int64_t index) {
    qkv_encoding *e[2] = {NULL, NULL};
    const char *why = NULL;
    int k = 0;
    qkv_status s = QKV_OK;
    for (; k < 2 && s == QKV_OK && !why; k++)
        s = encode_line(&p->sd[k], txt[k], len[k], &why, &e[k]);
    if (s == QKV_OK && why && !p->skip)
        s = qkv__fail(QKV_ERR_FORMAT,
                      "%s: line %lld: %s (every line is a sentence of a pair; skip_bad_pairs, "
                      "`--on-error skip`, drops such pairs)",
                      r[k - 1].path, (long long)r[k - 1].line, why);
    if (s == QKV_OK && why) p->skipped++;
    if (s != QKV_OK || why) {
        qkv_encoding_free(e[0]);
        qkv_encoding_free(e[1]);
        return s;
    }
    s = flush_pending(p);
    if (s != QKV_OK) {
        qkv_encoding_free(e[0]);
        qkv_encoding_free(e[1]);
        return s;
    }
    p->pending[0] = e[0], p->pending[1] = e[1];
    p->pending_split = split >= 0 ? split
                       : qkv__rng_uniform(p->seed, DOC_STREAM, (uint64_t)index) < p->val_fraction
                           ? QKV_SPLIT_VAL
                           : QKV_SPLIT_TRAIN;
    return QKV_OK;
}

/* Every pair of two files: to `split`, or (-1) to the split the draw gives. */
static qkv_status read_pairs(pprep *p, const char *source, const char *target, int split) {
    line_reader r[2];
    qkv_status s = reader_open(&r[0], source);
    if (s == QKV_OK) s = reader_open(&r[1], target);
    for (int64_t index = 0; s == QKV_OK; index++) {
        const char *txt[2] = {NULL, NULL};
        size_t len[2] = {0, 0};
        int got[2] = {0, 0};
        for (int k = 0; k < 2 && s == QKV_OK; k++)
            s = next_line(&r[k], &txt[k], &len[k], &got[k], &p->bytes_done);
        if (s != QKV_OK || (!got[0] && !got[1])) break;
        if (got[0] != got[1]) { /* count the rest of the longer file for the message */
            const int lg = got[1];
            int more = 1;
            while (s == QKV_OK && more)
                s = next_line(&r[lg], &txt[lg], &len[lg], &more, &p->bytes_done);
            if (s == QKV_OK)
                s = qkv__fail(QKV_ERR_FORMAT,
                              "%s has %lld lines, %s has %lld: the files must be line-aligned "
                              "(line i of each is a pair)",
                              r[0].path, (long long)r[0].line, r[1].path, (long long)r[1].line);
            break;
        }
        s = add_pair(p, r, txt, len, split, index);
        if (p->progress && p->bytes_total) {
            double f = (double)p->bytes_done / (double)p->bytes_total;
            p->progress(p->progress_ctx, f < 1 ? f : 1);
        }
    }
    reader_close(&r[0]);
    reader_close(&r[1]);
    return s;
}

/* The last pair goes where a split would otherwise stay empty (as qkv_data_prepare does). */
static qkv_status finish_pairs(pprep *p, int drawn) {
    if (!p->pending[0]) return QKV_OK;
    const int64_t train = p->w[0][0].documents, val = p->w[1][0].documents;
    if (drawn && train == 0)
        p->pending_split = QKV_SPLIT_TRAIN;
    else if (drawn && val == 0 && p->val_fraction > 0)
        p->pending_split = QKV_SPLIT_VAL;
    return flush_pending(p);
}

static json_t *split_json(const pprep *p, int split) {
    json_t *o = qkv__writer_json(&p->w[split][0]);
    json_t *t = qkv__writer_json(&p->w[split][1]);
    if (!o || !t || json_object_set_new(o, "target", t) != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static qkv_status write_meta(const pprep *p, const qkv_data_options *o, const char *dir) {
    char seed[24];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)o->seed);
    char *abs[2];
    const char *tp = qkv__data_tokenizer_name(o->tokenizer_path, &abs[0]);
    const char *ttp = qkv__data_tokenizer_name(o->target_tokenizer_path, &abs[1]);
    qkv__json_begin();
    json_t *root = json_pack(
        "{s:s,s:i,s:s,s:I,s:I,s:i,s:s?,s:I,s:I,s:i,s:s?,s:f,s:b,s:s,s:I,s:o?,s:o?}", "format",
        "qkv-tokens", "version", QKV_DATA_VERSION, "kind", "parallel", "vocab_size",
        (json_int_t)p->sd[0].vocab, "eot_id", (json_int_t)p->sd[0].eos, "bytes_per_id",
        p->w[0][0].bpi, "tokenizer", tp, "target_vocab_size", (json_int_t)p->sd[1].vocab,
        "target_eot_id", (json_int_t)p->sd[1].eos, "target_bytes_per_id", p->w[0][1].bpi,
        "target_tokenizer", ttp, "val_fraction", o->val_source ? 0.0 : p->val_fraction, "val_files",
        o->val_source != NULL, "seed", seed, "shard_tokens", (json_int_t)p->w[0][0].shard_tokens,
        "train", split_json(p, 0), "val", split_json(p, 1));
    qkv_status s = qkv__data_write_meta(root, dir);
    qkv__json_end();
    free(abs[0]);
    free(abs[1]);
    return s;
}

/* A side's end-of-sentence id: the tokenizer's SEP / EOS special, else <|endoftext|>. */
static qkv_status side_init(side *sd, const qkv_tokenizer *tok, const char *what) {
    sd->tok = tok;
    sd->eos = qkv_tokenizer_special_id(tok, QKV_SPECIAL_SEP);
    if (sd->eos < 0) sd->eos = qkv_tokenizer_token_to_id(tok, "<|endoftext|>", 13);
    if (sd->eos < 0)
        return qkv__fail(QKV_ERR_INVALID_ARG, "the %s tokenizer has no end-of-sentence token",
                         what);
    sd->vocab = qkv_tokenizer_vocab_size(tok);
    if (sd->vocab == 0 || sd->vocab > (uint64_t)QKV_DATA_MAX_VOCAB ||
        (uint64_t)sd->eos >= sd->vocab)
        return qkv__fail(QKV_ERR_INVALID_ARG, "the %s tokenizer has a vocabulary of %llu ids", what,
                         (unsigned long long)sd->vocab);
    qkv_tokenizer_default_options(tok, &sd->enc);
    sd->enc.add_special_tokens = 0;
    sd->enc.max_length = 0;
    sd->enc.pad_to = 0;
    sd->enc.pad_to_multiple_of = 0;
    return QKV_OK;
}

static qkv_status add_size(const char *path, uint64_t *total) {
    int fd;
    uint64_t size = 0;
    QKV_TRY(qkv__open_regular(path, 0, &fd, &size)); /* a directory or FIFO: refused by name */
    close(fd);
    *total += size;
    return QKV_OK;
}

qkv_status qkv_data_prepare_parallel(const qkv_tokenizer *src_tok, const qkv_tokenizer *tgt_tok,
                                     const char *source, const char *target,
                                     const qkv_data_options *opts, const char *out_dir,
                                     qkv_data_stats *stats, qkv_progress_fn progress,
                                     void *progress_ctx) {
    static const char fn[] = "qkv_data_prepare_parallel";
    qkv_data_stats ds; /* copied to *stats up to its struct_size (core/abi.h) */
    memset(&ds, 0, sizeof ds);
    if (stats) QKV__STRUCT_OUT(qkv_data_stats, stats, &ds);
    if (!src_tok || !tgt_tok || !source || !target || !out_dir || !*out_dir)
        return qkv__fail(QKV_ERR_INVALID_ARG,
                         "%s: both tokenizers, source, target and out_dir are required", fn);
    qkv_data_options o, defaults;
    qkv_data_default_options(&defaults);
    QKV_TRY(
        QKV__STRUCT_IN(qkv_data_options, &o, opts, &defaults, "qkv_data_prepare_parallel: opts"));
    if (!(o.val_fraction >= 0 && o.val_fraction <= 1))
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: val_fraction %g is not in [0, 1]", fn,
                         o.val_fraction);
    if (o.shard_tokens < 0)
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: shard_tokens %lld is negative", fn,
                         (long long)o.shard_tokens);
    if (o.shard_tokens == 0) o.shard_tokens = 100000000;
    if (!o.val_source != !o.val_target)
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: val_source and val_target go together", fn);
    if (o.split_on)
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: split_on is for documents, not pairs", fn);
    pprep p;
    memset(&p, 0, sizeof p);
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 2; k++) p.w[i][k].fd = -1;
    QKV_TRY(side_init(&p.sd[0], src_tok, "source"));
    QKV_TRY(side_init(&p.sd[1], tgt_tok, "target"));
    p.val_fraction = o.val_fraction;
    p.seed = o.seed;
    p.skip = o.skip_bad_pairs != 0;
    p.progress = progress;
    p.progress_ctx = progress_ctx;
    const char *files[4] = {source, target, o.val_source, o.val_target};
    for (int i = 0; i < 4; i++)
        if (files[i]) QKV_TRY(add_size(files[i], &p.bytes_total));
    int exists;
    char stage[QKV_DATA_PATH_CAP];
    QKV_TRY(qkv__data_stage_begin(out_dir, stage, &exists));
    static const char *const prefix[2][2] = {{"train", "train_tgt"}, {"val", "val_tgt"}};
    qkv_status s = QKV_OK;
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 2 && s == QKV_OK; k++)
            s = qkv__writer_init(&p.w[i][k], stage, prefix[i][k], p.sd[k].vocab, o.shard_tokens);
    if (s == QKV_OK && progress) progress(progress_ctx, 0.0);
    if (s == QKV_OK) s = read_pairs(&p, source, target, o.val_source ? QKV_SPLIT_TRAIN : -1);
    if (s == QKV_OK && o.val_source) s = flush_pending(&p); /* (a val pair never moves) */
    if (s == QKV_OK && o.val_source) s = read_pairs(&p, o.val_source, o.val_target, QKV_SPLIT_VAL);
    if (s == QKV_OK) s = finish_pairs(&p, !o.val_source);
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 2 && s == QKV_OK; k++) s = qkv__writer_close_shard(&p.w[i][k]);
    if (s == QKV_OK) s = qkv__data_sync_dir(stage);
    if (s == QKV_OK) s = write_meta(&p, &o, stage);
    s = qkv__data_stage_end(s, stage, out_dir, exists);
    if (s == QKV_OK && progress) progress(progress_ctx, 1.0);
    qkv_encoding_free(p.pending[0]);
    qkv_encoding_free(p.pending[1]);
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 2; k++) qkv__writer_release(&p.w[i][k]);
    if (s == QKV_OK && stats) {
        for (int i = 0; i < 2; i++) {
            ds.documents[i] = p.w[i][0].documents;
            ds.tokens[i] = p.w[i][0].tokens;
        }
        ds.bytes_read = (int64_t)p.bytes_done;
        ds.skipped = p.skipped;
        QKV__STRUCT_OUT(qkv_data_stats, stats, &ds);
    }
    return s;
}
