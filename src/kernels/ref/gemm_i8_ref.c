/* gemm_i8_ref.c — the portable int8 GEMM micro-kernel (plain C): int32 sums of u8 activations
 * times s8 weights in the VNNI quad layout (contract in kernels/gemm_i8.h). */
#include "kernels/gemm_i8.h"

enum { MR = 4, NR = 16 };

static void gemm_i8_ukr_ref(int64_t kq, const uint8_t *a, int64_t lda, const int8_t *bp,
                            int32_t *acc, int mr) {
    for (int r = 0; r < mr; r++)
        for (int j = 0; j < NR; j++) {
            int32_t sum = 0;
            for (int64_t q = 0; q < kq; q++)
                for (int h = 0; h < 4; h++)
                    sum += (int32_t)a[r * lda + 4 * q + h] * bp[q * 4 * NR + 4 * j + h];
            acc[r * NR + j] = sum;
        }
}

static void gemm_i8_group_ref(int first, int mr, const int32_t *acc, const int32_t *cs,
                              const float *s, const float *t, int64_t ts, float *sum) {
    QKV_GEMM_I8_GROUP_STEP(NR)
}

void qkv__gemm_i8_config_ref(qkv_gemm_i8_config *cfg) {
    cfg->name = "gemm_i8_ref";
    cfg->mr = MR;
    cfg->nr = NR;
    cfg->ukr = gemm_i8_ukr_ref;
    cfg->group = gemm_i8_group_ref;
    cfg->peak_loop = NULL;
    cfg->tile = NULL;
    cfg->quant = NULL;
    cfg->kalign = 4;
    cfg->pad_rows = 0;
    cfg->a_signed = 0;
}
