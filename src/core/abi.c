/* abi.c — the struct_size rule of qkv.h: see abi.h. */
#include "core/abi.h"
#include "core/error.h"

#include <string.h>

/* Bytes a struct_size stands for. */
static size_t effective(size_t struct_size, size_t size0) {
    return struct_size ? struct_size : size0;
}

qkv_status qkv__struct_in(void *local, size_t size, size_t size0, const void *in,
                          const void *defaults, const char *what) {
    const size_t head = sizeof(size_t); /* the struct_size field */
    if (defaults)
        memmove(local, defaults, size);
    else
        memset(local, 0, size);
    if (in) {
        size_t n;
        memcpy(&n, in, sizeof n);
        if (n != 0 && n < head)
            return qkv__fail(QKV_ERR_INVALID_ARG,
                             "%s: struct_size %zu is smaller than the struct_size field (set it "
                             "to 0 or to sizeof the struct)",
                             what, n);
        n = effective(n, size0);
        const unsigned char *p = in;
        for (size_t i = size; i < n; i++)
            if (p[i] != 0)
                return qkv__fail(QKV_ERR_INVALID_ARG,
                                 "%s: struct_size %zu is larger than this library's %zu and byte "
                                 "%zu is not zero: a field this version of libqkv (%s) does not "
                                 "know is set",
                                 what, n, size, i, qkv_version());
        if (n > size) n = size;
        memcpy((unsigned char *)local + head, p + head, n - head);
    }
    memcpy(local, &size, sizeof size);
    return QKV_OK;
}

void qkv__struct_out(void *out, const void *local, size_t size, size_t size0) {
    const size_t head = sizeof(size_t);
    size_t n;
    memcpy(&n, out, sizeof n);
    n = effective(n, size0);
    if (n > size) n = size;
    if (n > head)
        memcpy((unsigned char *)out + head, (const unsigned char *)local + head, n - head);
}

void qkv__struct_fill(void *out, size_t struct_size, const void *local, size_t size, size_t size0) {
    const size_t head = sizeof(size_t);
    size_t n = effective(struct_size, size0);
    if (n < head) return;
    memcpy(out, &struct_size, sizeof struct_size);
    if (n > size) memset((unsigned char *)out + size, 0, n - size);
    if (n > size) n = size;
    memcpy((unsigned char *)out + head, (const unsigned char *)local + head, n - head);
}
