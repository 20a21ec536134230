/* gemm_i8_avx512.c — the avx512 level's int8 GEMM config (kernels/gemm_i8.h): the kernel
 * qkv__gemm_i8_selected() names (AMX tiles by default) where the build has it
 * (QKV_HAVE_AMX_INT8, QKV_HAVE_AVX512VNNI) and the CPU too (qkv_cpu_features), else vpdpbusd
 * where the CPU has AVX512_VNNI, else the avx2 kernel (exact all the same: every int8 kernel
 * gives the same bits). */
#include "core/cpu.h"
#include "kernels/gemm_i8.h"

void qkv__gemm_i8_config_avx512(qkv_gemm_i8_config *cfg) {
    const int want = qkv__gemm_i8_selected();
    (void)want;
#if QKV_HAVE_AMX_INT8
    if (want == QKV_I8_AMX && (qkv_cpu_features() & QKV_CPU_AMX_INT8)) {
        qkv__gemm_i8_config_amx(cfg);
        return;
    }
#endif
#if QKV_HAVE_AVX512VNNI
    if (want != QKV_I8_WIDE && (qkv_cpu_features() & QKV_CPU_AVX512VNNI)) {
        qkv__gemm_i8_config_avx512vnni(cfg);
        return;
    }
#endif
    qkv__gemm_i8_config_avx2(cfg);
}
