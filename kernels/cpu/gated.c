/* gated.c — gelu_new and mul (gated.h): plain loops over thread ranges. The C file is compiled
 * with -std=c11, which implies -ffp-contract=off: no product is fused into a sum, so every
 * operation rounds as the separate torch ops do. tanh is evaluated in double and rounded once:
 * that is the correctly rounded f32 tanh (but for rare double-rounding cases), which torch's
 * Sleef tanhf gives for 99.9% of inputs; glibc's tanhf is off by 1-2 ulp for a quarter of them.
 * Not here: the exact-erf GELU (torch's gelu),
 * torch's fused tanh approximation (F.gelu(approximate="tanh"), which rounds differently). */
#include "cpu/gated.h"
#include "cpu/cpu.h"

#include <math.h>

#define CHUNK 16384

typedef struct {
    const float *a, *b;
    float *y;
} g_ctx;

static void gelu_range(void *arg, int64_t i0, int64_t i1)
{
    g_ctx *c = arg;
    const float k0 = 0.044715f;           /* the Python float rounded to f32, as torch does */
    const float k1 = 0.7978845608028654f; /* math.sqrt(2.0 / math.pi) rounded to f32 */
    for (int64_t i = i0; i < i1; i++) {
        float x = c->a[i];
        float p = x * x;
        p = p * x;
        float u = k0 * p;
        u = x + u;
        u = k1 * u;
        float t = 1.0f + (float)tanh((double)u); /* correctly rounded, as torch's is (almost always) */
        float h = 0.5f * x;
        c->y[i] = h * t;
    }
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
