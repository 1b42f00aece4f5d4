/* act.c — GELU (tanh) forward and backward, SiLU backward (act.h): plain loops over thread
 * ranges, AVX2 8 at a time when dfm_cpu_use_avx2() (the scalar loop does the tails and is the
 * fallback). Compiled with -std=c11, which implies -ffp-contract=off: every f32 operation is
 * rounded separately, as torch's separate vector operations are; the AVX2 code uses no FMA in
 * f32 either.
 *
 * tanh is evaluated in double and rounded once (the correctly rounded f32 tanh but for rare
 * double-rounding cases, which torch's Sleef tanhf gives for 99.9% of inputs). The AVX2 path of
 * the backward computes that double tanh 4 lanes at a time exactly as gated.c's gelu_new does
 * (expm1 by a degree-13 polynomial; see gated.c for the derivation and the measured error: within
 * 3 ulp (double) of glibc's tanh), and sends a group of 8 to the scalar code when a lane lies
 * within 64 ulp (double) of a point halfway between two floats, so that its f32 tanh, and with
 * it every result, is the scalar path's.
 * Not here: the forward's own loops (gelu_tanh is gelu_new's arithmetic: gated.c runs it). */
#include "cpu/act.h"
#include "cpu/cpu.h"
#include "cpu/gated.h"
#include "cpu/simd.h"

#include <string.h>
#include <math.h>

#define CHUNK 16384 /* elements per thread at least */

static const float k_kappa = 0.044715f;                                /* (float)0.044715 */
static const float k_beta = (float)(M_SQRT2 * M_2_SQRTPI * 0.5);        /* ATen's kBeta */
static const float k_3kappa = 3.0f * 0.044715f;                          /* scalar_t(3) * kKappa */

typedef struct {
    const float *dy, *x;
    float *dx;
} act_ctx;

void dfm_cpu_gelu_tanh(const float *x, float *y, int64_t n) { dfm_cpu_gelu_new(x, y, n); }

static inline float gelu_back_1(float dy, float x)
{
    float x2 = x * x;
    float c = x2 * x;
    float u = k_kappa * c;
    u = x + u;
    u = k_beta * u;
    float t = (float)tanh((double)u);
    float left = 0.5f * x;
    float right = 1.0f + t;
    float dleft = 0.5f * right;
    float dt = 1.0f - t * t;
    float du = k_3kappa * x2;
    du = 1.0f + du;
    du = k_beta * du;
    float rd = left * dt;
    rd = rd * du;
    return dy * (dleft + rd);
}

static inline float silu_back_1(float dy, float x)
{
    float s = 1.0f / (1.0f + (float)exp(-(double)x)); /* the correctly rounded expf, as CUDA's */
    float q = 1.0f - s;
    q = x * q;
    q = 1.0f + q;
    return (dy * s) * q;
}

#ifdef DFM_SIMD_X86
#define AVX2 __attribute__((target("avx2,fma")))
#define MID_TOL 64 /* ulp (double) around an f32 rounding midpoint that go to the scalar tanh */

/* tanh of 4 doubles (gated.c's tanh_pd); *near gets all-ones lanes whose result lies within
 * MID_TOL ulp of a point halfway between two floats. */
AVX2 static inline __m256d tanh_pd(__m256d u, __m256i *near)
{
    const __m256d sign = _mm256_set1_pd(-0.0);
    __m256d a = _mm256_min_pd(_mm256_andnot_pd(sign, u), _mm256_set1_pd(20.0)); /* NaN: 20 */
    __m256d x = _mm256_mul_pd(a, _mm256_set1_pd(-2.0));                         /* [-40, 0] */
    __m256d k = _mm256_round_pd(_mm256_mul_pd(x, _mm256_set1_pd(1.44269504088896338700)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256d r = _mm256_fnmadd_pd(k, _mm256_set1_pd(6.93147180369123816490e-01), x);
    r = _mm256_fnmadd_pd(k, _mm256_set1_pd(1.90821492927058770002e-10), r);
    __m256d q = _mm256_set1_pd(1.0 / 6227020800.0); /* 1/13! */
    q = _mm256_fmadd_pd(q, r, _mm256_set1_pd(1.0 / 479001600.0));
    q = _mm256_fmadd_pd(q, r, _mm256_set1_pd(1.0 / 39916800.0));
    q = _mm256_fmadd_pd(q, r, _mm256_set1_pd(1.0 / 3628800.0));
    q = _mm256_fmadd_pd(q, r, _mm256_set1_pd(1.0 / 362880.0));
    q = _mm256_fmadd_pd(q, r, _mm256_set1_pd(1.0 / 40320.0));
    q = _mm256_fmadd_pd(q, r, _mm256_set1_pd(1.0 / 5040.0));
    q = _mm256_fmadd_pd(q, r, _mm256_set1_pd(1.0 / 720.0));
    q = _mm256_fmadd_pd(q, r, _mm256_set1_pd(1.0 / 120.0));
    q = _mm256_fmadd_pd(q, r, _mm256_set1_pd(1.0 / 24.0));
    q = _mm256_fmadd_pd(q, r, _mm256_set1_pd(1.0 / 6.0));
    q = _mm256_fmadd_pd(q, r, _mm256_set1_pd(0.5));
    __m256d em1 = _mm256_fmadd_pd(_mm256_mul_pd(r, r), q, r); /* expm1(r) */
    __m256i ki = _mm256_cvtepi32_epi64(_mm256_cvtpd_epi32(k));
    __m256d s = _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_add_epi64(ki, _mm256_set1_epi64x(1023)), 52));
    __m256d e = _mm256_fmadd_pd(s, em1, _mm256_sub_pd(s, _mm256_set1_pd(1.0)));
    __m256d t = _mm256_div_pd(e, _mm256_add_pd(e, _mm256_set1_pd(2.0))); /* -tanh|u| */
    t = _mm256_andnot_pd(sign, t);
    __m256i low = _mm256_sub_epi64(_mm256_castpd_si256(t), _mm256_set1_epi64x(0x10000000 - MID_TOL));
    low = _mm256_and_si256(low, _mm256_set1_epi64x(0x1fffffff));
    *near = _mm256_cmpgt_epi64(_mm256_set1_epi64x(2 * MID_TOL + 1), low);
    t = _mm256_or_pd(t, _mm256_and_pd(sign, u));
    return _mm256_blendv_pd(t, u, _mm256_cmp_pd(u, u, _CMP_UNORD_Q));
}

AVX2 static int64_t gelu_back_avx2(const float *dys, const float *xs, float *dxs, int64_t n)
{
    const __m256 kk = _mm256_set1_ps(k_kappa), kb = _mm256_set1_ps(k_beta), k3 = _mm256_set1_ps(k_3kappa);
    const __m256 one = _mm256_set1_ps(1.0f), half = _mm256_set1_ps(0.5f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(xs + i), dy = _mm256_loadu_ps(dys + i);
        __m256 x2 = _mm256_mul_ps(x, x);
        __m256 u = _mm256_mul_ps(kk, _mm256_mul_ps(x2, x));
        u = _mm256_mul_ps(kb, _mm256_add_ps(x, u));
        __m256i n0, n1;
        __m256d t0 = tanh_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(u)), &n0);
        __m256d t1 = tanh_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(u, 1)), &n1);
        __m256i nr = _mm256_or_si256(n0, n1);
        if (__builtin_expect(!_mm256_testz_si256(nr, nr), 0)) {
            float xv[8], dyv[8]; /* dx may alias x or dy */
            _mm256_storeu_ps(xv, x);
            _mm256_storeu_ps(dyv, dy);
            for (int j = 0; j < 8; j++) dxs[i + j] = gelu_back_1(dyv[j], xv[j]);
            continue;
        }
        __m256 t = _mm256_set_m128(_mm256_cvtpd_ps(t1), _mm256_cvtpd_ps(t0));
        __m256 left = _mm256_mul_ps(half, x);
        __m256 dleft = _mm256_mul_ps(half, _mm256_add_ps(one, t));
        __m256 dt = _mm256_sub_ps(one, _mm256_mul_ps(t, t));
        __m256 du = _mm256_mul_ps(kb, _mm256_add_ps(one, _mm256_mul_ps(k3, x2)));
        __m256 rd = _mm256_mul_ps(_mm256_mul_ps(left, dt), du);
        _mm256_storeu_ps(dxs + i, _mm256_mul_ps(dy, _mm256_add_ps(dleft, rd)));
    }
    return i;
}

AVX2 static int64_t silu_back_avx2(const float *dys, const float *xs, float *dxs, int64_t n)
{
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(xs + i), dy = _mm256_loadu_ps(dys + i);
        __m256 s = _mm256_div_ps(one, _mm256_add_ps(one, dfm_exp256(_mm256_sub_ps(zero, x))));
        __m256 q = _mm256_add_ps(one, _mm256_mul_ps(x, _mm256_sub_ps(one, s)));
        _mm256_storeu_ps(dxs + i, _mm256_mul_ps(_mm256_mul_ps(dy, s), q));
    }
    return i;
}
#endif

static void gelu_back_range(void *arg, int64_t i0, int64_t i1)
{
    act_ctx *c = arg;
    const float *dy = c->dy + i0, *x = c->x + i0;
    float *dx = c->dx + i0;
    int64_t n = i1 - i0, i = 0;
#ifdef DFM_SIMD_X86
    if (dfm_cpu_use_avx2()) {
        i = gelu_back_avx2(dy, x, dx, n);
        if (i < n) { /* the tail through the same vector code, so no element depends on the split */
            float db[8] = {0}, xb[8] = {0}, ob[8];
            memcpy(db, dy + i, (size_t)(n - i) * sizeof *db);
            memcpy(xb, x + i, (size_t)(n - i) * sizeof *xb);
            gelu_back_avx2(db, xb, ob, 8);
            memcpy(dx + i, ob, (size_t)(n - i) * sizeof *ob);
            i = n;
        }
    }
#endif
    for (; i < n; i++) dx[i] = gelu_back_1(dy[i], x[i]);
}

void dfm_cpu_gelu_tanh_backward(const float *dy, const float *x, float *dx, int64_t n)
{
    act_ctx c = {dy, x, dx};
    dfm_cpu_parallel(n, CHUNK, gelu_back_range, &c);
}

static void silu_back_range(void *arg, int64_t i0, int64_t i1)
{
    act_ctx *c = arg;
    const float *dy = c->dy + i0, *x = c->x + i0;
    float *dx = c->dx + i0;
    int64_t n = i1 - i0, i = 0;
#ifdef DFM_SIMD_X86
    if (dfm_cpu_use_avx2()) {
        i = silu_back_avx2(dy, x, dx, n);
        if (i < n) { /* the tail through the same vector code, so no element depends on the split */
            float db[8] = {0}, xb[8] = {0}, ob[8];
            memcpy(db, dy + i, (size_t)(n - i) * sizeof *db);
            memcpy(xb, x + i, (size_t)(n - i) * sizeof *xb);
            silu_back_avx2(db, xb, ob, 8);
            memcpy(dx + i, ob, (size_t)(n - i) * sizeof *ob);
            i = n;
        }
    }
#endif
    for (; i < n; i++) dx[i] = silu_back_1(dy[i], x[i]);
}

void dfm_cpu_silu_backward(const float *dy, const float *x, float *dx, int64_t n)
{
    act_ctx c = {dy, x, dx};
    dfm_cpu_parallel(n, CHUNK, silu_back_range, &c);
}
