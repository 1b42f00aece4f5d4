/* describe.h — a one-line text description of a sample, for `dfm-shard --list` and tests:
 *   KEY<TAB>FIELD=VALUE<TAB>...
 * txt fields show the text (tabs and newlines escaped as \t \n), json fields the JSON text,
 * .npy fields their dtype and shape ("u1[1,480,640,3]"), other fields their size ("1234B"). */
#ifndef DFM_IO_DESCRIBE_H
#define DFM_IO_DESCRIBE_H
#include "base/buf.h"
#include "io/sample.h"

int dfm_sample_describe(const dfm_sample *s, dfm_buf *out);

#endif
