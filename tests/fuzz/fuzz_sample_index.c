/* fuzz_sample_index.c — libFuzzer harness for shard random access (data/sample_index.h): the
 * scan of a .tar or .tar.zst (our own tar header reader, zstd frame walking and jumping), then a
 * read of every sample found at its location. Bounds: at most 256 samples, 1 MiB per sample. */
#include "fuzz.h"
#include "data/sample_index.h"
#include "io/sample.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    dfm_sidx_loc loc[256];
    int n;
} locs;

static int take(void *ud, const dfm_sidx_entry *e)
{
    locs *l = ud;
    if (l->n == 256) return -1;
    l->loc[l->n++] = e->loc;
    return (int)(strlen(e->key) & 0) + (int)(strlen(e->lat_desc) & 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    int fd = fz_memfile(data, size, path, sizeof path);
    if (fd < 0) return 0;
    locs l = {.n = 0};
    dfm_sidx_info info;
    int rc = fz_note("scan", dfm_sidx_scan(path, take, &l, &info));
    dfm_sidx_reader *r = NULL;
    if (rc == 0 && dfm_sidx_reader_new(&r) == 0) {
        static const char *const want[] = {"latents.npy", "text.npy", "json"};
        dfm_sample s;
        dfm_sample_init(&s);
        for (int i = 0; i < l.n; i++) {
            int foreign;
            fz_note("read", dfm_sidx_read(r, fd, info.zstd, info.size, l.loc[i], want, 3, 1u << 20, &s,
                                          &foreign));
        }
        dfm_sample_free(&s);
        dfm_sidx_reader_free(r);
    }
    close(fd);
    return 0;
}
