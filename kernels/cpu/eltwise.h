/* eltwise.h — elementwise f32 ops on the CPU (the twins of dfm_cuda_silu/add/clamp/affine).
 * n elements; y may alias an input. Threads: dfm_cpu_threads() for large n. */
#ifndef DFM_KERNELS_CPU_ELTWISE_H
#define DFM_KERNELS_CPU_ELTWISE_H
#include <stdint.h>

/* y = x / (1 + exp(-x)). ref: torch.nn.functional.silu */
void dfm_cpu_silu(const float *x, float *y, int64_t n);
/* y = a + b. */
void dfm_cpu_add(const float *a, const float *b, float *y, int64_t n);
/* y = min(max(x, lo), hi); NaN stays NaN. ref: torch.clamp */
void dfm_cpu_clamp(const float *x, float lo, float hi, float *y, int64_t n);
/* y = x * scale + shift, rounded after the product and after the sum (no fused multiply-add). */
void dfm_cpu_affine(const float *x, float scale, float shift, float *y, int64_t n);

#endif
