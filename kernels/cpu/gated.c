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
/* gelu_avx2's steps, 16 at a time (tanh 8 doubles at a time); returns how many were done. */
#define T512 __attribute__((target("avx2,fma,avx512f,avx512dq")))
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
        __m512d t0 = dfm_tanh_pd512(_mm512_cvtps_pd(_mm512_castps512_ps256(u)), &n0);
        __m512d t1 = dfm_tanh_pd512(_mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(u), 1))), &n1);
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
        __m256d t0 = dfm_tanh_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(u)), &n0);
        __m256d t1 = dfm_tanh_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(u, 1)), &n1);
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
    int64_t (*k)(const float *, float *, int64_t) = dfm_cpu_use_avx512() ? gelu_avx512
                                                    : dfm_cpu_use_avx2() ? gelu_avx2
                                                                         : NULL;
    if (k) {
        i = k(x, y, n);
        if (i < n) { /* the tail (under 16) through the same vector code, so no element depends on the split */
            float xb[16] = {0}, yb[16];
            memcpy(xb, x + i, (size_t)(n - i) * sizeof *xb);
            k(xb, yb, 16);
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
