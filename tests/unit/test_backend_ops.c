/* test_backend_ops.c — every CUDA op against its CPU twin (ggml's test-backend-ops): the same
 * random operands go through the public dispatch (tensor/ops.h) once on DFM_CPU and once on
 * DFM_CUDA (moved there with dfm_tensor_copy), over many shapes, and the results are compared:
 * GEMM-based ops (conv3d, matmul, linear, attention) to 1e-4 of the output's largest magnitude, norms and
 * silu to 1e-5, add/clamp/affine, data movement and dtype conversion bit for bit.
 * Without a CUDA device each test prints one "(no CUDA device: ...; skipped)" line and passes.
 */
#include "test.h"

#ifdef DFM_HAVE_CUDA
#include "base/dtype.h"
#include "base/error.h"
#include "cuda/device.h"
#include "tensor/ops.h"
#include "tensor/tensor.h"

#include <stdint.h>
#include <stdlib.h>

#define TOL_GEMM 1e-4
#define TOL_NORM 1e-5

static int no_gpu(void)
{
    const char *why = NULL;
    if (dfm_cuda_device_count(&why) > 0) return 0;
    fprintf(stderr, "  (no CUDA device: %s; skipped)\n", why ? why : "unknown");
    return 1;
}

/* ---- operands: one random CPU tensor and its copy on the device ---------------------------- */

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd64(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}
static float urand(void) { return (float)((rnd64() >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f; }

typedef struct {
    dfm_tensor c, g; /* on the CPU, on the device */
} pair;

/* Random values in [-1, 1) (rounded to dt; raw random bytes for integer dtypes) on the CPU,
 * copied to the device. */
static int pair_rand(pair *p, dfm_dtype dt, int ndim, const int64_t *shape)
{
    memset(p, 0, sizeof *p);
    int rc = dfm_tensor_alloc(&p->c, dt, DFM_CPU, ndim, shape);
    if (rc < 0) return rc;
    int64_t n = dfm_tensor_numel(&p->c);
    if (dt == DFM_F32 || dt == DFM_BF16 || dt == DFM_F16) {
        float *f = malloc((size_t)(n ? n : 1) * sizeof(float));
        if (!f) return DFM_E_NOMEM;
        for (int64_t i = 0; i < n; i++) f[i] = urand();
        rc = dfm_convert_floats(p->c.data, dt, f, DFM_F32, (size_t)n);
        free(f);
        if (rc < 0) return rc;
    } else {
        uint8_t *b = p->c.data;
        for (size_t i = 0; i < dfm_tensor_nbytes(&p->c); i++) b[i] = (uint8_t)(rnd64() >> 56);
    }
    return dfm_tensor_copy(&p->g, &p->c, DFM_CUDA);
}

static void pair_free(pair *p)
{
    dfm_tensor_free(&p->c);
    dfm_tensor_free(&p->g);
}

#define SHAPE(...) (sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), ((const int64_t[]){__VA_ARGS__})

/* Compare the device result with the CPU one: rtol 0 means bit for bit, otherwise F32 values within
 * rtol * max|ref| (and NaN where the reference has NaN). Returns 1 when they agree. */
static int agree(const char *what, const dfm_tensor *ref, const dfm_tensor *dev, double rtol)
{
    dfm_tensor got;
    if (dfm_tensor_copy(&got, dev, DFM_CPU) < 0) {
        fprintf(stderr, "  %s: copy back failed: %s\n", what, dfm_errmsg());
        dfm_test_failures++;
        return 0;
    }
    size_t nb = dfm_tensor_nbytes(ref);
    int ok = 1;
    if (rtol == 0.0) {
        if (nb && memcmp(got.data, ref->data, nb)) {
            const uint8_t *a = got.data, *b = ref->data;
            size_t i = 0;
            while (a[i] == b[i]) i++;
            fprintf(stderr, "  %s: differs from the CPU at byte %zu of %zu\n", what, i, nb);
            ok = 0;
        }
    } else {
        const float *a = got.data, *b = ref->data;
        int64_t n = dfm_tensor_numel(ref), worst = 0;
        double scale = 0, maxd = 0;
        for (int64_t i = 0; i < n; i++)
            if (fabs(b[i]) > scale) scale = fabs(b[i]);
        if (scale == 0) scale = 1;
        for (int64_t i = 0; i < n; i++) {
            double d = isnan(b[i]) ? (isnan(a[i]) ? 0 : INFINITY) : fabs((double)a[i] - b[i]) / scale;
            if (!(d <= maxd)) {
                maxd = d;
                worst = i;
                if (isnan(d)) break;
            }
        }
        if (!(maxd <= rtol)) {
            fprintf(stderr, "  %s: max error %.3g of max|ref| %.3g at %lld (cuda %g, cpu %g), tolerance %g\n",
                    what, maxd, scale, (long long)worst, a[worst], b[worst], rtol);
            ok = 0;
        }
    }
    dfm_tensor_free(&got);
    if (!ok) dfm_test_failures++;
    return ok;
}

/* An op that failed on one device: report and count. */
static int both_ran(const char *what, int rc_cpu, int rc_gpu)
{
    if (rc_cpu == 0 && rc_gpu == 0) return 1;
    fprintf(stderr, "  %s: cpu rc %d, cuda rc %d: %s\n", what, rc_cpu, rc_gpu, dfm_errmsg());
    dfm_test_failures++;
    return 0;
}

/* ---- conv3d -------------------------------------------------------------------------------- */

typedef struct {
    int k[3], stride[3], pad[6];
} conv_cfg;

static void conv_case(int64_t cin, int64_t t, int64_t h, int64_t w, int64_t cout, const conv_cfg *cf,
                      dfm_dtype wdt, int with_bias, int bf16)
{
    int64_t out[3], in[3] = {t, h, w};
    for (int i = 0; i < 3; i++) {
        int64_t span = in[i] + cf->pad[2 * i] + cf->pad[2 * i + 1] - cf->k[i];
        if (span < 0) return; /* kernel larger than the padded input: not a case */
        out[i] = span / cf->stride[i] + 1;
    }
    char what[256];
    snprintf(what, sizeof what,
             "conv3d x [%lld,%lld,%lld,%lld] w %s [%lld,%lld,%d,%d,%d] stride %d,%d,%d pad %d,%d,%d,%d,%d,%d%s%s",
             (long long)cin, (long long)t, (long long)h, (long long)w, dfm_dtype_name(wdt), (long long)cout,
             (long long)cin, cf->k[0], cf->k[1], cf->k[2], cf->stride[0], cf->stride[1], cf->stride[2],
             cf->pad[0], cf->pad[1], cf->pad[2], cf->pad[3], cf->pad[4], cf->pad[5], with_bias ? " bias" : "",
             bf16 ? " bf16-compute" : "");
    pair x, wt, b, y;
    int rc = pair_rand(&x, DFM_F32, SHAPE(cin, t, h, w));
    if (!rc) rc = pair_rand(&wt, wdt, SHAPE(cout, cin, cf->k[0], cf->k[1], cf->k[2]));
    if (!rc) rc = pair_rand(&b, wdt, SHAPE(cout));
    if (!rc) rc = pair_rand(&y, DFM_F32, SHAPE(cout, out[0], out[1], out[2]));
    if (rc < 0) {
        fprintf(stderr, "  %s: setup failed: %s\n", what, dfm_errmsg());
        dfm_test_failures++;
        return;
    }
    dfm_compute cc = {bf16 ? DFM_BF16 : DFM_F32, NULL};
    int rc_c = dfm_op_conv3d(&cc, &x.c, &wt.c, with_bias ? &b.c : NULL, &y.c, cf->stride, cf->pad);
    int rc_g = dfm_op_conv3d(&cc, &x.g, &wt.g, with_bias ? &b.g : NULL, &y.g, cf->stride, cf->pad);
    if (both_ran(what, rc_c, rc_g)) agree(what, &y.c, &y.g, TOL_GEMM);
    pair_free(&x);
    pair_free(&wt);
    pair_free(&b);
    pair_free(&y);
}

TEST(backend_conv3d)
{
    if (no_gpu()) return;
    /* every configuration the Wan VAE uses, and a few it does not */
    static const conv_cfg cfgs[] = {
        {{3, 3, 3}, {1, 1, 1}, {2, 0, 1, 1, 1, 1}}, /* causal 3x3x3 */
        {{1, 1, 1}, {1, 1, 1}, {0, 0, 0, 0, 0, 0}}, /* pointwise */
        {{3, 1, 1}, {1, 1, 1}, {2, 0, 0, 0, 0, 0}}, /* causal time conv */
        {{3, 1, 1}, {2, 1, 1}, {0, 0, 0, 0, 0, 0}}, /* time downsample */
        {{1, 3, 3}, {1, 2, 2}, {0, 0, 0, 1, 0, 1}}, /* spatial downsample (zero pad right/bottom) */
        {{1, 3, 3}, {1, 1, 1}, {0, 0, 1, 1, 1, 1}}, /* 2-D 3x3 per frame */
        {{2, 3, 2}, {2, 3, 1}, {1, 2, 0, 2, 3, 0}}, /* odd: asymmetric everything */
        {{1, 1, 1}, {1, 2, 2}, {0, 0, 0, 0, 0, 0}}, /* strided pointwise */
    };
    static const int64_t sizes[][5] = {/* cin, t, h, w, cout */
                                       {3, 5, 7, 9, 4}, {1, 1, 1, 1, 1},   {4, 1, 6, 5, 3},
                                       {2, 4, 1, 1, 5}, {16, 3, 8, 8, 12}, {5, 2, 13, 11, 7},
                                       {32, 2, 9, 10, 48}};
    for (size_t c = 0; c < sizeof cfgs / sizeof cfgs[0]; c++)
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            const int64_t *z = sizes[s];
            conv_case(z[0], z[1], z[2], z[3], z[4], &cfgs[c], DFM_F32, 1, 0);
            conv_case(z[0], z[1], z[2], z[3], z[4], &cfgs[c], DFM_BF16, 1, 0);
            conv_case(z[0], z[1], z[2], z[3], z[4], &cfgs[c], DFM_F16, 0, 0);
            conv_case(z[0], z[1], z[2], z[3], z[4], &cfgs[c], DFM_F32, 0, 1);
            conv_case(z[0], z[1], z[2], z[3], z[4], &cfgs[c], DFM_BF16, 1, 1);
        }
    /* VAE-like widths, and one big enough for the CUDA column scratch to take two blocks */
    conv_case(96, 3, 17, 23, 96, &cfgs[0], DFM_BF16, 1, 0);
    conv_case(96, 3, 17, 23, 96, &cfgs[0], DFM_BF16, 1, 1);
    conv_case(192, 2, 15, 16, 96, &cfgs[4], DFM_F32, 1, 0);
    conv_case(128, 2, 100, 100, 8, &cfgs[0], DFM_F32, 1, 0);
}

/* ---- rms norm ------------------------------------------------------------------------------ */

TEST(backend_rms_norm_channels)
{
    if (no_gpu()) return;
    static const int64_t cs[] = {1, 3, 96, 384};
    static const int64_t sp[][3] = {{1, 1, 1}, {1, 3, 11}, {2, 5, 7}, {3, 20, 17}};
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++)
        for (size_t j = 0; j < sizeof sp / sizeof sp[0]; j++)
            for (int var = 0; var < 3; var++) {
                int64_t c = cs[i];
                dfm_dtype gdt = var == 1 ? DFM_BF16 : DFM_F32;
                int with_bias = var >= 1, inplace = var == 2;
                char what[160];
                snprintf(what, sizeof what, "rms_norm_channels x [%lld,%lld,%lld,%lld] gamma %s%s%s", (long long)c,
                         (long long)sp[j][0], (long long)sp[j][1], (long long)sp[j][2], dfm_dtype_name(gdt),
                         with_bias ? " bias" : "", inplace ? " in place" : "");
                pair x, g, b, y;
                int rc = pair_rand(&x, DFM_F32, SHAPE(c, sp[j][0], sp[j][1], sp[j][2]));
                if (!rc) rc = pair_rand(&g, gdt, SHAPE(c, 1, 1, 1));
                if (!rc) rc = pair_rand(&b, gdt, SHAPE(c));
                if (!rc) rc = pair_rand(&y, DFM_F32, SHAPE(c, sp[j][0], sp[j][1], sp[j][2]));
                CHECK_EQ(rc, 0);
                if (rc) return;
                dfm_tensor *yc = inplace ? &x.c : &y.c, *yg = inplace ? &x.g : &y.g;
                int rc_c = dfm_op_rms_norm_channels(&x.c, &g.c, with_bias ? &b.c : NULL, yc);
                int rc_g = dfm_op_rms_norm_channels(&x.g, &g.g, with_bias ? &b.g : NULL, yg);
                if (both_ran(what, rc_c, rc_g)) agree(what, yc, yg, TOL_NORM);
                pair_free(&x);
                pair_free(&g);
                pair_free(&b);
                pair_free(&y);
            }
}

/* ---- elementwise --------------------------------------------------------------------------- */

TEST(backend_eltwise)
{
    if (no_gpu()) return;
    static const int64_t ns[] = {1, 7, 255, 256, 257, 4099, 100003};
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
        int64_t n = ns[i];
        pair a, b, y;
        int rc = pair_rand(&a, DFM_F32, SHAPE(n));
        if (!rc) rc = pair_rand(&b, DFM_F32, SHAPE(n));
        if (!rc) rc = pair_rand(&y, DFM_F32, SHAPE(n));
        CHECK_EQ(rc, 0);
        if (rc) return;
        /* spread the inputs over [-8, 8) so that silu and clamp see both tails */
        CHECK_EQ(dfm_op_affine(&a.c, 8.0f, 0.0f, &a.c), 0);
        CHECK_EQ(dfm_op_affine(&a.g, 8.0f, 0.0f, &a.g), 0);
        char what[96];
        snprintf(what, sizeof what, "affine (in place) n %lld", (long long)n);
        agree(what, &a.c, &a.g, 0);
        snprintf(what, sizeof what, "silu n %lld", (long long)n);
        if (both_ran(what, dfm_op_silu(&a.c, &y.c), dfm_op_silu(&a.g, &y.g))) agree(what, &y.c, &y.g, TOL_NORM);
        snprintf(what, sizeof what, "add n %lld", (long long)n);
        if (both_ran(what, dfm_op_add(&a.c, &b.c, &y.c), dfm_op_add(&a.g, &b.g, &y.g))) agree(what, &y.c, &y.g, 0);
        snprintf(what, sizeof what, "add (into an input) n %lld", (long long)n);
        if (both_ran(what, dfm_op_add(&a.c, &b.c, &b.c), dfm_op_add(&a.g, &b.g, &b.g))) agree(what, &b.c, &b.g, 0);
        snprintf(what, sizeof what, "clamp n %lld", (long long)n);
        if (both_ran(what, dfm_op_clamp(&a.c, -3.0f, 2.5f, &y.c), dfm_op_clamp(&a.g, -3.0f, 2.5f, &y.g)))
            agree(what, &y.c, &y.g, 0);
        snprintf(what, sizeof what, "affine n %lld", (long long)n);
        if (both_ran(what, dfm_op_affine(&a.c, 0.7f, -0.2f, &y.c), dfm_op_affine(&a.g, 0.7f, -0.2f, &y.g)))
            agree(what, &y.c, &y.g, 0);
        pair_free(&a);
        pair_free(&b);
        pair_free(&y);
    }
}

/* ---- matmul -------------------------------------------------------------------------------- */

static void matmul_case(int64_t m, int64_t n, int64_t k, int ta, int tb, dfm_dtype bdt, int with_bias,
                        float beta, int bf16)
{
    char what[160];
    snprintf(what, sizeof what, "matmul m %lld n %lld k %lld ta %d tb %d b %s%s beta %g%s", (long long)m,
             (long long)n, (long long)k, ta, tb, dfm_dtype_name(bdt), with_bias ? " bias" : "", beta,
             bf16 ? " bf16-compute" : "");
    pair a, b, bias, y;
    int rc = ta ? pair_rand(&a, DFM_F32, SHAPE(k, m)) : pair_rand(&a, DFM_F32, SHAPE(m, k));
    if (!rc) rc = tb ? pair_rand(&b, bdt, SHAPE(n, k)) : pair_rand(&b, bdt, SHAPE(k, n));
    if (!rc) rc = pair_rand(&bias, bdt, SHAPE(n));
    if (!rc) rc = pair_rand(&y, DFM_F32, SHAPE(m, n)); /* the same initial Y for beta = 1 */
    CHECK_EQ(rc, 0);
    if (rc) return;
    dfm_compute cc = {bf16 ? DFM_BF16 : DFM_F32, NULL};
    int rc_c = dfm_op_matmul(&cc, &a.c, ta, &b.c, tb, with_bias ? &bias.c : NULL, beta, &y.c);
    int rc_g = dfm_op_matmul(&cc, &a.g, ta, &b.g, tb, with_bias ? &bias.g : NULL, beta, &y.g);
    if (both_ran(what, rc_c, rc_g)) agree(what, &y.c, &y.g, TOL_GEMM);
    pair_free(&a);
    pair_free(&b);
    pair_free(&bias);
    pair_free(&y);
}

TEST(backend_matmul)
{
    if (no_gpu()) return;
    static const int64_t shapes[][3] = {{1, 1, 1},   {7, 5, 3},     {1, 33, 64},   {64, 96, 80},
                                        {130, 33, 257}, {300, 384, 96}, {17, 1, 130}};
    static const dfm_dtype bdts[] = {DFM_F32, DFM_BF16, DFM_F16};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int t = 0; t < 4; t++)
            for (size_t d = 0; d < 3; d++) {
                const int64_t *z = shapes[s];
                matmul_case(z[0], z[1], z[2], t & 1, t >> 1, bdts[d], d != 1, 0.0f, 0);
                matmul_case(z[0], z[1], z[2], t & 1, t >> 1, bdts[d], d == 1, 1.0f, 0);
                matmul_case(z[0], z[1], z[2], t & 1, t >> 1, bdts[d], 1, s & 1 ? 1.0f : 0.0f, 1);
            }
}

/* ---- linear (packed weights on the CPU, cuBLAS on the device) ------------------------------ */

static void linear_case(int64_t m, int64_t k, int nw, const int64_t *n, dfm_dtype src, dfm_dtype store, int acc,
                        int bf16)
{
    char what[200];
    snprintf(what, sizeof what, "linear m %lld k %lld weights %d (n0 %lld) %s stored %s%s%s", (long long)m, (long long)k,
             nw, (long long)n[0], dfm_dtype_name(src), dfm_dtype_name(store), acc ? " accumulate" : "",
             bf16 ? " bf16-compute" : "");
    pair x, w[DFM_PACKED_MAX], y[DFM_PACKED_MAX];
    const dfm_tensor *wp[DFM_PACKED_MAX];
    dfm_tensor *yc[DFM_PACKED_MAX], *yg[DFM_PACKED_MAX];
    int rc = pair_rand(&x, DFM_F32, SHAPE(m, k));
    for (int i = 0; i < nw && !rc; i++) {
        if (!(rc = pair_rand(&w[i], src, SHAPE(n[i], k)))) rc = pair_rand(&y[i], DFM_F32, SHAPE(m, n[i]));
        wp[i] = &w[i].c, yc[i] = &y[i].c, yg[i] = &y[i].g;
    }
    dfm_packed *lc = NULL, *lg = NULL;
    if (!rc) rc = dfm_packed_create(&lc, wp, nw, store, DFM_CPU);
    if (!rc) rc = dfm_packed_create(&lg, wp, nw, store, DFM_CUDA);
    CHECK_EQ(rc, 0);
    if (!rc) {
        dfm_compute cc = {bf16 ? DFM_BF16 : DFM_F32, NULL};
        int rc_c = dfm_op_linear(&cc, &x.c, lc, yc, acc);
        int rc_g = dfm_op_linear(&cc, &x.g, lg, yg, acc);
        if (both_ran(what, rc_c, rc_g))
            for (int i = 0; i < nw; i++) agree(what, &y[i].c, &y[i].g, TOL_GEMM);
    }
    dfm_packed_free(lc);
    dfm_packed_free(lg);
    pair_free(&x);
    for (int i = 0; i < nw; i++) pair_free(&w[i]), pair_free(&y[i]);
}

TEST(backend_linear)
{
    if (no_gpu()) return;
    static const struct {
        int64_t m, k;
        int nw;
        int64_t n[3];
    } cases[] = {{1, 1, 1, {1}}, {7, 300, 3, {40, 5, 64}}, {130, 257, 2, {33, 16}}, {400, 96, 1, {100}}};
    static const dfm_dtype srcs[] = {DFM_F32, DFM_BF16, DFM_F16};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (int v = 0; v < 8; v++)
            linear_case(cases[c].m, cases[c].k, cases[c].nw, cases[c].n, srcs[v % 3], v & 1 ? DFM_BF16 : DFM_F32,
                        (v >> 1) & 1, v >= 4);
}

/* ---- attention ----------------------------------------------------------------------------- */

TEST(backend_attention)
{
    if (no_gpu()) return;
    static const int64_t shapes[][4] = {/* heads, sq, sk, d */
                                        {1, 1, 1, 1},    {2, 7, 5, 3},      {4, 64, 64, 32},
                                        {1, 300, 257, 64}, {12, 77, 128, 64}, {1, 1024, 1024, 128}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int64_t *z = shapes[s];
        char what[128];
        snprintf(what, sizeof what, "attention heads %lld sq %lld sk %lld d %lld", (long long)z[0], (long long)z[1],
                 (long long)z[2], (long long)z[3]);
        pair q, k, v, o;
        int rc = pair_rand(&q, DFM_F32, SHAPE(z[0], z[1], z[3]));
        if (!rc) rc = pair_rand(&k, DFM_F32, SHAPE(z[0], z[2], z[3]));
        if (!rc) rc = pair_rand(&v, DFM_F32, SHAPE(z[0], z[2], z[3]));
        if (!rc) rc = pair_rand(&o, DFM_F32, SHAPE(z[0], z[1], z[3]));
        CHECK_EQ(rc, 0);
        if (rc) return;
        /* sharpen the scores so that the softmax is far from uniform */
        float scale = 4.0f / sqrtf((float)z[3]);
        if (both_ran(what, dfm_op_attention(&q.c, &k.c, &v.c, scale, &o.c),
                     dfm_op_attention(&q.g, &k.g, &v.g, scale, &o.g)))
            agree(what, &o.c, &o.g, TOL_GEMM);
        pair_free(&q);
        pair_free(&k);
        pair_free(&v);
        pair_free(&o);
    }
}

/* ---- data movement ------------------------------------------------------------------------- */

TEST(backend_movement)
{
    if (no_gpu()) return;
    static const dfm_dtype dts[] = {DFM_F32, DFM_BF16, DFM_U8, DFM_I64};
    for (size_t d = 0; d < sizeof dts / sizeof dts[0]; d++) {
        dfm_dtype dt = dts[d];
        static const int64_t tr[][2] = {{1, 1}, {1, 37}, {37, 1}, {32, 32}, {33, 65}, {70, 31}, {1000, 3}, {257, 513}};
        for (size_t i = 0; i < sizeof tr / sizeof tr[0]; i++) {
            char what[96];
            snprintf(what, sizeof what, "transpose2d [%lld,%lld] %s", (long long)tr[i][0], (long long)tr[i][1],
                     dfm_dtype_name(dt));
            pair x, y;
            int rc = pair_rand(&x, dt, SHAPE(tr[i][0], tr[i][1]));
            if (!rc) rc = pair_rand(&y, dt, SHAPE(tr[i][1], tr[i][0]));
            CHECK_EQ(rc, 0);
            if (rc) return;
            if (both_ran(what, dfm_op_transpose2d(&x.c, &y.c), dfm_op_transpose2d(&x.g, &y.g))) agree(what, &y.c, &y.g, 0);
            pair_free(&x);
            pair_free(&y);
        }
        static const int64_t up[][4] = {{1, 1, 1, 1}, {3, 2, 5, 7}, {2, 1, 16, 1}, {1, 3, 1, 9}, {4, 2, 33, 17}};
        for (size_t i = 0; i < sizeof up / sizeof up[0]; i++) {
            const int64_t *z = up[i];
            char what[96];
            snprintf(what, sizeof what, "upsample_nearest2x [%lld,%lld,%lld,%lld] %s", (long long)z[0], (long long)z[1],
                     (long long)z[2], (long long)z[3], dfm_dtype_name(dt));
            pair x, y;
            int rc = pair_rand(&x, dt, SHAPE(z[0], z[1], z[2], z[3]));
            if (!rc) rc = pair_rand(&y, dt, SHAPE(z[0], z[1], 2 * z[2], 2 * z[3]));
            CHECK_EQ(rc, 0);
            if (rc) return;
            if (both_ran(what, dfm_op_upsample_nearest2x(&x.c, &y.c), dfm_op_upsample_nearest2x(&x.g, &y.g)))
                agree(what, &y.c, &y.g, 0);
            pair_free(&x);
            pair_free(&y);
        }
        /* concat along every dimension of [C, T, H, W], including an empty side */
        static const int64_t base[4] = {3, 2, 5, 7};
        for (int dim = 0; dim < 4; dim++)
            for (int64_t extra = 0; extra < 3; extra++) {
                int64_t sa[4], sb[4], sy[4];
                memcpy(sa, base, sizeof sa);
                memcpy(sb, base, sizeof sb);
                sb[dim] = extra;
                memcpy(sy, base, sizeof sy);
                sy[dim] = base[dim] + extra;
                char what[96];
                snprintf(what, sizeof what, "concat dim %d (+%lld) %s", dim, (long long)extra, dfm_dtype_name(dt));
                pair a, b, y;
                int rc = pair_rand(&a, dt, 4, sa);
                if (!rc) rc = pair_rand(&b, dt, 4, sb);
                if (!rc) rc = pair_rand(&y, dt, 4, sy);
                CHECK_EQ(rc, 0);
                if (rc) return;
                if (both_ran(what, dfm_op_concat(&a.c, &b.c, dim, &y.c), dfm_op_concat(&a.g, &b.g, dim, &y.g)))
                    agree(what, &y.c, &y.g, 0);
                pair_free(&a);
                pair_free(&b);
                pair_free(&y);
            }
        /* frames [t0, t0 + n) of [C, T, H, W] */
        {
            pair x, y;
            int rc = pair_rand(&x, dt, SHAPE(3, 9, 4, 5));
            if (!rc) rc = pair_rand(&y, dt, SHAPE(3, 4, 4, 5));
            CHECK_EQ(rc, 0);
            if (rc) return;
            char what[64];
            snprintf(what, sizeof what, "frames 2..6 of 9 %s", dfm_dtype_name(dt));
            if (both_ran(what, dfm_op_frames(&x.c, 2, 4, &y.c), dfm_op_frames(&x.g, 2, 4, &y.g))) agree(what, &y.c, &y.g, 0);
            pair_free(&x);
            pair_free(&y);
        }
    }
}

/* ---- dtype conversion ---------------------------------------------------------------------- */

TEST(backend_convert)
{
    if (no_gpu()) return;
    /* random values at many scales, the specials, every f16 value, and exact halfway cases */
    enum { NR = 20000, NF16 = 65536 };
    static const uint32_t special[] = {
        0x00000000u, 0x80000000u, 0x7f800000u, 0xff800000u, 0x7fc00000u, 0xffc00001u, 0x7f800001u, 0x7fbfffffu,
        0x00000001u, 0x807fffffu, 0x00800000u, 0x477fe000u, 0x477fefffu, 0x477ff000u, 0x47800000u, 0x33000000u,
        0x33000001u, 0x33800000u, 0x387fc000u, 0x38800000u, 0x3f808000u, 0x3f818000u, 0x3f800800u, 0x3f801800u,
        0x7f7fffffu, 0xff7fffffu};
    int64_t n = NR + NF16 + (int64_t)(sizeof special / sizeof special[0]);
    dfm_tensor src;
    CHECK_EQ(dfm_tensor_alloc(&src, DFM_F32, DFM_CPU, 1, &n), 0);
    float *f = src.data;
    for (int i = 0; i < NR; i++) f[i] = urand() * ldexpf(1.0f, (int)(rnd64() % 80) - 40);
    for (int i = 0; i < NF16; i++) f[NR + i] = dfm_f16_to_f32((uint16_t)i);
    for (size_t i = 0; i < sizeof special / sizeof special[0]; i++) memcpy(&f[NR + NF16 + i], &special[i], 4);

    static const dfm_dtype fl[] = {DFM_F32, DFM_BF16, DFM_F16};
    for (int s = 0; s < 3; s++) {
        /* the source in dtype fl[s], made on the CPU */
        dfm_tensor sc, sg;
        CHECK_EQ(dfm_tensor_alloc(&sc, fl[s], DFM_CPU, 1, &n), 0);
        CHECK_EQ(dfm_tensor_convert(&sc, &src), 0);
        CHECK_EQ(dfm_tensor_copy(&sg, &sc, DFM_CUDA), 0);
        for (int d = 0; d < 3; d++) {
            dfm_tensor dc, dg;
            CHECK_EQ(dfm_tensor_alloc(&dc, fl[d], DFM_CPU, 1, &n), 0);
            CHECK_EQ(dfm_tensor_alloc(&dg, fl[d], DFM_CUDA, 1, &n), 0);
            char what[64];
            snprintf(what, sizeof what, "convert %s -> %s", dfm_dtype_name(fl[s]), dfm_dtype_name(fl[d]));
            if (both_ran(what, dfm_tensor_convert(&dc, &sc), dfm_tensor_convert(&dg, &sg))) agree(what, &dc, &dg, 0);
            dfm_tensor_free(&dc);
            dfm_tensor_free(&dg);
        }
        dfm_tensor_free(&sc);
        dfm_tensor_free(&sg);
    }
    dfm_tensor_free(&src);

    /* u8 -> f32 */
    pair u;
    int64_t nu = 1000;
    CHECK_EQ(pair_rand(&u, DFM_U8, 1, &nu), 0);
    dfm_tensor dc, dg;
    CHECK_EQ(dfm_tensor_alloc(&dc, DFM_F32, DFM_CPU, 1, &nu), 0);
    CHECK_EQ(dfm_tensor_alloc(&dg, DFM_F32, DFM_CUDA, 1, &nu), 0);
    if (both_ran("convert U8 -> F32", dfm_tensor_convert(&dc, &u.c), dfm_tensor_convert(&dg, &u.g)))
        agree("convert U8 -> F32", &dc, &dg, 0);
    dfm_tensor_free(&dc);
    dfm_tensor_free(&dg);
    pair_free(&u);
}
#endif
