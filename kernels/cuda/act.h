/* act.h — C declarations of the CUDA twins in act.cu (kernels/cpu/act.h is the CPU's and states
 * the contract: the same arguments and roundings; tanh and exp in double rounded once, so the
 * results are the CPU scalar path's but for rare double-rounding cases). Pointers are device
 * memory; outputs may alias inputs; kernels run on the default stream; 0 or a DFM_E_* code. */
#ifndef DFM_KERNELS_CUDA_ACT_H
#define DFM_KERNELS_CUDA_ACT_H
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

int dfm_cuda_gelu_tanh(const float *x, float *y, int64_t n);
int dfm_cuda_gelu_tanh_backward(const float *dy, const float *x, float *dx, int64_t n);
int dfm_cuda_silu_backward(const float *dy, const float *x, float *dx, int64_t n);

#ifdef __cplusplus
}
#endif
#endif
