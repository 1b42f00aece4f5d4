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
 * Not here: an AVX-512 exp (the exps are a few percent of the time: the GEMMs dominate), the
 * bias's gradient, splitting one (batch, head) of the backward over threads. */
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
    int err; /* a thread could not get its scratch */
} attn_ctx;

/* s [rows, n] (row stride n) = scale * Q_i K_j^T + bias[h, i0 + r, j0 + c] */
static void scores(const dfm_attn_args *a, const float *qi, const float *kj, int64_t h, int64_t i0, int64_t rows,
                   int64_t j0, int64_t n, float *s)
{
    float beta = 0.0f;
    if (a->bias) {
        const float *b = a->bias + (h * a->sq + i0) * a->sk + j0;
        for (int64_t r = 0; r < rows; r++) memcpy(s + r * n, b + r * a->sk, (size_t)n * sizeof(float));
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)n, (int)a->d, a->scale, qi,
                ldim(a->qs[2], a->d), kj, ldim(a->ks[2], a->d), beta, s, (int)n);
}

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

/* Our threads each run single-threaded GEMMs; returns OpenBLAS's thread count to restore. */
static int blas_single(void)
{
    int n = openblas_get_num_threads();
    if (n != 1) openblas_set_num_threads(1);
    return n;
}

static void blas_restore(int n)
{
    if (n != 1) openblas_set_num_threads(n);
}

/* Units per thread range: at least about 2^20 multiply-adds, so that tiny calls stay on one thread. */
static int64_t min_units(int64_t work_per_unit)
{
    int64_t m = ((int64_t)1 << 20) / (work_per_unit > 0 ? work_per_unit : 1);
    return m < 1 ? 1 : m;
}

/* ---- forward ----------------------------------------------------------------------------- */

static void fwd_range(void *arg, int64_t u0, int64_t u1)
{
    attn_ctx *c = arg;
    const dfm_attn_args *a = c->a;
    int64_t d = a->d, sq = a->sq, sk = a->sk, kb = sk < FWD_KB ? sk : FWD_KB;
    float *s = dfm_cpu_scratch(0, (size_t)(FWD_QB * kb) * sizeof(float));
    float *o = dfm_cpu_scratch(1, (size_t)(FWD_QB * d) * sizeof(float));
    float *ml = dfm_cpu_scratch(2, 2 * FWD_QB * sizeof(float));
    if (!s || !o || !ml) {
        __atomic_store_n(&c->err, 1, __ATOMIC_RELAXED);
        return;
    }
    float *m = ml, *l = ml + FWD_QB;
    for (int64_t u = u0; u < u1; u++) {
        int64_t bh = u / c->nqb, b = bh / a->heads, h = bh % a->heads;
        int64_t i0 = (u % c->nqb) * FWD_QB, rows = sq - i0 < FWD_QB ? sq - i0 : FWD_QB;
        const float *qi = a->q + b * a->qs[0] + h * a->qs[1] + i0 * a->qs[2];
        const float *kh = a->k + b * a->ks[0] + h * a->ks[1], *vh = a->v + b * a->vs[0] + h * a->vs[1];
        for (int64_t r = 0; r < rows; r++) m[r] = -INFINITY, l[r] = 0.0f;
        for (int64_t j0 = 0; j0 < sk; j0 += kb) {
            int64_t n = sk - j0 < kb ? sk - j0 : kb;
            scores(a, qi, kh + j0 * a->ks[2], h, i0, rows, j0, n, s);
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
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)d, (int)n, 1.0f, s, (int)n,
                        vh + j0 * a->vs[2], ldim(a->vs[2], d), j0 > 0 ? 1.0f : 0.0f, o, (int)d);
        }
        float *lse = a->lse ? a->lse + bh * sq + i0 : NULL;
        for (int64_t r = 0; r < rows; r++) {
            float *orow = a->out + b * a->os[0] + h * a->os[1] + (i0 + r) * a->os[2];
            if (l[r] == 0.0f) { /* every score -inf: torch's softmax gives NaN */
                for (int64_t e = 0; e < d; e++) orow[e] = NAN;
                if (lse) lse[r] = -INFINITY;
                continue;
            }
            float inv = 1.0f / l[r];
            for (int64_t e = 0; e < d; e++) orow[e] = o[r * d + e] * inv;
            if (lse) lse[r] = m[r] + logf(l[r]);
        }
    }
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
    attn_ctx c = {.a = a, .nqb = (a->sq + FWD_QB - 1) / FWD_QB, .simd = dfm_cpu_use_avx2()};
    int64_t rows = a->sq < FWD_QB ? a->sq : FWD_QB;
    int saved = blas_single();
    dfm_cpu_parallel(units_bh * c.nqb, min_units(rows * a->sk * a->d), fwd_range, &c);
    blas_restore(saved);
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

static void bwd_range(void *arg, int64_t u0, int64_t u1)
{
    attn_ctx *c = arg;
    const dfm_attn_args *a = c->a;
    int64_t d = a->d, sq = a->sq, sk = a->sk, qb = bwd_rows(sq, sk);
    float *p = dfm_cpu_scratch(0, (size_t)(qb * sk) * sizeof(float));
    float *dp = dfm_cpu_scratch(1, (size_t)(qb * sk) * sizeof(float));
    if (!p || !dp) {
        __atomic_store_n(&c->err, 1, __ATOMIC_RELAXED);
        return;
    }
    int ldq = ldim(a->qs[2], d), ldk = ldim(a->ks[2], d), ldv = ldim(a->vs[2], d), ldo = ldim(a->os[2], d);
    for (int64_t u = u0; u < u1; u++) {
        int64_t b = u / a->heads, h = u % a->heads;
        const float *qh = a->q + b * a->qs[0] + h * a->qs[1], *kh = a->k + b * a->ks[0] + h * a->ks[1];
        const float *vh = a->v + b * a->vs[0] + h * a->vs[1], *doh = c->dout + b * a->os[0] + h * a->os[1];
        float *dqh = c->dq + b * a->qs[0] + h * a->qs[1], *dkh = c->dk + b * a->ks[0] + h * a->ks[1];
        float *dvh = c->dv + b * a->vs[0] + h * a->vs[1];
        const float *lse = a->lse + u * sq;
        for (int64_t j = 0; j < sk; j++) {
            memset(dkh + j * a->ks[2], 0, (size_t)d * sizeof(float));
            memset(dvh + j * a->vs[2], 0, (size_t)d * sizeof(float));
        }
        for (int64_t i0 = 0; i0 < sq; i0 += qb) {
            int64_t rows = sq - i0 < qb ? sq - i0 : qb;
            const float *qi = qh + i0 * a->qs[2], *doi = doh + i0 * a->os[2];
            float *dqi = dqh + i0 * a->qs[2];
            /* P = exp(S - lse) and dP = dO_i V^T over all keys */
            scores(a, qi, kh, h, i0, rows, 0, sk, p);
            for (int64_t r = 0; r < rows; r++) row_exp(p + r * sk, sk, lse[i0 + r], c->simd);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)sk, (int)d, 1.0f, doi, ldo, vh, ldv,
                        0.0f, dp, (int)sk);
            /* D_i = sum_j P dP (in double) from these very P and dP, then dS = P * (dP - D_i) in dP's place */
            for (int64_t r = 0; r < rows; r++) {
                const float *pr = p + r * sk;
                float *ds = dp + r * sk;
                double acc = 0.0;
                for (int64_t e = 0; e < sk; e++) acc += (double)pr[e] * ds[e];
                float di = (float)acc;
                for (int64_t e = 0; e < sk; e++) ds[e] = pr[e] * (ds[e] - di);
            }
            /* dV += P^T dO_i; dQ_i = scale dS K; dK += scale dS^T Q_i */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)sk, (int)d, (int)rows, 1.0f, p, (int)sk, doi, ldo,
                        1.0f, dvh, ldv);
            for (int64_t r = 0; r < rows; r++) memset(dqi + r * a->qs[2], 0, (size_t)d * sizeof(float));
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)d, (int)sk, a->scale, dp, (int)sk, kh,
                        ldk, 0.0f, dqi, ldq);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)sk, (int)d, (int)rows, a->scale, dp, (int)sk, qi,
                        ldq, 1.0f, dkh, ldk);
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
    attn_ctx c = {.a = a, .dout = dout, .dq = dq, .dk = dk, .dv = dv, .simd = dfm_cpu_use_avx2()};
    int saved = blas_single();
    dfm_cpu_parallel(units, min_units(a->sq * a->sk * a->d), bwd_range, &c);
    blas_restore(saved);
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
