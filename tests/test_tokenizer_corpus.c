/* test_tokenizer_corpus.c — qkv's tokenizers against Hugging Face tokenizers' own output
 * (fixtures written by tools/gen_tokenizer_fixtures.py; see there for the formats).
 *
 *   test_tokenizer_corpus NAME   NAME in minilm, minilm_vocab (the same vocabulary loaded from
 *                                vocab.txt + tokenizer_config.json), cased, bpe, qkvbpe
 *
 * For every line of stress.txt: ids, type ids, attention mask, special tokens mask, byte and
 * char offsets of the single and pair encodings equal HF's, and decode equals HF's decode. For
 * every line of the fortunes corpus: the CRC-32 of the same serialized encodings equals HF's.
 * For byte-level BPE, decode(encode(line)) gives back the line's exact bytes, including
 * invalid UTF-8. The corpus part is skipped (exit 77) if the fortunes package is missing or
 * differs from the one the fixtures were made from. */
#include "qkv.h"
#include "test.h"

#include <dirent.h>
#include <jansson.h>
#include <stdint.h>
#include <sys/stat.h>

#define FIX QKV_SOURCE_DIR "/tests/fixtures/tokenizer"

typedef struct buf {
    char *p;
    size_t n;
} buf;

static buf read_all(const char *path) {
    buf b = {0};
    FILE *f = fopen(path, "rb");
    if (!f) return b;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    b.p = malloc((size_t)n + 1);
    b.n = fread(b.p, 1, (size_t)n, f);
    b.p[b.n] = 0;
    fclose(f);
    return b;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* the corpus exactly as the generator builds it */
static buf corpus(void) {
    buf all = {0};
    const char *dir = "/usr/share/games/fortunes";
    DIR *d = opendir(dir);
    if (!d) return all;
    char *names[512];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 512) {
        size_t l = strlen(e->d_name);
        if (e->d_name[0] == '.' || (l > 4 && strcmp(e->d_name + l - 4, ".dat") == 0)) continue;
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    for (int i = 0; i < n; i++) {
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        struct stat sb;
        if (lstat(p, &sb) == 0 && S_ISREG(sb.st_mode)) {
            buf b = read_all(p);
            all.p = realloc(all.p, all.n + b.n + 1);
            memcpy(all.p + all.n, b.p, b.n);
            all.n += b.n;
            free(b.p);
        }
        free(names[i]);
    }
    if (all.p) all.p[all.n] = 0;
    return all;
}

/* lines of a buffer (split on '\n', a final empty piece dropped) */
typedef struct lines {
    const char **s;
    size_t *len;
    size_t n;
} lines;

static lines split(buf b) {
    lines l = {0};
    size_t cap = 1024;
    l.s = malloc(cap * sizeof *l.s);
    l.len = malloc(cap * sizeof *l.len);
    size_t i = 0;
    while (i < b.n) {
        const char *nl = memchr(b.p + i, '\n', b.n - i);
        size_t k = nl ? (size_t)(nl - (b.p + i)) : b.n - i;
        if (l.n == cap) {
            cap *= 2;
            l.s = realloc(l.s, cap * sizeof *l.s);
            l.len = realloc(l.len, cap * sizeof *l.len);
        }
        l.s[l.n] = b.p + i;
        l.len[l.n++] = k;
        i += k + 1;
    }
    return l;
}

static uint64_t fnv64(const char *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)p[i]) * 0x100000001b3ull;
    return h;
}

static uint32_t crc_table[256];
static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}
static uint32_t crc32_update(uint32_t crc, const void *p, size_t n) {
    const uint8_t *b = p;
    crc = ~crc;
    for (size_t i = 0; i < n; i++) crc = crc_table[(crc ^ b[i]) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

static uint32_t crc_encoding(uint32_t crc, const qkv_encoding *e) {
    for (size_t i = 0; i < e->n; i++) {
        int32_t r[8] = {e->ids[i],
                        e->type_ids[i],
                        e->attention_mask[i],
                        e->special_tokens_mask[i],
                        (int32_t)e->offsets[2 * i],
                        (int32_t)e->offsets[2 * i + 1],
                        (int32_t)e->char_offsets[2 * i],
                        (int32_t)e->char_offsets[2 * i + 1]};
        crc = crc32_update(crc, r, sizeof r); /* little-endian host */
    }
    return crc;
}

static void print_encoding(const char *what, const qkv_encoding *e) {
    fprintf(stderr, "  qkv %s:", what);
    for (size_t i = 0; i < e->n; i++)
        fprintf(stderr, " [%d,%d,%d,%d,%lld,%lld,%lld,%lld]", e->ids[i], e->type_ids[i],
                e->attention_mask[i], e->special_tokens_mask[i], (long long)e->offsets[2 * i],
                (long long)e->offsets[2 * i + 1], (long long)e->char_offsets[2 * i],
                (long long)e->char_offsets[2 * i + 1]);
    fprintf(stderr, "\n");
}

/* 1 if e equals the JSON rows [[id, type, mask, special, bs, be, cs, ce], ...] */
static int same_rows(const qkv_encoding *e, json_t *rows) {
    if (!json_is_array(rows) || json_array_size(rows) != e->n) return 0;
    for (size_t i = 0; i < e->n; i++) {
        json_t *r = json_array_get(rows, i);
        long long want[8], got[8] = {e->ids[i],
                                     e->type_ids[i],
                                     e->attention_mask[i],
                                     e->special_tokens_mask[i],
                                     e->offsets[2 * i],
                                     e->offsets[2 * i + 1],
                                     e->char_offsets[2 * i],
                                     e->char_offsets[2 * i + 1]};
        for (int k = 0; k < 8; k++) want[k] = json_integer_value(json_array_get(r, (size_t)k));
        if (memcmp(want, got, sizeof want) != 0) return 0;
    }
    return 1;
}

typedef struct cfg {
    const char *name;    /* test name */
    const char *fixture; /* expectation files' name */
    const char *path;    /* what to load */
    int explicit_single; /* vocab.txt: tokenizer.json's truncation and padding given by hand */
    int bytelevel;
} cfg;

static qkv_encode_options single_opts(const qkv_tokenizer *t, const cfg *c) {
    qkv_encode_options o;
    qkv_tokenizer_default_options(t, &o);
    if (c->explicit_single) {
        o.max_length = 128;
        o.pad_to = 128;
        o.pad_id = 0;
    }
    return o;
}

static qkv_encode_options pair_opts(const qkv_tokenizer *t) {
    qkv_encode_options o;
    qkv_tokenizer_default_options(t, &o);
    o.max_length = 24;
    o.truncation = QKV_TRUNCATE_LONGEST_FIRST;
    o.truncate_left = 0;
    o.pad_to = 32;
    o.pad_to_multiple_of = 0;
    o.pad_id = 0;
    o.pad_type_id = 0;
    return o;
}

static long mismatches, compared;

static void roundtrip(const qkv_tokenizer *t, const char *s, size_t n, size_t line) {
    qkv_encode_options o;
    qkv_tokenizer_default_options(t, &o);
    o.add_special_tokens = 0;
    qkv_encoding *e = NULL;
    CHECK_OK(qkv_tokenizer_encode(t, s, n, NULL, 0, &o, &e));
    if (!e) return;
    char *d = NULL;
    size_t dl = 0;
    CHECK_OK(qkv_tokenizer_decode(t, e->ids, e->n, 0, &d, &dl));
    CHECK_MSG(d && dl == n && memcmp(d, s, n) == 0, "line %zu: decode(encode(x)) != x", line);
    qkv_free(d);
    qkv_encoding_free(e);
}

/* s[0..n) with every maximal invalid UTF-8 subsequence replaced by U+FFFD (EF BF BD), as
 * Python's errors="replace" does; an independent decoder from the library's */
static char *replace_invalid(const char *s, size_t n, size_t *out_n) {
    const uint8_t *p = (const uint8_t *)s;
    char *o = malloc(3 * n + 1);
    size_t i = 0, k = 0;
    while (i < n) {
        uint8_t c = p[i];
        size_t need = c < 0x80                 ? 0
                      : c >= 0xC2 && c <= 0xDF ? 1
                      : c >= 0xE0 && c <= 0xEF ? 2
                      : c >= 0xF0 && c <= 0xF4 ? 3
                                               : 9;
        size_t j = 1;
        if (need != 9) {
            for (; j <= need && i + j < n; j++) {
                uint8_t b = p[i + j];
                uint8_t lo = 0x80, hi = 0xBF;
                if (j == 1 && c == 0xE0) lo = 0xA0;
                if (j == 1 && c == 0xED) hi = 0x9F;
                if (j == 1 && c == 0xF0) lo = 0x90;
                if (j == 1 && c == 0xF4) hi = 0x8F;
                if (b < lo || b > hi) break;
            }
        }
        if (need != 9 && j == need + 1) {
            memcpy(o + k, p + i, need + 1);
            k += need + 1;
            i += need + 1;
        } else {
            memcpy(o + k, "\xEF\xBF\xBD", 3);
            k += 3;
            i += need == 9 ? 1 : j;
        }
    }
    *out_n = k;
    return o;
}

static void run_stress(const qkv_tokenizer *t, const cfg *c) {
    char p[512];
    snprintf(p, sizeof p, "%s/stress.%s.jsonl", FIX, c->fixture);
    buf exp = read_all(p);
    CHECK_MSG(exp.p != NULL, "missing %s", p);
    if (!exp.p) return;
    buf txt = read_all(FIX "/stress.txt");
    lines L = split(txt), E = split(exp);
    CHECK_EQ_INT(L.n, E.n);
    for (size_t i = 0; i < L.n; i++) /* raw bytes: round trip of byte-level BPE */
        if (c->bytelevel) roundtrip(t, L.s[i], L.len[i], i);
    if (c->bytelevel) { /* compared with HF on the U+FFFD-replaced bytes (see the generator) */
        for (size_t i = 0; i < L.n; i++) L.s[i] = replace_invalid(L.s[i], L.len[i], &L.len[i]);
    }
    qkv_encode_options so = single_opts(t, c), po = pair_opts(t);
    for (size_t i = 0; i < L.n && i < E.n; i++) {
        json_error_t err;
        json_t *j = json_loadb(E.s[i], E.len[i], JSON_ALLOW_NUL, &err);
        CHECK(j != NULL);
        if (!j) continue;
        qkv_encoding *a = NULL, *b = NULL;
        size_t k = (i + 1) % L.n;
        CHECK_OK(qkv_tokenizer_encode(t, L.s[i], L.len[i], NULL, 0, &so, &a));
        CHECK_OK(qkv_tokenizer_encode(t, L.s[i], L.len[i], L.s[k], L.len[k], &po, &b));
        if (a && b) {
            compared += 2;
            int ok_a = same_rows(a, json_object_get(j, "single"));
            int ok_b = same_rows(b, json_object_get(j, "pair"));
            CHECK_MSG(ok_a, "stress line %zu single differs", i);
            CHECK_MSG(ok_b, "stress line %zu pair differs", i);
            if (!ok_a) {
                mismatches++;
                print_encoding("single", a);
                char *s = json_dumps(json_object_get(j, "single"), JSON_COMPACT);
                fprintf(stderr, "  HF  single: %s\n", s);
                free(s);
            }
            if (!ok_b) {
                mismatches++;
                print_encoding("pair", b);
                char *s = json_dumps(json_object_get(j, "pair"), JSON_COMPACT);
                fprintf(stderr, "  HF  pair: %s\n", s);
                free(s);
            }
            /* decode: HF's text (lossy for invalid UTF-8, so only valid lines for BPE) */
            char *d = NULL;
            size_t dl = 0;
            CHECK_OK(qkv_tokenizer_decode(t, a->ids, a->n, 1, &d, &dl));
            json_t *jw = json_object_get(j, "decoded");
            const char *want = json_string_value(jw);
            if (d && want)
                CHECK_MSG(dl == json_string_length(jw) && memcmp(d, want, dl) == 0,
                          "stress line %zu decode: qkv \"%s\" HF \"%s\"", i, d, want);
            qkv_free(d);
        }
        qkv_encoding_free(a);
        qkv_encoding_free(b);
        json_decref(j);
    }
    if (c->bytelevel)
        for (size_t i = 0; i < L.n; i++) free((char *)L.s[i]);
    free(L.s);
    free(L.len);
    free(E.s);
    free(E.len);
    free(txt.p);
    free(exp.p);
}

static int run_corpus(const qkv_tokenizer *t, const cfg *c) {
    buf meta = read_all(FIX "/corpus.meta");
    unsigned long long want_hash = 0;
    size_t want_lines = 0;
    if (!meta.p || sscanf(meta.p, "fnv64 %llx lines %zu", &want_hash, &want_lines) != 2) {
        CHECK_MSG(0, "cannot read %s", FIX "/corpus.meta");
        return 0;
    }
    free(meta.p);
    buf text = corpus();
    if (!text.p) {
        printf("corpus: /usr/share/games/fortunes is missing (Debian package fortunes; "
               "scripts/install-deps.sh installs it): corpus part skipped\n");
        return 77;
    }
    if (fnv64(text.p, text.n) != want_hash) {
        printf("corpus: /usr/share/games/fortunes differs from the corpus the fixtures were "
               "made from (fnv64 %016llx, expected %016llx); rerun "
               "tools/gen_tokenizer_fixtures.py: corpus part skipped\n",
               (unsigned long long)fnv64(text.p, text.n), want_hash);
        free(text.p);
        return 77;
    }
    char p[512];
    snprintf(p, sizeof p, "%s/corpus.%s.crc", FIX, c->fixture);
    buf crc = read_all(p);
    uint32_t n = 0;
    CHECK_MSG(crc.p && crc.n >= 12 && memcmp(crc.p, "QKVTOK1", 8) == 0, "bad %s", p);
    if (crc.p && crc.n >= 12) memcpy(&n, crc.p + 8, 4);
    lines L = split(text);
    CHECK_EQ_INT(L.n, want_lines);
    CHECK_EQ_INT(n, L.n);
    CHECK(crc.n == 12 + 4 * (size_t)n);
    qkv_encode_options so = single_opts(t, c), po = pair_opts(t);
    long bad = 0;
    for (size_t i = 0; i < L.n && i < n && crc.n == 12 + 4 * (size_t)n; i++) {
        qkv_encoding *a = NULL, *b = NULL;
        size_t k = (i + 1) % L.n;
        qkv_status s1 = qkv_tokenizer_encode(t, L.s[i], L.len[i], NULL, 0, &so, &a);
        qkv_status s2 = qkv_tokenizer_encode(t, L.s[i], L.len[i], L.s[k], L.len[k], &po, &b);
        CHECK_MSG(s1 == QKV_OK && s2 == QKV_OK, "corpus line %zu: %s", i, qkv_last_error());
        if (!a || !b) {
            qkv_encoding_free(a);
            qkv_encoding_free(b);
            continue;
        }
        uint32_t got = crc_encoding(crc_encoding(0, a), b), want;
        memcpy(&want, crc.p + 12 + 4 * i, 4);
        compared++;
        if (got != want) {
            mismatches++;
            if (++bad <= 5) {
                fprintf(stderr, "corpus line %zu differs from HF: \"%.*s\" / \"%.*s\"\n", i + 1,
                        (int)L.len[i], L.s[i], (int)L.len[k], L.s[k]);
                print_encoding("single", a);
                print_encoding("pair", b);
            }
        }
        if (c->bytelevel) roundtrip(t, L.s[i], L.len[i], i);
        qkv_encoding_free(a);
        qkv_encoding_free(b);
    }
    CHECK_MSG(bad == 0, "%ld of %zu corpus lines differ from HF", bad, L.n);
    free(L.s);
    free(L.len);
    free(crc.p);
    free(text.p);
    return 0;
}

int main(int argc, char **argv) {
    static const cfg cfgs[] = {
        {"minilm", "minilm", FIX "/minilm/tokenizer.json", 0, 0},
        {"minilm_vocab", "minilm", FIX "/minilm/vocab.txt", 1, 0},
        {"cased", "cased", FIX "/cased", 0, 0},
        {"bpe", "bpe", FIX "/bpe/tokenizer.json", 0, 1},
        {"qkvbpe", "qkvbpe", FIX "/qkvbpe/tokenizer.json", 0, 1},
    };
    crc_init();
    const char *want = argc > 1 ? argv[1] : "minilm";
    const cfg *c = NULL;
    for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++)
        if (strcmp(cfgs[i].name, want) == 0) c = &cfgs[i];
    if (!c) {
        fprintf(stderr, "unknown tokenizer '%s'\n", want);
        return 2;
    }
    qkv_tokenizer *t = NULL;
    CHECK_OK(qkv_tokenizer_load(c->path, &t));
    if (!t) return test_finish(c->name);
    run_stress(t, c);
    int rc = run_corpus(t, c);
    qkv_tokenizer_free(t);
    printf("%s: %ld encodings compared (stress: single + pair per line; corpus: single + pair "
           "per line as one CRC), %ld mismatches\n",
           c->name, compared, mismatches);
    if (rc == 77 && !test_failures_) {
        test_finish(c->name);
        return 77;
    }
    return test_finish(c->name);
}
