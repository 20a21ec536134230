/* crc32c.c — CRC-32C, reflected polynomial 0x82F63B78 (see crc32c.h). */
#include "io/crc32c.h"

#include <pthread.h>

static uint32_t table[256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void fill_table(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
        table[i] = c;
    }
}

uint32_t qkv__crc32c_table(uint32_t crc, const void *data, size_t n) {
    pthread_once(&table_once, fill_table);
    const unsigned char *p = data;
    crc = ~crc;
    for (size_t i = 0; i < n; i++) crc = (crc >> 8) ^ table[(crc ^ p[i]) & 0xFFu];
    return ~crc;
}

#if defined(__x86_64__)
/* SSE4.2's crc32 instruction computes exactly this CRC, 8 bytes at a time (checkpoints and
 * dataset shards are checksummed whole: gigabytes, where the table's byte a step is slow). */
__attribute__((target("sse4.2"))) static uint32_t crc32c_sse42(uint32_t crc, const void *data,
                                                               size_t n) {
    const unsigned char *p = data;
    uint64_t c = ~crc;
    for (; n && ((uintptr_t)p & 7u); n--, p++) c = __builtin_ia32_crc32qi((uint32_t)c, *p);
    for (; n >= 8; n -= 8, p += 8) {
        uint64_t w;
        __builtin_memcpy(&w, p, 8);
        c = __builtin_ia32_crc32di(c, w);
    }
    for (; n; n--, p++) c = __builtin_ia32_crc32qi((uint32_t)c, *p);
    return ~(uint32_t)c;
}
#endif

int qkv__crc32c_hw(void) {
#if defined(__x86_64__)
    return __builtin_cpu_supports("sse4.2");
#else
    return 0;
#endif
}

uint32_t qkv__crc32c(uint32_t crc, const void *data, size_t n) {
#if defined(__x86_64__)
    if (qkv__crc32c_hw()) return crc32c_sse42(crc, data, n);
#endif
    return qkv__crc32c_table(crc, data, n);
}

uint32_t qkv__crc32c_masked(const void *data, size_t n) {
    const uint32_t c = qkv__crc32c(0, data, n);
    return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}
