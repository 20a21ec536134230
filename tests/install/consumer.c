/* consumer.c — a program outside the qkv tree, built against the installed library. */
#include <qkv.h>
#include <stdio.h>
#include <string.h>

int main(void) {
    qkv_runtime *rt = NULL;
    if (qkv_runtime_create(2, &rt) != QKV_OK) return 1;
    printf("qkv %s, %d threads, arch %s\n", qkv_version(), qkv_runtime_n_threads(rt),
           qkv_arch_name(qkv_arch_active()));
    qkv_runtime_free(rt);
    qkv_safetensors *st = NULL;
    qkv_status s = qkv_safetensors_open("/nonexistent.safetensors", &st);
    if (s == QKV_OK) return 1;
    printf("expected failure: %s: %s\n", qkv_strerror(s), qkv_last_error());
    return strcmp(qkv_version(), QKV_VERSION_STRING) == 0 ? 0 : 1;
}
