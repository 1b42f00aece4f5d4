/* bias.c — rows plus a bias vector (bias.h). */
#include "cpu/bias.h"
#include "base/error.h"
#include "cpu/cpu.h"

#include <stdlib.h>

typedef struct {
    const float *x, *b;
    float *y;
    int64_t n;
} bias_ctx;

static void bias_rows(void *arg, int64_t r0, int64_t r1)
{
    const bias_ctx *c = arg;
    for (int64_t r = r0; r < r1; r++) {
        const float *x = c->x + r * c->n;
        float *y = c->y + r * c->n;
        for (int64_t j = 0; j < c->n; j++) y[j] = x[j] + c->b[j];
    }
}

int dfm_cpu_bias_add(const float *x, const void *b, dfm_dtype bdt, float *y, int64_t rows, int64_t n)
{
    if (rows <= 0 || n <= 0) return 0;
    float *bf = NULL;
    const float *bp = b;
    if (bdt != DFM_F32) {
        if (!(bf = malloc((size_t)n * sizeof(float)))) return dfm_fail(DFM_E_NOMEM, "bias_add: out of memory");
        int rc = dfm_cpu_to_f32(bf, b, bdt, (size_t)n, 0);
        if (rc < 0) {
            free(bf);
            return dfm_fail(DFM_E_UNSUPPORTED, "bias_add: bias dtype %s", dfm_dtype_name(bdt));
        }
        bp = bf;
    }
    bias_ctx c = {x, bp, y, n};
    int64_t min_rows = n >= 65536 ? 1 : 65536 / n;
    dfm_cpu_parallel(rows, min_rows, bias_rows, &c);
    free(bf);
    return 0;
}
