/* layer_norm.c — layer norm forward and backward (layer_norm.h). The forward runs rows over the
 * threads; the backward runs chunks of DFM_REDUCE_ROWS rows over the threads, each chunk
 * writing dx for its rows and its partial rows of dw and db, which dfm_cpu_sum_partials then
 * adds in chunk order (reduce.h): the same bits for any thread count.
 *
 * Row sums are in double in reduce.h's 8-lane order, which the AVX2 loops (two __m256d
 * accumulators) and the scalar loops share; every f32 operation is a separate rounded multiply or
 * add on both paths (-std=c11 implies -ffp-contract=off here; the AVX2 code uses no FMA), so the
 * two paths give the same bits.
 * Not here: the modulation after the norm (modulate.c), bf16 outputs, Welford's single pass (the
 * row is read twice; it is in L1 after the first read). */
#include "cpu/layer_norm.h"
#include "base/error.h"
#include "cpu/cpu.h"
#include "cpu/reduce.h"
#include "cpu/simd.h"

#include <math.h>
#include <string.h>

/* ---- one row, scalar ----------------------------------------------------------------------- */

static void stats_scalar(const float *x, int64_t d, float eps, float *mean, float *rstd)
{
    double a[8] = {0};
    int64_t j = 0;
    for (; j + 8 <= d; j += 8)
        for (int l = 0; l < 8; l++) a[l] += x[j + l];
    double s = dfm_reduce_lanes8(a);
    for (; j < d; j++) s += x[j];
    float m = (float)(s / (double)d);
    double md = m;
    memset(a, 0, sizeof a);
    for (j = 0; j + 8 <= d; j += 8)
        for (int l = 0; l < 8; l++) {
            double t = (double)x[j + l] - md;
            a[l] += t * t;
        }
    s = dfm_reduce_lanes8(a);
    for (; j < d; j++) {
        double t = (double)x[j] - md;
        s += t * t;
    }
    float var = (float)(s / (double)d);
    *mean = m;
    *rstd = 1.0f / sqrtf(var + eps);
}

static void norm_scalar(const float *x, int64_t d, float m, float r, const float *w, const float *b,
                        float *y)
{
    for (int64_t j = 0; j < d; j++) {
        float t = (x[j] - m) * r;
        if (w) t = t * w[j];
        if (b) t = t + b[j];
        y[j] = t;
    }
}

/* dx for one row (when dx) and its terms of the partial dw / db rows (when pw / pb). */
static void back_scalar(const float *dy, const float *x, int64_t d, float m, float r, const float *w,
                        float *dx, float *pw, float *pb)
{
    float a = 0.0f, c = 0.0f;
    if (dx) {
        double sa[8] = {0}, sc[8] = {0};
        int64_t j = 0;
        for (; j + 8 <= d; j += 8)
            for (int l = 0; l < 8; l++) {
                float g = w ? dy[j + l] * w[j + l] : dy[j + l];
                float xh = (x[j + l] - m) * r;
                sa[l] += g;
                sc[l] += g * xh;
            }
        double ta = dfm_reduce_lanes8(sa), tc = dfm_reduce_lanes8(sc);
        for (; j < d; j++) {
            float g = w ? dy[j] * w[j] : dy[j];
            float xh = (x[j] - m) * r;
            ta += g;
            tc += g * xh;
        }
        a = (float)(ta / (double)d);
        c = (float)(tc / (double)d);
    }
    for (int64_t j = 0; j < d; j++) {
        float dyv = dy[j], xh = (x[j] - m) * r;
        if (pw) pw[j] += dyv * xh;
        if (pb) pb[j] += dyv;
        if (dx) {
            float g = w ? dyv * w[j] : dyv;
            dx[j] = r * ((g - a) - xh * c); /* after dy[j] is read: dx may alias dy */
        }
    }
}

/* ---- one row, AVX2: the same operations, 8 columns at a time -------------------------------- */

#ifdef DFM_SIMD_X86
#define AVX2 __attribute__((target("avx2,fma")))

AVX2 static void stats_avx2(const float *x, int64_t d, float eps, float *mean, float *rstd)
{
    __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
    int64_t j = 0;
    for (; j + 8 <= d; j += 8) {
        __m256 v = _mm256_loadu_ps(x + j);
        lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
        hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
    }
    double s = dfm_reduce_lanes8_avx2(lo, hi);
    for (; j < d; j++) s += x[j];
    float m = (float)(s / (double)d);
    double md = m;
    const __m256d vm = _mm256_set1_pd(md);
    lo = hi = _mm256_setzero_pd();
    for (j = 0; j + 8 <= d; j += 8) {
        __m256 v = _mm256_loadu_ps(x + j);
        __m256d t0 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), vm);
        __m256d t1 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)), vm);
        lo = _mm256_add_pd(lo, _mm256_mul_pd(t0, t0));
        hi = _mm256_add_pd(hi, _mm256_mul_pd(t1, t1));
    }
    s = dfm_reduce_lanes8_avx2(lo, hi);
    for (; j < d; j++) {
        double t = (double)x[j] - md;
        s += t * t;
    }
    float var = (float)(s / (double)d);
    *mean = m;
    *rstd = 1.0f / sqrtf(var + eps);
}

AVX2 static void norm_avx2(const float *x, int64_t d, float m, float r, const float *w, const float *b,
                           float *y)
{
    const __m256 vm = _mm256_set1_ps(m), vr = _mm256_set1_ps(r);
    int64_t j = 0;
    for (; j + 8 <= d; j += 8) {
        __m256 t = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + j), vm), vr);
        if (w) t = _mm256_mul_ps(t, _mm256_loadu_ps(w + j));
        if (b) t = _mm256_add_ps(t, _mm256_loadu_ps(b + j));
        _mm256_storeu_ps(y + j, t);
    }
    if (j < d) norm_scalar(x + j, d - j, m, r, w ? w + j : NULL, b ? b + j : NULL, y + j);
}

/* Sum of 8 f32 values widened to double, into lo (lanes 0-3) and hi (lanes 4-7). */
AVX2 static inline void acc_pd(__m256d *lo, __m256d *hi, __m256 v)
{
    *lo = _mm256_add_pd(*lo, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
    *hi = _mm256_add_pd(*hi, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
}

AVX2 static void back_avx2(const float *dy, const float *x, int64_t d, float m, float r, const float *w,
                           float *dx, float *pw, float *pb)
{
    const __m256 vm = _mm256_set1_ps(m), vr = _mm256_set1_ps(r);
    float a = 0.0f, c = 0.0f;
    int64_t j;
    if (dx) {
        __m256d alo = _mm256_setzero_pd(), ahi = alo, clo = alo, chi = alo;
        for (j = 0; j + 8 <= d; j += 8) {
            __m256 g = _mm256_loadu_ps(dy + j);
            if (w) g = _mm256_mul_ps(g, _mm256_loadu_ps(w + j));
            __m256 xh = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + j), vm), vr);
            acc_pd(&alo, &ahi, g);
            acc_pd(&clo, &chi, _mm256_mul_ps(g, xh));
        }
        double ta = dfm_reduce_lanes8_avx2(alo, ahi), tc = dfm_reduce_lanes8_avx2(clo, chi);
        for (; j < d; j++) {
            float g = w ? dy[j] * w[j] : dy[j];
            float xh = (x[j] - m) * r;
            ta += g;
            tc += g * xh;
        }
        a = (float)(ta / (double)d);
        c = (float)(tc / (double)d);
    }
    const __m256 va = _mm256_set1_ps(a), vc = _mm256_set1_ps(c);
    for (j = 0; j + 8 <= d; j += 8) {
        __m256 dyv = _mm256_loadu_ps(dy + j);
        __m256 xh = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + j), vm), vr);
        if (pw) _mm256_storeu_ps(pw + j, _mm256_add_ps(_mm256_loadu_ps(pw + j), _mm256_mul_ps(dyv, xh)));
        if (pb) _mm256_storeu_ps(pb + j, _mm256_add_ps(_mm256_loadu_ps(pb + j), dyv));
        if (dx) {
            __m256 g = w ? _mm256_mul_ps(dyv, _mm256_loadu_ps(w + j)) : dyv;
            __m256 t = _mm256_sub_ps(_mm256_sub_ps(g, va), _mm256_mul_ps(xh, vc));
            _mm256_storeu_ps(dx + j, _mm256_mul_ps(vr, t));
        }
    }
    for (; j < d; j++) {
        float dyv = dy[j], xh = (x[j] - m) * r;
        if (pw) pw[j] += dyv * xh;
        if (pb) pb[j] += dyv;
        if (dx) {
            float g = w ? dyv * w[j] : dyv;
            dx[j] = r * ((g - a) - xh * c);
        }
    }
}
#endif

static void row_stats(const float *x, int64_t d, float eps, float *mean, float *rstd)
{
#ifdef DFM_SIMD_X86
    if (dfm_cpu_use_avx2()) {
        stats_avx2(x, d, eps, mean, rstd);
        return;
    }
#endif
    stats_scalar(x, d, eps, mean, rstd);
}

/* ---- forward ------------------------------------------------------------------------------- */

typedef struct {
    const float *x, *dy, *w, *b, *mean, *rstd;
    int64_t rows, d, chunks;
    float eps, *y, *mean_out, *rstd_out, *dx, *part_w, *part_b;
} ln_ctx;

static void fwd_range(void *arg, int64_t r0, int64_t r1)
{
    ln_ctx *c = arg;
    for (int64_t r = r0; r < r1; r++) {
        const float *x = c->x + r * c->d;
        float m, rs;
        row_stats(x, c->d, c->eps, &m, &rs);
#ifdef DFM_SIMD_X86
        if (dfm_cpu_use_avx2())
            norm_avx2(x, c->d, m, rs, c->w, c->b, c->y + r * c->d);
        else
#endif
            norm_scalar(x, c->d, m, rs, c->w, c->b, c->y + r * c->d);
        if (c->mean_out) c->mean_out[r] = m;
        if (c->rstd_out) c->rstd_out[r] = rs;
    }
}

/* A parameter vector as f32 in scratch slot `slot` (NULL stays NULL). */
static int param_f32(int slot, const void *p, dfm_dtype dt, int64_t d, const float **out)
{
    *out = NULL;
    if (!p) return 0;
    float *f = dfm_cpu_scratch(slot, (size_t)d * sizeof(float));
    if (!f) return dfm_fail(DFM_E_NOMEM, "layer_norm: out of memory for scratch");
    int rc = dfm_cpu_to_f32(f, p, dt, (size_t)d, 0);
    if (rc < 0) return rc;
    *out = f;
    return 0;
}

int dfm_cpu_layer_norm(const float *x, int64_t rows, int64_t d, const void *w, dfm_dtype wdt,
                       const void *b, dfm_dtype bdt, float eps, float *y, float *mean, float *rstd)
{
    if (rows <= 0 || d <= 0) return 0;
    ln_ctx c = {.x = x, .rows = rows, .d = d, .eps = eps, .y = y, .mean_out = mean, .rstd_out = rstd};
    int rc = param_f32(0, w, wdt, d, &c.w);
    if (rc == 0) rc = param_f32(1, b, bdt, d, &c.b);
    if (rc < 0) return rc;
    dfm_cpu_parallel(rows, 1 + 16384 / d, fwd_range, &c);
    return 0;
}

/* ---- backward ------------------------------------------------------------------------------ */

static void bwd_chunks(void *arg, int64_t k0, int64_t k1)
{
    ln_ctx *c = arg;
    int64_t d = c->d;
    for (int64_t k = k0; k < k1; k++) {
        float *pw = c->part_w ? c->part_w + k * d : NULL, *pb = c->part_b ? c->part_b + k * d : NULL;
        if (pw) memset(pw, 0, (size_t)d * sizeof(float));
        if (pb) memset(pb, 0, (size_t)d * sizeof(float));
        int64_t r1 = (k + 1) * DFM_REDUCE_ROWS < c->rows ? (k + 1) * DFM_REDUCE_ROWS : c->rows;
        for (int64_t r = k * DFM_REDUCE_ROWS; r < r1; r++) {
            const float *x = c->x + r * d, *dy = c->dy + r * d;
            float *dx = c->dx ? c->dx + r * d : NULL;
            float m, rs;
            if (c->mean) {
                m = c->mean[r], rs = c->rstd[r];
            } else {
                row_stats(x, d, c->eps, &m, &rs);
            }
#ifdef DFM_SIMD_X86
            if (dfm_cpu_use_avx2())
                back_avx2(dy, x, d, m, rs, c->w, dx, pw, pb);
            else
#endif
                back_scalar(dy, x, d, m, rs, c->w, dx, pw, pb);
        }
    }
}

int dfm_cpu_layer_norm_backward(const float *dy, const float *x, const float *mean, const float *rstd,
                                int64_t rows, int64_t d, const void *w, dfm_dtype wdt, float eps,
                                float *dx, float *dw, float *db)
{
    if (rows <= 0 || d <= 0) return 0;
    if (!mean != !rstd) return dfm_fail(DFM_E_ARG, "layer_norm backward: mean and rstd must both be given or both NULL");
    int64_t chunks = dfm_reduce_chunks(rows);
    ln_ctx c = {.x = x, .dy = dy, .mean = mean, .rstd = rstd, .rows = rows, .d = d, .chunks = chunks,
                .eps = eps, .dx = dx};
    int rc = param_f32(0, w, wdt, d, &c.w);
    if (rc < 0) return rc;
    int np = (dw != NULL) + (db != NULL);
    if (np) {
        float *part = dfm_cpu_scratch(1, (size_t)(np * chunks * d) * sizeof(float));
        if (!part) return dfm_fail(DFM_E_NOMEM, "layer_norm backward: out of memory for partial sums");
        c.part_w = dw ? part : NULL;
        c.part_b = db ? part + (dw ? chunks * d : 0) : NULL;
    }
    dfm_cpu_parallel(chunks, 1 + 16384 / (DFM_REDUCE_ROWS * d), bwd_chunks, &c);
    if (dw) dfm_cpu_sum_partials(c.part_w, 1, chunks, d, dw, d);
    if (db) dfm_cpu_sum_partials(c.part_b, 1, chunks, d, db, d);
    return 0;
}
