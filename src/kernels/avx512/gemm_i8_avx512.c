/* gemm_i8_avx512.c — the avx512 level's int8 GEMM config (kernels/gemm_i8.h): the vpdpbusd
 * kernel when the build has it (QKV_HAVE_AVX512VNNI) and CPUID reports AVX512_VNNI, else the
 * avx2 kernel (exact all the same: every int8 kernel gives the same bits). */
#include "core/cpu.h"
#include "kernels/gemm_i8.h"

void qkv__gemm_i8_config_avx512(qkv_gemm_i8_config *cfg) {
#if QKV_HAVE_AVX512VNNI
    if (qkv_cpu_features() & QKV_CPU_AVX512VNNI) {
        qkv__gemm_i8_config_avx512vnni(cfg);
        return;
    }
#endif
    qkv__gemm_i8_config_avx2(cfg);
}
