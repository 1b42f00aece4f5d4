/* decode_run.h — the whole of a dfm-decode run over PATH arguments (the program only parses
 * options): files are found in sorted order (discover.h), captioned (captions.h) on the calling
 * thread, decoded on `jobs` worker threads (ingest.h) and written in input order. Keys stay unique
 * within a run (a repeat gets "@dupN", with a warning). A bad file is reported on stderr with its
 * path and reason and counted as skipped; the others go through, unless strict. With a part
 * (base/part.h), only every n-th media file is captioned and decoded; the walk is the same in
 * every part, so the parts 0/N ... N-1/N together decode each file exactly once.
 *
 * Skipping what is done (dfm-decode --skip-done DIR, io/shard_keys.h): a file is looked up by its
 * key's base, dfm_key_escape(source name), before its captions are found or it is decoded:
 *   - no key of that base in DIR's complete shards: decoded as usual;
 *   - some, and the base is not a frontier base nor a repeat of an earlier file of this run:
 *     every sample of the file is taken to be done (a file's samples are consecutive in one
 *     series, so only a series' last shard can hold part of a file), and the file is skipped
 *     without being read: counted in skipped_done->inputs, not in counts->read;
 *   - some, at the frontier or a repeat: decoded, and its samples whose (unique) key is in DIR
 *     are dropped (skipped_done->samples); the rest are written.
 * Skipped files' keys still count for "@dupN", so the keys are those of one uninterrupted run.
 *
 * Filters (ingest.h: --min-frames, --min-duration, --max-duration, --min-size): a file they leave
 * out is not a bad file: it is counted in counts->read and in filtered (not in counts->skipped),
 * named with its reason on stderr only when verbose, and never stops a strict run.
 */
#ifndef DFM_DATA_DECODE_RUN_H
#define DFM_DATA_DECODE_RUN_H
#include "base/log.h"
#include "base/part.h"
#include "data/captions.h"
#include "data/ingest.h"
#include "io/shard_keys.h"
#include "io/stream.h"

typedef struct {
    uint64_t inputs;  /* files skipped without being read: all their samples are done */
    uint64_t samples; /* samples dropped from files decoded again (frontier, repeats) */
} dfm_decode_skipped;

typedef struct {
    uint64_t too_short, too_long; /* clips the length filters left out */
    uint64_t too_small;           /* pictures and clips --min-size left out */
} dfm_decode_filtered;

typedef struct {
    dfm_ingest_opts ingest;     /* ingest.threads is set from jobs */
    dfm_caption_opts captions;
    int jobs;                   /* files decoded at once; 0 = one per core */
    int strict;                 /* the first bad file stops the run */
    dfm_part part;              /* decode only the media files of this part: the i-th file found
                                 * (0-based, in walk order over all PATHs) when i mod n == k;
                                 * zeroed: every file */
    const dfm_done_keys *done;  /* --skip-done: the keys already in shards (see above); NULL: none */
    dfm_decode_skipped *skipped_done; /* may be NULL: what done made the run leave out */
    dfm_decode_filtered *filtered; /* may be NULL: what the length filters left out */
    int verbose;                /* name each filtered file and its reason on stderr */
} dfm_decode_opts;

typedef struct dfm_decoder dfm_decoder;

/* Samples go to w; counts (initialized by the caller) are updated as files are read. */
int dfm_decoder_new(dfm_decoder **d, const dfm_decode_opts *o, dfm_writer *w, dfm_counts *counts);
/* Walk one PATH argument (file or directory). A missing or unreadable argument is reported and
 * counted like a bad file. Returns non-zero only when the run must stop (strict, a write
 * error, DFM_E_PIPE, out of memory). */
int dfm_decoder_add(dfm_decoder *d, const char *path);
/* Drain the pool, free d; *failed = 1 when the run failed (strict stop, write error, no memory).
 * Returns DFM_E_PIPE when the output reader went away, else 0. */
int dfm_decoder_finish(dfm_decoder *d, int *failed);

#endif
