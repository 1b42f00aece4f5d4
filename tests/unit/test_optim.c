/* test_optim.c — lib/train/optim.c: AdamW bit for bit against an f32 reference written here in
 * torch's order (and near a double AdamW), against torch.optim.AdamW's recorded numbers
 * (tests/fixtures/optim, scripts/make-optim-fixtures.py), thread count and SIMD path independence,
 * save -> load -> continue bit-identical to an uninterrupted run, the gradient norm and clipping
 * against torch's clip_grad_norm_, and the learning-rate schedule at its boundaries. */
#include "test.h"

#include "base/error.h"
#include "cpu/cpu.h"
#include "io/safetensors.h"
#include "tensor/op.h"
#include "train/optim.h"

#include <stdint.h>
#include <stdlib.h>

static uint64_t g_rng;
static float urand(void) /* splitmix64 -> [-1, 1) */
{
    uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (float)((z >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

/* One torch AdamW step in f32, spelled out from torch/optim/adam.py _single_tensor_adam and the
 * ATen kernels it calls: scalars in double (Python floats), each tensor op one f32 rounding;
 * lerp_ (|w| < 0.5: self + w (end - self), else end - (end - self)(1 - w)) and addcmul_
 * (self + value t1 t2) fused as ATen's vectorized CPU kernels and nvcc compile them. */
static void ref_step(float *p, const float *g, float *m, float *v, int n, double lr, const dfm_adamw_opts *o, int step)
{
    double bc1 = 1 - pow(o->beta1, step), bc2 = 1 - pow(o->beta2, step);
    double step_size = lr / bc1, bc2_sqrt = pow(bc2, 0.5);
    float w = (float)(1 - o->beta1);
    for (int i = 0; i < n; i++) {
        if (o->weight_decay != 0) p[i] = p[i] * (float)(1 - lr * o->weight_decay); /* p.mul_(1 - lr wd) */
        float diff = g[i] - m[i];                                                /* m.lerp_(g, 1 - b1) */
        m[i] = fabsf(w) < 0.5f ? fmaf(w, diff, m[i]) : fmaf(-diff, 1.0f - w, g[i]);
        float vb = v[i] * (float)o->beta2; /* v.mul_(b2).addcmul_(g, g, value=1 - b2) */
        float t = (float)(1 - o->beta2) * g[i];
        v[i] = fmaf(t, g[i], vb);
        float s = sqrtf(v[i]);             /* (v.sqrt() / bc2_sqrt).add_(eps) */
        float den = s / (float)bc2_sqrt;
        den = den + (float)o->eps;
        float num = (float)(-step_size) * m[i]; /* p.addcdiv_(m, den, value=-step_size) */
        float q = num / den;
        p[i] = p[i] + q;
    }
}

/* The same step in double (AdamW's definition), for a sanity bound. */
static void ref_step_double(double *p, const float *g, double *m, double *v, int n, double lr, const dfm_adamw_opts *o,
                            int step)
{
    double bc1 = 1 - pow(o->beta1, step), bc2 = 1 - pow(o->beta2, step);
    for (int i = 0; i < n; i++) {
        p[i] *= 1 - lr * o->weight_decay;
        m[i] = o->beta1 * m[i] + (1 - o->beta1) * g[i];
        v[i] = o->beta2 * v[i] + (1 - o->beta2) * (double)g[i] * g[i];
        p[i] -= lr / bc1 * m[i] / (sqrt(v[i]) / sqrt(bc2) + o->eps);
    }
}

static const dfm_adamw_opts g_opts[] = {
    {0.9, 0.999, 1e-8, 0.01},
    {0.8, 0.99, 1e-6, 0.0},
    {0.3, 0.999, 1e-8, 0.1}, /* lerp weight 0.7: the lerp's other branch */
};

typedef struct {
    dfm_tensor p, g;
} param;

static int param_new(param *x, int64_t n)
{
    memset(x, 0, sizeof *x);
    if (dfm_tensor_alloc(&x->p, DFM_F32, DFM_CPU, 1, &n) < 0 || dfm_tensor_zeros(&x->g, DFM_F32, DFM_CPU, 1, &n) < 0)
        return -1;
    for (int64_t i = 0; i < n; i++) ((float *)x->p.data)[i] = urand();
    return 0;
}
static void param_free(param *x)
{
    dfm_tensor_free(&x->p);
    dfm_tensor_free(&x->g);
}
/* gradients of step k: uniform, every 97th element an exact zero, every 89th a -0 */
static void fill_grad(float *g, int64_t n, int k)
{
    g_rng = 0x5eed0000ull + (uint64_t)k * 7919;
    for (int64_t i = 0; i < n; i++) g[i] = i % 97 == 0 ? 0.0f : i % 89 == 0 ? -0.0f : urand() * (k % 3 ? 0.1f : 1.0f);
}
static double lr_of(int k) { return dfm_lr_at("cosine", k, 5, 50, 1e-3, 1e-5); }

/* p, m, v of `steps` optimizer steps on a fresh parameter of n elements (seeded by n), run with
 * the given threads and SIMD level (-1: as they are) */
static int run_opt(const dfm_adamw_opts *o, int64_t n, int steps, int threads, int simd, float *p_out, float *m_out,
                   float *v_out)
{
    int keep_t = dfm_cpu_threads(), keep_s = dfm_cpu_simd_level();
    if (threads > 0) dfm_cpu_set_threads(threads);
    if (simd >= 0) dfm_cpu_set_simd_level(simd);
    g_rng = (uint64_t)n;
    param x;
    dfm_adamw *opt = NULL;
    int rc = param_new(&x, n) < 0 || dfm_adamw_new(&opt, o) < 0 || dfm_adamw_add(opt, "w", &x.p, &x.g) < 0 ? -1 : 0;
    for (int k = 0; k < steps && !rc; k++) {
        fill_grad(x.g.data, n, k);
        rc = dfm_adamw_step(opt, lr_of(k));
    }
    if (!rc) {
        memcpy(p_out, x.p.data, (size_t)n * 4);
        /* the moments through the state file's names: save and read back */
        char path[512];
        snprintf(path, sizeof path, "%s/run_opt.safetensors", dfm_test_tmpdir());
        dfm_st *st = NULL;
        rc = dfm_adamw_save(opt, path) < 0 || dfm_st_open(&st, path) < 0 ||
                     dfm_st_read(st, "w.exp_avg", DFM_F32, 1, &n, m_out) < 0 ||
                     dfm_st_read(st, "w.exp_avg_sq", DFM_F32, 1, &n, v_out) < 0
                 ? -1
                 : 0;
        dfm_st_close(st);
    }
    if (rc) fprintf(stderr, "  run_opt: %s\n", dfm_errmsg());
    dfm_adamw_free(opt);
    param_free(&x);
    dfm_cpu_set_threads(keep_t);
    dfm_cpu_set_simd_level(keep_s);
    return rc;
}

TEST(optim_adamw_reference)
{
    const int64_t sizes[] = {1000, 70001};
    enum { STEPS = 50 };
    for (int c = 0; c < 3; c++)
        for (int si = 0; si < 2; si++) {
            int64_t n = sizes[si];
            float *p = malloc(n * 4), *m = malloc(n * 4), *v = malloc(n * 4), *rp = malloc(n * 4), *rg = malloc(n * 4),
                  *rm = calloc(n, 4), *rv = calloc(n, 4), *p2 = malloc(n * 4), *m2 = malloc(n * 4), *v2 = malloc(n * 4);
            double *dp = malloc(n * 8), *dm = calloc(n, 8), *dv = calloc(n, 8);
            if (!p || !m || !v || !rp || !rg || !rm || !rv || !p2 || !m2 || !v2 || !dp || !dm || !dv) {
                CHECK(0);
                return;
            }
            CHECK_EQ(run_opt(&g_opts[c], n, STEPS, 4, -1, p, m, v), 0);
            /* the reference from the same start */
            g_rng = (uint64_t)n;
            for (int64_t i = 0; i < n; i++) rp[i] = urand(), dp[i] = rp[i];
            for (int k = 0; k < STEPS; k++) {
                fill_grad(rg, n, k);
                ref_step(rp, rg, rm, rv, (int)n, lr_of(k), &g_opts[c], k + 1);
                ref_step_double(dp, rg, dm, dv, (int)n, lr_of(k), &g_opts[c], k + 1);
            }
            int dif = 0;
            double worst = 0;
            for (int64_t i = 0; i < n; i++) {
                dif += memcmp(&p[i], &rp[i], 4) || memcmp(&m[i], &rm[i], 4) || memcmp(&v[i], &rv[i], 4);
                worst = fmax(worst, fabs(p[i] - dp[i]));
            }
            if (dif) fprintf(stderr, "  config %d n %lld: %d elements differ from the f32 reference\n", c, (long long)n, dif);
            CHECK_EQ(dif, 0);
            /* f32 against double after 50 steps of ~1e-3: a few ulp of |p| <= 1 per step */
            if (!(worst <= 2e-5)) fprintf(stderr, "  config %d: |p - double AdamW| up to %.3g\n", c, worst);
            CHECK(worst <= 2e-5);
            /* one thread, and the scalar path: the same bits */
            CHECK_EQ(run_opt(&g_opts[c], n, STEPS, 1, DFM_CPU_SCALAR, p2, m2, v2), 0);
            CHECK(!memcmp(p, p2, n * 4) && !memcmp(m, m2, n * 4) && !memcmp(v, v2, n * 4));
            free(p), free(m), free(v), free(rp), free(rg), free(rm), free(rv), free(p2), free(m2), free(v2);
            free(dp), free(dm), free(dv);
        }
}

/* ---- torch fixture ---------------------------------------------------------------------------- */

static dfm_st *open_fixture(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/optim/adamw.safetensors", dfm_test_fixtures());
    dfm_st *st = NULL;
    if (dfm_st_open(&st, path) < 0) {
        fprintf(stderr, "  %s: %s\n", path, dfm_errmsg());
        dfm_test_failures++;
        return NULL;
    }
    return st;
}

/* metadata value `key` (a string of comma-separated numbers) into x[0..n); returns the count */
static int meta_numbers(dfm_st *st, const char *key, double *x, int n)
{
    const char *meta = dfm_st_metadata(st);
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":\"", key);
    const char *s = strstr(meta, pat);
    if (!s) return 0;
    s += strlen(pat);
    int k = 0;
    while (k < n) {
        char *end;
        x[k++] = strtod(s, &end);
        if (*end != ',') break;
        s = end + 1;
    }
    return k;
}

/* copy of fixture tensor `name` as a new CPU F32 tensor */
static int fixture_tensor(dfm_st *st, const char *name, dfm_tensor *t)
{
    const dfm_st_tensor *f = dfm_st_find(st, name);
    if (!f || dfm_tensor_alloc(t, DFM_F32, DFM_CPU, f->ndim, f->shape) < 0 ||
        dfm_st_read(st, name, DFM_F32, f->ndim, f->shape, t->data) < 0) {
        fprintf(stderr, "  fixture tensor %s: %s\n", name, dfm_errmsg());
        dfm_test_failures++;
        return -1;
    }
    return 0;
}

/* count of elements of a (F32 [n]) whose bits differ from fixture tensor `name`; -1 on error */
static int diff_bits(dfm_st *st, const char *name, const dfm_tensor *a, int *ulp)
{
    dfm_tensor want;
    if (fixture_tensor(st, name, &want) < 0) return -1;
    int64_t n = dfm_tensor_numel(a);
    int d = 0;
    *ulp = 0;
    for (int64_t i = 0; i < n; i++) {
        int32_t x, y;
        memcpy(&x, (float *)a->data + i, 4), memcpy(&y, (float *)want.data + i, 4);
        if (x != y) d++;
        int u = abs(x - y); /* same sign here: the values are far from 0 */
        if (u > *ulp) *ulp = u;
    }
    dfm_tensor_free(&want);
    return d;
}

TEST(optim_torch_fixture)
{
    dfm_st *st = open_fixture();
    if (!st) return;
    for (int c = 0; c < 3; c++) {
        char key[64];
        double lr[10], ov[4];
        snprintf(key, sizeof key, "c%d.lr", c);
        CHECK_EQ(meta_numbers(st, key, lr, 10), 10);
        snprintf(key, sizeof key, "c%d.opts", c);
        CHECK_EQ(meta_numbers(st, key, ov, 4), 4);
        dfm_adamw_opts o = {ov[0], ov[1], ov[2], ov[3]};
        dfm_adamw *opt = NULL;
        dfm_tensor p[3], g[3];
        memset(p, 0, sizeof p), memset(g, 0, sizeof g);
        int ok = dfm_adamw_new(&opt, &o) == 0;
        for (int j = 0; j < 3 && ok; j++) {
            char nm[64];
            snprintf(nm, sizeof nm, "c%d.p%d.init", c, j);
            ok = fixture_tensor(st, nm, &p[j]) == 0 &&
                 dfm_tensor_zeros(&g[j], DFM_F32, DFM_CPU, p[j].ndim, p[j].shape) == 0;
            snprintf(nm, sizeof nm, "p%d", j);
            ok = ok && dfm_adamw_add(opt, nm, &p[j], &g[j]) == 0;
        }
        for (int k = 0; k < 10 && ok; k++) {
            for (int j = 0; j < 3 && ok; j++) {
                char nm[64];
                snprintf(nm, sizeof nm, "c%d.g%d.s%d", c, j, k);
                ok = dfm_st_read(st, nm, DFM_F32, g[j].ndim, g[j].shape, g[j].data) == 0;
            }
            ok = ok && dfm_adamw_step(opt, lr[k]) == 0;
        }
        CHECK(ok);
        if (ok) {
            char path[512];
            snprintf(path, sizeof path, "%s/fixture_state.safetensors", dfm_test_tmpdir());
            dfm_st *mine = NULL;
            CHECK(dfm_adamw_save(opt, path) == 0 && dfm_st_open(&mine, path) == 0);
            for (int j = 0; j < 3 && mine; j++) {
                char nm[64], ours[64];
                int ulp, d;
                /* p: bit for bit with torch's ops under a correctly rounded sqrt */
                snprintf(nm, sizeof nm, "c%d.p%d.replica", c, j);
                CHECK_EQ(d = diff_bits(st, nm, &p[j], &ulp), 0);
                /* p against torch.optim.AdamW itself: within its CPU sqrt's error (1 ulp of the
                 * denominator, a few ulp of p after 10 steps) */
                snprintf(nm, sizeof nm, "c%d.p%d.torch", c, j);
                d = diff_bits(st, nm, &p[j], &ulp);
                CHECK(d >= 0 && ulp <= 4);
                /* m and v: bit for bit with torch.optim.AdamW (no sqrt involved) */
                for (int k = 0; k < 2; k++) {
                    dfm_tensor t;
                    snprintf(ours, sizeof ours, "p%d.%s", j, k ? "exp_avg_sq" : "exp_avg");
                    snprintf(nm, sizeof nm, "c%d.%c%d.torch", c, k ? 'v' : 'm', j);
                    if (fixture_tensor(mine, ours, &t) < 0) continue;
                    CHECK_EQ(diff_bits(st, nm, &t, &ulp), 0);
                    dfm_tensor_free(&t);
                }
            }
            dfm_st_close(mine);
            CHECK_EQ(dfm_adamw_steps(opt), 10);
        }
        dfm_adamw_free(opt);
        for (int j = 0; j < 3; j++) dfm_tensor_free(&p[j]), dfm_tensor_free(&g[j]);
    }
    dfm_st_close(st);
}

/* ---- state file --------------------------------------------------------------------------------- */

TEST(optim_save_load)
{
    enum { N0 = 300, N1 = 70001, STEPS = 12, CUT = 5 };
    const dfm_adamw_opts *o = &g_opts[0];
    param a[2], b[2];
    dfm_adamw *oa = NULL, *ob = NULL;
    g_rng = 1;
    if (param_new(&a[0], N0) || param_new(&a[1], N1)) {
        CHECK(0);
        return;
    }
    CHECK(dfm_adamw_new(&oa, o) == 0 && dfm_adamw_add(oa, "blocks.0.w", &a[0].p, &a[0].g) == 0 &&
          dfm_adamw_add(oa, "blocks.1.w", &a[1].p, &a[1].g) == 0);
    /* the uninterrupted run in oa; b restarts from a's parameters at CUT */
    char path[512];
    snprintf(path, sizeof path, "%s/adamw_state.safetensors", dfm_test_tmpdir());
    for (int k = 0; k < STEPS; k++) {
        if (k == CUT) {
            CHECK_EQ(dfm_adamw_save(oa, path), 0);
            for (int j = 0; j < 2; j++) {
                CHECK(dfm_tensor_copy(&b[j].p, &a[j].p, DFM_CPU) == 0);
                CHECK(dfm_tensor_zeros(&b[j].g, DFM_F32, DFM_CPU, 1, a[j].p.shape) == 0);
            }
            CHECK(dfm_adamw_new(&ob, o) == 0 && dfm_adamw_add(ob, "blocks.0.w", &b[0].p, &b[0].g) == 0 &&
                  dfm_adamw_add(ob, "blocks.1.w", &b[1].p, &b[1].g) == 0);
            CHECK_EQ(dfm_adamw_load(ob, path), 0);
            CHECK_EQ(dfm_adamw_steps(ob), CUT);
        }
        for (int j = 0; j < 2; j++) {
            fill_grad(a[j].g.data, a[j].p.shape[0], k * 2 + j);
            if (ob) memcpy(b[j].g.data, a[j].g.data, dfm_tensor_nbytes(&a[j].g));
        }
        CHECK_EQ(dfm_adamw_step(oa, lr_of(k)), 0);
        if (ob) CHECK_EQ(dfm_adamw_step(ob, lr_of(k)), 0);
    }
    for (int j = 0; j < 2 && ob; j++) CHECK(!memcmp(a[j].p.data, b[j].p.data, dfm_tensor_nbytes(&a[j].p)));
    char pa[512], pb[512];
    snprintf(pa, sizeof pa, "%s/state_a.safetensors", dfm_test_tmpdir());
    snprintf(pb, sizeof pb, "%s/state_b.safetensors", dfm_test_tmpdir());
    CHECK(dfm_adamw_save(oa, pa) == 0 && dfm_adamw_save(ob, pb) == 0);
    dfm_buf fa = {0}, fb = {0};
    FILE *f;
    char c[65536];
    size_t k;
    if ((f = fopen(pa, "rb"))) {
        while ((k = fread(c, 1, sizeof c, f))) dfm_buf_append(&fa, c, k);
        fclose(f);
    }
    if ((f = fopen(pb, "rb"))) {
        while ((k = fread(c, 1, sizeof c, f))) dfm_buf_append(&fb, c, k);
        fclose(f);
    }
    /* the whole state, step count included, byte for byte */
    CHECK(fa.len > 0 && fa.len == fb.len && !memcmp(fa.data, fb.data, fa.len));
    dfm_buf_free(&fa), dfm_buf_free(&fb);

    /* refusals: other names, other shapes, another file; nothing changes */
    dfm_adamw *oc = NULL;
    param x;
    g_rng = 2;
    CHECK(param_new(&x, N0) == 0 && dfm_adamw_new(&oc, o) == 0 && dfm_adamw_add(oc, "blocks.0.w", &x.p, &x.g) == 0);
    CHECK_EQ(dfm_adamw_load(oc, path), DFM_E_FORMAT); /* the file has two parameters */
    param y;
    CHECK(param_new(&y, N0) == 0 && dfm_adamw_add(oc, "blocks.1.other", &y.p, &y.g) == 0);
    CHECK_EQ(dfm_adamw_load(oc, path), DFM_E_FORMAT); /* no blocks.1.other */
    CHECK(strstr(dfm_errmsg(), "blocks.1.other") != NULL);
    dfm_adamw_free(oc);
    oc = NULL;
    CHECK(dfm_adamw_new(&oc, o) == 0 && dfm_adamw_add(oc, "blocks.0.w", &x.p, &x.g) == 0 &&
          dfm_adamw_add(oc, "blocks.1.w", &y.p, &y.g) == 0);
    CHECK_EQ(dfm_adamw_load(oc, path), DFM_E_FORMAT); /* blocks.1.w has N1 elements there */
    CHECK_EQ(dfm_adamw_steps(oc), 0);
    char other[512];
    snprintf(other, sizeof other, "%s/optim/../safetensors/small.safetensors", dfm_test_fixtures());
    CHECK_EQ(dfm_adamw_load(oc, other), DFM_E_FORMAT); /* not an optimizer state */
    dfm_adamw_free(oc);
    param_free(&x), param_free(&y);

    dfm_adamw_free(oa), dfm_adamw_free(ob);
    for (int j = 0; j < 2; j++) param_free(&a[j]), param_free(&b[j]);
}

/* ---- gradient norm -------------------------------------------------------------------------------- */

TEST(optim_grad_norm)
{
    /* against torch.nn.utils.clip_grad_norm_ (f32) on the fixture's gradients, and the clipped
     * gradients bit for bit with torch's coefficient */
    dfm_st *st = open_fixture();
    if (!st) return;
    double want = 0;
    CHECK_EQ(meta_numbers(st, "gn.norm", &want, 1), 1);
    dfm_tensor g[3], p[3];
    dfm_adamw *opt = NULL;
    CHECK_EQ(dfm_adamw_new(&opt, NULL), 0);
    int ok = 1;
    for (int j = 0; j < 3 && ok; j++) {
        char nm[32];
        snprintf(nm, sizeof nm, "gn.g%d", j);
        ok = fixture_tensor(st, nm, &g[j]) == 0 && dfm_tensor_zeros(&p[j], DFM_F32, DFM_CPU, g[j].ndim, g[j].shape) == 0 &&
             dfm_adamw_add(opt, nm, &p[j], &g[j]) == 0;
    }
    if (ok) {
        int fin = -1;
        double norm = dfm_adamw_grad_norm(opt, &fin);
        CHECK_EQ(fin, 1);
        CHECK_NEAR(norm, want, 1e-6 * want); /* torch sums in f32 */
        /* torch: clip_coef = max_norm / (total_norm + 1e-6) in f32, clamped to 1 */
        float tn = (float)want, den = tn + (float)1e-6, coef = 0.5f / den;
        coef = coef < 1.0f ? coef : 1.0f;
        CHECK_EQ(dfm_adamw_scale_grads(opt, coef), 0);
        for (int j = 0; j < 3; j++) {
            char nm[32];
            int ulp;
            snprintf(nm, sizeof nm, "gn.g%d.clipped", j);
            CHECK_EQ(diff_bits(st, nm, &g[j], &ulp), 0);
        }
    }
    dfm_adamw_free(opt);
    for (int j = 0; j < 3; j++) dfm_tensor_free(&g[j]), dfm_tensor_free(&p[j]);
    dfm_st_close(st);

    /* sums of squares across the lane count: a long double reference (relative 1e-11: a
     * sequential double sum of 65536 lanes errs by at most 65536 ulp), the same bits with 1 and 3
     * threads, and non-finite elements flagged */
    const int64_t sizes[] = {1, 65535, 65536, 65537, 200003};
    int keep = dfm_cpu_threads();
    for (int s = 0; s < 5; s++) {
        int64_t n = sizes[s];
        dfm_tensor x;
        if (dfm_tensor_alloc(&x, DFM_F32, DFM_CPU, 1, &n) < 0) {
            CHECK(0);
            break;
        }
        float *xd = x.data;
        g_rng = (uint64_t)n;
        long double ref = 0;
        for (int64_t i = 0; i < n; i++) xd[i] = urand() * 3, ref += (long double)xd[i] * xd[i];
        double r[2];
        for (int t = 0; t < 2; t++) {
            dfm_cpu_set_threads(t ? 3 : 1);
            dfm_op_args a = {.src = {&x}};
            CHECK_EQ(dfm_op_run(DFM_OP_SUMSQ, &a), 0);
            memcpy(&r[t], &a.r[0], 8);
        }
        dfm_cpu_set_threads(keep);
        CHECK(!memcmp(&r[0], &r[1], 8));
        CHECK_NEAR(r[0], (double)ref, 1e-11 * (double)ref);
        /* through the optimizer */
        dfm_tensor q;
        dfm_adamw *o2 = NULL;
        CHECK(dfm_tensor_zeros(&q, DFM_F32, DFM_CPU, 1, &n) == 0 && dfm_adamw_new(&o2, NULL) == 0 &&
              dfm_adamw_add(o2, "x", &q, &x) == 0);
        int fin = -1;
        CHECK(dfm_adamw_grad_norm(o2, &fin) == sqrt(r[0]) && fin == 1);
        xd[n / 2] = NAN;
        CHECK(isnan(dfm_adamw_grad_norm(o2, &fin)) && fin == 0);
        xd[n / 2] = -INFINITY;
        CHECK(isinf(dfm_adamw_grad_norm(o2, &fin)) && fin == 0);
        dfm_adamw_free(o2);
        dfm_tensor_free(&q);
        dfm_tensor_free(&x);
    }
}

/* ---- schedule ------------------------------------------------------------------------------------ */

TEST(optim_lr_schedule)
{
    const double lr = 1e-3, mn = 1e-5;
    /* warmup 10 of 110 steps: lr (n + 1) / 10 */
    const char *kinds[] = {"constant", "linear", "cosine"};
    for (int k = 0; k < 3; k++) {
        CHECK(dfm_lr_at(kinds[k], 0, 10, 110, lr, mn) == lr * 1 / 10);
        CHECK(dfm_lr_at(kinds[k], 4, 10, 110, lr, mn) == lr * 5 / 10);
        CHECK(dfm_lr_at(kinds[k], 9, 10, 110, lr, mn) == lr);
        CHECK(dfm_lr_at(kinds[k], 10, 10, 110, lr, mn) == lr); /* r = 0 */
    }
    /* after warmup: r = (n - 10) / 100 */
    CHECK(dfm_lr_at("constant", 60, 10, 110, lr, mn) == lr);
    CHECK(dfm_lr_at("constant", 500, 10, 110, lr, mn) == lr);
    CHECK_NEAR(dfm_lr_at("linear", 60, 10, 110, lr, mn), mn + (lr - mn) * 0.5, 1e-18);
    CHECK_NEAR(dfm_lr_at("cosine", 60, 10, 110, lr, mn), mn + (lr - mn) * 0.5, 1e-18);
    CHECK_NEAR(dfm_lr_at("linear", 35, 10, 110, lr, mn), mn + (lr - mn) * 0.75, 1e-18);
    CHECK_NEAR(dfm_lr_at("cosine", 35, 10, 110, lr, mn), mn + (lr - mn) * 0.5 * (1 + cos(M_PI * 0.25)), 1e-18);
    CHECK_NEAR(dfm_lr_at("cosine", 109, 10, 110, lr, mn), mn + (lr - mn) * 0.5 * (1 + cos(M_PI * 0.99)), 1e-18);
    CHECK(dfm_lr_at("linear", 110, 10, 110, lr, mn) == mn); /* r = 1 */
    CHECK(dfm_lr_at("cosine", 110, 10, 110, lr, mn) == mn);
    CHECK(dfm_lr_at("cosine", 1000, 10, 110, lr, mn) == mn); /* past the end: r clamped */
    /* no warmup: n = 0 is the full lr */
    CHECK(dfm_lr_at("cosine", 0, 0, 100, lr, mn) == lr);
    CHECK(dfm_lr_at("linear", 0, 0, 100, lr, mn) == lr);
    /* total <= warmup: max(1, total - warmup) */
    CHECK(dfm_lr_at("linear", 10, 10, 10, lr, mn) == lr);
    CHECK(dfm_lr_at("linear", 11, 10, 10, lr, mn) == mn);
    /* monotone over a cosine run */
    double prev = INFINITY;
    for (int n = 10; n <= 110; n++) {
        double v = dfm_lr_at("cosine", n, 10, 110, lr, mn);
        CHECK(v <= prev && v >= mn);
        prev = v;
    }
    CHECK(isnan(dfm_lr_at("wsd", 5, 0, 10, lr, mn)));
    CHECK(dfm_lr_kind_ok("cosine") && !dfm_lr_kind_ok("Cosine") && !dfm_lr_kind_ok(NULL));
}

TEST(optim_args)
{
    dfm_adamw *o = NULL;
    dfm_adamw_opts bad = {1.0, 0.999, 1e-8, 0.01};
    CHECK_EQ(dfm_adamw_new(&o, &bad), DFM_E_ARG);
    CHECK(strstr(dfm_errmsg(), "beta1") != NULL);
    bad = (dfm_adamw_opts){0.9, 0.999, -1, 0.01};
    CHECK_EQ(dfm_adamw_new(&o, &bad), DFM_E_ARG);
    CHECK(strstr(dfm_errmsg(), "eps") != NULL);
    bad = (dfm_adamw_opts){0.9, 0.999, 1e-8, NAN};
    CHECK_EQ(dfm_adamw_new(&o, &bad), DFM_E_ARG);
    CHECK_EQ(dfm_adamw_new(&o, NULL), 0);
    param a, b;
    g_rng = 3;
    CHECK(param_new(&a, 10) == 0 && param_new(&b, 11) == 0);
    CHECK_EQ(dfm_adamw_add(o, "a", &a.p, &a.g), 0);
    CHECK_EQ(dfm_adamw_add(o, "a", &b.p, &b.g), DFM_E_ARG); /* duplicate */
    CHECK_EQ(dfm_adamw_add(o, "b", &b.p, &a.g), DFM_E_ARG); /* shapes differ */
    CHECK_EQ(dfm_adamw_add(o, "", &b.p, &b.g), DFM_E_ARG);
    dfm_tensor i32;
    CHECK(dfm_tensor_zeros(&i32, DFM_I32, DFM_CPU, 1, b.p.shape) == 0);
    CHECK_EQ(dfm_adamw_add(o, "b", &b.p, &i32), DFM_E_ARG);
    CHECK_EQ(dfm_adamw_count(o), 1);
    CHECK_EQ(dfm_adamw_step(o, -1e-3), DFM_E_ARG);
    CHECK_EQ(dfm_adamw_step(o, NAN), DFM_E_ARG);
    CHECK_EQ(dfm_adamw_steps(o), 0);
    /* a zero gradient with weight decay only shrinks p; lr 0 changes nothing */
    float before[10];
    memcpy(before, a.p.data, sizeof before);
    CHECK_EQ(dfm_adamw_step(o, 0.0), 0);
    CHECK(!memcmp(before, a.p.data, sizeof before));
    CHECK_EQ(dfm_adamw_steps(o), 1);
    dfm_tensor_free(&i32);
    dfm_adamw_free(o);
    param_free(&a), param_free(&b);
}
