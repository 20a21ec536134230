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

uint32_t qkv__crc32c(uint32_t crc, const void *data, size_t n) {
    pthread_once(&table_once, fill_table);
    const unsigned char *p = data;
    crc = ~crc;
    for (size_t i = 0; i < n; i++) crc = (crc >> 8) ^ table[(crc ^ p[i]) & 0xFFu];
    return ~crc;
}

uint32_t qkv__crc32c_masked(const void *data, size_t n) {
    const uint32_t c = qkv__crc32c(0, data, n);
    return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}
