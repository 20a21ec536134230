/* test_data_parallel.c — parallel datasets: qkv_data_prepare_parallel, qkv_dataset_sentence and
 * the checks of the reader for meta.json "kind": "parallel".
 *
 * The fixture (tools/gen_parallel_fixtures.py) is eight line pairs (CRLF on one line, the
 * target file's last line without "\n") and the ids transformers' MarianTokenizer gives for
 * them over a Marian directory whose target.spm differs from its source.spm: source text
 * encoded with </s> appended, target text as text_target. Checked: every sentence of the
 * dataset equals those ids; truncation keeps </s> last; the train / validation draw is a pure
 * function of the seed and loses or reorders no pair; --val-source files; hostile input
 * (unequal line counts, empty line, invalid UTF-8, NUL, a literal </s>) refused with the file
 * and line named and the old dataset kept, or skipped; damaged parallel datasets refused at
 * open (FORMAT); LM windows refused on pairs; the training loop's validation over padded
 * batches of pairs equal to each pair evaluated alone; every allocation of prepare and open
 * failed in turn (NOMEM, nothing leaked). */
#include "fault_alloc.h"
#include "qkv.h"
#include "test.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FIX QKV_SOURCE_DIR "/tests/fixtures/parallel"
#define NPAIRS 8
#define MAXID 64

static char tmp[512];
static qkv_tokenizer *g_src, *g_tgt;
static int32_t want[2][NPAIRS][MAXID]; /* [side][pair] the expected ids */
static int64_t want_n[2][NPAIRS];

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
    fwrite(text, 1, strlen(text), f);
    fclose(f);
}

static void load_ids(int side, const char *name) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s", FIX, name);
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    if (!f) return;
    char line[4096];
    for (int i = 0; i < NPAIRS && fgets(line, sizeof line, f); i++) {
        char *p = line, *end;
        for (long v; (v = strtol(p, &end, 10)), end != p; p = end)
            if (want_n[side][i] < MAXID) want[side][i][want_n[side][i]++] = (int32_t)v;
    }
    fclose(f);
}

static qkv_status prepare(const char *src, const char *tgt, const qkv_data_options *o,
                          const char *out, qkv_data_stats *st) {
    return qkv_data_prepare_parallel(g_src, g_tgt, src, tgt, o, out, st, NULL, NULL);
}

/* Every pair of split of dir matches the expected pair `order[k]`; returns the pairs. */
static int64_t check_split(const char *dir, qkv_split split, const int *order) {
    qkv_dataset *ds = NULL;
    CHECK_OK(qkv_dataset_open(dir, split, &ds));
    if (!ds) return 0;
    CHECK(qkv_dataset_is_parallel(ds));
    int64_t n = qkv_dataset_pairs(ds);
    for (int64_t k = 0; k < n; k++)
        for (int side = 0; side < 2; side++) {
            int32_t got[MAXID];
            int64_t len = -1;
            CHECK_OK(qkv_dataset_sentence(ds, side, k, MAXID, got, &len));
            const int i = order[k];
            CHECK_EQ_INT(len, want_n[side][i]);
            CHECK_EQ_INT(qkv_dataset_sentence_len(ds, side, k), want_n[side][i]);
            int same = len == want_n[side][i];
            for (int64_t t = 0; same && t < len; t++) same = got[t] == want[side][i][t];
            CHECK_MSG(same, "split %d pair %lld side %d differs from MarianTokenizer's ids",
                      (int)split, (long long)k, side);
        }
    qkv_dataset_close(ds);
    return n;
}

static void test_ids(void) {
    char out[600], src[600], tgt[600];
    snprintf(out, sizeof out, "%s/all", tmp);
    snprintf(src, sizeof src, "%s/src.txt", FIX);
    snprintf(tgt, sizeof tgt, "%s/tgt.txt", FIX);
    qkv_data_options o;
    qkv_data_default_options(&o);
    o.val_fraction = 0;
    o.tokenizer_path = o.target_tokenizer_path = FIX "/marian";
    qkv_data_stats st = {.struct_size = sizeof st};
    CHECK_OK(prepare(src, tgt, &o, out, &st));
    CHECK_EQ_INT(st.documents[0], NPAIRS);
    CHECK_EQ_INT(st.documents[1], 0);
    int64_t src_tokens = 0;
    for (int i = 0; i < NPAIRS; i++) src_tokens += want_n[0][i];
    CHECK_EQ_INT(st.tokens[0], src_tokens);
    const int order[NPAIRS] = {0, 1, 2, 3, 4, 5, 6, 7};
    CHECK_EQ_INT(check_split(out, QKV_SPLIT_TRAIN, order), NPAIRS);
    CHECK_EQ_INT(check_split(out, QKV_SPLIT_VAL, order), 0);
    /* the target side really is target.spm's (the fixture makes them differ) */
    int differ = 0;
    for (int i = 0; i < NPAIRS; i++) {
        qkv_encoding *e = NULL;
        char line[256];
        FILE *f = fopen(tgt, "r");
        for (int k = 0; f && k <= i; k++)
            if (!fgets(line, sizeof line, f)) line[0] = 0;
        if (f) fclose(f);
        line[strcspn(line, "\n")] = 0;
        qkv_encode_options eo;
        qkv_tokenizer_default_options(g_src, &eo);
        if (qkv_tokenizer_encode(g_src, line, strlen(line), NULL, 0, &eo, &e) == QKV_OK)
            differ += (int64_t)e->n != want_n[1][i] ||
                      memcmp(e->ids, want[1][i], e->n * sizeof *e->ids) != 0;
        qkv_encoding_free(e);
    }
    CHECK(differ > 0);
    /* truncation: the first cap - 1 ids and </s> */
    qkv_dataset *ds = NULL;
    CHECK_OK(qkv_dataset_open(out, QKV_SPLIT_TRAIN, &ds));
    if (ds) {
        int32_t got[4];
        int64_t len = 0;
        CHECK(want_n[0][3] > 4);
        CHECK_OK(qkv_dataset_sentence(ds, 0, 3, 4, got, &len));
        CHECK_EQ_INT(len, 4);
        CHECK(got[0] == want[0][3][0] && got[1] == want[0][3][1] && got[2] == want[0][3][2]);
        CHECK_EQ_INT(got[3], want[0][3][want_n[0][3] - 1]);
        CHECK_STATUS(qkv_dataset_sentence(ds, 2, 0, 4, got, &len), QKV_ERR_INVALID_ARG);
        CHECK_STATUS(qkv_dataset_sentence(ds, 0, NPAIRS, 4, got, &len), QKV_ERR_INVALID_ARG);
        CHECK_STATUS(qkv_dataset_sentence(ds, 0, 0, 0, got, &len), QKV_ERR_INVALID_ARG);
        int32_t ids[8], tg[8];
        CHECK_STATUS(qkv_dataset_sample(ds, 1, 0, 1, 2, ids, tg), QKV_ERR_INVALID_ARG);
        CHECK_EQ_INT(qkv_dataset_batches(ds, 1, 2), 0);
        CHECK_EQ_INT(qkv_dataset_target_vocab_size(ds), qkv_tokenizer_vocab_size(g_tgt));
        CHECK(qkv_dataset_target_tokenizer(ds) != NULL);
        qkv_dataset_close(ds);
    }
}

/* The draw: a pure function of the seed; train + val hold every pair once, in file order. */
static void test_split(void) {
    char out[600], out2[600], src[600], tgt[600];
    snprintf(out, sizeof out, "%s/split", tmp);
    snprintf(out2, sizeof out2, "%s/split2", tmp);
    snprintf(src, sizeof src, "%s/src.txt", FIX);
    snprintf(tgt, sizeof tgt, "%s/tgt.txt", FIX);
    qkv_data_options o;
    qkv_data_default_options(&o);
    o.val_fraction = 0.4;
    o.seed = 7;
    qkv_data_stats a = {.struct_size = sizeof a}, b = {.struct_size = sizeof b};
    CHECK_OK(prepare(src, tgt, &o, out, &a));
    CHECK_OK(prepare(src, tgt, &o, out2, &b));
    CHECK_EQ_INT(a.documents[0], b.documents[0]);
    CHECK_EQ_INT(a.documents[0] + a.documents[1], NPAIRS);
    CHECK(a.documents[0] > 0 && a.documents[1] > 0);
    /* which pairs went where: find each split's pairs in file order */
    int tr[NPAIRS], va[NPAIRS], nt = 0, nv = 0;
    qkv_dataset *d[2] = {NULL, NULL};
    CHECK_OK(qkv_dataset_open(out, QKV_SPLIT_TRAIN, &d[0]));
    CHECK_OK(qkv_dataset_open(out, QKV_SPLIT_VAL, &d[1]));
    if (d[0] && d[1]) {
        int64_t k[2] = {0, 0};
        for (int i = 0; i < NPAIRS; i++) { /* pair i is the next of one split */
            for (int sp = 0; sp < 2; sp++) {
                if (k[sp] >= qkv_dataset_pairs(d[sp])) continue;
                int32_t got[MAXID];
                int64_t len;
                CHECK_OK(qkv_dataset_sentence(d[sp], 1, k[sp], MAXID, got, &len));
                if (len == want_n[1][i] && memcmp(got, want[1][i], len * sizeof *got) == 0) {
                    (sp ? va : tr)[sp ? nv++ : nt++] = i;
                    k[sp]++;
                    break;
                }
            }
        }
    }
    qkv_dataset_close(d[0]);
    qkv_dataset_close(d[1]);
    CHECK_EQ_INT(nt + nv, NPAIRS);
    CHECK_EQ_INT(check_split(out, QKV_SPLIT_TRAIN, tr), nt);
    CHECK_EQ_INT(check_split(out, QKV_SPLIT_VAL, va), nv);
    CHECK_EQ_INT(check_split(out2, QKV_SPLIT_VAL, va), nv);
    /* validation from files */
    qkv_data_default_options(&o);
    o.val_source = src, o.val_target = tgt;
    CHECK_OK(prepare(src, tgt, &o, out, &a));
    CHECK_EQ_INT(a.documents[0], NPAIRS);
    CHECK_EQ_INT(a.documents[1], NPAIRS);
    const int order[NPAIRS] = {0, 1, 2, 3, 4, 5, 6, 7};
    CHECK_EQ_INT(check_split(out, QKV_SPLIT_VAL, order), NPAIRS);
    o.val_target = NULL;
    CHECK_STATUS(prepare(src, tgt, &o, out, &a), QKV_ERR_INVALID_ARG);
}

/* A hostile pair file: FORMAT naming file and line (the old dataset kept), or skipped. */
static void hostile(const char *s_txt, const char *t_txt, const char *bad_name, int line,
                    int skippable, int64_t kept) {
    char out[600], src[600], tgt[600], want_msg[700];
    snprintf(out, sizeof out, "%s/all", tmp); /* test_ids' dataset: must survive */
    snprintf(src, sizeof src, "%s/h.src", tmp);
    snprintf(tgt, sizeof tgt, "%s/h.tgt", tmp);
    write_text(src, s_txt);
    write_text(tgt, t_txt);
    qkv_data_options o;
    qkv_data_default_options(&o);
    o.val_fraction = 0;
    CHECK_STATUS(prepare(src, tgt, &o, out, NULL), QKV_ERR_FORMAT);
    snprintf(want_msg, sizeof want_msg, "%s/%s", tmp, bad_name);
    CHECK_MSG(strstr(qkv_last_error(), want_msg) != NULL, "message names %s: %s", want_msg,
              qkv_last_error());
    if (line > 0) {
        char l[32];
        snprintf(l, sizeof l, "line %d", line);
        CHECK_MSG(strstr(qkv_last_error(), l) != NULL, "message names %s: %s", l, qkv_last_error());
    }
    const int order[NPAIRS] = {0, 1, 2, 3, 4, 5, 6, 7};
    CHECK_EQ_INT(check_split(out, QKV_SPLIT_TRAIN, order), NPAIRS);
    o.skip_bad_pairs = 1;
    qkv_data_stats st = {.struct_size = sizeof st};
    char out2[600];
    snprintf(out2, sizeof out2, "%s/skipped", tmp);
    qkv_status s = prepare(src, tgt, &o, out2, &st);
    if (skippable) {
        CHECK_OK(s);
        CHECK_EQ_INT(st.documents[0], kept);
        CHECK(st.skipped >= 1);
    } else {
        CHECK_STATUS(s, QKV_ERR_FORMAT);
    }
}

static void test_hostile(void) {
    hostile("a\nb\nc\n", "x\ny\n", "h.src", 0, 0, 0);   /* unequal line counts */
    hostile("a\nb\n", "x\ny\nz", "h.src", 0, 0, 0);     /* ... the target longer */
    hostile("a\n\nc\n", "x\ny\nz\n", "h.src", 2, 1, 2); /* empty source line */
    hostile("a\nb\nc\n", "x\n \t\nz\n", "h.tgt", 2, 1, 2);
    hostile("a\nb\xff\nc\n", "x\ny\nz\n", "h.src", 2, 1, 2);  /* invalid UTF-8 */
    hostile("a\nb\nc</s>d\n", "x\ny\nz\n", "h.src", 3, 1, 2); /* the end-of-sentence token */
    char nul[] = "a\nb\nc\n", *p = strchr(nul, 'b');
    char path[600];
    snprintf(path, sizeof path, "%s/h.src", tmp);
    /* a NUL byte: written by hand (write_text stops at it) */
    FILE *f = fopen(path, "wb");
    if (f) {
        *p = '\0';
        fwrite(nul, 1, 6, f);
        fclose(f);
    }
    char tgt[600];
    snprintf(tgt, sizeof tgt, "%s/h.tgt", tmp);
    write_text(tgt, "x\ny\nz\n");
    qkv_data_options o;
    qkv_data_default_options(&o);
    char out[600];
    snprintf(out, sizeof out, "%s/nul", tmp);
    CHECK_STATUS(prepare(path, tgt, &o, out, NULL), QKV_ERR_FORMAT);
    CHECK(strstr(qkv_last_error(), "line 2") != NULL && strstr(qkv_last_error(), "NUL"));
    /* a directory and a missing file */
    CHECK_STATUS(prepare(tmp, tgt, &o, out, NULL), QKV_ERR_IO);
    snprintf(path, sizeof path, "%s/missing", tmp);
    CHECK_STATUS(prepare(path, tgt, &o, out, NULL), QKV_ERR_IO);
    CHECK_STATUS(qkv_data_prepare_parallel(NULL, g_tgt, tgt, tgt, &o, out, NULL, NULL, NULL),
                 QKV_ERR_INVALID_ARG);
    o.split_on = "%";
    CHECK_STATUS(prepare(tgt, tgt, &o, out, NULL), QKV_ERR_INVALID_ARG);
}

/* meta.json of test_ids' dataset edited: FORMAT at open. */
static void damaged(const char *from, const char *to, int replace_all) {
    char dir[600], path[700];
    snprintf(dir, sizeof dir, "%s/all", tmp);
    snprintf(path, sizeof path, "%s/meta.json", dir);
    size_t len = 0;
    char *orig = test_read_all(path, &len);
    CHECK(orig != NULL);
    if (!orig) return;
    char *at = strstr(orig, from);
    CHECK_MSG(at != NULL, "meta.json holds %s", from);
    if (at) {
        size_t cap = len + strlen(to) * 4 + 1;
        char *ed = malloc(cap), *w = ed;
        const char *r = orig;
        do {
            memcpy(w, r, (size_t)(at - r));
            w += at - r;
            strcpy(w, to);
            w += strlen(to);
            r = at + strlen(from);
        } while (replace_all && (at = strstr(r, from)) != NULL);
        strcpy(w, r);
        write_text(path, ed);
        free(ed);
        qkv_dataset *ds = (qkv_dataset *)1;
        CHECK_STATUS(qkv_dataset_open(dir, QKV_SPLIT_TRAIN, &ds), QKV_ERR_FORMAT);
        CHECK(ds == NULL);
    }
    write_text(path, orig);
    free(orig);
}

static void test_damaged(void) {
    damaged("\"kind\": \"parallel\"", "\"kind\": \"pairs\"", 0);
    damaged("\"target\": {\n      \"documents\": 8", "\"target\": {\n      \"documents\": 7", 0);
    damaged("\"documents\": 8", "\"documents\": 7", 1); /* both sides: the </s> count differs */
    damaged("\"target_eot_id\": 0", "\"target_eot_id\": 1", 0);        /* sentences end elsewhere */
    damaged("\"target_vocab_size\": ", "\"target_vocab_size\": 1", 0); /* ids past it */
    damaged("\"target\": {", "\"targt\": {", 0);
    damaged("\"train_tgt_00000.bin\"", "\"../train_tgt_00000.bin\"", 0);
    /* a sentence pair split's target shard swapped for the source one */
    damaged("\"train_tgt_00000.bin\"", "\"train_00000.bin\"", 0);
    qkv_dataset *ds = NULL; /* restored: opens again */
    char dir[600];
    snprintf(dir, sizeof dir, "%s/all", tmp);
    CHECK_OK(qkv_dataset_open(dir, QKV_SPLIT_TRAIN, &ds));
    qkv_dataset_close(ds);
}

/* ---------------------------------------------------------------- batches of pairs */

static double g_val_loss = -1;
static void on_metrics(const qkv_train_record *r, void *user) {
    (void)user;
    if (r->kind == QKV_TRAIN_RECORD_EVAL) g_val_loss = r->val_loss;
}

/* The loop's validation over padded batches of pairs (3, 3, 2) equals each pair evaluated alone
 * (no padding), weighted by its target tokens: the padding masks of both sides and the
 * per-token weighting. lr 0: the one training step leaves the weights as they were. */
static void test_batches(void) {
    char dir[600];
    snprintf(dir, sizeof dir, "%s/split", tmp); /* test_split's: val = all 8 pairs */
    qkv_dataset *tr = NULL, *va = NULL;
    qkv_trainer *t = NULL;
    qkv_runtime *rt = NULL;
    CHECK_OK(qkv_dataset_open(dir, QKV_SPLIT_TRAIN, &tr));
    CHECK_OK(qkv_dataset_open(dir, QKV_SPLIT_VAL, &va));
    CHECK_OK(qkv_trainer_load_hf(QKV_SOURCE_DIR "/tests/fixtures/marian/tiny", &t));
    CHECK_OK(qkv_runtime_create(1, &rt));
    if (!tr || !va || !t || !rt) goto done;
    CHECK_EQ_INT(qkv_dataset_pairs(va), NPAIRS);
    double sum = 0, count = 0;
    for (int64_t i = 0; i < NPAIRS; i++) {
        int32_t src[MAXID], tgt[MAXID], lens[1];
        int64_t ls, lt;
        CHECK_OK(qkv_dataset_sentence(va, 0, i, MAXID, src, &ls));
        CHECK_OK(qkv_dataset_sentence(va, 1, i, MAXID, tgt, &lt));
        lens[0] = (int32_t)ls;
        qkv_train_batch b = {.struct_size = sizeof b,
                             .targets = tgt,
                             .B = 1,
                             .T = lt,
                             .src_ids = src,
                             .src_lens = lens,
                             .S = ls};
        float l = 0;
        CHECK_OK(qkv_trainer_eval_batch(rt, t, &b, &l));
        sum += (double)l * (double)lt, count += (double)lt;
    }
    qkv_train_options o;
    qkv_train_options_init(&o);
    o.train = tr, o.val = va;
    o.batch = 3, o.seq = MAXID, o.steps = 1, o.lr = 0, o.min_lr = 0, o.warmup = 0;
    o.weight_decay = 0, o.eval_every = 1;
    qkv_train_callbacks cb = {.struct_size = sizeof cb, .metrics = on_metrics};
    CHECK_OK(qkv_train_run(rt, t, &o, &cb, NULL));
    CHECK_NEAR(g_val_loss, sum / count, 1e-5, 1e-5);
    /* src_seq past the model's positions: refused */
    o.src_seq = 100000;
    o.steps = 2;
    CHECK_STATUS(qkv_train_run(rt, t, &o, &cb, NULL), QKV_ERR_INVALID_ARG);
done:
    qkv_runtime_free(rt);
    qkv_trainer_free(t);
    qkv_dataset_close(tr);
    qkv_dataset_close(va);
}

/* ---------------------------------------------------------------- allocation failure */

static qkv_status prepare_and_open(const char *dir) {
    char src[600], tgt[600];
    snprintf(src, sizeof src, "%s/src.txt", FIX);
    snprintf(tgt, sizeof tgt, "%s/tgt.txt", FIX);
    qkv_data_options o;
    qkv_data_default_options(&o);
    o.val_fraction = 0.3;
    qkv_status s = prepare(src, tgt, &o, dir, NULL);
    for (int k = 0; k < 2 && s == QKV_OK; k++) {
        qkv_dataset *ds = NULL;
        s = qkv_dataset_open(dir, (qkv_split)k, &ds);
        qkv_dataset_close(ds);
    }
    return s;
}

static void test_nomem(void) {
    char dir[600];
    snprintf(dir, sizeof dir, "%s/nomem", tmp);
    qkv_allocator a = {failing_alloc, counting_free, NULL};
    qkv_set_allocator(&a);
    int done = 0;
    for (long n = 0; n < 5000 && !done; n++) {
        n_attempt = n_alloc = n_free = 0;
        fail_at = n;
        qkv_status s = prepare_and_open(dir);
        const int injected = n_attempt > n;
        CHECK_MSG(n_alloc == n_free, "failing allocation %ld: %ld allocations, %ld frees", n,
                  n_alloc, n_free);
        if (!injected) {
            CHECK_MSG(s == QKV_OK, "%s (%s)", qkv_strerror(s), qkv_last_error());
            done = 1;
        } else {
            CHECK_MSG(s == QKV_ERR_NOMEM, "failing allocation %ld: %s (%s)", n, qkv_strerror(s),
                      qkv_last_error());
        }
    }
    qkv_set_allocator(NULL);
    CHECK(done);
}

static void rm_rf(const char *dir) {
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
}

int main(void) {
    snprintf(tmp, sizeof tmp, "%s/data_parallel_tmp.%ld", QKV_BINARY_DIR, (long)getpid());
    if (mkdir(tmp, 0777) != 0) {
        fprintf(stderr, "cannot create %s: %s\n", tmp, strerror(errno));
        return 1;
    }
    load_ids(0, "expect.src.ids");
    load_ids(1, "expect.tgt.ids");
    CHECK_OK(qkv_tokenizer_load(FIX "/marian", &g_src));
    CHECK_OK(qkv_tokenizer_load_target(FIX "/marian", &g_tgt));
    if (g_src && g_tgt) {
        /* any other path: qkv_tokenizer_load's tokenizer */
        qkv_tokenizer *t = NULL;
        CHECK_OK(qkv_tokenizer_load_target(FIX "/marian/target.spm", &t));
        CHECK(t && qkv_tokenizer_vocab_size(t) != qkv_tokenizer_vocab_size(g_tgt));
        qkv_tokenizer_free(t);
        test_ids();
        test_split();
        test_hostile();
        test_damaged();
        test_batches();
        test_nomem();
    }
    qkv_tokenizer_free(g_src);
    qkv_tokenizer_free(g_tgt);
    rm_rf(tmp);
    return test_finish("data_parallel");
}
