/* amx.h — the AMX tile configurations of the AMX kernels (files compiled with -mamx-tile).
 *
 * Each kernel names the configuration it needs (palette 1):
 *   QKV_AMX_CFG_BF16 (gemm_bf16_amx.c): all eight tiles 16 rows x 64 bytes (a C tile 16 x 16
 *       FP32, an A tile 16 rows x 32 bf16, a B tile 16 rows of 16 columns x 2 bf16);
 *   QKV_AMX_CFG_I8 (gemm_i8_amx.c): tiles 0-3 16 rows x 64 bytes (C: 16 x 16 int32), tiles 4, 5
 *       16 rows x 32 bytes (A: 16 rows x one group of 32 int8), tiles 6, 7 8 rows x 64 bytes
 *       (B: 8 quads of k x 16 columns x 4 int8).
 * The configuration is per thread: each thread remembers which one it loaded last
 * (qkv__amx_config, defined in core/cpu.c) and loads the one a kernel asks for when it differs
 * (a load zeroes every tile, so no kernel keeps tile state between calls). A thread that ran AMX
 * keeps 8 KiB of tile state, saved on context switches. */
#ifndef QKV_KERNELS_AMX_H
#define QKV_KERNELS_AMX_H

#include "core/cpu.h"

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    uint8_t palette, start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} qkv__amx_tilecfg;

enum { QKV_AMX_CFG_NONE = 0, QKV_AMX_CFG_BF16 = 1, QKV_AMX_CFG_I8 = 2 };

static inline void qkv__amx_load_config(int id) {
    qkv__amx_tilecfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) {
        cfg.colsb[t] = 64;
        cfg.rows[t] = 16;
    }
    if (id == QKV_AMX_CFG_I8) {
        cfg.colsb[4] = cfg.colsb[5] = 32;
        cfg.rows[6] = cfg.rows[7] = 8;
    }
    _tile_loadconfig(&cfg);
    qkv__amx_config = id;
}

static inline void qkv__amx_tiles_ready(int id) {
    if (__builtin_expect(qkv__amx_config == id, 1)) return;
    qkv__amx_load_config(id);
}

/* Tiles 0-3 (16 rows x 64 bytes each: the C tiles of both configurations) to buf, one after
 * the other (4 KiB, 64-byte aligned; the tile operand is an immediate). For the peak loops. */
static inline void qkv__amx_store_c_tiles(void *buf) {
    char *b = buf;
    _tile_stored(0, b, 64);
    _tile_stored(1, b + 1024, 64);
    _tile_stored(2, b + 2048, 64);
    _tile_stored(3, b + 3072, 64);
}

#endif
