// norm.cu — the Wan RMS norm over channels on the device: the twin of kernels/cpu/norm.c
// dfm_cpu_rms_norm_channels (x, y: [C, n] channels-first, reduce over the strided channel axis).
// ref: diffusers autoencoder_kl_wan.py WanRMS_norm
//
// Bit for bit the CPU's result: one thread per position sums the squares over the channels in
// the CPU's order (channel 0 first, each square rounded, then added), and scales each element
// as the CPU does, x / max(sqrt(sum), 1e-12) * sqrt(C) * gamma (+ bias), every operation
// rounded on its own (__f*_rn: no fused multiply-add). Neighbouring threads take neighbouring
// positions, so every read of a channel row is coalesced.
// Not here: group norm or layer norm over the last axis.
#include "cuda/common.cuh"
#include "cuda/ops_cuda.h"

#include <math.h>

// ---------------------------------------------------------------------------------------------
// CUDA kernels

// y[ch, i] = x[ch, i] / max(||x[:, i]||, 1e-12) * scale * gamma[ch] (+ bias[ch]) for every
// position i (grid-stride). The same thread reads and writes position i, so y may alias x.
__global__ void rms_norm_channels_kernel(const float *x, int64_t c, int64_t n, const void *gamma,
                                         int gdt, const void *bias, int bdt, float *y, float scale)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float s = 0.0f;
        for (int64_t ch = 0; ch < c; ch++) {
            float v = x[ch * n + i];
            s = __fadd_rn(s, __fmul_rn(v, v));
        }
        float d = __fsqrt_rn(s);
        d = d > 1e-12f ? d : 1e-12f; // as the CPU: NaN becomes 1e-12 too
        for (int64_t ch = 0; ch < c; ch++) {
            float v = __fmul_rn(__fmul_rn(__fdiv_rn(x[ch * n + i], d), scale), dfm_dev_load(gamma, gdt, ch));
            if (bias) v = __fadd_rn(v, dfm_dev_load(bias, bdt, ch));
            y[ch * n + i] = v;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// kernel launchers

extern "C" int dfm_cuda_rms_norm_channels(const float *x, int64_t c, int64_t n, const void *gamma,
                                          dfm_dtype gdt, const void *bias, dfm_dtype bdt, float *y)
{
    if (c <= 0 || n <= 0) return 0;
    float scale = (float)sqrt((double)c); // the CPU's sqrt(C)
    rms_norm_channels_kernel<<<dfm_cuda_blocks(n), DFM_CUDA_THREADS>>>(x, c, n, gamma, (int)gdt, bias,
                                                                       (int)bdt, y, scale);
    CUDA_CHECK_LAUNCH();
    return 0;
}
