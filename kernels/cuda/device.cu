// device.cu — CUDA device selection, the probe kernel, the memory pool and copies (see device.h).
//
// Device selection decides once, on the first call that needs a device, between "usable", "no
// device here" (a skip for tests) and "here but broken" (a failure), from the CUDA runtime's
// documented error meanings (driver_types.h): cudaErrorNoDevice is the only "no device" from a
// working driver; cudaErrorStubLibrary means the stub libcuda stands in for a missing driver;
// cudaErrorInsufficientDriver means "no driver installed" or "driver older than the runtime".
// Those two are told apart by asking the driver library itself (dlopen libcuda.so.1,
// cuDriverGetVersion): the runtime's cudaDriverGetVersion also answers 0 for an installed driver
// too old to hand it its entry points. Everything else is a failure with its reason.
#include "cuda/common.cuh"
#include "cuda/device.h"

#include <dlfcn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#ifndef DFM_CUDA_CODE // the Makefile passes the gencode list it compiles for
#define DFM_CUDA_CODE "the architectures of its NVFLAGS"
#endif

extern "C" const char *dfm_cuda_build_code(void) { return DFM_CUDA_CODE; }

// ---------------------------------------------------------------------------------------------
// error explanations (also used by dfm_cuda_fail_rt for every failed call)

static void version_str(int v, char *b, size_t n) { snprintf(b, n, "%d.%d", v / 1000, v % 1000 / 10); }

// The CUDA version of the installed driver, asked of libcuda.so.1 itself: > 0, or 0 when there is
// no driver (the library does not load, or it is the stub, whose calls all fail); the loader's
// message in *why then.
static int driver_version_direct(const char **why)
{
    static char msg[256];
    *why = "";
    void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL); // the runtime's copy if it loaded one
    if (!h) {
        const char *e = dlerror();
        snprintf(msg, sizeof msg, "%s", e ? e : "libcuda.so.1 not found");
        *why = msg;
        return 0;
    }
    typedef int (*get_version_fn)(int *);
    get_version_fn f = (get_version_fn)dlsym(h, "cuDriverGetVersion");
    int v = 0;
    if (!f || f(&v) != 0 || v <= 0) {
        *why = "libcuda.so.1 answers nothing (the stub library?)";
        v = 0;
    }
    dlclose(h); // only drops our reference
    return v;
}

// A sentence saying what a load or launch error means for this build, or NULL for other errors.
const char *dfm_cuda_explain(cudaError_t e, char *buf, size_t n)
{
    int drv = 0, rt = 0;
    char d[16], r[16];
    switch (e) {
    case cudaErrorNoKernelImageForDevice:
    case cudaErrorInvalidDeviceFunction:
    case cudaErrorInvalidKernelImage:
        snprintf(buf, n, "this build has code for %s, none of which this GPU runs: add its sm_XY to "
                         "CUDA_SM (make CUDA_SM=\"XY 80 90 ...\") and rebuild", DFM_CUDA_CODE);
        return buf;
    case cudaErrorUnsupportedPtxVersion:
    case cudaErrorInsufficientDriver: {
        const char *w;
        drv = driver_version_direct(&w);
        if (cudaRuntimeGetVersion(&rt) != cudaSuccess) cudaGetLastError(); // unknown: 0.0
        version_str(drv, d, sizeof d), version_str(rt, r, sizeof r);
        int ptx = e == cudaErrorUnsupportedPtxVersion;
        if (ptx && drv && rt && drv >= rt) // PTX from a toolkit newer than the driver knows
            snprintf(buf, n, "the NVIDIA driver (for CUDA %s) cannot JIT-compile this build's PTX (it has "
                             "%s): update the driver, or build native code for this GPU (CUDA_SM)",
                     d, DFM_CUDA_CODE);
        else
            snprintf(buf, n, "the NVIDIA driver (for CUDA %s) is older than the CUDA %s runtime of this "
                             "build%s: update the driver, or build with a CUDA toolkit no newer than it",
                     d, r, ptx ? " and cannot JIT-compile its PTX" : "");
        return buf;
    }
    case cudaErrorInvalidPtx:
        snprintf(buf, n, "the driver's JIT compiler rejected this build's PTX (it has %s): build "
                         "native code for this GPU (CUDA_SM in the Makefile)", DFM_CUDA_CODE);
        return buf;
    case cudaErrorJitCompilerNotFound:
        snprintf(buf, n, "this GPU needs this build's PTX JIT-compiled, but the driver's JIT "
                         "compiler (libnvidia-ptxjitcompiler.so) is missing: install it, or build "
                         "native code for this GPU (CUDA_SM in the Makefile)");
        return buf;
    case cudaErrorJitCompilationDisabled:
        snprintf(buf, n, "this GPU needs this build's PTX JIT-compiled, but JIT compilation is "
                         "disabled (CUDA_DISABLE_PTX_JIT?): build native code for this GPU");
        return buf;
    case cudaErrorDevicesUnavailable:
        snprintf(buf, n, "the GPU is busy or its compute mode prohibits this process (nvidia-smi -q -d COMPUTE)");
        return buf;
    default: return NULL;
    }
}

// ---------------------------------------------------------------------------------------------
// device selection

__global__ void probe_kernel(unsigned *p) { *p = 0x5eedu; }

static char g_why[1024] = ""; // the reason for 0 (bare: "no NVIDIA driver ...") and < 0 (a sentence)
static int g_select = -1;     // dfm_cuda_select's index: device g_select % count; < 0 the current one
static int g_decided;         // decide() ran: the choice is made
static int g_pool_ok;         // allocations come from the stream-ordered pool
static cudaMemPool_t g_pool;

// Set g_why and return state.
static int said(int state, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int said(int state, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_why, sizeof g_why, fmt, ap);
    va_end(ap);
    return state;
}

static const char *visible_note(void)
{
    static char b[160];
    const char *v = getenv("CUDA_VISIBLE_DEVICES");
    if (!v) return "";
    snprintf(b, sizeof b, " (CUDA_VISIBLE_DEVICES='%.100s')", v);
    return b;
}

static int decide(void)
{
    char ex[512];
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    cudaGetLastError(); // whatever it left must not fail a later call
    if (e == cudaErrorNoDevice || (e == cudaSuccess && n == 0))
        return said(0, "the driver detects none%s", visible_note());
    if (e == cudaErrorStubLibrary)
        return said(0, "no NVIDIA driver (only the stub libcuda.so was found)");
    if (e == cudaErrorInsufficientDriver) {
        const char *w;
        if (!driver_version_direct(&w)) return said(0, "no NVIDIA driver installed (%s)", w);
        return said(DFM_E_UNSUPPORTED, "CUDA cannot start: %s", dfm_cuda_explain(e, ex, sizeof ex));
    }
    if (e != cudaSuccess) {
        const char *hint = dfm_cuda_explain(e, ex, sizeof ex);
        return said(DFM_E_UNSUPPORTED, "CUDA cannot start: cudaGetDeviceCount: %s (%s)%s%s%s",
                    cudaGetErrorString(e), cudaGetErrorName(e), hint ? ": " : "", hint ? hint : "",
                    e == cudaErrorMemoryAllocation || e == cudaErrorOperatingSystem ||
                            e == cudaErrorInitializationError
                        ? " (under AddressSanitizer CUDA needs ASAN_OPTIONS=protect_shadow_gap=0)"
                        : "");
    }

    if (g_select >= 0) { // one process per GPU: the local rank's device, round robin
        int want = g_select % n;
        if ((e = cudaSetDevice(want)) != cudaSuccess) {
            cudaGetLastError();
            return said(DFM_E_UNSUPPORTED, "cannot use CUDA device %d of %d%s: %s (%s)", want, n, visible_note(),
                        cudaGetErrorString(e), cudaGetErrorName(e));
        }
    }
    int dev = 0;
    cudaDeviceProp p;
    if ((e = cudaGetDevice(&dev)) != cudaSuccess || (e = cudaGetDeviceProperties(&p, dev)) != cudaSuccess) {
        cudaGetLastError();
        return said(DFM_E_UNSUPPORTED, "CUDA device %d does not answer: %s (%s)", dev, cudaGetErrorString(e),
                    cudaGetErrorName(e));
    }

    // The probe: one kernel of this build must run and write its word.
    unsigned *d = NULL, h = 0;
    e = cudaMalloc(&d, sizeof *d);
    if (e == cudaSuccess) {
        probe_kernel<<<1, 1>>>(d);
        e = cudaGetLastError();
        if (e == cudaSuccess) e = cudaMemcpy(&h, d, sizeof h, cudaMemcpyDeviceToHost);
        cudaError_t f = cudaFree(d);
        if (e == cudaSuccess) e = f;
    }
    cudaGetLastError();
    if (e != cudaSuccess || h != 0x5eedu) {
        // "no usable CUDA device (sm_75, Tesla T4): this build has code for sm_80 ... (cudaError...)"
        const char *hint = e != cudaSuccess ? dfm_cuda_explain(e, ex, sizeof ex) : NULL;
        return said(DFM_E_UNSUPPORTED, "no usable CUDA device (sm_%d%d, %s): %s (%s)", p.major, p.minor, p.name,
                    hint ? hint : e != cudaSuccess ? cudaGetErrorString(e) : "the probe kernel wrote nothing",
                    e != cudaSuccess ? cudaGetErrorName(e) : "no error reported");
    }

    // The stream-ordered pool keeps what is freed (release threshold: everything) until
    // dfm_cuda_release_scratch trims it. Without pool support, plain cudaMalloc/cudaFree.
    int pools = 0;
    if (cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, dev) == cudaSuccess && pools &&
        cudaDeviceGetMemPool(&g_pool, dev) == cudaSuccess) {
        uint64_t keep = UINT64_MAX;
        g_pool_ok = cudaMemPoolSetAttribute(g_pool, cudaMemPoolAttrReleaseThreshold, &keep) == cudaSuccess;
    }
    cudaGetLastError();
    return 1;
}

extern "C" int dfm_cuda_select(int index)
{
    if (g_decided) return dfm_fail(DFM_E_ARG, "the CUDA device was chosen already: select it before any CUDA work");
    g_select = index;
    return 0;
}

extern "C" int dfm_cuda_ready(const char **why)
{
    static const int state = (g_decided = 1, decide()); // C++ magic static: decided once, thread-safe
    if (why) *why = state == 1 ? "ok" : g_why;
    if (state == 1) return 1;
    if (state == 0) dfm_fail(DFM_E_UNSUPPORTED, "no CUDA device: %s", g_why);
    else dfm_fail(state, "%s", g_why);
    return state;
}

extern "C" int dfm_cuda_device_count(const char **why)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    cudaGetLastError(); // clear what it may leave
    if (e != cudaSuccess) {
        if (why) *why = cudaGetErrorString(e);
        return 0;
    }
    if (why) *why = n ? "ok" : "no CUDA device";
    return n;
}

extern "C" int dfm_cuda_device_info(int i, char *name, int n, unsigned long long *mem_bytes)
{
    cudaDeviceProp p;
    CUDA_CHECK(cudaGetDeviceProperties(&p, i));
    snprintf(name, (size_t)n, "%s (sm_%d%d)", p.name, p.major, p.minor);
    if (mem_bytes) *mem_bytes = (unsigned long long)p.totalGlobalMem;
    return 0;
}

extern "C" void dfm_cuda_versions(int *driver, int *runtime)
{
    *driver = *runtime = 0;
    if (cudaDriverGetVersion(driver) != cudaSuccess) *driver = 0;
    if (cudaRuntimeGetVersion(runtime) != cudaSuccess) *runtime = 0;
    cudaGetLastError();
    const char *w;
    if (*driver == 0) *driver = driver_version_direct(&w); // a driver too old for the runtime

}

extern "C" int dfm_cuda_mem_info(size_t *free_bytes, size_t *total_bytes)
{
    *free_bytes = *total_bytes = 0;
    if (dfm_cuda_ready(NULL) <= 0) return DFM_E_UNSUPPORTED; // the reason is recorded
    CUDA_CHECK(cudaMemGetInfo(free_bytes, total_bytes));
    return 0;
}

// ---------------------------------------------------------------------------------------------
// memory

int dfm_cuda_alloc(void **p, size_t n)
{
    *p = NULL;
    const char *why;
    int st = dfm_cuda_ready(&why);
    if (st <= 0) return DFM_E_UNSUPPORTED; // the reason is recorded
    if (!n) n = 1;
    if (!g_pool_ok) {
        CUDA_CHECK(cudaMalloc(p, n));
        return 0;
    }
    cudaError_t e = cudaMallocAsync(p, n, 0);
    if (e == cudaErrorMemoryAllocation) { // free blocks of other sizes may be held: give them back, retry
        cudaGetLastError();
        *p = NULL;
        dfm_cuda_trim();
        e = cudaMallocAsync(p, n, 0);
    }
    if (e != cudaSuccess) {
        *p = NULL;
        return dfm_cuda_fail_rt(e, "cudaMallocAsync(p, n, 0)", __FILE__, __LINE__);
    }
    return 0;
}

void dfm_cuda_dealloc(void *p)
{
    if (!p) return;
    if (g_pool_ok) CUDA_WARN(cudaFreeAsync(p, 0));
    else CUDA_WARN(cudaFree(p));
}

void dfm_cuda_trim(void)
{
    if (!g_pool_ok) return; // no device selected yet (or no pool): nothing to give back
    // frees already queued count as outstanding until the host has seen them complete
    CUDA_WARN(cudaStreamSynchronize(0));
    CUDA_WARN(cudaMemPoolTrimTo(g_pool, 0));
}

extern "C" int dfm_cuda_malloc(void **p, size_t n, const char **why)
{
    int rc = dfm_cuda_alloc(p, n);
    if (rc < 0 && why) *why = dfm_errmsg();
    return rc;
}

extern "C" void dfm_cuda_free(void *p) { dfm_cuda_dealloc(p); }

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
