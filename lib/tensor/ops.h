/* ops.h — the op set as typed functions: each dfm_op_* fills an argument record and runs its
 * entry of the op table (op.h), which checks shapes and dtypes once, then runs kernels/cpu/<op>.c
 * or kernels/cuda/<op>.cu by the tensors' device (all operands on one device). All ops compute in
 * f32 with f32 accumulation; weights may be BF16 or F16 (converted on the fly), activations are
 * F32 unless an op says otherwise. Outputs are allocated by the caller. The GEMM-shaped ops
 * (conv3d, matmul, linear) take a compute context (compute.h; NULL = exact f32): under a BF16
 * context their inputs are rounded to bf16 first, accumulation stays f32.
 * Shapes use the VAE's channels-first layout: a video activation is [C, T, H, W] (batch 1).
 *
 * Errors: DFM_E_ARG with a message naming the op and the shapes. Threads: CPU ops use
 * dfm_ops_set_threads() workers (default: all cores).
 */
#ifndef DFM_TENSOR_OPS_H
#define DFM_TENSOR_OPS_H
#include "tensor/compute.h"
#include "tensor/tensor.h"

void dfm_ops_set_threads(int n);
int dfm_ops_threads(void);
/* Free the CPU scratch buffers of the calling thread and of the worker pool (conv tiles, converted
 * weight blocks, attention scores; otherwise kept for the next op), the recycled tensor blocks
 * (dfm_tensor_cache_release) and, in CUDA builds, the device scratch (dfm_cuda_release_scratch). */
void dfm_ops_release_scratch(void);

/* y = conv3d(x, w) + b.  x: [Cin, T, H, W] F32; w: [Cout, Cin, kt, kh, kw] F32/BF16/F16;
 * b: [Cout] or NULL; y: [Cout, T', H', W'] F32 with
 *   T' = (T + pad[0] + pad[1] - kt) / stride[0] + 1   (pad = {front, back, top, bottom, left, right})
 * and likewise for H (pad[2], pad[3], stride[1]) and W (pad[4], pad[5], stride[2]). Zero padding.
 * A 2-D conv per frame is kt = 1. ref: torch.nn.functional.conv3d */
int dfm_op_conv3d(const dfm_compute *cc, const dfm_tensor *x, const dfm_tensor *w, const dfm_tensor *b, dfm_tensor *y,
                  const int stride[3], const int pad[6]);

/* Wan RMS norm over channels: y[c, i] = x[c, i] / max(||x[:, i]||_2, 1e-12) * sqrt(C) * gamma[c]
 * (+ bias[c] if bias). x, y: [C, ...] F32 (y may be x); gamma, bias: [C] (any trailing 1-dims).
 * ref: diffusers autoencoder_kl_wan.py WanRMS_norm */
int dfm_op_rms_norm_channels(const dfm_tensor *x, const dfm_tensor *gamma, const dfm_tensor *bias,
                             dfm_tensor *y);

/* Elementwise, y may alias an input. */
int dfm_op_silu(const dfm_tensor *x, dfm_tensor *y);
int dfm_op_add(const dfm_tensor *a, const dfm_tensor *b, dfm_tensor *y);
int dfm_op_clamp(const dfm_tensor *x, float lo, float hi, dfm_tensor *y);
/* y = x * scale + shift (per element, scalars). */
int dfm_op_affine(const dfm_tensor *x, float scale, float shift, dfm_tensor *y);

/* Y = op(A) @ op(B) (+ bias over columns when bias: [N]); A: [M,K] (or [K,M] if ta), B: [K,N]
 * (or [N,K] if tb), Y: [M,N] F32. A and B F32, or B BF16/F16 (weights). beta = 1 adds into Y. */
int dfm_op_matmul(const dfm_compute *cc, const dfm_tensor *a, int ta, const dfm_tensor *b, int tb, const dfm_tensor *bias,
                  float beta, dfm_tensor *y);

/* Scaled dot-product attention, heads and batch items independent (one op, DFM_OP_ATTENTION):
 *   out[b, h, i] = softmax_j(scale * q[b, h, i] . k[b, h, j] + bias[h, i, j]) v[b, h, j]
 * q [B, H, Sq, D] (layout 0, head-major) or [B, S, H, D] (layout 1, token-major: the rows of a
 * linear projection viewed per head), 3-D without B; k, v likewise with Sk; out like q; bias
 * [H, Sq, Sk] F32 or NULL (the same for every batch item); all F32. Softmax in f32 with the row
 * max subtracted, blockwise: the Sq x Sk matrix is never whole (kernels/cpu/attention.h). lse
 * (F32, B * H * Sq elements, or NULL) receives each row's log-sum-exp for the backward.
 * cc: NULL or F32 compute: exact f32 products; BF16 compute (dfm_compute_is_bf16): q, k, v, the
 * softmax weights (and in the backward dout and dS) rounded to bf16 before each product, products
 * summed in f32, softmax and accumulators f32 (torch's SDPA under autocast(bfloat16) on the CPU).
 * ref: torch.nn.functional.scaled_dot_product_attention; transformers T5 eager attention (bias) */
int dfm_op_sdpa(const dfm_compute *cc, const dfm_tensor *q, const dfm_tensor *k, const dfm_tensor *v,
                const dfm_tensor *bias, float scale, int layout, dfm_tensor *out, dfm_tensor *lse);
/* Its backward (FlashAttention-2: scores recomputed from q, k and lse): dq, dk, dv written, with
 * q's, k's and v's shapes; no gradient for the bias. cc as the forward's. */
int dfm_op_sdpa_bwd(const dfm_compute *cc, const dfm_tensor *q, const dfm_tensor *k, const dfm_tensor *v,
                    const dfm_tensor *bias, float scale, int layout, const dfm_tensor *out, const dfm_tensor *lse,
                    const dfm_tensor *dout, dfm_tensor *dq, dfm_tensor *dk, dfm_tensor *dv);
/* Shorthands (f32): head-major without bias; token-major with an optional bias. */
int dfm_op_attention(const dfm_tensor *q, const dfm_tensor *k, const dfm_tensor *v, float scale,
                     dfm_tensor *out);

/* Data movement (any dtype: 1, 2, 4 or 8 bytes per element; exact copies):
 * transpose2d: [R, C] -> [C, R].
 * upsample_nearest2x: [C, T, H, W] -> [C, T, 2H, 2W] (out[y, x] = in[y/2, x/2]).
 * concat: along dimension `dim` (a, b agree elsewhere). */
int dfm_op_transpose2d(const dfm_tensor *x, dfm_tensor *y);
int dfm_op_upsample_nearest2x(const dfm_tensor *x, dfm_tensor *y);
int dfm_op_concat(const dfm_tensor *a, const dfm_tensor *b, int dim, dfm_tensor *y);
/* Copy frames [t0, t0+n) of x [C, T, H, W] into y [C, n, H, W]. */
int dfm_op_frames(const dfm_tensor *x, int64_t t0, int64_t n, dfm_tensor *y);
/* The inverse: write f [C, n, H, W] into frames [t0, t0+n) of y [C, T, H, W]. */
int dfm_op_put_frames(dfm_tensor *y, int64_t t0, const dfm_tensor *f);

/* y[r, :] = x[r, :] + b for every row of x [..., N] (F32; y may be x); b: [N] F32/BF16/F16. */
int dfm_op_bias_add(const dfm_tensor *x, const dfm_tensor *b, dfm_tensor *y);

/* Inverted dropout: y = x * keep / (1 - p), the mask of element i a function of (seed, stream, i)
 * only (Philox; kernels/cpu/dropout.h), the same on every device and thread count. x, y: F32 of
 * one shape (y may be x); p in [0, 1). Its own backward: dx = dropout(dy) with the same seed and
 * stream. ref: torch.nn.functional.dropout (the mask stream differs from torch's) */
int dfm_op_dropout(const dfm_tensor *x, float p, uint64_t seed, uint64_t stream, dfm_tensor *y);

/* ---- the transformer's ops, forward and backward ------------------------------------------------
 * Backwards take the forward's inputs (and saved statistics, or NULL to recompute them) and dy;
 * dx is written (NULL: not wanted; it may be dy where stated), parameter gradients are
 * accumulated (+=, NULL: not wanted). Reductions over rows are in a fixed chunked order
 * (kernels/cpu/reduce.h): the same bits for any thread count. Semantics and roundings:
 * kernels/cpu/{rms_norm,layer_norm,act,rope,modulate,reduce}.h. */

/* dfm_op_rms_norm that also writes each row's 1/sqrt(mean(x^2) + eps) into inv [rows] F32. */
int dfm_op_rms_norm_save(const dfm_tensor *x, const dfm_tensor *w, float eps, dfm_tensor *y, dfm_tensor *inv);
/* dx (may be dy), dw += ; inv NULL recomputes; w NULL: a norm without weight. */
int dfm_op_rms_norm_bwd(const dfm_tensor *dy, const dfm_tensor *x, const dfm_tensor *inv, const dfm_tensor *w,
                        float eps, dfm_tensor *dx, dfm_tensor *dw);
/* Layer norm over the last dimension: y = (x - mean) * rstd (* w + b); w, b: float [D] or NULL;
 * mean, rstd: F32 [rows] outputs or NULL. ref: torch.nn.functional.layer_norm */
int dfm_op_layer_norm(const dfm_tensor *x, const dfm_tensor *w, const dfm_tensor *b, float eps, dfm_tensor *y,
                      dfm_tensor *mean, dfm_tensor *rstd);
int dfm_op_layer_norm_bwd(const dfm_tensor *dy, const dfm_tensor *x, const dfm_tensor *mean, const dfm_tensor *rstd,
                          const dfm_tensor *w, float eps, dfm_tensor *dx, dfm_tensor *dw, dfm_tensor *db);
/* torch F.gelu(approximate="tanh") and its backward; silu's backward. */
int dfm_op_gelu_tanh(const dfm_tensor *x, dfm_tensor *y);
int dfm_op_gelu_tanh_bwd(const dfm_tensor *dy, const dfm_tensor *x, dfm_tensor *dx);
int dfm_op_silu_bwd(const dfm_tensor *dy, const dfm_tensor *x, dfm_tensor *dx);
/* Interleaved-pair rotary embedding: x, y [B, S, H, D] F32 (y may be x), cos, sin [S, D/2]. */
int dfm_op_rope(const dfm_tensor *x, const dfm_tensor *cos, const dfm_tensor *sin, dfm_tensor *y);
int dfm_op_rope_bwd(const dfm_tensor *dy, const dfm_tensor *cos, const dfm_tensor *sin, dfm_tensor *dx);
/* Modulation with chunks of e [B, K, D] (Wan's [B, 6, D] time projection plus scale_shift_table):
 * y[b, s] = x[b, s] * (1 + e[b, scale_chunk]) + e[b, shift_chunk]; x, y [B, S, D] (y may be x).
 * The backward writes dx (may be dy) and accumulates both chunks of de [B, K, D]. */
int dfm_op_modulate(const dfm_tensor *x, const dfm_tensor *e, int scale_chunk, int shift_chunk, dfm_tensor *y);
int dfm_op_modulate_bwd(const dfm_tensor *dy, const dfm_tensor *x, const dfm_tensor *e, int scale_chunk,
                        int shift_chunk, dfm_tensor *dx, dfm_tensor *de);
/* y = x + a * e[b, gate_chunk] (y may be x or a); backward: da = dy * gate (may alias), de += . */
int dfm_op_gate_residual(const dfm_tensor *x, const dfm_tensor *a, const dfm_tensor *e, int gate_chunk, dfm_tensor *y);
int dfm_op_gate_residual_bwd(const dfm_tensor *dy, const dfm_tensor *a, const dfm_tensor *e, int gate_chunk,
                             dfm_tensor *da, dfm_tensor *de);
/* out[n] += sum_m x[m, n] (the bias gradient), x [M, N] F32, out [N] F32. */
int dfm_op_colsum(const dfm_tensor *x, dfm_tensor *out);

/* Video latents x [B, C, F, H, W] to patch rows [B * N, C * pt * ph * pw] and back (exact
 * permutations; each the other's backward). order 0: channel-major columns (a Conv3d weight's
 * flattening: the patch embedding as a GEMM); order 1: position-major (Wan's proj_out channels).
 * kernels/cpu/patch.h has the index formulas. */
int dfm_op_patchify(const dfm_tensor *x, const int patch[3], int order, dfm_tensor *rows);
int dfm_op_unpatchify(const dfm_tensor *rows, const int patch[3], int order, dfm_tensor *x);

/* ---- packed weights: GEMM weights laid out once (lib/nn/linear.h builds layers on them) -------
 * A dfm_packed holds up to DFM_PACKED_MAX weights W_i [n_i, k] (row-major out x in, as
 * torch.nn.Linear stores them) sharing k, laid out for the device's GEMM: on the CPU packed into
 * 16-column panels (kernels/cpu/linear.h: ~1.3x OpenBLAS on a text encoder's shapes, no per-call
 * re-packing), on CUDA kept [n, k] for cuBLAS. Several weights in one dfm_packed share one pass
 * over x (q, k, v of attention; the two gate projections of a gated MLP). */
#define DFM_PACKED_MAX 4
typedef struct dfm_packed dfm_packed;

/* Lay out w[0..nw-1] (CPU tensors [n_i, k] of F32/BF16/F16) on dev, stored as dt (F32, or BF16
 * rounded to nearest even). The sources are not needed afterwards. */
int dfm_packed_create(dfm_packed **out, const dfm_tensor *const *w, int nw, dfm_dtype dt, dfm_device dev);
void dfm_packed_free(dfm_packed *l);
/* Bytes of weight storage it holds. */
size_t dfm_packed_nbytes(const dfm_packed *l);

/* y[i] = x W_i^T (accumulate: y[i] += x W_i^T) for every weight. x: [m, k] F32; y[i]: [m, n_i]
 * F32; all on the linear's device; no y may overlap x. f32 accumulation; under a BF16
 * context x is rounded to bf16 first (store the weights as BF16 for a bf16
 * run). ref: torch.nn.functional.linear (no bias) */
int dfm_op_linear(const dfm_compute *cc, const dfm_tensor *x, const dfm_packed *l, dfm_tensor *const *y, int accumulate);
/* As dfm_op_linear, plus bias[i] ([n_i] F32 on the linear's device, or NULL) added to y[i] as each
 * output tile is stored (y[i] = x W_i^T + b_i, or y[i] += x W_i^T + b_i): the same bits as
 * dfm_op_bias_add afterwards, without its pass over y. bias may be NULL (no bias at all). */
int dfm_op_linear_bias(const dfm_compute *cc, const dfm_tensor *x, const dfm_packed *l, dfm_tensor *const *y,
                       const dfm_tensor *const *bias, int accumulate);

/* ---- text encoders (UMT5 now; the Wan transformer and T5 reuse them) ----------------------- */

/* Row gather: out[i, :] = table[ids[i], :] as f32. table: [V, D] F32/BF16/F16 (any device);
 * ids: [n] I32 on the CPU (a host index vector, every value checked to be in [0, V): an id
 * outside is DFM_E_ARG naming it and its position); out: [n, D] F32 on table's device.
 * ref: torch.nn.Embedding */
int dfm_op_embedding(const dfm_tensor *table, const dfm_tensor *ids, dfm_tensor *out);

/* Relative position bias: out[h, i, j] = table[buckets[j - i + Sq - 1], h] as f32.
 * table: [NB, H] F32/BF16/F16; buckets: [Sq + Sk - 1] I32 on the CPU, the bucket of each
 * relative position j - i = 1 - Sq .. Sk - 1 (checked to be in [0, NB)); out: [H, Sq, Sk] F32 on
 * table's device. ref: transformers UMT5Attention.compute_bias */
int dfm_op_rel_bias(const dfm_tensor *table, const dfm_tensor *buckets, dfm_tensor *out);

/* RMS norm over the last dimension in T5's order: per row, var = mean(x^2) (f32),
 * y = w * (x * (1 / sqrt(var + eps))). x, y: [..., D] F32 (y may be x); w: [D] F32/BF16/F16.
 * ref: transformers T5LayerNorm / UMT5LayerNorm (fp32) */
int dfm_op_rms_norm(const dfm_tensor *x, const dfm_tensor *w, float eps, dfm_tensor *y);

/* Elementwise F32, y may alias an input. gelu_new: 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3)))
 * rounded op by op as transformers' NewGELUActivation (tanh correctly rounded; torch's is within
 * 1 ulp, so results are equal but for rare 1-ulp-of-tanh differences); not
 * torch's fused F.gelu(approximate="tanh"). mul: y = a * b. */
int dfm_op_gelu_new(const dfm_tensor *x, dfm_tensor *y);
int dfm_op_mul(const dfm_tensor *a, const dfm_tensor *b, dfm_tensor *y);

int dfm_op_attention_bias(const dfm_tensor *q, const dfm_tensor *k, const dfm_tensor *v,
                          const dfm_tensor *bias, float scale, dfm_tensor *out);

#endif
