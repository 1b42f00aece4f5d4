// matmul.cu — Y = op(A) @ op(B) (+ bias) through cuBLAS: the twin of kernels/cpu's matmul, and the
// row-major GEMM wrapper the other ops (conv3d, attention) share.
//
// Row-major <-> column-major: a row-major [R, C] matrix with row stride ld is, to cuBLAS, the
// column-major [C, R] matrix with leading dimension ld, i.e. its transpose. So the row-major
// Y = op(A) op(B) is computed as the column-major Y^T = op(B)^T op(A)^T: cuBLAS's "A" is our B,
// its "B" is our A, its m is our N and its n our M; our transpose flags carry over unchanged.
//
// Weights in BF16/F16 are converted to an f32 scratch copy (or, in a bf16 run, activations and
// weights are rounded to bf16 and multiplied by cublasGemmEx with f32 accumulation).
// Not here: cuBLASLt epilogues or fp8; TF32 is never used (F32 GEMMs are true f32).
#include "cuda/common.cuh"
#include "cuda/ops_cuda.h"

// ---------------------------------------------------------------------------------------------
// CUDA kernels

// y[r * ldy + j] += bias[per_row ? r : j] over rows x cols.
__global__ void add_bias_kernel(float *y, int64_t rows, int64_t cols, int64_t ldy, const void *bias,
                                int bdt, int per_row)
{
    int64_t n = rows * cols;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n;
         e += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = e / cols, j = e - r * cols;
        y[r * ldy + j] += dfm_dev_load(bias, bdt, per_row ? r : j);
    }
}

// ---------------------------------------------------------------------------------------------
// kernel launchers

int dfm_cuda_add_bias(float *y, int64_t rows, int64_t cols, int64_t ldy, const void *bias,
                      dfm_dtype bdt, int per_row)
{
    if (!bias || rows <= 0 || cols <= 0) return 0;
    add_bias_kernel<<<dfm_cuda_blocks(rows * cols), DFM_CUDA_THREADS>>>(y, rows, cols, ldy, bias,
                                                                       (int)bdt, per_row);
    CUDA_CHECK_LAUNCH();
    return 0;
}

int dfm_cuda_gemm_rm(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const void *a,
                     int64_t lda, int64_t sa, const void *b, int64_t ldb, int64_t sb, dfm_dtype dt,
                     float beta, float *y, int64_t ldy, int64_t sy, int64_t batch)
{
    if (m <= 0 || n <= 0 || batch <= 0) return 0;
    if (k <= 0) return dfm_fail(DFM_E_ARG, "gemm: k = %lld", (long long)k);
    DFM_CHECK_RC(dfm_cuda_check_int("gemm", "m", m));
    DFM_CHECK_RC(dfm_cuda_check_int("gemm", "n", n));
    DFM_CHECK_RC(dfm_cuda_check_int("gemm", "k", k));
    DFM_CHECK_RC(dfm_cuda_check_int("gemm", "lda", lda));
    DFM_CHECK_RC(dfm_cuda_check_int("gemm", "ldb", ldb));
    DFM_CHECK_RC(dfm_cuda_check_int("gemm", "ldy", ldy));
    DFM_CHECK_RC(dfm_cuda_check_int("gemm", "batch", batch));
    cudaDataType ty;
    if (dt == DFM_F32) ty = CUDA_R_32F;
    else if (dt == DFM_BF16) ty = CUDA_R_16BF;
    else return dfm_fail(DFM_E_UNSUPPORTED, "gemm: operands in %s", dfm_dtype_name(dt));
    cublasHandle_t h;
    DFM_CHECK_RC(dfm_cuda_blas(&h));
    // column-major: Y^T [n, m] = op(B)^T [n, k] @ op(A)^T [k, m]
    cublasOperation_t opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasOperation_t opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (batch == 1)
        CUBLAS_CHECK(dfm_cublas.gemm_ex(h, opb, opa, (int)n, (int)m, (int)k, &alpha, b, ty, (int)ldb, a, ty,
                                  (int)lda, &beta, y, CUDA_R_32F, (int)ldy, CUBLAS_COMPUTE_32F,
                                  CUBLAS_GEMM_DEFAULT));
    else
        CUBLAS_CHECK(dfm_cublas.gemm_strided_batched_ex(h, opb, opa, (int)n, (int)m, (int)k, &alpha, b, ty,
                                                (int)ldb, (long long)sb, a, ty, (int)lda, (long long)sa,
                                                &beta, y, CUDA_R_32F, (int)ldy, (long long)sy,
                                                (int)batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return 0;
}

extern "C" int dfm_cuda_matmul(const float *a, int ta, const void *b, dfm_dtype bdt, int tb,
                               const void *bias, dfm_dtype biasdt, float beta, float *y, int64_t m,
                               int64_t n, int64_t k, int bf16_compute)
{
    if (m <= 0 || n <= 0) return 0;
    if (k <= 0) { // an empty sum: Y = beta * Y (+ bias)
        if (beta == 0.0f) CUDA_CHECK(cudaMemset(y, 0, (size_t)(m * n) * sizeof(float)));
        else if (beta != 1.0f) DFM_CHECK_RC(dfm_cuda_affine(y, beta, 0.0f, y, m * n));
        return dfm_cuda_add_bias(y, m, n, n, bias, biasdt, 0);
    }
    dfm_dtype gdt = bf16_compute ? DFM_BF16 : DFM_F32;
    const void *ga = a, *gb = b;
    if (bf16_compute) {
        void *s;
        DFM_CHECK_RC(dfm_cuda_scratch(DFM_SCRATCH_A, (size_t)(m * k) * 2, &s));
        DFM_CHECK_RC(dfm_cuda_convert(s, DFM_BF16, a, DFM_F32, m * k));
        ga = s;
    }
    if (bdt != gdt) {
        void *s;
        DFM_CHECK_RC(dfm_cuda_scratch(DFM_SCRATCH_B, (size_t)(k * n) * dfm_dtype_size(gdt), &s));
        DFM_CHECK_RC(dfm_cuda_convert(s, gdt, b, bdt, k * n));
        gb = s;
    }
    int64_t lda = ta ? m : k, ldb = tb ? k : n;
    DFM_CHECK_RC(dfm_cuda_gemm_rm(ta, tb, m, n, k, 1.0f, ga, lda, 0, gb, ldb, 0, gdt, beta, y, n, 0, 1));
    return dfm_cuda_add_bias(y, m, n, n, bias, biasdt, 0);
}
