/* flow.c — flow-matching sigma sampling, noise, noisy input, weights and loss (flow.h). */
#include "train/flow.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/rng.h"
#include "base/strset.h"
#include "cpu/cpu.h"

/* the mode transform is monotone for scales in [MODE_MIN, MODE_MAX] (flow.h) */
#define MODE_MIN (-1.0)
#define MODE_MAX (1.0 / (M_PI / 2.0 - 1.0))

/* stream purposes: sigma and noise never share a Philox stream */
#define TAG_SIGMA 0x5349474d41ull /* "SIGMA" */
#define TAG_NOISE 0x4e4f495345ull /* "NOISE" */

void dfm_flow_opts_default(dfm_flow_opts *o)
{
    memset(o, 0, sizeof *o);
    o->sampling = DFM_SIGMA_LOGIT_NORMAL;
    o->logit_mean = 0.0, o->logit_std = 1.0;
    o->mode_scale = 1.29;
    o->sigmoid_scale = 1.0;
    o->shift = 1.0;
    o->min_t = 0.0, o->max_t = 1.0;
    o->mix_uniform_ratio = 0.0;
    o->weighting = DFM_LOSSW_NONE;
}

int dfm_flow_check(const dfm_flow_opts *o)
{
    if (!o) return dfm_fail(DFM_E_ARG, "flow: NULL options");
    switch (o->sampling) {
    case DFM_SIGMA_UNIFORM: break;
    case DFM_SIGMA_LOGIT_NORMAL:
        if (!isfinite(o->logit_mean)) return dfm_fail(DFM_E_ARG, "flow: logit_mean %g is not finite", o->logit_mean);
        if (!(isfinite(o->logit_std) && o->logit_std > 0))
            return dfm_fail(DFM_E_ARG, "flow: logit_std %g is not finite and > 0", o->logit_std);
        break;
    case DFM_SIGMA_MODE:
        if (!(o->mode_scale >= MODE_MIN && o->mode_scale <= MODE_MAX))
            return dfm_fail(DFM_E_ARG,
                            "flow: mode_scale %g is not in [-1, %.4f] (outside, u(v) is not monotone and has no "
                            "quantile function)",
                            o->mode_scale, MODE_MAX);
        break;
    case DFM_SIGMA_SIGMOID:
        if (!(isfinite(o->sigmoid_scale) && o->sigmoid_scale > 0))
            return dfm_fail(DFM_E_ARG, "flow: sigmoid_scale %g is not finite and > 0", o->sigmoid_scale);
        break;
    default: return dfm_fail(DFM_E_ARG, "flow: sampling %d is not uniform, logit_normal, mode or sigmoid", (int)o->sampling);
    }
    if (!(isfinite(o->shift) && o->shift > 0)) return dfm_fail(DFM_E_ARG, "flow: shift %g is not finite and > 0", o->shift);
    if (!(o->min_t >= 0.0 && o->min_t <= 1.0)) return dfm_fail(DFM_E_ARG, "flow: min_t %g is not in [0, 1]", o->min_t);
    if (!(o->max_t >= 0.0 && o->max_t <= 1.0)) return dfm_fail(DFM_E_ARG, "flow: max_t %g is not in [0, 1]", o->max_t);
    if (!(o->min_t < o->max_t)) return dfm_fail(DFM_E_ARG, "flow: min_t %g is not below max_t %g", o->min_t, o->max_t);
    if (!(o->mix_uniform_ratio >= 0.0 && o->mix_uniform_ratio <= 1.0))
        return dfm_fail(DFM_E_ARG, "flow: mix_uniform_ratio %g is not in [0, 1]", o->mix_uniform_ratio);
    if ((unsigned)o->weighting > DFM_LOSSW_COSMAP)
        return dfm_fail(DFM_E_ARG, "flow: weighting %d is not none, linear, sigma_sqrt or cosmap", (int)o->weighting);
    return 0;
}

/* ---- the standard normal ------------------------------------------------------------------- */

double dfm_flow_norm_cdf(double x) { return 0.5 * erfc(-x / M_SQRT2); }

/* ref: Wichura, Algorithm AS 241 (Applied Statistics 37, 1988), PPND16 */
double dfm_flow_norm_ppf(double p)
{
    if (isnan(p)) return NAN;
    if (p <= 0.0) return -INFINITY;
    if (p >= 1.0) return INFINITY;
    double q = p - 0.5, r, x;
    if (fabs(q) <= 0.425) {
        r = 0.180625 - q * q;
        return q *
               (((((((r * 2509.0809287301226727 + 33430.575583588128105) * r + 67265.770927008700853) * r +
                    45921.953931549871457) * r + 13731.693765509461125) * r + 1971.5909503065514427) * r +
                 133.14166789178437745) * r + 3.387132872796366608) /
               (((((((r * 5226.495278852545925 + 28729.085735721942674) * r + 39307.89580009271061) * r +
                    21213.794301586595867) * r + 5394.1960214247511077) * r + 687.1870074920579083) * r +
                 42.313330701600911252) * r + 1.0);
    }
    r = q < 0 ? p : 1.0 - p;
    r = sqrt(-log(r));
    if (r <= 5.0) {
        r -= 1.6;
        x = (((((((r * 7.7454501427834140764e-4 + 0.0227238449892691845833) * r + 0.24178072517745061177) * r +
                 1.27045825245236838258) * r + 3.64784832476320460504) * r + 5.7694972214606914055) * r +
              4.6303378461565452959) * r + 1.42343711074968357734) /
            (((((((r * 1.05075007164441684324e-9 + 5.475938084995344946e-4) * r + 0.0151986665636164571966) * r +
                 0.14810397642748007459) * r + 0.68976733498510000455) * r + 1.6763848301838038494) * r +
              2.05319162663775882187) * r + 1.0);
    } else {
        r -= 5.0;
        x = (((((((r * 2.01033439929228813265e-7 + 2.71155556874348757815e-5) * r + 0.0012426609473880784386) * r +
                 0.026532189526576123093) * r + 0.29656057182850489123) * r + 1.7848265399172913358) * r +
              5.4637849111641143699) * r + 6.6579046435011037772) /
            (((((((r * 2.04426310338993978564e-15 + 1.4215117583164458887e-7) * r + 1.8463183175100546818e-5) * r +
                 7.868691311456132591e-4) * r + 0.0148753612908506148525) * r + 0.13692988092273580531) * r +
              0.59983220655588793769) * r + 1.0);
    }
    return q < 0 ? -x : x;
}

/* ---- the unshifted distributions of u on [0, 1]: CDF and quantile ------------------------------ */

static double clamp01(double x) { return x < 0.0 ? 0.0 : x > 1.0 ? 1.0 : x; }
static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

/* mode: u = T(v), decreasing from T(0) = 1 to T(1) = 0 for the scales dfm_flow_check accepts */
static double mode_u(double s, double v)
{
    double c = cos(M_PI * v / 2.0);
    return 1.0 - v - s * (c * c - 1.0 + v);
}
/* T^-1(x) by bisection on [0, 1] */
static double mode_uinv(double s, double x)
{
    double lo = 0.0, hi = 1.0;
    for (int it = 0; it < 200; it++) {
        double mid = 0.5 * (lo + hi);
        if (mid <= lo || mid >= hi) break;
        if (mode_u(s, mid) > x) lo = mid; /* T decreasing: T(mid) > x means mid < T^-1(x) */
        else hi = mid;
    }
    return 0.5 * (lo + hi);
}

/* logit-normal parameters of the sampling (sigmoid is logit-normal with mean 0, std scale) */
static void logit_params(const dfm_flow_opts *o, double *mean, double *std)
{
    *mean = o->sampling == DFM_SIGMA_SIGMOID ? 0.0 : o->logit_mean;
    *std = o->sampling == DFM_SIGMA_SIGMOID ? o->sigmoid_scale : o->logit_std;
}

/* P(u <= x) of the sampling (uniform when `uniform`) */
static double base_cdf(const dfm_flow_opts *o, int uniform, double x)
{
    if (x <= 0.0) return 0.0;
    if (x >= 1.0) return 1.0;
    if (uniform) return x;
    switch (o->sampling) {
    case DFM_SIGMA_LOGIT_NORMAL:
    case DFM_SIGMA_SIGMOID: {
        double m, s;
        logit_params(o, &m, &s);
        return dfm_flow_norm_cdf((log(x) - log1p(-x) - m) / s);
    }
    case DFM_SIGMA_MODE: return 1.0 - mode_uinv(o->mode_scale, x); /* P(T(v) <= x) = P(v >= T^-1(x)) */
    default: return x;
    }
}

/* the inverse of base_cdf */
static double base_ppf(const dfm_flow_opts *o, int uniform, double q)
{
    q = clamp01(q);
    if (uniform) return q;
    switch (o->sampling) {
    case DFM_SIGMA_LOGIT_NORMAL:
    case DFM_SIGMA_SIGMOID: {
        double m, s;
        logit_params(o, &m, &s);
        return sigmoid(m + s * dfm_flow_norm_ppf(q)); /* ±inf at q = 0, 1: sigmoid gives 0, 1 */
    }
    case DFM_SIGMA_MODE: return clamp01(mode_u(o->mode_scale, 1.0 - q));
    default: return q;
    }
}

/* ---- shift and bounds ------------------------------------------------------------------------- */

static double shift_fwd(double s, double u) { return s * u / (1.0 + (s - 1.0) * u); }
static double shift_inv(double s, double sg) { return sg / (s - (s - 1.0) * sg); }

typedef struct {
    double lo, hi;   /* unshifted images of min_t, max_t */
    double flo, fhi; /* base CDF there */
} bounds;

static bounds bounds_of(const dfm_flow_opts *o, int uniform)
{
    bounds b;
    b.lo = o->min_t <= 0.0 ? 0.0 : clamp01(shift_inv(o->shift, o->min_t));
    b.hi = o->max_t >= 1.0 ? 1.0 : clamp01(shift_inv(o->shift, o->max_t));
    b.flo = b.lo <= 0.0 ? 0.0 : base_cdf(o, uniform, b.lo);
    b.fhi = b.hi >= 1.0 ? 1.0 : base_cdf(o, uniform, b.hi);
    return b;
}

/* sigma of unshifted x, inside the bounds */
static double to_sigma(const dfm_flow_opts *o, const bounds *b, double x)
{
    x = fmin(fmax(x, b->lo), b->hi); /* fmax/fmin drop a NaN */
    double sg = shift_fwd(o->shift, x);
    return fmin(fmax(sg, o->min_t), o->max_t);
}

/* sigma at quantile q of the truncated (mix-free) distribution */
static double truncated_ppf(const dfm_flow_opts *o, int uniform, double q)
{
    bounds b = bounds_of(o, uniform);
    return to_sigma(o, &b, base_ppf(o, uniform, b.flo + q * (b.fhi - b.flo)));
}

/* ---- keyed streams ------------------------------------------------------------------------------ */

static uint64_t mix64(uint64_t z) /* splitmix64's finalizer: a bijection */
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t stream_of(int64_t step, const char *key, uint64_t tag)
{
    if (!key) key = "";
    uint64_t h = dfm_hash_fnv1a(key, strlen(key));
    return mix64(mix64(h ^ tag) + (uint64_t)step);
}

float dfm_flow_sigma(const dfm_flow_opts *o, uint64_t seed, int64_t step, const char *key)
{
    uint64_t s = stream_of(step, key, TAG_SIGMA);
    const uint32_t k[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    const uint32_t ctr[4] = {0, 0, (uint32_t)s, (uint32_t)(s >> 32)};
    uint32_t r[4];
    dfm_philox4x32(ctr, k, r);
    double u = ((double)((((uint64_t)r[0] << 32) | r[1]) >> 11) + 0.5) * 0x1p-53; /* (0, 1) */
    int uniform = o->sampling == DFM_SIGMA_UNIFORM ||
                  (o->mix_uniform_ratio > 0.0 && ((double)r[2] + 0.5) * 0x1p-32 < o->mix_uniform_ratio);
    return (float)truncated_ppf(o, uniform, u);
}

void dfm_flow_noise(uint64_t seed, int64_t step, const char *key, float *out, size_t n)
{
    dfm_randn(seed, stream_of(step, key, TAG_NOISE), out, n);
}

/* the mixture's CDF at unshifted x: (1 - r) main + r uniform, each truncated */
static double mixture_cdf(const dfm_flow_opts *o, const bounds *bm, const bounds *bu, double x)
{
    double r = o->sampling == DFM_SIGMA_UNIFORM ? 1.0 : o->mix_uniform_ratio;
    double dm = bm->fhi - bm->flo, du = bu->fhi - bu->flo;
    double gm = dm > 0 ? (base_cdf(o, 0, x) - bm->flo) / dm : (x >= bm->hi ? 1.0 : 0.0);
    double gu = du > 0 ? (x - bu->flo) / du : (x >= bu->hi ? 1.0 : 0.0);
    return (1.0 - r) * clamp01(gm) + r * clamp01(gu);
}

float dfm_flow_sigma_quantile(const dfm_flow_opts *o, double q)
{
    q = q > 0.0 ? (q < 1.0 ? q : 1.0) : 0.0; /* NaN -> 0 */
    int uniform = o->sampling == DFM_SIGMA_UNIFORM;
    if (uniform || o->mix_uniform_ratio <= 0.0) return (float)truncated_ppf(o, uniform, q);
    if (o->mix_uniform_ratio >= 1.0) return (float)truncated_ppf(o, 1, q);
    bounds bm = bounds_of(o, 0), bu = bounds_of(o, 1);
    double lo = bm.lo, hi = bm.hi;
    for (int it = 0; it < 200; it++) {
        double mid = 0.5 * (lo + hi);
        if (mid <= lo || mid >= hi) break;
        if (mixture_cdf(o, &bm, &bu, mid) < q) lo = mid;
        else hi = mid;
    }
    return (float)to_sigma(o, &bm, 0.5 * (lo + hi));
}

/* ---- noisy input, weights, loss ----------------------------------------------------------------- */

void dfm_flow_noisy(const float *x0, const float *eps, float sigma, float *xt, size_t n)
{
    float a = 1.0f - sigma;
    for (size_t i = 0; i < n; i++) {
        /* separate statements: no compiler contracts them into an FMA (torch rounds each) */
        float p0 = a * x0[i];
        float p1 = sigma * eps[i];
        xt[i] = p0 + p1;
    }
}

float dfm_flow_weight(const dfm_flow_opts *o, float sigma)
{
    switch (o->weighting) {
    case DFM_LOSSW_LINEAR: {
        float t = (float)o->shift * sigma; /* NeMo: 1.0 + flow_shift * sigma on an f32 tensor */
        return 1.0f + t;
    }
    case DFM_LOSSW_SIGMA_SQRT: {
        double s = sigma >= 1e-5f ? (double)sigma : 1e-5;
        return (float)(1.0 / (s * s));
    }
    case DFM_LOSSW_COSMAP: {
        double s = sigma;
        return (float)(2.0 / (M_PI * (1.0 - 2.0 * s + 2.0 * s * s)));
    }
    default: return 1.0f;
    }
}

#define LOSS_BLOCK 8192 /* elements per partial sum: the fixed order is per row, per block */

typedef struct {
    const float *pred, *x0, *eps;
    float *dpred;
    const float *w, *c; /* per sample: weight, gradient coefficient */
    size_t n, nblk;     /* elements per row, blocks per row */
    double *part;       /* [B * nblk][2]: weighted, unweighted */
} loss_ctx;

static void loss_blocks(void *arg, int64_t k0, int64_t k1)
{
    const loss_ctx *L = arg;
    for (int64_t k = k0; k < k1; k++) {
        size_t b = (size_t)k / L->nblk, j0 = ((size_t)k % L->nblk) * LOSS_BLOCK;
        size_t j1 = j0 + LOSS_BLOCK < L->n ? j0 + LOSS_BLOCK : L->n;
        const size_t off = b * L->n;
        float w = L->w[b], c = L->c[b];
        double sw = 0.0, su = 0.0;
        for (size_t j = off + j0; j < off + j1; j++) {
            float v = L->eps[j] - L->x0[j];
            float d = L->pred[j] - v;
            float e = d * d;
            float we = w * e;
            sw += we, su += e;
            if (L->dpred) L->dpred[j] = c * d;
        }
        L->part[2 * k] = sw, L->part[2 * k + 1] = su;
    }
}

float dfm_flow_loss(const float *pred, const float *x0, const float *eps, const float *sigma, int B, size_t n,
                    const dfm_flow_opts *o, float scale, float *dpred, float *unweighted)
{
    if (unweighted) *unweighted = NAN;
    if (B < 1 || n == 0) return NAN;
    size_t nblk = (n + LOSS_BLOCK - 1) / LOSS_BLOCK, nk = (size_t)B * nblk;
    float *wc = malloc(2 * (size_t)B * sizeof *wc);
    double *part = malloc(2 * nk * sizeof *part);
    if (!wc || !part) {
        free(wc), free(part);
        dfm_fail(DFM_E_NOMEM, "flow_loss: out of memory");
        return NAN;
    }
    double denom = (double)B * (double)n;
    for (int b = 0; b < B; b++) {
        wc[b] = dfm_flow_weight(o, sigma[b]);
        wc[B + b] = (float)((double)scale * 2.0 * (double)wc[b] / denom);
    }
    loss_ctx L = {pred, x0, eps, dpred, wc, wc + B, n, nblk, part};
    dfm_cpu_parallel((int64_t)nk, 4, loss_blocks, &L);
    double sw = 0.0, su = 0.0;
    for (size_t k = 0; k < nk; k++) sw += part[2 * k], su += part[2 * k + 1];
    free(wc), free(part);
    if (unweighted) *unweighted = (float)(su / denom);
    return (float)(sw / denom);
}
