// layer_norm.cu — layer norm forward and backward on the device: the twin of
// kernels/cpu/layer_norm.c. One block per row for the statistics, y and dx: the sums in double
// (a block tree), every f32 step an explicitly rounded intrinsic in the CPU's order (nvcc would
// otherwise fuse products into sums). dw and db: one thread per (chunk of DFM_REDUCE_ROWS rows,
// column) sums the chunk in row order, then dfm_cuda_sum_partials adds the chunks in order — the
// CPU's order, so the same bits.
// ref: torch.nn.functional.layer_norm; diffusers FP32LayerNorm
#include "cuda/common.cuh"
#include "cuda/layer_norm.h"
#include "cuda/reduce.cuh"
#include "cuda/reduce.h"

// ---------------------------------------------------------------------------------------------
// CUDA kernels

// Statistics of row xr (every thread of the block gets them).
__device__ __forceinline__ void row_stats(const float *xr, int64_t d, float eps, double *red, float *m,
                                          float *rs)
{
    double s = 0.0;
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) s = __dadd_rn(s, (double)xr[j]);
    s = dfm_dev_block_sum(s, red);
    float mf = __double2float_rn(__ddiv_rn(s, (double)d));
    double md = mf;
    s = 0.0;
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
        double t = __dsub_rn((double)xr[j], md);
        s = __dadd_rn(s, __dmul_rn(t, t));
    }
    s = dfm_dev_block_sum(s, red);
    float var = __double2float_rn(__ddiv_rn(s, (double)d));
    *m = mf;
    *rs = __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(var, eps)));
}

// y == NULL: the statistics only.
static __global__ void ln_fwd_kernel(const float *x, int64_t rows, int64_t d, const void *w, int wdt, const void *b,
                              int bdt, float eps, float *y, float *mean, float *rstd)
{
    __shared__ double red[32];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float *xr = x + r * d;
        float m, rs;
        row_stats(xr, d, eps, red, &m, &rs);
        if (y)
            for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
                float t = __fmul_rn(__fsub_rn(xr[j], m), rs);
                if (w) t = __fmul_rn(t, dfm_dev_load(w, wdt, j));
                if (b) t = __fadd_rn(t, dfm_dev_load(b, bdt, j));
                y[r * d + j] = t;
            }
        if (threadIdx.x == 0) {
            if (mean) mean[r] = m;
            if (rstd) rstd[r] = rs;
        }
    }
}

// Partial rows of dw (pw) and db (pb): [chunks, d] each, either may be NULL.
static __global__ void ln_param_kernel(const float *dy, const float *x, const float *mean, const float *rstd,
                                int64_t rows, int64_t d, int64_t chunks, float *pw, float *pb)
{
    for (int64_t k = blockIdx.x; k < chunks; k += gridDim.x) {
        int64_t r0 = k * DFM_REDUCE_ROWS, r1 = r0 + DFM_REDUCE_ROWS < rows ? r0 + DFM_REDUCE_ROWS : rows;
        for (int64_t j = blockIdx.y * (int64_t)DFM_RED_THREADS + threadIdx.x; j < d;
             j += (int64_t)gridDim.y * DFM_RED_THREADS) {
            float sw = 0.0f, sb = 0.0f;
            for (int64_t r = r0; r < r1; r++) {
                float g = dy[r * d + j];
                float xh = __fmul_rn(__fsub_rn(x[r * d + j], mean[r]), rstd[r]);
                sw = __fadd_rn(sw, __fmul_rn(g, xh));
                sb = __fadd_rn(sb, g);
            }
            if (pw) pw[k * d + j] = sw;
            if (pb) pb[k * d + j] = sb;
        }
    }
}

static __global__ void ln_dx_kernel(const float *dy, const float *x, const float *mean, const float *rstd, int64_t rows,
                             int64_t d, const void *w, int wdt, float *dx)
{
    __shared__ double red[32];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float *xr = x + r * d, *dyr = dy + r * d;
        float m = mean[r], rs = rstd[r];
        double sa = 0.0, sc = 0.0;
        for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
            float g = w ? __fmul_rn(dyr[j], dfm_dev_load(w, wdt, j)) : dyr[j];
            float xh = __fmul_rn(__fsub_rn(xr[j], m), rs);
            sa = __dadd_rn(sa, (double)g);
            sc = __dadd_rn(sc, (double)__fmul_rn(g, xh));
        }
        sa = dfm_dev_block_sum(sa, red);
        sc = dfm_dev_block_sum(sc, red);
        float a = __double2float_rn(__ddiv_rn(sa, (double)d)), c = __double2float_rn(__ddiv_rn(sc, (double)d));
        for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
            float g = w ? __fmul_rn(dyr[j], dfm_dev_load(w, wdt, j)) : dyr[j];
            float xh = __fmul_rn(__fsub_rn(xr[j], m), rs);
            dx[r * d + j] = __fmul_rn(rs, __fsub_rn(__fsub_rn(g, a), __fmul_rn(xh, c)));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// kernel launchers

extern "C" int dfm_cuda_layer_norm(const float *x, int64_t rows, int64_t d, const void *w, dfm_dtype wdt,
                                   const void *b, dfm_dtype bdt, float eps, float *y, float *mean, float *rstd)
{
    if (rows <= 0 || d <= 0) return 0;
    ln_fwd_kernel<<<dfm_cuda_row_blocks(rows), DFM_RED_THREADS>>>(x, rows, d, w, (int)wdt, b, (int)bdt, eps, y,
                                                                  mean, rstd);
    CUDA_CHECK_LAUNCH();
    return 0;
}

extern "C" int dfm_cuda_layer_norm_backward(const float *dy, const float *x, const float *mean,
                                            const float *rstd, int64_t rows, int64_t d, const void *w,
                                            dfm_dtype wdt, float eps, float *dx, float *dw, float *db)
{
    if (rows <= 0 || d <= 0) return 0;
    if (!mean != !rstd) return dfm_fail(DFM_E_ARG, "layer_norm backward: mean and rstd must both be given or both NULL");
    if (!mean) {
        void *st;
        DFM_CHECK_RC(dfm_cuda_scratch(DFM_SCRATCH_B, (size_t)(2 * rows) * sizeof(float), &st));
        float *m = (float *)st, *rs = m + rows;
        ln_fwd_kernel<<<dfm_cuda_row_blocks(rows), DFM_RED_THREADS>>>(x, rows, d, NULL, 0, NULL, 0, eps, NULL, m, rs);
        CUDA_CHECK_LAUNCH();
        mean = m, rstd = rs;
    }
    int64_t chunks = dfm_cuda_reduce_chunks(rows);
    int np = (dw != NULL) + (db != NULL);
    float *pw = NULL, *pb = NULL;
    if (np) { // before dx is written: dx may alias dy
        void *part;
        DFM_CHECK_RC(dfm_cuda_scratch(DFM_SCRATCH_A, (size_t)(np * chunks * d) * sizeof(float), &part));
        pw = dw ? (float *)part : NULL;
        pb = db ? (float *)part + (dw ? chunks * d : 0) : NULL;
        ln_param_kernel<<<dfm_cuda_chunk_grid(chunks, d), DFM_RED_THREADS>>>(dy, x, mean, rstd, rows, d, chunks,
                                                                             pw, pb);
        CUDA_CHECK_LAUNCH();
    }
    if (dx) {
        ln_dx_kernel<<<dfm_cuda_row_blocks(rows), DFM_RED_THREADS>>>(dy, x, mean, rstd, rows, d, w, (int)wdt, dx);
        CUDA_CHECK_LAUNCH();
    }
    if (dw) DFM_CHECK_RC(dfm_cuda_sum_partials(pw, 1, chunks, d, dw, d));
    if (db) DFM_CHECK_RC(dfm_cuda_sum_partials(pb, 1, chunks, d, db, d));
    return 0;
}
