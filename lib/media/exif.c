/* exif.c — the EXIF orientation of a JPEG, PNG or WebP, and applying an orientation to packed RGB.
 *
 * What it is: one reader of IFD0's Orientation tag (0x0112) in a TIFF structure (either byte
 * order), found by three bounds-checked container walks: a JPEG's marker segments up to the
 * first scan (the APP1 "Exif\0\0" segment), a PNG's chunks up to IEND (the eXIf chunk: the TIFF
 * structure itself), a WebP's RIFF chunks (the EXIF chunk of the extended format, used only when
 * VP8X flags it, as libwebp's demuxer does; with or without an "Exif\0\0" prefix, as Pillow
 * reads it); and the eight orientation transforms of EXIF, with the meaning Pillow's
 * ImageOps.exif_transpose gives them. Every offset read from the file is checked against the
 * segment or chunk length: the bytes are untrusted. A missing, cut or unreadable EXIF block is
 * orientation 1 (the picture as stored), never an error.
 * Not here: any other EXIF tag, XMP's tiff:Orientation, BMP (no EXIF), writing EXIF.
 */
#include "media/image.h"

#include "base/buf.h"
#include "base/error.h"

#include <stdlib.h>
#include <string.h>

static uint32_t rd16(const uint8_t *p, int le) { return le ? p[0] | p[1] << 8 : p[0] << 8 | p[1]; }

static uint32_t rd32(const uint8_t *p, int le)
{
    return le ? (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24
              : (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* Orientation from a TIFF structure (JPEG: the APP1 payload after "Exif\0\0"; PNG, WebP: the
 * EXIF block); 0 if absent/invalid. */
static int tiff_orientation(const uint8_t *t, size_t len)
{
    if (len < 8) return 0;
    int le;
    if (t[0] == 'I' && t[1] == 'I')
        le = 1;
    else if (t[0] == 'M' && t[1] == 'M')
        le = 0;
    else
        return 0;
    if (rd16(t + 2, le) != 42) return 0;
    uint64_t ifd = rd32(t + 4, le);
    if (ifd + 2 > len) return 0;
    uint32_t count = rd16(t + ifd, le);
    for (uint32_t i = 0; i < count; i++) {
        uint64_t e = ifd + 2 + 12 * (uint64_t)i;
        if (e + 12 > len) break;
        if (rd16(t + e, le) != 0x0112) continue;
        uint32_t type = rd16(t + e + 2, le), n = rd32(t + e + 4, le), v;
        if (n < 1) return 0;
        if (type == 3) /* SHORT, the type the standard prescribes */
            v = rd16(t + e + 8, le);
        else if (type == 4) /* LONG, seen in the wild */
            v = rd32(t + e + 8, le);
        else if (type == 1) /* BYTE */
            v = t[e + 8];
        else
            return 0;
        return v >= 1 && v <= 8 ? (int)v : 0;
    }
    return 0;
}

int dfm_jpeg_exif_orientation(const uint8_t *d, size_t n)
{
    if (!d || n < 4 || d[0] != 0xFF || d[1] != 0xD8) return 1;
    size_t p = 2;
    while (p + 4 <= n) {
        if (d[p] != 0xFF) return 1; /* lost sync: no more markers we can trust */
        uint8_t m = d[p + 1];
        if (m == 0xFF) { /* fill byte */
            p++;
            continue;
        }
        if (m == 0x01 || m == 0xD8 || (m >= 0xD0 && m <= 0xD7)) { /* markers without length */
            p += 2;
            continue;
        }
        if (m == 0xDA || m == 0xD9) return 1; /* start of scan / end of image */
        size_t seglen = (size_t)d[p + 2] << 8 | d[p + 3];
        if (seglen < 2 || seglen > n - p - 2) return 1;
        if (m == 0xE1 && seglen >= 2 + 6 && memcmp(d + p + 4, "Exif\0\0", 6) == 0) {
            int o = tiff_orientation(d + p + 10, seglen - 8);
            if (o) return o;
        }
        p += 2 + seglen;
    }
    return 1;
}

/* An EXIF block as PNG and WebP writers store it: the TIFF structure, or (some WebP writers, and
 * PNG writers that copy a JPEG's APP1 payload) the same behind "Exif\0\0". */
static int exif_block_orientation(const uint8_t *p, size_t n)
{
    if (n >= 6 && !memcmp(p, "Exif\0\0", 6)) p += 6, n -= 6;
    int o = tiff_orientation(p, n);
    return o ? o : 1;
}

/* PNG: chunks (length, type, data, CRC) from the signature to IEND; the first eXIf chunk counts,
 * wherever it is (before or after the image data, as Pillow reads it). The CRC is not checked. */
static int png_exif_orientation(const uint8_t *d, size_t n)
{
    size_t p = 8;
    while (p + 8 <= n) {
        const size_t len = rd32(d + p, 0);
        const uint8_t *type = d + p + 4;
        if (len > n - p - 8) return 1; /* cut: nothing after it can be trusted */
        if (!memcmp(type, "IEND", 4)) return 1;
        if (!memcmp(type, "eXIf", 4)) return exif_block_orientation(d + p + 8, len);
        if (len > n - p - 12) return 1; /* no room for the CRC */
        p += 12 + len;
    }
    return 1;
}

/* WebP: RIFF chunks (fourcc, little-endian size, data padded to even) after "RIFF" size "WEBP".
 * Only the extended format (a VP8X first chunk) carries metadata, and libwebp's demuxer (Pillow's
 * reader) keeps the EXIF chunk only when VP8X's EXIF flag (0x08) is set and the whole padded chunk
 * is present; the first EXIF chunk counts.
 * ref: https://developers.google.com/speed/webp/docs/riff_container (Extended File Format)
 * ref: libwebp src/demux/demux.c ParseVP8XChunks */
static int webp_exif_orientation(const uint8_t *d, size_t n)
{
    if (n < 30 || memcmp(d + 12, "VP8X", 4) || !(d[20] & 0x08)) return 1;
    const size_t riff = rd32(d + 4, 1);
    if (riff < n - 8) n = riff + 8; /* bytes past the RIFF payload are not the file's */
    size_t p = 12;
    while (p + 8 <= n) {
        const size_t sz = rd32(d + p + 4, 1), padded = sz + (sz & 1);
        if (padded > n - p - 8) return 1;
        if (!memcmp(d + p, "EXIF", 4)) return exif_block_orientation(d + p + 8, sz);
        p += 8 + padded;
    }
    return 1;
}

int dfm_image_exif_orientation(const uint8_t *d, size_t n)
{
    switch (dfm_image_sniff(d, n)) {
    case DFM_IMG_JPEG: return dfm_jpeg_exif_orientation(d, n);
    case DFM_IMG_PNG: return png_exif_orientation(d, n);
    case DFM_IMG_WEBP: return webp_exif_orientation(d, n);
    default: return 1;
    }
}

/* Source pixel of destination (x, y) is (ax*x + bx*y + cx, ay*x + by*y + cy). */
typedef struct {
    int ax, bx, cx, ay, by, cy;
} orient_map;

// ref: Pillow ImageOps.exif_transpose (2 FLIP_LEFT_RIGHT, 3 ROTATE_180, 4 FLIP_TOP_BOTTOM,
//      5 TRANSPOSE, 6 ROTATE_270, 7 TRANSVERSE, 8 ROTATE_90)
static orient_map orient_of(int o, int w, int h)
{
    switch (o) {
    case 2: return (orient_map){-1, 0, w - 1, 0, 1, 0};
    case 3: return (orient_map){-1, 0, w - 1, 0, -1, h - 1};
    case 4: return (orient_map){1, 0, 0, 0, -1, h - 1};
    case 5: return (orient_map){0, 1, 0, 1, 0, 0};
    case 6: return (orient_map){0, 1, 0, -1, 0, h - 1};
    case 7: return (orient_map){0, -1, w - 1, -1, 0, h - 1};
    case 8: return (orient_map){0, -1, w - 1, 1, 0, 0};
    default: return (orient_map){1, 0, 0, 0, 1, 0};
    }
}

int dfm_rgb_orient(const uint8_t *src, int w, int h, int orientation, uint8_t **dst, int *dw, int *dh)
{
    if (!src || !dst || w <= 0 || h <= 0 || orientation < 1 || orientation > 8)
        return dfm_fail(DFM_E_ARG, "orient: bad arguments (%dx%d, orientation %d)", w, h, orientation);
    size_t n;
    if (!dfm_mul_ok((size_t)w * h, 3, &n)) return dfm_fail(DFM_E_LIMIT, "orient: image too large");
    uint8_t *out = malloc(n);
    if (!out) return dfm_fail(DFM_E_NOMEM, "orient: out of memory for %dx%d", w, h);
    int ow = orientation >= 5 ? h : w, oh = orientation >= 5 ? w : h;
    if (orientation == 1) {
        memcpy(out, src, n);
    } else {
        orient_map m = orient_of(orientation, w, h);
        /* 32x32 tiles keep the column walks of the rotations inside the cache. */
        const ptrdiff_t step = ((ptrdiff_t)m.ax + (ptrdiff_t)m.ay * w) * 3;
        for (int ty = 0; ty < oh; ty += 32)
            for (int tx = 0; tx < ow; tx += 32) {
                int ey = ty + 32 < oh ? ty + 32 : oh, ex = tx + 32 < ow ? tx + 32 : ow;
                for (int y = ty; y < ey; y++) {
                    ptrdiff_t sx = (ptrdiff_t)m.ax * tx + (ptrdiff_t)m.bx * y + m.cx;
                    ptrdiff_t sy = (ptrdiff_t)m.ay * tx + (ptrdiff_t)m.by * y + m.cy;
                    ptrdiff_t si = (sy * w + sx) * 3;
                    uint8_t *o = out + ((size_t)y * ow + tx) * 3;
                    for (int x = tx; x < ex; x++, si += step, o += 3) {
                        o[0] = src[si];
                        o[1] = src[si + 1];
                        o[2] = src[si + 2];
                    }
                }
            }
    }
    *dst = out;
    if (dw) *dw = ow;
    if (dh) *dh = oh;
    return 0;
}
