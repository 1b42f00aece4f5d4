// norm.cu — the Wan RMS norm over channels on the device: the twin of kernels/cpu's
// rms_norm_channels (x, y: [C, n] channels-first, reduce over the strided channel axis).
// ref: diffusers autoencoder_kl_wan.py WanRMS_norm
// Not here: group norm or layer norm over the last axis.
#include "cuda/common.cuh"
#include "cuda/ops_cuda.h"

#include <math.h>

// ---------------------------------------------------------------------------------------------
// CUDA kernels

#define NORM_POS 32 // positions per block: one warp reads 32 neighbours of one channel (coalesced)
#define NORM_CH 8   // channel slices per block, summed through shared memory

// y[ch, i] = x[ch, i] / max(||x[:, i]||, 1e-12) * sqrt(C) * gamma[ch] (+ bias[ch]).
// Block (NORM_POS, NORM_CH): thread (tx, ty) sums channels ty, ty + NORM_CH, ... of position
// i = tile * NORM_POS + tx; the partial sums meet in shared memory; then the same thread scales
// the same elements it read, so y may alias x.
__global__ void rms_norm_channels_kernel(const float *x, int64_t c, int64_t n, const void *gamma,
                                         int gdt, const void *bias, int bdt, float *y, float sqrt_c)
{
    __shared__ float part[NORM_CH][NORM_POS];
    const int tx = threadIdx.x, ty = threadIdx.y;
    int64_t ntiles = (n + NORM_POS - 1) / NORM_POS;
    for (int64_t tile = blockIdx.x; tile < ntiles; tile += gridDim.x) {
        int64_t i = tile * NORM_POS + tx;
        float s = 0.0f;
        if (i < n)
            for (int64_t ch = ty; ch < c; ch += NORM_CH) {
                float v = x[ch * n + i];
                s += v * v;
            }
        part[ty][tx] = s;
        __syncthreads();
        if (ty == 0) {
            float t = 0.0f;
            for (int k = 0; k < NORM_CH; k++) t += part[k][tx];
            part[0][tx] = t;
        }
        __syncthreads();
        float scale = sqrt_c / fmaxf(sqrtf(part[0][tx]), 1e-12f);
        if (i < n)
            for (int64_t ch = ty; ch < c; ch += NORM_CH) {
                float v = x[ch * n + i] * scale * dfm_dev_load(gamma, gdt, ch);
                if (bias) v += dfm_dev_load(bias, bdt, ch);
                y[ch * n + i] = v;
            }
        __syncthreads(); // part[0] is read above before the next tile overwrites it
    }
}

// ---------------------------------------------------------------------------------------------
// kernel launchers

extern "C" int dfm_cuda_rms_norm_channels(const float *x, int64_t c, int64_t n, const void *gamma,
                                          dfm_dtype gdt, const void *bias, dfm_dtype bdt, float *y)
{
    if (c <= 0 || n <= 0) return 0;
    int64_t ntiles = (n + NORM_POS - 1) / NORM_POS;
    unsigned grid = (unsigned)(ntiles < (1 << 20) ? ntiles : (1 << 20));
    rms_norm_channels_kernel<<<grid, dim3(NORM_POS, NORM_CH)>>>(x, c, n, gamma, (int)gdt, bias,
                                                               (int)bdt, y, sqrtf((float)c));
    CUDA_CHECK_LAUNCH();
    return 0;
}
