/* test_gpu_big.c — CUDA against the CPU where the small tests cannot reach: the loop paths of
 * grid-stride and grid-capped kernels (more than 2^31 elements, more than 65,535 blocks along grid
 * y, more than 2^20 rows), and production shapes (the Wan VAE's convs at 480x832, attention at the
 * Wan 1.3B transformer's 32,760 tokens x 12 heads x 128, UMT5-XXL's width at 512 tokens).
 *
 * Every gpu_big_* test returns at once, printing a skip line, unless DFM_GPU_BIG=1 (a GPU machine:
 * scripts/gpu-check.sh sets it); then it needs a usable device (tensor_util.h dfm_test_cuda_skip),
 * and the biggest check GPU and host memory first (too little: a skip line with the numbers).
 * Tolerances: bit for bit where the CUDA twin rounds as the CPU does (add, affine, clamp, mul, the
 * channel RMS norm, dtype conversion, data movement, the non-finite scan); GEMM-shaped results
 * within 1e-4 of the reference's largest magnitude (f32 sums of up to 65k terms in another order);
 * ops through a libm function (silu's exp, gelu_new's tanh) within 1e-5; the last-dimension RMS
 * norm within 1e-6 (its double sum in another order). Each comparison prints its measured error.
 *
 * Not here: the attention_bias copy past 2^31 bytes (attention_bias.cu's owner tests it); small
 * shapes (test_backend_ops.c).
 */
#include "test.h"
#include "tensor_util.h"

#ifdef DFM_HAVE_CUDA
#include "base/dtype.h"
#include "base/error.h"
#include "cuda/device.h"
#include "tensor/finite.h"
#include "tensor/ops.h"
#include "tensor/tensor.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#define TOL_GEMM 1e-4
#define TOL_LIBM 1e-5
#define TOL_RMS 1e-6
#define GIB (1024.0 * 1024.0 * 1024.0)

/* ---- helpers ------------------------------------------------------------------------------- */

/* 1 when the big checks run here (DFM_GPU_BIG=1 and a usable device), else 0 after a skip line
 * (or a failure recorded by dfm_test_cuda_skip). */
static int big(void)
{
    const char *e = getenv("DFM_GPU_BIG");
    if (!e || strcmp(e, "1") != 0) {
        fprintf(stderr, "  (DFM_GPU_BIG=1 not set; skipped)\n");
        return 0;
    }
    return !dfm_test_cuda_skip();
}

/* MemAvailable of /proc/meminfo in bytes; 0 when unknown. */
static uint64_t host_avail(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[256];
    unsigned long long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) break;
    fclose(f);
    return (uint64_t)kb * 1024;
}

/* 1 when the device has `gpu` bytes free and the host `host` bytes available; else a skip line
 * with the numbers and 0. */
static int have_memory(const char *what, uint64_t gpu, uint64_t host)
{
    size_t fr = 0, tot = 0;
    if (dfm_cuda_mem_info(&fr, &tot) < 0) {
        fprintf(stderr, "  %s: cannot read the GPU's memory: %s\n", what, dfm_errmsg());
        dfm_test_failures++;
        return 0;
    }
    uint64_t ha = host_avail();
    if (fr < gpu || (ha && ha < host)) {
        fprintf(stderr, "  (%s needs %.1f GiB of GPU memory (%.1f free of %.1f) and %.1f GiB of host memory "
                        "(%.1f available); skipped)\n",
                what, gpu / GIB, fr / GIB, tot / GIB, host / GIB, ha / GIB);
        return 0;
    }
    return 1;
}

/* x[i] = lo + (hi - lo) * u, u in [0, 1) from a hash of (seed, i): the same on every run, and an
 * element read from a wrong index (an overflowed 32-bit offset) holds another value. */
static void fill(float *x, int64_t n, uint64_t seed, float lo, float hi)
{
    for (int64_t i = 0; i < n; i++) {
        uint64_t h = ((uint64_t)i + seed * 0x632BE59BD9B4E019ull) * 0x9E3779B97F4A7C15ull;
        h ^= h >> 29;
        h *= 0xBF58476D1CE4E5B9ull;
        h ^= h >> 32;
        x[i] = lo + (hi - lo) * ((float)(h >> 40) * (1.0f / 16777216.0f));
    }
}

/* A new F32 CPU tensor filled by fill(); data NULL (and a failure recorded) when out of memory. */
static dfm_tensor host_rand(int ndim, const int64_t *shape, uint64_t seed, float lo, float hi)
{
    dfm_tensor t;
    if (dfm_tensor_alloc(&t, DFM_F32, DFM_CPU, ndim, shape) < 0) {
        fprintf(stderr, "  host tensor: %s\n", dfm_errmsg());
        dfm_test_failures++;
        memset(&t, 0, sizeof t);
        return t;
    }
    fill(t.data, dfm_tensor_numel(&t), seed, lo, hi);
    return t;
}

/* *g = a copy of h on the device; 0, or a failure recorded. */
static int up(dfm_tensor *g, const dfm_tensor *h)
{
    memset(g, 0, sizeof *g);
    if (!h->data) return -1;
    int rc = dfm_tensor_copy(g, h, DFM_CUDA);
    if (rc < 0) {
        fprintf(stderr, "  copy to the GPU: %s\n", dfm_errmsg());
        dfm_test_failures++;
    }
    return rc;
}

/* An op's return code on one side: 1 when 0, else the message and a failure. */
static int ran(const char *what, const char *side, int rc)
{
    if (rc == 0) return 1;
    fprintf(stderr, "  %s on the %s: %s\n", what, side, dfm_errmsg());
    dfm_test_failures++;
    return 0;
}

/* The device result `dev` against the CPU's `ref`, with the measured error printed either way:
 * rtol 0 bit for bit (any dtype), else F32 within rtol * max|ref| (NaN only where ref has NaN).
 * A disagreement is a test failure. */
static void agree(const char *what, const dfm_tensor *ref, const dfm_tensor *dev, double rtol)
{
    dfm_tensor got;
    if (dfm_tensor_copy(&got, dev, DFM_CPU) < 0) {
        fprintf(stderr, "  %s: copy back from the GPU: %s\n", what, dfm_errmsg());
        dfm_test_failures++;
        return;
    }
    int64_t n = dfm_tensor_numel(ref);
    size_t es = dfm_dtype_size(ref->dtype), nb = dfm_tensor_nbytes(ref);
    int ok;
    if (nb != dfm_tensor_nbytes(&got)) {
        ok = 0;
        fprintf(stderr, "  %s: %zu bytes from the GPU, %zu from the CPU\n", what, dfm_tensor_nbytes(&got), nb);
    } else if (rtol == 0) {
        ok = memcmp(ref->data, got.data, nb) == 0;
        if (ok) {
            fprintf(stderr, "  %s: bit for bit (%lld elements)\n", what, (long long)n);
        } else {
            int64_t i = 0, bad = 0, first = -1;
            for (i = 0; i < n; i++)
                if (memcmp((const char *)ref->data + i * es, (const char *)got.data + i * es, es)) {
                    if (first < 0) first = i;
                    bad++;
                }
            fprintf(stderr, "  %s: %lld of %lld elements differ, the first at %lld\n", what, (long long)bad,
                    (long long)n, (long long)first);
        }
    } else {
        const float *a = ref->data, *b = got.data;
        double mx = 0, err = 0;
        int64_t at = -1;
        for (int64_t i = 0; i < n; i++) {
            double m = fabs((double)a[i]);
            if (m > mx) mx = m;
            double d = isnan(a[i]) && isnan(b[i]) ? 0 : fabs((double)a[i] - b[i]);
            if (!(d <= err)) err = d, at = i; /* NaN on one side only counts as huge */
        }
        ok = err <= rtol * (mx > 0 ? mx : 1);
        fprintf(stderr, "  %s: max |diff| %.3g (at %lld), max |ref| %.3g, tolerance %.0e relative%s\n", what, err,
                (long long)at, mx, rtol, ok ? "" : ": FAILED");
    }
    if (!ok) dfm_test_failures++;
    dfm_tensor_free(&got);
}

static void free_all(dfm_tensor *t, int n)
{
    for (int i = 0; i < n; i++) dfm_tensor_free(&t[i]);
}

#define SHAPE(...) (sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), ((const int64_t[]){__VA_ARGS__})

/* ---- loop paths: more than 2^31 elements ---------------------------------------------------- */

/* Grid-stride kernels over 2^31 + 2^20 + 6 elements (indices past 2^31, each thread several
 * iterations): affine, add, clamp, silu, the channel RMS norm as [2, n/2] (positions past the
 * grid's threads), f32 -> bf16, and the non-finite scan with its first hit past 2^31. */
TEST(gpu_big_eltwise_past_2g)
{
    if (!big()) return;
    const int64_t n = ((int64_t)1 << 31) + ((int64_t)1 << 20) + 6;
    const uint64_t b = (uint64_t)n * 4;
    /* device: x and y (f32; the bf16 result inside y); host: x, the CPU result, the copy back */
    if (!have_memory("elementwise ops over 2^31 + 2^20 elements", 2 * b + ((uint64_t)1 << 30),
                     3 * b + ((uint64_t)2 << 30)))
        return;
    dfm_tensor t[4] = {0}; /* xc, yc, xg, yg */
    dfm_tensor *xc = &t[0], *yc = &t[1], *xg = &t[2], *yg = &t[3];
    *xc = host_rand(1, &n, 1, -8.0f, 8.0f);
    if (up(xg, xc) < 0 || dfm_tensor_alloc(yc, DFM_F32, DFM_CPU, 1, &n) < 0 ||
        dfm_tensor_alloc(yg, DFM_F32, DFM_CUDA, 1, &n) < 0) {
        fprintf(stderr, "  setup: %s\n", dfm_errmsg());
        dfm_test_failures++;
        free_all(t, 4);
        return;
    }
    if (ran("affine", "CPU", dfm_op_affine(xc, 0.75f, 0.25f, yc)) && ran("affine", "GPU", dfm_op_affine(xg, 0.75f, 0.25f, yg)))
        agree("affine", yc, yg, 0);
    if (ran("add", "CPU", dfm_op_add(xc, yc, yc)) && ran("add", "GPU", dfm_op_add(xg, yg, yg)))
        agree("add (x + affine(x))", yc, yg, 0);
    if (ran("clamp", "CPU", dfm_op_clamp(xc, -2.0f, 3.0f, yc)) && ran("clamp", "GPU", dfm_op_clamp(xg, -2.0f, 3.0f, yg)))
        agree("clamp", yc, yg, 0);
    if (ran("silu", "CPU", dfm_op_silu(xc, yc)) && ran("silu", "GPU", dfm_op_silu(xg, yg)))
        agree("silu", yc, yg, TOL_LIBM);
    {
        float gv[2] = {0.5f, 1.5f}, bv[2] = {-0.25f, 0.125f};
        dfm_tensor g = dfm_tensor_view(gv, DFM_F32, DFM_CPU, SHAPE(2)), bi = dfm_tensor_view(bv, DFM_F32, DFM_CPU, SHAPE(2));
        dfm_tensor gg, bg;
        if (up(&gg, &g) == 0 && up(&bg, &bi) == 0) {
            dfm_tensor x2c = dfm_tensor_view(xc->data, DFM_F32, DFM_CPU, SHAPE(2, n / 2));
            dfm_tensor y2c = dfm_tensor_view(yc->data, DFM_F32, DFM_CPU, SHAPE(2, n / 2));
            dfm_tensor x2g = dfm_tensor_view(xg->data, DFM_F32, DFM_CUDA, SHAPE(2, n / 2));
            dfm_tensor y2g = dfm_tensor_view(yg->data, DFM_F32, DFM_CUDA, SHAPE(2, n / 2));
            if (ran("rms_norm_channels", "CPU", dfm_op_rms_norm_channels(&x2c, &g, &bi, &y2c)) &&
                ran("rms_norm_channels", "GPU", dfm_op_rms_norm_channels(&x2g, &gg, &bg, &y2g)))
                agree("rms_norm_channels [2, n/2]", &y2c, &y2g, 0);
        }
        dfm_tensor_free(&gg), dfm_tensor_free(&bg);
    }
    {
        dfm_tensor hc = dfm_tensor_view(yc->data, DFM_BF16, DFM_CPU, 1, &n);
        dfm_tensor hg = dfm_tensor_view(yg->data, DFM_BF16, DFM_CUDA, 1, &n);
        if (ran("convert", "CPU", dfm_tensor_convert(&hc, xc)) && ran("convert", "GPU", dfm_tensor_convert(&hg, xg)))
            agree("f32 -> bf16", &hc, &hg, 0);
    }
    {
        /* +Inf at 2^31 + 5 and NaN at n - 3, written on both sides */
        const int64_t at[2] = {((int64_t)1 << 31) + 5, n - 3};
        const float val[2] = {INFINITY, NAN};
        int ok = 1;
        for (int i = 0; i < 2; i++) {
            ((float *)xc->data)[at[i]] = val[i];
            const char *why = NULL;
            if (dfm_cuda_memcpy((float *)xg->data + at[i], &val[i], sizeof(float), 0, &why) < 0) {
                fprintf(stderr, "  nonfinite setup: %s\n", why);
                ok = 0;
            }
        }
        dfm_nonfinite rc_ = {0}, rg = {0};
        if (ok && ran("nonfinite", "CPU", dfm_tensor_nonfinite(xc, &rc_)) && ran("nonfinite", "GPU", dfm_tensor_nonfinite(xg, &rg))) {
            CHECK_EQ(rc_.count, 2);
            CHECK_EQ(rg.count, rc_.count);
            CHECK_EQ(rc_.first, at[0]);
            CHECK_EQ(rg.first, rc_.first);
            fprintf(stderr, "  nonfinite: %lld found, the first at %lld on both\n", (long long)rg.count, (long long)rg.first);
        } else if (!ok) {
            dfm_test_failures++;
        }
    }
    free_all(t, 4);
}

/* ---- loop paths: grid limits --------------------------------------------------------------- */

/* Kernels whose grid y (65,535 at most) or grid x (2^20 rows) is capped and then looped:
 * transpose2d with more than 65,535 row tiles of 32, conv3d's im2col with more than 65,535 taps
 * (f32 and bf16 columns), the last-dimension RMS norm and attention's row softmax over more than
 * 2^20 rows. */
TEST(gpu_big_grid_limits)
{
    if (!big()) return;
    char what[128];
    { /* transpose: 2,100,003 rows = 65,626 row tiles */
        dfm_tensor t[4] = {0};
        t[0] = host_rand(SHAPE(2100003, 37), 2, -1.0f, 1.0f);
        if (up(&t[2], &t[0]) == 0 && dfm_tensor_alloc(&t[1], DFM_F32, DFM_CPU, SHAPE(37, 2100003)) == 0 &&
            dfm_tensor_alloc(&t[3], DFM_F32, DFM_CUDA, SHAPE(37, 2100003)) == 0 &&
            ran("transpose2d", "CPU", dfm_op_transpose2d(&t[0], &t[1])) &&
            ran("transpose2d", "GPU", dfm_op_transpose2d(&t[2], &t[3])))
            agree("transpose2d [2100003, 37]", &t[1], &t[3], 0);
        free_all(t, 4);
    }
    for (int bf = 0; bf < 2; bf++) { /* conv3d: Cin 2432 x 3x3x3 = 65,664 taps */
        dfm_tensor t[8] = {0}; /* x, w, b, y on the CPU, then on the GPU */
        t[0] = host_rand(SHAPE(2432, 3, 5, 6), 3, -1.0f, 1.0f);
        t[1] = host_rand(SHAPE(8, 2432, 3, 3, 3), 4, -0.01f, 0.01f);
        t[2] = host_rand(SHAPE(8), 5, -1.0f, 1.0f);
        const int stride[3] = {1, 1, 1}, pad[6] = {2, 0, 1, 1, 1, 1};
        dfm_compute cc = {bf ? DFM_BF16 : DFM_F32, NULL};
        snprintf(what, sizeof what, "conv3d 2432 -> 8 channels 3x3x3 (65,664 taps, %s)", bf ? "bf16" : "f32");
        if (up(&t[4], &t[0]) == 0 && up(&t[5], &t[1]) == 0 && up(&t[6], &t[2]) == 0 &&
            dfm_tensor_alloc(&t[3], DFM_F32, DFM_CPU, SHAPE(8, 3, 5, 6)) == 0 &&
            dfm_tensor_alloc(&t[7], DFM_F32, DFM_CUDA, SHAPE(8, 3, 5, 6)) == 0 &&
            ran(what, "CPU", dfm_op_conv3d(&cc, &t[0], &t[1], &t[2], &t[3], stride, pad)) &&
            ran(what, "GPU", dfm_op_conv3d(&cc, &t[4], &t[5], &t[6], &t[7], stride, pad)))
            agree(what, &t[3], &t[7], TOL_GEMM);
        free_all(t, 8);
    }
    { /* rms_norm: 1,100,000 rows */
        dfm_tensor t[6] = {0}; /* x, w, y; on the GPU */
        t[0] = host_rand(SHAPE(1100000, 24), 6, -3.0f, 3.0f);
        t[1] = host_rand(SHAPE(24), 7, 0.5f, 1.5f);
        if (up(&t[3], &t[0]) == 0 && up(&t[4], &t[1]) == 0 &&
            dfm_tensor_alloc(&t[2], DFM_F32, DFM_CPU, SHAPE(1100000, 24)) == 0 &&
            dfm_tensor_alloc(&t[5], DFM_F32, DFM_CUDA, SHAPE(1100000, 24)) == 0 &&
            ran("rms_norm", "CPU", dfm_op_rms_norm(&t[0], &t[1], 1e-6f, &t[2])) &&
            ran("rms_norm", "GPU", dfm_op_rms_norm(&t[3], &t[4], 1e-6f, &t[5])))
            agree("rms_norm [1100000, 24]", &t[2], &t[5], TOL_RMS);
        free_all(t, 6);
    }
    { /* attention: 1,200,000 query rows of 4 keys in one block: the softmax loops over its grid */
        dfm_tensor t[8] = {0}; /* q, k, v, out; on the GPU */
        t[0] = host_rand(SHAPE(1, 1200000, 8), 8, -2.0f, 2.0f);
        t[1] = host_rand(SHAPE(1, 4, 8), 9, -2.0f, 2.0f);
        t[2] = host_rand(SHAPE(1, 4, 8), 10, -1.0f, 1.0f);
        if (up(&t[4], &t[0]) == 0 && up(&t[5], &t[1]) == 0 && up(&t[6], &t[2]) == 0 &&
            dfm_tensor_alloc(&t[3], DFM_F32, DFM_CPU, SHAPE(1, 1200000, 8)) == 0 &&
            dfm_tensor_alloc(&t[7], DFM_F32, DFM_CUDA, SHAPE(1, 1200000, 8)) == 0 &&
            ran("attention", "CPU", dfm_op_attention(&t[0], &t[1], &t[2], 0.35f, &t[3])) &&
            ran("attention", "GPU", dfm_op_attention(&t[4], &t[5], &t[6], 0.35f, &t[7])))
            agree("attention 1,200,000 queries x 4 keys", &t[3], &t[7], TOL_GEMM);
        free_all(t, 8);
    }
}

/* ---- production shapes ---------------------------------------------------------------------- */

/* The Wan 2.1 VAE at 480x832, one frame chunk each (the CPU reference is the slow side):
 * a full-resolution residual conv (96 -> 96, 3x3x3) on the first chunk (1 frame, causal front
 * padding 2), f32; the encoder's conv_in (3 -> 96) on a 4-frame chunk behind its 2 cached frames,
 * bf16 compute; then the channel RMS norm and silu on the first conv's output. */
TEST(gpu_big_vae_conv_480x832)
{
    if (!big()) return;
    const int stride[3] = {1, 1, 1};
    dfm_tensor t[8] = {0}; /* x, w, b, y; on the GPU */
    { /* 96 -> 96 on [96, 1, 480, 832], pad {2, 0, 1, 1, 1, 1} */
        const int pad[6] = {2, 0, 1, 1, 1, 1};
        t[0] = host_rand(SHAPE(96, 1, 480, 832), 11, -1.0f, 1.0f);
        t[1] = host_rand(SHAPE(96, 96, 3, 3, 3), 12, -0.02f, 0.02f);
        t[2] = host_rand(SHAPE(96), 13, -0.1f, 0.1f);
        const char *what = "conv3d 96 -> 96 3x3x3 on [96, 1, 480, 832] (f32)";
        if (up(&t[4], &t[0]) == 0 && up(&t[5], &t[1]) == 0 && up(&t[6], &t[2]) == 0 &&
            dfm_tensor_alloc(&t[3], DFM_F32, DFM_CPU, SHAPE(96, 1, 480, 832)) == 0 &&
            dfm_tensor_alloc(&t[7], DFM_F32, DFM_CUDA, SHAPE(96, 1, 480, 832)) == 0 &&
            ran(what, "CPU", dfm_op_conv3d(NULL, &t[0], &t[1], &t[2], &t[3], stride, pad)) &&
            ran(what, "GPU", dfm_op_conv3d(NULL, &t[4], &t[5], &t[6], &t[7], stride, pad))) {
            agree(what, &t[3], &t[7], TOL_GEMM);
            /* the norm and silu that follow, on the same (CPU) values on both sides */
            dfm_tensor gam = host_rand(SHAPE(96), 14, 0.5f, 1.5f), gg, yg;
            if (up(&gg, &gam) == 0 && up(&yg, &t[3]) == 0) {
                dfm_tensor_free(&t[7]);
                if (ran("rms_norm_channels", "CPU", dfm_op_rms_norm_channels(&t[3], &gam, NULL, &t[0])) &&
                    ran("rms_norm_channels", "GPU", dfm_op_rms_norm_channels(&yg, &gg, NULL, &t[4])))
                    agree("rms_norm_channels on [96, 1, 480, 832]", &t[0], &t[4], 0);
                if (ran("silu", "CPU", dfm_op_silu(&t[0], &t[3])) && ran("silu", "GPU", dfm_op_silu(&t[4], &yg)))
                    agree("silu on [96, 1, 480, 832]", &t[3], &yg, TOL_LIBM);
            }
            dfm_tensor_free(&gam), dfm_tensor_free(&gg), dfm_tensor_free(&yg);
        }
        free_all(t, 8);
    }
    { /* conv_in 3 -> 96 on [3, 2 + 4, 480, 832], pad {0, 0, 1, 1, 1, 1}, bf16 weights and compute */
        const int pad[6] = {0, 0, 1, 1, 1, 1};
        const dfm_compute bf = {DFM_BF16, NULL};
        t[0] = host_rand(SHAPE(3, 6, 480, 832), 15, -1.0f, 1.0f);
        dfm_tensor w32 = host_rand(SHAPE(96, 3, 3, 3, 3), 16, -0.2f, 0.2f);
        if (w32.data && dfm_tensor_alloc(&t[1], DFM_BF16, DFM_CPU, SHAPE(96, 3, 3, 3, 3)) == 0)
            CHECK_EQ(dfm_tensor_convert(&t[1], &w32), 0);
        dfm_tensor_free(&w32);
        t[2] = host_rand(SHAPE(96), 17, -0.1f, 0.1f);
        const char *what = "conv3d 3 -> 96 3x3x3 on [3, 6, 480, 832] (bf16)";
        if (up(&t[4], &t[0]) == 0 && up(&t[5], &t[1]) == 0 && up(&t[6], &t[2]) == 0 &&
            dfm_tensor_alloc(&t[3], DFM_F32, DFM_CPU, SHAPE(96, 4, 480, 832)) == 0 &&
            dfm_tensor_alloc(&t[7], DFM_F32, DFM_CUDA, SHAPE(96, 4, 480, 832)) == 0 &&
            ran(what, "CPU", dfm_op_conv3d(&bf, &t[0], &t[1], &t[2], &t[3], stride, pad)) &&
            ran(what, "GPU", dfm_op_conv3d(&bf, &t[4], &t[5], &t[6], &t[7], stride, pad)))
            agree(what, &t[3], &t[7], TOL_GEMM);
        free_all(t, 8);
    }
}

/* Attention at the Wan 1.3B transformer's shape: 12 heads x 32,760 tokens (81 frames at 480x832)
 * x 128. The whole op runs on the GPU; 288 query rows (block edges, the last rows, and spread
 * ones) are computed on the CPU in double from the same f32 inputs. */
TEST(gpu_big_attention_32760)
{
    if (!big()) return;
    const int64_t H = 12, S = 32760, D = 128;
    const float scale = 1.0f / sqrtf((float)D);
    dfm_tensor t[4] = {0}; /* q, k, v on the CPU; out on the GPU */
    dfm_tensor g[3] = {0};
    t[0] = host_rand(SHAPE(H, S, D), 21, -3.0f, 3.0f);
    t[1] = host_rand(SHAPE(H, S, D), 22, -3.0f, 3.0f);
    t[2] = host_rand(SHAPE(H, S, D), 23, -1.0f, 1.0f);
    if (up(&g[0], &t[0]) || up(&g[1], &t[1]) || up(&g[2], &t[2]) ||
        dfm_tensor_alloc(&t[3], DFM_F32, DFM_CUDA, SHAPE(H, S, D)) < 0 ||
        !ran("attention", "GPU", dfm_op_attention(&g[0], &g[1], &g[2], scale, &t[3]))) {
        free_all(t, 4), free_all(g, 3);
        return;
    }
    dfm_tensor out;
    if (dfm_tensor_copy(&out, &t[3], DFM_CPU) < 0) {
        fprintf(stderr, "  copy back: %s\n", dfm_errmsg());
        dfm_test_failures++;
        free_all(t, 4), free_all(g, 3);
        return;
    }
    const float *q = t[0].data, *k = t[1].data, *v = t[2].data, *o = out.data;
    static const int64_t edge[] = {0, 1, 2047, 2048, 2049, 4095, 4096, 16383, 16384, 32757, 32758, 32759};
    const int nedge = (int)(sizeof edge / sizeof edge[0]), nrows = 288;
    double *s = malloc((size_t)S * sizeof(double)), err = 0, vmax = 0;
    for (int64_t i = 0; i < H * S * D; i++)
        if (fabs(v[i]) > vmax) vmax = fabs(v[i]);
    for (int r = 0; r < nrows && s; r++) {
        int64_t h = r % H, i = r < nedge * 2 ? edge[r % nedge] : (int64_t)(((uint64_t)r * 2654435761u) % (uint64_t)S);
        const float *qi = q + (h * S + i) * D;
        double m = -INFINITY, sum = 0;
        for (int64_t j = 0; j < S; j++) {
            const float *kj = k + (h * S + j) * D;
            double d = 0;
            for (int64_t c = 0; c < D; c++) d += (double)qi[c] * kj[c];
            s[j] = d * scale;
            if (s[j] > m) m = s[j];
        }
        for (int64_t j = 0; j < S; j++) sum += s[j] = exp(s[j] - m);
        for (int64_t c = 0; c < D; c++) {
            double acc = 0;
            for (int64_t j = 0; j < S; j++) acc += s[j] * v[(h * S + j) * D + c];
            double d = fabs(acc / sum - o[(h * S + i) * D + c]);
            if (!(d <= err)) err = d;
        }
    }
    int ok = s && err <= TOL_GEMM * vmax;
    fprintf(stderr, "  attention [12, 32760, 128]: %d query rows against double: max |diff| %.3g, max |v| %.3g, "
                    "tolerance %.0e relative%s\n", nrows, err, vmax, TOL_GEMM, ok ? "" : ": FAILED");
    if (!ok) dfm_test_failures++;
    free(s);
    dfm_tensor_free(&out);
    free_all(t, 4), free_all(g, 3);
}

/* UMT5-XXL's width at 512 tokens (d_model 4096, d_ff 10240): the layer norm, the gated MLP's two
 * input projections (one packed weight pair), gelu_new, the gate product and the output
 * projection, each against the CPU on the same inputs; the projections with F32 weights (exact
 * f32) and with BF16 weights under a bf16 context. */
TEST(gpu_big_umt5_xxl_width)
{
    if (!big()) return;
    const int64_t m = 512, d = 4096, ff = 10240;
    dfm_tensor x = host_rand(SHAPE(m, d), 31, -2.0f, 2.0f), nw = host_rand(SHAPE(d), 32, 0.5f, 1.5f);
    dfm_tensor wi0 = host_rand(SHAPE(ff, d), 33, -0.03f, 0.03f), wi1 = host_rand(SHAPE(ff, d), 34, -0.03f, 0.03f);
    dfm_tensor wo = host_rand(SHAPE(d, ff), 35, -0.02f, 0.02f);
    dfm_tensor c[5] = {0}, g[5] = {0}; /* xn, y0, y1, h, out on the CPU / the GPU */
    dfm_tensor xg = {0}, nwg = {0};
    if (!x.data || !nw.data || !wi0.data || !wi1.data || !wo.data || up(&xg, &x) || up(&nwg, &nw)) goto done;
    const int64_t *shp[5] = {(const int64_t[]){m, d}, (const int64_t[]){m, ff}, (const int64_t[]){m, ff},
                             (const int64_t[]){m, ff}, (const int64_t[]){m, d}};
    for (int i = 0; i < 5; i++)
        if (dfm_tensor_alloc(&c[i], DFM_F32, DFM_CPU, 2, shp[i]) < 0 || dfm_tensor_alloc(&g[i], DFM_F32, DFM_CUDA, 2, shp[i]) < 0) {
            fprintf(stderr, "  setup: %s\n", dfm_errmsg());
            dfm_test_failures++;
            goto done;
        }
    if (ran("rms_norm", "CPU", dfm_op_rms_norm(&x, &nw, 1e-6f, &c[0])) && ran("rms_norm", "GPU", dfm_op_rms_norm(&xg, &nwg, 1e-6f, &g[0])))
        agree("rms_norm [512, 4096]", &c[0], &g[0], TOL_RMS);
    for (int bf = 0; bf < 2; bf++) {
        const dfm_compute cc = {bf ? DFM_BF16 : DFM_F32, NULL};
        const dfm_dtype wdt = bf ? DFM_BF16 : DFM_F32;
        const char *tag = bf ? "bf16" : "f32";
        char what[128];
        dfm_packed *pin_c = NULL, *pin_g = NULL, *po_c = NULL, *po_g = NULL;
        const dfm_tensor *win[2] = {&wi0, &wi1}, *wout[1] = {&wo};
        dfm_tensor xn = {0}, hg = {0};
        if (dfm_packed_create(&pin_c, win, 2, wdt, DFM_CPU) < 0 || dfm_packed_create(&pin_g, win, 2, wdt, DFM_CUDA) < 0 ||
            dfm_packed_create(&po_c, wout, 1, wdt, DFM_CPU) < 0 || dfm_packed_create(&po_g, wout, 1, wdt, DFM_CUDA) < 0 ||
            up(&xn, &c[0]) < 0) {
            fprintf(stderr, "  weights (%s): %s\n", tag, dfm_errmsg());
            dfm_test_failures++;
        } else {
            /* wi_0, wi_1 on the same normed input */
            dfm_tensor *yc[2] = {&c[1], &c[2]}, *yg[2] = {&g[1], &g[2]};
            snprintf(what, sizeof what, "linear [512, 4096] x 2 x [10240, 4096]^T (%s)", tag);
            if (ran(what, "CPU", dfm_op_linear(&cc, &c[0], pin_c, yc, 0)) && ran(what, "GPU", dfm_op_linear(&cc, &xn, pin_g, yg, 0))) {
                agree(what, &c[1], &g[1], TOL_GEMM);
                agree(what, &c[2], &g[2], TOL_GEMM);
            }
            /* gelu_new and the gate on the CPU's values */
            dfm_tensor y0g, y1g;
            if (up(&y0g, &c[1]) == 0 && up(&y1g, &c[2]) == 0) {
                if (ran("gelu_new", "CPU", dfm_op_gelu_new(&c[1], &c[3])) && ran("gelu_new", "GPU", dfm_op_gelu_new(&y0g, &g[3])))
                    agree("gelu_new [512, 10240]", &c[3], &g[3], TOL_RMS);
                if (up(&hg, &c[3]) == 0 && ran("mul", "CPU", dfm_op_mul(&c[3], &c[2], &c[3])) &&
                    ran("mul", "GPU", dfm_op_mul(&hg, &y1g, &hg)))
                    agree("mul [512, 10240]", &c[3], &hg, 0);
            }
            dfm_tensor_free(&y0g), dfm_tensor_free(&y1g);
            /* wo on the CPU's gated values */
            dfm_tensor *oc[1] = {&c[4]}, *og[1] = {&g[4]};
            dfm_tensor_free(&hg);
            snprintf(what, sizeof what, "linear [512, 10240] x [4096, 10240]^T (%s)", tag);
            if (up(&hg, &c[3]) == 0 && ran(what, "CPU", dfm_op_linear(&cc, &c[3], po_c, oc, 0)) &&
                ran(what, "GPU", dfm_op_linear(&cc, &hg, po_g, og, 0)))
                agree(what, &c[4], &g[4], TOL_GEMM);
        }
        dfm_packed_free(pin_c), dfm_packed_free(pin_g), dfm_packed_free(po_c), dfm_packed_free(po_g);
        dfm_tensor_free(&xn), dfm_tensor_free(&hg);
    }
done:
    dfm_tensor_free(&x), dfm_tensor_free(&nw), dfm_tensor_free(&wi0), dfm_tensor_free(&wi1), dfm_tensor_free(&wo);
    dfm_tensor_free(&xg), dfm_tensor_free(&nwg);
    free_all(c, 5), free_all(g, 5);
}

/* The Wan transformer at the 1.3B width (dim 1536, 12 heads x 128, ffn 8960, text dim 4096) with
 * one block of random weights (the released layout's names and shapes, blocks.1.. dropped),
 * LoRA rank 16 on the default targets: forward and backward on CUDA against the CPU at the
 * bench grid (5 x 16 x 24 patches = 1,920 tokens, 512 text rows), f32 and bf16 weights under a bf16
 * context: output, dL/dx, dL/dctx and every LoRA gradient within 2e-3 of max |ref| (f32: 1e-4 x
 * the sums' lengths in another order; bf16: both devices round the same GEMM inputs, their sums
 * differ). Then the real 480x832x81 grid (32,760 tokens) forward and backward on CUDA alone: finite. */
#include "io/safetensors.h"
#include "models/wan/transformer.h"
#include <cjson/cJSON.h>
#include <sys/stat.h>
#include <unistd.h>

static int write_wan_1block(const char *dir)
{
    char path[700];
    snprintf(path, sizeof path, "%s/wan_transformer_layout/layout.json", dfm_test_fixtures());
    dfm_buf b = {0};
    if (dfm_read_file(path, 0, &b)) return -1;
    cJSON *lay = cJSON_ParseWithLength((const char *)b.data, b.len);
    dfm_buf_free(&b);
    if (!lay) return -1;
    int n = 0;
    dfm_st_entry *e = calloc(900, sizeof *e);
    size_t pool_n = (size_t)9216 * 1536 + 64;
    float *pool = malloc(pool_n * sizeof(float));
    uint64_t st = 88172645463325252ull;
    for (size_t k = 0; k < pool_n; k++) {
        st ^= st << 13, st ^= st >> 7, st ^= st << 17;
        pool[k] = ((float)(st >> 40) * (1.0f / 16777216.0f) * 2.0f - 1.0f) * 0.044f;
    }
    cJSON *it;
    cJSON_ArrayForEach(it, lay)
    {
        if (!strncmp(it->string, "blocks.", 7) && strncmp(it->string, "blocks.0.", 9)) continue;
        const cJSON *sh = cJSON_GetObjectItem(it, "shape");
        e[n].name = it->string, e[n].dtype = DFM_F32, e[n].ndim = cJSON_GetArraySize(sh);
        for (int d = 0; d < e[n].ndim; d++) e[n].shape[d] = (int64_t)cJSON_GetArrayItem(sh, d)->valuedouble;
        e[n].data = pool + (n * 7919) % 64;
        n++;
    }
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", dir);
    int rc = mkdir(dir, 0755) ? -1 : dfm_st_write(path, e, n, NULL);
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = rc ? NULL : fopen(path, "w");
    if (f) {
        fprintf(f, "{\"_class_name\": \"WanTransformer3DModel\", \"patch_size\": [1, 2, 2], \"num_attention_heads\": 12, "
                   "\"attention_head_dim\": 128, \"in_channels\": 16, \"out_channels\": 16, \"text_dim\": 4096, "
                   "\"freq_dim\": 256, \"ffn_dim\": 8960, \"num_layers\": 1, \"cross_attn_norm\": true, "
                   "\"qk_norm\": \"rms_norm_across_heads\", \"eps\": 1e-06, \"rope_max_seq_len\": 1024}\n");
        rc = fclose(f);
    } else {
        rc = -1;
    }
    free(e), free(pool);
    cJSON_Delete(lay);
    return rc;
}

/* forward + backward of m (with LoRA) on inputs x, ctx (host), results back on the host */
static int wan_run(dfm_wan_transformer *m, dfm_device dev, const dfm_tensor *x, const dfm_tensor *ctx,
                   const dfm_tensor *dout, dfm_tensor out[3], float t)
{
    dfm_tensor xd = {0}, cd = {0}, dd = {0}, o = {0}, dx = {0}, dc = {0};
    int rc = dfm_tensor_copy(&xd, x, dev);
    if (!rc) rc = dfm_tensor_copy(&cd, ctx, dev);
    if (!rc) rc = dfm_tensor_copy(&dd, dout, dev);
    dfm_wan_acts *acts = NULL;
    if (!rc) rc = dfm_wan_transformer_forward(m, &xd, &t, &cd, &o, &acts, 1, 3);
    if (!rc) rc = dfm_wan_transformer_backward(m, acts, &dd, &dx, &dc);
    if (!rc) rc = dfm_tensor_copy(&out[0], &o, DFM_CPU);
    if (!rc) rc = dfm_tensor_copy(&out[1], &dx, DFM_CPU);
    if (!rc) rc = dfm_tensor_copy(&out[2], &dc, DFM_CPU);
    dfm_tensor_free(&xd), dfm_tensor_free(&cd), dfm_tensor_free(&dd), dfm_tensor_free(&o), dfm_tensor_free(&dx),
        dfm_tensor_free(&dc);
    return rc;
}

static double rel_host(const dfm_tensor *a, const dfm_tensor *b)
{
    double s = 0, e = 0;
    int64_t n = dfm_tensor_numel(b);
    const float *x = a->data, *y = b->data;
    for (int64_t i = 0; i < n; i++) s = fmax(s, fabs(y[i]));
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)x[i] - y[i]);
        e = d <= e ? e : isnan(d) ? INFINITY : d;
    }
    return e / (s > 0 ? s : 1);
}

TEST(gpu_big_wan_block_1_3b)
{
    if (!big()) return;
    char dir[600];
    snprintf(dir, sizeof dir, "%s/wan1536", dfm_test_tmpdir());
    CHECK_EQ(write_wan_1block(dir), 0);
    int64_t sx[5] = {1, 16, 5, 32, 48}, sc[3] = {1, 512, 4096};
    dfm_tensor x, ctx, dout;
    CHECK_EQ(dfm_tensor_alloc(&x, DFM_F32, DFM_CPU, 5, sx), 0);
    CHECK_EQ(dfm_tensor_alloc(&dout, DFM_F32, DFM_CPU, 5, sx), 0);
    CHECK_EQ(dfm_tensor_alloc(&ctx, DFM_F32, DFM_CPU, 3, sc), 0);
    for (int64_t i = 0; i < dfm_tensor_numel(&x); i++) ((float *)x.data)[i] = sinf(0.37f * i), ((float *)dout.data)[i] = cosf(0.11f * i);
    for (int64_t i = 0; i < dfm_tensor_numel(&ctx); i++) ((float *)ctx.data)[i] = i < 40 * 4096 ? 0.5f * sinf(0.013f * i) : 0.0f;
    dfm_dtype wdts[2] = {DFM_F32, DFM_BF16};
    for (int w = 0; w < 2; w++) {
        dfm_tensor res[2][3] = {{{0}}};
        double lora_err = 0;
        dfm_wan_transformer *m[2] = {NULL, NULL};
        for (int dv = 0; dv < 2; dv++) {
            dfm_wan_transformer_opts o = {.device = dv ? DFM_CUDA : DFM_CPU, .weights = wdts[w], .compute = DFM_BF16};
            int rc = dfm_wan_transformer_load(&m[dv], dir, &o);
            CHECK_EQ(rc, 0);
            if (rc) {
                fprintf(stderr, "  %s\n", dfm_errmsg());
                continue;
            }
            int count = 0;
            CHECK_EQ(dfm_wan_transformer_lora_add(m[dv], NULL, 16, 16.0f, 0.0f, 5, &count), 0);
            for (int k = 0; k < dfm_wan_transformer_nparams(m[dv]); k++) { /* B non-zero, the same on both */
                dfm_tensor *p;
                const char *nm = dfm_wan_transformer_param(m[dv], k, &p, NULL);
                if (!strstr(nm, "lora_B")) continue;
                dfm_tensor h;
                int64_t n = dfm_tensor_numel(p);
                CHECK_EQ(dfm_tensor_alloc(&h, DFM_F32, DFM_CPU, p->ndim, p->shape), 0);
                for (int64_t j = 0; j < n; j++) ((float *)h.data)[j] = 0.01f * (float)((j * 37 + k) % 11 - 5);
                if (p->device == DFM_CPU) memcpy(p->data, h.data, dfm_tensor_nbytes(&h));
                else CHECK_EQ(dfm_cuda_memcpy(p->data, h.data, dfm_tensor_nbytes(&h), 0, NULL), 0);
                dfm_tensor_free(&h);
            }
            CHECK_EQ(wan_run(m[dv], dv ? DFM_CUDA : DFM_CPU, &x, &ctx, &dout, res[dv], 617.0f), 0);
        }
        if (m[0] && m[1]) {
            const char *what[3] = {"out", "dx", "dctx"};
            for (int k = 0; k < 3; k++) {
                double e = rel_host(&res[1][k], &res[0][k]);
                fprintf(stderr, "  1.3B-width block, %s weights: %s %.2e of max|cpu|\n", dfm_dtype_name(wdts[w]), what[k], e);
                CHECK(e <= 2e-3);
            }
            for (int k = 0; k < dfm_wan_transformer_nparams(m[0]); k++) {
                dfm_tensor *g0, *g1, h;
                const char *nm = dfm_wan_transformer_param(m[0], k, NULL, &g0);
                dfm_wan_transformer_param(m[1], k, NULL, &g1);
                if (!strstr(nm, ".lora_")) continue;
                CHECK_EQ(dfm_tensor_copy(&h, g1, DFM_CPU), 0);
                lora_err = fmax(lora_err, rel_host(&h, g0));
                dfm_tensor_free(&h);
            }
            fprintf(stderr, "  1.3B-width block, %s weights: LoRA gradients %.2e of max|cpu|\n", dfm_dtype_name(wdts[w]), lora_err);
            CHECK(lora_err <= 2e-3);
        }
        for (int dv = 0; dv < 2; dv++) {
            for (int k = 0; k < 3; k++) dfm_tensor_free(&res[dv][k]);
            dfm_wan_transformer_free(m[dv]);
        }
    }
    /* the real grid on the device alone */
    int64_t sl[5] = {1, 16, 21, 60, 104};
    dfm_tensor xl, dl, res[3] = {{0}};
    CHECK_EQ(dfm_tensor_alloc(&xl, DFM_F32, DFM_CPU, 5, sl), 0);
    CHECK_EQ(dfm_tensor_alloc(&dl, DFM_F32, DFM_CPU, 5, sl), 0);
    for (int64_t i = 0; i < dfm_tensor_numel(&xl); i++) ((float *)xl.data)[i] = sinf(0.37f * i), ((float *)dl.data)[i] = cosf(0.11f * i);
    dfm_wan_transformer *mg = NULL;
    dfm_wan_transformer_opts o = {.device = DFM_CUDA, .weights = DFM_BF16, .compute = DFM_BF16};
    CHECK_EQ(dfm_wan_transformer_load(&mg, dir, &o), 0);
    if (mg) {
        CHECK_EQ(dfm_wan_transformer_lora_add(mg, NULL, 16, 16.0f, 0.0f, 5, NULL), 0);
        CHECK_EQ(wan_run(mg, DFM_CUDA, &xl, &ctx, &dl, res, 617.0f), 0);
        for (int k = 0; k < 3; k++) CHECK_EQ(dfm_tensor_check_finite(&res[k], "a 32,760-token result"), 0);
        fprintf(stderr, "  1.3B-width block at 32,760 tokens on CUDA: forward and backward finite\n");
        dfm_wan_transformer_free(mg);
    }
    for (int k = 0; k < 3; k++) dfm_tensor_free(&res[k]);
    dfm_tensor_free(&xl), dfm_tensor_free(&dl), dfm_tensor_free(&x), dfm_tensor_free(&ctx), dfm_tensor_free(&dout);
    char p2[700];
    snprintf(p2, sizeof p2, "%s/diffusion_pytorch_model.safetensors", dir);
    unlink(p2);
    snprintf(p2, sizeof p2, "%s/config.json", dir);
    unlink(p2);
    rmdir(dir);
}
#endif
