/* image.h — still-image decode to 8-bit RGB.
 *
 * JPEG goes through TurboJPEG; PNG, WebP and BMP through libavcodec, decoded from memory. The EXIF
 * orientation of a JPEG (APP1), PNG (eXIf) or WebP (EXIF chunk) is applied. Every result is
 * packed RGB, 3 bytes a pixel, rows top-to-bottom: grey is expanded, 16-bit is reduced to 8-bit,
 * alpha is composited on white.
 * A declared size over max_pixels is refused before any pixel buffer is allocated.
 * Not here: resizing (resample.h), video (video.h), file discovery.
 */
#ifndef DFM_MEDIA_IMAGE_H
#define DFM_MEDIA_IMAGE_H
#include <stddef.h>
#include <stdint.h>

typedef struct {
    int w, h;
    uint8_t *rgb; /* w*h*3 bytes, malloc'd; owned by the image */
} dfm_image;

typedef enum { DFM_IMG_UNKNOWN, DFM_IMG_JPEG, DFM_IMG_PNG, DFM_IMG_WEBP, DFM_IMG_BMP } dfm_img_type;

/* Sniff the container from the first bytes (not the file name). */
dfm_img_type dfm_image_sniff(const uint8_t *data, size_t len);
const char *dfm_image_type_name(dfm_img_type t); /* "jpeg", "png", ... */

typedef struct {
    dfm_img_type type;
    int src_w, src_h;    /* size as stored, before orientation */
    int orientation;     /* EXIF orientation 1..8 applied (1 = none) */
    int had_alpha;       /* composited on white */
    int bit_depth;       /* 8 or 16 per channel as stored */
    char damage[160];    /* with DFM_IMAGE_ACCEPT_DAMAGED: the decoder's complaint about corrupt
                          * data it decoded through (empty when the data was sound) */
    int full_w, full_h;  /* displayed size at full scale (after the orientation) */
    int scale_denom;     /* the picture was decoded at 1/scale_denom (1, 2, 4 or 8; JPEG only) */
} dfm_image_meta;

/* Decode an image held in memory. max_pixels = 0 means no limit. Errors: DFM_E_FORMAT for
 * empty, truncated or corrupt data, DFM_E_LIMIT for an image over max_pixels,
 * DFM_E_UNSUPPORTED for e.g. animated WebP. meta may be NULL. */
int dfm_image_decode(const uint8_t *data, size_t len, uint64_t max_pixels, dfm_image *out,
                     dfm_image_meta *meta);
/* The same with flags. Damaged data: libjpeg decodes through corrupt entropy data, a missing end
 * of data or a cut file with a warning ("Corrupt JPEG data: premature end of data segment",
 * "Premature end of JPEG file", bad Huffman codes, resyncs, extraneous bytes), filling what is
 * lost with grey. By default that is DFM_E_FORMAT naming the warning; DFM_IMAGE_ACCEPT_DAMAGED
 * returns the picture and the warning in meta->damage (as Pillow's LOAD_TRUNCATED_IMAGES).
 * Harmless warnings (an unknown JFIF revision, a bad ICC marker) never reject a picture. */
enum { DFM_IMAGE_ACCEPT_DAMAGED = 1 };
int dfm_image_decode_ex(const uint8_t *data, size_t len, uint64_t max_pixels, int flags, dfm_image *out,
                        dfm_image_meta *meta);
void dfm_image_free(dfm_image *img);

/* The displayed size (after the EXIF orientation) read from the header alone, no
 * pixel decoded: 1 found, 0 unknown or unreadable (the decode then says why). */
int dfm_image_peek_size(const uint8_t *data, size_t len, int *w, int *h);
/* dfm_image_decode_ex for a consumer that will scale the picture down to min_w x min_h or more
 * (displayed orientation): a JPEG is decoded by libjpeg-turbo at the smallest of its DCT scales
 * 1/2, 1/4, 1/8 (d) with w >= d * min_w and h >= d * min_h (output: the size divided by d,
 * rounded up), else at full size — Pillow's Image.draft() rule; the orientation then turns the
 * small picture. Other formats, and JPEGs TurboJPEG does not decode (CMYK), come at full size.
 * meta->scale_denom and meta->full_w/full_h tell which. min_w = min_h = 0 is the exact path.
 * ref: PIL.JpegImagePlugin.JpegImageFile.draft */
int dfm_image_decode_min(const uint8_t *data, size_t len, uint64_t max_pixels, int flags, int min_w, int min_h,
                         dfm_image *out, dfm_image_meta *meta);

/* EXIF orientation (1..8) of an image in memory, by its signature: a JPEG's APP1 "Exif" segment,
 * a PNG's eXIf chunk, a WebP's EXIF chunk (extended format with VP8X's EXIF flag set; the TIFF
 * structure with or without an "Exif\0\0" prefix). 1 when absent, cut, unreadable or out of
 * range, and for BMP: never an error. ref: PIL.ImageOps.exif_transpose (Image.getexif) */
int dfm_image_exif_orientation(const uint8_t *data, size_t len);
/* The same for a JPEG alone (APP1), 1 for anything else. */
int dfm_jpeg_exif_orientation(const uint8_t *data, size_t len);
/* Apply an EXIF orientation to packed RGB: returns a new buffer (malloc'd) and the new size. */
int dfm_rgb_orient(const uint8_t *src, int w, int h, int orientation, uint8_t **dst, int *dw, int *dh);

/* Shared by image and video decode: convert a decoded FFmpeg frame to packed RGB, dw*dh*3
 * bytes at dst (scaled with bicubic when dw x dh differs from the frame). Colour matrix and
 * range come from the frame (BT.601 when unspecified, full range for JPEG-range frames);
 * alpha is composited on white, out = (c*a + 255*(255-a) + 127) / 255.
 * accurate = 1: SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT, interpolated chroma (closest
 * to Pillow/libwebp for still images; ~20 ms for a 1080p frame). accurate = 0: SWS_BICUBIC alone,
 * which for same-size 4:2:0/4:2:2 takes libswscale's SIMD yuv2rgb path (~1 ms for 1080p) and is
 * bit-identical to OpenCV's and PyAV's frame conversion, i.e. what the video references see.
 * libswscale writes into padded rows (its SIMD paths write whole blocks of pixels past the end
 * of a row), copied out to dst, so every width and pixel format is safe and exact.
 * conv (may be NULL) keeps the libswscale context and those rows between calls (a video's
 * frames); dfm_rgb_conv_free releases them.
 * had_alpha (may be NULL) is set to 1 when some pixel was not opaque. */
struct AVFrame;
struct SwsContext;
typedef struct {
    struct SwsContext *sws;
    uint8_t *buf; /* padded output rows */
    size_t cap;
} dfm_rgb_conv;
void dfm_rgb_conv_free(dfm_rgb_conv *c);
int dfm_av_frame_to_rgb(const struct AVFrame *f, dfm_rgb_conv *conv, int accurate, uint8_t *dst, int dw, int dh,
                        int *had_alpha);

#endif
