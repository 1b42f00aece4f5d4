// attention.cu — scaled dot-product attention on the device, forward and backward (attention.h):
// the twin of kernels/cpu/attention.c, with cuBLAS strided-batched GEMMs over a group of heads on
// blocks, and our kernels for the row softmax and the elementwise steps. 64-bit indices
// throughout; the bias is read in place (never copied). ref: torch SDPA; FlashAttention-2.
//
// Forward, per batch item, group of hb heads and block of bq query rows (scratch A holds
// hb * bq * Sk scores, about DFM_CUDA_BLOCK_BYTES):
//     S [hb, bq, Sk] = scale * Q_blk @ K^T          (GEMM over the group's heads)
//     S = softmax(S + bias) row by row, lse         (one thread block per row, f32, max-subtracted)
//     O_blk = S @ V                                 (GEMM writing out's strided rows in place)
// The CPU runs a running softmax over key blocks to stay in its caches; here a block of whole key
// rows fits the scratch, so the softmax is exact in one pass: same result, not the same rounding.
// Backward, per batch item, group of heads, block of keys j, block of queries i (in that order):
//     P = exp(scale Q_i K_j^T + bias - lse), dP = dO_i V_j^T,
//     dS = P * (dP - D_i) with D_i = sum_j P dP of these same blocks (double; a first pass over the
//     key blocks when there are several), dV_j += P^T dO_i, dQ_i += scale dS K_j, dK_j += scale dS^T Q_i
// each sum a GEMM with beta 1 into dq, dk, dv in place: no atomics, a fixed order.
// bf16 (args.bf16, kernels/cpu/attention.h): q, k, v and dout blocks are rounded to bf16 (kept as
// f32) into scratch before their GEMMs, P and dS in place before theirs (P after D and dS took
// its f32 values); the GEMMs stay f32 on the rounded values. The forward rounds the normalized
// P where the CPU rounds exp(s - running max): the same numerics up to that rounding's place.
#include "cuda/common.cuh"
#include "cuda/attention.h"
#include "cuda/ops_cuda.h"

#include <cuda_bf16.h>
#include <math.h>

// ---------------------------------------------------------------------------------------------
// CUDA kernels

#define SOFTMAX_THREADS 256

// Max (is_max) or sum of v over the block; every thread gets the result. red: 32 floats of shared
// memory; blockDim.x a multiple of 32.
__device__ float block_reduce(float v, int is_max, float *red)
{
    for (int o = 16; o > 0; o >>= 1) {
        float u = __shfl_xor_sync(0xffffffffu, v, o);
        v = is_max ? fmaxf(v, u) : v + u;
    }
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads(); // red may still be read from the previous reduction
    if (lane == 0) red[wid] = v;
    __syncthreads();
    v = lane < nw ? red[lane] : (is_max ? -INFINITY : 0.0f);
    for (int o = 16; o > 0; o >>= 1) {
        float u = __shfl_xor_sync(0xffffffffu, v, o);
        v = is_max ? fmaxf(v, u) : v + u;
    }
    return v;
}

// s[r, :] = softmax(s[r, :]) for r < rows, rows of length len; one block per row.
__global__ void softmax_rows_kernel(float *s, int64_t rows, int64_t len)
{
    __shared__ float red[32];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        float *row = s + r * len;
        float m = -INFINITY;
        for (int64_t j = threadIdx.x; j < len; j += blockDim.x) m = fmaxf(m, row[j]);
        m = block_reduce(m, 1, red);
        if (m == -INFINITY) { // every key masked out: NaN, as torch's softmax
            for (int64_t j = threadIdx.x; j < len; j += blockDim.x) row[j] = NAN;
            continue;
        }
        float sum = 0.0f;
        for (int64_t j = threadIdx.x; j < len; j += blockDim.x) {
            float e = expf(row[j] - m);
            row[j] = e;
            sum += e;
        }
        sum = block_reduce(sum, 0, red);
        float inv = 1.0f / sum;
        for (int64_t j = threadIdx.x; j < len; j += blockDim.x) row[j] *= inv;
    }
}

// Forward softmax of a block: s [rows = nh * nq, sk] holds scale * q.k of heads h0.. and query
// rows q0..; adds bias[h0 + hh, q0 + i, :] (when not NULL), normalizes, and writes
// lse[hh * sq + q0 + i] (lse points at the group's first head; may be NULL).
__global__ void fwd_softmax_kernel(float *s, int64_t rows, int64_t nq, int64_t sk, const float *bias,
                                   int64_t sq, int64_t h0, int64_t q0, float *lse)
{
    __shared__ float red[32];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        int64_t hh = r / nq, i = r - hh * nq;
        float *row = s + r * sk;
        const float *brow = bias ? bias + ((h0 + hh) * sq + q0 + i) * sk : NULL;
        float m = -INFINITY;
        for (int64_t j = threadIdx.x; j < sk; j += blockDim.x) {
            float x = brow ? row[j] + brow[j] : row[j];
            row[j] = x;
            m = fmaxf(m, x);
        }
        m = block_reduce(m, 1, red);
        if (m == -INFINITY) { // every score -inf: NaN, as torch's softmax
            for (int64_t j = threadIdx.x; j < sk; j += blockDim.x) row[j] = NAN;
            if (lse && threadIdx.x == 0) lse[hh * sq + q0 + i] = -INFINITY;
            continue;
        }
        float sum = 0.0f;
        for (int64_t j = threadIdx.x; j < sk; j += blockDim.x) {
            float e = expf(row[j] - m);
            row[j] = e;
            sum += e;
        }
        sum = block_reduce(sum, 0, red);
        float inv = 1.0f / sum;
        for (int64_t j = threadIdx.x; j < sk; j += blockDim.x) row[j] *= inv;
        if (lse && threadIdx.x == 0) lse[hh * sq + q0 + i] = m + logf(sum);
    }
}

// Backward: s [nh, nq, nk] = exp(s + bias - lse) for heads h0.., query rows q0.., keys j0..; lse
// points at the group's first head.
__global__ void bwd_p_kernel(float *s, int64_t n, int64_t nq, int64_t nk, const float *bias, int64_t sq,
                             int64_t sk, int64_t h0, int64_t q0, int64_t j0, const float *lse)
{
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = e / nk, c = e - r * nk, hh = r / nq, i = r - hh * nq;
        float x = s[e];
        if (bias) x += bias[((h0 + hh) * sq + q0 + i) * sk + j0 + c];
        s[e] = expf(x - lse[hh * sq + q0 + i]);
    }
}

// Backward: dp = p * (dp - D[row]) over [nh, nq, nk]; dd points at the group's first head.
__global__ void bwd_ds_kernel(const float *p, float *dp, int64_t n, int64_t nq, int64_t nk, const double *dd,
                              int64_t sq, int64_t q0)
{
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = e / nk, hh = r / nq, i = r - hh * nq;
        dp[e] = p[e] * (dp[e] - (float)dd[hh * sq + q0 + i]);
    }
}

// D_i = sum_j P dP over the [nh, nq, nk] rows of this key block, in double, added into (acc) or
// written to dd[hh * sq + q0 + i]: one warp per row, lane-strided sums, then a fixed butterfly.
// D from the very P and dP of the backward (torch's softmax backward), not rowsum(dO * O): where
// sum_j dS nearly cancels (many equal keys) the latter is not consistent enough (kernels/cpu/attention.c).
__global__ void rowsum_pdp_kernel(const float *p, const float *dp, int64_t nq, int64_t nk, int64_t rows,
                                  double *dd, int64_t sq, int64_t q0, int acc)
{
    int lane = threadIdx.x & 31;
    int64_t warps = (int64_t)gridDim.x * (blockDim.x >> 5);
    for (int64_t r = blockIdx.x * (int64_t)(blockDim.x >> 5) + (threadIdx.x >> 5); r < rows; r += warps) {
        int64_t hh = r / nq, i = r - hh * nq;
        const float *pr = p + r * nk, *dr = dp + r * nk;
        double t = 0.0;
        for (int64_t e = lane; e < nk; e += 32) t += (double)pr[e] * (double)dr[e];
        for (int o = 16; o > 0; o >>= 1) t += __shfl_xor_sync(0xffffffffu, t, o);
        if (lane == 0) dd[hh * sq + q0 + i] = acc ? dd[hh * sq + q0 + i] + t : t;
    }
}

__device__ __forceinline__ float round_bf16(float x) { return __bfloat162float(__float2bfloat16_rn(x)); }

// p[0..n) rounded to bf16 in place
__global__ void round_kernel(float *p, int64_t n)
{
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x)
        p[e] = round_bf16(p[e]);
}

// dst [nh, rows, d] (dense) = src's [nh, rows, d] block (head stride s1, row stride s2) rounded to bf16
__global__ void round_rows_kernel(float *dst, const float *src, int64_t s1, int64_t s2, int64_t rows, int64_t d,
                                  int64_t n)
{
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
        int64_t c = e % d, r = e / d, i = r % rows, hh = r / rows;
        dst[e] = round_bf16(src[hh * s1 + i * s2 + c]);
    }
}

// x over the rows of a strided [batch, heads, rows, d] operand.
__global__ void fill_rows_kernel(float *p, int64_t s0, int64_t s1, int64_t s2, int64_t heads, int64_t rows,
                                 int64_t d, int64_t n, float x)
{
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
        int64_t c = e % d, r = e / d, i = r % rows, bh = r / rows, h = bh % heads, b = bh / heads;
        p[b * s0 + h * s1 + i * s2 + c] = x;
    }
}

// ---------------------------------------------------------------------------------------------
// kernel launchers

static unsigned row_blocks(int64_t rows) { return (unsigned)(rows < (1 << 20) ? rows : (1 << 20)); }

int dfm_cuda_softmax_rows(float *s, int64_t rows, int64_t len)
{
    if (rows <= 0) return 0;
    softmax_rows_kernel<<<row_blocks(rows), SOFTMAX_THREADS>>>(s, rows, len);
    CUDA_CHECK_LAUNCH();
    return 0;
}

static int fill_rows(float *p, const int64_t st[3], int64_t batch, int64_t heads, int64_t rows, int64_t d, float x)
{
    int64_t n = batch * heads * rows * d;
    if (n <= 0) return 0;
    fill_rows_kernel<<<dfm_cuda_blocks(n), DFM_CUDA_THREADS>>>(p, st[0], st[1], st[2], heads, rows, d, n, x);
    CUDA_CHECK_LAUNCH();
    return 0;
}

// A GEMM leading dimension: the row stride, or d where a single row makes it meaningless.
static int64_t ldim(int64_t stride, int64_t d) { return stride < d ? d : stride; }

static int round_inplace(float *p, int64_t n)
{
    if (n <= 0) return 0;
    round_kernel<<<dfm_cuda_blocks(n), DFM_CUDA_THREADS>>>(p, n);
    CUDA_CHECK_LAUNCH();
    return 0;
}

// A GEMM operand block of nh heads x rows x d: the input in place (ld its row stride, sh its head
// stride) or, under bf16, its rounded dense copy in buf.
typedef struct {
    const float *p;
    int64_t ld, sh;
} operand;

static int operand_block(operand *o, const float *src, int64_t s1, int64_t s2, int64_t nh, int64_t rows, int64_t d,
                         int bf16, float *buf)
{
    if (!bf16) {
        o->p = src, o->ld = ldim(s2, d), o->sh = s1;
        return 0;
    }
    int64_t n = nh * rows * d;
    if (n > 0) {
        round_rows_kernel<<<dfm_cuda_blocks(n), DFM_CUDA_THREADS>>>(buf, src, s1, s2, rows, d, n);
        CUDA_CHECK_LAUNCH();
    }
    o->p = buf, o->ld = d, o->sh = rows * d;
    return 0;
}

static int64_t clamp64(int64_t x, int64_t lo, int64_t hi) { return x < lo ? lo : x > hi ? hi : x; }

extern "C" int dfm_cuda_attention_fwd(const dfm_attn_args *a)
{
    DFM_CHECK_RC(dfm_attn_check(a, "attention"));
    int64_t batch = a->batch, heads = a->heads, sq = a->sq, sk = a->sk, d = a->d;
    if (batch * heads == 0 || sq == 0) return 0;
    if (sk == 0) { // softmax over nothing: NaN as torch, lse -inf
        DFM_CHECK_RC(fill_rows(a->out, a->os, batch, heads, sq, d, NAN));
        const int64_t ls[3] = {heads * sq, sq, 1};
        if (a->lse) DFM_CHECK_RC(fill_rows(a->lse, ls, batch, heads, sq, 1, -INFINITY));
        return 0;
    }
    // as many queries as the budget holds, then as many heads
    int64_t budget = (int64_t)(DFM_CUDA_BLOCK_BYTES / sizeof(float));
    int64_t bq = clamp64(budget / sk, 1, sq), hb = clamp64(budget / (bq * sk), 1, heads);
    // scores, then under bf16 the rounded q block, k and v of the group
    int bf = a->bf16 != 0;
    size_t ns = (size_t)(hb * bq * sk), nqr = bf ? (size_t)(hb * bq * d) : 0, nkr = bf ? (size_t)(hb * sk * d) : 0;
    float *s;
    DFM_CHECK_RC(dfm_cuda_scratch(DFM_SCRATCH_A, (ns + nqr + 2 * nkr) * sizeof(float), (void **)&s));
    float *qbuf = s + ns, *kbuf = qbuf + nqr, *vbuf = kbuf + nkr;
    int64_t ldo = ldim(a->os[2], d);
    for (int64_t b = 0; b < batch; b++)
        for (int64_t h0 = 0; h0 < heads; h0 += hb) {
            int64_t nh = heads - h0 < hb ? heads - h0 : hb;
            operand K, V;
            DFM_CHECK_RC(operand_block(&K, a->k + b * a->ks[0] + h0 * a->ks[1], a->ks[1], a->ks[2], nh, sk, d, bf, kbuf));
            DFM_CHECK_RC(operand_block(&V, a->v + b * a->vs[0] + h0 * a->vs[1], a->vs[1], a->vs[2], nh, sk, d, bf, vbuf));
            float *lse = a->lse ? a->lse + (b * heads + h0) * sq : NULL;
            for (int64_t q0 = 0; q0 < sq; q0 += bq) {
                int64_t nq = sq - q0 < bq ? sq - q0 : bq;
                operand Q;
                DFM_CHECK_RC(operand_block(&Q, a->q + b * a->qs[0] + h0 * a->qs[1] + q0 * a->qs[2], a->qs[1], a->qs[2], nh,
                                           nq, d, bf, qbuf));
                float *ob = a->out + b * a->os[0] + h0 * a->os[1] + q0 * a->os[2];
                // S [nq, sk] = scale * Q_blk [nq, d] @ K^T, per head
                DFM_CHECK_RC(dfm_cuda_gemm_rm(0, 1, nq, sk, d, a->scale, Q.p, Q.ld, Q.sh, K.p, K.ld, K.sh, DFM_F32, 0.0f,
                                              s, sk, nq * sk, nh));
                int64_t rows = nh * nq;
                fwd_softmax_kernel<<<row_blocks(rows), SOFTMAX_THREADS>>>(s, rows, nq, sk, a->bias, sq, h0, q0, lse);
                CUDA_CHECK_LAUNCH();
                if (bf) DFM_CHECK_RC(round_inplace(s, rows * sk));
                // O_blk [nq, d] = P [nq, sk] @ V [sk, d], per head, into out's strided rows
                DFM_CHECK_RC(dfm_cuda_gemm_rm(0, 0, nq, d, sk, 1.0f, s, sk, nq * sk, V.p, V.ld, V.sh, DFM_F32, 0.0f, ob,
                                              ldo, a->os[1], nh));
            }
        }
    return 0;
}

extern "C" int dfm_cuda_attention_bwd(const dfm_attn_args *a, const float *dout, float *dq, float *dk, float *dv)
{
    DFM_CHECK_RC(dfm_attn_check_bwd(a, dout, dq, dk, dv, "attention backward"));
    int64_t batch = a->batch, heads = a->heads, sq = a->sq, sk = a->sk, d = a->d;
    if (batch * heads == 0) return 0;
    DFM_CHECK_RC(fill_rows(dq, a->qs, batch, heads, sq, d, 0.0f));
    DFM_CHECK_RC(fill_rows(dk, a->ks, batch, heads, sk, d, 0.0f));
    DFM_CHECK_RC(fill_rows(dv, a->vs, batch, heads, sk, d, 0.0f));
    if (sq == 0 || sk == 0) return 0;
    // blocks of up to 1024 queries and as many keys, then heads, as two score buffers within the
    // budget hold; D (double, scratch B) from the blocks' own P and dP: with one key block, in the
    // main loop; with several, in a first pass over the blocks (in a fixed order)
    int64_t nrows = batch * heads * sq;
    double *dd;
    DFM_CHECK_RC(dfm_cuda_scratch(DFM_SCRATCH_B, (size_t)nrows * sizeof(double), (void **)&dd));
    int64_t warps_per_block = DFM_CUDA_THREADS / 32;
    int64_t budget = (int64_t)(DFM_CUDA_BLOCK_BYTES / sizeof(float)) / 2;
    int64_t bq = clamp64(sq, 1, 1024), bk = clamp64(budget / bq, 1, sk), hb = clamp64(budget / (bq * bk), 1, heads);
    int one_block = bk >= sk;
    // P and dP, then under bf16 the rounded q, dout blocks and k, v blocks of the group
    int bf = a->bf16 != 0;
    size_t np = (size_t)(hb * bq * bk), nqr = bf ? (size_t)(hb * bq * d) : 0, nkr = bf ? (size_t)(hb * bk * d) : 0;
    float *p;
    DFM_CHECK_RC(dfm_cuda_scratch(DFM_SCRATCH_A, (2 * np + 2 * nqr + 2 * nkr) * sizeof(float), (void **)&p));
    float *dp = p + np, *qbuf = dp + np, *obuf = qbuf + nqr, *kbuf = obuf + nqr, *vbuf = kbuf + nkr;
    int64_t ldq = ldim(a->qs[2], d), ldk = ldim(a->ks[2], d), ldv = ldim(a->vs[2], d);
    for (int64_t b = 0; b < batch; b++)
        for (int64_t h0 = 0; h0 < heads; h0 += hb) {
            int64_t nh = heads - h0 < hb ? heads - h0 : hb;
            int64_t qo = b * a->qs[0] + h0 * a->qs[1], ko = b * a->ks[0] + h0 * a->ks[1];
            int64_t vo = b * a->vs[0] + h0 * a->vs[1], oo = b * a->os[0] + h0 * a->os[1];
            const float *lse = a->lse + (b * heads + h0) * sq;
            double *ddh = dd + (b * heads + h0) * sq;
            for (int pass = one_block; pass < 2; pass++) // pass 0: D over several key blocks; pass 1: the gradients
                for (int64_t j0 = 0; j0 < sk; j0 += bk) {
                    int64_t nk = sk - j0 < bk ? sk - j0 : bk;
                    operand K, V;
                    DFM_CHECK_RC(operand_block(&K, a->k + ko + j0 * a->ks[2], a->ks[1], a->ks[2], nh, nk, d, bf, kbuf));
                    DFM_CHECK_RC(operand_block(&V, a->v + vo + j0 * a->vs[2], a->vs[1], a->vs[2], nh, nk, d, bf, vbuf));
                    float *dkj = dk + ko + j0 * a->ks[2], *dvj = dv + vo + j0 * a->vs[2];
                    for (int64_t q0 = 0; q0 < sq; q0 += bq) {
                        int64_t nq = sq - q0 < bq ? sq - q0 : bq, n = nh * nq * nk, rows = nh * nq;
                        operand Q, O;
                        DFM_CHECK_RC(operand_block(&Q, a->q + qo + q0 * a->qs[2], a->qs[1], a->qs[2], nh, nq, d, bf, qbuf));
                        DFM_CHECK_RC(operand_block(&O, dout + oo + q0 * a->os[2], a->os[1], a->os[2], nh, nq, d, bf, obuf));
                        float *dqi = dq + qo + q0 * a->qs[2];
                        // P = exp(scale Q_i K_j^T + bias - lse); dP = dO_i V_j^T
                        DFM_CHECK_RC(dfm_cuda_gemm_rm(0, 1, nq, nk, d, a->scale, Q.p, Q.ld, Q.sh, K.p, K.ld, K.sh, DFM_F32,
                                                      0.0f, p, nk, nq * nk, nh));
                        bwd_p_kernel<<<dfm_cuda_blocks(n), DFM_CUDA_THREADS>>>(p, n, nq, nk, a->bias, sq, sk, h0, q0, j0,
                                                                              lse);
                        CUDA_CHECK_LAUNCH();
                        DFM_CHECK_RC(dfm_cuda_gemm_rm(0, 1, nq, nk, d, 1.0f, O.p, O.ld, O.sh, V.p, V.ld, V.sh, DFM_F32,
                                                      0.0f, dp, nk, nq * nk, nh));
                        if (pass == 0 || one_block) {
                            rowsum_pdp_kernel<<<(unsigned)clamp64((rows + warps_per_block - 1) / warps_per_block, 1, 1 << 20),
                                                DFM_CUDA_THREADS>>>(p, dp, nq, nk, rows, ddh, sq, q0, pass == 0 && j0 > 0);
                            CUDA_CHECK_LAUNCH();
                        }
                        if (pass == 0) continue;
                        // dS = P * (dP - D_i)
                        bwd_ds_kernel<<<dfm_cuda_blocks(n), DFM_CUDA_THREADS>>>(p, dp, n, nq, nk, ddh, sq, q0);
                        CUDA_CHECK_LAUNCH();
                        if (bf) DFM_CHECK_RC(round_inplace(p, n));
                        if (bf) DFM_CHECK_RC(round_inplace(dp, n));
                        // dV_j += P^T dO_i; dQ_i += scale dS K_j; dK_j += scale dS^T Q_i
                        DFM_CHECK_RC(dfm_cuda_gemm_rm(1, 0, nk, d, nq, 1.0f, p, nk, nq * nk, O.p, O.ld, O.sh, DFM_F32,
                                                      1.0f, dvj, ldv, a->vs[1], nh));
                        DFM_CHECK_RC(dfm_cuda_gemm_rm(0, 0, nq, d, nk, a->scale, dp, nk, nq * nk, K.p, K.ld, K.sh, DFM_F32,
                                                      1.0f, dqi, ldq, a->qs[1], nh));
                        DFM_CHECK_RC(dfm_cuda_gemm_rm(1, 0, nk, d, nq, a->scale, dp, nk, nq * nk, Q.p, Q.ld, Q.sh, DFM_F32,
                                                      1.0f, dkj, ldk, a->ks[1], nh));
                    }
                }
        }
    return 0;
}

// ---------------------------------------------------------------------------------------------
// the earlier entry points (ops_cuda.h), thin wrappers over dfm_cuda_attention_fwd

extern "C" int dfm_cuda_attention(const float *q, const float *k, const float *v, float scale, float *out,
                                  int64_t heads, int64_t sq, int64_t sk, int64_t d)
{
    if (heads <= 0 || sq <= 0 || d <= 0) return 0;
    if (sk < 0) sk = 0;
    dfm_attn_args a = {};
    a.batch = 1, a.heads = heads, a.sq = sq, a.sk = sk, a.d = d, a.q = q, a.k = k, a.v = v, a.out = out;
    a.qs[0] = a.os[0] = heads * sq * d, a.qs[1] = a.os[1] = sq * d, a.qs[2] = a.os[2] = d;
    a.ks[0] = a.vs[0] = heads * sk * d, a.ks[1] = a.vs[1] = sk * d, a.ks[2] = a.vs[2] = d;
    a.scale = scale;
    return dfm_cuda_attention_fwd(&a);
}

extern "C" int dfm_cuda_attention_bias(const float *q, const float *k, const float *v, const float *bias,
                                       float scale, float *out, int64_t heads, int64_t sq, int64_t sk, int64_t d)
{
    if (heads <= 0 || sq <= 0 || d <= 0) return 0;
    if (sk < 0) sk = 0;
    dfm_attn_args a = {};
    a.batch = 1, a.heads = heads, a.sq = sq, a.sk = sk, a.d = d, a.q = q, a.k = k, a.v = v, a.out = out;
    a.qs[0] = a.os[0] = sq * heads * d, a.qs[1] = a.os[1] = d, a.qs[2] = a.os[2] = heads * d;
    a.ks[0] = a.vs[0] = sk * heads * d, a.ks[1] = a.vs[1] = d, a.ks[2] = a.vs[2] = heads * d;
    a.bias = bias, a.scale = scale;
    return dfm_cuda_attention_fwd(&a);
}
