/* fuzz_tb_events.c — libFuzzer harness for the TensorBoard events reader (io/tb_events.h): read
 * the bytes as an events file (every scalar, tags as C strings), then put them in a scratch
 * directory and purge it after a step taken from the first scalar's step; a purge that succeeds
 * must leave a file that reads back complete (not truncated) with no scalar past that step. */
#include "fuzz.h"
#include "io/tb_events.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    unsigned sum;
    int n;
    int64_t first_step, max_step;
} acc;

static int visit(void *ctx, const char *tag, int64_t step, float value, double wall_time)
{
    acc *a = ctx;
    a->sum += (unsigned)strlen(tag);
    if (a->n++ == 0) a->first_step = step;
    if (a->n == 1 || step > a->max_step) a->max_step = step;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > ((size_t)1 << 20)) return 0;
    char path[64];
    int fd = fz_memfile(data, size, path, sizeof path);
    if (fd < 0) return 0;
    acc a = {0};
    int trunc = 0;
    int rc = fz_note("read", dfm_tb_read(path, visit, &a, &trunc));
    close(fd);
    if (rc) return 0;
    char dir[512], file[600];
    if (fz_tmpdir(dir, sizeof dir)) return 0;
    if (fz_put(dir, "events.out.tfevents.1.host.1.0", data, size) == 0) {
        int64_t step = a.n ? a.first_step : 0;
        int removed = 0;
        if (fz_note("purge", dfm_tb_purge_after(dir, step, &removed)) == 0) {
            snprintf(file, sizeof file, "%s/events.out.tfevents.1.host.1.0", dir);
            acc b = {0};
            trunc = -1;
            if (dfm_tb_read(file, visit, &b, &trunc) || trunc) abort(); /* a purge writes whole records */
            if (b.n && b.max_step > step) abort();
            if (b.n > a.n) abort();
        }
    }
    fz_rmtree(dir);
    return (int)(a.sum & 0);
}
