// rms_norm.cu — RMS norm over the last dimension on the device: the twin of
// kernels/cpu/rms_norm.c. One thread block per row: a block reduction of the f32 squares, then
// y = w * (x * (1 / sqrt(var + eps))) with the same roundings as the CPU (the sum's order
// differs). ref: transformers T5LayerNorm / UMT5LayerNorm (fp32)
#include "cuda/common.cuh"
#include "cuda/ops_cuda.h"

#include <math.h>

// ---------------------------------------------------------------------------------------------
// CUDA kernels

#define RMS_THREADS 256

__global__ void rms_norm_kernel(const float *x, int64_t rows, int64_t d, const void *w, int wdt, float eps,
                                float *y)
{
    __shared__ float red[RMS_THREADS / 32];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float *xr = x + r * d;
        float s = 0.0f;
        for (int64_t j = threadIdx.x; j < d; j += blockDim.x) s += __fmul_rn(xr[j], xr[j]);
        for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = s;
        __syncthreads();
        float t = 0.0f;
        for (int i = 0; i < RMS_THREADS / 32; i++) t += red[i];
        __syncthreads(); // red is read by every thread before the next row overwrites it
        float var = __fdiv_rn(t, (float)d);
        float inv = __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(var, eps)));
        for (int64_t j = threadIdx.x; j < d; j += blockDim.x)
            y[r * d + j] = __fmul_rn(dfm_dev_load(w, wdt, j), __fmul_rn(xr[j], inv));
    }
}

// ---------------------------------------------------------------------------------------------
// kernel launchers

extern "C" int dfm_cuda_rms_norm(const float *x, int64_t rows, int64_t d, const void *w, dfm_dtype wdt,
                                 float eps, float *y)
{
    if (rows <= 0 || d <= 0) return 0;
    unsigned grid = (unsigned)(rows < (1 << 20) ? rows : (1 << 20));
    rms_norm_kernel<<<grid, RMS_THREADS>>>(x, rows, d, w, (int)wdt, eps, y);
    CUDA_CHECK_LAUNCH();
    return 0;
}
