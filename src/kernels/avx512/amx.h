/* amx.h — the AMX tile configuration shared by the AMX kernels (files compiled with -mamx-tile).
 *
 * Every AMX kernel uses one configuration: palette 1, all eight tiles 16 rows x 64 bytes (a C
 * tile 16 x 16 FP32, an A tile 16 rows x 32 bf16 or 64 int8, a B tile 16 rows of 16 columns x 2
 * bf16 or x 4 int8). The configuration is per thread: each thread loads it before its first tile
 * instruction and keeps it (a thread that ran AMX keeps 8 KiB of tile state, saved on context
 * switches). Only kernels that agree on this configuration may use it. */
#ifndef QKV_KERNELS_AMX_H
#define QKV_KERNELS_AMX_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    uint8_t palette, start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} qkv__amx_tilecfg;

extern _Thread_local int qkv__amx_configured;

static inline void qkv__amx_tiles_ready(void) {
    if (__builtin_expect(qkv__amx_configured, 1)) return;
    qkv__amx_tilecfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) {
        cfg.colsb[t] = 64;
        cfg.rows[t] = 16;
    }
    _tile_loadconfig(&cfg);
    qkv__amx_configured = 1;
}

#endif
