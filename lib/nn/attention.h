/* attention.h — the multi-head attention layer of a DiT block, forward and backward: q, k, v
 * projections (with bias, LoRA-capable), optional RMS norms of q and k over all heads together,
 * optional rotary embedding of q and k (self-attention), scaled dot-product attention, output
 * projection. Self-attention reads q, k, v from x; cross-attention reads k, v from a context.
 *
 * Activations are token rows: x [B * Sq, D] (batch-major), ctx [B * Sk, Dc], y [B * Sq, D]; the
 * projections are used in place as [B, S, heads, head_dim] (token-major attention, no transposes).
 * The softmax scale is 1/sqrt(head_dim).
 * ref: diffusers transformer_wan.py WanAttention + WanAttnProcessor (to_q/to_k/to_v/to_out.0,
 *      norm_q/norm_k RMSNorm(dim_head * heads), apply_rotary_emb, F.scaled_dot_product_attention)
 * Not here: masks (Wan uses none: padded text rows take part, as in diffusers), the I2V image
 * branch (add_k_proj), T5's relative-bias attention (nn/t5.h).
 */
#ifndef DFM_NN_ATTENTION_H
#define DFM_NN_ATTENTION_H
#include <stdint.h>
#include "nn/linear.h"
#include "nn/norm.h"

typedef struct {
    int heads;
    int64_t dim;                /* heads * head_dim (the q/k/v/out width) */
    dfm_linear q, k, v, o;
    dfm_rms_norm norm_q, norm_k; /* w.data NULL: no q/k norm */
} dfm_attention;

typedef struct {
    dfm_linear_grads q, k, v, o;
    dfm_tensor norm_q, norm_k; /* [dim] F32, accumulated; data NULL: not trained */
} dfm_attention_grads;

/* Everything the backward needs; tensors owned unless noted. */
typedef struct {
    int64_t batch, sq, sk;
    dfm_linear_acts q, k, v, o;
    dfm_rms_norm_acts nq, nk;
    dfm_tensor qr, kr;     /* raw q, k projections (the norms' inputs) */
    dfm_tensor qq, kk, vv; /* attention operands [B * S, dim] (after norm and rope) */
    dfm_tensor att, lse;   /* attention output (to_out's input), log-sum-exp [B, heads, Sq] */
} dfm_attention_acts;

/* y = attention(x, ctx): x [B * sq, dim_in], ctx NULL (self) or [B * sk, ctx_dim]; cos, sin:
 * [sq, head_dim / 2] rotary tables for q and k (self-attention), or NULL; y [B * sq, dim]
 * allocated by the caller. cc: the compute context of this module. acts NULL: inference;
 * otherwise the activations are saved (x and ctx must stay unchanged until the backward) and LoRA
 * dropout draws from (seed, stream * 8 + projection: q, k, v, o = 0..3). */
int dfm_attention_forward(const dfm_compute *cc, const dfm_attention *a, int64_t batch, const dfm_tensor *x,
                          const dfm_tensor *ctx, const dfm_tensor *cos, const dfm_tensor *sin, dfm_tensor *y,
                          dfm_attention_acts *acts, uint64_t seed, uint64_t stream);
/* From dy [B * sq, dim]: dx (written; NULL: not wanted), dctx (cross-attention only: written;
 * NULL: not wanted) and the parameter gradients g (accumulated; NULL: none). */
int dfm_attention_backward(const dfm_compute *cc, const dfm_attention *a, const dfm_attention_acts *acts,
                           const dfm_tensor *cos, const dfm_tensor *sin, const dfm_tensor *dy, dfm_tensor *dx,
                           dfm_tensor *dctx, dfm_attention_grads *g);
void dfm_attention_acts_free(dfm_attention_acts *acts);
void dfm_attention_free(dfm_attention *a);

#endif
