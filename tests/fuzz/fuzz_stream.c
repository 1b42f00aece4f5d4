/* fuzz_stream.c — libFuzzer harness for the sample stream reader (io/stream.h), both framings:
 * the reader detects msgpack, tar or zstd-compressed tar from the bytes. Every sample read is
 * checked (key and field bytes readable, the json field parsed) and written back through a
 * msgpack and a tar writer to /dev/null (the writer must refuse, not crash on, what it cannot
 * frame). Bounds: samples of at most 1 MiB, at most 256 samples per input. */
#include "fuzz.h"
#include "io/sample.h"
#include "io/stream.h"

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    int fd = fz_memfile(data, size, path, sizeof path);
    if (fd < 0) return 0;
    dfm_reader *r = NULL;
    if (dfm_reader_open(&r, path, (uint64_t)1 << 20)) {
        close(fd);
        return 0;
    }
    int null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    dfm_writer *wm = NULL, *wt = NULL;
    if (null_fd >= 0) {
        dfm_writer_open_fd(&wm, null_fd, DFM_FRAMING_MSGPACK, 0);
        dfm_writer_open_fd(&wt, null_fd, DFM_FRAMING_TAR, 0);
    }
    dfm_sample s;
    dfm_sample_init(&s);
    unsigned sum = 0;
    for (int n = 0; n < 256 && fz_note("next sample", dfm_reader_next(r, &s)) == 1; n++) {
        sum += s.key ? (unsigned)strlen(s.key) : 0;
        for (int i = 0; i < s.n; i++) {
            sum += (unsigned)strlen(s.fields[i].name);
            for (size_t k = 0; k <= s.fields[i].len; k++) sum += s.fields[i].data[k]; /* NUL included */
        }
        cJSON *j = NULL;
        if (dfm_sample_json(&s, &j) == 0) cJSON_Delete(j);
        if (wm) dfm_writer_put(wm, &s);
        if (wt) dfm_writer_put(wt, &s);
    }
    (void)dfm_reader_framing(r);
    (void)dfm_reader_compressed(r);
    dfm_sample_free(&s);
    dfm_reader_close(r);
    if (wm) dfm_writer_close(wm);
    if (wt) dfm_writer_close(wt);
    if (null_fd >= 0) close(null_fd);
    close(fd);
    return (int)(sum & 0);
}
