/* device.c — which compute devices this process can use (see tensor.h dfm_device_available).
 * CUDA: the device selection of kernels/cuda/device.h (once per process: the device must answer
 * and run a probe kernel of this build), on the GPU dfm_device_select named. */
#include "tensor/tensor.h"
#include "base/error.h"
#ifdef DFM_HAVE_CUDA
#include "cuda/device.h"
#endif

int dfm_device_available(dfm_device d)
{
    if (d == DFM_CPU) return 1;
    if (d != DFM_CUDA) {
        dfm_fail(DFM_E_ARG, "unknown device %d", (int)d);
        return 0;
    }
#ifdef DFM_HAVE_CUDA
    /* 0: "no CUDA device: <why>"; < 0: "no usable CUDA device (sm_75, ...): this build has code
     * for ...", "CUDA cannot start: ..." (recorded by dfm_cuda_ready) */
    return dfm_cuda_ready(NULL) > 0;
#else
    dfm_fail(DFM_E_UNSUPPORTED, "this build has no CUDA backend (nvcc was not found at build time)");
    return 0;
#endif
}

int dfm_device_select(dfm_device d, int index)
{
    if (d != DFM_CUDA) return 0;
#ifdef DFM_HAVE_CUDA
    return dfm_cuda_select(index);
#else
    (void)index;
    return 0;
#endif
}
