/* test_bucket.c — resolution buckets against the reference test vectors (nemo.md §1.4,
 * diffusion-pipe.md §2.3, vectors recomputed with Python/numpy), nearest-AR picks, cover
 * crop, and the frame rules. */
#include "test.h"
#include "base/error.h"
#include "data/bucket.h"

#include <stdlib.h>

/* Parse "WxH WxH ..." into out; returns the count. */
static int parse_wh(const char *s, dfm_wh *out, int max)
{
    int n = 0;
    while (*s && n < max) {
        char *e;
        long w = strtol(s, &e, 10);
        if (e == s || *e != 'x') break;
        long h = strtol(e + 1, &e, 10);
        out[n++] = (dfm_wh){(int)w, (int)h};
        s = e;
        while (*s == ' ') s++;
    }
    return n;
}

static void check_nemo(int q, const char *preset, int count, const char *want)
{
    dfm_wh got[DFM_MAX_BUCKETS], exp[DFM_MAX_BUCKETS];
    int ne = parse_wh(want, exp, DFM_MAX_BUCKETS);
    int64_t P = dfm_bucket_preset_pixels(preset);
    int n = dfm_buckets_nemo(P, q, got, DFM_MAX_BUCKETS);
    CHECK_EQ(ne, count);
    if (n != count) fprintf(stderr, "  q=%d %s: %d buckets, want %d\n", q, preset, n, count);
    CHECK_EQ(n, count);
    for (int i = 0; i < n && i < ne; i++) {
        if (got[i].w != exp[i].w || got[i].h != exp[i].h) {
            fprintf(stderr, "  q=%d %s bucket %d: %dx%d, want %dx%d\n", q, preset, i, got[i].w,
                    got[i].h, exp[i].w, exp[i].h);
            dfm_test_failures++;
        }
        CHECK((int64_t)got[i].w * got[i].h <= P);
        CHECK(got[i].w % q == 0 && got[i].h % q == 0);
    }
}

TEST(bucket_round_half_even)
{
    CHECK_NEAR(dfm_round_half_even(0.5), 0.0, 0);
    CHECK_NEAR(dfm_round_half_even(1.5), 2.0, 0);
    CHECK_NEAR(dfm_round_half_even(2.5), 2.0, 0);
    CHECK_NEAR(dfm_round_half_even(-0.5), 0.0, 0);
    CHECK_NEAR(dfm_round_half_even(-1.5), -2.0, 0);
    CHECK_NEAR(dfm_round_half_even(-2.5), -2.0, 0);
    CHECK_NEAR(dfm_round_half_even(2.4999999999999996), 2.0, 0);
    CHECK_NEAR(dfm_round_half_even(2.5000000000000004), 3.0, 0);
    CHECK_NEAR(dfm_round_half_even(44.5), 44.0, 0); /* 712/16: the 512p 1:2 case */
    CHECK_NEAR(dfm_round_half_even(45.5), 46.0, 0);
    CHECK_NEAR(dfm_round_half_even(7.0), 7.0, 0);
    CHECK_NEAR(dfm_round_half_even(4503599627370497.0), 4503599627370497.0, 0);
}

TEST(bucket_presets)
{
    CHECK_EQ(dfm_bucket_preset_pixels("256p"), 65536);
    CHECK_EQ(dfm_bucket_preset_pixels("512p"), 262144);
    CHECK_EQ(dfm_bucket_preset_pixels("768p"), 589824);
    CHECK_EQ(dfm_bucket_preset_pixels("1024p"), 1048576);
    CHECK_EQ(dfm_bucket_preset_pixels("1536p"), 2359296);
    CHECK_EQ(dfm_bucket_preset_pixels("720p"), -1);
    CHECK_EQ(dfm_bucket_preset_pixels(""), -1);
    CHECK_EQ(dfm_bucket_preset_pixels(NULL), -1);
}

/* nemo.md §1.4 test vectors, all of them. */
TEST(bucket_nemo_q16)
{
    check_nemo(16, "256p", 10,
               "192x336 208x304 224x288 256x256 288x224 304x208 320x192 336x192 352x176 368x160");
    check_nemo(16, "512p", 13,
               "352x720 384x672 416x624 448x576 464x560 512x512 560x464 576x448 624x416 640x400 "
               "672x384 704x368 768x336");
    check_nemo(16, "768p", 14,
               "544x1072 576x1024 624x944 656x880 688x848 768x768 848x688 864x672 928x624 960x608 "
               "992x592 1024x576 1072x544 1152x496");
    check_nemo(16, "1024p", 14,
               "720x1440 768x1360 832x1248 896x1168 928x1120 1024x1024 1136x912 1168x880 1248x832 "
               "1280x816 1296x800 1360x768 1440x720 1552x672");
    check_nemo(16, "1536p", 14,
               "1088x2160 1152x2048 1264x1856 1328x1776 1376x1712 1536x1536 1712x1376 1776x1328 "
               "1872x1248 1936x1216 1968x1184 2048x1152 2160x1088 2336x1008");
}

TEST(bucket_nemo_q64)
{
    check_nemo(64, "256p", 5, "192x320 192x256 256x256 256x192 320x192");
    check_nemo(64, "512p", 6, "384x640 448x576 512x512 576x448 640x384 768x320");
    check_nemo(64, "768p", 13,
               "512x1088 576x1024 640x896 640x832 768x768 832x704 832x640 896x640 896x576 960x576 "
               "1024x576 1024x512 1152x512");
    check_nemo(64, "1024p", 10,
               "768x1344 832x1216 896x1152 1024x1024 1152x896 1216x832 1280x768 1344x768 1408x704 "
               "1472x640");
    check_nemo(64, "1536p", 13,
               "1088x2112 1152x2048 1216x1856 1344x1728 1408x1664 1536x1536 1664x1344 1728x1344 "
               "1792x1280 1920x1216 2048x1152 2112x1088 2304x1024");
}

TEST(bucket_nemo_q8)
{
    check_nemo(8, "512p", 14,
               "360x720 384x680 416x624 448x584 464x560 512x512 568x456 584x440 624x416 640x400 "
               "648x400 680x384 720x360 776x336");
}

TEST(bucket_nemo_errors)
{
    dfm_wh b[4];
    CHECK_EQ(dfm_buckets_nemo(0, 16, b, 4), DFM_E_ARG);
    CHECK_EQ(dfm_buckets_nemo(262144, 0, b, 4), DFM_E_ARG);
    CHECK_EQ(dfm_buckets_nemo(262144, 16, b, 4), DFM_E_LIMIT); /* 13 buckets do not fit in 4 */
    /* A tiny budget: every bucket below q is dropped. */
    CHECK_EQ(dfm_buckets_nemo(100, 16, b, 4), 0);
    CHECK_EQ(dfm_buckets_nemo(256, 16, b, 4), 1);
    CHECK(b[0].w == 16 && b[0].h == 16);
}

TEST(bucket_pick_nearest_ar)
{
    dfm_wh b[DFM_MAX_BUCKETS];
    int n = dfm_buckets_nemo(262144, 16, b, DFM_MAX_BUCKETS); /* Wan 512p */
    CHECK_EQ(n, 13);
    int i = dfm_bucket_pick_nearest_ar(b, n, 1920, 1080); /* 16:9 -> 672x384 (1.75) */
    CHECK(b[i].w == 672 && b[i].h == 384);
    i = dfm_bucket_pick_nearest_ar(b, n, 1080, 1920);     /* 9:16 -> 384x672 */
    CHECK(b[i].w == 384 && b[i].h == 672);
    i = dfm_bucket_pick_nearest_ar(b, n, 500, 500);
    CHECK(b[i].w == 512 && b[i].h == 512);
    i = dfm_bucket_pick_nearest_ar(b, n, 5000, 100);      /* extreme: the widest */
    CHECK_EQ(i, n - 1);
    i = dfm_bucket_pick_nearest_ar(b, n, 100, 5000);
    CHECK_EQ(i, 0);
    /* A tie goes to the first (lower aspect ratio): 1.0 is 0.25 from both 0.75 and 1.25. */
    dfm_wh t[2] = {{300, 400}, {500, 400}};
    CHECK_EQ(dfm_bucket_pick_nearest_ar(t, 2, 64, 64), 0);
    CHECK_EQ(dfm_bucket_pick_nearest_ar(t, 0, 64, 64), -1);
    CHECK_EQ(dfm_bucket_pick_nearest_ar(t, 2, 64, 0), -1);
}

/* diffusion-pipe.md §2.3 worked example: resolutions=[512], AR 0.5..2.0 x7, q=16. */
TEST(bucket_log_worked_example)
{
    dfm_wh b[DFM_MAX_BUCKETS];
    double r[DFM_MAX_BUCKETS];
    int n = dfm_buckets_log(0.5, 2.0, 7, 512, 16, b, DFM_MAX_BUCKETS, r);
    CHECK_EQ(n, 7);
    const double wr[] = {0.5, 0.63, 0.794, 1.0, 1.26, 1.587, 2.0};
    dfm_wh want[7];
    CHECK_EQ(parse_wh("368x720 400x640 464x576 512x512 576x464 640x400 720x368", want, 7), 7);
    for (int i = 0; i < n && i < 7; i++) {
        CHECK(r[i] == wr[i]); /* exactly the double Python prints as that decimal */
        CHECK_EQ(b[i].w, want[i].w);
        CHECK_EQ(b[i].h, want[i].h);
    }
    /* ratios_out may be NULL */
    CHECK_EQ(dfm_buckets_log(0.5, 2.0, 7, 512, 16, b, DFM_MAX_BUCKETS, NULL), 7);
}

/* More vectors from numpy: geomspace + round(np.float64, 3) + set + sort, then the sizes. */
TEST(bucket_log_numpy_vectors)
{
    dfm_wh b[DFM_MAX_BUCKETS];
    double r[DFM_MAX_BUCKETS];
    int n = dfm_buckets_log(0.25, 4.0, 9, 768, 32, b, DFM_MAX_BUCKETS, r);
    CHECK_EQ(n, 9);
    const double r9[] = {0.25, 0.354, 0.5, 0.707, 1.0, 1.414, 2.0, 2.828, 4.0};
    dfm_wh w9[9];
    parse_wh("384x1536 448x1280 544x1088 640x928 768x768 928x640 1088x544 1280x448 1536x384", w9, 9);
    for (int i = 0; i < n && i < 9; i++) {
        CHECK(r[i] == r9[i]);
        CHECK(b[i].w == w9[i].w && b[i].h == w9[i].h);
    }
    /* 0.5625 is exactly representable: 562.5 rounds half to even -> 0.562. */
    n = dfm_buckets_log(0.5625, 1.7778, 5, 480, 16, b, DFM_MAX_BUCKETS, r);
    CHECK_EQ(n, 5);
    const double r5[] = {0.562, 0.75, 1.0, 1.333, 1.778};
    dfm_wh w5[5];
    parse_wh("352x640 416x560 480x480 560x416 640x352", w5, 5);
    for (int i = 0; i < n && i < 5; i++) {
        CHECK(r[i] == r5[i]);
        CHECK(b[i].w == w5[i].w && b[i].h == w5[i].h);
    }
    /* 50 ratios: every interior value goes through pow(10, linspace) and the 3-decimal round. */
    n = dfm_buckets_log(0.5, 2.0, 50, 256, 16, b, DFM_MAX_BUCKETS, r);
    CHECK_EQ(n, 50);
    const double r50[] = {
        0.5,   0.514, 0.529, 0.544, 0.56,  0.576, 0.593, 0.61,  0.627, 0.645, 0.663, 0.683, 0.702,
        0.722, 0.743, 0.764, 0.786, 0.809, 0.832, 0.856, 0.88,  0.906, 0.932, 0.958, 0.986, 1.014,
        1.043, 1.073, 1.104, 1.136, 1.168, 1.202, 1.236, 1.272, 1.308, 1.346, 1.385, 1.424, 1.465,
        1.507, 1.55,  1.595, 1.641, 1.688, 1.736, 1.786, 1.837, 1.89,  1.944, 2.0};
    for (int i = 0; i < n && i < 50; i++) CHECK(r[i] == r50[i]);
    CHECK(b[0].w == 176 && b[0].h == 368);
    CHECK(b[1].w == 176 && b[1].h == 352);
    CHECK(b[24].w == 256 && b[24].h == 256);
    CHECK(b[49].w == 368 && b[49].h == 176);
    /* Equal ends de-duplicate to one ratio; reversed ends sort ascending. */
    CHECK_EQ(dfm_buckets_log(1.0, 1.0, 3, 512, 16, b, DFM_MAX_BUCKETS, r), 1);
    CHECK(r[0] == 1.0 && b[0].w == 512 && b[0].h == 512);
    CHECK_EQ(dfm_buckets_log(2.0, 0.5, 7, 512, 16, b, DFM_MAX_BUCKETS, r), 7);
    CHECK(r[0] == 0.5 && r[6] == 2.0 && b[0].w == 368 && b[0].h == 720);
    CHECK_EQ(dfm_buckets_log(0.5, 2.0, 1, 512, 16, b, DFM_MAX_BUCKETS, r), 1);
    CHECK(r[0] == 0.5);
    CHECK_EQ(dfm_buckets_log(0.0, 2.0, 7, 512, 16, b, DFM_MAX_BUCKETS, r), DFM_E_ARG);
    CHECK_EQ(dfm_buckets_log(0.5, 2.0, 0, 512, 16, b, DFM_MAX_BUCKETS, r), DFM_E_ARG);
    CHECK_EQ(dfm_buckets_log(0.5, 2.0, 7, 512, 16, b, 3, r), DFM_E_LIMIT);
}

TEST(bucket_pick_log_ar)
{
    const double r[] = {0.5, 0.63, 0.794, 1.0, 1.26, 1.587, 2.0};
    CHECK_EQ(dfm_bucket_pick_log_ar(r, 7, 1920, 1080), 5); /* ln 1.778: nearer 1.587 than 2.0 */
    CHECK_EQ(dfm_bucket_pick_log_ar(r, 7, 1080, 1920), 1);
    CHECK_EQ(dfm_bucket_pick_log_ar(r, 7, 512, 512), 3);
    CHECK_EQ(dfm_bucket_pick_log_ar(r, 7, 4000, 100), 6);
    CHECK_EQ(dfm_bucket_pick_log_ar(r, 7, 100, 4000), 0);
    /* The log-space midpoint of 0.5 and 1.0 is 1/sqrt(2) = 0.70711: 1000/1414 (0.70721) is
     * nearer 1.0, 1000/1415 (0.70671) nearer 0.5 (numpy agrees). */
    const double t[] = {0.5, 1.0};
    CHECK_EQ(dfm_bucket_pick_log_ar(t, 2, 1, 1), 1);
    CHECK_EQ(dfm_bucket_pick_log_ar(t, 2, 1000, 1414), 1);
    CHECK_EQ(dfm_bucket_pick_log_ar(t, 2, 1000, 1415), 0);
    /* |ln 1 - ln 0.5| == |ln 1 - ln 2| exactly: a tie goes to the first, as np.argmin. */
    const double s2[] = {0.5, 2.0};
    CHECK_EQ(dfm_bucket_pick_log_ar(s2, 2, 7, 7), 0);
    const double u[] = {1.0, 1.0};
    CHECK_EQ(dfm_bucket_pick_log_ar(u, 2, 3, 2), 0);
    CHECK_EQ(dfm_bucket_pick_log_ar(r, 0, 3, 2), -1);
}

TEST(bucket_cover_crop)
{
    int rw, rh, l, t;
    dfm_cover_crop(1920, 1080, 832, 464, &rw, &rh, &l, &t);
    CHECK(rw == 832 && rh == 468 && l == 0 && t == 2);
    dfm_cover_crop(640, 480, 512, 512, &rw, &rh, &l, &t);
    CHECK(rw == 682 && rh == 512 && l == 85 && t == 0);
    dfm_cover_crop(100, 100, 512, 512, &rw, &rh, &l, &t); /* upscale */
    CHECK(rw == 512 && rh == 512 && l == 0 && t == 0);
    dfm_cover_crop(720, 1280, 464, 560, &rw, &rh, &l, &t);
    CHECK(rw == 464 && rh == 824 && l == 0 && t == 132);
    dfm_cover_crop(1280, 720, 1280, 720, &rw, &rh, &l, &t);
    CHECK(rw == 1280 && rh == 720 && l == 0 && t == 0);
    /* Python's int(398 * (225/398)) is 224: the clamp keeps the target size. */
    CHECK_EQ((int)(398 * (225.0 / 398)), 224);
    dfm_cover_crop(398, 398, 225, 225, &rw, &rh, &l, &t);
    CHECK(rw == 225 && rh == 225 && l == 0 && t == 0);
    dfm_cover_crop(1000, 3000, 333, 999, &rw, &rh, &l, &t);
    CHECK(rw >= 333 && rh >= 999 && rw - 333 < 2 && rh - 999 < 2);
    dfm_cover_crop(0, 10, 64, 64, &rw, &rh, &l, &t); /* degenerate source: no crash */
    CHECK(rw == 64 && rh == 64 && l == 0 && t == 0);
}

TEST(bucket_frames_4k1)
{
    CHECK_EQ(dfm_frames_4k1(0), 0);
    CHECK_EQ(dfm_frames_4k1(-3), 0);
    CHECK_EQ(dfm_frames_4k1(1), 1);
    CHECK_EQ(dfm_frames_4k1(4), 1);
    CHECK_EQ(dfm_frames_4k1(5), 5);
    CHECK_EQ(dfm_frames_4k1(32), 29);
    CHECK_EQ(dfm_frames_4k1(33), 33);
    CHECK_EQ(dfm_frames_4k1(65), 65);
    CHECK_EQ(dfm_frames_4k1(80), 77);
    CHECK_EQ(dfm_frames_4k1(81), 81);
}

TEST(bucket_frame_bucket_pick)
{
    const int b[] = {1, 33, 65, 97};
    CHECK_EQ(dfm_frame_bucket_pick(b, 4, 1), 1);    /* an image */
    CHECK_EQ(dfm_frame_bucket_pick(b, 4, 33), 33);
    CHECK_EQ(dfm_frame_bucket_pick(b, 4, 64), 33);
    CHECK_EQ(dfm_frame_bucket_pick(b, 4, 65), 65);
    CHECK_EQ(dfm_frame_bucket_pick(b, 4, 500), 97);
    CHECK_EQ(dfm_frame_bucket_pick(b, 4, 20), 0);   /* a video never goes to bucket 1 */
    CHECK_EQ(dfm_frame_bucket_pick(b, 4, 2), 0);
    CHECK_EQ(dfm_frame_bucket_pick(b, 4, 0), 0);
    const int u[] = {65, 1, 33};                    /* order does not matter */
    CHECK_EQ(dfm_frame_bucket_pick(u, 3, 70), 65);
    CHECK_EQ(dfm_frame_bucket_pick(u, 3, 40), 33);
    const int v[] = {33};
    CHECK_EQ(dfm_frame_bucket_pick(v, 1, 1), 0);    /* no image bucket in the list */
    CHECK_EQ(dfm_frame_bucket_pick(v, 1, 33), 33);
    CHECK_EQ(dfm_frame_bucket_pick(v, 0, 33), 0);
}
