/* cpu.h — internal CPU helpers. QKV_HAVE_AVX2 / QKV_HAVE_AVX512 are set by the build when the
 * ISA's kernel files are compiled in (x86-64 with a compiler that accepts the flags). */
#ifndef QKV_CORE_CPU_H
#define QKV_CORE_CPU_H

#include "qkv.h"

#ifndef QKV_HAVE_AVX2
#define QKV_HAVE_AVX2 0
#endif
#ifndef QKV_HAVE_AVX512
#define QKV_HAVE_AVX512 0
#endif
#ifndef QKV_HAVE_AVX512BF16 /* the vdpbf16ps GEMM kernel is compiled in */
#define QKV_HAVE_AVX512BF16 0
#endif
#ifndef QKV_HAVE_AVX512VNNI /* the vpdpbusd int8 GEMM kernel is compiled in */
#define QKV_HAVE_AVX512VNNI 0
#endif

#ifndef QKV_HAVE_AMX /* the AMX GEMM kernels are compiled in */
#define QKV_HAVE_AMX 0
#endif
#ifndef QKV_HAVE_AMX_INT8 /* the AMX int8 GEMM kernel (tdpbssd) is compiled in */
#define QKV_HAVE_AMX_INT8 0
#endif

/* The AMX tile configuration loaded on this thread (kernels/avx512/amx.h: QKV_AMX_CFG_*). */
extern _Thread_local int qkv__amx_config;

/* 1 if the CPU and this build can run ISA a. */
int qkv__arch_supported(qkv_arch a);

#endif
