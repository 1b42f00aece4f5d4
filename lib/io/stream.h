/* stream.h — reading and writing the sample stream in either framing (DESIGN.md §2,
 * formats/sample-stream.md):
 *   msgpack : a sequence of msgpack maps, one per sample: "__key__" -> str, field -> bin
 *             (a value may also arrive as str, e.g. "txt" from Python; it is accepted).
 *   tar     : WebDataset members KEY.FIELD in sample order (ustar/pax), optionally zstd (.tar.zst);
 *             concatenated tar files are read through.
 * The reader detects the framing from the first bytes (zstd magic, tar "ustar" magic or a
 * msgpack map byte) — never from a file name. Each reader holds O(one sample) of memory.
 *
 * Not here: what fields mean (npy.h, sample.h JSON helpers), shard rolling (dfm-shard).
 */
#ifndef DFM_IO_STREAM_H
#define DFM_IO_STREAM_H
#include <stdint.h>
#include "io/sample.h"

typedef enum { DFM_FRAMING_MSGPACK = 0, DFM_FRAMING_TAR = 1 } dfm_framing;

const char *dfm_framing_name(dfm_framing f); /* "msgpack" or "tar" */

/* Fields in one sample, in either framing; more is DFM_E_LIMIT on reading. */
#define DFM_STREAM_MAX_FIELDS 4096

typedef struct dfm_reader dfm_reader;

/* Open `path` ("-" = stdin). max_sample_bytes bounds one sample (0 = default 4 GiB); a larger
 * record is an error naming its key when known. */
int dfm_reader_open(dfm_reader **r, const char *path, uint64_t max_sample_bytes);
/* Read the next sample into s (cleared first). Returns 1 = got one, 0 = end of stream,
 * < 0 = error (message via dfm_errmsg(); the stream cannot continue). */
int dfm_reader_next(dfm_reader *r, dfm_sample *s);
dfm_framing dfm_reader_framing(const dfm_reader *r); /* valid after the first next() */
int dfm_reader_compressed(const dfm_reader *r);       /* 1 if zstd-compressed */
void dfm_reader_close(dfm_reader *r);

typedef struct dfm_writer dfm_writer;

/* Write samples to fd (not closed by the writer) or to a file path. For tar, zstd_level > 0
 * compresses with zstd at that level (level 0 = plain tar). Tar members: KEY.FIELD in the order
 * the fields are stored, mode 0444, mtime 0, uid/gid 0, no user/group names, pax only when a
 * name needs it — the same samples give byte-identical output. */
int dfm_writer_open_fd(dfm_writer **w, int fd, dfm_framing framing, int zstd_level);
/* The same for a path ("-" = stdout). A regular file is written as "<path>.tmp", fsynced and
 * renamed to `path` by a successful dfm_writer_close (removed on failure), so a file under its
 * final name is always complete; an existing non-regular file (FIFO, /dev/null) is written
 * directly. zstd_level > 0 compresses the msgpack framing too. */
int dfm_writer_open(dfm_writer **w, const char *path, dfm_framing framing, int zstd_level);
/* Append one sample and hand its bytes to the output (a streaming filter's reader sees each
 * sample as soon as it is put). Keys and field names must survive both framings: they must be
 * valid UTF-8, and a key that is empty, has a '.' in its last '/'-component, an empty, "." or ".." component, or looks like
 * `__*__`, and a field name that is empty, has '/' or upper-case ASCII, or looks like `__*__`,
 * give DFM_E_ARG before anything is written (the writer stays usable). Output errors are sticky:
 * every later call returns the same code (DFM_E_PIPE when the reader went away). */
int dfm_writer_put(dfm_writer *w, const dfm_sample *s);
/* Bytes handed to the output so far (compressed bytes when compressing, after flush). */
uint64_t dfm_writer_bytes(const dfm_writer *w);
/* Flush and finish (tar end blocks, zstd epilogue); returns < 0 on a write error, DFM_E_PIPE
 * when the reader went away. Frees w in every case. */
int dfm_writer_close(dfm_writer *w);

#endif
