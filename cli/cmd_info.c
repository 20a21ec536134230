/* cmd_info.c — `qkv info`: version, build, CPU features, active ISA, kernels, threads. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

void cmd_info_help(void) {
    printf("Usage: qkv info [--json]\n\n"
           "Print the version, build options, the CPU features detected (CPUID + XGETBV), the\n"
           "instruction set in use (QKV_ARCH overrides it), the kernel chosen for each op and the\n"
           "default thread count (QKV_NUM_THREADS overrides it), and how this CPU runs each\n"
           "weight dtype (native: instructions on the dtype itself; converted: widened).\n\n"
           "Options:\n  --json   one JSON object instead of text\n");
}

static const struct {
    unsigned bit;
    const char *name;
} feature_names[] = {
    {QKV_CPU_SSE42, "sse4.2"},
    {QKV_CPU_AVX, "avx"},
    {QKV_CPU_AVX2, "avx2"},
    {QKV_CPU_FMA, "fma"},
    {QKV_CPU_F16C, "f16c"},
    {QKV_CPU_AVX512F, "avx512f"},
    {QKV_CPU_AVX512BW, "avx512bw"},
    {QKV_CPU_AVX512VL, "avx512vl"},
    {QKV_CPU_AVX512DQ, "avx512dq"},
    {QKV_CPU_AVX512VNNI, "avx512vnni"},
    {QKV_CPU_AVX512BF16, "avx512bf16"},
    {QKV_CPU_AVX512FP16, "avx512fp16"},
    {QKV_CPU_AMX_BF16, "amx_bf16"},
    {QKV_CPU_AMX_INT8, "amx_int8"},
};

/* How this CPU runs each weight dtype, from its features: "native" when it has instructions
 * that compute on the dtype itself, else how it is converted. Models run what --dtype names
 * (f32, bf16, f16 or int8; bf16 and int8 on AMX tiles where the CPU has them, f16 and bf16
 * otherwise on the widening kernels by default, docs/PERFORMANCE.md). */
static void dtype_support(unsigned f, const char *out[4]) {
    out[0] = "native";
    out[1] = (f & QKV_CPU_AMX_BF16)     ? "native (amx_bf16 tiles)"
             : (f & QKV_CPU_AVX512BF16) ? "native (avx512_bf16)"
             : (f & QKV_CPU_AVX2)       ? "converted (widened to f32 in registers)"
                                        : "converted (widened to f32)";
    out[2] = (f & QKV_CPU_AVX512FP16) ? "native (avx512_fp16)"
             : (f & QKV_CPU_F16C)     ? "converted (f16c)"
                                      : "converted (software)";
    out[3] = (f & QKV_CPU_AMX_INT8)     ? "native (amx_int8 tiles)"
             : (f & QKV_CPU_AVX512VNNI) ? "native (avx512_vnni)"
             : (f & QKV_CPU_AVX2)       ? "native (avx2 vpmaddwd)"
                                        : "converted (software)";
}

int cmd_info(int argc, char **argv) {
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = 1;
        else
            return cli_usage_error("info", "unknown option '%s'", argv[i]);
    }
    unsigned f = qkv_cpu_features();
    const char *note = qkv_arch_env_note();
    int threads = qkv_runtime_n_threads(NULL);
    size_t nf = sizeof feature_names / sizeof feature_names[0];
    if (json) {
        printf("{\"version\":\"%s\",\"build\":\"%s\",\"cpu_features\":[", qkv_version(),
               qkv_build_info());
        int first = 1;
        for (size_t i = 0; i < nf; i++)
            if (f & feature_names[i].bit) {
                printf("%s\"%s\"", first ? "" : ",", feature_names[i].name);
                first = 0;
            }
        printf("],\"arch_best\":\"%s\",\"arch_active\":\"%s\",\"kernels\":{",
               qkv_arch_name(qkv_arch_best()), qkv_arch_name(qkv_arch_active()));
        const char *op, *isa;
        for (size_t i = 0; qkv_kernel_info(i, &op, &isa); i++)
            printf("%s\"%s\":\"%s\"", i ? "," : "", op, isa);
        const char *d[4];
        dtype_support(f, d);
        printf("},\"threads\":%d,\"dtypes\":{\"f32\":\"%s\",\"bf16\":\"%s\",\"f16\":\"%s\","
               "\"int8\":\"%s\"},\"model_dtypes\":[\"f32\",\"bf16\",\"f16\",\"int8\"]}\n",
               threads, d[0], d[1], d[2], d[3]);
        return EXIT_OK;
    }
    printf("qkv %s\n", qkv_version());
    printf("build:        %s\n", qkv_build_info());
    printf("cpu features:");
    for (size_t i = 0; i < nf; i++)
        if (f & feature_names[i].bit) printf(" %s", feature_names[i].name);
    printf("\narch:         %s (best available: %s)\n", qkv_arch_name(qkv_arch_active()),
           qkv_arch_name(qkv_arch_best()));
    if (note) printf("note:         %s\n", note);
    const char *d[4];
    dtype_support(f, d);
    printf("threads:      %d\n", threads);
    printf("dtypes:       f32 %s; bf16 %s; f16 %s; int8 %s\n", d[0], d[1], d[2], d[3]);
    printf("model dtypes: f32 (default), bf16, f16, int8 (--dtype; bf16 on AMX tiles where the\n"
           "              CPU has them, activations rounded to bf16, else widened to f32 in the\n"
           "              GEMM (QKV_BF16_KERNEL=amx|dpbf16|plain chooses); f16 widened to f32;\n"
           "              int8 on AMX tiles where the CPU has them, else vpdpbusd with\n"
           "              avx512_vnni, else vpmaddwd (QKV_I8_KERNEL=amx|vnni|avx2 chooses))\n");
    printf("kernels:\n");
    const char *op, *isa;
    for (size_t i = 0; qkv_kernel_info(i, &op, &isa); i++) printf("  %-20s %s\n", op, isa);
    return EXIT_OK;
}
