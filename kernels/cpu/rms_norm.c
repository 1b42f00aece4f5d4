/* rms_norm.c — RMS norm forward and backward (rms_norm.h). The forward runs rows over the
 * threads; the backward runs chunks of DFM_REDUCE_ROWS rows over the threads, each writing dx
 * for its rows and its partial row of dw, which dfm_cpu_sum_partials adds in chunk order
 * (reduce.h): the same bits for any thread count.
 *
 * The sum of squares is in double in reduce.h's 8-lane order, shared by the AVX2 loops and the
 * scalar loops: it is the exact sum rounded once but for rare cases, where torch's f32 reduction
 * differs from it by a few ulp of the mean square at most. Every f32 step is a separately rounded
 * multiply or add on both paths (-std=c11 implies -ffp-contract=off; no FMA in the AVX2 code),
 * so the two paths give the same bits.
 * Not here: mean subtraction (layer_norm.c), a bias, bf16 outputs. */
#include "cpu/rms_norm.h"
#include "base/error.h"
#include "cpu/cpu.h"
#include "cpu/reduce.h"
#include "cpu/simd.h"

#include <math.h>
#include <string.h>

/* ---- one row, scalar ----------------------------------------------------------------------- */

static float inv_scalar(const float *x, int64_t d, float eps)
{
    double a[8] = {0};
    int64_t j = 0;
    for (; j + 8 <= d; j += 8)
        for (int l = 0; l < 8; l++) {
            float q = x[j + l] * x[j + l];
            a[l] += q;
        }
    double s = dfm_reduce_lanes8(a);
    for (; j < d; j++) {
        float q = x[j] * x[j];
        s += q;
    }
    float ms = (float)s / (float)d;
    return 1.0f / sqrtf(ms + eps);
}

static void norm_scalar(const float *x, int64_t d, float inv, const float *w, float *y)
{
    for (int64_t j = 0; j < d; j++) {
        float n = x[j] * inv;
        y[j] = w ? w[j] * n : n;
    }
}

/* dx for one row (when dx) and its terms of the partial dw row (when pw). */
static void back_scalar(const float *dy, const float *x, int64_t d, float inv, const float *w, float *dx,
                        float *pw)
{
    float c = 0.0f;
    if (dx) {
        double a[8] = {0};
        int64_t j = 0;
        for (; j + 8 <= d; j += 8)
            for (int l = 0; l < 8; l++) {
                float g = w ? dy[j + l] * w[j + l] : dy[j + l];
                float n = x[j + l] * inv;
                a[l] += g * n;
            }
        double s = dfm_reduce_lanes8(a);
        for (; j < d; j++) {
            float g = w ? dy[j] * w[j] : dy[j];
            float n = x[j] * inv;
            s += g * n;
        }
        c = (float)(s / (double)d);
    }
    for (int64_t j = 0; j < d; j++) {
        float dyv = dy[j], n = x[j] * inv;
        if (pw) pw[j] += dyv * n;
        if (dx) {
            float g = w ? dyv * w[j] : dyv;
            dx[j] = inv * (g - n * c); /* after dy[j] is read: dx may alias dy */
        }
    }
}

/* ---- one row, AVX2: the same operations, 8 columns at a time -------------------------------- */

#ifdef DFM_SIMD_X86
#define AVX2 __attribute__((target("avx2,fma")))

AVX2 static inline void acc_pd(__m256d *lo, __m256d *hi, __m256 v)
{
    *lo = _mm256_add_pd(*lo, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
    *hi = _mm256_add_pd(*hi, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
}

AVX2 static float inv_avx2(const float *x, int64_t d, float eps)
{
    __m256d lo = _mm256_setzero_pd(), hi = lo;
    int64_t j = 0;
    for (; j + 8 <= d; j += 8) {
        __m256 v = _mm256_loadu_ps(x + j);
        acc_pd(&lo, &hi, _mm256_mul_ps(v, v));
    }
    double s = dfm_reduce_lanes8_avx2(lo, hi);
    for (; j < d; j++) {
        float q = x[j] * x[j];
        s += q;
    }
    float ms = (float)s / (float)d;
    return 1.0f / sqrtf(ms + eps);
}

AVX2 static void norm_avx2(const float *x, int64_t d, float inv, const float *w, float *y)
{
    const __m256 vi = _mm256_set1_ps(inv);
    int64_t j = 0;
    for (; j + 8 <= d; j += 8) {
        __m256 n = _mm256_mul_ps(_mm256_loadu_ps(x + j), vi);
        _mm256_storeu_ps(y + j, w ? _mm256_mul_ps(_mm256_loadu_ps(w + j), n) : n);
    }
    if (j < d) norm_scalar(x + j, d - j, inv, w ? w + j : NULL, y + j);
}

AVX2 static void back_avx2(const float *dy, const float *x, int64_t d, float inv, const float *w, float *dx,
                           float *pw)
{
    const __m256 vi = _mm256_set1_ps(inv);
    float c = 0.0f;
    int64_t j;
    if (dx) {
        __m256d lo = _mm256_setzero_pd(), hi = lo;
        for (j = 0; j + 8 <= d; j += 8) {
            __m256 g = _mm256_loadu_ps(dy + j);
            if (w) g = _mm256_mul_ps(g, _mm256_loadu_ps(w + j));
            acc_pd(&lo, &hi, _mm256_mul_ps(g, _mm256_mul_ps(_mm256_loadu_ps(x + j), vi)));
        }
        double s = dfm_reduce_lanes8_avx2(lo, hi);
        for (; j < d; j++) {
            float g = w ? dy[j] * w[j] : dy[j];
            float n = x[j] * inv;
            s += g * n;
        }
        c = (float)(s / (double)d);
    }
    const __m256 vc = _mm256_set1_ps(c);
    for (j = 0; j + 8 <= d; j += 8) {
        __m256 dyv = _mm256_loadu_ps(dy + j), n = _mm256_mul_ps(_mm256_loadu_ps(x + j), vi);
        if (pw) _mm256_storeu_ps(pw + j, _mm256_add_ps(_mm256_loadu_ps(pw + j), _mm256_mul_ps(dyv, n)));
        if (dx) {
            __m256 g = w ? _mm256_mul_ps(dyv, _mm256_loadu_ps(w + j)) : dyv;
            _mm256_storeu_ps(dx + j, _mm256_mul_ps(vi, _mm256_sub_ps(g, _mm256_mul_ps(n, vc))));
        }
    }
    for (; j < d; j++) {
        float dyv = dy[j], n = x[j] * inv;
        if (pw) pw[j] += dyv * n;
        if (dx) {
            float g = w ? dyv * w[j] : dyv;
            dx[j] = inv * (g - n * c);
        }
    }
}
#endif

static float row_inv(const float *x, int64_t d, float eps)
{
#ifdef DFM_SIMD_X86
    if (dfm_cpu_use_avx2()) return inv_avx2(x, d, eps);
#endif
    return inv_scalar(x, d, eps);
}

/* ---- forward ------------------------------------------------------------------------------- */

typedef struct {
    const float *x, *dy, *w, *inv;
    int64_t rows, d;
    float eps, *y, *inv_out, *dx, *part;
} rms_ctx;

static void rms_range(void *arg, int64_t r0, int64_t r1)
{
    rms_ctx *c = arg;
    for (int64_t r = r0; r < r1; r++) {
        const float *x = c->x + r * c->d;
        float inv = row_inv(x, c->d, c->eps);
#ifdef DFM_SIMD_X86
        if (dfm_cpu_use_avx2())
            norm_avx2(x, c->d, inv, c->w, c->y + r * c->d);
        else
#endif
            norm_scalar(x, c->d, inv, c->w, c->y + r * c->d);
        if (c->inv_out) c->inv_out[r] = inv;
    }
}

/* w as f32 in scratch slot 0 (NULL stays NULL). */
static int weight_f32(const void *w, dfm_dtype wdt, int64_t d, const float **out)
{
    *out = NULL;
    if (!w) return 0;
    float *wf = dfm_cpu_scratch(0, (size_t)d * sizeof(float));
    if (!wf) return dfm_fail(DFM_E_NOMEM, "rms_norm: out of memory for scratch");
    int rc = dfm_cpu_to_f32(wf, w, wdt, (size_t)d, 0);
    if (rc < 0) return rc;
    *out = wf;
    return 0;
}

int dfm_cpu_rms_norm_save(const float *x, int64_t rows, int64_t d, const void *w, dfm_dtype wdt,
                          float eps, float *y, float *inv)
{
    if (rows <= 0 || d <= 0) return 0;
    rms_ctx c = {.x = x, .rows = rows, .d = d, .eps = eps, .y = y, .inv_out = inv};
    int rc = weight_f32(w, wdt, d, &c.w);
    if (rc < 0) return rc;
    dfm_cpu_parallel(rows, 1 + 16384 / d, rms_range, &c);
    return 0;
}

int dfm_cpu_rms_norm(const float *x, int64_t rows, int64_t d, const void *w, dfm_dtype wdt, float eps,
                     float *y)
{
    return dfm_cpu_rms_norm_save(x, rows, d, w, wdt, eps, y, NULL);
}

/* ---- backward ------------------------------------------------------------------------------ */

static void bwd_chunks(void *arg, int64_t k0, int64_t k1)
{
    rms_ctx *c = arg;
    int64_t d = c->d;
    for (int64_t k = k0; k < k1; k++) {
        float *pw = c->part ? c->part + k * d : NULL;
        if (pw) memset(pw, 0, (size_t)d * sizeof(float));
        int64_t r1 = (k + 1) * DFM_REDUCE_ROWS < c->rows ? (k + 1) * DFM_REDUCE_ROWS : c->rows;
        for (int64_t r = k * DFM_REDUCE_ROWS; r < r1; r++) {
            const float *x = c->x + r * d, *dy = c->dy + r * d;
            float *dx = c->dx ? c->dx + r * d : NULL;
            float inv = c->inv ? c->inv[r] : row_inv(x, d, c->eps);
#ifdef DFM_SIMD_X86
            if (dfm_cpu_use_avx2())
                back_avx2(dy, x, d, inv, c->w, dx, pw);
            else
#endif
                back_scalar(dy, x, d, inv, c->w, dx, pw);
        }
    }
}

int dfm_cpu_rms_norm_backward(const float *dy, const float *x, const float *inv, int64_t rows, int64_t d,
                              const void *w, dfm_dtype wdt, float eps, float *dx, float *dw)
{
    if (rows <= 0 || d <= 0) return 0;
    int64_t chunks = dfm_reduce_chunks(rows);
    rms_ctx c = {.x = x, .dy = dy, .inv = inv, .rows = rows, .d = d, .eps = eps, .dx = dx};
    int rc = weight_f32(w, wdt, d, &c.w);
    if (rc < 0) return rc;
    if (dw) {
        c.part = dfm_cpu_scratch(1, (size_t)(chunks * d) * sizeof(float));
        if (!c.part) return dfm_fail(DFM_E_NOMEM, "rms_norm backward: out of memory for partial sums");
    }
    dfm_cpu_parallel(chunks, 1 + 16384 / (DFM_REDUCE_ROWS * d), bwd_chunks, &c);
    if (dw) dfm_cpu_sum_partials(c.part, 1, chunks, d, dw, d);
    return 0;
}
