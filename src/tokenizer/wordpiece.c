/* wordpiece.c — the WordPiece model: greedy longest-match-first over a word, continuation
 * pieces carrying the "##" prefix, and [UNK] for the whole word when a piece is missing or the
 * word has more than max_input_chars_per_word chars (tokenizers' WordPiece::tokenize).
 *
 * For each start position the FNV hashes of all candidate pieces (the prefix, then one more
 * byte each) are computed in one forward pass, then looked up from the longest down, only at
 * char boundaries and never longer than the longest vocabulary entry: O(L) hashing and at most
 * L lookups per piece instead of building L strings. */
#include "tokenizer/tokenizer_internal.h"
#include "tokenizer/unicode.h"

#include "core/error.h"

#include <string.h>

qkv_status qkv__wordpiece_word(const qkv_tokenizer *t, const tok_nchar *c, size_t n, tok_seq *out,
                               void **scratch, size_t *scratch_cap) {
    const tok_wordpiece *wp = &t->wp;
    if (n == 0) return QKV_OK;
    uint32_t wstart = c[0].start, wend = c[n - 1].end;
    if (n > wp->max_chars) goto unk;

    /* bytes of the word, the char index of each byte, hashes, and a key buffer */
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += c[i].cp < 0x80 ? 1 : c[i].cp < 0x800 ? 2 : c[i].cp < 0x10000 ? 3 : 4;
    size_t need = len + 4 * (len + 1) + 8 * (len + 1) + wp->prefix_len + len + 64;
    QKV_TRY(qkv__tok_reserve(scratch, scratch_cap, need, 1));
    uint8_t *buf = *scratch;
    uint32_t *bchar = (uint32_t *)(((uintptr_t)(buf + len) + 7) & ~(uintptr_t)7);
    uint64_t *hash = (uint64_t *)(((uintptr_t)(bchar + len + 1) + 7) & ~(uintptr_t)7);
    uint8_t *key = (uint8_t *)(hash + len + 1);
    size_t p = 0;
    for (size_t i = 0; i < n; i++) {
        int k = qkv__utf8_put(c[i].cp, buf + p);
        for (int j = 0; j < k; j++) bchar[p + (size_t)j] = (uint32_t)i;
        p += (size_t)k;
    }
    bchar[len] = (uint32_t)n;
    memcpy(key, wp->prefix, wp->prefix_len);

    size_t start = 0, n0 = out->n;
    while (start < len) {
        size_t plen = start > 0 ? wp->prefix_len : 0;
        uint8_t *k = key + wp->prefix_len - plen; /* the prefix (if any) then the piece */
        size_t maxend = len;
        if (wp->max_token_len < plen + (len - start)) {
            if (wp->max_token_len <= plen) goto unk_rewind;
            maxend = start + (wp->max_token_len - plen);
        }
        uint64_t h = start > 0 ? wp->prefix_hash : QKV_FNV_OFFSET;
        for (size_t e = start; e < maxend; e++) {
            key[wp->prefix_len + (e - start)] = buf[e];
            h = qkv__strmap_hash_step(h, buf[e]);
            hash[e + 1] = h;
        }
        size_t end = maxend;
        int32_t id = -1;
        for (; end > start; end--) {
            if (bchar[end] == bchar[end - 1]) continue; /* inside a char */
            if (qkv__strmap_get_h(&t->vocab, k, plen + (end - start), hash[end], &id)) break;
        }
        if (end == start) goto unk_rewind;
        QKV_TRY(qkv__tok_seq_push(out, id, c[bchar[start]].start, c[bchar[end - 1]].end, 0));
        start = end;
    }
    return QKV_OK;

unk_rewind:
    out->n = n0;
unk:
    if (wp->unk_id < 0)
        return qkv__fail(QKV_ERR_FORMAT, "tokenizer: WordPiece needs its unk_token, which is "
                                         "not in the vocabulary");
    return qkv__tok_seq_push(out, wp->unk_id, wstart, wend, 0);
}
