/* test_flow.c — lib/train/flow.c: the inverse normal CDF, sigma sampling against analytical CDFs
 * (Kolmogorov-Smirnov over 200k draws per configuration), truncation keeping the shape, keyed
 * determinism, noise statistics, quantiles (against the draws and diffusion-pipe's table), the
 * noisy input bit for bit against torch's evaluation order, weights, and the loss with its
 * gradient against a double reference and finite differences. */
#include "test.h"

#include "base/error.h"
#include "cpu/cpu.h"
#include "train/flow.h"

#include <stdint.h>
#include <stdlib.h>

#define NDRAW 200000
/* KS critical value at alpha = 0.001: 1.95 / sqrt(n) (asymptotic; 0.00436 for 200k). The draws
 * are deterministic, so a configuration passes or fails every time. */
#define KS_BOUND(n) (1.95 / sqrt((double)(n)))

/* ---- an independent reference CDF of sigma ----------------------------------------------------- */

static double ref_phi(double z) { return 0.5 * erfc(-z / sqrt(2.0)); }
static double ref_mode_u(double s, double v)
{
    double c = cos(M_PI * v / 2.0);
    return 1.0 - v - s * (c * c - 1.0 + v);
}
/* P(u <= x) for the unshifted sampling */
static double ref_base_cdf(const dfm_flow_opts *o, int uniform, double x)
{
    if (x <= 0) return 0;
    if (x >= 1) return 1;
    if (uniform || o->sampling == DFM_SIGMA_UNIFORM) return x;
    if (o->sampling == DFM_SIGMA_LOGIT_NORMAL) return ref_phi((log(x / (1 - x)) - o->logit_mean) / o->logit_std);
    if (o->sampling == DFM_SIGMA_SIGMOID) return ref_phi(log(x / (1 - x)) / o->sigmoid_scale);
    /* mode: u = T(v) decreasing; P(T(v) <= x) = 1 - v* where T(v*) = x (regula falsi-free bisection,
     * 60 halvings: 1e-18) */
    double a = 0, b = 1;
    for (int i = 0; i < 60; i++) {
        double m = 0.5 * (a + b);
        if (ref_mode_u(o->mode_scale, m) > x) a = m;
        else b = m;
    }
    return 1.0 - 0.5 * (a + b);
}
static double ref_unshift(double s, double sg) { return sg / (s - (s - 1) * sg); }
/* the training distribution's CDF: its options and the bounds' images, computed once */
typedef struct {
    const dfm_flow_opts *o;
    double lo, hi, fl, fh;
} ref_dist;
static ref_dist ref_of(const dfm_flow_opts *o)
{
    ref_dist d = {o, ref_unshift(o->shift, o->min_t), ref_unshift(o->shift, o->max_t), 0, 0};
    d.fl = ref_base_cdf(o, 0, d.lo), d.fh = ref_base_cdf(o, 0, d.hi);
    return d;
}
/* P(sigma <= sg): truncated main part and truncated uniform, mixed */
static double ref_cdf(const ref_dist *d, double sg)
{
    const dfm_flow_opts *o = d->o;
    if (sg <= o->min_t) return 0;
    if (sg >= o->max_t) return 1;
    double x = ref_unshift(o->shift, sg);
    double r = o->sampling == DFM_SIGMA_UNIFORM ? 1.0 : o->mix_uniform_ratio;
    double gm = (ref_base_cdf(o, 0, x) - d->fl) / (d->fh - d->fl);
    double gu = (x - d->lo) / (d->hi - d->lo);
    return (1 - r) * gm + r * gu;
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

/* ---- configurations ------------------------------------------------------------------------------ */

typedef struct {
    const char *what;
    dfm_sigma_sampling s;
    double p1, p2, shift, lo, hi, mix;
} cfg;

static const cfg g_cfgs[] = {
    {"uniform", DFM_SIGMA_UNIFORM, 0, 0, 1, 0, 1, 0},
    {"uniform shift 3 [0.1, 0.9]", DFM_SIGMA_UNIFORM, 0, 0, 3, 0.1, 0.9, 0},
    {"logit_normal(0,1)", DFM_SIGMA_LOGIT_NORMAL, 0, 1, 1, 0, 1, 0},
    {"logit_normal(0,1) shift 3", DFM_SIGMA_LOGIT_NORMAL, 0, 1, 3, 0, 1, 0},
    {"logit_normal(-0.5,1.5) shift 5 [0.2, 0.875]", DFM_SIGMA_LOGIT_NORMAL, -0.5, 1.5, 5, 0.2, 0.875, 0},
    {"logit_normal(0,1) [0, 0.875]", DFM_SIGMA_LOGIT_NORMAL, 0, 1, 1, 0, 0.875, 0},
    {"logit_normal(0,1) shift 3 [0.875, 1] mix 0.3", DFM_SIGMA_LOGIT_NORMAL, 0, 1, 3, 0.875, 1, 0.3},
    {"logit_normal(0,1) mix 0.1", DFM_SIGMA_LOGIT_NORMAL, 0, 1, 1, 0, 1, 0.1},
    {"mode 1.29", DFM_SIGMA_MODE, 1.29, 0, 1, 0, 1, 0},
    {"mode 1.29 shift 3 [0.1, 0.6]", DFM_SIGMA_MODE, 1.29, 0, 3, 0.1, 0.6, 0},
    {"mode -0.5 [0.3, 1]", DFM_SIGMA_MODE, -0.5, 0, 1, 0.3, 1, 0},
    {"sigmoid 1", DFM_SIGMA_SIGMOID, 1, 0, 1, 0, 1, 0},
    {"sigmoid 2 shift 3", DFM_SIGMA_SIGMOID, 2, 0, 3, 0, 1, 0},
    {"sigmoid 0.5 shift 0.5 [0.05, 0.95] mix 0.5", DFM_SIGMA_SIGMOID, 0.5, 0, 0.5, 0.05, 0.95, 0.5},
};
#define NCFG ((int)(sizeof g_cfgs / sizeof g_cfgs[0]))

static dfm_flow_opts opts_of(const cfg *c)
{
    dfm_flow_opts o;
    dfm_flow_opts_default(&o);
    o.sampling = c->s;
    if (c->s == DFM_SIGMA_LOGIT_NORMAL) o.logit_mean = c->p1, o.logit_std = c->p2;
    if (c->s == DFM_SIGMA_MODE) o.mode_scale = c->p1;
    if (c->s == DFM_SIGMA_SIGMOID) o.sigmoid_scale = c->p1;
    o.shift = c->shift, o.min_t = c->lo, o.max_t = c->hi, o.mix_uniform_ratio = c->mix;
    return o;
}

static char g_key[32];
static const char *key_of(int i)
{
    snprintf(g_key, sizeof g_key, "sample-%06d", i);
    return g_key;
}

/* NDRAW sigmas of o (distinct keys, one step), sorted */
static float *draw_sorted(const dfm_flow_opts *o, uint64_t seed, int64_t step)
{
    float *s = malloc(NDRAW * sizeof *s);
    if (!s) return NULL;
    for (int i = 0; i < NDRAW; i++) s[i] = dfm_flow_sigma(o, seed, step, key_of(i));
    qsort(s, NDRAW, sizeof *s, cmp_float);
    return s;
}

/* ---- tests ---------------------------------------------------------------------------------------- */

TEST(flow_norm_ppf)
{
    /* known quantiles (R qnorm), relative 1e-14 */
    static const double p[] = {0.5, 0.975, 0.001, 1e-10, 0.9, 0.3};
    static const double z[] = {0.0, 1.959963984540054, -3.090232306167813, -6.361340902404056, 1.2815515655446004,
                               -0.5244005127080407};
    for (int i = 0; i < (int)(sizeof p / sizeof p[0]); i++) {
        double got = dfm_flow_norm_ppf(p[i]);
        CHECK_NEAR(got, z[i], 1e-14 * fmax(1.0, fabs(z[i])) * 8);
    }
    /* round trip through erfc over 1e-300 .. 1 - 1e-16, relative 1e-12 in p (the tails amplify the
     * error of x by |x|^2: 1.4e-13 at 1e-300) */
    double worst = 0;
    for (double e = -300; e <= -0.31; e += 0.37) {
        double pp = pow(10.0, e);
        double back = dfm_flow_norm_cdf(dfm_flow_norm_ppf(pp));
        worst = fmax(worst, fabs(back - pp) / pp);
        double hi = 1.0 - pp; /* upper tail through the symmetric form */
        if (hi < 1.0 && pp > 1e-15) {
            double b2 = dfm_flow_norm_cdf(-dfm_flow_norm_ppf(hi));
            worst = fmax(worst, fabs(b2 - (1.0 - hi)) / (1.0 - hi));
        }
    }
    if (!(worst <= 1e-12)) fprintf(stderr, "  ppf round trip worst relative error %.3g\n", worst);
    CHECK(worst <= 1e-12);
    CHECK(dfm_flow_norm_ppf(0.0) == -INFINITY && dfm_flow_norm_ppf(1.0) == INFINITY);
    CHECK(isnan(dfm_flow_norm_ppf(NAN)));
    /* monotone across the branch points 0.075 and 0.925 (|q| = 0.425) and r = 5 */
    double prev = -INFINITY;
    for (double x = 1e-12; x < 1; x += 1.1e-3) {
        double y = dfm_flow_norm_ppf(x);
        CHECK(y > prev);
        prev = y;
    }
}

TEST(flow_check)
{
    dfm_flow_opts o;
    dfm_flow_opts_default(&o);
    CHECK_EQ(dfm_flow_check(&o), 0);
    CHECK(o.sampling == DFM_SIGMA_LOGIT_NORMAL && o.logit_std == 1 && o.mode_scale == 1.29 && o.shift == 1 &&
          o.min_t == 0 && o.max_t == 1 && o.mix_uniform_ratio == 0 && o.weighting == DFM_LOSSW_NONE);
#define BAD(field, stmt)                                                           \
    do {                                                                           \
        dfm_flow_opts b = o;                                                       \
        stmt;                                                                      \
        int rc_ = dfm_flow_check(&b);                                              \
        CHECK_EQ(rc_, DFM_E_ARG);                                                  \
        if (rc_ == DFM_E_ARG && !strstr(dfm_errmsg(), field))                      \
            fprintf(stderr, "  message '%s' does not name %s\n", dfm_errmsg(), field), dfm_test_failures++; \
    } while (0)
    BAD("logit_std", b.logit_std = 0);
    BAD("logit_mean", b.logit_mean = NAN);
    BAD("mode_scale", (b.sampling = DFM_SIGMA_MODE, b.mode_scale = 1.76));
    BAD("mode_scale", (b.sampling = DFM_SIGMA_MODE, b.mode_scale = -1.01));
    BAD("sigmoid_scale", (b.sampling = DFM_SIGMA_SIGMOID, b.sigmoid_scale = -1));
    BAD("shift", b.shift = 0);
    BAD("shift", b.shift = INFINITY);
    BAD("min_t", b.min_t = -0.1);
    BAD("max_t", b.max_t = 1.5);
    BAD("min_t", (b.min_t = 0.5, b.max_t = 0.5));
    BAD("mix_uniform_ratio", b.mix_uniform_ratio = 1.2);
    BAD("sampling", b.sampling = (dfm_sigma_sampling)7);
    BAD("weighting", b.weighting = (dfm_loss_weighting)9);
#undef BAD
    /* a sampling's parameters are checked only when it is the sampling */
    dfm_flow_opts u = o;
    u.sampling = DFM_SIGMA_UNIFORM, u.mode_scale = 99, u.logit_std = -1;
    CHECK_EQ(dfm_flow_check(&u), 0);
    /* the accepted mode scales are where u(v) is monotone: 1.29 and 1.75 decreasing on a fine grid,
     * 1.76 not */
    const double scales[] = {-1.0, 1.29, 1.75, 1.76};
    for (int k = 0; k < 4; k++) {
        int mono = 1;
        for (int i = 1; i <= 100000; i++)
            if (ref_mode_u(scales[k], i / 1e5) > ref_mode_u(scales[k], (i - 1) / 1e5)) mono = 0;
        dfm_flow_opts m = o;
        m.sampling = DFM_SIGMA_MODE, m.mode_scale = scales[k];
        CHECK_EQ(mono, k < 3);
        CHECK_EQ(dfm_flow_check(&m) == 0, mono);
    }
}

/* Per configuration, 200k draws: KS against the reference CDF, all inside the bounds; and the
 * quantile function against them (monotone, inside the bounds, the fraction of draws at or below
 * quantile(q) within the KS bound of q, the reference CDF at quantile(q) within 1e-5 of q). */
TEST(flow_sigma_distribution)
{
    for (int c = 0; c < NCFG; c++) {
        dfm_flow_opts o = opts_of(&g_cfgs[c]);
        ref_dist rd = ref_of(&o);
        CHECK_EQ(dfm_flow_check(&o), 0);
        float *s = draw_sorted(&o, 1234 + c, 7);
        if (!s) {
            CHECK(0);
            return;
        }
        double d = 0;
        int out = 0;
        for (int i = 0; i < NDRAW; i++) {
            if (!(s[i] >= (float)o.min_t && s[i] <= (float)o.max_t)) out++;
            /* KS: the empirical CDF jumps from i/N to (i+1)/N at s[i] */
            double f = ref_cdf(&rd, s[i]);
            d = fmax(d, fmax(fabs(f - (double)i / NDRAW), fabs(f - (double)(i + 1) / NDRAW)));
        }
        if (out || !(d <= KS_BOUND(NDRAW)))
            fprintf(stderr, "  %s: KS %.5f (bound %.5f), %d outside [%g, %g]\n", g_cfgs[c].what, d, KS_BOUND(NDRAW), out,
                    o.min_t, o.max_t);
        CHECK(d <= KS_BOUND(NDRAW));
        CHECK_EQ(out, 0);

        float prev = -1;
        double worst = 0;
        for (int k = 0; k <= 200; k++) {
            double q = k / 200.0;
            float v = dfm_flow_sigma_quantile(&o, q);
            CHECK(v >= prev);
            CHECK(v >= (float)o.min_t && v <= (float)o.max_t);
            prev = v;
            size_t lo = 0, hi = NDRAW; /* draws <= v */
            while (lo < hi) {
                size_t m = (lo + hi) / 2;
                if (s[m] <= v) lo = m + 1;
                else hi = m;
            }
            if (k > 0 && k < 200) worst = fmax(worst, fabs((double)lo / NDRAW - q));
            if (k % 20 == 0 && k > 0 && k < 200) CHECK_NEAR(ref_cdf(&rd, v), q, 1e-5);
        }
        if (!(worst <= KS_BOUND(NDRAW)))
            fprintf(stderr, "  %s: quantiles off the draws by %.5f\n", g_cfgs[c].what, worst);
        CHECK(worst <= KS_BOUND(NDRAW));
        free(s);
    }
}

/* The truncated histogram is the untruncated one restricted to the bounds and rescaled */
TEST(flow_truncation_shape)
{
    const cfg base[] = {{"", DFM_SIGMA_LOGIT_NORMAL, 0.3, 1.2, 3, 0, 1, 0}, {"", DFM_SIGMA_MODE, 1.29, 0, 2, 0, 1, 0}};
    for (int k = 0; k < 2; k++) {
        dfm_flow_opts full = opts_of(&base[k]), tr = full;
        tr.min_t = 0.3, tr.max_t = 0.8;
        enum { NB = 10 };
        double cf[NB] = {0}, ct[NB] = {0}, nin = 0;
        for (int i = 0; i < NDRAW; i++) {
            float a = dfm_flow_sigma(&full, 99, 1, key_of(i)), b = dfm_flow_sigma(&tr, 77, 1, key_of(i));
            if (a >= 0.3f && a < 0.8f) cf[(int)((a - 0.3) / 0.05)]++, nin++;
            int j = (int)((b - 0.3) / 0.05);
            ct[j < NB ? j : NB - 1]++;
        }
        for (int j = 0; j < NB; j++) {
            double want = NDRAW * cf[j] / nin;
            /* both counts are noisy: sd of the difference ~ sqrt(want (1 + NDRAW / nin)) */
            double tol = 5 * sqrt(want * (1 + NDRAW / nin));
            if (!(fabs(ct[j] - want) <= tol))
                fprintf(stderr, "  config %d bin %d: %g truncated draws, %g expected (tolerance %g)\n", k, j, ct[j], want,
                        tol), dfm_test_failures++;
        }
    }
}

TEST(flow_keyed)
{
    dfm_flow_opts o;
    dfm_flow_opts_default(&o);
    o.shift = 3, o.mix_uniform_ratio = 0.2;
    float a = dfm_flow_sigma(&o, 42, 10, "clip/0001");
    CHECK(a == dfm_flow_sigma(&o, 42, 10, "clip/0001"));
    /* different step, key or seed: a different value (16 keys: all distinct) */
    CHECK(a != dfm_flow_sigma(&o, 42, 11, "clip/0001"));
    CHECK(a != dfm_flow_sigma(&o, 42, 10, "clip/0002"));
    CHECK(a != dfm_flow_sigma(&o, 43, 10, "clip/0001"));
    CHECK(dfm_flow_sigma(&o, 42, -1, NULL) == dfm_flow_sigma(&o, 42, -1, ""));
    float seen[16];
    for (int i = 0; i < 16; i++) {
        seen[i] = dfm_flow_sigma(&o, 42, 10, key_of(i));
        for (int j = 0; j < i; j++) CHECK(seen[i] != seen[j]);
    }
    /* noise: the same for the same (seed, step, key); element i independent of n; other keys,
     * steps, seeds differ */
    enum { N = 1003 };
    static float n1[N], n2[N], n3[N];
    dfm_flow_noise(42, 10, "clip/0001", n1, N);
    dfm_flow_noise(42, 10, "clip/0001", n2, N);
    CHECK(!memcmp(n1, n2, sizeof n1));
    dfm_flow_noise(42, 10, "clip/0001", n3, 37);
    CHECK(!memcmp(n1, n3, 37 * sizeof *n1));
    int same = 0;
    dfm_flow_noise(42, 11, "clip/0001", n2, N);
    for (int i = 0; i < N; i++) same += n1[i] == n2[i];
    dfm_flow_noise(42, 10, "clip/0002", n2, N);
    for (int i = 0; i < N; i++) same += n1[i] == n2[i];
    dfm_flow_noise(43, 10, "clip/0001", n2, N);
    for (int i = 0; i < N; i++) same += n1[i] == n2[i];
    CHECK(same <= 1);
}

TEST(flow_noise_stats)
{
    enum { N = 1 << 20 };
    float *x = malloc(N * sizeof *x);
    if (!x) {
        CHECK(0);
        return;
    }
    dfm_flow_noise(7, 3, "k", x, N);
    double s = 0, s2 = 0, s4 = 0;
    for (int i = 0; i < N; i++) s += x[i];
    double mean = s / N;
    for (int i = 0; i < N; i++) {
        double d = x[i] - mean;
        s2 += d * d, s4 += d * d * d * d;
    }
    double var = s2 / N, kurt = s4 / N / (var * var);
    /* 5 standard errors: mean 1/sqrt(N), variance sqrt(2/N), kurtosis sqrt(24/N) */
    CHECK_NEAR(mean, 0.0, 5 / sqrt((double)N));
    CHECK_NEAR(var, 1.0, 5 * sqrt(2.0 / N));
    CHECK_NEAR(kurt, 3.0, 5 * sqrt(24.0 / N));
    free(x);
}

/* Fixed points of the quantile function and diffusion-pipe's table (the draws' check is in
 * flow_sigma_distribution) */
TEST(flow_quantile)
{
    dfm_flow_opts o;
    dfm_flow_opts_default(&o);
    CHECK(dfm_flow_sigma_quantile(&o, 0.5) == 0.5f);
    CHECK(dfm_flow_sigma_quantile(&o, 0.0) == 0.0f && dfm_flow_sigma_quantile(&o, 1.0) == 1.0f);
    CHECK(!isnan(dfm_flow_sigma_quantile(&o, NAN)));
    /* diffusion-pipe's table (utils/common.py): 10,000 quantiles of logit-normal, shifted by 3,
     * sliced to [0, 0.875); eval sigma = table[int(q * len)] — the continuous quantile within the
     * table's resolution */
    o.shift = 3, o.max_t = 0.875;
    static double tab[10000];
    int len = 0;
    for (int i = 0; i < 10000; i++) {
        double q = 1e-4 + (1 - 2e-4) * i / 9999.0, t = 1 / (1 + exp(-dfm_flow_norm_ppf(q)));
        t = 3 * t / (1 + 2 * t);
        if (t >= 0 && t < 0.875) tab[len++] = t;
    }
    for (int k = 1; k < 10; k++) {
        double q = k / 10.0;
        CHECK_NEAR(dfm_flow_sigma_quantile(&o, q), tab[(int)(q * len)], 1e-3);
    }
}

TEST(flow_noisy)
{
    enum { N = 4099 };
    static float x0[N], eps[N], got[N], t1[N], t2[N], want[N];
    dfm_flow_noise(1, 1, "x0", x0, N);
    dfm_flow_noise(1, 1, "eps", eps, N);
    const float sig[] = {0.0f, 1.0f, 0.3f, 0.123456f, 0.999f, 1e-4f};
    int fused_differs = 0;
    for (int k = 0; k < 6; k++) {
        float s = sig[k];
        /* torch: (1.0 - sigma) * x0 + sigma * noise, one kernel per operator, each a tensor */
        float a = 1.0f - s;
        for (int i = 0; i < N; i++) t1[i] = a * x0[i];
        for (int i = 0; i < N; i++) t2[i] = s * eps[i];
        for (int i = 0; i < N; i++) want[i] = t1[i] + t2[i];
        dfm_flow_noisy(x0, eps, s, got, N);
        CHECK(!memcmp(got, want, sizeof want));
        for (int i = 0; i < N; i++) fused_differs += fmaf(a, x0[i], t2[i]) != want[i];
    }
    /* the comparison can tell a fused multiply-add from torch's order */
    CHECK(fused_differs > 0);
    /* in place (xt = x0) */
    memcpy(got, x0, sizeof x0);
    dfm_flow_noisy(got, eps, 0.3f, got, N);
    float a = 1.0f - 0.3f;
    for (int i = 0; i < N; i++) {
        float p0 = a * x0[i], p1 = 0.3f * eps[i];
        CHECK(got[i] == p0 + p1);
    }
}

TEST(flow_weight)
{
    dfm_flow_opts o;
    dfm_flow_opts_default(&o);
    o.shift = 3;
    const float s[] = {0.0f, 1e-6f, 0.25f, 0.5f, 0.9f, 1.0f};
    for (int i = 0; i < 6; i++) {
        double x = s[i];
        o.weighting = DFM_LOSSW_NONE;
        CHECK(dfm_flow_weight(&o, s[i]) == 1.0f);
        o.weighting = DFM_LOSSW_LINEAR;
        CHECK(dfm_flow_weight(&o, s[i]) == 1.0f + 3.0f * s[i]);
        o.weighting = DFM_LOSSW_SIGMA_SQRT;
        double c = x < 1e-5 ? 1e-5 : x, w = 1 / (c * c);
        CHECK_NEAR(dfm_flow_weight(&o, s[i]), w, 1e-7 * w);
        CHECK(isfinite(dfm_flow_weight(&o, s[i])));
        o.weighting = DFM_LOSSW_COSMAP;
        w = 2 / (M_PI * (1 - 2 * x + 2 * x * x));
        CHECK_NEAR(dfm_flow_weight(&o, s[i]), w, 1e-7 * w);
    }
    o.weighting = DFM_LOSSW_COSMAP;
    CHECK_NEAR(dfm_flow_weight(&o, 0.5f), 4 / M_PI, 1e-6);
    o.weighting = DFM_LOSSW_SIGMA_SQRT;
    CHECK(dfm_flow_weight(&o, 0.0f) == 1e10f);
}

/* loss in double from the definition */
static double ref_loss(const float *pred, const float *x0, const float *eps, const float *w, int B, size_t n,
                       double *unw)
{
    double s = 0, u = 0;
    for (int b = 0; b < B; b++)
        for (size_t j = 0; j < n; j++) {
            size_t i = b * n + j;
            double d = (double)pred[i] - ((double)eps[i] - (double)x0[i]);
            s += w[b] * d * d, u += d * d;
        }
    *unw = u / ((double)B * n);
    return s / ((double)B * n);
}

TEST(flow_loss)
{
    enum { B = 3, N = 10001 };
    static float x0[B * N], eps[B * N], pred[B * N], d1[B * N], d2[B * N];
    dfm_flow_noise(3, 0, "x0", x0, B * N);
    dfm_flow_noise(3, 0, "eps", eps, B * N);
    dfm_flow_noise(3, 0, "pred", pred, B * N);
    const float sigma[B] = {0.1f, 0.5f, 0.93f};
    dfm_flow_opts o;
    dfm_flow_opts_default(&o);
    o.shift = 3;
    int threads = dfm_cpu_threads();
    for (int wk = 0; wk <= DFM_LOSSW_COSMAP; wk++) {
        o.weighting = (dfm_loss_weighting)wk;
        float w[B];
        for (int b = 0; b < B; b++) w[b] = dfm_flow_weight(&o, sigma[b]);
        float unw, unw2;
        dfm_cpu_set_threads(1);
        float loss = dfm_flow_loss(pred, x0, eps, sigma, B, N, &o, 0.5f, d1, &unw);
        dfm_cpu_set_threads(3);
        float loss3 = dfm_flow_loss(pred, x0, eps, sigma, B, N, &o, 0.5f, d2, &unw2);
        dfm_cpu_set_threads(threads);
        /* bit-identical whatever the threads */
        CHECK(loss == loss3 && unw == unw2 && !memcmp(d1, d2, sizeof d1));
        double ru, rl = ref_loss(pred, x0, eps, w, B, N, &ru);
        CHECK_NEAR(loss, rl, 1e-6 * rl);
        CHECK_NEAR(unw, ru, 1e-6 * ru);
        /* dpred against the double formula 0.5 * 2 w (pred - v) / (B N) */
        double worst = 0, big = 0;
        for (int b = 0; b < B; b++)
            for (int j = 0; j < N; j++) {
                size_t i = (size_t)b * N + j;
                double g = 0.5 * 2 * w[b] * ((double)pred[i] - ((double)eps[i] - x0[i])) / ((double)B * N);
                worst = fmax(worst, fabs(g - d1[i])), big = fmax(big, fabs(g));
            }
        CHECK(worst <= 1e-6 * big);
        /* without the optional outputs: the same loss */
        CHECK(dfm_flow_loss(pred, x0, eps, sigma, B, N, &o, 0.5f, NULL, NULL) == loss);
    }
    /* finite differences on a small batch: the loss is quadratic in pred, so central differences
     * are exact up to the f32 rounding of the returned loss (h = 1e-2: error ~ 1e-5 of the
     * gradient's scale) */
    enum { b2 = 2, n2 = 5 };
    float p[b2 * n2], g[b2 * n2], s2[b2] = {0.2f, 0.7f};
    memcpy(p, pred, sizeof p);
    o.weighting = DFM_LOSSW_COSMAP;
    dfm_flow_loss(p, x0, eps, s2, b2, n2, &o, 2.0f, g, NULL);
    double big = 0, worst = 0;
    for (int i = 0; i < b2 * n2; i++) big = fmax(big, fabs(g[i]));
    for (int i = 0; i < b2 * n2; i++) {
        float keep = p[i], h = 1e-2f;
        p[i] = keep + h;
        double lp = dfm_flow_loss(p, x0, eps, s2, b2, n2, &o, 1.0f, NULL, NULL);
        p[i] = keep - h;
        double lm = dfm_flow_loss(p, x0, eps, s2, b2, n2, &o, 1.0f, NULL, NULL);
        p[i] = keep;
        double fd = 2.0 * (lp - lm) / ((double)(keep + h) - (double)(keep - h)); /* scale 2 */
        worst = fmax(worst, fabs(fd - g[i]));
    }
    if (!(worst <= 1e-3 * big)) fprintf(stderr, "  finite differences: worst %.3g of %.3g\n", worst, big);
    CHECK(worst <= 1e-3 * big);
    CHECK(isnan(dfm_flow_loss(p, x0, eps, s2, 0, n2, &o, 1.0f, NULL, NULL)));
}
