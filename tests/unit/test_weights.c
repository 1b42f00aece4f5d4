/* test_weights.c — the shared weight loader (models/weights.h) and the Wan name tables
 * (models/wan/names.h).
 *
 * Small safetensors sets are written in the scratch directory in each form the loader opens (a
 * diffusers component directory, a sharded one, a single file), under each naming it reads
 * (canonical, a ComfyUI prefix, the original Wan names). Expectations come from outside the
 * tables: the 825 names of the 1.3B transformer are generated from wan.md 1.5 (diffusers) and
 * 1.6 (original), pair by pair; the VAE's original names from the layout fixture through an
 * inverse written here by module structure; F32-kept parameters from the list in wan.md 1.4;
 * bf16 rounding from a bit-level round-to-nearest-even.
 */
#include "test.h"
#include "base/buf.h"
#include "base/error.h"
#include "io/safetensors.h"
#include "models/wan/names.h"
#include "models/weights.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* A fresh directory tmp/<name>; its path in out. */
static void tmp_dir(const char *name, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", dfm_test_tmpdir(), name);
    mkdir(out, 0755);
}

static void write_text(const char *dir, const char *name, const char *text)
{
    char p[800];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    CHECK_EQ(dfm_write_file_atomic(p, text, strlen(text)), 0);
}

static void write_st(const char *dir, const char *name, const dfm_st_entry *e, int n)
{
    char p[800];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    int rc = dfm_st_write(p, e, n, NULL);
    CHECK_EQ(rc, 0);
    if (rc) fprintf(stderr, "  %s\n", dfm_errmsg());
}

/* rc must be `want`, with every string of has[] (NULL-terminated) in the message. */
static void expect(int rc, int want, const char *const *has, const char *what)
{
    if (rc != want) {
        fprintf(stderr, "  %s: rc %d, expected %d (%s)\n", what, rc, want, rc ? dfm_errmsg() : "no error");
        dfm_test_failures++;
        return;
    }
    for (int i = 0; has && has[i]; i++)
        if (!strstr(dfm_errmsg(), has[i])) {
            fprintf(stderr, "  %s: message lacks '%s': %s\n", what, has[i], dfm_errmsg());
            dfm_test_failures++;
        }
}

/* A table exercising every mechanism on made-up names. */
static const char *const T_PREFIXES[] = {"model.net.", "net.", NULL};
static const char *const T_MARKERS[] = {"old_", NULL};
static const dfm_weight_rename T_RENAMES[] = {{"old_lin", "lin"}, {"^old_top.", "top."}, {"a2", "tmp_"},
                                              {"a3", "a2"},       {"tmp_", "a3"},         {NULL, NULL}};
static const dfm_weight_alias T_ALIASES[] = {{"emb.weight", "enc.emb.weight"}, {NULL, NULL}};
static const char *const T_IGNORE[] = {"dec.", "head.weight", NULL};
static const char *const T_KEEP[] = {"norm", "table", NULL};
static const dfm_weight_names T_NAMES = {"test model", "new", T_PREFIXES, "old", T_MARKERS, T_RENAMES,
                                         T_ALIASES,    T_IGNORE, T_KEEP};

static const float W6[6] = {1.5f, -2.25f, 3.0f, 0.125f, -0.5f, 7.0f}, B3[3] = {0.25f, -1.0f, 2.0f};

static void check_values(dfm_weights *w, const char *name, int ndim, const int64_t *shape, const float *want,
                         int n)
{
    dfm_tensor t;
    int rc = dfm_weights_load(w, name, ndim, shape, DFM_F32, DFM_CPU, 0, &t);
    CHECK_EQ(rc, 0);
    if (rc) {
        fprintf(stderr, "  %s\n", dfm_errmsg());
        return;
    }
    CHECK_EQ(t.dtype, DFM_F32);
    CHECK(t.owned);
    CHECK(memcmp(t.data, want, (size_t)n * sizeof(float)) == 0);
    dfm_tensor_free(&t);
}

TEST(weights_open_forms)
{
    int64_t s23[2] = {2, 3}, s3[1] = {3};
    dfm_st_entry e[2] = {{"lin.weight", DFM_F32, 2, {2, 3}, W6}, {"lin.bias", DFM_F32, 1, {3}, B3}};
    char d[600];
    /* a diffusers component directory */
    tmp_dir("w-diffusers", d, sizeof d);
    write_text(d, "config.json", "{\"_class_name\": \"Test\"}");
    write_st(d, "diffusion_pytorch_model.safetensors", e, 2);
    /* a sharded one, with its index */
    char s[600];
    tmp_dir("w-sharded", s, sizeof s);
    write_text(s, "config.json", "{}");
    write_st(s, "model-00001-of-00002.safetensors", &e[0], 1);
    write_st(s, "model-00002-of-00002.safetensors", &e[1], 1);
    write_text(s, "model.safetensors.index.json",
               "{\"metadata\": {\"total_size\": 36}, \"weight_map\": {\"lin.weight\": "
               "\"model-00001-of-00002.safetensors\", \"lin.bias\": \"model-00002-of-00002.safetensors\"}}");
    char f[700];
    snprintf(f, sizeof f, "%s/diffusion_pytorch_model.safetensors", d);
    const char *paths[3] = {d, s, f};
    for (int i = 0; i < 3; i++) {
        dfm_weights *w = NULL;
        int rc = dfm_weights_open(&w, paths[i], &T_NAMES);
        CHECK_EQ(rc, 0);
        if (rc) {
            fprintf(stderr, "  %s: %s\n", paths[i], dfm_errmsg());
            continue;
        }
        CHECK_STR(dfm_weights_naming(w), "new names");
        CHECK_EQ(dfm_weights_is_other(w), 0);
        CHECK_EQ(dfm_weights_count(w), 2);
        /* not all used yet: the leftover is named */
        expect(dfm_weights_finish(w, NULL), DFM_E_FORMAT, (const char *[]){"'lin.", "not part of the test model", NULL},
               "finish early");
        check_values(w, "lin.weight", 2, s23, W6, 6);
        check_values(w, "lin.bias", 1, s3, B3, 3);
        CHECK_EQ(dfm_weights_finish(w, NULL), 0);
        dfm_weights_close(w);
    }
    /* nothing to open */
    dfm_weights *w = NULL;
    char empty[600];
    tmp_dir("w-empty", empty, sizeof empty);
    CHECK(dfm_weights_open(&w, empty, &T_NAMES) < 0);
    CHECK(w == NULL);
}

TEST(weights_prefix_and_other_family)
{
    int64_t s23[2] = {2, 3}, s3[1] = {3}, s1[1] = {1};
    static const float one = 1.0f, two = 2.0f, three = 3.0f;
    char d[600];
    /* a ComfyUI-style prefix on canonical names: stripped, canonical family */
    tmp_dir("w-prefix", d, sizeof d);
    dfm_st_entry p[2] = {{"model.net.lin.weight", DFM_F32, 2, {2, 3}, W6}, {"net.lin.bias", DFM_F32, 1, {3}, B3}};
    write_st(d, "model.safetensors", p, 2);
    dfm_weights *w = NULL;
    CHECK_EQ(dfm_weights_open(&w, d, &T_NAMES), 0);
    if (w) {
        CHECK_STR(dfm_weights_naming(w), "new names, prefix 'model.net.' stripped");
        check_values(w, "lin.weight", 2, s23, W6, 6);
        check_values(w, "lin.bias", 1, s3, B3, 3);
        CHECK_EQ(dfm_weights_finish(w, NULL), 0);
        /* a missing tensor: its name, the file, how the names were read */
        expect(dfm_weights_load(w, "lin.scale", 1, s3, DFM_F32, DFM_CPU, 0, &(dfm_tensor){0}), DFM_E_FORMAT,
               (const char *[]){"'lin.scale'", "not found", "model.safetensors", "prefix 'model.net.' stripped", NULL},
               "missing");
        dfm_weights_close(w);
    }
    /* the other family, prefixed: every name converted, the swap applied once */
    tmp_dir("w-old", d, sizeof d);
    dfm_st_entry o[5] = {{"model.net.blk.old_lin.weight", DFM_F32, 2, {2, 3}, W6},
                         {"model.net.old_top.old_lin.bias", DFM_F32, 1, {3}, B3},
                         {"model.net.blk.a2", DFM_F32, 1, {1}, &two},
                         {"model.net.blk.a3", DFM_F32, 1, {1}, &three},
                         {"model.net.x.old_top.a1", DFM_F32, 1, {1}, &one}};
    write_st(d, "model.safetensors", o, 5);
    CHECK_EQ(dfm_weights_open(&w, d, &T_NAMES), 0);
    if (w) {
        CHECK_STR(dfm_weights_naming(w), "old names, prefix 'model.net.' stripped");
        CHECK_EQ(dfm_weights_is_other(w), 1);
        check_values(w, "blk.lin.weight", 2, s23, W6, 6);
        check_values(w, "top.lin.bias", 1, s3, B3, 3); /* '^' applies at the start */
        check_values(w, "blk.a3", 1, s1, &two, 1);     /* a2 -> a3 */
        check_values(w, "blk.a2", 1, s1, &three, 1);   /* a3 -> a2, not back */
        /* '^old_top.' does not apply inside a name: it is left over, under its file name */
        expect(dfm_weights_finish(w, "a note"), DFM_E_FORMAT,
               (const char *[]){"'x.old_top.a1'", "in the file as 'model.net.x.old_top.a1'", "not part of the test model",
                                "a note", "old names", NULL},
               "leftover");
        /* the error of a wrong shape names the canonical and the file name, and both shapes */
        int64_t s32[2] = {3, 2};
        expect(dfm_weights_load(w, "blk.lin.weight", 2, s32, DFM_F32, DFM_CPU, 0, &(dfm_tensor){0}), DFM_E_FORMAT,
               (const char *[]){"'blk.lin.weight'", "'model.net.blk.old_lin.weight'", "model.safetensors",
                                "file has shape [2,3] F32", "expected [3,2]", NULL},
               "shape");
        dfm_weights_close(w);
    }
    /* the conversion alone */
    char *c = NULL;
    CHECK_EQ(dfm_weights_convert_name(&T_NAMES, "net.old_top.a2.old_lin", 1, &c), 0);
    CHECK_STR(c, "top.a3.lin");
    free(c);
    CHECK_EQ(dfm_weights_convert_name(&T_NAMES, "net.old_top.a2", 0, &c), 0);
    CHECK_STR(c, "old_top.a2");
    free(c);
}

TEST(weights_alias_ignore_leftovers)
{
    int64_t s3[1] = {3}, s23[2] = {2, 3};
    char d[600];
    /* only the alias in the file */
    tmp_dir("w-alias", d, sizeof d);
    dfm_st_entry a[4] = {{"enc.emb.weight", DFM_F32, 2, {2, 3}, W6},
                         {"dec.block.0.w", DFM_F32, 1, {3}, B3},
                         {"head.weight", DFM_F32, 1, {3}, B3},
                         {"head.weight2", DFM_F32, 1, {3}, B3}};
    write_st(d, "model.safetensors", a, 4);
    dfm_weights *w = NULL;
    CHECK_EQ(dfm_weights_open(&w, d, &T_NAMES), 0);
    if (w) {
        CHECK(dfm_weights_has(w, "emb.weight"));
        CHECK(!dfm_weights_has(w, "emb.bias"));
        check_values(w, "emb.weight", 2, s23, W6, 6);
        /* dec.* and head.weight are ignored; head.weight2 is not (exact names only) */
        expect(dfm_weights_finish(w, NULL), DFM_E_FORMAT, (const char *[]){"'head.weight2'", NULL}, "ignore");
        dfm_weights_close(w);
    }
    /* both names: the canonical wins and its tied twin counts as used */
    tmp_dir("w-alias2", d, sizeof d);
    dfm_st_entry b[2] = {{"enc.emb.weight", DFM_F32, 1, {3}, B3}, {"emb.weight", DFM_F32, 2, {2, 3}, W6}};
    write_st(d, "model.safetensors", b, 2);
    CHECK_EQ(dfm_weights_open(&w, d, &T_NAMES), 0);
    if (w) {
        check_values(w, "emb.weight", 2, s23, W6, 6);
        CHECK_EQ(dfm_weights_finish(w, NULL), 0);
        dfm_weights_close(w);
    }
    /* neither: both names in the message */
    tmp_dir("w-alias3", d, sizeof d);
    dfm_st_entry c[3] = {{"x.w", DFM_F32, 1, {3}, B3}, {"y.w", DFM_F32, 1, {3}, B3}, {"z.w", DFM_F32, 1, {3}, B3}};
    write_st(d, "model.safetensors", c, 3);
    CHECK_EQ(dfm_weights_open(&w, d, &T_NAMES), 0);
    if (w) {
        const dfm_st_tensor *t;
        expect(dfm_weights_find(w, "emb.weight", 1, s3, &t), DFM_E_FORMAT,
               (const char *[]){"'emb.weight'", "'enc.emb.weight'", "not found", "3 tensors", NULL}, "no alias");
        CHECK_EQ(dfm_weights_find(w, "y.w", 1, s3, &t), 0);
        /* the first leftover and how many more */
        expect(dfm_weights_finish(w, NULL), DFM_E_FORMAT,
               (const char *[]){"'x.w'", "not part of the test model", "1 more unused tensor", NULL}, "count");
        dfm_weights_close(w);
    }
}

TEST(weights_errors)
{
    int64_t s3[1] = {3};
    char d[600];
    tmp_dir("w-err", d, sizeof d);
    static const int32_t ints[3] = {1, 2, 3};
    dfm_st_entry e[3] = {{"blocks.0.lin.weight", DFM_F32, 1, {3}, B3},
                         {"ids", DFM_I32, 1, {3}, ints},
                         {"x.y.norm", DFM_F32, 1, {3}, B3}};
    write_st(d, "model.safetensors", e, 3);
    dfm_weights *w = NULL;
    CHECK_EQ(dfm_weights_open(&w, d, &T_NAMES), 0);
    if (!w) return;
    const dfm_st_tensor *t;
    /* a near miss by a dotted prefix is suggested */
    expect(dfm_weights_find(w, "lin.weight", 1, s3, &t), DFM_E_FORMAT,
           (const char *[]){"'lin.weight' not found", "it has 'blocks.0.lin.weight'", NULL}, "near miss");
    expect(dfm_weights_find(w, "extra.blocks.0.lin.weight", 1, s3, &t), DFM_E_FORMAT,
           (const char *[]){"it has 'blocks.0.lin.weight'", NULL}, "near miss 2");
    /* not a float */
    expect(dfm_weights_find(w, "ids", 1, s3, &t), DFM_E_UNSUPPORTED, (const char *[]){"'ids'", "I32", NULL}, "dtype");
    /* a wrong number of dimensions */
    int64_t s31[2] = {3, 1};
    expect(dfm_weights_find(w, "x.y.norm", 2, s31, &t), DFM_E_FORMAT,
           (const char *[]){"'x.y.norm'", "file has shape [3] F32", "expected [3,1]", NULL}, "ndim");
    /* a failed find marks nothing */
    expect(dfm_weights_finish(w, NULL), DFM_E_FORMAT, (const char *[]){"2 more unused tensors", NULL}, "unmarked");
    /* a dtype the loader does not produce */
    dfm_tensor out;
    expect(dfm_weights_load(w, "x.y.norm", 1, s3, DFM_I32, DFM_CPU, 0, &out), DFM_E_ARG, (const char *[]){"I32", NULL},
           "load dtype");
    dfm_weights_close(w);
    /* two file names that land on one canonical name */
    tmp_dir("w-dup", d, sizeof d);
    dfm_st_entry u[2] = {{"model.net.lin.weight", DFM_F32, 1, {3}, B3}, {"lin.weight", DFM_F32, 1, {3}, B3}};
    write_st(d, "model.safetensors", u, 2);
    w = (dfm_weights *)1;
    expect(dfm_weights_open(&w, d, &T_NAMES), DFM_E_FORMAT,
           (const char *[]){"'lin.weight'", "'model.net.lin.weight'", "both", NULL}, "duplicate");
    CHECK(w == NULL);
}

/* bf16 of x by its bits: round to nearest, ties to even (finite inputs). */
static float ref_bf16(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    u += 0x7fffu + ((u >> 16) & 1u);
    u &= 0xffff0000u;
    memcpy(&x, &u, 4);
    return x;
}

TEST(weights_dtypes_rounding_keep_f32)
{
    /* the keep rule: whole dot-separated parts, only for BF16/F16 requests */
    CHECK_EQ(dfm_weights_dtype_for(&T_NAMES, "a.norm.weight", DFM_BF16), DFM_F32);
    CHECK_EQ(dfm_weights_dtype_for(&T_NAMES, "table", DFM_F16), DFM_F32);
    CHECK_EQ(dfm_weights_dtype_for(&T_NAMES, "a.norm1.weight", DFM_BF16), DFM_BF16);
    CHECK_EQ(dfm_weights_dtype_for(&T_NAMES, "a.layer_norm.weight", DFM_BF16), DFM_BF16);
    CHECK_EQ(dfm_weights_dtype_for(&T_NAMES, "a.norm.weight", DFM_F32), DFM_F32);
    CHECK_EQ(dfm_weights_dtype_for(&dfm_umt5_names, "encoder.block.0.layer.0.layer_norm.weight", DFM_BF16), DFM_BF16);
    CHECK_EQ(dfm_weights_dtype_for(&dfm_wan_vae_names, "decoder.norm_out.gamma", DFM_BF16), DFM_BF16);

    /* values: ties both ways, a rounding up, a rounding down, negative, large */
    enum { N = 64 };
    float v[N];
    v[0] = 1.00390625f;  /* 1 + 2^-8: tie -> 1 (even) */
    v[1] = 1.01171875f;  /* 1 + 3*2^-8: tie -> 1 + 4*2^-8 (even) */
    v[2] = 1.0048828125f; /* above the tie: up */
    v[3] = -3.14159265f;
    v[4] = 65504.0f;
    v[5] = 1e-30f;
    for (int i = 6; i < N; i++) v[i] = (float)(i * 0.37 - 9.1) * (i % 3 ? 1.0f : 1e-3f);
    char d[600];
    tmp_dir("w-round", d, sizeof d);
    dfm_st_entry e[2] = {{"lin.weight", DFM_F32, 1, {N}, v}, {"blk.norm.weight", DFM_F32, 1, {N}, v}};
    write_st(d, "model.safetensors", e, 2);
    dfm_weights *w = NULL;
    CHECK_EQ(dfm_weights_open(&w, d, &T_NAMES), 0);
    if (!w) return;
    int64_t sn[1] = {N};
    dfm_tensor r, b, k, kr, m, ma, sc;
    CHECK_EQ(dfm_weights_load(w, "lin.weight", 1, sn, DFM_F32, DFM_CPU, DFM_WEIGHTS_ROUND_BF16, &r), 0);
    CHECK_EQ(dfm_weights_load(w, "lin.weight", 1, sn, DFM_BF16, DFM_CPU, 0, &b), 0);
    CHECK_EQ(dfm_weights_load(w, "blk.norm.weight", 1, sn, DFM_BF16, DFM_CPU, 0, &k), 0);
    CHECK_EQ(dfm_weights_load(w, "blk.norm.weight", 1, sn, DFM_F32, DFM_CPU, DFM_WEIGHTS_ROUND_BF16 | DFM_WEIGHTS_MAP,
                              &kr), 0);
    if (r.data && b.data && k.data && kr.data) {
        CHECK_EQ(r.dtype, DFM_F32);
        CHECK_EQ(b.dtype, DFM_BF16);
        int bad = 0;
        for (int i = 0; i < N; i++) {
            float want = ref_bf16(v[i]), got = ((float *)r.data)[i];
            uint32_t wb;
            memcpy(&wb, &want, 4);
            if (memcmp(&got, &want, 4) || ((uint16_t *)b.data)[i] != (uint16_t)(wb >> 16)) bad++;
        }
        CHECK_EQ(bad, 0);
        CHECK(((float *)r.data)[0] == 1.0f && ((float *)r.data)[1] == 1.015625f && ((float *)r.data)[2] == 1.0078125f);
        /* a kept tensor: F32 although BF16 was asked, and never rounded */
        CHECK_EQ(k.dtype, DFM_F32);
        CHECK(memcmp(k.data, v, sizeof v) == 0);
        /* nor when F32 with rounding is asked (a BF16 run's small tensors): kept exact, so in place */
        CHECK(!kr.owned);
        CHECK(memcmp(kr.data, v, sizeof v) == 0);
    }
    /* in place: a view when the kept dtype is the file's, a copy otherwise unless MAP_ANY */
    size_t owned0, mapped0, owned, mapped;
    dfm_weights_memory(w, &owned0, &mapped0);
    CHECK_EQ(mapped0, (size_t)N * 4);
    CHECK_EQ(owned0, (size_t)N * (4 + 2 + 4));
    CHECK_EQ(dfm_weights_load(w, "lin.weight", 1, sn, DFM_F32, DFM_CPU, DFM_WEIGHTS_MAP, &m), 0);
    CHECK(!m.owned && m.dtype == DFM_F32 && m.data && !memcmp(m.data, v, sizeof v));
    CHECK_EQ(dfm_weights_load(w, "lin.weight", 1, sn, DFM_BF16, DFM_CPU, DFM_WEIGHTS_MAP | DFM_WEIGHTS_MAP_ANY, &ma), 0);
    CHECK(!ma.owned && ma.dtype == DFM_F32 && ma.data == m.data);
    dfm_tensor_free(&k);
    CHECK_EQ(dfm_weights_load(w, "blk.norm.weight", 1, sn, DFM_BF16, DFM_CPU, DFM_WEIGHTS_MAP, &k), 0);
    CHECK(!k.owned && k.dtype == DFM_F32); /* kept F32 = the file's dtype: in place */
    CHECK_EQ(dfm_weights_load(w, "lin.weight", 1, sn, DFM_BF16, DFM_CPU, DFM_WEIGHTS_MAP | DFM_WEIGHTS_SCRATCH, &sc), 0);
    CHECK(sc.owned && sc.dtype == DFM_BF16);
    dfm_weights_memory(w, &owned, &mapped);
    CHECK_EQ(mapped, (size_t)N * 4 * 4);
    CHECK_EQ(owned, owned0); /* the scratch copy is not counted */
    dfm_weights_add_owned(w, 100);
    dfm_weights_memory(w, &owned, NULL);
    CHECK_EQ(owned, owned0 + 100);
    dfm_tensor_free(&r), dfm_tensor_free(&b), dfm_tensor_free(&kr), dfm_tensor_free(&sc);
    dfm_tensor_free(&m), dfm_tensor_free(&ma), dfm_tensor_free(&k);
    CHECK_EQ(dfm_weights_finish(w, NULL), 0);
    dfm_weights_close(w);
}

/* ---- the Wan transformer table -------------------------------------------------------------- */

#define T_MAX 1000
typedef struct {
    char orig[96], diff[96];
} name_pair;

/* The 1.3B state dict (wan.md 1.5, 30 blocks) as (original, diffusers) pairs from 1.6. */
static int transformer_pairs(name_pair *p, int layers)
{
    int n = 0;
#define PAIR(o, d) (snprintf(p[n].orig, 96, "%s", o), snprintf(p[n].diff, 96, "%s", d), n++)
    static const char *const wb[2] = {"weight", "bias"};
    char o[96], d[96];
    for (int k = 0; k < 2; k++) {
        static const char *const top[6][2] = {
            {"patch_embedding", "patch_embedding"},
            {"text_embedding.0", "condition_embedder.text_embedder.linear_1"},
            {"text_embedding.2", "condition_embedder.text_embedder.linear_2"},
            {"time_embedding.0", "condition_embedder.time_embedder.linear_1"},
            {"time_embedding.2", "condition_embedder.time_embedder.linear_2"},
            {"time_projection.1", "condition_embedder.time_proj"},
        };
        for (int j = 0; j < 6; j++) {
            snprintf(o, sizeof o, "%s.%s", top[j][0], wb[k]);
            snprintf(d, sizeof d, "%s.%s", top[j][1], wb[k]);
            PAIR(o, d);
        }
        snprintf(o, sizeof o, "head.head.%s", wb[k]);
        snprintf(d, sizeof d, "proj_out.%s", wb[k]);
        PAIR(o, d);
    }
    PAIR("head.modulation", "scale_shift_table");
    static const char *const proj[4][2] = {{"q", "to_q"}, {"k", "to_k"}, {"v", "to_v"}, {"o", "to_out.0"}};
    for (int i = 0; i < layers; i++) {
        for (int a = 0; a < 2; a++) {
            const char *oa = a ? "cross_attn" : "self_attn", *da = a ? "attn2" : "attn1";
            for (int j = 0; j < 4; j++)
                for (int k = 0; k < 2; k++) {
                    snprintf(o, sizeof o, "blocks.%d.%s.%s.%s", i, oa, proj[j][0], wb[k]);
                    snprintf(d, sizeof d, "blocks.%d.%s.%s.%s", i, da, proj[j][1], wb[k]);
                    PAIR(o, d);
                }
            for (int j = 0; j < 2; j++) {
                snprintf(o, sizeof o, "blocks.%d.%s.norm_%c.weight", i, oa, j ? 'k' : 'q');
                snprintf(d, sizeof d, "blocks.%d.%s.norm_%c.weight", i, da, j ? 'k' : 'q');
                PAIR(o, d);
            }
        }
        for (int k = 0; k < 2; k++) {
            snprintf(o, sizeof o, "blocks.%d.norm3.%s", i, wb[k]); /* the cross-attention norm */
            snprintf(d, sizeof d, "blocks.%d.norm2.%s", i, wb[k]);
            PAIR(o, d);
            snprintf(o, sizeof o, "blocks.%d.ffn.0.%s", i, wb[k]);
            snprintf(d, sizeof d, "blocks.%d.ffn.net.0.proj.%s", i, wb[k]);
            PAIR(o, d);
            snprintf(o, sizeof o, "blocks.%d.ffn.2.%s", i, wb[k]);
            snprintf(d, sizeof d, "blocks.%d.ffn.net.2.%s", i, wb[k]);
            PAIR(o, d);
        }
        snprintf(o, sizeof o, "blocks.%d.modulation", i);
        snprintf(d, sizeof d, "blocks.%d.scale_shift_table", i);
        PAIR(o, d);
    }
#undef PAIR
    return n;
}

static int by_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* wan.md 1.4: the parameters diffusers keeps in F32 */
static int kept_f32(const char *d)
{
    size_t n = strlen(d);
    return !strcmp(d, "scale_shift_table") || strstr(d, ".scale_shift_table") ||
           !strncmp(d, "condition_embedder.time_embedder.", 33) ||
           (!strncmp(d, "blocks.", 7) && n > 12 && (!strcmp(d + n - 13, ".norm2.weight") || !strcmp(d + n - 11, ".norm2.bias")));
}

TEST(wan_transformer_names_1p3b)
{
    name_pair *p = calloc(T_MAX, sizeof *p);
    int n = transformer_pairs(p, 30);
    CHECK_EQ(n, 825);
    int bad = 0, kept = 0;
    char **all = calloc((size_t)n, sizeof *all);
    for (int i = 0; i < n; i++) {
        char *c = NULL;
        CHECK_EQ(dfm_weights_convert_name(&dfm_wan_transformer_names, p[i].orig, 1, &c), 0);
        if (!c || strcmp(c, p[i].diff)) {
            if (bad++ < 5) fprintf(stderr, "  '%s' -> '%s', expected '%s'\n", p[i].orig, c ? c : "", p[i].diff);
        }
        free(c);
        /* a diffusers name read as diffusers stays itself; with the ComfyUI prefix too */
        char pre[128];
        snprintf(pre, sizeof pre, "model.diffusion_model.%s", p[i].orig);
        CHECK_EQ(dfm_weights_convert_name(&dfm_wan_transformer_names, pre, 1, &c), 0);
        if (!c || strcmp(c, p[i].diff)) bad++;
        free(c);
        CHECK_EQ(dfm_weights_convert_name(&dfm_wan_transformer_names, p[i].diff, 0, &c), 0);
        if (!c || strcmp(c, p[i].diff)) bad++;
        free(c);
        int k = dfm_weights_dtype_for(&dfm_wan_transformer_names, p[i].diff, DFM_BF16) == DFM_F32;
        if (k != kept_f32(p[i].diff) && bad++ < 5) fprintf(stderr, "  '%s': keep F32 %d\n", p[i].diff, k);
        kept += k;
        all[i] = p[i].diff;
    }
    CHECK_EQ(bad, 0);
    CHECK_EQ(kept, 30 * 3 + 1 + 4); /* blocks.i.{norm2.weight, norm2.bias, scale_shift_table}, scale_shift_table,
                                       time_embedder.linear_{1,2}.{weight,bias} */
    qsort(all, (size_t)n, sizeof *all, by_str);
    int dup = 0;
    for (int i = 1; i < n; i++) dup += !strcmp(all[i], all[i - 1]);
    CHECK_EQ(dup, 0);
    free(all);
    /* the swap, both ways and once: an original norm2 (parameter-free in Wan; here to see it move)
     * becomes norm3 */
    char *c = NULL;
    CHECK_EQ(dfm_weights_convert_name(&dfm_wan_transformer_names, "blocks.7.norm2.weight", 1, &c), 0);
    CHECK_STR(c, "blocks.7.norm3.weight");
    free(c);
    CHECK_EQ(dfm_weights_convert_name(&dfm_wan_transformer_names, "diffusion_model.blocks.7.norm3.bias", 1, &c), 0);
    CHECK_STR(c, "blocks.7.norm2.bias");
    free(c);

    /* through the loader: a ComfyUI file (original names, model.diffusion_model.) with one value
     * per tensor; every diffusers name finds its own value, and nothing is left over */
    dfm_st_entry *e = calloc((size_t)n, sizeof *e);
    float *val = calloc((size_t)n, sizeof *val);
    char (*pn)[128] = calloc((size_t)n, sizeof *pn);
    for (int i = 0; i < n; i++) {
        val[i] = (float)i;
        snprintf(pn[i], sizeof pn[i], "model.diffusion_model.%s", p[i].orig);
        e[i] = (dfm_st_entry){pn[i], DFM_F32, 1, {1}, &val[i]};
    }
    char d[600];
    tmp_dir("w-wan-comfy", d, sizeof d);
    write_st(d, "wan2.1_t2v_1.3B.safetensors", e, n);
    dfm_weights *w = NULL;
    CHECK_EQ(dfm_weights_open(&w, d, &dfm_wan_transformer_names), 0);
    if (w) {
        CHECK_STR(dfm_weights_naming(w), "original Wan names, prefix 'model.diffusion_model.' stripped");
        int64_t s1[1] = {1};
        int wrong = 0;
        for (int i = 0; i < n; i++) {
            const dfm_st_tensor *t;
            if (dfm_weights_find(w, p[i].diff, 1, s1, &t) || *(const float *)t->data != (float)i) wrong++;
        }
        CHECK_EQ(wrong, 0);
        CHECK_EQ(dfm_weights_finish(w, NULL), 0);
        /* a block the file does not have: named in diffusers terms, with how the file was read */
        const dfm_st_tensor *t;
        expect(dfm_weights_find(w, "blocks.30.attn1.to_q.weight", 1, s1, &t), DFM_E_FORMAT,
               (const char *[]){"'blocks.30.attn1.to_q.weight'", "original Wan names", NULL}, "block 30");
        dfm_weights_close(w);
    }
    /* the same names in diffusers form are read as diffusers (no marker) */
    for (int i = 0; i < n; i++) e[i].name = p[i].diff;
    tmp_dir("w-wan-diffusers", d, sizeof d);
    write_st(d, "diffusion_pytorch_model.safetensors", e, n);
    CHECK_EQ(dfm_weights_open(&w, d, &dfm_wan_transformer_names), 0);
    if (w) {
        CHECK_STR(dfm_weights_naming(w), "diffusers names");
        int64_t s1[1] = {1};
        const dfm_st_tensor *t;
        CHECK_EQ(dfm_weights_find(w, "blocks.3.norm2.weight", 1, s1, &t), 0); /* not swapped */
        dfm_weights_close(w);
    }
    free(e), free(val), free(pn), free(p);
}

/* ---- the Wan VAE table ------------------------------------------------------------------------ */

/* The original (wan/modules/vae.py) name of diffusers VAE name d, by module structure: residual
 * Sequential indices, the flat decoder list of 4 entries per level, middle.{0,1,2}, head.{0,2}. */
static void vae_original(const char *d, char *out, size_t cap)
{
    char tok[12][48];
    int nt = 0;
    for (const char *p = d; *p && nt < 12;) {
        const char *q = strchr(p, '.');
        size_t n = q ? (size_t)(q - p) : strlen(p);
        snprintf(tok[nt++], sizeof tok[0], "%.*s", (int)n, p);
        p += n + (q != NULL);
    }
    char o[256] = "";
    int i = 0;
#define ADD(s) (strcat(o, o[0] ? "." : ""), strcat(o, s))
    const char *res_map[5][2] = {{"norm1", "residual.0"}, {"conv1", "residual.2"}, {"norm2", "residual.3"},
                                 {"conv2", "residual.6"}, {"conv_shortcut", "shortcut"}};
    int in_res = 0;
    if (!strcmp(tok[0], "quant_conv")) ADD("conv1"), i = 1;
    else if (!strcmp(tok[0], "post_quant_conv")) ADD("conv2"), i = 1;
    else {
        ADD(tok[0]); /* encoder / decoder */
        char b[64];
        if (!strcmp(tok[1], "conv_in")) ADD("conv1"), i = 2;
        else if (!strcmp(tok[1], "norm_out")) ADD("head.0"), i = 2;
        else if (!strcmp(tok[1], "conv_out")) ADD("head.2"), i = 2;
        else if (!strcmp(tok[1], "down_blocks")) {
            snprintf(b, sizeof b, "downsamples.%s", tok[2]);
            ADD(b), i = 3, in_res = 1;
        } else if (!strcmp(tok[1], "up_blocks")) {
            int lvl = atoi(tok[2]), up = !strcmp(tok[3], "upsamplers");
            snprintf(b, sizeof b, "upsamples.%d", 4 * lvl + (up ? 3 : atoi(tok[4])));
            ADD(b), i = 5, in_res = !up;
        } else if (!strcmp(tok[1], "mid_block")) {
            int att = !strcmp(tok[2], "attentions");
            snprintf(b, sizeof b, "middle.%d", att ? 1 : 2 * atoi(tok[3]));
            ADD(b), i = 4, in_res = !att;
        }
    }
    for (; i < nt; i++) {
        const char *t = tok[i];
        for (int k = 0; in_res && k < 5; k++)
            if (!strcmp(t, res_map[k][0])) t = res_map[k][1];
        ADD(t);
        in_res = 0;
    }
#undef ADD
    snprintf(out, cap, "%s", o);
}

TEST(wan_vae_names_original)
{
    dfm_buf b = {0};
    CHECK_EQ(dfm_test_load_fixture("wan_vae_layout", "layout.json", &b), 0);
    cJSON *lay = cJSON_ParseWithLength((const char *)b.data, b.len);
    dfm_buf_free(&b);
    CHECK(lay != NULL);
    if (!lay) return;
    int n = 0, bad = 0, same = 0;
    char **orig = calloc(256, sizeof *orig);
    cJSON *it;
    cJSON_ArrayForEach(it, lay)
    {
        char o[256], *c = NULL;
        vae_original(it->string, o, sizeof o);
        same += !strcmp(o, it->string);
        CHECK_EQ(dfm_weights_convert_name(&dfm_wan_vae_names, o, 1, &c), 0);
        if (!c || strcmp(c, it->string))
            if (bad++ < 5) fprintf(stderr, "  '%s' -> '%s', expected '%s'\n", o, c ? c : "", it->string);
        free(c);
        if (n < 256) orig[n++] = dfm_strdup(o);
    }
    CHECK_EQ(n, 194);
    CHECK_EQ(bad, 0);
    /* every name differs somewhere (downsamples/upsamples, middle, head, residual.k, conv1/2) */
    CHECK_EQ(same, 0);
    qsort(orig, (size_t)n, sizeof *orig, by_str);
    int dup = 0;
    for (int i = 1; i < n; i++) dup += !strcmp(orig[i], orig[i - 1]);
    CHECK_EQ(dup, 0);
    for (int i = 0; i < n; i++) free(orig[i]);
    free(orig);
    cJSON_Delete(lay);
    /* the ones diffusers' convert_vae spells out */
    static const char *const known[][2] = {
        {"conv1.weight", "quant_conv.weight"},
        {"conv2.bias", "post_quant_conv.bias"},
        {"encoder.conv1.weight", "encoder.conv_in.weight"},
        {"decoder.middle.1.to_qkv.weight", "decoder.mid_block.attentions.0.to_qkv.weight"},
        {"decoder.middle.2.residual.6.bias", "decoder.mid_block.resnets.1.conv2.bias"},
        {"encoder.head.0.gamma", "encoder.norm_out.gamma"},
        {"encoder.downsamples.3.shortcut.weight", "encoder.down_blocks.3.conv_shortcut.weight"},
        {"decoder.upsamples.4.shortcut.bias", "decoder.up_blocks.1.resnets.0.conv_shortcut.bias"},
        {"decoder.upsamples.7.time_conv.weight", "decoder.up_blocks.1.upsamplers.0.time_conv.weight"},
        {"decoder.upsamples.11.resample.1.weight", "decoder.up_blocks.2.upsamplers.0.resample.1.weight"},
        {"decoder.upsamples.14.residual.3.gamma", "decoder.up_blocks.3.resnets.2.norm2.gamma"},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        char *c = NULL;
        CHECK_EQ(dfm_weights_convert_name(&dfm_wan_vae_names, known[i][0], 1, &c), 0);
        CHECK_STR(c, known[i][1]);
        free(c);
    }
}

TEST(umt5_names_table)
{
    /* the encoder of a full checkpoint: decoder and LM head ignored, the tied embedding once */
    char d[600];
    tmp_dir("w-umt5", d, sizeof d);
    dfm_st_entry e[5] = {{"shared.weight", DFM_F32, 2, {2, 3}, W6},
                         {"encoder.embed_tokens.weight", DFM_F32, 2, {2, 3}, W6},
                         {"decoder.block.0.layer.0.SelfAttention.q.weight", DFM_F32, 1, {3}, B3},
                         {"lm_head.weight", DFM_F32, 2, {2, 3}, W6},
                         {"encoder.final_layer_norm.weight", DFM_F32, 1, {3}, B3}};
    write_st(d, "model.safetensors", e, 5);
    dfm_weights *w = NULL;
    CHECK_EQ(dfm_weights_open(&w, d, &dfm_umt5_names), 0);
    if (!w) return;
    CHECK_STR(dfm_weights_naming(w), "transformers names");
    int64_t s23[2] = {2, 3}, s3[1] = {3};
    const dfm_st_tensor *t;
    CHECK_EQ(dfm_weights_find(w, "shared.weight", 2, s23, &t), 0);
    expect(dfm_weights_finish(w, "config: 0 layers"), DFM_E_FORMAT,
           (const char *[]){"'encoder.final_layer_norm.weight'", "not part of the UMT5 encoder", "config: 0 layers", NULL},
           "umt5 leftover");
    CHECK_EQ(dfm_weights_find(w, "encoder.final_layer_norm.weight", 1, s3, &t), 0);
    CHECK_EQ(dfm_weights_finish(w, NULL), 0);
    dfm_weights_close(w);
}

#include "models/wan/vae.h"

/* The tiny VAE fixture rewritten under the original names loads through the production loader
 * and computes bit for bit what the diffusers-named one does. */
TEST(wan_vae_loads_original_names)
{
    char src[600], d[600], p[800];
    snprintf(src, sizeof src, "%s/wan_vae/tiny", dfm_test_fixtures());
    tmp_dir("w-vae-original", d, sizeof d);
    dfm_buf b = {0};
    dfm_st *st = NULL;
    CHECK_EQ(dfm_st_open(&st, src), 0);
    if (!st) return;
    int n = dfm_st_count(st);
    dfm_st_entry *e = calloc((size_t)n, sizeof *e);
    char (*names)[256] = calloc((size_t)n, sizeof *names);
    for (int i = 0; i < n; i++) {
        const dfm_st_tensor *t = dfm_st_at(st, i);
        vae_original(t->name, names[i], sizeof names[i]);
        e[i] = (dfm_st_entry){names[i], t->dtype, t->ndim, {0}, t->data};
        memcpy(e[i].shape, t->shape, sizeof t->shape);
    }
    write_st(d, "diffusion_pytorch_model.safetensors", e, n);
    free(e), free(names);
    dfm_st_close(st);
    snprintf(p, sizeof p, "%s/config.json", src);
    CHECK_EQ(dfm_read_file(p, 0, &b), 0);
    snprintf(p, sizeof p, "%s/config.json", d);
    CHECK_EQ(dfm_write_file_atomic(p, b.data, b.len), 0);
    dfm_buf_free(&b);

    dfm_wan_vae_opts o = {.device = DFM_CPU, .weights = DFM_F32};
    dfm_wan_vae *a = NULL, *c = NULL;
    CHECK_EQ(dfm_wan_vae_load(&a, src, &o), 0);
    int rc = dfm_wan_vae_load(&c, d, &o);
    CHECK_EQ(rc, 0);
    if (rc) fprintf(stderr, "  %s\n", dfm_errmsg());
    if (a && c) {
        dfm_tensor x, ma, mc, da, dc;
        int64_t s[4] = {3, 5, 16, 24};
        dfm_tensor_alloc(&x, DFM_F32, DFM_CPU, 4, s);
        for (int64_t k = 0; k < dfm_tensor_numel(&x); k++) ((float *)x.data)[k] = sinf((float)k * 0.013f);
        CHECK_EQ(dfm_wan_vae_encode(a, &x, &ma, NULL), 0);
        CHECK_EQ(dfm_wan_vae_encode(c, &x, &mc, NULL), 0);
        CHECK(ma.data && mc.data && dfm_tensor_nbytes(&ma) == dfm_tensor_nbytes(&mc) &&
              !memcmp(ma.data, mc.data, dfm_tensor_nbytes(&ma)));
        CHECK_EQ(dfm_wan_vae_decode(a, &ma, &da), 0);
        CHECK_EQ(dfm_wan_vae_decode(c, &ma, &dc), 0);
        CHECK(da.data && dc.data && dfm_tensor_nbytes(&da) == dfm_tensor_nbytes(&dc) &&
              !memcmp(da.data, dc.data, dfm_tensor_nbytes(&da)));
        dfm_tensor_free(&x), dfm_tensor_free(&ma), dfm_tensor_free(&mc), dfm_tensor_free(&da), dfm_tensor_free(&dc);
    }
    dfm_wan_vae_free(a), dfm_wan_vae_free(c);
}

/* The names of the released 1.3B layout as diffusers lists them (tests/fixtures/
 * wan_transformer_layout, built from diffusers itself): the same 825 names as wan.md 1.5, and the
 * dtypes of a bf16 load (dtype_bf16_load) are what dfm_weights_dtype_for keeps. */
TEST(wan_transformer_names_layout)
{
    dfm_buf b = {0};
    CHECK_EQ(dfm_test_load_fixture("wan_transformer_layout", "layout.json", &b), 0);
    cJSON *lay = cJSON_ParseWithLength((const char *)b.data, b.len);
    dfm_buf_free(&b);
    CHECK(lay != NULL);
    if (!lay) return;
    name_pair *p = calloc(T_MAX, sizeof *p);
    int n = transformer_pairs(p, 30), missing = 0, dtype_bad = 0;
    CHECK_EQ(cJSON_GetArraySize(lay), n);
    for (int i = 0; i < n; i++)
        if (!cJSON_GetObjectItemCaseSensitive(lay, p[i].diff) && missing++ < 5)
            fprintf(stderr, "  '%s' is not in the layout\n", p[i].diff);
    const cJSON *it;
    cJSON_ArrayForEach(it, lay)
    {
        const cJSON *dt = cJSON_GetObjectItemCaseSensitive(it, "dtype_bf16_load");
        int want_f32 = cJSON_IsString(dt) && !strcmp(dt->valuestring, "F32");
        int got_f32 = dfm_weights_dtype_for(&dfm_wan_transformer_names, it->string, DFM_BF16) == DFM_F32;
        if (want_f32 != got_f32 && dtype_bad++ < 5) fprintf(stderr, "  '%s': keep F32 %d, diffusers %d\n", it->string, got_f32, want_f32);
    }
    CHECK_EQ(missing, 0);
    CHECK_EQ(dtype_bad, 0);
    free(p);
    cJSON_Delete(lay);
}

/* The tiny transformer a in its three forms (tests/fixtures/wan_transformer/a: diffusers,
 * original Wan names, ComfyUI single file; checked by the generator against diffusers' own
 * converters): every canonical tensor is found in each, bit-identical, and nothing is left over.
 * c stores the keep-F32 tensors as F32 and the rest as BF16, as save_pretrained does after a
 * bf16 load. */
TEST(wan_transformer_names_fixtures)
{
    char dir[3][600];
    const char *sub[3] = {"a/transformer", "a/original", "a/comfyui/wan_tiny_a.safetensors"};
    const char *naming[3] = {"diffusers names", "original Wan names",
                             "original Wan names, prefix 'model.diffusion_model.' stripped"};
    dfm_weights *w[3] = {NULL, NULL, NULL};
    for (int k = 0; k < 3; k++) {
        snprintf(dir[k], sizeof dir[k], "%s/wan_transformer/%s", dfm_test_fixtures(), sub[k]);
        int rc = dfm_weights_open(&w[k], dir[k], &dfm_wan_transformer_names);
        CHECK_EQ(rc, 0);
        if (rc) fprintf(stderr, "  %s\n", dfm_errmsg());
        else CHECK_STR(dfm_weights_naming(w[k]), naming[k]);
    }
    if (w[0] && w[1] && w[2]) {
        int n = dfm_weights_count(w[0]), bad = 0;
        CHECK(n > 27);
        CHECK_EQ(dfm_weights_count(w[1]), n);
        CHECK_EQ(dfm_weights_count(w[2]), n);
        for (int i = 0; i < n; i++) {
            const char *name = dfm_weights_name_at(w[0], i, NULL);
            const dfm_st_tensor *t, *ref = dfm_st_find(dfm_weights_st(w[0]), name); /* diffusers: file name = canonical */
            if (!ref) bad++;
            for (int k = 0; ref && k < 3; k++) {
                int rc = dfm_weights_find(w[k], name, ref->ndim, ref->shape, &t);
                if (rc || t->dtype != ref->dtype || t->nbytes != ref->nbytes || memcmp(t->data, ref->data, ref->nbytes)) {
                    if (bad++ < 5) fprintf(stderr, "  %s: '%s' differs (%s)\n", sub[k], name, rc ? dfm_errmsg() : "");
                }
            }
        }
        CHECK_EQ(bad, 0);
        for (int k = 0; k < 3; k++) CHECK_EQ(dfm_weights_finish(w[k], NULL), 0);
    }
    for (int k = 0; k < 3; k++) dfm_weights_close(w[k]);

    char c[600];
    snprintf(c, sizeof c, "%s/wan_transformer/c/transformer", dfm_test_fixtures());
    dfm_weights *wc = NULL;
    CHECK_EQ(dfm_weights_open(&wc, c, &dfm_wan_transformer_names), 0);
    if (!wc) return;
    int n = dfm_weights_count(wc), bad = 0, f32 = 0;
    for (int i = 0; i < n; i++) {
        const char *name = dfm_weights_name_at(wc, i, NULL);
        const dfm_st_tensor *t = dfm_st_find(dfm_weights_st(wc), name);
        int keep = dfm_weights_dtype_for(&dfm_wan_transformer_names, name, DFM_BF16) == DFM_F32;
        f32 += keep;
        if (!t || t->dtype != (keep ? DFM_F32 : DFM_BF16)) bad++;
    }
    CHECK_EQ(bad, 0);
    CHECK(f32 > 0 && f32 < n);
    dfm_weights_close(wc);
}
