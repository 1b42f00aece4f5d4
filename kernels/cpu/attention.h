/* attention.h — scaled dot-product attention on the CPU (twin of dfm_cuda_attention).
 *
 * q: [heads, sq, d], k, v: [heads, sk, d], out: [heads, sq, d], all f32, out not aliasing inputs.
 * out = softmax(q k^T * scale) v per head, in blocks of query rows: the scores of one block
 * ([rows, sk], at most 16 MiB) are all that is ever held. Softmax in f32 with the row max
 * subtracted; the rows are normalized after the value GEMM (out_row = (e @ v) / sum(e)).
 * Returns 0 or DFM_E_NOMEM. ref: torch.nn.functional.scaled_dot_product_attention
 */
#ifndef DFM_KERNELS_CPU_ATTENTION_H
#define DFM_KERNELS_CPU_ATTENTION_H
#include <stdint.h>

int dfm_cpu_attention(const float *q, const float *k, const float *v, float scale, float *out,
                      int64_t heads, int64_t sq, int64_t sk, int64_t d);

#endif
