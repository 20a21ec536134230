/* gemm_i8.c — the portable half of the int8 GEMM (format and contract in gemm_i8.h): weight
 * quantization and packing (once), activation quantization (per call), the loop nest around
 * the integer micro-kernel, the float steps (the only place they are done, so every ISA gives
 * the same bits), the thread split, and the naive reference.
 *
 * Loop nest: A is cut into row blocks of MC_ROWS rows; the tasks are
 * (row block, NR-wide column panel of the packed B) pairs, row block outer, and threads take
 * ranges of them; per task
 *   B panel, kq x 4 x NR bytes (L2; the whole K)
 *     for ir in the row block step MR:
 *       the fused tile kernel when the config has one, else
 *       for each group of K:       micro-kernel (exact int32 tile) -> scaled, summed in float
 *       beta, epilogue
 * A small M (a decode step: one row block) thus streams each weight byte once. This file is
 * compiled with -ffp-contract=off: the float steps must not become FMAs on one build and not
 * another. */
#include "kernels/gemm_i8.h"

#include "core/alloc.h"
#include "core/error.h"
#include "core/runtime.h"
#include "kernels/dispatch.h"

#include <float.h>
#include <math.h>
#include <string.h>

enum { MR_MAX = 32, NR_MAX = 64, MC_ROWS = 32 };

struct qkv_gemm_i8_packed {
    qkv_gemm_i8_config cfg; /* a copy: the layout and the kernel to run */
    int64_t K, N;
    int64_t kq;      /* ceil(K / 4), or K rounded up to the config's kalign, / 4 */
    int64_t ng;      /* groups: ceil(K / G) */
    int64_t npad;    /* N rounded up to NR */
    int8_t *data;    /* panel jr (a multiple of NR) at data + jr*4*kq; NULL when K*N == 0 */
    float *scale;    /* s[g, n] at scale[g*npad + n] (1 in the padding) */
    int32_t *colsum; /* Σ_{k in g} q[k, n] at colsum[g*npad + n] */
};

enum { G = QKV_GEMM_I8_GROUP };

static int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

/* QKV_I8_KERNEL (gemm_i8.h): names in the order of the QKV_I8_* values. */
static const char *const i8_names[] = {"avx2", "vnni", "amx"};
static qkv__kernel_choice i8_choice = {-2, "QKV_I8_KERNEL", i8_names, 3, QKV_I8_AMX};
void qkv__gemm_i8_select(int kernel) { qkv__choice_set(&i8_choice, kernel); }
int qkv__gemm_i8_selected(void) { return qkv__choice_get(&i8_choice); }

/* The scale of a row (gemm_i8.h): amax / 127, 0 for a zero (or underflowing) row, NaN when
 * the row holds a NaN or an Inf. */
static float row_scale(const float *x, int64_t n, int64_t stride) {
    float amax = 0.0f;
    int bad = 0; /* branch-free, so the loop vectorizes */
    for (int64_t i = 0; i < n; i++) {
        float a = fabsf(x[i * stride]);
        bad |= !(a <= FLT_MAX);
        amax = a > amax ? a : amax;
    }
    return bad ? NAN : amax / 127.0f;
}

/* rint (ties to even) of |r| <= 2^22 in the default rounding mode: adding 1.5·2^23 leaves
 * no fraction bits, so the addition rounds r to an integer and the subtraction is exact. Plain
 * float arithmetic, so the loops below vectorize (rintf is a library call on baseline x86-64);
 * the same value as rintf (the sign of a zero aside, which the int8 conversion drops). */
static inline float rint_small(float r) { return (r + 12582912.0f) - 12582912.0f; }

/* One value with a scale from row_scale: rint(x / t) clamped; 0 when t is 0 or NaN. */
static inline int quant1(float x, float t) {
    if (!(t > 0.0f)) return 0;
    float r = rint_small(x / t); /* |x / t| <= 127·(1 + 2^-23): well inside rint_small's range */
    return (int)(r > 127.0f ? 127.0f : r < -127.0f ? -127.0f : r);
}

float qkv__i8_quantize_row(const float *x, int64_t n, int64_t stride, int8_t *q) {
    float t = row_scale(x, n, stride);
    for (int64_t i = 0; i < n; i++) q[i] = (int8_t)quant1(x[i * stride], t);
    return t;
}

float qkv__i8_quantize_u8(const float *x, int64_t n, uint8_t *u) {
    const float t = row_scale(x, n, 1);
    if (!(t > 0.0f)) {
        memset(u, 128, (size_t)n);
        return t;
    }
    for (int64_t i = 0; i < n; i++) {
        float r = rint_small(x[i] / t);
        r = r > 127.0f ? 127.0f : r < -127.0f ? -127.0f : r;
        u[i] = (uint8_t)((int)r + 128);
    }
    return t;
}

/* The float steps of the format (gemm_i8.h), in this order everywhere: each group's exact
 * integer sum scaled and added to the element's sum, groups in order; then beta·C. */
static inline float i8_group(float sum, int32_t acc, float t, float s) {
    return sum + (float)acc * (t * s);
}
static inline float i8_finish(float sum, float beta, const float *c) {
    return beta == 0.0f ? sum : sum + beta * *c;
}

qkv_status qkv__gemm_i8_pack_f32(const qkv_gemm_i8_config *cfg, int trans_b, int64_t K, int64_t N,
                                 const float *B, int64_t ldb, qkv_gemm_i8_packed **out) {
    if (!out) return qkv__fail(QKV_ERR_INVALID_ARG, "gemm i8 pack: out is NULL");
    *out = NULL;
    if (K < 0 || N < 0)
        return qkv__fail(QKV_ERR_INVALID_ARG, "gemm i8 pack: negative size K=%lld N=%lld",
                         (long long)K, (long long)N);
    if (K > 0 && N > 0) {
        if (!B) return qkv__fail(QKV_ERR_INVALID_ARG, "gemm i8 pack: B is NULL");
        if (ldb < (trans_b ? K : N))
            return qkv__fail(QKV_ERR_INVALID_ARG, "gemm i8 pack: ldb %lld < %lld", (long long)ldb,
                             (long long)(trans_b ? K : N));
    }
    qkv_gemm_i8_config c;
    if (cfg)
        c = *cfg;
    else
        qkv__kernels()->gemm_i8_config(&c);
    if (c.mr < 1 || c.mr > MR_MAX || c.nr < 1 || c.nr > NR_MAX || !c.ukr || !c.group ||
        c.kalign < 4 || c.kalign % 4 != 0 || G % c.kalign != 0)
        return qkv__fail(QKV_ERR_INVALID_ARG, "gemm i8 pack: bad config %s", c.name);
    qkv_gemm_i8_packed *p = qkv__calloc(1, sizeof *p);
    if (!p) return qkv__fail(QKV_ERR_NOMEM, "gemm i8 pack: out of memory");
    p->cfg = c;
    p->K = K;
    p->N = N;
    p->kq = round_up(K, c.kalign) / 4;
    p->ng = (K + G - 1) / G;
    p->npad = round_up(N, c.nr);
    if (K == 0 || N == 0) {
        *out = p;
        return QKV_OK;
    }
    size_t bytes, sbytes;
    if (qkv__mul_overflow((size_t)(4 * p->kq), (size_t)p->npad, &bytes) ||
        qkv__mul_overflow((size_t)p->ng * (size_t)p->npad, sizeof(float), &sbytes)) {
        qkv__free(p);
        return qkv__fail(QKV_ERR_OVERFLOW, "gemm i8 pack: %lld x %lld overflows", (long long)K,
                         (long long)N);
    }
    p->data = qkv__alloc(bytes);
    p->scale = p->data ? qkv__alloc(sbytes) : NULL;
    p->colsum = p->scale ? qkv__alloc(sbytes) : NULL; /* int32: the size of a float */
    if (!p->colsum) {
        qkv__gemm_i8_packed_free(p);
        return qkv__fail(QKV_ERR_NOMEM, "gemm i8 pack: cannot allocate %zu bytes", bytes);
    }
    memset(p->data, 0, bytes);
    const int NR = c.nr;
    int8_t col[G];
    for (int64_t n = 0; n < p->npad; n++)
        for (int64_t g = 0; g < p->ng; g++) {
            float *sg = p->scale + g * p->npad + n;
            int32_t *cg = p->colsum + g * p->npad + n;
            *sg = 1.0f;
            *cg = 0;
            if (n >= N) continue;
            const int64_t k0 = g * G, len = K - k0 < G ? K - k0 : G, st = trans_b ? 1 : ldb;
            const float *src = trans_b ? B + n * ldb + k0 : B + k0 * ldb + n;
            float sc = qkv__i8_quantize_row(src, len, st, col);
            if (isnan(sc)) {
                int64_t k = 0;
                while (k < len && fabsf(src[k * st]) <= FLT_MAX) k++;
                qkv__gemm_i8_packed_free(p);
                return qkv__fail(QKV_ERR_INVALID_ARG,
                                 "gemm i8 pack: weight (k %lld, n %lld) is not finite (int8 "
                                 "cannot hold it)",
                                 (long long)(k0 + k), (long long)n);
            }
            *sg = sc == 0.0f ? 1.0f : sc;
            int8_t *panel = p->data + (n / NR) * NR * 4 * p->kq;
            const int j = (int)(n % NR);
            for (int64_t i = 0; i < len; i++) {
                const int64_t k = k0 + i;
                panel[(k / 4) * 4 * NR + 4 * j + (k % 4)] = col[i];
                *cg += col[i];
            }
        }
    *out = p;
    return QKV_OK;
}

void qkv__gemm_i8_packed_free(qkv_gemm_i8_packed *p) {
    if (!p) return;
    qkv__free(p->data);
    qkv__free(p->scale);
    qkv__free(p->colsum);
    qkv__free(p);
}

int64_t qkv__gemm_i8_packed_k(const qkv_gemm_i8_packed *p) { return p ? p->K : 0; }
int64_t qkv__gemm_i8_packed_n(const qkv_gemm_i8_packed *p) { return p ? p->N : 0; }
size_t qkv__gemm_i8_packed_bytes(const qkv_gemm_i8_packed *p) {
    if (!p || !p->data) return 0;
    return (size_t)(4 * p->kq) * (size_t)p->npad +
           (size_t)p->ng * (size_t)p->npad * (sizeof(float) + sizeof(int32_t));
}
const char *qkv__gemm_i8_packed_kernel(const qkv_gemm_i8_packed *p) {
    return p ? p->cfg.name : NULL;
}
int8_t qkv__gemm_i8_packed_get(const qkv_gemm_i8_packed *p, int64_t k, int64_t n) {
    const int NR = p->cfg.nr;
    const int8_t *panel = p->data + (n / NR) * NR * 4 * p->kq;
    return panel[(k / 4) * 4 * NR + 4 * (n % NR) + (k % 4)];
}
float qkv__gemm_i8_packed_scale(const qkv_gemm_i8_packed *p, int64_t k, int64_t n) {
    return p->scale[k / G * p->npad + n];
}

typedef struct {
    const qkv_gemm_i8_packed *B;
    int64_t M;
    int64_t mc;       /* rows per block of A (a multiple of MR) */
    int64_t panels;   /* NR-wide column panels */
    const uint8_t *a; /* A quantized, + 128 (or s8: a_signed), [M, 4*kq] */
    const float *t;   /* t[m, g] at t[m*ng + g] */
    float beta;
    float *C;
    int64_t ldc;
    const qkv_gemm_epilogue *epi; /* NULL or one with something to do */
} i8_job;

/* Tasks [begin, end): task i is row block i / panels against panel i % panels. */
static void i8_task(void *ctx, int64_t begin, int64_t end, int tid) {
    (void)tid;
    const i8_job *g = ctx;
    const qkv_gemm_i8_packed *B = g->B;
    const int MR = B->cfg.mr, NR = B->cfg.nr;
    const int64_t lda = 4 * B->kq, ng = B->ng;
    int32_t acc[MR_MAX * NR_MAX];
    float sum[MR_MAX * NR_MAX];
    for (int64_t task = begin; task < end; task++) {
        const int64_t ic = task / g->panels * g->mc, jr = task % g->panels * NR;
        const int64_t iend = g->M - ic < g->mc ? g->M : ic + g->mc;
        const int nr = (int)(B->N - jr < NR ? B->N - jr : NR);
        const int8_t *bp = B->data + jr * lda;
        for (int64_t ir = ic; ir < iend; ir += MR) {
            const int mr = (int)(iend - ir < MR ? iend - ir : MR);
            float *c = g->C + ir * g->ldc + jr;
            if (B->cfg.tile) {
                B->cfg.tile(B->K, g->a + ir * lda, lda, bp, B->colsum + jr, B->scale + jr, B->npad,
                            g->t + ir * ng, ng, g->beta, c, g->ldc, mr, nr);
            } else {
                for (int64_t q = 0; q < ng; q++) {
                    const int64_t k0 = q * G, kq = ((B->K - k0 < G ? B->K - k0 : G) + 3) / 4;
                    B->cfg.ukr(kq, g->a + ir * lda + k0, lda, bp + k0 * NR, acc, mr);
                    B->cfg.group(q == 0, mr, acc, B->colsum + q * B->npad + jr,
                                 B->scale + q * B->npad + jr, g->t + ir * ng + q, ng, sum);
                }
                for (int r = 0; r < mr; r++)
                    for (int j = 0; j < nr; j++)
                        c[r * g->ldc + j] = i8_finish(sum[r * NR + j], g->beta, c + r * g->ldc + j);
            }
            if (g->epi) qkv__gemm_epilogue_tile(g->epi, c, g->ldc, ir, jr, mr, nr);
        }
    }
}

typedef struct {
    qkv_gemm_i8_quant_fn quant; /* NULL: the portable loop */
    int a_signed;               /* bytes a (s8) rather than a + 128 (u8) */
    const float *A;
    int64_t lda, K, kp, ng;
    uint8_t *a; /* [M, kp] */
    float *t;   /* [M, ng] */
} quant_job;

/* Rows [begin, end) of A quantized group by group (a + 128 as u8, 128 in the K padding; with
 * a_signed a as s8, 0 in the padding: the u8 byte with its top bit flipped). */
static void quant_task(void *ctx, int64_t begin, int64_t end, int tid) {
    (void)tid;
    const quant_job *j = ctx;
    for (int64_t i = begin; i < end; i++) {
        uint8_t *u = j->a + i * j->kp;
        if (j->quant) {
            j->quant(j->A + i * j->lda, j->K, j->kp, u, j->t + i * j->ng);
            continue;
        }
        for (int64_t q = 0; q < j->ng; q++) {
            const int64_t k0 = q * G, len = j->K - k0 < G ? j->K - k0 : G;
            j->t[i * j->ng + q] = qkv__i8_quantize_u8(j->A + i * j->lda + k0, len, u + k0);
        }
        for (int64_t k = j->K; k < j->kp; k++) u[k] = 128;
        if (j->a_signed)
            for (int64_t k = 0; k < j->kp; k++) u[k] ^= 0x80;
    }
}

qkv_status qkv__gemm_i8(qkv_runtime *rt, int64_t M, const float *A, int64_t lda,
                        const qkv_gemm_i8_packed *B, float beta, float *C, int64_t ldc,
                        const qkv_gemm_epilogue *epi) {
    if (!B) return qkv__fail(QKV_ERR_INVALID_ARG, "gemm i8: packed B is NULL");
    i8_job g = {.B = B, .M = M, .beta = beta, .C = C, .ldc = ldc};
    qkv_gemm_epilogue epi_copy;
    float *res_copy = NULL;
    int done;
    QKV_TRY(qkv__gemm_packed_begin("gemm i8", M, B->K, B->N, A, lda, beta, C, ldc, epi, &epi_copy,
                                   &res_copy, &g.epi, &done));
    if (done) return QKV_OK;
    const int64_t kp = 4 * B->kq, ng = B->ng;
    /* rows of A's copy: with pad_rows the tiles' whole rows, the extra ones zero */
    const int64_t ma = B->cfg.pad_rows ? round_up(M, B->cfg.mr) : M;
    size_t bytes, tbytes;
    uint8_t *a = NULL;
    float *t = NULL;
    if (qkv__mul_overflow((size_t)ma, (size_t)kp, &bytes) ||
        qkv__mul_overflow((size_t)M * (size_t)ng, sizeof(float), &tbytes)) {
        qkv__free(res_copy);
        return qkv__fail(QKV_ERR_OVERFLOW, "gemm i8: int8 copy of A overflows");
    }
    a = qkv__alloc(bytes);
    t = a ? qkv__alloc(tbytes) : NULL;
    if (!t) {
        qkv__free(a);
        qkv__free(res_copy);
        return qkv__fail(QKV_ERR_NOMEM, "gemm i8: cannot allocate %zu bytes for A", bytes);
    }
    if (ma > M) memset(a + M * kp, B->cfg.a_signed ? 0 : 128, (size_t)((ma - M) * kp));
    quant_job qj = {B->cfg.quant, B->cfg.a_signed, A, lda, B->K, kp, ng, a, t};
    /* rows apart (each row's quantization is its own: any split gives the same bytes); inside a
     * team (runtime.h) every thread runs this call with its own copy, so solo: all rows each */
    const int qsmall = (double)M * (double)B->K < 65536.0 || qkv_runtime_n_threads(rt) <= 1;
    void *solo = qkv__team_solo_begin();
    qkv_parallel_for(rt, M, qsmall ? M : 1, quant_task, &qj);
    qkv__team_solo_end(solo);
    g.a = a;
    g.t = t;
    g.panels = B->npad / B->cfg.nr;
    /* row blocks of MC_ROWS rows: a task writes a 32 x NR block of C. Longer blocks (the whole
     * M, or ~200 KiB of A) halved the speed at M = 2048, N = 1536 (12 MiB of C written in
     * stripes down thousands of rows: TLB and write misses); B panels come from L2 either way */
    g.mc = MC_ROWS / B->cfg.mr * B->cfg.mr;
    if (g.mc < B->cfg.mr) g.mc = B->cfg.mr;
    if (g.mc > M) g.mc = M;
    const int64_t tasks = (M + g.mc - 1) / g.mc * g.panels;
    /* threads only when there is enough work to pay for waking them (as qkv__gemm_f32) */
    double work = (double)M * (double)B->N * (double)B->K;
    /* grain = tasks: one chunk on the calling thread (inside a team: on its thread 0 only) */
    const int small = work < 65536.0 * 2 || qkv_runtime_n_threads(rt) <= 1;
    qkv_parallel_for(rt, tasks, small ? tasks : 1, i8_task, &g);
    qkv__free(a);
    qkv__free(t);
    qkv__free(res_copy);
    return QKV_OK;
}

void qkv__gemm_i8_naive(int trans_b, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                        const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    const int64_t sb = trans_b ? 1 : ldb;
    for (int64_t j = 0; j < N; j++)
        for (int64_t i = 0; i < M; i++) {
            float sum = 0.0f;
            for (int64_t k0 = 0; k0 < K; k0 += G) {
                const int64_t len = K - k0 < G ? K - k0 : G;
                const float *a = A + i * lda + k0;
                const float *b = trans_b ? B + j * ldb + k0 : B + k0 * ldb + j;
                const float t = row_scale(a, len, 1), s = row_scale(b, len, sb);
                int64_t acc = 0;
                for (int64_t k = 0; k < len; k++)
                    acc += (int64_t)quant1(a[k], t) * quant1(b[k * sb], s);
                sum = i8_group(sum, (int32_t)acc, t, s == 0.0f ? 1.0f : s);
            }
            C[i * ldc + j] = i8_finish(sum, beta, C + i * ldc + j);
        }
}
