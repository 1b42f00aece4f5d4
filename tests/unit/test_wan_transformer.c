/* test_wan_transformer.c — the Wan transformer (models/wan/transformer.h) against diffusers'
 * WanTransformer3DModel on the fixtures of scripts/make-wan-transformer-fixtures.py
 * (tests/fixtures/wan_transformer/README.md), loaded through the production loader:
 *   forward f32: max |out - ref| <= 1e-4 max |ref| (configs a, b, c: 1 and 3 latent frames,
 *     non-square, 2-3 heads, batch 2 with 512 zero-padded text rows, bf16 shards, eps 1e-3);
 *   forward bf16 (bf16 weights and GEMM inputs): no further from the f32 reference than 1.5x
 *     diffusers' own bf16 run is (case.json), and within 1.5e-2 of max |ref|;
 *   gradients of L = sum(out * dout): dL/dx, dL/dctx and every parameter's against torch's
 *     float64 autograd, each within 1e-4 of its own max |g| — or, where torch's own f32 autograd
 *     is more than 5e-5 off (cross-attention over b's 503 identical padded keys: gradients that are
 *     differences of nearly equal terms), within twice torch's f32 error;
 *   activation checkpointing gives bit-identical gradients;
 *   LoRA (PEFT's adapter, rank 4, alpha 8, the default targets): forward against diffusers with
 *     the adapter loaded, and the gradients of A and B against float64 autograd (as above);
 *   the original-Wan and ComfyUI layouts of a's weights give bit-identical outputs;
 *   bad inputs (shapes, a missing or unexpected tensor) are errors, not crashes. */
#include "test.h"
#include "tensor_util.h"
#include "base/error.h"
#include "io/safetensors.h"
#include "models/wan/transformer.h"
#include "nn/linear.h"
#include "tensor/finite.h"
#include "tensor/ops.h"
#include "base/dtype.h"
#include <sys/stat.h>

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static void fixture_dir(char *out, size_t n, const char *cfg) { snprintf(out, n, "%s/wan_transformer/%s", dfm_test_fixtures(), cfg); }

/* max |a - b| / max |b| over n floats */
static double rel(const float *a, const float *b, int64_t n)
{
    double s = 0, e = 0;
    for (int64_t i = 0; i < n; i++) s = fmax(s, fabs(b[i]));
    if (s == 0) s = 1;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= e)) e = isnan(d) ? INFINITY : d;
    }
    return e / s;
}

static double rel_t(const dfm_tensor *a, const dfm_tensor *b)
{
    if (dfm_tensor_numel(a) != dfm_tensor_numel(b)) return INFINITY;
    return rel(a->data, b->data, dfm_tensor_numel(a));
}

typedef struct {
    dfm_tensor x, t, ctx, out, out_bf16, dout, dx, dctx;
    double bf16_max_rel; /* diffusers' own bf16 error (case.json) */
} fixture;

static int load_fixture(const char *cfg, fixture *f)
{
    char d[512];
    fixture_dir(d, sizeof d, cfg);
    memset(f, 0, sizeof *f);
    if (dfm_test_load_npy(d, "hidden_states.npy", &f->x, 0) || dfm_test_load_npy(d, "timestep.npy", &f->t, 0) ||
        dfm_test_load_npy(d, "encoder_hidden_states.npy", &f->ctx, 0) || dfm_test_load_npy(d, "out.npy", &f->out, 0) ||
        dfm_test_load_npy(d, "out_bf16.npy", &f->out_bf16, 0) || dfm_test_load_npy(d, "dout.npy", &f->dout, 0) ||
        dfm_test_load_npy(d, "dhidden_states.npy", &f->dx, 0) || dfm_test_load_npy(d, "dencoder_hidden_states.npy", &f->dctx, 0))
        return -1;
    f->bf16_max_rel = rel_t(&f->out_bf16, &f->out);
    return 0;
}

static void free_fixture(fixture *f)
{
    dfm_tensor *ts[] = {&f->x, &f->t, &f->ctx, &f->out, &f->out_bf16, &f->dout, &f->dx, &f->dctx};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) dfm_tensor_free(ts[i]);
}

static dfm_wan_transformer *load_model(const char *path, dfm_dtype wdt, dfm_dtype cdt, int trainable, int heads)
{
    dfm_wan_transformer *m = NULL;
    dfm_wan_transformer_opts o = {.device = DFM_CPU, .weights = wdt, .compute = cdt, .trainable = trainable, .heads = heads};
    int rc = dfm_wan_transformer_load(&m, path, &o);
    if (rc) fprintf(stderr, "  load %s: %s\n", path, dfm_errmsg());
    return m;
}

TEST(wan_transformer_forward_f32_bf16)
{
    const char *cfgs[] = {"a", "b", "c"};
    for (int i = 0; i < 3; i++) {
        char d[512], td[600];
        fixture f;
        fixture_dir(d, sizeof d, cfgs[i]);
        snprintf(td, sizeof td, "%s/transformer", d);
        CHECK_EQ(load_fixture(cfgs[i], &f), 0);
        dfm_wan_transformer *m = load_model(td, DFM_F32, DFM_F32, 0, 0);
        CHECK(m != NULL);
        if (!m) continue;
        dfm_tensor out;
        CHECK_EQ(dfm_wan_transformer_forward(m, &f.x, f.t.data, &f.ctx, &out, NULL, 0, 0), 0);
        double e = rel_t(&out, &f.out);
        fprintf(stderr, "  %s: f32 forward %.2e of max|out|\n", cfgs[i], e);
        CHECK(e <= 1e-4);
        dfm_tensor_free(&out);
        dfm_wan_transformer_free(m);
        /* bf16 weights and GEMM inputs */
        m = load_model(td, DFM_BF16, DFM_BF16, 0, 0);
        CHECK(m != NULL);
        if (m) {
            CHECK_EQ(dfm_wan_transformer_forward(m, &f.x, f.t.data, &f.ctx, &out, NULL, 0, 0), 0);
            double eb = rel_t(&out, &f.out), et = rel_t(&out, &f.out_bf16);
            fprintf(stderr, "  %s: bf16 forward %.2e of max|out| from f32 (diffusers' bf16: %.2e), %.2e from diffusers' bf16\n",
                    cfgs[i], eb, f.bf16_max_rel, et);
            CHECK(eb <= 1.5 * f.bf16_max_rel);
            CHECK(eb <= 1.5e-2);
            /* the frozen weights packed once for the forward: the same bits */
            int np = 0;
            dfm_tensor out2;
            CHECK_EQ(dfm_wan_transformer_pack(m, 1, &np), 0); /* inference: the unpacked weights freed */
            CHECK_EQ(np, 10 * dfm_wan_transformer_get_config(m)->num_layers + 5); /* all but the f32 time embedder */
            CHECK_EQ(dfm_wan_transformer_forward(m, &f.x, f.t.data, &f.ctx, &out2, NULL, 0, 0), 0);
            CHECK(out2.data && !memcmp(out.data, out2.data, dfm_tensor_nbytes(&out)));
            dfm_tensor_free(&out2);
            /* no backward through dropped weights: an error, not a crash */
            dfm_wan_acts *acts = NULL;
            dfm_tensor dx = {0};
            CHECK_EQ(dfm_wan_transformer_forward(m, &f.x, f.t.data, &f.ctx, &out2, &acts, 0, 0), 0);
            CHECK_EQ(dfm_wan_transformer_backward(m, acts, &f.dout, &dx, NULL), DFM_E_ARG);
            CHECK(dx.data == NULL);
            CHECK(strstr(dfm_errmsg(), "dropped") != NULL);
            dfm_tensor_free(&out2);
            dfm_tensor_free(&out);
            dfm_wan_transformer_free(m);
        }
        free_fixture(&f);
    }
}

/* Every parameter gradient against float64 autograd (gfile64: <prefix>_f64.safetensors), within
 * 1e-4 of the tensor's max |g|, or, where PyTorch's own f32 autograd (gfile32) is further than
 * 5e-5 from float64, within twice PyTorch's f32 error (no less accurate than torch by more than
 * 2x: the cross-attention key biases of b, a difference of nearly equal terms over 503 identical
 * padded keys). Returns the worst ratio to the bound. */
static double check_param_grads(dfm_wan_transformer *m, const char *gfile32, const char *gfile64, int lora_only,
                                int *compared)
{
    dfm_st *st = NULL, *s32 = NULL;
    if (dfm_st_open(&st, gfile64) || dfm_st_open(&s32, gfile32)) {
        fprintf(stderr, "  %s: %s\n", gfile64, dfm_errmsg());
        dfm_test_failures++;
        dfm_st_close(st);
        return INFINITY;
    }
    double worst = 0;
    int n = 0;
    for (int i = 0; i < dfm_wan_transformer_nparams(m); i++) {
        dfm_tensor *p, *g;
        const char *name = dfm_wan_transformer_param(m, i, &p, &g);
        if (lora_only && !strstr(name, ".lora_")) continue;
        const dfm_st_tensor *r = dfm_st_find(st, name);
        if (!r) {
            fprintf(stderr, "  %s: no reference gradient\n", name);
            dfm_test_failures++;
            continue;
        }
        CHECK(g && g->data);
        if (!g || !g->data) continue;
        int64_t numel = dfm_tensor_numel(g), rn = 1;
        for (int k = 0; k < r->ndim; k++) rn *= r->shape[k];
        CHECK_EQ(rn, numel);
        if (rn != numel) continue;
        float *ref = malloc((size_t)numel * sizeof(float)), *t32 = malloc((size_t)numel * sizeof(float));
        CHECK_EQ(dfm_st_read(st, name, DFM_F32, r->ndim, r->shape, ref), 0);
        CHECK_EQ(dfm_st_read(s32, name, DFM_F32, r->ndim, r->shape, t32), 0);
        double e = rel(g->data, ref, numel), et = rel(t32, ref, numel);
        double bound = et > 5e-5 ? fmax(1e-4, 2.0 * et) : 1e-4;
        if (!(e <= bound)) fprintf(stderr, "  %s: gradient error %.2e (torch f32 %.2e, bound %.1e)\n", name, e, et, bound);
        CHECK(e <= bound);
        worst = fmax(worst, e / bound);
        n++;
        free(ref), free(t32);
    }
    if (compared) *compared = n;
    CHECK_EQ(n, dfm_st_count(st));
    dfm_st_close(st);
    dfm_st_close(s32);
    return worst;
}

TEST(wan_transformer_gradients)
{
    const char *cfgs[] = {"a", "b", "c"};
    for (int i = 0; i < 3; i++) {
        char d[512], td[600], gf[600], g32[600];
        fixture f;
        fixture_dir(d, sizeof d, cfgs[i]);
        snprintf(td, sizeof td, "%s/transformer", d);
        snprintf(gf, sizeof gf, "%s/grads_f64.safetensors", d);
        snprintf(g32, sizeof g32, "%s/grads.safetensors", d);
        CHECK_EQ(load_fixture(cfgs[i], &f), 0);
        dfm_wan_transformer *m = load_model(td, DFM_F32, DFM_F32, 1, 0);
        CHECK(m != NULL);
        if (!m) continue;
        dfm_tensor out, dx, dctx;
        dfm_wan_acts *acts = NULL;
        CHECK_EQ(dfm_wan_transformer_forward(m, &f.x, f.t.data, &f.ctx, &out, &acts, 0, 0), 0);
        CHECK(rel_t(&out, &f.out) <= 1e-4);
        CHECK_EQ(dfm_wan_transformer_backward(m, acts, &f.dout, &dx, &dctx), 0);
        dfm_tensor dx64, dc64;
        CHECK_EQ(dfm_test_load_npy(d, "dhidden_states_f64.npy", &dx64, 0), 0);
        CHECK_EQ(dfm_test_load_npy(d, "dencoder_hidden_states_f64.npy", &dc64, 0), 0);
        double ex = rel_t(&dx, &dx64), ec = rel_t(&dctx, &dc64);
        dfm_tensor_free(&dx64), dfm_tensor_free(&dc64);
        int n = 0;
        double wp = check_param_grads(m, g32, gf, 0, &n);
        fprintf(stderr, "  %s: dx %.2e, dctx %.2e, %d parameter gradients (worst %.2f of its bound)\n", cfgs[i], ex, ec, n, wp);
        CHECK(ex <= 1e-4);
        CHECK(ec <= 1e-4);
        /* checkpointing: the same bits */
        int np = dfm_wan_transformer_nparams(m);
        float **keep = calloc((size_t)np, sizeof *keep);
        for (int k = 0; k < np; k++) {
            dfm_tensor *g;
            dfm_wan_transformer_param(m, k, NULL, &g);
            keep[k] = malloc(dfm_tensor_nbytes(g));
            memcpy(keep[k], g->data, dfm_tensor_nbytes(g));
        }
        CHECK_EQ(dfm_wan_transformer_zero_grads(m), 0);
        dfm_tensor out2, dx2;
        CHECK_EQ(dfm_wan_transformer_forward(m, &f.x, f.t.data, &f.ctx, &out2, &acts, 1, 0), 0);
        CHECK_EQ(dfm_wan_transformer_backward(m, acts, &f.dout, &dx2, NULL), 0);
        CHECK(!memcmp(out.data, out2.data, dfm_tensor_nbytes(&out)));
        CHECK(!memcmp(dx.data, dx2.data, dfm_tensor_nbytes(&dx)));
        int same = 1;
        for (int k = 0; k < np; k++) {
            dfm_tensor *g;
            dfm_wan_transformer_param(m, k, NULL, &g);
            same &= !memcmp(keep[k], g->data, dfm_tensor_nbytes(g));
            free(keep[k]);
        }
        free(keep);
        CHECK(same);
        dfm_tensor_free(&out), dfm_tensor_free(&out2), dfm_tensor_free(&dx), dfm_tensor_free(&dx2), dfm_tensor_free(&dctx);
        dfm_wan_transformer_free(m);
        free_fixture(&f);
    }
}

/* Set the adapters' A and B from PEFT's raw parameters (lora_params.safetensors). */
static int set_lora(dfm_wan_transformer *m, const char *file)
{
    dfm_st *st = NULL;
    int rc = dfm_st_open(&st, file), set = 0;
    for (int i = 0; !rc && i < dfm_wan_transformer_nparams(m); i++) {
        dfm_tensor *p;
        const char *name = dfm_wan_transformer_param(m, i, &p, NULL);
        if (!strstr(name, ".lora_")) continue;
        rc = dfm_st_read(st, name, DFM_F32, p->ndim, p->shape, p->data);
        set++;
    }
    if (!rc && set != dfm_st_count(st)) rc = dfm_fail(DFM_E_FORMAT, "%d adapters set, the file has %d", set, dfm_st_count(st));
    dfm_st_close(st);
    return rc;
}

TEST(wan_transformer_lora)
{
    const char *cfgs[] = {"a", "b"};
    for (int i = 0; i < 2; i++) {
        char d[512], td[600], lf[600], gf[600], g32[600];
        fixture f;
        fixture_dir(d, sizeof d, cfgs[i]);
        snprintf(td, sizeof td, "%s/transformer", d);
        snprintf(lf, sizeof lf, "%s/lora/lora_params.safetensors", d);
        snprintf(gf, sizeof gf, "%s/lora_grads_f64.safetensors", d);
        snprintf(g32, sizeof g32, "%s/lora_grads.safetensors", d);
        CHECK_EQ(load_fixture(cfgs[i], &f), 0);
        dfm_tensor lout;
        CHECK_EQ(dfm_test_load_npy(d, "lora_out.npy", &lout, 0), 0);
        dfm_wan_transformer *m = load_model(td, DFM_F32, DFM_F32, 0, 0);
        CHECK(m != NULL);
        if (!m) continue;
        int count = 0;
        CHECK_EQ(dfm_wan_transformer_lora_add(m, NULL, 4, 8.0f, 0.0f, 1, &count), 0);
        CHECK_EQ(count, 10 * dfm_wan_transformer_get_config(m)->num_layers);
        CHECK_EQ(set_lora(m, lf), 0);
        dfm_tensor out;
        dfm_wan_acts *acts = NULL;
        CHECK_EQ(dfm_wan_transformer_forward(m, &f.x, f.t.data, &f.ctx, &out, &acts, 1, 0), 0);
        double e = rel_t(&out, &lout);
        CHECK(e <= 1e-4);
        CHECK_EQ(dfm_wan_transformer_backward(m, acts, &f.dout, NULL, NULL), 0);
        int n = 0;
        double wp = check_param_grads(m, g32, gf, 1, &n);
        fprintf(stderr, "  %s: LoRA forward %.2e, %d adapter gradients (worst %.2f of the bound)\n", cfgs[i], e, n, wp);
        dfm_tensor_free(&out), dfm_tensor_free(&lout);
        dfm_wan_transformer_free(m);
        free_fixture(&f);
    }
}

/* LoRA training on a frozen BF16 base in bf16 compute: packing the base for the forward changes
 * no bit of the output or of the adapter gradients; a fully trained model packs nothing. */
TEST(wan_transformer_pack_lora)
{
    char d[512], td[600], lf[600];
    fixture f;
    fixture_dir(d, sizeof d, "b");
    snprintf(td, sizeof td, "%s/transformer", d);
    snprintf(lf, sizeof lf, "%s/lora/lora_params.safetensors", d);
    CHECK_EQ(load_fixture("b", &f), 0);
    dfm_tensor out[2] = {{0}}, grads[2] = {{0}};
    for (int packed = 0; packed < 2; packed++) {
        dfm_wan_transformer *m = load_model(td, DFM_BF16, DFM_BF16, 0, 0);
        CHECK(m != NULL);
        if (!m) break;
        int count = 0;
        CHECK_EQ(dfm_wan_transformer_lora_add(m, NULL, 4, 8.0f, 0.0f, 1, &count), 0);
        CHECK_EQ(set_lora(m, lf), 0);
        if (packed) {
            CHECK_EQ(dfm_wan_transformer_pack(m, 0, &count), 0); /* training: the weights kept */
            CHECK(count > 0);
        }
        dfm_wan_acts *acts = NULL;
        CHECK_EQ(dfm_wan_transformer_forward(m, &f.x, f.t.data, &f.ctx, &out[packed], &acts, 1, 0), 0);
        CHECK_EQ(dfm_wan_transformer_backward(m, acts, &f.dout, NULL, NULL), 0);
        /* every trained gradient, concatenated */
        size_t total = 0;
        for (int i = 0; i < dfm_wan_transformer_nparams(m); i++) {
            dfm_tensor *g = NULL;
            dfm_wan_transformer_param(m, i, NULL, &g);
            if (g && g->data) total += dfm_tensor_nbytes(g);
        }
        int64_t sh[1] = {(int64_t)(total / 4)};
        CHECK_EQ(dfm_tensor_alloc(&grads[packed], DFM_F32, DFM_CPU, 1, sh), 0);
        size_t off = 0;
        for (int i = 0; i < dfm_wan_transformer_nparams(m); i++) {
            dfm_tensor *g = NULL;
            dfm_wan_transformer_param(m, i, NULL, &g);
            if (g && g->data) memcpy((char *)grads[packed].data + off, g->data, dfm_tensor_nbytes(g)), off += dfm_tensor_nbytes(g);
        }
        dfm_wan_transformer_free(m);
    }
    CHECK(out[0].data && out[1].data && !memcmp(out[0].data, out[1].data, dfm_tensor_nbytes(&out[0])));
    CHECK(grads[0].data && grads[1].data && dfm_tensor_nbytes(&grads[0]) == dfm_tensor_nbytes(&grads[1]) &&
          !memcmp(grads[0].data, grads[1].data, dfm_tensor_nbytes(&grads[0])));
    for (int i = 0; i < 2; i++) dfm_tensor_free(&out[i]), dfm_tensor_free(&grads[i]);
    /* full training: every weight trained, nothing to pack */
    dfm_wan_transformer *m = load_model(td, DFM_F32, DFM_BF16, 1, 0);
    CHECK(m != NULL);
    if (m) {
        int count = -1;
        CHECK_EQ(dfm_wan_transformer_pack(m, 1, &count), 0);
        CHECK_EQ(count, 0);
        dfm_wan_transformer_free(m);
    }
    free_fixture(&f);
}

TEST(wan_transformer_checkpoint_layouts)
{
    char d[512], p[700];
    fixture f;
    fixture_dir(d, sizeof d, "a");
    CHECK_EQ(load_fixture("a", &f), 0);
    const char *paths[3] = {"transformer", "original", "comfyui/wan_tiny_a.safetensors"};
    dfm_tensor outs[3] = {{0}};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", d, paths[i]);
        dfm_wan_transformer *m = load_model(p, DFM_F32, DFM_F32, 0, i == 2 ? 2 : 0);
        CHECK(m != NULL);
        if (!m) continue;
        CHECK_EQ(dfm_wan_transformer_forward(m, &f.x, f.t.data, &f.ctx, &outs[i], NULL, 0, 0), 0);
        dfm_wan_transformer_free(m);
    }
    for (int i = 1; i < 3; i++)
        CHECK(outs[i].data && outs[0].data && !memcmp(outs[i].data, outs[0].data, dfm_tensor_nbytes(&outs[0])));
    /* the ComfyUI file has no config: dim 32 does not say how many heads */
    dfm_wan_transformer *m = NULL;
    dfm_wan_transformer_opts o = {.device = DFM_CPU, .weights = DFM_F32, .compute = DFM_F32};
    snprintf(p, sizeof p, "%s/%s", d, paths[2]);
    CHECK_EQ(dfm_wan_transformer_load(&m, p, &o), DFM_E_FORMAT);
    CHECK(strstr(dfm_errmsg(), "heads") != NULL);
    for (int i = 0; i < 3; i++) dfm_tensor_free(&outs[i]);
    free_fixture(&f);
}

TEST(wan_transformer_bad_inputs)
{
    char d[512], td[600];
    fixture f;
    fixture_dir(d, sizeof d, "a");
    snprintf(td, sizeof td, "%s/transformer", d);
    CHECK_EQ(load_fixture("a", &f), 0);
    dfm_wan_transformer *m = load_model(td, DFM_F32, DFM_F32, 0, 0);
    CHECK(m != NULL);
    if (!m) return;
    dfm_tensor out;
    int64_t odd[5] = {1, 16, 1, 7, 8}, wrongc[5] = {1, 15, 1, 8, 8}, c2[3] = {1, 7, 31};
    dfm_tensor x1, x2, cb;
    CHECK_EQ(dfm_tensor_zeros(&x1, DFM_F32, DFM_CPU, 5, odd), 0);
    CHECK_EQ(dfm_tensor_zeros(&x2, DFM_F32, DFM_CPU, 5, wrongc), 0);
    CHECK_EQ(dfm_tensor_zeros(&cb, DFM_F32, DFM_CPU, 3, c2), 0);
    CHECK_EQ(dfm_wan_transformer_forward(m, &x1, f.t.data, &f.ctx, &out, NULL, 0, 0), DFM_E_ARG);
    CHECK_EQ(dfm_wan_transformer_forward(m, &x2, f.t.data, &f.ctx, &out, NULL, 0, 0), DFM_E_ARG);
    CHECK_EQ(dfm_wan_transformer_forward(m, &f.x, f.t.data, &cb, &out, NULL, 0, 0), DFM_E_ARG);
    CHECK_EQ(dfm_wan_transformer_backward(m, NULL, &f.dout, NULL, NULL), DFM_E_ARG);
    dfm_tensor_free(&x1), dfm_tensor_free(&x2), dfm_tensor_free(&cb);
    dfm_wan_transformer_free(m);
    free_fixture(&f);
}

/* The released 1.3B layout (tests/fixtures/wan_transformer_layout: all 825 names and shapes, no
 * weights) with random weights written as a diffusers transformer/ directory (BF16, the
 * keep-in-f32 tensors F32, as a bf16 save writes them: 2.8 GB in the scratch directory), loaded
 * through the production loader in place, with LoRA rank 4 on the default targets; one forward and
 * backward on a 1-frame 4 x 4 latent (4 tokens) and 3 text rows: outputs and LoRA gradients finite
 * and non-zero. Skipped (with a line) when the scratch file system has less than 8 GB free. */
#include <sys/statvfs.h>
#include <unistd.h>

TEST(wan_transformer_1p3b_layout)
{
    char dir[600], path[700];
    struct statvfs vs;
    if (statvfs(dfm_test_tmpdir(), &vs) == 0 && (double)vs.f_bavail * vs.f_frsize < 8e9) {
        fprintf(stderr, "  (less than 8 GB free in %s; skipped)\n", dfm_test_tmpdir());
        return;
    }
    snprintf(path, sizeof path, "%s/wan_transformer_layout/layout.json", dfm_test_fixtures());
    dfm_buf b = {0};
    CHECK_EQ(dfm_read_file(path, 0, &b), 0);
    cJSON *lay = cJSON_ParseWithLength((const char *)b.data, b.len);
    dfm_buf_free(&b);
    CHECK(lay != NULL);
    if (!lay) return;
    int n = cJSON_GetArraySize(lay), i = 0, f32 = 0;
    dfm_st_entry *e = calloc((size_t)n, sizeof *e);
    /* one random pool (bf16 values scaled to ~1/sqrt(1536)), every tensor a window into it */
    size_t pool_n = (size_t)9216 * 1536 + 64;
    uint16_t *pool = malloc(pool_n * sizeof(uint16_t));
    float *pool32 = malloc(pool_n * sizeof(float));
    uint64_t s = 0x2545F4914F6CDD1Dull;
    for (size_t k = 0; k < pool_n; k++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        float v = ((float)(s >> 40) * (1.0f / 16777216.0f) * 2.0f - 1.0f) * 0.044f;
        pool32[k] = v;
        pool[k] = dfm_f32_to_bf16(v);
    }
    int64_t params = 0;
    cJSON *it;
    cJSON_ArrayForEach(it, lay)
    {
        const cJSON *sh = cJSON_GetObjectItem(it, "shape"), *dt = cJSON_GetObjectItem(it, "dtype_bf16_load");
        e[i].name = it->string;
        e[i].ndim = cJSON_GetArraySize(sh);
        int64_t numel = 1;
        for (int d = 0; d < e[i].ndim; d++) numel *= e[i].shape[d] = (int64_t)cJSON_GetArrayItem(sh, d)->valuedouble;
        params += numel;
        int is_f32 = dt && cJSON_IsString(dt) && !strcmp(dt->valuestring, "F32");
        f32 += is_f32;
        e[i].dtype = is_f32 ? DFM_F32 : DFM_BF16;
        size_t off = (size_t)(i * 7919) % 64;
        CHECK((size_t)numel + off <= pool_n);
        e[i].data = is_f32 ? (const void *)(pool32 + off) : (const void *)(pool + off);
        i++;
    }
    CHECK_EQ(n, 825);
    CHECK_EQ(params, 1418996800);
    CHECK_EQ(f32, 95);
    snprintf(dir, sizeof dir, "%s/wan1p3b", dfm_test_tmpdir());
    CHECK_EQ(mkdir(dir, 0755), 0);
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", dir);
    int rc = dfm_st_write(path, e, n, "{\"format\":\"pt\"}");
    CHECK_EQ(rc, 0);
    free(e), free(pool), free(pool32);
    cJSON_Delete(lay);
    char src[700], dst[700];
    snprintf(src, sizeof src, "%s/wan_transformer_layout/config.json", dfm_test_fixtures());
    snprintf(dst, sizeof dst, "%s/config.json", dir);
    CHECK_EQ(dfm_read_file(src, 0, &b), 0);
    FILE *fp = fopen(dst, "wb");
    CHECK(fp && fwrite(b.data, 1, b.len, fp) == b.len && fclose(fp) == 0);
    dfm_buf_free(&b);
    if (rc) return;
    dfm_wan_transformer *m = load_model(dir, DFM_BF16, DFM_BF16, 0, 0);
    CHECK(m != NULL);
    if (m) {
        const dfm_wan_transformer_config *c = dfm_wan_transformer_get_config(m);
        CHECK_EQ(c->dim, 1536);
        CHECK_EQ(c->heads, 12);
        CHECK_EQ(c->num_layers, 30);
        size_t owned = 0, mapped = 0;
        dfm_wan_transformer_memory(m, &owned, &mapped);
        fprintf(stderr, "  1.3B layout: %zu MB mapped in place, %zu MB owned\n", mapped >> 20, owned >> 20);
        CHECK(mapped > ((size_t)2 << 30));
        int count = 0;
        CHECK_EQ(dfm_wan_transformer_lora_add(m, NULL, 4, 4.0f, 0.0f, 7, &count), 0);
        CHECK_EQ(count, 300);
        /* B random, so A's gradients are non-zero too */
        for (int k = 0; k < dfm_wan_transformer_nparams(m); k++) {
            dfm_tensor *p;
            const char *nm = dfm_wan_transformer_param(m, k, &p, NULL);
            if (strstr(nm, "lora_B"))
                for (int64_t j = 0; j < dfm_tensor_numel(p); j++) ((float *)p->data)[j] = 0.01f * (float)((j * 37 % 11) - 5);
        }
        int64_t sx[5] = {1, 16, 1, 4, 4}, sc[3] = {1, 3, 4096};
        dfm_tensor x, ctx, out, dout;
        CHECK_EQ(dfm_tensor_alloc(&x, DFM_F32, DFM_CPU, 5, sx), 0);
        CHECK_EQ(dfm_tensor_alloc(&ctx, DFM_F32, DFM_CPU, 3, sc), 0);
        CHECK_EQ(dfm_tensor_alloc(&dout, DFM_F32, DFM_CPU, 5, sx), 0);
        for (int64_t j = 0; j < dfm_tensor_numel(&x); j++) ((float *)x.data)[j] = sinf(0.1f * j), ((float *)dout.data)[j] = cosf(0.3f * j);
        for (int64_t j = 0; j < dfm_tensor_numel(&ctx); j++) ((float *)ctx.data)[j] = 0.5f * sinf(0.01f * j);
        float t[1] = {500.0f};
        dfm_wan_acts *acts = NULL;
        CHECK_EQ(dfm_wan_transformer_forward(m, &x, t, &ctx, &out, &acts, 1, 1), 0);
        CHECK_EQ(dfm_tensor_check_finite(&out, "output"), 0);
        CHECK_EQ(dfm_wan_transformer_backward(m, acts, &dout, NULL, NULL), 0);
        int nonzero = 0, lora = 0;
        for (int k = 0; k < dfm_wan_transformer_nparams(m); k++) {
            dfm_tensor *g;
            const char *nm = dfm_wan_transformer_param(m, k, NULL, &g);
            if (!strstr(nm, ".lora_")) continue;
            lora++;
            CHECK_EQ(dfm_tensor_check_finite(g, nm), 0);
            for (int64_t j = 0; j < dfm_tensor_numel(g); j++)
                if (((float *)g->data)[j] != 0.0f) {
                    nonzero++;
                    break;
                }
        }
        CHECK_EQ(lora, 600);
        CHECK_EQ(nonzero, 600);
        dfm_tensor_free(&x), dfm_tensor_free(&ctx), dfm_tensor_free(&out), dfm_tensor_free(&dout);
        dfm_wan_transformer_free(m);
    }
    unlink(path);
    unlink(dst);
    rmdir(dir);
}

/* dfm_wan_text_pad rebuilds b's text context (9 and 4 valid rows, zeros to 512) bit for bit from
 * the valid rows alone; longer than text_len is refused. */
TEST(wan_transformer_text_pad)
{
    fixture f;
    CHECK_EQ(load_fixture("b", &f), 0);
    int64_t D = f.ctx.shape[2], L = f.ctx.shape[1], rows[2] = {9, 4};
    dfm_tensor s[2];
    const dfm_tensor *sp[2] = {&s[0], &s[1]};
    for (int i = 0; i < 2; i++) {
        int64_t sh[2] = {rows[i], D};
        s[i] = dfm_tensor_view((float *)f.ctx.data + i * L * D, DFM_F32, DFM_CPU, 2, sh);
    }
    dfm_tensor out;
    CHECK_EQ(dfm_wan_text_pad(sp, 2, 512, &out), 0);
    CHECK(out.data && dfm_tensor_nbytes(&out) == dfm_tensor_nbytes(&f.ctx) && !memcmp(out.data, f.ctx.data, dfm_tensor_nbytes(&out)));
    dfm_tensor_free(&out);
    CHECK_EQ(dfm_wan_text_pad(sp, 2, 8, &out), DFM_E_ARG);
    CHECK(strstr(dfm_errmsg(), "text_len") != NULL);
    free_fixture(&f);
}
