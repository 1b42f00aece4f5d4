/* reduce.c — chunked column sums (reduce.h): the first step sums each chunk of rows into its
 * partial row, streaming the rows once (threads over chunks); the second adds the partials up
 * column by column (threads over columns). Every column is summed in the same order on every
 * path, so the AVX2 loops give the scalar loops' bits.
 * Not here: sums along a row (each kernel writes its own, in the order reduce.h states). */
#include "cpu/reduce.h"
#include "base/error.h"
#include "cpu/cpu.h"

#include <string.h>

#define COLS 256 /* columns summed at once in the second step (a stack buffer) */

#ifdef DFM_SIMD_X86
__attribute__((target("avx2,fma"))) static int64_t add_row_avx2(float *p, const float *x, int64_t n)
{
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        _mm256_storeu_ps(p + j, _mm256_add_ps(_mm256_loadu_ps(p + j), _mm256_loadu_ps(x + j)));
    return j;
}
#endif

/* p[j] += x[j] for j < n. */
static void add_row(float *p, const float *x, int64_t n)
{
    int64_t j = 0;
#ifdef DFM_SIMD_X86
    if (dfm_cpu_use_avx2()) j = add_row_avx2(p, x, n);
#endif
    for (; j < n; j++) p[j] += x[j];
}

typedef struct {
    const float *x, *part;
    int64_t m, n, groups, chunks, ld;
    float *out;
} red_ctx;

static void colsum_chunks(void *arg, int64_t c0, int64_t c1)
{
    red_ctx *c = arg;
    for (int64_t k = c0; k < c1; k++) {
        float *p = (float *)c->part + k * c->n;
        memset(p, 0, (size_t)c->n * sizeof(float));
        int64_t r1 = (k + 1) * DFM_REDUCE_ROWS < c->m ? (k + 1) * DFM_REDUCE_ROWS : c->m;
        for (int64_t r = k * DFM_REDUCE_ROWS; r < r1; r++) add_row(p, c->x + r * c->n, c->n);
    }
}

int dfm_cpu_colsum(const float *x, int64_t m, int64_t n, float *out)
{
    if (m <= 0 || n <= 0) return 0;
    int64_t chunks = dfm_reduce_chunks(m);
    float *part = dfm_cpu_scratch(0, (size_t)(chunks * n) * sizeof(float));
    if (!part) return dfm_fail(DFM_E_NOMEM, "colsum: out of memory for %lld partial sums", (long long)(chunks * n));
    red_ctx c = {.x = x, .part = part, .m = m, .n = n};
    dfm_cpu_parallel(chunks, 1 + 32768 / (DFM_REDUCE_ROWS * n), colsum_chunks, &c);
    dfm_cpu_sum_partials(part, 1, chunks, n, out, n);
    return 0;
}

/* Columns i0..i1 of the flattened [groups, n] output. */
static void partials_range(void *arg, int64_t i0, int64_t i1)
{
    red_ctx *c = arg;
    float s[COLS];
    while (i0 < i1) {
        int64_t g = i0 / c->n, j0 = i0 % c->n;
        int64_t j1 = j0 + COLS < c->n ? j0 + COLS : c->n;
        if (j1 - j0 > i1 - i0) j1 = j0 + (i1 - i0);
        int64_t w = j1 - j0;
        memset(s, 0, sizeof s);
        const float *p = c->part + g * c->chunks * c->n + j0;
        for (int64_t k = 0; k < c->chunks; k++) add_row(s, p + k * c->n, w);
        float *o = c->out + g * c->ld + j0;
        for (int64_t j = 0; j < w; j++) o[j] += s[j];
        i0 += w;
    }
}

void dfm_cpu_sum_partials(const float *part, int64_t groups, int64_t chunks, int64_t n, float *out,
                          int64_t ld)
{
    if (groups <= 0 || chunks <= 0 || n <= 0) return;
    red_ctx c = {.part = part, .n = n, .groups = groups, .chunks = chunks, .ld = ld, .out = out};
    dfm_cpu_parallel(groups * n, 1 + 65536 / chunks, partials_range, &c);
}
