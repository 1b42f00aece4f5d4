/* patch.c — patchify / unpatchify permutations (patch.h). Threads over tokens. */
#include "cpu/patch.h"
#include "cpu/cpu.h"

typedef struct {
    const float *src;
    float *dst;
    int64_t d[5], p[3];
    int order, to_rows;
} patch_ctx;

/* tokens [t0, t1) of all batch items (t = b * N + n) */
static void patch_range(void *arg, int64_t t0, int64_t t1)
{
    const patch_ctx *c = arg;
    int64_t C = c->d[1], F = c->d[2], H = c->d[3], W = c->d[4], pt = c->p[0], ph = c->p[1], pw = c->p[2];
    int64_t Hp = H / ph, Wp = W / pw, N = (F / pt) * Hp * Wp, P = pt * ph * pw;
    for (int64_t t = t0; t < t1; t++) {
        int64_t b = t / N, n = t % N, f = n / (Hp * Wp), i = (n / Wp) % Hp, j = n % Wp;
        for (int64_t ch = 0; ch < C; ch++)
            for (int64_t kt = 0; kt < pt; kt++)
                for (int64_t kh = 0; kh < ph; kh++)
                    for (int64_t kw = 0; kw < pw; kw++) {
                        int64_t pos = (kt * ph + kh) * pw + kw;
                        int64_t col = c->order ? pos * C + ch : ch * P + pos;
                        int64_t xi = (((b * C + ch) * F + f * pt + kt) * H + i * ph + kh) * W + j * pw + kw;
                        int64_t ri = t * C * P + col;
                        if (c->to_rows) c->dst[ri] = c->src[xi];
                        else c->dst[xi] = c->src[ri];
                    }
    }
}

static void run(const float *src, float *dst, const int64_t dims[5], const int64_t patch[3], int order, int to_rows)
{
    patch_ctx c = {src, dst, {dims[0], dims[1], dims[2], dims[3], dims[4]}, {patch[0], patch[1], patch[2]}, order, to_rows};
    int64_t tokens = dims[0] * (dims[2] / patch[0]) * (dims[3] / patch[1]) * (dims[4] / patch[2]);
    dfm_cpu_parallel(tokens, 64, patch_range, &c);
}

void dfm_cpu_patchify(const float *x, float *rows, const int64_t dims[5], const int64_t patch[3], int order)
{
    run(x, rows, dims, patch, order, 1);
}

void dfm_cpu_unpatchify(const float *rows, float *x, const int64_t dims[5], const int64_t patch[3], int order)
{
    run(rows, x, dims, patch, order, 0);
}
