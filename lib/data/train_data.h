/* train_data.h — the training loader: latent/text-state samples from tar shards, grouped into
 * batches by bucket the way NeMo AutoModel's SequentialBucketSampler does it, read ahead on a
 * background thread (reference/nemo.md §2.2–2.4).
 *
 * Open scans every shard once and keeps a compact index: 24 bytes per sample (shard number,
 * offset, zstd in-frame offset, bucket id; no keys) plus about 8 bytes per example (the buckets'
 * lists after repeats, the epoch's order); sample data lives only in the batches read ahead. The scan reads the 512-byte member headers, the json member and the first
 * bytes of latents.npy, and seeks over the rest (sample_index.h). Measured (page cache warm, a
 * loaded 2-core machine; samples of txt, json, latents [16,21,32,32] f16 and text [64,4096] f16,
 * 1.2 MB each): a .tar scans in 10-23 ms per 1,000 samples, whatever the sample size; a dfm-shard
 * .tar.zst in 0.52-0.58 s per 1,000 — it decompresses the first zstd block (<= 128 KiB) of each
 * sample's frame and jumps over the rest by block headers, against 5.3 s per 1,000 to decompress
 * it all (samples under 128 KiB cost a full decompression: 41 KB samples scan in 0.15 s per
 * 1,000). A single-frame .tar.zst (another tool's) is decompressed whole at the scan and from its
 * start at every read — warned once.
 *
 * Buckets: samples group by their latent shape [C,F,H,W] exactly, so a batch never mixes shapes;
 * buckets are ordered by F·H·W ascending, ties by first appearance (NeMo sorts by pixel count,
 * stably). Examples: spec s with n samples gives int(n · repeats[s]) examples, example j being the
 * spec's sample j mod n (diffusion-pipe num_repeats); a bucket's list holds its examples in order.
 *
 * Epoch e (ref: NeMo AutoModel sampler.py SequentialBucketSampler.__iter__):
 *   1. one random stream, Philox4x32-10 keyed by seed + e (key = its low and high 32 bits), block
 *      counter (i, 0, 0, 0) for i = 0, 1, ..., each block's four words used in order;
 *      uniform(n) = x mod n for the first 64-bit draw x = w0 | w1 << 32 with x >= 2^64 mod n
 *      (rejection: exact); permute(a[0..n)) = dfm's Fisher–Yates: for i = n-1 down to 1, swap
 *      a[i] with a[uniform(i + 1)]. Not torch.randperm: the same semantics with our own RNG.
 *   2. with shuffle, permute the bucket order; then for each bucket in that order: copy its list,
 *      permute it (same stream, continuing), pad it to a multiple of world by cycling from its
 *      start, take positions rank, rank + world, ..., cut that into batches of the bucket's batch
 *      size, and with drop_last drop the last partial one. Every rank gets the same count.
 *   Batch size: batch_size, or with dynamic_batch max(1, floor(batch_size / ((W·H)/(bw·bh)))) for
 *   the bucket's pixel size W×H (json.bucket.width/height of its first sample that has one, else
 *   the latent width and height times 8) and base_w × base_h.
 * The same options give the same batches whatever the prefetch depth or the timing.
 *
 * Not here: what a batch is trained on (lib/train), padding of text states (the batch keeps each
 * sample's [L, D] separate), captions or images (the shards must hold encoded latents).
 */
#ifndef DFM_DATA_TRAIN_DATA_H
#define DFM_DATA_TRAIN_DATA_H
#include <stdint.h>

typedef struct {
    const char *const *specs; int nspecs;  /* each: a shard file (.tar, .tar.zst), a glob ("data/train-*.tar"), a directory (its index.json from dfm-shard, or else every *.tar / *.tar.zst in it, sorted), or an index.json path */
    const double *repeats;      /* per spec, NULL = all 1; may be fractional: a spec's samples contribute int(n * r) examples, taken by index modulo n (diffusion-pipe num_repeats) */
    int batch_size;             /* base batch size (>= 1) */
    int dynamic_batch;          /* NeMo dynamic_batch_size: bs = max(1, floor(batch_size / ((W*H)/(bw*bh)))) with the bucket's pixel W,H (latent W,H times 8 if json has no bucket) */
    int base_w, base_h;         /* base_resolution for dynamic_batch (default 512x512) */
    int drop_last;              /* drop each bucket's final partial batch (per rank) */
    int shuffle;                /* permute bucket order and within buckets, seeded by seed + epoch */
    uint64_t seed;
    int rank, world;            /* data-parallel slicing, NeMo's: pad each bucket to a multiple of world by cycling, take indices[rank::world] (defaults 0, 1) */
    int prefetch;               /* batches read ahead on a background thread (default 2; 0 = read in next()) */
    uint64_t max_sample_bytes;  /* refuse larger samples (default 1 GiB) */
} dfm_train_data_opts;

/* Defaults: 0 in rank, world (1), base_w/base_h (512), max_sample_bytes (1 GiB) means the
 * default; prefetch < 0 means the default 2 (0 is "no thread"). */

typedef struct {
    int n;                          /* samples in this batch (a bad sample is dropped: n may be < the bucket's batch size; never 0) */
    int C, F, H, W;                 /* the latent shape, shared by every sample of the batch */
    float *latents;                 /* [n, C, F, H, W] f32, from latents.npy (F16 or F32 [C,F,H,W]) */
    int text_dim;                   /* D */
    int *text_rows;                 /* [n]: rows of each sample's text states */
    float **text;                   /* [n] pointers to [text_rows[i], D] f32 from text.npy (F16/F32 [L,D]; a 3-D [1,L,D] too) */
    char **keys;                    /* [n] sample keys */
    int64_t epoch, batch;           /* this batch's position: epoch and index of the batch in the epoch (for resume) */
    double wait_s;                  /* seconds next() blocked waiting for this batch */
} dfm_batch;

typedef struct dfm_train_data dfm_train_data;

/* Resolve the specs, scan every shard, build the buckets (o and its arrays are read during the
 * call only). Errors: a spec that matches nothing
 * ("no shards match 'x*'", "no .tar or .tar.zst shards in directory 'd'"), a shard that cannot
 * be read or whose tar/zstd structure is broken, no usable sample at all, no batch per epoch
 * (drop_last with fewer examples than a batch), bad options (DFM_E_ARG). Samples without a
 * usable latents.npy header are warned about (key, shard, reason), counted in skipped() and
 * left out of the index. */
int  dfm_train_data_open(dfm_train_data **d, const dfm_train_data_opts *o);
int64_t dfm_train_data_samples(const dfm_train_data *d);          /* examples per epoch after repeats */
int64_t dfm_train_data_batches_per_epoch(const dfm_train_data *d); /* this rank's */
int  dfm_train_data_buckets(const dfm_train_data *d);             /* distinct latent shapes */
/* Bucket i (0 <= i < buckets(), in the sorted order): latent shape [C,F,H,W] into shape, its
 * examples per epoch, and its batch size. Returns 0 or DFM_E_ARG. */
int  dfm_train_data_bucket(const dfm_train_data *d, int i, int64_t shape[4], int64_t *examples,
                           int *batch_size);
/* Position the stream: the next batch is batch `batch` of epoch `epoch` (resume: exactly the batches an uninterrupted run would give next). */
/* batch >= batches_per_epoch continues into the following epochs; negative values are DFM_E_ARG.
 * Read-ahead batches are dropped (the thread is stopped and restarted at the next next()). */
int  dfm_train_data_seek(dfm_train_data *d, int64_t epoch, int64_t batch);
/* The next batch (crossing epochs as needed; epoch e's order is seeded by seed + e). Blocks; fills *b (free with dfm_batch_free). A sample that fails to read or decode is reported once on stderr via dfm_log_warn with its key and reason, counted, and left out of its batch; a batch left empty is skipped. Errors (< 0) only for failures of the whole dataset (shard vanished, no samples at all). */
/* A bad sample: a missing latents.npy or text.npy, a .npy that does not parse, a dtype other
 * than float16/float32, latents whose shape is not the one the scan found, text states that are
 * not [L, D] or [1, L, D] with L, D >= 1 or whose D differs from the batch's first sample, a NaN
 * or Inf in either, json.latents.shape or json.text.tokens that disagree with the arrays, a
 * sample over max_sample_bytes. Errors are sticky: once next() fails, it keeps failing. A whole
 * epoch of bad samples is an error too. */
int  dfm_train_data_next(dfm_train_data *d, dfm_batch *b);
void dfm_batch_free(dfm_batch *b);
int64_t dfm_train_data_skipped(const dfm_train_data *d);  /* bad samples seen so far */
/* (Counted each time one is left out of a batch handed out by next(), plus those the scan left
 * out; warned about once per sample.) */
void dfm_train_data_close(dfm_train_data *d);

/* The shard files one spec names, resolved as open() resolves specs (a file, a glob, a directory
 * with its index.json or its *.tar / *.tar.zst, an index.json), in that order: *paths is a
 * malloc'd array of *n malloc'd paths (free each, then the array). A file is taken as it is,
 * without opening it. Errors as open()'s for that spec (nothing matches, unreadable index). */
int dfm_train_data_resolve(const char *spec, char ***paths, int *n);

#endif
