/* unigram.c — the Unigram model: the most probable segmentation of a word into pieces (sum of
 * piece log-probabilities), found by Viterbi over byte positions as both SentencePiece's
 * EncodeOptimized and tokenizers' encode_optimized do it.
 *
 * For each char start s (in order) and each piece p that is a prefix of the word at s, the
 * best path ending at s + |p| is updated if none is known or the new score is strictly
 * greater — so ties keep the earliest start, as both originals. A char no piece of its exact
 * length covers gets an unknown node scoring min_score - 10. Consecutive unknown nodes are
 * fused into one token; it becomes its <0xNN> byte tokens when byte_fallback and all exist,
 * else unk. Prefixes are found by hashing every prefix (FNV-1a, extended a byte at a time) up
 * to the longest piece, at char boundaries only (pieces are valid UTF-8).
 *
 * spm = 1 (a .model / .spm file): scores summed in float as SentencePiece does, user-defined
 * pieces scored length * max_score - 0.1, and only NORMAL / USER_DEFINED pieces considered. */
#include "tokenizer/tokenizer_internal.h"

#include "core/alloc.h"
#include "core/error.h"

#include <stdio.h>
#include <string.h>

#define UNK_PENALTY 10.0

typedef struct best {
    double score;
    int64_t start; /* -1: not reached */
    int32_t id;    /* model id, or -1 for an unknown char */
} best;

void qkv__unigram_free(tok_unigram *u) {
    qkv__strmap_free(&u->pieces);
    qkv__free(u->scores);
    qkv__free(u->types);
    qkv__free(u->remap);
}

static int32_t out_id(const tok_unigram *u, int32_t id) { return u->remap ? u->remap[id] : id; }

qkv_status qkv__unigram_finish(qkv_tokenizer *t) {
    tok_unigram *u = &t->uni;
    u->min_score = 1e300;
    u->max_score = -1e300;
    int any = 0;
    for (size_t i = 0; i < u->n_pieces; i++) {
        if (u->types && u->types[i] != TOK_PIECE_NORMAL) continue;
        if (u->scores[i] < u->min_score) u->min_score = u->scores[i];
        if (u->scores[i] > u->max_score) u->max_score = u->scores[i];
        any = 1;
    }
    if (!any) u->min_score = u->max_score = 0;
    if (u->spm) { /* SentencePiece keeps these in float, starting from FLT_MAX / FLT_MIN */
        u->min_score = (float)u->min_score;
        u->max_score = any ? (float)u->max_score : 1.17549435e-38;
    }
    u->max_len = 0;
    for (size_t i = 0; i < u->pieces.cap; i++) {
        size_t len;
        int32_t v;
        if (qkv__strmap_key_at(&u->pieces, i, &len, &v) && len > u->max_len) u->max_len = len;
    }
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        u->byte_out[b] = qkv_tokenizer_token_to_id(t, name, 6);
    }
    return QKV_OK;
}

static int in_lattice(const tok_unigram *u, int32_t id) {
    return !u->types || u->types[id] == TOK_PIECE_NORMAL || u->types[id] == TOK_PIECE_USER;
}

/* tokens of the fused unknown run w[a..b) */
static qkv_status emit_unknown(const qkv_tokenizer *t, const uint8_t *w, size_t a, size_t b,
                               const uint32_t (*span)[2], tok_seq *out) {
    const tok_unigram *u = &t->uni;
    uint32_t s = span[a][0], e = span[b - 1][1];
    int32_t id;
    if ((!u->spm || u->remap) && qkv__strmap_get(&t->vocab, w + a, b - a, &id))
        return qkv__tok_seq_push(out, id, s, e, 0);
    if (u->byte_fallback) {
        int all = 1;
        for (size_t i = a; i < b && all; i++) all = u->byte_out[w[i]] >= 0;
        if (all) {
            for (size_t i = a; i < b; i++)
                QKV_TRY(qkv__tok_seq_push(out, u->byte_out[w[i]], s, e, 0));
            return QKV_OK;
        }
    }
    if (u->unk_out < 0)
        return qkv__fail(QKV_ERR_FORMAT,
                         "tokenizer: Unigram: unknown text and the model has no unk_id");
    return qkv__tok_seq_push(out, u->unk_out, s, e, 0);
}

qkv_status qkv__unigram_word(const qkv_tokenizer *t, const uint8_t *w, size_t n,
                             const uint32_t (*span)[2], tok_seq *out, void **scratch,
                             size_t *scratch_cap) {
    const tok_unigram *u = &t->uni;
    if (n == 0) return QKV_OK;
    size_t bytes;
    if (qkv__mul_overflow(n + 1, sizeof(best), &bytes))
        return qkv__fail(QKV_ERR_OVERFLOW, "tokenizer: Unigram word of %zu bytes", n);
    QKV_TRY(qkv__tok_reserve(scratch, scratch_cap, bytes, 1));
    best *bp = *scratch;
    for (size_t i = 0; i <= n; i++) bp[i] = (best){0, -1, -1};
    bp[0].start = 0;
    double unk_score = u->min_score - UNK_PENALTY;
    if (u->spm) unk_score = (float)unk_score;
    size_t s = 0;
    while (s < n) {
        double here = bp[s].score;
        size_t mblen = 1;
        while (s + mblen < n && (w[s + mblen] & 0xC0) == 0x80) mblen++;
        int single = 0;
        uint64_t h = QKV_FNV_OFFSET;
        size_t lim = n - s < u->max_len ? n - s : u->max_len;
        for (size_t l = 1; l <= lim; l++) {
            h = qkv__strmap_hash_step(h, w[s + l - 1]);
            if (s + l < n && (w[s + l] & 0xC0) == 0x80) continue;
            int32_t id;
            if (!qkv__strmap_get_h(&u->pieces, w + s, l, h, &id) || !in_lattice(u, id)) continue;
            double cand;
            if (!u->spm) {
                cand = u->scores[id] + here;
            } else if (u->types && u->types[id] == TOK_PIECE_USER) {
                cand = (float)((double)l * u->max_score - 0.1 + here);
            } else {
                cand = (float)((float)u->scores[id] + (float)here);
            }
            best *tg = &bp[s + l];
            if (tg->start < 0 || cand > tg->score) *tg = (best){cand, (int64_t)s, id};
            if (l == mblen) single = 1;
        }
        if (!single) {
            if (!u->spm && u->unk < 0)
                return qkv__fail(QKV_ERR_FORMAT,
                                 "tokenizer: Unigram: unknown text and the model has no unk_id");
            double cand = u->spm ? (float)((float)unk_score + (float)here) : unk_score + here;
            best *tg = &bp[s + mblen];
            if (tg->start < 0 || cand > tg->score) *tg = (best){cand, (int64_t)s, -1};
        }
        s += mblen;
    }
    /* backtrack: the path's nodes are written from the end into the `start` fields' ends */
    size_t n_nodes = 0;
    for (size_t e = n; e > 0; e = (size_t)bp[e].start) n_nodes++;
    /* collect ends (reuse a second region of scratch) */
    size_t need;
    if (qkv__mul_overflow(n_nodes, sizeof(size_t), &need) || need > SIZE_MAX - bytes)
        return qkv__fail(QKV_ERR_OVERFLOW, "tokenizer: Unigram word of %zu bytes", n);
    QKV_TRY(qkv__tok_reserve(scratch, scratch_cap, bytes + need, 1));
    bp = *scratch;
    size_t *ends = (size_t *)((uint8_t *)*scratch + bytes);
    size_t k = n_nodes;
    for (size_t e = n; e > 0; e = (size_t)bp[e].start) ends[--k] = e;
    size_t prev = 0;
    for (size_t i = 0; i < n_nodes;) {
        size_t e = ends[i];
        int32_t id = bp[e].id;
        int unk = id < 0 || (u->unk >= 0 && id == u->unk);
        if (!unk) {
            QKV_TRY(qkv__tok_seq_push(out, out_id(u, id), span[prev][0], span[e - 1][1], 0));
            prev = e;
            i++;
            continue;
        }
        size_t j = i; /* fuse the run of unknown nodes */
        while (j < n_nodes && (bp[ends[j]].id < 0 || (u->unk >= 0 && bp[ends[j]].id == u->unk)))
            j++;
        size_t end = ends[j - 1];
        QKV_TRY(emit_unknown(t, w, prev, end, span, out));
        prev = end;
        i = j;
    }
    return QKV_OK;
}
