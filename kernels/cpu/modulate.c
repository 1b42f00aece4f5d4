/* modulate.c — adaLN modulation and gated residual, forward and backward (modulate.h). The
 * forwards run token rows over the threads; the backwards run chunks of DFM_REDUCE_ROWS rows of
 * one batch over the threads, each writing its rows' dx / da and its partial rows of the vector
 * gradients, which dfm_cpu_sum_partials adds in chunk order (reduce.h). Every element is a few
 * separately rounded f32 operations (-std=c11 implies -ffp-contract=off; the AVX2 loops use no
 * FMA), and the partial sums run down each column in row order on both paths, so the AVX2 and
 * scalar paths give the same bits.
 * Not here: the norm before the modulation, the add of scale_shift_table and the time
 * projection. */
#include "cpu/modulate.h"
#include "base/error.h"
#include "cpu/cpu.h"
#include "cpu/reduce.h"
#include "cpu/simd.h"

#include <string.h>

enum { MOD, GATE };

typedef struct {
    const float *x, *a, *dy, *v1, *v2; /* v1: scale or gate, v2: shift */
    int64_t s, d, ld, chunks;           /* chunks per batch */
    int kind;
    float *y, *dx, *p1, *p2; /* p1: dscale / dgate partials, p2: dshift partials */
} mod_ctx;

/* ---- one row, scalar ----------------------------------------------------------------------- */

static void mod_row(const float *x, const float *sc, const float *sh, int64_t d, float *y)
{
    for (int64_t j = 0; j < d; j++) {
        float t = 1.0f + sc[j];
        y[j] = x[j] * t + sh[j];
    }
}

static void gate_row(const float *x, const float *a, const float *g, int64_t d, float *y)
{
    for (int64_t j = 0; j < d; j++) y[j] = x[j] + a[j] * g[j];
}

/* dx = dy * (1 + scale); p1 += dy * x; p2 += dy (each when not NULL). */
static void mod_back_row(const float *dy, const float *x, const float *sc, int64_t d, float *dx, float *p1,
                         float *p2)
{
    for (int64_t j = 0; j < d; j++) {
        float g = dy[j];
        if (p1) p1[j] += g * x[j];
        if (p2) p2[j] += g;
        if (dx) dx[j] = g * (1.0f + sc[j]); /* after dy[j] is read: dx may alias dy */
    }
}

/* da = dy * gate; p1 += dy * a. */
static void gate_back_row(const float *dy, const float *a, const float *g, int64_t d, float *da, float *p1)
{
    for (int64_t j = 0; j < d; j++) {
        float v = dy[j], av = a[j];
        if (p1) p1[j] += v * av;
        if (da) da[j] = v * g[j];
    }
}

/* ---- one row, AVX2 (returns the columns done; the scalar row functions finish) -------------- */

#ifdef DFM_SIMD_X86
#define AVX2 __attribute__((target("avx2,fma")))
#define LD(p) _mm256_loadu_ps(p)

AVX2 static int64_t mod_row_avx2(const float *x, const float *sc, const float *sh, int64_t d, float *y)
{
    const __m256 one = _mm256_set1_ps(1.0f);
    int64_t j = 0;
    for (; j + 8 <= d; j += 8)
        _mm256_storeu_ps(y + j, _mm256_add_ps(_mm256_mul_ps(LD(x + j), _mm256_add_ps(one, LD(sc + j))), LD(sh + j)));
    return j;
}

AVX2 static int64_t gate_row_avx2(const float *x, const float *a, const float *g, int64_t d, float *y)
{
    int64_t j = 0;
    for (; j + 8 <= d; j += 8)
        _mm256_storeu_ps(y + j, _mm256_add_ps(LD(x + j), _mm256_mul_ps(LD(a + j), LD(g + j))));
    return j;
}

AVX2 static int64_t mod_back_row_avx2(const float *dy, const float *x, const float *sc, int64_t d, float *dx,
                                      float *p1, float *p2)
{
    const __m256 one = _mm256_set1_ps(1.0f);
    int64_t j = 0;
    for (; j + 8 <= d; j += 8) {
        __m256 g = LD(dy + j);
        if (p1) _mm256_storeu_ps(p1 + j, _mm256_add_ps(LD(p1 + j), _mm256_mul_ps(g, LD(x + j))));
        if (p2) _mm256_storeu_ps(p2 + j, _mm256_add_ps(LD(p2 + j), g));
        if (dx) _mm256_storeu_ps(dx + j, _mm256_mul_ps(g, _mm256_add_ps(one, LD(sc + j))));
    }
    return j;
}

AVX2 static int64_t gate_back_row_avx2(const float *dy, const float *a, const float *gt, int64_t d, float *da,
                                       float *p1)
{
    int64_t j = 0;
    for (; j + 8 <= d; j += 8) {
        __m256 v = LD(dy + j), av = LD(a + j);
        if (p1) _mm256_storeu_ps(p1 + j, _mm256_add_ps(LD(p1 + j), _mm256_mul_ps(v, av)));
        if (da) _mm256_storeu_ps(da + j, _mm256_mul_ps(v, LD(gt + j)));
    }
    return j;
}
#endif

/* ---- forward ------------------------------------------------------------------------------- */

static void fwd_range(void *arg, int64_t r0, int64_t r1)
{
    mod_ctx *c = arg;
    int64_t d = c->d;
    int avx = 0;
#ifdef DFM_SIMD_X86
    avx = dfm_cpu_use_avx2();
#endif
    for (int64_t r = r0; r < r1; r++) {
        const float *x = c->x + r * d, *v1 = c->v1 + (r / c->s) * c->ld;
        float *y = c->y + r * d;
        int64_t j = 0;
        if (c->kind == MOD) {
            const float *v2 = c->v2 + (r / c->s) * c->ld;
#ifdef DFM_SIMD_X86
            if (avx) j = mod_row_avx2(x, v1, v2, d, y);
#endif
            mod_row(x + j, v1 + j, v2 + j, d - j, y + j);
        } else {
            const float *a = c->a + r * d;
#ifdef DFM_SIMD_X86
            if (avx) j = gate_row_avx2(x, a, v1, d, y);
#endif
            gate_row(x + j, a + j, v1 + j, d - j, y + j);
        }
    }
    (void)avx;
}

void dfm_cpu_modulate(const float *x, int64_t b, int64_t s, int64_t d, const float *scale,
                      const float *shift, int64_t ld, float *y)
{
    if (b <= 0 || s <= 0 || d <= 0) return;
    mod_ctx c = {.x = x, .v1 = scale, .v2 = shift, .s = s, .d = d, .ld = ld, .kind = MOD, .y = y};
    dfm_cpu_parallel(b * s, 1 + 32768 / d, fwd_range, &c);
}

void dfm_cpu_gate_residual(const float *x, const float *a, int64_t b, int64_t s, int64_t d,
                           const float *gate, int64_t ld, float *y)
{
    if (b <= 0 || s <= 0 || d <= 0) return;
    mod_ctx c = {.x = x, .a = a, .v1 = gate, .s = s, .d = d, .ld = ld, .kind = GATE, .y = y};
    dfm_cpu_parallel(b * s, 1 + 32768 / d, fwd_range, &c);
}

/* ---- backward ------------------------------------------------------------------------------ */

/* Chunks k0..k1 of all batches (chunk k: batch k / chunks, rows of that batch from
 * (k % chunks) * DFM_REDUCE_ROWS). */
static void bwd_chunks(void *arg, int64_t k0, int64_t k1)
{
    mod_ctx *c = arg;
    int64_t d = c->d;
    int avx = 0;
#ifdef DFM_SIMD_X86
    avx = dfm_cpu_use_avx2();
#endif
    for (int64_t k = k0; k < k1; k++) {
        int64_t i = k / c->chunks, s0 = (k % c->chunks) * DFM_REDUCE_ROWS;
        int64_t s1 = s0 + DFM_REDUCE_ROWS < c->s ? s0 + DFM_REDUCE_ROWS : c->s;
        float *p1 = c->p1 ? c->p1 + k * d : NULL, *p2 = c->p2 ? c->p2 + k * d : NULL;
        if (p1) memset(p1, 0, (size_t)d * sizeof(float));
        if (p2) memset(p2, 0, (size_t)d * sizeof(float));
        const float *v1 = c->v1 + i * c->ld;
        for (int64_t r = i * c->s + s0; r < i * c->s + s1; r++) {
            const float *dy = c->dy + r * d;
            float *dx = c->dx ? c->dx + r * d : NULL;
            int64_t j = 0;
            if (c->kind == MOD) {
                const float *x = c->x + r * d;
#ifdef DFM_SIMD_X86
                if (avx) j = mod_back_row_avx2(dy, x, v1, d, dx, p1, p2);
#endif
                mod_back_row(dy + j, x + j, v1 + j, d - j, dx ? dx + j : NULL, p1 ? p1 + j : NULL,
                             p2 ? p2 + j : NULL);
            } else {
                const float *a = c->a + r * d;
#ifdef DFM_SIMD_X86
                if (avx) j = gate_back_row_avx2(dy, a, v1, d, dx, p1);
#endif
                gate_back_row(dy + j, a + j, v1 + j, d - j, dx ? dx + j : NULL, p1 ? p1 + j : NULL);
            }
        }
    }
    (void)avx;
}

static int back_run(mod_ctx *c, int64_t b, float *g1, float *g2)
{
    c->chunks = dfm_reduce_chunks(c->s);
    int64_t total = b * c->chunks, np = (g1 != NULL) + (g2 != NULL);
    if (np) {
        float *part = dfm_cpu_scratch(0, (size_t)(np * total * c->d) * sizeof(float));
        if (!part) return dfm_fail(DFM_E_NOMEM, "modulate backward: out of memory for partial sums");
        c->p1 = g1 ? part : NULL;
        c->p2 = g2 ? part + (g1 ? total * c->d : 0) : NULL;
    }
    dfm_cpu_parallel(total, 1 + 32768 / (DFM_REDUCE_ROWS * c->d), bwd_chunks, c);
    if (g1) dfm_cpu_sum_partials(c->p1, b, c->chunks, c->d, g1, c->ld);
    if (g2) dfm_cpu_sum_partials(c->p2, b, c->chunks, c->d, g2, c->ld);
    return 0;
}

int dfm_cpu_modulate_backward(const float *dy, const float *x, int64_t b, int64_t s, int64_t d,
                              const float *scale, int64_t ld, float *dx, float *dscale, float *dshift)
{
    if (b <= 0 || s <= 0 || d <= 0) return 0;
    mod_ctx c = {.x = x, .dy = dy, .v1 = scale, .s = s, .d = d, .ld = ld, .kind = MOD, .dx = dx};
    return back_run(&c, b, dscale, dshift);
}

int dfm_cpu_gate_residual_backward(const float *dy, const float *a, int64_t b, int64_t s, int64_t d,
                                   const float *gate, int64_t ld, float *da, float *dgate)
{
    if (b <= 0 || s <= 0 || d <= 0) return 0;
    mod_ctx c = {.a = a, .dy = dy, .v1 = gate, .s = s, .d = d, .ld = ld, .kind = GATE, .dx = da};
    return back_run(&c, b, dgate, NULL);
}
