/* test_wan_lora.c — LoRA adapter files for the Wan transformer (models/wan/lora.h) on the fixtures
 * of scripts/make-wan-transformer-fixtures.py (tests/fixtures/wan_transformer/README.md):
 *   the inverse name table: every diffusers name of a's checkpoint goes to its original name
 *     (as a/original spells it) and back, and every original name back to itself;
 *   configs a and b: PEFT's raw state dict (lora_params.safetensors, alpha 8 given by the
 *     caller), the diffusion-pipe/ComfyUI directory (adapter_model.safetensors + its config),
 *     diffusers' pytorch_lora_weights.safetensors (alpha in the header metadata), a
 *     "base_model.model." PEFT file, a musubi-tuner file (lora_unet_*, lora_down/lora_up, .alpha
 *     tensors) and an adapter_config.json with an alpha_pattern, all built from the fixtures, load
 *     and give diffusers' lora_out.npy within 1e-4 of max |out|, and the same bits as each other
 *     (the folded scale is 2, exact);
 *   save: the adapter loaded from lora_params.safetensors saves to the fixture's
 *     adapter_model.safetensors and adapter_config.json byte for byte (so its tensors and its
 *     {"format": "pt"} header too), and so does a trained-style model (lora_add with alpha 8, B
 *     unfolded, saved with alpha 8); saved, reloaded: the same forward bit for bit;
 *   multiplier 0: the base model's output bit for bit (and out.npy within 1e-4);
 *   errors, each naming the tensor, with the model left without adapters: a wrong shape, ranks
 *     that disagree, a module the model lacks, A without B, a tensor that is not LoRA, a regular
 *     expression in alpha_pattern, a second adapter, a missing path;
 *   on a CUDA model (skipped without one): load, forward against diffusers, save byte for byte. */
#include "test.h"
#include "tensor_util.h"
#include "base/buf.h"
#include "base/error.h"
#include "io/safetensors.h"
#include "models/wan/lora.h"
#include "models/wan/names.h"
#include "models/wan/transformer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void fixture_dir(char *out, size_t n, const char *cfg) { snprintf(out, n, "%s/wan_transformer/%s", dfm_test_fixtures(), cfg); }

/* max |a - b| / max |b| */
static double rel_t(const dfm_tensor *a, const dfm_tensor *b)
{
    int64_t n = dfm_tensor_numel(b);
    if (dfm_tensor_numel(a) != n) return INFINITY;
    const float *x = a->data, *y = b->data;
    double s = 0, e = 0;
    for (int64_t i = 0; i < n; i++) s = fmax(s, fabs(y[i]));
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)x[i] - y[i]);
        if (!(d <= e)) e = isnan(d) ? INFINITY : d;
    }
    return e / (s ? s : 1);
}

static int same_bits(const dfm_tensor *a, const dfm_tensor *b)
{
    return a->data && b->data && dfm_tensor_nbytes(a) == dfm_tensor_nbytes(b) && !memcmp(a->data, b->data, dfm_tensor_nbytes(a));
}

typedef struct {
    dfm_tensor x, t, ctx, out, lout;
} fixture;

static int load_fixture(const char *cfg, fixture *f)
{
    char d[512];
    fixture_dir(d, sizeof d, cfg);
    memset(f, 0, sizeof *f);
    return dfm_test_load_npy(d, "hidden_states.npy", &f->x, 0) || dfm_test_load_npy(d, "timestep.npy", &f->t, 0) ||
                   dfm_test_load_npy(d, "encoder_hidden_states.npy", &f->ctx, 0) || dfm_test_load_npy(d, "out.npy", &f->out, 0) ||
                   dfm_test_load_npy(d, "lora_out.npy", &f->lout, 0)
               ? -1
               : 0;
}

static void free_fixture(fixture *f)
{
    dfm_tensor_free(&f->x), dfm_tensor_free(&f->t), dfm_tensor_free(&f->ctx), dfm_tensor_free(&f->out), dfm_tensor_free(&f->lout);
}

static dfm_wan_transformer *base_model(const char *cfg)
{
    char d[512], td[600];
    fixture_dir(d, sizeof d, cfg);
    snprintf(td, sizeof td, "%s/transformer", d);
    dfm_wan_transformer *m = NULL;
    dfm_wan_transformer_opts o = {.device = DFM_CPU, .weights = DFM_F32, .compute = DFM_F32};
    if (dfm_wan_transformer_load(&m, td, &o)) fprintf(stderr, "  load %s: %s\n", td, dfm_errmsg());
    return m;
}

/* A fresh base model with the adapter at path; its forward into *out (0 on success). */
static int lora_forward(const char *cfg, const fixture *f, const char *path, float mult, const dfm_wan_lora_load_opts *o,
                        dfm_wan_lora_info *info, dfm_tensor *out)
{
    dfm_wan_transformer *m = base_model(cfg);
    if (!m) return -1;
    int rc = dfm_wan_lora_load(m, path, mult, o, info);
    if (rc) fprintf(stderr, "  %s: %s\n", path, dfm_errmsg());
    if (!rc) rc = dfm_wan_transformer_forward(m, &f->x, f->t.data, &f->ctx, out, NULL, 0, 0);
    dfm_wan_transformer_free(m);
    return rc;
}

static int lora_count(dfm_wan_transformer *m)
{
    int n = 0;
    for (int i = 0; i < dfm_wan_transformer_nparams(m); i++) n += strstr(dfm_wan_transformer_param(m, i, NULL, NULL), ".lora_") != NULL;
    return n;
}

/* ---- files built from the fixtures --------------------------------------------------------------- */

typedef struct {
    int n;
    dfm_st_entry e[256];
    float *data[256];
} entries;

static void entries_free(entries *s)
{
    for (int i = 0; i < s->n; i++) free((char *)s->e[i].name), free(s->data[i]);
    s->n = 0;
}

static void add_entry(entries *s, const char *name, int ndim, const int64_t *shape, const float *v, float mul)
{
    DFM_ASSERT(s->n < 256);
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= shape[d];
    float *p = malloc((size_t)(n ? n : 1) * sizeof *p);
    for (int64_t i = 0; i < n; i++) p[i] = v[i] * mul;
    dfm_st_entry *e = &s->e[s->n];
    e->name = strdup(name), e->dtype = DFM_F32, e->ndim = ndim, e->data = p;
    for (int d = 0; d < ndim; d++) e->shape[d] = shape[d];
    s->data[s->n++] = p;
}

/* Every tensor of `file` as F32 with its name transformed by `rename(name, out)` and B tensors
 * multiplied by b_mul; rename returns 0 to drop the tensor. */
static int read_renamed(const char *file, entries *s, int (*rename)(const char *, char *, size_t), float b_mul)
{
    dfm_st *st = NULL;
    if (dfm_st_open(&st, file)) {
        fprintf(stderr, "  %s: %s\n", file, dfm_errmsg());
        return -1;
    }
    for (int i = 0; i < dfm_st_count(st); i++) {
        const dfm_st_tensor *t = dfm_st_at(st, i);
        char nm[300];
        if (!rename(t->name, nm, sizeof nm)) continue;
        float *v = malloc(t->nbytes);
        dfm_st_read(st, t->name, DFM_F32, t->ndim, t->shape, v);
        add_entry(s, nm, t->ndim, t->shape, v, strstr(t->name, "lora_B") ? b_mul : 1.0f);
        free(v);
    }
    dfm_st_close(st);
    return 0;
}

static int keep_name(const char *in, char *out, size_t n) { return snprintf(out, n, "%s", in), 1; }
static int peft_model_name(const char *in, char *out, size_t n) { return snprintf(out, n, "base_model.model.%s", in), 1; }

/* diffusion_model.blocks.0.self_attn.q.lora_A.weight -> lora_unet_blocks_0_self_attn_q.lora_down.weight */
static int musubi_name(const char *in, char *out, size_t n)
{
    const char *m = in + strlen("diffusion_model.");
    const char *suf = strstr(m, ".lora_A.") ? ".lora_A.weight" : ".lora_B.weight";
    size_t ml = strlen(m) - strlen(suf);
    snprintf(out, n, "lora_unet_%.*s%s", (int)ml, m, strstr(suf, "lora_A") ? ".lora_down.weight" : ".lora_up.weight");
    for (char *p = out + 10; *p && p < out + 10 + ml; p++)
        if (*p == '.') *p = '_';
    return 1;
}

static int write_file(const char *path, const char *text)
{
    return dfm_write_file_atomic(path, text, strlen(text));
}

/* ---- tests ------------------------------------------------------------------------------------------ */

TEST(wan_lora_names)
{
    char d[512], p[700];
    fixture_dir(d, sizeof d, "a");
    snprintf(p, sizeof p, "%s/transformer", d);
    dfm_st *dif = NULL, *orig = NULL;
    CHECK_EQ(dfm_st_open(&dif, p), 0);
    snprintf(p, sizeof p, "%s/original", d);
    CHECK_EQ(dfm_st_open(&orig, p), 0);
    if (!dif || !orig) return;
    CHECK_EQ(dfm_st_count(dif), dfm_st_count(orig));
    int n = 0;
    /* diffusers -> original is a name a/original has, and back */
    for (int i = 0; i < dfm_st_count(dif); i++) {
        const char *name = dfm_st_at(dif, i)->name;
        char *o = NULL, *back = NULL;
        CHECK_EQ(dfm_wan_transformer_original_name(name, &o), 0);
        CHECK_EQ(dfm_weights_convert_name(&dfm_wan_transformer_names, o, 1, &back), 0);
        CHECK(o && dfm_st_find(orig, o) != NULL);
        CHECK_STR(back, name);
        n += o && back && dfm_st_find(orig, o) && !strcmp(back, name);
        free(o), free(back);
    }
    /* original -> diffusers -> original */
    for (int i = 0; i < dfm_st_count(orig); i++) {
        const char *name = dfm_st_at(orig, i)->name;
        char *c = NULL, *back = NULL;
        CHECK_EQ(dfm_weights_convert_name(&dfm_wan_transformer_names, name, 1, &c), 0);
        CHECK_EQ(dfm_wan_transformer_original_name(c, &back), 0);
        CHECK_STR(back, name);
        free(c), free(back);
    }
    /* the top-level / block modulation and the norm swap, spelled out */
    const char *pairs[][2] = {{"scale_shift_table", "head.modulation"},
                              {"blocks.3.scale_shift_table", "blocks.3.modulation"},
                              {"blocks.0.norm2.weight", "blocks.0.norm3.weight"},
                              {"blocks.0.attn1.to_out.0", "blocks.0.self_attn.o"},
                              {"blocks.12.ffn.net.0.proj", "blocks.12.ffn.0"},
                              {"condition_embedder.time_proj", "time_projection.1"},
                              {"proj_out", "head.head"},
                              {"blocks.1.attn2.add_k_proj", "blocks.1.cross_attn.k_img"},
                              {"blocks.1.attn2.norm_added_k.weight", "blocks.1.cross_attn.norm_k_img.weight"}};
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        char *o = NULL;
        CHECK_EQ(dfm_wan_transformer_original_name(pairs[i][0], &o), 0);
        CHECK_STR(o, pairs[i][1]);
        free(o);
    }
    fprintf(stderr, "  %d diffusers names to original and back\n", n);
    dfm_st_close(dif), dfm_st_close(orig);
}

TEST(wan_lora_load_formats)
{
    const char *cfgs[] = {"a", "b"};
    for (int c = 0; c < 2; c++) {
        char d[512], tmp[600], p[8][700];
        fixture f;
        CHECK_EQ(load_fixture(cfgs[c], &f), 0);
        fixture_dir(d, sizeof d, cfgs[c]);
        snprintf(tmp, sizeof tmp, "%s/wan_lora_%s", dfm_test_tmpdir(), cfgs[c]);
        mkdir(tmp, 0755);
        /* built here: a PEFT model's save, a musubi-tuner file, an alpha_pattern config */
        char src_raw[700], src_dm[700];
        snprintf(src_raw, sizeof src_raw, "%s/lora/lora_params.safetensors", d);
        snprintf(src_dm, sizeof src_dm, "%s/lora/adapter_model.safetensors", d);
        entries e = {0};
        snprintf(p[3], sizeof p[3], "%s/peft_model.safetensors", tmp);
        CHECK_EQ(read_renamed(src_raw, &e, peft_model_name, 1.0f), 0);
        CHECK_EQ(dfm_st_write(p[3], e.e, e.n, NULL), 0);
        entries_free(&e);
        snprintf(p[4], sizeof p[4], "%s/musubi.safetensors", tmp);
        CHECK_EQ(read_renamed(src_dm, &e, musubi_name, 0.5f), 0); /* unfold: B / 2, alpha 8 per module */
        int nmod = e.n / 2;
        for (int i = 0; i < nmod * 2; i++) {
            if (!strstr(e.e[i].name, ".lora_down.")) continue;
            char an[300];
            snprintf(an, sizeof an, "%.*s.alpha", (int)(strstr(e.e[i].name, ".lora_down.") - e.e[i].name), e.e[i].name);
            float eight = 8.0f;
            add_entry(&e, an, 0, NULL, &eight, 1.0f);
        }
        CHECK_EQ(dfm_st_write(p[4], e.e, e.n, NULL), 0);
        entries_free(&e);
        snprintf(p[5], sizeof p[5], "%s/pattern", tmp);
        mkdir(p[5], 0755);
        char fp[800];
        snprintf(fp, sizeof fp, "%s/adapter_model.safetensors", p[5]);
        CHECK_EQ(read_renamed(src_dm, &e, keep_name, 0.5f), 0);
        CHECK_EQ(dfm_st_write(fp, e.e, e.n, "{\"format\":\"pt\"}"), 0);
        entries_free(&e);
        snprintf(fp, sizeof fp, "%s/adapter_config.json", p[5]);
        CHECK_EQ(write_file(fp, "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 1, \"alpha_pattern\": {\"q\": 8, "
                                "\"k\": 8, \"v\": 8, \"o\": 8, \"ffn.0\": 8, \"ffn.2\": 8}, \"rank_pattern\": {}}"),
                 0);

        snprintf(p[0], sizeof p[0], "%s", src_raw);
        snprintf(p[1], sizeof p[1], "%s/lora", d);
        snprintf(p[2], sizeof p[2], "%s/lora/diffusers/pytorch_lora_weights.safetensors", d);
        const char *want[] = {"diffusers / PEFT names, no prefix", "original Wan names (diffusion-pipe / ComfyUI), prefix 'diffusion_model.'",
                              "diffusers / PEFT names, prefix 'transformer.'", "diffusers / PEFT names, prefix 'base_model.model.'",
                              "musubi-tuner / kohya names", "original Wan names"};
        const char *alpha_from[] = {"the caller", "adapter_config.json", "lora_adapter_metadata", "the caller",
                                    "per-module .alpha tensors", "adapter_config.json"};
        dfm_tensor outs[6] = {{0}};
        for (int k = 0; k < 6; k++) {
            dfm_wan_lora_load_opts o = {.alpha = (k == 0 || k == 3) ? 8.0f : 0.0f};
            dfm_wan_lora_info info = {0};
            CHECK_EQ(lora_forward(cfgs[c], &f, p[k], 1.0f, &o, &info, &outs[k]), 0);
            if (!outs[k].data) continue;
            double e1 = rel_t(&outs[k], &f.lout);
            fprintf(stderr, "  %s: %-26s %.2e of max|out| (%s; alpha %g from %s; %d modules, rank %d)\n", cfgs[c],
                    strrchr(p[k], '/') + 1, e1, info.naming, info.alpha, info.alpha_from, info.modules, info.rank_max);
            CHECK(e1 <= 1e-4);
            CHECK(strstr(info.naming, want[k]) != NULL);
            CHECK_STR(info.alpha_from, alpha_from[k]);
            CHECK_EQ(info.modules, 20);
            CHECK_EQ(info.rank_min, 4);
            CHECK_EQ(info.rank_max, 4);
            if (k) CHECK(same_bits(&outs[k], &outs[0]));
        }
        for (int k = 0; k < 6; k++) dfm_tensor_free(&outs[k]);
        free_fixture(&f);
    }
}

/* The tensors of two safetensors files: the same names, shapes, dtypes and bytes. */
static int same_tensors(const char *x, const char *y)
{
    dfm_st *a = NULL, *b = NULL;
    int ok = !dfm_st_open(&a, x) && !dfm_st_open(&b, y) && dfm_st_count(a) == dfm_st_count(b);
    for (int i = 0; ok && i < dfm_st_count(a); i++) {
        const dfm_st_tensor *s = dfm_st_at(a, i), *t = dfm_st_find(b, s->name);
        ok = t && s->dtype == t->dtype && s->ndim == t->ndim && s->nbytes == t->nbytes && !memcmp(s->data, t->data, s->nbytes);
        for (int d = 0; ok && d < s->ndim; d++) ok = s->shape[d] == t->shape[d];
        if (!ok) fprintf(stderr, "  tensor '%s' differs\n", s->name);
    }
    if (ok) ok = !strcmp(dfm_st_metadata(a), dfm_st_metadata(b));
    dfm_st_close(a), dfm_st_close(b);
    return ok;
}

static int same_file(const char *x, const char *y)
{
    dfm_buf a = {0}, b = {0};
    int ok = !dfm_read_file(x, 0, &a) && !dfm_read_file(y, 0, &b) && a.len == b.len && !memcmp(a.data, b.data, a.len);
    dfm_buf_free(&a), dfm_buf_free(&b);
    return ok;
}

TEST(wan_lora_save)
{
    const char *cfgs[] = {"a", "b"};
    for (int c = 0; c < 2; c++) {
        char d[512], out[700], p[800], q[800], fx[700];
        fixture f;
        CHECK_EQ(load_fixture(cfgs[c], &f), 0);
        fixture_dir(d, sizeof d, cfgs[c]);
        snprintf(out, sizeof out, "%s/wan_lora_save_%s", dfm_test_tmpdir(), cfgs[c]);
        /* loaded from PEFT's raw state dict (alpha 8: folded at load), saved with alpha 0 */
        dfm_wan_transformer *m = base_model(cfgs[c]);
        CHECK(m != NULL);
        if (!m) continue;
        snprintf(p, sizeof p, "%s/lora/lora_params.safetensors", d);
        CHECK_EQ(dfm_wan_lora_load(m, p, 1.0f, &(dfm_wan_lora_load_opts){.alpha = 8}, NULL), 0);
        dfm_tensor o1 = {0}, o2 = {0};
        CHECK_EQ(dfm_wan_transformer_forward(m, &f.x, f.t.data, &f.ctx, &o1, NULL, 0, 0), 0);
        CHECK_EQ(dfm_wan_lora_save(m, out, NULL), 0);
        dfm_wan_transformer_free(m);
        snprintf(p, sizeof p, "%s/adapter_model.safetensors", out);
        snprintf(fx, sizeof fx, "%s/lora/adapter_model.safetensors", d);
        CHECK(same_tensors(p, fx));
        CHECK(same_file(p, fx));
        snprintf(q, sizeof q, "%s/adapter_config.json", out);
        snprintf(fx, sizeof fx, "%s/lora/adapter_config.json", d);
        CHECK(same_file(q, fx));
        struct stat sb;
        snprintf(q, sizeof q, "%s/adapter_model.safetensors.tmp", out);
        CHECK(stat(q, &sb) != 0);
        /* reloaded: the same bits */
        CHECK_EQ(lora_forward(cfgs[c], &f, out, 1.0f, NULL, NULL, &o2), 0);
        CHECK(same_bits(&o1, &o2));
        fprintf(stderr, "  %s: saved = fixture adapter_model.safetensors and adapter_config.json byte for byte; reload %s\n",
                cfgs[c], same_bits(&o1, &o2) ? "bit-identical" : "DIFFERS");
        dfm_tensor_free(&o2);

        /* a model trained the dfm way: adapters with alpha 8, B unfolded; saved with alpha 8 */
        m = base_model(cfgs[c]);
        CHECK(m != NULL);
        if (m) {
            int count = 0;
            CHECK_EQ(dfm_wan_transformer_lora_add(m, NULL, 4, 8.0f, 0.0f, 1, &count), 0);
            dfm_st *st = NULL;
            snprintf(p, sizeof p, "%s/lora/lora_params.safetensors", d);
            CHECK_EQ(dfm_st_open(&st, p), 0);
            for (int i = 0; st && i < dfm_wan_transformer_nparams(m); i++) {
                dfm_tensor *t;
                const char *name = dfm_wan_transformer_param(m, i, &t, NULL);
                if (strstr(name, ".lora_")) CHECK_EQ(dfm_st_read(st, name, DFM_F32, t->ndim, t->shape, t->data), 0);
            }
            dfm_st_close(st);
            CHECK_EQ(dfm_wan_transformer_forward(m, &f.x, f.t.data, &f.ctx, &o2, NULL, 0, 0), 0);
            CHECK(rel_t(&o2, &f.lout) <= 1e-4);
            dfm_tensor_free(&o2);
            snprintf(q, sizeof q, "%s_trained", out);
            CHECK_EQ(dfm_wan_lora_save(m, q, &(dfm_wan_lora_save_opts){.alpha = 8}), 0);
            snprintf(p, sizeof p, "%s/adapter_model.safetensors", q);
            snprintf(fx, sizeof fx, "%s/lora/adapter_model.safetensors", d);
            CHECK(same_file(p, fx));
            dfm_wan_transformer_free(m);
        }
        /* mixed ranks: r is the most common, the others in rank_pattern / alpha_pattern (= rank) */
        if (c == 0) {
            m = base_model("a");
            const char *t4[] = {"to_q", "to_k", "to_v", "to_out.0", NULL}, *t2[] = {"ffn.net.0.proj", "ffn.net.2", NULL};
            int n4 = 0, n2 = 0;
            CHECK_EQ(dfm_wan_transformer_lora_add(m, t4, 4, 4.0f, 0.0f, 1, &n4), 0);
            CHECK_EQ(dfm_wan_transformer_lora_add(m, t2, 2, 2.0f, 0.0f, 2, &n2), 0);
            for (int i = 0; i < dfm_wan_transformer_nparams(m); i++) { /* B non-zero */
                dfm_tensor *t;
                const char *name = dfm_wan_transformer_param(m, i, &t, NULL);
                if (strstr(name, ".lora_B."))
                    for (int64_t k = 0; k < dfm_tensor_numel(t); k++) ((float *)t->data)[k] = 0.01f * (float)((k * 7 + i) % 13 - 6);
            }
            CHECK_EQ(dfm_wan_transformer_forward(m, &f.x, f.t.data, &f.ctx, &o2, NULL, 0, 0), 0);
            snprintf(q, sizeof q, "%s_mixed", out);
            CHECK_EQ(dfm_wan_lora_save(m, q, NULL), 0);
            dfm_wan_transformer_free(m);
            dfm_buf b = {0};
            snprintf(p, sizeof p, "%s/adapter_config.json", q);
            CHECK_EQ(dfm_read_file(p, 0, &b), 0);
            dfm_buf_append(&b, "", 1);
            CHECK(b.data && strstr((char *)b.data, "\"r\": 4,\n") != NULL);
            CHECK(b.data && strstr((char *)b.data, "\"rank_pattern\": {\n    \"blocks.0.ffn.0\": 2,\n") != NULL);
            CHECK(b.data && strstr((char *)b.data, "\"alpha_pattern\": {\n    \"blocks.0.ffn.0\": 2,\n") != NULL);
            dfm_buf_free(&b);
            dfm_tensor o3 = {0};
            dfm_wan_lora_info info = {0};
            CHECK_EQ(lora_forward("a", &f, q, 1.0f, NULL, &info, &o3), 0);
            CHECK(same_bits(&o2, &o3));
            CHECK_EQ(info.rank_min, 2);
            CHECK_EQ(info.rank_max, 4);
            dfm_tensor_free(&o3);
            dfm_tensor_free(&o2);
        }
        dfm_tensor_free(&o1);
        free_fixture(&f);
    }
}

TEST(wan_lora_multiplier)
{
    fixture f;
    char d[512], p[700];
    CHECK_EQ(load_fixture("a", &f), 0);
    fixture_dir(d, sizeof d, "a");
    snprintf(p, sizeof p, "%s/lora", d);
    dfm_tensor o0 = {0}, base = {0};
    CHECK_EQ(lora_forward("a", &f, p, 0.0f, NULL, NULL, &o0), 0);
    dfm_wan_transformer *m = base_model("a");
    CHECK(m != NULL);
    if (m) CHECK_EQ(dfm_wan_transformer_forward(m, &f.x, f.t.data, &f.ctx, &base, NULL, 0, 0), 0);
    dfm_wan_transformer_free(m);
    double e = rel_t(&o0, &f.out);
    fprintf(stderr, "  multiplier 0: %.2e of max|out| from out.npy, %s the base model\n", e,
            same_bits(&o0, &base) ? "bit-identical to" : "DIFFERENT from");
    CHECK(e <= 1e-4);
    CHECK(same_bits(&o0, &base));
    /* not finite: refused */
    m = base_model("a");
    if (m) CHECK_EQ(dfm_wan_lora_load(m, p, NAN, NULL, NULL), DFM_E_ARG);
    dfm_wan_transformer_free(m);
    dfm_tensor_free(&o0), dfm_tensor_free(&base);
    free_fixture(&f);
}

/* Several adapters at once: the fixture's adapter twice at 0.5 (one adapter of twice the rank)
 * gives its forward at 1.0 (lora_out.npy), and the same file in two naming families at 0.3 and 0.7
 * too; a module in only one file keeps its rank. */
TEST(wan_lora_load_many)
{
    fixture f;
    char d[512], p[700], pd[700];
    CHECK_EQ(load_fixture("a", &f), 0);
    fixture_dir(d, sizeof d, "a");
    snprintf(p, sizeof p, "%s/lora", d);
    snprintf(pd, sizeof pd, "%s/lora/diffusers", d);
    const char *pairs[2][2] = {{p, p}, {p, pd}};
    const float mults[2][2] = {{0.5f, 0.5f}, {0.3f, 0.7f}};
    for (int c = 0; c < 2; c++) {
        dfm_wan_transformer *m = base_model("a");
        CHECK(m != NULL);
        if (!m) continue;
        dfm_wan_lora_info info[2];
        int rc = dfm_wan_lora_load_many(m, pairs[c], mults[c], 2, NULL, info);
        if (rc) fprintf(stderr, "  %s\n", dfm_errmsg());
        CHECK_EQ(rc, 0);
        dfm_tensor out = {0};
        if (!rc) CHECK_EQ(dfm_wan_transformer_forward(m, &f.x, f.t.data, &f.ctx, &out, NULL, 0, 0), 0);
        double e = rel_t(&out, &f.lout);
        fprintf(stderr, "  two adapters (%g + %g): %.2e of max|out| from lora_out.npy (ranks %d + %d)\n", mults[c][0],
                mults[c][1], e, info[0].rank_max, info[1].rank_max);
        CHECK(e <= 1e-5);
        /* the summed rank is what the model now carries */
        for (int i = 0; i < dfm_wan_transformer_nparams(m); i++) {
            dfm_tensor *t;
            const char *name = dfm_wan_transformer_param(m, i, &t, NULL);
            if (strstr(name, "lora_A")) {
                CHECK_EQ(t->shape[0], 2 * info[0].rank_max);
                break;
            }
        }
        dfm_tensor_free(&out);
        /* a second call on a model with adapters: refused */
        CHECK_EQ(dfm_wan_lora_load_many(m, pairs[c], mults[c], 2, NULL, NULL), DFM_E_ARG);
        dfm_wan_transformer_free(m);
    }
    free_fixture(&f);
}

TEST(wan_lora_errors)
{
    char dir[600], path[700];
    snprintf(dir, sizeof dir, "%s/wan_lora_errors", dfm_test_tmpdir());
    mkdir(dir, 0755);
    float z[64 * 4] = {0};
    const int64_t a_ok[2] = {4, 32}, b_ok[2] = {32, 4}, a_bad[2] = {4, 31}, b_r3[2] = {32, 3}, s1[1] = {4};
    struct {
        const char *what;
        int want;
        const char *names[2];
        const int64_t *shapes[2];
        int ndim[2];
        const char *named; /* the message names this tensor */
    } cases[] = {
        {"wrong shape", DFM_E_FORMAT,
         {"diffusion_model.blocks.0.self_attn.q.lora_A.weight", "diffusion_model.blocks.0.self_attn.q.lora_B.weight"},
         {a_bad, b_ok}, {2, 2}, "diffusion_model.blocks.0.self_attn.q.lora_A.weight"},
        {"ranks disagree", DFM_E_FORMAT,
         {"diffusion_model.blocks.0.self_attn.q.lora_A.weight", "diffusion_model.blocks.0.self_attn.q.lora_B.weight"},
         {a_ok, b_r3}, {2, 2}, "diffusion_model.blocks.0.self_attn.q.lora_B.weight"},
        {"unknown module", DFM_E_FORMAT,
         {"diffusion_model.blocks.2.self_attn.q.lora_A.weight", "diffusion_model.blocks.2.self_attn.q.lora_B.weight"},
         {a_ok, b_ok}, {2, 2}, "diffusion_model.blocks.2.self_attn.q.lora_A.weight"},
        {"unknown diffusers module", DFM_E_FORMAT,
         {"transformer.blocks.0.attn1.to_z.lora_A.weight", "transformer.blocks.0.attn1.to_z.lora_B.weight"},
         {a_ok, b_ok}, {2, 2}, "transformer.blocks.0.attn1.to_z.lora_A.weight"},
        {"A without B", DFM_E_FORMAT, {"diffusion_model.blocks.0.self_attn.q.lora_A.weight", NULL}, {a_ok, NULL}, {2, 0},
         "diffusion_model.blocks.0.self_attn.q.lora_A.weight"},
        {"B without A", DFM_E_FORMAT, {"blocks.1.ffn.net.2.lora_B.weight", NULL}, {b_ok, NULL}, {2, 0},
         "blocks.1.ffn.net.2.lora_B.weight"},
        {"not LoRA", DFM_E_UNSUPPORTED, {"diffusion_model.blocks.0.norm3.diff", NULL}, {s1, NULL}, {1, 0},
         "diffusion_model.blocks.0.norm3.diff"},
        {"LoRA bias", DFM_E_UNSUPPORTED,
         {"transformer.blocks.0.attn1.to_q.lora_A.weight", "transformer.blocks.0.attn1.to_q.lora_B.bias"}, {a_ok, s1},
         {2, 1}, "transformer.blocks.0.attn1.to_q.lora_B.bias"},
        {"patch embedding", DFM_E_UNSUPPORTED,
         {"transformer.patch_embedding.lora_A.weight", "transformer.patch_embedding.lora_B.weight"}, {a_ok, b_ok}, {2, 2},
         "transformer.patch_embedding.lora_A.weight"},
    };
    dfm_wan_transformer *m = base_model("a");
    CHECK(m != NULL);
    if (!m) return;
    int np = dfm_wan_transformer_nparams(m);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        dfm_st_entry e[2] = {{0}};
        int n = 0;
        for (int k = 0; k < 2 && cases[i].names[k]; k++, n++) {
            e[k].name = cases[i].names[k], e[k].dtype = DFM_F32, e[k].ndim = cases[i].ndim[k], e[k].data = z;
            for (int j = 0; j < e[k].ndim; j++) e[k].shape[j] = cases[i].shapes[k][j];
        }
        snprintf(path, sizeof path, "%s/case%zu.safetensors", dir, i);
        CHECK_EQ(dfm_st_write(path, e, n, NULL), 0);
        int rc = dfm_wan_lora_load(m, path, 1.0f, NULL, NULL);
        fprintf(stderr, "  %s: %s\n", cases[i].what, dfm_errmsg());
        CHECK_EQ(rc, cases[i].want);
        CHECK(strstr(dfm_errmsg(), cases[i].named) != NULL);
        CHECK_EQ(dfm_wan_transformer_nparams(m), np); /* nothing added */
    }
    /* an alpha_pattern that is a regular expression */
    char src[700], pd[700];
    snprintf(pd, sizeof pd, "%s/regex", dir);
    mkdir(pd, 0755);
    snprintf(src, sizeof src, "%s/wan_transformer/a/lora/adapter_model.safetensors", dfm_test_fixtures());
    entries es = {0};
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", pd);
    CHECK_EQ(read_renamed(src, &es, keep_name, 1.0f), 0);
    CHECK_EQ(dfm_st_write(path, es.e, es.n, NULL), 0);
    entries_free(&es);
    snprintf(path, sizeof path, "%s/adapter_config.json", pd);
    CHECK_EQ(write_file(path, "{\"r\": 4, \"lora_alpha\": 4, \"alpha_pattern\": {\"blocks\\\\.0\\\\..*\": 8}}"), 0);
    CHECK_EQ(dfm_wan_lora_load(m, pd, 1.0f, NULL, NULL), DFM_E_UNSUPPORTED);
    fprintf(stderr, "  regex alpha_pattern: %s\n", dfm_errmsg());
    CHECK(strstr(dfm_errmsg(), "alpha_pattern") != NULL);
    /* a missing path; an empty directory */
    snprintf(path, sizeof path, "%s/none", dir);
    CHECK_EQ(dfm_wan_lora_load(m, path, 1.0f, NULL, NULL), DFM_E_IO);
    CHECK_EQ(dfm_wan_lora_load(m, dir, 1.0f, NULL, NULL), DFM_E_IO);
    CHECK_EQ(dfm_wan_transformer_nparams(m), np);
    /* no adapters to save */
    snprintf(path, sizeof path, "%s/nothing", dir);
    CHECK_EQ(dfm_wan_lora_save(m, path, NULL), DFM_E_ARG);
    /* a second adapter */
    snprintf(path, sizeof path, "%s/wan_transformer/a/lora", dfm_test_fixtures());
    CHECK_EQ(dfm_wan_lora_load(m, path, 1.0f, NULL, NULL), 0);
    CHECK_EQ(lora_count(m), 40);
    CHECK_EQ(dfm_wan_lora_load(m, path, 1.0f, NULL, NULL), DFM_E_ARG);
    CHECK(strstr(dfm_errmsg(), "already has adapters") != NULL);
    dfm_wan_transformer_free(m);
}

/* On a CUDA model: the adapter loads onto the device, the forward matches diffusers (1e-4), and
 * saving from the device gives the fixture's file byte for byte. Skips without a device. */
TEST(wan_lora_cuda)
{
    if (dfm_test_cuda_skip()) return;
    fixture f;
    char d[512], td[600], p[700], out[700], fx[700];
    CHECK_EQ(load_fixture("a", &f), 0);
    fixture_dir(d, sizeof d, "a");
    snprintf(td, sizeof td, "%s/transformer", d);
    dfm_wan_transformer *m = NULL;
    dfm_wan_transformer_opts o = {.device = DFM_CUDA, .weights = DFM_F32, .compute = DFM_F32};
    CHECK_EQ(dfm_wan_transformer_load(&m, td, &o), 0);
    if (!m) {
        free_fixture(&f);
        return;
    }
    snprintf(p, sizeof p, "%s/lora/lora_params.safetensors", d);
    CHECK_EQ(dfm_wan_lora_load(m, p, 1.0f, &(dfm_wan_lora_load_opts){.alpha = 8}, NULL), 0);
    dfm_tensor xg = {0}, cg = {0}, og = {0}, oh = {0};
    CHECK_EQ(dfm_tensor_copy(&xg, &f.x, DFM_CUDA), 0);
    CHECK_EQ(dfm_tensor_copy(&cg, &f.ctx, DFM_CUDA), 0);
    CHECK_EQ(dfm_wan_transformer_forward(m, &xg, f.t.data, &cg, &og, NULL, 0, 0), 0);
    CHECK_EQ(dfm_tensor_copy(&oh, &og, DFM_CPU), 0);
    double e = rel_t(&oh, &f.lout);
    fprintf(stderr, "  cuda: LoRA forward %.2e of max|out|\n", e);
    CHECK(e <= 1e-4);
    snprintf(out, sizeof out, "%s/wan_lora_cuda", dfm_test_tmpdir());
    CHECK_EQ(dfm_wan_lora_save(m, out, NULL), 0);
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", out);
    snprintf(fx, sizeof fx, "%s/lora/adapter_model.safetensors", d);
    CHECK(same_file(p, fx));
    dfm_tensor_free(&xg), dfm_tensor_free(&cg), dfm_tensor_free(&og), dfm_tensor_free(&oh);
    dfm_wan_transformer_free(m);
    free_fixture(&f);
}
