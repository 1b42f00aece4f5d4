/* test_wan_save.c — saving a Wan transformer (models/wan/transformer.h, "saving") on the fixtures
 * of scripts/make-wan-transformer-fixtures.py (tests/fixtures/wan_transformer/README.md):
 *   byte for byte what diffusers / the fixture generator wrote from the same weights: a (F32)
 *     saved F32 gives a/transformer's config.json and safetensors; c loaded as BF16 and saved
 *     BF16 with max_shard_bytes 20000 (the generator's "20KB") gives c/transformer's three shards,
 *     index and config; a saved with original names gives a/original's file (prefix "") and
 *     a/comfyui's (prefix "model.diffusion_model.");
 *   round trips through the production loader: F32 saves of a and c reload to a bit-identical
 *     forward; BF16 saves reload (BF16 weights) to the forward of the fixture loaded with BF16
 *     weights, bit for bit; a save sharded per tensor (69 shards) and one of a few shards load
 *     back, and re-saving the directory unsharded removes the stale shards and index; the
 *     original-name files load back (as original Wan, and as ComfyUI with its prefix);
 *   LoRA: an adapter loaded from a/lora, and one added with alpha 8 (scale 2) with random B,
 *     saved merged, reload to the unmerged forward within 1e-5 of max |out|; unmerged: refused;
 *   full fine-tuning: a trainable model after an SGD step saves its modified weights (the reload
 *     gives its forward bit for bit, and differs from out.npy);
 *   errors: dtype, missing parent, dropped (packed) weights;
 *   on a CUDA model (skipped without one): the same files byte for byte. */
#include "test.h"
#include "tensor_util.h"
#include "base/buf.h"
#include "base/error.h"
#include "models/wan/lora.h"
#include "models/wan/transformer.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void fixture_dir(char *out, size_t n, const char *cfg) { snprintf(out, n, "%s/wan_transformer/%s", dfm_test_fixtures(), cfg); }

typedef struct {
    dfm_tensor x, t, ctx, out;
} fixture;

static int load_fixture(const char *cfg, fixture *f)
{
    char d[512];
    fixture_dir(d, sizeof d, cfg);
    memset(f, 0, sizeof *f);
    return dfm_test_load_npy(d, "hidden_states.npy", &f->x, 0) || dfm_test_load_npy(d, "timestep.npy", &f->t, 0) ||
                   dfm_test_load_npy(d, "encoder_hidden_states.npy", &f->ctx, 0) || dfm_test_load_npy(d, "out.npy", &f->out, 0)
               ? -1
               : 0;
}

static void free_fixture(fixture *f)
{
    dfm_tensor_free(&f->x), dfm_tensor_free(&f->t), dfm_tensor_free(&f->ctx), dfm_tensor_free(&f->out);
}

static dfm_wan_transformer *load_model(const char *path, dfm_dtype weights, int trainable, int heads)
{
    dfm_wan_transformer *m = NULL;
    dfm_wan_transformer_opts o = {.device = DFM_CPU, .weights = weights, .compute = weights, .trainable = trainable,
                                  .heads = heads};
    if (dfm_wan_transformer_load(&m, path, &o)) fprintf(stderr, "  load %s: %s\n", path, dfm_errmsg());
    return m;
}

static dfm_wan_transformer *fixture_model(const char *cfg, dfm_dtype weights, int trainable)
{
    char d[512], td[600];
    fixture_dir(d, sizeof d, cfg);
    snprintf(td, sizeof td, "%s/transformer", d);
    return load_model(td, weights, trainable, 0);
}

/* m's forward on the fixture's inputs into out (CPU F32); 0 on success. */
static int forward(dfm_wan_transformer *m, const fixture *f, dfm_tensor *out)
{
    memset(out, 0, sizeof *out);
    if (!m) return -1;
    int rc = dfm_wan_transformer_forward(m, &f->x, f->t.data, &f->ctx, out, NULL, 0, 0);
    if (rc) fprintf(stderr, "  forward: %s\n", dfm_errmsg());
    return rc;
}

/* The forward of the model at path (loaded with weights/heads) into out. */
static int forward_path(const char *path, dfm_dtype weights, int heads, const fixture *f, dfm_tensor *out)
{
    dfm_wan_transformer *m = load_model(path, weights, 0, heads);
    int rc = forward(m, f, out);
    dfm_wan_transformer_free(m);
    return rc;
}

static int same_bits(const dfm_tensor *a, const dfm_tensor *b)
{
    return a->data && b->data && dfm_tensor_nbytes(a) == dfm_tensor_nbytes(b) && !memcmp(a->data, b->data, dfm_tensor_nbytes(a));
}

/* max |a - b| / max |b| */
static double rel(const dfm_tensor *a, const dfm_tensor *b)
{
    double s = 0;
    const float *y = b->data;
    for (int64_t i = 0; i < dfm_tensor_numel(b); i++) s = fmax(s, fabs(y[i]));
    return dfm_test_max_abs_diff(a, b) / (s ? s : 1);
}

/* 1 when the two files hold the same bytes (prints which differ). */
static int same_file(const char *a, const char *b)
{
    dfm_buf x = {0}, y = {0};
    int ok = !dfm_read_file(a, 0, &x) && !dfm_read_file(b, 0, &y) && x.len == y.len && !memcmp(x.data, y.data, x.len);
    if (!ok) fprintf(stderr, "  '%s' (%zu bytes) differs from '%s' (%zu bytes)\n", a, x.len, b, y.len);
    dfm_buf_free(&x), dfm_buf_free(&y);
    return ok;
}

static int exists(const char *dir, const char *name)
{
    char p[1024];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return stat(p, &st) == 0;
}

/* Number of entries in dir whose name ends in suffix. */
static int count_suffix(const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *de;
    size_t k = strlen(suffix);
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        n += l >= k && !strcmp(de->d_name + l - k, suffix);
    }
    closedir(d);
    return n;
}

static void tmp_path(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", dfm_test_tmpdir(), name); }

/* ---- byte for byte ------------------------------------------------------------------------------ */

TEST(wan_save_bytes)
{
    char d[512], got[700], want[700], dir[600];
    /* a, F32, one file */
    dfm_wan_transformer *m = fixture_model("a", DFM_F32, 0);
    CHECK(m != NULL);
    if (!m) return;
    tmp_path(dir, sizeof dir, "save_bytes_a");
    CHECK_EQ(dfm_wan_transformer_save(m, dir, DFM_F32, 0, 0), 0);
    fixture_dir(d, sizeof d, "a");
    const char *files[] = {"config.json", "diffusion_pytorch_model.safetensors"};
    for (int i = 0; i < 2; i++) {
        snprintf(got, sizeof got, "%s/%s", dir, files[i]);
        snprintf(want, sizeof want, "%s/transformer/%s", d, files[i]);
        CHECK(same_file(got, want));
    }
    CHECK_EQ(count_suffix(dir, ".tmp"), 0);
    /* original names: diffusion-pipe's and ComfyUI's */
    tmp_path(got, sizeof got, "save_bytes_a_original.safetensors");
    CHECK_EQ(dfm_wan_transformer_save_original(m, got, DFM_F32, "", 0), 0);
    snprintf(want, sizeof want, "%s/original/diffusion_pytorch_model.safetensors", d);
    CHECK(same_file(got, want));
    tmp_path(got, sizeof got, "save_bytes_a_comfyui.safetensors");
    CHECK_EQ(dfm_wan_transformer_save_original(m, got, DFM_F32, "model.diffusion_model.", 0), 0);
    snprintf(want, sizeof want, "%s/comfyui/wan_tiny_a.safetensors", d);
    CHECK(same_file(got, want));
    dfm_wan_transformer_free(m);

    /* c, BF16 (keep-f32 modules F32), in the generator's 20KB shards */
    m = fixture_model("c", DFM_BF16, 0);
    CHECK(m != NULL);
    if (!m) return;
    tmp_path(dir, sizeof dir, "save_bytes_c");
    CHECK_EQ(dfm_wan_transformer_save(m, dir, DFM_BF16, 20000, 0), 0);
    fixture_dir(d, sizeof d, "c");
    const char *cf[] = {"config.json", "diffusion_pytorch_model.safetensors.index.json",
                        "diffusion_pytorch_model-00001-of-00003.safetensors", "diffusion_pytorch_model-00002-of-00003.safetensors",
                        "diffusion_pytorch_model-00003-of-00003.safetensors"};
    for (int i = 0; i < 5; i++) {
        snprintf(got, sizeof got, "%s/%s", dir, cf[i]);
        snprintf(want, sizeof want, "%s/transformer/%s", d, cf[i]);
        CHECK(same_file(got, want));
    }
    CHECK_EQ(count_suffix(dir, ".safetensors"), 3);
    dfm_wan_transformer_free(m);
}

/* ---- round trips through the loader ------------------------------------------------------------- */

static void round_trip(const char *cfg)
{
    fixture f;
    CHECK_EQ(load_fixture(cfg, &f), 0);
    char dir[600], d[512], td[600];
    fixture_dir(d, sizeof d, cfg);
    snprintf(td, sizeof td, "%s/transformer", d);
    /* F32: the reload's forward is the original's, bit for bit */
    dfm_wan_transformer *m = fixture_model(cfg, DFM_F32, 0);
    dfm_tensor o0, o1, b0, b1;
    CHECK_EQ(forward(m, &f, &o0), 0);
    snprintf(dir, sizeof dir, "%s/rt_%s_f32", dfm_test_tmpdir(), cfg);
    CHECK_EQ(dfm_wan_transformer_save(m, dir, DFM_F32, 0, 0), 0);
    CHECK_EQ(forward_path(dir, DFM_F32, 0, &f, &o1), 0);
    CHECK(same_bits(&o0, &o1));
    CHECK(rel(&o0, &f.out) < 1e-5); /* and it is diffusers' */
    /* BF16: the forward of the fixture loaded with BF16 weights */
    snprintf(dir, sizeof dir, "%s/rt_%s_bf16", dfm_test_tmpdir(), cfg);
    CHECK_EQ(dfm_wan_transformer_save(m, dir, DFM_BF16, 0, 0), 0);
    CHECK_EQ(forward_path(td, DFM_BF16, 0, &f, &b0), 0);
    CHECK_EQ(forward_path(dir, DFM_BF16, 0, &f, &b1), 0);
    CHECK(same_bits(&b0, &b1));
    CHECK(rel(&b1, &f.out) < 2e-2);
    dfm_wan_transformer_free(m);
    dfm_tensor_free(&o0), dfm_tensor_free(&o1), dfm_tensor_free(&b0), dfm_tensor_free(&b1);
    free_fixture(&f);
}

TEST(wan_save_round_trip_a) { round_trip("a"); }
TEST(wan_save_round_trip_c) { round_trip("c"); }

TEST(wan_save_shards)
{
    fixture f;
    CHECK_EQ(load_fixture("a", &f), 0);
    dfm_wan_transformer *m = fixture_model("a", DFM_F32, 0);
    dfm_tensor o0, o1;
    CHECK_EQ(forward(m, &f, &o0), 0);
    char dir[600];
    tmp_path(dir, sizeof dir, "shards_a");
    /* every tensor over the limit: one shard each */
    CHECK_EQ(dfm_wan_transformer_save(m, dir, DFM_F32, 1, 0), 0);
    CHECK_EQ(count_suffix(dir, ".safetensors"), 69);
    CHECK(exists(dir, "diffusion_pytorch_model-00069-of-00069.safetensors"));
    CHECK(exists(dir, "diffusion_pytorch_model.safetensors.index.json"));
    CHECK(!exists(dir, "diffusion_pytorch_model.safetensors"));
    CHECK_EQ(forward_path(dir, DFM_F32, 0, &f, &o1), 0);
    CHECK(same_bits(&o0, &o1));
    dfm_tensor_free(&o1);
    /* in the order of torch's state_dict, as diffusers numbers them (checked against
     * save_pretrained(max_shard_size=1)): own parameters before submodules' */
    const char *where[][2] = {{"scale_shift_table", "00001"}, {"patch_embedding.weight", "00002"},
                              {"condition_embedder.time_embedder.linear_1.weight", "00004"},
                              {"condition_embedder.text_embedder.linear_2.bias", "00013"},
                              {"blocks.0.scale_shift_table", "00014"}, {"blocks.0.attn1.to_q.weight", "00015"},
                              {"blocks.0.attn2.norm_k.weight", "00034"}, {"blocks.0.norm2.weight", "00035"},
                              {"blocks.0.ffn.net.0.proj.weight", "00037"}, {"blocks.1.ffn.net.2.bias", "00067"},
                              {"proj_out.bias", "00069"}};
    {
        dfm_buf ib = {0};
        char ip[700], line[300];
        snprintf(ip, sizeof ip, "%s/diffusion_pytorch_model.safetensors.index.json", dir);
        CHECK_EQ(dfm_read_file(ip, 0, &ib), 0);
        for (size_t i = 0; i < sizeof where / sizeof where[0]; i++) {
            snprintf(line, sizeof line, "\"%s\": \"diffusion_pytorch_model-%s-of-00069.safetensors\"", where[i][0], where[i][1]);
            CHECK(ib.data && memmem(ib.data, ib.len, line, strlen(line)));
        }
        dfm_buf_free(&ib);
    }
    /* a few shards into the same directory: the 69 stale ones are removed */
    CHECK_EQ(dfm_wan_transformer_save(m, dir, DFM_F32, 50000, 0), 0);
    int n = count_suffix(dir, ".safetensors");
    CHECK(n >= 3 && n <= 6);
    CHECK(!exists(dir, "diffusion_pytorch_model-00069-of-00069.safetensors"));
    CHECK_EQ(forward_path(dir, DFM_F32, 0, &f, &o1), 0);
    CHECK(same_bits(&o0, &o1));
    dfm_tensor_free(&o1);
    /* the index: total_size is the sum of the tensors (40,864 F32 parameters) */
    dfm_buf b = {0};
    char p[700];
    snprintf(p, sizeof p, "%s/diffusion_pytorch_model.safetensors.index.json", dir);
    CHECK_EQ(dfm_read_file(p, 0, &b), 0);
    CHECK(b.data && memmem(b.data, b.len, "\"total_size\": 163456\n", 21));
    dfm_buf_free(&b);
    /* unsharded again: shards and index go */
    CHECK_EQ(dfm_wan_transformer_save(m, dir, DFM_F32, 0, 0), 0);
    CHECK_EQ(count_suffix(dir, ".safetensors"), 1);
    CHECK(!exists(dir, "diffusion_pytorch_model.safetensors.index.json"));
    CHECK_EQ(forward_path(dir, DFM_F32, 0, &f, &o1), 0);
    CHECK(same_bits(&o0, &o1));
    dfm_tensor_free(&o1);
    dfm_tensor_free(&o0);
    dfm_wan_transformer_free(m);
    free_fixture(&f);
}

TEST(wan_save_original)
{
    const char *cfgs[] = {"a", "c"};
    for (int k = 0; k < 2; k++) {
        fixture f;
        CHECK_EQ(load_fixture(cfgs[k], &f), 0);
        dfm_wan_transformer *m = fixture_model(cfgs[k], DFM_F32, 0);
        dfm_tensor o0, o1;
        CHECK_EQ(forward(m, &f, &o0), 0);
        const char *prefixes[] = {"", "model.diffusion_model."};
        for (int i = 0; i < 2; i++) {
            char p[600];
            snprintf(p, sizeof p, "%s/orig_%s_%d.safetensors", dfm_test_tmpdir(), cfgs[k], i);
            CHECK_EQ(dfm_wan_transformer_save_original(m, p, DFM_F32, prefixes[i], 0), 0);
            /* no config.json: the head count is given (dim 32 / 24 is not a multiple of 128);
             * c's eps 1e-3 is not in the file, so its reload computes with 1e-6 (compare a only) */
            CHECK_EQ(forward_path(p, DFM_F32, 2, &f, &o1), 0);
            if (k == 0) CHECK(same_bits(&o0, &o1));
            else CHECK(rel(&o1, &o0) > 1e-4 && rel(&o1, &o0) < 2e-2);
            dfm_tensor_free(&o1);
            /* BF16 storage loads back as the BF16 model */
            snprintf(p, sizeof p, "%s/orig_%s_%d_bf16.safetensors", dfm_test_tmpdir(), cfgs[k], i);
            CHECK_EQ(dfm_wan_transformer_save_original(m, p, DFM_BF16, prefixes[i], 0), 0);
            dfm_wan_transformer *mb = load_model(p, DFM_BF16, 0, 2);
            CHECK(mb != NULL);
            dfm_wan_transformer_free(mb);
        }
        dfm_tensor_free(&o0);
        dfm_wan_transformer_free(m);
        free_fixture(&f);
    }
}

/* ---- LoRA and training ------------------------------------------------------------------------- */

TEST(wan_save_lora_merge)
{
    fixture f;
    CHECK_EQ(load_fixture("a", &f), 0);
    char d[512], lp[600], dir[600];
    fixture_dir(d, sizeof d, "a");
    snprintf(lp, sizeof lp, "%s/lora", d);
    dfm_tensor o0, o1;
    /* the fixture's adapter (scale folded into B) */
    dfm_wan_transformer *m = fixture_model("a", DFM_F32, 0);
    CHECK_EQ(dfm_wan_lora_load(m, lp, 1.0f, NULL, NULL), 0);
    CHECK_EQ(forward(m, &f, &o0), 0);
    tmp_path(dir, sizeof dir, "lora_merged");
    CHECK_EQ(dfm_wan_transformer_save(m, dir, DFM_F32, 0, 0), DFM_E_ARG);
    CHECK(strstr(dfm_errmsg(), "LoRA adapters") != NULL);
    CHECK(!exists(dir, "config.json"));
    CHECK_EQ(dfm_wan_transformer_save(m, dir, DFM_F32, 0, 1), 0);
    CHECK_EQ(forward_path(dir, DFM_F32, 0, &f, &o1), 0);
    double e = rel(&o1, &o0);
    fprintf(stderr, "  merged (a/lora) vs unmerged: %.2g of max |out|\n", e);
    CHECK(e < 1e-5);
    CHECK(rel(&o0, &f.out) > 0.1); /* the adapter matters */
    dfm_tensor_free(&o1);
    /* the same, original names */
    tmp_path(lp, sizeof lp, "lora_merged_orig.safetensors");
    CHECK_EQ(dfm_wan_transformer_save_original(m, lp, DFM_F32, "", 0), DFM_E_ARG);
    CHECK_EQ(dfm_wan_transformer_save_original(m, lp, DFM_F32, "", 1), 0);
    CHECK_EQ(forward_path(lp, DFM_F32, 2, &f, &o1), 0);
    CHECK(rel(&o1, &o0) < 1e-5);
    dfm_tensor_free(&o1), dfm_tensor_free(&o0);
    dfm_wan_transformer_free(m);

    /* a trained-style adapter: alpha 8, rank 4 (scale 2 in the layer), B random, on every linear
     * of the default targets and the head */
    m = fixture_model("a", DFM_F32, 0);
    const char *targets[] = {"to_q", "to_k", "to_v", "to_out.0", "ffn.net.0.proj", "ffn.net.2", "proj_out", NULL};
    int count = 0;
    CHECK_EQ(dfm_wan_transformer_lora_add(m, targets, 4, 8.0f, 0.0f, 7, &count), 0);
    CHECK_EQ(count, 21);
    uint32_t s = 12345;
    for (int i = 0; i < dfm_wan_transformer_nparams(m); i++) {
        dfm_tensor *p;
        const char *name = dfm_wan_transformer_param(m, i, &p, NULL);
        if (!strstr(name, ".lora_B.")) continue;
        float *v = p->data;
        for (int64_t k = 0; k < dfm_tensor_numel(p); k++) {
            s = s * 1664525u + 1013904223u;
            v[k] = ((float)(s >> 8) / 16777216.0f - 0.5f) * 0.4f;
        }
    }
    CHECK_EQ(forward(m, &f, &o0), 0);
    tmp_path(dir, sizeof dir, "lora_merged_scale2");
    CHECK_EQ(dfm_wan_transformer_save(m, dir, DFM_F32, 0, 1), 0);
    CHECK_EQ(forward_path(dir, DFM_F32, 0, &f, &o1), 0);
    e = rel(&o1, &o0);
    fprintf(stderr, "  merged (alpha 8, rank 4) vs unmerged: %.2g of max |out|\n", e);
    CHECK(e < 1e-5);
    CHECK(rel(&o0, &f.out) > 0.1);
    dfm_tensor_free(&o1), dfm_tensor_free(&o0);
    dfm_wan_transformer_free(m);
    free_fixture(&f);
}

TEST(wan_save_trainable)
{
    fixture f;
    CHECK_EQ(load_fixture("a", &f), 0);
    dfm_wan_transformer *m = fixture_model("a", DFM_F32, 1);
    CHECK(m != NULL);
    if (!m) return;
    /* one SGD step on L = sum(out * out) */
    dfm_tensor out, o0, o1;
    dfm_wan_acts *acts = NULL;
    CHECK_EQ(dfm_wan_transformer_forward(m, &f.x, f.t.data, &f.ctx, &out, &acts, 0, 0), 0);
    CHECK_EQ(dfm_wan_transformer_backward(m, acts, &out, NULL, NULL), 0);
    int stepped = 0;
    for (int i = 0; i < dfm_wan_transformer_nparams(m); i++) {
        dfm_tensor *p, *g;
        dfm_wan_transformer_param(m, i, &p, &g);
        if (!g || !g->data) continue;
        float *pv = p->data;
        const float *gv = g->data;
        for (int64_t k = 0; k < dfm_tensor_numel(p); k++) pv[k] -= 1e-3f * gv[k];
        stepped++;
    }
    CHECK_EQ(stepped, 69);
    dfm_tensor_free(&out);
    CHECK_EQ(forward(m, &f, &o0), 0);
    CHECK(rel(&o0, &f.out) > 1e-4); /* the step changed the model */
    char dir[600];
    tmp_path(dir, sizeof dir, "trained");
    CHECK_EQ(dfm_wan_transformer_save(m, dir, DFM_F32, 0, 0), 0);
    CHECK_EQ(forward_path(dir, DFM_F32, 0, &f, &o1), 0);
    CHECK(same_bits(&o0, &o1));
    dfm_tensor_free(&o1), dfm_tensor_free(&o0);
    dfm_wan_transformer_free(m);
    free_fixture(&f);
}

TEST(wan_save_errors)
{
    dfm_wan_transformer *m = fixture_model("a", DFM_BF16, 0);
    CHECK(m != NULL);
    if (!m) return;
    char dir[600];
    tmp_path(dir, sizeof dir, "err");
    CHECK_EQ(dfm_wan_transformer_save(m, dir, DFM_F16, 0, 0), DFM_E_ARG);
    CHECK_EQ(dfm_wan_transformer_save_original(m, dir, DFM_U8, NULL, 0), DFM_E_ARG);
    tmp_path(dir, sizeof dir, "no/such/parent");
    CHECK_EQ(dfm_wan_transformer_save(m, dir, DFM_F32, 0, 0), DFM_E_IO);
    CHECK(strstr(dfm_errmsg(), "no/such/parent") != NULL);
    CHECK_EQ(dfm_wan_transformer_save_original(m, dir, DFM_F32, NULL, 0), DFM_E_IO);
    /* a file where the directory should be */
    tmp_path(dir, sizeof dir, "err_file");
    CHECK_EQ(dfm_write_file_atomic(dir, "x", 1), 0);
    CHECK_EQ(dfm_wan_transformer_save(m, dir, DFM_F32, 0, 0), DFM_E_IO);
    CHECK(strstr(dfm_errmsg(), "not a directory") != NULL);
    /* packed for sampling, weights dropped: nothing to save */
    int n = 0;
    CHECK_EQ(dfm_wan_transformer_pack(m, 1, &n), 0);
    tmp_path(dir, sizeof dir, "err_packed");
    if (n > 0) {
        CHECK_EQ(dfm_wan_transformer_save(m, dir, DFM_F32, 0, 0), DFM_E_ARG);
        CHECK(strstr(dfm_errmsg(), "dropped") != NULL);
    }
    dfm_wan_transformer_free(m);
}

TEST(wan_save_cuda)
{
    if (dfm_test_cuda_skip()) return;
    char d[512], td[600], got[700], want[700], dir[600];
    fixture_dir(d, sizeof d, "a");
    snprintf(td, sizeof td, "%s/transformer", d);
    dfm_wan_transformer *m = NULL;
    dfm_wan_transformer_opts o = {.device = DFM_CUDA, .weights = DFM_F32, .compute = DFM_F32};
    CHECK_EQ(dfm_wan_transformer_load(&m, td, &o), 0);
    if (!m) return;
    tmp_path(dir, sizeof dir, "cuda_a");
    CHECK_EQ(dfm_wan_transformer_save(m, dir, DFM_F32, 0, 0), 0);
    snprintf(got, sizeof got, "%s/diffusion_pytorch_model.safetensors", dir);
    snprintf(want, sizeof want, "%s/diffusion_pytorch_model.safetensors", td);
    CHECK(same_file(got, want));
    tmp_path(got, sizeof got, "cuda_a_comfyui.safetensors");
    CHECK_EQ(dfm_wan_transformer_save_original(m, got, DFM_F32, "model.diffusion_model.", 0), 0);
    snprintf(want, sizeof want, "%s/comfyui/wan_tiny_a.safetensors", d);
    CHECK(same_file(got, want));
    /* merged LoRA on the device: the same bytes as on the CPU */
    char lp[600];
    snprintf(lp, sizeof lp, "%s/lora", d);
    CHECK_EQ(dfm_wan_lora_load(m, lp, 1.0f, NULL, NULL), 0);
    tmp_path(dir, sizeof dir, "cuda_a_merged");
    CHECK_EQ(dfm_wan_transformer_save(m, dir, DFM_F32, 0, 1), 0);
    dfm_wan_transformer_free(m);
    m = NULL;
    o.device = DFM_CPU;
    CHECK_EQ(dfm_wan_transformer_load(&m, td, &o), 0);
    if (!m) return;
    CHECK_EQ(dfm_wan_lora_load(m, lp, 1.0f, NULL, NULL), 0);
    tmp_path(want, sizeof want, "cpu_a_merged");
    CHECK_EQ(dfm_wan_transformer_save(m, want, DFM_F32, 0, 1), 0);
    snprintf(got, sizeof got, "%s/diffusion_pytorch_model.safetensors", dir);
    strncat(want, "/diffusion_pytorch_model.safetensors", sizeof want - strlen(want) - 1);
    CHECK(same_file(got, want));
    dfm_wan_transformer_free(m);
}
