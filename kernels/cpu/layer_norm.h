/* layer_norm.h — layer norm over the last dimension on the CPU, forward and backward (twins in
 * kernels/cuda layer_norm.cu). Rows of f32 activations; weight and bias F32, BF16 or F16, either
 * may be absent (Wan's norm1/norm3 and the output norm have neither, norm2 has both).
 * Not here: the modulation that follows Wan's norms (modulate.h), bf16 outputs. */
#ifndef DFM_KERNELS_CPU_LAYER_NORM_H
#define DFM_KERNELS_CPU_LAYER_NORM_H
#include <stdint.h>
#include "base/dtype.h"

/* Per row r of x [rows, d] (f32; y may be x):
 *   mean = sum_j x[r,j] / d                  summed in double (reduce.h's row order), rounded once
 *   var  = sum_j (x[r,j] - mean)^2 / d       the same, with the f32 mean (biased variance)
 *   rstd = 1 / sqrt(var + eps)               each step rounded to f32
 *   y[r,j] = ((x[r,j] - mean) * rstd) * w[j] + b[j]   each operation rounded to f32
 * w, b: [d] of dtype wdt, bdt, or NULL (then that step is skipped). mean, rstd: [rows] f32 that
 * receive the row statistics (for the backward), or NULL.
 * torch's CUDA kernel computes y as (x - mean) * rstd, as here; its CPU kernel gets the
 * statistics by Welford's method in f32 (a few ulp from these) and y as x * rstd + (-rstd * mean)
 * (about one rounding of |mean * rstd| from this).
 * Returns 0, DFM_E_NOMEM or DFM_E_UNSUPPORTED (dtype).
 * ref: torch.nn.functional.layer_norm; diffusers FP32LayerNorm (Wan's norm1/norm2/norm3, norm_out) */
int dfm_cpu_layer_norm(const float *x, int64_t rows, int64_t d, const void *w, dfm_dtype wdt,
                       const void *b, dfm_dtype bdt, float eps, float *y, float *mean, float *rstd);

/* The backward of dfm_cpu_layer_norm for dy [rows, d] f32 at input x (f32). mean, rstd: what the
 * forward saved, or both NULL to recompute them from x and eps (the same bits). Per row, with
 * xh = (x - mean) * rstd rounded as in the forward and g = dy * w (g = dy without w):
 *   a = sum_j g / d, c = sum_j g * xh / d     (f32 products summed in double, rounded once)
 *   dx = rstd * ((g - a) - xh * c)             each operation rounded to f32
 * dw[j] += sum_r dy * xh and db[j] += sum_r dy (reduce.h's chunked order) when dw / db are not
 * NULL; dx may be NULL (only the parameter gradients) and may alias dy. w: as in the forward.
 * Returns 0, DFM_E_NOMEM or DFM_E_UNSUPPORTED (dtype).
 * ref: torch layer_norm_backward (aten/src/ATen/native/cpu/layer_norm_kernel.cpp) */
int dfm_cpu_layer_norm_backward(const float *dy, const float *x, const float *mean, const float *rstd,
                                int64_t rows, int64_t d, const void *w, dfm_dtype wdt, float eps,
                                float *dx, float *dw, float *db);

#endif
