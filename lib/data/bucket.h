/* bucket.h — choosing a training resolution and frame count for a sample.
 *
 * NeMo (default): multi-tier buckets from a pixel budget, 14 aspect ratios, quantization q,
 *   Python round-half-to-even.  ref: NeMo AutoModel multi_tier_bucketing.py MultiTierBucketCalculator
 * diffusion-pipe: log-spaced aspect ratios geomspace(min, max, n) rounded to 3 decimals, area
 *   side², sides rounded to multiples of q.  ref: diffusion-pipe utils/dataset.py
 * Frames: the Wan rule (largest 4k+1 <= F) or explicit frame buckets.
 * Pure functions; no I/O.
 */
#ifndef DFM_DATA_BUCKET_H
#define DFM_DATA_BUCKET_H
#include <stdint.h>

typedef struct {
    int w, h;
} dfm_wh;

#define DFM_MAX_BUCKETS 256

/* Python round(): half to even. */
double dfm_round_half_even(double v);

/* NeMo presets: "256p" .. "1536p" -> pixel budget, or -1 if unknown. */
int64_t dfm_bucket_preset_pixels(const char *preset);
/* NeMo buckets for budget P and quantization q, de-duplicated and sorted by w/h ascending.
 * Returns the count (<= max). */
int dfm_buckets_nemo(int64_t max_pixels, int q, dfm_wh *out, int max);
/* The bucket nearest in aspect ratio |b.w/b.h - W/H|; the first one on a tie. */
int dfm_bucket_pick_nearest_ar(const dfm_wh *b, int n, int W, int H);

/* diffusion-pipe: ratios geomspace(min_ar, max_ar, n_ar) rounded to 3 decimals and
 * de-duplicated; for one side s: w = sqrt(s*s*ar), h = s*s/w, each rounded half-to-even to
 * a multiple of q. Returns the count of buckets, in ratio order. */
int dfm_buckets_log(double min_ar, double max_ar, int n_ar, int side, int q, dfm_wh *out, int max,
                    double *ratios_out);
/* argmin |ln(W/H) - ln(ratio_i)| over the ratios (first on a tie). */
int dfm_bucket_pick_log_ar(const double *ratios, int n, int W, int H);

/* Scale (W0,H0) to cover (Wt,Ht) keeping the aspect: scale = max(Wt/W0, Ht/H0), size truncated
 * (and clamped to at least the target), then the centred crop offsets. */
void dfm_cover_crop(int W0, int H0, int Wt, int Ht, int *rw, int *rh, int *left, int *top);

/* Frames: largest 4k+1 <= F (0 if F < 1). */
int dfm_frames_4k1(int F);
/* Largest bucket <= F from a list; a video (F > 1) never goes to the 1-frame bucket.
 * Returns the bucket or 0 when none fits. */
int dfm_frame_bucket_pick(const int *buckets, int n, int F);

#endif
