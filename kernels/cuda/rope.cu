// rope.cu — interleaved-pair rotary embedding forward and backward on the device: the twin of
// kernels/cpu/rope.c. One thread per pair (grid-stride, 64-bit indices); the two products and the
// sum are explicitly rounded intrinsics (no fused multiply-add), so the results are the CPU's bits.
// ref: diffusers transformer_wan.py apply_rotary_emb
#include "cuda/common.cuh"
#include "cuda/rope.h"

// ---------------------------------------------------------------------------------------------
// CUDA kernels

static __global__ void rope_kernel(const float *x, int64_t s, int64_t h, int64_t np, int64_t n, const float *cs,
                            const float *sn, int back, float *y)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t k = i % np, t = (i / (np * h)) % s;
        float c = cs[t * np + k], sv = sn[t * np + k];
        float x0 = x[2 * i], x1 = x[2 * i + 1];
        if (!back) {
            y[2 * i] = __fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, sv));
            y[2 * i + 1] = __fadd_rn(__fmul_rn(x0, sv), __fmul_rn(x1, c));
        } else {
            y[2 * i] = __fadd_rn(__fmul_rn(x0, c), __fmul_rn(x1, sv));
            y[2 * i + 1] = __fsub_rn(__fmul_rn(x1, c), __fmul_rn(x0, sv));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// kernel launchers

static int rope_run(const float *x, int64_t b, int64_t s, int64_t h, int64_t d, const float *cs, const float *sn,
                    float *y, int back)
{
    if (d % 2) return dfm_fail(DFM_E_ARG, "rope: head dim %lld is odd", (long long)d);
    if (b <= 0 || s <= 0 || h <= 0 || d <= 0) return 0;
    int64_t n = b * s * h * (d / 2); // pairs
    rope_kernel<<<dfm_cuda_blocks(n), DFM_CUDA_THREADS>>>(x, s, h, d / 2, n, cs, sn, back, y);
    CUDA_CHECK_LAUNCH();
    return 0;
}

extern "C" int dfm_cuda_rope(const float *x, int64_t b, int64_t s, int64_t h, int64_t d, const float *cos,
                             const float *sin, float *y)
{
    return rope_run(x, b, s, h, d, cos, sin, y, 0);
}

extern "C" int dfm_cuda_rope_backward(const float *dy, int64_t b, int64_t s, int64_t h, int64_t d,
                                      const float *cos, const float *sin, float *dx)
{
    return rope_run(dy, b, s, h, d, cos, sin, dx, 1);
}
