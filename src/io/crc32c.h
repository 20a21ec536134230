/* crc32c.h — CRC-32C (Castagnoli; iSCSI, RFC 3720), the checksum of TFRecord framing.
 *
 * SSE4.2's crc32 instruction where the CPU has it (8 bytes a step), else a table (a byte a step);
 * tests compare the two on random data of every alignment. Debian 12 packages no C library of
 * it. Used for TFRecord framing, checkpoints and dataset shards. */
#ifndef QKV_IO_CRC32C_H
#define QKV_IO_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* CRC-32C of data[0..n) continued from crc (0 to start): crc32c("123456789") = 0xE3069283. */
uint32_t qkv__crc32c(uint32_t crc, const void *data, size_t n);
/* The portable table version (the oracle of the SSE4.2 path), and whether that path is used. */
uint32_t qkv__crc32c_table(uint32_t crc, const void *data, size_t n);
int qkv__crc32c_hw(void);
/* TFRecord's masked form: ((c >> 15) | (c << 17)) + 0xa282ead8 of the CRC of data. */
uint32_t qkv__crc32c_masked(const void *data, size_t n);

#endif
