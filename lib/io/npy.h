/* npy.h — the NumPy .npy subset we read and write: format version 1.0 (2.0 read too), C order,
 * little-endian dtypes u1 (uint8), i4 (int32), i8 (int64), f2 (float16), f4 (float32).
 * Headers are bounds-checked: the bytes may come from anyone.
 */
#ifndef DFM_IO_NPY_H
#define DFM_IO_NPY_H
#include <stddef.h>
#include <stdint.h>

typedef enum { DFM_NPY_U8, DFM_NPY_I32, DFM_NPY_I64, DFM_NPY_F16, DFM_NPY_F32 } dfm_npy_dtype;

#define DFM_NPY_MAX_DIMS 8
typedef struct {
    dfm_npy_dtype dtype;
    int ndim;
    int64_t shape[DFM_NPY_MAX_DIMS];
    const uint8_t *data; /* points into the buffer given to dfm_npy_parse */
    size_t nbytes;       /* product(shape) * itemsize */
} dfm_npy;

size_t dfm_npy_itemsize(dfm_npy_dtype t);
const char *dfm_npy_descr(dfm_npy_dtype t); /* "|u1", "<i4", ... */
/* Parse a .npy held in memory; out->data aliases buf. Rejects Fortran order, big-endian,
 * unsupported dtypes, truncated data and trailing garbage. */
int dfm_npy_parse(const uint8_t *buf, size_t len, dfm_npy *out);
/* numpy's name for a dtype: "uint8", "int32", "int64", "float16", "float32". */
const char *dfm_npy_type_name(dfm_npy_dtype t);
/* For messages about a .npy a stage will not take: its dtype (numpy's name) and shape, such as
 * "float64 [16,3,8,8]", read from the header alone, so also for the dtypes dfm_npy_parse
 * rejects; "not a readable .npy" when the header itself is broken. Writes at most n bytes to
 * out and returns it. May replace the thread's error message (error.h). */
const char *dfm_npy_describe(const uint8_t *buf, size_t len, char *out, size_t n);
/* Build a complete .npy (header + copy of data) in a malloc'd buffer; one zero byte follows
 * *out_len, so the buffer can go straight to dfm_sample_set_owned(). Headers are byte-identical
 * to numpy's np.save (numpy >= 1.24). */
int dfm_npy_build(dfm_npy_dtype t, int ndim, const int64_t *shape, const void *data,
                  uint8_t **out, size_t *out_len);
/* Header only: writes the header for (t, shape) into a malloc'd buffer of *hdr_len bytes, so a
 * caller can append the data without an extra copy. Header length is a multiple of 64. */
int dfm_npy_header(dfm_npy_dtype t, int ndim, const int64_t *shape, uint8_t **hdr, size_t *hdr_len);

#endif
