// bias.cu — rows plus a bias vector: the twin of kernels/cpu/bias.c. One thread per element.
#include "cuda/common.cuh"
#include "cuda/bias.h"

__global__ void bias_add_kernel(const float *x, const void *b, dfm_dtype bdt, float *y, int64_t rows, int64_t n)
{
    int64_t total = rows * n;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t j = i % n;
        float bj = bdt == DFM_F32   ? ((const float *)b)[j]
                   : bdt == DFM_BF16 ? dfm_dev_bf16_to_f32(((const uint16_t *)b)[j])
                                     : dfm_dev_f16_to_f32(((const uint16_t *)b)[j]);
        y[i] = __fadd_rn(x[i], bj);
    }
}

extern "C" int dfm_cuda_bias_add(const float *x, const void *b, dfm_dtype bdt, float *y, int64_t rows, int64_t n)
{
    if (rows <= 0 || n <= 0) return 0;
    if (bdt != DFM_F32 && bdt != DFM_BF16 && bdt != DFM_F16)
        return dfm_fail(DFM_E_UNSUPPORTED, "bias_add: bias dtype %s", dfm_dtype_name(bdt));
    bias_add_kernel<<<dfm_cuda_blocks(rows * n), DFM_CUDA_THREADS>>>(x, b, bdt, y, rows, n);
    CUDA_CHECK_LAUNCH();
    return 0;
}
