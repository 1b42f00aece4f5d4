/* rms_norm.h — RMS norm over the last dimension on the CPU (twin of kernels/cuda rms_norm.cu). */
#ifndef DFM_KERNELS_CPU_RMS_NORM_H
#define DFM_KERNELS_CPU_RMS_NORM_H
#include <stdint.h>
#include "base/dtype.h"

/* Per row r of x [rows, d] (f32; y may be x), in T5's order and roundings:
 *   var = (sum_j x[r,j]^2) / d       squares rounded to f32, summed exactly (double), rounded
 *   inv = 1 / sqrt(var + eps)        each step rounded to f32 (torch.rsqrt on the CPU)
 *   y[r,j] = w[j] * (x[r,j] * inv)
 * w: [d] of dtype wdt (F32/BF16/F16). Returns 0, DFM_E_NOMEM or DFM_E_UNSUPPORTED (dtype).
 * ref: transformers T5LayerNorm / UMT5LayerNorm.forward (fp32) */
int dfm_cpu_rms_norm(const float *x, int64_t rows, int64_t d, const void *w, dfm_dtype wdt, float eps,
                     float *y);

#endif
