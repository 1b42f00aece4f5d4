// act.cu — GELU (tanh) forward and backward, SiLU backward on the device: the twins of
// kernels/cpu/act.c. Every f32 operation is an explicitly rounded intrinsic in ATen's order (nvcc
// would otherwise fuse products into sums); tanh and exp are computed in double and rounded
// once, as the CPU's scalar path does (the CPU's AVX2 exp in silu's backward is within 1.3 ulp
// instead). The forward of gelu_tanh is gelu_new's arithmetic and runs gated.cu's kernel.
// ref: aten/src/ATen/native/cpu/Activation.cpp GeluBackwardKernelImpl, silu_backward_kernel
#include "cuda/act.h"
#include "cuda/common.cuh"
#include "cuda/ops_cuda.h"

// ---------------------------------------------------------------------------------------------
// CUDA kernels

#define GRID_STRIDE(i, n)                                                            \
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n);       \
         i += (int64_t)gridDim.x * blockDim.x)

static __global__ void gelu_tanh_back_kernel(const float *dy, const float *x, float *dx, int64_t n)
{
    const float k_kappa = 0.044715f, k_beta = (float)(M_SQRT2 * M_2_SQRTPI * 0.5), k_3kappa = 3.0f * 0.044715f;
    GRID_STRIDE(i, n)
    {
        float v = x[i], g = dy[i];
        float x2 = __fmul_rn(v, v);
        float u = __fmul_rn(k_beta, __fadd_rn(v, __fmul_rn(k_kappa, __fmul_rn(x2, v))));
        float t = (float)tanh((double)u);
        float left = __fmul_rn(0.5f, v);
        float dleft = __fmul_rn(0.5f, __fadd_rn(1.0f, t));
        float dt = __fsub_rn(1.0f, __fmul_rn(t, t));
        float du = __fmul_rn(k_beta, __fadd_rn(1.0f, __fmul_rn(k_3kappa, x2)));
        float rd = __fmul_rn(__fmul_rn(left, dt), du);
        dx[i] = __fmul_rn(g, __fadd_rn(dleft, rd));
    }
}

static __global__ void silu_back_kernel(const float *dy, const float *x, float *dx, int64_t n)
{
    GRID_STRIDE(i, n)
    {
        float v = x[i], g = dy[i];
        float s = __fdiv_rn(1.0f, __fadd_rn(1.0f, (float)exp(-(double)v)));
        float q = __fadd_rn(1.0f, __fmul_rn(v, __fsub_rn(1.0f, s)));
        dx[i] = __fmul_rn(__fmul_rn(g, s), q);
    }
}

// ---------------------------------------------------------------------------------------------
// kernel launchers

extern "C" int dfm_cuda_gelu_tanh(const float *x, float *y, int64_t n) { return dfm_cuda_gelu_new(x, y, n); }

extern "C" int dfm_cuda_gelu_tanh_backward(const float *dy, const float *x, float *dx, int64_t n)
{
    if (n <= 0) return 0;
    gelu_tanh_back_kernel<<<dfm_cuda_blocks(n), DFM_CUDA_THREADS>>>(dy, x, dx, n);
    CUDA_CHECK_LAUNCH();
    return 0;
}

extern "C" int dfm_cuda_silu_backward(const float *dy, const float *x, float *dx, int64_t n)
{
    if (n <= 0) return 0;
    silu_back_kernel<<<dfm_cuda_blocks(n), DFM_CUDA_THREADS>>>(dy, x, dx, n);
    CUDA_CHECK_LAUNCH();
    return 0;
}
