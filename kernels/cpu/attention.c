/* attention.c — blocked attention, forward and backward (attention.h), on OpenBLAS sgemm calls over
 * blocks and a vectorized exp (AVX2 when available, libm's expf otherwise).
 *
 * Forward, one work unit per (batch, head, block of FWD_QB query rows), units spread over the
 * threads: for each block of FWD_KB keys, S = scale Q_i K_j^T (+ bias block, as the GEMM's C with
 * beta 1), the running softmax (row max m, row sum l, the accumulator rescaled by exp(m_old - m)),
 * O_acc += exp(S - m) V_j; at the end out = O_acc / l, lse = m + log l.
 * Backward, one work unit per (batch, head), so that dK and dV are summed by one thread in a fixed
 * block order; for each block of query rows i (P and dP of the block over all keys held: at most
 * BWD_FLOATS floats each, never the S x S matrix): P = exp(S - lse), dP = dO_i V^T,
 * D_i = sum_j P dP (in double, from these same P and dP: torch's softmax backward; FlashAttention-2's
 * D_i = rowsum(dO_i * O_i) is the same in exact arithmetic but not consistent with the recomputed P,
 * and where sum_j dS_ij nearly cancels — many equal keys, as the zero-padded text rows of
 * cross-attention — that inconsistency grew the key-bias gradients' error 2.5x past torch's f32),
 * dS = P * (dP - D_i), dV += P^T dO_i, dQ_i = scale dS K, dK += scale dS^T Q_i.
 * Every GEMM runs on one OpenBLAS thread (our threads split the units; OpenBLAS's own threads
 * would serialize on its level-3 lock), so a unit's result does not depend on the thread count.
 * bf16 (attention.h): with AVX512_BF16 the same five GEMM shapes run on our own VDPBF16PS block
 * GEMM (gemm_dot below) over operands packed once as bf16 pairs into thread-local scratch (slot
 * 3): K and V of a (batch, head) once per thread while its units run on, Q_i and dO_i once per
 * block, P and dS once per product. The elementwise work rides on the packing there: the forward's
 * exp(S - m) (an AVX-512 exp) is packed as P without an f32 P (pack_exp_12); the backward computes
 * P = exp(S - lse) while packing P^T and dS = P (dP - D_i) while packing dS^T. Elsewhere the
 * operands are rounded into scratch (P and dS in place) and the sgemm calls stay (AVX2 exp).
 * Not here: the bias's gradient, splitting one (batch, head) of the backward over threads. */
#include "cpu/attention.h"
#include "base/error.h"
#include "cpu/cpu.h"
#include "cpu/simd.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <string.h>

/* Block sizes: a score block and its partners stay in the core's L2. Measured on one Zen 4 core
 * (Wan self/cross attention, UMT5; 64..512 x 64..1024): the forward within noise (~10%) from
 * 128 x 256 to 256 x 512, the backward 5-10% faster at 256 x 256 than at 128 x 128. */
#define FWD_QB 128
#define FWD_KB 256
#define BWD_QB 256
#define BWD_FLOATS ((int64_t)1 << 22) /* P and dP of a backward block: 16 MiB each at most */

/* ---- argument checks --------------------------------------------------------------------- */

static int check_operand(const char *op, const char *name, const void *p, const int64_t st[3], int64_t rows,
                         const dfm_attn_args *a)
{
    if (a->batch * a->heads * rows > 0 && !p) return dfm_fail(DFM_E_ARG, "%s: %s is NULL", op, name);
    if (st[0] < 0 || st[1] < 0 || st[2] < 0)
        return dfm_fail(DFM_E_ARG, "%s: negative stride of %s (%lld, %lld, %lld)", op, name, (long long)st[0],
                        (long long)st[1], (long long)st[2]);
    if (rows > 1 && st[2] < a->d)
        return dfm_fail(DFM_E_ARG, "%s: row stride %lld of %s is shorter than d = %lld", op, (long long)st[2], name,
                        (long long)a->d);
    if (st[2] > INT_MAX)
        return dfm_fail(DFM_E_LIMIT, "%s: row stride %lld of %s past 2^31", op, (long long)st[2], name);
    return 0;
}

int dfm_attn_check(const dfm_attn_args *a, const char *op)
{
    if (!a) return dfm_fail(DFM_E_ARG, "%s: no arguments", op);
    if (a->batch < 0 || a->heads < 0 || a->sq < 0 || a->sk < 0 || a->d < 1)
        return dfm_fail(DFM_E_ARG, "%s: bad sizes batch %lld heads %lld sq %lld sk %lld d %lld (d >= 1)", op,
                        (long long)a->batch, (long long)a->heads, (long long)a->sq, (long long)a->sk,
                        (long long)a->d);
    if (a->d > INT_MAX) return dfm_fail(DFM_E_LIMIT, "%s: d = %lld past 2^31", op, (long long)a->d);
    int rc = check_operand(op, "q", a->q, a->qs, a->sq, a);
    if (!rc) rc = check_operand(op, "k", a->k, a->ks, a->sk, a);
    if (!rc) rc = check_operand(op, "v", a->v, a->vs, a->sk, a);
    if (!rc) rc = check_operand(op, "out", a->out, a->os, a->sq, a);
    return rc;
}

/* A GEMM leading dimension: the row stride, or d where a single row makes it meaningless. */
static int ldim(int64_t stride, int64_t d) { return (int)(stride < d ? d : stride); }

/* ---- rows: max, exp ---------------------------------------------------------------------- */

#ifdef DFM_SIMD_X86
__attribute__((target("avx2,fma"))) static float row_max_avx2(const float *s, int64_t n)
{
    int64_t i = 0;
    float mx = -INFINITY;
    if (n >= 8) {
        __m256 m = _mm256_loadu_ps(s);
        for (i = 8; i + 8 <= n; i += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(s + i));
        mx = dfm_hmax256(m);
    }
    for (; i < n; i++) mx = s[i] > mx ? s[i] : mx;
    return mx;
}

/* s = exp(s - m); returns the sum. */
__attribute__((target("avx2,fma"))) static float row_exp_avx2(float *s, int64_t n, float m)
{
    __m256 vm = _mm256_set1_ps(m), acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = dfm_exp256(_mm256_sub_ps(_mm256_loadu_ps(s + i), vm));
        _mm256_storeu_ps(s + i, e);
        acc = _mm256_add_ps(acc, e);
    }
    float sum = dfm_hsum256(acc);
    for (; i < n; i++) {
        s[i] = expf(s[i] - m);
        sum += s[i];
    }
    return sum;
}
#endif

static float row_max(const float *s, int64_t n, int simd)
{
#ifdef DFM_SIMD_X86
    if (simd) return row_max_avx2(s, n);
#endif
    float mx = -INFINITY;
    for (int64_t i = 0; i < n; i++) mx = s[i] > mx ? s[i] : mx;
    return mx;
}

static float row_exp(float *s, int64_t n, float m, int simd)
{
#ifdef DFM_SIMD_X86
    if (simd) return row_exp_avx2(s, n, m);
#endif
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        s[i] = expf(s[i] - m);
        sum += s[i];
    }
    return sum;
}

/* ---- shared pieces ----------------------------------------------------------------------- */

typedef struct {
    const dfm_attn_args *a;
    const float *dout;
    float *dq, *dk, *dv;
    int64_t nqb; /* forward: query blocks per (batch, head) */
    int simd;
    int mode; /* 0 f32, 1 bf16 through rounded copies and sgemm, 2 bf16 on VDPBF16PS */
    int err; /* a thread could not get its scratch */
} attn_ctx;

/* One backward unit (batch item b, head h): its operands, and dK, dV zeroed (they accumulate over
 * the query blocks). */
typedef struct {
    int64_t h;
    const float *q, *k, *v, *dout, *lse;
    float *dq, *dk, *dv;
} bwd_unit;

static bwd_unit bwd_unit_at(const attn_ctx *c, int64_t u)
{
    const dfm_attn_args *a = c->a;
    int64_t b = u / a->heads, h = u % a->heads;
    bwd_unit un = {h,
                   a->q + b * a->qs[0] + h * a->qs[1],
                   a->k + b * a->ks[0] + h * a->ks[1],
                   a->v + b * a->vs[0] + h * a->vs[1],
                   c->dout + b * a->os[0] + h * a->os[1],
                   a->lse + u * a->sq,
                   c->dq + b * a->qs[0] + h * a->qs[1],
                   c->dk + b * a->ks[0] + h * a->ks[1],
                   c->dv + b * a->vs[0] + h * a->vs[1]};
    for (int64_t j = 0; j < a->sk; j++) {
        memset(un.dk + j * a->ks[2], 0, (size_t)a->d * sizeof(float));
        memset(un.dv + j * a->vs[2], 0, (size_t)a->d * sizeof(float));
    }
    return un;
}

/* s [rows, n] (row stride n) = scale * Q_i K_j^T + bias[h, i0 + r, j0 + c] */
static void bias_block(const dfm_attn_args *a, int64_t h, int64_t i0, int64_t rows, int64_t j0, int64_t n, float *s)
{
    const float *b = a->bias + (h * a->sq + i0) * a->sk + j0;
    for (int64_t r = 0; r < rows; r++) memcpy(s + r * n, b + r * a->sk, (size_t)n * sizeof(float));
}

/* (q rows with stride ldq, k rows with stride ldk) */
static void scores(const dfm_attn_args *a, const float *qi, int ldq, const float *kj, int ldk, int64_t h, int64_t i0,
                   int64_t rows, int64_t j0, int64_t n, float *s)
{
    float beta = 0.0f;
    if (a->bias) {
        bias_block(a, h, i0, rows, j0, n, s);
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)n, (int)a->d, a->scale, qi, ldq, kj, ldk,
                beta, s, (int)n);
}

/* rows x d of a strided operand rounded to bf16 into dst [rows, d] */
static void round_rows(float *dst, const float *src, int64_t ld, int64_t rows, int64_t d)
{
    for (int64_t r = 0; r < rows; r++) dfm_cpu_round_bf16(dst + r * d, src + r * ld, (size_t)d);
}

static size_t al64(size_t bytes) { return (bytes + 63) & ~(size_t)63; }

/* Rows of a strided [batch, heads, rows, d] operand set to x. */
static void fill_rows(float *p, const int64_t st[3], int64_t batch, int64_t heads, int64_t rows, int64_t d, float x)
{
    for (int64_t b = 0; b < batch; b++)
        for (int64_t h = 0; h < heads; h++)
            for (int64_t i = 0; i < rows; i++) {
                float *r = p + b * st[0] + h * st[1] + i * st[2];
                for (int64_t c = 0; c < d; c++) r[c] = x;
            }
}

/* Units per thread range: at least about 2^20 multiply-adds, so that tiny calls stay on one thread. */
static int64_t min_units(int64_t work_per_unit)
{
    int64_t m = ((int64_t)1 << 20) / (work_per_unit > 0 ? work_per_unit : 1);
    return m < 1 ? 1 : m;
}

/* ---- bf16: VDPBF16PS block GEMM ---------------------------------------------------------- */

/* Operands packed as bf16 pairs (the two values of k = 2t, 2t + 1 in one 32-bit word, the lower k
 * in the low half), rounded to nearest even on the way, k padded to even with zeros:
 *   A [M x K]: panels of 12 rows, [ceil(M/12)][kp][12]   (kp = ceil(K/2) pairs)
 *   B [K x N]: panels of 32 columns, [ceil(N/32)][kp][32]
 * Rows and columns past M and N are zero. Two packers cover the four ways an operand lies in
 * memory: pack_across takes each output row's k from one contiguous source row (Q_i, dO_i, P and
 * dS as A; K and V as B^T), pack_down takes k down the source rows (V, K, Q_i, dO_i as B; P^T and
 * dS^T as A). The micro-kernel is linear.c's 12 x 32 VDPBF16PS tile (A broadcast from memory). */
#define MR 12
#define NW 32
#define KCP 256 /* pairs of k per GEMM pass: a 32-column B panel's slice is 32 KiB */

#ifdef DFM_SIMD_X86
#define T_DOT __attribute__((target("avx2,fma,avx512f,avx512bw,avx512dq,avx512vl,avx512bf16")))
#define UNROLL _Pragma("GCC unroll 12")

/* x rounded to bf16 (ties to even, NaN kept quiet): the bf16 in each lane's high 16 bits */
T_DOT static inline __m512i round_bits(__m512 x)
{
    __m512i u = _mm512_castps_si512(x);
    __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(_mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1)),
                                                     _mm512_set1_epi32(0x7fff)));
    __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
                                            _mm512_set1_epi32(0x7f800000));
    return _mm512_mask_or_epi32(r, nan, u, _mm512_set1_epi32(0x00400000));
}

static __mmask16 tail16(int64_t n) { return n >= 16 ? (__mmask16)0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1); }


/* 16 pairs (k = k0 .. k0 + 31) of a row: the bf16 of 32 floats, in order (zeros past n) */
T_DOT static inline __m512i row_pairs(const float *s, int64_t n)
{
    const __m512i odd = _mm512_set_epi16(63, 61, 59, 57, 55, 53, 51, 49, 47, 45, 43, 41, 39, 37, 35, 33, 31, 29, 27,
                                         25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    __m512i a = round_bits(_mm512_maskz_loadu_ps(tail16(n), s));
    __m512i b = round_bits(_mm512_maskz_loadu_ps(tail16(n - 16), s + 16));
    return _mm512_permutex2var_epi16(a, odd, b);
}

/* e^x for 16 floats: dfm_exp256 (simd.h) on 16 lanes, the same value in each lane */
T_DOT static inline __m512 exp512(__m512 x)
{
    const __m512 hi = _mm512_set1_ps(88.72283935546875f), lo = _mm512_set1_ps(-87.3365478515625f);
    __m512 xc = _mm512_min_ps(_mm512_max_ps(x, lo), hi);
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), xc);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    /* p 2^n in one rounding, as dfm_exp256's p 2^(n>>1) 2^(n-(n>>1)) (whose first product is exact) */
    __m512 y = _mm512_scalef_ps(p, n);
    y = _mm512_mask_mov_ps(y, _mm512_cmp_ps_mask(x, hi, _CMP_GT_OQ), _mm512_set1_ps(__builtin_inff()));
    y = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, lo, _CMP_NLT_UQ), y);
    return _mm512_mask_mov_ps(y, _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), x);
}

T_DOT static float row_max_512(const float *s, int64_t n)
{
    __m512 m = _mm512_set1_ps(-INFINITY);
    for (int64_t e = 0; e < n; e += 16) m = _mm512_max_ps(m, _mm512_mask_loadu_ps(m, tail16(n - e), s + e));
    return _mm512_reduce_max_ps(m);
}

/* row_pairs of exp(s - m) (zeros past n), the f32 exps added to *acc */
T_DOT static inline __m512i row_pairs_exp(const float *s, int64_t n, __m512 m, __m512 *acc)
{
    __mmask16 k0 = tail16(n), k1 = tail16(n - 16);
    __m512 x0 = _mm512_maskz_mov_ps(k0, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k0, s), m)));
    __m512 x1 = _mm512_maskz_mov_ps(k1, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k1, s + 16), m)));
    *acc = _mm512_add_ps(_mm512_add_ps(*acc, x0), x1);
    /* e^x is never subnormal: VCVTNE2PS2BF16 rounds as round_bits does (ties to even, NaN quiet) */
    return (__m512i)_mm512_cvtne2ps_pbh(x1, x0);
}

/* dst [ceil(M/W)][kp][W]: pair (m, t) = (src[m*ld + 2t], src[m*ld + 2t + 1]) for m < M, k < K.
 * G rows at a time (G = 12 for W = 12, 16 for W = 32), 16 pairs of each transposed in registers
 * into 16 contiguous runs of G pairs. With mx: the pairs of exp(src - mx[m]) instead (see
 * pack_exp_12). Q_i, dO_i, P and dS as A, K and V as B^T. */
T_DOT static inline __attribute__((always_inline)) void pack_across_w(const float *src, int64_t ld, int64_t M,
                                                                     int64_t K, uint32_t *dst, const int W, const int G,
                                                                     const float *mx, float *sum)
{
    int64_t kp = (K + 1) / 2, mp = (M + W - 1) / W * W;
    for (int64_t m0 = 0; m0 < mp; m0 += G) { /* G rows (12, or 16 for W = 32) of a panel at a time */
        uint32_t *panel = dst + m0 / W * kp * W + m0 % W;
        int rows = M - m0 < G ? (int)(M - m0 < 0 ? 0 : M - m0) : G;
        __m512 acc[MR], vm[MR];
        if (mx)
            for (int i = 0; i < MR; i++) acc[i] = _mm512_setzero_ps(), vm[i] = _mm512_set1_ps(i < rows ? mx[m0 + i] : 0.0f);
        for (int64_t t0 = 0; t0 < kp; t0 += 16) {
            __m512i r[16], u[16];
            for (int i = 0; i < 16; i++)
                if (i >= rows || (mx && mx[m0 + i] == -INFINITY))
                    r[i] = _mm512_setzero_si512();
                else if (mx)
                    r[i] = row_pairs_exp(src + (m0 + i) * ld + 2 * t0, K - 2 * t0, vm[i], &acc[i]);
                else
                    r[i] = row_pairs(src + (m0 + i) * ld + 2 * t0, K - 2 * t0);
            for (int i = 0; i < 16; i += 2) {
                u[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
                u[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
            }
            for (int g = 0; g < 16; g += 4) { /* u[g + j]: column 4L + j of rows g .. g + 3, per 128-bit lane L */
                __m512i a0 = _mm512_unpacklo_epi64(u[g], u[g + 2]), a1 = _mm512_unpackhi_epi64(u[g], u[g + 2]);
                __m512i a2 = _mm512_unpacklo_epi64(u[g + 1], u[g + 3]), a3 = _mm512_unpackhi_epi64(u[g + 1], u[g + 3]);
                r[g] = a0, r[g + 1] = a1, r[g + 2] = a2, r[g + 3] = a3;
            }
            int64_t nt = kp - t0 < 16 ? kp - t0 : 16;
            for (int j = 0; j < 4; j++) {
                __m512i v = _mm512_shuffle_i32x4(r[j], r[4 + j], 0x88), w = _mm512_shuffle_i32x4(r[j], r[4 + j], 0xdd);
                __m512i v2 = _mm512_shuffle_i32x4(r[8 + j], r[12 + j], 0x88), w2 = _mm512_shuffle_i32x4(r[8 + j], r[12 + j], 0xdd);
                __m512i c[4] = {_mm512_shuffle_i32x4(v, v2, 0x88), _mm512_shuffle_i32x4(w, w2, 0x88),
                                _mm512_shuffle_i32x4(v, v2, 0xdd), _mm512_shuffle_i32x4(w, w2, 0xdd)};
                for (int l = 0; l < 4; l++) /* column 4l + j: pair t0 + 4l + j of the 12 rows */
                    if (4 * l + j < nt) _mm512_mask_storeu_epi32(panel + (t0 + 4 * l + j) * W, (__mmask16)((1u << G) - 1), c[l]);
            }
        }
        if (mx)
            for (int i = 0; i < rows; i++) sum[m0 + i] = mx[m0 + i] == -INFINITY ? 0.0f : _mm512_reduce_add_ps(acc[i]);
    }
}

T_DOT static void pack_across_12(const float *src, int64_t ld, int64_t M, int64_t K, uint32_t *dst)
{
    pack_across_w(src, ld, M, K, dst, MR, MR, NULL, NULL);
}

/* dst [ceil(M/32)][kp][32]: pair (m, t) = (src[m*ld + 2t], src[m*ld + 2t + 1]) for m < M, k < K, 16
 * rows at a time as above: K and V as B^T, once per (batch, head) */
T_DOT static void pack_across_32(const float *src, int64_t ld, int64_t M, int64_t K, uint32_t *dst)
{
    pack_across_w(src, ld, M, K, dst, NW, 16, NULL, NULL);
}

/* P = exp(s - mx[r]) of the rows of s [M, K] packed as pack_across_12 does, sum[r] the sum of the
 * f32 exps; a row with mx[r] = -inf gives zeros and sum 0. The forward's softmax and packing in
 * one pass over s. */
T_DOT static void pack_exp_12(const float *src, int64_t ld, int64_t M, int64_t K, uint32_t *dst, const float *mx,
                              float *sum)
{
    pack_across_w(src, ld, M, K, dst, MR, MR, mx, sum);
}

/* dst [ceil(M/W)][kp][W]: pair (m, t) = (src[2t*ld + m], src[(2t + 1)*ld + m]) for m < M, k < K;
 * tmp holds ceil(M/W)*W rounded up to 16 uint32. Pair by pair: V, K, Q_i, dO_i as B, P^T and dS^T as A.
 * op 1: each source row k first becomes exp(src - x[k]), stored back (P from the scores and lse);
 * op 2: each becomes y * (src - x[k]) with y the same place of another [K, ld] array, stored back
 * (dS from dP, P and D). */
T_DOT static inline __attribute__((always_inline)) void pack_down_w(float *src, int64_t ld, int64_t M, int64_t K,
                                                                   uint32_t *dst, const int W, uint32_t *tmp,
                                                                   const int op, const float *x, const float *y)
{
    int64_t kp = (K + 1) / 2, panels = (M + W - 1) / W;
    const __m512i hmask = _mm512_set1_epi32((int)0xffff0000u);
    const __m512i inter = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6,
                                           21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    for (int64_t t = 0; t < kp; t++) {
        float *r0 = src + 2 * t * ld, *r1 = 2 * t + 1 < K ? r0 + ld : NULL;
        const float *y0 = op == 2 ? y + 2 * t * ld : NULL, *y1 = op == 2 ? y0 + ld : NULL;
        __m512 x0 = _mm512_set1_ps(op ? x[2 * t] : 0.0f), x1 = _mm512_set1_ps(op && r1 ? x[2 * t + 1] : 0.0f);
        for (int64_t m = 0; m < panels * W; m += 16) {
            __mmask16 mk = tail16(M - m);
            __m512 v0 = _mm512_maskz_loadu_ps(mk, r0 + m), v1 = _mm512_setzero_ps();
            if (op == 1) v0 = exp512(_mm512_sub_ps(v0, x0));
            if (op == 2) v0 = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, y0 + m), _mm512_sub_ps(v0, x0));
            if (op) _mm512_mask_storeu_ps(r0 + m, mk, v0);
            if (r1) {
                v1 = _mm512_maskz_loadu_ps(mk, r1 + m);
                if (op == 1) v1 = exp512(_mm512_sub_ps(v1, x1));
                if (op == 2) v1 = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, y1 + m), _mm512_sub_ps(v1, x1));
                if (op) _mm512_mask_storeu_ps(r1 + m, mk, v1);
            }
            __m512i w;
            if (op == 1) /* e^x is never subnormal: VCVTNE2PS2BF16 rounds as round_bits does; v1 is 0 without r1 */
                w = _mm512_permutexvar_epi16(inter, (__m512i)_mm512_cvtne2ps_pbh(v1, v0));
            else
                w = _mm512_or_si512(_mm512_srli_epi32(round_bits(v0), 16),
                                    r1 ? _mm512_and_si512(round_bits(v1), hmask) : _mm512_setzero_si512());
            _mm512_storeu_si512(tmp + m, _mm512_maskz_mov_epi32(mk, w));
        }
        for (int64_t p = 0; p < panels; p++) memcpy(dst + (p * kp + t) * W, tmp + p * W, (size_t)W * sizeof(uint32_t));
    }
}

T_DOT static void pack_down_32(const float *src, int64_t ld, int64_t M, int64_t K, uint32_t *dst, uint32_t *tmp)
{
    pack_down_w((float *)src, ld, M, K, dst, NW, tmp, 0, NULL, NULL);
}

/* p [K, M] (row stride M) = exp(p - lse[k]) and P^T packed as pack_down_12 does */
T_DOT static void pack_down_exp_12(float *p, int64_t M, int64_t K, const float *lse, uint32_t *dst, uint32_t *tmp)
{
    pack_down_w(p, M, M, K, dst, MR, tmp, 1, lse, NULL);
}

/* dp [K, M] = p * (dp - di[k]) (dS) and dS^T packed as pack_down_12 does */
T_DOT static void pack_down_ds_12(float *dp, const float *p, int64_t M, int64_t K, const float *di, uint32_t *dst,
                                  uint32_t *tmp)
{
    pack_down_w(dp, M, M, K, dst, MR, tmp, 2, di, p);
}

/* D_i = sum_j P dP (in double, 16 lanes) for the rows of p and dp [rows, sk], as ds_rows below */
T_DOT static void d_rows_dot(const float *p, const float *dp, int64_t rows, int64_t sk, float *di)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *pr = p + r * sk, *ds = dp + r * sk;
        __m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd();
        for (int64_t e = 0; e < sk; e += 16) {
            __mmask16 mk = tail16(sk - e);
            __m512 x = _mm512_maskz_loadu_ps(mk, pr + e), y = _mm512_maskz_loadu_ps(mk, ds + e);
            a0 = _mm512_fmadd_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(x)), _mm512_cvtps_pd(_mm512_castps512_ps256(y)), a0);
            a1 = _mm512_fmadd_pd(_mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1))),
                                 _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(y), 1))), a1);
        }
        di[r] = (float)_mm512_reduce_add_pd(_mm512_add_pd(a0, a1));
    }
}


/* c[mr x 32] = alpha * A B (+ c when add), over kc pairs; columns past n masked off */
T_DOT static void ukr_dot(int64_t kc, const uint32_t *a, const uint32_t *b, float *c, int64_t ldc, int mr,
                          __mmask16 m0, __mmask16 m1, float alpha, int add)
{
    __m512 acc[MR][2];
    UNROLL for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int64_t t = 0; t < kc; t++, a += MR, b += NW) {
        __m512 w0 = _mm512_castsi512_ps(_mm512_loadu_si512(b)), w1 = _mm512_castsi512_ps(_mm512_loadu_si512(b + 16));
        UNROLL for (int r = 0; r < MR; r++)
        {
            __asm__("vdpbf16ps %[x]%{1to16%}, %[w], %[c]" : [c] "+v"(acc[r][0]) : [w] "v"(w0), [x] "m"(a[r]));
            __asm__("vdpbf16ps %[x]%{1to16%}, %[w], %[c]" : [c] "+v"(acc[r][1]) : [w] "v"(w1), [x] "m"(a[r]));
        }
    }
    __m512 va = _mm512_set1_ps(alpha);
    UNROLL for (int r = 0; r < MR; r++)
    {
        if (r >= mr) break;
        float *cr = c + r * ldc;
        __m512 v0 = _mm512_mul_ps(acc[r][0], va), v1 = _mm512_mul_ps(acc[r][1], va);
        if (add) {
            v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, cr));
            v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, cr + 16));
        }
        _mm512_mask_storeu_ps(cr, m0, v0);
        _mm512_mask_storeu_ps(cr + 16, m1, v1);
    }
}

/* c [M x N] (row stride ldc) = alpha * A B (+ c when add): A and B packed over kp pairs, panel
 * strides as and bs (elements; a panel may hold more pairs than this product uses). */
T_DOT static void gemm_dot(int64_t M, int64_t N, int64_t kp, const uint32_t *a, int64_t as, const uint32_t *b,
                           int64_t bs, float alpha, float *c, int64_t ldc, int add)
{
    for (int64_t p0 = 0; p0 < kp; p0 += KCP) {
        int64_t kc = kp - p0 < KCP ? kp - p0 : KCP;
        for (int64_t i = 0; i < M; i += MR) {
            int mr = M - i < MR ? (int)(M - i) : MR;
            for (int64_t j = 0; j < N; j += NW)
                ukr_dot(kc, a + i / MR * as + p0 * MR, b + j / NW * bs + p0 * NW, c + i * ldc + j, ldc, mr,
                        tail16(N - j), tail16(N - j - 16), alpha, add || p0 > 0);
        }
    }
}
#undef UNROLL
#endif

/* ---- forward ----------------------------------------------------------------------------- */

/* The running softmax over one key block: s [rows, n] scores in, exp(s - m) out; m, l and the
 * accumulator o [rows, d] brought up to date (o rescaled where the max grew). */
static void softmax_block(const attn_ctx *c, float *s, int64_t rows, int64_t n, int64_t j0, float *m, float *l,
                          float *o)
{
    int64_t d = c->a->d;
    for (int64_t r = 0; r < rows; r++) {
        float *sr = s + r * n, mb = row_max(sr, n, c->simd), mn = m[r] > mb ? m[r] : mb;
        if (mn == -INFINITY) { /* nothing but -inf so far: no weight, nothing to rescale */
            memset(sr, 0, (size_t)n * sizeof(float));
            continue;
        }
        float alpha = expf(m[r] - mn); /* 0 while m is -inf */
        l[r] = l[r] * alpha + row_exp(sr, n, mn, c->simd);
        m[r] = mn;
        if (j0 > 0 && alpha != 1.0f)
            for (int64_t e = 0; e < d; e++) o[r * d + e] *= alpha;
    }
}

/* out = o / l and lse = m + log l for the rows of unit (b, h, i0) */
static void finish_rows(const dfm_attn_args *a, int64_t b, int64_t h, int64_t i0, int64_t rows, const float *m,
                        const float *l, const float *o)
{
    int64_t d = a->d;
    float *lse = a->lse ? a->lse + (b * a->heads + h) * a->sq + i0 : NULL;
    for (int64_t r = 0; r < rows; r++) {
        float *orow = a->out + b * a->os[0] + h * a->os[1] + (i0 + r) * a->os[2];
        if (l[r] == 0.0f) { /* every score -inf: torch's softmax gives NaN */
            for (int64_t e = 0; e < d; e++) orow[e] = NAN;
            if (lse) lse[r] = -INFINITY;
            continue;
        }
        float inv = 1.0f / l[r], *restrict dst = orow; /* out is never the scratch accumulator */
        const float *restrict src = o + r * d;
        for (int64_t e = 0; e < d; e++) dst[e] = src[e] * inv;
        if (lse) lse[r] = m[r] + logf(l[r]);
    }
}

#ifdef DFM_SIMD_X86
/* softmax_block for mode 2, the exps packed straight into ppk as A (pack_exp_12) and not stored */
T_DOT static void softmax_pack(const attn_ctx *c, const float *s, int64_t rows, int64_t n, int64_t j0, float *m,
                               float *l, float *o, uint32_t *ppk)
{
    int64_t d = c->a->d;
    float alpha[FWD_QB], sum[FWD_QB];
    for (int64_t r = 0; r < rows; r++) {
        float mb = row_max_512(s + r * n, n), mn = m[r] > mb ? m[r] : mb;
        if (mn == -INFINITY) continue; /* nothing but -inf so far: no weight (m stays -inf) */
        alpha[r] = expf(m[r] - mn); /* 0 while m is -inf */
        m[r] = mn;
        if (j0 > 0 && alpha[r] != 1.0f) {
            __m512 va = _mm512_set1_ps(alpha[r]);
            for (int64_t e = 0; e < d; e += 16) {
                __mmask16 k = tail16(d - e);
                _mm512_mask_storeu_ps(o + r * d + e, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, o + r * d + e), va));
            }
        }
    }
    pack_exp_12(s, n, rows, n, ppk, m, sum);
    for (int64_t r = 0; r < rows; r++)
        if (m[r] != -INFINITY) l[r] = l[r] * alpha[r] + sum[r];
}

/* mode 2: K and V of the unit's (batch, head) packed once for the run of units that share it */
T_DOT static void fwd_range_dot(attn_ctx *c, int64_t u0, int64_t u1, float *s, float *o, float *m, float *l)
{
    const dfm_attn_args *a = c->a;
    int64_t d = a->d, sq = a->sq, sk = a->sk, kb = sk < FWD_KB ? sk : FWD_KB, dp = (d + 1) / 2, skp = (sk + 1) / 2;
    int64_t ntmp = (sk > d ? sk : d) + 64;
    size_t o_v = al64((size_t)((sk + NW - 1) / NW * NW * dp) * 4);
    size_t o_q = o_v + al64((size_t)((d + NW - 1) / NW * NW * skp) * 4);
    size_t o_p = o_q + al64((size_t)((FWD_QB + MR - 1) / MR * MR * dp) * 4);
    size_t o_t = o_p + al64((size_t)((FWD_QB + MR - 1) / MR * MR * ((kb + 1) / 2)) * 4);
    char *base = dfm_cpu_scratch(3, o_t + (size_t)ntmp * 4);
    if (!base) {
        __atomic_store_n(&c->err, 1, __ATOMIC_RELAXED);
        return;
    }
    uint32_t *kpk = (uint32_t *)(void *)base, *vpk = (uint32_t *)(void *)(base + o_v);
    uint32_t *qpk = (uint32_t *)(void *)(base + o_q), *ppk = (uint32_t *)(void *)(base + o_p);
    uint32_t *tmp = (uint32_t *)(void *)(base + o_t);
    int64_t packed = -1;
    for (int64_t u = u0; u < u1; u++) {
        int64_t bh = u / c->nqb, b = bh / a->heads, h = bh % a->heads;
        int64_t i0 = (u % c->nqb) * FWD_QB, rows = sq - i0 < FWD_QB ? sq - i0 : FWD_QB;
        if (bh != packed) {
            pack_across_32(a->k + b * a->ks[0] + h * a->ks[1], a->ks[2], sk, d, kpk);
            pack_down_32(a->v + b * a->vs[0] + h * a->vs[1], a->vs[2], d, sk, vpk, tmp);
            packed = bh;
        }
        pack_across_12(a->q + b * a->qs[0] + h * a->qs[1] + i0 * a->qs[2], a->qs[2], rows, d, qpk);
        for (int64_t r = 0; r < rows; r++) m[r] = -INFINITY, l[r] = 0.0f;
        for (int64_t j0 = 0; j0 < sk; j0 += kb) {
            int64_t n = sk - j0 < kb ? sk - j0 : kb, np = (n + 1) / 2;
            if (a->bias) bias_block(a, h, i0, rows, j0, n, s);
            gemm_dot(rows, n, dp, qpk, dp * MR, kpk + j0 / NW * dp * NW, dp * NW, a->scale, s, n, a->bias != NULL);
            softmax_pack(c, s, rows, n, j0, m, l, o, ppk);
            gemm_dot(rows, d, np, ppk, np * MR, vpk + j0 / 2 * NW, skp * NW, 1.0f, o, d, j0 > 0);
        }
        finish_rows(a, b, h, i0, rows, m, l, o);
    }
}
#endif

static void fwd_range(void *arg, int64_t u0, int64_t u1)
{
    attn_ctx *c = arg;
    const dfm_attn_args *a = c->a;
    int64_t d = a->d, sq = a->sq, sk = a->sk, kb = sk < FWD_KB ? sk : FWD_KB;
    float *s = dfm_cpu_scratch(0, (size_t)(FWD_QB * kb) * sizeof(float));
    float *o = dfm_cpu_scratch(1, (size_t)(FWD_QB * d) * sizeof(float));
    float *ml = dfm_cpu_scratch(2, 2 * FWD_QB * sizeof(float));
    /* mode 1: Q_i, K and V of the (batch, head) rounded to bf16 */
    float *qr = c->mode == 1 ? dfm_cpu_scratch(3, (size_t)((FWD_QB + 2 * sk) * d) * sizeof(float)) : NULL;
    if (!s || !o || !ml || (c->mode == 1 && !qr)) {
        __atomic_store_n(&c->err, 1, __ATOMIC_RELAXED);
        return;
    }
    float *m = ml, *l = ml + FWD_QB;
#ifdef DFM_SIMD_X86
    if (c->mode == 2) {
        fwd_range_dot(c, u0, u1, s, o, m, l);
        return;
    }
#endif
    float *kr = qr ? qr + FWD_QB * d : NULL, *vr = qr ? kr + sk * d : NULL;
    int64_t rounded = -1;
    for (int64_t u = u0; u < u1; u++) {
        int64_t bh = u / c->nqb, b = bh / a->heads, h = bh % a->heads;
        int64_t i0 = (u % c->nqb) * FWD_QB, rows = sq - i0 < FWD_QB ? sq - i0 : FWD_QB;
        const float *qi = a->q + b * a->qs[0] + h * a->qs[1] + i0 * a->qs[2];
        const float *kh = a->k + b * a->ks[0] + h * a->ks[1], *vh = a->v + b * a->vs[0] + h * a->vs[1];
        int ldq = ldim(a->qs[2], d), ldk = ldim(a->ks[2], d), ldv = ldim(a->vs[2], d);
        if (qr) {
            if (bh != rounded) {
                round_rows(kr, kh, a->ks[2], sk, d);
                round_rows(vr, vh, a->vs[2], sk, d);
                rounded = bh;
            }
            round_rows(qr, qi, a->qs[2], rows, d);
            qi = qr, kh = kr, vh = vr, ldq = ldk = ldv = (int)d;
        }
        for (int64_t r = 0; r < rows; r++) m[r] = -INFINITY, l[r] = 0.0f;
        for (int64_t j0 = 0; j0 < sk; j0 += kb) {
            int64_t n = sk - j0 < kb ? sk - j0 : kb;
            scores(a, qi, ldq, kh + j0 * (qr ? d : a->ks[2]), ldk, h, i0, rows, j0, n, s);
            softmax_block(c, s, rows, n, j0, m, l, o);
            if (qr) dfm_cpu_round_bf16(s, s, (size_t)(rows * n));
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)d, (int)n, 1.0f, s, (int)n,
                        vh + j0 * (qr ? d : a->vs[2]), ldv, j0 > 0 ? 1.0f : 0.0f, o, (int)d);
        }
        finish_rows(a, b, h, i0, rows, m, l, o);
    }
}

/* 0 f32; 1 or 2 for bf16 (2 where VDPBF16PS runs) */
static int attn_mode(const dfm_attn_args *a)
{
    if (!a->bf16) return 0;
#ifdef DFM_SIMD_X86
    if (dfm_cpu_use_avx512_bf16()) return 2;
#endif
    return 1;
}

int dfm_cpu_attention_fwd(const dfm_attn_args *a)
{
    int rc = dfm_attn_check(a, "attention");
    if (rc < 0) return rc;
    int64_t units_bh = a->batch * a->heads;
    if (units_bh == 0 || a->sq == 0) return 0;
    if (a->sk == 0) { /* softmax over nothing: NaN as torch */
        fill_rows(a->out, a->os, a->batch, a->heads, a->sq, a->d, NAN);
        if (a->lse)
            for (int64_t i = 0; i < units_bh * a->sq; i++) a->lse[i] = -INFINITY;
        return 0;
    }
    attn_ctx c = {.a = a, .nqb = (a->sq + FWD_QB - 1) / FWD_QB, .simd = dfm_cpu_use_avx2(), .mode = attn_mode(a)};
    int64_t rows = a->sq < FWD_QB ? a->sq : FWD_QB;
    int saved = dfm_cpu_blas_single(); /* our threads each run single-threaded GEMMs */
    dfm_cpu_parallel(units_bh * c.nqb, min_units(rows * a->sk * a->d), fwd_range, &c);
    dfm_cpu_blas_restore(saved);
    if (c.err) return dfm_fail(DFM_E_NOMEM, "attention: out of memory for scratch");
    return 0;
}

/* ---- backward ---------------------------------------------------------------------------- */

/* Query rows per backward block: the block's P and dP over all keys ([rows, sk] each) stay within
 * BWD_FLOATS floats, at most BWD_QB rows, at least 16. */
static int64_t bwd_rows(int64_t sq, int64_t sk)
{
    int64_t qb = sk > 0 ? BWD_FLOATS / sk : BWD_QB;
    qb = qb > BWD_QB ? BWD_QB : qb < 16 ? 16 : qb;
    return sq < qb ? sq : qb;
}

/* D_i = sum_j P dP (in double) from these very P and dP, then dS = P * (dP - D_i) in dP's place */
static void ds_rows(float *p, float *dp, int64_t rows, int64_t sk)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *pr = p + r * sk;
        float *ds = dp + r * sk;
        double acc = 0.0;
        for (int64_t e = 0; e < sk; e++) acc += (double)pr[e] * ds[e];
        float di = (float)acc;
        for (int64_t e = 0; e < sk; e++) ds[e] = pr[e] * (ds[e] - di);
    }
}

#ifdef DFM_SIMD_X86
/* mode 2: K (as B^T for the scores and as B for dQ) and V (as B^T for dP) packed once per unit,
 * Q_i and dO_i (as A and as B) once per query block, P^T, dS and dS^T once per product */
T_DOT static void bwd_range_dot(attn_ctx *c, int64_t u0, int64_t u1, int64_t qb, float *p, float *dp)
{
    const dfm_attn_args *a = c->a;
    int64_t d = a->d, sq = a->sq, sk = a->sk, dp2 = (d + 1) / 2, skp = (sk + 1) / 2, qbp = (qb + 1) / 2;
    int64_t ntmp = (sk > d ? sk : d) + (qb > 64 ? qb : 64) + 64;
    size_t kt_n = (size_t)((sk + NW - 1) / NW * NW * dp2), kb_n = (size_t)((d + NW - 1) / NW * NW * skp);
    size_t qa_n = (size_t)((qb + MR - 1) / MR * MR * dp2), qb_n = (size_t)((d + NW - 1) / NW * NW * qbp);
    size_t pt_n = (size_t)((sk + MR - 1) / MR * MR * qbp), ds_n = (size_t)((qb + MR - 1) / MR * MR * skp);
    size_t off[11], sz[11] = {kt_n, kt_n, kb_n, qa_n, qa_n, qb_n, qb_n, pt_n, ds_n, (size_t)ntmp, (size_t)qb}, tot = 0;
    for (int i = 0; i < 11; i++) off[i] = tot, tot += al64(sz[i] * 4);
    char *base = dfm_cpu_scratch(3, tot);
    if (!base) {
        __atomic_store_n(&c->err, 1, __ATOMIC_RELAXED);
        return;
    }
    uint32_t *buf[11];
    for (int i = 0; i < 11; i++) buf[i] = (uint32_t *)(void *)(base + off[i]);
    uint32_t *kt = buf[0], *vt = buf[1], *kbk = buf[2], *qa = buf[3], *da = buf[4], *qbk = buf[5], *dob = buf[6];
    uint32_t *pt = buf[7], *dsa = buf[8], *tmp = buf[9];
    float *di = (float *)(void *)buf[10];
    int64_t ldq = ldim(a->qs[2], d), ldk = ldim(a->ks[2], d), ldv = ldim(a->vs[2], d);
    for (int64_t u = u0; u < u1; u++) {
        bwd_unit un = bwd_unit_at(c, u);
        int64_t h = un.h;
        const float *qh = un.q, *kh = un.k, *vh = un.v, *doh = un.dout, *lse = un.lse;
        float *dqh = un.dq, *dkh = un.dk, *dvh = un.dv;
        pack_across_32(kh, a->ks[2], sk, d, kt);
        pack_across_32(vh, a->vs[2], sk, d, vt);
        pack_down_32(kh, a->ks[2], d, sk, kbk, tmp);
        for (int64_t i0 = 0; i0 < sq; i0 += qb) {
            int64_t rows = sq - i0 < qb ? sq - i0 : qb, rp = (rows + 1) / 2;
            const float *qi = qh + i0 * a->qs[2], *doi = doh + i0 * a->os[2];
            pack_across_12(qi, a->qs[2], rows, d, qa);
            pack_down_32(qi, a->qs[2], d, rows, qbk, tmp);
            pack_across_12(doi, a->os[2], rows, d, da);
            pack_down_32(doi, a->os[2], d, rows, dob, tmp);
            /* P = exp(S - lse) (P^T packed on the way), dV += P^T dO_i */
            if (a->bias) bias_block(a, h, i0, rows, 0, sk, p);
            gemm_dot(rows, sk, dp2, qa, dp2 * MR, kt, dp2 * NW, a->scale, p, sk, a->bias != NULL);
            pack_down_exp_12(p, sk, rows, lse + i0, pt, tmp);
            gemm_dot(sk, d, rp, pt, rp * MR, dob, rp * NW, 1.0f, dvh, ldv, 1);
            /* dP = dO_i V^T, D_i, dS = P (dP - D_i) (dS^T packed on the way); dK += scale dS^T Q_i,
             * dQ_i = scale dS K */
            gemm_dot(rows, sk, dp2, da, dp2 * MR, vt, dp2 * NW, 1.0f, dp, sk, 0);
            d_rows_dot(p, dp, rows, sk, di);
            pack_down_ds_12(dp, p, sk, rows, di, pt, tmp);
            gemm_dot(sk, d, rp, pt, rp * MR, qbk, rp * NW, a->scale, dkh, ldk, 1);
            pack_across_12(dp, sk, rows, sk, dsa);
            gemm_dot(rows, d, skp, dsa, skp * MR, kbk, skp * NW, a->scale, dqh + i0 * a->qs[2], ldq, 0);
        }
    }
}
#endif

static void bwd_range(void *arg, int64_t u0, int64_t u1)
{
    attn_ctx *c = arg;
    const dfm_attn_args *a = c->a;
    int64_t d = a->d, sq = a->sq, sk = a->sk, qb = bwd_rows(sq, sk);
    float *p = dfm_cpu_scratch(0, (size_t)(qb * sk) * sizeof(float));
    float *dp = dfm_cpu_scratch(1, (size_t)(qb * sk) * sizeof(float));
    /* mode 1: K and V of the unit, Q_i and dO_i of the block rounded to bf16 */
    float *kr = c->mode == 1 ? dfm_cpu_scratch(3, (size_t)((2 * sk + 2 * qb) * d) * sizeof(float)) : NULL;
    if (!p || !dp || (c->mode == 1 && !kr)) {
        __atomic_store_n(&c->err, 1, __ATOMIC_RELAXED);
        return;
    }
#ifdef DFM_SIMD_X86
    if (c->mode == 2) {
        bwd_range_dot(c, u0, u1, qb, p, dp);
        return;
    }
#endif
    float *vr = kr ? kr + sk * d : NULL, *qr = kr ? vr + sk * d : NULL, *dor = kr ? qr + qb * d : NULL;
    int ldq = ldim(a->qs[2], d), ldk = ldim(a->ks[2], d), ldv = ldim(a->vs[2], d), ldo = ldim(a->os[2], d);
    for (int64_t u = u0; u < u1; u++) {
        bwd_unit un = bwd_unit_at(c, u);
        int64_t h = un.h;
        const float *qh = un.q, *kh = un.k, *vh = un.v, *doh = un.dout, *lse = un.lse;
        float *dqh = un.dq, *dkh = un.dk, *dvh = un.dv;
        /* the operands of the GEMMs: the inputs, or (mode 1) their rounded copies */
        int lk = ldk, lv = ldv, lq = ldq, lo = ldo;
        const float *kg = kh, *vg = vh;
        if (kr) {
            round_rows(kr, kh, a->ks[2], sk, d);
            round_rows(vr, vh, a->vs[2], sk, d);
            kg = kr, vg = vr, lk = lv = lq = lo = (int)d;
        }
        for (int64_t i0 = 0; i0 < sq; i0 += qb) {
            int64_t rows = sq - i0 < qb ? sq - i0 : qb;
            const float *qi = qh + i0 * a->qs[2], *doi = doh + i0 * a->os[2];
            float *dqi = dqh + i0 * a->qs[2];
            if (kr) {
                round_rows(qr, qi, a->qs[2], rows, d);
                round_rows(dor, doi, a->os[2], rows, d);
                qi = qr, doi = dor;
            }
            /* P = exp(S - lse) and dP = dO_i V^T over all keys */
            scores(a, qi, lq, kg, lk, h, i0, rows, 0, sk, p);
            for (int64_t r = 0; r < rows; r++) row_exp(p + r * sk, sk, lse[i0 + r], c->simd);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)sk, (int)d, 1.0f, doi, lo, vg, lv,
                        0.0f, dp, (int)sk);
            ds_rows(p, dp, rows, sk);
            /* dV += P^T dO_i; dQ_i = scale dS K; dK += scale dS^T Q_i */
            if (kr) dfm_cpu_round_bf16(p, p, (size_t)(rows * sk));
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)sk, (int)d, (int)rows, 1.0f, p, (int)sk, doi, lo,
                        1.0f, dvh, ldv);
            if (kr) dfm_cpu_round_bf16(dp, dp, (size_t)(rows * sk));
            for (int64_t r = 0; r < rows; r++) memset(dqi + r * a->qs[2], 0, (size_t)d * sizeof(float));
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)d, (int)sk, a->scale, dp, (int)sk, kg,
                        lk, 0.0f, dqi, ldq);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)sk, (int)d, (int)rows, a->scale, dp, (int)sk, qi,
                        lq, 1.0f, dkh, ldk);
        }
    }
}

int dfm_attn_check_bwd(const dfm_attn_args *a, const float *dout, const float *dq, const float *dk,
                       const float *dv, const char *op)
{
    int rc = dfm_attn_check(a, op);
    if (rc < 0) return rc;
    int64_t units = a->batch * a->heads;
    if ((units * a->sq > 0 && (!dout || !dq || !a->lse)) || (units * a->sk > 0 && (!dk || !dv)))
        return dfm_fail(DFM_E_ARG, "%s: dout, lse, dq, dk or dv is NULL", op);
    if (a->sk > INT_MAX / 16) return dfm_fail(DFM_E_LIMIT, "%s: %lld keys past 2^27", op, (long long)a->sk);
    const int64_t *st[3] = {a->qs, a->ks, a->vs}, rows[3] = {a->sq, a->sk, a->sk};
    for (int t = 0; t < 3; t++)
        if (rows[t] > 0 && ((a->batch > 1 && st[t][0] == 0) || (a->heads > 1 && st[t][1] == 0)))
            return dfm_fail(DFM_E_ARG, "%s: a zero stride of %c would sum gradients in one place", op, "qkv"[t]);
    return 0;
}

int dfm_cpu_attention_bwd(const dfm_attn_args *a, const float *dout, float *dq, float *dk, float *dv)
{
    int rc = dfm_attn_check_bwd(a, dout, dq, dk, dv, "attention backward");
    if (rc < 0) return rc;
    int64_t units = a->batch * a->heads;
    if (units == 0) return 0;
    if (a->sq == 0) { /* nothing flows back */
        fill_rows(dk, a->ks, a->batch, a->heads, a->sk, a->d, 0.0f);
        fill_rows(dv, a->vs, a->batch, a->heads, a->sk, a->d, 0.0f);
        return 0;
    }
    if (a->sk == 0) {
        fill_rows(dq, a->qs, a->batch, a->heads, a->sq, a->d, 0.0f);
        return 0;
    }
    attn_ctx c = {.a = a, .dout = dout, .dq = dq, .dk = dk, .dv = dv, .simd = dfm_cpu_use_avx2(), .mode = attn_mode(a)};
    int saved = dfm_cpu_blas_single(); /* our threads each run single-threaded GEMMs */
    dfm_cpu_parallel(units, min_units(a->sq * a->sk * a->d), bwd_range, &c);
    dfm_cpu_blas_restore(saved);
    if (c.err) return dfm_fail(DFM_E_NOMEM, "attention backward: out of memory for scratch");
    return 0;
}

/* ---- the earlier entry points ------------------------------------------------------------ */

int dfm_cpu_attention(const float *q, const float *k, const float *v, float scale, float *out,
                      int64_t heads, int64_t sq, int64_t sk, int64_t d)
{
    if (heads <= 0 || sq <= 0 || d <= 0) return 0;
    if (sk < 0) sk = 0;
    dfm_attn_args a = {.batch = 1, .heads = heads, .sq = sq, .sk = sk, .d = d, .q = q, .k = k, .v = v, .out = out,
                       .qs = {heads * sq * d, sq * d, d}, .ks = {heads * sk * d, sk * d, d},
                       .vs = {heads * sk * d, sk * d, d}, .os = {heads * sq * d, sq * d, d}, .scale = scale};
    return dfm_cpu_attention_fwd(&a);
}

int dfm_cpu_attention_bias(const float *q, const float *k, const float *v, const float *bias, float scale,
                           float *out, int64_t heads, int64_t sq, int64_t sk, int64_t d)
{
    if (heads <= 0 || sq <= 0 || d <= 0) return 0;
    if (sk < 0) sk = 0;
    dfm_attn_args a = {.batch = 1, .heads = heads, .sq = sq, .sk = sk, .d = d, .q = q, .k = k, .v = v, .out = out,
                       .qs = {sq * heads * d, d, heads * d}, .ks = {sk * heads * d, d, heads * d},
                       .vs = {sk * heads * d, d, heads * d}, .os = {sq * heads * d, d, heads * d},
                       .bias = bias, .scale = scale};
    return dfm_cpu_attention_fwd(&a);
}
