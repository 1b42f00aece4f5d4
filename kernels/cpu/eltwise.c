/* eltwise.c — elementwise ops (eltwise.h): plain loops, AVX2 for the exp in silu.
 * Not here: broadcasting; ops.c checks that shapes match exactly. */
#include "cpu/eltwise.h"
#include "cpu/cpu.h"
#include "cpu/simd.h"

#include <string.h>
#include <math.h>

#define CHUNK 32768 /* elements per thread at least */

typedef struct {
    const float *a, *b;
    float *y;
    float s, t;
} elt_ctx;

#ifdef DFM_SIMD_X86
__attribute__((target("avx2,fma"))) static int64_t silu_avx2(const float *x, float *y, int64_t n)
{
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256 e = dfm_exp256(_mm256_sub_ps(zero, v));
        _mm256_storeu_ps(y + i, _mm256_div_ps(v, _mm256_add_ps(one, e)));
    }
    return i;
}
#endif

static void silu_range(void *arg, int64_t i0, int64_t i1)
{
    elt_ctx *c = arg;
    const float *x = c->a + i0;
    float *y = c->y + i0;
    int64_t n = i1 - i0, i = 0;
#ifdef DFM_SIMD_X86
    if (dfm_cpu_use_avx2()) {
        i = silu_avx2(x, y, n);
        if (i < n) { /* the tail through the same vector code, so no element depends on the split */
            float xb[8] = {0}, yb[8];
            memcpy(xb, x + i, (size_t)(n - i) * sizeof *xb);
            silu_avx2(xb, yb, 8);
            memcpy(y + i, yb, (size_t)(n - i) * sizeof *yb);
            i = n;
        }
    }
#endif
    for (; i < n; i++) y[i] = x[i] / (1.0f + expf(-x[i]));
}

void dfm_cpu_silu(const float *x, float *y, int64_t n)
{
    elt_ctx c = {.a = x, .y = y};
    dfm_cpu_parallel(n, CHUNK / 4, silu_range, &c);
}

static void add_range(void *arg, int64_t i0, int64_t i1)
{
    elt_ctx *c = arg;
    for (int64_t i = i0; i < i1; i++) c->y[i] = c->a[i] + c->b[i];
}

void dfm_cpu_add(const float *a, const float *b, float *y, int64_t n)
{
    elt_ctx c = {.a = a, .b = b, .y = y};
    dfm_cpu_parallel(n, CHUNK, add_range, &c);
}

static void clamp_range(void *arg, int64_t i0, int64_t i1)
{
    elt_ctx *c = arg;
    float lo = c->s, hi = c->t;
    for (int64_t i = i0; i < i1; i++) {
        float v = c->a[i];
        c->y[i] = v < lo ? lo : v > hi ? hi : v;
    }
}

void dfm_cpu_clamp(const float *x, float lo, float hi, float *y, int64_t n)
{
    elt_ctx c = {.a = x, .y = y, .s = lo, .t = hi};
    dfm_cpu_parallel(n, CHUNK, clamp_range, &c);
}

static void affine_range(void *arg, int64_t i0, int64_t i1)
{
    elt_ctx *c = arg;
    float s = c->s, t = c->t;
    /* -std=c11 implies -ffp-contract=off: the product is rounded before the sum, as in torch */
    for (int64_t i = i0; i < i1; i++) c->y[i] = c->a[i] * s + t;
}

void dfm_cpu_affine(const float *x, float scale, float shift, float *y, int64_t n)
{
    elt_ctx c = {.a = x, .y = y, .s = scale, .t = shift};
    dfm_cpu_parallel(n, CHUNK, affine_range, &c);
}
