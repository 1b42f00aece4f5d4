/* rms_norm.h — RMS norm over the last dimension on the CPU, forward and backward (twins in
 * kernels/cuda rms_norm.cu). T5's norm and torch.nn.RMSNorm (Wan's norm_q / norm_k over the full
 * inner dim, "rms_norm_across_heads") are the same computation in the same roundings.
 * Not here: mean subtraction (layer_norm.h), Wan's VAE norm over channels (norm.h). */
#ifndef DFM_KERNELS_CPU_RMS_NORM_H
#define DFM_KERNELS_CPU_RMS_NORM_H
#include <stdint.h>
#include "base/dtype.h"

/* Per row r of x [rows, d] (f32; y may be x), in torch's order and roundings:
 *   ms  = (sum_j x[r,j]^2) / d       squares rounded to f32, summed in double (reduce.h's row
 *                                    order) and rounded to f32, then divided in f32
 *   inv = 1 / sqrt(ms + eps)         each step rounded to f32 (torch.rsqrt on the CPU)
 *   y[r,j] = w[j] * (x[r,j] * inv)
 * w: [d] of dtype wdt (F32/BF16/F16). Returns 0, DFM_E_NOMEM or DFM_E_UNSUPPORTED (dtype).
 * ref: transformers T5LayerNorm / UMT5LayerNorm.forward (fp32); torch rms_norm (composite:
 * x * rsqrt(x.pow(2).mean(-1) + eps), then * weight) */
int dfm_cpu_rms_norm(const float *x, int64_t rows, int64_t d, const void *w, dfm_dtype wdt, float eps,
                     float *y);

/* The same, for training: w may be NULL (no weight: y = x * inv), and inv: [rows] f32 receives
 * each row's inv when not NULL (for the backward). */
int dfm_cpu_rms_norm_save(const float *x, int64_t rows, int64_t d, const void *w, dfm_dtype wdt,
                          float eps, float *y, float *inv);

/* The backward for dy [rows, d] f32 at input x (f32). inv: what the forward saved, or NULL to
 * recompute it from x and eps (the same bits). Per row, with n = x * inv (rounded as in the
 * forward) and g = dy * w (g = dy without w):
 *   c  = sum_j g * n / d            f32 products summed in double, rounded once
 *   dx = inv * (g - n * c)          each operation rounded to f32
 * dw[j] += sum_r dy * n (reduce.h's chunked order) when dw is not NULL; dx may be NULL and may
 * alias dy. Returns 0, DFM_E_NOMEM or DFM_E_UNSUPPORTED (dtype).
 * ref: torch autograd through the composite rms_norm */
int dfm_cpu_rms_norm_backward(const float *dy, const float *x, const float *inv, int64_t rows, int64_t d,
                              const void *w, dfm_dtype wdt, float eps, float *dx, float *dw);

#endif
