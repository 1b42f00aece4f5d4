/* bench_attention.c — the CPU attention kernel (kernels/cpu/attention.h), forward and backward, on
 * Wan 2.1 1.3B's shapes (12 heads x 128: self-attention over the video tokens, cross-attention to
 * 512 text rows) and UMT5-XXL's (64 heads x 64, 512 tokens, a bias), against OpenBLAS's sgemm
 * on a square 2048 GEMM measured in the same run with the same threads. Not a test: it asserts
 * nothing. Prints one line per shape: milliseconds, GFLOP/s (4 * sq * sk * d per head forward,
 * 2.5 times that backward) and the ratio to the sgemm rate, and the peak extra memory (the
 * growth of the process's peak RSS over the operands, first call included).
 *
 * Build and run (with the Makefile's CFLAGS and LDLIBS, against a built libdfm.a):
 *   cc $CFLAGS -o bench_attention scripts/bench_attention.c BUILD/libdfm.a $LDLIBS
 *   bench_attention [--threads N] [--reps N] [--long]
 * --long adds two heads of self-attention over 32,760 tokens (one run, about half a minute on two
 * cores): the memory stays that of the short shapes.
 */
#include "base/error.h"
#include "cpu/attention.h"
#include "cpu/cpu.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static long peak_rss_kib(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return u.ru_maxrss;
}

static float *filled(size_t n, uint32_t seed, float amp)
{
    float *p = malloc(n * sizeof(float));
    if (!p) {
        fprintf(stderr, "bench_attention: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = amp * ((float)(seed >> 8) / (float)(1 << 24) - 0.5f);
    }
    return p;
}

static double sgemm_rate(int reps)
{
    int n = 2048;
    float *a = filled((size_t)n * n, 1, 1.0f), *b = filled((size_t)n * n, 2, 1.0f), *c = filled((size_t)n * n, 3, 1.0f);
    double best = 1e30;
    for (int r = 0; r <= reps; r++) {
        double t = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        t = now() - t;
        if (r && t < best) best = t;
    }
    free(a), free(b), free(c);
    return 2.0 * n * n * n / best * 1e-9;
}

typedef struct {
    const char *name;
    int64_t heads, sq, sk, d;
    int token_major, bias;
} shape;

static void run(const shape *s, int reps, double peak)
{
    int64_t h = s->heads, sq = s->sq, sk = s->sk, d = s->d;
    dfm_attn_args a = {.batch = 1, .heads = h, .sq = sq, .sk = sk, .d = d, .scale = 1.0f / sqrtf((float)d)};
    int64_t qs[3] = {h * sq * d, sq * d, d}, ks[3] = {h * sk * d, sk * d, d};
    if (s->token_major) qs[1] = ks[1] = d, qs[2] = ks[2] = h * d;
    memcpy(a.qs, qs, sizeof qs), memcpy(a.os, qs, sizeof qs), memcpy(a.ks, ks, sizeof ks), memcpy(a.vs, ks, sizeof ks);
    size_t nq = (size_t)(h * sq * d), nk = (size_t)(h * sk * d);
    float *q = filled(nq, 11, 2.0f), *k = filled(nk, 12, 2.0f), *v = filled(nk, 13, 2.0f), *dout = filled(nq, 14, 1.0f);
    float *out = filled(nq, 15, 0.0f), *dq = filled(nq, 16, 0.0f), *dk = filled(nk, 17, 0.0f), *dv = filled(nk, 18, 0.0f);
    float *lse = filled((size_t)(h * sq), 19, 0.0f), *bias = s->bias ? filled((size_t)(h * sq * sk), 20, 4.0f) : NULL;
    a.q = q, a.k = k, a.v = v, a.out = out, a.lse = lse, a.bias = bias;
    long rss0 = peak_rss_kib();
    double tf = 1e30, tb = 1e30;
    for (int r = 0; r <= reps; r++) { /* the first run warms up (and counts for memory) */
        double t = now();
        if (dfm_cpu_attention_fwd(&a) < 0) {
            fprintf(stderr, "bench_attention: %s\n", dfm_errmsg());
            exit(1);
        }
        t = now() - t;
        if ((r || !reps) && t < tf) tf = t;
        t = now();
        if (dfm_cpu_attention_bwd(&a, dout, dq, dk, dv) < 0) {
            fprintf(stderr, "bench_attention: %s\n", dfm_errmsg());
            exit(1);
        }
        t = now() - t;
        if ((r || !reps) && t < tb) tb = t;
    }
    long extra = peak_rss_kib() - rss0;
    double flop = 4.0 * h * sq * sk * d, gf = flop / tf * 1e-9, gb = 2.5 * flop / tb * 1e-9;
    printf("%-34s %9.1f %8.1f %6.2f %9.1f %8.1f %6.2f %9.1f\n", s->name, tf * 1e3, gf, gf / peak, tb * 1e3, gb,
           gb / peak, extra / 1024.0);
    free(q), free(k), free(v), free(dout), free(out), free(dq), free(dk), free(dv), free(lse), free(bias);
}

int main(int argc, char **argv)
{
    int threads = 0, reps = 3, want_long = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--long")) want_long = 1;
        else {
            fprintf(stderr, "usage: bench_attention [--threads N] [--reps N] [--long]\n");
            return 2;
        }
    }
    dfm_cpu_set_threads(threads);
    double peak = sgemm_rate(reps);
    printf("threads %d, %s exp; sgemm 2048^3: %.1f GFLOP/s\n", dfm_cpu_threads(), dfm_cpu_impl(), peak);
    printf("%-34s %9s %8s %6s %9s %8s %6s %9s\n", "shape", "fwd ms", "GFLOP/s", "ratio", "bwd ms", "GFLOP/s", "ratio",
           "extra MiB");
    static const shape shapes[] = {
        {"wan self 12x128, 1920 tokens", 12, 1920, 1920, 128, 0, 0},
        {"wan cross 12x128, 1920 x 512", 12, 1920, 512, 128, 0, 0},
        {"umt5-xxl 64x64, 512, bias", 64, 512, 512, 64, 1, 1},
        {"wan self 2 heads x128, 32760 tok", 2, 32760, 32760, 128, 0, 0}, /* 2 of the 12 heads */
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        if (shapes[i].sq < 10000 || want_long) run(&shapes[i], shapes[i].sq < 10000 ? reps : 0, peak);
    return 0;
}
