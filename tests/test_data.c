/* test_data.c — tokenized datasets: qkv_data_prepare and qkv_dataset_*.
 *
 * A small corpus (fortune-style "%" separators, CRLF lines, blank documents, a separator at
 * the end of a file without "\n") is prepared with the GPT-2 style BPE fixture into shards of
 * 7 tokens, so every window of a few tokens crosses a shard boundary. Checked: the counts, the
 * shard header bytes, that train + val decode back to exactly the documents in order (each
 * followed by the end-of-text id), sample (deterministic, in range, targets shifted by one),
 * sequential (covers the split in order), the split guarantees, re-preparing over an old
 * dataset, argument errors, every kind of malformed shard and meta.json (FORMAT / IO naming
 * the file, never a crash), random garbage through the shard parser, and allocation failure
 * at every allocation of open and prepare (NOMEM, nothing leaked). */
#include "fault_alloc.h"
#include "qkv.h"
#include "test.h"
#include "train/data.h"

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FIX QKV_SOURCE_DIR "/tests/fixtures/tokenizer"

static char tmp[512];
static const qkv_tokenizer *g_tok;

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
    fwrite(data, 1, n, f);
    fclose(f);
}

static void write_text(const char *path, const char *text) { write_file(path, text, strlen(text)); }

static uint8_t *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long l = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)l + 1);
    *n = fread(b, 1, (size_t)l, f);
    b[*n] = 0;
    fclose(f);
    return b;
}

static int count_files(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)) != NULL)
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) n++;
    closedir(d);
    return n;
}

/* ---------------------------------------------------------------- the corpus */

/* a.txt and b.txt split on "%": the documents in order (blank ones are skipped) */
static const char *const A_TXT = "Hello world, this is a fortune.\n"
                                 "%\n"
                                 "Second one\nwith two lines.\n"
                                 "%\n"
                                 "\n"
                                 "%\n"
                                 "Third, with CRLF.\r\n"
                                 "%\r\n"
                                 "%\n"
                                 "Fourth: 100% sure, % inside a line is text.\n"
                                 "%";
static const char *const B_TXT = "Fifth document from the second file.\n"
                                 "%\n"
                                 "  \t \n"
                                 "%\n"
                                 "Sixth and last, no final newline";
static const char *const DOCS[] = {
    "Hello world, this is a fortune.\n",
    "Second one\nwith two lines.\n",
    "Third, with CRLF.\r\n",
    "Fourth: 100% sure, % inside a line is text.\n",
    "Fifth document from the second file.\n",
    "Sixth and last, no final newline",
};
enum { N_DOCS = 6 };

static char path_a[600], path_b[600];

static int64_t doc_tokens(const char *text) {
    qkv_encode_options o;
    qkv_tokenizer_default_options(g_tok, &o);
    o.add_special_tokens = 0;
    qkv_encoding *e = NULL;
    if (qkv_tokenizer_encode(g_tok, text, strlen(text), NULL, 0, &o, &e) != QKV_OK) return -1;
    int64_t n = (int64_t)e->n;
    qkv_encoding_free(e);
    return n;
}

static qkv_status prepare(const char *dir, double val_fraction, int64_t shard_tokens, uint64_t seed,
                          qkv_data_stats *st) {
    const char *files[] = {path_a, path_b};
    qkv_data_options o;
    qkv_data_default_options(&o);
    o.val_fraction = val_fraction;
    o.split_on = "%";
    o.shard_tokens = shard_tokens;
    o.seed = seed;
    o.tokenizer_path = FIX "/bpe";
    return qkv_data_prepare(g_tok, files, 2, &o, dir, st, NULL, NULL);
}

/* The whole split as one array (sequential with B = 1, T = n - 1). */
static int32_t *read_split(const qkv_dataset *ds, int64_t *n) {
    *n = qkv_dataset_tokens(ds);
    int32_t *all = calloc((size_t)*n + 1, sizeof *all);
    if (*n >= 2) {
        int32_t *tg = calloc((size_t)*n, sizeof *tg);
        CHECK_OK(qkv_dataset_sequential(ds, 0, 1, *n - 1, all, tg));
        all[*n - 1] = tg[*n - 2];
        free(tg);
    } else if (*n == 1) {
        /* a one-token split cannot make a window; not produced by these tests */
        CHECK(0);
    }
    return all;
}

/* ---------------------------------------------------------------- tests */

static double g_last_progress = -1;
static int g_progress_calls, g_progress_monotonic = 1;
static void on_progress(void *ctx, double f) {
    (void)ctx;
    if (f < g_last_progress || f < 0 || f > 1) g_progress_monotonic = 0;
    g_last_progress = f;
    g_progress_calls++;
}

static void test_arguments(void) {
    char dir[600];
    snprintf(dir, sizeof dir, "%s/args", tmp);
    const char *files[] = {path_a};
    qkv_data_options o;
    qkv_data_default_options(&o);
    CHECK_NEAR(o.val_fraction, 0.05, 0, 0);
    CHECK(o.split_on == NULL && o.tokenizer_path == NULL && o.seed == 0);
    qkv_data_stats st = {.struct_size = sizeof st};
    CHECK_STATUS(qkv_data_prepare(NULL, files, 1, &o, dir, &st, NULL, NULL), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_data_prepare(g_tok, files, 0, &o, dir, &st, NULL, NULL), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_data_prepare(g_tok, files, 1, &o, NULL, &st, NULL, NULL), QKV_ERR_INVALID_ARG);
    o.val_fraction = 1.5;
    CHECK_STATUS(qkv_data_prepare(g_tok, files, 1, &o, dir, &st, NULL, NULL), QKV_ERR_INVALID_ARG);
    o.val_fraction = NAN;
    CHECK_STATUS(qkv_data_prepare(g_tok, files, 1, &o, dir, &st, NULL, NULL), QKV_ERR_INVALID_ARG);
    o.val_fraction = 0.1;
    o.shard_tokens = -1;
    CHECK_STATUS(qkv_data_prepare(g_tok, files, 1, &o, dir, &st, NULL, NULL), QKV_ERR_INVALID_ARG);
    o.shard_tokens = 0;
    o.split_on = "a\nb";
    CHECK_STATUS(qkv_data_prepare(g_tok, files, 1, &o, dir, &st, NULL, NULL), QKV_ERR_INVALID_ARG);
    o.split_on = NULL;
    const char *missing[] = {path_a, "/nonexistent/corpus.txt"};
    CHECK_STATUS(qkv_data_prepare(g_tok, missing, 2, &o, dir, &st, NULL, NULL), QKV_ERR_IO);
    CHECK(strstr(qkv_last_error(), "/nonexistent/corpus.txt") != NULL);
    const char *adir[] = {tmp};
    CHECK_STATUS(qkv_data_prepare(g_tok, adir, 1, &o, dir, &st, NULL, NULL), QKV_ERR_IO);

    /* a tokenizer with neither a SEP/EOS special token nor <|endoftext|> */
    char tj[600];
    snprintf(tj, sizeof tj, "%s/noeot.json", tmp);
    write_text(tj, "{\"version\":\"1.0\",\"added_tokens\":[],\"normalizer\":null,"
                   "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,"
                   "\"trim_offsets\":true,\"use_regex\":true},\"post_processor\":null,"
                   "\"decoder\":{\"type\":\"ByteLevel\"},\"model\":{\"type\":\"BPE\","
                   "\"vocab\":{\"a\":0,\"b\":1},\"merges\":[]}}");
    qkv_tokenizer *bad = NULL;
    CHECK_OK(qkv_tokenizer_load(tj, &bad));
    if (bad) {
        CHECK_STATUS(qkv_data_prepare(bad, files, 1, &o, dir, &st, NULL, NULL),
                     QKV_ERR_INVALID_ARG);
        CHECK(strstr(qkv_last_error(), "end-of-text") != NULL);
    }
    qkv_tokenizer_free(bad);

    /* the dataset API on NULL */
    CHECK_STATUS(qkv_dataset_open(NULL, QKV_SPLIT_TRAIN, NULL), QKV_ERR_INVALID_ARG);
    qkv_dataset *ds = (qkv_dataset *)1;
    CHECK_STATUS(qkv_dataset_open(NULL, QKV_SPLIT_TRAIN, &ds), QKV_ERR_INVALID_ARG);
    CHECK(ds == NULL);
    qkv_dataset_close(NULL);
    CHECK_EQ_INT(qkv_dataset_tokens(NULL), 0);
    CHECK_EQ_INT(qkv_dataset_batches(NULL, 1, 1), 0);
    int32_t a[4], b[4];
    CHECK_STATUS(qkv_dataset_sample(NULL, 0, 0, 1, 1, a, b), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_dataset_sequential(NULL, 0, 1, 1, a, b), QKV_ERR_INVALID_ARG);
}

/* The main dataset: counts, header bytes, decode back, sample, sequential. */
static void test_roundtrip(void) {
    char dir[600], p[700];
    snprintf(dir, sizeof dir, "%s/main", tmp);
    qkv_data_stats st = {.struct_size = sizeof st};
    const char *files[] = {path_a, path_b};
    qkv_data_options o;
    qkv_data_default_options(&o);
    o.val_fraction = 0.3;
    o.split_on = "%";
    o.shard_tokens = 7;
    o.seed = 1234;
    o.tokenizer_path = FIX "/bpe";
    g_progress_calls = 0;
    CHECK_OK(qkv_data_prepare(g_tok, files, 2, &o, dir, &st, on_progress, NULL));
    CHECK(g_progress_calls >= 2 && g_progress_monotonic && g_last_progress == 1.0);
    CHECK_EQ_INT(st.documents[0] + st.documents[1], N_DOCS);
    CHECK(st.documents[0] >= 1 && st.documents[1] >= 1);
    CHECK_EQ_INT(st.bytes_read, (int64_t)(strlen(A_TXT) + strlen(B_TXT)));
    int64_t want = 0;
    for (int i = 0; i < N_DOCS; i++) want += doc_tokens(DOCS[i]) + 1;
    CHECK_EQ_INT(st.tokens[0] + st.tokens[1], want);
    int32_t eot = qkv_tokenizer_token_to_id(g_tok, "<|endoftext|>", 13);
    CHECK(eot >= 0);
    int64_t vocab = (int64_t)qkv_tokenizer_vocab_size(g_tok);

    /* shard files: ceil(tokens / 7) each, header bytes as documented */
    for (int k = 0; k < 2; k++) {
        int64_t nt = st.tokens[k], ns = (nt + 6) / 7;
        CHECK_EQ_INT(count_files(dir, k ? "val_" : "train_"), ns);
        int64_t total = 0;
        for (int64_t s = 0; s < ns; s++) {
            snprintf(p, sizeof p, "%s/%s_%05lld.bin", dir, k ? "val" : "train", (long long)s);
            size_t n;
            uint8_t *b = read_all(p, &n);
            CHECK(b != NULL);
            if (!b) continue;
            CHECK(n >= 64 && memcmp(b, "QKVTOKS1", 8) == 0);
            uint32_t ver, bpi;
            uint64_t cnt, voc;
            memcpy(&ver, b + 8, 4); /* little-endian host */
            memcpy(&bpi, b + 12, 4);
            memcpy(&cnt, b + 16, 8);
            memcpy(&voc, b + 24, 8);
            CHECK_EQ_INT(ver, 1);
            CHECK_EQ_INT(bpi, vocab <= 65536 ? 2 : 4);
            CHECK_EQ_INT(voc, vocab);
            CHECK(cnt >= 1 && cnt <= 7);
            CHECK(s == ns - 1 || cnt == 7);
            CHECK_EQ_INT(n, 64 + cnt * bpi);
            int zero = 1;
            for (int i = 32; i < 64; i++) zero &= b[i] == 0;
            CHECK(zero);
            total += (int64_t)cnt;
            free(b);
        }
        CHECK_EQ_INT(total, nt);
    }
    snprintf(p, sizeof p, "%s/meta.json", dir);
    size_t mlen;
    char *meta = (char *)read_all(p, &mlen);
    CHECK(meta && strstr(meta, "\"format\": \"qkv-tokens\"") &&
          strstr(meta, "\"split_on\": \"%\"") && strstr(meta, "\"seed\": \"1234\"") &&
          strstr(meta, "\"tokenizer\": \"" FIX "/bpe\"") && strstr(meta, "\"val_00000.bin\"") &&
          strstr(meta, "\"val_fraction\": 0.3"));
    free(meta);
    snprintf(p, sizeof p, "%s/train_00000.bin.tmp", dir);
    CHECK(access(p, F_OK) != 0);

    /* train and val decode back to the documents, in order, each followed by eot */
    qkv_dataset *ds[2] = {NULL, NULL};
    CHECK_OK(qkv_dataset_open(dir, QKV_SPLIT_TRAIN, &ds[0]));
    CHECK_OK(qkv_dataset_open(dir, QKV_SPLIT_VAL, &ds[1]));
    if (!ds[0] || !ds[1]) return;
    int32_t *all[2];
    int64_t n[2], pos[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        CHECK_EQ_INT(qkv_dataset_tokens(ds[k]), st.tokens[k]);
        CHECK_EQ_INT(qkv_dataset_vocab_size(ds[k]), vocab);
        all[k] = read_split(ds[k], &n[k]);
        CHECK(n[k] > 0 && all[k][n[k] - 1] == eot);
    }
    int64_t seen[2] = {0, 0};
    for (int d = 0; d < N_DOCS; d++) {
        int found = 0;
        for (int k = 0; k < 2 && !found; k++) {
            if (pos[k] >= n[k]) continue;
            int64_t e = pos[k];
            while (e < n[k] && all[k][e] != eot) e++;
            char *text = NULL;
            size_t tl = 0;
            CHECK_OK(
                qkv_tokenizer_decode(g_tok, all[k] + pos[k], (size_t)(e - pos[k]), 0, &text, &tl));
            if (text && tl == strlen(DOCS[d]) && memcmp(text, DOCS[d], tl) == 0) {
                found = 1;
                seen[k]++;
                pos[k] = e + 1;
            }
            qkv_free(text);
        }
        CHECK_MSG(found, "document %d not found next in train or val", d);
    }
    CHECK_EQ_INT(pos[0], n[0]);
    CHECK_EQ_INT(pos[1], n[1]);
    CHECK_EQ_INT(seen[0], st.documents[0]);
    CHECK_EQ_INT(seen[1], st.documents[1]);

    /* sample: deterministic, windows of the stream, targets shifted by one */
    const qkv_dataset *tr = ds[0];
    int64_t N = n[0], T = 5, B = 16;
    int32_t *ids = calloc((size_t)(B * T), sizeof *ids), *tg = calloc((size_t)(B * T), sizeof *tg);
    int32_t *ids2 = calloc((size_t)(B * T), sizeof *ids),
            *tg2 = calloc((size_t)(B * T), sizeof *tg);
    CHECK_OK(qkv_dataset_sample(tr, 7, 3, B, T, ids, tg));
    CHECK_OK(qkv_dataset_sample(tr, 7, 3, B, T, ids2, tg2));
    CHECK(memcmp(ids, ids2, (size_t)(B * T) * sizeof *ids) == 0);
    CHECK(memcmp(tg, tg2, (size_t)(B * T) * sizeof *tg) == 0);
    /* a prefix of a batch does not depend on B */
    CHECK_OK(qkv_dataset_sample(tr, 7, 3, 3, T, ids2, tg2));
    CHECK(memcmp(ids, ids2, (size_t)(3 * T) * sizeof *ids) == 0);
    CHECK_OK(qkv_dataset_sample(tr, 7, 4, B, T, ids2, tg2));
    CHECK(memcmp(ids, ids2, (size_t)(B * T) * sizeof *ids) != 0);
    CHECK_OK(qkv_dataset_sample(tr, 8, 3, B, T, ids2, tg2));
    CHECK(memcmp(ids, ids2, (size_t)(B * T) * sizeof *ids) != 0);
    for (int64_t b = 0; b < B; b++) {
        int match = 0;
        for (int64_t s = 0; s + T < N && !match; s++)
            match = memcmp(all[0] + s, ids + b * T, (size_t)T * sizeof *ids) == 0 &&
                    memcmp(all[0] + s + 1, tg + b * T, (size_t)T * sizeof *ids) == 0;
        CHECK_MSG(match, "sampled window %lld is not a window of the split", (long long)b);
        for (int64_t t = 0; t + 1 < T; t++) CHECK(tg[b * T + t] == ids[b * T + t + 1]);
        for (int64_t t = 0; t < T; t++) CHECK(ids[b * T + t] >= 0 && ids[b * T + t] < vocab);
    }
    /* every start is reachable: T = N - 2 has starts 0 and 1 only */
    {
        int64_t TT = N - 2;
        int32_t *wi = calloc((size_t)TT, sizeof *wi), *wt = calloc((size_t)TT, sizeof *wt);
        int hit[2] = {0, 0};
        for (uint64_t i = 0; i < 64; i++) {
            CHECK_OK(qkv_dataset_sample(tr, 1, i, 1, TT, wi, wt));
            for (int s = 0; s < 2; s++)
                if (memcmp(wi, all[0] + s, (size_t)TT * sizeof *wi) == 0 &&
                    memcmp(wt, all[0] + s + 1, (size_t)TT * sizeof *wi) == 0)
                    hit[s]++;
        }
        CHECK(hit[0] > 0 && hit[1] > 0 && hit[0] + hit[1] == 64);
        /* T = N - 1: the only window is the whole split */
        int32_t *xi = calloc((size_t)N, sizeof *xi), *xt = calloc((size_t)N, sizeof *xt);
        CHECK_OK(qkv_dataset_sample(tr, 99, 5, 1, N - 1, xi, xt));
        CHECK(memcmp(xi, all[0], (size_t)(N - 1) * sizeof *xi) == 0);
        CHECK(memcmp(xt, all[0] + 1, (size_t)(N - 1) * sizeof *xi) == 0);
        CHECK_STATUS(qkv_dataset_sample(tr, 99, 5, 1, N, xi, xt), QKV_ERR_INVALID_ARG);
        free(xi);
        free(xt);
        free(wi);
        free(wt);
    }
    CHECK_STATUS(qkv_dataset_sample(tr, 0, 0, 0, T, ids, tg), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_dataset_sample(tr, 0, 0, B, 0, ids, tg), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_dataset_sample(tr, 0, 0, B, T, NULL, tg), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_dataset_sample(tr, 0, 0, INT64_MAX, INT64_MAX, ids, tg), QKV_ERR_INVALID_ARG);

    /* sequential: batches in order cover the split from the start */
    for (int64_t bb = 1; bb <= 3; bb++)
        for (int64_t t = 1; t <= 6; t++) {
            int64_t nb = qkv_dataset_batches(tr, bb, t);
            CHECK_EQ_INT(nb, (N - 1) / t / bb);
            for (int64_t i = 0; i < nb; i++) {
                CHECK_OK(qkv_dataset_sequential(tr, i, bb, t, ids, tg));
                CHECK(memcmp(ids, all[0] + i * bb * t, (size_t)(bb * t) * sizeof *ids) == 0);
                for (int64_t w = 0; w < bb; w++)
                    CHECK(memcmp(tg + w * t, all[0] + (i * bb + w) * t + 1,
                                 (size_t)t * sizeof *ids) == 0);
            }
            CHECK_STATUS(qkv_dataset_sequential(tr, nb, bb, t, ids, tg), QKV_ERR_INVALID_ARG);
            CHECK_STATUS(qkv_dataset_sequential(tr, -1, bb, t, ids, tg), QKV_ERR_INVALID_ARG);
        }
    free(ids);
    free(tg);
    free(ids2);
    free(tg2);
    for (int k = 0; k < 2; k++) {
        free(all[k]);
        qkv_dataset_close(ds[k]);
    }

    /* the same seed gives the same dataset; re-preparing over it with bigger shards replaces
     * it and removes the shards the new meta.json does not list */
    char dir2[600];
    snprintf(dir2, sizeof dir2, "%s/main2", tmp);
    qkv_data_stats st2 = {.struct_size = sizeof st2};
    CHECK_OK(qkv_data_prepare(g_tok, files, 2, &o, dir2, &st2, NULL, NULL));
    CHECK(memcmp(&st, &st2, sizeof st) == 0);
    size_t l1, l2;
    snprintf(p, sizeof p, "%s/train_00001.bin", dir);
    uint8_t *f1 = read_all(p, &l1);
    snprintf(p, sizeof p, "%s/train_00001.bin", dir2);
    uint8_t *f2 = read_all(p, &l2);
    CHECK(f1 && f2 && l1 == l2 && memcmp(f1, f2, l1) == 0);
    free(f1);
    free(f2);
    o.shard_tokens = 0; /* default: one shard per split */
    CHECK_OK(qkv_data_prepare(g_tok, files, 2, &o, dir2, &st2, NULL, NULL));
    CHECK_EQ_INT(count_files(dir2, "train_"), 1);
    CHECK_EQ_INT(count_files(dir2, "val_"), 1);
    CHECK_EQ_INT(st2.tokens[0], st.tokens[0]);
    qkv_dataset *d2 = NULL;
    CHECK_OK(qkv_dataset_open(dir2, QKV_SPLIT_TRAIN, &d2));
    CHECK_EQ_INT(qkv_dataset_tokens(d2), st.tokens[0]);
    qkv_dataset_close(d2);
}

static void test_splits(void) {
    char dir[600];
    qkv_data_stats st = {.struct_size = sizeof st};
    snprintf(dir, sizeof dir, "%s/splits", tmp);
    /* val_fraction 0: an empty validation split opens with 0 tokens */
    CHECK_OK(prepare(dir, 0, 0, 1, &st));
    CHECK_EQ_INT(st.documents[0], N_DOCS);
    CHECK_EQ_INT(st.documents[1], 0);
    qkv_dataset *ds = NULL;
    CHECK_OK(qkv_dataset_open(dir, QKV_SPLIT_VAL, &ds));
    CHECK_EQ_INT(qkv_dataset_tokens(ds), 0);
    CHECK_EQ_INT(qkv_dataset_batches(ds, 1, 1), 0);
    int32_t a[8], b[8];
    CHECK_STATUS(qkv_dataset_sample(ds, 0, 0, 1, 1, a, b), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_dataset_sequential(ds, 0, 1, 1, a, b), QKV_ERR_INVALID_ARG);
    qkv_dataset_close(ds);
    /* a tiny fraction still gives validation one document: the last one */
    CHECK_OK(prepare(dir, 1e-9, 0, 1, &st));
    CHECK_EQ_INT(st.documents[0], N_DOCS - 1);
    CHECK_EQ_INT(st.documents[1], 1);
    CHECK_EQ_INT(st.tokens[1], doc_tokens(DOCS[N_DOCS - 1]) + 1);
    /* everything to validation: training keeps the last one */
    CHECK_OK(prepare(dir, 1, 0, 1, &st));
    CHECK_EQ_INT(st.documents[0], 1);
    CHECK_EQ_INT(st.documents[1], N_DOCS - 1);
    /* the draw depends on the seed, and only on it */
    int differs = 0;
    qkv_data_stats s0 = {.struct_size = sizeof s0};
    CHECK_OK(prepare(dir, 0.5, 0, 0, &s0));
    for (uint64_t seed = 1; seed < 8; seed++) {
        CHECK_OK(prepare(dir, 0.5, 0, seed, &st));
        differs |= st.tokens[0] != s0.tokens[0];
        CHECK_EQ_INT(st.documents[0] + st.documents[1], N_DOCS);
    }
    CHECK(differs);
    /* no split_on: each file is one document; a single document goes to train */
    const char *one[] = {path_b};
    qkv_data_options o;
    qkv_data_default_options(&o);
    o.val_fraction = 1;
    CHECK_OK(qkv_data_prepare(g_tok, one, 1, &o, dir, &st, NULL, NULL));
    CHECK_EQ_INT(st.documents[0], 1);
    CHECK_EQ_INT(st.documents[1], 0);
    CHECK_EQ_INT(st.tokens[0], doc_tokens(B_TXT) + 1);
    const char *two[] = {path_a, path_b};
    o.val_fraction = 0.5;
    CHECK_OK(qkv_data_prepare(g_tok, two, 2, &o, dir, &st, NULL, NULL));
    CHECK_EQ_INT(st.documents[0] + st.documents[1], 2);
    CHECK_EQ_INT(st.tokens[0] + st.tokens[1], doc_tokens(A_TXT) + doc_tokens(B_TXT) + 2);
    CHECK(st.documents[0] == 1 && st.documents[1] == 1);
    /* split_on "" splits on blank lines; an empty file gives no document */
    char pe[600], pp[600];
    snprintf(pe, sizeof pe, "%s/empty.txt", tmp);
    write_text(pe, "");
    snprintf(pp, sizeof pp, "%s/paras.txt", tmp);
    write_text(pp, "para one\nline\n\npara two\n\n\n\npara three");
    const char *paras[] = {pe, pp};
    o.split_on = "";
    o.val_fraction = 0;
    CHECK_OK(qkv_data_prepare(g_tok, paras, 2, &o, dir, &st, NULL, NULL));
    CHECK_EQ_INT(st.documents[0], 3);
    CHECK_EQ_INT(st.tokens[0], doc_tokens("para one\nline\n") + doc_tokens("para two\n") +
                                   doc_tokens("para three") + 3);
    /* nothing but blank documents: an empty dataset that opens */
    const char *empty[] = {pe};
    CHECK_OK(qkv_data_prepare(g_tok, empty, 1, &o, dir, &st, NULL, NULL));
    CHECK_EQ_INT(st.documents[0] + st.documents[1], 0);
    CHECK_OK(qkv_dataset_open(dir, QKV_SPLIT_TRAIN, &ds));
    CHECK_EQ_INT(qkv_dataset_tokens(ds), 0);
    qkv_dataset_close(ds);
}

/* ---------------------------------------------------------------- malformed */

static char good[600];

static void fresh(const char *dir) {
    test_rm_rf(dir);
    CHECK_OK(prepare(dir, 0, 7, 3, NULL));
}

static void patch(const char *path, long off, const void *bytes, size_t n) {
    FILE *f = fopen(path, "r+b");
    if (!f) {
        CHECK(0);
        return;
    }
    fseek(f, off, SEEK_SET);
    fwrite(bytes, 1, n, f);
    fclose(f);
}

static void expect_open(const char *dir, qkv_status want, const char *needle, const char *what) {
    qkv_dataset *ds = (qkv_dataset *)1;
    qkv_status s = qkv_dataset_open(dir, QKV_SPLIT_TRAIN, &ds);
    CHECK_MSG(s == want, "%s: %s (%s), expected %s", what, qkv_strerror(s), qkv_last_error(),
              qkv_strerror(want));
    CHECK_MSG(s == QKV_OK || ds == NULL, "%s: handle set on failure", what);
    if (needle)
        CHECK_MSG(strstr(qkv_last_error(), needle) != NULL, "%s: message '%s' lacks '%s'", what,
                  qkv_last_error(), needle);
    if (s == QKV_OK) qkv_dataset_close(ds);
}

static void test_malformed(void) {
    char dir[600], shard[700], meta[700];
    snprintf(dir, sizeof dir, "%s/bad", tmp);
    snprintf(shard, sizeof shard, "%s/train_00001.bin", dir);
    snprintf(meta, sizeof meta, "%s/meta.json", dir);
    fresh(dir);
    expect_open(dir, QKV_OK, NULL, "fresh");

    patch(shard, 0, "QKVTOKSX", 8);
    expect_open(dir, QKV_ERR_FORMAT, "train_00001.bin", "bad magic");
    fresh(dir);
    if (truncate(shard, 64 + 13) != 0) CHECK(0); /* 7 ids of 2 bytes = 78 bytes */
    expect_open(dir, QKV_ERR_FORMAT, "train_00001.bin", "truncated by one byte");
    fresh(dir);
    if (truncate(shard, 10) != 0) CHECK(0);
    expect_open(dir, QKV_ERR_FORMAT, "shorter than", "shorter than the header");
    fresh(dir);
    if (truncate(shard, 0) != 0) CHECK(0);
    expect_open(dir, QKV_ERR_FORMAT, "train_00001.bin", "empty file");
    fresh(dir);
    const uint8_t big[2] = {0xff, 0xff};
    patch(shard, 64 + 2 * 3, big, 2);
    expect_open(dir, QKV_ERR_FORMAT, "byte offset 70", "id >= vocab");
    fresh(dir);
    const uint8_t two[4] = {2, 0, 0, 0}, three[4] = {3, 0, 0, 0}, four[4] = {4, 0, 0, 0};
    patch(shard, 8, two, 4);
    expect_open(dir, QKV_ERR_FORMAT, "version", "version 2");
    fresh(dir);
    patch(shard, 12, three, 4);
    expect_open(dir, QKV_ERR_FORMAT, "bytes_per_id", "bytes_per_id 3");
    fresh(dir);
    patch(shard, 12, four, 4);
    expect_open(dir, QKV_ERR_FORMAT, "train_00001.bin", "bytes_per_id 4: size mismatch");
    fresh(dir);
    const uint8_t n6[8] = {6, 0, 0, 0, 0, 0, 0, 0};
    patch(shard, 16, n6, 8);
    expect_open(dir, QKV_ERR_FORMAT, "file has", "n_tokens / size mismatch");
    fresh(dir);
    const uint8_t nhuge[8] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    patch(shard, 16, nhuge, 8);
    expect_open(dir, QKV_ERR_FORMAT, "file has", "n_tokens 2^64 - 1");
    fresh(dir);
    const uint8_t v7[8] = {7, 0, 0, 0, 0, 0, 0, 0};
    patch(shard, 24, v7, 8);
    expect_open(dir, QKV_ERR_FORMAT, "meta.json says", "vocab mismatch");
    fresh(dir);
    patch(shard, 40, "x", 1);
    expect_open(dir, QKV_ERR_FORMAT, "reserved", "reserved byte");
    fresh(dir);
    unlink(shard);
    expect_open(dir, QKV_ERR_IO, "train_00001.bin", "missing shard");
    fresh(dir);
    /* an extra token appended and counted in the header: the shard is fine, meta disagrees */
    {
        size_t n;
        uint8_t *b = read_all(shard, &n);
        uint8_t *c = malloc(n + 2);
        memcpy(c, b, n);
        c[n] = 1;
        c[n + 1] = 0;
        c[16]++;
        write_file(shard, c, n + 2);
        free(b);
        free(c);
        expect_open(dir, QKV_ERR_FORMAT, "tokens", "meta count mismatch");
    }
    fresh(dir);
    unlink(meta);
    expect_open(dir, QKV_ERR_IO, "meta.json", "missing meta.json");
    expect_open("/nonexistent/dataset", QKV_ERR_IO, "meta.json", "missing directory");

    /* meta.json contents */
    static const struct {
        const char *json, *needle, *what;
    } metas[] = {
        {"", "meta.json", "empty"},
        {"{\"format\":", "meta.json", "truncated JSON"},
        {"[]", "object", "not an object"},
        {"{\"format\":\"other\",\"version\":1}", "format", "wrong format"},
        {"{\"format\":\"qkv-tokens\",\"version\":2,\"vocab_size\":10,\"eot_id\":0}", "version",
         "version 2"},
        {"{\"format\":\"qkv-tokens\",\"version\":1,\"vocab_size\":0,\"eot_id\":0}", "vocab_size",
         "vocab 0"},
        {"{\"format\":\"qkv-tokens\",\"version\":1,\"vocab_size\":4294967296,\"eot_id\":0}",
         "vocab_size", "vocab 2^32"},
        {"{\"format\":\"qkv-tokens\",\"version\":1,\"vocab_size\":\"5\",\"eot_id\":0}",
         "vocab_size", "vocab a string"},
        {"{\"format\":\"qkv-tokens\",\"version\":1,\"vocab_size\":10,\"eot_id\":10}", "eot_id",
         "eot out of range"},
        {"{\"format\":\"qkv-tokens\",\"version\":1,\"vocab_size\":10,\"eot_id\":0}", "train",
         "no split"},
        {"{\"format\":\"qkv-tokens\",\"version\":1,\"vocab_size\":10,\"eot_id\":0,\"train\":"
         "{\"documents\":-1,\"tokens\":0,\"shards\":[]}}",
         "documents", "negative documents"},
        {"{\"format\":\"qkv-tokens\",\"version\":1,\"vocab_size\":10,\"eot_id\":0,\"train\":"
         "{\"documents\":0,\"tokens\":0,\"shards\":{}}}",
         "shards", "shards not an array"},
        {"{\"format\":\"qkv-tokens\",\"version\":1,\"vocab_size\":10,\"eot_id\":0,\"train\":"
         "{\"documents\":0,\"tokens\":0,\"shards\":[\"../meta.json\"]}}",
         "file name", "shard outside the directory"},
        {"{\"format\":\"qkv-tokens\",\"version\":1,\"vocab_size\":10,\"eot_id\":0,\"train\":"
         "{\"documents\":0,\"tokens\":0,\"shards\":[\"/etc/passwd\"]}}",
         "file name", "absolute shard path"},
        {"{\"format\":\"qkv-tokens\",\"version\":1,\"vocab_size\":10,\"eot_id\":0,\"train\":"
         "{\"documents\":0,\"tokens\":0,\"shards\":[7]}}",
         "file name", "shard name a number"},
        {"{\"format\":\"qkv-tokens\",\"version\":1,\"vocab_size\":10,\"eot_id\":0,\"train\":"
         "{\"documents\":0,\"tokens\":5,\"shards\":[]}}",
         "tokens", "tokens without shards"},
        {"{\"format\":\"qkv-tokens\",\"format\":\"qkv-tokens\",\"version\":1}", "meta.json",
         "duplicate key"},
    };
    for (size_t i = 0; i < sizeof metas / sizeof metas[0]; i++) {
        write_text(meta, metas[i].json);
        expect_open(dir, QKV_ERR_FORMAT, metas[i].needle, metas[i].what);
    }
    /* a shard that is a directory, and an empty but valid split */
    write_text(meta, "{\"format\":\"qkv-tokens\",\"version\":1,\"vocab_size\":10,\"eot_id\":0,"
                     "\"train\":{\"documents\":0,\"tokens\":0,\"shards\":[\"sub\"]}}");
    char sub[700];
    snprintf(sub, sizeof sub, "%s/sub", dir);
    mkdir(sub, 0777);
    expect_open(dir, QKV_ERR_IO, "regular", "shard is a directory");
    rmdir(sub);
    write_text(meta, "{\"format\":\"qkv-tokens\",\"version\":1,\"vocab_size\":10,\"eot_id\":0,"
                     "\"train\":{\"documents\":0,\"tokens\":0,\"shards\":[]}}");
    expect_open(dir, QKV_OK, NULL, "empty split");
    (void)good;
}

/* Random bytes (with a valid magic and plausible fields now and then) through the parsers. */
static void test_garbage(void) {
    uint64_t x = 88172645463325252ull;
    uint8_t buf[256];
    int ok = 0;
    for (int it = 0; it < 20000; it++) {
        size_t len = 0;
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        len = (size_t)(x % sizeof buf);
        for (size_t i = 0; i < len; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            buf[i] = (uint8_t)(x % 7 == 0 ? 0 : x >> 24);
        }
        if (len >= 64 && it % 2) {
            memcpy(buf, "QKVTOKS1", 8);
            uint32_t ver = 1, bpi = it % 4 == 1 ? 2 : 4;
            uint64_t n = (len - 64) / bpi + (uint64_t)(it % 3 == 0), voc = 1 + (x >> 40) % 70000;
            memcpy(buf + 8, &ver, 4);
            memcpy(buf + 12, &bpi, 4);
            memcpy(buf + 16, &n, 8);
            memcpy(buf + 24, &voc, 8);
            memset(buf + 32, 0, 32);
        }
        int64_t n;
        int bpi;
        qkv_status s = qkv__data_shard_check(buf, len, 0, "garbage", &n, &bpi);
        CHECK(s == QKV_OK || s == QKV_ERR_FORMAT);
        ok += s == QKV_OK;
        qkv__data_meta m;
        s = qkv__data_meta_parse((const char *)buf, len, "garbage", QKV_SPLIT_VAL, &m);
        CHECK(s == QKV_ERR_FORMAT);
        qkv__data_meta_free(&m);
    }
    CHECK(ok > 0); /* some valid shards were made, so the scan ran too */
}

/* ---------------------------------------------------------------- allocation failure */

/* Fails allocation 0, 1, 2, ... of fn in turn: NOMEM (nothing leaked) until fn no longer
 * reaches the failure, then OK. */
static void sweep(const char *what, qkv_status (*fn)(const char *), const char *dir) {
    qkv_allocator a = {failing_alloc, counting_free, NULL};
    qkv_set_allocator(&a);
    int done = 0;
    for (long n = 0; n < 5000 && !done; n++) {
        n_attempt = n_alloc = n_free = 0;
        fail_at = n;
        qkv_status s = fn(dir);
        int injected = n_attempt > n;
        CHECK_MSG(n_alloc == n_free, "%s, failing allocation %ld: %ld allocations, %ld frees", what,
                  n, n_alloc, n_free);
        if (!injected) {
            CHECK_MSG(s == QKV_OK, "%s: %s (%s)", what, qkv_strerror(s), qkv_last_error());
            done = 1;
        } else {
            CHECK_MSG(s == QKV_ERR_NOMEM, "%s, failing allocation %ld: %s (%s)", what, n,
                      qkv_strerror(s), qkv_last_error());
        }
    }
    qkv_set_allocator(NULL);
    CHECK_MSG(done, "%s: never succeeded", what);
}

static qkv_status open_both(const char *dir) {
    qkv_dataset *ds = NULL;
    qkv_status s = qkv_dataset_open(dir, QKV_SPLIT_TRAIN, &ds);
    qkv_dataset_close(ds);
    if (s == QKV_OK) {
        s = qkv_dataset_open(dir, QKV_SPLIT_VAL, &ds);
        qkv_dataset_close(ds);
    }
    return s;
}

static qkv_status prepare_again(const char *dir) { return prepare(dir, 0.3, 0, 5, NULL); }

static void test_nomem(void) {
    char dir[600];
    snprintf(dir, sizeof dir, "%s/nomem", tmp);
    CHECK_OK(prepare(dir, 0.3, 0, 5, NULL)); /* also warms the tokenizer's cache */
    sweep("open", open_both, dir);
    sweep("prepare", prepare_again, dir);
    CHECK_OK(open_both(dir));
}

/* qkv__epoch_order: a permutation, a pure function of (seed, epoch); grouped by length, each
 * full batch lies inside one run of 50 batches sorted by decreasing length (so its lengths span
 * no more than that run's), the last smaller batch stays last; shuffled batches are the same
 * batches as unshuffled, in another order within each run. */
static int64_t g_len[5000];
static int64_t len_of(const void *ctx, int64_t i) {
    (void)ctx;
    return g_len[i];
}
static void test_epoch_order(void) {
    enum { N = 4321, B = 16 };
    static int64_t a[N], b[N], c[N], d[N];
    for (int64_t i = 0; i < N; i++) g_len[i] = 1 + (i * 7919 + i / 3) % 57;
    CHECK_OK(qkv__epoch_order(N, len_of, NULL, 7, 0, 0, 0, a));
    CHECK_OK(qkv__epoch_order(N, len_of, NULL, 7, 0, B, 0, b));
    CHECK_OK(qkv__epoch_order(N, len_of, NULL, 7, 0, B, 1, c));
    CHECK_OK(qkv__epoch_order(N, len_of, NULL, 7, 0, B, 1, d));
    CHECK(memcmp(c, d, sizeof c) == 0); /* pure */
    static char seen[3][N];
    int perm = 1, sorted = 1, same_batches = 1, moved = 0;
    for (int64_t i = 0; i < N; i++) {
        perm &= !seen[0][a[i]]++ && !seen[1][b[i]]++ && !seen[2][c[i]]++;
        if (i % (50 * B) && i < N) sorted &= g_len[b[i]] <= g_len[b[i - 1]];
    }
    CHECK(perm);
    CHECK(sorted);
    /* each batch of c is a batch of b of the same run (matched by its first element) */
    for (int64_t k = 0; k < N / B; k++) {
        int64_t found = -1;
        for (int64_t j = (k / 50) * 50; j < (k / 50 + 1) * 50 && j < N / B; j++)
            if (b[j * B] == c[k * B]) found = j;
        same_batches &= found >= 0 && memcmp(b + found * B, c + k * B, B * sizeof *b) == 0;
        moved += found != k;
    }
    CHECK(same_batches);
    CHECK(moved > N / B / 2);
    CHECK(memcmp(b + N / B * B, c + N / B * B, (N % B) * sizeof *b) == 0); /* last stays */
    /* another epoch: another order */
    CHECK_OK(qkv__epoch_order(N, len_of, NULL, 7, 1, B, 1, d));
    CHECK(memcmp(c, d, sizeof c) != 0);
    printf("epoch order: %d examples, batch %d: permutation, runs sorted, %d of %d batches moved\n",
           N, B, moved, N / B);
}

int main(void) {
    snprintf(tmp, sizeof tmp, "%s/data_tmp.%ld", QKV_BINARY_DIR, (long)getpid());
    if (mkdir(tmp, 0777) != 0) {
        fprintf(stderr, "cannot create %s: %s\n", tmp, strerror(errno));
        return 1;
    }
    snprintf(path_a, sizeof path_a, "%s/a.txt", tmp);
    snprintf(path_b, sizeof path_b, "%s/b.txt", tmp);
    write_text(path_a, A_TXT);
    write_text(path_b, B_TXT);
    snprintf(good, sizeof good, "%s/main", tmp);
    qkv_tokenizer *tok = NULL;
    CHECK_OK(qkv_tokenizer_load(FIX "/bpe", &tok));
    if (!tok) return test_finish("data");
    g_tok = tok;

    test_arguments();
    test_roundtrip();
    test_splits();
    test_malformed();
    test_garbage();
    test_nomem();
    test_epoch_order();

    qkv_tokenizer_free(tok);
    const char *subs[] = {"args", "main", "main2", "splits", "bad", "nomem"};
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
        char d[700];
        snprintf(d, sizeof d, "%s/%s", tmp, subs[i]);
        test_rm_rf(d);
    }
    test_rm_rf(tmp);
    return test_finish("data");
}
