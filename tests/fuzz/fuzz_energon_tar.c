/* fuzz_energon_tar.c — libFuzzer harness for the tar header walk of dfm-shard --energon
 * (io/energon.c dfm_energon_scan_tar: ustar, pax path/size, GNU long names, Energon's name
 * split), on the bytes as a file. What it returns must hold together: samples in file order,
 * each sample's byte range inside [0, end) and its parts' data inside its range and the file.
 * Input: a .tar shard. */
#include "fuzz.h"
#include "io/energon.h"

#include <stdlib.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1 << 22)) return 0;
    char path[64];
    int fd = fz_memfile(data, size, path, sizeof path);
    if (fd < 0) return 0;
    dfm_energon_tar t;
    if (fz_note("scan", dfm_energon_scan_tar(path, &t)) == 0) {
        if (t.end > size) abort();
        uint64_t prev = 0;
        for (int i = 0; i < t.nsamples; i++) {
            const dfm_energon_sample *s = &t.samples[i];
            if (s->offset < prev || s->offset + s->size > t.end || s->size == 0 || !s->key) abort();
            if (s->nparts < 1 || s->first_part < 0 || s->first_part + s->nparts > t.nparts) abort();
            for (int k = 0; k < s->nparts; k++) {
                const dfm_energon_part *p = &t.parts[s->first_part + k];
                if (p->data_offset < s->offset || p->data_offset + p->data_size > s->offset + s->size ||
                    !p->name)
                    abort();
            }
            prev = s->offset + s->size;
        }
    }
    dfm_energon_tar_free(&t);
    close(fd);
    return 0;
}
