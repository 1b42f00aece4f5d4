/* test_nn_kernels.c — the Wan transformer's norm and elementwise kernels (kernels/cpu layer_norm,
 * rms_norm, act, rope, modulate, reduce) at the kernel level:
 *   - each forward against an independent double-precision reference over many shapes (rows
 *     1..300, widths 1..1537, multiples of 8 and not), within bounds derived from the roundings
 *     each kernel documents (stated at each check, in units of u = 2^-24);
 *   - where a kernel pins torch's f32 operation order, against that order spelled out here in
 *     f32, bit for bit;
 *   - each backward against the analytic derivative in double, and against central finite
 *     differences of the double forward on small shapes;
 *   - the AVX2 path against the scalar path and 1 against 2 threads, bit for bit (silu's backward:
 *     within its exp's stated error across paths, bit for bit across threads);
 *   - the CUDA twins against the CPU (skipped without a device).
 */
#include "test.h"

#include "base/dtype.h"
#include "base/error.h"
#include "cpu/act.h"
#include "cpu/cpu.h"
#include "cpu/gated.h"
#include "cpu/layer_norm.h"
#include "cpu/modulate.h"
#include "cpu/reduce.h"
#include "cpu/rms_norm.h"
#include "cpu/rope.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define U (1.0 / 16777216.0) /* 2^-24: half an ulp of 1 */
#define EPS 1e-6f

/* ---- data ---------------------------------------------------------------------------------- */

static uint64_t g_rng = 0x243f6a8885a308d3ull;
static double urand(void) /* [-1, 1) */
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (double)(g_rng >> 11) * (2.0 / 9007199254740992.0) - 1.0;
}

static float *fill(int64_t n, double scale, double offset)
{
    float *p = malloc((size_t)(n ? n : 1) * sizeof(float));
    for (int64_t i = 0; i < n; i++) p[i] = (float)(offset + scale * urand());
    return p;
}

static double *to_d(const float *p, int64_t n)
{
    double *d = malloc((size_t)(n ? n : 1) * sizeof(double));
    for (int64_t i = 0; i < n; i++) d[i] = p ? p[i] : 0.0;
    return d;
}

static float *copy_f(const float *p, int64_t n)
{
    float *c = malloc((size_t)(n ? n : 1) * sizeof(float));
    memcpy(c, p, (size_t)n * sizeof(float));
    return c;
}

/* Index of the first element whose bits differ, or -1. */
static int64_t diff_bits(const float *a, const float *b, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof(float))) return i;
    return -1;
}

/* Run configurations: 0 is the default (SIMD, 2 threads); the others must give its bits. */
static const struct {
    int simd, threads;
} CFG[4] = {{1, 2}, {1, 1}, {0, 1}, {0, 2}};
static void set_cfg(int i)
{
    dfm_cpu_set_simd(CFG[i].simd);
    dfm_cpu_set_threads(CFG[i].threads);
}
static void end_cfg(int saved)
{
    dfm_cpu_set_simd(1);
    dfm_cpu_set_threads(saved);
}

static const int64_t ROWS[] = {1, 2, 3, 5, 17, 64, 65, 130, 300};
static const int64_t DIMS[] = {1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 64, 100, 257, 1536, 1537};
#define NROWS ((int)(sizeof ROWS / sizeof ROWS[0]))
#define NDIMS ((int)(sizeof DIMS / sizeof DIMS[0]))

/* A parameter vector of n values as dtype dt (F32 or BF16) and as the f32 values it holds. */
typedef struct {
    void *raw;
    dfm_dtype dt;
    float *f;
} param_t;

static param_t param(int64_t n, dfm_dtype dt, double scale, double offset)
{
    param_t p = {NULL, dt, fill(n, scale, offset)};
    if (dt == DFM_BF16) {
        uint16_t *h = malloc((size_t)n * 2 + 2);
        dfm_convert_floats(h, DFM_BF16, p.f, DFM_F32, (size_t)n);
        dfm_convert_floats(p.f, DFM_F32, h, DFM_BF16, (size_t)n);
        p.raw = h;
    } else {
        p.raw = p.f;
    }
    return p;
}
static void param_free(param_t *p)
{
    if (p->raw != p->f) free(p->raw);
    free(p->f);
}

/* ---- finite differences -------------------------------------------------------------------- */

/* d loss / d p[k] by central differences of a double-precision loss, for k < n. */
typedef double (*loss_fn)(void *ctx);
static void fd_grad(loss_fn loss, void *ctx, double *p, int64_t n, double *g)
{
    for (int64_t k = 0; k < n; k++) {
        double v = p[k], h = 1e-5 * (fabs(v) > 1 ? fabs(v) : 1);
        p[k] = v + h;
        double lp = loss(ctx);
        p[k] = v - h;
        double lm = loss(ctx);
        p[k] = v;
        g[k] = (lp - lm) / (2 * h);
    }
}

/* ================================================================================================
 * layer norm */

/* y = (x - mu) / sqrt(var + eps) * w + b in double; mu, rs per row when not NULL. */
static void ln_ref(const double *x, int64_t rows, int64_t d, const double *w, const double *b, double eps,
                   double *y, double *mu_out, double *rs_out)
{
    for (int64_t r = 0; r < rows; r++) {
        const double *xr = x + r * d;
        double mu = 0, var = 0;
        for (int64_t j = 0; j < d; j++) mu += xr[j];
        mu /= d;
        for (int64_t j = 0; j < d; j++) var += (xr[j] - mu) * (xr[j] - mu);
        var /= d;
        double rs = 1.0 / sqrt(var + eps);
        for (int64_t j = 0; j < d; j++) {
            double t = (xr[j] - mu) * rs;
            if (w) t *= w[j];
            if (b) t += b[j];
            y[r * d + j] = t;
        }
        if (mu_out) mu_out[r] = mu;
        if (rs_out) rs_out[r] = rs;
    }
}

/* The analytic backward in double: dx, and dw / db summed over the rows. */
static void ln_back_ref(const double *dy, const double *x, int64_t rows, int64_t d, const double *w, double eps,
                        double *dx, double *dw, double *db)
{
    double *y = malloc((size_t)(rows * d) * sizeof(double)), *mu = malloc((size_t)rows * sizeof(double)),
           *rs = malloc((size_t)rows * sizeof(double));
    ln_ref(x, rows, d, NULL, NULL, eps, y, mu, rs); /* y: x hat */
    for (int64_t j = 0; j < d; j++) dw[j] = db[j] = 0;
    for (int64_t r = 0; r < rows; r++) {
        double a = 0, c = 0;
        for (int64_t j = 0; j < d; j++) {
            double g = dy[r * d + j] * (w ? w[j] : 1.0);
            a += g, c += g * y[r * d + j];
            dw[j] += dy[r * d + j] * y[r * d + j];
            db[j] += dy[r * d + j];
        }
        a /= d, c /= d;
        for (int64_t j = 0; j < d; j++) {
            double g = dy[r * d + j] * (w ? w[j] : 1.0);
            dx[r * d + j] = rs[r] * (g - a - y[r * d + j] * c);
        }
    }
    free(y), free(mu), free(rs);
}

TEST(nn_layer_norm_forward)
{
    int saved = dfm_cpu_threads();
    for (int ri = 0; ri < NROWS; ri++)
        for (int di = 0; di < NDIMS; di++)
            for (int wc = 0; wc < 4; wc++) { /* none; F32 w, b; BF16 w, b; F32 w only */
                int64_t rows = ROWS[ri], d = DIMS[di], n = rows * d;
                float *x = fill(n, 0.5 + ri, wc == 2 ? -3.0 : 1.5); /* an offset: the mean matters */
                dfm_dtype dt = wc == 2 ? DFM_BF16 : DFM_F32;
                param_t w = param(d, dt, 0.5, 1.0), b = param(d, dt, 0.3, 0.1);
                const void *wr = wc ? w.raw : NULL, *br = (wc == 1 || wc == 2) ? b.raw : NULL;
                float *y = malloc((size_t)n * 4), *mean = malloc((size_t)rows * 4), *rstd = malloc((size_t)rows * 4);
                set_cfg(0);
                CHECK_EQ(dfm_cpu_layer_norm(x, rows, d, wr, dt, br, dt, EPS, y, mean, rstd), 0);
                double *xd = to_d(x, n), *wd = to_d(w.f, d), *bd = to_d(b.f, d);
                double *yr = malloc((size_t)n * 8), *mu = malloc((size_t)rows * 8), *rs = malloc((size_t)rows * 8);
                ln_ref(xd, rows, d, wr ? wd : NULL, br ? bd : NULL, EPS, yr, mu, rs);
                int bad = 0;
                for (int64_t r = 0; r < rows && bad < 3; r++) {
                    /* mean: rounded once from a near-exact sum (<= 1 u of max|x| with slack);
                     * rstd: var + eps, sqrt, divide each rounded (<= 4 u relative) */
                    double mx = 0;
                    for (int64_t j = 0; j < d; j++) mx = fmax(mx, fabs(xd[r * d + j]));
                    if (!(fabs(mean[r] - mu[r]) <= 2 * U * mx)) {
                        bad++;
                        CHECK_NEAR(mean[r], mu[r], 2 * U * mx);
                    }
                    if (!(fabs(rstd[r] - rs[r]) <= 4 * U * rs[r])) {
                        bad++;
                        CHECK_NEAR(rstd[r], rs[r], 4 * U * rs[r]);
                    }
                    for (int64_t j = 0; j < d; j++) {
                        /* y: (x - mean) and * rstd carry the mean's and rstd's errors, then * w and
                         * + b round once each: 8 u of every term's magnitude */
                        double xh = (xd[r * d + j] - mu[r]) * rs[r], wj = wr ? fabs(wd[j]) : 1;
                        double tol = 8 * U * ((fabs(xh) + fabs(mu[r]) * rs[r]) * wj + (br ? fabs(bd[j]) : 0)) + 1e-30;
                        if (!(fabs(y[r * d + j] - yr[r * d + j]) <= tol)) {
                            if (bad++ < 3)
                                fprintf(stderr, "  layer_norm %lldx%lld w%d [%lld,%lld]: %.9g vs %.9g\n", (long long)rows,
                                        (long long)d, wc, (long long)r, (long long)j, y[r * d + j], yr[r * d + j]);
                        }
                    }
                }
                CHECK_EQ(bad, 0);
                /* every path and thread count: the same bits */
                float *y2 = malloc((size_t)n * 4), *m2 = malloc((size_t)rows * 4), *s2 = malloc((size_t)rows * 4);
                for (int c = 1; c < 4; c++) {
                    set_cfg(c);
                    CHECK_EQ(dfm_cpu_layer_norm(x, rows, d, wr, dt, br, dt, EPS, y2, m2, s2), 0);
                    CHECK_EQ(diff_bits(y, y2, n), -1);
                    CHECK_EQ(diff_bits(mean, m2, rows), -1);
                    CHECK_EQ(diff_bits(rstd, s2, rows), -1);
                }
                /* in place */
                memcpy(y2, x, (size_t)n * 4);
                CHECK_EQ(dfm_cpu_layer_norm(y2, rows, d, wr, dt, br, dt, EPS, y2, NULL, NULL), 0);
                CHECK_EQ(diff_bits(y, y2, n), -1);
                free(y2), free(m2), free(s2), free(xd), free(wd), free(bd), free(yr), free(mu), free(rs);
                free(x), free(y), free(mean), free(rstd);
                param_free(&w), param_free(&b);
            }
    end_cfg(saved);
}

/* Check a backward's f32 result against a reference: |got - want| <= tol[i]. */
static int check_close(const char *what, const float *got, const double *want, const double *tol, int64_t n)
{
    int bad = 0;
    for (int64_t i = 0; i < n; i++)
        if (!(fabs(got[i] - want[i]) <= tol[i])) {
            if (bad++ < 3) fprintf(stderr, "  %s [%lld]: %.9g vs %.9g (tol %.3g)\n", what, (long long)i, got[i], want[i], tol[i]);
        }
    if (bad) dfm_test_failures++;
    return bad;
}

/* Tolerances of a norm backward from the magnitudes of its terms, in double:
 * dx: 64 u of rs * (|g| + |mean g| + |xh| |mean g xh|) per element (the products, differences
 * and the saved statistics each round; the sums are near exact), plus, for the layer norm, what
 * the f32 mean's rounding (2 u of |mean|) does through xh = (x - mean) rs, which shifts every xh
 * by rs 2 u |mean|: rs^2 2 u |mean| (|mean g xh| + |xh| |mean g|), 4 times that;
 * dw, db: (64 + chunks + 8) * 2 u of sum_r |dy xh| and sum_r |dy| (f32 sums of 64 rows, then of
 * the chunks) plus one rounding of the value accumulated into. */
typedef struct {
    double *dx, *dw, *db;
} tols_t;

static tols_t norm_tols(const double *dy, const double *x, int64_t rows, int64_t d, const double *w, double eps,
                        int rms, const double *dw0, const double *db0, const double *dwr, const double *dbr)
{
    tols_t t = {malloc((size_t)(rows * d) * 8), malloc((size_t)d * 8), malloc((size_t)d * 8)};
    double *sw = calloc((size_t)d, 8), *sb = calloc((size_t)d, 8);
    for (int64_t r = 0; r < rows; r++) {
        const double *xr = x + r * d;
        double mu = 0, var = 0;
        if (!rms)
            for (int64_t j = 0; j < d; j++) mu += xr[j] / d;
        for (int64_t j = 0; j < d; j++) var += (xr[j] - mu) * (xr[j] - mu) / d;
        double rs = 1 / sqrt(var + eps), a = 0, c = 0, mg = 0;
        for (int64_t j = 0; j < d; j++) {
            double g = dy[r * d + j] * (w ? w[j] : 1), xh = (xr[j] - mu) * rs;
            a += fabs(g) / d, c += fabs(g * xh) / d;
            sw[j] += fabs(dy[r * d + j] * xh), sb[j] += fabs(dy[r * d + j]);
            mg = fmax(mg, fabs(g));
        }
        for (int64_t j = 0; j < d; j++) {
            double xh = (xr[j] - mu) * rs;
            t.dx[r * d + j] = 64 * U * rs * (mg + a + fabs(xh) * c) + 8 * U * rs * rs * fabs(mu) * (c + fabs(xh) * a) + 1e-30;
        }
    }
    double k = (64 + dfm_reduce_chunks(rows) + 8) * 2 * U;
    for (int64_t j = 0; j < d; j++) {
        t.dw[j] = k * sw[j] + 2 * U * fabs(dw0[j] + dwr[j]) + 1e-30;
        t.db[j] = db0 ? k * sb[j] + 2 * U * fabs(db0[j] + dbr[j]) + 1e-30 : 0;
    }
    free(sw), free(sb);
    return t;
}

static void tols_free(tols_t *t) { free(t->dx), free(t->dw), free(t->db); }

TEST(nn_layer_norm_backward)
{
    int saved = dfm_cpu_threads();
    const int64_t rows_l[] = {1, 3, 64, 65, 300}, d_l[] = {1, 2, 7, 8, 17, 100, 1536, 1537};
    for (size_t ri = 0; ri < sizeof rows_l / sizeof rows_l[0]; ri++)
        for (size_t di = 0; di < sizeof d_l / sizeof d_l[0]; di++)
            for (int wc = 0; wc < 3; wc++) { /* no weight; F32; BF16 */
                int64_t rows = rows_l[ri], d = d_l[di], n = rows * d;
                float *x = fill(n, 1.0, 0.7), *dy = fill(n, 1.0, 0.0);
                dfm_dtype dt = wc == 2 ? DFM_BF16 : DFM_F32;
                param_t w = param(d, dt, 0.5, 1.0);
                const void *wr = wc ? w.raw : NULL;
                float *mean = malloc((size_t)rows * 4), *rstd = malloc((size_t)rows * 4), *y = malloc((size_t)n * 4);
                set_cfg(0);
                CHECK_EQ(dfm_cpu_layer_norm(x, rows, d, wr, dt, NULL, dt, EPS, y, mean, rstd), 0);
                float *dx = malloc((size_t)n * 4), *dw = fill(d, 1, 0), *db = fill(d, 1, 0);
                float *dw0 = copy_f(dw, d), *db0 = copy_f(db, d); /* accumulated into */
                CHECK_EQ(dfm_cpu_layer_norm_backward(dy, x, mean, rstd, rows, d, wr, dt, EPS, dx, dw, db), 0);
                double *xd = to_d(x, n), *dyd = to_d(dy, n), *wd = wr ? to_d(w.f, d) : NULL;
                double *dxr = malloc((size_t)n * 8), *dwr = malloc((size_t)d * 8), *dbr = malloc((size_t)d * 8);
                ln_back_ref(dyd, xd, rows, d, wd, EPS, dxr, dwr, dbr);
                double *dw0d = to_d(dw0, d), *db0d = to_d(db0, d);
                tols_t t = norm_tols(dyd, xd, rows, d, wd, EPS, 0, dw0d, db0d, dwr, dbr);
                for (int64_t j = 0; j < d; j++) dwr[j] += dw0d[j], dbr[j] += db0d[j];
                check_close("layer_norm dx", dx, dxr, t.dx, n);
                check_close("layer_norm dw", dw, dwr, t.dw, d);
                check_close("layer_norm db", db, dbr, t.db, d);
                /* paths and threads; recomputed statistics; dx in place of dy; parameters only */
                float *dx2 = malloc((size_t)n * 4), *dw2 = malloc((size_t)d * 4), *db2 = malloc((size_t)d * 4);
                for (int c = 1; c < 4; c++) {
                    set_cfg(c);
                    memcpy(dw2, dw0, (size_t)d * 4), memcpy(db2, db0, (size_t)d * 4);
                    CHECK_EQ(dfm_cpu_layer_norm_backward(dy, x, c == 1 ? NULL : mean, c == 1 ? NULL : rstd, rows, d,
                                                         wr, dt, EPS, dx2, dw2, db2), 0);
                    CHECK_EQ(diff_bits(dx, dx2, n), -1);
                    CHECK_EQ(diff_bits(dw, dw2, d), -1);
                    CHECK_EQ(diff_bits(db, db2, d), -1);
                }
                memcpy(dx2, dy, (size_t)n * 4), memcpy(dw2, dw0, (size_t)d * 4);
                CHECK_EQ(dfm_cpu_layer_norm_backward(dx2, x, mean, rstd, rows, d, wr, dt, EPS, dx2, dw2, NULL), 0);
                CHECK_EQ(diff_bits(dx, dx2, n), -1);
                CHECK_EQ(diff_bits(dw, dw2, d), -1);
                memcpy(db2, db0, (size_t)d * 4);
                CHECK_EQ(dfm_cpu_layer_norm_backward(dy, x, mean, rstd, rows, d, wr, dt, EPS, NULL, NULL, db2), 0);
                CHECK_EQ(diff_bits(db, db2, d), -1);
                free(dx2), free(dw2), free(db2);
                tols_free(&t);
                free(x), free(dy), free(mean), free(rstd), free(y), free(dx), free(dw), free(db), free(dw0), free(db0);
                free(xd), free(dyd), free(wd), free(dxr), free(dwr), free(dbr), free(dw0d), free(db0d);
                param_free(&w);
            }
    end_cfg(saved);
}

/* loss = sum dy * norm(x; w, b) in double, for the finite differences. */
typedef struct {
    double *x, *w, *b, *dy, *y;
    int64_t rows, d;
    int rms;
} norm_loss_ctx;

static void rms_ref(const double *x, int64_t rows, int64_t d, const double *w, double eps, double *y, double *inv)
{
    for (int64_t r = 0; r < rows; r++) {
        double ms = 0;
        for (int64_t j = 0; j < d; j++) ms += x[r * d + j] * x[r * d + j];
        double iv = 1 / sqrt(ms / d + eps);
        for (int64_t j = 0; j < d; j++) y[r * d + j] = x[r * d + j] * iv * (w ? w[j] : 1);
        if (inv) inv[r] = iv;
    }
}

static double norm_loss(void *arg)
{
    norm_loss_ctx *c = arg;
    if (c->rms)
        rms_ref(c->x, c->rows, c->d, c->w, EPS, c->y, NULL);
    else
        ln_ref(c->x, c->rows, c->d, c->w, c->b, EPS, c->y, NULL, NULL);
    double l = 0;
    for (int64_t i = 0; i < c->rows * c->d; i++) l += c->dy[i] * c->y[i];
    return l;
}

/* Our f32 backward against finite differences of the double forward: dx within twice the
 * analytic check's bound (norm_tols, from the magnitudes of the terms: the gradient itself may
 * cancel to far below them, as it does for d = 1 or 2) plus 1e-8 (the differences' own error is
 * ~1e-10); dw, db within 1e-5 relative + 1e-6 per row. */
static void norm_fd_case(int rms, int64_t rows, int64_t d, int with_w)
{
    int64_t n = rows * d;
    float *x = fill(n, 1.0, rms ? 0.0 : 0.5), *dy = fill(n, 1.0, 0.0), *w = fill(d, 0.5, 1.0), *b = fill(d, 0.5, 0.0);
    float *dx = malloc((size_t)n * 4), *dw = calloc((size_t)d, 4), *db = calloc((size_t)d, 4);
    const float *wp = with_w ? w : NULL;
    if (rms)
        CHECK_EQ(dfm_cpu_rms_norm_backward(dy, x, NULL, rows, d, wp, DFM_F32, EPS, dx, dw), 0);
    else
        CHECK_EQ(dfm_cpu_layer_norm_backward(dy, x, NULL, NULL, rows, d, wp, DFM_F32, EPS, dx, dw, db), 0);
    norm_loss_ctx c = {to_d(x, n), with_w ? to_d(w, d) : NULL, with_w && !rms ? to_d(b, d) : NULL, to_d(dy, n),
                       malloc((size_t)n * 8), rows, d, rms};
    double *g = malloc((size_t)n * 8), *gw = malloc((size_t)d * 8), *gb = calloc((size_t)d, 8);
    tols_t t = norm_tols(c.dy, c.x, rows, d, c.w, EPS, rms, gb, gb, gb, gb);
    fd_grad(norm_loss, &c, c.x, n, g);
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t j = 0; j < d; j++) {
            double tol = 2 * t.dx[r * d + j] + 1e-8;
            if (!(fabs(dx[r * d + j] - g[r * d + j]) <= tol)) {
                fprintf(stderr, "  %s fd %lldx%lld w%d dx[%lld,%lld]: %.9g vs %.9g\n", rms ? "rms_norm" : "layer_norm",
                        (long long)rows, (long long)d, with_w, (long long)r, (long long)j, dx[r * d + j], g[r * d + j]);
                dfm_test_failures++;
                r = rows;
                break;
            }
        }
    }
    if (with_w) {
        fd_grad(norm_loss, &c, c.w, d, gw);
        if (!rms) fd_grad(norm_loss, &c, c.b, d, gb);
        for (int64_t j = 0; j < d; j++) {
            CHECK_NEAR(dw[j], gw[j], 1e-5 * fabs(gw[j]) + 1e-6 * rows);
            if (!rms) CHECK_NEAR(db[j], gb[j], 1e-5 * fabs(gb[j]) + 1e-6 * rows);
        }
    }
    tols_free(&t);
    free(x), free(dy), free(w), free(b), free(dx), free(dw), free(db);
    free(c.x), free(c.w), free(c.b), free(c.dy), free(c.y), free(g), free(gw), free(gb);
}

TEST(nn_norm_finite_differences)
{
    const int64_t rows_l[] = {1, 3}, d_l[] = {1, 2, 5, 8, 13};
    for (int rms = 0; rms < 2; rms++)
        for (int ri = 0; ri < 2; ri++)
            for (int di = 0; di < 5; di++)
                for (int ww = 0; ww < 2; ww++) norm_fd_case(rms, rows_l[ri], d_l[di], ww);
}

/* ================================================================================================
 * RMS norm */

TEST(nn_rms_norm_forward)
{
    int saved = dfm_cpu_threads();
    for (int ri = 0; ri < NROWS; ri++)
        for (int di = 0; di < NDIMS; di++)
            for (int wc = 0; wc < 3; wc++) { /* no weight; F32; BF16 */
                int64_t rows = ROWS[ri], d = DIMS[di], n = rows * d;
                float *x = fill(n, 0.5 + ri, 0.2);
                dfm_dtype dt = wc == 2 ? DFM_BF16 : DFM_F32;
                param_t w = param(d, dt, 0.5, 1.0);
                const void *wr = wc ? w.raw : NULL;
                float *y = malloc((size_t)n * 4), *inv = malloc((size_t)rows * 4);
                set_cfg(0);
                CHECK_EQ(dfm_cpu_rms_norm_save(x, rows, d, wr, dt, EPS, y, inv), 0);
                double *xd = to_d(x, n), *wd = to_d(w.f, d), *yr = malloc((size_t)n * 8), *ir = malloc((size_t)rows * 8);
                rms_ref(xd, rows, d, wr ? wd : NULL, EPS, yr, ir);
                int bad = 0;
                for (int64_t r = 0; r < rows; r++) {
                    /* inv: the mean square (sum, divide) and + eps, sqrt, divide round: 6 u */
                    if (!(fabs(inv[r] - ir[r]) <= 6 * U * ir[r])) bad++;
                    /* y: inv's error, then two products: 10 u */
                    for (int64_t j = 0; j < d; j++)
                        if (!(fabs(y[r * d + j] - yr[r * d + j]) <= 10 * U * fabs(yr[r * d + j]) + 1e-30)) {
                            if (bad++ < 3)
                                fprintf(stderr, "  rms_norm %lldx%lld [%lld,%lld]: %.9g vs %.9g\n", (long long)rows,
                                        (long long)d, (long long)r, (long long)j, y[r * d + j], yr[r * d + j]);
                        }
                }
                CHECK_EQ(bad, 0);
                float *y2 = malloc((size_t)n * 4), *i2 = malloc((size_t)rows * 4);
                for (int c = 1; c < 4; c++) {
                    set_cfg(c);
                    CHECK_EQ(dfm_cpu_rms_norm_save(x, rows, d, wr, dt, EPS, y2, i2), 0);
                    CHECK_EQ(diff_bits(y, y2, n), -1);
                    CHECK_EQ(diff_bits(inv, i2, rows), -1);
                }
                if (wr) { /* the T5 entry point: the same */
                    CHECK_EQ(dfm_cpu_rms_norm(x, rows, d, wr, dt, EPS, y2), 0);
                    CHECK_EQ(diff_bits(y, y2, n), -1);
                }
                free(y2), free(i2), free(xd), free(wd), free(yr), free(ir), free(x), free(y), free(inv);
                param_free(&w);
            }
    end_cfg(saved);
}

/* The squares are rounded to f32 before they are summed, as torch's x.pow(2) is: a row where
 * that matters (x = 1 + 2^-12: x^2 = 1 + 2^-11 + 2^-24 rounds to 1 + 2^-11). */
TEST(nn_rms_norm_square_rounding)
{
    float x[8], y[8], inv;
    for (int j = 0; j < 8; j++) x[j] = 1.0f + 1.0f / 4096;
    CHECK_EQ(dfm_cpu_rms_norm_save(x, 1, 8, NULL, DFM_F32, 0.0f, y, &inv), 0);
    float q = x[0] * x[0];
    CHECK(q == 1.0f + 1.0f / 2048);
    CHECK(inv == 1.0f / sqrtf(q));
}

static void rms_back_ref(const double *dy, const double *x, int64_t rows, int64_t d, const double *w, double eps,
                         double *dx, double *dw)
{
    for (int64_t j = 0; j < d; j++) dw[j] = 0;
    for (int64_t r = 0; r < rows; r++) {
        double ms = 0, c = 0;
        for (int64_t j = 0; j < d; j++) ms += x[r * d + j] * x[r * d + j];
        double iv = 1 / sqrt(ms / d + eps);
        for (int64_t j = 0; j < d; j++) {
            double nn = x[r * d + j] * iv, g = dy[r * d + j] * (w ? w[j] : 1);
            c += g * nn / d;
            dw[j] += dy[r * d + j] * nn;
        }
        for (int64_t j = 0; j < d; j++) {
            double nn = x[r * d + j] * iv, g = dy[r * d + j] * (w ? w[j] : 1);
            dx[r * d + j] = iv * (g - nn * c);
        }
    }
}

TEST(nn_rms_norm_backward)
{
    int saved = dfm_cpu_threads();
    const int64_t rows_l[] = {1, 3, 64, 65, 300}, d_l[] = {1, 2, 7, 8, 17, 128, 1536, 1537};
    for (size_t ri = 0; ri < sizeof rows_l / sizeof rows_l[0]; ri++)
        for (size_t di = 0; di < sizeof d_l / sizeof d_l[0]; di++)
            for (int wc = 0; wc < 3; wc++) {
                int64_t rows = rows_l[ri], d = d_l[di], n = rows * d;
                float *x = fill(n, 1.0, 0.3), *dy = fill(n, 1.0, 0.0);
                dfm_dtype dt = wc == 2 ? DFM_BF16 : DFM_F32;
                param_t w = param(d, dt, 0.5, 1.0);
                const void *wr = wc ? w.raw : NULL;
                float *inv = malloc((size_t)rows * 4), *y = malloc((size_t)n * 4);
                set_cfg(0);
                CHECK_EQ(dfm_cpu_rms_norm_save(x, rows, d, wr, dt, EPS, y, inv), 0);
                float *dx = malloc((size_t)n * 4), *dw = fill(d, 1, 0), *dw0 = copy_f(dw, d);
                CHECK_EQ(dfm_cpu_rms_norm_backward(dy, x, inv, rows, d, wr, dt, EPS, dx, dw), 0);
                double *xd = to_d(x, n), *dyd = to_d(dy, n), *wd = wr ? to_d(w.f, d) : NULL;
                double *dxr = malloc((size_t)n * 8), *dwr = malloc((size_t)d * 8), *dw0d = to_d(dw0, d);
                rms_back_ref(dyd, xd, rows, d, wd, EPS, dxr, dwr);
                tols_t t = norm_tols(dyd, xd, rows, d, wd, EPS, 1, dw0d, NULL, dwr, NULL);
                for (int64_t j = 0; j < d; j++) dwr[j] += dw0d[j];
                check_close("rms_norm dx", dx, dxr, t.dx, n);
                check_close("rms_norm dw", dw, dwr, t.dw, d);
                float *dx2 = malloc((size_t)n * 4), *dw2 = malloc((size_t)d * 4);
                for (int c = 1; c < 4; c++) {
                    set_cfg(c);
                    memcpy(dw2, dw0, (size_t)d * 4);
                    CHECK_EQ(dfm_cpu_rms_norm_backward(dy, x, c == 2 ? NULL : inv, rows, d, wr, dt, EPS, dx2, dw2), 0);
                    CHECK_EQ(diff_bits(dx, dx2, n), -1);
                    CHECK_EQ(diff_bits(dw, dw2, d), -1);
                }
                memcpy(dx2, dy, (size_t)n * 4);
                CHECK_EQ(dfm_cpu_rms_norm_backward(dx2, x, inv, rows, d, wr, dt, EPS, dx2, NULL), 0);
                CHECK_EQ(diff_bits(dx, dx2, n), -1);
                free(dx2), free(dw2);
                tols_free(&t);
                free(x), free(dy), free(inv), free(y), free(dx), free(dw), free(dw0);
                free(xd), free(dyd), free(wd), free(dxr), free(dwr), free(dw0d);
                param_free(&w);
            }
    end_cfg(saved);
}

/* ================================================================================================
 * GELU (tanh) and SiLU backward */

/* Inputs: a sweep of [-12, 12], random values, and special ones. */
static float *act_inputs(int64_t *n_out)
{
    static const float special[] = {0.0f, -0.0f, 1e-30f, -1e-30f, 1e-45f, 3.0f, -3.0f, 9.0f, -9.0f, 20.0f, -20.0f,
                                    1e10f, -1e10f, 1e30f, -1e30f, INFINITY, -INFINITY, NAN};
    int64_t ns = (int64_t)(sizeof special / sizeof special[0]), nw = 48001, nr = 52000, n = ns + nw + nr;
    float *x = malloc((size_t)n * 4);
    memcpy(x, special, sizeof special);
    for (int64_t i = 0; i < nw; i++) x[ns + i] = (float)(-12.0 + 24.0 * i / (nw - 1));
    for (int64_t i = 0; i < nr; i++) x[ns + nw + i] = (float)(6.0 * urand());
    *n_out = n;
    return x;
}

static const float KB = (float)(M_SQRT2 * M_2_SQRTPI * 0.5), KK = 0.044715f;

/* ATen's f32 order, written out (Gelu.h vectorized_gelu_approximated_with_tanh). */
static float aten_gelu_tanh(float x)
{
    float x_cube = x * x * x;
    float inner = KB * (x + KK * x_cube);
    return 0.5f * x * (1.0f + (float)tanh((double)inner));
}

/* ATen's f32 order of the backward (Activation.cpp GeluBackwardKernelImpl, tanh). */
static float aten_gelu_tanh_back(float dy, float x)
{
    float x_sq = x * x, x_cube = x_sq * x;
    float inner = KB * (x + KK * x_cube);
    float tanh_inner = (float)tanh((double)inner);
    float left = 0.5f * x, right = 1.0f + tanh_inner;
    float left_derivative = 0.5f * right;
    float tanh_derivative = 1.0f - tanh_inner * tanh_inner;
    float inner_derivative = KB * (1.0f + 3.0f * KK * x_sq);
    float right_derivative = left * tanh_derivative * inner_derivative;
    return dy * (left_derivative + right_derivative);
}

TEST(nn_gelu_tanh)
{
    CHECK(KB == 0.7978845608028654f); /* the same constant as math.sqrt(2 / math.pi) in f32 */
    int saved = dfm_cpu_threads();
    int64_t n;
    float *x = act_inputs(&n), *y = malloc((size_t)n * 4), *y2 = malloc((size_t)n * 4);
    float *dy = fill(n, 2.0, 0.0), *dx = malloc((size_t)n * 4), *dx2 = malloc((size_t)n * 4);
    set_cfg(0);
    dfm_cpu_gelu_tanh(x, y, n);
    dfm_cpu_gelu_tanh_backward(dy, x, dx, n);
    int bad = 0, badb = 0;
    for (int64_t i = 0; i < n; i++) {
        /* ATen's order in f32, bit for bit */
        float want = aten_gelu_tanh(x[i]), wantb = aten_gelu_tanh_back(dy[i], x[i]);
        if (memcmp(&want, &y[i], 4) && bad++ < 3) fprintf(stderr, "  gelu_tanh(%.9g) = %.9g, want %.9g\n", x[i], y[i], want);
        if (memcmp(&wantb, &dx[i], 4) && badb++ < 3)
            fprintf(stderr, "  gelu_tanh' (%.9g) = %.9g, want %.9g\n", x[i], dx[i], wantb);
        if (!isfinite(x[i]) || fabsf(x[i]) > 1e4f) continue;
        /* the exact function in double: u's five roundings (5 u relative of its terms) move tanh by
         * (1 - t^2) of that, tanh, 1 + t and the product round once each */
        double xd = x[i], up = KB * (fabs(xd) + KK * fabs(xd * xd * xd));
        double u = sqrt(2 / M_PI) * (xd + 0.044715 * xd * xd * xd), t = tanh(u), yr = 0.5 * xd * (1 + t);
        double dt = (1 - t * t) * 6 * U * up + U * fabs(t);
        double tol = 2 * (fabs(0.5 * xd) * (dt + U * (1 + t)) + U * fabs(yr)) + 1e-38;
        if (!(fabs(y[i] - yr) <= tol) && bad++ < 3) fprintf(stderr, "  gelu_tanh(%.9g) = %.9g vs %.9g\n", x[i], y[i], yr);
        /* derivative: 0.5 (1 + t) + 0.5 x (1 - t^2) beta (1 + 3 kappa x^2); t's error enters both
         * terms, each product and sum rounds once */
        double du = sqrt(2 / M_PI) * (1 + 3 * 0.044715 * xd * xd), dd = 0.5 * (1 + t) + 0.5 * xd * (1 - t * t) * du;
        double mag = 0.5 * (1 + fabs(t)) + fabs(0.5 * xd) * (1 - t * t) * du;
        double tolb = 2 * fabs(dy[i]) * (0.5 * dt + fabs(0.5 * xd) * du * (2 * fabs(t) * dt) + 8 * U * mag) + 1e-38;
        if (!(fabs(dx[i] - dy[i] * dd) <= tolb) && badb++ < 3)
            fprintf(stderr, "  gelu_tanh'(%.9g) * %.9g = %.9g vs %.9g\n", x[i], dy[i], dx[i], dy[i] * dd);
    }
    CHECK_EQ(bad, 0);
    CHECK_EQ(badb, 0);
    /* gelu_new's bits (the same operations and constants) */
    dfm_cpu_gelu_new(x, y2, n);
    CHECK_EQ(diff_bits(y, y2, n), -1);
    for (int c = 1; c < 4; c++) {
        set_cfg(c);
        dfm_cpu_gelu_tanh(x, y2, n);
        CHECK_EQ(diff_bits(y, y2, n), -1);
        dfm_cpu_gelu_tanh_backward(dy, x, dx2, n);
        CHECK_EQ(diff_bits(dx, dx2, n), -1);
    }
    /* every SIMD level the CPU has (AVX2, AVX-512: each its own kernel) gives the scalar bits,
     * forward and backward, at odd lengths (the vector tails) */
    for (int level = DFM_CPU_AVX2; level <= DFM_CPU_AVX512; level++) {
        dfm_cpu_set_simd(1);
        if (dfm_cpu_simd_level() < level) break;
        dfm_cpu_set_simd_level(level);
        for (int64_t len = n; len >= n - 15; len -= 5) {
            dfm_cpu_gelu_tanh(x, y2, len);
            CHECK_EQ(diff_bits(y, y2, len), -1);
            dfm_cpu_gelu_tanh_backward(dy, x, dx2, len);
            CHECK_EQ(diff_bits(dx, dx2, len), -1);
        }
    }
    end_cfg(saved);
    /* in place over dy and over x */
    memcpy(dx2, dy, (size_t)n * 4);
    dfm_cpu_gelu_tanh_backward(dx2, x, dx2, n);
    CHECK_EQ(diff_bits(dx, dx2, n), -1);
    memcpy(dx2, x, (size_t)n * 4);
    dfm_cpu_gelu_tanh_backward(dy, dx2, dx2, n);
    CHECK_EQ(diff_bits(dx, dx2, n), -1);
    end_cfg(saved);
    free(x), free(y), free(y2), free(dy), free(dx), free(dx2);
}

static double silu_d(double x)
{
    double s = 1 / (1 + exp(-x));
    return s * (1 + x * (1 - s));
}

TEST(nn_silu_backward)
{
    int saved = dfm_cpu_threads();
    int64_t n;
    float *x = act_inputs(&n), *dy = fill(n, 2.0, 0.0), *dx = malloc((size_t)n * 4), *dx2 = malloc((size_t)n * 4);
    for (int c = 0; c < 4; c++) {
        set_cfg(c);
        dfm_cpu_silu_backward(dy, x, dx, n);
        int bad = 0;
        for (int64_t i = 0; i < n; i++) {
            if (isnan(x[i])) {
                CHECK(isnan(dx[i]));
                continue;
            }
            if (isinf(x[i])) continue;
            /* exp within 1.3 ulp (AVX2) or 0.5 (libm): s within 5 u relative; it enters s and
             * 1 - s; the products and sums round once each */
            double xd = x[i], s = 1 / (1 + exp(-xd)), ds = 5 * U * s + 1e-45;
            double tol = 2 * fabs(dy[i]) * (ds * (1 + 2 * fabs(xd)) + 6 * U * s * (1 + fabs(xd) * (1 - s))) + 1e-38;
            if (!(fabs(dx[i] - dy[i] * silu_d(xd)) <= tol) && bad++ < 3)
                fprintf(stderr, "  silu'(%.9g) * %.9g = %.9g vs %.9g (%s)\n", x[i], dy[i], dx[i], dy[i] * silu_d(xd),
                        dfm_cpu_impl());
        }
        CHECK_EQ(bad, 0);
        if (c == 1) CHECK_EQ(diff_bits(dx, dx2, n), -1); /* SIMD, 1 thread = SIMD, 2 threads */
        if (c == 3) CHECK_EQ(diff_bits(dx, dx2, n), -1); /* scalar, 2 = scalar, 1 */
        memcpy(dx2, dx, (size_t)n * 4);
    }
    end_cfg(saved);
    free(x), free(dy), free(dx), free(dx2);
}

/* Both backwards against central differences of the double functions, at x where the f32
 * steps are well conditioned: within 2e-6 relative + 1e-7. */
TEST(nn_act_finite_differences)
{
    float x[200], dy[200], g[200], s[200];
    for (int i = 0; i < 200; i++) x[i] = (float)(-8 + 16.0 * i / 199), dy[i] = 1.0f;
    dfm_cpu_gelu_tanh_backward(dy, x, g, 200);
    dfm_cpu_silu_backward(dy, x, s, 200);
    for (int i = 0; i < 200; i++) {
        double xd = x[i], h = 1e-5;
#define GELU_D(v) (0.5 * (v) * (1 + tanh(sqrt(2 / M_PI) * ((v) + 0.044715 * (v) * (v) * (v)))))
#define SILU_D(v) ((v) / (1 + exp(-(v))))
        double fg = (GELU_D(xd + h) - GELU_D(xd - h)) / (2 * h), fs = (SILU_D(xd + h) - SILU_D(xd - h)) / (2 * h);
        CHECK_NEAR(g[i], fg, 2e-6 * fabs(fg) + 1e-7 * (1 + fabs(xd)));
        CHECK_NEAR(s[i], fs, 2e-6 * fabs(fs) + 1e-7 * (1 + fabs(xd)));
    }
}

/* ================================================================================================
 * RoPE */

TEST(nn_rope)
{
    int saved = dfm_cpu_threads();
    const int64_t shapes[][4] = {{1, 1, 1, 2}, {1, 3, 2, 6}, {2, 5, 3, 10}, {1, 7, 4, 16}, {2, 33, 2, 18},
                                 {1, 64, 12, 128}, {2, 17, 3, 130}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        int64_t b = shapes[si][0], s = shapes[si][1], h = shapes[si][2], d = shapes[si][3], n = b * s * h * d;
        int64_t np = d / 2;
        float *x = fill(n, 3.0, 0.0), *c = malloc((size_t)(s * np) * 4), *sn = malloc((size_t)(s * np) * 4);
        for (int64_t i = 0; i < s * np; i++) {
            double a = 10 * urand();
            c[i] = (float)cos(a), sn[i] = (float)sin(a);
        }
        float *y = malloc((size_t)n * 4), *dx = malloc((size_t)n * 4), *t = malloc((size_t)n * 4);
        set_cfg(0);
        CHECK_EQ(dfm_cpu_rope(x, b, s, h, d, c, sn, y), 0);
        CHECK_EQ(dfm_cpu_rope_backward(x, b, s, h, d, c, sn, dx), 0);
        int bad = 0;
        for (int64_t i = 0; i < n / 2; i++) {
            int64_t tok = (i / np / h) % s, k = i % np;
            float cv = c[tok * np + k], sv = sn[tok * np + k], x0 = x[2 * i], x1 = x[2 * i + 1];
            /* the f32 order (two products, one sum), bit for bit */
            float p0 = x0 * cv, q0 = x1 * sv, p1 = x0 * sv, q1 = x1 * cv;
            float w0 = p0 - q0, w1 = p1 + q1, b0 = p0 + q0, b1 = q1 - p1;
            if ((memcmp(&w0, &y[2 * i], 4) || memcmp(&w1, &y[2 * i + 1], 4) || memcmp(&b0, &dx[2 * i], 4) ||
                 memcmp(&b1, &dx[2 * i + 1], 4)) &&
                bad++ < 3)
                fprintf(stderr, "  rope %lld: %.9g %.9g vs %.9g %.9g\n", (long long)i, y[2 * i], y[2 * i + 1], w0, w1);
            /* the rotation in double: 3 roundings of the terms' magnitude */
            double tol = 2 * U * (fabs(x0 * (double)cv) + fabs(x1 * (double)sv) + fabs(x0 * (double)sv) + fabs(x1 * (double)cv));
            if (!(fabs(y[2 * i] - ((double)x0 * cv - (double)x1 * sv)) <= tol &&
                  fabs(y[2 * i + 1] - ((double)x0 * sv + (double)x1 * cv)) <= tol) &&
                bad++ < 3)
                fprintf(stderr, "  rope %lld off the double rotation\n", (long long)i);
        }
        CHECK_EQ(bad, 0);
        /* adjoint: <rope(x), z> = <x, rope_backward(z)> in double, to 1e-6 of the terms */
        float *z = fill(n, 1.0, 0.0), *bz = malloc((size_t)n * 4);
        CHECK_EQ(dfm_cpu_rope_backward(z, b, s, h, d, c, sn, bz), 0);
        double l = 0, r = 0, m = 0;
        for (int64_t i = 0; i < n; i++) l += (double)y[i] * z[i], r += (double)x[i] * bz[i], m += fabs((double)x[i] * z[i]);
        CHECK_NEAR(l, r, 1e-6 * m);
        /* paths and threads; in place */
        for (int cc = 1; cc < 4; cc++) {
            set_cfg(cc);
            CHECK_EQ(dfm_cpu_rope(x, b, s, h, d, c, sn, t), 0);
            CHECK_EQ(diff_bits(y, t, n), -1);
            CHECK_EQ(dfm_cpu_rope_backward(x, b, s, h, d, c, sn, t), 0);
            CHECK_EQ(diff_bits(dx, t, n), -1);
        }
        memcpy(t, x, (size_t)n * 4);
        CHECK_EQ(dfm_cpu_rope(t, b, s, h, d, c, sn, t), 0);
        CHECK_EQ(diff_bits(y, t, n), -1);
        free(x), free(c), free(sn), free(y), free(dx), free(t), free(z), free(bz);
    }
    float v[6] = {0};
    CHECK_EQ(dfm_cpu_rope(v, 1, 1, 1, 3, v, v, v), DFM_E_ARG);
    end_cfg(saved);
}

/* The backward against central differences of the forward in double (the rotation is linear:
 * the differences are exact but for rounding). */
TEST(nn_rope_finite_differences)
{
    const int64_t b = 1, s = 3, h = 2, d = 6, n = b * s * h * d, np = d / 2;
    float *x = fill(n, 1.0, 0.0), *dy = fill(n, 1.0, 0.0), *c = malloc(s * np * 4), *sn = malloc(s * np * 4),
          *dx = malloc(n * 4);
    for (int64_t i = 0; i < s * np; i++) {
        double a = 3 * urand();
        c[i] = (float)cos(a), sn[i] = (float)sin(a);
    }
    CHECK_EQ(dfm_cpu_rope_backward(dy, b, s, h, d, c, sn, dx), 0);
    for (int64_t k = 0; k < n; k++) {
        double lp = 0, lm = 0, hh = 1e-3;
        for (int sign = -1; sign <= 1; sign += 2) {
            double l = 0;
            for (int64_t i = 0; i < n / 2; i++) {
                int64_t tok = (i / np / h) % s, q = i % np;
                double x0 = x[2 * i] + (2 * i == k ? sign * hh : 0), x1 = x[2 * i + 1] + (2 * i + 1 == k ? sign * hh : 0);
                l += dy[2 * i] * (x0 * c[tok * np + q] - x1 * sn[tok * np + q]) +
                     dy[2 * i + 1] * (x0 * sn[tok * np + q] + x1 * c[tok * np + q]);
            }
            if (sign < 0) lm = l; else lp = l;
        }
        CHECK_NEAR(dx[k], (lp - lm) / (2 * hh), 1e-6);
    }
    free(x), free(dy), free(c), free(sn), free(dx);
}

TEST(nn_wan_rope_table)
{
    const int64_t hd = 128, f = 3, hh = 4, w = 5, np = hd / 2, tok = f * hh * w;
    float *c = malloc((size_t)(tok * np) * 4), *s = malloc((size_t)(tok * np) * 4);
    CHECK_EQ(dfm_cpu_wan_rope_table(hd, 10000.0, f, hh, w, 1024, c, s), 0);
    /* pairs: 22 time, 21 height, 21 width; the angle of pair j of an axis of dims da at position
     * p is p * 10000^(-2j/da): here through exp and log in long double, within 1 ulp of f32 */
    int bad = 0;
    for (int64_t i = 0; i < f; i++)
        for (int64_t j = 0; j < hh; j++)
            for (int64_t k = 0; k < w; k++) {
                int64_t t = (i * hh + j) * w + k;
                for (int64_t q = 0; q < np; q++) {
                    int64_t pos = q < 22 ? i : q < 43 ? j : k, jj = q < 22 ? q : q < 43 ? q - 22 : q - 43;
                    long double da = q < 22 ? 44 : 42;
                    long double a = pos * expl(-logl(10000.0L) * (2 * jj) / da);
                    double cw = (double)cosl(a), sw = (double)sinl(a);
                    float cv = c[t * np + q], sv = s[t * np + q];
                    if (!(fabs(cv - cw) <= 2 * U * fabs(cw) + 1e-15 && fabs(sv - sw) <= 2 * U * fabs(sw) + 1e-15) && bad++ < 3)
                        fprintf(stderr, "  rope table t%lld q%lld: %.9g %.9g vs %.9g %.9g\n", (long long)t, (long long)q, cv,
                                sv, cw, sw);
                }
            }
    CHECK_EQ(bad, 0);
    CHECK(c[0] == 1.0f && s[0] == 0.0f);        /* token 0: angle 0 */
    CHECK(c[(20 * 1) * np + 0] == (float)cos(1.0)); /* frame 1 (token 20), time pair 0: frequency 1 */
    CHECK(c[1 * np + 43] == (float)cos(1.0));       /* width 1 (token 1), width pair 0 */
    CHECK(c[5 * np + 22] == (float)cos(1.0));       /* height 1 (token 5), height pair 0 */
    CHECK_EQ(dfm_cpu_wan_rope_table(127, 10000.0, f, hh, w, 1024, c, s), DFM_E_ARG);
    CHECK_EQ(dfm_cpu_wan_rope_table(4, 10000.0, f, hh, w, 1024, c, s), DFM_E_ARG);
    CHECK_EQ(dfm_cpu_wan_rope_table(hd, 10000.0, 1025, 1, 1, 1024, c, s), DFM_E_ARG);
    CHECK_EQ(dfm_cpu_wan_rope_table(hd, 10000.0, 0, 1, 1, 1024, c, s), DFM_E_ARG);
    free(c), free(s);
}

/* ================================================================================================
 * modulation, gated residual, column sums */

TEST(nn_modulate)
{
    int saved = dfm_cpu_threads();
    const int64_t shapes[][3] = {{1, 1, 1}, {1, 5, 7}, {2, 63, 9}, {2, 64, 16}, {3, 65, 33}, {1, 300, 1536}, {2, 130, 1537}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (int wide = 0; wide < 2; wide++) { /* ld = d, or vectors inside a wider row (Wan's [b, 6, d]) */
            int64_t b = shapes[si][0], s = shapes[si][1], d = shapes[si][2], n = b * s * d, ld = wide ? 3 * d + 1 : d;
            float *x = fill(n, 2.0, 0.0), *a = fill(n, 2.0, 0.0), *dy = fill(n, 1.0, 0.0);
            float *sc = fill(b * ld, 0.5, 0.0), *sh = fill(b * ld, 0.5, 0.0), *g = fill(b * ld, 0.5, 0.0);
            float *y = malloc(n * 4), *yg = malloc(n * 4), *dx = malloc(n * 4), *da = malloc(n * 4);
            float *dsc = fill(b * ld, 1, 0), *dsh = fill(b * ld, 1, 0), *dg = fill(b * ld, 1, 0);
            float *dsc0 = copy_f(dsc, b * ld), *dsh0 = copy_f(dsh, b * ld), *dg0 = copy_f(dg, b * ld);
            set_cfg(0);
            dfm_cpu_modulate(x, b, s, d, sc, sh, ld, y);
            dfm_cpu_gate_residual(x, a, b, s, d, g, ld, yg);
            CHECK_EQ(dfm_cpu_modulate_backward(dy, x, b, s, d, sc, ld, dx, dsc, dsh), 0);
            CHECK_EQ(dfm_cpu_gate_residual_backward(dy, a, b, s, d, g, ld, da, dg), 0);
            int bad = 0;
            for (int64_t i = 0; i < n; i++) {
                int64_t v = (i / d / s) * ld + i % d;
                /* torch's f32 order, bit for bit */
                float t = 1.0f + sc[v], p = x[i] * t, want = p + sh[v], wg = x[i] + a[i] * g[v];
                float wdx = dy[i] * t, wda = dy[i] * g[v];
                if ((memcmp(&want, &y[i], 4) || memcmp(&wg, &yg[i], 4) || memcmp(&wdx, &dx[i], 4) ||
                     memcmp(&wda, &da[i], 4)) && bad++ < 3)
                    fprintf(stderr, "  modulate %lld: %.9g %.9g %.9g %.9g\n", (long long)i, y[i], yg[i], dx[i], da[i]);
                /* and the double expressions: 3 and 2 roundings */
                double yr = (double)x[i] * (1.0 + sc[v]) + sh[v];
                double tol = 3 * U * (fabs(x[i] * (1.0 + sc[v])) + fabs(sh[v]) + fabs(x[i]));
                if (!(fabs(y[i] - yr) <= tol) && bad++ < 3) fprintf(stderr, "  modulate %lld off\n", (long long)i);
            }
            CHECK_EQ(bad, 0);
            /* per-batch sums against double: (64 + chunks + 4) * 2 u of the sum of magnitudes */
            for (int64_t bi = 0; bi < b; bi++)
                for (int64_t j = 0; j < ld; j++) {
                    int64_t v = bi * ld + j;
                    if (j >= d) { /* outside the vectors: untouched */
                        CHECK(dsc[v] == dsc0[v] && dsh[v] == dsh0[v] && dg[v] == dg0[v]);
                        continue;
                    }
                    double s1 = 0, s2 = 0, s3 = 0, m1 = 0, m2 = 0, m3 = 0;
                    for (int64_t r = bi * s; r < (bi + 1) * s; r++) {
                        double e = dy[r * d + j];
                        s1 += e * x[r * d + j], s2 += e, s3 += e * a[r * d + j];
                        m1 += fabs(e * x[r * d + j]), m2 += fabs(e), m3 += fabs(e * a[r * d + j]);
                    }
                    double k = (64 + dfm_reduce_chunks(s) + 4) * 2 * U;
                    CHECK_NEAR(dsc[v], dsc0[v] + s1, k * m1 + 2 * U * fabs(dsc0[v] + s1));
                    CHECK_NEAR(dsh[v], dsh0[v] + s2, k * m2 + 2 * U * fabs(dsh0[v] + s2));
                    CHECK_NEAR(dg[v], dg0[v] + s3, k * m3 + 2 * U * fabs(dg0[v] + s3));
                }
            /* paths and threads, aliasing */
            float *t1 = malloc(n * 4), *t2 = malloc(n * 4), *v1 = malloc(b * ld * 4), *v2 = malloc(b * ld * 4),
                  *v3 = malloc(b * ld * 4);
            for (int c = 1; c < 4; c++) {
                set_cfg(c);
                dfm_cpu_modulate(x, b, s, d, sc, sh, ld, t1);
                CHECK_EQ(diff_bits(y, t1, n), -1);
                dfm_cpu_gate_residual(x, a, b, s, d, g, ld, t1);
                CHECK_EQ(diff_bits(yg, t1, n), -1);
                memcpy(v1, dsc0, b * ld * 4), memcpy(v2, dsh0, b * ld * 4), memcpy(v3, dg0, b * ld * 4);
                memcpy(t1, dy, n * 4);
                CHECK_EQ(dfm_cpu_modulate_backward(t1, x, b, s, d, sc, ld, t1, v1, v2), 0); /* dx over dy */
                CHECK_EQ(diff_bits(dx, t1, n), -1);
                memcpy(t2, a, n * 4);
                CHECK_EQ(dfm_cpu_gate_residual_backward(dy, t2, b, s, d, g, ld, t2, v3), 0); /* da over a */
                CHECK_EQ(diff_bits(da, t2, n), -1);
                CHECK_EQ(diff_bits(dsc, v1, b * ld), -1);
                CHECK_EQ(diff_bits(dsh, v2, b * ld), -1);
                CHECK_EQ(diff_bits(dg, v3, b * ld), -1);
            }
            memcpy(t1, x, n * 4);
            dfm_cpu_modulate(t1, b, s, d, sc, sh, ld, t1);
            CHECK_EQ(diff_bits(y, t1, n), -1);
            free(t1), free(t2), free(v1), free(v2), free(v3);
            free(x), free(a), free(dy), free(sc), free(sh), free(g), free(y), free(yg), free(dx), free(da);
            free(dsc), free(dsh), free(dg), free(dsc0), free(dsh0), free(dg0);
        }
    end_cfg(saved);
}

/* The backwards against central differences of the double forwards on a small shape: 1e-5
 * relative + 1e-6. */
TEST(nn_modulate_finite_differences)
{
    const int64_t b = 2, s = 3, d = 4, n = b * s * d;
    float *x = fill(n, 1, 0), *a = fill(n, 1, 0), *dy = fill(n, 1, 0), *sc = fill(b * d, 0.5, 0),
          *sh = fill(b * d, 0.5, 0), *g = fill(b * d, 0.5, 0);
    float *dx = malloc(n * 4), *da = malloc(n * 4), *dsc = calloc(b * d, 4), *dsh = calloc(b * d, 4),
          *dg = calloc(b * d, 4);
    CHECK_EQ(dfm_cpu_modulate_backward(dy, x, b, s, d, sc, d, dx, dsc, dsh), 0);
    CHECK_EQ(dfm_cpu_gate_residual_backward(dy, a, b, s, d, g, d, da, dg), 0);
    double xd[24], ad[24], scd[8], shd[8], gd[8];
    for (int i = 0; i < n; i++) xd[i] = x[i], ad[i] = a[i];
    for (int i = 0; i < b * d; i++) scd[i] = sc[i], shd[i] = sh[i], gd[i] = g[i];
    /* loss(p) with one parameter perturbed, for each array and element */
    double *arrs[] = {xd, scd, shd, ad, gd};
    const int64_t lens[] = {n, b * d, b * d, n, b * d};
    const float *ours[] = {dx, dsc, dsh, da, dg};
    for (int q = 0; q < 5; q++)
        for (int64_t k = 0; k < lens[q]; k++) {
            double v = arrs[q][k], h = 1e-4, l[2];
            for (int sg = 0; sg < 2; sg++) {
                arrs[q][k] = v + (sg ? -h : h);
                double acc = 0;
                for (int64_t i = 0; i < n; i++) {
                    int64_t vv = (i / d / s) * d + i % d;
                    double f = q < 3 ? xd[i] * (1 + scd[vv]) + shd[vv] : xd[i] + ad[i] * gd[vv];
                    acc += dy[i] * f;
                }
                l[sg] = acc;
            }
            arrs[q][k] = v;
            double fd = (l[0] - l[1]) / (2 * h);
            CHECK_NEAR(ours[q][k], fd, 1e-5 * fabs(fd) + 1e-6);
        }
    free(x), free(a), free(dy), free(sc), free(sh), free(g), free(dx), free(da), free(dsc), free(dsh), free(dg);
}

TEST(nn_colsum)
{
    int saved = dfm_cpu_threads();
    const int64_t shapes[][2] = {{1, 1}, {1, 9}, {63, 5}, {64, 8}, {65, 17}, {129, 31}, {300, 1537}, {1000, 64}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        int64_t m = shapes[si][0], n = shapes[si][1];
        float *x = fill(m * n, 1, 0.25), *o = fill(n, 1, 0), *o0 = copy_f(o, n), *o2 = malloc(n * 4);
        set_cfg(0);
        CHECK_EQ(dfm_cpu_colsum(x, m, n, o), 0);
        int64_t ch = dfm_reduce_chunks(m);
        for (int64_t j = 0; j < n; j++) {
            /* the chunked order in f32, written out */
            float tot = 0.0f;
            for (int64_t c = 0; c < ch; c++) {
                float p = 0.0f;
                for (int64_t r = c * 64; r < m && r < (c + 1) * 64; r++) p += x[r * n + j];
                tot += p;
            }
            float want = o0[j] + tot;
            CHECK(memcmp(&want, &o[j], 4) == 0);
            double sd = o0[j], mg = fabs(o0[j]);
            for (int64_t r = 0; r < m; r++) sd += x[r * n + j], mg += fabs(x[r * n + j]);
            CHECK_NEAR(o[j], sd, (64 + ch + 2) * 2 * U * mg);
        }
        for (int c = 1; c < 4; c++) {
            set_cfg(c);
            memcpy(o2, o0, n * 4);
            CHECK_EQ(dfm_cpu_colsum(x, m, n, o2), 0);
            CHECK_EQ(diff_bits(o, o2, n), -1);
        }
        free(x), free(o), free(o0), free(o2);
    }
    end_cfg(saved);
}

/* ================================================================================================
 * CUDA twins against the CPU */

#ifdef DFM_HAVE_CUDA
#include "cuda/act.h"
#include "cuda/device.h"
#include "cuda/layer_norm.h"
#include "cuda/modulate.h"
#include "cuda/reduce.h"
#include "cuda/rms_norm.h"
#include "cuda/rope.h"

/* Skip (with the usual line) when there is no usable device. (tests/unit/tensor_util.h is
 * getting dfm_test_cuda_skip, which also fails a GPU machine whose CUDA is broken; this file
 * moves to it once that is in.) */
static int no_gpu(void)
{
    const char *why = NULL;
    if (dfm_cuda_device_count(&why) > 0) return 0;
    fprintf(stderr, "  (no CUDA device: %s; skipped)\n", why ? why : "unknown");
    return 1;
}

static void *dev_put(const void *h, size_t bytes)
{
    void *p = NULL;
    const char *why = NULL;
    if (dfm_cuda_malloc(&p, bytes ? bytes : 4, &why)) {
        fprintf(stderr, "  cuda malloc: %s\n", why);
        return NULL;
    }
    if (h && dfm_cuda_memcpy(p, h, bytes, 0, &why)) fprintf(stderr, "  cuda memcpy: %s\n", why);
    return p;
}
static float *dev_get(const void *d, int64_t n)
{
    float *h = malloc((size_t)(n ? n : 1) * 4);
    const char *why = NULL;
    if (dfm_cuda_memcpy(h, d, (size_t)n * 4, 1, &why)) fprintf(stderr, "  cuda memcpy: %s\n", why);
    return h;
}

/* Elements whose values differ by more than `ulps` units in the last place of the larger. */
static int64_t count_ulps(const float *a, const float *b, int64_t n, int ulps)
{
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(a[i]) && isnan(b[i])) continue;
        double m = fmax(fabs(a[i]), fabs(b[i]));
        if (fabs((double)a[i] - b[i]) > ulps * (m > 1e-37 ? 2 * U * m : 1e-45)) bad++;
    }
    return bad;
}

/* Norms: y, statistics and dx within 2 ulp (the row sums run in another order, in double), the
 * chunked dw / db bit for bit (they see the same saved statistics). */
TEST(nn_cuda_norms)
{
    if (no_gpu()) return;
    const int64_t shapes[][2] = {{1, 1}, {3, 7}, {65, 17}, {300, 1536}, {130, 1537}, {64, 4096}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (int bf = 0; bf < 2; bf++) {
            int64_t rows = shapes[si][0], d = shapes[si][1], n = rows * d;
            dfm_dtype dt = bf ? DFM_BF16 : DFM_F32;
            float *x = fill(n, 1.0, 0.5), *dy = fill(n, 1.0, 0.0);
            param_t w = param(d, dt, 0.5, 1.0), b = param(d, dt, 0.3, 0.0);
            size_t wb = (size_t)d * (bf ? 2 : 4);
            float *y = malloc(n * 4), *m = malloc(rows * 4), *rs = malloc(rows * 4), *dx = malloc(n * 4);
            float *dw = fill(d, 1, 0), *db = fill(d, 1, 0);
            void *gx = dev_put(x, n * 4), *gdy = dev_put(dy, n * 4), *gw = dev_put(w.raw, wb), *gb = dev_put(b.raw, wb);
            void *gy = dev_put(NULL, n * 4), *gm = dev_put(NULL, rows * 4), *grs = dev_put(NULL, rows * 4);
            void *gdx = dev_put(NULL, n * 4), *gdw = dev_put(dw, d * 4), *gdb = dev_put(db, d * 4);
            /* layer norm */
            CHECK_EQ(dfm_cpu_layer_norm(x, rows, d, w.raw, dt, b.raw, dt, EPS, y, m, rs), 0);
            CHECK_EQ(dfm_cuda_layer_norm(gx, rows, d, gw, dt, gb, dt, EPS, gy, gm, grs), 0);
            float *hy = dev_get(gy, n), *hm = dev_get(gm, rows), *hrs = dev_get(grs, rows);
            CHECK_EQ(count_ulps(y, hy, n, 2) + count_ulps(m, hm, rows, 1) + count_ulps(rs, hrs, rows, 1), 0);
            const char *why = NULL;
            dfm_cuda_memcpy(gm, m, rows * 4, 0, &why), dfm_cuda_memcpy(grs, rs, rows * 4, 0, &why);
            CHECK_EQ(dfm_cpu_layer_norm_backward(dy, x, m, rs, rows, d, w.raw, dt, EPS, dx, dw, db), 0);
            CHECK_EQ(dfm_cuda_layer_norm_backward(gdy, gx, gm, grs, rows, d, gw, dt, EPS, gdx, gdw, gdb), 0);
            float *hdx = dev_get(gdx, n), *hdw = dev_get(gdw, d), *hdb = dev_get(gdb, d);
            CHECK_EQ(count_ulps(dx, hdx, n, 4), 0);
            CHECK_EQ(diff_bits(dw, hdw, d), -1);
            CHECK_EQ(diff_bits(db, hdb, d), -1);
            free(hy), free(hm), free(hrs), free(hdx), free(hdw), free(hdb);
            /* RMS norm (with the same x and weight) */
            CHECK_EQ(dfm_cpu_rms_norm_save(x, rows, d, w.raw, dt, EPS, y, rs), 0);
            CHECK_EQ(dfm_cuda_rms_norm_save(gx, rows, d, gw, dt, EPS, gy, grs), 0);
            hy = dev_get(gy, n), hrs = dev_get(grs, rows);
            CHECK_EQ(count_ulps(y, hy, n, 2) + count_ulps(rs, hrs, rows, 1), 0);
            dfm_cuda_memcpy(grs, rs, rows * 4, 0, &why);
            CHECK_EQ(dfm_cpu_rms_norm_backward(dy, x, rs, rows, d, w.raw, dt, EPS, dx, dw), 0);
            CHECK_EQ(dfm_cuda_rms_norm_backward(gdy, gx, grs, rows, d, gw, dt, EPS, gdx, gdw), 0);
            hdx = dev_get(gdx, n), hdw = dev_get(gdw, d);
            CHECK_EQ(count_ulps(dx, hdx, n, 4), 0);
            CHECK_EQ(diff_bits(dw, hdw, d), -1);
            free(hy), free(hrs), free(hdx), free(hdw);
            void *bufs[] = {gx, gdy, gw, gb, gy, gm, grs, gdx, gdw, gdb};
            for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) dfm_cuda_free(bufs[i]);
            free(x), free(dy), free(y), free(m), free(rs), free(dx), free(dw), free(db);
            param_free(&w), param_free(&b);
        }
}

/* Activations within 1 ulp (tanh / exp in double rounded once on both sides, but for rare
 * double roundings; silu's backward against the scalar CPU path); RoPE, modulation and column
 * sums bit for bit. */
TEST(nn_cuda_elementwise)
{
    if (no_gpu()) return;
    int64_t n;
    float *x = act_inputs(&n), *dy = fill(n, 2, 0), *o = malloc(n * 4);
    void *gx = dev_put(x, n * 4), *gdy = dev_put(dy, n * 4), *go = dev_put(NULL, n * 4);
    dfm_cpu_gelu_tanh_backward(dy, x, o, n);
    CHECK_EQ(dfm_cuda_gelu_tanh_backward(gdy, gx, go, n), 0);
    float *h = dev_get(go, n);
    CHECK_EQ(count_ulps(o, h, n, 1), 0);
    free(h);
    dfm_cpu_set_simd(0);
    dfm_cpu_silu_backward(dy, x, o, n);
    dfm_cpu_set_simd(1);
    CHECK_EQ(dfm_cuda_silu_backward(gdy, gx, go, n), 0);
    h = dev_get(go, n);
    CHECK_EQ(count_ulps(o, h, n, 2), 0);
    free(h);
    dfm_cuda_free(gx), dfm_cuda_free(gdy), dfm_cuda_free(go);
    free(x), free(dy), free(o);

    /* RoPE */
    const int64_t b = 2, s = 65, hh = 3, d = 130, nr = b * s * hh * d, np = d / 2;
    float *xr = fill(nr, 2, 0), *c = malloc(s * np * 4), *sn = malloc(s * np * 4), *y = malloc(nr * 4);
    for (int64_t i = 0; i < s * np; i++) c[i] = (float)cos(i * 0.1), sn[i] = (float)sin(i * 0.1);
    void *gxr = dev_put(xr, nr * 4), *gc = dev_put(c, s * np * 4), *gs = dev_put(sn, s * np * 4), *gy = dev_put(NULL, nr * 4);
    for (int back = 0; back < 2; back++) {
        if (back) {
            CHECK_EQ(dfm_cpu_rope_backward(xr, b, s, hh, d, c, sn, y), 0);
            CHECK_EQ(dfm_cuda_rope_backward(gxr, b, s, hh, d, gc, gs, gy), 0);
        } else {
            CHECK_EQ(dfm_cpu_rope(xr, b, s, hh, d, c, sn, y), 0);
            CHECK_EQ(dfm_cuda_rope(gxr, b, s, hh, d, gc, gs, gy), 0);
        }
        h = dev_get(gy, nr);
        CHECK_EQ(diff_bits(y, h, nr), -1);
        free(h);
    }
    dfm_cuda_free(gxr), dfm_cuda_free(gc), dfm_cuda_free(gs), dfm_cuda_free(gy);
    free(xr), free(c), free(sn), free(y);

    /* modulation and gate (vectors inside [b, 3d] rows), column sums */
    const int64_t mb = 2, ms = 300, md = 1537, mn = mb * ms * md, ld = 3 * md;
    float *mx = fill(mn, 2, 0), *ma = fill(mn, 2, 0), *mdy = fill(mn, 1, 0), *vs = fill(mb * ld, 0.5, 0),
          *vh = fill(mb * ld, 0.5, 0), *g1 = fill(mb * ld, 1, 0), *g2 = fill(mb * ld, 1, 0), *my = malloc(mn * 4);
    void *gmx = dev_put(mx, mn * 4), *gma = dev_put(ma, mn * 4), *gmdy = dev_put(mdy, mn * 4), *gvs = dev_put(vs, mb * ld * 4),
         *gvh = dev_put(vh, mb * ld * 4), *gg1 = dev_put(g1, mb * ld * 4), *gg2 = dev_put(g2, mb * ld * 4),
         *gmy = dev_put(NULL, mn * 4);
    dfm_cpu_modulate(mx, mb, ms, md, vs, vh, ld, my);
    CHECK_EQ(dfm_cuda_modulate(gmx, mb, ms, md, gvs, gvh, ld, gmy), 0);
    h = dev_get(gmy, mn);
    CHECK_EQ(diff_bits(my, h, mn), -1);
    free(h);
    dfm_cpu_gate_residual(mx, ma, mb, ms, md, vs, ld, my);
    CHECK_EQ(dfm_cuda_gate_residual(gmx, gma, mb, ms, md, gvs, ld, gmy), 0);
    h = dev_get(gmy, mn);
    CHECK_EQ(diff_bits(my, h, mn), -1);
    free(h);
    CHECK_EQ(dfm_cpu_modulate_backward(mdy, mx, mb, ms, md, vs, ld, my, g1, g2), 0);
    CHECK_EQ(dfm_cuda_modulate_backward(gmdy, gmx, mb, ms, md, gvs, ld, gmy, gg1, gg2), 0);
    h = dev_get(gmy, mn);
    CHECK_EQ(diff_bits(my, h, mn), -1);
    free(h);
    h = dev_get(gg1, mb * ld);
    CHECK_EQ(diff_bits(g1, h, mb * ld), -1);
    free(h);
    h = dev_get(gg2, mb * ld);
    CHECK_EQ(diff_bits(g2, h, mb * ld), -1);
    free(h);
    CHECK_EQ(dfm_cpu_gate_residual_backward(mdy, ma, mb, ms, md, vs, ld, my, g1), 0);
    CHECK_EQ(dfm_cuda_gate_residual_backward(gmdy, gma, mb, ms, md, gvs, ld, gmy, gg1), 0);
    h = dev_get(gmy, mn);
    CHECK_EQ(diff_bits(my, h, mn), -1);
    free(h);
    h = dev_get(gg1, mb * ld);
    CHECK_EQ(diff_bits(g1, h, mb * ld), -1);
    free(h);
    CHECK_EQ(dfm_cpu_colsum(mx, mb * ms, md, g2), 0);
    CHECK_EQ(dfm_cuda_colsum(gmx, mb * ms, md, gg2), 0);
    h = dev_get(gg2, md);
    CHECK_EQ(diff_bits(g2, h, md), -1);
    free(h);
    void *bufs[] = {gmx, gma, gmdy, gvs, gvh, gg1, gg2, gmy};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) dfm_cuda_free(bufs[i]);
    free(mx), free(ma), free(mdy), free(vs), free(vh), free(g1), free(g2), free(my);
}
#endif
