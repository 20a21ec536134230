/* test_core_cpu.c — feature detection is consistent, QKV_ARCH parsing and forcing. */
#include "core/cpu.h"
#include "qkv.h"
#include "test.h"

int main(void) {
    unsigned f = qkv_cpu_features();
    CHECK_EQ_INT(f, qkv_cpu_features()); /* stable */
    /* implications that hold on every real CPU */
    if (f & QKV_CPU_AVX512F) CHECK(f & QKV_CPU_AVX2);
    if (f & QKV_CPU_AVX2) CHECK(f & QKV_CPU_AVX);
    if (f & (QKV_CPU_AVX512BW | QKV_CPU_AVX512VL | QKV_CPU_AVX512VNNI)) CHECK(f & QKV_CPU_AVX512F);
#if defined(__AVX2__)
    CHECK(f & QKV_CPU_AVX2); /* the compiler targets it, so the CPU must have it */
#endif
    qkv_arch best = qkv_arch_best();
    printf("features 0x%x, best %s, active %s\n", f, qkv_arch_name(best),
           qkv_arch_name(qkv_arch_active()));
    CHECK(qkv__arch_supported(QKV_ARCH_SCALAR));
    CHECK(qkv__arch_supported(best));
    if (best == QKV_ARCH_AVX512) CHECK(qkv__arch_supported(QKV_ARCH_AVX2));

    qkv_arch a;
    CHECK_OK(qkv_arch_parse("avx2", &a));
    CHECK_EQ_INT(a, QKV_ARCH_AVX2);
    CHECK_OK(qkv_arch_parse("scalar", &a));
    CHECK_EQ_INT(a, QKV_ARCH_SCALAR);
    CHECK_STATUS(qkv_arch_parse("sse9", &a), QKV_ERR_INVALID_ARG);
    CHECK(strstr(qkv_last_error(), "sse9") != NULL);
    CHECK_STATUS(qkv_arch_parse(NULL, &a), QKV_ERR_INVALID_ARG);

    CHECK_OK(qkv_arch_set(QKV_ARCH_SCALAR));
    CHECK_EQ_INT(qkv_arch_active(), QKV_ARCH_SCALAR);
    CHECK_OK(qkv_arch_set(best));
    CHECK_EQ_INT(qkv_arch_active(), best);
    if (!qkv__arch_supported(QKV_ARCH_AVX512)) {
        CHECK_STATUS(qkv_arch_set(QKV_ARCH_AVX512), QKV_ERR_UNSUPPORTED);
        CHECK_EQ_INT(qkv_arch_active(), best);
    }
    CHECK_STATUS(qkv_arch_set((qkv_arch)99), QKV_ERR_UNSUPPORTED);
    CHECK(strcmp(qkv_arch_name((qkv_arch)99), "?") == 0);

    /* QKV_ARCH notes */
    setenv("QKV_ARCH", "bogus", 1);
    CHECK(qkv_arch_env_note() != NULL && strstr(qkv_arch_env_note(), "bogus"));
    setenv("QKV_ARCH", "scalar", 1);
    CHECK(qkv_arch_env_note() == NULL);
    unsetenv("QKV_ARCH");
    CHECK(qkv_arch_env_note() == NULL);
    return test_finish("core_cpu");
}
