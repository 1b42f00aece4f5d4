/* bucket.c — resolution buckets (NeMo multi-tier, diffusion-pipe log-spaced), cover crop and
 * frame-count rules. See bucket.h for the contracts.
 *
 * This module is arithmetic only: it mirrors the Python reference bit for bit where the
 * reference is defined by float operations (Python round() half-to-even, numpy geomspace and
 * numpy round), and never touches pixels or files. Resizing lives in lib/media.
 */
#include "data/bucket.h"
#include "base/error.h"

#include <math.h>
#include <string.h>

/* Python round(x) on a float: the nearest integer, ties to even. Written out instead of rint()
 * so the result does not depend on the FPU rounding mode. v - floor(v) is exact in binary64. */
double dfm_round_half_even(double v)
{
    if (!isfinite(v)) return v;
    double f = floor(v);
    double d = v - f;
    if (d > 0.5) return f + 1.0;
    if (d < 0.5) return f;
    return fmod(f, 2.0) == 0.0 ? f : f + 1.0;
}

/* round(v / q) * q, as both references write it. */
static int64_t roundq(double v, int q) { return (int64_t)dfm_round_half_even(v / q) * q; }

int64_t dfm_bucket_preset_pixels(const char *preset)
{
    // ref: NeMo AutoModel multi_tier_bucketing.py RESOLUTION_PRESETS
    static const struct {
        const char *name;
        int64_t pixels;
    } presets[] = {
        {"256p", 256 * 256}, {"512p", 512 * 512}, {"768p", 768 * 768},
        {"1024p", 1024 * 1024}, {"1536p", 1536 * 1536},
    };
    if (!preset) return -1;
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (!strcmp(preset, presets[i].name)) return presets[i].pixels;
    return -1;
}

/* NeMo's 14 candidate aspect ratios, w:h. */
static const int nemo_ratios[][2] = {
    {1, 2}, {9, 16}, {2, 3}, {3, 4}, {4, 5}, {1, 1}, {5, 4},
    {4, 3}, {3, 2}, {16, 10}, {5, 3}, {16, 9}, {2, 1}, {21, 9},
};

// ref: NeMo AutoModel multi_tier_bucketing.py MultiTierBucketCalculator._generate_buckets
int dfm_buckets_nemo(int64_t max_pixels, int q, dfm_wh *out, int max)
{
    if (max_pixels <= 0 || max_pixels > ((int64_t)1 << 40))
        return dfm_fail(DFM_E_ARG, "pixel budget %lld out of range", (long long)max_pixels);
    if (q <= 0 || q > 4096) return dfm_fail(DFM_E_ARG, "quantization %d out of range", q);
    int n = 0;
    for (size_t i = 0; i < sizeof nemo_ratios / sizeof nemo_ratios[0]; i++) {
        double r = (double)nemo_ratios[i][0] / (double)nemo_ratios[i][1];
        int64_t h0 = (int64_t)floor(sqrt((double)max_pixels / r)); /* int(math.sqrt(P / r)) */
        int64_t h = roundq((double)h0, q);
        int64_t w = roundq(floor((double)h * r), q);               /* int(h * r), h >= 0 */
        while (w * h > max_pixels) {
            if (w >= h) w -= q;
            else h -= q;
        }
        if (w < q || h < q) continue;
        int dup = 0;
        for (int j = 0; j < n; j++)
            if (out[j].w == w && out[j].h == h) dup = 1;
        if (dup) continue;
        if (n >= max) return dfm_fail(DFM_E_LIMIT, "more than %d buckets", max);
        /* Stable insertion by w/h ascending (Python's sort is stable). */
        double ar = (double)w / (double)h;
        int k = n;
        while (k > 0 && (double)out[k - 1].w / out[k - 1].h > ar) {
            out[k] = out[k - 1];
            k--;
        }
        out[k] = (dfm_wh){(int)w, (int)h};
        n++;
    }
    return n;
}

// ref: NeMo AutoModel multi_tier_bucketing.py MultiTierBucketCalculator.get_bucket_for_image
int dfm_bucket_pick_nearest_ar(const dfm_wh *b, int n, int W, int H)
{
    if (n <= 0 || W <= 0 || H <= 0) return -1;
    double ar = (double)W / (double)H;
    int best = -1;
    double best_d = INFINITY;
    for (int i = 0; i < n; i++) {
        if (b[i].h <= 0) continue;
        double d = fabs((double)b[i].w / (double)b[i].h - ar);
        if (d < best_d) {
            best_d = d;
            best = i;
        }
    }
    return best;
}

/* numpy.geomspace(a, b, n) for positive a, b: logspace(log10 a, log10 b, n) = 10 ** linspace,
 * with the end points forced to a and b. linspace is i*step + start, with the last = stop.
 * Note: numpy evaluates 10**y with its own power loop, which on some CPUs (AVX-512) is a SIMD
 * implementation rather than libm pow(); both are faithfully rounded, so an AR whose value lies
 * within one ulp of a 3-decimal rounding boundary could in principle round differently. */
// ref: numpy function_base.py geomspace, logspace, linspace
static void geomspace(double a, double b, int n, double *out)
{
    double la = log10(a), lb = log10(b);
    double step = n > 1 ? (lb - la) / (n - 1) : 0.0;
    for (int i = 0; i < n; i++) {
        double y = n > 1 && step == 0.0 ? (double)i / (n - 1) * (lb - la) : (double)i * step;
        y += la;
        if (n > 1 && i == n - 1) y = lb;
        out[i] = pow(10.0, y);
    }
    if (n > 0) out[0] = a;
    if (n > 1) out[n - 1] = b;
}

/* diffusion-pipe's dedup_and_sort calls round(x, 3) on numpy float64 values, which is numpy's
 * round: rint(x * 1000) / 1000 (half-to-even on the scaled binary value), not Python's
 * correctly rounded decimal round. The two agree except for values whose x*1000 lands exactly
 * on (or rounds onto) a .5 — we follow numpy since the ratios come from np.geomspace. */
// ref: diffusion-pipe utils/dataset.py dedup_and_sort; numpy PyArray_Round
static double np_round3(double x) { return dfm_round_half_even(x * 1000.0) / 1000.0; }

// ref: diffusion-pipe utils/dataset.py DirectoryDataset.__init__ (ars), ARBucketDataset.cache_latents
int dfm_buckets_log(double min_ar, double max_ar, int n_ar, int side, int q, dfm_wh *out, int max,
                    double *ratios_out)
{
    if (!(min_ar > 0) || !(max_ar > 0) || !isfinite(min_ar) || !isfinite(max_ar))
        return dfm_fail(DFM_E_ARG, "aspect ratios must be positive (min %g, max %g)", min_ar, max_ar);
    if (n_ar <= 0 || n_ar > DFM_MAX_BUCKETS)
        return dfm_fail(DFM_E_ARG, "number of aspect-ratio buckets %d out of range", n_ar);
    if (side <= 0 || side > (1 << 20)) return dfm_fail(DFM_E_ARG, "resolution %d out of range", side);
    if (q <= 0 || q > 4096) return dfm_fail(DFM_E_ARG, "quantization %d out of range", q);
    double ars[DFM_MAX_BUCKETS];
    geomspace(min_ar, max_ar, n_ar, ars);
    /* set(round(x, 3)) then sorted(): round, insertion-sort ascending, drop equal values. */
    int n = 0;
    for (int i = 0; i < n_ar; i++) {
        double v = np_round3(ars[i]);
        int k = 0;
        while (k < n && ars[k] < v) k++;
        if (k < n && ars[k] == v) continue;
        memmove(ars + k + 1, ars + k, (size_t)(n - k) * sizeof ars[0]);
        ars[k] = v;
        n++;
    }
    if (n > max) return dfm_fail(DFM_E_LIMIT, "more than %d buckets", max);
    double area = (double)side * (double)side; /* res**2, exact */
    for (int i = 0; i < n; i++) {
        double w = sqrt(area * ars[i]);
        double h = area / w;
        out[i] = (dfm_wh){(int)roundq(w, q), (int)roundq(h, q)};
        if (ratios_out) ratios_out[i] = ars[i];
    }
    return n;
}

// ref: diffusion-pipe utils/dataset.py DirectoryDataset._find_closest_ar_bucket
int dfm_bucket_pick_log_ar(const double *ratios, int n, int W, int H)
{
    if (n <= 0 || W <= 0 || H <= 0) return -1;
    double la = log((double)W / (double)H);
    int best = -1;
    double best_d = INFINITY;
    for (int i = 0; i < n; i++) {
        double d = fabs(la - log(ratios[i]));
        if (d < best_d) { /* np.argmin: the first minimum */
            best_d = d;
            best = i;
        }
    }
    return best;
}

// ref: NeMo AutoModel multi_tier_bucketing.py resize_and_crop (crop_mode="center")
void dfm_cover_crop(int W0, int H0, int Wt, int Ht, int *rw, int *rh, int *left, int *top)
{
    if (W0 <= 0 || H0 <= 0 || Wt <= 0 || Ht <= 0) {
        *rw = Wt > 0 ? Wt : 0;
        *rh = Ht > 0 ? Ht : 0;
        *left = *top = 0;
        return;
    }
    double sw = (double)Wt / W0, sh = (double)Ht / H0;
    double scale = sw > sh ? sw : sh;
    double fw = W0 * scale, fh = H0 * scale;
    /* int() truncation; e.g. 1000 * (333/1000) is 332.99999999999994 -> 332 < 333. */
    int w = fw >= 2147483647.0 ? 2147483647 : (int)fw;
    int h = fh >= 2147483647.0 ? 2147483647 : (int)fh;
    if (w < Wt) w = Wt;
    if (h < Ht) h = Ht;
    *rw = w;
    *rh = h;
    *left = (w - Wt) / 2;
    *top = (h - Ht) / 2;
}

// ref: diffusion-pipe models/base.py PreprocessMediaFile (round_frames=4)
int dfm_frames_4k1(int F)
{
    if (F < 1) return 0;
    return (F - 1) / 4 * 4 + 1;
}

// ref: diffusion-pipe utils/dataset.py DirectoryDataset._find_closest_ar_bucket (frame part)
int dfm_frame_bucket_pick(const int *buckets, int n, int F)
{
    int best = 0;
    for (int i = 0; i < n; i++)
        if (buckets[i] >= 1 && buckets[i] <= F && buckets[i] > best) best = buckets[i];
    if (F > 1 && best == 1) return 0; /* a video never goes to the image bucket */
    return best;
}
