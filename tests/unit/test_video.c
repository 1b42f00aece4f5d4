/* test_video.c — video decode: stream info, frame selection (repeats, rewinds), the counting
 * pass, display-matrix rotation and flips, errors (past the end, truncated files, limits, missing
 * file).
 * Fixtures: tests/fixtures/media/clip.{mp4,mkv}, clip_rot90.mp4 from
 * scripts/make-media-fixtures.sh: 64x48, 20 frames at 10 fps, H.264 with B-frames, frame N a
 * flat colour (8 + 12 N, 200 - 8 N, 60). Clips with other display matrices are remuxed from
 * clip_rot90.mp4 here (libavformat). */
#include "test.h"
#include "base/buf.h"
#include "base/error.h"
#include "media/video.h"

#include <libavformat/avformat.h>
#include <libavutil/display.h>
#include <stdint.h>
#include <stdlib.h>

static void fixture(char *path, size_t n, const char *name)
{
    snprintf(path, n, "%s/media/%s", dfm_test_fixtures(), name);
}

/* Mean colour of a frame's centre 16x16 is the frame's colour (H.264 at crf 8: within 4). */
static int frame_is(const uint8_t *f, int w, int h, int64_t n)
{
    int want[3] = {8 + 12 * (int)n, 200 - 8 * (int)n, 60};
    long sum[3] = {0, 0, 0};
    for (int y = h / 2 - 8; y < h / 2 + 8; y++)
        for (int x = w / 2 - 8; x < w / 2 + 8; x++)
            for (int c = 0; c < 3; c++) sum[c] += f[((size_t)y * w + x) * 3 + c];
    int ok = 1;
    for (int c = 0; c < 3; c++) ok &= labs(sum[c] / 256 - want[c]) <= 4;
    if (!ok)
        fprintf(stderr, "  frame %lld: mean (%ld,%ld,%ld), want (%d,%d,%d)\n", (long long)n, sum[0] / 256,
                sum[1] / 256, sum[2] / 256, want[0], want[1], want[2]);
    return ok;
}

static void check_clip(const char *name, int threads)
{
    char path[512];
    fixture(path, sizeof path, name);
    dfm_video *v = NULL;
    CHECK_EQ(dfm_video_open(&v, path, threads, 0), 0);
    if (!v) return;
    const dfm_video_info *in = dfm_video_get_info(v);
    CHECK_EQ(in->width, 64);
    CHECK_EQ(in->height, 48);
    CHECK_EQ(in->nframes, 20);
    CHECK_NEAR(in->fps, 10.0, 1e-6);
    CHECK_NEAR(in->duration, 2.0, 0.15);
    CHECK_STR(in->codec, "h264");
    const size_t fsz = 64 * 48 * 3;

    int64_t idx[] = {0, 5, 5, 19};
    uint8_t *f = NULL;
    CHECK_EQ(dfm_video_read(v, idx, 4, &f), 0);
    if (f) {
        for (int i = 0; i < 4; i++) CHECK(frame_is(f + i * fsz, 64, 48, idx[i]));
        CHECK(!memcmp(f + 1 * fsz, f + 2 * fsz, fsz)); /* a repeat is the same frame */
        free(f);
    }
    /* going back reopens; going forward continues */
    int64_t back[] = {3, 4};
    CHECK_EQ(dfm_video_read(v, back, 2, &f), 0);
    if (f) {
        CHECK(frame_is(f, 64, 48, 3));
        CHECK(frame_is(f + fsz, 64, 48, 4));
        free(f);
    }
    /* Parity: frame 5 is byte for byte what the ffmpeg CLI (bicubic sws) gives, which is also what
     * OpenCV's VideoCapture (NeMo's reader) and PyAV give. Bound: 0. */
    int64_t five[] = {5};
    CHECK_EQ(dfm_video_read(v, five, 1, &f), 0);
    if (f) {
        char refpath[512];
        fixture(refpath, sizeof refpath, "clip_f5.rgb");
        dfm_buf ref = {0};
        CHECK_EQ(dfm_read_file(refpath, 0, &ref), 0);
        CHECK_EQ(ref.len, fsz);
        CHECK(ref.len == fsz && !memcmp(f, ref.data, fsz));
        dfm_buf_free(&ref);
        free(f);
    }
    int64_t fwd[] = {10};
    CHECK_EQ(dfm_video_read(v, fwd, 1, &f), 0);
    if (f) {
        CHECK(frame_is(f, 64, 48, 10));
        free(f);
    }
    int64_t past[] = {2, 20};
    f = (uint8_t *)1;
    CHECK_EQ(dfm_video_read(v, past, 2, &f), DFM_E_ARG); /* the caller's mistake: nframes is 20 */
    CHECK(f == NULL);
    CHECK(strstr(dfm_errmsg(), "of a clip of 20 frames") != NULL);
    int64_t unsorted[] = {5, 4};
    CHECK_EQ(dfm_video_read(v, unsorted, 2, &f), DFM_E_ARG);
    CHECK_EQ(dfm_video_read(v, idx, 0, &f), 0);
    CHECK(f == NULL);
    dfm_video_close(v);
}

TEST(video_mp4_info_and_frames) { check_clip("clip.mp4", 0); }
TEST(video_mp4_single_thread) { check_clip("clip.mp4", 1); }
TEST(video_mkv_counts_frames) { check_clip("clip.mkv", 2); } /* Matroska has no frame count */

/* Stored 64x48 quadrants (TL red, TR green, BL blue, BR white) with a +90 degree display matrix:
 * shown 48x64 turned counter-clockwise (TL green, TR white, BL red, BR blue) like ffmpeg does. */
TEST(video_display_rotation)
{
    char path[512];
    fixture(path, sizeof path, "clip_rot90.mp4");
    dfm_video *v = NULL;
    CHECK_EQ(dfm_video_open(&v, path, 0, 0), 0);
    if (!v) return;
    const dfm_video_info *in = dfm_video_get_info(v);
    CHECK_EQ(in->width, 48);
    CHECK_EQ(in->height, 64);
    CHECK_EQ(in->nframes, 3);
    int64_t idx[] = {2};
    uint8_t *f = NULL;
    CHECK_EQ(dfm_video_read(v, idx, 1, &f), 0);
    if (f) {
        const int pts[4][2] = {{12, 16}, {36, 16}, {12, 48}, {36, 48}};
        const int want[4][3] = {{0, 255, 0}, {255, 255, 255}, {255, 0, 0}, {0, 0, 255}};
        for (int i = 0; i < 4; i++) {
            const uint8_t *p = f + ((size_t)pts[i][1] * 48 + pts[i][0]) * 3;
            int ok = 1;
            for (int c = 0; c < 3; c++) ok &= abs(p[c] - want[i][c]) <= 8;
            if (!ok) fprintf(stderr, "  quadrant %d: (%d,%d,%d)\n", i, p[0], p[1], p[2]);
            CHECK(ok);
        }
        free(f);
    }
    dfm_video_close(v);
}

/* The same clip scaled down as it is decoded (dfm_video_set_output_size): 24x32 displayed, the
 * quadrants where they were; sizes over the display size or under 1 are refused. */
TEST(video_output_size_rotated)
{
    char path[512];
    fixture(path, sizeof path, "clip_rot90.mp4");
    dfm_video *v = NULL;
    CHECK_EQ(dfm_video_open(&v, path, 0, 0), 0);
    if (!v) return;
    CHECK_EQ(dfm_video_set_output_size(v, 49, 64), DFM_E_ARG);
    CHECK_EQ(dfm_video_set_output_size(v, 48, 65), DFM_E_ARG);
    CHECK_EQ(dfm_video_set_output_size(v, 0, 32), DFM_E_ARG);
    CHECK_EQ(dfm_video_set_output_size(v, 24, 32), 0);
    int64_t idx[] = {1, 2};
    uint8_t *f = NULL;
    CHECK_EQ(dfm_video_read(v, idx, 2, &f), 0);
    if (f) {
        const int pts[4][2] = {{6, 8}, {18, 8}, {6, 24}, {18, 24}};
        const int want[4][3] = {{0, 255, 0}, {255, 255, 255}, {255, 0, 0}, {0, 0, 255}};
        for (int k = 0; k < 2; k++)
            for (int i = 0; i < 4; i++) {
                const uint8_t *p = f + (size_t)k * 24 * 32 * 3 + ((size_t)pts[i][1] * 24 + pts[i][0]) * 3;
                int ok = 1;
                for (int c = 0; c < 3; c++) ok &= abs(p[c] - want[i][c]) <= 8;
                if (!ok) fprintf(stderr, "  frame %d quadrant %d: (%d,%d,%d)\n", k, i, p[0], p[1], p[2]);
                CHECK(ok);
            }
        free(f);
    }
    dfm_video_close(v);
}

TEST(video_errors)
{
    char path[512], tmp[600];
    dfm_video *v = (dfm_video *)1;
    CHECK_EQ(dfm_video_open(&v, "/nonexistent/clip.mp4", 0, 0), DFM_E_IO);
    CHECK(v == NULL);
    fixture(path, sizeof path, "clip.mp4");
    CHECK_EQ(dfm_video_open(&v, path, 0, 64 * 48 - 1), DFM_E_LIMIT);
    CHECK(v == NULL);
    CHECK_EQ(dfm_video_open(&v, path, 0, 64 * 48), 0);
    dfm_video_close(v);
    /* not a video: an image is a one-frame "video" to FFmpeg, a text file is not */
    snprintf(tmp, sizeof tmp, "%s/notes.txt", dfm_test_tmpdir());
    dfm_write_file_atomic(tmp, "just some text\n", 15);
    CHECK_EQ(dfm_video_open(&v, tmp, 0, 0), DFM_E_FORMAT);
    CHECK(dfm_errmsg()[0] != 0);

    /* truncated copies: at 0 and 100 bytes nothing opens (an empty file says so); cut inside the
     * media data (the moov box is at the front) opens with the frames whose packets are there,
     * and a read of the last one either works or falls short (DFM_E_SHORT) with the count
     * corrected, after which a read planned on the new count works */
    dfm_buf b = {0};
    CHECK_EQ(dfm_read_file(path, 0, &b), 0);
    size_t cuts[] = {0, 100, b.len / 2, b.len * 3 / 4, b.len - 10};
    for (int k = 0; k < 5; k++) {
        snprintf(tmp, sizeof tmp, "%s/cut%d.mp4", dfm_test_tmpdir(), k);
        CHECK_EQ(dfm_write_file_atomic(tmp, b.data, cuts[k]), 0);
        v = NULL;
        int rc = dfm_video_open(&v, tmp, 0, 0);
        if (k < 2) CHECK_EQ(rc, DFM_E_FORMAT);
        if (k == 0) CHECK_STR(dfm_errmsg(), "empty file");
        if (k >= 2) CHECK_EQ(rc, 0);
        if (rc < 0) {
            CHECK(v == NULL);
            continue;
        }
        int64_t n0 = dfm_video_get_info(v)->nframes;
        if (k == 2) CHECK(n0 < 20);
        int64_t last[] = {0, n0 - 1};
        uint8_t *f = NULL;
        rc = dfm_video_read(v, last, 2, &f);
        CHECK(rc == 0 || rc == DFM_E_SHORT || (rc == DFM_E_FORMAT && strstr(dfm_errmsg(), "no frame decodes")));
        if (rc == DFM_E_SHORT) {
            CHECK(strstr(dfm_errmsg(), "frames decode, the container lists") != NULL);
            int64_t n1 = dfm_video_get_info(v)->nframes;
            if (!(n1 < n0 && n1 >= 1)) fprintf(stderr, "  cut %d: %lld then %lld frames: %s\n", k, (long long)n0, (long long)n1, dfm_errmsg());
            CHECK(n1 < n0 && n1 >= 1);
            last[1] = n1 - 1;
            CHECK_EQ(dfm_video_read(v, last, 2, &f), 0);
        }
        if (f) CHECK(frame_is(f + 64 * 48 * 3, 64, 48, last[1]));
        free(f);
        dfm_video_close(v);
    }
    dfm_buf_free(&b);
}

/* Variable frame rate (clip_vfr.mp4): frames 0-9 at 0.1 s steps, 10-14 at 0.2 s, 15-19 at 0.4 s.
 * The header says 10 fps; the real average is 19 frames over 3.9 s, and the times are exact
 * (time base 1/90000). */
TEST(video_vfr_times)
{
    char path[512];
    fixture(path, sizeof path, "clip_vfr.mp4");
    dfm_video *v = NULL;
    CHECK_EQ(dfm_video_open(&v, path, 0, 0), 0);
    if (!v) return;
    const dfm_video_info *in = dfm_video_get_info(v);
    CHECK_EQ(in->nframes, 20);
    CHECK_EQ(in->vfr, 1);
    CHECK_NEAR(in->nominal_fps, 10.0, 1e-9);
    CHECK_NEAR(in->fps, 19 / 3.9, 1e-9);
    CHECK_NEAR(in->duration, 20 / (19 / 3.9), 1e-9); /* duration and rate agree */
    const double *t = dfm_video_times(v);
    CHECK(t != NULL);
    if (t) {
        const double want[20] = {0, .1, .2, .3, .4, .5, .6, .7, .8, .9, 1.1, 1.3, 1.5, 1.7, 1.9, 2.3, 2.7, 3.1, 3.5, 3.9};
        for (int i = 0; i < 20; i++) CHECK_NEAR(t[i], want[i], 1e-9);
    }
    int64_t idx[] = {9, 10, 19};
    uint8_t *f = NULL;
    CHECK_EQ(dfm_video_read(v, idx, 3, &f), 0);
    if (f) {
        for (int i = 0; i < 3; i++) CHECK(frame_is(f + (size_t)i * 64 * 48 * 3, 64, 48, idx[i]));
        free(f);
    }
    dfm_video_close(v);
    /* a constant-rate clip is not VFR and keeps its nominal rate and count */
    fixture(path, sizeof path, "clip.mp4");
    CHECK_EQ(dfm_video_open(&v, path, 0, 0), 0);
    if (!v) return;
    CHECK_EQ(dfm_video_get_info(v)->vfr, 0);
    CHECK_NEAR(dfm_video_get_info(v)->fps, 10.0, 1e-12);
    CHECK_EQ(dfm_video_get_info(v)->container_frames, 20);
    dfm_video_close(v);
}

/* An edit list (clip_cut.mp4: clip.mp4 cut at 0.55 s with -c copy): the header counts 20
 * packets, six of them lead-in flagged for discarding; 14 frames decode, source frames 6..19. */
TEST(video_edit_list)
{
    char path[512];
    fixture(path, sizeof path, "clip_cut.mp4");
    for (int threads = 1; threads <= 2; threads++) {
        dfm_video *v = NULL;
        CHECK_EQ(dfm_video_open(&v, path, threads, 0), 0);
        if (!v) return;
        const dfm_video_info *in = dfm_video_get_info(v);
        CHECK_EQ(in->nframes, 14);
        CHECK_EQ(in->container_frames, 20);
        CHECK_EQ(in->vfr, 0);
        CHECK_NEAR(in->fps, 10.0, 1e-9);
        int64_t idx[14];
        for (int i = 0; i < 14; i++) idx[i] = i;
        uint8_t *f = NULL;
        CHECK_EQ(dfm_video_read(v, idx, 14, &f), 0);
        if (f) {
            for (int i = 0; i < 14; i++) CHECK(frame_is(f + (size_t)i * 64 * 48 * 3, 64, 48, 6 + i));
            free(f);
        }
        dfm_video_close(v);
    }
}

/* Read every frame of the clip as planned from its count, planning again once after a short
 * read, as dfm-decode does; *n gets the final count. */
static uint8_t *read_all(const char *path, int threads, int64_t *n, int *rc_out)
{
    dfm_video *v = NULL;
    uint8_t *f = NULL;
    int rc = dfm_video_open(&v, path, threads, 0);
    for (int attempt = 0; rc == 0 && attempt < 2; attempt++) {
        *n = dfm_video_get_info(v)->nframes;
        int64_t *idx = malloc((size_t)*n * sizeof *idx);
        for (int64_t i = 0; i < *n; i++) idx[i] = i;
        rc = dfm_video_read(v, idx, (int)*n, &f);
        free(idx);
        if (rc != DFM_E_SHORT) break;
    }
    dfm_video_close(v);
    *rc_out = rc;
    return f;
}

/* Damaged packets: a copy of clip.mkv with bytes of its media data overwritten. Whatever the
 * decoder conceals or drops, the frames that come out are the same with 1 and 2 threads (after
 * damage the read goes single-threaded), and every one is a whole frame. */
TEST(video_damaged_packets_deterministic)
{
    char path[512], tmp[600];
    fixture(path, sizeof path, "clip.mkv");
    dfm_buf b = {0};
    CHECK_EQ(dfm_read_file(path, 0, &b), 0);
    int checked = 0;
    for (int variant = 0; variant < 3 && b.len > 400; variant++) {
        uint8_t *d = malloc(b.len);
        memcpy(d, b.data, b.len);
        size_t at = b.len / 3 + (size_t)variant * b.len / 6, len = 40 + variant * 60;
        uint32_t x = 12345u + variant;
        for (size_t i = at; i < at + len && i < b.len; i++) d[i] = (uint8_t)((x = x * 1103515245u + 12345u) >> 24);
        snprintf(tmp, sizeof tmp, "%s/damaged%d.mkv", dfm_test_tmpdir(), variant);
        CHECK_EQ(dfm_write_file_atomic(tmp, d, b.len), 0);
        free(d);
        int64_t n1 = 0, n2 = 0;
        int rc1, rc2;
        uint8_t *f1 = read_all(tmp, 1, &n1, &rc1), *f2 = read_all(tmp, 2, &n2, &rc2);
        CHECK_EQ(rc1, rc2);
        if (rc1 == 0 && rc2 == 0) {
            CHECK_EQ(n1, n2);
            CHECK(n1 >= 1 && n1 <= 20);
            CHECK(f1 && f2 && !memcmp(f1, f2, (size_t)n1 * 64 * 48 * 3));
            checked++;
        }
        free(f1), free(f2);
    }
    CHECK(checked >= 1);
    dfm_buf_free(&b);
}

/* Messages a user can act on: an empty file, an MP4 whose 'moov' box never got written. */
TEST(video_open_diagnosis)
{
    char tmp[600];
    dfm_video *v = NULL;
    snprintf(tmp, sizeof tmp, "%s/empty.mp4", dfm_test_tmpdir());
    CHECK_EQ(dfm_write_file_atomic(tmp, "", 0), 0);
    CHECK_EQ(dfm_video_open(&v, tmp, 0, 0), DFM_E_FORMAT);
    CHECK_STR(dfm_errmsg(), "empty file");
    /* ftyp + a 1 KiB mdat and no moov: a recording that was interrupted */
    uint8_t m[32 + 1024] = {0, 0, 0, 24, 'f', 't', 'y', 'p', 'i', 's', 'o', 'm', 0, 0, 2, 0,
                            'i', 's', 'o', 'm', 'i', 's', 'o', '2', 0, 0, 4, 8, 'm', 'd', 'a', 't'};
    snprintf(tmp, sizeof tmp, "%s/nomoov.mp4", dfm_test_tmpdir());
    CHECK_EQ(dfm_write_file_atomic(tmp, m, sizeof m), 0);
    CHECK_EQ(dfm_video_open(&v, tmp, 0, 0), DFM_E_FORMAT);
    CHECK(strstr(dfm_errmsg(), "no 'moov' box") != NULL);
    CHECK(strstr(dfm_errmsg(), "nomoov") == NULL); /* the caller names the file */
    /* the same with the mdat declared longer than the file: also cut short */
    m[26] = 0x40;
    CHECK_EQ(dfm_write_file_atomic(tmp, m, sizeof m), 0);
    CHECK_EQ(dfm_video_open(&v, tmp, 0, 0), DFM_E_FORMAT);
    CHECK(strstr(dfm_errmsg(), "cut short") != NULL);
}

/* ---- display matrix: rotations and flips ----------------------------------------------------- */

/* Matrices as ffmpeg 6+'s -display_rotation R -display_hflip -display_vflip build them
 * (av_display_rotation_set, then av_display_matrix_flip), and the EXIF orientation the ffmpeg
 * CLI's autorotate shows them as. Reference: the ffmpeg 5.1 CLI on clip_rot90.mp4 remuxed with
 * each matrix (`ffmpeg -i X -f rawvideo -pix_fmt rgb24`), quadrants read off its frames; 45
 * degrees is its rotate filter, which we leave as stored. */
static const struct {
    double rot;
    int hflip, vflip, want;
} g_matrices[] = {
    {0, 0, 0, 1},   {0, 1, 0, 2},   {0, 0, 1, 4},   {0, 1, 1, 3},   {90, 0, 0, 6},  {90, 1, 0, 5},
    {90, 0, 1, 7},  {90, 1, 1, 8},  {180, 0, 0, 3}, {180, 1, 0, 4}, {180, 0, 1, 2}, {180, 1, 1, 1},
    {-90, 0, 0, 8}, {-90, 1, 0, 7}, {-90, 0, 1, 5}, {-90, 1, 1, 6}, {270, 1, 0, 7}, {450, 1, 0, 5},
    {45, 0, 0, 1},  {45, 1, 0, 1},  {90.4, 0, 0, 6}, {89.6, 1, 0, 5},
};

TEST(video_display_orientation_table)
{
    for (size_t i = 0; i < sizeof g_matrices / sizeof *g_matrices; i++) {
        int32_t m[9];
        av_display_rotation_set(m, g_matrices[i].rot);
        av_display_matrix_flip(m, g_matrices[i].hflip, g_matrices[i].vflip);
        int o = dfm_video_display_orientation(m);
        if (o != g_matrices[i].want)
            fprintf(stderr, "  rotation %g hflip %d vflip %d: %d, want %d\n", g_matrices[i].rot, g_matrices[i].hflip,
                    g_matrices[i].vflip, o, g_matrices[i].want);
        CHECK_EQ(o, g_matrices[i].want);
    }
    /* scaled matrices (non-square display) keep their orientation; degenerate ones are 1 */
    int32_t m[9] = {0, 2 << 16, 0, 3 << 16, 0, 0, 0, 0, 1 << 30};
    CHECK_EQ(dfm_video_display_orientation(m), 5);
    int32_t zero[9] = {0, 0, 0, 0, 0, 0, 0, 0, 1 << 30};
    CHECK_EQ(dfm_video_display_orientation(zero), 1);
    CHECK_EQ(dfm_video_display_orientation(NULL), 1);
}

/* clip_rot90.mp4's stream (quadrants stored 64x48) remuxed to path with a display matrix from
 * av_display_rotation_set(rot) + av_display_matrix_flip(hflip, vflip) in place of its own. */
static int remux_with_matrix(const char *path, double rot, int hflip, int vflip)
{
    char src[512];
    fixture(src, sizeof src, "clip_rot90.mp4");
    AVFormatContext *in = NULL, *out = NULL;
    AVPacket *pkt = av_packet_alloc();
    int ok = pkt && avformat_open_input(&in, src, NULL, NULL) == 0 && avformat_find_stream_info(in, NULL) >= 0 &&
             avformat_alloc_output_context2(&out, NULL, "mp4", path) >= 0;
    AVStream *st = ok ? avformat_new_stream(out, NULL) : NULL;
    ok = st && avcodec_parameters_copy(st->codecpar, in->streams[0]->codecpar) >= 0;
#if LIBAVCODEC_VERSION_INT >= AV_VERSION_INT(60, 29, 100) /* FFmpeg 6.1: the side data moved to codecpar */
    AVPacketSideData *sd = ok ? av_packet_side_data_new(&st->codecpar->coded_side_data, &st->codecpar->nb_coded_side_data,
                                                        AV_PKT_DATA_DISPLAYMATRIX, 9 * sizeof(int32_t), 0)
                              : NULL;
    int32_t *m = sd ? (int32_t *)sd->data : NULL;
#else
    int32_t *m = ok ? (int32_t *)av_stream_new_side_data(st, AV_PKT_DATA_DISPLAYMATRIX, 9 * sizeof(int32_t)) : NULL;
#endif
    if (m) {
        st->codecpar->codec_tag = 0;
        st->time_base = in->streams[0]->time_base;
        av_display_rotation_set(m, rot);
        av_display_matrix_flip(m, hflip, vflip);
    }
    ok = m && avio_open(&out->pb, path, AVIO_FLAG_WRITE) >= 0 && avformat_write_header(out, NULL) >= 0;
    while (ok && av_read_frame(in, pkt) >= 0) {
        if (pkt->stream_index == 0) {
            av_packet_rescale_ts(pkt, in->streams[0]->time_base, st->time_base);
            ok = av_interleaved_write_frame(out, pkt) >= 0;
        }
        av_packet_unref(pkt);
    }
    if (ok) ok = av_write_trailer(out) >= 0;
    if (out) avio_closep(&out->pb);
    avformat_free_context(out);
    avformat_close_input(&in);
    av_packet_free(&pkt);
    return ok ? 0 : -1;
}

/* The quadrants of a displayed frame (w x h), sampled at their centres, as letters of the stored
 * red, green, blue, white (H.264 at crf 8: within 8). */
static int quads_are(const uint8_t *f, int w, int h, const char *want)
{
    char got[5] = "????";
    for (int i = 0; i < 4; i++) {
        const uint8_t *p = f + ((size_t)(h / 4 + (i / 2) * h / 2) * w + w / 4 + (i % 2) * w / 2) * 3;
        const int c[4][3] = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {255, 255, 255}};
        for (int k = 0; k < 4; k++)
            if (abs(p[0] - c[k][0]) <= 8 && abs(p[1] - c[k][1]) <= 8 && abs(p[2] - c[k][2]) <= 8) got[i] = "RGBW"[k];
    }
    if (strcmp(got, want)) fprintf(stderr, "  quadrants %s, want %s\n", got, want);
    return !strcmp(got, want);
}

/* Flipped and turned-and-flipped clips decode the way ffmpeg shows them, at the exact size and
 * scaled down as they decode (dfm_video_set_output_size: dfm-decode --preset's path). For each
 * EXIF orientation, the displayed TL, TR, BL, BR of the stored red, green, blue, white. */
TEST(video_display_flips)
{
    static const char *const shown[9] = {"", "RGBW", "GRWB", "WBGR", "BWRG", "RBGW", "BRWG", "WGBR", "GWRB"};
    static const struct {
        double rot;
        int hflip, vflip;
    } cases[] = {{0, 1, 0},  {0, 0, 1},  {0, 1, 1},   {90, 1, 0}, {90, 0, 1},
                 {-90, 1, 0}, {-90, 0, 1}, {180, 1, 0}, {-90, 0, 0}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char path[600];
        snprintf(path, sizeof path, "%s/flip%zu.mp4", dfm_test_tmpdir(), i);
        CHECK_EQ(remux_with_matrix(path, cases[i].rot, cases[i].hflip, cases[i].vflip), 0);
        int32_t m[9];
        av_display_rotation_set(m, cases[i].rot);
        av_display_matrix_flip(m, cases[i].hflip, cases[i].vflip);
        const int o = dfm_video_display_orientation(m), w = o >= 5 ? 48 : 64, h = o >= 5 ? 64 : 48;
        CHECK(o != 1);
        for (int scaled = 0; scaled <= 1; scaled++) {
            dfm_video *v = NULL;
            CHECK_EQ(dfm_video_open(&v, path, 1, 0), 0);
            if (!v) continue;
            const dfm_video_info *in = dfm_video_get_info(v);
            CHECK_EQ(in->orientation, o);
            CHECK_EQ(in->width, w);
            CHECK_EQ(in->height, h);
            const int ow = scaled ? w / 2 : w, oh = scaled ? h / 2 : h;
            if (scaled) CHECK_EQ(dfm_video_set_output_size(v, ow, oh), 0);
            int64_t idx[] = {0, 2};
            uint8_t *f = NULL;
            CHECK_EQ(dfm_video_read(v, idx, 2, &f), 0);
            if (f) {
                for (int k = 0; k < 2; k++) {
                    int ok = quads_are(f + (size_t)k * ow * oh * 3, ow, oh, shown[o]);
                    if (!ok) fprintf(stderr, "  rotation %g hflip %d vflip %d, scaled %d, frame %d\n", cases[i].rot,
                                     cases[i].hflip, cases[i].vflip, scaled, k);
                    CHECK(ok);
                }
                free(f);
            }
            dfm_video_close(v);
        }
    }
}
