/* ops_cuda.h — the CUDA twins of kernels/cpu: one function per op in lib/tensor/ops.h, called
 * only by the dispatch in lib/tensor/ops.c after it has checked shapes and dtypes. Arguments are
 * raw device pointers and sizes; every function returns 0 or a negative DFM_E_* code with the
 * CUDA error recorded (dfm_fail). GEMM-shaped work goes through cuBLAS.
 * Semantics, shapes and parameters: exactly those of the matching dfm_op_* in ops.h. */
#ifndef DFM_KERNELS_CUDA_OPS_H
#define DFM_KERNELS_CUDA_OPS_H
#include <stdint.h>
#include "base/dtype.h"
#ifdef __cplusplus
extern "C" {
#endif

int dfm_cuda_conv3d(const float *x, int64_t cin, int64_t t, int64_t h, int64_t w,
                    const void *wt, dfm_dtype wdt, int64_t cout, int kt, int kh, int kw,
                    const void *bias, dfm_dtype bdt, float *y, const int stride[3], const int pad[6],
                    int bf16_compute);
int dfm_cuda_rms_norm_channels(const float *x, int64_t c, int64_t n, const void *gamma, dfm_dtype gdt,
                               const void *bias, dfm_dtype bdt, float *y);
/* Open cuBLAS (dlopen; kernels/cuda/common.cu) and resolve the entry points dfm calls; no device
 * needed. 0 (also when already open) or DFM_E_UNSUPPORTED naming what is missing. The first GEMM
 * does this itself. */
int dfm_cuda_blas_open(void);
int dfm_cuda_silu(const float *x, float *y, int64_t n);
int dfm_cuda_add(const float *a, const float *b, float *y, int64_t n);
int dfm_cuda_clamp(const float *x, float lo, float hi, float *y, int64_t n);
int dfm_cuda_affine(const float *x, float scale, float shift, float *y, int64_t n);
int dfm_cuda_matmul(const float *a, int ta, const void *b, dfm_dtype bdt, int tb, const void *bias,
                    dfm_dtype biasdt, float beta, float *y, int64_t m, int64_t n, int64_t k,
                    int bf16_compute);
int dfm_cuda_attention(const float *q, const float *k, const float *v, float scale, float *out,
                       int64_t heads, int64_t sq, int64_t sk, int64_t d);
int dfm_cuda_transpose2d(const void *x, void *y, int64_t rows, int64_t cols, int elem_size);
int dfm_cuda_upsample_nearest2x(const void *x, void *y, int64_t c, int64_t t, int64_t h, int64_t w,
                                int elem_size);
/* Copies of contiguous blocks: y[o*(na+nb) + ...] = a block then b block, per outer index. */
int dfm_cuda_concat(const void *a, int64_t na, const void *b, int64_t nb, void *y, int64_t outer,
                    int elem_size);
int dfm_cuda_convert(void *dst, dfm_dtype dt, const void *src, dfm_dtype st, int64_t n);

/* Text-encoder ops (ops.h: dfm_op_embedding, _rel_bias, _rms_norm, _gelu_new, _mul,
 * _attention_bias). ids and buckets are host arrays the dispatch has range-checked; the twin
 * copies them to the device (scratch slot B). */
int dfm_cuda_embedding(const void *table, dfm_dtype dt, int64_t d, const int32_t *ids, int64_t n,
                       float *out);
int dfm_cuda_rel_bias(const void *table, dfm_dtype dt, int64_t nb, int64_t heads,
                      const int32_t *buckets, int64_t sq, int64_t sk, float *out);
int dfm_cuda_rms_norm(const float *x, int64_t rows, int64_t d, const void *w, dfm_dtype wdt, float eps,
                      float *y);
int dfm_cuda_gelu_new(const float *x, float *y, int64_t n);
int dfm_cuda_mul(const float *a, const float *b, float *y, int64_t n);
int dfm_cuda_attention_bias(const float *q, const float *k, const float *v, const float *bias,
                            float scale, float *out, int64_t heads, int64_t sq, int64_t sk, int64_t d);

/* Non-finite values (NaN, +-Inf) among n F32/BF16/F16 elements at x: *count of them and the
 * index of the *first (-1 if none); other dtypes have none. (lib/tensor/finite.h) */
int dfm_cuda_count_nonfinite(const void *x, dfm_dtype dt, int64_t n, int64_t *count, int64_t *first);

/* Free the device scratch the ops keep between calls (conv3d columns, attention scores, weights
 * converted to f32/bf16: up to a few hundred MiB); the next op that needs it allocates again. */
void dfm_cuda_release_scratch(void);

#ifdef __cplusplus
}
#endif
#endif
