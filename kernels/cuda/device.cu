// device.cu — CUDA device discovery (see device.h).
#include "cuda/device.h"

#include <cuda_runtime.h>
#include <stdio.h>

extern "C" int dfm_cuda_device_count(const char **why)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        if (why) *why = cudaGetErrorString(e);
        cudaGetLastError(); // clear the sticky error
        return 0;
    }
    if (why) *why = n ? "ok" : "no CUDA device";
    return n;
}

extern "C" int dfm_cuda_device_info(int i, char *name, int n, unsigned long long *mem_bytes)
{
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) return -1;
    snprintf(name, (size_t)n, "%s (sm_%d%d)", p.name, p.major, p.minor);
    if (mem_bytes) *mem_bytes = (unsigned long long)p.totalGlobalMem;
    return 0;
}

extern "C" int dfm_cuda_malloc(void **p, size_t n, const char **why)
{
    cudaError_t e = cudaMalloc(p, n ? n : 1);
    if (e != cudaSuccess) {
        if (why) *why = cudaGetErrorString(e);
        cudaGetLastError(); // a failed allocation must not show up in the next launch check
        *p = NULL;
        return -1;
    }
    return 0;
}

extern "C" void dfm_cuda_free(void *p)
{
    if (p) cudaFree(p);
}

extern "C" int dfm_cuda_memcpy(void *dst, const void *src, size_t n, int kind, const char **why)
{
    cudaMemcpyKind k = kind == 0 ? cudaMemcpyHostToDevice
                     : kind == 1 ? cudaMemcpyDeviceToHost : cudaMemcpyDeviceToDevice;
    cudaError_t e = cudaMemcpy(dst, src, n, k);
    if (e != cudaSuccess) {
        if (why) *why = cudaGetErrorString(e);
        cudaGetLastError();
        return -1;
    }
    return 0;
}

extern "C" int dfm_cuda_memset0(void *p, size_t n, const char **why)
{
    cudaError_t e = cudaMemset(p, 0, n);
    if (e != cudaSuccess) {
        if (why) *why = cudaGetErrorString(e);
        cudaGetLastError();
        return -1;
    }
    return 0;
}
