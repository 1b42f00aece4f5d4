/* gated.h — the elementwise ops of a gated-GELU feed-forward block on the CPU (twins of
 * kernels/cuda gated.cu): gelu_new and a plain product. n f32 elements; y may alias an input. */
#ifndef DFM_KERNELS_CPU_GATED_H
#define DFM_KERNELS_CPU_GATED_H
#include <stdint.h>

/* y = gelu_new(x), the tanh GELU exactly as transformers' NewGELUActivation writes it, one f32
 * rounding per torch op and in torch's order:
 *   p = (x * x) * x                 torch.pow(x, 3.0) on the CPU
 *   u = (0.7978846f * (x + 0.044715f * p))
 *   y = (0.5f * x) * (1.0f + tanh(u))   tanh correctly rounded to f32 (via double)
 * torch's Sleef tanhf is within 1 ulp (correctly rounded for 99.9% of inputs), so results agree
 * with torch bit for bit almost always, else by 1 ulp of tanh (times 0.5x: in the negative tail,
 * where 1 + tanh cancels, that is several ulp of y). ref: transformers activations.py NewGELUActivation */
void dfm_cpu_gelu_new(const float *x, float *y, int64_t n);
/* y = a * b. */
void dfm_cpu_mul(const float *a, const float *b, float *y, int64_t n);

#endif
