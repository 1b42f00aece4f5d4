/* bench_linear.c — the CPU GEMMs per SIMD level against the machine's peaks, all measured in this
 * one run with the same threads. Built and run by scripts/bench.sh; not a test: it asserts nothing
 * but that the results agree.
 *
 * usage: bench_linear [--threads N] [--tokens M] [--mm-tokens M] [--reps N] [--scalar] [--level NAME]
 *                     [--skip linear|matmul]
 * Levels: avx2 up to the machine's (--scalar from scalar, --level one only).
 *
 * Peaks: 10 independent chains of 8-wide FMAs (AVX2), of 16-wide FMAs (AVX-512) and of VDPBF16PS
 * (AVX512_BF16: 16 lanes x 2 bf16 products, 64 flops an instruction), each on the levels the
 * CPU has.
 * Packed linear (dfm_op_linear, kernels/cpu/linear.c) on UMT5-XXL's layer (d_model 4096, d_ff
 * 10240, --tokens rows): q|k|v fused (N 12288, K 4096), o (4096, 4096), wi_0|wi_1 fused (20480,
 * 4096), wo (4096, 10240); against OpenBLAS's sgemm on the same operands (x W^T, W [out, in]);
 * per level: F32 panels, BF16 panels, BF16 panels under bf16 compute.
 * General matmul (dfm_op_matmul, kernels/cpu/matmul.c) on the Wan 1.3B transformer's GEMMs
 * (--mm-tokens rows, d 1536, ffn 8960): forward x W^T of a 1536 x 1536 and the 1536 -> 8960
 * projection, its backward dx = dy W and dW = dy^T x; W F32 or BF16, bf16 compute off/on.
 * Each configuration runs --reps times, interleaved with the others and with the peak loops (a
 * busy moment on a shared machine hits all alike); the best of each counts. The ratio to the
 * peak uses the FMA peak of the level (f32 products) or the VDPBF16PS peak (bf16 compute on the
 * avx512_bf16 level).
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

/* ---- peaks ------------------------------------------------------------------------------------ */

#define PEAK_ITERS 20000000L
enum { PK_AVX2, PK_AVX512, PK_BF16, NPK };
static const char *const pk_name[NPK] = {"AVX2 FMA (ymm)", "AVX-512 FMA (zmm)", "VDPBF16PS (zmm)"};
static const double pk_flops[NPK] = {16, 32, 64}; /* per instruction */

#if defined(__x86_64__)
#define CHAINS(OP, R)                                                                                              \
    OP " %%" R "14,%%" R "15,%%" R "0\n " OP " %%" R "14,%%" R "15,%%" R "1\n " OP " %%" R "14,%%" R "15,%%" R     \
       "2\n " OP " %%" R "14,%%" R "15,%%" R "3\n " OP " %%" R "14,%%" R "15,%%" R "4\n " OP " %%" R "14,%%" R     \
       "15,%%" R "5\n " OP " %%" R "14,%%" R "15,%%" R "6\n " OP " %%" R "14,%%" R "15,%%" R "7\n " OP " %%" R     \
       "14,%%" R "15,%%" R "8\n " OP " %%" R "14,%%" R "15,%%" R "9\n"
#define ZERO(R)                                                                                                    \
    "vpxor %%xmm0,%%xmm0,%%xmm0\n vmovaps %%" R "0,%%" R "1\n vmovaps %%" R "0,%%" R "2\n vmovaps %%" R "0,%%" R     \
    "3\n vmovaps %%" R "0,%%" R "4\n vmovaps %%" R "0,%%" R "5\n vmovaps %%" R "0,%%" R "6\n vmovaps %%" R "0,%%" R  \
    "7\n vmovaps %%" R "0,%%" R "8\n vmovaps %%" R "0,%%" R "9\n vmovaps %%" R "0,%%" R "14\n vmovaps %%" R "0,%%" R \
    "15\n"
#define CLOBBER "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm14", "xmm15", "cc"

__attribute__((target("avx2,fma"))) static void *loop_avx2(void *arg)
{
    long n = PEAK_ITERS;
    __asm__ volatile(ZERO("ymm") "1:\n" CHAINS("vfmadd231ps", "ymm") "dec %0\n jnz 1b\n vzeroupper\n" : "+r"(n) : : CLOBBER);
    return arg;
}

__attribute__((target("avx512f"))) static void *loop_avx512(void *arg)
{
    long n = PEAK_ITERS;
    __asm__ volatile(ZERO("zmm") "1:\n" CHAINS("vfmadd231ps", "zmm") "dec %0\n jnz 1b\n vzeroupper\n" : "+r"(n) : : CLOBBER);
    return arg;
}

__attribute__((target("avx512f,avx512bf16"))) static void *loop_bf16(void *arg)
{
    long n = PEAK_ITERS;
    __asm__ volatile(ZERO("zmm") "1:\n" CHAINS("vdpbf16ps", "zmm") "dec %0\n jnz 1b\n vzeroupper\n" : "+r"(n) : : CLOBBER);
    return arg;
}

static double peak(int which, int threads)
{
    void *(*fn)(void *) = which == PK_AVX2 ? loop_avx2 : which == PK_AVX512 ? loop_avx512 : loop_bf16;
    pthread_t tid[64];
    int started[64] = {0};
    double t = now();
    for (int i = 1; i < threads && i < 64; i++) started[i] = pthread_create(&tid[i], NULL, fn, NULL) == 0;
    fn(NULL);
    int ran = 1;
    for (int i = 1; i < threads && i < 64; i++)
        if (started[i]) pthread_join(tid[i], NULL), ran++;
    return ran * (double)PEAK_ITERS * 10 * pk_flops[which] / (now() - t) / 1e9;
}
#else
static double peak(int which, int threads) { return NAN; }
#endif

static int pk_have(int which)
{
    int l = dfm_cpu_level_max();
    return which == PK_AVX2 ? l >= DFM_CPU_AVX2 : which == PK_AVX512 ? l >= DFM_CPU_AVX512 : l >= DFM_CPU_AVX512_BF16;
}

static double g_peak[NPK];
static int g_threads;

static void run_peaks(void)
{
    for (int p = 0; p < NPK; p++)
        if (pk_have(p)) {
            double v = peak(p, g_threads);
            if (v > g_peak[p]) g_peak[p] = v;
        }
}

/* the peak a configuration is measured against */
static double peak_for(int level, int bf16c)
{
    if (level >= DFM_CPU_AVX512_BF16 && bf16c) return g_peak[PK_BF16];
    if (level >= DFM_CPU_AVX512) return g_peak[PK_AVX512];
    return g_peak[PK_AVX2];
}

static float frand(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(*s >> 11) / 9007199254740992.0 - 0.5);
}

static void die(const char *what)
{
    fprintf(stderr, "bench_linear: %s: %s\n", what, dfm_errmsg());
    exit(1);
}

static const dfm_compute g_bf16 = {DFM_BF16, NULL};

/* ---- packed linear ---------------------------------------------------------------------------- */

static void bench_linear(int m, int reps, int lo, int hi)
{
    static const struct {
        const char *name;
        int nw;
        int64_t n, k; /* per weight */
    } shapes[] = {{"q|k|v", 3, 4096, 4096}, {"o", 1, 4096, 4096}, {"wi_0|wi_1", 2, 10240, 4096}, {"wo", 1, 4096, 10240}};
    enum { NS = 4, NV = 3 }; /* variants per level: F32 panels, BF16 panels, BF16 + bf16 compute */
    static const char *const vname[NV] = {"f32", "bf16 w", "bf16 w+c"};
    int nl = hi - lo + 1;
    double blas[NS], best[NS][DFM_CPU_LEVELS][NV], flops[NS], diff[NS][DFM_CPU_LEVELS][NV];
    printf("packed linear (dfm_op_linear), %d tokens, %d threads (x W^T, W [out, in]; best of %d interleaved runs)\n", m,
           g_threads, reps);
    for (int s = 0; s < NS; s++) {
        int64_t nw = shapes[s].nw, n1 = shapes[s].n, n = n1 * nw, k = shapes[s].k;
        flops[s] = 2.0 * m * n * k;
        uint64_t seed = 1 + (uint64_t)s;
        float *x = malloc((size_t)m * k * 4), *w = malloc((size_t)n * k * 4), *y0 = malloc((size_t)m * n * 4);
        float *ys = malloc((size_t)m * n * 4);
        if (!x || !w || !y0 || !ys) die("out of memory");
        for (int64_t i = 0; i < m * k; i++) x[i] = frand(&seed);
        for (int64_t i = 0; i < n * k; i++) w[i] = frand(&seed);
        int64_t sx[2] = {m, k}, sw[2] = {n1, k}, sy[2] = {m, n1};
        dfm_tensor xt = dfm_tensor_view(x, DFM_F32, DFM_CPU, 2, sx), wt[DFM_PACKED_MAX], yt[DFM_PACKED_MAX];
        const dfm_tensor *wp[DFM_PACKED_MAX];
        dfm_tensor *yp[DFM_PACKED_MAX];
        for (int i = 0; i < nw; i++) { /* weight i's outputs: the i-th m x n1 block of ys */
            wt[i] = dfm_tensor_view(w + i * n1 * k, DFM_F32, DFM_CPU, 2, sw), wp[i] = &wt[i];
            yt[i] = dfm_tensor_view(ys + i * m * n1, DFM_F32, DFM_CPU, 2, sy), yp[i] = &yt[i];
        }
        dfm_packed *lin[2];
        if (dfm_packed_create(&lin[0], wp, (int)nw, DFM_F32, DFM_CPU) || dfm_packed_create(&lin[1], wp, (int)nw, DFM_BF16, DFM_CPU))
            die("pack");
        blas[s] = 1e30;
        for (int l = 0; l < nl; l++)
            for (int v = 0; v < NV; v++) best[s][l][v] = 1e30, diff[s][l][v] = 0;
        for (int r = 0; r < reps + 1; r++) { /* run 0 warms up and checks */
            if (r > 0) run_peaks();
            double t = now();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, (int)n, (int)k, 1.0f, x, (int)k, w, (int)k, 0.0f, y0,
                        (int)n);
            t = now() - t;
            if (r > 0 && t < blas[s]) blas[s] = t;
            for (int l = 0; l < nl; l++) {
                dfm_cpu_set_simd_level(lo + l);
                for (int v = 0; v < NV; v++) {
                    t = now();
                    if (dfm_op_linear(v == 2 ? &g_bf16 : NULL, &xt, lin[v > 0], yp, 0)) die("linear");
                    t = now() - t;
                    if (r > 0 && t < best[s][l][v]) best[s][l][v] = t;
                    if (r == 0) /* largest |y - OpenBLAS| relative to the largest |OpenBLAS| */
                        for (int i = 0; i < nw; i++)
                            for (int64_t row = 0; row < m; row++)
                                for (int64_t c = 0; c < n1; c++) {
                                    double d = fabs((double)ys[(i * m + row) * n1 + c] - y0[row * n + i * n1 + c]);
                                    if (d > diff[s][l][v]) diff[s][l][v] = d;
                                }
                }
            }
            dfm_cpu_set_simd(1);
        }
        dfm_packed_free(lin[0]);
        dfm_packed_free(lin[1]);
        free(x), free(w), free(y0), free(ys);
    }
    printf("  %-10s %6s %6s %9s", "layer", "N", "K", "OpenBLAS");
    for (int l = 0; l < nl; l++)
        for (int v = 0; v < NV; v++) {
            char h[48];
            snprintf(h, sizeof h, "%s %s", dfm_cpu_level_name(lo + l), vname[v]);
            printf(" %20s", h);
        }
    printf("\n");
    double tb = 0, tt[DFM_CPU_LEVELS][NV] = {{0}}, tf = 0;
    for (int s = 0; s <= NS; s++) {
        if (s < NS) {
            printf("  %-10s %6lld %6lld %9.1f", shapes[s].name, (long long)(shapes[s].n * shapes[s].nw), (long long)shapes[s].k,
                   flops[s] / blas[s] / 1e9);
            tb += blas[s], tf += flops[s];
        } else {
            printf("  %-10s %13s %9.1f", "all", "", tf / tb / 1e9);
        }
        for (int l = 0; l < nl; l++)
            for (int v = 0; v < NV; v++) {
                double sec = s < NS ? best[s][l][v] : tt[l][v], fl = s < NS ? flops[s] : tf;
                if (s < NS) tt[l][v] += sec;
                double g = fl / sec / 1e9;
                printf(" %11.1f (%5.0f%%)", g, 100 * g / peak_for(lo + l, v == 2));
            }
        printf("\n");
    }
    printf("  GFLOP/s (%% of the level's peak); largest |y - OpenBLAS f32| over the outputs (inputs in [-0.5, 0.5)):\n");
    for (int l = 0; l < nl; l++) {
        printf("    %-12s", dfm_cpu_level_name(lo + l));
        for (int v = 0; v < NV; v++) {
            double d = 0;
            for (int s = 0; s < NS; s++) d = diff[s][l][v] > d ? diff[s][l][v] : d;
            printf("  %s %.1e", vname[v], d);
        }
        printf("\n");
    }
}

/* ---- general matmul --------------------------------------------------------------------------- */

static void bench_matmul(int m, int reps, int lo, int hi)
{
    /* y[M, N] = op(A) op(B): the transformer's forward x W^T (W [out, in]), dx = dy W, dW = dy^T x */
    static const struct {
        const char *name;
        int ta, tb, wb; /* wb: B is the weight (F32 or BF16 variants), else an F32 activation */
        int mt;         /* which of M, N, K is the token count: 0 M, 2 K */
        int64_t a, b;   /* the other two: N, K for mt 0; M, N for mt 2 */
    } shapes[] = {
        {"fwd x W^T 1536x1536", 0, 1, 1, 0, 1536, 1536}, {"fwd x W^T 1536->8960", 0, 1, 1, 0, 8960, 1536},
        {"bwd dx = dy W", 0, 0, 1, 0, 1536, 8960},        {"bwd dW = dy^T x", 1, 0, 0, 2, 8960, 1536},
    };
    enum { NS = 4, NV = 4 }; /* B F32 / BF16 x bf16 compute off / on */
    int nl = hi - lo + 1;
    double best[NS][DFM_CPU_LEVELS][NV], flops[NS], diff[NS][DFM_CPU_LEVELS][NV], blas[NS];
    printf("\nmatmul (dfm_op_matmul), %d tokens, %d threads (OpenBLAS core %s)\n", m, g_threads, openblas_get_corename());
    for (int s = 0; s < NS; s++) {
        int64_t M = shapes[s].mt == 0 ? m : shapes[s].a, N = shapes[s].mt == 0 ? shapes[s].a : shapes[s].b;
        int64_t K = shapes[s].mt == 0 ? shapes[s].b : m;
        int ta = shapes[s].ta, tb = shapes[s].tb;
        flops[s] = 2.0 * M * N * K;
        uint64_t seed = 7 + (uint64_t)s;
        int64_t as[2] = {ta ? K : M, ta ? M : K}, bs[2] = {tb ? N : K, tb ? K : N}, ys[2] = {M, N};
        dfm_tensor a, b, bb, y, y0;
        if (dfm_tensor_alloc(&a, DFM_F32, DFM_CPU, 2, as) || dfm_tensor_alloc(&b, DFM_F32, DFM_CPU, 2, bs) ||
            dfm_tensor_alloc(&bb, DFM_BF16, DFM_CPU, 2, bs) || dfm_tensor_alloc(&y, DFM_F32, DFM_CPU, 2, ys) ||
            dfm_tensor_alloc(&y0, DFM_F32, DFM_CPU, 2, ys))
            die("alloc");
        for (int64_t i = 0; i < M * K; i++) ((float *)a.data)[i] = frand(&seed);
        for (int64_t i = 0; i < N * K; i++) ((float *)b.data)[i] = frand(&seed);
        if (dfm_tensor_convert(&bb, &b)) die("convert");
        for (int v = 0; v < NV; v++)
            for (int l = 0; l < nl; l++) best[s][l][v] = 1e30, diff[s][l][v] = 0;
        blas[s] = 1e30;
        for (int r = 0; r < reps + 1; r++) {
            if (r > 0) run_peaks();
            double t = now();
            cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)M, (int)N, (int)K,
                        1.0f, a.data, (int)as[1], b.data, (int)bs[1], 0.0f, y0.data, (int)N);
            t = now() - t;
            if (r > 0 && t < blas[s]) blas[s] = t;
            for (int l = 0; l < nl; l++) {
                dfm_cpu_set_simd_level(lo + l);
                for (int v = 0; v < NV; v++) {
                    if ((v & 1) && !shapes[s].wb) continue;
                    t = now();
                    if (dfm_op_matmul(v & 2 ? &g_bf16 : NULL, &a, ta, v & 1 ? &bb : &b, tb, NULL, 0.0f, &y)) die("matmul");
                    t = now() - t;
                    if (r > 0 && t < best[s][l][v]) best[s][l][v] = t;
                    if (r == 0)
                        for (int64_t i = 0; i < M * N; i++) {
                            double d = fabs((double)((float *)y.data)[i] - ((float *)y0.data)[i]);
                            if (d > diff[s][l][v]) diff[s][l][v] = d;
                        }
                }
            }
            dfm_cpu_set_simd(1);
        }
        dfm_tensor_free(&a), dfm_tensor_free(&b), dfm_tensor_free(&bb), dfm_tensor_free(&y), dfm_tensor_free(&y0);
    }
    static const char *const vname[NV] = {"B f32", "B bf16", "B f32 bf16c", "B bf16 bf16c"};
    printf("  %-22s %6s %6s %6s %9s", "GEMM", "M", "N", "K", "sgemm");
    for (int v = 0; v < NV; v++) printf(" %14s", vname[v]);
    printf("   level  (GFLOP/s and %% of the level's peak)\n");
    for (int s = 0; s < NS; s++)
        for (int l = 0; l < nl; l++) {
            int64_t M = shapes[s].mt == 0 ? m : shapes[s].a, N = shapes[s].mt == 0 ? shapes[s].a : shapes[s].b;
            int64_t K = shapes[s].mt == 0 ? shapes[s].b : m;
            if (l == 0)
                printf("  %-22s %6lld %6lld %6lld %9.1f", shapes[s].name, (long long)M, (long long)N, (long long)K,
                       flops[s] / blas[s] / 1e9);
            else
                printf("  %-22s %6s %6s %6s %9s", "", "", "", "", "");
            for (int v = 0; v < NV; v++) {
                if (best[s][l][v] >= 1e30) {
                    printf(" %14s", "-");
                    continue;
                }
                double g = flops[s] / best[s][l][v] / 1e9;
                printf(" %7.1f (%3.0f%%)", g, 100 * g / peak_for(lo + l, (v & 2) != 0));
            }
            printf("   %s\n", dfm_cpu_level_name(lo + l));
        }
    printf("  largest |y - sgemm f32|:");
    for (int v = 0; v < NV; v++) {
        double d = 0;
        for (int s = 0; s < NS; s++)
            for (int l = 0; l < nl; l++) d = diff[s][l][v] > d ? diff[s][l][v] : d;
        printf("  %s %.1e", vname[v], d);
    }
    printf("\n");
}

int main(int argc, char **argv)
{
    int threads = 0, m = 128, mm = 1920, reps = 3, skip_lin = 0, skip_mm = 0, lo = DFM_CPU_AVX2, only = -1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--tokens") && i + 1 < argc) m = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--mm-tokens") && i + 1 < argc) mm = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--scalar")) lo = DFM_CPU_SCALAR;
        else if (!strcmp(argv[i], "--level") && i + 1 < argc) {
            i++;
            for (int l = 0; l < DFM_CPU_LEVELS; l++)
                if (!strcmp(argv[i], dfm_cpu_level_name(l))) only = l;
        }
        else if (!strcmp(argv[i], "--skip") && i + 1 < argc) {
            i++;
            skip_lin |= !strcmp(argv[i], "linear"), skip_mm |= !strcmp(argv[i], "matmul");
        } else {
            fprintf(stderr, "usage: bench_linear [--threads N] [--tokens M] [--mm-tokens M] [--reps N] [--scalar] "
                            "[--level NAME] [--skip linear|matmul]\n");
            return 2;
        }
    }
    if (m < 1 || mm < 1 || reps < 1) return 2;
    dfm_ops_set_threads(threads);
    g_threads = dfm_ops_threads();
    int hi = dfm_cpu_level_max();
    if (lo > hi) lo = hi;
    if (only >= 0) lo = hi = only < hi ? only : hi;
    printf("CPU level %s (levels benchmarked: %s..%s)\n", dfm_cpu_level_name(hi), dfm_cpu_level_name(lo),
           dfm_cpu_level_name(hi));
    if (!skip_lin) bench_linear(m, reps, lo, hi);
    if (!skip_mm) bench_matmul(mm, reps, lo, hi);
    printf("\npeaks, %d threads (best over the run):", g_threads);
    for (int p = 0; p < NPK; p++)
        if (pk_have(p)) printf("  %s %.0f GFLOP/s", pk_name[p], g_peak[p]);
    printf("\n");
    return 0;
}
