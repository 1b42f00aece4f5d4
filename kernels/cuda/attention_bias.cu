// attention_bias.cu — attention with an additive bias on the device, token-major layout: the
// twin of kernels/cpu/attention_bias.c. ref: transformers T5/UMT5 eager_attention_forward
//
// For a group of hb heads and a block of bq queries (scratch A holds hb * bq * Sk scores):
//     S [hb, bq, Sk] = bias block (one 2-D copy), then S += scale * Q_blk @ K^T (strided-batched
//                      GEMM over the heads: head h's rows are heads * D apart, heads D apart)
//     S = softmax(S) row by row (one thread block per row, f32, max-subtracted, NaN for a row
//                      that is all -inf)
//     O_blk = S @ V    (strided-batched GEMM writing the heads' columns of out in place)
// Not here: a fused flash kernel, bf16 operands.
#include "cuda/common.cuh"
#include "cuda/ops_cuda.h"

#include <math.h>

// ---------------------------------------------------------------------------------------------
// kernel launchers (the row softmax is attention.cu's dfm_cuda_softmax_rows)

extern "C" int dfm_cuda_attention_bias(const float *q, const float *k, const float *v, const float *bias,
                                       float scale, float *out, int64_t heads, int64_t sq, int64_t sk,
                                       int64_t d)
{
    if (heads <= 0 || sq <= 0 || d <= 0) return 0;
    if (sk <= 0) return dfm_fail(DFM_E_ARG, "attention_bias: no keys (Sk = 0)");
    int64_t ld = heads * d;
    int64_t budget = (int64_t)(DFM_CUDA_BLOCK_BYTES / sizeof(float));
    int64_t bq = budget / sk;
    if (bq < 1) bq = 1;
    if (bq > sq) bq = sq;
    int64_t hb = budget / (bq * sk);
    if (hb < 1) hb = 1;
    if (hb > heads) hb = heads;
    float *s;
    DFM_CHECK_RC(dfm_cuda_scratch(DFM_SCRATCH_A, (size_t)(hb * bq * sk) * sizeof(float), (void **)&s));
    for (int64_t h0 = 0; h0 < heads; h0 += hb) {
        int64_t nh = heads - h0 < hb ? heads - h0 : hb;
        for (int64_t q0 = 0; q0 < sq; q0 += bq) {
            int64_t nq = sq - q0 < bq ? sq - q0 : bq;
            if (bias)
                CUDA_CHECK(cudaMemcpy2D(s, (size_t)(nq * sk) * sizeof(float), bias + (h0 * sq + q0) * sk,
                                        (size_t)(sq * sk) * sizeof(float), (size_t)(nq * sk) * sizeof(float),
                                        (size_t)nh, cudaMemcpyDeviceToDevice));
            DFM_CHECK_RC(dfm_cuda_gemm_rm(0, 1, nq, sk, d, scale, q + q0 * ld + h0 * d, ld, d, k + h0 * d, ld, d,
                                          DFM_F32, bias ? 1.0f : 0.0f, s, sk, nq * sk, nh));
            int64_t rows = nh * nq;
            DFM_CHECK_RC(dfm_cuda_softmax_rows(s, rows, sk));
            DFM_CHECK_RC(dfm_cuda_gemm_rm(0, 0, nq, d, sk, 1.0f, s, sk, nq * sk, v + h0 * d, ld, d, DFM_F32, 0.0f,
                                          out + q0 * ld + h0 * d, ld, d, nh));
        }
    }
    return 0;
}
