/* bench_generate.c — prefill and decode tokens/s of qkv_lm_generate_tokens on a GPT-2-124M
 * shaped and a Llama-shaped (~125M parameters, GQA 12/4, untied head) model with random
 * weights.
 *
 *   bench_generate [--threads N] [--prompt T] [--new M] [--reps R] [--only gpt2|llama]
 *                  [--keep DIR | --dir DIR] [--dtype f32|bf16|f16|int8] [--ab]
 *
 * Each model is written once as a temporary Hugging Face directory (config.json + F32
 * model.safetensors under $TMPDIR) and loaded through the public API, so the measured path is
 * the real one. One JSON line per model: prefill tokens/s (the batched prompt pass, B = 1,
 * T tokens) and decode tokens/s (one token per step, greedy, M steps after the prompt), medians
 * of R runs. tools/bench_hf_generate.py measures Hugging Face generate on the same shapes.
 * --keep DIR writes the models to DIR/<name> and keeps them (to convert the very same weights
 * for a peer such as llama.cpp); --dir DIR loads the ones a --keep wrote. --dtype: the linear
 * layers' dtype (qkv_model_options). --ab: an A/B of the decode step in one region
 * (QKV_DECODE_REGION=1) against the layer-by-layer step (=0) in one process, the two
 * alternating run by run (ABBA...), so that both see the same machine load; one JSON line per
 * model with both medians and the range of the per-pair ratios. */
#include "bench_util.h"
#include "qkv.h"

#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    const char *name;
    int llama;
    int64_t V, C, L, H, Hk, F, P;
} shape;

static const shape SHAPES[] = {
    {"gpt2-124m", 0, 50257, 768, 12, 12, 12, 3072, 1024},
    {"llama-125m", 1, 32000, 768, 12, 12, 4, 2048, 2048},
};

/* Tensors of one model; names point into a static pool, data into one allocation. */
typedef struct {
    qkv_st_write_tensor t[512];
    int64_t shapes[512][2];
    char names[512][96];
    size_t n;
    float *data;
    size_t used, cap;
} builder;

static void add(builder *b, const char *name, int64_t d0, int64_t d1, float scale, float offset) {
    size_t i = b->n++;
    snprintf(b->names[i], sizeof b->names[i], "%s", name);
    b->shapes[i][0] = d0;
    b->shapes[i][1] = d1;
    size_t n = (size_t)d0 * (size_t)(d1 ? d1 : 1);
    float *x = b->data + b->used;
    bench_fill(x, n, 1000 + i);
    for (size_t j = 0; j < n; j++) x[j] = x[j] * scale + offset;
    b->used += n;
    b->t[i] = (qkv_st_write_tensor){b->names[i], QKV_DTYPE_F32, d1 ? 2 : 1, b->shapes[i], x};
}

static size_t n_params(const shape *s) {
    size_t C = (size_t)s->C, F = (size_t)s->F, K = (size_t)(s->Hk * (s->C / s->H));
    size_t layer =
        s->llama ? 2 * C * C + 2 * C * K + 3 * C * F + 2 * C : 4 * C * C + 2 * C * F + 9 * C + F;
    return (size_t)s->V * C * (s->llama ? 2 : 1) + (s->llama ? 0 : (size_t)s->P * C) +
           (size_t)s->L * layer + 2 * C;
}

static int write_model(const shape *s, const char *dir) {
    builder *b = calloc(1, sizeof *b);
    b->cap = n_params(s);
    b->data = malloc(b->cap * sizeof(float));
    if (!b->data) return 1;
    const int64_t C = s->C, F = s->F, K = s->Hk * (s->C / s->H);
    const float w = 0.02f;
    char n[96];
    if (!s->llama) {
        add(b, "transformer.wte.weight", s->V, C, w, 0);
        add(b, "transformer.wpe.weight", s->P, C, w, 0);
        for (int64_t l = 0; l < s->L; l++) {
#define T(suffix, d0, d1, sc, off)                                                                 \
    snprintf(n, sizeof n, "transformer.h.%lld.%s", (long long)l, suffix);                          \
    add(b, n, d0, d1, sc, off)
            T("ln_1.weight", C, 0, 0.1f, 1);
            T("ln_1.bias", C, 0, w, 0);
            T("attn.c_attn.weight", C, 3 * C, w, 0);
            T("attn.c_attn.bias", 3 * C, 0, w, 0);
            T("attn.c_proj.weight", C, C, w, 0);
            T("attn.c_proj.bias", C, 0, w, 0);
            T("ln_2.weight", C, 0, 0.1f, 1);
            T("ln_2.bias", C, 0, w, 0);
            T("mlp.c_fc.weight", C, F, w, 0);
            T("mlp.c_fc.bias", F, 0, w, 0);
            T("mlp.c_proj.weight", F, C, w, 0);
            T("mlp.c_proj.bias", C, 0, w, 0);
#undef T
        }
        add(b, "transformer.ln_f.weight", C, 0, 0.1f, 1);
        add(b, "transformer.ln_f.bias", C, 0, w, 0);
    } else {
        add(b, "model.embed_tokens.weight", s->V, C, w, 0);
        for (int64_t l = 0; l < s->L; l++) {
#define T(suffix, d0, d1, sc, off)                                                                 \
    snprintf(n, sizeof n, "model.layers.%lld.%s", (long long)l, suffix);                           \
    add(b, n, d0, d1, sc, off)
            T("input_layernorm.weight", C, 0, 0.1f, 1);
            T("self_attn.q_proj.weight", C, C, w, 0);
            T("self_attn.k_proj.weight", K, C, w, 0);
            T("self_attn.v_proj.weight", K, C, w, 0);
            T("self_attn.o_proj.weight", C, C, w, 0);
            T("post_attention_layernorm.weight", C, 0, 0.1f, 1);
            T("mlp.gate_proj.weight", F, C, w, 0);
            T("mlp.up_proj.weight", F, C, w, 0);
            T("mlp.down_proj.weight", C, F, w, 0);
#undef T
        }
        add(b, "model.norm.weight", C, 0, 0.1f, 1);
        add(b, "lm_head.weight", s->V, C, w, 0);
    }
    char path[600];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    qkv_status st = qkv_safetensors_write(path, b->t, b->n, NULL, NULL, 0);
    free(b->data);
    free(b);
    if (st != QKV_OK) {
        fprintf(stderr, "write %s: %s\n", path, qkv_last_error());
        return 1;
    }
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) return 1;
    if (!s->llama)
        fprintf(f,
                "{\"model_type\":\"gpt2\",\"vocab_size\":%lld,\"n_embd\":%lld,\"n_layer\":%lld,"
                "\"n_head\":%lld,\"n_positions\":%lld,\"activation_function\":\"gelu_new\"}\n",
                (long long)s->V, (long long)s->C, (long long)s->L, (long long)s->H,
                (long long)s->P);
    else
        fprintf(f,
                "{\"model_type\":\"llama\",\"vocab_size\":%lld,\"hidden_size\":%lld,"
                "\"num_hidden_layers\":%lld,\"num_attention_heads\":%lld,"
                "\"num_key_value_heads\":%lld,\"intermediate_size\":%lld,"
                "\"max_position_embeddings\":%lld,\"rope_theta\":10000.0,"
                "\"tie_word_embeddings\":false}\n",
                (long long)s->V, (long long)s->C, (long long)s->L, (long long)s->H,
                (long long)s->Hk, (long long)s->F, (long long)s->P);
    fclose(f);
    return 0;
}

static void remove_model(const char *dir) {
    char path[600];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    remove(path);
    snprintf(path, sizeof path, "%s/config.json", dir);
    remove(path);
    rmdir(dir);
}

int main(int argc, char **argv) {
    const int threads = (int)bench_int_opt(argc, argv, "--threads", 0);
    const int64_t T = bench_int_opt(argc, argv, "--prompt", 128);
    const int64_t M = bench_int_opt(argc, argv, "--new", 128);
    const int reps = (int)bench_int_opt(argc, argv, "--reps", 3);
    const char *only = NULL, *keep = NULL, *from = NULL, *dtname = "f32";
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], "--only") == 0) only = argv[i + 1];
        if (strcmp(argv[i], "--keep") == 0) keep = argv[i + 1];
        if (strcmp(argv[i], "--dir") == 0) from = argv[i + 1];
        if (strcmp(argv[i], "--dtype") == 0) dtname = argv[i + 1];
    }
    const int ab = bench_has_flag(argc, argv, "--ab");
    static const struct {
        const char *name;
        qkv_dtype dt;
    } DTYPES[] = {{"f32", QKV_DTYPE_F32},
                  {"bf16", QKV_DTYPE_BF16},
                  {"f16", QKV_DTYPE_F16},
                  {"int8", QKV_DTYPE_I8}};
    const qkv_model_options mo0 = {.struct_size = sizeof mo0};
    qkv_model_options mo = mo0;
    size_t di = 0;
    while (di < 4 && strcmp(dtname, DTYPES[di].name) != 0) di++;
    if (di == 4) {
        fprintf(stderr, "--dtype: f32, bf16, f16 or int8, not %s\n", dtname);
        return 2;
    }
    mo.dtype = DTYPES[di].dt;
    qkv_runtime *rt = NULL;
    if (qkv_runtime_create(threads, &rt) != QKV_OK) return 1;
    for (size_t k = 0; k < sizeof SHAPES / sizeof *SHAPES; k++) {
        const shape *s = &SHAPES[k];
        if (only && !strstr(s->name, only)) continue;
        const char *tmp = getenv("TMPDIR");
        char dir[512];
        snprintf(dir, sizeof dir, "%s/qkv_bench_gen_XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (keep || from) {
            snprintf(dir, sizeof dir, "%s/%s", from ? from : keep, s->name);
            if (keep) mkdir(keep, 0755), mkdir(dir, 0755);
        }
        if (!from && ((!keep && !mkdtemp(dir)) || write_model(s, dir))) return 1;
        const int own = !keep && !from; /* a temporary directory */
        qkv_lm *lm = NULL;
        if (qkv_lm_load_opts(dir, &mo, &lm) != QKV_OK) {
            fprintf(stderr, "load: %s\n", qkv_last_error());
            if (own) remove_model(dir);
            return 1;
        }
        int32_t *ids = malloc(sizeof(int32_t) * (size_t)T);
        for (int64_t t = 0; t < T; t++) ids[t] = (int32_t)((t * 7919 + 13) % s->V);
        qkv_sampling o;
        memset(&o, 0, sizeof o);
        o.max_new_tokens = M + 1; /* M decode steps after the prompt pass */
        double pre[32], dec[32], ratio[16];
        int r = 0;
        /* --ab: run 2i and 2i+1 are one pair, region first in even pairs (ABBA...) */
        const int runs = ab ? 2 * (reps < 16 ? reps : 16) : (reps < 16 ? reps : 16);
        if (ab) { /* a warm-up run: the first one pays for page faults and cold caches */
            qkv_generate_stats st = {.struct_size = sizeof st};
            (void)qkv_lm_generate_tokens(rt, lm, ids, &T, 1, &o, NULL, NULL, NULL, NULL, &st);
        }
        for (; r < runs; r++) {
            const int region = (r & 1) == ((r >> 1) & 1); /* --ab: A B B A A B ... */
            if (ab) setenv("QKV_DECODE_REGION", region ? "1" : "0", 1);
            qkv_generate_stats st = {.struct_size = sizeof st};
            if (qkv_lm_generate_tokens(rt, lm, ids, &T, 1, &o, NULL, NULL, NULL, NULL, &st) !=
                QKV_OK) {
                fprintf(stderr, "generate: %s\n", qkv_last_error());
                break;
            }
            /* --ab: region runs at even indices, layer-by-layer ones at odd */
            const int k = ab ? 2 * (r >> 1) + !region : r;
            pre[k] = (double)st.prefill_tokens / st.prefill_seconds;
            dec[k] = (double)st.decode_tokens / st.decode_seconds;
        }
        if (ab) unsetenv("QKV_DECODE_REGION");
        if (ab && r == runs) {
            const int n = runs / 2;
            double a[16], b[16], lo = 1e30, hi = 0;
            for (int i = 0; i < n; i++) {
                a[i] = dec[2 * i], b[i] = dec[2 * i + 1], ratio[i] = a[i] / b[i];
                lo = ratio[i] < lo ? ratio[i] : lo, hi = ratio[i] > hi ? ratio[i] : hi;
            }
            printf("{\"bench\":\"generate_ab\",\"model\":\"%s\",\"dtype\":\"%s\","
                   "\"threads\":%d,\"prompt\":%lld,\"new\":%lld,\"pairs\":%d,"
                   "\"decode_tok_s_region\":%.2f,\"decode_tok_s_layer\":%.2f,"
                   "\"ratio_median\":%.3f,\"ratio_min\":%.3f,\"ratio_max\":%.3f}\n",
                   s->name, dtname, qkv_runtime_n_threads(rt), (long long)T, (long long)M, n,
                   bench_median(a, n), bench_median(b, n), bench_median(ratio, n), lo, hi);
        } else if (!ab && r > 0)
            printf("{\"bench\":\"generate\",\"impl\":\"qkv\",\"model\":\"%s\",\"params_m\":%.1f,"
                   "\"threads\":%d,\"isa\":\"%s\",\"prompt\":%lld,\"new\":%lld,"
                   "\"prefill_tok_s\":%.1f,\"decode_tok_s\":%.2f}\n",
                   s->name, (double)n_params(s) / 1e6, qkv_runtime_n_threads(rt),
                   qkv_arch_name(qkv_arch_active()), (long long)T, (long long)M,
                   bench_median(pre, r), bench_median(dec, r));
        fflush(stdout);
        free(ids);
        qkv_lm_free(lm);
        if (own) remove_model(dir);
    }
    qkv_runtime_free(rt);
    return 0;
}
