/* dropout.c — inverted dropout with a Philox mask (dropout.h). */
#include "cpu/dropout.h"
#include "base/rng.h"
#include "cpu/cpu.h"

typedef struct {
    const float *x;
    float *y;
    int64_t n;
    float p, scale;
    uint32_t key[2], stream[2];
} drop_ctx;

/* ranges in blocks of 4 elements */
static void drop_blocks(void *arg, int64_t b0, int64_t b1)
{
    const drop_ctx *c = arg;
    for (int64_t b = b0; b < b1; b++) {
        uint32_t ctr[4] = {(uint32_t)b, (uint32_t)((uint64_t)b >> 32), c->stream[0], c->stream[1]}, r[4];
        dfm_philox4x32(ctr, c->key, r);
        for (int j = 0; j < 4; j++) {
            int64_t i = 4 * b + j;
            if (i >= c->n) break;
            float u = (float)(r[j] >> 8) * (1.0f / 16777216.0f);
            c->y[i] = u >= c->p ? c->x[i] * c->scale : 0.0f;
        }
    }
}

void dfm_cpu_dropout(const float *x, float *y, int64_t n, float p, uint64_t seed, uint64_t stream)
{
    if (n <= 0) return;
    if (p <= 0.0f) {
        if (y != x)
            for (int64_t i = 0; i < n; i++) y[i] = x[i];
        return;
    }
    drop_ctx c = {x, y, n, p, 1.0f / (1.0f - p), {(uint32_t)seed, (uint32_t)(seed >> 32)},
                  {(uint32_t)stream, (uint32_t)(stream >> 32)}};
    dfm_cpu_parallel((n + 3) / 4, 4096, drop_blocks, &c);
}
