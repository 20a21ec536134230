/* test_core_dtype.c — dtype names/sizes and the scalar f16/bf16 conversions.
 *
 * The conversions are checked against references computed independently of core/half.h:
 * decoding with ldexp, and rounding by finding the two neighbouring representable values in
 * double precision and picking the nearer (ties to the even code). f16 is checked
 * exhaustively where it can be (all 65536 codes, every midpoint between neighbours), f32 on
 * a strided sweep of all bit patterns plus random ones. */
#include "qkv.h"
#include "test.h"

#include <float.h>
#include <stdint.h>

static uint32_t bits_of(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float float_of(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t next_u32(void) { /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (uint32_t)((z ^ (z >> 31)) >> 32);
}

/* ---------------------------------------------------------------- references */

/* Value of a non-NaN f16 code. */
static double f16_value(uint16_t h) {
    int e = (h >> 10) & 31, m = h & 1023;
    double v = e == 31 ? INFINITY : e == 0 ? ldexp(m, -24) : ldexp(1024 + m, e - 25);
    return (h & 0x8000) ? -v : v;
}

/* pos[c] = value of the positive f16 code c; pos[0x7c00] = 65536, the value Inf stands for
 * when rounding (the next step after 65504). */
static double pos[0x7c01];

static void init_pos(void) {
    for (int c = 0; c < 0x7c00; c++) pos[c] = f16_value((uint16_t)c);
    pos[0x7c00] = 65536.0;
}

/* Nearest-even choice between codes lo and lo + 1 around a. */
static uint32_t pick(double a, double vlo, double vhi, uint32_t lo) {
    double d1 = a - vlo, d2 = vhi - a; /* exact: a and both neighbours are close floats */
    if (d1 < d2) return lo;
    if (d2 < d1) return lo + 1;
    return (lo & 1) ? lo + 1 : lo;
}

static uint16_t ref_f32_to_f16(float x) {
    uint32_t u = bits_of(x);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    if (isnan(x)) return (uint16_t)(sign | 0x7e00 | ((u >> 13) & 0x3ff));
    double a = fabs((double)x);
    if (a >= 65536.0) return sign | 0x7c00;
    int lo = 0, hi = 0x7c00; /* largest c with pos[c] <= a */
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (pos[mid] <= a)
            lo = mid;
        else
            hi = mid;
    }
    if (pos[lo] == a) return (uint16_t)(sign | lo);
    return (uint16_t)(sign | pick(a, pos[lo], pos[lo + 1], (uint32_t)lo));
}

static uint16_t ref_f32_to_bf16(float x) {
    uint32_t u = bits_of(x);
    if (isnan(x)) return (uint16_t)((u >> 16) | 0x40);
    uint32_t sign = u & 0x80000000u, lo = u & 0x7fff0000u, hi = lo + 0x10000u;
    if ((u & 0xffff) == 0) return (uint16_t)(u >> 16);
    double a = fabs((double)x);
    double vhi = hi == 0x7f800000u ? ldexp(1.0, 128) : (double)float_of(hi);
    uint32_t code = pick(a, (double)float_of(lo), vhi, lo >> 16);
    return (uint16_t)((sign >> 16) | code);
}

/* ---------------------------------------------------------------- tests */

static void test_names(void) {
    static const struct {
        qkv_dtype t;
        const char *name;
        size_t size;
    } want[] = {
        {QKV_DTYPE_F32, "F32", 4},         {QKV_DTYPE_F16, "F16", 2},
        {QKV_DTYPE_BF16, "BF16", 2},       {QKV_DTYPE_F64, "F64", 8},
        {QKV_DTYPE_I8, "I8", 1},           {QKV_DTYPE_U8, "U8", 1},
        {QKV_DTYPE_I16, "I16", 2},         {QKV_DTYPE_U16, "U16", 2},
        {QKV_DTYPE_I32, "I32", 4},         {QKV_DTYPE_U32, "U32", 4},
        {QKV_DTYPE_I64, "I64", 8},         {QKV_DTYPE_U64, "U64", 8},
        {QKV_DTYPE_BOOL, "BOOL", 1},       {QKV_DTYPE_F8_E4M3, "F8_E4M3", 1},
        {QKV_DTYPE_F8_E5M2, "F8_E5M2", 1},
    };
    CHECK_EQ_INT(sizeof want / sizeof want[0], QKV_DTYPE_COUNT_);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        CHECK(strcmp(qkv_dtype_name(want[i].t), want[i].name) == 0);
        CHECK_EQ_INT(qkv_dtype_size(want[i].t), want[i].size);
        qkv_dtype t = QKV_DTYPE_COUNT_;
        CHECK_OK(qkv_dtype_parse(want[i].name, &t));
        CHECK_EQ_INT(t, want[i].t);
    }
    CHECK(strcmp(qkv_dtype_name(QKV_DTYPE_COUNT_), "?") == 0);
    CHECK(strcmp(qkv_dtype_name((qkv_dtype)-1), "?") == 0);
    CHECK_EQ_INT(qkv_dtype_size(QKV_DTYPE_COUNT_), 0);
    CHECK_EQ_INT(qkv_dtype_size((qkv_dtype)-1), 0);
    qkv_dtype t = QKV_DTYPE_F64;
    CHECK_STATUS(qkv_dtype_parse("f32", &t), QKV_ERR_INVALID_ARG); /* case matters */
    CHECK(strstr(qkv_last_error(), "f32") != NULL);
    CHECK_STATUS(qkv_dtype_parse("F3", &t), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_dtype_parse("F322", &t), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_dtype_parse("", &t), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_dtype_parse(NULL, &t), QKV_ERR_INVALID_ARG);
    CHECK_STATUS(qkv_dtype_parse("F32", NULL), QKV_ERR_INVALID_ARG);
    CHECK_EQ_INT(t, QKV_DTYPE_F64); /* untouched on failure */
}

static void test_f16_decode_all(void) {
    int bad = 0;
    for (uint32_t c = 0; c < 65536; c++) {
        uint16_t h = (uint16_t)c;
        uint32_t got = bits_of(qkv_f16_to_f32(h));
        uint32_t want;
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) /* NaN: quiet, sign and payload kept */
            want = ((uint32_t)(h & 0x8000) << 16) | 0x7fc00000u | ((uint32_t)(h & 0x3ff) << 13);
        else
            want = bits_of((float)f16_value(h)); /* keeps the sign of zero */
        if (got != want && bad++ < 10)
            fprintf(stderr, "f16 %04x -> %08x, want %08x\n", (unsigned)h, got, want);
    }
    CHECK_EQ_INT(bad, 0);
}

static void test_f16_round_trip(void) {
    int bad = 0;
    for (uint32_t c = 0; c < 65536; c++) {
        uint16_t h = (uint16_t)c;
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) continue; /* NaN: below */
        uint16_t back = qkv_f32_to_f16(qkv_f16_to_f32(h));
        if (back != h && bad++ < 10) fprintf(stderr, "f16 %04x -> %04x\n", c, back);
    }
    CHECK_EQ_INT(bad, 0);
}

/* Every midpoint between neighbouring f16 values (both signs), and the floats just beside it:
 * covers ties to even everywhere, the subnormal/normal boundary and the overflow threshold. */
static void test_f16_midpoints(void) {
    int bad = 0;
    for (uint32_t c = 0; c < 0x7c00; c++) {
        float mid = (float)((pos[c] + pos[c + 1]) / 2); /* 12 significant bits: exact */
        CHECK((double)mid == (pos[c] + pos[c + 1]) / 2);
        uint32_t even = (c & 1) ? c + 1 : c;
        for (int s = 0; s < 2; s++) {
            float m = s ? -mid : mid;
            uint16_t sign = s ? 0x8000 : 0;
            uint16_t at = qkv_f32_to_f16(m);
            uint16_t below = qkv_f32_to_f16(nextafterf(m, 0.0f));
            uint16_t above = qkv_f32_to_f16(nextafterf(m, s ? -INFINITY : INFINITY));
            if ((at != (sign | even) || below != (sign | c) || above != (sign | (c + 1))) &&
                bad++ < 10)
                fprintf(stderr, "midpoint after f16 %04x (%.9g): %04x %04x %04x\n", c, (double)m,
                        at, below, above);
        }
    }
    CHECK_EQ_INT(bad, 0);
}

static void test_f16_special(void) {
    CHECK_EQ_INT(qkv_f32_to_f16(0.0f), 0x0000);
    CHECK_EQ_INT(qkv_f32_to_f16(-0.0f), 0x8000);
    CHECK_EQ_INT(qkv_f32_to_f16(1.0f), 0x3c00);
    CHECK_EQ_INT(qkv_f32_to_f16(-2.0f), 0xc000);
    CHECK_EQ_INT(qkv_f32_to_f16(65504.0f), 0x7bff);
    CHECK_EQ_INT(qkv_f32_to_f16(nextafterf(65520.0f, 0.0f)), 0x7bff);
    CHECK_EQ_INT(qkv_f32_to_f16(65520.0f), 0x7c00); /* tie; 65504 is odd: rounds to Inf */
    CHECK_EQ_INT(qkv_f32_to_f16(-65520.0f), 0xfc00);
    CHECK_EQ_INT(qkv_f32_to_f16(1e10f), 0x7c00);
    CHECK_EQ_INT(qkv_f32_to_f16(FLT_MAX), 0x7c00);
    CHECK_EQ_INT(qkv_f32_to_f16(-FLT_MAX), 0xfc00);
    CHECK_EQ_INT(qkv_f32_to_f16(INFINITY), 0x7c00);
    CHECK_EQ_INT(qkv_f32_to_f16(-INFINITY), 0xfc00);
    CHECK_EQ_INT(qkv_f32_to_f16(0x1p-14f), 0x0400); /* smallest normal */
    CHECK_EQ_INT(qkv_f32_to_f16(0x1p-24f), 0x0001); /* smallest subnormal */
    CHECK_EQ_INT(qkv_f32_to_f16(0x1p-25f), 0x0000); /* tie between 0 and 2^-24: even is 0 */
    CHECK_EQ_INT(qkv_f32_to_f16(nextafterf(0x1p-25f, 1.0f)), 0x0001);
    CHECK_EQ_INT(qkv_f32_to_f16(-0x1p-25f), 0x8000);
    CHECK_EQ_INT(qkv_f32_to_f16(0x3p-25f), 0x0002);     /* 1.5 units: tie to even 2 */
    CHECK_EQ_INT(qkv_f32_to_f16(0x1.ff8p-15f), 0x03ff); /* largest subnormal */
    CHECK_EQ_INT(qkv_f32_to_f16(0x1.ffcp-15f), 0x0400); /* tie above it: up to the normal */
    CHECK_EQ_INT(qkv_f32_to_f16(FLT_MIN), 0x0000);
    CHECK_EQ_INT(qkv_f32_to_f16(float_of(1)), 0x0000); /* f32 subnormal */
    CHECK_EQ_INT(qkv_f32_to_f16(float_of(0x80000001u)), 0x8000);
    CHECK_EQ_INT(qkv_f32_to_f16(1.0f + 0x1p-11f), 0x3c00); /* tie, even stays */
    CHECK_EQ_INT(qkv_f32_to_f16(1.0f + 0x3p-11f), 0x3c02); /* tie, odd goes up */
    /* NaN: quiet, sign and top payload bits kept, never Inf */
    CHECK_EQ_INT(qkv_f32_to_f16(float_of(0x7fc00000u)), 0x7e00);
    CHECK_EQ_INT(qkv_f32_to_f16(float_of(0xffc00000u)), 0xfe00);
    CHECK_EQ_INT(qkv_f32_to_f16(float_of(0x7f800001u)), 0x7e00); /* sNaN, payload too low */
    CHECK_EQ_INT(qkv_f32_to_f16(float_of(0x7fa00000u)), 0x7f00); /* sNaN with payload */
    CHECK_EQ_INT(qkv_f32_to_f16(float_of(0x7fffffffu)), 0x7fff);
    CHECK_EQ_INT(bits_of(qkv_f16_to_f32(0x7c01)), 0x7fc02000u); /* sNaN made quiet */
    CHECK_EQ_INT(bits_of(qkv_f16_to_f32(0xfe00)), 0xffc00000u);
    CHECK_EQ_INT(bits_of(qkv_f16_to_f32(0x7c00)), 0x7f800000u);
    CHECK_EQ_INT(bits_of(qkv_f16_to_f32(0xfc00)), 0xff800000u);
    CHECK(qkv_f16_to_f32(0x0001) == 0x1p-24f);
    CHECK(qkv_f16_to_f32(0x03ff) == 0x1.ff8p-15f);
    CHECK(qkv_f16_to_f32(0x7bff) == 65504.0f);
}

/* f32 -> f16 and f32 -> bf16 against the references on a strided sweep of every bit pattern
 * and on random ones (NaN, Inf and subnormals included). */
static void test_f32_sweep(void) {
    int bad16 = 0, badbf = 0;
    long n = 0;
    const uint64_t stride = 997, n_random = 1000000; /* 4.3 M strided, then random */
    for (uint64_t u = 0; u <= 0xffffffffull + n_random * stride; u += stride, n++) {
        uint32_t x = u <= 0xffffffffull ? (uint32_t)u : next_u32();
        float f = float_of(x);
        uint16_t h = qkv_f32_to_f16(f), wh = ref_f32_to_f16(f);
        uint16_t b = qkv_f32_to_bf16(f), wb = ref_f32_to_bf16(f);
        if (h != wh && bad16++ < 10) fprintf(stderr, "f32 %08x -> f16 %04x, want %04x\n", x, h, wh);
        if (b != wb && badbf++ < 10)
            fprintf(stderr, "f32 %08x -> bf16 %04x, want %04x\n", x, b, wb);
        if (isnan(f)) {
            CHECK((h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0);
            CHECK((b & 0x7f80) == 0x7f80 && (b & 0x7f) != 0);
        }
    }
    printf("f32 sweep: %ld values\n", n);
    CHECK_EQ_INT(bad16, 0);
    CHECK_EQ_INT(badbf, 0);
}

static void test_bf16(void) {
    int bad = 0;
    for (uint32_t c = 0; c < 65536; c++) {
        uint16_t h = (uint16_t)c;
        uint32_t want = c << 16;
        int nan = (h & 0x7f80) == 0x7f80 && (h & 0x7f);
        if (nan) want |= 0x400000u;
        uint32_t got = bits_of(qkv_bf16_to_f32(h));
        if (got != want && bad++ < 10) fprintf(stderr, "bf16 %04x -> %08x\n", c, got);
        uint16_t back = qkv_f32_to_bf16(qkv_bf16_to_f32(h));
        if (back != (nan ? (h | 0x40) : h) && bad++ < 10)
            fprintf(stderr, "bf16 %04x round trip -> %04x\n", c, back);
    }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(qkv_f32_to_bf16(1.0f), 0x3f80);
    CHECK_EQ_INT(qkv_f32_to_bf16(float_of(0x3f808000u)), 0x3f80); /* tie, even stays */
    CHECK_EQ_INT(qkv_f32_to_bf16(float_of(0x3f818000u)), 0x3f82); /* tie, odd goes up */
    CHECK_EQ_INT(qkv_f32_to_bf16(float_of(0x3f808001u)), 0x3f81);
    CHECK_EQ_INT(qkv_f32_to_bf16(FLT_MAX), 0x7f80); /* rounds up past the largest finite */
    CHECK_EQ_INT(qkv_f32_to_bf16(float_of(0x7f7f7fffu)), 0x7f7f);
    CHECK_EQ_INT(qkv_f32_to_bf16(-INFINITY), 0xff80);
    CHECK_EQ_INT(qkv_f32_to_bf16(float_of(0x00008000u)), 0x0000); /* subnormal tie to 0 */
    CHECK_EQ_INT(qkv_f32_to_bf16(float_of(0x00018000u)), 0x0002);
    CHECK_EQ_INT(qkv_f32_to_bf16(float_of(0x007fffffu)), 0x0080); /* up to the smallest normal */
    CHECK_EQ_INT(qkv_f32_to_bf16(float_of(0x7f800001u)), 0x7fc0); /* sNaN: quiet, not Inf */
    CHECK_EQ_INT(qkv_f32_to_bf16(float_of(0xffffffffu)), 0xffff);
    CHECK_EQ_INT(bits_of(qkv_bf16_to_f32(0x7f81)), 0x7fc10000u);
}

int main(void) {
    init_pos();
    test_names();
    test_f16_decode_all();
    test_f16_round_trip();
    test_f16_midpoints();
    test_f16_special();
    test_bf16();
    test_f32_sweep();
    return test_finish("core_dtype");
}
