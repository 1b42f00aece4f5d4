/* bench_ops.c — conv3d throughput on the Wan VAE's main shapes against OpenBLAS's sgemm peak
 * (a square 2048 GEMM) measured in the same run, same threads. Built and run by
 * scripts/bench-conv.sh; prints a table on stdout. Not a test: it asserts nothing.
 *
 * GFLOP/s: "nominal" counts 2*Cout*Cin*kt*kh*kw per output (what a framework's profiler counts,
 * zero padding included); "executed" leaves out the time taps that read only zero-padding frames,
 * which the taps path skips. Each figure is the best of a few runs after one warm-up.
 *
 * usage: bench_ops [--threads N] [--tile BYTES] [--reps N] [--quick] [--only TEXT]
 *   --only TEXT: just the shapes whose name contains TEXT
 */
#include "base/error.h"
#include "cpu/conv3d.h"
#include "tensor/ops.h"
#include "tensor/tensor.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void fill(float *p, size_t n)
{
    uint32_t s = 12345;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        p[i] = (float)(s >> 8) / (float)(1 << 24) - 0.5f;
    }
}

static double sgemm_peak(int n, int reps)
{
    float *a = malloc((size_t)n * n * 4), *b = malloc((size_t)n * n * 4), *c = malloc((size_t)n * n * 4);
    fill(a, (size_t)n * n);
    fill(b, (size_t)n * n);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
        t = now() - t;
        best = t < best ? t : best;
    }
    free(a);
    free(b);
    free(c);
    return 2.0 * n * n * (double)n / best / 1e9;
}

typedef struct {
    const char *name;
    int64_t cin, cout, t, h, w;
    int k[3], stride[3], pad[6];
} shape;

static int bench(const shape *s, int reps, int bf16, double peak)
{
    int64_t xs[4] = {s->cin, s->t, s->h, s->w}, ws[5] = {s->cout, s->cin, s->k[0], s->k[1], s->k[2]};
    int64_t to = (s->t + s->pad[0] + s->pad[1] - s->k[0]) / s->stride[0] + 1;
    int64_t ho = (s->h + s->pad[2] + s->pad[3] - s->k[1]) / s->stride[1] + 1;
    int64_t wo = (s->w + s->pad[4] + s->pad[5] - s->k[2]) / s->stride[2] + 1;
    int64_t ys[4] = {s->cout, to, ho, wo}, bs[1] = {s->cout};
    dfm_tensor x, w, b, y;
    if (dfm_tensor_alloc(&x, DFM_F32, DFM_CPU, 4, xs) || dfm_tensor_alloc(&w, DFM_F32, DFM_CPU, 5, ws) ||
        dfm_tensor_alloc(&b, DFM_F32, DFM_CPU, 1, bs) || dfm_tensor_alloc(&y, DFM_F32, DFM_CPU, 4, ys)) {
        fprintf(stderr, "bench_ops: %s\n", dfm_errmsg());
        return 1;
    }
    fill(x.data, dfm_tensor_numel(&x));
    fill(w.data, dfm_tensor_numel(&w));
    fill(b.data, dfm_tensor_numel(&b));
    dfm_compute cc = {bf16 ? DFM_BF16 : DFM_F32, NULL};
    double best = 1e30;
    for (int r = 0; r <= reps; r++) {
        double t = now();
        if (dfm_op_conv3d(&cc, &x, &w, &b, &y, s->stride, s->pad) < 0) {
            fprintf(stderr, "bench_ops: %s\n", dfm_errmsg());
            return 1;
        }
        t = now() - t;
        if (r > 0 && t < best) best = t; /* run 0 warms up */
    }
    double per_tap = 2.0 * s->cout * s->cin * ho * wo * s->k[1] * s->k[2]; /* one time tap, one frame */
    double nominal = per_tap * s->k[0] * to, executed = 0;
    for (int64_t ot = 0; ot < to; ot++)
        for (int dt = 0; dt < s->k[0]; dt++) {
            int64_t ti = ot * s->stride[0] + dt - s->pad[0];
            if (ti >= 0 && ti < s->t) executed += per_tap;
        }
    printf("%-34s %-7s %-5s %9.1f ms %8.1f %8.1f  %5.2f\n", s->name,
           dfm_cpu_conv3d_path(s->cin, s->cout, s->k[0], s->k[1], s->k[2], s->stride, s->pad), bf16 ? "bf16" : "f32",
           best * 1e3, nominal / best / 1e9, executed / best / 1e9, executed / best / 1e9 / peak);
    dfm_tensor_free(&x);
    dfm_tensor_free(&w);
    dfm_tensor_free(&b);
    dfm_tensor_free(&y);
    return 0;
}

int main(int argc, char **argv)
{
    int threads = 0, reps = 3, quick = 0;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--tile") && i + 1 < argc) dfm_cpu_conv3d_set_tile_bytes(strtoull(argv[++i], NULL, 0));
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else {
            fprintf(stderr, "usage: bench_ops [--threads N] [--tile BYTES] [--reps N] [--quick] [--only TEXT]\n");
            return 2;
        }
    }
    dfm_ops_set_threads(threads);
    double peak = sgemm_peak(2048, 3);
    printf("threads %d; OpenBLAS sgemm 2048^3: %.1f GFLOP/s\n", dfm_ops_threads(), peak);
    printf("%-34s %-7s %-5s %12s %8s %8s  %5s\n", "conv3d (Cin->Cout @ TxHxW, k, pad)", "path", "mode", "time",
           "nominal", "executed", "/peak");
    static const shape shapes[] = {
        {"96->96 @ 5x256x256 3x3x3 causal", 96, 96, 5, 256, 256, {3, 3, 3}, {1, 1, 1}, {2, 0, 1, 1, 1, 1}},
        {"384->384 @ 5x64x64 3x3x3 causal", 384, 384, 5, 64, 64, {3, 3, 3}, {1, 1, 1}, {2, 0, 1, 1, 1, 1}},
        {"384->384 @ 5x32x32 3x3x3 causal", 384, 384, 5, 32, 32, {3, 3, 3}, {1, 1, 1}, {2, 0, 1, 1, 1, 1}},
        {"96->96 @ 5x256x256 1x3x3 s2 down", 96, 96, 5, 256, 256, {1, 3, 3}, {1, 2, 2}, {0, 0, 0, 1, 0, 1}},
        {"192->192 @ 5x128x128 1x3x3 up", 192, 192, 5, 128, 128, {1, 3, 3}, {1, 1, 1}, {0, 0, 1, 1, 1, 1}},
        {"384->768 @ 5x32x32 3x1x1 causal", 384, 768, 5, 32, 32, {3, 1, 1}, {1, 1, 1}, {2, 0, 0, 0, 0, 0}},
        {"384->384 @ 5x32x32 3x1x1 s2", 384, 384, 5, 32, 32, {3, 1, 1}, {2, 1, 1}, {0, 0, 0, 0, 0, 0}},
        {"192->384 @ 5x64x64 1x1x1", 192, 384, 5, 64, 64, {1, 1, 1}, {1, 1, 1}, {0, 0, 0, 0, 0, 0}},
        {"3->96 @ 5x256x256 3x3x3 conv_in", 3, 96, 5, 256, 256, {3, 3, 3}, {1, 1, 1}, {2, 0, 1, 1, 1, 1}},
        {"96->3 @ 5x256x256 3x3x3 conv_out", 96, 3, 5, 256, 256, {3, 3, 3}, {1, 1, 1}, {2, 0, 1, 1, 1, 1}},
    };
    int n = quick ? 3 : (int)(sizeof shapes / sizeof shapes[0]);
    for (int i = 0; i < n; i++)
        if ((!only || strstr(shapes[i].name, only)) && bench(&shapes[i], reps, 0, peak)) return 1;
    if (!quick && !only && bench(&shapes[0], reps, 1, peak)) return 1;
    dfm_ops_release_scratch();
    return 0;
}
