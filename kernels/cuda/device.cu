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
