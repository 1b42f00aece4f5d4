/* attention.c — blocked SDPA (attention.h): per head and block of query rows, one sgemm for the
 * scores, a row softmax (AVX2 exp when available), one sgemm with v, a row scaling.
 * Not here: masks, dropout, a single-pass online softmax over key blocks (a block of query rows
 * times all keys is small enough at the VAE's and the transformer's sequence lengths). */
#include "cpu/attention.h"
#include "base/error.h"
#include "cpu/cpu.h"
#include "cpu/simd.h"

#include <cblas.h>
#include <math.h>

#define SCORE_FLOATS ((int64_t)4 << 20)

typedef struct {
    float *s;    /* scores [rows, sk] -> exp(s - max) */
    float *sums; /* [rows] */
    int64_t sk;
} soft_ctx;

#ifdef DFM_SIMD_X86
__attribute__((target("avx2,fma"))) static float exp_row_avx2(float *s, int64_t n)
{
    int64_t i = 0;
    float mx = -__builtin_inff();
    if (n >= 8) {
        __m256 m = _mm256_loadu_ps(s);
        for (i = 8; i + 8 <= n; i += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(s + i));
        mx = dfm_hmax256(m);
    }
    for (; i < n; i++) mx = s[i] > mx ? s[i] : mx;
    __m256 vm = _mm256_set1_ps(mx), acc = _mm256_setzero_ps();
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 e = dfm_exp256(_mm256_sub_ps(_mm256_loadu_ps(s + i), vm));
        _mm256_storeu_ps(s + i, e);
        acc = _mm256_add_ps(acc, e);
    }
    float sum = dfm_hsum256(acc);
    for (; i < n; i++) {
        s[i] = expf(s[i] - mx);
        sum += s[i];
    }
    return sum;
}
#endif

static float exp_row_scalar(float *s, int64_t n)
{
    float mx = -INFINITY, sum = 0.0f;
    for (int64_t i = 0; i < n; i++) mx = s[i] > mx ? s[i] : mx;
    for (int64_t i = 0; i < n; i++) {
        s[i] = expf(s[i] - mx);
        sum += s[i];
    }
    return sum;
}

static void soft_range(void *arg, int64_t r0, int64_t r1)
{
    soft_ctx *c = arg;
    for (int64_t r = r0; r < r1; r++) {
        float *s = c->s + r * c->sk;
#ifdef DFM_SIMD_X86
        if (dfm_cpu_use_avx2()) {
            c->sums[r] = exp_row_avx2(s, c->sk);
            continue;
        }
#endif
        c->sums[r] = exp_row_scalar(s, c->sk);
    }
}

typedef struct {
    float *o;
    const float *sums;
    int64_t d;
} norm_ctx;

static void norm_range(void *arg, int64_t r0, int64_t r1)
{
    norm_ctx *c = arg;
    for (int64_t r = r0; r < r1; r++) {
        float inv = 1.0f / c->sums[r], *o = c->o + r * c->d;
        for (int64_t j = 0; j < c->d; j++) o[j] *= inv;
    }
}

int dfm_cpu_attention(const float *q, const float *k, const float *v, float scale, float *out,
                      int64_t heads, int64_t sq, int64_t sk, int64_t d)
{
    if (heads <= 0 || sq <= 0 || d <= 0) return 0;
    int64_t qb = SCORE_FLOATS / (sk > 0 ? sk : 1);
    if (qb < 16) qb = 16;
    if (qb > sq) qb = sq;
    float *s = dfm_cpu_scratch(0, (size_t)qb * (sk > 0 ? sk : 1) * sizeof(float));
    float *sums = s ? dfm_cpu_scratch(1, (size_t)qb * sizeof(float)) : NULL;
    if (!s || !sums) return dfm_fail(DFM_E_NOMEM, "attention: out of memory for scratch");
    for (int64_t h = 0; h < heads; h++) {
        const float *qh = q + h * sq * d, *kh = k + h * sk * d, *vh = v + h * sk * d;
        float *oh = out + h * sq * d;
        for (int64_t r0 = 0; r0 < sq; r0 += qb) {
            int64_t rows = sq - r0 < qb ? sq - r0 : qb;
            if (sk <= 0) { /* softmax over nothing: torch gives NaN */
                for (int64_t i = 0; i < rows * d; i++) oh[r0 * d + i] = NAN;
                continue;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)sk, (int)d, scale,
                        qh + r0 * d, (int)d, kh, (int)d, 0.0f, s, (int)sk);
            soft_ctx sc = {s, sums, sk};
            dfm_cpu_parallel(rows, 1 + 32768 / sk, soft_range, &sc);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)d, (int)sk, 1.0f, s,
                        (int)sk, vh, (int)d, 0.0f, oh + r0 * d, (int)d);
            norm_ctx nc = {oh + r0 * d, sums, d};
            dfm_cpu_parallel(rows, 1 + 32768 / d, norm_range, &nc);
        }
    }
    return 0;
}
