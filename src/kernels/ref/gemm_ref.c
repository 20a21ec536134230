/* gemm_ref.c — the portable GEMM micro-kernel (plain C; the compiler may vectorize it for the
 * baseline ISA). Contract in kernels/gemm.h. */
#include "kernels/gemm.h"

#include "core/half.h"
#include "kernels/gemm_bf16.h"

enum { MR = 4, NR = 8 };

static void gemm_ukr_ref(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc,
                         int mr, int nr, float alpha, float beta) {
    float acc[MR][NR] = {{0}};
    for (int64_t p = 0; p < kc; p++)
        for (int r = 0; r < MR; r++)
            for (int j = 0; j < NR; j++) acc[r][j] += ap[p * MR + r] * bp[p * NR + j];
    for (int r = 0; r < mr; r++)
        for (int j = 0; j < nr; j++) {
            float *dst = c + r * ldc + j;
            *dst = beta == 0.0f ? alpha * acc[r][j] : alpha * acc[r][j] + beta * *dst;
        }
}

void qkv__gemm_config_ref(qkv_gemm_config *cfg) {
    cfg->name = "gemm_f32_ref";
    cfg->mr = MR;
    cfg->nr = NR;
    cfg->kc = 256;
    cfg->mc = 128;
    cfg->nc = 2048;
    cfg->ukr = gemm_ukr_ref;
    cfg->pack_bt = NULL;
    cfg->pack_a = NULL;
    cfg->ukr_rows = NULL; /* the portable path always packs A */
    cfg->rows_max = 0;
    cfg->pack_at = NULL;
    cfg->pack_bn = NULL;
}

/* The 16-bit-weight twins of gemm_ukr_ref (gemm_bf16.h, plain): A read in place, B (bf16, or
 * f16 when f16) widened exactly, the same float multiply-adds in the same order and the same
 * store, so the result equals gemm_ukr_ref on the widened weights bit for bit. */
static inline void h16_ukr(int f16, int64_t kc, const void *a, int64_t lda, const uint16_t *bp,
                           float *c, int64_t ldc, int mr, int nr, float beta) {
    const float *ar = a;
    float acc[MR][NR] = {{0}};
    for (int64_t p = 0; p < kc; p++)
        for (int r = 0; r < mr; r++)
            for (int j = 0; j < NR; j++)
                acc[r][j] += ar[r * lda + p] * (f16 ? qkv__f16_to_f32(bp[p * NR + j])
                                                    : qkv__bf16_to_f32(bp[p * NR + j]));
    for (int r = 0; r < mr; r++)
        for (int j = 0; j < nr; j++) {
            float *dst = c + r * ldc + j;
            *dst = beta == 0.0f ? acc[r][j] : acc[r][j] + beta * *dst;
        }
}

static void gemm_bf16_ukr_ref(int64_t kc, const void *a, int64_t lda, const uint16_t *bp, float *c,
                              int64_t ldc, int mr, int nr, float beta) {
    h16_ukr(0, kc, a, lda, bp, c, ldc, mr, nr, beta);
}
static void gemm_f16_ukr_ref(int64_t kc, const void *a, int64_t lda, const uint16_t *bp, float *c,
                             int64_t ldc, int mr, int nr, float beta) {
    h16_ukr(1, kc, a, lda, bp, c, ldc, mr, nr, beta);
}

void qkv__gemm_bf16_config_ref(qkv_gemm_bf16_config *cfg) {
    qkv__gemm_bf16_config_plain(cfg, "gemm_bf16_ref", qkv__gemm_config_ref, gemm_bf16_ukr_ref,
                                qkv__fma_peak_loop_ref);
}
void qkv__gemm_f16_config_ref(qkv_gemm_bf16_config *cfg) {
    qkv__gemm_bf16_config_plain(cfg, "gemm_f16_ref", qkv__gemm_config_ref, gemm_f16_ukr_ref,
                                qkv__fma_peak_loop_ref);
    cfg->f16 = 1;
}

/* Peak-measurement loop (kernels/peak.c): independent multiply-add chains in plain C. */
float qkv__fma_peak_loop_ref(int64_t iters, double *flops) {
    float a[16], b = 1.0000001f, c = 1e-7f, s = 0;
    for (int i = 0; i < 16; i++) a[i] = (float)i;
    for (int64_t it = 0; it < iters; it++)
        for (int i = 0; i < 16; i++) a[i] = a[i] * b + c;
    for (int i = 0; i < 16; i++) s += a[i];
    *flops = 2.0 * 16.0 * (double)iters;
    return s;
}
