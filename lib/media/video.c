/* video.c — video decode through FFmpeg (libavformat + libavcodec + libswscale) to packed RGB.
 *
 * What it is: open a file, pick the best video stream, set up a multithreaded decoder (frame +
 * slice threads), report size, exact frame count, frame rate and duration; then decode forward
 * once, keeping the frames whose index (in the order the decoder outputs them, i.e. display
 * order) is asked for, and stop as soon as the last one is in. The display matrix is honoured:
 * a clip tagged as rotated by 90/180/270 degrees comes out turned the way players show it
 * (info.width/height are the displayed size). A request for an index before the current
 * position reopens the file (no seeking: exact indices matter more than speed there).
 * Not here: choosing frames (data/frames.h), resizing (resample.h), audio, seeking by time,
 * hardware decoders, reading from memory (AVIO callbacks).
 * ref: FFmpeg doc/examples/demux_decode.c (the send/receive loop and the flush at EOF)
 */
#include "media/video.h"

#include "base/buf.h"
#include "base/error.h"
#include "media/image.h"

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/display.h>
#include <libavutil/log.h>
#include <libswscale/swscale.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct dfm_video {
    char *path;
    int threads;
    uint64_t max_pixels;
    AVFormatContext *fmt;
    AVCodecContext *dec;
    int stream;
    AVPacket *pkt;
    AVFrame *frame;
    struct SwsContext *sws;
    int cw, ch;          /* stored (coded) size, before rotation */
    int orientation;     /* EXIF-style orientation from the display matrix, 1 = none */
    int64_t next_index;  /* index of the next frame the decoder will hand out */
    int flushing, ended; /* sent the NULL packet / decoder drained */
    dfm_video_info info;
};

static pthread_once_t g_av_quiet_once = PTHREAD_ONCE_INIT;
static void av_quiet(void) { av_log_set_level(AV_LOG_QUIET); }

static int av_fail(int code, int averr, const char *fmt_, const char *path)
{
    char e[AV_ERROR_MAX_STRING_SIZE];
    av_strerror(averr, e, sizeof e);
    return dfm_fail(code, fmt_, path, e);
}

static void close_streams(dfm_video *v)
{
    avcodec_free_context(&v->dec);
    avformat_close_input(&v->fmt);
    v->next_index = 0;
    v->flushing = v->ended = 0;
}

/* Open the container and the decoder; fills v->stream, v->cw/ch. */
static int open_streams(dfm_video *v)
{
    int r = avformat_open_input(&v->fmt, v->path, NULL, NULL);
    if (r < 0) {
        int code = r == AVERROR(ENOENT) || r == AVERROR(EACCES) || r == AVERROR(EISDIR) ? DFM_E_IO : DFM_E_FORMAT;
        return av_fail(code, r, "cannot open video '%s': %s", v->path);
    }
    if ((r = avformat_find_stream_info(v->fmt, NULL)) < 0)
        return av_fail(DFM_E_FORMAT, r, "no stream info in '%s': %s", v->path);
    const AVCodec *codec = NULL;
    r = av_find_best_stream(v->fmt, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
    if (r == AVERROR_DECODER_NOT_FOUND)
        return dfm_fail(DFM_E_UNSUPPORTED, "no decoder for the video stream of '%s'", v->path);
    if (r < 0) return dfm_fail(DFM_E_FORMAT, "no video stream in '%s'", v->path);
    v->stream = r;
    AVStream *st = v->fmt->streams[r];
    if (st->codecpar->width <= 0 || st->codecpar->height <= 0)
        return dfm_fail(DFM_E_FORMAT, "video stream of '%s' has no frame size", v->path);
    v->cw = st->codecpar->width;
    v->ch = st->codecpar->height;
    if (v->max_pixels && (uint64_t)v->cw * v->ch > v->max_pixels)
        return dfm_fail(DFM_E_LIMIT, "video '%s': %dx%d frames are over the limit of %llu pixels", v->path,
                        v->cw, v->ch, (unsigned long long)v->max_pixels);
    if (!(v->dec = avcodec_alloc_context3(codec))) return dfm_fail(DFM_E_NOMEM, "out of memory");
    if ((r = avcodec_parameters_to_context(v->dec, st->codecpar)) < 0)
        return av_fail(DFM_E_FORMAT, r, "bad codec parameters in '%s': %s", v->path);
    v->dec->thread_count = v->threads > 0 ? v->threads : 0; /* 0: one per core */
    v->dec->thread_type = FF_THREAD_FRAME | FF_THREAD_SLICE;
    v->dec->pkt_timebase = st->time_base;
    /* slack: libavcodec checks its limit on the stride-aligned width; ours is exact, above */
    if (v->max_pixels)
        v->dec->max_pixels = v->max_pixels > INT64_MAX / 4 ? INT64_MAX : (int64_t)v->max_pixels * 2 + 65536;
    if ((r = avcodec_open2(v->dec, codec, NULL)) < 0)
        return av_fail(DFM_E_UNSUPPORTED, r, "cannot open the decoder for '%s': %s", v->path);
    v->next_index = 0;
    v->flushing = v->ended = 0;
    return 0;
}

/* Rotation from the display matrix as an EXIF orientation (ffmpeg's autorotate semantics). */
static int stream_orientation(const AVStream *st)
{
    const uint8_t *m = av_stream_get_side_data(st, AV_PKT_DATA_DISPLAYMATRIX, NULL);
    if (!m) return 1;
    double theta = -av_display_rotation_get((const int32_t *)m); /* ref: fftools cmdutils get_rotation */
    if (isnan(theta)) return 1;
    theta -= 360 * floor(theta / 360 + 0.9 / 360);
    if (fabs(theta - 90) < 1) return 6;  /* turn clockwise */
    if (fabs(theta - 180) < 1) return 3;
    if (fabs(theta - 270) < 1) return 8; /* turn counter-clockwise */
    return 1;                            /* flips and odd angles: left as stored */
}

static int count_frames(dfm_video *v, int64_t *n)
{
    int64_t c = 0;
    int r;
    while ((r = av_read_frame(v->fmt, v->pkt)) >= 0) {
        if (v->pkt->stream_index == v->stream) c++;
        av_packet_unref(v->pkt);
    }
    *n = c;
    return 0;
}

int dfm_video_open(dfm_video **out, const char *path, int threads, uint64_t max_pixels)
{
    if (!out || !path) return dfm_fail(DFM_E_ARG, "video open: no path");
    *out = NULL;
    pthread_once(&g_av_quiet_once, av_quiet);
    dfm_video *v = calloc(1, sizeof *v);
    if (!v) return dfm_fail(DFM_E_NOMEM, "out of memory");
    v->threads = threads;
    v->max_pixels = max_pixels;
    v->path = strdup(path);
    v->pkt = av_packet_alloc();
    v->frame = av_frame_alloc();
    int rc;
    if (!v->path || !v->pkt || !v->frame) {
        rc = dfm_fail(DFM_E_NOMEM, "out of memory");
        goto fail;
    }
    if ((rc = open_streams(v)) < 0) goto fail;
    AVStream *st = v->fmt->streams[v->stream];
    v->orientation = stream_orientation(st);
    dfm_video_info *in = &v->info;
    in->width = v->orientation >= 5 ? v->ch : v->cw;
    in->height = v->orientation >= 5 ? v->cw : v->ch;
    AVRational fr = av_guess_frame_rate(v->fmt, st, NULL);
    in->fps = fr.num > 0 && fr.den > 0 ? av_q2d(fr) : 0;
    if (st->duration != AV_NOPTS_VALUE && st->duration > 0)
        in->duration = st->duration * av_q2d(st->time_base);
    else if (v->fmt->duration != AV_NOPTS_VALUE && v->fmt->duration > 0)
        in->duration = (double)v->fmt->duration / AV_TIME_BASE;
    snprintf(in->codec, sizeof in->codec, "%s", v->dec->codec->name);
    if (st->nb_frames > 0) {
        in->nframes = st->nb_frames;
    } else {
        /* The container does not say (Matroska, WebM, some AVI): count packets, then reopen. */
        if ((rc = count_frames(v, &in->nframes)) < 0) goto fail;
        close_streams(v);
        if ((rc = open_streams(v)) < 0) goto fail;
    }
    if (in->nframes <= 0) {
        rc = dfm_fail(DFM_E_FORMAT, "video '%s' has no frames", path);
        goto fail;
    }
    *out = v;
    return 0;
fail:
    dfm_video_close(v);
    return rc;
}

const dfm_video_info *dfm_video_get_info(const dfm_video *v) { return v ? &v->info : NULL; }

/* Next decoded frame into v->frame: 0 got one, 1 end of stream, <0 error. */
static int next_frame(dfm_video *v)
{
    if (v->ended) return 1;
    for (;;) {
        int r = avcodec_receive_frame(v->dec, v->frame);
        if (r == 0) return 0;
        if (r == AVERROR_EOF) {
            v->ended = 1;
            return 1;
        }
        if (r != AVERROR(EAGAIN))
            return av_fail(DFM_E_FORMAT, r, "decoding '%s' failed: %s", v->path);
        if (v->flushing) { /* cannot happen after a flush; do not spin */
            v->ended = 1;
            return 1;
        }
        r = av_read_frame(v->fmt, v->pkt);
        if (r < 0) { /* end of file, or a read error in a truncated file: drain what we have */
            v->flushing = 1;
            avcodec_send_packet(v->dec, NULL);
            continue;
        }
        if (v->pkt->stream_index != v->stream) {
            av_packet_unref(v->pkt);
            continue;
        }
        r = avcodec_send_packet(v->dec, v->pkt);
        av_packet_unref(v->pkt);
        if (r < 0 && r != AVERROR(EAGAIN) && r != AVERROR_INVALIDDATA)
            return av_fail(DFM_E_FORMAT, r, "decoding '%s' failed: %s", v->path);
        /* AVERROR_INVALIDDATA: a damaged packet; the decoder conceals it and goes on */
    }
}

/* Store v->frame as display-oriented RGB at dst (info.width x info.height). */
static int store_frame(dfm_video *v, uint8_t *dst)
{
    const AVFrame *f = v->frame;
    if (v->max_pixels && (uint64_t)f->width * f->height > v->max_pixels)
        return dfm_fail(DFM_E_LIMIT, "video '%s': a %dx%d frame is over the pixel limit", v->path, f->width,
                        f->height);
    int rc;
    if (v->orientation == 1) {
        rc = dfm_av_frame_to_rgb(f, &v->sws, 0, dst, v->cw, v->ch, NULL);
    } else {
        size_t n = (size_t)v->cw * v->ch * 3;
        uint8_t *tmp = malloc(n), *rot = NULL;
        if (!tmp) return dfm_fail(DFM_E_NOMEM, "out of memory");
        rc = dfm_av_frame_to_rgb(f, &v->sws, 0, tmp, v->cw, v->ch, NULL);
        if (rc == 0 && (rc = dfm_rgb_orient(tmp, v->cw, v->ch, v->orientation, &rot, NULL, NULL)) == 0) {
            memcpy(dst, rot, n);
            free(rot);
        }
        free(tmp);
    }
    if (rc < 0) dfm_fail_ctx(rc, "video '%s' frame %lld", v->path, (long long)v->next_index);
    return rc;
}

int dfm_video_read_into(dfm_video *v, const int64_t *idx, int n, uint8_t *buf)
{
    if (!v || n < 0 || (n > 0 && (!idx || !buf))) return dfm_fail(DFM_E_ARG, "video read: bad arguments");
    if (n == 0) return 0;
    for (int i = 0; i < n; i++)
        if (idx[i] < 0 || (i > 0 && idx[i] < idx[i - 1]))
            return dfm_fail(DFM_E_ARG, "video read: frame indices must be ascending and >= 0");
    if (idx[n - 1] >= v->info.nframes)
        return dfm_fail(DFM_E_FORMAT, "video '%s' has only %lld frames (asked for frame %lld)", v->path,
                        (long long)v->info.nframes, (long long)idx[n - 1]);
    size_t fsz = (size_t)v->info.width * v->info.height * 3;
    int rc = 0;
    if (idx[0] < v->next_index) { /* going back: start over */
        close_streams(v);
        if ((rc = open_streams(v)) < 0) return rc;
    }
    int j = 0;
    while (j < n) {
        rc = next_frame(v);
        if (rc < 0) return rc;
        if (rc == 1)
            return dfm_fail(DFM_E_FORMAT, "video '%s' has only %lld frames (asked for frame %lld)", v->path,
                            (long long)v->next_index, (long long)idx[j]);
        int64_t cur = v->next_index++;
        if (cur == idx[j]) {
            rc = store_frame(v, buf + (size_t)j * fsz);
            if (rc < 0) {
                av_frame_unref(v->frame);
                return rc;
            }
            for (j++; j < n && idx[j] == cur; j++) memcpy(buf + (size_t)j * fsz, buf + (size_t)(j - 1) * fsz, fsz);
        }
        av_frame_unref(v->frame);
    }
    return 0;
}

int dfm_video_read(dfm_video *v, const int64_t *idx, int n, uint8_t **out)
{
    if (!v || !out || n < 0) return dfm_fail(DFM_E_ARG, "video read: bad arguments");
    *out = NULL;
    if (n == 0) return 0;
    size_t fsz = (size_t)v->info.width * v->info.height * 3, total;
    if (!dfm_mul_ok(fsz, (size_t)n, &total)) return dfm_fail(DFM_E_LIMIT, "video read: %d frames too large", n);
    uint8_t *buf = malloc(total);
    if (!buf) return dfm_fail(DFM_E_NOMEM, "video read: out of memory for %d frames", n);
    int rc = dfm_video_read_into(v, idx, n, buf);
    if (rc < 0) {
        free(buf);
        return rc;
    }
    *out = buf;
    return 0;
}

void dfm_video_close(dfm_video *v)
{
    if (!v) return;
    close_streams(v);
    sws_freeContext(v->sws);
    av_packet_free(&v->pkt);
    av_frame_free(&v->frame);
    free(v->path);
    free(v);
}
