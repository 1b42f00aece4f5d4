/* stream_map.h — the main loop of every stream -> stream filter (dfm-bucket, dfm-shard,
 * dfm-vae-encode, dfm-vae-decode, dfm-text-encode): read samples from the inputs (files or
 * stdin, any framing), apply a function to each, write the survivors, report bad samples with
 * their key and go on (or stop under --strict), and return the exit status.
 *
 * What stops a run and what does not (DESIGN.md §2, formats/sample-stream.md §5):
 *   - a bad sample — the function refuses it, or the output framing cannot carry it (a key with
 *     a dot, an upper-case field name, ...), or the sink refuses it — is skipped: one line
 *     "skipping sample 'KEY': reason" on stderr and counted; the run goes on;
 *   - an input that cannot be read on (corrupt or truncated: nothing after it can be trusted)
 *     ends that input: the run goes on to the next input but fails (exit 1);
 *   - an output error or out of memory stops the run (exit 1); a closed output pipe exits quietly.
 * The output gets its end mark (msgpack end record, tar end blocks) only when the run succeeds;
 * after a failure it is left without one (stdout) or removed (-o FILE), so the next stage of a
 * pipeline fails too instead of taking a cut stream for a whole one.
 */
#ifndef DFM_IO_STREAM_MAP_H
#define DFM_IO_STREAM_MAP_H
#include <stdint.h>
#include "base/log.h"
#include "base/part.h"
#include "io/sample.h"
#include "io/stream.h"

/* Transform one sample in place. 0 = write it; < 0 = skip it (reason in dfm_errmsg()).
 * DFM_E_NOMEM and DFM_E_PIPE stop the run. */
typedef int (*dfm_map_fn)(void *ctx, dfm_sample *s);
/* Take a finished sample instead of the output stream (e.g. into shards). 0 = taken;
 * DFM_E_SKIP = refused, skipped and counted (reason in dfm_errmsg(), starting "sample 'KEY': ");
 * any other < 0 stops the run. */
typedef int (*dfm_sink_fn)(void *ctx, const dfm_sample *s);

typedef struct {
    const char *output;      /* NULL or "-" = stdout; else written as .tmp and renamed */
    dfm_framing framing;     /* output framing */
    int zstd_level;          /* tar only; 0 = none */
    int force;               /* allow binary to a terminal */
    int strict;              /* first bad sample stops the run (exit 1) */
    uint64_t max_sample;     /* reader limit per sample (0 = default) */
    const char *progress;    /* what the progress line counts, e.g. "samples" */
    dfm_sink_fn sink;        /* when set, samples go here and no output stream is opened */
    void *sink_ctx;
    int sink_writes_files;   /* the sink writes files (shards): the last stage for progress */
    dfm_part part;           /* take only the samples of this part, by position (0-based,
                              * counted across the inputs, before anything is done to them; the
                              * others are read past, neither counted nor checked) -- when every
                              * input is a regular file. A stream on a pipe, FIFO or socket comes
                              * from a stage that has split already: it is taken whole, with a
                              * warning. Zeroed: every sample */
} dfm_map_opts;

/* inputs: n paths ("-" = stdin); n = 0 reads stdin. fn may be NULL (copy through).
 * Returns the exit status (0, 1); the caller prints the summary (dfm_summary). Exits quietly
 * on a closed output pipe. */
int dfm_stream_map(const dfm_map_opts *o, char **inputs, int n, dfm_map_fn fn, void *ctx,
                   dfm_counts *counts);

/* The options every stream filter shares, for getopt_long tables: -o/--output FILE, --format
 * msgpack|tar|tar.zst, --strict, --force, --progress, --part K/N|auto, -q/--quiet, -h/--help,
 * --version. --part auto comes back with mo->part.is_auto set: the program fills it in from the
 * launcher (dfm_part_auto with lib/dist's dfm_dist_launcher), which lib/io cannot reach. */
enum { DFM_OPT_FORMAT = 0x1000, DFM_OPT_STRICT, DFM_OPT_FORCE, DFM_OPT_VERSION, DFM_OPT_PROGRESS,
       DFM_OPT_PART };
#define DFM_STREAM_OPTIONS                                                               \
    {"output", 1, 0, 'o'}, {"format", 1, 0, DFM_OPT_FORMAT}, {"strict", 0, 0, DFM_OPT_STRICT}, \
    {"force", 0, 0, DFM_OPT_FORCE}, {"quiet", 0, 0, 'q'}, {"help", 0, 0, 'h'},                \
    {"version", 0, 0, DFM_OPT_VERSION}, {"progress", 0, 0, DFM_OPT_PROGRESS},                 \
    {"part", 1, 0, DFM_OPT_PART}
#define DFM_STREAM_SHORTOPTS "o:qh"
/* Apply option c (with its argument) to mo; returns 1 if it was one of the shared options, else 0.
 * --help prints `usage` and exits 0; --version exits 0; a bad --format exits 2; --progress
 * draws the progress line even in the middle of a pipeline (base/log.h). */
int dfm_stream_opt(int c, const char *arg, dfm_map_opts *mo, const char *usage);

#endif
