/* adamw.c — AdamW update and sum of squares on the CPU (adamw.h). */
#include "cpu/adamw.h"
#include "cpu/cpu.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    float *p, *m, *v;
    const float *g;
    dfm_adamw_coef c;
} adamw_ctx;

/* The update of adamw.h, one statement per rounded operation (no contraction under -std=c11;
 * the fused steps are explicit fmaf, correctly rounded wherever it runs). */
#define ADAMW_BODY                                                          \
    for (int64_t i = i0; i < i1; i++) {                                     \
        float gi = g[i], mi = m[i];                                         \
        float pi = p[i] * c.decay;                                          \
        float diff = gi - mi;                                               \
        mi = c.small ? fmaf(c.w1, diff, mi) : fmaf(c.w1m1, diff, gi);       \
        float vb = v[i] * c.beta2;                                          \
        float cg = c.c2 * gi;                                               \
        float vi = fmaf(cg, gi, vb);                                        \
        float d = sqrtf(vi) / c.bc2_sqrt;                                   \
        d = d + c.eps;                                                      \
        float num = c.neg_step * mi;                                        \
        float q = num / d;                                                  \
        p[i] = pi + q;                                                      \
        m[i] = mi;                                                          \
        v[i] = vi;                                                          \
    }

static void adamw_range(void *arg, int64_t i0, int64_t i1)
{
    const adamw_ctx *x = arg;
    float *restrict p = x->p, *restrict m = x->m, *restrict v = x->v;
    const float *restrict g = x->g;
    const dfm_adamw_coef c = x->c;
    ADAMW_BODY
}

#if defined(__x86_64__) && defined(__GNUC__)
/* The same statements compiled for AVX2 + FMA: fmaf becomes one instruction and the loop may be
 * vectorized; every operation is still one IEEE rounding, so the bits are those of the scalar
 * path (test_optim runs both). */
__attribute__((target("avx2,fma"))) static void adamw_range_avx2(void *arg, int64_t i0, int64_t i1)
{
    const adamw_ctx *x = arg;
    float *restrict p = x->p, *restrict m = x->m, *restrict v = x->v;
    const float *restrict g = x->g;
    const dfm_adamw_coef c = x->c;
    ADAMW_BODY
}
#endif
#undef ADAMW_BODY

void dfm_cpu_adamw(float *p, const float *g, float *m, float *v, int64_t n, const dfm_adamw_coef *c)
{
    if (n <= 0) return;
    adamw_ctx x = {p, m, v, g, *c};
    dfm_cpu_range_fn fn = adamw_range;
#if defined(__x86_64__) && defined(__GNUC__)
    if (dfm_cpu_use_avx2()) fn = adamw_range_avx2;
#endif
    dfm_cpu_parallel(n, 16384, fn, &x);
}

/* ---- sum of squares ------------------------------------------------------------------------- */

typedef struct {
    const float *x;
    int64_t n, lanes;
    double *acc;
} sumsq_ctx;

/* lanes [j0, j1): acc[j] = sum over k of x[k*LANES + j]^2, k increasing */
static void sumsq_range(void *arg, int64_t j0, int64_t j1)
{
    const sumsq_ctx *s = arg;
    for (int64_t j = j0; j < j1; j++) s->acc[j] = 0.0;
    for (int64_t base = 0; base < s->n; base += DFM_SUMSQ_LANES) {
        int64_t e = s->n - base < j1 ? s->n - base : j1;
        const float *row = s->x + base;
        for (int64_t j = j0; j < e; j++) {
            double t = (double)row[j];
            s->acc[j] += t * t;
        }
    }
}

double dfm_sumsq_lanes_total(const double *lanes, int64_t nlanes)
{
    double s = 0.0;
    for (int64_t j = 0; j < nlanes; j++) s += lanes[j];
    return s;
}

double dfm_cpu_sumsq(const float *x, int64_t n)
{
    if (n <= 0) return 0.0;
    int64_t lanes = n < DFM_SUMSQ_LANES ? n : DFM_SUMSQ_LANES;
    double stack[256], *acc = stack;
    if (lanes > 256 && !(acc = malloc((size_t)lanes * sizeof *acc))) {
        /* out of memory: the same order, one lane at a time */
        double total = 0.0;
        for (int64_t j = 0; j < lanes; j++) {
            double a = 0.0;
            for (int64_t i = j; i < n; i += DFM_SUMSQ_LANES) a += (double)x[i] * (double)x[i];
            total += a;
        }
        return total;
    }
    sumsq_ctx s = {x, n, lanes, acc};
    /* a range of lanes is worth a thread when it covers enough elements */
    int64_t rows = (n + DFM_SUMSQ_LANES - 1) / DFM_SUMSQ_LANES;
    int64_t min_chunk = 65536 / rows > 64 ? 65536 / rows : 64;
    dfm_cpu_parallel(lanes, min_chunk, sumsq_range, &s);
    double total = dfm_sumsq_lanes_total(acc, lanes);
    if (acc != stack) free(acc);
    return total;
}
