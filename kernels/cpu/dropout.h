/* dropout.h — inverted dropout with a counter-based mask on the CPU (twin of
 * kernels/cuda/dropout.cu): the mask of element i depends only on (seed, stream, i), so the
 * backward regenerates it instead of storing it, and the CPU and the GPU drop the same elements.
 *
 * Element i of block i/4 uses word i%4 of Philox4x32-10(counter {i/4 low, i/4 high, stream low,
 * stream high}, key {seed low, seed high}); it is kept when (word >> 8) * 2^-24 >= p, and a kept
 * element is scaled by 1/(1-p) (computed in f32 as 1.0f / (1.0f - p)). p in [0, 1): p = 0 keeps
 * everything (y = x exactly). */
#ifndef DFM_KERNELS_CPU_DROPOUT_H
#define DFM_KERNELS_CPU_DROPOUT_H
#include <stdint.h>

/* y[i] = keep(i) ? x[i] * (1 / (1 - p)) : 0 for i < n; y may be x. The same function is its own
 * backward: dx = dropout(dy) with the same (seed, stream). */
void dfm_cpu_dropout(const float *x, float *y, int64_t n, float p, uint64_t seed, uint64_t stream);

#endif
