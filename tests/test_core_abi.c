/* test_core_abi.c — the struct_size rule of qkv.h: a struct of this version (struct_size 0 or
 * sizeof) works; a newer, longer one works when the fields this version does not know are 0
 * and is refused otherwise; an older, shorter one works, its missing fields taking their
 * defaults; output structs are never written past struct_size. Through the helpers of
 * core/abi.h and through the public functions that read and write such structs. */
#include "core/abi.h"
#include "qkv.h"
#include "test.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

/* A "newer" attention descriptor: this version's fields and one it does not know. */
typedef struct {
    qkv_attention_desc d;
    int64_t future_field;
} desc_v9;

static void fill(float *x, size_t n, float seed) {
    for (size_t i = 0; i < n; i++) x[i] = sinf(seed + 0.37f * (float)i);
}

static void test_attention_desc(void) {
    enum { B = 1, T = 5, H = 2, D = 4, N = B * T * H * D };
    float q[N], k[N], v[N], ref[N], out[N];
    fill(q, N, 0.1f);
    fill(k, N, 1.3f);
    fill(v, N, 2.7f);
    qkv_attention_desc d0;
    memset(&d0, 0, sizeof d0); /* struct_size 0: this version's layout */
    d0.batch = B;
    d0.q_len = d0.kv_len = T;
    d0.n_heads = d0.n_kv_heads = H;
    d0.head_dim = D;
    d0.causal = 1;
    d0.window_left = d0.window_right = -1;
    CHECK_OK(qkv_attention_forward(NULL, &d0, q, k, v, ref, NULL));

    /* the initializer sets struct_size and no window */
    qkv_attention_desc di = QKV_ATTENTION_DESC_INIT;
    CHECK_EQ_INT(di.struct_size, sizeof di);
    CHECK_EQ_INT(di.window_left, -1);
    CHECK_EQ_INT(di.window_right, -1);
    CHECK_EQ_INT(di.causal, 0);
    di.batch = B;
    di.q_len = di.kv_len = T;
    di.n_heads = di.n_kv_heads = H;
    di.head_dim = D;
    di.causal = 1;
    CHECK_OK(qkv_attention_forward(NULL, &di, q, k, v, out, NULL));
    CHECK(memcmp(out, ref, sizeof out) == 0);

    /* struct_size = sizeof */
    qkv_attention_desc d = d0;
    d.struct_size = sizeof d;
    CHECK_OK(qkv_attention_forward(NULL, &d, q, k, v, out, NULL));
    CHECK(memcmp(out, ref, sizeof out) == 0);

    /* newer and longer, the unknown field 0: accepted, same result */
    desc_v9 big;
    memset(&big, 0, sizeof big);
    big.d = d0;
    big.d.struct_size = sizeof big;
    CHECK_OK(qkv_attention_forward(NULL, &big.d, q, k, v, out, NULL));
    CHECK(memcmp(out, ref, sizeof out) == 0);
    /* ... the unknown field set: refused, naming struct_size */
    big.future_field = 7;
    CHECK_STATUS(qkv_attention_forward(NULL, &big.d, q, k, v, out, NULL), QKV_ERR_INVALID_ARG);
    CHECK(strstr(qkv_last_error(), "qkv_attention_forward") != NULL);
    CHECK(strstr(qkv_last_error(), "struct_size") != NULL);
    CHECK_STATUS(qkv_attention_backward(NULL, &big.d, q, k, v, out, out, out, out, out, out),
                 QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_attention_probs(NULL, &big.d, q, k, out), QKV_ERR_INVALID_ARG);

    /* older and shorter (before dropout existed): the dropout fields past struct_size are not
     * read (here set to garbage) and take their default, no dropout */
    d = d0;
    d.struct_size = offsetof(qkv_attention_desc, dropout_p);
    d.dropout_p = 0.5f;
    d.dropout_seed = 99;
    CHECK_OK(qkv_attention_forward(NULL, &d, q, k, v, out, NULL));
    CHECK(memcmp(out, ref, sizeof out) == 0);
    /* with the whole struct, that dropout is applied */
    d.struct_size = sizeof d;
    CHECK_OK(qkv_attention_forward(NULL, &d, q, k, v, out, NULL));
    CHECK(memcmp(out, ref, sizeof out) != 0);

    /* a struct_size smaller than its own field is nonsense */
    d = d0;
    d.struct_size = 3;
    CHECK_STATUS(qkv_attention_forward(NULL, &d, q, k, v, out, NULL), QKV_ERR_INVALID_ARG);
    CHECK(strstr(qkv_last_error(), "struct_size 3") != NULL);
}

static void test_lr_schedule(void) {
    qkv_lr_schedule s = {0, 1.0, 0.0, 0, 10, QKV_LR_LINEAR};
    CHECK_NEAR(qkv_lr_at(&s, 5), 0.5, 1e-12, 0);
    s.struct_size = sizeof s;
    CHECK_NEAR(qkv_lr_at(&s, 5), 0.5, 1e-12, 0);
    /* older, without decay: constant (decay's 0) */
    s.struct_size = offsetof(qkv_lr_schedule, decay);
    CHECK_NEAR(qkv_lr_at(&s, 5), 1.0, 1e-12, 0);
    /* newer with a field this version does not know */
    struct {
        qkv_lr_schedule s;
        double future;
    } big;
    memset(&big, 0, sizeof big);
    big.s = s;
    big.s.struct_size = sizeof big;
    CHECK_NEAR(qkv_lr_at(&big.s, 5), 0.5, 1e-12, 0);
    big.future = 1.0;
    CHECK(isnan(qkv_lr_at(&big.s, 5)));
    CHECK(strstr(qkv_last_error(), "qkv_lr_at") != NULL);
}

static void test_defaults_and_outputs(void) {
    /* a *_defaults call fills the program's size and sets struct_size */
    qkv_adamw hp;
    memset(&hp, 0xAB, sizeof hp); /* uninitialized memory is fine: the macro passes sizeof */
    qkv_adamw_defaults(&hp);
    CHECK_EQ_INT(hp.struct_size, sizeof hp);
    CHECK(hp.beta1 == 0.9f && hp.beta2 == 0.999f && hp.eps == 1e-8f && hp.weight_decay == 0.01f);
    /* an older program's shorter struct: nothing past its size is written */
    unsigned char buf[sizeof(qkv_adamw) + 16];
    memset(buf, 0xAB, sizeof buf);
    const size_t old = offsetof(qkv_adamw, weight_decay);
    qkv_adamw_defaults_sized((qkv_adamw *)(void *)buf, old);
    size_t got;
    memcpy(&got, buf, sizeof got);
    CHECK_EQ_INT(got, old);
    int untouched = 1;
    for (size_t i = old; i < sizeof buf; i++) untouched &= buf[i] == 0xAB;
    CHECK(untouched);
    /* a newer program's longer struct: the fields this version does not know are zeroed */
    memset(buf, 0xAB, sizeof buf);
    qkv_adamw_defaults_sized((qkv_adamw *)(void *)buf, sizeof buf);
    int zero = 1;
    for (size_t i = sizeof(qkv_adamw); i < sizeof buf; i++) zero &= buf[i] == 0;
    CHECK(zero);
    qkv_data_options o;
    memset(&o, 0xCD, sizeof o);
    qkv_data_default_options(&o);
    CHECK_EQ_INT(o.struct_size, sizeof o);
    CHECK(o.val_fraction == 0.05 && o.split_on == NULL && o.tokenizer_path == NULL);
    qkv_encode_options e;
    memset(&e, 0xCD, sizeof e);
    qkv_tokenizer_default_options(NULL, &e);
    CHECK_EQ_INT(e.struct_size, sizeof e);
    CHECK_EQ_INT(e.add_special_tokens, 1);
    CHECK_EQ_INT(e.max_length, 0);

    /* the helpers themselves: output up to struct_size only, struct_size kept */
    qkv_data_stats full;
    memset(&full, 0, sizeof full);
    full.documents[0] = 11;
    full.tokens[0] = 22;
    full.bytes_read = 33;
    qkv_data_stats outs;
    memset(&outs, 0x5A, sizeof outs);
    outs.struct_size = offsetof(qkv_data_stats, bytes_read);
    QKV__STRUCT_OUT(qkv_data_stats, &outs, &full);
    CHECK_EQ_INT(outs.struct_size, offsetof(qkv_data_stats, bytes_read));
    CHECK_EQ_INT(outs.documents[0], 11);
    CHECK_EQ_INT(outs.tokens[0], 22);
    CHECK_EQ_INT(outs.bytes_read, 0x5A5A5A5A5A5A5A5A);
    outs.struct_size = 0;
    QKV__STRUCT_OUT(qkv_data_stats, &outs, &full);
    CHECK_EQ_INT(outs.struct_size, 0);
    CHECK_EQ_INT(outs.bytes_read, 33);
    /* input: the missing tail takes the defaults given, struct_size becomes this version's */
    qkv_adamw in, loc, defs;
    qkv_adamw_defaults(&defs);
    memset(&in, 0, sizeof in);
    in.struct_size = offsetof(qkv_adamw, eps);
    in.beta1 = 0.5f;
    in.beta2 = 0.6f;
    in.eps = 123.0f; /* past struct_size: not read */
    CHECK_OK(QKV__STRUCT_IN(qkv_adamw, &loc, &in, &defs, "test"));
    CHECK_EQ_INT(loc.struct_size, sizeof loc);
    CHECK(loc.beta1 == 0.5f && loc.beta2 == 0.6f && loc.eps == 1e-8f && loc.weight_decay == 0.01f);
    CHECK_OK(QKV__STRUCT_IN(qkv_adamw, &loc, NULL, &defs, "test"));
    CHECK(memcmp(&loc, &defs, sizeof loc) == 0);
}

/* The public functions reading and writing them, on the tiny fixtures. */
static void test_generate(void) {
    qkv_lm *lm = NULL;
    CHECK_OK(qkv_lm_load(QKV_SOURCE_DIR "/tests/fixtures/models/llama_tiny", &lm));
    if (!lm) return;
    const int32_t ids[3] = {1, 2, 3};
    const int64_t len = 3;
    enum { M = 4 };
    int32_t ref[M], out[M];
    qkv_sampling o;
    memset(&o, 0, sizeof o);
    o.max_new_tokens = M;
    CHECK_OK(qkv_lm_generate_tokens(NULL, lm, ids, &len, 1, &o, NULL, NULL, ref, NULL, NULL));
    /* older and shorter: overflow (past struct_size, set to garbage) is not read */
    o.struct_size = offsetof(qkv_sampling, overflow);
    o.overflow = (qkv_context_overflow)77;
    CHECK_OK(qkv_lm_generate_tokens(NULL, lm, ids, &len, 1, &o, NULL, NULL, out, NULL, NULL));
    CHECK(memcmp(out, ref, sizeof out) == 0);
    o.struct_size = sizeof o; /* now it is read, and refused */
    CHECK_STATUS(qkv_lm_generate_tokens(NULL, lm, ids, &len, 1, &o, NULL, NULL, out, NULL, NULL),
                 QKV_ERR_INVALID_ARG);
    o.overflow = QKV_CONTEXT_REFUSE;
    struct {
        qkv_sampling s;
        uint64_t future;
    } big;
    memset(&big, 0, sizeof big);
    big.s = o;
    big.s.struct_size = sizeof big;
    CHECK_OK(qkv_lm_generate_tokens(NULL, lm, ids, &len, 1, &big.s, NULL, NULL, out, NULL, NULL));
    CHECK(memcmp(out, ref, sizeof out) == 0);
    big.future = 1;
    CHECK_STATUS(
        qkv_lm_generate_tokens(NULL, lm, ids, &len, 1, &big.s, NULL, NULL, out, NULL, NULL),
        QKV_ERR_INVALID_ARG);
    CHECK(strstr(qkv_last_error(), "qkv_lm_generate_tokens: opts") != NULL);
    /* stats: an older, shorter struct is written up to its size only */
    qkv_generate_stats st;
    memset(&st, 0x77, sizeof st);
    st.struct_size = offsetof(qkv_generate_stats, prefill_seconds);
    CHECK_OK(qkv_lm_generate_tokens(NULL, lm, ids, &len, 1, &o, NULL, NULL, out, NULL, &st));
    CHECK_EQ_INT(st.prefill_tokens, 3);
    CHECK_EQ_INT(st.decode_tokens, M - 1);
    unsigned char canary[sizeof st.prefill_seconds];
    memset(canary, 0x77, sizeof canary);
    CHECK(memcmp(&st.prefill_seconds, canary, sizeof canary) == 0);
    CHECK(memcmp(&st.decode_seconds, canary, sizeof canary) == 0);
    qkv_generate_stats st0 = {.struct_size = 0};
    CHECK_OK(qkv_lm_generate_tokens(NULL, lm, ids, &len, 1, &o, NULL, NULL, out, NULL, &st0));
    CHECK(st0.prefill_seconds >= 0 && st0.decode_tokens == M - 1);
    qkv_lm_free(lm);
}

static void test_tokenizer_options(void) {
    qkv_tokenizer *t = NULL;
    CHECK_OK(qkv_tokenizer_load(QKV_SOURCE_DIR "/tests/fixtures/tokenizer/minilm", &t));
    if (!t) return;
    const char text[] = "hello world";
    qkv_encoding *ref = NULL, *e = NULL;
    CHECK_OK(qkv_tokenizer_encode(t, text, strlen(text), NULL, 0, NULL, &ref));
    /* older and shorter: the missing tail takes the tokenizer's defaults */
    qkv_encode_options o;
    memset(&o, 0, sizeof o);
    o.struct_size = offsetof(qkv_encode_options, max_length);
    o.add_special_tokens = 1;
    o.pad_to = 99; /* past struct_size: not read */
    CHECK_OK(qkv_tokenizer_encode(t, text, strlen(text), NULL, 0, &o, &e));
    CHECK(e && ref && e->n == ref->n && memcmp(e->ids, ref->ids, ref->n * sizeof *e->ids) == 0);
    qkv_encoding_free(e);
    e = NULL;
    struct {
        qkv_encode_options o;
        int64_t future;
    } big;
    memset(&big, 0, sizeof big);
    qkv_tokenizer_default_options(t, &big.o);
    big.o.struct_size = sizeof big;
    big.future = -1;
    CHECK_STATUS(qkv_tokenizer_encode(t, text, strlen(text), NULL, 0, &big.o, &e),
                 QKV_ERR_INVALID_ARG);
    CHECK(e == NULL);
    CHECK(strstr(qkv_last_error(), "struct_size") != NULL);
    /* qkv_data_prepare refuses the same before touching any file */
    struct {
        qkv_data_options o;
        int64_t future;
    } dbig;
    memset(&dbig, 0, sizeof dbig);
    qkv_data_default_options(&dbig.o);
    dbig.o.struct_size = sizeof dbig;
    dbig.future = 1;
    const char *files[] = {QKV_SOURCE_DIR "/tests/fixtures/tokenizer/corpus.meta"};
    qkv_data_stats st = {.struct_size = sizeof st};
    CHECK_STATUS(qkv_data_prepare(t, files, 1, &dbig.o, QKV_BINARY_DIR "/abi_never_written", &st,
                                  NULL, NULL),
                 QKV_ERR_INVALID_ARG);
    CHECK(strstr(qkv_last_error(), "qkv_data_prepare: opts") != NULL);
    qkv_encoding_free(ref);
    qkv_tokenizer_free(t);
}

int main(void) {
    test_attention_desc();
    test_lr_schedule();
    test_defaults_and_outputs();
    test_generate();
    test_tokenizer_options();
    return test_finish("core_abi");
}
