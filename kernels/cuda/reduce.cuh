// reduce.cuh — device helpers shared by the CUDA twins of the norms and the modulation: a
// block sum in double (a fixed tree, so the result does not depend on scheduling) and the loop
// bounds of a chunked column sum (kernels/cpu/reduce.h: chunks of DFM_REDUCE_ROWS rows, each
// summed in row order from +0, then the partials in chunk order by dfm_cuda_sum_partials).
// Not here: host code (reduce.cu), atomics (none: every sum has one fixed order).
#ifndef DFM_KERNELS_CUDA_REDUCE_CUH
#define DFM_KERNELS_CUDA_REDUCE_CUH

#include "cuda/common.cuh"

#define DFM_REDUCE_ROWS 64 // rows per partial sum: the CPU's (kernels/cpu/reduce.h)
#define DFM_RED_THREADS 256 // threads of a row block (a multiple of 32, at most 1024)

// The sum of v over the block, returned to every thread: lanes combined by xor shuffles, then
// the warps' sums in warp order. red: __shared__ double[32]. Every thread of the block calls it.
__device__ __forceinline__ double dfm_dev_block_sum(double v, double *red)
{
    for (int o = 16; o > 0; o >>= 1) v = __dadd_rn(v, __shfl_xor_sync(0xffffffffu, v, o));
    int warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    if ((threadIdx.x & 31) == 0) red[warp] = v;
    __syncthreads();
    double t = 0.0;
    for (int i = 0; i < nw; i++) t = __dadd_rn(t, red[i]);
    __syncthreads(); // red is read by every thread before the next call overwrites it
    return t;
}

static inline int64_t dfm_cuda_reduce_chunks(int64_t m) { return (m + DFM_REDUCE_ROWS - 1) / DFM_REDUCE_ROWS; }

// Grid for row blocks (one block per row, grid-stride beyond) and for column-by-chunk kernels
// (x: chunks, y: tiles of DFM_RED_THREADS columns; both loop past the grid limits).
static inline unsigned dfm_cuda_row_blocks(int64_t rows) { return (unsigned)(rows < (1 << 20) ? rows : (1 << 20)); }
static inline dim3 dfm_cuda_chunk_grid(int64_t chunks, int64_t cols)
{
    int64_t tiles = (cols + DFM_RED_THREADS - 1) / DFM_RED_THREADS;
    return dim3((unsigned)(chunks < (1 << 20) ? chunks : (1 << 20)), (unsigned)(tiles < 65535 ? tiles : 65535));
}

#endif
