/* version.c — library version and a one-line description of the build. */
#include "core/cpu.h"
#include "qkv.h"

#include <stdio.h>

#ifndef QKV_BUILD_TYPE
#define QKV_BUILD_TYPE "unknown"
#endif
#ifndef QKV_SANITIZE_FLAGS
#define QKV_SANITIZE_FLAGS ""
#endif
#ifndef QKV_WITH_CBLAS
#define QKV_WITH_CBLAS 0
#endif

const char *qkv_version(void) { return QKV_VERSION_STRING; }

const char *qkv_build_info(void) {
    static char buf[256];
    if (!buf[0]) {
        const char *san = QKV_SANITIZE_FLAGS;
        snprintf(
            buf, sizeof buf,
            "build %s; compiler %s %s; sanitizers %s; cblas %s; isa kernels scalar%s%s%s%s%s%s",
            QKV_BUILD_TYPE,
#if defined(__clang__)
            "clang",
#elif defined(__GNUC__)
            "gcc",
#else
            "cc",
#endif
            __VERSION__, san[0] ? san : "none", QKV_WITH_CBLAS ? "on" : "off",
            QKV_HAVE_AVX2 ? " avx2" : "", QKV_HAVE_AVX512 ? " avx512" : "",
            QKV_HAVE_AVX512BF16 ? " avx512bf16" : "", QKV_HAVE_AVX512VNNI ? " avx512vnni" : "",
            QKV_HAVE_AMX ? " amx" : "", QKV_HAVE_AMX_INT8 ? " amx_int8" : "");
    }
    return buf;
}
