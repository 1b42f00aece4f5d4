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
 * it every result, is the scalar path's. With AVX-512 (dfm_cpu_use_avx512()) the same steps run
 * 16 at a time (the double tanh 8 lanes at a time): the same bits.
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
        __m256d t0 = dfm_tanh_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(u)), &n0);
        __m256d t1 = dfm_tanh_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(u, 1)), &n1);
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

/* gelu_back_avx2's steps, 16 at a time (tanh 8 doubles at a time, dfm_tanh_pd512): the same
 * bits; a near lane sends its group of 16 to the scalar code. */
__attribute__((target("avx2,fma,avx512f,avx512dq"))) static int64_t gelu_back_avx512(const float *dys, const float *xs,
                                                                                    float *dxs, int64_t n)
{
    const __m512 kk = _mm512_set1_ps(k_kappa), kb = _mm512_set1_ps(k_beta), k3 = _mm512_set1_ps(k_3kappa);
    const __m512 one = _mm512_set1_ps(1.0f), half = _mm512_set1_ps(0.5f);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 x = _mm512_loadu_ps(xs + i), dy = _mm512_loadu_ps(dys + i);
        __m512 x2 = _mm512_mul_ps(x, x);
        __m512 u = _mm512_mul_ps(kk, _mm512_mul_ps(x2, x));
        u = _mm512_mul_ps(kb, _mm512_add_ps(x, u));
        __mmask8 n0, n1;
        __m512d t0 = dfm_tanh_pd512(_mm512_cvtps_pd(_mm512_castps512_ps256(u)), &n0);
        __m512d t1 = dfm_tanh_pd512(_mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(u), 1))), &n1);
        if (__builtin_expect((n0 | n1) != 0, 0)) {
            float xv[16], dyv[16]; /* dx may alias x or dy */
            _mm512_storeu_ps(xv, x);
            _mm512_storeu_ps(dyv, dy);
            for (int j = 0; j < 16; j++) dxs[i + j] = gelu_back_1(dyv[j], xv[j]);
            continue;
        }
        __m512 t = _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps(t0)), _mm512_cvtpd_ps(t1), 1);
        __m512 left = _mm512_mul_ps(half, x);
        __m512 dleft = _mm512_mul_ps(half, _mm512_add_ps(one, t));
        __m512 dt = _mm512_sub_ps(one, _mm512_mul_ps(t, t));
        __m512 du = _mm512_mul_ps(kb, _mm512_add_ps(one, _mm512_mul_ps(k3, x2)));
        __m512 rd = _mm512_mul_ps(_mm512_mul_ps(left, dt), du);
        _mm512_storeu_ps(dxs + i, _mm512_mul_ps(dy, _mm512_add_ps(dleft, rd)));
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
    int64_t (*k)(const float *, const float *, float *, int64_t) = dfm_cpu_use_avx512() ? gelu_back_avx512
                                                                   : dfm_cpu_use_avx2() ? gelu_back_avx2
                                                                                        : NULL;
    if (k) {
        i = k(dy, x, dx, n);
        if (i < n) { /* the tail (under 16) through the same vector code, so no element depends on the split */
            float db[16] = {0}, xb[16] = {0}, ob[16];
            memcpy(db, dy + i, (size_t)(n - i) * sizeof *db);
            memcpy(xb, x + i, (size_t)(n - i) * sizeof *xb);
            k(db, xb, ob, 16);
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
