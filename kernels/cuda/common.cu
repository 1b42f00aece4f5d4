// common.cu — error recording, the cuBLAS handle and the scratch buffers (see common.cuh).
#include "cuda/common.cuh"
#include "cuda/ops_cuda.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>

int dfm_cuda_fail_rt(cudaError_t e, const char *call, const char *file, int line)
{
    cudaGetLastError(); // clear a non-sticky error so the next launch check does not see it
    char ex[512];
    const char *hint = dfm_cuda_explain(e, ex, sizeof ex);
    int code = DFM_E_IO;
    if (e == cudaErrorMemoryAllocation) code = DFM_E_NOMEM;
    else if (e == cudaErrorNoDevice || e == cudaErrorStubLibrary || hint) code = DFM_E_UNSUPPORTED;
    return dfm_fail(code, "cuda: %s at %s:%d: %s (%s)%s%s", call, file, line, cudaGetErrorString(e),
                    cudaGetErrorName(e), hint ? ": " : "", hint ? hint : "");
}

void dfm_cuda_warn_rt(cudaError_t e, const char *call, const char *file, int line)
{
    static int shown; // the backend is driven from one host thread (common.cuh)
    cudaGetLastError();
    if (shown < 5)
        dfm_log_warn("cuda: %s at %s:%d: %s (%s)%s", call, file, line, cudaGetErrorString(e),
                     cudaGetErrorName(e), ++shown == 5 ? "; further such warnings are not shown" : "");
}

int dfm_cuda_fail_blas(cublasStatus_t s, const char *call, const char *file, int line)
{
    // a kernel cuBLAS launched may have left a runtime error: name it, and clear it
    cudaError_t e = cudaGetLastError();
    char ex[512];
    const char *hint = e != cudaSuccess ? dfm_cuda_explain(e, ex, sizeof ex) : NULL;
    int code = s == CUBLAS_STATUS_ALLOC_FAILED ? DFM_E_NOMEM
             : s == CUBLAS_STATUS_NOT_SUPPORTED || s == CUBLAS_STATUS_ARCH_MISMATCH || hint ? DFM_E_UNSUPPORTED
             : DFM_E_IO;
    char st[32];
    snprintf(st, sizeof st, "status %d", (int)s);
    return dfm_fail(code, "cublas: %s at %s:%d: %s%s%s%s%s%s", call, file, line,
                    dfm_cublas.status_string ? dfm_cublas.status_string(s) : st,
                    e != cudaSuccess ? " (CUDA: " : "", e != cudaSuccess ? cudaGetErrorName(e) : "",
                    e != cudaSuccess ? ")" : "", hint ? ": " : "", hint ? hint : "");
}

static cublasHandle_t g_blas;
dfm_cublas_api dfm_cublas;

#define DFM_STR_(x) #x
#define DFM_STR(x) DFM_STR_(x)

// dfm_cublas from libcublas.so.<major> (the executable's run path finds CUDA's lib64), else
// libcublas.so; every entry point or none. 0 or DFM_E_UNSUPPORTED naming what is missing.
static int load_cublas(void)
{
    if (dfm_cublas.gemm_ex) return 0;
    const char *names[] = {"libcublas.so." DFM_STR(CUBLAS_VER_MAJOR), "libcublas.so"};
    void *lib = NULL;
    for (int i = 0; i < 2 && !lib; i++) lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (!lib)
        return dfm_fail(DFM_E_UNSUPPORTED, "cuda: cannot load cuBLAS (%s): %s; install CUDA's libcublas %d or put "
                        "its directory on LD_LIBRARY_PATH", names[0], dlerror(), CUBLAS_VER_MAJOR);
    dfm_cublas_api a;
    a.create = (cublasStatus_t (*)(cublasHandle_t *))dlsym(lib, "cublasCreate_v2");
    a.destroy = (cublasStatus_t (*)(cublasHandle_t))dlsym(lib, "cublasDestroy_v2");
    a.set_math_mode = (cublasStatus_t (*)(cublasHandle_t, cublasMath_t))dlsym(lib, "cublasSetMathMode");
    a.status_string = (const char *(*)(cublasStatus_t))dlsym(lib, "cublasGetStatusString");
    a.gemm_ex = (decltype(a.gemm_ex))dlsym(lib, "cublasGemmEx");
    a.gemm_strided_batched_ex = (decltype(a.gemm_strided_batched_ex))dlsym(lib, "cublasGemmStridedBatchedEx");
    if (!a.create || !a.destroy || !a.set_math_mode || !a.status_string || !a.gemm_ex || !a.gemm_strided_batched_ex) {
        dlclose(lib);
        return dfm_fail(DFM_E_UNSUPPORTED, "cuda: %s lacks the cuBLAS entry points dfm uses (a cuBLAS %d is needed)",
                        names[0], CUBLAS_VER_MAJOR);
    }
    dfm_cublas = a; // the library stays open for the process
    return 0;
}

extern "C" int dfm_cuda_blas_open(void) { return load_cublas(); }

int dfm_cuda_blas(cublasHandle_t *h)
{
    if (!g_blas) {
        int rc = load_cublas();
        if (rc) return rc;
        cublasHandle_t b = NULL;
        CUBLAS_CHECK(dfm_cublas.create(&b));
        cublasStatus_t s = dfm_cublas.set_math_mode(b, CUBLAS_DEFAULT_MATH);
        if (s != CUBLAS_STATUS_SUCCESS) {
            dfm_cublas.destroy(b);
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
        // freed in stream order: kernels queued on the old buffer still read it first
        dfm_cuda_dealloc(g_scratch[slot]);
        g_scratch[slot] = NULL;
        g_scratch_n[slot] = 0;
        size_t n = bytes + bytes / 8; // some headroom for the next, slightly larger call
        n = (n + 255) & ~(size_t)255;
        DFM_CHECK_RC(dfm_cuda_alloc(&g_scratch[slot], n));
        g_scratch_n[slot] = n;
    }
    *p = g_scratch[slot];
    return 0;
}

// The scratch, and every free block the pool holds (tensors freed since), go back to the driver.
// A process that never used the device does not start CUDA here.
extern "C" void dfm_cuda_release_scratch(void)
{
    for (int i = 0; i < DFM_SCRATCH_NSLOTS; i++) {
        dfm_cuda_dealloc(g_scratch[i]); // after the kernels still using it
        g_scratch[i] = NULL;
        g_scratch_n[i] = 0;
    }
    dfm_cuda_trim(); // a no-op until a device was selected
}

int dfm_cuda_check_int(const char *op, const char *what, int64_t v)
{
    if (v < 0 || v > INT_MAX)
        return dfm_fail(DFM_E_LIMIT, "%s: %s = %lld does not fit cuBLAS's 32-bit sizes", op, what,
                        (long long)v);
    return 0;
}
