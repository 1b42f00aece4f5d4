/* attention_bias.h — attention with an additive score bias on the CPU (twin of kernels/cuda
 * attention_bias.cu), in the token-major layout linear projections produce.
 *
 * q: [sq, heads, d], k, v: [sk, heads, d], out: [sq, heads, d] (out not aliasing inputs);
 * bias: [heads, sq, sk] or NULL; all f32. Per head h and query i:
 *   s[j]  = scale * (q[i,h] . k[j,h]) + bias[h,i,j]      (one GEMM, the bias as its C operand)
 *   p     = exp(s - max s) * (1 / sum exp(s - max s))    (softmax, f32)
 *   out[i,h] = sum_j p[j] v[j,h]
 * computed in blocks of query rows per head ([rows, sk] scores, at most 16 MiB, held at a time).
 * Rows whose scores are all -inf, or sk = 0, give NaN as torch does.
 * Returns 0 or DFM_E_NOMEM. ref: transformers T5/UMT5 eager_attention_forward */
#ifndef DFM_KERNELS_CPU_ATTENTION_BIAS_H
#define DFM_KERNELS_CPU_ATTENTION_BIAS_H
#include <stdint.h>

int dfm_cpu_attention_bias(const float *q, const float *k, const float *v, const float *bias, float scale,
                           float *out, int64_t heads, int64_t sq, int64_t sk, int64_t d);

#endif
