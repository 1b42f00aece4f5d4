/* gated.c — gelu_new and mul (gated.h): plain loops over thread ranges. The C file is compiled
 * with -std=c11, which implies -ffp-contract=off: no product is fused into a sum, so every
 * operation rounds as the separate torch ops do. tanh is evaluated in double and rounded once:
 * that is the correctly rounded f32 tanh (but for rare double-rounding cases), which torch's
 * Sleef tanhf gives for 99.9% of inputs; glibc's tanhf is off by 1-2 ulp for a quarter of them.
 *
 * The AVX2 path (8 floats at a time when dfm_cpu_use_avx2(); the scalar loop does the tails and
 * is the fallback) gives the scalar path's bits for every input: checked over all 2^32 f32 x,
 * NaN payloads included. Its f32 steps are the same separate multiplies and adds (no FMA); its
 * tanh is double precision too, 4 lanes at a time: tanh|u| = -e / (e + 2) with
 * e = expm1(-2|u|) (no cancellation near 0; exactly u for tiny u, denormals included), expm1 by the
 * reduction -2|u| = k ln2 + r, |r| <= ln2/2, and the degree-13 Taylor polynomial (truncation
 * below 2^-56 relative), with FMA, which only helps there. |u| is clamped to 20 (tanh rounds to
 * 1 in f32 beyond 9.01), the sign is put back (tanh(-0) = -0), NaN passes through. Measured
 * over all 2^31 non-negative f32 u: within 3 ulp (double) of glibc 2.36's tanh, and never
 * rounding to a different float. That last fact would rest on one libm's last bits, so a lane
 * whose double result lies within 64 ulp of a point halfway between two floats sends its group
 * of 8 to the scalar code: 32 of the 2^31 u, 56 of the 2^32 x (ops_gelu_new_simd lists them).
 * The AVX-512 path (dfm_cpu_use_avx512()) runs the same operations 16 floats / 8 doubles at a
 * time, so it gives the same bits; a near lane sends its group of 16 to the scalar code.
 * Not here: the exact-erf GELU (torch's gelu),
 * torch's fused tanh approximation (F.gelu(approximate="tanh"), which rounds differently). */
#include "cpu/gated.h"
#include "cpu/cpu.h"
#include "cpu/simd.h"

#include <string.h>
#include <math.h>

#define CHUNK 16384

typedef struct {
    const float *a, *b;
    float *y;
} g_ctx;

static const float k0 = 0.044715f;           /* the Python float rounded to f32, as torch does */
static const float k1 = 0.7978845608028654f; /* math.sqrt(2.0 / math.pi) rounded to f32 */

static inline float gelu_1(float x)
{
    float p = x * x;
    p = p * x;
    float u = k0 * p;
    u = x + u;
    u = k1 * u;
    float t = 1.0f + (float)tanh((double)u); /* correctly rounded, as torch's is (almost always) */
    float h = 0.5f * x;
    return h * t;
}

#ifdef DFM_SIMD_X86
#define MID_TOL 64 /* ulp (double) around an f32 rounding midpoint that go to the scalar tanh */

/* tanh of 4 doubles; *near gets all-ones lanes whose result lies within MID_TOL ulp of a point
 * halfway between two floats (where rounding it to f32 might differ from glibc's). */
__attribute__((target("avx2,fma"))) static inline __m256d tanh_pd(__m256d u, __m256i *near)
{
    const __m256d sign = _mm256_set1_pd(-0.0);
    __m256d a = _mm256_min_pd(_mm256_andnot_pd(sign, u), _mm256_set1_pd(20.0)); /* NaN: 20 */
    __m256d x = _mm256_mul_pd(a, _mm256_set1_pd(-2.0));                         /* [-40, 0] */
    __m256d k = _mm256_round_pd(_mm256_mul_pd(x, _mm256_set1_pd(1.44269504088896338700)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    /* ln2 split as fdlibm does: x - k hi is exact, r carries one rounding (|r| <= 0.35) */
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
    /* expm1(x) = 2^k expm1(r) + (2^k - 1), k in [-58, 0] */
    __m256i ki = _mm256_cvtepi32_epi64(_mm256_cvtpd_epi32(k));
    __m256d s = _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_add_epi64(ki, _mm256_set1_epi64x(1023)), 52));
    __m256d e = _mm256_fmadd_pd(s, em1, _mm256_sub_pd(s, _mm256_set1_pd(1.0)));
    __m256d t = _mm256_div_pd(e, _mm256_add_pd(e, _mm256_set1_pd(2.0))); /* -tanh|u| */
    t = _mm256_andnot_pd(sign, t);
    /* the 29 bits that rounding to f32 drops, minus (2^28 - MID_TOL): in [0, 2 MID_TOL] near */
    __m256i low = _mm256_sub_epi64(_mm256_castpd_si256(t), _mm256_set1_epi64x(0x10000000 - MID_TOL));
    low = _mm256_and_si256(low, _mm256_set1_epi64x(0x1fffffff));
    *near = _mm256_cmpgt_epi64(_mm256_set1_epi64x(2 * MID_TOL + 1), low);
    t = _mm256_or_pd(t, _mm256_and_pd(sign, u));
    return _mm256_blendv_pd(t, u, _mm256_cmp_pd(u, u, _CMP_UNORD_Q));
}

/* tanh_pd on 8 doubles: the same operations lane for lane (so the same bits); *near as a mask. */
#define T512 __attribute__((target("avx2,fma,avx512f,avx512dq")))
T512 static inline __m512d tanh_pd512(__m512d u, __mmask8 *near)
{
    const __m512d sign = _mm512_set1_pd(-0.0);
    __m512d a = _mm512_min_pd(_mm512_andnot_pd(sign, u), _mm512_set1_pd(20.0)); /* NaN: 20 */
    __m512d x = _mm512_mul_pd(a, _mm512_set1_pd(-2.0));
    __m512d k = _mm512_roundscale_pd(_mm512_mul_pd(x, _mm512_set1_pd(1.44269504088896338700)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512d r = _mm512_fnmadd_pd(k, _mm512_set1_pd(6.93147180369123816490e-01), x);
    r = _mm512_fnmadd_pd(k, _mm512_set1_pd(1.90821492927058770002e-10), r);
    __m512d q = _mm512_set1_pd(1.0 / 6227020800.0);
    q = _mm512_fmadd_pd(q, r, _mm512_set1_pd(1.0 / 479001600.0));
    q = _mm512_fmadd_pd(q, r, _mm512_set1_pd(1.0 / 39916800.0));
    q = _mm512_fmadd_pd(q, r, _mm512_set1_pd(1.0 / 3628800.0));
    q = _mm512_fmadd_pd(q, r, _mm512_set1_pd(1.0 / 362880.0));
    q = _mm512_fmadd_pd(q, r, _mm512_set1_pd(1.0 / 40320.0));
    q = _mm512_fmadd_pd(q, r, _mm512_set1_pd(1.0 / 5040.0));
    q = _mm512_fmadd_pd(q, r, _mm512_set1_pd(1.0 / 720.0));
    q = _mm512_fmadd_pd(q, r, _mm512_set1_pd(1.0 / 120.0));
    q = _mm512_fmadd_pd(q, r, _mm512_set1_pd(1.0 / 24.0));
    q = _mm512_fmadd_pd(q, r, _mm512_set1_pd(1.0 / 6.0));
    q = _mm512_fmadd_pd(q, r, _mm512_set1_pd(0.5));
    __m512d em1 = _mm512_fmadd_pd(_mm512_mul_pd(r, r), q, r);
    __m512i ki = _mm512_cvtepi32_epi64(_mm512_cvtpd_epi32(k));
    __m512d s = _mm512_castsi512_pd(_mm512_slli_epi64(_mm512_add_epi64(ki, _mm512_set1_epi64(1023)), 52));
    __m512d e = _mm512_fmadd_pd(s, em1, _mm512_sub_pd(s, _mm512_set1_pd(1.0)));
    __m512d t = _mm512_div_pd(e, _mm512_add_pd(e, _mm512_set1_pd(2.0)));
    t = _mm512_andnot_pd(sign, t);
    __m512i low = _mm512_sub_epi64(_mm512_castpd_si512(t), _mm512_set1_epi64(0x10000000 - MID_TOL));
    low = _mm512_and_si512(low, _mm512_set1_epi64(0x1fffffff));
    *near = _mm512_cmpgt_epi64_mask(_mm512_set1_epi64(2 * MID_TOL + 1), low);
    t = _mm512_or_pd(t, _mm512_and_pd(sign, u));
    return _mm512_mask_blend_pd(_mm512_cmp_pd_mask(u, u, _CMP_UNORD_Q), t, u);
}

/* gelu_avx2's steps, 16 at a time (tanh 8 doubles at a time); returns how many were done. */
T512 static int64_t gelu_avx512(const float *xs, float *ys, int64_t n)
{
    const __m512 vk0 = _mm512_set1_ps(k0), vk1 = _mm512_set1_ps(k1);
    const __m512 one = _mm512_set1_ps(1.0f), half = _mm512_set1_ps(0.5f);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 x = _mm512_loadu_ps(xs + i);
        __m512 p = _mm512_mul_ps(x, x);
        p = _mm512_mul_ps(p, x);
        __m512 u = _mm512_mul_ps(vk0, p);
        u = _mm512_add_ps(x, u);
        u = _mm512_mul_ps(vk1, u);
        __mmask8 n0, n1;
        __m512d t0 = tanh_pd512(_mm512_cvtps_pd(_mm512_castps512_ps256(u)), &n0);
        __m512d t1 = tanh_pd512(_mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(u), 1))), &n1);
        __m512 t = _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps(t0)), _mm512_cvtpd_ps(t1), 1);
        t = _mm512_add_ps(one, t);
        __m512 h = _mm512_mul_ps(half, x);
        __m512 y = _mm512_mul_ps(h, t);
        if (__builtin_expect((n0 | n1) != 0, 0)) {
            float xv[16]; /* y may alias x */
            _mm512_storeu_ps(xv, x);
            for (int j = 0; j < 16; j++) ys[i + j] = gelu_1(xv[j]);
        } else {
            _mm512_storeu_ps(ys + i, y);
        }
    }
    return i;
}

/* The same steps as gelu_1, 8 at a time; returns how many were done. */
__attribute__((target("avx2,fma"))) static int64_t gelu_avx2(const float *xs, float *ys, int64_t n)
{
    const __m256 vk0 = _mm256_set1_ps(k0), vk1 = _mm256_set1_ps(k1);
    const __m256 one = _mm256_set1_ps(1.0f), half = _mm256_set1_ps(0.5f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(xs + i);
        __m256 p = _mm256_mul_ps(x, x);
        p = _mm256_mul_ps(p, x);
        __m256 u = _mm256_mul_ps(vk0, p);
        u = _mm256_add_ps(x, u);
        u = _mm256_mul_ps(vk1, u);
        __m256i n0, n1;
        __m256d t0 = tanh_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(u)), &n0);
        __m256d t1 = tanh_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(u, 1)), &n1);
        __m256 t = _mm256_set_m128(_mm256_cvtpd_ps(t1), _mm256_cvtpd_ps(t0));
        t = _mm256_add_ps(one, t);
        __m256 h = _mm256_mul_ps(half, x);
        __m256 y = _mm256_mul_ps(h, t);
        if (__builtin_expect(!_mm256_testz_si256(_mm256_or_si256(n0, n1), _mm256_or_si256(n0, n1)), 0)) {
            float xv[8]; /* y may alias x */
            _mm256_storeu_ps(xv, x);
            for (int j = 0; j < 8; j++) ys[i + j] = gelu_1(xv[j]);
        } else {
            _mm256_storeu_ps(ys + i, y);
        }
    }
    return i;
}
#endif

static void gelu_range(void *arg, int64_t i0, int64_t i1)
{
    g_ctx *c = arg;
    const float *x = c->a + i0;
    float *y = c->y + i0;
    int64_t n = i1 - i0, i = 0;
#ifdef DFM_SIMD_X86
    if (dfm_cpu_use_avx512()) {
        i = gelu_avx512(x, y, n);
        if (i < n) { /* the tail through the same vector code, so no element depends on the split */
            float xb[16] = {0}, yb[16];
            memcpy(xb, x + i, (size_t)(n - i) * sizeof *xb);
            gelu_avx512(xb, yb, 16);
            memcpy(y + i, yb, (size_t)(n - i) * sizeof *yb);
            i = n;
        }
    } else if (dfm_cpu_use_avx2()) {
        i = gelu_avx2(x, y, n);
        if (i < n) { /* the tail through the same vector code, so no element depends on the split */
            float xb[8] = {0}, yb[8];
            memcpy(xb, x + i, (size_t)(n - i) * sizeof *xb);
            gelu_avx2(xb, yb, 8);
            memcpy(y + i, yb, (size_t)(n - i) * sizeof *yb);
            i = n;
        }
    }
#endif
    for (; i < n; i++) y[i] = gelu_1(x[i]);
}

void dfm_cpu_gelu_new(const float *x, float *y, int64_t n)
{
    g_ctx c = {x, NULL, y};
    dfm_cpu_parallel(n, CHUNK, gelu_range, &c);
}

static void mul_range(void *arg, int64_t i0, int64_t i1)
{
    g_ctx *c = arg;
    for (int64_t i = i0; i < i1; i++) c->y[i] = c->a[i] * c->b[i];
}

void dfm_cpu_mul(const float *a, const float *b, float *y, int64_t n)
{
    g_ctx c = {a, b, y};
    dfm_cpu_parallel(n, CHUNK * 2, mul_range, &c);
}
