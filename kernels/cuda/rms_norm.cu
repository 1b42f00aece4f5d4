// rms_norm.cu — RMS norm forward and backward on the device: the twin of kernels/cpu/rms_norm.c.
// One block per row for inv, y and dx: the f32 squares (and the backward's f32 products) summed
// in double in a block tree, every f32 step an explicitly rounded intrinsic in the CPU's order.
// dw: one thread per (chunk of DFM_REDUCE_ROWS rows, column) sums the chunk in row order, then
// dfm_cuda_sum_partials adds the chunks in order — the CPU's order, so the same bits.
// ref: transformers T5LayerNorm / UMT5LayerNorm (fp32); torch rms_norm (composite)
#include "cuda/common.cuh"
#include "cuda/ops_cuda.h"
#include "cuda/reduce.cuh"
#include "cuda/reduce.h"
#include "cuda/rms_norm.h"

// ---------------------------------------------------------------------------------------------
// CUDA kernels

// inv of row xr (every thread of the block gets it).
__device__ __forceinline__ float row_inv(const float *xr, int64_t d, float eps, double *red)
{
    double s = 0.0;
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) s = __dadd_rn(s, (double)__fmul_rn(xr[j], xr[j]));
    s = dfm_dev_block_sum(s, red);
    float ms = __fdiv_rn(__double2float_rn(s), (float)d);
    return __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(ms, eps)));
}

// y == NULL: inv only.
static __global__ void rms_norm_kernel(const float *x, int64_t rows, int64_t d, const void *w, int wdt, float eps,
                                float *y, float *inv)
{
    __shared__ double red[32];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float *xr = x + r * d;
        float iv = row_inv(xr, d, eps, red);
        if (y)
            for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
                float n = __fmul_rn(xr[j], iv);
                y[r * d + j] = w ? __fmul_rn(dfm_dev_load(w, wdt, j), n) : n;
            }
        if (inv && threadIdx.x == 0) inv[r] = iv;
    }
}

// Partial rows of dw: [chunks, d].
static __global__ void rms_param_kernel(const float *dy, const float *x, const float *inv, int64_t rows, int64_t d,
                                 int64_t chunks, float *pw)
{
    for (int64_t k = blockIdx.x; k < chunks; k += gridDim.x) {
        int64_t r0 = k * DFM_REDUCE_ROWS, r1 = r0 + DFM_REDUCE_ROWS < rows ? r0 + DFM_REDUCE_ROWS : rows;
        for (int64_t j = blockIdx.y * (int64_t)DFM_RED_THREADS + threadIdx.x; j < d;
             j += (int64_t)gridDim.y * DFM_RED_THREADS) {
            float s = 0.0f;
            for (int64_t r = r0; r < r1; r++)
                s = __fadd_rn(s, __fmul_rn(dy[r * d + j], __fmul_rn(x[r * d + j], inv[r])));
            pw[k * d + j] = s;
        }
    }
}

static __global__ void rms_dx_kernel(const float *dy, const float *x, const float *inv, int64_t rows, int64_t d,
                              const void *w, int wdt, float *dx)
{
    __shared__ double red[32];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float *xr = x + r * d, *dyr = dy + r * d;
        float iv = inv[r];
        double s = 0.0;
        for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
            float g = w ? __fmul_rn(dyr[j], dfm_dev_load(w, wdt, j)) : dyr[j];
            s = __dadd_rn(s, (double)__fmul_rn(g, __fmul_rn(xr[j], iv)));
        }
        s = dfm_dev_block_sum(s, red);
        float c = __double2float_rn(__ddiv_rn(s, (double)d));
        for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
            float g = w ? __fmul_rn(dyr[j], dfm_dev_load(w, wdt, j)) : dyr[j];
            float n = __fmul_rn(xr[j], iv);
            dx[r * d + j] = __fmul_rn(iv, __fsub_rn(g, __fmul_rn(n, c)));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// kernel launchers

extern "C" int dfm_cuda_rms_norm_save(const float *x, int64_t rows, int64_t d, const void *w, dfm_dtype wdt,
                                      float eps, float *y, float *inv)
{
    if (rows <= 0 || d <= 0) return 0;
    rms_norm_kernel<<<dfm_cuda_row_blocks(rows), DFM_RED_THREADS>>>(x, rows, d, w, (int)wdt, eps, y, inv);
    CUDA_CHECK_LAUNCH();
    return 0;
}

extern "C" int dfm_cuda_rms_norm(const float *x, int64_t rows, int64_t d, const void *w, dfm_dtype wdt,
                                 float eps, float *y)
{
    return dfm_cuda_rms_norm_save(x, rows, d, w, wdt, eps, y, NULL);
}

extern "C" int dfm_cuda_rms_norm_backward(const float *dy, const float *x, const float *inv, int64_t rows,
                                          int64_t d, const void *w, dfm_dtype wdt, float eps, float *dx,
                                          float *dw)
{
    if (rows <= 0 || d <= 0) return 0;
    if (!inv) {
        void *st;
        DFM_CHECK_RC(dfm_cuda_scratch(DFM_SCRATCH_B, (size_t)rows * sizeof(float), &st));
        rms_norm_kernel<<<dfm_cuda_row_blocks(rows), DFM_RED_THREADS>>>(x, rows, d, NULL, 0, eps, NULL,
                                                                        (float *)st);
        CUDA_CHECK_LAUNCH();
        inv = (const float *)st;
    }
    int64_t chunks = dfm_cuda_reduce_chunks(rows);
    float *pw = NULL;
    if (dw) { // before dx is written: dx may alias dy
        void *part;
        DFM_CHECK_RC(dfm_cuda_scratch(DFM_SCRATCH_A, (size_t)(chunks * d) * sizeof(float), &part));
        pw = (float *)part;
        rms_param_kernel<<<dfm_cuda_chunk_grid(chunks, d), DFM_RED_THREADS>>>(dy, x, inv, rows, d, chunks, pw);
        CUDA_CHECK_LAUNCH();
    }
    if (dx) {
        rms_dx_kernel<<<dfm_cuda_row_blocks(rows), DFM_RED_THREADS>>>(dy, x, inv, rows, d, w, (int)wdt, dx);
        CUDA_CHECK_LAUNCH();
    }
    if (dw) DFM_CHECK_RC(dfm_cuda_sum_partials(pw, 1, chunks, d, dw, d));
    return 0;
}
