// eltwise.cu — silu, add, clamp, affine over f32 arrays: the twins of kernels/cpu's
// elementwise ops. One thread per element in a grid-stride loop; y may alias an input (each
// element is read and written by the same thread). Not here: broadcasting.
#include "cuda/common.cuh"
#include "cuda/ops_cuda.h"

// ---------------------------------------------------------------------------------------------
// CUDA kernels

#define GRID_STRIDE(i, n)                                                            \
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n);       \
         i += (int64_t)gridDim.x * blockDim.x)

__global__ void silu_kernel(const float *x, float *y, int64_t n)
{
    GRID_STRIDE(i, n)
    {
        float v = x[i];
        y[i] = v / (1.0f + expf(-v));
    }
}

__global__ void add_kernel(const float *a, const float *b, float *y, int64_t n)
{
    GRID_STRIDE(i, n) y[i] = a[i] + b[i];
}

__global__ void clamp_kernel(const float *x, float lo, float hi, float *y, int64_t n)
{
    GRID_STRIDE(i, n)
    {
        float v = x[i];
        y[i] = v < lo ? lo : v > hi ? hi : v; // NaN stays NaN
    }
}

__global__ void affine_kernel(const float *x, float scale, float shift, float *y, int64_t n)
{
    // x * scale + shift rounded twice, as a plain C loop under -std=c11 (no contraction to fma)
    GRID_STRIDE(i, n) y[i] = __fadd_rn(__fmul_rn(x[i], scale), shift);
}

// ---------------------------------------------------------------------------------------------
// kernel launchers

extern "C" int dfm_cuda_silu(const float *x, float *y, int64_t n)
{
    if (n <= 0) return 0;
    silu_kernel<<<dfm_cuda_blocks(n), DFM_CUDA_THREADS>>>(x, y, n);
    CUDA_CHECK_LAUNCH();
    return 0;
}

extern "C" int dfm_cuda_add(const float *a, const float *b, float *y, int64_t n)
{
    if (n <= 0) return 0;
    add_kernel<<<dfm_cuda_blocks(n), DFM_CUDA_THREADS>>>(a, b, y, n);
    CUDA_CHECK_LAUNCH();
    return 0;
}

extern "C" int dfm_cuda_clamp(const float *x, float lo, float hi, float *y, int64_t n)
{
    if (n <= 0) return 0;
    clamp_kernel<<<dfm_cuda_blocks(n), DFM_CUDA_THREADS>>>(x, lo, hi, y, n);
    CUDA_CHECK_LAUNCH();
    return 0;
}

extern "C" int dfm_cuda_affine(const float *x, float scale, float shift, float *y, int64_t n)
{
    if (n <= 0) return 0;
    affine_kernel<<<dfm_cuda_blocks(n), DFM_CUDA_THREADS>>>(x, scale, shift, y, n);
    CUDA_CHECK_LAUNCH();
    return 0;
}
