/* test_core_alloc.c — the allocation hook: alignment, routing, restore, fault injection. */
#include "core/alloc.h"
#include "qkv.h"
#include "test.h"

#include <stdint.h>

static int n_alloc, n_free, fail_at = -1;

static void *counting_alloc(size_t size, size_t align, void *user) {
    CHECK(user == (void *)&n_alloc);
    CHECK(align == 64);
    if (n_alloc++ == fail_at) return NULL;
    return aligned_alloc(align, (size + align - 1) / align * align);
}
static void counting_free(void *p, void *user) {
    (void)user;
    n_free++;
    free(p);
}

int main(void) {
    for (size_t sz = 0; sz < 300; sz += 7) {
        void *p = qkv_malloc(sz);
        CHECK(p != NULL);
        CHECK(((uintptr_t)p & 63) == 0);
        memset(p, 0xab, sz);
        qkv_free(p);
    }
    qkv_free(NULL); /* NULL is fine */

    qkv_allocator a = {counting_alloc, counting_free, &n_alloc};
    qkv_set_allocator(&a);
    void *p = qkv_malloc(100);
    char *s = qkv__strdup("hello");
    CHECK(strcmp(s, "hello") == 0);
    int *z = qkv__calloc(10, sizeof(int));
    for (int i = 0; i < 10; i++) CHECK(z[i] == 0);
    CHECK(qkv__calloc(SIZE_MAX / 2, 4) == NULL); /* overflow: no call to the hook */
    CHECK_EQ_INT(n_alloc, 3);
    qkv_free(p);
    qkv__free(s);
    qkv__free(z);
    CHECK_EQ_INT(n_free, 3);
    fail_at = 3;
    CHECK(qkv_malloc(8) == NULL);
    CHECK_EQ_INT(n_free, 3);

    qkv_set_allocator(NULL); /* default again: the counter no longer moves */
    int before = n_alloc;
    qkv_free(qkv_malloc(16));
    CHECK_EQ_INT(n_alloc, before);

    size_t out;
    CHECK(qkv__mul_overflow(SIZE_MAX, 2, &out));
    CHECK(!qkv__mul_overflow(1u << 20, 1u << 10, &out) && out == (1u << 30));
    CHECK(qkv__add_overflow(SIZE_MAX, 1, &out));
    return test_finish("core_alloc");
}
