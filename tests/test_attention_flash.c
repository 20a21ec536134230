/* test_attention_flash.c — the fused (flash) attention against the reference, per QKV_ARCH.
 *
 * Registered with ARCHS: under avx2 / avx512 the public entry points run the fused kernels
 * (src/attention/flash_*.c); under scalar they run the reference, so this test then checks the
 * reference against itself plus the portable micro-kernels' exp. The oracle is always the
 * reference called directly (qkv__attention_*_ref), on the same inputs.
 *
 * What is covered: the vectorized exp over a dense sweep (underflow range and -inf included)
 * against its documented bound; random shapes and every edge of the tiling (sizes that are not
 * multiples of the tiles or the vector width, D in 1, 3, 17, 64, 80, 96, 128, 256, Dv != D,
 * Tq = 1, Tq != Tk both ways), every mask alone and combined, fully masked rows, GQA and MQA,
 * B·H large with tiny T, huge logits, the decode and backward key splits; bit-identical
 * results on 1, 2 and 3 threads; memory linear in T (allocator hook). Dropout (p = 0.1, 0.5,
 * 0.9) on all of these against the reference's mask: the dropout kernel's tiles element by
 * element against qkv__rng_uniform (both layouts, every row offset mod 4, counters that carry
 * past 32 bits, indices near 2^63), the mask read back from the output (one-hot v), and the
 * forward and backward at the no-dropout tolerances.
 *
 * Tolerances (float kernels against a double reference, inputs uniform in [-1, 1)):
 *   out, dq, dk, dv: |got - ref| <= 2e-5 + 2e-4 |ref|;   lse: <= 2e-5 + 2e-6 |ref|.
 * With huge logits the float score itself carries an error of ~ eps · scale · Σ_d |q_d k_d|
 * (the reference sums in double); those cases use a bound scaled by that magnitude. */
#include "attention/attention.h"
#include "attention_oracle.h"
#include "core/rng.h"
#include "kernels/attn_kernels.h"
#include "kernels/dispatch.h"
#include "qkv.h"
#include "test.h"
#include "test_arch.h"

#include <float.h>
#include <pthread.h>
#include <stdint.h>

static double g_worst[5]; /* worst error / tolerance of out, lse, dq, dk, dv */

/* ---------------------------------------------------------------- exp */

static void test_exp(void) {
    qkv_attn_kernels kr;
    qkv__kernels()->attn_f32_config(&kr);
    const int64_t n = 4000000;
    float *x = malloc((size_t)n * sizeof *x), *y = malloc((size_t)n * sizeof *y);
    for (int64_t t = 0; t < n; t++) x[t] = -110.0f + 200.0f * (float)t / (float)n;
    x[0] = -INFINITY;
    x[1] = -FLT_MAX;
    x[2] = -0.0f;
    x[3] = 0.0f;
    x[4] = -87.3365f;
    x[5] = -86.6433f;
    x[6] = 88.7f;
    x[7] = -1e-30f;
    kr.exp(x, y, n);
    double max_rel = 0, max_abs_tiny = 0;
    int64_t bad = 0;
    const double tiny = ldexp(1.0, -125);
    for (int64_t t = 0; t < n; t++) {
        double e = exp((double)x[t]);
        if (e > FLT_MAX) {
            bad += !(isinf(y[t]) && y[t] > 0);
            continue;
        }
        if (e >= tiny) {
            double rel = fabs((double)y[t] - e) / e;
            if (rel > max_rel) max_rel = rel;
        } else {
            double ae = fabs((double)y[t] - e);
            if (ae > max_abs_tiny) max_abs_tiny = ae;
        }
    }
    printf("  exp (%s): max rel err %.3g (bound %.3g), max abs err below 2^-125 %.3g\n", kr.name,
           max_rel, QKV_ATTN_EXP_MAX_REL_ERR, max_abs_tiny);
    CHECK(max_rel <= QKV_ATTN_EXP_MAX_REL_ERR);
    CHECK(max_abs_tiny <= tiny);
    CHECK_EQ_INT(bad, 0);
    CHECK(y[0] == 0.0f && y[1] == 0.0f && y[2] == 1.0f && y[3] == 1.0f);
    /* tails of every length (masked loads / stores never touch past n) */
    for (int64_t len = 0; len <= 40; len++) {
        float in[48], outv[48];
        for (int i = 0; i < 48; i++) in[i] = -0.25f * (float)i, outv[i] = 7.0f;
        kr.exp(in, outv, len);
        for (int i = 0; i < 48; i++)
            CHECK(i < len ? fabsf(outv[i] - expf(in[i])) <= 1e-6f : outv[i] == 7.0f);
    }
    free(x);
    free(y);
}

/* ---------------------------------------------------------------- against the reference */

typedef struct spec {
    const char *name;
    int64_t B, Tq, Tk, Hq, Hk, D, Dv;
    int causal;
    int64_t wl, wr;
    int bias; /* BIAS_* */
    int alibi;
    int lens;      /* 1: kv_lens (with a 0 and a full one when B allows) */
    float amp;     /* q, k amplitude */
    float scale;   /* 0: default */
    float dropout; /* dropout_p (0: none), with a seed derived from the shape */
} spec;

static qkv_attention_desc make_desc(const spec *s) {
    qkv_attention_desc d;
    memset(&d, 0, sizeof d);
    d.batch = s->B;
    d.q_len = s->Tq;
    d.kv_len = s->Tk;
    d.n_heads = s->Hq;
    d.n_kv_heads = s->Hk;
    d.head_dim = s->D;
    d.v_head_dim = s->Dv;
    d.causal = s->causal;
    d.window_left = s->wl;
    d.window_right = s->wr;
    d.scale = s->scale;
    d.dropout_p = s->dropout;
    d.dropout_seed = (uint64_t)(s->B * 1000003 + s->Tq * 1009 + s->Tk) * 0x9E3779B97F4A7C15ull;
    return d;
}

/* Errors of got against ref relative to atol + rtol |ref|; -inf must match exactly. */
static double compare(const char *name, const char *what, int which, const float *got,
                      const float *ref, int64_t n, double atol, double rtol) {
    double worst = 0;
    int reported = 0;
    for (int64_t t = 0; t < n; t++) {
        double a = got[t], b = ref[t], ratio;
        if (isinf(b) || isinf(a))
            ratio = a == b ? 0 : INFINITY;
        else
            ratio = fabs(a - b) / (atol + rtol * fabs(b));
        if (!(ratio <= worst)) worst = ratio;
        if (!(ratio <= 1.0) && reported++ < 3)
            fprintf(stderr, "%s: %s[%lld] = %.9g, reference %.9g\n", name, what, (long long)t, a,
                    b);
    }
    CHECK_MSG(worst <= 1.0, "%s: %s worst error %.3g of tolerance", name, what, worst);
    if (worst > g_worst[which]) g_worst[which] = worst;
    return worst;
}

/* Runs s through the public API (the active ISA's path) and the reference; compares forward
 * and backward. big: tolerance multiplier for huge-logit cases. */
static void run_spec(const spec *s, qkv_runtime *rt, double big) {
    qkv_attention_desc d = make_desc(s);
    int32_t lens[64];
    for (int64_t b = 0; b < s->B && b < 64; b++)
        lens[b] = (int32_t)(b == 0 ? s->Tk : b == 1 ? 0 : (s->Tk * (b + 3) * 7 / 11) % (s->Tk + 1));
    oracle_case c;
    oracle_case_init(&c, &d, s->bias, s->alibi, s->lens ? lens : NULL, s->amp);
    qkv__attn_problem pb;
    CHECK_OK(qkv__attn_validate("test", &c.d, 0, &pb));
    float *out = malloc((size_t)c.no * sizeof(float)), *lse = malloc((size_t)c.nlse * 4);
    float *rout = malloc((size_t)c.no * sizeof(float)), *rlse = malloc((size_t)c.nlse * 4);
    float *dq = malloc((size_t)c.nq * 4), *dk = malloc((size_t)c.nk * 4),
          *dv = malloc((size_t)c.nv * 4);
    float *rdq = malloc((size_t)c.nq * 4), *rdk = malloc((size_t)c.nk * 4),
          *rdv = malloc((size_t)c.nv * 4);
    CHECK_OK(qkv_attention_forward(rt, &c.d, c.q, c.k, c.v, out, lse));
    CHECK_OK(qkv__attention_forward_ref(rt, &pb, c.q, c.k, c.v, rout, rlse));
    compare(s->name, "out", 0, out, rout, c.no, 2e-5 * big, 2e-4 * big);
    compare(s->name, "lse", 1, lse, rlse, c.nlse, 2e-5 * big, 2e-6 * big);
    /* the backward of both paths from the same (reference) forward outputs */
    CHECK_OK(qkv_attention_backward(rt, &c.d, c.q, c.k, c.v, rout, rlse, c.dout, dq, dk, dv));
    CHECK_OK(
        qkv__attention_backward_ref(rt, &pb, c.q, c.k, c.v, rout, rlse, c.dout, rdq, rdk, rdv));
    compare(s->name, "dq", 2, dq, rdq, c.nq, 2e-5 * big, 2e-4 * big);
    compare(s->name, "dk", 3, dk, rdk, c.nk, 2e-5 * big, 2e-4 * big);
    compare(s->name, "dv", 4, dv, rdv, c.nv, 2e-5 * big, 2e-4 * big);
    CHECK_EQ_INT(oracle_count_nonfinite(out, c.no), 0);
    CHECK_EQ_INT(oracle_count_nonfinite(dq, c.nq), 0);
    CHECK_EQ_INT(oracle_count_nonfinite(dk, c.nk), 0);
    CHECK_EQ_INT(oracle_count_nonfinite(dv, c.nv), 0);
    free(out), free(lse), free(rout), free(rlse);
    free(dq), free(dk), free(dv), free(rdq), free(rdk), free(rdv);
    oracle_case_free(&c);
}

/* A random problem from 23 random bits r: sizes, heads, every mask kind. */
static spec random_spec(uint32_t r) {
    int64_t Hk = 1 + r % 3, G = 1 + (r >> 2) % 4;
    spec s = {"random",
              1 + (r >> 4) % 3,
              1 + (r >> 6) % 100,
              1 + (r >> 13) % 150,
              Hk * G,
              Hk,
              1 + (r >> 8) % 70,
              (r >> 20) % 2 ? 0 : 1 + (r >> 3) % 40,
              (int)((r >> 1) % 2),
              (r >> 5) % 3 ? -1 : (int64_t)((r >> 9) % 30),
              (r >> 7) % 4 ? -1 : (int64_t)((r >> 11) % 10),
              (int)((r >> 15) % 5),
              (int)((r >> 17) % 2),
              (int)((r >> 18) % 2),
              1.0f,
              0,
              0};
    return s;
}

static void test_shapes(void) {
    static const int64_t dims[] = {1, 3, 17, 64, 80, 96, 128, 256};
    const float A = 1.0f;
    /* head dims, Dv != D, sizes off the tile and vector widths, Tq != Tk both ways */
    for (size_t t = 0; t < sizeof dims / sizeof dims[0]; t++) {
        int64_t D = dims[t];
        spec a = {"dims", 2, 67, 67, 2, 2, D, 0, 0, -1, -1, BIAS_NONE, 0, 0, A, 0, 0};
        run_spec(&a, NULL, 1);
        spec b = {"dims causal Tq<Tk", 1, 33, 130, 3, 1, D, D == 1 ? 5 : D / 2 + 1, 1, -1, -1,
                  BIAS_NONE,           0, 0,  A,   0, 0};
        run_spec(&b, NULL, 1);
        spec e = {"dims causal Tq>Tk", 1, 90, 40, 2, 2, D, 0, 1, -1, -1, BIAS_NONE, 0, 0, A, 0, 0};
        run_spec(&e, NULL, 1);
        spec f = {"dims decode", 2, 1, 200, 8, 2, D, 0, 1, -1, -1, BIAS_NONE, 0, 0, A, 0, 0};
        run_spec(&f, NULL, 1);
        a.dropout = b.dropout = 0.1f, e.dropout = 0.5f, f.dropout = 0.9f;
        run_spec(&a, NULL, 1);
        run_spec(&b, NULL, 1);
        run_spec(&e, NULL, 1);
        run_spec(&f, NULL, 1);
    }
    /* every mask alone and combined, GQA / MQA, on odd sizes */
    static const struct {
        int causal;
        int64_t wl, wr;
        int bias, alibi, lens;
    } masks[] = {
        {0, -1, -1, BIAS_NONE, 0, 0},    {1, -1, -1, BIAS_NONE, 0, 0},
        {0, 5, -1, BIAS_NONE, 0, 0},     {0, -1, 3, BIAS_NONE, 0, 0},
        {0, 7, 2, BIAS_NONE, 0, 0},      {1, 20, -1, BIAS_NONE, 0, 0},
        {0, 0, 0, BIAS_NONE, 0, 0},      {0, -1, -1, BIAS_FULL, 0, 0},
        {0, -1, -1, BIAS_BCAST_B, 0, 0}, {0, -1, -1, BIAS_BCAST_H, 0, 0},
        {0, -1, -1, BIAS_BCAST_Q, 0, 0}, {0, -1, -1, BIAS_NONE, 1, 0},
        {0, -1, -1, BIAS_NONE, 0, 1},    {1, 30, 0, BIAS_BCAST_H, 1, 1},
        {1, -1, -1, BIAS_FULL, 1, 1},    {0, 40, 10, BIAS_BCAST_Q, 0, 1},
    };
    static const int64_t heads[][2] = {{4, 4}, {6, 2}, {6, 1}};
    for (size_t m = 0; m < sizeof masks / sizeof masks[0]; m++)
        for (size_t h = 0; h < 3; h++) {
            for (int shape = 0; shape < 3; shape++) {
                int64_t Tq = shape == 0 ? 70 : shape == 1 ? 19 : 150;
                int64_t Tk = shape == 0 ? 70 : shape == 1 ? 141 : 77;
                spec s = {"masks",
                          3,
                          Tq,
                          Tk,
                          heads[h][0],
                          heads[h][1],
                          shape == 1 ? 24 : 16,
                          shape == 2 ? 9 : 0,
                          masks[m].causal,
                          masks[m].wl,
                          masks[m].wr,
                          masks[m].bias,
                          masks[m].alibi,
                          masks[m].lens,
                          A,
                          0,
                          0};
                run_spec(&s, NULL, 1);
                s.name = "masks dropout";
                s.dropout = (m + h + (size_t)shape) % 2 ? 0.5f : 0.1f;
                run_spec(&s, NULL, 1);
            }
        }
    /* Tq = 1 with a long cache (decode split), MQA and GQA, with padding */
    for (int lens = 0; lens < 2; lens++) {
        spec a = {"decode mqa", 1, 1, 1000, 8, 1, 64, 0, 1, -1, -1, BIAS_NONE, 0, lens, A, 0, 0};
        run_spec(&a, NULL, 1);
        spec b = {"decode gqa", 3, 2, 777, 8, 2, 40, 24, 0, -1, -1, BIAS_BCAST_H, 1, lens, A, 0, 0};
        run_spec(&b, NULL, 1);
        a.dropout = 0.1f, b.dropout = 0.5f;
        run_spec(&a, NULL, 1);
        run_spec(&b, NULL, 1);
    }
    /* large B·H with tiny T */
    spec bh = {"B*H large", 64, 2, 3, 96, 32, 2, 0, 1, -1, -1, BIAS_BCAST_B, 1, 0, A, 0, 0};
    run_spec(&bh, NULL, 1);
    spec bh2 = {"B*H large T=1", 32, 1, 1, 64, 64, 5, 0, 0, -1, -1, BIAS_NONE, 0, 0, A, 0, 0};
    run_spec(&bh2, NULL, 1);
    /* longer sequences: several query and key tiles, interior full tiles, splits */
    spec lg = {"long", 1, 300, 300, 2, 1, 64, 0, 1, -1, -1, BIAS_NONE, 0, 0, A, 0, 0};
    run_spec(&lg, NULL, 1);
    spec lg2 = {"long window", 2, 257, 513, 4, 2, 32, 48, 1, 100, -1, BIAS_NONE, 1, 1, A, 0, 0};
    run_spec(&lg2, NULL, 1);
    spec lg3 = {"long custom scale", 1, 129, 129, 1,    1, 96, 0, 0, -1, -1,
                BIAS_FULL,           0, 0,   A,   0.3f, 0};
    run_spec(&lg3, NULL, 1);
    lg.dropout = 0.1f, lg2.dropout = 0.5f, lg3.dropout = 0.1f, bh.dropout = 0.5f;
    run_spec(&lg, NULL, 1);
    run_spec(&lg2, NULL, 1);
    run_spec(&lg3, NULL, 1);
    run_spec(&bh, NULL, 1);
    /* random shapes, then random shapes with dropout */
    static const float rates[4] = {0.1f, 0.5f, 0.25f, 0.9f};
    oracle_seed(4242);
    for (int t = 0; t < 70; t++) {
        spec s = random_spec((uint32_t)((oracle_uniform() + 1.0f) * 8388608.0f));
        if (t >= 40) s.name = "random dropout", s.dropout = rates[t % 4];
        run_spec(&s, NULL, 1);
    }
}

/* Rows with nothing to attend to: kv_lens 0, causal with Tq > Tk, -inf bias rows. */
static void test_empty_rows(void) {
    spec a = {"empty: lens/causal", 3, 50, 20, 2, 1, 8, 0, 1, -1, -1, BIAS_NONE, 0, 1, 1, 0, 0};
    run_spec(&a, NULL, 1);
    a.dropout = 0.5f;
    run_spec(&a, NULL, 1);
    qkv_attention_desc d =
        make_desc(&(spec){"", 1, 5, 70, 2, 2, 4, 0, 0, -1, -1, 0, 0, 0, 1, 0, 0});
    oracle_case c;
    oracle_case_init(&c, &d, BIAS_FULL, 0, NULL, 1.0f);
    for (int64_t j = 0; j < 70; j++) c.bias[1 * 70 + j] = -INFINITY;             /* h 0, row 1 */
    for (int64_t j = 0; j < 70; j += 2) c.bias[5 * 70 + 2 * 70 + j] = -INFINITY; /* h 1, row 2 */
    float out[5 * 2 * 4], lse[10], dq[40], dk[70 * 8], dv[70 * 8];
    CHECK_OK(qkv_attention_forward(NULL, &c.d, c.q, c.k, c.v, out, lse));
    CHECK(lse[1] == -INFINITY);
    for (int x = 0; x < 4; x++) CHECK(out[(1 * 2 + 0) * 4 + x] == 0.0f);
    CHECK_OK(qkv_attention_backward(NULL, &c.d, c.q, c.k, c.v, out, lse, c.dout, dq, dk, dv));
    for (int x = 0; x < 4; x++) CHECK(dq[(1 * 2 + 0) * 4 + x] == 0.0f);
    CHECK_EQ_INT(oracle_count_nonfinite(dk, 560) + oracle_count_nonfinite(dv, 560), 0);
    oracle_case_free(&c);
}

/* Huge logits: float scores carry ~eps · Σ|terms|; the tolerance is scaled accordingly. */
static void test_huge_logits(void) {
    spec a = {"logits 1e4", 2, 37, 45, 2, 2, 4, 0, 0, -1, -1, BIAS_NONE, 0, 0, 100.0f, 0, 0};
    run_spec(&a, NULL, 1e4 * 0x1p-24 * 4 / 2e-6); /* Σ|q k| scale ~ 1e4: a few ulp of 1e4 */
    spec b = {"logits 1e4 causal", 1, 70, 70, 1, 1, 16, 0, 1, -1, -1, BIAS_NONE, 0, 0, 50.0f, 0, 0};
    run_spec(&b, NULL, 1e4 * 0x1p-24 * 16 / 2e-6);
    /* ±1e30 from a bias: the softmax is one-hot where a single key wins */
    qkv_attention_desc d =
        make_desc(&(spec){"", 2, 4, 70, 2, 2, 3, 0, 0, -1, -1, 0, 0, 0, 1, 0, 0});
    oracle_case c;
    oracle_case_init(&c, &d, BIAS_FULL, 0, NULL, 1.0f);
    int64_t nb = 2 * 2 * 4 * 70;
    for (int64_t t = 0; t < nb; t++) c.bias[t] = c.bias[t] >= 0 ? 1e30f : -1e30f;
    float *out = malloc((size_t)c.no * 4), *lse = malloc((size_t)c.nlse * 4);
    float *g = malloc((size_t)(c.nq + c.nk + c.nv) * 4);
    CHECK_OK(qkv_attention_forward(NULL, &c.d, c.q, c.k, c.v, out, lse));
    CHECK_OK(qkv_attention_backward(NULL, &c.d, c.q, c.k, c.v, out, lse, c.dout, g, g + c.nq,
                                    g + c.nq + c.nk));
    CHECK_EQ_INT(oracle_count_nonfinite(out, c.no) + oracle_count_nonfinite(lse, c.nlse), 0);
    CHECK_EQ_INT(oracle_count_nonfinite(g, c.nq + c.nk + c.nv), 0);
    free(out), free(lse), free(g);
    oracle_case_free(&c);
}

/* ---------------------------------------------------------------- dropout mask */

/* The active ISA's dropout kernel against qkv__rng_uniform, element by element: both layouts,
 * row offsets of every residue mod 4 (a row's first Philox block is partial), Philox block
 * counters whose low word wraps inside one vector of blocks, indices near 2^63, seeds with
 * both words set, extreme rates. Nothing outside the tile may be written. */
static void test_dropout_kernel(void) {
    qkv_attn_kernels kr;
    qkv__kernels()->attn_f32_config(&kr);
    static const float rates[] = {0.1f, 0.5f, 0.9f, 1e-7f, 0.99999994f};
    static const uint64_t bases[] = {0,
                                     1,
                                     6,
                                     12345,
                                     (UINT64_C(1) << 34) - 19, /* block 2^32 - 5 (+ word 1) */
                                     (UINT64_C(1) << 34) - 61, /* block 2^32 - 16 (+ word 3) */
                                     (UINT64_C(1) << 63) - 5001};
    static const int64_t dims[][2] = {{1, 1}, {3, 5}, {8, 64}, {13, 33}, {17, 130}, {40, 64}};
    int64_t bad = 0, outside = 0, kept = 0, total = 0;
    for (size_t ri = 0; ri < sizeof rates / sizeof rates[0]; ri++)
        for (size_t bi = 0; bi < sizeof bases / sizeof bases[0]; bi++)
            for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++)
                for (int keymajor = 0; keymajor < 2; keymajor++) {
                    int64_t rows = dims[di][0], cols = dims[di][1];
                    uint64_t seed = UINT64_C(0x9E3779B97F4A7C15) * (ri * 7 + bi + 1);
                    qkv_attn_dropout dr = {{(uint32_t)seed, (uint32_t)(seed >> 32)},
                                           {(uint32_t)QKV_ATTN_DROPOUT_STREAM,
                                            (uint32_t)(QKV_ATTN_DROPOUT_STREAM >> 32)},
                                           rates[ri],
                                           (float)(1.0 / (1.0 - (double)rates[ri]))};
                    uint64_t first[40], col0 = (uint64_t)(di * 3 + bi);
                    for (int64_t r = 0; r < rows; r++)
                        first[r] = bases[bi] + (uint64_t)(r * (cols + 7 + (int64_t)di));
                    int64_t ld = keymajor ? rows + 5 : cols + 3;
                    int64_t rs = keymajor ? 1 : ld, cs = keymajor ? ld : 1;
                    int64_t n = keymajor ? cols * ld : rows * ld;
                    float *z = malloc((size_t)n * sizeof *z);
                    for (int64_t t = 0; t < n; t++) z[t] = 7.0f;
                    kr.dropout(rows, cols, first, col0, &dr, z, rs, cs);
                    for (int64_t r = 0; r < rows; r++)
                        for (int64_t c = 0; c < cols; c++) {
                            float u = qkv__rng_uniform(seed, QKV_ATTN_DROPOUT_STREAM,
                                                       first[r] + col0 + (uint64_t)c);
                            float want = u >= dr.p ? dr.keep : 0.0f, got = z[r * rs + c * cs];
                            if (got != want && bad++ < 3)
                                fprintf(stderr,
                                        "dropout p=%g base %llu r %lld c %lld: %g, want %g\n",
                                        (double)dr.p, (unsigned long long)bases[bi], (long long)r,
                                        (long long)c, (double)got, (double)want);
                            z[r * rs + c * cs] = 7.0f;
                            kept += want != 0.0f;
                            total++;
                        }
                    for (int64_t t = 0; t < n; t++) outside += z[t] != 7.0f;
                    free(z);
                }
    printf("  dropout kernel (%s): %lld elements, %lld kept, %lld wrong, %lld written outside\n",
           kr.name, (long long)total, (long long)kept, (long long)bad, (long long)outside);
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(outside, 0);
    CHECK(kept > 0 && kept < total);
}

/* The mask as the public entry points apply it, read back exactly:
 *   forward:  v one-hot (Dv = Tk, v_j = e_j), so out_ij = P_ij Z_ij;
 *   backward: dout one-hot over the rows of a kv-head group (Dv = Tq·G, dO_(i,g) = e_(iG+g)),
 *             so dv_j[iG + g] = P_ij Z_ij of head hk·G + g.
 * Each is 0 exactly where the key is masked or dropped; the zero patterns of the active path
 * must equal the reference's, and kept/dropped must equal the rule of attention.h. */
static void mask_readback(const spec *s) {
    const int64_t B = s->B, Tq = s->Tq, Tk = s->Tk, Hq = s->Hq, Hk = s->Hk, G = Hq / Hk;
    int32_t lens[8];
    for (int64_t b = 0; b < B && b < 8; b++)
        lens[b] = (int32_t)(b == 1 ? 0 : Tk - (b * 5) % (Tk + 1));
    int64_t mism_f = 0, mism_b = 0, rule = 0, kept = 0;
    for (int pass = 0; pass < 2; pass++) { /* 0: forward, 1: backward */
        spec t = *s;
        t.Dv = pass == 0 ? Tk : Tq * G;
        qkv_attention_desc d = make_desc(&t);
        oracle_case c;
        oracle_case_init(&c, &d, s->bias, s->alibi, s->lens ? lens : NULL, s->amp);
        qkv__attn_problem pb;
        CHECK_OK(qkv__attn_validate("test", &c.d, 0, &pb));
        const int64_t Dv = t.Dv;
        if (pass == 0) {
            memset(c.v, 0, (size_t)c.nv * sizeof *c.v);
            for (int64_t b = 0; b < B; b++)
                for (int64_t j = 0; j < Tk; j++)
                    for (int64_t hk = 0; hk < Hk; hk++) c.v[((b * Tk + j) * Hk + hk) * Dv + j] = 1;
        } else {
            memset(c.dout, 0, (size_t)c.no * sizeof *c.dout);
            for (int64_t b = 0; b < B; b++)
                for (int64_t i = 0; i < Tq; i++)
                    for (int64_t h = 0; h < Hq; h++)
                        c.dout[((b * Tq + i) * Hq + h) * Dv + i * G + h % G] = 1;
        }
        float *out = malloc((size_t)c.no * 4), *lse = malloc((size_t)c.nlse * 4);
        float *rout = malloc((size_t)c.no * 4), *rlse = malloc((size_t)c.nlse * 4);
        float *g = malloc((size_t)(c.nq + c.nk + c.nv) * 4);
        float *rg = malloc((size_t)(c.nq + c.nk + c.nv) * 4);
        CHECK_OK(qkv__attention_forward_ref(NULL, &pb, c.q, c.k, c.v, rout, rlse));
        if (pass == 0) {
            CHECK_OK(qkv_attention_forward(NULL, &c.d, c.q, c.k, c.v, out, lse));
        } else {
            CHECK_OK(qkv_attention_backward(NULL, &c.d, c.q, c.k, c.v, rout, rlse, c.dout, g,
                                            g + c.nq, g + c.nq + c.nk));
            CHECK_OK(qkv__attention_backward_ref(NULL, &pb, c.q, c.k, c.v, rout, rlse, c.dout, rg,
                                                 rg + c.nq, rg + c.nq + c.nk));
        }
        for (int64_t b = 0; b < B; b++)
            for (int64_t h = 0; h < Hq; h++)
                for (int64_t i = 0; i < Tq; i++)
                    for (int64_t j = 0; j < Tk; j++) {
                        int64_t hk = h / G, at, rat;
                        const float *got, *ref;
                        if (pass == 0) {
                            at = rat = ((b * Tq + i) * Hq + h) * Dv + j;
                            got = out, ref = rout;
                        } else {
                            at = rat = c.nq + c.nk + ((b * Tk + j) * Hk + hk) * Dv + i * G + h % G;
                            got = g, ref = rg;
                        }
                        int z = got[at] == 0.0f, rz = ref[rat] == 0.0f;
                        if (z != rz) {
                            if ((pass ? mism_b++ : mism_f++) < 3)
                                fprintf(stderr,
                                        "%s: %s mask (b %lld h %lld i %lld j %lld): %g vs "
                                        "reference %g\n",
                                        s->name, pass ? "backward" : "forward", (long long)b,
                                        (long long)h, (long long)i, (long long)j, (double)got[at],
                                        (double)ref[rat]);
                        }
                        /* visible keys of a live row have P > 0: zero iff dropped */
                        if (oracle_visible(&c.d, b, i, j) &&
                            rlse[(b * Hq + h) * Tq + i] > -INFINITY &&
                            (!c.bias || isfinite(c.bias[0]))) {
                            int dropped = oracle_drop(&c.d, b, h, i, j) == 0.0;
                            rule += z != dropped;
                            kept += !dropped;
                        }
                    }
        free(out), free(lse), free(rout), free(rlse), free(g), free(rg);
        oracle_case_free(&c);
    }
    CHECK_MSG(mism_f == 0 && mism_b == 0, "%s: %lld forward, %lld backward mask differences",
              s->name, (long long)mism_f, (long long)mism_b);
    CHECK_MSG(rule == 0, "%s: %lld elements against the dropout rule", s->name, (long long)rule);
    CHECK_MSG(kept > 0, "%s: nothing kept", s->name);
}

static void test_dropout_mask(void) {
    static const spec specs[] = {
        {"mask mha", 2, 37, 37, 3, 3, 16, 0, 0, -1, -1, BIAS_NONE, 0, 0, 1, 0, 0.1f},
        {"mask causal gqa Tq<Tk", 2, 21, 70, 6, 2, 8, 0, 1, -1, -1, BIAS_NONE, 0, 0, 1, 0, 0.5f},
        {"mask causal Tq>Tk (empty rows)", 1, 90, 33, 2, 2, 5, 0, 1, -1, -1, BIAS_NONE, 0, 0, 1, 0,
         0.1f},
        {"mask mqa window lens", 3, 45, 131, 4, 1, 7, 0, 0, 30, 5, BIAS_NONE, 0, 1, 1, 0, 0.5f},
        {"mask bias alibi", 2, 19, 67, 2, 1, 9, 0, 0, -1, -1, BIAS_BCAST_H, 1, 0, 1, 0, 0.9f},
        {"mask decode split", 1, 1, 700, 4, 1, 32, 0, 1, -1, -1, BIAS_NONE, 0, 1, 1, 0, 0.1f},
        {"mask bwd split", 1, 150, 150, 2, 2, 24, 0, 1, -1, -1, BIAS_NONE, 0, 0, 1, 0, 0.25f},
    };
    for (size_t t = 0; t < sizeof specs / sizeof specs[0]; t++) mask_readback(&specs[t]);
}

/* ---------------------------------------------------------------- threads */

static void test_threads(void) {
    static const spec specs[] = {
        {"threads mha causal", 2, 200, 200, 4, 4, 32, 0, 1, -1, -1, BIAS_NONE, 0, 0, 1, 0, 0},
        {"threads gqa lens", 3, 130, 150, 6, 2, 20, 12, 0, 50, -1, BIAS_BCAST_H, 1, 1, 1, 0, 0},
        {"threads decode split", 1, 1, 3000, 4, 1, 64, 0, 1, -1, -1, BIAS_NONE, 0, 0, 1, 0, 0},
        {"threads bwd split", 1, 300, 300, 2, 1, 48, 0, 1, -1, -1, BIAS_NONE, 0, 0, 1, 0, 0},
        {"threads dropout", 2, 200, 200, 4, 4, 32, 0, 1, -1, -1, BIAS_NONE, 0, 0, 1, 0, 0.1f},
        {"threads dropout gqa lens", 3, 130, 150, 6, 2, 20, 12, 0, 50, -1, BIAS_BCAST_H, 1, 1, 1, 0,
         0.5f},
        {"threads dropout decode", 1, 1, 3000, 4, 1, 64, 0, 1, -1, -1, BIAS_NONE, 0, 0, 1, 0, 0.1f},
        {"threads dropout bwd split", 1, 300, 300, 2, 1, 48, 0, 1, -1, -1, BIAS_NONE, 0, 0, 1, 0,
         0.5f},
    };
    qkv_runtime *rts[3] = {NULL, NULL, NULL};
    for (int t = 0; t < 3; t++) CHECK_OK(qkv_runtime_create(t + 1, &rts[t]));
    for (size_t si = 0; si < sizeof specs / sizeof specs[0]; si++) {
        const spec *s = &specs[si];
        qkv_attention_desc d = make_desc(s);
        int32_t lens[3] = {(int32_t)s->Tk, 0, (int32_t)(s->Tk / 3)};
        oracle_case c;
        oracle_case_init(&c, &d, s->bias, s->alibi, s->lens ? lens : NULL, s->amp);
        int64_t n = c.no + c.nlse + c.nq + c.nk + c.nv;
        float *res[3];
        for (int t = 0; t < 3; t++) {
            float *r = res[t] = malloc((size_t)n * 4);
            float *out = r, *lse = out + c.no, *dq = lse + c.nlse, *dk = dq + c.nq, *dv = dk + c.nk;
            CHECK_OK(qkv_attention_forward(rts[t], &c.d, c.q, c.k, c.v, out, lse));
            CHECK_OK(
                qkv_attention_backward(rts[t], &c.d, c.q, c.k, c.v, out, lse, c.dout, dq, dk, dv));
        }
        CHECK_MSG(memcmp(res[0], res[1], (size_t)n * 4) == 0, "%s: 1 vs 2 threads", s->name);
        CHECK_MSG(memcmp(res[0], res[2], (size_t)n * 4) == 0, "%s: 1 vs 3 threads", s->name);
        run_spec(s, rts[1], 1);
        for (int t = 0; t < 3; t++) free(res[t]);
        oracle_case_free(&c);
    }
    for (int t = 0; t < 3; t++) qkv_runtime_free(rts[t]);
}

/* Several callers share one runtime at once: each call's repacks use the runtime's scratch
 * block when it is free and their own memory when another call holds it (core/runtime.h);
 * every caller must get exactly what a lone call gets (and TSan sees no race). */
typedef struct shared_job {
    qkv_runtime *rt;
    const oracle_case *c;
    float *res; /* out, lse, dq, dk, dv */
} shared_job;

static void *shared_caller(void *p) {
    shared_job *j = p;
    const oracle_case *c = j->c;
    float *out = j->res, *lse = out + c->no, *dq = lse + c->nlse, *dk = dq + c->nq,
          *dv = dk + c->nk;
    for (int rep = 0; rep < 3; rep++) {
        CHECK_OK(qkv_attention_forward(j->rt, &c->d, c->q, c->k, c->v, out, lse));
        CHECK_OK(
            qkv_attention_backward(j->rt, &c->d, c->q, c->k, c->v, out, lse, c->dout, dq, dk, dv));
    }
    return NULL;
}

static void test_shared_runtime(void) {
    spec s = {"shared runtime", 2, 300, 300, 4, 4, 32, 0, 1, -1, -1, BIAS_NONE, 0, 0, 1, 0, 0};
    qkv_attention_desc d = make_desc(&s);
    oracle_case c;
    oracle_case_init(&c, &d, BIAS_NONE, 0, NULL, 1.0f);
    int64_t n = c.no + c.nlse + c.nq + c.nk + c.nv;
    qkv_runtime *rt = NULL;
    CHECK_OK(qkv_runtime_create(2, &rt));
    enum { CALLERS = 3 };
    shared_job jobs[CALLERS + 1];
    pthread_t th[CALLERS];
    for (int t = 0; t <= CALLERS; t++) jobs[t] = (shared_job){rt, &c, malloc((size_t)n * 4)};
    shared_caller(&jobs[CALLERS]); /* alone */
    for (int t = 0; t < CALLERS; t++) pthread_create(&th[t], NULL, shared_caller, &jobs[t]);
    for (int t = 0; t < CALLERS; t++) pthread_join(th[t], NULL);
    for (int t = 0; t < CALLERS; t++)
        CHECK_MSG(memcmp(jobs[t].res, jobs[CALLERS].res, (size_t)n * 4) == 0,
                  "caller %d on a shared runtime differs from a lone call", t);
    for (int t = 0; t <= CALLERS; t++) free(jobs[t].res);
    qkv_runtime_free(rt);
    oracle_case_free(&c);
}

/* ---------------------------------------------------------------- memory */

/* Counts live bytes through the allocator hook; pool threads allocate and free too. */
static pthread_mutex_t count_mu_ = PTHREAD_MUTEX_INITIALIZER;
static size_t live_, peak_;
static void *count_alloc(size_t size, size_t align, void *user) {
    (void)user;
    size_t *p = aligned_alloc(64, (size + 127) / 64 * 64 + 64);
    if (!p || align > 64) {
        free(p);
        return NULL;
    }
    *p = size;
    pthread_mutex_lock(&count_mu_);
    live_ += size;
    if (live_ > peak_) peak_ = live_;
    pthread_mutex_unlock(&count_mu_);
    return (char *)p + 64;
}
static void count_free(void *p, void *user) {
    (void)user;
    if (!p) return;
    size_t *base = (size_t *)((char *)p - 64);
    pthread_mutex_lock(&count_mu_);
    live_ -= *base;
    pthread_mutex_unlock(&count_mu_);
    free(base);
}

/* The library's own allocations stay linear in T: at T = 4096 the Tq x Tk float grids of the
 * two heads would be 128 MiB; the fused path must stay far below (checked < 16 MiB: the
 * backward's per-thread packed queries and its 4 split dq buffers are a few MiB). */
static void test_memory(void) {
    if (qkv_arch_active() == QKV_ARCH_SCALAR) return; /* the reference: O(T²) time, not fused */
    spec s = {"memory", 1, 4096, 4096, 2, 1, 16, 0, 1, -1, -1, BIAS_NONE, 0, 0, 1, 0, 0};
    qkv_attention_desc d = make_desc(&s);
    oracle_case c;
    oracle_case_init(&c, &d, BIAS_NONE, 0, NULL, 1.0f);
    float *out = malloc((size_t)c.no * 4), *lse = malloc((size_t)c.nlse * 4);
    float *g = malloc((size_t)(c.nq + c.nk + c.nv) * 4);
    qkv_runtime *rt = NULL;
    qkv_allocator a = {count_alloc, count_free, NULL};
    qkv_set_allocator(&a); /* before the runtime exists: it frees through the same hook */
    CHECK_OK(qkv_runtime_create(2, &rt));
    pthread_mutex_lock(&count_mu_);
    size_t base = live_; /* the runtime's own blocks */
    peak_ = live_;
    pthread_mutex_unlock(&count_mu_);
    CHECK_OK(qkv_attention_forward(rt, &c.d, c.q, c.k, c.v, out, lse));
    pthread_mutex_lock(&count_mu_);
    size_t fwd_peak = peak_ - base;
    base = live_;
    peak_ = live_;
    pthread_mutex_unlock(&count_mu_);
    CHECK_OK(qkv_attention_backward(rt, &c.d, c.q, c.k, c.v, out, lse, c.dout, g, g + c.nq,
                                    g + c.nq + c.nk));
    pthread_mutex_lock(&count_mu_);
    size_t bwd_peak = peak_ - base;
    pthread_mutex_unlock(&count_mu_);
    qkv_runtime_free(rt);
    qkv_set_allocator(NULL);
    printf("  memory at T = 4096: forward workspace %zu bytes, backward %zu bytes\n", fwd_peak,
           bwd_peak);
    CHECK(fwd_peak < ((size_t)16 << 20));
    CHECK(bwd_peak < ((size_t)16 << 20));
    free(out), free(lse), free(g);
    oracle_case_free(&c);
}

int main(void) {
    test_use_arch_from_env();
    test_exp();
    test_dropout_kernel();
    test_dropout_mask();
    test_shapes();
    test_empty_rows();
    test_huge_logits();
    test_threads();
    test_shared_runtime();
    test_memory();
    printf("worst error / tolerance: out %.3f lse %.3f dq %.3f dk %.3f dv %.3f\n", g_worst[0],
           g_worst[1], g_worst[2], g_worst[3], g_worst[4]);
    return test_finish("attention_flash");
}
