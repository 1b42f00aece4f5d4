/* ops_cuda.c — the CUDA entries of the op table (ops_impl.h): each turns an op's checked
 * arguments (ops.c has checked them) into a call of its kernels/cuda twin. CUDA builds only.
 * Not here: the checks, the CPU entries, the table (ops.c); any arithmetic (kernels/cuda).
 */
#ifdef DFM_HAVE_CUDA
#include "tensor/ops_impl.h"
#include "base/error.h"
#include "cuda/act.h"
#include "cuda/adamw.h"
#include "cuda/attention.h"
#include "cuda/bias.h"
#include "cuda/device.h"
#include "cuda/dropout.h"
#include "cuda/layer_norm.h"
#include "cuda/modulate.h"
#include "cuda/ops_cuda.h"
#include "cuda/patch.h"
#include "cuda/reduce.h"
#include "cuda/rms_norm.h"
#include "cuda/rope.h"

#include <string.h>

int dfm_op_cuda_conv3d(dfm_op_args *a)
{
    const dfm_tensor *x = a->src[0], *w = a->src[1], *b = a->src[2];
    int stride[3], pad[6];
    dfm_ops_conv3d_params(a, stride, pad);
    return dfm_cuda_conv3d(x->data, x->shape[0], x->shape[1], x->shape[2], x->shape[3], w->data, w->dtype,
                           w->shape[0], (int)w->shape[2], (int)w->shape[3], (int)w->shape[4], ptr(b), dt_or_f32(b),
                           a->dst[0]->data, stride, pad, bf16(a));
}
int dfm_op_cuda_rms_norm_channels(dfm_op_args *a)
{
    const dfm_tensor *x = a->src[0], *g = a->src[1], *b = a->src[2];
    return dfm_cuda_rms_norm_channels(x->data, x->shape[0], per_channel(x), g->data, g->dtype, ptr(b), dt_or_f32(b),
                                      a->dst[0]->data);
}
int dfm_op_cuda_silu(dfm_op_args *a) { return dfm_cuda_silu(X0, Y0, N0); }
int dfm_op_cuda_add(dfm_op_args *a) { return dfm_cuda_add(X0, X1, Y0, N0); }
int dfm_op_cuda_mul(dfm_op_args *a) { return dfm_cuda_mul(X0, X1, Y0, N0); }
int dfm_op_cuda_gelu_new(dfm_op_args *a) { return dfm_cuda_gelu_new(X0, Y0, N0); }
int dfm_op_cuda_clamp(dfm_op_args *a) { return dfm_cuda_clamp(X0, a->f[0], a->f[1], Y0, N0); }
int dfm_op_cuda_affine(dfm_op_args *a) { return dfm_cuda_affine(X0, a->f[0], a->f[1], Y0, N0); }
int dfm_op_cuda_matmul(dfm_op_args *ar)
{
    int64_t m, n, k;
    dfm_ops_matmul_dims(ar, &m, &n, &k);
    const dfm_tensor *b = ar->src[1], *bias = ar->src[2];
    return dfm_cuda_matmul(ar->src[0]->data, ar->i[0] != 0, b->data, b->dtype, ar->i[1] != 0, ptr(bias),
                           dt_or_f32(bias), ar->f[0], ar->dst[0]->data, m, n, k, bf16(ar));
}
int dfm_op_cuda_linear(dfm_op_args *a)
{
    const dfm_packed *l = a->p;
    const dfm_tensor *x = a->src[0];
    for (int i = 0; i < l->nw; i++) {
        int rc = dfm_cuda_matmul(x->data, 0, l->dev[i].data, l->dtype, 1, ptr(a->src[1 + i]), DFM_F32, a->i[0] ? 1.0f : 0.0f,
                                 a->dst[i]->data, x->shape[0], l->n[i], l->k, bf16(a));
        if (rc) return rc;
    }
    return 0;
}
int dfm_op_cuda_attention(dfm_op_args *a)
{
    dfm_attn_args r = dfm_ops_attn_args(a->src[0], a->src[1], a->src[2], a->src[3], a->dst[0], a->dst[1], a->f[0], (int)a->i[0]);
    r.bf16 = bf16(a);
    return dfm_cuda_attention_fwd(&r);
}
int dfm_op_cuda_attention_bwd(dfm_op_args *a)
{
    dfm_attn_args r = dfm_ops_attn_args(a->src[0], a->src[1], a->src[2], a->src[3], a->src[4], a->src[5], a->f[0], (int)a->i[0]);
    r.bf16 = bf16(a);
    return dfm_cuda_attention_bwd(&r, a->src[6]->data, a->dst[0]->data, a->dst[1]->data, a->dst[2]->data);
}
int dfm_op_cuda_embedding(dfm_op_args *a)
{
    const dfm_tensor *t = a->src[0];
    return dfm_cuda_embedding(t->data, t->dtype, t->shape[1], a->src[1]->data, a->src[1]->shape[0], a->dst[0]->data);
}
int dfm_op_cuda_rel_bias(dfm_op_args *a)
{
    const dfm_tensor *t = a->src[0], *o = a->dst[0];
    return dfm_cuda_rel_bias(t->data, t->dtype, t->shape[0], t->shape[1], a->src[1]->data, o->shape[1], o->shape[2],
                             o->data);
}
int dfm_op_cuda_rms_norm(dfm_op_args *a)
{
    const dfm_tensor *x = a->src[0], *w = a->src[1];
    if (a->dst[1])
        return dfm_cuda_rms_norm_save(x->data, rows_of(x), last_dim(x), w->data, w->dtype, a->f[0], a->dst[0]->data,
                                      a->dst[1]->data);
    return dfm_cuda_rms_norm(x->data, rows_of(x), last_dim(x), w->data, w->dtype, a->f[0], a->dst[0]->data);
}
int dfm_op_cuda_transpose2d(dfm_op_args *a)
{
    const dfm_tensor *x = a->src[0];
    return dfm_cuda_transpose2d(x->data, a->dst[0]->data, x->shape[0], x->shape[1], esize(x));
}
int dfm_op_cuda_upsample_nearest2x(dfm_op_args *a)
{
    const dfm_tensor *x = a->src[0];
    return dfm_cuda_upsample_nearest2x(x->data, a->dst[0]->data, x->shape[0], x->shape[1], x->shape[2], x->shape[3],
                                       esize(x));
}
int dfm_op_cuda_concat(dfm_op_args *ar)
{
    int64_t outer, na, nb;
    dfm_ops_concat_blocks(ar, &outer, &na, &nb);
    return dfm_cuda_concat(ar->src[0]->data, na, ar->src[1]->data, nb, ar->dst[0]->data, outer, esize(ar->src[0]));
}
/* count blocks of `bytes`, device to device, one cudaMemcpy each. */
static int cuda_copy_blocks(char *dst, size_t ds, const char *src, size_t ss, size_t bytes, int64_t count)
{
    for (int64_t i = 0; i < count && bytes; i++) {
        const char *why = NULL;
        if (dfm_cuda_memcpy(dst + i * ds, src + i * ss, bytes, 2, &why))
            return dfm_fail(DFM_E_IO, "cudaMemcpy failed: %s", why ? why : "?");
    }
    return 0;
}
int dfm_op_cuda_frames(dfm_op_args *a)
{
    const dfm_tensor *x = a->src[0], *y = a->dst[0];
    size_t fr = frame_bytes(x), xs = fr * (size_t)x->shape[1], ys = fr * (size_t)y->shape[1];
    return cuda_copy_blocks(y->data, ys, (const char *)x->data + (size_t)a->i[0] * fr, xs, ys, x->shape[0]);
}
int dfm_op_cuda_put_frames(dfm_op_args *a)
{
    const dfm_tensor *f = a->src[0], *y = a->dst[0];
    size_t fr = frame_bytes(y), ys = fr * (size_t)y->shape[1], fs = fr * (size_t)f->shape[1];
    return cuda_copy_blocks((char *)y->data + (size_t)a->i[0] * fr, ys, f->data, fs, fs, y->shape[0]);
}
int dfm_op_cuda_count_nonfinite(dfm_op_args *a)
{
    int64_t n;
    a->r[0] = 0, a->r[1] = -1;
    if (!dfm_ops_nonfinite_applies(a->src[0], &n)) return 0;
    return dfm_cuda_count_nonfinite(a->src[0]->data, a->src[0]->dtype, n, &a->r[0], &a->r[1]);
}
int dfm_op_cuda_bias_add(dfm_op_args *a)
{
    const dfm_tensor *x = a->src[0], *b = a->src[1];
    return dfm_cuda_bias_add(x->data, b->data, b->dtype, a->dst[0]->data, rows_of(x), last_dim(x));
}
int dfm_op_cuda_dropout(dfm_op_args *a)
{
    return dfm_cuda_dropout(a->src[0]->data, a->dst[0]->data, dfm_tensor_numel(a->src[0]), a->f[0],
                            (uint64_t)a->i[0], (uint64_t)a->i[1]);
}
int dfm_op_cuda_rms_norm_bwd(dfm_op_args *a)
{
    const dfm_tensor *x = a->src[1], *w = a->src[3];
    return dfm_cuda_rms_norm_backward(a->src[0]->data, x->data, ptr(a->src[2]), rows_of(x), last_dim(x), ptr(w),
                                      dt_or_f32(w), a->f[0], dptr(a, 0), dptr(a, 1));
}
int dfm_op_cuda_layer_norm(dfm_op_args *a)
{
    const dfm_tensor *x = a->src[0], *w = a->src[1], *b = a->src[2];
    return dfm_cuda_layer_norm(x->data, rows_of(x), last_dim(x), ptr(w), dt_or_f32(w), ptr(b), dt_or_f32(b), a->f[0],
                               a->dst[0]->data, dptr(a, 1), dptr(a, 2));
}
int dfm_op_cuda_layer_norm_bwd(dfm_op_args *a)
{
    const dfm_tensor *x = a->src[1], *w = a->src[4];
    return dfm_cuda_layer_norm_backward(a->src[0]->data, x->data, ptr(a->src[2]), ptr(a->src[3]), rows_of(x),
                                        last_dim(x), ptr(w), dt_or_f32(w), a->f[0], dptr(a, 0), dptr(a, 1), dptr(a, 2));
}
int dfm_op_cuda_gelu_tanh(dfm_op_args *a) { return dfm_cuda_gelu_tanh(a->src[0]->data, a->dst[0]->data, dfm_tensor_numel(a->src[0])); }
int dfm_op_cuda_gelu_tanh_bwd(dfm_op_args *a)
{
    return dfm_cuda_gelu_tanh_backward(a->src[0]->data, a->src[1]->data, a->dst[0]->data, dfm_tensor_numel(a->src[0]));
}
int dfm_op_cuda_silu_bwd(dfm_op_args *a)
{
    return dfm_cuda_silu_backward(a->src[0]->data, a->src[1]->data, a->dst[0]->data, dfm_tensor_numel(a->src[0]));
}
int dfm_op_cuda_rope(dfm_op_args *a)
{
    const dfm_tensor *x = a->src[0];
    return dfm_cuda_rope(x->data, x->shape[0], x->shape[1], x->shape[2], x->shape[3], a->src[1]->data, a->src[2]->data,
                         a->dst[0]->data);
}
int dfm_op_cuda_rope_bwd(dfm_op_args *a)
{
    const dfm_tensor *x = a->src[0];
    return dfm_cuda_rope_backward(x->data, x->shape[0], x->shape[1], x->shape[2], x->shape[3], a->src[1]->data,
                                  a->src[2]->data, a->dst[0]->data);
}
int dfm_op_cuda_modulate(dfm_op_args *a)
{
    const dfm_tensor *x = a->src[0], *e = a->src[1];
    return dfm_cuda_modulate(x->data, x->shape[0], x->shape[1], x->shape[2], chunk(e, a->i[0]), chunk(e, a->i[1]),
                             ld_of(e), a->dst[0]->data);
}
int dfm_op_cuda_modulate_bwd(dfm_op_args *a)
{
    const dfm_tensor *x = a->src[1], *e = a->src[2], *de = a->dst[1];
    return dfm_cuda_modulate_backward(a->src[0]->data, x->data, x->shape[0], x->shape[1], x->shape[2],
                                      chunk(e, a->i[0]), ld_of(e), dptr(a, 0), chunk(de, a->i[0]), chunk(de, a->i[1]));
}
int dfm_op_cuda_gate_residual(dfm_op_args *a)
{
    const dfm_tensor *x = a->src[0], *e = a->src[2];
    return dfm_cuda_gate_residual(x->data, a->src[1]->data, x->shape[0], x->shape[1], x->shape[2], chunk(e, a->i[0]),
                                  ld_of(e), a->dst[0]->data);
}
int dfm_op_cuda_gate_residual_bwd(dfm_op_args *a)
{
    const dfm_tensor *dy = a->src[0], *e = a->src[2], *de = a->dst[1];
    return dfm_cuda_gate_residual_backward(dy->data, a->src[1]->data, dy->shape[0], dy->shape[1], dy->shape[2],
                                           chunk(e, a->i[0]), ld_of(e), dptr(a, 0), chunk(de, a->i[0]));
}
int dfm_op_cuda_colsum(dfm_op_args *a)
{
    const dfm_tensor *x = a->src[0];
    return dfm_cuda_colsum(x->data, x->shape[0], x->shape[1], a->dst[0]->data);
}
int dfm_op_cuda_patchify(dfm_op_args *a)
{
    return dfm_cuda_patchify(a->src[0]->data, a->dst[0]->data, a->src[0]->shape, a->i, (int)a->i[3]);
}
int dfm_op_cuda_unpatchify(dfm_op_args *a)
{
    return dfm_cuda_unpatchify(a->src[0]->data, a->dst[0]->data, a->dst[0]->shape, a->i, (int)a->i[3]);
}
int dfm_op_cuda_adamw(dfm_op_args *a)
{
    return dfm_cuda_adamw(a->dst[0]->data, a->src[0]->data, a->dst[1]->data, a->dst[2]->data,
                          dfm_tensor_numel(a->src[0]), a->p);
}
int dfm_op_cuda_sumsq(dfm_op_args *a)
{
    double s;
    int rc = dfm_cuda_sumsq(a->src[0]->data, dfm_tensor_numel(a->src[0]), &s);
    if (rc < 0) return rc;
    memcpy(&a->r[0], &s, sizeof s);
    a->r[1] = 0;
    return 0;
}
#endif
