/* ops_impl.h — what the op set's two files share (private to lib/tensor): ops.c (the checks, the
 * CPU entries, the typed functions, the table and the dispatch) and ops_cuda.c (the CUDA entries
 * of the table). The packed-weights record, the small accessors both kinds of entry use on an
 * op's arguments, the argument-to-kernel conversions the CPU and CUDA entries share (defined in
 * ops.c), and the CUDA entries the table names (defined in ops_cuda.c, CUDA builds only).
 * Not here: anything a caller of ops.h may use.
 */
#ifndef DFM_TENSOR_OPS_IMPL_H
#define DFM_TENSOR_OPS_IMPL_H
#include "cpu/attention.h"
#include "tensor/op.h"
#include "tensor/ops.h"

#include <stddef.h>
#include <stdint.h>

struct dfm_packed {
    dfm_device device;
    dfm_dtype dtype;
    int64_t k;
    int nw;
    int64_t n[DFM_PACKED_MAX];
    void *packed[DFM_PACKED_MAX]; /* CPU: dfm_cpu_linear_pack layout */
    dfm_tensor dev[DFM_PACKED_MAX]; /* CUDA: [n, k] of dtype */
    size_t nbytes;
};

/* argument accessors */
static inline int bf16(const dfm_op_args *a) { return dfm_compute_is_bf16(a->cc); }
static inline void *dptr(const dfm_op_args *a, int i) { return a->dst[i] ? a->dst[i]->data : NULL; }
static inline const void *ptr(const dfm_tensor *t) { return t ? t->data : NULL; }
static inline dfm_dtype dt_or_f32(const dfm_tensor *t) { return t ? t->dtype : DFM_F32; }
static inline int esize(const dfm_tensor *t) { return (int)dfm_dtype_size(t->dtype); }
static inline int64_t per_channel(const dfm_tensor *x) { return x->shape[0] ? dfm_tensor_numel(x) / x->shape[0] : 0; }
static inline int64_t last_dim(const dfm_tensor *x) { return x->shape[x->ndim - 1]; }
static inline int64_t rows_of(const dfm_tensor *x) { return last_dim(x) ? dfm_tensor_numel(x) / last_dim(x) : 0; }
/* the modulation table e [B, K, D]: chunk k of batch 0, and the stride between batches */
static inline float *chunk(const dfm_tensor *e, int64_t k) { return e ? (float *)e->data + k * e->shape[2] : NULL; }
static inline int64_t ld_of(const dfm_tensor *e) { return e->shape[1] * e->shape[2]; }
static inline size_t frame_bytes(const dfm_tensor *t) { return (size_t)(t->shape[2] * t->shape[3]) * dfm_dtype_size(t->dtype); }
/* elementwise entries: the first inputs, the output, the count */
#define X0 ((const float *)a->src[0]->data)
#define X1 ((const float *)a->src[1]->data)
#define Y0 ((float *)a->dst[0]->data)
#define N0 dfm_tensor_numel(a->src[0])

/* conversions of checked arguments, shared by the CPU and CUDA entries (ops.c) */
dfm_attn_args dfm_ops_attn_args(const dfm_tensor *q, const dfm_tensor *k, const dfm_tensor *v, const dfm_tensor *bias,
                                const dfm_tensor *out, const dfm_tensor *lse, float scale, int layout);
void dfm_ops_matmul_dims(const dfm_op_args *ar, int64_t *m, int64_t *n, int64_t *k);
void dfm_ops_conv3d_params(const dfm_op_args *a, int stride[3], int pad[6]);
void dfm_ops_concat_blocks(const dfm_op_args *ar, int64_t *outer, int64_t *na, int64_t *nb);
int dfm_ops_nonfinite_applies(const dfm_tensor *x, int64_t *n);

#ifdef DFM_HAVE_CUDA
/* the CUDA entries of the table (ops_cuda.c): dfm_op_cuda_NAME for the op NAME */
int dfm_op_cuda_conv3d(dfm_op_args *a);
int dfm_op_cuda_rms_norm_channels(dfm_op_args *a);
int dfm_op_cuda_silu(dfm_op_args *a);
int dfm_op_cuda_add(dfm_op_args *a);
int dfm_op_cuda_mul(dfm_op_args *a);
int dfm_op_cuda_gelu_new(dfm_op_args *a);
int dfm_op_cuda_clamp(dfm_op_args *a);
int dfm_op_cuda_affine(dfm_op_args *a);
int dfm_op_cuda_matmul(dfm_op_args *a);
int dfm_op_cuda_linear(dfm_op_args *a);
int dfm_op_cuda_attention(dfm_op_args *a);
int dfm_op_cuda_attention_bwd(dfm_op_args *a);
int dfm_op_cuda_embedding(dfm_op_args *a);
int dfm_op_cuda_rel_bias(dfm_op_args *a);
int dfm_op_cuda_rms_norm(dfm_op_args *a);
int dfm_op_cuda_transpose2d(dfm_op_args *a);
int dfm_op_cuda_upsample_nearest2x(dfm_op_args *a);
int dfm_op_cuda_concat(dfm_op_args *a);
int dfm_op_cuda_frames(dfm_op_args *a);
int dfm_op_cuda_put_frames(dfm_op_args *a);
int dfm_op_cuda_count_nonfinite(dfm_op_args *a);
int dfm_op_cuda_bias_add(dfm_op_args *a);
int dfm_op_cuda_dropout(dfm_op_args *a);
int dfm_op_cuda_rms_norm_bwd(dfm_op_args *a);
int dfm_op_cuda_layer_norm(dfm_op_args *a);
int dfm_op_cuda_layer_norm_bwd(dfm_op_args *a);
int dfm_op_cuda_gelu_tanh(dfm_op_args *a);
int dfm_op_cuda_gelu_tanh_bwd(dfm_op_args *a);
int dfm_op_cuda_silu_bwd(dfm_op_args *a);
int dfm_op_cuda_rope(dfm_op_args *a);
int dfm_op_cuda_rope_bwd(dfm_op_args *a);
int dfm_op_cuda_modulate(dfm_op_args *a);
int dfm_op_cuda_modulate_bwd(dfm_op_args *a);
int dfm_op_cuda_gate_residual(dfm_op_args *a);
int dfm_op_cuda_gate_residual_bwd(dfm_op_args *a);
int dfm_op_cuda_colsum(dfm_op_args *a);
int dfm_op_cuda_patchify(dfm_op_args *a);
int dfm_op_cuda_unpatchify(dfm_op_args *a);
int dfm_op_cuda_adamw(dfm_op_args *a);
int dfm_op_cuda_sumsq(dfm_op_args *a);
#endif

#endif
