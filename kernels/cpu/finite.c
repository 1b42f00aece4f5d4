/* finite.c — counting non-finite values (finite.h). A float is NaN or +-Inf exactly when its
 * exponent bits are all ones: F32 0x7f800000, BF16 0x7f80, F16 0x7c00. Each thread scans a range
 * in blocks, counting (AVX2: compare 32 bytes at a time and count the mask bits; the plain loop
 * elsewhere, which -O2 does not vectorize) and, in the first block that has any, finding the
 * first; ranges combine by a sum and a minimum, which do not depend on the order the threads
 * finish in. */
#include "cpu/finite.h"
#include "cpu/cpu.h"
#include "cpu/simd.h"

#include <string.h>

#define BLOCK 4096          /* elements counted before looking for the first */
#define CHUNK (1 << 18)     /* elements per thread at least */

typedef struct {
    const uint8_t *p;
    int esize;
    uint32_t mask; /* the exponent bits */
    int64_t count, first;
} scan_ctx;

static inline uint32_t load(const uint8_t *p, int esize, int64_t i)
{
    if (esize == 4) {
        uint32_t u;
        memcpy(&u, p + 4 * i, 4);
        return u;
    }
    uint16_t h;
    memcpy(&h, p + 2 * i, 2);
    return h;
}

#ifdef DFM_SIMD_X86
/* Count over [i0, i1) in whole 32-byte vectors; returns the count and sets *done to where it
 * stopped. */
__attribute__((target("avx2"))) static int64_t count_avx2(const uint8_t *p, int esize, uint32_t mask,
                                                          int64_t i0, int64_t i1, int64_t *done)
{
    int64_t c = 0, per = 32 / esize, i = i0;
    if (esize == 4) {
        const __m256i m = _mm256_set1_epi32((int)mask);
        for (; i + per <= i1; i += per) {
            __m256i v = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(p + 4 * i)), m);
            c += __builtin_popcount((unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(v, m))));
        }
    } else {
        const __m256i m = _mm256_set1_epi16((short)mask);
        for (; i + per <= i1; i += per) {
            __m256i v = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(p + 2 * i)), m);
            c += __builtin_popcount((unsigned)_mm256_movemask_epi8(_mm256_cmpeq_epi16(v, m))) / 2;
        }
    }
    *done = i;
    return c;
}
#endif

static int64_t count_block(const uint8_t *p, int esize, uint32_t mask, int64_t i0, int64_t i1)
{
    int64_t c = 0;
#ifdef DFM_SIMD_X86
    if (dfm_cpu_use_avx2()) c = count_avx2(p, esize, mask, i0, i1, &i0);
#endif
    if (esize == 4) {
        for (int64_t i = i0; i < i1; i++) {
            uint32_t u;
            memcpy(&u, p + 4 * i, 4);
            c += (u & mask) == mask;
        }
    } else {
        for (int64_t i = i0; i < i1; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            c += ((uint32_t)h & mask) == mask;
        }
    }
    return c;
}

static void scan_range(void *arg, int64_t i0, int64_t i1)
{
    scan_ctx *s = arg;
    int64_t count = 0, first = -1;
    for (int64_t b = i0; b < i1; b += BLOCK) {
        int64_t e = b + BLOCK < i1 ? b + BLOCK : i1;
        int64_t c = count_block(s->p, s->esize, s->mask, b, e);
        if (c && first < 0)
            for (int64_t i = b; i < e && first < 0; i++)
                if ((load(s->p, s->esize, i) & s->mask) == s->mask) first = i;
        count += c;
    }
    if (!count) return;
    __atomic_fetch_add(&s->count, count, __ATOMIC_RELAXED);
    int64_t cur = __atomic_load_n(&s->first, __ATOMIC_RELAXED);
    while ((cur < 0 || first < cur) &&
           !__atomic_compare_exchange_n(&s->first, &cur, first, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
}

int64_t dfm_cpu_count_nonfinite(const void *p, dfm_dtype dt, int64_t n, int64_t *first)
{
    scan_ctx s = {.p = p, .count = 0, .first = -1};
    *first = -1;
    if (dt == DFM_F32) s.esize = 4, s.mask = 0x7f800000u;
    else if (dt == DFM_BF16) s.esize = 2, s.mask = 0x7f80u;
    else if (dt == DFM_F16) s.esize = 2, s.mask = 0x7c00u;
    else return 0;
    if (n <= 0) return 0;
    dfm_cpu_parallel(n, CHUNK, scan_range, &s);
    *first = s.first;
    return s.count;
}
