/* layer_norm.h — C declarations of the CUDA twins in layer_norm.cu (kernels/cpu/layer_norm.h is
 * the CPU's and states the contract: the same arguments, the same roundings; the row sums run in
 * a block tree in double instead of the CPU's lane order, and so agree with the CPU's but for
 * rare ties; dw and db are summed in the CPU's chunked order, bit for bit). Pointers are device
 * memory (w, b of dtype wdt, bdt); kernels run on the default stream; 0 or a DFM_E_* code. */
#ifndef DFM_KERNELS_CUDA_LAYER_NORM_H
#define DFM_KERNELS_CUDA_LAYER_NORM_H
#include <stdint.h>
#include "base/dtype.h"
#ifdef __cplusplus
extern "C" {
#endif

int dfm_cuda_layer_norm(const float *x, int64_t rows, int64_t d, const void *w, dfm_dtype wdt,
                        const void *b, dfm_dtype bdt, float eps, float *y, float *mean, float *rstd);
/* Partials in scratch slot A; recomputed statistics (mean, rstd NULL) in slot B. */
int dfm_cuda_layer_norm_backward(const float *dy, const float *x, const float *mean, const float *rstd,
                                 int64_t rows, int64_t d, const void *w, dfm_dtype wdt, float eps,
                                 float *dx, float *dw, float *db);

#ifdef __cplusplus
}
#endif
#endif
