/* test_kernels_convert.c — the bulk f16/bf16 conversions of the active ISA (QKV_ARCH, one run
 * per ISA) equal the scalar definitions bit for bit: on every 16-bit code, on random f32 bit
 * patterns with NaN/Inf/subnormals mixed in, for every length 0..70 at unaligned offsets (all
 * tail shapes) and a long run, without touching memory outside [0, n), even when the buffers
 * end right before an unmapped page. Also: the dispatch table follows qkv_arch_set. */
#include "qkv.h"
#include "test.h"
#include "test_arch.h"

#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

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

static uint64_t rng_state = 12345;
static uint32_t next_u32(void) { /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (uint32_t)((z ^ (z >> 31)) >> 32);
}

static const uint32_t specials[] = {
    0x00000000, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0xffc00000, 0x7f800001,
    0xff800001, 0x7fa00000, 0x7fbfffff, 0x7fffffff, 0xffffffff, 0x00000001, 0x807fffff,
    0x00400000, 0x477fe000, 0x477fefff, 0x477ff000, 0xc77ff000, 0x7f7fffff, 0xff7fffff,
    0x38800000, 0x387fc000, 0x387fe000, 0x33000000, 0x33000001, 0xb3000001, 0x33800000,
    0x3f808000, 0x3f818000, 0x3f7fffff, 0x3f800000, 0x00008000, 0x00018000, 0x007fffff,
};
#define N_SPECIALS (sizeof specials / sizeof specials[0])

/* Random f32 patterns; every 5th a special value. */
static void fill_f32(float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        x[i] = float_of(i % 5 == 0 ? specials[next_u32() % N_SPECIALS] : next_u32());
}

static int differs_f32(const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (bits_of(a[i]) != bits_of(b[i])) return 1;
    return 0;
}

static void test_kernel_info(qkv_arch arch) {
    const char *op, *isa;
    size_t n = 0, converts = 0;
    for (; qkv_kernel_info(n, &op, &isa); n++) {
        qkv_arch a;
        CHECK(op && *op);
        CHECK(isa && qkv_arch_parse(isa, &a) == QKV_OK && a <= arch);
        /* every ISA specializes the four conversions */
        if (op && strncmp(op, "convert_", 8) == 0) {
            converts++;
            CHECK_MSG(isa && strcmp(isa, qkv_arch_name(arch)) == 0, "%s runs %s", op, isa);
        }
    }
    CHECK(n >= 4);
    CHECK_EQ_INT(converts, 4);
    CHECK(!qkv_kernel_info(n, &op, &isa));
    CHECK(!qkv_kernel_info((size_t)-1, NULL, NULL));
}

/* All 65536 codes through the bulk widening conversions, then back through the narrowing. */
static void test_all_codes(void) {
    enum { N = 65536 };
    uint16_t *h = malloc(N * sizeof *h), *back = malloc(N * sizeof *back);
    float *got = malloc(N * sizeof *got), *want = malloc(N * sizeof *want);
    for (size_t i = 0; i < N; i++) h[i] = (uint16_t)i;

    qkv_f16_to_f32_n(h, got, N);
    for (size_t i = 0; i < N; i++) want[i] = qkv_f16_to_f32(h[i]);
    CHECK(!differs_f32(got, want, N));
    qkv_f32_to_f16_n(got, back, N);
    int bad = 0;
    for (size_t i = 0; i < N; i++) bad += back[i] != qkv_f32_to_f16(got[i]);
    CHECK_EQ_INT(bad, 0);

    qkv_bf16_to_f32_n(h, got, N);
    for (size_t i = 0; i < N; i++) want[i] = qkv_bf16_to_f32(h[i]);
    CHECK(!differs_f32(got, want, N));
    qkv_f32_to_bf16_n(got, back, N);
    bad = 0;
    for (size_t i = 0; i < N; i++) bad += back[i] != qkv_f32_to_bf16(got[i]);
    CHECK_EQ_INT(bad, 0);
    free(h), free(back), free(got), free(want);
}

/* Random f32 bit patterns through the narrowing conversions. */
static void test_random_f32(void) {
    enum { N = 1 << 20 };
    float *x = malloc(N * sizeof *x);
    uint16_t *got = malloc(N * sizeof *got);
    fill_f32(x, N);
    int bad16 = 0, badbf = 0;
    qkv_f32_to_f16_n(x, got, N);
    for (size_t i = 0; i < N; i++)
        if (got[i] != qkv_f32_to_f16(x[i]) && bad16++ < 5)
            fprintf(stderr, "f16: %08x -> %04x, scalar %04x\n", bits_of(x[i]), got[i],
                    qkv_f32_to_f16(x[i]));
    qkv_f32_to_bf16_n(x, got, N);
    for (size_t i = 0; i < N; i++)
        if (got[i] != qkv_f32_to_bf16(x[i]) && badbf++ < 5)
            fprintf(stderr, "bf16: %08x -> %04x, scalar %04x\n", bits_of(x[i]), got[i],
                    qkv_f32_to_bf16(x[i]));
    CHECK_EQ_INT(bad16, 0);
    CHECK_EQ_INT(badbf, 0);
    free(x), free(got);
}

/* Lengths 0..70 and one long run, at element offsets 0..3 from a 64-byte aligned base; the
 * elements around [off, off + n) must keep their guard values. */
static void test_lengths(void) {
    enum { MAXN = 100003, PAD = 80 };
    float *f_src = qkv_malloc((MAXN + PAD) * sizeof(float));
    float *f_dst = qkv_malloc((MAXN + PAD) * sizeof(float));
    uint16_t *h_src = qkv_malloc((MAXN + PAD) * sizeof(uint16_t));
    uint16_t *h_dst = qkv_malloc((MAXN + PAD) * sizeof(uint16_t));
    const uint32_t guard32 = 0xdeadbeefu;
    const uint16_t guard16 = 0xbeefu;
    int bad = 0;
    fill_f32(f_src, MAXN + PAD);
    for (size_t i = 0; i < MAXN + PAD; i++) h_src[i] = (uint16_t)next_u32();

    for (size_t len = 0; len <= 71; len++) {
        size_t n = len == 71 ? MAXN : len;
        for (size_t off = 0; off < 4; off++) {
            for (int op = 0; op < 4; op++) {
                int widen = op < 2;
                size_t span = off + n + PAD < MAXN + PAD ? off + n + PAD : MAXN + PAD;
                for (size_t i = 0; i < span; i++) {
                    memcpy(&f_dst[i], &guard32, sizeof guard32);
                    h_dst[i] = guard16;
                }
                switch (op) {
                case 0: qkv_f16_to_f32_n(h_src + off, f_dst + off, n); break;
                case 1: qkv_bf16_to_f32_n(h_src + off, f_dst + off, n); break;
                case 2: qkv_f32_to_f16_n(f_src + off, h_dst + off, n); break;
                case 3: qkv_f32_to_bf16_n(f_src + off, h_dst + off, n); break;
                }
                for (size_t i = 0; i < span; i++) {
                    int inside = i >= off && i < off + n;
                    int ok;
                    if (widen) {
                        uint32_t want = guard32;
                        if (inside)
                            want = bits_of(op == 0 ? qkv_f16_to_f32(h_src[i])
                                                   : qkv_bf16_to_f32(h_src[i]));
                        ok = bits_of(f_dst[i]) == want;
                    } else {
                        uint16_t want = guard16;
                        if (inside)
                            want = op == 2 ? qkv_f32_to_f16(f_src[i]) : qkv_f32_to_bf16(f_src[i]);
                        ok = h_dst[i] == want;
                    }
                    if (!ok && bad++ < 10)
                        fprintf(stderr, "op %d n %zu off %zu: element %zu wrong%s\n", op, n, off, i,
                                inside ? "" : " (outside the range)");
                }
            }
        }
    }
    CHECK_EQ_INT(bad, 0);
    qkv_free(f_src), qkv_free(f_dst), qkv_free(h_src), qkv_free(h_dst);
}

/* Sources and destinations that end exactly where an unmapped page begins: a kernel that reads
 * or writes past n (e.g. a full vector at the tail) crashes here. */
static void test_page_end(void) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    char *map = mmap(NULL, 4 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(map != MAP_FAILED);
    if (map == MAP_FAILED) return;
    CHECK(mprotect(map + page, page, PROT_NONE) == 0);
    CHECK(mprotect(map + 3 * page, page, PROT_NONE) == 0);
    char *end_a = map + page, *end_b = map + 3 * page; /* one page of room before each */
    for (size_t n = 0; n <= 40; n++) {
        uint16_t *h = (uint16_t *)(end_a - n * sizeof(uint16_t));
        float *f = (float *)(end_b - n * sizeof(float));
        for (size_t i = 0; i < n; i++) h[i] = (uint16_t)(0x3c00 + i);
        qkv_f16_to_f32_n(h, f, n);
        qkv_bf16_to_f32_n(h, f, n);
        qkv_f32_to_f16_n(f, h, n);
        qkv_f32_to_bf16_n(f, h, n);
        for (size_t i = 0; i < n; i++) CHECK(h[i] == qkv_f32_to_bf16(qkv_bf16_to_f32(h[i])));
    }
    munmap(map, 4 * page);
}

/* qkv_arch_set switches the table at once; every supported ISA gives the same bits. */
static void test_switch(qkv_arch arch) {
    enum { N = 1000 };
    float x[N], ref[N], got[N];
    uint16_t h[N];
    fill_f32(x, N);
    qkv_f32_to_f16_n(x, h, N);
    qkv_f16_to_f32_n(h, ref, N);
    for (int a = QKV_ARCH_SCALAR; a <= QKV_ARCH_AVX512; a++) {
        if (qkv_arch_set((qkv_arch)a) != QKV_OK) continue;
        const char *op, *isa;
        CHECK(qkv_kernel_info(0, &op, &isa));
        CHECK(strcmp(isa, qkv_arch_name((qkv_arch)a)) == 0);
        uint16_t h2[N];
        qkv_f32_to_f16_n(x, h2, N);
        qkv_f16_to_f32_n(h2, got, N);
        CHECK(memcmp(h, h2, sizeof h) == 0);
        CHECK(!differs_f32(got, ref, N));
    }
    CHECK_OK(qkv_arch_set(arch));
    CHECK(qkv_arch_active() == arch);
}

int main(void) {
    qkv_arch arch = test_use_arch_from_env();
    arch = qkv_arch_active();
    test_kernel_info(arch);
    test_all_codes();
    test_random_f32();
    test_lengths();
    test_page_end();
    test_switch(arch);
    return test_finish("kernels_convert");
}
