/* video.c — video decode through FFmpeg (libavformat + libavcodec + libswscale) to packed RGB.
 *
 * What it is: open a file, pick the best video stream, set up a multithreaded decoder (frame +
 * slice threads); demux the stream once (no decoding) to learn which frames the decoder will
 * output and when they are shown: packets flagged for discarding (the lead-in of an edit list,
 * e.g. a clip cut with `ffmpeg -ss T -c copy`) are left out, so the count is what decodes, not
 * what the container's header claims, and the sorted presentation times give the real average
 * frame rate of variable-frame-rate (phone) clips. Then decode forward once, keeping the frames
 * whose index (in the order the decoder outputs them, i.e. display order) is asked for, and stop
 * as soon as the last one is in. When the decoder yields fewer frames than announced (damaged
 * packets it drops), the read says so (DFM_E_SHORT) with the count and times corrected to what it
 * decoded, so the caller can plan again. Damaged data is concealed differently by different
 * numbers of frame threads, so once the decoder reports damage the read starts over on a single
 * thread: the same file gives the same frames whatever the machine or -j. The display matrix is
 * honoured as the ffmpeg CLI's autorotate does: a clip tagged as rotated by 90/180/270 degrees,
 * mirrored (-display_hflip / -display_vflip), or both, comes out turned and flipped the way ffmpeg
 * shows it (info.width/height are the displayed size); other angles are left as stored. With an
 * output size set, libswscale scales each coded frame down to it (swapped for a quarter turn) in
 * its colour-conversion pass and the small frame is turned. A request for an index before the
 * current position reopens the file (no seeking: exact indices matter more than speed there).
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
    dfm_rgb_conv conv;   /* RGB conversion kept between frames */
    int cw, ch;          /* stored (coded) size, before rotation */
    int orientation;     /* EXIF-style orientation from the display matrix, 1 = none (info's too) */
    int ow, oh;          /* output size, display orientation (info's size unless scaled down) */
    int64_t next_index;  /* index of the next frame the decoder will hand out */
    int flushing, ended; /* sent the NULL packet / decoder drained */
    double *times;       /* info.nframes display times in seconds from the first, or NULL */
    int64_t *seen;       /* timestamps of the frames decoded in this pass (for a recount) */
    int64_t nseen, capseen;
    int seen_nopts;      /* some decoded frame had no timestamp */
    int damaged;         /* the decoder met damaged data: concealment differs with the thread count */
    int single;          /* so decode on one thread from then on (the same frames whatever -j) */
    dfm_video_info info;
};

static pthread_once_t g_av_quiet_once = PTHREAD_ONCE_INIT;
static void av_quiet(void) { av_log_set_level(AV_LOG_QUIET); }

static int av_fail(int code, int averr, const char *what)
{
    char e[AV_ERROR_MAX_STRING_SIZE];
    av_strerror(averr, e, sizeof e);
    return dfm_fail(code, "%s: %s", what, e);
}

/* Why avformat could not open a file, in the words a user needs: an empty file, or an MP4/MOV
 * whose 'moov' box (the index, written last by most recorders) is missing. 0 = no better idea. */
static int open_diagnosis(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    uint8_t h[16];
    size_t n = fread(h, 1, 8, f);
    int rc = 0;
    if (n == 0) {
        rc = dfm_fail(DFM_E_FORMAT, "empty file");
    } else if (n == 8 && !memcmp(h + 4, "ftyp", 4)) {
        /* ISO BMFF: walk the top-level boxes (size, type; size 1 = 64-bit size follows, 0 = to
         * the end of the file) looking for 'moov'. */
        int64_t pos = 0, boxes = 0;
        int moov = 0, cut = 0;
        while (!moov && boxes++ < 100000) {
            if (fseeko(f, pos, SEEK_SET) || fread(h, 1, 8, f) != 8) break;
            uint64_t size = (uint64_t)h[0] << 24 | h[1] << 16 | h[2] << 8 | h[3];
            if (!memcmp(h + 4, "moov", 4)) moov = 1;
            if (size == 1) {
                if (fread(h + 8, 1, 8, f) != 8) break;
                size = 0;
                for (int i = 8; i < 16; i++) size = size << 8 | h[i];
            }
            if (size == 0) break;
            if (size < 8 || size > (uint64_t)INT64_MAX - pos) break;
            pos += (int64_t)size;
        }
        if (fseeko(f, 0, SEEK_END) == 0 && ftello(f) < pos) cut = 1;
        if (!moov)
            rc = dfm_fail(DFM_E_FORMAT, "no 'moov' box: the MP4/MOV index is missing%s (an interrupted "
                          "recording or copy)", cut ? " and the file is cut short" : "");
    }
    fclose(f);
    return rc;
}

static void close_streams(dfm_video *v)
{
    avcodec_free_context(&v->dec);
    avformat_close_input(&v->fmt);
    v->next_index = 0;
    v->flushing = v->ended = 0;
    v->nseen = 0;
    v->seen_nopts = 0;
}

/* Open the container and the decoder; fills v->stream, v->cw/ch. */
static int open_streams(dfm_video *v)
{
    int r = avformat_open_input(&v->fmt, v->path, NULL, NULL);
    if (r < 0) {
        int code = r == AVERROR(ENOENT) || r == AVERROR(EACCES) || r == AVERROR(EISDIR) ? DFM_E_IO : DFM_E_FORMAT;
        int better = code == DFM_E_FORMAT ? open_diagnosis(v->path) : 0;
        return better ? better : av_fail(code, r, "cannot open the video");
    }
    if ((r = avformat_find_stream_info(v->fmt, NULL)) < 0) return av_fail(DFM_E_FORMAT, r, "no stream info");
    const AVCodec *codec = NULL;
    r = av_find_best_stream(v->fmt, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
    if (r == AVERROR_DECODER_NOT_FOUND)
        return dfm_fail(DFM_E_UNSUPPORTED, "this FFmpeg has no decoder for the video stream");
    if (r < 0) return dfm_fail(DFM_E_FORMAT, "no video stream");
    v->stream = r;
    AVStream *st = v->fmt->streams[r];
    if (st->codecpar->width <= 0 || st->codecpar->height <= 0)
        return dfm_fail(DFM_E_FORMAT, "the video stream has no frame size");
    v->cw = st->codecpar->width;
    v->ch = st->codecpar->height;
    if (v->max_pixels && (uint64_t)v->cw * v->ch > v->max_pixels)
        return dfm_fail(DFM_E_LIMIT, "%dx%d frames are over the limit of %llu pixels", v->cw, v->ch,
                        (unsigned long long)v->max_pixels);
    if (!(v->dec = avcodec_alloc_context3(codec))) return dfm_fail(DFM_E_NOMEM, "out of memory");
    if ((r = avcodec_parameters_to_context(v->dec, st->codecpar)) < 0)
        return av_fail(DFM_E_FORMAT, r, "bad codec parameters");
    v->dec->thread_count = v->single ? 1 : v->threads > 0 ? v->threads : 0; /* 0: one per core */
    v->dec->thread_type = v->single ? 0 : FF_THREAD_FRAME | FF_THREAD_SLICE;
    v->dec->pkt_timebase = st->time_base;
    /* slack: libavcodec checks its limit on the stride-aligned width; ours is exact, above */
    if (v->max_pixels)
        v->dec->max_pixels = v->max_pixels > INT64_MAX / 4 ? INT64_MAX : (int64_t)v->max_pixels * 2 + 65536;
    if ((r = avcodec_open2(v->dec, codec, NULL)) < 0)
        return av_fail(DFM_E_UNSUPPORTED, r, "cannot open the decoder");
    v->next_index = 0;
    v->flushing = v->ended = 0;
    return 0;
}

int dfm_video_display_orientation(const int32_t m[9])
{
    if (!m) return 1;
    double theta = -round(av_display_rotation_get(m)); /* ref: fftools cmdutils get_rotation */
    if (isnan(theta)) return 1;
    theta -= 360 * floor(theta / 360 + 0.9 / 360);
    /* ref: fftools ffmpeg_filter.c configure_input_video_filter (autorotate) */
    if (fabs(theta - 90) < 1) return m[3] > 0 ? 5 : 6; /* transpose cclock_flip : clock */
    if (fabs(theta - 180) < 1) {                        /* hflip and/or vflip */
        const int h = m[0] < 0, v = m[4] < 0;
        return h && v ? 3 : h ? 2 : v ? 4 : 1;
    }
    if (fabs(theta - 270) < 1) return m[3] < 0 ? 7 : 8; /* transpose clock_flip : cclock */
    if (fabs(theta) < 1) return m[4] < 0 ? 4 : 1;       /* vflip */
    return 1; /* odd angles (ffmpeg's rotate filter): left as stored */
}

static int stream_orientation(const AVStream *st)
{
#if LIBAVCODEC_VERSION_INT >= AV_VERSION_INT(60, 29, 100) /* FFmpeg 6.1: the side data moved to codecpar */
    const AVPacketSideData *sd = av_packet_side_data_get(st->codecpar->coded_side_data,
                                                         st->codecpar->nb_coded_side_data, AV_PKT_DATA_DISPLAYMATRIX);
    const uint8_t *m = sd ? sd->data : NULL;
    size_t n = sd ? sd->size : 0;
#else
    size_t n = 0;
    const uint8_t *m = av_stream_get_side_data(st, AV_PKT_DATA_DISPLAYMATRIX, &n);
#endif
    return m && n >= 9 * sizeof(int32_t) ? dfm_video_display_orientation((const int32_t *)m) : 1;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Frame times and rate from n timestamps ts (any order; sorted here) in the stream's time base:
 * fills v->times (seconds from the first) and info.fps / vfr / duration. nopts: some frame had
 * none, so only the nominal rate is known. */
static int set_timing(dfm_video *v, int64_t *ts, int64_t n, int nopts)
{
    dfm_video_info *in = &v->info;
    free(v->times);
    v->times = NULL;
    in->nframes = n;
    in->fps = in->nominal_fps;
    in->vfr = 0;
    if (!nopts && n >= 2) {
        const AVRational tb = v->fmt->streams[v->stream]->time_base;
        qsort(ts, (size_t)n, sizeof *ts, cmp_i64);
        double span = (double)(ts[n - 1] - ts[0]) * av_q2d(tb);
        if (span > 0) {
            if (!(v->times = malloc((size_t)n * sizeof *v->times))) return dfm_fail(DFM_E_NOMEM, "out of memory");
            for (int64_t i = 0; i < n; i++) v->times[i] = (double)(ts[i] - ts[0]) * av_q2d(tb);
            const double mean = span / (double)(n - 1);
            for (int64_t i = 1; i < n && !in->vfr; i++)
                in->vfr = fabs(v->times[i] - v->times[i - 1] - mean) > 0.1 * mean;
            const double avg = 1.0 / mean;
            if (in->vfr || !(in->nominal_fps > 0) || fabs(avg - in->nominal_fps) > 0.01 * in->nominal_fps)
                in->fps = avg;
        }
    }
    in->duration = in->fps > 0 ? (double)n / in->fps : 0;
    return 0;
}

/* Demux the whole stream once (no decoding): the timestamps of the packets the decoder will turn
 * into frames. Leaves the demuxer at the end; the caller reopens. */
static int scan_frames(dfm_video *v)
{
    int64_t n = 0, cap = 0, *ts = NULL;
    int nopts = 0, r;
    while ((r = av_read_frame(v->fmt, v->pkt)) >= 0) {
        const AVPacket *p = v->pkt;
        if (p->stream_index == v->stream && !(p->flags & AV_PKT_FLAG_DISCARD)) {
            if (n == cap) {
                int64_t c = cap ? cap * 2 : 256;
                int64_t *g = realloc(ts, (size_t)c * sizeof *g);
                if (!g) {
                    free(ts);
                    av_packet_unref(v->pkt);
                    return dfm_fail(DFM_E_NOMEM, "out of memory");
                }
                ts = g, cap = c;
            }
            int64_t t = p->pts != AV_NOPTS_VALUE ? p->pts : p->dts;
            nopts |= t == AV_NOPTS_VALUE;
            ts[n++] = t;
        }
        av_packet_unref(v->pkt);
    }
    int rc = set_timing(v, ts, n, nopts);
    free(ts);
    return rc;
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
    in->orientation = v->orientation;
    in->width = v->orientation >= 5 ? v->ch : v->cw;
    in->height = v->orientation >= 5 ? v->cw : v->ch;
    v->ow = in->width;
    v->oh = in->height;
    AVRational fr = av_guess_frame_rate(v->fmt, st, NULL);
    in->nominal_fps = fr.num > 0 && fr.den > 0 ? av_q2d(fr) : 0;
    in->container_frames = st->nb_frames > 0 ? st->nb_frames : 0;
    snprintf(in->codec, sizeof in->codec, "%s", v->dec->codec->name);
    if ((rc = scan_frames(v)) < 0) goto fail;
    close_streams(v);
    if ((rc = open_streams(v)) < 0) goto fail;
    if (in->nframes <= 0) {
        rc = dfm_fail(DFM_E_FORMAT, "the video stream has no frames");
        goto fail;
    }
    *out = v;
    return 0;
fail:
    dfm_video_close(v);
    return rc;
}

const dfm_video_info *dfm_video_get_info(const dfm_video *v) { return v ? &v->info : NULL; }
const double *dfm_video_times(const dfm_video *v) { return v ? v->times : NULL; }

/* Next decoded frame into v->frame: 0 got one, 1 end of stream, <0 error. */
static int next_frame(dfm_video *v)
{
    if (v->ended) return 1;
    for (;;) {
        int r = avcodec_receive_frame(v->dec, v->frame);
        if (r == 0) {
            if (v->frame->decode_error_flags || (v->frame->flags & AV_FRAME_FLAG_CORRUPT)) v->damaged = 1;
            return 0;
        }
        if (r == AVERROR_EOF) {
            v->ended = 1;
            return 1;
        }
        if (r == AVERROR_INVALIDDATA) { /* a damaged frame is dropped (frame threads report it here) */
            v->damaged = 1;
            continue;
        }
        if (r != AVERROR(EAGAIN))
            return av_fail(DFM_E_FORMAT, r, "decoding failed");
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
        if (r == AVERROR_INVALIDDATA) v->damaged = 1;
        if (r < 0 && r != AVERROR(EAGAIN) && r != AVERROR_INVALIDDATA)
            return av_fail(DFM_E_FORMAT, r, "decoding failed");
        /* AVERROR_INVALIDDATA: a damaged packet; the decoder conceals it and goes on */
    }
}

/* Store v->frame as display-oriented RGB at dst (ow x oh). */
static int store_frame(dfm_video *v, uint8_t *dst)
{
    const AVFrame *f = v->frame;
    if (v->max_pixels && (uint64_t)f->width * f->height > v->max_pixels)
        return dfm_fail(DFM_E_LIMIT, "a %dx%d frame is over the pixel limit", f->width, f->height);
    /* the size to convert the coded frame to: the output size before the turn */
    const int tw = v->orientation >= 5 ? v->oh : v->ow, th = v->orientation >= 5 ? v->ow : v->oh;
    /* scaled: accurate rounding and full-resolution chroma in the output (without them the
     * downscaled chroma of saturated edges is off by up to ~200 levels); exact size: the fast
     * path, identical to the ffmpeg CLI's rgb24 */
    const int scaled = tw != v->cw || th != v->ch;
    int rc;
    if (v->orientation == 1) {
        rc = dfm_av_frame_to_rgb(f, &v->conv, scaled, dst, tw, th, NULL);
    } else {
        size_t n = (size_t)tw * th * 3;
        uint8_t *tmp = malloc(n), *rot = NULL;
        if (!tmp) return dfm_fail(DFM_E_NOMEM, "out of memory");
        rc = dfm_av_frame_to_rgb(f, &v->conv, scaled, tmp, tw, th, NULL);
        if (rc == 0 && (rc = dfm_rgb_orient(tmp, tw, th, v->orientation, &rot, NULL, NULL)) == 0) {
            memcpy(dst, rot, n);
            free(rot);
        }
        free(tmp);
    }
    if (rc < 0) dfm_fail_ctx(rc, "frame %lld", (long long)v->next_index);
    return rc;
}

/* Remember the timestamp of the frame just decoded (for a recount when the stream falls short). */
static int note_frame(dfm_video *v)
{
    if (v->nseen == v->capseen) {
        int64_t c = v->capseen ? v->capseen * 2 : 256;
        int64_t *g = realloc(v->seen, (size_t)c * sizeof *g);
        if (!g) return dfm_fail(DFM_E_NOMEM, "out of memory");
        v->seen = g, v->capseen = c;
    }
    int64_t t = v->frame->best_effort_timestamp;
    v->seen_nopts |= t == AV_NOPTS_VALUE;
    v->seen[v->nseen++] = t;
    return 0;
}

/* The stream ended before frame `want`: the count and times become what was decoded. */
static int fell_short(dfm_video *v, int64_t want)
{
    const int64_t listed = v->info.nframes, decoded = v->next_index;
    char header[96] = "";
    if (v->info.container_frames && v->info.container_frames != listed)
        snprintf(header, sizeof header, "; its header says %lld", (long long)v->info.container_frames);
    int rc = set_timing(v, v->seen, v->nseen, v->seen_nopts);
    if (rc < 0) return rc;
    if (decoded == 0)
        return dfm_fail(DFM_E_FORMAT, "no frame decodes, the container lists %lld%s (damaged or cut file)",
                        (long long)listed, header);
    return dfm_fail(DFM_E_SHORT, "only %lld frames decode, the container lists %lld%s (damaged or cut "
                    "file; asked for frame %lld)", (long long)decoded, (long long)listed, header,
                    (long long)want);
}

int dfm_video_set_output_size(dfm_video *v, int w, int h)
{
    if (!v) return dfm_fail(DFM_E_ARG, "video output size: no video");
    if (w < 1 || h < 1 || w > v->info.width || h > v->info.height)
        return dfm_fail(DFM_E_ARG, "video output size %dx%d: must be within the %dx%d frames (downscaling only)",
                        w, h, v->info.width, v->info.height);
    v->ow = w;
    v->oh = h;
    return 0;
}

int dfm_video_read_into(dfm_video *v, const int64_t *idx, int n, uint8_t *buf)
{
    if (!v || n < 0 || (n > 0 && (!idx || !buf))) return dfm_fail(DFM_E_ARG, "video read: bad arguments");
    if (n == 0) return 0;
    for (int i = 0; i < n; i++)
        if (idx[i] < 0 || (i > 0 && idx[i] < idx[i - 1]))
            return dfm_fail(DFM_E_ARG, "video read: frame indices must be ascending and >= 0");
    if (idx[n - 1] >= v->info.nframes)
        return dfm_fail(DFM_E_ARG, "video read: asked for frame %lld of a clip of %lld frames",
                        (long long)idx[n - 1], (long long)v->info.nframes);
    size_t fsz = (size_t)v->ow * v->oh * 3;
    int rc = 0;
restart:
    if (idx[0] < v->next_index || (v->damaged && !v->single)) { /* going back: start over */
        if (v->damaged) v->single = 1;
        close_streams(v);
        if ((rc = open_streams(v)) < 0) return rc;
    }
    int j = 0;
    while (j < n) {
        rc = next_frame(v);
        if (v->damaged && !v->single) { /* the frames so far may depend on the thread count */
            av_frame_unref(v->frame);
            goto restart;
        }
        if (rc < 0) return rc;
        if (rc == 1) return fell_short(v, idx[j]);
        if ((rc = note_frame(v)) < 0) {
            av_frame_unref(v->frame);
            return rc;
        }
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
    size_t fsz = (size_t)v->ow * v->oh * 3, total;
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
    dfm_rgb_conv_free(&v->conv);
    av_packet_free(&v->pkt);
    av_frame_free(&v->frame);
    free(v->times);
    free(v->seen);
    free(v->path);
    free(v);
}
