/* unicode.c — see unicode.h. utf8proc first, then the generated exception lists of
 * unicode_compat.h (binary search; only reached for non-ASCII code points). */
#include "tokenizer/unicode.h"

#include "tokenizer/unicode_compat.h"

#include <utf8proc.h>

uint32_t qkv__utf8_next(const uint8_t *s, size_t len, size_t *n) {
    uint8_t c = s[0];
    if (c < 0x80) {
        *n = 1;
        return c;
    }
    size_t need;
    uint32_t cp;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        need = 1;
        cp = c & 0x1Fu;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        cp = c & 0x0Fu;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        cp = c & 0x07u;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        *n = 1;
        return QKV_UNI_REPLACEMENT;
    }
    size_t i = 1;
    for (; i <= need; i++) {
        if (i >= len) break;
        uint8_t b = s[i];
        if (i == 1 ? (b < lo || b > hi) : (b & 0xC0) != 0x80) break;
        cp = (cp << 6) | (b & 0x3Fu);
    }
    if (i <= need) { /* the maximal subpart s[0..i) is one replacement */
        *n = i;
        return QKV_UNI_REPLACEMENT;
    }
    *n = need + 1;
    return cp;
}

int qkv__utf8_put(uint32_t cp, uint8_t *out) {
    if (cp < 0x80) {
        out[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xC0 | (cp >> 6));
        out[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xE0 | (cp >> 12));
        out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | (cp >> 18));
    out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

int qkv__uni_in_sorted(const uint32_t *a, int n, uint32_t c) {
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (a[mid] == c) return 1;
        if (a[mid] < c)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return 0;
}

static const compat_map *in_map(const compat_map *a, int n, uint32_t c) {
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (a[mid].cp == c) return &a[mid];
        if (a[mid].cp < c)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return NULL;
}

int qkv__uni_is_whitespace(uint32_t c) {
    if (c < 0x80) return c == ' ' || (c >= 9 && c <= 13);
    switch (c) {
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000: return 1;
    default: return c >= 0x2000 && c <= 0x200A;
    }
}

int qkv__uni_is_other(uint32_t c) {
    if (c < 0x80) return (c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7F;
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    int u = k == UTF8PROC_CATEGORY_CC || k == UTF8PROC_CATEGORY_CF || k == UTF8PROC_CATEGORY_CO ||
            k == UTF8PROC_CATEGORY_CS;
    if (u) return !qkv__uni_in_sorted(compat_other_del, compat_other_del_n, c);
    return qkv__uni_in_sorted(compat_other_add, compat_other_add_n, c);
}

int qkv__uni_is_punct(uint32_t c) {
    if (c < 0x80)
        return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
               (c >= 123 && c <= 126);
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    int u = k >= UTF8PROC_CATEGORY_PC && k <= UTF8PROC_CATEGORY_PO;
    if (u) return !qkv__uni_in_sorted(compat_punct_del, compat_punct_del_n, c);
    return qkv__uni_in_sorted(compat_punct_add, compat_punct_add_n, c);
}

int qkv__uni_is_mn(uint32_t c) {
    if (c < 0x80) return 0;
    int u = utf8proc_category((utf8proc_int32_t)c) == UTF8PROC_CATEGORY_MN;
    if (u) return !qkv__uni_in_sorted(compat_mn_del, compat_mn_del_n, c);
    return qkv__uni_in_sorted(compat_mn_add, compat_mn_add_n, c);
}

int qkv__uni_is_cjk(uint32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
           (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* Decodes a compat string (valid UTF-8 by construction) into at most max code points. */
static int compat_decode(const char *s, uint32_t *out, int max) {
    const uint8_t *p = (const uint8_t *)s;
    size_t len = 0;
    while (p[len]) len++;
    int k = 0;
    size_t i = 0;
    while (i < len && k < max) {
        size_t n;
        out[k++] = qkv__utf8_next(p + i, len - i, &n);
        i += n;
    }
    return k;
}

int qkv__uni_lower(uint32_t c, uint32_t out[3]) {
    if (c < 0x80) {
        out[0] = (c >= 'A' && c <= 'Z') ? c + 32 : c;
        return 1;
    }
    const compat_map *m = in_map(compat_lower, compat_lower_n, c);
    if (m) return compat_decode(m->to, out, 3);
    out[0] = (uint32_t)utf8proc_tolower((utf8proc_int32_t)c);
    return 1;
}

int qkv__uni_decompose(uint32_t c, uint32_t out[QKV_UNI_MAX_DECOMP]) {
    if (c < 0xC0) {
        out[0] = c;
        return 1;
    }
    const compat_map *m = in_map(compat_nfd, compat_nfd_n, c);
    if (m) return compat_decode(m->to, out, QKV_UNI_MAX_DECOMP);
    utf8proc_int32_t buf[QKV_UNI_MAX_DECOMP];
    int last = 0;
    utf8proc_ssize_t n = utf8proc_decompose_char((utf8proc_int32_t)c, buf, QKV_UNI_MAX_DECOMP,
                                                 UTF8PROC_DECOMPOSE, &last);
    if (n <= 0 || n > QKV_UNI_MAX_DECOMP) {
        out[0] = c;
        return 1;
    }
    for (utf8proc_ssize_t i = 0; i < n; i++) out[i] = (uint32_t)buf[i];
    return (int)n;
}

int qkv__uni_ccc(uint32_t c) {
    if (c < 0x300) return 0;
    return utf8proc_get_property((utf8proc_int32_t)c)->combining_class;
}

int qkv__uni_gpt2_class(uint32_t c) {
    if (c < 0x80) {
        if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return QKV_UNI_GPT2_LETTER;
        if (c >= '0' && c <= '9') return QKV_UNI_GPT2_NUMBER;
        if (c == ' ' || (c >= 9 && c <= 13)) return QKV_UNI_GPT2_SPACE;
        return QKV_UNI_GPT2_OTHER;
    }
    const compat_range *m = NULL;
    for (int lo = 0, hi = compat_gpt2_n - 1; lo <= hi;) {
        int mid = (lo + hi) / 2;
        if (c < compat_gpt2[mid].first)
            hi = mid - 1;
        else if (c > compat_gpt2[mid].last)
            lo = mid + 1;
        else {
            m = &compat_gpt2[mid];
            break;
        }
    }
    if (m) {
        switch (m->cls) {
        case 'L': return QKV_UNI_GPT2_LETTER;
        case 'N': return QKV_UNI_GPT2_NUMBER;
        case 'S': return QKV_UNI_GPT2_SPACE;
        default: return QKV_UNI_GPT2_OTHER;
        }
    }
    if (qkv__uni_is_whitespace(c)) return QKV_UNI_GPT2_SPACE;
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    if (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO) return QKV_UNI_GPT2_LETTER;
    if (k >= UTF8PROC_CATEGORY_ND && k <= UTF8PROC_CATEGORY_NO) return QKV_UNI_GPT2_NUMBER;
    return QKV_UNI_GPT2_OTHER;
}
