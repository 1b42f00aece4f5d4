/* patch.h — the CUDA twins of kernels/cpu/patch.h (same permutations, device pointers). */
#ifndef DFM_KERNELS_CUDA_PATCH_H
#define DFM_KERNELS_CUDA_PATCH_H
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif
int dfm_cuda_patchify(const float *x, float *rows, const int64_t dims[5], const int64_t patch[3], int order);
int dfm_cuda_unpatchify(const float *rows, float *x, const int64_t dims[5], const int64_t patch[3], int order);
#ifdef __cplusplus
}
#endif
#endif
