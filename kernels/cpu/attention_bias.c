/* attention_bias.c — attention with an additive bias (attention_bias.h): per head and block of
 * query rows, the bias block is copied into the score buffer and one sgemm adds scale * q k^T
 * to it (beta = 1), a row softmax normalizes in place (AVX2 exp when available), one sgemm with
 * v writes the head's columns of out (leading dimension heads * d: no transposes anywhere).
 * Not here: a fused single-pass (flash) kernel, masks other than the bias, dropout. */
#include "cpu/attention_bias.h"
#include "base/error.h"
#include "cpu/cpu.h"
#include "cpu/simd.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#define SCORE_FLOATS ((int64_t)4 << 20)

#ifdef DFM_SIMD_X86
/* s = exp(s - max); returns the sum. */
__attribute__((target("avx2,fma"))) static float exp_row_avx2(float *s, int64_t n, float mx)
{
    __m256 vm = _mm256_set1_ps(mx), acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
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

typedef struct {
    float *s;
    int64_t sk;
} soft_ctx;

static void soft_range(void *arg, int64_t r0, int64_t r1)
{
    soft_ctx *c = arg;
    int64_t n = c->sk;
    for (int64_t r = r0; r < r1; r++) {
        float *s = c->s + r * n, mx = -INFINITY, sum = 0.0f;
        for (int64_t i = 0; i < n; i++) mx = s[i] > mx ? s[i] : mx;
        if (mx == -INFINITY) { /* every key masked: torch's softmax gives NaN */
            for (int64_t i = 0; i < n; i++) s[i] = NAN;
            continue;
        }
#ifdef DFM_SIMD_X86
        if (dfm_cpu_use_avx2())
            sum = exp_row_avx2(s, n, mx);
        else
#endif
            for (int64_t i = 0; i < n; i++) {
                s[i] = expf(s[i] - mx);
                sum += s[i];
            }
        float inv = 1.0f / sum;
        for (int64_t i = 0; i < n; i++) s[i] *= inv;
    }
}

int dfm_cpu_attention_bias(const float *q, const float *k, const float *v, const float *bias, float scale,
                           float *out, int64_t heads, int64_t sq, int64_t sk, int64_t d)
{
    if (heads <= 0 || sq <= 0 || d <= 0) return 0;
    int64_t ld = heads * d;
    if (sk <= 0) {
        for (int64_t i = 0; i < sq * ld; i++) out[i] = NAN;
        return 0;
    }
    int64_t qb = SCORE_FLOATS / sk;
    if (qb < 16) qb = 16;
    if (qb > sq) qb = sq;
    float *s = dfm_cpu_scratch(0, (size_t)(qb * sk) * sizeof(float));
    if (!s) return dfm_fail(DFM_E_NOMEM, "attention_bias: out of memory for scratch");
    for (int64_t h = 0; h < heads; h++) {
        for (int64_t r0 = 0; r0 < sq; r0 += qb) {
            int64_t rows = sq - r0 < qb ? sq - r0 : qb;
            if (bias) memcpy(s, bias + (h * sq + r0) * sk, (size_t)(rows * sk) * sizeof(float));
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)sk, (int)d, scale,
                        q + r0 * ld + h * d, (int)ld, k + h * d, (int)ld, bias ? 1.0f : 0.0f, s, (int)sk);
            soft_ctx sc = {s, sk};
            dfm_cpu_parallel(rows, 1 + 32768 / sk, soft_range, &sc);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)d, (int)sk, 1.0f, s, (int)sk,
                        v + h * d, (int)ld, 0.0f, out + r0 * ld + h * d, (int)ld);
        }
    }
    return 0;
}
