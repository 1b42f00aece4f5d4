// adamw.cu — the CUDA twins of kernels/cpu/adamw.c: the AdamW update (one thread per element,
// every operation spelled with its correctly rounded intrinsic in the CPU's order, the two fused
// steps as __fmaf_rn) and the sum of squares (one thread per lane, the CPU's lane order, the lanes
// summed on the host by the CPU's own function).
#include "cuda/adamw.h"
#include "cuda/common.cuh"

#include <stdlib.h>

__global__ void adamw_kernel(float *p, const float *g, float *m, float *v, int64_t n, dfm_adamw_coef c)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float gi = g[i], mi = m[i];
        float pi = __fmul_rn(p[i], c.decay);
        float diff = __fsub_rn(gi, mi);
        mi = c.small ? __fmaf_rn(c.w1, diff, mi) : __fmaf_rn(c.w1m1, diff, gi);
        float vb = __fmul_rn(v[i], c.beta2);
        float cg = __fmul_rn(c.c2, gi);
        float vi = __fmaf_rn(cg, gi, vb);
        float d = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), c.bc2_sqrt), c.eps);
        float q = __fdiv_rn(__fmul_rn(c.neg_step, mi), d);
        p[i] = __fadd_rn(pi, q);
        m[i] = mi;
        v[i] = vi;
    }
}

extern "C" int dfm_cuda_adamw(float *p, const float *g, float *m, float *v, int64_t n, const dfm_adamw_coef *c)
{
    if (n <= 0) return 0;
    adamw_kernel<<<dfm_cuda_blocks(n), DFM_CUDA_THREADS>>>(p, g, m, v, n, *c);
    CUDA_CHECK_LAUNCH();
    return 0;
}

// lane j of `lanes`: the squares of x[j], x[j + LANES], ... in that order, in double
__global__ void sumsq_lanes_kernel(const float *x, int64_t n, int64_t lanes, double *acc)
{
    int64_t j = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (j >= lanes) return;
    double a = 0.0;
    for (int64_t i = j; i < n; i += DFM_SUMSQ_LANES) {
        double t = (double)x[i];
        a = __dadd_rn(a, __dmul_rn(t, t));
    }
    acc[j] = a;
}

extern "C" int dfm_cuda_sumsq(const float *x, int64_t n, double *out)
{
    *out = 0.0;
    if (n <= 0) return 0;
    int64_t lanes = n < DFM_SUMSQ_LANES ? n : DFM_SUMSQ_LANES;
    void *dacc;
    DFM_CHECK_RC(dfm_cuda_scratch(DFM_SCRATCH_A, (size_t)lanes * sizeof(double), &dacc));
    sumsq_lanes_kernel<<<(unsigned)((lanes + DFM_CUDA_THREADS - 1) / DFM_CUDA_THREADS), DFM_CUDA_THREADS>>>(
        x, n, lanes, (double *)dacc);
    CUDA_CHECK_LAUNCH();
    double *h = (double *)malloc((size_t)lanes * sizeof(double));
    if (!h) return dfm_fail(DFM_E_NOMEM, "sumsq: out of memory for %lld lanes", (long long)lanes);
    cudaError_t e = cudaMemcpy(h, dacc, (size_t)lanes * sizeof(double), cudaMemcpyDeviceToHost);
    if (e != cudaSuccess) {
        free(h);
        return dfm_cuda_fail_rt(e, "cudaMemcpy(sumsq lanes)", __FILE__, __LINE__);
    }
    *out = dfm_sumsq_lanes_total(h, lanes);
    free(h);
    return 0;
}
