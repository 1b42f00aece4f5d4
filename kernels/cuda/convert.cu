// convert.cu — dtype conversion on the device: the twin of base/dtype.h dfm_convert_floats
// (F32, BF16, F16 in every direction, round to nearest even; U8 to any float type).
// Not here: integer targets or scaling (u8 -> f32 is the plain value, as on the CPU).
#include "cuda/common.cuh"
#include "cuda/ops_cuda.h"

// ---------------------------------------------------------------------------------------------
// CUDA kernels

// dst[i] = (dt) src[i] through f32; every pair goes through one exact f32 intermediate, so a
// bf16 <-> f16 conversion rounds once.
__global__ void convert_kernel(void *dst, int dt, const void *src, int st, int64_t n)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        dfm_dev_store(dst, dt, i, dfm_dev_load(src, st, i));
}

// ---------------------------------------------------------------------------------------------
// kernel launchers

static int is_float(dfm_dtype t) { return t == DFM_F32 || t == DFM_BF16 || t == DFM_F16; }

extern "C" int dfm_cuda_convert(void *dst, dfm_dtype dt, const void *src, dfm_dtype st, int64_t n)
{
    if (n <= 0) return 0;
    if (dt == st) {
        CUDA_CHECK(cudaMemcpy(dst, src, (size_t)n * dfm_dtype_size(st), cudaMemcpyDeviceToDevice));
        return 0;
    }
    if (!is_float(dt) || !(is_float(st) || st == DFM_U8))
        return dfm_fail(DFM_E_UNSUPPORTED, "convert: %s -> %s is not supported on CUDA",
                        dfm_dtype_name(st), dfm_dtype_name(dt));
    convert_kernel<<<dfm_cuda_blocks(n), DFM_CUDA_THREADS>>>(dst, (int)dt, src, (int)st, n);
    CUDA_CHECK_LAUNCH();
    return 0;
}
