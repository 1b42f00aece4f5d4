/* bench_umt5.c — the UMT5 encoder on one token sequence, for scripts/bench_umt5.py (which
 * builds it against libdfm and compares with transformers). Not a test: it asserts nothing.
 *
 * usage: bench_umt5 MODEL_DIR IDS.npy OUT.npy [--dtype f32|bf16] [--keep-mapped] [--threads N]
 *                   [--reps N]
 * IDS.npy: int32 [n]. OUT.npy: float32 [n, d_model] of the last encode. Prints one line of
 * key=value pairs on stdout: load seconds, the best encode seconds of --reps runs after one
 * warm-up, the weight bytes owned/mapped (dfm_umt5_memory), and memory from /proc/self/status
 * after loading and after encoding: RssAnon (allocated memory), RssFile (mapped file pages,
 * reclaimable) and VmHWM (the peak of their sum).
 */
#include "base/buf.h"
#include "base/error.h"
#include "io/npy.h"
#include "models/wan/umt5.h"
#include "tensor/ops.h"

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

/* a /proc/self/status field in MiB ("RssAnon", "RssFile", "VmHWM") */
static double status_mib(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double v = -1;
    size_t n = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, n) && line[n] == ':') v = atof(line + n + 1) / 1024.0;
    if (f) fclose(f);
    return v;
}

static int die(const char *what)
{
    fprintf(stderr, "bench_umt5: %s: %s\n", what, dfm_errmsg());
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: bench_umt5 MODEL_DIR IDS.npy OUT.npy [--dtype f32|bf16] [--keep-mapped] "
                        "[--threads N] [--reps N]\n");
        return 2;
    }
    dfm_umt5_opts o = {.device = DFM_CPU, .weights = DFM_F32};
    int threads = 0, reps = 3;
    for (int i = 4; i < argc; i++) {
        if (!strcmp(argv[i], "--dtype") && i + 1 < argc) o.weights = strcmp(argv[++i], "bf16") ? DFM_F32 : DFM_BF16;
        else if (!strcmp(argv[i], "--keep-mapped")) o.keep_mapped = 1;
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else {
            fprintf(stderr, "bench_umt5: unknown argument '%s'\n", argv[i]);
            return 2;
        }
    }
    dfm_ops_set_threads(threads);
    dfm_buf b = {0};
    dfm_npy a;
    if (dfm_read_file(argv[2], 0, &b) < 0 || dfm_npy_parse(b.data, b.len, &a) < 0) return die(argv[2]);
    if (a.dtype != DFM_NPY_I32 || a.ndim != 1) {
        fprintf(stderr, "bench_umt5: %s: expected int32 [n]\n", argv[2]);
        return 1;
    }
    int n = (int)a.shape[0];
    const int32_t *ids = (const int32_t *)a.data;

    double t0 = now();
    dfm_umt5 *m = NULL;
    if (dfm_umt5_load(&m, argv[1], &o) < 0) return die("load");
    double t_load = now() - t0;
    double anon_load = status_mib("RssAnon"), file_load = status_mib("RssFile");
    size_t owned, mapped;
    dfm_umt5_memory(m, &owned, &mapped);

    dfm_tensor out = {0};
    double best = 1e30;
    for (int r = 0; r <= reps; r++) { /* r = 0: warm-up */
        dfm_tensor_free(&out);
        t0 = now();
        if (dfm_umt5_encode(m, ids, n, &out) < 0) return die("encode");
        double t = now() - t0;
        if (r > 0 && t < best) best = t;
        if (reps == 0) best = t;
    }
    double anon_enc = status_mib("RssAnon"), file_enc = status_mib("RssFile"), hwm = status_mib("VmHWM");
    uint8_t *npy;
    size_t len;
    if (dfm_npy_build(DFM_NPY_F32, 2, out.shape, out.data, &npy, &len) < 0 || dfm_write_file_atomic(argv[3], npy, len) < 0)
        return die(argv[3]);
    free(npy);
    printf("tokens=%d threads=%d load_s=%.3f encode_s=%.3f owned_mib=%.1f mapped_mib=%.1f "
           "anon_after_load_mib=%.1f file_after_load_mib=%.1f anon_after_encode_mib=%.1f file_after_encode_mib=%.1f "
           "hwm_mib=%.1f\n",
           n, dfm_ops_threads(), t_load, best, owned / 1048576.0, mapped / 1048576.0, anon_load, file_load, anon_enc,
           file_enc, hwm);
    dfm_tensor_free(&out);
    dfm_umt5_free(m);
    dfm_buf_free(&b);
    return 0;
}
