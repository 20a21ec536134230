/* unicode.h — the Unicode questions the tokenizers ask, answered exactly as Hugging Face
 * `tokenizers` answers them.
 *
 * utf8proc (Unicode 15) gives categories, decompositions and case mappings; the generated
 * unicode_compat.h lists the few code points where tokenizers' Rust crates (other Unicode
 * versions) say otherwise, and those win. No hand-made tables. ASCII is answered inline. */
#ifndef QKV_TOKENIZER_UNICODE_H
#define QKV_TOKENIZER_UNICODE_H

#include <stddef.h>
#include <stdint.h>

#define QKV_UNI_REPLACEMENT 0xFFFDu
#define QKV_UNI_MAX_DECOMP 8 /* longest canonical decomposition we accept (utf8proc: 4) */

/* Decodes one code point from s[0..len) (len > 0). Invalid UTF-8 gives U+FFFD and consumes
 * one maximal invalid subpart (as Python's errors="replace" and the WHATWG decoder do), so
 * *n >= 1 always. */
uint32_t qkv__utf8_next(const uint8_t *s, size_t len, size_t *n);
/* Writes cp as UTF-8 (1..4 bytes) into out; returns the length. */
int qkv__utf8_put(uint32_t cp, uint8_t *out);

/* 1 if c is in the ascending array a[0..n) (binary search). */
int qkv__uni_in_sorted(const uint32_t *a, int n, uint32_t c);

/* Rust's char::is_whitespace (the White_Space property). */
int qkv__uni_is_whitespace(uint32_t c);
/* BertNormalizer's is_control: Cc Cf Co Cs except \t \n \r (tokenizers' tables). */
int qkv__uni_is_other(uint32_t c);
/* BertPreTokenizer's punctuation: ASCII punctuation or a P* category. */
int qkv__uni_is_punct(uint32_t c);
/* Mn (nonspacing mark), the marks strip_accents drops. */
int qkv__uni_is_mn(uint32_t c);
/* The CJK ideograph blocks BertNormalizer pads with spaces. */
int qkv__uni_is_cjk(uint32_t c);
/* Full lowercase of one code point (Rust's char::to_lowercase): 1..3 code points in out. */
int qkv__uni_lower(uint32_t c, uint32_t out[3]);
/* Full canonical decomposition of one code point (NFD without reordering): 1..8 in out. */
int qkv__uni_decompose(uint32_t c, uint32_t out[QKV_UNI_MAX_DECOMP]);
/* Canonical combining class (0 for starters). */
int qkv__uni_ccc(uint32_t c);

/* GPT-2 pre-tokenizer classes of the regex \p{L}, \p{N}, \s as tokenizers' regex engine
 * (Oniguruma) sees them. */
enum {
    QKV_UNI_GPT2_OTHER = 0,
    QKV_UNI_GPT2_LETTER = 1,
    QKV_UNI_GPT2_NUMBER = 2,
    QKV_UNI_GPT2_SPACE = 3
};
int qkv__uni_gpt2_class(uint32_t c);

#endif
