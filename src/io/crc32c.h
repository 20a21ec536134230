/* crc32c.h — CRC-32C (Castagnoli; iSCSI, RFC 3720), the checksum of TFRecord framing.
 *
 * Table-driven, one byte per step: the records it guards are a few hundred bytes per training
 * step, so speed does not matter here. Debian 12 packages no C library of it. */
#ifndef QKV_IO_CRC32C_H
#define QKV_IO_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* CRC-32C of data[0..n) continued from crc (0 to start): crc32c("123456789") = 0xE3069283. */
uint32_t qkv__crc32c(uint32_t crc, const void *data, size_t n);
/* TFRecord's masked form: ((c >> 15) | (c << 17)) + 0xa282ead8 of the CRC of data. */
uint32_t qkv__crc32c_masked(const void *data, size_t n);

#endif
