/* device.c — which compute devices this process can use (see tensor.h dfm_device_available). */
#include "tensor/tensor.h"
#include "base/error.h"
#ifdef DFM_HAVE_CUDA
#include "cuda/device.h"
#endif

int dfm_device_available(dfm_device d)
{
    if (d == DFM_CPU) return 1;
#ifdef DFM_HAVE_CUDA
    const char *why = NULL;
    if (dfm_cuda_device_count(&why) > 0) return 1;
    dfm_fail(DFM_E_UNSUPPORTED, "no usable CUDA device (%s)", why ? why : "unknown");
#else
    dfm_fail(DFM_E_UNSUPPORTED, "this build has no CUDA backend (nvcc was not found at build time)");
#endif
    return 0;
}
