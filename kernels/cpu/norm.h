/* norm.h — normalizations on the CPU (twins of kernels/cuda norm.cu). */
#ifndef DFM_KERNELS_CPU_NORM_H
#define DFM_KERNELS_CPU_NORM_H
#include <stdint.h>
#include "base/dtype.h"

/* Wan's RMS norm over channels. x, y: [c, n] f32 (y may be x); gamma, bias: [c] of dtype gdt/bdt
 * (F32/BF16/F16), bias may be NULL. Per position i, in f32:
 *   norm = sqrt(sum_c x[c,i]^2)  (summed in channel order)
 *   y[c,i] = ((x[c,i] / max(norm, 1e-12)) * sqrt(c)) * gamma[c] (+ bias[c])
 * ref: diffusers WanRMS_norm (F.normalize(x, dim=1) * scale * gamma + bias)
 * Returns 0, DFM_E_NOMEM or DFM_E_UNSUPPORTED (dtype). */
int dfm_cpu_rms_norm_channels(const float *x, int64_t c, int64_t n, const void *gamma, dfm_dtype gdt,
                              const void *bias, dfm_dtype bdt, float *y);

#endif
