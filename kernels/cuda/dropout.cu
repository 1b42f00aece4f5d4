// dropout.cu — inverted dropout with the Philox mask of kernels/cpu/dropout.c: one thread per
// block of 4 elements, the same Philox4x32-10 words (base/rng.c's rounds, on the device).
#include "cuda/common.cuh"
#include "cuda/dropout.h"

__device__ __forceinline__ void philox4x32(uint32_t c[4], uint32_t k0, uint32_t k1)
{
    for (int r = 0; r < 10; r++) {
        uint32_t lo0 = 0xD2511F53u * c[0], hi0 = __umulhi(0xD2511F53u, c[0]);
        uint32_t lo1 = 0xCD9E8D57u * c[2], hi1 = __umulhi(0xCD9E8D57u, c[2]);
        uint32_t n0 = hi1 ^ c[1] ^ k0, n2 = hi0 ^ c[3] ^ k1;
        c[0] = n0, c[1] = lo1, c[2] = n2, c[3] = lo0;
        k0 += 0x9E3779B9u, k1 += 0xBB67AE85u;
    }
}

__global__ void dropout_kernel(const float *x, float *y, int64_t n, float p, float scale, uint32_t k0, uint32_t k1,
                               uint32_t s0, uint32_t s1)
{
    int64_t nb = (n + 3) / 4;
    for (int64_t b = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; b < nb; b += (int64_t)gridDim.x * blockDim.x) {
        uint32_t c[4] = {(uint32_t)b, (uint32_t)((uint64_t)b >> 32), s0, s1};
        philox4x32(c, k0, k1);
        for (int j = 0; j < 4; j++) {
            int64_t i = 4 * b + j;
            if (i >= n) break;
            float u = __fmul_rn((float)(c[j] >> 8), 1.0f / 16777216.0f);
            y[i] = u >= p ? __fmul_rn(x[i], scale) : 0.0f;
        }
    }
}

extern "C" int dfm_cuda_dropout(const float *x, float *y, int64_t n, float p, uint64_t seed, uint64_t stream)
{
    if (n <= 0) return 0;
    if (p <= 0.0f) {
        if (y != x) CUDA_CHECK(cudaMemcpyAsync(y, x, (size_t)n * sizeof(float), cudaMemcpyDeviceToDevice, 0));
        return 0;
    }
    float scale = 1.0f / (1.0f - p);
    dropout_kernel<<<dfm_cuda_blocks((n + 3) / 4), DFM_CUDA_THREADS>>>(x, y, n, p, scale, (uint32_t)seed,
                                                                       (uint32_t)(seed >> 32), (uint32_t)stream,
                                                                       (uint32_t)(stream >> 32));
    CUDA_CHECK_LAUNCH();
    return 0;
}
