/* rope.c — interleaved-pair rotary embedding, forward and backward (rope.h), and Wan's 3-axis
 * tables. Tokens (rows of h * d) run over the threads; every element is two products and a sum,
 * each rounded (-std=c11 implies -ffp-contract=off; the AVX2 loop, 4 pairs at a time, uses
 * no FMA either), so the AVX2 and scalar paths give the same bits.
 * Not here: the half-split pairing, position ids other than a full grid. */
#include "cpu/rope.h"
#include "base/error.h"
#include "cpu/cpu.h"
#include "cpu/simd.h"

#include <math.h>
#include <stdlib.h>

typedef struct {
    const float *x, *cos, *sin;
    int64_t s, h, d;
    int back;
    float *y;
} rope_ctx;

static void rot_scalar(const float *x, const float *c, const float *sn, int64_t np, int back, float *y)
{
    for (int64_t k = 0; k < np; k++) {
        float x0 = x[2 * k], x1 = x[2 * k + 1];
        if (!back) {
            y[2 * k] = x0 * c[k] - x1 * sn[k];
            y[2 * k + 1] = x0 * sn[k] + x1 * c[k];
        } else {
            y[2 * k] = x0 * c[k] + x1 * sn[k];
            y[2 * k + 1] = x1 * c[k] - x0 * sn[k];
        }
    }
}

#ifdef DFM_SIMD_X86
/* 4 pairs at a time: p = x * [c0 c0 c1 c1 ..], q = swap(x) * [s0 s0 s1 s1 ..];
 * forward: even p - q, odd p + q (addsub); backward: even p + q, odd p - q (addsub of -q). */
__attribute__((target("avx2,fma"))) static int64_t rot_avx2(const float *x, const float *c, const float *sn,
                                                            int64_t np, int back, float *y)
{
    const __m256 neg = _mm256_set1_ps(-0.0f);
    int64_t k = 0;
    for (; k + 4 <= np; k += 4) {
        __m128 c4 = _mm_loadu_ps(c + k), s4 = _mm_loadu_ps(sn + k);
        __m256 cc = _mm256_set_m128(_mm_unpackhi_ps(c4, c4), _mm_unpacklo_ps(c4, c4));
        __m256 ss = _mm256_set_m128(_mm_unpackhi_ps(s4, s4), _mm_unpacklo_ps(s4, s4));
        __m256 v = _mm256_loadu_ps(x + 2 * k);
        __m256 p = _mm256_mul_ps(v, cc);
        __m256 q = _mm256_mul_ps(_mm256_permute_ps(v, 0xB1), ss);
        if (back) q = _mm256_xor_ps(q, neg);
        _mm256_storeu_ps(y + 2 * k, _mm256_addsub_ps(p, q));
    }
    return k;
}
#endif

static void rope_range(void *arg, int64_t r0, int64_t r1)
{
    rope_ctx *c = arg;
    int64_t np = c->d / 2, row = c->h * c->d;
    for (int64_t r = r0; r < r1; r++) {
        const float *cs = c->cos + (r % c->s) * np, *sn = c->sin + (r % c->s) * np;
        for (int64_t hh = 0; hh < c->h; hh++) {
            const float *x = c->x + r * row + hh * c->d;
            float *y = c->y + r * row + hh * c->d;
            int64_t k = 0;
#ifdef DFM_SIMD_X86
            if (dfm_cpu_use_avx2()) k = rot_avx2(x, cs, sn, np, c->back, y);
#endif
            rot_scalar(x + 2 * k, cs + k, sn + k, np - k, c->back, y + 2 * k);
        }
    }
}

static int rope_run(const float *x, int64_t b, int64_t s, int64_t h, int64_t d, const float *cos,
                    const float *sin, float *y, int back)
{
    if (d % 2) return dfm_fail(DFM_E_ARG, "rope: head dim %lld is odd", (long long)d);
    if (b <= 0 || s <= 0 || h <= 0 || d <= 0) return 0;
    rope_ctx c = {x, cos, sin, s, h, d, back, y};
    dfm_cpu_parallel(b * s, 1 + 32768 / (h * d), rope_range, &c);
    return 0;
}

int dfm_cpu_rope(const float *x, int64_t b, int64_t s, int64_t h, int64_t d, const float *cos,
                 const float *sin, float *y)
{
    return rope_run(x, b, s, h, d, cos, sin, y, 0);
}

int dfm_cpu_rope_backward(const float *dy, int64_t b, int64_t s, int64_t h, int64_t d, const float *cos,
                          const float *sin, float *dx)
{
    return rope_run(dy, b, s, h, d, cos, sin, dx, 1);
}

/* ---- Wan's tables -------------------------------------------------------------------------- */

/* cos / sin of axis dims da at positions 0..n-1: [n, da / 2] f32 each. */
static void axis_table(int64_t da, double theta, int64_t n, float *c, float *s)
{
    int64_t np = da / 2;
    for (int64_t j = 0; j < np; j++) {
        /* torch.arange(0, da, 2, float64) / da; 1.0 / theta ** that; outer with the positions */
        double e = (double)(2 * j) / (double)da;
        double freq = 1.0 / pow(theta, e);
        for (int64_t p = 0; p < n; p++) {
            double a = (double)p * freq;
            c[p * np + j] = (float)cos(a);
            s[p * np + j] = (float)sin(a);
        }
    }
}

int dfm_cpu_wan_rope_table(int64_t head_dim, double theta, int64_t f, int64_t hh, int64_t w,
                           int64_t max_pos, float *cos_out, float *sin_out)
{
    if (head_dim < 6 || head_dim % 2)
        return dfm_fail(DFM_E_ARG, "wan rope: head dim %lld is not an even number >= 6", (long long)head_dim);
    if (f < 1 || hh < 1 || w < 1 || f > max_pos || hh > max_pos || w > max_pos)
        return dfm_fail(DFM_E_ARG, "wan rope: grid %lldx%lldx%lld outside 1..%lld per axis", (long long)f,
                        (long long)hh, (long long)w, (long long)max_pos);
    int64_t dh = 2 * (head_dim / 6), dt = head_dim - 2 * dh; /* dims per axis */
    int64_t pt = dt / 2, ph = dh / 2, np = head_dim / 2;     /* pairs */
    size_t nf = (size_t)(f * pt + hh * ph + w * ph);
    float *buf = malloc(2 * nf * sizeof(float));
    if (!buf) return dfm_fail(DFM_E_NOMEM, "wan rope: out of memory for the axis tables");
    float *ct = buf, *st = ct + f * pt, *ch = st + f * pt, *sh = ch + hh * ph, *cw = sh + hh * ph,
          *sw = cw + w * ph;
    axis_table(dt, theta, f, ct, st);
    axis_table(dh, theta, hh, ch, sh);
    axis_table(dh, theta, w, cw, sw);
    for (int64_t i = 0; i < f; i++)
        for (int64_t j = 0; j < hh; j++)
            for (int64_t k = 0; k < w; k++) {
                int64_t t = (i * hh + j) * w + k;
                float *c = cos_out + t * np, *s = sin_out + t * np;
                for (int64_t q = 0; q < pt; q++) c[q] = ct[i * pt + q], s[q] = st[i * pt + q];
                for (int64_t q = 0; q < ph; q++) c[pt + q] = ch[j * ph + q], s[pt + q] = sh[j * ph + q];
                for (int64_t q = 0; q < ph; q++)
                    c[pt + ph + q] = cw[k * ph + q], s[pt + ph + q] = sw[k * ph + q];
            }
    free(buf);
    return 0;
}
