/* stream_impl.h — internals shared by the stream modules (not part of the public API):
 *   stream_bytes.c    the byte layer: a source (fd + push-back + zstd decompression) and a sink
 *                     (optional zstd compression + buffered full writes to an fd)
 *   stream_msgpack.c  the msgpack framing, reading and writing
 *   stream_tar.c      the tar (WebDataset) framing through libarchive, reading and writing
 *   stream.c          the public dfm_reader / dfm_writer: detection and dispatch
 * Callers outside lib/io use stream.h only.
 */
#ifndef DFM_IO_STREAM_IMPL_H
#define DFM_IO_STREAM_IMPL_H
#include <stddef.h>
#include <stdint.h>

#include "io/sample.h"
#include "io/stream.h"

/* ---- byte source ---------------------------------------------------------------------- */

#define DFM_SRC_PEEK 512 /* bytes looked at to detect the framing */

typedef struct dfm_src dfm_src;

/* Wrap fd (owned when own_fd: closed by dfm_src_free). `name` is used in messages only. */
int dfm_src_new(dfm_src **out, int fd, int own_fd, const char *name);
void dfm_src_free(dfm_src *s);
/* Look at the first bytes: fills *head with up to DFM_SRC_PEEK bytes of the (decompressed when
 * zstd) stream without consuming them; *zstd says whether the raw bytes were zstd. Call once,
 * before any dfm_src_read. Returns 0 or < 0. */
int dfm_src_detect(dfm_src *s, const uint8_t **head, size_t *head_len, int *zstd);
/* Read up to n bytes; returns the count (0 = end of stream) or < 0 on an error (I/O error,
 * corrupt or truncated zstd). Short counts happen; loop for exact amounts. Messages do not name
 * the source: the public reader (stream.c) puts its name in front once. */
long dfm_src_read(dfm_src *s, void *buf, size_t n);
const char *dfm_src_name(const dfm_src *s);
uint64_t dfm_src_bytes(const dfm_src *s); /* raw (compressed) bytes read from the fd so far */
int dfm_src_at_eof(const dfm_src *s);     /* the fd has reported end of file */

/* The message of every stream that ends before its writer finished it (formats/sample-stream.md
 * §5): the words a user sees when an earlier stage of a pipeline died. */
#define DFM_TRUNCATED_MSG "input truncated (did the previous stage fail?)"

/* ---- byte sink ------------------------------------------------------------------------ */

typedef struct dfm_sink dfm_sink;

/* zstd_level > 0 compresses with zstd (checksummed frame). fd is not closed. Write errors name
 * the output as dfm_output_name(fd) gives it (base/cli.h). */
int dfm_sink_new(dfm_sink **out, int fd, int zstd_level);
/* Name the output in write errors instead (borrowed: it must outlive the sink; NULL = default). */
void dfm_sink_set_name(dfm_sink *k, const char *name);
/* Buffer n bytes; large writes go straight through. Errors are sticky. */
int dfm_sink_write(dfm_sink *k, const void *p, size_t n);
/* Hand everything buffered so far to the fd (zstd keeps what it has not yet compressed). */
int dfm_sink_flush(dfm_sink *k);
/* End the zstd frame and flush. */
int dfm_sink_finish(dfm_sink *k);
/* End the zstd frame here (the next byte starts a new frame); no-op without zstd. The tar
 * writer ends one after every sample, so a reader holding a sample's frame offset can
 * decompress that sample alone (data/sample_index.h). A multi-frame stream is a valid .zst. */
int dfm_sink_end_frame(dfm_sink *k);
/* The writer failed: hand the fd what is complete so far (a zstd block is flushed, the frame is
 * not ended) and drop every later write, so nothing that marks a clean end (end record, tar end
 * blocks, zstd epilogue) can reach the output. */
void dfm_sink_abort(dfm_sink *k);
uint64_t dfm_sink_written(const dfm_sink *k); /* bytes the fd accepted */
int dfm_sink_error(const dfm_sink *k);        /* sticky error code, 0 if none */
void dfm_sink_free(dfm_sink *k);

/* ---- framings ------------------------------------------------------------------------- */

typedef struct dfm_mp_reader dfm_mp_reader;
int dfm_mp_reader_new(dfm_mp_reader **out, dfm_src *src, uint64_t max_sample_bytes);
int dfm_mp_reader_next(dfm_mp_reader *r, dfm_sample *s); /* 1, 0 = end, < 0 */
void dfm_mp_reader_free(dfm_mp_reader *r);
/* Append one sample as a msgpack map to the sink. */
int dfm_mp_write(dfm_sink *k, const dfm_sample *s);
/* The control records (formats/sample-stream.md §2.1): {"__dfm_stream__": 1} first, and
 * {"__dfm_end__": <samples>} when the writer finishes cleanly. */
int dfm_mp_write_begin(dfm_sink *k);
int dfm_mp_write_end(dfm_sink *k, uint64_t samples);

typedef struct dfm_tar_reader dfm_tar_reader;
int dfm_tar_reader_new(dfm_tar_reader **out, dfm_src *src, uint64_t max_sample_bytes);
int dfm_tar_reader_next(dfm_tar_reader *r, dfm_sample *s); /* 1, 0 = end, < 0 */
void dfm_tar_reader_free(dfm_tar_reader *r);

typedef struct dfm_tar_writer dfm_tar_writer;
/* What the tar writer would refuse in s (checked before anything is written): a name it cannot
 * encode. Returns 0 or DFM_E_UNSUPPORTED with the reason. */
int dfm_tar_check(const dfm_sample *s);
int dfm_tar_writer_new(dfm_tar_writer **out, dfm_sink *k);
int dfm_tar_writer_put(dfm_tar_writer *w, const dfm_sample *s);
/* Write the end-of-archive blocks (to the sink; the caller finishes the sink) and free w.
 * After dfm_sink_abort the blocks go nowhere. */
int dfm_tar_writer_close(dfm_tar_writer *w);

#endif
