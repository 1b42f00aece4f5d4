/* rope.h — C declarations of the CUDA twins in rope.cu (kernels/cpu/rope.h is the CPU's and
 * states the contract; the same roundings, so the same bits). Pointers are device memory (the
 * cos / sin tables too: dfm_cpu_wan_rope_table builds them on the host); y may be x; kernels run
 * on the default stream; 0 or a DFM_E_* code (DFM_E_ARG for an odd d). */
#ifndef DFM_KERNELS_CUDA_ROPE_H
#define DFM_KERNELS_CUDA_ROPE_H
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

int dfm_cuda_rope(const float *x, int64_t b, int64_t s, int64_t h, int64_t d, const float *cos,
                  const float *sin, float *y);
int dfm_cuda_rope_backward(const float *dy, int64_t b, int64_t s, int64_t h, int64_t d, const float *cos,
                           const float *sin, float *dx);

#ifdef __cplusplus
}
#endif
#endif
