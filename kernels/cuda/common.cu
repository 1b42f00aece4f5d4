// common.cu — error recording, the cuBLAS handle and the scratch buffers (see common.cuh).
#include "cuda/common.cuh"
#include "cuda/ops_cuda.h"

#include <limits.h>

int dfm_cuda_fail_rt(cudaError_t e, const char *call, const char *file, int line)
{
    cudaGetLastError(); // clear a non-sticky error so the next launch check does not see it
    int code = DFM_E_IO;
    if (e == cudaErrorMemoryAllocation) code = DFM_E_NOMEM;
    else if (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver ||
             e == cudaErrorNoKernelImageForDevice)
        code = DFM_E_UNSUPPORTED;
    return dfm_fail(code, "cuda: %s at %s:%d: %s", call, file, line, cudaGetErrorString(e));
}

int dfm_cuda_fail_blas(cublasStatus_t s, const char *call, const char *file, int line)
{
    int code = s == CUBLAS_STATUS_ALLOC_FAILED ? DFM_E_NOMEM
             : s == CUBLAS_STATUS_NOT_SUPPORTED || s == CUBLAS_STATUS_ARCH_MISMATCH ? DFM_E_UNSUPPORTED
             : DFM_E_IO;
    return dfm_fail(code, "cublas: %s at %s:%d: %s", call, file, line, cublasGetStatusString(s));
}

static cublasHandle_t g_blas;

int dfm_cuda_blas(cublasHandle_t *h)
{
    if (!g_blas) {
        cublasHandle_t b = NULL;
        CUBLAS_CHECK(cublasCreate(&b));
        cublasStatus_t s = cublasSetMathMode(b, CUBLAS_DEFAULT_MATH);
        if (s != CUBLAS_STATUS_SUCCESS) {
            cublasDestroy(b);
            return dfm_cuda_fail_blas(s, "cublasSetMathMode", __FILE__, __LINE__);
        }
        g_blas = b;
    }
    *h = g_blas;
    return 0;
}

static void *g_scratch[DFM_SCRATCH_NSLOTS];
static size_t g_scratch_n[DFM_SCRATCH_NSLOTS];

int dfm_cuda_scratch(int slot, size_t bytes, void **p)
{
    if (slot < 0 || slot >= DFM_SCRATCH_NSLOTS) return dfm_fail(DFM_E_ARG, "cuda: bad scratch slot %d", slot);
    if (bytes > g_scratch_n[slot]) {
        // cudaFree waits for the device, so kernels still reading the old buffer finish first.
        if (g_scratch[slot]) CUDA_CHECK(cudaFree(g_scratch[slot]));
        g_scratch[slot] = NULL;
        g_scratch_n[slot] = 0;
        size_t n = bytes + bytes / 8; // some headroom for the next, slightly larger call
        n = (n + 255) & ~(size_t)255;
        CUDA_CHECK(cudaMalloc(&g_scratch[slot], n));
        g_scratch_n[slot] = n;
    }
    *p = g_scratch[slot];
    return 0;
}

extern "C" void dfm_cuda_release_scratch(void)
{
    for (int i = 0; i < DFM_SCRATCH_NSLOTS; i++) {
        if (g_scratch[i]) cudaFree(g_scratch[i]); // waits for the kernels still using it
        g_scratch[i] = NULL;
        g_scratch_n[i] = 0;
    }
}

int dfm_cuda_check_int(const char *op, const char *what, int64_t v)
{
    if (v < 0 || v > INT_MAX)
        return dfm_fail(DFM_E_LIMIT, "%s: %s = %lld does not fit cuBLAS's 32-bit sizes", op, what,
                        (long long)v);
    return 0;
}
