// finite.cu — counting non-finite values on the device: the twin of kernels/cpu/finite.c (the
// same bit test: an all-ones exponent). Each thread of a grid-stride loop counts its elements and
// keeps its first hit; a thread with hits adds its count and takes the minimum index with two
// atomics (a sum and a minimum: the result does not depend on the schedule). The two totals live
// in scratch slot B and come back with one copy.
#include "cuda/common.cuh"
#include "cuda/ops_cuda.h"

__global__ void nonfinite_kernel(const void *p, int esize, uint32_t mask, int64_t n,
                                 unsigned long long *count, unsigned long long *first)
{
    unsigned long long c = 0, f = ~0ull;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        uint32_t u = esize == 4 ? ((const uint32_t *)p)[i] : ((const uint16_t *)p)[i];
        if ((u & mask) == mask) {
            if (!c) f = (unsigned long long)i; // a thread's indices only grow
            c++;
        }
    }
    if (c) {
        atomicAdd(count, c);
        atomicMin(first, f);
    }
}

extern "C" int dfm_cuda_count_nonfinite(const void *x, dfm_dtype dt, int64_t n, int64_t *count,
                                        int64_t *first)
{
    *count = 0, *first = -1;
    int esize = 2;
    uint32_t mask;
    if (dt == DFM_F32) esize = 4, mask = 0x7f800000u;
    else if (dt == DFM_BF16) mask = 0x7f80u;
    else if (dt == DFM_F16) mask = 0x7c00u;
    else return 0;
    if (n <= 0) return 0;
    void *s;
    DFM_CHECK_RC(dfm_cuda_scratch(DFM_SCRATCH_B, 2 * sizeof(unsigned long long), &s));
    unsigned long long init[2] = {0, ~0ull}, res[2];
    unsigned long long *d = (unsigned long long *)s;
    CUDA_CHECK(cudaMemcpy(d, init, sizeof init, cudaMemcpyHostToDevice));
    nonfinite_kernel<<<dfm_cuda_blocks(n), DFM_CUDA_THREADS>>>(x, esize, mask, n, d, d + 1);
    CUDA_CHECK_LAUNCH();
    CUDA_CHECK(cudaMemcpy(res, d, sizeof res, cudaMemcpyDeviceToHost));
    *count = (int64_t)res[0];
    *first = res[0] ? (int64_t)res[1] : -1;
    return 0;
}
