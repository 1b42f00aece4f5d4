/* test_resample.c — resampling parity with Pillow, identity, SIMD == scalar, threads, errors.
 * Fixtures: tests/fixtures/media/resample_{src.rgb,ref.bin,ref.txt} from
 * scripts/make-media-fixtures.sh (Pillow Image.resize(...).crop(...) of a 97x61 image). */
#include "test.h"
#include "base/buf.h"
#include "base/error.h"
#include "media/resize.h"

#include <stdint.h>
#include <stdlib.h>

/* A fixture under tests/fixtures/media. */
static int load(const char *name, dfm_buf *b) { return dfm_test_load_fixture("media", name, b); }

static dfm_filter filter_by_name(const char *s)
{
    if (!strcmp(s, "lanczos")) return DFM_FILTER_LANCZOS;
    if (!strcmp(s, "bicubic")) return DFM_FILTER_BICUBIC;
    if (!strcmp(s, "bilinear")) return DFM_FILTER_BILINEAR;
    return DFM_FILTER_AREA;
}

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 16);
}

/* Pillow parity. Bound: max |ours - Pillow| <= 1 per byte and at most 0.1% of bytes differing.
 * What we get: 0 differences (bit-exact: same double weights, same 22-bit fixed point, same
 * horizontal-first order with the uint8 intermediate); the slack only covers a libm whose
 * sin() rounds differently from the one the fixtures were made with. */
TEST(resample_pillow_parity)
{
    dfm_buf src, ref, idx;
    if (load("resample_src.rgb", &src) || load("resample_ref.bin", &ref) || load("resample_ref.txt", &idx)) {
        CHECK(0);
        return;
    }
    CHECK_EQ(src.len, 97 * 61 * 3);
    dfm_buf_append(&idx, "", 1);
    char *line = (char *)idx.data;
    int ncases = 0;
    while (line && *line) {
        char name[32];
        int rw, rh, l, t, dw, dh;
        long off;
        if (sscanf(line, "%31s %d %d %d %d %d %d %ld", name, &rw, &rh, &l, &t, &dw, &dh, &off) != 8) break;
        size_t n = (size_t)dw * dh * 3;
        CHECK(off >= 0 && (size_t)off + n <= ref.len);
        uint8_t *out = malloc(n);
        for (int simd = 0; simd <= 1; simd++)
            for (int threads = 1; threads <= 3; threads += 2) {
                dfm_resample_set_simd(simd);
                memset(out, 0xAA, n);
                int rc = dfm_resample_rgb8(src.data, 97, 61, out, dw, dh, rw, rh, l, t, filter_by_name(name), threads);
                CHECK_EQ(rc, 0);
                int maxd = 0;
                size_t ndiff = 0;
                for (size_t i = 0; i < n; i++) {
                    int d = abs((int)out[i] - (int)ref.data[off + i]);
                    if (d > maxd) maxd = d;
                    ndiff += d != 0;
                }
                if (maxd > 1 || ndiff * 1000 > n)
                    fprintf(stderr, "  %s %dx%d crop %dx%d+%d+%d simd=%d threads=%d: max diff %d, %zu bytes differ\n",
                            name, rw, rh, dw, dh, l, t, simd, threads, maxd, ndiff);
                CHECK(maxd <= 1);
                CHECK(ndiff * 1000 <= n);
            }
        free(out);
        ncases++;
        line = strchr(line, '\n');
        if (line) line++;
    }
    dfm_resample_set_simd(1);
    CHECK_EQ(ncases, 28);
    dfm_buf_free(&src);
    dfm_buf_free(&ref);
    dfm_buf_free(&idx);
}

TEST(resample_identity_is_exact)
{
    const int w = 37, h = 23;
    uint8_t *src = malloc(w * h * 3), *out = malloc(w * h * 3);
    for (int i = 0; i < w * h * 3; i++) src[i] = (uint8_t)rnd();
    for (int f = DFM_FILTER_LANCZOS; f <= DFM_FILTER_AREA; f++) {
        memset(out, 0, w * h * 3);
        CHECK_EQ(dfm_resample_rgb8(src, w, h, out, w, h, w, h, 0, 0, (dfm_filter)f, 2), 0);
        CHECK(!memcmp(src, out, w * h * 3));
    }
    /* a crop of an unresized image is a plain copy of the window */
    uint8_t win[10 * 5 * 3];
    CHECK_EQ(dfm_resample_rgb8(src, w, h, win, 10, 5, w, h, 3, 7, DFM_FILTER_LANCZOS, 1), 0);
    for (int y = 0; y < 5; y++) CHECK(!memcmp(win + y * 30, src + ((7 + y) * w + 3) * 3, 30));
    free(src);
    free(out);
}

/* The AVX2 path and the scalar path compute the same integers: compare them over many shapes
 * (odd widths, row counts not a multiple of 8, up/down scales, windows, thread counts). */
TEST(resample_simd_equals_scalar)
{
    if (strcmp(dfm_resample_impl(), "avx2")) {
        fprintf(stderr, "  (no AVX2 on this CPU: scalar only, nothing to compare)\n");
        return;
    }
    for (int iter = 0; iter < 300; iter++) {
        int sw = 1 + rnd() % 90, sh = 1 + rnd() % 70;
        int rw = 1 + rnd() % 120, rh = 1 + rnd() % 100;
        int dw = 1 + rnd() % rw, dh = 1 + rnd() % rh;
        int l = rnd() % (rw - dw + 1), t = rnd() % (rh - dh + 1);
        dfm_filter f = (dfm_filter)(rnd() % 4);
        int threads = 1 + rnd() % 3;
        uint8_t *src = malloc((size_t)sw * sh * 3), *a = malloc((size_t)dw * dh * 3), *b = malloc((size_t)dw * dh * 3);
        for (int i = 0; i < sw * sh * 3; i++) src[i] = (uint8_t)rnd();
        dfm_resample_set_simd(0);
        CHECK_EQ(dfm_resample_rgb8(src, sw, sh, a, dw, dh, rw, rh, l, t, f, 1), 0);
        dfm_resample_set_simd(1);
        CHECK_EQ(dfm_resample_rgb8(src, sw, sh, b, dw, dh, rw, rh, l, t, f, threads), 0);
        if (memcmp(a, b, (size_t)dw * dh * 3)) {
            fprintf(stderr, "  mismatch: %dx%d -> %dx%d crop %dx%d+%d+%d filter %d threads %d\n", sw, sh, rw, rh,
                    dw, dh, l, t, (int)f, threads);
            CHECK(0);
        }
        free(src);
        free(a);
        free(b);
    }
}

/* Bands computed by different threads meet without seams: a cover crop of a larger image. */
TEST(resample_threads_match)
{
    const int sw = 640, sh = 360, rw = 231, rh = 130, dw = 224, dh = 128;
    uint8_t *src = malloc(sw * sh * 3), *a = malloc(dw * dh * 3), *b = malloc(dw * dh * 3);
    for (int i = 0; i < sw * sh * 3; i++) src[i] = (uint8_t)(rnd() & 0x3f) + (uint8_t)((i / 3 % sw) / 4);
    for (int f = DFM_FILTER_LANCZOS; f <= DFM_FILTER_AREA; f++) {
        CHECK_EQ(dfm_resample_rgb8(src, sw, sh, a, dw, dh, rw, rh, 3, 1, (dfm_filter)f, 1), 0);
        for (int threads = 2; threads <= 8; threads *= 2) {
            CHECK_EQ(dfm_resample_rgb8(src, sw, sh, b, dw, dh, rw, rh, 3, 1, (dfm_filter)f, threads), 0);
            CHECK(!memcmp(a, b, dw * dh * 3));
        }
    }
    free(src);
    free(a);
    free(b);
}

/* A flat image stays flat under every filter, scale and window (weights sum to 1). */
TEST(resample_flat_stays_flat)
{
    const int sw = 50, sh = 31;
    uint8_t *src = malloc(sw * sh * 3), *out = malloc(200 * 150 * 3);
    for (int i = 0; i < sw * sh; i++) src[i * 3] = 17, src[i * 3 + 1] = 128, src[i * 3 + 2] = 250;
    int sizes[][2] = {{200, 150}, {13, 7}, {1, 1}, {50, 10}, {7, 31}};
    for (int f = DFM_FILTER_LANCZOS; f <= DFM_FILTER_AREA; f++)
        for (int s = 0; s < 5; s++) {
            int rw = sizes[s][0], rh = sizes[s][1];
            CHECK_EQ(dfm_resample_rgb8(src, sw, sh, out, rw, rh, rw, rh, 0, 0, (dfm_filter)f, 2), 0);
            int bad = 0;
            for (int i = 0; i < rw * rh; i++)
                bad += abs(out[i * 3] - 17) > 0 || abs(out[i * 3 + 1] - 128) > 0 || abs(out[i * 3 + 2] - 250) > 0;
            CHECK_EQ(bad, 0);
        }
    free(src);
    free(out);
}

TEST(resample_bad_args)
{
    uint8_t src[4 * 4 * 3] = {0}, dst[4 * 4 * 3];
    CHECK_EQ(dfm_resample_rgb8(src, 4, 4, dst, 4, 4, 3, 3, 0, 0, DFM_FILTER_LANCZOS, 1), DFM_E_ARG);  /* window > resized */
    CHECK_EQ(dfm_resample_rgb8(src, 4, 4, dst, 2, 2, 3, 3, 2, 0, DFM_FILTER_LANCZOS, 1), DFM_E_ARG);  /* off the right */
    CHECK_EQ(dfm_resample_rgb8(src, 4, 4, dst, 2, 2, 3, 3, -1, 0, DFM_FILTER_LANCZOS, 1), DFM_E_ARG);
    CHECK_EQ(dfm_resample_rgb8(src, 0, 4, dst, 2, 2, 3, 3, 0, 0, DFM_FILTER_LANCZOS, 1), DFM_E_ARG);
    CHECK_EQ(dfm_resample_rgb8(src, 4, 4, dst, 2, 2, 3, 3, 0, 0, (dfm_filter)9, 1), DFM_E_ARG);
    CHECK_EQ(dfm_resample_rgb8(NULL, 4, 4, dst, 2, 2, 3, 3, 0, 0, DFM_FILTER_AREA, 1), DFM_E_ARG);
    CHECK(strstr(dfm_errmsg(), "resample") != NULL);
}
