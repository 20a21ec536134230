/* nn_testutil.h — what the src/nn tests share: a deterministic random source, double-precision
 * reference forwards written independently of src/nn, and a finite-difference gradient harness.
 *
 * The harness (nn_prob): a layer under test exposes its inputs and parameters as variables,
 * each held twice — as float (what src/nn computes with) and as double (the same values
 * exactly). The loss is L = Σ_k out[k] · dout[k] for a fixed random dout, so the analytic
 * gradient is the src/nn backward fed with dout, and the numeric one is the central difference
 * (L(v + h) - L(v - h)) / 2h of the double reference forward. nn_prob_run checks:
 *   1. float forward vs double forward:   max|out_f - out_d| <= fwd_tol · max(max|out_d|, 1)
 *   2. the backward accumulates:          a second backward call doubles every gradient
 *   3. gradients per variable:            max|g - g_fd| <= grad_tol · max(max|g_fd|, 1e-2)
 * and prints the errors. Header-only (static inline) so each test program is one file. */
#ifndef QKV_NN_TESTUTIL_H
#define QKV_NN_TESTUTIL_H

#include "qkv.h"
#include "test.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- random */

static uint64_t nt_rng_state = 0x9E3779B97F4A7C15ull;

static inline void nt_seed(uint64_t s) { nt_rng_state = s * 0x9E3779B97F4A7C15ull + 1; }

/* uniform in [0, 1) (xorshift64*) */
static inline double nt_uniform(void) {
    uint64_t x = nt_rng_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    nt_rng_state = x;
    return (double)((x * 0x2545F4914F6CDD1Dull) >> 11) * 0x1p-53;
}

/* 32 random bits */
static inline uint32_t nt_u32(void) { return (uint32_t)(nt_uniform() * 4294967296.0); }

/* uniform in [-1, 1) times 2^e, e uniform in [-4, 4]: values of magnitudes that differ, as in
 * real weights (±[2^-4, 2^4)) */
static inline float nt_weight(void) {
    return (float)((2.0 * nt_uniform() - 1.0) * ldexp(1.0, (int)(nt_uniform() * 9.0) - 4));
}

/* n floats uniform in [lo, hi) */
static inline void nt_fill(float *p, int64_t n, double lo, double hi) {
    for (int64_t i = 0; i < n; i++) p[i] = (float)(lo + (hi - lo) * nt_uniform());
}

static inline float *nt_alloc(int64_t n) {
    float *p = calloc((size_t)(n > 0 ? n : 1), sizeof(float));
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

static inline double *nt_alloc_d(int64_t n) {
    double *p = calloc((size_t)(n > 0 ? n : 1), sizeof(double));
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

static inline float *nt_rand(int64_t n, double lo, double hi) {
    float *p = nt_alloc(n);
    nt_fill(p, n, lo, hi);
    return p;
}

static inline float *nt_copy(const float *p, int64_t n) {
    float *q = nt_alloc(n);
    memcpy(q, p, (size_t)n * sizeof(float));
    return q;
}

/* Bit-exact comparison (for results that must not depend on the path taken). */
static inline void nt_same_bits(const char *what, const void *a, const void *b, int64_t nfloats) {
    CHECK_MSG(memcmp(a, b, (size_t)nfloats * sizeof(float)) == 0, "%s: results differ", what);
}

/* Equal values element by element (-0 == +0; NaN never equal). */
static inline void nt_same_values(const char *what, const float *a, const float *b,
                                  int64_t nfloats) {
    int64_t bad = 0;
    for (int64_t i = 0; i < nfloats; i++) bad += !(a[i] == b[i]);
    CHECK_MSG(bad == 0, "%s: %lld values differ", what, (long long)bad);
}

/* nfloats of junk a first-term (_set) gradient must ignore: NaN, infinities, large values. */
static inline float *nt_junk(int64_t nfloats) {
    float *p = nt_rand(nfloats, -1e30, 1e30);
    for (int64_t i = 0; i < nfloats; i += 3) p[i] = i % 2 ? NAN : INFINITY;
    return p;
}

/* An allocator that always fails (qkv_set_allocator), for the NOMEM paths. */
static inline void *nt_failing_alloc(size_t size, size_t align, void *user) {
    (void)size, (void)align, (void)user;
    return NULL;
}
static inline void nt_system_free(void *p, void *user) {
    (void)user;
    free(p);
}

/* max |a - b| and max |b| */
static inline double nt_maxabs_f(const float *a, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i]));
    return m;
}

/* ---------------------------------------------------------------- reference forwards */

/* y (N, OC) = x (N, C) wᵀ + b */
static inline void ref_linear(double *y, const double *x, const double *w, const double *b,
                              int64_t N, int64_t C, int64_t OC) {
    for (int64_t n = 0; n < N; n++)
        for (int64_t o = 0; o < OC; o++) {
            double s = b ? b[o] : 0.0;
            for (int64_t i = 0; i < C; i++) s += x[n * C + i] * w[o * C + i];
            y[n * OC + o] = s;
        }
}

static inline void ref_layernorm(double *y, const double *x, const double *w, const double *b,
                                 int64_t N, int64_t C, double eps) {
    for (int64_t n = 0; n < N; n++) {
        const double *r = x + n * C;
        double m = 0, v = 0;
        for (int64_t i = 0; i < C; i++) m += r[i];
        m /= (double)C;
        for (int64_t i = 0; i < C; i++) v += (r[i] - m) * (r[i] - m);
        v /= (double)C;
        for (int64_t i = 0; i < C; i++)
            y[n * C + i] = (r[i] - m) / sqrt(v + eps) * (w ? w[i] : 1.0) + (b ? b[i] : 0.0);
    }
}

static inline void ref_rmsnorm(double *y, const double *x, const double *w, int64_t N, int64_t C,
                               double eps) {
    for (int64_t n = 0; n < N; n++) {
        double ss = 0;
        for (int64_t i = 0; i < C; i++) ss += x[n * C + i] * x[n * C + i];
        double r = 1.0 / sqrt(ss / (double)C + eps);
        for (int64_t i = 0; i < C; i++) y[n * C + i] = x[n * C + i] * r * (w ? w[i] : 1.0);
    }
}

/* the activations by their textbook formulas (act numbering = qkv_act) */
static inline double ref_act(int act, double x) {
    switch (act) {
    case 0: return x;
    case 1: return x * 0.5 * erfc(-x / sqrt(2.0)); /* x Φ(x) */
    case 2: return 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
    case 3: return x > 0 ? x : 0;
    case 4: return x / (1 + exp(-x));
    }
    return NAN;
}

/* softmax or log-softmax of rows (N, V) */
static inline void ref_softmax(double *y, const double *x, int64_t N, int64_t V, int log_) {
    for (int64_t n = 0; n < N; n++) {
        const double *r = x + n * V;
        double m = -INFINITY, s = 0;
        for (int64_t v = 0; v < V; v++) m = fmax(m, r[v]);
        for (int64_t v = 0; v < V; v++) s += exp(r[v] - m);
        for (int64_t v = 0; v < V; v++)
            y[n * V + v] = log_ ? (r[v] - m) - log(s) : exp(r[v] - m) / s;
    }
}

/* mean cross-entropy against (1 - eps) onehot(t) + eps / V over non-ignored rows */
static inline double ref_cross_entropy(const double *x, const int32_t *t, int64_t N, int64_t V,
                                       int32_t ignore, double eps) {
    double sum = 0;
    int64_t count = 0;
    for (int64_t n = 0; n < N; n++) {
        if (t[n] == ignore) continue;
        const double *r = x + n * V;
        double m = -INFINITY, s = 0;
        for (int64_t v = 0; v < V; v++) m = fmax(m, r[v]);
        for (int64_t v = 0; v < V; v++) s += exp(r[v] - m);
        double l = 0;
        for (int64_t v = 0; v < V; v++) {
            double target = (v == t[n] ? 1 - eps : 0) + eps / (double)V;
            if (target != 0) l -= target * ((r[v] - m) - log(s)); /* 0 · -inf: no term */
        }
        sum += l;
        count++;
    }
    return count ? sum / (double)count : 0.0;
}

/* RoPE on x (B, T, H, D): style 0 interleaved pairs (2k, 2k+1), 1 half pairs (k, k + R/2) */
static inline void ref_rope(double *y, const double *x, int64_t B, int64_t T, int64_t H, int64_t D,
                            int64_t R, double theta, int style, int64_t pos0) {
    memcpy(y, x, (size_t)(B * T * H * D) * sizeof(double));
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++)
            for (int64_t h = 0; h < H; h++)
                for (int64_t k = 0; k < R / 2; k++) {
                    double ang = (double)(pos0 + t) * pow(theta, -2.0 * (double)k / (double)R);
                    int64_t base = ((b * T + t) * H + h) * D;
                    int64_t ia = style ? k : 2 * k, ib = style ? k + R / 2 : 2 * k + 1;
                    double xa = x[base + ia], xb = x[base + ib];
                    y[base + ia] = xa * cos(ang) - xb * sin(ang);
                    y[base + ib] = xa * sin(ang) + xb * cos(ang);
                }
}

/* Scaled dot-product attention as specified in qkv.h, with bottom-right causal, kv_lens,
 * ALiBi, GQA; q (B,Tq,H,D), k, v (B,Tk,Hk,D), out (B,Tq,H,D). keep(b,h,i,j) (may be NULL)
 * gives the dropout multiplier of a probability (0 or 1/(1-p)). */
typedef double (*ref_keep_fn)(void *ctx, int64_t b, int64_t h, int64_t i, int64_t j);

static inline void ref_attention(double *out, const double *q, const double *k, const double *v,
                                 int64_t B, int64_t Tq, int64_t Tk, int64_t H, int64_t Hk,
                                 int64_t D, double scale, int causal, const int32_t *kv_lens,
                                 const float *alibi, ref_keep_fn keep, void *keep_ctx) {
    double *s = nt_alloc_d(Tk);
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++) {
            const int64_t hk = h / (H / Hk);
            for (int64_t i = 0; i < Tq; i++) {
                double m = -INFINITY;
                for (int64_t j = 0; j < Tk; j++) {
                    int visible = (!kv_lens || j < kv_lens[b]) && (!causal || j <= i + Tk - Tq);
                    if (!visible) {
                        s[j] = -INFINITY;
                        continue;
                    }
                    double d = 0;
                    for (int64_t c = 0; c < D; c++)
                        d +=
                            q[((b * Tq + i) * H + h) * D + c] * k[((b * Tk + j) * Hk + hk) * D + c];
                    s[j] = d * scale;
                    if (alibi) s[j] -= alibi[h] * fabs((double)(i + Tk - Tq - j));
                    m = fmax(m, s[j]);
                }
                double *o = out + ((b * Tq + i) * H + h) * D;
                for (int64_t c = 0; c < D; c++) o[c] = 0;
                if (m == -INFINITY) continue; /* no visible key: 0 */
                double z = 0;
                for (int64_t j = 0; j < Tk; j++) z += s[j] == -INFINITY ? 0 : exp(s[j] - m);
                for (int64_t j = 0; j < Tk; j++) {
                    if (s[j] == -INFINITY) continue;
                    double p = exp(s[j] - m) / z;
                    if (keep) p *= keep(keep_ctx, b, h, i, j);
                    for (int64_t c = 0; c < D; c++) o[c] += p * v[((b * Tk + j) * Hk + hk) * D + c];
                }
            }
        }
    free(s);
}

/* ---------------------------------------------------------------- the gradient harness */

#define NT_MAX_VARS 24

typedef struct nn_prob nn_prob;
struct nn_prob {
    const char *label;
    int nvar;
    struct {
        const char *name;
        float *f;  /* value used by src/nn */
        double *d; /* the same values, for the reference */
        float *g;  /* analytic gradient (accumulated by bwd_f); NULL: not differentiated */
        int64_t n;
    } var[NT_MAX_VARS];
    int64_t nout;
    float *out_f, *dout_f;
    double *out_d;
    void (*fwd_d)(nn_prob *p);       /* out_d from the var d's */
    qkv_status (*fwd_f)(nn_prob *p); /* out_f from the var f's (also saves activations) */
    qkv_status (*bwd_f)(nn_prob *p); /* var g's += from dout_f */
    void *ctx;
    double fd_h;        /* finite-difference step (default 1e-6) */
    int64_t max_points; /* per variable; larger ones are sampled evenly (default 400) */
};

/* Adds variable `name` of n floats; g NULL means it is an input without a gradient. */
static inline void nn_prob_var(nn_prob *p, const char *name, float *f, float *g, int64_t n) {
    if (p->nvar >= NT_MAX_VARS) {
        fprintf(stderr, "too many variables\n");
        exit(2);
    }
    p->var[p->nvar].name = name;
    p->var[p->nvar].f = f;
    p->var[p->nvar].d = nt_alloc_d(n);
    p->var[p->nvar].g = g;
    p->var[p->nvar].n = n;
    p->nvar++;
}

static inline double nn_prob_loss(nn_prob *p) {
    p->fwd_d(p);
    double L = 0;
    for (int64_t k = 0; k < p->nout; k++) L += p->out_d[k] * (double)p->dout_f[k];
    return L;
}

/* Runs the three checks described at the top; returns the largest gradient error. */
static inline double nn_prob_run(nn_prob *p, double fwd_tol, double grad_tol) {
    double worst = 0;
    if (p->fd_h == 0) p->fd_h = 1e-6;
    if (p->max_points == 0) p->max_points = 400;
    for (int v = 0; v < p->nvar; v++)
        for (int64_t i = 0; i < p->var[v].n; i++) p->var[v].d[i] = p->var[v].f[i];

    /* 1. forward */
    CHECK_OK(p->fwd_f(p));
    p->fwd_d(p);
    double ferr = 0, fmag = 1;
    for (int64_t k = 0; k < p->nout; k++) {
        ferr = fmax(ferr, fabs((double)p->out_f[k] - p->out_d[k]));
        fmag = fmax(fmag, fabs(p->out_d[k]));
    }
    ferr /= fmag;
    CHECK_MSG(ferr <= fwd_tol, "%s: forward error %.3g > %.3g", p->label, ferr, fwd_tol);

    /* 2. backward, twice: the second call must double every gradient */
    for (int v = 0; v < p->nvar; v++)
        if (p->var[v].g) memset(p->var[v].g, 0, (size_t)p->var[v].n * sizeof(float));
    CHECK_OK(p->bwd_f(p));
    float *once[NT_MAX_VARS] = {0};
    for (int v = 0; v < p->nvar; v++)
        if (p->var[v].g) {
            once[v] = nt_alloc(p->var[v].n);
            memcpy(once[v], p->var[v].g, (size_t)p->var[v].n * sizeof(float));
        }
    CHECK_OK(p->bwd_f(p));
    double acc_err = 0;
    for (int v = 0; v < p->nvar; v++)
        if (p->var[v].g) {
            double mag = fmax(nt_maxabs_f(once[v], p->var[v].n), 1e-30);
            for (int64_t i = 0; i < p->var[v].n; i++)
                acc_err = fmax(acc_err, fabs((double)p->var[v].g[i] - 2.0 * once[v][i]) / mag);
        }
    CHECK_MSG(acc_err <= 1e-5, "%s: second backward did not accumulate (error %.3g)", p->label,
              acc_err);

    /* 3. finite differences */
    printf("  %-34s fwd %.2e  acc %.1e  grad:", p->label, ferr, acc_err);
    for (int v = 0; v < p->nvar; v++) {
        if (!p->var[v].g) continue;
        const int64_t n = p->var[v].n;
        const int64_t step = n > p->max_points ? (n + p->max_points - 1) / p->max_points : 1;
        double err = 0, mag = 1e-2;
        for (int64_t i = 0; i < n; i += step) {
            double *x = &p->var[v].d[i], x0 = *x;
            *x = x0 + p->fd_h;
            double lp = nn_prob_loss(p);
            *x = x0 - p->fd_h;
            double lm = nn_prob_loss(p);
            *x = x0;
            double num = (lp - lm) / (2 * p->fd_h);
            err = fmax(err, fabs((double)once[v][i] - num));
            mag = fmax(mag, fabs(num));
        }
        err /= mag;
        printf(" %s %.1e", p->var[v].name, err);
        CHECK_MSG(err <= grad_tol, "%s: gradient of %s: error %.3g > %.3g", p->label,
                  p->var[v].name, err, grad_tol);
        worst = fmax(worst, err);
        free(once[v]);
    }
    printf("\n");
    return worst;
}

static inline void nn_prob_free(nn_prob *p) {
    for (int v = 0; v < p->nvar; v++) free(p->var[v].d);
    p->nvar = 0;
}

#endif
