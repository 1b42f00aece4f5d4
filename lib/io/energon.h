/* energon.h — make a dfm-shard series a prepared Megatron-Energon dataset (dfm-shard --energon,
 * --energon-prepare): the files `energon prepare` writes, so that megatron-energon opens the
 * folder as it is. Written by our own code from the shards on disk; the tars are never changed.
 *
 * In DIR (the directory of the series' index.json, or of a --merge-index over parts):
 *   SHARD.tar.idx beside each shard: little-endian u64, one per sample = the tar offset of the
 *     sample's first header, then one final entry = the offset past the last member (before the
 *     end-of-archive blocks): N samples -> N + 1 entries. What Energon's loader reads.
 *   .nv-meta/.info.json: {"energon_version": ..., "shard_counts": {"SHARD.tar": N, ...}} in the
 *     order of index.json (sorted by url); that order numbers the shards (tar_file_id).
 *   .nv-meta/split.yaml: split_parts train/val/test (lists of shard paths) and exclude: [].
 *   .nv-meta/dataset.yaml: CrudeWebdataset (what NeMo DFM's Wan data module reads: a plain dict
 *     per sample, cooked by the task encoder), with our fields listed in a comment. Written only
 *     when absent: a user's edits (subflavors, another sample type) are kept.
 *   .nv-meta/index.sqlite: the samples and sample_parts tables with Energon's schema and indexes
 *     (random access by key, joins, auxiliary datasets).
 *   .nv-meta/index.uuid: a UUID4-formatted id derived from the index content (deterministic: the
 *     same shards give the same id; Energon regenerates it at random when the index changes).
 * Every file is written as NAME.tmp and renamed.
 *
 * Energon's rules enforced here: plain .tar shards only (it refuses compressed ones), sample keys
 * unique across the whole dataset, every index.json count equal to the shard's. Member names
 * split as Energon does (config.py split_name_re: key = up to the first dot of the last path
 * component), __meta__ names and non-regular members skipped.
 * Not here: writing shards (shard.c), the wids index (shard.c, shard_merge.c).
 * ref: megatron-energon 7.4 flavors/webdataset/prepare.py WebdatasetPreparator,
 *      itar.py TarIndexWriter, indexing.py SqliteIndexWriter, metadata.py WebdatasetMeta. */
#ifndef DFM_IO_ENERGON_H
#define DFM_IO_ENERGON_H
#include <stddef.h>
#include <stdint.h>

/* One sample of a scanned tar: key (owned), the bytes from its first header to the next
 * sample's first header (or the end), its parts [first_part, first_part + nparts). */
typedef struct {
    char *key;
    uint64_t offset, size;
    int first_part, nparts;
} dfm_energon_sample;

/* One member: part name (extension, owned), the member's data bytes in the tar. */
typedef struct {
    char *name;
    uint64_t data_offset, data_size;
} dfm_energon_part;

typedef struct {
    dfm_energon_sample *samples;
    int nsamples;
    dfm_energon_part *parts;
    int nparts;
    uint64_t end; /* offset past the last member: the last .tar.idx entry */
} dfm_energon_tar;

/* Walk the headers of the plain (uncompressed) tar at path, as Python's tarfile does for Energon
 * (ustar, pax 'x' path/size, GNU long names; a member's offset is that of its first extended
 * header). Adjacent members with one key form a sample. *t is zeroed first; free with
 * dfm_energon_tar_free (also after an error). DFM_E_FORMAT: compressed, truncated, a bad header
 * checksum; DFM_E_IO: reading. */
int dfm_energon_scan_tar(const char *path, dfm_energon_tar *t);
void dfm_energon_tar_free(dfm_energon_tar *t);

/* "8,1,1" or "0.8,0.1,0.1" -> w[3] (train, val, test), each >= 0, sum > 0. DFM_E_ARG otherwise. */
int dfm_energon_parse_split(const char *s, double w[3]);

typedef struct {
    double split[3]; /* train/val/test weights over shards in index order; all 0: all in train */
} dfm_energon_opts;

typedef struct {
    int shards;
    uint64_t samples;
    int split_shards[3];
    int dataset_yaml_kept; /* an existing dataset.yaml was left as it was */
} dfm_energon_stats;

/* Prepare dir (see above) from dir/index.json (a dfm-shard or --merge-index wids index). Shards
 * are split as energon prepare --split-ratio does without shuffling: part k takes the shards
 * [int(n * w_0..k-1 / W), int(n * w_0..k / W)). Errors name the shard or file: DFM_E_FORMAT (a
 * .tar.zst shard, a url leaving dir, a count that disagrees, a duplicate key), DFM_E_IO.
 * *st may be NULL. */
int dfm_energon_prepare(const char *dir, const dfm_energon_opts *o, dfm_energon_stats *st);

#endif
