/* reduce.h — deterministic sums for the CPU kernels (twins in kernels/cuda reduce.cu): column
 * sums over rows that give the same bits whatever the thread count, and the one order in which
 * the kernels sum along a row.
 *
 * Over rows (a bias gradient, the weight gradient of a norm, the per-batch gradient of a
 * modulation vector): the rows are cut into chunks of DFM_REDUCE_ROWS (a constant, not a function
 * of the thread count); each chunk sums its rows in row order into a partial row (f32, from +0),
 * then the partials are summed in chunk order (f32, from +0) and the total is added to the
 * output. The CUDA twins cut the same chunks and add in the same orders, so both give the same
 * bits.
 *
 * Along a row (the mean and variance of a norm, the dot products of a backward): in double, in 8
 * lanes; lane l takes the elements j = l (mod 8) below the last multiple of 8 in order, the lanes
 * are combined as ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)), and the tail is added after
 * in order. That is the order of an AVX2 loop with two __m256d accumulators; the scalar loops
 * follow it, so both paths give the same bits. (The CUDA twins sum in a block tree, also in
 * double; sums of f32 values in double are nearly exact, so the rounded results agree but for
 * rare ties.)
 *
 * Not here: reductions of a whole tensor to one number, max/min.
 */
#ifndef DFM_KERNELS_CPU_REDUCE_H
#define DFM_KERNELS_CPU_REDUCE_H
#include <stdint.h>

#include "cpu/simd.h"

#define DFM_REDUCE_ROWS 64 /* rows per partial sum */

/* Chunks of DFM_REDUCE_ROWS rows that cover m rows. */
static inline int64_t dfm_reduce_chunks(int64_t m) { return (m + DFM_REDUCE_ROWS - 1) / DFM_REDUCE_ROWS; }

/* out[j] += sum_r x[r, j] for x: [m, n] f32, out: [n] f32, in the chunked order above.
 * Returns 0 or DFM_E_NOMEM (scratch for the partials: ceil(m / 64) * n floats).
 * ref: torch.nn.functional.linear backward (grad_bias = grad_output.sum(0)) */
int dfm_cpu_colsum(const float *x, int64_t m, int64_t n, float *out);

/* The second step of a chunked sum: out[g * ld + j] += sum_c part[(g * chunks + c) * n + j], the
 * partials added in chunk order from +0, for g < groups, j < n (ld >= n). part: [groups, chunks,
 * n] f32 as the kernels' first steps leave it. Threads over the columns. */
void dfm_cpu_sum_partials(const float *part, int64_t groups, int64_t chunks, int64_t n, float *out,
                          int64_t ld);

/* The lanes of a row sum combined in the fixed order. */
static inline double dfm_reduce_lanes8(const double a[8])
{
    return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
}

#ifdef DFM_SIMD_X86
/* The same from two accumulators: lo holds lanes 0-3, hi lanes 4-7. */
__attribute__((target("avx2,fma"))) static inline double dfm_reduce_lanes8_avx2(__m256d lo, __m256d hi)
{
    __m256d s = _mm256_add_pd(lo, hi);                                         /* l0+l4 .. l3+l7 */
    __m128d t = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1)); /* (.)+(.) */
    return _mm_cvtsd_f64(_mm_add_sd(t, _mm_unpackhi_pd(t, t)));
}
#endif

#endif
