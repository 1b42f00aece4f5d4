/* bench_linear.c — the packed-weight GEMM (dfm_op_linear) on a text encoder's shapes against
 * OpenBLAS's sgemm on the same operands (x W^T, W stored [out, in] as torch keeps it) and the
 * machine's FMA peak, all measured in this one run with the same threads. Built and run by
 * scripts/bench.sh; not a test: it asserts nothing but that the results agree.
 *
 * usage: bench_linear [--threads N] [--tokens M] [--reps N]
 * Shapes: UMT5-XXL's layer (d_model 4096, d_ff 10240): q|k|v fused (N 12288, K 4096), o (4096,
 * 4096), wi_0|wi_1 fused (20480, 4096), wo (4096, 10240). Each configuration runs --reps times,
 * interleaved with the others and with the FMA peak loop (a busy moment on a shared machine hits
 * all alike); the best of each counts.
 */
#include "base/error.h"
#include "cpu/cpu.h"
#include "tensor/ops.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
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

#if defined(__x86_64__)
#define PEAK_ITERS 40000000L
/* 10 independent 8-wide FMA chains: the FMA units' throughput (16 flops per instruction) */
__attribute__((target("avx2,fma"))) static void *fma_loop(void *arg)
{
    long n = PEAK_ITERS;
    __asm__ volatile("vxorps %%ymm0,%%ymm0,%%ymm0\n vmovaps %%ymm0,%%ymm1\n vmovaps %%ymm0,%%ymm2\n"
                     "vmovaps %%ymm0,%%ymm3\n vmovaps %%ymm0,%%ymm4\n vmovaps %%ymm0,%%ymm5\n"
                     "vmovaps %%ymm0,%%ymm6\n vmovaps %%ymm0,%%ymm7\n vmovaps %%ymm0,%%ymm8\n"
                     "vmovaps %%ymm0,%%ymm9\n vxorps %%ymm14,%%ymm14,%%ymm14\n vxorps %%ymm15,%%ymm15,%%ymm15\n"
                     "1:\n"
                     "vfmadd231ps %%ymm14,%%ymm15,%%ymm0\n vfmadd231ps %%ymm14,%%ymm15,%%ymm1\n"
                     "vfmadd231ps %%ymm14,%%ymm15,%%ymm2\n vfmadd231ps %%ymm14,%%ymm15,%%ymm3\n"
                     "vfmadd231ps %%ymm14,%%ymm15,%%ymm4\n vfmadd231ps %%ymm14,%%ymm15,%%ymm5\n"
                     "vfmadd231ps %%ymm14,%%ymm15,%%ymm6\n vfmadd231ps %%ymm14,%%ymm15,%%ymm7\n"
                     "vfmadd231ps %%ymm14,%%ymm15,%%ymm8\n vfmadd231ps %%ymm14,%%ymm15,%%ymm9\n"
                     "dec %0\n jnz 1b\n"
                     : "+r"(n)
                     :
                     : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm14",
                       "xmm15", "cc");
    return arg;
}

static double fma_peak(int threads)
{
    pthread_t tid[64];
    int started[64] = {0};
    double t = now();
    for (int i = 1; i < threads && i < 64; i++) started[i] = pthread_create(&tid[i], NULL, fma_loop, NULL) == 0;
    fma_loop(NULL);
    int ran = 1;
    for (int i = 1; i < threads && i < 64; i++)
        if (started[i]) pthread_join(tid[i], NULL), ran++;
    return ran * (double)PEAK_ITERS * 10 * 16 / (now() - t) / 1e9;
}
#else
static double fma_peak(int threads) { return NAN; }
#endif

static float frand(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(*s >> 11) / 9007199254740992.0 - 0.5);
}

int main(int argc, char **argv)
{
    int threads = 0, m = 128, reps = 5;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--tokens") && i + 1 < argc) m = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_linear [--threads N] [--tokens M] [--reps N]\n");
            return 2;
        }
    }
    if (m < 1 || reps < 1) return 2;
    dfm_ops_set_threads(threads);
    threads = dfm_ops_threads();
    static const struct {
        const char *name;
        int nw;
        int64_t n, k; /* per weight */
    } shapes[] = {{"q|k|v", 3, 4096, 4096}, {"o", 1, 4096, 4096}, {"wi_0|wi_1", 2, 10240, 4096}, {"wo", 1, 4096, 10240}};
    enum { NS = 4, NC = 3 }; /* configurations: OpenBLAS, packed F32, packed BF16 */
    double best[NS][NC], flops[NS], maxdiff[NS][NC];
    double peak = 0;
    printf("linear layers, %d tokens, %d threads (x W^T; W [out, in] F32; best of %d interleaved runs)\n", m, threads, reps);
    for (int s = 0; s < NS; s++) {
        int64_t n = shapes[s].n * shapes[s].nw, k = shapes[s].k;
        flops[s] = 2.0 * m * n * k;
        uint64_t seed = 1 + (uint64_t)s;
        float *x = malloc((size_t)m * k * sizeof(float)), *w = malloc((size_t)n * k * sizeof(float));
        float *y0 = malloc((size_t)m * n * sizeof(float)), *y1 = malloc((size_t)m * n * sizeof(float));
        if (!x || !w || !y0 || !y1) return 1;
        for (int64_t i = 0; i < m * k; i++) x[i] = frand(&seed);
        for (int64_t i = 0; i < n * k; i++) w[i] = frand(&seed);
        int64_t sx[2] = {m, k};
        dfm_tensor xt = dfm_tensor_view(x, DFM_F32, DFM_CPU, 2, sx), wt[DFM_PACKED_MAX], yt[DFM_PACKED_MAX];
        const dfm_tensor *wp[DFM_PACKED_MAX];
        dfm_tensor *yp[DFM_PACKED_MAX];
        /* the fused weights' outputs: column blocks of y1 would need strides, so separate buffers */
        float *ys[DFM_PACKED_MAX];
        for (int i = 0; i < shapes[s].nw; i++) {
            int64_t sw[2] = {shapes[s].n, k}, sy[2] = {m, shapes[s].n};
            wt[i] = dfm_tensor_view(w + i * shapes[s].n * k, DFM_F32, DFM_CPU, 2, sw);
            wp[i] = &wt[i];
            ys[i] = malloc((size_t)m * shapes[s].n * sizeof(float));
            yt[i] = dfm_tensor_view(ys[i], DFM_F32, DFM_CPU, 2, sy);
            yp[i] = &yt[i];
        }
        dfm_packed *lin[2];
        if (dfm_packed_create(&lin[0], wp, shapes[s].nw, DFM_F32, DFM_CPU) ||
            dfm_packed_create(&lin[1], wp, shapes[s].nw, DFM_BF16, DFM_CPU)) {
            fprintf(stderr, "bench_linear: %s\n", dfm_errmsg());
            return 1;
        }
        for (int c = 0; c < NC; c++) best[s][c] = 1e30, maxdiff[s][c] = 0;
        for (int r = 0; r < reps + 1; r++) {
            if (r > 0) {
                double p = fma_peak(threads);
                if (p > peak) peak = p;
            }
            for (int c = 0; c < NC; c++) {
                double t = now();
                if (c == 0)
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, (int)n, (int)k, 1.0f, x, (int)k, w, (int)k, 0.0f,
                                y0, (int)n);
                else if (dfm_op_linear(NULL, &xt, lin[c - 1], yp, 0)) {
                    fprintf(stderr, "bench_linear: %s\n", dfm_errmsg());
                    return 1;
                }
                t = now() - t;
                if (r > 0 && t < best[s][c]) best[s][c] = t; /* run 0 warms up */
                if (c > 0 && r == 0)
                    for (int i = 0; i < shapes[s].nw; i++)
                        for (int64_t row = 0; row < m; row++)
                            for (int64_t col = 0; col < shapes[s].n; col++) {
                                double d = fabs((double)ys[i][row * shapes[s].n + col] - y0[row * n + i * shapes[s].n + col]);
                                if (d > maxdiff[s][c]) maxdiff[s][c] = d;
                            }
            }
        }
        dfm_packed_free(lin[0]);
        dfm_packed_free(lin[1]);
        for (int i = 0; i < shapes[s].nw; i++) free(ys[i]);
        free(x), free(w), free(y0), free(y1);
    }
    printf("  FMA peak (10 chains of 8-wide FMAs, %d threads): %.0f GFLOP/s\n", threads, peak);
    printf("  %-10s %6s %6s %10s %16s %16s %8s %8s %10s\n", "layer", "N", "K", "OpenBLAS", "packed f32", "packed bf16",
           "f32/peak", "bf16/pk", "f32 |d|");
    double tot[NC] = {0}, totf = 0;
    for (int s = 0; s < NS; s++) {
        double g0 = flops[s] / best[s][0] / 1e9, g1 = flops[s] / best[s][1] / 1e9, g2 = flops[s] / best[s][2] / 1e9;
        printf("  %-10s %6lld %6lld %10.1f %8.1f (%.2fx) %8.1f (%.2fx) %7.0f%% %7.0f%% %10.1e\n", shapes[s].name,
               (long long)(shapes[s].n * shapes[s].nw), (long long)shapes[s].k, g0, g1, g1 / g0, g2, g2 / g0,
               100 * g1 / peak, 100 * g2 / peak, maxdiff[s][1]);
        for (int c = 0; c < NC; c++) tot[c] += best[s][c];
        totf += flops[s];
    }
    printf("  %-10s %13s %10.1f %8.1f (%.2fx) %8.1f (%.2fx) %7.0f%% %7.0f%%   GFLOP/s over one layer's GEMMs\n", "all", "",
           totf / tot[0] / 1e9, totf / tot[1] / 1e9, tot[0] / tot[1], totf / tot[2] / 1e9, tot[0] / tot[2],
           100 * totf / tot[1] / 1e9 / peak, 100 * totf / tot[2] / 1e9 / peak);
    printf("  (f32 |d|: largest difference packed f32 vs OpenBLAS over the outputs, inputs in [-0.5, 0.5))\n");
    return 0;
}
