/* finite.c — counting non-finite values (finite.h). A float is NaN or +-Inf exactly when its
 * exponent bits are all ones: F32 0x7f800000, BF16 0x7f80, F16 0x7c00. Each thread scans a range
 * in blocks, counting (a loop without branches that GCC vectorizes) and, in the first block that
 * has any, finding the first; ranges combine by a sum and a minimum, which do not depend on the
 * order the threads finish in. */
#include "cpu/finite.h"
#include "cpu/cpu.h"

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

static int64_t count_block(const uint8_t *p, int esize, uint32_t mask, int64_t i0, int64_t i1)
{
    int64_t c = 0;
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
