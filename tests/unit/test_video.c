/* test_video.c — video decode: stream info, frame selection (repeats, rewinds), the counting
 * pass, display-matrix rotation, errors (past the end, truncated files, limits, missing file).
 * Fixtures: tests/fixtures/media/clip.{mp4,mkv}, clip_rot90.mp4 from
 * scripts/make-media-fixtures.sh: 64x48, 20 frames at 10 fps, H.264 with B-frames, frame N a
 * flat colour (8 + 12 N, 200 - 8 N, 60). */
#include "test.h"
#include "base/buf.h"
#include "base/error.h"
#include "media/video.h"

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
    CHECK_EQ(dfm_video_read(v, past, 2, &f), DFM_E_FORMAT);
    CHECK(f == NULL);
    CHECK(strstr(dfm_errmsg(), "only 20 frames") != NULL);
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

    /* truncated copies: at 100 bytes nothing opens; cut inside the media data (the moov box is
     * at the front) opens but cannot deliver the last frames */
    dfm_buf b = {0};
    CHECK_EQ(dfm_read_file(path, 0, &b), 0);
    size_t cuts[] = {0, 100, b.len / 2, b.len * 3 / 4, b.len - 10};
    for (int k = 0; k < 5; k++) {
        snprintf(tmp, sizeof tmp, "%s/cut%d.mp4", dfm_test_tmpdir(), k);
        CHECK_EQ(dfm_write_file_atomic(tmp, b.data, cuts[k]), 0);
        v = NULL;
        int rc = dfm_video_open(&v, tmp, 0, 0);
        if (k < 2) CHECK_EQ(rc, DFM_E_FORMAT);
        if (rc < 0) {
            CHECK(v == NULL);
            continue;
        }
        int64_t last[] = {0, dfm_video_get_info(v)->nframes - 1};
        uint8_t *f = NULL;
        rc = dfm_video_read(v, last, 2, &f);
        if (k >= 2 && k < 4) { /* "has only N frames" or the decoder's own complaint */
            CHECK_EQ(rc, DFM_E_FORMAT);
            CHECK(strstr(dfm_errmsg(), "cut") != NULL);
        }
        free(f);
        dfm_video_close(v);
    }
    dfm_buf_free(&b);
}
