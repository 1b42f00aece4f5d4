/* tb_events.h — TensorBoard event files: write scalar summaries, read them back, and purge the
 * steps a crashed run logged past its last checkpoint.
 *
 * A file is a sequence of TFRecords (uint64 length LE, uint32 masked CRC32C of those 8 bytes,
 * data, uint32 masked CRC32C of the data) each holding one serialized tensorboard.Event proto:
 * first {wall_time, file_version: "brain.Event:2"}, then one {wall_time, step, summary:
 * {value: [{tag, simple_value}]}} per scalar. TensorBoard, tf.summary and torch's SummaryWriter
 * read these files; our scalar records are byte-identical to the ones tensorboard's own
 * EventFileWriter writes for the same event (tests/unit/test_tb_events.c).
 * ref: tensorboard/compat/proto/event.proto, summary.proto; tensorboard/summary/writer/
 *      record_writer.py RecordWriter.write, event_file_writer.py EventFileWriter
 *
 * Not here: images, histograms, text, graphs, tensor-style (tf2) scalars — the reader skips
 * every event and value that is not a simple_value scalar. A writer is not thread-safe.
 */
#ifndef DFM_IO_TB_EVENTS_H
#define DFM_IO_TB_EVENTS_H
#include "base/buf.h"

#include <stddef.h>
#include <stdint.h>

typedef struct dfm_tb dfm_tb;

/* Create dir if missing (its parent must exist) and open a new file
 * dir/events.out.tfevents.<unix seconds, 10 digits>.<hostname>.<pid>.<seq> (seq counts the files
 * this process opened; a name that exists already is never reused), write the file_version event
 * and flush it. TensorBoard reads a directory's files in name order, so when an events file in
 * dir already has these seconds or later ones (a run resumed within the same second), the name
 * takes one second past the newest: files sort in the order they were opened. The events keep
 * the true wall time. *tb is the caller's, freed by dfm_tb_close. */
int dfm_tb_open(dfm_tb **tb, const char *dir);
/* The path of the file being written (owned by tb). */
const char *dfm_tb_path(const dfm_tb *tb);
/* One scalar summary event stamped with the current time (seconds since the epoch). Buffered:
 * nothing reaches the disk before dfm_tb_flush/dfm_tb_close (or the stdio buffer fills). tag:
 * non-empty valid UTF-8 ("loss/train"); value may be NaN or ±Inf; step any int64. */
int dfm_tb_scalar(dfm_tb *tb, const char *tag, int64_t step, float value);
/* The same with a given wall_time (seconds since the epoch) — for tests and replays. */
int dfm_tb_scalar_at(dfm_tb *tb, const char *tag, int64_t step, float value, double wall_time);
/* fflush + fsync: a kill -9 (or power loss) after this loses nothing written before it. */
/* An image (PNG bytes, height x width RGB) under tag at step: TensorBoard's Images tab. */
int dfm_tb_image(dfm_tb *tb, const char *tag, int64_t step, const void *png, size_t png_len, int height, int width);
int dfm_tb_image_event(dfm_buf *out, const char *tag, int64_t step, const void *png, size_t png_len, int height, int width,
                       double wall_time);
int dfm_tb_flush(dfm_tb *tb);
/* Flush, fsync and close; frees tb (NULL is a no-op). Returns the first error the writer met. */
int dfm_tb_close(dfm_tb *tb);

/* Called once per scalar; tag is NUL-terminated and valid only during the call. Return 0 to
 * go on; any other value stops dfm_tb_read, which returns it. */
typedef int (*dfm_tb_scalar_fn)(void *ctx, const char *tag, int64_t step, float value,
                                double wall_time);
/* Read an events file (ours or any TensorFlow/TensorBoard writer's) and call fn for every
 * simple_value scalar in file order (several values of one event in their order). Both masked
 * CRC32Cs of every record are verified. A file that ends inside its last record (a killed
 * writer) sets *truncated = 1 and is not an error — the records before it are delivered; with
 * truncated NULL it is DFM_E_FORMAT. A bad CRC or malformed proto anywhere is DFM_E_FORMAT naming
 * the file and the record's byte offset, as is a tag holding a NUL byte. Fields are read as
 * protobuf reads them (last scalar wins, a later oneof member replaces an earlier one, unknown
 * fields and known numbers with another wire type skipped). fn may be NULL (just verify). */
int dfm_tb_read(const char *path, dfm_tb_scalar_fn fn, void *ctx, int *truncated);

/* For a run resumed from its checkpoint at `step`: rewrite every events file in dir
 * (names containing "tfevents") without the events whose step is > step, so the old run's
 * points past the checkpoint — logged, then lost with the crash — do not appear twice next to
 * the resumed run's. Every kind of event past `step` goes (images too), the file_version event
 * and everything at or before `step` stays, byte for byte; a truncated tail is dropped. Each
 * file is rewritten through a temporary name without "tfevents" (so a live TensorBoard never
 * reads it half-written), fsync and rename; files with nothing to drop are not touched.
 * *removed (may be NULL) counts the events dropped over all files. A corrupt file stops the
 * purge with DFM_E_FORMAT and stays as it was. Call it before dfm_tb_open, while no writer has
 * a file in dir open. */
int dfm_tb_purge_after(const char *dir, int64_t step, int *removed);

/* CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as TFRecord uses it:
 * dfm_tb_crc32c("123456789", 9) == 0xE3069283. */
uint32_t dfm_tb_crc32c(const void *data, size_t n);
/* TFRecord's masked form: ((crc >> 15) | (crc << 17)) + 0xa282ead8. */
uint32_t dfm_tb_masked_crc32c(const void *data, size_t n);
/* Frame `data` as one TFRecord appended to out. */
int dfm_tb_record_append(dfm_buf *out, const void *data, size_t n);
/* Serialize one scalar Event (no framing) appended to out: fields in the order protobuf writes
 * them, a zero wall_time or step omitted as proto3 does. tag as for dfm_tb_scalar. */
int dfm_tb_scalar_event(dfm_buf *out, const char *tag, int64_t step, float value, double wall_time);

#endif
