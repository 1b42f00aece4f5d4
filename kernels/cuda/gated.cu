// gated.cu — gelu_new and mul over f32 arrays on the device: the twins of kernels/cpu/gated.c.
// Every operation is an explicitly rounded intrinsic (no fused multiply-add), in the order of
// transformers' NewGELUActivation, and tanh in double rounded once, as on the CPU.
// ref: transformers activations.py NewGELUActivation
#include "cuda/common.cuh"
#include "cuda/ops_cuda.h"

// ---------------------------------------------------------------------------------------------
// CUDA kernels

#define GRID_STRIDE(i, n)                                                            \
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n);       \
         i += (int64_t)gridDim.x * blockDim.x)

__global__ void gelu_new_kernel(const float *x, float *y, int64_t n)
{
    GRID_STRIDE(i, n)
    {
        float v = x[i];
        float p = __fmul_rn(__fmul_rn(v, v), v);
        float u = __fmul_rn(0.7978845608028654f, __fadd_rn(v, __fmul_rn(0.044715f, p)));
        y[i] = __fmul_rn(__fmul_rn(0.5f, v), __fadd_rn(1.0f, (float)tanh((double)u)));
    }
}

__global__ void mul_kernel(const float *a, const float *b, float *y, int64_t n)
{
    GRID_STRIDE(i, n) y[i] = __fmul_rn(a[i], b[i]);
}

// ---------------------------------------------------------------------------------------------
// kernel launchers

extern "C" int dfm_cuda_gelu_new(const float *x, float *y, int64_t n)
{
    if (n <= 0) return 0;
    gelu_new_kernel<<<dfm_cuda_blocks(n), DFM_CUDA_THREADS>>>(x, y, n);
    CUDA_CHECK_LAUNCH();
    return 0;
}

extern "C" int dfm_cuda_mul(const float *a, const float *b, float *y, int64_t n)
{
    if (n <= 0) return 0;
    mul_kernel<<<dfm_cuda_blocks(n), DFM_CUDA_THREADS>>>(a, b, y, n);
    CUDA_CHECK_LAUNCH();
    return 0;
}
