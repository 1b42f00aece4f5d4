/* rng.c — Philox4x32-10 and normals (see rng.h). ref: Random123 philox.h; cuRAND curand_philox4x32_x.h */
#include "base/rng.h"

#include <math.h>

static inline uint32_t mulhilo(uint32_t a, uint32_t b, uint32_t *hi)
{
    uint64_t p = (uint64_t)a * b;
    *hi = (uint32_t)(p >> 32);
    return (uint32_t)p;
}

void dfm_philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4])
{
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3], k0 = key[0], k1 = key[1];
    for (int r = 0; r < 10; r++) {
        uint32_t hi0, hi1;
        uint32_t lo0 = mulhilo(0xD2511F53u, c0, &hi0);
        uint32_t lo1 = mulhilo(0xCD9E8D57u, c2, &hi1);
        uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
        c0 = n0, c1 = lo1, c2 = n2, c3 = lo0;
        k0 += 0x9E3779B9u, k1 += 0xBB67AE85u;
    }
    out[0] = c0, out[1] = c1, out[2] = c2, out[3] = c3;
}

/* uniform in (0, 1] from 32 bits */
static inline float u01(uint32_t x) { return ((float)(x >> 8) + 1.0f) * (1.0f / 16777216.0f); }

void dfm_randn(uint64_t seed, uint64_t stream, float *out, size_t n)
{
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    for (size_t i = 0; i < n; i += 4) {
        uint64_t blk = i / 4;
        uint32_t ctr[4] = {(uint32_t)blk, (uint32_t)(blk >> 32), (uint32_t)stream, (uint32_t)(stream >> 32)};
        uint32_t r[4];
        dfm_philox4x32(ctr, key, r);
        for (int j = 0; j < 2; j++) {
            float u1 = u01(r[2 * j]), u2 = u01(r[2 * j + 1]);
            float rad = sqrtf(-2.0f * logf(u1)), th = 6.28318530717958647692f * u2;
            if (i + 2 * j < n) out[i + 2 * j] = rad * cosf(th);
            if (i + 2 * j + 1 < n) out[i + 2 * j + 1] = rad * sinf(th);
        }
    }
}
