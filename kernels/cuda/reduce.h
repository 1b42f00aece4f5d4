/* reduce.h — C declarations of the CUDA twins in reduce.cu (kernels/cpu/reduce.h is the CPU's):
 * chunked column sums with the CPU's chunks and orders, so both give the same bits. Pointers are
 * device memory; kernels run on the default stream; 0 or a DFM_E_* code. */
#ifndef DFM_KERNELS_CUDA_REDUCE_H
#define DFM_KERNELS_CUDA_REDUCE_H
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

/* out[j] += sum_r x[r, j] for x: [m, n] f32 (partials in scratch slot A). */
int dfm_cuda_colsum(const float *x, int64_t m, int64_t n, float *out);
/* out[g * ld + j] += sum_c part[(g * chunks + c) * n + j], in chunk order from +0. */
int dfm_cuda_sum_partials(const float *part, int64_t groups, int64_t chunks, int64_t n, float *out,
                          int64_t ld);

#ifdef __cplusplus
}
#endif
#endif
