/* cpu.c — CPU feature detection (CPUID + XGETBV) and the active instruction set.
 *
 * An ISA is usable only if the CPU reports it and the OS saves its registers (XCR0): AVX needs
 * XMM|YMM state, AVX-512 additionally opmask|ZMM_Hi256|Hi16_ZMM. The active ISA is chosen once
 * (QKV_ARCH overrides it) and can be forced by qkv_arch_set for tests. */
#include "core/cpu.h"
#include "core/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

static uint64_t xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static int amx_permitted(void) {
#if defined(__linux__) && defined(SYS_arch_prctl)
    return syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XTILEDATA */) == 0;
#else
    return 0;
#endif
}

static unsigned detect(void) {
    unsigned a, b, c, d, f = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    if (c & bit_SSE4_2) f |= QKV_CPU_SSE42;
    int osxsave = (c & bit_OSXSAVE) != 0;
    int avx = (c & bit_AVX) != 0, fma = (c & bit_FMA) != 0, f16c = (c & bit_F16C) != 0;
    uint64_t xcr0 = osxsave ? xgetbv0() : 0;
    int ymm_ok = (xcr0 & 0x6) == 0x6;
    int zmm_ok = ymm_ok && (xcr0 & 0xe0) == 0xe0;
    if (!ymm_ok) return f;
    if (avx) f |= QKV_CPU_AVX;
    if (fma) f |= QKV_CPU_FMA;
    if (f16c) f |= QKV_CPU_F16C;
    unsigned max_leaf = __get_cpuid_max(0, NULL);
    if (max_leaf < 7) return f;
    __cpuid_count(7, 0, a, b, c, d);
    if (b & bit_AVX2) f |= QKV_CPU_AVX2;
    if (zmm_ok) {
        if (b & bit_AVX512F) f |= QKV_CPU_AVX512F;
        if (b & bit_AVX512BW) f |= QKV_CPU_AVX512BW;
        if (b & bit_AVX512VL) f |= QKV_CPU_AVX512VL;
        if (b & bit_AVX512DQ) f |= QKV_CPU_AVX512DQ;
        if (c & (1u << 11)) f |= QKV_CPU_AVX512VNNI;
        if (d & (1u << 23)) f |= QKV_CPU_AVX512FP16;
        unsigned a1, b1, c1, d1;
        __cpuid_count(7, 1, a1, b1, c1, d1);
        (void)b1, (void)c1, (void)d1;
        if (a1 & (1u << 5)) f |= QKV_CPU_AVX512BF16;
    }
    /* AMX: tiles (EDX bit 24) with bf16 (22) / int8 (25), the OS enabling the tile state in
     * XCR0 (bits 17, 18), and on Linux the process's permission to use it, asked once here
     * (arch_prctl ARCH_REQ_XCOMP_PERM for XTILEDATA, feature 18; Linux >= 5.16). */
    if (zmm_ok && (d & (1u << 24)) && (xcr0 & 0x60000) == 0x60000 && amx_permitted()) {
        if (d & (1u << 22)) f |= QKV_CPU_AMX_BF16;
        if (d & (1u << 25)) f |= QKV_CPU_AMX_INT8;
    }
    return f;
}
#else
static unsigned detect(void) { return 0; }
#endif

_Thread_local int qkv__amx_config; /* kernels/avx512/amx.h */

static unsigned features;
static int features_done;
static int active = -1;

unsigned qkv_cpu_features(void) {
    if (!features_done) { /* idempotent: a race only computes the same value twice */
        features = detect();
        __atomic_store_n(&features_done, 1, __ATOMIC_RELEASE);
    }
    return features;
}

static int arch_supported(qkv_arch a) {
    unsigned f = qkv_cpu_features();
    switch (a) {
    case QKV_ARCH_SCALAR: return 1;
    case QKV_ARCH_AVX2:
#if QKV_HAVE_AVX2
        return (f & (QKV_CPU_AVX2 | QKV_CPU_FMA | QKV_CPU_F16C)) ==
               (QKV_CPU_AVX2 | QKV_CPU_FMA | QKV_CPU_F16C);
#else
        return 0;
#endif
    case QKV_ARCH_AVX512:
#if QKV_HAVE_AVX512
        return arch_supported(QKV_ARCH_AVX2) &&
               (f & (QKV_CPU_AVX512F | QKV_CPU_AVX512BW | QKV_CPU_AVX512VL | QKV_CPU_AVX512DQ)) ==
                   (QKV_CPU_AVX512F | QKV_CPU_AVX512BW | QKV_CPU_AVX512VL | QKV_CPU_AVX512DQ);
#else
        return 0;
#endif
    }
    return 0;
}

qkv_arch qkv_arch_best(void) {
    if (arch_supported(QKV_ARCH_AVX512)) return QKV_ARCH_AVX512;
    if (arch_supported(QKV_ARCH_AVX2)) return QKV_ARCH_AVX2;
    return QKV_ARCH_SCALAR;
}

const char *qkv_arch_name(qkv_arch a) {
    switch (a) {
    case QKV_ARCH_SCALAR: return "scalar";
    case QKV_ARCH_AVX2: return "avx2";
    case QKV_ARCH_AVX512: return "avx512";
    }
    return "?";
}

qkv_status qkv_arch_parse(const char *name, qkv_arch *out) {
    static const qkv_arch all[] = {QKV_ARCH_SCALAR, QKV_ARCH_AVX2, QKV_ARCH_AVX512};
    for (size_t i = 0; name && i < sizeof all / sizeof all[0]; i++)
        if (strcmp(name, qkv_arch_name(all[i])) == 0) {
            *out = all[i];
            return QKV_OK;
        }
    return qkv__fail(QKV_ERR_INVALID_ARG, "unknown instruction set '%s' (scalar, avx2, avx512)",
                     name ? name : "(null)");
}

const char *qkv_arch_env_note(void) {
    static char note[160];
    const char *env = getenv("QKV_ARCH");
    qkv_arch a;
    if (!env || !*env) return NULL;
    if (qkv_arch_parse(env, &a) != QKV_OK) {
        strcpy(note, "QKV_ARCH=");
        strncat(note, env, 40);
        strcat(note, " is not scalar|avx2|avx512; ignored");
        return note;
    }
    if (!arch_supported(a)) {
        strcpy(note, "QKV_ARCH=");
        strcat(note, qkv_arch_name(a));
        strcat(note, " is not supported by this CPU or build; using the best available");
        return note;
    }
    return NULL;
}

static qkv_arch choose(void) {
    static int warned; /* the warning once per process */
    const char *env = getenv("QKV_ARCH");
    const char *note = qkv_arch_env_note();
    /* an environment variable has no caller to return an error to: say it on stderr rather
     * than silently run another instruction set than the one asked for */
    if (note && !__atomic_exchange_n(&warned, 1, __ATOMIC_RELAXED))
        fprintf(stderr, "qkv: warning: %s\n", note);
    qkv_arch a;
    if (env && *env && qkv_arch_parse(env, &a) == QKV_OK && arch_supported(a)) return a;
    qkv_clear_error();
    return qkv_arch_best();
}

qkv_arch qkv_arch_active(void) {
    int a = __atomic_load_n(&active, __ATOMIC_ACQUIRE);
    if (a < 0) {
        a = (int)choose();
        __atomic_store_n(&active, a, __ATOMIC_RELEASE);
    }
    return (qkv_arch)a;
}

qkv_status qkv_arch_set(qkv_arch a) {
    if (!arch_supported(a))
        return qkv__fail(
            QKV_ERR_UNSUPPORTED, "instruction set %s is not supported by this %s", qkv_arch_name(a),
            a == QKV_ARCH_SCALAR || a == QKV_ARCH_AVX2 || a == QKV_ARCH_AVX512 ? "CPU or build"
                                                                               : "library");
    __atomic_store_n(&active, (int)a, __ATOMIC_RELEASE);
    return QKV_OK;
}

int qkv__arch_supported(qkv_arch a) { return arch_supported(a); }
