/* bench_transformer.c — the Wan 2.1 transformer (models/wan/transformer.h) at the real 1.3B width with
 * random weights and a few blocks, and the attention op alone, for scripts/bench_transformer.py
 * (which builds this against libdfm, runs every configuration in its own process next to diffusers
 * and prints the table). Not a test: it asserts nothing.
 *
 * usage:
 *   bench_transformer write DIR LAYOUT_DIR [--layers N] [--seed S]
 *       A model directory: LAYOUT_DIR/config.json with num_layers N (default 2) and, for every
 *       tensor of LAYOUT_DIR/layout.json outside blocks >= N, a random F32 tensor of its shape
 *       (linear weights and biases uniform in +-1/sqrt(fan_in) as torch initializes them, norm
 *       weights 1, scale_shift_tables N(0, 1) / sqrt(dim)), in DIR/diffusion_pytorch_model.safetensors.
 *   bench_transformer run DIR --mode lora|full|fwd [--threads N] [--steps N] [--checkpoint]
 *                     [--latent F H W] [--text L] [--rank R] [--f32] [--save DIR]
 *       lora: BF16 frozen base, BF16 compute, LoRA rank R (32; alpha = R) on the default targets,
 *             forward + backward (adapter gradients); full: F32 weights, every parameter
 *             trainable, forward + backward; fwd: BF16 weights and compute, forward only (a
 *             sampling step); --f32: lora and fwd with F32 weights (mapped) and compute instead.
 *             One warm-up step, then --steps timed ones (3); the median counts
 *             (--steps 0: the warm-up step alone, for memory).
 *             Latent [1, 16, F, H, W] (default 5 32 48: 17 frames of 256x384, 1,920 tokens), L
 *             text rows (512), timestep 500, dL/dout random. --save DIR writes x.npy, ctx.npy,
 *             dout.npy and out.npy (the warm-up step's output) for the diffusers run to compare.
 *   bench_transformer attn [--tokens S] [--keys K] [--threads N] [--reps N] [--bf16]
 *       dfm_op_sdpa and dfm_op_sdpa_bwd, 12 heads x 128, token-major [1, S, 12, 128] F32 as the
 *       model calls them (S = 32,760: 480x832x81), K keys (default S: self-attention; 512: the
 *       text cross-attention); --bf16: BF16 compute (bf16 operands, as the model's bf16 runs).
 *       The first call is timed unless --reps > 0 (then the best of reps after it). GFLOP/s count
 *       the GEMMs run: 4 S K H D forward, 10 S K H D backward (the scores recomputed).
 *   bench_transformer gemm [--threads N]
 *       OpenBLAS sgemm on the FFN's shape (1920 x 1536 by 8960 x 1536^T): the machine's f32 GEMM
 *       rate now, with these threads.
 * Each prints one line of key=value pairs on stdout. Memory from /proc/self/status: VmHWM (peak
 * resident, allocated + mapped file pages) over the whole process (peak_mib) and over the steps
 * alone (step_peak_mib: the peak is reset after loading), RssAnon and RssFile after the steps.
 */
#include "base/buf.h"
#include "base/error.h"
#include "base/rng.h"
#include "io/npy.h"
#include "io/safetensors.h"
#include "models/wan/transformer.h"
#include "tensor/ops.h"

#include <cblas.h>
#include <cjson/cJSON.h>
#include <math.h>
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

/* a /proc/self/status field in MiB ("VmHWM", "RssAnon", "RssFile") */
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

/* reset VmHWM to the current RSS (Linux >= 4.0); 0 on success */
static int reset_peak(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return -1;
    int ok = fputs("5", f) >= 0;
    return fclose(f) == 0 && ok ? 0 : -1;
}

static int die(const char *what)
{
    fprintf(stderr, "bench_transformer: %s: %s\n", what, dfm_errmsg());
    return 1;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* ---- write: a random-weight model directory ---------------------------------------------------- */

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void fill_uniform(float *p, size_t n, float amp, uint64_t seed)
{
    for (size_t i = 0; i < n; i++) p[i] = amp * (2.0f * (float)((double)(splitmix(&seed) >> 11) / 9007199254740992.0) - 1.0f);
}

/* blocks.<i>.… with i >= layers: not in this model */
static int outside(const char *name, int layers)
{
    return !strncmp(name, "blocks.", 7) && atoi(name + 7) >= layers;
}

static int cmd_write(int argc, char **argv)
{
    if (argc < 4) return fprintf(stderr, "usage: bench_transformer write DIR LAYOUT_DIR [--layers N] [--seed S]\n"), 2;
    const char *dir = argv[2], *layout = argv[3];
    int layers = 2;
    uint64_t seed = 1;
    for (int i = 4; i < argc; i++) {
        if (!strcmp(argv[i], "--layers") && i + 1 < argc) layers = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc) seed = strtoull(argv[++i], NULL, 10);
        else return fprintf(stderr, "bench_transformer: unknown argument '%s'\n", argv[i]), 2;
    }
    char path[4096];
    dfm_buf cb = {0}, lb = {0};
    snprintf(path, sizeof path, "%s/config.json", layout);
    if (dfm_read_file(path, 1 << 20, &cb) < 0) return die(path);
    snprintf(path, sizeof path, "%s/layout.json", layout);
    if (dfm_read_file(path, 1 << 24, &lb) < 0) return die(path);
    cJSON *cfg = cJSON_ParseWithLength((const char *)cb.data, cb.len), *lay = cJSON_ParseWithLength((const char *)lb.data, lb.len);
    if (!cfg || !lay) return fprintf(stderr, "bench_transformer: %s: bad JSON\n", layout), 1;
    cJSON_ReplaceItemInObjectCaseSensitive(cfg, "num_layers", cJSON_CreateNumber(layers));
    int dim = cJSON_GetObjectItemCaseSensitive(cfg, "num_attention_heads")->valueint *
              cJSON_GetObjectItemCaseSensitive(cfg, "attention_head_dim")->valueint;
    char *cj = cJSON_Print(cfg);
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (dfm_write_file_atomic(path, cj, strlen(cj)) < 0) return die(path);
    free(cj);

    int n = 0, cap = cJSON_GetArraySize(lay);
    dfm_st_entry *e = calloc((size_t)cap, sizeof *e);
    float **data = calloc((size_t)cap, sizeof *data);
    size_t total = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, lay)
    {
        if (outside(it->string, layers)) continue;
        const cJSON *shape = cJSON_GetObjectItemCaseSensitive(it, "shape"), *s;
        dfm_st_entry *t = &e[n];
        t->name = it->string, t->dtype = DFM_F32;
        size_t numel = 1;
        cJSON_ArrayForEach(s, shape) numel *= (size_t)(t->shape[t->ndim++] = (int64_t)s->valuedouble);
        float *p = malloc(numel * sizeof(float));
        if (!p) return fprintf(stderr, "bench_transformer: out of memory\n"), 1;
        size_t len = strlen(t->name);
        int is_bias = len > 5 && !strcmp(t->name + len - 5, ".bias");
        int norm_w = t->ndim == 1 && !is_bias && strstr(t->name, "norm"); /* norm_q, norm_k, norm2 */
        if (strstr(t->name, "scale_shift_table")) {
            dfm_randn(seed, (uint64_t)n, p, numel);
            for (size_t i = 0; i < numel; i++) p[i] /= sqrtf((float)dim);
        } else if (norm_w) {
            for (size_t i = 0; i < numel; i++) p[i] = 1.0f;
        } else if (is_bias && strstr(t->name, ".norm2.")) {
            memset(p, 0, numel * sizeof(float));
        } else {
            /* fan_in: the weight's elements per output row; a bias takes its weight's */
            double fan_in = 1;
            if (is_bias) {
                char wn[512];
                snprintf(wn, sizeof wn, "%.*s.weight", (int)(len - 5), t->name);
                const cJSON *w = cJSON_GetObjectItemCaseSensitive(lay, wn);
                const cJSON *ws = w ? cJSON_GetObjectItemCaseSensitive(w, "shape") : NULL;
                int k = 0;
                cJSON_ArrayForEach(s, ws) if (k++) fan_in *= s->valuedouble;
            } else {
                for (int k = 1; k < t->ndim; k++) fan_in *= (double)t->shape[k];
            }
            fill_uniform(p, numel, (float)(1.0 / sqrt(fan_in)), seed * 1000003u + (uint64_t)n);
        }
        t->data = data[n] = p;
        total += numel * sizeof(float);
        n++;
    }
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", dir);
    if (dfm_st_write(path, e, n, "{\"format\":\"pt\"}") < 0) return die(path);
    printf("tensors=%d layers=%d bytes=%zu\n", n, layers, total);
    for (int i = 0; i < n; i++) free(data[i]);
    free(data), free(e);
    cJSON_Delete(cfg), cJSON_Delete(lay);
    dfm_buf_free(&cb), dfm_buf_free(&lb);
    return 0;
}

/* ---- run: timed steps of one mode --------------------------------------------------------------- */

static int save_npy(const char *dir, const char *name, const dfm_tensor *t)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = dfm_npy_build(DFM_NPY_F32, t->ndim, t->shape, t->data, &buf, &len);
    if (!rc) rc = dfm_write_file_atomic(path, buf, len);
    free(buf);
    return rc;
}

static int cmd_run(int argc, char **argv)
{
    if (argc < 3) return fprintf(stderr, "usage: bench_transformer run DIR --mode lora|full|fwd [options]\n"), 2;
    const char *dir = argv[2], *mode = "lora", *save = NULL;
    int threads = 0, steps = 3, ckpt = 0, rank = 32, f32 = 0;
    int64_t F = 5, H = 32, W = 48, L = 512;
    for (int i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "--mode") && i + 1 < argc) mode = argv[++i];
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--checkpoint")) ckpt = 1;
        else if (!strcmp(argv[i], "--f32")) f32 = 1;
        else if (!strcmp(argv[i], "--latent") && i + 3 < argc) F = atoll(argv[++i]), H = atoll(argv[++i]), W = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--text") && i + 1 < argc) L = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--rank") && i + 1 < argc) rank = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--save") && i + 1 < argc) save = argv[++i];
        else return fprintf(stderr, "bench_transformer: unknown argument '%s'\n", argv[i]), 2;
    }
    int lora = !strcmp(mode, "lora"), full = !strcmp(mode, "full"), fwd = !strcmp(mode, "fwd");
    if (!lora && !full && !fwd) return fprintf(stderr, "bench_transformer: --mode lora, full or fwd\n"), 2;
    if (steps < 0) steps = 0;
    dfm_ops_set_threads(threads);

    double t0 = now();
    dfm_wan_transformer *m = NULL;
    dfm_dtype dt = full || f32 ? DFM_F32 : DFM_BF16;
    dfm_wan_transformer_opts o = {.device = DFM_CPU, .weights = dt, .compute = dt, .trainable = full};
    if (dfm_wan_transformer_load(&m, dir, &o) < 0) return die(dir);
    int adapters = 0;
    if (lora && dfm_wan_transformer_lora_add(m, NULL, rank, (float)rank, 0.0f, 1, &adapters) < 0) return die("lora");
    /* sampling: the frozen weights packed once and the unpacked copies freed (LoRA training keeps
     * them as loaded: packing them too would double the base's memory for ~2% of the step) */
    if (fwd && dfm_wan_transformer_pack(m, 1, NULL) < 0) return die("pack");
    double t_load = now() - t0;
    const dfm_wan_transformer_config *c = dfm_wan_transformer_get_config(m);
    size_t owned = 0, mapped = 0, trained = 0;
    dfm_wan_transformer_memory(m, &owned, &mapped);
    for (int i = 0; i < dfm_wan_transformer_nparams(m); i++) {
        dfm_tensor *g = NULL;
        dfm_wan_transformer_param(m, i, NULL, &g);
        if (g && g->data) trained += (size_t)dfm_tensor_numel(g);
    }

    /* inputs: x, ctx, dout standard normals (ctx scaled as text states are) */
    dfm_tensor x, ctx, dout;
    int64_t sx[5] = {1, c->in_channels, F, H, W}, sc[3] = {1, L, c->text_dim}, so[5] = {1, c->out_channels, F, H, W};
    if (dfm_tensor_alloc(&x, DFM_F32, DFM_CPU, 5, sx) || dfm_tensor_alloc(&ctx, DFM_F32, DFM_CPU, 3, sc) ||
        dfm_tensor_alloc(&dout, DFM_F32, DFM_CPU, 5, so))
        return die("inputs");
    dfm_randn(7, 0, x.data, (size_t)dfm_tensor_numel(&x));
    dfm_randn(7, 1, ctx.data, (size_t)dfm_tensor_numel(&ctx));
    dfm_randn(7, 2, dout.data, (size_t)dfm_tensor_numel(&dout));
    for (int64_t i = 0; i < dfm_tensor_numel(&ctx); i++) ((float *)ctx.data)[i] *= 0.1f;
    float t = 500.0f;
    if (save && (save_npy(save, "x.npy", &x) || save_npy(save, "ctx.npy", &ctx) || save_npy(save, "dout.npy", &dout)))
        return die(save);
    double hwm_load = status_mib("VmHWM");
    int peak_reset = reset_peak() == 0;

    double *ts = calloc((size_t)steps + 1, sizeof *ts);
    for (int s = 0; s <= steps; s++) { /* step 0 warms up */
        double ta = now();
        dfm_tensor out;
        if (fwd) {
            if (dfm_wan_transformer_forward(m, &x, &t, &ctx, &out, NULL, 0, 0) < 0) return die("forward");
        } else {
            dfm_wan_acts *acts = NULL;
            if (dfm_wan_transformer_zero_grads(m) < 0) return die("zero_grads");
            if (dfm_wan_transformer_forward(m, &x, &t, &ctx, &out, &acts, ckpt, (uint64_t)s) < 0) return die("forward");
            if (dfm_wan_transformer_backward(m, acts, &dout, NULL, NULL) < 0) return die("backward");
        }
        ts[s] = now() - ta;
        if (s == 0 && save && save_npy(save, "out.npy", &out)) return die(save);
        dfm_tensor_free(&out);
    }
    double first = ts[0];
    qsort(ts + 1, (size_t)steps, sizeof *ts, cmp_double);
    double med = !steps ? ts[0] : steps % 2 ? ts[1 + steps / 2] : 0.5 * (ts[steps / 2] + ts[steps / 2 + 1]);
    double hwm = status_mib("VmHWM");
    printf("mode=%s f32=%d layers=%d tokens=%lld text=%lld checkpoint=%d threads=%d steps=%d step_s=%.4f min_s=%.4f "
           "first_s=%.4f load_s=%.3f peak_mib=%.1f step_peak_mib=%.1f load_peak_mib=%.1f anon_mib=%.1f file_mib=%.1f "
           "owned_mib=%.1f mapped_mib=%.1f trained=%zu adapters=%d\n",
           mode, dt == DFM_F32, c->num_layers, (long long)(F * H * W / 4), (long long)L, ckpt, dfm_ops_threads(), steps, med, ts[steps ? 1 : 0],
           first, t_load, peak_reset ? fmax(hwm, hwm_load) : hwm, peak_reset ? hwm : -1.0, hwm_load,
           status_mib("RssAnon"), status_mib("RssFile"), owned / 1048576.0, mapped / 1048576.0, trained, adapters);
    free(ts);
    dfm_tensor_free(&x), dfm_tensor_free(&ctx), dfm_tensor_free(&dout);
    dfm_wan_transformer_free(m);
    return 0;
}

/* ---- attn: the attention op alone ----------------------------------------------------------------- */

static int cmd_attn(int argc, char **argv)
{
    int threads = 0, reps = 0, bf16 = 0;
    int64_t S = 32760, K = -1, Hh = 12, Dh = 128;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--tokens") && i + 1 < argc) S = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--keys") && i + 1 < argc) K = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--bf16")) bf16 = 1;
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else return fprintf(stderr, "bench_transformer: unknown argument '%s'\n", argv[i]), 2;
    }
    if (K < 0) K = S;
    dfm_ops_set_threads(threads);
    const dfm_compute bf = {.dtype = DFM_BF16}, *cc = bf16 ? &bf : NULL;
    int64_t sh[4] = {1, S, Hh, Dh}, shk[4] = {1, K, Hh, Dh}, sl[1] = {Hh * S};
    dfm_tensor q, k, v, o, lse, dout, dq, dk, dv;
    dfm_tensor *all[] = {&q, &k, &v, &o, &dout, &dq, &dk, &dv};
    for (int i = 0; i < 8; i++)
        if (dfm_tensor_alloc(all[i], DFM_F32, DFM_CPU, 4, all[i] == &k || all[i] == &v || all[i] == &dk || all[i] == &dv ? shk : sh))
            return die("alloc");
    if (dfm_tensor_alloc(&lse, DFM_F32, DFM_CPU, 1, sl)) return die("alloc");
    size_t n = (size_t)dfm_tensor_numel(&q), nk = (size_t)dfm_tensor_numel(&k);
    dfm_randn(3, 0, q.data, n), dfm_randn(3, 1, k.data, nk), dfm_randn(3, 2, v.data, nk), dfm_randn(3, 3, dout.data, n);
    for (int i = 3; i < 8; i++) memset(all[i]->data, 0, dfm_tensor_nbytes(all[i])); /* resident, as the operands */
    memset(lse.data, 0, dfm_tensor_nbytes(&lse));
    double base = status_mib("VmRSS");
    reset_peak();
    float scale = 1.0f / sqrtf((float)Dh);
    double tf = 1e30, tb = 1e30;
    for (int r = 0; r <= reps; r++) {
        double t = now();
        if (dfm_op_sdpa(cc, &q, &k, &v, NULL, scale, 1, &o, &lse) < 0) return die("sdpa");
        t = now() - t;
        if ((r || !reps) && t < tf) tf = t;
        t = now();
        if (dfm_op_sdpa_bwd(cc, &q, &k, &v, NULL, scale, 1, &o, &lse, &dout, &dq, &dk, &dv) < 0) return die("sdpa_bwd");
        t = now() - t;
        if ((r || !reps) && t < tb) tb = t;
    }
    double hwm = status_mib("VmHWM");
    double f = (double)S * K * Hh * Dh;
    printf("tokens=%lld keys=%lld heads=%lld head_dim=%lld compute=%s threads=%d fwd_s=%.4f bwd_s=%.4f fwd_gflops=%.1f "
           "bwd_gflops=%.1f operands_mib=%.1f base_mib=%.1f peak_mib=%.1f extra_mib=%.1f\n",
           (long long)S, (long long)K, (long long)Hh, (long long)Dh, bf16 ? "bf16" : "f32", dfm_ops_threads(), tf, tb,
           4 * f / tf / 1e9, 10 * f / tb / 1e9, 4.0 * (n + nk) * 4 / 1048576.0, base, hwm, hwm - base);
    for (int i = 0; i < 8; i++) dfm_tensor_free(all[i]);
    dfm_tensor_free(&lse);
    return 0;
}

/* ---- gemm: the machine's f32 GEMM rate ---------------------------------------------------------- */

static int cmd_gemm(int argc, char **argv)
{
    int threads = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else return fprintf(stderr, "bench_transformer: unknown argument '%s'\n", argv[i]), 2;
    }
    dfm_ops_set_threads(threads); /* also OpenBLAS's threads */
    int m = 1920, n = 8960, k = 1536;
    float *a = malloc((size_t)m * k * 4), *b = malloc((size_t)n * k * 4), *y = malloc((size_t)m * n * 4);
    if (!a || !b || !y) return 1;
    fill_uniform(a, (size_t)m * k, 1.0f, 1), fill_uniform(b, (size_t)n * k, 1.0f, 2);
    double best = 1e30;
    for (int r = 0; r < 4; r++) {
        double t = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, a, k, b, k, 0.0f, y, n);
        t = now() - t;
        if (r && t < best) best = t;
    }
    printf("threads=%d m=%d n=%d k=%d sgemm_gflops=%.1f\n", dfm_ops_threads(), m, n, k, 2.0 * m * n * k / best / 1e9);
    free(a), free(b), free(y);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "write")) return cmd_write(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "run")) return cmd_run(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "attn")) return cmd_attn(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "gemm")) return cmd_gemm(argc, argv);
    fprintf(stderr, "usage: bench_transformer write|run|attn|gemm ... (see the top of scripts/bench_transformer.c)\n");
    return 2;
}
