/* test_frames.c — frame selection: numpy linspace truncation, fps resampling, spread / begin /
 * middle clips, caps and edge cases. Expected indices computed with numpy. */
#include "test.h"
#include "base/error.h"
#include "data/frames.h"

#include <stdlib.h>

static void check_idx(const int64_t *got, int n, const int64_t *want, int nw)
{
    CHECK_EQ(n, nw);
    for (int i = 0; i < n && i < nw; i++) {
        if (got[i] != want[i]) {
            fprintf(stderr, "  index %d: %lld, want %lld\n", i, (long long)got[i], (long long)want[i]);
            dfm_test_failures++;
            return;
        }
    }
}

TEST(frames_linspace_trunc)
{
    int64_t out[128];
    dfm_linspace_trunc(0, 99, 10, out);
    const int64_t w10[] = {0, 11, 22, 33, 44, 55, 66, 77, 88, 99};
    check_idx(out, 10, w10, 10);
    /* Float cases where numpy's i*step+start differs from the exact rational value:
     * np.linspace(0, 2, 99)[49] is 0.9999999999999999 -> 0 (exact: 1). */
    dfm_linspace_trunc(0, 2, 99, out);
    CHECK_EQ(out[49], 0);
    CHECK_EQ(out[98], 2);
    dfm_linspace_trunc(0, 18, 67, out);
    CHECK_EQ(out[55], 14);
    dfm_linspace_trunc(0, 6, 95, out);
    CHECK_EQ(out[47], 2);
    dfm_linspace_trunc(5, 5, 3, out); /* zero step */
    CHECK(out[0] == 5 && out[1] == 5 && out[2] == 5);
    dfm_linspace_trunc(3, 9, 1, out); /* one point: the start */
    CHECK_EQ(out[0], 3);
}

/* NeMo's example: 10 frames spread over a 100-frame clip. */
TEST(frames_spread_nemo)
{
    int64_t *idx = NULL;
    int n = dfm_frames_select(100, NULL, 30, 0, 10, 0, DFM_CLIP_SPREAD, &idx);
    const int64_t w[] = {0, 11, 22, 33, 44, 55, 66, 77, 88, 99};
    check_idx(idx, n, w, 10);
    free(idx);
}

/* diffusion-pipe convert_framerate: 90 frames at 30 fps -> 16 fps = 48 frames at
 * trunc(linspace(0, 89, 48)). */
TEST(frames_fps_resample)
{
    const int64_t w48[] = {0,  1,  3,  5,  7,  9,  11, 13, 15, 17, 18, 20, 22, 24, 26, 28,
                           30, 32, 34, 35, 37, 39, 41, 43, 45, 47, 49, 51, 53, 54, 56, 58,
                           60, 62, 64, 66, 68, 70, 71, 73, 75, 77, 79, 81, 83, 85, 87, 89};
    int64_t *idx = NULL;
    int n = dfm_frames_select(90, NULL, 30, 16, 0, 0, DFM_CLIP_SPREAD, &idx);
    check_idx(idx, n, w48, 48);
    free(idx);
    /* The whole resampled clip is the same in every mode. */
    n = dfm_frames_select(90, NULL, 30, 16, 0, 0, DFM_CLIP_BEGIN, &idx);
    check_idx(idx, n, w48, 48);
    free(idx);
    /* begin with want=5 takes the first 5 of the resampled clip. */
    n = dfm_frames_select(90, NULL, 30, 16, 5, 0, DFM_CLIP_BEGIN, &idx);
    check_idx(idx, n, w48, 5);
    free(idx);
    /* middle: start = (48 - 8) / 2 = 20 of the resampled clip. */
    n = dfm_frames_select(90, NULL, 30, 16, 8, 0, DFM_CLIP_MIDDLE, &idx);
    check_idx(idx, n, w48 + 20, 8);
    free(idx);
    /* Upsampling repeats frames: 4 frames at 8 fps -> 16 fps = 8 frames. */
    n = dfm_frames_select(4, NULL, 8, 16, 0, 0, DFM_CLIP_SPREAD, &idx);
    const int64_t w8[] = {0, 0, 0, 1, 1, 2, 2, 3}; /* trunc(linspace(0, 3, 8)) */
    check_idx(idx, n, w8, 8);
    free(idx);
    /* Equal rates are the identity. */
    n = dfm_frames_select(5, NULL, 24, 24, 0, 0, DFM_CLIP_SPREAD, &idx);
    const int64_t w5[] = {0, 1, 2, 3, 4};
    check_idx(idx, n, w5, 5);
    free(idx);
    /* A clip shorter than one target frame keeps its first frame. */
    n = dfm_frames_select(1, NULL, 30, 16, 0, 0, DFM_CLIP_SPREAD, &idx);
    CHECK_EQ(n, 1);
    if (n == 1) CHECK_EQ(idx[0], 0);
    free(idx);
}

TEST(frames_begin_middle)
{
    int64_t *idx = NULL;
    int n = dfm_frames_select(100, NULL, 0, 0, 4, 0, DFM_CLIP_BEGIN, &idx);
    const int64_t wb[] = {0, 1, 2, 3};
    check_idx(idx, n, wb, 4);
    free(idx);
    n = dfm_frames_select(100, NULL, 0, 0, 4, 0, DFM_CLIP_MIDDLE, &idx);
    const int64_t wm[] = {48, 49, 50, 51}; /* int((100 - 4) / 2) = 48 */
    check_idx(idx, n, wm, 4);
    free(idx);
    n = dfm_frames_select(10, NULL, 0, 0, 5, 0, DFM_CLIP_MIDDLE, &idx);
    const int64_t wm2[] = {2, 3, 4, 5, 6}; /* int(5 / 2) = 2 */
    check_idx(idx, n, wm2, 5);
    free(idx);
}

TEST(frames_edges)
{
    int64_t *idx = (int64_t *)1;
    /* n = 0: nothing, no allocation. */
    CHECK_EQ(dfm_frames_select(0, NULL, 30, 16, 10, 0, DFM_CLIP_SPREAD, &idx), 0);
    CHECK(idx == NULL);
    /* n = 1 */
    int n = dfm_frames_select(1, NULL, 0, 0, 10, 0, DFM_CLIP_SPREAD, &idx);
    CHECK_EQ(n, 1);
    if (n == 1) CHECK_EQ(idx[0], 0);
    free(idx);
    /* want > len: every frame, in every mode. */
    const int64_t w6[] = {0, 1, 2, 3, 4, 5};
    for (int m = DFM_CLIP_SPREAD; m <= DFM_CLIP_MIDDLE; m++) {
        n = dfm_frames_select(6, NULL, 0, 0, 81, 0, (dfm_clip_mode)m, &idx);
        check_idx(idx, n, w6, 6);
        free(idx);
    }
    /* want == len: every frame. */
    n = dfm_frames_select(6, NULL, 0, 0, 6, 0, DFM_CLIP_SPREAD, &idx);
    check_idx(idx, n, w6, 6);
    free(idx);
    /* want = 0: all frames, capped by max_frames (spread over the clip). */
    n = dfm_frames_select(100, NULL, 0, 0, 0, 10, DFM_CLIP_SPREAD, &idx);
    const int64_t w10[] = {0, 11, 22, 33, 44, 55, 66, 77, 88, 99};
    check_idx(idx, n, w10, 10);
    free(idx);
    n = dfm_frames_select(100, NULL, 0, 0, 0, 3, DFM_CLIP_BEGIN, &idx);
    const int64_t w3[] = {0, 1, 2};
    check_idx(idx, n, w3, 3);
    free(idx);
    /* max_frames also caps an explicit want. */
    n = dfm_frames_select(100, NULL, 0, 0, 50, 2, DFM_CLIP_BEGIN, &idx);
    check_idx(idx, n, w3, 2);
    free(idx);
    /* want = 1 spread: frame 0 (linspace with one point is the start). */
    n = dfm_frames_select(100, NULL, 0, 0, 1, 0, DFM_CLIP_SPREAD, &idx);
    CHECK_EQ(n, 1);
    if (n == 1) CHECK_EQ(idx[0], 0);
    free(idx);
    /* Absurd resampling is refused, not attempted. */
    CHECK_EQ(dfm_frames_select(1000, NULL, 1, 1e9, 0, 0, DFM_CLIP_SPREAD, &idx), DFM_E_LIMIT);
    CHECK(idx == NULL);
    CHECK_EQ(dfm_frames_select((int64_t)1 << 40, NULL, 0, 0, 0, 0, DFM_CLIP_SPREAD, &idx), DFM_E_LIMIT);
}

/* Resampling a variable-rate clip by presentation time: frames 0-9 every 0.1 s, 10-14 every
 * 0.2 s, 15-19 every 0.4 s (19 frames over 3.9 s: 4.87 fps on average). At 5 fps the clip keeps
 * floor(20 * 5 / 4.87) = 20 frames, each the one on screen at linspace(0, 3.9, 20); evenly spaced
 * times give exactly the index rule. */
TEST(frames_fps_by_time)
{
    const double t[20] = {0, .1, .2, .3, .4, .5, .6, .7, .8, .9, 1.1, 1.3, 1.5, 1.7, 1.9, 2.3, 2.7, 3.1, 3.5, 3.9};
    int64_t *idx = NULL;
    int n = dfm_frames_select(20, t, 19 / 3.9, 5, 0, 0, DFM_CLIP_SPREAD, &idx);
    const int64_t want[20] = {0, 2, 4, 6, 8, 9, 10, 11, 12, 13, 14, 14, 15, 15, 16, 16, 17, 17, 18, 19};
    CHECK_EQ(n, 20);
    for (int i = 0; i < n && i < 20; i++) CHECK_EQ(idx[i], want[i]);
    free(idx);
    /* the same rule on evenly spaced times (90 frames at 30 fps -> 16 fps) equals the index rule */
    double even[90];
    for (int i = 0; i < 90; i++) even[i] = i / 30.0;
    int64_t *by_index = NULL;
    int ni = dfm_frames_select(90, NULL, 30, 16, 0, 0, DFM_CLIP_SPREAD, &by_index);
    n = dfm_frames_select(90, even, 30, 16, 0, 0, DFM_CLIP_SPREAD, &idx);
    CHECK_EQ(n, ni);
    CHECK(n == ni && !memcmp(idx, by_index, (size_t)n * sizeof *idx));
    free(idx), free(by_index);
}
