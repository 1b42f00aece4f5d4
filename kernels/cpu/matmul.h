/* matmul.h — GEMM with f32 accumulation on the CPU (twin of dfm_cuda_matmul).
 *
 * y[m, n] = beta * y + op(A) @ op(B) (+ bias[n]); A f32 [m, k] (ta: stored [k, m]); B of dtype bdt
 * (F32/BF16/F16) [k, n] (tb: stored [n, k]); bias [n] of dtype biasdt or NULL.
 * Non-f32 B is converted to f32 in blocks of at most 16 MiB (never whole); bf16_compute rounds
 * A and B to bf16 first, also in blocks. Returns 0, DFM_E_NOMEM or DFM_E_UNSUPPORTED (dtype).
 */
#ifndef DFM_KERNELS_CPU_MATMUL_H
#define DFM_KERNELS_CPU_MATMUL_H
#include <stdint.h>
#include "base/dtype.h"

int dfm_cpu_matmul(const float *a, int ta, const void *b, dfm_dtype bdt, int tb, const void *bias,
                   dfm_dtype biasdt, float beta, float *y, int64_t m, int64_t n, int64_t k,
                   int bf16_compute);

#endif
