/* attention.h — scaled dot-product attention on the device, forward and backward: the CUDA twin
 * of kernels/cpu/attention.h, with the same argument struct (dfm_attn_args: every pointer in it a
 * device pointer here, the bias and lse included), the same semantics (strided layouts, optional
 * bias, lse, NaN for rows that are all -inf and for sk = 0, dq = 0 for sk = 0), the same checks and
 * error codes. Deterministic: no atomics; dq, dk, dv are summed by GEMMs in a fixed block order.
 * Runs on the legacy default stream, as every op does (common.cuh).
 * bf16 (args.bf16): operands rounded to bf16 before each product as on the CPU (attention.cu).
 * Not here: a fused flash kernel (cuBLAS on blocks instead), masks, dropout. */
#ifndef DFM_KERNELS_CUDA_ATTENTION_H
#define DFM_KERNELS_CUDA_ATTENTION_H
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif
#include "cpu/attention.h"

/* Forward: a->out and (when not NULL) a->lse. 0 or a negative DFM_E_* code (dfm_fail). */
int dfm_cuda_attention_fwd(const dfm_attn_args *a);
/* Backward: dq, dk, dv written (not accumulated) from dout (out's strides), a->out and a->lse
 * of the forward. 0 or a negative DFM_E_* code. */
int dfm_cuda_attention_bwd(const dfm_attn_args *a, const float *dout, float *dq, float *dk, float *dv);

#ifdef __cplusplus
}
#endif
#endif
