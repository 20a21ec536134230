/* test_arch.h — tests of ISA-specific kernels run once per QKV_ARCH (CTest sets it); this
 * forces the requested ISA and skips (exit 77) when the CPU or build lacks it. */
#ifndef QKV_TEST_ARCH_H
#define QKV_TEST_ARCH_H

#include "qkv.h"
#include "test.h"

static inline qkv_arch test_use_arch_from_env(void) {
    const char *env = getenv("QKV_ARCH");
    qkv_arch a = qkv_arch_best();
    if (env && *env) {
        if (qkv_arch_parse(env, &a) != QKV_OK) TEST_SKIP("unknown QKV_ARCH=%s", env);
        if (qkv_arch_set(a) != QKV_OK) TEST_SKIP("%s not supported here", env);
    }
    printf("arch: %s\n", qkv_arch_name(qkv_arch_active()));
    return a;
}

/* Prints which ISA the kernel op (its name in qkv_kernel_info) runs. */
static inline void test_print_kernel_isa(const char *op) {
    const char *name, *isa;
    for (size_t i = 0; qkv_kernel_info(i, &name, &isa); i++)
        if (!strcmp(name, op)) printf("%s runs %s\n", op, isa);
}

#endif
