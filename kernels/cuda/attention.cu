// attention.cu — scaled dot-product attention on the device: the twin of kernels/cpu's attention.
// ref: torch.nn.functional.scaled_dot_product_attention (no mask, no dropout)
//
// Approach: cuBLAS in query blocks. For a group of hb heads and a block of bq queries:
//     S [hb, bq, Sk] = scale * Q_blk @ K^T     (strided-batched GEMM over the heads)
//     S = softmax(S) row by row               (one thread block per row, f32, max-subtracted)
//     O_blk [hb, bq, D] = S @ V                (strided-batched GEMM, written in place in out)
// hb * bq * Sk floats of scratch (about DFM_CUDA_BLOCK_BYTES), so the Sq x Sk matrix is never
// whole for long sequences. Not here: a fused flash-attention kernel, masks, bf16 operands.
#include "cuda/common.cuh"
#include "cuda/ops_cuda.h"

#include <math.h>

// ---------------------------------------------------------------------------------------------
// CUDA kernels

#define SOFTMAX_THREADS 256

// Max (is_max) or sum of v over the block; every thread gets the result. red: 32 floats of shared
// memory; blockDim.x a multiple of 32.
__device__ float block_reduce(float v, int is_max, float *red)
{
    for (int o = 16; o > 0; o >>= 1) {
        float u = __shfl_xor_sync(0xffffffffu, v, o);
        v = is_max ? fmaxf(v, u) : v + u;
    }
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads(); // red may still be read from the previous reduction
    if (lane == 0) red[wid] = v;
    __syncthreads();
    v = lane < nw ? red[lane] : (is_max ? -INFINITY : 0.0f);
    for (int o = 16; o > 0; o >>= 1) {
        float u = __shfl_xor_sync(0xffffffffu, v, o);
        v = is_max ? fmaxf(v, u) : v + u;
    }
    return v;
}

// s[r, :] = softmax(s[r, :]) for r < rows, rows of length len; one block per row.
__global__ void softmax_rows_kernel(float *s, int64_t rows, int64_t len)
{
    __shared__ float red[32];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        float *row = s + r * len;
        float m = -INFINITY;
        for (int64_t j = threadIdx.x; j < len; j += blockDim.x) m = fmaxf(m, row[j]);
        m = block_reduce(m, 1, red);
        if (m == -INFINITY) { // every key masked out: NaN, as torch's softmax
            for (int64_t j = threadIdx.x; j < len; j += blockDim.x) row[j] = NAN;
            continue;
        }
        float sum = 0.0f;
        for (int64_t j = threadIdx.x; j < len; j += blockDim.x) {
            float e = expf(row[j] - m);
            row[j] = e;
            sum += e;
        }
        sum = block_reduce(sum, 0, red);
        float inv = 1.0f / sum;
        for (int64_t j = threadIdx.x; j < len; j += blockDim.x) row[j] *= inv;
    }
}

// ---------------------------------------------------------------------------------------------
// kernel launchers

int dfm_cuda_softmax_rows(float *s, int64_t rows, int64_t len)
{
    softmax_rows_kernel<<<(unsigned)(rows < (1 << 20) ? rows : (1 << 20)), SOFTMAX_THREADS>>>(s, rows, len);
    CUDA_CHECK_LAUNCH();
    return 0;
}

extern "C" int dfm_cuda_attention(const float *q, const float *k, const float *v, float scale,
                                  float *out, int64_t heads, int64_t sq, int64_t sk, int64_t d)
{
    if (heads <= 0 || sq <= 0 || d <= 0) return 0;
    if (sk <= 0) return dfm_fail(DFM_E_ARG, "attention: no keys (Sk = 0)");
    // block sizes: as many queries as fit the budget, then as many heads as fit
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
        const float *kh = k + h0 * sk * d, *vh = v + h0 * sk * d;
        for (int64_t q0 = 0; q0 < sq; q0 += bq) {
            int64_t nq = sq - q0 < bq ? sq - q0 : bq;
            const float *qb = q + (h0 * sq + q0) * d;
            float *ob = out + (h0 * sq + q0) * d;
            // S [nq, sk] = scale * Q_blk [nq, d] @ K^T  (K: [sk, d], transposed), per head
            DFM_CHECK_RC(dfm_cuda_gemm_rm(0, 1, nq, sk, d, scale, qb, d, sq * d, kh, d, sk * d, DFM_F32,
                                          0.0f, s, sk, nq * sk, nh));
            int64_t rows = nh * nq;
            DFM_CHECK_RC(dfm_cuda_softmax_rows(s, rows, sk));
            // O_blk [nq, d] = S [nq, sk] @ V [sk, d], per head; rows of O are d apart
            DFM_CHECK_RC(dfm_cuda_gemm_rm(0, 0, nq, d, sk, 1.0f, s, sk, nq * sk, vh, d, sk * d, DFM_F32,
                                          0.0f, ob, d, sq * d, nh));
        }
    }
    return 0;
}
