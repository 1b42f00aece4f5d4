/* test_finite.c — the non-finite check (tensor/finite.h, kernels/cpu/finite.c): NaN, +Inf and -Inf
 * in F32, BF16 and F16 at the first, a middle and the last element; the largest finite values,
 * subnormals and -0 are not flagged; unaligned data; arrays long enough to be split across
 * threads give the same count and first index at every thread count; all of it on the AVX2 path
 * and on the plain one; the message names the
 * count, the kind and the index in the tensor's shape; the CUDA twin agrees with the CPU when a
 * device is present. Also dfm_npy_describe, which model stages use to say what they rejected. */
#include "test.h"
#include "tensor_util.h"
#include "base/error.h"
#include "cpu/cpu.h"
#include "cpu/finite.h"
#include "io/npy.h"
#include "tensor/finite.h"
#include "tensor/ops.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Bit patterns per dtype: a NaN, +Inf, -Inf, the largest finite value, the smallest subnormal,
 * -0 and 1.0. */
typedef struct {
    dfm_dtype dt;
    const char *name;
    uint32_t nan, pinf, ninf, max, sub, nzero, one;
} bits_t;

static const bits_t BITS[] = {
    {DFM_F32, "F32", 0x7fc00000u, 0x7f800000u, 0xff800000u, 0x7f7fffffu, 0x00000001u, 0x80000000u, 0x3f800000u},
    {DFM_BF16, "BF16", 0x7fc0u, 0x7f80u, 0xff80u, 0x7f7fu, 0x0001u, 0x8000u, 0x3f80u},
    {DFM_F16, "F16", 0x7e00u, 0x7c00u, 0xfc00u, 0x7bffu, 0x0001u, 0x8000u, 0x3c00u},
};

static void put(void *p, dfm_dtype dt, int64_t i, uint32_t v)
{
    if (dt == DFM_F32) memcpy((uint8_t *)p + 4 * i, &v, 4);
    else {
        uint16_t h = (uint16_t)v;
        memcpy((uint8_t *)p + 2 * i, &h, 2);
    }
}

/* An array of n finite values of every kind (1.0, max, -max, subnormal, -0) of dtype b->dt. */
static void *finite_array(const bits_t *b, int64_t n, size_t pad)
{
    uint8_t *p = malloc((size_t)n * dfm_dtype_size(b->dt) + pad);
    if (!p) return NULL;
    const uint32_t kinds[5] = {b->one, b->max, b->max | (b->dt == DFM_F32 ? 0x80000000u : 0x8000u), b->sub,
                               b->nzero};
    for (int64_t i = 0; i < n; i++) put(p + pad, b->dt, i, kinds[i % 5]);
    return p;
}

static void each_dtype_value_and_place(void)
{
    const int64_t shape[4] = {2, 3, 4, 6}, n = 2 * 3 * 4 * 6;
    for (size_t d = 0; d < sizeof BITS / sizeof BITS[0]; d++) {
        const bits_t *b = &BITS[d];
        const uint32_t vals[3] = {b->nan, b->pinf, b->ninf};
        const char *names[3] = {"NaN", "+Inf", "-Inf"};
        uint8_t *p = finite_array(b, n, 0);
        CHECK(p != NULL);
        if (!p) return;
        dfm_tensor t = dfm_tensor_view(p, b->dt, DFM_CPU, 4, shape);
        CHECK_EQ(dfm_tensor_check_finite(&t, "x"), 0); /* max, subnormal, -0 are finite */
        const int64_t places[3] = {0, 1 * 72 + 2 * 24 + 1 * 6 + 5, n - 1};
        const char *idx[3] = {"[0,0,0,0]", "[1,2,1,5]", "[1,2,3,5]"};
        for (int v = 0; v < 3; v++) {
            for (int k = 0; k < 3; k++) {
                uint8_t *q = finite_array(b, n, 0);
                if (!q) continue;
                put(q, b->dt, places[k], vals[v]);
                dfm_tensor u = dfm_tensor_view(q, b->dt, DFM_CPU, 4, shape);
                dfm_nonfinite r;
                CHECK_EQ(dfm_tensor_nonfinite(&u, &r), 0);
                CHECK_EQ(r.count, 1);
                CHECK_EQ(r.first, places[k]);
                CHECK_EQ(dfm_tensor_check_finite(&u, "latents.npy"), DFM_E_NONFINITE);
                char want[128];
                snprintf(want, sizeof want, "latents.npy has 1 non-finite value (first %s at %s)", names[v],
                         idx[k]);
                if (strcmp(dfm_errmsg(), want))
                    fprintf(stderr, "  %s: '%s', want '%s'\n", b->name, dfm_errmsg(), want);
                CHECK_STR(dfm_errmsg(), want);
                free(q);
            }
        }
        /* several: the count and the first */
        put(p, b->dt, 7, b->ninf), put(p, b->dt, 30, b->nan), put(p, b->dt, n - 1, b->pinf);
        CHECK_EQ(dfm_tensor_check_finite(&t, "text.npy"), DFM_E_NONFINITE);
        CHECK_STR(dfm_errmsg(), "text.npy has 3 non-finite values (first -Inf at [0,0,1,1])");
        free(p);
    }
}

static void other_dtypes_empty_and_unaligned(void)
{
    uint8_t u8[4] = {255, 255, 255, 255};
    int64_t four = 4, zero = 0;
    dfm_tensor t = dfm_tensor_view(u8, DFM_U8, DFM_CPU, 1, &four);
    CHECK_EQ(dfm_tensor_check_finite(&t, "u8"), 0);
    int32_t i32[4] = {-1, -1, 0x7f800000, 0x7fc00000}; /* float NaN/Inf bits in an int tensor */
    t = dfm_tensor_view(i32, DFM_I32, DFM_CPU, 1, &four);
    CHECK_EQ(dfm_tensor_check_finite(&t, "i32"), 0);
    t = dfm_tensor_view(NULL, DFM_F32, DFM_CPU, 1, &zero);
    CHECK_EQ(dfm_tensor_check_finite(&t, "empty"), 0);
    /* data at an odd address, as a .npy field inside a stream buffer may be */
    for (size_t d = 0; d < sizeof BITS / sizeof BITS[0]; d++) {
        const bits_t *b = &BITS[d];
        int64_t n = 1001;
        uint8_t *p = finite_array(b, n, 1);
        if (!p) continue;
        put(p + 1, b->dt, 999, b->nan);
        t = dfm_tensor_view(p + 1, b->dt, DFM_CPU, 1, &n);
        dfm_nonfinite r;
        CHECK_EQ(dfm_tensor_nonfinite(&t, &r), 0);
        CHECK_EQ(r.count, 1);
        CHECK_EQ(r.first, 999);
        CHECK(isnan(r.value));
        free(p);
    }
    /* a 0-d tensor */
    float inf = INFINITY;
    t = dfm_tensor_view(&inf, DFM_F32, DFM_CPU, 0, NULL);
    CHECK_EQ(dfm_tensor_check_finite(&t, "loss"), DFM_E_NONFINITE);
    CHECK_STR(dfm_errmsg(), "loss has 1 non-finite value (first +Inf at [])");
}

/* Large arrays are split across threads: the count and the first index must not depend on it. */
static void threads_agree(void)
{
    int64_t n = (int64_t)3 << 20; /* several chunks */
    const bits_t *b = &BITS[2];   /* F16 */
    uint8_t *p = finite_array(b, n, 0);
    CHECK(p != NULL);
    if (!p) return;
    const int64_t at[] = {n - 1, n / 2 + 17, (int64_t)1 << 20, 262145, 4095, 4096};
    int64_t want_count = 0;
    for (size_t i = 0; i < sizeof at / sizeof at[0]; i++) put(p, b->dt, at[i], i % 2 ? b->pinf : b->nan);
    want_count = (int64_t)(sizeof at / sizeof at[0]);
    int saved = dfm_cpu_threads();
    for (int th = 1; th <= 8; th *= 2) {
        dfm_cpu_set_threads(th);
        int64_t first = -2;
        CHECK_EQ(dfm_cpu_count_nonfinite(p, b->dt, n, &first), want_count);
        CHECK_EQ(first, 4095);
    }
    dfm_cpu_set_threads(saved);
    free(p);
}

/* Each check on the AVX2 path (where the CPU has it) and on the plain loops. */
TEST(finite_cpu_paths)
{
    for (int simd = 1; simd >= 0; simd--) {
        dfm_cpu_set_simd(simd);
        int before = dfm_test_failures;
        each_dtype_value_and_place();
        other_dtypes_empty_and_unaligned();
        threads_agree();
        if (dfm_test_failures != before) fprintf(stderr, "  (on the %s path)\n", dfm_cpu_impl());
    }
    dfm_cpu_set_simd(1);
}

/* The CUDA twin against the CPU over sizes around the grid-stride boundaries. */
TEST(finite_cuda_matches_cpu)
{
    if (dfm_test_cuda_skip()) return;
    const int64_t sizes[] = {1, 7, 256, 257, 100003, (int64_t)1 << 22};
    for (size_t d = 0; d < sizeof BITS / sizeof BITS[0]; d++) {
        const bits_t *b = &BITS[d];
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            int64_t n = sizes[s];
            uint8_t *p = finite_array(b, n, 0);
            if (!p) continue;
            for (int rep = 0; rep < 3; rep++) {
                if (rep == 1) put(p, b->dt, n - 1, b->ninf);
                if (rep == 2) put(p, b->dt, n / 3, b->nan), put(p, b->dt, n / 2, b->pinf);
                dfm_tensor h = dfm_tensor_view(p, b->dt, DFM_CPU, 1, &n), g = {0};
                if (dfm_tensor_copy(&g, &h, DFM_CUDA)) {
                    CHECK(0);
                    break;
                }
                dfm_nonfinite rc_, rg;
                CHECK_EQ(dfm_tensor_nonfinite(&h, &rc_), 0);
                CHECK_EQ(dfm_tensor_nonfinite(&g, &rg), 0);
                CHECK_EQ(rg.count, rc_.count);
                CHECK_EQ(rg.first, rc_.first);
                CHECK(memcmp(&rg.value, &rc_.value, sizeof(float)) == 0 || (isnan(rg.value) && isnan(rc_.value)));
                dfm_tensor_free(&g);
            }
            free(p);
        }
    }
}

/* A .npy with any descr, for the describe test. */
static uint8_t *raw_npy(const char *descr, const char *shape, size_t data_bytes, size_t *len)
{
    char hdr[256];
    int n = snprintf(hdr, sizeof hdr, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }", descr, shape);
    size_t total = 10 + (size_t)n + 1;
    size_t padded = (total + 63) / 64 * 64;
    uint8_t *b = calloc(1, padded + data_bytes + 1);
    if (!b) return NULL;
    memcpy(b, "\x93NUMPY\x01\x00", 8);
    size_t hl = padded - 10;
    b[8] = (uint8_t)(hl & 0xff), b[9] = (uint8_t)(hl >> 8);
    memset(b + 10, ' ', hl);
    memcpy(b + 10, hdr, (size_t)n);
    b[padded - 1] = '\n';
    *len = padded + data_bytes;
    return b;
}

TEST(npy_describe)
{
    static const struct {
        const char *descr, *shape, *want;
        size_t bytes;
    } cases[] = {
        {"<f8", "(16, 3, 8, 8)", "float64 [16,3,8,8]", 16 * 3 * 8 * 8 * 8},
        {"<f4", "(2, 3)", "float32 [2,3]", 24},
        {"<f2", "(5,)", "float16 [5]", 10},
        {"|u1", "(1, 4, 4, 3)", "uint8 [1,4,4,3]", 48},
        {">f4", "(4,)", "big-endian float32 [4]", 16},
        {"|b1", "()", "bool []", 1},
        {"<i2", "(3,)", "int16 [3]", 6},
        {"<c8", "(1,)", "complex64 [1]", 8},
        {"<M8[ns]", "(1,)", "dtype '<M8[ns]' [1]", 8},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len = 0;
        uint8_t *b = raw_npy(cases[i].descr, cases[i].shape, cases[i].bytes, &len);
        if (!b) continue;
        char out[128];
        CHECK_STR(dfm_npy_describe(b, len, out, sizeof out), cases[i].want);
        free(b);
    }
    char out[64];
    CHECK_STR(dfm_npy_describe((const uint8_t *)"not npy at all", 14, out, sizeof out), "not a readable .npy");
    CHECK_STR(dfm_npy_type_name(DFM_NPY_F16), "float16");
    /* Truncated output buffers stay terminated. */
    size_t len = 0;
    uint8_t *b = raw_npy("<f8", "(16, 3, 8, 8)", 16 * 3 * 8 * 8 * 8, &len);
    if (b) {
        char tiny[8];
        dfm_npy_describe(b, len, tiny, sizeof tiny);
        CHECK_STR(tiny, "float64");
        free(b);
    }
}
