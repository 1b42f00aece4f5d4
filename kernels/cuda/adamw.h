/* adamw.h — C declarations of the CUDA twins in adamw.cu (kernels/cpu/adamw.h is the CPU's and
 * documents the arithmetic): the AdamW update with the CPU's rounding, and the sum of squares in
 * the CPU's lane order, so both give the same bits. Pointers are device memory; kernels run on the
 * default stream; 0 or a DFM_E_* code. */
#ifndef DFM_KERNELS_CUDA_ADAMW_H
#define DFM_KERNELS_CUDA_ADAMW_H
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif
#include "cpu/adamw.h"

int dfm_cuda_adamw(float *p, const float *g, float *m, float *v, int64_t n, const dfm_adamw_coef *c);
/* *out = the sum of squares of x[0..n) (lanes in scratch slot A, summed on the host). */
int dfm_cuda_sumsq(const float *x, int64_t n, double *out);

#ifdef __cplusplus
}
#endif
#endif
