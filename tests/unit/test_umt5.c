/* test_umt5.c — parity of the UMT5 encoder with transformers' UMT5EncoderModel.
 *
 * Fixtures (scripts/make-umt5-fixtures.py): tests/fixtures/umt5/<model>/ is a save_pretrained
 * directory ("tiny": fp32, one file, shared.weight; "odd": bf16 on disk, 4 shards,
 * encoder.embed_tokens.weight, heads * d_kv != d_model, 16 buckets / distance 64) with
 * buckets.npy (transformers' bucket of r = -600..600) and cases/<case>/{ids,out,out_bf16}.npy
 * (1, 7, 40 and 200 tokens). Every model is loaded through the production loader.
 *
 * Bounds (outputs are O(1), up to |6.6|):
 *   f32:  max abs error 1e-4 against transformers fp32 (measured: 6.8e-6 worst, 200 tokens).
 *   bf16: our BF16 mode (bf16 weights, GEMM inputs rounded to bf16, f32 everything else) against
 *         the fp32 reference: bound 0.25 (measured 1.1e-1 on "tiny", whose fp32 weights change
 *         when rounded; 3.1e-2 on "odd", stored bf16); against transformers' own bfloat16 run
 *         (every op rounded to bf16): bound 0.25 (measured 1.3e-1). And where a torch bf16 run
 *         exists, our distance to fp32 must not exceed 1.5x torch bf16's own distance to fp32
 *         (measured ratio <= 0.95: we are at least as close to fp32 as transformers in bf16).
 *   The bf16 results of the packed-weight GEMM (default) and of keep_mapped (OpenBLAS on weights
 *   rounded per block) differ only in f32 summation order, but a 1-ulp f32 difference can flip
 *   the bf16 rounding of an activation (2^-8 relative) and later layers carry it: bound 5e-2
 *   (measured 1.2e-2; in f32 the same two paths agree to the 1e-4 parity bound above).
 */
#define TINY_VOCAB 1024 /* scripts/make-umt5-fixtures.py "tiny" */
#include "test.h"
#include "tensor_util.h"
#include "base/error.h"
#include "io/npy.h"
#include "io/safetensors.h"
#include "models/wan/umt5.h"
#include "tensor/ops.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define F32_BOUND 1e-4
#define BF16_VS_F32_BOUND 2.5e-1
#define BF16_VS_TORCH_BF16_BOUND 2.5e-1
#define BF16_PATHS_BOUND 5e-2

static const char *const MODELS[] = {"tiny", "odd"};
#define N_MODELS 2

static void model_dir(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/umt5/%s", dfm_test_fixtures(), name);
}

static int g_quiet; /* run_model prints no per-case lines */

/* ---- buckets ------------------------------------------------------------------------------- */

TEST(umt5_rel_buckets)
{
    for (int mi = 0; mi < N_MODELS; mi++) {
        char d[512];
        model_dir(d, sizeof d, MODELS[mi]);
        dfm_umt5_config c;
        CHECK_EQ(dfm_umt5_config_load(&c, d), 0);
        dfm_tensor b;
        if (dfm_test_load_npy(d, "buckets.npy", &b, 0)) {
            CHECK(0);
            continue;
        }
        CHECK(b.dtype == DFM_I32 && b.shape[0] == 1201);
        const int32_t *ref = b.data;
        int bad = 0;
        for (int r = -600; r <= 600; r++) {
            int got = dfm_umt5_rel_bucket(r, c.rel_buckets, c.rel_max_distance);
            if (got != ref[r + 600] && bad++ < 5)
                fprintf(stderr, "  %s: r %d: bucket %d, transformers %d\n", MODELS[mi], r, got, ref[r + 600]);
        }
        CHECK_EQ(bad, 0);
        dfm_tensor_free(&b);
    }
    /* Wan's UMT5-XXL (32 buckets, distance 128), |r| -> bucket as wan.md 3.2 tabulates it,
     * including the exact powers 16, 32, 64 that land on the upper bucket */
    static const int edge[][2] = {{7, 7}, {8, 8}, {11, 8}, {12, 9}, {15, 9}, {16, 10}, {22, 10}, {23, 11},
                                  {31, 11}, {32, 12}, {45, 12}, {46, 13}, {63, 13}, {64, 14}, {90, 14},
                                  {91, 15}, {128, 15}, {100000, 15}};
    for (size_t i = 0; i < sizeof edge / sizeof edge[0]; i++) {
        CHECK_EQ(dfm_umt5_rel_bucket(-edge[i][0], 32, 128), edge[i][1]);
        CHECK_EQ(dfm_umt5_rel_bucket(edge[i][0], 32, 128), 16 + edge[i][1]);
    }
    CHECK_EQ(dfm_umt5_rel_bucket(0, 32, 128), 0);
}

/* ---- parity -------------------------------------------------------------------------------- */

typedef struct {
    double f32, bf16_f32, bf16_torch, bf16_paths;
    int cases, bf16_cases;
} worst_t;

/* Encode every case of model dir `d` with the options; compare with out.npy (and out_bf16.npy
 * in BF16 mode). keep: when non-NULL, the outputs are appended there (to compare two loads). */
static void run_model(const char *d, const dfm_umt5_opts *o, worst_t *w, dfm_tensor *keep, int *nkeep)
{
    dfm_umt5 *m = NULL;
    int rc = dfm_umt5_load(&m, d, o);
    CHECK_EQ(rc, 0);
    if (rc) {
        fprintf(stderr, "  %s\n", dfm_errmsg());
        return;
    }
    char cdir[1024];
    snprintf(cdir, sizeof cdir, "%s/cases", d);
    DIR *dir = opendir(cdir);
    CHECK(dir != NULL);
    struct dirent *e;
    while (dir && (e = readdir(dir))) {
        char c[1200];
        snprintf(c, sizeof c, "%s/%s", cdir, e->d_name);
        if (e->d_name[0] == '.' || !dfm_test_is_dir(c)) continue;
        dfm_tensor ids, ref, refb = {0}, out;
        if (dfm_test_load_npy(c, "ids.npy", &ids, 0) || dfm_test_load_npy(c, "out.npy", &ref, 0)) {
            CHECK(0);
            continue;
        }
        int have_b = dfm_test_load_npy(c, "out_bf16.npy", &refb, 1) == 0;
        rc = dfm_umt5_encode(m, ids.data, (int)ids.shape[0], &out);
        CHECK_EQ(rc, 0);
        if (rc) {
            fprintf(stderr, "  %s: %s\n", c, dfm_errmsg());
        } else if (o->weights == DFM_F32) {
            double e32 = dfm_test_max_abs_diff(&out, &ref);
            if (!g_quiet)
                fprintf(stderr, "  %-28s n %3lld  f32 %.2e\n", c + strlen(dfm_test_fixtures()) + 1,
                    (long long)ids.shape[0], e32);
            CHECK(e32 <= F32_BOUND);
            if (e32 > w->f32) w->f32 = e32;
            w->cases++;
        } else {
            double eb = dfm_test_max_abs_diff(&out, &ref), et = have_b ? dfm_test_max_abs_diff(&out, &refb) : 0;
            if (!g_quiet) {
                fprintf(stderr, "  %-28s n %3lld  bf16 vs f32 %.2e", c + strlen(dfm_test_fixtures()) + 1,
                        (long long)ids.shape[0], eb);
                if (have_b)
                    fprintf(stderr, ", vs torch bf16 %.2e (torch bf16 vs f32 %.2e)", et, dfm_test_max_abs_diff(&refb, &ref));
                fprintf(stderr, "\n");
            }
            CHECK(eb <= BF16_VS_F32_BOUND);
            CHECK(et <= BF16_VS_TORCH_BF16_BOUND);
            if (have_b) CHECK(eb <= 1.5 * dfm_test_max_abs_diff(&refb, &ref));
            if (eb > w->bf16_f32) w->bf16_f32 = eb;
            if (et > w->bf16_torch) w->bf16_torch = et;
            w->cases++;
            w->bf16_cases += have_b;
        }
        if (!rc && keep) keep[(*nkeep)++] = out;
        else if (!rc) dfm_tensor_free(&out);
        dfm_tensor_free(&ids), dfm_tensor_free(&ref), dfm_tensor_free(&refb);
    }
    if (dir) closedir(dir);
    dfm_umt5_free(m);
}

TEST(umt5_parity_f32)
{
    worst_t w = {0};
    dfm_umt5_opts o = {.device = DFM_CPU, .weights = DFM_F32};
    for (int mi = 0; mi < N_MODELS; mi++) {
        char d[512];
        model_dir(d, sizeof d, MODELS[mi]);
        run_model(d, &o, &w, NULL, NULL);
    }
    fprintf(stderr, "  f32: %d cases, worst max abs error %.2e (bound %.0e)\n", w.cases, w.f32, F32_BOUND);
    CHECK_EQ(w.cases, 8);
}

TEST(umt5_parity_bf16)
{
    worst_t w = {0};
    for (int mi = 0; mi < N_MODELS; mi++) {
        char d[512];
        model_dir(d, sizeof d, MODELS[mi]);
        dfm_tensor a[8] = {{0}}, b[8] = {{0}};
        int na = 0, nb = 0;
        dfm_umt5_opts o = {.device = DFM_CPU, .weights = DFM_BF16};
        run_model(d, &o, &w, a, &na);
        o.keep_mapped = 1; /* the same bf16 numbers, through the unpacked GEMM (OpenBLAS) */
        worst_t w2 = {0};
        g_quiet = 1;
        run_model(d, &o, &w2, b, &nb);
        g_quiet = 0;
        CHECK_EQ(na, nb);
        for (int i = 0; i < na && i < nb; i++) {
            double e = dfm_test_max_abs_diff(&a[i], &b[i]);
            if (e > w.bf16_paths) w.bf16_paths = e;
            dfm_tensor_free(&a[i]), dfm_tensor_free(&b[i]);
        }
    }
    fprintf(stderr, "  bf16 packed vs keep_mapped: worst max abs difference %.2e (bound %.0e)\n", w.bf16_paths,
            BF16_PATHS_BOUND);
    CHECK(w.bf16_paths <= BF16_PATHS_BOUND);
    fprintf(stderr, "  bf16: %d cases, worst vs f32 %.2e (bound %.2g), worst vs torch bf16 %.2e over %d cases (bound %.2g)\n",
            w.cases, w.bf16_f32, BF16_VS_F32_BOUND, w.bf16_torch, w.bf16_cases, BF16_VS_TORCH_BF16_BOUND);
    CHECK_EQ(w.cases, 8);
    CHECK_EQ(w.bf16_cases, 4);
}

/* ---- loading forms and memory accounting --------------------------------------------------- */

static int write_text(const char *path, const char *text)
{
    return dfm_write_file_atomic(path, text, strlen(text));
}

TEST(umt5_load_forms)
{
    char src[512], root[600], link[700];
    model_dir(src, sizeof src, "tiny");
    char abs[1024];
    CHECK(realpath(src, abs) != NULL);
    /* a diffusers root whose model_index.json lists text_encoder */
    snprintf(root, sizeof root, "%s/umt5_root", dfm_test_tmpdir());
    CHECK_EQ(mkdir(root, 0755), 0);
    snprintf(link, sizeof link, "%s/text_encoder", root);
    CHECK_EQ(symlink(abs, link), 0);
    char idx[700];
    snprintf(idx, sizeof idx, "%s/model_index.json", root);
    CHECK_EQ(write_text(idx, "{\"_class_name\": \"WanPipeline\", \"text_encoder\": [\"transformers\", "
                             "\"UMT5EncoderModel\"], \"vae\": [\"diffusers\", \"AutoencoderKLWan\"]}"),
             0);
    dfm_umt5 *m = NULL;
    dfm_umt5_opts o = {.device = DFM_CPU, .weights = DFM_F32};
    CHECK_EQ(dfm_umt5_load(&m, root, &o), 0);
    if (!m) {
        fprintf(stderr, "  %s\n", dfm_errmsg());
        return;
    }
    const dfm_umt5_config *c = dfm_umt5_get_config(m);
    CHECK_EQ(c->d_model, 64);
    CHECK_EQ(c->num_layers, 3);
    CHECK_EQ(c->vocab_size, TINY_VOCAB);
    CHECK(c->gated_gelu);
    /* F32 from an F32 file: GEMM weights packed (owned, same bytes: every dimension is a multiple
     * of 16), the table in place; norms and biases copied */
    size_t owned, mapped;
    dfm_umt5_memory(m, &owned, &mapped);
    int64_t d = 64, inner = 64, ff = 128, L = 3;
    size_t gemm = (size_t)(L * (4 * inner * d + 3 * ff * d)) * 4, table = (size_t)(TINY_VOCAB * d) * 4;
    size_t small = (size_t)(L * (2 * d + 32 * 4) + d) * 4;
    CHECK_EQ(mapped, table);
    CHECK_EQ(owned, small + gemm);
    dfm_umt5_free(m);
    /* keep_mapped: the GEMM weights used in place */
    o.keep_mapped = 1;
    CHECK_EQ(dfm_umt5_load(&m, root, &o), 0);
    if (m) {
        dfm_umt5_memory(m, &owned, &mapped);
        CHECK_EQ(mapped, gemm + table);
        CHECK_EQ(owned, small);
        dfm_umt5_free(m);
    }
    /* BF16: GEMM weights packed as bf16 (half the bytes), the table still in place */
    o.weights = DFM_BF16, o.keep_mapped = 0;
    CHECK_EQ(dfm_umt5_load(&m, root, &o), 0);
    if (m) {
        dfm_umt5_memory(m, &owned, &mapped);
        CHECK_EQ(mapped, table);
        CHECK_EQ(owned, small + gemm / 2);
        dfm_umt5_free(m);
    }
    /* the odd model stores bf16: packed by default (rows padded to panels of 16), in place with
     * keep_mapped */
    model_dir(src, sizeof src, "odd");
    for (int km = 0; km < 2; km++) {
        o.keep_mapped = km;
        CHECK_EQ(dfm_umt5_load(&m, src, &o), 0);
        if (!m) continue;
        dfm_umt5_memory(m, &owned, &mapped);
        c = dfm_umt5_get_config(m);
        int64_t D = c->d_model, I = (int64_t)c->num_heads * c->d_kv, F = c->d_ff, N = c->num_layers;
        size_t tab = (size_t)(c->vocab_size * D) * 2;
#define PAD16(n) (((n) + 15) / 16 * 16)
        size_t packed = (size_t)(N * (3 * PAD16(I) * D + PAD16(D) * I + 2 * PAD16(F) * D + PAD16(D) * F)) * 2;
#undef PAD16
        size_t norms = (size_t)(N * (2 * D + c->rel_buckets * c->num_heads) + D) * 4;
        CHECK_EQ(mapped, km ? (size_t)(N * (4 * I * D + 3 * F * D)) * 2 + tab : tab);
        CHECK_EQ(owned, km ? norms : norms + packed);
        dfm_umt5_free(m);
    }
}

/* ---- errors -------------------------------------------------------------------------------- */

typedef enum { DROP, RESHAPE, EXTRA, NO_EMBED } mutation;

/* A copy of the tiny model in tmp/<name>/ with one change to its tensors; config text replaced
 * by `config` when given. Returns 0 when written. */
static int mutate(const char *name, mutation mu, const char *tensor, const char *config, char *out, size_t n)
{
    char src[512];
    model_dir(src, sizeof src, "tiny");
    snprintf(out, n, "%s/%s", dfm_test_tmpdir(), name);
    if (mkdir(out, 0755) != 0) return -1;
    char p[1200];
    dfm_buf cfg = {0};
    snprintf(p, sizeof p, "%s/config.json", src);
    if (dfm_read_file(p, 0, &cfg) < 0) return -1;
    snprintf(p, sizeof p, "%s/config.json", out);
    int rc = config ? write_text(p, config) : dfm_write_file_atomic(p, cfg.data, cfg.len);
    dfm_buf_free(&cfg);
    if (rc) return rc;
    dfm_st *st = NULL;
    if (dfm_st_open(&st, src)) return -1;
    int cnt = dfm_st_count(st), k = 0;
    dfm_st_entry *e = calloc((size_t)cnt + 1, sizeof *e);
    static float extra[16];
    for (int i = 0; i < cnt; i++) {
        const dfm_st_tensor *t = dfm_st_at(st, i);
        int hit = tensor && !strcmp(t->name, tensor);
        if ((mu == DROP && hit) || (mu == NO_EMBED && !strcmp(t->name, "shared.weight"))) continue;
        e[k] = (dfm_st_entry){t->name, t->dtype, t->ndim, {0}, t->data};
        memcpy(e[k].shape, t->shape, sizeof t->shape);
        if (mu == RESHAPE && hit) e[k].shape[1] /= 2, e[k].shape[0] *= 2; /* same bytes, wrong shape */
        k++;
    }
    if (mu == EXTRA) e[k++] = (dfm_st_entry){tensor, DFM_F32, 1, {16}, extra};
    snprintf(p, sizeof p, "%s/model.safetensors", out);
    rc = dfm_st_write(p, e, k, "{\"format\":\"pt\"}");
    free(e);
    dfm_st_close(st);
    return rc;
}

/* Loading dir fails with code `want` and a message holding every string in `has` (NULL-ended). */
static void expect_fail(const char *dir, int want, const char *const *has)
{
    dfm_umt5 *m = NULL;
    dfm_umt5_opts o = {.device = DFM_CPU, .weights = DFM_F32};
    int rc = dfm_umt5_load(&m, dir, &o);
    CHECK_EQ(rc, want);
    CHECK(m == NULL);
    const char *msg = dfm_errmsg();
    for (int i = 0; has[i]; i++)
        if (!strstr(msg, has[i])) {
            fprintf(stderr, "  message lacks '%s': %s\n", has[i], msg);
            CHECK(0);
        }
    dfm_umt5_free(m);
}

TEST(umt5_load_errors)
{
    char d[700];
    const char *wo = "encoder.block.1.layer.1.DenseReluDense.wo.weight";
    const char *q = "encoder.block.0.layer.0.SelfAttention.q.weight";
    CHECK_EQ(mutate("missing", DROP, wo, NULL, d, sizeof d), 0);
    expect_fail(d, DFM_E_FORMAT, (const char *[]){wo, "not found", NULL});
    CHECK_EQ(mutate("shape", RESHAPE, q, NULL, d, sizeof d), 0);
    expect_fail(d, DFM_E_FORMAT, (const char *[]){q, "[128,32]", "[64,64]", NULL});
    const char *x = "encoder.block.3.layer.0.SelfAttention.q.weight";
    CHECK_EQ(mutate("extra", EXTRA, x, NULL, d, sizeof d), 0);
    expect_fail(d, DFM_E_FORMAT, (const char *[]){x, "not part of the UMT5 encoder", NULL});
    CHECK_EQ(mutate("noembed", NO_EMBED, NULL, NULL, d, sizeof d), 0);
    expect_fail(d, DFM_E_FORMAT, (const char *[]){"shared.weight", "encoder.embed_tokens.weight", NULL});
    CHECK_EQ(mutate("relu", DROP, NULL,
                    "{\"architectures\": [\"UMT5EncoderModel\"], \"model_type\": \"umt5\", \"d_model\": 64, "
                    "\"d_kv\": 16, \"num_heads\": 4, \"d_ff\": 128, \"num_layers\": 3, \"vocab_size\": 1024, "
                    "\"feed_forward_proj\": \"relu\"}",
                    d, sizeof d),
             0);
    expect_fail(d, DFM_E_UNSUPPORTED, (const char *[]){"feed_forward_proj", "relu", NULL});
    CHECK_EQ(mutate("t5", DROP, NULL, "{\"architectures\": [\"UMT5EncoderModel\"], \"model_type\": \"t5\"}", d,
                    sizeof d),
             0);
    expect_fail(d, DFM_E_UNSUPPORTED, (const char *[]){"model_type 't5'", NULL});
    /* more layers in the config than in the file: the first missing tensor is named */
    CHECK_EQ(mutate("layers", DROP, NULL,
                    "{\"architectures\": [\"UMT5EncoderModel\"], \"model_type\": \"umt5\", \"d_model\": 64, "
                    "\"d_kv\": 16, \"num_heads\": 4, \"d_ff\": 128, \"num_layers\": 4, \"vocab_size\": 1024}",
                    d, sizeof d),
             0);
    expect_fail(d, DFM_E_FORMAT, (const char *[]){"encoder.block.3.layer.0.layer_norm.weight", NULL});
    /* not a model directory at all */
    expect_fail(dfm_test_tmpdir(), DFM_E_ARG, (const char *[]){"text_encoder", NULL});
}

TEST(umt5_encode_errors)
{
    char d[512];
    model_dir(d, sizeof d, "tiny");
    dfm_umt5 *m = NULL;
    dfm_umt5_opts o = {.device = DFM_CPU, .weights = DFM_F32};
    CHECK_EQ(dfm_umt5_load(&m, d, &o), 0);
    if (!m) return;
    dfm_tensor out;
    int32_t ids[3] = {5, TINY_VOCAB, 1};
    CHECK_EQ(dfm_umt5_encode(m, ids, 3, &out), DFM_E_ARG);
    CHECK(strstr(dfm_errmsg(), "1024") && strstr(dfm_errmsg(), "position 1"));
    ids[1] = -3;
    CHECK_EQ(dfm_umt5_encode(m, ids, 3, &out), DFM_E_ARG);
    CHECK_EQ(dfm_umt5_encode(m, ids, 0, &out), DFM_E_ARG);
    CHECK(strstr(dfm_errmsg(), "no tokens") != NULL);
    /* still usable after errors */
    ids[1] = 7;
    CHECK_EQ(dfm_umt5_encode(m, ids, 3, &out), 0);
    CHECK_EQ(out.shape[0], 3);
    CHECK_EQ(out.shape[1], 64);
    dfm_tensor_free(&out);
    dfm_umt5_free(m);
}
