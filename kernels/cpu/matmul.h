/* matmul.h — GEMM with f32 accumulation on the CPU (twin of dfm_cuda_matmul).
 *
 * y[m, n] = beta * y + op(A) @ op(B) (+ bias[n]); A f32 [m, k] (ta: stored [k, m]); B of dtype bdt
 * (F32/BF16/F16) [k, n] (tb: stored [n, k]); bias [n] of dtype biasdt or NULL.
 * bf16_compute rounds A and B to bf16 first (ties to even); the products are then exact in f32.
 * Paths: with bf16_compute on an AVX512_BF16 CPU (dfm_cpu_simd_level()), B is packed into BF16
 * panels (at most 32 MiB a block) and the VDPBF16PS kernel of linear.c sums the products in f32
 * (its bound and denormal flushing: linear.h); otherwise OpenBLAS's sgemm, with non-f32 B (and
 * under bf16_compute A and B) converted to f32 in blocks of at most 16 MiB (never whole).
 * Results do not depend on the thread count on our path; OpenBLAS's are its own. Scratch: slots
 * 0 and 1 (the packed path: 0 and linear's 1), 2 (bias). Returns 0, DFM_E_NOMEM or
 * DFM_E_UNSUPPORTED (dtype).
 */
#ifndef DFM_KERNELS_CPU_MATMUL_H
#define DFM_KERNELS_CPU_MATMUL_H
#include <stdint.h>
#include "base/dtype.h"

int dfm_cpu_matmul(const float *a, int ta, const void *b, dfm_dtype bdt, int tb, const void *bias,
                   dfm_dtype biasdt, float beta, float *y, int64_t m, int64_t n, int64_t k,
                   int bf16_compute);

#endif
