/* encode.c — RGB frames to MP4 (libx264), WebP (libwebp) and PNG through FFmpeg.
 *
 * What it is: still images (PNG, one WebP frame) are one packet of libavcodec's png or libwebp
 * encoder, which is a whole file, written to PATH.tmp, fsync'd and renamed. An animated WebP is
 * put together here from one still WebP per frame (RIFF container, VP8X + ANIM + ANMF chunks, as
 * the WebP container spec lays them out): every frame a whole canvas, so the file plays the same
 * everywhere and its durations are exactly ours; the frames are independent, so they are encoded
 * on a thread pool (base/pool.h) and appended in order. FFmpeg's libwebp_anim encoder was the other
 * road: it keeps only the changed rectangle of each frame and blends it (smaller files), but
 * libwebp folds a frame identical to the one before into that one's duration (the frame count
 * changes), FFmpeg 5 leaves the last frame's duration to libwebp's guess, none of it can be set
 * through FFmpeg, and the repo's decoders could not check the result (no animated WebP decoding
 * in this FFmpeg). An MP4 is libx264 into libavformat's mp4 muxer with movflags +faststart (the muxer
 * rewrites PATH.tmp with the moov box first when it closes it).
 * Not here: decoding (image.h, video.h), audio, .npy.
 * ref: FFmpeg doc/examples/encode_video.c and mux.c (the send/receive loop, the flush, the trailer)
 * ref: https://developers.google.com/speed/webp/docs/riff_container (Extended File Format)
 */
#include "media/encode.h"

#include "base/buf.h"
#include "base/error.h"
#include "base/pool.h"

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libavutil/log.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static pthread_once_t g_quiet_once = PTHREAD_ONCE_INIT;
static void av_quiet(void) { av_log_set_level(AV_LOG_QUIET); }

static int av_fail(int code, int averr, const char *what)
{
    char e[AV_ERROR_MAX_STRING_SIZE];
    av_strerror(averr, e, sizeof e);
    return dfm_fail(code, "%s: %s", what, e);
}

/* Debian and Ubuntu build libavcodec with libx264 and libwebp (and zlib, which the png encoder
 * needs); other builds (a minimal static FFmpeg, Fedora's ffmpeg-free) may leave them out. */
#define AVC_STR2(x) #x
#define AVC_STR(x) AVC_STR2(x)
static const AVCodec *find_encoder(const char *name, const char *what)
{
    const AVCodec *c = avcodec_find_encoder_by_name(name);
    if (!c && !strcmp(name, "png"))
        dfm_fail(DFM_E_UNSUPPORTED, "this FFmpeg has no 'png' encoder for %s (built without zlib): install your "
                 "distribution's libavcodec (Debian/Ubuntu: libavcodec" AVC_STR(LIBAVCODEC_VERSION_MAJOR) ")", what);
    else if (!c)
        dfm_fail(DFM_E_UNSUPPORTED, "this FFmpeg has no '%s' encoder for %s: it needs an FFmpeg built with "
                 "--enable-%s (Debian/Ubuntu: libavcodec" AVC_STR(LIBAVCODEC_VERSION_MAJOR) " or libavcodec-extra"
                 AVC_STR(LIBAVCODEC_VERSION_MAJOR) "; Fedora: ffmpeg-libs from RPM Fusion)", name, what, name);
    return c;
}

static int check_dims(int nframes, int height, int width)
{
    if (nframes < 1) return dfm_fail(DFM_E_ARG, "encode: %d frames (need at least 1)", nframes);
    if (height < 1 || width < 1) return dfm_fail(DFM_E_ARG, "encode: invalid frame size %dx%d", width, height);
    if (height > DFM_ENCODE_MAX_SIDE || width > DFM_ENCODE_MAX_SIDE)
        return dfm_fail(DFM_E_LIMIT, "encode: %dx%d frames are over %d pixels on a side", width, height,
                        DFM_ENCODE_MAX_SIDE);
    if ((size_t)nframes > SIZE_MAX / ((size_t)height * width * 3))
        return dfm_fail(DFM_E_LIMIT, "encode: %d frames of %dx%d are too large", nframes, width, height);
    return 0;
}

static int resolve_opts(const dfm_encode_opts *o, dfm_encode_opts *r)
{
    *r = o ? *o : (dfm_encode_opts){0};
    if (r->fps == 0) r->fps = DFM_ENCODE_FPS;
    if (r->crf == 0) r->crf = DFM_ENCODE_CRF;
    if (r->fps < 1 || r->fps > 1000) return dfm_fail(DFM_E_ARG, "encode: fps %d is outside 1..1000", r->fps);
    if (r->crf < 1 || r->crf > 51) return dfm_fail(DFM_E_ARG, "encode: crf %d is outside 1..51", r->crf);
    if (r->webp_quality < 0 || r->webp_quality > 100)
        return dfm_fail(DFM_E_ARG, "encode: WebP quality %d is outside 0..100 (0 = lossless)", r->webp_quality);
    if (r->grid_cols < 0) return dfm_fail(DFM_E_ARG, "encode: grid_cols %d is negative", r->grid_cols);
    return 0;
}

/* ---- files: PATH.tmp, fsync, rename -------------------------------------------------------- */

static char *tmp_name(const char *path)
{
    size_t n = strlen(path);
    char *t = malloc(n + 5);
    if (t) memcpy(t, path, n), memcpy(t + n, ".tmp", 5);
    return t;
}

static int fsync_file(const char *p)
{
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return dfm_fail(DFM_E_IO, "cannot reopen '%s': %s", p, strerror(errno));
    int r = fsync(fd), e = errno;
    close(fd);
    if (r && e != EINVAL && e != EROFS) return dfm_fail(DFM_E_IO, "cannot fsync '%s': %s", p, strerror(e));
    return 0;
}

/* tmp is complete: fsync it and rename it to path (removed on failure). */
static int publish(const char *tmp, const char *path)
{
    int rc = fsync_file(tmp);
    if (!rc && rename(tmp, path)) rc = dfm_fail(DFM_E_IO, "cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
    if (rc) unlink(tmp);
    return rc;
}

/* ---- still images: one packet of the png or libwebp encoder ------------------------------- */

/* rgb [h, w, 3] through encoder `name` (png: RGB24; libwebp: RGB32, i.e. ARGB words, opaque).
 * webp_quality as in the options. *out, *len: the whole file, malloc'd. */
static int encode_still(const char *name, const uint8_t *rgb, int h, int w, int webp_quality, uint8_t **out,
                        size_t *len)
{
    pthread_once(&g_quiet_once, av_quiet);
    *out = NULL;
    *len = 0;
    int webp = !strcmp(name, "libwebp");
    const AVCodec *codec = find_encoder(name, webp ? "WebP" : "PNG");
    if (!codec) return DFM_E_UNSUPPORTED;
    AVCodecContext *c = avcodec_alloc_context3(codec);
    AVFrame *f = av_frame_alloc();
    AVPacket *pkt = av_packet_alloc();
    AVDictionary *d = NULL;
    int rc = 0, r;
    if (!c || !f || !pkt) {
        rc = dfm_fail(DFM_E_NOMEM, "%s: out of memory", name);
        goto done;
    }
    c->width = w;
    c->height = h;
    c->pix_fmt = webp ? AV_PIX_FMT_RGB32 : AV_PIX_FMT_RGB24;
    c->time_base = (AVRational){1, 25};
    c->thread_count = 1;
    if (webp) {
        if (webp_quality == 0) av_dict_set(&d, "lossless", "1", 0);
        else av_dict_set_int(&d, "quality", webp_quality, 0);
    } else {
        av_dict_set(&d, "pred", "mixed", 0); /* the best PNG filter row by row */
    }
    if ((r = avcodec_open2(c, codec, &d)) < 0) {
        rc = av_fail(DFM_E_UNSUPPORTED, r, webp ? "cannot open the WebP encoder" : "cannot open the PNG encoder");
        goto done;
    }
    f->format = c->pix_fmt;
    f->width = w;
    f->height = h;
    if ((r = av_frame_get_buffer(f, 0)) < 0) {
        rc = av_fail(DFM_E_NOMEM, r, "frame buffer");
        goto done;
    }
    for (int y = 0; y < h; y++) {
        const uint8_t *s = rgb + (size_t)y * w * 3;
        uint8_t *dst = f->data[0] + (size_t)y * f->linesize[0];
        if (webp) {
            for (int x = 0; x < w; x++) {
                uint32_t px = 0xff000000u | (uint32_t)s[3 * x] << 16 | (uint32_t)s[3 * x + 1] << 8 | s[3 * x + 2];
                memcpy(dst + 4 * x, &px, 4); /* RGB32 is a native-endian ARGB word */
            }
        } else {
            memcpy(dst, s, (size_t)w * 3);
        }
    }
    f->pts = 0;
    if ((r = avcodec_send_frame(c, f)) < 0 || (r = avcodec_send_frame(c, NULL)) < 0 ||
        (r = avcodec_receive_packet(c, pkt)) < 0) {
        rc = av_fail(DFM_E_FORMAT, r, webp ? "WebP encode failed" : "PNG encode failed");
        goto done;
    }
    if (!(*out = malloc(pkt->size ? (size_t)pkt->size : 1))) {
        rc = dfm_fail(DFM_E_NOMEM, "out of memory");
        goto done;
    }
    memcpy(*out, pkt->data, pkt->size);
    *len = pkt->size;
done:
    av_dict_free(&d);
    av_packet_free(&pkt);
    av_frame_free(&f);
    avcodec_free_context(&c);
    return rc;
}

int dfm_encode_png_mem(const uint8_t *rgb, int height, int width, uint8_t **png, size_t *len)
{
    if (!png || !len || !rgb) return dfm_fail(DFM_E_ARG, "png encode: no image or no output");
    *png = NULL;
    *len = 0;
    if (height < 1 || width < 1) return dfm_fail(DFM_E_ARG, "png encode: invalid size %dx%d", width, height);
    if (av_image_check_size(width, height, 0, NULL) < 0)
        return dfm_fail(DFM_E_LIMIT, "png encode: %dx%d is too large", width, height);
    return encode_still("png", rgb, height, width, 0, png, len);
}

/* ---- animated WebP: the RIFF container around one still WebP per frame --------------------- */

static int put_le(dfm_buf *b, uint32_t v, int bytes)
{
    uint8_t t[4];
    for (int i = 0; i < bytes; i++) t[i] = (uint8_t)(v >> (8 * i));
    return dfm_buf_append(b, t, (size_t)bytes);
}

static uint32_t get_le32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }

/* One frame of an animated WebP: encoded on a pool worker, appended in order on the caller. */
typedef struct {
    const uint8_t *rgb;
    int h, w, quality;
    uint8_t *webp; /* the still WebP file */
    size_t len;
    int rc;
    char msg[256]; /* the worker's message (messages are per thread) */
} webp_job;

typedef struct {
    dfm_buf *b;
    int h, w, fps, next; /* next: the index of the frame to append */
    int alpha, oom;
} webp_anim;

static void webp_run(void *job)
{
    webp_job *j = job;
    j->rc = encode_still("libwebp", j->rgb, j->h, j->w, j->quality, &j->webp, &j->len);
    if (j->rc) snprintf(j->msg, sizeof j->msg, "%s", dfm_errmsg());
}

static void webp_drop(void *job)
{
    webp_job *j = job;
    free(j->webp);
    free(j);
}

/* Append frame a->next as an ANMF chunk: the whole canvas, shown for round((i+1)*1000/fps) -
 * round(i*1000/fps) ms, not blended, not disposed; its image chunks (ALPH, VP8, VP8L) are the
 * encoder's file without "RIFF" size "WEBP" (and without a VP8X header if it wrote one). */
static int webp_done(void *ctx, void *job)
{
    webp_anim *a = ctx;
    webp_job *j = job;
    dfm_buf *b = a->b;
    int rc = j->rc ? dfm_fail(j->rc, "%s", j->msg) : 0, i = a->next++;
    const uint8_t *one = j->webp;
    size_t len = j->len;
    if (!rc && (len < 12 || memcmp(one, "RIFF", 4) || memcmp(one + 8, "WEBP", 4)))
        rc = dfm_fail(DFM_E_FORMAT, "libwebp returned something that is not a WebP file");
    if (!rc) {
        size_t anmf = b->len;
        uint32_t t0 = (uint32_t)floor(i * 1000.0 / a->fps + 0.5), t1 = (uint32_t)floor((i + 1) * 1000.0 / a->fps + 0.5);
        a->oom |= dfm_buf_append(b, "ANMF\0\0\0\0", 8);
        a->oom |= put_le(b, 0, 3); /* x / 2 */
        a->oom |= put_le(b, 0, 3); /* y / 2 */
        a->oom |= put_le(b, (uint32_t)a->w - 1, 3);
        a->oom |= put_le(b, (uint32_t)a->h - 1, 3);
        a->oom |= put_le(b, t1 - t0, 3);
        a->oom |= put_le(b, 2, 1); /* reserved 6 bits, blending bit 1: do not blend, disposal bit 0: none */
        for (size_t p = 12; p + 8 <= len && !rc;) {
            uint32_t csz = get_le32(one + p + 4);
            size_t whole = 8 + (size_t)csz + (csz & 1);
            if (whole > len - p) {
                rc = dfm_fail(DFM_E_FORMAT, "libwebp returned a cut WebP chunk");
                break;
            }
            if (!memcmp(one + p, "ALPH", 4)) a->alpha = 1;
            if (!memcmp(one + p, "ALPH", 4) || !memcmp(one + p, "VP8 ", 4) || !memcmp(one + p, "VP8L", 4))
                a->oom |= dfm_buf_append(b, one + p, whole);
            p += whole;
        }
        if (!rc && a->oom) rc = dfm_fail(DFM_E_NOMEM, "out of memory");
        if (!rc) {
            uint32_t asz = (uint32_t)(b->len - anmf - 8);
            for (int k = 0; k < 4; k++) b->data[anmf + 4 + k] = (uint8_t)(asz >> (8 * k));
            if (b->len > UINT32_MAX - 16) rc = dfm_fail(DFM_E_LIMIT, "animated WebP: over 4 GiB");
        }
    }
    webp_drop(j);
    return rc;
}

static int write_webp(const char *path, const uint8_t *frames, int n, int h, int w, const dfm_encode_opts *o)
{
    const size_t fsz = (size_t)h * w * 3;
    if (n == 1) {
        uint8_t *one = NULL;
        size_t len = 0;
        int rc = encode_still("libwebp", frames, h, w, o->webp_quality, &one, &len);
        if (!rc) rc = dfm_write_file_atomic(path, one, len);
        free(one);
        return rc;
    }
    dfm_buf b = {0};
    webp_anim a = {.b = &b, .h = h, .w = w, .fps = o->fps};
    /* RIFF size and VP8X flags are filled in at the end. */
    a.oom |= dfm_buf_append(&b, "RIFF\0\0\0\0WEBPVP8X", 16);
    a.oom |= put_le(&b, 10, 4);
    a.oom |= put_le(&b, 0, 4); /* flags + 3 reserved bytes */
    a.oom |= put_le(&b, (uint32_t)w - 1, 3);
    a.oom |= put_le(&b, (uint32_t)h - 1, 3);
    a.oom |= dfm_buf_append(&b, "ANIM", 4);
    a.oom |= put_le(&b, 6, 4);
    a.oom |= put_le(&b, 0xffffffffu, 4); /* background: opaque white (unused: every frame covers the canvas) */
    a.oom |= put_le(&b, 0, 2);           /* loop count: 0 = forever */
    int threads = o->threads;
    if (threads <= 0) {
        long nc = sysconf(_SC_NPROCESSORS_ONLN);
        threads = nc < 1 ? 1 : nc > 64 ? 64 : (int)nc;
    }
    if (threads > n) threads = n;
    dfm_pool *pool = NULL;
    int rc = a.oom ? dfm_fail(DFM_E_NOMEM, "out of memory")
                   : dfm_pool_new(&pool, threads, 2 * threads, webp_run, webp_done, webp_drop, &a);
    if (rc && !a.oom) rc = dfm_fail(rc, "out of memory for the encoder threads");
    for (int i = 0; i < n && !rc; i++) {
        webp_job *j = calloc(1, sizeof *j);
        if (!j) {
            rc = dfm_fail(DFM_E_NOMEM, "out of memory");
            break;
        }
        *j = (webp_job){.rgb = frames + i * fsz, .h = h, .w = w, .quality = o->webp_quality};
        rc = dfm_pool_submit(pool, j);
    }
    if (pool) {
        int r = dfm_pool_finish(pool);
        if (!rc) rc = r;
    }
    if (!rc) {
        uint32_t riff = (uint32_t)(b.len - 8);
        for (int k = 0; k < 4; k++) b.data[4 + k] = (uint8_t)(riff >> (8 * k));
        b.data[20] = 0x02 | (a.alpha ? 0x10 : 0); /* animation (+ alpha) */
        rc = dfm_write_file_atomic(path, b.data, b.len);
    }
    dfm_buf_free(&b);
    return rc;
}

/* ---- MP4: libx264 + the mp4 muxer ---------------------------------------------------------- */

void dfm_encode_mp4_size(int height, int width, int *mp4_height, int *mp4_width)
{
    if (mp4_height) *mp4_height = height + (height & 1);
    if (mp4_width) *mp4_width = width + (width & 1);
}

/* Send frame (NULL: flush) and write every packet the encoder has ready. */
static int drain(AVCodecContext *c, AVFormatContext *oc, AVStream *st, const AVFrame *f, AVPacket *pkt)
{
    int r = avcodec_send_frame(c, f);
    if (r < 0) return av_fail(DFM_E_FORMAT, r, "H.264 encode failed");
    for (;;) {
        r = avcodec_receive_packet(c, pkt);
        if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) return 0;
        if (r < 0) return av_fail(DFM_E_FORMAT, r, "H.264 encode failed");
        av_packet_rescale_ts(pkt, c->time_base, st->time_base);
        pkt->stream_index = st->index;
        r = av_interleaved_write_frame(oc, pkt); /* takes the packet's reference */
        if (r < 0) return av_fail(DFM_E_IO, r, "cannot write the MP4");
    }
}

static int write_mp4(const char *path, const uint8_t *frames, int n, int h, int w, const dfm_encode_opts *o)
{
    pthread_once(&g_quiet_once, av_quiet);
    const AVCodec *codec = find_encoder("libx264", "H.264/MP4");
    if (!codec) return DFM_E_UNSUPPORTED;
    int eh, ew;
    dfm_encode_mp4_size(h, w, &eh, &ew);
    char *tmp = tmp_name(path);
    AVFormatContext *oc = NULL;
    AVCodecContext *c = NULL;
    AVFrame *f = NULL;
    AVPacket *pkt = NULL;
    AVDictionary *d = NULL;
    struct SwsContext *sws = NULL;
    uint8_t *pad = NULL;
    int rc = 0, r, opened = 0;
    if (!tmp) return dfm_fail(DFM_E_NOMEM, "out of memory");
    if ((r = avformat_alloc_output_context2(&oc, NULL, "mp4", tmp)) < 0 || !oc) {
        rc = r == AVERROR(ENOMEM) ? dfm_fail(DFM_E_NOMEM, "out of memory")
                                  : dfm_fail(DFM_E_UNSUPPORTED, "this FFmpeg has no 'mp4' muxer (libavformat)");
        goto done;
    }
    AVStream *st = avformat_new_stream(oc, NULL);
    c = avcodec_alloc_context3(codec);
    f = av_frame_alloc();
    pkt = av_packet_alloc();
    pad = malloc((size_t)eh * ew * 3);
    if (!st || !c || !f || !pkt || !pad) {
        rc = dfm_fail(DFM_E_NOMEM, "out of memory");
        goto done;
    }
    c->width = ew;
    c->height = eh;
    c->pix_fmt = AV_PIX_FMT_YUV420P;
    c->time_base = (AVRational){1, o->fps};
    c->framerate = (AVRational){o->fps, 1};
    c->sample_aspect_ratio = (AVRational){1, 1};
    c->color_range = AVCOL_RANGE_MPEG;
    c->colorspace = AVCOL_SPC_BT709;
    c->color_primaries = AVCOL_PRI_BT709;
    c->color_trc = AVCOL_TRC_BT709;
    c->thread_count = 4; /* fixed: x264's output depends on its thread count */
    if (oc->oformat->flags & AVFMT_GLOBALHEADER) c->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    av_dict_set_int(&d, "crf", o->crf, 0);
    av_dict_set(&d, "preset", "medium", 0);
    av_dict_set(&d, "profile", "high", 0);
    if ((r = avcodec_open2(c, codec, &d)) < 0) {
        rc = av_fail(DFM_E_UNSUPPORTED, r, "cannot open the libx264 encoder");
        goto done;
    }
    av_dict_free(&d);
    if ((r = avcodec_parameters_from_context(st->codecpar, c)) < 0) {
        rc = av_fail(DFM_E_NOMEM, r, "stream parameters");
        goto done;
    }
    st->time_base = c->time_base;
    st->avg_frame_rate = c->framerate;
    if ((r = avio_open(&oc->pb, tmp, AVIO_FLAG_WRITE)) < 0) {
        char e[AV_ERROR_MAX_STRING_SIZE];
        av_strerror(r, e, sizeof e);
        rc = dfm_fail(DFM_E_IO, "cannot create '%s': %s", tmp, e);
        goto done;
    }
    opened = 1;
    av_dict_set(&d, "movflags", "+faststart", 0);
    if ((r = avformat_write_header(oc, &d)) < 0) {
        rc = av_fail(DFM_E_IO, r, "cannot write the MP4 header");
        goto done;
    }
    /* RGB (full range) -> BT.709 limited-range 4:2:0; chroma from the full-resolution input. */
    sws = sws_getContext(ew, eh, AV_PIX_FMT_RGB24, ew, eh, AV_PIX_FMT_YUV420P,
                         SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INP, NULL, NULL, NULL);
    if (!sws) {
        rc = dfm_fail(DFM_E_UNSUPPORTED, "no RGB to yuv420p conversion in libswscale");
        goto done;
    }
    sws_setColorspaceDetails(sws, sws_getCoefficients(SWS_CS_ITU709), 1, sws_getCoefficients(SWS_CS_ITU709), 0, 0,
                             1 << 16, 1 << 16);
    f->format = c->pix_fmt;
    f->width = ew;
    f->height = eh;
    f->color_range = c->color_range;
    f->colorspace = c->colorspace;
    f->color_primaries = c->color_primaries;
    f->color_trc = c->color_trc;
    if ((r = av_frame_get_buffer(f, 0)) < 0) {
        rc = av_fail(DFM_E_NOMEM, r, "frame buffer");
        goto done;
    }
    const size_t fsz = (size_t)h * w * 3, prow = (size_t)ew * 3;
    for (int i = 0; i < n && !rc; i++) {
        const uint8_t *src = frames + i * fsz;
        for (int y = 0; y < eh; y++) { /* pad: repeat the last column, then the last row */
            uint8_t *d_ = pad + y * prow;
            if (y < h) {
                memcpy(d_, src + (size_t)y * w * 3, (size_t)w * 3);
                if (ew > w) memcpy(d_ + (size_t)w * 3, d_ + (size_t)(w - 1) * 3, 3);
            } else {
                memcpy(d_, d_ - prow, prow);
            }
        }
        if ((r = av_frame_make_writable(f)) < 0) {
            rc = av_fail(DFM_E_NOMEM, r, "frame buffer");
            break;
        }
        const uint8_t *sp[1] = {pad};
        const int ss[1] = {(int)prow};
        sws_scale(sws, sp, ss, 0, eh, f->data, f->linesize);
        f->pts = i;
        rc = drain(c, oc, st, f, pkt);
    }
    if (!rc) rc = drain(c, oc, st, NULL, pkt);
    if (!rc && (r = av_write_trailer(oc)) < 0) rc = av_fail(DFM_E_IO, r, "cannot finish the MP4");
    if (!rc && (r = avio_closep(&oc->pb)) < 0) rc = av_fail(DFM_E_IO, r, "cannot close the MP4");
    if (!rc) rc = publish(tmp, path);
done:
    if (oc && oc->pb) avio_closep(&oc->pb);
    if (rc && opened) unlink(tmp);
    sws_freeContext(sws);
    av_dict_free(&d);
    av_packet_free(&pkt);
    av_frame_free(&f);
    avcodec_free_context(&c);
    avformat_free_context(oc);
    free(pad);
    free(tmp);
    return rc;
}

/* ---- the entry points ---------------------------------------------------------------------- */

int dfm_encode_frames(const char *path, const uint8_t *frames, int nframes, int height, int width,
                      const dfm_encode_opts *o)
{
    dfm_encode_opts r;
    int rc;
    if (!path || !*path || !frames) return dfm_fail(DFM_E_ARG, "encode: no path or no frames");
    if ((rc = resolve_opts(o, &r)) || (rc = check_dims(nframes, height, width))) return rc;
    const char *slash = strrchr(path, '/'), *dot = strrchr(path, '.');
    const char *ext = dot && (!slash || dot > slash) ? dot : "";
    if (!strcasecmp(ext, ".mp4")) return write_mp4(path, frames, nframes, height, width, &r);
    if (!strcasecmp(ext, ".webp")) return write_webp(path, frames, nframes, height, width, &r);
    if (!strcasecmp(ext, ".png")) {
        if (nframes != 1)
            return dfm_fail(DFM_E_ARG, "a PNG holds one frame, not %d (write .mp4 or .webp, or a contact sheet "
                            "with dfm_encode_grid)", nframes);
        uint8_t *png = NULL;
        size_t len = 0;
        if (!(rc = dfm_encode_png_mem(frames, height, width, &png, &len))) rc = dfm_write_file_atomic(path, png, len);
        free(png);
        return rc;
    }
    if (!strcasecmp(ext, ".npy"))
        return dfm_fail(DFM_E_ARG, "'.npy' is not an encoded format (write it with io/npy.h); supported: .mp4, "
                        ".webp, .png");
    return dfm_fail(DFM_E_ARG, "unknown output extension '%s' (supported: .mp4, .webp, .png)", ext);
}

int dfm_encode_tile(const uint8_t *frames, int nframes, int height, int width, int grid_cols, uint8_t **sheet,
                    int *sheet_h, int *sheet_w)
{
    int rc;
    if (!frames || !sheet || !sheet_h || !sheet_w) return dfm_fail(DFM_E_ARG, "tile: no frames or no output");
    *sheet = NULL;
    if ((rc = check_dims(nframes, height, width))) return rc;
    if (grid_cols < 0) return dfm_fail(DFM_E_ARG, "tile: grid_cols %d is negative", grid_cols);
    int cols = grid_cols;
    if (cols == 0) {
        cols = (int)sqrt((double)nframes);
        while (cols * cols < nframes) cols++;
    }
    if (cols > nframes) cols = nframes;
    int rows = (nframes + cols - 1) / cols;
    const int g = DFM_ENCODE_GUTTER;
    int64_t sw = (int64_t)cols * width + (int64_t)(cols - 1) * g, sh = (int64_t)rows * height + (int64_t)(rows - 1) * g;
    if (sw > INT_MAX || sh > INT_MAX || av_image_check_size((unsigned)sw, (unsigned)sh, 0, NULL) < 0)
        return dfm_fail(DFM_E_LIMIT, "tile: a %lldx%lld sheet is too large", (long long)sw, (long long)sh);
    uint8_t *s = calloc((size_t)sw * sh, 3);
    if (!s) return dfm_fail(DFM_E_NOMEM, "tile: out of memory for %lldx%lld", (long long)sw, (long long)sh);
    const size_t fsz = (size_t)height * width * 3;
    for (int i = 0; i < nframes; i++) {
        size_t x0 = (size_t)(i % cols) * (width + g), y0 = (size_t)(i / cols) * (height + g);
        for (int y = 0; y < height; y++)
            memcpy(s + ((y0 + y) * (size_t)sw + x0) * 3, frames + i * fsz + (size_t)y * width * 3, (size_t)width * 3);
    }
    *sheet = s;
    *sheet_h = (int)sh;
    *sheet_w = (int)sw;
    return 0;
}

int dfm_encode_grid(const char *path, const uint8_t *frames, int nframes, int height, int width,
                    const dfm_encode_opts *o)
{
    dfm_encode_opts r;
    int rc, sh = 0, sw = 0;
    if (!path || !*path) return dfm_fail(DFM_E_ARG, "grid: no path");
    if ((rc = resolve_opts(o, &r))) return rc;
    uint8_t *sheet = NULL, *png = NULL;
    size_t len = 0;
    if (!(rc = dfm_encode_tile(frames, nframes, height, width, r.grid_cols, &sheet, &sh, &sw)) &&
        !(rc = dfm_encode_png_mem(sheet, sh, sw, &png, &len)))
        rc = dfm_write_file_atomic(path, png, len);
    free(sheet);
    free(png);
    return rc;
}
