/* simd.h — AVX2+FMA helpers shared by the CPU kernels (only used behind dfm_cpu_use_avx2()).
 *
 * dfm_exp256: e^x for 8 floats, Cephes expf's range reduction and polynomial: within 1.3 ulp of
 * the exact value wherever e^x is a normal float (measured over a sweep of [-87.3, 88.72]);
 * x > 88.72 gives +inf, x < -87.34 gives 0 (no subnormal results), NaN stays NaN.
 */
#ifndef DFM_KERNELS_CPU_SIMD_H
#define DFM_KERNELS_CPU_SIMD_H

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define DFM_SIMD_X86 1

__attribute__((target("avx2,fma"))) static inline __m256 dfm_exp256(__m256 x)
{
    const __m256 hi = _mm256_set1_ps(88.72283935546875f), lo = _mm256_set1_ps(-87.3365478515625f);
    __m256 xc = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
    /* n in [-126, 128]; 2^n is applied as 2^(n>>1) * 2^(n-(n>>1)) so that n = 128 (x near the
     * overflow threshold) needs no special case */
    __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), xc);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i ni = _mm256_cvtps_epi32(n), n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
    const __m256i bias = _mm256_set1_epi32(127);
    __m256 y = _mm256_mul_ps(p, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23)));
    y = _mm256_mul_ps(y, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23)));
    y = _mm256_blendv_ps(y, _mm256_set1_ps(__builtin_inff()), _mm256_cmp_ps(x, hi, _CMP_GT_OQ));
    y = _mm256_andnot_ps(_mm256_cmp_ps(x, lo, _CMP_LT_OQ), y);
    return _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

/* Sum of the 8 lanes. */
__attribute__((target("avx2,fma"))) static inline float dfm_hsum256(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Max of the 8 lanes. */
__attribute__((target("avx2,fma"))) static inline float dfm_hmax256(__m256 v)
{
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* tanh in double, rounded to f32 by the caller (gated.c's gelu_new, act.c's GELU backward; the
 * derivation and the measured error are in gated.c's header): dfm_tanh_pd 4 lanes, dfm_tanh_pd512
 * 8 lanes with the same operations lane for lane, so the same bits. *near flags the lanes whose
 * result lies within DFM_TANH_MID_TOL ulp of a point halfway between two floats: the callers send
 * their group to the scalar tanh there. */
#define DFM_TANH_MID_TOL 64 /* ulp (double) around an f32 rounding midpoint that go to the scalar tanh */

/* tanh of 4 doubles; *near gets all-ones lanes whose result lies within DFM_TANH_MID_TOL ulp of a point
 * halfway between two floats (where rounding it to f32 might differ from glibc's). */
__attribute__((target("avx2,fma"))) static inline __m256d dfm_tanh_pd(__m256d u, __m256i *near)
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
    /* the 29 bits that rounding to f32 drops, minus (2^28 - DFM_TANH_MID_TOL): in [0, 2 DFM_TANH_MID_TOL] near */
    __m256i low = _mm256_sub_epi64(_mm256_castpd_si256(t), _mm256_set1_epi64x(0x10000000 - DFM_TANH_MID_TOL));
    low = _mm256_and_si256(low, _mm256_set1_epi64x(0x1fffffff));
    *near = _mm256_cmpgt_epi64(_mm256_set1_epi64x(2 * DFM_TANH_MID_TOL + 1), low);
    t = _mm256_or_pd(t, _mm256_and_pd(sign, u));
    return _mm256_blendv_pd(t, u, _mm256_cmp_pd(u, u, _CMP_UNORD_Q));
}

/* dfm_tanh_pd on 8 doubles: the same operations lane for lane (so the same bits); *near as a mask. */
__attribute__((target("avx2,fma,avx512f,avx512dq"))) static inline __m512d dfm_tanh_pd512(__m512d u, __mmask8 *near)
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
    __m512i low = _mm512_sub_epi64(_mm512_castpd_si512(t), _mm512_set1_epi64(0x10000000 - DFM_TANH_MID_TOL));
    low = _mm512_and_si512(low, _mm512_set1_epi64(0x1fffffff));
    *near = _mm512_cmpgt_epi64_mask(_mm512_set1_epi64(2 * DFM_TANH_MID_TOL + 1), low);
    t = _mm512_or_pd(t, _mm512_and_pd(sign, u));
    return _mm512_mask_blend_pd(_mm512_cmp_pd_mask(u, u, _CMP_UNORD_Q), t, u);
}
#endif

#endif
