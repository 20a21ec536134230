/* dispatch.c — merges the per-ISA kernel tables and serves the active one (see dispatch.h).
 *
 * The merged tables are built once (pthread_once) and never change afterwards, so readers need
 * no locks; switching ISA only changes which of them qkv__kernels() returns. Every member of
 * qkv_kernels is a function pointer of the same size, so the merge walks the struct by offset
 * through a generic function-pointer type (this holds on every platform qkv targets). */
#include "kernels/dispatch.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef void (*any_fn)(void);

/* The name of every op, in struct order: what qkv_kernel_info and `qkv info` report. */
#define OP(name)                                                                                   \
    { #name, offsetof(qkv_kernels, name) }
static const struct {
    const char *name;
    size_t offset;
} ops[] = {
    OP(convert_f16_f32),
    OP(convert_f32_f16),
    OP(convert_bf16_f32),
    OP(convert_f32_bf16),
    OP(gemm_f32_config),
    OP(fma_peak_loop),
    OP(attn_f32_config),
    OP(exp_f32),
    OP(act_f32),
    OP(act_bwd_f32),
    OP(softmax_f32),
    OP(softmax_bwd_f32),
    OP(log_softmax_f32),
    OP(log_softmax_bwd_f32),
    OP(layernorm_f32),
    OP(layernorm_bwd_f32),
    OP(rmsnorm_f32),
    OP(rmsnorm_bwd_f32),
    OP(gemm_bf16_config),
    OP(gemm_f16_config),
    OP(attn_decode_f32),
    OP(log_softmax_stats_f32),
    OP(log_softmax_topk_f32),
    OP(gemm_i8_config),
    OP(epilogue_row_f32),
};
#undef OP
#define N_OPS (sizeof ops / sizeof ops[0])
_Static_assert(sizeof(qkv_kernels) == N_OPS * sizeof(any_fn),
               "every member of qkv_kernels needs its name in ops[]");

/* The ISA tables, lowest first; the merged table of ISA a overlays all layers with arch <= a. */
static const struct {
    qkv_arch arch;
    const qkv_kernels *table;
} layers[] = {
    {QKV_ARCH_SCALAR, &qkv__kernels_ref},
#if QKV_HAVE_AVX2
    {QKV_ARCH_AVX2, &qkv__kernels_avx2},
#endif
#if QKV_HAVE_AVX512
    {QKV_ARCH_AVX512, &qkv__kernels_avx512},
#endif
};

#define N_ARCH 3 /* QKV_ARCH_SCALAR .. QKV_ARCH_AVX512 */
static qkv_kernels merged[N_ARCH];
static const char *merged_isa[N_ARCH][N_OPS]; /* ISA name of each op's implementation */
static pthread_once_t merged_once = PTHREAD_ONCE_INIT;

static any_fn get_op(const qkv_kernels *t, size_t offset) {
    any_fn f;
    memcpy(&f, (const char *)t + offset, sizeof f);
    return f;
}

static void set_op(qkv_kernels *t, size_t offset, any_fn f) {
    memcpy((char *)t + offset, &f, sizeof f);
}

static void merge(void) {
    for (int a = 0; a < N_ARCH; a++)
        for (size_t l = 0; l < sizeof layers / sizeof layers[0]; l++) {
            if ((int)layers[l].arch > a) continue;
            for (size_t i = 0; i < N_OPS; i++) {
                any_fn f = get_op(layers[l].table, ops[i].offset);
                if (!f) continue;
                set_op(&merged[a], ops[i].offset, f);
                merged_isa[a][i] = qkv_arch_name(layers[l].arch);
            }
        }
}

static unsigned active_index(void) {
    pthread_once(&merged_once, merge);
    unsigned a = (unsigned)qkv_arch_active();
    return a < N_ARCH ? a : 0;
}

const qkv_kernels *qkv__kernels(void) { return &merged[active_index()]; }

int qkv_kernel_info(size_t i, const char **op, const char **isa) {
    if (i >= N_OPS) return 0;
    unsigned a = active_index();
    if (op) *op = ops[i].name;
    if (isa) *isa = merged_isa[a][i];
    return 1;
}

static int choice_from_env(const qkv__kernel_choice *c) {
    const char *env = getenv(c->env);
    for (int v = 0; env && v < c->n; v++)
        if (strcmp(env, c->names[v]) == 0) return v;
    return c->dflt;
}

void qkv__choice_set(qkv__kernel_choice *c, int v) {
    __atomic_store_n(&c->value, v >= 0 && v < c->n ? v : choice_from_env(c), __ATOMIC_RELAXED);
}

int qkv__choice_get(qkv__kernel_choice *c) {
    int v = __atomic_load_n(&c->value, __ATOMIC_RELAXED);
    if (v >= 0) return v;
    int want = choice_from_env(c), unset = -2;
    __atomic_compare_exchange_n(&c->value, &unset, want, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    return __atomic_load_n(&c->value, __ATOMIC_RELAXED);
}
