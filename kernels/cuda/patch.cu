// patch.cu — patchify / unpatchify permutations: the twins of kernels/cpu/patch.c. One thread per
// element of the latent, grid-stride.
#include "cuda/common.cuh"
#include "cuda/patch.h"

struct patch_dims {
    int64_t C, F, H, W, pt, ph, pw;
};

__global__ void patch_kernel(const float *src, float *dst, int64_t total, patch_dims d, int order, int to_rows)
{
    int64_t Hp = d.H / d.ph, Wp = d.W / d.pw, N = (d.F / d.pt) * Hp * Wp, P = d.pt * d.ph * d.pw;
    for (int64_t xi = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; xi < total; xi += (int64_t)gridDim.x * blockDim.x) {
        int64_t w = xi % d.W, r = xi / d.W, h = r % d.H;
        r /= d.H;
        int64_t f = r % d.F, bc = r / d.F, ch = bc % d.C, b = bc / d.C;
        int64_t kt = f % d.pt, kh = h % d.ph, kw = w % d.pw, fp = f / d.pt, i = h / d.ph, j = w / d.pw;
        int64_t t = b * N + (fp * Hp + i) * Wp + j, pos = (kt * d.ph + kh) * d.pw + kw;
        int64_t ri = t * d.C * P + (order ? pos * d.C + ch : ch * P + pos);
        if (to_rows) dst[ri] = src[xi];
        else dst[xi] = src[ri];
    }
}

static int run(const float *src, float *dst, const int64_t dims[5], const int64_t patch[3], int order, int to_rows)
{
    int64_t total = dims[0] * dims[1] * dims[2] * dims[3] * dims[4];
    if (total <= 0) return 0;
    patch_dims d = {dims[1], dims[2], dims[3], dims[4], patch[0], patch[1], patch[2]};
    patch_kernel<<<dfm_cuda_blocks(total), DFM_CUDA_THREADS>>>(src, dst, total, d, order, to_rows);
    CUDA_CHECK_LAUNCH();
    return 0;
}

extern "C" int dfm_cuda_patchify(const float *x, float *rows, const int64_t dims[5], const int64_t patch[3], int order)
{
    return run(x, rows, dims, patch, order, 1);
}

extern "C" int dfm_cuda_unpatchify(const float *rows, float *x, const int64_t dims[5], const int64_t patch[3], int order)
{
    return run(rows, x, dims, patch, order, 0);
}
