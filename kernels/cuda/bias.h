/* bias.h — the CUDA twin of kernels/cpu/bias.h (same semantics, device pointers). */
#ifndef DFM_KERNELS_CUDA_BIAS_H
#define DFM_KERNELS_CUDA_BIAS_H
#include <stdint.h>
#include "base/dtype.h"
#ifdef __cplusplus
extern "C" {
#endif
int dfm_cuda_bias_add(const float *x, const void *b, dfm_dtype bdt, float *y, int64_t rows, int64_t n);
#ifdef __cplusplus
}
#endif
#endif
