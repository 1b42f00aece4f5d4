/* tensor.h — contiguous, row-major tensors on the CPU or a CUDA device.
 *
 * A dfm_tensor is a small value: dtype, device, shape and a data pointer that it may own.
 * dtype names follow safetensors (F32, BF16, F16, U8, I32, I64). Compute happens in ops.h;
 * this module only allocates, views, copies and converts. Not here: broadcasting, strides,
 * autograd (backward passes are explicit per layer, as in llm.c).
 */
#ifndef DFM_TENSOR_TENSOR_H
#define DFM_TENSOR_TENSOR_H
#include <stddef.h>
#include <stdint.h>
#include "base/dtype.h"

typedef enum { DFM_CPU = 0, DFM_CUDA } dfm_device;

#define DFM_MAX_DIMS 8

typedef struct {
    dfm_dtype dtype;
    dfm_device device;
    int ndim;
    int64_t shape[DFM_MAX_DIMS];
    void *data;
    int owned; /* 1: data is freed by dfm_tensor_free */
} dfm_tensor;

int64_t dfm_tensor_numel(const dfm_tensor *t);
size_t dfm_tensor_nbytes(const dfm_tensor *t);

/* Allocate (uninitialized, or zeroed with _zeros) on a device. Shapes are given as ndim values. */
int dfm_tensor_alloc(dfm_tensor *t, dfm_dtype dtype, dfm_device dev, int ndim, const int64_t *shape);
int dfm_tensor_zeros(dfm_tensor *t, dfm_dtype dtype, dfm_device dev, int ndim, const int64_t *shape);
/* Set every byte of an existing tensor to zero, on its device (a scale of 0 would keep NaN garbage). */
int dfm_tensor_zero(dfm_tensor *t);
/* CPU blocks of 1 MiB or more are recycled: a freed one is kept and handed to the next allocation
 * of the same size (rounded to 4 KiB), so a loop that allocates the same buffers every step does
 * not page-fault them in again. An allocation no kept block fits first frees them all, so the
 * memory held never exceeds what it would be without the cache. At most a limit is kept (2 GiB,
 * or DFM_CPU_CACHE_MB; 0 under AddressSanitizer). set_limit returns the previous limit; release
 * frees what is kept. */
size_t dfm_tensor_cache_set_limit(size_t bytes);
void dfm_tensor_cache_release(void);
/* Bytes kept now. */
size_t dfm_tensor_cache_bytes(void);
/* A non-owning view of existing memory. */
dfm_tensor dfm_tensor_view(void *data, dfm_dtype dtype, dfm_device dev, int ndim, const int64_t *shape);
/* View of rows [start, start+n) along dimension 0 (contiguous; no copy). */
dfm_tensor dfm_tensor_slice0(const dfm_tensor *t, int64_t start, int64_t n);
void dfm_tensor_free(dfm_tensor *t);
/* Same shape, new owned storage, copied across devices if needed. */
int dfm_tensor_copy(dfm_tensor *dst, const dfm_tensor *src, dfm_device dev);
/* Convert src into dst's dtype (dst allocated by the caller with the same numel and device).
 * F32<->BF16 (round to nearest even), F32<->F16, U8->F32. */
int dfm_tensor_convert(dfm_tensor *dst, const dfm_tensor *src);
/* Reshape in place (same numel). */
int dfm_tensor_reshape(dfm_tensor *t, int ndim, const int64_t *shape);
/* 1 if tensors can live on d (CPU always; CUDA when built with it and a device is present),
 * else 0 with the reason recorded (dfm_errmsg). lib/tensor/device.c */
int dfm_device_available(dfm_device d);
/* Which device of kind d this process uses, before the first use: for DFM_CUDA, GPU
 * `index % G` of the G visible ones (one process per GPU under a launcher: index = local rank);
 * for DFM_CPU nothing. 0, or DFM_E_ARG when the GPU was already chosen (recorded). A build
 * without CUDA: 0 (dfm_device_available then says why CUDA is not there). lib/tensor/device.c */
int dfm_device_select(dfm_device d, int index);
/* "[16,5,32,32] F32 cpu" for messages. */
const char *dfm_tensor_str(const dfm_tensor *t, char *buf, size_t n);

#endif
