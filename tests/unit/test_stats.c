/* test_stats.c — dfm-stats' pure logic: histogram bins (nice widths, the fewest bins that hold
 * the range, values on edges), exact distributions (median against a sorted copy), bucket names
 * and order, what one sample counts as (caption characters and words, tokens, duration, bad
 * samples, repeats, non-finite values by their bits), the first latent frame, and the contact
 * sheet's layout and pixels. */
#include "test.h"
#include "base/error.h"
#include "data/stats.h"
#include "data/stats_sheet.h"
#include "io/npy.h"

#include <cjson/cJSON.h>
#include <stdlib.h>

/* Is w a nice width, m × 10^e with m in {1, 2, 5}? */
static int is_nice(double w)
{
    double e = floor(log10(w)), m = w / pow(10, e);
    return fabs(m - 1) < 1e-9 || fabs(m - 2) < 1e-9 || fabs(m - 5) < 1e-9 || fabs(m - 10) < 1e-9;
}

/* The bins a width gives, written out independently: the first edge at or below min, then as
 * many bins as it takes to reach past max (the last bin closed). */
static int bins_needed(double min, double max, double w)
{
    double lo = floor(min / w) * w;
    int n = 1;
    while (lo + n * w <= max) n++;
    return n;
}

static void check_bins(double min, double max, int integer, int max_bins)
{
    dfm_stats_hist_bins b;
    CHECK_EQ(dfm_stats_hist_choose(min, max, integer, max_bins, &b), 0);
    CHECK(b.n >= 1 && b.n <= max_bins);
    CHECK(is_nice(b.width));
    if (integer) CHECK(b.width >= 1 && b.lo == floor(b.lo));
    CHECK(dfm_stats_hist_edge(&b, 0) <= min);
    CHECK(max <= dfm_stats_hist_edge(&b, b.n));
    if (min < max) { /* the smallest nice width that fits (the next smaller needs more bins) */
        double e = floor(log10(b.width)), m = b.width / pow(10, e), smaller;
        smaller = m < 1.5 ? 5 * pow(10, e - 1) : m < 3 ? pow(10, e) : 2 * pow(10, e);
        if (!integer || smaller >= 1) CHECK(bins_needed(min, max, smaller) > max_bins);
    }
    /* every value lands in the bin whose edges hold it */
    for (int k = 0; k <= 50; k++) {
        double v = min + (max - min) * k / 50;
        int i = dfm_stats_hist_index(&b, v);
        CHECK(i >= 0 && i < b.n);
        CHECK(dfm_stats_hist_edge(&b, i) <= v);
    CHECK(v < dfm_stats_hist_edge(&b, i + 1) || (i == b.n - 1 && v <= dfm_stats_hist_edge(&b, b.n)));
    }
}

TEST(stats_hist_bins)
{
    dfm_stats_hist_bins b;
    /* the caption lengths of the test media: 11..27 characters -> width 2 from 10, 9 bins */
    CHECK_EQ(dfm_stats_hist_choose(11, 27, 1, 10, &b), 0);
    CHECK_NEAR(b.width, 2, 0);
    CHECK_NEAR(b.lo, 10, 0);
    CHECK_EQ(b.n, 9);
    /* 5..105: width 10 would need 11 bins, so 20 from 0 (6 bins) */
    CHECK_EQ(dfm_stats_hist_choose(5, 105, 1, 10, &b), 0);
    CHECK_NEAR(b.width, 20, 0);
    CHECK_NEAR(b.lo, 0, 0);
    CHECK_EQ(b.n, 6);
    /* integers never get fractional bins: 2..6 in width 1 */
    CHECK_EQ(dfm_stats_hist_choose(2, 6, 1, 10, &b), 0);
    CHECK_NEAR(b.width, 1, 0);
    CHECK_EQ(b.n, 5);
    /* seconds: 1/6 .. 5/12 -> width 0.05 from 0.15, 6 bins */
    CHECK_EQ(dfm_stats_hist_choose(1.0 / 6, 5.0 / 12, 0, 10, &b), 0);
    CHECK_NEAR(b.width, 0.05, 1e-15);
    CHECK_NEAR(b.lo, 0.15, 1e-12);
    CHECK_EQ(b.n, 6);
    /* one value: one bin */
    CHECK_EQ(dfm_stats_hist_choose(0, 0, 1, 10, &b), 0);
    CHECK(b.n == 1 && b.lo == 0 && b.width == 1);
    CHECK_EQ(dfm_stats_hist_choose(7, 7, 1, 10, &b), 0);
    CHECK(b.n == 1 && b.lo == 7 && b.width == 1);
    CHECK_EQ(dfm_stats_hist_choose(2.0625, 2.0625, 0, 10, &b), 0);
    CHECK(b.n == 1 && b.lo == 2 && b.width == 0.5);
    /* values on an edge go up; outside the range they are clamped */
    CHECK_EQ(dfm_stats_hist_choose(0, 100, 1, 10, &b), 0);
    CHECK_NEAR(b.width, 20, 0); /* width 10 would need 11 bins */
    CHECK_EQ(b.n, 6);
    CHECK_EQ(dfm_stats_hist_index(&b, 20), 1);
    CHECK_EQ(dfm_stats_hist_index(&b, 19.999), 0);
    CHECK_EQ(dfm_stats_hist_index(&b, 100), b.n - 1);
    CHECK_EQ(dfm_stats_hist_index(&b, -5), 0);
    CHECK_EQ(dfm_stats_hist_index(&b, 1e9), b.n - 1);
    /* bad ranges */
    CHECK_EQ(dfm_stats_hist_choose(2, 1, 0, 10, &b), DFM_E_ARG);
    CHECK_EQ(dfm_stats_hist_choose(0, NAN, 0, 10, &b), DFM_E_ARG);
    CHECK_EQ(dfm_stats_hist_choose(0, 1, 0, 1, &b), DFM_E_ARG);
    /* two bins: across 0 the edges fall on 0 */
    CHECK_EQ(dfm_stats_hist_choose(-10, 12, 1, 2, &b), 0);
    CHECK(b.n == 2 && b.lo == -20 && b.width == 20);
    /* many ranges, the invariants each time */
    uint64_t x = 12345;
    for (int t = 0; t < 400; t++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        double a = (double)(x >> 40) / (1 << 12), s = (double)((x >> 20) & 0xfffff) / (1 << (t % 20));
        int integer = t % 2, bins = 2 + (int)((x >> 8) % 20);
        if (integer) a = floor(a), s = floor(s);
        check_bins(t % 3 ? a : -a, (t % 3 ? a : -a) + s, integer, bins);
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

TEST(stats_dist)
{
    dfm_stats_dist d = {0};
    CHECK_NEAR(dfm_stats_dist_median(&d), 0, 0);
    dfm_stats_hist_bins b;
    uint64_t counts[DFM_STATS_BINS];
    CHECK_EQ(dfm_stats_dist_hist(&d, 1, DFM_STATS_BINS, &b, counts), DFM_E_ARG);
    double v[301];
    uint64_t x = 99;
    for (int n = 1; n <= 301; n += 50) { /* odd and even counts, many repeats */
        dfm_stats_dist_free(&d);
        for (int i = 0; i < n; i++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            v[i] = (double)((x >> 33) % 40);
            CHECK_EQ(dfm_stats_dist_add(&d, v[i]), 0);
        }
        qsort(v, (size_t)n, sizeof *v, cmp_double);
        double med = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
        CHECK_NEAR(dfm_stats_dist_median(&d), med, 0);
        CHECK_NEAR(dfm_stats_dist_min(&d), v[0], 0);
        CHECK_NEAR(dfm_stats_dist_max(&d), v[n - 1], 0);
        CHECK_EQ(d.count, n);
        CHECK(d.n <= 40);
        CHECK_EQ(dfm_stats_dist_hist(&d, 1, DFM_STATS_BINS, &b, counts), 0);
        uint64_t sum = 0;
        for (int i = 0; i < DFM_STATS_BINS; i++) sum += counts[i];
        CHECK_EQ(sum, n);
        /* bin counts against a scalar pass over the values */
        for (int i = 0; i < b.n; i++) {
            uint64_t want = 0;
            for (int k = 0; k < n; k++)
                want += v[k] >= dfm_stats_hist_edge(&b, i) && (v[k] < dfm_stats_hist_edge(&b, i + 1) || i == b.n - 1);
            CHECK_EQ(counts[i], want);
        }
    }
    CHECK_EQ(dfm_stats_dist_add(&d, INFINITY), DFM_E_ARG);
    dfm_stats_dist_free(&d);
}

TEST(stats_bucket_names_order)
{
    char name[96];
    dfm_stats_bucket px = {DFM_STATS_PIXELS, 832, 480, 81, 0}, lat = {DFM_STATS_LATENT, 104, 60, 21, 16},
                     none = {DFM_STATS_NONE, 0, 0, 0, 0};
    CHECK_STR(dfm_stats_bucket_name(&px, name, sizeof name), "832x480x81");
    CHECK_STR(dfm_stats_bucket_name(&lat, name, sizeof name), "latent [16,21,60,104]");
    CHECK_STR(dfm_stats_bucket_name(&none, name, sizeof name), "none");
    dfm_stats_bucket img = {DFM_STATS_PIXELS, 1024, 1024, 1, 0}, tall = {DFM_STATS_PIXELS, 480, 832, 81, 0};
    CHECK(dfm_stats_bucket_cmp(&img, &px) < 0);  /* frames first: the image before the clip */
    CHECK(dfm_stats_bucket_cmp(&tall, &px) < 0); /* same area: the narrower first */
    CHECK(dfm_stats_bucket_cmp(&px, &lat) < 0);
    CHECK(dfm_stats_bucket_cmp(&lat, &none) < 0);
    CHECK_EQ(dfm_stats_bucket_cmp(&px, &px), 0);
}

/* A .npy field of dtype t and shape, every element the bytes of `fill` (itemsize bytes). */
static void set_npy(dfm_sample *s, const char *name, dfm_npy_dtype t, int ndim, const int64_t *shape,
                    const void *fill)
{
    size_t n = 1, item = dfm_npy_itemsize(t);
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    uint8_t *data = malloc(n * item + 1), *npy;
    for (size_t i = 0; i < n; i++) memcpy(data + i * item, fill, item);
    size_t len;
    CHECK_EQ(dfm_npy_build(t, ndim, shape, data, &npy, &len), 0);
    CHECK_EQ(dfm_sample_set_owned(s, name, npy, len), 0);
    free(data);
}

static double jnum(const cJSON *o, const char *a, const char *b)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, a);
    if (b) x = cJSON_GetObjectItemCaseSensitive(x, b);
    return cJSON_IsNumber(x) ? x->valuedouble : -1;
}

TEST(stats_samples)
{
    dfm_stats *st;
    CHECK_EQ(dfm_stats_new(&st, &(dfm_stats_opts){.check = 1}), 0);
    dfm_sample s;
    dfm_sample_init(&s);
    dfm_stats_bucket b;
    /* a clip: bucket and fps from json, a UTF-8 caption, tokens from json.text */
    dfm_sample_set_key(&s, "a");
    dfm_sample_set_str(&s, "txt", "h\xc3\xa9llo  w\xc3\xb6rld\n");
    dfm_sample_set_str(&s, "json", "{\"media\":\"video\",\"fps\":16,\"frames\":40,"
                                   "\"bucket\":{\"width\":64,\"height\":32,\"frames\":33},"
                                   "\"text\":{\"tokens\":7,\"truncated\":true}}");
    uint8_t px = 9;
    set_npy(&s, "frames.npy", DFM_NPY_U8, 4, (int64_t[]){33, 32, 64, 3}, &px);
    CHECK_EQ(dfm_stats_add(st, &s, &b), 0);
    CHECK(b.kind == DFM_STATS_PIXELS && b.w == 64 && b.h == 32 && b.f == 33);
    /* an image with latents only (no json): its latent shape is the bucket; a NaN among them,
     * an Inf in text.npy; tokens from text.npy's rows */
    dfm_sample_clear(&s);
    dfm_sample_set_key(&s, "b");
    dfm_sample_set_str(&s, "txt", "   ");
    uint16_t nan16 = 0x7e00, one16 = 0x3c00;
    set_npy(&s, "latents.npy", DFM_NPY_F16, 4, (int64_t[]){16, 1, 4, 6}, &nan16);
    float inf = INFINITY;
    set_npy(&s, "text.npy", DFM_NPY_F32, 2, (int64_t[]){5, 8}, &inf);
    CHECK_EQ(dfm_stats_add(st, &s, &b), 0);
    CHECK(b.kind == DFM_STATS_LATENT && b.c == 16 && b.f == 1 && b.h == 4 && b.w == 6);
    /* the same key again, finite, no caption; tokens.npy gives 3 */
    dfm_sample_clear(&s);
    dfm_sample_set_key(&s, "b");
    set_npy(&s, "latents.npy", DFM_NPY_F16, 4, (int64_t[]){16, 1, 4, 6}, &one16);
    int32_t tok = 5;
    set_npy(&s, "tokens.npy", DFM_NPY_I32, 1, (int64_t[]){3}, &tok);
    CHECK_EQ(dfm_stats_add(st, &s, NULL), 0);
    /* bad: a json that is not an object, latents of the wrong rank, frames not uint8 */
    dfm_sample_clear(&s);
    dfm_sample_set_key(&s, "bad1");
    dfm_sample_set_str(&s, "json", "[1,2");
    CHECK_EQ(dfm_stats_add(st, &s, NULL), DFM_E_FORMAT);
    CHECK(strstr(dfm_errmsg(), "sample 'bad1': json is not a JSON object") != NULL);
    dfm_sample_clear(&s);
    dfm_sample_set_key(&s, "bad2");
    set_npy(&s, "latents.npy", DFM_NPY_F32, 2, (int64_t[]){4, 4}, &inf);
    CHECK_EQ(dfm_stats_add(st, &s, NULL), DFM_E_FORMAT);
    CHECK(strstr(dfm_errmsg(), "sample 'bad2': latents.npy is float32 [4,4]") != NULL);
    dfm_sample_clear(&s);
    dfm_sample_set_key(&s, "bad3");
    dfm_sample_set_str(&s, "frames.npy", "not an array");
    CHECK_EQ(dfm_stats_add(st, &s, NULL), DFM_E_FORMAT);
    CHECK(strstr(dfm_errmsg(), "sample 'bad3': frames.npy") != NULL);
    dfm_sample_free(&s);

    CHECK_EQ(dfm_stats_samples(st), 3);
    CHECK_EQ(dfm_stats_bucket_count(st, &b), 2);
    cJSON *j;
    CHECK_EQ(dfm_stats_json(st, &j), 0);
    CHECK_EQ(jnum(j, "samples", NULL), 3);
    CHECK_EQ(jnum(j, "videos", NULL), 1);
    CHECK_EQ(jnum(j, "images", NULL), 2);
    CHECK_EQ(jnum(j, "bad", NULL), 3);
    CHECK_EQ(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "buckets")), 2);
    /* "héllo  wörld\n": 13 characters, 2 words; "   ": 3 characters, 0 words (empty) */
    CHECK_EQ(jnum(j, "caption_chars", "max"), 13);
    CHECK_EQ(jnum(j, "caption_chars", "min"), 3);
    CHECK_EQ(jnum(j, "caption_words", "max"), 2);
    CHECK_EQ(jnum(j, "caption_words", "min"), 0);
    CHECK_EQ(jnum(j, "missing", "caption"), 1);
    CHECK_EQ(jnum(j, "missing", "empty_caption"), 1);
    CHECK_EQ(jnum(j, "missing", "latents"), 1);
    CHECK_EQ(jnum(j, "missing", "text"), 2);
    CHECK_EQ(jnum(j, "truncated_captions", NULL), 1);
    /* tokens 7 (json), 5 (text.npy rows), 3 (tokens.npy) */
    CHECK_EQ(jnum(j, "caption_tokens", "count"), 3);
    CHECK_EQ(jnum(j, "caption_tokens", "median"), 5);
    /* 33 frames at 16 fps */
    CHECK_NEAR(jnum(j, "duration_s", "max"), 33.0 / 16, 1e-12);
    CHECK_EQ(jnum(j, "duration_s", "count"), 1);
    CHECK_EQ(jnum(j, "nonfinite", "samples"), 1);
    const cJSON *nk = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(
                                             cJSON_GetObjectItemCaseSensitive(j, "nonfinite"), "keys"), 0);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(nk, "fields")),
              "latents.npy: 384, text.npy: 40");
    CHECK_EQ(jnum(j, "duplicates", "count"), 1);
    CHECK_EQ(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "bad_samples")), 3);
    cJSON_Delete(j);
    dfm_buf t = {0};
    CHECK_EQ(dfm_stats_text(st, &t), 0);
    CHECK(strstr((char *)t.data, "samples: 3 (2 images, 1 video); 3 bad samples left out\n") != NULL);
    CHECK(strstr((char *)t.data, "  64x32x33                    1   33.3%  ####################\n") != NULL);
    CHECK(strstr((char *)t.data, "non-finite: 1 sample\n  b: latents.npy: 384, text.npy: 40\n") != NULL);
    CHECK(strstr((char *)t.data, "repeated keys: 1\n  b\n") != NULL);
    dfm_buf_free(&t);
    dfm_stats_free(st);
}

TEST(stats_first_latent_frame)
{
    float v[2 * 3 * 2 * 2];
    for (int i = 0; i < 24; i++) v[i] = (float)i;
    uint8_t *npy, *out;
    size_t len, olen;
    CHECK_EQ(dfm_npy_build(DFM_NPY_F32, 4, (int64_t[]){2, 3, 2, 2}, v, &npy, &len), 0);
    dfm_field f = {"latents.npy", npy, len};
    CHECK_EQ(dfm_sheet_first_latent_frame(&f, &out, &olen), 0);
    dfm_npy a;
    CHECK_EQ(dfm_npy_parse(out, olen, &a), 0);
    CHECK(a.ndim == 4 && a.shape[0] == 2 && a.shape[1] == 1 && a.shape[2] == 2 && a.shape[3] == 2);
    const float *p = (const float *)a.data;
    /* [c, 0, y, x] = c·12 + y·2 + x */
    for (int c = 0; c < 2; c++)
        for (int k = 0; k < 4; k++) CHECK_NEAR(p[c * 4 + k], c * 12 + k, 0);
    free(out);
    free(npy);
    uint8_t u = 0;
    CHECK_EQ(dfm_npy_build(DFM_NPY_U8, 1, (int64_t[]){1}, &u, &npy, &len), 0);
    f = (dfm_field){"latents.npy", npy, len};
    CHECK_EQ(dfm_sheet_first_latent_frame(&f, &out, &olen), DFM_E_FORMAT);
    free(npy);
}

TEST(stats_sheet_layout)
{
    dfm_sheet *sh;
    CHECK_EQ(dfm_sheet_new(&sh, 0), DFM_E_ARG);
    CHECK_EQ(dfm_sheet_new(&sh, 2), 0);
    dfm_stats_bucket wide = {DFM_STATS_PIXELS, 40, 20, 1, 0}, sq = {DFM_STATS_PIXELS, 30, 30, 1, 0};
    uint8_t a[20 * 40 * 3], c[30 * 30 * 3], big[300 * 600 * 3];
    for (size_t i = 0; i < sizeof a; i++) a[i] = (uint8_t)(i * 7);
    for (size_t i = 0; i < sizeof c; i++) c[i] = (uint8_t)(i * 13 + 1);
    memset(big, 200, sizeof big);
    CHECK_EQ(dfm_sheet_add_rgb(sh, &sq, "s1", c, 30, 30), 0);
    CHECK_EQ(dfm_sheet_add_rgb(sh, &wide, "w1", a, 20, 40), 0);
    CHECK_EQ(dfm_sheet_add_rgb(sh, &wide, "w2", big, 300, 600), 0); /* shrunk to 256x128 */
    CHECK(!dfm_sheet_wants(sh, &wide));
    CHECK(dfm_sheet_wants(sh, &sq));
    CHECK_EQ(dfm_sheet_add_rgb(sh, &wide, "w3", a, 20, 40), 0); /* full: ignored */
    CHECK_EQ(dfm_sheet_tiles(sh), 3);
    uint8_t *rgb;
    int h, w;
    cJSON *lay = cJSON_CreateObject();
    CHECK_EQ(dfm_sheet_render(sh, NULL, &rgb, &h, &w, lay), 0);
    /* rows: 40x20x1 (area 800) before 30x30x1 (900); widths 40 + 4 + 256 */
    const int M = DFM_SHEET_MARGIN, G = DFM_SHEET_GUTTER, L = DFM_SHEET_LABEL;
    CHECK_EQ(w, 2 * M + 40 + G + 256);
    CHECK_EQ(h, 2 * M + L + 128 + G + L + 30);
    cJSON *rows = cJSON_GetObjectItemCaseSensitive(lay, "rows");
    CHECK_EQ(cJSON_GetArraySize(rows), 2);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(rows, 0), "bucket")),
              "40x20x1");
    cJSON *t0 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(rows, 0), "tiles"), 0);
    cJSON *t1 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(rows, 0), "tiles"), 1);
    cJSON *s0 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(rows, 1), "tiles"), 0);
    CHECK_EQ(jnum(t0, "x", NULL), M);
    CHECK_EQ(jnum(t0, "y", NULL), M + L);
    CHECK_EQ(jnum(t1, "x", NULL), M + 40 + G);
    CHECK_EQ(jnum(t1, "width", NULL), 256);
    CHECK_EQ(jnum(t1, "height", NULL), 128);
    CHECK_EQ(jnum(s0, "y", NULL), M + L + 128 + G + L);
    /* the tiles' pixels are where the layout says, unchanged (the small ones) or area-averaged */
    int bad = 0;
    for (int y = 0; y < 20; y++)
        bad += memcmp(rgb + ((size_t)(M + L + y) * w + M) * 3, a + (size_t)y * 40 * 3, 40 * 3) != 0;
    for (int y = 0; y < 30; y++)
        bad += memcmp(rgb + ((size_t)(jnum(s0, "y", NULL) + y) * w + M) * 3, c + (size_t)y * 30 * 3, 30 * 3) != 0;
    CHECK_EQ(bad, 0);
    CHECK_EQ(rgb[((size_t)(M + L + 64) * w + M + 40 + G + 100) * 3], 200);
    /* the label "40X20X1" is drawn in the band above the first row: the '4' has pixels lit */
    int lit = 0;
    for (int y = M; y < M + L; y++)
        for (int x = M; x < M + 12; x++) lit += rgb[((size_t)y * w + x) * 3] == 240;
    CHECK(lit > 10);
    CHECK_EQ(dfm_sheet_text_width("40x20x1", 2), (7 * 6 - 1) * 2);
    free(rgb);
    cJSON_Delete(lay);
    dfm_sheet_free(sh);
    CHECK_EQ(dfm_sheet_new(&sh, 1), 0);
    CHECK_EQ(dfm_sheet_render(sh, NULL, &rgb, &h, &w, NULL), DFM_E_ARG);
    dfm_sheet_free(sh);
}
