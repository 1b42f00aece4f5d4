/* stream.h — reading and writing the sample stream in either framing (DESIGN.md §2,
 * formats/sample-stream.md):
 *   msgpack : a sequence of msgpack maps, one per sample: "__key__" -> str, field -> bin
 *             (a value may also arrive as str, e.g. "txt" from Python; it is accepted),
 *             written between {"__dfm_stream__": 1} and {"__dfm_end__": N}: a stream that has
 *             the first and not the second was cut short (an earlier stage died).
 *   tar     : WebDataset members KEY.FIELD in sample order (ustar/pax), optionally zstd (.tar.zst);
 *             concatenated tar files are read through.
 * The reader detects the framing from the first bytes (zstd magic, tar "ustar" magic or a
 * msgpack map byte) — never from a file name. Each reader holds O(one sample) of memory.
 * A truncated input — a dfm msgpack stream without its end record, a tar without its end blocks
 * or cut inside a member, a zstd frame cut short, a pipe that closed before any byte — is an
 * error whose message says "input truncated (did the previous stage fail?)".
 *
 * Not here: what fields mean (npy.h, sample.h JSON helpers), shard rolling (dfm-shard).
 */
#ifndef DFM_IO_STREAM_H
#define DFM_IO_STREAM_H
#include <stdint.h>
#include "io/sample.h"

typedef enum { DFM_FRAMING_MSGPACK = 0, DFM_FRAMING_TAR = 1 } dfm_framing;

const char *dfm_framing_name(dfm_framing f); /* "msgpack" or "tar" */

/* Fields in one sample, in either framing; more is DFM_E_LIMIT on reading and writing. */
#define DFM_STREAM_MAX_FIELDS 4096
/* Bytes in a field name (the msgpack reader's bound); longer is DFM_E_LIMIT. */
#define DFM_STREAM_MAX_NAME 4096

typedef struct dfm_reader dfm_reader;

/* Open `path` ("-" = stdin). max_sample_bytes bounds one sample (0 = default 4 GiB); a larger
 * record is an error naming its key when known. */
int dfm_reader_open(dfm_reader **r, const char *path, uint64_t max_sample_bytes);
/* Read the next sample into s (cleared first). Returns 1 = got one, 0 = end of stream,
 * < 0 = error (message via dfm_errmsg(), naming the input once; the stream cannot continue, and
 * later calls return the same error and message). */
int dfm_reader_next(dfm_reader *r, dfm_sample *s);
uint64_t dfm_reader_bytes(const dfm_reader *r); /* bytes read from the input so far (raw) */
dfm_framing dfm_reader_framing(const dfm_reader *r); /* valid after the first next() */
int dfm_reader_compressed(const dfm_reader *r);       /* 1 if zstd-compressed */
void dfm_reader_close(dfm_reader *r);

typedef struct dfm_writer dfm_writer;

/* Write samples to fd (not closed by the writer) or to a file path; msgpack writes (and flushes)
 * its begin record at once. For tar, zstd_level > 0 compresses with zstd at that level (level 0 =
 * plain tar), ending a zstd frame after every sample (the tar end blocks get a last frame of
 * their own), so a reader that knows a sample's frame offset decompresses that sample alone
 * (data/sample_index.h); any zstd reader reads the frames on. Tar members: KEY.FIELD in the order
 * the fields are stored, mode 0444, mtime 0, uid/gid 0, no user/group names, pax only when a
 * name needs it — the same samples give byte-identical output. */
int dfm_writer_open_fd(dfm_writer **w, int fd, dfm_framing framing, int zstd_level);
/* The same for a path ("-" = stdout). A regular file is written as "<path>.tmp", fsynced and
 * renamed to `path` by a successful dfm_writer_close (removed on failure), so a file under its
 * final name is always complete; an existing non-regular file (FIFO, /dev/null) is written
 * directly. zstd_level > 0 compresses the msgpack framing too. */
int dfm_writer_open(dfm_writer **w, const char *path, dfm_framing framing, int zstd_level);
/* Can s be written in this framing and read back the same? Keys and field names must survive
 * both framings: they must be valid UTF-8; a key that is empty, has a '.' in its last
 * '/'-component, an empty, "." or ".." component, or looks like `__*__`, and a field name that is
 * empty, has '/' or upper-case ASCII, looks like `__*__`, is longer than DFM_STREAM_MAX_NAME or
 * comes twice, are DFM_E_ARG; more than DFM_STREAM_MAX_FIELDS fields, or (msgpack) a field of
 * 4 GiB or more, DFM_E_LIMIT; (tar) non-ASCII names without a C.UTF-8 locale DFM_E_UNSUPPORTED.
 * The message starts "sample 'KEY': " (control bytes and invalid UTF-8 shown as \xNN). */
int dfm_sample_check(const dfm_sample *s, dfm_framing framing);
/* Append one sample and hand its bytes to the output (a streaming filter's reader sees each
 * sample as soon as it is put). A sample dfm_sample_check refuses is refused before anything is
 * written: the error comes back and the writer stays usable (dfm_writer_error() is 0) — a caller
 * skips that sample and goes on. Output errors are sticky: dfm_writer_error() and every later
 * call return the same code (DFM_E_PIPE when the reader went away), and write errors name the
 * output (base/cli.h dfm_output_name). */
int dfm_writer_put(dfm_writer *w, const dfm_sample *s);
/* The sticky output error, 0 while the output is fine. */
int dfm_writer_error(const dfm_writer *w);
/* How write errors name the output (copied; default: the path of dfm_writer_open, else
 * base/cli.h dfm_output_name(fd)). */
int dfm_writer_set_name(dfm_writer *w, const char *name);
/* Bytes handed to the output so far (compressed bytes when compressing, after flush). */
uint64_t dfm_writer_bytes(const dfm_writer *w);
/* The clean finish: write the end mark (msgpack end record with the sample count, tar end
 * blocks), end the zstd frame, flush; in path mode sync and rename into place. Returns < 0 on a
 * write error, DFM_E_PIPE when the reader went away (then no end mark is written). Frees w. */
int dfm_writer_close(dfm_writer *w);
/* The stage failed (truncated or corrupt input, --strict stop, ...): hand over the samples put so
 * far but no end mark, so the next stage reports a truncated input; in path mode the .tmp is
 * removed. Frees w. */
void dfm_writer_abort(dfm_writer *w);

#endif
