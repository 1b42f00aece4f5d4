/* t5.h — the layers of a T5 encoder block as UMT5 uses them, forward only: self-attention with a
 * relative position bias and no 1/sqrt(d_kv) scaling, and the gated-GELU feed-forward
 * (gelu_new(x Wi0^T) * (x Wi1^T)) Wo^T. Both add their output into the residual stream y, as the
 * reference's UMT5LayerSelfAttention / UMT5LayerFF do (their layer norms are dfm_rms_norm layers
 * the model calls first: nn/norm.h).
 *
 * Activations are token rows: x, y [n, dim] F32 (batch 1); q, k, v [n, heads * d_kv] used in
 * place as [n, heads, d_kv] (token-major attention, no transposes). Linears have no bias.
 * Speed: a layer whose fused layouts are set (qkv, o / wi, wo: dfm_packed, tensor/ops.h) runs
 * q|k|v in one pass over x, wi_0|wi_1 in one, and o / wo adding into y in the GEMM itself; without
 * them it runs its dfm_linear layers (dfm_op_matmul on the weights as stored: a model's
 * keep_mapped mode) and adds separately.
 * Forward only: no backward and no LoRA (UMT5 is frozen in every workflow); the parameter structs
 * follow the nn convention so they can be added. The activations are views the caller lays out
 * (llm.c's activation buffer), so an encode allocates nothing per layer; forward-only, one set
 * serves every layer.
 * ref: transformers models/umt5/modeling_umt5.py UMT5Attention (compute_bias, forward without a
 *      mask), UMT5DenseGatedActDense; activations.py NewGELUActivation
 * Not here: the relative position buckets (models/wan/umt5.h dfm_umt5_rel_bucket), the
 * embedding, dropout, the decoder's causal and cross-attention, T5's shared bias table.
 */
#ifndef DFM_NN_T5_H
#define DFM_NN_T5_H
#include <stdint.h>
#include "nn/linear.h"
#include "tensor/compute.h"
#include "tensor/ops.h"
#include "tensor/tensor.h"

typedef struct {
    int heads, d_kv;
    int64_t dim;           /* d_model */
    dfm_linear q, k, v, o; /* no bias: [heads * d_kv, dim] x3, [dim, heads * d_kv]; used without qkv / po */
    dfm_packed *qkv, *po;  /* NULL, or the fused layouts: q|k|v (one pass over x), o (owned) */
    dfm_tensor rel;        /* [num_buckets, heads] float: the layer's relative_attention_bias (owned) */
} dfm_t5_attention;

/* The forward's activations, F32 views the caller provides. */
typedef struct {
    dfm_tensor q, k, v, ctx; /* [n, heads * d_kv] */
    dfm_tensor bias;         /* [heads, n, n] */
    dfm_tensor t;            /* [n, dim]: o's output before its add (only without po) */
} dfm_t5_attention_acts;

/* y += attention(x) Wo^T with scores q k^T + rel[buckets[j - i + n - 1], h] (scale 1).
 * x [n, dim] F32, y [n, dim] F32 (not x); buckets: [2n - 1] I32 on the CPU, the bucket of each
 * relative position j - i = 1 - n .. n - 1. cc: the compute context (BF16: bf16 GEMM inputs).
 * ref: UMT5Attention.forward + UMT5LayerSelfAttention's residual add */
int dfm_t5_attention_forward(const dfm_compute *cc, const dfm_t5_attention *a, const dfm_tensor *x,
                             const dfm_tensor *buckets, dfm_tensor *y, dfm_t5_attention_acts *acts);
void dfm_t5_attention_free(dfm_t5_attention *a);

typedef struct {
    int64_t dim, d_ff;
    dfm_linear wi0, wi1, wo; /* no bias: [d_ff, dim] x2, [dim, d_ff]; used without wi / pwo */
    dfm_packed *wi, *pwo;    /* NULL, or the fused layouts: wi_0|wi_1 (one pass over x), wo (owned) */
} dfm_t5_ffn;

typedef struct {
    dfm_tensor g, l; /* [n, d_ff]: x Wi0^T (then the gated product), x Wi1^T */
    dfm_tensor t;    /* [n, dim]: wo's output before its add (only without pwo) */
} dfm_t5_ffn_acts;

/* y += (gelu_new(x Wi0^T) * (x Wi1^T)) Wo^T. x, y [n, dim] F32 (y not x).
 * ref: UMT5DenseGatedActDense.forward + UMT5LayerFF's residual add */
int dfm_t5_ffn_forward(const dfm_compute *cc, const dfm_t5_ffn *f, const dfm_tensor *x, dfm_tensor *y,
                       dfm_t5_ffn_acts *acts);
void dfm_t5_ffn_free(dfm_t5_ffn *f);

#endif
