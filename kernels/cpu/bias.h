/* bias.h — a bias added to every row on the CPU (twin of kernels/cuda/bias.cu): the bias of a
 * linear layer whose GEMM has none (the packed-weight path, LoRA sums). */
#ifndef DFM_KERNELS_CPU_BIAS_H
#define DFM_KERNELS_CPU_BIAS_H
#include <stdint.h>
#include "base/dtype.h"

/* y[r, j] = x[r, j] + b[j] for r < rows, j < n; x, y: [rows, n] f32 (y may be x); b: [n] of dtype
 * bdt (F32, BF16, F16), widened to f32. One rounding per element. Returns 0 or
 * DFM_E_UNSUPPORTED (dtype). */
int dfm_cpu_bias_add(const float *x, const void *b, dfm_dtype bdt, float *y, int64_t rows, int64_t n);

#endif
