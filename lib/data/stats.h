/* stats.h — what dfm-stats counts over a dataset, one sample at a time: samples, images and
 * videos, samples per bucket, caption lengths (characters, words, tokens), clip durations, what
 * is missing (caption, latents, text states), non-finite numbers, repeated keys and bad samples;
 * printed as text or as one JSON object.
 *
 * Memory: one sample at a time (the caller's), plus one counter per distinct value of each
 * measure (caption lengths and durations take few distinct values: thousands at most), one
 * record per bucket, 16 bytes per sample for the repeated-key check (a set of 64-bit key
 * hashes: two keys that collide, about one chance in 10^7 for 10^6 samples, count as a repeat),
 * and the first DFM_STATS_KEYS keys of each list it reports.
 *
 * What a sample's fields mean here (formats/sample-stream.md, and each tool's man page):
 *   bucket   json.bucket {width, height, frames} (dfm-bucket), else the shape of frames.npy
 *            [F,H,W,3], else the shape of latents.npy [C,F,H,W] (a latent bucket), else none;
 *   media    json.media ("image", "video"), else one frame (or one latent frame) is an image;
 *   caption  txt: characters are Unicode code points (an invalid UTF-8 byte counts as one),
 *            words are runs of bytes other than ASCII white space;
 *   tokens   json.text.tokens (dfm-text-encode), else the length of tokens.npy, else the rows
 *            of text.npy;
 *   duration videos only: the frames trained on (json.bucket.frames, else frames.npy's F,
 *            else json.frames) divided by json.fps (the clip's rate, dfm-decode), when known.
 * A sample is bad — counted, listed, left out of every other number — when its json is not a
 * JSON object, or frames.npy, latents.npy, text.npy or tokens.npy does not parse as the array
 * its name promises (uint8 [F,H,W,3]; float16/float32 [C,F,H,W]; float16/float32 [L,D] or
 * [1,L,D]; int32/int64 [L]).
 *
 * Not here: reading inputs (io/stream_map.h), the contact sheet (data/stats_sheet.h).
 */
#ifndef DFM_DATA_STATS_H
#define DFM_DATA_STATS_H
#include <stddef.h>
#include <stdint.h>
#include "base/buf.h"
#include "io/sample.h"

typedef struct cJSON cJSON;

/* Keys listed per report (bad samples, non-finite, repeats); the counts are always complete. */
#define DFM_STATS_KEYS 10
/* Histogram bins at most. */
#define DFM_STATS_BINS 10

/* ---- histograms (pure) ------------------------------------------------------------------ */

/* Bins [lo + i·width, lo + (i+1)·width) for i = 0 .. n-1; the last bin also holds its upper edge. */
typedef struct {
    double lo, width;
    int n;
} dfm_stats_hist_bins;

/* Bins for values in [min, max]: width is the smallest "nice" number 1, 2 or 5 × 10^k (k >= 0
 * when integer) for which lo = floor(min / width)·width and n = 1 + floor((max - lo) / width)
 * give n <= max_bins; min == max gets one bin whose width is the nice number above |min| /
 * max_bins (1 when integer or min is 0). Returns 0, or DFM_E_ARG (min > max, a value not finite,
 * max_bins < 2: a range across 0 always needs two bins of a nice width). */
int dfm_stats_hist_choose(double min, double max, int integer, int max_bins, dfm_stats_hist_bins *b);
/* Bin edge i (0 .. n): lo + i·width. */
double dfm_stats_hist_edge(const dfm_stats_hist_bins *b, int i);
/* The bin of v: i with edge(i) <= v < edge(i+1), clamped to 0 .. n-1 (values outside the range
 * go to the first or last bin). */
int dfm_stats_hist_index(const dfm_stats_hist_bins *b, double v);

/* An exact distribution: each distinct value with its count, values ascending. Zero-init. */
typedef struct {
    double *v;
    uint64_t *c;
    size_t n, cap;
    uint64_t count; /* values added */
} dfm_stats_dist;

/* Add one finite value. 0, DFM_E_ARG (not finite), DFM_E_NOMEM. */
int dfm_stats_dist_add(dfm_stats_dist *d, double v);
/* min, median (numpy's: the mean of the two middle values when count is even), max; 0 when
 * count is 0. */
double dfm_stats_dist_min(const dfm_stats_dist *d);
double dfm_stats_dist_max(const dfm_stats_dist *d);
double dfm_stats_dist_median(const dfm_stats_dist *d);
/* Histogram over the values: b from dfm_stats_hist_choose(min, max, integer, max_bins) and counts[i]
 * (max_bins entries, those past b->n zeroed) the values in bin i. DFM_E_ARG when count is 0. */
int dfm_stats_dist_hist(const dfm_stats_dist *d, int integer, int max_bins, dfm_stats_hist_bins *b, uint64_t *counts);
void dfm_stats_dist_free(dfm_stats_dist *d);

/* ---- buckets ------------------------------------------------------------------------------- */

enum { DFM_STATS_PIXELS = 0, DFM_STATS_LATENT = 1, DFM_STATS_NONE = 2 };
typedef struct {
    int kind;        /* DFM_STATS_PIXELS, _LATENT, _NONE */
    int64_t w, h, f; /* pixels: width, height, frames; latent: latents.npy's W, H, F */
    int64_t c;       /* latent: channels (0 for pixels) */
} dfm_stats_bucket;

/* "WxHxF" for pixels (as dfm-shard --by-bucket names its directories: 832x480x81), "latent
 * [C,F,H,W]" for a latent shape, "none". Writes at most n bytes; returns out. */
const char *dfm_stats_bucket_name(const dfm_stats_bucket *b, char *out, size_t n);
/* The listing order: pixel buckets, then latent ones, then none; within a kind by frames, then
 * area (w·h), then width, then channels. qsort-style result. */
int dfm_stats_bucket_cmp(const dfm_stats_bucket *a, const dfm_stats_bucket *b);

/* ---- the accumulator ----------------------------------------------------------------------- */

typedef struct {
    int check; /* also count non-finite values in every float16/float32 .npy field (reads them all) */
} dfm_stats_opts;

typedef struct dfm_stats dfm_stats;

int dfm_stats_new(dfm_stats **st, const dfm_stats_opts *o);
void dfm_stats_free(dfm_stats *st);
/* Count one sample. 0: counted, its bucket in *bucket (may be NULL). A bad sample (see above) is
 * counted and listed as bad and returns DFM_E_FORMAT with the message "sample 'KEY': reason"
 * (the form io/stream_map.h's sinks use); DFM_E_NOMEM stops. */
int dfm_stats_add(dfm_stats *st, const dfm_sample *s, dfm_stats_bucket *bucket);
/* Good samples counted so far, and those of bucket b. */
uint64_t dfm_stats_samples(const dfm_stats *st);
uint64_t dfm_stats_bucket_count(const dfm_stats *st, const dfm_stats_bucket *b);

/* The report as text lines appended to out: totals, the buckets with their share and a bar, a
 * histogram with min/median/max per measure, what is missing, non-finite values (or "not
 * checked"), repeated keys, bad samples with their reasons. */
int dfm_stats_text(const dfm_stats *st, dfm_buf *out);
/* The same numbers as a new JSON object (the caller owns it: cJSON_Delete):
 *   {"samples", "images", "videos", "unknown_media", "bad",
 *    "buckets": [{"bucket", "kind", "width", "height", "frames", ["channels"], "samples",
 *                 "share"}...],
 *    "caption_chars", "caption_words", "caption_tokens", "duration_s": each null when no sample
 *       has it, else {"count", "min", "median", "max", "bins": [{"lo", "hi", "count"}...]},
 *    "missing": {"caption", "empty_caption", "latents", "text"}, "truncated_captions",
 *    "nonfinite": null unless checked, else {"samples", "keys": [{"key", "fields"}...]},
 *    "duplicates": {"count", "keys": [...]}, "bad_samples": [{"key", "reason"}...]} */
int dfm_stats_json(const dfm_stats *st, cJSON **out);

#endif
