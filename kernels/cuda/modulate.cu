// modulate.cu — adaLN modulation and gated residual, forward and backward, on the device: the
// twin of kernels/cpu/modulate.c. Elementwise kernels over the token rows (grid-stride, 64-bit
// indices, explicitly rounded intrinsics: no fused multiply-add), and for the per-batch vector
// gradients one thread per (batch, chunk of DFM_REDUCE_ROWS rows, column) summing the chunk in
// row order, then dfm_cuda_sum_partials adding the chunks in order: the CPU's bits.
// ref: diffusers transformer_wan.py WanTransformerBlock.forward
#include "cuda/common.cuh"
#include "cuda/modulate.h"
#include "cuda/reduce.cuh"
#include "cuda/reduce.h"

// ---------------------------------------------------------------------------------------------
// CUDA kernels

#define GRID_STRIDE(i, n)                                                            \
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n);       \
         i += (int64_t)gridDim.x * blockDim.x)

// y = x * (1 + v1) + v2 (gate == 0), or y = x + a * v1 (gate == 1); v1, v2 rows of batch i at i * ld.
static __global__ void mod_fwd_kernel(const float *x, const float *a, int64_t s, int64_t d, const float *v1,
                               const float *v2, int64_t ld, int gate, int64_t n, float *y)
{
    GRID_STRIDE(i, n)
    {
        int64_t j = i % d, v = (i / d / s) * ld + j;
        if (!gate)
            y[i] = __fadd_rn(__fmul_rn(x[i], __fadd_rn(1.0f, v1[v])), v2[v]);
        else
            y[i] = __fadd_rn(x[i], __fmul_rn(a[i], v1[v]));
    }
}

// dx = dy * (1 + v1) (gate == 0) or da = dy * v1 (gate == 1): the same kernel, scale1 = 1 or 0.
static __global__ void mod_dx_kernel(const float *dy, int64_t s, int64_t d, const float *v1, int64_t ld, int gate,
                              int64_t n, float *dx)
{
    GRID_STRIDE(i, n)
    {
        int64_t v = (i / d / s) * ld + i % d;
        dx[i] = __fmul_rn(dy[i], gate ? v1[v] : __fadd_rn(1.0f, v1[v]));
    }
}

// Partial rows [b, chunks, d]: p1 = sum dy * u (u = x or a), p2 = sum dy (either may be NULL).
// Grid x runs over b * chunks.
static __global__ void mod_param_kernel(const float *dy, const float *u, int64_t b, int64_t s, int64_t d,
                                 int64_t chunks, float *p1, float *p2)
{
    for (int64_t k = blockIdx.x; k < b * chunks; k += gridDim.x) {
        int64_t i = k / chunks, s0 = (k % chunks) * DFM_REDUCE_ROWS;
        int64_t s1 = s0 + DFM_REDUCE_ROWS < s ? s0 + DFM_REDUCE_ROWS : s;
        for (int64_t j = blockIdx.y * (int64_t)DFM_RED_THREADS + threadIdx.x; j < d;
             j += (int64_t)gridDim.y * DFM_RED_THREADS) {
            float q1 = 0.0f, q2 = 0.0f;
            for (int64_t r = i * s + s0; r < i * s + s1; r++) {
                float g = dy[r * d + j];
                if (p1) q1 = __fadd_rn(q1, __fmul_rn(g, u[r * d + j]));
                q2 = __fadd_rn(q2, g);
            }
            if (p1) p1[k * d + j] = q1;
            if (p2) p2[k * d + j] = q2;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// kernel launchers

extern "C" int dfm_cuda_modulate(const float *x, int64_t b, int64_t s, int64_t d, const float *scale,
                                 const float *shift, int64_t ld, float *y)
{
    int64_t n = b * s * d;
    if (b <= 0 || s <= 0 || d <= 0) return 0;
    mod_fwd_kernel<<<dfm_cuda_blocks(n), DFM_CUDA_THREADS>>>(x, NULL, s, d, scale, shift, ld, 0, n, y);
    CUDA_CHECK_LAUNCH();
    return 0;
}

extern "C" int dfm_cuda_gate_residual(const float *x, const float *a, int64_t b, int64_t s, int64_t d,
                                      const float *gate, int64_t ld, float *y)
{
    int64_t n = b * s * d;
    if (b <= 0 || s <= 0 || d <= 0) return 0;
    mod_fwd_kernel<<<dfm_cuda_blocks(n), DFM_CUDA_THREADS>>>(x, a, s, d, gate, NULL, ld, 1, n, y);
    CUDA_CHECK_LAUNCH();
    return 0;
}

// The vector gradients first (dx / da may alias dy), then dx / da, then the partials added up.
static int back_run(const float *dy, const float *u, int64_t b, int64_t s, int64_t d, const float *v1,
                    int64_t ld, int gate, float *dx, float *g1, float *g2)
{
    if (b <= 0 || s <= 0 || d <= 0) return 0;
    int64_t chunks = dfm_cuda_reduce_chunks(s), total = b * chunks;
    int np = (g1 != NULL) + (g2 != NULL);
    float *p1 = NULL, *p2 = NULL;
    if (np) {
        void *part;
        DFM_CHECK_RC(dfm_cuda_scratch(DFM_SCRATCH_A, (size_t)(np * total * d) * sizeof(float), &part));
        p1 = g1 ? (float *)part : NULL;
        p2 = g2 ? (float *)part + (g1 ? total * d : 0) : NULL;
        mod_param_kernel<<<dfm_cuda_chunk_grid(total, d), DFM_RED_THREADS>>>(dy, u, b, s, d, chunks, p1, p2);
        CUDA_CHECK_LAUNCH();
    }
    if (dx) {
        int64_t n = b * s * d;
        mod_dx_kernel<<<dfm_cuda_blocks(n), DFM_CUDA_THREADS>>>(dy, s, d, v1, ld, gate, n, dx);
        CUDA_CHECK_LAUNCH();
    }
    if (g1) DFM_CHECK_RC(dfm_cuda_sum_partials(p1, b, chunks, d, g1, ld));
    if (g2) DFM_CHECK_RC(dfm_cuda_sum_partials(p2, b, chunks, d, g2, ld));
    return 0;
}

extern "C" int dfm_cuda_modulate_backward(const float *dy, const float *x, int64_t b, int64_t s, int64_t d,
                                          const float *scale, int64_t ld, float *dx, float *dscale,
                                          float *dshift)
{
    return back_run(dy, x, b, s, d, scale, ld, 0, dx, dscale, dshift);
}

extern "C" int dfm_cuda_gate_residual_backward(const float *dy, const float *a, int64_t b, int64_t s, int64_t d,
                                               const float *gate, int64_t ld, float *da, float *dgate)
{
    return back_run(dy, a, b, s, d, gate, ld, 1, da, dgate, NULL);
}
