/* ingest.h — one media file in, one or more samples out: the work of dfm-decode.
 *
 * Decodes an image or a video, picks the frames (frames.h), finds the caption(s) (captions.h)
 * and builds samples with `txt`, `frames.npy` (uint8 [F,H,W,3]) and `json`. A file with several
 * captions (captions.json) gives one sample per caption; `--mode frames` gives one sample per
 * frame. Keys: dfm_key_escape(name) plus "@c<i>" for caption i > 0 and "@f<index>" per frame.
 * Length filters (--min-frames, --min-duration, --max-duration; videos only, images are never
 * filtered): a clip is judged as dfm_video_open describes it, before a pixel is decoded; its
 * frames are those the decoder yields (counted by demuxing: edit lists of trimmed clips left
 * out), counted at the --fps rate when one is given (frames.h step 1: floor(n*F/S), at least 1),
 * else at the source rate; --frames, --clip, --max-frames and --mode do not change the count.
 * Its duration is video.h's: frames / average rate (by the frames' timestamps for a
 * variable-rate clip), whatever --fps. When the read then finds fewer frames than listed
 * (damaged packets, a cut file: DFM_E_SHORT) the clip is judged again on the decoded count.
 * Durations compare with 1 us of slack (a clip at exactly --max-duration is kept).
 * Not here: walking directories (discover.h), stream framing (io/stream.h), buckets.
 */
#ifndef DFM_DATA_INGEST_H
#define DFM_DATA_INGEST_H
#include <stdint.h>
#include "data/bucketize.h"
#include "data/captions.h"
#include "data/discover.h"
#include "data/frames.h"
#include "io/sample.h"

typedef enum { DFM_INGEST_VIDEO = 0, DFM_INGEST_FRAMES } dfm_ingest_mode;

typedef struct {
    dfm_ingest_mode mode;
    int frames;           /* frames wanted; 0 = all (video mode) or 10 (frames mode) */
    int max_frames;       /* cap when frames = 0 (default 129) */
    dfm_clip_mode clip;   /* spread (default), begin, middle */
    double fps;           /* resample to this rate first (frames.h); 0 = keep */
    uint64_t max_pixels;  /* refuse inputs whose frames are larger (default 100 MP) */
    int min_size;         /* skip inputs whose shorter side is below this many pixels (0 = keep) */
    int accept_damaged;   /* keep images the decoder finished despite corrupt data (libjpeg's
                           * "Corrupt JPEG data" / "Premature end" warnings); default: skip them */
    uint64_t max_bytes;   /* refuse image files larger than this (default 1 GiB) */
    int threads;          /* decoder threads (0 = one per core) */
    const dfm_bucketer *hint; /* the buckets dfm-bucket will use (NULL = none): each video frame
                           * is scaled down as it is decoded to the size dfm-bucket would scale it
                           * to before its crop (never up); an image is decoded (JPEG: at a DCT
                           * scale of 1/2, 1/4, 1/8 that still covers it) and resized to that
                           * size; json "scaled" says so */
    const char *hint_name; /* how the hint was given, for json (e.g. "512p") */
    int min_frames;       /* leave out clips of fewer frames (see above; 0 = no limit) */
    double min_duration;  /* leave out clips shorter than this many seconds (0 = no limit) */
    double max_duration;  /* leave out clips longer than this many seconds (0 = no limit) */
} dfm_ingest_opts;

/* Why dfm_ingest_file left a file out without it being bad. */
typedef enum { DFM_INGEST_KEPT = 0, DFM_INGEST_TOO_SHORT, DFM_INGEST_TOO_LONG, DFM_INGEST_TOO_SMALL } dfm_ingest_filter;

void dfm_ingest_opts_default(dfm_ingest_opts *o);

/* Called for each sample built. The sample is reused after the call returns; the callee may
 * take fields out of it. Return 0 to go on, < 0 to stop. */
typedef int (*dfm_emit_fn)(void *ctx, dfm_sample *s);

/* Ingest the file at `path` (source name `name`, see discover.h) under its captions (found with
 * dfm_captions_find; kept apart so that lookups, which share a cache, stay on one thread while
 * decoding runs on many). Thread-safe. Returns the number of samples emitted, or a negative code
 * with the reason in dfm_errmsg() (the file is then skipped; no sample of it was emitted).
 * A negative return from emit is passed through. A file a filter leaves out (a clip by a length
 * filter, a picture or clip by --min-size) returns DFM_E_SKIP with *filtered (may be NULL) set to
 * the reason, and the numbers in dfm_errmsg() (e.g. "12 frames, fewer than --min-frames 17");
 * *filtered is DFM_INGEST_KEPT otherwise. */
int dfm_ingest_file(const dfm_ingest_opts *o, const dfm_captions *caps, const char *path,
                    const char *name, dfm_media_kind kind, dfm_emit_fn emit, void *ctx,
                    dfm_ingest_filter *filtered);

#endif
