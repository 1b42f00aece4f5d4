/* dropout.h — the CUDA twin of kernels/cpu/dropout.h (same mask, same semantics). */
#ifndef DFM_KERNELS_CUDA_DROPOUT_H
#define DFM_KERNELS_CUDA_DROPOUT_H
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif
int dfm_cuda_dropout(const float *x, float *y, int64_t n, float p, uint64_t seed, uint64_t stream);
#ifdef __cplusplus
}
#endif
#endif
