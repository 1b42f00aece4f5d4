// reduce.cu — chunked column sums on the device: the twin of kernels/cpu/reduce.c. The first
// kernel gives each (chunk, column) one thread that sums the chunk's rows in row order; the second
// gives each output column one thread that sums the partials in chunk order. The same chunks and
// orders as the CPU, and every add is an explicitly rounded f32 add: the same bits.
#include "cuda/common.cuh"
#include "cuda/reduce.cuh"
#include "cuda/reduce.h"

// ---------------------------------------------------------------------------------------------
// CUDA kernels

static __global__ void colsum_chunk_kernel(const float *x, int64_t m, int64_t n, int64_t chunks, float *part)
{
    for (int64_t k = blockIdx.x; k < chunks; k += gridDim.x) {
        int64_t r0 = k * DFM_REDUCE_ROWS, r1 = r0 + DFM_REDUCE_ROWS < m ? r0 + DFM_REDUCE_ROWS : m;
        for (int64_t j = blockIdx.y * (int64_t)DFM_RED_THREADS + threadIdx.x; j < n;
             j += (int64_t)gridDim.y * DFM_RED_THREADS) {
            float s = 0.0f;
            for (int64_t r = r0; r < r1; r++) s = __fadd_rn(s, x[r * n + j]);
            part[k * n + j] = s;
        }
    }
}

static __global__ void sum_partials_kernel(const float *part, int64_t groups, int64_t chunks, int64_t n, float *out,
                                    int64_t ld)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < groups * n;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t g = i / n, j = i % n;
        const float *p = part + g * chunks * n + j;
        float s = 0.0f;
        for (int64_t c = 0; c < chunks; c++) s = __fadd_rn(s, p[c * n]);
        out[g * ld + j] = __fadd_rn(out[g * ld + j], s);
    }
}

// ---------------------------------------------------------------------------------------------
// kernel launchers

extern "C" int dfm_cuda_sum_partials(const float *part, int64_t groups, int64_t chunks, int64_t n, float *out,
                                     int64_t ld)
{
    if (groups <= 0 || chunks <= 0 || n <= 0) return 0;
    sum_partials_kernel<<<dfm_cuda_blocks(groups * n), DFM_CUDA_THREADS>>>(part, groups, chunks, n, out, ld);
    CUDA_CHECK_LAUNCH();
    return 0;
}

extern "C" int dfm_cuda_colsum(const float *x, int64_t m, int64_t n, float *out)
{
    if (m <= 0 || n <= 0) return 0;
    int64_t chunks = dfm_cuda_reduce_chunks(m);
    void *part;
    DFM_CHECK_RC(dfm_cuda_scratch(DFM_SCRATCH_A, (size_t)(chunks * n) * sizeof(float), &part));
    colsum_chunk_kernel<<<dfm_cuda_chunk_grid(chunks, n), DFM_RED_THREADS>>>(x, m, n, chunks, (float *)part);
    CUDA_CHECK_LAUNCH();
    return dfm_cuda_sum_partials((const float *)part, 1, chunks, n, out, n);
}
