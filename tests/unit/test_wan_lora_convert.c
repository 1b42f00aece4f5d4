/* test_wan_lora_convert.c — Wan LoRA files without a model (models/wan/lora_file.h) and between
 * families (models/wan/lora_convert.h), on the fixtures of scripts/make-wan-transformer-fixtures.py:
 *   module names: every linear of the fixture checkpoints a and b is a known module, and its
 *     original and diffusers names flattened (lora_unet_*) read back to it; other names refused;
 *   delta W = scale B A, computed here in double from the files as read back: for every pair of
 *     families X, Y, X -> Y -> X gives every module's delta W bit for bit in F32 and in BF16;
 *     through BF16 and back to F32 every A, B element moves by at most one bf16 ulp and delta W by
 *     at most the matching bound; from sources with scale 1 (ComfyUI fixture), 2 (diffusers
 *     fixture, alpha in the header metadata) and 1.5 (a musubi file with alpha 6, rank 4: the fold
 *     rounds once, within 2^-24 relative of each B element);
 *   the fixture adapters (ComfyUI directory and diffusers file) converted to each family and
 *     loaded by the production loader into the fixture model: the same forward as the original
 *     (within 1e-6 of max |out|);
 *   the consumer verdicts for each family, a musubi file missing a module, the diffusers
 *     metadata trap;
 *   errors, naming the tensor: an unknown module, mixed families, A without B, a NaN, F16
 *     overflow after the fold; nothing written, no .tmp left. */
#include "test.h"
#include "tensor_util.h"
#include "base/buf.h"
#include "base/dtype.h"
#include "base/error.h"
#include "io/safetensors.h"
#include "models/wan/lora.h"
#include "models/wan/lora_convert.h"
#include "models/wan/lora_file.h"
#include "models/wan/names.h"
#include "models/wan/transformer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *const FAMS[] = {"comfyui", "diffusers", "peft", "musubi"};

/* out = where family `to` is written under dir/name: a directory for peft, a file otherwise */
static void out_path(char *out, size_t n, const char *name, int to)
{
    snprintf(out, n, "%s/lc_%s%s", dfm_test_tmpdir(), name, to == DFM_WAN_LORA_TO_PEFT ? "" : ".safetensors");
}

static int convert(const char *in, const char *out, int to, int dtype, float alpha)
{
    dfm_wan_lora_convert_opts o = {.alpha = alpha, .dtype = dtype};
    int rc = dfm_wan_lora_convert(in, out, to, &o, NULL);
    if (rc) fprintf(stderr, "  convert %s -> %s: %s\n", in, out, dfm_errmsg());
    return rc;
}

/* ---- delta W ------------------------------------------------------------------------------------ */

typedef struct {
    int n;
    char *module[64];
    int64_t out[64], in[64], rank[64];
    double *dw[64];           /* scale * B A, [out, in] */
    double *bound[64];        /* sum_k |scale B_ik| |A_kj|, for tolerances */
    float *a[64], *b[64];     /* as read (F32), b times scale */
    int dtype;
} deltas;

static void deltas_free(deltas *d)
{
    for (int i = 0; i < d->n; i++) free(d->module[i]), free(d->dw[i]), free(d->bound[i]), free(d->a[i]), free(d->b[i]);
    memset(d, 0, sizeof *d);
}

static int read_deltas(const char *path, deltas *d)
{
    dfm_wan_lora_file *f = NULL;
    memset(d, 0, sizeof *d);
    if (dfm_wan_lora_file_open(&f, path, 0)) {
        fprintf(stderr, "  %s: %s\n", path, dfm_errmsg());
        return -1;
    }
    DFM_ASSERT(f->n <= 64);
    d->dtype = f->n ? (int)f->mods[0].b->dtype : -1;
    for (int i = 0; i < f->n; i++) {
        const dfm_wan_lora_module *md = &f->mods[i];
        int64_t o = md->b->shape[0], in = md->a->shape[1], r = md->rank;
        float *a = malloc((size_t)(r * in) * sizeof *a), *b = malloc((size_t)(o * r) * sizeof *b);
        dfm_st_read(f->st, md->a->name, DFM_F32, 2, md->a->shape, a);
        dfm_st_read(f->st, md->b->name, DFM_F32, 2, md->b->shape, b);
        double *dw = calloc((size_t)(o * in), sizeof *dw), *bd = calloc((size_t)(o * in), sizeof *bd);
        for (int64_t p = 0; p < o; p++)
            for (int64_t q = 0; q < in; q++) {
                double s = 0, t = 0;
                for (int64_t k = 0; k < r; k++) s += (double)b[p * r + k] * a[k * in + q], t += fabs((double)b[p * r + k] * a[k * in + q]);
                dw[p * in + q] = md->scale * s, bd[p * in + q] = md->scale * t;
            }
        for (int64_t k = 0; k < o * r; k++) b[k] = (float)(b[k] * md->scale);
        d->module[i] = strdup(md->module), d->out[i] = o, d->in[i] = in, d->rank[i] = r;
        d->dw[i] = dw, d->bound[i] = bd, d->a[i] = a, d->b[i] = b;
        d->n++;
    }
    dfm_wan_lora_file_close(f);
    return 0;
}

/* x and y have the same modules, each with delta W within tol * bound (tol 0: equal bits). */
static int same_deltas(const deltas *x, const deltas *y, double tol, const char *what)
{
    if (x->n != y->n || !x->n) {
        fprintf(stderr, "  %s: %d modules against %d\n", what, x->n, y->n);
        return 0;
    }
    double worst = 0;
    for (int i = 0; i < x->n; i++) {
        int j = 0;
        while (j < y->n && strcmp(x->module[i], y->module[j])) j++;
        if (j == y->n || x->out[i] != y->out[j] || x->in[i] != y->in[j]) {
            fprintf(stderr, "  %s: module '%s' missing or reshaped\n", what, x->module[i]);
            return 0;
        }
        for (int64_t k = 0; k < x->out[i] * x->in[i]; k++) {
            double e = fabs(x->dw[i][k] - y->dw[j][k]);
            if (tol == 0 && x->dw[i][k] != y->dw[j][k]) {
                fprintf(stderr, "  %s: module '%s' delta W [%lld] %.17g != %.17g\n", what, x->module[i], (long long)k, x->dw[i][k],
                        y->dw[j][k]);
                return 0;
            }
            if (!(e <= tol * x->bound[i][k])) {
                fprintf(stderr, "  %s: module '%s' delta W [%lld] differs by %.3g, bound %.3g\n", what, x->module[i], (long long)k,
                        e, tol * x->bound[i][k]);
                return 0;
            }
            if (x->bound[i][k] > 0) worst = fmax(worst, e / x->bound[i][k]);
        }
    }
    if (tol > 0) fprintf(stderr, "  %s: delta W within %.3g of sum |B||A| (allowed %.3g)\n", what, worst, tol);
    return 1;
}

/* Every A and scaled B element of y within `ulps` bf16 ulps of x's. */
static int within_bf16_ulps(const deltas *x, const deltas *y, double ulps)
{
    for (int i = 0; i < x->n; i++)
        for (int part = 0; part < 2; part++) {
            int64_t n = part ? x->out[i] * x->rank[i] : x->rank[i] * x->in[i];
            const float *p = part ? x->b[i] : x->a[i], *q = part ? y->b[i] : y->a[i];
            for (int64_t k = 0; k < n; k++) {
                int e;
                frexpf(p[k], &e);
                double ulp = ldexp(1.0, e - 8); /* bf16: 8 significant bits */
                if (!(fabs((double)p[k] - q[k]) <= ulps * ulp)) {
                    fprintf(stderr, "  module '%s' %s[%lld]: %.9g -> %.9g\n", x->module[i], part ? "B" : "A", (long long)k, p[k], q[k]);
                    return 0;
                }
            }
        }
    return 1;
}

/* ---- tests -------------------------------------------------------------------------------------- */

TEST(wan_lora_file_names)
{
    const char *cfgs[] = {"a", "b"};
    int n = 0;
    for (int c = 0; c < 2; c++) {
        char p[600];
        snprintf(p, sizeof p, "%s/wan_transformer/%s/transformer", dfm_test_fixtures(), cfgs[c]);
        dfm_st *st = NULL;
        CHECK_EQ(dfm_st_open(&st, p), 0);
        for (int i = 0; st && i < dfm_st_count(st); i++) {
            const dfm_st_tensor *t = dfm_st_at(st, i);
            size_t l = strlen(t->name);
            if (t->ndim != 2 || l < 7 || strcmp(t->name + l - 7, ".weight") || !strncmp(t->name, "patch_embedding", 15)) continue;
            char mod[300], *orig = NULL, flat[320], *back = NULL;
            snprintf(mod, sizeof mod, "%.*s", (int)(l - 7), t->name);
            CHECK(dfm_wan_lora_known_module(mod));
            CHECK_EQ(dfm_wan_transformer_original_name(mod, &orig), 0);
            /* lora_unet_ + the original name flattened, and the diffusers one */
            for (int k = 0; k < 2; k++) {
                snprintf(flat, sizeof flat, "lora_unet_%s", k ? mod : orig);
                for (char *q = flat + 10; *q; q++)
                    if (*q == '.') *q = '_';
                CHECK_EQ(dfm_wan_lora_module_name(DFM_WAN_LORA_KOHYA, flat, &back), 0);
                CHECK_STR(back, mod);
                free(back), back = NULL;
            }
            CHECK_EQ(dfm_wan_lora_module_name(DFM_WAN_LORA_ORIGINAL, orig, &back), 0);
            CHECK_STR(back, mod);
            free(back), back = NULL;
            CHECK_EQ(dfm_wan_lora_module_name(DFM_WAN_LORA_DIFFUSERS, mod, &back), 0);
            CHECK_STR(back, mod);
            free(back), free(orig);
            n++;
        }
        dfm_st_close(st);
    }
    CHECK_EQ(n, 2 * 26); /* per config: 2 blocks of 10, and 6 outside */
    const char *bad[] = {"blocks.0.attn1.to_z", "blocks.01.attn1.to_q", "blocks.x.attn1.to_q", "blocks.0.norm2", "proj", "blocks.0"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *o = NULL;
        CHECK(!dfm_wan_lora_known_module(bad[i]));
        CHECK_EQ(dfm_wan_lora_module_name(DFM_WAN_LORA_DIFFUSERS, bad[i], &o), DFM_E_FORMAT);
        CHECK(o == NULL);
    }
    char *o = NULL;
    CHECK_EQ(dfm_wan_lora_module_name(DFM_WAN_LORA_KOHYA, "lora_unet_blocks_0_self_attn_z", &o), DFM_E_FORMAT);
    CHECK_EQ(dfm_wan_lora_module_name(DFM_WAN_LORA_KOHYA, "lora_unet_patch_embedding", &o), DFM_E_UNSUPPORTED);
    CHECK_EQ(dfm_wan_lora_block_of("blocks.12.attn1.to_q"), 12);
    CHECK_EQ(dfm_wan_lora_block_of("proj_out"), -1);
    fprintf(stderr, "  %d linears: known, and read back from their original and flattened names\n", n);
}

/* A musubi file from the ComfyUI fixture with alpha 6 per module and B as is: scale 1.5. */
static int make_musubi_15(const char *path)
{
    char fx[600];
    snprintf(fx, sizeof fx, "%s/wan_transformer/a/lora/adapter_model.safetensors", dfm_test_fixtures());
    dfm_st *st = NULL;
    if (dfm_st_open(&st, fx)) return -1;
    int n = dfm_st_count(st), k = 0;
    dfm_st_entry *e = calloc((size_t)n * 2, sizeof *e);
    float *vals[128] = {0}, six = 6.0f;
    for (int i = 0; i < n; i++) {
        const dfm_st_tensor *t = dfm_st_at(st, i);
        char nm[300], *p;
        snprintf(nm, sizeof nm, "lora_unet_%s", t->name + strlen("diffusion_model."));
        int is_a = (p = strstr(nm, ".lora_A.weight")) != NULL;
        if (!p) p = strstr(nm, ".lora_B.weight");
        *p = 0;
        for (char *q = nm + 10; *q; q++)
            if (*q == '.') *q = '_';
        char full[340];
        snprintf(full, sizeof full, "%s.%s.weight", nm, is_a ? "lora_down" : "lora_up");
        vals[i] = malloc(t->nbytes);
        dfm_st_read(st, t->name, DFM_F32, 2, t->shape, vals[i]);
        e[k] = (dfm_st_entry){.name = strdup(full), .dtype = DFM_F32, .ndim = 2, .data = vals[i]};
        e[k].shape[0] = t->shape[0], e[k].shape[1] = t->shape[1];
        k++;
        if (is_a) {
            snprintf(full, sizeof full, "%s.alpha", nm);
            e[k++] = (dfm_st_entry){.name = strdup(full), .dtype = DFM_F32, .ndim = 0, .data = &six};
        }
    }
    int rc = dfm_st_write(path, e, k, NULL);
    for (int i = 0; i < k; i++) free((char *)e[i].name);
    for (int i = 0; i < n; i++) free(vals[i]);
    free(e);
    dfm_st_close(st);
    return rc;
}

TEST(wan_lora_convert_roundtrip)
{
    char src[3][700], x[800], y[800], z[800], w[800], name[64];
    snprintf(src[0], sizeof src[0], "%s/wan_transformer/a/lora", dfm_test_fixtures());
    snprintf(src[1], sizeof src[1], "%s/wan_transformer/a/lora/diffusers", dfm_test_fixtures());
    snprintf(src[2], sizeof src[2], "%s/lc_musubi15.safetensors", dfm_test_tmpdir());
    CHECK_EQ(make_musubi_15(src[2]), 0);
    const double scale_of[3] = {1, 2, 1.5};
    for (int s = 0; s < 3; s++) {
        deltas d0;
        CHECK_EQ(read_deltas(src[s], &d0), 0);
        CHECK_EQ(d0.n, 20);
        fprintf(stderr, "  source %d (scale %g): %s\n", s, scale_of[s], src[s]);
        for (int X = 0; X < 4; X++) {
            /* the source into X (F32): delta W exact for scales 1 and 2, within one f32 rounding of B for 1.5 */
            snprintf(name, sizeof name, "s%d_%s", s, FAMS[X]);
            out_path(x, sizeof x, name, X);
            CHECK_EQ(convert(src[s], x, X, DFM_F32, 0), 0);
            deltas dx;
            CHECK_EQ(read_deltas(x, &dx), 0);
            CHECK(same_deltas(&d0, &dx, s == 2 ? ldexp(1.0, -24) : 0, name));
            /* and into X as BF16 */
            snprintf(name, sizeof name, "s%d_%s_bf16", s, FAMS[X]);
            out_path(w, sizeof w, name, X);
            CHECK_EQ(convert(src[s], w, X, DFM_BF16, 0), 0);
            deltas dxb;
            CHECK_EQ(read_deltas(w, &dxb), 0);
            CHECK_EQ(dxb.dtype, DFM_BF16);
            for (int Y = 0; Y < 4; Y++) {
                /* X -> Y -> X in F32: bit for bit */
                snprintf(name, sizeof name, "s%d_%s_%s", s, FAMS[X], FAMS[Y]);
                out_path(y, sizeof y, name, Y);
                CHECK_EQ(convert(x, y, Y, -1, 0), 0);
                snprintf(name, sizeof name, "s%d_%s_%s_%s", s, FAMS[X], FAMS[Y], FAMS[X]);
                out_path(z, sizeof z, name, X);
                CHECK_EQ(convert(y, z, X, -1, 0), 0);
                deltas dz;
                CHECK_EQ(read_deltas(z, &dz), 0);
                CHECK(same_deltas(&dx, &dz, 0, name));
                CHECK_EQ(dz.dtype, DFM_F32);
                deltas_free(&dz);
                /* X (F32) -> Y (BF16) -> X (F32): each element within one bf16 ulp (round to
                 * nearest: half), delta W within the bound that follows: |dW' - dW| <= (2u + u^2)
                 * sum |B||A|, u = 2^-8 */
                snprintf(name, sizeof name, "s%d_%s_%s_b", s, FAMS[X], FAMS[Y]);
                out_path(y, sizeof y, name, Y);
                CHECK_EQ(convert(x, y, Y, DFM_BF16, 0), 0);
                snprintf(name, sizeof name, "s%d_%s_%s_b_%s", s, FAMS[X], FAMS[Y], FAMS[X]);
                out_path(z, sizeof z, name, X);
                CHECK_EQ(convert(y, z, X, DFM_F32, 0), 0);
                CHECK_EQ(read_deltas(z, &dz), 0);
                CHECK(within_bf16_ulps(&dx, &dz, 1.0));
                double u = ldexp(1.0, -8);
                CHECK(same_deltas(&dx, &dz, 2 * u + u * u, name));
                deltas_free(&dz);
                /* BF16 X -> Y (F32) -> X (BF16): bit for bit */
                snprintf(name, sizeof name, "s%d_%s_b_%s", s, FAMS[X], FAMS[Y]);
                out_path(y, sizeof y, name, Y);
                CHECK_EQ(convert(w, y, Y, DFM_F32, 0), 0);
                snprintf(name, sizeof name, "s%d_%s_b_%s_%s", s, FAMS[X], FAMS[Y], FAMS[X]);
                out_path(z, sizeof z, name, X);
                CHECK_EQ(convert(y, z, X, DFM_BF16, 0), 0);
                CHECK_EQ(read_deltas(z, &dz), 0);
                CHECK(same_deltas(&dxb, &dz, 0, name));
                CHECK_EQ(dz.dtype, DFM_BF16);
                deltas_free(&dz);
            }
            deltas_free(&dx), deltas_free(&dxb);
        }
        deltas_free(&d0);
    }
    /* no .tmp left behind */
    struct stat sb;
    out_path(x, sizeof x, "s0_comfyui", 0);
    strcat(x, ".tmp");
    CHECK(stat(x, &sb) != 0);
}

/* ---- the same forward through the production loader ---------------------------------------------- */

static dfm_wan_transformer *fixture_model(void)
{
    char td[600];
    snprintf(td, sizeof td, "%s/wan_transformer/a/transformer", dfm_test_fixtures());
    dfm_wan_transformer *m = NULL;
    dfm_wan_transformer_opts o = {.device = DFM_CPU, .weights = DFM_F32, .compute = DFM_F32};
    if (dfm_wan_transformer_load(&m, td, &o)) fprintf(stderr, "  load %s: %s\n", td, dfm_errmsg());
    return m;
}

static int forward_with(const char *lora, const dfm_tensor *x, const float *t, const dfm_tensor *ctx, dfm_tensor *out)
{
    dfm_wan_transformer *m = fixture_model();
    if (!m) return -1;
    int rc = dfm_wan_lora_load(m, lora, 1.0f, NULL, NULL);
    if (rc) fprintf(stderr, "  %s: %s\n", lora, dfm_errmsg());
    if (!rc) rc = dfm_wan_transformer_forward(m, x, t, ctx, out, NULL, 0, 0);
    dfm_wan_transformer_free(m);
    return rc;
}

static double rel(const dfm_tensor *a, const dfm_tensor *b)
{
    const float *x = a->data, *y = b->data;
    double s = 0, e = 0;
    for (int64_t i = 0; i < dfm_tensor_numel(b); i++) s = fmax(s, fabs(y[i])), e = fmax(e, fabs((double)x[i] - y[i]));
    return isfinite(e) ? e / (s ? s : 1) : INFINITY;
}

TEST(wan_lora_convert_forward)
{
    char d[600], src[2][700], out[800], name[64];
    snprintf(d, sizeof d, "%s/wan_transformer/a", dfm_test_fixtures());
    dfm_tensor x = {0}, t = {0}, ctx = {0};
    CHECK_EQ(dfm_test_load_npy(d, "hidden_states.npy", &x, 0), 0);
    CHECK_EQ(dfm_test_load_npy(d, "timestep.npy", &t, 0), 0);
    CHECK_EQ(dfm_test_load_npy(d, "encoder_hidden_states.npy", &ctx, 0), 0);
    snprintf(src[0], sizeof src[0], "%s/lora/adapter_model.safetensors", d);
    snprintf(src[1], sizeof src[1], "%s/lora/diffusers", d);
    for (int s = 0; s < 2; s++) {
        dfm_tensor ref = {0};
        CHECK_EQ(forward_with(src[s], &x, t.data, &ctx, &ref), 0);
        for (int to = 0; to < 4 && ref.data; to++) {
            snprintf(name, sizeof name, "fw%d_%s", s, FAMS[to]);
            out_path(out, sizeof out, name, to);
            CHECK_EQ(convert(src[s], out, to, -1, 0), 0);
            dfm_tensor o = {0};
            CHECK_EQ(forward_with(out, &x, t.data, &ctx, &o), 0);
            if (!o.data) continue;
            double e = rel(&o, &ref);
            fprintf(stderr, "  %s -> %-9s forward %.2e of max|out| from the original's\n", s ? "diffusers" : "comfyui", FAMS[to], e);
            CHECK(e <= 1e-6);
            dfm_tensor_free(&o);
        }
        dfm_tensor_free(&ref);
    }
    dfm_tensor_free(&x), dfm_tensor_free(&t), dfm_tensor_free(&ctx);
}

/* ---- consumers ----------------------------------------------------------------------------------- */

static void verdicts(const char *path, char *got, size_t n)
{
    dfm_wan_lora_file *f = NULL;
    got[0] = 0;
    if (dfm_wan_lora_file_open(&f, path, 0)) {
        fprintf(stderr, "  %s: %s\n", path, dfm_errmsg());
        return;
    }
    dfm_wan_lora_consumer c[DFM_WAN_LORA_NCONSUMERS];
    dfm_wan_lora_consumers(f, c);
    for (int i = 0; i < DFM_WAN_LORA_NCONSUMERS; i++) {
        strncat(got, c[i].ok ? "y" : "n", n - strlen(got) - 1);
        if (!c[i].ok) fprintf(stderr, "    %s: %s\n", c[i].consumer, c[i].why);
    }
    dfm_wan_lora_file_close(f);
}

/* Copy file `in` without the tensors whose name contains `drop`, with header metadata md. */
static int copy_without(const char *in, const char *out, const char *drop, const char *md)
{
    dfm_st *st = NULL;
    if (dfm_st_open(&st, in)) return -1;
    int n = dfm_st_count(st), k = 0;
    dfm_st_entry *e = calloc((size_t)n, sizeof *e);
    for (int i = 0; i < n; i++) {
        const dfm_st_tensor *t = dfm_st_at(st, i);
        if (drop && strstr(t->name, drop)) continue;
        e[k] = (dfm_st_entry){.name = t->name, .dtype = t->dtype, .ndim = t->ndim, .data = t->data};
        for (int j = 0; j < t->ndim; j++) e[k].shape[j] = t->shape[j];
        k++;
    }
    int rc = dfm_st_write(out, e, k, md);
    free(e);
    dfm_st_close(st);
    return rc;
}

TEST(wan_lora_consumers)
{
    char src[700], out[800], got[8], p2[800];
    snprintf(src, sizeof src, "%s/wan_transformer/a/lora", dfm_test_fixtures());
    /* order: diffusers, ComfyUI, diffusion-pipe, musubi-tuner */
    const char *want[] = {"yyyn", "ynnn", "nnnn", "yyny"};
    for (int to = 0; to < 4; to++) {
        char name[32];
        snprintf(name, sizeof name, "cons_%s", FAMS[to]);
        out_path(out, sizeof out, name, to);
        CHECK_EQ(convert(src, out, to, -1, 0), 0);
        fprintf(stderr, "  %s:\n", FAMS[to]);
        verdicts(out, got, sizeof got);
        CHECK_STR(got, want[to]);
    }
    /* a musubi file without one module: diffusers' musubi converter needs them all */
    out_path(out, sizeof out, "cons_musubi", 3);
    out_path(p2, sizeof p2, "cons_musubi_short", 3);
    CHECK_EQ(copy_without(out, p2, "blocks_1_ffn_2", NULL), 0);
    fprintf(stderr, "  musubi without blocks.1.ffn.2:\n");
    verdicts(p2, got, sizeof got);
    CHECK_STR(got, "nyny");
    /* the diffusers metadata trap */
    out_path(out, sizeof out, "cons_diffusers", 1);
    out_path(p2, sizeof p2, "cons_diffusers_trap", 1);
    CHECK_EQ(copy_without(out, p2, NULL, "{\"lora_adapter_metadata\":\"{\\\"r\\\": 4}\"}"), 0);
    fprintf(stderr, "  diffusers with lora_adapter_metadata lacking transformer.* keys:\n");
    verdicts(p2, got, sizeof got);
    CHECK_STR(got, "nnnn");
    /* scale 2 with the alpha only in the caller's hands: nobody computes it */
    snprintf(p2, sizeof p2, "%s/wan_transformer/a/lora/lora_params.safetensors", dfm_test_fixtures());
    dfm_wan_lora_file *f = NULL;
    CHECK_EQ(dfm_wan_lora_file_open(&f, p2, 8), 0);
    dfm_buf b = {0};
    if (f) CHECK_EQ(dfm_wan_lora_summary(f, &b), 0);
    dfm_buf_append(&b, "", 1);
    CHECK(b.data && strstr((char *)b.data, "alpha       8 (scale 2), from the caller\n") != NULL);
    CHECK(b.data && strstr((char *)b.data, "  self_attn.q          2 blocks (0-1)\n") != NULL);
    CHECK(b.data && strstr((char *)b.data, "blocks      2 (0-1)\n") != NULL);
    dfm_buf_free(&b);
    dfm_wan_lora_file_close(f);
}

/* ---- errors -------------------------------------------------------------------------------------- */

TEST(wan_lora_convert_errors)
{
    float z[32 * 4] = {0}, nan1[32 * 4] = {0}, big[32 * 4];
    nan1[5] = NAN;
    for (int i = 0; i < 32 * 4; i++) big[i] = 60000.0f;
    const int64_t a_s[2] = {4, 32}, b_s[2] = {32, 4};
    struct {
        const char *what;
        int want;
        const char *names[3];
        const float *data[3];
        float alpha;     /* read with this alpha (0: the file's) */
        int dtype;
        const char *named;
    } cases[] = {
        {"unknown module", DFM_E_FORMAT, {"diffusion_model.blocks.0.self_attn.z.lora_A.weight", "diffusion_model.blocks.0.self_attn.z.lora_B.weight"},
         {z, z}, 0, -1, "diffusion_model.blocks.0.self_attn.z.lora_A.weight"},
        {"mixed families", DFM_E_FORMAT, {"diffusion_model.blocks.0.self_attn.q.lora_A.weight", "lora_unet_blocks_0_self_attn_q.lora_up.weight"},
         {z, z}, 0, -1, "diffusion_model.blocks.0.self_attn.q.lora_A.weight"},
        {"mixed namings", DFM_E_FORMAT, {"diffusion_model.blocks.0.self_attn.q.lora_A.weight", "diffusion_model.blocks.0.attn1.to_q.lora_B.weight"},
         {z, z}, 0, -1, "diffusion_model.blocks.0.attn1.to_q.lora_B.weight"},
        {"mixed prefixes", DFM_E_FORMAT, {"transformer.blocks.0.attn1.to_q.lora_A.weight", "blocks.0.attn1.to_q.lora_B.weight"},
         {z, z}, 0, -1, "transformer.blocks.0.attn1.to_q.lora_A.weight"},
        {"A without B", DFM_E_FORMAT, {"diffusion_model.blocks.0.self_attn.q.lora_A.weight", NULL}, {z, NULL}, 0, -1,
         "diffusion_model.blocks.0.self_attn.q.lora_A.weight"},
        {"NaN", DFM_E_NONFINITE, {"diffusion_model.blocks.0.self_attn.q.lora_A.weight", "diffusion_model.blocks.0.self_attn.q.lora_B.weight"},
         {z, nan1}, 0, -1, "diffusion_model.blocks.0.self_attn.q.lora_B.weight"},
        {"F16 overflow", DFM_E_NONFINITE, {"diffusion_model.blocks.0.self_attn.q.lora_A.weight", "diffusion_model.blocks.0.self_attn.q.lora_B.weight"},
         {z, big}, 8, DFM_F16, "diffusion_model.blocks.0.self_attn.q.lora_B.weight"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        dfm_st_entry e[2] = {{0}};
        int n = 0;
        for (int k = 0; k < 2 && cases[i].names[k]; k++, n++) {
            int is_a = strstr(cases[i].names[k], "lora_A") || strstr(cases[i].names[k], "lora_down");
            e[k] = (dfm_st_entry){.name = cases[i].names[k], .dtype = DFM_F32, .ndim = 2, .data = cases[i].data[k]};
            e[k].shape[0] = (is_a ? a_s : b_s)[0], e[k].shape[1] = (is_a ? a_s : b_s)[1];
        }
        char in[700], out[700];
        snprintf(in, sizeof in, "%s/lc_err%zu.safetensors", dfm_test_tmpdir(), i);
        snprintf(out, sizeof out, "%s/lc_err%zu_out.safetensors", dfm_test_tmpdir(), i);
        CHECK_EQ(dfm_st_write(in, e, n, NULL), 0);
        dfm_wan_lora_convert_opts o = {.alpha = cases[i].alpha, .dtype = cases[i].dtype};
        int rc = dfm_wan_lora_convert(in, out, DFM_WAN_LORA_TO_MUSUBI, &o, NULL);
        fprintf(stderr, "  %s: %s\n", cases[i].what, dfm_errmsg());
        CHECK_EQ(rc, cases[i].want);
        CHECK(strstr(dfm_errmsg(), cases[i].named) != NULL);
        struct stat sb;
        CHECK(stat(out, &sb) != 0);
        strcat(out, ".tmp");
        CHECK(stat(out, &sb) != 0);
    }
    /* a PEFT adapter is a directory */
    char in[700];
    snprintf(in, sizeof in, "%s/wan_transformer/a/lora", dfm_test_fixtures());
    CHECK_EQ(dfm_wan_lora_convert(in, "x.safetensors", DFM_WAN_LORA_TO_PEFT, NULL, NULL), DFM_E_ARG);
    CHECK_EQ(dfm_wan_lora_target_parse("diffusion-pipe"), DFM_WAN_LORA_TO_COMFYUI);
    CHECK_EQ(dfm_wan_lora_target_parse("kohya"), -1);
}
