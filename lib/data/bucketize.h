/* bucketize.h — one sample's frames to its training bucket: the work of dfm-bucket.
 *
 * Reads `frames.npy` (uint8 [F,H,W,3], or [H,W,3] as one frame), chooses the bucket size
 * (NeMo multi-tier by default, a fixed size, or diffusion-pipe log-spaced ratios), trims the
 * frame count by the frame rule, scales to cover and centre-crops with the chosen filter, and
 * records bucket and crop in `json`. Not here: framing, the choice of frames within a clip
 * (dfm-decode did that; trimming keeps the first frames).
 */
#ifndef DFM_DATA_BUCKETIZE_H
#define DFM_DATA_BUCKETIZE_H
#include <stdint.h>
#include "data/bucket.h"
#include "io/sample.h"
#include "media/resize.h"

typedef enum { DFM_BUCKETS_NEMO = 0, DFM_BUCKETS_FIXED, DFM_BUCKETS_LOG } dfm_bucket_method;
typedef enum { DFM_FRAMES_4K1 = 0, DFM_FRAMES_NONE, DFM_FRAMES_LIST } dfm_frame_rule;

typedef struct {
    dfm_bucket_method method;
    int64_t max_pixels;        /* NeMo budget (default 512p = 262144) */
    int multiple;              /* quantization q (default 16) */
    int fixed_w, fixed_h;      /* DFM_BUCKETS_FIXED */
    double log_min, log_max;   /* DFM_BUCKETS_LOG ratios */
    int log_n, side;           /*   count of ratios, side (area = side^2) */
    dfm_filter filter;         /* default lanczos */
    dfm_frame_rule frame_rule; /* default 4k+1 */
    int frame_buckets[64], n_frame_buckets;
    int threads;               /* resample threads (<= 1 inline) */
} dfm_bucket_opts;

void dfm_bucket_opts_default(dfm_bucket_opts *o);

typedef struct dfm_bucketer dfm_bucketer;
/* Validates the options and precomputes the bucket list. Errors are DFM_E_ARG with a reason. */
int dfm_bucketer_new(dfm_bucketer **b, const dfm_bucket_opts *o);
void dfm_bucketer_free(dfm_bucketer *b);
/* The bucket list (for --list-buckets and the man page). */
int dfm_bucketer_list(const dfm_bucketer *b, const dfm_wh **out);

/* The size dfm_bucketize scales W x H frames to before its centre crop ("resized_width" and
 * "resized_height" in its json): the chosen bucket, covered. The bucket id goes to *id (may be
 * NULL). dfm-decode's size hint (--preset) decodes straight to this size. */
void dfm_bucketer_cover_size(const dfm_bucketer *b, int W, int H, int *rw, int *rh, int *id);

/* Transform s in place. Returns 0, DFM_E_SKIP (clip too short for every frame bucket) or another
 * negative code; the reason is in dfm_errmsg(). On error s is left unchanged. */
int dfm_bucketize(dfm_bucketer *b, dfm_sample *s);

#endif
