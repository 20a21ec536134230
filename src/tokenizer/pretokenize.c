/* pretokenize.c — pre-tokenizers over normalized chars: BertPreTokenizer and the GPT-2 split
 * of the ByteLevel pre-tokenizer.
 *
 * The GPT-2 split is a hand-written scanner for tokenizers' regex
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * trying the alternatives in that order at each position, as the regex engine does. It is
 * several times faster than a regex engine, and the corpus tests prove it identical. Classes
 * come from qkv__uni_gpt2_class (Oniguruma's view of \p{L}, \p{N}, \s). Every char matches
 * some alternative, so the words cover the input without gaps. */
#include "tokenizer/tokenizer_internal.h"
#include "tokenizer/unicode.h"

#include "core/error.h"

static inline qkv_status words_push(tok_words *w, size_t a, size_t b) {
    if (2 * w->n + 2 > w->cap)
        QKV_TRY(qkv__tok_reserve((void **)&w->w, &w->cap, 2 * w->n + 2, sizeof *w->w));
    w->w[2 * w->n] = a;
    w->w[2 * w->n + 1] = b;
    w->n++;
    return QKV_OK;
}

qkv_status qkv__tok_pre_bert(const tok_nbuf *nb, tok_words *out) {
    const tok_nchar *c = nb->c;
    size_t n = nb->n, i = 0;
    while (i < n) {
        uint32_t cp = c[i].cp;
        if (qkv__uni_is_whitespace(cp)) {
            i++;
            continue;
        }
        if (qkv__uni_is_punct(cp)) {
            QKV_TRY(words_push(out, i, i + 1));
            i++;
            continue;
        }
        size_t j = i + 1;
        while (j < n) {
            uint32_t d = c[j].cp;
            if (d < 0x80) {
                if (d == ' ' || (d >= 9 && d <= 13) || (d >= 33 && d <= 47) ||
                    (d >= 58 && d <= 64) || (d >= 91 && d <= 96) || (d >= 123 && d <= 126))
                    break;
            } else if (qkv__uni_is_whitespace(d) || qkv__uni_is_punct(d)) {
                break;
            }
            j++;
        }
        QKV_TRY(words_push(out, i, j));
        i = j;
    }
    return QKV_OK;
}

static inline int gcls(uint32_t cp) { return qkv__uni_gpt2_class(cp); }

qkv_status qkv__tok_pre_gpt2(const tok_nbuf *nb, size_t first, tok_words *out) {
    const tok_nchar *c = nb->c;
    size_t n = nb->n, i = first;
    while (i < n) {
        uint32_t cp = c[i].cp;
        /* contractions */
        if (cp == '\'' && i + 1 < n) {
            uint32_t d = c[i + 1].cp;
            if (d == 's' || d == 't' || d == 'm' || d == 'd') {
                QKV_TRY(words_push(out, i, i + 2));
                i += 2;
                continue;
            }
            if (i + 2 < n) {
                uint32_t e = c[i + 2].cp;
                if ((d == 'r' && e == 'e') || (d == 'v' && e == 'e') || (d == 'l' && e == 'l')) {
                    QKV_TRY(words_push(out, i, i + 3));
                    i += 3;
                    continue;
                }
            }
        }
        int k = gcls(cp);
        size_t s = i; /* ` ?X+`: an optional literal space then a run of one class */
        if (cp == ' ' && i + 1 < n) {
            int k2 = gcls(c[i + 1].cp);
            if (k2 != QKV_UNI_GPT2_SPACE) {
                k = k2;
                i++;
            }
        }
        if (k != QKV_UNI_GPT2_SPACE) {
            size_t j = i + 1;
            while (j < n && gcls(c[j].cp) == k) j++;
            QKV_TRY(words_push(out, s, j));
            i = j;
            continue;
        }
        /* white space: \s+(?!\S) keeps the last space for the next word, else \s+ */
        size_t j = i + 1;
        while (j < n && gcls(c[j].cp) == QKV_UNI_GPT2_SPACE) j++;
        if (j < n && j - i >= 2) j--;
        QKV_TRY(words_push(out, i, j));
        i = j;
    }
    return QKV_OK;
}

/* Metaspace (tokenizers' pre_tokenizers::Metaspace): ' ' becomes the replacement char, which
 * is prepended to a word that does not start with it (prepend_scheme "always"; "first": only
 * to the word at the very start of the text), then with split the word is cut before every
 * replacement char (MergedWithNext). ws_split: the words of a WhitespaceSplit first (T5's
 * Sequence[WhitespaceSplit, Metaspace]). The prepended char has the span of the first char. */
qkv_status qkv__tok_pre_meta(const tok_pretokenizer *p, const tok_nbuf *nb, tok_nbuf *out,
                             tok_words *words) {
    const tok_nchar *c = nb->c;
    size_t n = nb->n, i = 0;
    out->n = 0;
    words->n = 0;
    while (i < n) {
        size_t j;
        if (p->ws_split) {
            while (i < n && qkv__uni_is_whitespace(c[i].cp)) i++;
            if (i == n) break;
            j = i + 1;
            while (j < n && !qkv__uni_is_whitespace(c[j].cp)) j++;
        } else {
            j = n;
        }
        size_t ws = out->n;
        uint32_t first = c[i].cp == ' ' ? p->meta_char : c[i].cp;
        int pre = first != p->meta_char && (p->prepend == TOK_PREPEND_ALWAYS ||
                                            (p->prepend == TOK_PREPEND_FIRST && c[i].start == 0));
        if (pre) QKV_TRY(qkv__nb_push(out, p->meta_char, c[i].start, c[i].end));
        for (size_t k = i; k < j; k++)
            QKV_TRY(
                qkv__nb_push(out, c[k].cp == ' ' ? p->meta_char : c[k].cp, c[k].start, c[k].end));
        if (p->split) {
            size_t s = ws;
            for (size_t k = ws + 1; k < out->n; k++)
                if (out->c[k].cp == p->meta_char) {
                    QKV_TRY(words_push(words, s, k));
                    s = k;
                }
            QKV_TRY(words_push(words, s, out->n));
        } else {
            QKV_TRY(words_push(words, ws, out->n));
        }
        i = j;
    }
    return QKV_OK;
}
