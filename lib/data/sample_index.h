/* sample_index.h — random access to the samples of WebDataset tar shards (.tar, .tar.zst), for the
 * training loader (train_data.h).
 *
 * Scanning a shard walks its tar member headers and reads only what indexing needs: the `json`
 * member (when at most 1 MiB: its bucket) and the .npy header at the start of `latents.npy`. Every
 * other member is passed over — lseek in a plain .tar, so the scan of a plain shard reads about
 * 1 KiB per member. Each sample comes out as a location: the byte offset of its first member
 * header in a .tar; in a .tar.zst the compressed offset of the zstd frame holding that header plus
 * the decompressed bytes before it in the frame (0 for every sample of a dfm-shard .tar.zst, where
 * a frame ends at every sample boundary: stream_bytes.c).
 *
 * zstd shards: the scan decompresses a frame only as far as the members it needs, and then jumps
 * to the next frame by its block headers without decompressing the rest, once the shard has shown
 * it is framed per sample (the first three samples each begin a frame). Any other .tar.zst — a
 * single frame, frames cut elsewhere — is scanned by decompressing it whole, and its samples are
 * read by decompressing from the start of their frame (a single-frame shard: from its start).
 *
 * Grouping follows the WebDataset reader (stream_tar.c): regular members only, `__*__` names
 * skipped, key and field split at the first dot of the name's last path component, field
 * lower-cased, adjacent members with one key form a sample. ustar, pax (path, size) and GNU long
 * names are understood.
 *
 * Not here: buckets, batches, what the fields mean beyond the latents header (train_data.c).
 */
#ifndef DFM_DATA_SAMPLE_INDEX_H
#define DFM_DATA_SAMPLE_INDEX_H
#include <stdint.h>
#include "io/sample.h"

/* Where a sample starts. .tar: off = byte offset of its first header, inner = 0.
 * .tar.zst: off = compressed offset of the zstd frame holding that header, inner = the
 * decompressed bytes of that frame before it. */
typedef struct {
    uint64_t off, inner;
} dfm_sidx_loc;

/* What the scan learned about one sample (handed to the callback; pointers valid during it). */
typedef struct {
    dfm_sidx_loc loc;
    const char *key;
    /* latents.npy: 1 when found; lat_desc is dfm_npy_describe()'s text ("float16 [16,3,8,8]"),
     * lat_ok = 1 when it is a float16/float32 4-D array, whose shape is in lat_shape */
    int have_latents, lat_ok;
    int64_t lat_shape[4];
    char lat_desc[96];
    /* json.bucket.width/height when the json member has them (else 0) */
    int bucket_w, bucket_h;
} dfm_sidx_entry;

/* What the scan learned about the shard. */
typedef struct {
    uint64_t size;         /* bytes of the file at scan time */
    int zstd;              /* starts with the zstd magic (detected from bytes, not the name) */
    int framed;            /* zstd: framed per sample, the scan jumped from frame to frame */
    uint64_t frames;       /* zstd frames met (framed: every frame; else frames decompressed) */
    uint64_t shared;       /* zstd: samples that do not begin their frame (inner > 0) */
    uint64_t samples;
} dfm_sidx_info;

/* fn returns 0 to go on or < 0 to stop the scan with that error. */
typedef int (*dfm_sidx_fn)(void *ud, const dfm_sidx_entry *e);

/* Scan the shard at `path`, calling fn for each sample in order. Errors (< 0, message naming the
 * path): cannot open or read it, corrupt tar headers, a corrupt or truncated zstd stream — a
 * broken shard, not a bad sample. A tar without end blocks is accepted (its members are whole). */
int dfm_sidx_scan(const char *path, dfm_sidx_fn fn, void *ud, dfm_sidx_info *info);

typedef struct dfm_sidx_reader dfm_sidx_reader;

int dfm_sidx_reader_new(dfm_sidx_reader **r);
void dfm_sidx_reader_free(dfm_sidx_reader *r);
/* Read the sample at `loc` of the shard open on fd (zstd as the scan found; file_size bounds
 * every read) into s (cleared first): its key and the fields named in want[0..nwant) that it
 * has (other members are passed over without reading them where the framing allows). A sample
 * whose wanted fields exceed max_bytes (0 = no limit) is DFM_E_LIMIT. The first header at loc
 * must be a sample member (else DFM_E_FORMAT: the file changed since the scan).
 * *foreign (may be NULL) is set to 1 when, in a zstd frame that began with this sample, another
 * sample follows inside the same frame (a shard the scan believed framed per sample was not:
 * the samples after the first in such a frame were not indexed). On an error s->key is the
 * sample's key when its first header was read (NULL otherwise); its fields mean nothing. */
int dfm_sidx_read(dfm_sidx_reader *r, int fd, int zstd, uint64_t file_size, dfm_sidx_loc loc,
                  const char *const *want, int nwant, uint64_t max_bytes, dfm_sample *s,
                  int *foreign);

#endif
