/* norm.c — RMS norm over channels (norm.h). Positions are processed in blocks of 256 so the
 * block's [c, 256] slice stays in L2 between the sum-of-squares pass and the scaling pass;
 * AVX2 when available, the scalar loop otherwise (same operations in the same order, so both
 * give the same bits). */
#include "cpu/norm.h"
#include "base/error.h"
#include "cpu/cpu.h"
#include "cpu/simd.h"

#include <math.h>
#include <stdlib.h>

#define PB 256

typedef struct {
    const float *x;
    float *y;
    int64_t c, n;
    const float *g, *b;
    float scale;
} rms_ctx;

static void rms_block_scalar(const rms_ctx *r, int64_t i0, int64_t nb)
{
    float ss[PB];
    for (int64_t i = 0; i < nb; i++) ss[i] = 0.0f;
    for (int64_t c = 0; c < r->c; c++) {
        const float *xr = r->x + c * r->n + i0;
        for (int64_t i = 0; i < nb; i++) ss[i] += xr[i] * xr[i];
    }
    for (int64_t i = 0; i < nb; i++) {
        float d = sqrtf(ss[i]);
        ss[i] = d > 1e-12f ? d : 1e-12f;
    }
    for (int64_t c = 0; c < r->c; c++) {
        const float *xr = r->x + c * r->n + i0;
        float *yr = r->y + c * r->n + i0;
        float g = r->g[c];
        if (r->b) {
            float b = r->b[c];
            for (int64_t i = 0; i < nb; i++) yr[i] = xr[i] / ss[i] * r->scale * g + b;
        } else {
            for (int64_t i = 0; i < nb; i++) yr[i] = xr[i] / ss[i] * r->scale * g;
        }
    }
}

#ifdef DFM_SIMD_X86
/* nb a multiple of 8. No FMA: products and sums are rounded separately, as in the scalar loop. */
__attribute__((target("avx2,fma"))) static void rms_block_avx2(const rms_ctx *r, int64_t i0, int64_t nb)
{
    float ss[PB] __attribute__((aligned(32)));
    for (int64_t i = 0; i < nb; i += 8) _mm256_store_ps(ss + i, _mm256_setzero_ps());
    for (int64_t c = 0; c < r->c; c++) {
        const float *xr = r->x + c * r->n + i0;
        for (int64_t i = 0; i < nb; i += 8) {
            __m256 v = _mm256_loadu_ps(xr + i);
            _mm256_store_ps(ss + i, _mm256_add_ps(_mm256_load_ps(ss + i), _mm256_mul_ps(v, v)));
        }
    }
    const __m256 eps = _mm256_set1_ps(1e-12f), sc = _mm256_set1_ps(r->scale);
    for (int64_t i = 0; i < nb; i += 8)
        _mm256_store_ps(ss + i, _mm256_max_ps(_mm256_sqrt_ps(_mm256_load_ps(ss + i)), eps));
    for (int64_t c = 0; c < r->c; c++) {
        const float *xr = r->x + c * r->n + i0;
        float *yr = r->y + c * r->n + i0;
        __m256 g = _mm256_set1_ps(r->g[c]), b = _mm256_set1_ps(r->b ? r->b[c] : 0.0f);
        for (int64_t i = 0; i < nb; i += 8) {
            __m256 v = _mm256_div_ps(_mm256_loadu_ps(xr + i), _mm256_load_ps(ss + i));
            v = _mm256_mul_ps(_mm256_mul_ps(v, sc), g);
            if (r->b) v = _mm256_add_ps(v, b);
            _mm256_storeu_ps(yr + i, v);
        }
    }
}
#endif

static void rms_range(void *arg, int64_t b0, int64_t b1)
{
    const rms_ctx *r = arg;
    for (int64_t blk = b0; blk < b1; blk++) {
        int64_t i0 = blk * PB, nb = r->n - i0 < PB ? r->n - i0 : PB;
#ifdef DFM_SIMD_X86
        if (dfm_cpu_use_avx2() && nb % 8 == 0) {
            rms_block_avx2(r, i0, nb);
            continue;
        }
#endif
        rms_block_scalar(r, i0, nb);
    }
}

int dfm_cpu_rms_norm_channels(const float *x, int64_t c, int64_t n, const void *gamma, dfm_dtype gdt,
                              const void *bias, dfm_dtype bdt, float *y)
{
    float *gb = malloc((size_t)(c ? c : 1) * 2 * sizeof(float));
    if (!gb) return dfm_fail(DFM_E_NOMEM, "rms_norm_channels: out of memory");
    int rc = dfm_cpu_to_f32(gb, gamma, gdt, c, 0);
    if (!rc && bias) rc = dfm_cpu_to_f32(gb + c, bias, bdt, c, 0);
    if (!rc) {
        rms_ctx r = {x, y, c, n, gb, bias ? gb + c : NULL, (float)sqrt((double)c)};
        int64_t blocks = (n + PB - 1) / PB;
        dfm_cpu_parallel(blocks, 1 + 65536 / (PB * (c ? c : 1)), rms_range, &r);
    }
    free(gb);
    return rc;
}
