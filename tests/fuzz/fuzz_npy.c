/* fuzz_npy.c — libFuzzer harness for the .npy parser (io/npy.h): parse, read every data byte the
 * header claims, and rebuild the array with dfm_npy_build, which must parse back to the same
 * header. */
#include "fuzz.h"
#include "io/npy.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dfm_npy a;
    if (fz_note("npy", dfm_npy_parse(data, size, &a))) return 0;
    if (a.nbytes > size || (a.nbytes && (a.data < data || a.data + a.nbytes > data + size))) abort();
    unsigned sum = 0;
    for (size_t i = 0; i < a.nbytes; i++) sum += a.data[i];
    uint8_t *out = NULL;
    size_t len = 0;
    if (dfm_npy_build(a.dtype, a.ndim, a.shape, a.data, &out, &len) == 0) {
        dfm_npy b;
        if (dfm_npy_parse(out, len, &b) || b.dtype != a.dtype || b.ndim != a.ndim || b.nbytes != a.nbytes ||
            memcmp(b.shape, a.shape, sizeof a.shape) || (a.nbytes && memcmp(b.data, a.data, a.nbytes)))
            abort(); /* what we write must read back */
        free(out);
    }
    return (int)(sum & 0); /* keep the loop */
}
