/* finite.h — find the non-finite values (NaN, +Inf, -Inf) of a float array on the CPU: the twin
 * of dfm_cuda_count_nonfinite. Elements are tested by bit pattern (an all-ones exponent), not by
 * float comparisons, so no compiler flag or signalling NaN can hide one. Any alignment.
 * Threads for large arrays; the result does not depend on the thread count.
 */
#ifndef DFM_KERNELS_CPU_FINITE_H
#define DFM_KERNELS_CPU_FINITE_H
#include <stdint.h>
#include "base/dtype.h"

/* The number of non-finite elements among the n values of dtype dt (F32, BF16 or F16; any other
 * dtype has none) at p; *first gets the index of the first of them, -1 when there is none. */
int64_t dfm_cpu_count_nonfinite(const void *p, dfm_dtype dt, int64_t n, int64_t *first);

#endif
