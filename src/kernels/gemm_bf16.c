/* gemm_bf16.c — the portable half of the bf16-weight GEMM (contract in gemm_bf16.h): packing of
 * the weights (once) and of the activations (pairs kernels, per call), the loop nest around the
 * micro-kernel, the thread split, and the naive reference.
 *
 * Loop nest: threads take ranges of NR-wide column panels of the packed B; per thread
 *   for pc in 0..K step KC:            the K block (as qkv__gemm_f32 cuts it)
 *     for ic in 0..M step MC:          rows of A (pairs: already packed, L2)
 *       for each panel in the range:   B micro-panel, KC x NR bf16 (L1)
 *         for ir in block step MR:     micro-kernel on C[ic+ir.., panel..]
 * The first K block applies the caller's beta, later ones beta = 1. Every C element is summed
 * by one thread in an order that depends only on K and the config. */
#include "kernels/gemm_bf16.h"

#include "core/alloc.h"
#include "core/error.h"
#include "core/half.h"
#include "core/runtime.h"
#include "kernels/dispatch.h"

#include <stdlib.h>
#include <string.h>

struct qkv_gemm_bf16_packed {
    qkv_gemm_bf16_config cfg; /* a copy: the layout and the kernel to run */
    int64_t K, N;
    int64_t kc;     /* K block (qkv__gemm_k_block(cfg.kc, K)) */
    int64_t npad;   /* N rounded up to NR */
    uint16_t *data; /* block at pc: data + pc*npad, panel jr of it at + jr*kcs, kcs = the
                       block's length (rounded up to even for pairs); NULL when K*N == 0 */
};

void qkv__gemm_bf16_config_plain(qkv_gemm_bf16_config *cfg, const char *name,
                                 void (*twin)(qkv_gemm_config *), qkv_gemm_bf16_ukr_fn ukr,
                                 float (*peak_loop)(int64_t iters, double *flops)) {
    qkv_gemm_config f;
    twin(&f);
    cfg->name = name;
    cfg->mr = f.mr;
    cfg->nr = f.nr;
    cfg->kc = f.kc; /* the twin's K blocks: the same summation order */
    cfg->mc = f.mc;
    cfg->pairs = 0;
    cfg->kalign = 1;
    cfg->pad_rows = 0;
    cfg->f16 = 0;
    cfg->ukr = ukr;
    cfg->ukr_epi = NULL;
    cfg->f32_twin = twin;
    cfg->peak_loop = peak_loop;
}

/* QKV_BF16_KERNEL (gemm_bf16.h): names in the order of the QKV_BF16_* values. */
static const char *const bf16_names[] = {"plain", "dpbf16", "amx"};
static qkv__kernel_choice bf16_choice = {-2, "QKV_BF16_KERNEL", bf16_names, 3, QKV_BF16_AMX};
void qkv__gemm_bf16_select(int kernel) { qkv__choice_set(&bf16_choice, kernel); }
int qkv__gemm_bf16_selected(void) { return qkv__choice_get(&bf16_choice); }

static int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

/* Stored length of the K block [pc, pc + kcb): the (last) block padded with zero k to kalign.
 * Every block but the last is a whole number of kalign (kc is a multiple of 4, and the AMX
 * config has one block), so block pc starts at pc in the stored K. */
static int64_t k_stored(const qkv_gemm_bf16_config *cfg, int64_t kcb) {
    return round_up(kcb, cfg->kalign);
}

/* Index of op(B)(p, j) inside one micro-panel (p, j relative to the panel). */
static size_t panel_index(const qkv_gemm_bf16_config *cfg, int64_t p, int j) {
    if (cfg->pairs) return (size_t)((p >> 1) * 2 * cfg->nr + 2 * j + (p & 1));
    return (size_t)(p * cfg->nr + j);
}

/* Packs op(B) into p->data; src is bf16 (f32 == NULL) or FP32 rounded here (b16 == NULL). */
static void pack_all(qkv_gemm_bf16_packed *p, int trans_b, const uint16_t *b16, const float *f32,
                     int64_t ldb) {
    const qkv_gemm_bf16_config *cfg = &p->cfg;
    const int NR = cfg->nr;
    for (int64_t pc = 0; pc < p->K; pc += p->kc) {
        int64_t kcb = p->K - pc < p->kc ? p->K - pc : p->kc, kcs = k_stored(cfg, kcb);
        for (int64_t jr = 0; jr < p->npad; jr += NR) {
            uint16_t *dst = p->data + pc * p->npad + jr * kcs;
            memset(dst, 0, sizeof(uint16_t) * (size_t)(kcs * NR)); /* padding: +0.0 */
            int nr = (int)(p->N - jr < NR ? p->N - jr : NR);
            for (int j = 0; j < nr; j++)
                for (int64_t q = 0; q < kcb; q++) {
                    int64_t k = pc + q, n = jr + j;
                    int64_t at = trans_b ? n * ldb + k : k * ldb + n;
                    dst[panel_index(cfg, q, j)] = b16        ? b16[at]
                                                  : cfg->f16 ? qkv__f32_to_f16(f32[at])
                                                             : qkv__f32_to_bf16(f32[at]);
                }
        }
    }
}

/* f16: 1 for the f16 packers (cfg NULL: the ISA's f16 config; else cfg->f16 must match). */
static qkv_status pack_common(const qkv_gemm_bf16_config *cfg, int f16, int trans_b, int64_t K,
                              int64_t N, const uint16_t *b16, const float *f32, int64_t ldb,
                              qkv_gemm_bf16_packed **out) {
    const char *fmt = f16 ? "f16" : "bf16";
    if (!out) return qkv__fail(QKV_ERR_INVALID_ARG, "gemm %s pack: out is NULL", fmt);
    *out = NULL;
    if (cfg && cfg->f16 != f16)
        return qkv__fail(QKV_ERR_INVALID_ARG, "gemm %s pack: config %s is for %s weights", fmt,
                         cfg->name, cfg->f16 ? "f16" : "bf16");
    if (K < 0 || N < 0)
        return qkv__fail(QKV_ERR_INVALID_ARG, "gemm %s pack: negative size K=%lld N=%lld", fmt,
                         (long long)K, (long long)N);
    if (K > 0 && N > 0) {
        if (!b16 && !f32) return qkv__fail(QKV_ERR_INVALID_ARG, "gemm %s pack: B is NULL", fmt);
        if (ldb < (trans_b ? K : N))
            return qkv__fail(QKV_ERR_INVALID_ARG, "gemm %s pack: ldb %lld too small", fmt,
                             (long long)ldb);
    }
    qkv_gemm_bf16_packed *p = qkv__calloc(1, sizeof *p);
    if (!p) return qkv__fail(QKV_ERR_NOMEM, "gemm %s pack: out of memory", fmt);
    if (cfg)
        p->cfg = *cfg;
    else if (f16)
        qkv__kernels()->gemm_f16_config(&p->cfg);
    else
        qkv__kernels()->gemm_bf16_config(&p->cfg);
    p->K = K;
    p->N = N;
    p->kc = qkv__gemm_k_block(p->cfg.kc, K);
    p->npad = round_up(N, p->cfg.nr);
    if (K > 0 && N > 0) {
        size_t bytes;
        if (qkv__mul_overflow((size_t)round_up(K, p->cfg.kalign), (size_t)p->npad, &bytes) ||
            qkv__mul_overflow(bytes, sizeof(uint16_t), &bytes)) {
            qkv__free(p);
            return qkv__fail(QKV_ERR_OVERFLOW, "gemm %s pack: %lld x %lld overflows", fmt,
                             (long long)K, (long long)N);
        }
        p->data = qkv__alloc(bytes);
        if (!p->data) {
            qkv__free(p);
            return qkv__fail(QKV_ERR_NOMEM, "gemm %s pack: cannot allocate %zu bytes", fmt, bytes);
        }
        pack_all(p, trans_b, b16, f32, ldb);
    }
    *out = p;
    return QKV_OK;
}

/* (pack_common refuses a NULL B with K, N > 0, naming the format) */
qkv_status qkv__gemm_bf16_pack(const qkv_gemm_bf16_config *cfg, int trans_b, int64_t K, int64_t N,
                               const uint16_t *B, int64_t ldb, qkv_gemm_bf16_packed **out) {
    return pack_common(cfg, 0, trans_b, K, N, B, NULL, ldb, out);
}

qkv_status qkv__gemm_bf16_pack_f32(const qkv_gemm_bf16_config *cfg, int trans_b, int64_t K,
                                   int64_t N, const float *B, int64_t ldb,
                                   qkv_gemm_bf16_packed **out) {
    return pack_common(cfg, 0, trans_b, K, N, NULL, B, ldb, out);
}

qkv_status qkv__gemm_f16_pack(const qkv_gemm_bf16_config *cfg, int trans_b, int64_t K, int64_t N,
                              const uint16_t *B, int64_t ldb, qkv_gemm_bf16_packed **out) {
    return pack_common(cfg, 1, trans_b, K, N, B, NULL, ldb, out);
}

qkv_status qkv__gemm_f16_pack_f32(const qkv_gemm_bf16_config *cfg, int trans_b, int64_t K,
                                  int64_t N, const float *B, int64_t ldb,
                                  qkv_gemm_bf16_packed **out) {
    return pack_common(cfg, 1, trans_b, K, N, NULL, B, ldb, out);
}

int qkv__gemm_bf16_packed_is_f16(const qkv_gemm_bf16_packed *p) { return p ? p->cfg.f16 : 0; }

void qkv__gemm_bf16_packed_free(qkv_gemm_bf16_packed *p) {
    if (!p) return;
    qkv__free(p->data);
    qkv__free(p);
}

int64_t qkv__gemm_bf16_packed_k(const qkv_gemm_bf16_packed *p) { return p ? p->K : 0; }
int64_t qkv__gemm_bf16_packed_n(const qkv_gemm_bf16_packed *p) { return p ? p->N : 0; }
size_t qkv__gemm_bf16_packed_bytes(const qkv_gemm_bf16_packed *p) {
    return p && p->data ? (size_t)round_up(p->K, p->cfg.kalign) * (size_t)p->npad * sizeof(uint16_t)
                        : 0;
}
const char *qkv__gemm_bf16_packed_kernel(const qkv_gemm_bf16_packed *p) {
    return p ? p->cfg.name : NULL;
}

uint16_t qkv__gemm_bf16_packed_get(const qkv_gemm_bf16_packed *p, int64_t k, int64_t n) {
    int64_t pc = k / p->kc * p->kc, kcb = p->K - pc < p->kc ? p->K - pc : p->kc;
    int64_t jr = n / p->cfg.nr * p->cfg.nr;
    const uint16_t *panel = p->data + pc * p->npad + jr * k_stored(&p->cfg, kcb);
    return panel[panel_index(&p->cfg, k - pc, (int)(n - jr))];
}

/* A [M, K] -> bf16 rows ah [mp, kp] (RNE; kp = K rounded up to kalign, mp = M or, with
 * pad_rows, M rounded up to mr; zeros in the padding), rows [begin, end) of it per task. */
typedef struct {
    const float *A;
    int64_t lda, M, K;
    uint16_t *ah;
    int64_t kp;
} round_job;

static void round_task(void *ctx, int64_t begin, int64_t end, int tid) {
    (void)tid;
    const round_job *r = ctx;
    void (*conv)(const float *, uint16_t *, size_t) = qkv__kernels()->convert_f32_bf16;
    for (int64_t i = begin; i < end; i++) {
        uint16_t *row = r->ah + i * r->kp;
        if (i >= r->M) {
            memset(row, 0, sizeof(uint16_t) * (size_t)r->kp);
            continue;
        }
        conv(r->A + i * r->lda, row, (size_t)r->K);
        memset(row + r->K, 0, sizeof(uint16_t) * (size_t)(r->kp - r->K));
    }
}

typedef struct {
    const qkv_gemm_bf16_packed *B;
    int64_t M;
    const float *A; /* plain kernels */
    int64_t lda;
    const uint16_t *ah; /* pairs kernels: A rounded to bf16, [M, kp] */
    int64_t kp;
    float beta;
    float *C;
    int64_t ldc;
    const qkv_gemm_epilogue *epi; /* NULL or one with something to do */
    int stream;                   /* C is larger than the caches (config.ukr_epi) */
} bf16_job;

static void bf16_task(void *ctx, int64_t begin, int64_t end, int tid) {
    (void)tid;
    const bf16_job *g = ctx;
    const qkv_gemm_bf16_packed *B = g->B;
    const qkv_gemm_bf16_config *cfg = &B->cfg;
    const int MR = cfg->mr, NR = cfg->nr;
    for (int64_t pc = 0; pc < B->K; pc += B->kc) {
        int64_t kcb = B->K - pc < B->kc ? B->K - pc : B->kc, kcs = k_stored(cfg, kcb);
        float beta = pc == 0 ? g->beta : 1.0f;
        const qkv_gemm_epilogue *epi = pc + kcb == B->K ? g->epi : NULL; /* after the last */
        for (int64_t ic = 0; ic < g->M; ic += cfg->mc)
            for (int64_t panel = begin; panel < end; panel++) {
                int64_t jr = panel * NR;
                int nr = (int)(B->N - jr < NR ? B->N - jr : NR);
                const uint16_t *bp = B->data + pc * B->npad + jr * kcs;
                int64_t mc = g->M - ic < cfg->mc ? g->M - ic : cfg->mc;
                for (int64_t ir = ic; ir < ic + mc; ir += MR) {
                    int mr = (int)(g->M - ir < MR ? g->M - ir : MR);
                    float *c = g->C + ir * g->ldc + jr;
                    if (cfg->ukr_epi && (!epi || (!epi->pre && !epi->act_grad))) { /* AMX */
                        cfg->ukr_epi(kcb, g->ah + ir * g->kp + pc, g->kp, bp, c, g->ldc, mr, nr,
                                     beta, epi, ir, jr, g->stream);
                        continue;
                    }
                    if (cfg->pairs)
                        cfg->ukr(kcb, g->ah + ir * g->kp + pc, g->kp, bp, c, g->ldc, mr, nr, beta);
                    else
                        cfg->ukr(kcb, g->A + ir * g->lda + pc, g->lda, bp, c, g->ldc, mr, nr, beta);
                    if (epi) qkv__gemm_epilogue_tile(epi, c, g->ldc, ir, jr, mr, nr);
                }
            }
    }
}

qkv_status qkv__gemm_bf16(qkv_runtime *rt, int64_t M, const float *A, int64_t lda,
                          const qkv_gemm_bf16_packed *B, float beta, float *C, int64_t ldc,
                          const qkv_gemm_epilogue *epi) {
    if (!B) return qkv__fail(QKV_ERR_INVALID_ARG, "gemm bf16: packed B is NULL");
    bf16_job g = {.B = B, .M = M, .A = A, .lda = lda, .beta = beta, .C = C, .ldc = ldc};
    qkv_gemm_epilogue epi_copy;
    float *res_copy = NULL;
    int done;
    QKV_TRY(qkv__gemm_packed_begin("gemm bf16", M, B->K, B->N, A, lda, beta, C, ldc, epi, &epi_copy,
                                   &res_copy, &g.epi, &done));
    if (done) return QKV_OK;
    uint16_t *ah = NULL;
    if (B->cfg.pairs) {
        size_t bytes;
        const int64_t mp = B->cfg.pad_rows ? round_up(M, B->cfg.mr) : M;
        g.kp = round_up(B->K, B->cfg.kalign);
        if (qkv__mul_overflow((size_t)mp, (size_t)g.kp, &bytes) ||
            qkv__mul_overflow(bytes, sizeof(uint16_t), &bytes)) {
            qkv__free(res_copy);
            return qkv__fail(QKV_ERR_OVERFLOW, "gemm bf16: bf16 copy of A overflows");
        }
        ah = qkv__alloc(bytes);
        if (!ah) {
            qkv__free(res_copy);
            return qkv__fail(QKV_ERR_NOMEM, "gemm bf16: cannot allocate %zu bytes for A", bytes);
        }
        round_job r = {.A = A, .lda = lda, .M = M, .K = B->K, .ah = ah, .kp = g.kp};
        /* rows in chunks of 64 over the threads when there are many (a chunk per thread
         * otherwise costs more to wake than to convert); inside a team (runtime.h) every
         * thread runs this call with its own copy, so solo: all rows each */
        const int many = (double)mp * (double)g.kp >= 65536.0 && qkv_runtime_n_threads(rt) > 1;
        void *solo = qkv__team_solo_begin();
        qkv_parallel_for(rt, mp, many ? 64 : mp, round_task, &r);
        qkv__team_solo_end(solo);
        g.ah = ah;
    }
    int64_t panels = B->npad / B->cfg.nr;
    /* C past 8 MiB (more than both cores' L2; the next op reads it from memory anyway): a
     * ukr_epi kernel may write it with non-temporal stores, saving the read of each line before
     * it is written (AMX: 10-15% on MiniLM batches of 32, docs/PERFORMANCE.md) */
    g.stream = (double)M * (double)B->N * (double)sizeof(float) > 8.0 * 1024 * 1024;
    /* threads only when there is enough work to pay for waking them (as qkv__gemm_f32) */
    double work = (double)M * (double)B->N * (double)B->K;
    /* grain = panels: one chunk on the calling thread (inside a team: on its thread 0 only) */
    const int small = work < 65536.0 * 2 || qkv_runtime_n_threads(rt) <= 1;
    qkv_parallel_for(rt, panels, small ? panels : 1, bf16_task, &g);
    qkv__free(ah);
    qkv__free(res_copy);
    return QKV_OK;
}

static void naive16(int f16, int trans_b, int64_t M, int64_t N, int64_t K, const float *A,
                    int64_t lda, const uint16_t *B, int64_t ldb, float beta, float *C,
                    int64_t ldc) {
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double acc = 0.0;
            for (int64_t p = 0; p < K; p++) {
                uint16_t b = trans_b ? B[j * ldb + p] : B[p * ldb + j];
                acc += (double)A[i * lda + p] *
                       (double)(f16 ? qkv__f16_to_f32(b) : qkv__bf16_to_f32(b));
            }
            C[i * ldc + j] =
                (float)(acc + (beta == 0.0f ? 0.0 : (double)beta * (double)C[i * ldc + j]));
        }
}

void qkv__gemm_bf16_naive(int trans_b, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                          const uint16_t *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    naive16(0, trans_b, M, N, K, A, lda, B, ldb, beta, C, ldc);
}

void qkv__gemm_f16_naive(int trans_b, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                         const uint16_t *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    naive16(1, trans_b, M, N, K, A, lda, B, ldb, beta, C, ldc);
}
