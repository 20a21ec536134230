/* gemm.c — the portable half of the blocked GEMM: argument checks, the thread split, packing,
 * the loop nest around the micro-kernel, and the fused epilogue. The micro-kernels (the only
 * ISA-specific part) live in kernels/<isa>/gemm_<isa>.c; see gemm.h for the contract.
 *
 * Loop nest per thread (BLIS order), for the thread's block of C rows [m0,m1) x cols [n0,n1):
 *   for jc in cols step NC:            B panel  op(B)[pc:pc+KC, jc:jc+NC] -> bpack (L3)
 *     for pc in 0..K step KC:
 *       pack B panel
 *       for ic in rows step MC:        A block  op(A)[ic:ic+MC, pc:pc+KC] -> apack (L2)
 *         pack A block
 *         for jr in panel step NR:     B micro-panel (L1)
 *           for ir in block step MR:   micro-kernel on C[ic+ir.., jc+jr..]
 * The first K block applies the caller's beta, later ones beta = 1; the epilogue runs on each
 * C tile right after its last K block, while the tile is still in L1.
 * With a prepacked B (qkv__gemm_pack_b: the same panels for the whole matrix, built once) the
 * "pack B panel" step becomes a pointer into it, and for few rows the micro-kernel reads A in
 * place (cfg->ukr_rows) instead of "pack A block"; nothing else changes, which is why both
 * paths give the same bits. */
#include "kernels/gemm.h"

#include "core/alloc.h"
#include "core/cpu.h"
#include "core/error.h"
#include "kernels/dispatch.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

float qkv__act_f32(qkv_act act, float x) {
    switch (act) {
    case QKV_ACT_NONE: return x;
    case QKV_ACT_GELU_ERF: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    case QKV_ACT_GELU_TANH: {
        const float c = 0.79788456080286536f; /* sqrt(2/pi) */
        return 0.5f * x * (1.0f + tanhf(c * (x + 0.044715f * x * x * x)));
    }
    case QKV_ACT_RELU: return x > 0.0f ? x : 0.0f;
    case QKV_ACT_SILU: return x / (1.0f + expf(-x));
    case QKV_ACT_TANH: return tanhf(x);
    }
    return x;
}

/* c (mr x nr tile) = c · act'(act_grad) (the backward form): each row through act_bwd_f32 into
 * a zeroed stack block, copied back. */
static void epilogue_grad_tile(const qkv_gemm_epilogue *epi, float *c, int64_t ldc, int64_t i0,
                               int64_t j0, int mr, int nr) {
    void (*bwd)(qkv_act, const float *, const float *, float *, size_t) =
        qkv__kernels()->act_bwd_f32;
    enum { W = 512 };
    float tmp[W];
    for (int r = 0; r < mr; r++) {
        float *row = c + r * ldc;
        const float *x = epi->act_grad + (i0 + r) * epi->ldg + j0;
        for (int j = 0; j < nr; j += W) {
            const int n = nr - j < W ? nr - j : W;
            memset(tmp, 0, (size_t)n * sizeof(float));
            bwd(epi->act, x + j, row + j, tmp, (size_t)n);
            memcpy(row + j, tmp, (size_t)n * sizeof(float));
        }
    }
}

void qkv__gemm_epilogue_tile(const qkv_gemm_epilogue *epi, float *c, int64_t ldc, int64_t i0,
                             int64_t j0, int mr, int nr) {
    if (epi->act_grad) {
        epilogue_grad_tile(epi, c, ldc, i0, j0, mr, nr);
        return;
    }
    /* the active ISA's row kernels (kernels/dispatch.h): without the pre-activation copy, the
     * epilogue row kernel does bias, activation and residual in one pass (the same bits) */
    const qkv_kernels *kr = qkv__kernels();
    if (!epi->pre) {
        for (int r = 0; r < mr; r++)
            kr->epilogue_row_f32(c + r * ldc, epi->bias ? epi->bias + j0 : NULL, epi->act,
                                 epi->residual ? epi->residual + (i0 + r) * epi->ldr + j0 : NULL,
                                 (size_t)nr);
        return;
    }
    void (*act)(qkv_act, const float *, float *, size_t) =
        epi->act != QKV_ACT_NONE ? kr->act_f32 : NULL;
    for (int r = 0; r < mr; r++) {
        float *row = c + r * ldc;
        if (epi->bias)
            for (int j = 0; j < nr; j++) row[j] += epi->bias[j0 + j];
        if (epi->pre) memcpy(epi->pre + (i0 + r) * epi->ldp + j0, row, (size_t)nr * sizeof(float));
        if (act) act(epi->act, row, row, (size_t)nr);
        if (epi->residual) {
            const float *res = epi->residual + (i0 + r) * epi->ldr + j0;
            for (int j = 0; j < nr; j++) row[j] += res[j];
        }
    }
}

/* op(A)[i0:i0+mc, p0:p0+kc] -> ap, micro-panels of MR rows: ap[(ir/MR)*MR*kc + p*MR + r]. */
static void pack_a(const qkv_gemm_config *cfg, int trans, const float *A, int64_t lda, int64_t i0,
                   int64_t p0, int64_t mc, int64_t kc, float *ap) {
    const int MR = cfg->mr;
    for (int64_t ir = 0; ir < mc; ir += MR) {
        int mr = (int)(mc - ir < MR ? mc - ir : MR);
        float *dst = ap + ir * kc;
        if (!trans && cfg->pack_a) {
            cfg->pack_a(A + (i0 + ir) * lda + p0, lda, kc, mr, dst);
            continue;
        }
        if (trans && mr == MR && cfg->pack_at) {
            cfg->pack_at(A + p0 * lda + i0 + ir, lda, kc, dst);
            continue;
        }
        if (!trans) {
            for (int r = 0; r < mr; r++) {
                const float *src = A + (i0 + ir + r) * lda + p0;
                for (int64_t p = 0; p < kc; p++) dst[p * MR + r] = src[p];
            }
        } else {
            for (int64_t p = 0; p < kc; p++) {
                const float *src = A + (p0 + p) * lda + i0 + ir;
                for (int r = 0; r < mr; r++) dst[p * MR + r] = src[r];
            }
        }
        if (mr < MR)
            for (int64_t p = 0; p < kc; p++)
                for (int r = mr; r < MR; r++) dst[p * MR + r] = 0.0f;
    }
}

/* op(B)[p0:p0+kc, j0:j0+nc] -> bp, micro-panels of NR cols: bp[(jr/NR)*NR*kc + p*NR + j]. */
static void pack_b(const qkv_gemm_config *cfg, int trans, const float *B, int64_t ldb, int64_t p0,
                   int64_t j0, int64_t kc, int64_t nc, float *bp) {
    const int NR = cfg->nr;
    for (int64_t jr = 0; jr < nc; jr += NR) {
        int nr = (int)(nc - jr < NR ? nc - jr : NR);
        float *dst = bp + jr * kc;
        if (!trans && nr == NR && cfg->pack_bn) {
            cfg->pack_bn(B + p0 * ldb + j0 + jr, ldb, kc, dst);
        } else if (!trans) {
            for (int64_t p = 0; p < kc; p++) {
                const float *src = B + (p0 + p) * ldb + j0 + jr;
                float *d = dst + p * NR;
                memcpy(d, src, (size_t)nr * sizeof(float)); /* libc's widest vector copy */
                for (int j = nr; j < NR; j++) d[j] = 0.0f;
            }
        } else if (cfg->pack_bt) {
            cfg->pack_bt(B + (j0 + jr) * ldb + p0, ldb, kc, nr, dst);
        } else {
            /* Blocks of 8 k: each source row is read 32 contiguous bytes at a time and the
             * destination is written in whole rows of NR, so both sides stay cache-friendly. */
            const float *src = B + (j0 + jr) * ldb + p0;
            int64_t p = 0;
            for (; p + 8 <= kc; p += 8) {
                float *d = dst + p * NR;
                for (int j = 0; j < nr; j++) {
                    const float *s = src + j * ldb + p;
                    for (int q = 0; q < 8; q++) d[q * NR + j] = s[q];
                }
                for (int j = nr; j < NR; j++)
                    for (int q = 0; q < 8; q++) d[q * NR + j] = 0.0f;
            }
            for (; p < kc; p++) {
                float *d = dst + p * NR;
                for (int j = 0; j < nr; j++) d[j] = src[j * ldb + p];
                for (int j = nr; j < NR; j++) d[j] = 0.0f;
            }
        }
    }
}

struct qkv_gemm_packed {
    qkv_gemm_config cfg; /* a copy: the packing fixed MR/NR/KC and the kernels to run */
    int64_t K, N;
    int64_t kc;   /* K block (k_block(cfg, K)) */
    int64_t npad; /* N rounded up to NR */
    float *data;  /* the K block at pc: [npad/NR panels][kcb][NR] at data + pc*npad, so the
                     panel of columns jr.. is at data + pc*npad + jr*kcb (kcb: that block's
                     length); NULL when K*N == 0 */
};

static int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

/* K in equal blocks of at most cfg->kc (768 -> 2 x 384, not 512 + 256): fewer, evenly long
 * micro-kernel calls. Depends only on K and the config, so the summation order is fixed; the
 * prepacked B uses the same function, which is what makes both paths bit-identical. */
int64_t qkv__gemm_k_block(int64_t kc_max, int64_t K) {
    if (K <= 0) return 1;
    int64_t kblocks = (K + kc_max - 1) / kc_max;
    int64_t kc = round_up((K + kblocks - 1) / kblocks, 4);
    return kc > kc_max ? kc_max : kc;
}

static int64_t k_block(const qkv_gemm_config *cfg, int64_t K) {
    return qkv__gemm_k_block(cfg->kc, K);
}

typedef struct {
    const qkv_gemm_config *cfg;
    int trans_a, trans_b;
    int64_t M, N, K;
    float alpha, beta;
    const float *A, *B;
    const qkv_gemm_packed *bp; /* prepacked op(B), or NULL: pack per cell */
    int a_rows;                /* read A in place through cfg->ukr_rows (no A packing) */
    int64_t lda, ldb, ldc;
    float *C;
    const qkv_gemm_epilogue *epi;
    int64_t kc;                  /* K block: at most cfg->kc, K cut into equal blocks */
    int64_t nc;                  /* N block (multiple of NR) */
    int tm, tn;                  /* thread grid: tm row blocks x tn column blocks */
    int64_t m_step, n_step;      /* rows / cols per grid cell (multiples of MR / NR) */
    float *buffers;              /* per grid cell: apack (a_floats) then bpack */
    size_t buf_floats, a_floats; /* per cell */
} gemm_job;

static void gemm_cell(const gemm_job *g, int64_t cell) {
    const qkv_gemm_config *cfg = g->cfg;
    const int MR = cfg->mr, NR = cfg->nr;
    int64_t m0 = (cell / g->tn) * g->m_step, n0 = (cell % g->tn) * g->n_step;
    int64_t m1 = m0 + g->m_step < g->M ? m0 + g->m_step : g->M;
    int64_t n1 = n0 + g->n_step < g->N ? n0 + g->n_step : g->N;
    if (m0 >= m1 || n0 >= n1) return;
    float *apack = g->buffers ? g->buffers + (size_t)cell * g->buf_floats : NULL;
    float *bpack = apack ? apack + g->a_floats : NULL;
    const qkv_gemm_epilogue *epi = g->epi;
    int has_epi = epi && (epi->bias || epi->act != QKV_ACT_NONE || epi->residual);
    /* The plain forms run on each tile right after its last K block, in L1; the training forms
     * (act_grad, pre) on each finished mc x nc block, a row of up to nc at a time: their
     * kernels and copies then run on long rows instead of NR-float pieces. */
    int block_epi = has_epi && (epi->act_grad || epi->pre), tile_epi = has_epi && !block_epi;

    for (int64_t jc = n0; jc < n1; jc += g->nc) {
        int64_t nc = n1 - jc < g->nc ? n1 - jc : g->nc;
        if (g->K == 0) { /* C = epilogue(beta * C) */
            for (int64_t i = m0; i < m1; i++) {
                float *row = g->C + i * g->ldc + jc;
                for (int64_t j = 0; j < nc; j++) row[j] = g->beta == 0.0f ? 0.0f : g->beta * row[j];
                if (has_epi) qkv__gemm_epilogue_tile(epi, row, g->ldc, i, jc, 1, (int)nc);
            }
            continue;
        }
        for (int64_t pc = 0; pc < g->K; pc += g->kc) {
            int64_t kc = g->K - pc < g->kc ? g->K - pc : g->kc;
            float beta = pc == 0 ? g->beta : 1.0f;
            int last = pc + kc == g->K;
            /* jc is a multiple of NR (n_step and nc are), so it starts a prepacked panel */
            const float *bpanel = g->bp ? g->bp->data + pc * g->bp->npad + jc * kc : bpack;
            if (!g->bp) pack_b(cfg, g->trans_b, g->B, g->ldb, pc, jc, kc, nc, bpack);
            for (int64_t ic = m0; ic < m1; ic += cfg->mc) {
                int64_t mc = m1 - ic < cfg->mc ? m1 - ic : cfg->mc;
                if (!g->a_rows) pack_a(cfg, g->trans_a, g->A, g->lda, ic, pc, mc, kc, apack);
                for (int64_t jr = 0; jr < nc; jr += NR) {
                    int nr = (int)(nc - jr < NR ? nc - jr : NR);
                    for (int64_t ir = 0; ir < mc; ir += MR) {
                        int mr = (int)(mc - ir < MR ? mc - ir : MR);
                        float *c = g->C + (ic + ir) * g->ldc + jc + jr;
                        if (g->a_rows)
                            cfg->ukr_rows(kc, g->A + (ic + ir) * g->lda + pc, g->lda,
                                          bpanel + jr * kc, c, g->ldc, mr, nr, g->alpha, beta);
                        else
                            cfg->ukr(kc, apack + ir * kc, bpanel + jr * kc, c, g->ldc, mr, nr,
                                     g->alpha, beta);
                        if (last && tile_epi)
                            qkv__gemm_epilogue_tile(epi, c, g->ldc, ic + ir, jc + jr, mr, nr);
                    }
                }
                if (last && block_epi) /* the whole mc x nc block (in L2): rows, not tiles */
                    qkv__gemm_epilogue_tile(epi, g->C + ic * g->ldc + jc, g->ldc, ic, jc, (int)mc,
                                            (int)nc);
            }
        }
    }
}

static void gemm_task(void *ctx, int64_t begin, int64_t end, int tid) {
    (void)tid;
    const gemm_job *g = ctx;
    for (int64_t cell = begin; cell < end; cell++) gemm_cell(g, cell);
}

/* Splits C among up to T threads: the grid (tm, tn) with tm * tn <= T that keeps every cell
 * busiest (fewest micro-tiles in the largest cell). On ties, split the side whose packing the
 * other cells then repeat least: a row split makes every cell pack all of op(B) (K x N), a
 * column split all of op(A) (M x K); so rows when M >= N, columns when M < N (measured: M = 128,
 * N = 768 scales 2x with a column split and not at all with a row split). With prepacked B a
 * column split only re-reads A. */
static void choose_grid(int64_t M, int64_t N, int MR, int NR, int T, int *tm, int *tn) {
    int64_t mt = (M + MR - 1) / MR, nt = (N + NR - 1) / NR;
    int64_t best = -1;
    int prefer_rows = M >= N;
    *tm = *tn = 1;
    for (int a = 1; a <= T; a++)
        for (int b = 1; a * b <= T; b++) {
            if (a > mt || b > nt) continue;
            int64_t cost = ((mt + a - 1) / a) * ((nt + b - 1) / b);
            int better_tie = prefer_rows ? a > *tm : b > *tn;
            if (best < 0 || cost < best || (cost == best && better_tie)) {
                best = cost;
                *tm = a;
                *tn = b;
            }
        }
}

static qkv_status check_args(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                             const float *A, int64_t lda, const float *B, int64_t ldb,
                             const float *C, int64_t ldc, const qkv_gemm_epilogue *epi) {
    if (M < 0 || N < 0 || K < 0)
        return qkv__fail(QKV_ERR_INVALID_ARG, "gemm: negative size M=%lld N=%lld K=%lld",
                         (long long)M, (long long)N, (long long)K);
    if (M == 0 || N == 0) return QKV_OK;
    if (!C) return qkv__fail(QKV_ERR_INVALID_ARG, "gemm: C is NULL");
    if (ldc < N)
        return qkv__fail(QKV_ERR_INVALID_ARG, "gemm: ldc %lld < N %lld", (long long)ldc,
                         (long long)N);
    if (K > 0) {
        if (!A || !B) return qkv__fail(QKV_ERR_INVALID_ARG, "gemm: A or B is NULL");
        if (lda < (trans_a ? M : K))
            return qkv__fail(QKV_ERR_INVALID_ARG, "gemm: lda %lld too small", (long long)lda);
        if (ldb < (trans_b ? K : N))
            return qkv__fail(QKV_ERR_INVALID_ARG, "gemm: ldb %lld too small", (long long)ldb);
    }
    return qkv__gemm_epilogue_check(epi, N);
}

qkv_status qkv__gemm_epilogue_check(const qkv_gemm_epilogue *epi, int64_t N) {
    if (epi && epi->residual && epi->ldr < N)
        return qkv__fail(QKV_ERR_INVALID_ARG, "gemm: residual ldr %lld < N", (long long)epi->ldr);
    if (epi && (unsigned)epi->act > QKV_ACT_TANH)
        return qkv__fail(QKV_ERR_INVALID_ARG, "gemm: unknown activation %d", (int)epi->act);
    if (epi && epi->pre && (epi->act_grad || epi->act == QKV_ACT_NONE || epi->ldp < N))
        return qkv__fail(QKV_ERR_INVALID_ARG,
                         "gemm: pre needs an activation, no act_grad and ldp %lld >= N %lld",
                         (long long)epi->ldp, (long long)N);
    if (epi && epi->act_grad &&
        (epi->bias || epi->residual || epi->act == QKV_ACT_NONE || epi->ldg < N))
        return qkv__fail(QKV_ERR_INVALID_ARG,
                         "gemm: act_grad needs an activation, no bias or residual and ldg %lld "
                         ">= N %lld",
                         (long long)epi->ldg, (long long)N);
    return QKV_OK;
}

/* Whether the residual [M, ldr] shares any byte with C [M, ldc] (bounding ranges). */
static int residual_overlaps(const qkv_gemm_epilogue *epi, int64_t M, int64_t N, const float *C,
                             int64_t ldc) {
    if (!epi || !epi->residual) return 0;
    uintptr_t c0 = (uintptr_t)C, c1 = (uintptr_t)(C + (M - 1) * ldc + N);
    uintptr_t r0 = (uintptr_t)epi->residual,
              r1 = (uintptr_t)(epi->residual + (M - 1) * epi->ldr + N);
    return r0 < c1 && c0 < r1;
}

qkv_status qkv__gemm_epilogue_prepare(const qkv_gemm_epilogue *epi, int64_t M, int64_t N,
                                      const float *C, int64_t ldc, qkv_gemm_epilogue *copy,
                                      float **buf, const qkv_gemm_epilogue **use) {
    *buf = NULL;
    *use = epi;
    if (epi && (epi->act_grad || epi->pre)) { /* read / written per tile: no overlap with C */
        const float *x = epi->act_grad ? epi->act_grad : epi->pre;
        const int64_t ldx = epi->act_grad ? epi->ldg : epi->ldp;
        uintptr_t c0 = (uintptr_t)C, c1 = (uintptr_t)(C + (M - 1) * ldc + N);
        uintptr_t g0 = (uintptr_t)x, g1 = (uintptr_t)(x + (M - 1) * ldx + N);
        if (g0 < c1 && c0 < g1)
            return qkv__fail(QKV_ERR_INVALID_ARG, "gemm: %s overlaps C",
                             epi->act_grad ? "act_grad" : "pre");
    }
    /* An overlapping residual would be read after the first K block overwrote it: copy it. */
    if (residual_overlaps(epi, M, N, C, ldc)) {
        size_t bytes;
        if (qkv__mul_overflow((size_t)M * (size_t)N, sizeof(float), &bytes))
            return qkv__fail(QKV_ERR_OVERFLOW, "gemm: residual copy size overflows");
        float *res_copy = qkv__alloc(bytes);
        if (!res_copy)
            return qkv__fail(QKV_ERR_NOMEM, "gemm: cannot copy the residual (%zu bytes)", bytes);
        for (int64_t i = 0; i < M; i++)
            memcpy(res_copy + i * N, epi->residual + i * epi->ldr, sizeof(float) * (size_t)N);
        *copy = *epi;
        copy->residual = res_copy;
        copy->ldr = N;
        *use = copy;
        *buf = res_copy;
    }
    return QKV_OK;
}

qkv_status qkv__gemm_packed_begin(const char *who, int64_t M, int64_t K, int64_t N, const float *A,
                                  int64_t lda, float beta, float *C, int64_t ldc,
                                  const qkv_gemm_epilogue *epi, qkv_gemm_epilogue *copy,
                                  float **buf, const qkv_gemm_epilogue **use, int *done) {
    *buf = NULL;
    *use = NULL;
    *done = 1;
    if (M < 0) return qkv__fail(QKV_ERR_INVALID_ARG, "%s: negative M=%lld", who, (long long)M);
    if (M == 0 || N == 0) return QKV_OK;
    if (!C) return qkv__fail(QKV_ERR_INVALID_ARG, "%s: C is NULL", who);
    if (ldc < N)
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: ldc %lld < N %lld", who, (long long)ldc,
                         (long long)N);
    if (K > 0 && !A) return qkv__fail(QKV_ERR_INVALID_ARG, "%s: A is NULL", who);
    if (K > 0 && lda < K)
        return qkv__fail(QKV_ERR_INVALID_ARG, "%s: lda %lld < K %lld", who, (long long)lda,
                         (long long)K);
    QKV_TRY(qkv__gemm_epilogue_check(epi, N));
    if (epi && !epi->bias && epi->act == QKV_ACT_NONE && !epi->residual) epi = NULL;
    QKV_TRY(qkv__gemm_epilogue_prepare(epi, M, N, C, ldc, copy, buf, use));
    if (K == 0) { /* C = epilogue(beta * C) */
        for (int64_t i = 0; i < M; i++) {
            for (int64_t j = 0; j < N; j++)
                C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
            if (*use) qkv__gemm_epilogue_tile(*use, C + i * ldc, ldc, i, 0, 1, (int)N);
        }
        qkv__free(*buf);
        *buf = NULL;
        return QKV_OK;
    }
    *done = 0;
    return QKV_OK;
}

/* The blocked product once arguments are checked (M, N > 0). bp: prepacked op(B) or NULL. */
static qkv_status gemm_run(const qkv_gemm_config *cfg, qkv_runtime *rt, int trans_a, int trans_b,
                           int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                           int64_t lda, const float *B, int64_t ldb, const qkv_gemm_packed *bp,
                           float beta, float *C, int64_t ldc, const qkv_gemm_epilogue *epi) {
    gemm_job g = {.cfg = cfg,
                  .trans_a = trans_a,
                  .trans_b = trans_b,
                  .M = M,
                  .N = N,
                  .K = K,
                  .alpha = alpha,
                  .beta = beta,
                  .A = A,
                  .B = B,
                  .bp = bp,
                  .lda = lda,
                  .ldb = ldb,
                  .ldc = ldc,
                  .C = C,
                  .epi = epi,
                  .tm = 1,
                  .tn = 1};
    qkv_gemm_epilogue epi_copy;
    float *res_copy = NULL;
    QKV_TRY(qkv__gemm_epilogue_prepare(epi, M, N, C, ldc, &epi_copy, &res_copy, &g.epi));
    /* Threads only when there is enough work to pay for waking them (~64k FMAs a cell). */
    int T = qkv_runtime_n_threads(rt);
    double work = (double)M * (double)N * (double)(K ? K : 1);
    if (work < 65536.0 * 2) T = 1;
    choose_grid(M, N, cfg->mr, cfg->nr, T, &g.tm, &g.tn);
    g.m_step = round_up((M + g.tm - 1) / g.tm, cfg->mr);
    g.n_step = round_up((N + g.tn - 1) / g.tn, cfg->nr);
    int64_t kc = k_block(cfg, K);
    g.kc = kc;
    g.a_rows = bp && !trans_a && cfg->ukr_rows && M <= cfg->rows_max;
    int64_t mc = g.m_step < cfg->mc ? g.m_step : cfg->mc; /* both multiples of MR */
    /* When a cell has a single A block (few rows), the packed B panel is used by that block
     * alone: keep it near L2 (<= 1.5 MiB) so it is consumed while still hot, instead of
     * packing a multi-MiB panel out to L3 and reading it back (measured 1.6x on M=128). */
    int64_t nc_max = round_up(cfg->nc, cfg->nr);
    if (g.m_step <= cfg->mc) {
        int64_t l2 = (int64_t)(1536 * 1024 / sizeof(float)) / kc / cfg->nr * cfg->nr;
        if (l2 < cfg->nr) l2 = cfg->nr;
        if (l2 < nc_max) nc_max = l2;
    }
    int64_t nc = g.n_step < nc_max ? g.n_step : nc_max;
    g.nc = nc_max;
    /* Packing buffers sized for the blocks actually used (small problems stay small); none
     * at all when B is prepacked and A is read in place. */
    g.a_floats = g.a_rows || K == 0 ? 0 : (size_t)(round_up(mc, cfg->mr) * kc);
    g.buf_floats = g.a_floats + (bp || K == 0 ? 0 : (size_t)(kc * round_up(nc, cfg->nr)));
    size_t cells = (size_t)g.tm * (size_t)g.tn, bytes;
    if (qkv__mul_overflow(cells * g.buf_floats, sizeof(float), &bytes)) {
        qkv__free(res_copy);
        return qkv__fail(QKV_ERR_OVERFLOW, "gemm: packing buffer size overflows");
    }
    if (bytes) {
        g.buffers = qkv__alloc(bytes);
        if (!g.buffers) {
            qkv__free(res_copy);
            return qkv__fail(QKV_ERR_NOMEM, "gemm: cannot allocate %zu bytes", bytes);
        }
    }
    /* one cell: one chunk, which qkv_parallel_for runs on the calling thread (inside a team
     * (runtime.h): on its thread 0 only, so C is written once) */
    qkv_parallel_for(rt, (int64_t)cells, 1, gemm_task, &g);
    qkv__free(g.buffers);
    qkv__free(res_copy);
    return QKV_OK;
}

qkv_status qkv__gemm_f32_with(const qkv_gemm_config *cfg, qkv_runtime *rt, int trans_a, int trans_b,
                              int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                              int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                              int64_t ldc, const qkv_gemm_epilogue *epi) {
    QKV_TRY(check_args(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc, epi));
    if (M == 0 || N == 0) return QKV_OK;
    return gemm_run(cfg, rt, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, NULL, beta, C, ldc,
                    epi);
}

qkv_status qkv__gemm_f32(qkv_runtime *rt, int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                         float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                         float beta, float *C, int64_t ldc, const qkv_gemm_epilogue *epi) {
    qkv_gemm_config cfg;
    qkv__kernels()->gemm_f32_config(&cfg);
    return qkv__gemm_f32_with(&cfg, rt, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C,
                              ldc, epi);
}

/* ---------------------------------------------------------------- prepacked B */

qkv_status qkv__gemm_pack_b(const qkv_gemm_config *cfg, int trans_b, int64_t K, int64_t N,
                            const float *B, int64_t ldb, qkv_gemm_packed **out) {
    if (!out) return qkv__fail(QKV_ERR_INVALID_ARG, "gemm pack: out is NULL");
    *out = NULL;
    if (K < 0 || N < 0)
        return qkv__fail(QKV_ERR_INVALID_ARG, "gemm pack: negative size K=%lld N=%lld",
                         (long long)K, (long long)N);
    if (K > 0 && N > 0) {
        if (!B) return qkv__fail(QKV_ERR_INVALID_ARG, "gemm pack: B is NULL");
        if (ldb < (trans_b ? K : N))
            return qkv__fail(QKV_ERR_INVALID_ARG, "gemm pack: ldb %lld too small", (long long)ldb);
    }
    qkv_gemm_packed *p = qkv__calloc(1, sizeof *p);
    if (!p) return qkv__fail(QKV_ERR_NOMEM, "gemm pack: out of memory");
    if (cfg)
        p->cfg = *cfg;
    else
        qkv__kernels()->gemm_f32_config(&p->cfg);
    p->K = K;
    p->N = N;
    p->kc = k_block(&p->cfg, K);
    p->npad = round_up(N, p->cfg.nr);
    if (K > 0 && N > 0) {
        size_t bytes;
        if (qkv__mul_overflow((size_t)K, (size_t)p->npad, &bytes) ||
            qkv__mul_overflow(bytes, sizeof(float), &bytes)) {
            qkv__free(p);
            return qkv__fail(QKV_ERR_OVERFLOW, "gemm pack: %lld x %lld overflows", (long long)K,
                             (long long)N);
        }
        p->data = qkv__alloc(bytes);
        if (!p->data) {
            qkv__free(p);
            return qkv__fail(QKV_ERR_NOMEM, "gemm pack: cannot allocate %zu bytes", bytes);
        }
        for (int64_t pc = 0; pc < K; pc += p->kc) {
            int64_t kcb = K - pc < p->kc ? K - pc : p->kc;
            pack_b(&p->cfg, trans_b, B, ldb, pc, 0, kcb, N, p->data + pc * p->npad);
        }
    }
    *out = p;
    return QKV_OK;
}

void qkv__gemm_packed_free(qkv_gemm_packed *p) {
    if (!p) return;
    qkv__free(p->data);
    qkv__free(p);
}

int64_t qkv__gemm_packed_k(const qkv_gemm_packed *p) { return p ? p->K : 0; }
int64_t qkv__gemm_packed_n(const qkv_gemm_packed *p) { return p ? p->N : 0; }
size_t qkv__gemm_packed_bytes(const qkv_gemm_packed *p) {
    return p && p->data ? (size_t)p->K * (size_t)p->npad * sizeof(float) : 0;
}

qkv_status qkv__gemm_f32_packed(qkv_runtime *rt, int trans_a, int64_t M, const float *A,
                                int64_t lda, const qkv_gemm_packed *B, float alpha, float beta,
                                float *C, int64_t ldc, const qkv_gemm_epilogue *epi) {
    if (!B) return qkv__fail(QKV_ERR_INVALID_ARG, "gemm: packed B is NULL");
    /* B's own checks were done at packing; pass a dummy non-NULL B with a valid ldb */
    QKV_TRY(check_args(trans_a, 0, M, B->N, B->K, A, lda, (const float *)B, B->N, C, ldc, epi));
    if (M == 0 || B->N == 0) return QKV_OK;
    return gemm_run(&B->cfg, rt, trans_a, 0, M, B->N, B->K, alpha, A, lda, NULL, 0, B, beta, C, ldc,
                    epi);
}

void qkv__gemm_f32_naive(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                         const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                         float *C, int64_t ldc, const qkv_gemm_epilogue *epi) {
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double acc = 0.0;
            for (int64_t p = 0; p < K; p++) {
                double a = trans_a ? A[p * lda + i] : A[i * lda + p];
                double b = trans_b ? B[j * ldb + p] : B[p * ldb + j];
                acc += a * b;
            }
            float t =
                (float)((double)alpha * acc + (beta == 0.0f ? 0.0 : (double)beta * C[i * ldc + j]));
            if (epi) {
                if (epi->bias) t += epi->bias[j];
                t = qkv__act_f32(epi->act, t);
                if (epi->residual) t += epi->residual[i * epi->ldr + j];
            }
            C[i * ldc + j] = t;
        }
}
