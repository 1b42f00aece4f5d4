/* safetensors.h — reading (mmap) and writing safetensors files, single or sharded.
 *
 * Format: u64 little-endian header length n, n bytes of JSON {name: {dtype, shape, data_offsets:
 * [begin, end]}, "__metadata__": {...}}, then the data. The file may come from anyone: every
 * header field is bounds-checked (header length vs file size, offsets inside the data area and
 * matching dtype x shape, no overlaps needed, shapes non-negative and not overflowing).
 * Sharded models: NAME.safetensors.index.json {"metadata": {...}, "weight_map": {tensor: file}}.
 * Not here: what the tensors mean (models/), device upload (tensor/).
 */
#ifndef DFM_IO_SAFETENSORS_H
#define DFM_IO_SAFETENSORS_H
#include <stddef.h>
#include <stdint.h>
#include "base/dtype.h"

#define DFM_ST_MAX_DIMS 8

typedef struct {
    const char *name;
    dfm_dtype dtype;         /* F32, BF16, F16, U8, I32, I64; other dtypes are listed as unsupported */
    int ndim;
    int64_t shape[DFM_ST_MAX_DIMS];
    const uint8_t *data;     /* inside the mmap */
    size_t nbytes;
} dfm_st_tensor;

typedef struct dfm_st dfm_st;

/* Open a model's weights: `path` is a .safetensors file, a .safetensors.index.json, or a directory
 * holding exactly one of: model.safetensors(.index.json), diffusion_pytorch_model.safetensors
 * (.index.json), or else a single *.safetensors.index.json or a single *.safetensors file.
 * Index entries must name files beside the index; each shard is mapped once. Errors name the
 * file and the bad field. */
int dfm_st_open(dfm_st **st, const char *path);
void dfm_st_close(dfm_st *st);
int dfm_st_count(const dfm_st *st);
const dfm_st_tensor *dfm_st_at(const dfm_st *st, int i);   /* sorted by name */
const dfm_st_tensor *dfm_st_find(const dfm_st *st, const char *name);
/* A listed tensor whose dtype dfm does not compute with (F64, I8, BOOL, F8_E4M3, ...) has this
 * in its dtype field; its data and nbytes are valid, dfm_st_read refuses it (DFM_E_UNSUPPORTED). */
#define DFM_ST_OTHER ((dfm_dtype)-1)
/* The dtype as the file spells it ("F32", "F64", "F8_E4M3", ...); t must come from this API. */
const char *dfm_st_dtype_name(const dfm_st_tensor *t);
/* The path of the file (shard) holding t; owned by st. */
const char *dfm_st_file(const dfm_st *st, const dfm_st_tensor *t);
/* Copy tensor `name` into dst as dtype `want` (F32/BF16/F16 convert among themselves), checking
 * that its shape is exactly shape[0..ndim). Errors: missing tensor, shape or dtype mismatch —
 * each naming the tensor, what was expected and what the file has. */
int dfm_st_read(const dfm_st *st, const char *name, dfm_dtype want, int ndim, const int64_t *shape,
                void *dst);
/* The checks of dfm_st_read without the copy. Loaders call it before allocating the destination,
 * so that a config declaring huge sizes fails on the file's header, not on the allocation. */
int dfm_st_check(const dfm_st *st, const char *name, dfm_dtype want, int ndim, const int64_t *shape);
/* The "__metadata__" object as JSON text ("{}" if none; for a sharded set, the first shard's
 * that has one); owned by st. */
const char *dfm_st_metadata(const dfm_st *st);

/* Writing: entries in any order (names unique). The file is what the Python library writes for
 * the same tensors: sorted by dtype (I64, F32, I32, BF16, F16, U8) then name, packed without
 * gaps so each tensor is aligned to its element size, header padded with spaces to a multiple
 * of 8. Written to path.tmp, fsync'd and renamed. metadata_json: NULL, or a JSON object of
 * strings (e.g. {"format":"pt"}), stored as "__metadata__" with its keys in the given order. */
typedef struct {
    const char *name;
    dfm_dtype dtype;
    int ndim;
    int64_t shape[DFM_ST_MAX_DIMS];
    const void *data;
} dfm_st_entry;
int dfm_st_write(const char *path, const dfm_st_entry *entries, int n, const char *metadata_json);

#endif
