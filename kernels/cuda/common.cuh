// common.cuh — what every kernels/cuda/*.cu shares: the error check macros (errors become
// DFM_E_* codes recorded with dfm_fail, never exit()), the lazily created cuBLAS handle, a few
// reusable device scratch buffers, device memory from the stream-ordered pool, launch-size
// helpers and scalar dtype loads/stores on the device.
//
// Not here: any op. The handle and the scratch buffers are process-wide and not locked: the CUDA
// backend is driven from one host thread at a time, on the legacy default stream (as llm.c is),
// so stream order alone keeps a scratch buffer from being reused while a kernel still reads it.
//
// Errors: every CUDA runtime call's result is either checked (CUDA_CHECK: recorded with its
// file:line and returned) or, where nothing can be returned (frees, cleanup), reported as a
// warning with its file:line (CUDA_WARN); both clear the error (cudaGetLastError) at once, so a
// non-sticky error never fails the next healthy launch.
//
// Rounding: the kernels round every f32 operation as their CPU twins do under -std=c11 (which
// implies -ffp-contract=off): NVFLAGS has -fmad=false, so nvcc never fuses a product into a sum,
// and the kernels whose twins document an operation order spell it with __fmul_rn / __fadd_rn /
// __fdiv_rn / __fsqrt_rn. (Library functions such as expf are not correctly rounded on either
// side; their ops are compared with a tolerance.)
#ifndef DFM_KERNELS_CUDA_COMMON_CUH
#define DFM_KERNELS_CUDA_COMMON_CUH

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

// lib/base is plain C11 without extern "C" guards: its headers get C linkage here (before
// ops_cuda.h includes dtype.h again), and its one C-only spelling (_Noreturn) the C++ attribute.
extern "C" {
#include "base/dtype.h"
#ifdef _Noreturn
#include "base/error.h"
#else
#define _Noreturn [[noreturn]]
#include "base/error.h"
#undef _Noreturn
#endif
#include "base/log.h"
}

// ---------------------------------------------------------------------------------------------
// errors

// Record a failed CUDA runtime / cuBLAS call ("cuda: <call> at <file>:<line>: <reason>
// (<error name>)[: <what it means for this build>]"), clear the error, and return the matching
// DFM_E_* code: DFM_E_NOMEM for allocation failures, DFM_E_UNSUPPORTED when there is no usable
// device, driver or kernel image, DFM_E_IO for everything else.
int dfm_cuda_fail_rt(cudaError_t e, const char *call, const char *file, int line);
int dfm_cuda_fail_blas(cublasStatus_t s, const char *call, const char *file, int line);
// A failed call whose result cannot be returned: clear the error and warn on stderr with
// file:line (the first few times in a process; a sticky error would repeat at every call).
void dfm_cuda_warn_rt(cudaError_t e, const char *call, const char *file, int line);
// What a load or launch error (no kernel image, PTX the driver cannot JIT, a driver older than
// the runtime ...) means for this build, written into buf; NULL for other errors. (device.cu)
const char *dfm_cuda_explain(cudaError_t e, char *buf, size_t n);

// In a function returning int: return the DFM_E_* code if the call fails.
#define CUDA_CHECK(call)                                                              \
    do {                                                                              \
        cudaError_t e_ = (call);                                                      \
        if (e_ != cudaSuccess) return dfm_cuda_fail_rt(e_, #call, __FILE__, __LINE__); \
    } while (0)
#define CUBLAS_CHECK(call)                                                              \
    do {                                                                                \
        cublasStatus_t s_ = (call);                                                     \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                \
            return dfm_cuda_fail_blas(s_, #call, __FILE__, __LINE__);                   \
    } while (0)
// A call whose failure cannot be returned (in a void function, or cleanup after another error).
#define CUDA_WARN(call)                                                          \
    do {                                                                         \
        cudaError_t e_ = (call);                                                 \
        if (e_ != cudaSuccess) dfm_cuda_warn_rt(e_, #call, __FILE__, __LINE__);  \
    } while (0)
// After a kernel launch: launch-configuration errors surface here; faults inside the kernel
// surface at the next synchronizing call.
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())
// Propagate a negative return code from one of our own helpers.
#define DFM_CHECK_RC(call)        \
    do {                          \
        int rc_ = (call);         \
        if (rc_ < 0) return rc_;  \
    } while (0)

// ---------------------------------------------------------------------------------------------
// device memory (device.cu): the stream-ordered pool of the current device, on the legacy
// default stream; see device.h for the contract.

// n bytes (at least 1); 0 or a DFM_E_* code with the reason recorded (no usable device: the
// reason of dfm_cuda_ready). An allocation that fails for memory trims the pool and retries once.
int dfm_cuda_alloc(void **p, size_t n);
// Back to the pool after the work queued so far (NULL: nothing); errors become warnings.
void dfm_cuda_dealloc(void *p);
// Return the pool's unused memory to the driver (waits for the default stream first).
void dfm_cuda_trim(void);

// ---------------------------------------------------------------------------------------------
// cuBLAS and scratch

// The process's cuBLAS handle, created on first use (default math mode: no TF32, so F32 GEMMs
// are true f32). 0 or a DFM_E_* code. cuBLAS itself is opened then (dlopen of
// libcublas.so.<CUBLAS_VER_MAJOR>, the major version built against), not linked: loading it and
// cuBLASLt costs a process ~210 MB of resident memory, which every dfm program would otherwise
// pay at start, GPU or not. Its entry points are called through dfm_cublas.
int dfm_cuda_blas(cublasHandle_t *h);
typedef struct {
    cublasStatus_t (*create)(cublasHandle_t *);
    cublasStatus_t (*destroy)(cublasHandle_t);
    cublasStatus_t (*set_math_mode)(cublasHandle_t, cublasMath_t);
    const char *(*status_string)(cublasStatus_t);
    cublasStatus_t (*gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const void *,
                              const void *, cudaDataType, int, const void *, cudaDataType, int, const void *, void *,
                              cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t);
    cublasStatus_t (*gemm_strided_batched_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                                              const void *, const void *, cudaDataType, int, long long, const void *,
                                              cudaDataType, int, long long, const void *, void *, cudaDataType, int,
                                              long long, int, cublasComputeType_t, cublasGemmAlgo_t);
} dfm_cublas_api;
extern dfm_cublas_api dfm_cublas; // filled by the first dfm_cuda_blas (all NULL before)

// Scratch slots: independent device buffers that only grow (from the pool: a buffer outgrown is
// freed in stream order, after the kernels queued on it). A pointer stays valid until the next
// call for the same slot with a larger size.
enum { DFM_SCRATCH_A = 0, DFM_SCRATCH_B, DFM_SCRATCH_NSLOTS };
int dfm_cuda_scratch(int slot, size_t bytes, void **p);

// How much scratch an op that works in blocks (conv3d columns, attention scores) aims to use
// (a build may shrink it to exercise the blocking on small shapes).
#ifndef DFM_CUDA_BLOCK_BYTES
#define DFM_CUDA_BLOCK_BYTES ((size_t)256 << 20)
#endif

// Fail with DFM_E_LIMIT when a dimension handed to cuBLAS does not fit its 32-bit int.
int dfm_cuda_check_int(const char *op, const char *what, int64_t v);

// ---------------------------------------------------------------------------------------------
// GEMM helpers shared by the ops (matmul.cu)

// Row-major GEMM through cuBLAS: Y[M, N] = alpha * op(A) @ op(B) + beta * Y, where op(A) is
// A [M, K] (row stride lda) or, when ta, A^T of A [K, M] (row stride lda); likewise B. A and B
// are both `dt` (F32, or BF16 for a bf16 run); Y is F32 with row stride ldy. Accumulates in f32.
// `batch` independent products whose A, B, Y start sa, sb, sy elements apart.
int dfm_cuda_gemm_rm(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const void *a,
                     int64_t lda, int64_t sa, const void *b, int64_t ldb, int64_t sb, dfm_dtype dt,
                     float beta, float *y, int64_t ldy, int64_t sy, int64_t batch);
// s[r, :] = softmax(s[r, :]) for rows of length len (max subtracted, f32); a row of all -inf
// (every key masked) becomes NaN, as torch's softmax. Launches on the default stream.
int dfm_cuda_softmax_rows(float *s, int64_t rows, int64_t len);
// y[r, j] += bias[per_row ? r : j] for y: [rows, cols] F32 (row stride ldy); bias F32/BF16/F16.
int dfm_cuda_add_bias(float *y, int64_t rows, int64_t cols, int64_t ldy, const void *bias,
                      dfm_dtype bdt, int per_row);

// ---------------------------------------------------------------------------------------------
// launch sizes

#define DFM_CUDA_THREADS 256
// Blocks for a grid-stride loop over n elements (n > 0).
static inline unsigned dfm_cuda_blocks(int64_t n)
{
    int64_t b = (n + DFM_CUDA_THREADS - 1) / DFM_CUDA_THREADS;
    return (unsigned)(b < 65536 * 8 ? b : 65536 * 8);
}

// ---------------------------------------------------------------------------------------------
// scalar dtypes on the device: round to nearest even, NaN stays NaN, the same bits as base/dtype.c

__device__ __forceinline__ float dfm_dev_bf16_to_f32(uint16_t h)
{
    return __uint_as_float((uint32_t)h << 16);
}

__device__ __forceinline__ uint16_t dfm_dev_f32_to_bf16(float f)
{
    uint32_t u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u); // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

// f16 <-> f32 in integer arithmetic, bit for bit what base/dtype.c does (subnormals; values at or
// past 65520 become inf; NaN keeps sign and top payload bits and gets the quiet bit), so the CPU
// and CUDA conversions agree even on NaN payloads.
__device__ __forceinline__ float dfm_dev_f16_to_f32(uint16_t h)
{
    uint32_t s = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    uint32_t u;
    if (e == 0x1f) u = s | 0x7f800000u | (m << 13) | (m ? 0x400000u : 0u); // inf, quiet NaN
    else if (e) u = s | ((e + 112) << 23) | (m << 13);
    else if (!m) u = s;
    else { // subnormal: normalize so that bit 10 is set
        int sh = __clz(m) - 21; // m < 2^10: shift that brings the top bit to bit 10
        m <<= sh;
        u = s | ((uint32_t)(113 - sh) << 23) | ((m & 0x3ffu) << 13);
    }
    return __uint_as_float(u);
}

__device__ __forceinline__ uint16_t dfm_dev_f32_to_f16(float f)
{
    uint32_t u = __float_as_uint(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t x = u & 0x7fffffffu;
    if (x > 0x7f800000u) return sign | 0x7e00u | (uint16_t)((x >> 13) & 0x3ffu); // NaN
    if (x >= 0x477ff000u) return sign | 0x7c00u; // inf, or rounds to 65536 and past
    if (x >= 0x38800000u) {                      // normal f16: rebias, round at bit 13
        uint32_t r = x + 0xfffu + ((x >> 13) & 1u);
        return sign | (uint16_t)((r - 0x38000000u) >> 13);
    }
    if (x <= 0x33000000u) return sign; // at most 2^-25: rounds to (signed) zero
    // subnormal f16: the value is m * 2^(e-150); in units of 2^-24 that is m >> (126 - e)
    uint32_t e = x >> 23, m = (x & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126 - e; // 14 .. 24
    uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1u))) q++;
    return sign | (uint16_t)q;
}

// Element i of a float-typed array (F32, BF16, F16; U8 reads as its value) as f32.
__device__ __forceinline__ float dfm_dev_load(const void *p, int dt, int64_t i)
{
    switch (dt) {
    case DFM_BF16: return dfm_dev_bf16_to_f32(((const uint16_t *)p)[i]);
    case DFM_F16: return dfm_dev_f16_to_f32(((const uint16_t *)p)[i]);
    case DFM_U8: return (float)((const uint8_t *)p)[i];
    default: return ((const float *)p)[i];
    }
}

__device__ __forceinline__ void dfm_dev_store(void *p, int dt, int64_t i, float v)
{
    switch (dt) {
    case DFM_BF16: ((uint16_t *)p)[i] = dfm_dev_f32_to_bf16(v); break;
    case DFM_F16: ((uint16_t *)p)[i] = dfm_dev_f32_to_f16(v); break;
    default: ((float *)p)[i] = v; break;
    }
}

// Store a float into an f32 or bf16 GEMM operand (the bf16 rounding of a bf16 run).
__device__ __forceinline__ void dfm_dev_put(float *p, int64_t i, float v) { p[i] = v; }
__device__ __forceinline__ void dfm_dev_put(uint16_t *p, int64_t i, float v)
{
    p[i] = dfm_dev_f32_to_bf16(v);
}

#endif
