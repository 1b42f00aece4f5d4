/* rms_norm.c — RMS norm over the last dimension (rms_norm.h): one row per iteration, rows
 * spread over the threads. The sum of squares is accumulated in double, so it is the exact sum
 * rounded once; torch's f32 reduction differs from it by a few ulp of the variance at most.
 * Not here: mean subtraction (layer norm), a bias, bf16 outputs. */
#include "cpu/rms_norm.h"
#include "base/error.h"
#include "cpu/cpu.h"

#include <math.h>

typedef struct {
    const float *x, *w;
    int64_t d;
    float eps, *y;
} rms_ctx;

static void rms_range(void *arg, int64_t r0, int64_t r1)
{
    rms_ctx *c = arg;
    for (int64_t r = r0; r < r1; r++) {
        const float *x = c->x + r * c->d;
        float *y = c->y + r * c->d;
        double s = 0.0;
        for (int64_t j = 0; j < c->d; j++) {
            float q = x[j] * x[j];
            s += q;
        }
        float var = (float)s / (float)c->d;
        float inv = 1.0f / sqrtf(var + c->eps);
        for (int64_t j = 0; j < c->d; j++) y[j] = c->w[j] * (x[j] * inv);
    }
}

int dfm_cpu_rms_norm(const float *x, int64_t rows, int64_t d, const void *w, dfm_dtype wdt, float eps,
                     float *y)
{
    if (rows <= 0 || d <= 0) return 0;
    float *wf = dfm_cpu_scratch(0, (size_t)d * sizeof(float));
    if (!wf) return dfm_fail(DFM_E_NOMEM, "rms_norm: out of memory for scratch");
    int rc = dfm_cpu_to_f32(wf, w, wdt, (size_t)d, 0);
    if (rc < 0) return rc;
    rms_ctx c = {x, wf, d, eps, y};
    dfm_cpu_parallel(rows, 1 + 16384 / d, rms_range, &c);
    return 0;
}
