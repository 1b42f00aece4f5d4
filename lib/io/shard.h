/* shard.h — splitting a sample stream into numbered WebDataset tar shards (dfm-shard).
 *
 * Shard names come from a printf-style pattern with one integer conversion (%d, %06d ...):
 * "out/train-%06d.tar" or ".tar.zst" (zstd-compressed). A shard is written as NAME.tmp and
 * renamed when complete; it holds at most max_count samples and rolls over before a sample
 * would take it past max_size bytes (a single larger sample gets a shard of its own). With
 * by_bucket, samples go to one series per bucket ("out/WxHxF/train-%06d.tar", from the `json`
 * field's bucket, "unbucketed" without one). index.json beside the shards (in the pattern's
 * directory) lists every complete shard with its sample count and size, in the wids shard-index
 * format, plus the bucket histogram, the fields present and "complete" (true only once the
 * whole run finished cleanly); it is rewritten (atomically) each time a shard completes. Output
 * is deterministic: the same samples give byte-identical shards.
 *
 * Two runs never mix: a series is every file PRE<digits>POST.tar[.zst][.tmp] of the pattern
 * (either compression), flat or in bucket directories (WxHxF/, unbucketed/), plus index.json.
 * A new sharder refuses a series that has any file, unless overwrite, which removes them first.
 *
 * A run split into parts (base/part.h) writes one series per part, each in its own directory
 * with its own index (dfm_shard_part_pattern); dfm_shard_merge_index (shard_merge.c) then writes
 * one index over them.
 */
#ifndef DFM_IO_SHARD_H
#define DFM_IO_SHARD_H
#include <stddef.h>
#include <stdint.h>
#include "base/part.h"
#include "io/sample.h"

typedef struct {
    const char *pattern;
    uint64_t max_count; /* default 1000 */
    uint64_t max_size;  /* bytes, default 1 GiB */
    int by_bucket;
    int zstd_level;     /* for .tar.zst patterns (default 3) */
    int overwrite;      /* remove an earlier run's series instead of refusing */
    int resume;         /* keep an earlier run's complete shards and continue (see below) */
} dfm_shard_opts;

typedef struct dfm_sharder dfm_sharder;

/* Checks the pattern (exactly one integer conversion, .tar or .tar.zst), the series on disk
 * (see above) and creates its directory; writes index.json at once (no shard, "complete": false,
 * with dfm.options: max_count, max_size, by_bucket, and zstd_level for .tar.zst), so that even a
 * run killed before its first shard completes leaves the options it ran with. Errors are
 * DFM_E_ARG (the pattern) / DFM_E_IO with a reason (an existing series: "'PATH' already exists,
 * from an earlier run ...").
 * resume: an existing series is continued instead of refused. Its complete shards (final names)
 * are kept and indexed, its .tmp files removed, and each series (each bucket directory) goes on
 * from its highest shard number + 1. The series' index.json must name the same pattern and
 * options; any difference is DFM_E_ARG naming it (numbering and grouping would no longer be one
 * run's), as is a series with shards and no index. The kept shards' counts come from the index
 * when it lists exactly the shards on disk, else from reading them. No series: a fresh run. */
int dfm_sharder_new(dfm_sharder **s, const dfm_shard_opts *o);
/* Files of pattern's series on disk now (see above), < 0 on an error; `first` (may be NULL)
 * gets the first path in name order. */
int dfm_shard_existing(const char *pattern, char *first, size_t n);
/* Add one sample. DFM_E_SKIP: the sample cannot go into a tar shard (dfm_sample_check: reason
 * in dfm_errmsg()); nothing was written and no shard was opened for it. Other errors are output
 * failures. */
int dfm_sharder_put(dfm_sharder *s, const dfm_sample *x);
/* Finish every open shard and the index; *nshards and *nsamples (may be NULL) get the count of
 * complete shards and of the samples in them; frees s.
 * failed = 1 (the input was truncated, a --strict stop...) removes the open shards' .tmp files
 * — the last shard of a failed run never appears under its final name — and writes the index
 * with the complete shards and "complete": false. */
int dfm_sharder_close(dfm_sharder *s, int failed, int *nshards, uint64_t *nsamples);
/* With resume: the shards and samples kept from the earlier run (counted in close's totals). */
void dfm_sharder_kept(const dfm_sharder *s, int *nshards, uint64_t *nsamples);

/* 1 when name is a directory --by-bucket makes: WxHxF or "unbucketed". */
int dfm_shard_is_bucket_dir(const char *name);

/* The directory series name for a sample: "WxHxF" from json.bucket, or "unbucketed". */
int dfm_shard_bucket_name(const dfm_sample *x, char *out, size_t n);

/* The pattern part p of a split run writes (dfm-shard --part): its own directory below the
 * pattern's, named by dfm_part_name, so every part has its series and its index.json to itself:
 * "out/train-%06d.tar" with part 2/8 -> "out/part-00002-of-00008/train-%06d.tar" (and
 * "part-00002-of-00008/train-%06d.tar" for a pattern without a directory). A part that does not
 * split (0/1, or zeroed) keeps the pattern as it is. Returns 0, or DFM_E_ARG when out (n bytes)
 * is too small. The pattern itself is checked by dfm_sharder_new. */
int dfm_shard_part_pattern(const char *pattern, const dfm_part *p, char *out, size_t n);

/* dfm-shard --merge-index: one index.json in dir over the index.json files of the part
 * directories (written by dfm-shard --part), so that a loader given dir (or dir/index.json)
 * finds every part's shards.
 *   parts, nparts: the part directories; nparts = 0 takes every sub-directory of dir named
 *     part-K-of-N (dfm_part_name), which must then be the parts 0 .. N-1 of one N, all present.
 *     Named directories that are all part-K-of-N must likewise be one whole set.
 *   Each part's index must be a dfm-shard index that says "complete": true (its run finished).
 *   The merged shardlist holds every part's entries (all their fields kept) with url made
 *   relative to dir (a part outside dir gets "../"), sorted by url; "dfm" sums samples, shards,
 *   buckets and fields and adds "parts" (the number merged); "name" is the first part's.
 *   An index.json already in dir is replaced only when it is an earlier merge (it has
 *   dfm.parts): one written by a shard series in dir itself is refused, since its shards would
 *   no longer be listed. The file is written as index.json.tmp and renamed.
 * *merged (may be NULL) gets the counts. 0, or a negative DFM_E_* code with the reason (which
 * part, which file). */
typedef struct {
    int parts, shards;
    uint64_t samples;
} dfm_shard_merged;
int dfm_shard_merge_index(const char *dir, char *const *parts, int nparts, dfm_shard_merged *merged);

#endif
