/* image.c — still-image decode from memory to packed 8-bit RGB.
 *
 * What it is: sniffing by magic bytes; JPEG through TurboJPEG 2.1 (header first, the pixel
 * limit checked before any pixel buffer exists, then a TJPF_RGB decode with the default
 * accurate DCT and fancy upsampling, as Pillow decodes; with a minimum size, at a DCT scale of
 * 1/2, 1/4 or 1/8 as Pillow's draft()); PNG, WebP,
 * BMP — and JPEGs TurboJPEG refuses, such as CMYK — through libavcodec, the whole file as one
 * packet, converted with libswscale (alpha composited on white, grey and 16-bit reduced to
 * 8-bit RGB); then the EXIF orientation of any of them (exif.c) turns the picture. FFmpeg's own
 * logging is silenced so stderr carries only our messages.
 * Policy on damaged input: an error (DFM_E_FORMAT) rather than a concealed picture: every libjpeg
 * warning that reports corrupt or missing data rejects the picture (Pillow itself only catches a
 * cut file), unless the caller accepts damage (DFM_IMAGE_ACCEPT_DAMAGED); warnings that do not
 * touch the pixels are tolerated.
 * Not here: resizing, video, file reading, parsing EXIF (exif.c).
 */
#include "media/image.h"

#include "base/buf.h"
#include "base/error.h"

#include <libavcodec/avcodec.h>
#include <libavutil/frame.h>
#include <libavutil/imgutils.h>
#include <libavutil/log.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

static pthread_once_t g_av_quiet_once = PTHREAD_ONCE_INIT;
static void av_quiet(void) { av_log_set_level(AV_LOG_QUIET); }

dfm_img_type dfm_image_sniff(const uint8_t *d, size_t n)
{
    if (!d) return DFM_IMG_UNKNOWN;
    if (n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF) return DFM_IMG_JPEG;
    if (n >= 8 && !memcmp(d, "\x89PNG\r\n\x1a\n", 8)) return DFM_IMG_PNG;
    if (n >= 12 && !memcmp(d, "RIFF", 4) && !memcmp(d + 8, "WEBP", 4)) return DFM_IMG_WEBP;
    if (n >= 18 && d[0] == 'B' && d[1] == 'M') {
        uint32_t dib = d[14] | d[15] << 8 | (uint32_t)d[16] << 16 | (uint32_t)d[17] << 24;
        if (dib == 12 || dib == 16 || dib == 40 || dib == 52 || dib == 56 || dib == 64 ||
            dib == 108 || dib == 124)
            return DFM_IMG_BMP;
    }
    return DFM_IMG_UNKNOWN;
}

const char *dfm_image_type_name(dfm_img_type t)
{
    switch (t) {
    case DFM_IMG_JPEG: return "jpeg";
    case DFM_IMG_PNG: return "png";
    case DFM_IMG_WEBP: return "webp";
    case DFM_IMG_BMP: return "bmp";
    default: return "unknown";
    }
}

void dfm_image_free(dfm_image *img)
{
    if (!img) return;
    free(img->rgb);
    img->rgb = NULL;
    img->w = img->h = 0;
}

static int check_size(const char *what, int64_t w, int64_t h, uint64_t max_pixels)
{
    if (w <= 0 || h <= 0) return dfm_fail(DFM_E_FORMAT, "%s: invalid size %lldx%lld", what, (long long)w, (long long)h);
    if (max_pixels && (uint64_t)w * (uint64_t)h > max_pixels)
        return dfm_fail(DFM_E_LIMIT, "%s: %lldx%lld is %llu pixels, over the limit of %llu", what,
                        (long long)w, (long long)h, (unsigned long long)w * h,
                        (unsigned long long)max_pixels);
    if ((uint64_t)w * (uint64_t)h > (uint64_t)SIZE_MAX / 4)
        return dfm_fail(DFM_E_LIMIT, "%s: %lldx%lld is too large", what, (long long)w, (long long)h);
    return 0;
}

/* ---- FFmpeg frame -> RGB ----------------------------------------------------------------- */

static int is_full_range_fmt(enum AVPixelFormat f)
{
    return f == AV_PIX_FMT_YUVJ420P || f == AV_PIX_FMT_YUVJ422P || f == AV_PIX_FMT_YUVJ444P ||
           f == AV_PIX_FMT_YUVJ440P || f == AV_PIX_FMT_YUVJ411P;
}

/* A copy of a chroma-subsampled frame grown to whole chroma samples (even width/height for
 * 4:2:0) by repeating the last column and row. libswscale maps an odd-sized luma plane onto its
 * ceil(w/2) chroma samples by stretching, which misplaces chroma by up to half a sample across
 * the picture; on the padded frame the chroma grid lines up and we crop afterwards. */
static AVFrame *pad_frame(const AVFrame *f, const AVPixFmtDescriptor *d)
{
    const int mw = (1 << d->log2_chroma_w) - 1, mh = (1 << d->log2_chroma_h) - 1;
    AVFrame *p = av_frame_alloc();
    if (!p) return NULL;
    p->format = f->format;
    p->width = (f->width + mw) & ~mw;
    p->height = (f->height + mh) & ~mh;
    p->colorspace = f->colorspace;
    p->color_range = f->color_range;
    int lw[4], lpw[4];
    if (av_frame_get_buffer(p, 0) < 0 || av_image_fill_linesizes(lw, f->format, f->width) < 0 ||
        av_image_fill_linesizes(lpw, f->format, p->width) < 0) {
        av_frame_free(&p);
        return NULL;
    }
    for (int i = 0; i < 4 && f->data[i] && p->data[i]; i++) {
        int sub = i == d->comp[1].plane || i == d->comp[2].plane;
        int h = sub ? AV_CEIL_RSHIFT(f->height, d->log2_chroma_h) : f->height;
        int ph = sub ? AV_CEIL_RSHIFT(p->height, d->log2_chroma_h) : p->height;
        int extra = lpw[i] - lw[i], ncols = sub ? 0 : p->width - f->width;
        int bpp = ncols > 0 ? extra / ncols : 0;
        for (int r = 0; r < ph; r++) {
            const uint8_t *sr = f->data[i] + (ptrdiff_t)(r < h ? r : h - 1) * f->linesize[i];
            uint8_t *o = p->data[i] + (ptrdiff_t)r * p->linesize[i];
            memcpy(o, sr, (size_t)lw[i]);
            for (int k = 0; bpp > 0 && k < extra; k++) o[lw[i] + k] = o[lw[i] - bpp + k % bpp];
        }
    }
    return p;
}

static int convert(const AVFrame *f, dfm_rgb_conv *cv, int accurate, uint8_t *dst, int dw, int dh, int *had_alpha)
{
    const AVPixFmtDescriptor *desc = av_pix_fmt_desc_get(f->format);
    if (!desc || f->width <= 0 || f->height <= 0 || dw <= 0 || dh <= 0 ||
        (desc->flags & (AV_PIX_FMT_FLAG_HWACCEL | AV_PIX_FMT_FLAG_BITSTREAM)))
        return dfm_fail(DFM_E_FORMAT, "decoded frame has no usable pixel format or size");
    const int alpha = (desc->flags & AV_PIX_FMT_FLAG_ALPHA) != 0;
    const int same = f->width == dw && f->height == dh;
    if (had_alpha) *had_alpha = 0;
    if (!alpha && same && f->format == AV_PIX_FMT_RGB24) {
        for (int y = 0; y < dh; y++)
            memcpy(dst + (size_t)y * dw * 3, f->data[0] + (ptrdiff_t)y * f->linesize[0], (size_t)dw * 3);
        return 0;
    }
    const uint8_t *rgba = NULL; /* RGBA pixels to composite, visible dw x dh */
    ptrdiff_t rgba_stride = 0;
    if (alpha && same && f->format == AV_PIX_FMT_RGBA) {
        rgba = f->data[0];
        rgba_stride = f->linesize[0];
    } else {
        const AVFrame *src = f;
        AVFrame *pad = NULL;
        int cw = dw, ch = dh; /* conversion size: the output, or the padded frame */
        if (accurate && same && (desc->flags & AV_PIX_FMT_FLAG_PLANAR) &&
            !(desc->flags & (AV_PIX_FMT_FLAG_RGB | AV_PIX_FMT_FLAG_PAL)) &&
            ((f->width & ((1 << desc->log2_chroma_w) - 1)) || (f->height & ((1 << desc->log2_chroma_h) - 1)))) {
            if (!(pad = pad_frame(f, desc))) return dfm_fail(DFM_E_NOMEM, "out of memory converting %dx%d", dw, dh);
            src = pad;
            cw = pad->width;
            ch = pad->height;
        }
        const int bpp = alpha ? 4 : 3;
        enum AVPixelFormat to = alpha ? AV_PIX_FMT_RGBA : AV_PIX_FMT_RGB24;
        struct SwsContext **sws = &cv->sws;
        int flags = accurate ? SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT : SWS_BICUBIC;
        *sws = sws_getCachedContext(*sws, src->width, src->height, src->format, cw, ch, to, flags, NULL, NULL, NULL);
        if (!*sws) {
            av_frame_free(&pad);
            return dfm_fail(DFM_E_UNSUPPORTED, "no conversion from pixel format %s to RGB", desc->name);
        }
        if (!(desc->flags & (AV_PIX_FMT_FLAG_RGB | AV_PIX_FMT_FLAG_PAL)) && desc->nb_components >= 3) {
            /* YUV: matrix and range from the frame; BT.601 when unspecified (as sws, PyAV) */
            int cs = f->colorspace;
            if (cs == AVCOL_SPC_UNSPECIFIED || cs == AVCOL_SPC_RGB || cs == AVCOL_SPC_RESERVED) cs = SWS_CS_DEFAULT;
            int full = f->color_range == AVCOL_RANGE_JPEG || is_full_range_fmt(f->format);
            sws_setColorspaceDetails(*sws, sws_getCoefficients(cs), full, sws_getCoefficients(SWS_CS_DEFAULT), 1,
                                     0, 1 << 16, 1 << 16);
        }
        /* Always into a padded buffer: libswscale's SIMD paths write whole blocks of pixels, past
         * the end of each row of a tightly packed destination (and of the last row), so the
         * output gets rows of whole 64-pixel blocks, 64-byte aligned, and a spare row. */
        const size_t stride = ((size_t)(cw + 63) & ~(size_t)63) * bpp, need = stride * ((size_t)ch + 1);
        if (cv->cap < need) {
            av_free(cv->buf);
            cv->cap = 0;
            if (!(cv->buf = av_malloc(need))) {
                av_frame_free(&pad);
                return dfm_fail(DFM_E_NOMEM, "out of memory converting %dx%d", dw, dh);
            }
            cv->cap = need;
        }
        uint8_t *out = cv->buf;
        uint8_t *planes[4] = {out, NULL, NULL, NULL};
        int strides[4] = {(int)stride, 0, 0, 0};
        int r = sws_scale(*sws, (const uint8_t *const *)src->data, src->linesize, 0, src->height, planes, strides);
        av_frame_free(&pad);
        if (r <= 0) return dfm_fail(DFM_E_FORMAT, "pixel conversion from %s failed", desc->name);
        if (!alpha) {
            for (int y = 0; y < dh; y++) memcpy(dst + (size_t)y * dw * 3, out + (size_t)y * stride, (size_t)dw * 3);
            return 0;
        }
        rgba = out;
        rgba_stride = stride;
    }
    int any = 0;
    for (int y = 0; y < dh; y++) {
        const uint8_t *s = rgba + y * rgba_stride;
        uint8_t *o = dst + (size_t)y * dw * 3;
        for (int x = 0; x < dw; x++, s += 4, o += 3) {
            unsigned a = s[3], na = 255 - a;
            any |= na;
            o[0] = (uint8_t)((s[0] * a + 255 * na + 127) / 255);
            o[1] = (uint8_t)((s[1] * a + 255 * na + 127) / 255);
            o[2] = (uint8_t)((s[2] * a + 255 * na + 127) / 255);
        }
    }
    if (had_alpha) *had_alpha = any != 0;
    return 0;
}

void dfm_rgb_conv_free(dfm_rgb_conv *c)
{
    if (!c) return;
    sws_freeContext(c->sws);
    av_free(c->buf);
    memset(c, 0, sizeof *c);
}

int dfm_av_frame_to_rgb(const AVFrame *f, dfm_rgb_conv *conv, int accurate, uint8_t *dst, int dw, int dh,
                        int *had_alpha)
{
    dfm_rgb_conv local = {0}, *cv = conv ? conv : &local;
    int rc = convert(f, cv, accurate, dst, dw, dh, had_alpha);
    if (!conv) dfm_rgb_conv_free(&local);
    return rc;
}

/* ---- libavcodec decode of a whole file --------------------------------------------------- */

static uint32_t le32(const uint8_t *p) { return p[0] | p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | p[2] << 8 | p[3]; }

/* Size declared in the header, before decoding: 1 found, 0 unknown, <0 error recorded. */
static int peek_size(dfm_img_type t, const uint8_t *d, size_t n, int64_t *w, int64_t *h)
{
    if (t == DFM_IMG_PNG) {
        if (n < 24 || memcmp(d + 12, "IHDR", 4)) return dfm_fail(DFM_E_FORMAT, "png: no IHDR header");
        *w = be32(d + 16);
        *h = be32(d + 20);
        return 1;
    }
    if (t == DFM_IMG_BMP) {
        if (n < 26) return dfm_fail(DFM_E_FORMAT, "bmp: truncated header");
        if (le32(d + 14) == 12) {
            *w = d[18] | d[19] << 8;
            *h = d[20] | d[21] << 8;
        } else {
            *w = (int32_t)le32(d + 18);
            *h = (int32_t)le32(d + 22);
            if (*h < 0) *h = -*h; /* top-down */
        }
        return 1;
    }
    if (t == DFM_IMG_WEBP) {
        if (n < 30) return dfm_fail(DFM_E_FORMAT, "webp: truncated header");
        if (!memcmp(d + 12, "VP8X", 4)) {
            if (d[20] & 0x02)
                return dfm_fail(DFM_E_UNSUPPORTED, "webp: animated WebP is not supported");
            *w = 1 + (d[24] | d[25] << 8 | d[26] << 16);
            *h = 1 + (d[27] | d[28] << 8 | d[29] << 16);
            return 1;
        }
        if (!memcmp(d + 12, "VP8 ", 4)) {
            if (d[23] != 0x9d || d[24] != 0x01 || d[25] != 0x2a)
                return dfm_fail(DFM_E_FORMAT, "webp: bad VP8 frame header");
            *w = (d[26] | d[27] << 8) & 0x3fff;
            *h = (d[28] | d[29] << 8) & 0x3fff;
            return 1;
        }
        if (!memcmp(d + 12, "VP8L", 4)) {
            if (d[20] != 0x2f) return dfm_fail(DFM_E_FORMAT, "webp: bad VP8L signature");
            uint32_t b = le32(d + 21);
            *w = (b & 0x3fff) + 1;
            *h = ((b >> 14) & 0x3fff) + 1;
            return 1;
        }
        return dfm_fail(DFM_E_FORMAT, "webp: unknown chunk '%.4s'", (const char *)d + 12);
    }
    return 0;
}

static int decode_av(const uint8_t *data, size_t len, dfm_img_type type, uint64_t max_pixels,
                     dfm_image *out, dfm_image_meta *meta)
{
    const char *name = dfm_image_type_name(type);
    enum AVCodecID id = type == DFM_IMG_PNG    ? AV_CODEC_ID_PNG
                        : type == DFM_IMG_WEBP ? AV_CODEC_ID_WEBP
                        : type == DFM_IMG_BMP  ? AV_CODEC_ID_BMP
                                               : AV_CODEC_ID_MJPEG;
    int64_t hw = 0, hh = 0;
    int rc = peek_size(type, data, len, &hw, &hh);
    if (rc < 0) return rc;
    const int size_known = rc == 1;
    if (size_known && (rc = check_size(name, hw, hh, max_pixels)) < 0) return rc;
    if (len > INT_MAX - AV_INPUT_BUFFER_PADDING_SIZE) return dfm_fail(DFM_E_LIMIT, "%s: file too large", name);

    const AVCodec *codec = avcodec_find_decoder(id);
    if (!codec) return dfm_fail(DFM_E_UNSUPPORTED, "%s: this FFmpeg has no decoder for it", name);
    AVCodecContext *ctx = avcodec_alloc_context3(codec);
    AVPacket *pkt = av_packet_alloc();
    AVFrame *frame = av_frame_alloc();
    if (!ctx || !pkt || !frame) {
        rc = dfm_fail(DFM_E_NOMEM, "%s: out of memory", name);
        goto done;
    }
    ctx->thread_count = 1;
    ctx->err_recognition = AV_EF_EXPLODE;
    /* libavcodec checks its limit on the width rounded up to the stride alignment, so it gets
     * slack here; the exact limit is checked on the header size before and the frame after. */
    if (max_pixels) ctx->max_pixels = max_pixels > INT64_MAX / 4 ? INT64_MAX : (int64_t)max_pixels * 2 + 65536;
    if (avcodec_open2(ctx, codec, NULL) < 0) {
        rc = dfm_fail(DFM_E_UNSUPPORTED, "%s: cannot open decoder", name);
        goto done;
    }
    if (av_new_packet(pkt, (int)len) < 0) {
        rc = dfm_fail(DFM_E_NOMEM, "%s: out of memory", name);
        goto done;
    }
    memcpy(pkt->data, data, len); /* av_new_packet zeroes the padding the decoders need */
    int r = avcodec_send_packet(ctx, pkt);
    if (r >= 0) {
        r = avcodec_receive_frame(ctx, frame);
        if (r == AVERROR(EAGAIN) && avcodec_send_packet(ctx, NULL) >= 0) r = avcodec_receive_frame(ctx, frame);
    }
    if (r < 0) {
        char e[AV_ERROR_MAX_STRING_SIZE];
        av_strerror(r, e, sizeof e);
        if (!size_known && max_pixels && r == AVERROR(EINVAL))
            rc = dfm_fail(DFM_E_LIMIT, "%s: refused by the decoder (over %llu pixels?)", name,
                          (unsigned long long)max_pixels);
        else
            rc = dfm_fail(DFM_E_FORMAT, "%s: corrupt or truncated data (%s)", name, r == AVERROR_EOF ? "no picture" : e);
        goto done;
    }
    if ((rc = check_size(name, frame->width, frame->height, max_pixels)) < 0) goto done;
    const AVPixFmtDescriptor *desc = av_pix_fmt_desc_get(frame->format);
    int had_alpha = 0;
    uint8_t *rgb = malloc((size_t)frame->width * frame->height * 3);
    if (!rgb) {
        rc = dfm_fail(DFM_E_NOMEM, "%s: out of memory for %dx%d", name, frame->width, frame->height);
        goto done;
    }
    if ((rc = dfm_av_frame_to_rgb(frame, NULL, 1, rgb, frame->width, frame->height, &had_alpha)) < 0) {
        free(rgb);
        dfm_fail_ctx(rc, "%s", name);
        goto done;
    }
    out->w = frame->width;
    out->h = frame->height;
    out->rgb = rgb;
    if (meta) {
        meta->src_w = frame->width;
        meta->src_h = frame->height;
        meta->had_alpha = had_alpha;
        meta->bit_depth = desc && desc->comp[0].depth > 8 ? 16 : 8;
    }
    rc = 0;
done:
    av_frame_free(&frame);
    av_packet_free(&pkt);
    avcodec_free_context(&ctx);
    return rc;
}

/* ---- JPEG -------------------------------------------------------------------------------- */

/* Does a libjpeg warning say pixels were lost? Its corrupt-data warnings (JWRN_HIT_MARKER,
 * JWRN_HUFF_BAD_CODE, JWRN_ARITH_BAD_CODE, JWRN_MUST_RESYNC, JWRN_EXTRANEOUS_DATA), a cut file
 * (JWRN_JPEG_EOF) and broken scan structure (JWRN_NOT_SEQUENTIAL, JWRN_BOGUS_PROGRESSION) do; a
 * bad ICC marker, an unknown JFIF revision or Adobe transform do not.
 * ref: libjpeg-turbo jerror.h (the JWRN_* texts) */
static int jpeg_warning_is_damage(const char *m)
{
    if (strcasestr(m, "ICC")) return 0;
    return strcasestr(m, "corrupt") || strcasestr(m, "premature end") || strcasestr(m, "invalid SOS") ||
           strcasestr(m, "inconsistent progression");
}

/* The DCT scale denominator (1, 2, 4, 8) for a w x h JPEG (as stored) whose displayed picture
 * (transposed for orientations 5..8) must still cover min_w x min_h: the largest d with
 * w >= d * min_w and h >= d * min_h, Pillow's draft() rule (so also ceil(w / d) >= min_w).
 * ref: PIL.JpegImagePlugin.JpegImageFile.draft */
static int jpeg_scale_denom(int w, int h, int orientation, int min_w, int min_h)
{
    if (min_w <= 0 || min_h <= 0) return 1;
    if (orientation >= 5) {
        int t = min_w;
        min_w = min_h;
        min_h = t;
    }
    for (int d = 8; d > 1; d /= 2)
        if ((int64_t)w >= (int64_t)d * min_w && (int64_t)h >= (int64_t)d * min_h) return d;
    return 1;
}

static int decode_jpeg(const uint8_t *data, size_t len, uint64_t max_pixels, int flags, int min_w, int min_h,
                       dfm_image *out, dfm_image_meta *meta)
{
    tjhandle tj = tjInitDecompress();
    if (!tj) return dfm_fail(DFM_E_NOMEM, "jpeg: cannot create a TurboJPEG handle");
    int w = 0, h = 0, subsamp = 0, cs = 0, rc;
    char tjmsg[200] = "";
    uint8_t *rgb = NULL;
    if (tjDecompressHeader3(tj, data, (unsigned long)len, &w, &h, &subsamp, &cs) < 0) {
        snprintf(tjmsg, sizeof tjmsg, "%s", tjGetErrorStr2(tj));
        goto fallback;
    }
    if (w <= 0 || h <= 0) {
        tjDestroy(tj);
        return dfm_fail(DFM_E_FORMAT, "jpeg: no frame header (truncated or corrupt data)");
    }
    if ((rc = check_size("jpeg", w, h, max_pixels)) < 0) {
        tjDestroy(tj);
        return rc;
    }
    if (cs == TJCS_CMYK || cs == TJCS_YCCK) {
        snprintf(tjmsg, sizeof tjmsg, "CMYK/YCCK JPEG");
        goto fallback;
    }
    const int denom = jpeg_scale_denom(w, h, min_w > 0 ? dfm_image_exif_orientation(data, len) : 1, min_w, min_h);
    const tjscalingfactor sf = {1, denom};
    const int sw = TJSCALED(w, sf), sh = TJSCALED(h, sf);
    rgb = malloc((size_t)sw * sh * 3);
    if (!rgb) {
        tjDestroy(tj);
        return dfm_fail(DFM_E_NOMEM, "jpeg: out of memory for %dx%d", sw, sh);
    }
    /* a smaller destination makes TurboJPEG pick the DCT scale that yields exactly sw x sh */
    if (tjDecompress2(tj, data, (unsigned long)len, rgb, sw, 0, sh, TJPF_RGB, TJFLAG_LIMITSCANS) < 0) {
        const char *m = tjGetErrorStr2(tj);
        if (tjGetErrorCode(tj) == TJERR_FATAL) {
            snprintf(tjmsg, sizeof tjmsg, "%s", m);
            free(rgb);
            rgb = NULL;
            goto fallback;
        }
        /* A warning: the picture is complete, but pixels may have been lost. TurboJPEG keeps the
         * first warning libjpeg emits. */
        if (jpeg_warning_is_damage(m)) {
            if (!(flags & DFM_IMAGE_ACCEPT_DAMAGED)) {
                rc = dfm_fail(DFM_E_FORMAT, "jpeg: damaged data, parts of the picture would be grey (libjpeg: %s)", m);
                free(rgb);
                tjDestroy(tj);
                return rc;
            }
            if (meta) snprintf(meta->damage, sizeof meta->damage, "%s", m);
        }
    }
    tjDestroy(tj);
    out->w = sw;
    out->h = sh;
    out->rgb = rgb;
    if (meta) {
        meta->src_w = w;
        meta->src_h = h;
        meta->bit_depth = 8;
        meta->scale_denom = denom;
    }
    return 0;
fallback:
    tjDestroy(tj);
    rc = decode_av(data, len, DFM_IMG_JPEG, max_pixels, out, meta);
    if (rc < 0 && rc != DFM_E_LIMIT && rc != DFM_E_NOMEM) {
        char avmsg[256];
        snprintf(avmsg, sizeof avmsg, "%s", dfm_errmsg()); /* dfm_fail overwrites it */
        const char *am = strncmp(avmsg, "jpeg: ", 6) ? avmsg : avmsg + 6;
        rc = dfm_fail(DFM_E_FORMAT, "jpeg: %s (libavcodec: %s)", tjmsg, am);
    }
    return rc;
}

int dfm_image_decode(const uint8_t *data, size_t len, uint64_t max_pixels, dfm_image *out,
                     dfm_image_meta *meta)
{
    return dfm_image_decode_ex(data, len, max_pixels, 0, out, meta);
}

int dfm_image_decode_ex(const uint8_t *data, size_t len, uint64_t max_pixels, int flags, dfm_image *out,
                        dfm_image_meta *meta)
{
    return dfm_image_decode_min(data, len, max_pixels, flags, 0, 0, out, meta);
}

int dfm_image_peek_size(const uint8_t *data, size_t len, int *w, int *h)
{
    int64_t pw = 0, ph = 0;
    dfm_img_type t = dfm_image_sniff(data, len);
    if (t == DFM_IMG_JPEG) {
        tjhandle tj = tjInitDecompress();
        int jw = 0, jh = 0, sub = 0, cs = 0;
        int ok = tj && tjDecompressHeader3(tj, data, (unsigned long)len, &jw, &jh, &sub, &cs) == 0 && jw > 0 && jh > 0;
        if (tj) tjDestroy(tj);
        if (!ok) return 0;
        pw = jw;
        ph = jh;
    } else if (t == DFM_IMG_UNKNOWN || peek_size(t, data, len, &pw, &ph) != 1 || pw <= 0 || ph <= 0 ||
               pw > INT_MAX || ph > INT_MAX) {
        return 0; /* a header error is the decode's to report */
    }
    const int tr = dfm_image_exif_orientation(data, len) >= 5; /* turned a quarter: sides swap */
    *w = (int)(tr ? ph : pw);
    *h = (int)(tr ? pw : ph);
    return 1;
}

int dfm_image_decode_min(const uint8_t *data, size_t len, uint64_t max_pixels, int flags, int min_w, int min_h,
                         dfm_image *out, dfm_image_meta *meta)
{
    if (!out) return dfm_fail(DFM_E_ARG, "image decode: no output");
    memset(out, 0, sizeof *out);
    dfm_image_meta m = {.orientation = 1, .bit_depth = 8, .scale_denom = 1};
    pthread_once(&g_av_quiet_once, av_quiet);
    if (!data || len == 0) return dfm_fail(DFM_E_FORMAT, "empty image data");
    m.type = dfm_image_sniff(data, len);
    int rc;
    switch (m.type) {
    case DFM_IMG_JPEG: rc = decode_jpeg(data, len, max_pixels, flags, min_w, min_h, out, &m); break;
    case DFM_IMG_PNG:
    case DFM_IMG_WEBP:
    case DFM_IMG_BMP: rc = decode_av(data, len, m.type, max_pixels, out, &m); break;
    default: return dfm_fail(DFM_E_FORMAT, "not an image we know (no JPEG, PNG, WebP or BMP signature)");
    }
    if (rc < 0) return rc;
    m.orientation = dfm_image_exif_orientation(data, len); /* every format; 1 for BMP */
    if (m.orientation != 1) {
        uint8_t *rot;
        int rw, rh;
        if ((rc = dfm_rgb_orient(out->rgb, out->w, out->h, m.orientation, &rot, &rw, &rh)) < 0) {
            dfm_image_free(out);
            return rc;
        }
        free(out->rgb);
        out->rgb = rot;
        out->w = rw;
        out->h = rh;
    }
    /* the displayed full-scale size: the stored one, transposed by orientations 5..8 */
    const int tr = m.orientation >= 5;
    m.full_w = m.scale_denom > 1 ? (tr ? m.src_h : m.src_w) : out->w;
    m.full_h = m.scale_denom > 1 ? (tr ? m.src_w : m.src_h) : out->h;
    if (meta) *meta = m;
    return 0;
}
