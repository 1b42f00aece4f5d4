/* rms_norm.h — C declarations of the CUDA twins in rms_norm.cu that the op table does not
 * declare in ops_cuda.h (dfm_cuda_rms_norm is there); kernels/cpu/rms_norm.h is the CPU's and
 * states the contract: the same arguments and roundings; the sum of squares and the backward's
 * dot product run in a block tree in double instead of the CPU's lane order, and so agree with
 * the CPU's but for rare ties; dw is summed in the CPU's chunked order, bit for bit. Pointers are
 * device memory (w of dtype wdt); kernels run on the default stream; 0 or a DFM_E_* code. */
#ifndef DFM_KERNELS_CUDA_RMS_NORM_H
#define DFM_KERNELS_CUDA_RMS_NORM_H
#include <stdint.h>
#include "base/dtype.h"
#ifdef __cplusplus
extern "C" {
#endif

int dfm_cuda_rms_norm_save(const float *x, int64_t rows, int64_t d, const void *w, dfm_dtype wdt,
                           float eps, float *y, float *inv);
/* Partials in scratch slot A; a recomputed inv (inv NULL) in slot B. */
int dfm_cuda_rms_norm_backward(const float *dy, const float *x, const float *inv, int64_t rows, int64_t d,
                               const void *w, dfm_dtype wdt, float eps, float *dx, float *dw);

#ifdef __cplusplus
}
#endif
#endif
