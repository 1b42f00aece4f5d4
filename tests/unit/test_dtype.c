/* test_dtype.c — dtype names and sizes; exact f32 <-> bf16/f16 conversion: exhaustive round
 * trips, ties, subnormals, overflow and NaN, a table from numpy/PyTorch, and the bulk paths
 * (vectorized, F16C, unaligned) agreeing bit for bit with the scalar functions. */
#include "test.h"
#include "base/dtype.h"
#include "base/error.h"

#include <stdint.h>
#include <stdlib.h>

static uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float float_of(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static int f16_is_nan(uint16_t h) { return (h & 0x7c00) == 0x7c00 && (h & 0x3ff); }
static int bf16_is_nan(uint16_t h) { return (h & 0x7f80) == 0x7f80 && (h & 0x7f); }

TEST(dtype_names_sizes_parse)
{
    const char *names[] = {"F32", "BF16", "F16", "U8", "I32", "I64"};
    const size_t sizes[] = {4, 2, 2, 1, 4, 8};
    for (int i = 0; i < 6; i++) {
        CHECK_STR(dfm_dtype_name((dfm_dtype)i), names[i]);
        CHECK_EQ(dfm_dtype_size((dfm_dtype)i), sizes[i]);
        dfm_dtype t = DFM_I64;
        CHECK_EQ(dfm_dtype_parse(names[i], &t), 0);
        CHECK_EQ(t, i);
    }
    dfm_dtype t = DFM_F32;
    CHECK_EQ(dfm_dtype_parse("F64", &t), -1);
    CHECK_EQ(dfm_dtype_parse("f32", &t), -1);
    CHECK_EQ(dfm_dtype_parse("", &t), -1);
    CHECK_EQ(dfm_dtype_parse(NULL, &t), -1);
    CHECK_EQ(t, DFM_F32);
    CHECK_EQ(dfm_dtype_size((dfm_dtype)99), 0);
    CHECK_STR(dfm_dtype_name((dfm_dtype)99), "?");
}

/* Every f16 value: f16 -> f32 is exact (checked against the value formula), and back gives the
 * same bits; NaNs stay NaN with sign and payload, quieted. */
TEST(dtype_f16_roundtrip_exhaustive)
{
    int bad = 0;
    for (uint32_t i = 0; i < 65536; i++) {
        uint16_t h = (uint16_t)i;
        float f = dfm_f16_to_f32(h);
        int e = (h >> 10) & 0x1f, m = h & 0x3ff;
        double sign = (h & 0x8000) ? -1.0 : 1.0;
        if (e == 31) {
            if (m) {
                bad += !isnan(f) || (bits_of(f) >> 31) != (h >> 15u);
                bad += bits_of(f) != (((uint32_t)(h & 0x8000) << 16) | 0x7fc00000u | ((uint32_t)m << 13));
                uint16_t back = dfm_f32_to_f16(f);
                bad += back != (h | 0x200);
            } else {
                bad += !isinf(f) || (f < 0) != (sign < 0);
                bad += dfm_f32_to_f16(f) != h;
            }
            continue;
        }
        double want = sign * (e ? ldexp(1024 + m, e - 25) : ldexp(m, -24));
        bad += (double)f != want || !!signbit(f) != (sign < 0);
        bad += dfm_f32_to_f16(f) != h;
    }
    CHECK_EQ(bad, 0);
}

TEST(dtype_bf16_roundtrip_exhaustive)
{
    int bad = 0;
    for (uint32_t i = 0; i < 65536; i++) {
        uint16_t h = (uint16_t)i;
        float f = dfm_bf16_to_f32(h);
        bad += bits_of(f) != (uint32_t)h << 16;
        uint16_t back = dfm_f32_to_bf16(f);
        if (bf16_is_nan(h)) bad += back != (h | 0x40);
        else bad += back != h;
    }
    CHECK_EQ(bad, 0);
}

/* {f32 bits, numpy astype(float16) bits, torch .to(bfloat16) bits} from numpy 2.4 / torch 2.15
 * (NaN rows: torch gives a NaN with another payload; we check only NaN-ness there). */
static const uint32_t REF[][3] = {
    {0x00000000, 0x0000, 0x0000}, /* 0.0 */
    {0x80000000, 0x8000, 0x8000}, /* -0.0 */
    {0x3f800000, 0x3c00, 0x3f80}, /* 1.0 */
    {0xbf800000, 0xbc00, 0xbf80}, /* -1.0 */
    {0x477fe000, 0x7bff, 0x4780}, /* 65504.0 */
    {0x477fefff, 0x7bff, 0x4780}, /* 65519.99609375 */
    {0x477ff000, 0x7c00, 0x4780}, /* 65520.0 */
    {0x477ff001, 0x7c00, 0x4780}, /* 65520.00390625 */
    {0x47800000, 0x7c00, 0x4780}, /* 65536.0 */
    {0x7f7fffff, 0x7c00, 0x7f80}, /* 3.4028234663852886e+38 */
    {0x7f800000, 0x7c00, 0x7f80}, /* inf */
    {0xff800000, 0xfc00, 0xff80}, /* -inf */
    {0x7fc00000, 0x7e00, 0xffff}, /* nan */
    {0xffc00000, 0xfe00, 0xffff}, /* -nan */
    {0x7fc02000, 0x7e01, 0xffff}, /* nan with payload */
    {0x38800000, 0x0400, 0x3880}, /* 6.103515625e-05 */
    {0x387fffff, 0x0400, 0x3880}, /* 6.103515261202119e-05 */
    {0x387fe000, 0x0400, 0x3880}, /* 6.1005353927612305e-05 */
    {0x387ff000, 0x0400, 0x3880}, /* 6.102025508880615e-05 */
    {0x33000000, 0x0000, 0x3300}, /* 2.9802322387695312e-08 */
    {0x33000001, 0x0001, 0x3300}, /* 2.980232594040899e-08 */
    {0x33800000, 0x0001, 0x3380}, /* 5.960464477539063e-08 */
    {0x33c00000, 0x0002, 0x33c0}, /* 8.940696716308594e-08 */
    {0x34200000, 0x0002, 0x3420}, /* 1.4901161193847656e-07 */
    {0x34400000, 0x0003, 0x3440}, /* 1.7881393432617188e-07 */
    {0x3f801000, 0x3c00, 0x3f80}, /* 1.00048828125 */
    {0x3f803000, 0x3c02, 0x3f80}, /* 1.00146484375 */
    {0x3f801001, 0x3c01, 0x3f80}, /* 1.0004884004592896 */
    {0x3f802fff, 0x3c01, 0x3f80}, /* 1.0014647245407104 */
    {0x00000001, 0x0000, 0x0000}, /* 1.401298464324817e-45 */
    {0x80000001, 0x8000, 0x8000}, /* -1.401298464324817e-45 */
    {0x007fffff, 0x0000, 0x0080}, /* 1.1754942106924411e-38 */
    {0x3eaaaaab, 0x3555, 0x3eab}, /* 0.3333333432674408 */
    {0x40490fdb, 0x4248, 0x4049}, /* 3.1415927410125732 */
    {0xc2f6e979, 0xd7b7, 0xc2f7}, /* -123.45600128173828 */
    {0x3a800800, 0x1400, 0x3a80}, /* 0.0009768009185791016 */
    {0x3a801800, 0x1401, 0x3a80}, /* 0.0009772777557373047 */
    {0x37800000, 0x0100, 0x3780}, /* 1.52587890625e-05 */
    {0x37c00000, 0x0180, 0x37c0}, /* 2.288818359375e-05 */
    {0x35000000, 0x0008, 0x3500}, /* 4.76837158203125e-07 */
    {0x35080000, 0x0008, 0x3508}, /* 5.066394805908203e-07 */
    {0xb5080000, 0x8008, 0xb508}, /* -5.066394805908203e-07 */
    {0x358c0000, 0x0012, 0x358c}, /* 1.043081283569336e-06 */
    {0x3c1c0000, 0x20e0, 0x3c1c}, /* 0.009521484375 */
    {0x3f009627, 0x3805, 0x3f01}, /* 0.5022911429405212 */
    {0xc06b99fd, 0xc35d, 0xc06c}, /* -3.6812736988067627 */
    {0x45887b49, 0x6c44, 0x4588}, /* 4367.41064453125 */
    {0xbde10761, 0xaf08, 0xbde1}, /* -0.10987735539674759 */
    {0x429dd018, 0x54ef, 0x429e}, /* 78.90643310546875 */
    {0x4401f3ae, 0x6010, 0x4402}, /* 519.8074951171875 */
    {0xb1552f9e, 0x8000, 0xb155}, /* -3.1022646673761756e-09 */
    {0x373438be, 0x00b4, 0x3734}, /* 1.0742047379608266e-05 */
    {0x36d773ac, 0x006c, 0x36d7}, /* 6.420965291908942e-06 */
    {0x44f71cc4, 0x67b9, 0x44f7}, /* 1976.89892578125 */
    {0xc5e7282a, 0xef39, 0xc5e7}, /* -7397.0205078125 */
    {0x3020599b, 0x0000, 0x3020}, /* 5.833499794327679e-10 */
};

TEST(dtype_matches_numpy_torch_table)
{
    int n = (int)(sizeof REF / sizeof REF[0]);
    for (int i = 0; i < n; i++) {
        float f = float_of(REF[i][0]);
        uint16_t h = dfm_f32_to_f16(f), b = dfm_f32_to_bf16(f);
        if (h != REF[i][1]) {
            fprintf(stderr, "  f16(0x%08x) = 0x%04x, numpy 0x%04x\n", REF[i][0], h, REF[i][1]);
            dfm_test_failures++;
        }
        if (isnan(f)) {
            CHECK(bf16_is_nan(b));
            CHECK_EQ(b >> 15, REF[i][0] >> 31);
        } else if (b != REF[i][2]) {
            fprintf(stderr, "  bf16(0x%08x) = 0x%04x, torch 0x%04x\n", REF[i][0], b, REF[i][2]);
            dfm_test_failures++;
        }
    }
}

/* Ties between every pair of neighbouring f16 / bf16 values go to the even one; a hair above
 * or below goes to the nearer one. */
TEST(dtype_ties_to_even)
{
    int bad = 0;
    for (uint32_t i = 0; i < 0x7c00; i++) { /* positive finite f16 below the largest */
        uint16_t lo = (uint16_t)i, hi = (uint16_t)(i + 1);
        if (hi == 0x7c00) break;
        double a = dfm_f16_to_f32(lo), b = dfm_f16_to_f32(hi), mid = (a + b) / 2;
        float fm = (float)mid; /* exact: the midpoint of two f16 values fits in f32 */
        if ((double)fm != mid) {
            bad++;
            continue;
        }
        uint16_t even = (lo & 1) ? hi : lo;
        bad += dfm_f32_to_f16(fm) != even;
        bad += dfm_f32_to_f16(-fm) != (even | 0x8000);
        bad += dfm_f32_to_f16(nextafterf(fm, 0)) != lo;
        bad += dfm_f32_to_f16(nextafterf(fm, INFINITY)) != hi;
    }
    for (uint32_t i = 0; i < 0x7f7f; i += 7) {
        uint16_t lo = (uint16_t)i, hi = (uint16_t)(i + 1);
        uint32_t mid = ((uint32_t)lo << 16) | 0x8000u; /* exactly halfway */
        uint16_t even = (lo & 1) ? hi : lo;
        bad += dfm_f32_to_bf16(float_of(mid)) != even;
        bad += dfm_f32_to_bf16(float_of(mid - 1)) != lo;
        bad += dfm_f32_to_bf16(float_of(mid + 1)) != hi;
    }
    CHECK_EQ(bad, 0);
    /* overflow: the largest f16 and the tie just past it */
    CHECK_EQ(dfm_f32_to_f16(65504.0f), 0x7bff);
    CHECK_EQ(dfm_f32_to_f16(65519.996f), 0x7bff);
    CHECK_EQ(dfm_f32_to_f16(65520.0f), 0x7c00);
    CHECK_EQ(dfm_f32_to_f16(-1e30f), 0xfc00);
    CHECK_EQ(dfm_f32_to_bf16(3.4028235e38f), 0x7f80);
    CHECK(isnan(dfm_f16_to_f32(dfm_f32_to_f16(NAN))));
    CHECK(isnan(dfm_bf16_to_f32(dfm_f32_to_bf16(NAN))));
    CHECK(isnan(dfm_bf16_to_f32(dfm_f32_to_bf16(float_of(0x7f800001))))); /* low-bit sNaN */
    CHECK(f16_is_nan(dfm_f32_to_f16(float_of(0xff800001))));
}

/* The bulk paths (blocked loops, F16C, tails, unaligned pointers, via-f32 pairs) give the same
 * bits as the scalar functions, over every 16-bit pattern and a spread of f32 values. */
TEST(dtype_convert_floats_matches_scalar)
{
    enum { N = 65536 + 37 };
    uint16_t *h = malloc(N * 2 + 8), *h2 = malloc(N * 2 + 8);
    float *f = malloc(N * 4 + 8);
    uint8_t *raw = malloc(N * 4 + 16);
    CHECK(h && h2 && f && raw);
    if (!h || !h2 || !f || !raw) goto out;
    for (int i = 0; i < N; i++) h[i] = (uint16_t)(i * 40503u);
    int bad = 0;
    /* f16 -> f32 */
    CHECK_EQ(dfm_convert_floats(f, DFM_F32, h, DFM_F16, N), 0);
    for (int i = 0; i < N; i++) bad += bits_of(f[i]) != bits_of(dfm_f16_to_f32(h[i]));
    /* bf16 -> f32 */
    CHECK_EQ(dfm_convert_floats(f, DFM_F32, h, DFM_BF16, N), 0);
    for (int i = 0; i < N; i++) bad += bits_of(f[i]) != bits_of(dfm_bf16_to_f32(h[i]));
    /* f32 -> f16 / bf16 over f32 patterns that hit every f16 range, ties included */
    for (int i = 0; i < N; i++) f[i] = float_of(((uint32_t)i * 2654435761u) ^ ((uint32_t)i << 12));
    for (int i = 0; i < 64; i++) f[i] = float_of(0x33000000u + (uint32_t)i * 0x00400000u);
    CHECK_EQ(dfm_convert_floats(h, DFM_F16, f, DFM_F32, N), 0);
    for (int i = 0; i < N; i++) bad += h[i] != dfm_f32_to_f16(f[i]);
    CHECK_EQ(dfm_convert_floats(h, DFM_BF16, f, DFM_F32, N), 0);
    for (int i = 0; i < N; i++) bad += h[i] != dfm_f32_to_bf16(f[i]);
    /* bf16 -> f16 rounds once, through f32 */
    for (int i = 0; i < N; i++) h[i] = (uint16_t)(i * 40503u);
    CHECK_EQ(dfm_convert_floats(h2, DFM_F16, h, DFM_BF16, N), 0);
    for (int i = 0; i < N; i++) bad += h2[i] != dfm_f32_to_f16(dfm_bf16_to_f32(h[i]));
    CHECK_EQ(dfm_convert_floats(h2, DFM_BF16, h, DFM_F16, N), 0);
    for (int i = 0; i < N; i++) bad += h2[i] != dfm_f32_to_bf16(dfm_f16_to_f32(h[i]));
    /* unaligned source and destination (odd addresses), short lengths for the tails */
    for (int len = 0; len < 70; len += 3) {
        memcpy(raw + 1, h, (size_t)len * 2);
        CHECK_EQ(dfm_convert_floats(raw + 1 + 2 * len + 2, DFM_F32, raw + 1, DFM_F16, len), 0);
        for (int i = 0; i < len; i++) {
            float g;
            memcpy(&g, raw + 1 + 2 * len + 2 + 4 * i, 4);
            bad += bits_of(g) != bits_of(dfm_f16_to_f32(h[i]));
        }
        memcpy(raw + 3, f, (size_t)len * 4);
        CHECK_EQ(dfm_convert_floats(raw + 3 + 4 * len + 2, DFM_BF16, raw + 3, DFM_F32, len), 0);
        for (int i = 0; i < len; i++) {
            uint16_t g;
            memcpy(&g, raw + 3 + 4 * len + 2 + 2 * i, 2);
            bad += g != dfm_f32_to_bf16(f[i]);
        }
    }
    CHECK_EQ(bad, 0);
    /* same dtype copies; u8 widens to its value; other pairs are refused */
    CHECK_EQ(dfm_convert_floats(h2, DFM_F16, h, DFM_F16, N), 0);
    CHECK(!memcmp(h2, h, N * 2));
    uint8_t u[5] = {0, 1, 127, 128, 255};
    float uf[5];
    uint16_t ub[5];
    CHECK_EQ(dfm_convert_floats(uf, DFM_F32, u, DFM_U8, 5), 0);
    CHECK_EQ(dfm_convert_floats(ub, DFM_BF16, u, DFM_U8, 5), 0);
    for (int i = 0; i < 5; i++) {
        CHECK_EQ(uf[i], u[i]);
        CHECK_EQ(dfm_bf16_to_f32(ub[i]), u[i]); /* bf16 holds 8 significant bits */
    }
    CHECK_EQ(dfm_convert_floats(u, DFM_U8, uf, DFM_F32, 5), DFM_E_UNSUPPORTED);
    CHECK_EQ(dfm_convert_floats(uf, DFM_F32, u, DFM_I32, 1), DFM_E_UNSUPPORTED);
    CHECK(strstr(dfm_errmsg(), "I32") != NULL);
out:
    free(h);
    free(h2);
    free(f);
    free(raw);
}
