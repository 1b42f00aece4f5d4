/* shard.h — splitting a sample stream into numbered WebDataset tar shards (dfm-shard).
 *
 * Shard names come from a printf-style pattern with one integer conversion (%d, %06d ...):
 * "out/train-%06d.tar" or ".tar.zst" (zstd-compressed). A shard is written as NAME.tmp and
 * renamed when complete; it holds at most max_count samples and rolls over before a sample
 * would take it past max_size bytes (a single larger sample gets a shard of its own). With
 * by_bucket, samples go to one series per bucket ("out/WxHxF/train-%06d.tar", from the `json`
 * field's bucket, "unbucketed" without one). index.json beside the shards (in the pattern's
 * directory) lists every complete shard with its sample count and size, in the wids shard-index
 * format, plus the bucket histogram and the fields present; it is rewritten (atomically) each
 * time a shard completes. Output is deterministic: the same samples give byte-identical shards.
 */
#ifndef DFM_IO_SHARD_H
#define DFM_IO_SHARD_H
#include <stdint.h>
#include "io/sample.h"

typedef struct {
    const char *pattern;
    uint64_t max_count; /* default 1000 */
    uint64_t max_size;  /* bytes, default 1 GiB */
    int by_bucket;
    int zstd_level;     /* for .tar.zst patterns (default 3) */
} dfm_shard_opts;

typedef struct dfm_sharder dfm_sharder;

/* Checks the pattern (exactly one integer conversion, .tar or .tar.zst) and creates its
 * directory. Errors are DFM_E_ARG / DFM_E_IO with a reason. */
int dfm_sharder_new(dfm_sharder **s, const dfm_shard_opts *o);
int dfm_sharder_put(dfm_sharder *s, const dfm_sample *x);
/* Finish every open shard and the index; *nshards (may be NULL) gets the shard count; frees s. failed = 1 removes the open shards'
 * .tmp files; complete shards stay listed. */
int dfm_sharder_close(dfm_sharder *s, int failed, int *nshards);

/* The directory series name for a sample: "WxHxF" from json.bucket, or "unbucketed". */
int dfm_shard_bucket_name(const dfm_sample *x, char *out, size_t n);

#endif
