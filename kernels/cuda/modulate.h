/* modulate.h — C declarations of the CUDA twins in modulate.cu (kernels/cpu/modulate.h is the
 * CPU's and states the contract: the same arguments, roundings and chunked sums, so the same
 * bits). Pointers are device memory; kernels run on the default stream; 0 or a DFM_E_* code
 * (the backwards keep their partial sums in scratch slot A). */
#ifndef DFM_KERNELS_CUDA_MODULATE_H
#define DFM_KERNELS_CUDA_MODULATE_H
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

int dfm_cuda_modulate(const float *x, int64_t b, int64_t s, int64_t d, const float *scale,
                      const float *shift, int64_t ld, float *y);
int dfm_cuda_modulate_backward(const float *dy, const float *x, int64_t b, int64_t s, int64_t d,
                               const float *scale, int64_t ld, float *dx, float *dscale, float *dshift);
int dfm_cuda_gate_residual(const float *x, const float *a, int64_t b, int64_t s, int64_t d,
                           const float *gate, int64_t ld, float *y);
int dfm_cuda_gate_residual_backward(const float *dy, const float *a, int64_t b, int64_t s, int64_t d,
                                    const float *gate, int64_t ld, float *da, float *dgate);

#ifdef __cplusplus
}
#endif
#endif
