/* adamw.h — the optimizer's elementwise kernels on the CPU (twins in kernels/cuda/adamw.cu):
 * one AdamW update over an F32 parameter and its moments, and the sum of squares the gradient
 * norm is made of. Not here: the bias corrections and the schedule (lib/train/optim.c computes
 * the step's scalars in double, as torch does in Python floats, and passes them rounded to f32).
 *
 * Rounding (ref: torch/optim/adam.py _single_tensor_adam, decoupled_weight_decay=True, with the
 * ATen kernels it calls): every operation in f32, in this order, each rounded once:
 *   p = p * decay                                   mul_(1 - lr*wd)
 *   m = small ? fma(w1, g - m, m) : fma(w1m1, g - m, g)
 *                                                   lerp_(g, 1 - beta1): ATen's lerp is
 *                                                   fmadd(w, end - self, self) for |w| < 0.5, else
 *                                                   fmadd(w - 1, end - self, end), on the CPU
 *                                                   (vectorized) and on CUDA (nvcc fuses it)
 *   v = fma(c2 * g, g, v * beta2)                   mul_(beta2).addcmul_(g, g, value=1 - beta2):
 *                                                   self + value*t1*t2, fused in both backends
 *   d = sqrt(v) / bc2_sqrt + eps                    (v.sqrt() / bc2_sqrt).add_(eps)
 *   p = p + (neg_step * m) / d                      addcdiv_(m, d, value=-step_size): self + v*t1/t2
 * sqrt is correctly rounded here and on CUDA; torch's CPU sqrt (its vectorized kernel) is not:
 * about 1 element in 6 is 1 ulp off, so torch on the CPU matches this to ~1 ulp of d, not bit
 * for bit (m and v do match bit for bit). */
#ifndef DFM_KERNELS_CPU_ADAMW_H
#define DFM_KERNELS_CPU_ADAMW_H
#include <stdint.h>

/* The step's scalars, each the f32 rounding of the double torch computes. */
typedef struct {
    float decay;    /* 1 - lr * weight_decay */
    float w1;       /* 1 - beta1 (lerp weight) */
    float w1m1;     /* w1 - 1 in f32 (the lerp's coefficient when !small) */
    int small;      /* |w1| < 0.5 */
    float beta2;
    float c2;       /* 1 - beta2 */
    float bc2_sqrt; /* (1 - beta2^step) ** 0.5 */
    float eps;
    float neg_step; /* -(lr / (1 - beta1^step)) */
} dfm_adamw_coef;

/* One AdamW step on n elements: p, m, v updated in place from g (formulas above). Threads over
 * disjoint ranges: the result does not depend on the thread count. */
void dfm_cpu_adamw(float *p, const float *g, float *m, float *v, int64_t n, const dfm_adamw_coef *c);

/* Sum of squares in a fixed order: lane j (0 <= j < L = min(n, DFM_SUMSQ_LANES)) sums
 * (double)x[k*L' + j]^2 over k in increasing order, where L' = DFM_SUMSQ_LANES (elements
 * j, j + L', j + 2L', ...), then the lanes are summed in increasing j, all in double. The same
 * order on the CUDA twin (one thread per lane), so both give the same bits. NaN/Inf elements
 * make the result NaN/Inf. */
#define DFM_SUMSQ_LANES 65536
double dfm_cpu_sumsq(const float *x, int64_t n);
/* The lanes' final sum (shared with the CUDA twin, which sums its lanes on the host). */
double dfm_sumsq_lanes_total(const double *lanes, int64_t nlanes);

#endif
