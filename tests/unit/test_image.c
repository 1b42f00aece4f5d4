/* test_image.c — image decode: every format, EXIF orientation (JPEG, PNG, WebP), alpha, 16-bit,
 * grey, limits, and damaged input (empty, truncated at every length, garbage, bit flips) never
 * crashing.
 * Fixtures: tests/fixtures/media/ from scripts/make-media-fixtures.sh; PNGs and WebPs with EXIF
 * are made here (media/encode.h's lossless encoders, then an eXIf / EXIF chunk spliced in). */
#include "test.h"
#include "base/buf.h"
#include "base/error.h"
#include "media/encode.h"
#include "media/image.h"

#include <stdint.h>
#include <stdlib.h>
#include <turbojpeg.h>

/* A fixture under tests/fixtures/media. */
static int load(const char *name, dfm_buf *b) { return dfm_test_load_fixture("media", name, b); }

/* Decode a fixture; returns the status, *img filled on success. */
static int decode_fixture(const char *name, uint64_t max_pixels, dfm_image *img, dfm_image_meta *meta)
{
    dfm_buf b;
    if (load(name, &b) < 0) return DFM_E_IO;
    int rc = dfm_image_decode(b.data, b.len, max_pixels, img, meta);
    dfm_buf_free(&b);
    return rc;
}

static const uint8_t *px(const dfm_image *im, int x, int y) { return im->rgb + ((size_t)y * im->w + x) * 3; }

static int near_rgb(const uint8_t *p, int r, int g, int b, int tol)
{
    int ok = abs(p[0] - r) <= tol && abs(p[1] - g) <= tol && abs(p[2] - b) <= tol;
    if (!ok) fprintf(stderr, "  got (%d,%d,%d), want (%d,%d,%d) +-%d\n", p[0], p[1], p[2], r, g, b, tol);
    return ok;
}

TEST(image_sniff)
{
    const char *names[] = {"orient6.jpg", "alpha.png", "halves_lossless.webp", "halves.bmp"};
    dfm_img_type want[] = {DFM_IMG_JPEG, DFM_IMG_PNG, DFM_IMG_WEBP, DFM_IMG_BMP};
    for (int i = 0; i < 4; i++) {
        dfm_buf b;
        if (load(names[i], &b) < 0) {
            CHECK(0);
            continue;
        }
        CHECK_EQ(dfm_image_sniff(b.data, b.len), want[i]);
        CHECK_EQ(dfm_image_sniff(b.data, 2), DFM_IMG_UNKNOWN);
        dfm_buf_free(&b);
    }
    CHECK_EQ(dfm_image_sniff((const uint8_t *)"GIF89a..........", 16), DFM_IMG_UNKNOWN);
    CHECK_EQ(dfm_image_sniff(NULL, 0), DFM_IMG_UNKNOWN);
    CHECK_STR(dfm_image_type_name(DFM_IMG_WEBP), "webp");
    CHECK_STR(dfm_image_type_name(DFM_IMG_UNKNOWN), "unknown");
}

/* Stored 64x32 with quadrants TL red, TR green, BL blue, BR white, EXIF orientation 6 (rotate
 * 90 degrees clockwise): shown 32x64 with TL blue, TR red, BL white, BR green. */
TEST(image_jpeg_exif_orientation_6)
{
    dfm_image im;
    dfm_image_meta m;
    CHECK_EQ(decode_fixture("orient6.jpg", 0, &im, &m), 0);
    if (!im.rgb) return;
    CHECK_EQ(im.w, 32);
    CHECK_EQ(im.h, 64);
    CHECK_EQ(m.type, DFM_IMG_JPEG);
    CHECK_EQ(m.orientation, 6);
    CHECK_EQ(m.src_w, 64);
    CHECK_EQ(m.src_h, 32);
    CHECK_EQ(m.had_alpha, 0);
    CHECK(near_rgb(px(&im, 8, 16), 0, 0, 255, 12));     /* TL blue */
    CHECK(near_rgb(px(&im, 24, 16), 255, 0, 0, 12));    /* TR red */
    CHECK(near_rgb(px(&im, 8, 48), 255, 255, 255, 12)); /* BL white */
    CHECK(near_rgb(px(&im, 24, 48), 0, 255, 0, 12));    /* BR green */
    /* Parity with Pillow (Image.open + exif_transpose + convert RGB): the same libjpeg-turbo
     * decode (islow DCT, fancy upsampling). Bound: max diff <= 1; we get 0. */
    dfm_buf ref;
    if (load("orient6_pil.rgb", &ref) == 0) {
        CHECK_EQ(ref.len, 32 * 64 * 3);
        int maxd = 0;
        for (size_t i = 0; i < ref.len && i < 32 * 64 * 3; i++) {
            int d = abs(im.rgb[i] - ref.data[i]);
            if (d > maxd) maxd = d;
        }
        CHECK(maxd <= 1);
        dfm_buf_free(&ref);
    }
    dfm_image_free(&im);
    CHECK(im.rgb == NULL);
}

/* A TIFF structure (either byte order) with one IFD0 of `nent` entries (one written: tag, type,
 * count 1, value) at ifd_off: what EXIF blocks hold. Returns its length (<= 64). */
static size_t make_tiff(uint8_t *t, int le, uint16_t tag, uint16_t type, uint32_t value, uint16_t nent,
                        uint32_t ifd_off)
{
    size_t n = 0;
#define P16(v) (le ? (t[n++] = (v) & 0xff, t[n++] = (v) >> 8) : (t[n++] = (v) >> 8, t[n++] = (v) & 0xff))
#define P32(v) (le ? (P16((v) & 0xffff), P16((v) >> 16)) : (P16((v) >> 16), P16((v) & 0xffff)))
    t[n++] = le ? 'I' : 'M';
    t[n++] = le ? 'I' : 'M';
    P16(42);
    P32(ifd_off);
    P16(nent);
    P16(tag);
    P16(type);
    P32(1u);
    if (type == 3) {
        P16(value);
        P16(0);
    } else {
        P32(value);
    }
    P32(0u);
#undef P16
#undef P32
    return n;
}

/* Minimal JPEG prefix with one APP1 Exif segment holding an IFD0 with `entries`. */
static size_t make_exif_jpeg(uint8_t *b, int le, uint16_t tag, uint16_t type, uint32_t value, uint16_t nent,
                             uint32_t ifd_off)
{
    uint8_t t[64];
    size_t n = make_tiff(t, le, tag, type, value, nent, ifd_off);
    size_t m = 0;
    b[m++] = 0xFF, b[m++] = 0xD8;
    b[m++] = 0xFF, b[m++] = 0xE0, b[m++] = 0, b[m++] = 4, b[m++] = 'J', b[m++] = 'F'; /* APP0 */
    size_t seg = 2 + 6 + n;
    b[m++] = 0xFF, b[m++] = 0xE1, b[m++] = (uint8_t)(seg >> 8), b[m++] = (uint8_t)seg;
    memcpy(b + m, "Exif\0\0", 6);
    m += 6;
    memcpy(b + m, t, n);
    m += n;
    b[m++] = 0xFF, b[m++] = 0xDA; /* start of scan */
    return m;
}

TEST(image_exif_parser)
{
    uint8_t b[128];
    for (int le = 0; le <= 1; le++)
        for (int o = 1; o <= 8; o++) {
            size_t n = make_exif_jpeg(b, le, 0x0112, 3, (uint32_t)o, 1, 8);
            CHECK_EQ(dfm_jpeg_exif_orientation(b, n), o);
            /* every truncation is read safely and gives up (1) or still finds it */
            for (size_t k = 0; k < n; k++) {
                int r = dfm_jpeg_exif_orientation(b, k);
                CHECK(r == 1 || r == o);
            }
        }
    size_t n = make_exif_jpeg(b, 0, 0x0112, 4, 6, 1, 8); /* LONG instead of SHORT */
    CHECK_EQ(dfm_jpeg_exif_orientation(b, n), 6);
    n = make_exif_jpeg(b, 1, 0x0112, 3, 9, 1, 8); /* out of range */
    CHECK_EQ(dfm_jpeg_exif_orientation(b, n), 1);
    n = make_exif_jpeg(b, 1, 0x0110, 3, 6, 1, 8); /* another tag */
    CHECK_EQ(dfm_jpeg_exif_orientation(b, n), 1);
    n = make_exif_jpeg(b, 1, 0x0112, 3, 6, 60000, 8); /* entry count past the segment */
    CHECK_EQ(dfm_jpeg_exif_orientation(b, n), 6);
    n = make_exif_jpeg(b, 1, 0x0112, 3, 6, 1, 0xFFFFFFF0u); /* IFD offset past the end */
    CHECK_EQ(dfm_jpeg_exif_orientation(b, n), 1);
    n = make_exif_jpeg(b, 0, 0x0112, 3, 6, 1, 8);
    b[12] = 0x00; /* "Exif\0\0" broken */
    CHECK_EQ(dfm_jpeg_exif_orientation(b, n), 1);
    n = make_exif_jpeg(b, 1, 0x0112, 3, 6, 1, 8);
    b[9] = 0xFF; /* APP1 length larger than the data */
    CHECK_EQ(dfm_jpeg_exif_orientation(b, n), 1);
    CHECK_EQ(dfm_jpeg_exif_orientation((const uint8_t *)"\xFF\xD8", 2), 1);
    CHECK_EQ(dfm_jpeg_exif_orientation(NULL, 0), 1);
}

/* dfm_rgb_orient against Pillow's ImageOps.exif_transpose for all 8 orientations. */
TEST(image_rgb_orient_matches_pillow)
{
    dfm_buf b;
    if (load("orient_tiny.bin", &b) < 0) {
        CHECK(0);
        return;
    }
    const uint8_t *src = b.data, *p = b.data + 18;
    for (int o = 1; o <= 8; o++) {
        CHECK(p + 8 + 18 <= b.data + b.len);
        if (p + 8 + 18 > b.data + b.len) break;
        int32_t ww, hh;
        memcpy(&ww, p, 4);
        memcpy(&hh, p + 4, 4);
        uint8_t *dst = NULL;
        int dw = 0, dh = 0;
        CHECK_EQ(dfm_rgb_orient(src, 3, 2, o, &dst, &dw, &dh), 0);
        CHECK_EQ(dw, ww);
        CHECK_EQ(dh, hh);
        if (dst && memcmp(dst, p + 8, 18)) {
            fprintf(stderr, "  orientation %d differs from Pillow\n", o);
            CHECK(0);
        }
        free(dst);
        p += 8 + 18;
    }
    uint8_t *dst = NULL;
    CHECK_EQ(dfm_rgb_orient(src, 3, 2, 0, &dst, NULL, NULL), DFM_E_ARG);
    CHECK_EQ(dfm_rgb_orient(src, 3, 2, 9, &dst, NULL, NULL), DFM_E_ARG);
    dfm_buf_free(&b);
}

/* Rotations on a size that is not a tile multiple: 6 then 8 gives back the input, 3 twice too. */
TEST(image_rgb_orient_roundtrip)
{
    const int w = 45, h = 70;
    uint8_t *src = malloc(w * h * 3);
    for (int i = 0; i < w * h * 3; i++) src[i] = (uint8_t)(i * 7 + i / 13);
    int pairs[][2] = {{6, 8}, {8, 6}, {3, 3}, {2, 2}, {4, 4}, {5, 5}, {7, 7}};
    for (int i = 0; i < 7; i++) {
        uint8_t *a = NULL, *c = NULL;
        int aw, ah, cw, ch;
        CHECK_EQ(dfm_rgb_orient(src, w, h, pairs[i][0], &a, &aw, &ah), 0);
        CHECK_EQ(dfm_rgb_orient(a, aw, ah, pairs[i][1], &c, &cw, &ch), 0);
        CHECK_EQ(cw, w);
        CHECK_EQ(ch, h);
        CHECK(c && !memcmp(c, src, w * h * 3));
        free(a);
        free(c);
    }
    free(src);
}

TEST(image_png_alpha_on_white)
{
    dfm_image im;
    dfm_image_meta m;
    CHECK_EQ(decode_fixture("alpha.png", 0, &im, &m), 0);
    if (!im.rgb) return;
    CHECK_EQ(im.w, 16);
    CHECK_EQ(im.h, 8);
    CHECK_EQ(m.type, DFM_IMG_PNG);
    CHECK_EQ(m.had_alpha, 1);
    CHECK_EQ(m.orientation, 1);
    /* (255,0,0) at alpha 128: (c*128 + 255*127 + 127) / 255 -> (255, 127, 127) */
    CHECK(near_rgb(px(&im, 2, 2), 255, 127, 127, 0));
    CHECK(near_rgb(px(&im, 12, 2), 255, 255, 255, 0)); /* transparent -> white */
    CHECK(near_rgb(px(&im, 5, 7), 0, 0, 255, 0));      /* opaque row untouched */
    dfm_image_free(&im);

    CHECK_EQ(decode_fixture("pal_trns.png", 0, &im, &m), 0); /* palette + tRNS */
    if (!im.rgb) return;
    CHECK_EQ(m.had_alpha, 1);
    CHECK(near_rgb(px(&im, 0, 0), 255, 255, 255, 0));
    CHECK(near_rgb(px(&im, 1, 1), 255, 0, 255, 0));
    dfm_image_free(&im);
}

TEST(image_png_grey_and_16bit)
{
    dfm_image im;
    dfm_image_meta m;
    CHECK_EQ(decode_fixture("grey8.png", 0, &im, &m), 0);
    if (im.rgb) {
        CHECK_EQ(im.w, 8);
        CHECK_EQ(im.h, 4);
        CHECK_EQ(m.bit_depth, 8);
        CHECK_EQ(m.had_alpha, 0);
        CHECK(near_rgb(px(&im, 3, 2), 100, 100, 100, 0));
        dfm_image_free(&im);
    }
    CHECK_EQ(decode_fixture("grey16.png", 0, &im, &m), 0);
    if (im.rgb) {
        CHECK_EQ(m.bit_depth, 16);
        CHECK(near_rgb(px(&im, 7, 3), 128, 128, 128, 1)); /* 0x8000 */
        dfm_image_free(&im);
    }
    CHECK_EQ(decode_fixture("rgb16.png", 0, &im, &m), 0);
    if (im.rgb) {
        CHECK_EQ(m.bit_depth, 16);
        CHECK(near_rgb(px(&im, 0, 0), 0x12, 0x80, 0xff, 1)); /* (0x1234, 0x8080, 0xffff) */
        dfm_image_free(&im);
    }
}

TEST(image_bmp_webp_grey_jpeg)
{
    const char *names[] = {"halves.bmp", "halves_lossless.webp", "halves_lossy.webp"};
    int tol[] = {0, 0, 24};
    for (int i = 0; i < 3; i++) {
        dfm_image im;
        dfm_image_meta m;
        CHECK_EQ(decode_fixture(names[i], 0, &im, &m), 0);
        if (!im.rgb) continue;
        CHECK_EQ(im.w, 16);
        CHECK_EQ(im.h, 8);
        CHECK_EQ(m.had_alpha, 0);
        CHECK(near_rgb(px(&im, 2, 3), 255, 0, 0, tol[i]));
        CHECK(near_rgb(px(&im, 13, 4), 0, 0, 255, tol[i]));
        CHECK(near_rgb(px(&im, 0, 7), 255, 0, 0, tol[i]));
        CHECK(near_rgb(px(&im, 15, 0), 0, 0, 255, tol[i]));
        dfm_image_free(&im);
    }
    dfm_image im;
    CHECK_EQ(decode_fixture("grey.jpg", 0, &im, NULL), 0);
    if (im.rgb) {
        CHECK_EQ(im.w, 16);
        CHECK(near_rgb(px(&im, 5, 5), 77, 77, 77, 1));
        dfm_image_free(&im);
    }
}

/* Lossy WebP of odd size (33x17) with colour stripes vs Pillow (libwebp's fancy upsampling).
 * Bound: mean |diff| <= 8 (we get ~6.2: bicubic vs libwebp's chroma upsampler); converting the
 * odd frame directly, without padding to whole chroma samples, gives ~15. */
TEST(image_webp_odd_size_chroma)
{
    dfm_image im;
    CHECK_EQ(decode_fixture("stripes_odd.webp", 0, &im, NULL), 0);
    if (!im.rgb) return;
    CHECK_EQ(im.w, 33);
    CHECK_EQ(im.h, 17);
    dfm_buf ref;
    if (load("stripes_odd_pil.rgb", &ref) == 0) {
        CHECK_EQ(ref.len, 33 * 17 * 3);
        long sum = 0;
        for (size_t i = 0; i < ref.len && i < 33 * 17 * 3; i++) sum += abs(im.rgb[i] - ref.data[i]);
        double mean = (double)sum / (33 * 17 * 3);
        if (mean > 8) fprintf(stderr, "  mean diff vs Pillow %.2f\n", mean);
        CHECK(mean <= 8);
        dfm_buf_free(&ref);
    }
    dfm_image_free(&im);
}

/* CMYK JPEG: TurboJPEG cannot give RGB, the libavcodec fallback does; compared with Pillow. */
TEST(image_jpeg_cmyk_fallback)
{
    dfm_image im;
    dfm_image_meta m;
    CHECK_EQ(decode_fixture("cmyk.jpg", 0, &im, &m), 0);
    if (!im.rgb) return;
    CHECK_EQ(im.w, 16);
    CHECK_EQ(im.h, 8);
    CHECK_EQ(m.type, DFM_IMG_JPEG);
    dfm_buf ref;
    if (load("cmyk_pil.rgb", &ref) == 0) {
        CHECK_EQ(ref.len, 16 * 8 * 3);
        int maxd = 0;
        for (size_t i = 0; i < ref.len && i < 16 * 8 * 3; i++) {
            int d = abs(im.rgb[i] - ref.data[i]);
            if (d > maxd) maxd = d;
        }
        if (maxd > 3) fprintf(stderr, "  CMYK vs Pillow: max diff %d\n", maxd);
        CHECK(maxd <= 3);
        dfm_buf_free(&ref);
    }
    dfm_image_free(&im);
}

TEST(image_animated_webp_unsupported)
{
    dfm_image im;
    CHECK_EQ(decode_fixture("anim.webp", 0, &im, NULL), DFM_E_UNSUPPORTED);
    CHECK(strstr(dfm_errmsg(), "animated") != NULL);
    CHECK(im.rgb == NULL);
}

TEST(image_max_pixels)
{
    dfm_image im;
    CHECK_EQ(decode_fixture("orient6.jpg", 64 * 32 - 1, &im, NULL), DFM_E_LIMIT);
    CHECK(strstr(dfm_errmsg(), "limit") != NULL);
    CHECK_EQ(decode_fixture("orient6.jpg", 64 * 32, &im, NULL), 0);
    dfm_image_free(&im);
    const char *names[] = {"alpha.png", "halves.bmp", "halves_lossless.webp", "halves_lossy.webp", "cmyk.jpg"};
    for (int i = 0; i < 5; i++) {
        CHECK_EQ(decode_fixture(names[i], 100, &im, NULL), DFM_E_LIMIT);
        CHECK_EQ(decode_fixture(names[i], 128, &im, NULL), 0);
        dfm_image_free(&im);
    }
}

TEST(image_empty_and_garbage)
{
    dfm_image im;
    CHECK_EQ(dfm_image_decode((const uint8_t *)"", 0, 0, &im, NULL), DFM_E_FORMAT);
    CHECK(strstr(dfm_errmsg(), "empty") != NULL);
    CHECK_EQ(dfm_image_decode(NULL, 10, 0, &im, NULL), DFM_E_FORMAT);
    CHECK_EQ(dfm_image_decode((const uint8_t *)"hello world, not an image", 25, 0, &im, NULL), DFM_E_FORMAT);
    CHECK(strstr(dfm_errmsg(), "signature") != NULL);
    /* random bytes behind each real signature */
    static const char *magic[] = {"\xFF\xD8\xFF", "\x89PNG\r\n\x1a\n", "RIFF\x40\0\0\0WEBPVP8 ", "RIFF\x40\0\0\0WEBPVP8L",
                                  "RIFF\x40\0\0\0WEBPVP8X", "BM\x40\0\0\0\0\0\0\0\x36\0\0\0\x28\0\0\0"};
    static const size_t mlen[] = {3, 8, 16, 16, 16, 18};
    uint32_t s = 12345;
    uint8_t buf[300];
    for (int k = 0; k < 6; k++)
        for (int it = 0; it < 100; it++) {
            size_t n = mlen[k] + it * 2;
            memcpy(buf, magic[k], mlen[k]);
            for (size_t i = mlen[k]; i < n; i++) buf[i] = (uint8_t)((s = s * 1103515245 + 12345) >> 16);
            int rc = dfm_image_decode(buf, n, 1 << 20, &im, NULL);
            CHECK(rc == DFM_E_FORMAT || rc == DFM_E_LIMIT || rc == DFM_E_UNSUPPORTED || rc == 0);
            if (rc == 0) {
                CHECK(im.w > 0 && im.h > 0 && im.rgb);
                dfm_image_free(&im);
            } else {
                CHECK(im.rgb == NULL);
                CHECK(dfm_errmsg()[0] != 0);
            }
        }
}

/* Every fixture cut at every length, and with random bytes flipped: an error or a picture,
 * never a crash (run under ASan + UBSan with make SAN=1). Half a file is always an error. */
TEST(image_truncated_and_flipped)
{
    const char *names[] = {"orient6.jpg", "grey.jpg", "cmyk.jpg", "alpha.png", "grey16.png", "rgb16.png",
                           "pal_trns.png", "halves.bmp", "halves_lossless.webp", "halves_lossy.webp",
                           "stripes_odd.webp"};
    uint32_t s = 777;
    for (int k = 0; k < 11; k++) {
        dfm_buf b;
        if (load(names[k], &b) < 0) {
            CHECK(0);
            continue;
        }
        for (size_t n = 0; n < b.len; n++) {
            uint8_t *cut = malloc(n ? n : 1); /* exact-size copy so ASan sees any overread */
            memcpy(cut, b.data, n);
            dfm_image im;
            int rc = dfm_image_decode(cut, n, 0, &im, NULL);
            if (n == b.len / 2 && rc == 0) fprintf(stderr, "  %s cut to %zu bytes decoded\n", names[k], n);
            if (n == b.len / 2) CHECK(rc == DFM_E_FORMAT);
            if (rc == 0) dfm_image_free(&im);
            free(cut);
        }
        for (int it = 0; it < 200; it++) {
            uint8_t *c = malloc(b.len);
            memcpy(c, b.data, b.len);
            for (int f = 0; f < 1 + it % 4; f++) {
                s = s * 1103515245 + 12345;
                c[(s >> 8) % b.len] ^= (uint8_t)(1 + (s >> 24) % 255);
            }
            dfm_image im;
            int rc = dfm_image_decode(c, b.len, 1 << 22, &im, NULL);
            CHECK(rc <= 0);
            if (rc == 0) {
                CHECK(im.w > 0 && im.h > 0 && (uint64_t)im.w * im.h <= (1 << 22));
                dfm_image_free(&im);
            }
            free(c);
        }
        dfm_buf_free(&b);
    }
}

/* A JPEG of w x h with texture in every block (so the entropy data fills the file), baseline or
 * progressive, from TurboJPEG: malloc'd, length in *len. */
static uint8_t *textured_jpeg(int w, int h, int progressive, size_t *len)
{
    uint8_t *rgb = malloc((size_t)w * h * 3);
    uint32_t s = 99;
    for (size_t i = 0; i < (size_t)w * h * 3; i++) rgb[i] = (uint8_t)((i / 3 % w) + ((s = s * 1103515245 + 12345) >> 27));
    tjhandle tj = tjInitCompress();
    unsigned char *jpeg = NULL;
    unsigned long n = 0;
    int r = tjCompress2(tj, rgb, w, 0, h, TJPF_RGB, &jpeg, &n, TJSAMP_420, 90,
                        progressive ? TJFLAG_PROGRESSIVE : 0);
    tjDestroy(tj);
    free(rgb);
    if (r < 0) return NULL;
    uint8_t *out = malloc(n);
    memcpy(out, jpeg, n);
    tjFree(jpeg);
    *len = n;
    return out;
}

/* Corrupt-but-decodable JPEGs (libjpeg fills what is missing with grey and only warns): cut to a
 * third with an end marker appended ("Corrupt JPEG data: premature end of data segment"), cut
 * without one ("Premature end of JPEG file"), a stray marker inside the entropy data. Each is an error
 * naming libjpeg's warning, whatever its case; DFM_IMAGE_ACCEPT_DAMAGED keeps the picture and the
 * warning. A sound file decodes with no warning. */
TEST(image_jpeg_damage)
{
    for (int progressive = 0; progressive <= 1; progressive++) {
        size_t n = 0;
        uint8_t *j = textured_jpeg(96, 64, progressive, &n);
        CHECK(j != NULL);
        if (!j) continue;
        dfm_image im;
        dfm_image_meta meta;
        CHECK_EQ(dfm_image_decode_ex(j, n, 0, DFM_IMAGE_ACCEPT_DAMAGED, &im, &meta), 0);
        CHECK_STR(meta.damage, "");
        dfm_image_free(&im);
        uint8_t *c = malloc(n);
        for (int kind = 0; kind < 3; kind++) {
            size_t m = n;
            memcpy(c, j, n);
            if (kind == 0) m = n / 3, c[m++] = 0xFF, c[m++] = 0xD9; /* a third, then EOI */
            if (kind == 1) m = n * 2 / 3;                           /* cut, no EOI */
            if (kind == 2) c[n / 2] = 0xFF, c[n / 2 + 1] = 0xD5;    /* a stray RST marker */
            int rc = dfm_image_decode(c, m, 0, &im, &meta);
            if (rc == 0) fprintf(stderr, "  progressive %d, damage %d: accepted\n", progressive, kind);
            CHECK_EQ(rc, DFM_E_FORMAT);
            CHECK(strstr(dfm_errmsg(), "libjpeg: ") != NULL);
            if (kind == 0) CHECK(strstr(dfm_errmsg(), "premature end of data segment") != NULL);
            if (kind == 1) CHECK(strstr(dfm_errmsg(), "Premature end of JPEG file") != NULL);
            rc = dfm_image_decode_ex(c, m, 0, DFM_IMAGE_ACCEPT_DAMAGED, &im, &meta);
            CHECK_EQ(rc, 0);
            CHECK(meta.damage[0] != 0);
            if (rc == 0) CHECK(im.w == 96 && im.h == 64);
            dfm_image_free(&im);
        }
        free(c);
        free(j);
    }
}

/* ---- EXIF orientation of PNG (eXIf) and WebP (EXIF chunk) ------------------------------------ */

/* Quadrants TL red, TR green, BL blue, BR white; w x h. */
static uint8_t *quad_rgb(int w, int h)
{
    uint8_t *q = malloc((size_t)w * h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            const uint8_t c[4][3] = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {255, 255, 255}};
            memcpy(q + ((size_t)y * w + x) * 3, c[(y >= h / 2) * 2 + (x >= w / 2)], 3);
        }
    return q;
}

/* Where the stored quadrants show for each EXIF orientation (Pillow's exif_transpose): the
 * displayed TL, TR, BL, BR as letters of the stored red, green, blue, white. */
static const char *const g_quad_shown[9] = {"", "RGBW", "GRWB", "WBGR", "BWRG", "RBGW", "BRWG", "WGBR", "GWRB"};

/* The displayed picture's quadrants (sampled at the quadrant centres) are `want`. */
static int quads_are(const uint8_t *rgb, int w, int h, const char *want)
{
    char got[5] = "????";
    for (int i = 0; i < 4; i++) {
        const uint8_t *p = rgb + ((size_t)(h / 4 + (i / 2) * h / 2) * w + w / 4 + (i % 2) * w / 2) * 3;
        got[i] = p[0] == 255 && p[1] == 0 && p[2] == 0       ? 'R'
                 : p[0] == 0 && p[1] == 255 && p[2] == 0     ? 'G'
                 : p[0] == 0 && p[1] == 0 && p[2] == 255     ? 'B'
                 : p[0] == 255 && p[1] == 255 && p[2] == 255 ? 'W'
                                                             : '?';
    }
    if (strcmp(got, want)) fprintf(stderr, "  quadrants %s, want %s\n", got, want);
    return !strcmp(got, want);
}

static uint32_t crc32_png(const uint8_t *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    }
    return c ^ 0xFFFFFFFFu;
}

static void put_be32(uint8_t *p, uint32_t v) { p[0] = v >> 24, p[1] = v >> 16, p[2] = v >> 8, p[3] = (uint8_t)v; }
static void put_le32(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v, p[1] = v >> 8, p[2] = v >> 16, p[3] = v >> 24; }

/* The PNG png[0..len) with an eXIf chunk holding blk[0..bn) (CRC right) inserted after IHDR
 * (late = 0) or just before IEND (late = 1, after the image data). malloc'd, *out_len. */
static uint8_t *png_with_exif(const uint8_t *png, size_t len, const uint8_t *blk, size_t bn, int late, size_t *out_len)
{
    const size_t at = late ? len - 12 : 8 + 25;
    uint8_t *o = malloc(len + 12 + bn);
    memcpy(o, png, at);
    put_be32(o + at, (uint32_t)bn);
    memcpy(o + at + 4, "eXIf", 4);
    memcpy(o + at + 8, blk, bn);
    put_be32(o + at + 8 + bn, crc32_png(o + at + 4, 4 + bn));
    memcpy(o + at + 12 + bn, png + at, len - at);
    *out_len = len + 12 + bn;
    return o;
}

/* A simple-format WebP (RIFF, WEBP, one VP8L/VP8 chunk) rewrapped in the extended format: VP8X
 * (EXIF flag as told), the image chunk, and an EXIF chunk holding blk[0..bn) (padded to even),
 * after the image (first = 0) or before it (first = 1). malloc'd, *out_len. */
static uint8_t *webp_with_exif(const uint8_t *webp, size_t len, int w, int h, const uint8_t *blk, size_t bn,
                               int flag, int first, size_t *out_len)
{
    const size_t img = len - 12, ex = 8 + bn + (bn & 1), n = 12 + 18 + img + ex;
    uint8_t *o = calloc(1, n), *p = o + 30;
    memcpy(o, "RIFF", 4);
    put_le32(o + 4, (uint32_t)(n - 8));
    memcpy(o + 8, "WEBPVP8X", 8);
    put_le32(o + 16, 10);
    o[20] = flag ? 0x08 : 0;
    put_le32(o + 24, (uint32_t)(w - 1)); /* 24-bit canvas width - 1, then height - 1 */
    put_le32(o + 27, (uint32_t)(h - 1));
    uint8_t *e = first ? p : p + img, *im = first ? p + ex : p;
    memcpy(im, webp + 12, img);
    memcpy(e, "EXIF", 4);
    put_le32(e + 4, (uint32_t)bn);
    memcpy(e + 8, blk, bn);
    *out_len = n;
    return o;
}

/* Decode f[0..n) and check: orientation o, the displayed size (sides swapped for 5..8), the
 * quadrants where Pillow shows them, every pixel the source turned by dfm_rgb_orient (lossless
 * files); the header-only size (dfm_image_peek_size) and the size-hint decode agree. */
static void check_oriented(const uint8_t *f, size_t n, const uint8_t *src, int w, int h, int o, const char *what)
{
    dfm_image im;
    dfm_image_meta m;
    const int dw = o >= 5 ? h : w, dh = o >= 5 ? w : h;
    int rc = dfm_image_decode(f, n, 0, &im, &m);
    CHECK_EQ(rc, 0);
    if (rc) {
        fprintf(stderr, "  %s, orientation %d: %s\n", what, o, dfm_errmsg());
        return;
    }
    int bad = 0;
    CHECK_EQ(dfm_image_exif_orientation(f, n), o);
    CHECK_EQ(m.orientation, o);
    CHECK_EQ(im.w, dw);
    CHECK_EQ(im.h, dh);
    CHECK_EQ(m.src_w, w);
    CHECK_EQ(m.src_h, h);
    CHECK_EQ(m.full_w, dw);
    CHECK_EQ(m.full_h, dh);
    if (im.w == dw && im.h == dh) {
        bad |= !quads_are(im.rgb, dw, dh, g_quad_shown[o]);
        uint8_t *ref = NULL;
        CHECK_EQ(dfm_rgb_orient(src, w, h, o, &ref, NULL, NULL), 0);
        bad |= !ref || memcmp(im.rgb, ref, (size_t)w * h * 3);
        free(ref);
    }
    int pw = 0, ph = 0;
    CHECK_EQ(dfm_image_peek_size(f, n, &pw, &ph), 1);
    CHECK(pw == dw && ph == dh);
    dfm_image small;
    dfm_image_meta sm;
    CHECK_EQ(dfm_image_decode_min(f, n, 0, 0, dw / 2, dh / 2, &small, &sm), 0); /* the --preset path */
    CHECK(small.rgb && small.w == dw && small.h == dh && !memcmp(small.rgb, im.rgb, (size_t)w * h * 3));
    CHECK(sm.full_w == dw && sm.full_h == dh && sm.orientation == o);
    dfm_image_free(&small);
    if (bad) fprintf(stderr, "  %s, orientation %d: wrong pixels\n", what, o);
    CHECK(!bad);
    dfm_image_free(&im);
}

/* Every orientation, both TIFF byte orders, the eXIf chunk before and after the image data. */
TEST(image_png_exif_orientations)
{
    const int w = 24, h = 16;
    uint8_t *src = quad_rgb(w, h), *png = NULL;
    size_t len = 0;
    CHECK_EQ(dfm_encode_png_mem(src, h, w, &png, &len), 0);
    if (!png) {
        free(src);
        return;
    }
    for (int o = 1; o <= 8; o++)
        for (int v = 0; v < 4; v++) {
            uint8_t t[64], *f;
            size_t tn = make_tiff(t, v & 1, 0x0112, 3, (uint32_t)o, 1, 8), n;
            f = png_with_exif(png, len, t, tn, v >> 1, &n);
            check_oriented(f, n, src, w, h, o, v >> 1 ? "png, eXIf after IDAT" : "png, eXIf after IHDR");
            free(f);
        }
    free(png);
    free(src);
}

/* Every orientation, the EXIF chunk with and without "Exif\0\0", after and before the image
 * chunk, lossless (VP8L) and lossy (VP8, quadrants within 40 of their colour: checked by centre). */
TEST(image_webp_exif_orientations)
{
    const int w = 24, h = 16;
    uint8_t *src = quad_rgb(w, h);
    char path[600];
    snprintf(path, sizeof path, "%s/quad.webp", dfm_test_tmpdir());
    CHECK_EQ(dfm_encode_frames(path, src, 1, h, w, NULL), 0);
    dfm_buf webp = {0};
    CHECK_EQ(dfm_read_file(path, 0, &webp), 0);
    CHECK(webp.len > 20 && !memcmp(webp.data + 12, "VP8L", 4));
    for (int o = 1; o <= 8 && webp.len > 20; o++)
        for (int v = 0; v < 4; v++) {
            uint8_t blk[70], *f;
            const int prefix = v & 1, first = v >> 1;
            if (prefix) memcpy(blk, "Exif\0\0", 6);
            size_t bn = (prefix ? 6 : 0) + make_tiff(blk + (prefix ? 6 : 0), o & 1, 0x0112, 3, (uint32_t)o, 1, 8), n;
            f = webp_with_exif(webp.data, webp.len, w, h, blk, bn, 1, first, &n);
            check_oriented(f, n, src, w, h, o, prefix ? "webp, Exif\\0\\0 prefix" : "webp, bare TIFF");
            free(f);
        }
    dfm_buf_free(&webp);
    /* lossy VP8: the same turn, colours near their quadrant's */
    dfm_encode_opts lossy = {.webp_quality = 90};
    CHECK_EQ(dfm_encode_frames(path, src, 1, h, w, &lossy), 0);
    CHECK_EQ(dfm_read_file(path, 0, &webp), 0);
    uint8_t t[64];
    size_t tn = make_tiff(t, 1, 0x0112, 3, 8, 1, 8), n;
    uint8_t *f = webp.len > 20 ? webp_with_exif(webp.data, webp.len, w, h, t, tn, 1, 0, &n) : NULL;
    dfm_image im;
    dfm_image_meta m;
    CHECK(f && dfm_image_decode(f, n, 0, &im, &m) == 0);
    if (f && im.rgb) {
        CHECK(im.w == h && im.h == w && m.orientation == 8);
        const int pts[4][2] = {{4, 6}, {12, 6}, {4, 18}, {12, 18}};
        const int want[4][3] = {{0, 255, 0}, {255, 255, 255}, {255, 0, 0}, {0, 0, 255}}; /* GW/RB */
        for (int i = 0; i < 4; i++)
            CHECK(near_rgb(px(&im, pts[i][0], pts[i][1]), want[i][0], want[i][1], want[i][2], 40));
        dfm_image_free(&im);
    }
    free(f);
    dfm_buf_free(&webp);
    free(src);
}

/* Missing, unflagged, broken or cut EXIF is orientation 1 (as stored), as for JPEG, and the
 * picture still decodes; the walks read every truncation of a file safely. */
TEST(image_png_webp_exif_damaged)
{
    const int w = 24, h = 16;
    uint8_t *src = quad_rgb(w, h), *png = NULL;
    size_t len = 0;
    CHECK_EQ(dfm_encode_png_mem(src, h, w, &png, &len), 0);
    char path[600];
    snprintf(path, sizeof path, "%s/quad2.webp", dfm_test_tmpdir());
    CHECK_EQ(dfm_encode_frames(path, src, 1, h, w, NULL), 0);
    dfm_buf webp = {0};
    CHECK_EQ(dfm_read_file(path, 0, &webp), 0);
    if (!png || webp.len < 20) {
        free(png), free(src);
        dfm_buf_free(&webp);
        return;
    }
    CHECK_EQ(dfm_image_exif_orientation(png, len), 1); /* no EXIF at all */
    CHECK_EQ(dfm_image_exif_orientation(webp.data, webp.len), 1);
    /* broken blocks: bad byte order mark, not 42, IFD past the end, value 0 and 9, another tag, a
     * wrong type, nothing at all, "Exif\0\0" and nothing after it */
    uint8_t t[10][72];
    size_t tn[10];
    for (int k = 0; k < 10; k++) tn[k] = make_tiff(t[k], k & 1, 0x0112, 3, 6, 1, 8);
    t[0][0] = 'X';
    t[1][2] ^= 0x55;
    tn[2] = make_tiff(t[2], 1, 0x0112, 3, 6, 1, 0xFFFFFF00u);
    tn[3] = make_tiff(t[3], 0, 0x0112, 3, 0, 1, 8);
    tn[4] = make_tiff(t[4], 1, 0x0112, 3, 9, 1, 8);
    tn[5] = make_tiff(t[5], 0, 0x0110, 3, 6, 1, 8);
    tn[6] = make_tiff(t[6], 1, 0x0112, 5, 6, 1, 8); /* RATIONAL */
    tn[7] = 0;
    memcpy(t[8], "Exif\0\0", 6), tn[8] = 6;
    tn[9] = 13; /* cut inside the IFD entry */
    for (int k = 0; k < 10; k++) {
        size_t n;
        uint8_t *f = png_with_exif(png, len, t[k], tn[k], k & 1, &n);
        check_oriented(f, n, src, w, h, 1, "png, broken eXIf");
        free(f);
        f = webp_with_exif(webp.data, webp.len, w, h, t[k], tn[k], 1, 0, &n);
        check_oriented(f, n, src, w, h, 1, "webp, broken EXIF");
        free(f);
    }
    /* a sound orientation 6 that must not count: WebP without VP8X's EXIF flag (libwebp's demuxer
     * drops the chunk); a PNG whose eXIf follows IEND */
    uint8_t six[64];
    size_t sn = make_tiff(six, 1, 0x0112, 3, 6, 1, 8), n;
    uint8_t *f = webp_with_exif(webp.data, webp.len, w, h, six, sn, 0, 0, &n);
    check_oriented(f, n, src, w, h, 1, "webp, EXIF flag unset");
    free(f);
    uint8_t *tail = malloc(len + 12 + sn);
    memcpy(tail, png, len);
    put_be32(tail + len, (uint32_t)sn);
    memcpy(tail + len + 4, "eXIf", 4);
    memcpy(tail + len + 8, six, sn);
    put_be32(tail + len + 8 + sn, crc32_png(tail + len + 4, 4 + sn));
    CHECK_EQ(dfm_image_exif_orientation(tail, len + 12 + sn), 1);
    free(tail);
    /* chunk lengths past the end: eXIf declared longer than the file, EXIF past the RIFF size */
    f = png_with_exif(png, len, six, sn, 0, &n);
    put_be32(f + 33, 0x7FFFFFF0u);
    CHECK_EQ(dfm_image_exif_orientation(f, n), 1);
    free(f);
    f = webp_with_exif(webp.data, webp.len, w, h, six, sn, 1, 0, &n);
    put_le32(f + 4, (uint32_t)(n - 8 - 4)); /* RIFF ends inside the EXIF chunk */
    CHECK_EQ(dfm_image_exif_orientation(f, n), 1);
    free(f);
    /* every truncation (exact-size copies, for ASan): 1, or the orientation once the block is in */
    for (int kind = 0; kind < 2; kind++) {
        f = kind ? webp_with_exif(webp.data, webp.len, w, h, six, sn, 1, 1, &n)
                 : png_with_exif(png, len, six, sn, 0, &n);
        CHECK_EQ(dfm_image_exif_orientation(f, n), 6);
        for (size_t k = 0; k <= n; k++) {
            uint8_t *c = malloc(k ? k : 1);
            memcpy(c, f, k);
            int r = dfm_image_exif_orientation(c, k), pw, ph;
            CHECK(r == 1 || r == 6);
            if (dfm_image_peek_size(c, k, &pw, &ph) == 1) CHECK(r == 6 ? pw == h && ph == w : pw == w && ph == h);
            dfm_image im;
            if (dfm_image_decode(c, k, 0, &im, NULL) == 0) dfm_image_free(&im);
            free(c);
        }
        free(f);
    }
    dfm_buf_free(&webp);
    free(png);
    free(src);
}
