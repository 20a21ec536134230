/* load_spm.c — a SentencePiece model file (ModelProto: T5's spiece.model, Marian's
 * source.spm) into a qkv_tokenizer, read with protobuf-c from SentencePiece's published
 * .proto (sentencepiece_model.proto, compiled at build time). protobuf-c checks every length
 * against the bytes present; what the message says is checked here (piece types, ids, the
 * charsmap) and anything we do not implement is refused by name.
 *
 * The tokenizer behaves as SentencePiece itself: its normalizer (the precompiled charsmap,
 * longest match; white space folding; the dummy "▁" prefix), the Unigram model with float
 * scores (unigram.c, spm = 1) or BPE with merges taken from the piece scores (a pair merges
 * into the piece it spells; higher score first, leftmost on ties — SentencePiece's agenda),
 * byte_fallback, runs of unknown chars fused into one unk.
 *
 * With Marian's vocab.json (a directory with source.spm), ids are vocab.json's: every piece
 * is looked up there (missing: <unk>), "</s>" ends every sequence, "</s>", "<unk>", "<pad>" are
 * special added tokens, a leading ">>xx<<" language code is its own token, and decoding is
 * MarianTokenizer's — as transformers' MarianTokenizer (without sacremoses).
 *
 * A T5 directory with spiece.model and no tokenizer.json loads as transformers' T5Tokenizer
 * converts it: the pieces' ids, <pad> </s> <unk> and 100 <extra_id_N> sentinels as special
 * added tokens, "</s>" appended (qkv__tok_load_spm_t5). */
#include "tokenizer/tokenizer_internal.h"

#include "core/alloc.h"
#include "core/error.h"
#include "sentencepiece_model.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* protobuf-c allocates through qkv's allocator; a failure is remembered so that the NULL
 * the parser then returns is reported as out of memory, not as a malformed file */
static void *pb_alloc(void *data, size_t size) {
    void *p = qkv__alloc(size ? size : 1);
    if (!p) *(int *)data = 1;
    return p;
}
static void pb_free(void *data, void *p) {
    (void)data;
    qkv__free(p);
}

static int cmp_desc(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x > y ? -1 : x < y;
}

/* BPE merges from the scores: for every NORMAL / USER_DEFINED piece p and every split
 * p = l + r into two such pieces, (l, r) -> p with rank = p's place among distinct scores */
static qkv_status spm_bpe_merges(qkv_tokenizer *t, const Sentencepiece__ModelProto *m,
                                 const char *path) {
    size_t n = m->n_pieces;
    float *sorted = qkv__alloc(n * sizeof *sorted);
    if (!sorted) return qkv__fail(QKV_ERR_NOMEM, "%s: merges", path);
    for (size_t i = 0; i < n; i++) sorted[i] = m->pieces[i]->score;
    qsort(sorted, n, sizeof *sorted, cmp_desc);
    size_t nd = 0;
    for (size_t i = 0; i < n; i++)
        if (nd == 0 || sorted[nd - 1] != sorted[i]) sorted[nd++] = sorted[i];
    qkv_status st = QKV_OK;
    for (size_t i = 0; i < n && st == QKV_OK; i++) {
        const ProtobufCBinaryData *p = &m->pieces[i]->piece;
        uint8_t ty = t->uni.types[i];
        if (ty != TOK_PIECE_NORMAL && ty != TOK_PIECE_USER) continue;
        size_t lo = 0, hi = nd; /* rank: the index of the score among distinct scores */
        while (lo + 1 < hi) {
            size_t mid = (lo + hi) / 2;
            if (sorted[mid] >= m->pieces[i]->score)
                lo = mid;
            else
                hi = mid;
        }
        for (size_t k = 1; k < p->len && st == QKV_OK; k++) {
            if ((p->data[k] & 0xC0) == 0x80) continue;
            int32_t l, r;
            if (!qkv__strmap_get(&t->uni.pieces, p->data, k, &l) ||
                !qkv__strmap_get(&t->uni.pieces, p->data + k, p->len - k, &r))
                continue;
            if ((t->uni.types[l] != TOK_PIECE_NORMAL && t->uni.types[l] != TOK_PIECE_USER) ||
                (t->uni.types[r] != TOK_PIECE_NORMAL && t->uni.types[r] != TOK_PIECE_USER))
                continue;
            uint64_t key = ((uint64_t)(uint32_t)l << 32) | (uint32_t)r, old;
            if (qkv__u64map_get(&t->bpe.merges, key, &old)) continue;
            st = qkv__u64map_put(&t->bpe.merges, key, ((uint64_t)lo << 32) | (uint32_t)i);
        }
    }
    qkv__free(sorted);
    return st;
}

/* Marian's vocab.json: {piece: id}; the tokenizer's vocabulary and the remap of pieces */
static qkv_status load_marian_vocab(qkv_tokenizer *t, const Sentencepiece__ModelProto *m,
                                    const char *path) {
    QKV_TRY(qkv__tok_load_vocab_json(t, path));
    int32_t unk;
    if (!qkv__strmap_get(&t->vocab, "<unk>", 5, &unk))
        return qkv__fail(QKV_ERR_FORMAT, "%s: no \"<unk>\" (MarianTokenizer requires it)", path);
    tok_unigram *u = &t->uni;
    u->remap = qkv__alloc(m->n_pieces * sizeof *u->remap);
    if (!u->remap) return qkv__fail(QKV_ERR_NOMEM, "%s", path);
    for (size_t i = 0; i < m->n_pieces; i++) {
        int32_t id;
        const ProtobufCBinaryData *p = &m->pieces[i]->piece;
        u->remap[i] = qkv__strmap_get(&t->vocab, p->data, p->len, &id) ? id : unk;
    }
    u->unk_out = unk;
    u->marian_codes = 1;
    static const char *const specials[] = {"</s>", "<unk>", "<pad>"};
    for (int s = 0; s < 3; s++) {
        int32_t id;
        if (qkv__strmap_get(&t->vocab, specials[s], strlen(specials[s]), &id))
            QKV_TRY(qkv__tok_add_added(t, specials[s], strlen(specials[s]), id, 1, 0, 0, 0));
    }
    int32_t eos;
    if (!qkv__strmap_get(&t->vocab, "</s>", 4, &eos))
        return qkv__fail(QKV_ERR_FORMAT, "%s: no \"</s>\"", path);
    t->special_ids[QKV_SPECIAL_SEP] = eos;
    t->dec.kind = TOK_DEC_MARIAN;
    return qkv__tok_template_eos(t, eos);
}

static qkv_status from_proto(qkv_tokenizer *t, const Sentencepiece__ModelProto *m, const char *path,
                             const char *vocab_json) {
    const Sentencepiece__TrainerSpec *ts = m->trainer_spec;
    const Sentencepiece__NormalizerSpec *ns = m->normalizer_spec;
    int type = ts ? (int)ts->model_type : 1;
    if (type != 1 && type != 2)
        return qkv__fail(QKV_ERR_UNSUPPORTED, "%s: trainer_spec.model_type %d (only UNIGRAM, BPE)",
                         path, type);
    if (ts && ts->treat_whitespace_as_suffix)
        return qkv__fail(QKV_ERR_UNSUPPORTED, "%s: trainer_spec.treat_whitespace_as_suffix", path);
    if (m->denormalizer_spec && m->denormalizer_spec->has_precompiled_charsmap &&
        m->denormalizer_spec->precompiled_charsmap.len)
        return qkv__fail(QKV_ERR_UNSUPPORTED, "%s: denormalizer_spec", path);
    size_t n = m->n_pieces;
    if (n == 0 || n >= INT32_MAX) return qkv__fail(QKV_ERR_FORMAT, "%s: %zu pieces", path, n);
    tok_unigram *u = &t->uni;
    u->scores = qkv__alloc(n * sizeof *u->scores);
    u->types = qkv__alloc(n);
    if (!u->scores || !u->types) return qkv__fail(QKV_ERR_NOMEM, "%s: %zu pieces", path, n);
    u->n_pieces = n;
    u->spm = 1;
    u->unk = -1;
    size_t n_user = 0;
    for (size_t i = 0; i < n; i++) {
        const Sentencepiece__ModelProto__SentencePiece *p = m->pieces[i];
        int ty = p->type;
        if (!p->has_piece || p->piece.len == 0 || memchr(p->piece.data, 0, p->piece.len))
            return qkv__fail(QKV_ERR_FORMAT, "%s: pieces[%zu]: empty piece or a NUL byte", path, i);
        if (ty < 1 || ty > 6)
            return qkv__fail(QKV_ERR_FORMAT, "%s: pieces[%zu]: type %d", path, i, ty);
        if (!(p->score == p->score)) /* NaN */
            return qkv__fail(QKV_ERR_FORMAT, "%s: pieces[%zu]: score is NaN", path, i);
        int32_t old;
        if (qkv__strmap_get(&u->pieces, p->piece.data, p->piece.len, &old))
            return qkv__fail(QKV_ERR_FORMAT, "%s: pieces[%zu] repeats pieces[%d]", path, i, old);
        QKV_TRY(qkv__strmap_put(&u->pieces, p->piece.data, p->piece.len, (int32_t)i));
        u->scores[i] = p->score;
        u->types[i] = (uint8_t)ty;
        if (ty == TOK_PIECE_UNKNOWN) {
            if (u->unk >= 0) return qkv__fail(QKV_ERR_FORMAT, "%s: two UNKNOWN pieces", path);
            u->unk = (int32_t)i;
        }
        if (ty == TOK_PIECE_USER) n_user++;
        if (!vocab_json)
            QKV_TRY(qkv__tok_add_vocab(t, (const char *)p->piece.data, p->piece.len, (int64_t)i));
    }
    if (u->unk < 0) return qkv__fail(QKV_ERR_FORMAT, "%s: no UNKNOWN piece", path);
    u->unk_out = u->unk;
    u->byte_fallback = ts && ts->byte_fallback;

    /* normalizer */
    tok_spm_norm *z = &t->norm.spm;
    t->norm.kind = TOK_NORM_SPM;
    z->add_dummy_prefix = ns ? ns->add_dummy_prefix : 1;
    z->remove_extra_whitespaces = ns ? ns->remove_extra_whitespaces : 1;
    z->escape_whitespaces = ns ? ns->escape_whitespaces : 1;
    if (ns && ns->has_precompiled_charsmap && ns->precompiled_charsmap.len)
        QKV_TRY(qkv__charsmap_parse(ns->precompiled_charsmap.data, ns->precompiled_charsmap.len,
                                    path, &z->charsmap));
    if (n_user) {
        z->user = qkv__calloc(n_user, sizeof *z->user);
        if (!z->user) return qkv__fail(QKV_ERR_NOMEM, "%s", path);
        for (size_t i = 0; i < n; i++) {
            if (u->types[i] != TOK_PIECE_USER) continue;
            const ProtobufCBinaryData *p = &m->pieces[i]->piece;
            char *s = qkv__alloc(p->len + 1);
            if (!s) return qkv__fail(QKV_ERR_NOMEM, "%s", path);
            memcpy(s, p->data, p->len);
            s[p->len] = 0;
            z->user[z->n_user++] = s;
        }
    }

    if (type == 1) {
        t->model = TOK_MODEL_UNIGRAM;
    } else {
        if (vocab_json)
            return qkv__fail(QKV_ERR_UNSUPPORTED, "%s: a BPE model with Marian's vocab.json", path);
        if (n_user)
            return qkv__fail(QKV_ERR_UNSUPPORTED, "%s: USER_DEFINED pieces in a BPE model", path);
        t->model = TOK_MODEL_BPE;
        t->bpe.unk_id = u->unk;
        t->bpe.fuse_unk = 1;
        t->bpe.byte_fallback = u->byte_fallback;
        QKV_TRY(spm_bpe_merges(t, m, path));
    }
    if (vocab_json) return load_marian_vocab(t, m, vocab_json);
    t->dec.kind = TOK_DEC_SPM;
    return QKV_OK;
}

qkv_status qkv__tok_load_spm(qkv_tokenizer *t, const char *path, const char *vocab_json) {
    char *buf;
    size_t len;
    QKV_TRY(qkv__read_file(path, &buf, &len));
    int nomem = 0;
    ProtobufCAllocator al = {pb_alloc, pb_free, &nomem};
    Sentencepiece__ModelProto *m =
        sentencepiece__model_proto__unpack(&al, len, (const uint8_t *)buf);
    qkv__free(buf);
    if (!m && nomem) return qkv__fail(QKV_ERR_NOMEM, "%s: out of memory parsing the model", path);
    if (!m)
        return qkv__fail(QKV_ERR_FORMAT,
                         "%s: not a SentencePiece model (the protobuf message does not parse, or "
                         "memory ran out)",
                         path);
    qkv_status st = from_proto(t, m, path, vocab_json);
    sentencepiece__model_proto__free_unpacked(m, &al);
    return st;
}

qkv_status qkv__tok_load_spm_t5(qkv_tokenizer *t, const char *path, int64_t n_extra) {
    QKV_TRY(qkv__tok_load_spm(t, path, NULL));
    static const char *const specials[] = {"<pad>", "</s>", "<unk>"};
    for (int s = 0; s < 3; s++) {
        int32_t id;
        if (qkv__strmap_get(&t->vocab, specials[s], strlen(specials[s]), &id))
            QKV_TRY(qkv__tok_add_added(t, specials[s], strlen(specials[s]), id, 1, 0, 0, 0));
    }
    const int64_t n = (int64_t)t->uni.n_pieces;
    for (int64_t i = 0; i < n_extra; i++) { /* <extra_id_0> last, as transformers numbers them */
        char name[32];
        const int len = snprintf(name, sizeof name, "<extra_id_%lld>", (long long)i);
        QKV_TRY(qkv__tok_add_vocab(t, name, (size_t)len, n + n_extra - 1 - i));
        QKV_TRY(qkv__tok_add_added(t, name, (size_t)len, n + n_extra - 1 - i, 1, 0, 0, 0));
    }
    int32_t eos;
    if (!qkv__strmap_get(&t->vocab, "</s>", 4, &eos))
        return qkv__fail(QKV_ERR_FORMAT, "%s: no \"</s>\" piece (T5 ends every sequence with it)",
                         path);
    t->special_ids[QKV_SPECIAL_SEP] = eos;
    return qkv__tok_template_eos(t, eos);
}
