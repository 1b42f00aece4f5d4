/* act.h — the activations of the Wan transformer with their backward on the CPU (twins in
 * kernels/cuda act.cu): GELU with the tanh approximation (FFN, text embedder) and the backward
 * of SiLU (time embedder; the forward is eltwise.h's dfm_cpu_silu). n f32 elements; outputs may
 * alias inputs. Not here: the exact-erf GELU. */
#ifndef DFM_KERNELS_CPU_ACT_H
#define DFM_KERNELS_CPU_ACT_H
#include <stdint.h>

/* y = F.gelu(x, approximate="tanh") in ATen's f32 order, each operation rounded to f32:
 *   c = (x * x) * x,  u = kBeta * (x + kKappa * c),  y = (0.5 * x) * (1 + tanh(u))
 * kBeta = (float)(M_SQRT2 * M_2_SQRTPI * 0.5), kKappa = (float)0.044715; tanh correctly rounded
 * to f32 (torch's Sleef tanhf is within 1 ulp and almost always the same). These are exactly
 * the operations and constants of transformers' gelu_new, so this gives dfm_cpu_gelu_new's bits
 * (and runs it). ref: aten/src/ATen/native/cpu/Gelu.h vectorized_gelu_approximated_with_tanh */
void dfm_cpu_gelu_tanh(const float *x, float *y, int64_t n);

/* dx = dy * d gelu_tanh(x) / dx in ATen's f32 order, each operation rounded to f32 (t = tanh(u)
 * as in the forward):
 *   x2 = x * x,  u = kBeta * (x + kKappa * (x2 * x)),  t = tanh(u)
 *   left = 0.5 * x,  right = 1 + t,  dleft = 0.5 * right
 *   dtanh = 1 - t * t,  du = kBeta * (1 + (3 * kKappa) * x2)
 *   dx = dy * (dleft + (left * dtanh) * du)
 * ref: aten/src/ATen/native/cpu/Activation.cpp GeluBackwardKernelImpl (tanh) */
void dfm_cpu_gelu_tanh_backward(const float *dy, const float *x, float *dx, int64_t n);

/* dx = dy * s * (1 + x * (1 - s)) with s = 1 / (1 + exp(-x)), each operation rounded to f32,
 * in ATen's order ((dy * s) * (...)). exp: the correctly rounded f32 exp (in double, rounded
 * once; but for rare double-rounding cases) on the scalar path and on CUDA; simd.h's dfm_exp256
 * (within 1.3 ulp) on the AVX2 path, as dfm_cpu_silu does, so the paths agree to a few ulp
 * (more where 1 - s cancels), not bit for bit; torch's Sleef expf is within 1 ulp.
 * ref: aten/src/ATen/native/cpu/Activation.cpp silu_backward_kernel */
void dfm_cpu_silu_backward(const float *dy, const float *x, float *dx, int64_t n);

#endif
