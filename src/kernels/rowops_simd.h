/* rowops_simd.h — the vectorized row kernels (exp, activations, softmax, log-softmax,
 * LayerNorm, RMSNorm, forward and backward), written once against a tiny vector interface.
 *
 * Included only by kernels/avx2/rowops_avx2.c and kernels/avx512/rowops_avx512.c, which first
 * define the interface for their ISA and the name of each kernel:
 *   vf, VW                         float vector type and its lane count (8 or 16)
 *   vf_set1 vf_zero vf_load vf_store vf_add vf_sub vf_mul vf_div vf_fma(a,b,c)=a*b+c
 *   vf_min(a,b) vf_max(a,b)        x86 semantics: a NaN in either gives b
 *   vf_abs vf_round (to nearest)  vf_ldexp(p, n) = p·2^n for integral n in [-150, 128]
 *   vf_lt(a, b, x, y)              a < b ? x : y per lane
 *   vf_gt0(a)                      1 where a > 0, else 0
 *   vf_load_tail(p, k, fill)       k < VW lanes from p (others = fill), never reads past p+k
 *   vf_store_tail(p, k, v)         the first k lanes only
 *   vf_keep(v, k)                  lanes >= k set to 0
 *   vf_hsum(v) vf_hmax(v)          horizontal sum / max (float)
 *   RK(name)                       the exported name, e.g. qkv__softmax_f32_avx512
 * so both ISAs run the same arithmetic (same polynomials, same order of operations) and one
 * test and one contract (docs/KERNELS.md, "Row kernels") cover both.
 *
 * Why each piece is built the way it is:
 *   - exp: n = round(x·log2 e), r = x − n·ln2 (two FMA steps), a degree-6 polynomial fitted on
 *     |r| <= ln2/2 (Chebyshev fit, 2e-9 error), scaled by 2^n through vf_ldexp, which rounds
 *     once even for subnormal results. Inputs are clamped to [-104, 89] (NaN kept), which gives
 *     exp(-inf) = 0, exp(x > 88.7228) = +inf, 0 below -103.97.
 *   - GELU (erf): Φ(-|x|) = ½ erfc(|x|/√2) = ½ e^{-x²/2} R(t), t = 1/(1 + 0.3 z), z = |x|/√2,
 *     R(t)/t a degree-8 polynomial fitted (relative, 2e-8) for z in [0, 10]. x² is split exactly
 *     (x² = h + l with an FMA) so e^{-x²/2} keeps full relative accuracy for large |x|. Using
 *     erfc for both signs keeps the relative error small in the far negative tail, where
 *     1 + erf(x/√2) would cancel.
 *   - GELU (tanh) and SiLU go through the logistic function: ½(1 + tanh u) = σ(2u), so
 *     gelu_tanh(x) = x·σ(2u) and silu(x) = x·σ(x), no tanh needed; σ(v) is formed from
 *     e^{-|v|} so it keeps full relative accuracy in the negative tail; the backwards use
 *     1 − σ = σ·e^{-v} (no cancellation).
 *   - Sums over a row are kept in float vectors (4 accumulators, for FMA latency) for chunks
 *     of ROW_CHUNK elements and added into a double per chunk: float-fast, but the error does
 *     not grow with the row length (50257-long vocab rows).
 *   - LayerNorm sums x − x[0] for the mean (exact for rows with a large common offset, 1e4 +
 *     noise) and subtracts the double mean as hi + lo floats, so such rows normalize as
 *     exactly as the double reference.
 * Nothing here allocates; every kernel handles any n (tails with masked loads/stores). */

#define ROW_CHUNK 1024 /* floats summed in float before a flush into double; multiple of 4*VW */

/* ---------------------------------------------------------------- vector math */

#define LOG2E 1.44269504088896341f
#define LN2_HI 0.693147182464599609375f        /* float(ln 2) */
#define LN2_LO -1.904654299957768e-09f         /* ln 2 − LN2_HI */
#define SQRT_HALF_F 0.70710678118654752f       /* 1/√2 */
#define INV_SQRT_2PI_F 0.39894228040143268f    /* 1/√(2π) */
#define TWO_SQRT_2_OVER_PI 1.5957691216057308f /* 2·√(2/π) */
#define GELU_TANH_K 0.044715f

static inline vf v_exp(vf x) {
    x = vf_max(vf_set1(-104.0f), vf_min(vf_set1(89.0f), x)); /* NaN stays NaN */
    vf n = vf_round(vf_mul(x, vf_set1(LOG2E)));
    vf r = vf_fma(n, vf_set1(-LN2_HI), x);
    r = vf_fma(n, vf_set1(-LN2_LO), r);
    vf p = vf_set1(0.001394110843f);
    p = vf_fma(p, r, vf_set1(0.008375126398f));
    p = vf_fma(p, r, vf_set1(0.0416663529f));
    p = vf_fma(p, r, vf_set1(0.1666641551f));
    p = vf_fma(p, r, vf_set1(0.5000000047f));
    p = vf_fma(p, r, vf_set1(1.000000038f));
    p = vf_fma(p, r, vf_set1(1.0f));
    return vf_ldexp(p, n);
}

/* Φ(-|x|) = ½ erfc(|x|/√2); *gauss = e^{-x²/2} (for φ(x) = gauss/√(2π)). |x| is clamped to 15,
 * where both are 0 in float. */
static inline vf v_phi_neg(vf x, vf *gauss) {
    vf a = vf_min(vf_set1(15.0f), vf_abs(x));
    vf z = vf_mul(a, vf_set1(SQRT_HALF_F));
    vf t = vf_div(vf_set1(1.0f), vf_fma(z, vf_set1(0.3f), vf_set1(1.0f)));
    vf p = vf_set1(-0.1307708773f);
    p = vf_fma(p, t, vf_set1(0.4919342706f));
    p = vf_fma(p, t, vf_set1(-0.5261516628f));
    p = vf_fma(p, t, vf_set1(0.5645142422f));
    p = vf_fma(p, t, vf_set1(-0.1069833625f));
    p = vf_fma(p, t, vf_set1(0.2205391691f));
    p = vf_fma(p, t, vf_set1(0.1467960222f));
    p = vf_fma(p, t, vf_set1(0.1709491199f));
    p = vf_fma(p, t, vf_set1(0.1691730577f));
    vf h = vf_mul(a, a);
    vf l = vf_fma(a, a, vf_sub(vf_zero(), h)); /* a² − h, exact */
    vf e = v_exp(vf_mul(h, vf_set1(-0.5f)));
    e = vf_fma(e, vf_mul(l, vf_set1(-0.5f)), e); /* e^{-h/2}·(1 − l/2) */
    *gauss = e;
    return vf_mul(vf_mul(vf_set1(0.5f), e), vf_mul(p, t));
}

/* Φ(x) from Φ(-|x|). */
static inline vf v_phi(vf x, vf *gauss) {
    vf q = v_phi_neg(x, gauss);
    return vf_lt(x, vf_zero(), q, vf_sub(vf_set1(1.0f), q));
}

/* 2u = 2√(2/π)(x + k x³) = x (2√(2/π) + 2√(2/π) k x²) */
static inline vf v_gelu_tanh_2u(vf x) {
    vf x2 = vf_mul(x, x);
    return vf_mul(
        x, vf_fma(x2, vf_set1(TWO_SQRT_2_OVER_PI * GELU_TANH_K), vf_set1(TWO_SQRT_2_OVER_PI)));
}

static inline vf v_gelu_erf(vf x) {
    vf g;
    return vf_mul(x, v_phi(x, &g));
}
/* σ(v) = 1/(1 + e^{-v}) from e = e^{-|v|} (never overflows, keeps the tail for v < 0). */
static inline vf v_sigmoid(vf v) {
    vf e = v_exp(vf_sub(vf_zero(), vf_abs(v)));
    vf r = vf_div(vf_set1(1.0f), vf_add(vf_set1(1.0f), e));
    return vf_lt(v, vf_zero(), vf_mul(e, r), r);
}
static inline vf v_gelu_tanh(vf x) { return vf_mul(x, v_sigmoid(v_gelu_tanh_2u(x))); }
static inline vf v_silu(vf x) { return vf_mul(x, v_sigmoid(x)); }
static inline vf v_relu(vf x) { return vf_max(x, vf_zero()); } /* NaN gives 0, as the ref */

/* tanh: below |x| = 0.4 the Taylor series to x¹³ (truncation < 5e-9 relative), above it
 * (1 − e)/(1 + e) with e = e^{-2|x|} (1 − e ≥ 0.55: no cancellation). *e_out = e (the large
 * path's) for the derivative. NaN takes the large path and stays NaN; ±inf give ±1. */
#define TANH_SMALL 0.4f
static inline vf v_tanh_e(vf x, vf *e_out) {
    vf a = vf_abs(x), x2 = vf_mul(x, x);
    vf p = vf_set1(21844.0f / 6081075.0f);
    p = vf_fma(p, x2, vf_set1(-1382.0f / 155925.0f));
    p = vf_fma(p, x2, vf_set1(62.0f / 2835.0f));
    p = vf_fma(p, x2, vf_set1(-17.0f / 315.0f));
    p = vf_fma(p, x2, vf_set1(2.0f / 15.0f));
    p = vf_fma(p, x2, vf_set1(-1.0f / 3.0f));
    vf small = vf_fma(vf_mul(x, x2), p, x);
    vf e = v_exp(vf_mul(a, vf_set1(-2.0f)));
    vf t = vf_div(vf_sub(vf_set1(1.0f), e), vf_add(vf_set1(1.0f), e));
    vf large = vf_lt(x, vf_zero(), vf_sub(vf_zero(), t), t);
    *e_out = e;
    return vf_lt(a, vf_set1(TANH_SMALL), small, large);
}
static inline vf v_tanh(vf x) {
    vf e;
    return v_tanh_e(x, &e);
}

/* act'(x). ±inf and NaN give NaN (grad + (x − x)), as the double reference does; inside, x
 * is clamped where act' has reached its limit so no inf·0 appears. */
static inline vf v_gelu_erf_grad(vf x) {
    vf g;
    vf phi = v_phi(x, &g);
    vf xc = vf_max(vf_set1(-20.0f), vf_min(vf_set1(20.0f), x));
    vf d = vf_fma(vf_mul(xc, g), vf_set1(INV_SQRT_2PI_F), phi);
    return vf_add(d, vf_sub(x, x));
}
static inline vf v_gelu_tanh_grad(vf x) {
    vf xc = vf_max(vf_set1(-20.0f), vf_min(vf_set1(20.0f), x));
    vf x2 = vf_mul(xc, xc);
    vf v = v_gelu_tanh_2u(xc);
    vf e = v_exp(vf_min(vf_set1(80.0f), vf_sub(vf_zero(), v))); /* e^{-2u} */
    vf s = vf_div(vf_set1(1.0f), vf_add(vf_set1(1.0f), e));     /* σ(2u) */
    vf du = vf_fma(x2, vf_set1(3.0f * TWO_SQRT_2_OVER_PI * GELU_TANH_K),
                   vf_set1(TWO_SQRT_2_OVER_PI));               /* d(2u)/dx */
    vf d = vf_fma(vf_mul(xc, du), vf_mul(s, vf_mul(s, e)), s); /* s + x·du·s(1−s) */
    return vf_add(d, vf_sub(x, x));
}
/* 1 − tanh²: 1 − t² below |x| = 0.4, 4e/(1 + e)² above (no cancellation in the tail). */
static inline vf v_tanh_grad(vf x) {
    vf e;
    vf t = v_tanh_e(x, &e);
    vf one_e = vf_add(vf_set1(1.0f), e);
    vf large = vf_div(vf_mul(vf_set1(4.0f), e), vf_mul(one_e, one_e));
    return vf_lt(vf_abs(x), vf_set1(TANH_SMALL), vf_fma(vf_sub(vf_zero(), t), t, vf_set1(1.0f)),
                 large);
}
static inline vf v_silu_grad(vf x) {
    vf xc = vf_max(vf_set1(-80.0f), vf_min(vf_set1(80.0f), x));
    vf e = v_exp(vf_sub(vf_zero(), xc));
    vf s = vf_div(vf_set1(1.0f), vf_add(vf_set1(1.0f), e));
    vf d = vf_mul(s, vf_fma(xc, vf_mul(s, e), vf_set1(1.0f))); /* s(1 + x(1−s)) */
    return vf_add(d, vf_sub(x, x));
}

/* ---------------------------------------------------------------- loads, stores, tails */

/* k == VW: a full vector (the compiler folds the test in the unrolled main loops). */
static inline vf ld(const float *p, size_t k, float fill) {
    return k == VW ? vf_load(p) : vf_load_tail(p, k, fill);
}
static inline void st(float *p, size_t k, vf v) {
    if (k == VW)
        vf_store(p, v);
    else
        vf_store_tail(p, k, v);
}

/* Maps F over x (n) into y (n); y may be x. */
#define MAP_ROW(F)                                                                                 \
    do {                                                                                           \
        size_t i_ = 0;                                                                             \
        for (; i_ + VW <= n; i_ += VW) vf_store(y + i_, F(vf_load(x + i_)));                       \
        if (i_ < n) vf_store_tail(y + i_, n - i_, F(vf_load_tail(x + i_, n - i_, 0.0f)));          \
    } while (0)

/* dx (n) += dy · G(x) */
#define MAP_GRAD(G)                                                                                \
    do {                                                                                           \
        size_t i_ = 0;                                                                             \
        for (; i_ + VW <= n; i_ += VW)                                                             \
            vf_store(dx + i_, vf_fma(vf_load(dy + i_), G(vf_load(x + i_)), vf_load(dx + i_)));     \
        if (i_ < n) {                                                                              \
            size_t k_ = n - i_;                                                                    \
            vf g_ = G(vf_load_tail(x + i_, k_, 0.0f));                                             \
            vf_store_tail(                                                                         \
                dx + i_, k_,                                                                       \
                vf_fma(vf_load_tail(dy + i_, k_, 0.0f), g_, vf_load_tail(dx + i_, k_, 0.0f)));     \
        }                                                                                          \
    } while (0)

/* ---------------------------------------------------------------- row reductions
 *
 * One reduction loop serves every pass that sums over a row: term() computes the summand(s)
 * of one vector for a compile-time kind (and may store a side result, e.g. the exponentials
 * of softmax), row_sum() unrolls it over 4 accumulators and flushes into double per chunk. */

enum {
    T_EXP,    /* Σ e, e = exp(x − m), stored into y when y != NULL */
    T_SUM,    /* Σ (x − m) */
    T_DEV2,   /* Σ d², d = (x − mh) − ml */
    T_SQ,     /* Σ x² */
    T_DOT,    /* Σ x · y */
    T_LN_BWD, /* Σ dx̂, Σ dx̂·x̂ (x̂ = (x − m)·r, dx̂ = dy·w); dw += dy·x̂, db += dy */
    T_RMS_BWD, /* Σ dx̂·x̂ (x̂ = x·r); dw += dy·x̂ */
};

typedef struct {
    const float *x, *y, *w; /* y: the second operand (dy, or the exp output) */
    float *out, *dw, *db;
    vf m, mh, ml, r;
} row_args;

static inline __attribute__((always_inline)) void term(int kind, const row_args *a, size_t i,
                                                       size_t k, vf *t1, vf *t2) {
    switch (kind) {
    case T_EXP: {
        vf e = v_exp(vf_sub(ld(a->x + i, k, 0.0f), a->m));
        if (a->out) st(a->out + i, k, e);
        *t1 = e;
        break;
    }
    case T_SUM: *t1 = vf_sub(ld(a->x + i, k, 0.0f), a->m); break; /* row_sum masks tails */
    case T_DEV2: {
        vf d = vf_sub(vf_sub(ld(a->x + i, k, 0.0f), a->mh), a->ml);
        *t1 = vf_mul(d, d);
        break;
    }
    case T_SQ: {
        vf x = ld(a->x + i, k, 0.0f);
        *t1 = vf_mul(x, x);
        break;
    }
    case T_DOT: *t1 = vf_mul(ld(a->x + i, k, 0.0f), ld(a->y + i, k, 0.0f)); break;
    case T_LN_BWD:
    case T_RMS_BWD: {
        vf x = ld(a->x + i, k, 0.0f), dy = ld(a->y + i, k, 0.0f);
        vf xh = vf_mul(kind == T_LN_BWD ? vf_sub(x, a->m) : x, a->r);
        vf dxh = a->w ? vf_mul(dy, ld(a->w + i, k, 0.0f)) : dy;
        if (a->dw) st(a->dw + i, k, vf_fma(dy, xh, ld(a->dw + i, k, 0.0f)));
        if (kind == T_LN_BWD && a->db) st(a->db + i, k, vf_add(dy, ld(a->db + i, k, 0.0f)));
        *t1 = kind == T_LN_BWD ? dxh : vf_zero();
        *t2 = vf_mul(dxh, xh);
        break;
    }
    }
}

static inline __attribute__((always_inline)) void row_sum(int kind, const row_args *a, size_t n,
                                                          double *s1, double *s2) {
    const int two = kind == T_LN_BWD || kind == T_RMS_BWD;
    double d1 = 0.0, d2 = 0.0;
    for (size_t c0 = 0; c0 < n; c0 += ROW_CHUNK) {
        const size_t c1 = n - c0 < ROW_CHUNK ? n : c0 + ROW_CHUNK;
        vf p[4] = {vf_zero(), vf_zero(), vf_zero(), vf_zero()};
        vf q[4] = {vf_zero(), vf_zero(), vf_zero(), vf_zero()};
        vf t1, t2 = vf_zero();
        size_t i = c0;
        for (; i + 4 * VW <= c1; i += 4 * VW)
            for (int u = 0; u < 4; u++) {
                term(kind, a, i + (size_t)u * VW, VW, &t1, &t2);
                p[u] = vf_add(p[u], t1);
                if (two) q[u] = vf_add(q[u], t2);
            }
        for (; i + VW <= c1; i += VW) {
            term(kind, a, i, VW, &t1, &t2);
            p[0] = vf_add(p[0], t1);
            if (two) q[0] = vf_add(q[0], t2);
        }
        if (i < c1) {
            term(kind, a, i, c1 - i, &t1, &t2);
            p[1] = vf_add(p[1], vf_keep(t1, c1 - i));
            if (two) q[1] = vf_add(q[1], vf_keep(t2, c1 - i));
        }
        d1 += (double)vf_hsum(vf_add(vf_add(p[0], p[1]), vf_add(p[2], p[3])));
        if (two) d2 += (double)vf_hsum(vf_add(vf_add(q[0], q[1]), vf_add(q[2], q[3])));
    }
    *s1 = d1;
    if (s2) *s2 = d2;
}

/* max over x (n); NaN entries are skipped (vf_max(x, m) keeps m), as the reference does. */
static float row_max(const float *x, size_t n) {
    vf m[4] = {vf_set1(-INFINITY), vf_set1(-INFINITY), vf_set1(-INFINITY), vf_set1(-INFINITY)};
    size_t i = 0;
    for (; i + 4 * VW <= n; i += 4 * VW)
        for (int u = 0; u < 4; u++) m[u] = vf_max(vf_load(x + i + (size_t)u * VW), m[u]);
    for (; i + VW <= n; i += VW) m[0] = vf_max(vf_load(x + i), m[0]);
    if (i < n) m[1] = vf_max(vf_load_tail(x + i, n - i, -INFINITY), m[1]);
    return vf_hmax(vf_max(vf_max(m[0], m[1]), vf_max(m[2], m[3])));
}

/* 1 if every x[i] is -inf. */
static int row_all_neg_inf(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (x[i] != -INFINITY) return 0;
    return 1;
}

static void fill_row(float *y, size_t n, float v) {
    for (size_t i = 0; i < n; i++) y[i] = v;
}

/* ---------------------------------------------------------------- kernels */

void RK(exp_f32)(const float *x, float *y, size_t n) { MAP_ROW(v_exp); }

void RK(act_f32)(qkv_act act, const float *x, float *y, size_t n) {
    switch (act) {
    case QKV_ACT_NONE:
        if (y != x) memmove(y, x, n * sizeof *x);
        break;
    case QKV_ACT_GELU_ERF: MAP_ROW(v_gelu_erf); break;
    case QKV_ACT_GELU_TANH: MAP_ROW(v_gelu_tanh); break;
    case QKV_ACT_RELU: MAP_ROW(v_relu); break;
    case QKV_ACT_SILU: MAP_ROW(v_silu); break;
    case QKV_ACT_TANH: MAP_ROW(v_tanh); break;
    }
}

/* y = act(y + bias) + res, lane by lane: the operations of the GEMM epilogue's bias loop, act_f32
 * (MAP_ROW: the same F on the same tail lanes) and residual loop, in one pass. */
#define EPI_ROW(F)                                                                                 \
    do {                                                                                           \
        size_t i_ = 0;                                                                             \
        for (; i_ + VW <= n; i_ += VW) {                                                           \
            vf v_ = vf_load(y + i_);                                                               \
            if (bias) v_ = vf_add(v_, vf_load(bias + i_));                                         \
            v_ = F(v_);                                                                            \
            if (res) v_ = vf_add(v_, vf_load(res + i_));                                           \
            vf_store(y + i_, v_);                                                                  \
        }                                                                                          \
        if (i_ < n) {                                                                              \
            size_t k_ = n - i_;                                                                    \
            vf v_ = vf_load_tail(y + i_, k_, 0.0f);                                                \
            if (bias) v_ = vf_add(v_, vf_load_tail(bias + i_, k_, 0.0f));                          \
            v_ = F(v_);                                                                            \
            if (res) v_ = vf_add(v_, vf_load_tail(res + i_, k_, 0.0f));                            \
            vf_store_tail(y + i_, k_, v_);                                                         \
        }                                                                                          \
    } while (0)

static inline vf v_ident(vf x) { return x; }

void RK(epilogue_row_f32)(float *y, const float *bias, qkv_act act, const float *res, size_t n) {
    switch (act) {
    case QKV_ACT_NONE: EPI_ROW(v_ident); break;
    case QKV_ACT_GELU_ERF: EPI_ROW(v_gelu_erf); break;
    case QKV_ACT_GELU_TANH: EPI_ROW(v_gelu_tanh); break;
    case QKV_ACT_RELU: EPI_ROW(v_relu); break;
    case QKV_ACT_SILU: EPI_ROW(v_silu); break;
    case QKV_ACT_TANH: EPI_ROW(v_tanh); break;
    }
}

void RK(act_bwd_f32)(qkv_act act, const float *x, const float *dy, float *dx, size_t n) {
    switch (act) {
    case QKV_ACT_NONE: {
        size_t i = 0;
        for (; i + VW <= n; i += VW) vf_store(dx + i, vf_add(vf_load(dx + i), vf_load(dy + i)));
        if (i < n)
            vf_store_tail(
                dx + i, n - i,
                vf_add(vf_load_tail(dx + i, n - i, 0.0f), vf_load_tail(dy + i, n - i, 0.0f)));
        break;
    }
    case QKV_ACT_GELU_ERF: MAP_GRAD(v_gelu_erf_grad); break;
    case QKV_ACT_GELU_TANH: MAP_GRAD(v_gelu_tanh_grad); break;
    case QKV_ACT_RELU: MAP_GRAD(vf_gt0); break;
    case QKV_ACT_SILU: MAP_GRAD(v_silu_grad); break;
    case QKV_ACT_TANH: MAP_GRAD(v_tanh_grad); break;
    }
}

/* Both softmaxes: max, then exponentials (stored for softmax, only summed for log-softmax),
 * then the scale (softmax) or (x − m) − log s (log-softmax). */
static void softmax_rows(const float *x, float *y, size_t rows, size_t n, int is_log) {
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * n; /* (n) */
        float *yr = y + r * n;       /* (n) */
        const float m = row_max(xr, n);
        if (m == -INFINITY && row_all_neg_inf(xr, n)) {
            fill_row(yr, n, is_log ? -INFINITY : 0.0f);
            continue;
        }
        row_args a = {.x = xr, .out = is_log ? NULL : yr, .m = vf_set1(m)};
        double s;
        row_sum(T_EXP, &a, n, &s, NULL);
        size_t i = 0;
        if (is_log) {
            const vf ls = vf_set1((float)log(s)), vm = vf_set1(m);
            for (; i + VW <= n; i += VW) vf_store(yr + i, vf_sub(vf_sub(vf_load(xr + i), vm), ls));
            if (i < n)
                vf_store_tail(yr + i, n - i,
                              vf_sub(vf_sub(vf_load_tail(xr + i, n - i, 0.0f), vm), ls));
        } else {
            const vf inv = vf_set1((float)(1.0 / s));
            for (; i + VW <= n; i += VW) vf_store(yr + i, vf_mul(vf_load(yr + i), inv));
            if (i < n) vf_store_tail(yr + i, n - i, vf_mul(vf_load_tail(yr + i, n - i, 0.0f), inv));
        }
    }
}

void RK(softmax_f32)(const float *x, float *y, size_t rows, size_t n) {
    softmax_rows(x, y, rows, n, 0);
}
void RK(log_softmax_f32)(const float *x, float *y, size_t rows, size_t n) {
    softmax_rows(x, y, rows, n, 1);
}

/* dx += y ∘ (dy − Σ dy∘y) */
void RK(softmax_bwd_f32)(const float *y, const float *dy, float *dx, size_t rows, size_t n) {
    for (size_t r = 0; r < rows; r++) {
        const float *yr = y + r * n, *dyr = dy + r * n; /* (n) */
        float *dxr = dx + r * n;                        /* (n) */
        row_args a = {.x = yr, .y = dyr};
        double s;
        row_sum(T_DOT, &a, n, &s, NULL);
        const vf vs = vf_set1((float)s);
        size_t i = 0;
        for (; i + VW <= n; i += VW)
            vf_store(dxr + i,
                     vf_fma(vf_load(yr + i), vf_sub(vf_load(dyr + i), vs), vf_load(dxr + i)));
        if (i < n) {
            const size_t k = n - i;
            vf_store_tail(dxr + i, k,
                          vf_fma(vf_load_tail(yr + i, k, 0.0f),
                                 vf_sub(vf_load_tail(dyr + i, k, 0.0f), vs),
                                 vf_load_tail(dxr + i, k, 0.0f)));
        }
    }
}

/* dx += dy − exp(y)·Σ dy; a row of log-probabilities all -inf (fully masked) gets nothing. */
void RK(log_softmax_bwd_f32)(const float *y, const float *dy, float *dx, size_t rows, size_t n) {
    for (size_t r = 0; r < rows; r++) {
        const float *yr = y + r * n, *dyr = dy + r * n; /* (n) */
        float *dxr = dx + r * n;                        /* (n) */
        if (yr[0] == -INFINITY && row_all_neg_inf(yr, n)) continue;
        row_args a = {.x = dyr, .m = vf_zero()};
        double s;
        row_sum(T_SUM, &a, n, &s, NULL);
        const vf vs = vf_set1((float)s);
        size_t i = 0;
        for (; i + VW <= n; i += VW) {
            vf g = vf_sub(vf_load(dyr + i), vf_mul(v_exp(vf_load(yr + i)), vs));
            vf_store(dxr + i, vf_add(vf_load(dxr + i), g));
        }
        if (i < n) {
            const size_t k = n - i;
            vf g = vf_sub(vf_load_tail(dyr + i, k, 0.0f),
                          vf_mul(v_exp(vf_load_tail(yr + i, k, 0.0f)), vs));
            vf_store_tail(dxr + i, k, vf_add(vf_load_tail(dxr + i, k, 0.0f), g));
        }
    }
}

/* y = x̂·w + b with x̂ = d·r; d = (x − mh) − ml (LayerNorm) or x (RMSNorm, mh = ml = 0). */
static void norm_out(const float *x, const float *w, const float *b, float *y, size_t n, vf mh,
                     vf ml, vf r) {
    size_t i = 0;
    for (; i + VW <= n; i += VW) {
        vf h = vf_mul(vf_sub(vf_sub(vf_load(x + i), mh), ml), r);
        if (w) h = vf_mul(h, vf_load(w + i));
        if (b) h = vf_add(h, vf_load(b + i));
        vf_store(y + i, h);
    }
    if (i < n) {
        const size_t k = n - i;
        vf h = vf_mul(vf_sub(vf_sub(vf_load_tail(x + i, k, 0.0f), mh), ml), r);
        if (w) h = vf_mul(h, vf_load_tail(w + i, k, 0.0f));
        if (b) h = vf_add(h, vf_load_tail(b + i, k, 0.0f));
        vf_store_tail(y + i, k, h);
    }
}

void RK(layernorm_f32)(const float *x, const float *w, const float *b, float *y, float *mean,
                       float *rstd, size_t rows, size_t n, float eps) {
    for (size_t row = 0; row < rows; row++) {
        const float *xr = x + row * n; /* (n) */
        float *yr = y + row * n;       /* (n) */
        /* Σ (x − x[0]): exact differences for rows with a large common offset */
        row_args a = {.x = xr, .m = vf_set1(xr[0])};
        double sx, sd;
        row_sum(T_SUM, &a, n, &sx, NULL);
        const double m = (double)xr[0] + sx / (double)n;
        const float mh = (float)m, ml = (float)(m - (double)mh);
        a.mh = vf_set1(mh);
        a.ml = vf_set1(ml);
        row_sum(T_DEV2, &a, n, &sd, NULL);
        const double r = 1.0 / sqrt(sd / (double)n + (double)eps);
        norm_out(xr, w, b, yr, n, a.mh, a.ml, vf_set1((float)r));
        if (mean) mean[row] = (float)m;
        if (rstd) rstd[row] = (float)r;
    }
}

void RK(rmsnorm_f32)(const float *x, const float *w, float *y, float *rrms, size_t rows, size_t n,
                     float eps) {
    for (size_t row = 0; row < rows; row++) {
        const float *xr = x + row * n; /* (n) */
        row_args a = {.x = xr};
        double ss;
        row_sum(T_SQ, &a, n, &ss, NULL);
        const double r = 1.0 / sqrt(ss / (double)n + (double)eps);
        norm_out(xr, w, NULL, y + row * n, n, vf_zero(), vf_zero(), vf_set1((float)r));
        if (rrms) rrms[row] = (float)r;
    }
}

/* dx += r·(dx̂ − c1 − x̂·c2), x̂ = (x − m)·r, dx̂ = dy·w */
static void norm_dx(const float *x, const float *dy, const float *w, float *dx, size_t n, vf m,
                    vf r, vf c1, vf c2) {
    size_t i = 0;
    for (; i + VW <= n; i += VW) {
        vf xh = vf_mul(vf_sub(vf_load(x + i), m), r);
        vf dxh = vf_load(dy + i);
        if (w) dxh = vf_mul(dxh, vf_load(w + i));
        vf g = vf_sub(dxh, vf_fma(xh, c2, c1));
        vf_store(dx + i, vf_fma(r, g, vf_load(dx + i)));
    }
    if (i < n) {
        const size_t k = n - i;
        vf xh = vf_mul(vf_sub(vf_load_tail(x + i, k, 0.0f), m), r);
        vf dxh = vf_load_tail(dy + i, k, 0.0f);
        if (w) dxh = vf_mul(dxh, vf_load_tail(w + i, k, 0.0f));
        vf g = vf_sub(dxh, vf_fma(xh, c2, c1));
        vf_store_tail(dx + i, k, vf_fma(r, g, vf_load_tail(dx + i, k, 0.0f)));
    }
}

void RK(layernorm_bwd_f32)(const float *dy, const float *x, const float *w, const float *mean,
                           const float *rstd, float *dx, float *dw, float *db, size_t rows,
                           size_t n) {
    for (size_t row = 0; row < rows; row++) {
        const float *xr = x + row * n, *dyr = dy + row * n; /* (n) */
        row_args a = {.x = xr,
                      .y = dyr,
                      .w = w,
                      .dw = dw,
                      .db = db,
                      .m = vf_set1(mean[row]),
                      .r = vf_set1(rstd[row])};
        double s1, s2;
        row_sum(T_LN_BWD, &a, n, &s1, &s2);
        if (dx)
            norm_dx(xr, dyr, w, dx + row * n, n, a.m, a.r, vf_set1((float)(s1 / (double)n)),
                    vf_set1((float)(s2 / (double)n)));
    }
}

void RK(rmsnorm_bwd_f32)(const float *dy, const float *x, const float *w, const float *rrms,
                         float *dx, float *dw, size_t rows, size_t n) {
    for (size_t row = 0; row < rows; row++) {
        const float *xr = x + row * n, *dyr = dy + row * n; /* (n) */
        row_args a = {.x = xr, .y = dyr, .w = w, .dw = dw, .r = vf_set1(rrms[row])};
        double s1, s2; /* s1 stays 0: RMSNorm subtracts no mean */
        row_sum(T_RMS_BWD, &a, n, &s1, &s2);
        if (dx)
            norm_dx(xr, dyr, w, dx + row * n, n, vf_zero(), a.r, vf_zero(),
                    vf_set1((float)(s2 / (double)n)));
    }
}

/* ---------------------------------------------------------------- decoding
 *
 * attn_decode: one query row against a short key list, as a decoder step needs it: no tiling,
 * the scores of four keys at a time (four independent FMA chains), their softmax with the row
 * kernels' exp and a float sum, then the weighted values accumulated in registers, up to four
 * vectors of the head at a time, scaled once by 1/Σ at the end. */

/* (4 >= c keys) s[u] = scale · q·k_u over D, key u at kp[u]. Four keys (the usual case) keep
 * their accumulators in named registers (an indexed array of them is spilled to the stack). */
static inline void decode_dots(size_t c, size_t D, const float *q, const float *const *kp,
                               float scale, float *s) {
    if (c == 4) {
        vf a0 = vf_zero(), a1 = vf_zero(), a2 = vf_zero(), a3 = vf_zero();
        size_t d = 0;
        for (; d + VW <= D; d += VW) {
            const vf qv = vf_load(q + d);
            a0 = vf_fma(qv, vf_load(kp[0] + d), a0);
            a1 = vf_fma(qv, vf_load(kp[1] + d), a1);
            a2 = vf_fma(qv, vf_load(kp[2] + d), a2);
            a3 = vf_fma(qv, vf_load(kp[3] + d), a3);
        }
        if (d < D) {
            const size_t w = D - d;
            const vf qv = vf_load_tail(q + d, w, 0.0f);
            a0 = vf_fma(qv, vf_load_tail(kp[0] + d, w, 0.0f), a0);
            a1 = vf_fma(qv, vf_load_tail(kp[1] + d, w, 0.0f), a1);
            a2 = vf_fma(qv, vf_load_tail(kp[2] + d, w, 0.0f), a2);
            a3 = vf_fma(qv, vf_load_tail(kp[3] + d, w, 0.0f), a3);
        }
        s[0] = vf_hsum(a0) * scale, s[1] = vf_hsum(a1) * scale;
        s[2] = vf_hsum(a2) * scale, s[3] = vf_hsum(a3) * scale;
        return;
    }
    for (size_t u = 0; u < c; u++) {
        vf a = vf_zero();
        for (size_t d = 0; d < D; d += VW) {
            const size_t w = D - d < VW ? D - d : VW;
            a = vf_fma(ld(q + d, w, 0.0f), ld(kp[u] + d, w, 0.0f), a);
        }
        s[u] = vf_hsum(a) * scale;
    }
}

/* oh[0, w) = inv · Σ_t s[t] · v_t[0, w), w <= 4·VW, v_t at v + rows[t] (or t) · ldv; four
 * full vectors in named registers, as above. */
static inline void decode_acc(size_t n, size_t w, const float *s, const float *v, size_t ldv,
                              const int64_t *rows, vf inv, float *oh) {
    if (w == 4 * VW) {
        vf o0 = vf_zero(), o1 = vf_zero(), o2 = vf_zero(), o3 = vf_zero();
        for (size_t t = 0; t < n; t++) {
            const vf p = vf_set1(s[t]);
            const float *vt = v + (rows ? (size_t)rows[t] : t) * ldv;
            o0 = vf_fma(p, vf_load(vt), o0);
            o1 = vf_fma(p, vf_load(vt + VW), o1);
            o2 = vf_fma(p, vf_load(vt + 2 * VW), o2);
            o3 = vf_fma(p, vf_load(vt + 3 * VW), o3);
        }
        vf_store(oh, vf_mul(o0, inv)), vf_store(oh + VW, vf_mul(o1, inv));
        vf_store(oh + 2 * VW, vf_mul(o2, inv)), vf_store(oh + 3 * VW, vf_mul(o3, inv));
        return;
    }
    for (size_t d = 0; d < w; d += VW) {
        const size_t k = w - d < VW ? w - d : VW;
        vf o = vf_zero();
        for (size_t t = 0; t < n; t++)
            o = vf_fma(vf_set1(s[t]), ld(v + (rows ? (size_t)rows[t] : t) * ldv + d, k, 0.0f), o);
        st(oh + d, k, vf_mul(o, inv));
    }
}

void RK(attn_decode_f32)(size_t H, size_t D, size_t n, const float *q, const float *k, size_t ldk,
                         const float *v, size_t ldv, const int64_t *rows, float scale, float *out,
                         float *s) {
    for (size_t h = 0; h < H; h++) {
        const float *qh = q + h * D; /* (D) */
        float *oh = out + h * D;     /* (D) */
        for (size_t j = 0; j < n; j += 4) {
            const size_t c = n - j < 4 ? n - j : 4;
            const float *kp[4];
            for (size_t u = 0; u < c; u++)
                kp[u] = k + (rows ? (size_t)rows[j + u] : j + u) * ldk + h * D;
            decode_dots(c, D, qh, kp, scale, s + j);
        }
        float mx = s[0];
        for (size_t t = 1; t < n; t++) mx = s[t] > mx ? s[t] : mx;
        const vf vm = vf_set1(mx);
        vf sum = vf_zero(); /* s = e^(s - max), Σ in float: few keys */
        for (size_t t = 0; t < n; t += VW) {
            const size_t w = n - t < VW ? n - t : VW;
            const vf e = v_exp(vf_sub(ld(s + t, w, 0.0f), vm));
            st(s + t, w, e);
            sum = vf_add(sum, vf_keep(e, w));
        }
        const vf inv = vf_set1(1.0f / vf_hsum(sum));
        for (size_t d0 = 0; d0 < D; d0 += 4 * VW) /* up to 4 vectors of the head per pass */
            decode_acc(n, D - d0 < 4 * VW ? D - d0 : 4 * VW, s, v + h * D + d0, ldv, rows, inv,
                       oh + d0);
    }
}

/* log_softmax_topk: the values are log_softmax_f32's, formed from (m, ls) by the same float
 * operations; a block of 4 vectors is only looked at element by element when its largest value
 * beats the current k-th (a tie cannot: the block's indices come later). */
void RK(log_softmax_stats_f32)(const float *x, size_t n, float *m, double *ls) {
    const float mx = row_max(x, n);
    *m = mx;
    *ls = -INFINITY;
    if (mx == -INFINITY && row_all_neg_inf(x, n)) return; /* log_softmax_f32 gives all -inf */
    row_args a = {.x = x, .m = vf_set1(mx)};
    double s;
    row_sum(T_EXP, &a, n, &s, NULL);
    *ls = log(s);
}

void RK(log_softmax_topk_f32)(const float *x, size_t n, float m, double ls, float add, size_t k,
                              float *val, int64_t *idx) {
    const float lsf = (float)ls; /* as softmax_rows rounds it */
    size_t have = 0, i = 0;
    for (; i < n && have < k; i++) {
        float y = (x[i] - m) - lsf;
        y += add;
        qkv__topk_offer(y, (int64_t)i, k, &have, val, idx);
    }
    const vf vm = vf_set1(m), vl = vf_set1(lsf), va = vf_set1(add);
    float y[4 * VW];
    for (; i + 4 * VW <= n; i += 4 * VW) {
        vf t[4], mx = vf_set1(-INFINITY);
        for (size_t u = 0; u < 4; u++) {
            t[u] = vf_add(vf_sub(vf_sub(vf_load(x + i + u * VW), vm), vl), va);
            mx = vf_max(t[u], mx); /* a NaN lane keeps mx */
        }
        if (!(vf_hmax(mx) > val[k - 1])) continue;
        for (size_t u = 0; u < 4; u++) vf_store(y + u * VW, t[u]);
        for (size_t c = 0; c < 4 * VW; c++)
            qkv__topk_offer(y[c], (int64_t)(i + c), k, &have, val, idx);
    }
    for (; i < n; i++) {
        float yi = (x[i] - m) - lsf;
        yi += add;
        qkv__topk_offer(yi, (int64_t)i, k, &have, val, idx);
    }
}
