/* test_hfmodel.c — Hugging Face model directories: component resolution in a diffusers root, a
 * partial root and a component directory (with the errors that say what was looked for), and
 * config.json typed getters (integral floats as ints, null as missing, typed errors). */
#include "test.h"
#include "base/buf.h"
#include "base/error.h"
#include "io/hfmodel.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>

static void mk(const char *path)
{
    if (mkdir(path, 0755) != 0) {
        fprintf(stderr, "  cannot create %s\n", path);
        dfm_test_failures++;
    }
}

static void put(const char *dir, const char *name, const char *text)
{
    char p[700];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    if (dfm_write_file_atomic(p, text, strlen(text))) {
        fprintf(stderr, "  cannot write %s\n", p);
        dfm_test_failures++;
    }
}

/* Resolve and compare with want (a path, or NULL for "must fail"). */
static void expect_component(const char *model, const char *comp, const char *const *classes,
                             const char *want)
{
    char *out = NULL;
    int rc = dfm_hf_component(model, comp, classes, &out);
    if (want) {
        if (rc || !out || strcmp(out, want)) {
            fprintf(stderr, "  component '%s' of '%s': rc %d '%s' (want '%s') %s\n", comp, model, rc,
                    out ? out : "", want, rc ? dfm_errmsg() : "");
            dfm_test_failures++;
        }
    } else if (rc >= 0 || out) {
        fprintf(stderr, "  component '%s' of '%s' should fail, got '%s'\n", comp, model, out ? out : "");
        dfm_test_failures++;
    }
    free(out);
}

TEST(hf_component_diffusers_root)
{
    char root[512], p[600], want[600];
    snprintf(root, sizeof root, "%s/hf-Wan-tiny", dfm_test_tmpdir());
    mk(root);
    put(root, "model_index.json",
        "{\"_class_name\": \"WanPipeline\", \"_diffusers_version\": \"0.33.0\",\n"
        " \"vae\": [\"diffusers\", \"AutoencoderKLWan\"],\n"
        " \"transformer\": [\"diffusers\", \"WanTransformer3DModel\"],\n"
        " \"tokenizer\": [\"transformers\", \"T5TokenizerFast\"],\n"
        " \"transformer_2\": [null, null], \"boundary_ratio\": null}\n");
    snprintf(p, sizeof p, "%s/vae", root);
    mk(p);
    put(p, "config.json", "{\"_class_name\": \"AutoencoderKLWan\", \"z_dim\": 16}");
    snprintf(p, sizeof p, "%s/tokenizer", root);
    mk(p);
    put(p, "tokenizer_config.json", "{\"tokenizer_class\": \"T5Tokenizer\"}");
    snprintf(p, sizeof p, "%s/transformer", root);
    mk(p); /* listed, present, but without config.json */
    snprintf(p, sizeof p, "%s/text_encoder", root);
    mk(p); /* not listed, but a complete directory */
    put(p, "config.json", "{\"architectures\": [\"UMT5EncoderModel\"]}");

    const char *vae_classes[] = {"AutoencoderKLWan", NULL};
    snprintf(want, sizeof want, "%s/vae", root);
    expect_component(root, "vae", vae_classes, want);
    expect_component(root, "vae", NULL, want);
    snprintf(p, sizeof p, "%s///", root); /* trailing slashes */
    expect_component(p, "vae", NULL, want);
    snprintf(want, sizeof want, "%s/tokenizer", root);
    expect_component(root, "tokenizer", NULL, want);
    snprintf(want, sizeof want, "%s/text_encoder", root);
    expect_component(root, "text_encoder", NULL, want);

    char *out = NULL;
    CHECK_EQ(dfm_hf_component(root, "transformer", NULL, &out), DFM_E_FORMAT);
    snprintf(want, sizeof want,
             "'%s/model_index.json' lists a 'transformer' component, but there is no config.json in %s/transformer",
             root, root);
    CHECK_STR(dfm_errmsg(), want);
    /* [null, null] is not a component */
    CHECK_EQ(dfm_hf_component(root, "transformer_2", NULL, &out), DFM_E_ARG);
    snprintf(want, sizeof want,
             "'%s' is not a diffusers model with a 'transformer_2' component (%s/model_index.json lists "
             "vae, transformer, tokenizer, no %s/transformer_2/config.json) nor a transformer_2 directory "
             "(no %s/config.json)",
             root, root, root, root);
    CHECK_STR(dfm_errmsg(), want);
    CHECK(out == NULL);
}

TEST(hf_component_partial_root_and_component_dir)
{
    char root[512], p[600], want[900];
    /* no model_index.json, but vae/config.json */
    snprintf(root, sizeof root, "%s/hf-partial", dfm_test_tmpdir());
    mk(root);
    snprintf(p, sizeof p, "%s/vae", root);
    mk(p);
    put(p, "config.json", "{\"_class_name\": \"AutoencoderKLWan\"}");
    expect_component(root, "vae", NULL, p);

    /* a component directory given directly */
    const char *vae_classes[] = {"AutoencoderKLWan", NULL};
    const char *two[] = {"AutoencoderKLWan", "AutoencoderKL", NULL};
    expect_component(p, "vae", vae_classes, p);
    expect_component(p, "vae", two, p);
    expect_component(p, "vae", NULL, p);

    /* a transformer directory passed where a vae is wanted: the message from DESIGN */
    snprintf(root, sizeof root, "%s/hf-transformer-only", dfm_test_tmpdir());
    mk(root);
    put(root, "config.json", "{\"_class_name\": \"WanTransformer3DModel\", \"num_layers\": 2}");
    char *out = NULL;
    CHECK_EQ(dfm_hf_component(root, "vae", vae_classes, &out), DFM_E_ARG);
    snprintf(want, sizeof want,
             "'%s' is not a diffusers model with a 'vae' component (no %s/model_index.json, no %s/vae/config.json) "
             "nor a vae directory (%s/config.json has _class_name 'WanTransformer3DModel', expected AutoencoderKLWan)",
             root, root, root, root);
    CHECK_STR(dfm_errmsg(), want);
    CHECK_EQ(dfm_hf_component(root, "vae", two, &out), DFM_E_ARG);
    CHECK(strstr(dfm_errmsg(), "expected AutoencoderKLWan or AutoencoderKL)") != NULL);
    const char *wt[] = {"WanTransformer3DModel", NULL};
    expect_component(root, "transformer", wt, root);

    /* transformers configs name their class in "architectures" */
    snprintf(root, sizeof root, "%s/hf-umt5", dfm_test_tmpdir());
    mk(root);
    put(root, "config.json", "{\"architectures\": [\"T5Model\", \"UMT5EncoderModel\"], \"d_model\": 64}");
    const char *umt5[] = {"UMT5EncoderModel", NULL};
    expect_component(root, "text_encoder", umt5, root);
    const char *t5[] = {"T5EncoderModel", NULL};
    CHECK_EQ(dfm_hf_component(root, "text_encoder", t5, &out), DFM_E_ARG);
    CHECK(strstr(dfm_errmsg(), "has architectures 'T5Model', expected T5EncoderModel") != NULL);

    /* a directory with nothing; a file; a path that does not exist */
    snprintf(root, sizeof root, "%s/hf-empty-model", dfm_test_tmpdir());
    mk(root);
    CHECK_EQ(dfm_hf_component(root, "vae", NULL, &out), DFM_E_ARG);
    CHECK(strstr(dfm_errmsg(), "no ") && strstr(dfm_errmsg(), "/hf-empty-model/config.json)"));
    snprintf(p, sizeof p, "%s/hf-umt5/config.json", dfm_test_tmpdir());
    CHECK_EQ(dfm_hf_component(p, "vae", NULL, &out), DFM_E_ARG);
    CHECK(strstr(dfm_errmsg(), "is not a directory") != NULL);
    snprintf(p, sizeof p, "%s/hf-no-such-model", dfm_test_tmpdir());
    CHECK_EQ(dfm_hf_component(p, "vae", NULL, &out), DFM_E_IO);
    CHECK(strstr(dfm_errmsg(), "no-such-model") != NULL);
    CHECK_EQ(dfm_hf_component("", "vae", NULL, &out), DFM_E_ARG);
    /* a broken model_index.json is reported, not skipped */
    snprintf(root, sizeof root, "%s/hf-broken-index", dfm_test_tmpdir());
    mk(root);
    put(root, "model_index.json", "{\"vae\": [\"diffusers\",\n");
    CHECK_EQ(dfm_hf_component(root, "vae", NULL, &out), DFM_E_FORMAT);
    CHECK(strstr(dfm_errmsg(), "model_index.json: not valid JSON") != NULL);
    CHECK(out == NULL);
}

static const char CONFIG[] =
    "{\n"
    "  \"_class_name\": \"AutoencoderKLWan\",\n"
    "  \"z_dim\": 16,\n"
    "  \"base_dim\": 96.0,\n"
    "  \"dropout\": 0.5,\n"
    "  \"huge\": 1e30,\n"
    "  \"neg\": -3,\n"
    "  \"is_residual\": false,\n"
    "  \"unset\": null,\n"
    "  \"z_str\": \"16\",\n"
    "  \"latents_mean\": [-0.7571, -0.7089, 1, 2.5],\n"
    "  \"dim_mult\": [1, 2, 4.0, 4],\n"
    "  \"bad_mult\": [1, 2.5],\n"
    "  \"temperal_downsample\": [false, true, true],\n"
    "  \"mixed\": [true, 1],\n"
    "  \"obj\": {\"a\": 1}\n"
    "}\n";

TEST(hf_config_getters)
{
    char dir[512], want[800];
    snprintf(dir, sizeof dir, "%s/hf-cfg", dfm_test_tmpdir());
    mk(dir);
    put(dir, "config.json", CONFIG);
    dfm_hf_config c;
    CHECK_EQ(dfm_hf_config_load(&c, dir), 0);
    if (!c.json) return;
    char path[600];
    snprintf(path, sizeof path, "%s/config.json", dir);
    CHECK_STR(c.path, path);

    int64_t i = 0;
    CHECK_EQ(dfm_hf_int(&c, "z_dim", 1, 0, &i), 0);
    CHECK_EQ(i, 16);
    CHECK_EQ(dfm_hf_int(&c, "base_dim", 1, 0, &i), 0); /* 96.0 is an integer */
    CHECK_EQ(i, 96);
    CHECK_EQ(dfm_hf_int(&c, "neg", 1, 0, &i), 0);
    CHECK_EQ(i, -3);
    CHECK_EQ(dfm_hf_int(&c, "absent", 0, 7, &i), 0);
    CHECK_EQ(i, 7);
    CHECK_EQ(dfm_hf_int(&c, "unset", 0, 8, &i), 0); /* null takes the default */
    CHECK_EQ(i, 8);
    CHECK_EQ(dfm_hf_int(&c, "z_str", 1, 0, &i), DFM_E_FORMAT);
    snprintf(want, sizeof want, "%s: field 'z_str' must be an integer, not a string", path);
    CHECK_STR(dfm_errmsg(), want);
    CHECK_EQ(dfm_hf_int(&c, "z_str", 0, 0, &i), DFM_E_FORMAT); /* wrong type: always an error */
    CHECK_EQ(dfm_hf_int(&c, "dropout", 0, 0, &i), DFM_E_FORMAT);
    snprintf(want, sizeof want, "%s: field 'dropout' must be an integer, not 0.5", path);
    CHECK_STR(dfm_errmsg(), want);
    CHECK_EQ(dfm_hf_int(&c, "huge", 0, 0, &i), DFM_E_FORMAT);
    CHECK_EQ(dfm_hf_int(&c, "absent", 1, 0, &i), DFM_E_FORMAT);
    snprintf(want, sizeof want, "%s: missing field 'absent' (an integer)", path);
    CHECK_STR(dfm_errmsg(), want);
    CHECK_EQ(dfm_hf_int(&c, "unset", 1, 0, &i), DFM_E_FORMAT);
    snprintf(want, sizeof want, "%s: field 'unset' is null, expected an integer", path);
    CHECK_STR(dfm_errmsg(), want);

    double d = 0;
    CHECK_EQ(dfm_hf_float(&c, "dropout", 1, 0, &d), 0);
    CHECK_EQ(d, 0.5);
    CHECK_EQ(dfm_hf_float(&c, "z_dim", 1, 0, &d), 0);
    CHECK_EQ(d, 16);
    CHECK_EQ(dfm_hf_float(&c, "absent", 0, 1.25, &d), 0);
    CHECK_EQ(d, 1.25);
    CHECK_EQ(dfm_hf_float(&c, "is_residual", 1, 0, &d), DFM_E_FORMAT);
    CHECK(strstr(dfm_errmsg(), "field 'is_residual' must be a number, not a boolean") != NULL);

    int b = -1;
    CHECK_EQ(dfm_hf_bool(&c, "is_residual", 1, 1, &b), 0);
    CHECK_EQ(b, 0);
    CHECK_EQ(dfm_hf_bool(&c, "absent", 0, 1, &b), 0);
    CHECK_EQ(b, 1);
    CHECK_EQ(dfm_hf_bool(&c, "z_dim", 0, 1, &b), DFM_E_FORMAT);
    CHECK(strstr(dfm_errmsg(), "field 'z_dim' must be true or false, not 16") != NULL);

    const char *s = NULL;
    CHECK_EQ(dfm_hf_str(&c, "_class_name", 1, NULL, &s), 0);
    CHECK_STR(s, "AutoencoderKLWan");
    CHECK_EQ(dfm_hf_str(&c, "absent", 0, "dflt", &s), 0);
    CHECK_STR(s, "dflt");
    CHECK_EQ(dfm_hf_str(&c, "absent", 0, NULL, &s), 0);
    CHECK(s == NULL);
    CHECK_EQ(dfm_hf_str(&c, "obj", 0, NULL, &s), DFM_E_FORMAT);
    CHECK(strstr(dfm_errmsg(), "must be a string, not an object") != NULL);

    double fa[8];
    int64_t ia[8];
    int ba[8], n = -1;
    CHECK_EQ(dfm_hf_float_array(&c, "latents_mean", 1, fa, 8, &n), 0);
    CHECK_EQ(n, 4);
    CHECK(fa[0] == -0.7571 && fa[1] == -0.7089 && fa[2] == 1 && fa[3] == 2.5);
    CHECK_EQ(dfm_hf_float_array(&c, "latents_mean", 1, fa, 3, &n), DFM_E_FORMAT);
    CHECK(strstr(dfm_errmsg(), "field 'latents_mean' has 4 elements, more than the 3 expected") != NULL);
    CHECK_EQ(dfm_hf_int_array(&c, "dim_mult", 1, ia, 4, &n), 0);
    CHECK_EQ(n, 4);
    CHECK(ia[0] == 1 && ia[1] == 2 && ia[2] == 4 && ia[3] == 4);
    CHECK_EQ(dfm_hf_int_array(&c, "bad_mult", 1, ia, 4, &n), DFM_E_FORMAT);
    CHECK(strstr(dfm_errmsg(), "field 'bad_mult' element 1 must be an integer, not 2.5") != NULL);
    CHECK_EQ(dfm_hf_int_array(&c, "z_dim", 1, ia, 4, &n), DFM_E_FORMAT);
    CHECK(strstr(dfm_errmsg(), "field 'z_dim' must be an array of integers, not 16") != NULL);
    CHECK_EQ(dfm_hf_int_array(&c, "absent", 0, ia, 4, &n), 0);
    CHECK_EQ(n, 0);
    CHECK_EQ(dfm_hf_int_array(&c, "unset", 0, ia, 4, &n), 0);
    CHECK_EQ(n, 0);
    CHECK_EQ(dfm_hf_int_array(&c, "absent", 1, ia, 4, &n), DFM_E_FORMAT);
    CHECK(strstr(dfm_errmsg(), "missing field 'absent' (an array of integers)") != NULL);
    CHECK_EQ(dfm_hf_bool_array(&c, "temperal_downsample", 1, ba, 8, &n), 0);
    CHECK_EQ(n, 3);
    CHECK(ba[0] == 0 && ba[1] == 1 && ba[2] == 1);
    CHECK_EQ(dfm_hf_bool_array(&c, "mixed", 1, ba, 8, &n), DFM_E_FORMAT);
    CHECK(strstr(dfm_errmsg(), "element 1 must be true or false, not 1") != NULL);
    CHECK_EQ(dfm_hf_float_array(&c, "mixed", 1, fa, 8, &n), DFM_E_FORMAT);
    CHECK(strstr(dfm_errmsg(), "element 0 must be a number, not a boolean") != NULL);
    dfm_hf_config_free(&c);
    CHECK(c.json == NULL && c.path == NULL);
    dfm_hf_config_free(&c); /* twice is harmless */
}

TEST(hf_config_load_errors)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/hf-cfg-bad", dfm_test_tmpdir());
    mk(dir);
    dfm_hf_config c;
    CHECK_EQ(dfm_hf_config_load(&c, dir), DFM_E_IO);
    CHECK(strstr(dfm_errmsg(), "hf-cfg-bad/config.json") != NULL);
    CHECK(c.json == NULL && c.path == NULL);
    put(dir, "config.json", "{\n  \"a\": 1,\n  \"b\": \n}\n");
    CHECK_EQ(dfm_hf_config_load(&c, dir), DFM_E_FORMAT);
    CHECK(strstr(dfm_errmsg(), "config.json: not valid JSON (line 4)") != NULL);
    put(dir, "config.json", "[1, 2]");
    CHECK_EQ(dfm_hf_config_load(&c, dir), DFM_E_FORMAT);
    CHECK(strstr(dfm_errmsg(), "config.json: not a JSON object") != NULL);
    put(dir, "config.json", "");
    CHECK_EQ(dfm_hf_config_load(&c, dir), DFM_E_FORMAT);
    CHECK(c.json == NULL && c.path == NULL);
    dfm_hf_config_free(&c);
}
