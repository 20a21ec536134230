/* test_tokenizer_train.c — qkv_bpe_train is deterministic and produces the committed
 * tests/fixtures/tokenizer/qkvbpe/tokenizer.json byte for byte when retrained on the fortunes
 * corpus (vocab 3000, special <|endoftext|>). That file's encodings are checked against
 * Hugging Face tokenizers' by test_tokenizer_corpus qkvbpe (HF loaded the qkv-written file to
 * make the fixtures), so together: qkv trains a tokenizer.json HF loads and encodes
 * identically. Also argument errors, and a small training whose merges are checked by hand.
 * The corpus part is skipped without the fortunes package. */
#include "qkv.h"
#include "test.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#define FIX QKV_SOURCE_DIR "/tests/fixtures/tokenizer"

static char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long l = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)l + 1);
    *n = fread(b, 1, (size_t)l, f);
    b[*n] = 0;
    fclose(f);
    return b;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(void) {
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s/tokenizer_train_tmp.%ld", QKV_BINARY_DIR, (long)getpid());
    const char *special[] = {"<|endoftext|>"};

    /* arguments */
    const char *none[] = {"/nonexistent"};
    CHECK_STATUS(qkv_bpe_train(NULL, 0, 300, NULL, 0, 0, dir, NULL, NULL), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_bpe_train(none, 1, 100, NULL, 0, 0, dir, NULL, NULL), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_bpe_train(none, 1, 300, NULL, 0, 0, dir, NULL, NULL), QKV_ERR_IO);

    /* a small text: the most frequent pairs merge first, ties to the smaller ids */
    snprintf(path, sizeof path, "%s.txt", dir);
    FILE *f = fopen(path, "wb");
    fputs("aaa aaa aaa bb bb\nab ab\n", f);
    fclose(f);
    const char *small[] = {path};
    CHECK_OK(qkv_bpe_train(small, 1, 256 + 1 + 3, special, 1, 1, dir, NULL, NULL));
    char tj[700];
    snprintf(tj, sizeof tj, "%s/tokenizer.json", dir);
    qkv_tokenizer *t = NULL;
    CHECK_OK(qkv_tokenizer_load(tj, &t));
    if (t) {
        CHECK_EQ_INT(qkv_tokenizer_vocab_size(t), 260);
        CHECK_EQ_INT(qkv_tokenizer_token_to_id(t, "<|endoftext|>", 13), 0);
        /* pairs: (a,a) 6, (Ġ,a) 2, (Ġ,b) 1 + ... : first merge is "aa", then "Ġa"... */
        CHECK(qkv_tokenizer_token_to_id(t, "aa", 2) == 257);
        qkv_tokenizer_free(t);
    }
    unlink(path);

    /* the fortunes corpus: byte-identical to the committed file */
    const char *fdir = "/usr/share/games/fortunes";
    DIR *d = opendir(fdir);
    if (!d) {
        printf("fortunes not installed: corpus training skipped\n");
        return test_failures_ ? test_finish("tokenizer_train") : 77;
    }
    char *names[512];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 512) {
        char p[1024];
        size_t l = strlen(e->d_name);
        if (e->d_name[0] == '.' || (l > 4 && strcmp(e->d_name + l - 4, ".dat") == 0)) continue;
        snprintf(p, sizeof p, "%s/%s", fdir, e->d_name);
        struct stat sb;
        if (lstat(p, &sb) == 0 && S_ISREG(sb.st_mode)) names[n++] = strdup(p);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    CHECK_OK(
        qkv_bpe_train((const char *const *)names, (size_t)n, 3000, special, 1, 0, dir, NULL, NULL));
    size_t a = 0, b = 0;
    char *got = read_all(tj, &a), *want = read_all(FIX "/qkvbpe/tokenizer.json", &b);
    CHECK_MSG(got && want && a == b && memcmp(got, want, a) == 0,
              "retrained tokenizer.json (%zu bytes) differs from the committed one (%zu bytes); "
              "if the corpus changed, see tools/gen_tokenizer_fixtures.py",
              a, b);
    free(got);
    free(want);
    for (int i = 0; i < n; i++) free(names[i]);
    unlink(tj);
    rmdir(dir);
    return test_finish("tokenizer_train");
}
