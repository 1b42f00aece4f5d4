// layout.cu — data movement without arithmetic: transpose2d, upsample_nearest2x, concat. The
// twins of kernels/cpu's movement ops; results are bit-exact copies. Elements are moved as
// opaque words of 1, 2, 4 or 8 bytes, so one kernel serves every dtype of that size.
// Not here: general permutes or strided views (tensors are contiguous).
#include "cuda/common.cuh"
#include "cuda/ops_cuda.h"

// ---------------------------------------------------------------------------------------------
// CUDA kernels

#define TILE 32
#define TILE_ROWS 8

// y[c, r] = x[r, c] for x: [rows, cols]. A 32x32 tile goes through shared memory so that both
// the read and the write are coalesced; the +1 column avoids bank conflicts. Block (32, 8); grid x
// over column tiles, grid y strides over the nby row tiles.
template <typename T>
__global__ void transpose_kernel(const T *x, T *y, int64_t rows, int64_t cols, int64_t nby)
{
    __shared__ T tile[TILE][TILE + 1];
    int64_t c0 = (int64_t)blockIdx.x * TILE;
    for (int64_t by = blockIdx.y; by < nby; by += gridDim.y) {
        int64_t r0 = by * TILE;
        for (int j = threadIdx.y; j < TILE; j += TILE_ROWS) {
            int64_t r = r0 + j, c = c0 + threadIdx.x;
            if (r < rows && c < cols) tile[j][threadIdx.x] = x[r * cols + c];
        }
        __syncthreads();
        for (int j = threadIdx.y; j < TILE; j += TILE_ROWS) {
            int64_t c = c0 + j, r = r0 + threadIdx.x; // output row c, output column r
            if (c < cols && r < rows) y[c * rows + r] = tile[threadIdx.x][j];
        }
        __syncthreads();
    }
}

// out[ct, oy, ox] = in[ct, oy/2, ox/2] for in: [CT, H, W], out: [CT, 2H, 2W]; one thread per
// output element.
template <typename T>
__global__ void upsample2x_kernel(const T *x, T *y, int64_t ct, int64_t h, int64_t w)
{
    int64_t w2 = 2 * w, h2 = 2 * h, n = ct * h2 * w2;
    for (int64_t o = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; o < n;
         o += (int64_t)gridDim.x * blockDim.x) {
        int64_t ox = o % w2, rest = o / w2;
        int64_t oy = rest % h2, p = rest / h2;
        y[o] = x[(p * h + oy / 2) * w + ox / 2];
    }
}

// y[r, j] = j < na ? a[r, j] : b[r, j - na] for r < outer; one thread per output element.
template <typename T>
__global__ void concat_kernel(const T *a, int64_t na, const T *b, int64_t nb, T *y, int64_t outer)
{
    int64_t nr = na + nb, n = outer * nr;
    for (int64_t o = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; o < n;
         o += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = o / nr, j = o - r * nr;
        y[o] = j < na ? a[r * na + j] : b[r * nb + (j - na)];
    }
}

// ---------------------------------------------------------------------------------------------
// kernel launchers

template <typename T>
static int transpose_launch(const void *x, void *y, int64_t rows, int64_t cols)
{
    int64_t nbx = (cols + TILE - 1) / TILE, nby = (rows + TILE - 1) / TILE;
    if (nbx > 0x7fffffff) return dfm_fail(DFM_E_LIMIT, "transpose2d: %lld columns", (long long)cols);
    dim3 grid((unsigned)nbx, (unsigned)(nby < 65535 ? nby : 65535));
    transpose_kernel<T><<<grid, dim3(TILE, TILE_ROWS)>>>((const T *)x, (T *)y, rows, cols, nby);
    CUDA_CHECK_LAUNCH();
    return 0;
}

extern "C" int dfm_cuda_transpose2d(const void *x, void *y, int64_t rows, int64_t cols, int elem_size)
{
    if (rows <= 0 || cols <= 0) return 0;
    switch (elem_size) {
    case 1: return transpose_launch<uint8_t>(x, y, rows, cols);
    case 2: return transpose_launch<uint16_t>(x, y, rows, cols);
    case 4: return transpose_launch<uint32_t>(x, y, rows, cols);
    case 8: return transpose_launch<unsigned long long>(x, y, rows, cols);
    }
    return dfm_fail(DFM_E_UNSUPPORTED, "transpose2d: element size %d", elem_size);
}

template <typename T>
static int upsample_launch(const void *x, void *y, int64_t ct, int64_t h, int64_t w)
{
    upsample2x_kernel<T><<<dfm_cuda_blocks(ct * h * w * 4), DFM_CUDA_THREADS>>>((const T *)x, (T *)y,
                                                                               ct, h, w);
    CUDA_CHECK_LAUNCH();
    return 0;
}

extern "C" int dfm_cuda_upsample_nearest2x(const void *x, void *y, int64_t c, int64_t t, int64_t h,
                                           int64_t w, int elem_size)
{
    int64_t ct = c * t;
    if (ct <= 0 || h <= 0 || w <= 0) return 0;
    switch (elem_size) {
    case 1: return upsample_launch<uint8_t>(x, y, ct, h, w);
    case 2: return upsample_launch<uint16_t>(x, y, ct, h, w);
    case 4: return upsample_launch<uint32_t>(x, y, ct, h, w);
    case 8: return upsample_launch<unsigned long long>(x, y, ct, h, w);
    }
    return dfm_fail(DFM_E_UNSUPPORTED, "upsample_nearest2x: element size %d", elem_size);
}

template <typename T>
static int concat_launch(const void *a, int64_t na, const void *b, int64_t nb, void *y, int64_t outer)
{
    concat_kernel<T><<<dfm_cuda_blocks(outer * (na + nb)), DFM_CUDA_THREADS>>>(
        (const T *)a, na, (const T *)b, nb, (T *)y, outer);
    CUDA_CHECK_LAUNCH();
    return 0;
}

extern "C" int dfm_cuda_concat(const void *a, int64_t na, const void *b, int64_t nb, void *y,
                               int64_t outer, int elem_size)
{
    if (outer <= 0 || na < 0 || nb < 0 || na + nb <= 0) return 0;
    switch (elem_size) {
    case 1: return concat_launch<uint8_t>(a, na, b, nb, y, outer);
    case 2: return concat_launch<uint16_t>(a, na, b, nb, y, outer);
    case 4: return concat_launch<uint32_t>(a, na, b, nb, y, outer);
    case 8: return concat_launch<unsigned long long>(a, na, b, nb, y, outer);
    }
    return dfm_fail(DFM_E_UNSUPPORTED, "concat: element size %d", elem_size);
}
