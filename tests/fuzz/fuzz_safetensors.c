/* fuzz_safetensors.c — libFuzzer harness for the safetensors reader (io/safetensors.h): open the
 * bytes as a .safetensors file (header length, JSON header, every entry's dtype, shape and
 * offsets), then read every tensor it lists — converted to F32 when it is a float, as itself
 * otherwise — and the metadata. Bounds: tensors over 1 MiB are checked but not copied. */
#include "fuzz.h"
#include "base/dtype.h"
#include "io/safetensors.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    int fd = fz_memfile(data, size, path, sizeof path);
    if (fd < 0) return 0;
    dfm_st *st = NULL;
    if (fz_note("open", dfm_st_open(&st, path)) == 0) {
        unsigned sum = (unsigned)strlen(dfm_st_metadata(st));
        for (int i = 0; i < dfm_st_count(st); i++) {
            const dfm_st_tensor *t = dfm_st_at(st, i);
            if (dfm_st_find(st, t->name) != t) abort(); /* sorted, unique names */
            sum += (unsigned)strlen(dfm_st_dtype_name(t)) + (unsigned)strlen(dfm_st_file(st, t));
            for (size_t k = 0; k < t->nbytes && k < 4096; k++) sum += t->data[k];
            int is_float = t->dtype == DFM_F32 || t->dtype == DFM_BF16 || t->dtype == DFM_F16;
            dfm_dtype want = is_float ? DFM_F32 : t->dtype;
            if (t->dtype == DFM_ST_OTHER) want = DFM_U8; /* refused: DFM_E_UNSUPPORTED */
            size_t n = t->nbytes / (dfm_dtype_size(t->dtype) ? dfm_dtype_size(t->dtype) : 1);
            size_t bytes = n * dfm_dtype_size(want);
            if (dfm_st_check(st, t->name, want, t->ndim, t->shape) || bytes > ((size_t)1 << 20)) continue;
            void *dst = malloc(bytes ? bytes : 1);
            if (dst && dfm_st_read(st, t->name, want, t->ndim, t->shape, dst)) abort(); /* checked above */
            free(dst);
        }
        /* a wrong shape is an error, not a copy */
        if (dfm_st_count(st)) {
            const dfm_st_tensor *t = dfm_st_at(st, 0);
            int64_t shape[DFM_ST_MAX_DIMS + 1] = {0};
            memcpy(shape, t->shape, sizeof t->shape);
            shape[t->ndim] = 2;
            if (dfm_st_read(st, t->name, DFM_F32, t->ndim + 1, shape, NULL) == 0) abort();
        }
        (void)sum;
        dfm_st_close(st);
    }
    close(fd);
    return 0;
}
