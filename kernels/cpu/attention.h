/* attention.h — scaled dot-product attention on the CPU, forward and backward: one strided kernel
 * for every layout (head-major [B, H, S, D] as the VAE and the transformer use, token-major
 * [B, S, H, D] as linear projections produce), an optional additive score bias (UMT5's relative
 * position bias) and the log-sum-exp the backward needs. Twin of kernels/cuda/attention.h.
 *
 * For batch item b, head h, query row i (all f32):
 *   s[j]       = scale * (q[b,h,i] . k[b,h,j]) + bias[h,i,j]
 *   out[b,h,i] = sum_j softmax(s)[j] v[b,h,j]     (softmax in f32, the row max subtracted)
 *   lse[b,h,i] = log(sum_j exp(s[j]))
 * A row whose scores are all -inf, or sk = 0, gives NaN (as torch) and lse = -inf.
 *
 * Memory: the sq x sk matrix is never whole. The forward runs, per block of query rows, over
 * blocks of keys with a running softmax; the backward (FlashAttention-2) recomputes the scores of
 * one (query block, key block) pair at a time from q, k and lse. Each thread holds a few hundred
 * KiB of scratch. Deterministic: the same inputs give bit-identical results whatever the thread
 * count (every output element is computed by one thread in a fixed order).
 * bf16 (args.bf16): the operands of every product are rounded to bf16 (to nearest, ties to even)
 * and the products summed in f32, as torch's CPU flash attention under autocast(bfloat16): q, k,
 * v, dout and the softmax weights P = exp(s - max) and dS = P (dP - D) enter the GEMMs rounded;
 * the scores, the softmax, its running max and sum, D and every accumulator stay f32. On a CPU
 * with AVX512_BF16 the GEMMs run on VDPBF16PS, elsewhere on sgemm over rounded copies (the same
 * numbers up to the f32 summation order).
 * Not here: masks other than the bias, dropout, the bias's gradient.
 * ref: torch.nn.functional.scaled_dot_product_attention; transformers T5/UMT5
 * eager_attention_forward (the bias); FlashAttention-2 (Dao 2023) Algorithms 1 and 2.
 */
#ifndef DFM_KERNELS_CPU_ATTENTION_H
#define DFM_KERNELS_CPU_ATTENTION_H
#include <stdint.h>

/* One attention call. Operands are described by element strides of their [batch, head, row]
 * dimensions; d is contiguous in every operand. Head-major q [B, H, S, D]: qs = {H*S*D, S*D, D};
 * token-major q [B, S, H, D]: qs = {S*H*D, D, H*D}. A row stride must be >= d where an operand has
 * more than one row; strides are >= 0. out must not overlap q, k, v, bias or lse. */
typedef struct {
    int64_t batch, heads, sq, sk, d; /* d >= 1 */
    const float *q, *k, *v;          /* q [batch, heads, sq, d], k and v [batch, heads, sk, d] (strided) */
    float *out;                      /* [batch, heads, sq, d] (strided): written by the forward, read by the backward */
    int64_t qs[3], ks[3], vs[3], os[3]; /* element strides of [batch, head, row] for q, k, v, out */
    const float *bias; /* NULL or [heads, sq, sk] contiguous, added to the scaled scores (every batch item) */
    float scale;
    float *lse; /* NULL or [batch, heads, sq] contiguous: written by the forward, read by the backward */
    int bf16;   /* 0: exact f32 products; 1: q, k, v, dout, P and dS rounded to bf16 before each product
                   (scores, softmax, max, sum, D and accumulators f32; see above) */
} dfm_attn_args;

/* Check a's sizes, pointers and strides (op names the caller in the message); _bwd also the
 * backward's operands (below). 0, DFM_E_ARG or DFM_E_LIMIT (a stride past cblas's int). Shared by
 * the CUDA twin. */
int dfm_attn_check(const dfm_attn_args *a, const char *op);
int dfm_attn_check_bwd(const dfm_attn_args *a, const float *dout, const float *dq, const float *dk,
                       const float *dv, const char *op);

/* Forward: writes a->out and, when a->lse is not NULL, a->lse. Returns 0, DFM_E_ARG, DFM_E_LIMIT or DFM_E_NOMEM. */
int dfm_cpu_attention_fwd(const dfm_attn_args *a);

/* Backward. a is the forward's call (q, k, v, bias, scale, the out it wrote and its lse, which must
 * not be NULL); dout has out's strides (os), dq, dk, dv have q's, k's and v's strides and are
 * written, not accumulated (dq = 0 when sk = 0). No gradient for the bias. dq, dk, dv must not
 * overlap each other or the inputs, and their strides must not map two elements to one (no zero
 * head stride). Returns 0, DFM_E_ARG or DFM_E_NOMEM. */
int dfm_cpu_attention_bwd(const dfm_attn_args *a, const float *dout, float *dq, float *dk, float *dv);

/* The earlier entry points (lib/tensor/ops.c), thin wrappers over dfm_cpu_attention_fwd:
 * head-major q [heads, sq, d], k, v [heads, sk, d], out [heads, sq, d], no bias; */
int dfm_cpu_attention(const float *q, const float *k, const float *v, float scale, float *out,
                      int64_t heads, int64_t sq, int64_t sk, int64_t d);
/* token-major q [sq, heads, d], k, v [sk, heads, d], out [sq, heads, d], bias [heads, sq, sk] or NULL. */
int dfm_cpu_attention_bias(const float *q, const float *k, const float *v, const float *bias, float scale,
                           float *out, int64_t heads, int64_t sq, int64_t sk, int64_t d);

#endif
