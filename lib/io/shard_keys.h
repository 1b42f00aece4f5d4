/* shard_keys.h — the sample keys already in the complete shards of a directory: what a resumed
 * or incremental preparation (dfm-decode --skip-done DIR) leaves out.
 *
 * A complete shard is a file under its final name, NAME.tar or NAME.tar.zst (dfm-shard writes
 * NAME.tmp and renames it once whole; `.tmp` files are never read). The shards are found in DIR,
 * in its bucket directories (WxHxF/, unbucketed/) and in its part directories
 * (part-K-of-N/, with their bucket directories): every series dfm-shard -o DIR/... writes, with
 * --by-bucket and --part too. Keys come from the tar member names (KEY.FIELD, as the WebDataset
 * reader splits them; `__*__` metadata members skipped); for .tar the data is skipped by seeking,
 * .tar.zst is decompressed. The shards' order and numbering do not matter, except for the
 * frontier below.
 *
 * Base of a key: the part before its first '@' (the escaped source name: dfm-decode's suffixes
 * @c1, @f17, @dup2 follow it). The frontier: the base of the last sample of the highest-numbered
 * shard of each series (one directory, one file name with its last run of digits taken out). A
 * source whose samples were cut by a kill can only be one of those: its earlier samples are in
 * that shard, its later ones were in the open shard that was lost.
 *
 * Not here: which inputs to skip (data/decode_run.c decides), resuming a series (shard.c).
 */
#ifndef DFM_IO_SHARD_KEYS_H
#define DFM_IO_SHARD_KEYS_H
#include <stddef.h>
#include <stdint.h>

typedef struct dfm_done_keys dfm_done_keys;

/* Read the keys of every complete shard under dir (see above). A dir that does not exist, or
 * holds no shard, gives an empty set. A shard that cannot be read (corrupt, not a tar) is an
 * error naming it: DFM_E_IO / DFM_E_FORMAT with the reason. *out is owned by the caller
 * (dfm_done_keys_free). */
int dfm_done_keys_load(dfm_done_keys **out, const char *dir);
void dfm_done_keys_free(dfm_done_keys *d);
/* Keys and complete shards read. */
uint64_t dfm_done_keys_count(const dfm_done_keys *d);
int dfm_done_keys_shards(const dfm_done_keys *d);
/* 1 when key is in a complete shard. */
int dfm_done_keys_has(const dfm_done_keys *d, const char *key);
/* The keys whose base is `base` (the escaped source name, without '@'): *first gets the index of
 * the first (for dfm_done_keys_at), the return value their number (0: none). *frontier (may be
 * NULL) gets 1 when base is a frontier base (see above). */
size_t dfm_done_keys_base(const dfm_done_keys *d, const char *base, size_t *first, int *frontier);
/* The i-th key in base order (keys of one base are adjacent). Owned by d. */
const char *dfm_done_keys_at(const dfm_done_keys *d, size_t i);

#endif
